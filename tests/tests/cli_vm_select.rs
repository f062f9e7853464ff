//! `vmkeep vm show|cbt SEL` against the simulator: the selector shapes an
//! administrator types, and the refusals (no VM, several VMs) as one error
//! line naming every candidate, with exit code 1.

use vmkeep_tests::cli::{s, Rig};
use vmkeep_tests::vcsim::Vcsim;
use vmkeep_vsphere::{NewDisk, NewVm};

fn new_vm(name: &str) -> NewVm {
    NewVm {
        name: name.into(),
        guest_id: "otherGuest64".into(),
        datastore: "LocalDS_0".into(),
        num_cpus: 1,
        memory_mb: 128,
        disks: vec![NewDisk {
            capacity_bytes: 1 << 20,
            thin: true,
        }],
    }
}

#[test]
fn vm_show_takes_every_shape_and_refuses_ambiguity_with_exit_1() {
    let sim = Vcsim::start();
    let c = sim.login();
    let place = c.default_placement().unwrap();
    let a = c.create_vm(&place, &new_vm("twin")).unwrap();
    let b = c.create_vm(&place, &new_vm("twin")).unwrap();
    let a_info = c.vm_info(&a).unwrap();

    let rig = Rig::empty();
    let pw = rig.path("vc-password");
    std::fs::write(&pw, format!("{}\n", sim.password)).unwrap();
    let vc = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        v.extend(
            [
                "--vcenter",
                &sim.url,
                "--vc-user",
                &sim.user,
                "--vc-password-file",
                s(&pw),
            ]
            .map(String::from),
        );
        v
    };

    for sel in [
        a.value.clone(),
        a_info.bios_uuid.to_uppercase(),
        a_info.instance_uuid.clone(),
        format!("moref={}", a.value),
    ] {
        let run = rig.run(vc(&["vm", "show", &sel])).ok();
        // `vm show --json` prints one pretty document.
        let out: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
        assert_eq!(out["moref"], a.value.as_str(), "{sel}: {out}");
    }

    let run = rig.human(vc(&["vm", "show", "twin"])).fails(
        1,
        &[
            "name \"twin\" matches 2 VMs",
            &a.value,
            &b.value,
            "/DC0/vm/twin",
        ],
    );
    assert_eq!(run.stderr.lines().count(), 1, "{run}");
    rig.human(vc(&["vm", "show", "vm-999999"]))
        .fails(1, &["no VM with moref vm-999999"]);
    rig.human(vc(&["vm", "cbt", "no-such-vm", "--enable"]))
        .fails(1, &["no VM with name \"no-such-vm\""]);
    // The JSON error carries the same text and code.
    let run = rig.run(vc(&["vm", "show", "twin"]));
    assert_eq!(run.code, 1, "{run}");
    let v = run.json();
    assert_eq!(v["exit_code"], 1, "{v}");
    assert!(v["error"].as_str().unwrap().contains(&b.value), "{v}");
}
