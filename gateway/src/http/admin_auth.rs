//! The admin API's guard: HTTP Basic credentials, checked before any
//! `/api/` handler runs.
//!
//! Accepted: any configured user tagged `administrator`, with its password.
//! While no user carries that tag, the built-in `guest`/`guest` credential is
//! accepted from loopback peers only (RabbitMQ's convention), so an operator
//! on the gateway's own machine can use `tether admin` out of the box, and
//! nobody else can.
//!
//! Argon2 verification costs milliseconds of CPU by design, and a dashboard
//! polls several endpoints a second: a successful verification is remembered
//! for [`CACHE_TTL`], keyed by a digest of the user, the password and the
//! stored hash (so a changed password or user is never served from the
//! cache). Failures are never cached.
//!
//! This module decides; it never touches the core.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::Api;
use super::admin::ApiFailure;
use crate::auth::Authenticator;

/// The tag that grants admin API access (RabbitMQ's).
pub const ADMIN_TAG: &str = "administrator";
/// How long a successful password verification is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Remembered verifications at most; beyond it the expired ones go, and if
/// none has expired, all of them.
const CACHE_MAX: usize = 1024;

/// Remembered successful verifications.
#[derive(Debug, Default)]
pub struct AdminGuard {
    verified: Mutex<HashMap<[u8; 32], Instant>>,
}

/// What the credential alone decides, before any password is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstLook {
    /// The built-in guest credential from a loopback peer, while no
    /// administrator is configured.
    Accept,
    /// A user tagged `administrator`: its password must be verified.
    Verify,
    /// Refused, with the reason given to the client.
    Refuse(&'static str),
}

/// Decides what to do with `user`/`password` from `peer` (see the module
/// docs). Pure, so the rule is unit-tested without sockets.
pub fn first_look(
    auth: &Authenticator,
    user: &str,
    password: &str,
    peer: Option<SocketAddr>,
) -> FirstLook {
    if !auth.any_user_has_tag(ADMIN_TAG) {
        if user != "guest" || password != "guest" {
            return FirstLook::Refuse(
                "No administrator is configured: only guest/guest is accepted, from this machine.",
            );
        }
        return if peer.is_some_and(|p| is_loopback(p.ip())) {
            FirstLook::Accept
        } else {
            FirstLook::Refuse(
                "guest/guest is accepted from loopback only; configure a user tagged \"administrator\" for remote access.",
            )
        };
    }
    if auth.has_tag(user, ADMIN_TAG) {
        FirstLook::Verify
    } else {
        FirstLook::Refuse("The credential was refused.")
    }
}

/// Whether `ip` is a loopback address (IPv4-mapped IPv6 included).
fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Splits an `Authorization: Basic ...` header into user and password.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

impl AdminGuard {
    /// Whether `user`/`password` is accepted from `peer`; `Err` carries the
    /// reason for the client.
    pub async fn check(
        &self,
        auth: &Arc<Authenticator>,
        user: &str,
        password: &str,
        peer: Option<SocketAddr>,
    ) -> Result<(), &'static str> {
        match first_look(auth, user, password, peer) {
            FirstLook::Accept => Ok(()),
            FirstLook::Refuse(why) => Err(why),
            FirstLook::Verify => {
                let stored = auth.password_hash(user).unwrap_or_default();
                let key = cache_key(user, password, &stored);
                let now = Instant::now();
                if self
                    .verified
                    .lock()
                    .get(&key)
                    .is_some_and(|until| *until > now)
                {
                    return Ok(());
                }
                auth.login(Some(user.to_owned()), Some(password.as_bytes().to_vec()))
                    .await
                    .map_err(|_| "The credential was refused.")?;
                let mut cache = self.verified.lock();
                if cache.len() >= CACHE_MAX {
                    cache.retain(|_, until| *until > now);
                    if cache.len() >= CACHE_MAX {
                        cache.clear();
                    }
                }
                cache.insert(key, now + CACHE_TTL);
                Ok(())
            }
        }
    }
}

fn cache_key(user: &str, password: &str, stored_hash: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [user, password, stored_hash] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// The middleware in front of every `/api/` route.
pub async fn guard(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let headers = req.headers();
    let dialog = !headers
        .get("x-requested-with")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("XMLHttpRequest"));
    let refused = |why: &str| {
        let mut resp =
            ApiFailure::new(StatusCode::UNAUTHORIZED, "unauthorized", why).into_response();
        if dialog {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tether\""),
            );
        }
        resp
    };
    let Some((user, password)) = basic_credentials(headers) else {
        return refused("The admin API needs HTTP Basic credentials.");
    };
    if let Err(why) = api
        .admin
        .guard
        .check(&api.core.auth, &user, &password, peer)
        .await
    {
        tracing::info!(?peer, user, "admin API request refused: {why}");
        return refused(why);
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthConfig, UserConfig};

    fn auth(users: &[(&str, &str, &[&str])]) -> Arc<Authenticator> {
        Arc::new(Authenticator::new(&AuthConfig {
            users: users
                .iter()
                .map(|(name, password, tags)| UserConfig {
                    name: (*name).into(),
                    password_hash: crate::auth::hash_password(password.as_bytes()),
                    tags: tags.iter().map(|t| (*t).into()).collect(),
                })
                .collect(),
            ..Default::default()
        }))
    }

    fn at(addr: &str) -> Option<SocketAddr> {
        Some(addr.parse().unwrap())
    }

    #[test]
    fn guest_is_accepted_from_loopback_only_while_no_administrator_exists() {
        let none = auth(&[("sensor", "pw", &[])]);
        let local = at("127.0.0.1:40000");
        assert_eq!(
            first_look(&none, "guest", "guest", local),
            FirstLook::Accept
        );
        assert_eq!(
            first_look(&none, "guest", "guest", at("[::1]:40000")),
            FirstLook::Accept
        );
        assert_eq!(
            first_look(&none, "guest", "guest", at("[::ffff:127.0.0.1]:40000")),
            FirstLook::Accept
        );
        assert!(matches!(
            first_look(&none, "guest", "guest", at("192.0.2.7:40000")),
            FirstLook::Refuse(_)
        ));
        assert!(matches!(
            first_look(&none, "guest", "guest", None),
            FirstLook::Refuse(_)
        ));
        assert!(matches!(
            first_look(&none, "guest", "wrong", local),
            FirstLook::Refuse(_)
        ));
        assert!(matches!(
            first_look(&none, "sensor", "pw", local),
            FirstLook::Refuse(_)
        ));
    }

    #[test]
    fn with_an_administrator_only_administrators_are_verified() {
        let a = auth(&[("ops", "pw", &[ADMIN_TAG]), ("sensor", "pw", &["device"])]);
        let local = at("127.0.0.1:40000");
        assert!(matches!(
            first_look(&a, "guest", "guest", local),
            FirstLook::Refuse(_)
        ));
        assert!(matches!(
            first_look(&a, "sensor", "pw", local),
            FirstLook::Refuse(_)
        ));
        assert_eq!(
            first_look(&a, "ops", "anything", at("192.0.2.7:1")),
            FirstLook::Verify
        );
    }

    #[tokio::test]
    async fn a_verified_password_is_remembered_and_a_wrong_one_is_not() {
        let a = auth(&[("ops", "pw", &[ADMIN_TAG])]);
        let guard = AdminGuard::default();
        let remote = at("192.0.2.7:1");
        assert!(guard.check(&a, "ops", "nope", remote).await.is_err());
        assert!(guard.verified.lock().is_empty());
        assert!(guard.check(&a, "ops", "pw", remote).await.is_ok());
        assert_eq!(guard.verified.lock().len(), 1);
        assert!(guard.check(&a, "ops", "pw", remote).await.is_ok());
        assert!(guard.check(&a, "ops", "nope", remote).await.is_err());
    }

    #[test]
    fn basic_credentials_parse_and_garbage_does_not() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic b3BzOnA6dw=="),
        );
        assert_eq!(
            basic_credentials(&h),
            Some(("ops".to_owned(), "p:w".to_owned()))
        );
        for bad in ["Bearer x", "Basic !!!", "Basic", "Basic b3Bz"] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
            assert_eq!(basic_credentials(&h), None, "{bad}");
        }
    }
}
