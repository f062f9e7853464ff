//! Key slots: files `keys/<slot id>` that each hold the master key wrapped
//! by a key derived from one password with Argon2id. Any slot opens the
//! repository; adding or removing a password adds or removes a slot.
//!
//! ```text
//! magic("key") 8 | version u16 = 1 | slot id 8 | created i64 | label str
//! | kdf u8 (1 = Argon2id v0x13) | memory KiB u32 | iterations u32
//! | lanes u32 | salt 16 | nonce 12 | wrapped key: 64 + 16 tag bytes
//! | BLAKE3 of all preceding bytes 32
//! ```
//! Wrapping: AES-256-GCM, key = Argon2id(password, salt) (32 bytes),
//! associated data = "vmkeep key slot v1" ‖ repository id ‖ slot id, so a
//! slot cannot be moved to another repository.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::codec::{self, Reader, Writer};
use crate::{magic, FormatError, MasterKey};

pub const VERSION: u16 = 1;
const KDF_ARGON2ID: u8 = 1;
const KIND: &str = "key slot";

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub lanes: u32,
}

impl Default for KdfParams {
    /// RFC 9106's second recommended option: 64 MiB, 3 passes, 4 lanes.
    /// Lanes are computed in parallel (one per core, up to 4).
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            lanes: 4,
        }
    }
}

/// One key slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySlot {
    pub slot_id: [u8; 8],
    pub created: i64,
    /// Who added it (user@host) and an optional note.
    pub label: String,
    pub kdf: KdfParams,
    pub salt: [u8; 16],
    pub nonce: [u8; 12],
    pub wrapped: [u8; 80],
}

fn derive(password: &[u8], salt: &[u8; 16], p: KdfParams) -> Result<[u8; 32], FormatError> {
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.lanes, Some(32))
        .map_err(|e| FormatError::Kdf(e.to_string()))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    a.hash_password_into(password, salt, &mut out)
        .map_err(|e| FormatError::Kdf(e.to_string()))?;
    Ok(out)
}

fn aad(repo_id: &[u8; 16], slot_id: &[u8; 8]) -> Vec<u8> {
    let mut a = b"vmkeep key slot v1".to_vec();
    a.extend_from_slice(repo_id);
    a.extend_from_slice(slot_id);
    a
}

impl KeySlot {
    /// Wraps `key` under `password` with fresh salt, nonce and slot id.
    pub fn create(
        key: &MasterKey,
        password: &[u8],
        repo_id: &[u8; 16],
        kdf: KdfParams,
        label: String,
        created: i64,
    ) -> Result<Self, FormatError> {
        let mut slot_id = [0u8; 8];
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 12];
        for b in [&mut slot_id[..], &mut salt[..], &mut nonce[..]] {
            getrandom::getrandom(b).expect("operating system random source failed");
        }
        let kek = derive(password, &salt, kdf)?;
        let c = Aes256Gcm::new(&kek.into());
        let ct = c
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: key.as_bytes(),
                    aad: &aad(repo_id, &slot_id),
                },
            )
            .expect("AES-GCM encryption of 64 bytes cannot fail");
        let wrapped: [u8; 80] = ct.try_into().expect("64 + 16 bytes");
        Ok(KeySlot {
            slot_id,
            created,
            label,
            kdf,
            salt,
            nonce,
            wrapped,
        })
    }

    /// The slot id as 16 hex digits (also the file name).
    pub fn id_hex(&self) -> String {
        hex::encode(self.slot_id)
    }

    /// Unwraps the master key; [`FormatError::WrongPassword`] when the
    /// password does not open this slot.
    pub fn open(&self, password: &[u8], repo_id: &[u8; 16]) -> Result<MasterKey, FormatError> {
        let kek = derive(password, &self.salt, self.kdf)?;
        let c = Aes256Gcm::new(&kek.into());
        let pt = c
            .decrypt(
                &Nonce::from(self.nonce),
                Payload {
                    msg: &self.wrapped,
                    aad: &aad(repo_id, &self.slot_id),
                },
            )
            .map_err(|_| FormatError::WrongPassword)?;
        let bytes: [u8; 64] = pt
            .try_into()
            .map_err(|_| FormatError::malformed(KIND, "unwrapped key is not 64 bytes"))?;
        Ok(MasterKey::from_bytes(bytes))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        codec::header(&mut w, magic::KEY, VERSION);
        w.raw(&self.slot_id)
            .i64(self.created)
            .str(&self.label)
            .u8(KDF_ARGON2ID)
            .u32(self.kdf.memory_kib)
            .u32(self.kdf.iterations)
            .u32(self.kdf.lanes)
            .raw(&self.salt)
            .raw(&self.nonce)
            .raw(&self.wrapped);
        codec::seal(w)
    }

    pub fn decode(data: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(KIND, data);
        r.header(magic::KEY, VERSION)?;
        let body = codec::unseal(KIND, data)?;
        let mut r = Reader::new(KIND, body);
        r.header(magic::KEY, VERSION)?;
        let slot_id = r.array()?;
        let created = r.i64()?;
        let label = r.str()?;
        let kdf_alg = r.u8()?;
        if kdf_alg != KDF_ARGON2ID {
            return Err(FormatError::malformed(
                KIND,
                format!("unknown KDF {kdf_alg}"),
            ));
        }
        let kdf = KdfParams {
            memory_kib: r.u32()?,
            iterations: r.u32()?,
            lanes: r.u32()?,
        };
        // Refuse absurd costs from a hostile file before running Argon2.
        if kdf.memory_kib > 4 << 20 || kdf.iterations > 1000 || kdf.lanes == 0 || kdf.lanes > 64 {
            return Err(FormatError::malformed(
                KIND,
                format!("KDF parameters {kdf:?}"),
            ));
        }
        let salt = r.array()?;
        let nonce = r.array()?;
        let wrapped = r.array()?;
        r.end()?;
        Ok(KeySlot {
            slot_id,
            created,
            label,
            kdf,
            salt,
            nonce,
            wrapped,
        })
    }
}
