//! `ByteStr`: an immutable UTF-8 string backed by [`Bytes`], so a topic or a
//! property can be a zero-copy slice of the packet it arrived in and be shared
//! by every queue the message reaches.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::Bytes;

/// A cheaply clonable UTF-8 string sharing storage with a [`Bytes`] buffer.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteStr(Bytes);

impl ByteStr {
    /// A string from a `'static` literal, without copying.
    pub const fn from_static(s: &'static str) -> Self {
        ByteStr(Bytes::from_static(s.as_bytes()))
    }

    /// The part of `buf` that `s` borrows, without copying. `s` must point into
    /// `buf` (as the decoder's borrowed fields do); otherwise `s` is copied.
    pub fn slice_of(buf: &Bytes, s: &str) -> Self {
        let start = buf.as_ptr() as usize;
        let at = s.as_ptr() as usize;
        if at >= start && at + s.len() <= start + buf.len() {
            ByteStr(buf.slice_ref(s.as_bytes()))
        } else {
            ByteStr::from(s)
        }
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor stores bytes that were a valid `&str` or
        // `String` (`from_static`, `slice_of` via `slice_ref` of a `&str`'s bytes,
        // `From<&str>`, `From<String>`), and `Bytes` is immutable, so the bytes
        // are still valid UTF-8 here.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl Deref for ByteStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ByteStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for ByteStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl Hash for ByteStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl From<&str> for ByteStr {
    fn from(s: &str) -> Self {
        ByteStr(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for ByteStr {
    fn from(s: String) -> Self {
        ByteStr(Bytes::from(s))
    }
}

impl TryFrom<Bytes> for ByteStr {
    type Error = std::str::Utf8Error;

    /// Checks that `b` is UTF-8 and shares it.
    fn try_from(b: Bytes) -> Result<Self, Self::Error> {
        std::str::from_utf8(&b)?;
        Ok(ByteStr(b))
    }
}

impl serde::Serialize for ByteStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ByteStr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(ByteStr::from)
    }
}

impl fmt::Debug for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_of_shares_the_buffer() {
        let buf = Bytes::from_static(b"xxtopic/ayy");
        let s = std::str::from_utf8(&buf[2..9]).unwrap();
        let b = ByteStr::slice_of(&buf, s);
        assert_eq!(b.as_str(), "topic/a");
        assert_eq!(b.as_bytes().as_ptr(), buf[2..].as_ptr());
    }

    #[test]
    fn slice_of_foreign_str_copies() {
        let buf = Bytes::from_static(b"abc");
        assert_eq!(ByteStr::slice_of(&buf, "other").as_str(), "other");
    }
}
