//! Exchanges and bindings: where a published message goes.
//!
//! An [`Exchange`] holds bindings to queues and to other exchanges. Routing is a
//! read of the exchange's bindings from the publisher's own task (no router
//! task, no channel hop); it yields `(queue, hints)` pairs that the caller
//! enqueues. This module decides *where*; [`super::queue`] decides *what
//! happens there*.

use std::collections::HashMap;
use std::sync::Arc;

use std::sync::atomic::{AtomicBool, Ordering};

use amq_protocol::types::{AMQPValue, FieldTable};
use parking_lot::{Mutex, RwLock};
use tether_protocols::mqtt::UserProperties;

use super::bytestr::ByteStr;
use super::message::{KeyForm, Message, Qos, SharedMessage};
use super::queue::{BoundFrom, DeliveryHints, Queue};
use super::topic_trie::{DollarRule, Level, TopicTrie, mqtt_filter_levels};

/// The routing algorithm of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    /// Routing key equals binding key.
    Direct,
    /// Every binding.
    Fanout,
    /// Pattern match on levels (`*`/`+` one level, `#` any number).
    Topic,
    /// Match on message headers (`x-match` all / any).
    Headers,
}

impl ExchangeKind {
    /// The AMQP name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }

    /// The kind with this AMQP name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "direct" => Some(ExchangeKind::Direct),
            "fanout" => Some(ExchangeKind::Fanout),
            "topic" => Some(ExchangeKind::Topic),
            "headers" => Some(ExchangeKind::Headers),
            _ => None,
        }
    }
}

/// Where a binding leads.
#[derive(Debug, Clone)]
pub enum Destination {
    /// A queue.
    Queue(Arc<Queue>),
    /// Another exchange (exchange-to-exchange binding).
    Exchange(Arc<Exchange>),
}

impl Destination {
    /// Whether both lead to the same object.
    pub fn same(&self, other: &Destination) -> bool {
        match (self, other) {
            (Destination::Queue(a), Destination::Queue(b)) => Arc::ptr_eq(a, b),
            (Destination::Exchange(a), Destination::Exchange(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// Per-binding options that shape deliveries (MQTT subscription options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindingOptions {
    /// Highest QoS granted to the subscription (2 for AMQP bindings).
    pub max_qos: Qos,
    /// Skip messages whose origin is this id (MQTT no-local).
    pub no_local_origin: Option<u64>,
    /// Keep the RETAIN flag on delivery.
    pub retain_as_published: bool,
    /// MQTT subscription identifier, 0 for none.
    pub subscription_id: u32,
}

impl BindingOptions {
    /// Options for a plain AMQP binding: deliver at the published QoS.
    pub fn plain() -> Self {
        BindingOptions {
            max_qos: 2,
            ..Default::default()
        }
    }
}

/// One binding as stored.
#[derive(Debug, Clone)]
pub struct Binding {
    /// Where it leads.
    pub destination: Destination,
    /// The binding key as the client gave it.
    pub key: ByteStr,
    /// How the key is spelled.
    pub key_form: KeyForm,
    /// Delivery options.
    pub options: BindingOptions,
    /// Binding arguments (headers exchanges match on them).
    pub args: Option<Arc<FieldTable>>,
    /// A filter and transform applied to messages through this binding (SNS
    /// subscriptions: filter policy, JSON envelope).
    pub hook: Option<Arc<dyn BindingHook>>,
}

/// What an SNS subscription (or any front end) adds to a binding: which
/// messages pass, and what they become on the way. The transform applies to
/// queue destinations only.
pub trait BindingHook: Send + Sync + std::fmt::Debug {
    /// Whether `msg` goes through this binding.
    fn accepts(&self, msg: &Message) -> bool;
    /// The message to enqueue for `msg` (the same one when nothing changes).
    fn transform(&self, msg: &SharedMessage) -> SharedMessage;
}

/// A queue a message is routed to, with what its bindings add.
#[derive(Debug, Clone)]
pub struct Target {
    /// The queue.
    pub queue: Arc<Queue>,
    /// Merged delivery hints.
    pub hints: DeliveryHints,
    /// The hook of the (first) binding that selected it.
    pub hook: Option<Arc<dyn BindingHook>>,
}

/// One matched binding during routing.
type Matched = (Destination, DeliveryHints, Option<Arc<dyn BindingHook>>);

#[derive(Debug)]
enum Table {
    Direct(HashMap<ByteStr, Vec<Binding>, ahash::RandomState>),
    Fanout(Vec<Binding>),
    Topic(TopicTrie<Binding>),
    Headers(Vec<Binding>),
}

/// An exchange: a named routing table.
#[derive(Debug)]
pub struct Exchange {
    name: ByteStr,
    kind: ExchangeKind,
    /// Survives restarts (with the durable store).
    pub durable: bool,
    /// Deleted when its last binding is removed.
    pub auto_delete: bool,
    /// Clients may not publish to it directly.
    pub internal: bool,
    /// Where unroutable messages go instead (AMQP `alternate-exchange`).
    pub alternate: Option<ByteStr>,
    dollar_rule: DollarRule,
    table: RwLock<Table>,
    deleted: AtomicBool,
    /// Bindings that lead *to* this exchange (exchange-to-exchange), so deleting
    /// it removes them.
    pub(crate) bound_from: Mutex<Vec<BoundFrom>>,
    /// The arguments it was declared with.
    pub args: FieldTable,
}

/// Fixed properties of an exchange at declaration.
#[derive(Debug, Clone, Default)]
pub struct ExchangeOptions {
    /// Survives restarts.
    pub durable: bool,
    /// Deleted when its last binding goes.
    pub auto_delete: bool,
    /// Not publishable by clients.
    pub internal: bool,
    /// Alternate exchange name.
    pub alternate: Option<ByteStr>,
    /// Declaration arguments, kept for listings and equivalence checks.
    pub args: FieldTable,
}

impl Exchange {
    /// A new exchange with no bindings. `mqtt_dollar_rule` makes leading wildcards
    /// skip `$`-topics, as MQTT requires (used for `amq.topic`).
    pub fn new(
        name: ByteStr,
        kind: ExchangeKind,
        options: ExchangeOptions,
        mqtt_dollar_rule: bool,
    ) -> Arc<Self> {
        let table = match kind {
            ExchangeKind::Direct => Table::Direct(HashMap::default()),
            ExchangeKind::Fanout => Table::Fanout(Vec::new()),
            ExchangeKind::Topic => Table::Topic(TopicTrie::default()),
            ExchangeKind::Headers => Table::Headers(Vec::new()),
        };
        Arc::new(Exchange {
            name,
            kind,
            durable: options.durable,
            auto_delete: options.auto_delete,
            internal: options.internal,
            alternate: options.alternate,
            args: options.args,
            deleted: AtomicBool::new(false),
            bound_from: Mutex::new(Vec::new()),
            dollar_rule: if mqtt_dollar_rule {
                DollarRule::Protect
            } else {
                DollarRule::Plain
            },
            table: RwLock::new(table),
        })
    }

    /// The exchange's name.
    pub fn name(&self) -> &ByteStr {
        &self.name
    }

    /// Its routing algorithm.
    pub fn kind(&self) -> ExchangeKind {
        self.kind
    }

    /// Whether it was deleted (a publisher holding it must look it up again).
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Marks it deleted and drops its bindings.
    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
        let mut table = self.table.write();
        *table = match self.kind {
            ExchangeKind::Direct => Table::Direct(HashMap::default()),
            ExchangeKind::Fanout => Table::Fanout(Vec::new()),
            ExchangeKind::Topic => Table::Topic(TopicTrie::default()),
            ExchangeKind::Headers => Table::Headers(Vec::new()),
        };
    }

    /// Adds a binding; false if an identical one (destination and key) exists, in
    /// which case its options are updated.
    pub fn bind(&self, binding: Binding) -> bool {
        let mut table = self.table.write();
        // A binding is its destination, key and arguments (as in RabbitMQ).
        let same = |a: &Binding, b: &Binding| {
            a.destination.same(&b.destination)
                && a.key == b.key
                && same_args(a.args.as_deref(), b.args.as_deref())
        };
        match &mut *table {
            Table::Direct(map) => {
                let list = map.entry(binding.key.clone()).or_default();
                upsert(list, binding, same)
            }
            Table::Fanout(list) | Table::Headers(list) => upsert(list, binding, same),
            Table::Topic(trie) => {
                let pattern = pattern_levels(&binding.key, binding.key_form);
                let levels: Vec<Level<'_>> = pattern.iter().map(PatternLevel::as_level).collect();
                // Update options in place if the binding exists.
                let existing = trie.remove(levels.iter().copied(), |b| same(b, &binding));
                let fresh = existing.is_none();
                trie.insert(levels.iter().copied(), binding, |_, _| false);
                fresh
            }
        }
    }

    /// Removes the binding of `destination` under `key` with arguments `args`
    /// (`None`: whatever its arguments); returns whether one existed.
    pub fn unbind(
        &self,
        destination: &Destination,
        key: &str,
        key_form: KeyForm,
        args: Option<&FieldTable>,
    ) -> bool {
        let mut table = self.table.write();
        let is = |b: &Binding| {
            b.destination.same(destination)
                && &*b.key == key
                && args.is_none_or(|a| same_args(b.args.as_deref(), Some(a)))
        };
        match &mut *table {
            Table::Direct(map) => {
                let Some(list) = map.get_mut(key) else {
                    return false;
                };
                let before = list.len();
                list.retain(|b| !is(b));
                let removed = list.len() != before;
                if list.is_empty() {
                    map.remove(key);
                }
                removed
            }
            Table::Fanout(list) | Table::Headers(list) => {
                let before = list.len();
                list.retain(|b| !is(b));
                list.len() != before
            }
            Table::Topic(trie) => {
                let pattern = pattern_levels(key, key_form);
                trie.remove(pattern.iter().map(PatternLevel::as_level), is)
                    .is_some()
            }
        }
    }

    /// Removes every binding to `destination`; returns how many.
    pub fn unbind_all(&self, destination: &Destination) -> usize {
        let mut table = self.table.write();
        match &mut *table {
            Table::Direct(map) => {
                let mut n = 0;
                map.retain(|_, list| {
                    let before = list.len();
                    list.retain(|b| !b.destination.same(destination));
                    n += before - list.len();
                    !list.is_empty()
                });
                n
            }
            Table::Fanout(list) | Table::Headers(list) => {
                let before = list.len();
                list.retain(|b| !b.destination.same(destination));
                before - list.len()
            }
            Table::Topic(trie) => trie.retain(|b| !b.destination.same(destination)),
        }
    }

    /// Number of bindings.
    pub fn binding_count(&self) -> usize {
        match &*self.table.read() {
            Table::Direct(map) => map.values().map(Vec::len).sum(),
            Table::Fanout(list) | Table::Headers(list) => list.len(),
            Table::Topic(trie) => trie.len(),
        }
    }

    /// A copy of every binding (for listings and definitions export).
    pub fn bindings(&self) -> Vec<Binding> {
        let mut out = Vec::new();
        match &*self.table.read() {
            Table::Direct(map) => map.values().for_each(|l| out.extend(l.iter().cloned())),
            Table::Fanout(list) | Table::Headers(list) => out.extend(list.iter().cloned()),
            Table::Topic(trie) => trie.for_each(|b| out.push(b.clone())),
        }
        out
    }

    /// Appends every matching binding's destination for `msg` to `out`.
    fn matches(&self, msg: &Message, topic_scratch: &mut String, out: &mut Vec<Matched>) {
        let table = self.table.read();
        let push = |b: &Binding| {
            if b.options.no_local_origin == Some(msg.origin) {
                return;
            }
            if b.hook.as_ref().is_some_and(|h| !h.accepts(msg)) {
                return;
            }
            out.push((
                b.destination.clone(),
                DeliveryHints {
                    qos: msg.qos.min(b.options.max_qos),
                    retain_as_published: b.options.retain_as_published,
                    sub_ids: if b.options.subscription_id != 0 {
                        std::iter::once(b.options.subscription_id).collect()
                    } else {
                        Default::default()
                    },
                },
                b.hook.clone(),
            ));
        };
        match &*table {
            Table::Direct(map) => {
                if let Some(list) = map.get(msg.routing_key.as_str()) {
                    list.iter().for_each(push);
                }
            }
            Table::Fanout(list) => list.iter().for_each(push),
            Table::Headers(list) => list
                .iter()
                .filter(|b| headers_match(b.args.as_deref(), msg))
                .for_each(push),
            Table::Topic(trie) => {
                let topic: &str = match msg.key_form {
                    KeyForm::Mqtt => &msg.routing_key,
                    KeyForm::Amqp => {
                        swap_separators_into(&msg.routing_key, topic_scratch);
                        topic_scratch
                    }
                };
                let levels: smallvec::SmallVec<[&str; 16]> = topic.split('/').collect();
                trie.for_each_match(&levels, self.dollar_rule, push);
            }
        }
    }
}

/// Whether a headers-exchange binding with `args` matches `msg`: `x-match`
/// `all` (default) or `any`, and `all-with-x` / `any-with-x` which also compare
/// `x-` keys. A binding value of void matches any value of that header. MQTT
/// user properties count as string headers.
fn headers_match(args: Option<&FieldTable>, msg: &Message) -> bool {
    let Some(args) = args else { return true };
    let mode = match args.inner().get("x-match") {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_owned(),
        _ => "all".to_owned(),
    };
    let (any, with_x) = match mode.as_str() {
        "any" => (true, false),
        "all-with-x" => (false, true),
        "any-with-x" => (true, true),
        _ => (false, false),
    };
    let props = msg.props.as_deref();
    let amqp = props.and_then(|p| p.amqp_headers());
    let lookup = |key: &str| -> Option<AMQPValue> {
        if let Some(h) = amqp {
            return h.inner().get(key).cloned();
        }
        let raw = props?.mqtt_user_properties();
        UserProperties::Encoded(raw)
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| AMQPValue::LongString(v.into()))
    };
    let mut considered = 0;
    let mut matched = 0;
    for (k, want) in args.inner() {
        if k.as_str() == "x-match" || (!with_x && k.as_str().starts_with("x-")) {
            continue;
        }
        considered += 1;
        let hit = match (lookup(k.as_str()), want) {
            (Some(_), AMQPValue::Void) => true,
            (Some(have), want) => values_equal(&have, want),
            (None, _) => false,
        };
        if hit {
            matched += 1;
        }
    }
    if any {
        matched > 0
    } else {
        matched == considered
    }
}

/// Header equality that treats the string types as one and the integer types as one.
fn values_equal(a: &AMQPValue, b: &AMQPValue) -> bool {
    fn text(v: &AMQPValue) -> Option<Vec<u8>> {
        match v {
            AMQPValue::LongString(s) => Some(s.as_bytes().to_vec()),
            AMQPValue::ShortString(s) => Some(s.as_str().as_bytes().to_vec()),
            _ => None,
        }
    }
    fn int(v: &AMQPValue) -> Option<i128> {
        match v {
            AMQPValue::ShortShortInt(n) => Some((*n).into()),
            AMQPValue::ShortShortUInt(n) => Some((*n).into()),
            AMQPValue::ShortInt(n) => Some((*n).into()),
            AMQPValue::ShortUInt(n) => Some((*n).into()),
            AMQPValue::LongInt(n) => Some((*n).into()),
            AMQPValue::LongUInt(n) => Some((*n).into()),
            AMQPValue::LongLongInt(n) => Some((*n).into()),
            AMQPValue::Timestamp(n) => Some((*n).into()),
            _ => None,
        }
    }
    match (text(a), text(b)) {
        (Some(x), Some(y)) => return x == y,
        (Some(_), None) | (None, Some(_)) => return false,
        _ => {}
    }
    match (int(a), int(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Binding-argument equality, where no arguments equal an empty table.
/// Binding arguments compare equal (no arguments equals an empty table).
pub(crate) fn same_args(a: Option<&FieldTable>, b: Option<&FieldTable>) -> bool {
    let empty = FieldTable::default();
    a.unwrap_or(&empty) == b.unwrap_or(&empty)
}

fn upsert(
    list: &mut Vec<Binding>,
    binding: Binding,
    same: impl Fn(&Binding, &Binding) -> bool,
) -> bool {
    match list.iter_mut().find(|b| same(b, &binding)) {
        Some(existing) => {
            existing.options = binding.options;
            false
        }
        None => {
            list.push(binding);
            true
        }
    }
}

/// Writes `src` into `dst` with `/` and `.` swapped: MQTT topic ↔ AMQP routing
/// key (lossless, see `tether_protocols::mapping`). Reuses `dst`'s capacity.
pub fn swap_separators_into(src: &str, dst: &mut String) {
    dst.clear();
    dst.extend(src.chars().map(|c| match c {
        '/' => '.',
        '.' => '/',
        c => c,
    }));
}

/// An owned pattern level (binding keys are converted once, at bind time).
#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternLevel {
    Literal(String),
    One,
    Many,
}

impl PatternLevel {
    fn as_level(&self) -> Level<'_> {
        match self {
            PatternLevel::Literal(s) => Level::Literal(s),
            PatternLevel::One => Level::One,
            PatternLevel::Many => Level::Many,
        }
    }
}

/// Converts a binding key to trie levels in MQTT spelling.
fn pattern_levels(key: &str, form: KeyForm) -> Vec<PatternLevel> {
    match form {
        KeyForm::Mqtt => mqtt_filter_levels(key)
            .map(|l| match l {
                Level::Literal(s) => PatternLevel::Literal(s.to_owned()),
                Level::One => PatternLevel::One,
                Level::Many => PatternLevel::Many,
            })
            .collect(),
        KeyForm::Amqp => key
            .split('.')
            .map(|w| match w {
                "*" => PatternLevel::One,
                "#" => PatternLevel::Many,
                word => PatternLevel::Literal(word.replace('/', ".")),
            })
            .collect(),
    }
}

/// Reusable buffers for routing, owned by a publishing connection so that
/// routing a message allocates nothing once warmed up.
#[derive(Debug, Default)]
pub struct RouteScratch {
    matched: Vec<Matched>,
    exchanges: Vec<Arc<Exchange>>,
    topic: String,
    /// Queues the last [`route`] selected, each once, with merged hints.
    pub targets: Vec<Target>,
    /// A queue the last publish left congested (see
    /// [`FlowControl`](super::queue::FlowControl)), for the publisher to wait on.
    pub congested: Option<Arc<super::queue::Queue>>,
}

/// Finds the queues `msg` reaches from `exchange`, following exchange-to-exchange
/// bindings (each exchange visited once) and alternate exchanges, via `lookup`
/// for exchanges named by `alternate-exchange`. Leaves one entry per queue in
/// `scratch.targets`, with hints merged across matching bindings.
pub fn route(
    exchange: &Arc<Exchange>,
    msg: &Message,
    lookup: impl Fn(&str) -> Option<Arc<Exchange>>,
    scratch: &mut RouteScratch,
) {
    scratch.targets.clear();
    scratch.exchanges.clear();
    scratch.matched.clear();
    scratch.exchanges.push(exchange.clone());
    let mut next = 0;
    while next < scratch.exchanges.len() {
        let ex = scratch.exchanges[next].clone();
        next += 1;
        let start = scratch.matched.len();
        ex.matches(msg, &mut scratch.topic, &mut scratch.matched);
        let mut routed_here = false;
        for (dest, hints, hook) in scratch.matched.drain(start..) {
            routed_here = true;
            match dest {
                Destination::Queue(queue) => scratch.targets.push(Target { queue, hints, hook }),
                Destination::Exchange(e) => {
                    if !scratch.exchanges.iter().any(|x| Arc::ptr_eq(x, &e)) {
                        scratch.exchanges.push(e);
                    }
                }
            }
        }
        if !routed_here
            && let Some(alt) = ex.alternate.as_deref().and_then(&lookup)
            && !scratch.exchanges.iter().any(|x| Arc::ptr_eq(x, &alt))
        {
            scratch.exchanges.push(alt);
        }
    }
    merge_targets(&mut scratch.targets);
}

/// Collapses duplicate queues, merging their hints (max QoS, any RAP, all ids).
fn merge_targets(targets: &mut Vec<Target>) {
    if targets.len() < 2 {
        return;
    }
    targets.sort_by_key(|t| Arc::as_ptr(&t.queue) as usize);
    let mut out = 0;
    for i in 1..targets.len() {
        if Arc::ptr_eq(&targets[out].queue, &targets[i].queue) {
            let extra = std::mem::take(&mut targets[i].hints);
            let merged = &mut targets[out].hints;
            merged.qos = merged.qos.max(extra.qos);
            merged.retain_as_published |= extra.retain_as_published;
            for id in extra.sub_ids {
                if !merged.sub_ids.contains(&id) {
                    merged.sub_ids.push(id);
                }
            }
        } else {
            out += 1;
            targets.swap(out, i);
        }
    }
    targets.truncate(out + 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::queue::{QueueEnv, QueueOptions};
    use bytes::Bytes;

    fn queue(name: &str) -> Arc<Queue> {
        Queue::new(
            name.into(),
            QueueOptions::default(),
            &QueueEnv::new(usize::MAX),
        )
    }

    fn msg(key: &str, form: KeyForm, qos: u8) -> Message {
        Message {
            id: 1,
            routing_key: key.into(),
            key_form: form,
            exchange: ByteStr::from_static(""),
            payload: Bytes::new(),
            qos,
            retain: false,
            persistent: false,
            priority: 0,
            published_at_ms: 0,
            expires_at: None,
            origin: 42,
            props: None,
        }
    }

    fn bind(ex: &Exchange, q: &Arc<Queue>, key: &str, form: KeyForm, options: BindingOptions) {
        ex.bind(Binding {
            destination: Destination::Queue(q.clone()),
            key: key.into(),
            key_form: form,
            options,
            args: None,
            hook: None,
        });
    }

    fn targets(ex: &Arc<Exchange>, m: &Message) -> Vec<(String, DeliveryHints)> {
        let mut s = RouteScratch::default();
        route(ex, m, |_| None, &mut s);
        let mut out: Vec<_> = s
            .targets
            .iter()
            .map(|t| (t.queue.name().to_string(), t.hints.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn amqp_binding_receives_mqtt_publish_with_dotted_level() {
        let ex = Exchange::new(
            "amq.topic".into(),
            ExchangeKind::Topic,
            Default::default(),
            true,
        );
        let q = queue("q");
        bind(
            &ex,
            &q,
            "sensors.*.temp",
            KeyForm::Amqp,
            BindingOptions::plain(),
        );
        let hit = targets(&ex, &msg("sensors/v1.2/temp", KeyForm::Mqtt, 1));
        assert_eq!(hit.len(), 1);
        assert!(targets(&ex, &msg("sensors/v1/2/temp", KeyForm::Mqtt, 1)).is_empty());
    }

    #[test]
    fn mqtt_filter_receives_amqp_publish() {
        let ex = Exchange::new(
            "amq.topic".into(),
            ExchangeKind::Topic,
            Default::default(),
            true,
        );
        let q = queue("s");
        bind(
            &ex,
            &q,
            "cmd/+",
            KeyForm::Mqtt,
            BindingOptions {
                max_qos: 1,
                ..Default::default()
            },
        );
        assert_eq!(targets(&ex, &msg("cmd.42", KeyForm::Amqp, 1)).len(), 1);
        // A literal `/` in an AMQP word is a `.` inside one MQTT level.
        assert_eq!(targets(&ex, &msg("cmd.4/2", KeyForm::Amqp, 1)).len(), 1);
        assert!(targets(&ex, &msg("cmd.4.2", KeyForm::Amqp, 1)).is_empty());
    }

    #[test]
    fn overlapping_bindings_deliver_once_with_merged_hints() {
        let ex = Exchange::new("t".into(), ExchangeKind::Topic, Default::default(), true);
        let q = queue("s");
        bind(
            &ex,
            &q,
            "a/#",
            KeyForm::Mqtt,
            BindingOptions {
                max_qos: 0,
                subscription_id: 1,
                ..Default::default()
            },
        );
        bind(
            &ex,
            &q,
            "a/b",
            KeyForm::Mqtt,
            BindingOptions {
                max_qos: 2,
                subscription_id: 2,
                ..Default::default()
            },
        );
        let hit = targets(&ex, &msg("a/b", KeyForm::Mqtt, 1));
        assert_eq!(hit.len(), 1);
        assert_eq!(hit[0].1.qos, 1);
        let mut ids = hit[0].1.sub_ids.to_vec();
        ids.sort();
        assert_eq!(ids, [1, 2]);
    }

    #[test]
    fn no_local_skips_own_messages() {
        let ex = Exchange::new("t".into(), ExchangeKind::Topic, Default::default(), true);
        let q = queue("s");
        bind(
            &ex,
            &q,
            "a",
            KeyForm::Mqtt,
            BindingOptions {
                max_qos: 1,
                no_local_origin: Some(42),
                ..Default::default()
            },
        );
        assert!(targets(&ex, &msg("a", KeyForm::Mqtt, 1)).is_empty());
    }

    #[test]
    fn exchange_to_exchange_bindings_are_followed_once() {
        let a = Exchange::new("a".into(), ExchangeKind::Fanout, Default::default(), false);
        let b = Exchange::new("b".into(), ExchangeKind::Fanout, Default::default(), false);
        let q = queue("q");
        a.bind(Binding {
            destination: Destination::Exchange(b.clone()),
            key: "".into(),
            key_form: KeyForm::Amqp,
            options: BindingOptions::plain(),
            args: None,
            hook: None,
        });
        b.bind(Binding {
            destination: Destination::Exchange(a.clone()),
            key: "".into(),
            key_form: KeyForm::Amqp,
            options: BindingOptions::plain(),
            args: None,
            hook: None,
        });
        bind(&b, &q, "", KeyForm::Amqp, BindingOptions::plain());
        assert_eq!(targets(&a, &msg("x", KeyForm::Amqp, 1)).len(), 1);
    }

    #[test]
    fn direct_exchange_matches_exact_key_and_unbinds() {
        let ex = Exchange::new("d".into(), ExchangeKind::Direct, Default::default(), false);
        let q = queue("q");
        bind(&ex, &q, "k", KeyForm::Amqp, BindingOptions::plain());
        assert_eq!(targets(&ex, &msg("k", KeyForm::Amqp, 1)).len(), 1);
        assert!(targets(&ex, &msg("k2", KeyForm::Amqp, 1)).is_empty());
        assert!(ex.unbind(&Destination::Queue(q.clone()), "k", KeyForm::Amqp, None));
        assert!(targets(&ex, &msg("k", KeyForm::Amqp, 1)).is_empty());
    }
}
