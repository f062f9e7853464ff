//! Little-endian field codec shared by every document: fixed-width integers,
//! `bytes` as a u32 length followed by the bytes, `str` as `bytes` holding
//! UTF-8. The [`Reader`] never panics: every read is bounds-checked and a
//! short input becomes [`FormatError::Truncated`].

use crate::FormatError;

/// Appends fields to a byte vector.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        let len = u32::try_from(v.len()).expect("field longer than 4 GiB");
        self.u32(len).raw(v)
    }
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads fields from a byte slice, naming `kind` in its errors.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    kind: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(kind: &'static str, data: &'a [u8]) -> Self {
        Reader { data, pos: 0, kind }
    }
    pub fn kind(&self) -> &'static str {
        self.kind
    }
    pub fn pos(&self) -> usize {
        self.pos
    }
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.remaining() < n {
            return Err(FormatError::Truncated {
                kind: self.kind,
                offset: self.pos,
                needed: n - self.remaining(),
            });
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn i32(&mut self) -> Result<i32, FormatError> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, FormatError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], FormatError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn str(&mut self) -> Result<String, FormatError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec())
            .map_err(|_| FormatError::malformed(self.kind, "string field is not UTF-8"))
    }
    /// Checks the 8-byte magic and a u16 version that must equal `supported`.
    pub fn header(&mut self, magic_kind: &'static str, supported: u16) -> Result<(), FormatError> {
        let m = self.array::<8>()?;
        if m != crate::magic::magic(magic_kind) {
            return Err(FormatError::BadMagic {
                kind: self.kind,
                found: hex::encode(m),
            });
        }
        let v = self.u16()?;
        if v != supported {
            return Err(FormatError::UnsupportedVersion {
                kind: self.kind,
                found: v as u32,
                supported: supported as u32,
            });
        }
        Ok(())
    }
    /// Fails unless every byte was consumed.
    pub fn end(&self) -> Result<(), FormatError> {
        if self.remaining() != 0 {
            return Err(FormatError::malformed(
                self.kind,
                format!("{} trailing bytes", self.remaining()),
            ));
        }
        Ok(())
    }
}

/// Writes the 8-byte magic and u16 version that start every document.
pub fn header(w: &mut Writer, magic_kind: &str, version: u16) {
    w.raw(&crate::magic::magic(magic_kind)).u16(version);
}

/// Appends the BLAKE3 checksum of everything written so far.
pub fn seal(mut w: Writer) -> Vec<u8> {
    let sum = blake3::hash(&w.buf);
    w.raw(sum.as_bytes());
    w.finish()
}

/// Splits off and checks a trailing 32-byte BLAKE3 checksum.
pub fn unseal<'a>(kind: &'static str, data: &'a [u8]) -> Result<&'a [u8], FormatError> {
    if data.len() < 32 {
        return Err(FormatError::Truncated {
            kind,
            offset: 0,
            needed: 32 - data.len(),
        });
    }
    let (body, sum) = data.split_at(data.len() - 32);
    if blake3::hash(body).as_bytes() != sum {
        return Err(FormatError::ChecksumMismatch { kind });
    }
    Ok(body)
}
