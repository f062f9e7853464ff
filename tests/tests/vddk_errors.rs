//! Every VDDK error path gives its typed `VddkError`: missing library,
//! missing disk, wrong credentials, wrong thumbprint, out of range, write
//! on a read-only open, unknown metadata key, misaligned I/O, bad connect
//! spec, a second libdir, and injected host failures (retryable) — the last
//! ones in child processes, since they set the stand-in's environment.

use vmkeep_engine::source::DiskSource;
use vmkeep_engine::target::DiskTarget;
use vmkeep_engine::vddk::{init, ConnectSpec, VddkConnection, VddkError, VddkSource, VddkTarget};
use vmkeep_engine::Error;
use vmkeep_tests::vddk::{assert_child_passed, is_child, run_child, Rig, Variant};

const MIB: u64 = 1 << 20;

fn vddk(e: Error) -> VddkError {
    match e {
        Error::Vddk(v) => v,
        other => panic!("expected a VDDK error, got {other:?}"),
    }
}

#[test]
fn vddk_error_library_not_found() {
    let empty = tempfile::tempdir().unwrap();
    let e = vddk_sys::Library::load(empty.path()).unwrap_err();
    let e = VddkError::from_sys(e, "x");
    match &e {
        VddkError::LibraryNotFound { dir, tried } => {
            assert_eq!(dir, empty.path());
            assert!(
                tried.contains("libvixDiskLib.so.8") && tried.contains("lib64/libvixDiskLib.so.6")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!e.retryable());
}

#[test]
fn vddk_error_library_found_under_lib64() {
    let rig = Rig::get(Variant::Full);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lib64")).unwrap();
    let so = std::fs::read_link(rig.libdir.join("libvixDiskLib.so.8")).unwrap();
    std::os::unix::fs::symlink(&so, dir.path().join("lib64/libvixDiskLib.so.7")).unwrap();
    let lib = vddk_sys::Library::load(dir.path()).unwrap();
    assert_eq!(lib.version(), 7);
    assert!(lib.path().ends_with("lib64/libvixDiskLib.so.7"));
}

#[test]
fn vddk_error_second_libdir_conflicts() {
    let rig = Rig::get(Variant::Full);
    init::library(&rig.libdir).unwrap();
    let other = tempfile::tempdir().unwrap();
    match init::library(other.path()).unwrap_err() {
        VddkError::InitConflict { .. } => {}
        e => panic!("{e:?}"),
    }
}

#[test]
fn vddk_error_file_not_found() {
    let rig = Rig::get(Variant::Full);
    let e = VddkSource::open(
        &rig.libdir,
        &rig.remote_spec(),
        "[LocalDS_0] nope/disk.vmdk",
    )
    .err()
    .expect("open fails");
    match &e {
        VddkError::NotFound(f) => {
            assert_eq!(f.code, 4);
            assert_eq!(f.func, "VixDiskLib_Open");
            assert_eq!(f.object, "[LocalDS_0] nope/disk.vmdk");
            assert!(f.text.contains("FILE_NOT_FOUND"), "{}", f.text);
        }
        other => panic!("{other:?}"),
    }
    assert!(!e.retryable());
    // A datastore the map does not know is not found either.
    let e = VddkSource::open(&rig.libdir, &rig.remote_spec(), "[Other] a.vmdk")
        .err()
        .unwrap();
    assert_eq!(e.code(), Some(4));
}

#[test]
fn vddk_error_wrong_password_is_authentication_failed() {
    let rig = Rig::get(Variant::Full);
    let mut spec = rig.remote_spec();
    spec.password = Some("wrong".into());
    let e = VddkConnection::connect(&rig.libdir, spec)
        .err()
        .expect("connect fails");
    match &e {
        VddkError::AuthenticationFailed(f) => {
            assert_eq!(f.code, 35);
            assert_eq!(f.func, "VixDiskLib_ConnectEx");
            assert_eq!(f.object, "vcsim.test");
        }
        other => panic!("{other:?}"),
    }
    assert!(!e.retryable());
}

#[test]
fn vddk_error_wrong_thumbprint_fails_at_open() {
    let rig = Rig::get(Variant::Full);
    let path = rig.datastore_disk("tp/disk", MIB);
    let mut spec = rig.remote_spec();
    spec.thumbprint = Some("00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33".into());
    // ConnectEx succeeds (as with the real VDDK): the check happens at Open.
    let conn = VddkConnection::connect(&rig.libdir, spec).unwrap();
    let e = conn.open(&path, true).err().expect("open fails");
    match &e {
        VddkError::Failed(f) => {
            assert_eq!(f.code, 1);
            assert_eq!(f.func, "VixDiskLib_Open");
        }
        other => panic!("{other:?}"),
    }
    assert!(!e.retryable());
}

#[test]
fn vddk_error_bad_spec_is_refused_before_vddk() {
    let rig = Rig::get(Variant::Full);
    for (what, edit) in [
        (
            "thumbprint",
            Box::new(|s: &mut ConnectSpec| s.thumbprint = Some("AA:BB".into()))
                as Box<dyn Fn(&mut ConnectSpec)>,
        ),
        (
            "no thumbprint",
            Box::new(|s: &mut ConnectSpec| s.thumbprint = None),
        ),
        (
            "no moref",
            Box::new(|s: &mut ConnectSpec| s.vm_moref = None),
        ),
        ("no user", Box::new(|s: &mut ConnectSpec| s.user = None)),
    ] {
        let mut spec = rig.remote_spec();
        edit(&mut spec);
        match VddkConnection::connect(&rig.libdir, spec).err() {
            Some(VddkError::Invalid { .. }) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn vddk_error_out_of_range_read_only_key_and_misaligned() {
    let rig = Rig::get(Variant::Full);
    let path = rig.datastore_disk("errs/disk", MIB);
    let mut s = VddkSource::open(&rig.libdir, &rig.remote_spec(), &path).unwrap();
    let mut buf = vec![0u8; 1024];

    let e = s.disk().read_at(MIB - 512, &mut buf).unwrap_err();
    match &e {
        VddkError::OutOfRange(f) => assert_eq!((f.code, f.func), (16007, "VixDiskLib_Read")),
        other => panic!("{other:?}"),
    }
    // Through the DiskSource trait it is the engine's Error::Vddk.
    let e = vddk(s.read_at(MIB, &mut buf).unwrap_err());
    assert_eq!(e.code(), Some(16007));

    match s.disk().write_at(0, &buf).unwrap_err() {
        VddkError::ReadOnly(f) => assert_eq!((f.code, f.func), (11, "VixDiskLib_Write")),
        other => panic!("{other:?}"),
    }
    match s.disk().read_metadata("no.such.key").unwrap_err() {
        VddkError::KeyNotFound(f) => {
            assert_eq!((f.code, f.func), (16052, "VixDiskLib_ReadMetadata"))
        }
        other => panic!("{other:?}"),
    }
    for (off, len) in [(100u64, 512usize), (0, 100), (512, 513)] {
        let mut b = vec![0u8; len];
        match s.disk().read_at(off, &mut b).unwrap_err() {
            VddkError::Misaligned { object, .. } => assert_eq!(object, path),
            other => panic!("{other:?}"),
        }
    }
    let mut t = VddkTarget::open(&rig.libdir, &rig.remote_spec(), &path).unwrap();
    match vddk(t.write_at(10, &[0u8; 512]).unwrap_err()) {
        VddkError::Misaligned { .. } => {}
        other => panic!("{other:?}"),
    }
    // A target smaller than the restore is refused before writing.
    match t.prepare(2 * MIB).unwrap_err() {
        Error::TargetInvalid { .. } => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn vddk_error_injected_read_failure_is_retryable() {
    const NAME: &str = "vddk_error_injected_read_failure_is_retryable";
    if is_child(NAME) {
        let rig = Rig::get(Variant::Full);
        let path = rig.datastore_disk("fault/disk", MIB);
        let mut s = VddkSource::open(&rig.libdir, &rig.remote_spec(), &path).unwrap();
        let mut buf = vec![0u8; 4096];
        s.read_at(0, &mut buf).unwrap(); // read 1
        let e = vddk(s.read_at(4096, &mut buf).unwrap_err()); // read 2 fails
        match &e {
            VddkError::Connection(f) => assert_eq!((f.code, f.func), (14011, "VixDiskLib_Read")),
            other => panic!("{other:?}"),
        }
        assert!(e.retryable());
        s.read_at(4096, &mut buf).unwrap(); // read 3: the retry works
                                            // Short data at read 4: an EOF error, also retryable.
        let e = vddk(s.read_at(0, &mut buf).unwrap_err());
        assert_eq!(e.code(), Some(14005));
        assert!(e.retryable());
        return;
    }
    let out = run_child(
        NAME,
        &[
            ("VDDK_SIM_FAIL_READ_AT", "2"),
            ("VDDK_SIM_SHORT_READ_AT", "4"),
        ],
    );
    assert_child_passed(&out);
}

#[test]
fn vddk_error_slow_reads_still_complete() {
    const NAME: &str = "vddk_error_slow_reads_still_complete";
    if is_child(NAME) {
        let rig = Rig::get(Variant::Full);
        let path = rig.datastore_disk("slow/disk", MIB);
        let mut s = VddkSource::open(&rig.libdir, &rig.remote_spec(), &path).unwrap();
        let t0 = std::time::Instant::now();
        let mut buf = vec![0u8; 4096];
        for i in 0..3 {
            s.read_at(i * 4096, &mut buf).unwrap();
        }
        assert!(t0.elapsed() >= std::time::Duration::from_millis(150));
        return;
    }
    assert_child_passed(&run_child(NAME, &[("VDDK_SIM_SLOW_READ_MS", "50")]));
}
