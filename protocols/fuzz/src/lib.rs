//! The oracle shared by the fuzz targets: read a byte stream the way a server
//! does (peek with `frame_len`, then `decode`), and for every packet that
//! decodes, check that it re-encodes to exactly `encoded_len` bytes which
//! decode back to an equal packet and re-encode to the same bytes.

use tether_protocols::mqtt::{DecodeError, Packet, ProtocolVersion, decode, frame_len};

/// Largest packet the simulated server accepts.
const MAX_PACKET: usize = 64 * 1024;

/// Decodes `data` as a stream of packets on a connection speaking `version`
/// (switching to the version of any CONNECT met), checking every packet.
pub fn check_stream(data: &[u8], mut version: ProtocolVersion) {
    let mut rest = data;
    loop {
        let total = match frame_len(rest, MAX_PACKET) {
            Ok(Some(total)) => total,
            Ok(None) => {
                assert!(matches!(
                    decode(rest, version, MAX_PACKET),
                    Err(DecodeError::Incomplete { .. })
                ));
                return;
            }
            Err(e) => {
                // decode must agree with frame_len about a broken header.
                assert_eq!(decode(rest, version, MAX_PACKET).map(|_| ()), Err(e));
                let _ = e.reason_code();
                return;
            }
        };
        if total > rest.len() {
            let needed = total - rest.len();
            match decode(rest, version, MAX_PACKET) {
                Err(DecodeError::Incomplete { needed: n }) => assert_eq!(n.get(), needed),
                other => panic!("cut packet decoded as {other:?}"),
            }
            return;
        }
        match decode(rest, version, MAX_PACKET) {
            Ok((packet, used)) => {
                assert_eq!(used, total);
                if let Packet::Connect(c) = &packet {
                    version = c.protocol;
                }
                check_packet(&packet, version);
            }
            Err(DecodeError::Incomplete { .. }) => panic!("Incomplete for a whole frame"),
            Err(e) => {
                // A server would send a DISCONNECT with this reason and close;
                // keep reading to exercise more packets.
                let _ = e.reason_code();
                let _ = e.to_string();
            }
        }
        rest = &rest[total..];
    }
}

/// The round-trip oracle for one decoded packet.
pub fn check_packet(packet: &Packet<'_>, version: ProtocolVersion) {
    let len = packet
        .encoded_len(version)
        .unwrap_or_else(|e| panic!("decoded packet not encodable: {e:?}: {packet:?}"));
    let mut buf = vec![0u8; len];
    assert_eq!(packet.encode(version, &mut buf), Ok(len));
    let (again, used) = decode(&buf, version, usize::MAX)
        .unwrap_or_else(|e| panic!("re-encoded packet does not decode: {e:?}: {buf:02X?}"));
    assert_eq!(used, len);
    assert_eq!(&again, packet);
    let mut buf2 = vec![0u8; len];
    assert_eq!(again.encode(version, &mut buf2), Ok(len));
    assert_eq!(buf, buf2, "re-encoding is not stable");
    if len > 0 {
        assert!(matches!(
            decode(&buf[..len - 1], version, usize::MAX),
            Err(DecodeError::Incomplete { .. })
        ));
    }
}
