//! The admin HTTP API (`/api/...`) against a real gateway, with real SQS,
//! AMQP and MQTT clients making the state it reports: the credential guard,
//! queue listings (depth, in flight, consumers, kinds), peek, purge, delete,
//! redrive, connections (list and close), sessions, exchanges and bindings.

use std::time::Duration;

use serde_json::{Value, json};
use tether_e2e::Gateway;
use tether_e2e::admin::{Admin, dead_letter_one, find, request};
use tether_e2e::amqp::{self, BasicQosOptions, FieldTable, queue_exists};
use tether_e2e::aws::{create_queue, receive, sqs, sqs_client};
use tether_e2e::mqtt::{v4, v5};

const WAIT: Duration = Duration::from_secs(5);

/// A gateway with `ops`/`secret` tagged administrator and `sensor`/`pw` not.
fn gateway_with_administrator() -> Gateway {
    let ops = amqp::hash_password("secret");
    let sensor = amqp::hash_password("pw");
    Gateway::builder()
        .config(&format!(
            "[[auth.users]]\nname = \"ops\"\npassword_hash = \"{ops}\"\ntags = [\"administrator\"]\n\n\
             [[auth.users]]\nname = \"sensor\"\npassword_hash = \"{sensor}\"\n"
        ))
        .start()
}

fn http(gw: &Gateway) -> std::net::SocketAddr {
    gw.http.expect("http listener")
}

async fn send(c: &sqs::Client, url: &str, body: &str) -> String {
    c.send_message()
        .queue_url(url)
        .message_body(body)
        .message_attributes("origin", tether_e2e::aws::sqs_string("test"))
        .send()
        .await
        .expect("SendMessage")
        .message_id
        .unwrap_or_default()
}

fn n(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v:#}"))
}

#[tokio::test]
async fn requests_without_or_with_a_wrong_credential_are_refused_with_401() {
    let gw = gateway_with_administrator();
    let addr = http(&gw);
    let none = request(addr, "GET", "/api/overview", None, &[], None).await;
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Basic realm=\"tether\"")
    );
    let body: Value = serde_json::from_str(&none.body).expect("JSON error body");
    assert_eq!(body["error"], "unauthorized");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));

    // The dashboard's fetch calls must not trigger the browser's dialog.
    let xhr = request(
        addr,
        "GET",
        "/api/queues",
        None,
        &[("X-Requested-With", "XMLHttpRequest")],
        None,
    )
    .await;
    assert_eq!(xhr.status, 401);
    assert_eq!(xhr.header("www-authenticate"), None);

    for (user, password, why) in [
        ("ops", "wrong", "wrong password"),
        ("sensor", "pw", "a user without the administrator tag"),
        ("guest", "guest", "guest once an administrator exists"),
        ("nobody", "x", "an unknown user"),
    ] {
        let r = Admin::as_user(addr, user, password)
            .send("GET", "/overview", None)
            .await;
        assert_eq!(r.status, 401, "{why}: {}", r.body);
    }
}

#[tokio::test]
async fn an_administrator_is_accepted_repeatedly() {
    let gw = gateway_with_administrator();
    let ops = Admin::as_user(http(&gw), "ops", "secret");
    for _ in 0..3 {
        let v = ops.get("/overview").await;
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    }
}

#[tokio::test]
async fn guest_is_accepted_from_loopback_while_no_administrator_is_configured() {
    let gw = Gateway::start();
    let v = Admin::guest(http(&gw)).get("/overview").await;
    assert!(v["uptime_seconds"].is_u64(), "{v}");
    let wrong = Admin::as_user(http(&gw), "guest", "nope")
        .send("GET", "/overview", None)
        .await;
    assert_eq!(wrong.status, 401);
}

#[tokio::test]
async fn unknown_endpoints_vhosts_and_queues_answer_404_in_json() {
    let gw = Gateway::start();
    let admin = Admin::guest(http(&gw));
    for path in ["/nothing-here", "/queues/%2F/missing", "/queues/nope/q"] {
        let v = admin.expect("GET", path, 404).await;
        assert_eq!(v["error"], "not_found", "{path}: {v}");
        assert!(v["message"].is_string(), "{path}: {v}");
    }
    let v = admin.expect("GET", "/queues?kind=sqs,bogus", 400).await;
    assert_eq!(v["error"], "bad_request");
    let v = admin.expect("DELETE", "/connections/amqp-12345", 404).await;
    assert_eq!(v["error"], "not_found");
    let v = admin.expect("POST", "/overview", 405).await;
    assert_eq!(v["error"], "method_not_allowed");
}

#[tokio::test]
async fn queues_report_depth_in_flight_and_consumers_of_sqs_and_amqp_queues() {
    let gw = Gateway::start();
    let admin = Admin::guest(http(&gw));
    let c = sqs_client(http(&gw));
    let orders = create_queue(&c, "orders", &[]).await;
    for body in ["a", "b", "c"] {
        send(&c, &orders, body).await;
    }
    assert_eq!(receive(&c, &orders, 1, 0).await.len(), 1);

    let (_conn, ch) = amqp::channel(gw.amqp.unwrap()).await;
    amqp::declare_queue(&ch, "jobs", FieldTable::default()).await;
    for i in 0..4 {
        amqp::publish(&ch, "", "jobs", format!("job {i}").as_bytes()).await;
    }
    ch.basic_qos(1, BasicQosOptions::default())
        .await
        .expect("basic.qos");
    let mut consumer = amqp::consume(&ch, "jobs", "worker", false).await;
    let held = amqp::next(&mut consumer, WAIT).await.expect("a delivery");

    let q = admin.queue("orders").await;
    assert_eq!(q["kind"], "sqs");
    assert_eq!((n(&q, "messages"), n(&q, "messages_in_flight")), (2, 1));
    assert_eq!(n(&q, "consumers"), 0);
    assert_eq!(q["stats"]["enqueued"], 3);
    assert_eq!(q["durable"], true);
    assert_eq!(q["fifo"], false);

    let jobs = admin
        .poll("/queues/%2F/jobs", WAIT, |q| {
            (n(q, "messages") == 3 && n(q, "messages_in_flight") == 1).then(|| q.clone())
        })
        .await;
    assert_eq!(jobs["kind"], "amqp");
    assert_eq!(n(&jobs, "consumers"), 1);

    let all = admin.get("/queues").await;
    assert!(find(&all, "name", "orders").is_some() && find(&all, "name", "jobs").is_some());
    let only_amqp = admin.get("/queues?kind=amqp").await;
    assert!(find(&only_amqp, "name", "jobs").is_some());
    assert!(find(&only_amqp, "name", "orders").is_none());
    for q in only_amqp.as_array().unwrap() {
        assert_eq!(q["kind"], "amqp", "{q}");
    }

    held.ack(amqp::BasicAckOptions::default())
        .await
        .expect("ack");
    let jobs = admin
        .poll("/queues/%2F/jobs", WAIT, |q| {
            (q["stats"]["acked"] == 1).then(|| q.clone())
        })
        .await;
    assert_eq!(n(&jobs, "messages") + n(&jobs, "messages_in_flight"), 3);
}

#[tokio::test]
async fn peek_shows_ready_messages_without_receiving_them() {
    let gw = Gateway::start();
    let admin = Admin::guest(http(&gw));
    let c = sqs_client(http(&gw));
    let url = create_queue(&c, "peeky", &[]).await;
    let first = send(&c, &url, "first").await;
    send(&c, &url, "second").await;

    for _ in 0..2 {
        let seen = admin.get("/queues/%2F/peeky/peek?count=10").await;
        let seen = seen.as_array().expect("an array");
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0]["message_id"], first.as_str());
        assert_eq!(seen[0]["body"], "first");
        assert_eq!(seen[0]["body_encoding"], "utf8");
        assert_eq!(seen[0]["receive_count"], 0);
        assert_eq!(seen[0]["attributes"]["origin"], "test");
        assert!(
            seen[0]["enqueued_at"]
                .as_u64()
                .is_some_and(|t| t > 1_600_000_000)
        );
        assert_eq!(seen[1]["body"], "second");
    }
    let one = admin.get("/queues/%2F/peeky/peek?count=1").await;
    assert_eq!(one.as_array().map(Vec::len), Some(1));
    for bad in ["0", "101", "ten", "-1"] {
        let v = admin
            .expect("GET", &format!("/queues/%2F/peeky/peek?count={bad}"), 400)
            .await;
        assert_eq!(v["error"], "bad_request", "count={bad}");
    }

    // Peeking changed nothing: the first receive is the first receive.
    let got = receive(&c, &url, 1, 0).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id.as_deref(), Some(first.as_str()));
    let count = got[0]
        .attributes
        .as_ref()
        .and_then(|a| a.get(&sqs::types::MessageSystemAttributeName::ApproximateReceiveCount))
        .cloned();
    assert_eq!(count.as_deref(), Some("1"));
    let q = admin.queue("peeky").await;
    assert_eq!((n(&q, "messages"), n(&q, "messages_in_flight")), (1, 1));

    // A body that is not UTF-8 comes back as base64.
    let (_conn, ch) = amqp::channel(gw.amqp.unwrap()).await;
    amqp::declare_queue(&ch, "raw", FieldTable::default()).await;
    amqp::publish(&ch, "", "raw", &[0xff, 0x00, 0xfe]).await;
    let raw = admin
        .poll("/queues/%2F/raw/peek", WAIT, |v| {
            v.as_array().and_then(|a| a.first()).cloned()
        })
        .await;
    assert_eq!(raw["body_encoding"], "base64");
    assert_eq!(raw["body"], "/wD+");
}

#[tokio::test]
async fn purge_empties_a_queue_and_delete_removes_it() {
    let gw = Gateway::start();
    let admin = Admin::guest(http(&gw));
    let c = sqs_client(http(&gw));
    let url = create_queue(&c, "scratch", &[]).await;
    for body in ["1", "2", "3"] {
        send(&c, &url, body).await;
    }
    let v = admin.expect("POST", "/queues/%2F/scratch/purge", 200).await;
    assert_eq!(v, json!({"purged": 3}));
    assert_eq!(n(&admin.queue("scratch").await, "messages"), 0);
    assert!(receive(&c, &url, 10, 0).await.is_empty());

    admin.expect("DELETE", "/queues/%2F/scratch", 204).await;
    admin.expect("GET", "/queues/%2F/scratch", 404).await;
    let gone = c.get_queue_url().queue_name("scratch").send().await;
    assert!(gone.is_err(), "SQS still knows the deleted queue");

    let conn = amqp::connect(gw.amqp.unwrap()).await;
    let ch = conn.create_channel().await.expect("channel");
    amqp::declare_queue(&ch, "amqp-scratch", FieldTable::default()).await;
    admin
        .expect("DELETE", "/queues/%2F/amqp-scratch", 204)
        .await;
    assert!(!queue_exists(&conn, "amqp-scratch").await);
}

#[tokio::test]
async fn redrive_moves_dead_letters_back_to_their_source_queue() {
    let gw = Gateway::start();
    let admin = Admin::guest(http(&gw));
    let c = sqs_client(http(&gw));
    let (src, _dlq) = dead_letter_one(&c, "orders", "orders-dlq", "poison").await;

    let dlq = admin.queue("orders-dlq").await;
    assert_eq!(n(&dlq, "messages"), 1);
    assert_eq!(dlq["dead_letter_sources"], json!(["orders"]));
    let orders = admin.queue("orders").await;
    assert_eq!(orders["dead_letter_target"], "orders-dlq");
    assert_eq!(orders["max_receive_count"], 1);
    assert_eq!(n(&orders, "messages"), 0);

    let v = admin
        .expect("POST", "/queues/%2F/orders/redrive", 400)
        .await;
    assert_eq!(v["error"], "bad_request", "orders is no dead-letter queue");

    let v = admin
        .expect("POST", "/queues/%2F/orders-dlq/redrive", 200)
        .await;
    assert_eq!(v["moved"], 1, "{v}");
    assert_eq!(n(&admin.queue("orders-dlq").await, "messages"), 0);
    assert_eq!(n(&admin.queue("orders").await, "messages"), 1);
    let back = receive(&c, &src, 1, 0).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body.as_deref(), Some("poison"));
}

#[tokio::test]
async fn connections_list_both_protocols_and_closing_one_leaves_the_other() {
    let gw = Gateway::start();
    let admin = Admin::guest(http(&gw));
    let (mut device, _) = v5::Client::connect(v5::options(gw.mqtt_addr(), "device-1")).await;
    let conn = amqp::connect(gw.amqp.unwrap()).await;
    let mut events = conn.events_listener();

    let list = admin
        .poll("/connections", WAIT, |v| {
            (v.as_array().map(Vec::len) == Some(2)).then(|| v.clone())
        })
        .await;
    let mqtt = find(&list, "protocol", "mqtt")
        .expect("the MQTT client")
        .clone();
    let amqp_c = find(&list, "protocol", "amqp")
        .expect("the AMQP client")
        .clone();
    assert_eq!(mqtt["client_id"], "device-1");
    assert_eq!(mqtt["vhost"], "/");
    assert!(mqtt["user"].is_null());
    assert_eq!(amqp_c["vhost"], "/");
    for c in [&mqtt, &amqp_c] {
        assert!(
            c["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:")),
            "{c}"
        );
        assert!(
            c["connected_at"]
                .as_u64()
                .is_some_and(|t| t > 1_600_000_000),
            "{c}"
        );
    }
    let overview = admin.get("/overview").await;
    assert_eq!(overview["connections"], json!({"mqtt": 1, "amqp": 1}));

    let mqtt_id = mqtt["id"].as_str().unwrap();
    admin
        .expect("DELETE", &format!("/connections/{mqtt_id}"), 204)
        .await;
    let d = device
        .server_disconnect(WAIT)
        .await
        .expect("the MQTT client is told why");
    assert_eq!(
        d.reason_code,
        v5::DisconnectReasonCode::AdministrativeAction
    );
    let left = admin
        .poll("/connections", WAIT, |v| {
            (v.as_array().map(Vec::len) == Some(1)).then(|| v.clone())
        })
        .await;
    assert_eq!(left[0]["protocol"], "amqp");
    assert!(conn.status().connected(), "the AMQP client was left alone");
    admin
        .expect("DELETE", &format!("/connections/{mqtt_id}"), 404)
        .await;

    let amqp_id = amqp_c["id"].as_str().unwrap();
    admin
        .expect("DELETE", &format!("/connections/{amqp_id}"), 204)
        .await;
    let code = tokio::time::timeout(WAIT, async {
        use futures_lite::StreamExt;
        while let Some(ev) = events.next().await {
            if let lapin::Event::Error(e) = ev {
                return amqp::reply_code(&e);
            }
        }
        None
    })
    .await
    .expect("the AMQP client sees the close");
    assert_eq!(code, Some(320), "CONNECTION_FORCED");
    admin
        .poll("/connections", WAIT, |v| {
            (v.as_array().map(Vec::len) == Some(0)).then_some(())
        })
        .await;
}

#[tokio::test]
async fn sessions_list_a_persistent_session_with_its_subscription() {
    let gw = Gateway::start();
    let admin = Admin::guest(http(&gw));
    let mut opts = v4::options(gw.mqtt_addr(), "keeper");
    opts.set_clean_session(false);
    let mut keeper = v4::Client::connect(opts).await;
    keeper
        .subscribe("sensors/+/temp", v4::QoS::AtLeastOnce)
        .await;

    let expect_subscription = |s: &Value| {
        assert_eq!(
            s["subscriptions"],
            json!([{"filter": "sensors/+/temp", "qos": 1}]),
            "{s}"
        );
        assert!(
            n(s, "expiry_seconds") > 0,
            "a persistent session expires later: {s}"
        );
    };
    let sessions = admin.get("/sessions").await;
    let s = find(&sessions, "client_id", "keeper").expect("the session");
    assert_eq!(s["connected"], true);
    expect_subscription(s);

    keeper.disconnect().await;
    let s = admin
        .poll("/sessions", WAIT, |v| {
            find(v, "client_id", "keeper")
                .filter(|s| s["connected"] == false)
                .cloned()
        })
        .await;
    expect_subscription(&s);

    let mut publisher = v4::Client::connect(v4::options(gw.mqtt_addr(), "pub")).await;
    publisher.publish_acked("sensors/a/temp", "21.5").await;
    let s = admin
        .poll("/sessions", WAIT, |v| {
            find(v, "client_id", "keeper")
                .filter(|s| s["messages"] == 1)
                .cloned()
        })
        .await;
    assert_eq!(s["messages_in_flight"], 0);
    let queues = admin.get("/queues?kind=mqtt").await;
    let q = find(&queues, "name", "mqtt-session:keeper").expect("the session queue");
    assert_eq!(q["messages"], 1);
}

#[tokio::test]
async fn exchanges_and_bindings_show_what_an_amqp_client_declared() {
    let gw = Gateway::start();
    let admin = Admin::guest(http(&gw));
    let (_conn, ch) = amqp::channel(gw.amqp.unwrap()).await;
    amqp::declare_exchange(&ch, "events", amqp::ExchangeKind::Topic).await;
    amqp::declare_queue(&ch, "audit", FieldTable::default()).await;
    let args = amqp::table(&[("x-note", amqp::long_str("kept"))]);
    amqp::bind(&ch, "audit", "events", "order.*", args).await;

    let exchanges = admin.get("/exchanges").await;
    let ex = find(&exchanges, "name", "events").expect("the exchange");
    assert_eq!(ex["vhost"], "/");
    assert_eq!(ex["type"], "topic");
    for key in ["durable", "auto_delete", "internal"] {
        assert!(ex[key].is_boolean(), "{key}: {ex}");
    }
    assert!(find(&exchanges, "name", "amq.topic").is_some());

    let bindings = admin.get("/bindings").await;
    let b = bindings
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["source"] == "events")
        .expect("the binding");
    assert_eq!(
        *b,
        json!({
            "vhost": "/",
            "source": "events",
            "destination": "audit",
            "destination_type": "queue",
            "routing_key": "order.*",
            "arguments": {"x-note": "kept"},
        })
    );
}

#[tokio::test]
async fn overview_sums_queue_totals() {
    let gw = Gateway::start();
    let admin = Admin::guest(http(&gw));
    let c = sqs_client(http(&gw));
    let a = create_queue(&c, "tally-a", &[]).await;
    let b = create_queue(&c, "tally-b", &[]).await;
    send(&c, &a, "1").await;
    send(&c, &b, "2").await;
    send(&c, &b, "3").await;
    assert_eq!(receive(&c, &b, 1, 0).await.len(), 1);
    let v = admin.get("/overview").await;
    assert_eq!(n(&v, "queues"), 2);
    assert_eq!(n(&v, "messages_ready"), 2);
    assert_eq!(n(&v, "messages_in_flight"), 1);
    assert_eq!(n(&v, "enqueued_total"), 3);
    assert_eq!(n(&v, "delivered_total"), 1);
    assert_eq!(n(&v, "dead_lettered_total"), 0);
}
