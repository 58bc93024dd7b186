//! A trie of topic patterns for topic exchanges: insert patterns made of
//! [`Level`]s, then find every value whose pattern matches a topic.
//!
//! Levels are stored in MQTT spelling (a literal `.` inside a level is just a
//! character). AMQP binding keys are converted to levels by the exchange, so one
//! trie serves both protocols: `*`/`+` match exactly one level, `#` matches zero
//! or more levels (anywhere in an AMQP pattern, only last in an MQTT filter).

use std::collections::HashMap;

use smallvec::SmallVec;

/// One level of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level<'a> {
    /// Matches exactly this text.
    Literal(&'a str),
    /// `+` (MQTT) or `*` (AMQP): exactly one level.
    One,
    /// `#`: zero or more levels.
    Many,
}

/// Splits an MQTT topic filter into levels.
pub fn mqtt_filter_levels(filter: &str) -> impl Iterator<Item = Level<'_>> {
    filter.split('/').map(|l| match l {
        "+" => Level::One,
        "#" => Level::Many,
        other => Level::Literal(other),
    })
}

#[derive(Debug)]
struct Node<T> {
    children: HashMap<Box<str>, Node<T>, ahash::RandomState>,
    one: Option<Box<Node<T>>>,
    many: Option<Box<Node<T>>>,
    values: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            children: HashMap::default(),
            one: None,
            many: None,
            values: Vec::new(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.values.is_empty()
            && self.children.is_empty()
            && self.one.is_none()
            && self.many.is_none()
    }

    /// A `#` node with nothing after it: matches whatever remains in one step.
    fn is_terminal(&self) -> bool {
        self.children.is_empty() && self.one.is_none() && self.many.is_none()
    }
}

/// Patterns mapped to values; a pattern may hold several values.
#[derive(Debug)]
pub struct TopicTrie<T> {
    root: Node<T>,
    len: usize,
}

impl<T> Default for TopicTrie<T> {
    fn default() -> Self {
        TopicTrie {
            root: Node::default(),
            len: 0,
        }
    }
}

/// Whether a leading wildcard may match a topic whose first level starts with `$`
/// (MQTT says it may not; AMQP has no such rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DollarRule {
    /// `#` and `+` as first level do not match `$`-topics (MQTT).
    Protect,
    /// Wildcards match any level (AMQP).
    Plain,
}

impl<T> TopicTrie<T> {
    /// Number of stored values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no value is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `value` under `pattern` unless an equal value (per `same`) is there.
    /// Returns whether it was added.
    pub fn insert<'a>(
        &mut self,
        pattern: impl IntoIterator<Item = Level<'a>>,
        value: T,
        same: impl Fn(&T, &T) -> bool,
    ) -> bool {
        let mut node = &mut self.root;
        for level in pattern {
            node = match level {
                Level::Literal(text) => node.children.entry(text.into()).or_default(),
                Level::One => node.one.get_or_insert_with(Default::default),
                Level::Many => node.many.get_or_insert_with(Default::default),
            };
        }
        if node.values.iter().any(|v| same(v, &value)) {
            return false;
        }
        node.values.push(value);
        self.len += 1;
        true
    }

    /// Removes the first value under `pattern` for which `is` holds, pruning
    /// emptied nodes. Returns the removed value.
    pub fn remove<'a>(
        &mut self,
        pattern: impl IntoIterator<Item = Level<'a>>,
        is: impl Fn(&T) -> bool,
    ) -> Option<T> {
        let levels: SmallVec<[Level<'a>; 16]> = pattern.into_iter().collect();
        let removed = remove_in(&mut self.root, &levels, &is);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Calls `f` with every value whose pattern matches `topic` (given as levels).
    /// A value reachable through several patterns is reported once per pattern.
    pub fn for_each_match(&self, topic: &[&str], rule: DollarRule, mut f: impl FnMut(&T)) {
        let protect =
            rule == DollarRule::Protect && topic.first().is_some_and(|l| l.starts_with('$'));
        walk(&self.root, topic, protect, &mut f);
    }

    /// Calls `f` with every stored value.
    pub fn for_each(&self, mut f: impl FnMut(&T)) {
        fn all<T>(node: &Node<T>, f: &mut impl FnMut(&T)) {
            node.values.iter().for_each(&mut *f);
            node.children.values().for_each(|c| all(c, f));
            if let Some(n) = &node.one {
                all(n, f);
            }
            if let Some(n) = &node.many {
                all(n, f);
            }
        }
        all(&self.root, &mut f);
    }

    /// Removes every value for which `drop` holds; returns how many.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) -> usize {
        fn prune<T>(node: &mut Node<T>, keep: &mut impl FnMut(&T) -> bool) -> usize {
            let before = node.values.len();
            node.values.retain(|v| keep(v));
            let mut removed = before - node.values.len();
            node.children.retain(|_, c| {
                removed += prune(c, keep);
                !c.is_empty()
            });
            for slot in [&mut node.one, &mut node.many] {
                if let Some(c) = slot {
                    removed += prune(c, keep);
                    if c.is_empty() {
                        *slot = None;
                    }
                }
            }
            removed
        }
        let removed = prune(&mut self.root, &mut keep);
        self.len -= removed;
        removed
    }
}

fn remove_in<T>(node: &mut Node<T>, levels: &[Level<'_>], is: &impl Fn(&T) -> bool) -> Option<T> {
    let Some((head, rest)) = levels.split_first() else {
        let at = node.values.iter().position(is)?;
        return Some(node.values.swap_remove(at));
    };
    match head {
        Level::Literal(text) => {
            let child = node.children.get_mut(*text)?;
            let removed = remove_in(child, rest, is);
            if child.is_empty() {
                node.children.remove(*text);
            }
            removed
        }
        Level::One | Level::Many => {
            let slot = if *head == Level::One {
                &mut node.one
            } else {
                &mut node.many
            };
            let child = slot.as_mut()?;
            let removed = remove_in(child, rest, is);
            if child.is_empty() {
                *slot = None;
            }
            removed
        }
    }
}

fn walk<T>(node: &Node<T>, topic: &[&str], protect_first: bool, f: &mut impl FnMut(&T)) {
    if let Some(many) = node.many.as_deref().filter(|_| !protect_first) {
        if many.is_terminal() {
            many.values.iter().for_each(&mut *f);
        } else {
            // `#` followed by more pattern: try every split of the remaining levels.
            for skip in 0..=topic.len() {
                walk(many, &topic[skip..], false, f);
            }
        }
    }
    match topic.split_first() {
        None => node.values.iter().for_each(f),
        Some((head, rest)) => {
            if let Some(child) = node.children.get(*head) {
                walk(child, rest, false, f);
            }
            if let Some(one) = node.one.as_deref().filter(|_| !protect_first) {
                walk(one, rest, false, f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie(patterns: &[&str]) -> TopicTrie<String> {
        let mut t = TopicTrie::default();
        for p in patterns {
            assert!(t.insert(mqtt_filter_levels(p), p.to_string(), |a, b| a == b));
        }
        t
    }

    fn matches(t: &TopicTrie<String>, topic: &str) -> Vec<String> {
        let levels: Vec<&str> = topic.split('/').collect();
        let mut out = Vec::new();
        t.for_each_match(&levels, DollarRule::Protect, |v| out.push(v.clone()));
        out.sort();
        out
    }

    #[test]
    fn exact_and_wildcard_filters_match() {
        let t = trie(&["a/b/c", "a/+/c", "a/#", "#", "+/+/+", "b/#"]);
        assert_eq!(
            matches(&t, "a/b/c"),
            ["#", "+/+/+", "a/#", "a/+/c", "a/b/c"]
        );
    }

    #[test]
    fn hash_matches_the_parent_level() {
        let t = trie(&["a/#"]);
        assert_eq!(matches(&t, "a"), ["a/#"]);
    }

    #[test]
    fn plus_matches_an_empty_level() {
        let t = trie(&["a/+/c"]);
        assert_eq!(matches(&t, "a//c"), ["a/+/c"]);
    }

    #[test]
    fn leading_wildcards_skip_dollar_topics() {
        let t = trie(&["#", "+/x", "$SYS/#"]);
        assert_eq!(matches(&t, "$SYS/x"), ["$SYS/#"]);
        assert_eq!(matches(&t, "a/x"), ["#", "+/x"]);
    }

    #[test]
    fn hash_in_the_middle_matches_any_number_of_levels() {
        let mut t = TopicTrie::default();
        let pat = [Level::Literal("a"), Level::Many, Level::Literal("z")];
        t.insert(pat, 1, |a, b| a == b);
        for (topic, want) in [
            ("a/z", true),
            ("a/b/z", true),
            ("a/b/c/z", true),
            ("a/b", false),
        ] {
            let levels: Vec<&str> = topic.split('/').collect();
            let mut hit = false;
            t.for_each_match(&levels, DollarRule::Plain, |_| hit = true);
            assert_eq!(hit, want, "{topic}");
        }
    }

    #[test]
    fn remove_prunes_and_counts() {
        let mut t = trie(&["a/b", "a/+"]);
        assert_eq!(
            t.remove(mqtt_filter_levels("a/b"), |v| v == "a/b")
                .as_deref(),
            Some("a/b")
        );
        assert_eq!(t.len(), 1);
        assert!(matches(&t, "a/b") == ["a/+"]);
        assert!(
            t.remove(mqtt_filter_levels("a/b"), |v| v == "a/b")
                .is_none()
        );
        assert_eq!(t.retain(|_| false), 1);
        assert!(t.is_empty());
        assert!(t.root.is_empty());
    }

    #[test]
    fn duplicate_insert_is_refused() {
        let mut t = trie(&["a"]);
        assert!(!t.insert(mqtt_filter_levels("a"), "a".to_string(), |a, b| a == b));
        assert_eq!(t.len(), 1);
    }
}
