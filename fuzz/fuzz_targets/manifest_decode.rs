//! Fuzzes `Manifest::decode`: never panics; whatever decodes satisfies the
//! manifest invariants and re-encodes to exactly the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmkeep_format::manifest::{check_chunk_size, Manifest, ManifestPage};
use vmkeep_format::ObjectId;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Manifest::decode(data) else {
        return;
    };
    assert_eq!(m.encode(), data);
    assert!(check_chunk_size(m.chunk_size).is_ok());
    let slots = m.slot_count();
    assert_eq!(slots, m.capacity.div_ceil(m.chunk_size as u64));
    assert_eq!(m.pages.len() as u64, slots.div_ceil(m.entries_per_page as u64));
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
