//! Garbage collection and statistics over a damaged repository (SPEC.md
//! §13.4): an unreadable generation, manifest or page never stops gc and
//! never loses what it might name, while what nothing can name still goes;
//! trash batches follow the same rule; gc says why it kept garbage newer
//! than its cut-off; `stats` tells referenced data from garbage and goes on
//! past a damaged generation.
//!
//! The fixture: generations A and B (sharing chunks), a forgotten
//! generation F with chunks, page and manifest of its own, an orphan chunk
//! no page names (an interrupted backup's), and an orphan page naming one
//! more chunk of its own; every object aged two hours, gc run with a clock
//! margin of 0.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rand::{Rng, SeedableRng};
use vmkeep_engine::backend::Durability;
use vmkeep_engine::gc::{gc, gc_with_margin, GcReport, CLOCK_MARGIN};
use vmkeep_engine::index::MemIndex;
use vmkeep_engine::layout::object_path;
use vmkeep_engine::lock::{Lock, Mode};
use vmkeep_engine::repo::Repository;
use vmkeep_engine::stats::repo_stats;
use vmkeep_engine::verify::{verify, Subset};
use vmkeep_format::blob::BlobType;
use vmkeep_format::manifest::ManifestPage;
use vmkeep_format::ObjectId;

mod common;
use common::*;

/// Every file under `dir` (recursively).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            walk(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

/// Paths of the files under `sub` of the repository, relative to its root.
fn files(root: &Path, sub: &str) -> BTreeSet<String> {
    let mut v = Vec::new();
    walk(&root.join(sub), &mut v);
    v.iter()
        .map(|p| p.strip_prefix(root).unwrap().to_str().unwrap().to_string())
        .collect()
}

fn of_type<'a>(s: &'a BTreeSet<String>, dir: &str) -> impl Iterator<Item = &'a String> {
    let dir = dir.to_string();
    s.iter().filter(move |p| p.starts_with(&dir))
}

struct Fx {
    dir: tempfile::TempDir,
    repo: Repository,
    ix: MemIndex,
    a: (ObjectId, Vec<u8>),
    b: (ObjectId, Vec<u8>),
    /// What A and B depend on.
    live: BTreeSet<String>,
    /// What only the forgotten F depended on: manifest, page, chunks.
    f_only: BTreeSet<String>,
    /// B's own manifest and page (A does not share them).
    b_manifest: String,
    b_page: String,
    orphan_chunk: String,
    orphan_page: String,
    /// The chunk only the orphan page names.
    page_chunk: String,
}

impl Fx {
    fn new(seed: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = new_repo(dir.path());
        let ix = MemIndex::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut a = vec![0u8; 6 * CS as usize];
        rng.fill(&mut a[..]);
        let mut b = a.clone();
        rng.fill(&mut b[..2 * CS as usize]);
        let mut f = vec![0u8; 4 * CS as usize];
        rng.fill(&mut f[..]);
        let (ga, gf, gb) = (
            backup(&repo, &ix, &a, "vm", "d"),
            backup(&repo, &ix, &f, "vm", "d"),
            backup(&repo, &ix, &b, "vm", "d"),
        );
        let (da, db) = (dependencies(&repo, &ga), dependencies(&repo, &gb));
        let live: BTreeSet<String> = da.union(&db).cloned().collect();
        let f_only: BTreeSet<String> = dependencies(&repo, &gf)
            .difference(&live)
            .cloned()
            .collect();
        assert_eq!(f_only.len(), 6, "F's manifest, page, 4 chunks: {f_only:?}");
        let b_own: BTreeSet<String> = db.difference(&da).cloned().collect();
        let pick = |dir: &str| of_type(&b_own, dir).next().unwrap().clone();
        let (b_manifest, b_page) = (pick("manifests/"), pick("pages/"));
        let chunk = |rng: &mut rand::rngs::StdRng| {
            let mut v = vec![0u8; 5000];
            rng.fill(&mut v[..]);
            repo.put_object(BlobType::Chunk, &v, Durability::Immediate)
                .unwrap()
                .0
        };
        let orphan = chunk(&mut rng);
        let paged = chunk(&mut rng);
        let page = ManifestPage {
            entries: vec![paged],
        };
        let (pid, _) = repo
            .put_object(
                BlobType::ManifestPage,
                &page.encode(),
                Durability::Immediate,
            )
            .unwrap();
        repo.forget_generation(&gf).unwrap();
        // Everything is old garbage or old live data.
        let old = SystemTime::now() - Duration::from_secs(2 * 3600);
        for sub in ["chunks", "pages", "manifests", "generations"] {
            for f in files(dir.path(), sub) {
                std::fs::File::options()
                    .write(true)
                    .open(dir.path().join(f))
                    .unwrap()
                    .set_modified(old)
                    .unwrap();
            }
        }
        Fx {
            repo,
            ix,
            a: (ga, a),
            b: (gb, b),
            live,
            f_only,
            b_manifest,
            b_page,
            orphan_chunk: object_path(BlobType::Chunk, &orphan),
            orphan_page: object_path(BlobType::ManifestPage, &pid),
            page_chunk: object_path(BlobType::Chunk, &paged),
            dir,
        }
    }

    fn gc(&self) -> GcReport {
        let l = Lock::acquire(self.repo.backend().clone(), Mode::Gc, "gc", None).unwrap();
        gc_with_margin(&self.repo, Some(&self.ix), &l, 0).expect("damage never stops gc")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    /// Flips a byte in the middle of `rel`; returns its intact bytes.
    fn damage(&self, rel: &str) -> Vec<u8> {
        let orig = std::fs::read(self.path(rel)).unwrap();
        let mut bad = orig.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        std::fs::write(self.path(rel), &bad).unwrap();
        orig
    }

    /// Puts the intact bytes back; both generations then restore and
    /// verify whole.
    fn repair_and_check(&self, rel: &str, orig: &[u8]) {
        std::fs::write(self.path(rel), orig).unwrap();
        assert!(
            restore(&self.repo, &self.a.0).unwrap() == self.a.1,
            "A restores"
        );
        assert!(
            restore(&self.repo, &self.b.0).unwrap() == self.b.1,
            "B restores"
        );
        let r = verify(&self.repo, None, Subset::All, false).unwrap();
        assert!(r.clean(), "{:?}", r.damage);
    }

    fn assert_live_kept(&self) {
        for p in &self.live {
            assert!(self.exists(p), "{p} of a live generation was deleted");
        }
    }

    fn assert_state(&self, what: &str, kept: &[&str], gone: &[&str]) {
        for p in kept {
            assert!(self.exists(p), "{what}: {p} must stay");
        }
        for p in gone {
            assert!(!self.exists(p), "{what}: {p} must be deleted");
        }
        assert!(
            files(self.dir.path(), "trash").is_empty(),
            "{what}: trash emptied"
        );
    }

    fn f_of(&self, dir: &str) -> Vec<&str> {
        of_type(&self.f_only, dir).map(String::as_str).collect()
    }
}

/// One unreadable object named in the report with its type.
#[track_caller]
fn only_unreadable(rep: &GcReport, ty: BlobType, rel: &str) {
    assert_eq!(rep.unreadable.len(), 1, "{rep:?}");
    let u = &rep.unreadable[0];
    assert_eq!(u.ty, ty, "{rep:?}");
    assert!(rel.ends_with(&u.id.to_hex()), "{u:?} is not {rel}");
}

#[test]
fn gc_keeps_every_manifest_when_a_generation_is_damaged() {
    let fx = Fx::new(1);
    let gpath = object_path(BlobType::Generation, &fx.b.0);
    let orig = fx.damage(&gpath);
    let rep = fx.gc();
    only_unreadable(&rep, BlobType::Generation, &gpath);
    let msg = rep.unreadable[0].to_string();
    assert!(
        msg.contains(&format!("generation {} cannot be read", fx.b.0.short()))
            && msg.contains("every manifest is kept")
            && msg.contains(&format!("vmkeep forget {}", fx.b.0.to_hex())),
        "{msg}"
    );
    fx.assert_live_kept();
    // Every manifest is a root: the forgotten one keeps its page and chunks.
    let f: Vec<&str> = fx.f_only.iter().map(String::as_str).collect();
    // What no manifest names goes.
    fx.assert_state(
        "damaged generation",
        &f,
        &[&fx.orphan_chunk, &fx.orphan_page, &fx.page_chunk],
    );
    assert_eq!(rep.deleted, 3, "{rep:?}");
    fx.repair_and_check(&gpath, &orig);
}

#[test]
fn gc_keeps_every_page_when_a_manifest_is_damaged_or_missing() {
    for missing in [false, true] {
        let fx = Fx::new(2);
        let what = if missing { "missing" } else { "damaged" };
        let m = fx.b_manifest.clone();
        let orig = if missing {
            let o = std::fs::read(fx.path(&m)).unwrap();
            std::fs::remove_file(fx.path(&m)).unwrap();
            o
        } else {
            fx.damage(&m)
        };
        let rep = fx.gc();
        only_unreadable(&rep, BlobType::Manifest, &m);
        assert!(
            rep.unreadable[0]
                .to_string()
                .contains("every manifest page is kept"),
            "{rep:?}"
        );
        if missing {
            assert_eq!(rep.unreadable[0].reason, "missing");
            // Back, so the live set below is whole again.
            std::fs::write(fx.path(&m), &orig).unwrap();
        }
        fx.assert_live_kept();
        // Every page is a root, with the chunks it names; manifests are
        // still marked, so the forgotten one goes; the orphan chunk too.
        let mut kept = fx.f_of("pages/");
        kept.extend(fx.f_of("chunks/"));
        kept.extend([fx.orphan_page.as_str(), fx.page_chunk.as_str()]);
        let mut gone = fx.f_of("manifests/");
        gone.push(&fx.orphan_chunk);
        fx.assert_state(&format!("{what} manifest"), &kept, &gone);
        assert_eq!(rep.deleted, 2, "{rep:?}");
        fx.repair_and_check(&m, &orig);
    }
}

#[test]
fn gc_deletes_no_chunk_when_a_page_is_damaged() {
    let fx = Fx::new(3);
    let p = fx.b_page.clone();
    let chunks_before = files(fx.dir.path(), "chunks");
    let orig = fx.damage(&p);
    let rep = fx.gc();
    only_unreadable(&rep, BlobType::ManifestPage, &p);
    assert!(
        rep.unreadable[0]
            .to_string()
            .contains("no chunk is collected"),
        "{rep:?}"
    );
    assert_eq!(
        files(fx.dir.path(), "chunks"),
        chunks_before,
        "no chunk deleted"
    );
    // Pages and manifests are still marked: the unnamed ones go.
    let mut gone = fx.f_of("manifests/");
    gone.extend(fx.f_of("pages/"));
    gone.push(&fx.orphan_page);
    fx.assert_state("damaged page", &[&p], &gone);
    assert_eq!(rep.deleted, 3, "{rep:?}");
    fx.repair_and_check(&p, &orig);
}

/// A batch trashed by an earlier gc (left pending by a running backup) is
/// emptied after a generation, manifest or page became unreadable: every
/// trashed object of the type with unknown marks is put back, with what
/// the put-back objects name.
#[test]
fn phase_two_puts_back_the_trashed_objects_of_an_unknown_type() {
    for kind in [
        BlobType::Generation,
        BlobType::Manifest,
        BlobType::ManifestPage,
    ] {
        let fx = Fx::new(4);
        let shared =
            Lock::acquire(fx.repo.backend().clone(), Mode::Shared, "backup", None).unwrap();
        let first = fx.gc();
        assert_eq!(first.pending_batches.len(), 1, "{first:?}");
        assert_eq!(first.trashed, 9, "F's 6, the orphans' 3: {first:?}");
        drop(shared);
        let target = match kind {
            BlobType::Generation => object_path(BlobType::Generation, &fx.b.0),
            BlobType::Manifest => fx.b_manifest.clone(),
            _ => fx.b_page.clone(),
        };
        let orig = fx.damage(&target);
        let rep = fx.gc();
        only_unreadable(&rep, kind, &target);
        assert!(rep.pending_batches.is_empty(), "{rep:?}");
        assert_eq!(rep.trashed, 0, "{rep:?}");
        fx.assert_live_kept();
        let (fm, fp, fc) = (fx.f_of("manifests/"), fx.f_of("pages/"), fx.f_of("chunks/"));
        let (oc, op, pc) = (
            fx.orphan_chunk.as_str(),
            fx.orphan_page.as_str(),
            fx.page_chunk.as_str(),
        );
        let (back, gone): (Vec<&str>, Vec<&str>) = match kind {
            // Manifests put back, with their pages and chunks.
            BlobType::Generation => ([fm, fp, fc].concat(), vec![oc, op, pc]),
            // Pages put back, with their chunks.
            BlobType::Manifest => ([fp, fc, vec![op, pc]].concat(), [fm, vec![oc]].concat()),
            // Chunks put back.
            _ => ([fc, vec![oc, pc]].concat(), [fm, fp, vec![op]].concat()),
        };
        fx.assert_state(&format!("unreadable {}", kind.name()), &back, &gone);
        assert_eq!(rep.restored as usize, back.len(), "{rep:?}");
        assert_eq!(rep.deleted as usize, gone.len(), "{rep:?}");
        fx.repair_and_check(&target, &orig);
    }
}

/// gc right after forget frees nothing: the forgotten generation's objects
/// are newer than the cut-off. The report counts them and says why.
#[test]
fn gc_reports_garbage_kept_as_newer_than_the_cut_off() {
    let d = tempfile::tempdir().unwrap();
    let repo = new_repo(d.path());
    let ix = MemIndex::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut a = vec![0u8; 3 * CS as usize];
    rng.fill(&mut a[..]);
    let mut f = vec![0u8; 4 * CS as usize];
    rng.fill(&mut f[..]);
    backup(&repo, &ix, &a, "vm", "d");
    let gf = backup(&repo, &ix, &f, "vm", "d");
    let f_files = dependencies(&repo, &gf);
    let f_bytes: u64 = f_files
        .iter()
        .map(|p| std::fs::metadata(d.path().join(p)).unwrap().len())
        .sum();
    repo.forget_generation(&gf).unwrap();

    let l = Lock::acquire(repo.backend().clone(), Mode::Gc, "gc", None).unwrap();
    let before = Repository::now();
    let rep = gc(&repo, Some(&ix), &l).unwrap();
    assert_eq!(rep.trashed, 0, "{rep:?}");
    assert_eq!(rep.kept_recent, f_files.len() as u64, "{rep:?}");
    assert_eq!(rep.kept_recent_bytes, f_bytes, "{rep:?}");
    assert_eq!(rep.margin, CLOCK_MARGIN);
    assert!(rep.cutoff_lock.is_none(), "{rep:?}");
    assert!(
        (before - CLOCK_MARGIN..=Repository::now() - CLOCK_MARGIN).contains(&rep.cutoff),
        "{rep:?}"
    );
    assert_eq!(rep.cutoff_reason(), "60 s clock margin");

    // A running backup that started an hour ago moves the cut-off back.
    let started = Repository::now() - 3600;
    let lock = format!(
        "{{\"host\":\"{}\",\"pid\":{},\"command\":\"vmkeep backup old\",\"mode\":\"shared\",\"started\":{started},\"refreshed\":{},\"parent\":null}}\n",
        vmkeep_engine::host::hostname(),
        std::process::id(),
        Repository::now()
    );
    repo.backend()
        .put(
            "locks/00112233aabbccdd",
            lock.as_bytes(),
            Durability::Immediate,
        )
        .unwrap();
    let rep = gc_with_margin(&repo, Some(&ix), &l, 0).unwrap();
    assert_eq!(rep.trashed, 0, "{rep:?}");
    assert_eq!(rep.kept_recent, f_files.len() as u64, "{rep:?}");
    assert_eq!(rep.cutoff, started, "{rep:?}");
    let why = rep.cutoff_reason();
    assert!(
        why.contains("0 s clock margin before the start of the oldest live shared lock")
            && why.contains("vmkeep backup old"),
        "{why}"
    );
}

#[test]
fn stats_separate_garbage_and_survive_a_damaged_generation() {
    let fx = Fx::new(6);
    let s = repo_stats(&fx.repo, &fx.ix).unwrap();
    let size = |p: &String| std::fs::metadata(fx.path(p)).unwrap().len();
    let live_chunks: Vec<&String> = of_type(&fx.live, "chunks/").collect();
    let f_chunks: Vec<&String> = of_type(&fx.f_only, "chunks/").collect();
    assert_eq!(s.generations, 2, "{s:?}");
    assert_eq!(s.chunks, live_chunks.len() as u64, "{s:?}");
    assert_eq!(s.unique_bytes, 8 * CS as u64, "{s:?}");
    assert_eq!(
        s.stored_bytes,
        live_chunks.iter().map(|p| size(p)).sum::<u64>(),
        "{s:?}"
    );
    // The forgotten generation's chunks and page await gc (the orphans were
    // never indexed).
    assert_eq!(s.garbage_chunks, 4, "{s:?}");
    assert_eq!(
        s.garbage_stored_bytes,
        f_chunks.iter().map(|p| size(p)).sum::<u64>(),
        "{s:?}"
    );
    assert_eq!(s.garbage_pages, 1, "{s:?}");
    assert_eq!(s.unindexed_chunks, 0, "{s:?}");
    // 12 slots of data over 8 referenced chunks.
    assert!((s.dedup_ratio - 1.5).abs() < 1e-9, "{s:?}");
    assert!(s.damaged_generations.is_empty() && s.damaged_objects.is_empty());

    let gpath = object_path(BlobType::Generation, &fx.b.0);
    fx.damage(&gpath);
    let s = repo_stats(&fx.repo, &fx.ix).expect("a damaged generation is reported, not fatal");
    assert_eq!(s.generations, 1, "{s:?}");
    assert_eq!(s.damaged_generations.len(), 1, "{s:?}");
    assert_eq!(s.damaged_generations[0].id, fx.b.0);
    assert_eq!(s.chunks, 6, "A's chunks: {s:?}");
    assert_eq!(s.garbage_chunks, 6, "F's 4, B's own 2: {s:?}");
    assert!((s.dedup_ratio - 1.0).abs() < 1e-9, "{s:?}");
}
