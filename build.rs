//! Embeds every prompt under `prompts/` into the binary, so that `dasan run` works from any
//! directory with the dialplan's prompts (and `[media] prompts_dir` only adds to them).

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
}
