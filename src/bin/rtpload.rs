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
//!   rtpload CALLS SECONDS [--srtp] [--kernel] [--workers N]   (bounded: CALLS ≤ 5000, SECONDS ≤ 120)
//!
//! `--srtp`: both legs of every call keyed (SDES, AES_CM_128_HMAC_SHA1_80), so the relay
//! unprotects and protects every packet. `--kernel`: the media plane forwards bridged RTP in
//! the kernel (`[media] kernel_forward`, needs root); that work then runs in the softirq of
//! whoever sends, here the generator's CPU. `--workers`: the media plane's relay threads in
//! the child (default 1: the child has one core).
//!
//! Before the calls, the phones send to each other for 3 s with no relay between them, and
//! the time inside their `sendmmsg` per packet is measured (on loopback a send carries the
//! packet's whole delivery). What the relay adds per packet is then its process's CPU,
//! the softirq threads', and how much longer the phones' sends take with the relay
//! between them: with `--kernel` that is where the forwarding runs.
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
/// How a run is set up (the flags).
#[derive(Clone, Copy)]
struct Opts {
    srtp: bool,
    kernel: bool,
    workers: usize,
    /// The CPUs the relay process and the generator are pinned to.
    relay_cpu: usize,
    gen_cpu: usize,
    /// This run's share (K of N) of the relay port range, so that N runs at once (each
    /// with its own relay) never take the same ports.
    part: (u16, u16),
}

impl Opts {
    fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--workers".to_string(),
            self.workers.to_string(),
            "--relay-cpu".into(),
            self.relay_cpu.to_string(),
            "--part".into(),
            format!("{}/{}", self.part.0, self.part.1),
        ];
        a.extend(self.srtp.then(|| "--srtp".to_string()));
        a.extend(self.kernel.then(|| "--kernel".to_string()));
        a
    }

    /// The relay ports this run may take: its share of the range outside the kernel's
    /// ephemeral ports.
    fn relay_ports(&self) -> (u16, u16) {
        let (low, high) = outside_ephemeral();
        let (k, n) = self.part;
        let share = (high - low) / n;
        let from = low + share * (k - 1);
        (from, from + share - 1)
    }
}

fn relay(calls: usize, o: Opts) {
    let (srtp, kernel, workers) = (o.srtp, o.kernel, o.workers);
    let pinned = dasan::util::procstat::pin_to_cpu(o.relay_cpu);
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
        let kfwd = if kernel {
            match dasan::driver::kfwd::Kfwd::open(vec![(1, "lo".into())]) {
                Ok(k) => Some(Arc::new(k.with_stats())),
                Err(e) => {
                    eprintln!("rtpload relay: --kernel: {e}");
                    std::process::exit(1);
                }
            }
        } else {
            None
        };
        let mut plane = MediaPlane::new(prompts, ev_tx, relayed.clone(), std::env::temp_dir())
            .with_workers(workers)
            .with_kernel_forwarding(kfwd.clone());
        let (low, high) = o.relay_ports();
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
                    let cpu = cpu_seconds() - cpu0;
                    // Stopped calls hand in what the kernel forwarded for them.
                    for call in 0..calls {
                        let _ = plane.execute(MediaCommand::Stop { call: call as u64 });
                    }
                    // Until every call has ended (the count stops moving).
                    let mut last = u64::MAX;
                    for _ in 0..50 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let now = relayed.get();
                        if now == last {
                            break;
                        }
                        last = now;
                    }
                    let prog = kfwd
                        .as_ref()
                        .and_then(|k| k.run_stats())
                        .map_or(String::new(), |(ns, n)| format!(" prog {ns} {n}"));
                    println!("cpu {cpu:.3} relayed {}{prog}", relayed.get() - relayed0);
                    break;
                }
                _ => {}
            }
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
    let part = args
        .iter()
        .position(|a| a == "--part")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.split_once('/'))
        .and_then(|(k, n)| Some((k.parse::<u16>().ok()?, n.parse::<u16>().ok()?)))
        .filter(|(k, n)| (1..=8).contains(n) && (1..=*n).contains(k))
        .unwrap_or((1, 1));
    let o = Opts {
        srtp: args.iter().any(|a| a == "--srtp"),
        kernel: args.iter().any(|a| a == "--kernel"),
        workers: flag(&args, "--workers").unwrap_or(1).clamp(1, 64),
        relay_cpu: flag(&args, "--relay-cpu").unwrap_or(0),
        gen_cpu: flag(&args, "--gen-cpu").unwrap_or(1),
        part,
    };
    if args.get(1).map(String::as_str) == Some("--relay") {
        match args.get(2).and_then(|n| n.parse().ok()) {
            Some(n) => relay(n, o),
            None => eprintln!("usage: rtpload --relay CALLS"),
        }
        return;
    }
    // Positional numbers, wherever the flags are (not the value of --workers).
    let nums: Vec<u64> = args
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, _)| !args[i - 1].starts_with("--"))
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    let (calls, seconds) = match nums[..] {
        [c, s] if (1..=5000).contains(&c) && (1..=120).contains(&s) => (c as usize, s),
        _ => {
            eprintln!(
                "usage: rtpload CALLS(1-5000) SECONDS(1-120) [--srtp] [--kernel] [--workers N] [--relay-cpu C] [--gen-cpu C] [--part K/N]"
            );
            std::process::exit(2);
        }
    };
    generate(calls, seconds, o);
}

/// The phones alone: each side's sockets send every call's packets to the other side's
/// for `seconds`, on the calls' schedule, and read what arrives. The CPU this process
/// spends per packet is what the phones cost without a relay between them.
fn phones_only(phones: &Phones, calls: usize, seconds: u64) -> (u64, u64) {
    let (mut send_ns, mut sent) = (0u64, 0u64);
    let t0 = wall_ns();
    let total_ms = seconds * 1000;
    let mut next_ms = 0u64;
    let mut received = 0u64;
    let mut batch = RecvBatch::new(64, 512);
    let payload = [0xFFu8; 160];
    let addr = |s: &UdpSocket| s.local_addr().expect("bound");
    while (wall_ns() - t0) / 1_000_000 < total_ms + 200 {
        let due = (wall_ns() - t0) / 1_000_000;
        while next_ms <= due && next_ms < total_ms {
            let slot = (next_ms % FRAME_MS) as usize;
            let frame = next_ms / FRAME_MS;
            for i in 0..2 * PHONE_SOCKETS {
                let (side, k) = (i / PHONE_SOCKETS, i % PHONE_SOCKETS);
                let peer = addr(&phones.socks[(1 - side) * PHONE_SOCKETS + k]);
                let packets: Vec<Vec<u8>> = (slot..calls)
                    .step_by(FRAME_MS as usize)
                    .filter(|c| c % PHONE_SOCKETS == k)
                    .map(|c| {
                        build_rtp(
                            0,
                            false,
                            frame as u16,
                            frame as u32 * 160,
                            c as u32,
                            &payload,
                        )
                    })
                    .collect();
                let to: Vec<(SocketAddr, &[u8])> = packets.iter().map(|p| (peer, &p[..])).collect();
                let t = wall_ns();
                sent += send_batch(phones.socks[i].as_raw_fd(), &to) as u64;
                send_ns += wall_ns() - t;
            }
            next_ms += 1;
        }
        for sock in &phones.socks {
            while let Ok(n) = batch.recv(sock.as_raw_fd()) {
                received += n as u64;
                if n < 64 {
                    break;
                }
            }
        }
    }
    let _ = received;
    (send_ns, sent)
}

fn generate(calls: usize, seconds: u64, o: Opts) {
    let (srtp, kernel) = (o.srtp, o.kernel);
    let pinned = dasan::util::procstat::pin_to_cpu(o.gen_cpu);
    let (rlo, rhi) = o.relay_ports();
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
        .args(["--relay", &calls.to_string()])
        .args(o.args())
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

    let (alone_send_ns, alone_sent) = phones_only(&phones, calls, 3);
    let mut send_ns = 0u64;
    writeln!(to_relay, "start").expect("to the relay");
    let cpu_self0 = cpu_seconds();
    let soft0 = ksoftirqd_seconds(o.relay_cpu);
    let soft1_0 = ksoftirqd_seconds(o.gen_cpu);
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
                        let t = wall_ns();
                        sent += send_batch(phones.socks[i].as_raw_fd(), &to) as u64;
                        send_ns += wall_ns() - t;
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
    let soft = ksoftirqd_seconds(o.relay_cpu) - soft0;
    let soft1 = ksoftirqd_seconds(o.gen_cpu) - soft1_0;
    let cpu_self = cpu_seconds() - cpu_self0;
    let relay_port_list: Vec<u16> = relay_ports
        .iter()
        .flat_map(|(c, a)| [*c, *a, c + 1, a + 1])
        .collect();
    let relay_drops = socket_drops(&relay_port_list);
    writeln!(to_relay, "stop").expect("to the relay");
    let (mut relay_cpu, mut relayed, mut prog) = (None, 0u64, None);
    for l in from_relay.lines().map_while(Result::ok) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let ["cpu", c, "relayed", r, rest @ ..] = &f[..] {
            relay_cpu = c.parse::<f64>().ok();
            relayed = r.parse().unwrap_or(0);
            if let ["prog", ns, n] = rest {
                prog = ns.parse::<u64>().ok().zip(n.parse::<u64>().ok());
            }
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
        "generator      send p99 {} us, max {} us behind schedule; {late_ticks} of {total_ms} ticks > 1 ms late; reads p99 {} us after arrival; {:.0} % of CPU {}{}",
        quantile(&mut send_late_us, 0.99),
        send_late_us.iter().max().copied().unwrap_or(0),
        quantile(&mut read_late_us, 0.99),
        100.0 * cpu_self / window_s,
        o.gen_cpu,
        if pinned { " (pinned)" } else { " (not pinned)" }
    );
    let pps = relayed as f64 / window_s;
    match relay_cpu {
        Some(r) => {
            let busy = r + soft;
            println!(
                "relay          {pps:.0} packets/s relayed; process {r:.2} s CPU ({:.0} % of a core, its system calls' kernel work included) + {soft:.2} s in ksoftirqd/{}{}",
                100.0 * r / window_s,
                o.relay_cpu,
                if relay_pinned { format!("; pinned to CPU {}", o.relay_cpu) } else { "; NOT pinned".into() }
            );
            println!(
                "per packet     {:.2} us of CPU (read + rewrite + send, kernel included) -> {:.0} packets/s per core",
                1e6 * busy / relayed.max(1) as f64,
                relayed as f64 / busy.max(1e-9)
            );
        }
        None => println!("relay          CPU not reported"),
    }
    if let Some(r) = relay_cpu {
        let n = relayed.max(1) as f64;
        let with = send_ns as f64 / 1e3 / sent.max(1) as f64;
        let alone = alone_send_ns as f64 / 1e3 / alone_sent.max(1) as f64;
        let process = 1e6 * (r + soft + soft1) / n;
        let added = process + (with - alone).max(0.0);
        println!(
            "phones' sends  {with:.2} us per packet with the relay between them, {alone:.2} us sending to each other (measured first){}",
            if kernel { ": the difference is the kernel forwarding, run in these sends" } else { "" }
        );
        println!(
            "relay, all in  {added:.2} us per packet = {process:.2} (relay process and both ksoftirqd) + {:.2} (longer sends) -> {:.0} packets/s per core",
            (with - alone).max(0.0),
            1e6 / added.max(1e-3)
        );
    }
    if let Some((ns, n)) = prog {
        println!(
            "kernel program {n} runs, {:.0} ns each (bpf_stats: the program alone, not the redirect)",
            ns as f64 / n.max(1) as f64
        );
    }
    if let [before, after] = rss[..] {
        println!(
            "memory         relay RSS {before} kB -> {after} kB with {calls} calls: {:.1} kB per anchored call",
            after.saturating_sub(before) as f64 / calls as f64
        );
    }
}
