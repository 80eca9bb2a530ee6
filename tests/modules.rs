//! No module cycle (project issue 13): the library's modules import only downward.
//!
//! Reads every file of `src/` (the library; `main.rs` is the binary) and collects
//! the paths it names: `use` trees and any `crate::`, `super::` or `self::` path in
//! code, test code included, comments and strings left out. The top-level modules
//! are the layers of [`LAYERS`] (README's Layout): each imports only from layers
//! below its own. Inside each directory module (`web/`, `jobs/`, `engine/`, `host/`,
//! ...), the graph of its child modules must be acyclic. A directory's `mod.rs` is its registry and is no node of the second graph
//! (`jobs/mod.rs` registers every family, and each family names its `Catalogue`).
//!
//! `cargo modules dependencies --acyclic` (cargo-modules 0.27) cannot say this: its
//! graph is of items, where a type and its own constructor already form a cycle, and
//! it does not see paths named inside function bodies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One module's file and its path from the crate root (`[]` for `lib.rs`).
/// The top-level modules, bottom up, as README's Layout gives them: a module may
/// import from the layers before its own, never from its own or a later one.
const LAYERS: &[&[&str]] = &[
    &["time", "shutdown"],
    &["model"],
    &["host"],
    &["state"],
    &["config"],
    &["job"],
    &["errors"],
    &["web"],
    &["jobs"],
    &["engine"],
    &["agent"],
    &["dev"],
    &["cli"],
    &["fuzzing"],
];

struct Source {
    module: Vec<String>,
    file: PathBuf,
    text: String,
}

fn sources(dir: &Path, out: &mut Vec<Source>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, out);
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let relative = path.strip_prefix(&src).unwrap().with_extension("");
        let mut module: Vec<String> = relative.iter().map(|c| c.to_string_lossy().into_owned()).collect();
        match module.as_slice() {
            [only] if only == "main" || only == "lib" => {
                if only == "main" {
                    continue;
                }
                module.clear();
            }
            [.., last] if last == "mod" => {
                module.pop();
            }
            _ => {}
        }
        let text = std::fs::read_to_string(&path).unwrap();
        out.push(Source { module, file: path, text });
    }
}

/// The code of `text`, one entry per line: comments, string and char literals blanked.
fn code_lines(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
            out.extend(rest[..end].chars().filter(|c| *c == '\n'));
            i += end;
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].bytes().take_while(|b| *b == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            let end = rest[body..].find(&close).map_or(rest.len(), |e| body + e + close.len());
            out.extend(rest[..end].chars().filter(|c| *c == '\n'));
            out.push_str("\"\"");
            i += end;
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() && rest.as_bytes()[j] != b'"' {
                j += if rest.as_bytes()[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            out.extend(rest[..end].chars().filter(|c| *c == '\n'));
            out.push_str("\"\"");
            i += end;
        } else if rest.starts_with('\'') && (rest[1..].starts_with('\\') || rest[1..].chars().nth(1) == Some('\'')) {
            // A char literal ('a', '\n', '\''), not a lifetime.
            let first = rest[1..].chars().next().unwrap();
            let after = 1 + first.len_utf8();
            let after =
                if first == '\\' { after + rest[after..].chars().next().map_or(0, char::len_utf8) } else { after };
            let end = rest[after..].find('\'').map_or(rest.len(), |e| after + e + 1);
            out.push_str("' '");
            i += end;
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out.lines().map(str::to_owned).collect()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths of one `use` tree (`crate::{a, b::{c as d}}` gives `crate::a`, `crate::b::c`).
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap().trim().to_owned()];
    };
    let prefix = &tree[..open];
    let body = &tree[open + 1..tree.rfind('}').unwrap()];
    let (mut items, mut depth, mut current) = (Vec::new(), 0, String::new());
    for c in body.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current);
    items
        .iter()
        .filter(|item| !item.trim().is_empty())
        .flat_map(|item| expand(item).into_iter().map(|p| format!("{prefix}{p}")))
        .collect()
}

/// `path` (`crate::x::y`, `super::y`, `self::y`) from module `from`, as segments from
/// the crate root; `None` for a path into another crate.
fn absolute(from: &[String], path: &str) -> Option<Vec<String>> {
    let mut segments = path.split("::").map(str::trim).filter(|s| !s.is_empty());
    let mut base: Vec<String> = match segments.next()? {
        "crate" => Vec::new(),
        "self" => from.to_vec(),
        "super" => from[..from.len().checked_sub(1)?].to_vec(),
        _ => return None,
    };
    for segment in segments {
        match segment {
            "super" => {
                base.pop();
            }
            "self" => {}
            s => base.push(s.to_owned()),
        }
    }
    Some(base)
}

/// Every path the module of `source` names, with the line naming it.
fn named_paths(source: &Source) -> Vec<(Vec<String>, usize)> {
    let lines = code_lines(&source.text);
    let code = lines.join("\n");
    let line_of = |offset: usize| code[..offset].matches('\n').count() + 1;
    let mut found = Vec::new();
    // `use` trees (their braces span lines).
    let mut rest = 0;
    while let Some(at) = code[rest..].find("use ") {
        let start = rest + at;
        rest = start + 4;
        if start > 0 && is_ident(code[..start].chars().next_back().unwrap()) {
            continue;
        }
        let Some(end) = code[start..].find(';') else { break };
        let tree = &code[start + 4..start + end];
        for path in expand(tree) {
            if let Some(segments) = absolute(&source.module, &path) {
                found.push((segments, line_of(start)));
            }
        }
    }
    // Paths in code.
    for (number, line) in lines.iter().enumerate() {
        for root in ["crate::", "super::", "self::"] {
            let mut from = 0;
            while let Some(at) = line[from..].find(root) {
                let start = from + at;
                from = start + root.len();
                if start > 0 && (is_ident(line[..start].chars().next_back().unwrap()) || line[..start].ends_with("::"))
                {
                    continue;
                }
                let end = line[start..].find(|c: char| !(is_ident(c) || c == ':')).map_or(line.len(), |e| start + e);
                if let Some(segments) = absolute(&source.module, line[start..end].trim_end_matches(':')) {
                    found.push((segments, number + 1));
                }
            }
        }
    }
    found
}

/// The strongly connected components of more than one node (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, node: &'a str) {
        let i = s.index.len();
        s.index.insert(node, i);
        s.low.insert(node, i);
        s.stack.push(node);
        s.on_stack.insert(node);
        for next in s.graph.get(node).into_iter().flatten() {
            if !s.index.contains_key(next.as_str()) {
                visit(s, next);
                let low = s.low[next.as_str()].min(s.low[node]);
                s.low.insert(node, low);
            } else if s.on_stack.contains(next.as_str()) {
                let low = s.index[next.as_str()].min(s.low[node]);
                s.low.insert(node, low);
            }
        }
        if s.low[node] == s.index[node] {
            let mut component = Vec::new();
            loop {
                let n = s.stack.pop().unwrap();
                s.on_stack.remove(n);
                component.push(n.to_owned());
                if n == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}

#[test]
fn modules_import_only_downward() {
    let mut all = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut all);
    let modules: BTreeSet<Vec<String>> = all.iter().map(|s| s.module.clone()).collect();
    // graph name -> (edges, where each edge is named)
    let mut graphs: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut witnesses: BTreeMap<(String, String, String), String> = BTreeMap::new();
    for source in &all {
        let Some(top) = source.module.first() else { continue };
        for (path, line) in named_paths(source) {
            // The module the path lands in: its longest prefix that is a module file.
            let mut target = path.clone();
            while !target.is_empty() && !modules.contains(&target) {
                target.pop();
            }
            let mut edge = |graph: String, from: &str, to: &str| {
                graphs.entry(graph.clone()).or_default().entry(from.to_owned()).or_default().insert(to.to_owned());
                let at = format!("{}:{line}", source.file.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap().display());
                witnesses.entry((graph, from.to_owned(), to.to_owned())).or_insert(at);
            };
            match target.first() {
                Some(to) if to != top => edge("crate".into(), top, to),
                _ => {}
            }
            // Siblings under one directory module, at every depth.
            for depth in 1..source.module.len() {
                let parent = &source.module[..depth];
                if target.len() > depth && target[..depth] == *parent && target[depth] != source.module[depth] {
                    edge(parent.join("::"), &source.module[depth], &target[depth]);
                }
            }
        }
    }
    let mut report = String::new();
    for (name, graph) in &graphs {
        for cycle in cycles(graph) {
            report.push_str(&format!("cycle in {name}: {}\n", cycle.join(", ")));
            for from in &cycle {
                for to in graph[from].iter().filter(|to| cycle.contains(to)) {
                    let at = &witnesses[&(name.clone(), from.clone(), to.clone())];
                    report.push_str(&format!("  {from} -> {to} ({at})\n"));
                }
            }
        }
    }
    let layer = |module: &str| LAYERS.iter().position(|layer| layer.contains(&module));
    let top: BTreeSet<&str> = all.iter().filter_map(|s| s.module.first().map(String::as_str)).collect();
    let unplaced: Vec<&&str> = top.iter().filter(|m| layer(m).is_none()).collect();
    assert!(unplaced.is_empty(), "top-level modules in no layer of LAYERS (and README's Layout): {unplaced:?}");
    for (from, tos) in &graphs["crate"] {
        for to in tos.iter().filter(|to| layer(to) >= layer(from)) {
            let at = &witnesses[&("crate".to_owned(), from.clone(), to.clone())];
            report.push_str(&format!("{from} imports {to}, which is not in a layer below it ({at})\n"));
        }
    }
    assert!(report.is_empty(), "modules import each other in a circle or upward:\n{report}");
    assert!(top.len() >= 12 && graphs["crate"].len() >= 10, "the check sees the crate's modules: {top:?}");
}
