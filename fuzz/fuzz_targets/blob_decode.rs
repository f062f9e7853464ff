//! Fuzzes the blob codec. The first input byte picks a mode: bit 0 reseals
//! the rest (sets the payload length and recomputes the keyless checksum)
//! so that decryption, decompression and the length and id checks are
//! reached; bit 1 instead uses the rest as a plaintext to encode, which
//! must decode back to itself under both codecs; bit 2 prefixes a valid
//! magic and version byte. Bits 4-5 pick the expected blob type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmkeep_format::blob::{self, BlobType, Codec};
use vmkeep_format::{magic, MasterKey, ObjectId};

fuzz_target!(|input: &[u8]| {
    let Some((&mode, data)) = input.split_first() else {
        return;
    };
    let plain = Codec::plain(3);
    let enc = Codec::encrypted(&MasterKey::from_bytes([7; 64]), 3);
    let ty = BlobType::from_u8(((mode >> 4) & 3) + 1).unwrap_or(BlobType::Chunk);
    let id = ObjectId(*blake3::hash(b"vmkeep fuzz id").as_bytes());

    if mode & 2 != 0 {
        for c in [&plain, &enc] {
            let id = c.id(data);
            let b = c.encode(ty, &id, data);
            let h = blob::check(&b).expect("fresh blob passes check");
            assert_eq!(h.plain_len, data.len());
            assert_eq!(h.payload_len + 64, b.len());
            assert_eq!(c.decode(ty, &id, &b).expect("fresh blob decodes"), data);
        }
        return;
    }

    let mut b = Vec::with_capacity(data.len() + 41);
    if mode & 4 != 0 {
        b.extend_from_slice(&magic::magic(magic::BLOB));
        b.push(blob::VERSION);
    }
    b.extend_from_slice(data);
    if mode & 1 != 0 {
        if b.len() < 32 {
            return;
        }
        let n = (b.len() - 32) as u32;
        b[16..20].copy_from_slice(&n.to_le_bytes());
        b.extend_from_slice(blake3::hash(&b).as_bytes());
    }
    if let Ok(h) = blob::check(&b) {
        assert_eq!(h.payload_len + 64, b.len());
        assert!(h.plain_len <= blob::MAX_PLAINTEXT);
    }
    for c in [&plain, &enc] {
        if let Ok(p) = c.decode(ty, &id, &b) {
            // Only reachable with a BLAKE3 preimage: decode must never
            // return data that does not hash to the id.
            assert_eq!(c.id(&p), id);
        }
    }
});
