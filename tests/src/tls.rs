//! Certificates made at run time (rcgen) for the TLS and WebSocket tests, the
//! files a gateway reads them from, and TLS clients that trust them. No key
//! material is committed: every run makes its own CAs and keys.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub use rustls::version::{TLS12, TLS13};

/// Both TLS versions, newest first.
pub const ALL_VERSIONS: &[&SupportedProtocolVersion] = &[&TLS13, &TLS12];

/// A certificate authority made for one test.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate (server or client) with its key, signed by a [`Ca`].
#[derive(Clone)]
pub struct Leaf {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Ca {
    /// A new CA whose subject CN is `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).expect("SANs");
        params
            .distinguished_name
            .push(DnType::CommonName, "tether test server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate whose subject CN is `cn`.
    pub fn client(&self, cn: &str) -> Leaf {
        self.sign(client_params(cn))
    }

    /// A client certificate whose only name is the DNS subject alternative
    /// name `san` (its subject has no CN).
    pub fn client_with_san(&self, san: &str) -> Leaf {
        let mut params = CertificateParams::new(vec![san.to_owned()]).expect("SAN");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    /// A client certificate for `cn` that expired in 2021.
    pub fn expired_client(&self, cn: &str) -> Leaf {
        let mut params = client_params(cn);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &*self.issuer).expect("sign");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

fn client_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

impl Leaf {
    /// The certificate chain (just the leaf), DER.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert_der.clone()]
    }

    /// The private key, DER.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// The PEM files a gateway's `[tls]` section names, in a temporary directory.
pub struct ServerFiles {
    _dir: tempfile::TempDir,
    /// `tls.cert`.
    pub cert: PathBuf,
    /// `tls.key`.
    pub key: PathBuf,
    /// `tls.client_ca`.
    pub client_ca: PathBuf,
}

impl ServerFiles {
    /// Writes `server`'s certificate and key, and `client_ca` when given.
    pub fn write(server: &Leaf, client_ca: Option<&Ca>) -> ServerFiles {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ServerFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            client_ca: dir.path().join("client-ca.pem"),
            _dir: dir,
        };
        files.replace(server);
        if let Some(ca) = client_ca {
            std::fs::write(&files.client_ca, ca.pem()).expect("write client CA");
        }
        files
    }

    /// Overwrites the certificate and key (for reload tests).
    pub fn replace(&self, server: &Leaf) {
        std::fs::write(&self.cert, &server.cert_pem).expect("write cert");
        std::fs::write(&self.key, &server.key_pem).expect("write key");
    }

    /// The `TETHER_TLS__*` variables naming these files (the client CA only
    /// when one was written).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("TETHER_TLS__CERT", self.cert.display().to_string()),
            ("TETHER_TLS__KEY", self.key.display().to_string()),
        ];
        if self.client_ca.exists() {
            env.push((
                "TETHER_TLS__CLIENT_CA",
                self.client_ca.display().to_string(),
            ));
        }
        env
    }
}

/// A rustls client configuration trusting only `ca`, presenting `identity`
/// when given, speaking only `versions`.
pub fn client_config(
    ca: &Ca,
    identity: Option<&Leaf>,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der()).expect("trust the test CA");
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .expect("protocol versions")
            .with_root_certificates(roots);
    let config = match identity {
        Some(leaf) => builder
            .with_client_auth_cert(leaf.chain(), leaf.key())
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Opens a TLS connection to `addr` (server name 127.0.0.1).
pub async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// A response to [`https_get`].
#[derive(Debug)]
pub struct HttpsResponse {
    /// The status code.
    pub status: u16,
    /// The body as text.
    pub body: String,
    /// The ALPN protocol the server chose.
    pub alpn: Option<Vec<u8>>,
}

/// `GET path` over HTTPS with hyper's HTTP/1.1 client, offering ALPN
/// `http/1.1`.
pub async fn https_get(addr: SocketAddr, ca: &Ca, path: &str) -> Result<HttpsResponse, String> {
    use http_body_util::BodyExt;
    let mut config = (*client_config(ca, None, ALL_VERSIONS)).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = connect(addr, Arc::new(config))
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| format!("http handshake: {e}"))?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(HttpsResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        alpn,
    })
}
