//! VDDK's log callback: the stand-in calls it with a real `va_list`, which
//! `vddk-sys` formats with `vsnprintf` and forwards to the `log` crate
//! under target `vddk`.

use std::sync::Mutex;

use vmkeep_engine::vddk::VddkSource;
use vmkeep_tests::vddk::{Rig, Variant};

static LINES: Mutex<Vec<(log::Level, String, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        LINES
            .lock()
            .unwrap()
            .push((r.level(), r.target().to_string(), r.args().to_string()));
    }
    fn flush(&self) {}
}

#[test]
fn vddk_log_callback_formats_va_list_messages() {
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let rig = Rig::get(Variant::Full);
    let path = rig.datastore_disk("logvm/disk", 1 << 20);
    let s = VddkSource::open(&rig.libdir, &rig.remote_spec(), &path).unwrap();
    drop(s);
    let lines = LINES.lock().unwrap();
    let vddk: Vec<_> = lines.iter().filter(|(_, t, _)| t == "vddk").collect();
    assert!(
        vddk.iter()
            .any(|(l, _, m)| *l == log::Level::Info && m == "vddk-sim: InitEx(8) ok"),
        "{vddk:?}"
    );
    let want = format!(
        "vddk-sim: Open {path} -> {}",
        rig.flat_of("logvm/disk").display()
    );
    assert!(vddk.iter().any(|(_, _, m)| *m == want), "{vddk:?}");
}
