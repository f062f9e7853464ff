//! Maintenance under stress: bit rot is reported for exactly the
//! generations that reference the damaged object; backups and garbage
//! collection running at the same time never leave a generation pointing
//! at a missing chunk.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use vmkeep_engine::backend::LocalBackend;
use vmkeep_engine::index::MemIndex;
use vmkeep_engine::layout::object_path;
use vmkeep_engine::lock::{Lock, Mode};
use vmkeep_engine::repo::Repository;
use vmkeep_engine::verify::{verify, Subset};
use vmkeep_format::blob::BlobType;
use vmkeep_format::ObjectId;

mod common;
use common::backends::ForgetsAfterListing;
use common::*;

/// Every object path generation `gid` depends on, itself included.
fn dependencies_of(repo: &Repository, gid: &ObjectId) -> BTreeSet<String> {
    let mut s = dependencies(repo, gid);
    s.insert(object_path(BlobType::Generation, gid));
    s
}

fn disk(rng: &mut rand::rngs::StdRng, base: &[u8], churn: usize) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..churn {
        let at = rng.gen_range(0..v.len() - 100);
        rng.fill(&mut v[at..at + 100]);
    }
    v
}

#[test]
fn bit_rot_is_reported_for_exactly_the_generations_that_depend_on_it() {
    let d = tempfile::tempdir().unwrap();
    let repo = new_repo(d.path());
    let ix = MemIndex::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut base = vec![0u8; 24 * CS as usize];
    rng.fill(&mut base[..16 * CS as usize]);
    let mut gens = BTreeMap::new();
    let mut data = base.clone();
    for i in 0..4 {
        data = disk(&mut rng, &data, 3);
        let gid = backup(
            &repo,
            &ix,
            &data,
            if i % 2 == 0 { "a" } else { "b" },
            if i % 2 == 0 { "a" } else { "b" },
        );
        gens.insert(gid, data.clone());
    }
    let deps: BTreeMap<ObjectId, BTreeSet<String>> = gens
        .keys()
        .map(|g| (*g, dependencies_of(&repo, g)))
        .collect();
    let mut files: Vec<String> = deps
        .values()
        .flatten()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    files.sort();
    for trial in 0..100 {
        let victim = &files[rng.gen_range(0..files.len())];
        let path = d.path().join(victim);
        let orig = std::fs::read(&path).unwrap();
        let mut bad = orig.clone();
        let bit = rng.gen_range(0..bad.len() * 8);
        bad[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&path, &bad).unwrap();

        let expected: BTreeSet<ObjectId> = deps
            .iter()
            .filter(|(_, s)| s.contains(victim))
            .map(|(g, _)| *g)
            .collect();
        let r = verify(&repo, None, Subset::All, false).unwrap();
        let reported: BTreeSet<ObjectId> = r
            .generations
            .iter()
            .filter(|v| !v.damaged.is_empty())
            .map(|v| v.id)
            .collect();
        assert_eq!(
            reported, expected,
            "trial {trial}: flipped bit {bit} of {victim}"
        );
        assert_eq!(r.damage.len(), 1, "trial {trial}: {:?}", r.damage);
        assert_eq!(&r.damage[0].path, victim);
        for (gid, want) in &gens {
            let got = restore(&repo, gid);
            if expected.contains(gid) {
                let e = got
                    .expect_err("a damaged generation must not restore")
                    .to_string();
                if victim.starts_with("chunks/") {
                    let hexid = victim.rsplit('/').next().unwrap();
                    assert!(
                        e.contains(hexid),
                        "trial {trial}: error names the chunk: {e}"
                    );
                }
            } else {
                assert!(
                    got.unwrap() == *want,
                    "trial {trial}: intact generation {gid:?} restores"
                );
            }
        }
        std::fs::write(&path, &orig).unwrap();
    }
    assert!(verify(&repo, None, Subset::All, false).unwrap().clean());
}

#[test]
fn backups_and_gc_together_never_lose_a_referenced_chunk() {
    let d = tempfile::tempdir().unwrap();
    let repo = Arc::new(new_repo(d.path()));
    let ix = Arc::new(MemIndex::new());
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut base = vec![0u8; 12 * CS as usize];
    rng.fill(&mut base[..]);
    let expected = Arc::new(std::sync::Mutex::new(BTreeMap::<ObjectId, Vec<u8>>::new()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    std::thread::scope(|s| {
        // Backups: each generation changes some chunks and forgets the oldest
        // generation, so garbage keeps appearing.
        let (r1, i1, e1) = (repo.clone(), ix.clone(), expected.clone());
        s.spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(12);
            let mut data = base.clone();
            let mut n = 0;
            while std::time::Instant::now() < deadline {
                let _l =
                    Lock::acquire(r1.backend().clone(), Mode::Shared, "test backup", None).unwrap();
                data = disk(&mut rng, &data, 4);
                let gid = backup(&r1, &i1, &data, "vm", "vm");
                e1.lock().unwrap().insert(gid, data.clone());
                n += 1;
                if n > 3 {
                    let oldest = *e1.lock().unwrap().keys().next().unwrap();
                    r1.forget_generation(&oldest).unwrap();
                    e1.lock().unwrap().remove(&oldest);
                }
            }
        });
        let (r2, i2) = (repo.clone(), ix.clone());
        s.spawn(move || {
            let mut freed = 0;
            while std::time::Instant::now() < deadline {
                let l = Lock::acquire(r2.backend().clone(), Mode::Gc, "test gc", None).unwrap();
                let rep = vmkeep_engine::gc::gc_with_margin(&r2, Some(i2.as_ref()), &l, 0).unwrap();
                freed += rep.deleted;
                std::thread::sleep(std::time::Duration::from_millis(150));
            }
            assert!(
                freed > 0,
                "gc must have deleted something for the test to mean anything"
            );
        });
    });
    // After the storm: a final gc with nothing running empties the trash.
    let l = Lock::acquire(repo.backend().clone(), Mode::Gc, "final gc", None).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    vmkeep_engine::gc::gc_with_margin(&repo, Some(ix.as_ref()), &l, 0).unwrap();
    drop(l);
    let mut trash = 0;
    repo.backend()
        .list("trash", &mut |_| {
            trash += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(trash, 0, "the trash is empty when no backup runs");
    let r = verify(&repo, None, Subset::All, false).unwrap();
    assert!(r.clean(), "{:?}", r.damage);
    for (gid, want) in expected.lock().unwrap().iter() {
        assert!(restore(&repo, gid).unwrap() == *want, "generation {gid:?}");
    }
}

/// SPEC.md §13.4: an object a gc sweep moved to the trash while a backup
/// was deduplicating against it is still read (restore, verify) until phase
/// 2 puts it back; once no batch holds it, the error names it as missing.
#[test]
fn readers_find_objects_in_the_gc_trash() {
    let d = tempfile::tempdir().unwrap();
    let repo = new_repo(d.path());
    let ix = MemIndex::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut data = vec![0u8; 8 * CS as usize];
    rng.fill(&mut data[..]);
    let gid = backup(&repo, &ix, &data, "a", "a");
    let files: Vec<String> = dependencies_of(&repo, &gid)
        .into_iter()
        .filter(|f| f.starts_with("chunks/") || f.starts_with("pages/"))
        .collect();
    assert!(files.len() >= 9, "{files:?}");
    let b = repo.backend();
    b.put(
        "trashlog/100",
        b"",
        vmkeep_engine::backend::Durability::Immediate,
    )
    .unwrap();
    for f in &files {
        assert!(b
            .move_object(
                f,
                &format!("trash/100/{f}"),
                vmkeep_engine::backend::Durability::Immediate,
            )
            .unwrap());
    }
    assert_eq!(restore(&repo, &gid).unwrap(), data);
    let r = verify(&repo, None, Subset::All, false).unwrap();
    assert!(r.clean(), "{:?}", r.damage);
    // Without its batch record the trash is not searched.
    b.delete("trashlog/100").unwrap();
    let e = restore(&repo, &gid).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
}

/// `forget` takes a shared lock and so may run beside gc: a generation
/// listed by gc's mark phase and gone when loaded is skipped (it was
/// forgotten), and gc goes on; its own chunks become garbage, the other
/// generation stays whole.
#[test]
fn gc_skips_a_generation_forgotten_while_it_marks() {
    let d = tempfile::tempdir().unwrap();
    let ix = MemIndex::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let mut a = vec![0u8; 6 * CS as usize];
    rng.fill(&mut a[..]);
    let mut b = a.clone();
    rng.fill(&mut b[..2 * CS as usize]);
    let (ga, gb) = {
        let repo = new_repo(d.path());
        (
            backup(&repo, &ix, &a, "vm", "vm"),
            backup(&repo, &ix, &b, "vm", "vm"),
        )
    };
    let wrapper = ForgetsAfterListing {
        inner: LocalBackend::new(d.path()),
        victim: std::sync::Mutex::new(Some(object_path(BlobType::Generation, &ga))),
    };
    let repo = Repository::open(Arc::new(wrapper), Some(b"pw")).unwrap();
    let l = Lock::acquire(repo.backend().clone(), Mode::Gc, "gc", None).unwrap();
    // Only objects older than the run's start (to the second) are garbage.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let rep = vmkeep_engine::gc::gc_with_margin(&repo, Some(&ix), &l, 0)
        .expect("gc goes on past a generation forgotten while it marks");
    drop(l);
    assert_eq!(
        rep.generations, 1,
        "only the remaining generation is marked"
    );
    assert!(
        rep.trashed >= 2,
        "the forgotten generation's own chunks: {rep:?}"
    );
    assert!(restore(&repo, &gb).unwrap() == b);
    assert!(verify(&repo, None, Subset::All, false).unwrap().clean());
}

/// SPEC.md §13.4: phase 2 waits for a backup whose lock started within
/// the clock margin after the sweep's end E, since its clock may be ahead
/// of gc's; without the margin that backup passes for a later one.
#[test]
fn phase_two_waits_for_backups_started_within_the_margin_after_the_sweep() {
    let d = tempfile::tempdir().unwrap();
    let repo = new_repo(d.path());
    let ix = MemIndex::new();
    let b = repo.backend();
    let end = Repository::now() - 30;
    b.put(
        "trashlog/100",
        format!("{end}\n").as_bytes(),
        vmkeep_engine::backend::Durability::Immediate,
    )
    .unwrap();
    let _backup = Lock::acquire(b.clone(), Mode::Shared, "backup", None).unwrap();
    let l = Lock::acquire(b.clone(), Mode::Gc, "gc", None).unwrap();
    let rep = vmkeep_engine::gc::gc_with_margin(&repo, Some(&ix), &l, 60).unwrap();
    assert_eq!(rep.pending_batches, ["100"], "{rep:?}");
    assert!(b.exists("trashlog/100").unwrap());
    let rep = vmkeep_engine::gc::gc_with_margin(&repo, Some(&ix), &l, 0).unwrap();
    assert!(rep.pending_batches.is_empty(), "{rep:?}");
    assert!(!b.exists("trashlog/100").unwrap());
}
