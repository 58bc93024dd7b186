//! One test per decoder rule: each builds the smallest packet that breaks the
//! rule and checks the exact error, and the reason code a server answers with.

mod common;

use std::num::NonZeroUsize;

use common::*;
use tether_protocols::mqtt::*;

fn err(bytes: &[u8], version: ProtocolVersion) -> DecodeError {
    match decode(bytes, version, usize::MAX) {
        Ok(p) => panic!("expected an error, decoded {p:?}"),
        Err(e) => e,
    }
}

fn needed(n: usize) -> DecodeError {
    DecodeError::Incomplete {
        needed: NonZeroUsize::new(n).unwrap(),
    }
}

// ---- framing ----

#[test]
fn incomplete_packet_reports_bytes_needed() {
    let publish = frame(0x30, &[lp("a/b"), b"hi".to_vec()].concat());
    assert_eq!(publish.len(), 9);
    assert_eq!(err(&publish[..5], V311), needed(4));
    assert_eq!(err(&publish[..2], V311), needed(7));
}

#[test]
fn empty_buffer_needs_at_least_a_two_byte_packet() {
    assert_eq!(err(&[], V5), needed(2));
    assert_eq!(frame_len(&[], 100), Ok(None));
}

#[test]
fn incomplete_remaining_length_needs_at_least_one_more_byte() {
    assert_eq!(err(&[0x30], V311), needed(1));
    assert_eq!(err(&[0x30, 0x80], V311), needed(1));
    // 0xFF: the remaining length is at least 127, so at least 128 more bytes.
    assert_eq!(err(&[0x30, 0xFF], V311), needed(128));
    assert_eq!(frame_len(&[0x30, 0xFF], usize::MAX), Ok(None));
}

#[test]
fn remaining_length_with_five_bytes_is_malformed() {
    let bytes = [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
    assert_eq!(err(&bytes, V5), DecodeError::MalformedRemainingLength);
    assert_eq!(
        frame_len(&bytes, usize::MAX),
        Err(DecodeError::MalformedRemainingLength)
    );
    assert_eq!(
        DecodeError::MalformedRemainingLength.reason_code(),
        ReasonCode::MALFORMED_PACKET
    );
}

#[test]
fn packet_larger_than_max_is_rejected_from_the_header() {
    // Remaining length 1000: nothing but the fixed header has arrived.
    let header = [0x30, 0xE8, 0x07];
    let e = DecodeError::PacketTooLarge {
        size: 1003,
        max: 100,
    };
    assert_eq!(frame_len(&header, 100), Err(e));
    assert_eq!(decode(&header, V5, 100).unwrap_err(), e);
    assert_eq!(e.reason_code(), ReasonCode::PACKET_TOO_LARGE);
}

#[test]
fn packet_too_large_is_detected_before_the_remaining_length_is_complete() {
    // Two continuation bytes already prove at least 16 383 + 4 bytes.
    let partial = [0x30, 0xFF, 0xFF];
    assert!(matches!(
        frame_len(&partial, 1000),
        Err(DecodeError::PacketTooLarge { max: 1000, .. })
    ));
}

#[test]
fn packet_of_exactly_max_size_is_accepted() {
    let bytes = frame(0x30, &[lp("a"), b"xyz".to_vec()].concat());
    assert_eq!(frame_len(&bytes, bytes.len()), Ok(Some(bytes.len())));
    assert!(decode(&bytes, V311, bytes.len()).is_ok());
    assert!(decode(&bytes, V311, bytes.len() - 1).is_err());
}

#[test]
fn non_minimal_remaining_length_is_accepted() {
    // 0x80 0x00 encodes 0 in two bytes.
    assert_eq!(
        decode(&[0xC0, 0x80, 0x00], V311, 10),
        Ok((Packet::PingReq, 3))
    );
}

// ---- fixed header ----

#[test]
fn reserved_packet_type_zero_is_rejected() {
    assert_eq!(err(&[0x00, 0x00], V311), DecodeError::InvalidPacketType(0));
    assert_eq!(
        frame_len(&[0x00], 10),
        Err(DecodeError::InvalidPacketType(0))
    );
}

#[test]
fn auth_before_v5_is_an_invalid_packet_type() {
    assert_eq!(err(&[0xF0, 0x00], V311), DecodeError::InvalidPacketType(15));
    assert_eq!(err(&[0xF0, 0x00], V31), DecodeError::InvalidPacketType(15));
}

#[test]
fn subscribe_with_reserved_flags_is_rejected() {
    let body = [vec![0, 1], lp("a"), vec![0]].concat();
    assert_eq!(
        err(&frame(0x80, &body), V311),
        DecodeError::InvalidFixedHeaderFlags
    );
    assert_eq!(
        err(&frame(0x83, &body), V5),
        DecodeError::InvalidFixedHeaderFlags
    );
    assert_eq!(
        DecodeError::InvalidFixedHeaderFlags.reason_code(),
        ReasonCode::MALFORMED_PACKET
    );
}

#[test]
fn unsubscribe_with_reserved_flags_is_rejected() {
    let body = [vec![0, 1], lp("a")].concat();
    assert_eq!(
        err(&frame(0xA0, &body), V311),
        DecodeError::InvalidFixedHeaderFlags
    );
}

#[test]
fn pubrel_without_flags_0010_is_rejected() {
    assert_eq!(
        err(&[0x60, 0x02, 0x00, 0x01], V311),
        DecodeError::InvalidFixedHeaderFlags
    );
    assert!(decode(&[0x62, 0x02, 0x00, 0x01], V311, 10).is_ok());
}

#[test]
fn pingreq_with_flags_is_rejected() {
    assert_eq!(err(&[0xC1, 0x00], V5), DecodeError::InvalidFixedHeaderFlags);
}

#[test]
fn puback_with_flags_is_rejected() {
    assert_eq!(
        err(&[0x42, 0x02, 0x00, 0x01], V5),
        DecodeError::InvalidFixedHeaderFlags
    );
}

#[test]
fn qos0_publish_with_dup_is_rejected() {
    let bytes = frame(0x38, &lp("a"));
    assert_eq!(err(&bytes, V311), DecodeError::InvalidFixedHeaderFlags);
}

// ---- QoS ----

#[test]
fn publish_with_qos3_is_rejected() {
    let bytes = frame(0x36, &[lp("a"), vec![0, 1]].concat());
    assert_eq!(err(&bytes, V311), DecodeError::InvalidQoS);
    assert_eq!(
        DecodeError::InvalidQoS.reason_code(),
        ReasonCode::MALFORMED_PACKET
    );
}

#[test]
fn connect_with_qos3_will_is_rejected() {
    // Will flag + will QoS bits 11.
    let rest = [lp("c"), lp("w"), lp("p")].concat();
    let bytes = frame(0x10, &connect_body("MQTT", 4, 0x04 | 0x18, &rest));
    assert_eq!(err(&bytes, V311), DecodeError::InvalidQoS);
}

#[test]
fn subscription_options_with_qos3_are_rejected() {
    let bytes = frame(0x82, &[vec![0, 1], lp("a"), vec![3]].concat());
    assert_eq!(err(&bytes, V311), DecodeError::InvalidQoS);
}

// ---- packet identifiers ----

#[test]
fn packet_id_zero_is_rejected() {
    assert_eq!(
        err(&[0x40, 0x02, 0x00, 0x00], V311),
        DecodeError::ZeroPacketId
    );
    assert_eq!(
        DecodeError::ZeroPacketId.reason_code(),
        ReasonCode::PROTOCOL_ERROR
    );
}

#[test]
fn qos1_publish_with_packet_id_zero_is_rejected() {
    let bytes = frame(0x32, &[lp("a"), vec![0, 0]].concat());
    assert_eq!(err(&bytes, V311), DecodeError::ZeroPacketId);
}

#[test]
fn subscribe_with_packet_id_zero_is_rejected() {
    let bytes = frame(0x82, &[vec![0, 0], lp("a"), vec![0]].concat());
    assert_eq!(err(&bytes, V311), DecodeError::ZeroPacketId);
}

// ---- strings and topics ----

#[test]
fn invalid_utf8_is_rejected() {
    let bytes = frame(0x30, &lp([0xC3, 0x28]));
    assert_eq!(err(&bytes, V311), DecodeError::InvalidUtf8);
    assert_eq!(
        DecodeError::InvalidUtf8.reason_code(),
        ReasonCode::MALFORMED_PACKET
    );
}

#[test]
fn utf8_encoded_surrogate_is_rejected() {
    // U+D800 encoded as UTF-8 (§1.5.4 forbids surrogates).
    let bytes = frame(0x30, &lp([0xED, 0xA0, 0x80]));
    assert_eq!(err(&bytes, V5), DecodeError::InvalidUtf8);
}

#[test]
fn utf8_with_nul_is_rejected() {
    let bytes = frame(0x30, &lp("a\0b"));
    assert_eq!(err(&bytes, V311), DecodeError::NullCharacter);
    assert_eq!(
        DecodeError::NullCharacter.reason_code(),
        ReasonCode::MALFORMED_PACKET
    );
}

#[test]
fn nul_in_client_id_is_rejected() {
    let bytes = frame(0x10, &connect_body("MQTT", 4, 0x02, &lp("a\0")));
    assert_eq!(err(&bytes, V311), DecodeError::NullCharacter);
}

#[test]
fn publish_topic_with_wildcard_is_rejected() {
    for topic in ["a/+", "a/#", "+", "#"] {
        let bytes = frame(0x30, &lp(topic));
        assert_eq!(
            err(&bytes, V311),
            DecodeError::WildcardInTopicName,
            "{topic}"
        );
    }
    assert_eq!(
        DecodeError::WildcardInTopicName.reason_code(),
        ReasonCode::TOPIC_NAME_INVALID
    );
}

#[test]
fn will_topic_with_wildcard_is_rejected() {
    let rest = [lp("c"), lp("a/#"), lp("p")].concat();
    let bytes = frame(0x10, &connect_body("MQTT", 4, 0x04, &rest));
    assert_eq!(err(&bytes, V311), DecodeError::WildcardInTopicName);
}

#[test]
fn empty_topic_is_rejected_in_v311() {
    let bytes = frame(0x30, &lp(""));
    assert_eq!(err(&bytes, V311), DecodeError::EmptyTopic);
}

#[test]
fn empty_topic_without_topic_alias_is_rejected_in_v5() {
    let bytes = frame(0x30, &[lp(""), vec![0]].concat());
    assert_eq!(err(&bytes, V5), DecodeError::EmptyTopic);
    assert_eq!(
        DecodeError::EmptyTopic.reason_code(),
        ReasonCode::PROTOCOL_ERROR
    );
}

#[test]
fn empty_will_topic_is_rejected() {
    let rest = [lp("c"), lp(""), lp("p")].concat();
    let bytes = frame(0x10, &connect_body("MQTT", 4, 0x04, &rest));
    assert_eq!(err(&bytes, V311), DecodeError::EmptyTopic);
}

#[test]
fn subscribe_with_misplaced_wildcard_is_rejected() {
    for filter in ["a/#/b", "a+/b", "a/b#", ""] {
        let bytes = frame(0x82, &[vec![0, 1], lp(filter), vec![0]].concat());
        assert_eq!(
            err(&bytes, V311),
            DecodeError::InvalidTopicFilter,
            "{filter:?}"
        );
    }
    assert_eq!(
        DecodeError::InvalidTopicFilter.reason_code(),
        ReasonCode::TOPIC_FILTER_INVALID
    );
}

#[test]
fn unsubscribe_with_invalid_filter_is_rejected() {
    let bytes = frame(0xA2, &[vec![0, 1], lp("a/#/b")].concat());
    assert_eq!(err(&bytes, V311), DecodeError::InvalidTopicFilter);
}

#[test]
fn malformed_shared_subscription_is_rejected_in_v5() {
    for filter in ["$share/g", "$share//f", "$share/g/", "$share/a+b/f"] {
        let bytes = frame(0x82, &[vec![0, 1, 0], lp(filter), vec![0]].concat());
        assert_eq!(err(&bytes, V5), DecodeError::InvalidTopicFilter, "{filter}");
    }
}

#[test]
fn share_prefix_is_an_ordinary_filter_in_v311() {
    let bytes = frame(0x82, &[vec![0, 1], lp("$share/g"), vec![0]].concat());
    assert!(decode(&bytes, V311, usize::MAX).is_ok());
}

// ---- properties ----

#[test]
fn duplicate_property_is_protocol_error() {
    let entries = [vec![0x03], lp("a"), vec![0x03], lp("b")].concat();
    let e = err(&v5_publish_with(&entries), V5);
    assert_eq!(e, DecodeError::DuplicateProperty(0x03));
    assert_eq!(e.reason_code(), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn repeated_user_properties_are_not_duplicates() {
    let entries = [vec![0x26], lp("k"), lp("1"), vec![0x26], lp("k"), lp("2")].concat();
    let bytes = v5_publish_with(&entries);
    let Packet::Publish(p) = decode_all(&bytes, V5).unwrap() else {
        panic!("not a PUBLISH")
    };
    assert_eq!(p.properties.user_properties.len(), 2);
}

#[test]
fn property_not_allowed_on_packet_type_is_malformed() {
    // Topic Alias (0x23) on a PUBACK.
    let bytes = frame(
        0x40,
        &[vec![0, 1, 0x00], props_block(&[0x23, 0, 1])].concat(),
    );
    let e = err(&bytes, V5);
    assert_eq!(e, DecodeError::PropertyNotAllowed(0x23));
    assert_eq!(e.reason_code(), ReasonCode::MALFORMED_PACKET);
}

#[test]
fn session_expiry_in_will_properties_is_not_allowed() {
    let rest = [
        props_block(&[]),
        lp("c"),
        props_block(&[0x11, 0, 0, 0, 1]),
        lp("w"),
        lp("p"),
    ]
    .concat();
    let bytes = frame(0x10, &connect_body("MQTT", 5, 0x04, &rest));
    assert_eq!(err(&bytes, V5), DecodeError::PropertyNotAllowed(0x11));
}

#[test]
fn will_delay_in_connect_properties_is_not_allowed() {
    let rest = [props_block(&[0x18, 0, 0, 0, 1]), lp("c")].concat();
    let bytes = frame(0x10, &connect_body("MQTT", 5, 0, &rest));
    assert_eq!(err(&bytes, V5), DecodeError::PropertyNotAllowed(0x18));
}

#[test]
fn unknown_property_is_malformed() {
    let e = err(&v5_publish_with(&[0x04, 0]), V5);
    assert_eq!(e, DecodeError::UnknownProperty(0x04));
    assert_eq!(e.reason_code(), ReasonCode::MALFORMED_PACKET);
    assert_eq!(
        err(&v5_publish_with(&[0x80, 0x01]), V5),
        DecodeError::UnknownProperty(0x80)
    );
}

#[test]
fn topic_alias_zero_is_rejected() {
    let e = err(&v5_publish_with(&[0x23, 0, 0]), V5);
    assert_eq!(e, DecodeError::InvalidPropertyValue(0x23));
    assert_eq!(e.reason_code(), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn subscription_identifier_zero_is_rejected() {
    assert_eq!(
        err(&v5_publish_with(&[0x0B, 0]), V5),
        DecodeError::InvalidPropertyValue(0x0B)
    );
    let bytes = frame(
        0x82,
        &[vec![0, 1], props_block(&[0x0B, 0]), lp("a"), vec![0]].concat(),
    );
    assert_eq!(err(&bytes, V5), DecodeError::InvalidPropertyValue(0x0B));
}

#[test]
fn receive_maximum_zero_is_rejected() {
    let rest = [props_block(&[0x21, 0, 0]), lp("c")].concat();
    let bytes = frame(0x10, &connect_body("MQTT", 5, 0, &rest));
    assert_eq!(err(&bytes, V5), DecodeError::InvalidPropertyValue(0x21));
}

#[test]
fn maximum_packet_size_zero_is_rejected() {
    let bytes = frame(
        0x20,
        &[vec![0, 0], props_block(&[0x27, 0, 0, 0, 0])].concat(),
    );
    assert_eq!(err(&bytes, V5), DecodeError::InvalidPropertyValue(0x27));
}

#[test]
fn payload_format_indicator_above_1_is_rejected() {
    assert_eq!(
        err(&v5_publish_with(&[0x01, 2]), V5),
        DecodeError::InvalidPropertyValue(0x01)
    );
}

#[test]
fn maximum_qos_2_is_rejected() {
    let bytes = frame(0x20, &[vec![0, 0], props_block(&[0x24, 2])].concat());
    assert_eq!(err(&bytes, V5), DecodeError::InvalidPropertyValue(0x24));
}

#[test]
fn boolean_connack_properties_above_1_are_rejected() {
    for id in [0x25, 0x28, 0x29, 0x2A] {
        let bytes = frame(0x20, &[vec![0, 0], props_block(&[id, 2])].concat());
        assert_eq!(err(&bytes, V5), DecodeError::InvalidPropertyValue(id));
    }
}

#[test]
fn request_problem_information_above_1_is_rejected() {
    for id in [0x17, 0x19] {
        let rest = [props_block(&[id, 2]), lp("c")].concat();
        let bytes = frame(0x10, &connect_body("MQTT", 5, 0, &rest));
        assert_eq!(err(&bytes, V5), DecodeError::InvalidPropertyValue(id));
    }
}

#[test]
fn response_topic_with_wildcard_is_rejected() {
    let entries = [vec![0x08], lp("reply/+")].concat();
    assert_eq!(
        err(&v5_publish_with(&entries), V5),
        DecodeError::InvalidPropertyValue(0x08)
    );
}

#[test]
fn authentication_data_without_method_is_rejected() {
    let rest = [props_block(&[0x16, 0, 1, 0xAA]), lp("c")].concat();
    let bytes = frame(0x10, &connect_body("MQTT", 5, 0, &rest));
    let e = err(&bytes, V5);
    assert_eq!(e, DecodeError::AuthenticationDataWithoutMethod);
    assert_eq!(e.reason_code(), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn property_length_past_the_packet_is_unexpected_eof() {
    let bytes = frame(0x30, &[lp("t"), vec![10, 0x01, 0]].concat());
    assert_eq!(err(&bytes, V5), DecodeError::UnexpectedEof);
}

#[test]
fn property_value_past_the_property_block_is_unexpected_eof() {
    // Block of 2 bytes holding a four-byte Message Expiry Interval.
    let bytes = frame(0x30, &[lp("t"), vec![2, 0x02, 0, 0, 0]].concat());
    assert_eq!(err(&bytes, V5), DecodeError::UnexpectedEof);
}

#[test]
fn property_length_with_five_bytes_is_malformed() {
    let bytes = frame(
        0x30,
        &[lp("t"), vec![0xFF, 0xFF, 0xFF, 0xFF, 0x01]].concat(),
    );
    let e = err(&bytes, V5);
    assert_eq!(e, DecodeError::MalformedVariableByteInteger);
    assert_eq!(e.reason_code(), ReasonCode::MALFORMED_PACKET);
}

#[test]
fn subscription_identifier_with_five_bytes_is_malformed() {
    let entries = [0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
    assert_eq!(
        err(&v5_publish_with(&entries), V5),
        DecodeError::MalformedVariableByteInteger
    );
}

// ---- CONNECT ----

#[test]
fn unknown_protocol_name_is_rejected() {
    let bytes = frame(0x10, &connect_body("MQTX", 4, 0x02, &lp("c")));
    let e = err(&bytes, V311);
    assert_eq!(e, DecodeError::InvalidProtocolName);
    assert_eq!(e.reason_code(), ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
}

#[test]
fn unsupported_protocol_level_is_rejected() {
    let bytes = frame(0x10, &connect_body("MQTT", 6, 0x02, &lp("c")));
    let e = err(&bytes, V311);
    assert_eq!(e, DecodeError::UnsupportedProtocolVersion(6));
    assert_eq!(e.reason_code(), ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
}

#[test]
fn protocol_name_and_level_must_agree() {
    let mqtt3 = frame(0x10, &connect_body("MQTT", 3, 0x02, &lp("c")));
    assert_eq!(err(&mqtt3, V5), DecodeError::UnsupportedProtocolVersion(3));
    let mqisdp4 = frame(0x10, &connect_body("MQIsdp", 4, 0x02, &lp("c")));
    assert_eq!(
        err(&mqisdp4, V5),
        DecodeError::UnsupportedProtocolVersion(4)
    );
}

#[test]
fn connect_with_reserved_flag_is_rejected() {
    let bytes = frame(0x10, &connect_body("MQTT", 4, 0x03, &lp("c")));
    let e = err(&bytes, V311);
    assert_eq!(e, DecodeError::InvalidConnectFlags);
    assert_eq!(e.reason_code(), ReasonCode::MALFORMED_PACKET);
}

#[test]
fn will_qos_without_will_flag_is_rejected() {
    let bytes = frame(0x10, &connect_body("MQTT", 4, 0x08, &lp("c")));
    assert_eq!(err(&bytes, V311), DecodeError::InvalidConnectFlags);
}

#[test]
fn will_retain_without_will_flag_is_rejected() {
    let bytes = frame(
        0x10,
        &connect_body("MQTT", 5, 0x20, &[props_block(&[]), lp("c")].concat()),
    );
    assert_eq!(err(&bytes, V5), DecodeError::InvalidConnectFlags);
}

#[test]
fn password_without_username_is_rejected_before_v5() {
    let rest = [lp("c"), lp("secret")].concat();
    let bytes = frame(0x10, &connect_body("MQTT", 4, 0x40, &rest));
    assert_eq!(err(&bytes, V311), DecodeError::InvalidConnectFlags);
    let bytes = frame(0x10, &connect_body("MQIsdp", 3, 0x40, &rest));
    assert_eq!(err(&bytes, V31), DecodeError::InvalidConnectFlags);
}

#[test]
fn connect_with_trailing_bytes_is_a_length_mismatch() {
    let rest = [lp("c"), vec![0xAB]].concat();
    let bytes = frame(0x10, &connect_body("MQTT", 4, 0x02, &rest));
    assert_eq!(err(&bytes, V311), DecodeError::LengthMismatch);
}

#[test]
fn connect_missing_client_id_is_unexpected_eof() {
    let bytes = frame(0x10, &connect_body("MQTT", 4, 0x02, &[]));
    assert_eq!(err(&bytes, V311), DecodeError::UnexpectedEof);
}

// ---- CONNACK ----

#[test]
fn connack_with_reserved_flags_is_rejected() {
    let e = err(&[0x20, 0x02, 0x02, 0x00], V311);
    assert_eq!(e, DecodeError::InvalidConnAckFlags);
    assert_eq!(e.reason_code(), ReasonCode::MALFORMED_PACKET);
}

#[test]
fn connack_refusal_with_session_present_is_rejected() {
    assert_eq!(
        err(&[0x20, 0x02, 0x01, 0x05], V311),
        DecodeError::InvalidConnAckFlags
    );
}

#[test]
fn v3_connack_return_code_above_5_is_rejected() {
    let e = err(&[0x20, 0x02, 0x00, 0x06], V311);
    assert_eq!(e, DecodeError::InvalidReasonCode(6));
    assert_eq!(e.reason_code(), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn v5_connack_with_disconnect_only_reason_is_rejected() {
    // 0x8E Session taken over is a DISCONNECT code.
    assert_eq!(
        err(&[0x20, 0x03, 0x00, 0x8E, 0x00], V5),
        DecodeError::InvalidReasonCode(0x8E)
    );
}

#[test]
fn v5_connack_without_property_length_is_unexpected_eof() {
    assert_eq!(
        err(&[0x20, 0x02, 0x00, 0x00], V5),
        DecodeError::UnexpectedEof
    );
}

// ---- acks, DISCONNECT, AUTH ----

#[test]
fn puback_with_pubrel_only_reason_is_rejected() {
    assert_eq!(
        err(&[0x40, 0x03, 0x00, 0x01, 0x92], V5),
        DecodeError::InvalidReasonCode(0x92)
    );
}

#[test]
fn pubrel_with_puback_only_reason_is_rejected() {
    assert_eq!(
        err(&[0x62, 0x03, 0x00, 0x01, 0x10], V5),
        DecodeError::InvalidReasonCode(0x10)
    );
}

#[test]
fn v3_puback_with_extra_bytes_is_a_length_mismatch() {
    let e = err(&[0x40, 0x03, 0x00, 0x01, 0x00], V311);
    assert_eq!(e, DecodeError::LengthMismatch);
    assert_eq!(e.reason_code(), ReasonCode::MALFORMED_PACKET);
}

#[test]
fn puback_shorter_than_a_packet_id_is_unexpected_eof() {
    assert_eq!(err(&[0x40, 0x01, 0x00], V5), DecodeError::UnexpectedEof);
}

#[test]
fn pingreq_with_body_is_a_length_mismatch() {
    assert_eq!(err(&[0xC0, 0x01, 0x00], V311), DecodeError::LengthMismatch);
}

#[test]
fn v3_disconnect_with_body_is_a_length_mismatch() {
    assert_eq!(err(&[0xE0, 0x01, 0x00], V311), DecodeError::LengthMismatch);
}

#[test]
fn disconnect_with_connack_only_reason_is_rejected() {
    // 0x84 Unsupported Protocol Version only appears in CONNACK.
    assert_eq!(
        err(&[0xE0, 0x01, 0x84], V5),
        DecodeError::InvalidReasonCode(0x84)
    );
}

#[test]
fn auth_with_error_reason_is_rejected() {
    assert_eq!(
        err(&[0xF0, 0x02, 0x80, 0x00], V5),
        DecodeError::InvalidReasonCode(0x80)
    );
}

#[test]
fn disconnect_with_publish_property_is_rejected() {
    assert_eq!(
        err(&[0xE0, 0x04, 0x00, 0x02, 0x01, 0x00], V5),
        DecodeError::PropertyNotAllowed(0x01)
    );
}

// ---- SUBSCRIBE / UNSUBSCRIBE / SUBACK / UNSUBACK ----

#[test]
fn subscribe_without_filters_is_protocol_error() {
    let e = err(&frame(0x82, &[0, 1]), V311);
    assert_eq!(e, DecodeError::NoTopicFilters);
    assert_eq!(e.reason_code(), ReasonCode::PROTOCOL_ERROR);
    assert_eq!(
        err(&frame(0x82, &[0, 1, 0]), V5),
        DecodeError::NoTopicFilters
    );
}

#[test]
fn unsubscribe_without_filters_is_protocol_error() {
    assert_eq!(
        err(&frame(0xA2, &[0, 1]), V311),
        DecodeError::NoTopicFilters
    );
    assert_eq!(
        err(&frame(0xA2, &[0, 1, 0]), V5),
        DecodeError::NoTopicFilters
    );
}

#[test]
fn subscribe_filter_without_options_byte_is_unexpected_eof() {
    let bytes = frame(0x82, &[vec![0, 1], lp("a")].concat());
    assert_eq!(err(&bytes, V311), DecodeError::UnexpectedEof);
}

#[test]
fn v5_subscription_options_with_reserved_bits_are_rejected() {
    let bytes = frame(0x82, &[vec![0, 1, 0], lp("a"), vec![0x40]].concat());
    let e = err(&bytes, V5);
    assert_eq!(e, DecodeError::InvalidSubscriptionOptions);
    assert_eq!(e.reason_code(), ReasonCode::MALFORMED_PACKET);
}

#[test]
fn v3_subscription_options_above_qos_bits_are_reserved() {
    // No Local (bit 2) does not exist before MQTT 5.
    let bytes = frame(0x82, &[vec![0, 1], lp("a"), vec![0x04]].concat());
    assert_eq!(err(&bytes, V311), DecodeError::InvalidSubscriptionOptions);
}

#[test]
fn retain_handling_3_is_protocol_error() {
    let bytes = frame(0x82, &[vec![0, 1, 0], lp("a"), vec![0x30]].concat());
    let e = err(&bytes, V5);
    assert_eq!(e, DecodeError::InvalidRetainHandling);
    assert_eq!(e.reason_code(), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn no_local_on_shared_subscription_is_protocol_error() {
    let bytes = frame(
        0x82,
        &[vec![0, 1, 0], lp("$share/g/a"), vec![0x04]].concat(),
    );
    let e = err(&bytes, V5);
    assert_eq!(e, DecodeError::NoLocalOnSharedSubscription);
    assert_eq!(e.reason_code(), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn suback_without_return_codes_is_rejected() {
    assert_eq!(
        err(&[0x90, 0x02, 0x00, 0x01], V311),
        DecodeError::NoReasonCodes
    );
    assert_eq!(
        err(&[0x90, 0x03, 0x00, 0x01, 0x00], V5),
        DecodeError::NoReasonCodes
    );
}

#[test]
fn v3_suback_code_other_than_granted_or_failure_is_rejected() {
    assert_eq!(
        err(&[0x90, 0x03, 0x00, 0x01, 0x03], V311),
        DecodeError::InvalidReasonCode(3)
    );
    // 0x87 is a valid MQTT 5 SUBACK code but not an MQTT 3 one.
    assert_eq!(
        err(&[0x90, 0x03, 0x00, 0x01, 0x87], V311),
        DecodeError::InvalidReasonCode(0x87)
    );
}

#[test]
fn v5_unsuback_without_reason_codes_is_rejected() {
    assert_eq!(
        err(&[0xB0, 0x03, 0x00, 0x01, 0x00], V5),
        DecodeError::NoReasonCodes
    );
}

#[test]
fn v5_unsuback_with_suback_only_code_is_rejected() {
    assert_eq!(
        err(&[0xB0, 0x04, 0x00, 0x01, 0x00, 0x01], V5),
        DecodeError::InvalidReasonCode(0x01)
    );
}

#[test]
fn v3_unsuback_with_reason_codes_is_a_length_mismatch() {
    assert_eq!(
        err(&[0xB0, 0x03, 0x00, 0x01, 0x00], V311),
        DecodeError::LengthMismatch
    );
}

#[test]
fn string_longer_than_the_packet_is_unexpected_eof() {
    let bytes = frame(0x30, &[vec![0, 10], b"abc".to_vec()].concat());
    let e = err(&bytes, V311);
    assert_eq!(e, DecodeError::UnexpectedEof);
    assert_eq!(e.reason_code(), ReasonCode::MALFORMED_PACKET);
}

// ---- error values ----

#[test]
fn decode_errors_display_a_message() {
    let text = DecodeError::DuplicateProperty(0x03).to_string();
    assert_eq!(text, "property 0x03 included more than once");
    let _: &dyn std::error::Error = &DecodeError::InvalidQoS;
}

#[test]
fn encode_errors_display_a_message() {
    assert_eq!(
        EncodeError::BufferTooSmall { needed: 7 }.to_string(),
        "buffer too small: 7 bytes needed"
    );
    let _: &dyn std::error::Error = &EncodeError::ZeroPacketId;
}
