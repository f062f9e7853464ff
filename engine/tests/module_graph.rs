//! The engine's modules form no import cycle (issue 14): each top-level
//! module of `engine/src` is a node, each `crate::X` path in its files an
//! edge to module X (`crate::Error` and `crate::Result` are `error`'s).
//! A cycle, when one comes back, is printed with the files that make it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// module → module it uses → the files that use it.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The modules `lib.rs` declares.
fn modules() -> BTreeSet<String> {
    std::fs::read_to_string(src().join("lib.rs"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))?;
            Some(rest.trim_end_matches(';').trim().to_string())
        })
        .collect()
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segment of every path a `crate::` at the start of `s` names:
/// one for `crate::a::b`, one per item of `crate::{a, b::c}`.
fn first_segments(s: &str) -> Vec<String> {
    let Some(group) = s.strip_prefix('{') else {
        return vec![ident_at(s).to_string()];
    };
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, true);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => start = true,
            c if start && depth == 0 && !c.is_whitespace() => {
                out.push(ident_at(&group[i..]).to_string());
                start = false;
            }
            _ => {}
        }
    }
    out
}

/// Every `crate::` path in `text` outside comments, joined across lines
/// (a `use crate::{...}` group may span several).
fn uses(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        let after = &rest[i + "crate::".len()..];
        // `$crate::` (macros) and `foo_crate::` are not this crate's paths.
        if !before.is_some_and(|c| c == '$' || c == '_' || c.is_ascii_alphanumeric()) {
            out.extend(first_segments(after));
        }
        rest = after;
    }
    out
}

fn graph() -> Graph {
    let mods = modules();
    assert!(mods.len() > 10, "lib.rs declares {mods:?}");
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut g = Graph::new();
    for f in files {
        let rel = f.strip_prefix(src()).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let from = first.trim_end_matches(".rs").to_string();
        if from == "lib" {
            continue;
        }
        assert!(
            mods.contains(&from),
            "{} is in no module of lib.rs",
            rel.display()
        );
        let text = std::fs::read_to_string(&f).unwrap();
        for seg in uses(&text) {
            let to = match seg.as_str() {
                "Error" | "Result" => "error".to_string(),
                m if mods.contains(m) => m.to_string(),
                _ => continue,
            };
            if to != from {
                g.entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
    }
    g
}

/// A cycle of `g` as its modules in order (the first repeated at the
/// end), if there is one.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        n: &str,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let at = path.iter().position(|p| p == n).unwrap();
                let mut c = path[at..].to_vec();
                c.push(n.to_string());
                return Some(c);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for next in g.get(n).into_iter().flat_map(|m| m.keys()) {
            if let Some(c) = visit(g, next, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if let Some(c) = visit(g, n, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn engine_modules_import_each_other_without_a_cycle() {
    let g = graph();
    if let Some(c) = find_cycle(&g) {
        let steps: Vec<String> = c
            .windows(2)
            .map(|w| {
                let files: Vec<&String> = g[&w[0]][&w[1]].iter().collect();
                format!("  {} -> {} (in {files:?})", w[0], w[1])
            })
            .collect();
        panic!("import cycle {}:\n{}", c.join(" -> "), steps.join("\n"));
    }
}

/// The bottom layers use nothing above them: the error type, the host
/// facts and the object layout nothing at all, the backends only the
/// layout and the error type.
#[test]
fn the_bottom_layers_stay_at_the_bottom() {
    let g = graph();
    let uses = |m: &str| -> BTreeSet<String> {
        g.get(m)
            .map(|e| e.keys().cloned().collect())
            .unwrap_or_default()
    };
    for m in ["error", "host", "layout"] {
        assert!(uses(m).is_empty(), "{m} uses {:?}", g.get(m));
    }
    let want: BTreeSet<String> = ["error", "layout"].map(String::from).into();
    assert!(
        uses("backend").is_subset(&want),
        "backend uses {:?}",
        g.get("backend")
    );
    let want: BTreeSet<String> = ["backend", "error", "layout"].map(String::from).into();
    assert!(
        uses("trash").is_subset(&want),
        "trash uses {:?}",
        g.get("trash")
    );
}

#[test]
fn the_parser_sees_grouped_and_inline_paths_and_skips_comments() {
    let text = "use crate::{Error, repo::{self, Repository}, layout::Key};\n\
                // use crate::gc;\n\
                let x = crate::trash::find(b);\n\
                macro_rules! m { () => { $crate::host::now() } }\n";
    assert_eq!(uses(text), ["Error", "repo", "layout", "trash"]);
    let mut g = Graph::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a")] {
        g.entry(a.into())
            .or_default()
            .entry(b.into())
            .or_default()
            .insert("f".into());
    }
    assert_eq!(
        find_cycle(&g),
        Some(["a", "b", "c", "a"].map(String::from).to_vec())
    );
    g.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&g), None);
}
