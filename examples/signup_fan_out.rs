//! Signup fan-out: a "new user" event is published once to an SNS topic and
//! reaches three subscribers, each getting what it asked for.
//!
//! ```text
//!                           ┌─► SQS `signup-emails`     raw delivery: the bare event   → email sender
//! SNS topic `user-signups` ─┼─► SQS `signup-analytics`  filter policy: plan is paid    → analytics
//!                           └─► HTTP webhook (this program) the SNS JSON envelope      → "function"
//! ```
//!
//! The SNS → SQS/Lambda fan-out from AWS courses, with the stock AWS SDKs. The
//! webhook stands in for a function: a tiny HTTP server on a local port, which
//! the gateway POSTs each notification to.
//!
//! # Run it
//!
//! ```text
//! cargo run --release                       # the gateway, embedded defaults
//! cargo run --example signup-fan-out
//! ```
//!
//! Flags (`--help` lists them): `--endpoint` (or `AWS_ENDPOINT_URL`, default
//! `http://127.0.0.1:9324`), `--webhook` (where the webhook listens, default
//! `127.0.0.1:0`, any free port; the gateway must be able to reach it).
//!
//! # What to look for
//!
//! * Three signups are published, once each: alice (free), bob (pro) and carol
//!   (enterprise).
//! * `email:` lines for all three: the queue subscribed with
//!   `RawMessageDelivery`, so its consumer reads the event JSON as published.
//! * `analytics:` lines for bob and carol only: that subscription's filter
//!   policy `{"plan": ["pro", "enterprise"]}` drops alice's free signup
//!   before it reaches the queue.
//! * `webhook:` lines for all three: an HTTP POST per event, carrying the SNS
//!   envelope (`Type: Notification`, `Message`, `MessageAttributes`).
//! * The final `done:` line with the three counts (3, 2, 3).

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

const TOPIC: &str = "user-signups";
const EMAIL_QUEUE: &str = "signup-emails";
const ANALYTICS_QUEUE: &str = "signup-analytics";
const WEBHOOK_PATH: &str = "/signup-webhook";

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Parser)]
#[command(about = "One SNS publish, three subscribers: raw SQS, filtered SQS, HTTP")]
struct Args {
    /// The gateway's SQS/SNS endpoint.
    #[arg(
        long,
        env = "AWS_ENDPOINT_URL",
        default_value = "http://127.0.0.1:9324"
    )]
    endpoint: String,
    /// Where the webhook listens (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    webhook: String,
}

/// The signups this run publishes: (user, plan).
const SIGNUPS: [(&str, &str); 3] = [("alice", "free"), ("bob", "pro"), ("carol", "enterprise")];

#[tokio::main]
async fn main() -> ExitCode {
    // Errors end the example with one line saying what went wrong.
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signup-fan-out: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let (sqs, sns) = aws_clients(&args.endpoint);

    // The topic and the two queues. Creating them is idempotent: a second run
    // gets the same topic and queues back.
    let topic_arn = sns
        .create_topic()
        .name(TOPIC)
        .send()
        .await
        .map_err(|e| format!("cannot reach the SNS API at {}: {e}", args.endpoint))?
        .topic_arn
        .ok_or("CreateTopic returned no ARN")?;
    let email_url = create_queue(&sqs, EMAIL_QUEUE).await?;
    let analytics_url = create_queue(&sqs, ANALYTICS_QUEUE).await?;

    // Start clean: drop the subscriptions of an earlier run (its webhook port
    // is gone) and whatever its queues still hold.
    let old = sns
        .list_subscriptions_by_topic()
        .topic_arn(&topic_arn)
        .send()
        .await?;
    for sub in old.subscriptions.unwrap_or_default() {
        if let Some(arn) = sub.subscription_arn {
            sns.unsubscribe().subscription_arn(arn).send().await?;
        }
    }
    for url in [&email_url, &analytics_url] {
        sqs.purge_queue().queue_url(url).send().await?;
    }

    // Subscriber 1: the email queue gets the bare message ("raw delivery"),
    // so the email sender needs to know nothing about SNS.
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn(&sqs, &email_url).await?)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await?;

    // Subscriber 2: analytics only cares about paid plans. The filter policy
    // is evaluated on the message attributes, by the gateway, before delivery.
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn(&sqs, &analytics_url).await?)
        .attributes("FilterPolicy", r#"{"plan": ["pro", "enterprise"]}"#)
        .send()
        .await?;

    // Subscriber 3: an HTTP endpoint, served by this program.
    let listener = TcpListener::bind(&args.webhook).await?;
    let webhook_url = format!("http://{}{WEBHOOK_PATH}", listener.local_addr()?);
    let (hits_tx, mut hits) = mpsc::channel(16);
    tokio::spawn(serve_webhook(listener, hits_tx));
    let webhook_sub = sns
        .subscribe()
        .topic_arn(&topic_arn)
        .protocol("http")
        .endpoint(&webhook_url)
        .return_subscription_arn(true)
        .send()
        .await?
        .subscription_arn
        .ok_or("Subscribe returned no ARN")?;
    println!(
        "topic {TOPIC}: subscribed {EMAIL_QUEUE} (raw), {ANALYTICS_QUEUE} (paid plans), {webhook_url}"
    );

    // The sign-up service publishes each event once; it does not know who listens.
    for (user, plan) in SIGNUPS {
        let event = serde_json::json!({
            "user": user,
            "email": format!("{user}@example.com"),
            "plan": plan,
        });
        sns.publish()
            .topic_arn(&topic_arn)
            .message(event.to_string())
            .message_attributes(
                "plan",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(plan)
                    .build()?,
            )
            .send()
            .await?;
        println!("published signup of {user} ({plan} plan)");
    }

    // Each subscriber reports what it received, until all have what they
    // should (or ten seconds pass).
    let (mut emails, mut analytics, mut webhook) = (0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while (emails < 3 || analytics < 2 || webhook < 3) && Instant::now() < deadline {
        // The email sender: raw delivery, the body is the event itself.
        for body in receive_and_delete(&sqs, &email_url).await? {
            let event: serde_json::Value = serde_json::from_str(&body)?;
            println!(
                "email: welcome mail sent to {}",
                event["email"].as_str().unwrap_or("?")
            );
            emails += 1;
        }
        // Analytics: an SNS envelope; the event is its `Message`.
        for body in receive_and_delete(&sqs, &analytics_url).await? {
            let event = unwrap_envelope(&body)?;
            println!(
                "analytics: counted a signup on the {} plan ({})",
                event["plan"].as_str().unwrap_or("?"),
                event["user"].as_str().unwrap_or("?")
            );
            analytics += 1;
        }
        // The webhook: whatever it has been POSTed meanwhile.
        while let Ok(body) = hits.try_recv() {
            let event = unwrap_envelope(&body)?;
            println!(
                "webhook: function ran for {} — provisioning a {} workspace",
                event["user"].as_str().unwrap_or("?"),
                event["plan"].as_str().unwrap_or("?")
            );
            webhook += 1;
        }
    }

    // Our webhook stops with this program: remove its subscription so the
    // gateway does not keep retrying a closed port.
    sns.unsubscribe()
        .subscription_arn(webhook_sub)
        .send()
        .await?;

    println!(
        "done: email {emails}/3, analytics {analytics}/2 (free plan filtered out), webhook {webhook}/3"
    );
    if (emails, analytics, webhook) == (3, 2, 3) {
        Ok(())
    } else {
        Err("not every subscriber got what it should have".into())
    }
}

/// SQS and SNS clients for the gateway: the AWS SDK, unchanged apart from the
/// endpoint. Tether does not check credentials unless configured to.
fn aws_clients(endpoint: &str) -> (aws_sdk_sqs::Client, aws_sdk_sns::Client) {
    let credentials =
        aws_credential_types::Credentials::new("example", "example", None, None, "static");
    let sqs = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials.clone())
        .build();
    let sns = aws_sdk_sns::Config::builder()
        .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
        .region(aws_sdk_sns::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .build();
    (
        aws_sdk_sqs::Client::from_conf(sqs),
        aws_sdk_sns::Client::from_conf(sns),
    )
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String, BoxError> {
    let out = sqs.create_queue().queue_name(name).send().await?;
    Ok(out.queue_url.ok_or("CreateQueue returned no URL")?)
}

/// A queue's ARN, which SNS subscriptions name their endpoint by.
async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, BoxError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?;
    out.attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| "GetQueueAttributes returned no QueueArn".into())
}

/// One long poll of up to a second; every message received is deleted.
async fn receive_and_delete(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<Vec<String>, BoxError> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await?;
    let mut bodies = Vec::new();
    for msg in out.messages.unwrap_or_default() {
        if let Some(handle) = msg.receipt_handle() {
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(handle)
                .send()
                .await?;
        }
        bodies.extend(msg.body);
    }
    Ok(bodies)
}

/// The event inside an SNS notification envelope (`{"Type":"Notification",
/// "Message":"<the published text>", ...}`).
fn unwrap_envelope(body: &str) -> Result<serde_json::Value, BoxError> {
    let envelope: serde_json::Value = serde_json::from_str(body)?;
    let message = envelope["Message"]
        .as_str()
        .ok_or("not an SNS envelope: no Message")?;
    Ok(serde_json::from_str(message)?)
}

/// The smallest webhook that works: accept a connection, read one HTTP
/// request, answer 200 and close. The body goes to `hits`.
async fn serve_webhook(listener: TcpListener, hits: mpsc::Sender<String>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let hits = hits.clone();
        tokio::spawn(async move {
            match read_request(&mut stream).await {
                Ok(body) => {
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    let _ = hits.send(body).await;
                }
                Err(e) => eprintln!("webhook: bad request: {e}"),
            }
        });
    }
}

/// Reads an HTTP/1.1 request with a `content-length` body; returns the body.
async fn read_request(stream: &mut TcpStream) -> Result<String, BoxError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // The head ends at the first empty line.
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Err("connection closed before the end of the request head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .ok_or("no content-length")?;
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed in the middle of the body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8(
        buf[head_end..head_end + length].to_vec(),
    )?)
}
