//! Hashing and dedup, on the session's workers: a read slot is tested for
//! all zeros, hashed (keyed BLAKE3, SPEC.md §5.3), looked up, and only a
//! chunk not yet stored is compressed and encrypted.
//!
//! Invariant: a chunk that hashes to the reserved all-zero id is refused,
//! never stored (SPEC.md §5.3).

use vmkeep_format::blob::BlobType;
use vmkeep_format::ObjectId;

use super::{Done, Run, Work};
use crate::pipeline::is_zero;
use crate::{Error, Result};

/// Turns one work item into its result.
pub(super) fn work(sh: &Run, w: Work) -> Result<Done> {
    Ok(match w {
        Work::Fixed { entries, reused } => Done::Fixed { entries, reused },
        Work::Read { buf } => {
            let read = buf.len() as u64;
            if is_zero(&buf) {
                return Ok(Done::Slot {
                    slot_len: read,
                    id: ObjectId::ZERO,
                    new_blob: None,
                    read,
                });
            }
            let codec = sh.session.repo().codec();
            let id = codec.id(&buf);
            if id.is_zero() {
                return Err(Error::Invalid(
                    "a chunk hashed to the reserved all-zero id".into(),
                ));
            }
            let new_blob = if sh.session.is_stored(BlobType::Chunk, &id)? {
                None
            } else {
                Some((codec.encode(BlobType::Chunk, &id, &buf), buf.len() as u32))
            };
            Done::Slot {
                slot_len: read,
                id,
                new_blob,
                read,
            }
        }
    })
}
