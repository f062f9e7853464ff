//! Magic numbers: the first 8 bytes of every binary file are the first 8
//! bytes of the unkeyed BLAKE3 hash of the ASCII string `"vmkeep <kind> v1"`
//! (SPEC.md §3). The kind strings below are normative.

/// Kind strings, one per file type.
pub const BLOB: &str = "blob";
pub const CONFIG: &str = "config";
pub const KEY: &str = "key";
pub const MANIFEST: &str = "manifest";
pub const MANIFEST_PAGE: &str = "manifest page";
pub const GENERATION: &str = "generation";

/// The 8-byte magic of `kind`.
pub fn magic(kind: &str) -> [u8; 8] {
    let h = blake3::hash(format!("vmkeep {kind} v1").as_bytes());
    let mut m = [0u8; 8];
    m.copy_from_slice(&h.as_bytes()[..8]);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers (computed independently with the Python `blake3`
    /// package); they are written in SPEC.md and must never change.
    #[test]
    fn magic_known_answers() {
        let want = [
            (BLOB, "cecbf068de7a7552"),
            (CONFIG, "90f5585c57c56921"),
            (KEY, "1ebe4eb58ba154e7"),
            (MANIFEST, "12603ce500270957"),
            (MANIFEST_PAGE, "624f99dbb6745606"),
            (GENERATION, "655e7a03de3856f1"),
        ];
        for (kind, hexv) in want {
            assert_eq!(hex::encode(magic(kind)), hexv, "magic of {kind:?}");
        }
    }
}
