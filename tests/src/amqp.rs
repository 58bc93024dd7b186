//! lapin helpers for tests: connect to a gateway's AMQP listener, open channels.

use std::net::SocketAddr;
use std::time::Duration;

pub use lapin::options::*;
pub use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
pub use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind,
};

/// Default wait for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);

/// The `amqp://` URI of a listener, default vhost.
pub fn uri(addr: SocketAddr) -> String {
    format!("amqp://{}:{}/%2f", addr.ip(), addr.port())
}

/// Connects with guest credentials (anonymous unless a `guest` user exists).
pub async fn connect(addr: SocketAddr) -> Connection {
    tokio::time::timeout(
        WAIT,
        Connection::connect(&uri(addr), ConnectionProperties::default()),
    )
    .await
    .expect("connect timed out")
    .expect("connect")
}

/// Connects and opens one channel.
pub async fn channel(addr: SocketAddr) -> (Connection, Channel) {
    let conn = connect(addr).await;
    let ch = conn.create_channel().await.expect("channel");
    (conn, ch)
}

/// The next delivery of `consumer`, within `wait`.
pub async fn next(consumer: &mut Consumer, wait: Duration) -> Option<lapin::message::Delivery> {
    use futures_lite::StreamExt;
    match tokio::time::timeout(wait, consumer.next()).await {
        Ok(Some(Ok(d))) => Some(d),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Helpers for the lapin behaviour suites (amqp_connection, amqp_topology,
// amqp_basic_ops, amqp_confirms_tx).
// ---------------------------------------------------------------------------

/// How long a "nothing arrives" check waits.
pub const QUIET: Duration = Duration::from_millis(300);

/// An `amqp://` URI with credentials (`None`: lapin's default guest/guest),
/// a vhost (`/` is sent as `%2f`) and an optional query (`"frame_max=8192"`).
pub fn uri_with(
    addr: SocketAddr,
    credentials: Option<(&str, &str)>,
    vhost: &str,
    query: &str,
) -> String {
    let auth = credentials.map_or(String::new(), |(u, p)| format!("{u}:{p}@"));
    let vhost = if vhost == "/" {
        "%2f".to_owned()
    } else {
        vhost.replace('/', "%2f")
    };
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("amqp://{auth}{}:{}/{vhost}{query}", addr.ip(), addr.port())
}

/// Connects to `uri`, returning lapin's answer (panics only on a timeout).
pub async fn try_connect(uri: &str) -> lapin::Result<Connection> {
    tokio::time::timeout(
        WAIT,
        Connection::connect(uri, ConnectionProperties::default()),
    )
    .await
    .unwrap_or_else(|_| panic!("connecting to {uri} timed out"))
}

/// The AMQP reply code carried by a lapin error (channel or connection close).
pub fn reply_code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
    }
}

/// Unwraps the error of `r` and returns its reply code, failing the test with
/// `what` when `r` succeeded or carries no reply code.
pub fn expect_code<T>(r: lapin::Result<T>, what: &str) -> u16 {
    match r {
        Ok(_) => panic!("{what}: expected an AMQP error, got success"),
        Err(e) => reply_code(&e).unwrap_or_else(|| panic!("{what}: error without reply code: {e}")),
    }
}

/// An argon2 hash of `password`, made by `tether hash-password`.
pub fn hash_password(password: &str) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(crate::tether_bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tether hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(password.as_bytes())
        .expect("write password");
    let out = child.wait_with_output().expect("hash-password output");
    assert!(out.status.success(), "tether hash-password failed");
    String::from_utf8(out.stdout)
        .expect("hash is UTF-8")
        .trim()
        .to_owned()
}

/// A field table from `(key, value)` pairs.
pub fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

/// A long-string field value.
pub fn long_str(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// Declares a plain queue with `args`, failing the test on error.
pub async fn declare_queue(ch: &Channel, name: &str, args: FieldTable) -> lapin::Queue {
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap_or_else(|e| panic!("declare queue {name}: {e}"))
}

/// Declares an exchange of `kind`, failing the test on error.
pub async fn declare_exchange(ch: &Channel, name: &str, kind: ExchangeKind) {
    ch.exchange_declare(
        name.into(),
        kind,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("declare exchange {name}: {e}"));
}

/// Binds `queue` to `exchange` under `key` with `args`, failing the test on error.
pub async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str, args: FieldTable) {
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        args,
    )
    .await
    .unwrap_or_else(|e| panic!("bind {queue} to {exchange} ({key}): {e}"));
}

/// Publishes `body` without properties, failing the test on error.
pub async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    publish_with(ch, exchange, key, body, BasicProperties::default()).await;
}

/// Publishes `body` with `props`, failing the test on error.
pub async fn publish_with(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
) {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        props,
    )
    .await
    .unwrap_or_else(|e| panic!("publish to {exchange}/{key}: {e}"));
}

/// Starts a consumer on `queue` (tag `""`: server-generated).
pub async fn consume(ch: &Channel, queue: &str, tag: &str, no_ack: bool) -> Consumer {
    ch.basic_consume(
        queue.into(),
        tag.into(),
        BasicConsumeOptions {
            no_ack,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("consume {queue}: {e}"))
}

/// The next item of `consumer` within `wait`: a delivery, an error (the
/// channel closed), or `None` when nothing came or the consumer ended.
pub async fn next_result(
    consumer: &mut Consumer,
    wait: Duration,
) -> Option<lapin::Result<lapin::message::Delivery>> {
    use futures_lite::StreamExt;
    tokio::time::timeout(wait, consumer.next())
        .await
        .ok()
        .flatten()
}

/// Whether `consumer`'s stream ends (server-side cancel) within `wait`.
pub async fn consumer_ends(consumer: &mut Consumer, wait: Duration) -> bool {
    use futures_lite::StreamExt;
    matches!(tokio::time::timeout(wait, consumer.next()).await, Ok(None))
}

/// The payloads of the next `n` deliveries (each within [`WAIT`]), acked with
/// `ack` unless the consumer is no-ack.
pub async fn take(consumer: &mut Consumer, n: usize, ack: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let d = next(consumer, WAIT)
            .await
            .unwrap_or_else(|| panic!("delivery {} of {n} did not arrive", i + 1));
        if ack {
            d.ack(BasicAckOptions::default()).await.expect("ack");
        }
        out.push(d.data);
    }
    out
}

/// Asserts that nothing reaches `consumer` for [`QUIET`].
pub async fn assert_quiet(consumer: &mut Consumer, what: &str) {
    if let Some(r) = next_result(consumer, QUIET).await {
        match r {
            Ok(d) => panic!(
                "{what}: unexpected delivery {:?}",
                String::from_utf8_lossy(&d.data)
            ),
            Err(e) => panic!("{what}: consumer failed: {e}"),
        }
    }
}

/// Polls basic.get (no-ack) on `queue` until a message comes, within `wait`.
pub async fn get_within(
    ch: &Channel,
    queue: &str,
    wait: Duration,
) -> Option<lapin::message::BasicGetMessage> {
    tokio::time::timeout(wait, async {
        loop {
            if let Some(m) = ch
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap_or_else(|e| panic!("basic.get {queue}: {e}"))
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .ok()
}

/// Ready messages in `queue` (passive declare), failing the test on error.
pub async fn message_count(ch: &Channel, queue: &str) -> u32 {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("passive declare {queue}: {e}"))
    .message_count()
}

/// Polls until `queue` holds `n` ready messages; returns the last count seen.
pub async fn await_message_count(ch: &Channel, queue: &str, n: u32, wait: Duration) -> u32 {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let seen = message_count(ch, queue).await;
        if seen == n || tokio::time::Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `queue` exists, checked with a passive declare on a throw-away
/// channel of `conn` (a 404 closes the channel it happens on).
pub async fn queue_exists(conn: &Connection, queue: &str) -> bool {
    let ch = conn.create_channel().await.expect("channel");
    let r = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    match r {
        Ok(_) => {
            let _ = ch.close(200, "OK".into()).await;
            true
        }
        Err(e) => {
            assert_eq!(reply_code(&e), Some(404), "passive declare of {queue}: {e}");
            false
        }
    }
}

/// Whether `exchange` exists (passive declare on a throw-away channel).
pub async fn exchange_exists(conn: &Connection, exchange: &str) -> bool {
    let ch = conn.create_channel().await.expect("channel");
    let r = ch
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    match r {
        Ok(()) => {
            let _ = ch.close(200, "OK".into()).await;
            true
        }
        Err(e) => {
            assert_eq!(
                reply_code(&e),
                Some(404),
                "passive declare of {exchange}: {e}"
            );
            false
        }
    }
}

/// Polls `probe` until it returns `want`, within `wait`; returns the last answer.
pub async fn await_bool<F, Fut>(wait: Duration, want: bool, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let got = probe().await;
        if got == want || tokio::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A header of a delivered message.
pub fn header<'a>(props: &'a BasicProperties, key: &str) -> Option<&'a AMQPValue> {
    props.headers().as_ref()?.inner().get(key)
}

/// The `x-death` entries of a dead-lettered message, newest first.
pub fn x_death(props: &BasicProperties) -> Vec<FieldTable> {
    match header(props, "x-death") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|v| match v {
                AMQPValue::FieldTable(t) => t.clone(),
                other => panic!("x-death entry is not a table: {other:?}"),
            })
            .collect(),
        other => panic!("no x-death array header: {other:?}"),
    }
}

/// Declares `queue` (exclusive to the connection; `""` for a server-named one),
/// binds it to `exchange` with each of `keys`, and returns its name.
pub async fn bound_queue(ch: &Channel, queue: &str, exchange: &str, keys: &[&str]) -> String {
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("queue.declare");
    let name = q.name().as_str().to_owned();
    for key in keys {
        ch.queue_bind(
            name.as_str().into(),
            exchange.into(),
            (*key).into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("queue.bind");
    }
    name
}
