//! The admin API: JSON under `/api/` on the HTTP listener, behind the
//! [`admin_auth`](super::admin_auth) guard.
//!
//! * `GET /api/overview`: totals across queues and connection counts.
//! * `GET /api/connections`, `DELETE /api/connections/{id}`.
//! * `GET /api/sessions`: MQTT sessions with their subscriptions.
//! * `GET /api/exchanges`, `GET /api/bindings`.
//! * `GET /api/queues[?kind=sqs,amqp,mqtt]`, `GET|DELETE /api/queues/{vhost}/{name}`,
//!   `POST .../purge`, `GET .../peek?count=N`, `POST .../redrive`.
//!
//! The vhost in a path is URL-encoded (`/` is `%2F`). Errors are
//! `{"error": code, "message": sentence}` with 400, 401, 404 or 409.
//!
//! Handlers read the core (queues, sessions, exchanges) and act through the
//! same calls the protocols use (the SQS service deletes SQS queues, the
//! SQS redrive mover moves dead letters back); nothing here is on a message
//! path. Queue rates come from [`QueueRates`](super::admin_rates::QueueRates),
//! sampled every few seconds while someone is looking.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use amq_protocol::types::{AMQPValue, FieldTable};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router, middleware};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::Api;
use super::admin_auth::{self, AdminGuard};
use super::admin_rates::QueueRates;
use super::aws::Params;
use super::sqs::{self, Sqs};
use crate::core::Core;
use crate::core::exchange::Destination;
use crate::core::message::{AttributeValue, KeyForm};
use crate::core::queue::{Peeked, Queue};
use crate::core::session::Session;
use crate::core::vhost::VHost;

/// Most messages one peek returns.
pub const PEEK_MAX: usize = 100;
/// Messages a peek returns when no count is given.
pub const PEEK_DEFAULT: usize = 10;

/// What the admin API keeps between requests.
#[derive(Debug)]
pub struct AdminState {
    /// Remembered credential checks.
    pub(super) guard: AdminGuard,
    rates: Arc<QueueRates>,
    started: Instant,
}

impl AdminState {
    /// The admin API's state; starts the rate sampler (stopped by `shutdown`).
    pub fn new(core: Arc<Core>, shutdown: CancellationToken) -> Self {
        AdminState {
            guard: AdminGuard::default(),
            rates: QueueRates::start(core, shutdown),
            started: Instant::now(),
        }
    }
}

/// An admin API error: `{"error": code, "message": sentence}` with a status.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiFailure {
    /// An error with `status`, a short `code` and a human `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiFailure {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with code `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 with code `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 with code `internal_error`.
    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.code, "message": self.message });
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiFailure>;

/// The `/api/` routes, guarded. The server nests them under `/api`.
pub fn routes(api: Arc<Api>) -> Router<Arc<Api>> {
    Router::new()
        .route("/overview", get(overview))
        .route("/connections", get(connections))
        .route("/connections/{id}", delete(close_connection))
        .route("/sessions", get(sessions))
        .route("/bridges", get(bridges))
        .route("/exchanges", get(exchanges))
        .route("/bindings", get(bindings))
        .route("/queues", get(queues))
        .route("/queues/{vhost}/{name}", get(queue).delete(delete_queue))
        .route("/queues/{vhost}/{name}/purge", post(purge))
        .route("/queues/{vhost}/{name}/peek", get(peek))
        .route("/queues/{vhost}/{name}/redrive", post(redrive))
        // Users, ACL and definitions, behind the same guard.
        .merge(super::admin_defs::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(api, admin_auth::guard))
}

async fn not_found() -> ApiFailure {
    ApiFailure::not_found("No such admin API endpoint.")
}

async fn method_not_allowed(method: axum::http::Method) -> ApiFailure {
    ApiFailure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on this admin API endpoint."),
    )
}

// ---- queues: what there is and what kind ----

/// Who made a queue, as the admin API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// Created through the SQS API (or as a rule's target).
    Sqs,
    /// Declared by an AMQP client.
    Amqp,
    /// An MQTT session's queue or a shared-subscription group's.
    Mqtt,
}

impl QueueKind {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueKind::Sqs => "sqs",
            QueueKind::Amqp => "amqp",
            QueueKind::Mqtt => "mqtt",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "sqs" => Some(QueueKind::Sqs),
            "amqp" => Some(QueueKind::Amqp),
            "mqtt" => Some(QueueKind::Mqtt),
            _ => None,
        }
    }
}

/// One queue with where it lives.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its vhost.
    pub vhost: Arc<VHost>,
    /// The queue.
    pub queue: Arc<Queue>,
    /// Who made it.
    pub kind: QueueKind,
}

/// Every queue: each vhost's, then the MQTT session and shared-group queues
/// (which live in `/` without being catalogued there), sorted by vhost and
/// name.
pub fn all_queues(core: &Core) -> Vec<Listed> {
    let mut out = Vec::new();
    for vhost in core.vhosts.values() {
        let default = Arc::ptr_eq(vhost, &core.vhost);
        for queue in vhost.queues() {
            let kind = if default && Sqs::declared_here(&queue) {
                QueueKind::Sqs
            } else {
                QueueKind::Amqp
            };
            out.push(Listed {
                vhost: vhost.clone(),
                queue,
                kind,
            });
        }
    }
    let mqtt = core
        .sessions
        .sessions()
        .into_iter()
        .map(|s| s.queue.clone())
        .chain(core.sessions.group_queues());
    for queue in mqtt {
        out.push(Listed {
            vhost: core.vhost.clone(),
            queue,
            kind: QueueKind::Mqtt,
        });
    }
    out.sort_by(|a, b| (a.vhost.name(), a.queue.name()).cmp(&(b.vhost.name(), b.queue.name())));
    out
}

/// The queue `name` in vhost `vhost`, or a 404 that says which is missing.
fn find_queue(core: &Core, vhost: &str, name: &str) -> ApiResult<Listed> {
    let Some(v) = core.vhost_named(vhost) else {
        return Err(ApiFailure::not_found(format!("No vhost '{vhost}'.")));
    };
    if let Some(queue) = v.queue(name) {
        let kind = if Arc::ptr_eq(v, &core.vhost) && Sqs::declared_here(&queue) {
            QueueKind::Sqs
        } else {
            QueueKind::Amqp
        };
        return Ok(Listed {
            vhost: v.clone(),
            queue,
            kind,
        });
    }
    if Arc::ptr_eq(v, &core.vhost) && name.starts_with("mqtt-") {
        let found = core
            .sessions
            .sessions()
            .into_iter()
            .map(|s| s.queue.clone())
            .chain(core.sessions.group_queues())
            .find(|q| q.name().as_str() == name);
        if let Some(queue) = found {
            return Ok(Listed {
                vhost: v.clone(),
                queue,
                kind: QueueKind::Mqtt,
            });
        }
    }
    Err(ApiFailure::not_found(format!(
        "No queue '{name}' in vhost '{vhost}'."
    )))
}

/// For each (vhost, queue): the queues whose SQS redrive policy sends their
/// dead letters there.
fn dead_letter_sources(core: &Core) -> HashMap<(String, String), Vec<String>> {
    let mut map: HashMap<(String, String), Vec<String>> = HashMap::new();
    for vhost in core.vhosts.values() {
        for q in vhost.queues() {
            if let Some(r) = q.settings().redrive {
                map.entry((vhost.name().to_string(), r.target.to_string()))
                    .or_default()
                    .push(q.name().to_string());
            }
        }
    }
    for sources in map.values_mut() {
        sources.sort();
    }
    map
}

fn queue_json(
    l: &Listed,
    sources: &HashMap<(String, String), Vec<String>>,
    rates: &QueueRates,
) -> Value {
    let q = &l.queue;
    let settings = q.settings();
    let stats = q.stats();
    let (enq_rate, del_rate) = rates.rates(q.uid());
    let key = (l.vhost.name().to_string(), q.name().to_string());
    json!({
        "vhost": l.vhost.name().as_str(),
        "name": q.name().as_str(),
        "kind": l.kind.as_str(),
        "durable": q.options().durable,
        "fifo": q.options().fifo,
        "messages": q.ready_len(),
        "messages_delayed": q.delayed_len(),
        "messages_in_flight": q.leased_len(),
        "consumers": q.consumer_count(),
        "dead_letter_target": settings.redrive.as_ref().map(|r| r.target.as_str()),
        "max_receive_count": settings.redrive.as_ref().map(|r| r.max_receive_count),
        "dead_letter_sources": sources.get(&key).cloned().unwrap_or_default(),
        "stats": {
            "enqueued": stats.enqueued,
            "delivered": stats.delivered,
            "acked": stats.acked,
            "dead_lettered": stats.dead_lettered,
            "expired": stats.expired,
            "dropped": stats.dropped_overflow + stats.dropped_no_consumer + stats.rejected,
        },
        "rates": {
            "enqueued_per_second": enq_rate,
            "delivered_per_second": del_rate,
        },
    })
}

// ---- handlers ----

async fn overview(State(api): State<Arc<Api>>) -> Json<Value> {
    api.admin.rates.touch();
    let core = &api.core;
    let listed = all_queues(core);
    let (mut ready, mut in_flight) = (0usize, 0usize);
    let (mut enqueued, mut delivered, mut dead) = (0u64, 0u64, 0u64);
    for l in &listed {
        ready += l.queue.ready_len();
        in_flight += l.queue.leased_len();
        let s = l.queue.stats();
        enqueued += s.enqueued;
        delivered += s.delivered;
        dead += s.dead_lettered;
    }
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": api.admin.started.elapsed().as_secs(),
        "connections": {
            "mqtt": core.sessions.connected().len(),
            "amqp": core.connections.amqp_count(),
        },
        "queues": listed.len(),
        "messages_ready": ready,
        "messages_in_flight": in_flight,
        "enqueued_total": enqueued,
        "delivered_total": delivered,
        "dead_lettered_total": dead,
    }))
}

async fn connections(State(api): State<Arc<Api>>) -> Json<Value> {
    let list: Vec<Value> = api
        .core
        .connections
        .list(&api.core.sessions)
        .into_iter()
        .map(|c| {
            json!({
                "id": c.id,
                "protocol": c.protocol.as_str(),
                "peer": c.client.peer().to_string(),
                "user": c.client.user(),
                "client_id": c.client_id,
                "vhost": c.vhost,
                "connected_at": c.client.connected_at(),
            })
        })
        .collect();
    Json(Value::Array(list))
}

async fn close_connection(
    State(api): State<Arc<Api>>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    let Path(id) = path.map_err(|e| ApiFailure::bad_request(e.body_text()))?;
    if api.core.connections.close(&api.core.sessions, &id) {
        tracing::info!(connection = id, "connection closed through the admin API");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiFailure::not_found(format!(
            "No live connection has id '{id}'."
        )))
    }
}

async fn bridges(State(api): State<Arc<Api>>) -> Json<Value> {
    use std::sync::atomic::Ordering::Relaxed;
    let bridges = api.core.metrics.bridges();
    let out: Vec<Value> = bridges
        .0
        .iter()
        .map(|b| {
            let s = &b.status;
            json!({
                "name": b.config.name,
                "kind": b.config.kind,
                "address": b.config.address,
                "client_id": b.client_id,
                "connected": s.connected.load(Relaxed),
                "last_error": *s.last_error.lock(),
                "outbox": b.outbox.name().to_string(),
                "backlog": b.backlog(),
                "forwarded_out": s.forwarded_out.load(Relaxed),
                "forwarded_in": s.forwarded_in.load(Relaxed),
                "loops_broken": s.loops_broken.load(Relaxed),
                "inbound_dropped": s.dropped_in.load(Relaxed),
                "disconnects": s.disconnects.load(Relaxed),
            })
        })
        .collect();
    Json(Value::Array(out))
}

async fn sessions(State(api): State<Arc<Api>>) -> Json<Value> {
    let core = &api.core;
    // A connected session's subscriptions are held by its connection; its
    // bindings on amq.topic say the same (filter and granted QoS).
    let mut bound: HashMap<*const Queue, Vec<(String, u8)>> = HashMap::new();
    for b in core.vhost.amq_topic().bindings() {
        if let (Destination::Queue(q), KeyForm::Mqtt) = (&b.destination, b.key_form) {
            bound
                .entry(Arc::as_ptr(q))
                .or_default()
                .push((b.key.to_string(), b.options.max_qos));
        }
    }
    let mut list: Vec<Arc<Session>> = core.sessions.sessions();
    list.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    let out: Vec<Value> = list
        .iter()
        .map(|s| {
            let snap = s.snapshot();
            let mut subs = snap
                .offline_subscriptions
                .or_else(|| bound.get(&Arc::as_ptr(&s.queue)).cloned())
                .unwrap_or_default();
            subs.sort();
            let subs: Vec<Value> = subs
                .into_iter()
                .map(|(filter, qos)| json!({ "filter": filter, "qos": qos }))
                .collect();
            json!({
                "client_id": &*s.client_id,
                "connected": snap.connected,
                "subscriptions": subs,
                "messages": s.queue.ready_len(),
                "messages_in_flight": s.queue.leased_len(),
                "expiry_seconds": snap.expiry.as_secs(),
            })
        })
        .collect();
    Json(Value::Array(out))
}

/// The vhosts, sorted by name.
fn sorted_vhosts(core: &Core) -> Vec<&Arc<VHost>> {
    let mut v: Vec<&Arc<VHost>> = core.vhosts.values().collect();
    v.sort_by(|a, b| a.name().cmp(b.name()));
    v
}

async fn exchanges(State(api): State<Arc<Api>>) -> Json<Value> {
    let mut out = Vec::new();
    for vhost in sorted_vhosts(&api.core) {
        let mut list = vhost.exchanges();
        list.sort_by(|a, b| a.name().cmp(b.name()));
        for ex in list {
            out.push(json!({
                "vhost": vhost.name().as_str(),
                "name": ex.name().as_str(),
                "type": ex.kind().as_str(),
                "durable": ex.durable,
                "auto_delete": ex.auto_delete,
                "internal": ex.internal,
            }));
        }
    }
    Json(Value::Array(out))
}

async fn bindings(State(api): State<Arc<Api>>) -> Json<Value> {
    let mut out = Vec::new();
    for vhost in sorted_vhosts(&api.core) {
        let mut list = vhost.exchanges();
        list.sort_by(|a, b| a.name().cmp(b.name()));
        for ex in list {
            let mut rows: Vec<(String, &'static str, String, Value)> = ex
                .bindings()
                .into_iter()
                .map(|b| {
                    let (destination, kind) = match &b.destination {
                        Destination::Queue(q) => (q.name().to_string(), "queue"),
                        Destination::Exchange(e) => (e.name().to_string(), "exchange"),
                    };
                    // MQTT subscriptions are shown in AMQP spelling, as they route.
                    let key = match b.key_form {
                        KeyForm::Amqp => b.key.to_string(),
                        KeyForm::Mqtt => {
                            tether_protocols::mapping::mqtt_filter_to_binding_key_string(&b.key)
                                .unwrap_or_else(|_| b.key.to_string())
                        }
                    };
                    let args = b.args.as_deref().map_or(json!({}), table_json);
                    (destination, kind, key, args)
                })
                .collect();
            rows.sort_by(|a, b| (&a.0, &a.2).cmp(&(&b.0, &b.2)));
            for (destination, kind, key, args) in rows {
                out.push(json!({
                    "vhost": vhost.name().as_str(),
                    "source": ex.name().as_str(),
                    "destination": destination,
                    "destination_type": kind,
                    "routing_key": key,
                    "arguments": args,
                }));
            }
        }
    }
    Json(Value::Array(out))
}

async fn queues(
    State(api): State<Arc<Api>>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let kinds: Option<Vec<QueueKind>> = match query.get("kind") {
        None => None,
        Some(text) => Some(
            text.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|k| {
                    QueueKind::parse(k).ok_or_else(|| {
                        ApiFailure::bad_request(format!(
                            "Unknown queue kind '{k}': use sqs, amqp or mqtt."
                        ))
                    })
                })
                .collect::<ApiResult<_>>()?,
        ),
    };
    api.admin.rates.touch();
    let sources = dead_letter_sources(&api.core);
    let out: Vec<Value> = all_queues(&api.core)
        .iter()
        .filter(|l| kinds.as_ref().is_none_or(|k| k.contains(&l.kind)))
        .map(|l| queue_json(l, &sources, &api.admin.rates))
        .collect();
    Ok(Json(Value::Array(out)))
}

/// The vhost and queue name of a `/queues/{vhost}/{name}` path.
fn queue_path(path: Result<Path<(String, String)>, PathRejection>) -> ApiResult<(String, String)> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiFailure::bad_request(e.body_text()))
}

async fn queue(
    State(api): State<Arc<Api>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let (vhost, name) = queue_path(path)?;
    let l = find_queue(&api.core, &vhost, &name)?;
    api.admin.rates.touch();
    let sources = dead_letter_sources(&api.core);
    Ok(Json(queue_json(&l, &sources, &api.admin.rates)))
}

/// Waits until what `lsn` covers is durable.
async fn stored(api: &Api, lsn: crate::store::Lsn) -> ApiResult<()> {
    crate::store::durable(&*api.core.store, lsn)
        .await
        .map_err(|e| ApiFailure::internal(format!("The change could not be stored: {e}")))
}

async fn delete_queue(
    State(api): State<Arc<Api>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<StatusCode> {
    let (vhost, name) = queue_path(path)?;
    let l = find_queue(&api.core, &vhost, &name)?;
    match l.kind {
        QueueKind::Sqs => {
            // Through the SQS service, so its metadata goes with the queue.
            let mut p = Map::new();
            p.insert("QueueUrl".into(), Value::String(format!("/{name}")));
            api.sqs
                .call("DeleteQueue", &Params(p), "localhost")
                .await
                .map_err(|e| ApiFailure::internal(e.message))?;
        }
        QueueKind::Amqp => {
            let (_, lsn) = crate::store::tracked(|| l.vhost.delete_queue(&name));
            stored(&api, lsn).await?;
        }
        QueueKind::Mqtt => {
            let session = api
                .core
                .sessions
                .sessions()
                .into_iter()
                .find(|s| Arc::ptr_eq(&s.queue, &l.queue));
            let Some(session) = session else {
                return Err(ApiFailure::new(
                    StatusCode::CONFLICT,
                    "in_use",
                    format!(
                        "'{name}' belongs to a shared subscription group; it goes with its last member."
                    ),
                ));
            };
            if session.snapshot().connected {
                return Err(ApiFailure::new(
                    StatusCode::CONFLICT,
                    "in_use",
                    format!("The client of '{name}' is connected; close its connection first."),
                ));
            }
            // An offline session's queue goes with the session.
            let (_, lsn) = crate::store::tracked(|| api.core.sessions.end(&session));
            stored(&api, lsn).await?;
        }
    }
    tracing::info!(vhost, queue = name, "queue deleted through the admin API");
    Ok(StatusCode::NO_CONTENT)
}

async fn purge(
    State(api): State<Arc<Api>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let (vhost, name) = queue_path(path)?;
    let l = find_queue(&api.core, &vhost, &name)?;
    // SQS PurgeQueue removes messages in flight too; AMQP queue.purge and
    // MQTT session queues keep what consumers hold.
    let (purged, lsn) = crate::store::tracked(|| match l.kind {
        QueueKind::Sqs => l.queue.purge_all(),
        QueueKind::Amqp | QueueKind::Mqtt => l.queue.purge(),
    });
    stored(&api, lsn).await?;
    tracing::info!(
        vhost,
        queue = name,
        purged,
        "queue purged through the admin API"
    );
    Ok(Json(json!({ "purged": purged })))
}

async fn peek(
    State(api): State<Arc<Api>>,
    path: Result<Path<(String, String)>, PathRejection>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let (vhost, name) = queue_path(path)?;
    let count = match query.get("count") {
        None => PEEK_DEFAULT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=PEEK_MAX).contains(&n) => n,
            _ => {
                return Err(ApiFailure::bad_request(format!(
                    "count must be a whole number from 1 to {PEEK_MAX}, not '{text}'."
                )));
            }
        },
    };
    let l = find_queue(&api.core, &vhost, &name)?;
    let out: Vec<Value> = l
        .queue
        .peek(count)
        .iter()
        .map(|p| peeked_json(&api.sqs, p))
        .collect();
    Ok(Json(Value::Array(out)))
}

/// A peeked message: body as UTF-8 text when it is, else base64.
fn peeked_json(sqs: &Sqs, p: &Peeked) -> Value {
    let msg = &p.msg;
    let (body, encoding) = match std::str::from_utf8(&msg.payload) {
        Ok(text) => (text.to_owned(), "utf8"),
        Err(_) => (STANDARD.encode(&msg.payload), "base64"),
    };
    let mut attributes = Map::new();
    if let Some(props) = &msg.props {
        for a in props.sqs_attributes() {
            let value = match &a.value {
                AttributeValue::Text(t) => t.to_string(),
                AttributeValue::Binary(b) => STANDARD.encode(b),
            };
            attributes.insert(a.name.to_string(), Value::String(value));
        }
    }
    json!({
        "message_id": sqs.message_id(msg.id),
        "body": body,
        "body_encoding": encoding,
        "attributes": attributes,
        "receive_count": p.receive_count,
        "enqueued_at": msg.published_at_ms / 1000,
        "routing_key": msg.routing_key.as_str(),
        "exchange": msg.exchange.as_str(),
    })
}

async fn redrive(
    State(api): State<Arc<Api>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let (vhost, name) = queue_path(path)?;
    let l = find_queue(&api.core, &vhost, &name)?;
    let sources = dead_letter_sources(&api.core);
    if !sources.contains_key(&(l.vhost.name().to_string(), name.clone())) {
        return Err(ApiFailure::bad_request(format!(
            "'{name}' is not a dead-letter queue: no queue's redrive policy targets it."
        )));
    }
    let ((moved, stayed), lsn) = crate::store::tracked(|| sqs::redrive_all(&l.vhost, &l.queue));
    stored(&api, lsn).await?;
    tracing::info!(
        vhost,
        queue = name,
        moved,
        stayed,
        "dead letters redriven through the admin API"
    );
    Ok(Json(json!({ "moved": moved, "not_moved": stayed })))
}

// ---- AMQP field tables as plain JSON ----

/// A field table as a JSON object (RabbitMQ's management API shape).
pub fn table_json(t: &FieldTable) -> Value {
    Value::Object(
        t.inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), amqp_json(v)))
            .collect(),
    )
}

fn amqp_json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Float(f) => json!(f),
        AMQPValue::Double(f) => json!(f),
        AMQPValue::DecimalValue(d) => {
            json!(f64::from(d.value) / 10f64.powi(i32::from(d.scale)))
        }
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(amqp_json).collect()),
        AMQPValue::Timestamp(t) => json!(t),
        AMQPValue::FieldTable(t) => table_json(t),
        AMQPValue::ByteArray(b) => json!(STANDARD.encode(b.as_slice())),
        AMQPValue::Void => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_tables_become_plain_json() {
        let mut inner = FieldTable::default();
        inner.insert("n".into(), AMQPValue::LongInt(-3));
        let mut t = FieldTable::default();
        t.insert("x-match".into(), AMQPValue::LongString("all".into()));
        t.insert("flag".into(), AMQPValue::Boolean(true));
        t.insert("nested".into(), AMQPValue::FieldTable(inner));
        t.insert(
            "list".into(),
            AMQPValue::FieldArray(vec![AMQPValue::ShortShortUInt(1), AMQPValue::Void].into()),
        );
        assert_eq!(
            table_json(&t),
            json!({"x-match": "all", "flag": true, "nested": {"n": -3}, "list": [1, null]})
        );
    }

    #[test]
    fn queue_kinds_parse_by_their_api_names() {
        for k in [QueueKind::Sqs, QueueKind::Amqp, QueueKind::Mqtt] {
            assert_eq!(QueueKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(QueueKind::parse("SQS"), None);
    }
}
