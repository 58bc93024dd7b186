//! The Amazon SQS API over core queues.
//!
//! Every queue of the default vhost is an SQS queue: one created here, one an
//! AMQP application declared, or one a topic rule fills. Queue semantics
//! (visibility, receipts, delay, retention, redrive, FIFO groups and
//! deduplication) live in the core queue; this module validates requests the
//! way SQS does, keeps the metadata SQS reports (timestamps, tags, policies),
//! and shapes responses, including the MD5 digests SDKs verify.
//!
//! What this module keeps outside the core survives restarts: each queue's
//! `QueueMeta` under `keys::SQS_QUEUE [name]` and each message move task
//! under `keys::MOVE_TASK [handle]`, written while the request that changes
//! them runs (so its response waits for them) and read back in [`Sqs::new`].
//! The queues themselves, their settings and their messages are the core's.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use md5::{Digest, Md5};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::aws::{ApiError, Params};
use crate::config::{AwsConfig, SqsConfig};
use crate::core::Core;
use crate::core::bytestr::ByteStr;
use crate::core::message::{
    AttributeValue, KeyForm, Message, MessageAttribute, MessageProperties, now_ms,
};
use crate::core::queue::{
    Delivery, LiveSettings, PullLimits, PullMode, Queue, QueueOptions, Redrive, SendOptions, Sent,
    Wakeup,
};
use crate::core::vhost::VHost;
use crate::store::records::{from_json, put_json};
use crate::store::{Op, Ops, SharedStore, Space, keys};

const DEFAULT_VISIBILITY: u64 = 30;
const DEFAULT_RETENTION: u64 = 345_600;
const MAX_RETENTION: u64 = 1_209_600;
const DEFAULT_MAX_SIZE: u64 = 1_048_576;
const MAX_DELAY: u64 = 900;
const MAX_VISIBILITY: u64 = 43_200;
/// Finished move tasks kept (and listed) per source queue; ListMessageMoveTasks
/// returns at most 10.
const KEPT_MOVE_TASKS: usize = 10;

/// SQS-level facts about a queue that the core does not need; stored as JSON
/// under `keys::SQS_QUEUE [name]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
struct QueueMeta {
    created: u64,
    modified: u64,
    max_message_size: u64,
    receive_wait: u64,
    tags: Vec<(String, String)>,
    /// Attributes kept verbatim (Policy, RedriveAllowPolicy, KMS settings,
    /// FifoThroughputLimit, DeduplicationScope, ...).
    extra: Vec<(String, String)>,
}

impl Default for QueueMeta {
    fn default() -> Self {
        Self::new()
    }
}

impl QueueMeta {
    fn new() -> Self {
        let now = now_ms() / 1000;
        QueueMeta {
            created: now,
            modified: now,
            max_message_size: DEFAULT_MAX_SIZE,
            receive_wait: 0,
            tags: Vec::new(),
            extra: Vec::new(),
        }
    }

    fn extra(&self, name: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn set_extra(&mut self, name: &str, value: String) {
        match self.extra.iter_mut().find(|(k, _)| k == name) {
            Some(e) => e.1 = value,
            None => self.extra.push((name.to_owned(), value)),
        }
    }
}

/// Where a move task stands, as ListMessageMoveTasks reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum MoveStatus {
    Running,
    Cancelling,
    Cancelled,
    Completed,
    Failed,
}

impl MoveStatus {
    fn as_str(self) -> &'static str {
        match self {
            MoveStatus::Running => "RUNNING",
            MoveStatus::Cancelling => "CANCELLING",
            MoveStatus::Cancelled => "CANCELLED",
            MoveStatus::Completed => "COMPLETED",
            MoveStatus::Failed => "FAILED",
        }
    }
}

/// A message move task as stored under `keys::MOVE_TASK [handle]`: rewritten
/// when it starts, after each batch it moves, and when it ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MoveTaskRecord {
    source_arn: String,
    destination_arn: Option<String>,
    rate: Option<u64>,
    started: u64,
    to_move: u64,
    moved: u64,
    status: MoveStatus,
    #[serde(default)]
    failure_reason: Option<String>,
}

/// A message move task (StartMessageMoveTask), shared by the service (which
/// lists and cancels it) and the task moving the messages.
#[derive(Debug)]
struct MoveTask {
    handle: String,
    source_arn: String,
    destination_arn: Option<String>,
    rate: Option<u64>,
    started: u64,
    to_move: u64,
    moved: AtomicU64,
    /// Status and failure reason; the store is written while it is held, so
    /// the stored record is never older than what was last reported.
    state: Mutex<(MoveStatus, Option<String>)>,
    cancel: CancellationToken,
    store: SharedStore,
}

impl MoveTask {
    fn status(&self) -> MoveStatus {
        self.state.lock().0
    }

    /// Writes the task's record as it stands now.
    fn save(&self) {
        let st = self.state.lock();
        self.save_locked(&st);
    }

    fn save_locked(&self, st: &(MoveStatus, Option<String>)) {
        let record = MoveTaskRecord {
            source_arn: self.source_arn.clone(),
            destination_arn: self.destination_arn.clone(),
            rate: self.rate,
            started: self.started,
            to_move: self.to_move,
            moved: self.moved.load(Ordering::Relaxed),
            status: st.0,
            failure_reason: st.1.clone(),
        };
        let mut ops = Ops::new();
        ops.push(put_json(move_task_key(&self.handle), &record));
        self.store.submit(ops);
    }

    /// Sets the status (and why it failed) and stores it.
    fn set_status(&self, status: MoveStatus, reason: Option<String>) {
        let mut st = self.state.lock();
        *st = (status, reason);
        self.save_locked(&st);
    }
}

fn sqs_queue_key(name: &str) -> crate::store::Key {
    keys::meta_key(keys::SQS_QUEUE, &[name.as_bytes()])
}

fn move_task_key(handle: &str) -> crate::store::Key {
    keys::meta_key(keys::MOVE_TASK, &[handle.as_bytes()])
}

/// The SQS service.
#[derive(Debug)]
pub struct Sqs {
    core: Arc<Core>,
    vhost: Arc<VHost>,
    aws: AwsConfig,
    cfg: SqsConfig,
    meta: Mutex<HashMap<String, QueueMeta>>,
    tasks: Mutex<Vec<Arc<MoveTask>>>,
    id_prefix: u64,
}

/// Parsed receipt handle.
struct Receipt {
    uid: u64,
    tag: u64,
}

impl Sqs {
    /// The SQS API over the default vhost, with the queue metadata and move
    /// tasks the store kept. A move task that was running when the gateway
    /// stopped resumes (see `restore_move_tasks` for why).
    pub fn new(core: Arc<Core>, aws: AwsConfig, cfg: SqsConfig, id_prefix: u64) -> Self {
        let sqs = Sqs {
            vhost: core.vhost.clone(),
            core,
            aws,
            cfg,
            meta: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            id_prefix,
        };
        sqs.restore_meta();
        sqs.restore_move_tasks();
        sqs
    }

    /// Takes back the stored `QueueMeta` of every queue that came back. The
    /// metadata of a queue that did not (its record was lost or corrupt) is
    /// removed rather than left to surprise a later queue of that name.
    fn restore_meta(&self) {
        let mut gone = Ops::new();
        let mut meta = self.meta.lock();
        for r in self.core.take_recovered(keys::SQS_QUEUE) {
            let name = r.part(0);
            if self.vhost.queue(&name).is_none() {
                tracing::warn!(queue = %name, "dropping stored SQS attributes of a queue that did not come back");
                gone.push(Op::Remove(Space::Meta, sqs_queue_key(&name)));
                continue;
            }
            if let Some(m) = from_json::<QueueMeta>("sqs queue", &r.value) {
                meta.insert(name, m);
            }
        }
        if !gone.is_empty() {
            self.core.store.submit(gone);
        }
    }

    /// Takes back the stored message move tasks. Finished ones (COMPLETED,
    /// CANCELLED, FAILED) are listed as before. A task that was CANCELLING is
    /// CANCELLED: its cancellation was acknowledged.
    ///
    /// A task that was RUNNING **resumes**: it moves the rest of what it set
    /// out to move (`ApproximateNumberOfMessagesToMove` minus what it had
    /// moved), under the same handle and rate. Resuming is what the caller
    /// asked for (a redrive is an instruction, not a session), and it is safe:
    /// each message is written to its destination before it is removed from
    /// the dead-letter queue, and messages the task had leased come back to
    /// the dead-letter queue on restart. A crash in the middle of one message
    /// can move it twice, the at-least-once promise SQS makes too, and the
    /// stored count may lag by the last batch, so a resumed task can move a
    /// few messages that arrived after it started. Only when its source or
    /// destination queue no longer exists is it reported FAILED, with a
    /// FailureReason saying so.
    fn restore_move_tasks(&self) {
        let mut tasks: Vec<(String, MoveTaskRecord)> = self
            .core
            .take_recovered(keys::MOVE_TASK)
            .into_iter()
            .filter_map(|r| Some((r.part(0), from_json("sqs move task", &r.value)?)))
            .collect();
        tasks.sort_by(|a, b| (a.1.started, &a.0).cmp(&(b.1.started, &b.0)));
        let mut list = self.tasks.lock();
        for (handle, r) in tasks {
            let task = Arc::new(MoveTask {
                handle,
                source_arn: r.source_arn,
                destination_arn: r.destination_arn,
                rate: r.rate,
                started: r.started,
                to_move: r.to_move,
                moved: AtomicU64::new(r.moved),
                state: Mutex::new((r.status, r.failure_reason)),
                cancel: CancellationToken::new(),
                store: self.core.store.clone(),
            });
            match r.status {
                MoveStatus::Running => self.resume_move_task(&task),
                MoveStatus::Cancelling => task.set_status(MoveStatus::Cancelled, None),
                MoveStatus::Cancelled | MoveStatus::Completed | MoveStatus::Failed => {}
            }
            list.push(task);
        }
    }

    /// Restarts the mover of a task that was running at the last stop.
    fn resume_move_task(&self, task: &Arc<MoveTask>) {
        let queue_of = |arn: &str| {
            self.name_from_arn(arn)
                .ok()
                .and_then(|n| self.vhost.queue(n))
        };
        let Some(source) = queue_of(&task.source_arn) else {
            task.set_status(
                MoveStatus::Failed,
                Some("The source queue no longer exists.".into()),
            );
            return;
        };
        let destination = match &task.destination_arn {
            Some(arn) => match queue_of(arn) {
                Some(q) => Some(q),
                None => {
                    task.set_status(
                        MoveStatus::Failed,
                        Some("The destination queue no longer exists.".into()),
                    );
                    return;
                }
            },
            None => None,
        };
        tracing::info!(
            source = %task.source_arn,
            moved = task.moved.load(Ordering::Relaxed),
            to_move = task.to_move,
            "resuming a message move task"
        );
        tokio::spawn(run_move_task(
            self.vhost.clone(),
            task.clone(),
            source,
            destination,
        ));
    }

    /// Stores `meta` as queue `name`'s (called with the metadata lock held,
    /// so the store sees changes in the order they were made).
    fn save_meta(&self, name: &str, meta: &QueueMeta) {
        let mut ops = Ops::new();
        ops.push(put_json(sqs_queue_key(name), meta));
        self.core.store.submit(ops);
    }

    /// Runs one operation. Its response is sent only once what it changed
    /// (a sent message, a deletion, a new queue) is durable; while the store
    /// is failing, sends are refused with a 500 rather than acknowledged.
    pub async fn call(&self, action: &str, p: &Params, host: &str) -> Result<Value, ApiError> {
        if action == "ReceiveMessage" {
            return self.receive_message(p).await;
        }
        if matches!(action, "SendMessage" | "SendMessageBatch")
            && let Err(e) = self.core.store.health()
        {
            return Err(ApiError::internal(format!(
                "The message could not be stored: {e}"
            )));
        }
        let (result, lsn) = crate::store::tracked(|| self.call_sync(action, p, host));
        let value = result?;
        crate::store::durable(&*self.core.store, lsn)
            .await
            .map_err(|e| ApiError::internal(format!("The change could not be stored: {e}")))?;
        Ok(value)
    }

    fn call_sync(&self, action: &str, p: &Params, host: &str) -> Result<Value, ApiError> {
        match action {
            "CreateQueue" => self.create_queue(p, host),
            "GetQueueUrl" => self.get_queue_url(p, host),
            "ListQueues" => self.list_queues(p, host),
            "DeleteQueue" => self.delete_queue(p),
            "GetQueueAttributes" => self.get_queue_attributes(p),
            "SetQueueAttributes" => self.set_queue_attributes(p),
            "PurgeQueue" => self.purge_queue(p),
            "SendMessage" => self.send_message(p),
            "SendMessageBatch" => self.send_message_batch(p),
            "DeleteMessage" => self.delete_message(p),
            "DeleteMessageBatch" => self.delete_message_batch(p),
            "ChangeMessageVisibility" => self.change_visibility(p),
            "ChangeMessageVisibilityBatch" => self.change_visibility_batch(p),
            "TagQueue" => self.tag_queue(p),
            "UntagQueue" => self.untag_queue(p),
            "ListQueueTags" => self.list_queue_tags(p),
            "ListDeadLetterSourceQueues" => self.list_dead_letter_sources(p, host),
            "StartMessageMoveTask" => self.start_move_task(p),
            "CancelMessageMoveTask" => self.cancel_move_task(p),
            "ListMessageMoveTasks" => self.list_move_tasks(p),
            // Permissions are accepted (and not enforced) on existing queues.
            "AddPermission" | "RemovePermission" => self.queue(p).map(|_| json!({})),
            other => Err(ApiError::sender_as(
                "InvalidAction",
                "InvalidAction",
                format!("The action {other} is not valid for this endpoint."),
            )),
        }
    }

    /// The SQS operations this service answers.
    pub fn knows(action: &str) -> bool {
        matches!(
            action,
            "CreateQueue"
                | "GetQueueUrl"
                | "ListQueues"
                | "DeleteQueue"
                | "GetQueueAttributes"
                | "SetQueueAttributes"
                | "PurgeQueue"
                | "SendMessage"
                | "SendMessageBatch"
                | "ReceiveMessage"
                | "DeleteMessage"
                | "DeleteMessageBatch"
                | "ChangeMessageVisibility"
                | "ChangeMessageVisibilityBatch"
                | "TagQueue"
                | "UntagQueue"
                | "ListQueueTags"
                | "ListDeadLetterSourceQueues"
                | "StartMessageMoveTask"
                | "CancelMessageMoveTask"
                | "ListMessageMoveTasks"
                | "AddPermission"
                | "RemovePermission"
        )
    }

    // ---- names, URLs, ARNs ----

    fn url(&self, host: &str, name: &str) -> String {
        format!("http://{host}/{}/{name}", self.aws.account_id)
    }

    /// The ARN of queue `name`.
    pub fn arn(&self, name: &str) -> String {
        format!(
            "arn:aws:sqs:{}:{}:{name}",
            self.aws.region, self.aws.account_id
        )
    }

    fn name_from_arn<'a>(&self, arn: &'a str) -> Result<&'a str, ApiError> {
        let parts: Vec<&'a str> = arn.split(':').collect();
        if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sqs" {
            return Err(ApiError::invalid(format!(
                "Value {arn} for parameter ARN is invalid."
            )));
        }
        Ok(parts[5])
    }

    fn queue_name<'a>(&self, p: &'a Params) -> Result<&'a str, ApiError> {
        let url = p.need_str("QueueUrl")?;
        Ok(url.trim_end_matches('/').rsplit('/').next().unwrap_or(url))
    }

    fn queue(&self, p: &Params) -> Result<(String, Arc<Queue>), ApiError> {
        let name = self.queue_name(p)?;
        let q = self.vhost.queue(name).ok_or_else(no_queue)?;
        Ok((name.to_owned(), q))
    }

    fn meta_of(&self, name: &str) -> QueueMeta {
        self.meta.lock().entry(name.to_owned()).or_default().clone()
    }

    // ---- queues ----

    /// Checks a new queue's name against its `FifoQueue` attribute; whether
    /// it is a FIFO queue.
    fn check_name(name: &str, attrs: &[(String, String)]) -> Result<bool, ApiError> {
        let fifo_name = name.ends_with(".fifo");
        let base = name.strip_suffix(".fifo").unwrap_or(name);
        if base.is_empty()
            || name.len() > 80
            || !base
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ApiError::invalid(
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
            ));
        }
        let fifo = attrs.iter().any(|(k, v)| k == "FifoQueue" && v == "true");
        if fifo != fifo_name {
            return Err(ApiError::invalid(
                "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix",
            ));
        }
        Ok(fifo)
    }

    /// Checks a queue's name and attributes as CreateQueue does, creating
    /// nothing; whether it is a FIFO queue. `RedrivePolicy` is the caller's
    /// to check (its dead-letter queue may not exist yet).
    pub fn check_new_queue(
        &self,
        name: &str,
        attrs: &[(String, String)],
    ) -> Result<bool, ApiError> {
        let fifo = Self::check_name(name, attrs)?;
        let rest: Vec<(String, String)> = attrs
            .iter()
            .filter(|(k, _)| k != "RedrivePolicy")
            .cloned()
            .collect();
        let mut settings = LiveSettings::default();
        self.apply_attributes(&rest, &mut settings, &mut QueueMeta::new(), fifo)?;
        Ok(fifo)
    }

    /// What GetQueueAttributes reports for the settable attributes of a queue
    /// created without them.
    pub fn default_attributes(fifo: bool) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("DelaySeconds", "0".to_owned()),
            ("VisibilityTimeout", DEFAULT_VISIBILITY.to_string()),
            ("MessageRetentionPeriod", DEFAULT_RETENTION.to_string()),
            ("MaximumMessageSize", DEFAULT_MAX_SIZE.to_string()),
            ("ReceiveMessageWaitTimeSeconds", "0".to_owned()),
            ("SqsManagedSseEnabled", "false".to_owned()),
        ];
        if fifo {
            out.push(("ContentBasedDeduplication", "false".to_owned()));
            out.push(("DeduplicationScope", "queue".to_owned()));
            out.push(("FifoThroughputLimit", "perQueue".to_owned()));
        }
        out
    }

    fn create_queue(&self, p: &Params, host: &str) -> Result<Value, ApiError> {
        let name = p.need_str("QueueName")?;
        let attrs = p.string_map("Attributes");
        let fifo = Self::check_name(name, &attrs)?;
        let mut meta = QueueMeta::new();
        let mut settings = LiveSettings {
            visibility_timeout: Some(Duration::from_secs(DEFAULT_VISIBILITY)),
            retention: Some(Duration::from_secs(DEFAULT_RETENTION)),
            dedup_window: self.cfg.dedup_window,
            ..Default::default()
        };
        self.apply_attributes(&attrs, &mut settings, &mut meta, fifo)?;
        // The JSON protocol names the member `tags`; the query protocol's
        // `Tag.N` arrives as `Tags`.
        meta.tags = p.string_map("tags");
        meta.tags.extend(p.string_map("Tags"));
        if let Some(existing) = self.vhost.queue(name) {
            // Same attributes: the existing queue; different ones: an error.
            let old = self.meta_of(name);
            let same = existing.options().fifo == fifo
                && existing.settings() == settings
                && old.max_message_size == meta.max_message_size
                && old.receive_wait == meta.receive_wait
                && meta
                    .extra
                    .iter()
                    .all(|(k, v)| old.extra(k) == Some(v.as_str()));
            if !same && !attrs.is_empty() {
                return Err(ApiError::sender_as(
                    "QueueNameExists",
                    "QueueAlreadyExists",
                    format!(
                        "A queue already exists with the same name and a different value for attribute(s) {}",
                        names(&attrs)
                    ),
                ));
            }
            return Ok(json!({ "QueueUrl": self.url(host, name) }));
        }
        let options = QueueOptions {
            durable: true,
            settings,
            fifo,
            ..Default::default()
        };
        self.vhost.declare_queue(name, options, None).map_err(|e| {
            ApiError::sender_as("QueueNameExists", "QueueAlreadyExists", e.to_string())
        })?;
        {
            let mut all = self.meta.lock();
            self.save_meta(name, &meta);
            all.insert(name.to_owned(), meta);
        }
        tracing::debug!(queue = name, fifo, "sqs queue created");
        Ok(json!({ "QueueUrl": self.url(host, name) }))
    }

    /// Validates and applies settable attributes.
    fn apply_attributes(
        &self,
        attrs: &[(String, String)],
        s: &mut LiveSettings,
        meta: &mut QueueMeta,
        fifo: bool,
    ) -> Result<(), ApiError> {
        for (k, v) in attrs {
            let num = |min: u64, max: u64| -> Result<u64, ApiError> {
                v.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| attr_error(k, v))
            };
            match k.as_str() {
                "DelaySeconds" => s.delay = Duration::from_secs(num(0, MAX_DELAY)?),
                "VisibilityTimeout" => {
                    s.visibility_timeout = Some(Duration::from_secs(num(0, MAX_VISIBILITY)?))
                }
                "MessageRetentionPeriod" => {
                    let min = self.cfg.minimum_retention.as_secs().max(1);
                    s.retention = Some(Duration::from_secs(num(min, MAX_RETENTION)?));
                }
                "MaximumMessageSize" => meta.max_message_size = num(1024, DEFAULT_MAX_SIZE)?,
                "ReceiveMessageWaitTimeSeconds" => meta.receive_wait = num(0, 20)?,
                "RedrivePolicy" => {
                    if v.is_empty() {
                        s.redrive = None;
                    } else {
                        s.redrive = Some(self.parse_redrive(v, fifo)?);
                    }
                    meta.set_extra(k, v.clone());
                }
                "FifoQueue" => {
                    if v != "true" && v != "false" {
                        return Err(attr_error(k, v));
                    }
                }
                "ContentBasedDeduplication" => {
                    if !fifo {
                        return Err(ApiError::sender(
                            "InvalidAttributeName",
                            format!("Unknown Attribute {k}."),
                        ));
                    }
                    s.content_based_dedup = parse_bool(k, v)?;
                }
                "DeduplicationScope" => {
                    if !fifo {
                        return Err(ApiError::sender(
                            "InvalidAttributeName",
                            format!("Unknown Attribute {k}."),
                        ));
                    }
                    s.dedup_per_group = match v.as_str() {
                        "messageGroup" => true,
                        "queue" => false,
                        _ => return Err(attr_error(k, v)),
                    };
                    meta.set_extra(k, v.clone());
                }
                "FifoThroughputLimit" => {
                    if !fifo || !matches!(v.as_str(), "perQueue" | "perMessageGroupId") {
                        return Err(attr_error(k, v));
                    }
                    meta.set_extra(k, v.clone());
                }
                "Policy"
                | "RedriveAllowPolicy"
                | "KmsMasterKeyId"
                | "KmsDataKeyReusePeriodSeconds"
                | "SqsManagedSseEnabled" => {
                    if k == "RedriveAllowPolicy" && !v.is_empty() {
                        serde_json::from_str::<Value>(v).map_err(|_| attr_error(k, v))?;
                    }
                    meta.set_extra(k, v.clone());
                }
                _ => {
                    return Err(ApiError::sender(
                        "InvalidAttributeName",
                        format!("Unknown Attribute {k}."),
                    ));
                }
            }
        }
        if meta.extra("FifoThroughputLimit") == Some("perMessageGroupId") && !s.dedup_per_group {
            return Err(ApiError::invalid(
                "Invalid value for the parameter FifoThroughputLimit. Reason: perMessageGroupId requires DeduplicationScope messageGroup.",
            ));
        }
        Ok(())
    }

    fn parse_redrive(&self, text: &str, fifo: bool) -> Result<Redrive, ApiError> {
        let bad = || attr_error("RedrivePolicy", text);
        let v: Value = serde_json::from_str(text).map_err(|_| bad())?;
        let arn = v
            .get("deadLetterTargetArn")
            .and_then(Value::as_str)
            .ok_or_else(bad)?;
        let max = match v.get("maxReceiveCount") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .filter(|n| (1..=1000).contains(n))
        .ok_or_else(bad)?;
        let target = self.name_from_arn(arn)?;
        let Some(dlq) = self.vhost.queue(target) else {
            return Err(ApiError::invalid(format!(
                "Value {text} for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist."
            )));
        };
        if dlq.options().fifo != fifo {
            return Err(ApiError::invalid(format!(
                "Value {text} for parameter RedrivePolicy is invalid. Reason: Dead-letter queue must be the same type of queue as the source."
            )));
        }
        Ok(Redrive {
            max_receive_count: max as u32,
            target: target.into(),
        })
    }

    fn get_queue_url(&self, p: &Params, host: &str) -> Result<Value, ApiError> {
        let name = p.need_str("QueueName")?;
        if self.vhost.queue(name).is_none() {
            return Err(no_queue());
        }
        Ok(json!({ "QueueUrl": self.url(host, name) }))
    }

    fn list_queues(&self, p: &Params, host: &str) -> Result<Value, ApiError> {
        let prefix = p.str("QueueNamePrefix").unwrap_or("");
        let max = p.int("MaxResults")?;
        if let Some(m) = max
            && !(1..=1000).contains(&m)
        {
            return Err(ApiError::invalid(
                "Value for parameter MaxResults is invalid. Reason: must be between 1 and 1000.",
            ));
        }
        let after = p.str("NextToken").and_then(decode_token);
        let mut names: Vec<String> = self
            .vhost
            .queues()
            .iter()
            .map(|q| q.name().to_string())
            .filter(|n| n.starts_with(prefix))
            .filter(|n| after.as_deref().is_none_or(|a| n.as_str() > a))
            .collect();
        names.sort();
        let limit = max.map_or(1000, |m| m as usize);
        let more = names.len() > limit;
        names.truncate(limit);
        let mut out = Map::new();
        if !names.is_empty() {
            out.insert(
                "QueueUrls".into(),
                names
                    .iter()
                    .map(|n| Value::String(self.url(host, n)))
                    .collect(),
            );
        }
        if more
            && max.is_some()
            && let Some(last) = names.last()
        {
            out.insert(
                "NextToken".into(),
                Value::String(URL_SAFE_NO_PAD.encode(last)),
            );
        }
        Ok(Value::Object(out))
    }

    fn delete_queue(&self, p: &Params) -> Result<Value, ApiError> {
        let (name, _) = self.queue(p)?;
        self.vhost.delete_queue(&name);
        let mut all = self.meta.lock();
        all.remove(&name);
        let mut ops = Ops::new();
        ops.push(Op::Remove(Space::Meta, sqs_queue_key(&name)));
        self.core.store.submit(ops);
        Ok(json!({}))
    }

    fn purge_queue(&self, p: &Params) -> Result<Value, ApiError> {
        let (_, q) = self.queue(p)?;
        q.purge_all();
        Ok(json!({}))
    }

    fn get_queue_attributes(&self, p: &Params) -> Result<Value, ApiError> {
        let (name, q) = self.queue(p)?;
        let wanted = p.string_list("AttributeNames");
        let all = wanted.iter().any(|n| n == "All");
        let meta = self.meta_of(&name);
        let s = q.settings();
        let fifo = q.options().fifo;
        let mut out: Vec<(&'static str, String)> = vec![
            ("ApproximateNumberOfMessages", q.ready_len().to_string()),
            (
                "ApproximateNumberOfMessagesNotVisible",
                q.leased_len().to_string(),
            ),
            (
                "ApproximateNumberOfMessagesDelayed",
                q.delayed_len().to_string(),
            ),
            ("CreatedTimestamp", meta.created.to_string()),
            ("LastModifiedTimestamp", meta.modified.to_string()),
            ("QueueArn", self.arn(&name)),
            (
                "VisibilityTimeout",
                s.visibility_timeout.map_or(0, |d| d.as_secs()).to_string(),
            ),
            ("MaximumMessageSize", meta.max_message_size.to_string()),
            (
                "MessageRetentionPeriod",
                s.retention
                    .map_or(MAX_RETENTION, |d| d.as_secs())
                    .to_string(),
            ),
            ("DelaySeconds", s.delay.as_secs().to_string()),
            (
                "ReceiveMessageWaitTimeSeconds",
                meta.receive_wait.to_string(),
            ),
            (
                "SqsManagedSseEnabled",
                meta.extra("SqsManagedSseEnabled")
                    .unwrap_or("false")
                    .to_owned(),
            ),
        ];
        if fifo {
            out.push(("FifoQueue", "true".into()));
            out.push((
                "ContentBasedDeduplication",
                s.content_based_dedup.to_string(),
            ));
            out.push((
                "DeduplicationScope",
                meta.extra("DeduplicationScope")
                    .unwrap_or("queue")
                    .to_owned(),
            ));
            out.push((
                "FifoThroughputLimit",
                meta.extra("FifoThroughputLimit")
                    .unwrap_or("perQueue")
                    .to_owned(),
            ));
        }
        for k in [
            "RedrivePolicy",
            "RedriveAllowPolicy",
            "Policy",
            "KmsMasterKeyId",
            "KmsDataKeyReusePeriodSeconds",
        ] {
            if let Some(v) = meta.extra(k).filter(|v| !v.is_empty()) {
                let key: &'static str = k;
                out.push((key, v.to_owned()));
            }
        }
        let mut attrs = Map::new();
        for (k, v) in out {
            if all || wanted.iter().any(|w| w == k) {
                attrs.insert(k.to_owned(), Value::String(v));
            }
        }
        for w in &wanted {
            if w != "All" && !attrs.contains_key(w) && !KNOWN_ATTRIBUTES.contains(&w.as_str()) {
                return Err(ApiError::sender(
                    "InvalidAttributeName",
                    format!("Unknown Attribute {w}."),
                ));
            }
        }
        if attrs.is_empty() {
            return Ok(json!({}));
        }
        Ok(json!({ "Attributes": attrs }))
    }

    fn set_queue_attributes(&self, p: &Params) -> Result<Value, ApiError> {
        let (name, q) = self.queue(p)?;
        let attrs = p.string_map("Attributes");
        let mut settings = q.settings();
        let mut meta = self.meta_of(&name);
        self.apply_attributes(&attrs, &mut settings, &mut meta, q.options().fifo)?;
        meta.modified = now_ms() / 1000;
        // Every change to a queue's live settings (visibility, delay,
        // retention, RedrivePolicy, FIFO deduplication) is made here, so this
        // is where the core's queue record is rewritten.
        q.update_settings(|s| *s = settings);
        self.vhost.save_queue(&q);
        let mut all = self.meta.lock();
        self.save_meta(&name, &meta);
        all.insert(name, meta);
        Ok(json!({}))
    }

    fn tag_queue(&self, p: &Params) -> Result<Value, ApiError> {
        let (name, _) = self.queue(p)?;
        let tags = p.string_map("Tags");
        let mut all = self.meta.lock();
        let meta = all.entry(name.clone()).or_default();
        for (k, v) in tags {
            match meta.tags.iter_mut().find(|(tk, _)| *tk == k) {
                Some(t) => t.1 = v,
                None => meta.tags.push((k, v)),
            }
        }
        self.save_meta(&name, meta);
        Ok(json!({}))
    }

    fn untag_queue(&self, p: &Params) -> Result<Value, ApiError> {
        let (name, _) = self.queue(p)?;
        let keys = p.string_list("TagKeys");
        let mut all = self.meta.lock();
        let meta = all.entry(name.clone()).or_default();
        meta.tags.retain(|(k, _)| !keys.contains(k));
        self.save_meta(&name, meta);
        Ok(json!({}))
    }

    fn list_queue_tags(&self, p: &Params) -> Result<Value, ApiError> {
        let (name, _) = self.queue(p)?;
        let meta = self.meta_of(&name);
        if meta.tags.is_empty() {
            return Ok(json!({}));
        }
        let tags: Map<String, Value> = meta
            .tags
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        Ok(json!({ "Tags": tags }))
    }

    fn list_dead_letter_sources(&self, p: &Params, host: &str) -> Result<Value, ApiError> {
        let (name, _) = self.queue(p)?;
        let mut sources: Vec<String> = self
            .vhost
            .queues()
            .iter()
            .filter(|q| {
                q.settings()
                    .redrive
                    .is_some_and(|r| r.target.as_str() == name)
            })
            .map(|q| q.name().to_string())
            .collect();
        sources.sort();
        let urls: Vec<Value> = sources
            .iter()
            .map(|n| Value::String(self.url(host, n)))
            .collect();
        Ok(json!({ "queueUrls": urls }))
    }

    // ---- messages ----

    /// The MessageId SQS clients see for core message `id`.
    pub fn message_id(&self, id: u64) -> String {
        super::sns::message_id(self.id_prefix, id)
    }

    /// Whether `q` was created through this API (CreateQueue, or as a rule's
    /// target) rather than declared by an AMQP client. CreateQueue always
    /// gives a queue a retention period in the options it is declared with,
    /// which an AMQP declaration never sets (SetQueueAttributes changes only
    /// the live settings), so this holds across restarts too.
    pub fn declared_here(q: &Queue) -> bool {
        q.options().settings.retention.is_some()
    }

    fn build_message(
        &self,
        queue: &Queue,
        name: &str,
        e: &Params,
    ) -> Result<(Arc<Message>, SendOptions), ApiError> {
        let body = e.need_str("MessageBody")?;
        if body.is_empty() {
            return Err(ApiError::missing("MessageBody"));
        }
        if let Some(c) = body.chars().find(|c| !valid_body_char(*c)) {
            return Err(ApiError::sender(
                "InvalidMessageContents",
                format!(
                    "Invalid characters found. Invalid unicode character was U+{:04X}.",
                    c as u32
                ),
            ));
        }
        let attributes = parse_message_attributes(e.object("MessageAttributes"))?;
        let trace_header = parse_system_attributes(e.object("MessageSystemAttributes"))?;
        let size = body.len() + attributes.iter().map(attribute_size).sum::<usize>();
        let max = self.meta_of(name).max_message_size as usize;
        if size > max {
            return Err(ApiError::invalid(format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {max} bytes."
            )));
        }
        let fifo = queue.options().fifo;
        let delay = e.int("DelaySeconds")?;
        if let Some(d) = delay {
            if !(0..=MAX_DELAY as i64).contains(&d) {
                return Err(ApiError::invalid(format!(
                    "Value {d} for parameter DelaySeconds is invalid. Reason: must be between 0 and 900."
                )));
            }
            if fifo && d != 0 {
                return Err(ApiError::invalid(format!(
                    "Value {d} for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type."
                )));
            }
        }
        let group = e.str("MessageGroupId").map(ByteStr::from);
        let dedup = e.str("MessageDeduplicationId").map(ByteStr::from);
        if fifo {
            if group.is_none() {
                return Err(ApiError::missing("MessageGroupId"));
            }
            if dedup.is_none() && !queue.settings().content_based_dedup {
                return Err(ApiError::invalid(
                    "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                ));
            }
        } else if dedup.is_some() {
            return Err(ApiError::invalid(
                "The request include parameter MessageDeduplicationId that is not valid for this queue type",
            ));
        }
        let msg = Arc::new(Message {
            id: self.core.ids.next(),
            routing_key: ByteStr::from(name),
            key_form: KeyForm::Amqp,
            exchange: ByteStr::from_static(""),
            payload: Bytes::copy_from_slice(body.as_bytes()),
            qos: 1,
            retain: false,
            persistent: true,
            priority: 0,
            published_at_ms: now_ms(),
            expires_at: None,
            origin: 0,
            props: Some(Box::new({
                let mut props = MessageProperties::from_sqs(attributes, group, dedup.clone());
                props.trace_header = trace_header.map(ByteStr::from);
                props
            })),
        });
        let options = SendOptions {
            delay: delay.map(|d| Duration::from_secs(d as u64)),
            dedup_id: dedup,
        };
        Ok((msg, options))
    }

    fn send_one(&self, queue: &Queue, name: &str, e: &Params) -> Result<Value, ApiError> {
        let (msg, options) = self.build_message(queue, name, e)?;
        let (message_id, seq) = match queue.send(&msg, &options) {
            Sent::Queued { seq } => {
                use crate::metrics::{Count, Protocol};
                self.core
                    .metrics
                    .add(Protocol::Sqs, Count::MessagesReceived, 1);
                (msg.id, seq)
            }
            Sent::Duplicate { message_id, seq } => (message_id, seq),
            Sent::Refused(_) => {
                return Err(ApiError::sender(
                    "OverLimit",
                    "The queue refused the message (it is full).",
                ));
            }
        };
        let mut out = Map::new();
        out.insert(
            "MessageId".into(),
            Value::String(self.message_id(message_id)),
        );
        out.insert(
            "MD5OfMessageBody".into(),
            Value::String(md5_hex(&msg.payload)),
        );
        let attrs = msg
            .props
            .as_ref()
            .map(|p| p.attributes.clone())
            .unwrap_or_default();
        if !attrs.is_empty() {
            out.insert(
                "MD5OfMessageAttributes".into(),
                Value::String(md5_of_attributes(&attrs)),
            );
        }
        if let Some(t) = msg.props.as_ref().and_then(|p| p.trace_header.as_ref()) {
            let system = [MessageAttribute::text("AWSTraceHeader", t)];
            out.insert(
                "MD5OfMessageSystemAttributes".into(),
                Value::String(md5_of_attributes(&system)),
            );
        }
        if queue.options().fifo {
            out.insert("SequenceNumber".into(), Value::String(format!("{seq:020}")));
        }
        Ok(Value::Object(out))
    }

    fn send_message(&self, p: &Params) -> Result<Value, ApiError> {
        let (name, q) = self.queue(p)?;
        self.send_one(&q, &name, p)
    }

    fn send_message_batch(&self, p: &Params) -> Result<Value, ApiError> {
        let (name, q) = self.queue(p)?;
        let entries = check_batch(p)?;
        let total: usize = entries
            .iter()
            .map(|e| e.str("MessageBody").map_or(0, str::len))
            .sum();
        // Each message is checked against MaximumMessageSize when built; the
        // batch as a whole may not exceed SQS's 1 MiB.
        let max = DEFAULT_MAX_SIZE as usize;
        if total > max {
            return Err(ApiError::sender_as(
                "BatchRequestTooLong",
                "AWS.SimpleQueueService.BatchRequestTooLong",
                format!("Batch requests cannot be longer than {max} bytes."),
            ));
        }
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for e in &entries {
            let id = e.str("Id").unwrap_or_default();
            match self.send_one(&q, &name, e) {
                Ok(Value::Object(mut m)) => {
                    m.insert("Id".into(), Value::String(id.to_owned()));
                    ok.push(Value::Object(m));
                }
                Ok(_) => {}
                Err(err) => failed.push(batch_error(id, &err)),
            }
        }
        Ok(json!({ "Successful": ok, "Failed": failed }))
    }

    async fn receive_message(&self, p: &Params) -> Result<Value, ApiError> {
        let (name, q) = self.queue(p)?;
        let max = p.int("MaxNumberOfMessages")?.unwrap_or(1);
        if !(1..=10).contains(&max) {
            return Err(ApiError::invalid(format!(
                "Value {max} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."
            )));
        }
        let visibility = match p.int("VisibilityTimeout")? {
            Some(v) if !(0..=MAX_VISIBILITY as i64).contains(&v) => {
                return Err(ApiError::invalid(format!(
                    "Value {v} for parameter VisibilityTimeout is invalid. Reason: must be between 0 and 43200."
                )));
            }
            Some(v) => Duration::from_secs(v as u64),
            None => q
                .settings()
                .visibility_timeout
                .unwrap_or(Duration::from_secs(DEFAULT_VISIBILITY)),
        };
        let max_wait = self.cfg.max_wait.as_secs() as i64;
        let wait = match p.int("WaitTimeSeconds")? {
            Some(w) if !(0..=max_wait).contains(&w) => {
                return Err(ApiError::invalid(format!(
                    "Value {w} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= {max_wait}, if provided."
                )));
            }
            Some(w) => Duration::from_secs(w as u64),
            None => Duration::from_secs(self.meta_of(&name).receive_wait),
        };
        let limits = PullLimits {
            max: max as usize,
            max_leased: max as usize,
        };
        let mode = PullMode::Receive { visibility };
        let mut got = Vec::new();
        // What a receive writes (the lease and receive count of each message,
        // dead letters it moves) is durable before the response, so a
        // received message stays in flight, and its receipt handle valid,
        // across a crash.
        let (_, mut lsn) = crate::store::tracked(|| q.pull(0, limits, mode, &mut got));
        if got.is_empty() && !wait.is_zero() {
            // Long polling: wait as a consumer until something arrives.
            let deadline = Instant::now() + wait;
            let notify = Arc::new(Notify::new());
            let wakeup = Wakeup::new(notify.clone());
            let id = q.attach(wakeup);
            while got.is_empty() {
                let (_, pulled) = crate::store::tracked(|| q.pull(id, limits, mode, &mut got));
                lsn = lsn.max(pulled);
                let now = Instant::now();
                if !got.is_empty() || now >= deadline || q.is_deleted() {
                    break;
                }
                let _ = tokio::time::timeout(deadline - now, notify.notified()).await;
            }
            q.detach(id);
        }
        if let Err(e) = crate::store::durable(&*self.core.store, lsn).await {
            // The messages are leased all the same; a crash would only return
            // them early. Draining a queue stays possible while storage fails.
            tracing::warn!(queue = %name, error = %e, "a receive's leases could not be stored");
        }
        let mut tally = crate::metrics::DeliveryTally::default();
        got.iter().for_each(|d| tally.observe(d));
        tally.flush(&self.core.metrics, crate::metrics::Protocol::Sqs);
        let system = attribute_selection(p, "AttributeNames", "MessageSystemAttributeNames");
        let user = p.string_list("MessageAttributeNames");
        let messages: Vec<Value> = got
            .iter()
            .map(|d| self.render_message(&q, d, &system, &user))
            .collect();
        if messages.is_empty() {
            return Ok(json!({}));
        }
        Ok(json!({ "Messages": messages }))
    }

    fn render_message(&self, q: &Queue, d: &Delivery, system: &[String], user: &[String]) -> Value {
        let msg = &d.msg;
        let (body, encoded) = match std::str::from_utf8(&msg.payload) {
            Ok(s) if s.chars().all(valid_body_char) => (s.to_owned(), false),
            _ => (STANDARD.encode(&msg.payload), true),
        };
        let receipt = URL_SAFE_NO_PAD.encode(format!(
            "{:x}:{:x}:{:x}",
            q.uid(),
            d.tag.unwrap_or(0),
            msg.id
        ));
        let mut m = Map::new();
        m.insert("MessageId".into(), Value::String(self.message_id(msg.id)));
        m.insert("ReceiptHandle".into(), Value::String(receipt));
        m.insert("MD5OfBody".into(), Value::String(md5_hex(body.as_bytes())));
        m.insert("Body".into(), Value::String(body));
        let want = |n: &str| system.iter().any(|s| s == "All" || s == n);
        let mut attrs = Map::new();
        let mut put = |k: &str, v: String| {
            if want(k) {
                attrs.insert(k.to_owned(), Value::String(v));
            }
        };
        put("SenderId", self.aws.account_id.clone());
        put("SentTimestamp", msg.published_at_ms.to_string());
        put("ApproximateReceiveCount", d.delivery_count.to_string());
        put(
            "ApproximateFirstReceiveTimestamp",
            d.first_delivery_ms.to_string(),
        );
        if q.options().fifo {
            put("SequenceNumber", format!("{:020}", d.seq));
        }
        if let Some(p) = &msg.props {
            if let Some(g) = &p.group_id {
                put("MessageGroupId", g.to_string());
            }
            if let Some(dd) = &p.dedup_id {
                put("MessageDeduplicationId", dd.to_string());
            }
            if let Some(src) = &p.dead_letter_source {
                put("DeadLetterQueueSourceArn", self.arn(src));
            }
            if let Some(t) = &p.trace_header {
                put("AWSTraceHeader", t.to_string());
            }
        }
        if !attrs.is_empty() {
            m.insert("Attributes".into(), Value::Object(attrs));
        }
        let mut all_attrs = msg
            .props
            .as_ref()
            .map(|p| p.sqs_attributes())
            .unwrap_or_default();
        if encoded {
            all_attrs.push(MessageAttribute::text("TetherBodyEncoding", "base64"));
        }
        let selected: Vec<MessageAttribute> = all_attrs
            .into_iter()
            .filter(|a| attribute_wanted(user, &a.name))
            .collect();
        if !selected.is_empty() {
            m.insert(
                "MD5OfMessageAttributes".into(),
                Value::String(md5_of_attributes(&selected)),
            );
            let mut out = Map::new();
            for a in &selected {
                let value = match &a.value {
                    AttributeValue::Text(t) => {
                        json!({ "DataType": a.data_type.as_str(), "StringValue": t.as_str() })
                    }
                    AttributeValue::Binary(b) => {
                        json!({ "DataType": a.data_type.as_str(), "BinaryValue": STANDARD.encode(b) })
                    }
                };
                out.insert(a.name.to_string(), value);
            }
            m.insert("MessageAttributes".into(), Value::Object(out));
        }
        Value::Object(m)
    }

    fn receipt(&self, q: &Queue, handle: &str) -> Result<Receipt, ApiError> {
        let invalid = || {
            ApiError::sender(
                "ReceiptHandleIsInvalid",
                format!("The input receipt handle \"{handle}\" is not a valid receipt handle."),
            )
            .status(404)
        };
        let raw = URL_SAFE_NO_PAD
            .decode(handle.trim())
            .map_err(|_| invalid())?;
        let text = String::from_utf8(raw).map_err(|_| invalid())?;
        let mut parts = text.split(':');
        let (Some(u), Some(t), Some(_m), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let uid = u64::from_str_radix(u, 16).map_err(|_| invalid())?;
        let tag = u64::from_str_radix(t, 16).map_err(|_| invalid())?;
        if uid != q.uid() {
            return Err(invalid());
        }
        Ok(Receipt { uid, tag })
    }

    fn delete_message(&self, p: &Params) -> Result<Value, ApiError> {
        let (_, q) = self.queue(p)?;
        let r = self.receipt(&q, p.need_str("ReceiptHandle")?)?;
        debug_assert_eq!(r.uid, q.uid());
        // An outdated receipt (the message was received again since) deletes
        // nothing, and SQS reports success for it.
        q.ack(r.tag);
        Ok(json!({}))
    }

    fn delete_message_batch(&self, p: &Params) -> Result<Value, ApiError> {
        let (_, q) = self.queue(p)?;
        let entries = check_batch(p)?;
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for e in &entries {
            let id = e.str("Id").unwrap_or_default();
            match e
                .need_str("ReceiptHandle")
                .and_then(|h| self.receipt(&q, h))
            {
                Ok(r) => {
                    q.ack(r.tag);
                    ok.push(json!({ "Id": id }));
                }
                Err(err) => failed.push(batch_error(id, &err)),
            }
        }
        Ok(json!({ "Successful": ok, "Failed": failed }))
    }

    fn visibility_of(e: &Params) -> Result<Duration, ApiError> {
        let v = e
            .int("VisibilityTimeout")?
            .ok_or_else(|| ApiError::missing("VisibilityTimeout"))?;
        if !(0..=MAX_VISIBILITY as i64).contains(&v) {
            return Err(ApiError::invalid(format!(
                "Value {v} for parameter VisibilityTimeout is invalid. Reason: must be between 0 and 43200."
            )));
        }
        Ok(Duration::from_secs(v as u64))
    }

    fn change_one(&self, q: &Queue, e: &Params) -> Result<(), ApiError> {
        let r = self.receipt(q, e.need_str("ReceiptHandle")?)?;
        let d = Self::visibility_of(e)?;
        if !q.change_visibility(r.tag, d) {
            return Err(ApiError::sender_as(
                "MessageNotInflight",
                "AWS.SimpleQueueService.MessageNotInflight",
                "Message does not exist or is not available for visibility timeout change.",
            ));
        }
        Ok(())
    }

    fn change_visibility(&self, p: &Params) -> Result<Value, ApiError> {
        let (_, q) = self.queue(p)?;
        self.change_one(&q, p)?;
        Ok(json!({}))
    }

    fn change_visibility_batch(&self, p: &Params) -> Result<Value, ApiError> {
        let (_, q) = self.queue(p)?;
        let entries = check_batch(p)?;
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for e in &entries {
            let id = e.str("Id").unwrap_or_default();
            match self.change_one(&q, e) {
                Ok(()) => ok.push(json!({ "Id": id })),
                Err(err) => failed.push(batch_error(id, &err)),
            }
        }
        Ok(json!({ "Successful": ok, "Failed": failed }))
    }

    // ---- message move tasks ----

    fn start_move_task(&self, p: &Params) -> Result<Value, ApiError> {
        let source_arn = p.need_str("SourceArn")?.to_owned();
        let source_name = self.name_from_arn(&source_arn)?.to_owned();
        let source = self.vhost.queue(&source_name).ok_or_else(|| {
            ApiError::sender(
                "ResourceNotFoundException",
                "The resource that you specified for the SourceArn parameter doesn't exist.",
            )
        })?;
        let is_dlq = self.vhost.queues().iter().any(|q| {
            q.settings()
                .redrive
                .is_some_and(|r| r.target.as_str() == source_name)
        });
        if !is_dlq {
            return Err(ApiError::invalid(
                "Source queue must be configured as a Dead Letter Queue.",
            ));
        }
        let destination_arn = p.str("DestinationArn").map(str::to_owned);
        let destination = match &destination_arn {
            Some(arn) => {
                let n = self.name_from_arn(arn)?;
                Some(self.vhost.queue(n).ok_or_else(|| {
                    ApiError::sender("ResourceNotFoundException", "The resource that you specified for the DestinationArn parameter doesn't exist.")
                })?)
            }
            None => None,
        };
        let rate = p
            .int("MaxNumberOfMessagesPerSecond")?
            .map(|r| r.clamp(1, 500) as u64);
        let mut tasks = self.tasks.lock();
        if tasks
            .iter()
            .any(|t| t.source_arn == source_arn && t.status() == MoveStatus::Running)
        {
            return Err(ApiError::invalid(
                "There is already a task running. Only one active task is allowed for each source queue arn at a given time.",
            ));
        }
        self.prune_move_tasks(&mut tasks, &source_arn);
        let handle = URL_SAFE_NO_PAD.encode(format!("{}:{}", uuid::Uuid::new_v4(), source_arn));
        let task = Arc::new(MoveTask {
            handle: handle.clone(),
            source_arn,
            destination_arn,
            rate,
            started: now_ms(),
            to_move: source.ready_len() as u64,
            moved: AtomicU64::new(0),
            state: Mutex::new((MoveStatus::Running, None)),
            cancel: CancellationToken::new(),
            store: self.core.store.clone(),
        });
        // Stored before the response, so a restart resumes it.
        task.save();
        tasks.push(task.clone());
        tokio::spawn(run_move_task(self.vhost.clone(), task, source, destination));
        Ok(json!({ "TaskHandle": handle }))
    }

    /// Forgets the oldest finished tasks of `source_arn` beyond the
    /// [`KEPT_MOVE_TASKS`] most recent, so the list and the store stay small.
    fn prune_move_tasks(&self, tasks: &mut Vec<Arc<MoveTask>>, source_arn: &str) {
        let finished: Vec<usize> = tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.source_arn == source_arn)
            .filter(|(_, t)| {
                matches!(
                    t.status(),
                    MoveStatus::Completed | MoveStatus::Cancelled | MoveStatus::Failed
                )
            })
            .map(|(i, _)| i)
            .collect();
        // One more task is about to be added.
        let excess = (finished.len() + 1).saturating_sub(KEPT_MOVE_TASKS);
        if excess == 0 {
            return;
        }
        let mut ops = Ops::new();
        for &i in finished[..excess].iter().rev() {
            let t = tasks.remove(i);
            ops.push(Op::Remove(Space::Meta, move_task_key(&t.handle)));
        }
        self.core.store.submit(ops);
    }

    fn cancel_move_task(&self, p: &Params) -> Result<Value, ApiError> {
        let handle = p.need_str("TaskHandle")?;
        let tasks = self.tasks.lock();
        let t = tasks
            .iter()
            .find(|t| t.handle == handle)
            .ok_or_else(|| ApiError::sender("ResourceNotFoundException", "Task does not exist."))?;
        {
            let mut st = t.state.lock();
            if st.0 != MoveStatus::Running {
                return Err(ApiError::invalid("Only active tasks can be cancelled."));
            }
            st.0 = MoveStatus::Cancelling;
            t.save_locked(&st);
        }
        t.cancel.cancel();
        Ok(json!({ "ApproximateNumberOfMessagesMoved": t.moved.load(Ordering::Relaxed) }))
    }

    fn list_move_tasks(&self, p: &Params) -> Result<Value, ApiError> {
        let source = p.need_str("SourceArn")?;
        let max = p.int("MaxResults")?.unwrap_or(1).clamp(1, 10) as usize;
        let tasks = self.tasks.lock();
        let results: Vec<Value> = tasks
            .iter()
            .rev()
            .filter(|t| t.source_arn == source)
            .take(max)
            .map(|t| {
                let (status, reason) = t.state.lock().clone();
                let mut m = Map::new();
                if status == MoveStatus::Running {
                    m.insert("TaskHandle".into(), Value::String(t.handle.clone()));
                }
                m.insert("Status".into(), Value::String(status.as_str().to_owned()));
                m.insert("SourceArn".into(), Value::String(t.source_arn.clone()));
                if let Some(d) = &t.destination_arn {
                    m.insert("DestinationArn".into(), Value::String(d.clone()));
                }
                if let Some(r) = t.rate {
                    m.insert("MaxNumberOfMessagesPerSecond".into(), json!(r));
                }
                m.insert(
                    "ApproximateNumberOfMessagesMoved".into(),
                    json!(t.moved.load(Ordering::Relaxed)),
                );
                m.insert("ApproximateNumberOfMessagesToMove".into(), json!(t.to_move));
                if let Some(r) = reason {
                    m.insert("FailureReason".into(), Value::String(r));
                }
                m.insert("StartedTimestamp".into(), json!(t.started));
                Value::Object(m)
            })
            .collect();
        Ok(json!({ "Results": results }))
    }
}

/// Moves messages from a dead-letter queue back to `destination` (or each to
/// the queue it came from), at most the task's rate per second, until it has
/// moved what it set out to move. Progress is stored after each batch, and
/// the outcome when it ends.
async fn run_move_task(
    vhost: Arc<VHost>,
    task: Arc<MoveTask>,
    source: Arc<Queue>,
    destination: Option<Arc<Queue>>,
) {
    let (to_move, rate, moved, cancel) = (task.to_move, task.rate, &task.moved, &task.cancel);
    let per_tick = rate.unwrap_or(500).max(1) as usize;
    let mut out = Vec::new();
    let mut failed = false;
    while moved.load(Ordering::Relaxed) < to_move && !cancel.is_cancelled() {
        let left = (to_move - moved.load(Ordering::Relaxed)) as usize;
        out.clear();
        let limits = PullLimits {
            max: per_tick.min(left),
            max_leased: per_tick.min(left),
        };
        source.pull(0, limits, PullMode::Lease { owner: u64::MAX }, &mut out);
        if out.is_empty() {
            break;
        }
        let (n, stuck) = move_deliveries(&vhost, &source, destination.as_ref(), &mut out);
        moved.fetch_add(n, Ordering::Relaxed);
        if !stuck.is_empty() {
            failed = true;
            for tag in stuck {
                source.reject(tag, true);
            }
        }
        task.save();
        if failed {
            break;
        }
        if rate.is_some() {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
    if cancel.is_cancelled() {
        task.set_status(MoveStatus::Cancelled, None);
    } else if failed {
        task.set_status(
            MoveStatus::Failed,
            Some("A message's source queue no longer exists.".into()),
        );
    } else {
        task.set_status(MoveStatus::Completed, None);
    }
}

/// Moves `deliveries` (leased from dead-letter queue `source`) to
/// `destination`, or each back to the queue it was dead-lettered from,
/// acknowledging each one moved. Returns how many moved and the lease tags
/// of those whose source queue no longer exists: still leased, for the
/// caller to return.
fn move_deliveries(
    vhost: &VHost,
    source: &Queue,
    destination: Option<&Arc<Queue>>,
    deliveries: &mut Vec<Delivery>,
) -> (u64, Vec<u64>) {
    let mut moved = 0;
    let mut stuck = Vec::new();
    for d in deliveries.drain(..) {
        let target = match destination {
            Some(q) => Some(q.clone()),
            None => d
                .msg
                .props
                .as_ref()
                .and_then(|p| p.dead_letter_source.clone())
                .and_then(|n| vhost.queue(&n)),
        };
        let Some(target) = target else {
            stuck.extend(d.tag);
            continue;
        };
        let mut back = (*d.msg).clone();
        if let Some(p) = back.props.take() {
            let mut p = *p;
            p.dead_letter_source = None;
            back.props = Some(Box::new(p));
        }
        target.send(&Arc::new(back), &SendOptions::default());
        if let Some(tag) = d.tag {
            source.ack(tag);
        }
        moved += 1;
    }
    (moved, stuck)
}

/// Moves every ready message of dead-letter queue `source` back to the queue
/// it was dead-lettered from, now (what StartMessageMoveTask without a
/// destination does, run to the end before returning). Messages whose
/// source queue no longer exists stay where they are. Returns how many
/// moved and how many stayed. The caller waits for the store if it must.
pub fn redrive_all(vhost: &VHost, source: &Queue) -> (u64, u64) {
    let to_move = source.ready_len() as u64;
    let mut moved = 0u64;
    let mut stuck: Vec<u64> = Vec::new();
    let mut out = Vec::new();
    // Messages that cannot move stay leased until the end, so the next pull
    // finds the ones behind them; each message is tried once.
    while moved + (stuck.len() as u64) < to_move {
        let left = (to_move - moved - stuck.len() as u64).min(500) as usize;
        let limits = PullLimits {
            max: left,
            max_leased: left,
        };
        source.pull(0, limits, PullMode::Lease { owner: u64::MAX }, &mut out);
        if out.is_empty() {
            break;
        }
        let (n, s) = move_deliveries(vhost, source, None, &mut out);
        moved += n;
        stuck.extend(s);
    }
    for &tag in &stuck {
        source.reject(tag, true);
    }
    (moved, stuck.len() as u64)
}

const KNOWN_ATTRIBUTES: &[&str] = &[
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
    "VisibilityTimeout",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "Policy",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
];

fn no_queue() -> ApiError {
    ApiError::sender_as(
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        "The specified queue does not exist.",
    )
}

fn attr_error(name: &str, value: &str) -> ApiError {
    ApiError::sender(
        "InvalidAttributeValue",
        format!("Invalid value for the parameter {name}: {value}"),
    )
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(attr_error(name, value)),
    }
}

fn names(attrs: &[(String, String)]) -> String {
    attrs
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn decode_token(t: &str) -> Option<String> {
    URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

/// SQS's allowed body characters: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF.
fn valid_body_char(c: char) -> bool {
    matches!(c as u32, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

/// Checks a batch request's entries: 1 to 10, distinct valid ids.
fn check_batch(p: &Params) -> Result<Vec<Params>, ApiError> {
    let entries = p.objects("Entries");
    if entries.is_empty() {
        return Err(ApiError::sender_as(
            "EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest",
            "There should be at least one SendMessageBatchRequestEntry in the request.",
        ));
    }
    if entries.len() > 10 {
        return Err(ApiError::sender_as(
            "TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            format!(
                "Maximum number of entries per request are 10. You have sent {}.",
                entries.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for e in &entries {
        let id = e.str("Id").unwrap_or_default();
        if id.is_empty()
            || id.len() > 80
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ApiError::sender_as(
                "InvalidBatchEntryId",
                "AWS.SimpleQueueService.InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
            ));
        }
        if !seen.insert(id.to_owned()) {
            return Err(ApiError::sender_as(
                "BatchEntryIdsNotDistinct",
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                format!("Id {id} repeated."),
            ));
        }
    }
    Ok(entries)
}

fn batch_error(id: &str, e: &ApiError) -> Value {
    json!({ "Id": id, "SenderFault": e.sender_fault, "Code": e.query_code, "Message": e.message })
}

fn parse_message_attributes(
    m: Option<&Map<String, Value>>,
) -> Result<Vec<MessageAttribute>, ApiError> {
    let Some(m) = m else { return Ok(Vec::new()) };
    if m.len() > 10 {
        return Err(ApiError::invalid(
            "Number of message attributes [11] exceeds the allowed maximum [10].",
        ));
    }
    let mut out = Vec::with_capacity(m.len());
    for (name, v) in m {
        if name.is_empty()
            || name.len() > 256
            || name.starts_with('.')
            || name.ends_with('.')
            || name.contains("..")
            || name.to_ascii_lowercase().starts_with("aws.")
            || name.to_ascii_lowercase().starts_with("amazon.")
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(ApiError::invalid(format!(
                "Message attribute name '{name}' is invalid."
            )));
        }
        let data_type = v
            .get("DataType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let base = data_type.split('.').next().unwrap_or_default();
        let value = match base {
            "String" | "Number" => {
                let s = v.get("StringValue").and_then(Value::as_str).ok_or_else(|| {
                    ApiError::invalid(format!("Message attribute '{name}' must contain a non-empty message attribute value for message attribute type '{data_type}'."))
                })?;
                if base == "Number" && s.parse::<f64>().is_err() {
                    return Err(ApiError::invalid(format!(
                        "Could not cast message attribute '{name}' value to number."
                    )));
                }
                AttributeValue::Text(ByteStr::from(s))
            }
            "Binary" => {
                let b64 = v.get("BinaryValue").and_then(Value::as_str).ok_or_else(|| {
                    ApiError::invalid(format!("Message attribute '{name}' must contain a non-empty message attribute value for message attribute type '{data_type}'."))
                })?;
                AttributeValue::Binary(Bytes::from(STANDARD.decode(b64).map_err(|_| {
                    ApiError::invalid(format!(
                        "Message attribute '{name}' has an invalid binary value."
                    ))
                })?))
            }
            _ => {
                return Err(ApiError::invalid(format!(
                    "The type of message (user) attribute '{name}' is invalid. You must use only the following supported type prefixes: Binary, Number, String."
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

/// The message system attributes of a send: only AWSTraceHeader (a String).
fn parse_system_attributes(m: Option<&Map<String, Value>>) -> Result<Option<String>, ApiError> {
    let Some(m) = m else { return Ok(None) };
    let mut trace = None;
    for (name, v) in m {
        if name != "AWSTraceHeader" {
            return Err(ApiError::invalid(format!(
                "Message system attribute name '{name}' is invalid."
            )));
        }
        let data_type = v
            .get("DataType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let value = v.get("StringValue").and_then(Value::as_str);
        match (data_type, value) {
            ("String", Some(t)) => trace = Some(t.to_owned()),
            _ => {
                return Err(ApiError::invalid(
                    "Message system attribute AWSTraceHeader must be of type String with a StringValue.",
                ));
            }
        }
    }
    Ok(trace)
}

fn attribute_size(a: &MessageAttribute) -> usize {
    a.name.len()
        + a.data_type.len()
        + match &a.value {
            AttributeValue::Text(t) => t.len(),
            AttributeValue::Binary(b) => b.len(),
        }
}

/// System attribute names asked for under either parameter name.
fn attribute_selection(p: &Params, a: &str, b: &str) -> Vec<String> {
    let mut v = p.string_list(a);
    v.extend(p.string_list(b));
    v
}

/// Whether a message attribute is selected by MessageAttributeNames (`All`,
/// `.*`, exact names, or `prefix.*`).
fn attribute_wanted(wanted: &[String], name: &str) -> bool {
    wanted.iter().any(|w| {
        w == "All"
            || w == ".*"
            || w == name
            || w.strip_suffix(".*").is_some_and(|prefix| {
                name.starts_with(prefix) && name[prefix.len()..].starts_with('.')
            })
    })
}

/// Hex MD5 of bytes.
pub fn md5_hex(data: &[u8]) -> String {
    let digest = Md5::digest(data);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// MD5OfMessageAttributes as SQS computes it: attributes sorted by name, each
/// as length-prefixed name, length-prefixed data type, a transport byte (1 for
/// String/Number, 2 for Binary) and the length-prefixed value.
pub fn md5_of_attributes(attrs: &[MessageAttribute]) -> String {
    let mut sorted: Vec<&MessageAttribute> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    let mut buf = Vec::new();
    let put = |buf: &mut Vec<u8>, b: &[u8]| {
        buf.extend_from_slice(&(b.len() as u32).to_be_bytes());
        buf.extend_from_slice(b);
    };
    for a in sorted {
        put(&mut buf, a.name.as_bytes());
        put(&mut buf, a.data_type.as_bytes());
        match &a.value {
            AttributeValue::Text(t) => {
                buf.push(1);
                put(&mut buf, t.as_bytes());
            }
            AttributeValue::Binary(b) => {
                buf.push(2);
                put(&mut buf, b);
            }
        }
    }
    md5_hex(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_md5_matches_known_value() {
        assert_eq!(md5_hex(b"hello"), "5d41402abc4b2a76b9719d911017c592");
    }

    #[test]
    fn attribute_md5_follows_the_sqs_algorithm() {
        // Worked example: one String attribute "a" = "b".
        let attrs = vec![MessageAttribute::text("a", "b")];
        let mut expected = Vec::new();
        expected.extend_from_slice(&[0, 0, 0, 1, b'a', 0, 0, 0, 6]);
        expected.extend_from_slice(b"String");
        expected.extend_from_slice(&[1, 0, 0, 0, 1, b'b']);
        assert_eq!(md5_of_attributes(&attrs), md5_hex(&expected));
    }

    #[test]
    fn attribute_names_select_by_prefix() {
        let w = vec!["foo.*".to_owned()];
        assert!(attribute_wanted(&w, "foo.bar"));
        assert!(!attribute_wanted(&w, "foobar"));
        assert!(attribute_wanted(&["All".to_owned()], "x"));
    }

    #[test]
    fn body_characters_follow_sqs() {
        assert!(valid_body_char('\n'));
        assert!(!valid_body_char('\u{0}'));
        assert!(!valid_body_char('\u{FFFE}'));
    }
}
