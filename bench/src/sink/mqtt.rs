//! The sink's MQTT side: CONNACK to CONNECT (3.1.1 and 5), SUBACK granting
//! the QoS asked for, UNSUBACK, PUBACK for QoS 1, PUBREC then PUBCOMP for
//! QoS 2, PINGRESP; every PUBLISH is counted and dropped.
//!
//! PUBLISH packets are never decoded in full: the type and QoS come from the
//! first byte and the packet id from a fixed offset, so a message costs a
//! frame length and, at QoS 1 and 2, a few bytes of answer.

use bytes::{Buf, BytesMut};
use tether_protocols::mqtt::{
    self, ConnAck, Packet, Properties, ProtocolVersion, PubResponse, ReasonCode, SubAck, UnsubAck,
};
use tokio::net::TcpStream;

use super::Counters;
use crate::mqtt::{MAX_PACKET, push};
use crate::{Error, net};

/// Serves one connection until the client goes.
pub async fn serve(stream: TcpStream, counters: &Counters) -> Result<(), Error> {
    let (mut read, mut write) = stream.into_split();
    let (mut rbuf, mut wbuf) = (BytesMut::new(), BytesMut::new());
    // Until CONNECT says otherwise.
    let mut version = ProtocolVersion::V3_1_1;
    loop {
        tokio::select! {
            r = net::fill(&mut read, &mut rbuf) => {
                r?;
                let mut publishes = 0;
                let mut done = false;
                while let Some(n) = mqtt::frame_len(&rbuf, MAX_PACKET)?.filter(|&n| n <= rbuf.len()) {
                    let packet = &rbuf[..n];
                    if packet[0] >> 4 == 3 {
                        publishes += 1;
                        match (packet[0] >> 1) & 3 {
                            0 => {}
                            1 => push(&mut wbuf, version, &Packet::PubAck(PubResponse::new(publish_id(packet)?)))?,
                            _ => push(&mut wbuf, version, &Packet::PubRec(PubResponse::new(publish_id(packet)?)))?,
                        }
                    } else {
                        done = answer(packet, &mut version, &mut wbuf)?;
                    }
                    rbuf.advance(n);
                }
                counters.mqtt_publishes.add(publishes);
                if done {
                    return Ok(());
                }
            }
            r = net::write_some(&mut write, &mut wbuf), if !wbuf.is_empty() => r?,
        }
    }
}

/// The packet id of a QoS 1 or 2 PUBLISH: after the fixed header and the
/// topic name.
fn publish_id(packet: &[u8]) -> Result<u16, Error> {
    // The remaining length takes 1 to 4 bytes, the last without bit 7.
    let len_bytes = packet[1..]
        .iter()
        .position(|b| b & 0x80 == 0)
        .ok_or("malformed remaining length")?
        + 1;
    let at = 1 + len_bytes;
    let topic_len = packet
        .get(at..at + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or("PUBLISH too short")?;
    let id_at = at + 2 + topic_len;
    packet
        .get(id_at..id_at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| "PUBLISH too short".into())
}

/// Answers a packet other than PUBLISH; true once the client disconnected.
fn answer(
    packet: &[u8],
    version: &mut ProtocolVersion,
    wbuf: &mut BytesMut,
) -> Result<bool, Error> {
    let (decoded, _) = Packet::decode(packet, *version, MAX_PACKET)?;
    match decoded {
        Packet::Connect(c) => {
            *version = c.protocol;
            let ack = ConnAck {
                session_present: false,
                code: ReasonCode::SUCCESS,
                properties: Properties::new(),
            };
            push(wbuf, *version, &Packet::ConnAck(ack))?;
        }
        Packet::Subscribe(s) => {
            let granted: Vec<u8> = s.filters.iter().map(|(_, o)| o.qos.as_u8()).collect();
            let ack = SubAck {
                packet_id: s.packet_id,
                properties: Properties::new(),
                return_codes: &granted,
            };
            push(wbuf, *version, &Packet::SubAck(ack))?;
        }
        Packet::Unsubscribe(u) => {
            let codes = vec![0u8; u.filters.len()];
            let ack = UnsubAck {
                packet_id: u.packet_id,
                properties: Properties::new(),
                reason_codes: &codes,
            };
            push(wbuf, *version, &Packet::UnsubAck(ack))?;
        }
        Packet::PubRel(r) => push(
            wbuf,
            *version,
            &Packet::PubComp(PubResponse::new(r.packet_id)),
        )?,
        Packet::PingReq => push(wbuf, *version, &Packet::PingResp)?,
        Packet::Disconnect(_) => return Ok(true),
        _ => {}
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_protocols::mqtt::{Publish, QoS};

    #[test]
    fn the_packet_id_is_found_after_the_topic() {
        for (topic, size) in [("bench/0", 16), ("t", 300)] {
            let payload = vec![1u8; size];
            let mut buf = BytesMut::new();
            let publish = Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic,
                packet_id: Some(4711),
                properties: Properties::new(),
                payload: &payload,
            };
            push(&mut buf, ProtocolVersion::V5, &Packet::Publish(publish)).unwrap();
            assert_eq!(publish_id(&buf).unwrap(), 4711);
        }
    }
}
