//! Authentication and authorisation shared by every front end.
//!
//! Users are configured with argon2 password hashes; ACL rules grant or deny
//! publishing and subscribing on MQTT topic filters, with `%c` (client id) and
//! `%u` (username) substituted per client. Rules are compiled once per connection
//! into a [`ClientAcl`], so the per-publish check does no allocation.
//!
//! This module decides; it never touches sockets or the core.

use std::collections::HashMap;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tether_protocols::topic;

use crate::config::{AclAction, AclEffect, AuthConfig};

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginError {
    /// Unknown user, wrong password, or anonymous login while anonymous access is off.
    BadCredentials,
    /// The credentials are fine but this client may not connect.
    NotAuthorized,
}

/// The compiled user table and rules.
#[derive(Debug)]
pub struct Authenticator {
    allow_anonymous: bool,
    users: HashMap<String, String>,
    /// Tags of the users that have any (`administrator`: admin API access).
    tags: HashMap<String, Vec<String>>,
    rules: Vec<RuleTemplate>,
    default: AclEffect,
}

#[derive(Debug)]
struct RuleTemplate {
    user: Option<String>,
    client_id: Option<String>,
    action: AclAction,
    topic: String,
    effect: AclEffect,
}

/// One client's rules after `%c`/`%u` substitution.
#[derive(Debug, Clone)]
pub enum ClientAcl {
    /// No rules are configured: everything is allowed.
    AllowAll,
    /// Rules apply; the first that matches decides, else `default`.
    Rules {
        /// Compiled rules in configuration order.
        rules: Vec<ClientRule>,
        /// The decision when no rule matches.
        default: AclEffect,
    },
}

/// A rule with its filter already substituted for one client.
#[derive(Debug, Clone)]
pub struct ClientRule {
    action: AclAction,
    filter: String,
    effect: AclEffect,
}

impl Authenticator {
    /// Builds the authenticator from validated configuration.
    pub fn new(config: &AuthConfig) -> Self {
        Authenticator {
            allow_anonymous: config.allow_anonymous,
            users: config
                .users
                .iter()
                .map(|u| (u.name.clone(), u.password_hash.clone()))
                .collect(),
            tags: config
                .users
                .iter()
                .filter(|u| !u.tags.is_empty())
                .map(|u| (u.name.clone(), u.tags.clone()))
                .collect(),
            rules: config
                .acl
                .iter()
                .map(|r| RuleTemplate {
                    user: r.user.clone(),
                    client_id: r.client_id.clone(),
                    action: r.action,
                    topic: r.topic.clone(),
                    effect: r.effect,
                })
                .collect(),
            default: config.acl_default,
        }
    }

    /// Checks a username and password. Verifying argon2 costs milliseconds of CPU:
    /// call this from a blocking-friendly context (see [`Authenticator::login`]).
    pub fn check_login(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<(), LoginError> {
        let Some(name) = username else {
            return if self.allow_anonymous {
                Ok(())
            } else {
                Err(LoginError::NotAuthorized)
            };
        };
        let Some(hash) = self.users.get(name) else {
            // Unknown users with anonymous access on may still connect only
            // without credentials; a wrong name is a failed login.
            return Err(LoginError::BadCredentials);
        };
        let password = password.unwrap_or_default();
        let parsed = PasswordHash::new(hash).map_err(|_| LoginError::BadCredentials)?;
        Argon2::default()
            .verify_password(password, &parsed)
            .map_err(|_| LoginError::BadCredentials)
    }

    /// Whether a user called `name` is configured.
    pub fn knows_user(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// The tags of user `name` (empty for unknown users).
    pub fn tags(&self, name: &str) -> &[String] {
        self.tags.get(name).map_or(&[], Vec::as_slice)
    }

    /// Whether user `name` exists and carries `tag`.
    pub fn has_tag(&self, name: &str, tag: &str) -> bool {
        self.tags(name).iter().any(|t| t == tag)
    }

    /// Whether any user carries `tag`.
    pub fn any_user_has_tag(&self, tag: &str) -> bool {
        self.tags.values().flatten().any(|t| t == tag)
    }

    /// The stored password hash of user `name`.
    pub fn password_hash(&self, name: &str) -> Option<&str> {
        self.users.get(name).map(String::as_str)
    }

    /// Whether any user is configured (otherwise credentials are ignored when
    /// anonymous access is on).
    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    /// Verifies credentials on the blocking pool so connection tasks keep running.
    pub async fn login(
        self: &std::sync::Arc<Self>,
        username: Option<String>,
        password: Option<Vec<u8>>,
    ) -> Result<(), LoginError> {
        if username.is_none() {
            return self.check_login(None, None);
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            this.check_login(username.as_deref(), password.as_deref())
        })
        .await
        .unwrap_or(Err(LoginError::BadCredentials))
    }

    /// Compiles the rules for one client, substituting `%c` and `%u`.
    ///
    /// A rule whose substitution would put a wildcard or level separator into the
    /// filter (a client id such as `#`) is dropped for that client, so an
    /// identity can never widen its own access.
    pub fn acl_for(&self, username: Option<&str>, client_id: &str) -> ClientAcl {
        if self.rules.is_empty() {
            return ClientAcl::AllowAll;
        }
        let rules = self
            .rules
            .iter()
            .filter(|r| r.user.as_deref().is_none_or(|u| Some(u) == username))
            .filter(|r| r.client_id.as_deref().is_none_or(|c| c == client_id))
            .filter_map(|r| {
                let filter = substitute(&r.topic, client_id, username)?;
                Some(ClientRule {
                    action: r.action,
                    filter,
                    effect: r.effect,
                })
            })
            .collect();
        ClientAcl::Rules {
            rules,
            default: self.default,
        }
    }
}

fn substitute(template: &str, client_id: &str, username: Option<&str>) -> Option<String> {
    let unsafe_value = |v: &str| v.contains(['/', '+', '#']) || v.is_empty();
    let mut out = String::with_capacity(template.len() + client_id.len());
    let mut rest = template;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        if let Some(t) = tail.strip_prefix('c') {
            if unsafe_value(client_id) {
                return None;
            }
            out.push_str(client_id);
            rest = t;
        } else if let Some(t) = tail.strip_prefix('u') {
            let u = username?;
            if unsafe_value(u) {
                return None;
            }
            out.push_str(u);
            rest = t;
        } else {
            out.push('%');
            rest = tail;
        }
    }
    out.push_str(rest);
    Some(out)
}

impl ClientAcl {
    /// Whether this client may publish to `topic` (an MQTT topic name).
    pub fn may_publish(&self, topic: &str) -> bool {
        match self {
            ClientAcl::AllowAll => true,
            ClientAcl::Rules { rules, default } => {
                let hit = rules.iter().find(|r| {
                    matches!(r.action, AclAction::Publish | AclAction::All)
                        && topic::matches(&r.filter, topic)
                });
                hit.map_or(*default, |r| r.effect) == AclEffect::Allow
            }
        }
    }

    /// Whether this client may subscribe to `filter` (an MQTT topic filter, without
    /// any `$share/group/` prefix): allowed when an allow rule's filter covers every
    /// topic the subscription could match.
    pub fn may_subscribe(&self, filter: &str) -> bool {
        match self {
            ClientAcl::AllowAll => true,
            ClientAcl::Rules { rules, default } => {
                let hit = rules.iter().find(|r| {
                    matches!(r.action, AclAction::Subscribe | AclAction::All)
                        && filter_covers(&r.filter, filter)
                });
                hit.map_or(*default, |r| r.effect) == AclEffect::Allow
            }
        }
    }
}

/// Whether every topic matched by `inner` is also matched by `outer`.
pub fn filter_covers(outer: &str, inner: &str) -> bool {
    let mut o = outer.split('/');
    let mut i = inner.split('/');
    let mut first = true;
    loop {
        match (o.next(), i.next()) {
            (Some("#"), Some(level)) => {
                // A leading wildcard in the rule does not reach `$` topics.
                return !(first && level.starts_with('$'));
            }
            (Some("#"), None) => return true,
            (Some("+"), Some(level)) => {
                if level == "#" || (first && level.starts_with('$')) {
                    return false;
                }
            }
            (Some(a), Some(b)) => {
                if a != b || b == "+" || b == "#" {
                    return false;
                }
            }
            (None, None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
        }
        first = false;
    }
}

/// Validates a configured password hash; `Err` says what is wrong.
pub fn check_password_hash(hash: &str) -> Result<(), String> {
    PasswordHash::new(hash).map(|_| ()).map_err(|e| {
        format!("is not an argon2 PHC string ({e}); make one with `tether hash-password`")
    })
}

/// Validates a configured ACL topic filter (after placeholder substitution).
pub fn check_acl_topic(template: &str) -> Result<(), String> {
    let probe = substitute(template, "client", Some("user")).ok_or("invalid placeholder")?;
    topic::validate_topic_filter(&probe).map_err(|e| format!("{e}"))
}

/// Hashes a password into an argon2id PHC string for the `users` table.
pub fn hash_password(password: &[u8]) -> String {
    let mut salt_bytes = [0u8; 16];
    rand::fill(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes is a valid salt length");
    Argon2::default()
        .hash_password(password, &salt)
        .expect("argon2 with default parameters cannot fail on a valid salt")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AclRuleConfig, UserConfig};

    fn auth(rules: Vec<AclRuleConfig>) -> Authenticator {
        Authenticator::new(&AuthConfig {
            allow_anonymous: false,
            users: vec![UserConfig {
                name: "alice".into(),
                password_hash: hash_password(b"secret"),
                tags: vec!["administrator".into()],
            }],
            acl: rules,
            acl_default: AclEffect::Deny,
        })
    }

    fn rule(action: AclAction, topic: &str) -> AclRuleConfig {
        AclRuleConfig {
            user: None,
            client_id: None,
            action,
            topic: topic.into(),
            effect: AclEffect::Allow,
        }
    }

    #[test]
    fn correct_password_logs_in_and_wrong_one_does_not() {
        let a = auth(vec![]);
        assert_eq!(a.check_login(Some("alice"), Some(b"secret")), Ok(()));
        assert_eq!(
            a.check_login(Some("alice"), Some(b"nope")),
            Err(LoginError::BadCredentials)
        );
        assert_eq!(
            a.check_login(Some("bob"), Some(b"secret")),
            Err(LoginError::BadCredentials)
        );
        assert_eq!(a.check_login(None, None), Err(LoginError::NotAuthorized));
    }

    #[test]
    fn tags_are_looked_up_by_user() {
        let a = auth(vec![]);
        assert!(a.has_tag("alice", "administrator"));
        assert!(!a.has_tag("alice", "monitoring"));
        assert!(!a.has_tag("bob", "administrator"));
        assert!(a.any_user_has_tag("administrator"));
        assert!(a.tags("bob").is_empty());
        assert!(
            a.password_hash("alice")
                .is_some_and(|h| h.starts_with("$argon2"))
        );
    }

    #[test]
    fn client_id_placeholder_scopes_a_device_to_its_own_topics() {
        let acl = auth(vec![rule(AclAction::All, "devices/%c/#")]).acl_for(None, "d1");
        assert!(acl.may_publish("devices/d1/telemetry"));
        assert!(!acl.may_publish("devices/d2/telemetry"));
        assert!(acl.may_subscribe("devices/d1/cmd"));
        assert!(acl.may_subscribe("devices/d1/#"));
        assert!(!acl.may_subscribe("devices/+/cmd"));
    }

    #[test]
    fn wildcard_client_id_cannot_widen_access() {
        let acl = auth(vec![rule(AclAction::All, "devices/%c/#")]).acl_for(None, "#");
        assert!(!acl.may_publish("devices/x/y"));
    }

    #[test]
    fn first_matching_rule_decides() {
        let mut deny = rule(AclAction::Publish, "a/secret");
        deny.effect = AclEffect::Deny;
        let acl = auth(vec![deny, rule(AclAction::Publish, "a/#")]).acl_for(None, "c");
        assert!(!acl.may_publish("a/secret"));
        assert!(acl.may_publish("a/open"));
    }

    #[test]
    fn covering_respects_wildcards() {
        assert!(filter_covers("a/#", "a/+/c"));
        assert!(filter_covers("a/+/c", "a/b/c"));
        assert!(!filter_covers("a/+/c", "a/#"));
        assert!(!filter_covers("#", "$SYS/x"));
        assert!(filter_covers("a/#", "a"));
        assert!(!filter_covers("a/b", "a/+"));
    }
}
