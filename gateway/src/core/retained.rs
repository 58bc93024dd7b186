//! Retained messages: the last retained message per MQTT topic, found by exact
//! topic or by wildcard filter when a client subscribes.
//!
//! Stored as a tree of topic levels, so a wildcard subscription walks only the
//! branches its filter can reach instead of every retained topic.

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::RwLock;

use super::message::SharedMessage;
use crate::store::codec::{decode_message, encode_message};
use crate::store::recovery::MetaRecord;
use crate::store::{Op, Ops, SharedStore, Space, keys};

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node, ahash::RandomState>,
    message: Option<SharedMessage>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.message.is_none() && self.children.is_empty()
    }
}

/// The retained-message store.
#[derive(Debug, Default)]
pub struct RetainedStore {
    root: RwLock<Node>,
    count: std::sync::atomic::AtomicUsize,
    /// Keeps every retained message across restarts, when set.
    store: Option<SharedStore>,
}

impl RetainedStore {
    /// A store whose messages are also kept in `store`.
    pub fn with_store(store: SharedStore) -> Self {
        RetainedStore {
            store: store.is_persistent().then_some(store),
            ..Default::default()
        }
    }

    /// Puts back the retained messages kept in the store (start-up); expired
    /// ones are removed from it.
    pub fn restore(&self, records: Vec<MetaRecord>) {
        let now = Instant::now();
        let mut ops = Ops::new();
        for r in records {
            let topic = r.part(0);
            match decode_message(&r.value) {
                Ok(m) if !m.is_expired(now) => self.insert(&topic, std::sync::Arc::new(m)),
                Ok(_) => ops.push(Op::Remove(
                    Space::Meta,
                    keys::meta_key(keys::RETAINED, &[topic.as_bytes()]),
                )),
                Err(e) => {
                    tracing::warn!(%topic, error = %e, "skipping a stored retained message that does not decode");
                }
            }
        }
        if let Some(store) = &self.store {
            store.submit(ops);
        }
    }

    /// Stores `msg` as the retained message of `topic` (an MQTT topic name), or
    /// clears the topic's retained message when the payload is empty.
    pub fn set(&self, topic: &str, msg: SharedMessage) {
        let mut root = self.root.write();
        if let Some(store) = &self.store {
            // Under the tree's lock, so concurrent sets of one topic reach the
            // store in the order they take effect here.
            let key = keys::meta_key(keys::RETAINED, &[topic.as_bytes()]);
            let mut ops = Ops::new();
            ops.push(if msg.payload.is_empty() {
                Op::Remove(Space::Meta, key)
            } else {
                Op::Put(Space::Meta, key, encode_message(&msg))
            });
            store.submit(ops);
        }
        self.insert_locked(&mut root, topic, msg);
    }

    fn insert(&self, topic: &str, msg: SharedMessage) {
        let mut root = self.root.write();
        self.insert_locked(&mut root, topic, msg);
    }

    fn insert_locked(&self, root: &mut Node, topic: &str, msg: SharedMessage) {
        use std::sync::atomic::Ordering::Relaxed;
        if msg.payload.is_empty() {
            if remove(root, &mut topic.split('/')) {
                self.count.fetch_sub(1, Relaxed);
            }
            return;
        }
        let mut node = root;
        for level in topic.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        if node.message.replace(msg).is_none() {
            self.count.fetch_add(1, Relaxed);
        }
    }

    /// Number of retained topics.
    pub fn len(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every unexpired retained message whose topic matches `filter` (an MQTT
    /// filter), with the `$`-topic rule applied.
    pub fn matching(&self, filter: &str) -> Vec<SharedMessage> {
        let now = Instant::now();
        let levels: Vec<&str> = filter.split('/').collect();
        let root = self.root.read();
        let mut out = Vec::new();
        collect(&root, &levels, true, now, &mut out);
        out
    }
}

fn remove<'a>(node: &mut Node, levels: &mut impl Iterator<Item = &'a str>) -> bool {
    match levels.next() {
        None => node.message.take().is_some(),
        Some(level) => {
            let Some(child) = node.children.get_mut(level) else {
                return false;
            };
            let removed = remove(child, levels);
            if child.is_empty() {
                node.children.remove(level);
            }
            removed
        }
    }
}

fn collect(
    node: &Node,
    filter: &[&str],
    at_root: bool,
    now: Instant,
    out: &mut Vec<SharedMessage>,
) {
    let skip_dollar = |name: &str| at_root && name.starts_with('$');
    let Some((head, rest)) = filter.split_first() else {
        if let Some(m) = node.message.as_ref().filter(|m| !m.is_expired(now)) {
            out.push(m.clone());
        }
        return;
    };
    match *head {
        "#" => {
            // `a/#` also matches `a` itself.
            if !at_root && let Some(m) = node.message.as_ref().filter(|m| !m.is_expired(now)) {
                out.push(m.clone());
            }
            for (name, child) in &node.children {
                if !skip_dollar(name) {
                    all(child, now, out);
                }
            }
        }
        "+" => {
            for (name, child) in &node.children {
                if !skip_dollar(name) {
                    collect(child, rest, false, now, out);
                }
            }
        }
        literal => {
            if let Some(child) = node.children.get(literal) {
                collect(child, rest, false, now, out);
            }
        }
    }
}

fn all(node: &Node, now: Instant, out: &mut Vec<SharedMessage>) {
    if let Some(m) = node.message.as_ref().filter(|m| !m.is_expired(now)) {
        out.push(m.clone());
    }
    for child in node.children.values() {
        all(child, now, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::message::{KeyForm, Message};
    use bytes::Bytes;
    use std::sync::Arc;

    fn msg(topic: &str, body: &str) -> SharedMessage {
        Arc::new(Message {
            id: 0,
            routing_key: topic.into(),
            key_form: KeyForm::Mqtt,
            exchange: crate::core::bytestr::ByteStr::from_static(""),
            payload: Bytes::copy_from_slice(body.as_bytes()),
            qos: 0,
            retain: true,
            persistent: false,
            priority: 0,
            published_at_ms: 0,
            expires_at: None,
            origin: 0,
            props: None,
        })
    }

    fn topics(store: &RetainedStore, filter: &str) -> Vec<String> {
        let mut v: Vec<String> = store
            .matching(filter)
            .iter()
            .map(|m| m.routing_key.to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn set_replace_and_clear() {
        let s = RetainedStore::default();
        s.set("a/b", msg("a/b", "1"));
        s.set("a/b", msg("a/b", "2"));
        assert_eq!(s.len(), 1);
        assert_eq!(&s.matching("a/b")[0].payload[..], b"2");
        s.set("a/b", msg("a/b", ""));
        assert!(s.matching("a/b").is_empty());
        assert!(s.is_empty());
    }

    #[test]
    fn wildcards_find_retained_messages() {
        let s = RetainedStore::default();
        for t in ["a", "a/b", "a/b/c", "a/x/c", "$SYS/up", "b"] {
            s.set(t, msg(t, "x"));
        }
        assert_eq!(topics(&s, "a/#"), ["a", "a/b", "a/b/c", "a/x/c"]);
        assert_eq!(topics(&s, "a/+/c"), ["a/b/c", "a/x/c"]);
        assert_eq!(topics(&s, "#"), ["a", "a/b", "a/b/c", "a/x/c", "b"]);
        assert_eq!(topics(&s, "+"), ["a", "b"]);
        assert_eq!(topics(&s, "$SYS/#"), ["$SYS/up"]);
    }
}
