//! Static linking of Debian's RocksDB. When `.cargo/config.toml` sets
//! `ROCKSDB_STATIC`, `librocksdb-sys` links `librocksdb.a` instead of the
//! shared library, and the libraries the shared one would have pulled in
//! must be named here: snappy (RocksDB's default block compression), lz4,
//! bzip2 and zlib, all from packages `librocksdb-dev` depends on. zstd is
//! not listed: the `zstd` crate already links its own copy, and RocksDB
//! only calls zstd's stable API. gflags is not needed by the library.
//!
//! The C++ runtime stays shared (`librocksdb-sys` links `-lstdc++`): a
//! static copy would be exported from the executable to the C++ VDDK
//! library that `vddk-sys` loads at run time, mixing two runtimes.
//!
//! Why: each shared library is a file to open and map at start-up; with a
//! cold page cache the seven that `librocksdb.so` adds cost about 18 ms of
//! every `vmkeep` run (README, Performance).
//!
//! `-bundle` leaves the archives out of the engine's rlib, so the linker
//! meets them with the other native libraries after all Rust code.
fn main() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_STATIC");
    if std::env::var_os("ROCKSDB_STATIC").is_some() {
        for lib in ["snappy", "lz4", "bz2", "z"] {
            println!("cargo:rustc-link-lib=static:-bundle={lib}");
        }
    }
}
