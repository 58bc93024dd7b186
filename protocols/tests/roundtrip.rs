//! Property tests: every valid packet of every type, in MQTT 3.1.1 and 5.0
//! (and 3.1 for CONNECT), encodes to exactly `encoded_len` bytes and decodes
//! back to an equal packet; every prefix reports a correct `Incomplete`; and
//! decoding arbitrary or mutated bytes never panics and, when it succeeds,
//! re-encodes to an equal packet.

mod common;

use common::*;
use proptest::prelude::*;
use tether_protocols::mqtt::*;

fn check(o: &OPacket, version: ProtocolVersion) -> Result<(), TestCaseError> {
    with_packet(o, |p| assert_round_trip(&p, version))
}

macro_rules! round_trip {
    ($($name:ident: $strategy:expr, $version:expr;)*) => {
        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
            $(
                #[test]
                fn $name(o in $strategy) {
                    check(&o, $version)?;
                }
            )*
        }
    };
}

round_trip! {
    connect_v31_round_trips: connect(V31), V31;
    connect_v311_round_trips: connect(V311), V311;
    connect_v5_round_trips: connect(V5), V5;
    connack_v311_round_trips: connack(V311), V311;
    connack_v5_round_trips: connack(V5), V5;
    publish_v311_round_trips: publish(V311), V311;
    publish_v5_round_trips: publish(V5), V5;
    puback_v311_round_trips: pub_response(4, V311), V311;
    puback_v5_round_trips: pub_response(4, V5), V5;
    pubrec_v311_round_trips: pub_response(5, V311), V311;
    pubrec_v5_round_trips: pub_response(5, V5), V5;
    pubrel_v311_round_trips: pub_response(6, V311), V311;
    pubrel_v5_round_trips: pub_response(6, V5), V5;
    pubcomp_v311_round_trips: pub_response(7, V311), V311;
    pubcomp_v5_round_trips: pub_response(7, V5), V5;
    subscribe_v311_round_trips: subscribe(V311), V311;
    subscribe_v5_round_trips: subscribe(V5), V5;
    suback_v311_round_trips: suback(V311), V311;
    suback_v5_round_trips: suback(V5), V5;
    unsubscribe_v311_round_trips: unsubscribe(V311), V311;
    unsubscribe_v5_round_trips: unsubscribe(V5), V5;
    unsuback_v311_round_trips: unsuback(V311), V311;
    unsuback_v5_round_trips: unsuback(V5), V5;
    disconnect_v311_round_trips: disconnect(V311), V311;
    disconnect_v5_round_trips: disconnect(V5), V5;
    auth_v5_round_trips: auth(), V5;
    any_packet_v31_round_trips: any_packet(V31), V31;
}

#[test]
fn pingreq_round_trips_in_every_version() {
    for v in [V31, V311, V5] {
        check(&OPacket::PingReq, v).unwrap();
    }
}

#[test]
fn pingresp_round_trips_in_every_version() {
    for v in [V31, V311, V5] {
        check(&OPacket::PingResp, v).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn decoding_random_bytes_never_panics_v311(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        assert_decode_oracle(&bytes, V311)?;
    }

    #[test]
    fn decoding_random_bytes_never_panics_v5(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        assert_decode_oracle(&bytes, V5)?;
    }

    /// Random bytes almost never get past the first checks; mutating valid
    /// packets reaches the deep validation paths.
    #[test]
    fn decoding_mutated_packets_never_panics_v5(
        o in any_packet(V5),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = with_packet(&o, |p| encode_vec(&p, V5));
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        assert_decode_oracle(&bytes, V5)?;
    }

    #[test]
    fn decoding_mutated_packets_never_panics_v311(
        o in any_packet(V311),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = with_packet(&o, |p| encode_vec(&p, V311));
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        assert_decode_oracle(&bytes, V311)?;
    }

    /// Several packets back to back decode one at a time, in order.
    #[test]
    fn stream_of_packets_decodes_in_order(packets in prop::collection::vec(any_packet(V5), 1..5)) {
        let mut stream = Vec::new();
        let mut lens = Vec::new();
        for o in &packets {
            let bytes = with_packet(o, |p| encode_vec(&p, V5));
            lens.push(bytes.len());
            stream.extend_from_slice(&bytes);
        }
        let mut rest = &stream[..];
        for (o, len) in packets.iter().zip(lens) {
            let (decoded, used) = decode(rest, V5, usize::MAX).unwrap();
            prop_assert_eq!(used, len);
            with_packet(o, |p| assert_eq!(decoded, p));
            rest = &rest[used..];
        }
        prop_assert!(rest.is_empty());
    }
}
