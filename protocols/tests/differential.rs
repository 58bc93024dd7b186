//! Differential tests against rumqttc's codecs (`rumqttc::mqttbytes::v4` for
//! MQTT 3.1.1, `rumqttc::v5::mqttbytes::v5` for MQTT 5), in both directions:
//!
//! * ours → rumqttc: a generated packet encoded by us is read by rumqttc and
//!   must equal the rumqttc packet built from the same model.
//! * rumqttc → ours: that rumqttc packet written by rumqttc is decoded by us
//!   and must equal our packet built from the same model.
//!
//! Equality of the rumqttc structs compares every field (properties
//! included); equality of ours compares user properties, filters etc. by
//! content.
//!
//! rumqttc deviates from the specification in a few places. The generators
//! stay on the common ground there, and each restriction names the quirk:
//!
//! * Q1 credentials: rumqttc treats an empty user name or password as absent
//!   (`Login::write` skips empty strings, `Login::read` maps two empty ones to
//!   `None`) and stores the password as a `String`, so it cannot carry binary
//!   passwords. Generated credentials are non-empty UTF-8.
//! * Q2 MQTT 3.1: rumqttc only knows protocol name `MQTT`, not `MQIsdp`, so
//!   CONNECT is compared for 3.1.1 and 5.0 only.
//! * Q3 DISCONNECT short forms (v5): `Packet::read` refuses remaining length 0
//!   (`PayloadRequired`), and `Disconnect::read` requires a property length
//!   after the reason code, although §3.14.2.2.1 allows both to be omitted.
//!   Our encoder therefore always writes the full form (reason code and
//!   property length), which every client reads; ours → rumqttc DISCONNECTs
//!   need no special casing. rumqttc → ours still covers the short forms.
//! * Q4 AUTH (v5): rumqttc's reader has no packet type 15, and its
//!   `AuthReasonCode` / `AuthProperties` are not exported, so an AUTH can be
//!   neither read nor built there. AUTH is covered by the round-trip and
//!   known-bytes tests only.
//! * Q5 DISCONNECT reason 0x8C: rumqttc's `DisconnectReasonCode` lacks 0x8C
//!   (Bad authentication method), which §3.14.2.1 allows on DISCONNECT; it is
//!   left out of the generated DISCONNECT reasons.
//! * Q6 DISCONNECT with a reason and no properties (v5): rumqttc's
//!   `Disconnect::write` announces remaining length 1 but writes two bytes
//!   (reason and an empty property length), so its output is malformed and
//!   the stray byte would start the next packet. rumqttc → ours DISCONNECTs
//!   with a non-zero reason carry a property.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use proptest::prelude::*;
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;
use tether_protocols::mqtt::{self as ours, ProtocolVersion, QoS};

// ---- model → rumqttc, MQTT 3.1.1 ----

fn q4(q: QoS) -> rumqttc::mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::mqttbytes::QoS::ExactlyOnce,
    }
}

fn to_v4(o: &OPacket) -> v4::Packet {
    match o {
        OPacket::Connect {
            clean_start,
            keep_alive,
            client_id,
            will,
            username,
            password,
            ..
        } => v4::Packet::Connect(v4::Connect {
            protocol: rumqttc::mqttbytes::Protocol::V4,
            keep_alive: *keep_alive,
            client_id: client_id.clone(),
            clean_session: *clean_start,
            last_will: will.as_ref().map(|w| v4::LastWill {
                topic: w.topic.clone(),
                message: Bytes::from(w.payload.clone()),
                qos: q4(w.qos),
                retain: w.retain,
            }),
            login: username.as_ref().map(|u| v4::Login {
                username: u.clone(),
                password: password
                    .as_ref()
                    .map(|p| String::from_utf8(p.clone()).unwrap())
                    .unwrap_or_default(),
            }),
        }),
        OPacket::ConnAck {
            session_present,
            code,
            ..
        } => v4::Packet::ConnAck(v4::ConnAck {
            session_present: *session_present,
            code: match code {
                0 => v4::ConnectReturnCode::Success,
                1 => v4::ConnectReturnCode::RefusedProtocolVersion,
                2 => v4::ConnectReturnCode::BadClientId,
                3 => v4::ConnectReturnCode::ServiceUnavailable,
                4 => v4::ConnectReturnCode::BadUserNamePassword,
                _ => v4::ConnectReturnCode::NotAuthorized,
            },
        }),
        OPacket::Publish {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            payload,
            ..
        } => v4::Packet::Publish(v4::Publish {
            dup: *dup,
            qos: q4(*qos),
            retain: *retain,
            topic: topic.clone(),
            pkid: packet_id.unwrap_or(0),
            payload: Bytes::from(payload.clone()),
        }),
        OPacket::PubResponse {
            kind, packet_id, ..
        } => match kind {
            4 => v4::Packet::PubAck(v4::PubAck { pkid: *packet_id }),
            5 => v4::Packet::PubRec(v4::PubRec { pkid: *packet_id }),
            6 => v4::Packet::PubRel(v4::PubRel { pkid: *packet_id }),
            _ => v4::Packet::PubComp(v4::PubComp { pkid: *packet_id }),
        },
        OPacket::Subscribe {
            packet_id, filters, ..
        } => v4::Packet::Subscribe(v4::Subscribe {
            pkid: *packet_id,
            filters: filters
                .iter()
                .map(|(f, o)| v4::SubscribeFilter {
                    path: f.clone(),
                    qos: q4(o.qos),
                })
                .collect(),
        }),
        OPacket::SubAck {
            packet_id, codes, ..
        } => v4::Packet::SubAck(v4::SubAck {
            pkid: *packet_id,
            return_codes: codes
                .iter()
                .map(|&c| match QoS::from_u8(c) {
                    Some(q) => v4::SubscribeReasonCode::Success(q4(q)),
                    None => v4::SubscribeReasonCode::Failure,
                })
                .collect(),
        }),
        OPacket::Unsubscribe {
            packet_id, filters, ..
        } => v4::Packet::Unsubscribe(v4::Unsubscribe {
            pkid: *packet_id,
            topics: filters.clone(),
        }),
        OPacket::UnsubAck { packet_id, .. } => {
            v4::Packet::UnsubAck(v4::UnsubAck { pkid: *packet_id })
        }
        OPacket::PingReq => v4::Packet::PingReq,
        OPacket::PingResp => v4::Packet::PingResp,
        OPacket::Disconnect { .. } => v4::Packet::Disconnect,
        OPacket::Auth { .. } => unreachable!("no AUTH in MQTT 3.1.1"),
    }
}

// ---- model → rumqttc, MQTT 5 ----

fn q5(q: QoS) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

fn bytes_of(b: &Option<Vec<u8>>) -> Option<Bytes> {
    b.clone().map(Bytes::from)
}

/// rumqttc has `None` for an empty property block.
fn some_if<T>(p: &OProps, f: impl FnOnce() -> T) -> Option<T> {
    (!p.is_empty()).then(f)
}

fn connack_code(code: u8) -> v5::ConnectReturnCode {
    use v5::ConnectReturnCode::*;
    match code {
        0x00 => Success,
        0x80 => UnspecifiedError,
        0x81 => MalformedPacket,
        0x82 => ProtocolError,
        0x83 => ImplementationSpecificError,
        0x84 => UnsupportedProtocolVersion,
        0x85 => ClientIdentifierNotValid,
        0x86 => BadUserNamePassword,
        0x87 => NotAuthorized,
        0x88 => ServerUnavailable,
        0x89 => ServerBusy,
        0x8A => Banned,
        0x8C => BadAuthenticationMethod,
        0x90 => TopicNameInvalid,
        0x95 => PacketTooLarge,
        0x97 => QuotaExceeded,
        0x99 => PayloadFormatInvalid,
        0x9A => RetainNotSupported,
        0x9B => QoSNotSupported,
        0x9C => UseAnotherServer,
        0x9D => ServerMoved,
        0x9F => ConnectionRateExceeded,
        other => panic!("not a CONNACK code: {other:#x}"),
    }
}

macro_rules! ack_reason {
    ($name:ident, $ty:ty) => {
        fn $name(code: u8) -> $ty {
            use $ty as R;
            match code {
                0x00 => R::Success,
                0x10 => R::NoMatchingSubscribers,
                0x80 => R::UnspecifiedError,
                0x83 => R::ImplementationSpecificError,
                0x87 => R::NotAuthorized,
                0x90 => R::TopicNameInvalid,
                0x91 => R::PacketIdentifierInUse,
                0x97 => R::QuotaExceeded,
                0x99 => R::PayloadFormatInvalid,
                other => panic!("not a PUBACK/PUBREC code: {other:#x}"),
            }
        }
    };
}
ack_reason!(puback_reason, v5::PubAckReason);
ack_reason!(pubrec_reason, v5::PubRecReason);

fn suback_code(code: u8) -> v5::SubscribeReasonCode {
    use v5::SubscribeReasonCode::*;
    match code {
        0..=2 => Success(q5(QoS::from_u8(code).unwrap())),
        0x80 => Unspecified,
        0x83 => ImplementationSpecific,
        0x87 => NotAuthorized,
        0x8F => TopicFilterInvalid,
        0x91 => PkidInUse,
        0x97 => QuotaExceeded,
        0x9E => SharedSubscriptionsNotSupported,
        0xA1 => SubscriptionIdNotSupported,
        0xA2 => WildcardSubscriptionsNotSupported,
        other => panic!("not a SUBACK code: {other:#x}"),
    }
}

fn unsuback_reason(code: u8) -> v5::UnsubAckReason {
    use v5::UnsubAckReason::*;
    match code {
        0x00 => Success,
        0x11 => NoSubscriptionExisted,
        0x80 => UnspecifiedError,
        0x83 => ImplementationSpecificError,
        0x87 => NotAuthorized,
        0x8F => TopicFilterInvalid,
        0x91 => PacketIdentifierInUse,
        other => panic!("not an UNSUBACK code: {other:#x}"),
    }
}

fn to_v5(o: &OPacket) -> v5::Packet {
    match o {
        OPacket::Connect {
            clean_start,
            keep_alive,
            client_id,
            will,
            username,
            password,
            props: p,
            ..
        } => v5::Packet::Connect(
            v5::Connect {
                keep_alive: *keep_alive,
                client_id: client_id.clone(),
                clean_start: *clean_start,
                properties: some_if(p, || v5::ConnectProperties {
                    session_expiry_interval: p.sei,
                    receive_maximum: p.rm,
                    max_packet_size: p.mps,
                    topic_alias_max: p.tam,
                    request_response_info: p.rri,
                    request_problem_info: p.rpi,
                    user_properties: p.user.clone(),
                    authentication_method: p.am.clone(),
                    authentication_data: bytes_of(&p.ad),
                }),
            },
            will.as_ref().map(|w| v5::LastWill {
                topic: Bytes::from(w.topic.clone()),
                message: Bytes::from(w.payload.clone()),
                qos: q5(w.qos),
                retain: w.retain,
                properties: some_if(&w.props, || v5::LastWillProperties {
                    delay_interval: w.props.wdi,
                    payload_format_indicator: w.props.pfi,
                    message_expiry_interval: w.props.mei,
                    content_type: w.props.ct.clone(),
                    response_topic: w.props.rt.clone(),
                    correlation_data: bytes_of(&w.props.cd),
                    user_properties: w.props.user.clone(),
                }),
            }),
            username.as_ref().map(|u| v5::Login {
                username: u.clone(),
                password: password
                    .as_ref()
                    .map(|p| String::from_utf8(p.clone()).unwrap())
                    .unwrap_or_default(),
            }),
        ),
        OPacket::ConnAck {
            session_present,
            code,
            props: p,
        } => v5::Packet::ConnAck(v5::ConnAck {
            session_present: *session_present,
            code: connack_code(*code),
            properties: some_if(p, || v5::ConnAckProperties {
                session_expiry_interval: p.sei,
                receive_max: p.rm,
                max_qos: p.mq,
                retain_available: p.ra,
                max_packet_size: p.mps,
                assigned_client_identifier: p.aci.clone(),
                topic_alias_max: p.tam,
                reason_string: p.rs.clone(),
                user_properties: p.user.clone(),
                wildcard_subscription_available: p.wsa,
                subscription_identifiers_available: p.sia,
                shared_subscription_available: p.ssa,
                server_keep_alive: p.ska,
                response_information: p.ri.clone(),
                server_reference: p.sr.clone(),
                authentication_method: p.am.clone(),
                authentication_data: bytes_of(&p.ad),
            }),
        }),
        OPacket::Publish {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            props: p,
            payload,
        } => v5::Packet::Publish(v5::Publish {
            dup: *dup,
            qos: q5(*qos),
            retain: *retain,
            topic: Bytes::from(topic.clone()),
            pkid: packet_id.unwrap_or(0),
            payload: Bytes::from(payload.clone()),
            properties: some_if(p, || v5::PublishProperties {
                payload_format_indicator: p.pfi,
                message_expiry_interval: p.mei,
                topic_alias: p.ta,
                response_topic: p.rt.clone(),
                correlation_data: bytes_of(&p.cd),
                user_properties: p.user.clone(),
                subscription_identifiers: p.sids.iter().map(|&i| i as usize).collect(),
                content_type: p.ct.clone(),
            }),
        }),
        OPacket::PubResponse {
            kind,
            packet_id,
            reason,
            props: p,
        } => {
            let pkid = *packet_id;
            match kind {
                4 => v5::Packet::PubAck(v5::PubAck {
                    pkid,
                    reason: puback_reason(*reason),
                    properties: some_if(p, || v5::PubAckProperties {
                        reason_string: p.rs.clone(),
                        user_properties: p.user.clone(),
                    }),
                }),
                5 => v5::Packet::PubRec(v5::PubRec {
                    pkid,
                    reason: pubrec_reason(*reason),
                    properties: some_if(p, || v5::PubRecProperties {
                        reason_string: p.rs.clone(),
                        user_properties: p.user.clone(),
                    }),
                }),
                6 => v5::Packet::PubRel(v5::PubRel {
                    pkid,
                    reason: if *reason == 0 {
                        v5::PubRelReason::Success
                    } else {
                        v5::PubRelReason::PacketIdentifierNotFound
                    },
                    properties: some_if(p, || v5::PubRelProperties {
                        reason_string: p.rs.clone(),
                        user_properties: p.user.clone(),
                    }),
                }),
                _ => v5::Packet::PubComp(v5::PubComp {
                    pkid,
                    reason: if *reason == 0 {
                        v5::PubCompReason::Success
                    } else {
                        v5::PubCompReason::PacketIdentifierNotFound
                    },
                    properties: some_if(p, || v5::PubCompProperties {
                        reason_string: p.rs.clone(),
                        user_properties: p.user.clone(),
                    }),
                }),
            }
        }
        OPacket::Subscribe {
            packet_id,
            props: p,
            filters,
        } => v5::Packet::Subscribe(v5::Subscribe {
            pkid: *packet_id,
            filters: filters
                .iter()
                .map(|(f, o)| v5::Filter {
                    path: f.clone(),
                    qos: q5(o.qos),
                    nolocal: o.no_local,
                    preserve_retain: o.retain_as_published,
                    retain_forward_rule: match o.retain_handling as u8 {
                        0 => v5::RetainForwardRule::OnEverySubscribe,
                        1 => v5::RetainForwardRule::OnNewSubscribe,
                        _ => v5::RetainForwardRule::Never,
                    },
                })
                .collect(),
            properties: some_if(p, || v5::SubscribeProperties {
                id: p.sid.map(|i| i as usize),
                user_properties: p.user.clone(),
            }),
        }),
        OPacket::SubAck {
            packet_id,
            props: p,
            codes,
        } => v5::Packet::SubAck(v5::SubAck {
            pkid: *packet_id,
            return_codes: codes.iter().map(|&c| suback_code(c)).collect(),
            properties: some_if(p, || v5::SubAckProperties {
                reason_string: p.rs.clone(),
                user_properties: p.user.clone(),
            }),
        }),
        OPacket::Unsubscribe {
            packet_id,
            props: p,
            filters,
        } => v5::Packet::Unsubscribe(v5::Unsubscribe {
            pkid: *packet_id,
            filters: filters.clone(),
            properties: some_if(p, || v5::UnsubscribeProperties {
                user_properties: p.user.clone(),
            }),
        }),
        OPacket::UnsubAck {
            packet_id,
            props: p,
            codes,
        } => v5::Packet::UnsubAck(v5::UnsubAck {
            pkid: *packet_id,
            reasons: codes.iter().map(|&c| unsuback_reason(c)).collect(),
            properties: some_if(p, || v5::UnsubAckProperties {
                reason_string: p.rs.clone(),
                user_properties: p.user.clone(),
            }),
        }),
        OPacket::PingReq => v5::Packet::PingReq(v5::PingReq),
        OPacket::PingResp => v5::Packet::PingResp(v5::PingResp),
        OPacket::Disconnect { reason, props: p } => v5::Packet::Disconnect(v5::Disconnect {
            reason_code: (*reason).try_into().expect("DISCONNECT code"),
            properties: some_if(p, || v5::DisconnectProperties {
                session_expiry_interval: p.sei,
                reason_string: p.rs.clone(),
                user_properties: p.user.clone(),
                server_reference: p.sr.clone(),
            }),
        }),
        OPacket::Auth { .. } => unreachable!("see Q4: AUTH is not compared"),
    }
}

// ---- the two directions ----

fn ours_to_rumqttc(o: &OPacket, version: ProtocolVersion) -> Result<(), TestCaseError> {
    let bytes = with_packet(o, |p| encode_vec(&p, version));
    let mut stream = BytesMut::from(&bytes[..]);
    if version.is_v5() {
        let read = v5::Packet::read(&mut stream, None)
            .map_err(|e| TestCaseError::fail(format!("rumqttc v5 read: {e:?} of {bytes:02X?}")))?;
        prop_assert_eq!(read, to_v5(o));
    } else {
        let read = v4::Packet::read(&mut stream, usize::MAX)
            .map_err(|e| TestCaseError::fail(format!("rumqttc v4 read: {e:?} of {bytes:02X?}")))?;
        prop_assert_eq!(read, to_v4(o));
    }
    prop_assert!(stream.is_empty(), "rumqttc left {} bytes", stream.len());
    Ok(())
}

fn rumqttc_to_ours(o: &OPacket, version: ProtocolVersion) -> Result<(), TestCaseError> {
    let mut stream = BytesMut::new();
    if version.is_v5() {
        to_v5(o)
            .write(&mut stream, None)
            .map_err(|e| TestCaseError::fail(format!("rumqttc v5 write: {e:?}")))?;
    } else {
        to_v4(o)
            .write(&mut stream, usize::MAX)
            .map_err(|e| TestCaseError::fail(format!("rumqttc v4 write: {e:?}")))?;
    }
    let (decoded, used) = ours::decode(&stream, version, usize::MAX)
        .map_err(|e| TestCaseError::fail(format!("our decode: {e:?} of {:02X?}", &stream[..])))?;
    prop_assert_eq!(used, stream.len());
    with_packet(o, |expected| {
        prop_assert_eq!(decoded, expected);
        Ok(())
    })
}

// ---- generators restricted to the common ground ----

/// Q1: non-empty UTF-8 credentials; a password only with a user name.
fn rumqttc_connect(version: ProtocolVersion) -> impl Strategy<Value = OPacket> {
    (
        connect(version),
        prop::option::of("[a-zA-Z0-9]{1,8}"),
        prop::option::of("[^\\x00]{1,8}"),
    )
        .prop_map(|(mut o, user, pass)| {
            if let OPacket::Connect {
                username, password, ..
            } = &mut o
            {
                *password = user.as_ref().and(pass).map(String::into_bytes);
                *username = user;
            }
            o
        })
}

/// Q5: no reason 0x8C.
fn rumqttc_disconnect() -> impl Strategy<Value = OPacket> {
    disconnect(V5).prop_filter("Q5: rumqttc lacks DISCONNECT reason 0x8C", |o| {
        !matches!(o, OPacket::Disconnect { reason: 0x8C, .. })
    })
}

/// Q5 and Q6: DISCONNECTs compared in both directions carry a property, since
/// rumqttc *writes* a reason-only DISCONNECT malformed (Q6). Reading our
/// property-less full form is checked separately in
/// `ping_and_disconnect_match_rumqttc_in_both_directions`.
fn rumqttc_readable_disconnect() -> impl Strategy<Value = OPacket> {
    rumqttc_disconnect().prop_map(|mut o| {
        if let OPacket::Disconnect { props, .. } = &mut o
            && props.is_empty()
        {
            props.rs = Some("bye".into());
        }
        o
    })
}

macro_rules! both_directions {
    ($($name:ident: $strategy:expr, $version:expr;)*) => {
        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
            $(
                #[test]
                fn $name(o in $strategy) {
                    ours_to_rumqttc(&o, $version)?;
                    rumqttc_to_ours(&o, $version)?;
                }
            )*
        }
    };
}

both_directions! {
    connect_v311_matches_rumqttc: rumqttc_connect(V311), V311;
    connect_v5_matches_rumqttc: rumqttc_connect(V5), V5;
    connack_v311_matches_rumqttc: connack(V311), V311;
    connack_v5_matches_rumqttc: connack(V5), V5;
    publish_v311_matches_rumqttc: publish(V311), V311;
    publish_v5_matches_rumqttc: publish(V5), V5;
    puback_v311_matches_rumqttc: pub_response(4, V311), V311;
    puback_v5_matches_rumqttc: pub_response(4, V5), V5;
    pubrec_v311_matches_rumqttc: pub_response(5, V311), V311;
    pubrec_v5_matches_rumqttc: pub_response(5, V5), V5;
    pubrel_v311_matches_rumqttc: pub_response(6, V311), V311;
    pubrel_v5_matches_rumqttc: pub_response(6, V5), V5;
    pubcomp_v311_matches_rumqttc: pub_response(7, V311), V311;
    pubcomp_v5_matches_rumqttc: pub_response(7, V5), V5;
    subscribe_v311_matches_rumqttc: subscribe(V311), V311;
    subscribe_v5_matches_rumqttc: subscribe(V5), V5;
    suback_v311_matches_rumqttc: suback(V311), V311;
    suback_v5_matches_rumqttc: suback(V5), V5;
    unsubscribe_v311_matches_rumqttc: unsubscribe(V311), V311;
    unsubscribe_v5_matches_rumqttc: unsubscribe(V5), V5;
    unsuback_v311_matches_rumqttc: unsuback(V311), V311;
    unsuback_v5_matches_rumqttc: unsuback(V5), V5;
    disconnect_v5_matches_rumqttc: rumqttc_readable_disconnect(), V5;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Q3: the short Normal-disconnection form still goes rumqttc → ours (Q6
    /// keeps other reasons with a property).
    #[test]
    fn disconnect_v5_written_by_rumqttc_decodes(
        o in rumqttc_disconnect().prop_filter("Q6", |o| matches!(
            o,
            OPacket::Disconnect { reason: 0, .. }
        ) || matches!(o, OPacket::Disconnect { props, .. } if !props.is_empty()))
    ) {
        rumqttc_to_ours(&o, V5)?;
    }
}

#[test]
fn ping_and_disconnect_match_rumqttc_in_both_directions() {
    for o in [OPacket::PingReq, OPacket::PingResp] {
        for v in [V311, V5] {
            ours_to_rumqttc(&o, v).unwrap();
            rumqttc_to_ours(&o, v).unwrap();
        }
    }
    let disconnect = OPacket::Disconnect {
        reason: 0,
        props: OProps::default(),
    };
    ours_to_rumqttc(&disconnect, V311).unwrap();
    rumqttc_to_ours(&disconnect, V311).unwrap();
    rumqttc_to_ours(&disconnect, V5).unwrap();
    // The full form we write is what rumqttc can read.
    ours_to_rumqttc(&disconnect, V5).unwrap();
    ours_to_rumqttc(
        &OPacket::Disconnect {
            reason: 0x8E,
            props: OProps::default(),
        },
        V5,
    )
    .unwrap();
}

/// Q3 pinned down: if rumqttc ever reads the spec's short DISCONNECT, the
/// restriction above can go.
#[test]
fn rumqttc_refuses_the_short_v5_disconnect() {
    let mut stream = BytesMut::from(&[0xE0u8, 0x00][..]);
    assert!(v5::Packet::read(&mut stream, None).is_err());
    assert!(ours::decode(&[0xE0, 0x00], V5, 16).is_ok());
}

/// Q6 pinned down: rumqttc's DISCONNECT with a reason and no properties has a
/// body one byte longer than its remaining length; we decode the announced
/// packet and leave the stray byte.
#[test]
fn rumqttc_disconnect_with_reason_only_is_malformed() {
    let mut stream = BytesMut::new();
    v5::Packet::Disconnect(v5::Disconnect::new(
        v5::DisconnectReasonCode::DisconnectWithWillMessage,
    ))
    .write(&mut stream, None)
    .unwrap();
    assert_eq!(&stream[..], [0xE0, 0x01, 0x04, 0x00]);
    let (packet, used) = ours::decode(&stream, V5, 16).unwrap();
    assert_eq!(used, 3);
    assert!(
        matches!(packet, ours::Packet::Disconnect(d) if d.reason == ours::ReasonCode::DISCONNECT_WITH_WILL)
    );
}
