//! REGISTER (and proxy-authenticated requests) through the `Registrar`: digest checks,
//! bindings, Contact and Expires handling. Records as in `dasan_fuzz::script`
//! (`@@<flow><wait>`, flows `a`/`b` for two phones, anything else a third address); each
//! payload is one message. `[auth]` is replaced with a correct Authorization value for
//! the message's method and URI, answering the registrar's last challenge (as 1001, or as
//! the user named right after it: `[auth]1002`), so the fuzzer gets past the digest and
//! into the bindings.
#![no_main]

use dasan::registrar::digest::authorization;
use dasan::registrar::Registrar;
use dasan::sip::build::Ids;
use dasan::sip::{Flow, Message, Method, Transport};
use dasan_fuzz::script::{contains, records, replace, request_line};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

const UNIX_NOW: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let agents = [
        ("1001".to_string(), "pw".to_string()),
        ("1002".to_string(), "pw".to_string()),
    ];
    let mut r = Registrar::new("dasan", &agents, 60, 3600, Ids::seeded(1));
    let start = Instant::now();
    let mut now = start;
    let mut challenge: Option<String> = None;
    for (directive, payload) in records(data) {
        let (f, wait) = match directive {
            Some(d) => (d.first().copied(), d.get(1).copied()),
            None => (None, None),
        };
        if let Some(w @ b'0'..=b'9') = wait {
            now += Duration::from_secs(1u64 << (2 * (w - b'0')));
        }
        let flow = match f {
            Some(b'a') => Flow::udp("192.0.2.1:5070".parse().unwrap()),
            Some(b'b') => Flow {
                transport: Transport::Tcp,
                remote: "192.0.2.2:5070".parse().unwrap(),
                conn: 2,
            },
            Some(b'c') => {
                let _ = r.connection_closed(2);
                continue;
            }
            _ => Flow::udp("203.0.113.5:5060".parse().unwrap()),
        };
        let mut msg = payload.to_vec();
        if contains(&msg, b"[auth]") {
            let (method, uri) = request_line(&msg);
            let user = if contains(&msg, b"[auth]1002") {
                "1002"
            } else {
                "1001"
            };
            let auth = challenge
                .as_deref()
                .and_then(|ch| authorization(ch, user, "pw", &method, &uri, "fz"))
                .unwrap_or_default();
            msg = replace(&msg, b"[auth]", auth.as_bytes());
        }
        let Ok(m) = Message::parse(&msg) else {
            continue;
        };
        let unix_now = UNIX_NOW + now.duration_since(start).as_secs();
        let resp = match m.method() {
            Some(Method::Register) => {
                let (resp, change) = r.handle(&m, flow, now, unix_now);
                if let Some((agent, _)) = change {
                    let _ = (
                        r.bindings(agent),
                        r.best_binding(agent),
                        r.next_expiry(agent),
                    );
                }
                resp
            }
            Some(_) => match r.authenticate(&m, flow, now, unix_now) {
                Ok(_) => continue,
                Err(resp) => resp,
            },
            None => continue,
        };
        if let Some(ch) = resp
            .header("WWW-Authenticate")
            .or(resp.header("Proxy-Authenticate"))
        {
            challenge = Some(ch.to_string());
        }
        // Our answer is valid SIP.
        Message::parse(&resp.to_bytes()).expect("the registrar's response parses");
        for a in 0..2 {
            let _ = r.expire(a, now);
        }
    }
});
