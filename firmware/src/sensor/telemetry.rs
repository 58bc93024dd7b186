//! Telemetry topics and payloads, written into caller buffers.
//!
//! The layout is the one the gateway's examples and topic rules use:
//! readings on `sensors/{device}/telemetry`, commands on `devices/{device}/cmd`,
//! and a reading as one compact JSON object:
//!
//! ```text
//! {"device":"d1","temperature":21.53,"humidity":40.1,"pressure":1013.2,"seq":42}
//! ```
//!
//! (°C to 0.01, %RH to 0.1, hPa to 0.1). Numbers are formatted by hand from
//! fixed point, without `core::fmt` and without floating point.

use super::Reading;

/// Why a topic or payload could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// The output buffer is too short.
    BufferTooSmall,
    /// The device id is empty or contains `/`, `+`, `#` or U+0000, so it
    /// cannot be one topic level.
    InvalidDeviceId,
}

impl core::fmt::Display for FormatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::BufferTooSmall => "output buffer too small",
            Self::InvalidDeviceId => "device id cannot be a topic level",
        })
    }
}

impl core::error::Error for FormatError {}

/// Whether `id` can be a single topic level (non-empty, no `/ + #` or U+0000).
pub fn is_valid_device_id(id: &str) -> bool {
    !id.is_empty() && !id.bytes().any(|b| matches!(b, b'/' | b'+' | b'#' | 0))
}

/// Writes `sensors/{device}/telemetry` into `buf`.
pub fn telemetry_topic<'b>(device: &str, buf: &'b mut [u8]) -> Result<&'b str, FormatError> {
    topic(&["sensors/", device, "/telemetry"], device, buf)
}

/// Writes `devices/{device}/cmd` into `buf`.
pub fn command_topic<'b>(device: &str, buf: &'b mut [u8]) -> Result<&'b str, FormatError> {
    topic(&["devices/", device, "/cmd"], device, buf)
}

fn topic<'b>(parts: &[&str], device: &str, buf: &'b mut [u8]) -> Result<&'b str, FormatError> {
    if !is_valid_device_id(device) {
        return Err(FormatError::InvalidDeviceId);
    }
    let mut w = Cursor { buf, pos: 0 };
    for p in parts {
        w.bytes(p.as_bytes())?;
    }
    let Cursor { buf, pos } = w;
    // Only whole UTF-8 strings were copied in.
    core::str::from_utf8(&buf[..pos]).map_err(|_| FormatError::InvalidDeviceId)
}

/// One reading as it is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Telemetry<'a> {
    /// Device id (JSON-escaped on output).
    pub device: &'a str,
    /// The measurement.
    pub reading: Reading,
    /// Sequence number, so a subscriber can see order and gaps.
    pub seq: u32,
}

impl Telemetry<'_> {
    /// Writes the JSON object into `buf` and returns its length.
    pub fn write_json(&self, buf: &mut [u8]) -> Result<usize, FormatError> {
        let mut w = Cursor { buf, pos: 0 };
        w.bytes(b"{\"device\":\"")?;
        w.escaped(self.device)?;
        w.bytes(b"\",\"temperature\":")?;
        w.fixed(i64::from(self.reading.temperature_centi_c), 2)?;
        w.bytes(b",\"humidity\":")?;
        // Thousandths to tenths, rounded.
        w.fixed(
            i64::from(self.reading.humidity_milli_pct.saturating_add(50) / 100),
            1,
        )?;
        w.bytes(b",\"pressure\":")?;
        // Pa to tenths of hPa (10 Pa), rounded.
        w.fixed(
            i64::from(self.reading.pressure_pa.saturating_add(5) / 10),
            1,
        )?;
        w.bytes(b",\"seq\":")?;
        w.unsigned(u64::from(self.seq))?;
        w.bytes(b"}")?;
        Ok(w.pos)
    }
}

/// A bounds-checked writer into a byte buffer.
struct Cursor<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn bytes(&mut self, b: &[u8]) -> Result<(), FormatError> {
        let end = self
            .pos
            .checked_add(b.len())
            .ok_or(FormatError::BufferTooSmall)?;
        self.buf
            .get_mut(self.pos..end)
            .ok_or(FormatError::BufferTooSmall)?
            .copy_from_slice(b);
        self.pos = end;
        Ok(())
    }

    /// A JSON string body: `"` and `\` escaped, control characters as `\u00XX`.
    fn escaped(&mut self, s: &str) -> Result<(), FormatError> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for &b in s.as_bytes() {
            match b {
                b'"' => self.bytes(b"\\\"")?,
                b'\\' => self.bytes(b"\\\\")?,
                0..=0x1F => self.bytes(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0x0F)],
                ])?,
                _ => self.bytes(&[b])?,
            }
        }
        Ok(())
    }

    fn unsigned(&mut self, mut v: u64) -> Result<(), FormatError> {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.bytes(&digits[i..])
    }

    /// `value / 10^decimals` with exactly `decimals` digits after the point.
    fn fixed(&mut self, value: i64, decimals: u32) -> Result<(), FormatError> {
        if value < 0 {
            self.bytes(b"-")?;
        }
        let magnitude = value.unsigned_abs();
        let scale = 10u64.pow(decimals);
        self.unsigned(magnitude / scale)?;
        if decimals > 0 {
            self.bytes(b".")?;
            let mut frac = magnitude % scale;
            let mut digits = [b'0'; 8];
            let n = decimals.min(8) as usize;
            for d in digits[..n].iter_mut().rev() {
                *d = b'0' + (frac % 10) as u8;
                frac /= 10;
            }
            self.bytes(&digits[..n])?;
        }
        Ok(())
    }
}
