//! MQTT sessions as the core keeps them: a session outlives its connections.
//!
//! A [`Session`] owns a core [`Queue`] (its subscriptions are bindings of that
//! queue on `amq.topic`), its in-flight packet state, and its expiry. While a
//! client is connected the connection task holds the [`SessionState`] (so the
//! hot path takes no lock); when it goes, the state returns here and the
//! session keeps queueing QoS 1/2 messages until it expires.
//!
//! The registry also arbitrates takeover (a second connection with the same
//! client id kicks the first and waits for it to hand the state back), delayed
//! will messages, and shared-subscription groups (one core queue per
//! `$share/{group}/{filter}`, consumed by every member).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tether_protocols::mqtt::{QoS, RetainHandling, SubscriptionOptions};
use tokio::sync::{Notify, oneshot};

use super::exchange::BindingOptions;
use super::message::{KeyForm, now_ms};
use super::queue::{Queue, QueueOptions, QueueStats};
use super::vhost::VHost;
use crate::registry::ClientInfo;
use crate::store::records::{from_json, put_json};
use crate::store::recovery::MetaRecord;
use crate::store::{Key, Op, Ops, Space, keys};

/// A persistent session as stored (`keys::SESSION`, `[client id]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The session queue's identity (its entries are keyed by it).
    pub queue: u64,
    /// Session expiry in seconds.
    pub expiry_secs: u64,
    /// When the client went away (ms since the epoch); 0 while connected.
    pub offline_since_ms: u64,
    /// Subscriptions.
    pub subscriptions: Vec<SubscriptionRecord>,
}

/// One subscription as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    /// The filter as the client wrote it (with any `$share` prefix).
    pub key: String,
    /// The filter without the prefix.
    pub filter: String,
    /// Shared-subscription group.
    pub group: Option<String>,
    /// Granted QoS.
    pub qos: u8,
    /// MQTT 5 no-local.
    pub no_local: bool,
    /// MQTT 5 retain-as-published.
    pub retain_as_published: bool,
    /// MQTT 5 retain handling.
    pub retain_handling: u8,
    /// Subscription identifier.
    pub id: u32,
    /// `$queue/{name}`: the queue consumed.
    pub queue: Option<String>,
}

/// Which side of a QoS 2 exchange a stored packet identifier belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketSide {
    /// An incoming QoS 2 publish got PUBREC and awaits PUBREL.
    Incoming,
    /// An outgoing QoS 2 message got PUBREC; PUBREL was sent, PUBCOMP awaited.
    Released,
}

impl PacketSide {
    fn tag(self) -> &'static [u8] {
        match self {
            PacketSide::Incoming => b"i",
            PacketSide::Released => b"o",
        }
    }
}

/// Why a live connection is being told to go away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// Another connection took the session over. `resumed` says whether the new
    /// connection continues the session (clean start 0), which suppresses a
    /// delayed will.
    TakenOver {
        /// The new connection resumes the session.
        resumed: bool,
    },
    /// The gateway is shutting down.
    Shutdown,
    /// An administrator closed the connection (admin API).
    Admin,
}

/// One subscription of a session.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The filter without any `$share/{group}/` prefix.
    pub filter: String,
    /// The shared-subscription group, if any.
    pub group: Option<String>,
    /// Granted options.
    pub options: SubscriptionOptions,
    /// Subscription identifier (v5), 0 for none.
    pub id: u32,
    /// For `$queue/{name}`: the named core queue this subscription consumes.
    pub queue: Option<String>,
}

/// A message sent to the client and not yet fully acknowledged.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// PUBLISH sent (QoS 1 or 2), awaiting PUBACK / PUBREC.
    Publish {
        /// The queue holding the lease.
        queue: Arc<Queue>,
        /// The lease tag.
        tag: u64,
        /// QoS it was sent at.
        qos: u8,
    },
    /// PUBREC received and PUBREL sent, awaiting PUBCOMP.
    Released,
}

/// The protocol state of a session that must survive reconnects.
#[derive(Debug, Default)]
pub struct SessionState {
    /// Subscriptions by the filter string the client used (with any `$share` prefix).
    pub subscriptions: HashMap<String, Subscription>,
    /// In-flight outgoing messages in send order, by packet identifier.
    pub outgoing: VecDeque<(u16, Outgoing)>,
    /// Incoming QoS 2 packet ids that got PUBREC and await PUBREL.
    pub incoming_qos2: HashSet<u16>,
    /// Last packet identifier used for an outgoing message.
    pub last_packet_id: u16,
}

impl SessionState {
    /// A packet identifier not in use by any in-flight outgoing message.
    pub fn next_packet_id(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            self.last_packet_id = self.last_packet_id.wrapping_add(1);
            if self.last_packet_id == 0 {
                self.last_packet_id = 1;
            }
            let id = self.last_packet_id;
            if !self.outgoing.iter().any(|(p, _)| *p == id) {
                return Some(id);
            }
        }
        None
    }

    /// Removes and returns the in-flight entry for `packet_id`.
    pub fn take_outgoing(&mut self, packet_id: u16) -> Option<Outgoing> {
        let at = self.outgoing.iter().position(|(p, _)| *p == packet_id)?;
        self.outgoing.remove(at).map(|(_, o)| o)
    }
}

#[derive(Debug)]
struct Inner {
    /// `None` while a connection holds the state.
    /// Boxed: most sessions are online, and then the connection holds it.
    state: Option<Box<SessionState>>,
    /// The live connection, if any.
    owner: Option<OwnerSlot>,
    /// Bumped on every attach; timers compare it to know they are stale.
    generation: u64,
    /// Seconds the session outlives its connection (MQTT session expiry).
    expiry: Duration,
    /// Removed from the registry.
    ended: bool,
}

#[derive(Debug)]
struct OwnerSlot {
    kick: Option<oneshot::Sender<Kick>>,
    released: Arc<Handoff>,
    /// Who is connected (for the admin API's connection list).
    client: ClientInfo,
}

/// Where a connection taking a session over waits for the previous one to
/// hand the state back. (A watch channel did this at 330 bytes a connection;
/// this is a flag and one `Notify`.)
#[derive(Debug, Default)]
pub struct Handoff {
    done: AtomicBool,
    notify: Notify,
}

impl Handoff {
    /// Resolves once the state has been handed back.
    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.done.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// Held by the connection that owns a session; dropping it (when the
/// connection has handed its state back) releases a waiting successor.
#[derive(Debug)]
pub struct Released(Arc<Handoff>);

impl Drop for Released {
    fn drop(&mut self) {
        self.0.done.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }
}

/// A session: identity, queue, and state held while offline.
#[derive(Debug)]
pub struct Session {
    /// The client identifier.
    pub client_id: Arc<str>,
    /// Gateway-unique id, used as message origin (no-local) and lease owner.
    pub id: u64,
    /// The session's queue.
    pub queue: Arc<Queue>,
    inner: Mutex<Inner>,
}

/// A live MQTT connection, as [`SessionRegistry::connected`] reports it.
#[derive(Debug, Clone)]
pub struct ConnectedSession {
    /// The session's id.
    pub session_id: u64,
    /// The attach generation (with the session id, names the connection).
    pub generation: u64,
    /// The client identifier.
    pub client_id: Arc<str>,
    /// Who is connected.
    pub client: ClientInfo,
}

/// A session as the admin API reports it.
#[derive(Debug, Clone)]
pub struct SessionSnapshot {
    /// A client is connected.
    pub connected: bool,
    /// How long the session outlives its connection.
    pub expiry: Duration,
    /// The subscriptions (filter as the client wrote it, granted QoS) while
    /// the session is offline; `None` while a connection holds them.
    pub offline_subscriptions: Option<Vec<(String, u8)>>,
}

impl Session {
    /// What the session looks like now.
    pub fn snapshot(&self) -> SessionSnapshot {
        let inner = self.inner.lock();
        SessionSnapshot {
            connected: inner.owner.is_some(),
            expiry: inner.expiry,
            offline_subscriptions: inner.state.as_ref().map(|st| {
                st.subscriptions
                    .iter()
                    .map(|(k, s)| (k.clone(), s.options.qos as u8))
                    .collect()
            }),
        }
    }
}

/// What [`SessionRegistry::open`] hands a new connection.
#[derive(Debug)]
pub struct Opened {
    /// The session.
    pub session: Arc<Session>,
    /// Its state, now owned by the connection.
    pub state: SessionState,
    /// Whether an existing session was resumed (CONNACK session present).
    pub present: bool,
    /// Receives a kick when another connection takes over or the gateway stops.
    pub kicked: oneshot::Receiver<Kick>,
    /// Dropping it tells a waiting successor the state is back.
    pub released: Released,
    /// The generation this connection attached at.
    pub generation: u64,
}

/// A delayed action run when a session's will fires.
pub type WillAction = Box<dyn FnOnce() + Send + 'static>;

/// One shared-subscription group: a queue with a member count.
#[derive(Debug)]
struct Group {
    queue: Arc<Queue>,
    members: usize,
}

/// All sessions, by client id.
#[derive(Debug)]
pub struct SessionRegistry {
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>, ahash::RandomState>>,
    groups: Mutex<HashMap<(String, String), Group, ahash::RandomState>>,
    ids: AtomicU64,
    vhost: Arc<VHost>,
    queue_options: QueueOptions,
    /// The options of every session queue, kept once: for sessions that end
    /// with their connection and for persistent ones.
    volatile_options: Arc<QueueOptions>,
    persistent_options: Arc<QueueOptions>,
    takeover_timeout: Duration,
    /// Counters of ended sessions' and groups' queues (see [`QueueCensus`]);
    /// locked after `sessions` or `groups`, never before.
    retired_sessions: Mutex<Retired>,
    retired_groups: Mutex<Retired>,
}

/// Counters of queues that have gone away, kept so that totals aggregated
/// over many short-lived queues (MQTT sessions, shared groups) never go
/// back when one of them ends.
///
/// A queue being removed is first noted as *ending* (in the same critical
/// section that removes it from its owner's map, so a scrape sees it either
/// there or here), then folded into the totals once it is deleted and its
/// counters are final.
#[derive(Debug, Default)]
struct Retired {
    ending: Vec<Arc<Queue>>,
    stats: QueueStats,
}

impl Retired {
    /// Notes that `q` is leaving its owner's map.
    fn begin(&mut self, q: Arc<Queue>) {
        self.ending.push(q);
    }

    /// Folds the final counters of `q` (deleted now) into the totals.
    fn finish(&mut self, q: &Arc<Queue>) {
        if let Some(at) = self.ending.iter().position(|e| Arc::ptr_eq(e, q)) {
            let q = self.ending.swap_remove(at);
            self.stats += q.stats();
        }
    }

    /// The queues still ending (counted as live) and the totals of those gone.
    fn view(&self) -> (Vec<Arc<Queue>>, QueueStats) {
        (self.ending.clone(), self.stats)
    }
}

/// Every session and shared-group queue at one moment, with the counters of
/// those already gone, so sums over them never go back (for metrics).
#[derive(Debug, Default)]
pub struct QueueCensus {
    /// Session queues (those being ended included).
    pub sessions: Vec<Arc<Queue>>,
    /// Counters of session queues that are gone.
    pub sessions_retired: QueueStats,
    /// Shared-subscription group queues (those being deleted included).
    pub groups: Vec<Arc<Queue>>,
    /// Counters of group queues that are gone.
    pub groups_retired: QueueStats,
}

fn session_key(client_id: &str) -> Key {
    keys::meta_key(keys::SESSION, &[client_id.as_bytes()])
}

fn packet_key(client_id: &str, side: PacketSide, packet_id: u16) -> Key {
    keys::meta_key(
        keys::PACKET,
        &[client_id.as_bytes(), side.tag(), &packet_id.to_be_bytes()],
    )
}

impl SessionRegistry {
    /// A registry whose session queues live in `vhost` with `queue_options`.
    pub fn new(vhost: Arc<VHost>, queue_options: QueueOptions) -> Self {
        SessionRegistry {
            sessions: Mutex::new(HashMap::default()),
            groups: Mutex::new(HashMap::default()),
            ids: AtomicU64::new(1 << 32),
            vhost,
            volatile_options: Arc::new(QueueOptions {
                durable: false,
                ..queue_options.clone()
            }),
            persistent_options: Arc::new(QueueOptions {
                durable: true,
                ..queue_options.clone()
            }),
            queue_options,
            takeover_timeout: Duration::from_secs(5),
            retired_sessions: Mutex::new(Retired::default()),
            retired_groups: Mutex::new(Retired::default()),
        }
    }

    /// Every session and group queue, and the counters of those gone.
    pub fn queue_census(&self) -> QueueCensus {
        let (sessions, sessions_retired) = {
            let map = self.sessions.lock();
            let (mut ending, retired) = self.retired_sessions.lock().view();
            ending.extend(map.values().map(|s| s.queue.clone()));
            (ending, retired)
        };
        let (groups, groups_retired) = {
            let map = self.groups.lock();
            let (mut ending, retired) = self.retired_groups.lock().view();
            ending.extend(map.values().map(|g| g.queue.clone()));
            (ending, retired)
        };
        QueueCensus {
            sessions,
            sessions_retired,
            groups,
            groups_retired,
        }
    }

    /// The vhost sessions live in.
    pub fn vhost(&self) -> &Arc<VHost> {
        &self.vhost
    }

    /// A fresh id for a connection or session (message origin, lease owner).
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Number of sessions, online and offline.
    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a session for `client_id` exists.
    pub fn contains(&self, client_id: &str) -> bool {
        self.sessions.lock().contains_key(client_id)
    }

    /// Attaches a new connection to the session of `client_id`, kicking any live
    /// connection first and waiting for it to hand the state back. With
    /// `clean_start` an existing session is ended and a new one begins. A
    /// session created with a non-zero `expiry` is persistent: it and its
    /// QoS 1/2 messages survive a restart. `client` says who connects.
    pub async fn open(
        self: &Arc<Self>,
        client_id: &str,
        clean_start: bool,
        expiry: Duration,
        client: ClientInfo,
    ) -> Opened {
        loop {
            let session = {
                let mut map = self.sessions.lock();
                match map.get(client_id) {
                    Some(s) => s.clone(),
                    None => {
                        let s = self.new_session(client_id, !expiry.is_zero());
                        map.insert(s.client_id.clone(), s.clone());
                        s
                    }
                }
            };
            let released_rx = {
                let mut inner = session.inner.lock();
                if inner.ended {
                    continue;
                }
                match inner.owner.as_mut() {
                    Some(owner) => {
                        if let Some(kick) = owner.kick.take() {
                            let _ = kick.send(Kick::TakenOver {
                                resumed: !clean_start,
                            });
                        }
                        owner.released.clone()
                    }
                    None => {
                        if clean_start && inner.generation > 0 {
                            // A session that was used before: end it entirely and
                            // start a new one.
                            drop(inner);
                            self.end(&session);
                            continue;
                        }
                        let state = inner.state.take().map(|b| *b).unwrap_or_default();
                        let (kick_tx, kick_rx) = oneshot::channel();
                        let handoff = Arc::new(Handoff::default());
                        inner.owner = Some(OwnerSlot {
                            kick: Some(kick_tx),
                            released: handoff.clone(),
                            client,
                        });
                        inner.generation += 1;
                        let present = !clean_start && inner.generation > 1;
                        inner.expiry = expiry;
                        let generation = inner.generation;
                        drop(inner);
                        self.save(&session, &state, expiry, true);
                        return Opened {
                            generation,
                            session: session.clone(),
                            state,
                            present,
                            kicked: kick_rx,
                            released: Released(handoff),
                        };
                    }
                }
            };
            // Wait for the kicked connection to hand the state back.
            let wait = released_rx.wait();
            if tokio::time::timeout(self.takeover_timeout, wait)
                .await
                .is_err()
            {
                tracing::warn!(
                    client_id,
                    "previous connection did not release its session in time; ending it"
                );
                let mut inner = session.inner.lock();
                inner.owner = None;
                // The stuck connection's eventual release must not overwrite us.
                inner.generation += 1;
            }
        }
    }

    fn new_session(&self, client_id: &str, persistent: bool) -> Arc<Session> {
        let id = self.next_id();
        // The queue is private to the session; its name is not a vhost name, so
        // AMQP clients cannot declare over it.
        let options = if persistent {
            &self.persistent_options
        } else {
            &self.volatile_options
        };
        let queue = Queue::new_shared(
            format!("mqtt-session:{client_id}").into(),
            options.clone(),
            self.vhost.env(),
        );
        Arc::new(Session {
            client_id: client_id.into(),
            id,
            queue,
            inner: Mutex::new(Inner {
                state: None,
                owner: None,
                generation: 0,
                expiry: Duration::ZERO,
                ended: false,
            }),
        })
    }

    /// Hands the state back when a connection ends. The session then lives for
    /// `expiry` (zero ends it now). A `will` runs after `will_delay` unless the
    /// session is resumed first; it also runs when the session ends earlier.
    pub fn release(
        self: &Arc<Self>,
        session: &Arc<Session>,
        generation: u64,
        state: SessionState,
        expiry: Duration,
        will: Option<(Duration, WillAction)>,
    ) {
        {
            let mut inner = session.inner.lock();
            if inner.generation != generation || inner.ended {
                // Someone else already owns or ended the session (takeover timed out).
                drop(inner);
                if let Some((_, action)) = will {
                    action();
                }
                return;
            }
            if !expiry.is_zero() {
                self.save(session, &state, expiry, false);
            }
            inner.state = Some(Box::new(state));
            inner.owner = None;
            inner.expiry = expiry;
        }
        if expiry.is_zero() {
            self.end(session);
            if let Some((_, action)) = will {
                action();
            }
            return;
        }
        let (will_delay, will_action) = match will {
            Some((d, a)) if d.is_zero() => {
                a();
                (None, None)
            }
            Some((d, a)) => (Some(d.min(expiry)), Some(a)),
            None => (None, None),
        };
        self.expire_later(session, generation, expiry, will_delay, will_action);
    }

    /// Ends the session after `expiry` unless it is resumed first, running
    /// `will_action` after `will_delay`.
    fn expire_later(
        self: &Arc<Self>,
        session: &Arc<Session>,
        generation: u64,
        expiry: Duration,
        will_delay: Option<Duration>,
        will_action: Option<WillAction>,
    ) {
        let this = self.clone();
        let session = session.clone();
        tokio::spawn(async move {
            let mut will_action = will_action;
            if let Some(d) = will_delay {
                tokio::time::sleep(d).await;
                if !this.still_offline(&session, generation) {
                    return;
                }
                if let Some(a) = will_action.take() {
                    a();
                }
            }
            tokio::time::sleep(expiry.saturating_sub(will_delay.unwrap_or_default())).await;
            if this.still_offline(&session, generation) {
                this.end(&session);
            }
        });
    }

    fn still_offline(&self, session: &Session, generation: u64) -> bool {
        let inner = session.inner.lock();
        !inner.ended && inner.owner.is_none() && inner.generation == generation
    }

    /// Ends a session: removes it, its bindings, its queue and its group memberships.
    pub fn end(&self, session: &Arc<Session>) {
        let state = {
            let mut inner = session.inner.lock();
            if inner.ended {
                return;
            }
            inner.ended = true;
            inner.state.take()
        };
        {
            let mut map = self.sessions.lock();
            if map
                .get(&session.client_id)
                .is_some_and(|s| Arc::ptr_eq(s, session))
            {
                map.remove(&session.client_id);
            }
            self.retired_sessions.lock().begin(session.queue.clone());
        }
        if let Some(state) = state {
            for sub in state.subscriptions.values() {
                if let Some(group) = &sub.group {
                    self.leave_group(group, &sub.filter, session.id);
                }
            }
        }
        if session.queue.is_stored() {
            let mut ops = Ops::new();
            ops.push(Op::Remove(Space::Meta, session_key(&session.client_id)));
            ops.push(Op::RemovePrefix(
                Space::Meta,
                keys::meta_key(keys::PACKET, &[session.client_id.as_bytes()]),
            ));
            self.vhost.env().store.submit(ops);
        }
        // Unbind and drop the session queue.
        let dest = super::exchange::Destination::Queue(session.queue.clone());
        let bound = std::mem::take(&mut *session.queue.bound_from.lock());
        for b in bound {
            if let Some(ex) = b.exchange.upgrade() {
                ex.unbind(&dest, &b.key, b.key_form, None);
            }
        }
        session.queue.delete();
        self.retired_sessions.lock().finish(&session.queue);
    }

    /// Stores a persistent session's subscriptions and expiry (nothing for a
    /// session that is not persistent). Call after every change; the ticket
    /// is noted for [`crate::store::tracked`].
    pub fn save(&self, session: &Session, state: &SessionState, expiry: Duration, online: bool) {
        if !session.queue.is_stored() {
            return;
        }
        let mut subscriptions: Vec<SubscriptionRecord> = state
            .subscriptions
            .iter()
            .map(|(key, s)| SubscriptionRecord {
                key: key.clone(),
                filter: s.filter.clone(),
                group: s.group.clone(),
                qos: s.options.qos as u8,
                no_local: s.options.no_local,
                retain_as_published: s.options.retain_as_published,
                retain_handling: s.options.retain_handling as u8,
                id: s.id,
                queue: s.queue.clone(),
            })
            .collect();
        subscriptions.sort_by(|a, b| a.key.cmp(&b.key));
        let record = SessionRecord {
            queue: session.queue.uid(),
            expiry_secs: expiry.as_secs(),
            offline_since_ms: if online { 0 } else { now_ms() },
            subscriptions,
        };
        let mut ops = Ops::new();
        ops.push(put_json(session_key(&session.client_id), &record));
        self.vhost.env().store.submit(ops);
    }

    /// Records (or forgets) a packet identifier in a QoS 2 exchange of a
    /// persistent session, so exactly-once survives a restart.
    pub fn save_packet(&self, session: &Session, side: PacketSide, packet_id: u16, held: bool) {
        if !session.queue.is_stored() {
            return;
        }
        let key = packet_key(&session.client_id, side, packet_id);
        let mut ops = Ops::new();
        ops.push(if held {
            Op::Put(Space::Meta, key, bytes::Bytes::new())
        } else {
            Op::Remove(Space::Meta, key)
        });
        self.vhost.env().store.submit(ops);
    }

    /// Rebuilds the persistent sessions kept in the store (start-up): each
    /// is offline, with its subscriptions bound, its queued messages back,
    /// and its expiry counting from when its client went away.
    pub fn restore(self: &Arc<Self>, sessions: Vec<MetaRecord>, packets: Vec<MetaRecord>) {
        let mut held: HashMap<String, Vec<(PacketSide, u16)>> = HashMap::new();
        for p in packets {
            let side = match p.parts.get(1).map(Vec::as_slice) {
                Some(b"i") => PacketSide::Incoming,
                Some(b"o") => PacketSide::Released,
                _ => continue,
            };
            let Some(id) = p
                .parts
                .get(2)
                .and_then(|b| <[u8; 2]>::try_from(b.as_slice()).ok())
                .map(u16::from_be_bytes)
            else {
                continue;
            };
            held.entry(p.part(0)).or_default().push((side, id));
        }
        let now = now_ms();
        for r in sessions {
            let client_id = r.part(0);
            let Some(rec) = from_json::<SessionRecord>("session", &r.value) else {
                continue;
            };
            let offline_since = if rec.offline_since_ms == 0 {
                now
            } else {
                rec.offline_since_ms
            };
            let expiry = Duration::from_secs(rec.expiry_secs);
            let left =
                expiry.saturating_sub(Duration::from_millis(now.saturating_sub(offline_since)));
            let queue = Queue::restored_shared(
                format!("mqtt-session:{client_id}").into(),
                self.persistent_options.clone(),
                rec.queue,
                self.vhost.env(),
            );
            let session = Arc::new(Session {
                client_id: client_id.as_str().into(),
                id: self.next_id(),
                queue,
                inner: Mutex::new(Inner {
                    state: None,
                    owner: None,
                    // Used before: a resuming client is told its session is present.
                    generation: 1,
                    expiry,
                    ended: false,
                }),
            });
            let mut state = SessionState::default();
            for s in rec.subscriptions {
                let options = SubscriptionOptions {
                    qos: QoS::from_u8(s.qos).unwrap_or(QoS::AtMostOnce),
                    no_local: s.no_local,
                    retain_as_published: s.retain_as_published,
                    retain_handling: RetainHandling::from_u8(s.retain_handling).unwrap_or_default(),
                };
                if s.queue.is_none() {
                    match &s.group {
                        None => {
                            self.bind(
                                &session,
                                &s.filter,
                                BindingOptions {
                                    max_qos: s.qos,
                                    no_local_origin: s.no_local.then_some(session.id),
                                    retain_as_published: s.retain_as_published,
                                    subscription_id: s.id,
                                },
                            );
                        }
                        Some(g) => {
                            self.join_group(g, &s.filter);
                        }
                    }
                }
                state.subscriptions.insert(
                    s.key,
                    Subscription {
                        filter: s.filter,
                        group: s.group,
                        options,
                        id: s.id,
                        queue: s.queue,
                    },
                );
            }
            for (side, id) in held.remove(&client_id).unwrap_or_default() {
                match side {
                    PacketSide::Incoming => {
                        state.incoming_qos2.insert(id);
                    }
                    PacketSide::Released => state.outgoing.push_back((id, Outgoing::Released)),
                }
            }
            session.inner.lock().state = Some(Box::new(state));
            self.sessions
                .lock()
                .insert(session.client_id.clone(), session.clone());
            if left.is_zero() {
                self.end(&session);
            } else {
                self.expire_later(&session, 1, left, None, None);
            }
        }
    }

    /// Every session, online and offline (for listings).
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.sessions.lock().values().cloned().collect()
    }

    /// The live MQTT connections: one per session a client is connected to.
    pub fn connected(&self) -> Vec<ConnectedSession> {
        self.sessions()
            .into_iter()
            .filter_map(|s| {
                let inner = s.inner.lock();
                let owner = inner.owner.as_ref()?;
                Some(ConnectedSession {
                    session_id: s.id,
                    generation: inner.generation,
                    client_id: s.client_id.clone(),
                    client: owner.client.clone(),
                })
            })
            .collect()
    }

    /// Asks the connection attached to session `session_id` at `generation`
    /// to close ([`Kick::Admin`]). False when that connection is gone.
    pub fn close_connection(&self, session_id: u64, generation: u64) -> bool {
        let Some(session) = self
            .sessions
            .lock()
            .values()
            .find(|s| s.id == session_id)
            .cloned()
        else {
            return false;
        };
        let mut inner = session.inner.lock();
        if inner.generation != generation || inner.ended {
            return false;
        }
        let Some(owner) = inner.owner.as_mut() else {
            return false;
        };
        // No sender left: it is being taken over or closed already.
        if let Some(kick) = owner.kick.take() {
            let _ = kick.send(Kick::Admin);
        }
        true
    }

    /// The queues of shared-subscription groups.
    pub fn group_queues(&self) -> Vec<Arc<Queue>> {
        self.groups
            .lock()
            .values()
            .map(|g| g.queue.clone())
            .collect()
    }

    /// Kicks every live connection (shutdown).
    pub fn kick_all(&self, kick: Kick) {
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        for s in sessions {
            if let Some(owner) = s.inner.lock().owner.as_mut()
                && let Some(k) = owner.kick.take()
            {
                let _ = k.send(kick);
            }
        }
    }

    /// Binds the session queue to `filter` on `amq.topic` with `options`.
    pub fn bind(&self, session: &Session, filter: &str, options: BindingOptions) -> bool {
        let ex = self.vhost.amq_topic().clone();
        self.vhost
            .bind_queue(&ex, &session.queue, filter, KeyForm::Mqtt, options)
    }

    /// Removes the session queue's binding for `filter`.
    pub fn unbind(&self, session: &Session, filter: &str) -> bool {
        let ex = self.vhost.amq_topic().clone();
        self.vhost
            .unbind_queue(&ex, &session.queue, filter, KeyForm::Mqtt, None)
    }

    /// Joins the shared group `(group, filter)`, creating its queue and binding
    /// on first use. Returns the group queue.
    pub fn join_group(&self, group: &str, filter: &str) -> Arc<Queue> {
        let mut groups = self.groups.lock();
        let entry = groups
            .entry((group.to_owned(), filter.to_owned()))
            .or_insert_with(|| {
                let queue = Queue::new(
                    format!("mqtt-share:{group}:{filter}").into(),
                    QueueOptions {
                        best_effort_needs_consumer: true,
                        ..self.queue_options.clone()
                    },
                    self.vhost.env(),
                );
                let ex = self.vhost.amq_topic().clone();
                self.vhost
                    .bind_queue(&ex, &queue, filter, KeyForm::Mqtt, BindingOptions::plain());
                Group { queue, members: 0 }
            });
        entry.members += 1;
        entry.queue.clone()
    }

    /// Leaves a shared group; the group's queue is deleted with its last member.
    /// Messages leased to `owner` go back to the group for other members.
    pub fn leave_group(&self, group: &str, filter: &str, owner: u64) {
        let mut groups = self.groups.lock();
        let key = (group.to_owned(), filter.to_owned());
        let Some(g) = groups.get_mut(&key) else {
            return;
        };
        g.queue.release_owner(owner);
        g.members -= 1;
        if g.members == 0
            && let Some(g) = groups.remove(&key)
        {
            self.retired_groups.lock().begin(g.queue.clone());
            drop(groups);
            let dest = super::exchange::Destination::Queue(g.queue.clone());
            let bound = std::mem::take(&mut *g.queue.bound_from.lock());
            for b in bound {
                if let Some(ex) = b.exchange.upgrade() {
                    ex.unbind(&dest, &b.key, b.key_form, None);
                }
            }
            g.queue.delete();
            self.retired_groups.lock().finish(&g.queue);
        }
    }

    /// The queue of shared group `(group, filter)`, if it exists.
    pub fn group_queue(&self, group: &str, filter: &str) -> Option<Arc<Queue>> {
        self.groups
            .lock()
            .get(&(group.to_owned(), filter.to_owned()))
            .map(|g| g.queue.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::bytestr::ByteStr;
    use crate::core::message::{Message, SharedMessage};
    use crate::core::queue::{DeliveryHints, QueueEnv};

    fn message() -> SharedMessage {
        Arc::new(Message {
            id: 1,
            routing_key: ByteStr::from("t"),
            key_form: KeyForm::Mqtt,
            exchange: ByteStr::from_static(""),
            payload: bytes::Bytes::from_static(b"m"),
            qos: 1,
            retain: false,
            persistent: false,
            priority: 0,
            published_at_ms: 0,
            expires_at: None,
            origin: 0,
            props: None,
        })
    }

    fn enqueued(queues: &[Arc<Queue>]) -> u64 {
        queues.iter().map(|q| q.stats().enqueued).sum()
    }

    #[tokio::test]
    async fn ended_sessions_and_groups_keep_their_counters_in_the_census() {
        let vhost = VHost::new("/", QueueEnv::new(1 << 30));
        let reg = Arc::new(SessionRegistry::new(vhost, QueueOptions::default()));
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1883));
        let info = crate::registry::ClientInfo::new(peer, None);
        let opened = reg.open("c1", true, Duration::ZERO, info).await;
        let hints = DeliveryHints {
            qos: 1,
            ..DeliveryHints::default()
        };
        opened.session.queue.enqueue(&message(), hints.clone());
        let group = reg.join_group("g", "t");
        group.enqueue(&message(), hints.clone());
        group.enqueue(&message(), hints);

        let before = reg.queue_census();
        assert_eq!(enqueued(&before.sessions), 1);
        assert_eq!(before.sessions_retired.enqueued, 0);
        assert_eq!(enqueued(&before.groups), 2);

        reg.end(&opened.session);
        reg.leave_group("g", "t", 0);
        let after = reg.queue_census();
        assert!(after.sessions.is_empty(), "no live or ending session queue");
        assert_eq!(after.sessions_retired.enqueued, 1);
        assert!(after.groups.is_empty());
        assert_eq!(after.groups_retired.enqueued, 2);
    }
}
