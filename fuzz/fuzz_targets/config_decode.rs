//! Fuzzes `RepoConfig::decode`. The first input byte picks a mode: bit 0
//! appends a valid checksum and bit 1 prefixes a valid magic and version,
//! so the fields behind the header and the seal are reached. Never panics; whatever decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmkeep_format::config::RepoConfig;
use vmkeep_format::magic;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, data)) = input.split_first() else {
        return;
    };
    let mut b = Vec::with_capacity(data.len() + 42);
    if mode & 2 != 0 {
        b.extend_from_slice(&magic::magic(magic::CONFIG));
        b.extend_from_slice(&1u16.to_le_bytes());
    }
    b.extend_from_slice(data);
    if mode & 1 != 0 {
        let sum = blake3::hash(&b);
        b.extend_from_slice(sum.as_bytes());
    }
    if let Ok(c) = RepoConfig::decode(&b) {
        assert_eq!(c.encode(), b);
        assert!((0..=22).contains(&c.zstd_level));
    }
});
