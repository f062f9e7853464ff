//! Fuzzes `Generation::decode`: never panics, and whatever decodes
//! re-encodes to exactly the input (the encoding is canonical).
//! The first input byte is a mode (bit 0: prefix a valid magic and version).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmkeep_format::generation::Generation;
use vmkeep_format::magic;

fuzz_target!(|input: &[u8]| {
    // Mode bit 0 supplies a valid magic and version, so the fields are
    // reached without the fuzzer having to guess the 8-byte magic.
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let mut data = Vec::with_capacity(rest.len() + 10);
    if mode & 1 != 0 {
        data.extend_from_slice(&magic::magic(magic::GENERATION));
        data.extend_from_slice(&1u16.to_le_bytes());
    }
    data.extend_from_slice(rest);
    let data = &data[..];
    if let Ok(g) = Generation::decode(data) {
        assert_eq!(g.encode(), data);
    }
});
