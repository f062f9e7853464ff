//! vSphere client against the simulator: CBT on/off, snapshots (create,
//! freeze, quiesce fallback, revert, remove), power operations, faults.

use vmkeep_tests::vcsim::Vcsim;
use vmkeep_vsphere::{Client, Error, Fault, MoRef, VmSelector};

fn vm0(c: &Client) -> MoRef {
    c.find_vm(&VmSelector::Name("DC0_H0_VM0".into())).unwrap()
}

#[test]
fn enable_and_disable_cbt() {
    let sim = Vcsim::start();
    let c = sim.login();
    let vm = vm0(&c);
    assert!(!c.vm_info(&vm).unwrap().change_tracking);
    c.set_change_tracking(&vm, true).unwrap();
    assert!(c.vm_info(&vm).unwrap().change_tracking);
    let row = c
        .list_vms()
        .unwrap()
        .into_iter()
        .find(|r| r.moref == vm)
        .unwrap();
    assert!(row.change_tracking);
    c.set_change_tracking(&vm, false).unwrap();
    assert!(!c.vm_info(&vm).unwrap().change_tracking);
}

#[test]
fn snapshot_create_freeze_revert_remove() {
    let sim = Vcsim::start();
    let c = sim.login();
    let vm = vm0(&c);
    c.set_change_tracking(&vm, true).unwrap();
    let disk = sim.disks(&vm.value).remove(0);

    sim.write_live(&disk, 0, &[0xAA; 4096]);
    let s1 = c.create_snapshot(&vm, "vmkeep-1", "first", false).unwrap();
    assert!(!s1.quiesced && s1.quiesce_error.is_none());
    sim.write_live(&disk, 0, &[0xBB; 4096]);
    let s2 = c.create_snapshot(&vm, "vmkeep-2", "second", true).unwrap();
    assert!(s2.quiesced);
    assert_eq!(s2.quiesce_error, None);
    sim.write_live(&disk, 0, &[0xCC; 4096]);

    // Each snapshot froze the disk content of its moment.
    let f1 = std::fs::read(sim.frozen_path(&s1.snapshot.value, &disk)).unwrap();
    let f2 = std::fs::read(sim.frozen_path(&s2.snapshot.value, &disk)).unwrap();
    assert_eq!(f1[..4096], [0xAA; 4096]);
    assert_eq!(f2[..4096], [0xBB; 4096]);
    assert_eq!(sim.read_live(&disk)[..4096], [0xCC; 4096]);

    // The tree nests s2 under s1; the snapshot's disks carry changeIds.
    let info = c.vm_info(&vm).unwrap();
    assert_eq!(info.snapshots.len(), 1);
    assert_eq!(info.snapshots[0].snapshot, s1.snapshot);
    assert_eq!(info.snapshots[0].name, "vmkeep-1");
    assert_eq!(info.snapshots[0].description, "first");
    assert_eq!(info.snapshots[0].children[0].snapshot, s2.snapshot);
    assert_eq!(info.current_snapshot.as_ref(), Some(&s2.snapshot));
    let (d1, cfg1) = c.snapshot_disks(&s1.snapshot).unwrap();
    let (d2, _) = c.snapshot_disks(&s2.snapshot).unwrap();
    let id1 = d1[0].change_id.clone().expect("changeId on snapshot 1");
    let id2 = d2[0].change_id.clone().expect("changeId on snapshot 2");
    assert_ne!(id1, id2);
    assert_eq!(
        id1.split('/').next(),
        id2.split('/').next(),
        "same CBT epoch"
    );
    assert!(cfg1.contains("VirtualMachineConfigInfo"));

    // Revert to s1: current snapshot and disk content go back.
    c.revert_to_snapshot(&s1.snapshot).unwrap();
    assert_eq!(
        c.vm_info(&vm).unwrap().current_snapshot,
        Some(s1.snapshot.clone())
    );
    assert_eq!(sim.read_live(&disk)[..4096], [0xAA; 4096]);

    // Remove both; the frozen copies go with them.
    c.remove_snapshot(&s2.snapshot).unwrap();
    c.remove_snapshot(&s1.snapshot).unwrap();
    let info = c.vm_info(&vm).unwrap();
    assert!(info.snapshots.is_empty(), "{:?}", info.snapshots);
    assert!(!sim.frozen_path(&s1.snapshot.value, &disk).exists());
    assert!(!sim.frozen_path(&s2.snapshot.value, &disk).exists());

    // A removed snapshot is a typed ManagedObjectNotFound.
    let err = c.remove_snapshot(&s1.snapshot).unwrap_err();
    assert!(
        matches!(err.fault(), Some(Fault::ManagedObjectNotFound { .. })),
        "{err:?}"
    );
    assert!(!err.retryable());
}

#[test]
fn failed_quiesce_falls_back_to_crash_consistent_and_says_so() {
    let sim = Vcsim::start();
    let c = sim.login();
    let vm = vm0(&c);
    sim.set_fail_quiesce(true);
    let s = c.create_snapshot(&vm, "vmkeep-q", "", true).unwrap();
    assert!(!s.quiesced);
    let why = s.quiesce_error.expect("the fallback is reported");
    assert!(why.contains("ApplicationQuiesceFault"), "{why}");
    assert_eq!(
        c.vm_info(&vm).unwrap().current_snapshot,
        Some(s.snapshot.clone())
    );
    c.remove_snapshot(&s.snapshot).unwrap();
}

#[test]
fn power_operations_and_invalid_state_fault() {
    let sim = Vcsim::start();
    let c = sim.login();
    let vm = vm0(&c);
    assert_eq!(c.vm_info(&vm).unwrap().power_state, "poweredOn");
    c.power_off(&vm).unwrap();
    assert_eq!(c.vm_info(&vm).unwrap().power_state, "poweredOff");
    let err = c.power_off(&vm).unwrap_err();
    assert_eq!(err.fault(), Some(&Fault::InvalidState), "{err:?}");
    assert!(
        matches!(&err, Error::Fault { kind, .. } if kind == "InvalidPowerState"),
        "{err:?}"
    );
    c.power_on(&vm).unwrap();
    assert_eq!(c.vm_info(&vm).unwrap().power_state, "poweredOn");
}

#[test]
fn unknown_objects_are_typed_faults() {
    let sim = Vcsim::start();
    let c = sim.login();
    let ghost = MoRef::new("VirtualMachine", "vm-424242");
    let err = c.vm_info(&ghost).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let err = c.power_on(&ghost).unwrap_err();
    assert!(
        matches!(err.fault(), Some(Fault::ManagedObjectNotFound { .. })),
        "{err:?}"
    );
    assert!(!err.to_string().contains('<'), "{err}");
}
