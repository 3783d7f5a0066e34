//! Attacks on the engine's web side, each against a real engine on loopback (issue 15):
//! cross-site WebSocket handshakes and DNS rebinding, oversized messages before login,
//! tokens in URLs, `/metrics` without its token, formulas in CSV exports, and password
//! guessing on the agent desktop's login. Each test also shows the legitimate use still
//! works. Raw sockets and tungstenite; no browser needed.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{
    self, client::IntoClientRequest, protocol::WebSocket, Message,
};

type Ws = WebSocket<TcpStream>;

/// A TCP connection to the engine's HTTP port from `from` (any 127.0.0.0/8 address).
fn tcp_from(from: [u8; 4], port: u16) -> TcpStream {
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.bind(&SocketAddr::from((from, 0)).into()).expect("bind");
    s.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .expect("connect");
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// A WebSocket handshake from `from`, with extra headers: the socket, or the HTTP status
/// it was refused with.
fn ws_from(from: [u8; 4], port: u16, path: &str, extra: &[(&str, &str)]) -> Result<Ws, u16> {
    let mut req = format!("ws://127.0.0.1:{port}{path}")
        .into_client_request()
        .expect("request");
    for (k, v) in extra {
        let name: tungstenite::http::HeaderName = k.parse().expect("header name");
        req.headers_mut()
            .insert(name, v.parse().expect("header value"));
    }
    match tungstenite::client(req, tcp_from(from, port)) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            Err(resp.status().as_u16())
        }
        Err(e) => panic!("handshake: {e}"),
    }
}

fn ws(port: u16, path: &str) -> Ws {
    ws_from([127, 0, 0, 1], port, path, &[]).expect("handshake")
}

fn send(ws: &mut Ws, v: serde_json::Value) {
    ws.send(Message::Text(v.to_string().into())).expect("send");
}

/// The next JSON message, or None once the socket is closed (with the close code, if any,
/// in `closed`).
fn next(ws: &mut Ws) -> Result<serde_json::Value, Option<u16>> {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => return Ok(serde_json::from_str(&t).expect("json")),
            Ok(Message::Close(frame)) => return Err(frame.map(|f| u16::from(f.code))),
            Ok(_) => continue,
            Err(_) => return Err(None),
        }
    }
}

/// One login attempt on the desktop's socket: the event (`login-ok`) or the error code.
fn login(ws: &mut Ws, agent: &str, password: &str) -> String {
    send(
        ws,
        serde_json::json!({"op": "login", "agent": agent, "password": password}),
    );
    let v = next(ws).expect("an answer to the login");
    match v["ev"].as_str() {
        Some("error") => v["code"].as_str().unwrap_or("").to_string(),
        Some(ev) => ev.to_string(),
        None => panic!("{v}"),
    }
}

/// The raw answer's status line code to a WebSocket handshake with these headers.
fn handshake_status(port: u16, path: &str, headers: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\n{headers}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

fn with_http(config: &str, http: &str) -> String {
    config.replace("[[trunk]]", &format!("[http]\n{http}\n\n[[trunk]]"))
}

#[test]
fn cross_site_and_rebinding_websocket_handshakes_get_403_and_same_origin_ones_work() {
    let base = port_block();
    let dir = workdir("attack-origin");
    let cfg = with_http(
        &test_config(""),
        "allowed_origins = [\"https://desk.example\"]",
    );
    let e = EngineProc::start(&dir, &cfg, base, base + 1);
    let port = e.http_port;
    let own = format!("127.0.0.1:{port}");
    let mut refused = 0;
    for path in ["/agent/ws", "/supervisor/ws"] {
        for (headers, want) in [
            // Non-browser clients (webload, scripts) send no Origin.
            (format!("Host: {own}\r\n"), 101),
            // The engine's own page, reached by its address.
            (format!("Host: {own}\r\nOrigin: http://{own}\r\n"), 101),
            (
                format!("Host: localhost:{port}\r\nOrigin: http://localhost:{port}\r\n"),
                101,
            ),
            // A page of a listed origin.
            (
                format!("Host: {own}\r\nOrigin: https://desk.example\r\n"),
                101,
            ),
            // Another site's page (cross-site WebSocket hijacking).
            (
                format!("Host: {own}\r\nOrigin: https://evil.example\r\n"),
                403,
            ),
            (
                format!("Host: {own}\r\nOrigin: http://127.0.0.1:{}\r\n", port + 1),
                403,
            ),
            (format!("Host: {own}\r\nOrigin: null\r\n"), 403),
            // DNS rebinding: evil.example re-pointed at the engine, same-origin with itself.
            (
                format!("Host: evil.example:{port}\r\nOrigin: http://evil.example:{port}\r\n"),
                403,
            ),
        ] {
            let (code, text) = handshake_status(port, path, &headers);
            assert_eq!(code, want, "{path} with {headers:?}:\n{text}");
            if want == 403 {
                refused += 1;
                assert!(!text.contains("101 Switching"), "{text}");
                assert!(text.contains("\"error\""), "{text}");
            }
        }
    }
    assert_eq!(
        e.metric("dasan_security_events_total{event=\"ws_origin\"}"),
        refused as f64
    );
    // The engine's own desktop still logs in with its Origin.
    let mut desk = ws_from(
        [127, 0, 0, 1],
        port,
        "/agent/ws",
        &[("origin", &format!("http://{own}"))],
    )
    .expect("same-origin handshake");
    assert_eq!(login(&mut desk, "1001", "test-pw"), "login-ok");
}

#[test]
fn a_message_over_4_kib_before_login_closes_the_socket_and_after_login_is_answered() {
    let base = port_block();
    let dir = workdir("attack-prelogin");
    let e = EngineProc::start(&dir, &test_config(""), base, base + 1);
    let port = e.http_port;
    // Under the limit: answered, the socket stays.
    let mut a = ws(port, "/agent/ws");
    send(
        &mut a,
        serde_json::json!({"op": "x", "pad": "p".repeat(3000)}),
    );
    assert_eq!(next(&mut a).expect("answer")["code"], "not-logged-in");
    // Over it: closed with 1009 (message too big), nothing else said.
    a.send(Message::Text("p".repeat(5000).into()))
        .expect("send");
    assert_eq!(next(&mut a), Err(Some(1009)));
    let mut sup = ws(port, "/supervisor/ws");
    sup.send(Message::Binary(vec![0u8; 5000].into()))
        .expect("send");
    assert_eq!(next(&mut sup), Err(Some(1009)));
    // A login still works, and after it larger messages are the protocol's business.
    let mut b = ws(port, "/agent/ws");
    assert_eq!(login(&mut b, "1001", "test-pw"), "login-ok");
    send(
        &mut b,
        serde_json::json!({"op": "transfer", "target": "9".repeat(8000)}),
    );
    loop {
        let v = next(&mut b).expect("still open");
        if v["ev"] == "error" {
            assert_eq!(v["code"], "bad-request", "{v}");
            break;
        }
    }
}

#[test]
fn the_wallboard_takes_its_token_in_the_first_message_and_never_from_the_url() {
    let base = port_block();
    let dir = workdir("attack-wallboard");
    let agent_token = "agent-1001-token-abcdef";
    let cfg = test_config("").replace(
        "[[agents]]",
        &format!("[[http.tokens]]\ntoken = \"{agent_token}\"\nrole = \"agent\"\nagent = \"1001\"\n\n[[agents]]"),
    );
    let e = EngineProc::start(&dir, &cfg, base, base + 1);
    let port = e.http_port;
    // A token in the URL is not read.
    let mut w = ws(port, &format!("/supervisor/ws?token={API_TOKEN}"));
    send(&mut w, serde_json::json!({"op": "hello"}));
    let v = next(&mut w).expect("refusal");
    assert_eq!(
        (v["ev"].as_str(), v["code"].as_str()),
        (Some("error"), Some("bad-token")),
        "{v}"
    );
    assert_eq!(next(&mut w).ok(), None, "closed");
    // Wrong tokens and agent tokens are refused.
    for token in ["not-a-token", agent_token] {
        let mut w = ws(port, "/supervisor/ws");
        send(&mut w, serde_json::json!({"op": "auth", "token": token}));
        assert_eq!(
            next(&mut w).expect("refusal")["code"],
            "bad-token",
            "{token}"
        );
        assert_eq!(next(&mut w).ok(), None, "closed");
    }
    // The supervisor's token in the first message: snapshots follow.
    let mut w = ws(port, "/supervisor/ws");
    send(
        &mut w,
        serde_json::json!({"op": "auth", "token": API_TOKEN}),
    );
    let v = next(&mut w).expect("auth-ok");
    assert_eq!(
        (v["ev"].as_str(), v["role"].as_str()),
        (Some("auth-ok"), Some("supervisor")),
        "{v}"
    );
    let v = next(&mut w).expect("snapshot");
    assert_eq!(v["ev"], "snapshot", "{v}");
    assert!(v["agents"].as_array().is_some_and(|a| a.len() == 4), "{v}");
    // Nothing in the front end or the server puts a token in a URL.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["web/src", "src/web", "src/http"] {
        for f in std::fs::read_dir(root.join(dir)).expect("dir").flatten() {
            let text = std::fs::read_to_string(f.path()).unwrap_or_default();
            assert!(
                !text.contains("?token=") && !text.contains("&token="),
                "{} puts a token in a URL",
                f.path().display()
            );
        }
    }
}

/// An engine whose HTTP listens on every address (to be reached from a non-loopback one).
/// Plain HTTP there needs `insecure = true` (issue 16): these tests attack the HTTP layer
/// itself, which is the same under TLS.
fn start_on_any(dir: &std::path::Path, config: &str, sip_port: u16, http_port: u16) -> EngineProc {
    let config = if config.contains("[http]\n") {
        config.replacen("[http]\n", "[http]\ninsecure = true\n", 1)
    } else {
        with_http(config, "insecure = true")
    };
    EngineProc::start_http_on(dir, &config, sip_port, http_port, "0.0.0.0")
}

/// This host's address on its default route, if it has one that is not loopback.
fn outside_address() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

fn get(addr: (IpAddr, u16), path: &str, headers: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\n{headers}\r\n").expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn metrics_need_their_token_when_one_is_set_and_are_loopback_only_without() {
    let base = port_block();
    let lo = IpAddr::from([127, 0, 0, 1]);
    // Without a token: loopback scrapers (Prometheus on the host, the tests) read it.
    let dir = workdir("attack-metrics-open");
    let e = start_on_any(&dir, &test_config(""), base, base + 1);
    let port = e.http_port;
    assert_eq!(
        get(
            (lo, port),
            "/metrics",
            &format!("Host: 127.0.0.1:{port}\r\n")
        ),
        200
    );
    assert_eq!(get((lo, port), "/metrics", ""), 200, "no Host (HTTP/1.0)");
    // A page that re-pointed its own name at 127.0.0.1 (DNS rebinding) does not.
    assert_eq!(
        get(
            (lo, port),
            "/metrics",
            &format!("Host: evil.example:{port}\r\n")
        ),
        403
    );
    match outside_address() {
        Some(ip) => {
            let host = format!("Host: {ip}:{port}\r\n");
            assert_eq!(get((ip, port), "/metrics", &host), 403, "from {ip}");
            assert_eq!(get((ip, port), "/healthz", &host), 200, "probes stay open");
        }
        None => eprintln!(
            "no address but loopback here: the non-loopback refusal is left to the unit test"
        ),
    }
    drop(e);
    // With a token: only with it, from anywhere.
    let token = "metrics-token-0123456789";
    let dir = workdir("attack-metrics-token");
    let cfg = with_http(&test_config(""), &format!("metrics_token = \"{token}\""));
    let e = start_on_any(&dir, &cfg, base + 2, base + 3);
    let port = e.http_port;
    let host = format!("Host: 127.0.0.1:{port}\r\n");
    assert_eq!(get((lo, port), "/metrics", &host), 401);
    let wrong = format!("{host}Authorization: Bearer {API_TOKEN}\r\n");
    assert_eq!(
        get((lo, port), "/metrics", &wrong),
        401,
        "the API token is not it"
    );
    let right = format!("{host}Authorization: Bearer {token}\r\n");
    assert_eq!(get((lo, port), "/metrics", &right), 200);
    if let Some(ip) = outside_address() {
        let right = format!("Host: {ip}:{port}\r\nAuthorization: Bearer {token}\r\n");
        assert_eq!(get((ip, port), "/metrics", &right), 200, "from {ip}");
    }
}

/// A trunk INVITE for 120 whose caller number and Call-ID start like formulas.
fn formula_invite(sip_port: u16) -> (std::net::UdpSocket, String) {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let lp = s.local_addr().expect("addr").port();
    let call_id = format!("-2+3-csv-{lp}@127.0.0.1");
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        lp + 2
    );
    let msg = format!(
        "INVITE sip:120@127.0.0.1:{sip_port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK-csv-{lp}\r\nMax-Forwards: 70\r\nFrom: <sip:=2+5@127.0.0.1:{lp}>;tag=csv{lp}\r\nTo: <sip:120@127.0.0.1:{sip_port}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:{lp}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    s.send_to(msg.as_bytes(), ("127.0.0.1", sip_port))
        .expect("send INVITE");
    (s, call_id)
}

/// RFC 4180 rows.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field, mut quoted) = (vec![], vec![], String::new(), false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

#[test]
fn a_csv_export_of_records_with_formulas_in_them_opens_as_text() {
    let base = port_block();
    let dir = workdir("attack-csv");
    let e = EngineProc::start(&dir, &test_config("max_wait_s = 60"), base, base + 1);
    let port = e.http_port;
    // The attacker controls the caller's number and Call-ID (the trunk passes them on)...
    let (_trunk, call_id) = formula_invite(e.sip_port);
    let deadline = Instant::now() + Duration::from_secs(10);
    let record = loop {
        let (_, body) = e.http_get("/api/records?limit=10").expect("records");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let found = v["records"].as_array().and_then(|a| {
            a.iter()
                .find(|r| r["sip_call_id"] == call_id.as_str())
                .cloned()
        });
        if let Some(r) = found {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no record for the INVITE: {body}\n{}",
            e.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let id = record["call_id"].as_str().expect("id").to_string();
    // ...and the agent's form: whatever a caller dictated goes in the notes.
    let notes = "=cmd|' /C calc'!A0";
    let form = serde_json::json!({"category": "@SUM(1+1)*cmd|' /C calc'!A0", "notes": notes});
    let (code, body) = http_send(
        port,
        "PATCH",
        &format!("/api/records/{id}"),
        Some(API_TOKEN),
        &form.to_string(),
    );
    assert_eq!(code, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (record, csv) = loop {
        let (_, json) = e.http_get(&format!("/api/records/{id}")).expect("record");
        let (code, csv) = e.http_get("/api/records?format=csv&limit=10").expect("csv");
        assert_eq!(code, 200, "{csv}");
        let r: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        if r["notes"] == notes {
            break (r, csv);
        }
        assert!(Instant::now() < deadline, "notes not stored: {json}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let rows = parse_csv(&csv);
    let head = &rows[0];
    let row = rows
        .iter()
        .find(|r| r.iter().any(|f| f.contains(&call_id)))
        .unwrap_or_else(|| panic!("no row for the call:\n{csv}"));
    let danger = ['=', '+', '-', '@', '\t', '\r'];
    let mut neutralised = Vec::new();
    for (name, got) in head.iter().zip(row) {
        let stored = match &record[name.as_str()] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        };
        if stored.starts_with(danger) {
            assert_eq!(got, &format!("'{stored}"), "{name}");
            neutralised.push(name.as_str());
        } else {
            assert_eq!(got, &stored, "{name}");
        }
        assert!(!got.starts_with(danger), "{name}: {got:?}");
    }
    for col in ["sip_call_id", "category", "notes"] {
        assert!(
            neutralised.contains(&col),
            "{col} not tested: {neutralised:?}"
        );
    }
    eprintln!("neutralised columns: {neutralised:?}");
}

#[test]
fn eleven_wrong_logins_from_one_address_block_it_and_the_agent_until_the_block_ends() {
    let base = port_block();
    let dir = workdir("attack-login");
    let cfg = with_http(&test_config(""), "login_block_s = 5");
    let e = EngineProc::start(&dir, &cfg, base, base + 1);
    let port = e.http_port;
    let (a, b, c) = ([127, 0, 0, 1], [127, 0, 0, 2], [127, 0, 0, 3]);
    let desk = |from| ws_from(from, port, "/agent/ws", &[]).expect("handshake");
    // Eleven guesses, over three sockets (each closes after five refusals): the throttle
    // follows the address and the agent, not the socket.
    let guesses = |from, agent: &str| -> Vec<String> {
        let mut answers = Vec::new();
        let mut s = desk(from);
        for i in 0..11 {
            if i % 5 == 0 && i > 0 {
                s = desk(from);
            }
            answers.push(login(&mut s, agent, &format!("guess-{i}")));
        }
        answers
    };
    let mut want = vec!["bad-login".to_string(); 10];
    want.push("login-blocked".into());
    assert_eq!(guesses(a, "1001"), want);
    // The block started with the tenth guess, before this.
    let ends_by = Instant::now() + Duration::from_secs(5);
    // The right password is refused now, unchecked: from that address for any agent, and
    // for that agent from any address.
    let mut s = desk(a);
    assert_eq!(login(&mut s, "1001", "test-pw"), "login-blocked");
    assert_eq!(login(&mut s, "1002", "test-pw"), "login-blocked");
    let mut s = desk(b);
    assert_eq!(login(&mut s, "1001", "test-pw"), "login-blocked");
    // Another address logs in to another agent.
    assert_eq!(login(&mut s, "1002", "test-pw"), "login-ok");
    drop(s);
    // An agent id that does not exist gets exactly the same answers.
    assert_eq!(guesses(c, "9999"), want);
    let log = e.log();
    for (src, acct) in [("127.0.0.1", "1001"), ("127.0.0.3", "9999")] {
        let line = format!("auth blocked: source={src} account={acct} service=web until=");
        let at = log
            .find(&line)
            .unwrap_or_else(|| panic!("no '{line}' in\n{log}"));
        let until: u64 = log[at + line.len()..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .expect("until");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!((now..=now + 6).contains(&until), "until {until}, now {now}");
    }
    assert_eq!(
        log.matches("auth blocked:").count(),
        2,
        "one line per block"
    );
    assert_eq!(
        e.metric("dasan_security_events_total{event=\"auth_failed\"}"),
        20.0
    );
    assert_eq!(
        e.metric("dasan_security_events_total{event=\"auth_blocked\"}"),
        5.0
    );
    // Once the block is over, the right password works again.
    std::thread::sleep(
        (ends_by + Duration::from_millis(200)).saturating_duration_since(Instant::now()),
    );
    let mut s = desk(a);
    assert_eq!(login(&mut s, "1001", "test-pw"), "login-ok");
}

/// Slowloris on the HTTP port: 300 connections that never finish their headers are cut
/// off after the header timeout (10 s), and the API answers throughout.
#[test]
fn slow_http_clients_are_cut_off_and_the_api_keeps_answering() {
    let base = port_block();
    let dir = workdir("attack-slowloris");
    let e = EngineProc::start(&dir, &test_config(""), base, base + 1);
    let mut slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = tcp_from([127, 0, 0, 77], e.http_port);
            s.write_all(b"GET /api/agents HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .expect("write");
            s
        })
        .collect();
    let started = Instant::now();
    // Meanwhile the API answers its own clients at once.
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(e.http_get("/healthz").map(|(c, _)| c), Some(200));
        assert!(t.elapsed() < Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut buf = [0u8; 64];
    for s in slow.iter_mut() {
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let closed = match s.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        assert!(
            closed,
            "a connection that never finishes its headers is closed"
        );
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(8) && took < Duration::from_secs(16),
        "cut off after the header timeout, not before: {took:?}"
    );
}
