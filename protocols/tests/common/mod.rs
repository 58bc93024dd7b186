//! Shared test support: owned packet models, proptest strategies that only
//! produce valid packets, and the round-trip oracle.
//!
//! The tables of which property and reason code each packet type may carry
//! are written out here independently of the crate's own tables, so a
//! mistake in either shows up as a failing round trip.
#![allow(dead_code)]

use proptest::prelude::*;
use tether_protocols::mqtt::*;

pub const V31: ProtocolVersion = ProtocolVersion::V3_1;
pub const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
pub const V5: ProtocolVersion = ProtocolVersion::V5;

/// Where a property block sits (test-side copy of the spec's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctx {
    Connect,
    Will,
    ConnAck,
    Publish,
    Ack,
    Subscribe,
    Unsubscribe,
    Disconnect,
    Auth,
}

/// Owned MQTT 5 properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OProps {
    pub pfi: Option<u8>,
    pub mei: Option<u32>,
    pub ct: Option<String>,
    pub rt: Option<String>,
    pub cd: Option<Vec<u8>>,
    pub sid: Option<u32>,
    pub sei: Option<u32>,
    pub aci: Option<String>,
    pub ska: Option<u16>,
    pub am: Option<String>,
    pub ad: Option<Vec<u8>>,
    pub rpi: Option<u8>,
    pub wdi: Option<u32>,
    pub rri: Option<u8>,
    pub ri: Option<String>,
    pub sr: Option<String>,
    pub rs: Option<String>,
    pub rm: Option<u16>,
    pub tam: Option<u16>,
    pub ta: Option<u16>,
    pub mq: Option<u8>,
    pub ra: Option<u8>,
    pub mps: Option<u32>,
    pub wsa: Option<u8>,
    pub sia: Option<u8>,
    pub ssa: Option<u8>,
    pub user: Vec<(String, String)>,
    pub sids: Vec<u32>,
}

impl OProps {
    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Keeps only the properties `ctx` allows.
    pub fn masked(mut self, ctx: Ctx) -> Self {
        use Ctx::*;
        let keep = |allowed: &[Ctx]| allowed.contains(&ctx);
        if !keep(&[Publish, Will]) {
            self.pfi = None;
            self.mei = None;
            self.ct = None;
            self.rt = None;
            self.cd = None;
        }
        if !keep(&[Subscribe]) {
            self.sid = None;
        }
        if !keep(&[Publish]) {
            self.sids.clear();
            self.ta = None;
        }
        if !keep(&[Connect, ConnAck, Disconnect]) {
            self.sei = None;
        }
        if !keep(&[ConnAck]) {
            self.aci = None;
            self.ska = None;
            self.ri = None;
            self.mq = None;
            self.ra = None;
            self.wsa = None;
            self.sia = None;
            self.ssa = None;
        }
        if !keep(&[Connect, ConnAck, Auth]) {
            self.am = None;
            self.ad = None;
        }
        if !keep(&[Connect]) {
            self.rpi = None;
            self.rri = None;
        }
        if !keep(&[Will]) {
            self.wdi = None;
        }
        if !keep(&[ConnAck, Disconnect]) {
            self.sr = None;
        }
        if !keep(&[ConnAck, Ack, Disconnect, Auth]) {
            self.rs = None;
        }
        if !keep(&[Connect, ConnAck]) {
            self.rm = None;
            self.tam = None;
            self.mps = None;
        }
        // §3.1.2.11.10: Authentication Data needs an Authentication Method.
        if self.ad.is_some() && self.am.is_none() {
            self.am = Some("SCRAM-SHA-1".into());
        }
        self
    }

    /// `(name, value)` references for [`UserProperties::Slice`].
    pub fn user_refs(&self) -> Vec<(&str, &str)> {
        self.user
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Borrowed properties; `user` comes from [`Self::user_refs`].
    pub fn borrow<'a>(&'a self, user: &'a [(&'a str, &'a str)]) -> Properties<'a> {
        Properties {
            payload_format_indicator: self.pfi,
            message_expiry_interval: self.mei,
            content_type: self.ct.as_deref(),
            response_topic: self.rt.as_deref(),
            correlation_data: self.cd.as_deref(),
            subscription_identifier: self.sid,
            session_expiry_interval: self.sei,
            assigned_client_identifier: self.aci.as_deref(),
            server_keep_alive: self.ska,
            authentication_method: self.am.as_deref(),
            authentication_data: self.ad.as_deref(),
            request_problem_information: self.rpi,
            will_delay_interval: self.wdi,
            request_response_information: self.rri,
            response_information: self.ri.as_deref(),
            server_reference: self.sr.as_deref(),
            reason_string: self.rs.as_deref(),
            receive_maximum: self.rm,
            topic_alias_maximum: self.tam,
            topic_alias: self.ta,
            maximum_qos: self.mq,
            retain_available: self.ra,
            maximum_packet_size: self.mps,
            wildcard_subscription_available: self.wsa,
            subscription_identifier_available: self.sia,
            shared_subscription_available: self.ssa,
            user_properties: UserProperties::Slice(user),
            subscription_identifiers: SubscriptionIds::Slice(&self.sids),
        }
    }
}

/// Any UTF-8 string without U+0000.
pub fn text() -> impl Strategy<Value = String> {
    "[^\\x00]{0,8}"
}

pub fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..16)
}

/// A valid topic name.
pub fn topic_name() -> impl Strategy<Value = String> {
    prop::collection::vec("[^/+#\\x00]{0,5}", 1..5)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("non-empty", |t| !t.is_empty())
}

/// A valid topic filter that is not a shared subscription.
pub fn topic_filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![3 => "[^/+#\\x00]{0,5}", 1 => Just("+".to_string())];
    (prop::collection::vec(level, 1..5), any::<bool>())
        .prop_map(|(mut levels, hash)| {
            if hash {
                levels.push("#".into());
            }
            levels.join("/")
        })
        .prop_filter("non-empty, not shared", |f| {
            !f.is_empty() && !f.starts_with("$share/")
        })
}

/// A valid MQTT 5 shared subscription filter.
pub fn shared_filter() -> impl Strategy<Value = String> {
    ("[^/+#\\x00]{1,5}", topic_filter()).prop_map(|(g, f)| format!("$share/{g}/{f}"))
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop::option::weighted(0.3, s).boxed()
}

/// Every property with a valid value, before masking.
pub fn all_props() -> impl Strategy<Value = OProps> {
    let a = (
        opt(0u8..=1),
        opt(any::<u32>()),
        opt(text()),
        opt(topic_name()),
        opt(bytes()),
        opt(1u32..=268_435_455),
        opt(any::<u32>()),
        opt(text()),
        opt(any::<u16>()),
        opt(text()),
    );
    let b = (
        opt(bytes()),
        opt(0u8..=1),
        opt(any::<u32>()),
        opt(0u8..=1),
        opt(text()),
        opt(text()),
        opt(text()),
        opt(1u16..),
        opt(any::<u16>()),
        opt(1u16..),
    );
    let c = (
        opt(0u8..=1),
        opt(0u8..=1),
        opt(1u32..),
        opt(0u8..=1),
        opt(0u8..=1),
        opt(0u8..=1),
        prop::collection::vec((text(), text()), 0..3),
        prop::collection::vec(1u32..=268_435_455, 0..3),
    );
    (a, b, c).prop_map(
        |(
            (pfi, mei, ct, rt, cd, sid, sei, aci, ska, am),
            (ad, rpi, wdi, rri, ri, sr, rs, rm, tam, ta),
            (mq, ra, mps, wsa, sia, ssa, user, sids),
        )| OProps {
            pfi,
            mei,
            ct,
            rt,
            cd,
            sid,
            sei,
            aci,
            ska,
            am,
            ad,
            rpi,
            wdi,
            rri,
            ri,
            sr,
            rs,
            rm,
            tam,
            ta,
            mq,
            ra,
            mps,
            wsa,
            sia,
            ssa,
            user,
            sids,
        },
    )
}

/// Properties valid in `ctx` for `version` (always empty before MQTT 5).
pub fn props(ctx: Ctx, version: ProtocolVersion) -> BoxedStrategy<OProps> {
    if version.is_v5() {
        all_props().prop_map(move |p| p.masked(ctx)).boxed()
    } else {
        Just(OProps::default()).boxed()
    }
}

pub fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

/// Reason codes each packet type may carry (test-side copy of §2.4).
pub const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
pub const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
pub const PUBREL_CODES: &[u8] = &[0x00, 0x92];
pub const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
pub const SUBACK_V3_CODES: &[u8] = &[0x00, 0x01, 0x02, 0x80];
pub const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
pub const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8C, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94,
    0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
pub const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];

pub fn code_from(codes: &'static [u8]) -> impl Strategy<Value = u8> {
    prop::sample::select(codes)
}

pub fn packet_id() -> impl Strategy<Value = u16> {
    1u16..
}

/// Owned will.
#[derive(Debug, Clone)]
pub struct OWill {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
    pub props: OProps,
}

/// Owned packets, one variant per packet type (test models, so size does not matter).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum OPacket {
    Connect {
        protocol: ProtocolVersion,
        clean_start: bool,
        keep_alive: u16,
        client_id: String,
        will: Option<OWill>,
        username: Option<String>,
        password: Option<Vec<u8>>,
        props: OProps,
    },
    ConnAck {
        session_present: bool,
        code: u8,
        props: OProps,
    },
    Publish {
        dup: bool,
        qos: QoS,
        retain: bool,
        topic: String,
        packet_id: Option<u16>,
        props: OProps,
        payload: Vec<u8>,
    },
    /// PUBACK (4), PUBREC (5), PUBREL (6) or PUBCOMP (7).
    PubResponse {
        kind: u8,
        packet_id: u16,
        reason: u8,
        props: OProps,
    },
    Subscribe {
        packet_id: u16,
        props: OProps,
        filters: Vec<(String, SubscriptionOptions)>,
    },
    SubAck {
        packet_id: u16,
        props: OProps,
        codes: Vec<u8>,
    },
    Unsubscribe {
        packet_id: u16,
        props: OProps,
        filters: Vec<String>,
    },
    UnsubAck {
        packet_id: u16,
        props: OProps,
        codes: Vec<u8>,
    },
    PingReq,
    PingResp,
    Disconnect {
        reason: u8,
        props: OProps,
    },
    Auth {
        reason: u8,
        props: OProps,
    },
}

pub fn connect(protocol: ProtocolVersion) -> impl Strategy<Value = OPacket> {
    let will = (
        topic_name(),
        bytes(),
        qos(),
        any::<bool>(),
        props(Ctx::Will, protocol),
    )
        .prop_map(|(topic, payload, qos, retain, props)| OWill {
            topic,
            payload,
            qos,
            retain,
            props,
        });
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        prop::option::of(will),
        prop::option::of(text()),
        prop::option::of(bytes()),
        props(Ctx::Connect, protocol),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, mut username, password, props)| {
                // Before MQTT 5 a password requires a user name.
                if !protocol.is_v5() && password.is_some() && username.is_none() {
                    username = Some("user".into());
                }
                OPacket::Connect {
                    protocol,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    props,
                }
            },
        )
}

pub fn connack(version: ProtocolVersion) -> impl Strategy<Value = OPacket> {
    let code: BoxedStrategy<u8> = if version.is_v5() {
        code_from(CONNACK_CODES).boxed()
    } else {
        (0u8..=5).boxed()
    };
    (any::<bool>(), code, props(Ctx::ConnAck, version)).prop_map(|(sp, code, props)| {
        OPacket::ConnAck {
            session_present: sp && code == 0,
            code,
            props,
        }
    })
}

pub fn publish(version: ProtocolVersion) -> impl Strategy<Value = OPacket> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        packet_id(),
        props(Ctx::Publish, version),
        bytes(),
        any::<bool>(),
    )
        .prop_map(
            move |(dup, qos, retain, topic, id, props, payload, alias_only)| {
                let qos0 = qos == QoS::AtMostOnce;
                // §3.3.2.3.4: in MQTT 5 the topic may be empty when a Topic Alias is sent.
                let topic = if version.is_v5() && props.ta.is_some() && alias_only {
                    String::new()
                } else {
                    topic
                };
                OPacket::Publish {
                    dup: dup && !qos0,
                    qos,
                    retain,
                    topic,
                    packet_id: (!qos0).then_some(id),
                    props,
                    payload,
                }
            },
        )
}

pub fn pub_response(kind: u8, version: ProtocolVersion) -> impl Strategy<Value = OPacket> {
    let codes = if kind <= 5 {
        PUBACK_CODES
    } else {
        PUBREL_CODES
    };
    let reason: BoxedStrategy<u8> = if version.is_v5() {
        code_from(codes).boxed()
    } else {
        Just(0).boxed()
    };
    (packet_id(), reason, props(Ctx::Ack, version)).prop_map(move |(packet_id, reason, props)| {
        OPacket::PubResponse {
            kind,
            packet_id,
            reason,
            props,
        }
    })
}

pub fn subscription_options(version: ProtocolVersion) -> BoxedStrategy<SubscriptionOptions> {
    if version.is_v5() {
        (qos(), any::<bool>(), any::<bool>(), 0u8..=2)
            .prop_map(|(qos, no_local, rap, rh)| SubscriptionOptions {
                qos,
                no_local,
                retain_as_published: rap,
                retain_handling: RetainHandling::from_u8(rh).unwrap(),
            })
            .boxed()
    } else {
        qos().prop_map(SubscriptionOptions::with_qos).boxed()
    }
}

pub fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = OPacket> {
    let filter: BoxedStrategy<(String, SubscriptionOptions)> = if version.is_v5() {
        prop_oneof![
            4 => (topic_filter(), subscription_options(version)),
            // §3.8.3.1: No Local must not be set on a shared subscription.
            1 => (shared_filter(), subscription_options(version))
                .prop_map(|(f, o)| (f, SubscriptionOptions { no_local: false, ..o })),
        ]
        .boxed()
    } else {
        (topic_filter(), subscription_options(version)).boxed()
    };
    (
        packet_id(),
        props(Ctx::Subscribe, version),
        prop::collection::vec(filter, 1..5),
    )
        .prop_map(|(packet_id, props, filters)| OPacket::Subscribe {
            packet_id,
            props,
            filters,
        })
}

pub fn suback(version: ProtocolVersion) -> impl Strategy<Value = OPacket> {
    let codes = if version.is_v5() {
        SUBACK_CODES
    } else {
        SUBACK_V3_CODES
    };
    (
        packet_id(),
        props(Ctx::Ack, version),
        prop::collection::vec(code_from(codes), 1..6),
    )
        .prop_map(|(packet_id, props, codes)| OPacket::SubAck {
            packet_id,
            props,
            codes,
        })
}

pub fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = OPacket> {
    let filter: BoxedStrategy<String> = if version.is_v5() {
        prop_oneof![4 => topic_filter(), 1 => shared_filter()].boxed()
    } else {
        topic_filter().boxed()
    };
    (
        packet_id(),
        props(Ctx::Unsubscribe, version),
        prop::collection::vec(filter, 1..5),
    )
        .prop_map(|(packet_id, props, filters)| OPacket::Unsubscribe {
            packet_id,
            props,
            filters,
        })
}

pub fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = OPacket> {
    let codes: BoxedStrategy<Vec<u8>> = if version.is_v5() {
        prop::collection::vec(code_from(UNSUBACK_CODES), 1..6).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (packet_id(), props(Ctx::Ack, version), codes).prop_map(|(packet_id, props, codes)| {
        OPacket::UnsubAck {
            packet_id,
            props,
            codes,
        }
    })
}

pub fn disconnect(version: ProtocolVersion) -> impl Strategy<Value = OPacket> {
    let reason: BoxedStrategy<u8> = if version.is_v5() {
        code_from(DISCONNECT_CODES).boxed()
    } else {
        Just(0).boxed()
    };
    (reason, props(Ctx::Disconnect, version))
        .prop_map(|(reason, props)| OPacket::Disconnect { reason, props })
}

pub fn auth() -> impl Strategy<Value = OPacket> {
    (code_from(AUTH_CODES), props(Ctx::Auth, V5))
        .prop_map(|(reason, props)| OPacket::Auth { reason, props })
}

/// Any valid packet for `version` (CONNECT in `version` too).
pub fn any_packet(version: ProtocolVersion) -> BoxedStrategy<OPacket> {
    let mut options = vec![
        connect(version).boxed(),
        connack(version).boxed(),
        publish(version).boxed(),
        pub_response(4, version).boxed(),
        pub_response(5, version).boxed(),
        pub_response(6, version).boxed(),
        pub_response(7, version).boxed(),
        subscribe(version).boxed(),
        suback(version).boxed(),
        unsubscribe(version).boxed(),
        unsuback(version).boxed(),
        Just(OPacket::PingReq).boxed(),
        Just(OPacket::PingResp).boxed(),
        disconnect(version).boxed(),
    ];
    if version.is_v5() {
        options.push(auth().boxed());
    }
    prop::strategy::Union::new(options).boxed()
}

/// Builds the borrowed [`Packet`] for `o` and hands it to `f`.
pub fn with_packet<R>(o: &OPacket, f: impl FnOnce(Packet<'_>) -> R) -> R {
    match o {
        OPacket::Connect {
            protocol,
            clean_start,
            keep_alive,
            client_id,
            will,
            username,
            password,
            props,
        } => {
            let user = props.user_refs();
            let will_user = will
                .as_ref()
                .map(|w| w.props.user_refs())
                .unwrap_or_default();
            f(Packet::Connect(Connect {
                protocol: *protocol,
                clean_start: *clean_start,
                keep_alive: *keep_alive,
                client_id,
                will: will.as_ref().map(|w| Will {
                    topic: &w.topic,
                    payload: &w.payload,
                    qos: w.qos,
                    retain: w.retain,
                    properties: w.props.borrow(&will_user),
                }),
                username: username.as_deref(),
                password: password.as_deref(),
                properties: props.borrow(&user),
            }))
        }
        OPacket::ConnAck {
            session_present,
            code,
            props,
        } => {
            let user = props.user_refs();
            f(Packet::ConnAck(ConnAck {
                session_present: *session_present,
                code: ReasonCode(*code),
                properties: props.borrow(&user),
            }))
        }
        OPacket::Publish {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            props,
            payload,
        } => {
            let user = props.user_refs();
            f(Packet::Publish(Publish {
                dup: *dup,
                qos: *qos,
                retain: *retain,
                topic,
                packet_id: *packet_id,
                properties: props.borrow(&user),
                payload,
            }))
        }
        OPacket::PubResponse {
            kind,
            packet_id,
            reason,
            props,
        } => {
            let user = props.user_refs();
            let r = PubResponse {
                packet_id: *packet_id,
                reason: ReasonCode(*reason),
                properties: props.borrow(&user),
            };
            f(match kind {
                4 => Packet::PubAck(r),
                5 => Packet::PubRec(r),
                6 => Packet::PubRel(r),
                _ => Packet::PubComp(r),
            })
        }
        OPacket::Subscribe {
            packet_id,
            props,
            filters,
        } => {
            let user = props.user_refs();
            let filters: Vec<(&str, SubscriptionOptions)> =
                filters.iter().map(|(f, o)| (f.as_str(), *o)).collect();
            f(Packet::Subscribe(Subscribe {
                packet_id: *packet_id,
                properties: props.borrow(&user),
                filters: SubscribeFilters::Slice(&filters),
            }))
        }
        OPacket::SubAck {
            packet_id,
            props,
            codes,
        } => {
            let user = props.user_refs();
            f(Packet::SubAck(SubAck {
                packet_id: *packet_id,
                properties: props.borrow(&user),
                return_codes: codes,
            }))
        }
        OPacket::Unsubscribe {
            packet_id,
            props,
            filters,
        } => {
            let user = props.user_refs();
            let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
            f(Packet::Unsubscribe(Unsubscribe {
                packet_id: *packet_id,
                properties: props.borrow(&user),
                filters: UnsubscribeFilters::Slice(&filters),
            }))
        }
        OPacket::UnsubAck {
            packet_id,
            props,
            codes,
        } => {
            let user = props.user_refs();
            f(Packet::UnsubAck(UnsubAck {
                packet_id: *packet_id,
                properties: props.borrow(&user),
                reason_codes: codes,
            }))
        }
        OPacket::PingReq => f(Packet::PingReq),
        OPacket::PingResp => f(Packet::PingResp),
        OPacket::Disconnect { reason, props } => {
            let user = props.user_refs();
            f(Packet::Disconnect(Disconnect {
                reason: ReasonCode(*reason),
                properties: props.borrow(&user),
            }))
        }
        OPacket::Auth { reason, props } => {
            let user = props.user_refs();
            f(Packet::Auth(Auth {
                reason: ReasonCode(*reason),
                properties: props.borrow(&user),
            }))
        }
    }
}

/// Encodes `packet` for `version`.
pub fn encode_vec(packet: &Packet<'_>, version: ProtocolVersion) -> Vec<u8> {
    let len = packet.encoded_len(version).expect("encodable");
    let mut buf = vec![0u8; len];
    let n = packet.encode(version, &mut buf).expect("encodes");
    assert_eq!(n, len, "encode wrote a different length than encoded_len");
    buf
}

/// Length of the fixed header at the front of an encoded packet.
pub fn header_len(buf: &[u8]) -> usize {
    2 + buf[1..]
        .iter()
        .position(|b| b & 0x80 == 0)
        .expect("terminated")
}

/// The round-trip oracle: exact length, decode to an equal packet consuming
/// every byte, byte-identical re-encoding of the decoded (wire-backed) packet,
/// a precise `Incomplete` for every prefix and `BufferTooSmall` for a short buffer.
pub fn assert_round_trip(
    packet: &Packet<'_>,
    version: ProtocolVersion,
) -> Result<(), TestCaseError> {
    let len = packet
        .encoded_len(version)
        .map_err(|e| TestCaseError::fail(format!("encoded_len failed: {e:?} for {packet:?}")))?;
    let mut buf = vec![0u8; len];
    let written = packet
        .encode(version, &mut buf)
        .map_err(|e| TestCaseError::fail(format!("encode failed: {e:?}")))?;
    prop_assert_eq!(written, len);
    prop_assert_eq!(frame_len(&buf, usize::MAX), Ok(Some(len)));

    let (decoded, used) = decode(&buf, version, usize::MAX)
        .map_err(|e| TestCaseError::fail(format!("decode failed: {e:?} for {buf:02X?}")))?;
    prop_assert_eq!(used, len);
    prop_assert_eq!(&decoded, packet);

    // The decoded packet points into `buf` (Encoded forms); it re-encodes to
    // the very same bytes.
    let again = encode_vec(&decoded, version);
    prop_assert_eq!(&again, &buf);

    // Trailing bytes of the next packet are not consumed.
    let mut two = buf.clone();
    two.extend_from_slice(&[0xC0, 0x00]);
    let (_, used_two) = decode(&two, version, usize::MAX)
        .map_err(|e| TestCaseError::fail(format!("decode with trailer failed: {e:?}")))?;
    prop_assert_eq!(used_two, len);

    let header = header_len(&buf);
    for k in 0..len {
        match decode(&buf[..k], version, usize::MAX) {
            Err(DecodeError::Incomplete { needed }) => {
                let needed = needed.get();
                prop_assert!(
                    k + needed <= len,
                    "prefix {k}: needed {needed} overshoots {len}"
                );
                if k >= header {
                    prop_assert_eq!(k + needed, len, "prefix {}: needed {} not exact", k, needed);
                }
            }
            other => prop_assert!(false, "prefix {k} of {len}: {other:?}"),
        }
    }

    if len > 0 {
        let mut short = vec![0u8; len - 1];
        prop_assert_eq!(
            packet.encode(version, &mut short),
            Err(EncodeError::BufferTooSmall { needed: len })
        );
    }
    Ok(())
}

/// If `bytes` decode, the packet must re-encode and decode to an equal packet.
pub fn assert_decode_oracle(bytes: &[u8], version: ProtocolVersion) -> Result<(), TestCaseError> {
    let mut rest = bytes;
    let mut connected = version;
    // Decode packets back to back like a server reading a stream.
    while let Ok(Some(total)) = frame_len(rest, 1 << 20) {
        if total > rest.len() {
            let incomplete = matches!(
                decode(rest, connected, 1 << 20),
                Err(DecodeError::Incomplete { .. })
            );
            prop_assert!(incomplete, "a cut packet must be Incomplete");
            break;
        }
        match decode(rest, connected, 1 << 20) {
            Ok((packet, used)) => {
                prop_assert_eq!(used, total);
                if let Packet::Connect(c) = &packet {
                    connected = c.protocol;
                }
                let encoded = packet
                    .encoded_len(connected)
                    .and_then(|len| {
                        let mut buf = vec![0u8; len];
                        packet.encode(connected, &mut buf).map(|_| buf)
                    })
                    .map_err(|e| {
                        TestCaseError::fail(format!("re-encode failed: {e:?} for {packet:?}"))
                    })?;
                let (again, used) = decode(&encoded, connected, usize::MAX)
                    .map_err(|e| TestCaseError::fail(format!("re-decode failed: {e:?}")))?;
                prop_assert_eq!(used, encoded.len());
                prop_assert_eq!(again, packet);
            }
            Err(DecodeError::Incomplete { .. }) => {
                prop_assert!(false, "Incomplete although {total} <= {}", rest.len());
            }
            Err(_) => {}
        }
        rest = &rest[total..];
    }
    Ok(())
}

/// A packet from its first byte and body, with the remaining length filled in.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string or binary field.
pub fn lp(bytes: impl AsRef<[u8]>) -> Vec<u8> {
    let bytes = bytes.as_ref();
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A property block: the length (one byte, < 128) followed by the entries.
pub fn props_block(entries: &[u8]) -> Vec<u8> {
    assert!(entries.len() < 128);
    let mut out = vec![entries.len() as u8];
    out.extend_from_slice(entries);
    out
}

/// Decodes exactly one whole packet, asserting every byte was consumed.
pub fn decode_all(bytes: &[u8], version: ProtocolVersion) -> Result<Packet<'_>, DecodeError> {
    let (packet, used) = decode(bytes, version, usize::MAX)?;
    assert_eq!(
        used,
        bytes.len(),
        "decode consumed {used} of {} bytes",
        bytes.len()
    );
    Ok(packet)
}

/// A v5 PUBLISH (QoS 0, topic `t`) with the given property entries.
pub fn v5_publish_with(entries: &[u8]) -> Vec<u8> {
    frame(
        0x30,
        &[lp("t"), props_block(entries), b"x".to_vec()].concat(),
    )
}

/// A CONNECT body: protocol name, level, flags, keep alive 60, then `rest`.
pub fn connect_body(name: &str, level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    [lp(name), vec![level, flags, 0, 60], rest.to_vec()].concat()
}
