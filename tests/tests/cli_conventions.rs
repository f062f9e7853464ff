//! What the command line promises a new user (issue 13, item 10 and the
//! smaller things): exit codes as the README lists them, a closed pipe
//! ends quietly, each cause of an error once, help only for the options a
//! command takes, counts in words, and the forget, protect and key
//! commands a user reaches for first.

use std::io::Read;
use std::process::Stdio;

use serde_json::Value;
use vmkeep_tests::cli::*;

const MIB: u64 = 1 << 20;

fn one_image(rig: &Rig, disk: &str) -> (std::path::PathBuf, Value) {
    let img = rig.path(&format!("{disk}.raw"));
    sparse_file(&img, MIB);
    write_at(&img, 0, &random_bytes(9, 300_000));
    let v = rig.backup(&img, disk, &[]);
    (img, v)
}

#[test]
fn exit_codes_follow_the_readme() {
    let rig = Rig::new("64K");
    one_image(&rig, "d1");
    // A repository path that is a file: 4, "not a vmkeep repository".
    let mut other = Rig::empty();
    other.repo = other.path("a-file");
    std::fs::write(&other.repo, "hello").unwrap();
    let r = other
        .run(["generations"])
        .fails(4, &["is not a vmkeep repository", "a file"]);
    assert_eq!(
        r.stderr.matches("Not a directory").count(),
        0,
        "the os error leaks: {r}"
    );
    // An empty or missing password file: 3.
    let empty = rig.path("empty-pw");
    std::fs::write(&empty, "").unwrap();
    let mut c = rig.command(["generations", "--password-file", s(&empty)]);
    c.env_remove("VMKEEP_PASSWORD");
    run_command(c).fails(3, &["password file", "is empty"]);
    let mut c = rig.command(["generations", "--password-file", "/nonexistent/pw"]);
    c.env_remove("VMKEEP_PASSWORD");
    run_command(c).fails(3, &["cannot read password file", "/nonexistent/pw"]);
    // forget with nothing to decide by: a usage error, 2.
    let r = rig.run(["forget"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("--keep-last"), "{r}");
    assert_eq!(rig.generations().len(), 1);
}

/// `vmkeep generations | head`: the reader goes away before vmkeep writes;
/// it ends quietly with 0, no panic, no backtrace.
#[test]
fn a_closed_stdout_ends_quietly() {
    let rig = Rig::new("64K");
    for i in 0..3 {
        one_image(&rig, &format!("d{i}"));
    }
    for args in [&["generations"][..], &["stats"], &["--json", "generations"]] {
        let mut c = rig.human_command(args);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        drop(child.stdout.take()); // `head` exited
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let st = child.wait().unwrap();
        assert_eq!(st.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// Each cause of an error is printed once.
#[test]
fn error_messages_do_not_repeat_their_cause() {
    let rig = Rig::new("64K");
    let missing = rig.path("no-such.raw");
    let r = rig
        .run(["backup", "--image", s(&missing), "--disk", "d"])
        .fails(1, &[s(&missing)]);
    assert_eq!(r.stderr.matches("os error 2").count(), 1, "{r}");
}

/// Options appear only on the commands that take them.
#[test]
fn help_lists_only_the_options_a_command_takes() {
    let rig = Rig::empty();
    let help = |args: &[&str]| rig.human(args).ok().stdout;
    for cmd in [
        "init",
        "generations",
        "stats",
        "gc",
        "forget",
        "verify",
        "key",
    ] {
        let h = help(&[cmd, "--help"]);
        for opt in [
            "--vcenter",
            "--vc-user",
            "--vddk-libdir",
            "--fingerprint",
            "--threads",
        ] {
            assert!(!h.contains(opt), "`{cmd} --help` lists {opt}:\n{h}");
        }
    }
    for cmd in ["backup", "restore"] {
        let h = help(&[cmd, "--help"]);
        for opt in ["--vddk-disk", "--vddk-libdir", "--vcenter", "--threads"] {
            assert!(h.contains(opt), "`{cmd} --help` lacks {opt}:\n{h}");
        }
    }
    let h = help(&["vm", "list", "--help"]);
    assert!(h.contains("--vcenter"), "{h}");
    // An option on a command that does not use it is refused by the
    // grammar (exit code 2, clap's error), before anything is done.
    for args in [
        &["init", "--vcenter", "https://x/sdk"][..],
        &["vcenter", "--repo", "/tmp/x", "check"],
        &["vm", "list", "--repo", "/tmp/x"],
        &["vm", "--cache-dir", "/tmp/x", "list"],
        &["--repo", "/tmp/x", "generations"],
        &["unlock", "--password-file", "/tmp/x"],
        &["generations", "--cache-dir", "/tmp/x"],
        &["forget", "--threads", "2", "--keep-last", "1"],
    ] {
        let r = rig.human(args);
        assert_eq!(r.code, 2, "{args:?}: {r}");
        assert!(r.stderr.contains("unexpected argument"), "{args:?}: {r}");
    }
    // "Exactly one of" rules are the grammar's too.
    for (args, needle) in [
        (&["restore", "latest"][..], "--to"),
        (
            &["restore", "latest", "--to", "/tmp/x", "--vddk-disk", "d"],
            "cannot be used",
        ),
        (&["vm", "cbt", "vm1"], "--enable"),
        (
            &["vm", "--insecure", "--fingerprint", "00", "list"],
            "cannot be used",
        ),
        (
            &["verify", "--keyless", "--read-data-subset", "1/2"],
            "cannot be used",
        ),
        (
            &["init", "--no-encryption", "--kdf-lanes", "2"],
            "cannot be used",
        ),
        (
            &["restore", "latest", "--vddk-disk", "d", "--force"],
            "cannot be used",
        ),
        (
            &["restore", "latest", "--to", "/tmp/x", "--thumbprint", "AA"],
            "--vddk-disk",
        ),
        (
            &["backup", "--image", "/tmp/x", "--disk", "d", "--insecure"],
            "--vddk-disk",
        ),
    ] {
        let r = rig.human(args);
        assert_eq!(r.code, 2, "{args:?}: {r}");
        assert!(r.stderr.contains(needle), "{args:?}: {r}");
    }
    // Every keep option says what it keeps.
    let h = help(&["forget", "--help"]);
    for opt in ["hourly", "daily", "weekly", "monthly", "yearly"] {
        let flag = format!("--keep-{opt}");
        let mut lines = h.lines().skip_while(|l| !l.trim_start().starts_with(&flag));
        let own = lines.next().unwrap_or_else(|| panic!("no {flag}:\n{h}"));
        let next = lines.next().unwrap_or_default();
        assert!(
            own.contains("Keep") || next.contains("Keep"),
            "{flag} has no description:\n{h}"
        );
    }
}

/// Counts in words; the backup summary's slots add up.
#[test]
fn summaries_count_in_words_and_add_up() {
    let rig = Rig::new("64K");
    let (img, _) = one_image(&rig, "d1");
    let out = rig.human(["generations"]).ok().stdout;
    assert!(out.trim_end().ends_with("1 generation"), "{out}");
    write_at(&img, 5000, b"x");
    let cbt = rig.path("c.cbt");
    write_areas(&cbt, &[(5000, 1)]);
    let out = run_command(rig.human_command([
        "backup",
        "--image",
        s(&img),
        "--disk",
        "d1",
        "--changed-areas",
        s(&cbt),
    ]))
    .ok()
    .stdout;
    // "  16 slots: 1 new (...), 0 already stored, 11 zero, 4 unchanged"
    let line = out
        .lines()
        .find(|l| l.contains(" slots: "))
        .unwrap_or_else(|| panic!("{out}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .filter_map(|w| w.parse().ok())
        .collect();
    let total = nums[0];
    let parts = [
        nums[1],
        nums[nums.len() - 3],
        nums[nums.len() - 2],
        nums[nums.len() - 1],
    ];
    assert_eq!(total, 16, "{line}");
    assert_eq!(parts.iter().sum::<u64>(), total, "{line}");
    assert!(out.contains("changed areas: 1 area (1 B)"), "{out}");
}

/// forget by id, by lineage, and an unknown source; protection shows.
#[test]
fn forget_names_generations_and_lineages() {
    let rig = Rig::new("64K");
    let (img, g0) = one_image(&rig, "d1");
    write_at(&img, 0, b"y");
    let g1 = rig.backup(&img, "d1", &[]);
    let (_, h0) = one_image(&rig, "d2");
    let id = |v: &Value| v["generation"].as_str().unwrap().to_string();
    let (g0, g1, h0) = (id(&g0), id(&g1), id(&h0));
    rig.run(["forget", "--keep-last", "1", "--source", "nosuch"])
        .fails(1, &["nosuch", "d1", "d2"]);
    rig.ok(["protect", &g0[..8]]);
    let list = rig.generations();
    let p: Vec<_> = list.iter().filter(|g| g["protected"] == true).collect();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["id"], g0.as_str());
    let out = rig.human(["generations"]).ok().stdout;
    assert!(
        out.lines()
            .any(|l| l.starts_with(&g0[..8]) && l.contains("protected")),
        "{out}"
    );
    // A protected generation named: refused, nothing removed.
    rig.run(["forget", &g1[..8], &g0[..8]])
        .fails(1, &["protected"]);
    assert_eq!(rig.generations().len(), 3);
    // One generation by id.
    let v = rig.ok(["forget", &g1[..8]]);
    assert_eq!(v["removed"], 1, "{v}");
    // A whole lineage (the protected one stays).
    let v = rig.ok(["forget", "--source", "d1", "--all", "--dry-run"]);
    assert_eq!(v["removed"], 0);
    let v = rig.ok(["forget", "--source", "d2", "--all"]);
    assert_eq!(v["removed"], 1, "{v}");
    let left: Vec<String> = rig
        .generations()
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, vec![g0.clone()]);
    assert!(!left.contains(&h0));
}

/// key add takes a label; key remove takes a unique prefix.
#[test]
fn key_labels_and_prefixes() {
    let rig = Rig::new("64K");
    let pw = rig.path("pw2");
    std::fs::write(&pw, "another one").unwrap();
    let mut a = vec![
        "key",
        "add",
        "--new-password-file",
        s(&pw),
        "--label",
        "offsite copy",
    ];
    a.extend(KDF);
    let added = rig.ok(&a)["added"].as_str().unwrap().to_string();
    let list = rig.ok(["key", "list"]);
    let mine = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == added.as_str())
        .cloned()
        .unwrap();
    assert_eq!(mine["label"], "offsite copy");
    let v = rig.ok(["key", "remove", &added[..5]]);
    assert_eq!(v["removed"], added.as_str());
    rig.run(["key", "remove", "zz"]).fails(1, &["zz"]);
    let mut a = vec![
        "key",
        "add",
        "--new-password-file",
        s(&pw),
        "--label",
        "bad\nlabel",
    ];
    a.extend(KDF);
    rig.run(&a).fails(1, &["label"]);
}

/// Every command that logs in to vSphere reads the password one way:
/// `--vc-password-file`, then `VMKEEP_VC_PASSWORD`, then a terminal, else
/// exit code 3 saying so (`vm list` as a backup through VDDK).
#[test]
fn the_vcenter_password_is_read_one_way() {
    let rig = Rig::new("64K");
    let vc = ["--vcenter", "https://127.0.0.1:9/sdk", "--vc-user", "u"];
    let mut vm = vec!["vm", "list"];
    vm.extend(vc);
    let mut backup = vec![
        "backup",
        "--disk",
        "d",
        "--vddk-disk",
        "[ds] vm/d.vmdk",
        "--vddk-libdir",
        "/nonexistent",
        "--vm-moref",
        "vm-1",
        "--thumbprint",
        "AA",
    ];
    backup.extend(vc);
    let run = |args: &[&str]| {
        let mut c = rig.command(args);
        c.env_remove("VMKEEP_VC_PASSWORD")
            .env_remove("VMKEEP_VC_PASSWORD_FILE");
        run_command(c)
    };
    for args in [vm, backup] {
        run(&args).fails(
            3,
            &[
                "no vSphere password for u",
                "--vc-password-file",
                "VMKEEP_VC_PASSWORD",
            ],
        );
        let mut a = args.clone();
        a.extend(["--vc-password-file", "/nonexistent/vcpw"]);
        run(&a).fails(3, &["cannot read password file", "/nonexistent/vcpw"]);
    }
}
