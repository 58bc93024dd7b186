//! Decoding: framing ([`frame_len`]), the packet decoder ([`decode`]) and the
//! bounds-checked [`Reader`] every packet body is parsed with.
//!
//! The decoder never allocates and never panics: every read goes through
//! [`Reader`], which returns [`DecodeError::UnexpectedEof`] instead of
//! indexing past the end, and every `&str`/`&[u8]` in a decoded packet borrows
//! from the input buffer.

use core::num::NonZeroUsize;

use super::error::DecodeError;
use super::packet::{MAX_REMAINING_LENGTH, Packet, PacketType, ProtocolVersion};
use super::{
    Auth, ConnAck, Connect, Disconnect, PubResponse, Publish, SubAck, Subscribe, UnsubAck,
    Unsubscribe,
};

/// A cursor over the bytes of one packet (or one property block). Reads
/// consume from the front and fail with [`DecodeError::UnexpectedEof`] when
/// the bytes run out.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub(crate) const fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Whether every byte has been consumed.
    pub(crate) const fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// How many bytes are left.
    pub(crate) const fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Takes all remaining bytes.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    /// Takes the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let (head, tail) = self
            .buf
            .split_at_checked(n)
            .ok_or(DecodeError::UnexpectedEof)?;
        self.buf = tail;
        Ok(head)
    }

    /// Reads one byte.
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, tail) = self.buf.split_first().ok_or(DecodeError::UnexpectedEof)?;
        self.buf = tail;
        Ok(b)
    }

    /// Reads a big-endian Two Byte Integer.
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let (head, tail) = self
            .buf
            .split_first_chunk::<2>()
            .ok_or(DecodeError::UnexpectedEof)?;
        self.buf = tail;
        Ok(u16::from_be_bytes(*head))
    }

    /// Reads a big-endian Four Byte Integer.
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let (head, tail) = self
            .buf
            .split_first_chunk::<4>()
            .ok_or(DecodeError::UnexpectedEof)?;
        self.buf = tail;
        Ok(u32::from_be_bytes(*head))
    }

    /// Reads a Variable Byte Integer (at most four bytes, §1.5.5).
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value: u32 = 0;
        for i in 0..4u32 {
            let b = self.u8()?;
            value |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::MalformedVariableByteInteger)
    }

    /// Reads a non-zero Packet Identifier.
    pub(crate) fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ZeroPacketId),
            id => Ok(id),
        }
    }

    /// Reads Binary Data: a two-byte length followed by that many bytes.
    pub(crate) fn binary(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// Reads a UTF-8 Encoded String (§1.5.4): well-formed UTF-8 without U+0000.
    pub(crate) fn string(&mut self) -> Result<&'a str, DecodeError> {
        let bytes = self.binary()?;
        let s = core::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?;
        if bytes.contains(&0) {
            return Err(DecodeError::NullCharacter);
        }
        Ok(s)
    }

    /// Succeeds only if every byte has been consumed.
    pub(crate) const fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::LengthMismatch)
        }
    }
}

/// What the fixed header at the front of a buffer says.
enum Header {
    /// The remaining length is not complete yet; at least `needed` more bytes
    /// are required before the packet can be complete.
    Partial { needed: usize },
    /// The fixed header is `header_len` bytes and the packet `total` bytes.
    Complete { header_len: usize, total: usize },
}

fn parse_fixed_header(buf: &[u8], max_packet_size: usize) -> Result<Header, DecodeError> {
    let Some((&first, lengths)) = buf.split_first() else {
        // Every packet has at least a type byte and one length byte.
        return Ok(Header::Partial { needed: 2 });
    };
    if first >> 4 == 0 {
        return Err(DecodeError::InvalidPacketType(0));
    }
    // Accumulate in u32 (28 bits at most) so this is correct on any usize width.
    let mut remaining: u32 = 0;
    for i in 0..4usize {
        let Some(&b) = lengths.get(i) else {
            // The remaining length continues past what we have. The next byte
            // may be 0 (non-minimal encodings are accepted), so the smallest
            // possible packet is the bytes so far, one more length byte and
            // the remaining length accumulated so far.
            let so_far = to_usize(remaining);
            let lower_bound = so_far.saturating_add(i).saturating_add(2);
            check_size(lower_bound, max_packet_size)?;
            return Ok(Header::Partial {
                needed: so_far.saturating_add(1),
            });
        };
        remaining |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            // 1 type byte + (i + 1) length bytes + the remaining length.
            let header_len = i + 2;
            let total = to_usize(remaining).saturating_add(header_len);
            check_size(total, max_packet_size)?;
            return Ok(Header::Complete { header_len, total });
        }
    }
    Err(DecodeError::MalformedRemainingLength)
}

/// Peeks at the fixed header at the front of `buf` and returns the total
/// length of the packet (fixed header + remaining length).
///
/// * `Ok(None)`: more bytes are needed just to read the fixed header.
/// * `Ok(Some(total))`: the packet is `total` bytes long (which may be more
///   than `buf.len()`).
/// * `Err(MalformedRemainingLength)`: the remaining length has a fifth byte.
/// * `Err(PacketTooLarge)`: the packet is larger than `max_packet_size`; this
///   is reported as soon as the bytes received prove it, so a server can
///   refuse a huge packet without buffering it.
/// * `Err(InvalidPacketType(0))`: the first byte has the reserved type 0.
///
/// Non-minimal remaining length encodings (e.g. `0x80 0x00`) are accepted.
pub fn frame_len(buf: &[u8], max_packet_size: usize) -> Result<Option<usize>, DecodeError> {
    match parse_fixed_header(buf, max_packet_size)? {
        Header::Partial { .. } => Ok(None),
        Header::Complete { total, .. } => Ok(Some(total)),
    }
}

/// Widens a length; saturates on targets whose `usize` is narrower than 32 bits.
pub(crate) fn to_usize(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn check_size(size: usize, max: usize) -> Result<(), DecodeError> {
    // No packet can be larger than the protocol's own limit either.
    let max = max.min(MAX_REMAINING_LENGTH.saturating_add(5));
    if size > max {
        Err(DecodeError::PacketTooLarge { size, max })
    } else {
        Ok(())
    }
}

/// Decodes one packet from the front of `buf`, returning it and the number of
/// bytes it occupied.
///
/// `version` is the protocol version of the connection; it is ignored for
/// CONNECT, which says its own version (reported in [`Connect::protocol`]), so
/// a server calls `decode` with any version for the first packet. Packets
/// larger than `max_packet_size` bytes (in total) are refused with
/// [`DecodeError::PacketTooLarge`].
///
/// If `buf` holds only part of the packet the result is
/// [`DecodeError::Incomplete`] with the number of further bytes needed
/// (exact once the fixed header is complete, a lower bound before).
pub fn decode(
    buf: &[u8],
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<(Packet<'_>, usize), DecodeError> {
    let (header_len, total) = match parse_fixed_header(buf, max_packet_size)? {
        Header::Partial { needed } => return Err(incomplete(needed)),
        Header::Complete { header_len, total } => (header_len, total),
    };
    let Some(packet) = buf.get(..total) else {
        return Err(incomplete(total.saturating_sub(buf.len())));
    };
    let first = packet.first().copied().ok_or(DecodeError::UnexpectedEof)?;
    let body = packet.get(header_len..).ok_or(DecodeError::UnexpectedEof)?;
    let decoded = decode_body(first, body, version)?;
    Ok((decoded, total))
}

fn incomplete(needed: usize) -> DecodeError {
    DecodeError::Incomplete {
        needed: NonZeroUsize::new(needed).unwrap_or(NonZeroUsize::MIN),
    }
}

/// Decodes the body (variable header + payload) of a packet whose fixed
/// header byte is `first`.
fn decode_body(
    first: u8,
    body: &[u8],
    version: ProtocolVersion,
) -> Result<Packet<'_>, DecodeError> {
    let kind = first >> 4;
    let flags = first & 0x0F;
    let packet_type = PacketType::from_u8(kind).ok_or(DecodeError::InvalidPacketType(kind))?;
    if packet_type == PacketType::Auth && !version.is_v5() {
        return Err(DecodeError::InvalidPacketType(kind));
    }
    if packet_type != PacketType::Publish && flags != packet_type.required_flags() {
        return Err(DecodeError::InvalidFixedHeaderFlags);
    }
    let mut r = Reader::new(body);
    let packet = match packet_type {
        PacketType::Connect => Packet::Connect(Connect::decode_body(&mut r)?),
        PacketType::ConnAck => Packet::ConnAck(ConnAck::decode_body(&mut r, version)?),
        PacketType::Publish => Packet::Publish(Publish::decode_body(flags, &mut r, version)?),
        PacketType::PubAck => Packet::PubAck(PubResponse::decode_body(
            PacketType::PubAck,
            &mut r,
            version,
        )?),
        PacketType::PubRec => Packet::PubRec(PubResponse::decode_body(
            PacketType::PubRec,
            &mut r,
            version,
        )?),
        PacketType::PubRel => Packet::PubRel(PubResponse::decode_body(
            PacketType::PubRel,
            &mut r,
            version,
        )?),
        PacketType::PubComp => Packet::PubComp(PubResponse::decode_body(
            PacketType::PubComp,
            &mut r,
            version,
        )?),
        PacketType::Subscribe => Packet::Subscribe(Subscribe::decode_body(&mut r, version)?),
        PacketType::SubAck => Packet::SubAck(SubAck::decode_body(&mut r, version)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode_body(&mut r, version)?),
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode_body(&mut r, version)?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect(Disconnect::decode_body(&mut r, version)?),
        PacketType::Auth => Packet::Auth(Auth::decode_body(&mut r)?),
    };
    r.finish()?;
    Ok(packet)
}
