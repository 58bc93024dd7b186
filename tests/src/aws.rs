//! AWS SDK clients (SQS, SNS) pointed at a gateway's HTTP listener.

use std::net::SocketAddr;

use aws_credential_types::Credentials;
pub use aws_sdk_sns as sns;
pub use aws_sdk_sqs as sqs;

/// Region the test clients use.
pub const REGION: &str = "us-east-1";

fn credentials() -> Credentials {
    Credentials::new("AKIDTETHERTEST", "tether-test-secret", None, None, "tests")
}

/// An SQS client for the gateway at `http`.
pub fn sqs_client(http: SocketAddr) -> sqs::Client {
    let conf = sqs::Config::builder()
        .behavior_version(sqs::config::BehaviorVersion::latest())
        .region(sqs::config::Region::new(REGION))
        .endpoint_url(format!("http://{http}"))
        .credentials_provider(credentials())
        .build();
    sqs::Client::from_conf(conf)
}

/// An SNS client for the gateway at `http`.
pub fn sns_client(http: SocketAddr) -> sns::Client {
    let conf = sns::Config::builder()
        .behavior_version(sns::config::BehaviorVersion::latest())
        .region(sns::config::Region::new(REGION))
        .endpoint_url(format!("http://{http}"))
        .credentials_provider(credentials())
        .build();
    sns::Client::from_conf(conf)
}

/// The access key id and secret the test clients sign with.
pub fn test_keys() -> (&'static str, &'static str) {
    ("AKIDTETHERTEST", "tether-test-secret")
}

/// An SQS client for the gateway at `http` that signs with `key_id` and `secret`.
pub fn sqs_client_signed_with(http: SocketAddr, key_id: &str, secret: &str) -> sqs::Client {
    let conf = sqs::Config::builder()
        .behavior_version(sqs::config::BehaviorVersion::latest())
        .region(sqs::config::Region::new(REGION))
        .endpoint_url(format!("http://{http}"))
        .credentials_provider(Credentials::new(key_id, secret, None, None, "tests"))
        .build();
    sqs::Client::from_conf(conf)
}

// ---- MD5 digests as SQS computes them ----

/// Lower-case hex MD5 of `data` (SQS MD5OfMessageBody).
pub fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A message attribute's value as MD5OfMessageAttributes encodes it.
pub enum AttrValue<'a> {
    /// `String` and `Number` types (transport byte 1).
    Text(&'a str),
    /// `Binary` types (transport byte 2).
    Binary(&'a [u8]),
}

/// MD5OfMessageAttributes, written from the SQS developer guide rather than
/// shared with the gateway: attributes sorted by name, each encoded as
/// length-prefixed name, length-prefixed data type, a transport byte and the
/// length-prefixed value (lengths 4-byte big-endian).
pub fn md5_of_attributes<'a>(
    attrs: impl IntoIterator<Item = (&'a str, &'a str, AttrValue<'a>)>,
) -> String {
    let mut sorted: Vec<_> = attrs.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut buf = Vec::new();
    let put = |buf: &mut Vec<u8>, b: &[u8]| {
        buf.extend_from_slice(&(b.len() as u32).to_be_bytes());
        buf.extend_from_slice(b);
    };
    for (name, data_type, value) in sorted {
        put(&mut buf, name.as_bytes());
        put(&mut buf, data_type.as_bytes());
        match value {
            AttrValue::Text(t) => {
                buf.push(1);
                put(&mut buf, t.as_bytes());
            }
            AttrValue::Binary(b) => {
                buf.push(2);
                put(&mut buf, b);
            }
        }
    }
    md5_hex(&buf)
}

/// MD5OfMessageAttributes of attributes in the SDK's shape.
pub fn md5_of_sdk_attributes(
    attrs: &std::collections::HashMap<String, sqs::types::MessageAttributeValue>,
) -> String {
    md5_of_attributes(attrs.iter().map(|(name, v)| {
        let value = match (&v.string_value, &v.binary_value) {
            (Some(s), _) => AttrValue::Text(s),
            (None, Some(b)) => AttrValue::Binary(b.as_ref()),
            (None, None) => AttrValue::Text(""),
        };
        (name.as_str(), v.data_type.as_str(), value)
    }))
}

// ---- the query protocol over plain HTTP/1.1 ----

/// A response read off the wire.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl HttpReply {
    /// The first header named `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Percent-encodes a form value (everything but unreserved characters).
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `application/x-www-form-urlencoded` text of `pairs`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Sends one HTTP/1.1 request over a fresh connection (`Connection: close`)
/// and reads the whole response. `target` is the request target (path and
/// query); a non-empty body is sent as a form.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: &str,
) -> std::io::Result<HttpReply> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !body.is_empty() {
        req.push_str("Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut raw),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no response"))??;
    parse_http_reply(&raw)
}

/// Parses a whole HTTP/1.1 response (chunked bodies included).
pub fn parse_http_reply(raw: &[u8]) -> std::io::Result<HttpReply> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("headers not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("bad chunk"))?;
            let size_text = std::str::from_utf8(&rest[..eol]).map_err(|_| bad("bad chunk"))?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            if rest.len() < size {
                return Err(bad("short chunk"));
            }
            out.extend_from_slice(&rest[..size]);
            rest = rest.get(size + 2..).unwrap_or_default();
        }
        body = out;
    }
    let body = String::from_utf8(body).map_err(|_| bad("body not UTF-8"))?;
    Ok(HttpReply {
        status,
        headers,
        body,
    })
}

// ---------------------------------------------------------------------------
// Helpers for the SNS / rules / cross-protocol SQS suites.
// ---------------------------------------------------------------------------

/// The account id the gateway uses when none is configured.
pub const ACCOUNT: &str = "000000000000";

/// The ARN of SQS queue `name` in the test account.
pub fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")
}

/// The next message of `url`, long-polling up to 2 s; panics if none arrives.
pub async fn receive_one(c: &sqs::Client, url: &str) -> sqs::types::Message {
    receive(c, url, 1, 2)
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no message arrived in {url}"))
}

/// Receives (and deletes) every message of `url` until `n` have arrived or
/// `wait` has passed; returns them in the order received.
pub async fn receive_n(
    c: &sqs::Client,
    url: &str,
    n: usize,
    wait: std::time::Duration,
) -> Vec<sqs::types::Message> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut out = Vec::new();
    while out.len() < n && tokio::time::Instant::now() < deadline {
        let batch = receive(c, url, 10, 1).await;
        for m in batch {
            delete(c, url, &m).await;
            out.push(m);
        }
    }
    out
}

/// Receives (and deletes) whatever `url` holds right now; returns the bodies.
pub async fn drain_bodies(c: &sqs::Client, url: &str) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let batch = receive(c, url, 10, 0).await;
        if batch.is_empty() {
            return out;
        }
        for m in batch {
            delete(c, url, &m).await;
            out.push(m.body.unwrap_or_default());
        }
    }
}

/// Deletes a received message.
pub async fn delete(c: &sqs::Client, url: &str, m: &sqs::types::Message) {
    c.delete_message()
        .queue_url(url)
        .receipt_handle(m.receipt_handle.clone().expect("ReceiptHandle"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("DeleteMessage {url}: {e:?}"));
}

/// A String message attribute for SQS.
pub fn sqs_string(value: &str) -> sqs::types::MessageAttributeValue {
    sqs::types::MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("attribute")
}

/// An SNS message attribute of `data_type` (`String`, `Number`, `String.Array`).
pub fn sns_attribute(data_type: &str, value: &str) -> sns::types::MessageAttributeValue {
    sns::types::MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(value)
        .build()
        .expect("attribute")
}

/// Creates topic `name`; returns its ARN.
pub async fn create_topic(t: &sns::Client, name: &str) -> String {
    let mut req = t.create_topic().name(name);
    if name.ends_with(".fifo") {
        req = req.attributes("FifoTopic", "true");
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("CreateTopic {name}: {e:?}"))
        .topic_arn
        .expect("TopicArn")
}

/// Subscribes SQS queue `queue` to `topic_arn` with subscription
/// `attributes`; returns the subscription ARN.
pub async fn subscribe_queue(
    t: &sns::Client,
    topic_arn: &str,
    queue: &str,
    attributes: &[(&str, &str)],
) -> String {
    let mut req = t
        .subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn(queue))
        .return_subscription_arn(true);
    for (k, v) in attributes {
        req = req.attributes(*k, *v);
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("Subscribe {queue} to {topic_arn}: {e:?}"))
        .subscription_arn
        .expect("SubscriptionArn")
}

// ---- small SQS conveniences for tests ----

/// Creates queue `name` with attributes given by name; returns its URL.
pub async fn create_queue(c: &sqs::Client, name: &str, attrs: &[(&str, &str)]) -> String {
    let mut req = c.create_queue().queue_name(name);
    for (k, v) in attrs {
        req = req.attributes(sqs::types::QueueAttributeName::from(*k), *v);
    }
    match req.send().await {
        Ok(out) => out.queue_url.unwrap_or_default(),
        Err(e) => panic!("CreateQueue {name}: {:?}", e.into_service_error()),
    }
}

/// One attribute of a queue, by name.
pub async fn queue_attribute(c: &sqs::Client, url: &str, name: &str) -> Option<String> {
    let name = sqs::types::QueueAttributeName::from(name);
    c.get_queue_attributes()
        .queue_url(url)
        .attribute_names(name.clone())
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes
        .and_then(|mut a| a.remove(&name))
}

/// ApproximateNumberOfMessages, ...NotVisible and ...Delayed of a queue.
pub async fn message_counts(c: &sqs::Client, url: &str) -> (u64, u64, u64) {
    use sqs::types::QueueAttributeName as N;
    let attrs = c
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(N::All)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes
        .unwrap_or_default();
    let n = |k: N| {
        attrs
            .get(&k)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k:?} missing or not a number in {attrs:?}"))
    };
    (
        n(N::ApproximateNumberOfMessages),
        n(N::ApproximateNumberOfMessagesNotVisible),
        n(N::ApproximateNumberOfMessagesDelayed),
    )
}

/// Receives up to `max` messages, waiting up to `wait` seconds, asking for
/// every system and message attribute.
pub async fn receive(c: &sqs::Client, url: &str, max: i32, wait: i32) -> Vec<sqs::types::Message> {
    c.receive_message()
        .queue_url(url)
        .max_number_of_messages(max)
        .wait_time_seconds(wait)
        .message_system_attribute_names(sqs::types::MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .expect("ReceiveMessage")
        .messages
        .unwrap_or_default()
}
