//! The canonical binary encoding every blob of this crate uses.
//!
//! Integers are little-endian and fixed width; byte strings and lists carry
//! a length prefix; there are no optional encodings of the same value, so
//! one value has exactly one encoding (signatures and hashes cover it).
//! The reader is total: every read checks the remaining length, every list
//! length is checked against an explicit cap *and* against the bytes left
//! (so a hostile count cannot make us allocate more than the input could
//! hold), and [`Reader::finish`] rejects trailing bytes.

use stacksync_proto::ids::{ItemId, UserId, WorkspaceId};
use uuid::Uuid;

use crate::error::{ErrorKind, Result, fail};

/// Appends canonical encodings to a buffer.
#[derive(Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Writer {
        Writer::default()
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(crate) fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Raw bytes whose length the format fixes.
    pub(crate) fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// A byte string with a u16 length prefix (callers keep it under the cap
    /// their reader enforces).
    pub(crate) fn bytes16(&mut self, v: &[u8]) -> &mut Self {
        let len = u16::try_from(v.len()).expect("bytes16 callers cap lengths far below 64 KiB");
        self.u16(len).raw(v)
    }

    pub(crate) fn uuid(&mut self, v: &Uuid) -> &mut Self {
        self.raw(v.as_bytes())
    }

    pub(crate) fn user(&mut self, v: &UserId) -> &mut Self {
        self.uuid(&v.0)
    }

    pub(crate) fn workspace(&mut self, v: &WorkspaceId) -> &mut Self {
        self.uuid(&v.0)
    }

    pub(crate) fn item(&mut self, v: &ItemId) -> &mut Self {
        self.uuid(&v.0)
    }

    /// An optional parent: 0 for the workspace root, 1 then the id.
    pub(crate) fn parent(&mut self, v: &Option<ItemId>) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(id) => self.u8(1).item(id),
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads canonical encodings; every failure is [`ErrorKind::Malformed`].
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return fail(ErrorKind::Malformed);
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A boolean encoded as exactly 0 or 1.
    pub(crate) fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => fail(ErrorKind::Malformed),
        }
    }

    /// A u16-length-prefixed byte string of at most `max` bytes.
    pub(crate) fn bytes16(&mut self, max: usize) -> Result<&'a [u8]> {
        let len = usize::from(self.u16()?);
        if len > max {
            return fail(ErrorKind::Malformed);
        }
        self.take(len)
    }

    /// A u32 element count, at most `max`, and such that `count` elements
    /// of at least `min_elem_len` bytes each fit in what is left: the bound
    /// on what a caller may allocate for the list.
    pub(crate) fn count(&mut self, max: usize, min_elem_len: usize) -> Result<usize> {
        let n = usize::try_from(self.u32()?).map_err(|_| ErrorKind::Malformed)?;
        if n > max || n.saturating_mul(min_elem_len.max(1)) > self.remaining() {
            return fail(ErrorKind::Malformed);
        }
        Ok(n)
    }

    pub(crate) fn uuid(&mut self) -> Result<Uuid> {
        Ok(Uuid::from_bytes(self.array()?))
    }

    pub(crate) fn user(&mut self) -> Result<UserId> {
        Ok(UserId(self.uuid()?))
    }

    pub(crate) fn workspace(&mut self) -> Result<WorkspaceId> {
        Ok(WorkspaceId(self.uuid()?))
    }

    pub(crate) fn item(&mut self) -> Result<ItemId> {
        Ok(ItemId(self.uuid()?))
    }

    pub(crate) fn parent(&mut self) -> Result<Option<ItemId>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.item()?)),
            _ => fail(ErrorKind::Malformed),
        }
    }

    /// Succeeds only if every byte was consumed.
    pub(crate) fn finish(&self) -> Result<()> {
        if self.remaining() != 0 {
            return fail(ErrorKind::Malformed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_trailing_bytes() {
        let mut w = Writer::new();
        w.u8(7)
            .u16(300)
            .u32(70_000)
            .u64(u64::MAX)
            .i64(-5)
            .bytes16(b"abc");
        w.parent(&None).parent(&Some(ItemId(Uuid::from_u128(9))));
        let mut bytes = w.into_vec();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u16().unwrap(), 300);
        assert_eq!(r.u32().unwrap(), 70_000);
        assert_eq!(r.u64().unwrap(), u64::MAX);
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.bytes16(3).unwrap(), b"abc");
        assert_eq!(r.parent().unwrap(), None);
        assert_eq!(r.parent().unwrap(), Some(ItemId(Uuid::from_u128(9))));
        r.finish().unwrap();
        bytes.push(0);
        let mut r = Reader::new(&bytes);
        r.take(bytes.len() - 1).unwrap();
        assert_eq!(r.finish().unwrap_err().kind(), &ErrorKind::Malformed);
    }

    #[test]
    fn hostile_counts_and_lengths_are_refused() {
        // A count of 4 billion elements in a 4-byte input.
        let bytes = u32::MAX.to_le_bytes();
        assert!(Reader::new(&bytes).count(usize::MAX, 1).is_err());
        // A count within the cap but larger than the bytes could hold.
        let mut w = Writer::new();
        w.u32(3).raw(&[0; 5]);
        assert!(Reader::new(w.as_slice()).count(10, 2).is_err());
        // A byte string over its cap.
        let mut w = Writer::new();
        w.bytes16(&[1; 10]);
        assert!(Reader::new(w.as_slice()).bytes16(9).is_err());
        assert!(Reader::new(&[2]).bool().is_err());
        assert!(Reader::new(&[2]).parent().is_err());
    }
}
