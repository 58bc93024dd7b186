//! The CLI's HTTP client: one request to the admin API, HTTP Basic
//! credentials, errors turned into one line that says what to do.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole request may take (a redrive of a large queue is slow).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a command failed; `Display` is the line printed after `tether: `.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The URL does not parse.
    #[error("invalid admin URL '{0}' (expected e.g. http://127.0.0.1:9324)")]
    BadUrl(String),
    /// Nothing answered at the URL.
    #[error(
        "cannot reach the admin API at {url}: {reason} (is tether running there? set --url or TETHER_ADMIN_URL)"
    )]
    Unreachable {
        /// The base URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// 401: the credential was refused.
    #[error(
        "the admin API at {url} refused the credential of user '{user}': {reason} (set --user and --password, or TETHER_ADMIN_USER and TETHER_ADMIN_PASSWORD)"
    )]
    Refused {
        /// The base URL.
        url: String,
        /// The user name sent.
        user: String,
        /// The API's explanation.
        reason: String,
    },
    /// Any other error the API reported (its message).
    #[error("{0}")]
    Api(String),
    /// A local problem (reading a file, standard input, a bad answer).
    #[error("{0}")]
    Local(String),
}

/// A response: status and body.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// The body as received.
    pub body: Bytes,
}

/// A client for one gateway's admin API.
pub struct AdminClient {
    base: String,
    user: String,
    authorization: String,
    client: HttpsClient,
    runtime: tokio::runtime::Runtime,
}

impl AdminClient {
    /// A client for the admin API at `url` (scheme optional) with `user` and
    /// `password`.
    pub fn new(url: &str, user: &str, password: &str) -> Result<Self, CliError> {
        let raw = url.trim();
        let with_scheme = if raw.contains("://") {
            raw.to_owned()
        } else {
            format!("http://{raw}")
        };
        let uri: hyper::Uri = with_scheme
            .parse()
            .map_err(|_| CliError::BadUrl(url.to_owned()))?;
        let has_host = uri.host().is_some_and(|h| !h.is_empty());
        if !matches!(uri.scheme_str(), Some("http" | "https")) || !has_host {
            return Err(CliError::BadUrl(url.to_owned()));
        }
        let base = with_scheme.trim_end_matches('/').to_owned();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::Local(format!("cannot start the async runtime: {e}")))?;
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.enforce_http(false);
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| CliError::Local(format!("cannot set up TLS: {e}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = {
            // The client's pool spawns onto the runtime it is built in.
            let _guard = runtime.enter();
            Client::builder(TokioExecutor::new()).build(connector)
        };
        Ok(AdminClient {
            base,
            user: user.to_owned(),
            authorization: format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))),
            client,
            runtime,
        })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Sends `method` to `/api{path}` with an optional JSON body. A 2xx
    /// reply is returned; anything else becomes a [`CliError`].
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, CliError> {
        let url = format!("{}/api{path}", self.base);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", &self.authorization)
            .header("accept", "application/json")
            .header(
                "user-agent",
                concat!("tether-admin/", env!("CARGO_PKG_VERSION")),
            );
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| CliError::BadUrl(self.base.clone()))?;
        let reply = self.runtime.block_on(async {
            let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req))
                .await
                .map_err(|_| self.unreachable("no answer in time".to_owned()))?
                .map_err(|e| self.unreachable(describe(&e)))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| self.unreachable(format!("the answer broke off: {e}")))?
                .to_bytes();
            Ok::<Reply, CliError>(Reply { status, body })
        })?;
        match reply.status {
            200..=299 => Ok(reply),
            401 => Err(CliError::Refused {
                url: self.base.clone(),
                user: self.user.clone(),
                reason: api_message(&reply.body)
                    .unwrap_or_else(|| "HTTP 401 Unauthorized".to_owned()),
            }),
            status => Err(CliError::Api(api_message(&reply.body).unwrap_or_else(
                || format!("the gateway at {} answered HTTP {status} to {path}, without an admin API error (is this Tether with the admin API?)", self.base),
            ))),
        }
    }

    fn unreachable(&self, reason: String) -> CliError {
        CliError::Unreachable {
            url: self.base.clone(),
            reason,
        }
    }
}

/// The `message` of an admin API error body.
fn api_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("message")?.as_str().map(str::to_owned)
}

/// The most specific reason in a client error's chain (the OS error, say).
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// Percent-encodes one path segment (a vhost `/` becomes `%2F`).
pub fn segment(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_encode_everything_but_unreserved_characters() {
        assert_eq!(segment("/"), "%2F");
        assert_eq!(segment("orders-dlq.fifo"), "orders-dlq.fifo");
        assert_eq!(segment("a b/ü"), "a%20b%2F%C3%BC");
    }

    #[test]
    fn urls_without_a_scheme_get_http_and_bad_ones_are_refused() {
        let c = AdminClient::new("127.0.0.1:9324/", "u", "p").unwrap();
        assert_eq!(c.url(), "http://127.0.0.1:9324");
        assert!(matches!(
            AdminClient::new("ftp://x", "u", "p"),
            Err(CliError::BadUrl(_))
        ));
        assert!(matches!(
            AdminClient::new("http://", "u", "p"),
            Err(CliError::BadUrl(_))
        ));
    }

    #[test]
    fn error_bodies_yield_their_message() {
        assert_eq!(
            api_message(br#"{"error":"not_found","message":"No queue 'q' in vhost '/'."}"#)
                .as_deref(),
            Some("No queue 'q' in vhost '/'.")
        );
        assert_eq!(api_message(b"<xml/>"), None);
    }
}
