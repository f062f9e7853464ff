//! Which data a backup starts from (issue 13, items 1–3): a changed-areas
//! list is read once whatever its path names; a list always has a parent,
//! the lineage's newest generation unless one is named; `latest` means the
//! lineage's newest, not the repository's. Every case ends by restoring
//! the new generation and comparing it with the image byte for byte: a
//! wrong backup reported as a success is the failure these tests catch.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;
use vmkeep_tests::cli::*;

const MIB: u64 = 1 << 20;
const K64: u64 = 64 << 10;

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

fn gen(v: &Value) -> String {
    v["generation"].as_str().unwrap().to_string()
}

/// A 2 MiB image with data in most slots, backed up once as `disk`.
fn first_backup(rig: &Rig, file: &str, disk: &str, seed: u64) -> (PathBuf, Value) {
    let img = rig.path(file);
    sparse_file(&img, 2 * MIB);
    write_at(&img, 0, &random_bytes(seed, (2 * MIB) as usize - 4096));
    let v = rig.backup(&img, disk, &[]);
    (img, v)
}

/// The slot counts of a report add up to the disk's slots.
#[track_caller]
fn adds_up(v: &Value) {
    let b = &v["breakdown"];
    let sum: u64 = ["new", "already_stored", "zero", "unchanged"]
        .iter()
        .map(|k| b[k].as_u64().unwrap())
        .sum();
    assert_eq!(sum, n(v, "slots"), "{v}");
    assert_eq!(
        n(v, "data_slots") + n(v, "zero_slots"),
        n(v, "slots"),
        "{v}"
    );
}

/// Item 1: the list comes through a pipe on stdin, a FIFO, and a process
/// substitution; each backup reads the changed slot and restores exactly.
#[test]
fn a_changed_areas_list_from_a_pipe_is_read() {
    let rig = Rig::new("64K");
    let (img, _) = first_backup(&rig, "b.raw", "d", 1);
    // /dev/stdin, fed by a pipe (the reproduction).
    write_at(&img, 200, b"changed through stdin");
    let mut c = rig.command([
        "backup",
        "--image",
        s(&img),
        "--disk",
        "d",
        "--parent",
        "latest",
        "--changed-areas",
        "/dev/stdin",
    ]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"0,4096\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(n(&v, "read_bytes"), K64, "{v}");
    assert_eq!(v["disks"][0]["areas"]["count"], 1, "{v}");
    assert_eq!(v["disks"][0]["areas"]["bytes"], 4096, "{v}");
    assert_eq!(v["breakdown"]["unchanged"], 31, "{v}");
    adds_up(&v);
    rig.assert_restores(&gen(&v), &img);

    // A FIFO with a writer on another thread.
    write_at(&img, MIB + 7, b"changed through a fifo");
    let fifo = rig.path("areas.fifo");
    tool("mkfifo", "coreutils", &[s(&fifo)]);
    let w = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            std::fs::write(&fifo, format!("{},{}\n", MIB + 7, 22)).unwrap();
        })
    };
    let v = rig.backup(&img, "d", &["--changed-areas", s(&fifo)]);
    w.join().unwrap();
    assert_eq!(n(&v, "read_bytes"), K64, "{v}");
    rig.assert_restores(&gen(&v), &img);

    // A process substitution, through bash.
    write_at(&img, 3 * K64, b"changed through <(...)");
    let line = format!(
        "{} --json backup --image {} --disk d --changed-areas <(printf '{},22\\n')",
        vmkeep_bin().display(),
        s(&img),
        3 * K64
    );
    let mut bash = std::process::Command::new("bash");
    rig.environment(&mut bash);
    bash.arg("-c").arg(&line);
    let r = run_command(bash).ok();
    let v = r.json();
    assert_eq!(n(&v, "read_bytes"), K64, "{v}");
    rig.assert_restores(&gen(&v), &img);
}

/// Item 2: a list without --parent continues the lineage; with no
/// generation of the lineage it is refused; an allocated-areas list is a
/// full backup of its own, and takes no parent.
#[test]
fn a_changed_areas_list_without_a_parent_continues_the_lineage() {
    let rig = Rig::new("64K");
    let (img, g0) = first_backup(&rig, "a.raw", "d", 2);
    write_at(&img, 5 * K64 + 3, b"new bytes");
    let cbt = rig.path("d.cbt");
    write_areas(&cbt, &[(5 * K64 + 3, 9)]);
    let v = rig.backup(&img, "d", &["--changed-areas", s(&cbt)]);
    assert_eq!(v["parent"], g0["generation"], "{v}");
    assert_eq!(v["parent_rule"], "latest of the lineage", "{v}");
    assert_eq!(n(&v, "read_bytes"), K64, "{v}");
    adds_up(&v);
    rig.assert_restores(&gen(&v), &img);
    // An empty list: nothing changed, every slot from the parent.
    let empty = rig.path("empty.cbt");
    std::fs::write(&empty, "").unwrap();
    let v = rig.backup(&img, "d", &["--changed-areas", s(&empty)]);
    assert_eq!(n(&v, "read_bytes"), 0, "{v}");
    assert_eq!(v["breakdown"]["unchanged"], 32, "{v}");
    rig.assert_restores(&gen(&v), &img);
    // The next `--parent latest` starts from that one, and is still right.
    let v = rig.backup(
        &img,
        "d",
        &["--parent", "latest", "--changed-areas", s(&empty)],
    );
    rig.assert_restores(&gen(&v), &img);

    // A lineage with no generation: refused, nothing stored.
    let before = rig.generations().len();
    let other = rig.path("other.raw");
    sparse_file(&other, 2 * MIB);
    write_at(&other, 0, &random_bytes(3, 300_000));
    rig.run([
        "backup",
        "--image",
        s(&other),
        "--disk",
        "new-disk",
        "--changed-areas",
        s(&empty),
    ])
    .fails(
        1,
        &["new-disk", "no readable generation", "--allocated-areas"],
    );
    assert_eq!(rig.generations().len(), before);

    // --allocated-areas: listed areas read, everything else zero.
    let alloc = rig.path("alloc.cbt");
    write_areas(&alloc, &allocated_areas(&other));
    let v = rig.backup(&other, "new-disk", &["--allocated-areas", s(&alloc)]);
    assert!(v["parent"].is_null(), "{v}");
    assert_eq!(v["disks"][0]["areas"]["kind"], "allocated", "{v}");
    adds_up(&v);
    rig.assert_restores(&gen(&v), &other);
    // It takes no parent, and not both kinds of list: usage errors.
    let r = rig.run([
        "backup",
        "--image",
        s(&other),
        "--disk",
        "new-disk",
        "--allocated-areas",
        s(&alloc),
        "--parent",
        "latest",
    ]);
    assert!(
        r.code == 2 && r.stderr.contains("cannot be used with"),
        "{r}"
    );
    let r = rig.run([
        "backup",
        "--image",
        s(&other),
        "--disk",
        "new-disk",
        "--allocated-areas",
        s(&alloc),
        "--changed-areas",
        s(&alloc),
    ]);
    assert!(
        r.code == 2 && r.stderr.contains("cannot be used with"),
        "{r}"
    );
}

/// Item 3: the README's loop over several disks of the same size: each
/// `--parent latest` starts from its own lineage, never from the disk
/// backed up just before; a parent of another lineage named by id is
/// refused because it has no disk of this name.
#[test]
fn latest_as_a_parent_is_the_lineages_newest() {
    let rig = Rig::new("64K");
    let names = ["vm1-disk", "vm2-disk", "vm3-disk"];
    let mut images: Vec<(PathBuf, String)> = Vec::new();
    for (i, d) in names.iter().enumerate() {
        let (img, v) = first_backup(&rig, &format!("{d}.raw"), d, 10 + i as u64);
        images.push((img, gen(&v)));
    }
    for round in 0..2u64 {
        for (i, d) in names.iter().enumerate() {
            let (img, last) = &images[i];
            let off = (round * 7 + i as u64) * K64 + 11;
            write_at(img, off, format!("round {round} of {d}").as_bytes());
            let cbt = rig.path(&format!("{d}-{round}.cbt"));
            write_areas(&cbt, &[(off, 40)]);
            let v = rig.backup(img, d, &["--parent", "latest", "--changed-areas", s(&cbt)]);
            assert_eq!(v["parent"].as_str(), Some(last.as_str()), "{d}: {v}");
            assert_eq!(n(&v, "read_bytes"), K64, "{v}");
            let g = gen(&v);
            rig.assert_restores(&g, img);
            images[i].1 = g;
        }
    }
    // Another lineage's generation, by id: it has no disk of this name.
    let (img, _) = &images[0];
    let foreign = &images[1].1;
    rig.run([
        "backup",
        "--image",
        s(img),
        "--disk",
        names[0],
        "--parent",
        &foreign[..12],
    ])
    .fails(1, &[&foreign[..8], "no disk named \"vm1-disk\""]);
    // Every lineage still restores its own data.
    for (img, g) in &images {
        rig.assert_restores(g, img);
    }
}

/// A disk name with a control character is refused before anything runs.
#[test]
fn disk_names_with_control_characters_are_refused() {
    let rig = Rig::new("64K");
    let img = rig.path("x.raw");
    sparse_file(&img, MIB);
    for bad in ["two\nlines", "tab\there", "esc\u{1b}[2J", ""] {
        rig.run(["backup", "--image", s(&img), "--disk", bad])
            .fails(1, &["disk name"]);
    }
    assert!(rig.generations().is_empty());
}
