//! The layer rule of ARCHITECTURE.md, checked on the source: every file of `src/` is parsed,
//! every path it names into the crate (`crate::`, `super::`, `self::`, child modules) becomes an
//! edge to the file that defines it, and then
//!
//! - the file graph has no cycle;
//! - an edge never goes up the layers, nor across to a sibling layer;
//! - a stage never names another stage, a command never names another command;
//! - no function outside tests is longer than 100 lines;
//! - every document a comment cites exists.
//!
//! Test code (`#[cfg(test)]`) is left out: it may reach anywhere it needs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::spanned::Spanned;
use syn::visit::Visit;

use crate::common::repo;

/// Layers, bottom first; files of a higher rank may use files of a lower rank. Layers of the
/// same rank are siblings and never use each other.
const LAYERS: &[(&str, u8)] = &[
    ("error", 0),
    ("progress", 0),
    ("memory", 0),
    ("domain", 1),
    ("config", 2),
    ("io", 3),
    ("kernels", 3),
    ("engine", 4),
    ("publish", 4),
    ("stages", 5),
    ("pipeline", 6),
    ("commands", 7),
];

/// Layers whose units (their direct children) must not use each other.
const ISOLATED_UNITS: &[&str] = &["stages", "commands"];

const MAX_FUNCTION_LINES: usize = 100;

type Module = Vec<String>;

struct SourceFile {
    module: Module,
    ast: syn::File,
}

fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    match last.as_str() {
        "mod.rs" | "lib.rs" => {}
        other => parts.push(other.trim_end_matches(".rs").to_string()),
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The library's files (the binary's `main.rs` is its own crate and only calls `commands`).
fn sources() -> Vec<SourceFile> {
    let src = repo().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|p| p.file_name().unwrap() != "main.rs")
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            SourceFile {
                module: module_of(&src, &path),
                ast,
            }
        })
        .collect()
}

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

/// Paths into the crate named by a file's non-test code, and its functions' lengths.
#[derive(Default)]
struct Collector {
    /// Child modules declared in the file (`mod x;`).
    children: BTreeSet<String>,
    paths: Vec<Vec<String>>,
    functions: Vec<(String, usize)>,
}

impl Collector {
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut path = prefix.clone();
                if n.ident != "self" {
                    path.push(n.ident.to_string());
                }
                self.paths.push(path);
            }
            syn::UseTree::Rename(r) => {
                let mut path = prefix.clone();
                path.push(r.ident.to_string());
                self.paths.push(path);
            }
            syn::UseTree::Glob(_) => self.paths.push(prefix.clone()),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    fn function(&mut self, name: String, span: proc_macro2::Span) {
        let lines = span.end().line - span.start().line + 1;
        self.functions.push((name, lines));
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if is_test(attrs) {
            return;
        }
        match item {
            syn::Item::Mod(m) if m.content.is_none() => {
                self.children.insert(m.ident.to_string());
            }
            syn::Item::Use(u) => self.use_tree(&mut Vec::new(), &u.tree),
            syn::Item::Fn(f) => {
                self.function(f.sig.ident.to_string(), f.span());
                syn::visit::visit_item(self, item);
            }
            _ => syn::visit::visit_item(self, item),
        }
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if is_test(&f.attrs) {
            return;
        }
        self.function(f.sig.ident.to_string(), f.span());
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if f.default.is_some() {
            self.function(f.sig.ident.to_string(), f.span());
        }
        syn::visit::visit_trait_item_fn(self, f);
    }

    /// Macro arguments are tokens, not syntax: `crate::a::b` sequences in them count too.
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        let tokens: Vec<String> = mac
            .tokens
            .to_string()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        for (i, t) in tokens.iter().enumerate() {
            if t != "crate" {
                continue;
            }
            let mut path = vec!["crate".to_string()];
            let mut j = i + 1;
            while tokens.get(j).is_some_and(|t| t == "::")
                && tokens
                    .get(j + 1)
                    .is_some_and(|t| t.chars().all(|c| c.is_alphanumeric() || c == '_'))
            {
                path.push(tokens[j + 1].clone());
                j += 2;
            }
            self.paths.push(path);
        }
        syn::visit::visit_macro(self, mac);
    }

    /// `pub(super)` and `pub(in path)` say who may see an item, not what it uses.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.paths
            .push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, path);
    }
}

/// The crate-absolute module path a path of `module`'s file names, if it names the crate.
fn absolute(module: &Module, children: &BTreeSet<String>, path: &[String]) -> Option<Module> {
    let (first, rest) = path.split_first()?;
    let mut out: Module = match first.as_str() {
        "crate" => Vec::new(),
        "self" => module.clone(),
        "super" => {
            let mut m = module.clone();
            m.pop();
            m
        }
        name if children.contains(name) => {
            let mut m = module.clone();
            m.push(name.to_string());
            m.extend(rest.iter().cloned());
            return Some(m);
        }
        _ => return None,
    };
    let mut rest = rest;
    while let Some((s, r)) = rest.split_first() {
        if s == "super" {
            out.pop();
            rest = r;
        } else {
            break;
        }
    }
    out.extend(rest.iter().cloned());
    Some(out)
}

/// The file module that defines `path`: its longest prefix that is a file.
fn resolve(files: &BTreeSet<Module>, path: &Module) -> Option<Module> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| files.contains(m))
}

struct Graph {
    edges: BTreeMap<Module, BTreeSet<Module>>,
    functions: Vec<(Module, String, usize)>,
}

fn graph() -> Graph {
    let sources = sources();
    let files: BTreeSet<Module> = sources.iter().map(|s| s.module.clone()).collect();
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    let mut functions = Vec::new();
    for s in &sources {
        let mut c = Collector::default();
        c.visit_file(&s.ast);
        let out = edges.entry(s.module.clone()).or_default();
        for p in &c.paths {
            let Some(abs) = absolute(&s.module, &c.children, p) else {
                continue;
            };
            if let Some(target) = resolve(&files, &abs)
                && target != s.module
            {
                out.insert(target);
            }
        }
        functions.extend(
            c.functions
                .into_iter()
                .map(|(f, n)| (s.module.clone(), f, n)),
        );
    }
    Graph { edges, functions }
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "lib".into()
    } else {
        m.join("::")
    }
}

fn rank(m: &Module) -> Option<u8> {
    let first = m.first()?;
    LAYERS.iter().find(|(l, _)| l == first).map(|(_, r)| *r)
}

#[test]
fn the_module_graph_has_no_cycle() {
    let g = graph();
    // Depth-first search; a back edge closes a cycle.
    fn visit(
        g: &BTreeMap<Module, BTreeSet<Module>>,
        m: &Module,
        state: &mut BTreeMap<Module, u8>,
        stack: &mut Vec<Module>,
        cycles: &mut Vec<String>,
    ) {
        state.insert(m.clone(), 1);
        stack.push(m.clone());
        for n in g.get(m).into_iter().flatten() {
            match state.get(n).copied().unwrap_or(0) {
                0 => visit(g, n, state, stack, cycles),
                1 => {
                    let start = stack.iter().position(|s| s == n).unwrap();
                    let mut cycle: Vec<String> = stack[start..].iter().map(name).collect();
                    cycle.push(name(n));
                    cycles.push(cycle.join(" -> "));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.clone(), 2);
    }
    let mut state = BTreeMap::new();
    let mut cycles = Vec::new();
    for m in g.edges.keys() {
        if !state.contains_key(m) {
            visit(&g.edges, m, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
    assert!(
        g.edges.len() > 40,
        "the check saw only {} files",
        g.edges.len()
    );
}

#[test]
fn layers_are_used_only_downwards() {
    let g = graph();
    let mut violations = Vec::new();
    for (from, targets) in &g.edges {
        if from.is_empty() {
            continue; // lib.rs declares the layers
        }
        let Some(rf) = rank(from) else {
            violations.push(format!("{} is in no layer", name(from)));
            continue;
        };
        for to in targets {
            let Some(rt) = rank(to) else { continue };
            let same_layer = from[0] == to[0];
            if rt > rf || (rt == rf && !same_layer) {
                violations.push(format!("{} -> {}", name(from), name(to)));
            }
            let isolated = same_layer && ISOLATED_UNITS.contains(&from[0].as_str());
            if isolated && from.len() > 1 && to.len() > 1 && from[1] != to[1] {
                violations.push(format!(
                    "{} -> {} (units of {})",
                    name(from),
                    name(to),
                    from[0]
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "edges against the layer rule:\n{}",
        violations.join("\n")
    );
    // The check can fail: the pipeline uses stages, stages use kernels.
    let uses = |a: &str, b: &str| {
        g.edges.iter().any(|(f, t)| {
            f.first().is_some_and(|x| x == a) && t.iter().any(|m| m.first().is_some_and(|x| x == b))
        })
    };
    assert!(uses("pipeline", "stages") && uses("stages", "kernels") && !uses("kernels", "stages"));
}

#[test]
fn no_function_is_longer_than_100_lines() {
    let g = graph();
    let long: Vec<String> = g
        .functions
        .iter()
        .filter(|(_, _, n)| *n > MAX_FUNCTION_LINES)
        .map(|(m, f, n)| format!("{}::{f}: {n} lines", name(m)))
        .collect();
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines:\n{}",
        long.join("\n")
    );
    assert!(
        g.functions.len() > 300,
        "saw only {} functions",
        g.functions.len()
    );
}

/// Documents cited in the source (`README.md`, `ARCHITECTURE.md "..."`) exist in the repository.
#[test]
fn cited_documents_exist() {
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    let mut missing = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for word in text
            .split(|c: char| !(c.is_alphanumeric() || c == '.' || c == '_' || c == '-' || c == '/'))
        {
            if word.ends_with(".md") && !repo().join(word).exists() {
                missing.insert(format!(
                    "{}: {word}",
                    f.strip_prefix(repo()).unwrap().display()
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "cited documents missing:\n{}",
        missing.into_iter().collect::<Vec<_>>().join("\n")
    );
}
