//! Encoding: length arithmetic, the bounds-checked [`Writer`], and the shared
//! two-step scheme every packet type uses (compute the exact size while
//! validating, then write into the caller's buffer).
//!
//! Nothing here allocates. Sizes are computed with checked arithmetic, so an
//! absurd input yields [`EncodeError::PacketTooLarge`] rather than an overflow.

use super::error::EncodeError;
use super::packet::{MAX_REMAINING_LENGTH, ProtocolVersion};

/// Adds two lengths, failing with [`EncodeError::PacketTooLarge`] on overflow.
pub(crate) fn add(a: usize, b: usize) -> Result<usize, EncodeError> {
    a.checked_add(b).ok_or(EncodeError::PacketTooLarge)
}

/// Number of bytes of `value` as a Variable Byte Integer (1..=4 for values up
/// to 268 435 455; larger values are rejected before this is used).
pub(crate) const fn varint_len(value: usize) -> usize {
    if value < 0x80 {
        1
    } else if value < 0x4000 {
        2
    } else if value < 0x20_0000 {
        3
    } else {
        4
    }
}

/// Encoded size of a UTF-8 Encoded String, validating it on the way.
pub(crate) fn string_len(s: &str) -> Result<usize, EncodeError> {
    if s.len() > usize::from(u16::MAX) {
        return Err(EncodeError::StringTooLong);
    }
    if s.as_bytes().contains(&0) {
        return Err(EncodeError::NullCharacter);
    }
    Ok(2 + s.len())
}

/// Encoded size of Binary Data, validating its length.
pub(crate) fn binary_len(b: &[u8]) -> Result<usize, EncodeError> {
    if b.len() > usize::from(u16::MAX) {
        return Err(EncodeError::BinaryTooLong);
    }
    Ok(2 + b.len())
}

/// Validates a packet identifier that must be present and non-zero.
pub(crate) const fn check_packet_id(id: u16) -> Result<(), EncodeError> {
    if id == 0 {
        Err(EncodeError::ZeroPacketId)
    } else {
        Ok(())
    }
}

/// A cursor writing into a caller-provided buffer. Every write is bounds
/// checked and fails with [`EncodeError::BufferTooSmall`] instead of panicking.
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes written so far.
    pub(crate) const fn position(&self) -> usize {
        self.pos
    }

    /// Writes raw bytes.
    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let end = add(self.pos, bytes.len())?;
        let dst = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(EncodeError::BufferTooSmall { needed: end })?;
        dst.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    /// Writes one byte.
    pub(crate) fn u8(&mut self, b: u8) -> Result<(), EncodeError> {
        self.bytes(&[b])
    }

    /// Writes a big-endian Two Byte Integer.
    pub(crate) fn u16(&mut self, v: u16) -> Result<(), EncodeError> {
        self.bytes(&v.to_be_bytes())
    }

    /// Writes a big-endian Four Byte Integer.
    pub(crate) fn u32(&mut self, v: u32) -> Result<(), EncodeError> {
        self.bytes(&v.to_be_bytes())
    }

    /// Writes a Variable Byte Integer (minimal encoding).
    pub(crate) fn varint(&mut self, value: usize) -> Result<(), EncodeError> {
        if value > MAX_REMAINING_LENGTH {
            return Err(EncodeError::PacketTooLarge);
        }
        let mut v = value;
        loop {
            // Truncation is intended: the low 7 bits of the value.
            let mut b = (v & 0x7F) as u8;
            v >>= 7;
            if v > 0 {
                b |= 0x80;
            }
            self.u8(b)?;
            if v == 0 {
                return Ok(());
            }
        }
    }

    /// Writes Binary Data (two-byte length prefix). Length must be validated.
    pub(crate) fn binary(&mut self, b: &[u8]) -> Result<(), EncodeError> {
        let len = u16::try_from(b.len()).map_err(|_| EncodeError::BinaryTooLong)?;
        self.u16(len)?;
        self.bytes(b)
    }

    /// Writes a UTF-8 Encoded String (two-byte length prefix). Must be validated.
    pub(crate) fn string(&mut self, s: &str) -> Result<(), EncodeError> {
        let len = u16::try_from(s.len()).map_err(|_| EncodeError::StringTooLong)?;
        self.u16(len)?;
        self.bytes(s.as_bytes())
    }
}

/// A packet body that can be encoded after a fixed header. Implemented by
/// every packet struct; [`encoded_len`] and [`encode`] do the rest.
pub(crate) trait Encode {
    /// The first byte of the fixed header (type and flags).
    fn header_byte(&self) -> u8;
    /// The remaining length, validating everything the decoder would check.
    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError>;
    /// Writes the variable header and payload. Only called after `body_len`
    /// succeeded for the same version.
    fn write_body(&self, version: ProtocolVersion, w: &mut Writer<'_>) -> Result<(), EncodeError>;
}

/// Remaining length and total encoded size of a packet.
fn sizes<P: Encode + ?Sized>(
    packet: &P,
    version: ProtocolVersion,
) -> Result<(usize, usize), EncodeError> {
    let remaining = packet.body_len(version)?;
    if remaining > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge);
    }
    Ok((remaining, 1 + varint_len(remaining) + remaining))
}

/// Exact encoded size of a packet, fixed header included.
pub(crate) fn encoded_len<P: Encode + ?Sized>(
    packet: &P,
    version: ProtocolVersion,
) -> Result<usize, EncodeError> {
    sizes(packet, version).map(|(_, total)| total)
}

/// Encodes a packet at the start of `buf`, returning the bytes written.
pub(crate) fn encode<P: Encode + ?Sized>(
    packet: &P,
    version: ProtocolVersion,
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    let (remaining, total) = sizes(packet, version)?;
    let out = buf
        .get_mut(..total)
        .ok_or(EncodeError::BufferTooSmall { needed: total })?;
    let mut w = Writer::new(out);
    w.u8(packet.header_byte())?;
    w.varint(remaining)?;
    packet.write_body(version, &mut w)?;
    // `body_len` and `write_body` must agree; a mismatch is a bug in this crate.
    debug_assert_eq!(w.position(), total, "encoded length mismatch");
    Ok(w.position())
}
