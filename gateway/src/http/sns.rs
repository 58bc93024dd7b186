//! The Amazon SNS API over core exchanges.
//!
//! A topic is a fanout exchange of the default vhost named like the topic, so
//! AMQP publishers (and MQTT, through rules or exchange bindings) feed it too.
//! A subscription is a binding from that exchange with a hook: the filter
//! policy decides what passes, and the transform produces what the endpoint
//! receives (the message itself with raw delivery, or SNS's JSON envelope).
//! `sqs` endpoints are core queues; `http`/`https` endpoints get a private
//! core queue drained by a delivery task that POSTs with retries.
//!
//! Topics and subscriptions survive restarts. The core keeps a topic's
//! exchange (it is durable) but not the bindings that carry hooks, so this
//! module stores, as JSON in the Meta space, each topic under
//! `keys::SNS_TOPIC [name]` (with its FIFO sequence high-water mark under
//! `[name, "sequence"]`) and each subscription under
//! `keys::SNS_SUBSCRIPTION [arn]`, while the request that changes them runs
//! (so its response waits for them). [`Sns::new`] reads them back: topics
//! take the exchange the core rebuilt, subscriptions are bound again with
//! their hook, and HTTP subscriptions get their delivery queue (durable, with
//! the messages it held) and task back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::aws::{ApiError, Params, Xml};
use super::sns_filter::{AttrValue, FilterPolicy, Scope};
use crate::config::{AwsConfig, SnsConfig};
use crate::core::Core;
use crate::core::bytestr::ByteStr;
use crate::core::exchange::{BindingHook, Exchange, ExchangeKind, ExchangeOptions};
use crate::core::message::{
    AttributeValue, KeyForm, Message, MessageAttribute, MessageProperties, SharedMessage, now_ms,
};
use crate::core::queue::{Queue, QueueOptions};
use crate::core::vhost::VHost;
use crate::store::records::{from_json, put_json};
use crate::store::{Key, Op, Ops, SharedStore, Space, keys};

const XMLNS: &str = "http://sns.amazonaws.com/doc/2010-03-31/";

/// FIFO sequence numbers reserved (and stored) at a time.
const SEQUENCE_BLOCK: u64 = 1024;

/// A topic.
#[derive(Debug)]
struct Topic {
    name: String,
    arn: String,
    exchange: Arc<Exchange>,
    fifo: bool,
    attributes: BTreeMap<String, String>,
    tags: Vec<(String, String)>,
    /// Shared by every version of the topic (attribute changes replace it).
    sequence: Arc<Sequence>,
}

impl Topic {
    /// This topic with other attributes or tags.
    fn with(
        &self,
        attributes: BTreeMap<String, String>,
        tags: Vec<(String, String)>,
    ) -> Arc<Topic> {
        Arc::new(Topic {
            name: self.name.clone(),
            arn: self.arn.clone(),
            exchange: self.exchange.clone(),
            fifo: self.fifo,
            attributes,
            tags,
            sequence: self.sequence.clone(),
        })
    }

    /// Stores the topic (called with the topic map locked, so the store sees
    /// changes in the order they were made).
    fn save(&self, store: &SharedStore) {
        let record = TopicRecord {
            arn: self.arn.clone(),
            fifo: self.fifo,
            attributes: self.attributes.clone(),
            tags: self.tags.clone(),
        };
        let mut ops = Ops::new();
        ops.push(put_json(topic_key(&self.name), &record));
        store.submit(ops);
    }
}

/// A topic as stored under `keys::SNS_TOPIC [name]`.
#[derive(Debug, Serialize, Deserialize)]
struct TopicRecord {
    arn: String,
    fifo: bool,
    attributes: BTreeMap<String, String>,
    tags: Vec<(String, String)>,
}

/// A FIFO topic's SequenceNumber counter. Numbers only grow, across restarts
/// too: blocks of [`SEQUENCE_BLOCK`] are reserved in the store (under
/// `keys::SNS_TOPIC [name, "sequence"]`) before a number of the block is
/// handed out, and a restart continues after the last reservation. That
/// costs one small write per block rather than one per publish; the numbers
/// a restart skips are gaps, which SNS sequence numbers may have.
#[derive(Debug)]
struct Sequence {
    next: AtomicU64,
    reserved: AtomicU64,
    reserving: Mutex<()>,
}

impl Sequence {
    fn starting_after(n: u64) -> Arc<Self> {
        Arc::new(Sequence {
            next: AtomicU64::new(n),
            reserved: AtomicU64::new(n),
            reserving: Mutex::new(()),
        })
    }

    /// The next number of topic `name`, reserving a block first when needed.
    fn next(&self, name: &str, store: &SharedStore) -> u64 {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.reserved.load(Ordering::Acquire) {
            let _one = self.reserving.lock();
            if n > self.reserved.load(Ordering::Acquire) {
                let upto = n + SEQUENCE_BLOCK;
                let mut ops = Ops::new();
                ops.push(put_json(sequence_key(name), &upto));
                store.submit(ops);
                self.reserved.store(upto, Ordering::Release);
            }
        }
        n
    }
}

fn topic_key(name: &str) -> Key {
    keys::meta_key(keys::SNS_TOPIC, &[name.as_bytes()])
}

fn sequence_key(name: &str) -> Key {
    keys::meta_key(keys::SNS_TOPIC, &[name.as_bytes(), b"sequence"])
}

fn subscription_key(arn: &str) -> Key {
    keys::meta_key(keys::SNS_SUBSCRIPTION, &[arn.as_bytes()])
}

/// A subscription's settings, changeable with SetSubscriptionAttributes.
#[derive(Debug, Clone, Default)]
struct SubSettings {
    raw: bool,
    filter: Option<FilterPolicy>,
    filter_text: Option<String>,
    scope: String,
    redrive: Option<String>,
    delivery_policy: Option<String>,
}

/// The hook a subscription puts on its binding.
#[derive(Debug)]
pub struct SubscriptionHook {
    topic_arn: String,
    subscription_arn: String,
    protocol: String,
    /// Base URL for SigningCertURL / UnsubscribeURL in envelopes.
    base_url: String,
    id_prefix: u64,
    settings: RwLock<SubSettings>,
}

/// A subscription as stored under `keys::SNS_SUBSCRIPTION [arn]`.
#[derive(Debug, Serialize, Deserialize)]
struct SubscriptionRecord {
    topic_arn: String,
    protocol: String,
    endpoint: String,
    /// Base URL of envelope links (from the Subscribe request's host).
    base_url: String,
    raw: bool,
    filter_policy: Option<String>,
    filter_policy_scope: String,
    redrive_policy: Option<String>,
    delivery_policy: Option<String>,
    /// `http`/`https`: the identity of the private delivery queue, whose
    /// messages the store keeps under it.
    #[serde(default)]
    delivery_queue: Option<u64>,
}

/// A subscription.
#[derive(Debug)]
struct Subscription {
    arn: String,
    topic_arn: String,
    protocol: String,
    endpoint: String,
    queue: Arc<Queue>,
    hook: Arc<SubscriptionHook>,
    /// Cancels the HTTP delivery task.
    delivery: Option<CancellationToken>,
}

/// The SNS service.
#[derive(Debug)]
pub struct Sns {
    core: Arc<Core>,
    vhost: Arc<VHost>,
    aws: AwsConfig,
    cfg: SnsConfig,
    topics: Mutex<BTreeMap<String, Arc<Topic>>>,
    subscriptions: Mutex<BTreeMap<String, Subscription>>,
    id_prefix: u64,
    shutdown: CancellationToken,
}

impl Sns {
    /// The SNS API over the default vhost, with the topics and subscriptions
    /// the store kept.
    pub fn new(
        core: Arc<Core>,
        aws: AwsConfig,
        cfg: SnsConfig,
        id_prefix: u64,
        shutdown: CancellationToken,
    ) -> Self {
        let sns = Sns {
            vhost: core.vhost.clone(),
            core,
            aws,
            cfg,
            topics: Mutex::new(BTreeMap::new()),
            subscriptions: Mutex::new(BTreeMap::new()),
            id_prefix,
            shutdown,
        };
        sns.restore_topics();
        sns.restore_subscriptions();
        sns
    }

    /// Takes back the stored topics. Each reuses the fanout exchange the core
    /// rebuilt (or declares it again if that record was lost), and FIFO
    /// topics continue their SequenceNumbers after the last reservation.
    fn restore_topics(&self) {
        let records = self.core.take_recovered(keys::SNS_TOPIC);
        let mut sequences: HashMap<String, u64> = HashMap::new();
        for r in records.iter().filter(|r| r.parts.len() == 2) {
            if r.part(1) == "sequence"
                && let Some(n) = from_json::<u64>("sns topic sequence", &r.value)
            {
                sequences.insert(r.part(0), n);
            }
        }
        let mut topics = self.topics.lock();
        for r in records.iter().filter(|r| r.parts.len() == 1) {
            let name = r.part(0);
            let Some(rec) = from_json::<TopicRecord>("sns topic", &r.value) else {
                continue;
            };
            let exchange = match self
                .vhost
                .exchange(&name)
                .filter(|e| e.kind() == ExchangeKind::Fanout)
            {
                Some(e) => e,
                None => {
                    let declared = self.vhost.declare_exchange(
                        &name,
                        ExchangeKind::Fanout,
                        ExchangeOptions {
                            durable: true,
                            ..Default::default()
                        },
                    );
                    match declared {
                        Ok((e, _)) => e,
                        Err(e) => {
                            tracing::warn!(topic = %name, error = %e, "cannot restore an SNS topic's exchange; topic skipped");
                            continue;
                        }
                    }
                }
            };
            let sequence = Sequence::starting_after(sequences.remove(&name).unwrap_or(0));
            topics.insert(
                name.clone(),
                Arc::new(Topic {
                    name,
                    arn: rec.arn,
                    exchange,
                    fifo: rec.fifo,
                    attributes: rec.attributes,
                    tags: rec.tags,
                    sequence,
                }),
            );
        }
        // Reservations of topics that are gone (a deletion cut short).
        let mut ops = Ops::new();
        for name in sequences.keys().filter(|n| !topics.contains_key(*n)) {
            ops.push(Op::Remove(Space::Meta, sequence_key(name)));
        }
        if !ops.is_empty() {
            self.core.store.submit(ops);
        }
    }

    /// Takes back the stored subscriptions under their old ARNs: each is bound
    /// to its topic again with its hook (filter policy and delivery
    /// settings), and HTTP subscriptions restart their delivery task. A
    /// subscription whose topic did not come back is removed. One whose SQS
    /// queue is gone stays listed, as it was before the restart, and receives
    /// nothing.
    fn restore_subscriptions(&self) {
        let mut gone = Ops::new();
        for r in self.core.take_recovered(keys::SNS_SUBSCRIPTION) {
            let arn = r.part(0);
            let Some(rec) = from_json::<SubscriptionRecord>("sns subscription", &r.value) else {
                continue;
            };
            let Ok(topic) = self.topic(&rec.topic_arn) else {
                tracing::warn!(subscription = %arn, "dropping a stored SNS subscription whose topic did not come back");
                gone.push(Op::Remove(Space::Meta, subscription_key(&arn)));
                continue;
            };
            let hook = Arc::new(SubscriptionHook {
                topic_arn: topic.arn.clone(),
                subscription_arn: arn.clone(),
                protocol: rec.protocol.clone(),
                base_url: rec.base_url.clone(),
                id_prefix: self.id_prefix,
                settings: RwLock::new(SubSettings {
                    raw: rec.raw,
                    scope: rec.filter_policy_scope.clone(),
                    redrive: rec.redrive_policy.clone(),
                    delivery_policy: rec.delivery_policy.clone(),
                    ..Default::default()
                }),
            });
            if let Some(text) = &rec.filter_policy
                && let Err(e) = apply_subscription_attribute(&hook, "FilterPolicy", text)
            {
                // Never deliver unfiltered what was meant to be filtered.
                tracing::warn!(subscription = %arn, error = %e.message, "skipping a stored SNS subscription whose filter policy does not parse");
                continue;
            }
            let (queue, delivery) = match rec.protocol.as_str() {
                "http" | "https" => {
                    let (q, c) = self.http_delivery(&arn, &rec.endpoint, &hook, rec.delivery_queue);
                    (q, Some(c))
                }
                _ => {
                    let name = rec.endpoint.rsplit(':').next().unwrap_or_default();
                    match self.vhost.queue(name) {
                        Some(q) => (q, None),
                        None => {
                            tracing::info!(subscription = %arn, queue = name, "the SQS queue of a stored SNS subscription is gone; it receives nothing");
                            let placeholder = Queue::new(
                                ByteStr::from(format!("sns-gone:{arn}")),
                                QueueOptions::default(),
                                self.vhost.env(),
                            );
                            placeholder.delete();
                            (placeholder, None)
                        }
                    }
                }
            };
            if !queue.is_deleted() {
                self.vhost
                    .bind_queue_hooked(&topic.exchange, &queue, &arn, hook.clone());
            }
            self.subscriptions.lock().insert(
                arn.clone(),
                Subscription {
                    arn,
                    topic_arn: topic.arn.clone(),
                    protocol: rec.protocol,
                    endpoint: rec.endpoint,
                    queue,
                    hook,
                    delivery,
                },
            );
        }
        if !gone.is_empty() {
            self.core.store.submit(gone);
        }
    }

    /// The private, durable queue of an HTTP subscription (the stored one
    /// under `uid`, with its messages, or a new one) and its running delivery
    /// task's cancellation.
    fn http_delivery(
        &self,
        arn: &str,
        endpoint: &str,
        hook: &Arc<SubscriptionHook>,
        uid: Option<u64>,
    ) -> (Arc<Queue>, CancellationToken) {
        let name = ByteStr::from(format!("sns-http:{arn}"));
        let options = QueueOptions {
            durable: true,
            ..Default::default()
        };
        let queue = match uid {
            Some(uid) => Queue::restored(name, options, uid, self.vhost.env()),
            None => Queue::new(name, options, self.vhost.env()),
        };
        let cancel = self.shutdown.child_token();
        super::sns_http::spawn(
            queue.clone(),
            endpoint.to_owned(),
            hook.clone(),
            self.cfg.clone(),
            cancel.clone(),
            self.vhost.clone(),
            self.core.metrics.clone(),
        );
        (queue, cancel)
    }

    /// Stores a subscription (called with the subscription map locked, so
    /// the store sees changes in the order they were made).
    fn save_subscription(&self, s: &Subscription) {
        let st = s.hook.settings.read().clone();
        let record = SubscriptionRecord {
            topic_arn: s.topic_arn.clone(),
            protocol: s.protocol.clone(),
            endpoint: s.endpoint.clone(),
            base_url: s.hook.base_url.clone(),
            raw: st.raw,
            filter_policy: st.filter_text,
            filter_policy_scope: st.scope,
            redrive_policy: st.redrive,
            delivery_policy: st.delivery_policy,
            delivery_queue: s.delivery.as_ref().map(|_| s.queue.uid()),
        };
        let mut ops = Ops::new();
        ops.push(put_json(subscription_key(&s.arn), &record));
        self.core.store.submit(ops);
    }

    /// The SNS operations this service answers.
    pub fn knows(action: &str) -> bool {
        matches!(
            action,
            "CreateTopic"
                | "DeleteTopic"
                | "ListTopics"
                | "GetTopicAttributes"
                | "SetTopicAttributes"
                | "Subscribe"
                | "ConfirmSubscription"
                | "Unsubscribe"
                | "ListSubscriptions"
                | "ListSubscriptionsByTopic"
                | "GetSubscriptionAttributes"
                | "SetSubscriptionAttributes"
                | "Publish"
                | "PublishBatch"
                | "TagResource"
                | "UntagResource"
                | "ListTagsForResource"
        )
    }

    /// The ARN of topic `name`.
    pub fn arn(&self, name: &str) -> String {
        format!(
            "arn:aws:sns:{}:{}:{name}",
            self.aws.region, self.aws.account_id
        )
    }

    /// Runs one operation.
    pub fn call(&self, action: &str, p: &Params, host: &str) -> Result<Value, ApiError> {
        match action {
            "CreateTopic" => self.create_topic(p),
            "DeleteTopic" => self.delete_topic(p),
            "ListTopics" => self.list_topics(p),
            "GetTopicAttributes" => self.get_topic_attributes(p),
            "SetTopicAttributes" => self.set_topic_attributes(p),
            "Subscribe" => self.subscribe(p, host),
            "ConfirmSubscription" => self.confirm_subscription(p),
            "Unsubscribe" => self.unsubscribe(p),
            "ListSubscriptions" => self.list_subscriptions(None),
            "ListSubscriptionsByTopic" => {
                let topic = self.topic(p.need_str("TopicArn")?)?;
                self.list_subscriptions(Some(&topic.arn))
            }
            "GetSubscriptionAttributes" => self.get_subscription_attributes(p),
            "SetSubscriptionAttributes" => self.set_subscription_attributes(p),
            "Publish" => self.publish(p),
            "PublishBatch" => self.publish_batch(p),
            "TagResource" => self.tag_resource(p),
            "UntagResource" => self.untag_resource(p),
            "ListTagsForResource" => self.list_tags(p),
            other => Err(ApiError::sender(
                "InvalidAction",
                format!("The action {other} is not valid for this endpoint."),
            )),
        }
    }

    fn topic(&self, arn: &str) -> Result<Arc<Topic>, ApiError> {
        let name = arn.rsplit(':').next().unwrap_or(arn);
        self.topics
            .lock()
            .get(name)
            .filter(|t| t.arn == arn || arn == name)
            .cloned()
            .ok_or_else(not_found_topic)
    }

    /// Checks a new topic's name and attributes as CreateTopic does; whether
    /// it is a FIFO topic.
    pub fn check_topic(name: &str, attrs: &BTreeMap<String, String>) -> Result<bool, ApiError> {
        let fifo_name = name.ends_with(".fifo");
        let base = name.strip_suffix(".fifo").unwrap_or(name);
        if base.is_empty()
            || name.len() > 256
            || !base
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid_parameter("Topic Name"));
        }
        let fifo = attrs.get("FifoTopic").is_some_and(|v| v == "true");
        if fifo != fifo_name {
            return Err(invalid_parameter(
                "Fifo Topic names must end with .fifo and must be made up of only uppercase and lowercase ASCII letters, numbers, underscores, and hyphens, and must be between 1 and 256 characters long.",
            ));
        }
        for k in attrs.keys() {
            check_topic_attribute(k, fifo)?;
        }
        Ok(fifo)
    }

    /// Every topic's name and the attributes it was given (CreateTopic,
    /// SetTopicAttributes), by name.
    pub fn topic_attributes(&self) -> Vec<(String, BTreeMap<String, String>)> {
        self.topics
            .lock()
            .values()
            .map(|t| (t.name.clone(), t.attributes.clone()))
            .collect()
    }

    /// Checks a subscription's endpoint form and attributes as Subscribe
    /// does, subscribing nothing. Whether an `sqs` endpoint's queue exists is
    /// the caller's to check.
    pub fn check_subscription(
        &self,
        protocol: &str,
        endpoint: &str,
        attrs: &[(String, String)],
    ) -> Result<(), ApiError> {
        let protocol = protocol.to_ascii_lowercase();
        match protocol.as_str() {
            "sqs" if !endpoint.starts_with("arn:aws:sqs:") => {
                return Err(invalid_parameter("Invalid parameter: SQS endpoint ARN"));
            }
            "sqs" => {}
            "http" | "https" => {
                if !valid_http_endpoint(&protocol, endpoint) {
                    return Err(invalid_parameter(
                        "Invalid parameter: Endpoint must match the specified protocol",
                    ));
                }
            }
            _ => {
                return Err(invalid_parameter(&format!(
                    "Invalid parameter: Amazon SNS does not support this protocol string: {protocol}"
                )));
            }
        }
        self.subscription_hook("", "", &protocol, "localhost", attrs)
            .map(|_| ())
    }

    /// A subscription's hook with `attrs` applied (FilterPolicyScope first,
    /// so the filter policy is read in its scope).
    fn subscription_hook(
        &self,
        topic_arn: &str,
        arn: &str,
        protocol: &str,
        host: &str,
        attrs: &[(String, String)],
    ) -> Result<Arc<SubscriptionHook>, ApiError> {
        let hook = Arc::new(SubscriptionHook {
            topic_arn: topic_arn.to_owned(),
            subscription_arn: arn.to_owned(),
            protocol: protocol.to_owned(),
            base_url: format!("http://{host}"),
            id_prefix: self.id_prefix,
            settings: RwLock::new(SubSettings {
                scope: "MessageAttributes".into(),
                ..Default::default()
            }),
        });
        let mut attrs = attrs.to_vec();
        attrs.sort_by_key(|(k, _)| k != "FilterPolicyScope");
        for (k, v) in &attrs {
            apply_subscription_attribute(&hook, k, v)?;
        }
        Ok(hook)
    }

    fn create_topic(&self, p: &Params) -> Result<Value, ApiError> {
        let name = p.need_str("Name")?;
        let attrs: BTreeMap<String, String> = p.string_map("Attributes").into_iter().collect();
        let fifo = Self::check_topic(name, &attrs)?;
        let mut topics = self.topics.lock();
        if let Some(t) = topics.get(name) {
            let conflicting = attrs
                .iter()
                .any(|(k, v)| t.attributes.get(k).is_some_and(|old| old != v));
            if conflicting {
                return Err(invalid_parameter(
                    "Attributes: Topic already exists with different attributes",
                ));
            }
            return Ok(json!({ "TopicArn": t.arn }));
        }
        let (exchange, _) = self
            .vhost
            .declare_exchange(
                name,
                ExchangeKind::Fanout,
                ExchangeOptions {
                    durable: true,
                    ..Default::default()
                },
            )
            .map_err(|e| invalid_parameter(&e.to_string()))?;
        let arn = self.arn(name);
        let tags = tags_of(p);
        let topic = Arc::new(Topic {
            name: name.to_owned(),
            arn: arn.clone(),
            exchange,
            fifo,
            attributes: attrs,
            tags,
            sequence: Sequence::starting_after(0),
        });
        topic.save(&self.core.store);
        topics.insert(name.to_owned(), topic);
        Ok(json!({ "TopicArn": arn }))
    }

    fn delete_topic(&self, p: &Params) -> Result<Value, ApiError> {
        let arn = p.need_str("TopicArn")?;
        let Ok(topic) = self.topic(arn) else {
            // Deleting a topic that does not exist succeeds, as in SNS.
            return Ok(json!({}));
        };
        let subs: Vec<String> = self
            .subscriptions
            .lock()
            .values()
            .filter(|s| s.topic_arn == topic.arn)
            .map(|s| s.arn.clone())
            .collect();
        for s in subs {
            self.remove_subscription(&s);
        }
        {
            let mut topics = self.topics.lock();
            topics.remove(&topic.name);
            // The topic and its sequence reservation.
            let mut ops = Ops::new();
            ops.push(Op::RemovePrefix(Space::Meta, topic_key(&topic.name)));
            self.core.store.submit(ops);
        }
        let _ = self.vhost.delete_exchange(&topic.name, false);
        Ok(json!({}))
    }

    fn list_topics(&self, p: &Params) -> Result<Value, ApiError> {
        let after = p.str("NextToken").map(str::to_owned);
        let topics = self.topics.lock();
        let page: Vec<&Arc<Topic>> = topics
            .values()
            .filter(|t| after.as_deref().is_none_or(|a| t.name.as_str() > a))
            .take(101)
            .collect();
        let more = page.len() > 100;
        let list: Vec<Value> = page
            .iter()
            .take(100)
            .map(|t| json!({ "TopicArn": t.arn }))
            .collect();
        let mut out = json!({ "Topics": list });
        if more {
            out["NextToken"] = Value::String(page[99].name.clone());
        }
        Ok(out)
    }

    fn get_topic_attributes(&self, p: &Params) -> Result<Value, ApiError> {
        let topic = self.topic(p.need_str("TopicArn")?)?;
        let subs = self
            .subscriptions
            .lock()
            .values()
            .filter(|s| s.topic_arn == topic.arn)
            .count();
        let mut attrs = Map::new();
        attrs.insert("TopicArn".into(), Value::String(topic.arn.clone()));
        attrs.insert("Owner".into(), Value::String(self.aws.account_id.clone()));
        attrs.insert(
            "SubscriptionsConfirmed".into(),
            Value::String(subs.to_string()),
        );
        attrs.insert("SubscriptionsPending".into(), Value::String("0".into()));
        attrs.insert("SubscriptionsDeleted".into(), Value::String("0".into()));
        attrs.insert(
            "DisplayName".into(),
            Value::String(
                topic
                    .attributes
                    .get("DisplayName")
                    .cloned()
                    .unwrap_or_default(),
            ),
        );
        attrs.insert(
            "Policy".into(),
            Value::String(
                topic
                    .attributes
                    .get("Policy")
                    .cloned()
                    .unwrap_or_else(|| default_policy(&topic.arn, &self.aws.account_id)),
            ),
        );
        if topic.fifo {
            attrs.insert("FifoTopic".into(), Value::String("true".into()));
            attrs.insert(
                "ContentBasedDeduplication".into(),
                Value::String(
                    topic
                        .attributes
                        .get("ContentBasedDeduplication")
                        .cloned()
                        .unwrap_or_else(|| "false".into()),
                ),
            );
        }
        for (k, v) in &topic.attributes {
            attrs
                .entry(k.clone())
                .or_insert_with(|| Value::String(v.clone()));
        }
        Ok(json!({ "Attributes": attrs }))
    }

    fn set_topic_attributes(&self, p: &Params) -> Result<Value, ApiError> {
        let topic = self.topic(p.need_str("TopicArn")?)?;
        let name = p.need_str("AttributeName")?;
        check_topic_attribute(name, topic.fifo)?;
        if name == "FifoTopic" {
            return Err(invalid_parameter(
                "AttributeName: FifoTopic cannot be changed",
            ));
        }
        let value = p.str("AttributeValue").unwrap_or_default().to_owned();
        let mut topics = self.topics.lock();
        if let Some(t) = topics.get_mut(&topic.name) {
            let mut attributes = t.attributes.clone();
            attributes.insert(name.to_owned(), value);
            *t = t.with(attributes, t.tags.clone());
            t.save(&self.core.store);
        }
        Ok(json!({}))
    }

    fn subscribe(&self, p: &Params, host: &str) -> Result<Value, ApiError> {
        let topic = self.topic(p.need_str("TopicArn")?)?;
        let protocol = p.need_str("Protocol")?.to_ascii_lowercase();
        let endpoint = p.str("Endpoint").unwrap_or_default().to_owned();
        let attrs = p.string_map("Attributes");
        if let Some(existing) =
            self.subscriptions.lock().values().find(|s| {
                s.topic_arn == topic.arn && s.protocol == protocol && s.endpoint == endpoint
            })
        {
            return Ok(json!({ "SubscriptionArn": existing.arn }));
        }
        let arn = format!("{}:{}", topic.arn, uuid::Uuid::new_v4());
        let hook = self.subscription_hook(&topic.arn, &arn, &protocol, host, &attrs)?;
        let (queue, delivery) = match protocol.as_str() {
            "sqs" => {
                let name = endpoint.rsplit(':').next().unwrap_or_default();
                let queue = self
                    .vhost
                    .queue(name)
                    .filter(|_| endpoint.starts_with("arn:aws:sqs:"))
                    .ok_or_else(|| invalid_parameter("Invalid parameter: SQS endpoint ARN"))?;
                if !topic.fifo && queue.options().fifo {
                    return Err(invalid_parameter(
                        "Invalid parameter: Invalid parameter: Endpoint Reason: Please use FIFO SNS topic",
                    ));
                }
                (queue, None)
            }
            "http" | "https" if topic.fifo => {
                return Err(invalid_parameter(
                    "Invalid parameter: Endpoint Reason: FIFO topics support only SQS endpoints",
                ));
            }
            "http" | "https" => {
                if !valid_http_endpoint(&protocol, &endpoint) {
                    return Err(invalid_parameter(
                        "Invalid parameter: Endpoint must match the specified protocol",
                    ));
                }
                let (queue, cancel) = self.http_delivery(&arn, &endpoint, &hook, None);
                (queue, Some(cancel))
            }
            _ => {
                return Err(invalid_parameter(&format!(
                    "Invalid parameter: Amazon SNS does not support this protocol string: {protocol}"
                )));
            }
        };
        let sub = Subscription {
            arn: arn.clone(),
            topic_arn: topic.arn.clone(),
            protocol,
            endpoint,
            queue,
            hook,
            delivery,
        };
        let mut subs = self.subscriptions.lock();
        // Stored before the binding exists, so no message reaches a delivery
        // queue the store does not know.
        self.save_subscription(&sub);
        self.vhost
            .bind_queue_hooked(&topic.exchange, &sub.queue, &arn, sub.hook.clone());
        subs.insert(arn.clone(), sub);
        Ok(json!({ "SubscriptionArn": arn }))
    }

    fn confirm_subscription(&self, p: &Params) -> Result<Value, ApiError> {
        let topic = self.topic(p.need_str("TopicArn")?)?;
        let token = p.need_str("Token")?;
        let subs = self.subscriptions.lock();
        let s = subs
            .values()
            .find(|s| s.topic_arn == topic.arn && (s.arn == token || s.arn.ends_with(token)))
            .ok_or_else(|| invalid_parameter("Invalid token"))?;
        Ok(json!({ "SubscriptionArn": s.arn }))
    }

    fn remove_subscription(&self, arn: &str) -> bool {
        let Some(s) = ({
            let mut subs = self.subscriptions.lock();
            let removed = subs.remove(arn);
            if removed.is_some() {
                let mut ops = Ops::new();
                ops.push(Op::Remove(Space::Meta, subscription_key(arn)));
                self.core.store.submit(ops);
            }
            removed
        }) else {
            return false;
        };
        if let Ok(topic) = self.topic(&s.topic_arn) {
            self.vhost
                .unbind_queue(&topic.exchange, &s.queue, &s.arn, KeyForm::Amqp, None);
        }
        if let Some(c) = s.delivery {
            c.cancel();
            s.queue.delete();
        }
        true
    }

    fn unsubscribe(&self, p: &Params) -> Result<Value, ApiError> {
        let arn = p.need_str("SubscriptionArn")?;
        if !self.remove_subscription(arn) {
            return Err(ApiError::sender("NotFound", "Subscription does not exist").status(404));
        }
        Ok(json!({}))
    }

    fn list_subscriptions(&self, topic: Option<&str>) -> Result<Value, ApiError> {
        let subs = self.subscriptions.lock();
        let list: Vec<Value> = subs
            .values()
            .filter(|s| topic.is_none_or(|t| s.topic_arn == t))
            .map(|s| {
                json!({
                    "SubscriptionArn": s.arn,
                    "Owner": self.aws.account_id,
                    "Protocol": s.protocol,
                    "Endpoint": s.endpoint,
                    "TopicArn": s.topic_arn,
                })
            })
            .collect();
        Ok(json!({ "Subscriptions": list }))
    }

    fn get_subscription_attributes(&self, p: &Params) -> Result<Value, ApiError> {
        let arn = p.need_str("SubscriptionArn")?;
        let subs = self.subscriptions.lock();
        let s = subs.get(arn).ok_or_else(|| {
            ApiError::sender("NotFound", "Subscription does not exist").status(404)
        })?;
        let st = s.hook.settings.read().clone();
        let mut attrs = Map::new();
        for (k, v) in [
            ("SubscriptionArn", s.arn.clone()),
            ("TopicArn", s.topic_arn.clone()),
            ("Owner", self.aws.account_id.clone()),
            ("Protocol", s.protocol.clone()),
            ("Endpoint", s.endpoint.clone()),
            ("PendingConfirmation", "false".into()),
            ("ConfirmationWasAuthenticated", "true".into()),
            ("RawMessageDelivery", st.raw.to_string()),
            ("FilterPolicyScope", st.scope.clone()),
        ] {
            attrs.insert(k.into(), Value::String(v));
        }
        if let Some(f) = st.filter_text {
            attrs.insert("FilterPolicy".into(), Value::String(f));
        }
        if let Some(r) = st.redrive {
            attrs.insert("RedrivePolicy".into(), Value::String(r));
        }
        if let Some(d) = st.delivery_policy {
            attrs.insert("DeliveryPolicy".into(), Value::String(d));
        }
        Ok(json!({ "Attributes": attrs }))
    }

    fn set_subscription_attributes(&self, p: &Params) -> Result<Value, ApiError> {
        let arn = p.need_str("SubscriptionArn")?;
        let name = p.need_str("AttributeName")?;
        let value = p.str("AttributeValue").unwrap_or_default();
        let subs = self.subscriptions.lock();
        let s = subs.get(arn).ok_or_else(|| {
            ApiError::sender("NotFound", "Subscription does not exist").status(404)
        })?;
        apply_subscription_attribute(&s.hook, name, value)?;
        self.save_subscription(s);
        Ok(json!({}))
    }

    fn build(&self, topic: &Topic, e: &Params) -> Result<Arc<Message>, ApiError> {
        let text = e.need_str("Message")?;
        if text.is_empty() {
            return Err(invalid_parameter("Empty message"));
        }
        if text.len() > 262_144 {
            return Err(invalid_parameter("Message too long"));
        }
        let per_protocol = e.str("MessageStructure") == Some("json");
        if per_protocol {
            let v: Value = serde_json::from_str(text).map_err(|_| {
                invalid_parameter("Message Structure - JSON message body failed to parse")
            })?;
            if v.get("default").and_then(Value::as_str).is_none() {
                return Err(invalid_parameter(
                    "Message Structure - No default entry in JSON message body",
                ));
            }
        }
        let attributes = parse_attributes(e.object("MessageAttributes"))?;
        let group = e.str("MessageGroupId").map(ByteStr::from);
        let mut dedup = e.str("MessageDeduplicationId").map(ByteStr::from);
        if topic.fifo {
            if group.is_none() {
                return Err(invalid_parameter(
                    "The MessageGroupId parameter is required for FIFO topics",
                ));
            }
            if dedup.is_none() {
                if topic
                    .attributes
                    .get("ContentBasedDeduplication")
                    .is_some_and(|v| v == "true")
                {
                    use sha2::Digest;
                    let d = sha2::Sha256::digest(text.as_bytes());
                    dedup = Some(ByteStr::from(
                        d.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                    ));
                } else {
                    return Err(invalid_parameter(
                        "The topic should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                    ));
                }
            }
        }
        let mut props = MessageProperties::from_sqs(attributes, group, dedup);
        props.subject = e.str("Subject").map(ByteStr::from);
        props.per_protocol = per_protocol;
        Ok(Arc::new(Message {
            id: self.core.ids.next(),
            routing_key: ByteStr::from(topic.name.as_str()),
            key_form: KeyForm::Amqp,
            exchange: ByteStr::from(topic.name.as_str()),
            payload: Bytes::copy_from_slice(text.as_bytes()),
            qos: 1,
            retain: false,
            persistent: true,
            priority: 0,
            published_at_ms: now_ms(),
            expires_at: None,
            origin: 0,
            props: Some(Box::new(props)),
        }))
    }

    fn publish_one(&self, topic: &Topic, e: &Params) -> Result<Value, ApiError> {
        let msg = self.build(topic, e)?;
        let mut scratch = crate::core::exchange::RouteScratch::default();
        self.vhost.publish(&topic.exchange, &msg, &mut scratch);
        self.core.metrics.add(
            crate::metrics::Protocol::Sns,
            crate::metrics::Count::MessagesReceived,
            1,
        );
        let mut out = Map::new();
        out.insert(
            "MessageId".into(),
            Value::String(message_id(self.id_prefix, msg.id)),
        );
        if topic.fifo {
            let seq = topic.sequence.next(&topic.name, &self.core.store);
            out.insert("SequenceNumber".into(), Value::String(format!("{seq:020}")));
        }
        Ok(Value::Object(out))
    }

    fn publish(&self, p: &Params) -> Result<Value, ApiError> {
        let arn = p
            .str("TopicArn")
            .or_else(|| p.str("TargetArn"))
            .ok_or_else(|| ApiError::missing("TopicArn"))?;
        let topic = self.topic(arn)?;
        self.publish_one(&topic, p)
    }

    fn publish_batch(&self, p: &Params) -> Result<Value, ApiError> {
        let topic = self.topic(p.need_str("TopicArn")?)?;
        let entries = p.objects("PublishBatchRequestEntries");
        if entries.is_empty() {
            return Err(ApiError::sender(
                "EmptyBatchRequest",
                "The batch request doesn't contain any entries.",
            ));
        }
        if entries.len() > 10 {
            return Err(ApiError::sender(
                "TooManyEntriesInBatchRequest",
                "The batch request contains more entries than permissible.",
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for e in &entries {
            if !ids.insert(e.str("Id").unwrap_or_default().to_owned()) {
                return Err(ApiError::sender(
                    "BatchEntryIdsNotDistinct",
                    "Two or more batch entries in the request have the same Id.",
                ));
            }
        }
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for e in &entries {
            let id = e.str("Id").unwrap_or_default();
            match self.publish_one(&topic, e) {
                Ok(Value::Object(mut m)) => {
                    m.insert("Id".into(), Value::String(id.to_owned()));
                    ok.push(Value::Object(m));
                }
                Ok(_) => {}
                Err(err) => failed.push(json!({ "Id": id, "Code": err.query_code, "Message": err.message, "SenderFault": err.sender_fault })),
            }
        }
        Ok(json!({ "Successful": ok, "Failed": failed }))
    }

    fn tag_resource(&self, p: &Params) -> Result<Value, ApiError> {
        let topic = self.topic(p.need_str("ResourceArn")?).map_err(|_| {
            ApiError::sender("ResourceNotFound", "Resource does not exist").status(404)
        })?;
        let tags = tags_of(p);
        let mut topics = self.topics.lock();
        if let Some(t) = topics.get_mut(&topic.name) {
            let mut merged = t.tags.clone();
            for (k, v) in tags {
                match merged.iter_mut().find(|(mk, _)| *mk == k) {
                    Some(m) => m.1 = v,
                    None => merged.push((k, v)),
                }
            }
            *t = t.with(t.attributes.clone(), merged);
            t.save(&self.core.store);
        }
        Ok(json!({}))
    }

    fn untag_resource(&self, p: &Params) -> Result<Value, ApiError> {
        let topic = self.topic(p.need_str("ResourceArn")?).map_err(|_| {
            ApiError::sender("ResourceNotFound", "Resource does not exist").status(404)
        })?;
        let keys = p.string_list("TagKeys");
        let mut topics = self.topics.lock();
        if let Some(t) = topics.get_mut(&topic.name) {
            let tags = t
                .tags
                .iter()
                .filter(|(k, _)| !keys.contains(k))
                .cloned()
                .collect();
            *t = t.with(t.attributes.clone(), tags);
            t.save(&self.core.store);
        }
        Ok(json!({}))
    }

    fn list_tags(&self, p: &Params) -> Result<Value, ApiError> {
        let topic = self.topic(p.need_str("ResourceArn")?).map_err(|_| {
            ApiError::sender("ResourceNotFound", "Resource does not exist").status(404)
        })?;
        let tags: Vec<Value> = topic
            .tags
            .iter()
            .map(|(k, v)| json!({ "Key": k, "Value": v }))
            .collect();
        Ok(json!({ "Tags": tags }))
    }

    /// Renders a result in the query protocol's XML.
    pub fn render(action: &str, v: &Value, request_id: &str) -> String {
        let root = format!("{action}Response");
        let result = format!("{action}Result");
        let mut x = Xml::new(&root, XMLNS);
        x.open(&result);
        if let Value::Object(m) = v {
            for (k, val) in m {
                render_field(&mut x, k, val);
            }
        }
        x.close(&result);
        x.finish(&root, request_id)
    }
}

fn render_field(x: &mut Xml, key: &str, v: &Value) {
    match v {
        Value::Object(m) if key == "Attributes" => {
            x.open(key);
            for (k, val) in m {
                x.open("entry")
                    .text("key", k)
                    .value("value", Some(val))
                    .close("entry");
            }
            x.close(key);
        }
        Value::Array(items) => {
            x.open(key);
            for i in items {
                x.open("member");
                if let Value::Object(m) = i {
                    for (k, val) in m {
                        render_field(x, k, val);
                    }
                } else {
                    x.value("member", Some(i));
                }
                x.close("member");
            }
            x.close(key);
        }
        Value::Object(m) => {
            x.open(key);
            for (k, val) in m {
                render_field(x, k, val);
            }
            x.close(key);
        }
        _ => {
            x.value(key, Some(v));
        }
    }
}

/// A UUID-shaped message id for message `id` (shared by SQS and SNS so a
/// message keeps one id end to end).
pub fn message_id(prefix: u64, id: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        (prefix >> 32) as u32,
        (prefix >> 16) as u16,
        (prefix & 0x0fff) as u16,
        0x8000 | ((id >> 48) as u16 & 0x3fff),
        id & 0xffff_ffff_ffff
    )
}

/// Whether `endpoint` is a URL of `protocol` (`http` or `https`).
fn valid_http_endpoint(protocol: &str, endpoint: &str) -> bool {
    endpoint.starts_with(&format!("{protocol}://")) && endpoint.parse::<hyper::Uri>().is_ok()
}

fn not_found_topic() -> ApiError {
    ApiError::sender("NotFound", "Topic does not exist").status(404)
}

fn invalid_parameter(message: &str) -> ApiError {
    ApiError::sender("InvalidParameter", message.to_owned())
}

fn check_topic_attribute(name: &str, fifo: bool) -> Result<(), ApiError> {
    match name {
        "DisplayName"
        | "Policy"
        | "DeliveryPolicy"
        | "KmsMasterKeyId"
        | "SignatureVersion"
        | "TracingConfig"
        | "FifoTopic"
        | "ArchivePolicy"
        | "DataProtectionPolicy" => Ok(()),
        "ContentBasedDeduplication" | "FifoThroughputScope" if fifo => Ok(()),
        _ => Err(invalid_parameter(&format!(
            "Invalid parameter: AttributeName {name}"
        ))),
    }
}

fn default_policy(arn: &str, account: &str) -> String {
    json!({
        "Version": "2008-10-17",
        "Id": "__default_policy_ID",
        "Statement": [{
            "Sid": "__default_statement_ID",
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": ["SNS:Publish", "SNS:Subscribe", "SNS:Receive"],
            "Resource": arn,
            "Condition": {"StringEquals": {"AWS:SourceOwner": account}}
        }]
    })
    .to_string()
}

fn tags_of(p: &Params) -> Vec<(String, String)> {
    p.objects("Tags")
        .iter()
        .filter_map(|t| {
            Some((
                t.str("Key")?.to_owned(),
                t.str("Value").unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

fn apply_subscription_attribute(
    hook: &SubscriptionHook,
    name: &str,
    value: &str,
) -> Result<(), ApiError> {
    let mut st = hook.settings.write();
    match name {
        "RawMessageDelivery" => {
            st.raw = match value {
                "true" => true,
                "false" => false,
                _ => return Err(invalid_parameter("Invalid parameter: RawMessageDelivery")),
            };
        }
        "FilterPolicy" => {
            if value.is_empty() {
                st.filter = None;
                st.filter_text = None;
            } else {
                let scope = if st.scope == "MessageBody" {
                    Scope::Body
                } else {
                    Scope::Attributes
                };
                st.filter = Some(
                    FilterPolicy::parse(value, scope)
                        .map_err(|e| invalid_parameter(&format!("Invalid parameter: {e}")))?,
                );
                st.filter_text = Some(value.to_owned());
            }
        }
        "FilterPolicyScope" => {
            let scope = match value {
                "MessageAttributes" => Scope::Attributes,
                "MessageBody" => Scope::Body,
                _ => return Err(invalid_parameter("Invalid parameter: FilterPolicyScope")),
            };
            st.scope = value.to_owned();
            if let Some(text) = st.filter_text.clone() {
                st.filter = Some(
                    FilterPolicy::parse(&text, scope)
                        .map_err(|e| invalid_parameter(&format!("Invalid parameter: {e}")))?,
                );
            }
        }
        "RedrivePolicy" => st.redrive = (!value.is_empty()).then(|| value.to_owned()),
        "DeliveryPolicy" => st.delivery_policy = (!value.is_empty()).then(|| value.to_owned()),
        "SubscriptionRoleArn" => {}
        _ => {
            return Err(invalid_parameter(&format!(
                "Invalid parameter: AttributeName {name}"
            )));
        }
    }
    Ok(())
}

fn parse_attributes(m: Option<&Map<String, Value>>) -> Result<Vec<MessageAttribute>, ApiError> {
    let Some(m) = m else { return Ok(Vec::new()) };
    let mut out = Vec::with_capacity(m.len());
    for (name, v) in m {
        let data_type = v
            .get("DataType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let value = match data_type.split('.').next().unwrap_or_default() {
            "String" | "Number" => AttributeValue::Text(ByteStr::from(
                v.get("StringValue")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid_parameter(&format!("The message attribute '{name}' must contain non-empty message attribute value.")))?,
            )),
            "Binary" => AttributeValue::Binary(Bytes::from(
                STANDARD
                    .decode(v.get("BinaryValue").and_then(Value::as_str).unwrap_or_default())
                    .map_err(|_| invalid_parameter(&format!("The message attribute '{name}' has an invalid binary value.")))?,
            )),
            _ => {
                return Err(invalid_parameter(&format!(
                    "The message attribute '{name}' has an invalid message attribute type, the set of supported type prefixes is Binary, Number, and String."
                )));
            }
        };
        out.push(MessageAttribute {
            name: ByteStr::from(name.as_str()),
            data_type: ByteStr::from(data_type),
            value,
        });
    }
    Ok(out)
}

impl SubscriptionHook {
    /// Whether the subscription uses raw message delivery.
    pub fn raw(&self) -> bool {
        self.settings.read().raw
    }

    /// The subscription's ARN.
    pub fn arn(&self) -> &str {
        &self.subscription_arn
    }

    /// The topic's ARN.
    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }

    /// The MessageId of core message `id`, as envelopes carry it.
    pub fn message_id(&self, id: u64) -> String {
        message_id(self.id_prefix, id)
    }

    /// The subscription's redrive policy, if any.
    pub fn redrive(&self) -> Option<String> {
        self.settings.read().redrive.clone()
    }

    /// The text this endpoint receives for a MessageStructure=json message.
    fn body_for_protocol(&self, msg: &Message) -> String {
        let text = String::from_utf8_lossy(&msg.payload).into_owned();
        if !msg.props.as_ref().is_some_and(|p| p.per_protocol) {
            return text;
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        v.get(&self.protocol)
            .or_else(|| v.get("default"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    /// SNS's JSON envelope for `msg`.
    pub fn envelope(&self, msg: &Message) -> String {
        let props = msg.props.as_deref();
        let mut attrs = Map::new();
        for a in props.map(|p| p.sqs_attributes()).unwrap_or_default() {
            let (kind, value) = match &a.value {
                AttributeValue::Text(t) => (a.data_type.to_string(), t.to_string()),
                AttributeValue::Binary(b) => ("Binary".to_owned(), STANDARD.encode(b)),
            };
            attrs.insert(a.name.to_string(), json!({ "Type": kind, "Value": value }));
        }
        let mut env = Map::new();
        env.insert("Type".into(), json!("Notification"));
        env.insert(
            "MessageId".into(),
            json!(message_id(self.id_prefix, msg.id)),
        );
        if let Some(seq) = props.and_then(|p| p.dedup_id.as_ref()).map(|_| msg.id) {
            env.insert("SequenceNumber".into(), json!(format!("{seq:020}")));
        }
        env.insert("TopicArn".into(), json!(self.topic_arn));
        if let Some(s) = props.and_then(|p| p.subject.as_ref()) {
            env.insert("Subject".into(), json!(s.as_str()));
        }
        env.insert("Message".into(), json!(self.body_for_protocol(msg)));
        env.insert("Timestamp".into(), json!(iso8601(msg.published_at_ms)));
        env.insert("SignatureVersion".into(), json!("1"));
        // Tether does not hold an AWS signing certificate; the signature field
        // is present for parsers but cannot be verified.
        env.insert(
            "Signature".into(),
            json!(STANDARD.encode(msg.id.to_be_bytes())),
        );
        env.insert(
            "SigningCertURL".into(),
            json!(format!("{}/SimpleNotificationService.pem", self.base_url)),
        );
        env.insert(
            "UnsubscribeURL".into(),
            json!(format!(
                "{}/?Action=Unsubscribe&SubscriptionArn={}",
                self.base_url, self.subscription_arn
            )),
        );
        if !attrs.is_empty() {
            env.insert("MessageAttributes".into(), Value::Object(attrs));
        }
        Value::Object(env).to_string()
    }
}

impl BindingHook for SubscriptionHook {
    fn accepts(&self, msg: &Message) -> bool {
        let st = self.settings.read();
        let Some(filter) = &st.filter else {
            return true;
        };
        match filter.scope {
            Scope::Body => filter.matches_body(self.body_for_protocol(msg).as_bytes()),
            Scope::Attributes => {
                let attrs: Vec<(String, AttrValue)> = msg
                    .props
                    .as_ref()
                    .map(|p| p.sqs_attributes())
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|a| {
                        let base = a.data_type.split('.').next().unwrap_or_default().to_owned();
                        let value = match (&a.value, base.as_str()) {
                            (AttributeValue::Text(t), "Number") => {
                                AttrValue::Number(t.parse().ok()?)
                            }
                            (AttributeValue::Text(t), _)
                                if a.data_type.as_str() == "String.Array" =>
                            {
                                AttrValue::Array(serde_json::from_str(t).ok()?)
                            }
                            (AttributeValue::Text(t), _) => AttrValue::Text(t.to_string()),
                            (AttributeValue::Binary(_), _) => return None,
                        };
                        Some((a.name.to_string(), value))
                    })
                    .collect();
                filter.matches_attributes(&attrs)
            }
        }
    }

    fn transform(&self, msg: &SharedMessage) -> SharedMessage {
        let raw = self.settings.read().raw;
        let per_protocol = msg.props.as_ref().is_some_and(|p| p.per_protocol);
        if raw && !per_protocol {
            return msg.clone();
        }
        let body = if raw {
            self.body_for_protocol(msg)
        } else {
            self.envelope(msg)
        };
        let mut out = (**msg).clone();
        out.payload = Bytes::from(body);
        if !raw {
            // Attributes travel inside the envelope; group and dedup ids stay
            // for FIFO queues.
            out.props = msg.props.as_ref().map(|p| {
                Box::new(MessageProperties::from_sqs(
                    Vec::new(),
                    p.group_id.clone(),
                    p.dedup_id.clone(),
                ))
            });
        }
        Arc::new(out)
    }
}

/// ISO 8601 UTC with milliseconds, as SNS writes timestamps.
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso8601() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
    }

    #[test]
    fn xml_lists_use_members_and_attribute_entries() {
        let doc = Sns::render(
            "ListTopics",
            &json!({"Topics": [{"TopicArn": "arn:a"}], "NextToken": "t"}),
            "r",
        );
        assert!(doc.contains("<ListTopicsResult><NextToken>t</NextToken><Topics><member><TopicArn>arn:a</TopicArn></member></Topics></ListTopicsResult>"), "{doc}");
        let doc = Sns::render(
            "GetTopicAttributes",
            &json!({"Attributes": {"k": "v"}}),
            "r",
        );
        assert!(
            doc.contains("<Attributes><entry><key>k</key><value>v</value></entry></Attributes>"),
            "{doc}"
        );
    }
}
