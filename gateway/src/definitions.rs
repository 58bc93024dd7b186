//! Definitions as code: exchanges, queues (AMQP and SQS), bindings, SNS
//! topics and subscriptions, topic rules, users and the ACL as one document,
//! the part AWS SAM/CloudFormation templates and RabbitMQ's definitions file
//! play.
//!
//! * [`Definitions`] is the document (serde), read from TOML (`.toml`) or
//!   JSON (`.json`, and what the admin API returns and accepts). Unknown keys
//!   are refused; an error names the entry's path, e.g.
//!   `queues[2].attributes.RedrivePolicy: dead-letter queue "orders-dlq" is
//!   not defined`.
//! * [`validate`] checks the whole document before anything is applied:
//!   values through the same checks the protocols use (AMQP `x-` arguments,
//!   SQS CreateQueue, SNS CreateTopic/Subscribe, rule SQL, password hashes,
//!   ACL filters), references (a binding's exchange and queue, a
//!   RedrivePolicy's dead-letter queue, a subscription's topic and queue)
//!   against the document and the running gateway, and immutable conflicts
//!   with what exists (an exchange or AMQP queue redeclared with other
//!   properties, `FifoQueue`/`FifoTopic` flipped).
//! * [`apply`] makes the gateway match it, idempotently, through the same
//!   code the protocols use: the vhost's declare and bind (AMQP), the SQS and
//!   SNS services' operations (CreateQueue, SetQueueAttributes, CreateTopic,
//!   Subscribe, ...), the rule engine and the authenticator. Mutable settings
//!   converge (SQS attributes the document leaves out go back to their
//!   defaults, subscription and topic attributes likewise); entries are never
//!   deleted because they are missing from the document. It reports how many
//!   entries it created, updated or found unchanged.
//! * [`export`] writes the running gateway as a document such that applying
//!   it to a fresh gateway and exporting again gives the same document.
//!
//! An SQS queue is a `queues` entry with `attributes` (SQS queues are core
//! queues of vhost `/` created by CreateQueue, so an entry with attributes is
//! exactly a CreateQueue call); an entry without them is an AMQP
//! `queue.declare` with its `arguments`.
//!
//! This module owns no state: what it applies is kept by the core, the
//! services and the store like any API call's effect.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::config::{AclEffect, AclRuleConfig, RuleConfig, UserConfig};
use crate::core::exchange::{BindingOptions, Destination, ExchangeKind, ExchangeOptions};
use crate::core::message::KeyForm;
use crate::core::queue::{Overflow, Queue, QueueOptions};
use crate::core::vhost::VHost;
use crate::http::Api;
use crate::http::aws::{ApiError, Params};
use crate::http::sns::Sns;
use crate::http::sqs::Sqs;

// ---- the document ----

fn root_vhost() -> String {
    "/".to_owned()
}

fn yes() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A definitions document. Every array may be left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Definitions {
    /// AMQP exchanges (not the built-in `amq.*` ones, not SNS topics).
    pub exchanges: Vec<ExchangeDef>,
    /// Queues: AMQP ones (with `arguments`) and SQS ones (with `attributes`).
    pub queues: Vec<QueueDef>,
    /// Bindings from an exchange to a queue or another exchange.
    pub bindings: Vec<BindingDef>,
    /// SNS topics.
    pub topics: Vec<TopicDef>,
    /// SNS subscriptions.
    pub subscriptions: Vec<SubscriptionDef>,
    /// Topic rules, in the shape of `[[rules]]`.
    pub rules: Vec<RuleConfig>,
    /// Users, in the shape of `[[auth.users]]` (password hashes only).
    pub users: Vec<UserConfig>,
    /// The ACL, in the shape of `[[auth.acl]]`; when present it replaces the
    /// gateway's rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl: Option<Vec<AclRuleConfig>>,
    /// The decision when ACL rules exist and none matches; when absent the
    /// gateway's stays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl_default: Option<AclEffect>,
}

/// An AMQP exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeDef {
    /// Its virtual host (default `/`).
    #[serde(default = "root_vhost")]
    pub vhost: String,
    /// Its name.
    pub name: String,
    /// `direct`, `fanout`, `topic` or `headers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Survives restarts (default true).
    #[serde(default = "yes")]
    pub durable: bool,
    /// Deleted with its last binding.
    #[serde(default)]
    pub auto_delete: bool,
    /// Not publishable by clients.
    #[serde(default)]
    pub internal: bool,
    /// Declaration arguments (`alternate-exchange`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub arguments: Map<String, Value>,
}

/// A queue: an AMQP queue (optional `arguments`) or, with `attributes`, an
/// SQS queue of vhost `/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueDef {
    /// Its virtual host (default `/`; SQS queues are always in `/`).
    #[serde(default = "root_vhost")]
    pub vhost: String,
    /// Its name.
    pub name: String,
    /// Survives restarts (default true; SQS queues always do).
    #[serde(default = "yes")]
    pub durable: bool,
    /// AMQP: deleted when its last consumer goes away.
    #[serde(default, skip_serializing_if = "is_false")]
    pub auto_delete: bool,
    /// AMQP `x-` arguments (`x-message-ttl`, `x-dead-letter-exchange`,
    /// `x-max-length`, ...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub arguments: Map<String, Value>,
    /// SQS attributes (`VisibilityTimeout`, `RedrivePolicy`, `FifoQueue`,
    /// ...): present (even empty) makes this an SQS queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Map<String, Value>>,
}

/// What a binding leads to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationType {
    /// A queue.
    #[default]
    Queue,
    /// Another exchange.
    Exchange,
}

/// A binding (the shape of the admin API's `/api/bindings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingDef {
    /// The virtual host of both ends (default `/`).
    #[serde(default = "root_vhost")]
    pub vhost: String,
    /// The source exchange (an SNS topic's name works too, in `/`).
    pub source: String,
    /// The destination queue or exchange.
    pub destination: String,
    /// `queue` (default) or `exchange`.
    #[serde(default)]
    pub destination_type: DestinationType,
    /// The binding key, in AMQP form (`a.b.*`, also on `amq.topic`).
    #[serde(default)]
    pub routing_key: String,
    /// Binding arguments (headers exchanges).
    #[serde(default)]
    pub arguments: Map<String, Value>,
}

/// An SNS topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicDef {
    /// Its name (`.fifo` for FIFO topics).
    pub name: String,
    /// CreateTopic attributes (`DisplayName`, `FifoTopic`, `Policy`, ...).
    #[serde(default)]
    pub attributes: Map<String, Value>,
}

/// An SNS subscription, identified by its topic, protocol and endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionDef {
    /// The topic's name or ARN.
    pub topic: String,
    /// `sqs`, `http` or `https`.
    pub protocol: String,
    /// `sqs`: the queue's name or ARN; `http`/`https`: the URL.
    pub endpoint: String,
    /// `RawMessageDelivery`, `FilterPolicy` (a table or JSON text),
    /// `FilterPolicyScope`, `RedrivePolicy`, `DeliveryPolicy`.
    #[serde(default)]
    pub attributes: Map<String, Value>,
}

// ---- outcomes and errors ----

/// What applying one entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It did not exist and was created.
    Created,
    /// It existed and some setting changed.
    Updated,
    /// It existed as defined.
    Unchanged,
}

/// How many entries applying a document created, updated and left alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Entries created.
    pub created: usize,
    /// Entries that existed and were changed.
    pub updated: usize,
    /// Entries that already matched.
    pub unchanged: usize,
}

impl Summary {
    fn add(&mut self, change: Change) {
        match change {
            Change::Created => self.created += 1,
            Change::Updated => self.updated += 1,
            Change::Unchanged => self.unchanged += 1,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "created {}, updated {}, unchanged {}",
            self.created, self.updated, self.unchanged
        )
    }
}

/// What kind of problem refused a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The document is malformed or refers to what does not exist.
    Invalid,
    /// It contradicts what exists and cannot change (a FIFO flag, an AMQP
    /// queue's arguments).
    Conflict,
    /// The gateway could not do or store what it asked.
    Failed,
}

/// Why a document was refused: the path of the bad entry and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionsError {
    /// What kind of problem it is.
    pub kind: ErrorKind,
    /// Where in the document, e.g. `queues[2].attributes.RedrivePolicy`
    /// (empty for the document as a whole).
    pub path: String,
    /// What is wrong, one sentence.
    pub message: String,
}

impl DefinitionsError {
    fn new(kind: ErrorKind, path: impl Into<String>, message: impl Into<String>) -> Self {
        DefinitionsError {
            kind,
            path: path.into(),
            message: one_line(&message.into()),
        }
    }
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> DefinitionsError {
    DefinitionsError::new(ErrorKind::Invalid, path, message)
}

fn conflict(path: impl Into<String>, message: impl Into<String>) -> DefinitionsError {
    DefinitionsError::new(ErrorKind::Conflict, path, message)
}

/// An API operation's error at `path`: a refusal is the document's fault,
/// anything else the gateway's.
fn api_failed(path: &str, e: ApiError) -> DefinitionsError {
    let kind = if e.status < 500 {
        ErrorKind::Invalid
    } else {
        ErrorKind::Failed
    };
    DefinitionsError::new(kind, path, e.message)
}

impl fmt::Display for DefinitionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for DefinitionsError {}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---- reading ----

/// The two spellings of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML (`.toml`).
    Toml,
    /// JSON (`.json`).
    Json,
}

impl Format {
    /// The format a file's extension names.
    pub fn of(path: &Path) -> Result<Format, String> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Ok(Format::Toml),
            Some("json") => Ok(Format::Json),
            _ => Err(format!("{} must be a .toml or .json file", path.display())),
        }
    }
}

/// Parses a document; type errors and unknown keys name their path.
pub fn parse(text: &str, format: Format) -> Result<Definitions, DefinitionsError> {
    let path_of = |p: &serde_path_to_error::Path| {
        let p = p.to_string();
        if p == "." { String::new() } else { p }
    };
    match format {
        Format::Toml => {
            let de = toml::de::Deserializer::parse(text)
                .map_err(|e| invalid("", toml_message(text, &e)))?;
            serde_path_to_error::deserialize(de)
                .map_err(|e| invalid(path_of(e.path()), toml_message(text, e.inner())))
        }
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            let doc = serde_path_to_error::deserialize(&mut de)
                .map_err(|e| invalid(path_of(e.path()), e.inner().to_string()))?;
            de.end().map_err(|e| invalid("", e.to_string()))?;
            Ok(doc)
        }
    }
}

/// A TOML error as one line with its position.
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let message = one_line(e.message());
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{message} (line {line}, column {column})")
        }
        None => message,
    }
}

// ---- value conversions ----

/// An attribute value as the text the AWS APIs take: strings as they are,
/// numbers and booleans spelled out, tables and arrays as JSON.
fn attribute_text(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Object(_) | Value::Array(_) => Ok(v.to_string()),
        Value::Null => Err("an attribute needs a value".into()),
    }
}

fn attribute_texts(
    path: &str,
    attrs: &Map<String, Value>,
) -> Result<Vec<(String, String)>, DefinitionsError> {
    attrs
        .iter()
        .map(|(k, v)| {
            attribute_text(v)
                .map(|t| (k.clone(), t))
                .map_err(|m| invalid(format!("{path}.{k}"), m))
        })
        .collect()
}

/// An attribute's text as the document shows it: booleans and whole
/// numbers as such, JSON documents as tables, anything else as text.
fn attribute_value(text: &str) -> Value {
    match text {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    if !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'))
        && let Ok(n) = text.parse::<u64>()
    {
        return Value::from(n);
    }
    if text.starts_with(['{', '['])
        && let Ok(v) = serde_json::from_str::<Value>(text)
    {
        return v;
    }
    Value::String(text.to_owned())
}

/// Whether two attribute texts mean the same: equal numbers, equal JSON
/// documents, or equal text.
fn same_attribute(a: &str, b: &str) -> bool {
    a == b || attribute_value(a.trim()) == attribute_value(b.trim())
}

/// A JSON object as an AMQP field table; the error names the bad key.
fn field_table(args: &Map<String, Value>) -> Result<FieldTable, (String, String)> {
    let mut table = FieldTable::default();
    for (k, v) in args {
        let key = ShortString::try_new(k.as_str())
            .map_err(|_| (k.clone(), "argument names are at most 255 bytes".to_owned()))?;
        let value = amqp_value(v).map_err(|m| (k.clone(), m))?;
        table.insert(key, value);
    }
    Ok(table)
}

fn amqp_value(v: &Value) -> Result<AMQPValue, String> {
    Ok(match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => AMQPValue::LongLongInt(i),
            (None, Some(_)) if n.is_u64() => {
                return Err(format!("{n} is too large for an AMQP integer"));
            }
            (None, Some(f)) => AMQPValue::Double(f),
            (None, None) => return Err(format!("{n} is not a number AMQP can carry")),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        Value::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items
                .iter()
                .map(amqp_value)
                .collect::<Result<Vec<_>, _>>()?,
        )),
        Value::Object(m) => {
            AMQPValue::FieldTable(field_table(m).map_err(|(k, e)| format!("{k}: {e}"))?)
        }
    })
}

/// An AMQP field table as JSON (what listings and exports show).
pub fn table_json(table: &FieldTable) -> Map<String, Value> {
    table
        .inner()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), value_json(v)))
        .collect()
}

fn value_json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => Value::from(*n),
        AMQPValue::ShortShortUInt(n) => Value::from(*n),
        AMQPValue::ShortInt(n) => Value::from(*n),
        AMQPValue::ShortUInt(n) => Value::from(*n),
        AMQPValue::LongInt(n) => Value::from(*n),
        AMQPValue::LongUInt(n) => Value::from(*n),
        AMQPValue::LongLongInt(n) => Value::from(*n),
        AMQPValue::Timestamp(n) => Value::from(*n),
        AMQPValue::Float(f) => Value::from(f64::from(*f)),
        AMQPValue::Double(f) => Value::from(*f),
        AMQPValue::DecimalValue(d) => {
            Value::from(f64::from(d.value) / 10f64.powi(i32::from(d.scale)))
        }
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_owned()),
        AMQPValue::LongString(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into()),
        AMQPValue::ByteArray(b) => Value::String(String::from_utf8_lossy(b.as_slice()).into()),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(value_json).collect()),
        AMQPValue::FieldTable(t) => Value::Object(table_json(t)),
        AMQPValue::Void => Value::Null,
    }
}

/// The `x-` arguments that declare a queue with `o` (the inverse of the AMQP
/// front end's argument parsing, for listings and exports).
pub fn queue_arguments(o: &QueueOptions) -> Map<String, Value> {
    let mut m = Map::new();
    let ms = |d: std::time::Duration| Value::from(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    if let Some(d) = o.message_ttl {
        m.insert("x-message-ttl".into(), ms(d));
    }
    if let Some(d) = o.expires {
        m.insert("x-expires".into(), ms(d));
    }
    if let Some(n) = o.limits.max_messages {
        m.insert("x-max-length".into(), Value::from(n));
    }
    if let Some(n) = o.limits.max_bytes {
        m.insert("x-max-length-bytes".into(), Value::from(n));
    }
    match o.limits.overflow {
        Overflow::DropHead | Overflow::DropNew => {}
        Overflow::RejectPublish => {
            m.insert("x-overflow".into(), "reject-publish".into());
        }
        Overflow::RejectPublishDlx => {
            m.insert("x-overflow".into(), "reject-publish-dlx".into());
        }
    }
    if let Some(dl) = &o.dead_letter {
        m.insert(
            "x-dead-letter-exchange".into(),
            Value::String(dl.exchange.to_string()),
        );
        if let Some(rk) = &dl.routing_key {
            m.insert(
                "x-dead-letter-routing-key".into(),
                Value::String(rk.to_string()),
            );
        }
    }
    if let Some(p) = o.max_priority {
        m.insert("x-max-priority".into(), Value::from(p));
    }
    if o.single_active_consumer {
        m.insert("x-single-active-consumer".into(), Value::Bool(true));
    }
    if let Some(n) = o.delivery_limit {
        m.insert("x-delivery-limit".into(), Value::from(n));
    }
    if let Some(d) = o.settings.visibility_timeout {
        m.insert("x-visibility-timeout".into(), ms(d));
    }
    m
}

/// Whether `q` was created as an SQS queue (CreateQueue, or a rule's target)
/// rather than declared over AMQP: only CreateQueue gives a queue a
/// retention period at declaration.
pub fn is_sqs_queue(q: &Queue) -> bool {
    q.options().settings.retention.is_some()
}

/// The AMQP front end's refusal without its reply-code prefix.
fn amqp_reason(text: &str) -> String {
    text.strip_prefix("PRECONDITION_FAILED - ")
        .unwrap_or(text)
        .to_owned()
}

/// The last `:`-separated part of an ARN, after checking it is one of `service`.
fn name_from_arn<'a>(arn: &'a str, service: &str) -> Result<&'a str, String> {
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != service || parts[5].is_empty() {
        return Err(format!("\"{arn}\" is not an {service} ARN"));
    }
    Ok(parts[5])
}

/// A queue or topic named by name or by ARN.
fn name_or_arn<'a>(text: &'a str, service: &str) -> Result<&'a str, String> {
    if text.starts_with("arn:") {
        name_from_arn(text, service)
    } else {
        Ok(text)
    }
}

/// An SQS RedrivePolicy: the dead-letter queue's name and the receive count.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RedriveDef {
    target: String,
    max_receive_count: u32,
}

/// Reads a RedrivePolicy given as a table or as SQS's JSON text, naming the
/// dead-letter queue by name or ARN; `None` for an empty one (no redrive).
fn redrive_def(v: &Value) -> Result<Option<RedriveDef>, String> {
    let doc = match v {
        Value::String(s) if s.trim().is_empty() => return Ok(None),
        Value::String(s) => {
            serde_json::from_str::<Value>(s).map_err(|e| format!("is not a JSON document ({e})"))?
        }
        other => other.clone(),
    };
    let Value::Object(m) = doc else {
        return Err("must be a table with deadLetterTargetArn and maxReceiveCount".into());
    };
    if let Some(k) = m
        .keys()
        .find(|k| !matches!(k.as_str(), "deadLetterTargetArn" | "maxReceiveCount"))
    {
        return Err(format!(
            "unknown field `{k}`, expected `deadLetterTargetArn` or `maxReceiveCount`"
        ));
    }
    let target = m
        .get("deadLetterTargetArn")
        .and_then(Value::as_str)
        .ok_or("needs deadLetterTargetArn (the dead-letter queue's name or ARN)")?;
    let target = name_or_arn(target, "sqs")?.to_owned();
    let max = match m.get("maxReceiveCount") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n| (1..=1000).contains(n))
    .ok_or("maxReceiveCount must be a whole number from 1 to 1000")?;
    Ok(Some(RedriveDef {
        target,
        max_receive_count: max as u32,
    }))
}

// ---- validation ----

/// A validated document, ready for [`apply`].
#[derive(Debug, Clone)]
pub struct Plan {
    exchanges: Vec<ExchangePlan>,
    queues: Vec<QueuePlan>,
    bindings: Vec<BindingPlan>,
    topics: Vec<TopicPlan>,
    subscriptions: Vec<SubscriptionPlan>,
    rules: Vec<RuleConfig>,
    users: Vec<UserConfig>,
    acl: Option<Vec<AclRuleConfig>>,
    acl_default: Option<AclEffect>,
}

#[derive(Debug, Clone)]
struct ExchangePlan {
    path: String,
    vhost: Arc<VHost>,
    name: String,
    kind: ExchangeKind,
    options: ExchangeOptions,
}

#[derive(Debug, Clone)]
enum QueuePlan {
    Amqp {
        path: String,
        vhost: Arc<VHost>,
        name: String,
        options: Box<QueueOptions>,
    },
    Sqs {
        path: String,
        name: String,
        fifo: bool,
        /// Attributes as API text, without RedrivePolicy.
        attributes: Vec<(String, String)>,
        redrive: Option<RedriveDef>,
    },
}

#[derive(Debug, Clone)]
struct BindingPlan {
    path: String,
    vhost: Arc<VHost>,
    source: String,
    destination: String,
    to_exchange: bool,
    key: String,
    args: FieldTable,
    args_json: Map<String, Value>,
}

#[derive(Debug, Clone)]
struct TopicPlan {
    path: String,
    name: String,
    attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct SubscriptionPlan {
    path: String,
    topic: String,
    protocol: String,
    /// `sqs`: the queue's name; otherwise the URL.
    endpoint: String,
    attributes: Vec<(String, String)>,
}

/// The queue a subscription or redrive policy may name: one of the document
/// or of the gateway, in vhost `/`.
#[derive(Debug, Clone, Copy)]
struct KnownQueue {
    fifo: bool,
}

/// Checks a document against itself and the running gateway without
/// changing anything; the plan [`apply`] carries out.
pub fn validate(api: &Api, doc: &Definitions) -> Result<Plan, DefinitionsError> {
    let core = &api.core;
    let vhost_of = |path: &str, name: &str| {
        core.vhost_named(name).cloned().ok_or_else(|| {
            invalid(
                format!("{path}.vhost"),
                format!("virtual host \"{name}\" is not configured (see amqp.vhosts)"),
            )
        })
    };
    let gateway_topics: BTreeMap<String, BTreeMap<String, String>> =
        api.sns.topic_attributes().into_iter().collect();
    let doc_topics: BTreeSet<&str> = doc.topics.iter().map(|t| t.name.as_str()).collect();
    let is_topic = |name: &str| doc_topics.contains(name) || gateway_topics.contains_key(name);

    // Exchanges.
    let mut exchanges = Vec::new();
    let mut seen = HashMap::new();
    for (i, e) in doc.exchanges.iter().enumerate() {
        let path = format!("exchanges[{i}]");
        let vhost = vhost_of(&path, &e.vhost)?;
        if e.name.is_empty() || e.name.len() > 255 {
            return Err(invalid(
                format!("{path}.name"),
                "an exchange name is 1 to 255 bytes (the default exchange cannot be declared)",
            ));
        }
        if let Some(j) = seen.insert((e.vhost.as_str(), e.name.as_str()), i) {
            return Err(invalid(
                &path,
                format!("exchange \"{}\" is also defined by exchanges[{j}]", e.name),
            ));
        }
        let kind = ExchangeKind::parse(&e.kind).ok_or_else(|| {
            invalid(
                format!("{path}.type"),
                format!(
                    "unknown exchange type \"{}\" (expected direct, fanout, topic or headers)",
                    e.kind
                ),
            )
        })?;
        let args = field_table(&e.arguments)
            .map_err(|(k, m)| invalid(format!("{path}.arguments.{k}"), m))?;
        let alternate = crate::amqp::args::alternate_exchange(&args).map_err(|err| {
            invalid(
                format!("{path}.arguments.alternate-exchange"),
                amqp_reason(&err.text),
            )
        })?;
        if e.vhost == "/" && is_topic(&e.name) {
            return Err(invalid(
                format!("{path}.name"),
                format!("\"{}\" is an SNS topic; define it under `topics`", e.name),
            ));
        }
        let options = ExchangeOptions {
            durable: e.durable,
            auto_delete: e.auto_delete,
            internal: e.internal,
            alternate,
            args,
        };
        match vhost.exchange(&e.name) {
            Some(ex)
                if ex.kind() != kind
                    || ex.durable != options.durable
                    || ex.auto_delete != options.auto_delete
                    || ex.internal != options.internal
                    || ex.alternate != options.alternate =>
            {
                return Err(conflict(
                    &path,
                    format!(
                        "exchange \"{}\" in vhost \"{}\" exists as a {} exchange (durable {}, auto_delete {}, internal {}, alternate-exchange {}); an exchange cannot be redeclared with other properties, delete it first",
                        e.name,
                        e.vhost,
                        ex.kind().as_str(),
                        ex.durable,
                        ex.auto_delete,
                        ex.internal,
                        ex.alternate.as_ref().map_or("none", |a| a.as_str()),
                    ),
                ));
            }
            Some(_) => {}
            None if e.name.starts_with("amq.") => {
                return Err(invalid(
                    format!("{path}.name"),
                    "the amq. prefix is reserved for the built-in exchanges",
                ));
            }
            None => {}
        }
        exchanges.push(ExchangePlan {
            path,
            vhost,
            name: e.name.clone(),
            kind,
            options,
        });
    }

    // Queues.
    let mut queues = Vec::new();
    let mut seen = HashMap::new();
    let mut doc_queues: HashMap<(&str, &str), KnownQueue> = HashMap::new();
    for (i, q) in doc.queues.iter().enumerate() {
        let path = format!("queues[{i}]");
        let vhost = vhost_of(&path, &q.vhost)?;
        if q.name.is_empty() || q.name.len() > 255 {
            return Err(invalid(
                format!("{path}.name"),
                "a queue name is 1 to 255 bytes",
            ));
        }
        if let Some(j) = seen.insert((q.vhost.as_str(), q.name.as_str()), i) {
            return Err(invalid(
                &path,
                format!("queue \"{}\" is also defined by queues[{j}]", q.name),
            ));
        }
        let existing = vhost.queue(&q.name);
        let plan = match &q.attributes {
            Some(attrs) => {
                let (plan, fifo) = sqs_queue_plan(api, &path, q, attrs, existing.as_deref())?;
                doc_queues.insert((q.vhost.as_str(), q.name.as_str()), KnownQueue { fifo });
                plan
            }
            None => {
                let args = field_table(&q.arguments)
                    .map_err(|(k, m)| invalid(format!("{path}.arguments.{k}"), m))?;
                let options =
                    crate::amqp::args::queue_options(q.durable, false, q.auto_delete, &args)
                        .map_err(|err| {
                            invalid(format!("{path}.arguments"), amqp_reason(&err.text))
                        })?;
                match &existing {
                    Some(eq) if is_sqs_queue(eq) => {
                        return Err(conflict(
                            &path,
                            format!(
                                "queue \"{}\" exists as an SQS queue; it cannot be redefined as an AMQP queue (give it `attributes`)",
                                q.name
                            ),
                        ));
                    }
                    Some(eq) if eq.owner().is_some() => {
                        return Err(conflict(
                            &path,
                            format!("queue \"{}\" is an exclusive queue of a connection", q.name),
                        ));
                    }
                    Some(eq) if eq.options() != &options => {
                        return Err(conflict(
                            &path,
                            format!(
                                "queue \"{}\" in vhost \"{}\" exists with durable {}, auto_delete {}, arguments {}; a queue's declaration cannot change, delete it first",
                                q.name,
                                q.vhost,
                                eq.options().durable,
                                eq.options().auto_delete,
                                Value::Object(queue_arguments(eq.options())),
                            ),
                        ));
                    }
                    None if q.name.starts_with("amq.") => {
                        return Err(invalid(
                            format!("{path}.name"),
                            "the amq. prefix is reserved for server-named queues",
                        ));
                    }
                    _ => {}
                }
                doc_queues.insert(
                    (q.vhost.as_str(), q.name.as_str()),
                    KnownQueue { fifo: false },
                );
                QueuePlan::Amqp {
                    path,
                    vhost,
                    name: q.name.clone(),
                    options: Box::new(options),
                }
            }
        };
        queues.push(plan);
    }
    let known_queue = |vhost: &str, name: &str| -> Option<KnownQueue> {
        doc_queues.get(&(vhost, name)).copied().or_else(|| {
            core.vhost_named(vhost)?.queue(name).map(|q| KnownQueue {
                fifo: q.options().fifo,
            })
        })
    };
    // Dead-letter queues, now that every queue of the document is known.
    for plan in &queues {
        if let QueuePlan::Sqs {
            path,
            name,
            fifo,
            redrive: Some(r),
            ..
        } = plan
        {
            let at = format!("{path}.attributes.RedrivePolicy");
            let Some(dlq) = known_queue("/", &r.target) else {
                return Err(invalid(
                    at,
                    format!("dead-letter queue \"{}\" is not defined", r.target),
                ));
            };
            if dlq.fifo != *fifo {
                let kind = |f: bool| if f { "a FIFO" } else { "a standard" };
                return Err(invalid(
                    at,
                    format!(
                        "dead-letter queue \"{}\" is {} queue and \"{name}\" is {} queue; they must be of the same type",
                        r.target,
                        kind(dlq.fifo),
                        kind(*fifo)
                    ),
                ));
            }
        }
    }

    // Bindings.
    let doc_exchanges: BTreeSet<(&str, &str)> = doc
        .exchanges
        .iter()
        .map(|e| (e.vhost.as_str(), e.name.as_str()))
        .collect();
    let exchange_known = |vhost: &VHost, vname: &str, name: &str| {
        doc_exchanges.contains(&(vname, name))
            || (vname == "/" && is_topic(name))
            || vhost.exchange(name).is_some()
    };
    let mut bindings = Vec::new();
    for (i, b) in doc.bindings.iter().enumerate() {
        let path = format!("bindings[{i}]");
        let vhost = vhost_of(&path, &b.vhost)?;
        if b.source.is_empty() {
            return Err(invalid(
                format!("{path}.source"),
                "the default exchange reaches every queue by its name; it takes no bindings",
            ));
        }
        if !exchange_known(&vhost, &b.vhost, &b.source) {
            return Err(invalid(
                format!("{path}.source"),
                format!(
                    "exchange \"{}\" is not defined in vhost \"{}\"",
                    b.source, b.vhost
                ),
            ));
        }
        let to_exchange = b.destination_type == DestinationType::Exchange;
        let known = if to_exchange {
            !b.destination.is_empty() && exchange_known(&vhost, &b.vhost, &b.destination)
        } else {
            known_queue(&b.vhost, &b.destination).is_some()
        };
        if !known {
            return Err(invalid(
                format!("{path}.destination"),
                format!(
                    "{} \"{}\" is not defined in vhost \"{}\"",
                    if to_exchange { "exchange" } else { "queue" },
                    b.destination,
                    b.vhost
                ),
            ));
        }
        let args = field_table(&b.arguments)
            .map_err(|(k, m)| invalid(format!("{path}.arguments.{k}"), m))?;
        bindings.push(BindingPlan {
            path,
            vhost,
            source: b.source.clone(),
            destination: b.destination.clone(),
            to_exchange,
            key: b.routing_key.clone(),
            args_json: table_json(&args),
            args,
        });
    }

    // Topics.
    let mut topics = Vec::new();
    let mut seen = HashMap::new();
    let mut topic_fifo: HashMap<&str, bool> = HashMap::new();
    for (i, t) in doc.topics.iter().enumerate() {
        let path = format!("topics[{i}]");
        let attributes: BTreeMap<String, String> =
            attribute_texts(&format!("{path}.attributes"), &t.attributes)?
                .into_iter()
                .collect();
        let fifo_only: BTreeMap<String, String> = attributes
            .iter()
            .filter(|(k, _)| *k == "FifoTopic")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let fifo = Sns::check_topic(&t.name, &fifo_only)
            .map_err(|e| invalid(format!("{path}.name"), e.message))?;
        for (k, v) in &attributes {
            let mut one = fifo_only.clone();
            one.insert(k.clone(), v.clone());
            Sns::check_topic(&t.name, &one)
                .map_err(|e| invalid(format!("{path}.attributes.{k}"), e.message))?;
        }
        if let Some(j) = seen.insert(t.name.as_str(), i) {
            return Err(invalid(
                &path,
                format!("topic \"{}\" is also defined by topics[{j}]", t.name),
            ));
        }
        match gateway_topics.get(&t.name) {
            Some(old) => {
                let was_fifo = old.get("FifoTopic").is_some_and(|v| v == "true");
                if was_fifo != fifo {
                    return Err(conflict(
                        format!("{path}.attributes.FifoTopic"),
                        format!(
                            "topic \"{}\" exists as a {} topic; FifoTopic cannot change, delete the topic first",
                            t.name,
                            if was_fifo { "FIFO" } else { "standard" }
                        ),
                    ));
                }
            }
            None => {
                if core.vhost.exchange(&t.name).is_some() {
                    return Err(conflict(
                        format!("{path}.name"),
                        format!(
                            "exchange \"{}\" of vhost \"/\" exists and is not an SNS topic",
                            t.name
                        ),
                    ));
                }
            }
        }
        topic_fifo.insert(t.name.as_str(), fifo);
        topics.push(TopicPlan {
            path,
            name: t.name.clone(),
            attributes,
        });
    }

    // Subscriptions.
    let mut subscriptions = Vec::new();
    let mut seen = HashMap::new();
    for (i, s) in doc.subscriptions.iter().enumerate() {
        let path = format!("subscriptions[{i}]");
        let topic =
            name_or_arn(&s.topic, "sns").map_err(|m| invalid(format!("{path}.topic"), m))?;
        let fifo_topic = match topic_fifo.get(topic) {
            Some(f) => *f,
            None => match gateway_topics.get(topic) {
                Some(a) => a.get("FifoTopic").is_some_and(|v| v == "true"),
                None => {
                    return Err(invalid(
                        format!("{path}.topic"),
                        format!("topic \"{topic}\" is not defined"),
                    ));
                }
            },
        };
        let protocol = s.protocol.to_ascii_lowercase();
        let endpoint = match protocol.as_str() {
            "sqs" => {
                let name = name_or_arn(&s.endpoint, "sqs")
                    .map_err(|m| invalid(format!("{path}.endpoint"), m))?;
                let Some(q) = known_queue("/", name) else {
                    return Err(invalid(
                        format!("{path}.endpoint"),
                        format!("queue \"{name}\" is not defined"),
                    ));
                };
                if q.fifo && !fifo_topic {
                    return Err(invalid(
                        format!("{path}.endpoint"),
                        format!("FIFO queue \"{name}\" can only subscribe to a FIFO topic"),
                    ));
                }
                name.to_owned()
            }
            "http" | "https" if fifo_topic => {
                return Err(invalid(
                    format!("{path}.protocol"),
                    "FIFO topics deliver only to sqs endpoints",
                ));
            }
            "http" | "https" => s.endpoint.clone(),
            _ => {
                return Err(invalid(
                    format!("{path}.protocol"),
                    format!(
                        "unknown protocol \"{}\" (expected sqs, http or https)",
                        s.protocol
                    ),
                ));
            }
        };
        let api_endpoint = subscription_endpoint(api, &protocol, &endpoint);
        let attributes = attribute_texts(&format!("{path}.attributes"), &s.attributes)?;
        api.sns
            .check_subscription(&protocol, &api_endpoint, &[])
            .map_err(|e| invalid(format!("{path}.endpoint"), e.message))?;
        for (k, v) in &attributes {
            let mut one = vec![(k.clone(), v.clone())];
            if k == "FilterPolicy"
                && let Some(scope) = attributes.iter().find(|(k, _)| k == "FilterPolicyScope")
            {
                one.push(scope.clone());
            }
            api.sns
                .check_subscription(&protocol, &api_endpoint, &one)
                .map_err(|e| invalid(format!("{path}.attributes.{k}"), e.message))?;
        }
        if let Some(j) = seen.insert((topic.to_owned(), protocol.clone(), endpoint.clone()), i) {
            return Err(invalid(
                &path,
                format!("the same subscription is also defined by subscriptions[{j}]"),
            ));
        }
        subscriptions.push(SubscriptionPlan {
            path,
            topic: topic.to_owned(),
            protocol,
            endpoint,
            attributes,
        });
    }

    // Rules.
    let mut seen = HashMap::new();
    for (i, r) in doc.rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        if r.name.is_empty() {
            return Err(invalid(format!("{path}.name"), "a rule needs a name"));
        }
        if let Some(j) = seen.insert(r.name.as_str(), i) {
            return Err(invalid(
                &path,
                format!("rule \"{}\" is also defined by rules[{j}]", r.name),
            ));
        }
        crate::core::rules::Rule::compile(r).map_err(|m| {
            let field = if r.actions.is_empty() {
                "actions"
            } else {
                "sql"
            };
            invalid(format!("{path}.{field}"), m)
        })?;
    }

    // Users.
    let mut seen = HashMap::new();
    for (i, u) in doc.users.iter().enumerate() {
        let path = format!("users[{i}]");
        if u.name.is_empty() {
            return Err(invalid(format!("{path}.name"), "a user needs a name"));
        }
        if let Some(j) = seen.insert(u.name.as_str(), i) {
            return Err(invalid(
                &path,
                format!("user \"{}\" is also defined by users[{j}]", u.name),
            ));
        }
        crate::auth::check_password_hash(&u.password_hash)
            .map_err(|m| invalid(format!("{path}.password_hash"), m))?;
    }

    // The ACL.
    for (i, r) in doc.acl.iter().flatten().enumerate() {
        crate::auth::check_acl_topic(&r.topic)
            .map_err(|m| invalid(format!("acl[{i}].topic"), m))?;
    }

    Ok(Plan {
        exchanges,
        queues,
        bindings,
        topics,
        subscriptions,
        rules: doc.rules.clone(),
        users: doc.users.clone(),
        acl: doc.acl.clone(),
        acl_default: doc.acl_default,
    })
}

/// Validates an SQS queue entry; its plan and whether it is a FIFO queue.
fn sqs_queue_plan(
    api: &Api,
    path: &str,
    q: &QueueDef,
    attrs: &Map<String, Value>,
    existing: Option<&Queue>,
) -> Result<(QueuePlan, bool), DefinitionsError> {
    if q.vhost != "/" {
        return Err(invalid(
            format!("{path}.vhost"),
            "SQS queues (entries with `attributes`) live in virtual host \"/\"",
        ));
    }
    if !q.arguments.is_empty() {
        return Err(invalid(
            path,
            "a queue has AMQP `arguments` or SQS `attributes`, not both",
        ));
    }
    if !q.durable {
        return Err(invalid(
            format!("{path}.durable"),
            "SQS queues are always durable",
        ));
    }
    if q.auto_delete {
        return Err(invalid(
            format!("{path}.auto_delete"),
            "SQS queues cannot be auto-delete",
        ));
    }
    let at = format!("{path}.attributes");
    let redrive = match attrs.get("RedrivePolicy") {
        Some(v) => redrive_def(v).map_err(|m| invalid(format!("{at}.RedrivePolicy"), m))?,
        None => None,
    };
    let texts: Vec<(String, String)> = attribute_texts(&at, attrs)?
        .into_iter()
        .filter(|(k, _)| k != "RedrivePolicy")
        .collect();
    let fifo_only: Vec<(String, String)> = texts
        .iter()
        .filter(|(k, _)| k == "FifoQueue")
        .cloned()
        .collect();
    let fifo = api
        .sqs
        .check_new_queue(&q.name, &fifo_only)
        .map_err(|e| invalid(format!("{path}.name"), e.message))?;
    for (k, v) in &texts {
        let mut one = fifo_only.clone();
        one.push((k.clone(), v.clone()));
        api.sqs
            .check_new_queue(&q.name, &one)
            .map_err(|e| invalid(format!("{at}.{k}"), e.message))?;
    }
    api.sqs
        .check_new_queue(&q.name, &texts)
        .map_err(|e| invalid(&at, e.message))?;
    if let Some(eq) = existing {
        if !is_sqs_queue(eq) {
            return Err(conflict(
                path,
                format!(
                    "queue \"{}\" was declared over AMQP; it cannot be redefined as an SQS queue (drop its `attributes`)",
                    q.name
                ),
            ));
        }
        if eq.options().fifo != fifo {
            return Err(conflict(
                format!("{at}.FifoQueue"),
                format!(
                    "queue \"{}\" exists as a {} queue; FifoQueue cannot change, delete the queue first",
                    q.name,
                    if eq.options().fifo {
                        "FIFO"
                    } else {
                        "standard"
                    }
                ),
            ));
        }
    }
    Ok((
        QueuePlan::Sqs {
            path: path.to_owned(),
            name: q.name.clone(),
            fifo,
            attributes: texts,
            redrive,
        },
        fifo,
    ))
}

/// A subscription endpoint as the SNS API takes it (an `sqs` queue by ARN).
fn subscription_endpoint(api: &Api, protocol: &str, endpoint: &str) -> String {
    if protocol == "sqs" {
        api.sqs.arn(endpoint)
    } else {
        endpoint.to_owned()
    }
}

// ---- applying ----

/// One document is applied at a time, so two never interleave their checks
/// and changes.
static APPLYING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Validates `doc` and applies it; `host` is the HTTP authority SNS puts in
/// the links of envelopes for subscriptions it creates.
pub async fn apply_document(
    api: &Api,
    doc: &Definitions,
    host: &str,
) -> Result<Summary, DefinitionsError> {
    let _one = APPLYING.lock().await;
    let plan = validate(api, doc)?;
    apply(api, &plan, host).await
}

/// Reads, validates and applies the definitions file at start-up and logs
/// one summary line. The error is one line naming the file and the entry.
pub async fn apply_file(api: &Api, path: &Path, host: &str) -> Result<Summary, String> {
    let shown = path.display();
    let format = Format::of(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let doc = parse(&text, format).map_err(|e| format!("{shown}: {e}"))?;
    let summary = apply_document(api, &doc, host)
        .await
        .map_err(|e| format!("{shown}: {e}"))?;
    tracing::info!(
        file = %shown,
        created = summary.created,
        updated = summary.updated,
        unchanged = summary.unchanged,
        "definitions applied: {summary}"
    );
    Ok(summary)
}

/// Makes the gateway match a validated plan; see the module docs. Returns
/// once every change is durable.
pub async fn apply(api: &Api, plan: &Plan, host: &str) -> Result<Summary, DefinitionsError> {
    let mut summary = Summary::default();
    for e in &plan.exchanges {
        let (_, created) = e
            .vhost
            .declare_exchange(&e.name, e.kind, e.options.clone())
            .map_err(|err| conflict(&e.path, err.to_string()))?;
        summary.add(if created {
            Change::Created
        } else {
            Change::Unchanged
        });
    }
    // Queues first without their redrive policies, then the policies, so a
    // dead-letter queue exists before anything names it.
    let mut changes = Vec::with_capacity(plan.queues.len());
    for q in &plan.queues {
        changes.push(match q {
            QueuePlan::Amqp {
                path,
                vhost,
                name,
                options,
            } => {
                let (_, created) = vhost
                    .declare_queue(name, QueueOptions::clone(options), None)
                    .map_err(|err| conflict(path, err.to_string()))?;
                if created {
                    Change::Created
                } else {
                    Change::Unchanged
                }
            }
            QueuePlan::Sqs {
                path,
                name,
                fifo,
                attributes,
                ..
            } => converge_sqs_queue(api, path, name, *fifo, attributes).await?,
        });
    }
    for (q, change) in plan.queues.iter().zip(changes.iter_mut()) {
        if let QueuePlan::Sqs {
            path,
            name,
            redrive,
            ..
        } = q
        {
            let current = api
                .core
                .vhost
                .queue(name)
                .and_then(|q| q.settings().redrive);
            let same = match (&current, redrive) {
                (None, None) => true,
                (Some(c), Some(r)) => {
                    c.target.as_str() == r.target && c.max_receive_count == r.max_receive_count
                }
                _ => false,
            };
            if same {
                continue;
            }
            let text = redrive.as_ref().map_or(String::new(), |r| {
                json!({
                    "deadLetterTargetArn": api.sqs.arn(&r.target),
                    "maxReceiveCount": r.max_receive_count,
                })
                .to_string()
            });
            set_queue_attributes(api, path, name, vec![("RedrivePolicy".into(), text)]).await?;
            if *change == Change::Unchanged {
                *change = Change::Updated;
            }
        }
    }
    for c in changes {
        summary.add(c);
    }
    // Topics are exchanges bindings may start from or lead to.
    for t in &plan.topics {
        summary.add(converge_topic(api, t)?);
    }
    for b in &plan.bindings {
        summary.add(apply_binding(b)?);
    }
    for s in &plan.subscriptions {
        summary.add(converge_subscription(api, s, host)?);
    }
    for c in api.core.rules.put(&plan.rules) {
        summary.add(c);
    }
    ensure_rule_targets(api, &plan.rules).await;
    for c in api.core.auth.put_users(&plan.users) {
        summary.add(c);
    }
    if plan.acl.is_some() || plan.acl_default.is_some() {
        let table = api.core.auth.table();
        let rules = plan.acl.clone().unwrap_or_else(|| table.acl.clone());
        let default = plan.acl_default.unwrap_or(table.acl_default);
        summary.add(api.core.auth.set_acl(rules, default));
    }
    let store = &api.core.store;
    crate::store::durable(&**store, store.submitted())
        .await
        .map_err(|e| {
            DefinitionsError::new(
                ErrorKind::Failed,
                "",
                format!("the definitions could not be stored: {e}"),
            )
        })?;
    Ok(summary)
}

/// Creates the queues and topics rules send to, as `[[rules]]` do at
/// start-up (`Api::ensure_rule_targets`), without blocking the runtime while
/// the new queue is stored.
async fn ensure_rule_targets(api: &Api, rules: &[RuleConfig]) {
    use crate::config::RuleActionConfig;
    for action in rules.iter().flat_map(|r| &r.actions) {
        let result = match action {
            RuleActionConfig::Sqs { queue } if api.core.vhost.queue(queue).is_none() => {
                let attributes = if queue.ends_with(".fifo") {
                    json!({"FifoQueue": "true", "ContentBasedDeduplication": "true"})
                } else {
                    json!({})
                };
                let p = params(json!({"QueueName": queue, "Attributes": attributes}));
                api.sqs.call("CreateQueue", &p, "localhost").await
            }
            RuleActionConfig::Sns { topic } if api.core.vhost.exchange(topic).is_none() => {
                let p = params(json!({ "Name": topic }));
                api.sns.call("CreateTopic", &p, "localhost")
            }
            _ => Ok(Value::Null),
        };
        if let Err(e) = result {
            tracing::error!(error = %e.message, "cannot create a rule's target");
        }
    }
}

fn params(pairs: Value) -> Params {
    match pairs {
        Value::Object(m) => Params(m),
        _ => Params(Map::new()),
    }
}

fn attributes_json(attrs: &[(String, String)]) -> Value {
    Value::Object(
        attrs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// The SQS attributes a definition leaves to their defaults, and what the
/// gateway reports but a definition never sets.
const SQS_READ_ONLY: &[&str] = &[
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
    "FifoQueue",
    "RedrivePolicy",
];

/// The settable attributes of SQS queue `name` as GetQueueAttributes reports them.
async fn sqs_attributes(
    api: &Api,
    path: &str,
    name: &str,
) -> Result<BTreeMap<String, String>, DefinitionsError> {
    let v = api
        .sqs
        .call(
            "GetQueueAttributes",
            &params(json!({"QueueUrl": name, "AttributeNames": ["All"]})),
            "localhost",
        )
        .await
        .map_err(|e| api_failed(path, e))?;
    Ok(v.get("Attributes")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(k, _)| !SQS_READ_ONLY.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect())
}

async fn set_queue_attributes(
    api: &Api,
    path: &str,
    name: &str,
    attrs: Vec<(String, String)>,
) -> Result<(), DefinitionsError> {
    api.sqs
        .call(
            "SetQueueAttributes",
            &params(json!({"QueueUrl": name, "Attributes": attributes_json(&attrs)})),
            "localhost",
        )
        .await
        .map(|_| ())
        .map_err(|e| api_failed(path, e))
}

/// Creates SQS queue `name` with `attrs`, or sets the attributes in which
/// it differs from them (attributes left out mean their defaults).
async fn converge_sqs_queue(
    api: &Api,
    path: &str,
    name: &str,
    fifo: bool,
    attrs: &[(String, String)],
) -> Result<Change, DefinitionsError> {
    if api.core.vhost.queue(name).is_none() {
        api.sqs
            .call(
                "CreateQueue",
                &params(json!({"QueueName": name, "Attributes": attributes_json(attrs)})),
                "localhost",
            )
            .await
            .map_err(|e| api_failed(path, e))?;
        return Ok(Change::Created);
    }
    let mut desired: BTreeMap<String, String> = Sqs::default_attributes(fifo)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    desired.extend(attrs.iter().filter(|(k, _)| k != "FifoQueue").cloned());
    let current = sqs_attributes(api, path, name).await?;
    let keys: BTreeSet<&String> = desired.keys().chain(current.keys()).collect();
    let changed: Vec<(String, String)> = keys
        .into_iter()
        .filter_map(|k| {
            let want = desired.get(k).map_or("", String::as_str);
            let have = current.get(k).map_or("", String::as_str);
            (!same_attribute(want, have)).then(|| (k.clone(), want.to_owned()))
        })
        .collect();
    if changed.is_empty() {
        return Ok(Change::Unchanged);
    }
    set_queue_attributes(api, path, name, changed).await?;
    Ok(Change::Updated)
}

fn apply_binding(b: &BindingPlan) -> Result<Change, DefinitionsError> {
    let missing = |what: &str, name: &str| {
        DefinitionsError::new(
            ErrorKind::Failed,
            &b.path,
            format!("{what} \"{name}\" disappeared while the definitions were applied"),
        )
    };
    let source = b
        .vhost
        .exchange(&b.source)
        .ok_or_else(|| missing("exchange", &b.source))?;
    let destination = if b.to_exchange {
        Destination::Exchange(
            b.vhost
                .exchange(&b.destination)
                .ok_or_else(|| missing("exchange", &b.destination))?,
        )
    } else {
        Destination::Queue(
            b.vhost
                .queue(&b.destination)
                .ok_or_else(|| missing("queue", &b.destination))?,
        )
    };
    let exists = source.bindings().iter().any(|x| {
        x.hook.is_none()
            && x.key_form == KeyForm::Amqp
            && x.destination.same(&destination)
            && x.key.as_str() == b.key
            && x.args.as_deref().map(table_json).unwrap_or_default() == b.args_json
    });
    if exists {
        return Ok(Change::Unchanged);
    }
    let args = (!b.args.inner().is_empty()).then(|| b.args.clone());
    match destination {
        Destination::Exchange(dest) => {
            b.vhost.bind_exchange(&source, &dest, &b.key, args);
        }
        Destination::Queue(q) => {
            b.vhost.bind_queue_with_args(
                &source,
                &q,
                &b.key,
                KeyForm::Amqp,
                BindingOptions::plain(),
                args,
            );
        }
    }
    Ok(Change::Created)
}

fn converge_topic(api: &Api, t: &TopicPlan) -> Result<Change, DefinitionsError> {
    let current = api
        .sns
        .topic_attributes()
        .into_iter()
        .find(|(name, _)| *name == t.name)
        .map(|(_, a)| a);
    let Some(current) = current else {
        api.sns
            .call(
                "CreateTopic",
                &params(json!({"Name": t.name, "Attributes": t.attributes})),
                "localhost",
            )
            .map_err(|e| api_failed(&t.path, e))?;
        return Ok(Change::Created);
    };
    let keys: BTreeSet<&String> = t.attributes.keys().chain(current.keys()).collect();
    let mut change = Change::Unchanged;
    for k in keys.into_iter().filter(|k| *k != "FifoTopic") {
        let want = t.attributes.get(k).map_or("", String::as_str);
        let have = current.get(k).map_or("", String::as_str);
        if same_attribute(want, have) {
            continue;
        }
        api.sns
            .call(
                "SetTopicAttributes",
                &params(json!({
                    "TopicArn": api.sns.arn(&t.name),
                    "AttributeName": k,
                    "AttributeValue": want,
                })),
                "localhost",
            )
            .map_err(|e| api_failed(&format!("{}.attributes.{k}", t.path), e))?;
        change = Change::Updated;
    }
    Ok(change)
}

/// The subscriptions of the gateway as (ARN, topic name, protocol, endpoint
/// as a definition spells it).
fn list_subscriptions(api: &Api) -> Vec<(String, String, String, String)> {
    let listed = api
        .sns
        .call("ListSubscriptions", &Params(Map::new()), "localhost")
        .unwrap_or_default();
    listed
        .get("Subscriptions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let field = |k: &str| s.get(k).and_then(Value::as_str).map(str::to_owned);
            let protocol = field("Protocol")?;
            let endpoint = field("Endpoint")?;
            let endpoint = if protocol == "sqs" {
                endpoint.rsplit(':').next().unwrap_or_default().to_owned()
            } else {
                endpoint
            };
            let topic = field("TopicArn")?.rsplit(':').next()?.to_owned();
            Some((field("SubscriptionArn")?, topic, protocol, endpoint))
        })
        .collect()
}

/// Subscription attributes whose absence means this value.
const SUBSCRIPTION_DEFAULTS: &[(&str, &str)] = &[
    ("RawMessageDelivery", "false"),
    ("FilterPolicyScope", "MessageAttributes"),
];

/// What GetSubscriptionAttributes reports that a definition does not set.
const SUBSCRIPTION_READ_ONLY: &[&str] = &[
    "SubscriptionArn",
    "TopicArn",
    "Owner",
    "Protocol",
    "Endpoint",
    "PendingConfirmation",
    "ConfirmationWasAuthenticated",
    "SubscriptionRoleArn",
];

/// The settable attributes of subscription `arn`.
fn subscription_attributes(api: &Api, arn: &str) -> BTreeMap<String, String> {
    api.sns
        .call(
            "GetSubscriptionAttributes",
            &params(json!({ "SubscriptionArn": arn })),
            "localhost",
        )
        .ok()
        .as_ref()
        .and_then(|v| v.get("Attributes"))
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(k, _)| !SUBSCRIPTION_READ_ONLY.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

fn converge_subscription(
    api: &Api,
    s: &SubscriptionPlan,
    host: &str,
) -> Result<Change, DefinitionsError> {
    let existing = list_subscriptions(api)
        .into_iter()
        .find(|(_, topic, protocol, endpoint)| {
            *topic == s.topic && *protocol == s.protocol && *endpoint == s.endpoint
        });
    let Some((arn, ..)) = existing else {
        api.sns
            .call(
                "Subscribe",
                &params(json!({
                    "TopicArn": api.sns.arn(&s.topic),
                    "Protocol": s.protocol,
                    "Endpoint": subscription_endpoint(api, &s.protocol, &s.endpoint),
                    "Attributes": attributes_json(&s.attributes),
                })),
                host,
            )
            .map_err(|e| api_failed(&s.path, e))?;
        return Ok(Change::Created);
    };
    let mut desired: BTreeMap<String, String> = SUBSCRIPTION_DEFAULTS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    desired.extend(
        s.attributes
            .iter()
            .filter(|(k, _)| k != "SubscriptionRoleArn")
            .cloned(),
    );
    let current = subscription_attributes(api, &arn);
    let differs = |k: &str| {
        let want = desired.get(k).map_or("", String::as_str);
        let have = current.get(k).map_or("", String::as_str);
        !same_attribute(want, have)
    };
    let keys: BTreeSet<&String> = desired.keys().chain(current.keys()).collect();
    let mut sets: Vec<(&str, String)> = Vec::new();
    // A new scope re-reads the filter policy, so the old policy goes first
    // and the new one comes after the scope.
    let filter_changes = differs("FilterPolicy") || differs("FilterPolicyScope");
    if filter_changes && current.get("FilterPolicy").is_some_and(|f| !f.is_empty()) {
        sets.push(("FilterPolicy", String::new()));
    }
    for k in keys {
        if k == "FilterPolicy" || !differs(k) {
            continue;
        }
        sets.push((k, desired.get(k).cloned().unwrap_or_default()));
    }
    if filter_changes && let Some(f) = desired.get("FilterPolicy").filter(|f| !f.is_empty()) {
        sets.push(("FilterPolicy", f.clone()));
    }
    if sets.is_empty() {
        return Ok(Change::Unchanged);
    }
    for (k, v) in sets {
        api.sns
            .call(
                "SetSubscriptionAttributes",
                &params(json!({
                    "SubscriptionArn": arn,
                    "AttributeName": k,
                    "AttributeValue": v,
                })),
                "localhost",
            )
            .map_err(|e| api_failed(&format!("{}.attributes.{k}", s.path), e))?;
    }
    Ok(Change::Updated)
}

// ---- exporting ----

/// The running gateway as a document: exchanges (not `amq.*`, not SNS
/// topics), queues (not exclusive ones, not MQTT sessions), their bindings,
/// SNS topics and subscriptions, rules, users (password hashes) and the ACL.
/// Everything is sorted, so equal gateways export equal documents.
pub async fn export(api: &Api) -> Definitions {
    let topics = api.sns.topic_attributes();
    let topic_names: BTreeSet<&str> = topics.iter().map(|(n, _)| n.as_str()).collect();
    let mut vhosts: Vec<&Arc<VHost>> = api.core.vhosts.values().collect();
    vhosts.sort_by(|a, b| a.name().as_str().cmp(b.name().as_str()));
    let mut doc = Definitions::default();
    for v in &vhosts {
        let vname = v.name().to_string();
        let mut exchanges = v.exchanges();
        exchanges.sort_by(|a, b| a.name().as_str().cmp(b.name().as_str()));
        for ex in &exchanges {
            let name = ex.name().as_str();
            if name.is_empty()
                || name.starts_with("amq.")
                || (vname == "/" && topic_names.contains(name))
            {
                continue;
            }
            doc.exchanges.push(ExchangeDef {
                vhost: vname.clone(),
                name: name.to_owned(),
                kind: ex.kind().as_str().to_owned(),
                durable: ex.durable,
                auto_delete: ex.auto_delete,
                internal: ex.internal,
                arguments: table_json(&ex.args),
            });
        }
        let mut queues = v.queues();
        queues.sort_by(|a, b| a.name().as_str().cmp(b.name().as_str()));
        for q in queues.iter().filter(|q| exported_queue(q)) {
            let name = q.name().to_string();
            let def = if vname == "/" && is_sqs_queue(q) {
                let attrs = sqs_attributes(api, "", &name).await.unwrap_or_default();
                QueueDef {
                    vhost: vname.clone(),
                    name,
                    durable: true,
                    auto_delete: false,
                    arguments: Map::new(),
                    attributes: Some(export_sqs_attributes(q, attrs)),
                }
            } else {
                QueueDef {
                    vhost: vname.clone(),
                    name,
                    durable: q.options().durable,
                    auto_delete: q.options().auto_delete,
                    arguments: queue_arguments(q.options()),
                    attributes: None,
                }
            };
            doc.queues.push(def);
        }
        for ex in &exchanges {
            for b in ex.bindings() {
                if b.hook.is_some() || b.key_form != KeyForm::Amqp {
                    continue;
                }
                let (destination, destination_type) = match &b.destination {
                    Destination::Queue(q) => {
                        let catalogued = v.queue(q.name()).is_some_and(|x| Arc::ptr_eq(&x, q));
                        if !catalogued || !exported_queue(q) {
                            continue;
                        }
                        (q.name().to_string(), DestinationType::Queue)
                    }
                    Destination::Exchange(e) => (e.name().to_string(), DestinationType::Exchange),
                };
                doc.bindings.push(BindingDef {
                    vhost: vname.clone(),
                    source: ex.name().to_string(),
                    destination,
                    destination_type,
                    routing_key: b.key.to_string(),
                    arguments: b.args.as_deref().map(table_json).unwrap_or_default(),
                });
            }
        }
    }
    doc.bindings.sort_by(|a, b| {
        (
            &a.vhost,
            &a.source,
            a.destination_type,
            &a.destination,
            &a.routing_key,
        )
            .cmp(&(
                &b.vhost,
                &b.source,
                b.destination_type,
                &b.destination,
                &b.routing_key,
            ))
            .then_with(|| {
                Value::Object(a.arguments.clone())
                    .to_string()
                    .cmp(&Value::Object(b.arguments.clone()).to_string())
            })
    });
    for (name, attrs) in topics {
        doc.topics.push(TopicDef {
            name,
            attributes: attrs
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.clone(), attribute_value(v)))
                .collect(),
        });
    }
    let mut subscriptions = list_subscriptions(api);
    subscriptions.sort_by(|a, b| (&a.1, &a.2, &a.3).cmp(&(&b.1, &b.2, &b.3)));
    for (arn, topic, protocol, endpoint) in subscriptions {
        let attributes = subscription_attributes(api, &arn)
            .into_iter()
            .filter(|(k, v)| {
                !v.is_empty()
                    && !SUBSCRIPTION_DEFAULTS
                        .iter()
                        .any(|(dk, dv)| dk == k && dv == v)
            })
            .map(|(k, v)| (k, attribute_value(&v)))
            .collect();
        doc.subscriptions.push(SubscriptionDef {
            topic,
            protocol,
            endpoint,
            attributes,
        });
    }
    doc.rules = api
        .core
        .rules
        .rules()
        .iter()
        .map(|r| r.config.clone())
        .collect();
    let table = api.core.auth.table();
    doc.users = table.users.values().cloned().collect();
    doc.acl = Some(table.acl.clone());
    doc.acl_default = Some(table.acl_default);
    doc
}

/// Whether a catalogued queue belongs in an export (exclusive queues live
/// and die with their connection; bridge outboxes come from `[[bridges]]`).
fn exported_queue(q: &Queue) -> bool {
    !q.options().exclusive && q.owner().is_none() && !crate::bridge::is_outbox(q.name())
}

/// An SQS queue's attributes as a definition: those that differ from the
/// defaults, FifoQueue, and the redrive policy naming its queue by name.
fn export_sqs_attributes(q: &Queue, attrs: BTreeMap<String, String>) -> Map<String, Value> {
    let fifo = q.options().fifo;
    let defaults = Sqs::default_attributes(fifo);
    let mut out = Map::new();
    if fifo {
        out.insert("FifoQueue".into(), Value::Bool(true));
    }
    for (k, v) in attrs {
        let default = defaults.iter().find(|(dk, _)| *dk == k);
        if v.is_empty() || default.is_some_and(|(_, dv)| same_attribute(dv, &v)) {
            continue;
        }
        out.insert(k, attribute_value(&v));
    }
    if let Some(r) = q.settings().redrive {
        out.insert(
            "RedrivePolicy".into(),
            json!({
                "deadLetterTargetArn": r.target.as_str(),
                "maxReceiveCount": r.max_receive_count,
            }),
        );
    }
    out
}

#[cfg(test)]
mod tests;
