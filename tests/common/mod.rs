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

/// A block of 40 ports for one test, distinct across tests in this process (30 blocks) and
/// (by pid) across concurrently running test binaries. Signalling blocks live in
/// 20000–31999, RTP ranges ([`rtp_range`]) in 10000–19999, so the two never meet; and both
/// stay below the kernel's ephemeral ports (32768+), which Chromium, SIPp and baresip take
/// for what they do not name (a block up there once met one: "Address already in use").
pub fn port_block() -> u16 {
    let base = 20_000 + (std::process::id() % 10) as u16 * 1_200;
    base + NEXT_PORT.fetch_add(40, Ordering::SeqCst) % 1_200
}

static NEXT_RTP: AtomicU16 = AtomicU16::new(0);

/// An RTP port range of 200 ports (50 anchored calls) for one engine, away from the
/// signalling blocks and distinct across tests in this process. Below the kernel's
/// ephemeral ports (32768+), where Chromium, SIPp and baresip bind what they do not name,
/// so none of them can take a port the engine is about to use.
pub fn rtp_range() -> (u16, u16) {
    let base = 10_000
        + ((std::process::id() % 8) as u16 * 1_250 + NEXT_RTP.fetch_add(200, Ordering::SeqCst))
            % 9_800;
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
    /// The engine serves HTTPS (its own checks then go through curl).
    pub https: bool,
}

/// Agents 1001-1004 with password `test-pw`; `queue` goes into `[queue.general]`. Media
/// is anchored (the default) on a port range of the test's own; the config ends in the
/// `[media]` table, so lines pushed onto it (`anchor = false`) land there.
pub fn test_config(queue: &str) -> String {
    // 120 RTP ports (30 calls) and 80 WebRTC ports (40 browser sessions).
    let (lo, hi) = rtp_range();
    test_config_base(queue)
        + &format!(
            "\n[media]\nrtp_port_min = {lo}\nrtp_port_max = {}\nwebrtc_port_min = {}\nwebrtc_port_max = {hi}\n",
            lo + 119,
            lo + 120
        )
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
        EngineProc::start_http_on(dir, config, sip_port, http_port, "127.0.0.1")
    }

    /// As [`EngineProc::start`], with the HTTP server listening on `http_host` (e.g.
    /// `0.0.0.0`, to be reached from the machine's other addresses).
    pub fn start_http_on(
        dir: &Path,
        config: &str,
        sip_port: u16,
        http_port: u16,
        http_host: &str,
    ) -> EngineProc {
        EngineProc::launch(dir, config, sip_port, http_port, http_host, false)
    }

    /// An engine whose config turns HTTPS on (`[http] tls = true`), on loopback.
    pub fn start_https(dir: &Path, config: &str, sip_port: u16, http_port: u16) -> EngineProc {
        EngineProc::launch(dir, config, sip_port, http_port, "127.0.0.1", true)
    }

    fn launch(
        dir: &Path,
        config: &str,
        sip_port: u16,
        http_port: u16,
        http_host: &str,
        https: bool,
    ) -> EngineProc {
        let cfg = dir.join("dasan.toml");
        std::fs::write(&cfg, config).expect("write config");
        let log = std::fs::File::create(dir.join("engine.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_dasan"))
            .args(["run", "--config"])
            .arg(&cfg)
            .args(["--sip-listen", &format!("127.0.0.1:{sip_port}")])
            .args(["--http-listen", &format!("{http_host}:{http_port}")])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("DASAN_LOG", "info")
            .env("DASAN_API_TOKEN", API_TOKEN)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start dasan");
        let e = EngineProc {
            child,
            sip_port,
            http_port,
            dir: dir.to_path_buf(),
            https,
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        if self.https {
            https_get(self.http_port, path)
        } else {
            http_get(self.http_port, path)
        }
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

/// The supervisor token the test engines get through DASAN_API_TOKEN.
pub const API_TOKEN: &str = "test-supervisor-token-0123456789";

/// GET over HTTPS with the test supervisor token, through curl (any certificate).
pub fn https_get(port: u16, path: &str) -> Option<(u16, String)> {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "5", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {API_TOKEN}"))
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n')?;
    let code: u16 = code.trim().parse().ok()?;
    (code != 0).then(|| (code, body.to_string()))
}

/// GET with the test supervisor token.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_as(port, path, Some(API_TOKEN))
}

/// Any method, with an optional JSON body.
pub fn http_send(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

pub fn http_get_as(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}\r\n").ok()?;
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

/// A 16-bit WAV with a sine at `freq` Hz: a softphone's microphone. baresip's aufile
/// wants the rate and channels of the codec in use (8 kHz mono for G.711, 48 kHz stereo
/// for Opus).
pub fn write_tone(path: &Path, seconds: u32, (freq, rate, channels): Tone) {
    let n = rate * seconds;
    let mut data = Vec::with_capacity(n as usize * 2 * channels as usize);
    for i in 0..n {
        let v =
            (f64::sin(2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64) * 8000.0) as i16;
        for _ in 0..channels {
            data.extend_from_slice(&v.to_le_bytes());
        }
    }
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&channels.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * 2 * channels as u32).to_le_bytes());
    w.extend_from_slice(&(2 * channels).to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    std::fs::write(path, w).expect("write tone");
}

/// (frequency, sample rate, channels) of a test tone.
pub type Tone = (f64, u32, u16);
pub const G711_TONE: Tone = (440.0, 8000, 1);

/// Per-channel RMS of a 16-bit PCM WAV's samples, as fractions of full scale.
pub fn wav_rms_channels(path: &Path) -> Vec<f64> {
    let b = std::fs::read(path).expect("read wav");
    let channels = b
        .get(22..24)
        .map_or(1, |c| u16::from_le_bytes([c[0], c[1]]))
        .max(1) as usize;
    let mut i = 12;
    while i + 8 <= b.len() {
        let id = &b[i..i + 4];
        let len = u32::from_le_bytes([b[i + 4], b[i + 5], b[i + 6], b[i + 7]]) as usize;
        if id == b"data" {
            let end = (i + 8 + len).min(b.len());
            let samples: Vec<i16> = b[i + 8..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (0..channels)
                .map(|ch| {
                    let s: Vec<f64> = samples
                        .iter()
                        .skip(ch)
                        .step_by(channels)
                        .map(|&x| x as f64)
                        .collect();
                    if s.is_empty() {
                        return 0.0;
                    }
                    (s.iter().map(|x| x * x).sum::<f64>() / s.len() as f64).sqrt() / 32768.0
                })
                .collect();
        }
        i += 8 + len;
    }
    vec![0.0; channels]
}

pub fn wav_rms(path: &Path) -> f64 {
    wav_rms_channels(path)[0]
}

/// A baresip softphone with its own config directory, recording what it hears (sndfile:
/// `<dir>/rec/*-dec.wav`) and playing a tone as its microphone.
pub struct Baresip {
    pub child: Child,
    pub dir: PathBuf,
}

impl Baresip {
    /// `account` is one line of baresip's accounts file; `rtp` its RTP port range;
    /// `extra` more command-line arguments (`-e` commands, `-t` seconds).
    pub fn start(
        dir: &Path,
        name: &str,
        sip_port: u16,
        rtp: (u16, u16),
        tone: Tone,
        account: &str,
        extra: &[&str],
    ) -> Baresip {
        Self::start_with(dir, name, sip_port, rtp, tone, account, extra, "")
    }

    /// As [`Baresip::start`], with more lines for baresip's config file.
    #[allow(clippy::too_many_arguments)]
    pub fn start_with(
        dir: &Path,
        name: &str,
        sip_port: u16,
        rtp: (u16, u16),
        tone: Tone,
        account: &str,
        extra: &[&str],
        extra_config: &str,
    ) -> Baresip {
        let cfg = dir.join(name);
        let rec = cfg.join("rec");
        std::fs::create_dir_all(&rec).expect("baresip dir");
        write_tone(&cfg.join("tone.wav"), 60, tone);
        std::fs::write(
            cfg.join("config"),
            format!(
                "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nnet_interface 127.0.0.1\nrtp_ports {}-{}\n\
                 audio_source aufile,{}\naudio_player aubridge,sink\naudio_alert aubridge,sink\nsnd_path {}\n\
                 module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule opus.so\nmodule aufile.so\nmodule aubridge.so\nmodule sndfile.so\n\
                 module_app account.so\nmodule_app menu.so\n{extra_config}",
                rtp.0,
                rtp.1,
                cfg.join("tone.wav").display(),
                rec.display()
            ),
        )
        .expect("baresip config");
        std::fs::write(cfg.join("accounts"), format!("{account}\n")).expect("accounts");
        let log = std::fs::File::create(cfg.join("baresip.log")).expect("log");
        let child = Command::new("timeout")
            .args(["-k", "2", "90", "baresip", "-f"])
            .arg(&cfg)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("run baresip (install Debian package baresip)");
        Baresip { child, dir: cfg }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// Sends one command to baresip's ctrl_tcp module (netstring-framed JSON).
    pub fn command(ctrl_port: u16, command: &str, params: &str) {
        let json = format!("{{\"command\":\"{command}\",\"params\":\"{params}\",\"token\":\"t\"}}");
        let mut s = TcpStream::connect(("127.0.0.1", ctrl_port)).expect("baresip ctrl_tcp");
        write!(s, "{}:{},", json.len(), json).expect("write command");
        std::thread::sleep(Duration::from_millis(200));
    }

    /// Stops baresip (so that its recordings are complete) and returns the RMS of what it
    /// heard.
    pub fn stop_and_heard_rms(mut self) -> f64 {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let dec = std::fs::read_dir(self.dir.join("rec"))
            .expect("rec dir")
            .filter_map(|f| f.ok().map(|f| f.path()))
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .unwrap_or_else(|| panic!("baresip recorded nothing (*-dec.wav):\n{}", self.log()));
        wav_rms(&dec)
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        // SIGTERM to `timeout`, which passes it on to baresip; a SIGKILL would leave
        // baresip running (and holding its ports) after the test.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A packet capture on loopback (dumpcap, from Debian's wireshark-common), for checking
/// what really arrived at a port.
pub struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    pub fn start(dir: &Path, name: &str, filter: &str) -> Capture {
        let file = dir.join(format!("{name}.pcap"));
        let err = dir.join(format!("{name}.dumpcap.log"));
        let child = Command::new("dumpcap")
            .args([
                "-q",
                "-P",
                "-i",
                "lo",
                "-a",
                "duration:80",
                "-f",
                filter,
                "-w",
            ])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).expect("dumpcap log"))
            .spawn()
            .expect("run dumpcap (install Debian package wireshark-common)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&err)
            .unwrap_or_default()
            .contains("Capturing on")
        {
            assert!(Instant::now() < deadline, "dumpcap did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Capture { child, file }
    }

    /// Stops the capture and returns the UDP payloads captured, in order.
    pub fn stop(self) -> Vec<Vec<u8>> {
        self.stop_payloads()
            .into_iter()
            .filter(|(proto, _)| *proto == 17)
            .map(|(_, p)| p)
            .collect()
    }

    /// Stops the capture; each UDP datagram's source port, destination port and payload.
    pub fn stop_udp(self) -> Vec<(u16, u16, Vec<u8>)> {
        self.stop_packets()
            .into_iter()
            .filter(|(proto, ..)| *proto == 17)
            .map(|(_, s, d, p)| (s, d, p))
            .collect()
    }

    /// Stops the capture and returns every IPv4 UDP (17) and TCP (6) payload captured, in
    /// order, with its protocol number (empty TCP segments left out).
    pub fn stop_payloads(self) -> Vec<(u8, Vec<u8>)> {
        self.stop_packets()
            .into_iter()
            .map(|(proto, _, _, p)| (proto, p))
            .collect()
    }

    /// Stops the capture: (protocol, source port, destination port, payload) of every
    /// IPv4 UDP datagram and non-empty TCP segment, in order.
    pub fn stop_packets(mut self) -> Vec<(u8, u16, u16, Vec<u8>)> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let b = std::fs::read(&self.file).expect("capture file");
        let mut out = Vec::new();
        let link = b
            .get(20..24)
            .map_or(1, |l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]));
        let l2 = if link == 1 { 14 } else { 0 };
        let mut i = 24;
        while i + 16 <= b.len() {
            let incl = u32::from_le_bytes([b[i + 8], b[i + 9], b[i + 10], b[i + 11]]) as usize;
            let Some(pkt) = b.get(i + 16..i + 16 + incl) else {
                break;
            };
            i += 16 + incl;
            let Some(ip) = pkt.get(l2..) else { continue };
            if ip.len() < 20 || ip[0] >> 4 != 4 {
                continue;
            }
            let ihl = (ip[0] & 15) as usize * 4;
            let Some(l4) = ip.get(ihl..).filter(|l| l.len() >= 8) else {
                continue;
            };
            let (src, dst) = (
                u16::from_be_bytes([l4[0], l4[1]]),
                u16::from_be_bytes([l4[2], l4[3]]),
            );
            match ip[9] {
                17 => out.push((17, src, dst, l4[8..].to_vec())),
                6 => {
                    let off = l4.get(12).map_or(20, |o| (o >> 4) as usize * 4);
                    if let Some(tcp) = l4.get(off..).filter(|p| !p.is_empty()) {
                        out.push((6, src, dst, tcp.to_vec()));
                    }
                }
                _ => {}
            }
        }
        out
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies sip-tester's pcap files (G.711 audio, RFC 2833 digits) into `<dir>/pcap`, where
/// SIPp's `play_pcap_audio` looks for them relative to its working directory.
pub fn copy_sipp_pcaps(dir: &Path) {
    let pcap = dir.join("pcap");
    std::fs::create_dir_all(&pcap).expect("pcap dir");
    for f in std::fs::read_dir("/usr/share/sip-tester")
        .expect("sip-tester's pcap files")
        .flatten()
    {
        if f.path().extension().is_some_and(|x| x == "pcap") {
            std::fs::copy(f.path(), pcap.join(f.file_name())).expect("copy pcap");
        }
    }
}

/// Registers agent `id` (password `test-pw`) from SIPp on `reg_ports` (signalling, media,
/// control), naming the phone listening on `phone_port` as its contact; waits for success.
pub fn register_agent(
    dir: &Path,
    engine_sip: u16,
    id: &str,
    phone_port: u16,
    (port, mp, cp): (u16, u16, u16),
) {
    let csv = agents_csv(dir, &[id], "test-pw");
    let mut a = base_args(engine_sip, port, mp, cp);
    a.extend(args(&[
        "-sf",
        &scenarios().join("register.xml").display().to_string(),
        "-inf",
        &csv.display().to_string(),
        "-key",
        "agent_port",
        &phone_port.to_string(),
        "-m",
        "1",
        "-timeout",
        "20s",
    ]));
    sipp(dir, &format!("reg-{id}"), &a).expect_success(Duration::from_secs(30));
}

/// A SIPp phone for agent `id` that answers one call, talks 2 s and hangs up, registered
/// from `reg` (port, media, control) with its contact on `phone`'s port.
pub fn answering_agent(
    dir: &Path,
    engine_sip: u16,
    id: &str,
    (port, mp, cp): (u16, u16, u16),
    reg: (u16, u16, u16),
) -> Sipp {
    let mut a = base_args(engine_sip, port, mp, cp);
    a.extend(args(&[
        "-sf",
        &scenarios().join("agent-hangup.xml").display().to_string(),
        "-m",
        "1",
        "-d",
        "2000",
        "-timeout",
        "60s",
    ]));
    let phone = sipp(dir, &format!("phone-{id}"), &a);
    std::thread::sleep(Duration::from_millis(200));
    register_agent(dir, engine_sip, id, port, reg);
    phone
}

/// GET `path` as the test token: 200 and its JSON, or a panic.
pub fn json(e: &EngineProc, path: &str) -> serde_json::Value {
    let (code, body) = e.http_get(path).unwrap_or_else(|| panic!("GET {path}"));
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("json")
}

/// The text records, each with its transcript: (caller, agent, [(direction, sender, text)]).
pub type Transcript = (String, String, Vec<(String, String, String)>);

pub fn transcripts(e: &EngineProc) -> Vec<Transcript> {
    let list = json(e, "/api/records?channel=text");
    let mut out = Vec::new();
    for r in list["records"].as_array().cloned().unwrap_or_default() {
        assert_eq!(r["channel"], "text");
        let id = r["call_id"].as_str().unwrap_or_default();
        let m = json(e, &format!("/api/records/{id}/messages"));
        let msgs = m["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|x| {
                (
                    x["direction"].as_str().unwrap_or("").to_string(),
                    x["sender"].as_str().unwrap_or("").to_string(),
                    x["text"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        out.push((
            r["caller"].as_str().unwrap_or("").to_string(),
            r["agent"].as_str().unwrap_or("").to_string(),
            msgs,
        ));
    }
    out.sort();
    out
}

/// One SMS from the gateway socket `gw` to 120, as `from` (its `n`th message).
pub fn send_sms(gw: &std::net::UdpSocket, sip: u16, from: &str, n: u32, body: &str) {
    let me = gw.local_addr().unwrap();
    let raw = format!(
        "MESSAGE sip:120@127.0.0.1:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbs{from}{n}\r\nMax-Forwards: 70\r\n\
         From: <sip:{from}@127.0.0.1>;tag=g{n}\r\nTo: <sip:120@127.0.0.1>\r\nCall-ID: bs-{from}-{n}@gw\r\nCSeq: {n} MESSAGE\r\n\
         Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    gw.send_to(raw.as_bytes(), ("127.0.0.1", sip)).unwrap();
}

/// Agent 1001's phone for text as SIPp (`sms-agent.xml`), registered from `base` + 3..5 with
/// its contact on `base` + 2: takes `conversations` conversations of two messages each and
/// replies to each with "reply to <sender>".
pub fn sms_agent_phone(dir: &Path, sip: u16, base: u16, conversations: u32, timeout: &str) -> Sipp {
    register_agent(dir, sip, "1001", base + 2, (base + 3, base + 4, base + 5));
    let csv = agents_csv(dir, &["1001"], "test-pw");
    let mut a = base_args(sip, base + 2, base + 20, base + 24);
    a.extend(args(&[
        "-sf",
        &scenarios().join("sms-agent.xml").display().to_string(),
        "-inf",
        &csv.display().to_string(),
        "-m",
        &conversations.to_string(),
        "-timeout",
        timeout,
    ]));
    sipp(dir, "agent", &a)
}

/// A SIP endpoint on a UDP socket of its own, talking to the engine.
pub struct Phone {
    pub sock: std::net::UdpSocket,
    pub engine: std::net::SocketAddr,
}

impl Phone {
    pub fn bind(addr: std::net::SocketAddr, engine: std::net::SocketAddr) -> Phone {
        let sock = std::net::UdpSocket::bind(addr).expect("bind a phone's SIP socket");
        Phone { sock, engine }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.sock.local_addr().expect("local address")
    }

    pub fn send(&self, text: &str) {
        self.sock
            .send_to(text.as_bytes(), self.engine)
            .expect("send SIP");
    }

    /// The first message from the engine that `want` accepts, within 10 s.
    pub fn expect(
        &self,
        what: &str,
        want: impl Fn(&dasan::sip::message::Message) -> bool,
    ) -> dasan::sip::message::Message {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = vec![0u8; 65_536];
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("read timeout");
            let Ok((n, _)) = self.sock.recv_from(&mut buf) else {
                break;
            };
            match dasan::sip::message::Message::parse(&buf[..n]) {
                Ok(m) if want(&m) => return m,
                Ok(m) => seen.push(format!("{:?} {:?}", m.method(), m.status())),
                Err(_) => seen.push("unparsable".into()),
            }
        }
        panic!("{what}: not received from the engine; got {seen:?}");
    }
}

/// A SIP message with these header lines and body (Content-Length added).
pub fn sip(start: &str, headers: &[String], body: &str) -> String {
    let mut s = format!("{start}\r\n");
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s
}

/// Agent `id` registers from `phone` (digest auth) and is ready.
pub fn register_raw(e: &EngineProc, phone: &Phone, id: &str) {
    let uri = format!("sip:{}", phone.engine);
    let me = phone.addr();
    let req = |cseq: u32, auth: Option<String>| {
        let mut h = vec![
            format!("Via: SIP/2.0/UDP {me};branch=z9hG4bK-reg-{cseq};rport"),
            "Max-Forwards: 70".into(),
            format!("From: <sip:{id}@127.0.0.1>;tag=reg{id}"),
            format!("To: <sip:{id}@127.0.0.1>"),
            format!("Call-ID: reg-{id}@{me}"),
            format!("CSeq: {cseq} REGISTER"),
            format!("Contact: <sip:{id}@{me}>"),
            "Expires: 600".into(),
        ];
        h.extend(auth.map(|a| format!("Authorization: {a}")));
        sip(&format!("REGISTER {uri} SIP/2.0"), &h, "")
    };
    phone.send(&req(1, None));
    let challenge = phone.expect("401 to REGISTER", |m| m.status() == Some(401));
    let ch = challenge
        .header("WWW-Authenticate")
        .expect("a digest challenge");
    let auth = dasan::registrar::digest::authorization(ch, id, "test-pw", "REGISTER", &uri, "rtp1")
        .expect("usable");
    phone.send(&req(2, Some(auth)));
    phone.expect("200 to REGISTER", |m| m.status() == Some(200));
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.agent_state(id) != "ready" {
        assert!(
            Instant::now() < deadline,
            "agent {id} not ready:\n{}",
            e.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// baresip's video: the fakevideo test source and sink, VP8 (tests/e2e_video.rs and
/// tests/e2e_web.rs).
pub const BARESIP_VIDEO: &str = "module fakevideo.so\nmodule vp8.so\nvideo_source fakevideo,nil\nvideo_display fakevideo,nil\nvideo_size 320x240\nvideo_fps 15\nvideo_bitrate 300000\n";

/// The test config with video calls to 120 going to the sign queue (skill ksl), which
/// agent 1005 serves.
pub fn video_config() -> String {
    test_config("")
        .replace(
            "queue = \"general\"\n",
            "queue = \"general\"\nvideo_queue = \"sign\"\n",
        )
        .replace(
            "[media]",
            "[queue.sign]\nskill = \"ksl\"\nchannels = [\"voice\", \"video\"]\n\n[[agents]]\nids = \"1005\"\npassword = \"test-pw\"\nskills = [\"ksl\"]\n\n[media]",
        )
}
