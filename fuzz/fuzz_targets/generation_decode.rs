//! Fuzzes `Generation::decode`: never panics, and whatever decodes
//! re-encodes to exactly the input (the encoding is canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmkeep_format::generation::Generation;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = Generation::decode(data) {
        assert_eq!(g.encode(), data);
    }
});
