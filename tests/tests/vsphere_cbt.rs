//! QueryChangedDiskAreas against the simulator's real block tracking:
//! ground truth after random writes with answers small enough to force
//! many calls, "*" for allocated areas, CBT reset detection, faults.

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};
use vmkeep_tests::vcsim::{SimDisk, Vcsim, VcsimOptions};
use vmkeep_vsphere::{ChangedAreas, Client, Fault, MoRef, NewDisk, NewVm};

const BLOCK: u64 = 64 * 1024;
const DISK: u64 = 8 << 20;
const LIMIT: u64 = 256 * 1024;

fn make_vm(c: &Client, name: &str) -> MoRef {
    let place = c.default_placement().unwrap();
    let vm = c
        .create_vm(
            &place,
            &NewVm {
                name: name.into(),
                guest_id: "otherGuest64".into(),
                datastore: place.datastore.clone(),
                num_cpus: 1,
                memory_mb: 64,
                disks: vec![NewDisk {
                    capacity_bytes: DISK,
                    thin: true,
                }],
            },
        )
        .unwrap();
    c.set_change_tracking(&vm, true).unwrap();
    vm
}

/// Random writes of random length; returns the byte ranges written.
fn random_writes(sim: &Vcsim, disk: &SimDisk, rng: &mut impl Rng, n: usize) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let len = rng.gen_range(1..=3 * BLOCK / 2);
        let off = rng.gen_range(0..disk.capacity - len);
        let data: Vec<u8> = (0..len).map(|_| rng.gen_range(1..=255u8)).collect();
        sim.write_live(disk, off, &data);
        out.push((off, len));
    }
    out
}

fn blocks_of(areas: &ChangedAreas) -> BTreeSet<u64> {
    let mut s = BTreeSet::new();
    for a in &areas.areas {
        assert_eq!(a.start % BLOCK, 0, "areas are block aligned here");
        for b in (a.start / BLOCK)..(a.end().div_ceil(BLOCK)) {
            s.insert(b);
        }
    }
    s
}

fn differing_blocks(old: &[u8], new: &[u8]) -> BTreeSet<u64> {
    old.chunks(BLOCK as usize)
        .zip(new.chunks(BLOCK as usize))
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, _)| i as u64)
        .collect()
}

fn nonzero_blocks(data: &[u8]) -> BTreeSet<u64> {
    data.chunks(BLOCK as usize)
        .enumerate()
        .filter(|(_, c)| c.iter().any(|&b| b != 0))
        .map(|(i, _)| i as u64)
        .collect()
}

fn assert_covers(areas: &ChangedAreas, writes: &[(u64, u64)]) {
    for &(off, len) in writes {
        let covered = areas
            .areas
            .iter()
            .any(|a| a.start <= off && off + len <= a.end())
            || (off..off + len)
                .step_by(512)
                .all(|p| areas.areas.iter().any(|a| a.start <= p && p < a.end()));
        assert!(covered, "write {off}+{len} is not reported as changed");
    }
}

#[test]
fn changed_areas_match_ground_truth_with_forced_paging() {
    let sim = Vcsim::start_with(VcsimOptions {
        answer_limit: Some(LIMIT),
        ..Default::default()
    });
    let c = sim.login();
    let vm = make_vm(&c, "cbt-truth");
    let disk = sim.disks(&vm.value).remove(0);
    assert_eq!(disk.capacity, DISK);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x766d6b656570);

    // Generation 1: full backup with "*".
    let w1 = random_writes(&sim, &disk, &mut rng, 20);
    let s1 = c.create_snapshot(&vm, "g1", "", false).unwrap().snapshot;
    let (d1, _) = c.snapshot_disks(&s1).unwrap();
    assert_eq!(d1[0].key, disk.key);
    let id1 = d1[0].change_id.clone().expect("changeId");
    let frozen1 = std::fs::read(sim.frozen_path(&s1.value, &disk)).unwrap();
    assert_eq!(frozen1.len() as u64, DISK);

    let calls_before = sim.qcda_calls();
    let all = c
        .query_changed_disk_areas(&vm, Some(&s1), disk.key, 0, DISK, "*")
        .unwrap();
    assert_eq!(all.calls as u64, DISK / LIMIT, "one call per {LIMIT} bytes");
    assert!(
        all.calls >= 10,
        "the limit must force 10+ calls, got {}",
        all.calls
    );
    assert_eq!(sim.qcda_calls() - calls_before, all.calls as u64);
    assert_eq!(blocks_of(&all), nonzero_blocks(&frozen1));
    assert_covers(&all, &w1);
    for w in all.areas.windows(2) {
        assert!(w[0].end() < w[1].start, "sorted and merged: {:?}", w);
    }
    c.remove_snapshot(&s1).unwrap();

    // Generation 2: incremental since id1, while the live disk keeps changing.
    let w2 = random_writes(&sim, &disk, &mut rng, 25);
    let s2 = c.create_snapshot(&vm, "g2", "", false).unwrap().snapshot;
    let frozen2 = std::fs::read(sim.frozen_path(&s2.value, &disk)).unwrap();
    random_writes(&sim, &disk, &mut rng, 10); // after the snapshot: must not show
    let changed = c
        .query_changed_disk_areas(&vm, Some(&s2), disk.key, 0, DISK, &id1)
        .unwrap();
    assert!(changed.calls >= 10);
    assert_eq!(blocks_of(&changed), differing_blocks(&frozen1, &frozen2));
    assert_covers(&changed, &w2);
    assert!(
        changed.total_bytes() < DISK,
        "an incremental is not the whole disk"
    );

    // Starting in the middle covers only the rest of the disk.
    let half = c
        .query_changed_disk_areas(&vm, Some(&s2), disk.key, DISK / 2, DISK, &id1)
        .unwrap();
    let want: BTreeSet<u64> = differing_blocks(&frozen1, &frozen2)
        .into_iter()
        .filter(|b| *b >= DISK / 2 / BLOCK)
        .collect();
    assert_eq!(blocks_of(&half), want);
    assert_eq!(half.calls as u64, DISK / 2 / LIMIT);

    // Nothing changed between a snapshot and itself.
    let (d2, _) = c.snapshot_disks(&s2).unwrap();
    let id2 = d2[0].change_id.clone().unwrap();
    let none = c
        .query_changed_disk_areas(&vm, Some(&s2), disk.key, 0, DISK, &id2)
        .unwrap();
    assert!(none.areas.is_empty(), "{:?}", none.areas);
    c.remove_snapshot(&s2).unwrap();
}

#[test]
fn cbt_reset_is_detected_as_file_fault() {
    let sim = Vcsim::start();
    let c = sim.login();
    let vm = make_vm(&c, "cbt-reset");
    let disk = sim.disks(&vm.value).remove(0);
    sim.write_live(&disk, 0, b"hello");
    let s1 = c.create_snapshot(&vm, "a", "", false).unwrap().snapshot;
    let id1 = c.snapshot_disks(&s1).unwrap().0[0]
        .change_id
        .clone()
        .unwrap();
    c.remove_snapshot(&s1).unwrap();

    c.set_change_tracking(&vm, false).unwrap();
    c.set_change_tracking(&vm, true).unwrap();
    let s2 = c.create_snapshot(&vm, "b", "", false).unwrap().snapshot;
    let id2 = c.snapshot_disks(&s2).unwrap().0[0]
        .change_id
        .clone()
        .unwrap();
    assert_ne!(
        id1.split('/').next(),
        id2.split('/').next(),
        "the epoch (UUID part) changes when CBT is reset"
    );
    let err = c
        .query_changed_disk_areas(&vm, Some(&s2), disk.key, 0, disk.capacity, &id1)
        .expect_err("a changeId from before the reset must be rejected");
    assert!(
        matches!(err.fault(), Some(Fault::FileFault { .. })),
        "{err:?}"
    );
    assert!(!err.retryable());
    // The new chain works.
    let ok = c
        .query_changed_disk_areas(&vm, Some(&s2), disk.key, 0, disk.capacity, &id2)
        .unwrap();
    assert!(ok.areas.is_empty());
    let garbage = c
        .query_changed_disk_areas(&vm, Some(&s2), disk.key, 0, disk.capacity, "52 00/1")
        .unwrap_err();
    assert!(
        matches!(garbage.fault(), Some(Fault::FileFault { .. })),
        "{garbage:?}"
    );
}

#[test]
fn query_faults_are_typed() {
    let sim = Vcsim::start();
    let c = sim.login();
    let place = c.default_placement().unwrap();
    let vm = c
        .create_vm(
            &place,
            &NewVm {
                name: "no-cbt".into(),
                guest_id: "otherGuest64".into(),
                datastore: place.datastore.clone(),
                num_cpus: 1,
                memory_mb: 64,
                disks: vec![NewDisk {
                    capacity_bytes: 1 << 20,
                    thin: true,
                }],
            },
        )
        .unwrap();
    let disk = sim.disks(&vm.value).remove(0);
    let s = c.create_snapshot(&vm, "x", "", false).unwrap().snapshot;
    // CBT off: the snapshot has no changeId and queries fail.
    assert_eq!(c.snapshot_disks(&s).unwrap().0[0].change_id, None);
    let err = c
        .query_changed_disk_areas(&vm, Some(&s), disk.key, 0, disk.capacity, "*")
        .unwrap_err();
    assert!(
        matches!(err.fault(), Some(Fault::FileFault { .. })),
        "{err:?}"
    );

    let ghost = MoRef::new("VirtualMachine", "vm-424242");
    let err = c
        .query_changed_disk_areas(&ghost, None, disk.key, 0, disk.capacity, "*")
        .unwrap_err();
    assert!(
        matches!(err.fault(), Some(Fault::ManagedObjectNotFound { .. })),
        "{err:?}"
    );
    assert!(!err.to_string().contains('<'), "{err}");
}
