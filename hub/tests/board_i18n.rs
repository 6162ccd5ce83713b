//! The board's labels: zh-CN and en carry the same keys, and every key the board's code asks
//! for by name (`t('…')`, `ctx.t("…")`) is in both — a missing one would show the key itself
//! to an operator.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn board() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("board")
}

fn keys(lang: &str) -> BTreeSet<String> {
    let path = board().join("i18n").join(format!("{lang}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let obj = v.as_object().unwrap_or_else(|| panic!("{}: not a flat object", path.display()));
    for (k, v) in obj {
        assert!(
            v.as_str().is_some_and(|s| !s.trim().is_empty()),
            "{lang}.json: {k} is not a non-empty string"
        );
    }
    obj.keys().cloned().collect()
}

/// The JS files of the board (not vendored ones).
fn scripts(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read board dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "vendor") {
                scripts(&p, out);
            }
        } else if p.extension().is_some_and(|e| e == "js") {
            out.push(p);
        }
    }
}

/// The keys named whole in `t('key')` / `t("key")` calls: a literal followed by `,` or `)`.
/// Keys built at run time (`t('prio.' + p)`) are not checked here.
fn literal_keys(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = src.as_bytes();
    let mut i = 0;
    while let Some(pos) = src[i..].find("t(") {
        let at = i + pos;
        i = at + 2;
        // `t(` must be the whole identifier: `ctx.t(` or ` t(`, not `split(`.
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_' || bytes[at - 1] == b'$') {
            continue;
        }
        let rest = src[i..].trim_start();
        let Some(q) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') else {
            continue;
        };
        let Some(end) = rest[1..].find(q) else { continue };
        let key = &rest[1..1 + end];
        let after = rest[1 + end + 1..].trim_start();
        if (after.starts_with(',') || after.starts_with(')')) && !key.is_empty() && !key.contains(char::is_whitespace) {
            out.push(key.to_string());
        }
    }
    out
}

#[test]
fn both_languages_carry_the_same_keys() {
    let (zh, en) = (keys("zh-CN"), keys("en"));
    let only_zh: Vec<_> = zh.difference(&en).collect();
    let only_en: Vec<_> = en.difference(&zh).collect();
    assert!(only_zh.is_empty() && only_en.is_empty(), "only in zh-CN: {only_zh:?}; only in en: {only_en:?}");
    assert!(en.len() > 100, "the label files look empty: {} keys", en.len());
}

#[test]
fn every_key_the_board_names_is_labelled() {
    let en = keys("en");
    let mut files = Vec::new();
    scripts(&board(), &mut files);
    assert!(files.len() > 5, "no board scripts found under {}", board().display());
    let mut missing = Vec::new();
    let mut named = 0;
    for f in &files {
        let src = std::fs::read_to_string(f).expect("read script");
        for k in literal_keys(&src) {
            named += 1;
            if !en.contains(&k) {
                missing.push(format!("{}: {k}", f.strip_prefix(board()).unwrap_or(f).display()));
            }
        }
    }
    assert!(named > 100, "found only {named} t('…') calls: is the scanner broken?");
    assert!(missing.is_empty(), "keys used but not labelled: {missing:#?}");
}

#[test]
fn the_scanner_finds_literal_keys_and_skips_built_ones() {
    let src = "ctx.t('a.b') + t(\"c\", {n}) + t('prio.' + p) + split('x') + t( 'd' )";
    assert_eq!(literal_keys(src), ["a.b", "c", "d"]);
}
