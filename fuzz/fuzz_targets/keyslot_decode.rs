//! Fuzzes `KeySlot::decode`. The first input byte picks a mode: bit 0
//! appends a valid checksum and bit 1 prefixes a valid magic and version,
//! so the fields behind the header and the seal are reached. Never panics; whatever decodes re-encodes to the same bytes, and
//! a slot with cheap KDF costs can be opened without panicking (a wrong
//! password gives an error).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmkeep_format::keyfile::KeySlot;
use vmkeep_format::magic;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, data)) = input.split_first() else {
        return;
    };
    let mut b = Vec::with_capacity(data.len() + 42);
    if mode & 2 != 0 {
        b.extend_from_slice(&magic::magic(magic::KEY));
        b.extend_from_slice(&1u16.to_le_bytes());
    }
    b.extend_from_slice(data);
    if mode & 1 != 0 {
        let sum = blake3::hash(&b);
        b.extend_from_slice(sum.as_bytes());
    }
    let Ok(s) = KeySlot::decode(&b) else {
        return;
    };
    assert_eq!(s.encode(), b);
    let k = s.kdf;
    assert!(k.lanes >= 1 && k.lanes <= 64 && k.iterations <= 1000);
    if k.memory_kib <= 256 && k.iterations <= 2 {
        // Random wrapped bytes never authenticate.
        assert!(s.open(b"fuzz", &[0; 16]).is_err());
    }
});
