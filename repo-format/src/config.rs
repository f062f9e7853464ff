//! The repository `config` file: unencrypted (a keyless host must read it),
//! sealed with a BLAKE3 checksum.
//!
//! ```text
//! magic("config") 8 | version u16 = 1 | repository id 16 | created i64
//! | encryption u8 (0 none, 1 AES-256-GCM) | chunk size u32 | zstd level i32
//! | BLAKE3 of all preceding bytes 32
//! ```

use crate::codec::{self, Reader, Writer};
use crate::{magic, manifest, FormatError};

/// The only config version this build reads and writes.
pub const VERSION: u16 = 1;

/// How blobs are protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encryption {
    None = 0,
    Aes256Gcm = 1,
}

/// The parsed config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoConfig {
    pub id: [u8; 16],
    pub created: i64,
    pub encryption: Encryption,
    /// Default chunk size for new disk lineages.
    pub chunk_size: u32,
    /// zstd level (0 = store uncompressed).
    pub zstd_level: i32,
}

impl RepoConfig {
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        codec::header(&mut w, magic::CONFIG, VERSION);
        w.raw(&self.id)
            .i64(self.created)
            .u8(self.encryption as u8)
            .u32(self.chunk_size)
            .i32(self.zstd_level);
        codec::seal(w)
    }

    pub fn decode(data: &[u8]) -> Result<Self, FormatError> {
        // The version is checked before the checksum so that a config from a
        // newer vmkeep gets "upgrade vmkeep", not "damaged".
        let mut r = Reader::new("repository config", data);
        r.header(magic::CONFIG, VERSION)?;
        let body = codec::unseal("repository config", data)?;
        let mut r = Reader::new("repository config", body);
        r.header(magic::CONFIG, VERSION)?;
        let id = r.array()?;
        let created = r.i64()?;
        let encryption = match r.u8()? {
            0 => Encryption::None,
            1 => Encryption::Aes256Gcm,
            e => {
                return Err(FormatError::malformed(
                    "repository config",
                    format!("encryption {e}"),
                ))
            }
        };
        let chunk_size = r.u32()?;
        manifest::check_chunk_size(chunk_size)?;
        let zstd_level = r.i32()?;
        if !(0..=22).contains(&zstd_level) {
            return Err(FormatError::malformed(
                "repository config",
                format!("zstd level {zstd_level}"),
            ));
        }
        r.end()?;
        Ok(RepoConfig {
            id,
            created,
            encryption,
            chunk_size,
            zstd_level,
        })
    }
}
