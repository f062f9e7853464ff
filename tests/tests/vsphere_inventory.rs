//! vSphere client against the simulator: finding VMs by every key (and by
//! the bare shapes `--vm` accepts), refusing ambiguous names and UUIDs with
//! every candidate named, reading the config of a VM with several disks, listing.

use vmkeep_tests::vcsim::Vcsim;
use vmkeep_vsphere::vm::parse_disks;
use vmkeep_vsphere::xml::Document;
use vmkeep_vsphere::{Client, Error, MoRef, NewDisk, NewVm, Placement, VmSelector};

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
    let c = sim.login();
    let by_name = c.find_vm(&VmSelector::Name("DC0_H0_VM0".into())).unwrap();
    assert_eq!(by_name.kind, "VirtualMachine");
    let info = c.vm_info(&by_name).unwrap();
    assert_eq!(info.name, "DC0_H0_VM0");
    assert!(!info.bios_uuid.is_empty() && !info.instance_uuid.is_empty());

    let sels = [
        VmSelector::parse("/DC0/vm/DC0_H0_VM0"),
        VmSelector::parse("DC0/vm/DC0_H0_VM0"),
        VmSelector::parse("path=/DC0/vm/DC0_H0_VM0"),
        VmSelector::MoRef(by_name.value.clone()),
        VmSelector::parse(&by_name.value),
        VmSelector::parse(&format!("moref={}", by_name.value)),
        VmSelector::BiosUuid(info.bios_uuid.clone()),
        VmSelector::parse(&format!("uuid={}", info.bios_uuid)),
        VmSelector::InstanceUuid(info.instance_uuid.clone()),
        VmSelector::parse(&format!("instance-uuid={}", info.instance_uuid)),
        // Bare UUIDs, either kind, any case.
        VmSelector::parse(&info.bios_uuid),
        VmSelector::parse(&info.instance_uuid),
        VmSelector::parse(&info.bios_uuid.to_uppercase()),
        VmSelector::parse("DC0_H0_VM0"),
    ];
    assert!(matches!(sels[10], VmSelector::Uuid(_)), "{:?}", sels[10]);
    assert!(matches!(sels[4], VmSelector::MoRef(_)), "{:?}", sels[4]);
    for sel in &sels {
        assert_eq!(c.find_vm(sel).unwrap(), by_name, "{sel}");
    }

    let place = c.default_placement().unwrap();
    for sel in [
        VmSelector::Name("no-such-vm".into()),
        VmSelector::InventoryPath("/DC0/vm/no-such-vm".into()),
        // A path to something that is not a VM.
        VmSelector::InventoryPath("/DC0/vm".into()),
        VmSelector::MoRef("vm-999999".into()),
        // A moref of another type.
        VmSelector::MoRef(place.datacenter.value.clone()),
        VmSelector::MoRef(place.resource_pool.value.clone()),
        VmSelector::BiosUuid("00000000-0000-0000-0000-000000000000".into()),
        VmSelector::InstanceUuid("00000000-0000-0000-0000-000000000000".into()),
        VmSelector::parse("00000000-0000-0000-0000-000000000000"),
    ] {
        let err = c.find_vm(&sel).expect_err("must not be found");
        match &err {
            Error::VmNotFound { selector } => assert_eq!(selector, &sel.to_string()),
            other => panic!("{sel}: expected VmNotFound, got {other:?}"),
        }
        assert_eq!(err.to_string(), format!("no VM with {sel}"));
    }
}

/// Sets a VM's BIOS UUID (`config.uuid`), as a clone has its source's.
fn set_bios_uuid(c: &Client, vm: &MoRef, uuid: &str) {
    let params = format!("{}<spec><uuid>{uuid}</uuid></spec>", vm.to_xml("_this"));
    c.run_task("ReconfigVM_Task", &params).unwrap();
    assert_eq!(c.vm_info(vm).unwrap().bios_uuid, uuid);
}

/// The candidates of a [`Error::VmAmbiguous`], checked to name the selector.
fn candidates(err: &Error, sel: &VmSelector) -> Vec<String> {
    match err {
        Error::VmAmbiguous {
            selector,
            candidates,
        } => {
            assert_eq!(selector, &sel.to_string());
            for c in candidates {
                assert!(err.to_string().contains(c.as_str()), "{err}");
            }
            candidates.clone()
        }
        other => panic!("{sel}: expected VmAmbiguous, got {other:?}"),
    }
}

#[test]
fn ambiguous_name_lists_every_match() {
    let sim = Vcsim::start();
    let c = sim.login();
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
    let sel = VmSelector::Name("twin".into());
    let err = c.find_vm(&sel).unwrap_err();
    let mut want = vec![
        format!("{} (/DC0/vm/twin)", a.value),
        format!("{} (/DC0/vm/twin)", b.value),
    ];
    want.sort();
    assert_eq!(candidates(&err, &sel), want);
    assert!(err.to_string().contains(&a.value) && err.to_string().contains(&b.value));
    // The moref still finds each one.
    assert_eq!(c.find_vm(&VmSelector::MoRef(a.value.clone())).unwrap(), a);
    assert_eq!(c.find_vm(&VmSelector::parse(&b.value)).unwrap(), b);
}

/// A folder `name` in the datacenter's VM folder.
fn create_folder(c: &Client, place: &Placement, name: &str) -> MoRef {
    let params = format!("{}<name>{name}</name>", place.vm_folder.to_xml("_this"));
    let (_, resp) = c.call("CreateFolder", &params).unwrap();
    resp.child("returnval")
        .and_then(MoRef::from_element)
        .expect("folder moref")
}

#[test]
fn name_repeated_across_folders_is_refused_naming_each_path() {
    let sim = Vcsim::start();
    let c = sim.login();
    let place = c.default_placement().unwrap();
    let folder = create_folder(&c, &place, "team-b");
    let top = c
        .create_vm(&place, &new_vm("web", &[(1 << 20, true)]))
        .unwrap();
    let nested_place = Placement {
        vm_folder: folder,
        ..place.clone()
    };
    let nested = c
        .create_vm(&nested_place, &new_vm("web", &[(1 << 20, true)]))
        .unwrap();
    assert_eq!(
        c.inventory_path(&nested).unwrap(),
        "/DC0/vm/team-b/web".to_string()
    );

    let sel = VmSelector::parse("web");
    let err = c.find_vm(&sel).unwrap_err();
    let mut want = vec![
        format!("{} (/DC0/vm/web)", top.value),
        format!("{} (/DC0/vm/team-b/web)", nested.value),
    ];
    want.sort_by_key(|s| s.split(' ').next().unwrap().to_string());
    let mut got = candidates(&err, &sel);
    got.sort_by_key(|s| s.split(' ').next().unwrap().to_string());
    assert_eq!(got, want);

    // Each path finds its own.
    assert_eq!(c.find_vm(&VmSelector::parse("/DC0/vm/web")).unwrap(), top);
    assert_eq!(
        c.find_vm(&VmSelector::parse("DC0/vm/team-b/web")).unwrap(),
        nested
    );
}

#[test]
fn shared_bios_uuid_is_refused_naming_both() {
    let sim = Vcsim::start();
    let c = sim.login();
    let place = c.default_placement().unwrap();
    let src = c
        .create_vm(&place, &new_vm("golden", &[(1 << 20, true)]))
        .unwrap();
    let clone = c
        .create_vm(&place, &new_vm("golden-clone", &[(1 << 20, true)]))
        .unwrap();
    let src_info = c.vm_info(&src).unwrap();
    set_bios_uuid(&c, &clone, &src_info.bios_uuid);
    let clone_info = c.vm_info(&clone).unwrap();
    assert_ne!(src_info.instance_uuid, clone_info.instance_uuid);

    let want = vec![
        format!("{} (/DC0/vm/golden)", src.value),
        format!("{} (/DC0/vm/golden-clone)", clone.value),
    ];
    let mut want_sorted = want.clone();
    want_sorted.sort_by_key(|s| s.split(' ').next().unwrap().to_string());
    for sel in [
        VmSelector::BiosUuid(src_info.bios_uuid.clone()),
        VmSelector::parse(&src_info.bios_uuid),
        VmSelector::parse(&src_info.bios_uuid.to_uppercase()),
    ] {
        let err = c.find_vm(&sel).unwrap_err();
        let mut got = candidates(&err, &sel);
        got.sort_by_key(|s| s.split(' ').next().unwrap().to_string());
        assert_eq!(got, want_sorted, "{sel}");
    }
    // Instance UUIDs stay unique.
    for (vm, info) in [(&src, &src_info), (&clone, &clone_info)] {
        assert_eq!(
            c.find_vm(&VmSelector::InstanceUuid(info.instance_uuid.clone()))
                .unwrap(),
            *vm
        );
        assert_eq!(
            c.find_vm(&VmSelector::parse(&info.instance_uuid)).unwrap(),
            *vm
        );
    }
}

#[test]
fn bare_uuid_that_is_one_vms_bios_and_anothers_instance_uuid_is_ambiguous() {
    let sim = Vcsim::start();
    let c = sim.login();
    let place = c.default_placement().unwrap();
    let a = c
        .create_vm(&place, &new_vm("alpha", &[(1 << 20, true)]))
        .unwrap();
    let b = c
        .create_vm(&place, &new_vm("beta", &[(1 << 20, true)]))
        .unwrap();
    let a_instance = c.vm_info(&a).unwrap().instance_uuid;
    set_bios_uuid(&c, &b, &a_instance);

    let sel = VmSelector::parse(&a_instance);
    assert_eq!(sel, VmSelector::Uuid(a_instance.clone()));
    let err = c.find_vm(&sel).unwrap_err();
    let mut got = candidates(&err, &sel);
    got.sort_by_key(|s| s.split(' ').next().unwrap().to_string());
    let mut want = vec![
        format!("{} (/DC0/vm/alpha)", a.value),
        format!("{} (/DC0/vm/beta)", b.value),
    ];
    want.sort_by_key(|s| s.split(' ').next().unwrap().to_string());
    assert_eq!(got, want);
    // Saying which kind settles it.
    assert_eq!(
        c.find_vm(&VmSelector::InstanceUuid(a_instance.clone()))
            .unwrap(),
        a
    );
    assert_eq!(c.find_vm(&VmSelector::BiosUuid(a_instance)).unwrap(), b);
}

#[test]
fn create_vm_with_disks_and_read_its_config() {
    let sim = Vcsim::start();
    let c = sim.login();
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
