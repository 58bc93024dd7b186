//! The first packet of a connection. The first input byte picks a protocol
//! header (so the fuzzer spends its time past the protocol name); the rest is
//! the CONNECT body after it, framed with a correct fixed header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_protocols::mqtt::ProtocolVersion;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let prefix: &[u8] = match selector % 4 {
        0 => b"\x00\x06MQIsdp\x03",
        1 => b"\x00\x04MQTT\x04",
        2 => b"\x00\x04MQTT\x05",
        _ => b"",
    };
    let body_len = prefix.len() + rest.len();
    if body_len > 268_435_455 {
        return;
    }
    let mut packet = vec![0x10];
    let mut len = body_len;
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        packet.push(b);
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(prefix);
    packet.extend_from_slice(rest);
    // The server does not know the version before CONNECT; try both guesses.
    tether_protocols_fuzz::check_stream(&packet, ProtocolVersion::V3_1_1);
    tether_protocols_fuzz::check_stream(&packet, ProtocolVersion::V5);
});
