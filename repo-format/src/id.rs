//! Object ids: 32 bytes, shown as 64 lowercase hex digits. The all-zero id
//! is reserved: in a manifest page it means "this slot reads as zeros".

use std::fmt;

use crate::FormatError;

/// The id of a stored object (chunk, manifest page, manifest, generation).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ObjectId(pub [u8; 32]);

impl ObjectId {
    /// The reserved "zero slot" id.
    pub const ZERO: ObjectId = ObjectId([0u8; 32]);

    /// True for the reserved all-zero id.
    pub fn is_zero(&self) -> bool {
        self.0 == [0u8; 32]
    }

    /// 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, for display.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    /// Parse exactly 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, FormatError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| FormatError::malformed("object id", format!("{s:?}: {e}")))?;
        Ok(ObjectId(out))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let id = ObjectId([0xab; 32]);
        assert_eq!(ObjectId::from_hex(&id.to_hex()).unwrap(), id);
        assert!(ObjectId::from_hex("abc").is_err());
        assert!(ObjectId::from_hex(&"zz".repeat(32)).is_err());
        assert!(ObjectId::ZERO.is_zero());
        assert_eq!(id.short(), "abababab");
    }
}
