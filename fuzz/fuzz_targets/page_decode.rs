//! Fuzzes `ManifestPage::decode`: never panics, and whatever decodes
//! re-encodes to exactly the input (the encoding is canonical).
//! The first input byte is a mode (bit 0: prefix a valid magic and version).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmkeep_format::magic;
use vmkeep_format::manifest::{ManifestPage, MAX_ENTRIES_PER_PAGE};

fuzz_target!(|input: &[u8]| {
    // Mode bit 0 supplies a valid magic and version, so the fields are
    // reached without the fuzzer having to guess the 8-byte magic.
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let mut data = Vec::with_capacity(rest.len() + 10);
    if mode & 1 != 0 {
        data.extend_from_slice(&magic::magic(magic::MANIFEST_PAGE));
        data.extend_from_slice(&1u16.to_le_bytes());
    }
    data.extend_from_slice(rest);
    let data = &data[..];
    if let Ok(p) = ManifestPage::decode(data) {
        assert!(!p.entries.is_empty());
        assert!(p.entries.len() <= MAX_ENTRIES_PER_PAGE as usize);
        assert_eq!(p.encode(), data);
    }
});
