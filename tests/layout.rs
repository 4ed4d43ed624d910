//! The source tree keeps the shape docs/architecture.md describes: no source file imports
//! another that (directly or through others) imports it back, no file grows past 600 lines,
//! and the Store's folder stays free of I/O and of the subsystems built on it.
//!
//! These read the sources as text: `use` paths and inline `crate::`/`super::` paths are
//! resolved to the file that defines the longest prefix of the path.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The longest a source file may be, tests included.
const MAX_LINES: usize = 600;

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("read a source folder") {
            let path = entry.expect("read a source folder entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The module path of a file of the crate rooted at `src` (`store/mod.rs` is `[store]`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).expect("a file of the crate");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file defining module `path`, if there is one.
fn file_of(src: &Path, path: &[String]) -> Option<PathBuf> {
    if path.is_empty() {
        return Some(src.join("lib.rs")).filter(|f| f.exists());
    }
    let joined: PathBuf = path.iter().collect();
    [
        src.join(&joined).with_extension("rs"),
        src.join(&joined).join("mod.rs"),
    ]
    .into_iter()
    .find(|f| f.exists())
}

/// The file that defines the longest prefix of `path`.
fn resolve(src: &Path, path: &[String]) -> Option<PathBuf> {
    (1..=path.len())
        .rev()
        .find_map(|n| file_of(src, &path[..n]))
}

/// The paths a line names that start with `crate::`, `super::`, `self::` or one of the
/// module's own children, made absolute; `inline` says the line is inside an inline module
/// (indented), where `super` is the file's own module.
fn paths_in(line: &str, module: &[String], inline: bool, src: &Path) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let is_use = line.trim_start().starts_with("use ") || line.trim_start().starts_with("pub use ");
    let words = line.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c == '{'));
    for word in words {
        let mut segments: Vec<&str> = word.split("::").collect();
        let Some(first) = segments.first().copied() else {
            continue;
        };
        let mut base: Vec<String> = match first {
            "crate" => Vec::new(),
            "super" => {
                let mut base = module.to_vec();
                if !inline {
                    base.pop();
                }
                base
            }
            "self" => module.to_vec(),
            child if is_use && segments.len() > 1 => {
                let mut base = module.to_vec();
                base.push(child.to_string());
                if file_of(src, &base).is_none() {
                    continue;
                }
                base.pop();
                base
            }
            _ => continue,
        };
        if !matches!(first, "crate" | "super" | "self") {
            segments.insert(0, "self");
        }
        for segment in &segments[1..] {
            let segment = segment.trim_end_matches('{');
            if segment.is_empty() || segment == "self" {
                break;
            }
            base.push(segment.to_string());
        }
        paths.push(base);
    }
    // `use a::b::{c, d::e}`: each item inside the braces is a path of its own.
    if let (true, Some(open)) = (is_use, line.find("::{")) {
        let prefix = &line[..open];
        let items = line[open + 3..].trim_end_matches(['}', ';', ' ']);
        for item in items.split(',') {
            let item = item.trim().trim_end_matches('}');
            if item.is_empty() || item == "self" {
                continue;
            }
            let prefix = prefix
                .trim_start()
                .trim_start_matches("pub ")
                .trim_start_matches("use ");
            let joined = format!("{prefix}::{item}");
            paths.extend(paths_in(&format!("use {joined};"), module, inline, src));
        }
    }
    paths
}

/// For each file of the crate rooted at `src`, the other files of the crate it refers to.
fn dependencies(src: &Path) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mut graph = BTreeMap::new();
    for file in rust_files(src) {
        let module = module_of(src, &file);
        let text = fs::read_to_string(&file).expect("read a source file");
        let mut uses = BTreeSet::new();
        for line in text.lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//")
                || trimmed.starts_with("mod ")
                || trimmed.starts_with("pub mod ")
            {
                continue;
            }
            let inline = line.starts_with(' ');
            for path in paths_in(line, &module, inline, src) {
                if let Some(target) = resolve(src, &path) {
                    if target != file {
                        uses.insert(target);
                    }
                }
            }
        }
        graph.insert(file, uses);
    }
    graph
}

/// A cycle in `graph`, as the files along it, if there is one.
fn find_cycle(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Option<Vec<PathBuf>> {
    fn visit(
        file: &PathBuf,
        graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        done: &mut BTreeSet<PathBuf>,
        stack: &mut Vec<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        if let Some(at) = stack.iter().position(|f| f == file) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(file.clone());
            return Some(cycle);
        }
        if !done.insert(file.clone()) {
            return None;
        }
        stack.push(file.clone());
        for next in graph.get(file).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|file| visit(file, graph, &mut done, &mut Vec::new()))
}

#[test]
fn no_source_file_imports_one_that_imports_it_back() {
    for src in [
        root().join("actors/src"),
        root().join("src"),
        root().join("fuzz/src"),
    ] {
        let graph = dependencies(&src);
        assert!(graph.len() > 5, "no sources found under {}", src.display());
        if let Some(cycle) = find_cycle(&graph) {
            let shown: Vec<_> = cycle
                .iter()
                .map(|f| f.strip_prefix(root()).unwrap_or(f).display().to_string())
                .collect();
            panic!("import cycle: {}", shown.join(" -> "));
        }
    }
}

#[test]
fn the_checker_finds_the_cycles_it_is_meant_to_find() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    fs::create_dir(src.join("a")).unwrap();
    fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    fs::write(src.join("a/mod.rs"), "pub mod x;\nuse x::Thing;\n").unwrap();
    fs::write(src.join("a/x.rs"), "use crate::b::{self, Other};\n").unwrap();
    fs::write(src.join("b.rs"), "fn f() { crate::a::Thing::new(); }\n").unwrap();
    let cycle = find_cycle(&dependencies(src)).expect("a -> x -> b -> a is a cycle");
    assert_eq!(cycle.len(), 4, "{cycle:?}");
    fs::write(
        src.join("b.rs"),
        "// crate::a::Thing in a comment is no import\n",
    )
    .unwrap();
    assert_eq!(find_cycle(&dependencies(src)), None);
    fs::write(src.join("b.rs"), "use super::a::x;\n").unwrap();
    assert!(
        find_cycle(&dependencies(src)).is_some(),
        "super:: from the crate root's child"
    );
}

#[test]
fn no_source_file_is_over_600_lines() {
    let mut long = Vec::new();
    for dir in [
        "actors/src",
        "src",
        "tests",
        "fuzz/src",
        "fuzz/tests",
        "fuzz/fuzz_targets",
    ] {
        for file in rust_files(&root().join(dir)) {
            let lines = fs::read_to_string(&file)
                .expect("read a source file")
                .lines()
                .count();
            if lines > MAX_LINES {
                long.push(format!(
                    "{} ({lines} lines)",
                    file.strip_prefix(root()).unwrap_or(&file).display()
                ));
            }
        }
    }
    assert!(long.is_empty(), "split these by concept: {long:?}");
}

#[test]
fn the_store_does_no_io_and_knows_nothing_built_on_it() {
    let forbidden = [
        "std::fs",
        "std::net",
        "tokio::net",
        "tokio::fs",
        "std::process",
        "crate::storage",
        "crate::replication",
        "crate::protocol",
        "crate::server",
    ];
    let store = root().join("actors/src/store");
    let files = rust_files(&store);
    assert!(
        files.len() >= 3,
        "the Store's folder is gone: {}",
        store.display()
    );
    for file in files {
        let text = fs::read_to_string(&file).expect("read a source file");
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for name in forbidden {
                assert!(
                    !line.contains(name),
                    "{} names {name}: the Store does no I/O and depends on nothing built on it",
                    file.display()
                );
            }
        }
    }
}
