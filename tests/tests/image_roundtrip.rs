//! End-to-end tests of the `vmkeep` command line on local disk images
//! (issue 2, "Tests that must exist"): byte-identical restores of images
//! made with `qemu-img` and `mke2fs -d`, incremental backups from a
//! changed-areas list, dedup of repeated backups, restore of older
//! generations, agreement of the three read modes, `stats`, `key` and
//! `index` commands. Every comparison is byte for byte and also by `cmp`.

use std::path::Path;

use serde_json::Value;
use vmkeep_tests::cli::*;

const MIB: u64 = 1 << 20;
const K64: u64 = 64 << 10;

/// A number field of a JSON document.
#[track_caller]
fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {key:?} in {v}"))
}

/// A string field of a JSON document.
#[track_caller]
fn st<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {v}"))
}

/// Writes random data (seeded) at each `(offset, length)`.
fn scribble(path: &Path, seed: u64, areas: &[(u64, u64)]) {
    for (i, (o, l)) in areas.iter().enumerate() {
        write_at(path, *o, &random_bytes(seed * 1000 + i as u64, *l as usize));
    }
}

/// Number of distinct `cs`-sized slots the areas touch.
fn slots_touched(areas: &[(u64, u64)], cs: u64) -> u64 {
    let mut slots: Vec<u64> = areas
        .iter()
        .flat_map(|(o, l)| o / cs..=(o + l - 1) / cs)
        .collect();
    slots.dedup();
    slots.len() as u64
}

#[test]
fn qemu_img_sparse_raw_image_restores_byte_identical() {
    let rig = Rig::new("1M");
    let img = rig.path("disk.raw");
    qemu_img_create(&img, 48 * MIB, "off");
    // Data crossing slot boundaries, unaligned, text and random, with holes.
    scribble(
        &img,
        1,
        &[
            (0, 4096),
            (MIB - 100, 300),
            (5 * MIB + 17, 3 * MIB),
            (47 * MIB, MIB),
        ],
    );
    write_at(&img, 20 * MIB, &text_bytes(2, 2 * MIB as usize));
    let b = rig.backup(&img, "d1", &[]);
    assert_eq!(n(&b, "capacity"), 48 * MIB);
    assert_eq!(n(&b["disks"][0], "chunk_size"), MIB);
    assert!(n(&b, "zero_slots") >= 35, "{b}");
    assert!(
        n(&b, "read_bytes") < 48 * MIB,
        "sparse read read everything: {b}"
    );

    let to = rig.restore(st(&b, "generation"));
    assert_same(&to, &img);
    // Zero slots stay holes in the restored file.
    use std::os::unix::fs::MetadataExt;
    let used = std::fs::metadata(&to).unwrap().blocks() * 512;
    assert!(
        used < 16 * MIB,
        "restored file uses {used} bytes: zero slots were written"
    );
    rig.assert_restores("latest", &img);
    rig.assert_restores(&st(&b, "generation")[..8], &img);
}

#[test]
fn qemu_img_preallocated_raw_image_restores_byte_identical() {
    let rig = Rig::new("64K");
    let img = rig.path("full.raw");
    qemu_img_create(&img, 12 * MIB, "full");
    scribble(
        &img,
        3,
        &[(12345, 70_000), (4 * MIB, 2 * MIB), (12 * MIB - 1, 1)],
    );
    let b = rig.backup(&img, "prealloc", &["--read-mode", "full"]);
    assert_eq!(n(&b, "read_bytes"), 12 * MIB);
    assert_eq!(n(&b, "data_slots") + n(&b, "zero_slots"), 12 * MIB / K64);
    rig.assert_restores("latest", &img);
}

#[test]
fn image_not_a_multiple_of_the_chunk_size_restores_byte_identical() {
    let rig = Rig::new("64K");
    let img = rig.path("odd.raw");
    let len = 3 * MIB + 12_345;
    sparse_file(&img, len);
    scribble(&img, 4, &[(0, 1000), (2 * MIB, MIB + 12_345)]);
    let b = rig.backup(&img, "odd", &[]);
    assert_eq!(n(&b, "capacity"), len);
    assert_eq!(n(&b, "data_slots") + n(&b, "zero_slots"), len.div_ceil(K64));
    rig.assert_restores("latest", &img);
    // An incremental touching only the short last slot.
    write_at(&img, len - 10, b"0123456789");
    let cbt = rig.path("odd.cbt");
    write_areas(&cbt, &[(len - 10, 10)]);
    let i = rig.backup(
        &img,
        "odd",
        &["--parent", "latest", "--changed-areas", s(&cbt)],
    );
    assert_eq!(n(&i, "read_bytes"), len % K64, "{i}");
    rig.assert_restores(st(&i, "generation"), &img);
}

#[test]
fn ext4_image_from_mke2fs_restores_byte_identical() {
    let rig = Rig::new("64K");
    let tree = rig.path("tree");
    std::fs::create_dir_all(tree.join("etc/deep/er")).unwrap();
    let big = random_bytes(5, 3 * MIB as usize + 777);
    std::fs::write(tree.join("big.bin"), &big).unwrap();
    std::fs::write(tree.join("etc/notes.txt"), text_bytes(6, 300_000)).unwrap();
    std::fs::write(tree.join("etc/deep/er/small"), b"hello, vmkeep\n").unwrap();
    std::os::unix::fs::symlink("etc/notes.txt", tree.join("link")).unwrap();
    let img = rig.path("ext4.img");
    tool(
        "mke2fs",
        "e2fsprogs",
        &["-q", "-F", "-t", "ext4", "-d", s(&tree), s(&img), "64M"],
    );
    assert_eq!(file_len(&img), 64 * MIB);

    let b = rig.backup(&img, "ext4", &[]);
    let to = rig.restore(st(&b, "generation"));
    assert_same(&to, &img);
    // The restored file system is sound and holds the file.
    tool("e2fsck", "e2fsprogs", &["-f", "-n", s(&to)]);
    let out = rig.path("big.out");
    tool(
        "debugfs",
        "e2fsprogs",
        &["-R", &format!("dump /big.bin {}", s(&out)), s(&to)],
    );
    assert!(
        std::fs::read(&out).unwrap() == big,
        "big.bin differs after restore"
    );

    // A full read of the same image adds nothing.
    let f = rig.backup(&img, "ext4", &["--read-mode", "full"]);
    assert_eq!(n(&f, "new_chunks"), 0, "{f}");
    assert_eq!(n(&f, "data_slots"), n(&b, "data_slots"));
    rig.assert_restores("latest", &img);
}

#[test]
fn incremental_with_changed_areas_restores_like_a_full_backup() {
    let rig = Rig::new("64K");
    let img = rig.path("disk.raw");
    sparse_file(&img, 32 * MIB);
    scribble(&img, 10, &[(0, 24 * MIB)]);
    let v0 = rig.path("v0.raw");
    std::fs::copy(&img, &v0).unwrap();
    let g0 = rig.backup(&img, "d1", &[]);

    // Change a few ranges; the list also names one that did not change
    // (CBT may over-report) and one in a hole that now holds data.
    let changed = [
        (100_000, 5_000),
        (3 * MIB + 7, 200_000),
        (10 * MIB, 2 * K64),
        (28 * MIB + 3, 70_000),
        (32 * MIB - 2, 2),
    ];
    scribble(&img, 11, &changed);
    let cbt = rig.path("changes.cbt");
    let mut listed = changed.to_vec();
    listed.insert(3, (16 * MIB, 4096));
    write_areas(&cbt, &listed);
    let inc = rig.backup(
        &img,
        "d1",
        &["--parent", "latest", "--changed-areas", s(&cbt)],
    );
    assert_eq!(inc["parent"], g0["generation"]);
    let touched = slots_touched(&listed, K64);
    assert!(
        n(&inc, "read_bytes") <= touched * K64,
        "read too much: {inc}"
    );
    assert_eq!(n(&inc, "reused_slots"), 512 - touched, "{inc}");

    let pages_before = rig.files("pages");
    let chunks_before = rig.files("chunks");
    let full = rig.backup(&img, "d1", &[]);
    assert_eq!(full["parent"], Value::Null);
    // Same data, same entries: nothing new is stored, not even a page.
    assert_eq!(n(&full, "new_chunks"), 0, "{full}");
    assert_eq!(rig.files("chunks"), chunks_before);
    assert_eq!(
        rig.files("pages"),
        pages_before,
        "the two manifests' pages differ"
    );
    for k in ["data_slots", "zero_slots"] {
        assert_eq!(n(&inc, k), n(&full, k), "{k}: {inc} vs {full}");
    }
    let a = rig.restore(st(&inc, "generation"));
    let b = rig.restore(st(&full, "generation"));
    assert_same(&a, &img);
    assert_same(&b, &img);
    assert_same(&a, &b);
    rig.assert_restores(st(&g0, "generation"), &v0);
}

#[test]
fn backing_up_the_same_image_twice_stores_no_new_chunks() {
    let rig = Rig::new("64K");
    let img = rig.path("disk.raw");
    sparse_file(&img, 16 * MIB);
    scribble(&img, 20, &[(0, 6 * MIB), (9 * MIB, 3 * MIB)]);
    write_at(&img, 13 * MIB, &text_bytes(21, MIB as usize));
    let first = rig.backup(&img, "d1", &[]);
    assert_eq!(n(&first, "new_chunks"), n(&first, "data_slots"));
    let (files, chunks, pages) = (rig.files(""), rig.files("chunks"), rig.files("pages"));

    let second = rig.backup(&img, "d1", &[]);
    assert_eq!(n(&second, "new_chunks"), 0, "{second}");
    assert_eq!(n(&second, "new_stored_bytes"), 0, "{second}");
    assert_eq!(
        n(&second, "dedup_chunks"),
        n(&first, "data_slots"),
        "{second}"
    );
    assert_eq!(rig.files("chunks"), chunks);
    assert_eq!(rig.files("pages"), pages);
    // Only the new manifest and generation document.
    assert_eq!(rig.files(""), files + 2);
    let gens = rig.generations();
    assert_eq!(gens.len(), 2);
    assert_eq!(gens[1]["disks"][0]["new_stored_bytes"], 0);
    rig.assert_restores(st(&first, "generation"), &img);
    rig.assert_restores(st(&second, "generation"), &img);
}

#[test]
fn older_generations_restore_after_newer_ones_exist() {
    let rig = Rig::new("64K");
    let img = rig.path("disk.raw");
    sparse_file(&img, 8 * MIB);
    let mut versions = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for round in 0..4u64 {
        let area = (round * 1_500_000 + 999, 400_000);
        scribble(&img, 30 + round, &[area]);
        let copy = rig.path(&format!("v{round}.raw"));
        std::fs::copy(&img, &copy).unwrap();
        versions.push(copy);
        let b = if round % 2 == 1 {
            let cbt = rig.path(&format!("v{round}.cbt"));
            write_areas(&cbt, &[area]);
            rig.backup(
                &img,
                "d1",
                &["--parent", "latest", "--changed-areas", s(&cbt)],
            )
        } else {
            rig.backup(&img, "d1", &[])
        };
        ids.push(st(&b, "generation").to_string());
        // Generations are ordered by their start time in whole seconds;
        // two started in the same second are ordered by id (see report).
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let gens = rig.generations();
    let listed: Vec<&str> = gens.iter().map(|g| st(g, "id")).collect();
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(gens[1]["parent"], Value::String(ids[0].clone()));
    assert_eq!(gens[3]["parent"], Value::String(ids[2].clone()));
    // Oldest first, by prefixes of different lengths.
    for (i, (id, v)) in ids.iter().zip(&versions).enumerate() {
        rig.assert_restores(&id[..6 + 2 * i], v);
    }
    rig.assert_restores("latest", &versions[3]);
    rig.assert_restores("latest:d1", &versions[3]);
}

#[test]
fn the_three_read_modes_agree() {
    let rig = Rig::new("64K");
    let img = rig.path("disk.raw");
    sparse_file(&img, 24 * MIB);
    scribble(
        &img,
        40,
        &[(0, 2 * MIB), (5 * MIB + 4096, 700_000), (23 * MIB, MIB)],
    );
    write_at(&img, 12 * MIB, &text_bytes(41, 1_000_000));
    // Allocated but all zeros: still zero slots in every mode.
    write_at(&img, 16 * MIB, &vec![0u8; 3 * K64 as usize]);
    let areas = allocated_areas(&img);
    assert!(
        areas.len() >= 4,
        "the file system reports no holes: {areas:?}"
    );
    let cbt = rig.path("allocated.cbt");
    write_areas(&cbt, &areas);

    let full = rig.backup(&img, "d1", &["--read-mode", "full"]);
    let (chunks, pages) = (rig.files("chunks"), rig.files("pages"));
    let sparse = rig.backup(&img, "d1", &["--read-mode", "sparse"]);
    let listed = rig.backup(&img, "d1", &["--allocated-areas", s(&cbt)]);
    assert_eq!(n(&full, "read_bytes"), 24 * MIB);
    assert!(n(&sparse, "read_bytes") < 12 * MIB, "{sparse}");
    assert!(n(&listed, "read_bytes") < 12 * MIB, "{listed}");
    for b in [&sparse, &listed] {
        assert_eq!(n(b, "new_chunks"), 0, "{b}");
        for k in ["data_slots", "zero_slots"] {
            assert_eq!(n(b, k), n(&full, k), "{k}: {b} vs {full}");
        }
    }
    // Same entries, so the same manifest pages: none were added.
    assert_eq!(rig.files("chunks"), chunks);
    assert_eq!(rig.files("pages"), pages);
    let restored: Vec<_> = [&full, &sparse, &listed]
        .iter()
        .map(|b| rig.restore(st(b, "generation")))
        .collect();
    for r in &restored {
        assert_same(r, &img);
    }
}

#[test]
fn stats_ratios_are_sane_after_dedup() {
    let rig = Rig::new("64K");
    let img = rig.path("disk.raw");
    sparse_file(&img, 8 * MIB);
    write_at(&img, 0, &text_bytes(50, 4 * MIB as usize));
    write_at(&img, 4 * MIB, &random_bytes(51, 2 * MIB as usize));
    let empty = rig.ok(["stats"]);
    assert_eq!(n(&empty, "generations"), 0);
    assert_eq!(n(&empty, "chunks"), 0);

    let b1 = rig.backup(&img, "d1", &[]);
    let b2 = rig.backup(&img, "d1", &[]);
    assert_eq!(n(&b2, "new_chunks"), 0);
    let v = rig.ok(["stats"]);
    let unique = n(&b1, "data_slots") * K64;
    assert_eq!(n(&v, "generations"), 2, "{v}");
    assert_eq!(n(&v, "logical_bytes"), 16 * MIB, "{v}");
    assert_eq!(n(&v, "chunks"), n(&b1, "new_chunks"), "{v}");
    assert_eq!(n(&v, "unique_bytes"), unique, "{v}");
    assert_eq!(n(&v, "data_bytes"), 2 * unique, "{v}");
    assert_eq!(n(&v, "stored_bytes"), n(&b1, "new_stored_bytes"), "{v}");
    assert!(n(&v, "page_bytes") > 0, "{v}");
    let dedup = v["dedup_ratio"].as_f64().unwrap();
    let comp = v["compression_ratio"].as_f64().unwrap();
    assert!((dedup - 2.0).abs() < 1e-9, "dedup ratio {dedup}: {v}");
    // 4 MiB of text compresses well, 2 MiB of random data does not.
    assert!(comp > 1.3 && comp < 6.0, "compression ratio {comp}: {v}");
    let stored = n(&v, "stored_bytes");
    assert!(stored > 2 * MIB && stored < unique, "{v}");
}

#[test]
fn key_add_list_remove() {
    let mut rig = Rig::new("1M");
    let img = rig.path("disk.raw");
    sparse_file(&img, 4 * MIB);
    scribble(&img, 60, &[(MIB, MIB)]);
    let g = rig.backup(&img, "d1", &[]);
    let old = rig.password.clone();

    let list = rig.ok(["key", "list"]);
    let slots = list.as_array().unwrap();
    assert_eq!(slots.len(), 1, "{list}");
    let old_slot = st(&slots[0], "id").to_string();
    assert_eq!(slots[0]["current"], true);

    let mut add = rig.command(["key", "add"]);
    add.args(KDF).env("VMKEEP_NEW_PASSWORD", "second password");
    let added = run_command(add).ok().json();
    let new_slot = st(&added, "added").to_string();
    assert_ne!(new_slot, old_slot);

    // Both passwords open it; each knows which slot it used.
    rig.password = "second password".into();
    let list = rig.ok(["key", "list"]);
    let slots = list.as_array().unwrap();
    assert_eq!(slots.len(), 2, "{list}");
    for sl in slots {
        assert_eq!(sl["current"], st(sl, "id") == new_slot, "{list}");
    }
    rig.assert_restores(st(&g, "generation"), &img);
    // The slot in use is refused.
    rig.run(["key", "remove", new_slot.as_str()])
        .fails(1, &[new_slot.as_str(), "unlocked with"]);
    rig.run(["key", "remove", "nosuchslot"])
        .fails(1, &["nosuchslot"]);

    rig.ok(["key", "remove", old_slot.as_str()]);
    rig.password = old.clone();
    let r = rig
        .run(["generations"])
        .fails(3, &["wrong password", s(&rig.repo)]);
    assert_eq!(r.json()["exit_code"], 3);
    rig.password = "second password".into();
    let list = rig.ok(["key", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    // The last slot (also the one in use) is refused as the last one.
    rig.run(["key", "remove", new_slot.as_str()])
        .fails(1, &["last key slot"]);
    assert_eq!(rig.ok(["key", "list"]).as_array().unwrap().len(), 1);
    rig.assert_restores(st(&g, "generation"), &img);
}

#[test]
fn index_is_rebuilt_after_the_cache_is_deleted() {
    let rig = Rig::new("64K");
    let img = rig.path("disk.raw");
    sparse_file(&img, 8 * MIB);
    scribble(&img, 70, &[(0, 3 * MIB), (6 * MIB, 500_000)]);
    let b1 = rig.backup(&img, "d1", &[]);
    let chunks = rig.files("chunks") as u64;
    assert_eq!(chunks, n(&b1, "new_chunks"));

    std::fs::remove_dir_all(&rig.cache).unwrap();
    let v = rig.ok(["stats"]);
    assert_eq!(n(&v, "chunks"), chunks, "{v}");
    assert_eq!(n(&v, "generations"), 1, "{v}");
    assert!(rig.cache.exists(), "stats did not recreate the index");

    std::fs::remove_dir_all(&rig.cache).unwrap();
    let b2 = rig.backup(&img, "d1", &[]);
    assert_eq!(
        n(&b2, "new_chunks"),
        0,
        "no dedup after the index was rebuilt: {b2}"
    );
    assert_eq!(rig.files("chunks") as u64, chunks);

    let r = rig.ok(["index", "rebuild"]);
    assert_eq!(n(&r, "chunks"), chunks, "{r}");
    assert_eq!(n(&r, "pages"), rig.files("pages") as u64, "{r}");
    assert_eq!(r["damaged"], Value::Array(vec![]), "{r}");
    std::fs::remove_dir_all(&rig.cache).unwrap();
    let r = rig.ok(["index", "rebuild"]);
    assert_eq!(n(&r, "chunks"), chunks, "{r}");
    let b3 = rig.backup(&img, "d1", &[]);
    assert_eq!(n(&b3, "new_chunks"), 0, "{b3}");
    rig.assert_restores(st(&b1, "generation"), &img);
}

#[test]
fn unencrypted_repository_round_trips() {
    let rig = Rig::empty();
    let v = rig.ok(["init", "--no-encryption", "--chunk-size", "64K"]);
    assert_eq!(v["encrypted"], false);
    let img = rig.path("disk.raw");
    sparse_file(&img, 2 * MIB);
    write_at(&img, 100, &text_bytes(80, 600_000));
    let b = rig.backup(&img, "plain", &[]);
    let again = rig.backup(&img, "plain", &[]);
    assert_eq!(n(&again, "new_chunks"), 0);
    rig.assert_restores(st(&b, "generation"), &img);
}

/// The binary runs on jemalloc with transparent huge pages compiled in
/// (.cargo/config.toml, cli/src/main.rs): without them Argon2id's 64 MiB and
/// the pipeline's buffers cost tens of thousands of page faults per run
/// (README "Performance"). jemalloc prints its options when asked to.
#[test]
fn the_binary_allocates_with_jemalloc_and_huge_pages() {
    let out = std::process::Command::new(vmkeep_bin())
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run vmkeep --version");
    assert!(out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("opt.thp: \"always\""),
        "jemalloc's options do not say thp:always:\n{all}"
    );
}

/// RocksDB and its compression libraries are linked into the binary
/// (.cargo/config.toml `ROCKSDB_STATIC`, engine/build.rs): with a cold page
/// cache each shared library costs milliseconds of every run (README
/// "Performance"). The C++ runtime stays shared (see engine/build.rs).
#[test]
fn the_binary_links_rocksdb_statically() {
    let bytes = std::fs::read(vmkeep_bin()).expect("read the vmkeep binary");
    let out = std::process::Command::new("ldd")
        .arg(vmkeep_bin())
        .output()
        .expect("run ldd");
    assert!(out.status.success(), "ldd failed on the vmkeep binary");
    let libs = String::from_utf8_lossy(&out.stdout);
    assert!(libs.contains("libc.so"), "ldd listed no libraries:\n{libs}");
    for lib in [
        "librocksdb",
        "libsnappy",
        "liblz4",
        "libbz2",
        "libz.so",
        "libzstd",
        "libgflags",
    ] {
        assert!(
            !libs.contains(lib),
            "vmkeep loads {lib} at run time:\n{libs}"
        );
    }
    // RocksDB itself is in the binary: its statistics names are.
    assert!(
        bytes.windows(12).any(|w| w == b"rocksdb.db.g"),
        "RocksDB's code is not linked into the binary"
    );
}

#[test]
fn index_rebuild_moves_a_damaged_index_aside_instead_of_deleting_it() {
    let rig = Rig::new("64K");
    let img = rig.path("disk.raw");
    sparse_file(&img, 4 * MIB);
    scribble(&img, 71, &[(0, 2 * MIB)]);
    let b1 = rig.backup(&img, "d1", &[]);
    let repo_dir = std::fs::read_dir(&rig.cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("index").is_dir())
        .expect("an index directory in the cache");
    let index = repo_dir.join("index");
    // RocksDB cannot open an index whose CURRENT names a missing manifest.
    std::fs::write(index.join("CURRENT"), "MANIFEST-999999\n").unwrap();
    let r = rig.ok(["index", "rebuild"]);
    assert_eq!(n(&r, "chunks"), rig.files("chunks") as u64, "{r}");
    let aside: Vec<_> = std::fs::read_dir(&repo_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("index.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "the damaged index was not kept: {aside:?}");
    let kept = repo_dir.join(&aside[0]).join("CURRENT");
    assert_eq!(std::fs::read_to_string(kept).unwrap(), "MANIFEST-999999\n");
    let b2 = rig.backup(&img, "d1", &[]);
    assert_eq!(n(&b2, "new_chunks"), 0, "{b2}");
    rig.assert_restores(st(&b1, "generation"), &img);
}
