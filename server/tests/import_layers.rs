//! One-way layers: no module of the workspace's crates imports a module that imports it back.
//!
//! The check reads the sources (every `.rs` file under each crate's `src/`), takes each file as
//! a module (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`), and collects every path it names
//! through `crate::` or `super::` (in `use` lines, braces included, and in code), outside
//! comments. A path names the deepest module it reaches. Two kinds of line are not
//! dependencies and are skipped: `mod` declarations and re-exports (`pub use`,
//! `pub(crate) use`): a parent that re-exports its children's items is their front, not a
//! user. Test modules count like any other code: a cycle that only tests need is still one.
//! Then every strongly connected component of more than one module is a cycle, printed with
//! the edges that close it (file and line), and the test fails.
//!
//! Run `cargo test -p kvstore-server --test import_layers -- --nocapture` to see the graph's
//! size per crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates whose module graphs must be acyclic, relative to the workspace root.
const CRATES: &[&str] = &[
    "server", "client", "loadgen", "checker", "proto", "harness", "sim",
];

/// A module path inside a crate, e.g. `["storage", "log"]`; the crate root is `[]`.
type ModPath = Vec<String>;

/// Where an edge comes from, for the report.
#[derive(Debug, Clone)]
struct Site {
    file: PathBuf,
    line: usize,
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut report = Vec::new();
    for krate in CRATES {
        let src = root.join(krate).join("src");
        let files = rust_files(&src);
        assert!(!files.is_empty(), "no sources under {}", src.display());
        let modules: BTreeMap<ModPath, PathBuf> = files
            .iter()
            .map(|f| (module_of(&src, f), f.clone()))
            .collect();
        let mut edges: BTreeMap<(ModPath, ModPath), Site> = BTreeMap::new();
        for (module, file) in &modules {
            let text = std::fs::read_to_string(file).expect("read source");
            for (line_no, target) in references(module, &text) {
                let Some(target) = deepest_module(&modules, &target) else {
                    continue;
                };
                if &target != module {
                    edges
                        .entry((module.clone(), target))
                        .or_insert_with(|| Site {
                            file: file.strip_prefix(&root).unwrap_or(file).to_path_buf(),
                            line: line_no,
                        });
                }
            }
        }
        println!(
            "{krate}: {} modules, {} import edges",
            modules.len(),
            edges.len()
        );
        for component in cycles(modules.keys().cloned().collect(), &edges) {
            let names: Vec<String> = component.iter().map(|m| name(krate, m)).collect();
            report.push(format!("{krate}: cycle among {}", names.join(", ")));
            for ((from, to), site) in &edges {
                if component.contains(from) && component.contains(to) {
                    report.push(format!(
                        "    {} -> {}   ({}:{})",
                        name(krate, from),
                        name(krate, to),
                        site.file.display(),
                        site.line
                    ));
                }
            }
        }
    }
    assert!(
        report.is_empty(),
        "modules that import each other (a lower layer must not import a higher one):\n{}",
        report.join("\n")
    );
}

fn name(krate: &str, module: &ModPath) -> String {
    if module.is_empty() {
        format!("{krate} (crate root)")
    } else {
        format!("{krate}::{}", module.join("::"))
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The module a file is: `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; `lib.rs` and `main.rs`
/// (and `bin/*.rs`) are roots.
fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.first().is_some_and(|p| p == "bin") {
        return Vec::new();
    }
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

/// The deepest known module `path` reaches (a path names items inside a module too).
fn deepest_module(modules: &BTreeMap<ModPath, PathBuf>, path: &[String]) -> Option<ModPath> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains_key(p))
}

/// Every `crate::` / `super::` path in `text` (outside comments, `mod` lines and re-exports),
/// resolved to an absolute module path, with its line number.
fn references(module: &ModPath, text: &str) -> Vec<(usize, ModPath)> {
    let mut out = Vec::new();
    let mut in_block_comment = false;
    let mut statement = String::new();
    let mut statement_line = 0;
    for (i, raw) in text.lines().enumerate() {
        let mut line = raw.to_string();
        if in_block_comment {
            match line.find("*/") {
                Some(end) => {
                    line = line[end + 2..].to_string();
                    in_block_comment = false;
                }
                None => continue,
            }
        }
        if let Some(start) = line.find("/*") {
            if !line[start..].contains("*/") {
                in_block_comment = true;
            }
            line.truncate(start);
        }
        if let Some(start) = line.find("//") {
            line.truncate(start);
        }
        // A `use` statement may span lines: gather it up to its `;`.
        if !statement.is_empty() {
            statement.push(' ');
            statement.push_str(&line);
            if line.contains(';') {
                for path in use_paths(&statement) {
                    out.extend(resolve(module, &path).map(|p| (statement_line, p)));
                }
                statement.clear();
            }
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("pub use ")
            || trimmed.starts_with("pub(crate) use ")
            || trimmed.starts_with("pub(super) use ")
        {
            if !trimmed.contains(';') {
                // Skip the rest of a multi-line re-export.
                statement = "#reexport".into();
            }
            continue;
        }
        if trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ") {
            continue;
        }
        if trimmed.starts_with("use ") {
            if trimmed.contains(';') {
                for path in use_paths(trimmed) {
                    out.extend(resolve(module, &path).map(|p| (i + 1, p)));
                }
            } else {
                statement = trimmed.to_string();
                statement_line = i + 1;
            }
            continue;
        }
        for path in inline_paths(&line) {
            out.extend(resolve(module, &path).map(|p| (i + 1, p)));
        }
    }
    out
}

/// The paths of a `use` statement, braces expanded: `use crate::a::{b, c::d};` gives
/// `crate::a::b` and `crate::a::c::d`.
fn use_paths(statement: &str) -> Vec<Vec<String>> {
    if statement.starts_with("#reexport") {
        return Vec::new();
    }
    let body = statement
        .trim_start()
        .trim_start_matches("use ")
        .trim_end()
        .trim_end_matches(';');
    let mut out = Vec::new();
    expand(&[], body, &mut out);
    out
}

fn expand(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut base = prefix.to_vec();
        base.extend(head);
        for part in split_top_level(inner) {
            expand(&base, part, out);
        }
    } else {
        let mut path = prefix.to_vec();
        let without_alias = tree.split(" as ").next().unwrap_or(tree);
        path.extend(
            without_alias
                .split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "*" && *s != "self")
                .map(String::from),
        );
        out.push(path);
    }
}

/// Splits `a, b::{c, d}, e` at the commas outside braces.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// `crate::a::b` and `super::x` paths written in code (not in `use` lines).
fn inline_paths(line: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    for anchor in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(pos) = line[from..].find(anchor) {
            let at = from + pos;
            from = at + anchor.len();
            // `crate::` inside an identifier (`kvstore_crate::`) or after `$` is not ours.
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            if anchor == "super::" && at >= 2 && &line[at - 2..at] == "::" {
                continue; // part of a longer path already taken from its start
            }
            let rest: String = line[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(
                rest.split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            );
        }
    }
    out
}

/// An absolute module path for `path` written in `module`; `None` for external crates.
fn resolve(module: &ModPath, path: &[String]) -> Option<ModPath> {
    let first = path.first()?;
    match first.as_str() {
        "crate" => Some(path[1..].to_vec()),
        "super" | "self" => {
            let mut base = module.clone();
            let mut rest = path;
            while let Some(seg) = rest.first() {
                match seg.as_str() {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            Some(base)
        }
        _ => None,
    }
}

/// The strongly connected components of more than one module (Tarjan's algorithm).
fn cycles(
    nodes: Vec<ModPath>,
    edges: &BTreeMap<(ModPath, ModPath), Site>,
) -> Vec<BTreeSet<ModPath>> {
    let index_of: BTreeMap<&ModPath, usize> =
        nodes.iter().enumerate().map(|(i, m)| (m, i)).collect();
    let mut adj = vec![Vec::new(); nodes.len()];
    for (from, to) in edges.keys() {
        adj[index_of[from]].push(index_of[to]);
    }
    struct State {
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(v: usize, adj: &[Vec<usize>], s: &mut State) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &adj[v] {
            match s.index[w] {
                None => {
                    visit(w, adj, s);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.out.push(component);
            }
        }
    }
    let n = nodes.len();
    let mut state = State {
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if state.index[v].is_none() {
            visit(v, &adj, &mut state);
        }
    }
    state
        .out
        .into_iter()
        .map(|c| c.into_iter().map(|i| nodes[i].clone()).collect())
        .collect()
}

#[test]
fn the_parser_sees_use_groups_super_paths_and_skips_comments_and_reexports() {
    let module: ModPath = vec!["storage".into(), "log".into()];
    let text = "\
//! [`crate::not::a::dependency`]
use crate::storage::{compaction, recovery::Recovered};
use super::index::Index;
pub use crate::reexported::Thing;
mod child;
/* crate::in_block */
fn f() { crate::hlc::Hlc::now(); super::snapshot::write(); }
use crate::{
    a::b,
    c,
};
";
    let found: Vec<ModPath> = references(&module, text).into_iter().map(|r| r.1).collect();
    let want: Vec<ModPath> = [
        "storage::compaction",
        "storage::recovery::Recovered",
        "storage::index::Index",
        "hlc::Hlc::now",
        "storage::snapshot::write",
        "a::b",
        "c",
    ]
    .iter()
    .map(|p| p.split("::").map(String::from).collect())
    .collect();
    assert_eq!(found, want);
}

#[test]
fn a_two_module_cycle_is_found_and_a_chain_is_not() {
    let m = |s: &str| -> ModPath { vec![s.to_string()] };
    let site = || Site {
        file: PathBuf::from("x.rs"),
        line: 1,
    };
    let mut edges = BTreeMap::new();
    edges.insert((m("a"), m("b")), site());
    edges.insert((m("b"), m("c")), site());
    assert!(cycles(vec![m("a"), m("b"), m("c")], &edges).is_empty());
    edges.insert((m("c"), m("a")), site());
    let found = cycles(vec![m("a"), m("b"), m("c")], &edges);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].len(), 3);
}
