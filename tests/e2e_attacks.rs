//! Issue 15, attacked for real: each test starts the `dasan` binary on loopback and attacks
//! it with raw sockets as a scanner or a fraudster would, then checks that the defence
//! held *and* that legitimate traffic still works. The trunk is 127.0.0.1 only; attackers
//! speak from other loopback addresses (127.0.0.66, …), which Linux routes to `lo`.
//! Every Via, Contact and SDP address names 127.0.0.0/8: nothing can leave the machine.

mod common;
use common::*;
use dasan::registrar::digest::{authorization, authorization_nc};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

const ATTACKER: &str = "127.0.0.66";

/// Agents 1001-1004 (`test-pw`) with skill ko; trunk 127.0.0.1/32 only; `sip` lines go
/// into `[sip]`, `queue` lines into `[queue.general]`.
fn config(sip: &str, queue: &str) -> String {
    let (lo, hi) = rtp_range();
    format!(
        r#"
[sip]
{sip}

[[trunk]]
name = "loopback"
sources = ["127.0.0.1/32"]

[[route]]
number = "120"
queue = "general"

[[route]]
number = "1209"
menu = "languages"

[queue.general]
skill = "ko"
{queue}

[queue.en]
skill = "en"

[menu.languages]
timeout_s = 8
retries = 1
fallback = "general"

[[menu.languages.option]]
digit = "1"
prompt = "menu-en"
queue = "en"

[[agents]]
ids = "1001-1004"
password = "test-pw"
skills = ["ko"]

[[agents]]
ids = "1005"
password = "test-pw"
skills = ["en"]

[media]
rtp_port_min = {lo}
rtp_port_max = {}
webrtc_port_min = {}
webrtc_port_max = {hi}
"#,
        lo + 119,
        lo + 120
    )
}

fn engine(name: &str, sip: &str, queue: &str) -> EngineProc {
    engine_with(name, sip, queue, "")
}

/// With more tables (`tail`, e.g. `[outbound]`) after the others.
fn engine_with(name: &str, sip: &str, queue: &str, tail: &str) -> EngineProc {
    let base = port_block();
    let dir = workdir(name);
    EngineProc::start(&dir, &(config(sip, queue) + tail), base, base + 1)
}

/// A raw SIP endpoint on one UDP socket.
struct Peer {
    sock: UdpSocket,
    engine: SocketAddr,
}

impl Peer {
    fn new(ip: &str, e: &EngineProc) -> Peer {
        let sock = UdpSocket::bind((ip, 0)).expect("bind");
        Peer {
            sock,
            engine: SocketAddr::from(([127, 0, 0, 1], e.sip_port)),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("local addr")
    }

    fn send(&self, msg: &str) {
        self.sock
            .send_to(msg.as_bytes(), self.engine)
            .expect("send");
    }

    /// Every message received within `d`.
    fn recv_for(&self, d: Duration) -> Vec<String> {
        let end = Instant::now() + d;
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            let _ = self.sock.set_read_timeout(Some(left));
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(_) => break,
            }
        }
        out
    }

    /// The next response with a final status (or the given provisional), within 5 s.
    fn response(&self, wanted: impl Fn(u16) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 65536];
        while Instant::now() < end {
            let _ = self.sock.set_read_timeout(Some(Duration::from_millis(200)));
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                if status(&m).is_some_and(&wanted) {
                    return m;
                }
            }
        }
        panic!("no matching response within 5 s");
    }

    fn final_response(&self) -> String {
        self.response(|c| c >= 200)
    }
}

fn status(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn header(msg: &str, name: &str) -> Option<String> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

fn tag(value: &str) -> String {
    value
        .split(';')
        .find_map(|p| p.trim().strip_prefix("tag="))
        .unwrap_or("")
        .to_string()
}

fn register(p: &Peer, id: &str, branch: &str, cseq: u32, auth: &str) -> String {
    let a = p.addr();
    format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bK{branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{id}@127.0.0.1>;tag=r{branch}\r\nTo: <sip:{id}@127.0.0.1>\r\nCall-ID: reg-{id}-{}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{id}@{a}>\r\nExpires: 300\r\n{auth}Content-Length: 0\r\n\r\n",
        a.port()
    )
}

/// Registers agent `id` from `p` with password `pw`: the final status.
fn register_agent(p: &Peer, id: &str, pw: &str) -> u16 {
    p.send(&register(p, id, &format!("{id}a"), 1, ""));
    let ch = p.final_response();
    assert_eq!(status(&ch), Some(401), "{ch}");
    let challenge = header(&ch, "WWW-Authenticate").expect("challenge");
    let auth = authorization(&challenge, id, pw, "REGISTER", "sip:127.0.0.1", "cn").expect("auth");
    p.send(&register(
        p,
        id,
        &format!("{id}b"),
        2,
        &format!("Authorization: {auth}\r\n"),
    ));
    status(&p.final_response()).unwrap_or(0)
}

fn sdp(p: &Peer) -> String {
    let port = p.addr().port() + 2;
    format!("v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
}

fn invite(p: &Peer, number: &str, call: &str) -> String {
    let a = p.addr();
    let body = sdp(p);
    format!(
        "INVITE sip:{number}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bK{call};rport\r\nMax-Forwards: 70\r\nFrom: <sip:0212345678@127.0.0.1>;tag=c{call}\r\nTo: <sip:{number}@127.0.0.1>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:c@{a}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A caller on the trunk waiting in the queue: its To tag (ours) once ringing.
fn waiting_caller(trunk: &Peer, call: &str) -> String {
    trunk.send(&invite(trunk, "120", call));
    let ringing = trunk.response(|c| c == 180 || c == 183);
    tag(&header(&ringing, "To").expect("To"))
}

fn info(from: &Peer, call: &str, from_tag: &str, to_tag: &str, n: u32, digit: char) -> String {
    let a = from.addr();
    format!("INFO sip:120@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bKinfo{n};rport\r\nMax-Forwards: 70\r\nFrom: <sip:0212345678@127.0.0.1>;tag={from_tag}\r\nTo: <sip:120@127.0.0.1>;tag={to_tag}\r\nCall-ID: {call}\r\nCSeq: {n} INFO\r\nContent-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\nSignal={digit}\r\nDuration=160\r\n")
}

#[test]
fn spoofed_update_and_info_with_a_known_call_id_get_481() {
    let e = engine("atk-dialog", "", "");
    let trunk = Peer::new("127.0.0.1", &e);
    let our_tag = waiting_caller(&trunk, "victim-1");
    let attacker = Peer::new(ATTACKER, &e);
    // Random tags; our tag with a made-up From tag; from the trunk's own address too.
    for (n, (f, t)) in [("x1", "y1"), ("x2", our_tag.as_str())]
        .into_iter()
        .enumerate()
    {
        attacker.send(&info(&attacker, "victim-1", f, t, n as u32 + 2, '9'));
        assert_eq!(
            status(&attacker.final_response()),
            Some(481),
            "tags {f}/{t}"
        );
    }
    let a = attacker.addr();
    let update = format!("UPDATE sip:120@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bKupd;rport\r\nMax-Forwards: 70\r\nFrom: <sip:0212345678@127.0.0.1>;tag=evil\r\nTo: <sip:120@127.0.0.1>;tag=evil\r\nCall-ID: victim-1\r\nCSeq: 9 UPDATE\r\nContact: <sip:x@{a}>\r\nContent-Length: 0\r\n\r\n");
    attacker.send(&update);
    assert_eq!(status(&attacker.final_response()), Some(481));
    assert!(e.metric("dasan_security_events_total{event=\"unknown_dialog\"}") >= 3.0);
    // RFC 3261 12.2.2 for a dialog that never existed, and RFC 4475 3.3.8 (mcl01).
    let bye = format!("BYE sip:120@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bKbye;rport\r\nMax-Forwards: 70\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:120@127.0.0.1>;tag=2\r\nCall-ID: never-was\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n");
    attacker.send(&bye);
    assert_eq!(status(&attacker.final_response()), Some(481));
    let mcl = format!("OPTIONS sip:120@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bKmcl;rport\r\nTo: sip:user@127.0.0.1\r\nFrom: sip:other@127.0.0.1;tag=3923942\r\nCall-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf\r\nCSeq: 15932 OPTIONS\r\nContent-Length: 13\r\nMax-Forwards: 60\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nThere's no way to know how many octets are supposed to be here.\r\n");
    attacker.send(&mcl);
    assert_eq!(status(&attacker.final_response()), Some(400));
    // The real caller's own INFO (its tags, its address) still reaches the call.
    trunk.send(&info(&trunk, "victim-1", "cvictim-1", &our_tag, 20, '1'));
    assert_eq!(status(&trunk.final_response()), Some(200));
}

#[test]
fn a_replayed_register_from_another_address_does_not_steal_the_agents_calls() {
    let e = engine("atk-replay", "", "");
    let phone = Peer::new("127.0.0.1", &e);
    phone.send(&register(&phone, "1001", "p1", 1, ""));
    let ch = header(&phone.final_response(), "WWW-Authenticate").expect("challenge");
    let auth = authorization(&ch, "1001", "test-pw", "REGISTER", "sip:127.0.0.1", "cn").unwrap();
    let signed = register(
        &phone,
        "1001",
        "p2",
        2,
        &format!("Authorization: {auth}\r\n"),
    );
    phone.send(&signed);
    assert_eq!(status(&phone.final_response()), Some(200));
    // The attacker captured those bytes: it replays them from its own address with its
    // own Contact (and a new branch, or it would only get the cached answer).
    let attacker = Peer::new(ATTACKER, &e);
    let stolen = signed
        .replace(&phone.addr().to_string(), &attacker.addr().to_string())
        .replace("z9hG4bKp2", "z9hG4bKevil");
    attacker.send(&stolen);
    let r = attacker.final_response();
    assert_eq!(status(&r), Some(401), "{r}");
    // From the phone's own address (another port), the same nonce and count: a replay.
    let same_host = Peer::new("127.0.0.1", &e);
    let again = signed
        .replace(&phone.addr().to_string(), &same_host.addr().to_string())
        .replace("z9hG4bKp2", "z9hG4bKagain");
    same_host.send(&again);
    let r = same_host.final_response();
    assert_eq!(status(&r), Some(401), "{r}");
    assert!(r.contains("stale=true"), "{r}");
    assert!(e.metric("dasan_security_events_total{event=\"auth_replayed\"}") >= 1.0);
    // A call for the agent still rings the agent's phone, not the attacker.
    let trunk = Peer::new("127.0.0.1", &e);
    trunk.send(&invite(&trunk, "120", "after-replay"));
    let rung = phone.recv_for(Duration::from_secs(3));
    assert!(
        rung.iter().any(|m| m.starts_with("INVITE ")),
        "the agent's phone rings"
    );
    assert!(
        !attacker
            .recv_for(Duration::from_millis(300))
            .iter()
            .any(|m| m.starts_with("INVITE ")),
        "the attacker never rings"
    );
}

#[test]
fn password_guessing_is_blocked_per_source_and_account_while_agents_still_log_in() {
    let e = engine("atk-brute", "", "");
    let attacker = Peer::new(ATTACKER, &e);
    attacker.send(&register(&attacker, "1002", "g0", 1, ""));
    let ch = header(&attacker.final_response(), "WWW-Authenticate").expect("challenge");
    let mut answers = Vec::new();
    for i in 1..=12u32 {
        let auth = authorization_nc(
            &ch,
            "1002",
            &format!("guess{i}"),
            "REGISTER",
            "sip:127.0.0.1",
            "cn",
            i,
        )
        .unwrap();
        attacker.send(&register(
            &attacker,
            "1002",
            &format!("g{i}"),
            i + 1,
            &format!("Authorization: {auth}\r\n"),
        ));
        answers.push(status(&attacker.final_response()));
    }
    assert!(answers.iter().all(|&s| s == Some(403)), "{answers:?}");
    // The right password from the blocked address is refused without being checked.
    let auth = authorization_nc(
        &ch,
        "1002",
        "test-pw",
        "REGISTER",
        "sip:127.0.0.1",
        "cn",
        13,
    )
    .unwrap();
    attacker.send(&register(
        &attacker,
        "1002",
        "g13",
        14,
        &format!("Authorization: {auth}\r\n"),
    ));
    assert_eq!(status(&attacker.final_response()), Some(403));
    // An account that does not exist gets exactly the same answer.
    let auth = authorization_nc(
        &ch,
        "9999",
        "test-pw",
        "REGISTER",
        "sip:127.0.0.1",
        "cn",
        14,
    )
    .unwrap();
    attacker.send(&register(
        &attacker,
        "9999",
        "g14",
        15,
        &format!("Authorization: {auth}\r\n"),
    ));
    assert_eq!(status(&attacker.final_response()), Some(403));
    let log = e.log();
    let line = format!("auth blocked: source={ATTACKER} account=1002 service=sip-register until=");
    assert!(
        log.lines()
            .any(|l| l.contains(&line) && l.ends_with("scope=source")),
        "a fail2ban-style line:\n{log}"
    );
    assert!(e.metric("dasan_security_events_total{event=\"auth_blocked\"}") >= 1.0);
    assert!(e.metric("dasan_security_events_total{event=\"auth_failed\"}") >= 10.0);
    // Another agent on the agents' LAN logs in as usual.
    let phone = Peer::new("127.0.0.1", &e);
    assert_eq!(register_agent(&phone, "1001", "test-pw"), 200);
}

#[test]
fn refusals_before_authentication_are_sent_once_no_amplification() {
    let e = engine("atk-amp", "", "");
    let victim = Peer::new(ATTACKER, &e);
    let a = victim.addr();
    // A feature-code INVITE never ACKed (the "source" is a spoofed victim): one 407.
    let fc = format!("INVITE sip:*21@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bKamp;rport\r\nMax-Forwards: 70\r\nFrom: <sip:1001@127.0.0.1>;tag=amp\r\nTo: <sip:*21@127.0.0.1>\r\nCall-ID: amp\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@{a}>\r\nContent-Length: 0\r\n\r\n");
    victim.send(&fc);
    // An INVITE to the service number from outside the trunk: one 403.
    victim.send(&invite(&victim, "120", "amp-403"));
    // Timer G would resend at 0.5, 1.5, 3.5 s.
    let got = victim.recv_for(Duration::from_secs(5));
    let codes: Vec<Option<u16>> = got.iter().map(|m| status(m)).collect();
    assert_eq!(
        codes.iter().filter(|c| **c == Some(407)).count(),
        1,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == Some(403)).count(),
        1,
        "{codes:?}"
    );
    assert_eq!(codes.len(), 2, "{codes:?}");
}

#[test]
fn menu_callers_cannot_bypass_max_length() {
    let e = engine("atk-1209", "", "max_length = 3");
    let trunk = Peer::new("127.0.0.1", &e);
    let mut codes = Vec::new();
    for i in 0..6 {
        trunk.send(&invite(&trunk, "1209", &format!("menu-{i}")));
        let r = trunk.response(|c| c == 183 || c == 180 || c >= 300);
        codes.push(status(&r).unwrap_or(0));
    }
    assert_eq!(
        codes.iter().filter(|&&c| c == 503).count(),
        3,
        "three in the menu, three refused: {codes:?}"
    );
    // A direct caller of the same queue is refused too: the menu callers hold its seats.
    trunk.send(&invite(&trunk, "120", "direct"));
    assert_eq!(status(&trunk.final_response()), Some(503));
}

#[test]
fn a_source_cannot_hold_unbounded_transactions() {
    let e = engine("atk-tx", "max_transactions_per_source = 50", "");
    let attacker = Peer::new(ATTACKER, &e);
    // Unauthenticated floods keep no state at all (OPTIONS, challenges): all answered.
    let a = attacker.addr();
    for n in 0..80 {
        attacker.send(&format!("OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bKflood{n};rport\r\nMax-Forwards: 70\r\nFrom: <sip:x@127.0.0.1>;tag={n}\r\nTo: <sip:127.0.0.1>\r\nCall-ID: flood-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"));
    }
    let got = attacker.recv_for(Duration::from_secs(2));
    assert_eq!(got.iter().filter(|m| status(m) == Some(200)).count(), 80);
    // What keeps state (here an agent's own authenticated REGISTERs, one nonce, growing
    // counts: a stolen phone or a runaway one) is bounded per source address.
    attacker.send(&register(&attacker, "1004", "tx0", 1, ""));
    let ch = header(&attacker.final_response(), "WWW-Authenticate").expect("challenge");
    for n in 1..=80u32 {
        let auth =
            authorization_nc(&ch, "1004", "test-pw", "REGISTER", "sip:127.0.0.1", "cn", n).unwrap();
        attacker.send(&register(
            &attacker,
            "1004",
            &format!("tx{n}"),
            n + 1,
            &format!("Authorization: {auth}\r\n"),
        ));
    }
    let got = attacker.recv_for(Duration::from_secs(2));
    let ok = got.iter().filter(|m| status(m) == Some(200)).count();
    let refused = got.iter().filter(|m| status(m) == Some(503)).count();
    assert_eq!((ok, refused), (50, 30));
    assert!(e.metric("dasan_security_events_total{event=\"transaction_limit\"}") >= 30.0);
    // The trunk is not limited by it, and agents elsewhere still register.
    let phone = Peer::new("127.0.0.1", &e);
    assert_eq!(register_agent(&phone, "1001", "test-pw"), 200);
    let trunk = Peer::new("127.0.0.1", &e);
    trunk.send(&invite(&trunk, "120", "tx-call"));
    assert!(status(&trunk.response(|c| c >= 180)).is_some_and(|c| c < 300));
}

fn open_fds(e: &EngineProc) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", e.child.id()))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Whether the server has closed `s` (EOF or reset) within `d`.
fn closed_within(s: &mut TcpStream, d: Duration) -> bool {
    let _ = s.set_read_timeout(Some(d));
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

/// A TCP connection from a chosen loopback address.
fn connect_from(ip: &str, to: SocketAddr) -> Option<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    let from: SocketAddr = format!("{ip}:0").parse().ok()?;
    s.bind(&from.into()).ok()?;
    s.connect_timeout(&to.into(), Duration::from_secs(2)).ok()?;
    Some(s.into())
}

#[test]
fn slow_tcp_peers_are_bounded_and_cut_off() {
    let e = engine(
        "atk-tcp",
        "tcp_idle_s = 3\nmax_connections_per_source = 40",
        "",
    );
    let fds_before = open_fds(&e);
    let engine_addr = SocketAddr::from(([127, 0, 0, 1], e.sip_port));
    let promise = "INVITE sip:120@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.66:5060;branch=z9hG4bKslow\r\nContent-Length: 60000\r\n\r\npartial";
    let mut held = Vec::new();
    for _ in 0..60 {
        let Some(mut s) = connect_from(ATTACKER, engine_addr) else {
            continue;
        };
        let _ = s.write_all(promise.as_bytes());
        held.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    // Beyond 40 from this address, connections are closed at once.
    let refused = held
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_millis(5)))
        .filter(|&c| c)
        .count();
    assert_eq!(refused, 20, "connections over the per-source limit");
    assert!(e.metric("dasan_security_events_total{event=\"tcp_connection_refused\"}") >= 20.0);
    // A legitimate phone from another address is served meanwhile, over TCP.
    let mut phone = TcpStream::connect(engine_addr).expect("connect");
    let local = phone.local_addr().expect("addr");
    let reg = format!("REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKtcpreg\r\nMax-Forwards: 70\r\nFrom: <sip:1001@127.0.0.1>;tag=t\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: tcp-reg\r\nCSeq: 1 REGISTER\r\nContact: <sip:1001@{local};transport=tcp>\r\nContent-Length: 0\r\n\r\n");
    phone.write_all(reg.as_bytes()).expect("write");
    let _ = phone.set_read_timeout(Some(Duration::from_secs(3)));
    let mut b = [0u8; 4096];
    let n = phone.read(&mut b).unwrap_or(0);
    assert_eq!(status(&String::from_utf8_lossy(&b[..n])), Some(401));
    // Within the idle time (3 s, plus slack), every slow connection is closed.
    let start = Instant::now();
    for s in held.iter_mut() {
        assert!(
            closed_within(s, Duration::from_secs(5)),
            "a promise never kept is cut off"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(7));
    assert!(e.metric("dasan_security_events_total{event=\"tcp_idle_closed\"}") >= 40.0);
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        open_fds(&e) <= fds_before + 3,
        "descriptors given back: {} then {}",
        fds_before,
        open_fds(&e)
    );
    // The phone's connection, which sent a complete message, stays up.
    phone
        .write_all(b"\r\n\r\n")
        .expect("the phone's connection is still open");
    let n = phone.read(&mut b).unwrap_or(0);
    assert!(n > 0, "pong");
}

/// Toll fraud: whoever holds an agent's phone transfers a caller abroad. The engine
/// refuses (403), dials nothing, and audits the attempt; a domestic department number
/// still works.
#[test]
fn an_agent_cannot_transfer_callers_abroad() {
    let outbound = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let out_port = outbound.local_addr().expect("addr").port();
    let e = engine_with(
        "atk-toll",
        "",
        "",
        &format!("\n[outbound]\ntrunk = \"127.0.0.1:{out_port}\"\n"),
    );
    let phone = Peer::new("127.0.0.1", &e);
    assert_eq!(register_agent(&phone, "1001", "test-pw"), 200);
    let trunk = Peer::new("127.0.0.1", &e);
    trunk.send(&invite(&trunk, "120", "toll-1"));
    let offer = phone
        .recv_for(Duration::from_secs(3))
        .into_iter()
        .find(|m| m.starts_with("INVITE "))
        .expect("the agent's phone rings");
    // The phone answers.
    let via: Vec<String> = offer
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("via:"))
        .map(str::to_string)
        .collect();
    let from = header(&offer, "From").expect("From");
    let to = header(&offer, "To").expect("To");
    let call_id = header(&offer, "Call-ID").expect("Call-ID");
    let cseq = header(&offer, "CSeq").expect("CSeq");
    let body = sdp(&phone);
    let a = phone.addr();
    let ok = format!(
        "SIP/2.0 200 OK\r\n{}\r\nFrom: {from}\r\nTo: {to};tag=agent1\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\nContact: <sip:1001@{a}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        via.join("\r\n"),
        body.len()
    );
    phone.send(&ok);
    let answered = trunk.response(|c| c == 200);
    assert!(answered.contains("toll-1"));
    std::thread::sleep(Duration::from_millis(200));
    let refer = |target: &str, n: u32| {
        format!("REFER sip:dasan@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bKrefer{n};rport\r\nMax-Forwards: 70\r\nFrom: {to};tag=agent1\r\nTo: {from}\r\nCall-ID: {call_id}\r\nCSeq: {n} REFER\r\nContact: <sip:1001@{a}>\r\nRefer-To: <sip:{target}@127.0.0.1>\r\nContent-Length: 0\r\n\r\n")
    };
    for (n, target) in ["00441632960001", "0601234567"].iter().enumerate() {
        phone.send(&refer(target, 10 + n as u32));
        assert_eq!(status(&phone.final_response()), Some(403), "{target}");
    }
    let _ = outbound.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 4096];
    assert!(
        outbound.recv_from(&mut buf).is_err(),
        "nothing was dialled out"
    );
    assert!(e.metric("dasan_security_events_total{event=\"outbound_denied\"}") >= 2.0);
    // A department's domestic number goes out through the trunk.
    phone.send(&refer("0221330000", 20));
    assert_eq!(status(&phone.response(|c| c > 200)), Some(202));
    let _ = outbound.set_read_timeout(Some(Duration::from_secs(3)));
    let (n, _) = outbound.recv_from(&mut buf).expect("dialled out");
    let dial = String::from_utf8_lossy(&buf[..n]);
    assert!(dial.starts_with("INVITE sip:0221330000@"), "{dial}");
}
