//! SIP over TLS (issue 16) with real clients on loopback: baresip agents and callers over
//! TLS, `openssl s_client` against the listener, hostile handshakes, and certificate
//! rotation with SIGHUP during a call.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

/// The test config with a TLS listener on `tls` (and `extra` more `[sip]` keys).
fn tls_config(tls: u16, extra: &str) -> String {
    format!("[sip]\ntls_listen = \"127.0.0.1:{tls}\"\n{extra}\n") + &test_config("")
}

fn wait_ready(e: &EngineProc, id: &str, phone: &Baresip) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while e.agent_state(id) != "ready" {
        assert!(
            Instant::now() < deadline,
            "agent {id} did not register over TLS:\n{}\n{}",
            phone.log(),
            e.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_on_call(e: &EngineProc, id: &str, caller: &Baresip) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while e.agent_state(id) != "on-call" {
        assert!(
            Instant::now() < deadline,
            "the TLS call did not reach agent {id}:\n{}\n{}",
            caller.log(),
            e.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_metric(e: &EngineProc, sample: &str, at_least: f64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while e.metric(sample) < at_least {
        assert!(Instant::now() < deadline, "{what}:\n{}", e.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A baresip agent `1001` registered over TLS on `tls` (auto-answer, PCMU, the 440 Hz tone),
/// with `account_extra` on its account line and `config_extra` in its config; waits until
/// the engine has it ready.
fn tls_agent(
    e: &EngineProc,
    dir: &Path,
    (sip_port, rtp): (u16, (u16, u16)),
    tls: u16,
    account_extra: &str,
    config_extra: &str,
) -> Baresip {
    let agent = Baresip::start_with(
        dir,
        "agent",
        sip_port,
        rtp,
        G711_TONE,
        &format!("<sip:1001@127.0.0.1:{tls};transport=tls>;auth_pass=test-pw;answermode=auto;regint=60;audio_codecs=pcmu{account_extra}"),
        &[],
        config_extra,
    );
    wait_ready(e, "1001", &agent);
    agent
}

/// A baresip caller (660 Hz tone) presenting the certificate `crt`/`key` that dials 120
/// over TLS and hangs up after 8 s; `account_extra` and `config_extra` as for
/// [`tls_agent`].
fn cert_caller(
    dir: &Path,
    (sip_port, rtp): (u16, (u16, u16)),
    tls: u16,
    (crt, key): (&Path, &Path),
    account_extra: &str,
    config_extra: &str,
) -> Baresip {
    let pem = dir.join("caller-cert.pem");
    let both = std::fs::read_to_string(crt).unwrap() + &std::fs::read_to_string(key).unwrap();
    std::fs::write(&pem, both).unwrap();
    Baresip::start_with(
        dir,
        "caller",
        sip_port,
        rtp,
        (660.0, 8000, 1),
        &format!(
            "<sip:0212345678@127.0.0.1;transport=tls>;regint=0;audio_codecs=pcmu{account_extra}"
        ),
        &[
            "-e",
            &format!("/dial sip:120@127.0.0.1:{tls};transport=tls"),
            "-t",
            "8",
        ],
        &format!("{config_extra}sip_certificate {}\n", pem.display()),
    )
}

/// A baresip caller presenting `cert` reaches agent 1001 (`agent`, who hears it) as the
/// trunk that certificate identifies.
fn reaches_the_agent_as_the_trunk(
    e: &EngineProc,
    dir: &Path,
    caller: (u16, (u16, u16)),
    tls: u16,
    cert: (&Path, &Path),
    agent: Baresip,
) {
    let caller = cert_caller(dir, caller, tls, cert, "", "");
    wait_on_call(e, "1001", &caller);
    assert!(
        e.log()
            .contains("TLS client certificate identifies a trunk"),
        "{}",
        e.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    let agent_heard = agent.stop_and_heard_rms();
    assert!(agent_heard > 0.01, "agent heard silence ({agent_heard:.4})");
}

/// `openssl s_client` against `port` with more arguments; what it printed (stdout and
/// stderr), after sending `input` and waiting `linger` for answers.
fn s_client(port: u16, extra: &[&str], input: &[u8], linger: Duration) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl (install Debian package openssl)");
    let mut stdin = child.stdin.take().expect("stdin");
    let _ = stdin.write_all(input);
    std::thread::sleep(linger);
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("openssl output");
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// The SHA-256 fingerprint of a PEM certificate file, as `AB:CD:…`.
fn fingerprint(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .expect("openssl x509");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.trim()
        .split_once('=')
        .map(|(_, f)| f.to_string())
        .unwrap_or_else(|| panic!("no fingerprint for {}: {text}", cert.display()))
}

/// A new self-signed EC key and certificate for 127.0.0.1 with subject CN `cn`.
fn make_cert(dir: &Path, cn: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={cn}")])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl req");
    assert!(st.success(), "openssl req failed");
    (cert, key)
}

fn options(tls: u16, branch: &str) -> String {
    format!(
        "OPTIONS sip:120@127.0.0.1:{tls};transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p{branch}\r\nTo: <sip:120@127.0.0.1>\r\n\
         Call-ID: {branch}@probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A baresip agent registers over TLS and a baresip caller dials 120 over TLS: the call is
/// answered, audio flows both ways, and a capture of the engine's SIP ports shows not one
/// byte of plaintext SIP.
#[test]
fn baresip_agent_and_caller_over_tls_talk_and_no_sip_is_plaintext() {
    let base = port_block();
    // baresip listens for TLS on its SIP port + 1.
    let (sip, http, tls, agent_sip, caller_sip) = (base, base + 1, base + 2, base + 3, base + 5);
    let dir = workdir("tls-call");
    let capture = Capture::start(
        &dir,
        "sip",
        &format!("tcp port {tls} or tcp port {sip} or udp port {sip}"),
    );
    let e = EngineProc::start(&dir, &tls_config(tls, ""), sip, http);
    assert!(
        e.log().contains("generated a self-signed certificate"),
        "no self-signed certificate announced:\n{}",
        e.log()
    );
    let agent = tls_agent(&e, &dir, (agent_sip, (base + 10, base + 19)), tls, "", "");
    assert!(
        agent.log().contains("{0/TLS/v4} 200 OK"),
        "baresip did not register over TLS:\n{}",
        agent.log()
    );
    let caller = Baresip::start(
        &dir,
        "caller",
        caller_sip,
        (base + 20, base + 29),
        (660.0, 8000, 1),
        "<sip:0212345678@127.0.0.1;transport=tls>;regint=0;audio_codecs=pcmu",
        &[
            "-e",
            &format!("/dial sip:120@127.0.0.1:{tls};transport=tls"),
            "-t",
            "8",
        ],
    );
    wait_on_call(&e, "1001", &caller);
    std::thread::sleep(Duration::from_secs(3));
    let agent_heard = agent.stop_and_heard_rms();
    let caller_heard = caller.stop_and_heard_rms();
    assert!(agent_heard > 0.01, "agent heard silence ({agent_heard:.4})");
    assert!(
        caller_heard > 0.01,
        "caller heard silence ({caller_heard:.4})"
    );
    std::thread::sleep(Duration::from_millis(500));
    let payloads = capture.stop_payloads();
    let tls_bytes: usize = payloads
        .iter()
        .filter(|(p, _)| *p == 6)
        .map(|(_, d)| d.len())
        .sum();
    assert!(
        tls_bytes > 2_000,
        "the capture saw only {tls_bytes} bytes on the TLS port: did it capture the call?"
    );
    for (proto, p) in &payloads {
        for needle in [
            &b"SIP/2.0"[..],
            b"INVITE sip:",
            b"REGISTER sip:",
            b"Call-ID",
        ] {
            assert!(
                !p.windows(needle.len()).any(|w| w == needle),
                "plaintext SIP ({}) in a captured {} payload: {}",
                String::from_utf8_lossy(needle),
                if *proto == 6 { "TCP" } else { "UDP" },
                String::from_utf8_lossy(p)
            );
        }
    }
}

/// `openssl s_client`: the certificate the engine announced is the one served, TLS 1.3
/// and 1.2 work, TLS 1.1 and 1.0 are refused, and SIP works over the session.
#[test]
fn s_client_gets_the_announced_certificate_and_only_tls_12_and_13() {
    let base = port_block();
    let (sip, http, tls) = (base, base + 1, base + 2);
    let dir = workdir("tls-s-client");
    let e = EngineProc::start(&dir, &tls_config(tls, ""), sip, http);
    let cert = dir.join("data/tls/sip.crt");
    let fp = fingerprint(&cert);
    assert!(
        e.log().contains(&format!("SHA-256 {fp}")),
        "the log does not announce {fp}:\n{}",
        e.log()
    );
    let out = s_client(
        tls,
        &["-tls1_3", "-showcerts"],
        b"",
        Duration::from_millis(500),
    );
    assert!(out.contains("TLSv1.3"), "TLS 1.3 handshake failed:\n{out}");
    assert!(out.contains("dasan sip (self-signed)"), "{out}");
    let out = s_client(tls, &["-tls1_2"], b"", Duration::from_millis(500));
    assert!(
        out.contains("Protocol  : TLSv1.2") || out.contains("TLSv1.2, Cipher is"),
        "TLS 1.2 handshake failed:\n{out}"
    );
    for old in ["-tls1_1", "-tls1"] {
        // SECLEVEL=0 so that OpenSSL itself offers the old version: the refusal is ours.
        let out = s_client(
            tls,
            &[old, "-cipher", "DEFAULT@SECLEVEL=0"],
            b"",
            Duration::from_millis(500),
        );
        assert!(
            out.contains("alert")
                && !out.contains("Cipher is ECDHE")
                && !out.contains("Cipher is TLS_"),
            "{old} was not refused:\n{out}"
        );
    }
    // SIP over the TLS session: OPTIONS gets its 200 back on the same connection.
    let out = s_client(
        tls,
        &["-quiet"],
        options(tls, "opt1").as_bytes(),
        Duration::from_secs(1),
    );
    assert!(
        out.contains("SIP/2.0 200"),
        "no 200 to OPTIONS over TLS:\n{out}"
    );
    assert!(out.contains("Via: SIP/2.0/TLS"), "{out}");
}

/// Garbage instead of a ClientHello and a handshake that never starts are both refused and
/// counted, and a proper client is served meanwhile.
#[test]
fn garbage_and_stalled_handshakes_are_refused_and_counted() {
    let base = port_block();
    let (sip, http, tls) = (base, base + 1, base + 2);
    let dir = workdir("tls-hostile");
    let e = EngineProc::start(
        &dir,
        &tls_config(tls, "tls_handshake_timeout_s = 2"),
        sip,
        http,
    );
    // Stalled: connections that send nothing, held open across the timeout.
    let stalled: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(("127.0.0.1", tls)).expect("connect"))
        .collect();
    // Garbage: plaintext SIP and random bytes where a ClientHello belongs.
    for junk in [
        options(tls, "plain").into_bytes(),
        vec![0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3],
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", tls)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(&junk);
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            !String::from_utf8_lossy(&got).contains("SIP/2.0"),
            "plaintext was answered as SIP on the TLS port"
        );
    }
    wait_metric(
        &e,
        "dasan_security_events_total{event=\"tls_handshake_failed\"}",
        2.0,
        "garbage handshakes were not counted",
    );
    // A real client is served while the stalled ones wait.
    let out = s_client(
        tls,
        &["-quiet"],
        options(tls, "ok1").as_bytes(),
        Duration::from_secs(1),
    );
    assert!(out.contains("SIP/2.0 200"), "served nobody else:\n{out}");
    wait_metric(
        &e,
        "dasan_security_events_total{event=\"tls_handshake_timeout\"}",
        5.0,
        "stalled handshakes were not closed and counted",
    );
    for mut s in stalled {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut b = [0u8; 16];
        assert!(
            matches!(s.read(&mut b), Ok(0) | Err(_)),
            "a stalled connection is still open"
        );
    }
}

/// The operator's certificate is served; replaced on disk and signalled with SIGHUP, new
/// connections get the new one while the call set up before goes on to the end, and a
/// broken file on a later SIGHUP leaves the listener on the certificate it had.
#[test]
fn sighup_rotates_the_certificate_without_dropping_a_call() {
    let base = port_block();
    // baresip listens for TLS on its SIP port + 1.
    let (sip, http, tls, agent_sip, caller_sip) = (base, base + 1, base + 2, base + 3, base + 5);
    let dir = workdir("tls-rotate");
    let (c1, k1) = make_cert(&dir, "first");
    let (c2, k2) = make_cert(&dir, "second");
    let live_cert = dir.join("live.crt");
    let live_key = dir.join("live.key");
    std::fs::copy(&c1, &live_cert).unwrap();
    std::fs::copy(&k1, &live_key).unwrap();
    let e = EngineProc::start(
        &dir,
        &tls_config(
            tls,
            &format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"",
                live_cert.display(),
                live_key.display()
            ),
        ),
        sip,
        http,
    );
    let out = s_client(tls, &[], b"", Duration::from_millis(300));
    assert!(
        out.contains("CN = first") || out.contains("CN=first"),
        "{out}"
    );
    let agent = Baresip::start(
        &dir,
        "agent",
        agent_sip,
        (base + 10, base + 19),
        G711_TONE,
        &format!("<sip:1001@127.0.0.1:{tls};transport=tls>;auth_pass=test-pw;answermode=auto;regint=600;audio_codecs=pcmu"),
        &[],
    );
    wait_ready(&e, "1001", &agent);
    let caller = Baresip::start(
        &dir,
        "caller",
        caller_sip,
        (base + 20, base + 29),
        (660.0, 8000, 1),
        "<sip:0212345678@127.0.0.1;transport=tls>;regint=0;audio_codecs=pcmu",
        &[
            "-e",
            &format!("/dial sip:120@127.0.0.1:{tls};transport=tls"),
            "-t",
            "30",
        ],
    );
    wait_on_call(&e, "1001", &caller);
    // Rotate mid-call.
    std::fs::copy(&c2, &live_cert).unwrap();
    std::fs::copy(&k2, &live_key).unwrap();
    let pid = e.pid().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !e.log().contains("TLS certificate reloaded") {
        assert!(Instant::now() < deadline, "no reload logged:\n{}", e.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = s_client(tls, &[], b"", Duration::from_millis(300));
    assert!(
        out.contains("CN = second") || out.contains("CN=second"),
        "{out}"
    );
    assert_eq!(
        e.agent_state("1001"),
        "on-call",
        "the call did not survive the reload"
    );
    // A broken file: the reload fails loudly and the listener keeps `second`.
    std::fs::write(&live_cert, "-----BEGIN CERTIFICATE-----\ntruncated\n").unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !e.log().contains("not reloaded, keeping the old one") {
        assert!(
            Instant::now() < deadline,
            "no failed reload logged:\n{}",
            e.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = s_client(tls, &[], b"", Duration::from_millis(300));
    assert!(
        out.contains("CN = second") || out.contains("CN=second"),
        "{out}"
    );
    // The call set up before both reloads ends normally, with audio throughout.
    let caller_heard = caller.stop_and_heard_rms();
    assert!(
        caller_heard > 0.01,
        "caller heard silence ({caller_heard:.4})"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while e.agent_state("1001") != "ready" {
        assert!(
            Instant::now() < deadline,
            "the call did not end cleanly:\n{}",
            e.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        e.metric("dasan_calls_total{outcome=\"answered\",queue=\"general\"}"),
        1.0
    );
    drop(agent);
}

/// Configuration mistakes around TLS are load-time errors that name the key.
#[test]
fn tls_config_mistakes_are_named() {
    let dir = workdir("tls-config");
    for (extra, needle) in [
        (
            "tls_listen = \"127.0.0.1:5061\"\ntls_cert = \"/x.crt\"",
            "without sip.tls_key",
        ),
        (
            "tls_cert = \"/x.crt\"\ntls_key = \"/x.key\"",
            "sip.tls_listen is not",
        ),
        (
            "listen = \"127.0.0.1:5070\"\ntls_listen = \"127.0.0.1:5070\"",
            "port of its own",
        ),
    ] {
        let path = dir.join("bad.toml");
        std::fs::write(&path, format!("[sip]\n{extra}\n")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_dasan"))
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra} was accepted");
        assert!(
            err.contains("bad.toml:") && err.contains(needle),
            "{extra}: {err}"
        );
    }
    // A certificate file that is not one: the engine refuses to start and says which file.
    let path = dir.join("run.toml");
    std::fs::write(dir.join("junk.crt"), "junk").unwrap();
    std::fs::write(dir.join("junk.key"), "junk").unwrap();
    std::fs::write(
        &path,
        format!(
            "[sip]\nlisten = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:9\"\ntls_cert = \"{0}/junk.crt\"\ntls_key = \"{0}/junk.key\"\n[http]\nlisten = \"127.0.0.1:0\"\n[data]\ndir = \"{0}/data\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let out = Command::new("timeout")
        .args(["20", env!("CARGO_BIN_EXE_dasan"), "run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a junk certificate");
    assert!(
        err.contains("junk.crt") && err.contains("no PEM certificate"),
        "{err}"
    );
}

/// HTTPS for the desktop, the wallboard and the API: TLS 1.3 and 1.2 only, the generated
/// certificate announced and served, plain HTTP and garbage on the port refused and
/// counted while real clients are served.
#[test]
fn https_serves_tls_12_and_13_only_and_counts_bad_handshakes() {
    let base = port_block();
    let (sip, http) = (base, base + 1);
    let dir = workdir("tls-https");
    let config = test_config("").replace("[[trunk]]", "[http]\ntls = true\n\n[[trunk]]");
    let e = EngineProc::start_https(&dir, &config, sip, http);
    let fp = fingerprint(&dir.join("data/tls/http.crt"));
    assert!(
        e.log().contains(&format!("SHA-256 {fp}")) && e.log().contains("HTTPS listening"),
        "{}",
        e.log()
    );
    let out = s_client(http, &["-tls1_3"], b"", Duration::from_millis(500));
    assert!(out.contains("TLSv1.3"), "TLS 1.3 handshake failed:\n{out}");
    assert!(out.contains("dasan http (self-signed)"), "{out}");
    for old in ["-tls1_1", "-tls1"] {
        let out = s_client(
            http,
            &[old, "-cipher", "DEFAULT@SECLEVEL=0"],
            b"",
            Duration::from_millis(500),
        );
        assert!(
            out.contains("alert") && !out.contains("Cipher is ECDHE"),
            "{old} was not refused:\n{out}"
        );
    }
    // Plain HTTP on the HTTPS port: no page, and counted.
    let mut s = TcpStream::connect(("127.0.0.1", http)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /agent HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        !String::from_utf8_lossy(&got).contains("HTTP/1.1 200"),
        "plain HTTP served on the HTTPS port"
    );
    wait_metric(
        &e,
        "dasan_security_events_total{event=\"https_handshake_failed\"}",
        1.0,
        "the plaintext request was not counted",
    );
    // The API over HTTPS works (the harness's own checks go through curl).
    let (code, body) = e
        .http_get("/api/agents")
        .expect("GET /api/agents over HTTPS");
    assert_eq!(code, 200, "{body}");
}

/// A self-signed certificate and key for 127.0.0.1, valid only in 2020, as PEM files.
fn expired_cert(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 12, 31);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join("expired.crt"), dir.join("expired.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// Mutual TLS: a trunk known only by its client certificate's fingerprint. Its caller
/// (baresip presenting the certificate) reaches an agent whose phone has no certificate
/// at all; the same INVITE without a certificate gets 403; a certificate not on the list
/// and an expired one that is on it fail the handshake and are counted.
#[test]
fn a_trunk_identified_by_its_client_certificate_reaches_an_agent() {
    let base = port_block();
    let (sip, http, tls, agent_sip, caller_sip) = (base, base + 1, base + 2, base + 3, base + 5);
    let dir = workdir("tls-mutual");
    let (carrier_crt, carrier_key) = make_cert(&dir, "carrier");
    let (stranger_crt, stranger_key) = make_cert(&dir, "stranger");
    let (expired_crt, expired_key) = expired_cert(&dir);
    let config = tls_config(tls, "").replace(
        "sources = [\"127.0.0.0/8\"]",
        &format!(
            "tls_client_certs = [\"{}\", \"{}\"]",
            fingerprint(&carrier_crt),
            fingerprint(&expired_crt)
        ),
    );
    let e = EngineProc::start(&dir, &config, sip, http);
    let agent = tls_agent(&e, &dir, (agent_sip, (base + 10, base + 19)), tls, "", "");
    // No certificate: TLS is fine (phones have none) but the INVITE is from no trunk.
    let invite = format!(
        "INVITE sip:120@127.0.0.1:{tls};transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKnocert\r\n\
         Max-Forwards: 70\r\nFrom: <sip:0212345678@127.0.0.1>;tag=nc\r\nTo: <sip:120@127.0.0.1>\r\n\
         Call-ID: nocert@probe\r\nCSeq: 1 INVITE\r\nContact: <sip:0212345678@127.0.0.1:5999;transport=tls>\r\nContent-Length: 0\r\n\r\n"
    );
    let out = s_client(tls, &["-quiet"], invite.as_bytes(), Duration::from_secs(1));
    assert!(
        out.contains("SIP/2.0 403"),
        "an INVITE without a certificate was not refused:\n{out}"
    );
    // A certificate not on the list, and a listed one that has expired: no handshake.
    for (crt, key, what) in [
        (&stranger_crt, &stranger_key, "unlisted"),
        (&expired_crt, &expired_key, "expired"),
    ] {
        let out = s_client(
            tls,
            &[
                "-cert",
                &crt.display().to_string(),
                "-key",
                &key.display().to_string(),
            ],
            invite.as_bytes(),
            Duration::from_secs(1),
        );
        assert!(
            !out.contains("SIP/2.0"),
            "the {what} certificate was served:\n{out}"
        );
    }
    wait_metric(
        &e,
        "dasan_security_events_total{event=\"tls_handshake_failed\"}",
        2.0,
        "refused client certificates were not counted",
    );
    // The carrier's caller, presenting its certificate, reaches the agent.
    reaches_the_agent_as_the_trunk(
        &e,
        &dir,
        (caller_sip, (base + 20, base + 29)),
        tls,
        (&carrier_crt, &carrier_key),
        agent,
    );
}

/// How many captured RTP packets (G.711, 20 ms) carry a `freq` tone: decoded with `law`,
/// most of their energy at that frequency (Goertzel). Encrypted payloads decode to noise.
fn tone_packets(packets: &[&[u8]], law: dasan::media::g711::Law, freq: f64) -> usize {
    packets
        .iter()
        .filter(|p| p.len() >= 12 + 160 && p[0] >> 6 == 2)
        .filter(|p| {
            let mut pcm = Vec::with_capacity(160);
            law.decode(&p[12..172], &mut pcm);
            let w = 2.0 * std::f64::consts::PI * freq / 8000.0;
            let coeff = 2.0 * w.cos();
            let (mut s1, mut s2, mut energy) = (0.0f64, 0.0f64, 0.0f64);
            for &x in &pcm {
                let x = f64::from(x);
                let s = x + coeff * s1 - s2;
                s2 = s1;
                s1 = s;
                energy += x * x;
            }
            let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
            energy > 0.0 && power / (energy * pcm.len() as f64 / 2.0) > 0.5
        })
        .count()
}

/// `srtp = "mandatory"` for the agents (and, with `trunk`, for a trunk known by the
/// certificate with fingerprint `trunk`).
fn srtp_config(tls: u16, trunk: Option<&str>) -> String {
    let mut c = tls_config(tls, "").replace(
        "skills = [\"ko\"]",
        "skills = [\"ko\"]\nsrtp = \"mandatory\"",
    );
    if let Some(fp) = trunk {
        c = c.replace(
            "sources = [\"127.0.0.0/8\"]",
            &format!("tls_client_certs = [\"{fp}\"]\nsrtp = \"mandatory\""),
        );
    }
    c
}

/// Issue 16's SRTP acceptance: a baresip agent over TLS with SRTP mandatory, and a baresip
/// caller through a mutual-TLS trunk with SRTP mandatory; both hear each other, and a
/// capture of both legs' RTP holds no packet that decodes to either tone, nor any SIP.
#[test]
fn srtp_over_tls_on_both_legs_carries_audio_no_capture_can_hear() {
    let base = port_block();
    let (sip, http, tls, agent_sip, caller_sip) = (base, base + 1, base + 2, base + 3, base + 5);
    let (agent_rtp, caller_rtp) = ((base + 10, base + 19), (base + 20, base + 29));
    let dir = workdir("tls-srtp");
    let (carrier_crt, carrier_key) = make_cert(&dir, "carrier");
    let e = EngineProc::start(
        &dir,
        &srtp_config(tls, Some(&fingerprint(&carrier_crt))),
        sip,
        http,
    );
    let capture = Capture::start(
        &dir,
        "srtp",
        &format!(
            "tcp port {tls} or udp portrange {}-{} or udp portrange {}-{}",
            agent_rtp.0, agent_rtp.1, caller_rtp.0, caller_rtp.1
        ),
    );
    let agent = tls_agent(
        &e,
        &dir,
        (agent_sip, agent_rtp),
        tls,
        ";mediaenc=srtp-mand",
        "module srtp.so\n",
    );
    let caller = cert_caller(
        &dir,
        (caller_sip, caller_rtp),
        tls,
        (&carrier_crt, &carrier_key),
        ";mediaenc=srtp-mand",
        "module srtp.so\n",
    );
    wait_on_call(&e, "1001", &caller);
    std::thread::sleep(Duration::from_secs(3));
    let agent_heard = agent.stop_and_heard_rms();
    let caller_heard = caller.stop_and_heard_rms();
    assert!(
        agent_heard > 0.01,
        "agent heard silence ({agent_heard:.4}):\n{}",
        e.log()
    );
    assert!(
        caller_heard > 0.01,
        "caller heard silence ({caller_heard:.4}):\n{}",
        e.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    let packets = capture.stop_packets();
    let tls_bytes: usize = packets
        .iter()
        .filter(|(proto, ..)| *proto == 6)
        .map(|(.., p)| p.len())
        .sum();
    assert!(tls_bytes > 2_000, "only {tls_bytes} bytes of TLS captured");
    let rtp: Vec<&[u8]> = packets
        .iter()
        .filter(|(proto, s, d, p)| *proto == 17 && p.len() >= 172 && (s % 2 == 0 || d % 2 == 0))
        .map(|(.., p)| p.as_slice())
        .collect();
    assert!(
        rtp.len() > 400,
        "only {} RTP packets captured on the two legs",
        rtp.len()
    );
    use dasan::media::g711::Law;
    for freq in [440.0, 660.0] {
        let n = tone_packets(&rtp, Law::Ulaw, freq);
        assert_eq!(
            n, 0,
            "{n} captured packets carry the {freq} Hz tone in clear"
        );
    }
    for (proto, .., p) in &packets {
        for needle in [&b"SIP/2.0"[..], b"INVITE sip", b"a=crypto", b"Call-ID"] {
            assert!(
                !p.windows(needle.len()).any(|w| w == needle),
                "plaintext SIP ({}) in a captured {} payload",
                String::from_utf8_lossy(needle),
                if *proto == 6 { "TCP" } else { "UDP" }
            );
        }
    }
    assert_eq!(
        e.metric("dasan_security_events_total{event=\"srtp_refused\"}"),
        0.0,
        "packets of a keyed leg failed authentication:\n{}",
        e.log()
    );
}

/// A plain-RTP SIPp trunk caller over UDP reaches an SRTP-mandatory baresip agent: the
/// engine decrypts the agent's SRTP and sends the caller plain RTP (and the reverse). The
/// agent's 440 Hz tone is found in clear on the caller's leg and nowhere on the agent's,
/// which also shows that the tone detector of the test above can find a tone.
#[test]
fn a_plain_sipp_caller_reaches_an_srtp_agent_through_the_engine_re_keying() {
    let base = port_block();
    let (sip, http, tls, agent_sip, caller_sip, caller_media) =
        (base, base + 1, base + 2, base + 3, base + 5, base + 30);
    let agent_rtp = (base + 10, base + 19);
    let dir = workdir("tls-srtp-plain-caller");
    let e = EngineProc::start(&dir, &srtp_config(tls, None), sip, http);
    // An agent with SRTP mandatory on plain UDP is never offered a call.
    let plain_agent = Baresip::start(
        &dir,
        "plain-agent",
        base + 7,
        (base + 32, base + 39),
        G711_TONE,
        &format!("<sip:1002@127.0.0.1:{sip}>;auth_pass=test-pw;answermode=auto;regint=60;audio_codecs=pcmu"),
        &[],
    );
    wait_ready(&e, "1002", &plain_agent);
    let agent = tls_agent(
        &e,
        &dir,
        (agent_sip, agent_rtp),
        tls,
        ";mediaenc=srtp-mand",
        "module srtp.so\n",
    );
    copy_sipp_pcaps(&dir);
    let capture = Capture::start(
        &dir,
        "rekey",
        &format!(
            "udp port {caller_media} or udp portrange {}-{}",
            agent_rtp.0, agent_rtp.1
        ),
    );
    let mut a = base_args(sip, caller_sip, caller_media, base + 31);
    a.extend(args(&["-sf"]));
    a.push(scenarios().join("caller-audio.xml").display().to_string());
    a.extend(args(&["-s", "120", "-m", "1", "-timeout", "60s"]));
    sipp(&dir, "caller", &a).expect_success(LIMIT);
    std::thread::sleep(Duration::from_millis(300));
    let datagrams = capture.stop_udp();
    let rms = agent.stop_and_heard_rms();
    assert!(rms > 0.01, "the SRTP agent heard silence ({rms:.4})");
    let to_caller: Vec<&[u8]> = datagrams
        .iter()
        .filter(|(_, d, _)| *d == caller_media)
        .map(|(.., p)| p.as_slice())
        .collect();
    let from_agent: Vec<&[u8]> = datagrams
        .iter()
        .filter(|(s, ..)| (agent_rtp.0..=agent_rtp.1).contains(s) && s % 2 == 0)
        .map(|(.., p)| p.as_slice())
        .collect();
    use dasan::media::g711::Law;
    let clear = tone_packets(&to_caller, Law::Alaw, 440.0);
    assert!(
        clear > 100,
        "the caller's plain leg carried the agent's tone in only {clear} of {} packets",
        to_caller.len()
    );
    assert!(
        from_agent.len() > 100,
        "the agent sent {} packets",
        from_agent.len()
    );
    let hidden = tone_packets(&from_agent, Law::Ulaw, 440.0);
    assert_eq!(hidden, 0, "the agent's SRTP leg carried its tone in clear");
    assert_eq!(
        e.metric("dasan_calls_total{outcome=\"answered\",queue=\"general\"}"),
        1.0,
        "{}",
        e.log()
    );
    assert!(
        e.log().contains("not registered over TLS"),
        "the UDP agent with srtp mandatory was not passed over:\n{}",
        e.log()
    );
    drop(plain_agent);
}

/// A SIP endpoint over TLS driven by hand: `openssl s_client` carries the connection (the
/// engine's certificate is not checked: loopback), messages are written to its stdin and
/// read, framed by Content-Length, from its stdout. (baresip 1.0 has no `sips:` accounts.)
struct TlsPeer {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    rx: std::sync::mpsc::Receiver<String>,
}

impl TlsPeer {
    fn connect(port: u16) -> TlsPeer {
        let mut child = Command::new("timeout")
            .args(["-k", "2", "60", "openssl", "s_client", "-quiet", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut r = std::io::BufReader::new(stdout);
            loop {
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    match r.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == "\r\n" && head.is_empty() {
                        continue; // keep-alive
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.trim()
                            .eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                head.push_str(&String::from_utf8_lossy(&body));
                if tx.send(head).is_err() {
                    return;
                }
            }
        });
        TlsPeer { child, stdin, rx }
    }

    fn send(&mut self, msg: &str) {
        self.stdin
            .write_all(msg.as_bytes())
            .expect("write to s_client");
        self.stdin.flush().expect("flush");
    }

    /// The next message whose first line starts with `start`.
    fn expect(&self, start: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self
                .rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no '{start}' over TLS"));
            if m.starts_with(start) {
                return m;
            }
        }
    }
}

impl Drop for TlsPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or("")
}

/// `sips:` (RFC 5630): an agent registers a `sips:` Contact over TLS, a trunk caller over
/// TLS dials `sips:120`; the engine reaches the agent at its `sips:` URI over its
/// connection and every Contact it gives on those dialogs is `sips:`; the same `sips:`
/// requests over plain UDP are refused with 416, never served.
#[test]
fn sips_uris_register_and_call_over_tls_and_are_refused_over_udp() {
    let base = port_block();
    let (sip, http, tls) = (base, base + 1, base + 2);
    let dir = workdir("tls-sips");
    let e = EngineProc::start(&dir, &tls_config(tls, ""), sip, http);
    let mut agent = TlsPeer::connect(tls);
    let reg = |auth: &str, cseq: u32| {
        format!(
            "REGISTER sips:127.0.0.1:{tls} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKsr{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sips:1001@127.0.0.1>;tag=sr\r\nTo: <sips:1001@127.0.0.1>\r\n\
             Call-ID: sips-reg@probe\r\nCSeq: {cseq} REGISTER\r\nContact: <sips:1001@127.0.0.1:5999>\r\n\
             Expires: 300\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    agent.send(&reg("", 1));
    let challenge = agent.expect("SIP/2.0 401");
    let auth = dasan::registrar::digest::authorization(
        header(&challenge, "WWW-Authenticate"),
        "1001",
        "test-pw",
        "REGISTER",
        &format!("sips:127.0.0.1:{tls}"),
        "cn",
    )
    .expect("digest");
    agent.send(&reg(&format!("Authorization: {auth}\r\n"), 2));
    agent.expect("SIP/2.0 200");
    assert_eq!(e.agent_state("1001"), "ready");

    let mut caller = TlsPeer::connect(tls);
    let sdp = "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    caller.send(&format!(
        "INVITE sips:120@127.0.0.1:{tls} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5998;branch=z9hG4bKsc1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sips:0212345678@127.0.0.1>;tag=sc\r\nTo: <sips:120@127.0.0.1>\r\n\
         Call-ID: sips-call@probe\r\nCSeq: 1 INVITE\r\nContact: <sips:0212345678@127.0.0.1:5998>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ));
    let early = caller.expect("SIP/2.0 183");
    assert!(
        header(&early, "Contact").starts_with(&format!("<sips:dasan@127.0.0.1:{tls}>")),
        "the caller's dialog is SIPS: {early}"
    );
    let offer = agent.expect("INVITE ");
    assert!(
        offer.starts_with("INVITE sips:1001@127.0.0.1:5999 SIP/2.0"),
        "{offer}"
    );
    assert!(header(&offer, "Via").starts_with("SIP/2.0/TLS"), "{offer}");
    assert!(
        header(&offer, "Contact").starts_with("<sips:"),
        "the agent's dialog is SIPS: {offer}"
    );
    // A sip: (not sips:) phone over TLS keeps sip: Contacts: see the baresip tests above.

    // Over UDP the same requests are refused.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let me = udp.local_addr().unwrap();
    for (i, req) in [
        format!(
            "INVITE sips:120@127.0.0.1:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKsu1\r\nMax-Forwards: 70\r\n\
             From: <sip:0212345678@127.0.0.1>;tag=su\r\nTo: <sips:120@127.0.0.1>\r\nCall-ID: sips-udp1@probe\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:0212345678@{me}>\r\nContent-Length: 0\r\n\r\n"
        ),
        format!(
            "REGISTER sip:127.0.0.1:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKsu2\r\nMax-Forwards: 70\r\n\
             From: <sip:1002@127.0.0.1>;tag=su\r\nTo: <sip:1002@127.0.0.1>\r\nCall-ID: sips-udp2@probe\r\nCSeq: 1 REGISTER\r\n\
             Contact: <sips:1002@{me}>\r\nContent-Length: 0\r\n\r\n"
        ),
    ]
    .iter()
    .enumerate()
    {
        udp.send_to(req.as_bytes(), ("127.0.0.1", sip)).unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = udp
            .recv_from(&mut buf)
            .unwrap_or_else(|_| panic!("no answer to sips request {i} over UDP"));
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("SIP/2.0 416"), "request {i}: {text}");
    }
}

/// Runs openssl with `args` in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA (`ca.crt`/`ca.key` in `dir`), and a client certificate `name.crt`/`name.key`
/// it issues for `name` (CN and DNS name, client authentication).
fn ca_issued(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    if !dir.join("ca.crt").exists() {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=dasan test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        format!(
            "subjectAltName=DNS:{name}\nextendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n"
        ),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.crt"),
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
    (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    )
}

/// A trunk known by the name on its CA-issued client certificate (`tls_client_subjects`
/// with `sip.tls_client_ca`): a baresip caller with such a certificate reaches the agent;
/// the same CA's certificate for another name connects but is no trunk (403); a
/// self-signed certificate with the trunk's name fails the handshake (counted).
#[test]
fn a_trunk_identified_by_its_ca_issued_certificate_name_reaches_an_agent() {
    let base = port_block();
    let (sip, http, tls, agent_sip, caller_sip) = (base, base + 1, base + 2, base + 3, base + 5);
    let dir = workdir("tls-subject");
    let (carrier_crt, carrier_key) = ca_issued(&dir, "carrier.example.net");
    let (other_crt, other_key) = ca_issued(&dir, "other.example.net");
    let forged = dir.join("forged");
    std::fs::create_dir_all(&forged).unwrap();
    let (forged_crt, forged_key) = make_cert(&forged, "carrier.example.net");
    let config = tls_config(
        tls,
        &format!("tls_client_ca = \"{}\"", dir.join("ca.crt").display()),
    )
    .replace(
        "sources = [\"127.0.0.0/8\"]",
        "tls_client_subjects = [\"Carrier.Example.Net\"]",
    );
    let e = EngineProc::start(&dir, &config, sip, http);
    let agent = tls_agent(&e, &dir, (agent_sip, (base + 10, base + 19)), tls, "", "");
    let invite = format!(
        "INVITE sip:120@127.0.0.1:{tls};transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKsubj\r\n\
         Max-Forwards: 70\r\nFrom: <sip:0212345678@127.0.0.1>;tag=sj\r\nTo: <sip:120@127.0.0.1>\r\n\
         Call-ID: subject@probe\r\nCSeq: 1 INVITE\r\nContact: <sip:0212345678@127.0.0.1:5999;transport=tls>\r\nContent-Length: 0\r\n\r\n"
    );
    let with = |crt: &Path, key: &Path| {
        s_client(
            tls,
            &[
                "-quiet",
                "-cert",
                &crt.display().to_string(),
                "-key",
                &key.display().to_string(),
            ],
            invite.as_bytes(),
            Duration::from_secs(1),
        )
    };
    let out = with(&other_crt, &other_key);
    assert!(
        out.contains("SIP/2.0 403"),
        "a CA-issued certificate for another name is no trunk:\n{out}"
    );
    let out = with(&forged_crt, &forged_key);
    assert!(
        !out.contains("SIP/2.0"),
        "a self-signed certificate with the trunk's name was served:\n{out}"
    );
    wait_metric(
        &e,
        "dasan_security_events_total{event=\"tls_handshake_failed\"}",
        1.0,
        "the forged certificate was not counted",
    );
    reaches_the_agent_as_the_trunk(
        &e,
        &dir,
        (caller_sip, (base + 20, base + 29)),
        tls,
        (&carrier_crt, &carrier_key),
        agent,
    );
}
