//! A backup through VDDK equals a backup of the same file through the local
//! image source: identical manifests (same pages, same slot statistics),
//! with and without allocation queries.

use vmkeep_engine::source::ImageSource;
use vmkeep_engine::vddk::VddkSource;
use vmkeep_tests::vddk::{backup_manifest, scatter_data, scratch_repo, Rig, Variant};

const MIB: u64 = 1 << 20;

#[test]
fn vddk_backup_equals_local_image_backup() {
    let rig = Rig::get(Variant::Full);
    let path = rig.datastore_disk("bk/disk1", 24 * MIB);
    let flat = rig.flat_of("bk/disk1");
    scatter_data(&flat, 24 * MIB);
    let repo_dir = tempfile::tempdir().unwrap();
    let (repo, index) = scratch_repo(repo_dir.path());

    for use_allocation in [false, true] {
        let local = ImageSource::open(&flat, true).unwrap();
        let m_local = backup_manifest(&repo, &index, "disk1", Box::new(local), use_allocation);
        let vddk = VddkSource::open(&rig.libdir, &rig.remote_spec(), &path).unwrap();
        let m_vddk = backup_manifest(&repo, &index, "disk1", Box::new(vddk), use_allocation);
        assert_eq!(m_vddk.capacity, 24 * MIB);
        assert_eq!(m_vddk.capacity, m_local.capacity);
        assert_eq!(m_vddk.chunk_size, m_local.chunk_size);
        assert_eq!(m_vddk.pages, m_local.pages, "allocation {use_allocation}");
        assert_eq!(m_vddk.stats.data_slots, m_local.stats.data_slots);
        assert_eq!(m_vddk.stats.zero_slots, m_local.stats.zero_slots);
        assert!(m_vddk.stats.data_slots > 0 && m_vddk.stats.zero_slots > 0);
        // Everything VDDK read was already stored by the local backup.
        assert_eq!(m_vddk.stats.new_chunks, 0, "allocation {use_allocation}");
        if use_allocation {
            assert!(m_vddk.stats.read_bytes < 24 * MIB, "holes are not read");
        } else {
            assert_eq!(m_vddk.stats.read_bytes, 24 * MIB);
        }
    }
}
