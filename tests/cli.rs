//! The command line as operators use it: config checking and start-up refusals.

use std::process::Command;

fn dasan(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dasan"))
        .args(args)
        .output()
        .expect("run dasan");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn check_config_accepts_the_shipped_dialplan_and_names_file_and_line_on_error() {
    let root = env!("CARGO_MANIFEST_DIR");
    let (ok, text) = dasan(&["check-config", &format!("{root}/dialplans/dasan120.toml")]);
    assert!(ok, "{text}");
    let dir = std::env::temp_dir().join(format!("dasan-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[sip]\nlisten = \"127.0.0.1:5060\"\n\n[queue.general]\nskil = \"ko\"\n",
    )
    .unwrap();
    let (ok, text) = dasan(&["check-config", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        text.starts_with(&format!("{}:5: unknown field `skil`", bad.display())),
        "{text}"
    );
    let (ok, text) = dasan(&["check-config", dir.join("missing.toml").to_str().unwrap()]);
    assert!(!ok && text.contains("missing.toml"), "{text}");
}

#[test]
fn check_config_refuses_a_queue_no_agent_can_serve_and_warns_when_only_overflow_reaches_it() {
    let dir = std::env::temp_dir().join(format!("dasan-cli-staff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("staff.toml");
    let src = "[[route]]\nnumber = \"120\"\nqueue = \"general\"\n\n[queue.general]\nskill = \"ko\"\noverflow = { after_s = 60, queue = \"night\" }\n\n[queue.night]\nskill = \"night\"\n\n[[agents]]\nids = \"1001\"\npassword = \"pw\"\nskills = [\"ko\"]\n";
    std::fs::write(&cfg, src).unwrap();
    let (ok, text) = dasan(&["check-config", cfg.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!(
            "{}:10: warning: queue 'night': no agent has skill 'night'",
            cfg.display()
        )),
        "{text}"
    );
    std::fs::write(
        &cfg,
        src.replace(
            "[[route]]",
            "[[route]]\nnumber = \"121\"\nqueue = \"night\"\n[[route]]",
        ),
    )
    .unwrap();
    let (ok, text) = dasan(&["check-config", cfg.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        text.starts_with(&format!(
            "{}:13: queue 'night': no agent has skill 'night'",
            cfg.display()
        )),
        "{text}"
    );
}

#[test]
fn demo_credentials_never_listen_beyond_loopback() {
    for flag in [
        ["--sip-listen", "0.0.0.0:25060"],
        ["--http-listen", "0.0.0.0:28080"],
    ] {
        let (ok, text) = dasan(&["run", flag[0], flag[1], "--data-dir", "/tmp/dasan-cli-demo"]);
        assert!(!ok, "must refuse: {text}");
        assert!(
            text.contains("demo agents use the password 'dasan-demo'"),
            "{text}"
        );
    }
}

#[test]
fn kb_import_then_search_and_bad_files_are_refused_with_the_reason() {
    let dir = std::env::temp_dir().join(format!("dasan-cli-kb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data");
    let root = env!("CARGO_MANIFEST_DIR");
    let dd = data.to_str().unwrap();
    let (ok, text) = dasan(&[
        "kb",
        "import",
        &format!("{root}/kb/sample.json"),
        "--data-dir",
        dd,
    ]);
    assert!(ok && text.contains("imported 53 entries"), "{text}");
    let csv = dir.join("extra.csv");
    std::fs::write(
        &csv,
        "title,body,department\n주민등록증 재발급,\"신분증을 잃어버렸으면 주민센터에서 재발급을 신청합니다.\",동 주민센터\n",
    )
    .unwrap();
    let (ok, text) = dasan(&["kb", "import", csv.to_str().unwrap(), "--data-dir", dd]);
    assert!(ok && text.contains("(54 in total)"), "{text}");
    let (ok, text) = dasan(&["kb", "search", "재발급", "--data-dir", dd]);
    assert!(ok && text.contains("주민등록증 재발급"), "{text}");
    std::fs::write(&csv, "title,text\nx,y\n").unwrap();
    let (ok, text) = dasan(&["kb", "import", csv.to_str().unwrap(), "--data-dir", dd]);
    assert!(
        !ok && text.contains("extra.csv: the header row must name"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `dasan passwd` prints the digest hashes of a password read from standard input; they
/// are what `md5sum`/`sha256sum` make of `id:realm:password`, and a config with them in
/// place of the password passes `check-config`.
#[test]
fn passwd_prints_the_digest_hashes_a_config_accepts() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_dasan"))
        .args(["passwd", "1005", "--realm", "seoul120"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run dasan passwd");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret pass\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!text.contains("s3cret"), "the password was printed: {text}");
    let sum = |tool: &str| {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s' '1005:seoul120:s3cret pass' | {tool}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        text.contains(&format!("password_ha1_md5 = \"{}\"", sum("md5sum"))),
        "{text}"
    );
    assert!(
        text.contains(&format!("password_ha1_sha256 = \"{}\"", sum("sha256sum"))),
        "{text}"
    );
    // What it printed is a valid [[agents]] entry.
    let dir = std::env::temp_dir().join(format!("dasan-cli-passwd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("hashed.toml");
    let entry: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(
        &cfg,
        format!("[sip]\nrealm = \"seoul120\"\n\n[[agents]]\n{entry}\nskills = [\"ko\"]\n"),
    )
    .unwrap();
    let (ok, out) = dasan(&["check-config", cfg.to_str().unwrap()]);
    assert!(ok, "{out}");
    // Bad agent ids are refused before anything is read.
    let (ok, out) = dasan(&["passwd", "10 05"]);
    assert!(!ok && out.contains("not an agent id"), "{out}");
}

/// The TLS example deployment in dialplans/ is a valid config as shipped.
#[test]
fn the_tls_example_dialplan_passes_check_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    let (ok, text) = dasan(&[
        "check-config",
        &format!("{root}/dialplans/tls-example.toml"),
    ]);
    assert!(ok, "{text}");
}

#[test]
fn check_config_warns_when_a_media_range_overlaps_the_kernels_ephemeral_ports() {
    let Some((lo, hi)) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let v: Vec<u16> = s
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            Some((*v.first()?, *v.get(1)?))
        })
    else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("dasan-cli-eph-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("ports.toml");
    let body = "[queue.general]\nskill = \"ko\"\n\n[[agents]]\nids = \"1001\"\npassword = \"pw\"\nskills = [\"ko\"]\n";
    // An RTP range straddling the start of the ephemeral range.
    let (a, b) = (
        lo.saturating_sub(2000).max(1024),
        lo.saturating_add(2000).min(hi),
    );
    let webrtc = if a > 3100 {
        (a - 2100, a - 100)
    } else {
        (b + 100, b + 2100)
    };
    std::fs::write(
        &cfg,
        format!(
            "[media]\nrtp_port_min = {a}\nrtp_port_max = {b}\nwebrtc_port_min = {}\nwebrtc_port_max = {}\n\n{body}",
            webrtc.0, webrtc.1
        ),
    )
    .unwrap();
    let (ok, text) = dasan(&["check-config", cfg.to_str().unwrap()]);
    assert!(ok, "a warning, not a refusal: {text}");
    assert!(
        text.contains(&format!(
            "[media] rtp_port_min/max {a}-{b} overlaps the kernel's ephemeral port range {lo}-{hi}"
        )),
        "{text}"
    );
    // The shipped defaults stay clear of the usual Linux range.
    if (lo, hi) == (32768, 60999) {
        let root = env!("CARGO_MANIFEST_DIR");
        let (ok, text) = dasan(&["check-config", &format!("{root}/dialplans/dasan120.toml")]);
        assert!(ok && !text.contains("ephemeral"), "{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
