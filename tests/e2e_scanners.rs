//! Real scanners against the engine on loopback (issue 15): SIPVicious, as run by the
//! "friendly-scanner" bots that find every public SIP port. `svmap` may see a SIP server;
//! `svwar` must not tell existing agents from unknown ones; `svcrack` must get blocked
//! before a dictionary reaches the password, while a short one still finds it (so the
//! test proves the block, not a broken tool). `scripts/test.sh` installs the scanners.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

fn config() -> String {
    let (lo, hi) = rtp_range();
    format!(
        "[[trunk]]\nname = \"loopback\"\nsources = [\"127.0.0.1/32\"]\n[[route]]\nnumber = \"120\"\nqueue = \"general\"\n[queue.general]\nskill = \"ko\"\n[[agents]]\nids = \"1001-1004\"\npassword = \"test-pw\"\nskills = [\"ko\"]\n[media]\nrtp_port_min = {lo}\nrtp_port_max = {}\nwebrtc_port_min = {}\nwebrtc_port_max = {hi}\n",
        lo + 119,
        lo + 120
    )
}

/// Runs a SIPVicious tool with a time limit: its stdout and stderr.
fn scanner(tool: &str, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("120")
        .arg(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} (scripts/test.sh installs SIPVicious): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(124), "{tool} timed out:\n{text}");
    text
}

#[test]
fn sipvicious_sees_a_server_enumerates_nobody_and_cracks_nothing() {
    let base = port_block();
    let dir = workdir("scanners");
    let e = EngineProc::start(&dir, &config(), base, base + 1);
    let port = e.sip_port.to_string();

    let map = scanner("sipvicious_svmap", &["127.0.0.1", "-p", &port]);
    assert!(map.contains(&format!("127.0.0.1:{port}")), "{map}");

    // Agents 1001-1004 exist, 0990-0999 and 1005-1010 do not: every extension gets the
    // same challenge, so the scan finds nothing (with --force it reads all as alike).
    let war = scanner(
        "sipvicious_svwar",
        &["127.0.0.1", "-p", &port, "-e990-1010"],
    );
    assert!(war.contains("found nothing"), "{war}");
    let forced = scanner(
        "sipvicious_svwar",
        &["127.0.0.1", "-p", &port, "-e990-1010", "--force"],
    );
    assert!(
        !forced.contains("| 1001") && !forced.contains("| 1004"),
        "{forced}"
    );

    // A dictionary whose 16th word is the password: blocked after the 10th failure.
    let long = dir.join("long.txt");
    let mut words: Vec<String> = (1..=15).map(|i| format!("wrong{i}")).collect();
    words.push("test-pw".into());
    std::fs::write(&long, words.join("\n") + "\n").expect("dictionary");
    let crack = scanner(
        "sipvicious_svcrack",
        &[
            "127.0.0.1",
            "-p",
            &port,
            "-u",
            "1002",
            "-d",
            &long.display().to_string(),
        ],
    );
    assert!(
        !crack.contains("test-pw"),
        "the password must not be found:\n{crack}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        e.log()
            .contains("auth blocked: source=127.0.0.1 account=1002 service=sip-register until="),
        "{}",
        e.log()
    );

    // The control: on a fresh engine, a three-word dictionary finds the password.
    let base = port_block();
    let dir = workdir("scanners-control");
    let fresh = EngineProc::start(&dir, &config(), base, base + 1);
    let short = dir.join("short.txt");
    std::fs::write(&short, "a\nb\ntest-pw\n").expect("dictionary");
    let crack = scanner(
        "sipvicious_svcrack",
        &[
            "127.0.0.1",
            "-p",
            &fresh.sip_port.to_string(),
            "-u",
            "1003",
            "-d",
            &short.display().to_string(),
        ],
    );
    assert!(crack.contains("test-pw"), "control run:\n{crack}");
}
