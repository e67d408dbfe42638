//! The shape of the code, checked on every test run (issue 17): in every crate's `src/`, no
//! file over 600 lines, no function over 80 lines, and no import circle between modules.
//!
//! Files are parsed with `syn`; a function's length runs from its `fn` keyword to its closing
//! brace. An import circle is a ring of sibling modules whose subtrees name each other through
//! `crate::`, `super::` or `self::` paths (in `use` items or in code); a module naming its own
//! ancestors or descendants does not count, as every Rust crate does that. A file that is a
//! table of data or generated code says `structure-check: data` in its first lines and is
//! exempt from the function limit. Paths inside macro invocations are not seen.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use syn::visit::Visit;

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 80;
/// The crates whose `src/` is held to the limits.
const CRATES: &[&str] = &[
    "crates/core",
    "crates/store",
    "crates/engine",
    "crates/sandbox",
    "crates/cli",
    "providers/aws",
    "providers/azure",
    "providers/gcp",
    "web",
];

type ModPath = Vec<String>;

struct ModuleFile {
    path: PathBuf,
    module: ModPath,
    syntax: syn::File,
    lines: usize,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Walks the module tree from a crate root, following `mod x;` declarations to their files.
fn load_tree(root: &Path) -> Vec<ModuleFile> {
    let mut files = Vec::new();
    let mut stack = vec![(root.to_path_buf(), ModPath::new())];
    while let Some((path, module)) = stack.pop() {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let syntax = syn::parse_file(&text)
            .unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()));
        let owns_dir = module.is_empty()
            || path
                .file_name()
                .is_some_and(|n| n == "mod.rs" || n == "main.rs");
        let dir = if owns_dir {
            path.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            path.with_extension("")
        };
        for item in &syntax.items {
            if let syn::Item::Mod(m) = item
                && m.content.is_none()
            {
                let name = m.ident.to_string();
                let flat = dir.join(format!("{name}.rs"));
                let nested = dir.join(&name).join("mod.rs");
                let child = if flat.exists() { flat } else { nested };
                let mut child_module = module.clone();
                child_module.push(name);
                stack.push((child, child_module));
            }
        }
        files.push(ModuleFile {
            lines: text.lines().count(),
            path,
            module,
            syntax,
        });
    }
    files
}

fn crate_roots(krate: &Path) -> Vec<PathBuf> {
    ["src/lib.rs", "src/main.rs"]
        .iter()
        .map(|f| krate.join(f))
        .filter(|p| p.exists())
        .collect()
}

/// Functions and their lengths in lines.
#[derive(Default)]
struct FnLengths(Vec<(String, usize, usize)>);

impl FnLengths {
    fn add(&mut self, name: &syn::Ident, fn_token: &syn::token::Fn, block: &syn::Block) {
        let start = fn_token.span.start().line;
        let end = block.brace_token.span.close().end().line;
        self.0.push((name.to_string(), start, end + 1 - start));
    }
}

impl<'ast> Visit<'ast> for FnLengths {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.add(&f.sig.ident, &f.sig.fn_token, &f.block);
        syn::visit::visit_item_fn(self, f);
    }
    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.add(&f.sig.ident, &f.sig.fn_token, &f.block);
        syn::visit::visit_impl_item_fn(self, f);
    }
    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            self.add(&f.sig.ident, &f.sig.fn_token, block);
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

/// Every module path a file names through `crate::`, `super::` or `self::`.
struct References<'a> {
    /// The module of the code being visited (the file's, plus inline modules entered).
    here: ModPath,
    found: &'a mut BTreeSet<ModPath>,
}

impl References<'_> {
    fn resolve(&mut self, segments: &[String]) {
        let Some(first) = segments.first() else {
            return;
        };
        let mut base = match first.as_str() {
            "crate" => ModPath::new(),
            "self" | "super" => self.here.clone(),
            _ => return,
        };
        let mut rest = &segments[1..];
        if first == "super" {
            base.pop();
        }
        while rest.first().is_some_and(|s| s == "super") {
            base.pop();
            rest = &rest[1..];
        }
        base.extend(rest.iter().cloned());
        self.found.insert(base);
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.resolve(prefix);
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.resolve(prefix);
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.resolve(prefix),
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for References<'_> {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }
    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.resolve(&segments);
        syn::visit::visit_path(self, p);
    }
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.here.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.here.pop();
    }
}

/// The longest known module that `path` starts with.
fn module_of(path: &[String], modules: &BTreeSet<ModPath>) -> ModPath {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains(prefix))
        .unwrap_or_default()
}

/// Sibling modules (by parent) and which of them name which.
type SiblingEdges = BTreeMap<ModPath, BTreeMap<String, BTreeSet<String>>>;

fn sibling_edges(files: &[ModuleFile]) -> SiblingEdges {
    let modules: BTreeSet<ModPath> = files.iter().map(|f| f.module.clone()).collect();
    let mut edges = SiblingEdges::new();
    for file in files {
        let mut found = BTreeSet::new();
        References {
            here: file.module.clone(),
            found: &mut found,
        }
        .visit_file(&file.syntax);
        for target in found.iter().map(|p| module_of(p, &modules)) {
            let from = &file.module;
            let common = from.iter().zip(&target).take_while(|(a, b)| a == b).count();
            // An ancestor or a descendant: every crate does that.
            if common == from.len() || common == target.len() {
                continue;
            }
            edges
                .entry(from[..common].to_vec())
                .or_default()
                .entry(from[common].clone())
                .or_default()
                .insert(target[common].clone());
        }
    }
    edges
}

/// Groups of two or more nodes that reach each other (Tarjan's algorithm would do; the graphs
/// are small, so reachability sets are clearer).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let reach = |start: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start.clone()];
        while let Some(node) = todo.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|k| (k, reach(k))).collect();
    let mut groups: BTreeSet<BTreeSet<String>> = BTreeSet::new();
    for (node, from_node) in &reachable {
        let group: BTreeSet<String> = from_node
            .iter()
            .filter(|other| {
                reachable
                    .get(other)
                    .is_some_and(|back| back.contains(*node))
            })
            .cloned()
            .chain(std::iter::once((*node).clone()))
            .collect();
        if group.len() > 1 {
            groups.insert(group);
        }
    }
    groups.into_iter().collect()
}

fn exempt_from_fn_limit(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| {
        text.lines()
            .take(5)
            .any(|l| l.contains("structure-check: data"))
    })
}

fn problems() -> Vec<String> {
    let root = workspace();
    let mut problems = Vec::new();
    for krate in CRATES {
        for crate_root in crate_roots(&root.join(krate)) {
            let files = load_tree(&crate_root);
            for file in &files {
                let shown = file
                    .path
                    .strip_prefix(&root)
                    .unwrap_or(&file.path)
                    .display();
                if file.lines > MAX_FILE_LINES {
                    problems.push(format!("{shown}: {} lines", file.lines));
                }
                if exempt_from_fn_limit(&file.path) {
                    continue;
                }
                let mut lengths = FnLengths::default();
                lengths.visit_file(&file.syntax);
                for (name, line, length) in lengths.0 {
                    if length > MAX_FN_LINES {
                        problems.push(format!("{shown}:{line}: fn {name} is {length} lines"));
                    }
                }
            }
            for (parent, graph) in sibling_edges(&files) {
                for group in circles(&graph) {
                    let names: Vec<&str> = group.iter().map(String::as_str).collect();
                    problems.push(format!(
                        "{krate}: import circle in `crate::{}`: {{{}}}",
                        parent.join("::"),
                        names.join(", ")
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn no_long_files_no_long_functions_no_import_circles() {
    let problems = problems();
    assert!(
        problems.is_empty(),
        "{} structure problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_checker_finds_a_circle_and_ignores_parents() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    let found = circles(&graph);
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0],
        ["a", "b", "c"].into_iter().map(str::to_owned).collect()
    );
    let modules: BTreeSet<ModPath> = [vec![], vec!["x".to_owned()]].into_iter().collect();
    assert_eq!(
        module_of(&["x".into(), "Thing".into()], &modules),
        vec!["x".to_owned()]
    );
}
