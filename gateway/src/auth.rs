//! Authentication and authorisation shared by every front end.
//!
//! Users are configured with argon2 password hashes; ACL rules grant or deny
//! publishing and subscribing on MQTT topic filters, with `%c` (client id) and
//! `%u` (username) substituted per client. Rules are compiled once per connection
//! into a [`ClientAcl`], so the per-publish check does no allocation and never
//! looks at the shared tables.
//!
//! The user table and the rules can change while the gateway runs (the admin
//! API's `/api/users` and `/api/acl`, a definitions document): they live in
//! one immutable [`AuthTable`] snapshot behind an `ArcSwap`, replaced whole by
//! each change, so a login or CONNECT reads a consistent table without a lock
//! and a change takes effect for the next login. Connections keep the ACL
//! they were given at CONNECT.
//!
//! Runtime changes are stored (Meta space: `keys::USER [name]`, `keys::ACL
//! []`) and read back at start-up over `[auth]` from the configuration: for
//! the names and the ACL they mention, what was changed at runtime wins
//! (including a deletion of a configured user).
//!
//! This module decides; it never touches sockets or the core.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arc_swap::ArcSwap;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tether_protocols::topic;

use crate::config::{AclAction, AclEffect, AclRuleConfig, AuthConfig, UserConfig};
use crate::definitions::Change;
use crate::store::records::{from_json, put_json};
use crate::store::recovery::MetaRecord;
use crate::store::{Op, Ops, SharedStore, Space, keys};

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginError {
    /// Unknown user, wrong password, or anonymous login while anonymous access is off.
    BadCredentials,
    /// The credentials are fine but this client may not connect.
    NotAuthorized,
}

/// The users and access rules in force: one immutable snapshot, replaced
/// whole when anything changes.
#[derive(Debug, Clone)]
pub struct AuthTable {
    /// Users by name.
    pub users: BTreeMap<String, UserConfig>,
    /// ACL rules in order; the first that matches decides.
    pub acl: Vec<AclRuleConfig>,
    /// The decision when rules exist but none matches.
    pub acl_default: AclEffect,
}

/// The user table and rules, changeable at runtime.
#[derive(Debug)]
pub struct Authenticator {
    allow_anonymous: bool,
    table: ArcSwap<AuthTable>,
    /// Serialises changes, so the store sees them in the order they were made.
    writer: Mutex<Writer>,
}

#[derive(Debug, Default)]
struct Writer {
    store: Option<SharedStore>,
    /// Users of the configuration file: deleting one at runtime is stored as
    /// a deletion, so a restart does not bring it back.
    configured: BTreeSet<String>,
}

/// A runtime user change as stored under `keys::USER [name]`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct StoredUser {
    deleted: bool,
    password_hash: String,
    tags: Vec<String>,
}

/// The runtime ACL as stored under `keys::ACL []`.
#[derive(Debug, Serialize, Deserialize)]
struct StoredAcl {
    rules: Vec<AclRuleConfig>,
    default: AclEffect,
}

fn user_key(name: &str) -> crate::store::Key {
    keys::meta_key(keys::USER, &[name.as_bytes()])
}

fn acl_key() -> crate::store::Key {
    keys::meta_key(keys::ACL, &[])
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
    /// Builds the authenticator from validated configuration (changes are
    /// not stored; see [`Authenticator::restored`]).
    pub fn new(config: &AuthConfig) -> Self {
        Authenticator {
            allow_anonymous: config.allow_anonymous,
            table: ArcSwap::from_pointee(AuthTable {
                users: config
                    .users
                    .iter()
                    .map(|u| (u.name.clone(), u.clone()))
                    .collect(),
                acl: config.acl.clone(),
                acl_default: config.acl_default,
            }),
            writer: Mutex::new(Writer {
                store: None,
                configured: config.users.iter().map(|u| u.name.clone()).collect(),
            }),
        }
    }

    /// The configuration's users and rules with the runtime changes `store`
    /// kept (`users`: `keys::USER` records, `acl`: `keys::ACL`) laid over
    /// them; later changes are stored there too.
    pub fn restored(
        config: &AuthConfig,
        store: SharedStore,
        users: Vec<MetaRecord>,
        acl: Vec<MetaRecord>,
    ) -> Self {
        let auth = Authenticator::new(config);
        let mut table = AuthTable::clone(&auth.table.load());
        for r in users {
            let name = r.part(0);
            let Some(u) = from_json::<StoredUser>("user", &r.value) else {
                continue;
            };
            if u.deleted {
                table.users.remove(&name);
            } else if let Err(e) = check_password_hash(&u.password_hash) {
                tracing::warn!(user = %name, "skipping a stored user whose password_hash {e}");
            } else {
                table.users.insert(
                    name.clone(),
                    UserConfig {
                        name,
                        password_hash: u.password_hash,
                        tags: u.tags,
                    },
                );
            }
        }
        if let Some(a) = acl
            .last()
            .and_then(|r| from_json::<StoredAcl>("acl", &r.value))
        {
            table.acl = a.rules;
            table.acl_default = a.default;
        }
        auth.table.store(Arc::new(table));
        if store.is_persistent() {
            auth.writer.lock().store = Some(store);
        }
        auth
    }

    /// The table in force now.
    pub fn table(&self) -> Arc<AuthTable> {
        self.table.load_full()
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
        let table = self.table.load();
        let Some(user) = table.users.get(name) else {
            // Unknown users with anonymous access on may still connect only
            // without credentials; a wrong name is a failed login.
            return Err(LoginError::BadCredentials);
        };
        let password = password.unwrap_or_default();
        let parsed =
            PasswordHash::new(&user.password_hash).map_err(|_| LoginError::BadCredentials)?;
        Argon2::default()
            .verify_password(password, &parsed)
            .map_err(|_| LoginError::BadCredentials)
    }

    /// Whether a user called `name` exists.
    pub fn knows_user(&self, name: &str) -> bool {
        self.table.load().users.contains_key(name)
    }

    /// Whether user `name` exists and carries `tag`.
    pub fn has_tag(&self, name: &str, tag: &str) -> bool {
        self.table
            .load()
            .users
            .get(name)
            .is_some_and(|u| u.tags.iter().any(|t| t == tag))
    }

    /// Whether any user carries `tag`.
    pub fn any_user_has_tag(&self, tag: &str) -> bool {
        self.table
            .load()
            .users
            .values()
            .any(|u| u.tags.iter().any(|t| t == tag))
    }

    /// The stored password hash of user `name`.
    pub fn password_hash(&self, name: &str) -> Option<String> {
        self.table
            .load()
            .users
            .get(name)
            .map(|u| u.password_hash.clone())
    }

    /// Whether any user exists (otherwise credentials are ignored when
    /// anonymous access is on).
    pub fn has_users(&self) -> bool {
        !self.table.load().users.is_empty()
    }

    /// The tags of user `name`, if it exists.
    pub fn user_tags(&self, name: &str) -> Option<Vec<String>> {
        self.table.load().users.get(name).map(|u| u.tags.clone())
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
        let table = self.table.load();
        if table.acl.is_empty() {
            return ClientAcl::AllowAll;
        }
        let rules = table
            .acl
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
            default: table.acl_default,
        }
    }

    /// Creates or replaces users (already validated), storing what changed;
    /// one result per user, in order. New logins see them at once.
    pub fn put_users(&self, users: &[UserConfig]) -> Vec<Change> {
        let writer = self.writer.lock();
        let mut table = AuthTable::clone(&self.table.load());
        let mut ops = Ops::new();
        let changes = users
            .iter()
            .map(|u| {
                let change = match table.users.get(&u.name) {
                    None => Change::Created,
                    Some(old) if old == u => return Change::Unchanged,
                    Some(_) => Change::Updated,
                };
                table.users.insert(u.name.clone(), u.clone());
                let stored = StoredUser {
                    deleted: false,
                    password_hash: u.password_hash.clone(),
                    tags: u.tags.clone(),
                };
                ops.push(put_json(user_key(&u.name), &stored));
                change
            })
            .collect();
        if !ops.is_empty() {
            self.table.store(Arc::new(table));
            writer.submit(ops);
        }
        changes
    }

    /// Deletes user `name`; whether it existed. Its open connections stay.
    pub fn delete_user(&self, name: &str) -> bool {
        let writer = self.writer.lock();
        let mut table = AuthTable::clone(&self.table.load());
        if table.users.remove(name).is_none() {
            return false;
        }
        self.table.store(Arc::new(table));
        let mut ops = Ops::new();
        ops.push(if writer.configured.contains(name) {
            put_json(
                user_key(name),
                &StoredUser {
                    deleted: true,
                    ..Default::default()
                },
            )
        } else {
            Op::Remove(Space::Meta, user_key(name))
        });
        writer.submit(ops);
        true
    }

    /// Replaces the ACL rules (already validated) and the default decision.
    /// New connections get them; open ones keep the rules of their CONNECT.
    pub fn set_acl(&self, rules: Vec<AclRuleConfig>, default: AclEffect) -> Change {
        let writer = self.writer.lock();
        let mut table = AuthTable::clone(&self.table.load());
        if table.acl == rules && table.acl_default == default {
            return Change::Unchanged;
        }
        table.acl = rules;
        table.acl_default = default;
        let stored = StoredAcl {
            rules: table.acl.clone(),
            default,
        };
        self.table.store(Arc::new(table));
        let mut ops = Ops::new();
        ops.push(put_json(acl_key(), &stored));
        writer.submit(ops);
        Change::Updated
    }
}

impl Writer {
    fn submit(&self, ops: Ops) {
        if let Some(store) = &self.store {
            store.submit(ops);
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
        assert_eq!(a.user_tags("bob"), None);
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

    fn user(name: &str, password: &[u8], tags: &[&str]) -> UserConfig {
        UserConfig {
            name: name.into(),
            password_hash: hash_password(password),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[test]
    fn runtime_user_changes_apply_to_the_next_login() {
        let a = auth(vec![]);
        let bob = user("bob", b"pw", &["monitoring"]);
        assert_eq!(a.put_users(std::slice::from_ref(&bob)), [Change::Created]);
        assert_eq!(a.put_users(std::slice::from_ref(&bob)), [Change::Unchanged]);
        assert_eq!(a.check_login(Some("bob"), Some(b"pw")), Ok(()));
        assert_eq!(a.user_tags("bob"), Some(vec!["monitoring".to_owned()]));
        let bob2 = user("bob", b"pw2", &[]);
        assert_eq!(a.put_users(&[bob2]), [Change::Updated]);
        assert_eq!(
            a.check_login(Some("bob"), Some(b"pw")),
            Err(LoginError::BadCredentials)
        );
        assert!(a.delete_user("bob"));
        assert!(!a.delete_user("bob"));
        assert!(!a.knows_user("bob"));
    }

    #[test]
    fn runtime_acl_applies_to_the_next_client() {
        let a = auth(vec![]);
        assert!(matches!(a.acl_for(None, "c"), ClientAcl::AllowAll));
        let rules = vec![rule(AclAction::Publish, "open/#")];
        assert_eq!(a.set_acl(rules.clone(), AclEffect::Deny), Change::Updated);
        assert_eq!(a.set_acl(rules, AclEffect::Deny), Change::Unchanged);
        let acl = a.acl_for(None, "c");
        assert!(acl.may_publish("open/x"));
        assert!(!acl.may_publish("closed/x"));
    }

    #[test]
    fn stored_runtime_changes_are_laid_over_the_configuration() {
        use crate::store::recovery::MetaRecord;
        let config = AuthConfig {
            allow_anonymous: false,
            users: vec![user("alice", b"a", &[]), user("carol", b"c", &[])],
            acl: vec![rule(AclAction::All, "#")],
            acl_default: AclEffect::Deny,
        };
        let record = |name: &str, value: serde_json::Value| MetaRecord {
            parts: vec![name.as_bytes().to_vec()],
            value: bytes::Bytes::from(value.to_string()),
        };
        let users = vec![
            record("alice", serde_json::json!({"deleted": true})),
            record(
                "bob",
                serde_json::json!({"password_hash": hash_password(b"b"), "tags": ["x"]}),
            ),
            record("mallory", serde_json::json!({"password_hash": "plaintext"})),
        ];
        let acl = vec![MetaRecord {
            parts: Vec::new(),
            value: bytes::Bytes::from(
                serde_json::json!({"rules": [{"action": "publish", "topic": "b/#"}], "default": "allow"})
                    .to_string(),
            ),
        }];
        let store: crate::store::SharedStore =
            std::sync::Arc::new(crate::store::memory::MemoryStore::default());
        let a = Authenticator::restored(&config, store, users, acl);
        assert!(!a.knows_user("alice"), "a stored deletion wins");
        assert!(a.knows_user("carol"), "configured users stay");
        assert_eq!(a.check_login(Some("bob"), Some(b"b")), Ok(()));
        assert!(!a.knows_user("mallory"), "a bad stored hash is skipped");
        let table = a.table();
        assert_eq!(table.acl.len(), 1);
        assert_eq!(table.acl[0].topic, "b/#");
        assert_eq!(table.acl_default, AclEffect::Allow);
    }
}
