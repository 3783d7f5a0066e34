//! Harness for end-to-end tests: runs the real `dasan` binary and real SIPp/baresip
//! processes on loopback, each test on its own ports and in its own directory.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A block of 40 ports for one test, distinct across tests in this process and (by pid)
/// across concurrently running test binaries.
pub fn port_block() -> u16 {
    let base = 20_000 + (std::process::id() % 50) as u16 * 800;
    base + NEXT_PORT.fetch_add(40, Ordering::SeqCst)
}

static NEXT_RTP: AtomicU16 = AtomicU16::new(0);

/// An RTP port range of 200 ports (50 anchored calls) for one engine, away from the
/// signalling blocks and distinct across tests in this process.
pub fn rtp_range() -> (u16, u16) {
    let base = 40_000
        + (std::process::id() % 8) as u16 * 2_500
        + NEXT_RTP.fetch_add(200, Ordering::SeqCst);
    (base, base + 199)
}

pub fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp-scenarios")
}

pub fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dasan-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create test dir");
    d
}

pub struct EngineProc {
    pub child: Child,
    pub sip_port: u16,
    pub http_port: u16,
    pub dir: PathBuf,
}

/// Agents 1001-1004 with password `test-pw`; `queue` goes into `[queue.general]`. Media
/// is anchored (the default) on a port range of the test's own; the config ends in the
/// `[media]` table, so lines pushed onto it (`anchor = false`) land there.
pub fn test_config(queue: &str) -> String {
    let (lo, hi) = rtp_range();
    test_config_base(queue) + &format!("\n[media]\nrtp_port_min = {lo}\nrtp_port_max = {hi}\n")
}

fn test_config_base(queue: &str) -> String {
    format!(
        r#"
[[trunk]]
name = "loopback"
sources = ["127.0.0.0/8"]

[[route]]
number = "120"
queue = "general"

[queue.general]
skill = "ko"
{queue}

[[agents]]
ids = "1001-1004"
password = "test-pw"
skills = ["ko"]
"#
    )
}

impl EngineProc {
    pub fn start(dir: &Path, config: &str, sip_port: u16, http_port: u16) -> EngineProc {
        let cfg = dir.join("dasan.toml");
        std::fs::write(&cfg, config).expect("write config");
        let log = std::fs::File::create(dir.join("engine.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_dasan"))
            .args(["run", "--config"])
            .arg(&cfg)
            .args(["--sip-listen", &format!("127.0.0.1:{sip_port}")])
            .args(["--http-listen", &format!("127.0.0.1:{http_port}")])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("DASAN_LOG", "info")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start dasan");
        let e = EngineProc {
            child,
            sip_port,
            http_port,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if e.http_get("/healthz").is_some_and(|(code, _)| code == 200) {
                return e;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("engine did not become healthy; log:\n{}", e.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("engine.log")).unwrap_or_default()
    }

    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.http_port, path)
    }

    pub fn agent_state(&self, id: &str) -> String {
        let (_, body) = self.http_get("/api/agents").expect("GET /api/agents");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        v.as_array()
            .and_then(|a| a.iter().find(|x| x["id"] == id))
            .and_then(|x| x["state"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The value of one metric sample line, e.g. `dasan_calls_total{outcome="answered",queue="general"}`.
    pub fn metric(&self, sample: &str) -> f64 {
        let (_, body) = self.http_get("/metrics").expect("GET /metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }
}

impl Drop for EngineProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// A SIPp process. `cp` and `mp` ports come from the test's block so instances never clash.
pub struct Sipp {
    pub child: Child,
    pub name: String,
    pub dir: PathBuf,
}

pub fn sipp(dir: &Path, name: &str, args: &[String]) -> Sipp {
    let out = std::fs::File::create(dir.join(format!("{name}.out"))).expect("sipp out");
    let child = Command::new("sipp")
        .args(args)
        .args(["-nostdin", "-trace_err", "-error_file"])
        .arg(dir.join(format!("{name}.errors.log")))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("out"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run sipp (install Debian package sip-tester): {e}"));
    Sipp {
        child,
        name: name.to_string(),
        dir: dir.to_path_buf(),
    }
}

impl Sipp {
    /// Waits for exit; panics with SIPp's output if it does not end in time.
    pub fn wait(mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "sipp {} did not finish in {limit:?}:\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn output(&self) -> String {
        let mut s = std::fs::read_to_string(self.dir.join(format!("{}.out", self.name)))
            .unwrap_or_default();
        s.push_str(
            &std::fs::read_to_string(self.dir.join(format!("{}.errors.log", self.name)))
                .unwrap_or_default(),
        );
        s
    }

    pub fn expect_success(self, limit: Duration) {
        let name = self.name.clone();
        let out_dir = self.dir.clone();
        let st = self.wait(limit);
        if !st.success() {
            let mut s =
                std::fs::read_to_string(out_dir.join(format!("{name}.out"))).unwrap_or_default();
            s.push_str(
                &std::fs::read_to_string(out_dir.join(format!("{name}.errors.log")))
                    .unwrap_or_default(),
            );
            let tail: String = s
                .chars()
                .rev()
                .take(6000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!("sipp {name} failed ({st}):\n{tail}");
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Common SIPp arguments: target engine, local port, media and control ports.
pub fn base_args(
    engine_port: u16,
    local_port: u16,
    media_port: u16,
    control_port: u16,
) -> Vec<String> {
    args(&[
        &format!("127.0.0.1:{engine_port}"),
        "-i",
        "127.0.0.1",
        "-p",
        &local_port.to_string(),
        "-mp",
        &media_port.to_string(),
        "-cp",
        &control_port.to_string(),
    ])
}

/// Writes a SIPp injection file for agents `ids` with `password`.
pub fn agents_csv(dir: &Path, ids: &[&str], password: &str) -> PathBuf {
    let mut s = String::from("SEQUENTIAL\n");
    for id in ids {
        s.push_str(&format!(
            "{id};[authentication username={id} password={password}]\n"
        ));
    }
    let p = dir.join(format!("agents-{}.csv", ids.join("_")));
    std::fs::write(&p, s).expect("csv");
    p
}
