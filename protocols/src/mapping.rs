//! The lossless mapping between MQTT topics and AMQP 0-9-1 routing keys.
//!
//! MQTT traffic is routed through the `amq.topic` exchange, so every MQTT
//! topic needs an AMQP routing key and back, without two topics colliding.
//! The two separators trade places:
//!
//! | MQTT                        | AMQP                          |
//! |-----------------------------|-------------------------------|
//! | `/` (level separator)       | `.` (word separator)          |
//! | `.` (literal, inside a level) | `/` (literal, inside a word) |
//! | `+` (one level, filters)    | `*` (one word, binding keys)  |
//! | `#` (any levels, filters)   | `#` (any words, binding keys) |
//!
//! ```
//! use tether_protocols::mapping::{mqtt_topic_to_routing_key, routing_key_to_mqtt_topic};
//!
//! let mut buf = [0u8; 64];
//! let key = mqtt_topic_to_routing_key("sensors/v1.2/temp", &mut buf).unwrap();
//! assert_eq!(key, "sensors.v1/2.temp");
//! let mut back = [0u8; 64];
//! assert_eq!(routing_key_to_mqtt_topic(key, &mut back).unwrap(), "sensors/v1.2/temp");
//! ```
//!
//! Swapping `/` and `.` byte by byte is a length-preserving involution
//! (applying it twice gives the input back), so it cannot lose information,
//! and levels stay levels: `a/b.c` has two levels and `a.b/c` two words. Both
//! bytes are ASCII, so the result is still valid UTF-8.
//!
//! Filters additionally map `+` ↔ `*` when it is a whole level/word; `#` is
//! the same character in both. One case has no equivalent: an MQTT filter
//! level that is a literal `*` (which matches only the level `*` in MQTT)
//! would become the AMQP wildcard `*`, so [`mqtt_filter_to_binding_key`]
//! refuses it ([`MappingError::UnmappableLevel`]). Likewise an AMQP word that
//! is a literal `+` has no MQTT filter equivalent. The gateway's router parses
//! MQTT filters straight into levels, so it never needs that direction for
//! routing; these functions serve display, administration and AMQP
//! interoperability.
//!
//! AMQP limits routing keys to 255 bytes (a short string); this module does
//! not, since the core routes on levels. Whoever hands a key to an AMQP client
//! must check it.

use core::fmt;

use crate::topic::{TopicError, validate_topic_filter, validate_topic_name};

/// Why a topic, filter, routing key or binding key cannot be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MappingError {
    /// The output buffer is shorter than the input.
    BufferTooSmall {
        /// Bytes needed (the mapping preserves length).
        needed: usize,
    },
    /// The result is not a valid MQTT topic name or filter.
    InvalidTopic(TopicError),
    /// An MQTT filter level is a literal `*`, which AMQP would read as a wildcard.
    UnmappableLevel,
    /// An AMQP binding key word is a literal `+`, which MQTT would read as a wildcard.
    UnmappableWord,
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall { needed } => write!(f, "buffer too small: {needed} bytes needed"),
            Self::InvalidTopic(e) => write!(f, "not a valid MQTT topic: {e}"),
            Self::UnmappableLevel => f.write_str("literal '*' level has no AMQP equivalent"),
            Self::UnmappableWord => f.write_str("literal '+' word has no MQTT equivalent"),
        }
    }
}

impl core::error::Error for MappingError {}

/// Swaps `/` and `.` in place. Applying it twice restores the input.
pub fn swap_separators_in_place(bytes: &mut [u8]) {
    for b in bytes {
        *b = match *b {
            b'/' => b'.',
            b'.' => b'/',
            other => other,
        };
    }
}

/// Copies `input` to the front of `out` with separators swapped, then lets
/// `words` rewrite whole words (split on `sep`).
fn map_into<'b>(
    input: &str,
    out: &'b mut [u8],
    sep: u8,
    mut words: impl FnMut(&mut [u8]) -> Result<(), MappingError>,
) -> Result<&'b str, MappingError> {
    let needed = input.len();
    let dst = out
        .get_mut(..needed)
        .ok_or(MappingError::BufferTooSmall { needed })?;
    dst.copy_from_slice(input.as_bytes());
    swap_separators_in_place(dst);
    for word in dst.split_mut(|&b| b == sep) {
        words(word)?;
    }
    // Only ASCII bytes were exchanged for ASCII bytes, so this cannot fail;
    // the error arm exists because there is no `unsafe` here.
    core::str::from_utf8(dst).map_err(|_| MappingError::InvalidTopic(TopicError::Empty))
}

/// Maps an MQTT topic name to the routing key it is published with on
/// `amq.topic`, written to the front of `out` (the result has the same length).
pub fn mqtt_topic_to_routing_key<'b>(
    topic: &str,
    out: &'b mut [u8],
) -> Result<&'b str, MappingError> {
    map_into(topic, out, b'.', |_| Ok(()))
}

/// Maps an AMQP routing key back to the MQTT topic name, checking that the
/// result is a valid topic name (non-empty, no `+`/`#`).
pub fn routing_key_to_mqtt_topic<'b>(
    key: &str,
    out: &'b mut [u8],
) -> Result<&'b str, MappingError> {
    let topic = map_into(key, out, b'/', |_| Ok(()))?;
    validate_topic_name(topic).map_err(MappingError::InvalidTopic)?;
    Ok(topic)
}

/// Maps an MQTT topic filter to an AMQP binding key pattern: levels as
/// words, `+` → `*`, `#` → `#`. The filter must be valid; a literal `*` level
/// is refused with [`MappingError::UnmappableLevel`].
pub fn mqtt_filter_to_binding_key<'b>(
    filter: &str,
    out: &'b mut [u8],
) -> Result<&'b str, MappingError> {
    validate_topic_filter(filter).map_err(MappingError::InvalidTopic)?;
    map_into(filter, out, b'.', |word| match word {
        [b'*'] => Err(MappingError::UnmappableLevel),
        [w @ b'+'] => {
            *w = b'*';
            Ok(())
        }
        _ => Ok(()),
    })
}

/// Maps an AMQP binding key pattern to an MQTT topic filter: `*` → `+`,
/// `#` → `#`, words as levels. A literal `+` word is refused with
/// [`MappingError::UnmappableWord`]; a result that is not a valid MQTT filter
/// (e.g. the word `a#b`) with [`MappingError::InvalidTopic`].
pub fn binding_key_to_mqtt_filter<'b>(
    key: &str,
    out: &'b mut [u8],
) -> Result<&'b str, MappingError> {
    let filter = map_into(key, out, b'/', |word| match word {
        [b'+'] => Err(MappingError::UnmappableWord),
        [w @ b'*'] => {
            *w = b'+';
            Ok(())
        }
        _ => Ok(()),
    })?;
    validate_topic_filter(filter).map_err(MappingError::InvalidTopic)?;
    Ok(filter)
}

#[cfg(feature = "alloc")]
mod owned {
    use super::*;
    use alloc::string::String;
    use alloc::vec;

    fn with_buffer(
        input: &str,
        f: impl for<'b> FnOnce(&str, &'b mut [u8]) -> Result<&'b str, MappingError>,
    ) -> Result<String, MappingError> {
        let mut buf = vec![0u8; input.len()];
        f(input, &mut buf).map(String::from)
    }

    /// [`mqtt_topic_to_routing_key`] returning a `String`.
    pub fn mqtt_topic_to_routing_key_string(topic: &str) -> String {
        let mut bytes = String::from(topic).into_bytes();
        swap_separators_in_place(&mut bytes);
        // ASCII-for-ASCII swaps keep UTF-8 valid.
        String::from_utf8(bytes).unwrap_or_default()
    }

    /// [`routing_key_to_mqtt_topic`] returning a `String`.
    pub fn routing_key_to_mqtt_topic_string(key: &str) -> Result<String, MappingError> {
        with_buffer(key, routing_key_to_mqtt_topic)
    }

    /// [`mqtt_filter_to_binding_key`] returning a `String`.
    pub fn mqtt_filter_to_binding_key_string(filter: &str) -> Result<String, MappingError> {
        with_buffer(filter, mqtt_filter_to_binding_key)
    }

    /// [`binding_key_to_mqtt_filter`] returning a `String`.
    pub fn binding_key_to_mqtt_filter_string(key: &str) -> Result<String, MappingError> {
        with_buffer(key, binding_key_to_mqtt_filter)
    }
}

#[cfg(feature = "alloc")]
pub use owned::*;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::string::String;
    use std::vec::Vec;

    fn to_key(topic: &str) -> String {
        let mut buf = [0u8; 256];
        String::from(mqtt_topic_to_routing_key(topic, &mut buf).expect("fits"))
    }

    fn to_topic(key: &str) -> Result<String, MappingError> {
        let mut buf = [0u8; 256];
        routing_key_to_mqtt_topic(key, &mut buf).map(String::from)
    }

    fn to_binding(filter: &str) -> Result<String, MappingError> {
        let mut buf = [0u8; 256];
        mqtt_filter_to_binding_key(filter, &mut buf).map(String::from)
    }

    fn to_filter(key: &str) -> Result<String, MappingError> {
        let mut buf = [0u8; 256];
        binding_key_to_mqtt_filter(key, &mut buf).map(String::from)
    }

    #[test]
    fn levels_become_words() {
        assert_eq!(to_key("a/b/c"), "a.b.c");
        assert_eq!(to_topic("a.b.c"), Ok("a/b/c".into()));
    }

    #[test]
    fn dots_inside_levels_become_slashes_inside_words() {
        assert_eq!(to_key("sensors/v1.2/temp"), "sensors.v1/2.temp");
        assert_eq!(
            to_topic("sensors.v1/2.temp"),
            Ok("sensors/v1.2/temp".into())
        );
    }

    #[test]
    fn empty_levels_are_kept() {
        assert_eq!(to_key("/a//b/"), ".a..b.");
        assert_eq!(to_topic(".a..b."), Ok("/a//b/".into()));
    }

    #[test]
    fn non_ascii_topics_map_unchanged_apart_from_separators() {
        assert_eq!(to_key("température/salle.1"), "température.salle/1");
    }

    #[test]
    fn routing_key_that_is_not_a_topic_name_is_refused() {
        assert_eq!(
            to_topic(""),
            Err(MappingError::InvalidTopic(TopicError::Empty))
        );
        assert_eq!(
            to_topic("a.#"),
            Err(MappingError::InvalidTopic(TopicError::WildcardInName))
        );
    }

    #[test]
    fn small_buffer_is_reported() {
        let mut buf = [0u8; 3];
        assert_eq!(
            mqtt_topic_to_routing_key("a/b/c", &mut buf),
            Err(MappingError::BufferTooSmall { needed: 5 })
        );
    }

    #[test]
    fn filter_wildcards_map_to_binding_wildcards() {
        assert_eq!(to_binding("sensors/+/temp"), Ok("sensors.*.temp".into()));
        assert_eq!(to_binding("sensors/#"), Ok("sensors.#".into()));
        assert_eq!(to_binding("#"), Ok("#".into()));
        assert_eq!(to_binding("+/v1.2/+"), Ok("*.v1/2.*".into()));
        assert_eq!(to_filter("*.v1/2.*"), Ok("+/v1.2/+".into()));
        assert_eq!(to_filter("sensors.#"), Ok("sensors/#".into()));
    }

    #[test]
    fn star_inside_a_level_is_literal_in_both() {
        assert_eq!(to_binding("a/x*y"), Ok("a.x*y".into()));
        assert_eq!(to_filter("a.x*y"), Ok("a/x*y".into()));
    }

    #[test]
    fn literal_star_level_has_no_binding_key() {
        assert_eq!(to_binding("a/*/b"), Err(MappingError::UnmappableLevel));
    }

    #[test]
    fn literal_plus_word_has_no_filter() {
        assert_eq!(to_filter("a.+.b"), Err(MappingError::UnmappableWord));
    }

    #[test]
    fn binding_word_with_embedded_hash_is_refused() {
        assert_eq!(
            to_filter("a.b#"),
            Err(MappingError::InvalidTopic(
                TopicError::MisplacedMultiLevelWildcard
            ))
        );
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn string_versions_agree_with_buffer_versions() {
        assert_eq!(mqtt_topic_to_routing_key_string("a/b.c"), "a.b/c");
        assert_eq!(
            routing_key_to_mqtt_topic_string("a.b/c"),
            Ok("a/b.c".into())
        );
        assert_eq!(mqtt_filter_to_binding_key_string("a/+"), Ok("a.*".into()));
        assert_eq!(binding_key_to_mqtt_filter_string("a.*"), Ok("a/+".into()));
    }

    /// Valid topic names: levels of arbitrary characters without `/`, `+`, `#`, NUL.
    fn topic_name() -> impl Strategy<Value = String> {
        prop::collection::vec("[^/+#\\x00]{0,8}", 1..8)
            .prop_map(|levels| levels.join("/"))
            .prop_filter("non-empty", |t| !t.is_empty())
    }

    /// Valid topic filters without a literal `*` level.
    fn topic_filter() -> impl Strategy<Value = String> {
        let level = prop_oneof![
            Just(String::from("+")),
            "[^/+#*\\x00]{0,6}",
            "[a.*]{2,4}".prop_filter("not a lone star", |l| l != "*"),
        ];
        (prop::collection::vec(level, 1..6), any::<bool>())
            .prop_map(|(mut levels, hash)| {
                if hash {
                    levels.push(String::from("#"));
                }
                levels.join("/")
            })
            .prop_filter("valid", |f| validate_topic_filter(f).is_ok())
    }

    proptest! {
        #[test]
        fn swap_is_an_involution(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut twice = bytes.clone();
            swap_separators_in_place(&mut twice);
            swap_separators_in_place(&mut twice);
            prop_assert_eq!(twice, bytes);
        }

        #[test]
        fn topic_round_trips_and_keeps_level_count(topic in topic_name()) {
            let mut buf = std::vec![0u8; topic.len()];
            let key = mqtt_topic_to_routing_key(&topic, &mut buf).unwrap();
            prop_assert_eq!(key.len(), topic.len());
            prop_assert_eq!(key.split('.').count(), crate::topic::levels(&topic).count());
            let key = String::from(key);
            let back = to_topic_owned(&key)?;
            prop_assert_eq!(back, topic);
        }

        #[test]
        fn filter_round_trips_and_keeps_level_count(filter in topic_filter()) {
            let mut buf = std::vec![0u8; filter.len()];
            let key = mqtt_filter_to_binding_key(&filter, &mut buf).unwrap();
            prop_assert_eq!(key.split('.').count(), crate::topic::levels(&filter).count());
            let words: Vec<&str> = key.split('.').collect();
            for (word, level) in words.iter().zip(crate::topic::levels(&filter)) {
                prop_assert_eq!(*word == "*", level == "+");
                prop_assert_eq!(*word == "#", level == "#");
            }
            let mut back = std::vec![0u8; key.len()];
            prop_assert_eq!(binding_key_to_mqtt_filter(key, &mut back).unwrap(), filter.as_str());
        }
    }

    fn to_topic_owned(key: &str) -> Result<String, TestCaseError> {
        let mut buf = std::vec![0u8; key.len()];
        routing_key_to_mqtt_topic(key, &mut buf)
            .map(String::from)
            .map_err(|e| TestCaseError::fail(std::format!("{e}")))
    }
}
