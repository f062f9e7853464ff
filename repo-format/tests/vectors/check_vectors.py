#!/usr/bin/env python3
"""Independent check of the known-answer vectors in this directory.

Re-derives from SPEC.md alone (with the Python `blake3` and `cryptography`
packages, no Rust code) the object ids, the full bytes of the stored
(incompressible) encrypted chunk, the authentication of every encrypted
blob (AAD = header || id), the seals, and the key slot unwrap (Argon2id +
AES-256-GCM). Prints the ids that `known_answers.rs` holds as literals.
Run: python3 repo-format/tests/vectors/check_vectors.py
"""
import os
import struct
import sys

import blake3
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

HERE = os.path.dirname(os.path.abspath(__file__))
MASTER = bytes(range(64))
ID_KEY, DATA_KEY = MASTER[:32], MASTER[32:]
REPO_ID = bytes(range(0xA0, 0xB0))
PASSWORD = b"correct horse battery staple"


def vec(name):
    with open(os.path.join(HERE, name)) as f:
        return bytes.fromhex("".join(f.read().split()))


def magic(kind):
    return blake3.blake3(f"vmkeep {kind} v1".encode()).digest()[:8]


def nonce(n):
    return bytes((n + i) & 0xFF for i in range(12))


def keyed_id(data):
    return blake3.blake3(data, key=ID_KEY).digest()


compressible = b"vmkeep known-answer chunk 0123456789\n" * 56
incompressible = blake3.blake3(b"vmkeep kat incompressible").digest(length=300)


def check_blob(name, ty, plain, encrypted, nonce_n):
    b = vec(name)
    assert b[:8] == magic("blob"), name
    version, btype, flags, reserved, plen, n = struct.unpack_from("<BBBBII", b, 8)
    assert (version, btype, reserved) == (1, ty, 0), name
    assert plen == len(plain), name
    assert len(b) == 32 + n + 32, name
    assert blake3.blake3(b[:-32]).digest() == b[-32:], name + ": checksum"
    assert bool(flags & 2) == encrypted, name
    oid = keyed_id(plain) if encrypted else blake3.blake3(plain).digest()
    payload = b[32 : 32 + n]
    if encrypted:
        assert b[20:32] == nonce(nonce_n), name
        body = AESGCM(DATA_KEY).decrypt(b[20:32], payload, b[:32] + oid)
    else:
        assert b[20:32] == bytes(12), name
        body = payload
    if not flags & 1:
        assert body == plain, name
    else:
        assert body[:4] == bytes.fromhex("28b52ffd"), name + ": zstd frame magic"
        assert len(body) < len(plain), name
    return b, flags


ok = []
_, f = check_blob("chunk_compressible_encrypted.hex", 1, compressible, True, 0x10)
assert f == 3
b, f = check_blob("chunk_incompressible_encrypted.hex", 1, incompressible, True, 0x20)
assert f == 2
# Rebuild the stored encrypted chunk byte for byte.
hdr = magic("blob") + bytes([1, 1, 2, 0]) + struct.pack("<II", 300, 316) + nonce(0x20)
ct = AESGCM(DATA_KEY).encrypt(nonce(0x20), incompressible, hdr + keyed_id(incompressible))
full = hdr + ct
full += blake3.blake3(full).digest()
assert full == b, "incompressible encrypted chunk differs from an independent encoding"
_, f = check_blob("chunk_unencrypted.hex", 1, compressible, False, 0)
assert f == 1
check_blob("manifest_page_blob.hex", 2, vec("manifest_page.hex"), True, 0x40)
check_blob("manifest_blob.hex", 3, vec("manifest.hex"), True, 0x50)
check_blob("generation_blob.hex", 4, vec("generation.hex"), True, 0x60)

# Documents: magic and version.
for name, kind in [
    ("manifest_page.hex", "manifest page"),
    ("manifest.hex", "manifest"),
    ("generation.hex", "generation"),
    ("config.hex", "config"),
    ("keyslot.hex", "key"),
]:
    d = vec(name)
    assert d[:8] == magic(kind) and d[8:10] == b"\x01\x00", name

# Config: every field, and the seal.
c = vec("config.hex")
assert blake3.blake3(c[:-32]).digest() == c[-32:]
rid, created, enc, cs, lvl = struct.unpack_from("<16sqBIi", c, 10)
assert (rid, created, enc, cs, lvl) == (REPO_ID, 1_700_000_000, 1, 1 << 20, 3)
assert len(c) == 10 + 33 + 32

# Key slot: parse, derive the KEK with Argon2id, unwrap the master key.
k = vec("keyslot.hex")
assert blake3.blake3(k[:-32]).digest() == k[-32:]
slot_id = k[10:18]
(created,) = struct.unpack_from("<q", k, 18)
(llen,) = struct.unpack_from("<I", k, 26)
label = k[30 : 30 + llen].decode()
p = 30 + llen
kdf, mem, iters, lanes = struct.unpack_from("<BIII", k, p)
p += 13
salt, nonce_k, wrapped = k[p : p + 16], k[p + 16 : p + 28], k[p + 28 : p + 108]
assert p + 108 + 32 == len(k)
assert (created, label, kdf, mem, iters, lanes) == (1_700_000_000, "kat@vmkeep", 1, 64, 1, 1)
kek = Argon2id(salt=salt, length=32, iterations=iters, lanes=lanes, memory_cost=mem).derive(
    PASSWORD
)
aad = b"vmkeep key slot v1" + REPO_ID + slot_id
assert AESGCM(kek).decrypt(nonce_k, wrapped, aad) == MASTER, "key slot unwrap"

print("KEYED_ID_COMPRESSIBLE  ", keyed_id(compressible).hex())
print("UNKEYED_ID_COMPRESSIBLE", blake3.blake3(compressible).hexdigest())
print("KEYED_ID_INCOMPRESSIBLE", keyed_id(incompressible).hex())
print("all vectors check out", file=sys.stderr)
