//! Fuzzes `Manifest::decode`: never panics; whatever decodes satisfies the
//! manifest invariants and re-encodes to exactly the input.
//! The first input byte is a mode (bit 0: prefix a valid magic and version).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmkeep_format::magic;
use vmkeep_format::manifest::{check_chunk_size, Manifest, ManifestPage};
use vmkeep_format::ObjectId;

fuzz_target!(|input: &[u8]| {
    // Mode bit 0 supplies a valid magic and version, so the fields are
    // reached without the fuzzer having to guess the 8-byte magic.
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let mut data = Vec::with_capacity(rest.len() + 10);
    if mode & 1 != 0 {
        data.extend_from_slice(&magic::magic(magic::MANIFEST));
        data.extend_from_slice(&1u16.to_le_bytes());
    }
    data.extend_from_slice(rest);
    let data = &data[..];
    let Ok(m) = Manifest::decode(data) else {
        return;
    };
    assert_eq!(m.encode(), data);
    assert!(check_chunk_size(m.chunk_size).is_ok());
    let slots = m.slot_count();
    assert_eq!(slots, m.capacity.div_ceil(m.chunk_size as u64));
    assert_eq!(
        m.pages.len() as u64,
        slots.div_ceil(m.entries_per_page as u64)
    );
    let mut covered = 0u64;
    for p in 0..m.pages.len() {
        let n = m.page_len(p);
        assert!(n >= 1 && n <= m.entries_per_page as usize);
        if p + 1 < m.pages.len() {
            assert_eq!(n, m.entries_per_page as usize);
        }
        covered += n as u64;
    }
    assert_eq!(covered, slots);
    if let Some(last) = m.pages.len().checked_sub(1) {
        let n = m.page_len(last);
        let page = ManifestPage {
            entries: vec![ObjectId::ZERO; n],
        };
        assert!(m.check_page(last, &page).is_ok());
        if slots > 0 {
            assert!(m.slot_len(slots - 1) >= 1);
        }
    }
});
