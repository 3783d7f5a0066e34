//! The layer rule as a test: it reads `src/**/*.rs` and fails when a module imports one
//! above it, when two top-level modules import each other, or when the sans-IO core
//! imports tokio, opens sockets, reads the clock or draws randomness it was not given.
//! ARCHITECTURE.md explains the layers; this keeps them from rotting.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module's layer: a module may import only modules of a lower layer.
/// `main.rs` and `src/bin` sit above all of them and are not checked.
const LAYERS: &[(&str, u8)] = &[
    ("web", 9),
    ("http", 8),
    ("driver", 7),
    // tokio helpers shared by the drivers (in-process RTP switch); nothing of ours below.
    ("runtime", 6),
    ("b2bua", 5),
    ("registrar", 4),
    ("dialplan", 4),
    ("records", 4),
    ("kb", 4),
    ("sim", 4),
    ("config", 3),
    ("sip", 2),
    ("media", 2),
    ("acd", 2),
    ("metrics", 1),
    ("util", 1),
];

/// The sans-IO core: time and randomness are passed in, output is polled.
const SANS_IO: &[&str] = &["sip", "media", "acd", "b2bua", "registrar", "dialplan"];

/// What the sans-IO core must not name outside its tests.
const FORBIDDEN_IN_CORE: &[(&str, &str)] = &[
    ("tokio", "an async runtime"),
    ("UdpSocket", "a socket"),
    ("TcpStream", "a socket"),
    ("TcpListener", "a socket"),
    ("socket2", "a socket"),
    ("Instant::now", "the clock (take `now` as an argument)"),
    (
        "SystemTime::now",
        "the clock (take the wall time as an argument)",
    ),
    (
        "thread_rng",
        "unseeded randomness (draw from the `Ids` it was given)",
    ),
    (
        "rand::random",
        "unseeded randomness (draw from the `Ids` it was given)",
    ),
    (
        "from_entropy",
        "unseeded randomness (draw from the `Ids` it was given)",
    ),
    (
        "random_token",
        "unseeded randomness (draw from the `Ids` it was given)",
    ),
    ("std::thread", "threads"),
    ("crate::runtime", "the tokio helpers"),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// Source text without comments, string and char literals, and without test code (files
/// named `tests.rs` and everything from a `#[cfg(test)]` on: test modules close our files).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1).copied()) {
            (b'/', Some(b'/')) => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            (b'/', Some(b'*')) => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if b[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            (b'r', Some(b'"' | b'#')) if i == 0 || !is_ident(b[i - 1]) => {
                // A raw string: r"…", r#"…"#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = j + close.len();
                out.push_str("\"\"");
            }
            (b'"', _) => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            (b'\'', _) => {
                // A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
                let end = if b.get(i + 1) == Some(&b'\\') {
                    b[i + 2..]
                        .iter()
                        .position(|c| *c == b'\'')
                        .map(|p| i + 3 + p)
                } else {
                    let ch_len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                    (b.get(i + 1 + ch_len) == Some(&b'\'')).then_some(i + 2 + ch_len)
                };
                match end {
                    Some(e) => {
                        out.push_str("' '");
                        i = e;
                    }
                    None => {
                        out.push('\'');
                        i += 1;
                    }
                }
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or(' ');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The top-level modules a piece of code names through `crate::` (plain paths and
/// `crate::{a, b::c}` groups).
fn crate_imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let b = code.as_bytes();
    let mut from = 0;
    while let Some(p) = code[from..].find("crate::") {
        let at = from + p;
        from = at + 7;
        if at > 0 && (is_ident(b[at - 1]) || b[at - 1] == b':') {
            continue; // `dasan::crate::`-like or part of another word
        }
        let rest = &code[at + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group, up to its closing brace.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        push_first_segment(&item, &mut found);
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 || c != '{' {
                    item.push(c);
                }
            }
            push_first_segment(&item, &mut found);
        } else {
            push_first_segment(rest, &mut found);
        }
    }
    found
}

fn push_first_segment(path: &str, found: &mut BTreeSet<String>) {
    let seg: String = path
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if !seg.is_empty() && seg != "self" {
        found.insert(seg);
    }
}

/// Whether `code` names `needle` as a whole path or word (not inside a longer name).
fn names(code: &str, needle: &str) -> bool {
    let b = code.as_bytes();
    code.match_indices(needle).any(|(i, _)| {
        let before = i == 0 || !is_ident(b[i - 1]);
        let after = b.get(i + needle.len()).is_none_or(|c| !is_ident(*c));
        before && after
    })
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A violation of the layer rule, as a line for the failure message.
fn check(files: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in files {
        let top = rel
            .split('/')
            .next()
            .unwrap_or(rel)
            .trim_end_matches(".rs")
            .to_string();
        if matches!(top.as_str(), "lib" | "main" | "bin" | "architecture") {
            continue;
        }
        let Some(own) = layer(&top) else {
            problems.push(format!(
                "{rel}: top-level module `{top}` has no layer: add it to LAYERS in src/architecture.rs (and to ARCHITECTURE.md)"
            ));
            continue;
        };
        if rel.ends_with("/tests.rs") {
            continue;
        }
        let code = code_of(text);
        for m in crate_imports(&code) {
            if m == top {
                continue;
            }
            edges.entry(top.clone()).or_default().insert(m.clone());
            match layer(&m) {
                None => {}
                Some(l) if l < own => {}
                Some(l) => problems.push(format!(
                    "{rel}: `{top}` (layer {own}) imports `{m}` (layer {l}): only lower layers may be imported"
                )),
            }
        }
        if SANS_IO.contains(&top.as_str()) {
            for (needle, what) in FORBIDDEN_IN_CORE {
                if names(&code, needle) {
                    problems.push(format!(
                        "{rel}: the sans-IO core (`{top}`) names `{needle}`: {what}"
                    ));
                }
            }
        }
    }
    for (a, targets) in &edges {
        for b in targets {
            if a < b && edges.get(b).is_some_and(|t| t.contains(a)) {
                problems.push(format!("`{a}` and `{b}` import each other"));
            }
        }
    }
    problems
}

#[test]
fn layers_point_one_way_and_the_core_is_sans_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&root, &mut paths);
    assert!(paths.len() > 50, "found {} files under src", paths.len());
    let files: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&root)
                .unwrap_or(p)
                .to_string_lossy()
                .replace('\\', "/");
            (rel, std::fs::read_to_string(p).unwrap_or_default())
        })
        .collect();
    let problems = check(&files);
    assert!(
        problems.is_empty(),
        "layer rule broken:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_checker_sees_upward_imports_cycles_and_io_in_the_core() {
    let f = |rel: &str, text: &str| (rel.to_string(), text.to_string());
    // Clean: downward imports, mentions in comments and strings, test code.
    let clean = [
        f(
            "driver/mod.rs",
            "use crate::b2bua::Engine;\nuse crate::{sip::Flow, media};\n",
        ),
        f(
            "b2bua/x.rs",
            "// crate::driver is above us\nlet s = \"crate::http\";\nuse crate::acd::Acd;\n#[cfg(test)]\nmod t { use tokio; }\n",
        ),
    ];
    assert!(check(&clean).is_empty(), "{:?}", check(&clean));
    // Upward, grouped upward, a cycle, tokio and the clock in the core, an unknown module.
    let bad = [
        f("b2bua/y.rs", "use crate::{acd, driver::Shared};\n"),
        f("http/mod.rs", "fn f() { crate::web::router(); }\n"),
        f("web/mod.rs", "use crate::http::AppState;\n"),
        f(
            "sip/z.rs",
            "use tokio::net::UdpSocket;\nlet t = Instant::now();\n",
        ),
        f("newthing/mod.rs", "\n"),
    ];
    let p = check(&bad).join("\n");
    for expected in [
        "`b2bua` (layer 5) imports `driver`",
        "`http` (layer 8) imports `web`",
        "`http` and `web` import each other",
        "names `tokio`",
        "names `UdpSocket`",
        "names `Instant::now`",
        "`newthing` has no layer",
    ] {
        assert!(p.contains(expected), "missing {expected:?} in:\n{p}");
    }
    assert!(!p.contains("imports `acd`"), "{p}");
}
