//! The engine under virtual time: no sockets, no sleeps. Each test drives the sans-IO
//! engine with messages and instants and inspects what it wants to send.

use super::*;
use crate::config::Config;
use crate::records::RecordEvent;
use crate::registrar::digest::authorization;
use crate::sip::message::{Message, NameAddr};

const CFG: &str = r#"
[[trunk]]
name = "carrier"
sources = ["10.0.0.0/8"]
[[route]]
number = "120"
queue = "general"
[queue.general]
skill = "ko"
ring_timeout_s = 15
max_wait_s = 60
max_length = 2
[[agents]]
ids = "1001-1002"
password = "pw"
skills = ["ko"]
"#;

struct Harness {
    e: Engine,
    now: Instant,
    trunk: Flow,
}

fn trunk() -> Flow {
    Flow::udp("10.1.1.1:5060".parse().unwrap())
}

fn agent_flow(n: u16) -> Flow {
    Flow::udp(format!("192.0.2.{n}:5070").parse().unwrap())
}

impl Harness {
    /// Signalling only: SDP relayed end to end (these tests' SDP is a placeholder).
    fn new() -> Harness {
        Harness::with(&format!("{CFG}\n[media]\nanchor = false\n"))
    }

    fn with(config: &str) -> Harness {
        Harness::seeded(config, 0x120)
    }

    fn seeded(config: &str, seed: u64) -> Harness {
        let cfg = Config::parse(config, "test").unwrap();
        let now = Instant::now();
        let e = Engine::new(
            &cfg,
            Arc::new(Metrics::new().unwrap()),
            now,
            1_700_000_000,
            crate::sip::build::Ids::seeded(seed),
        );
        Harness {
            e,
            now,
            trunk: trunk(),
        }
    }

    fn input(&mut self, flow: Flow, raw: &str) {
        self.e.handle_message(self.now, flow, raw.as_bytes());
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.e.poll_timeout() {
            if t > end {
                break;
            }
            self.now = t;
            self.e.handle_timeout(t);
        }
        self.now = end;
    }

    fn out(&mut self) -> Vec<(Flow, Message)> {
        let mut v = Vec::new();
        while let Some(t) = self.e.poll_transmit() {
            match Message::parse(&t.data) {
                Ok(m) => v.push((t.flow, m)),
                Err(e) => panic!(
                    "engine sent invalid SIP ({e}):\n{}",
                    String::from_utf8_lossy(&t.data)
                ),
            }
        }
        v
    }

    fn register(&mut self, id: &str, n: u16) {
        let reg = |auth: &str| {
            format!(
                "REGISTER sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.{n}:5070;branch=z9hG4bKr{n}{}\r\nFrom: <sip:{id}@dasan>;tag=r\r\nTo: <sip:{id}@dasan>\r\nCall-ID: reg-{id}\r\nCSeq: {} REGISTER\r\nContact: <sip:{id}@192.0.2.{n}:5070>\r\nExpires: 120\r\n{auth}Content-Length: 0\r\n\r\n",
                auth.len(),
                if auth.is_empty() { 1 } else { 2 }
            )
        };
        self.input(agent_flow(n), &reg(""));
        let out = self.out();
        let ch = out[0].1.header("WWW-Authenticate").unwrap();
        let auth = format!(
            "Authorization: {}\r\n",
            authorization(ch, id, "pw", "REGISTER", "sip:dasan", "cn").unwrap()
        );
        self.input(agent_flow(n), &reg(&auth));
        let out = self.out();
        assert_eq!(out[0].1.status(), Some(200), "{:?}", out[0].1);
    }

    fn invite(&mut self, call: &str) -> Vec<(Flow, Message)> {
        let raw = format!(
            "INVITE sip:120@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK{call}\r\nMax-Forwards: 70\r\nFrom: <sip:0212345678@carrier>;tag=c{call}\r\nTo: <sip:120@dasan>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:c@10.1.1.1:5060>\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"
        );
        let flow = self.trunk;
        self.input(flow, &raw);
        self.out()
    }
}

fn codes(out: &[(Flow, Message)]) -> Vec<u16> {
    out.iter().filter_map(|(_, m)| m.status()).collect()
}

fn requests<'a>(out: &'a [(Flow, Message)], method: &Method) -> Vec<&'a (Flow, Message)> {
    out.iter()
        .filter(|(_, m)| m.method() == Some(method))
        .collect()
}

/// The agent's response to a request the engine sent it.
fn answer(req: &Message, code: u16, tag: &str, sdp: bool) -> String {
    let mut r = crate::sip::build::response(req, code, None, Some(tag));
    if code == 200 || code == 180 {
        r.set_header("Contact", "<sip:agent@192.0.2.1:5070>");
    }
    if sdp {
        r.set_header("Content-Type", "application/sdp");
        r.body = bytes::Bytes::from_static(b"v=1\n");
    }
    String::from_utf8(r.to_bytes().to_vec()).unwrap()
}

/// Every byte the engine sends for a registration and a call, given a seed.
fn call_bytes(seed: u64) -> Vec<(Flow, Vec<u8>)> {
    let mut h = Harness::seeded(&format!("{CFG}\n[media]\nanchor = false\n"), seed);
    h.register("1001", 1);
    let out = h.invite("call1");
    let (aflow, ainv) = requests(&out, &Method::Invite)[0].clone();
    h.input(aflow, &answer(&ainv, 200, "a1", true));
    h.advance(Duration::from_secs(40));
    let mut all: Vec<(Flow, Vec<u8>)> = out
        .into_iter()
        .map(|(f, m)| (f, m.to_bytes().to_vec()))
        .collect();
    while let Some(t) = h.e.poll_transmit() {
        all.push((t.flow, t.data.to_vec()));
    }
    all
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_other_tags() {
    let a = call_bytes(7);
    assert!(a.len() >= 4, "{}", a.len());
    assert_eq!(a, call_bytes(7), "a seeded engine replays byte for byte");
    assert_ne!(
        a,
        call_bytes(8),
        "tags, branches and Call-IDs come from the seed"
    );
}

#[test]
fn full_call_path_in_virtual_time() {
    let mut h = Harness::new();
    h.register("1001", 1);
    let out = h.invite("call1");
    assert_eq!(codes(&out), vec![100]);
    let inv = requests(&out, &Method::Invite);
    assert_eq!(inv.len(), 1, "offered to the agent at once");
    let (aflow, ainv) = inv[0].clone();
    assert_eq!(aflow, agent_flow(1));
    assert_ne!(ainv.call_id(), "call1", "own Call-ID on the agent leg");
    assert_eq!(&ainv.body[..], b"v=0\n", "caller SDP relayed unchanged");

    h.input(aflow, &answer(&ainv, 180, "a1", false));
    assert_eq!(codes(&h.out()), vec![180]);
    h.input(aflow, &answer(&ainv, 200, "a1", true));
    let out = h.out();
    let ok = out
        .iter()
        .find(|(_, m)| m.status() == Some(200))
        .expect("200 to caller");
    assert_eq!(&ok.1.body[..], b"v=1\n", "agent SDP relayed to the caller");
    assert_eq!(requests(&out, &Method::Ack).len(), 1, "agent 2xx ACKed");
    let caller_tag = ok.1.to_tag().unwrap();

    // No ACK from the caller yet: the 200 is retransmitted with T1 doubling.
    h.advance(Duration::from_millis(600));
    assert_eq!(codes(&h.out()), vec![200]);
    let ack = format!("ACK sip:120@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKack1\r\nFrom: <sip:0212345678@carrier>;tag=ccall1\r\nTo: <sip:120@dasan>;tag={caller_tag}\r\nCall-ID: call1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n");
    let t = h.trunk;
    h.input(t, &ack);
    h.advance(Duration::from_secs(10));
    assert!(codes(&h.out()).is_empty(), "ACK stops 2xx retransmission");
    assert_eq!(h.e.agent_states()[0].1, "on-call");

    let bye = format!("BYE sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKbye1\r\nFrom: <sip:0212345678@carrier>;tag=ccall1\r\nTo: <sip:120@dasan>;tag={caller_tag}\r\nCall-ID: call1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n");
    h.input(t, &bye);
    let out = h.out();
    assert_eq!(codes(&out), vec![200]);
    let abye = requests(&out, &Method::Bye);
    assert_eq!(abye.len(), 1, "BYE relayed to the agent");
    assert_eq!(abye[0].1.call_id(), ainv.call_id());
    assert_eq!(h.e.agent_states()[0].1, "ready");
    assert_eq!(h.e.active_calls(), 0);
    // Every transaction is reclaimed after its terminal timer.
    h.input(aflow, &answer(&abye[0].1, 200, "a1", false));
    h.advance(Duration::from_secs(40));
    assert_eq!(h.e.transactions(), 0);
}

#[test]
fn ring_timeout_cancels_and_marks_rona_then_next_agent() {
    let mut h = Harness::new();
    h.register("1001", 1);
    h.advance(Duration::from_millis(10));
    h.register("1002", 2);
    let out = h.invite("call2");
    let (aflow, ainv) = requests(&out, &Method::Invite)[0].clone();
    assert_eq!(aflow, agent_flow(1), "longest idle first");
    h.input(aflow, &answer(&ainv, 180, "a1", false));
    h.out();
    h.advance(Duration::from_millis(14_900));
    assert!(requests(&h.out(), &Method::Cancel).is_empty());
    h.advance(Duration::from_millis(200));
    let out = h.out();
    assert_eq!(
        requests(&out, &Method::Cancel).len(),
        1,
        "CANCEL at the ring timeout"
    );
    let next = requests(&out, &Method::Invite);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].0, agent_flow(2), "offered to the next agent");
    assert_eq!(h.e.agent_states()[0].1, "not-ready");
}

#[test]
fn max_wait_then_480_and_queue_full_503() {
    let mut h = Harness::new();
    let out = h.invite("w1");
    assert_eq!(codes(&out), vec![100, 180], "waits in the queue, ringing");
    h.invite("w2");
    let out = h.invite("w3");
    assert_eq!(codes(&out), vec![503], "max_length 2");
    assert_eq!(out[0].1.header("Retry-After"), Some("5"));
    // Unacknowledged, the 503 is retransmitted (Timer G); the ACK stops it.
    h.advance(Duration::from_millis(500));
    assert_eq!(codes(&h.out()), vec![503]);
    let tag = out[0].1.to_tag().unwrap();
    let t = h.trunk;
    h.input(t, &format!("ACK sip:120@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKw3\r\nFrom: <sip:0212345678@carrier>;tag=cw3\r\nTo: <sip:120@dasan>;tag={tag}\r\nCall-ID: w3\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"));
    h.advance(Duration::from_secs(58));
    assert!(codes(&h.out()).is_empty());
    h.advance(Duration::from_secs(2));
    let out = h.out();
    let mut timed_out: Vec<&str> = out
        .iter()
        .filter(|(_, m)| m.status() == Some(480))
        .map(|(_, m)| m.call_id())
        .collect();
    timed_out.sort();
    timed_out.dedup();
    assert_eq!(timed_out, vec!["w1", "w2"]);
    assert_eq!(h.e.active_calls(), 0);
}

#[test]
fn caller_cancel_while_ringing_an_agent() {
    let mut h = Harness::new();
    h.register("1001", 1);
    let out = h.invite("c1");
    let (aflow, ainv) = requests(&out, &Method::Invite)[0].clone();
    h.input(aflow, &answer(&ainv, 180, "a1", false));
    h.out();
    let t = h.trunk;
    h.input(t, "CANCEL sip:120@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKc1\r\nFrom: <sip:0212345678@carrier>;tag=cc1\r\nTo: <sip:120@dasan>\r\nCall-ID: c1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n");
    let out = h.out();
    assert_eq!(codes(&out), vec![200, 487]);
    assert_eq!(
        requests(&out, &Method::Cancel).len(),
        1,
        "agent leg cancelled"
    );
    assert_eq!(
        h.e.agent_states()[0].1,
        "ready",
        "a withdrawn offer is not RONA"
    );
}

#[test]
fn untrusted_source_and_unknown_number() {
    let mut h = Harness::new();
    h.trunk = Flow::udp("198.51.100.7:5060".parse().unwrap());
    assert_eq!(codes(&h.invite("u1")), vec![403]);
    h.trunk = trunk();
    let raw = "INVITE sip:999@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKn\r\nFrom: <sip:a@b>;tag=x\r\nTo: <sip:999@dasan>\r\nCall-ID: n1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    h.input(trunk(), raw);
    assert_eq!(codes(&h.out()), vec![404]);
}

#[test]
fn registration_expires_into_logged_out() {
    let mut h = Harness::new();
    h.register("1001", 1);
    assert_eq!(h.e.agent_states()[0].1, "ready");
    h.advance(Duration::from_secs(121));
    assert_eq!(h.e.agent_states()[0].1, "logged-out");
}

/// RFC 4475-style messages: none may panic; the answerable ones get the right code.
#[test]
fn torture_messages() {
    let hdrs = "Via: SIP/2.0/UDP 10.1.1.1;branch=z9hG4bKt\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:120@dasan>\r\nCall-ID: t\r\nMax-Forwards: 70\r\n";
    let cases: Vec<(String, Option<u16>)> = vec![
        (format!("OPTIONS sip:dasan SIP/2.0\r\n{hdrs}CSeq: 1 OPTIONS\r\n\r\n"), Some(200)),
        (format!("OPTIONS sip:dasan SIP/7.0\r\n{hdrs}CSeq: 1 OPTIONS\r\n\r\n"), Some(505)),
        (format!("NEWMETHOD sip:dasan SIP/2.0\r\n{hdrs}CSeq: 1 NEWMETHOD\r\n\r\n"), Some(501)),
        (format!("INVITE sip:dasan SIP/2.0\r\n{hdrs}CSeq: 1 OPTIONS\r\n\r\n"), Some(400)),
        (format!("INVITE sip:dasan SIP/2.0\r\n{hdrs}CSeq: 1 INVITE\r\nContent-Length: -999\r\n\r\n"), Some(400)),
        (format!("INVITE sip:dasan SIP/2.0\r\n{hdrs}CSeq: 1 INVITE\r\nContent-Length: 9999\r\n\r\nv=0"), Some(400)),
        (format!("INVITE sip:user@dasan; lr SIP/2.0\r\n{hdrs}CSeq: 1 INVITE\r\n\r\n"), Some(400)),
        (format!("INVITE nobodyknowsthisscheme:opaque SIP/2.0\r\n{hdrs}CSeq: 1 INVITE\r\n\r\n"), Some(416)),
        (format!("OPTIONS sip:dasan SIP/2.0\r\n{hdrs}CSeq: 1 OPTIONS\r\nMax-Forwards: 0\r\n\r\n"), Some(200)),
        (format!("BYE sip:dasan SIP/2.0\r\n{hdrs}CSeq: 1 BYE\r\n\r\n"), Some(481)),
        (format!("SUBSCRIBE sip:dasan SIP/2.0\r\n{hdrs}CSeq: 1 SUBSCRIBE\r\n\r\n"), Some(405)),
        (format!("OPTIONS sip:dasan SIP/2.0\r\n{hdrs}CSeq: 1 OPTIONS\r\nBroken header line\r\n\r\n"), Some(400)),
        ("OPTIONS sip:dasan SIP/2.0\r\nFrom: <sip:a@b>\r\n\r\n".into(), None),
        ("SIP/2.0 4294967301 Huge\r\n\r\n".into(), None),
        ("\r\n\r\n".into(), None),
        ("\u{0}\u{1}garbage".into(), None),
        ("INVITE sip:120@dasan SIP/2.0\r\nv: SIP/2.0/UDP [::1]:5060;branch=z9hG4bKv6;rport\r\ni: v6\r\nf: <sip:a@b>;tag=1\r\nt: <tel:120>\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n".into(), Some(100)),
        // RFC 4475 3.3.8 (mcl01): two Content-Length values that disagree.
        ("OPTIONS sip:user@example.com SIP/2.0\r\nVia: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423\r\nTo: sip:user@example.com\r\nFrom: sip:other@example.net;tag=3923942\r\nCall-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf\r\nCSeq: 15932 OPTIONS\r\nContent-Length: 13\r\nMax-Forwards: 60\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nThere's no way to know how many octets are supposed to be here.\r\n".into(), Some(400)),
        // RFC 4475 3.3.11-3.3.13 (cparam01, cparam02, regescrt): well-formed REGISTERs for
        // an address the registrar does not serve still get an answer.
        ("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw\r\nMax-Forwards: 70\r\nFrom: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe\r\nTo: sip:watson@example.com\r\nCall-ID: cparam01.70710@saturn.example.com\r\nCSeq: 2 REGISTER\r\nContact: sip:+19725552222@gw1.example.net;unknownparam\r\nl: 0\r\n\r\n".into(), Some(401)),
        ("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw\r\nMax-Forwards: 70\r\nFrom: sip:watson@example.com;tag=838293\r\nTo: sip:watson@example.com\r\nCall-ID: cparam02.70710@saturn.example.com\r\nCSeq: 3 REGISTER\r\nContact: <sip:+19725552222@gw1.example.net;unknownparam>\r\nl: 0\r\n\r\n".into(), Some(401)),
        ("REGISTER sip:example.com SIP/2.0\r\nTo: sip:user@example.com\r\nFrom: sip:user@example.com;tag=8\r\nMax-Forwards: 70\r\nVia: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw\r\nCall-ID: regescrt.k345d6@example.net\r\nCSeq: 1 REGISTER\r\nContact: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>\r\nl: 0\r\n\r\n".into(), Some(401)),
    ];
    for (raw, want) in cases {
        let mut h = Harness::new();
        h.input(trunk(), &raw);
        let got = codes(&h.out()).first().copied();
        assert_eq!(got, want, "for message:\n{raw}");
    }
}

/// Random corruptions of valid messages never panic the engine (bounded, seeded).
#[test]
fn mutated_messages_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x120);
    let seeds = [
        "INVITE sip:120@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKm;rport\r\nFrom: \"A\" <sip:0212345678@carrier>;tag=c\r\nTo: <sip:120@dasan>\r\nCall-ID: m\r\nCSeq: 1 INVITE\r\nContact: <sip:c@10.1.1.1>\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n",
        "REGISTER sip:dasan SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKr\r\nFrom: <sip:1001@dasan>;tag=r\r\nTo: <sip:1001@dasan>\r\nCall-ID: r\r\nCSeq: 1 REGISTER\r\nContact: <sip:1001@192.0.2.1:5070>;expires=60, *\r\nAuthorization: Digest username=\"1001\", nonce=\"a.b\", response=\"00\"\r\nContent-Length: 0\r\n\r\n",
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    ];
    let mut h = Harness::new();
    h.register("1001", 1);
    for i in 0..20_000 {
        let mut b = seeds[i % seeds.len()].as_bytes().to_vec();
        for _ in 0..rng.gen_range(1..6) {
            if b.is_empty() {
                break;
            }
            let pos = rng.gen_range(0..b.len());
            match rng.gen_range(0..4) {
                0 => b[pos] = rng.gen(),
                1 => {
                    b.remove(pos);
                }
                2 => {
                    let alphabet = b":;<>\"\r\n ,=";
                    b.insert(pos, alphabet[rng.gen_range(0..alphabet.len())])
                }
                _ => b.truncate(pos),
            }
        }
        h.e.handle_message(h.now, trunk(), &b);
        // A 400 echoes the peer's broken headers as RFC 3261 8.2.6 asks, so the output is
        // drained, not re-parsed.
        while h.e.poll_transmit().is_some() {}
    }
    h.advance(Duration::from_secs(400));
    while h.e.poll_transmit().is_some() {}
    // Whatever the garbage started (calls from INVITEs that still parsed, transactions),
    // the timers end it: nothing is left over and no agent is stuck mid-offer.
    assert_eq!(h.e.transactions(), 0, "transactions left over");
    assert_eq!(h.e.active_calls(), 0, "calls left over");
    assert!(h.e.dialogs.is_empty(), "dialogs left over");
    for (agent, state) in h.e.agent_states() {
        assert!(
            matches!(state, "ready" | "logged-out" | "not-ready"),
            "agent {agent} stuck in {state}"
        );
    }
}

#[test]
fn agent_never_answers_anything_then_timer_b_frees_it() {
    let mut h = Harness::new();
    h.register("1001", 1);
    let out = h.invite("nb");
    assert_eq!(requests(&out, &Method::Invite).len(), 1);
    // No provisional at all: Timer A retransmits, the ring timeout gives up without a
    // CANCEL (RFC 3261 9.1), and the agent is RONA.
    h.advance(Duration::from_millis(600));
    assert_eq!(
        requests(&h.out(), &Method::Invite).len(),
        1,
        "Timer A retransmission"
    );
    h.advance(Duration::from_secs(15));
    let out = h.out();
    assert!(requests(&out, &Method::Cancel).is_empty());
    assert_eq!(h.e.agent_states()[0].1, "not-ready");
    let _ = NameAddr::parse("<sip:x@y>");
}

#[test]
fn responses_follow_rport_or_via_port() {
    let mut h = Harness::new();
    let src = Flow::udp("10.1.1.1:40000".parse().unwrap());
    let opt = |rport: &str| {
        format!("OPTIONS sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5099;branch=z9hG4bKo{}{rport}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:dasan>\r\nCall-ID: o{}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", rport.len(), rport.len())
    };
    h.input(src, &opt(";rport"));
    let out = h.out();
    assert_eq!(
        out[0].0.remote.port(),
        40000,
        "RFC 3581: back to the source port"
    );
    let via = out[0].1.top_via().unwrap();
    assert_eq!(via.param("rport"), Some("40000"));
    assert_eq!(via.param("received"), Some("10.1.1.1"));
    h.input(src, &opt(""));
    assert_eq!(
        h.out()[0].0.remote.port(),
        5099,
        "without rport: the Via port"
    );
}

#[test]
fn rfc2543_peer_without_branch_is_matched() {
    let mut h = Harness::new();
    let inv = "INVITE sip:120@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060\r\nFrom: <sip:0212345678@carrier>;tag=old\r\nTo: <sip:120@dasan>\r\nCall-ID: old2543\r\nCSeq: 5 INVITE\r\nContent-Length: 0\r\n\r\n";
    h.input(trunk(), inv);
    assert_eq!(codes(&h.out()), vec![100, 180]);
    h.input(trunk(), inv);
    assert_eq!(
        codes(&h.out()),
        vec![180],
        "retransmission matched: last provisional resent"
    );
    let cancel = inv
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("5 INVITE", "5 CANCEL");
    h.input(trunk(), &cancel);
    assert_eq!(codes(&h.out()), vec![200, 487], "CANCEL matched the INVITE");
}

#[test]
fn require_100rel_gets_420_and_record_route_is_echoed() {
    let mut h = Harness::new();
    let base = "INVITE sip:120@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKrq\r\nFrom: <sip:0212345678@carrier>;tag=x\r\nTo: <sip:120@dasan>\r\nCall-ID: rq\r\nCSeq: 1 INVITE\r\n";
    h.input(
        trunk(),
        &format!("{base}Require: 100rel\r\nContent-Length: 0\r\n\r\n"),
    );
    let out = h.out();
    assert_eq!(codes(&out), vec![420]);
    assert_eq!(out[0].1.header("Unsupported"), Some("100rel"));
    let rr = base
        .replace("branch=z9hG4bKrq", "branch=z9hG4bKrr")
        .replace("Call-ID: rq", "Call-ID: rr");
    h.input(
        trunk(),
        &format!("{rr}Record-Route: <sip:proxy.carrier;lr>\r\nContent-Length: 0\r\n\r\n"),
    );
    let out = h.out();
    let ringing = out.iter().find(|(_, m)| m.status() == Some(180)).unwrap();
    assert_eq!(
        ringing.1.header("Record-Route"),
        Some("<sip:proxy.carrier;lr>")
    );
}

#[test]
fn closed_tcp_connection_logs_the_agent_out() {
    let mut h = Harness::new();
    let tcp = Flow {
        transport: crate::sip::Transport::Tcp,
        remote: "192.0.2.9:40000".parse().unwrap(),
        conn: 77,
    };
    let reg = |auth: &str, cseq: u32| {
        format!("REGISTER sip:dasan SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.9:40000;branch=z9hG4bKt{cseq}\r\nFrom: <sip:1001@dasan>;tag=r\r\nTo: <sip:1001@dasan>\r\nCall-ID: tcpreg\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:1001@192.0.2.9:40000;transport=tcp>\r\n{auth}Content-Length: 0\r\n\r\n")
    };
    h.input(tcp, &reg("", 1));
    let ch = h.out()[0].1.header("WWW-Authenticate").unwrap().to_string();
    let auth = authorization(&ch, "1001", "pw", "REGISTER", "sip:dasan", "tc").unwrap();
    h.input(tcp, &reg(&format!("Authorization: {auth}\r\n"), 2));
    assert_eq!(codes(&h.out()), vec![200]);
    let out = h.invite("overtcp");
    let inv = requests(&out, &Method::Invite);
    assert_eq!(inv[0].0, tcp, "INVITE goes over the agent's own connection");
    h.e.connection_closed(h.now, 77);
    assert_eq!(
        h.e.agent_states()[0].1,
        "offered",
        "a ringing agent keeps its offer"
    );
    h.advance(Duration::from_secs(16));
    h.out();
    assert_eq!(h.e.agent_states()[0].1, "logged-out");
}

const ANCHORED: &str = r#"
[[trunk]]
name = "carrier"
sources = ["10.0.0.0/8"]
[[route]]
number = "120"
queue = "general"
[[route]]
number = "1209"
menu = "languages"
[queue.general]
skill = "ko"
max_length = 2
digits = { "9" = "languages" }
[queue.en]
skill = "en"
record = true
[menu.languages]
timeout_s = 8
retries = 1
fallback = "general"
[[menu.languages.option]]
digit = "1"
prompt = "menu-en"
queue = "en"
[[menu.languages.option]]
digit = "2"
prompt = "menu-zh"
queue = "en"
[[agents]]
ids = "1001-1002"
password = "pw"
skills = ["ko"]
[[agents]]
ids = "1003"
password = "pw"
skills = ["en"]
"#;

fn anchored() -> Harness {
    Harness::with(&format!(
        "{ANCHORED}\n[media]\nrtp_port_min = 30000\nrtp_port_max = 30003\nwebrtc_port_min = 40000\nwebrtc_port_max = 40099\n"
    ))
}

/// An anchored engine (RTP 30000-30099) on `cfg`, with more top-level tables (`tables`,
/// e.g. `[outbound]`) before `[media]`.
fn anchored_with(cfg: &str, tables: &str) -> Harness {
    Harness::with(&format!(
        "{cfg}\n{tables}\n[media]\nrtp_port_min = 30000\nrtp_port_max = 30099\nwebrtc_port_min = 40000\nwebrtc_port_max = 40099\n"
    ))
}

fn anchored_wide() -> Harness {
    Harness::with(&format!(
        "{ANCHORED}\n[media]\nrtp_port_min = 30000\nrtp_port_max = 30099\nwebrtc_port_min = 40000\nwebrtc_port_max = 40099\n"
    ))
}

fn invite_to(h: &mut Harness, number: &str, call: &str, sdp: &str) -> Vec<(Flow, Message)> {
    let raw = format!(
        "INVITE sip:{number}@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK{call}\r\nFrom: <sip:0212345678@carrier>;tag=c{call}\r\nTo: <sip:{number}@dasan>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:c@10.1.1.1:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let t = h.trunk;
    h.input(t, &raw);
    h.out()
}

fn invite_with_sdp(h: &mut Harness, call: &str, sdp: &str) -> Vec<(Flow, Message)> {
    invite_to(h, "120", call, sdp)
}

const PCMU_OFFER: &str = "v=0\r\no=c 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

fn media(h: &mut Harness) -> Vec<MediaCommand> {
    std::iter::from_fn(|| h.e.poll_media()).collect()
}

fn digit(h: &mut Harness, call: u64, d: char, source: crate::media::dtmf::DigitSource) {
    h.e.handle_media_event(
        h.now,
        crate::media::bridge::MediaEvent::Digit {
            call,
            leg: crate::media::bridge::LegId::Caller,
            digit: d,
            source,
        },
    );
}

fn agent_answers_sdp(h: &mut Harness, aflow: Flow, ainv: &Message, sdp: &'static str) {
    let mut ok = crate::sip::build::response(ainv, 200, None, Some("a1"));
    ok.set_header("Contact", "<sip:agent@192.0.2.1:5070>");
    ok.set_header("Content-Type", "application/sdp");
    ok.body = bytes::Bytes::from_static(sdp.as_bytes());
    h.e.handle_message(h.now, aflow, &ok.to_bytes());
}

#[test]
fn anchored_call_gets_183_early_media_then_the_agent_is_attached() {
    use crate::media::sdp::{Codec, Sdp};
    let mut h = anchored();
    h.register("1001", 1);
    let out = invite_with_sdp(&mut h, "an1", PCMU_OFFER);
    assert_eq!(codes(&out), vec![100, 183], "early media at once");
    let early = &out.iter().find(|(_, m)| m.status() == Some(183)).unwrap().1;
    let early_sdp = Sdp::parse(std::str::from_utf8(&early.body).unwrap()).unwrap();
    assert_eq!(early_sdp.audio_target().unwrap().1, 30000);
    let key = h.e.calls.keys().next().copied().unwrap();
    match &media(&mut h)[..] {
        [MediaCommand::Start {
            caller,
            caller_port,
            agent_port,
            music,
            signalling,
            ..
        }] => {
            assert_eq!(caller.codec, Codec::Pcmu);
            assert_eq!(
                *signalling,
                trunk().remote.ip(),
                "the caller's RTP is trusted from where its INVITE came"
            );
            assert_eq!((*caller_port, *agent_port), (30000, 30002));
            assert_eq!(
                *music,
                MusicRef::Ringback,
                "zero-ARS: a ring tone, no voice"
            );
        }
        other => panic!("expected the caller's media to start, got {other:?}"),
    }
    let (aflow, ainv) = requests(&out, &Method::Invite)[0].clone();
    let offer = Sdp::parse(std::str::from_utf8(&ainv.body).unwrap()).unwrap();
    assert_eq!(offer.audio_target().unwrap().1, 30002);
    assert_eq!(
        offer.audio().unwrap().formats,
        vec![0, 8, 111, 101],
        "caller's codec first, then what we transcode"
    );
    // The agent's 180 adds nothing: the caller already hears our ringback.
    h.input(aflow, &answer(&ainv, 180, "a1", false));
    assert!(codes(&h.out()).is_empty());
    agent_answers_sdp(
        &mut h,
        aflow,
        &ainv,
        "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 6000 RTP/AVP 8\r\n",
    );
    let out = h.out();
    let to_caller = out.iter().find(|(_, m)| m.status() == Some(200)).unwrap();
    assert_eq!(
        to_caller.1.body, early.body,
        "the same SDP as in the 183 (RFC 3261 13.2.1)"
    );
    match &media(&mut h)[..] {
        [MediaCommand::Attach {
            agent,
            record,
            signalling,
            ..
        }] => {
            assert_eq!((agent.codec, agent.remote.1), (Codec::Pcma, 6000));
            assert_eq!(*record, None, "recording is off by default");
            assert_eq!(
                *signalling,
                aflow.remote.ip(),
                "where the agent's 200 came from"
            );
        }
        other => panic!("expected the agent to be attached, got {other:?}"),
    }
    // No RTP for the media timeout: the driver reports it, the engine ends both legs.
    h.e.handle_media_event(
        h.now,
        crate::media::bridge::MediaEvent::Timeout { call: key },
    );
    let out = h.out();
    let byes = requests(&out, &Method::Bye);
    assert_eq!(byes.len(), 2, "BYE to both legs");
    assert!(byes.iter().all(|(_, m)| m
        .header("Reason")
        .is_some_and(|r| r.contains("media timeout"))));
    assert_eq!(media(&mut h), vec![MediaCommand::Stop { call: key }]);
    assert_eq!(h.e.anchor.as_ref().unwrap().pool.available(), 2);
}

#[test]
fn nine_while_an_agent_rings_cancels_it_and_the_menu_moves_the_call_to_english() {
    use crate::media::dtmf::DigitSource;
    let mut h = anchored_wide();
    h.register("1001", 1);
    h.register("1003", 3);
    let out = invite_with_sdp(&mut h, "m1", PCMU_OFFER);
    let (aflow, ainv) = requests(&out, &Method::Invite)[0].clone();
    assert_eq!(
        aflow,
        agent_flow(1),
        "zero-ARS: a Korean agent rings at once"
    );
    h.input(aflow, &answer(&ainv, 180, "a1", false));
    h.out();
    let key = h.e.calls.keys().next().copied().unwrap();
    media(&mut h);
    digit(&mut h, key, '9', DigitSource::Rfc4733);
    let out = h.out();
    let cancel = requests(&out, &Method::Cancel);
    assert_eq!(cancel.len(), 1, "the ringing agent is cancelled");
    assert_eq!(cancel[0].1.call_id(), ainv.call_id());
    assert_eq!(h.e.agent_states()[0].1, "ready", "and stays ready");
    assert_eq!(
        media(&mut h),
        vec![MediaCommand::Play {
            call: key,
            prompts: vec!["menu-en".into(), "menu-zh".into()],
            then: MusicRef::Silence
        }]
    );
    // The same key press heard in band too counts once.
    digit(&mut h, key, '9', DigitSource::InBand);
    assert!(media(&mut h).is_empty());
    assert!(h.out().is_empty());
    h.advance(Duration::from_millis(300));
    digit(&mut h, key, '1', DigitSource::Rfc4733);
    let out = h.out();
    let inv = requests(&out, &Method::Invite);
    assert_eq!(inv.len(), 1);
    assert_eq!(inv[0].0, agent_flow(3), "offered to the English speaker");
    assert_eq!(
        media(&mut h),
        vec![MediaCommand::Play {
            call: key,
            prompts: vec![],
            then: MusicRef::Ringback
        }]
    );
    let (aflow, ainv) = inv[0].clone();
    agent_answers_sdp(
        &mut h,
        aflow,
        &ainv,
        "v=0\r\nc=IN IP4 192.0.2.3\r\nm=audio 6000 RTP/AVP 0\r\n",
    );
    h.out();
    match &media(&mut h)[..] {
        [MediaCommand::Attach { record, .. }] => {
            assert_eq!(record.as_deref(), Some(format!("m1-{key}").as_str()));
        }
        other => panic!("expected attach, got {other:?}"),
    }
    // Digits after the answer do nothing.
    digit(&mut h, key, '9', DigitSource::Rfc4733);
    assert!(media(&mut h).is_empty());
}

#[test]
fn the_1209_menu_replays_on_silence_then_falls_back_to_the_korean_queue() {
    let mut h = anchored_wide();
    h.register("1001", 1);
    let out = invite_to(&mut h, "1209", "d1", PCMU_OFFER);
    assert_eq!(codes(&out), vec![100, 183]);
    assert!(
        requests(&out, &Method::Invite).is_empty(),
        "no agent while the menu plays"
    );
    let key = h.e.calls.keys().next().copied().unwrap();
    let cmds = media(&mut h);
    assert!(matches!(
        &cmds[0],
        MediaCommand::Start {
            music: MusicRef::Silence,
            ..
        }
    ));
    assert!(matches!(&cmds[1], MediaCommand::Play { prompts, .. } if prompts.len() == 2));
    let done = |h: &mut Harness| {
        h.e.handle_media_event(
            h.now,
            crate::media::bridge::MediaEvent::PromptsDone { call: key },
        )
    };
    done(&mut h);
    h.advance(Duration::from_secs(7));
    assert!(media(&mut h).is_empty(), "waiting for a digit");
    h.advance(Duration::from_secs(1));
    assert!(
        matches!(&media(&mut h)[..], [MediaCommand::Play { prompts, .. }] if prompts.len() == 2)
    );
    done(&mut h);
    h.advance(Duration::from_secs(8));
    assert_eq!(
        media(&mut h),
        vec![MediaCommand::Play {
            call: key,
            prompts: vec![],
            then: MusicRef::Ringback
        }]
    );
    let out = h.out();
    assert_eq!(
        requests(&out, &Method::Invite)[0].0,
        agent_flow(1),
        "never dropped: the fallback queue's agent rings"
    );
}

#[test]
fn sip_info_dtmf_relay_opens_the_menu_and_hold_is_answered_locally() {
    use crate::media::sdp::{Direction, Sdp};
    let mut h = anchored_wide();
    h.register("1003", 3);
    let out = invite_with_sdp(&mut h, "i1", PCMU_OFFER);
    let tag = out
        .iter()
        .find(|(_, m)| m.status() == Some(183))
        .and_then(|(_, m)| m.to_tag())
        .unwrap();
    let key = h.e.calls.keys().next().copied().unwrap();
    media(&mut h);
    let info = format!("INFO sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKinfo1\r\nFrom: <sip:0212345678@carrier>;tag=ci1\r\nTo: <sip:120@dasan>;tag={tag}\r\nCall-ID: i1\r\nCSeq: 2 INFO\r\nContent-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\nSignal=9\r\nDuration=160\r\n");
    let t = h.trunk;
    h.input(t, &info);
    assert_eq!(codes(&h.out()), vec![200]);
    assert!(
        matches!(&media(&mut h)[..], [MediaCommand::Play { prompts, .. }] if prompts.len() == 2)
    );
    h.advance(Duration::from_millis(300));
    let info1 = info
        .replace("Signal=9", "Signal=1")
        .replace("info1", "info2")
        .replace("2 INFO", "3 INFO");
    h.input(t, &info1);
    let out = h.out();
    let (aflow, ainv) = requests(&out, &Method::Invite)[0].clone();
    agent_answers_sdp(
        &mut h,
        aflow,
        &ainv,
        "v=0\r\nc=IN IP4 192.0.2.3\r\nm=audio 6000 RTP/AVP 0\r\n",
    );
    h.out();
    media(&mut h);
    // The caller puts the call on hold: answered here, never relayed to the agent.
    let hold = PCMU_OFFER.replace("o=c 1 1", "o=c 1 2") + "a=sendonly\r\n";
    let reinvite = format!("INVITE sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKre1\r\nFrom: <sip:0212345678@carrier>;tag=ci1\r\nTo: <sip:120@dasan>;tag={tag}\r\nCall-ID: i1\r\nCSeq: 4 INVITE\r\nContact: <sip:c@10.1.1.1:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{hold}", hold.len());
    h.input(t, &reinvite);
    let out = h.out();
    assert!(requests(&out, &Method::Invite).is_empty(), "not relayed");
    let ok = &out.iter().find(|(_, m)| m.status() == Some(200)).unwrap().1;
    let ans = Sdp::parse(std::str::from_utf8(&ok.body).unwrap()).unwrap();
    assert_eq!(ans.audio().unwrap().direction, Direction::RecvOnly);
    assert_eq!(ans.audio_target().unwrap().1, 30000, "still our port");
    assert!(
        std::str::from_utf8(&ok.body).unwrap().contains(" 2 IN IP4"),
        "version bumped"
    );
    match &media(&mut h)[..] {
        [MediaCommand::Remote {
            send,
            to,
            signalling,
            ..
        }] => {
            assert!(!send, "we stop sending to a caller on hold");
            assert_eq!(to.port(), 4000);
            assert_eq!(
                *signalling,
                trunk().remote.ip(),
                "where the re-INVITE came from"
            );
        }
        other => panic!("expected a remote update, got {other:?}"),
    }
    // An offer without our codec is refused, the call carries on.
    let g729 = "v=0\r\nc=IN IP4 10.1.1.1\r\nm=audio 4000 RTP/AVP 18\r\n";
    let re2 = reinvite
        .replace("re1", "re2")
        .replace("4 INVITE", "5 INVITE")
        .replace(
            &format!("Content-Length: {}\r\n\r\n{hold}", hold.len()),
            &format!("Content-Length: {}\r\n\r\n{g729}", g729.len()),
        );
    h.input(t, &re2);
    assert_eq!(codes(&h.out()), vec![488]);
    assert_eq!(h.e.active_calls(), 1);
    let _ = key;
}

#[test]
fn anchored_refusals_488_and_503() {
    let mut h = anchored();
    let g729 = "v=0\r\nc=IN IP4 10.1.1.1\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    assert_eq!(codes(&invite_with_sdp(&mut h, "g729", g729)), vec![488]);
    // The range carries one call (four ports): the second waiting call finds none.
    assert_eq!(
        codes(&invite_with_sdp(&mut h, "p1", PCMU_OFFER)),
        vec![100, 183]
    );
    let out = invite_with_sdp(&mut h, "p2", PCMU_OFFER);
    assert_eq!(codes(&out), vec![503]);
    assert!(out[0].1.header("Retry-After").is_some());
}

#[test]
fn queue_announces_place_and_expected_wait_when_configured() {
    let cfg = ANCHORED.replace(
        "[queue.en]",
        "announce_position = true\nannounce_wait = true\nannounce_every_s = 30\n[queue.en]",
    );
    let mut h = anchored_with(&cfg, "");
    invite_with_sdp(&mut h, "w1", PCMU_OFFER);
    invite_with_sdp(&mut h, "w2", PCMU_OFFER);
    let second = key_of(&h, "w2");
    media(&mut h);
    h.advance(Duration::from_secs(29));
    assert!(media(&mut h).is_empty(), "nothing before announce_every_s");
    h.advance(Duration::from_secs(1));
    let cmds = media(&mut h);
    // No agent is logged in: the estimate counts one; 2nd in line × 180 s = 6 minutes.
    assert!(
        cmds.contains(&MediaCommand::Play {
            call: second,
            prompts: vec![
                "queue-position-ko".into(),
                "pos-ko-2".into(),
                "queue-ewt-ko".into(),
                "min-ko-6".into()
            ],
            then: MusicRef::Ringback
        }),
        "{cmds:?}"
    );
    assert_eq!(cmds.len(), 2, "each waiting caller hears their own");
}

#[test]
fn records_follow_the_call_and_the_callers_end_waits_for_its_record() {
    use crate::records::{Outcome as R, RecordEvent as E};
    let mut h = Harness::new();
    h.register("1001", 1);
    let out = h.invite("rec1");
    let (aflow, ainv) = requests(&out, &Method::Invite)[0].clone();
    h.input(aflow, &answer(&ainv, 200, "a1", true));
    let out = h.out();
    let tag = out
        .iter()
        .find(|(_, m)| m.status() == Some(200))
        .and_then(|(_, m)| m.to_tag())
        .unwrap();
    let t = h.trunk;
    h.input(t, &format!("ACK sip:120@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKackr\r\nFrom: <sip:0212345678@carrier>;tag=crec1\r\nTo: <sip:120@dasan>;tag={tag}\r\nCall-ID: rec1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"));
    h.advance(Duration::from_secs(3));
    h.out();
    h.input(t, &format!("BYE sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKbyer\r\nFrom: <sip:0212345678@carrier>;tag=crec1\r\nTo: <sip:120@dasan>;tag={tag}\r\nCall-ID: rec1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"));
    let sent: Vec<_> = std::iter::from_fn(|| h.e.poll_transmit()).collect();
    let all: Vec<_> = std::iter::from_fn(|| h.e.poll_record()).collect();
    let emitted = all.len() as u64;
    let events: Vec<_> = all
        .into_iter()
        .filter(|e| !matches!(e, E::AgentState { .. }))
        .collect();
    assert_eq!(events.len(), 4, "{events:?}");
    match &events[0] {
        E::Arrived {
            sip_call_id,
            trunk,
            caller,
            dialled,
            queue,
            ..
        } => assert_eq!(
            (
                sip_call_id.as_str(),
                trunk.as_str(),
                caller.as_str(),
                dialled.as_str(),
                queue.as_str()
            ),
            ("rec1", "carrier", "0212345678", "120", "general")
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(&events[1], E::Offered { agent, .. } if agent == "1001"));
    assert!(matches!(&events[2], E::Answered { agent, .. } if agent == "1001"));
    match &events[3] {
        E::Ended {
            outcome,
            side,
            sip_cause,
            at_ms,
            ..
        } => {
            assert_eq!((*outcome, *side, *sip_cause), (R::Answered, "caller", 200));
            assert_eq!(
                *at_ms,
                1_700_000_000_000 + 3_000,
                "talk time on the engine's clock"
            );
        }
        other => panic!("{other:?}"),
    }
    let ok = sent
        .iter()
        .find(|t| t.data.starts_with(b"SIP/2.0 200"))
        .expect("200 to the BYE");
    assert_eq!(
        ok.durable_after,
        Some(emitted),
        "sent only once the Ended record (the last) is durable"
    );
    let bye = sent
        .iter()
        .find(|t| t.data.starts_with(b"BYE"))
        .expect("BYE to the agent");
    assert_eq!(bye.durable_after, Some(emitted));
}

#[test]
fn routing_step_widens_at_its_time_and_overflow_moves_the_call() {
    let cfg = r#"
[[trunk]]
name = "carrier"
sources = ["10.0.0.0/8"]
[[route]]
number = "120"
queue = "general"
[queue.general]
skill = "ko"
step = [{ after_s = 0, min_proficiency = 4 }, { after_s = 30, min_proficiency = 1 }]
overflow = { after_s = 60, queue = "en" }
[queue.en]
skill = "en"
[[agents]]
ids = "1001"
password = "pw"
skills = ["ko:2"]
[[agents]]
ids = "1002"
password = "pw"
skills = ["en"]
[media]
anchor = false
"#;
    let mut h = Harness::with(cfg);
    h.register("1001", 1);
    let out = h.invite("w1");
    assert!(
        requests(&out, &Method::Invite).is_empty(),
        "only proficiency 4+ at first"
    );
    h.advance(Duration::from_secs(29));
    assert!(requests(&h.out(), &Method::Invite).is_empty());
    h.advance(Duration::from_secs(1));
    let out = h.out();
    let inv = requests(&out, &Method::Invite);
    assert_eq!(inv.len(), 1, "at 30 s the step widens to proficiency 1");
    assert_eq!(inv[0].0, agent_flow(1));
    // The ko agent lets it ring (RONA at 45 s); the call waits on and overflows to en at
    // 60 s, whose agent is ready.
    h.register("1002", 2);
    assert!(
        requests(&h.out(), &Method::Invite).is_empty(),
        "an en agent does not take general calls"
    );
    h.advance(Duration::from_secs(29)); // t = 59 s
    let out = h.out();
    assert_eq!(h.e.agent_states()[0].1, "not-ready", "RONA at 45 s");
    assert!(requests(&out, &Method::Invite)
        .iter()
        .all(|(f, _)| *f != agent_flow(2)));
    h.advance(Duration::from_secs(1)); // t = 60 s
    let out = h.out();
    let inv = requests(&out, &Method::Invite);
    assert_eq!(inv.len(), 1, "overflowed to the en queue at 60 s");
    assert_eq!(inv[0].0, agent_flow(2));
}

/// An answered call in a queue with a survey (10 s), whose agent has just hung up: the
/// harness, the call, and what the engine sent on the agent's BYE.
fn survey_call(id: &str) -> (Harness, CallKey, Vec<(Flow, Message)>) {
    survey_call_with(id, "", "")
}

/// An answered call in a queue with a survey (`queue_extra` added to the queue, `tables`
/// to the config), ended by the agent's BYE.
fn survey_call_with(
    id: &str,
    queue_extra: &str,
    tables: &str,
) -> (Harness, CallKey, Vec<(Flow, Message)>) {
    let cfg = ANCHORED.replace(
        "digits = { \"9\" = \"languages\" }",
        &format!("digits = {{ \"9\" = \"languages\" }}\nsurvey = \"survey-ko\"\nsurvey_timeout_s = 10{queue_extra}"),
    );
    let mut h = Harness::with(&format!(
        "{cfg}\n{tables}\n[media]\nrtp_port_min = 30000\nrtp_port_max = 30099\nwebrtc_port_min = 40000\nwebrtc_port_max = 40099\n"
    ));
    h.register("1001", 1);
    let out = invite_with_sdp(&mut h, id, PCMU_OFFER);
    let (aflow, ainv) = requests(&out, &Method::Invite)[0].clone();
    agent_answers_sdp(
        &mut h,
        aflow,
        &ainv,
        "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 6000 RTP/AVP 0\r\n",
    );
    h.out();
    media(&mut h);
    std::iter::from_fn(|| h.e.poll_record()).for_each(drop);
    let key = h.e.calls.keys().next().copied().unwrap();
    let bye = format!("BYE sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKab{id}\r\nFrom: <sip:1001@dasan>;tag=a1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n", ainv.header("From").unwrap(), ainv.call_id());
    h.input(aflow, &bye);
    let out = h.out();
    (h, key, out)
}

#[test]
fn agent_hangs_up_first_and_the_caller_rates_the_call() {
    use crate::records::RecordEvent as E;
    let (mut h, key, out) = survey_call("s1");
    assert_eq!(codes(&out), vec![200], "the agent's BYE is answered");
    assert!(requests(&out, &Method::Bye).is_empty(), "the caller stays");
    assert_eq!(
        h.e.agent_states()[0].1,
        "ready",
        "the agent is free at once"
    );
    assert_eq!(
        media(&mut h),
        vec![
            MediaCommand::Detach { call: key },
            MediaCommand::Play {
                call: key,
                prompts: vec!["survey-ko".into()],
                then: MusicRef::Silence
            }
        ]
    );
    h.e.handle_media_event(
        h.now,
        crate::media::bridge::MediaEvent::PromptsDone { call: key },
    );
    digit(&mut h, key, '4', crate::media::dtmf::DigitSource::Rfc4733);
    let out = h.out();
    assert_eq!(
        requests(&out, &Method::Bye).len(),
        1,
        "then the caller is released"
    );
    let events: Vec<_> = std::iter::from_fn(|| h.e.poll_record()).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, E::Survey { score: 4, .. })),
        "{events:?}"
    );
    assert!(matches!(&events[0], E::Ended { side: "agent", .. }));
    assert_eq!(h.e.active_calls(), 0);
}

#[test]
fn no_rating_within_the_timeout_releases_the_caller() {
    let (mut h, key, _) = survey_call("s2");
    h.e.handle_media_event(
        h.now,
        crate::media::bridge::MediaEvent::PromptsDone { call: key },
    );
    h.advance(Duration::from_secs(9));
    assert!(requests(&h.out(), &Method::Bye).is_empty());
    h.advance(Duration::from_secs(1));
    assert_eq!(requests(&h.out(), &Method::Bye).len(), 1);
}

#[test]
fn blind_transfer_by_refer_moves_the_caller_to_another_queue() {
    use crate::records::RecordEvent as E;
    let mut h = anchored_wide();
    h.register("1001", 1);
    h.register("1003", 3);
    let out = invite_with_sdp(&mut h, "t1", PCMU_OFFER);
    let (aflow, ainv) = requests(&out, &Method::Invite)[0].clone();
    assert_eq!(aflow, agent_flow(1));
    agent_answers_sdp(
        &mut h,
        aflow,
        &ainv,
        "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 6000 RTP/AVP 0\r\n",
    );
    let out = h.out();
    let caller_ok_count = codes(&out).iter().filter(|c| **c == 200).count();
    assert_eq!(caller_ok_count, 1);
    media(&mut h);
    let key = h.e.calls.keys().next().copied().unwrap();
    let refer = |h: &mut Harness, target: &str, branch: &str, cseq: u32| {
        let raw = format!("REFER sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK{branch}\r\nFrom: <sip:1001@dasan>;tag=a1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} REFER\r\nContact: <sip:1001@192.0.2.1:5070>\r\nRefer-To: <sip:{target}@dasan>\r\nContent-Length: 0\r\n\r\n", ainv.header("From").unwrap(), ainv.call_id());
        h.input(aflow, &raw);
        h.out()
    };
    // Without an outbound trunk an outside number cannot be reached: declined.
    assert_eq!(codes(&refer(&mut h, "0221330000", "rf0", 6)), vec![603]);
    assert_eq!(h.e.agent_states()[0].1, "on-call");
    // To the English queue: 202, NOTIFY 200 sipfrag and BYE to the agent, who is free.
    let out = refer(&mut h, "en", "rf1", 7);
    assert_eq!(codes(&out), vec![202]);
    let notify = requests(&out, &Method::Notify);
    assert_eq!(notify.len(), 1);
    assert_eq!(&notify[0].1.body[..], b"SIP/2.0 200 OK\r\n");
    assert!(requests(&out, &Method::Bye)
        .iter()
        .all(|(f, m)| *f == aflow && m.call_id() == ainv.call_id()));
    assert_eq!(h.e.agent_states()[0].1, "ready");
    // The English agent is offered the call; the caller is not sent a second 200.
    let inv = requests(&out, &Method::Invite);
    assert_eq!(inv.len(), 1, "{:?}", codes(&out));
    assert_eq!(inv[0].0, agent_flow(3));
    let cmds = media(&mut h);
    assert!(cmds.contains(&MediaCommand::Detach { call: key }));
    let (bflow, binv) = inv[0].clone();
    agent_answers_sdp(
        &mut h,
        bflow,
        &binv,
        "v=0\r\nc=IN IP4 192.0.2.3\r\nm=audio 6002 RTP/AVP 0\r\n",
    );
    let out = h.out();
    assert!(
        out.iter()
            .all(|(f, m)| *f != h.trunk || m.status() != Some(200)),
        "no new 200 to the caller"
    );
    assert!(
        matches!(&media(&mut h)[..], [MediaCommand::Attach { agent, .. }] if agent.remote.1 == 6002)
    );
    let events: Vec<_> = std::iter::from_fn(|| h.e.poll_record()).collect();
    assert!(events
        .iter()
        .any(|e| matches!(e, E::Queue { queue, .. } if queue == "en")));
    assert!(events
        .iter()
        .any(|e| matches!(e, E::Answered { agent, .. } if agent == "1003")));
}

#[test]
fn feature_codes_toggle_ready_and_log_out_after_proxy_digest() {
    let mut h = Harness::new();
    h.register("1001", 1);
    let invite = |n: u32, auth: &str| {
        format!("INVITE sip:*21@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKfc{n}\r\nFrom: <sip:1001@dasan>;tag=fc{n}\r\nTo: <sip:*21@dasan>\r\nCall-ID: fc{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@192.0.2.1:5070>\r\n{auth}Content-Length: 0\r\n\r\n")
    };
    h.input(agent_flow(1), &invite(1, ""));
    let out = h.out();
    assert_eq!(codes(&out), vec![407]);
    let ch = out[0].1.header("Proxy-Authenticate").unwrap().to_string();
    // One nonce serves the phone's next requests with growing counts (RFC 7616 3.4.5).
    let auth_nc = |pw: &str, uri: &str, nc: u32| {
        format!(
            "Proxy-Authorization: {}\r\n",
            crate::registrar::digest::authorization_nc(&ch, "1001", pw, "INVITE", uri, "cn", nc)
                .unwrap()
        )
    };
    let auth = |pw: &str, nc: u32| auth_nc(pw, "sip:*21@dasan", nc);
    h.input(agent_flow(1), &invite(2, &auth("wrong", 1)));
    assert_eq!(codes(&h.out()), vec![403]);
    h.input(agent_flow(1), &invite(3, &auth("pw", 1)));
    let out = h.out();
    assert_eq!(codes(&out), vec![603]);
    assert!(
        matches!(&out[0].1.start, crate::sip::StartLine::Response { reason, .. } if reason == "Not Ready")
    );
    assert_eq!(h.e.agent_states()[0].1, "not-ready");
    // The same count again is a replay: a fresh challenge, nothing changes.
    h.input(agent_flow(1), &invite(6, &auth("pw", 1)));
    let out = h.out();
    assert_eq!(codes(&out), vec![407]);
    assert!(out[0]
        .1
        .header("Proxy-Authenticate")
        .unwrap()
        .contains("stale=true"));
    assert_eq!(h.e.agent_states()[0].1, "not-ready");
    h.input(agent_flow(1), &invite(4, &auth("pw", 2)));
    let out = h.out();
    assert!(
        matches!(&out[0].1.start, crate::sip::StartLine::Response { reason, .. } if reason == "Ready")
    );
    assert_eq!(h.e.agent_states()[0].1, "ready");
    let logout =
        invite(5, &auth_nc("pw", "sip:*22@dasan", 3)).replace("*21@dasan SIP", "*22@dasan SIP");
    h.input(agent_flow(1), &logout);
    let out = h.out();
    assert!(
        matches!(&out[0].1.start, crate::sip::StartLine::Response { reason, .. } if reason == "Logged Out")
    );
    assert_eq!(h.e.agent_states()[0].1, "logged-out");
}

#[test]
fn outside_opening_hours_the_caller_hears_why_and_waits_for_a_korean_counsellor() {
    // The harness clock starts at 2023-11-14 22:13 UTC: 07:13 in Seoul.
    let cfg = ANCHORED
        .replace(
            "[queue.en]\nskill = \"en\"",
            "[queue.en]\nskill = \"en\"\nhours = \"09:00-22:00\"\nclosed_prompt = \"closed-en\"\nclosed_fallback = \"general\"\n[queue.zh]\nskill = \"zh\"\nhours = \"09:00-22:00\"",
        )
        .replace(
            "[[route]]\nnumber = \"1209\"",
            "[[route]]\nnumber = \"1201\"\nqueue = \"en\"\n[[route]]\nnumber = \"1202\"\nqueue = \"zh\"\n[[route]]\nnumber = \"1209\"",
        );
    // A Chinese counsellor (never logged in here), or the zh queue would not load.
    let cfg = format!("{cfg}[[agents]]\nids = \"1004\"\npassword = \"pw\"\nskills = [\"zh\"]\n");
    let mut h = anchored_with(&cfg, "");
    h.register("1001", 1);
    h.register("1003", 3);
    let out = invite_to(&mut h, "1201", "h1", PCMU_OFFER);
    let inv = requests(&out, &Method::Invite);
    assert_eq!(inv.len(), 1);
    assert_eq!(
        inv[0].0,
        agent_flow(1),
        "the Korean agent, not the English one"
    );
    let cmds = media(&mut h);
    assert!(cmds.iter().any(|c| matches!(c,
        MediaCommand::Play { prompts, then: MusicRef::Ringback, .. } if prompts == &vec!["closed-en".to_string()])), "{cmds:?}");
    // A closed queue with nowhere to go: 480.
    let out = invite_to(&mut h, "1202", "h2", PCMU_OFFER);
    assert_eq!(codes(&out), vec![480]);
    // Open hours from 09:00 local: two hours later the English agent takes English calls.
    h.advance(Duration::from_secs(2 * 3600));
    h.out();
    h.register("1003", 3); // registrations expired meanwhile
    let out = invite_to(&mut h, "1201", "h3", PCMU_OFFER);
    let inv = requests(&out, &Method::Invite);
    assert_eq!(inv.last().unwrap().0, agent_flow(3));
}

#[test]
fn callback_keeps_the_place_reserves_the_agent_then_dials_the_caller_with_retries() {
    let cfg = ANCHORED.replace(
        "digits = { \"9\" = \"languages\" }",
        "digits = { \"9\" = \"languages\" }\ncallback_digit = \"*\"\ncallback_attempts = 3\ncallback_retry_s = 30",
    );
    let mut h = anchored_with(
        &cfg,
        "[outbound]
trunk = \"10.9.9.9:5060\"",
    );
    // The only agent is on a break when the call comes in.
    h.register("1001", 1);
    h.e.set_agent_state(h.now, "1001", api::StateChange::NotReady("break".into()))
        .unwrap();
    invite_with_sdp(&mut h, "cb1", PCMU_OFFER);
    let key = h.e.calls.keys().next().copied().unwrap();
    media(&mut h);
    digit(&mut h, key, '*', crate::media::dtmf::DigitSource::Rfc4733);
    let out = h.out();
    assert_eq!(codes(&out), vec![480]);
    assert!(
        matches!(&out[0].1.start, crate::sip::StartLine::Response { reason, .. } if reason == "Callback Scheduled")
    );
    assert_eq!(h.e.active_calls(), 0);
    let general = h.e.acd.queue_index("general").unwrap();
    assert_eq!(h.e.acd.waiting(general), 1, "the place in line is kept");
    let trunk = Flow::udp("10.9.9.9:5060".parse().unwrap());
    // An agent frees up: it is reserved first…
    let attempt = |h: &mut Harness, agent_answers: bool| -> (Flow, Message) {
        let out = h.out();
        let inv = requests(&out, &Method::Invite);
        assert_eq!(inv.len(), 1, "{:?}", codes(&out));
        let (aflow, ainv) = inv[0].clone();
        assert_eq!(aflow, agent_flow(1));
        assert!(ainv.header("From").unwrap().contains("0212345678"));
        assert!(agent_answers);
        agent_answers_sdp(
            h,
            aflow,
            &ainv,
            "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 6000 RTP/AVP 0\r\n",
        );
        // …then the caller is dialled through the outbound trunk.
        let out = h.out();
        let dial = requests(&out, &Method::Invite);
        assert_eq!(dial.len(), 1);
        assert_eq!(dial[0].0, trunk);
        assert!(dial[0]
            .1
            .request_uri()
            .unwrap()
            .starts_with("sip:0212345678@10.9.9.9"));
        dial[0].clone()
    };
    h.e.set_agent_state(h.now, "1001", api::StateChange::Ready)
        .unwrap();
    let (_, dial) = attempt(&mut h, true);
    // Busy: the agent is released, the callback waits 30 s and tries again.
    let busy = crate::sip::build::response(&dial, 486, None, Some("cb"));
    h.e.handle_message(h.now, trunk, &busy.to_bytes());
    let out = h.out();
    assert_eq!(
        requests(&out, &Method::Bye).len(),
        1,
        "BYE to the reserved agent"
    );
    assert_eq!(h.e.agent_states()[0].1, "ready");
    h.advance(Duration::from_secs(29));
    assert!(requests(&h.out(), &Method::Invite).is_empty());
    h.advance(Duration::from_secs(1));
    // Second attempt: the caller's phone rings, but the agent hangs up first: CANCEL.
    let (_, dial) = attempt(&mut h, true);
    let ringing = crate::sip::build::response(&dial, 180, None, Some("cb"));
    h.e.handle_message(h.now, trunk, &ringing.to_bytes());
    h.out();
    let key2 = *h.e.calls.keys().next().unwrap();
    let agent_call = h.e.calls[&key2].agent.as_ref().unwrap().leg.call_id.clone();
    let agent_local = h.e.calls[&key2].agent.as_ref().unwrap().leg.local.clone();
    let bye = format!("BYE sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKcbbye\r\nFrom: <sip:1001@dasan>;tag=a1\r\nTo: {agent_local}\r\nCall-ID: {agent_call}\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n");
    h.input(agent_flow(1), &bye);
    let out = h.out();
    assert_eq!(codes(&out), vec![200]);
    assert_eq!(
        requests(&out, &Method::Cancel).len(),
        1,
        "the dial is cancelled"
    );
    assert!(
        requests(&out, &Method::Bye).is_empty(),
        "no BYE without a dialog"
    );
    assert_eq!(h.e.agent_states()[0].1, "ready");
    h.advance(Duration::from_secs(30));
    let (_, dial) = attempt(&mut h, true);
    let mut ok = crate::sip::build::response(&dial, 200, None, Some("callee"));
    ok.set_header("Contact", "<sip:callee@10.9.9.9:5060>");
    ok.set_header("Content-Type", "application/sdp");
    ok.body = bytes::Bytes::from_static(b"v=0\r\nc=IN IP4 10.9.9.9\r\nm=audio 7000 RTP/AVP 0\r\n");
    h.e.handle_message(h.now, trunk, &ok.to_bytes());
    let out = h.out();
    assert_eq!(
        requests(&out, &Method::Ack).len(),
        1,
        "the caller's 200 is ACKed"
    );
    let cmds = media(&mut h);
    assert!(
        cmds.iter()
            .any(|c| matches!(c, MediaCommand::Start { caller, .. } if caller.remote.1 == 7000)),
        "{cmds:?}"
    );
    assert!(cmds
        .iter()
        .any(|c| matches!(c, MediaCommand::Attach { agent, .. } if agent.remote.1 == 6000)));
    assert_eq!(h.e.agent_states()[0].1, "on-call");
    assert!(h.e.callbacks.is_empty());
}

fn key_of(h: &Harness, call_id: &str) -> u64 {
    h.e.calls
        .iter()
        .find(|(_, c)| c.caller.call_id == call_id)
        .map(|(k, _)| *k)
        .unwrap()
}

/// Final responses to "o1" (the others' 480s are retransmitted: this test never ACKs).
fn final_codes(out: &[(Flow, Message)]) -> Vec<(String, u16)> {
    out.iter()
        .filter(|(_, m)| m.call_id() == "o1")
        .filter_map(|(_, m)| Some((m.call_id().to_string(), m.status().filter(|c| *c >= 200)?)))
        .collect()
}

fn plays(cmds: &[MediaCommand], prompt: &str) -> Vec<u64> {
    cmds.iter()
        .filter_map(|c| match c {
            MediaCommand::Play { call, prompts, .. } if prompts.iter().any(|p| p == prompt) => {
                Some(*call)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn when_full_moves_new_calls_and_max_wait_plays_a_message_then_480() {
    let cfg = ANCHORED.replace(
        "max_length = 2\n",
        "max_length = 2\nmax_wait_s = 10\nwhen_full = \"queue:en\"\nwhen_max_wait = \"message:closed-en\"\n",
    );
    let mut h = anchored_with(&cfg, "");
    let general = h.e.acd.queue_index("general").unwrap();
    let en = h.e.acd.queue_index("en").unwrap();
    for c in ["f1", "f2", "f3"] {
        let out = invite_with_sdp(&mut h, c, PCMU_OFFER);
        assert_eq!(codes(&out), vec![100, 183], "{c}");
    }
    assert_eq!((h.e.acd.waiting(general), h.e.acd.waiting(en)), (2, 1));
    assert_eq!(h.e.calls[&key_of(&h, "f3")].queue, en, "full: waits in en");
    media(&mut h);
    h.advance(Duration::from_millis(9_900));
    assert!(plays(&media(&mut h), "closed-en").is_empty());
    h.advance(Duration::from_millis(100));
    let mut heard = plays(&media(&mut h), "closed-en");
    heard.sort();
    let mut expect = vec![key_of(&h, "f1"), key_of(&h, "f2")];
    expect.sort();
    assert_eq!(heard, expect, "the two general callers hear the message");
    assert_eq!(h.e.acd.waiting(general), 0, "and left the queue meanwhile");
    assert!(
        codes(&h.out()).is_empty(),
        "no final response before it played"
    );
    // A digit while the message plays changes nothing.
    let k1 = key_of(&h, "f1");
    digit(&mut h, k1, '9', crate::media::dtmf::DigitSource::Rfc4733);
    h.e.handle_media_event(
        h.now,
        crate::media::bridge::MediaEvent::PromptsDone { call: k1 },
    );
    let out = h.out();
    assert_eq!(codes(&out), vec![480]);
    assert_eq!(out[0].1.call_id(), "f1");
}

#[test]
fn when_full_480_and_a_spoken_callback_offer_after_a_wait_and_at_max_wait() {
    let cfg = ANCHORED.replace(
        "max_length = 2\n",
        "max_length = 2\nmax_wait_s = 30\nwhen_full = \"480\"\ncallback_digit = \"*\"\ncallback_offer_after_s = 5\nwhen_max_wait = \"callback\"\n",
    );
    let mut h = anchored_with(
        &cfg,
        "[outbound]
trunk = \"10.9.9.9:5060\"",
    );
    invite_with_sdp(&mut h, "o1", PCMU_OFFER);
    h.advance(Duration::from_secs(2));
    invite_with_sdp(&mut h, "o2", PCMU_OFFER);
    let out = invite_with_sdp(&mut h, "o3", PCMU_OFFER);
    assert_eq!(codes(&out), vec![480]);
    assert!(out[0].1.header("Retry-After").is_none());
    let (k1, k2) = (key_of(&h, "o1"), key_of(&h, "o2"));
    media(&mut h);
    // At 5 s of waiting each caller hears the offer once, then its ringback again.
    h.advance(Duration::from_millis(2_990));
    assert!(plays(&media(&mut h), "callback-offer-ko").is_empty());
    h.advance(Duration::from_millis(10));
    let cmds = media(&mut h);
    assert_eq!(plays(&cmds, "callback-offer-ko"), vec![k1]);
    assert!(cmds.iter().any(|c| matches!(
        c,
        MediaCommand::Play {
            then: MusicRef::Ringback,
            ..
        }
    )));
    h.advance(Duration::from_secs(2));
    assert_eq!(plays(&media(&mut h), "callback-offer-ko"), vec![k2]);
    h.advance(Duration::from_secs(20));
    assert!(
        plays(&media(&mut h), "callback-offer-ko").is_empty(),
        "once"
    );
    // At max wait (30 s) the offer again, then 20 s to take it.
    h.advance(Duration::from_secs(3));
    assert_eq!(plays(&media(&mut h), "callback-offer-ko"), vec![k1]);
    assert!(final_codes(&h.out()).is_empty());
    h.advance(Duration::from_secs(2));
    assert_eq!(plays(&media(&mut h), "callback-offer-ko"), vec![k2]);
    digit(&mut h, k2, '*', crate::media::dtmf::DigitSource::Rfc4733);
    let out: Vec<_> = h
        .out()
        .into_iter()
        .filter(|(_, m)| m.call_id() == "o2")
        .collect();
    assert_eq!(codes(&out), vec![480]);
    assert!(
        matches!(&out[0].1.start, crate::sip::StartLine::Response { reason, .. } if reason == "Callback Scheduled")
    );
    h.advance(Duration::from_millis(17_900));
    assert!(final_codes(&h.out()).is_empty());
    h.advance(Duration::from_millis(100));
    assert_eq!(
        final_codes(&h.out()),
        vec![("o1".to_string(), 480)],
        "the grace ran out"
    );
    assert_eq!(h.e.callbacks.len(), 1);
}

#[test]
fn outside_hours_the_callback_digit_books_a_call_when_the_queue_opens() {
    // 07:13 in Seoul when the harness starts (see the opening-hours test).
    let cfg = ANCHORED.replace(
        "[queue.en]\nskill = \"en\"",
        "[queue.en]\nskill = \"en\"\nhours = \"09:00-22:00\"\nclosed_prompt = \"closed-callback-en\"\nclosed_fallback = \"general\"\ncallback_digit = \"*\"",
    ).replace(
        "[[route]]\nnumber = \"1209\"",
        "[[route]]\nnumber = \"1201\"\nqueue = \"en\"\n[[route]]\nnumber = \"1209\"",
    );
    let mut h = anchored_with(
        &cfg,
        "[outbound]
trunk = \"10.9.9.9:5060\"",
    );
    let general = h.e.acd.queue_index("general").unwrap();
    let en = h.e.acd.queue_index("en").unwrap();
    invite_to(&mut h, "1201", "n1", PCMU_OFFER);
    let k = key_of(&h, "n1");
    assert_eq!(plays(&media(&mut h), "closed-callback-en"), vec![k]);
    assert_eq!(h.e.acd.waiting(general), 1);
    h.advance(Duration::from_secs(4));
    digit(&mut h, k, '*', crate::media::dtmf::DigitSource::Rfc4733);
    let out = h.out();
    assert_eq!(codes(&out), vec![480], "callback scheduled");
    assert_eq!(h.e.acd.waiting(general), 0, "out of the Korean queue");
    assert_eq!(h.e.acd.waiting(en), 0, "not in line while closed");
    // 08:59:50: the English agent logs in; nothing is offered until 09:00.
    let to_nine = Duration::from_secs((9 * 60 - (7 * 60 + 13)) * 60) - Duration::from_secs(10);
    let unix0 = 1_700_000_000u64;
    let local_start = (unix0 + 9 * 3600) % 86_400;
    assert_eq!(local_start / 60, 7 * 60 + 13, "harness clock");
    let to_nine = to_nine - Duration::from_secs(local_start % 60 + 4);
    h.advance(to_nine);
    h.out();
    h.register("1003", 3);
    assert!(requests(&h.out(), &Method::Invite).is_empty());
    h.advance(Duration::from_secs(11));
    let out = h.out();
    let inv = requests(&out, &Method::Invite);
    assert!(!inv.is_empty(), "the agent is reserved at opening");
    assert!(inv
        .iter()
        .all(|(f, m)| *f == agent_flow(3) && m.call_id() == inv[0].1.call_id()));
    // It rang from 09:00, not before (the unanswered INVITE is retransmitted from then).
    assert!(inv.len() <= 4, "{}", inv.len());
}

#[test]
fn ring_all_rings_every_ready_agent_and_the_first_answer_takes_the_call() {
    let cfg = CFG
        .replace(
            "ring_timeout_s = 15\n",
            "ring_timeout_s = 15\nstrategy = \"ring-all\"\n",
        )
        .replace("ids = \"1001-1002\"", "ids = \"1001-1004\"");
    let mut h = Harness::with(&format!("{cfg}\n[media]\nanchor = false\n"));
    for n in 1..=4u16 {
        h.register(&format!("100{n}"), n);
    }
    h.e.set_agent_state(h.now, "1004", api::StateChange::NotReady("break".into()))
        .unwrap();
    let out = h.invite("ra1");
    let inv: Vec<_> = requests(&out, &Method::Invite)
        .into_iter()
        .cloned()
        .collect();
    let mut flows: Vec<_> = inv.iter().map(|(f, _)| *f).collect();
    flows.sort_by_key(|f| f.remote);
    assert_eq!(
        flows,
        vec![agent_flow(1), agent_flow(2), agent_flow(3)],
        "every ready agent, not 1004"
    );
    let states = h.e.agent_states();
    assert!(
        states[..3].iter().all(|(_, s)| *s == "offered"),
        "{states:?}"
    );
    for (f, m) in &inv {
        h.input(*f, &answer(m, 180, "r", false));
    }
    h.out();
    // 1002 is busy: only its phone stops; the others ring on.
    let (f2, m2) = inv.iter().find(|(f, _)| *f == agent_flow(2)).unwrap();
    h.input(*f2, &answer(m2, 486, "r2", false));
    let out = h.out();
    assert!(requests(&out, &Method::Cancel).is_empty());
    assert!(codes(&out).iter().all(|c| *c < 300), "{:?}", codes(&out));
    assert_eq!(h.e.agent_states()[1].1, "busy-delay");
    // 1003 answers first: the caller gets its 200, 1001's phone is cancelled.
    let (f3, m3) = inv.iter().find(|(f, _)| *f == agent_flow(3)).unwrap();
    h.input(*f3, &answer(m3, 200, "r3", true));
    let out = h.out();
    assert!(codes(&out).contains(&200), "{:?}", codes(&out));
    let cancels = requests(&out, &Method::Cancel);
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0].0, agent_flow(1));
    let states = h.e.agent_states();
    assert_eq!(
        states.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        vec!["ready", "busy-delay", "on-call", "not-ready"]
    );
    // 1001 answers anyway, too late: ACK and BYE, and it stays ready.
    let (f1, m1) = inv.iter().find(|(f, _)| *f == agent_flow(1)).unwrap();
    h.input(*f1, &answer(m1, 200, "r1", true));
    let out = h.out();
    assert_eq!(requests(&out, &Method::Bye).len(), 1);
    assert_eq!(h.e.agent_states()[0].1, "ready");
    assert_eq!(h.e.calls.len(), 1);
}

#[test]
fn ring_all_timeout_cancels_every_phone_and_the_call_waits_again() {
    let cfg = CFG.replace(
        "ring_timeout_s = 15\n",
        "ring_timeout_s = 15\nstrategy = \"ring-all\"\nmax_no_answer = 2\n",
    );
    let mut h = Harness::with(&format!("{cfg}\n[media]\nanchor = false\n"));
    h.register("1001", 1);
    h.register("1002", 2);
    let out = h.invite("ra2");
    let inv: Vec<_> = requests(&out, &Method::Invite)
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(inv.len(), 2);
    for (f, m) in &inv {
        h.input(*f, &answer(m, 180, "r", false));
    }
    h.out();
    h.advance(Duration::from_secs(15));
    let out = h.out();
    assert_eq!(requests(&out, &Method::Cancel).len(), 2, "both phones stop");
    let states = h.e.agent_states();
    assert!(states.iter().all(|(_, s)| *s == "busy-delay"), "{states:?}");
    assert_eq!(h.e.acd.waiting(0), 1, "the call waits again");
    // After the busy delay both ring again.
    h.advance(Duration::from_secs(5));
    let out = h.out();
    let again: std::collections::HashSet<_> = requests(&out, &Method::Invite)
        .iter()
        .map(|(_, m)| m.call_id().to_string())
        .collect();
    assert_eq!(again.len(), 2, "{:?}", codes(&out));
}

#[test]
fn refer_to_a_department_number_dials_it_through_the_outbound_trunk() {
    use crate::records::RecordEvent as E;
    let mut h = anchored_with(
        ANCHORED,
        "[outbound]
trunk = \"10.9.9.9:5060\"",
    );
    let trunk_out = Flow::udp("10.9.9.9:5060".parse().unwrap());
    h.register("1001", 1);
    let out = invite_with_sdp(&mut h, "d1", PCMU_OFFER);
    let (aflow, ainv) = requests(&out, &Method::Invite)[0].clone();
    agent_answers_sdp(
        &mut h,
        aflow,
        &ainv,
        "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 6000 RTP/AVP 0\r\n",
    );
    h.out();
    media(&mut h);
    let key = key_of(&h, "d1");
    let refer = |h: &mut Harness, inv: &Message, target: &str, n: u32| {
        let raw = format!("REFER sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKdr{n}\r\nFrom: <sip:1001@dasan>;tag=a1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {n} REFER\r\nContact: <sip:1001@192.0.2.1:5070>\r\nRefer-To: <sip:{target}@dasan>\r\nContent-Length: 0\r\n\r\n", inv.header("From").unwrap(), inv.call_id());
        h.input(aflow, &raw);
        h.out()
    };
    assert_eq!(
        codes(&refer(&mut h, &ainv, "nowhere", 5)),
        vec![603],
        "not a number"
    );
    // The department's number: 202, the agent is released, the trunk is dialled.
    let out = refer(&mut h, &ainv, "0221330000", 6);
    assert_eq!(codes(&out), vec![202]);
    assert_eq!(h.e.agent_states()[0].1, "ready");
    let dial = requests(&out, &Method::Invite);
    assert_eq!(dial.len(), 1);
    assert_eq!(dial[0].0, trunk_out);
    assert_eq!(
        dial[0].1.request_uri(),
        Some("sip:0221330000@10.9.9.9:5060")
    );
    let cmds = media(&mut h);
    assert!(cmds.iter().any(|c| matches!(
        c,
        MediaCommand::Play {
            then: MusicRef::Ringback,
            ..
        }
    )));
    // Busy: back to the queue, where the free agent is offered the caller again.
    let busy = crate::sip::build::response(&dial[0].1, 486, None, Some("dept"));
    h.e.handle_message(h.now, trunk_out, &busy.to_bytes());
    let out = h.out();
    let again = requests(&out, &Method::Invite);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].0, agent_flow(1));
    let (aflow2, ainv2) = again[0].clone();
    agent_answers_sdp(
        &mut h,
        aflow2,
        &ainv2,
        "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 6000 RTP/AVP 0\r\n",
    );
    h.out();
    media(&mut h);
    let out = refer(&mut h, &ainv2, "0221330000", 7);
    let dial = requests(&out, &Method::Invite)[0].1.clone();
    // The department answers: ACKed and bridged into the same call.
    let mut ok = crate::sip::build::response(&dial, 200, None, Some("dept"));
    ok.set_header("Contact", "<sip:dept@10.9.9.9:5060>");
    ok.set_header("Content-Type", "application/sdp");
    ok.body = bytes::Bytes::from_static(b"v=0\r\nc=IN IP4 10.9.9.9\r\nm=audio 7100 RTP/AVP 0\r\n");
    h.e.handle_message(h.now, trunk_out, &ok.to_bytes());
    let out = h.out();
    assert_eq!(requests(&out, &Method::Ack).len(), 1);
    assert!(media(&mut h)
        .iter()
        .any(|c| matches!(c, MediaCommand::Attach { call, agent, .. } if *call == key && agent.remote.1 == 7100)));
    let events: Vec<_> = std::iter::from_fn(|| h.e.poll_record()).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, E::Answered { agent, .. } if agent == "outside:0221330000")),
        "{events:?}"
    );
    // The department hangs up: the call ends (no agent to free).
    let bye = format!("BYE sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKdbye\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n", ok.header("To").unwrap(), dial.header("From").unwrap(), dial.call_id());
    h.input(trunk_out, &bye);
    let out = h.out();
    assert!(codes(&out).contains(&200));
    assert_eq!(requests(&out, &Method::Bye).len(), 1, "BYE to the caller");
    assert_eq!(h.e.active_calls(), 0);
    assert_eq!(h.e.agent_states()[0].1, "ready");
}

#[test]
fn survey_by_a_call_minutes_later_stores_the_rating_in_the_consultation_record() {
    use crate::records::RecordEvent as E;
    let (mut h, key, out) = survey_call_with(
        "sc1",
        "\nsurvey_call_after_s = 120",
        "[outbound]\ntrunk = \"10.9.9.9:5060\"",
    );
    let trunk_out = Flow::udp("10.9.9.9:5060".parse().unwrap());
    assert_eq!(
        requests(&out, &Method::Bye).len(),
        1,
        "no in-call survey: the caller is released"
    );
    let consultation = h.e.calls.get(&key).map(|c| c.record.clone());
    assert!(consultation.is_none(), "the call is over");
    let records: Vec<_> = std::iter::from_fn(|| h.e.poll_record()).collect();
    let original = records
        .iter()
        .find_map(|e| match e {
            E::Ended { id, .. } => Some(id.clone()),
            _ => None,
        })
        .unwrap();
    h.advance(Duration::from_secs(119));
    assert!(requests(&h.out(), &Method::Invite).is_empty());
    h.advance(Duration::from_secs(1));
    let out = h.out();
    let dial = requests(&out, &Method::Invite);
    assert_eq!(dial.len(), 1);
    assert_eq!(dial[0].0, trunk_out);
    assert!(dial[0]
        .1
        .request_uri()
        .unwrap()
        .starts_with("sip:0212345678@10.9.9.9"));
    let dial = dial[0].1.clone();
    let mut ok = crate::sip::build::response(&dial, 200, None, Some("callee"));
    ok.set_header("Contact", "<sip:callee@10.9.9.9:5060>");
    ok.set_header("Content-Type", "application/sdp");
    ok.body = bytes::Bytes::from_static(b"v=0\r\nc=IN IP4 10.9.9.9\r\nm=audio 7200 RTP/AVP 0\r\n");
    h.e.handle_message(h.now, trunk_out, &ok.to_bytes());
    assert_eq!(requests(&h.out(), &Method::Ack).len(), 1);
    let records_offered = |h: &mut Harness| {
        let records: Vec<_> = std::iter::from_fn(|| h.e.poll_record()).collect();
        assert!(records.iter().any(|e| matches!(
            e,
            E::Arrived {
                channel: "survey",
                ..
            }
        )));
        records.iter().any(|e| matches!(e, E::Offered { .. }))
    };
    let cmds = media(&mut h);
    let survey_key = match &cmds[..] {
        // (after the Stop of the consultation's media)
        [MediaCommand::Stop { .. }, MediaCommand::Start { call, caller, .. }, MediaCommand::Play { prompts, .. }]
            if caller.remote.1 == 7200 && prompts == &vec!["survey-ko".to_string()] =>
        {
            *call
        }
        other => panic!("{other:?}"),
    };
    // (1001's registration has expired by now; no agent was offered anything.)
    assert!(!records_offered(&mut h), "no agent involved");
    h.e.handle_media_event(
        h.now,
        crate::media::bridge::MediaEvent::PromptsDone { call: survey_key },
    );
    digit(
        &mut h,
        survey_key,
        '4',
        crate::media::dtmf::DigitSource::Rfc4733,
    );
    let out = h.out();
    assert_eq!(
        requests(&out, &Method::Bye).len(),
        1,
        "thanked and released"
    );
    let records: Vec<_> = std::iter::from_fn(|| h.e.poll_record()).collect();
    assert!(
        records
            .iter()
            .any(|e| matches!(e, E::Survey { id, score: 4 } if *id == original)),
        "{records:?}"
    );
    assert_eq!(h.e.active_calls(), 0);
    // No survey of the survey.
    h.advance(Duration::from_secs(600));
    assert!(requests(&h.out(), &Method::Invite).is_empty());
}

#[test]
fn every_timer_in_the_heap_says_why_it_fires() {
    use super::timers::{CallTimer, Wake};
    let mut h = Harness::new();
    h.register("1001", 1);
    let start = h.now;
    let out = h.invite("why1");
    let (aflow, ainv) = requests(&out, &Method::Invite)[0].clone();
    h.input(aflow, &answer(&ainv, 180, "a1", false));
    h.out();
    let mut wakes: Vec<(Duration, Wake)> =
        h.e.timers
            .iter()
            .map(|std::cmp::Reverse((t, w))| (t.saturating_duration_since(start), *w))
            .collect();
    wakes.sort();
    let ring = wakes
        .iter()
        .find(|(_, w)| matches!(w, Wake::Call(_, CallTimer::RingTimeout)));
    let max_wait = wakes
        .iter()
        .find(|(_, w)| matches!(w, Wake::Call(_, CallTimer::MaxWait)));
    assert_eq!(
        ring.map(|r| r.0),
        Some(Duration::from_secs(15)),
        "{wakes:?}"
    );
    assert_eq!(
        max_wait.map(|r| r.0),
        Some(Duration::from_secs(60)),
        "{wakes:?}"
    );
    // The agent's phone rings and never answers: the ring timeout fires at 15 s (RONA) and
    // the INVITE to the agent is CANCELled, not a moment earlier.
    h.advance(Duration::from_millis(14_999));
    assert!(requests(&h.out(), &Method::Cancel).is_empty());
    h.advance(Duration::from_millis(1));
    let out = h.out();
    assert_eq!(requests(&out, &Method::Cancel).len(), 1, "{out:?}");
}

/// The attack of issue 15: the right Call-ID with made-up tags, from anywhere, must not
/// touch the call (a `Signal=9` would move a waiting caller into the language menu).
#[test]
fn spoofed_in_dialog_requests_with_the_call_id_but_other_tags_get_481() {
    use crate::media::sdp::Direction;
    let mut h = anchored_wide();
    h.register("1003", 3);
    let out = invite_with_sdp(&mut h, "sp1", PCMU_OFFER);
    let tag = out
        .iter()
        .find(|(_, m)| m.status() == Some(183))
        .and_then(|(_, m)| m.to_tag())
        .unwrap();
    media(&mut h);
    let attacker = Flow::udp("203.0.113.66:5060".parse().unwrap());
    let info = |from_tag: &str, to_tag: &str, n: u32| {
        format!("INFO sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.66:5060;branch=z9hG4bKsp{n}\r\nFrom: <sip:0212345678@carrier>;tag={from_tag}\r\nTo: <sip:120@dasan>;tag={to_tag}\r\nCall-ID: sp1\r\nCSeq: {n} INFO\r\nContent-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\nSignal=9\r\nDuration=160\r\n")
    };
    // Random tags, our tag with a wrong From tag, the caller's tag with a wrong To tag.
    for (n, (f, t)) in [("x1", "y1"), ("x2", tag.as_str()), ("csp1", "y3")]
        .into_iter()
        .enumerate()
    {
        h.input(attacker, &info(f, t, n as u32 + 2));
        assert_eq!(codes(&h.out()), vec![481], "tags {f}/{t}");
        assert!(media(&mut h).is_empty(), "the menu must not start");
    }
    let update = format!("UPDATE sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.66:5060;branch=z9hG4bKspu\r\nFrom: <sip:0212345678@carrier>;tag=evil\r\nTo: <sip:120@dasan>;tag=evil2\r\nCall-ID: sp1\r\nCSeq: 9 UPDATE\r\nContact: <sip:x@203.0.113.66>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{}", PCMU_OFFER.len() + 12, PCMU_OFFER.to_string() + "a=inactive\r\n");
    h.input(attacker, &update);
    assert_eq!(codes(&h.out()), vec![481]);
    let bye = "BYE sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.66:5060;branch=z9hG4bKspb\r\nFrom: <sip:0212345678@carrier>;tag=evil\r\nTo: <sip:120@dasan>;tag=evil2\r\nCall-ID: sp1\r\nCSeq: 10 BYE\r\nContent-Length: 0\r\n\r\n";
    h.input(attacker, bye);
    assert_eq!(codes(&h.out()), vec![481]);
    assert_eq!(h.e.active_calls(), 1, "the call is still there");
    // Nothing of that was kept: no transaction waits for an ACK or a timer.
    let m = &h.e.metrics;
    assert_eq!(
        m.security.with_label_values(&["unknown_dialog"]).get(),
        5,
        "each refusal counted"
    );
    // The caller's own INFO (its tags) still works: the menu starts.
    let t = h.trunk;
    h.input(
        t,
        &info("csp1", &tag, 20).replace("203.0.113.66", "10.1.1.1"),
    );
    assert_eq!(codes(&h.out()), vec![200]);
    assert!(
        !media(&mut h).is_empty(),
        "the caller's digit opens the menu"
    );
    let _ = Direction::SendRecv;
}

/// Any request with a To tag that names no dialog of ours gets 481 (RFC 3261 12.2.2),
/// whatever its method, and keeps no transaction.
#[test]
fn in_dialog_requests_for_unknown_dialogs_get_481_statelessly() {
    let mut h = Harness::new();
    for method in [
        "INFO", "UPDATE", "BYE", "REFER", "OPTIONS", "MESSAGE", "NOTIFY", "PRACK", "INVITE",
    ] {
        let raw = format!("{method} sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKu{method}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:120@dasan>;tag=nope\r\nCall-ID: unknown-{method}\r\nCSeq: 1 {method}\r\nContact: <sip:a@198.51.100.7>\r\nContent-Length: 0\r\n\r\n");
        h.input(Flow::udp("198.51.100.7:5060".parse().unwrap()), &raw);
        assert_eq!(codes(&h.out()), vec![481], "{method}");
    }
    assert_eq!(h.e.transactions(), 0, "no state kept for refusals");
    h.advance(Duration::from_secs(40));
    assert!(h.out().is_empty(), "and nothing retransmitted");
}

/// One INVITE to a feature code, never ACKed, from a spoofed address: exactly one 407
/// (no Timer G retransmissions to reflect at a victim), and no transaction kept.
#[test]
fn a_never_acked_feature_code_invite_gets_one_407_only() {
    let mut h = Harness::new();
    h.register("1001", 1);
    let invite = "INVITE sip:*21@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.99:5070;branch=z9hG4bKamp\r\nFrom: <sip:1001@dasan>;tag=amp\r\nTo: <sip:*21@dasan>\r\nCall-ID: amp\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@192.0.2.99:5070>\r\nContent-Length: 0\r\n\r\n";
    h.advance(Duration::from_secs(40));
    h.out();
    h.input(Flow::udp("192.0.2.99:5070".parse().unwrap()), invite);
    assert_eq!(codes(&h.out()), vec![407]);
    assert_eq!(
        h.e.transactions(),
        0,
        "no transaction for an unauthenticated request"
    );
    h.advance(Duration::from_secs(40));
    assert!(h.out().is_empty(), "no retransmission of the 407");
    // The same for an untrusted INVITE to the service number (403) and a REGISTER challenge.
    let untrusted = "INVITE sip:120@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bKut\r\nFrom: <sip:x@y>;tag=u\r\nTo: <sip:120@dasan>\r\nCall-ID: ut\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    h.input(Flow::udp("198.51.100.9:5060".parse().unwrap()), untrusted);
    assert_eq!(codes(&h.out()), vec![403]);
    assert_eq!(h.e.transactions(), 0);
    h.advance(Duration::from_secs(40));
    assert!(h.out().is_empty(), "no retransmission of the 403");
}

/// Issue 15: callers of the menu number (`1209`) sat in the menu uncounted, so any number
/// of them got in past `max_length`. A menu caller now holds a seat of its fallback queue.
#[test]
fn menu_callers_count_against_the_fallback_queues_max_length() {
    let mut h = anchored_wide();
    // general: max_length 2. Two callers in the 1209 menu fill it...
    assert_eq!(
        codes(&invite_to(&mut h, "1209", "m1", PCMU_OFFER)),
        vec![100, 183]
    );
    assert_eq!(
        codes(&invite_to(&mut h, "1209", "m2", PCMU_OFFER)),
        vec![100, 183]
    );
    // ...so a third menu caller and a direct 120 caller are both refused.
    assert_eq!(
        codes(&invite_to(&mut h, "1209", "m3", PCMU_OFFER)),
        vec![503]
    );
    assert_eq!(
        codes(&invite_to(&mut h, "120", "m4", PCMU_OFFER)),
        vec![503]
    );
    assert_eq!(h.e.active_calls(), 2);
    // One menu caller hangs up: its seat is free again.
    let key = h.e.calls.keys().copied().min().unwrap();
    let call_id = h.e.calls[&key].caller.call_id.clone();
    let tag = leg::tag_of(&h.e.calls[&key].caller.local);
    let cancel = format!("CANCEL sip:1209@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK{call_id}\r\nFrom: <sip:0212345678@carrier>;tag=c{call_id}\r\nTo: <sip:1209@dasan>\r\nCall-ID: {call_id}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n");
    let t = h.trunk;
    h.input(t, &cancel);
    let out = h.out();
    assert!(codes(&out).contains(&487), "{:?} (tag {tag})", codes(&out));
    assert_eq!(
        codes(&invite_to(&mut h, "120", "m5", PCMU_OFFER)),
        vec![100, 183]
    );
    assert_eq!(
        codes(&invite_to(&mut h, "1209", "m6", PCMU_OFFER)),
        vec![503]
    );
    assert_eq!(h.e.menu_seats.iter().sum::<usize>(), 1);
}

/// A source outside the trunks' networks keeps at most `max_transactions_per_source`
/// transactions alive; beyond it, 503 with nothing kept. Trunks are not limited this way.
/// Refusals and OPTIONS keep no state at all, so the requests that count are the ones
/// that passed authentication: here one phone's REGISTERs, one nonce, growing counts.
#[test]
fn one_untrusted_source_cannot_hold_unbounded_transactions() {
    let mut h = Harness::with(&format!(
        "[sip]\nmax_transactions_per_source = 20\n{CFG}\n[media]\nanchor = false\n"
    ));
    let src = agent_flow(7);
    let reg = |n: u32, auth: &str| {
        format!("REGISTER sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKtx{n}\r\nFrom: <sip:1001@dasan>;tag=t\r\nTo: <sip:1001@dasan>\r\nCall-ID: tx-reg\r\nCSeq: {n} REGISTER\r\nContact: <sip:1001@192.0.2.7:5070>\r\nExpires: 120\r\n{auth}Content-Length: 0\r\n\r\n")
    };
    h.input(src, &reg(1, ""));
    let ch = h.out()[0].1.header("WWW-Authenticate").unwrap().to_string();
    assert_eq!(h.e.transactions(), 0, "a challenge keeps nothing");
    let mut got = Vec::new();
    for n in 1..=30u32 {
        let auth = crate::registrar::digest::authorization_nc(
            &ch,
            "1001",
            "pw",
            "REGISTER",
            "sip:dasan",
            "cn",
            n,
        )
        .unwrap();
        h.input(src, &reg(n + 1, &format!("Authorization: {auth}\r\n")));
        got.extend(codes(&h.out()));
    }
    assert_eq!(got.iter().filter(|&&c| c == 200).count(), 20, "{got:?}");
    assert_eq!(got.iter().filter(|&&c| c == 503).count(), 10, "{got:?}");
    assert_eq!(h.e.transactions(), 20);
    // OPTIONS keep no state, so a flood of them costs nothing and is answered.
    let options = |n: u32, host: &str| {
        format!("OPTIONS sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP {host}:5060;branch=z9hG4bKo{n}\r\nFrom: <sip:a@b>;tag=o{n}\r\nTo: <sip:dasan>\r\nCall-ID: o{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
    };
    let other = Flow::udp("198.51.100.8:5060".parse().unwrap());
    for n in 0..50 {
        h.input(other, &options(n, "198.51.100.8"));
        assert_eq!(codes(&h.out()), vec![200]);
    }
    assert_eq!(h.e.transactions(), 20);
    // Once its transactions end (Timer J), the source is served again.
    h.advance(Duration::from_secs(40));
    h.out();
    let auth = crate::registrar::digest::authorization_nc(
        &ch,
        "1001",
        "pw",
        "REGISTER",
        "sip:dasan",
        "cn",
        40,
    )
    .unwrap();
    h.input(src, &reg(50, &format!("Authorization: {auth}\r\n")));
    assert_eq!(codes(&h.out()), vec![200]);
}

/// Toll fraud: an agent (or whoever holds its phone) transfers callers abroad or to
/// premium-rate numbers; only `[outbound] allow` destinations are dialled, each attempt
/// audited, and outside transfers are rate-limited per agent.
#[test]
fn transfers_out_only_to_allowed_numbers_audited_and_rate_limited() {
    use crate::records::RecordEvent as E;
    let mut h = anchored_with(
        ANCHORED,
        "[outbound]\ntrunk = \"10.9.9.9:5060\"\nmax_transfers_per_minute = 1",
    );
    h.register("1001", 1);
    let out = invite_with_sdp(&mut h, "tf1", PCMU_OFFER);
    let (aflow, ainv) = requests(&out, &Method::Invite)[0].clone();
    agent_answers_sdp(
        &mut h,
        aflow,
        &ainv,
        "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 6000 RTP/AVP 0\r\n",
    );
    h.out();
    media(&mut h);
    let refer = |h: &mut Harness, target: &str, n: u32| {
        let raw = format!("REFER sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKtf{n}\r\nFrom: <sip:1001@dasan>;tag=a1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {n} REFER\r\nContact: <sip:1001@192.0.2.1:5070>\r\nRefer-To: <sip:{target}@dasan>\r\nContent-Length: 0\r\n\r\n", ainv.header("From").unwrap(), ainv.call_id());
        h.input(aflow, &raw);
        h.out()
    };
    for (n, target) in ["00441234567", "+441234567", "0601234567"]
        .iter()
        .enumerate()
    {
        let out = refer(&mut h, target, n as u32 + 5);
        assert_eq!(codes(&out), vec![403], "{target}");
        assert!(
            requests(&out, &Method::Invite).is_empty(),
            "nothing dialled"
        );
    }
    let audits: Vec<_> =
        h.e.records_out
            .iter()
            .filter_map(|e| match e {
                E::Audit {
                    actor,
                    action,
                    target,
                    detail,
                    ..
                } => Some((
                    actor.clone(),
                    action.clone(),
                    target.clone(),
                    detail.clone(),
                )),
                _ => None,
            })
            .collect();
    assert_eq!(audits.len(), 3, "{audits:?}");
    assert!(audits.iter().all(|(who, what, _, detail)| who == "1001"
        && what == "outbound transfer"
        && detail.starts_with("refused")));
    assert_eq!(
        h.e.metrics
            .security
            .with_label_values(&["outbound_denied"])
            .get(),
        3
    );
    // A domestic department number: the rate (1 a minute) is used up by a first attempt
    // in the same minute, so with one spent the second is refused.
    assert!(h.e.transfer_rate_ok(h.now, 0));
    assert_eq!(codes(&refer(&mut h, "0221330000", 9)), vec![403]);
    let later = h.now + Duration::from_secs(61);
    assert!(
        h.e.transfer_rate_ok(later, 0),
        "a minute later it may again"
    );
}

/// A caller whose number may not be dialled (international here) asks for a callback:
/// nothing is booked, it keeps waiting.
#[test]
fn a_callback_to_a_number_abroad_is_not_booked() {
    let cfg = ANCHORED.replace("max_length = 2", "max_length = 2\ncallback_digit = \"*\"");
    let mut h = anchored_with(&cfg, "[outbound]\ntrunk = \"10.9.9.9:5060\"");
    let raw = format!(
        "INVITE sip:120@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKcbi\r\nFrom: <sip:00447700900123@carrier>;tag=ccbi\r\nTo: <sip:120@dasan>\r\nCall-ID: cbi\r\nCSeq: 1 INVITE\r\nContact: <sip:c@10.1.1.1:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{PCMU_OFFER}",
        PCMU_OFFER.len()
    );
    let t = h.trunk;
    h.input(t, &raw);
    h.out();
    media(&mut h);
    let key = key_of(&h, "cbi");
    h.e.on_digit(h.now, key, '*', crate::media::dtmf::DigitSource::Rfc4733);
    let out = h.out();
    assert!(!codes(&out).contains(&480), "no 'callback scheduled'");
    assert_eq!(h.e.active_calls(), 1, "still waiting");
    assert_eq!(
        h.e.metrics
            .security
            .with_label_values(&["outbound_denied"])
            .get(),
        1
    );
}

/// Found by fuzzing (the agent_ws target, through the user agent's copy of `Leg`): a Contact
/// whose URI holds whitespace became the leg's target, and every later request on the leg
/// (here the engine's BYE to the caller) had an unparsable request line. Such a Contact is
/// ignored; the leg keeps the target it had.
#[test]
fn a_contact_with_whitespace_does_not_become_the_request_uri() {
    let mut h = Harness::new();
    h.register("1001", 1);
    let raw = "INVITE sip:120@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKws\r\nFrom: <sip:0212345678@carrier>;tag=cws\r\nTo: <sip:120@dasan>\r\nCall-ID: ws\r\nCSeq: 1 INVITE\r\nContact: <sip:c@10.1.1.1:5060;transport=udp x: 1>\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n";
    let t = h.trunk;
    h.input(t, raw);
    let out = h.out();
    let (aflow, ainv) = requests(&out, &Method::Invite)[0].clone();
    h.input(aflow, &answer(&ainv, 200, "a1", true));
    h.out();
    let bye = format!("BYE sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKabws\r\nFrom: <sip:1001@dasan>;tag=a1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n", ainv.header("From").unwrap(), ainv.call_id());
    h.input(aflow, &bye);
    // `out` panics on a message that does not parse.
    let out = h.out();
    let to_caller = requests(&out, &Method::Bye);
    assert_eq!(to_caller.len(), 1, "BYE to the caller");
    assert!(!to_caller[0].1.request_uri().unwrap().contains(' '));
}

const SRTP_CFG: &str = r#"
[sip]
tls_listen = "127.0.0.1:5061"
[[trunk]]
name = "carrier"
sources = ["10.0.0.0/8"]
srtp = "mandatory"
[[trunk]]
name = "plain"
sources = ["172.16.0.0/12"]
[[route]]
number = "120"
queue = "general"
[queue.general]
skill = "ko"
[[agents]]
ids = "1001-1002"
password = "pw"
skills = ["ko"]
srtp = "mandatory"
[media]
rtp_port_min = 30000
rtp_port_max = 30099
webrtc_port_min = 40000
webrtc_port_max = 40099
"#;

const SAVP_OFFER: &str = "v=0\r\no=c 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0 101\r\na=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

fn tls_flow(ip: &str, conn: u64) -> Flow {
    Flow {
        transport: crate::sip::Transport::Tls,
        remote: format!("{ip}:40000").parse().unwrap(),
        conn,
    }
}

fn invite_on(h: &mut Harness, flow: Flow, call: &str, sdp: &str) -> Vec<(Flow, Message)> {
    let t = if flow.transport == crate::sip::Transport::Tls {
        "TLS"
    } else {
        "UDP"
    };
    let ip = flow.remote.ip();
    let raw = format!(
        "INVITE sip:120@dasan SIP/2.0\r\nVia: SIP/2.0/{t} {ip}:40000;branch=z9hG4bK{call}\r\nFrom: <sip:0212345678@carrier>;tag=c{call}\r\nTo: <sip:120@dasan>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:c@{ip}:40000;transport=tls>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    h.input(flow, &raw);
    h.out()
}

/// Registers `id` over `flow`; what the engine sent besides the 200.
fn register_tls(h: &mut Harness, id: &str, flow: Flow) -> Vec<(Flow, Message)> {
    let ip = flow.remote.ip();
    let reg = |auth: &str| {
        format!(
            "REGISTER sips:dasan SIP/2.0\r\nVia: SIP/2.0/TLS {ip}:40000;branch=z9hG4bKt{id}{}\r\nFrom: <sip:{id}@dasan>;tag=r\r\nTo: <sip:{id}@dasan>\r\nCall-ID: treg-{id}\r\nCSeq: {} REGISTER\r\nContact: <sip:{id}@{ip}:40000;transport=tls>\r\nExpires: 120\r\n{auth}Content-Length: 0\r\n\r\n",
            auth.len(),
            if auth.is_empty() { 1 } else { 2 }
        )
    };
    h.input(flow, &reg(""));
    let out = h.out();
    let ch = out[0].1.header("WWW-Authenticate").unwrap();
    let auth = format!(
        "Authorization: {}\r\n",
        authorization(ch, id, "pw", "REGISTER", "sips:dasan", "cn").unwrap()
    );
    h.input(flow, &reg(&auth));
    let mut out = h.out();
    assert_eq!(out[0].1.status(), Some(200));
    out.remove(0);
    out
}

#[test]
fn srtp_policy_refuses_what_it_cannot_meet_and_keys_each_leg_over_tls() {
    use crate::media::sdp::Sdp;
    use crate::media::srtp::{Crypto, Suite};
    let mut h = Harness::with(SRTP_CFG);
    let final_code = |out: &[(Flow, Message)]| codes(out).into_iter().find(|c| *c >= 180);
    // Mandatory: keys would go out over UDP → 488; over TLS without crypto → 488.
    let udp = Flow::udp("10.1.1.1:5060".parse().unwrap());
    assert_eq!(
        final_code(&invite_on(&mut h, udp, "s1", SAVP_OFFER)),
        Some(488)
    );
    let tls = tls_flow("10.1.1.1", 11);
    assert_eq!(
        final_code(&invite_on(&mut h, tls, "s2", PCMU_OFFER)),
        Some(488)
    );
    // A trunk with srtp off refuses RTP/SAVP (it cannot be answered with RTP/AVP).
    let plain = Flow::udp("172.16.0.1:5060".parse().unwrap());
    assert_eq!(
        final_code(&invite_on(&mut h, plain, "s3", SAVP_OFFER)),
        Some(488)
    );
    assert!(media(&mut h).is_empty(), "no media for refused calls");

    // An agent with srtp mandatory registered over UDP is not offered the call; one over
    // TLS is, with RTP/SAVP and a key per suite.
    h.register("1001", 1);
    let out = invite_on(&mut h, tls, "s4", SAVP_OFFER);
    assert_eq!(codes(&out), vec![100, 183]);
    let early = &out.iter().find(|(_, m)| m.status() == Some(183)).unwrap().1;
    let text = std::str::from_utf8(&early.body).unwrap();
    let answer = Sdp::parse(text).unwrap();
    let audio = answer.audio().unwrap();
    assert_eq!(audio.proto, "RTP/SAVP");
    assert_eq!(audio.crypto.len(), 1, "{text}");
    assert_eq!(audio.crypto[0].tag, 3, "the offer's tag and suite");
    assert_eq!(audio.crypto[0].suite, Suite::AesCm128HmacSha1_32);
    let offered =
        Crypto::parse("3 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")
            .unwrap();
    assert_ne!(audio.crypto[0].key, offered.key, "our own key");
    match &media(&mut h)[..] {
        [MediaCommand::Start { caller, .. }] => {
            let k = caller.srtp.as_ref().expect("caller leg keyed");
            assert_eq!(k.remote, offered.key);
            assert_eq!(k.local, audio.crypto[0].key);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        requests(&out, &Method::Invite).is_empty(),
        "1001 is on UDP: not offered"
    );
    h.advance(Duration::from_secs(1));
    assert!(requests(&h.out(), &Method::Invite).is_empty());

    let aflow = tls_flow("192.0.2.9", 12);
    let out = register_tls(&mut h, "1002", aflow);
    let inv = requests(&out, &Method::Invite);
    assert_eq!(inv.len(), 1, "1002 over TLS gets the call");
    assert_eq!(inv[0].0, aflow);
    let ainv = inv[0].1.clone();
    let offer = Sdp::parse(std::str::from_utf8(&ainv.body).unwrap()).unwrap();
    let oa = offer.audio().unwrap();
    assert_eq!(oa.proto, "RTP/SAVP");
    let suites: Vec<_> = oa.crypto.iter().map(|c| (c.tag, c.suite)).collect();
    assert_eq!(
        suites,
        vec![
            (1, Suite::AesCm128HmacSha1_80),
            (2, Suite::AesCm128HmacSha1_32)
        ]
    );
    assert_ne!(oa.crypto[0].key, oa.crypto[1].key);
    assert_ne!(
        oa.crypto[0].key, audio.crypto[0].key,
        "each leg its own key"
    );
    let agent_sdp = "v=0\r\no=a 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 6000 RTP/SAVP 0 101\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    agent_answers_sdp(&mut h, aflow, &ainv, agent_sdp);
    let attach = media(&mut h)
        .into_iter()
        .find_map(|c| match c {
            MediaCommand::Attach { agent, .. } => Some(agent),
            _ => None,
        })
        .expect("bridged");
    let k = attach.srtp.expect("agent leg keyed");
    assert_eq!(k.suite, Suite::AesCm128HmacSha1_80);
    assert_eq!(k.local, oa.crypto[0].key, "our tag-1 key");
    assert_eq!(&k.remote.0[..4], b"ABCD");
}

#[test]
fn behind_nat_sdp_carries_the_advertised_address_and_sockets_bind_the_local_one() {
    use crate::media::sdp::Sdp;
    let mut h = Harness::with(&format!(
        "{ANCHORED}\n[media]\nip = \"10.0.0.5\"\nadvertise = \"203.0.113.7\"\nrtp_port_min = 30000\nrtp_port_max = 30099\nwebrtc_port_min = 40000\nwebrtc_port_max = 40099\n"
    ));
    h.register("1001", 1);
    let out = invite_with_sdp(&mut h, "nat1", PCMU_OFFER);
    let early = &out.iter().find(|(_, m)| m.status() == Some(183)).unwrap().1;
    let sdp = Sdp::parse(std::str::from_utf8(&early.body).unwrap()).unwrap();
    assert_eq!(
        sdp.audio_target().unwrap().0,
        "203.0.113.7".parse::<std::net::IpAddr>().unwrap()
    );
    let start_ip = media(&mut h).into_iter().find_map(|c| match c {
        MediaCommand::Start { ip, .. } => Some(ip),
        _ => None,
    });
    assert_eq!(
        start_ip,
        Some("10.0.0.5".parse().unwrap()),
        "bind the local one"
    );
    let inv = requests(&out, &Method::Invite);
    let offer = Sdp::parse(std::str::from_utf8(&inv[0].1.body).unwrap()).unwrap();
    assert_eq!(
        offer.audio_target().unwrap().0,
        "203.0.113.7".parse::<std::net::IpAddr>().unwrap(),
        "the agent's offer too"
    );
}

const TEXT_CFG: &str = r#"
[[trunk]]
name = "sms"
sources = ["10.0.0.0/8"]
[[route]]
number = "120"
queue = "general"
[queue.general]
skill = "ko"
channels = ["voice", "text"]
max_wait_s = 60
max_length = 3
[[agents]]
ids = "1001"
password = "pw"
skills = ["ko"]
max_chats = 2
[text]
idle_close_s = 600
max_messages_per_minute = 5
[media]
anchor = false
"#;

fn sms(h: &mut Harness, from: &str, n: u32, ct: &str, body: &str) -> Vec<(Flow, Message)> {
    let raw = format!(
        "MESSAGE sip:120@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKsms{from}{n}\r\nMax-Forwards: 70\r\nFrom: <sip:{from}@carrier>;tag=s{n}\r\nTo: <sip:120@dasan>\r\nCall-ID: sms-{from}-{n}\r\nCSeq: {n} MESSAGE\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let t = h.trunk;
    h.input(t, &raw);
    h.out()
}

fn messages_to(out: &[(Flow, Message)], flow: Flow) -> Vec<&Message> {
    out.iter()
        .filter(|(f, m)| *f == flow && m.method() == Some(&Method::Message))
        .map(|(_, m)| m)
        .collect()
}

fn text_of(m: &Message) -> String {
    String::from_utf8_lossy(&m.body).to_string()
}

#[test]
fn text_conversations_reach_an_agent_and_replies_reach_the_sender() {
    let mut h = Harness::with(TEXT_CFG);
    h.register("1001", 1);
    let aflow = agent_flow(1);
    let out = sms(
        &mut h,
        "01011112222",
        1,
        "text/plain;charset=UTF-8",
        "버스 시간표 알려주세요",
    );
    assert_eq!(codes(&out), vec![202]);
    let ack = out.iter().find(|(_, m)| m.status() == Some(202)).unwrap();
    let to_agent = messages_to(&out, aflow);
    assert_eq!(to_agent.len(), 1, "{out:?}");
    assert_eq!(text_of(to_agent[0]), "버스 시간표 알려주세요");
    let from = to_agent[0].header("From").unwrap();
    assert!(from.contains("sip:chat-1@"), "{from}");
    assert!(from.contains("01011112222"), "{from}");
    // The 202 waits for the record (durability gate), like a call's final response.
    let _ = ack;
    let recs: Vec<_> = std::iter::from_fn(|| h.e.poll_record())
        .filter(|e| !matches!(e, RecordEvent::AgentState { .. }))
        .collect();
    assert!(
        matches!(&recs[0], RecordEvent::Arrived { channel: "text", caller, .. } if caller == "01011112222")
    );
    assert!(recs.iter().any(|r| matches!(r, RecordEvent::Message { direction: "in", text, .. } if text == "버스 시간표 알려주세요")));
    assert!(recs
        .iter()
        .any(|r| matches!(r, RecordEvent::Answered { agent, .. } if agent == "1001")));

    // The agent's reply: challenged, then sent on to the sender through the trunk.
    let reply = |n: u32, auth: &str, body: &str| {
        format!("MESSAGE sip:chat-1@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKr{n}\r\nMax-Forwards: 70\r\nFrom: <sip:1001@dasan>;tag=r{n}\r\nTo: <sip:chat-1@dasan>\r\nCall-ID: reply-{n}\r\nCSeq: {n} MESSAGE\r\n{auth}Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}", body.len())
    };
    h.input(aflow, &reply(1, "", "10분 간격입니다"));
    let out = h.out();
    assert_eq!(codes(&out), vec![407]);
    let ch = out[0].1.header("Proxy-Authenticate").unwrap().to_string();
    let auth = |nc: u32| {
        format!(
            "Proxy-Authorization: {}\r\n",
            crate::registrar::digest::authorization_nc(
                &ch,
                "1001",
                "pw",
                "MESSAGE",
                "sip:chat-1@dasan",
                "cn",
                nc
            )
            .unwrap()
        )
    };
    h.input(aflow, &reply(2, &auth(1), "10분 간격입니다"));
    let out = h.out();
    assert_eq!(codes(&out), vec![202]);
    let to_sender = messages_to(&out, h.trunk);
    assert_eq!(to_sender.len(), 1);
    assert_eq!(text_of(to_sender[0]), "10분 간격입니다");
    assert!(to_sender[0]
        .request_uri()
        .unwrap()
        .starts_with("sip:01011112222@10.1.1.1"));
    // Another agent's conversation, or none: 481.
    h.input(
        aflow,
        &reply(3, &auth(2), "x").replace("chat-1@dasan SIP", "chat-9@dasan SIP"),
    );
    assert_eq!(codes(&h.out()), vec![481]);

    // Capacity 2: a second sender is given to the agent, a third waits with one notice.
    let out = sms(&mut h, "01033334444", 1, "text/plain", "second");
    assert_eq!(messages_to(&out, aflow).len(), 1);
    let out = sms(&mut h, "01055556666", 1, "text/plain", "third");
    assert!(messages_to(&out, aflow).is_empty(), "the agent is full");
    let notice = messages_to(&out, h.trunk);
    assert_eq!(notice.len(), 1, "one waiting notice");
    // In the queue's language (general: ko).
    assert_eq!(text_of(notice[0]), "상담사가 곧 답변드리겠습니다.");
    let out = sms(&mut h, "01055556666", 2, "text/plain", "still there?");
    assert!(
        messages_to(&out, h.trunk).is_empty(),
        "the notice is sent once"
    );
    // The agent closes the first conversation: the third one comes with both messages.
    h.input(aflow, &reply(4, &auth(3), "*23"));
    let out = h.out();
    assert_eq!(codes(&out), vec![202]);
    let given: Vec<String> = messages_to(&out, aflow)
        .iter()
        .map(|m| text_of(m))
        .collect();
    assert_eq!(
        given,
        vec!["[dasan] conversation closed", "third", "still there?"]
    );
    let closed = messages_to(&out, aflow)[0];
    assert_eq!(closed.header("X-Dasan-Chat"), Some("closed;by=agent"));
    assert_eq!(
        messages_to(&out, aflow)[1].header("X-Dasan-Chat"),
        Some("message")
    );

    // Refusals: untrusted source, not text, a flood.
    h.input(
        Flow::udp("203.0.113.9:5060".parse().unwrap()),
        "MESSAGE sip:120@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bKx\r\nFrom: <sip:1@x>;tag=x\r\nTo: <sip:120@dasan>\r\nCall-ID: x\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert_eq!(codes(&h.out()), vec![403]);
    let out = sms(&mut h, "01077778888", 1, "image/png", "PNG");
    assert_eq!(codes(&out), vec![415]);
    let told = messages_to(&out, h.trunk);
    assert_eq!(told.len(), 1, "the sender hears that only text is read");
    assert!(text_of(told[0]).contains("Only text"));
    assert!(told[0]
        .request_uri()
        .is_some_and(|u| u.starts_with("sip:01077778888@")));
    let mut got = Vec::new();
    for n in 2..10 {
        got.extend(codes(&sms(&mut h, "01077778888", n, "text/plain", "spam")));
    }
    assert_eq!(got.iter().filter(|c| **c == 202).count(), 4, "{got:?}");
    assert_eq!(got.iter().filter(|c| **c == 429).count(), 4, "{got:?}");
    // The queue holds 3 waiting conversations (one is the flooder's): two more new
    // senders wait, a third gets 503.
    for n in ["01020000001", "01020000002"] {
        assert_eq!(codes(&sms(&mut h, n, 1, "text/plain", "wait")), vec![202]);
    }
    let out = sms(&mut h, "01020000004", 1, "text/plain", "one too many");
    assert_eq!(codes(&out), vec![503]);
    assert!(out[0].1.header("Retry-After").is_some());
}

#[test]
fn an_idle_text_conversation_closes_and_one_without_an_agent_times_out() {
    let mut h = Harness::with(TEXT_CFG);
    let out = sms(&mut h, "01011112222", 1, "text/plain", "hello?");
    assert_eq!(codes(&out), vec![202]);
    let _: Vec<_> = std::iter::from_fn(|| h.e.poll_record()).collect();
    // No agent: max_wait_s (60) → the closing message and outcome timed_out.
    h.advance(Duration::from_secs(61));
    let out = h.out();
    let to_sender = messages_to(&out, h.trunk);
    assert!(
        to_sender
            .iter()
            .any(|m| text_of(m).contains("모든 상담사가 상담 중")),
        "the closing message, in Korean for a Korean queue"
    );
    let recs: Vec<_> = std::iter::from_fn(|| h.e.poll_record()).collect();
    assert!(
        recs.iter().any(|r| matches!(
            r,
            RecordEvent::Ended {
                outcome: Outcome::TimedOut,
                ..
            }
        )),
        "{recs:?}"
    );
    // With an agent: idle for idle_close_s (600) → closed, answered.
    h.register("1001", 1);
    let out = sms(&mut h, "01011112222", 2, "text/plain", "again");
    // The phones and the trunk take what they are sent.
    for (flow, m) in out
        .iter()
        .filter(|(_, m)| m.method() == Some(&Method::Message))
    {
        let ok = crate::sip::build::response(m, 200, None, Some("t"));
        h.e.handle_message(h.now, *flow, &ok.to_bytes());
    }
    let _: Vec<_> = std::iter::from_fn(|| h.e.poll_record()).collect();
    h.advance(Duration::from_secs(599));
    assert!(std::iter::from_fn(|| h.e.poll_record())
        .all(|e| matches!(e, RecordEvent::AgentState { .. })));
    h.advance(Duration::from_secs(2));
    let recs: Vec<_> = std::iter::from_fn(|| h.e.poll_record()).collect();
    assert!(
        recs.iter().any(|r| matches!(
            r,
            RecordEvent::Ended {
                outcome: Outcome::Answered,
                side: "engine",
                ..
            }
        )),
        "{recs:?}"
    );
}

#[test]
fn calls_and_chats_share_an_agent_by_its_cross_channel_setting() {
    let agent_invites = |out: &[(Flow, Message)]| {
        out.iter()
            .filter(|(f, m)| *f == agent_flow(1) && m.method() == Some(&Method::Invite))
            .count()
    };
    // Voice over text (default), max_chats 3: two open chats, a call is still offered.
    let cfg = TEXT_CFG.replace("max_chats = 2", "max_chats = 3");
    let mut h = Harness::with(&cfg);
    h.register("1001", 1);
    for n in ["01011112222", "01033334444"] {
        let out = sms(&mut h, n, 1, "text/plain", "hi");
        assert_eq!(messages_to(&out, agent_flow(1)).len(), 1);
    }
    assert_eq!(
        agent_invites(&h.invite("v1")),
        1,
        "offered with 2 of 3 chats open"
    );
    // A third chat while the call rings or talks is given too (voice over text), and
    // then the agent is full: no call would be offered.
    let out = sms(&mut h, "01055556666", 1, "text/plain", "hi");
    assert_eq!(messages_to(&out, agent_flow(1)).len(), 1);

    // Exclusive: one open chat keeps calls away; closing it lets the waiting call ring.
    let cfg = TEXT_CFG.replace(
        "max_chats = 2",
        "max_chats = 2\ncross_channel = \"exclusive\"",
    );
    let mut h = Harness::with(&cfg);
    h.register("1001", 1);
    let out = sms(&mut h, "01011112222", 1, "text/plain", "hi");
    assert_eq!(messages_to(&out, agent_flow(1)).len(), 1);
    assert_eq!(
        agent_invites(&h.invite("x1")),
        0,
        "not offered while a chat is open"
    );
    let close = |n: u32, auth: &str| {
        format!("MESSAGE sip:chat-1@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKc{n}\r\nMax-Forwards: 70\r\nFrom: <sip:1001@dasan>;tag=c{n}\r\nTo: <sip:chat-1@dasan>\r\nCall-ID: close-{n}\r\nCSeq: {n} MESSAGE\r\n{auth}Content-Type: text/plain\r\nContent-Length: 3\r\n\r\n*23")
    };
    h.input(agent_flow(1), &close(1, ""));
    let out = h.out();
    let ch = out[0].1.header("Proxy-Authenticate").unwrap().to_string();
    let auth = format!(
        "Proxy-Authorization: {}\r\n",
        crate::registrar::digest::authorization_nc(
            &ch,
            "1001",
            "pw",
            "MESSAGE",
            "sip:chat-1@dasan",
            "cn",
            1
        )
        .unwrap()
    );
    h.input(agent_flow(1), &close(2, &auth));
    let out = h.out();
    assert!(codes(&out).contains(&202));
    assert_eq!(
        agent_invites(&out),
        1,
        "the waiting call rings once the chat closed"
    );
    // And while that call is offered, a new chat waits (exclusive).
    let out = sms(&mut h, "01099990000", 1, "text/plain", "hi");
    assert!(messages_to(&out, agent_flow(1)).is_empty());
}

#[test]
fn a_phone_that_refuses_text_is_not_given_the_conversation_again() {
    let mut h = Harness::with(&TEXT_CFG.replace("ids = \"1001\"", "ids = \"1001-1002\""));
    h.register("1001", 1);
    let out = sms(&mut h, "01011112222", 1, "text/plain", "hello");
    let to_agent = messages_to(&out, agent_flow(1));
    assert_eq!(to_agent.len(), 1);
    // The phone does not do MESSAGE (e.g. 405): the conversation waits for someone else,
    // and the sender hears that it waits; nothing goes back to that phone.
    let refusal = crate::sip::build::response(to_agent[0], 405, None, Some("x"));
    h.e.handle_message(h.now, agent_flow(1), &refusal.to_bytes());
    let out = h.out();
    assert!(messages_to(&out, agent_flow(1)).is_empty(), "{out:?}");
    assert_eq!(messages_to(&out, h.trunk).len(), 1, "the waiting notice");
    let out = sms(&mut h, "01011112222", 2, "text/plain", "anyone?");
    assert!(messages_to(&out, agent_flow(1)).is_empty());
    // Another agent who logs in gets the conversation (with what was written so far).
    let _: Vec<_> = std::iter::from_fn(|| h.e.poll_record()).collect();
    h.register("1002", 2);
    let recs: Vec<_> = std::iter::from_fn(|| h.e.poll_record()).collect();
    assert!(
        recs.iter()
            .any(|r| matches!(r, RecordEvent::Answered { agent, .. } if agent == "1002")),
        "{recs:?}"
    );
}

/// An agent's phone writes `body` in conversation `conv`, answering the 407 as a phone
/// does: what the engine sent after the authenticated MESSAGE.
fn agent_writes(
    h: &mut Harness,
    n: u16,
    agent: &str,
    conv: &str,
    body: &str,
) -> Vec<(Flow, Message)> {
    let flow = agent_flow(n);
    let msg = |seq: u32, auth: &str| {
        format!("MESSAGE sip:{conv}@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.{n}:5070;branch=z9hG4bKw{conv}{seq}{}\r\nMax-Forwards: 70\r\nFrom: <sip:{agent}@dasan>;tag=w{seq}\r\nTo: <sip:{conv}@dasan>\r\nCall-ID: w-{conv}-{seq}-{}\r\nCSeq: {seq} MESSAGE\r\n{auth}Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}", body.len(), body.len(), body.len())
    };
    h.input(flow, &msg(1, ""));
    let out = h.out();
    let ch = out[0].1.header("Proxy-Authenticate").unwrap().to_string();
    let auth = format!(
        "Proxy-Authorization: {}\r\n",
        crate::registrar::digest::authorization(
            &ch,
            agent,
            "pw",
            "MESSAGE",
            &format!("sip:{conv}@dasan"),
            "cn"
        )
        .unwrap()
    );
    h.input(flow, &msg(2, &auth));
    h.out()
}

const TEXT_LANG_CFG: &str = r#"
[[trunk]]
name = "sms"
sources = ["10.0.0.0/8"]
[[route]]
number = "120"
menu = "languages"
[queue.general]
skill = "ko"
channels = ["voice", "text"]
[queue.en]
skill = "en"
channels = ["voice", "text"]
[menu.languages]
fallback = "general"
[[menu.languages.option]]
digit = "1"
prompt = "menu-en"
queue = "en"
[[agents]]
ids = "1001"
password = "pw"
skills = ["ko"]
max_chats = 2
[[agents]]
ids = "1002"
password = "pw"
skills = ["en"]
max_chats = 2
"#;

#[test]
fn text_by_script_transfer_with_history_and_the_web_chat() {
    let mut h = Harness::with(TEXT_LANG_CFG);
    h.register("1001", 1);
    h.register("1002", 2);
    // 120 offers a language choice: English text goes to the English queue's agent.
    let out = sms(
        &mut h,
        "01011112222",
        1,
        "text/plain",
        "Where is the bus stop?",
    );
    let to_en = messages_to(&out, agent_flow(2));
    assert_eq!(to_en.len(), 1, "{out:?}");
    assert_eq!(to_en[0].header("X-Dasan-Queue"), Some("en"));
    assert_eq!(to_en[0].header("X-Dasan-Chat"), Some("message"));
    let out = sms(&mut h, "01033334444", 1, "text/plain", "버스 언제 와요?");
    let to_ko = messages_to(&out, agent_flow(1));
    assert_eq!(to_ko.len(), 1);
    assert!(to_ko[0].header("From").unwrap().contains("chat-2"));
    // The Korean agent replies, then hands the conversation to the English queue.
    let out = agent_writes(&mut h, 1, "1001", "chat-2", "잠시만요");
    assert_eq!(text_of(messages_to(&out, h.trunk)[0]), "잠시만요");
    let out = agent_writes(&mut h, 1, "1001", "chat-2", "*24 nowhere");
    let notice = messages_to(&out, agent_flow(1));
    assert_eq!(notice[0].header("X-Dasan-Chat"), Some("notice"));
    assert!(text_of(notice[0]).contains("nowhere"));
    let _: Vec<_> = std::iter::from_fn(|| h.e.poll_record()).collect();
    let out = agent_writes(&mut h, 1, "1001", "chat-2", "*24 en");
    assert_eq!(
        messages_to(&out, agent_flow(1))[0].header("X-Dasan-Chat"),
        Some("closed;by=transfer")
    );
    // The English agent gets the conversation so far: the sender's line and the reply.
    let got: Vec<(String, String)> = messages_to(&out, agent_flow(2))
        .iter()
        .map(|m| {
            (
                m.header("X-Dasan-Chat").unwrap_or("").to_string(),
                text_of(m),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("message".to_string(), "버스 언제 와요?".to_string()),
            ("history".to_string(), "[1001] 잠시만요".to_string()),
        ]
    );
    let recs: Vec<_> = std::iter::from_fn(|| h.e.poll_record()).collect();
    assert!(
        recs.iter()
            .any(|r| matches!(r, RecordEvent::Queue { queue, .. } if queue == "en")),
        "{recs:?}"
    );
    assert!(recs
        .iter()
        .any(|r| matches!(r, RecordEvent::Answered { agent, .. } if agent == "1002")));
    let views = h.e.agents_view();
    assert_eq!((views[0].chats, views[1].chats), (0, 2));

    // The web chat: the same channel, replies collected by the page.
    let (token, first) =
        h.e.web_chat_start(h.now, "120", "안녕하세요, 문의가 있어요")
            .unwrap();
    assert!(
        first.lines.is_empty(),
        "an agent had room: no waiting notice"
    );
    let out = h.out();
    let to_agent = messages_to(&out, agent_flow(1));
    assert_eq!(to_agent.len(), 1);
    assert!(to_agent[0].header("From").unwrap().contains("web-"));
    agent_writes(&mut h, 1, "1001", "chat-3", "네, 말씀하세요");
    let poll = h.e.web_chat_poll(&token, 0).unwrap();
    assert_eq!(poll.lines.len(), 1);
    assert_eq!(poll.lines[0].text, "네, 말씀하세요");
    assert_eq!(poll.lines[0].from, "counsellor");
    assert!(h
        .e
        .web_chat_poll(&token, poll.lines[0].seq)
        .unwrap()
        .lines
        .is_empty());
    h.e.web_chat_send(h.now, &token, "감사합니다").unwrap();
    let out = h.out();
    assert_eq!(text_of(messages_to(&out, agent_flow(1))[0]), "감사합니다");
    agent_writes(&mut h, 1, "1001", "chat-3", "*23");
    assert!(h.e.web_chat_poll(&token, 0).unwrap().closed);
    assert_eq!(h.e.web_chat_send(h.now, &token, "more").unwrap_err().0, 410);
    assert!(h.e.web_chat_poll("nope", 0).is_none());
    assert_eq!(
        h.e.web_chat_start(h.now, "999", "hi").unwrap_err().0,
        404,
        "no such service"
    );
    assert_eq!(h.e.web_chat_start(h.now, "120", "  ").unwrap_err().0, 400);
    // First responses count per channel: the English chat has none yet, the Korean one and
    // the web chat one each (in general).
    let q = h.e.queues_view(h.now);
    let general = q.iter().find(|q| q.name == "general").unwrap();
    let text = general.text.as_ref().unwrap();
    assert_eq!(text.window.answered, 2);
    assert_eq!(text.window.offered, 2);
}

#[test]
fn a_waiting_sender_is_answered_in_the_language_it_wrote_in() {
    let mut h = Harness::with(TEXT_LANG_CFG);
    let out = sms(&mut h, "01011112222", 1, "text/plain", "Is anyone there?");
    let notice = messages_to(&out, h.trunk);
    assert_eq!(notice.len(), 1);
    assert_eq!(text_of(notice[0]), "A counsellor will reply shortly.");
    let out = sms(&mut h, "01033334444", 1, "text/plain", "누구 없어요?");
    assert_eq!(
        text_of(messages_to(&out, h.trunk)[0]),
        "상담사가 곧 답변드리겠습니다."
    );
}

#[test]
fn replies_go_to_the_text_trunk_when_one_is_set() {
    let cfg = format!("[outbound]\ntext_trunk = \"10.9.9.9:5090\"\n{TEXT_CFG}");
    let mut h = Harness::with(&cfg);
    h.register("1001", 1);
    sms(&mut h, "01011112222", 1, "text/plain", "hello");
    let out = agent_writes(&mut h, 1, "1001", "chat-1", "hi there");
    let gw = Flow::udp("10.9.9.9:5090".parse().unwrap());
    let to_gw = messages_to(&out, gw);
    assert_eq!(to_gw.len(), 1, "{out:?}");
    assert_eq!(text_of(to_gw[0]), "hi there");
    assert!(to_gw[0]
        .request_uri()
        .is_some_and(|u| u == "sip:01011112222@10.9.9.9:5090"));
    assert!(messages_to(&out, h.trunk).is_empty());
}

#[test]
fn a_reply_the_trunk_refuses_is_recorded_and_the_agent_is_told() {
    let mut h = Harness::with(TEXT_CFG);
    h.register("1001", 1);
    let first = sms(&mut h, "01011112222", 1, "text/plain", "hello");
    let out = agent_writes(&mut h, 1, "1001", "chat-1", "the answer");
    let to_sender = messages_to(&out, h.trunk);
    assert_eq!(to_sender.len(), 1);
    let _: Vec<_> = std::iter::from_fn(|| h.e.poll_record()).collect();
    // The SMS gateway cannot deliver it.
    let refusal = crate::sip::build::response(to_sender[0], 503, None, Some("g"));
    let t = h.trunk;
    h.e.handle_message(h.now, t, &refusal.to_bytes());
    let out = h.out();
    let told = messages_to(&out, agent_flow(1));
    assert_eq!(told.len(), 1, "{out:?}");
    assert_eq!(told[0].header("X-Dasan-Chat"), Some("notice"));
    assert!(text_of(told[0]).contains("not delivered (503)"));
    let recs: Vec<_> = std::iter::from_fn(|| h.e.poll_record()).collect();
    assert!(
        recs.iter().any(|r| matches!(
            r,
            RecordEvent::Message { direction: "out", sender, text, .. }
                if sender == "engine" && text == "[not delivered: 503]"
        )),
        "{recs:?}"
    );
    // No answer at all (Timer F): the same, as "no answer". (The agent's phone takes what
    // it is sent; only the trunk is silent.)
    let mut pending = first;
    pending.extend(out);
    pending.extend(agent_writes(&mut h, 1, "1001", "chat-1", "again"));
    for (flow, m) in &pending {
        if *flow == agent_flow(1) && m.method() == Some(&Method::Message) {
            let ok = crate::sip::build::response(m, 200, None, Some("a"));
            h.e.handle_message(h.now, *flow, &ok.to_bytes());
        }
    }
    h.advance(Duration::from_secs(33));
    let out = h.out();
    assert!(
        messages_to(&out, agent_flow(1))
            .iter()
            .any(|m| text_of(m).contains("not delivered (no answer)")),
        "{out:?}"
    );
}

#[test]
fn an_agent_answering_plain_rtp_where_srtp_is_required_is_hung_up_and_the_call_moves_on() {
    let mut h = Harness::with(SRTP_CFG);
    let tls = tls_flow("10.1.1.1", 11);
    let aflow = tls_flow("192.0.2.9", 12);
    register_tls(&mut h, "1002", aflow);
    let out = invite_on(&mut h, tls, "p1", SAVP_OFFER);
    let inv = requests(&out, &Method::Invite);
    assert_eq!(inv.len(), 1);
    let ainv = inv[0].1.clone();
    let _ = media(&mut h);
    // The phone ignores our keys and answers RTP/AVP.
    agent_answers_sdp(
        &mut h,
        aflow,
        &ainv,
        "v=0\r\no=a 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
    );
    let out = h.out();
    assert_eq!(requests(&out, &Method::Ack).len(), 1, "its 2xx is ACKed");
    assert_eq!(
        requests(&out, &Method::Bye).len(),
        1,
        "and the phone hung up"
    );
    assert!(
        !codes(&out).contains(&200),
        "the caller is not connected to silence"
    );
    assert!(!media(&mut h)
        .iter()
        .any(|c| matches!(c, MediaCommand::Attach { .. })));
    assert_eq!(
        h.e.metrics
            .security
            .with_label_values(&["agent_answer_unusable"])
            .get(),
        1
    );
    // The call waits for another agent, who gets it.
    let other = tls_flow("192.0.2.10", 13);
    let out = register_tls(&mut h, "1001", other);
    let inv = requests(&out, &Method::Invite);
    assert_eq!(inv.len(), 1, "{out:?}");
    assert_eq!(inv[0].0, other);
}

const VIDEO_CFG: &str = r#"
[[trunk]]
name = "carrier"
sources = ["10.0.0.0/8"]
[[route]]
number = "120"
queue = "general"
video_queue = "sign"
[queue.general]
skill = "ko"
[queue.sign]
skill = "ksl"
channels = ["voice", "video"]
[[agents]]
ids = "1001"
password = "pw"
skills = ["ko"]
[[agents]]
ids = "1002"
password = "pw"
skills = ["ksl"]
"#;

const VIDEO_OFFER: &str = "v=0\r\no=c 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\nm=video 4002 RTP/AVP 100 97\r\nb=AS:5000\r\na=rtpmap:100 H265/90000\r\na=rtpmap:97 VP8/90000\r\n";

#[test]
fn a_video_call_reaches_a_signing_agent_with_its_codec_offered_and_relayed() {
    use crate::media::sdp::{negotiate_video, Sdp, VideoCodec};
    let mut h = anchored_with(VIDEO_CFG, "[video]\nmax_kbps = 1200");
    h.register("1001", 1);
    h.register("1002", 2);
    let out = invite_with_sdp(&mut h, "v1", VIDEO_OFFER);
    // The caller's answer: audio, and VP8 video at its own payload type, capped.
    let early = &out.iter().find(|(_, m)| m.status() == Some(183)).unwrap().1;
    let answer = Sdp::parse(std::str::from_utf8(&early.body).unwrap()).unwrap();
    let v = negotiate_video(&answer).expect("video accepted");
    assert_eq!((v.codec, v.pt, v.kbps), (VideoCodec::Vp8, 97, Some(1200)));
    let starts: Vec<_> = media(&mut h)
        .into_iter()
        .filter_map(|c| match c {
            MediaCommand::VideoStart {
                caller,
                caller_port,
                ..
            } => Some((caller.pt, caller.remote.1, caller_port)),
            _ => None,
        })
        .collect();
    assert_eq!(starts, [(97, 4002, v.remote.1)]);
    // The signing agent (not the Korean one) gets the call, offered the caller's codec.
    let inv = requests(&out, &Method::Invite);
    assert_eq!(inv.len(), 1);
    assert_eq!(inv[0].0, agent_flow(2), "the ksl agent");
    let offer = Sdp::parse(std::str::from_utf8(&inv[0].1.body).unwrap()).unwrap();
    let ov = negotiate_video(&offer).expect("video offered");
    assert_eq!((ov.codec, ov.pt), (VideoCodec::Vp8, 97));
    // The agent answers VP8 at its own payload type.
    let ainv = inv[0].1.clone();
    agent_answers_sdp(
        &mut h,
        agent_flow(2),
        &ainv,
        "v=0\r\no=a 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\nm=video 6002 RTP/AVP 120\r\na=rtpmap:120 VP8/90000\r\n",
    );
    let attach: Vec<_> = media(&mut h)
        .into_iter()
        .filter_map(|c| match c {
            MediaCommand::VideoAttach {
                agent, offered_pt, ..
            } => Some((agent.pt, agent.remote.1, offered_pt)),
            _ => None,
        })
        .collect();
    assert_eq!(attach, [(120, 6002, 97)]);
    let recs: Vec<_> = std::iter::from_fn(|| h.e.poll_record()).collect();
    assert!(
        recs.iter().any(|r| matches!(
            r,
            RecordEvent::Arrived { channel: "video", queue, .. } if queue == "sign"
        )),
        "{recs:?}"
    );
}

#[test]
fn a_video_offer_without_a_codec_we_relay_is_an_audio_call_in_the_video_queue() {
    use crate::media::sdp::{negotiate_video, Sdp};
    let mut h = anchored_with(VIDEO_CFG, "");
    h.register("1002", 2);
    let h265_only = VIDEO_OFFER.replace("m=video 4002 RTP/AVP 100 97", "m=video 4002 RTP/AVP 100");
    let out = invite_with_sdp(&mut h, "v2", &h265_only);
    let early = &out.iter().find(|(_, m)| m.status() == Some(183)).unwrap().1;
    let text = std::str::from_utf8(&early.body).unwrap();
    assert!(text.contains("m=video 0 RTP/AVP 100"), "{text}");
    assert!(negotiate_video(&Sdp::parse(text).unwrap()).is_none());
    assert!(!media(&mut h)
        .iter()
        .any(|c| matches!(c, MediaCommand::VideoStart { .. })));
    let inv = requests(&out, &Method::Invite);
    let offer = std::str::from_utf8(&inv[0].1.body).unwrap();
    assert!(!offer.contains("m=video"), "{offer}");
}

#[test]
fn picture_fast_update_by_sip_info_both_ways_on_a_video_call() {
    use crate::media::bridge::{LegId, MediaEvent};
    use crate::media::sdp::KeyframeBy;
    let mut h = anchored_with(VIDEO_CFG, "");
    h.register("1002", 2);
    // A video phone that declares no RTCP feedback: keyframes by SIP INFO.
    let out = invite_with_sdp(&mut h, "pf1", VIDEO_OFFER);
    let ainv = requests(&out, &Method::Invite)[0].1.clone();
    let tag = out
        .iter()
        .find(|(_, m)| m.status() == Some(183))
        .and_then(|(_, m)| m.to_tag())
        .unwrap();
    let key = h.e.calls.keys().next().copied().unwrap();
    let caller_kf: Vec<_> = media(&mut h)
        .into_iter()
        .filter_map(|c| match c {
            MediaCommand::VideoStart { caller, .. } => Some(caller.keyframe),
            _ => None,
        })
        .collect();
    assert_eq!(caller_kf, [KeyframeBy::SipInfo]);
    // While waiting, the caller's INFO is answered here (the waiting picture restarts).
    let info = |branch: &str, cseq: u32| {
        let body = "<?xml version=\"1.0\" encoding=\"utf-8\" ?><media_control><vc_primitive><to_encoder><picture_fast_update/></to_encoder></vc_primitive></media_control>";
        format!("INFO sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK{branch}\r\nFrom: <sip:0212345678@carrier>;tag=cpf1\r\nTo: <sip:120@dasan>;tag={tag}\r\nCall-ID: pf1\r\nCSeq: {cseq} INFO\r\nContent-Type: application/media_control+xml\r\nContent-Length: {}\r\n\r\n{body}", body.len())
    };
    let t = h.trunk;
    h.input(t, &info("pf1", 2));
    assert_eq!(codes(&h.out()), vec![200]);
    assert!(matches!(
        &media(&mut h)[..],
        [MediaCommand::VideoKeyframe {
            from: LegId::Caller,
            ..
        }]
    ));
    // The agent answers with PLI feedback declared.
    agent_answers_sdp(
        &mut h,
        agent_flow(2),
        &ainv,
        "v=0\r\no=a 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\nm=video 6002 RTP/AVP 97\r\na=rtpmap:97 VP8/90000\r\na=rtcp-fb:* nack pli\r\n",
    );
    h.out();
    let agent_kf: Vec<_> = media(&mut h)
        .into_iter()
        .filter_map(|c| match c {
            MediaCommand::VideoAttach { agent, .. } => Some(agent.keyframe),
            _ => None,
        })
        .collect();
    assert_eq!(agent_kf, [KeyframeBy::Pli]);
    // The relay needs a keyframe from the caller: an INFO in the caller's dialog.
    h.e.handle_media_event(
        h.now,
        MediaEvent::PictureFastUpdate {
            call: key,
            leg: LegId::Caller,
        },
    );
    let out = h.out();
    let infos = requests(&out, &Method::Info);
    assert_eq!(infos.len(), 1, "{out:?}");
    assert_eq!(infos[0].0, h.trunk);
    let m = &infos[0].1;
    assert_eq!(m.content_type(), Some("application/media_control+xml"));
    assert!(std::str::from_utf8(&m.body)
        .unwrap()
        .contains("<picture_fast_update/>"));
    assert_eq!(m.header("Call-ID"), Some("pf1"));
    // Once answered, the caller's INFO goes to the relay, not to the agent's phone.
    h.input(t, &info("pf2", 3));
    let out = h.out();
    assert_eq!(codes(&out), vec![200]);
    assert!(requests(&out, &Method::Info).is_empty(), "not relayed");
    assert!(matches!(
        &media(&mut h)[..],
        [MediaCommand::VideoKeyframe {
            from: LegId::Caller,
            ..
        }]
    ));
}
