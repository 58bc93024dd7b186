//! Liveness and readiness.
//!
//! `/healthz` answers 200 while the process runs. `/readyz` answers 200 only
//! between the end of start-up (store recovered, every listener bound and
//! served) and the beginning of shutdown, 503 otherwise; [`Readiness`] holds
//! that state. While the store is still being recovered the HTTP API does not
//! exist yet, so [`answer_probes`] answers the two probes on the HTTP
//! listener by itself (everything else gets 503), so an orchestrator sees a
//! live, not-ready process instead of a refused connection.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const STARTING: u8 = 0;
const READY: u8 = 1;
const STOPPING: u8 = 2;

/// Whether the gateway is ready to serve: starting → ready → stopping.
#[derive(Debug, Default)]
pub struct Readiness(AtomicU8);

impl Readiness {
    /// Start-up finished: the store is recovered and every listener is up.
    pub fn set_ready(&self) {
        // Never back from stopping.
        let _ = self
            .0
            .compare_exchange(STARTING, READY, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Shutdown began.
    pub fn set_stopping(&self) {
        self.0.store(STOPPING, Ordering::Release);
    }

    /// Whether `/readyz` should answer 200.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire) == READY
    }

    /// `starting`, `ready` or `stopping`.
    pub fn state(&self) -> &'static str {
        match self.0.load(Ordering::Acquire) {
            STARTING => "starting",
            READY => "ready",
            _ => "stopping",
        }
    }
}

/// Answers `/healthz` (200) and `/readyz` (503, `starting`) on `listener`
/// until the future is dropped; every other request gets 503 too. Each
/// connection gets one answer and is closed.
pub async fn answer_probes(listener: &TcpListener) -> std::convert::Infallible {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(answer_one(stream));
            }
            Err(e) => {
                tracing::warn!(protocol = "http", error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads one request head (bounded in size and time) and answers it.
async fn answer_one(mut stream: TcpStream) {
    let mut buf = Vec::with_capacity(512);
    let head = tokio::time::timeout(Duration::from_secs(2), async {
        let mut chunk = [0u8; 512];
        while buf.len() < 8192 && !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        true
    })
    .await;
    if !matches!(head, Ok(true)) {
        return;
    }
    let path = request_path(&buf);
    let (status, body) = match path {
        Some("/healthz") => ("200 OK", "ok\n"),
        _ => ("503 Service Unavailable", "starting\n"),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        stream.write_all(response.as_bytes()),
    )
    .await;
    let _ = stream.shutdown().await;
}

/// The path of an HTTP request head (`GET /healthz HTTP/1.1`), without the
/// query string.
fn request_path(head: &[u8]) -> Option<&str> {
    let line = head.split(|b| *b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let _method = parts.next()?;
    let target = parts.next()?;
    Some(target.split('?').next().unwrap_or(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_goes_starting_ready_stopping_and_never_back() {
        let r = Readiness::default();
        assert_eq!(r.state(), "starting");
        assert!(!r.is_ready());
        r.set_ready();
        assert!(r.is_ready());
        assert_eq!(r.state(), "ready");
        r.set_stopping();
        assert!(!r.is_ready());
        r.set_ready();
        assert_eq!(r.state(), "stopping");
    }

    #[test]
    fn request_path_drops_the_query() {
        assert_eq!(
            request_path(b"GET /readyz?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some("/readyz")
        );
        assert_eq!(
            request_path(b"GET /healthz HTTP/1.0\r\n\r\n"),
            Some("/healthz")
        );
        assert_eq!(request_path(b"\xff\xfe\r\n\r\n"), None);
        assert_eq!(request_path(b"GET\r\n\r\n"), None);
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn probes_answer_live_and_not_ready_while_starting() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = async { answer_probes(&listener).await };
        let client = async {
            let health = get(addr, "/healthz").await;
            let ready = get(addr, "/readyz").await;
            let other = get(addr, "/?Action=ListQueues").await;
            (health, ready, other)
        };
        let (health, ready, other) = tokio::select! {
            r = client => r,
            never = server => match never {},
        };
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
        assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
        assert!(ready.starts_with("HTTP/1.1 503 "), "{ready}");
        assert!(ready.ends_with("starting\n"), "{ready}");
        assert!(other.starts_with("HTTP/1.1 503 "), "{other}");
        // The listener is still usable afterwards (the API takes it over).
        drop(listener);
    }
}
