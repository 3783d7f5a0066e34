//! Embeds every prompt under `prompts/` into the binary, so that `dasan run` works from any
//! directory with the dialplan's prompts (and `[media] prompts_dir` only adds to them); and
//! the agent desktop and wallboard (`web/*.html`, `web/*.css`, and the TypeScript build in
//! `web/dist/*.js`, made by `scripts/web-build.sh`), served by the engine.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=prompts");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    let mut names: Vec<(String, String)> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "wav"))
                .filter_map(|p| {
                    let stem = p.file_stem()?.to_str()?.to_string();
                    Some((stem, p.display().to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut src = String::from("pub(crate) const EMBEDDED: &[(&str, &[u8])] = &[\n");
    for (stem, path) in &names {
        let _ = writeln!(src, "    ({stem:?}, include_bytes!({path:?})),");
    }
    src.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("prompts.rs");
    std::fs::write(out, src).expect("write prompts.rs");
    embed_web();
}

fn embed_web() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    println!("cargo:rerun-if-changed=web/dist");
    let mut files: Vec<(String, String)> = Vec::new();
    for (dir, prefix) in [(root.clone(), ""), (root.join("dist"), "")] {
        println!("cargo:rerun-if-changed={}", dir.display());
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for p in rd.flatten().map(|e| e.path()) {
            let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
            if !matches!(ext, "html" | "css" | "js") {
                continue;
            }
            if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                println!("cargo:rerun-if-changed={}", p.display());
                files.push((format!("{prefix}{name}"), p.display().to_string()));
            }
        }
    }
    files.sort();
    let mut src = String::from("pub(crate) const WEB: &[(&str, &[u8])] = &[\n");
    for (name, path) in &files {
        let _ = writeln!(src, "    ({name:?}, include_bytes!({path:?})),");
    }
    src.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("web.rs");
    std::fs::write(out, src).expect("write web.rs");
}
