//! VDDK's threading and initialisation rules: code that breaks them is
//! caught by the stand-in, which aborts loudly (each breach runs in a child
//! process and the parent asserts it died of SIGABRT with the stand-in's
//! message); the safe layer keeps them even when many threads open, read
//! and close disks at once.

use std::sync::Arc;

use vmkeep_engine::source::DiskSource;
use vmkeep_engine::vddk::{init, VddkSource};
use vmkeep_tests::vddk::{
    assert_aborted, assert_child_passed, is_child, run_child, sim_libdir, Rig, Variant,
};

const MIB: u64 = 1 << 20;

#[test]
fn vddk_sim_aborts_on_concurrent_reads_on_one_handle() {
    const NAME: &str = "vddk_sim_aborts_on_concurrent_reads_on_one_handle";
    if is_child(NAME) {
        let rig = Rig::get(Variant::Full);
        rig.datastore_disk("abuse/reads", MIB);
        let lib = init::library(&rig.libdir).unwrap();
        // Reach under the safe layer on purpose (feature rule-breaking).
        let conn =
            vddk_sys::Connection::connect(&lib, &Default::default(), true, None, None).unwrap();
        let desc = rig.datastore.join("abuse/reads.vmdk");
        let mut d = conn.open(desc.to_str().unwrap(), 4).unwrap();
        vddk_sys::abuse::concurrent_reads_on_one_handle(&mut d, &lib, 4, 20);
        panic!("the stand-in did not notice concurrent reads");
    }
    let out = run_child(NAME, &[("VDDK_SIM_SLOW_READ_MS", "20")]);
    assert_aborted(&out, "while another thread is using it");
}

#[test]
fn vddk_sim_aborts_on_concurrent_open() {
    const NAME: &str = "vddk_sim_aborts_on_concurrent_open";
    if is_child(NAME) {
        let rig = Rig::get(Variant::Full);
        rig.datastore_disk("abuse/open", MIB);
        let lib = init::library(&rig.libdir).unwrap();
        let desc = rig.datastore.join("abuse/open.vmdk");
        vddk_sys::abuse::concurrent_opens(&lib, desc.to_str().unwrap(), 4).unwrap();
        panic!("the stand-in did not notice concurrent opens");
    }
    let out = run_child(NAME, &[("VDDK_SIM_OPEN_DELAY_MS", "100")]);
    assert_aborted(&out, "inside VixDiskLib_Open/Close");
}

#[test]
fn vddk_sim_aborts_on_call_before_init() {
    const NAME: &str = "vddk_sim_aborts_on_call_before_init";
    if is_child(NAME) {
        // Load without InitEx, then connect.
        let lib = Arc::new(vddk_sys::Library::load(&sim_libdir(Variant::Full)).unwrap());
        vddk_sys::abuse::connect_before_init(&lib);
        panic!("the stand-in did not notice the missing InitEx");
    }
    let out = run_child(NAME, &[]);
    assert_aborted(&out, "VixDiskLib_ConnectEx called before VixDiskLib_InitEx");
}

#[test]
fn vddk_safe_layer_keeps_the_rules_under_concurrency() {
    const NAME: &str = "vddk_safe_layer_keeps_the_rules_under_concurrency";
    if is_child(NAME) {
        let rig = Rig::get(Variant::Full);
        let paths: Vec<String> = (0..4)
            .map(|i| rig.datastore_disk(&format!("many/disk{i}"), 2 * MIB))
            .collect();
        let threads: Vec<_> = paths
            .into_iter()
            .map(|p| {
                let spec = rig.remote_spec();
                let libdir = rig.libdir.clone();
                std::thread::spawn(move || {
                    for _ in 0..3 {
                        let mut s = VddkSource::open(&libdir, &spec, &p).unwrap();
                        let mut buf = vec![0u8; 64 * 1024];
                        for i in 0..8 {
                            s.read_at(i * 64 * 1024, &mut buf).unwrap();
                        }
                        // A handle may move to another thread (not be shared).
                        std::thread::spawn(move || {
                            let mut b = vec![0u8; 512];
                            s.read_at(0, &mut b).unwrap();
                        })
                        .join()
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        return;
    }
    // Slow Open/Close widen the window in which an unserialised Open would
    // be caught.
    let out = run_child(
        NAME,
        &[
            ("VDDK_SIM_OPEN_DELAY_MS", "20"),
            ("VDDK_SIM_SLOW_READ_MS", "1"),
        ],
    );
    assert_child_passed(&out);
}
