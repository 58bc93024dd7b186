//! Delivery to SNS `http` and `https` subscriptions.
//!
//! Each subscription has a private core queue (filled by its binding) and a
//! task that leases one message at a time and POSTs it, retrying with
//! exponential backoff. After the last retry the message goes to the
//! subscription's dead-letter queue when it has a RedrivePolicy, or is dropped
//! (and logged). A message leaves the queue only after a 2xx answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::sns::SubscriptionHook;
use crate::config::SnsConfig;
use crate::core::queue::{PullLimits, PullMode, Queue, SendOptions, Wakeup};
use crate::core::vhost::VHost;

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

fn client() -> Option<HttpsClient> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .ok()?
        .https_or_http()
        .enable_http1()
        .build();
    Some(Client::builder(TokioExecutor::new()).build(connector))
}

/// Starts the delivery task of one subscription.
pub fn spawn(
    queue: Arc<Queue>,
    endpoint: String,
    hook: Arc<SubscriptionHook>,
    cfg: SnsConfig,
    cancel: CancellationToken,
    vhost: Arc<VHost>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    tokio::spawn(async move {
        let Some(client) = client() else {
            tracing::error!(endpoint, "no HTTP client for SNS delivery");
            return;
        };
        let notify = Arc::new(Notify::new());
        let wakeup = Wakeup::new(notify.clone());
        let id = queue.attach(wakeup.clone());
        let mut out = Vec::with_capacity(1);
        loop {
            wakeup.take();
            out.clear();
            queue.pull(
                id,
                PullLimits {
                    max: 1,
                    max_leased: 1,
                },
                PullMode::Lease { owner: 1 },
                &mut out,
            );
            let Some(d) = out.pop() else {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = notify.notified() => continue,
                }
            };
            let delivered = deliver(
                &client,
                &endpoint,
                &hook,
                &d.msg.payload,
                d.msg.id,
                &cfg,
                &cancel,
            )
            .await;
            if delivered {
                use crate::metrics::{Count, Protocol};
                metrics.add(Protocol::Sns, Count::MessagesDelivered, 1);
            }
            if !delivered && !cancel.is_cancelled() {
                dead_letter(&vhost, &hook, &d.msg, &endpoint);
            }
            if let Some(tag) = d.tag {
                if cancel.is_cancelled() && !delivered {
                    queue.reject(tag, true);
                } else {
                    queue.ack(tag);
                }
            }
            if cancel.is_cancelled() {
                break;
            }
        }
        queue.detach(id);
    });
}

/// POSTs one message with retries; true on a 2xx answer.
async fn deliver(
    client: &HttpsClient,
    endpoint: &str,
    hook: &SubscriptionHook,
    body: &Bytes,
    message_id: u64,
    cfg: &SnsConfig,
    cancel: &CancellationToken,
) -> bool {
    let mut delay = cfg.http_retry_delay;
    for attempt in 0..=cfg.http_retries {
        let req = hyper::Request::post(endpoint)
            .header("content-type", "text/plain; charset=UTF-8")
            .header("x-amz-sns-message-type", "Notification")
            .header("x-amz-sns-message-id", hook.message_id(message_id))
            .header("x-amz-sns-topic-arn", hook.topic_arn())
            .header("x-amz-sns-subscription-arn", hook.arn())
            .header(
                "x-amz-sns-rawdelivery",
                if hook.raw() { "true" } else { "false" },
            )
            .header(
                "user-agent",
                "Amazon Simple Notification Service Agent (Tether)",
            )
            .body(Full::new(body.clone()));
        let Ok(req) = req else { return false };
        let outcome = tokio::time::timeout(cfg.http_timeout, client.request(req)).await;
        match outcome {
            Ok(Ok(resp)) if resp.status().is_success() => return true,
            Ok(Ok(resp)) => {
                tracing::debug!(endpoint, attempt, status = %resp.status(), "sns http delivery refused");
            }
            Ok(Err(e)) => {
                tracing::debug!(endpoint, attempt, error = %e, "sns http delivery failed")
            }
            Err(_) => tracing::debug!(endpoint, attempt, "sns http delivery timed out"),
        }
        if attempt == cfg.http_retries {
            break;
        }
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(cfg.http_retry_max_delay.max(Duration::from_millis(1)));
    }
    false
}

/// Sends an undeliverable message to the subscription's dead-letter queue.
fn dead_letter(
    vhost: &VHost,
    hook: &SubscriptionHook,
    msg: &crate::core::message::SharedMessage,
    endpoint: &str,
) {
    let target = hook
        .redrive()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(&r).ok())
        .and_then(|v| {
            v.get("deadLetterTargetArn")
                .and_then(|a| a.as_str())
                .map(str::to_owned)
        })
        .and_then(|arn| arn.rsplit(':').next().map(str::to_owned))
        .and_then(|name| vhost.queue(&name));
    match target {
        Some(q) => {
            q.send(msg, &SendOptions::default());
            tracing::info!(endpoint, queue = %q.name(), "sns http delivery failed; message moved to the subscription's dead-letter queue");
        }
        None => tracing::warn!(
            endpoint,
            "sns http delivery failed after all retries; message dropped"
        ),
    }
}
