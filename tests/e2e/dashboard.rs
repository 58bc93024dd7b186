//! The built-in web dashboard, in a real headless Chromium (see
//! `tether_e2e::browser`) against a real gateway: sign-in, the queue table
//! with the depths SQS clients produced, the live charts, and redriving a
//! dead-letter queue. Also the raw HTTP rule that keeps `/` shared with the
//! SQS/SNS query protocol.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tether_e2e::aws::sqs::types::QueueAttributeName as Attr;
use tether_e2e::aws::{create_queue, message_counts, receive, sqs, sqs_client};
use tether_e2e::browser::Browser;
use tether_e2e::mqtt::v4;
use tether_e2e::{Gateway, amqp};

const ADMIN: &str = "ops";
const ADMIN_PASSWORD: &str = "correct horse battery";

/// A gateway with one administrator user.
fn gateway() -> Gateway {
    let hash = amqp::hash_password(ADMIN_PASSWORD);
    Gateway::builder()
        .config(&format!(
            "[[auth.users]]\nname = \"{ADMIN}\"\npassword_hash = \"{hash}\"\ntags = [\"administrator\"]\n"
        ))
        .start()
}

/// A plain HTTP/1.1 request; returns the status, the headers (lower-case
/// names) and the body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !body.is_empty() {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("response within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn root_serves_the_dashboard_only_to_gets_without_an_action() {
    let gw = Gateway::start();
    let addr = gw.http.expect("http listener");

    let (status, head, body) = http(addr, "GET", "/", "").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains("content-security-policy:"), "{head}");
    assert!(body.contains("<title>Tether dashboard</title>"));
    let (status, head, body) = http(addr, "GET", "/dashboard/dashboard.js", "").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/javascript"), "{head}");
    assert!(body.contains("/api/overview"));
    let (status, _, _) = http(addr, "GET", "/dashboard/nothing-here.js", "").await;
    assert_eq!(status, 404);

    // The query protocol still owns `/`: a GET with Action, and any POST.
    let (status, _, body) = http(addr, "GET", "/?Action=ListQueues", "").await;
    assert_eq!(status, 200);
    assert!(body.contains("<ListQueuesResponse"), "{body}");
    let (status, _, body) = http(addr, "POST", "/", "Action=CreateQueue&QueueName=q1").await;
    assert_eq!(status, 200);
    assert!(body.contains("<CreateQueueResponse"), "{body}");
    let (status, _, body) = http(addr, "POST", "/", "").await;
    assert_eq!(status, 400);
    assert!(body.contains("MissingAction"), "{body}");
}

#[tokio::test]
async fn dashboard_can_be_switched_off() {
    let gw = Gateway::builder()
        .env("TETHER_HTTP__DASHBOARD", "false")
        .start();
    let addr = gw.http.expect("http listener");
    let (status, _, body) = http(addr, "GET", "/", "").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("MissingAction"), "{body}");
    let (status, _, _) = http(addr, "GET", "/dashboard/dashboard.js", "").await;
    assert_ne!(status, 200);
}

/// Creates `dlq` and `src` (dead-lettering into it after one receive) and
/// gets `body` dead-lettered: received once, released, received again.
async fn dead_letter_one(c: &sqs::Client, src: &str, dlq: &str, body: &str) -> (String, String) {
    let dlq_url = create_queue(c, dlq, &[]).await;
    let arn = c
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(Attr::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes
        .and_then(|a| a.get(&Attr::QueueArn).cloned())
        .expect("QueueArn");
    let policy = json!({"deadLetterTargetArn": arn, "maxReceiveCount": 1}).to_string();
    let src_url = create_queue(c, src, &[("RedrivePolicy", &policy)]).await;
    c.send_message()
        .queue_url(&src_url)
        .message_body(body)
        .send()
        .await
        .expect("SendMessage");
    let got = receive(c, &src_url, 1, 2).await;
    assert_eq!(got.len(), 1, "first receive");
    c.change_message_visibility()
        .queue_url(&src_url)
        .receipt_handle(got[0].receipt_handle.clone().expect("receipt handle"))
        .visibility_timeout(0)
        .send()
        .await
        .expect("ChangeMessageVisibility");
    assert!(
        receive(c, &src_url, 1, 0).await.is_empty(),
        "a second receive moves the message to {dlq}"
    );
    assert_eq!(message_counts(c, &dlq_url).await.0, 1, "{dlq} holds it");
    (src_url, dlq_url)
}

/// Signs in through the page's form.
async fn sign_in(b: &Browser, user: &str, password: &str) {
    let form = b.visible("#login").await;
    let _ = form;
    b.eval_with(
        "document.getElementById('username').value = arguments[0];\
         document.getElementById('password').value = arguments[1];",
        vec![json!(user), json!(password)],
    )
    .await;
    b.visible("#login-submit")
        .await
        .click()
        .await
        .expect("click Sign in");
}

/// The text of one cell of a queue's row.
fn cell(queue: &str, col: &str) -> String {
    format!("#queues tr[data-queue=\"{queue}\"] td[data-col=\"{col}\"]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_queue_depths_and_redrives_a_dead_letter_queue() {
    let gw = gateway();
    let http_addr = gw.http.expect("http listener");
    let c = sqs_client(http_addr);
    let (src_url, dlq_url) = dead_letter_one(&c, "orders", "orders-dlq", "order-42").await;
    let other = create_queue(&c, "telemetry", &[]).await;
    for i in 0..3 {
        c.send_message()
            .queue_url(&other)
            .message_body(format!("reading {i}"))
            .send()
            .await
            .expect("SendMessage");
    }
    let mqtt = v4::Client::connect(v4::options(gw.mqtt_addr(), "dash-sensor")).await;

    let b = Browser::start().await;
    b.client
        .goto(&format!("http://{http_addr}/"))
        .await
        .expect("open the dashboard");

    // A refused credential says so, and the form stays.
    sign_in(&b, ADMIN, "wrong password").await;
    b.wait_text("#login-error", "the refusal", |t| t.contains("refused"))
        .await;
    assert!(b.visible("#login").await.is_displayed().await.unwrap());

    sign_in(&b, ADMIN, ADMIN_PASSWORD).await;
    b.visible("#queues").await;

    // The rows carry what the SQS clients did.
    b.wait_text(&cell("orders-dlq", "ready"), "1 ready in the DLQ", |t| {
        t == "1"
    })
    .await;
    b.wait_text(&cell("telemetry", "ready"), "3 ready", |t| t == "3")
        .await;
    assert_eq!(b.text(&cell("orders", "ready")).await.as_deref(), Some("0"));
    assert_eq!(
        b.text(&cell("orders", "dead_lettered")).await.as_deref(),
        Some("1")
    );
    let target = b.text(&cell("orders", "target")).await.unwrap_or_default();
    assert!(target.starts_with("orders-dlq"), "{target}");
    assert_eq!(
        b.text(&cell("orders", "kind")).await.as_deref(),
        Some("sqs")
    );
    let dlq_name = b
        .text(&cell("orders-dlq", "name"))
        .await
        .unwrap_or_default();
    assert!(dlq_name.contains("DLQ"), "the DLQ is marked: {dlq_name}");
    assert!(
        b.text("#queues tr[data-queue=\"orders\"] button.redrive")
            .await
            .is_none(),
        "only dead-letter queues get a Redrive button"
    );

    // Sorting by depth puts the deepest queue first.
    b.visible("#queues th[data-sort=\"ready\"]")
        .await
        .click()
        .await
        .expect("sort by Ready");
    b.wait_text(
        "#queues tbody tr:first-child td[data-col=\"name\"]",
        "telemetry first",
        |t| t == "telemetry",
    )
    .await;

    // Tiles and the connections chart: the MQTT client is counted and drawn
    // (pixels of its line's green, anti-aliased or not, appear on the canvas
    // once two polls are in; the grid is grey and the AMQP line amber).
    b.wait_text("#t-mqtt", "1 MQTT connection", |t| t == "1")
        .await;
    let drawn = "const c = document.getElementById('chart-connections');\
                 const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;\
                 let n = 0;\
                 for (let i = 0; i < d.length; i += 4) \
                   if (d[i + 3] > 128 && d[i + 1] - d[i] > 40 && d[i + 1] > d[i + 2]) n++;\
                 return n;";
    let deadline = std::time::Instant::now() + tether_e2e::browser::WAIT;
    loop {
        let n = b.eval(drawn).await.as_u64().unwrap_or(0);
        if n > 20 {
            break;
        }
        if std::time::Instant::now() >= deadline {
            let _ = std::fs::write("/tmp/dashboard-chart-failure.png", b.screenshot().await);
            panic!(
                "the connections chart never drew the MQTT line ({n} pixels; screenshot in /tmp/dashboard-chart-failure.png)"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Redrive: the button asks first, then reports what moved.
    b.visible("#queues tr[data-queue=\"orders-dlq\"] button.redrive")
        .await
        .click()
        .await
        .expect("click Redrive");
    let question = b
        .wait_text("#confirm-text", "the confirmation", |t| !t.is_empty())
        .await;
    assert!(question.contains("orders"), "{question}");
    b.visible("#confirm-ok")
        .await
        .click()
        .await
        .expect("confirm");
    b.wait_text("#toasts", "the moved count", |t| {
        t.contains("Moved 1 message from orders-dlq back to orders")
    })
    .await;
    b.wait_text(
        &cell("orders", "ready"),
        "the message back in orders",
        |t| t == "1",
    )
    .await;
    b.wait_text(&cell("orders-dlq", "ready"), "an empty DLQ", |t| t == "0")
        .await;

    // And the SQS API agrees.
    assert_eq!(message_counts(&c, &dlq_url).await.0, 0);
    let back = receive(&c, &src_url, 1, 2).await;
    assert_eq!(back.len(), 1, "the redriven message is receivable");
    assert_eq!(back[0].body.as_deref(), Some("order-42"));

    // Signing out forgets the credential.
    b.visible("#logout").await.click().await.expect("sign out");
    b.visible("#login").await;
    let kept = b
        .eval("return sessionStorage.getItem('tether.dashboard.auth');")
        .await;
    assert!(kept.is_null(), "credential kept after sign-out: {kept}");
    b.quit().await;
    drop(mqtt);
}

/// How long the screenshot scenario runs traffic before the picture, so both
/// charts have a minute of history.
const SCREENSHOT_TRAFFIC: Duration = Duration::from_secs(64);

/// Produces `docs/dashboard.png` (or `$DASHBOARD_SCREENSHOT`): a gateway with
/// a little realistic traffic — SQS queues with a dead-letter queue holding
/// failed orders, an AMQP work queue with a consumer, MQTT sensors publishing
/// and a persistent MQTT session — photographed at 1280x800 after a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/dashboard.png; run by scripts/dashboard-screenshot"]
async fn dashboard_screenshot() {
    use futures_lite::StreamExt;

    let out = std::env::var("DASHBOARD_SCREENSHOT")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/dashboard.png").into());
    let gw = gateway();
    let http_addr = gw.http.expect("http listener");
    let c = sqs_client(http_addr);

    // SQS: orders dead-letter into orders-dlq after three receives; three
    // have failed for good.
    let dlq = create_queue(&c, "orders-dlq", &[]).await;
    let policy = json!({
        "deadLetterTargetArn": tether_e2e::aws::queue_arn("orders-dlq"),
        "maxReceiveCount": 3,
    })
    .to_string();
    let orders = create_queue(&c, "orders", &[("RedrivePolicy", &policy)]).await;
    for i in 0..3 {
        c.send_message()
            .queue_url(&orders)
            .message_body(format!("{{\"order\":{}}}", 9000 + i))
            .send()
            .await
            .expect("SendMessage");
    }
    for _ in 0..4 {
        for m in receive(&c, &orders, 10, 1).await {
            c.change_message_visibility()
                .queue_url(&orders)
                .receipt_handle(m.receipt_handle.unwrap_or_default())
                .visibility_timeout(0)
                .send()
                .await
                .expect("ChangeMessageVisibility");
        }
    }
    assert_eq!(message_counts(&c, &dlq).await.0, 3, "three orders failed");
    let billing = create_queue(&c, "billing-events", &[]).await;
    let fifo = create_queue(
        &c,
        "notifications.fifo",
        &[("FifoQueue", "true"), ("ContentBasedDeduplication", "true")],
    )
    .await;
    for i in 0..7 {
        c.send_message()
            .queue_url(&fifo)
            .message_body(format!("notification {i}"))
            .message_group_id(format!("user-{}", i % 3))
            .send()
            .await
            .expect("SendMessage");
    }
    let thumbs = create_queue(&c, "thumbnails", &[]).await;
    for i in 0..4 {
        c.send_message()
            .queue_url(&thumbs)
            .message_body(format!("image {i}"))
            .delay_seconds(if i < 2 { 600 } else { 0 })
            .send()
            .await
            .expect("SendMessage");
    }

    // AMQP: a work queue with a consumer, and an audit queue nobody reads.
    let amqp_addr = gw.amqp.expect("amqp listener");
    let (amqp_conn, ch) = amqp::channel(amqp_addr).await;
    for q in ["work", "audit-log"] {
        ch.queue_declare(
            q.into(),
            amqp::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            amqp::FieldTable::default(),
        )
        .await
        .expect("queue.declare");
    }
    let (worker_conn, worker) = amqp::channel(amqp_addr).await;
    worker
        .basic_qos(20, amqp::BasicQosOptions::default())
        .await
        .expect("basic.qos");
    let mut deliveries = worker
        .basic_consume(
            "work".into(),
            "worker-1".into(),
            amqp::BasicConsumeOptions::default(),
            amqp::FieldTable::default(),
        )
        .await
        .expect("basic.consume");
    tokio::spawn(async move {
        while let Some(Ok(d)) = deliveries.next().await {
            tokio::time::sleep(Duration::from_millis(15)).await;
            let _ = d.ack(amqp::BasicAckOptions::default()).await;
        }
    });

    // MQTT: a persistent ingest session reading every sensor.
    let mqtt_addr = gw.mqtt_addr();
    let mut opts = v4::options(mqtt_addr, "ingest");
    opts.set_clean_session(false);
    let mut ingest = v4::Client::connect(opts).await;
    ingest.subscribe("sensors/#", v4::QoS::AtLeastOnce).await;
    tokio::spawn(async move { while ingest.events.recv().await.is_some() {} });

    // The page, open from the start so the charts have the whole story.
    let b = Browser::start().await;
    b.client
        .goto(&format!("http://{http_addr}/"))
        .await
        .expect("open the dashboard");
    sign_in(&b, ADMIN, ADMIN_PASSWORD).await;
    b.wait_text(&cell("orders-dlq", "ready"), "3", |t| t == "3")
        .await;

    // A minute of traffic whose pace rises and falls; sensors come online
    // one by one.
    let started = std::time::Instant::now();
    let mut sensors: Vec<v4::Client> = Vec::new();
    let mut tick = 0u64;
    while started.elapsed() < SCREENSHOT_TRAFFIC {
        let secs = started.elapsed().as_secs_f64();
        if sensors.len() < 8 && secs > sensors.len() as f64 * 5.0 {
            let id = format!("sensor-{:02}", sensors.len() + 1);
            let mut s = v4::Client::connect(v4::options(mqtt_addr, &id)).await;
            let mut events =
                std::mem::replace(&mut s.events, tokio::sync::mpsc::unbounded_channel().1);
            tokio::spawn(async move { while events.recv().await.is_some() {} });
            sensors.push(s);
        }
        let pace = 1.0 + (secs / 9.0).sin() * 0.6;
        for (i, s) in sensors.iter().enumerate() {
            if (tick + i as u64).is_multiple_of(2) || pace > 1.2 {
                let payload = format!(
                    "{{\"temperature\":{:.1}}}",
                    20.0 + (secs + i as f64).sin() * 3.0
                );
                s.publish(
                    &format!("sensors/{i}/telemetry"),
                    v4::QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .await;
            }
        }
        for _ in 0..(pace * 3.0) as usize {
            ch.basic_publish(
                "".into(),
                "work".into(),
                amqp::BasicPublishOptions::default(),
                b"resize 640x480",
                amqp::BasicProperties::default(),
            )
            .await
            .expect("basic.publish");
        }
        if tick.is_multiple_of(5) {
            ch.basic_publish(
                "".into(),
                "audit-log".into(),
                amqp::BasicPublishOptions::default(),
                b"{\"event\":\"login\"}",
                amqp::BasicProperties::default(),
            )
            .await
            .expect("basic.publish");
            c.send_message()
                .queue_url(&billing)
                .message_body(format!("{{\"invoice\":{tick}}}"))
                .send()
                .await
                .expect("SendMessage");
        }
        if tick.is_multiple_of(25) {
            // A billing worker holds a few messages in flight.
            let _ = c
                .receive_message()
                .queue_url(&billing)
                .max_number_of_messages(2)
                .visibility_timeout(600)
                .send()
                .await;
        }
        tick += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.wait_text("#t-mqtt", "the sensors and the ingest session", |t| {
        t == "9"
    })
    .await;
    // Park the pointer on the title so no table row shows its hover colour.
    b.visible(".brand")
        .await
        .click()
        .await
        .expect("move the pointer");
    let png = b.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(&out, &png).unwrap_or_else(|e| panic!("write {out}: {e}"));
    eprintln!("wrote {out} ({} bytes)", png.len());
    b.quit().await;
    drop((amqp_conn, worker_conn, sensors));
}
