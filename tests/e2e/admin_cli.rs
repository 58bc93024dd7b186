//! `tether admin ...` (the built binary) against a real gateway: tables and
//! `--json` output, the commands that change things, and the one-line errors
//! for an unreachable gateway, a refused credential and a missing queue.

use std::time::Duration;

use serde_json::Value;
use tether_e2e::Gateway;
use tether_e2e::admin::{CliRun, cli, dead_letter_one, find, url};
use tether_e2e::amqp;
use tether_e2e::aws::{create_queue, receive, sqs, sqs_client};

const WAIT: Duration = Duration::from_secs(5);

fn http(gw: &Gateway) -> std::net::SocketAddr {
    gw.http.expect("http listener")
}

/// `tether admin ARGS --url URL` with the default (guest) credential.
async fn admin(gw: &Gateway, args: &[&str]) -> CliRun {
    let u = url(http(gw));
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--url", u.as_str()]);
    cli(&all, &[], "").await
}

async fn send(c: &sqs::Client, queue_url: &str, body: &str) {
    c.send_message()
        .queue_url(queue_url)
        .message_body(body)
        .send()
        .await
        .expect("SendMessage");
}

/// The table row whose cells include `name`, split into cells.
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.contains(&name))
        .unwrap_or_else(|| panic!("no row for {name} in:\n{table}"))
}

/// Asserts a failed run printed exactly one line on standard error
/// containing `needle`, and nothing on standard output.
fn one_line_error(run: &CliRun, needle: &str) {
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.starts_with("tether: "), "{run:?}");
    assert!(
        run.stderr.contains(needle),
        "expected {needle:?} in {run:?}"
    );
}

#[tokio::test]
async fn queues_prints_an_aligned_table_and_json_that_parses() {
    let gw = Gateway::start();
    let c = sqs_client(http(&gw));
    let q = create_queue(&c, "orders", &[]).await;
    send(&c, &q, "one").await;
    send(&c, &q, "two").await;

    let run = admin(&gw, &["queues"]).await.ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "a heading and one queue:\n{}", run.stdout);
    assert!(lines[0].starts_with("VHOST"), "{}", run.stdout);
    assert_eq!(
        row(&run.stdout, "orders")[..4],
        ["/", "orders", "sqs", "2"],
        "{}",
        run.stdout
    );
    // Right-aligned counts end under their heading.
    let end = lines[0].find("READY").unwrap() + "READY".len();
    assert_eq!(&lines[1][end - 1..end], "2", "{}", run.stdout);

    let run = cli(&["--json", "queues", "--url", &url(http(&gw))], &[], "")
        .await
        .ok();
    let v = run.json();
    let orders = find(&v, "name", "orders").expect("orders in the JSON");
    assert_eq!(orders["messages"], 2);
    assert_eq!(orders["kind"], "sqs");

    let run = admin(&gw, &["overview"]).await.ok();
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("queues") && l.ends_with(" 1")),
        "{}",
        run.stdout
    );
    let run = admin(&gw, &["overview", "--json"]).await.ok();
    assert_eq!(run.json()["messages_ready"], 2);
}

#[tokio::test]
async fn peek_purge_and_delete_queue_act_on_the_named_queue() {
    let gw = Gateway::start();
    let c = sqs_client(http(&gw));
    let q = create_queue(&c, "work", &[]).await;
    send(&c, &q, "hello\nworld").await;
    send(&c, &q, "second").await;

    let run = admin(&gw, &["peek", "work", "--count", "1"]).await.ok();
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);
    assert!(run.stdout.contains("hello\\nworld"), "{}", run.stdout);
    let run = admin(&gw, &["peek", "work", "--json"]).await.ok();
    let peeked = run.json();
    assert_eq!(peeked.as_array().map(Vec::len), Some(2));
    assert_eq!(peeked[1]["body"], "second");

    let run = admin(&gw, &["queue", "work"]).await.ok();
    assert!(
        run.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["ready", "2"]),
        "{}",
        run.stdout
    );

    let run = admin(&gw, &["purge", "work"]).await.ok();
    assert_eq!(
        run.stdout,
        "purged 2 messages from queue 'work' (vhost '/')\n"
    );
    assert!(receive(&c, &q, 10, 0).await.is_empty());

    let run = admin(&gw, &["delete-queue", "work", "--vhost", "/"])
        .await
        .ok();
    assert_eq!(run.stdout, "deleted queue 'work' (vhost '/')\n");
    let run = admin(&gw, &["queue", "work"]).await;
    one_line_error(&run, "No queue 'work' in vhost '/'");
    let run = admin(&gw, &["purge", "work", "--vhost", "elsewhere"]).await;
    one_line_error(&run, "No vhost 'elsewhere'");
}

#[tokio::test]
async fn redrive_moves_dead_letters_back_to_their_source_queue() {
    let gw = Gateway::start();
    let c = sqs_client(http(&gw));
    let (src, _) = dead_letter_one(&c, "payments", "payments-dlq", "poison").await;

    let run = admin(&gw, &["queues"]).await.ok();
    assert_eq!(
        row(&run.stdout, "payments").last().copied(),
        Some("payments-dlq"),
        "{}",
        run.stdout
    );
    let run = admin(&gw, &["redrive", "payments"]).await;
    one_line_error(&run, "not a dead-letter queue");
    let run = admin(&gw, &["redrive", "payments-dlq"]).await.ok();
    assert_eq!(
        run.stdout,
        "moved 1 message from 'payments-dlq' back to its source queue\n"
    );
    let back = receive(&c, &src, 1, 0).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body.as_deref(), Some("poison"));
}

#[tokio::test]
async fn connections_lists_clients_and_close_connection_disconnects_one() {
    let gw = Gateway::start();
    let conn = amqp::connect(gw.amqp.unwrap()).await;
    let mut events = conn.events_listener();

    let run = admin(&gw, &["connections"]).await.ok();
    let cells = row(&run.stdout, "amqp");
    assert!(cells[0].starts_with("amqp-"), "{}", run.stdout);
    let run = admin(&gw, &["connections", "--json"]).await.ok();
    let list = run.json();
    let id = list[0]["id"].as_str().expect("an id").to_owned();
    assert_eq!(cells[0], id);

    let run = admin(&gw, &["close-connection", &id]).await.ok();
    assert_eq!(run.stdout, format!("closed connection {id}\n"));
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
    .expect("the client sees the close");
    assert_eq!(code, Some(320));
    let run = admin(&gw, &["close-connection", &id]).await;
    one_line_error(&run, &format!("No live connection has id '{id}'"));
}

#[tokio::test]
async fn errors_name_the_unreachable_url_or_the_refused_credential() {
    // A port nothing listens on: bound, then released.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let run = cli(&["queues", "--url", &dead], &[], "").await;
    one_line_error(&run, &format!("cannot reach the admin API at {dead}"));

    let gw = Gateway::start();
    let run = admin(&gw, &["overview", "--password", "wrong"]).await;
    one_line_error(&run, "refused the credential of user 'guest'");

    let run = cli(&["queues", "--url", "ftp://x"], &[], "").await;
    one_line_error(&run, "invalid admin URL");
}

#[tokio::test]
async fn credentials_and_url_come_from_the_environment() {
    let hash = amqp::hash_password("secret");
    let gw = Gateway::builder()
        .config(&format!(
            "[[auth.users]]\nname = \"ops\"\npassword_hash = \"{hash}\"\ntags = [\"administrator\"]\n"
        ))
        .start();
    let u = url(http(&gw));
    let env = [
        ("TETHER_ADMIN_URL", u.as_str()),
        ("TETHER_ADMIN_USER", "ops"),
        ("TETHER_ADMIN_PASSWORD", "secret"),
    ];
    let run = cli(&["overview", "--json"], &env, "").await.ok();
    assert_eq!(run.json()["version"], env!("CARGO_PKG_VERSION"));
    // guest no longer works once an administrator exists.
    let run = cli(&["overview"], &env[..1], "").await;
    one_line_error(&run, "refused the credential of user 'guest'");
    let v: Value = cli(&["exchanges", "--json"], &env, "").await.ok().json();
    assert!(find(&v, "name", "amq.topic").is_some());
}

#[tokio::test]
async fn users_acl_export_and_import_round_trip_through_the_cli() {
    let gw = Gateway::start();
    let c = sqs_client(http(&gw));
    create_queue(&c, "invoices-dlq", &[]).await;

    // add-user reads the password from standard input.
    let u = url(http(&gw));
    let run = cli(
        &["add-user", "dev", "--tags", "monitoring", "--url", &u],
        &[],
        "s3cret\n",
    )
    .await
    .ok();
    assert!(run.stdout.contains("dev"), "{run:?}");
    let run = admin(&gw, &["users"]).await.ok();
    assert_eq!(
        row(&run.stdout, "dev"),
        ["dev", "monitoring"],
        "{}",
        run.stdout
    );

    // import: a document with a queue that dead-letters into the one above.
    let dir = tempfile::tempdir().expect("tempdir");
    let doc = dir.path().join("defs.json");
    std::fs::write(
        &doc,
        r##"{"queues": [{"name": "invoices", "attributes": {"RedrivePolicy":
            {"deadLetterTargetArn": "invoices-dlq", "maxReceiveCount": 3}}}],
            "acl": [{"action": "all", "topic": "#"}]}"##,
    )
    .expect("write the document");
    admin(&gw, &["import", doc.to_str().unwrap()]).await.ok();
    let run = admin(&gw, &["queues", "--json"]).await.ok();
    let v = run.json();
    let invoices = find(&v, "name", "invoices").expect("the imported queue");
    assert_eq!(invoices["dead_letter_target"], "invoices-dlq");
    assert_eq!(invoices["max_receive_count"], 3);
    let run = admin(&gw, &["acl", "--json"]).await.ok();
    assert_eq!(run.json()["rules"][0]["topic"], "#");

    // export to a file, start a fresh gateway from it, export again: the same.
    let exported = dir.path().join("export.json");
    let run = admin(&gw, &["export", "-o", exported.to_str().unwrap()])
        .await
        .ok();
    assert!(run.stdout.contains("definitions written to"), "{run:?}");
    let first: Value = serde_json::from_slice(&std::fs::read(&exported).expect("read the export"))
        .expect("the export is JSON");
    assert!(find(&first["users"], "name", "dev").is_some(), "{first}");
    assert!(
        !first.to_string().contains("s3cret"),
        "an export never holds passwords"
    );
    let fresh = Gateway::builder()
        .env("TETHER_DEFINITIONS__FILE", exported.display())
        .start();
    let run = admin(&fresh, &["export"]).await.ok();
    assert_eq!(run.json(), first);

    let run = admin(&gw, &["delete-user", "dev"]).await.ok();
    assert!(run.stdout.contains("dev"), "{run:?}");
    let run = admin(&gw, &["users", "--json"]).await.ok();
    assert!(find(&run.json(), "name", "dev").is_none());
}
