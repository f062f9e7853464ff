//! Fuzzes `RepoConfig::decode`. The first input byte picks a mode: bit 0
//! appends a valid checksum to the rest, so the fields behind the seal are
//! reached. Never panics; whatever decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmkeep_format::config::RepoConfig;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, data)) = input.split_first() else {
        return;
    };
    let mut b = data.to_vec();
    if mode & 1 != 0 {
        b.extend_from_slice(blake3::hash(data).as_bytes());
    }
    if let Ok(c) = RepoConfig::decode(&b) {
        assert_eq!(c.encode(), b);
        assert!((0..=22).contains(&c.zstd_level));
    }
});
