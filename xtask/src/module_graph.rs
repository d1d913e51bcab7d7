//! Import cycles between modules: a file that uses a module that uses it back is a knot a
//! reader copies along with the code. The unit test below keeps the workspace free of them.
//!
//! Every `crate::…` and `super::…` path in a file (in `use` or inline, comments excluded) is
//! an edge from the file's module to the module the path names. Edges between a module and
//! its own ancestor are the parent/child relation and are not counted; every other edge is
//! lifted to the two siblings under the modules' common ancestor (`shared::stock::redis` →
//! `shared::error` counts as `stock` → `error`), and a cycle among siblings is reported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

/// A module's path inside its crate (`[]` is the crate root).
type ModulePath = Vec<String>;

static PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)(::\{)?").expect("a valid pattern")
});

/// The import cycles of the crate whose sources are under `src`, each as `a -> b -> a`.
pub fn cycles_in_crate(src: &Path) -> anyhow::Result<Vec<String>> {
    let files = module_files(src)?;
    let known: BTreeSet<ModulePath> = files.keys().cloned().collect();
    let mut edges: BTreeMap<ModulePath, BTreeSet<ModulePath>> = BTreeMap::new();
    for (module, file) in &files {
        let text = without_comments(&std::fs::read_to_string(file)?);
        for target in referenced_paths(module, &text) {
            let target = longest_known_prefix(&target, &known);
            if let Some((from, to)) = sibling_edge(module, &target) {
                edges.entry(from).or_default().insert(to);
            }
        }
    }
    Ok(find_cycles(&edges)
        .into_iter()
        .map(|cycle| {
            cycle
                .iter()
                .map(|module| module.join("::"))
                .collect::<Vec<_>>()
                .join(" -> ")
        })
        .collect())
}

/// Every module file of the crate: `lib.rs`/`main.rs` (the root), `a.rs` or `a/mod.rs`
/// (`a`), `a/b.rs` (`a::b`). Binaries under `src/bin` are crates of their own.
fn module_files(src: &Path) -> anyhow::Result<BTreeMap<ModulePath, PathBuf>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![src.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let relative = path.strip_prefix(src)?.to_owned();
            if path.is_dir() {
                if relative != Path::new("bin") {
                    pending.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let mut module: ModulePath = relative
                .with_extension("")
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            files.insert(module, path);
        }
    }
    Ok(files)
}

/// The module paths `text` (of the file of `module`) refers to, resolved to absolute paths.
fn referenced_paths(module: &[String], text: &str) -> Vec<ModulePath> {
    let mut paths = Vec::new();
    for found in PATH.captures_iter(text) {
        let base: ModulePath = match &found[1] {
            "crate" => Vec::new(),
            _ => module[..module.len().saturating_sub(1)].to_vec(), // `super`
        };
        let mut prefix = base;
        prefix.extend(
            found[2]
                .split("::")
                .filter(|segment| !segment.is_empty())
                .map(str::to_owned),
        );
        if found.get(3).is_some() {
            // `crate::{a::X, b::{c, d}}`: each top-level item of the group.
            let group_start = found.get(0).expect("the whole match").end();
            for item in group_items(&text[group_start..]) {
                let mut path = prefix.clone();
                path.extend(
                    item.split("::")
                        .map(str::trim)
                        .take_while(|segment| !segment.starts_with('{') && !segment.is_empty())
                        .filter(|segment| *segment != "self")
                        .map(str::to_owned),
                );
                paths.push(path);
            }
        } else {
            paths.push(prefix);
        }
    }
    paths
}

/// The comma-separated items of a `{…}` group whose opening brace was just consumed.
fn group_items(rest: &str) -> Vec<&str> {
    let (mut depth, mut start, mut items) = (0usize, 0, Vec::new());
    for (at, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&rest[start..at]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&rest[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items
        .into_iter()
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .collect()
}

/// The longest prefix of `path` that is a module of the crate (an item's path names its
/// module).
fn longest_known_prefix(path: &[String], known: &BTreeSet<ModulePath>) -> ModulePath {
    (0..=path.len())
        .rev()
        .map(|len| path[..len].to_vec())
        .find(|prefix| known.contains(prefix))
        .unwrap_or_default()
}

/// The edge between the siblings under `from`'s and `to`'s common ancestor, unless one is
/// the other's ancestor.
fn sibling_edge(from: &[String], to: &[String]) -> Option<(ModulePath, ModulePath)> {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    (common < from.len() && common < to.len())
        .then(|| (from[..=common].to_vec(), to[..=common].to_vec()))
}

/// One cycle per strongly connected component of more than one module.
fn find_cycles(edges: &BTreeMap<ModulePath, BTreeSet<ModulePath>>) -> Vec<Vec<ModulePath>> {
    let mut cycles = Vec::new();
    let mut reported: BTreeSet<ModulePath> = BTreeSet::new();
    for start in edges.keys() {
        if reported.contains(start) {
            continue;
        }
        // Depth-first search for a path back to `start`.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if next == start {
                    let mut cycle = path.clone();
                    cycle.push(start.clone());
                    reported.extend(path.iter().cloned());
                    cycles.push(cycle);
                    stack.clear();
                    break;
                }
                if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    cycles
}

/// `text` without `//` and `/* */` comments (doc links name modules without importing them).
fn without_comments(text: &str) -> String {
    static COMMENT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?s)/\*.*?\*/|//[^\n]*").expect("a valid pattern"));
    COMMENT.replace_all(text, "").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_crate_of_the_workspace_has_an_import_cycle() {
        let sources = crate::crate_sources(&crate::workspace_root()).unwrap();
        let mut cycles = Vec::new();
        for src in &sources {
            for cycle in cycles_in_crate(src).unwrap() {
                cycles.push(format!("{}: {cycle}", src.display()));
            }
        }
        assert!(sources.len() >= 9, "found only {} crates", sources.len());
        assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
    }

    #[test]
    fn a_cycle_between_a_factory_and_its_products_is_found_and_a_parent_child_pair_is_not() {
        let src = std::env::temp_dir().join(format!("module-graph-{}", std::process::id()));
        let write = |path: &str, text: &str| {
            let file = src.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        };
        write("lib.rs", "pub mod backends; pub mod stock; pub mod error;");
        write(
            "backends.rs",
            "use crate::stock::Ledger; // crate::error in a comment",
        );
        write(
            "stock/mod.rs",
            "mod redis; pub use self::redis::RedisLedger;",
        );
        write(
            "stock/redis.rs",
            "use super::Ledger;\nuse crate::{backends::StoreError, error};",
        );
        write(
            "error.rs",
            "/// [`crate::backends`] is only documentation.\npub struct E;",
        );
        let cycles = cycles_in_crate(&src).unwrap();
        std::fs::remove_dir_all(&src).unwrap();
        assert_eq!(cycles, ["backends -> stock -> backends"]);
    }
}
