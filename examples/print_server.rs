//! Print server: an "image uploaded" event goes to an SNS topic with two
//! subscribers — a processing webhook, and an SQS queue that an on-premises
//! print server polls.
//!
//! ```text
//!                              ┌─► HTTP webhook (this program): "thumbnailer"
//! uploads ─► SNS `image-uploads`┤
//!                              └─► SQS `print-jobs` ◄── print server (outbound requests only:
//!                                                        long polling, visibility timeout,
//!                                                        delete after printing)
//! ```
//!
//! The print server sits behind a firewall that allows only outbound
//! connections, so nothing can push to it: it asks the queue for work. Three
//! SQS features make that work well:
//!
//! * **Long polling**: `ReceiveMessage` with `WaitTimeSeconds` waits at the
//!   gateway until a job arrives (up to 20 s), so the printer reacts at once
//!   without hammering the API with empty polls.
//! * **Visibility timeout**: a received job is hidden from other pollers while
//!   it prints. If the print server dies or the printer jams, the job was
//!   never deleted, and it reappears once the timeout expires.
//! * **Delete after printing**: only a job that came out of the printer is
//!   deleted; that is what makes "every upload is printed" hold.
//!
//! # Run it
//!
//! ```text
//! cargo run --release                       # the gateway, embedded defaults
//! cargo run --example print-server
//! cargo run --example print-server -- --images 5 --visibility 2
//! ```
//!
//! Flags (`--help` lists them): `--endpoint` (or `AWS_ENDPOINT_URL`, default
//! `http://127.0.0.1:9324`), `--webhook` (where the webhook listens, default
//! `127.0.0.1:0`), `--images`, `--visibility` (seconds), `--print-ms`.
//!
//! # What to look for
//!
//! * `thumbnailer:` lines: the webhook got every upload, pushed by the gateway.
//! * `printer: printed photo-N.jpg` lines, one per upload, each followed by the
//!   job's deletion.
//! * `photo-2.jpg` jams the first time: the print server does not delete it,
//!   and after the visibility timeout it is received again (`receive #2`)
//!   and printed.
//! * The final `done:` line: every upload printed once and the queue empty.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const TOPIC: &str = "image-uploads";
const PRINT_QUEUE: &str = "print-jobs";
/// The upload that jams the printer on its first attempt.
const JAMS_ONCE: &str = "photo-2.jpg";

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Parser)]
#[command(about = "SNS to a webhook and to an SQS queue polled by a print server")]
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
    /// How many images are uploaded.
    #[arg(long, default_value_t = 3)]
    images: usize,
    /// The print queue's visibility timeout, in seconds.
    #[arg(long, default_value_t = 5)]
    visibility: u32,
    /// How long printing one image takes.
    #[arg(long, default_value_t = 300)]
    print_ms: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Errors end the example with one line saying what went wrong.
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("print-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let (sqs, sns) = aws_clients(&args.endpoint);

    // The topic, and the queue with the visibility timeout the printer needs:
    // long enough to print one image.
    let topic_arn = sns
        .create_topic()
        .name(TOPIC)
        .send()
        .await
        .map_err(|e| format!("cannot reach the SNS API at {}: {e}", args.endpoint))?
        .topic_arn
        .ok_or("CreateTopic returned no ARN")?;
    let queue_url = sqs
        .create_queue()
        .queue_name(PRINT_QUEUE)
        .send()
        .await?
        .queue_url
        .ok_or("CreateQueue returned no URL")?;
    sqs.set_queue_attributes()
        .queue_url(&queue_url)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            args.visibility.to_string(),
        )
        .send()
        .await?;

    // Start clean: subscriptions of an earlier run (its webhook port is gone)
    // and leftover jobs.
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
    sqs.purge_queue().queue_url(&queue_url).send().await?;

    // Subscriber 1: the print queue, raw delivery (the job is the event itself).
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or("GetQueueAttributes returned no QueueArn")?;
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await?;

    // Subscriber 2: the processing webhook, served by this program.
    let listener = TcpListener::bind(&args.webhook).await?;
    let webhook_url = format!("http://{}/thumbnail", listener.local_addr()?);
    let thumbnails = Arc::new(AtomicUsize::new(0));
    tokio::spawn(serve_webhook(listener, thumbnails.clone()));
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
    println!("topic {TOPIC}: subscribed {PRINT_QUEUE} (raw) and {webhook_url}");

    // The uploads.
    for n in 1..=args.images {
        let event = serde_json::json!({
            "event": "image-uploaded",
            "image": format!("photo-{n}.jpg"),
            "album": "holiday",
            "copies": 1,
        });
        sns.publish()
            .topic_arn(&topic_arn)
            .message(event.to_string())
            .send()
            .await?;
        println!("uploaded photo-{n}.jpg");
    }

    // The print server, until every upload is printed.
    let printed = print_server(&sqs, &queue_url, &args).await?;

    // The thumbnailer may still be finishing.
    let deadline = Instant::now() + Duration::from_secs(10);
    while thumbnails.load(Ordering::Relaxed) < args.images && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sns.unsubscribe()
        .subscription_arn(webhook_sub)
        .send()
        .await?;

    let left = jobs_left(&sqs, &queue_url).await?;
    let thumbs = thumbnails.load(Ordering::Relaxed);
    println!(
        "done: {printed}/{} printed, {thumbs}/{} thumbnails, {left} jobs left in {PRINT_QUEUE}",
        args.images, args.images
    );
    if printed == args.images && thumbs == args.images && left == 0 {
        Ok(())
    } else {
        Err("not every upload was printed and thumbnailed".into())
    }
}

/// The on-premises print server: outbound requests only. Returns how many
/// images it printed.
async fn print_server(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    args: &Args,
) -> Result<usize, BoxError> {
    let mut printed = 0;
    let mut jammed_once = false;
    let deadline = Instant::now() + Duration::from_secs(30 + u64::from(args.visibility));
    while printed < args.images {
        if Instant::now() > deadline {
            return Err(format!("only {printed} of {} images printed in time", args.images).into());
        }
        // Long poll: the request waits at the gateway until a job is there.
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(1) // one printer, one job at a time
            .wait_time_seconds(20)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await?;
        let Some(job) = out.messages.unwrap_or_default().into_iter().next() else {
            continue; // 20 s without a job: just ask again
        };
        let event: serde_json::Value = serde_json::from_str(job.body().unwrap_or_default())?;
        let image = event["image"].as_str().unwrap_or("?").to_owned();
        let receives = job
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .map_or("?", String::as_str);
        println!("printer: received {image} (receive #{receives}), printing…");
        tokio::time::sleep(Duration::from_millis(args.print_ms)).await;

        if image == JAMS_ONCE && !jammed_once {
            // No delete: the job stays in the queue, hidden until the
            // visibility timeout runs out, then any poller gets it again.
            jammed_once = true;
            println!(
                "printer: paper jam on {image}! not deleting the job; it reappears in {} s",
                args.visibility
            );
            continue;
        }
        // Printed: now, and only now, the job is done.
        sqs.delete_message()
            .queue_url(queue_url)
            .receipt_handle(job.receipt_handle().unwrap_or_default())
            .send()
            .await?;
        printed += 1;
        println!("printer: printed {image}, job deleted");
    }
    Ok(printed)
}

/// Jobs still in the queue, waiting or in flight.
async fn jobs_left(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<u64, BoxError> {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await?
        .attributes
        .unwrap_or_default();
    Ok(attrs.values().filter_map(|v| v.parse::<u64>().ok()).sum())
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

/// The processing webhook: one HTTP request per connection, answered 200.
/// The body is the SNS envelope; the upload event is its `Message`.
async fn serve_webhook(listener: TcpListener, thumbnails: Arc<AtomicUsize>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let thumbnails = thumbnails.clone();
        tokio::spawn(async move {
            let body = match read_request(&mut stream).await {
                Ok(body) => body,
                Err(e) => return eprintln!("thumbnailer: bad request: {e}"),
            };
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
            let image = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|envelope| envelope["Message"].as_str().map(str::to_owned))
                .and_then(|message| serde_json::from_str::<serde_json::Value>(&message).ok())
                .and_then(|event| event["image"].as_str().map(str::to_owned));
            match image {
                Some(image) => {
                    println!("thumbnailer: made a thumbnail of {image}");
                    thumbnails.fetch_add(1, Ordering::Relaxed);
                }
                None => eprintln!("thumbnailer: not an upload notification: {body}"),
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
