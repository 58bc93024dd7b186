//! MQTT topic names and topic filters (§4.7 of MQTT 3.1.1 and 5.0): validation,
//! matching, shared subscriptions and level splitting. No allocation.
//!
//! A topic name (what a PUBLISH is sent to) is a `/`-separated list of levels
//! without wildcards. A topic filter (what a SUBSCRIBE asks for) may use `+`
//! for exactly one level and `#`, as the last level, for any number of
//! remaining levels (including none). Topics starting with `$` are reserved
//! for the server and are not matched by a filter whose first level is a
//! wildcard.

use core::fmt;

/// Longest topic name or filter: a UTF-8 Encoded String holds 65 535 bytes.
pub const MAX_TOPIC_LEN: usize = 65_535;

/// The prefix that marks an MQTT 5 shared subscription.
pub const SHARE_PREFIX: &str = "$share/";

/// Why a topic name, topic filter or shared subscription is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicError {
    /// The topic is empty (topics are at least one character long).
    Empty,
    /// The topic is longer than 65 535 bytes.
    TooLong,
    /// The topic contains U+0000.
    NullCharacter,
    /// A topic name contains `+` or `#`.
    WildcardInName,
    /// `#` is not a whole level, or not the last level.
    MisplacedMultiLevelWildcard,
    /// `+` is not a whole level.
    MisplacedSingleLevelWildcard,
    /// The share name of `$share/{group}/{filter}` is empty or contains `+` or `#`.
    InvalidShareName,
    /// `$share/{group}` has no `/` and filter after the group, or an empty filter.
    MissingShareFilter,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty topic",
            Self::TooLong => "topic longer than 65535 bytes",
            Self::NullCharacter => "topic contains U+0000",
            Self::WildcardInName => "topic name contains a wildcard",
            Self::MisplacedMultiLevelWildcard => "'#' must be the whole last level",
            Self::MisplacedSingleLevelWildcard => "'+' must be a whole level",
            Self::InvalidShareName => "invalid share name",
            Self::MissingShareFilter => "shared subscription without a topic filter",
        })
    }
}

impl core::error::Error for TopicError {}

fn check_common(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    if topic.as_bytes().contains(&0) {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// Checks a topic name: non-empty, at most 65 535 bytes, no `+`, `#` or U+0000.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    check_common(topic)?;
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks a topic filter: like a topic name, but `+` may be any whole level
/// and `#` the whole last level. `#`, `+`, `+/+`, `a//b` and `/` are valid;
/// `a/#/b`, `a+/b` and `a/b#` are not.
///
/// This does not interpret `$share/`; see [`parse_shared`].
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !last) {
            return Err(TopicError::MisplacedMultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevelWildcard);
        }
    }
    Ok(())
}

/// The levels of a topic name or filter: `a/b` gives `a`, `b`; `/` gives two
/// empty levels.
pub fn levels(topic: &str) -> impl Iterator<Item = &str> + Clone {
    topic.split('/')
}

/// Whether the topic name `topic` matches the topic filter `filter`.
///
/// `filter` must be a valid filter (not a `$share/` one: strip that with
/// [`parse_shared`] first); for invalid input the answer is unspecified but
/// this never panics. Per §4.7: `a/#` matches `a` and `a/b/c`; `+` matches
/// exactly one level, which may be empty; a filter starting with `#` or `+`
/// does not match a topic starting with `$`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('#') || filter.starts_with('+')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            // `#` matches the parent level and everything below it.
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// An MQTT 5 shared subscription `$share/{group}/{filter}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SharedSubscription<'a> {
    /// The share name: messages are spread over the group's subscribers.
    pub group: &'a str,
    /// The topic filter the group subscribes to.
    pub filter: &'a str,
}

/// Splits a shared subscription filter into its group and filter.
///
/// Returns `Ok(None)` for a filter that does not start with `$share/` (an
/// ordinary filter, not validated here). `$share/g` (no filter), `$share/g/`
/// and `$share//f` (empty group) are errors, as is a group containing `+` or
/// `#` or an invalid inner filter.
pub fn parse_shared(filter: &str) -> Result<Option<SharedSubscription<'_>>, TopicError> {
    let Some(rest) = filter.strip_prefix(SHARE_PREFIX) else {
        return Ok(None);
    };
    let (group, inner) = rest.split_once('/').ok_or(TopicError::MissingShareFilter)?;
    if group.is_empty() || group.contains(['+', '#']) {
        return Err(TopicError::InvalidShareName);
    }
    if group.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    if inner.is_empty() {
        return Err(TopicError::MissingShareFilter);
    }
    if filter.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    validate_topic_filter(inner)?;
    Ok(Some(SharedSubscription {
        group,
        filter: inner,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    #[test]
    fn plain_topic_names_are_valid() {
        for t in [
            "a",
            "a/b",
            "/",
            "/finance",
            "a//b",
            " ",
            "sport/tennis/player1",
            "$SYS/x",
        ] {
            assert_eq!(validate_topic_name(t), Ok(()), "{t:?}");
        }
    }

    #[test]
    fn empty_topic_name_is_invalid() {
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
    }

    #[test]
    fn wildcards_in_topic_names_are_invalid() {
        for t in ["+", "#", "a/+", "a/#", "a+b", "sport/tennis#"] {
            assert_eq!(
                validate_topic_name(t),
                Err(TopicError::WildcardInName),
                "{t:?}"
            );
        }
    }

    #[test]
    fn nul_in_topic_is_invalid() {
        assert_eq!(validate_topic_name("a\0b"), Err(TopicError::NullCharacter));
        assert_eq!(
            validate_topic_filter("a/\0"),
            Err(TopicError::NullCharacter)
        );
    }

    #[test]
    fn topic_longer_than_65535_bytes_is_invalid() {
        let long: String = core::iter::repeat_n('a', MAX_TOPIC_LEN + 1).collect();
        assert_eq!(validate_topic_name(&long), Err(TopicError::TooLong));
        assert_eq!(validate_topic_filter(&long), Err(TopicError::TooLong));
        assert_eq!(validate_topic_name(&long[1..]), Ok(()));
    }

    #[test]
    fn spec_valid_filters_are_accepted() {
        for f in [
            "#",
            "+",
            "+/+",
            "/+",
            "a//b",
            "/",
            "sport/tennis/#",
            "sport/#",
            "+/tennis/#",
            "sport/+/player1",
            "$SYS/#",
        ] {
            assert_eq!(validate_topic_filter(f), Ok(()), "{f:?}");
        }
    }

    #[test]
    fn misplaced_multi_level_wildcard_is_rejected() {
        for f in [
            "a/#/b",
            "a/b#",
            "sport/tennis#",
            "sport/tennis/#/ranking",
            "##",
            "#/",
        ] {
            assert_eq!(
                validate_topic_filter(f),
                Err(TopicError::MisplacedMultiLevelWildcard),
                "{f:?}"
            );
        }
    }

    #[test]
    fn misplaced_single_level_wildcard_is_rejected() {
        for f in ["a+/b", "sport+", "a/+b", "++"] {
            assert_eq!(
                validate_topic_filter(f),
                Err(TopicError::MisplacedSingleLevelWildcard),
                "{f:?}"
            );
        }
    }

    #[test]
    fn empty_filter_is_rejected() {
        assert_eq!(validate_topic_filter(""), Err(TopicError::Empty));
    }

    #[test]
    fn multi_level_wildcard_matches_parent_and_children() {
        let f = "sport/tennis/player1/#";
        assert!(matches(f, "sport/tennis/player1"));
        assert!(matches(f, "sport/tennis/player1/ranking"));
        assert!(matches(f, "sport/tennis/player1/score/wimbledon"));
        assert!(matches("sport/#", "sport"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(!matches("a/#", "b/a"));
    }

    #[test]
    fn hash_alone_matches_every_topic_not_starting_with_dollar() {
        assert!(matches("#", "a"));
        assert!(matches("#", "/"));
        assert!(matches("#", "a/b/c"));
        assert!(!matches("#", "$SYS/x"));
    }

    #[test]
    fn single_level_wildcard_matches_exactly_one_level() {
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(matches("sport/tennis/+", "sport/tennis/player2"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
    }

    #[test]
    fn single_level_wildcard_matches_empty_levels() {
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(matches("a/+/b", "a//b"));
        assert!(matches("+", ""));
    }

    #[test]
    fn leading_wildcards_do_not_match_dollar_topics() {
        assert!(!matches("#", "$SYS/monitor/Clients"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS"));
    }

    #[test]
    fn matching_is_exact_and_case_sensitive() {
        assert!(matches("a/b", "a/b"));
        assert!(!matches("ACCOUNTS", "Accounts"));
        assert!(!matches("/finance", "finance"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        // A `$` later in the topic is an ordinary character.
        assert!(matches("+/$x", "a/$x"));
    }

    #[test]
    fn shared_subscription_is_split_into_group_and_filter() {
        assert_eq!(
            parse_shared("$share/consumer1/sport/tennis/+"),
            Ok(Some(SharedSubscription {
                group: "consumer1",
                filter: "sport/tennis/+"
            }))
        );
        assert_eq!(
            parse_shared("$share/g/#"),
            Ok(Some(SharedSubscription {
                group: "g",
                filter: "#"
            }))
        );
        assert_eq!(
            parse_shared("$share/g//"),
            Ok(Some(SharedSubscription {
                group: "g",
                filter: "/"
            }))
        );
    }

    #[test]
    fn ordinary_filter_is_not_shared() {
        assert_eq!(parse_shared("sport/#"), Ok(None));
        assert_eq!(parse_shared("$share"), Ok(None));
        assert_eq!(parse_shared("$shared/g/f"), Ok(None));
    }

    #[test]
    fn shared_subscription_without_filter_is_rejected() {
        assert_eq!(
            parse_shared("$share/g"),
            Err(TopicError::MissingShareFilter)
        );
        assert_eq!(
            parse_shared("$share/g/"),
            Err(TopicError::MissingShareFilter)
        );
    }

    #[test]
    fn shared_subscription_with_bad_group_is_rejected() {
        assert_eq!(parse_shared("$share//f"), Err(TopicError::InvalidShareName));
        assert_eq!(
            parse_shared("$share/a+/f"),
            Err(TopicError::InvalidShareName)
        );
        assert_eq!(
            parse_shared("$share/#/f"),
            Err(TopicError::InvalidShareName)
        );
        assert_eq!(parse_shared("$share/"), Err(TopicError::MissingShareFilter));
    }

    #[test]
    fn shared_subscription_with_bad_inner_filter_is_rejected() {
        assert_eq!(
            parse_shared("$share/g/a/#/b"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
    }

    #[test]
    fn levels_split_on_slash() {
        assert_eq!(levels("a/b/c").collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(levels("/").collect::<Vec<_>>(), ["", ""]);
        assert_eq!(levels("a").collect::<Vec<_>>(), ["a"]);
        assert_eq!(levels("a//b").count(), 3);
    }
}
