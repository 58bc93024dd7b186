//! The HTTP listener: health endpoints and the Amazon SQS and SNS APIs that
//! the stock AWS SDKs and CLI use unchanged.
//!
//! * `/healthz` answers 200 while the process runs; `/readyz` 200 once the
//!   gateway has finished starting and 503 again once it stops
//!   ([`crate::metrics::Readiness`]); `/metrics` is the Prometheus exposition.
//! * Everything else is the AWS API: requests with `X-Amz-Target:
//!   AmazonSQS.<Operation>` use the JSON protocol; form-encoded `Action=...`
//!   requests (any path, GET or POST) use the query protocol and are routed
//!   to SQS or SNS by action name.
//!
//! * `GET /` (without `Action`) and `/dashboard/...`: the built-in web
//!   dashboard ([`dashboard`]), unless `http.dashboard = false`.
//!
//! Modules: [`aws`] (wire protocols), [`sqs`], `sqs_xml`, [`sns`],
//! `sns_filter`, `sns_http`, `sigv4`.
//!
//! `/api/...` is the admin API ([`admin`]), behind the credential check of
//! [`admin_auth`]; [`admin_rates`] samples queue rates for it, and
//! [`admin_defs`] serves its users, ACL and definitions endpoints.

pub mod admin;
pub mod admin_auth;
pub mod admin_defs;
pub mod admin_rates;
pub mod aws;
pub mod dashboard;
mod sigv4;
pub mod sns;
mod sns_filter;
mod sns_http;
pub mod sqs;
mod sqs_xml;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::core::Core;
use aws::{ApiError, Params, Protocol, form_pairs, pairs_to_map, request_id, unflatten};

/// Everything the HTTP handlers share.
#[derive(Debug)]
pub struct Api {
    /// The core.
    pub core: Arc<Core>,
    /// The SQS service.
    pub sqs: sqs::Sqs,
    /// The SNS service.
    pub sns: sns::Sns,
    /// The admin API's state (credential cache, queue rates).
    pub admin: admin::AdminState,
    access_keys: Vec<crate::config::AccessKeyConfig>,
    /// Whether `/` and `/dashboard/...` serve the web dashboard.
    dashboard: bool,
    metrics: crate::config::MetricsConfig,
}

impl Api {
    /// Builds the API services from configuration.
    pub fn new(core: Arc<Core>, config: &Config, shutdown: CancellationToken) -> Arc<Self> {
        // Stable across restarts: message and subscription ids stay unique.
        let id_prefix = core.identity("api-id-prefix");
        Arc::new(Api {
            sqs: sqs::Sqs::new(
                core.clone(),
                config.aws.clone(),
                config.sqs.clone(),
                id_prefix,
            ),
            sns: sns::Sns::new(
                core.clone(),
                config.aws.clone(),
                config.sns.clone(),
                id_prefix,
                shutdown.clone(),
            ),
            admin: admin::AdminState::new(core.clone(), shutdown),
            access_keys: config.aws.access_keys.clone(),
            dashboard: config.http.dashboard,
            metrics: config.metrics.clone(),
            core,
        })
    }
}

impl Api {
    /// Creates the queues and topics that configured rules send to, so rules
    /// work from the first message.
    pub fn ensure_rule_targets(&self, rules: &[crate::config::RuleConfig]) {
        use crate::config::RuleActionConfig;
        for action in rules.iter().flat_map(|r| &r.actions) {
            let result = match action {
                RuleActionConfig::Sqs { queue } if self.core.vhost.queue(queue).is_none() => {
                    let mut p = Map::new();
                    p.insert("QueueName".into(), Value::String(queue.clone()));
                    if queue.ends_with(".fifo") {
                        p.insert(
                            "Attributes".into(),
                            json!({"FifoQueue": "true", "ContentBasedDeduplication": "true"}),
                        );
                    }
                    futures_now(self.sqs.call("CreateQueue", &Params(p), "localhost"))
                }
                RuleActionConfig::Sns { topic } if self.core.vhost.exchange(topic).is_none() => {
                    let mut p = Map::new();
                    p.insert("Name".into(), Value::String(topic.clone()));
                    self.sns.call("CreateTopic", &Params(p), "localhost")
                }
                _ => Ok(Value::Null),
            };
            if let Err(e) = result {
                tracing::error!(error = %e.message, "cannot create a rule's target");
            }
        }
    }
}

/// Runs an operation future that never waits (CreateQueue) to completion.
fn futures_now<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// Serves HTTP on `listener` (a `TcpListener`, or the HTTPS listener of
/// [`crate::transport::tls`]) until `shutdown` is cancelled.
pub async fn serve<L>(listener: L, api: Arc<Api>, shutdown: CancellationToken)
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    let metrics = api.core.metrics.clone();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .nest("/api", admin::routes(api.clone()))
        .fallback(handle)
        .with_state(api);
    // The admin guard needs the peer address (guest is loopback-only).
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    // `tap_io` gives any listener (plain or HTTPS) axum's connect-info impl.
    use axum::serve::ListenerExt;
    let listener = crate::metrics::CountedListener::new(listener, metrics).tap_io(|_| ());
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "http listener failed");
    }
}

/// 200 `ready` between start-up and shutdown, 503 `starting`/`stopping` otherwise.
async fn readyz(State(api): State<Arc<Api>>) -> Response {
    let r = &api.core.metrics.readiness;
    let status = if r.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, format!("{}\n", r.state())).into_response()
}

/// The Prometheus exposition (404 when `metrics.enabled` is off).
async fn prometheus(State(api): State<Arc<Api>>) -> Response {
    if !api.metrics.enabled {
        return (
            StatusCode::NOT_FOUND,
            "metrics are disabled (metrics.enabled)\n",
        )
            .into_response();
    }
    let text = crate::metrics::render(&api.core, api.metrics.per_queue);
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

/// Which service an action belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Sqs,
    Sns,
}

impl Service {
    /// The `service` label.
    fn label(self) -> &'static str {
        match self {
            Service::Sqs => "sqs",
            Service::Sns => "sns",
        }
    }
}

async fn handle(
    State(api): State<Arc<Api>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Before the SigV4 check: a browser does not sign its requests.
    if api.dashboard
        && let Some(page) = dashboard::respond(&method, &uri, &headers, &body)
    {
        return page;
    }
    let rid = request_id();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost:9324")
        .to_owned();
    if !api.access_keys.is_empty() {
        let lookup = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let req = sigv4::SignedRequest {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            headers: &lookup,
            body: &body,
        };
        if let Err(e) = sigv4::verify(&req, &api.access_keys) {
            let (http, auth) = (
                crate::metrics::Protocol::Http,
                crate::metrics::Count::AuthFailures,
            );
            api.core.metrics.add(http, auth, 1);
            tracing::debug!(error = %e.message, "api request refused: bad signature");
            let json = headers.contains_key("x-amz-target");
            let resp = error_response(
                if json {
                    Protocol::Json
                } else {
                    Protocol::Query
                },
                Service::Sqs,
                &e,
                &rid,
            );
            return counted(&api, "unknown", "unknown", resp);
        }
    }
    if let Some(target) = headers.get("x-amz-target").and_then(|t| t.to_str().ok()) {
        let (service, action) = target.split_once('.').unwrap_or((target, ""));
        let svc = match service {
            "AmazonSQS" => Service::Sqs,
            "AmazonSNS" => Service::Sns,
            _ => {
                let e = ApiError::sender(
                    "UnknownOperationException",
                    format!("Unknown target {target}"),
                );
                let resp = error_response(Protocol::Json, Service::Sqs, &e, &rid);
                return counted(&api, "unknown", "unknown", resp);
            }
        };
        let params = if body.is_empty() {
            Map::new()
        } else {
            match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(m)) => m,
                _ => {
                    let e = ApiError::sender(
                        "SerializationException",
                        "The request body is not a JSON object.",
                    );
                    let resp = error_response(Protocol::Json, svc, &e, &rid);
                    return counted(&api, svc.label(), "unknown", resp);
                }
            }
        };
        return dispatch(
            &api,
            svc,
            action,
            &Params(params),
            &host,
            Protocol::Json,
            &rid,
        )
        .await;
    }
    // Query protocol: parameters from the query string and a form body.
    let mut pairs = form_pairs(uri.query().unwrap_or(""));
    if !body.is_empty() {
        pairs.extend(form_pairs(&String::from_utf8_lossy(&body)));
    }
    let Some(action) = pairs
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.clone())
    else {
        let e = ApiError::sender(
            "MissingAction",
            "The request must contain the parameter Action.",
        );
        let resp = error_response(Protocol::Query, Service::Sqs, &e, &rid);
        return counted(&api, "unknown", "unknown", resp);
    };
    let svc = if sqs::Sqs::knows(&action) {
        Service::Sqs
    } else if sns::Sns::knows(&action) {
        Service::Sns
    } else {
        let e = ApiError::sender(
            "InvalidAction",
            format!("The action {action} is not valid for this endpoint."),
        );
        let resp = error_response(Protocol::Query, Service::Sqs, &e, &rid);
        return counted(&api, "unknown", "unknown", resp);
    };
    let mut params = match svc {
        Service::Sqs => sqs_query_params(&pairs),
        Service::Sns => sns_query_params(&pairs),
    };
    // Older SDKs post to the queue URL itself.
    let path = uri.path().trim_matches('/');
    if svc == Service::Sqs && !params.0.contains_key("QueueUrl") && path.contains('/') {
        params.0.insert(
            "QueueUrl".into(),
            Value::String(format!("http://{host}/{path}")),
        );
    }
    dispatch(&api, svc, &action, &params, &host, Protocol::Query, &rid).await
}

/// Counts an API request that did not reach an action (labels given as is).
fn counted(api: &Api, service: &'static str, action: &'static str, resp: Response) -> Response {
    api.core
        .metrics
        .count_request(service, action, true, resp.status().as_u16());
    resp
}

async fn dispatch(
    api: &Api,
    svc: Service,
    action: &str,
    params: &Params,
    host: &str,
    protocol: Protocol,
    rid: &str,
) -> Response {
    let resp = dispatch_action(api, svc, action, params, host, protocol, rid).await;
    let known = match svc {
        Service::Sqs => sqs::Sqs::knows(action),
        Service::Sns => sns::Sns::knows(action),
    };
    api.core
        .metrics
        .count_request(svc.label(), action, known, resp.status().as_u16());
    resp
}

async fn dispatch_action(
    api: &Api,
    svc: Service,
    action: &str,
    params: &Params,
    host: &str,
    protocol: Protocol,
    rid: &str,
) -> Response {
    let result = match svc {
        Service::Sqs => api.sqs.call(action, params, host).await,
        Service::Sns => {
            let (r, lsn) = crate::store::tracked(|| api.sns.call(action, params, host));
            match r {
                Ok(v) => crate::store::durable(&*api.core.store, lsn)
                    .await
                    .map(|()| v)
                    .map_err(|e| {
                        ApiError::internal(format!("The change could not be stored: {e}"))
                    }),
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(v) => match protocol {
            Protocol::Json => json_response(StatusCode::OK, &v, rid, None),
            Protocol::Query => {
                let doc = match svc {
                    Service::Sqs => sqs_xml::render(action, &v, rid),
                    Service::Sns => sns::Sns::render(action, &v, rid),
                };
                xml_response(StatusCode::OK, doc, rid)
            }
        },
        Err(e) => {
            if e.status >= 500 {
                tracing::error!(action, error = %e.message, "api request failed");
            }
            error_response(protocol, svc, &e, rid)
        }
    }
}

fn json_response(
    status: StatusCode,
    v: &Value,
    rid: &str,
    query_error: Option<String>,
) -> Response {
    let mut resp = (status, v.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    if let Ok(v) = HeaderValue::from_str(rid) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(q) = query_error.and_then(|q| HeaderValue::from_str(&q).ok()) {
        h.insert("x-amzn-query-error", q);
    }
    resp
}

fn xml_response(status: StatusCode, doc: String, rid: &str) -> Response {
    let mut resp = (status, doc).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(rid) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

fn error_response(protocol: Protocol, svc: Service, e: &ApiError, rid: &str) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let fault = if e.sender_fault { "Sender" } else { "Receiver" };
    match protocol {
        Protocol::Json => {
            let namespace = match svc {
                Service::Sqs => "com.amazonaws.sqs",
                Service::Sns => "com.amazonaws.sns",
            };
            let body = json!({ "__type": format!("{namespace}#{}", e.code), "message": e.message });
            json_response(
                status,
                &body,
                rid,
                Some(format!("{};{fault}", e.query_code)),
            )
        }
        Protocol::Query => {
            let xmlns = match svc {
                Service::Sqs => "http://queue.amazonaws.com/doc/2012-11-05/",
                Service::Sns => "http://sns.amazonaws.com/doc/2010-03-31/",
            };
            let doc = format!(
                "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"{xmlns}\"><Error><Type>{fault}</Type><Code>{}</Code><Message>{}</Message><Detail/></Error><RequestId>{rid}</RequestId></ErrorResponse>",
                aws::escape(e.query_code),
                aws::escape(&e.message)
            );
            xml_response(status, doc, rid)
        }
    }
}

/// Normalizes SQS query parameters to the JSON protocol's shape.
fn sqs_query_params(pairs: &[(String, String)]) -> Params {
    let mut m = unflatten(pairs);
    normalize_sqs(&mut m);
    Params(m)
}

fn normalize_sqs(m: &mut Map<String, Value>) {
    if let Some(v) = pairs_to_map(m.remove("Attribute"), "Name", "Value") {
        m.insert("Attributes".into(), v);
    }
    for (from, to) in [
        ("MessageAttribute", "MessageAttributes"),
        ("MessageSystemAttribute", "MessageSystemAttributes"),
    ] {
        if let Some(v) = pairs_to_map(m.remove(from), "Name", "Value") {
            m.insert(to.into(), v);
        }
    }
    for (from, to) in [
        ("AttributeName", "AttributeNames"),
        ("MessageAttributeName", "MessageAttributeNames"),
        ("MessageSystemAttributeName", "MessageSystemAttributeNames"),
        ("TagKey", "TagKeys"),
    ] {
        if let Some(v) = m.remove(from) {
            m.insert(to.into(), v);
        }
    }
    if let Some(v) = pairs_to_map(m.remove("Tag"), "Key", "Value") {
        m.insert("Tags".into(), v);
    }
    let batch_key = m.keys().find(|k| k.ends_with("BatchRequestEntry")).cloned();
    if let Some(k) = batch_key
        && let Some(Value::Array(entries)) = m.remove(&k)
    {
        let entries: Vec<Value> = entries
            .into_iter()
            .map(|e| match e {
                Value::Object(mut em) => {
                    normalize_sqs(&mut em);
                    Value::Object(em)
                }
                other => other,
            })
            .collect();
        m.insert("Entries".into(), Value::Array(entries));
    }
}

/// Normalizes SNS query parameters to the JSON shape the operations read.
fn sns_query_params(pairs: &[(String, String)]) -> Params {
    let mut m = unflatten(pairs);
    normalize_sns(&mut m);
    Params(m)
}

fn normalize_sns(m: &mut Map<String, Value>) {
    if let Some(v) = pairs_to_map(m.remove("Attributes"), "key", "value") {
        m.insert("Attributes".into(), v);
    }
    if let Some(v) = pairs_to_map(m.remove("MessageAttributes"), "Name", "Value") {
        m.insert("MessageAttributes".into(), v);
    }
    if let Some(Value::Array(entries)) = m.get_mut("PublishBatchRequestEntries") {
        for e in entries.iter_mut() {
            if let Value::Object(em) = e {
                normalize_sns(em);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqs_query_batch_entries_become_entries_with_attribute_maps() {
        let pairs = form_pairs(
            "Action=SendMessageBatch&SendMessageBatchRequestEntry.1.Id=a&SendMessageBatchRequestEntry.1.MessageBody=b\
             &SendMessageBatchRequestEntry.1.MessageAttribute.1.Name=k\
             &SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType=String\
             &SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue=v",
        );
        let p = sqs_query_params(&pairs);
        let entries = p.objects("Entries");
        assert_eq!(entries.len(), 1);
        let attrs = entries[0].object("MessageAttributes").unwrap();
        assert_eq!(attrs["k"]["StringValue"], "v");
    }

    #[test]
    fn sns_query_attributes_and_message_attributes_become_maps() {
        let pairs = form_pairs(
            "Action=Publish&Attributes.entry.1.key=DisplayName&Attributes.entry.1.value=d\
             &MessageAttributes.entry.1.Name=plan&MessageAttributes.entry.1.Value.DataType=String\
             &MessageAttributes.entry.1.Value.StringValue=pro",
        );
        let p = sns_query_params(&pairs);
        assert_eq!(
            p.string_map("Attributes"),
            vec![("DisplayName".to_owned(), "d".to_owned())]
        );
        assert_eq!(
            p.object("MessageAttributes").unwrap()["plan"]["StringValue"],
            "pro"
        );
    }
}
