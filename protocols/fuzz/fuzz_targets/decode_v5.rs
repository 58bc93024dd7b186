//! A connection that speaks MQTT 5: arbitrary bytes, decoded like a server.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_protocols::mqtt::ProtocolVersion;

fuzz_target!(|data: &[u8]| {
    tether_protocols_fuzz::check_stream(data, ProtocolVersion::V5);
});
