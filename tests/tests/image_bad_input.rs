//! Bad input to the `vmkeep` command line (issue 2, "Bad input, each with
//! a test"): each case must fail with the documented exit code and an
//! error naming the thing at fault, must not add a generation, and must
//! leave every earlier generation restorable byte for byte.

use std::path::PathBuf;

use serde_json::Value;
use vmkeep_tests::cli::*;

const MIB: u64 = 1 << 20;

/// A repository with two generations of disk `d1` (a full backup and an
/// incremental one) and copies of the images they were taken from.
struct Fixture {
    rig: Rig,
    /// The image as it is now (the newest generation).
    image: PathBuf,
    /// (generation id, copy of the image it holds), oldest first.
    gens: Vec<(String, PathBuf)>,
}

impl Fixture {
    fn new() -> Self {
        let rig = Rig::new("64K");
        let image = rig.path("disk.raw");
        sparse_file(&image, 4 * MIB);
        write_at(&image, 0, &random_bytes(1, 1_500_000));
        write_at(&image, 3 * MIB, &text_bytes(2, 500_000));
        let v0 = rig.path("v0.raw");
        std::fs::copy(&image, &v0).unwrap();
        let g0 = rig.backup(&image, "d1", &[]);
        write_at(&image, 2 * MIB + 5, &random_bytes(3, 100_000));
        let cbt = rig.path("v1.cbt");
        write_areas(&cbt, &[(2 * MIB + 5, 100_000)]);
        let g1 = rig.backup(
            &image,
            "d1",
            &["--parent", "latest", "--changed-areas", s(&cbt)],
        );
        let v1 = rig.path("v1.raw");
        std::fs::copy(&image, &v1).unwrap();
        let gens = [(g0, v0), (g1, v1)]
            .into_iter()
            .map(|(g, p)| (g["generation"].as_str().unwrap().to_string(), p))
            .collect();
        Fixture { rig, image, gens }
    }

    /// No generation was added, and every one restores byte for byte.
    #[track_caller]
    fn check(&self) {
        let listed: Vec<String> = self
            .rig
            .generations()
            .iter()
            .map(|g| g["id"].as_str().unwrap().to_string())
            .collect();
        let mut listed = listed;
        listed.sort();
        let mut want: Vec<String> = self.gens.iter().map(|(g, _)| g.clone()).collect();
        want.sort();
        assert_eq!(listed, want, "the generations changed");
        for (g, img) in &self.gens {
            self.rig.assert_restores(g, img);
        }
    }

    /// `backup` of `image` as disk `d1` with `extra` arguments.
    fn backup_run(&self, image: &str, extra: &[&str]) -> Run {
        let mut a = vec!["backup", "--image", image, "--disk", "d1"];
        a.extend_from_slice(extra);
        self.rig.run(a)
    }
}

/// The JSON error document carries the same exit code.
#[track_caller]
fn json_code(r: &Run, code: u64) {
    let v = r.json();
    assert_eq!(v["exit_code"], code, "{r}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{r}");
}

#[test]
fn wrong_password_exits_3_naming_the_repository() {
    let mut f = Fixture::new();
    let repo = s(&f.rig.repo).to_string();
    f.rig.password = "not the password".into();
    let img = s(&f.image).to_string();
    let to = f.rig.path("never.raw");
    for args in [
        vec!["generations"],
        vec!["stats"],
        vec!["backup", "--image", img.as_str(), "--disk", "d1"],
        vec!["restore", "latest", "--to", s(&to)],
        vec!["key", "list"],
    ] {
        let r = f
            .rig
            .run(&args)
            .fails(3, &["wrong password for repository", repo.as_str()]);
        json_code(&r, 3);
    }
    assert!(
        !to.exists(),
        "a restore with a wrong password created its target"
    );
    // No password at all, and no terminal to ask on.
    let mut c = f.rig.command(["generations"]);
    c.env_remove("VMKEEP_PASSWORD");
    run_command(c).fails(3, &["a password is required", repo.as_str()]);
    f.rig.password = PASSWORD.into();
    f.check();
}

/// (name, how to prepare the location, expected message).
type Case = (&'static str, fn(&std::path::Path), &'static str);

#[test]
fn missing_repository_or_not_a_repository_exits_4() {
    let f = Fixture::new();
    let img = s(&f.image).to_string();
    let mut other = Rig::empty();
    let cases: [Case; 3] = [
        ("missing", |_| {}, "does not exist"),
        (
            "junk",
            |p| {
                std::fs::create_dir_all(p.join("sub")).unwrap();
                std::fs::write(p.join("sub/file.txt"), b"hello").unwrap();
            },
            "is not a vmkeep repository",
        ),
        (
            "badconfig",
            |p| {
                std::fs::create_dir_all(p).unwrap();
                std::fs::write(p.join("config"), b"[core]\nrepositoryformatversion = 0\n").unwrap();
            },
            "is not a vmkeep repository",
        ),
    ];
    for (name, make, needle) in cases {
        other.repo = other.path(name);
        make(&other.repo);
        let repo = s(&other.repo).to_string();
        for args in [
            vec!["generations"],
            vec!["backup", "--image", img.as_str(), "--disk", "d1"],
            vec!["restore", "latest", "--to", "/nonexistent/x.raw"],
            vec!["index", "rebuild"],
        ] {
            let r = other.run(&args).fails(4, &[repo.as_str(), needle]);
            json_code(&r, 4);
        }
        if name == "missing" {
            assert!(
                !other.repo.exists(),
                "a failed command created the repository"
            );
        }
    }
    // `init` refuses a directory that holds something else.
    other.repo = other.path("junk");
    let mut a = vec!["init"];
    a.extend(KDF);
    other.run(&a).fails(1, &[s(&other.repo), "not empty"]);
    f.check();
}

#[test]
fn missing_or_unreadable_image_is_named() {
    let f = Fixture::new();
    let missing = f.rig.path("no-such-image.raw");
    let dir = f.rig.path("a-directory");
    std::fs::create_dir(&dir).unwrap();
    let dangling = f.rig.path("dangling.raw");
    std::os::unix::fs::symlink(f.rig.path("nowhere.raw"), &dangling).unwrap();
    let empty = f.rig.path("empty.raw");
    std::fs::write(&empty, b"").unwrap();
    for (p, needle) in [
        (&missing, "cannot open"),
        (&dir, "neither a regular file nor a block device"),
        (&dangling, "cannot open"),
        (&empty, "is empty"),
    ] {
        for extra in [&[][..], &["--read-mode", "full"], &["--parent", "latest"]] {
            let r = f.backup_run(s(p), extra).fails(1, &[s(p), needle]);
            json_code(&r, 1);
        }
    }
    f.check();
}

#[test]
fn bad_changed_areas_files_are_named_with_their_line() {
    let f = Fixture::new();
    let cap = 4 * MIB;
    let cases = [
        (
            "malformed",
            "0,4096\nhello\n".to_string(),
            "line 2",
            "expected `offset,length`",
        ),
        (
            "notanumber",
            "# ok\n0,4096\n8192,4k\n".into(),
            "line 3",
            "not a decimal",
        ),
        ("negative", "-1,4096\n".into(), "line 1", "not a decimal"),
        ("zero", "0,0\n".into(), "line 1", "zero"),
        ("unsorted", "65536,10\n0,10\n".into(), "line 2", "sorted"),
        (
            "overlapping",
            "0,100000\n65536,10\n".into(),
            "line 2",
            "overlap",
        ),
        (
            "beyond",
            format!("0,10\n{},2\n", cap - 1),
            "line 2",
            "beyond the disk size",
        ),
        (
            "overflow",
            "18446744073709551615,2\n".into(),
            "line 1",
            "overflows",
        ),
    ];
    for (name, text, line, needle) in cases {
        let p = f.rig.path(&format!("{name}.cbt"));
        std::fs::write(&p, text).unwrap();
        for extra in [&["--parent", "latest"][..], &[]] {
            let mut a = extra.to_vec();
            a.extend(["--changed-areas", s(&p)]);
            let r = f
                .backup_run(s(&f.image), &a)
                .fails(1, &[s(&p), line, needle]);
            json_code(&r, 1);
        }
    }
    let missing = f.rig.path("missing.cbt");
    f.backup_run(
        s(&f.image),
        &["--parent", "latest", "--changed-areas", s(&missing)],
    )
    .fails(1, &[s(&missing), "cannot open"]);
    f.check();
}

#[test]
fn bad_parent_generations_are_named() {
    let f = Fixture::new();
    let img = s(&f.image);
    let g0 = f.gens[0].0.clone();
    // Missing.
    f.backup_run(img, &["--parent", "deadbeef"])
        .fails(1, &["parent generation deadbeef", "not found"]);
    f.backup_run(img, &["--parent", "latest:nosuchdisk"])
        .fails(1, &["latest:nosuchdisk", "not found"]);
    f.backup_run(img, &["--parent", "xyz"])
        .fails(1, &["xyz", "not found"]);
    // Of another disk.
    let r = f
        .rig
        .run([
            "backup",
            "--image",
            img,
            "--disk",
            "d2",
            "--parent",
            &g0[..12],
        ])
        .fails(1, &[&g0[..8], "no disk named \"d2\"", "d1"]);
    json_code(&r, 1);
    // Of another size.
    let bigger = f.rig.path("bigger.raw");
    std::fs::copy(&f.image, &bigger).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&bigger)
        .unwrap()
        .set_len(8 * MIB)
        .unwrap();
    let cbt = f.rig.path("ok.cbt");
    write_areas(&cbt, &[(0, 4096)]);
    f.backup_run(
        s(&bigger),
        &["--parent", "latest", "--changed-areas", s(&cbt)],
    )
    .fails(
        1,
        &[
            "parent generation",
            "4194304",
            "8388608",
            s(&bigger),
            "full backup",
        ],
    );
    f.check();
}

#[test]
fn existing_restore_target_needs_force() {
    let f = Fixture::new();
    let (g0, v0) = &f.gens[0];
    let to = f.rig.path("precious.raw");
    std::fs::write(&to, b"precious data").unwrap();
    let r = f
        .rig
        .run(["restore", g0, "--to", s(&to)])
        .fails(1, &[s(&to), "already exists", "--force"]);
    json_code(&r, 1);
    assert_eq!(std::fs::read(&to).unwrap(), b"precious data");
    // A directory is refused even with --force.
    let dir = f.rig.path("somedir");
    std::fs::create_dir(&dir).unwrap();
    f.rig
        .run(["restore", g0, "--to", s(&dir), "--force"])
        .fails(1, &[s(&dir), "neither a regular file"]);
    // With --force the file is replaced (also by a shorter disk).
    std::fs::write(&to, vec![0xAA; 5 * MIB as usize]).unwrap();
    let v = f.rig.ok(["restore", g0, "--to", s(&to), "--force"]);
    assert_eq!(v["generation"], Value::String(g0.clone()));
    assert_same(&to, v0);
    f.check();
}

#[test]
fn repository_from_a_newer_format_version_exits_4_asking_for_an_upgrade() {
    let f = Fixture::new();
    let cfg = f.rig.repo.join("config");
    let orig = std::fs::read(&cfg).unwrap();
    let mut newer = orig.clone();
    assert_eq!(
        &newer[8..10],
        &1u16.to_le_bytes(),
        "config version is not 1"
    );
    newer[8..10].copy_from_slice(&2u16.to_le_bytes());
    std::fs::write(&cfg, &newer).unwrap();
    let repo = s(&f.rig.repo).to_string();
    let img = s(&f.image).to_string();
    for args in [
        vec!["generations"],
        vec!["backup", "--image", img.as_str(), "--disk", "d1"],
        vec!["restore", "latest", "--to", "/nonexistent/x.raw"],
        vec!["stats"],
    ] {
        let r = f
            .rig
            .run(&args)
            .fails(4, &[repo.as_str(), "version 2", "upgrade vmkeep"]);
        json_code(&r, 4);
    }
    assert_eq!(
        std::fs::read(&cfg).unwrap(),
        newer,
        "the config was rewritten"
    );
    std::fs::write(&cfg, &orig).unwrap();
    f.check();
}

#[test]
fn disk_full_during_a_backup_exits_7_and_keeps_earlier_generations() {
    let mut rig = Rig::empty();
    // The repository on a small tmpfs; cache and images elsewhere.
    let mnt = Tmpfs::mount(&rig.path("small-fs"), "8M");
    rig.repo = mnt.dir.join("repo");
    let mut a = vec!["init", "--chunk-size", "64K"];
    a.extend(KDF);
    rig.ok(&a);
    let small = rig.path("small.raw");
    std::fs::write(&small, random_bytes(90, MIB as usize)).unwrap();
    let g0 = rig.backup(&small, "small", &[]);
    let g0 = g0["generation"].as_str().unwrap().to_string();

    let big = rig.path("big.raw");
    std::fs::write(&big, random_bytes(91, 32 * MIB as usize)).unwrap();
    let r = rig
        .run(["backup", "--image", s(&big), "--disk", "big"])
        .fails(7, &["no space left", s(&mnt.dir)]);
    json_code(&r, 7);
    let gens = rig.generations();
    assert_eq!(gens.len(), 1, "{gens:?}");
    assert_eq!(gens[0]["id"], Value::String(g0.clone()));
    rig.assert_restores(&g0, &small);
    rig.assert_restores("latest", &small);
    // The full file system does not break reading commands.
    rig.ok(["stats"]);
    rig.ok(["key", "list"]);
    drop(mnt);
}
