//! RTP load through the engine's media plane, with the load generator in its own process.
//!
//! N anchored calls run in a child process pinned to CPU 0: the production media plane
//! (`dasan::driver::media::MediaPlane`), each call with its caller and agent legs' RTP and
//! RTCP sockets. This process, pinned to CPU 1, plays every call's two phones: G.711, one
//! 160-byte packet per 20 ms each way, phones not synchronised (every millisecond a
//! twentieth of the calls send). It sends with `sendmmsg` from a few sockets and reads with
//! `recvmmsg`; the payload carries the moment of sending, and the kernel stamps each
//! arrival (`SO_TIMESTAMPNS`), so the delay measured is send -> arrival at the receiving
//! phone's socket: what the relay (and loopback) add, not how late this process reads.
//! When this process falls behind its own schedule it says so on its own line.
//!
//!   rtpload CALLS SECONDS [--srtp] [--workers N]   (bounded: CALLS ≤ 5000, SECONDS ≤ 120)
//!
//! `--srtp`: both legs of every call keyed (SDES, AES_CM_128_HMAC_SHA1_80), so the relay
//! unprotects and protects every packet. `--workers`: the media plane's relay threads in the
//! child (default 1: the child has one core).
//!
//! Ports: the relay's RTP ports are taken outside the kernel's ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`), where the phones' sockets land.

use dasan::b2bua::{MediaCommand, MusicRef};
use dasan::driver::media::{MediaEvent, MediaPlane, Prompts};
use dasan::driver::udp::{send_batch, set_int_opt, RecvBatch};
use dasan::media::ports::{ephemeral_ports, outside_ephemeral, PortPool};
use dasan::media::rtp::{build_rtp, parse_rtp};
use dasan::media::sdp::{Codec, Direction, Negotiated};
use dasan::media::srtp::{KeySalt, LegSrtp, SrtpKeys, Suite};
use dasan::util::procstat::cpu_seconds;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
/// Phone sockets per side: few enough that each `sendmmsg` carries a dozen packets or more.
const PHONE_SOCKETS: usize = 4;
const FRAME_MS: u64 = 20;

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

/// A leg's keys (the relay's view) and the phone's context for it (its view: it sends with
/// the leg's `remote` key and receives with its `local` one). Both processes derive them
/// from the call's number.
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

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time of the kernel thread that takes over softirq work on `cpu` when it piles up:
/// relay work that the relay process's own time does not show.
fn ksoftirqd_seconds(cpu: usize) -> f64 {
    let name = format!("ksoftirqd/{cpu}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    for e in dir.flatten() {
        let p = e.path();
        if std::fs::read_to_string(p.join("comm")).is_ok_and(|c| c.trim() == name) {
            let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
            let rest = stat.rsplit_once(')').map_or("", |r| r.1);
            let f: Vec<f64> = rest
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            // SAFETY: sysconf only reads a system constant.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
            return (f.get(10).unwrap_or(&0.0) + f.get(11).unwrap_or(&0.0)) / hz.max(1.0);
        }
    }
    0.0
}

/// Datagrams the kernel dropped on sockets bound to `ports` on loopback (full receive
/// buffers), from `/proc/net/udp`.
fn socket_drops(ports: &[u16]) -> u64 {
    let set: std::collections::HashSet<u16> = ports.iter().copied().collect();
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            set.contains(&port)
                .then(|| f.last()?.parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

/// The relay process: one core, the production media plane, a call per line of stdin
/// ("CALLER_PHONE_PORT AGENT_PHONE_PORT"), the relay's ports back on stdout.
fn relay(calls: usize, srtp: bool, workers: usize) {
    let pinned = dasan::util::procstat::pin_to_cpu(0);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtpload relay: runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(async move {
        let (ev_tx, mut ev_rx) = tokio::sync::mpsc::channel::<MediaEvent>(4096);
        let prompts = Arc::new(Prompts {
            by_name: HashMap::new(),
            ringback: dasan::media::prompt::ringback(),
            waiting: None,
        });
        let relayed = prometheus::IntCounter::new("relayed", "relayed").expect("counter");
        let mut plane = MediaPlane::new(prompts, ev_tx, relayed.clone(), std::env::temp_dir())
            .with_workers(workers);
        let (low, high) = outside_ephemeral();
        let mut ports = PortPool::new(low, high).expect("port range");
        let rss0 = rss_kb();
        let mut lines = dasan::util::procstat::stdin_lines();
        let mut out = std::io::stdout().lock();
        for call in 0..calls {
            let Some(line) = lines.recv().await else {
                return;
            };
            let p: Vec<u16> = line.split(' ').filter_map(|x| x.parse().ok()).collect();
            let [caller_phone, agent_phone] = p[..] else {
                eprintln!("rtpload relay: bad line {line:?}");
                std::process::exit(1);
            };
            let (cp, ap) = match (ports.allocate(), ports.allocate()) {
                (Ok(c), Ok(a)) => (c, a),
                _ => {
                    eprintln!("rtpload relay: out of ports in {low}-{high}");
                    std::process::exit(1);
                }
            };
            let mut caller = neg(SocketAddr::new(LOOPBACK, caller_phone));
            let mut agent = neg(SocketAddr::new(LOOPBACK, agent_phone));
            if srtp {
                caller.srtp = Some(keyed(call, 1).0);
                agent.srtp = Some(keyed(call, 2).0);
            }
            let started = plane.execute(MediaCommand::Start {
                call: call as u64,
                ip: LOOPBACK,
                caller_port: cp,
                agent_port: ap,
                caller,
                signalling: LOOPBACK,
                timeout: Duration::from_secs(60),
                music: MusicRef::Silence,
            });
            let attached = plane.execute(MediaCommand::Attach {
                call: call as u64,
                agent,
                signalling: LOOPBACK,
                record: None,
            });
            if let Err((_, e)) = started.and(attached) {
                eprintln!("rtpload relay: call {call}: {e}");
                std::process::exit(1);
            }
            let _ = writeln!(out, "{cp} {ap}");
        }
        // Let the calls' media settle before measuring memory.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rss1 = rss_kb();
        let _ = writeln!(
            out,
            "ready {} {rss0} {rss1}",
            if pinned { "pinned" } else { "unpinned" }
        );
        let _ = out.flush();
        drop(out);
        let (mut cpu0, mut relayed0) = (0.0, 0);
        while let Some(line) = lines.recv().await {
            match line.as_str() {
                "start" => {
                    cpu0 = cpu_seconds();
                    relayed0 = relayed.get();
                }
                "stop" => {
                    println!(
                        "cpu {:.3} relayed {}",
                        cpu_seconds() - cpu0,
                        relayed.get() - relayed0
                    );
                    break;
                }
                _ => {}
            }
        }
        for call in 0..calls {
            let _ = plane.execute(MediaCommand::Stop { call: call as u64 });
        }
        while let Ok(ev) = ev_rx.try_recv() {
            eprintln!("rtpload relay: media event {ev:?}");
        }
    });
}

/// What the phones saw in one direction.
#[derive(Default)]
struct Direction_ {
    received: u64,
    /// Send -> arrival, µs.
    delay_us: Vec<u32>,
    /// |transit(i) - transit(i-1)| for consecutive packets of a stream, µs (RFC 3550's D).
    jitter_us: Vec<u32>,
}

fn quantile(v: &mut [u32], f: f64) -> u32 {
    if v.is_empty() {
        return 0;
    }
    let i = ((v.len() as f64 * f) as usize).min(v.len() - 1);
    *v.select_nth_unstable(i).1
}

struct Phones {
    /// [caller side, agent side] × PHONE_SOCKETS.
    socks: Vec<UdpSocket>,
}

fn flag(args: &[String], name: &str) -> Option<usize> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let srtp = args.iter().any(|a| a == "--srtp");
    let workers = flag(&args, "--workers").unwrap_or(1).clamp(1, 64);
    if args.get(1).map(String::as_str) == Some("--relay") {
        match args.get(2).and_then(|n| n.parse().ok()) {
            Some(n) => relay(n, srtp, workers),
            None => eprintln!("usage: rtpload --relay CALLS"),
        }
        return;
    }
    // Positional numbers, wherever the flags are (not the value of --workers).
    let nums: Vec<u64> = args
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, _)| args[i - 1] != "--workers")
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    let (calls, seconds) = match nums[..] {
        [c, s] if (1..=5000).contains(&c) && (1..=120).contains(&s) => (c as usize, s),
        _ => {
            eprintln!("usage: rtpload CALLS(1-5000) SECONDS(1-120) [--srtp] [--workers N]");
            std::process::exit(2);
        }
    };
    generate(calls, seconds, srtp, workers);
}

fn generate(calls: usize, seconds: u64, srtp: bool, workers: usize) {
    let pinned = dasan::util::procstat::pin_to_cpu(1);
    let (rlo, rhi) = outside_ephemeral();
    let eph = ephemeral_ports();
    let capacity = (rhi as usize - rlo as usize) / 4;
    if calls > capacity {
        eprintln!(
            "rtpload: {calls} calls need {} relay ports; {rlo}-{rhi} (outside the kernel's ephemeral range {}) holds {capacity} calls",
            calls * 4,
            eph.map_or("unknown".into(), |(a, b)| format!("{a}-{b}"))
        );
        std::process::exit(2);
    }
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .args([
            "--relay",
            &calls.to_string(),
            "--workers",
            &workers.to_string(),
        ])
        .args(srtp.then_some("--srtp"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the relay process");
    let mut to_relay = child.stdin.take().expect("piped");
    let mut from_relay = BufReader::new(child.stdout.take().expect("piped"));
    let bind = || {
        let s = UdpSocket::bind((LOOPBACK, 0)).expect("bind loopback");
        s.set_nonblocking(true).expect("nonblocking");
        let fd = s.as_raw_fd();
        // Room for a burst of every call's packet (root may exceed rmem_max).
        let big = 32 << 20;
        if set_int_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, big).is_err() {
            let _ = set_int_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, big);
        }
        let _ = set_int_opt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 8 << 20);
        let _ = set_int_opt(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1);
        let _ = set_int_opt(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1);
        s
    };
    let phones = Phones {
        socks: (0..2 * PHONE_SOCKETS).map(|_| bind()).collect(),
    };
    let port = |s: &UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or(0);
    // Per call: the relay's caller and agent ports. By relay port: which call and which
    // direction arrives from it (0: caller -> agent, arriving from the agent leg's port).
    let mut relay_ports = Vec::with_capacity(calls);
    let mut from_port = vec![u32::MAX; 65536];
    let mut line = String::new();
    for call in 0..calls {
        let k = call % PHONE_SOCKETS;
        let (c, a) = (&phones.socks[k], &phones.socks[PHONE_SOCKETS + k]);
        writeln!(to_relay, "{} {}", port(c), port(a)).expect("to the relay");
        line.clear();
        from_relay.read_line(&mut line).expect("from the relay");
        let p: Vec<u16> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let [cp, ap] = p[..] else {
            eprintln!("rtpload: the relay said {line:?}");
            std::process::exit(1);
        };
        relay_ports.push((cp, ap));
        from_port[ap as usize] = (call * 2) as u32;
        from_port[cp as usize] = (call * 2 + 1) as u32;
    }
    line.clear();
    from_relay.read_line(&mut line).expect("from the relay");
    let ready: Vec<&str> = line.split_whitespace().collect();
    let relay_pinned = ready.get(1) == Some(&"pinned");
    let rss: Vec<u64> = ready
        .iter()
        .skip(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    // The phones' SRTP contexts: [caller sends, agent sends, caller receives, agent receives].
    let mut ctx: Vec<Option<[LegSrtp; 4]>> = (0..calls)
        .map(|call| {
            srtp.then(|| {
                [
                    keyed(call, 1).1,
                    keyed(call, 2).1,
                    keyed(call, 1).1,
                    keyed(call, 2).1,
                ]
            })
        })
        .collect();

    writeln!(to_relay, "start").expect("to the relay");
    let cpu_self0 = cpu_seconds();
    let soft0 = ksoftirqd_seconds(0);
    let t0 = wall_ns();
    let total_ms = seconds * 1000;
    let drain_ms = total_ms + 500;
    let mut next_ms = 0u64;
    let mut late_ticks = 0u64;
    let mut send_late_us: Vec<u32> = Vec::with_capacity(total_ms as usize);
    let mut read_late_us: Vec<u32> = Vec::new();
    let mut sent = 0u64;
    let mut dirs = [Direction_::default(), Direction_::default()];
    // Per stream (call × direction): the last frame and its transit, ns.
    let mut last: Vec<(u32, i64)> = vec![(u32::MAX, 0); calls * 2];
    let mut drops_seen = [0u32; 2 * PHONE_SOCKETS];
    let mut worst_by_second = vec![0u32; seconds as usize + 1];
    let mut batch = RecvBatch::new(64, 512);
    let mut bufs: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 2 * PHONE_SOCKETS];
    let mut payload = [0xFFu8; 160];
    loop {
        let now_ms = (wall_ns().saturating_sub(t0)) / 1_000_000;
        if now_ms >= drain_ms {
            break;
        }
        // Busy polling: this process has its core to itself, and a phone that never
        // sleeps costs the relay no wake-up per packet (on loopback the sender pays for
        // waking the receiver, which a network card would not make it do).
        {
            {
                // Every tick that is due, even if several came at once.
                let due = (wall_ns().saturating_sub(t0)) / 1_000_000;
                while next_ms <= due && next_ms < total_ms {
                    let frame = next_ms / FRAME_MS;
                    let slot = (next_ms % FRAME_MS) as usize;
                    if due > next_ms + 1 {
                        late_ticks += 1;
                    }
                    for b in bufs.iter_mut() {
                        b.clear();
                    }
                    let stamp = wall_ns();
                    send_late_us
                        .push((stamp.saturating_sub(t0 + next_ms * 1_000_000) / 1000) as u32);
                    for call in (slot..calls).step_by(FRAME_MS as usize) {
                        let k = call % PHONE_SOCKETS;
                        payload[..8].copy_from_slice(&wall_ns().to_le_bytes());
                        payload[8..12].copy_from_slice(&(frame as u32).to_le_bytes());
                        let (seq, ts) = (frame as u16, frame as u32 * 160);
                        for side in 0..2 {
                            let ssrc = 0x1000_0000 * (side as u32 + 1) + call as u32;
                            let mut p = build_rtp(0, false, seq, ts, ssrc, &payload);
                            if let Some(c) = ctx[call].as_mut() {
                                p = c[side].protect_rtp(&p).unwrap_or_default();
                            }
                            bufs[side * PHONE_SOCKETS + k].push(p);
                        }
                    }
                    for (i, b) in bufs.iter().enumerate() {
                        let (side, k) = (i / PHONE_SOCKETS, i % PHONE_SOCKETS);
                        let to: Vec<(SocketAddr, &[u8])> = (slot..calls)
                            .step_by(FRAME_MS as usize)
                            .filter(|c| c % PHONE_SOCKETS == k)
                            .zip(b)
                            .map(|(c, p)| {
                                let port = if side == 0 {
                                    relay_ports[c].0
                                } else {
                                    relay_ports[c].1
                                };
                                (SocketAddr::new(LOOPBACK, port), &p[..])
                            })
                            .collect();
                        sent += send_batch(phones.socks[i].as_raw_fd(), &to) as u64;
                    }
                    next_ms += 1;
                }
            }
        }
        for (sock, seen) in phones.socks.iter().zip(drops_seen.iter_mut()) {
            let fd = sock.as_raw_fd();
            while let Ok(n) = batch.recv(fd) {
                let now = wall_ns();
                for j in 0..n {
                    let Some(d) = batch.get(j) else { continue };
                    if let Some(dr) = d.dropped {
                        *seen = (*seen).max(dr);
                    }
                    let Some(&stream) = from_port.get(d.src.port() as usize) else {
                        continue;
                    };
                    if stream == u32::MAX {
                        continue;
                    }
                    let (call, dir) = (stream as usize / 2, stream as usize % 2);
                    let plain;
                    let data = match ctx[call].as_mut() {
                        None => d.data,
                        Some(c) => match c[3 - dir].unprotect_rtp(d.data) {
                            Some(p) => {
                                plain = p;
                                &plain[..]
                            }
                            None => continue,
                        },
                    };
                    let Some(h) = parse_rtp(data) else { continue };
                    let Some(body) = data.get(h.payload_offset..h.payload_offset + 12) else {
                        continue;
                    };
                    let sent_ns = u64::from_le_bytes(body[..8].try_into().unwrap_or([0; 8]));
                    let frame = u32::from_le_bytes(body[8..12].try_into().unwrap_or([0; 4]));
                    let arrived = d.stamp.map_or(now, |s| s.as_nanos() as u64);
                    read_late_us.push((now.saturating_sub(arrived) / 1000) as u32);
                    let transit = arrived as i64 - sent_ns as i64;
                    let dir_stat = &mut dirs[dir];
                    dir_stat.received += 1;
                    dir_stat.delay_us.push((transit.max(0) / 1000) as u32);
                    let sec = (sent_ns.saturating_sub(t0) / 1_000_000_000) as usize;
                    if let Some(m) = worst_by_second.get_mut(sec) {
                        *m = (*m).max((transit.max(0) / 1000) as u32);
                    }
                    let prev = &mut last[stream as usize];
                    if prev.0.wrapping_add(1) == frame {
                        dir_stat
                            .jitter_us
                            .push(((transit - prev.1).unsigned_abs() / 1000) as u32);
                    }
                    *prev = (frame, transit);
                }
                if n < 64 {
                    break;
                }
            }
        }
    }
    let window_s = (wall_ns() - t0) as f64 / 1e9;
    let soft = ksoftirqd_seconds(0) - soft0;
    let cpu_self = cpu_seconds() - cpu_self0;
    let relay_port_list: Vec<u16> = relay_ports
        .iter()
        .flat_map(|(c, a)| [*c, *a, c + 1, a + 1])
        .collect();
    let relay_drops = socket_drops(&relay_port_list);
    writeln!(to_relay, "stop").expect("to the relay");
    let (mut relay_cpu, mut relayed) = (None, 0u64);
    for l in from_relay.lines().map_while(Result::ok) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let ["cpu", c, "relayed", r] = f[..] {
            relay_cpu = c.parse::<f64>().ok();
            relayed = r.parse().unwrap_or(0);
        }
    }
    drop(to_relay);
    let _ = child.wait();

    let phone_drops: u64 = drops_seen.iter().map(|d| *d as u64).sum();
    let received = dirs[0].received + dirs[1].received;
    let offered = calls as u64 * 2 * 1000 / FRAME_MS;
    println!(
        "calls          {calls} for {seconds} s, G.711 20 ms both ways: {offered} packets/s offered to the relay{}",
        if srtp { ", SRTP on every leg" } else { ", plain RTP" }
    );
    println!(
        "ports          relay {rlo}-{rhi}, kernel ephemeral {} (phones' sockets): no overlap",
        eph.map_or("unknown".into(), |(a, b)| format!("{a}-{b}"))
    );
    println!("sent           {sent} packets, relayed {relayed}, received {received}");
    let lost = sent.saturating_sub(received);
    println!(
        "loss           {:.4} % ({lost}): {relay_drops} dropped at the relay's sockets (relay behind), {phone_drops} at the phones' sockets (generator behind), {} elsewhere",
        100.0 * lost as f64 / sent.max(1) as f64,
        lost.saturating_sub(relay_drops + phone_drops)
    );
    for (d, name) in dirs.iter_mut().zip(["caller -> agent", "agent -> caller"]) {
        let (p50, p99, p999) = (
            quantile(&mut d.delay_us, 0.5),
            quantile(&mut d.delay_us, 0.99),
            quantile(&mut d.delay_us, 0.999),
        );
        let max = d.delay_us.iter().max().copied().unwrap_or(0);
        let j99 = quantile(&mut d.jitter_us, 0.99);
        let j999 = quantile(&mut d.jitter_us, 0.999);
        println!(
            "{name}: delay p50 {p50} us, p99 {p99} us, p99.9 {p999} us, max {max} us; added jitter |D| p99 {j99} us, p99.9 {j999} us"
        );
    }
    println!(
        "worst delay    by second of the run, ms: {}",
        worst_by_second
            .iter()
            .map(|us| format!("{:.1}", *us as f64 / 1000.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut all: Vec<u32> = dirs
        .iter()
        .flat_map(|d| d.delay_us.iter().copied())
        .collect();
    let spread = quantile(&mut all, 0.99).saturating_sub(quantile(&mut all, 0.5));
    println!("delay spread   p99 - p50 = {spread} us (send -> kernel arrival at the phone)");
    println!(
        "generator      send p99 {} us, max {} us behind schedule; {late_ticks} of {total_ms} ticks > 1 ms late; reads p99 {} us after arrival; {:.0} % of CPU 1{}",
        quantile(&mut send_late_us, 0.99),
        send_late_us.iter().max().copied().unwrap_or(0),
        quantile(&mut read_late_us, 0.99),
        100.0 * cpu_self / window_s,
        if pinned { " (pinned)" } else { " (not pinned)" }
    );
    let pps = relayed as f64 / window_s;
    match relay_cpu {
        Some(r) => {
            let busy = r + soft;
            println!(
                "relay          {pps:.0} packets/s relayed; process {r:.2} s CPU ({:.0} % of a core, its system calls' kernel work included) + {soft:.2} s in ksoftirqd/0{}",
                100.0 * r / window_s,
                if relay_pinned { "; pinned to CPU 0" } else { "; NOT pinned" }
            );
            println!(
                "per packet     {:.2} us of CPU (read + rewrite + send, kernel included) -> {:.0} packets/s per core",
                1e6 * busy / relayed.max(1) as f64,
                relayed as f64 / busy.max(1e-9)
            );
        }
        None => println!("relay          CPU not reported"),
    }
    if let [before, after] = rss[..] {
        println!(
            "memory         relay RSS {before} kB -> {after} kB with {calls} calls: {:.1} kB per anchored call",
            after.saturating_sub(before) as f64 / calls as f64
        );
    }
}
