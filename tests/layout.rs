//! Rules of the repository's layout that no compiler checks, read off the
//! source files as text (`docs/architecture.md`, "Conventions"):
//!
//! * no module imports from a module that imports it, in any crate: a
//!   piece two modules share moves down into its own module;
//! * no text cites a Markdown document the repository does not have: the
//!   references are in `docs/`;
//! * every library crate (`crates/*`) warns on a missing doc comment.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The workspace root (this test belongs to the host package).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the workspace root")
        .to_owned()
}

/// Every file below `dir` whose name ends in one of `extensions`, outside
/// build output and git's own files.
fn files(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "corpus" | "artifacts") {
                found.extend(files(&path, extensions));
            }
        } else if extensions.iter().any(|ext| name.ends_with(ext)) {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// The `src` folders of every crate in the workspace and the fuzz one.
fn crate_sources() -> Vec<PathBuf> {
    let root = root();
    files(&root, &["Cargo.toml"])
        .into_iter()
        .filter_map(|manifest| {
            let src = manifest.parent()?.join("src");
            src.is_dir().then_some(src)
        })
        .collect()
}

/// A module's path inside its crate, from its file (`a/b.rs` and
/// `a/b/mod.rs` are `["a", "b"]`; `lib.rs` and `main.rs` the root).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod")) {
        parts.pop();
    }
    if parts.len() == 1 && matches!(parts[0].as_str(), "lib" | "main") {
        parts.clear();
    }
    parts
}

/// The code of a file without its comments and its unit tests (a test may
/// reach anywhere), as far as text can tell.
fn code_of(text: &str) -> String {
    let before_tests = text.split("#[cfg(test)]").next().unwrap_or_default();
    before_tests
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the code names from `crate::` or `super::`, made absolute,
/// with the items of a `{...}` group each given their full path.
fn paths_named(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let mut named = Vec::new();
    let mut at = 0;
    while at < code.len() {
        let rest = &code[at..];
        let start = if rest.starts_with("crate::") {
            Some((Vec::new(), "crate::".len()))
        } else if rest.starts_with("super::") {
            let mut base = module.to_vec();
            let mut len = 0;
            while code[at + len..].starts_with("super::") {
                base.pop();
                len += "super::".len();
            }
            Some((base, len))
        } else {
            None
        };
        let preceded_by_ident =
            at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        match start {
            Some((base, len)) if !preceded_by_ident => {
                let (paths, used) = read_tree(&code[at + len..], base);
                named.extend(paths);
                at += len + used.max(1);
            }
            _ => at += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    named
}

/// Reads `a::b::{c, d::{e}}` (after `crate::`) into full paths; returns
/// them and how many bytes it read.
fn read_tree(text: &str, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut path = prefix;
    let mut at = 0;
    loop {
        let ident: String = text[at..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        at += ident.len();
        if !ident.is_empty() && ident != "self" {
            path.push(ident.clone());
        }
        if text[at..].starts_with("::{") {
            return read_group(text, at + 3, &path);
        }
        if ident.is_empty() && text[at..].starts_with('{') {
            return read_group(text, at + 1, &path);
        }
        if !text[at..].starts_with("::") {
            return (vec![path], at);
        }
        at += 2;
    }
}

/// Reads the items of a `{...}` group that starts at `at` (past its `{`),
/// each under `path`; returns them and where the group ends.
fn read_group(text: &str, mut at: usize, path: &[String]) -> (Vec<Vec<String>>, usize) {
    let mut all = Vec::new();
    loop {
        at += text[at..].len() - text[at..].trim_start().len();
        if at >= text.len() {
            return (all, at);
        }
        if text[at..].starts_with('}') {
            return (all, at + 1);
        }
        let (inner, used) = read_tree(&text[at..], path.to_vec());
        all.extend(inner);
        at += used;
        // Past `as name`, up to the next item or the group's end.
        while at < text.len() && !text[at..].starts_with([',', '}']) {
            at += text[at..].chars().next().map_or(1, char::len_utf8);
        }
        if text[at..].starts_with(',') {
            at += 1;
        }
    }
}

/// Cycles among the modules of one crate: each edge is a module naming a
/// module that is neither its ancestor nor its descendant.
fn cycles_in(src: &Path) -> Vec<Vec<String>> {
    let modules: BTreeMap<Vec<String>, String> = files(src, &[".rs"])
        .into_iter()
        .map(|file| (module_of(src, &file), fs::read_to_string(&file).unwrap()))
        .collect();
    let mut edges: BTreeMap<&Vec<String>, BTreeSet<&Vec<String>>> = BTreeMap::new();
    for (module, text) in &modules {
        for named in paths_named(&code_of(text), module) {
            let Some(target) = (0..=named.len())
                .rev()
                .map(|len| &named[..len])
                .find_map(|prefix| modules.get_key_value(prefix).map(|(key, _)| key))
            else {
                continue;
            };
            let related = target.starts_with(module) || module.starts_with(target);
            if !related {
                edges.entry(module).or_default().insert(target);
            }
        }
    }
    // Every cycle through each module, found by a walk from it.
    let mut cycles = BTreeSet::new();
    for start in edges.keys() {
        let mut stack = vec![(*start, vec![*start])];
        let mut seen = BTreeSet::new();
        while let Some((at, trail)) = stack.pop() {
            for next in edges.get(at).into_iter().flatten() {
                if next == start {
                    let mut cycle: Vec<String> = trail.iter().map(|m| m.join("::")).collect();
                    let smallest = (0..cycle.len()).min_by_key(|&i| cycle[i].clone()).unwrap();
                    cycle.rotate_left(smallest);
                    cycles.insert(cycle);
                } else if seen.insert(*next) {
                    let mut longer = trail.clone();
                    longer.push(*next);
                    stack.push((*next, longer));
                }
            }
        }
    }
    cycles.into_iter().collect()
}

#[test]
fn no_module_imports_from_a_module_that_imports_it() {
    let sources = crate_sources();
    assert!(sources.len() > 10, "found only {sources:?}");
    let mut found = Vec::new();
    for src in &sources {
        for cycle in cycles_in(src) {
            found.push(format!("{}: {}", src.display(), cycle.join(" -> ")));
        }
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_cycle_check_sees_a_cycle_through_a_group_import() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("a")).unwrap();
    fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    fs::write(
        src.join("a.rs"),
        "mod inner;\nuse crate::{b::Thing, other};\npub struct Y;\n",
    )
    .unwrap();
    fs::write(src.join("a/inner.rs"), "use super::Y;\n").unwrap();
    fs::write(src.join("b.rs"), "use super::a::Y;\n").unwrap();
    assert_eq!(
        cycles_in(&src),
        [["a", "b"]],
        "through a group import and a super path"
    );
    fs::write(
        src.join("b.rs"),
        "// use crate::a; in a comment is no import\n",
    )
    .unwrap();
    assert_eq!(cycles_in(&src), Vec::<Vec<String>>::new());
}

/// The Markdown files a text names (`docs/api.md`, `cronium.md`, ...),
/// outside web links.
fn markdown_named(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_alphanumeric() || "._/-".contains(c)))
        .filter(|word| word.ends_with(".md") && word.len() > 3)
        .filter(|word| !text.contains(&format!("://{word}")) && !word.contains("//"))
        .collect()
}

#[test]
fn no_comment_cites_a_file_outside_the_repository() {
    let root = root();
    let texts = files(&root, &[".rs", ".wit", ".toml", ".sh", ".yaml", ".md"]);
    let ours: BTreeSet<String> = texts
        .iter()
        .filter_map(|file| file.file_name()?.to_str().map(str::to_owned))
        .collect();
    let mut citing = Vec::new();
    for file in &texts {
        let text = fs::read_to_string(file).unwrap_or_default();
        for (number, line) in text.lines().enumerate() {
            for named in markdown_named(line) {
                let name = named.rsplit('/').next().unwrap_or(named);
                if !ours.contains(name) {
                    citing.push(format!("{}:{}: {named}", file.display(), number + 1));
                }
            }
        }
    }
    assert!(
        citing.is_empty(),
        "documents not in the repository:\n{}",
        citing.join("\n")
    );
}

#[test]
fn every_library_crate_warns_on_missing_docs() {
    let crates = root().join("crates");
    let mut libraries = 0;
    for entry in fs::read_dir(&crates).unwrap().flatten() {
        let lib = entry.path().join("src/lib.rs");
        if let Ok(text) = fs::read_to_string(&lib) {
            libraries += 1;
            assert!(
                text.contains("#![warn(missing_docs)]") || text.contains("#![deny(missing_docs)]"),
                "{} does not ask for docs on every public item",
                lib.display()
            );
        }
    }
    assert!(
        libraries >= 5,
        "found {libraries} library crates in crates/"
    );
}
