//! vSphere client against the simulator: finding VMs by every key,
//! ambiguous names, reading the config of a VM with several disks, listing.

use std::time::Duration;

use vmkeep_tests::vcsim::Vcsim;
use vmkeep_vsphere::vm::parse_disks;
use vmkeep_vsphere::xml::Document;
use vmkeep_vsphere::{Client, ConnectOptions, Error, NewDisk, NewVm, TlsMode, VmSelector};

fn login(sim: &Vcsim) -> Client {
    let mut o = ConnectOptions::new(&sim.url, TlsMode::Verify);
    o.task_timeout = Duration::from_secs(60);
    Client::login(&o, &sim.user, &sim.password).expect("login")
}

fn new_vm(name: &str, disks: &[(u64, bool)]) -> NewVm {
    NewVm {
        name: name.into(),
        guest_id: "otherGuest64".into(),
        datastore: "LocalDS_0".into(),
        num_cpus: 1,
        memory_mb: 128,
        disks: disks
            .iter()
            .map(|&(capacity_bytes, thin)| NewDisk {
                capacity_bytes,
                thin,
            })
            .collect(),
    }
}

#[test]
fn find_vm_by_every_key() {
    let sim = Vcsim::start();
    let c = login(&sim);
    let by_name = c.find_vm(&VmSelector::Name("DC0_H0_VM0".into())).unwrap();
    assert_eq!(by_name.kind, "VirtualMachine");
    let info = c.vm_info(&by_name).unwrap();
    assert_eq!(info.name, "DC0_H0_VM0");
    assert!(!info.bios_uuid.is_empty() && !info.instance_uuid.is_empty());

    let sels = [
        VmSelector::parse("/DC0/vm/DC0_H0_VM0"),
        VmSelector::MoRef(by_name.value.clone()),
        VmSelector::BiosUuid(info.bios_uuid.clone()),
        VmSelector::InstanceUuid(info.instance_uuid.clone()),
    ];
    for sel in &sels {
        assert_eq!(c.find_vm(sel).unwrap(), by_name, "{sel}");
    }

    for sel in [
        VmSelector::Name("no-such-vm".into()),
        VmSelector::InventoryPath("/DC0/vm/no-such-vm".into()),
        VmSelector::MoRef("vm-999999".into()),
        VmSelector::BiosUuid("00000000-0000-0000-0000-000000000000".into()),
        VmSelector::InstanceUuid("00000000-0000-0000-0000-000000000000".into()),
    ] {
        let err = c.find_vm(&sel).expect_err("must not be found");
        assert!(matches!(err, Error::NotFound { .. }), "{sel}: {err:?}");
    }
}

#[test]
fn ambiguous_name_lists_every_match() {
    let sim = Vcsim::start();
    let c = login(&sim);
    let place = c.default_placement().unwrap();
    let a = c
        .create_vm(&place, &new_vm("twin", &[(1 << 20, true)]))
        .unwrap();
    // vSphere allows equal names in different folders; vcsim allows them
    // even in one folder, which is enough to make the name ambiguous.
    let b = c
        .create_vm(&place, &new_vm("twin", &[(1 << 20, true)]))
        .unwrap();
    assert_ne!(a, b);
    let err = c.find_vm(&VmSelector::Name("twin".into())).unwrap_err();
    match &err {
        Error::Ambiguous { name, matches } => {
            assert_eq!(name, "twin");
            let mut want = vec![a.value.clone(), b.value.clone()];
            want.sort();
            assert_eq!(matches, &want);
        }
        other => panic!("expected Ambiguous, got {other:?}"),
    }
    assert!(err.to_string().contains(&a.value) && err.to_string().contains(&b.value));
    // The moref still finds each one.
    assert_eq!(c.find_vm(&VmSelector::MoRef(a.value.clone())).unwrap(), a);
}

#[test]
fn create_vm_with_disks_and_read_its_config() {
    let sim = Vcsim::start();
    let c = login(&sim);
    let place = c.default_placement().unwrap();
    assert_eq!(place.datastore, "LocalDS_0");
    let sizes = [(1u64 << 20, true), (3 << 20, false), (2 << 20, true)];
    let vm = c.create_vm(&place, &new_vm("multi", &sizes)).unwrap();
    assert_eq!(c.find_vm(&VmSelector::Name("multi".into())).unwrap(), vm);

    let info = c.vm_info(&vm).unwrap();
    assert_eq!(info.name, "multi");
    assert!(!info.power_state.is_empty());
    assert!(
        info.hardware_version.starts_with("vmx-"),
        "{}",
        info.hardware_version
    );
    assert!(!info.change_tracking);
    assert_eq!(info.disks.len(), 3);
    for (d, &(size, thin)) in info.disks.iter().zip(&sizes) {
        assert_eq!(d.capacity_bytes, size);
        assert_eq!(d.thin, thin);
        assert_eq!(d.datastore_name, "LocalDS_0");
        assert!(d.file_name.starts_with("[LocalDS_0] ") && d.file_name.ends_with(".vmdk"));
        assert_eq!(d.disk_mode, "persistent");
        assert_eq!(d.controller_key, info.disks[0].controller_key);
        assert!(d.key != 0);
    }
    let units: Vec<_> = info.disks.iter().map(|d| d.unit_number).collect();
    assert_eq!(units, [Some(0), Some(1), Some(2)]);
    let mut files: Vec<_> = info.disks.iter().map(|d| d.file_name.clone()).collect();
    files.dedup();
    assert_eq!(files.len(), 3, "every disk has its own file");

    // The raw config is a standalone document with every disk in it.
    let doc = Document::parse(&info.config_xml).unwrap();
    assert_eq!(
        doc.root.xsi_type.as_deref(),
        Some("VirtualMachineConfigInfo")
    );
    assert_eq!(doc.root.child_text("name"), Some("multi"));
    assert_eq!(parse_disks(&doc.root), info.disks);

    // The simulator made flat files of the right size.
    let sim_disks = sim.disks("multi");
    assert_eq!(sim_disks.len(), 3);
    for (sd, d) in sim_disks.iter().zip(&info.disks) {
        assert_eq!(sd.key, d.key);
        assert_eq!(
            std::fs::metadata(&sd.flat_path).unwrap().len(),
            d.capacity_bytes
        );
    }

    // vm list reports it.
    let list = c.list_vms().unwrap();
    let row = list.iter().find(|r| r.moref == vm).unwrap();
    assert_eq!(row.disk_count, 3);
    assert_eq!(row.total_bytes, 6 << 20);
    assert!(!row.change_tracking);
    assert!(list.len() >= 5);
}
