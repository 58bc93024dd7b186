//! The admin API from tests: raw HTTP requests with Basic credentials, JSON
//! answers, the `tether admin` CLI as a process, and the dead-letter set-up
//! the redrive tests share.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::aws::{HttpReply, parse_http_reply, sqs};

/// Sends one request to the admin API at `http` (`Connection: close`).
/// `credentials` go in a Basic `Authorization` header; `headers` are added
/// as they are; a body is sent as JSON.
pub async fn request(
    http: SocketAddr,
    method: &str,
    target: &str,
    credentials: Option<(&str, &str)>,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> HttpReply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(http)
        .await
        .expect("connect to the HTTP listener");
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n");
    if let Some((u, p)) = credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        req.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream
        .write_all(req.as_bytes())
        .await
        .expect("send request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("admin API answer in time")
        .expect("read answer");
    parse_http_reply(&raw).expect("an HTTP answer")
}

/// The admin API of one gateway, with one credential.
#[derive(Debug, Clone)]
pub struct Admin {
    /// The HTTP listener.
    pub http: SocketAddr,
    user: String,
    password: String,
}

impl Admin {
    /// The built-in `guest`/`guest` credential (accepted from loopback while
    /// no administrator is configured).
    pub fn guest(http: SocketAddr) -> Admin {
        Admin::as_user(http, "guest", "guest")
    }

    /// Another credential.
    pub fn as_user(http: SocketAddr, user: &str, password: &str) -> Admin {
        Admin {
            http,
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    /// Any request, answered as it is.
    pub async fn send(&self, method: &str, path: &str, body: Option<&str>) -> HttpReply {
        request(
            self.http,
            method,
            &format!("/api{path}"),
            Some((&self.user, &self.password)),
            &[],
            body,
        )
        .await
    }

    /// A request that must answer `status`; its JSON body (`Null` if empty).
    pub async fn expect(&self, method: &str, path: &str, status: u16) -> Value {
        let r = self.send(method, path, None).await;
        assert_eq!(
            r.status, status,
            "{method} /api{path}: status {} body {}",
            r.status, r.body
        );
        if r.body.is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("{method} /api{path}: not JSON ({e}): {}", r.body))
    }

    /// GET that must succeed; its JSON.
    pub async fn get(&self, path: &str) -> Value {
        self.expect("GET", path, 200).await
    }

    /// The queue `name` of vhost `/` as `GET /api/queues` lists it.
    pub async fn queue(&self, name: &str) -> Value {
        self.get(&format!("/queues/%2F/{name}")).await
    }

    /// Polls `GET path` until `pick` finds what it wants, or panics after `wait`.
    pub async fn poll<T>(
        &self,
        path: &str,
        wait: Duration,
        mut pick: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let v = self.get(path).await;
            if let Some(t) = pick(&v) {
                return t;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "GET /api{path} never showed what was expected; last: {v:#}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// The entry of a JSON array whose `key` is `value`.
pub fn find<'a>(list: &'a Value, key: &str, value: &str) -> Option<&'a Value> {
    list.as_array()?
        .iter()
        .find(|e| e.get(key).and_then(Value::as_str) == Some(value))
}

/// What a `tether admin` run printed.
#[derive(Debug)]
pub struct CliRun {
    /// Exit status code.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliRun {
    /// Standard output parsed as JSON (panics with the output otherwise).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }

    /// Asserts the run succeeded; returns it.
    pub fn ok(self) -> CliRun {
        assert_eq!(self.code, Some(0), "tether admin failed: {self:?}");
        self
    }
}

/// Runs `tether admin ARGS` (the built binary) with a clean environment plus
/// `env`, and standard input `stdin`.
pub async fn cli(args: &[&str], env: &[(&str, &str)], stdin: &str) -> CliRun {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(crate::tether_bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("admin")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run tether admin");
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.as_bytes())
            .await
            .expect("write stdin");
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("tether admin finished in time")
        .expect("tether admin output");
    CliRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `http://ADDR`, for `--url`.
pub fn url(http: SocketAddr) -> String {
    format!("http://{http}")
}

/// The ARN of SQS queue `name` in the test account.
fn arn(name: &str) -> String {
    crate::aws::queue_arn(name)
}

/// Makes queue `source` dead-letter into `dlq` after one receive
/// (maxReceiveCount 1), sends `body`, receives it once with a one-second
/// visibility timeout and, once that has run out, receives again: that
/// receive moves the message to `dlq`. Returns the queues' URLs.
pub async fn dead_letter_one(
    c: &sqs::Client,
    source: &str,
    dlq: &str,
    body: &str,
) -> (String, String) {
    let dlq_url = crate::aws::create_queue(c, dlq, &[]).await;
    let policy = format!(
        r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":"1"}}"#,
        arn(dlq)
    );
    let src_url = crate::aws::create_queue(c, source, &[("RedrivePolicy", &policy)]).await;
    c.send_message()
        .queue_url(&src_url)
        .message_body(body)
        .send()
        .await
        .expect("SendMessage");
    let first = c
        .receive_message()
        .queue_url(&src_url)
        .visibility_timeout(1)
        .send()
        .await
        .expect("ReceiveMessage")
        .messages
        .unwrap_or_default();
    assert_eq!(first.len(), 1, "the first receive gets the message");
    // Once the visibility timeout has run out, the next receive moves it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let again = crate::aws::receive(c, &src_url, 1, 1).await;
        assert!(
            again.is_empty(),
            "a message received maxReceiveCount times must move, not be delivered"
        );
        let (in_dlq, _, _) = crate::aws::message_counts(c, &dlq_url).await;
        if in_dlq == 1 {
            return (src_url, dlq_url);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the message never reached {dlq}"
        );
    }
}
