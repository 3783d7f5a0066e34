//! Video relay load with the generator in its own process: N video calls relayed by the
//! engine's media plane (`dasan::driver::media::MediaPlane`, one relay task per call with
//! its four sockets, as in production) in a child process on one core, fed by simulated
//! video phones in this process on the other core. Each phone sends a 30 fps stream at the
//! given bitrate (each frame split into packets of at most 1,100 bytes, the send time in
//! the payload); the phone at the other end measures loss and the delay from send to
//! receive, which includes the generator's own scheduling, so the relay's added delay is
//! at most that. Signalling is not involved.
//!
//!   videoload CALLS SECONDS [--kbps 600] [--fps 30]   (bounded: CALLS ≤ 2000, SECONDS ≤ 120)
//!
//! The child is this binary with `--relay CALLS`: it reads the phones' ports on stdin, says
//! the relay's ports on stdout, and at the end its CPU time between `start` and `stop`.

use dasan::b2bua::MediaCommand;
use dasan::driver::media::{MediaEvent, MediaPlane, Prompts};
use dasan::media::ports::PortPool;
use dasan::media::rtp::{build_rtp, parse_rtp};
use dasan::media::sdp::{Direction, KeyframeBy, VideoCodec, VideoNeg};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const PT: u8 = 96;
const MAX_PAYLOAD: usize = 1100;

use dasan::util::procstat::cpu_seconds;

fn neg(port: u16) -> VideoNeg {
    VideoNeg {
        codec: VideoCodec::Vp8,
        pt: PT,
        fmtp: None,
        remote: (LOOPBACK, port),
        direction: Direction::SendRecv,
        kbps: None,
        keyframe: KeyframeBy::Pli,
    }
}

/// The relay process: one core, the production media plane, a video call per line of
/// stdin ("CALLER_PHONE_PORT AGENT_PHONE_PORT"), until stdin closes.
fn relay(calls: usize) {
    let pinned = dasan::util::procstat::pin_to_cpu(0);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("videoload relay: runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(async move {
        let metrics = dasan::metrics::Metrics::new().expect("metrics registry");
        let (ev_tx, _ev_rx) = mpsc::channel::<MediaEvent>(4096);
        let prompts = Arc::new(Prompts {
            by_name: HashMap::new(),
            ringback: dasan::media::prompt::ringback(),
            waiting: None,
        });
        let relayed = prometheus::IntCounter::new("relayed", "relayed").expect("counter");
        let mut plane = MediaPlane::new(prompts, ev_tx, relayed, std::env::temp_dir())
            .with_video_counters(&metrics);
        let (low, high) = dasan::media::ports::outside_ephemeral();
        let mut ports = PortPool::new(low, high).expect("port range");
        let mut lines = dasan::util::procstat::stdin_lines();
        let mut out = std::io::stdout().lock();
        for call in 0..calls as u64 {
            let Some(line) = lines.recv().await else {
                return;
            };
            let p: Vec<u16> = line.split(' ').filter_map(|x| x.parse().ok()).collect();
            let [caller_phone, agent_phone] = p[..] else {
                eprintln!("videoload relay: bad line {line:?}");
                std::process::exit(1);
            };
            let (cp, ap) = match (ports.allocate(), ports.allocate()) {
                (Ok(c), Ok(a)) => (c, a),
                _ => {
                    eprintln!("videoload relay: out of ports");
                    std::process::exit(1);
                }
            };
            let started = plane.execute(MediaCommand::VideoStart {
                call,
                ip: LOOPBACK,
                caller_port: cp,
                agent_port: ap,
                caller: neg(caller_phone),
                signalling: LOOPBACK,
                timeout: Duration::from_secs(60),
                record: String::new(),
                waiting: false,
            });
            let attached = plane.execute(MediaCommand::VideoAttach {
                call,
                agent: neg(agent_phone),
                offered_pt: PT,
                signalling: LOOPBACK,
            });
            if let Err((_, e)) = started.and(attached) {
                eprintln!("videoload relay: call {call}: {e}");
                std::process::exit(1);
            }
            let _ = writeln!(out, "{cp} {ap}");
        }
        let _ = writeln!(out, "ready {}", if pinned { "pinned" } else { "unpinned" });
        let _ = out.flush();
        drop(out);
        let mut cpu0 = 0.0;
        while let Some(line) = lines.recv().await {
            match line.as_str() {
                "start" => cpu0 = cpu_seconds(),
                "stop" => {
                    println!("cpu {:.3}", cpu_seconds() - cpu0);
                    break;
                }
                _ => {}
            }
        }
    });
}

#[derive(Default)]
struct RxStat {
    received: u64,
    delays_us: Vec<u32>,
}

async fn receiver(sock: Arc<UdpSocket>, t0: Instant, until: Instant) -> RxStat {
    let mut buf = [0u8; 2048];
    let mut st = RxStat::default();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let Ok(Ok((n, _))) = tokio::time::timeout(left, sock.recv_from(&mut buf)).await else {
            break;
        };
        let Some(h) = parse_rtp(&buf[..n]) else {
            continue;
        };
        let Some(stamp) = buf.get(h.payload_offset..h.payload_offset + 8) else {
            continue;
        };
        let sent_us = u64::from_le_bytes(stamp.try_into().unwrap_or([0; 8]));
        st.received += 1;
        st.delays_us
            .push((t0.elapsed().as_micros() as u64).saturating_sub(sent_us) as u32);
    }
    st
}

fn flag(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--relay") {
        match args.get(2).and_then(|n| n.parse().ok()) {
            Some(n) => relay(n),
            None => eprintln!("usage: videoload --relay CALLS"),
        }
        return;
    }
    let (calls, seconds) = match (
        args.get(1).and_then(|a| a.parse::<usize>().ok()),
        args.get(2).and_then(|a| a.parse::<u64>().ok()),
    ) {
        (Some(c), Some(s)) if (1..=2000).contains(&c) && (1..=120).contains(&s) => (c, s),
        _ => {
            eprintln!("usage: videoload CALLS(1-2000) SECONDS(1-120) [--kbps 600] [--fps 30]");
            std::process::exit(2);
        }
    };
    let kbps = flag("--kbps", 600).clamp(50, 8000);
    let fps = flag("--fps", 30).clamp(1, 60);
    let pinned = dasan::util::procstat::pin_to_cpu(1);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("videoload: runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(generate(calls, seconds, kbps, fps, pinned));
}

async fn generate(calls: usize, seconds: u64, kbps: u64, fps: u64, pinned: bool) {
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .args(["--relay", &calls.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the relay process");
    let mut to_relay = child.stdin.take().expect("piped");
    let mut from_relay = BufReader::new(child.stdout.take().expect("piped"));
    let mut phones = Vec::with_capacity(calls);
    let mut line = String::new();
    for _ in 0..calls {
        let bind = || async { UdpSocket::bind((LOOPBACK, 0)).await.expect("bind loopback") };
        let (c, a) = (Arc::new(bind().await), Arc::new(bind().await));
        let port = |s: &UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or(0);
        writeln!(to_relay, "{} {}", port(&c), port(&a)).expect("to the relay");
        line.clear();
        from_relay.read_line(&mut line).expect("from the relay");
        let p: Vec<u16> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let [cp, ap] = p[..] else {
            eprintln!("videoload: the relay said {line:?}");
            std::process::exit(1);
        };
        phones.push((
            c,
            SocketAddr::new(LOOPBACK, cp),
            a,
            SocketAddr::new(LOOPBACK, ap),
        ));
    }
    line.clear();
    from_relay.read_line(&mut line).expect("from the relay");
    let relay_pinned = line.trim() == "ready pinned";
    // A frame's bytes and packets at this bitrate and rate.
    let frame_bytes = (kbps * 1000 / 8 / fps) as usize;
    let per_frame = frame_bytes.div_ceil(MAX_PAYLOAD).max(1);
    let payload = vec![0u8; frame_bytes / per_frame];
    let period_ms = 1000 / fps;
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(seconds) + Duration::from_millis(500);
    let receivers: Vec<_> = phones
        .iter()
        .flat_map(|(c, _, a, _)| [c.clone(), a.clone()])
        .map(|s| tokio::spawn(receiver(s, t0, until)))
        .collect();
    writeln!(to_relay, "start").expect("to the relay");
    let cpu0 = cpu_seconds();
    // Phones are not synchronised: every millisecond, the calls in that slot send a frame
    // both ways, so each stream sends one frame per period.
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut late_ticks = 0u64;
    let mut sent = 0u64;
    let mut p = payload.clone();
    let total_ms = seconds * 1000;
    for ms in 0..total_ms {
        tick.tick().await;
        if Instant::now() > t0 + Duration::from_millis(ms + period_ms) {
            late_ticks += 1;
        }
        let frame = ms / period_ms;
        let slot = (ms % period_ms) as usize;
        for (i, (c, cp, a, ap)) in phones
            .iter()
            .enumerate()
            .filter(|(i, _)| i % period_ms as usize == slot)
        {
            for k in 0..per_frame {
                let seq = (frame as usize * per_frame + k) as u16;
                let ts = (frame * 90_000 / fps) as u32;
                let last = k + 1 == per_frame;
                p[..8].copy_from_slice(&(t0.elapsed().as_micros() as u64).to_le_bytes());
                let to_c = build_rtp(PT, last, seq, ts, 0x1000 + i as u32, &p);
                let to_a = build_rtp(PT, last, seq, ts, 0x8000 + i as u32, &p);
                let _ = c.try_send_to(&to_c, *cp);
                let _ = a.try_send_to(&to_a, *ap);
                sent += 2;
            }
        }
    }
    let cpu = cpu_seconds() - cpu0;
    writeln!(to_relay, "stop").expect("to the relay");
    let mut received = 0u64;
    let mut delays: Vec<u32> = Vec::new();
    for r in receivers {
        let st = r.await.unwrap_or_default();
        received += st.received;
        delays.extend(st.delays_us);
    }
    let mut relay_cpu = None;
    for l in from_relay.lines().map_while(Result::ok) {
        if let Some(v) = l.strip_prefix("cpu ") {
            relay_cpu = v.trim().parse::<f64>().ok();
        }
    }
    drop(to_relay);
    let _ = child.wait();
    delays.sort_unstable();
    let q = |f: f64| {
        delays
            .get(((delays.len() as f64 * f) as usize).min(delays.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "calls          {calls} video calls for {seconds} s: {fps} fps, {kbps} kbit/s each way, {per_frame} packets a frame ({} bytes)",
        payload.len()
    );
    println!(
        "offered        {} packets/s, {:.0} Mbit/s through the relay",
        calls as u64 * 2 * fps * per_frame as u64,
        (calls as u64 * 2 * kbps) as f64 / 1000.0
    );
    println!("sent           {sent} packets, received {received}");
    println!(
        "loss           {:.4} %",
        100.0 * sent.saturating_sub(received) as f64 / sent.max(1) as f64
    );
    println!(
        "delay          p50 {} us, p99 {} us, p99.9 {} us, max {} us (phone send -> phone receive through the relay; includes the generator's own scheduling)",
        q(0.5),
        q(0.99),
        q(0.999),
        delays.last().copied().unwrap_or(0)
    );
    println!(
        "generator      {late_ticks} of {total_ms} 1 ms ticks more than a frame late; {cpu:.2} s CPU ({:.0} % of a core){}",
        100.0 * cpu / seconds as f64,
        if pinned { ", pinned to CPU 1" } else { "" }
    );
    match relay_cpu {
        Some(r) => println!(
            "relay process  {r:.2} s CPU over {seconds} s = {:.0} % of one core{} -> {:.0} calls per core at this rate",
            100.0 * r / seconds as f64,
            if relay_pinned { " (pinned to CPU 0)" } else { "" },
            calls as f64 / (r / seconds as f64).max(1e-9)
        ),
        None => println!("relay process  CPU not reported"),
    }
}
