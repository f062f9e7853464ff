//! Data through VDDK (the stand-in library): random data written with
//! `VddkTarget` reads back identically with `VddkSource` and is exactly
//! what lands in the flat file; local and datastore paths; allocation
//! queries; snapshot reads; metadata; the access guard.

use std::os::unix::fs::FileExt;

use vmkeep_engine::source::DiskSource;
use vmkeep_engine::target::DiskTarget;
use vmkeep_engine::vddk::{ConnectSpec, VddkSource, VddkTarget};
use vmkeep_tests::vddk::{make_flat_vmdk, random_bytes, Rig, Variant};

const MIB: u64 = 1 << 20;

fn write_pattern(t: &mut VddkTarget, size: u64) -> Vec<u8> {
    let mut expect = vec![0u8; size as usize];
    t.prepare(size).unwrap();
    // Data in 256 KiB pieces, leaving a zero hole in the middle that is
    // written explicitly as zeros.
    let piece = 256 * 1024;
    for (i, off) in (0..size).step_by(piece).enumerate() {
        if (2 * MIB..3 * MIB).contains(&off) {
            continue;
        }
        let data = random_bytes(i as u64 + 1, piece);
        t.write_at(off, &data).unwrap();
        expect[off as usize..off as usize + piece].copy_from_slice(&data);
    }
    t.write_zeros(2 * MIB, MIB).unwrap();
    t.finish().unwrap();
    expect
}

fn read_all(s: &mut VddkSource) -> Vec<u8> {
    let mut got = vec![0u8; s.capacity() as usize];
    for (i, c) in got.chunks_mut(MIB as usize).enumerate() {
        s.read_at(i as u64 * MIB, c).unwrap();
    }
    got
}

#[test]
fn vddk_roundtrip_local_disk_random_data() {
    let rig = Rig::get(Variant::Full);
    let dir = tempfile::tempdir().unwrap();
    let desc = dir.path().join("local.vmdk");
    let flat = make_flat_vmdk(&desc, 8 * MIB);
    let path = desc.to_str().unwrap();
    let local = ConnectSpec::default();

    let mut t = VddkTarget::open(&rig.libdir, &local, path).unwrap();
    assert_eq!(t.describe(), format!("vddk {path}"));
    let expect = write_pattern(&mut t, 8 * MIB);
    assert_eq!(t.disk().transport_mode().unwrap(), "file");
    drop(t);

    let mut s = VddkSource::open(&rig.libdir, &local, path).unwrap();
    assert_eq!(s.capacity(), 8 * MIB);
    let got = read_all(&mut s);
    assert!(got == expect, "VDDK read differs from what VDDK wrote");
    assert!(std::fs::read(&flat).unwrap() == expect, "flat file differs");
}

#[test]
fn vddk_roundtrip_datastore_disk_remote_connection() {
    let rig = Rig::get(Variant::Full);
    let path = rig.datastore_disk("rt/disk1", 6 * MIB);
    let spec = rig.remote_spec();

    let mut t = VddkTarget::open(&rig.libdir, &spec, &path).unwrap();
    assert_eq!(t.disk().transport_mode().unwrap(), "nbdssl");
    let expect = write_pattern(&mut t, 6 * MIB);
    drop(t);

    let mut s = VddkSource::open(&rig.libdir, &spec, &path).unwrap();
    let got = read_all(&mut s);
    assert!(got == expect, "VDDK read differs from what VDDK wrote");
    assert!(std::fs::read(rig.flat_of("rt/disk1")).unwrap() == expect);
    drop(s);

    // Both opens were bracketed by PrepareForAccess/EndAccess for vm-42.
    let log = rig.access_lines();
    let prepares = log
        .iter()
        .filter(|l| *l == "PrepareForAccess moref=vm-42 vmkeep")
        .count();
    let ends = log
        .iter()
        .filter(|l| *l == "EndAccess moref=vm-42 vmkeep")
        .count();
    assert!(prepares >= 2, "{log:?}");
    assert_eq!(
        prepares, ends,
        "every PrepareForAccess has its EndAccess: {log:?}"
    );
}

#[test]
fn vddk_allocated_follows_sparse_flat_file() {
    let rig = Rig::get(Variant::Full);
    let path = rig.datastore_disk("alloc/disk", 64 * MIB);
    let flat = std::fs::OpenOptions::new()
        .write(true)
        .open(rig.flat_of("alloc/disk"))
        .unwrap();
    flat.write_all_at(&[7u8; 4096], 10 * MIB).unwrap();
    flat.write_all_at(&[9u8; 100], 40 * MIB + 70_000).unwrap();
    drop(flat);

    let mut s = VddkSource::open(&rig.libdir, &rig.remote_spec(), &path).unwrap();
    let ext = s
        .allocated(0, 64 * MIB)
        .unwrap()
        .expect("QueryAllocatedBlocks is there");
    assert!(!ext.is_empty() && ext.len() <= 2, "{ext:?}");
    let covers = |off: u64| ext.iter().any(|e| e.offset <= off && off < e.end());
    assert!(covers(10 * MIB) && covers(10 * MIB + 4095));
    assert!(covers(40 * MIB + 70_000) && covers(40 * MIB + 70_099));
    assert!(!covers(0) && !covers(20 * MIB) && !covers(63 * MIB));
    let total: u64 = ext.iter().map(|e| e.length).sum();
    assert!(
        total <= 4 * 64 * 1024,
        "extents are chunk-sized, not whole-disk: {ext:?}"
    );
    // Sub-ranges are clipped to what was asked.
    let part = s.allocated(10 * MIB + 512, 1024).unwrap().unwrap();
    assert_eq!(part.len(), 1);
    assert_eq!((part[0].offset, part[0].length), (10 * MIB + 512, 1024));
    assert!(s.allocated(0, MIB).unwrap().unwrap().is_empty());
}

#[test]
fn vddk_snapshot_ref_reads_the_frozen_copy() {
    let rig = Rig::get(Variant::Full);
    let path = rig.datastore_disk("snapvm/disk1", 2 * MIB);
    let live = rig.flat_of("snapvm/disk1");
    std::fs::write(&live, vec![1u8; 2 * MIB as usize]).unwrap();
    let frozen_dir = rig.datastore.join(".vmkeep-snapshots/snapshot-17/snapvm");
    std::fs::create_dir_all(&frozen_dir).unwrap();
    std::fs::write(
        frozen_dir.join("disk1-flat.vmdk"),
        vec![2u8; 2 * MIB as usize],
    )
    .unwrap();

    let mut spec = rig.remote_spec();
    spec.snapshot_ref = Some("snapshot-17".into());
    let mut s = VddkSource::open(&rig.libdir, &spec, &path).unwrap();
    let mut buf = vec![0u8; 4096];
    s.read_at(MIB, &mut buf).unwrap();
    assert!(
        buf.iter().all(|&b| b == 2),
        "read the snapshot's frozen data"
    );

    // Without the snapshot, the live disk.
    let mut s = VddkSource::open(&rig.libdir, &rig.remote_spec(), &path).unwrap();
    s.read_at(MIB, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 1), "read the live data");
}

#[test]
fn vddk_metadata_written_then_read_back() {
    let rig = Rig::get(Variant::Full);
    let path = rig.datastore_disk("meta/disk", MIB);
    let mut t = VddkTarget::open(&rig.libdir, &rig.remote_spec(), &path).unwrap();
    t.disk()
        .write_metadata("vmkeep.generation", "abc123")
        .unwrap();
    t.disk().write_metadata("adapterType", "ide").unwrap();
    drop(t);
    let mut s = VddkSource::open(&rig.libdir, &rig.remote_spec(), &path).unwrap();
    let md = s.disk().metadata().unwrap();
    assert!(
        md.contains(&("vmkeep.generation".into(), "abc123".into())),
        "{md:?}"
    );
    assert!(md.contains(&("adapterType".into(), "ide".into())), "{md:?}");
    assert!(
        md.contains(&("geometry.heads".into(), "16".into())),
        "{md:?}"
    );
    assert_eq!(
        s.disk().read_metadata("vmkeep.generation").unwrap(),
        "abc123"
    );
    let info = s.disk().info().clone();
    assert_eq!(info.capacity_sectors, MIB / 512);
    assert_eq!(info.logical_sector_size, Some(512));
    assert!(info.uuid.is_some());
}

#[test]
fn vddk_write_zeros_keeps_thin_disk_thin() {
    let rig = Rig::get(Variant::Full);
    let path = rig.datastore_disk("thin/disk", 16 * MIB);
    let flat = rig.flat_of("thin/disk");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&flat)
        .unwrap()
        .write_all_at(&[5u8; 8192], 3 * MIB)
        .unwrap();
    let mut t = VddkTarget::open(&rig.libdir, &rig.remote_spec(), &path).unwrap();
    t.prepare(16 * MIB).unwrap();
    t.write_zeros(0, 16 * MIB).unwrap();
    t.finish().unwrap();
    drop(t);
    let data = std::fs::read(&flat).unwrap();
    assert!(data.iter().all(|&b| b == 0), "the written range was zeroed");
    // Only the one allocated chunk was written: the file stays sparse.
    use std::os::unix::fs::MetadataExt;
    let blocks = std::fs::metadata(&flat).unwrap().blocks() * 512;
    assert!(blocks <= MIB, "{blocks} bytes allocated after write_zeros");
}

#[test]
fn vddk_qemu_img_made_vmdk_is_readable_and_checks_out() {
    let rig = Rig::get(Variant::Full);
    let dir = tempfile::tempdir().unwrap();
    let vmdk = dir.path().join("q.vmdk");
    let st = std::process::Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "vmdk",
            "-o",
            "subformat=monolithicFlat",
        ])
        .arg(&vmdk)
        .arg("4M")
        .status()
        .expect("qemu-img is installed");
    assert!(st.success());
    let path = vmdk.to_str().unwrap();
    let mut t = VddkTarget::open(&rig.libdir, &ConnectSpec::default(), path).unwrap();
    let data = random_bytes(99, 4 * MIB as usize);
    t.prepare(4 * MIB).unwrap();
    t.write_at(0, &data).unwrap();
    t.finish().unwrap();
    drop(t);
    let raw = dir.path().join("q.raw");
    std::fs::write(&raw, &data).unwrap();
    let out = std::process::Command::new("qemu-img")
        .args(["compare", "-f", "vmdk", "-F", "raw"])
        .arg(&vmdk)
        .arg(&raw)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qemu-img compare: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
