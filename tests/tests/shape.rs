//! The shape of the code, checked like any other behaviour (ARCHITECTURE.md, "Shape"):
//! no import circle between sibling modules of any crate, every SQL write in a `queries.rs`,
//! no source file past ~800 lines of non-test code, and no citation of a document that is
//! not in the repository.
//!
//! A module is a file (`foo.rs` or `foo/mod.rs`). A path `crate::a::b::X`, `super::X` or
//! `self::x::Y` in module M points at the deepest module file it names. Each such edge is
//! lifted to the two children of the modules' lowest common ancestor; an edge between a
//! module and its own ancestor or descendant is a folder's facade and does not count. A circle
//! is two siblings that reach each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: &[&str] = &["proto", "gateway", "hub", "simulators", "tests"];

/// Longest a source file may be, test modules not counted.
const MAX_LINES: usize = 800;

type Module = Vec<String>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// Every file under `dir`, build output excepted.
fn any_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                any_files(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → [a, b]; `src/a/mod.rs` → [a]; `src/lib.rs` → [].
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    // A second binary (`src/bin/x.rs`) is its own root; it does not take part.
    parts
}

/// Blanks comments (and, unless `keep_strings`, string and char literals) with spaces, then
/// drops `#[cfg(test)] mod … { … }` blocks: what is left is the code a build ships.
fn shipped_code(src: &str, keep_strings: bool) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == 'r' && matches!(next, Some('"' | '#')) && !ident_char(b.get(i.wrapping_sub(1))) {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            let start = j;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    break;
                }
                j += 1;
            }
            push_literal(&mut out, &b[start..j.min(b.len())], keep_strings);
            i = j + 1 + hashes;
        } else if c == '"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != '"' {
                if b[j] == '\\' {
                    j += 1;
                }
                j += 1;
            }
            push_literal(&mut out, &b[i + 1..j.min(b.len())], keep_strings);
            i = j + 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\'') or a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                out.push_str("' '");
                i = j + 1;
            } else if b.get(i + 2) == Some(&'\'') {
                out.push_str("' '");
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    drop_test_modules(&out)
}

fn ident_char(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

fn push_literal(out: &mut String, body: &[char], keep: bool) {
    out.push('"');
    for &ch in body {
        if keep || ch == '\n' {
            out.push(ch);
        }
    }
    out.push('"');
}

fn drop_test_modules(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        let after = &rest[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let is_inline_mod =
            trimmed.starts_with("mod ") && trimmed.find(['{', ';']).is_some_and(|k| trimmed.as_bytes()[k] == b'{');
        if !is_inline_mod {
            out.push_str(&rest[..at + "#[cfg(test)]".len()]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..at]);
        let open = after.find('{').expect("checked above");
        let mut depth = 0usize;
        let mut end = after.len();
        for (k, ch) in after[open..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Every path a file names through `crate`, `super` or `self`, `use` groups expanded.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    // `use` items, with their brace groups.
    let mut rest = code;
    while let Some(at) = find_word(rest, "use") {
        let after = &rest[at + 3..];
        let Some(end) = after.find(';') else { break };
        expand_use("", &compact(&after[..end]), &mut paths);
        rest = &after[end..];
    }
    // Inline paths: `crate::a::b::X` in types and expressions.
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if ident_char(chars.get(i.wrapping_sub(1))) || !chars[i].is_alphabetic() {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut path = String::new();
        while j < chars.len() && (ident_char(chars.get(j)) || (chars[j] == ':' && chars.get(j + 1) == Some(&':'))) {
            if chars[j] == ':' {
                path.push_str("::");
                j += 2;
            } else {
                path.push(chars[j]);
                j += 1;
            }
        }
        if path.contains("::") && ["crate::", "super::", "self::"].iter().any(|p| path.starts_with(p)) {
            paths.push(path.split("::").map(str::to_owned).collect());
        }
        i = j.max(i + 1);
    }
    paths
}

fn find_word(hay: &str, word: &str) -> Option<usize> {
    let bytes = hay.as_bytes();
    let mut from = 0;
    while let Some(k) = hay[from..].find(word) {
        let at = from + k;
        let before = at.checked_sub(1).map(|p| bytes[p]);
        let after = bytes.get(at + word.len()).copied();
        let boundary = |b: Option<u8>| b.is_none_or(|b| !(b.is_ascii_alphanumeric() || b == b'_'));
        if boundary(before) && boundary(after) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// A use tree with no whitespace but the one around `as`: `a::{b, c as d}` → `a::{b,c as d}`.
fn compact(tree: &str) -> String {
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut out = String::new();
    for (k, w) in words.iter().enumerate() {
        let joins_as = *w == "as" || words.get(k.wrapping_sub(1)) == Some(&"as");
        if k > 0 && joins_as {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

fn expand_use(prefix: &str, tree: &str, out: &mut Vec<Vec<String>>) {
    let mut depth = 0;
    let mut start = 0;
    let mut parts = Vec::new();
    for (k, ch) in tree.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&tree[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&tree[start..]);
    for part in parts.into_iter().filter(|p| !p.is_empty()) {
        if let Some(open) = part.find('{') {
            let inner = part[open + 1..].strip_suffix('}').unwrap_or(&part[open + 1..]);
            expand_use(&format!("{prefix}{}", &part[..open]), inner, out);
        } else {
            let path = format!("{prefix}{part}");
            let path = path.split(" as ").next().unwrap_or(&path).to_owned();
            out.push(path.split("::").map(str::to_owned).collect());
        }
    }
}

struct Crate {
    name: &'static str,
    files: BTreeMap<Module, PathBuf>,
}

fn crates() -> Vec<Crate> {
    let root = workspace();
    CRATES
        .iter()
        .map(|name| {
            let src = root.join(name).join("src");
            let mut files = Vec::new();
            rust_files(&src, &mut files);
            let files = files
                .into_iter()
                .filter(|f| !f.starts_with(src.join("bin")))
                .map(|f| (module_of(&src, &f), f))
                .collect();
            Crate { name, files }
        })
        .collect()
}

/// Sibling edges of one crate: (a, b) → the file-level edges behind it.
fn sibling_edges(krate: &Crate) -> BTreeMap<(Module, Module), BTreeSet<String>> {
    let mut edges: BTreeMap<(Module, Module), BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &krate.files {
        let text = std::fs::read_to_string(file).expect("readable source");
        for path in paths_in(&shipped_code(&text, false)) {
            let (mut base, segs): (Module, &[String]) = match path.first().map(String::as_str) {
                Some("crate") => (Vec::new(), &path[1..]),
                Some("super" | "self") => (module.clone(), &path[..]),
                _ => continue,
            };
            let mut segs = segs;
            while let Some(first) = segs.first() {
                match first.as_str() {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                segs = &segs[1..];
            }
            let mut target = base;
            for seg in segs {
                let mut next = target.clone();
                next.push(seg.clone());
                if krate.files.contains_key(&next) {
                    target = next;
                } else {
                    break;
                }
            }
            let common = module.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common == module.len() || common == target.len() {
                continue; // ancestor or descendant: a folder's facade
            }
            let a = module[..=common].to_vec();
            let b = target[..=common].to_vec();
            edges
                .entry((a, b))
                .or_default()
                .insert(format!("{} -> {}", show(module), show(&target)));
        }
    }
    edges
}

fn show(m: &Module) -> String {
    if m.is_empty() { "<root>".into() } else { m.join("/") }
}

#[test]
fn no_import_circle_between_sibling_modules() {
    let mut circles = Vec::new();
    for krate in crates() {
        let edges = sibling_edges(&krate);
        let mut next: BTreeMap<&Module, Vec<&Module>> = BTreeMap::new();
        for (a, b) in edges.keys() {
            next.entry(a).or_default().push(b);
        }
        let reaches = |from: &Module, to: &Module| {
            let mut seen = BTreeSet::new();
            let mut stack = vec![from];
            while let Some(m) = stack.pop() {
                if m == to {
                    return true;
                }
                if seen.insert(m) {
                    stack.extend(next.get(m).into_iter().flatten().copied());
                }
            }
            false
        };
        for ((a, b), why) in &edges {
            if reaches(b, a) {
                circles.push(format!(
                    "{}: {} -> {} closes a circle ({})",
                    krate.name,
                    show(a),
                    show(b),
                    why.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    assert!(circles.is_empty(), "import circles:\n{}", circles.join("\n"));
}

#[test]
fn the_checker_sees_a_circle() {
    // The checker itself must be able to fail: two sibling files naming each other.
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("b")).expect("dirs");
    std::fs::write(src.join("lib.rs"), "mod a; mod b;").expect("write");
    std::fs::write(src.join("a.rs"), "use crate::b::inner::{Thing, other as o};").expect("write");
    std::fs::write(src.join("b/mod.rs"), "pub mod inner;").expect("write");
    std::fs::write(
        src.join("b/inner.rs"),
        "// use crate::never;\nfn f() -> crate::a::Type { let s = \"crate::x\"; todo!() }\n#[cfg(test)]\nmod tests { use crate::c::D; }",
    )
    .expect("write");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let krate = Crate {
        name: "probe",
        files: files.into_iter().map(|f| (module_of(&src, &f), f)).collect(),
    };
    let edges = sibling_edges(&krate);
    let keys: Vec<(String, String)> = edges.keys().map(|(a, b)| (show(a), show(b))).collect();
    assert_eq!(keys, vec![("a".into(), "b".into()), ("b".into(), "a".into())]);
}

fn shipped_sources() -> Vec<(String, String)> {
    let root = workspace();
    let mut out = Vec::new();
    for name in CRATES {
        let mut files = Vec::new();
        rust_files(&root.join(name).join("src"), &mut files);
        for file in files {
            let rel = file
                .strip_prefix(&root)
                .expect("in the workspace")
                .to_string_lossy()
                .into_owned();
            out.push((rel, std::fs::read_to_string(&file).expect("readable source")));
        }
    }
    out
}

#[test]
fn every_sql_write_is_in_a_queries_file() {
    let mut stray = Vec::new();
    for (file, text) in shipped_sources() {
        if file.ends_with("/queries.rs") {
            continue;
        }
        for (n, line) in shipped_code(&text, true).lines().enumerate() {
            let writes = ["INSERT INTO", "INSERT OR ", "DELETE FROM", "UPSERT"]
                .iter()
                .any(|w| line.contains(w))
                || find_word(line, "UPDATE").is_some();
            if writes {
                stray.push(format!("{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(stray.is_empty(), "SQL writes outside queries.rs:\n{}", stray.join("\n"));
}

#[test]
fn no_source_file_is_too_long() {
    let mut long = Vec::new();
    for (file, text) in shipped_sources() {
        let lines = shipped_code(&text, true)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count();
        if lines > MAX_LINES {
            long.push(format!("{file}: {lines} non-blank lines of shipped code"));
        }
    }
    assert!(long.is_empty(), "files over {MAX_LINES} lines:\n{}", long.join("\n"));
}

#[test]
fn documents_cited_are_in_the_repository() {
    let root = workspace();
    let mut missing = Vec::new();
    // Every text file of the repository a reader or a build sees, not only shipped code.
    let mut files = Vec::new();
    for dir in CRATES.iter().copied().chain(["docs", "deploy", ".ci"]) {
        any_files(&root.join(dir), &mut files);
    }
    files.extend(["ARCHITECTURE.md", "README.md", "Cargo.toml"].map(|f| root.join(f)));
    let texts: Vec<(String, String)> = files
        .into_iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            let rel = p.strip_prefix(&root).ok()?.to_string_lossy().into_owned();
            Some((rel, text))
        })
        .collect();
    for (file, text) in texts {
        for (n, line) in text.lines().enumerate() {
            let outside = ["DESIGN.md", "DESIGN §", "../shared"];
            if file != "tests/tests/shape.rs" && outside.iter().any(|o| line.contains(o)) {
                missing.push(format!("{file}:{}: cites a document outside the repository", n + 1));
            }
            let mut rest = line;
            while let Some(at) = rest.find("docs/") {
                let tail = &rest[at..];
                let end = tail
                    .find(|c: char| !(c.is_alphanumeric() || "/._-".contains(c)))
                    .unwrap_or(tail.len());
                let cited = tail[..end].trim_end_matches('.');
                if cited.ends_with(".md") && !root.join(cited).exists() {
                    missing.push(format!("{file}:{}: {cited} does not exist", n + 1));
                }
                rest = &tail[end.max(1)..];
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
