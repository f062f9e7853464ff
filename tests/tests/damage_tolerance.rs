//! One damaged object must not lock out the rest (issue 13, items 4–6 and
//! 11): damaged key slots are skipped, a damaged generation is listed as
//! such while every other lineage keeps working, and what verify finds bad
//! is never reused by a backup — the next backup stores that data again,
//! which heals the older generations too.

use std::path::{Path, PathBuf};

use serde_json::Value;
use vmkeep_tests::cli::*;

const MIB: u64 = 1 << 20;
const K64: u64 = 64 << 10;

fn gen(v: &Value) -> String {
    v["generation"].as_str().unwrap().to_string()
}

/// Flips one byte in the middle of a file.
fn flip(p: &Path) {
    let mut b = std::fs::read(p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x5a;
    std::fs::write(p, b).unwrap();
}

/// Every file under `dir` (recursively), sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A 2 MiB image of distinct data in every slot, backed up as `disk`.
fn image(rig: &Rig, name: &str, disk: &str, seed: u64) -> (PathBuf, String) {
    let img = rig.path(name);
    sparse_file(&img, 2 * MIB);
    write_at(&img, 0, &random_bytes(seed, (2 * MIB) as usize));
    let v = rig.backup(&img, disk, &[]);
    (img, gen(&v))
}

/// A copy of `img` as it is now, for comparing a restore later.
fn snapshot(rig: &Rig, img: &Path) -> PathBuf {
    let to = rig.path(&format!("snap-{}.raw", unique()));
    std::fs::copy(img, &to).unwrap();
    to
}

/// Item 4: a flipped byte in one key slot and a stray `keys/README` do not
/// refuse the passwords of the other slots; they are named, and only when
/// no slot can be read is the repository closed (exit 3, naming them).
#[test]
fn damaged_and_stray_key_files_do_not_lock_out_the_others() {
    let rig = Rig::new("64K");
    let pw2 = rig.path("pw2");
    std::fs::write(&pw2, "second password\n").unwrap();
    let mut a = vec![
        "key",
        "add",
        "--new-password-file",
        s(&pw2),
        "--label",
        "offsite",
    ];
    a.extend(KDF);
    let second = rig.ok(&a)["added"].as_str().unwrap().to_string();
    std::fs::write(rig.repo.join("keys/README"), "key slots live here\n").unwrap();
    // Damage the slot the rig's password opens.
    let first: Vec<_> = files_under(&rig.repo.join("keys"))
        .into_iter()
        .filter(|p| !p.ends_with("README") && !p.ends_with(&second))
        .collect();
    assert_eq!(first.len(), 1, "{first:?}");
    flip(&first[0]);
    let first_name = first[0].file_name().unwrap().to_str().unwrap().to_string();
    // The second password still opens it; both bad files are named.
    let mut c = rig.command(["generations"]);
    c.env("VMKEEP_PASSWORD", "second password");
    let r = run_command(c).ok();
    for needle in ["keys/README", first_name.as_str(), "skipped"] {
        assert!(r.stderr.contains(needle), "stderr lacks {needle}: {r}");
    }
    // The damaged slot's password: wrong (exit 3), naming the skipped files.
    rig.run(["generations"])
        .fails(3, &["wrong password", "keys/README", &first_name]);
    // Nothing readable at all: exit 3, "no usable key slot".
    std::fs::remove_file(rig.repo.join("keys").join(&second)).unwrap();
    rig.run(["generations"])
        .fails(3, &["no usable key slot", "keys/README", &first_name]);
}

/// Item 5: a damaged generation is listed as damaged, other lineages are
/// listed, forgotten, restored and backed up as usual, an incremental of
/// the damaged one's own lineage is refused (its list may be relative to
/// the damaged generation), and `forget ID` removes it.
#[test]
fn a_damaged_generation_blocks_only_what_it_must() {
    let rig = Rig::new("64K");
    let (img_a, a0) = image(&rig, "a.raw", "a", 1);
    let snap_a0 = snapshot(&rig, &img_a);
    let (img_b, b0) = image(&rig, "b.raw", "b", 2);
    write_at(&img_a, 3 * K64, b"a changes");
    let a1 = gen(&rig.backup(&img_a, "a", &[]));
    flip(&rig.repo.join("generations").join(&a1));

    // Listings go on, naming it.
    let list = rig.generations();
    assert_eq!(list.len(), 3, "{list:?}");
    let bad: Vec<_> = list.iter().filter(|g| g["damaged"] == true).collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["id"], a1.as_str());
    let human = rig.human(["generations"]).ok().stdout;
    assert!(
        human.contains("DAMAGED") && human.contains(&a1[..8]),
        "{human}"
    );
    rig.ok(["stats"]);

    // Other lineages: restore, incremental backup, forget.
    rig.assert_restores("latest:b", &img_b);
    write_at(&img_b, 7 * K64, b"b changes");
    let cbt = rig.path("b.cbt");
    write_areas(&cbt, &[(7 * K64, 9)]);
    let b1 = rig.backup(
        &img_b,
        "b",
        &["--parent", "latest", "--changed-areas", s(&cbt)],
    );
    assert_eq!(b1["parent"], b0.as_str());
    rig.assert_restores(&gen(&b1), &img_b);
    let v = rig.ok(["forget", "--keep-last", "1", "--source", "b"]);
    assert_eq!(v["removed"], 1, "{v}");
    // Rules over every source keep the damaged one, saying why.
    let v = rig.ok(["forget", "--keep-last", "5"]);
    let row = v["generations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == a1.as_str())
        .cloned()
        .unwrap();
    assert_eq!(row["keep"], true, "{row}");
    assert!(
        row["reason"].as_str().unwrap().contains("cannot be read"),
        "{row}"
    );

    // Its own lineage: `latest:a` is the older one, with a warning ...
    let to = rig.path("a-latest.raw");
    let r = rig.run(["restore", "latest:a", "--to", s(&to)]).ok();
    assert!(
        r.stderr.contains(&a1[..8]) && r.stderr.contains("may be newer"),
        "{r}"
    );
    assert_same(&to, &snap_a0);
    // ... and an incremental from `latest` is refused: the list may be
    // relative to the damaged one.
    let cbt_a = rig.path("a.cbt");
    write_areas(&cbt_a, &[(3 * K64, 9)]);
    rig.run([
        "backup",
        "--image",
        s(&img_a),
        "--disk",
        "a",
        "--changed-areas",
        s(&cbt_a),
    ])
    .fails(1, &[&a1[..8], "cannot be read", "--parent ID"]);
    // Named explicitly, the parent is the user's word.
    let v = rig.backup(
        &img_a,
        "a",
        &["--parent", &a0[..12], "--changed-areas", s(&cbt_a)],
    );
    rig.assert_restores(&gen(&v), &img_a);

    // Forget by id removes the damaged generation; a verify is clean.
    let v = rig.ok(["forget", &a1[..10]]);
    assert_eq!(v["removed"], 1, "{v}");
    assert!(!rig.repo.join("generations").join(&a1).exists());
    rig.ok(["verify"]);
    rig.ok(["gc"]);
    rig.assert_restores(&gen(&b1), &img_b);
}

/// Item 5, without the local index: the damaged generation's lineage is
/// unknown, so an incremental of any lineage whose newest generation is
/// older than it is refused rather than risk a wrong one.
#[test]
fn an_unknown_lineage_is_treated_as_ones_own() {
    let rig = Rig::new("64K");
    let (img_b, _) = image(&rig, "b.raw", "b", 3);
    let (_, a0) = image(&rig, "a.raw", "a", 4);
    flip(&rig.repo.join("generations").join(&a0));
    std::fs::remove_dir_all(&rig.cache).unwrap();
    let cbt = rig.path("b.cbt");
    write_areas(&cbt, &[(0, 10)]);
    rig.run([
        "backup",
        "--image",
        s(&img_b),
        "--disk",
        "b",
        "--changed-areas",
        s(&cbt),
    ])
    .fails(1, &[&a0[..8], "may be newer"]);
    // A whole-disk backup is always right: it goes on, with a warning.
    let r = rig
        .run([
            "backup",
            "--image",
            s(&img_b),
            "--disk",
            "b",
            "--parent",
            "latest",
        ])
        .ok();
    assert!(r.stderr.contains("reads the whole disk"), "{r}");
}

/// Item 5: `verify --quarantine` moves a damaged generation aside too.
#[test]
fn quarantine_covers_generations() {
    let rig = Rig::new("64K");
    let (img, g0) = image(&rig, "a.raw", "a", 5);
    write_at(&img, 0, b"x");
    let g1 = gen(&rig.backup(&img, "a", &[]));
    flip(&rig.repo.join("generations").join(&g0));
    let r = rig.run(["verify", "--quarantine"]);
    assert_eq!(r.code, 5, "{r}");
    assert!(rig.repo.join("quarantine/generations").join(&g0).exists());
    let list = rig.generations();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], g1.as_str());
    rig.ok(["verify"]);
    rig.assert_restores(&g1, &img);
}

/// What is damaged in a repository for [`damaged_objects_are_never_reused`].
#[derive(Clone, Copy, Debug)]
enum Harm {
    FlipChunk,
    DeleteChunk,
    FlipPage,
}

/// Item 6: for each kind of damage, verify (with and without quarantine),
/// then an incremental backup from an empty change list: the damaged
/// slots are read again instead of reused, so the new generation restores,
/// and the old one restores again because the backup stored the damaged
/// data anew. A later incremental goes on from there as usual.
#[test]
fn damaged_objects_are_never_reused() {
    for harm in [Harm::FlipChunk, Harm::DeleteChunk, Harm::FlipPage] {
        for quarantine in [true, false] {
            let what = format!("{harm:?}, quarantine {quarantine}");
            let rig = Rig::new("64K");
            let (img, g0) = image(&rig, "a.raw", "a", 6);
            let dir = match harm {
                Harm::FlipPage => "pages",
                _ => "chunks",
            };
            let all = files_under(&rig.repo.join(dir));
            let victim = all[3 % all.len()].clone();
            match harm {
                Harm::FlipChunk | Harm::FlipPage => flip(&victim),
                Harm::DeleteChunk => std::fs::remove_file(&victim).unwrap(),
            }
            let mut args = vec!["verify"];
            if quarantine {
                args.push("--quarantine");
            }
            let r = rig.run(&args);
            assert_eq!(r.code, 5, "{what}: {r}");
            let empty = rig.path("empty.cbt");
            std::fs::write(&empty, "").unwrap();
            let v = rig.backup(
                &img,
                "a",
                &["--parent", "latest", "--changed-areas", s(&empty)],
            );
            assert!(v["reread_slots"].as_u64().unwrap() >= 1, "{what}: {v}");
            rig.assert_restores(&gen(&v), &img);
            // The data was stored again: the damaged generation is whole.
            rig.assert_restores(&g0, &img);
            let r = rig.run(["verify"]);
            assert_eq!(r.code, 0, "{what}: {r}");
            write_at(&img, 31 * K64 + 100, b"a later change");
            let cbt = rig.path("a.cbt");
            write_areas(&cbt, &[(31 * K64 + 100, 14)]);
            let v = rig.backup(
                &img,
                "a",
                &["--parent", "latest", "--changed-areas", s(&cbt)],
            );
            assert_eq!(v["reread_slots"], 0, "{what}: {v}");
            rig.assert_restores(&gen(&v), &img);
        }
    }
}

/// Item 11: a subset check never claims more than it read.
#[test]
fn a_subset_verify_says_what_it_checked() {
    let rig = Rig::new("64K");
    let (_, g0) = image(&rig, "a.raw", "a", 7);
    let chunks = files_under(&rig.repo.join("chunks"));
    let victim = &chunks[0];
    flip(victim);
    // The bucket of the damaged chunk (SPEC.md §13.3); check another one.
    let hex = victim.file_name().unwrap().to_str().unwrap();
    let b = hex::decode(&hex[..8]).unwrap();
    let bucket = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) % 7;
    let other = (bucket + 1) % 7 + 1;
    let subset = format!("{other}/7");
    let v = rig.ok(["verify", "--read-data-subset", &subset]);
    let g = &v["generations"][0];
    assert_eq!(g["id"], g0.as_str());
    assert_eq!(g["status"], "intact in the checked subset", "{v}");
    assert_eq!(g["intact"], false, "{v}");
    let text = rig
        .human(["verify", "--read-data-subset", &subset])
        .ok()
        .stdout;
    assert!(text.contains("intact in the checked subset"), "{text}");
    assert!(!text.contains("): intact\n"), "{text}");
    // The bucket that holds it finds it.
    let r = rig.run(["verify", "--read-data-subset", &format!("{}/7", bucket + 1)]);
    assert_eq!(r.code, 5, "{r}");
}
