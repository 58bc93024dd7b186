//! One MQTT connection: the CONNECT handshake, the I/O loop and the end.
//!
//! The loop reads whatever the socket has, handles every complete packet, pulls
//! deliveries from the session's queues into the write buffer, and writes the
//! buffer in as few syscalls as the socket allows: outbound frames are
//! coalesced by construction. Everything between reads and writes is
//! synchronous core calls; the task never waits on another task except during
//! takeover.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tether_protocols::mqtt::{
    self, ConnAck, Connect, DecodeError, Disconnect, Packet, Properties, ProtocolVersion,
    ReasonCode,
};
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot, watch};

use super::Context;
use super::will::WillSpec;
use crate::auth::{ClientAcl, LoginError};
use crate::core::bytestr::ByteStr;
use crate::core::exchange::RouteScratch;
use crate::core::queue::{ConsumerId, Delivery, Queue, Wakeup};
use crate::core::session::{Kick, Released, Session, SessionState};
use crate::listener::Slot;
use crate::metrics::{Count, Protocol, RefuseReason};
use crate::store::Lsn;
use crate::transport::{CertIdentity, Reader, Writer};

/// Write-buffer size above which no more deliveries are pulled until it drains.
pub(super) const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Bytes of held-back packets (beyond one maximum-size packet) read while
/// publishing is paused at the memory high-watermark, before reading stops.
const HELD_SLACK: usize = 64 * 1024;
/// MQTT control packet types the pause logic tells apart.
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBCOMP: u8 = 7;
const PINGREQ: u8 = 12;
/// Smallest read reservation; grows while reads keep filling it.
const READ_MIN: usize = 256;
/// A read buffer left empty this long is given back, so idle connections hold
/// none (while traffic flows it is kept: reading into it lets tokio skip the
/// extra read that would otherwise find the socket drained).
const IDLE_RELEASE: Duration = Duration::from_secs(2);
const READ_MAX: usize = 64 * 1024;

/// Why a connection ends.
#[derive(Debug)]
pub(super) enum End {
    /// The client sent DISCONNECT.
    Client {
        /// v5 reason 0x04: publish the will anyway.
        with_will: bool,
    },
    /// The socket closed or failed.
    Closed,
    /// The client broke the protocol; v5 clients get DISCONNECT with this reason.
    Protocol(ReasonCode, String),
    /// Nothing heard for 1.5 × keepalive.
    KeepAlive,
    /// Taken over, or the gateway is stopping.
    Kicked(Kick),
}

/// A consumer this connection has on a core queue.
pub(super) struct Consumer {
    pub queue: Arc<Queue>,
    pub id: ConsumerId,
    pub wakeup: Arc<Wakeup>,
    /// Highest QoS this consumer's subscription was granted (shared groups; the
    /// session queue's bindings already cap QoS per subscription).
    pub max_qos: u8,
    /// For a shared group: the member's subscription identifier and
    /// retain-as-published, which the group queue's binding cannot know.
    pub group: Option<GroupOptions>,
}

/// A shared-subscription member's own options, applied to the group's deliveries.
#[derive(Debug, Clone)]
pub(super) struct GroupOptions {
    pub subscription_id: u32,
    pub retain_as_published: bool,
    /// The topic deliveries carry (`$queue/{name}` subscriptions), instead of
    /// the message's own.
    pub topic: Option<ByteStr>,
}

/// A live, connected MQTT client.
pub(super) struct Conn {
    pub ctx: Arc<Context>,
    pub peer: SocketAddr,
    pub version: ProtocolVersion,
    pub session: Arc<Session>,
    pub state: SessionState,
    pub generation: u64,
    pub acl: ClientAcl,
    pub wbuf: BytesMut,
    pub notify: Arc<Notify>,
    /// Index 0 is the session queue; the rest are shared-subscription groups.
    pub consumers: Vec<Consumer>,
    pub deliveries: Vec<Delivery>,
    /// Outgoing QoS 1/2 messages allowed in flight.
    pub inflight_window: usize,
    /// Largest packet the client accepts.
    pub client_max_packet: usize,
    /// Server → client topic aliases (v5).
    pub out_aliases: HashMap<ByteStr, u16>,
    pub out_alias_max: u16,
    /// Client → server topic aliases (v5), index = alias - 1.
    pub in_aliases: Vec<Option<ByteStr>>,
    /// Routing scratch space, made on the first PUBLISH (many connections
    /// only subscribe).
    pub scratch: Option<Box<RouteScratch>>,
    pub will: Option<Box<WillSpec>>,
    pub session_expiry: Duration,
    /// Whether the client asked for reason strings and user properties on errors.
    pub problem_info: bool,
    /// Set when more deliveries may be pulled (woken, credit freed, buffer drained).
    pub want_pull: bool,
    /// Publishing paused: memory is over the high-watermark, or `flow` is set.
    pub blocked: bool,
    /// A subscriber queue this connection's publishes congested: further
    /// PUBLISH packets wait until it drains (see `mqtt.flow_control_at`).
    pub flow: Option<Arc<Queue>>,
    /// While `blocked`: resolves when publishing may resume (memory below the
    /// watermark, or `flow` drained). Boxed and made only when needed, so an
    /// idle connection's task does not carry it.
    pub unblock: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Frames read while paused, handled in order once memory is available.
    pub held: VecDeque<Bytes>,
    /// Total size of `held`.
    pub held_bytes: usize,
    pub topic_scratch: String,
    /// Negotiated keepalive in seconds (0 = none).
    pub keep_alive: u16,
    /// Rings when another connection takes the session over or the gateway stops.
    pub kicked: Option<oneshot::Receiver<Kick>>,
    /// Tells a waiting successor that the session state is back in the registry.
    pub released: Option<Released>,
    /// Replies that wait for the store, in the order they must be sent.
    pub pending: VecDeque<(Lsn, PendingReply)>,
    /// The store's progress.
    pub durable: watch::Receiver<Lsn>,
}

/// A reply held until what it acknowledges is durable.
#[derive(Debug)]
pub(super) enum PendingReply {
    /// PUBACK / PUBREC / PUBREL / PUBCOMP: on a storage failure a v5 client
    /// gets an error code instead (a v3 client is disconnected, having no way
    /// to hear it).
    Ack {
        /// Which acknowledgement.
        kind: AckKind,
        /// Its packet identifier.
        packet_id: u16,
        /// The reason code on success.
        code: ReasonCode,
    },
    /// Any other packet, already encoded (SUBACK, UNSUBACK, or a reply queued
    /// behind held ones to keep the order).
    Raw(Bytes),
}

/// Which acknowledgement of a publish flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AckKind {
    /// PUBACK.
    Ack,
    /// PUBREC.
    Rec,
    /// PUBREL.
    Rel,
    /// PUBCOMP.
    Comp,
}

/// Runs one plain TCP connection from accept to close.
pub(super) fn run(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<Context>,
    slot: Slot,
    over_limit: bool,
) -> impl Future<Output = ()> + Send {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    serve(rd, wr, peer, ctx, slot, over_limit)
}

/// Runs one connection over any transport (TCP halves, TLS, WebSocket) from
/// accept to close.
pub(super) async fn serve<R: Reader, W: Writer>(
    mut rd: R,
    mut wr: W,
    peer: SocketAddr,
    ctx: Arc<Context>,
    slot: Slot,
    over_limit: bool,
) {
    let _slot = slot;
    // The CONNECT phase is a separate future (boxed, freed when it ends), so
    // its state does not stay in every idle connection's task.
    // The connection's state is boxed too, so it is not kept twice (as the
    // phase's result and as the local); so is the closing, which is brief.
    let Some((mut conn, rbuf)) =
        Box::pin(connect_phase(&ctx, peer, &mut rd, &mut wr, over_limit)).await
    else {
        return;
    };
    let end = conn.run_loop(&mut rd, &mut wr, rbuf).await;
    Box::pin((*conn).finish(end, &mut wr)).await;
}

/// Reads CONNECT, authenticates and opens the session: the connection and
/// whatever arrived after CONNECT, or `None` when it was refused (and told).
async fn connect_phase<R: Reader, W: Writer>(
    ctx: &Arc<Context>,
    peer: SocketAddr,
    rd: &mut R,
    wr: &mut W,
    over_limit: bool,
) -> Option<(Box<Conn>, BytesMut)> {
    let mut rbuf = BytesMut::new();
    let max_packet = ctx.config.max_packet_size.as_usize();

    let first = tokio::time::timeout(
        ctx.config.connect_timeout,
        read_frame(rd, &mut rbuf, max_packet),
    )
    .await;
    let metrics = &ctx.core.metrics;
    let frame = match first {
        Err(_) => {
            let detail = format!("no CONNECT within {:?}", ctx.config.connect_timeout);
            metrics.refused(
                Protocol::Mqtt,
                peer,
                RefuseReason::Timeout,
                &detail,
                None,
                None,
            );
            return None;
        }
        Ok(Ok(Some(frame))) => frame,
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => {
            refuse_bad_connect(ctx, wr, peer, &rbuf, e).await;
            return None;
        }
    };
    metrics.add(
        Protocol::Mqtt,
        Count::BytesReceived,
        (frame.len() + rbuf.len()) as u64,
    );
    let connect = match mqtt::decode(&frame, ProtocolVersion::V3_1_1, max_packet) {
        Ok((Packet::Connect(c), _)) => c,
        Ok((other, _)) => {
            let detail = format!("first packet was {:?}, not CONNECT", other.packet_type());
            let reason = RefuseReason::ProtocolError;
            metrics.refused(Protocol::Mqtt, peer, reason, &detail, None, None);
            return None;
        }
        Err(e) => {
            refuse_bad_connect(ctx, wr, peer, &frame, e).await;
            return None;
        }
    };
    let version = connect.protocol;
    if over_limit {
        let code = if version.is_v5() {
            ReasonCode::QUOTA_EXCEEDED
        } else {
            ReasonCode(3)
        };
        metrics.refused(
            Protocol::Mqtt,
            peer,
            RefuseReason::ConnectionLimit,
            "mqtt.max_connections reached",
            Some(connect.client_id),
            connect.username,
        );
        send_connack_error(wr, version, code, Some("too many connections")).await;
        return None;
    }
    let conn = handshake(ctx, peer, &frame, &connect, wr, rd.identity()).await?;
    Some((Box::new(conn), rbuf))
}

/// Reads one whole frame (for the CONNECT phase).
async fn read_frame<R: Reader>(
    rd: &mut R,
    rbuf: &mut BytesMut,
    max: usize,
) -> Result<Option<Bytes>, DecodeError> {
    loop {
        match mqtt::frame_len(rbuf, max)? {
            Some(total) if rbuf.len() >= total => return Ok(Some(rbuf.split_to(total).freeze())),
            Some(total) => rbuf.reserve(total - rbuf.len()),
            None => rbuf.reserve(READ_MIN),
        }
        match rd.read_buf(rbuf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

/// Answers a CONNECT that failed to decode, in the version it asked for when
/// that much is readable, then closes.
async fn refuse_bad_connect<W: Writer>(
    ctx: &Context,
    wr: &mut W,
    peer: SocketAddr,
    bytes: &[u8],
    e: DecodeError,
) {
    let reason = match e {
        DecodeError::UnsupportedProtocolVersion(_) => RefuseReason::Unsupported,
        _ => RefuseReason::ProtocolError,
    };
    let detail = format!("bad CONNECT: {e}");
    ctx.core
        .metrics
        .refused(Protocol::Mqtt, peer, reason, &detail, None, None);
    match e {
        DecodeError::UnsupportedProtocolVersion(_) | DecodeError::InvalidProtocolName => {
            // Unknown version: answer in the 3.1.1 format, return code 1.
            send_connack_error(wr, ProtocolVersion::V3_1_1, ReasonCode(1), None).await;
        }
        _ if connect_level(bytes) == Some(5) => {
            send_connack_error(wr, ProtocolVersion::V5, e.reason_code(), None).await;
        }
        _ => {}
    }
}

/// The protocol level byte of a (possibly malformed) CONNECT, if readable.
fn connect_level(bytes: &[u8]) -> Option<u8> {
    if bytes.first()? >> 4 != 1 {
        return None;
    }
    let mut i = 1;
    while bytes.get(i)? & 0x80 != 0 {
        i += 1;
    }
    let name_len = u16::from_be_bytes([*bytes.get(i + 1)?, *bytes.get(i + 2)?]) as usize;
    bytes.get(i + 3 + name_len).copied()
}

async fn send_connack_error<W: Writer>(
    wr: &mut W,
    version: ProtocolVersion,
    code: ReasonCode,
    reason: Option<&str>,
) {
    let code = if version.is_v5() { code } else { v3_code(code) };
    let props = Properties {
        reason_string: reason.filter(|_| version.is_v5()),
        ..Properties::new()
    };
    let packet = Packet::ConnAck(ConnAck {
        session_present: false,
        code,
        properties: props,
    });
    let mut buf = BytesMut::new();
    if super::outbound::encode_into(&mut buf, version, &packet).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), wr.write_all(&buf)).await;
    }
    let _ = wr.shutdown().await;
}

/// Polls a connection's `unblock` future (pending while there is none).
struct Unblocked<'a>(&'a mut Option<Pin<Box<dyn Future<Output = ()> + Send>>>);

impl Future for Unblocked<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        match self.0.as_mut() {
            Some(f) => f.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

/// Maps a v5 CONNACK reason to the v3 return code (values 0..=5 pass through).
fn v3_code(code: ReasonCode) -> ReasonCode {
    if code.0 <= 5 {
        return code;
    }
    ReasonCode(code.to_v3_connect_return_code() as u8)
}

/// Authenticates, opens the session and sends CONNACK. `None` when refused.
async fn handshake<W: Writer>(
    ctx: &Arc<Context>,
    peer: SocketAddr,
    frame: &Bytes,
    connect: &Connect<'_>,
    wr: &mut W,
    identity: Option<&CertIdentity>,
) -> Option<Conn> {
    let version = connect.protocol;
    let v5 = version.is_v5();
    let cfg = &ctx.config;
    let refuse = |code: ReasonCode, reason: RefuseReason, why: &str| {
        ctx.core.metrics.refused(
            Protocol::Mqtt,
            peer,
            reason,
            why,
            Some(connect.client_id),
            connect.username,
        );
        code
    };

    if connect.properties.authentication_method.is_some() {
        let code = refuse(
            ReasonCode::BAD_AUTHENTICATION_METHOD,
            RefuseReason::Unsupported,
            "enhanced authentication is not supported",
        );
        send_connack_error(
            wr,
            version,
            code,
            Some("enhanced authentication is not supported"),
        )
        .await;
        return None;
    }
    // A client certificate may fix the client id: an empty one becomes it,
    // another one is refused.
    let cert_client_id = identity.and_then(CertIdentity::client_id);
    if let Some(id) = cert_client_id
        && !connect.client_id.is_empty()
        && connect.client_id != id
    {
        let code = refuse(
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            RefuseReason::NotAuthorized,
            "client id differs from the client certificate's identity",
        );
        send_connack_error(
            wr,
            version,
            code,
            Some("the client id must be the certificate's identity"),
        )
        .await;
        return None;
    }
    // Client identifier: empty means "assign one" (v3.1.1 only with a clean session).
    let assigned = connect.client_id.is_empty();
    if assigned && !connect.clean_start && !v5 && cert_client_id.is_none() {
        let code = refuse(
            ReasonCode(2),
            RefuseReason::ProtocolError,
            "empty client id with clean session 0",
        );
        send_connack_error(wr, version, code, None).await;
        return None;
    }
    let client_id: String = match cert_client_id {
        Some(id) => id.to_owned(),
        None if assigned => format!("tether-{:016x}", rand::random::<u64>()),
        None => connect.client_id.to_owned(),
    };
    if let Some(will) = &connect.will
        && will.retain
        && !cfg.retain_available
    {
        let code = refuse(
            ReasonCode::RETAIN_NOT_SUPPORTED,
            RefuseReason::Unsupported,
            "retained will while retain is disabled",
        );
        send_connack_error(wr, version, code, None).await;
        return None;
    }

    // A client certificate standing for a username has authenticated it;
    // CONNECT's username and password are ignored.
    let cert_username = identity.and_then(CertIdentity::username);
    let username = cert_username.or(connect.username);
    let login = match cert_username {
        Some(_) => Ok(()),
        None => {
            ctx.core
                .auth
                .login(
                    connect.username.map(str::to_owned),
                    connect.password.map(<[u8]>::to_vec),
                )
                .await
        }
    };
    match login {
        Ok(()) => {}
        Err(e) => {
            let (v5code, reason, why) = match e {
                LoginError::BadCredentials => (
                    ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                    RefuseReason::BadCredentials,
                    "bad username or password",
                ),
                LoginError::NotAuthorized => (
                    ReasonCode::NOT_AUTHORIZED,
                    RefuseReason::NotAuthorized,
                    "not authorized",
                ),
            };
            let code = refuse(v5code, reason, why);
            send_connack_error(wr, version, code, Some(why)).await;
            return None;
        }
    }
    let acl = ctx.core.auth.acl_for(username, &client_id);

    // Session expiry: v5 asks for it; v3 persistent sessions last the configured maximum.
    let max_expiry = cfg.max_session_expiry;
    let requested = if v5 {
        Duration::from_secs(
            connect
                .properties
                .session_expiry_interval
                .unwrap_or(0)
                .into(),
        )
    } else if connect.clean_start {
        Duration::ZERO
    } else {
        max_expiry
    };
    let session_expiry = requested.min(max_expiry);

    let opened = ctx
        .core
        .sessions
        .open(
            &client_id,
            connect.clean_start,
            session_expiry,
            crate::registry::ClientInfo::new(peer, username),
        )
        .await;

    // Keepalive, possibly lowered by the server (v5 Server Keep Alive).
    let mut keep_alive = connect.keep_alive;
    let mut server_keep_alive = None;
    if cfg.max_keep_alive > 0 && (keep_alive == 0 || keep_alive > cfg.max_keep_alive) && v5 {
        keep_alive = cfg.max_keep_alive;
        server_keep_alive = Some(keep_alive);
    }

    let client_receive_max = connect.properties.receive_maximum.unwrap_or(u16::MAX);
    let inflight_window = usize::from(client_receive_max.min(cfg.max_inflight));
    let client_max_packet = connect
        .properties
        .maximum_packet_size
        .map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));

    let connack_props = if v5 {
        Properties {
            session_expiry_interval: (session_expiry != requested)
                .then(|| u32::try_from(session_expiry.as_secs()).unwrap_or(u32::MAX)),
            receive_maximum: Some(cfg.receive_maximum),
            maximum_packet_size: Some(u32::try_from(cfg.max_packet_size.0).unwrap_or(u32::MAX)),
            topic_alias_maximum: (cfg.topic_alias_maximum > 0).then_some(cfg.topic_alias_maximum),
            retain_available: (!cfg.retain_available).then_some(0),
            assigned_client_identifier: assigned.then_some(client_id.as_str()),
            server_keep_alive,
            ..Properties::new()
        }
    } else {
        Properties::new()
    };
    let connack = Packet::ConnAck(ConnAck {
        session_present: opened.present,
        code: ReasonCode::SUCCESS,
        properties: connack_props,
    });

    let will = connect
        .will
        .as_ref()
        .map(|w| Box::new(WillSpec::from_connect(w, frame)));
    let notify = Arc::new(Notify::new());
    let mut conn = Conn {
        ctx: ctx.clone(),
        peer,
        version,
        session: opened.session,
        state: opened.state,
        generation: opened.generation,
        acl,
        wbuf: BytesMut::new(),
        notify: notify.clone(),
        consumers: Vec::with_capacity(1),
        deliveries: Vec::new(),
        inflight_window,
        client_max_packet,
        out_aliases: HashMap::new(),
        out_alias_max: if v5 {
            connect.properties.topic_alias_maximum.unwrap_or(0)
        } else {
            0
        },
        in_aliases: vec![None; usize::from(if v5 { cfg.topic_alias_maximum } else { 0 })],
        scratch: None,
        will,
        session_expiry,
        problem_info: connect.properties.request_problem_information != Some(0),
        want_pull: true,
        blocked: false,
        flow: None,
        unblock: None,
        held: VecDeque::new(),
        held_bytes: 0,
        topic_scratch: String::new(),
        keep_alive,
        kicked: Some(opened.kicked),
        released: Some(opened.released),
        pending: VecDeque::new(),
        durable: ctx.core.store.done(),
    };
    if conn.write_packet(&connack).is_err() {
        return None;
    }
    tracing::debug!(%peer, client_id, username, ?version, present = opened.present, "client connected");
    conn.attach_consumers();
    conn.resend_inflight();
    Some(conn)
}

impl Conn {
    /// The main loop: returns why the connection ended.
    async fn run_loop<R: Reader, W: Writer>(
        &mut self,
        rd: &mut R,
        wr: &mut W,
        mut rbuf: BytesMut,
    ) -> End {
        let max_packet = self.ctx.config.max_packet_size.as_usize();
        let keep_alive =
            (self.keep_alive > 0).then(|| Duration::from_millis(u64::from(self.keep_alive) * 1500));
        let mut last_read = Instant::now();
        let far = Instant::now() + Duration::from_secs(86400 * 365);
        let sleep = tokio::time::sleep_until(keep_alive.map_or(far, |k| last_read + k).into());
        tokio::pin!(sleep);
        let Some(mut kicked) = self.kicked.take() else {
            return End::Closed;
        };
        let shutdown = self.ctx.shutdown.clone();
        let memory = self.ctx.core.memory.clone();
        let mut read_hint = READ_MIN;

        // Packets that arrived with CONNECT.
        if let Err(end) = self.process_frames(&mut rbuf, max_packet) {
            return end;
        }
        if rbuf.is_empty() {
            // Let go of the buffer CONNECT was read into.
            rbuf = BytesMut::new();
        }
        loop {
            if !self.pending.is_empty()
                && let Err(end) = self.release_replies()
            {
                return end;
            }
            if self.want_pull && !self.holds_deliveries() {
                self.fill_outbound();
            }
            if !self.wbuf.is_empty() {
                // Write what the socket takes now, without waiting.
                match wr.try_write(&self.wbuf) {
                    Ok(n) => {
                        self.ctx
                            .core
                            .metrics
                            .add(Protocol::Mqtt, Count::BytesSent, n as u64);
                        self.wbuf.advance(n);
                        if self.wbuf.len() < WRITE_HIGH_WATER / 2 {
                            self.want_pull = true;
                        }
                        if self.wbuf.is_empty() {
                            // Written out: give the buffer back, so an idle
                            // connection holds none.
                            self.wbuf = BytesMut::new();
                        }
                        if self.want_pull {
                            continue;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return End::Closed,
                }
            }
            if self.blocked && self.unblock.is_none() {
                self.unblock = Some(match self.flow.clone() {
                    Some(queue) => Box::pin(async move { queue.wait_uncongested().await }),
                    None => {
                        let memory = memory.clone();
                        Box::pin(async move { memory.wait_below().await })
                    }
                });
            }
            let can_read = self.held_bytes < max_packet + HELD_SLACK;
            let buffered = rbuf.capacity() > 0;
            if buffered && rbuf.capacity() - rbuf.len() < READ_MIN {
                rbuf.reserve(read_hint);
            }
            tokio::select! {
                biased;
                kick = &mut kicked => {
                    return End::Kicked(kick.unwrap_or(Kick::TakenOver { resumed: false }));
                }
                _ = shutdown.cancelled() => return End::Kicked(Kick::Shutdown),
                // With a buffer (traffic flowing): read into it. Without one
                // (idle): wait for readability first, so none is held.
                r = async {
                    if buffered {
                        rd.read_buf(&mut rbuf).await.map(Some)
                    } else {
                        rd.readable().await.map(|()| None)
                    }
                }, if can_read => {
                    let n = match r {
                        Err(_) | Ok(Some(0)) => return End::Closed,
                        Ok(Some(n)) => n,
                        Ok(None) => {
                            rbuf.reserve(read_hint);
                            match rd.try_read_buf(&mut rbuf) {
                                Ok(0) => return End::Closed,
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                                Err(_) => return End::Closed,
                                Ok(n) => {
                                    // Give the buffer back if it goes idle again.
                                    let at = tokio::time::Instant::from_std(Instant::now() + IDLE_RELEASE);
                                    if sleep.deadline() > at {
                                        sleep.as_mut().reset(at);
                                    }
                                    n
                                }
                            }
                        }
                    };
                    last_read = Instant::now();
                    if let Err(end) = self.after_read(n, &mut rbuf, &mut read_hint, max_packet) {
                        return end;
                    }
                    if n >= READ_MAX / 2 {
                        // A flooding publisher: let the subscribers it just
                        // woke run (they wait in this worker's LIFO slot,
                        // which other workers cannot steal) instead of
                        // reading on until the budget ends.
                        tokio::task::yield_now().await;
                    }
                }
                r = wr.writable(), if !self.wbuf.is_empty() => {
                    if r.is_err() {
                        return End::Closed;
                    }
                }
                _ = self.notify.notified() => self.want_pull = true,
                r = self.durable.changed(), if !self.pending.is_empty() => {
                    if r.is_err() {
                        return End::Closed;
                    }
                    if let Err(end) = self.release_replies() {
                        return end;
                    }
                }
                _ = &mut sleep => {
                    let now = Instant::now();
                    let mut next = far;
                    if let Some(k) = keep_alive {
                        if self.held_bytes >= max_packet + HELD_SLACK {
                            // We stopped reading, not the client: its silence is ours.
                            last_read = now;
                        }
                        let deadline = last_read + k;
                        if now >= deadline {
                            return End::KeepAlive;
                        }
                        next = deadline;
                    }
                    if rbuf.capacity() > 0 {
                        if rbuf.is_empty() && now >= last_read + IDLE_RELEASE {
                            rbuf = BytesMut::new();
                        } else {
                            next = next.min((last_read + IDLE_RELEASE).max(now + IDLE_RELEASE / 2));
                        }
                    }
                    sleep.as_mut().reset(next.into());
                }
                _ = Unblocked(&mut self.unblock), if self.blocked => {
                    self.unblock = None;
                    self.flow = None;
                    self.blocked = false;
                    if let Err(end) = self.release_held(max_packet) {
                        return end;
                    }
                    if let Err(end) = self.process_frames(&mut rbuf, max_packet) {
                        return end;
                    }
                }
            }
        }
    }

    /// After a read of `n` bytes: grows the read size for a busy connection
    /// and handles the complete packets.
    fn after_read(
        &mut self,
        n: usize,
        rbuf: &mut BytesMut,
        read_hint: &mut usize,
        max_packet: usize,
    ) -> Result<(), End> {
        if n >= *read_hint && *read_hint < READ_MAX {
            *read_hint *= 2;
        }
        self.ctx
            .core
            .metrics
            .add(Protocol::Mqtt, Count::BytesReceived, n as u64);
        self.process_frames(rbuf, max_packet)
    }

    /// Handles every complete packet in `rbuf`.
    ///
    /// Above the memory high-watermark a PUBLISH is held back instead, and so is
    /// everything after it that must keep its order (SUBSCRIBE, DISCONNECT, …);
    /// acknowledgements and PINGREQ are still handled at once, so subscribers
    /// keep draining queues and nobody times out while the publisher waits.
    fn process_frames(&mut self, rbuf: &mut BytesMut, max_packet: usize) -> Result<(), End> {
        // PUBLISH packets read, counted here and added to the metrics once.
        let mut publishes = 0u64;
        let result = self.process_frames_counting(rbuf, max_packet, &mut publishes);
        self.ctx
            .core
            .metrics
            .add(Protocol::Mqtt, Count::MessagesReceived, publishes);
        result
    }

    fn process_frames_counting(
        &mut self,
        rbuf: &mut BytesMut,
        max_packet: usize,
        publishes: &mut u64,
    ) -> Result<(), End> {
        loop {
            let total = match mqtt::frame_len(rbuf, max_packet) {
                Ok(Some(t)) if rbuf.len() >= t => t,
                Ok(Some(t)) => {
                    rbuf.reserve(t - rbuf.len());
                    return Ok(());
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.decode_error(e)),
            };
            let frame = rbuf.split_to(total).freeze();
            let kind = frame[0] >> 4;
            *publishes += u64::from(kind == PUBLISH);
            if (self.blocked || !self.held.is_empty() || (kind == PUBLISH && self.publish_paused()))
                && !matches!(kind, PUBACK..=PUBCOMP | PINGREQ)
            {
                self.blocked = true;
                self.held_bytes += frame.len();
                self.held.push_back(frame);
                continue;
            }
            self.handle_frame(&frame, max_packet)?;
        }
    }

    /// Whether a PUBLISH must wait: memory is over the high-watermark, or a
    /// subscriber queue this connection congested has not drained yet.
    fn publish_paused(&self) -> bool {
        self.flow.is_some() || self.ctx.core.memory.is_over()
    }

    /// Handles held-back frames in order until publishing pauses again.
    fn release_held(&mut self, max_packet: usize) -> Result<(), End> {
        while let Some(frame) = self.held.pop_front() {
            if frame[0] >> 4 == PUBLISH && self.publish_paused() {
                self.held.push_front(frame);
                self.blocked = true;
                return Ok(());
            }
            self.held_bytes -= frame.len();
            self.handle_frame(&frame, max_packet)?;
        }
        Ok(())
    }

    fn handle_frame(&mut self, frame: &Bytes, max_packet: usize) -> Result<(), End> {
        let packet = match mqtt::decode(frame, self.version, max_packet) {
            Ok((p, _)) => p,
            Err(e) => return Err(self.decode_error(e)),
        };
        self.handle_packet(packet, frame)
    }

    fn decode_error(&self, e: DecodeError) -> End {
        End::Protocol(e.reason_code(), e.to_string())
    }

    /// Encodes a packet into the write buffer.
    pub(super) fn write_packet(&mut self, packet: &Packet<'_>) -> Result<(), mqtt::EncodeError> {
        super::outbound::encode_into(&mut self.wbuf, self.version, packet)
    }

    /// Attaches consumers to the session queue and every shared group the
    /// session belongs to.
    fn attach_consumers(&mut self) {
        let queue = self.session.queue.clone();
        self.add_consumer(queue, 2, None);
        let groups: Vec<(String, String, u8, GroupOptions)> = self
            .state
            .subscriptions
            .values()
            .filter_map(|s| {
                let opts = GroupOptions {
                    subscription_id: s.id,
                    retain_as_published: s.options.retain_as_published,
                    topic: None,
                };
                s.group
                    .clone()
                    .map(|g| (g, s.filter.clone(), s.options.qos as u8, opts))
            })
            .collect();
        for (group, filter, qos, opts) in groups {
            if let Some(q) = self.ctx.core.sessions.group_queue(&group, &filter) {
                self.add_consumer(q, qos, Some(opts));
            }
        }
        let named: Vec<(String, u8, GroupOptions)> = self
            .state
            .subscriptions
            .iter()
            .filter_map(|(filter, s)| {
                let name = s.queue.clone()?;
                let opts = GroupOptions {
                    subscription_id: s.id,
                    retain_as_published: false,
                    topic: Some(ByteStr::from(filter.as_str())),
                };
                Some((name, s.options.qos as u8, opts))
            })
            .collect();
        for (name, qos, opts) in named {
            if let Some(q) = self.ctx.core.vhost.queue(&name) {
                self.add_consumer(q, qos, Some(opts));
            }
        }
    }

    /// Starts consuming `queue`, delivering at most `max_qos` (or updates the
    /// options of an existing consumer of it).
    pub(super) fn add_consumer(
        &mut self,
        queue: Arc<Queue>,
        max_qos: u8,
        group: Option<GroupOptions>,
    ) {
        if let Some(c) = self
            .consumers
            .iter_mut()
            .find(|c| Arc::ptr_eq(&c.queue, &queue))
        {
            c.max_qos = max_qos;
            c.group = group;
            return;
        }
        let wakeup = Wakeup::new(self.notify.clone());
        let id = queue.attach(wakeup.clone());
        self.consumers.push(Consumer {
            queue,
            id,
            wakeup,
            max_qos,
            group,
        });
        self.want_pull = true;
    }

    pub(super) fn remove_consumer(&mut self, queue: &Arc<Queue>) {
        if let Some(at) = self
            .consumers
            .iter()
            .position(|c| Arc::ptr_eq(&c.queue, queue))
        {
            let c = self.consumers.swap_remove(at);
            c.queue.detach(c.id);
        }
    }

    /// Ends the connection: tells the client why (v5), hands the session back,
    /// and publishes the will when the end was abnormal.
    async fn finish<W: Writer>(mut self, end: End, wr: &mut W) {
        let client_id = self.session.client_id.clone();
        let peer = self.peer;
        let reason = match &end {
            End::Client { .. } | End::Closed => None,
            End::Protocol(code, why) => {
                tracing::info!(%peer, %client_id, code = code.0, error = %why, "closing connection: protocol error");
                Some((*code, Some(why.as_str())))
            }
            End::KeepAlive => {
                tracing::info!(%peer, %client_id, "closing connection: keepalive timeout");
                Some((ReasonCode::KEEP_ALIVE_TIMEOUT, None))
            }
            End::Kicked(Kick::TakenOver { .. }) => {
                tracing::info!(%peer, %client_id, "closing connection: session taken over");
                Some((ReasonCode::SESSION_TAKEN_OVER, None))
            }
            End::Kicked(Kick::Shutdown) => Some((ReasonCode::SERVER_SHUTTING_DOWN, None)),
            End::Kicked(Kick::Admin) => {
                tracing::info!(%peer, %client_id, "closing connection: closed by an administrator");
                Some((ReasonCode::ADMINISTRATIVE_ACTION, None))
            }
        };
        if let (Some((code, why)), true) = (reason, self.version.is_v5()) {
            let props = Properties {
                reason_string: why.filter(|_| self.problem_info),
                ..Properties::new()
            };
            let _ = self.write_packet(&Packet::Disconnect(Disconnect {
                reason: code,
                properties: props,
            }));
        }
        if !self.wbuf.is_empty() && !matches!(end, End::Closed) {
            let written =
                tokio::time::timeout(Duration::from_secs(1), wr.write_all(&self.wbuf)).await;
            if matches!(written, Ok(Ok(()))) {
                let n = self.wbuf.len() as u64;
                self.ctx
                    .core
                    .metrics
                    .add(Protocol::Mqtt, Count::BytesSent, n);
            }
        }
        let _ = wr.shutdown().await;

        // Stop consuming; shared-group messages in flight go back to the group.
        let session_queue = self.session.queue.clone();
        for c in std::mem::take(&mut self.consumers) {
            c.queue.detach(c.id);
            if !Arc::ptr_eq(&c.queue, &session_queue) {
                c.queue.release_owner(self.session.id);
            }
        }
        self.state.outgoing.retain(|(_, o)| match o {
            crate::core::session::Outgoing::Publish { queue, .. } => {
                Arc::ptr_eq(queue, &session_queue)
            }
            crate::core::session::Outgoing::Released => true,
        });

        // The will: not after a normal DISCONNECT, nor at shutdown; after a
        // takeover only when the new connection does not resume the session
        // with a delayed will (MQTT 5 §3.1.3.2).
        let will = match end {
            End::Client { with_will: false } | End::Kicked(Kick::Shutdown) => None,
            End::Kicked(Kick::TakenOver { resumed }) => self
                .will
                .take()
                .filter(|w| !resumed || w.delay.is_zero())
                .map(|w| (Duration::ZERO, w)),
            _ => self.will.take().map(|w| (w.delay, w)),
        };
        let will = will.map(|(delay, spec)| {
            let core = self.ctx.core.clone();
            let origin = self.session.id;
            let acl = self.acl.clone();
            let client_id = self.session.client_id.clone();
            let action: crate::core::session::WillAction =
                Box::new(move || spec.publish(&core, origin, &acl, &client_id));
            (delay, action)
        });
        let state = std::mem::take(&mut self.state);
        self.ctx.core.sessions.release(
            &self.session,
            self.generation,
            state,
            self.session_expiry,
            will,
        );
        // Hands the session over to a connection waiting to take it.
        drop(self.released.take());
        tracing::debug!(%peer, %client_id, ?end, "client disconnected");
    }
}
