//! One AMQP connection: the handshake (protocol header, Start/StartOk with
//! PLAIN or AMQPLAIN, Tune/TuneOk, Open), the I/O loop (frames in, coalesced
//! frames out, heartbeats, connection.blocked), and the close.
//!
//! Everything between a read and a write is synchronous core calls made from
//! this task; channels are plain state owned by it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amq_protocol::protocol::{AMQPClass, connection};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};

use super::Context;
use super::channel::Channel;
use super::frame::{
    self, AmqpError, FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, PROTOCOL_HEADER,
    RawFrame, Scope, code,
};
use crate::auth::LoginError;
use crate::core::exchange::RouteScratch;
use crate::core::vhost::VHost;
use crate::listener::Slot;
use crate::metrics::{Count, Protocol, RefuseReason};
use crate::store::Lsn;
use crate::transport::{Reader, Writer};

/// Stop pulling deliveries above this many buffered bytes.
pub(super) const WRITE_HIGH_WATER: usize = 128 * 1024;
/// Frames read while publishing is paused, beyond one frame, before reading stops.
const HELD_LIMIT: usize = 256 * 1024;
const READ_MIN: usize = 4096;

/// Capabilities the client announced in StartOk.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ClientCaps {
    pub consumer_cancel_notify: bool,
    pub connection_blocked: bool,
    pub authentication_failure_close: bool,
}

/// Why the loop ended.
enum End {
    /// The client closed (connection.close / close-ok) or the socket ended.
    Closed,
    /// We raised a connection exception.
    Error(AmqpError),
    /// The gateway is stopping.
    Shutdown,
    /// An administrator closed the connection (admin API).
    Forced,
}

/// A connection after the handshake.
pub(super) struct Conn {
    pub ctx: Arc<Context>,
    pub peer: SocketAddr,
    /// Connection id: owner of exclusive queues and origin of its messages.
    pub id: u64,
    pub vhost: Arc<VHost>,
    /// The name the client logged in with (checked against `user-id`).
    pub user: String,
    pub frame_max: usize,
    pub channel_max: u16,
    pub caps: ClientCaps,
    /// Negotiated heartbeat interval (`None`: disabled).
    pub heartbeat: Option<Duration>,
    pub channels: HashMap<u16, Channel, ahash::RandomState>,
    pub wbuf: BytesMut,
    pub scratch: Vec<u8>,
    pub route: RouteScratch,
    pub notify: Arc<Notify>,
    pub want_pull: bool,
    pub key_scratch: String,
    /// Publishing paused at the memory high-watermark.
    blocked: bool,
    /// connection.blocked was sent and not yet lifted.
    blocked_sent: bool,
    held: VecDeque<RawFrame>,
    held_bytes: usize,
    /// The store's progress.
    pub durable: watch::Receiver<Lsn>,
    /// Output from this offset of `wbuf` on waits until this ticket is
    /// durable (replies to declarations, bindings, deletions, tx.commit).
    barrier: Option<(Lsn, usize)>,
    /// Its entry in the connection registry (removed when dropped), and
    /// what rings when an administrator closes it.
    registration: (
        crate::registry::Registration,
        tokio::sync::oneshot::Receiver<()>,
    ),
}

/// Runs one plain TCP AMQP connection from accept to close.
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

/// Runs one AMQP connection over any transport (TCP halves, TLS) from accept
/// to close.
pub(super) async fn serve<R: Reader, W: Writer>(
    mut rd: R,
    mut wr: W,
    peer: SocketAddr,
    ctx: Arc<Context>,
    slot: Slot,
    over_limit: bool,
) {
    let _slot = slot;
    let mut rbuf = BytesMut::with_capacity(READ_MIN);
    let timeout = ctx.config.handshake_timeout;
    let hs = tokio::time::timeout(
        timeout,
        handshake(&ctx, peer, &mut rd, &mut wr, &mut rbuf, over_limit),
    )
    .await;
    let mut conn = match hs {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(_) => {
            let detail = format!("handshake not completed within {timeout:?}");
            let reason = RefuseReason::Timeout;
            ctx.core
                .metrics
                .refused(Protocol::Amqp, peer, reason, &detail, None, None);
            return;
        }
    };
    let end = conn.run_loop(&mut rd, &mut wr, rbuf).await;
    conn.finish(end, &mut rd, &mut wr).await;
}

/// Reads until one whole frame is available.
async fn read_frame<R: Reader>(
    rd: &mut R,
    rbuf: &mut BytesMut,
    frame_max: usize,
) -> Result<Option<RawFrame>, AmqpError> {
    loop {
        if let Some(f) = frame::next_frame(rbuf, frame_max)? {
            return Ok(Some(f));
        }
        if rbuf.capacity() - rbuf.len() < 512 {
            rbuf.reserve(READ_MIN);
        }
        match rd.read_buf(rbuf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

/// Reads the next method frame during the handshake (heartbeats are skipped).
async fn read_method<R: Reader>(
    rd: &mut R,
    rbuf: &mut BytesMut,
    frame_max: usize,
) -> Result<Option<AMQPClass>, AmqpError> {
    loop {
        let Some(f) = read_frame(rd, rbuf, frame_max).await? else {
            return Ok(None);
        };
        match f.kind {
            FRAME_HEARTBEAT => continue,
            FRAME_METHOD if f.channel == 0 => return frame::parse_method(&f.payload).map(Some),
            _ => {
                return Err(AmqpError::connection(
                    code::UNEXPECTED_FRAME,
                    "expected a connection method on channel 0",
                ));
            }
        }
    }
}

async fn send_close<W: Writer>(wr: &mut W, e: &AmqpError) {
    let mut buf = BytesMut::new();
    let mut scratch = Vec::new();
    frame::put_method(&mut buf, &mut scratch, 0, close_method(e));
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.write_all(&buf)).await;
}

fn close_method(e: &AmqpError) -> AMQPClass {
    AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
        reply_code: e.code,
        reply_text: ShortString::from(truncate(&e.text, 255)),
        class_id: e.class_id,
        method_id: e.method_id,
    }))
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(super) fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn server_properties() -> FieldTable {
    let mut caps = FieldTable::default();
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
    ] {
        caps.insert(cap.into(), AMQPValue::Boolean(true));
    }
    let mut props = FieldTable::default();
    props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    props.insert("product".into(), AMQPValue::LongString("Tether".into()));
    props.insert(
        "version".into(),
        AMQPValue::LongString(env!("CARGO_PKG_VERSION").into()),
    );
    props.insert("platform".into(), AMQPValue::LongString("Rust".into()));
    props.insert(
        "information".into(),
        AMQPValue::LongString(
            "Tether IoT gateway: MQTT, AMQP 0-9-1 and SQS/SNS on one core".into(),
        ),
    );
    props.insert(
        "cluster_name".into(),
        AMQPValue::LongString("tether".into()),
    );
    props
}

fn client_caps(props: &FieldTable) -> ClientCaps {
    let mut caps = ClientCaps::default();
    if let Some(AMQPValue::FieldTable(t)) = props.inner().get("capabilities") {
        let on = |k: &str| matches!(t.inner().get(k), Some(AMQPValue::Boolean(true)));
        caps.consumer_cancel_notify = on("consumer_cancel_notify");
        caps.connection_blocked = on("connection.blocked");
        caps.authentication_failure_close = on("authentication_failure_close");
    }
    caps
}

/// Username and password from a PLAIN or AMQPLAIN response.
fn credentials(mechanism: &str, response: &[u8]) -> Result<(String, Vec<u8>), AmqpError> {
    let refused =
        |why: &str| AmqpError::connection(code::ACCESS_REFUSED, format!("ACCESS_REFUSED - {why}"));
    match mechanism {
        "PLAIN" => {
            // authzid NUL authcid NUL password
            let mut parts = response.split(|b| *b == 0);
            let (Some(_authz), Some(user), Some(pass), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(refused("malformed PLAIN response"));
            };
            let user = std::str::from_utf8(user).map_err(|_| refused("username is not UTF-8"))?;
            Ok((user.to_owned(), pass.to_vec()))
        }
        "AMQPLAIN" => {
            // A field table without its length prefix (what clients send), or with it.
            let mut with_len = (response.len() as u32).to_be_bytes().to_vec();
            with_len.extend_from_slice(response);
            let table = amq_protocol::types::parsing::parse_field_table(&with_len[..])
                .or_else(|_| amq_protocol::types::parsing::parse_field_table(response))
                .map(|(_, t)| t)
                .map_err(|_| refused("malformed AMQPLAIN response"))?;
            let get = |k: &str| table.inner().get(k).and_then(super::args::text);
            match (get("LOGIN"), get("PASSWORD")) {
                (Some(u), Some(p)) => Ok((u, p.into_bytes())),
                _ => Err(refused("AMQPLAIN response without LOGIN and PASSWORD")),
            }
        }
        other => Err(refused(&format!("unsupported mechanism {other}"))),
    }
}

/// Runs the handshake; `None` when the connection was refused or went away.
async fn handshake<R: Reader, W: Writer>(
    ctx: &Arc<Context>,
    peer: SocketAddr,
    rd: &mut R,
    wr: &mut W,
    rbuf: &mut BytesMut,
    over_limit: bool,
) -> Option<Conn> {
    // Protocol header.
    while rbuf.len() < 8 {
        match rd.read_buf(rbuf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    let metrics = &ctx.core.metrics;
    if &rbuf[..8] != PROTOCOL_HEADER {
        let detail = format!("unsupported protocol header {:?}", &rbuf[..8]);
        let reason = if rbuf.starts_with(b"AMQP") {
            RefuseReason::Unsupported
        } else {
            RefuseReason::ProtocolError
        };
        metrics.refused(Protocol::Amqp, peer, reason, &detail, None, None);
        let _ = tokio::time::timeout(Duration::from_secs(1), wr.write_all(PROTOCOL_HEADER)).await;
        let _ = wr.shutdown().await;
        return None;
    }
    let _ = rbuf.split_to(8);
    let cfg = &ctx.config;
    let our_frame_max = usize::try_from(cfg.frame_max.0).unwrap_or(usize::MAX);
    let mut out = BytesMut::new();
    let mut scratch = Vec::new();
    frame::put_method(
        &mut out,
        &mut scratch,
        0,
        AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: LongString::from("PLAIN AMQPLAIN"),
            locales: LongString::from("en_US"),
        })),
    );
    if wr.write_all(&out).await.is_err() {
        return None;
    }
    out.clear();

    // Logs and counts the refusal; `user` once it is known.
    let fail = |e: AmqpError, reason: RefuseReason, user: Option<&str>| {
        let detail = format!("{} {}", e.code, e.text);
        metrics.refused(Protocol::Amqp, peer, reason, &detail, None, user);
        e
    };
    let start_ok = match read_method(rd, rbuf, our_frame_max).await {
        Ok(Some(AMQPClass::Connection(connection::AMQPMethod::StartOk(s)))) => s,
        Ok(Some(_)) => {
            send_close(
                wr,
                &fail(
                    AmqpError::connection(code::COMMAND_INVALID, "expected connection.start-ok"),
                    RefuseReason::ProtocolError,
                    None,
                ),
            )
            .await;
            return None;
        }
        Ok(None) => return None,
        Err(e) => {
            send_close(wr, &fail(e, RefuseReason::ProtocolError, None)).await;
            return None;
        }
    };
    let caps = client_caps(&start_ok.client_properties);
    let (user, pass) = match credentials(start_ok.mechanism.as_str(), start_ok.response.as_bytes())
    {
        Ok(c) => c,
        Err(e) => {
            // A mechanism we do not offer, or a response that does not parse.
            let reason = if start_ok.mechanism.as_str() == "PLAIN"
                || start_ok.mechanism.as_str() == "AMQPLAIN"
            {
                RefuseReason::BadCredentials
            } else {
                RefuseReason::Unsupported
            };
            let e = fail(e.at(10, 11), reason, None);
            if caps.authentication_failure_close {
                send_close(wr, &e).await;
            }
            return None;
        }
    };
    // An empty username is anonymous (when anonymous access is on); RabbitMQ
    // clients send guest/guest by default, which is anonymous here unless a
    // user of that name is configured.
    let anonymous = user.is_empty() || (user == "guest" && !ctx.core.auth.knows_user("guest"));
    let login = if anonymous {
        ctx.core.auth.login(None, None).await
    } else {
        ctx.core.auth.login(Some(user.clone()), Some(pass)).await
    };
    if let Err(e) = login {
        let (why, reason) = match e {
            LoginError::BadCredentials => (
                format!(
                    "ACCESS_REFUSED - Login was refused using authentication mechanism {}",
                    start_ok.mechanism.as_str()
                ),
                RefuseReason::BadCredentials,
            ),
            LoginError::NotAuthorized => (
                "ACCESS_REFUSED - anonymous access is disabled".to_owned(),
                RefuseReason::NotAuthorized,
            ),
        };
        let e = fail(
            AmqpError::connection(code::ACCESS_REFUSED, why).at(10, 11),
            reason,
            Some(&user),
        );
        if caps.authentication_failure_close {
            send_close(wr, &e).await;
        }
        return None;
    }
    if over_limit {
        let e = fail(
            AmqpError::connection(
                code::RESOURCE_ERROR,
                "RESOURCE_ERROR - amqp.max_connections reached",
            )
            .at(10, 11),
            RefuseReason::ConnectionLimit,
            Some(&user),
        );
        send_close(wr, &e).await;
        return None;
    }

    let heartbeat = u16::try_from(cfg.heartbeat.as_secs()).unwrap_or(u16::MAX);
    frame::put_method(
        &mut out,
        &mut scratch,
        0,
        AMQPClass::Connection(connection::AMQPMethod::Tune(connection::Tune {
            channel_max: cfg.channel_max,
            frame_max: u32::try_from(our_frame_max).unwrap_or(u32::MAX),
            heartbeat,
        })),
    );
    if wr.write_all(&out).await.is_err() {
        return None;
    }
    out.clear();
    let tune_ok = match read_method(rd, rbuf, our_frame_max).await {
        Ok(Some(AMQPClass::Connection(connection::AMQPMethod::TuneOk(t)))) => t,
        Ok(Some(_)) => {
            send_close(
                wr,
                &fail(
                    AmqpError::connection(code::COMMAND_INVALID, "expected connection.tune-ok"),
                    RefuseReason::ProtocolError,
                    Some(&user),
                ),
            )
            .await;
            return None;
        }
        Ok(None) => return None,
        Err(e) => {
            send_close(wr, &fail(e, RefuseReason::ProtocolError, Some(&user))).await;
            return None;
        }
    };
    let frame_max = match tune_ok.frame_max as usize {
        0 => our_frame_max,
        n if n < 4096 || n > our_frame_max => {
            let e = fail(
                AmqpError::connection(
                    code::NOT_ALLOWED,
                    format!("frame_max {n} outside 4096..={our_frame_max}"),
                )
                .at(10, 31),
                RefuseReason::ProtocolError,
                Some(&user),
            );
            send_close(wr, &e).await;
            return None;
        }
        n => n,
    };
    let channel_max = match tune_ok.channel_max {
        0 => cfg.channel_max,
        n => n.min(cfg.channel_max),
    };
    let open = match read_method(rd, rbuf, frame_max).await {
        Ok(Some(AMQPClass::Connection(connection::AMQPMethod::Open(o)))) => o,
        Ok(Some(_)) => {
            send_close(
                wr,
                &fail(
                    AmqpError::connection(code::COMMAND_INVALID, "expected connection.open"),
                    RefuseReason::ProtocolError,
                    Some(&user),
                ),
            )
            .await;
            return None;
        }
        Ok(None) => return None,
        Err(e) => {
            send_close(wr, &fail(e, RefuseReason::ProtocolError, Some(&user))).await;
            return None;
        }
    };
    let Some(vhost) = ctx.core.vhost_named(open.virtual_host.as_str()).cloned() else {
        let e = fail(
            AmqpError::connection(
                code::NOT_ALLOWED,
                format!(
                    "NOT_ALLOWED - vhost {} not found",
                    open.virtual_host.as_str()
                ),
            )
            .at(10, 40),
            RefuseReason::VhostNotFound,
            Some(&user),
        );
        send_close(wr, &e).await;
        return None;
    };
    frame::put_method(
        &mut out,
        &mut scratch,
        0,
        AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
    );
    if wr.write_all(&out).await.is_err() {
        return None;
    }
    out.clear();
    let id = ctx.core.sessions.next_id();
    let connection_name = start_ok
        .client_properties
        .inner()
        .get("connection_name")
        .and_then(super::args::text);
    let registration = ctx.core.connections.register_amqp(
        id,
        crate::registry::ClientInfo::new(peer, Some(&user)),
        connection_name.as_deref(),
        vhost.clone(),
    );
    tracing::debug!(%peer, user, vhost = %vhost.name(), frame_max, heartbeat = tune_ok.heartbeat, "amqp client connected");
    let conn = Conn {
        ctx: ctx.clone(),
        peer,
        id,
        vhost,
        user: user.clone(),
        frame_max,
        channel_max,
        caps,
        heartbeat: (tune_ok.heartbeat > 0).then(|| Duration::from_secs(tune_ok.heartbeat.into())),
        channels: HashMap::default(),
        wbuf: out,
        scratch,
        route: RouteScratch::default(),
        notify: Arc::new(Notify::new()),
        want_pull: false,
        key_scratch: String::new(),
        blocked: false,
        blocked_sent: false,
        held: VecDeque::new(),
        held_bytes: 0,
        durable: ctx.core.store.done(),
        barrier: None,
        registration,
    };
    Some(conn)
}

impl Conn {
    async fn run_loop<R: Reader, W: Writer>(
        &mut self,
        rd: &mut R,
        wr: &mut W,
        mut rbuf: BytesMut,
    ) -> End {
        let shutdown = self.ctx.shutdown.clone();
        let memory = self.ctx.core.memory.clone();
        let tick = self.heartbeat.map_or(Duration::from_secs(3600), |h| {
            (h / 2).max(Duration::from_millis(500))
        });
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_read = Instant::now();
        let mut last_write = Instant::now();
        if let Err(end) = self.process(&mut rbuf) {
            return end;
        }
        loop {
            if let Err(end) = self.lift_barrier() {
                return end;
            }
            self.flush_confirms();
            if self.want_pull {
                self.fill_outbound();
            }
            self.update_blocked();
            let writable = self.writable_len();
            if writable > 0 {
                match wr.try_write(&self.wbuf[..writable]) {
                    Ok(n) => {
                        self.ctx
                            .core
                            .metrics
                            .add(Protocol::Amqp, Count::BytesSent, n as u64);
                        let _ = self.wbuf.split_to(n);
                        if let Some((_, at)) = &mut self.barrier {
                            *at -= n;
                        }
                        last_write = Instant::now();
                        if self.wbuf.len() < WRITE_HIGH_WATER / 2 {
                            self.want_pull = true;
                        }
                        if self.wbuf.is_empty() && self.wbuf.capacity() > 4 * WRITE_HIGH_WATER {
                            self.wbuf = BytesMut::new();
                        }
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return End::Closed,
                }
            }
            if rbuf.capacity() - rbuf.len() < 1024 {
                rbuf.reserve(READ_MIN);
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return End::Shutdown,
                _ = &mut self.registration.1 => return End::Forced,
                r = rd.read_buf(&mut rbuf), if self.held_bytes < HELD_LIMIT => match r {
                    Ok(0) | Err(_) => return End::Closed,
                    Ok(n) => {
                        last_read = Instant::now();
                        self.ctx
                            .core
                            .metrics
                            .add(Protocol::Amqp, Count::BytesReceived, n as u64);
                        if let Err(end) = self.process(&mut rbuf) {
                            return end;
                        }
                        if n >= 32 * 1024 {
                            // A flooding publisher: let the consumers it just
                            // woke run (see the MQTT connection loop).
                            tokio::task::yield_now().await;
                        }
                    }
                },
                r = wr.writable(), if self.writable_len() > 0 => {
                    if r.is_err() {
                        return End::Closed;
                    }
                }
                _ = self.notify.notified() => self.want_pull = true,
                r = self.durable.changed(), if self.awaits_store() => {
                    if r.is_err() {
                        return End::Closed;
                    }
                }
                _ = ticker.tick() => {
                    if let Some(hb) = self.heartbeat {
                        let now = Instant::now();
                        if now.duration_since(last_read) > hb * 2
                            && self.held_bytes < HELD_LIMIT
                            // A blocked client stops sending, heartbeats included.
                            && !self.blocked_sent
                        {
                            tracing::info!(peer = %self.peer, "amqp connection closed: missed heartbeats");
                            return End::Closed;
                        }
                        if now.duration_since(last_write) >= hb && self.wbuf.is_empty() {
                            frame::put_heartbeat(&mut self.wbuf);
                        }
                    }
                }
                _ = memory.wait_below(), if self.blocked || self.blocked_sent => {
                    self.blocked = false;
                    if let Err(end) = self.release_held() {
                        return end;
                    }
                    if let Err(end) = self.process(&mut rbuf) {
                        return end;
                    }
                }
            }
        }
    }

    /// Holds output from `wbuf` offset `start` on until ticket `lsn` is durable.
    pub(super) fn hold_output(&mut self, lsn: Lsn, start: usize) {
        if lsn == 0 {
            return;
        }
        self.barrier = Some(match self.barrier {
            Some((l, at)) => (l.max(lsn), at.min(start)),
            None => (lsn, start),
        });
    }

    /// Bytes of `wbuf` that may be written now.
    fn writable_len(&self) -> usize {
        match self.barrier {
            Some((_, at)) => at,
            None => self.wbuf.len(),
        }
    }

    /// Whether output or confirms wait for the store.
    fn awaits_store(&self) -> bool {
        self.barrier.is_some() || self.channels.values().any(|c| c.awaits_store())
    }

    /// Lifts the output barrier once its ticket is durable; if the store
    /// failed, the connection ends with 541 (what was declared is not kept).
    fn lift_barrier(&mut self) -> Result<(), End> {
        let Some((lsn, _)) = self.barrier else {
            return Ok(());
        };
        if *self.durable.borrow() < lsn {
            return Ok(());
        }
        self.barrier = None;
        if self.ctx.core.store.outcome(lsn).is_err() {
            return Err(End::Error(AmqpError::connection(
                code::INTERNAL_ERROR,
                "INTERNAL_ERROR - the gateway could not store the change",
            )));
        }
        Ok(())
    }

    /// Sends connection.blocked / unblocked as the memory gauge crosses the watermark.
    fn update_blocked(&mut self) {
        if !self.caps.connection_blocked {
            return;
        }
        // Only connections that publish are blocked (a publish is being held),
        // as RabbitMQ does: consumers must keep acking so queues can drain.
        let over = self.blocked || (self.blocked_sent && self.ctx.core.memory.is_over());
        if over != self.blocked_sent {
            self.blocked_sent = over;
            let method = if over {
                connection::AMQPMethod::Blocked(connection::Blocked {
                    reason: ShortString::from("low on memory"),
                })
            } else {
                connection::AMQPMethod::Unblocked(connection::Unblocked {})
            };
            frame::put_method(
                &mut self.wbuf,
                &mut self.scratch,
                0,
                AMQPClass::Connection(method),
            );
        }
    }

    /// Handles every whole frame in `rbuf`. Above the memory high-watermark,
    /// a basic.publish and every frame after it is held (in order) except
    /// acknowledgements, heartbeats and connection.close, so consumers keep
    /// draining queues while publishers wait.
    fn process(&mut self, rbuf: &mut BytesMut) -> Result<(), End> {
        // basic.publish methods read, counted here and added to the metrics once.
        let mut publishes = 0u64;
        let result = self.process_counting(rbuf, &mut publishes);
        self.ctx
            .core
            .metrics
            .add(Protocol::Amqp, Count::MessagesReceived, publishes);
        result
    }

    fn process_counting(&mut self, rbuf: &mut BytesMut, publishes: &mut u64) -> Result<(), End> {
        loop {
            let f = match frame::next_frame(rbuf, self.frame_max) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) => return Err(End::Error(e)),
            };
            let publish = is_publish(&f);
            *publishes += u64::from(publish);
            if (self.blocked
                || !self.held.is_empty()
                || (publish && self.ctx.core.memory.is_over()))
                && !passes_hold(&f)
            {
                self.blocked = true;
                self.held_bytes += f.payload.len() + 8;
                self.held.push_back(f);
                continue;
            }
            self.handle_frame(f)?;
        }
    }

    fn release_held(&mut self) -> Result<(), End> {
        while let Some(f) = self.held.pop_front() {
            if is_publish(&f) && self.ctx.core.memory.is_over() {
                self.held.push_front(f);
                self.blocked = true;
                return Ok(());
            }
            self.held_bytes -= f.payload.len() + 8;
            self.handle_frame(f)?;
        }
        Ok(())
    }

    fn handle_frame(&mut self, f: RawFrame) -> Result<(), End> {
        let channel = f.channel;
        let result = match f.kind {
            FRAME_HEARTBEAT => {
                if f.channel != 0 {
                    Err(AmqpError::connection(
                        code::FRAME_ERROR,
                        "heartbeat on a non-zero channel",
                    ))
                } else {
                    Ok(())
                }
            }
            FRAME_METHOD => match frame::parse_method(&f.payload) {
                Ok(method) => self.on_method(f.channel, method),
                Err(e) => Err(e),
            },
            FRAME_HEADER | FRAME_BODY => self.on_content(f),
            _ => Err(AmqpError::connection(
                code::FRAME_ERROR,
                "unknown frame type",
            )),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.scope == Scope::Channel => {
                self.close_channel_with(channel, e);
                Ok(())
            }
            Err(e) => Err(End::Error(e)),
        }
    }

    /// Handles a method frame.
    fn on_method(&mut self, channel: u16, method: AMQPClass) -> Result<(), AmqpError> {
        if channel == 0 {
            return match method {
                AMQPClass::Connection(connection::AMQPMethod::Close(_)) => {
                    frame::put_method(
                        &mut self.wbuf,
                        &mut self.scratch,
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                            connection::CloseOk {},
                        )),
                    );
                    Err(AmqpError::connection(code::REPLY_SUCCESS, "client closed"))
                }
                AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => Err(
                    AmqpError::connection(code::REPLY_SUCCESS, "close acknowledged"),
                ),
                AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(_)) => {
                    frame::put_method(
                        &mut self.wbuf,
                        &mut self.scratch,
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::UpdateSecretOk(
                            connection::UpdateSecretOk {},
                        )),
                    );
                    Ok(())
                }
                AMQPClass::Connection(_) => Err(AmqpError::connection(
                    code::COMMAND_INVALID,
                    "connection method not valid after the handshake",
                )),
                _ => Err(AmqpError::connection(
                    code::COMMAND_INVALID,
                    "only connection methods may use channel 0",
                )),
            };
        }
        self.on_channel_method(channel, method)
    }

    /// Ends the connection: closes it with a reason when we raised one, releases
    /// everything its channels held, and deletes its exclusive queues.
    async fn finish<R: Reader, W: Writer>(mut self, end: End, rd: &mut R, wr: &mut W) {
        let peer = self.peer;
        // The client asked to close and got close-ok: it closes the socket.
        let client_closes = matches!(&end, End::Error(e) if e.code == code::REPLY_SUCCESS);
        let close = match end {
            End::Closed => None,
            End::Error(e) if e.code == code::REPLY_SUCCESS => None,
            End::Error(e) => {
                tracing::info!(%peer, code = e.code, reason = %e.text, "closing amqp connection");
                Some(e)
            }
            End::Shutdown => Some(AmqpError::connection(
                code::CONNECTION_FORCED,
                "CONNECTION_FORCED - broker shutting down",
            )),
            End::Forced => {
                tracing::info!(%peer, "closing amqp connection: closed by an administrator");
                Some(AmqpError::connection(
                    code::CONNECTION_FORCED,
                    "CONNECTION_FORCED - closed by an administrator",
                ))
            }
        };
        if let Some(e) = &close {
            frame::put_method(&mut self.wbuf, &mut self.scratch, 0, close_method(e));
        }
        if !self.wbuf.is_empty() {
            let written =
                tokio::time::timeout(Duration::from_secs(1), wr.write_all(&self.wbuf)).await;
            if matches!(written, Ok(Ok(()))) {
                let n = self.wbuf.len() as u64;
                self.ctx
                    .core
                    .metrics
                    .add(Protocol::Amqp, Count::BytesSent, n);
            }
        }
        if client_closes {
            // Let the client close the TCP connection after close-ok, as
            // clients expect; give up after a second.
            let mut sink = BytesMut::with_capacity(256);
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while matches!(rd.read_buf(&mut sink).await, Ok(n) if n > 0) {
                    sink.clear();
                }
            })
            .await;
        }
        if close.is_some() {
            // Give the client a moment to answer close-ok before we hang up.
            let mut sink = BytesMut::with_capacity(1024);
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                loop {
                    match rd.read_buf(&mut sink).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            if let Ok(Some(f)) = frame::next_frame(&mut sink, usize::MAX)
                                && f.kind == FRAME_METHOD
                                && f.channel == 0
                                && matches!(
                                    frame::parse_method(&f.payload),
                                    Ok(AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)))
                                )
                            {
                                return;
                            }
                            sink.clear();
                        }
                    }
                }
            })
            .await;
        }
        let _ = wr.shutdown().await;
        let ids: Vec<u16> = self.channels.keys().copied().collect();
        for id in ids {
            self.drop_channel(id);
        }
        self.vhost.delete_exclusive(self.id);
        tracing::debug!(%peer, "amqp client disconnected");
    }
}

fn is_publish(f: &RawFrame) -> bool {
    f.kind == FRAME_METHOD && f.payload.len() >= 4 && f.payload[..4] == [0, 60, 0, 40]
}

/// Frames that are handled even while publishing is paused: acks, nacks,
/// rejects, heartbeats and connection.close.
fn passes_hold(f: &RawFrame) -> bool {
    if f.kind == FRAME_HEARTBEAT {
        return true;
    }
    if f.kind != FRAME_METHOD || f.payload.len() < 4 {
        return false;
    }
    matches!(
        (&f.payload[..4]).try_into().map(u32::from_be_bytes),
        Ok(0x003C_0050 | 0x003C_0078 | 0x003C_005A | 0x000A_0032 | 0x000A_0033)
    )
}
