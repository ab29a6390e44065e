//! The house rules of the source tree, checked on the source itself:
//! - the top-level modules form layers, and no module names one above it;
//! - within a folder, no two files import each other (directly or around a circle);
//! - the library's `unsafe` code lives in `src/dataplane/dpdk/` only;
//! - the worker's loop, its services and its engine take no lock;
//! - no function of the library runs over 120 lines.
//!
//! Test modules (everything after a file's first `#[cfg(test)]`) and comments are
//! left out: a test may reach anywhere, and a comment may name anything.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top. A module may name those at its own level or below.
const LAYERS: &[(&str, u8)] = &[
    ("ids", 0),
    ("panic_message", 0),
    ("wire", 1),
    ("tag", 2),
    ("session", 3),
    ("interwork", 4),
    ("route", 5),
    ("control", 6),
    ("flow", 7),
    ("inspect", 7),
    ("cluster", 8),
    ("dataplane", 9),
];

fn level(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The file's code without its tests and comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string literal ("http://") is rare in this code base and
            // only ever shortens what is scanned.
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `prefix` + identifier in `code`.
fn names_after<'c>(code: &'c str, prefix: &str) -> Vec<&'c str> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
        out.push(&rest[..end]);
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level module a library file belongs to (`None` for the binaries and lib.rs).
fn top_module(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    if first == "bin" || first == "main.rs" || first == "lib.rs" {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_owned())
}

#[test]
fn no_module_names_one_above_it() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let mut upward = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(src()).unwrap_or(f);
        let Some(me) = top_module(rel) else { continue };
        let Some(mine) = level(&me) else {
            upward.push(format!("{}: module `{me}` has no layer in LAYERS", rel.display()));
            continue;
        };
        for target in names_after(&code(f), "crate::") {
            match level(target) {
                Some(l) if l > mine => upward.push(format!("{} ({me}) names crate::{target}", rel.display())),
                Some(_) => {}
                None => upward.push(format!("{}: crate::{target} has no layer in LAYERS", rel.display())),
            }
        }
    }
    assert!(upward.is_empty(), "imports that run up the layers:\n{}", upward.join("\n"));
}

/// Sibling files of one folder and which siblings each names (`super::x` from a file,
/// `self::x`/`x::` from a `mod.rs` do not count: a parent holds its children).
fn sibling_edges(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return BTreeMap::new() };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "rs") && p.file_name().is_some_and(|n| n != "mod.rs") {
            files.push(p);
        }
    }
    let stems: BTreeSet<String> = files.iter().filter_map(|p| p.file_stem()?.to_str().map(str::to_owned)).collect();
    // The folder's module path, for `crate::a::b::sibling` references.
    let rel = dir.strip_prefix(src()).unwrap_or(dir);
    let module_path: String =
        rel.components().filter_map(|c| c.as_os_str().to_str()).map(|c| format!("{c}::")).collect();
    let mut edges = BTreeMap::new();
    for f in &files {
        let Some(me) = f.file_stem().and_then(|s| s.to_str()) else { continue };
        let code = code(f);
        let mut named = BTreeSet::new();
        for n in names_after(&code, "super::") {
            if stems.contains(n) && n != me {
                named.insert(n.to_owned());
            }
        }
        if !module_path.is_empty() {
            for n in names_after(&code, &format!("crate::{module_path}")) {
                if stems.contains(n) && n != me {
                    named.insert(n.to_owned());
                }
            }
        }
        edges.insert(me.to_owned(), named);
    }
    edges
}

fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle = path[i..].to_vec();
            cycle.push(n.to_owned());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_owned());
        for next in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_two_files_of_a_folder_import_each_other() {
    let mut dirs = vec![src()];
    let mut circles = Vec::new();
    while let Some(d) = dirs.pop() {
        if let Ok(entries) = std::fs::read_dir(&d) {
            dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        if let Some(c) = find_cycle(&sibling_edges(&d)) {
            let rel = d.strip_prefix(src()).unwrap_or(&d).display().to_string();
            circles.push(format!("src/{rel}: {}", c.join(" -> ")));
        }
    }
    assert!(circles.is_empty(), "files that import each other:\n{}", circles.join("\n"));
}

#[test]
fn unsafe_code_lives_in_the_dpdk_room() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let room = src().join("dataplane").join("dpdk");
    let mut outside = Vec::new();
    for f in files.iter().filter(|f| !f.starts_with(&room) && !f.starts_with(src().join("bin"))) {
        let code = code(f);
        if names_after(&code, "unsafe").iter().any(|rest| rest.is_empty()) {
            outside.push(f.strip_prefix(src()).unwrap_or(f).display().to_string());
        }
    }
    assert!(outside.is_empty(), "unsafe outside src/dataplane/dpdk/: {outside:?}");
}

#[test]
fn the_packet_path_takes_no_lock() {
    // What a worker runs per frame: its loop, its SIP and TCP services, its engine.
    let mut files: Vec<PathBuf> = ["worker.rs", "sip.rs", "tcp.rs", "host.rs", "arp.rs"]
        .iter()
        .map(|f| src().join("dataplane").join(f))
        .collect();
    sources(&src().join("flow"), &mut files);
    let mut locking = Vec::new();
    for f in &files {
        let code = code(f);
        for what in ["Mutex", "RwLock", ".lock()"] {
            if code.contains(what) {
                locking.push(format!("{}: {what}", f.strip_prefix(src()).unwrap_or(f).display()));
            }
        }
    }
    assert!(locking.is_empty(), "locks on the packet path: {locking:?}");
}

/// Each function of `code` (one per `fn` line; its body ends at the first line that
/// closes it at its own indentation) as (name, lines).
fn function_lengths(code: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| *w == "fn") else { continue };
        // Only qualifiers may come before `fn` (`pub`, `pub(crate)`, `const`, `unsafe`, ...).
        if !words[..at]
            .iter()
            .all(|w| w.starts_with("pub") || matches!(*w, "const" | "unsafe" | "async" | "extern" | "\"C\""))
        {
            continue;
        }
        let name: String =
            words.get(at + 1).map_or("", |w| w).chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if trimmed.ends_with(';') {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(end) = lines[i + 1..].iter().position(|l| *l == close) {
            out.push((name, end + 2));
        }
    }
    out
}

#[test]
fn no_function_runs_over_120_lines() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let mut long = Vec::new();
    for f in files.iter().filter(|f| !f.starts_with(src().join("bin"))) {
        for (name, n) in function_lengths(&code(f)) {
            if n > 120 {
                long.push(format!("{}: {name} ({n} lines)", f.strip_prefix(src()).unwrap_or(f).display()));
            }
        }
    }
    assert!(long.is_empty(), "functions over 120 lines (split them by what they do):\n{}", long.join("\n"));
}

#[test]
fn the_checks_see_what_they_look_for() {
    // The scanners themselves: a check that finds nothing must be able to find something.
    let code = "use crate::wire::sip; let x = my_crate::flow::y; // crate::dataplane\n";
    let code: String = code.lines().map(|l| l.split("//").next().unwrap_or("")).collect();
    assert_eq!(names_after(&code, "crate::"), ["wire"]);
    // `unsafe` as a word (a block or impl), not inside `unsafe_code`.
    assert_eq!(names_after("#![deny(unsafe_code)] unsafe { f() }", "unsafe"), ["_code", ""]);
    let mut edges = BTreeMap::new();
    edges.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    edges.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    edges.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(find_cycle(&edges), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    edges.insert("c".to_owned(), BTreeSet::new());
    assert_eq!(find_cycle(&edges), None);
    let long_fn = format!("    pub(crate) fn f() {{\n{}    }}\n", "        x();\n".repeat(130));
    assert_eq!(function_lengths(&long_fn), [("f".to_owned(), 132)]);
}
