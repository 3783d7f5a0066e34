//! RTP load through the engine's media plane: N anchored calls, each a real call media task
//! (`dasan::driver::media::MediaPlane`) with its RTP and RTCP sockets, fed by simulated phones
//! on loopback sending G.711 every 20 ms in both directions. Reports loss and jitter seen by
//! the receiving phones. Signalling is not involved: this measures the relay path alone.
//!
//!   rtpload CALLS SECONDS [--srtp]     (bounded: CALLS ≤ 5000, SECONDS ≤ 120)
//!
//! `--srtp`: both legs of every call keyed (SDES, AES_CM_128_HMAC_SHA1_80), so the relay
//! unprotects and protects every packet; the phones protect what they send and unprotect
//! what they receive (their cost is in the process CPU too).

use dasan::b2bua::{MediaCommand, MusicRef};
use dasan::driver::media::{MediaEvent, MediaPlane, Prompts};
use dasan::media::ports::PortPool;
use dasan::media::rtp::{build_rtp, parse_rtp};
use dasan::media::sdp::{Codec, Direction, Negotiated};
use dasan::media::srtp::{KeySalt, LegSrtp, SrtpKeys, Suite};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

fn neg(remote: SocketAddr) -> Negotiated {
    Negotiated {
        codec: Codec::Pcmu,
        pt: 0,
        dtmf: None,
        direction: Direction::SendRecv,
        remote: (remote.ip(), remote.port()),
        savp: false,
        crypto: None,
        srtp: None,
    }
}

fn addr_of(s: &UdpSocket) -> (std::net::IpAddr, u16) {
    let a = s.local_addr().expect("addr");
    (a.ip(), a.port())
}

/// What one receiving phone saw: how many packets, and each packet's delay from the
/// moment the sending phone sent it (carried in the payload) to its arrival, in µs.
#[derive(Default, Clone)]
struct RxStat {
    received: u64,
    delays_us: Vec<u32>,
}

/// A leg's keys (the relay's view) and the phone's context for it (its view: it sends with
/// the leg's `remote` key and receives with its `local` one).
fn keyed(call: usize, leg: u8) -> (SrtpKeys, LegSrtp) {
    let mut remote = [leg; 30];
    let mut local = [leg ^ 0x80; 30];
    remote[..8].copy_from_slice(&(call as u64).to_le_bytes());
    local[..8].copy_from_slice(&(call as u64).to_le_bytes());
    let keys = SrtpKeys {
        suite: Suite::AesCm128HmacSha1_80,
        tag: 1,
        remote: KeySalt(remote),
        local: KeySalt(local),
    };
    let phone = LegSrtp::new(&SrtpKeys {
        remote: keys.local.clone(),
        local: keys.remote.clone(),
        ..keys.clone()
    })
    .expect("phone context");
    (keys, phone)
}

use dasan::util::procstat::cpu_seconds;

async fn receiver(
    sock: Arc<UdpSocket>,
    t0: Instant,
    until: Instant,
    mut srtp: Option<LegSrtp>,
) -> RxStat {
    let mut buf = [0u8; 512];
    let mut st = RxStat::default();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let Ok(Ok((n, _))) = tokio::time::timeout(left, sock.recv_from(&mut buf)).await else {
            break;
        };
        let plain;
        let buf = match srtp.as_mut() {
            None => &buf[..n],
            Some(ctx) => match ctx.unprotect_rtp(&buf[..n]) {
                Some(p) => {
                    plain = p;
                    &plain[..]
                }
                None => continue,
            },
        };
        let Some(h) = parse_rtp(buf) else {
            continue;
        };
        let Some(stamp) = buf.get(h.payload_offset..h.payload_offset + 8) else {
            continue;
        };
        let sent_us = u64::from_le_bytes(stamp.try_into().unwrap_or([0; 8]));
        let now_us = t0.elapsed().as_micros() as u64;
        st.received += 1;
        st.delays_us.push(now_us.saturating_sub(sent_us) as u32);
    }
    st
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let srtp = std::env::args().any(|a| a == "--srtp");
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (calls, seconds) = match args[..] {
        [c, s] if (1..=5000).contains(&c) && (1..=120).contains(&s) => (c as usize, s),
        _ => {
            eprintln!("usage: rtpload CALLS(1-5000) SECONDS(1-120) [--srtp]");
            std::process::exit(2);
        }
    };
    let lo: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let relayed = prometheus::IntCounter::new("relayed", "relayed").expect("counter");
    let (ev_tx, mut ev_rx) = mpsc::channel::<MediaEvent>(1024);
    let prompts = Arc::new(Prompts {
        by_name: HashMap::new(),
        ringback: dasan::media::prompt::ringback(),
        waiting: None,
    });
    let mut plane = MediaPlane::new(prompts, ev_tx, relayed.clone(), std::env::temp_dir());
    // Below the kernel's ephemeral ports (32768+), where the phones' sockets land.
    let mut ports = PortPool::new(12000, 31999).expect("port range");
    let ip: std::net::IpAddr = "127.0.0.1".parse().expect("literal");
    let mut phones = Vec::with_capacity(calls);
    // Per call: the phones' send contexts (caller, agent) and receive contexts.
    let mut send_ctx: Vec<Option<(LegSrtp, LegSrtp)>> = Vec::with_capacity(calls);
    let mut recv_ctx: Vec<Option<(LegSrtp, LegSrtp)>> = Vec::with_capacity(calls);
    for call in 0..calls {
        let mut caller_neg = neg(SocketAddr::from(([127, 0, 0, 1], 0)));
        let mut agent_neg = caller_neg.clone();
        if srtp {
            let (ck, c_rx) = keyed(call, 1);
            let (ak, a_rx) = keyed(call, 2);
            let (_, c_tx) = keyed(call, 1);
            let (_, a_tx) = keyed(call, 2);
            caller_neg.srtp = Some(ck);
            agent_neg.srtp = Some(ak);
            send_ctx.push(Some((c_tx, a_tx)));
            recv_ctx.push(Some((c_rx, a_rx)));
        } else {
            send_ctx.push(None);
            recv_ctx.push(None);
        }
        let bind = || async { UdpSocket::bind(lo).await.expect("bind loopback") };
        let (caller_phone, agent_phone) = (bind().await, bind().await);
        let (cp, ap) = (
            ports.allocate().expect("ports"),
            ports.allocate().expect("ports"),
        );
        let started = plane.execute(MediaCommand::Start {
            call: call as u64,
            ip,
            caller_port: cp,
            agent_port: ap,
            caller: Negotiated {
                remote: addr_of(&caller_phone),
                ..caller_neg
            },
            signalling: ip,
            timeout: Duration::from_secs(30),
            music: MusicRef::Silence,
        });
        let attached = plane.execute(MediaCommand::Attach {
            call: call as u64,
            agent: Negotiated {
                remote: addr_of(&agent_phone),
                ..agent_neg
            },
            signalling: ip,
            record: None,
        });
        if let Err((_, e)) = started.and(attached) {
            eprintln!("call {call}: {e}");
            std::process::exit(1);
        }
        phones.push((
            Arc::new(caller_phone),
            SocketAddr::new(ip, cp),
            Arc::new(agent_phone),
            SocketAddr::new(ip, ap),
        ));
    }
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(seconds) + Duration::from_millis(500);
    let mut receivers = Vec::new();
    for ((c, _, a, _), ctx) in phones.iter().zip(recv_ctx) {
        let (crx, arx) = match ctx {
            Some((c, a)) => (Some(c), Some(a)),
            None => (None, None),
        };
        receivers.push(tokio::spawn(receiver(c.clone(), t0, until, crx)));
        receivers.push(tokio::spawn(receiver(a.clone(), t0, until, arx)));
    }
    let cpu0 = cpu_seconds();
    // Phones are not synchronised: every millisecond, a twentieth of the calls send their
    // 20 ms packet in both directions, so each stream still sends one packet per 20 ms.
    let frames = seconds * 50;
    let mut payload = [0xFFu8; 160];
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut late_ticks = 0u64;
    for ms in 0..frames * 20 {
        tick.tick().await;
        let f = ms / 20;
        let expected_at = t0 + Duration::from_millis(ms);
        if Instant::now() > expected_at + Duration::from_millis(20) {
            late_ticks += 1;
        }
        let (seq, ts) = (f as u16, f as u32 * 160);
        let slot = (ms % 20) as usize;
        for (i, (c, cp, a, ap)) in phones.iter().enumerate().filter(|(i, _)| i % 20 == slot) {
            payload[..8].copy_from_slice(&(t0.elapsed().as_micros() as u64).to_le_bytes());
            let mut to_caller_leg = build_rtp(0, false, seq, ts, 0x1000 + i as u32, &payload);
            let mut to_agent_leg = build_rtp(0, false, seq, ts, 0x8000 + i as u32, &payload);
            if let Some((ctx, atx)) = send_ctx[i].as_mut() {
                to_caller_leg = ctx.protect_rtp(&to_caller_leg).unwrap_or_default();
                to_agent_leg = atx.protect_rtp(&to_agent_leg).unwrap_or_default();
            }
            let _ = c.try_send_to(&to_caller_leg, *cp);
            let _ = a.try_send_to(&to_agent_leg, *ap);
        }
    }
    let cpu = cpu_seconds() - cpu0;
    let mut received = 0u64;
    let mut delays: Vec<u32> = Vec::new();
    for r in receivers {
        let st = r.await.unwrap_or_default();
        received += st.received;
        delays.extend(st.delays_us);
    }
    for call in 0..calls {
        let _ = plane.execute(MediaCommand::Stop { call: call as u64 });
    }
    while let Ok(ev) = ev_rx.try_recv() {
        eprintln!("media event: {ev:?}");
    }
    delays.sort_unstable();
    let q = |f: f64| {
        delays
            .get(((delays.len() as f64 * f) as usize).min(delays.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let sent = frames * 2 * calls as u64;
    println!(
        "calls          {calls} for {seconds} s, {} packets/s offered through the relay",
        calls * 100
    );
    println!(
        "sent           {sent} packets, relayed {}, received {received}",
        relayed.get()
    );
    println!(
        "loss           {:.4} %",
        100.0 * (sent.saturating_sub(received)) as f64 / sent as f64
    );
    println!(
        "relay delay    p50 {} us, p99 {} us, p99.9 {} us (phone send -> phone receive, through the relay)",
        q(0.5),
        q(0.99),
        q(0.999)
    );
    println!(
        "added jitter   p99 - p50 = {} us",
        q(0.99).saturating_sub(q(0.5))
    );
    println!(
        "sender         {late_ticks} of {} 1 ms ticks more than 20 ms late (generator overload)",
        frames * 20
    );
    println!(
        "process CPU    {cpu:.2} s over {seconds} s ({:.0} % of one core), phones and relay{}",
        100.0 * cpu / seconds as f64,
        if srtp {
            ", SRTP on every leg"
        } else {
            ", plain RTP"
        }
    );
}
