//! A VDDK without QueryAllocatedBlocks (the stand-in built with feature
//! `no-query-allocated`, like VDDK before 6.7): the source says "cannot
//! tell", the missing function is a typed error naming it, and a backup
//! still works by reading everything — with the same manifest as the local
//! image source.

use vmkeep_engine::source::{DiskSource, ImageSource};
use vmkeep_engine::vddk::{init, VddkError, VddkSource};
use vmkeep_tests::vddk::{backup_manifest, scatter_data, scratch_repo, Rig, Variant};

const MIB: u64 = 1 << 20;

#[test]
fn vddk_without_query_allocated_backs_up_by_reading_everything() {
    let rig = Rig::get(Variant::NoQueryAllocated);
    let lib = init::library(&rig.libdir).unwrap();
    assert!(!lib.has_symbol("VixDiskLib_QueryAllocatedBlocks"));
    assert!(lib.has_symbol("VixDiskLib_Read"));
    match lib.vix_query_allocated_blocks() {
        Err(e) => match VddkError::from_sys(e, "x") {
            VddkError::MissingFunction(f) => assert_eq!(f, "VixDiskLib_QueryAllocatedBlocks"),
            other => panic!("{other:?}"),
        },
        Ok(_) => panic!("the symbol should be missing"),
    }

    let path = rig.datastore_disk("old/disk", 16 * MIB);
    let flat = rig.flat_of("old/disk");
    scatter_data(&flat, 16 * MIB);
    let mut s = VddkSource::open(&rig.libdir, &rig.remote_spec(), &path).unwrap();
    assert!(!s.disk().can_query_allocated());
    assert_eq!(s.allocated(0, 16 * MIB).unwrap(), None);

    let repo_dir = tempfile::tempdir().unwrap();
    let (repo, index) = scratch_repo(repo_dir.path());
    let m_vddk = backup_manifest(&repo, &index, "d", Box::new(s), true);
    assert_eq!(m_vddk.stats.read_bytes, 16 * MIB, "everything was read");
    let local = ImageSource::open(&flat, true).unwrap();
    let m_local = backup_manifest(&repo, &index, "d", Box::new(local), true);
    assert_eq!(m_vddk.pages, m_local.pages);
    assert_eq!(m_vddk.stats.data_slots, m_local.stats.data_slots);
    assert_eq!(m_vddk.stats.zero_slots, m_local.stats.zero_slots);
}
