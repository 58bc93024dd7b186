//! The sans-IO MQTT client core.
//!
//! [`Client`] is a state machine. It is told when the transport opens and
//! closes, fed the bytes that arrive and the current time (`now`, milliseconds
//! from any monotonic clock), and it answers with bytes to send
//! ([`Client::poll_transmit`]), things that happened ([`Client::poll_event`])
//! and the next time it must be woken ([`Client::poll_timeout`]). It never
//! reads a clock, sleeps or touches a socket: the [drivers](crate::driver) do
//! that, and tests feed it scripted bytes.
//!
//! What it owns: the session (CONNECT with credentials and a will, keepalive
//! with PINGREQ and its deadline, the SUBSCRIBE for commands, a clean
//! DISCONNECT), packet identifiers, the [`Outbox`] of messages to publish, and
//! the reconnect [`Backoff`]. What it must not do: allocate, panic on anything
//! the network sends, or wait.
//!
//! Errors close the connection: when a method returns a [`ConnectionError`]
//! the client has already moved to [`State::Disconnected`] and scheduled its
//! next attempt; the caller closes the transport and reopens it at
//! [`Client::reconnect_at`].
//!
//! Delivery guarantees: QoS 1 messages stay in the outbox until their PUBACK.
//! With a persistent session (the default, `clean_session = false`) those
//! still unacknowledged at a disconnect are resent with DUP and their original
//! packet identifier when the server resumes the session, and resent as new
//! messages when it did not keep it. Commands received at QoS 1 are
//! acknowledged after the application has been handed them.

use core::fmt;

use tether_protocols::mqtt::{
    self, Connect, DecodeError, Disconnect, EncodeError, Packet, PacketType, ProtocolVersion,
    Publish, QoS, Subscribe, SubscribeFilters, SubscriptionOptions,
};

use crate::backoff::{Backoff, BackoffConfig};
use crate::outbox::{Outbox, OverflowPolicy, PushError, Pushed, SlotState};

/// How many received QoS 1 commands may await their PUBACK at once. Input is
/// not decoded further until they are sent (MQTT 5: the Receive Maximum we
/// announce).
pub const MAX_PENDING_ACKS: usize = 4;

/// The will the server publishes if the device disappears without DISCONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Will<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Payload.
    pub payload: &'a [u8],
    /// QoS of the will message.
    pub qos: QoS,
    /// Whether the will is retained.
    pub retain: bool,
}

/// Session settings. Strings are borrowed, so a `Config` can live in flash
/// (`const`/`static`) and costs no RAM for them.
#[derive(Debug, Clone, Copy)]
pub struct Config<'a> {
    /// Client identifier; must be stable for a persistent session.
    pub client_id: &'a str,
    /// Keepalive in seconds (0 disables PINGREQ and the server's timeout).
    pub keep_alive_secs: u16,
    /// `false` (default): resume the session on reconnect, so the server keeps
    /// the command subscription and QoS 1 traffic survives a dropped link.
    pub clean_session: bool,
    /// User name, if the gateway requires a login.
    pub username: Option<&'a str>,
    /// Password (MQTT 3.1.1 requires a user name with it).
    pub password: Option<&'a [u8]>,
    /// Will message.
    pub will: Option<Will<'a>>,
    /// Topic filter subscribed at QoS 1 for commands (e.g. `devices/d1/cmd`),
    /// when the server has no session for us.
    pub command_filter: Option<&'a str>,
    /// How long to wait for CONNACK and for PINGRESP, in milliseconds.
    pub response_timeout_ms: u32,
    /// Most QoS 1 messages sent and not yet acknowledged (at least 1).
    pub max_in_flight: u16,
    /// What the outbox does when full.
    pub overflow: OverflowPolicy,
    /// Reconnect backoff limits.
    pub backoff: BackoffConfig,
    /// Seed of the backoff jitter; `None` derives one from the client id, so
    /// devices differ even without a hardware RNG.
    pub jitter_seed: Option<u32>,
    /// Protocol version: 3.1.1 (default) or 5.
    #[cfg(feature = "v5")]
    pub protocol: ProtocolVersion,
    /// MQTT 5: Session Expiry Interval in seconds sent with
    /// `clean_session = false` (MQTT 5 sessions otherwise end with the connection).
    #[cfg(feature = "v5")]
    pub session_expiry_secs: u32,
}

impl<'a> Config<'a> {
    /// Defaults: keepalive 30 s, persistent session, no login, no will, no
    /// command subscription, 10 s response timeout, 8 messages in flight,
    /// drop-oldest, backoff 0.5 s doubling to 60 s.
    pub const fn new(client_id: &'a str) -> Self {
        Self {
            client_id,
            keep_alive_secs: 30,
            clean_session: false,
            username: None,
            password: None,
            will: None,
            command_filter: None,
            response_timeout_ms: 10_000,
            max_in_flight: 8,
            overflow: OverflowPolicy::DropOldest,
            backoff: BackoffConfig::DEFAULT,
            jitter_seed: None,
            #[cfg(feature = "v5")]
            protocol: ProtocolVersion::V3_1_1,
            #[cfg(feature = "v5")]
            session_expiry_secs: 86_400,
        }
    }

    /// Sets the user name and password.
    pub const fn with_credentials(mut self, username: &'a str, password: &'a [u8]) -> Self {
        self.username = Some(username);
        self.password = Some(password);
        self
    }

    /// Sets the will.
    pub const fn with_will(mut self, will: Will<'a>) -> Self {
        self.will = Some(will);
        self
    }

    /// Subscribes to commands on `filter`.
    pub const fn with_commands(mut self, filter: &'a str) -> Self {
        self.command_filter = Some(filter);
        self
    }

    /// Sets the keepalive in seconds.
    pub const fn with_keep_alive(mut self, secs: u16) -> Self {
        self.keep_alive_secs = secs;
        self
    }

    /// Sets clean session (clean start in MQTT 5).
    pub const fn with_clean_session(mut self, clean: bool) -> Self {
        self.clean_session = clean;
        self
    }

    /// Sets the outbox overflow policy.
    pub const fn with_overflow(mut self, policy: OverflowPolicy) -> Self {
        self.overflow = policy;
        self
    }

    /// Sets the reconnect backoff limits.
    pub const fn with_backoff(mut self, backoff: BackoffConfig) -> Self {
        self.backoff = backoff;
        self
    }

    /// Seeds the backoff jitter (e.g. from a hardware RNG).
    pub const fn with_jitter_seed(mut self, seed: u32) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// Sets the CONNACK / PINGRESP timeout in milliseconds.
    pub const fn with_response_timeout(mut self, ms: u32) -> Self {
        self.response_timeout_ms = ms;
        self
    }

    /// Sets how many QoS 1 messages may await their PUBACK at once.
    pub const fn with_max_in_flight(mut self, n: u16) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Speaks MQTT 5 (or back 3.1.1).
    #[cfg(feature = "v5")]
    pub const fn with_protocol(mut self, protocol: ProtocolVersion) -> Self {
        self.protocol = protocol;
        self
    }
}

/// Where the client is in the life of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No transport. The next attempt is due at [`Client::reconnect_at`].
    Disconnected,
    /// Transport open; CONNECT sent or about to be, waiting for CONNACK.
    Connecting,
    /// Session open: publishing, acknowledging, keeping alive.
    Connected,
    /// [`Client::disconnect`] was called; DISCONNECT is about to be sent.
    Disconnecting,
    /// DISCONNECT sent (or asked for while offline): no reconnects until
    /// [`Client::on_transport_open`] is called again.
    Stopped,
}

/// Why the connection ended. The client is [`State::Disconnected`] when one
/// of these is returned; close the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionError {
    /// The server refused the session: the CONNACK return code (MQTT 3) or
    /// reason code (MQTT 5).
    Refused(u8),
    /// The server sent bytes that are not a valid MQTT packet.
    Malformed(DecodeError),
    /// The server sent a valid packet that it must not send now (its type).
    ProtocolViolation(PacketType),
    /// A packet from the server is larger than the receive buffer.
    PacketTooLarge,
    /// No CONNACK within the response timeout.
    ConnAckTimeout,
    /// No PINGRESP within the response timeout.
    PingTimeout,
    /// The server closed the session with DISCONNECT (its reason code).
    ServerDisconnect(u8),
    /// A packet of ours could not be encoded (a too-small transmit buffer or
    /// an invalid configuration, e.g. a will topic with a wildcard).
    Encode(EncodeError),
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(code) => write!(f, "connection refused (code {code:#04x})"),
            Self::Malformed(e) => write!(f, "malformed packet from the server: {e}"),
            Self::ProtocolViolation(t) => write!(f, "unexpected {t:?} from the server"),
            Self::PacketTooLarge => f.write_str("packet larger than the receive buffer"),
            Self::ConnAckTimeout => f.write_str("no CONNACK in time"),
            Self::PingTimeout => f.write_str("no PINGRESP in time"),
            Self::ServerDisconnect(code) => write!(f, "server sent DISCONNECT ({code:#04x})"),
            Self::Encode(e) => write!(f, "cannot encode packet: {e}"),
        }
    }
}

impl core::error::Error for ConnectionError {}

/// A message received on a subscription (a command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command<'r> {
    /// Topic it was published to.
    pub topic: &'r str,
    /// Payload.
    pub payload: &'r [u8],
    /// QoS it was delivered with.
    pub qos: QoS,
    /// Whether it is a retained message.
    pub retain: bool,
    /// Whether the server says it may have delivered it before.
    pub dup: bool,
}

/// Something that happened on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'r> {
    /// The server accepted the session.
    Connected {
        /// Whether it resumed an existing session.
        session_present: bool,
    },
    /// The command subscription was answered: the granted QoS, or `None` if refused.
    Subscribed {
        /// Granted QoS.
        granted: Option<QoS>,
    },
    /// A QoS 1 message was acknowledged and left the outbox.
    Delivered {
        /// Its packet identifier.
        packet_id: u16,
    },
    /// MQTT 5: a QoS 1 message was acknowledged with an error reason code
    /// (e.g. 0x87 not authorized); it left the outbox.
    Rejected {
        /// Its packet identifier.
        packet_id: u16,
        /// The PUBACK reason code.
        reason: u8,
    },
    /// A command arrived. At QoS 1 it is acknowledged on the next transmit.
    Command(Command<'r>),
}

/// Counters of the connection's life. They wrap at `u32::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientStats {
    /// Transports opened ([`Client::on_transport_open`]).
    pub connect_attempts: u32,
    /// Sessions accepted by the server.
    pub connections: u32,
    /// Connections that ended with an error or a lost transport.
    pub connection_losses: u32,
    /// Commands received.
    pub commands: u32,
}

/// What a decoded packet means to the client, without borrowing the buffer.
enum Incoming {
    ConnAck {
        session_present: bool,
        code: u8,
        #[cfg(feature = "v5")]
        limits: ServerLimits,
    },
    PubAck {
        packet_id: u16,
        reason: u8,
    },
    SubAck {
        packet_id: u16,
        code: u8,
    },
    Publish {
        qos: QoS,
        packet_id: Option<u16>,
    },
    PingResp,
    Disconnect(u8),
    UnsubAck,
    Unexpected(PacketType),
}

/// What the server told us in an MQTT 5 CONNACK.
#[cfg(feature = "v5")]
#[derive(Clone, Copy)]
struct ServerLimits {
    receive_maximum: Option<u16>,
    maximum_packet_size: Option<u32>,
    server_keep_alive: Option<u16>,
}

impl Incoming {
    fn of(packet: &Packet<'_>) -> Self {
        match packet {
            Packet::ConnAck(a) => Self::ConnAck {
                session_present: a.session_present,
                code: a.code.0,
                #[cfg(feature = "v5")]
                limits: ServerLimits {
                    receive_maximum: a.properties.receive_maximum,
                    maximum_packet_size: a.properties.maximum_packet_size,
                    server_keep_alive: a.properties.server_keep_alive,
                },
            },
            Packet::PubAck(r) => Self::PubAck {
                packet_id: r.packet_id,
                reason: r.reason.0,
            },
            Packet::SubAck(s) => Self::SubAck {
                packet_id: s.packet_id,
                code: s.return_codes.first().copied().unwrap_or(0x80),
            },
            Packet::Publish(p) => Self::Publish {
                qos: p.qos,
                packet_id: p.packet_id,
            },
            Packet::PingResp => Self::PingResp,
            Packet::Disconnect(d) => Self::Disconnect(d.reason.0),
            Packet::UnsubAck(_) => Self::UnsubAck,
            other => Self::Unexpected(other.packet_type()),
        }
    }
}

/// An event decoded but not yet handed out (owned, so the buffer can stay borrowed-free).
#[derive(Clone, Copy)]
enum Ready {
    Connected { session_present: bool },
    Subscribed { granted: Option<QoS> },
    Delivered { packet_id: u16 },
    Rejected { packet_id: u16, reason: u8 },
    Command { len: usize },
}

/// Control packets waiting to be written.
#[derive(Clone, Copy, Default)]
struct Want {
    connect: bool,
    subscribe: bool,
    ping: bool,
    disconnect: bool,
}

/// The MQTT client core: a session, an outbox of `N` messages of up to `M`
/// bytes, and a caller-provided receive buffer.
///
/// The receive buffer bounds the largest packet accepted from the server
/// (MQTT 5: announced as Maximum Packet Size); 128–512 bytes suit commands.
/// The transmit buffer handed to [`poll_transmit`](Self::poll_transmit) must
/// hold CONNECT and one PUBLISH (`M` + 9 bytes, +1 in MQTT 5).
pub struct Client<'a, const N: usize, const M: usize> {
    config: Config<'a>,
    outbox: Outbox<N, M>,
    backoff: Backoff,
    rx: &'a mut [u8],
    rx_len: usize,
    /// Length of the packet at the front of `rx` already processed (and
    /// possibly lent out as a [`Command`]); dropped before the next decode.
    rx_taken: usize,
    ready: Option<Ready>,
    state: State,
    /// Disconnected: earliest next attempt. Connecting: CONNACK deadline.
    deadline: u64,
    last_tx: u64,
    ping_sent: Option<u64>,
    want: Want,
    acks: [u16; MAX_PENDING_ACKS],
    acks_len: usize,
    next_packet_id: u16,
    /// Packet identifier of the SUBSCRIBE awaiting its SUBACK (0: none).
    subscribe_id: u16,
    keep_alive_ms: u64,
    in_flight_limit: u16,
    #[cfg(feature = "v5")]
    server_max_packet: u32,
    stats: ClientStats,
}

impl<'a, const N: usize, const M: usize> Client<'a, N, M> {
    /// A disconnected client; the first attempt is due immediately.
    pub fn new(config: Config<'a>, rx_buffer: &'a mut [u8]) -> Self {
        let seed = match config.jitter_seed {
            Some(seed) => seed,
            None => fnv1a(config.client_id.as_bytes()),
        };
        Self {
            outbox: Outbox::new(config.overflow),
            backoff: Backoff::new(config.backoff, seed),
            rx: rx_buffer,
            rx_len: 0,
            rx_taken: 0,
            ready: None,
            state: State::Disconnected,
            deadline: 0,
            last_tx: 0,
            ping_sent: None,
            want: Want::default(),
            acks: [0; MAX_PENDING_ACKS],
            acks_len: 0,
            next_packet_id: 0,
            subscribe_id: 0,
            keep_alive_ms: u64::from(config.keep_alive_secs) * 1000,
            in_flight_limit: config.max_in_flight.max(1),
            #[cfg(feature = "v5")]
            server_max_packet: u32::MAX,
            stats: ClientStats::default(),
            config,
        }
    }

    /// The settings.
    pub const fn config(&self) -> &Config<'a> {
        &self.config
    }

    /// Where the connection is.
    pub const fn state(&self) -> State {
        self.state
    }

    /// The outbox (for its length and counters).
    pub const fn outbox(&self) -> &Outbox<N, M> {
        &self.outbox
    }

    /// The outbox, to push retained messages or change the policy.
    pub fn outbox_mut(&mut self) -> &mut Outbox<N, M> {
        &mut self.outbox
    }

    /// The reconnect backoff.
    pub const fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// Connection counters.
    pub const fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// The protocol version spoken.
    pub const fn protocol(&self) -> ProtocolVersion {
        #[cfg(feature = "v5")]
        {
            self.config.protocol
        }
        #[cfg(not(feature = "v5"))]
        {
            ProtocolVersion::V3_1_1
        }
    }

    /// Queues a message for publishing (now if connected, after reconnecting
    /// otherwise). A full outbox is handled by its [`OverflowPolicy`].
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS) -> Result<Pushed, PushError> {
        self.outbox.push(topic, payload, qos, false)
    }

    /// Whether everything is delivered: the outbox is empty, no control
    /// packet is waiting and no CONNACK or SUBACK is awaited. Useful before
    /// [`disconnect`](Self::disconnect).
    pub fn is_idle(&self) -> bool {
        self.state != State::Connecting
            && self.outbox.is_empty()
            && self.acks_len == 0
            && self.subscribe_id == 0
            && !self.want.subscribe
            && !self.want.connect
    }

    /// When the next connection attempt is due ([`State::Disconnected`] only).
    pub const fn reconnect_at(&self) -> Option<u64> {
        match self.state {
            State::Disconnected => Some(self.deadline),
            _ => None,
        }
    }

    /// The transport is open: start a session (CONNECT is written by the
    /// next [`poll_transmit`](Self::poll_transmit)).
    pub fn on_transport_open(&mut self, now: u64) {
        self.reset_connection();
        self.state = State::Connecting;
        self.want.connect = true;
        self.deadline = now.saturating_add(u64::from(self.config.response_timeout_ms));
        self.last_tx = now;
        self.stats.connect_attempts = self.stats.connect_attempts.wrapping_add(1);
    }

    /// The transport closed or failed (or could not be opened): schedules the
    /// next attempt with backoff. Harmless if the client already knows.
    pub fn on_transport_closed(&mut self, now: u64) {
        match self.state {
            State::Connecting | State::Connected => {
                self.fail(now);
            }
            State::Disconnecting => {
                self.reset_connection();
                self.state = State::Stopped;
            }
            State::Disconnected => {
                // A failed attempt to open the transport: back off further.
                if now >= self.deadline {
                    self.deadline = now.saturating_add(u64::from(self.backoff.next_delay()));
                }
            }
            State::Stopped => {}
        }
    }

    /// Ends the session cleanly: DISCONNECT is written by the next
    /// [`poll_transmit`](Self::poll_transmit) (after pending acknowledgements,
    /// before any further PUBLISH), then the client is [`State::Stopped`]. The
    /// will is not published. Queued messages stay in the outbox.
    pub fn disconnect(&mut self) {
        match self.state {
            State::Connecting if self.want.connect => {
                // CONNECT never left: there is nothing to close.
                self.reset_connection();
                self.state = State::Stopped;
            }
            State::Connecting | State::Connected => {
                self.state = State::Disconnecting;
                self.want.disconnect = true;
            }
            State::Disconnected => self.state = State::Stopped,
            State::Disconnecting | State::Stopped => {}
        }
    }

    /// The next time [`handle_timeout`](Self::handle_timeout) must be called
    /// (or, when disconnected, the next connection attempt is due).
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.state {
            State::Disconnected | State::Connecting => Some(self.deadline),
            State::Connected | State::Disconnecting => {
                if let Some(sent) = self.ping_sent {
                    Some(sent.saturating_add(u64::from(self.config.response_timeout_ms)))
                } else if self.keep_alive_ms > 0 {
                    Some(self.last_tx.saturating_add(self.keep_alive_ms))
                } else {
                    None
                }
            }
            State::Stopped => None,
        }
    }

    /// Checks the timers: the CONNACK and PINGRESP deadlines (an error ends
    /// the connection) and the keepalive (a PINGREQ becomes due).
    pub fn handle_timeout(&mut self, now: u64) -> Result<(), ConnectionError> {
        match self.state {
            State::Connecting if now >= self.deadline => {
                self.fail(now);
                Err(ConnectionError::ConnAckTimeout)
            }
            State::Connected | State::Disconnecting => {
                if let Some(sent) = self.ping_sent {
                    if now >= sent.saturating_add(u64::from(self.config.response_timeout_ms)) {
                        self.fail(now);
                        return Err(ConnectionError::PingTimeout);
                    }
                } else if self.keep_alive_ms > 0
                    && now >= self.last_tx.saturating_add(self.keep_alive_ms)
                {
                    self.want.ping = true;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Writes the packets due now into `buf` (as many whole packets as fit)
    /// and returns the number of bytes to send; 0 when there is nothing.
    ///
    /// Call it until it returns 0. Messages count as sent once written here.
    pub fn poll_transmit(&mut self, now: u64, buf: &mut [u8]) -> Result<usize, ConnectionError> {
        let result = self.transmit(now, buf);
        match result {
            Ok(n) => {
                if n > 0 {
                    self.last_tx = now;
                }
                Ok(n)
            }
            Err(e) => {
                self.fail(now);
                Err(ConnectionError::Encode(e))
            }
        }
    }

    fn transmit(&mut self, now: u64, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let version = self.protocol();
        let mut w = Out { buf, pos: 0 };
        match self.state {
            State::Connecting => {
                if self.want.connect {
                    let connect = self.connect_packet();
                    if w.put(&connect, version)? {
                        self.want.connect = false;
                    }
                }
            }
            State::Connected | State::Disconnecting => {
                // Acknowledgements first: they free the server's window.
                while self.acks_len > 0 {
                    if !w.put(&puback(self.acks[0]), version)? {
                        return Ok(w.pos);
                    }
                    self.acks.copy_within(1..self.acks_len, 0);
                    self.acks_len -= 1;
                }
                if self.want.ping {
                    if !w.put(&PINGREQ, version)? {
                        return Ok(w.pos);
                    }
                    self.want.ping = false;
                    self.ping_sent = Some(now);
                }
                if self.state == State::Disconnecting {
                    if self.want.disconnect {
                        if !w.put(&Disconnect::default(), version)? {
                            return Ok(w.pos);
                        }
                        self.want.disconnect = false;
                        self.reset_connection();
                        self.state = State::Stopped;
                    }
                    return Ok(w.pos);
                }
                if self.want.subscribe {
                    let Some(filter) = self.config.command_filter else {
                        self.want.subscribe = false;
                        return Ok(w.pos);
                    };
                    let id = self.allocate_packet_id();
                    let filters = [(filter, SubscriptionOptions::with_qos(QoS::AtLeastOnce))];
                    let subscribe = Subscribe {
                        packet_id: id,
                        properties: mqtt::Properties::new(),
                        filters: SubscribeFilters::Slice(&filters),
                    };
                    if !w.put(&subscribe, version)? {
                        return Ok(w.pos);
                    }
                    self.want.subscribe = false;
                    self.subscribe_id = id;
                }
                self.transmit_outbox(&mut w, version);
            }
            State::Disconnected | State::Stopped => {}
        }
        Ok(w.pos)
    }

    /// Writes due outbox messages while the in-flight window allows.
    fn transmit_outbox(&mut self, w: &mut Out<'_>, version: ProtocolVersion) {
        let limit = usize::from(self.in_flight_limit);
        while let Some(index) = self.outbox.next_due() {
            let due = self.outbox.message(index);
            let qos1 = due.qos != QoS::AtMostOnce;
            if qos1 && self.outbox.in_flight() >= limit {
                break;
            }
            let resend = due.state == SlotState::Resend;
            let packet_id = match (qos1, resend) {
                (false, _) => None,
                (true, true) => Some(due.packet_id),
                (true, false) => Some(self.allocate_packet_id()),
            };
            let message = self.outbox.message(index);
            let publish = Publish {
                dup: resend,
                qos: message.qos,
                retain: message.retain,
                topic: message.topic,
                packet_id,
                properties: mqtt::Properties::new(),
                payload: message.payload,
            };
            #[cfg(feature = "v5")]
            if let Ok(len) = publish.encoded_len(version)
                && len > self.server_max_packet as usize
            {
                // The server would refuse it; it can never be sent.
                self.outbox.discard(index);
                continue;
            }
            match w.put(&publish, version) {
                Ok(true) => self.outbox.mark_sent(index, packet_id.unwrap_or(0)),
                Ok(false) => break,
                // Larger than the whole transmit buffer: it could never be
                // sent, and keeping it would stall the queue. Counted as rejected.
                Err(_) => self.outbox.discard(index),
            }
        }
    }

    fn connect_packet(&self) -> Connect<'a> {
        let c = &self.config;
        #[allow(unused_mut)]
        let mut properties = mqtt::Properties::new();
        #[cfg(feature = "v5")]
        if c.protocol.is_v5() {
            if !c.clean_session {
                properties.session_expiry_interval = Some(c.session_expiry_secs);
            }
            properties.receive_maximum = Some(MAX_PENDING_ACKS as u16);
            properties.maximum_packet_size = u32::try_from(self.rx.len()).ok().filter(|&n| n > 0);
        }
        Connect {
            protocol: self.protocol(),
            clean_start: c.clean_session,
            keep_alive: c.keep_alive_secs,
            client_id: c.client_id,
            will: c.will.map(|w| mqtt::Will {
                topic: w.topic,
                payload: w.payload,
                qos: w.qos,
                retain: w.retain,
                properties: mqtt::Properties::new(),
            }),
            username: c.username,
            password: c.password,
            properties,
        }
    }

    fn allocate_packet_id(&mut self) -> u16 {
        for _ in 0..u16::MAX {
            self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
            let id = self.next_packet_id;
            if id != self.subscribe_id && !self.outbox.uses_packet_id(id) {
                return id;
            }
        }
        // Unreachable with fewer than 65 535 messages pending.
        self.next_packet_id
    }

    /// The free part of the receive buffer: read into it, then [`rx_commit`](Self::rx_commit).
    /// Empty while the buffer is full of unprocessed packets.
    pub fn rx_buffer(&mut self) -> &mut [u8] {
        self.compact();
        let start = self.rx_len.min(self.rx.len());
        &mut self.rx[start..]
    }

    /// Records that `n` bytes were read into [`rx_buffer`](Self::rx_buffer).
    pub fn rx_commit(&mut self, n: usize) {
        self.rx_len = self.rx_len.saturating_add(n).min(self.rx.len());
    }

    /// Copies received bytes into the receive buffer; returns how many fit
    /// (feed the rest after [`poll_event`](Self::poll_event) made room).
    /// Bytes received while no connection is open are discarded.
    pub fn handle_input(&mut self, bytes: &[u8]) -> usize {
        if !self.is_open() {
            return bytes.len();
        }
        let free = self.rx_buffer();
        let n = free.len().min(bytes.len());
        free[..n].copy_from_slice(&bytes[..n]);
        self.rx_commit(n);
        n
    }

    /// Processes the bytes received so far and returns the next event, if any.
    pub fn poll_event(&mut self, now: u64) -> Result<Option<Event<'_>>, ConnectionError> {
        if self.poll_input(now)? {
            Ok(self.take_event())
        } else {
            Ok(None)
        }
    }

    /// Processes received packets until one produces an event; returns
    /// whether an event is ready for [`take_event`](Self::take_event).
    ///
    /// [`poll_event`](Self::poll_event) is both steps at once; drivers use
    /// the split form to hand out the event after their loop.
    pub fn poll_input(&mut self, now: u64) -> Result<bool, ConnectionError> {
        if self.ready.is_some() {
            return Ok(true);
        }
        loop {
            if !self.is_open() {
                return Ok(false);
            }
            self.compact();
            if self.acks_len == MAX_PENDING_ACKS {
                // Back-pressure: acknowledge what we have before reading more.
                return Ok(false);
            }
            let decoded = mqtt::decode(&self.rx[..self.rx_len], self.protocol(), self.rx.len());
            let (incoming, len) = match decoded {
                Ok((packet, len)) => (Incoming::of(&packet), len),
                Err(DecodeError::Incomplete { .. }) => return Ok(false),
                Err(DecodeError::PacketTooLarge { .. }) => {
                    self.fail(now);
                    return Err(ConnectionError::PacketTooLarge);
                }
                Err(e) => {
                    self.fail(now);
                    return Err(ConnectionError::Malformed(e));
                }
            };
            self.rx_taken = len;
            if let Some(ready) = self.apply(incoming, len, now)? {
                self.ready = Some(ready);
                return Ok(true);
            }
        }
    }

    /// Hands out the event found by [`poll_input`](Self::poll_input). A
    /// [`Event::Command`] borrows the receive buffer until the next call.
    pub fn take_event(&mut self) -> Option<Event<'_>> {
        Some(match self.ready.take()? {
            Ready::Connected { session_present } => Event::Connected { session_present },
            Ready::Subscribed { granted } => Event::Subscribed { granted },
            Ready::Delivered { packet_id } => Event::Delivered { packet_id },
            Ready::Rejected { packet_id, reason } => Event::Rejected { packet_id, reason },
            Ready::Command { len } => {
                let bytes = self.rx.get(..len)?;
                // Decoded successfully a moment ago from these same bytes.
                let Ok((Packet::Publish(p), _)) = mqtt::decode(bytes, self.protocol(), len) else {
                    return None;
                };
                Event::Command(Command {
                    topic: p.topic,
                    payload: p.payload,
                    qos: p.qos,
                    retain: p.retain,
                    dup: p.dup,
                })
            }
        })
    }

    /// Applies one packet from the server to the session.
    fn apply(
        &mut self,
        incoming: Incoming,
        len: usize,
        now: u64,
    ) -> Result<Option<Ready>, ConnectionError> {
        if self.state == State::Connecting {
            let Incoming::ConnAck {
                session_present,
                code,
                #[cfg(feature = "v5")]
                limits,
            } = incoming
            else {
                return Err(self.violation(now, &incoming));
            };
            if code != 0 {
                self.fail(now);
                return Err(ConnectionError::Refused(code));
            }
            self.state = State::Connected;
            self.backoff.reset();
            self.stats.connections = self.stats.connections.wrapping_add(1);
            self.outbox.reconnected(session_present);
            // A resumed session still has its subscription; subscribing
            // again would replay retained commands.
            self.want.subscribe = self.config.command_filter.is_some() && !session_present;
            #[cfg(feature = "v5")]
            self.apply_limits(&limits);
            return Ok(Some(Ready::Connected { session_present }));
        }
        Ok(match incoming {
            Incoming::PubAck { packet_id, reason } => {
                let accepted = reason < 0x80;
                if !self.outbox.acknowledge(packet_id, accepted) {
                    // Late ack of a message dropped by DropOldest: nothing to do.
                    None
                } else if accepted {
                    Some(Ready::Delivered { packet_id })
                } else {
                    Some(Ready::Rejected { packet_id, reason })
                }
            }
            Incoming::SubAck { packet_id, code } if packet_id == self.subscribe_id => {
                self.subscribe_id = 0;
                let granted = if code < 0x80 {
                    QoS::from_u8(code)
                } else {
                    None
                };
                Some(Ready::Subscribed { granted })
            }
            Incoming::SubAck { .. } | Incoming::UnsubAck => None,
            Incoming::PingResp => {
                self.ping_sent = None;
                None
            }
            Incoming::Publish { qos, packet_id } => {
                match (qos, packet_id) {
                    (QoS::AtMostOnce, _) => {}
                    (QoS::AtLeastOnce, Some(id)) => {
                        self.acks[self.acks_len] = id;
                        self.acks_len += 1;
                    }
                    // We subscribe at QoS 1: a QoS 2 delivery breaks the grant.
                    _ => return Err(self.violation(now, &incoming)),
                }
                self.stats.commands = self.stats.commands.wrapping_add(1);
                Some(Ready::Command { len })
            }
            Incoming::Disconnect(reason) => {
                self.fail(now);
                return Err(ConnectionError::ServerDisconnect(reason));
            }
            Incoming::ConnAck { .. } | Incoming::Unexpected(_) => {
                return Err(self.violation(now, &incoming));
            }
        })
    }

    #[cfg(feature = "v5")]
    fn apply_limits(&mut self, limits: &ServerLimits) {
        if !self.protocol().is_v5() {
            return;
        }
        self.in_flight_limit = self.config.max_in_flight.max(1);
        if let Some(max) = limits.receive_maximum {
            self.in_flight_limit = self.in_flight_limit.min(max.max(1));
        }
        self.server_max_packet = limits.maximum_packet_size.unwrap_or(u32::MAX);
        if let Some(secs) = limits.server_keep_alive {
            self.keep_alive_ms = u64::from(secs) * 1000;
        }
    }

    fn violation(&mut self, now: u64, incoming: &Incoming) -> ConnectionError {
        self.fail(now);
        ConnectionError::ProtocolViolation(match incoming {
            Incoming::ConnAck { .. } => PacketType::ConnAck,
            Incoming::PubAck { .. } => PacketType::PubAck,
            Incoming::SubAck { .. } => PacketType::SubAck,
            Incoming::Publish { .. } => PacketType::Publish,
            Incoming::PingResp => PacketType::PingResp,
            Incoming::Disconnect(_) => PacketType::Disconnect,
            Incoming::UnsubAck => PacketType::UnsubAck,
            Incoming::Unexpected(t) => *t,
        })
    }

    fn is_open(&self) -> bool {
        matches!(
            self.state,
            State::Connecting | State::Connected | State::Disconnecting
        )
    }

    /// Drops the packet already processed from the front of the receive buffer.
    fn compact(&mut self) {
        if self.ready.is_some() || self.rx_taken == 0 {
            return;
        }
        let taken = self.rx_taken.min(self.rx_len);
        self.rx.copy_within(taken..self.rx_len, 0);
        self.rx_len -= taken;
        self.rx_taken = 0;
    }

    /// Ends the connection after an error and schedules the next attempt.
    fn fail(&mut self, now: u64) {
        self.reset_connection();
        self.state = State::Disconnected;
        self.stats.connection_losses = self.stats.connection_losses.wrapping_add(1);
        self.deadline = now.saturating_add(u64::from(self.backoff.next_delay()));
    }

    /// Forgets everything that belongs to one connection (not the outbox).
    fn reset_connection(&mut self) {
        self.rx_len = 0;
        self.rx_taken = 0;
        self.ready = None;
        self.ping_sent = None;
        self.want = Want::default();
        self.acks_len = 0;
        self.subscribe_id = 0;
        self.keep_alive_ms = u64::from(self.config.keep_alive_secs) * 1000;
        self.in_flight_limit = self.config.max_in_flight.max(1);
        #[cfg(feature = "v5")]
        {
            self.server_max_packet = u32::MAX;
        }
    }
}

/// A packet the client sends, encoded by its own type's encoder.
///
/// The client calls the per-type encoders of the codec rather than
/// [`Packet::encode`], whose dispatch over every packet type would link the
/// encoders of all of them (AUTH, SUBACK, CONNACK...) into the firmware.
trait Wire {
    fn wire_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError>;
    fn wire_encode(&self, version: ProtocolVersion, buf: &mut [u8]) -> Result<usize, EncodeError>;
}

impl Wire for Connect<'_> {
    fn wire_len(&self, _: ProtocolVersion) -> Result<usize, EncodeError> {
        self.encoded_len()
    }
    fn wire_encode(&self, _: ProtocolVersion, buf: &mut [u8]) -> Result<usize, EncodeError> {
        self.encode(buf)
    }
}

macro_rules! wire_by_version {
    ($($ty:ident),*) => {$(
        impl Wire for $ty<'_> {
            fn wire_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
                self.encoded_len(version)
            }
            fn wire_encode(&self, version: ProtocolVersion, buf: &mut [u8]) -> Result<usize, EncodeError> {
                self.encode(version, buf)
            }
        }
    )*};
}

wire_by_version!(Publish, Subscribe, Disconnect);

/// A packet with one fixed encoding in MQTT 3.1.1 and 5.0: PINGREQ, and
/// PUBACK with reason Success and no properties (MQTT 5 §3.4.2.1 allows the
/// remaining length 2 form). The codec has no per-type encoder for these.
struct Fixed<const L: usize>([u8; L]);

const PINGREQ: Fixed<2> = Fixed([0xC0, 0x00]);

fn puback(packet_id: u16) -> Fixed<4> {
    let [hi, lo] = packet_id.to_be_bytes();
    Fixed([0x40, 0x02, hi, lo])
}

impl<const L: usize> Wire for Fixed<L> {
    fn wire_len(&self, _: ProtocolVersion) -> Result<usize, EncodeError> {
        Ok(L)
    }
    fn wire_encode(&self, _: ProtocolVersion, buf: &mut [u8]) -> Result<usize, EncodeError> {
        buf.get_mut(..L)
            .ok_or(EncodeError::BufferTooSmall { needed: L })?
            .copy_from_slice(&self.0);
        Ok(L)
    }
}

/// Packs whole packets into the transmit buffer.
struct Out<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Out<'_> {
    /// Writes `packet` if it fits: `Ok(false)` if it does not fit after
    /// earlier packets (send those first), an error if it could never fit.
    fn put(&mut self, packet: &impl Wire, version: ProtocolVersion) -> Result<bool, EncodeError> {
        let len = packet.wire_len(version)?;
        let free = self.buf.len() - self.pos;
        if len > free {
            return if self.pos > 0 {
                Ok(false)
            } else {
                Err(EncodeError::BufferTooSmall { needed: len })
            };
        }
        let n = packet.wire_encode(version, &mut self.buf[self.pos..])?;
        self.pos += n;
        Ok(true)
    }
}

/// FNV-1a: a stable per-device default for the jitter seed.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811C_9DC5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}
