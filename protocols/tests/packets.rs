//! Known-bytes tests, one behaviour per test, for every packet type: what a
//! given wire form decodes to, and what a given packet encodes to.

mod common;

use common::*;
use tether_protocols::mqtt::*;

fn encode(packet: Packet<'_>, version: ProtocolVersion) -> Vec<u8> {
    encode_vec(&packet, version)
}

// ---- CONNECT ----

#[test]
fn connect_v311_minimal_decodes() {
    let bytes = [
        0x10, 0x0F, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x03, b'a',
        b'b', b'c',
    ];
    let Packet::Connect(c) = decode_all(&bytes, V311).unwrap() else {
        panic!("not CONNECT")
    };
    assert_eq!(c.protocol, V311);
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 60);
    assert_eq!(c.client_id, "abc");
    assert_eq!(c.will, None);
    assert_eq!(c.username, None);
    assert_eq!(c.password, None);
    assert_eq!(c.properties, Properties::default());
}

#[test]
fn connect_v311_encodes_to_known_bytes() {
    let c = Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 60,
        client_id: "abc",
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    assert_eq!(
        encode(Packet::Connect(c), V311),
        [
            0x10, 0x0F, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x03,
            b'a', b'b', b'c'
        ]
    );
    assert_eq!(c.encoded_len(), Ok(17));
}

#[test]
fn connect_v31_uses_the_mqisdp_protocol_name() {
    let c = Connect {
        protocol: V31,
        clean_start: true,
        keep_alive: 10,
        client_id: "id",
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    let bytes = encode(Packet::Connect(c), V31);
    assert_eq!(
        &bytes[2..11],
        &[0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3]
    );
    assert_eq!(decode_all(&bytes, V31).unwrap(), Packet::Connect(c));
}

#[test]
fn connect_v31_does_not_limit_client_id_length() {
    let long_id = "a-client-identifier-longer-than-23-characters";
    let bytes = frame(0x10, &connect_body("MQIsdp", 3, 0x02, &lp(long_id)));
    let Packet::Connect(c) = decode_all(&bytes, V31).unwrap() else {
        panic!("not CONNECT")
    };
    assert_eq!(c.client_id, long_id);
}

#[test]
fn connect_is_decoded_whatever_version_the_caller_assumes() {
    let v5 = frame(
        0x10,
        &connect_body("MQTT", 5, 0x02, &[props_block(&[]), lp("c")].concat()),
    );
    let v311 = frame(0x10, &connect_body("MQTT", 4, 0x02, &lp("c")));
    for assumed in [V31, V311, V5] {
        let Packet::Connect(c) = decode_all(&v5, assumed).unwrap() else {
            panic!("not CONNECT")
        };
        assert_eq!(c.protocol, V5);
        let Packet::Connect(c) = decode_all(&v311, assumed).unwrap() else {
            panic!("not CONNECT")
        };
        assert_eq!(c.protocol, V311);
    }
}

#[test]
fn connect_v5_with_will_credentials_and_properties_decodes() {
    let connect_props = [
        vec![0x11, 0, 0, 0x0E, 0x10], // session expiry 3600
        vec![0x21, 0, 20],            // receive maximum 20
        vec![0x26],
        lp("k"),
        lp("v"),
    ]
    .concat();
    let will_props = [vec![0x01, 1], vec![0x18, 0, 0, 0, 5]].concat();
    let rest = [
        props_block(&connect_props),
        lp("dev-1"),
        props_block(&will_props),
        lp("dev/1/status"),
        lp("offline"),
        lp("user"),
        lp([1, 2, 3]),
    ]
    .concat();
    // username, password, will retain, will QoS 1, will, clean start
    let bytes = frame(
        0x10,
        &connect_body("MQTT", 5, 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02, &rest),
    );
    let Packet::Connect(c) = decode_all(&bytes, V5).unwrap() else {
        panic!("not CONNECT")
    };
    assert_eq!(c.protocol, V5);
    assert_eq!(c.client_id, "dev-1");
    assert_eq!(c.properties.session_expiry_interval, Some(3600));
    assert_eq!(c.properties.receive_maximum, Some(20));
    assert_eq!(
        c.properties.user_properties.iter().collect::<Vec<_>>(),
        [("k", "v")]
    );
    let will = c.will.unwrap();
    assert_eq!(will.topic, "dev/1/status");
    assert_eq!(will.payload, b"offline");
    assert_eq!(will.qos, QoS::AtLeastOnce);
    assert!(will.retain);
    assert_eq!(will.properties.will_delay_interval, Some(5));
    assert_eq!(will.properties.payload_format_indicator, Some(1));
    assert_eq!(c.username, Some("user"));
    assert_eq!(c.password, Some(&[1u8, 2, 3][..]));
    // And it encodes back to the same bytes.
    assert_eq!(encode(Packet::Connect(c), V5), bytes);
}

#[test]
fn connect_v5_allows_password_without_username() {
    let rest = [props_block(&[]), lp("c"), lp("secret")].concat();
    let bytes = frame(0x10, &connect_body("MQTT", 5, 0x40, &rest));
    let Packet::Connect(c) = decode_all(&bytes, V5).unwrap() else {
        panic!("not CONNECT")
    };
    assert_eq!(c.username, None);
    assert_eq!(c.password, Some(&b"secret"[..]));
}

#[test]
fn connect_allows_an_empty_client_id() {
    let bytes = frame(0x10, &connect_body("MQTT", 4, 0x02, &lp("")));
    let Packet::Connect(c) = decode_all(&bytes, V311).unwrap() else {
        panic!("not CONNECT")
    };
    assert_eq!(c.client_id, "");
}

// ---- CONNACK ----

#[test]
fn connack_v311_decodes_session_present_and_return_code() {
    let p = decode_all(&[0x20, 0x02, 0x01, 0x00], V311).unwrap();
    assert_eq!(
        p,
        Packet::ConnAck(ConnAck {
            session_present: true,
            code: ReasonCode::SUCCESS,
            properties: Properties::default()
        })
    );
}

#[test]
fn connack_v311_refusal_encodes_the_return_code() {
    let ack = ConnAck {
        session_present: false,
        code: ConnectReturnCode::NotAuthorized.as_v3_code(),
        properties: Properties::default(),
    };
    assert_eq!(encode(Packet::ConnAck(ack), V311), [0x20, 0x02, 0x00, 0x05]);
}

#[test]
fn connack_v5_carries_properties() {
    let entries = [
        vec![0x24, 1],     // maximum QoS 1
        vec![0x22, 0, 10], // topic alias maximum 10
        vec![0x12],
        lp("auto-1"),
    ]
    .concat();
    let bytes = frame(0x20, &[vec![0x00, 0x00], props_block(&entries)].concat());
    let Packet::ConnAck(ack) = decode_all(&bytes, V5).unwrap() else {
        panic!("not CONNACK")
    };
    assert_eq!(ack.properties.maximum_qos, Some(1));
    assert_eq!(ack.properties.topic_alias_maximum, Some(10));
    assert_eq!(ack.properties.assigned_client_identifier, Some("auto-1"));
}

#[test]
fn connack_v5_refusal_decodes_the_reason() {
    let p = decode_all(&[0x20, 0x03, 0x00, 0x86, 0x00], V5).unwrap();
    let Packet::ConnAck(ack) = p else {
        panic!("not CONNACK")
    };
    assert_eq!(ack.code, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    assert!(ack.code.is_error());
}

// ---- PUBLISH ----

#[test]
fn publish_qos0_encodes_to_known_bytes() {
    let p = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
        topic: "a/b",
        packet_id: None,
        properties: Properties::default(),
        payload: b"hi",
    };
    let expected = [0x31, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'];
    assert_eq!(encode(Packet::Publish(p), V311), expected);
    // The direct helper writes the same bytes.
    let mut buf = [0u8; 16];
    assert_eq!(p.encode(V311, &mut buf), Ok(9));
    assert_eq!(&buf[..9], expected);
    assert_eq!(p.encoded_len(V311), Ok(9));
}

#[test]
fn publish_qos2_with_dup_decodes_packet_id() {
    let bytes = frame(0x3C, &[lp("t"), vec![0x12, 0x34], b"x".to_vec()].concat());
    let Packet::Publish(p) = decode_all(&bytes, V311).unwrap() else {
        panic!("not PUBLISH")
    };
    assert!(p.dup);
    assert_eq!(p.qos, QoS::ExactlyOnce);
    assert_eq!(p.packet_id, Some(0x1234));
    assert_eq!(p.payload, b"x");
}

#[test]
fn publish_borrows_topic_and_payload_from_the_input() {
    let bytes = frame(0x30, &[lp("t/1"), b"payload".to_vec()].concat());
    let Packet::Publish(p) = decode_all(&bytes, V311).unwrap() else {
        panic!("not PUBLISH")
    };
    let range = bytes.as_ptr_range();
    assert!(range.contains(&p.topic.as_ptr()));
    assert!(range.contains(&p.payload.as_ptr()));
}

#[test]
fn publish_with_empty_payload_decodes() {
    let bytes = frame(0x30, &lp("t"));
    let Packet::Publish(p) = decode_all(&bytes, V311).unwrap() else {
        panic!("not PUBLISH")
    };
    assert!(p.payload.is_empty());
}

#[test]
fn v5_publish_with_empty_topic_and_topic_alias_is_accepted() {
    let bytes = frame(
        0x30,
        &[lp(""), props_block(&[0x23, 0, 7]), b"x".to_vec()].concat(),
    );
    let Packet::Publish(p) = decode_all(&bytes, V5).unwrap() else {
        panic!("not PUBLISH")
    };
    assert_eq!(p.topic, "");
    assert_eq!(p.properties.topic_alias, Some(7));
}

#[test]
fn v5_publish_properties_decode() {
    let entries = [
        vec![0x01, 1],
        vec![0x02, 0, 0, 0, 60],
        vec![0x03],
        lp("application/json"),
        vec![0x08],
        lp("reply/to"),
        vec![0x09],
        lp([7, 7]),
        vec![0x0B, 0x80, 0x01], // subscription identifier 128
        vec![0x0B, 0x05],
        vec![0x26],
        lp("a"),
        lp("1"),
    ]
    .concat();
    let bytes = v5_publish_with(&entries);
    let Packet::Publish(p) = decode_all(&bytes, V5).unwrap() else {
        panic!("not PUBLISH")
    };
    let props = p.properties;
    assert_eq!(props.payload_format_indicator, Some(1));
    assert_eq!(props.message_expiry_interval, Some(60));
    assert_eq!(props.content_type, Some("application/json"));
    assert_eq!(props.response_topic, Some("reply/to"));
    assert_eq!(props.correlation_data, Some(&[7u8, 7][..]));
    assert_eq!(
        props.subscription_identifiers.iter().collect::<Vec<_>>(),
        [128, 5]
    );
    assert_eq!(props.subscription_identifier, None);
    assert_eq!(
        props.user_properties.iter().collect::<Vec<_>>(),
        [("a", "1")]
    );
}

#[test]
fn v3_publish_ignores_properties_when_encoding() {
    let user = [("k", "v")];
    let p = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t",
        packet_id: None,
        properties: Properties {
            content_type: Some("text/plain"),
            user_properties: UserProperties::Slice(&user),
            ..Properties::default()
        },
        payload: b"x",
    };
    assert_eq!(
        encode(Packet::Publish(p), V311),
        [0x30, 0x04, 0x00, 0x01, b't', b'x']
    );
}

// ---- PUBACK / PUBREC / PUBREL / PUBCOMP ----

#[test]
fn v3_pub_responses_encode_to_known_bytes() {
    let r = PubResponse::new(0x0102);
    assert_eq!(encode(Packet::PubAck(r), V311), [0x40, 0x02, 0x01, 0x02]);
    assert_eq!(encode(Packet::PubRec(r), V311), [0x50, 0x02, 0x01, 0x02]);
    assert_eq!(encode(Packet::PubRel(r), V311), [0x62, 0x02, 0x01, 0x02]);
    assert_eq!(encode(Packet::PubComp(r), V311), [0x70, 0x02, 0x01, 0x02]);
}

#[test]
fn v5_puback_short_form_means_success_without_properties() {
    let p = decode_all(&[0x40, 0x02, 0x00, 0x09], V5).unwrap();
    assert_eq!(p, Packet::PubAck(PubResponse::new(9)));
}

#[test]
fn v5_puback_with_reason_and_no_property_length_decodes() {
    let p = decode_all(&[0x40, 0x03, 0x00, 0x09, 0x10], V5).unwrap();
    let Packet::PubAck(r) = p else {
        panic!("not PUBACK")
    };
    assert_eq!(r.reason, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    assert_eq!(r.properties, Properties::default());
}

#[test]
fn v5_puback_full_form_decodes_reason_string() {
    let bytes = frame(
        0x40,
        &[
            vec![0, 9, 0x87],
            props_block(&[vec![0x1F], lp("no")].concat()),
        ]
        .concat(),
    );
    let Packet::PubAck(r) = decode_all(&bytes, V5).unwrap() else {
        panic!("not PUBACK")
    };
    assert_eq!(r.reason, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(r.properties.reason_string, Some("no"));
}

#[test]
fn v5_pub_response_encoding_uses_the_shortest_form() {
    let ok = PubResponse::new(9);
    assert_eq!(encode(Packet::PubAck(ok), V5), [0x40, 0x02, 0x00, 0x09]);
    let refused = PubResponse {
        reason: ReasonCode::QUOTA_EXCEEDED,
        ..ok
    };
    assert_eq!(
        encode(Packet::PubRec(refused), V5),
        [0x50, 0x03, 0x00, 0x09, 0x97]
    );
    let with_reason_string = PubResponse {
        properties: Properties {
            reason_string: Some("r"),
            ..Properties::default()
        },
        ..ok
    };
    assert_eq!(
        encode(Packet::PubComp(with_reason_string), V5),
        [0x70, 0x08, 0x00, 0x09, 0x00, 0x04, 0x1F, 0x00, 0x01, b'r']
    );
}

#[test]
fn v5_pubrel_reports_packet_identifier_not_found() {
    let p = decode_all(&[0x62, 0x03, 0x00, 0x01, 0x92], V5).unwrap();
    let Packet::PubRel(r) = p else {
        panic!("not PUBREL")
    };
    assert_eq!(r.reason, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
}

// ---- SUBSCRIBE / SUBACK ----

#[test]
fn subscribe_v311_decodes_several_filters() {
    let bytes = frame(
        0x82,
        &[vec![0, 10], lp("a/+"), vec![1], lp("b/#"), vec![2]].concat(),
    );
    let Packet::Subscribe(s) = decode_all(&bytes, V311).unwrap() else {
        panic!("not SUBSCRIBE")
    };
    assert_eq!(s.packet_id, 10);
    assert_eq!(s.filters.len(), 2);
    assert_eq!(
        s.filters.iter().collect::<Vec<_>>(),
        [
            ("a/+", SubscriptionOptions::with_qos(QoS::AtLeastOnce)),
            ("b/#", SubscriptionOptions::with_qos(QoS::ExactlyOnce))
        ]
    );
}

#[test]
fn subscribe_v5_decodes_options_and_subscription_identifier() {
    // QoS 1, No Local, Retain As Published, Retain Handling 2.
    let options = 0b0010_1101;
    let bytes = frame(
        0x82,
        &[
            vec![0, 1],
            props_block(&[0x0B, 0x2A]),
            lp("x/y"),
            vec![options],
        ]
        .concat(),
    );
    let Packet::Subscribe(s) = decode_all(&bytes, V5).unwrap() else {
        panic!("not SUBSCRIBE")
    };
    assert_eq!(s.properties.subscription_identifier, Some(42));
    assert!(s.properties.subscription_identifiers.is_empty());
    let (filter, o) = s.filters.iter().next().unwrap();
    assert_eq!(filter, "x/y");
    assert_eq!(
        o,
        SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        }
    );
    assert_eq!(o.to_byte(V5), options);
}

#[test]
fn v5_shared_subscription_is_accepted() {
    let bytes = frame(
        0x82,
        &[vec![0, 1, 0], lp("$share/g/sensors/+"), vec![1]].concat(),
    );
    assert!(decode_all(&bytes, V5).is_ok());
}

#[test]
fn subscribe_encodes_with_flags_0010() {
    let filters = [("a", SubscriptionOptions::with_qos(QoS::AtLeastOnce))];
    let s = Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: SubscribeFilters::Slice(&filters),
    };
    assert_eq!(
        encode(Packet::Subscribe(s), V311),
        [0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x01]
    );
}

#[test]
fn v3_subscribe_encoding_drops_v5_only_options() {
    let filters = [(
        "a",
        SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        },
    )];
    let s = Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: SubscribeFilters::Slice(&filters),
    };
    assert_eq!(encode(Packet::Subscribe(s), V311).last(), Some(&0x01));
}

#[test]
fn encoded_and_slice_filters_compare_by_content() {
    let bytes = [lp("a"), vec![1], lp("b"), vec![0]].concat();
    let slice = [
        ("a", SubscriptionOptions::with_qos(QoS::AtLeastOnce)),
        ("b", SubscriptionOptions::default()),
    ];
    assert_eq!(
        SubscribeFilters::Encoded(&bytes),
        SubscribeFilters::Slice(&slice)
    );
    assert_ne!(
        SubscribeFilters::Encoded(&bytes),
        SubscribeFilters::Slice(&slice[..1])
    );
    let unsub = [lp("a"), lp("b")].concat();
    assert_eq!(
        UnsubscribeFilters::Encoded(&unsub),
        UnsubscribeFilters::Slice(&["a", "b"])
    );
}

#[test]
fn suback_v311_decodes_return_codes() {
    let p = decode_all(&[0x90, 0x05, 0x00, 0x07, 0x00, 0x02, 0x80], V311).unwrap();
    let Packet::SubAck(s) = p else {
        panic!("not SUBACK")
    };
    assert_eq!(s.packet_id, 7);
    assert_eq!(s.return_codes, [0x00, 0x02, 0x80]);
}

#[test]
fn suback_v5_decodes_reason_codes_and_properties() {
    let bytes = frame(
        0x90,
        &[
            vec![0, 7],
            props_block(&[vec![0x1F], lp("x")].concat()),
            vec![0x01, 0xA2],
        ]
        .concat(),
    );
    let Packet::SubAck(s) = decode_all(&bytes, V5).unwrap() else {
        panic!("not SUBACK")
    };
    assert_eq!(s.return_codes, [0x01, 0xA2]);
    assert_eq!(s.properties.reason_string, Some("x"));
}

// ---- UNSUBSCRIBE / UNSUBACK ----

#[test]
fn unsubscribe_decodes_filters() {
    let bytes = frame(0xA2, &[vec![0, 3], lp("a/b"), lp("c/#")].concat());
    let Packet::Unsubscribe(u) = decode_all(&bytes, V311).unwrap() else {
        panic!("not UNSUBSCRIBE")
    };
    assert_eq!(u.packet_id, 3);
    assert_eq!(u.filters.iter().collect::<Vec<_>>(), ["a/b", "c/#"]);
    assert_eq!(u.filters.len(), 2);
    assert_eq!(encode(Packet::Unsubscribe(u), V311), bytes);
}

#[test]
fn unsuback_v311_is_only_a_packet_id() {
    let p = decode_all(&[0xB0, 0x02, 0x00, 0x03], V311).unwrap();
    let Packet::UnsubAck(u) = p else {
        panic!("not UNSUBACK")
    };
    assert_eq!(u.packet_id, 3);
    assert!(u.reason_codes.is_empty());
    let with_codes = UnsubAck {
        reason_codes: &[0x11],
        ..u
    };
    assert_eq!(
        encode(Packet::UnsubAck(with_codes), V311),
        [0xB0, 0x02, 0x00, 0x03]
    );
}

#[test]
fn unsuback_v5_decodes_reason_codes() {
    let p = decode_all(&[0xB0, 0x05, 0x00, 0x03, 0x00, 0x00, 0x11], V5).unwrap();
    let Packet::UnsubAck(u) = p else {
        panic!("not UNSUBACK")
    };
    assert_eq!(u.reason_codes, [0x00, 0x11]);
}

// ---- PINGREQ / PINGRESP ----

#[test]
fn pingreq_and_pingresp_are_two_bytes() {
    assert_eq!(encode(Packet::PingReq, V311), [0xC0, 0x00]);
    assert_eq!(encode(Packet::PingResp, V5), [0xD0, 0x00]);
    assert_eq!(decode_all(&[0xC0, 0x00], V5), Ok(Packet::PingReq));
    assert_eq!(decode_all(&[0xD0, 0x00], V311), Ok(Packet::PingResp));
}

// ---- DISCONNECT / AUTH ----

#[test]
fn disconnect_v311_is_empty() {
    assert_eq!(
        decode_all(&[0xE0, 0x00], V311),
        Ok(Packet::Disconnect(Disconnect::default()))
    );
    let d = Disconnect {
        reason: ReasonCode::SERVER_SHUTTING_DOWN,
        properties: Properties::default(),
    };
    assert_eq!(encode(Packet::Disconnect(d), V311), [0xE0, 0x00]);
}

#[test]
fn v5_disconnect_short_forms() {
    assert_eq!(
        decode_all(&[0xE0, 0x00], V5),
        Ok(Packet::Disconnect(Disconnect::default()))
    );
    let p = decode_all(&[0xE0, 0x01, 0x8E], V5).unwrap();
    let Packet::Disconnect(d) = p else {
        panic!("not DISCONNECT")
    };
    assert_eq!(d.reason, ReasonCode::SESSION_TAKEN_OVER);
}

/// We write the full form even where the spec allows omitting the reason code
/// and property length, because some clients (rumqttc 0.25) cannot read the
/// short forms.
#[test]
fn v5_disconnect_is_encoded_in_full_form() {
    assert_eq!(
        encode(Packet::Disconnect(Disconnect::default()), V5),
        [0xE0, 0x02, 0x00, 0x00]
    );
    let d = Disconnect {
        reason: ReasonCode::SESSION_TAKEN_OVER,
        properties: Properties::default(),
    };
    assert_eq!(encode(Packet::Disconnect(d), V5), [0xE0, 0x02, 0x8E, 0x00]);
}

#[test]
fn v5_disconnect_with_properties_decodes() {
    let entries = [vec![0x11, 0, 0, 0, 0], vec![0x1C], lp("other:1883")].concat();
    let bytes = frame(0xE0, &[vec![0x9C], props_block(&entries)].concat());
    let Packet::Disconnect(d) = decode_all(&bytes, V5).unwrap() else {
        panic!("not DISCONNECT")
    };
    assert_eq!(d.reason, ReasonCode::USE_ANOTHER_SERVER);
    assert_eq!(d.properties.session_expiry_interval, Some(0));
    assert_eq!(d.properties.server_reference, Some("other:1883"));
}

#[test]
fn auth_decodes_method_and_data() {
    let entries = [vec![0x15], lp("SCRAM"), vec![0x16], lp([1, 2])].concat();
    let bytes = frame(0xF0, &[vec![0x18], props_block(&entries)].concat());
    let Packet::Auth(a) = decode_all(&bytes, V5).unwrap() else {
        panic!("not AUTH")
    };
    assert_eq!(a.reason, ReasonCode::CONTINUE_AUTHENTICATION);
    assert_eq!(a.properties.authentication_method, Some("SCRAM"));
    assert_eq!(a.properties.authentication_data, Some(&[1u8, 2][..]));
    assert_eq!(encode(Packet::Auth(a), V5), bytes);
}

#[test]
fn auth_short_form_is_success() {
    assert_eq!(
        decode_all(&[0xF0, 0x00], V5),
        Ok(Packet::Auth(Auth::default()))
    );
    assert_eq!(encode(Packet::Auth(Auth::default()), V5), [0xF0, 0x00]);
}

#[test]
fn auth_with_reason_but_no_property_length_is_accepted() {
    let p = decode_all(&[0xF0, 0x01, 0x19], V5).unwrap();
    let Packet::Auth(a) = p else {
        panic!("not AUTH")
    };
    assert_eq!(a.reason, ReasonCode::RE_AUTHENTICATE);
    // Re-encoded with an explicit empty property block (§3.15.2.1).
    assert_eq!(encode(p, V5), [0xF0, 0x02, 0x19, 0x00]);
}

// ---- streams ----

#[test]
fn decode_consumes_one_packet_from_a_stream() {
    let stream = [0xC0, 0x00, 0xD0, 0x00, 0xE0];
    assert_eq!(decode(&stream, V311, 100), Ok((Packet::PingReq, 2)));
    assert_eq!(decode(&stream[2..], V311, 100), Ok((Packet::PingResp, 2)));
    assert!(matches!(
        decode(&stream[4..], V311, 100),
        Err(DecodeError::Incomplete { .. })
    ));
}

#[test]
fn frame_len_reports_the_total_length() {
    assert_eq!(frame_len(&[0x30], 1000), Ok(None));
    assert_eq!(frame_len(&[0x30, 0x05], 1000), Ok(Some(7)));
    assert_eq!(frame_len(&[0x30, 0x80, 0x01], 1000), Ok(Some(131)));
    assert_eq!(
        frame_len(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], usize::MAX),
        Ok(Some(268_435_460))
    );
}

// ---- user properties and subscription identifiers ----

#[test]
fn user_properties_encoded_iterates_only_user_entries() {
    let block = [
        vec![0x03],
        lp("ct"),
        vec![0x26],
        lp("a"),
        lp("1"),
        vec![0x0B, 3],
        vec![0x26],
        lp("b"),
        lp("2"),
    ]
    .concat();
    let u = UserProperties::Encoded(&block);
    assert_eq!(u.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "2")]);
    assert_eq!(u.len(), 2);
    assert!(!u.is_empty());
    assert_eq!(u, UserProperties::Slice(&[("a", "1"), ("b", "2")]));
    assert_ne!(u, UserProperties::Slice(&[("b", "2"), ("a", "1")]));
}

#[test]
fn user_properties_encode_writes_only_user_entries() {
    let block = [vec![0x03], lp("ct"), vec![0x26], lp("a"), lp("1")].concat();
    let expected = [vec![0x26], lp("a"), lp("1")].concat();
    let encoded = UserProperties::Encoded(&block);
    assert_eq!(encoded.encoded_len(), Ok(expected.len()));
    let mut buf = [0u8; 32];
    assert_eq!(encoded.encode(&mut buf), Ok(expected.len()));
    assert_eq!(&buf[..expected.len()], expected);
    let slice = UserProperties::Slice(&[("a", "1")]);
    assert_eq!(slice.encoded_len(), Ok(expected.len()));
    let mut buf2 = [0u8; 32];
    assert_eq!(slice.encode(&mut buf2), Ok(expected.len()));
    assert_eq!(buf, buf2);
}

#[test]
fn user_properties_of_a_decoded_publish_can_be_stored_and_re_emitted() {
    let entries = [vec![0x26], lp("site"), lp("lyon"), vec![0x02, 0, 0, 0, 9]].concat();
    let bytes = v5_publish_with(&entries);
    let Packet::Publish(p) = decode_all(&bytes, V5).unwrap() else {
        panic!("not PUBLISH")
    };
    // The gateway keeps only the user property bytes with the message ...
    let mut stored = vec![0u8; p.properties.user_properties.encoded_len().unwrap()];
    p.properties.user_properties.encode(&mut stored).unwrap();
    // ... and delivers a PUBLISH built on them, without allocating per delivery.
    let delivery = Publish {
        properties: Properties {
            user_properties: UserProperties::Encoded(&stored),
            ..Properties::default()
        },
        ..p
    };
    let out = encode(Packet::Publish(delivery), V5);
    let Packet::Publish(q) = decode_all(&out, V5).unwrap() else {
        panic!("not PUBLISH")
    };
    assert_eq!(
        q.properties.user_properties.iter().collect::<Vec<_>>(),
        [("site", "lyon")]
    );
    assert_eq!(q.properties.message_expiry_interval, None);
}

#[test]
fn user_properties_encode_reports_a_short_buffer() {
    let u = UserProperties::Slice(&[("a", "1")]);
    let mut buf = [0u8; 3];
    assert_eq!(
        u.encode(&mut buf),
        Err(EncodeError::BufferTooSmall { needed: 7 })
    );
}

#[test]
fn malformed_encoded_user_properties_stop_iteration_without_panicking() {
    let u = UserProperties::Encoded(&[0x26, 0x00, 0x05, b'a']);
    assert_eq!(u.iter().count(), 0);
    assert_eq!(u.encoded_len(), Ok(0));
}

#[test]
fn subscription_ids_encoded_and_slice_compare_by_content() {
    let block = [0x0B, 0x80, 0x01, 0x26, 0x00, 0x00, 0x00, 0x00, 0x0B, 0x02];
    let ids = SubscriptionIds::Encoded(&block);
    assert_eq!(ids.iter().collect::<Vec<_>>(), [128, 2]);
    assert_eq!(ids, SubscriptionIds::Slice(&[128, 2]));
    assert_eq!(ids.encoded_len(), Ok(5));
    let mut buf = [0u8; 5];
    assert_eq!(ids.encode(&mut buf), Ok(5));
    assert_eq!(buf, [0x0B, 0x80, 0x01, 0x0B, 0x02]);
}

// ---- reason codes ----

#[test]
fn reason_code_validity_follows_the_spec_table() {
    use PacketType::*;
    assert!(ReasonCode::SUCCESS.is_valid_for(ConnAck));
    assert!(ReasonCode::GRANTED_QOS_2.is_valid_for(SubAck));
    assert!(!ReasonCode::GRANTED_QOS_2.is_valid_for(PubAck));
    assert!(ReasonCode::NO_MATCHING_SUBSCRIBERS.is_valid_for(PubRec));
    assert!(!ReasonCode::NO_MATCHING_SUBSCRIBERS.is_valid_for(PubComp));
    assert!(ReasonCode::PACKET_IDENTIFIER_NOT_FOUND.is_valid_for(PubRel));
    assert!(ReasonCode::DISCONNECT_WITH_WILL.is_valid_for(Disconnect));
    assert!(!ReasonCode::DISCONNECT_WITH_WILL.is_valid_for(ConnAck));
    assert!(ReasonCode::SERVER_SHUTTING_DOWN.is_valid_for(Disconnect));
    assert!(!ReasonCode::SERVER_SHUTTING_DOWN.is_valid_for(ConnAck));
    assert!(ReasonCode::TOPIC_FILTER_INVALID.is_valid_for(UnsubAck));
    assert!(ReasonCode::CONTINUE_AUTHENTICATION.is_valid_for(Auth));
    assert!(!ReasonCode::CONTINUE_AUTHENTICATION.is_valid_for(Disconnect));
    assert!(!ReasonCode::SUCCESS.is_valid_for(Publish));
    assert!(!ReasonCode(0x03).is_valid_for(Disconnect));
}

#[test]
fn reason_codes_from_0x80_are_errors() {
    assert!(!ReasonCode::SUCCESS.is_error());
    assert!(!ReasonCode::NO_MATCHING_SUBSCRIBERS.is_error());
    assert!(ReasonCode::UNSPECIFIED_ERROR.is_error());
    assert!(ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED.is_error());
}

#[test]
fn v5_connack_reasons_map_to_v3_return_codes() {
    use ConnectReturnCode::*;
    assert_eq!(ReasonCode::SUCCESS.to_v3_connect_return_code(), Accepted);
    assert_eq!(
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION.to_v3_connect_return_code(),
        UnacceptableProtocolVersion
    );
    assert_eq!(
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID.to_v3_connect_return_code(),
        IdentifierRejected
    );
    assert_eq!(
        ReasonCode::BAD_USER_NAME_OR_PASSWORD.to_v3_connect_return_code(),
        BadUserNameOrPassword
    );
    assert_eq!(
        ReasonCode::NOT_AUTHORIZED.to_v3_connect_return_code(),
        NotAuthorized
    );
    assert_eq!(
        ReasonCode::BANNED.to_v3_connect_return_code(),
        NotAuthorized
    );
    assert_eq!(
        ReasonCode::SERVER_BUSY.to_v3_connect_return_code(),
        ServerUnavailable
    );
    assert_eq!(
        ReasonCode::QUOTA_EXCEEDED.to_v3_connect_return_code(),
        ServerUnavailable
    );
}

#[test]
fn v3_return_codes_map_to_v5_reasons_and_back() {
    for code in 0..=5 {
        let rc = ConnectReturnCode::from_u8(code).unwrap();
        assert_eq!(rc.as_v3_code(), ReasonCode(code));
        assert_eq!(rc.to_v5_reason_code().to_v3_connect_return_code(), rc);
    }
    assert_eq!(ConnectReturnCode::from_u8(6), None);
}

#[test]
fn qos_from_u8_rejects_3() {
    assert_eq!(QoS::from_u8(0), Some(QoS::AtMostOnce));
    assert_eq!(QoS::from_u8(2), Some(QoS::ExactlyOnce));
    assert_eq!(QoS::from_u8(3), None);
    assert!(QoS::AtMostOnce < QoS::ExactlyOnce);
}

#[test]
fn protocol_versions_know_their_level_and_name() {
    assert_eq!(V31.level(), 3);
    assert_eq!(V31.protocol_name(), "MQIsdp");
    assert_eq!(V311.level(), 4);
    assert_eq!(V5.protocol_name(), "MQTT");
    assert_eq!(ProtocolVersion::from_level(5), Some(V5));
    assert_eq!(ProtocolVersion::from_level(6), None);
}
