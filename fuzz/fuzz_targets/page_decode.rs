//! Fuzzes `ManifestPage::decode`: never panics, and whatever decodes
//! re-encodes to exactly the input (the encoding is canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmkeep_format::manifest::{ManifestPage, MAX_ENTRIES_PER_PAGE};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = ManifestPage::decode(data) {
        assert!(!p.entries.is_empty());
        assert!(p.entries.len() <= MAX_ENTRIES_PER_PAGE as usize);
        assert_eq!(p.encode(), data);
    }
});
