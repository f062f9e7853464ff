//! The operations called as library functions, as a job runner would:
//! each report's fields say what happened, and each report serializes to
//! the JSON keys the CLI prints.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use vmkeep_engine::backend::LocalBackend;
use vmkeep_engine::index::MemIndex;
use vmkeep_engine::lock::{Lock, Mode};
use vmkeep_engine::ops::forget::{forget, ForgetOptions, Selection};
use vmkeep_engine::ops::gc::{gc, GcOptions};
use vmkeep_engine::ops::generations::{generations, GenerationsOptions};
use vmkeep_engine::ops::index::{rebuild, RebuildOptions};
use vmkeep_engine::ops::init::{init, InitOptions};
use vmkeep_engine::ops::key::{self, KeyAddOptions, KeyRemoveOptions};
use vmkeep_engine::ops::protect::{protect, ProtectOptions};
use vmkeep_engine::ops::restore::{restore, RestoreOptions, RestoreTo};
use vmkeep_engine::ops::stats::{stats, StatsOptions};
use vmkeep_engine::ops::unlock::{unlock, UnlockOptions};
use vmkeep_engine::ops::verify::{verify, verify_keyless, VerifyOptions};
use vmkeep_engine::progress::NoProgress;
use vmkeep_engine::repo::Repository;
use vmkeep_engine::verify::Subset;
use vmkeep_engine::Error;
use vmkeep_format::config::Encryption;
use vmkeep_format::keyfile::KdfParams;

mod common;
use common::*;

const CHEAP: KdfParams = KdfParams {
    memory_kib: 64,
    iterations: 1,
    lanes: 1,
};

/// The top-level keys of `v` serialized (of its first element for an array).
fn keys(v: &impl serde::Serialize) -> BTreeSet<String> {
    let j = serde_json::to_value(v).unwrap();
    let o = match &j {
        serde_json::Value::Array(a) => a[0].clone(),
        o => o.clone(),
    };
    o.as_object().unwrap().keys().cloned().collect()
}

#[track_caller]
fn has_keys(v: &impl serde::Serialize, want: &[&str]) {
    let got = keys(v);
    for k in want {
        assert!(got.contains(*k), "no key {k:?} in {got:?}");
    }
}

/// 4 data slots, 2 zero slots, 2 data slots.
fn data() -> Vec<u8> {
    let cs = CS as usize;
    let mut v = vec![0u8; 8 * cs];
    for (i, b) in v.iter_mut().enumerate() {
        let slot = i / cs;
        if slot != 4 && slot != 5 {
            *b = (i * 7 + slot * 13 + i / 251) as u8 | 1;
        }
    }
    v
}

fn restore_opts(spec: &str) -> RestoreOptions {
    RestoreOptions {
        generation: spec.into(),
        disk: None,
        threads: 2,
        command: "test restore".into(),
    }
}

#[test]
fn restore_reports_data_and_zero_bytes() {
    let d = tempfile::tempdir().unwrap();
    let repo = new_repo(&d.path().join("repo"));
    let img = data();
    let gid = backup(&repo, &MemIndex::new(), &img, "src", "disk0");
    let to = d.path().join("out.raw");
    let r = restore(
        &repo,
        &restore_opts("latest"),
        RestoreTo::File {
            path: to.clone(),
            overwrite: false,
        },
        &NoProgress,
    )
    .unwrap();
    assert_eq!(std::fs::read(&to).unwrap(), img);
    assert_eq!(r.generation, gid.to_hex());
    assert_eq!(r.disk, "disk0");
    assert_eq!(r.capacity, 8 * CS as u64);
    assert_eq!(r.data_bytes, 6 * CS as u64);
    assert_eq!(r.zero_bytes, 2 * CS as u64);
    assert_eq!(r.chunks, 6);
    assert!(r.warnings.is_empty());
    has_keys(
        &r,
        &[
            "generation",
            "disk",
            "target",
            "capacity",
            "data_bytes",
            "zero_bytes",
            "chunks",
            "seconds",
        ],
    );
    // A disk it does not have: the error says which it has, and no file
    // is created.
    let mut o = restore_opts(&gid.short());
    o.disk = Some("nope".into());
    let none = d.path().join("none.raw");
    let e = restore(
        &repo,
        &o,
        RestoreTo::File {
            path: none.clone(),
            overwrite: false,
        },
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::NoSuchDisk { has, .. } if has.contains("disk0")),
        "{e}"
    );
    assert!(!none.exists());
}

#[test]
fn a_failed_restore_says_what_stopped_it() {
    let d = tempfile::tempdir().unwrap();
    let repo = new_repo(d.path());
    let gid = backup(&repo, &MemIndex::new(), &data(), "src", "disk0");
    let chunk = dependencies(&repo, &gid)
        .into_iter()
        .find(|p| p.starts_with("chunks/"))
        .unwrap();
    flip(&d.path().join(&chunk));
    let e = restore(
        &repo,
        &restore_opts("latest"),
        RestoreTo::Target(Box::new(Out::default())),
        &NoProgress,
    )
    .unwrap_err();
    assert!(matches!(e, Error::RestoreFailed { .. }), "{e}");
    assert!(matches!(e.cause(), Error::ChunkBad { .. }), "{e}");
}

/// Flips one bit in the middle of a file.
fn flip(p: &Path) {
    let mut b = std::fs::read(p).unwrap();
    let at = b.len() / 2;
    b[at] ^= 0x10;
    std::fs::write(p, b).unwrap();
}

fn verify_opts(index: Option<std::path::PathBuf>) -> VerifyOptions {
    VerifyOptions {
        subset: Subset::All,
        quarantine: false,
        index,
        command: "test verify".into(),
    }
}

#[test]
fn verify_names_the_damaged_chunk_and_page() {
    let d = tempfile::tempdir().unwrap();
    let repo = new_repo(d.path());
    let gid = backup(&repo, &MemIndex::new(), &data(), "src", "disk0");
    let r = verify(&repo, &verify_opts(None)).unwrap();
    assert!(r.clean && !r.subset && !r.keyless);
    assert_eq!(r.chunks_referenced, 6);
    assert_eq!(r.chunks_checked, 6);
    assert_eq!(r.generations.len(), 1);
    assert_eq!(r.generations[0].status, "intact");
    assert!(r.generations[0].intact);
    has_keys(
        &r,
        &[
            "clean",
            "subset",
            "chunks_referenced",
            "chunks_checked",
            "bytes_checked",
            "damage",
            "quarantined",
            "generations",
        ],
    );
    has_keys(
        &r.generations,
        &["id", "source", "status", "intact", "damaged_objects"],
    );

    let deps = dependencies(&repo, &gid);
    let chunk = deps.iter().find(|p| p.starts_with("chunks/")).unwrap();
    flip(&d.path().join(chunk));
    let idx = d.path().join("index");
    let r = verify(&repo, &verify_opts(Some(idx))).unwrap();
    assert!(!r.clean);
    assert_eq!(r.damage.len(), 1, "{:?}", r.damage);
    assert_eq!(&r.damage[0].path, chunk);
    assert_eq!(r.damage[0].kind, "chunk");
    assert_eq!(r.generations[0].status, "damaged");
    assert_eq!(r.generations[0].damaged_objects, vec![chunk.clone()]);
    assert!(
        r.index.is_some(),
        "the damaged chunk is dropped from the index"
    );
    has_keys(&r.damage, &["path", "kind", "problem"]);
    flip(&d.path().join(chunk));

    let page = deps.iter().find(|p| p.starts_with("pages/")).unwrap();
    flip(&d.path().join(page));
    let r = verify(&repo, &verify_opts(None)).unwrap();
    assert_eq!(r.damage.len(), 1, "{:?}", r.damage);
    assert_eq!(r.damage[0].kind, "manifest page");
    // Keyless, the same damage shows from the stored bytes alone.
    let k = verify_keyless(repo.backend().as_ref()).unwrap();
    assert!(k.keyless && !k.clean);
    assert_eq!(&k.damage[0].path, page);
    assert_eq!(k.damage[0].kind, "manifest page");
}

/// Sets the modification time of every object file an hour back, so gc's
/// cut-off (its start less a clock margin) lets it collect them.
fn age_objects(root: &Path) {
    let old = SystemTime::now() - Duration::from_secs(3600);
    for dir in ["chunks", "pages", "manifests", "generations"] {
        let mut todo = vec![root.join(dir)];
        while let Some(d) = todo.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd {
                let p = e.unwrap().path();
                if p.is_dir() {
                    todo.push(p);
                } else {
                    let f = std::fs::File::options().write(true).open(&p).unwrap();
                    f.set_modified(old).unwrap();
                }
            }
        }
    }
}

#[test]
fn gc_counts_what_a_forget_left_unreferenced() {
    let d = tempfile::tempdir().unwrap();
    let repo = new_repo(d.path());
    let ix = MemIndex::new();
    let a = data();
    let mut b = data();
    b[..CS as usize].fill(0x5a); // one chunk of its own
    let ga = backup(&repo, &ix, &a, "src", "disk0");
    let gb = backup(&repo, &ix, &b, "src", "disk0");
    let only_a: Vec<String> = dependencies(&repo, &ga)
        .difference(&dependencies(&repo, &gb))
        .cloned()
        .collect();
    assert!(only_a.iter().any(|p| p.starts_with("chunks/")));
    let f = forget(
        &repo,
        &ForgetOptions {
            selection: Selection::Named(vec![ga.short()]),
            dry_run: false,
            utc_offset: 0,
            command: "test forget".into(),
        },
    )
    .unwrap();
    assert_eq!(f.removed, 1);
    age_objects(d.path());
    let o = GcOptions {
        index: None,
        command: "test gc".into(),
    };
    let r = gc(&repo, &o).unwrap();
    assert_eq!(r.generations, 1);
    assert_eq!(r.referenced_chunks, 6);
    assert_eq!(r.trashed as usize, only_a.len(), "{r:?} vs {only_a:?}");
    assert_eq!(r.deleted as usize, only_a.len(), "{r:?}");
    assert!(r.unreadable.is_empty());
    for p in &only_a {
        assert!(!d.path().join(p).exists(), "{p} was collected");
    }
    has_keys(
        &r,
        &[
            "generations",
            "referenced_chunks",
            "trashed",
            "trashed_bytes",
            "deleted",
            "freed_bytes",
            "restored",
            "pending_batches",
            "unreadable",
            "kept_recent",
            "kept_recent_bytes",
            "cutoff",
            "cutoff_time",
            "clock_margin",
            "cutoff_reason",
            "cutoff_lock",
            "kept_recent_message",
        ],
    );
    // What remains restores.
    assert_eq!(common::restore(&repo, &gb).unwrap(), b);
}

#[test]
fn stats_totals_and_index_rebuild() {
    let d = tempfile::tempdir().unwrap();
    let repo = new_repo(&d.path().join("repo"));
    let ix = MemIndex::new();
    let img = data();
    backup(&repo, &ix, &img, "a", "a");
    backup(&repo, &ix, &img, "b", "b");
    let index = d.path().join("cache").join("index");
    let s = stats(
        &repo,
        &StatsOptions {
            index: index.clone(),
        },
    )
    .unwrap();
    assert_eq!(s.generations, 2);
    assert_eq!(s.logical_bytes, 2 * 8 * CS as u64);
    assert_eq!(s.data_bytes, 2 * 6 * CS as u64);
    assert_eq!(s.chunks, 6);
    assert_eq!(s.unique_bytes, 6 * CS as u64);
    assert!((s.dedup_ratio - 2.0).abs() < 1e-9, "{}", s.dedup_ratio);
    assert_eq!(s.damaged_generation_count, 0);
    let rebuilt = s.index_rebuilt.as_ref().expect("a new index is built");
    assert_eq!(rebuilt.chunks, 6);
    has_keys(
        &s,
        &[
            "generations",
            "logical_bytes",
            "data_bytes",
            "chunks",
            "unique_bytes",
            "stored_bytes",
            "page_bytes",
            "garbage_chunks",
            "dedup_ratio",
            "compression_ratio",
            "damaged_generation_count",
            "damaged_generations",
            "damaged_objects",
        ],
    );
    // The second time the index is there.
    let s = stats(
        &repo,
        &StatsOptions {
            index: index.clone(),
        },
    )
    .unwrap();
    assert!(s.index_rebuilt.is_none());
    let r = rebuild(&repo, &RebuildOptions { index }).unwrap();
    assert_eq!(r.chunks, 6);
    assert_eq!(r.pages, 1, "both disks hold the same data: one page");
    assert!(r.damaged.is_empty());
    has_keys(&r, &["chunks", "pages", "damaged"]);
}

#[test]
fn key_slots_are_added_listed_removed_and_changed() {
    let d = tempfile::tempdir().unwrap();
    let repo = new_repo(d.path());
    let first = key::list(&repo).unwrap().slots;
    assert_eq!(first.len(), 1);
    assert!(first[0].current);
    let add = |pw: &[u8], label: &str| KeyAddOptions {
        password: pw.to_vec(),
        kdf: CHEAP,
        label: Some(label.into()),
    };
    let a = key::add(&repo, &add(b"second", "offsite")).unwrap();
    assert_eq!(a.label, "offsite");
    has_keys(&a, &["added", "label"]);
    let l = key::list(&repo).unwrap();
    assert_eq!(l.slots.len(), 2);
    assert!(l
        .slots
        .iter()
        .any(|s| s.id == a.added && !s.current && s.label == "offsite"));
    has_keys(&l, &["id", "label", "created", "current"]);
    assert!(serde_json::to_value(&l).unwrap().is_array());
    // Typed refusals.
    let rm = |repo: &Repository, id: &str| key::remove(repo, &KeyRemoveOptions { id: id.into() });
    assert!(matches!(
        rm(&repo, "zz"),
        Err(Error::KeySlotNotFound { .. })
    ));
    assert!(matches!(
        rm(&repo, &first[0].id),
        Err(Error::KeySlotInUse(_))
    ));
    let r = rm(&repo, &a.added[..6]).unwrap();
    assert_eq!(r.removed, a.added);
    has_keys(&r, &["removed"]);
    assert_eq!(key::list(&repo).unwrap().slots.len(), 1);
    let other = Repository::open(repo.backend().clone(), Some(b"pw")).unwrap();
    key::add(&other, &add(b"third", "x")).unwrap();
    let third = Repository::open(repo.backend().clone(), Some(b"third")).unwrap();
    let e = rm(&third, &first[0].id);
    assert!(e.is_ok(), "{e:?}");
    assert!(matches!(
        rm(&third, &key::list(&third).unwrap().slots[0].id),
        Err(Error::LastKeySlot(_))
    ));
    // A change: the new password opens it, the old one no longer does.
    let c = key::change(&third, &add(b"fourth", "changed")).unwrap();
    has_keys(&c, &["added", "label", "removed"]);
    let slots = key::list(&third).unwrap().slots;
    assert_eq!(slots.len(), 1);
    assert_eq!(slots[0].id, c.added);
    assert!(Repository::open(repo.backend().clone(), Some(b"fourth")).is_ok());
    assert!(matches!(
        Repository::open(repo.backend().clone(), Some(b"third")),
        Err(Error::WrongPassword { .. })
    ));
}

#[test]
fn protect_generations_unlock_and_init() {
    let d = tempfile::tempdir().unwrap();
    let repo = new_repo(&d.path().join("repo"));
    let gid = backup(&repo, &MemIndex::new(), &data(), "src", "disk0");
    let p = protect(
        &repo,
        &ProtectOptions {
            generation: "latest".into(),
            remove: false,
        },
    )
    .unwrap();
    assert_eq!(p.id, gid.to_hex());
    assert!(p.protected);
    has_keys(&p, &["id", "protected"]);
    let e = forget(
        &repo,
        &ForgetOptions {
            selection: Selection::Named(vec![gid.short()]),
            dry_run: false,
            utc_offset: 0,
            command: "test forget".into(),
        },
    )
    .unwrap_err();
    assert!(matches!(e, Error::GenerationProtected(_)), "{e}");

    let g = generations(&repo, &GenerationsOptions::default()).unwrap();
    assert_eq!(g.generations.len(), 1);
    assert!(g.generations[0].protected);
    assert_eq!(g.generations[0].disks[0].name, "disk0");
    assert_eq!(g.generations[0].disks[0].data_bytes, 6 * CS as u64);
    has_keys(
        &g,
        &[
            "id",
            "source",
            "host",
            "started",
            "finished",
            "time",
            "parent",
            "protected",
            "damaged",
            "disks",
        ],
    );
    let other = generations(
        &repo,
        &GenerationsOptions {
            source: Some("other".into()),
        },
    )
    .unwrap();
    assert!(other.generations.is_empty());

    // A live lock stays, and is named.
    let held = Lock::acquire(repo.backend().clone(), Mode::Shared, "test hold", None).unwrap();
    let u = unlock(repo.backend().as_ref(), &UnlockOptions::default()).unwrap();
    assert!(u.removed.is_empty());
    assert_eq!(u.live.len(), 1);
    has_keys(&u, &["removed", "live"]);
    drop(held);

    // init: an unencrypted repository needs no password, an encrypted one does.
    let b = Arc::new(LocalBackend::new(d.path().join("plain")));
    let o = InitOptions {
        encryption: Encryption::None,
        chunk_size: CS,
        ..Default::default()
    };
    let r = init(b, None, &o).unwrap();
    assert!(!r.encrypted);
    assert_eq!(r.chunk_size, CS);
    has_keys(&r, &["repository", "id", "encrypted", "chunk_size"]);
    let b = Arc::new(LocalBackend::new(d.path().join("enc")));
    let e = init(b, None, &InitOptions::default()).unwrap_err();
    assert!(matches!(e, Error::PasswordRequired(_)), "{e}");
}

#[test]
fn restore_of_a_generation_with_two_disks_needs_one_named() {
    use vmkeep_engine::ops::backup::{backup, AreaMode, BackupOptions, DiskSpec};
    let d = tempfile::tempdir().unwrap();
    let repo = new_repo(d.path());
    let ix = MemIndex::new();
    let disk = |name: &str, fill: u8| DiskSpec {
        name: name.into(),
        source: Box::new(Mem(vec![fill; 2 * CS as usize])),
        areas: AreaMode::Everything,
        use_allocation: false,
        change_id: String::new(),
    };
    let session = vmkeep_engine::session::WriteSession::new(&repo, &ix, 1).unwrap();
    let o = BackupOptions::new("vm", vmkeep_format::generation::SourceKind::Image);
    backup(&session, vec![disk("a", 1), disk("b", 2)], o, &NoProgress).unwrap();
    drop(session);
    let to = || RestoreTo::Target(Box::new(Out::default()));
    let e = restore(&repo, &restore_opts("latest"), to(), &NoProgress).unwrap_err();
    assert!(
        matches!(&e, Error::DiskNotChosen { count: 2, has, .. } if has == "a, b"),
        "{e}"
    );
    let mut o = restore_opts("latest");
    o.disk = Some("b".into());
    let r = restore(&repo, &o, to(), &NoProgress).unwrap();
    assert_eq!(r.disk, "b");
    assert_eq!(r.data_bytes, 2 * CS as u64);
}
