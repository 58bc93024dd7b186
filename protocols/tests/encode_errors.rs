//! One test per encoder refusal: the encoder rejects whatever the decoder
//! would reject, before writing anything.

mod common;

use common::*;
use tether_protocols::mqtt::*;

fn publish(topic: &str) -> Publish<'_> {
    Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic,
        packet_id: None,
        properties: Properties::default(),
        payload: b"",
    }
}

fn connect<'a>() -> Connect<'a> {
    Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 0,
        client_id: "c",
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

#[test]
fn encoding_into_a_short_buffer_reports_the_size_needed() {
    let p = Packet::PingReq;
    let mut buf = [0u8; 1];
    assert_eq!(
        p.encode(V311, &mut buf),
        Err(EncodeError::BufferTooSmall { needed: 2 })
    );
}

#[test]
fn encoding_into_a_larger_buffer_writes_only_the_packet() {
    let mut buf = [0xEEu8; 8];
    assert_eq!(Packet::PingResp.encode(V5, &mut buf), Ok(2));
    assert_eq!(buf, [0xD0, 0x00, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE]);
}

#[test]
fn remaining_length_above_the_protocol_limit_is_refused() {
    // 4 200 user properties of ~64 KiB each: about 275 MB, without allocating it.
    let big = "x".repeat(32_000);
    let pairs = vec![(big.as_str(), big.as_str()); 4_200];
    let p = Publish {
        properties: Properties {
            user_properties: UserProperties::Slice(&pairs),
            ..Properties::default()
        },
        ..publish("t")
    };
    assert_eq!(p.encoded_len(V5), Err(EncodeError::PacketTooLarge));
}

#[test]
fn string_longer_than_65535_bytes_is_refused() {
    let long = "c".repeat(65_536);
    let c = Connect {
        client_id: &long,
        ..connect()
    };
    assert_eq!(c.encoded_len(), Err(EncodeError::StringTooLong));
}

#[test]
fn binary_longer_than_65535_bytes_is_refused() {
    let long = vec![0u8; 65_536];
    let c = Connect {
        username: Some("u"),
        password: Some(&long),
        ..connect()
    };
    assert_eq!(c.encoded_len(), Err(EncodeError::BinaryTooLong));
}

#[test]
fn string_with_nul_is_refused() {
    let c = Connect {
        client_id: "a\0b",
        ..connect()
    };
    assert_eq!(c.encoded_len(), Err(EncodeError::NullCharacter));
}

#[test]
fn packet_id_zero_is_refused() {
    assert_eq!(
        Packet::PubAck(PubResponse::new(0)).encoded_len(V311),
        Err(EncodeError::ZeroPacketId)
    );
    let p = Publish {
        qos: QoS::AtLeastOnce,
        packet_id: Some(0),
        ..publish("t")
    };
    assert_eq!(p.encoded_len(V311), Err(EncodeError::ZeroPacketId));
}

#[test]
fn qos1_publish_without_packet_id_is_refused() {
    let p = Publish {
        qos: QoS::AtLeastOnce,
        ..publish("t")
    };
    assert_eq!(p.encoded_len(V5), Err(EncodeError::MissingPacketId));
}

#[test]
fn qos0_publish_with_packet_id_is_refused() {
    let p = Publish {
        packet_id: Some(1),
        ..publish("t")
    };
    assert_eq!(p.encoded_len(V5), Err(EncodeError::UnexpectedPacketId));
}

#[test]
fn qos0_publish_with_dup_is_refused() {
    let p = Publish {
        dup: true,
        ..publish("t")
    };
    assert_eq!(p.encoded_len(V5), Err(EncodeError::DupWithQoS0));
}

#[test]
fn publish_to_wildcard_topic_is_refused() {
    assert_eq!(
        publish("a/+").encoded_len(V311),
        Err(EncodeError::InvalidTopicName)
    );
}

#[test]
fn publish_to_empty_topic_is_refused_without_alias_or_before_v5() {
    assert_eq!(
        publish("").encoded_len(V5),
        Err(EncodeError::InvalidTopicName)
    );
    let aliased = Publish {
        properties: Properties {
            topic_alias: Some(3),
            ..Properties::default()
        },
        ..publish("")
    };
    assert_eq!(
        aliased.encoded_len(V311),
        Err(EncodeError::InvalidTopicName)
    );
    assert!(aliased.encoded_len(V5).is_ok());
}

#[test]
fn will_with_wildcard_topic_is_refused() {
    let c = Connect {
        will: Some(Will {
            topic: "a/#",
            payload: b"",
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
        }),
        ..connect()
    };
    assert_eq!(c.encoded_len(), Err(EncodeError::InvalidTopicName));
}

#[test]
fn subscribe_with_invalid_filter_is_refused() {
    let filters = [("a/#/b", SubscriptionOptions::default())];
    let s = Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: SubscribeFilters::Slice(&filters),
    };
    assert_eq!(s.encoded_len(V311), Err(EncodeError::InvalidTopicFilter));
}

#[test]
fn no_local_on_shared_subscription_is_refused() {
    let filters = [(
        "$share/g/a",
        SubscriptionOptions {
            no_local: true,
            ..SubscriptionOptions::default()
        },
    )];
    let s = Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: SubscribeFilters::Slice(&filters),
    };
    assert_eq!(
        s.encoded_len(V5),
        Err(EncodeError::NoLocalOnSharedSubscription)
    );
}

#[test]
fn subscribe_without_filters_is_refused() {
    let s = Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: SubscribeFilters::Slice(&[]),
    };
    assert_eq!(s.encoded_len(V311), Err(EncodeError::NoTopicFilters));
    let u = Unsubscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: UnsubscribeFilters::Slice(&[]),
    };
    assert_eq!(u.encoded_len(V5), Err(EncodeError::NoTopicFilters));
}

#[test]
fn suback_without_codes_is_refused() {
    let s = SubAck {
        packet_id: 1,
        properties: Properties::default(),
        return_codes: &[],
    };
    assert_eq!(s.encoded_len(V311), Err(EncodeError::NoReasonCodes));
    let u = UnsubAck {
        packet_id: 1,
        properties: Properties::default(),
        reason_codes: &[],
    };
    assert_eq!(u.encoded_len(V5), Err(EncodeError::NoReasonCodes));
}

#[test]
fn reason_code_not_allowed_on_packet_type_is_refused() {
    let r = PubResponse {
        reason: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        ..PubResponse::new(1)
    };
    assert_eq!(
        Packet::PubAck(r).encoded_len(V5),
        Err(EncodeError::InvalidReasonCode(0x92))
    );
    assert!(Packet::PubRel(r).encoded_len(V5).is_ok());
    let d = Disconnect {
        reason: ReasonCode::BANNED,
        properties: Properties::default(),
    };
    assert_eq!(d.encoded_len(V5), Err(EncodeError::InvalidReasonCode(0x8A)));
}

#[test]
fn v3_connack_return_code_above_5_is_refused() {
    let ack = ConnAck {
        session_present: false,
        code: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        properties: Properties::default(),
    };
    assert_eq!(
        ack.encoded_len(V311),
        Err(EncodeError::InvalidReasonCode(0x86))
    );
    let v3 = ConnAck {
        code: ack.code.to_v3_connect_return_code().as_v3_code(),
        ..ack
    };
    assert_eq!(v3.encoded_len(V311), Ok(4));
}

#[test]
fn v3_suback_code_outside_0_1_2_0x80_is_refused() {
    let s = SubAck {
        packet_id: 1,
        properties: Properties::default(),
        return_codes: &[0x87],
    };
    assert_eq!(
        s.encoded_len(V311),
        Err(EncodeError::InvalidReasonCode(0x87))
    );
    assert!(s.encoded_len(V5).is_ok());
}

#[test]
fn refusing_connack_with_session_present_is_refused() {
    let ack = ConnAck {
        session_present: true,
        code: ReasonCode::NOT_AUTHORIZED,
        properties: Properties::default(),
    };
    assert_eq!(
        ack.encoded_len(V5),
        Err(EncodeError::SessionPresentWithError)
    );
}

#[test]
fn v3_password_without_username_is_refused() {
    let c = Connect {
        password: Some(b"pw"),
        ..connect()
    };
    assert_eq!(c.encoded_len(), Err(EncodeError::PasswordWithoutUsername));
    let v5 = Connect { protocol: V5, ..c };
    assert!(v5.encoded_len().is_ok());
}

#[test]
fn property_not_allowed_on_packet_type_is_refused() {
    let r = PubResponse {
        properties: Properties {
            topic_alias: Some(1),
            ..Properties::default()
        },
        ..PubResponse::new(1)
    };
    assert_eq!(
        Packet::PubAck(r).encoded_len(V5),
        Err(EncodeError::PropertyNotAllowed(0x23))
    );
}

#[test]
fn single_subscription_identifier_on_publish_is_refused() {
    let p = Publish {
        properties: Properties {
            subscription_identifier: Some(5),
            ..Properties::default()
        },
        ..publish("t")
    };
    assert_eq!(
        p.encoded_len(V5),
        Err(EncodeError::PropertyNotAllowed(0x0B))
    );
}

#[test]
fn several_subscription_identifiers_on_subscribe_are_refused() {
    let filters = [("a", SubscriptionOptions::default())];
    let s = Subscribe {
        packet_id: 1,
        properties: Properties {
            subscription_identifiers: SubscriptionIds::Slice(&[1, 2]),
            ..Properties::default()
        },
        filters: SubscribeFilters::Slice(&filters),
    };
    assert_eq!(
        s.encoded_len(V5),
        Err(EncodeError::PropertyNotAllowed(0x0B))
    );
}

#[test]
fn invalid_property_values_are_refused() {
    let p = Publish {
        properties: Properties {
            topic_alias: Some(0),
            ..Properties::default()
        },
        ..publish("t")
    };
    assert_eq!(
        p.encoded_len(V5),
        Err(EncodeError::InvalidPropertyValue(0x23))
    );
    let q = Publish {
        properties: Properties {
            subscription_identifiers: SubscriptionIds::Slice(&[268_435_456]),
            ..Properties::default()
        },
        ..publish("t")
    };
    assert_eq!(
        q.encoded_len(V5),
        Err(EncodeError::InvalidPropertyValue(0x0B))
    );
}

#[test]
fn authentication_data_without_method_is_refused() {
    let a = Auth {
        reason: ReasonCode::CONTINUE_AUTHENTICATION,
        properties: Properties {
            authentication_data: Some(b"x"),
            ..Properties::default()
        },
    };
    assert_eq!(
        a.encoded_len(V5),
        Err(EncodeError::AuthenticationDataWithoutMethod)
    );
}

#[test]
fn auth_before_v5_is_refused() {
    assert_eq!(
        Packet::Auth(Auth::default()).encoded_len(V311),
        Err(EncodeError::PacketNotInVersion)
    );
}

#[test]
fn connect_is_encoded_in_its_own_version() {
    let c = Connect {
        protocol: V5,
        ..connect()
    };
    let as_v311 = encode_vec(&Packet::Connect(c), V311);
    let as_v5 = encode_vec(&Packet::Connect(c), V5);
    assert_eq!(as_v311, as_v5);
    assert_eq!(as_v5[8], 5);
}
