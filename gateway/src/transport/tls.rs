//! TLS for every listener: loading the certificate chain, key and client CA
//! named in `[tls]`, the rustls server configuration (TLS 1.2 and 1.3, ring),
//! reloading it on SIGHUP, handshakes with a timeout, and the identity a
//! verified client certificate carries.
//!
//! A reload swaps the configuration new handshakes use; connections already
//! established keep the session they negotiated. A reload that fails keeps
//! the previous configuration.
//!
//! Handshakes run in the connection's own task, never in the accept loop, so
//! a slow or silent client holds up nobody else.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::CertIdentity;
use crate::config::{ClientAuth, IdentityField, TlsConfig, TlsVersion};

/// Why certificates could not be loaded; printed as one line naming the
/// configuration key and the file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{key}: {path}: {reason}")]
pub struct TlsError {
    /// The configuration key naming the file (`tls.cert`, `tls.key`, `tls.client_ca`).
    pub key: &'static str,
    /// The file.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The rustls configurations new handshakes use, swapped whole on reload.
#[derive(Debug)]
struct Current {
    /// For the listeners that do not ask for client certificates.
    plain: Arc<ServerConfig>,
    /// For those that do (`tls.client_cert_listeners`, with `tls.client_ca`).
    verifying: Arc<ServerConfig>,
    /// `plain` offering ALPN `http/1.1`, for HTTPS.
    https_plain: Arc<ServerConfig>,
    /// `verifying` offering ALPN `http/1.1`.
    https_verifying: Arc<ServerConfig>,
}

/// The gateway's TLS state: settings and the current certificates.
#[derive(Debug)]
pub struct Tls {
    settings: TlsConfig,
    current: RwLock<Current>,
    /// Where refused handshakes are counted, once the core exists.
    metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
}

impl Tls {
    /// Loads the configured certificates; `None` when `[tls]` names none
    /// (TLS listeners stay off).
    pub fn load(settings: &TlsConfig) -> Result<Option<Arc<Tls>>, TlsError> {
        if !settings.enabled() {
            return Ok(None);
        }
        let current = build(settings)?;
        Ok(Some(Arc::new(Tls {
            settings: settings.clone(),
            current: RwLock::new(current),
            metrics: std::sync::OnceLock::new(),
        })))
    }

    /// Counts refused handshakes in `metrics` from now on
    /// (`tether_connections_refused_total{reason="tls_handshake"}`).
    pub fn count_refusals_in(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Counts one refused handshake on the `protocol` listener.
    fn count_refused(&self, protocol: &str) {
        use crate::metrics::{Protocol, RefuseReason};
        let Some(m) = self.metrics.get() else { return };
        let p = match protocol {
            "amqps" => Protocol::Amqp,
            "https" => Protocol::Http,
            _ => Protocol::Mqtt,
        };
        m.count_refused(p, RefuseReason::TlsHandshake);
    }

    /// Re-reads the certificate chain, key and client CA; new handshakes use
    /// them, established connections are untouched. On error the previous
    /// certificates stay in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = build(&self.settings)?;
        *self.current.write() = fresh;
        Ok(())
    }

    /// The configuration a handshake on `protocol`'s listener uses now.
    fn config_for(&self, protocol: &str) -> Arc<ServerConfig> {
        let verify = self
            .settings
            .client_cert_listeners
            .iter()
            .any(|l| l == protocol);
        let current = self.current.read();
        match (protocol == "https", verify) {
            (false, false) => current.plain.clone(),
            (false, true) => current.verifying.clone(),
            (true, false) => current.https_plain.clone(),
            (true, true) => current.https_verifying.clone(),
        }
    }

    /// Runs the server side of a handshake on an accepted connection, bounded
    /// by `tls.handshake_timeout`. A refused handshake is logged (peer and
    /// reason) and yields `None`.
    pub async fn accept(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        protocol: &'static str,
    ) -> Option<(TlsStream<TcpStream>, Option<CertIdentity>)> {
        let _ = stream.set_nodelay(true);
        let config = self.config_for(protocol);
        let stream = self.handshake(config, stream, peer, protocol).await?;
        match self.identity(&stream) {
            Ok(identity) => Some((stream, identity)),
            Err(reason) => {
                tracing::warn!(%protocol, %peer, reason = %reason, "tls handshake refused");
                self.count_refused(protocol);
                None
            }
        }
    }

    async fn handshake(
        &self,
        config: Arc<ServerConfig>,
        stream: TcpStream,
        peer: SocketAddr,
        protocol: &'static str,
    ) -> Option<TlsStream<TcpStream>> {
        let timeout = self.settings.handshake_timeout;
        let accepted =
            tokio::time::timeout(timeout, TlsAcceptor::from(config).accept(stream)).await;
        if !matches!(accepted, Ok(Ok(_))) {
            self.count_refused(protocol);
        }
        match accepted {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                // A port scan or a health check that only opens the port.
                tracing::info!(%protocol, %peer, reason = %e, "tls handshake refused");
                None
            }
            Ok(Err(e)) => {
                tracing::warn!(%protocol, %peer, reason = %e, "tls handshake refused");
                None
            }
            Err(_) => {
                tracing::info!(%protocol, %peer, reason = %format_args!("no handshake within {timeout:?}"), "tls handshake refused");
                None
            }
        }
    }

    /// The identity of the verified client certificate, when the
    /// configuration gives it a meaning and the client presented one; an
    /// error when the certificate lacks the configured field.
    fn identity(&self, stream: &TlsStream<TcpStream>) -> Result<Option<CertIdentity>, String> {
        let s = &self.settings;
        if !s.use_identity_as_username && !s.use_identity_as_client_id {
            return Ok(None);
        }
        let Some(cert) = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
        else {
            return Ok(None);
        };
        let name = match s.identity {
            IdentityField::Cn => identity::common_name(cert),
            IdentityField::San => identity::first_san(cert),
        };
        match name {
            Some(name) if !name.is_empty() => Ok(Some(CertIdentity {
                name,
                as_username: s.use_identity_as_username,
                as_client_id: s.use_identity_as_client_id,
            })),
            _ => Err(match s.identity {
                IdentityField::Cn => "the client certificate has no common name (tls.identity = \"cn\")".into(),
                IdentityField::San => "the client certificate has no DNS or URI subject alternative name (tls.identity = \"san\")".into(),
            }),
        }
    }

    /// An HTTPS listener for the HTTP server: accepts on `listener` and
    /// hands over connections whose handshake completed (handshakes run
    /// concurrently, each in its own task).
    pub fn https_listener(
        self: &Arc<Self>,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<HttpsListener> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let tls = self.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    a = listener.accept() => a,
                };
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(protocol = %"https", error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let tls = tls.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let config = tls.config_for("https");
                    if let Some(stream) = tls.handshake(config, stream, peer, "https").await {
                        let _ = tx.send((stream, peer)).await;
                    }
                });
            }
        });
        Ok(HttpsListener { rx, local })
    }
}

/// Connections of the HTTPS listener whose handshake completed, for
/// `axum::serve`.
#[derive(Debug)]
pub struct HttpsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(accepted) => accepted,
            // The accept task ended (shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the files and builds the server configurations.
fn build(s: &TlsConfig) -> Result<Current, TlsError> {
    let certs = read_certs("tls.cert", &s.cert)?;
    let key = read_key("tls.key", &s.key)?;
    let verifier = client_verifier(s)?;
    let plain = server_config(s, None, &certs, &key)?;
    let verifying = match verifier {
        Some(v) => server_config(s, Some(v), &certs, &key)?,
        None => plain.clone(),
    };
    let https = |config: &ServerConfig| {
        let mut config = config.clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    };
    Ok(Current {
        https_plain: https(&plain),
        https_verifying: https(&verifying),
        plain: Arc::new(plain),
        verifying: Arc::new(verifying),
    })
}

/// A server configuration presenting `certs`, checking client certificates
/// with `verifier` when given.
fn server_config(
    s: &TlsConfig,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    certs: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsError> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match s.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError {
            key: "tls.min_version",
            path: String::new(),
            reason: e.to_string(),
        })?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(certs.to_vec(), key.clone_key())
        .map_err(|e| TlsError {
            key: "tls.key",
            path: s.key.display().to_string(),
            reason: format!("cannot be used with tls.cert: {e}"),
        })
}

/// The client certificate verifier for `tls.client_ca`, if one is set.
fn client_verifier(s: &TlsConfig) -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
    if s.client_ca.as_os_str().is_empty() {
        Ok(None)
    } else {
        let mut roots = RootCertStore::empty();
        for cert in read_certs("tls.client_ca", &s.client_ca)? {
            roots.add(cert).map_err(|e| TlsError {
                key: "tls.client_ca",
                path: s.client_ca.display().to_string(),
                reason: format!("not a usable CA certificate: {e}"),
            })?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
        let verifier = match s.client_auth {
            ClientAuth::Required => verifier,
            ClientAuth::Optional => verifier.allow_unauthenticated(),
        };
        let verifier = verifier.build().map_err(|e| TlsError {
            key: "tls.client_ca",
            path: s.client_ca.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Some(verifier))
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError {
        key,
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(key, path)?;
    let error = |reason: String| TlsError {
        key,
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(error(
            "no certificate found (expected PEM `BEGIN CERTIFICATE` blocks)".into(),
        ));
    }
    Ok(certs)
}

fn read_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError {
        key,
        path: path.display().to_string(),
        reason: match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no private key found (expected a PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)".into()
            }
            e => format!("not a PEM private key: {e}"),
        },
    })
}

/// Reading the identity out of a verified client certificate.
pub mod identity {
    use rustls_pki_types::CertificateDer;

    /// The subject's first common name (OID 2.5.4.3).
    pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
        let cert = webpki::EndEntityCert::try_from(cert).ok()?;
        common_name_in(cert.subject())
    }

    /// The first DNS-name subject alternative name, else the first URI one.
    pub fn first_san(cert: &CertificateDer<'_>) -> Option<String> {
        let cert = webpki::EndEntityCert::try_from(cert).ok()?;
        let first = cert.valid_dns_names().next();
        first
            .or_else(|| cert.valid_uri_names().next())
            .map(str::to_owned)
    }

    /// The `commonName` in a DER `RDNSequence`'s contents (a certificate's
    /// subject without its outer SEQUENCE header). `None` when absent, in a
    /// string type we do not read, or when the bytes are not DER.
    pub(crate) fn common_name_in(mut rdns: &[u8]) -> Option<String> {
        const SET: u8 = 0x31;
        const SEQUENCE: u8 = 0x30;
        const OID: u8 = 0x06;
        const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
        while !rdns.is_empty() {
            let (tag, mut set, rest) = tlv(rdns)?;
            rdns = rest;
            if tag != SET {
                return None;
            }
            while !set.is_empty() {
                let (tag, attribute, rest) = tlv(set)?;
                set = rest;
                if tag != SEQUENCE {
                    return None;
                }
                let (tag, oid, value) = tlv(attribute)?;
                if tag == OID && oid == COMMON_NAME {
                    let (tag, text, _) = tlv(value)?;
                    return directory_string(tag, text);
                }
            }
        }
        None
    }

    /// One DER tag-length-value: the tag, the value and what follows.
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        if tag & 0x1f == 0x1f {
            // High tag numbers do not occur in names.
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return None;
        }
        Some((tag, &rest[..len], &rest[len..]))
    }

    /// A `DirectoryString` (or IA5String) as text.
    fn directory_string(tag: u8, bytes: &[u8]) -> Option<String> {
        const UTF8: u8 = 0x0c;
        const PRINTABLE: u8 = 0x13;
        const IA5: u8 = 0x16;
        const BMP: u8 = 0x1e;
        match tag {
            UTF8 | PRINTABLE | IA5 => String::from_utf8(bytes.to_vec()).ok(),
            BMP if bytes.len().is_multiple_of(2) => {
                let units = bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]));
                char::decode_utf16(units)
                    .collect::<Result<String, _>>()
                    .ok()
            }
            _ => None,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use rcgen::{CertificateParams, DnType, KeyPair, SanType};

        fn cert(params: CertificateParams) -> CertificateDer<'static> {
            let key = KeyPair::generate().unwrap();
            params.self_signed(&key).unwrap().der().clone()
        }

        #[test]
        fn common_name_is_read_from_the_subject() {
            let mut params = CertificateParams::default();
            params
                .distinguished_name
                .push(DnType::OrganizationName, "Acme");
            params
                .distinguished_name
                .push(DnType::CommonName, "sensor-1");
            assert_eq!(common_name(&cert(params)).as_deref(), Some("sensor-1"));
        }

        #[test]
        fn certificate_without_common_name_has_none() {
            let mut params = CertificateParams::new(vec!["device.example".into()]).unwrap();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(DnType::OrganizationName, "Acme");
            assert_eq!(common_name(&cert(params)), None);
        }

        #[test]
        fn first_san_prefers_a_dns_name_then_a_uri() {
            let params = CertificateParams::new(vec!["sensor-2.devices.example".into()]).unwrap();
            assert_eq!(
                first_san(&cert(params)).as_deref(),
                Some("sensor-2.devices.example")
            );
            let mut params = CertificateParams::default();
            params.subject_alt_names =
                vec![SanType::URI("spiffe://fleet/sensor-3".try_into().unwrap())];
            assert_eq!(
                first_san(&cert(params)).as_deref(),
                Some("spiffe://fleet/sensor-3")
            );
        }

        #[test]
        fn bmp_string_common_name_is_decoded() {
            // SET { SEQUENCE { OID 2.5.4.3, BMPString "ab" } }
            let rdns = [
                0x31, 0x0d, 0x30, 0x0b, 0x06, 0x03, 0x55, 0x04, 0x03, 0x1e, 0x04, 0x00, b'a', 0x00,
                b'b',
            ];
            assert_eq!(common_name_in(&rdns).as_deref(), Some("ab"));
        }

        #[test]
        fn malformed_names_yield_nothing_and_never_panic() {
            for bytes in [
                &[][..],
                &[0x31],
                &[0x31, 0x85, 0xff, 0xff, 0xff, 0xff, 0xff],
                &[0x31, 0x82, 0x01],
                &[0x31, 0x03, 0x30, 0x01, 0x06],
                &[0x30, 0x00],
                &[0x31, 0x80],
                &[0x1f, 0x01, 0x00],
            ] {
                assert_eq!(common_name_in(bytes), None, "{bytes:?}");
            }
            assert_eq!(
                common_name(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])),
                None
            );
        }
    }
}
