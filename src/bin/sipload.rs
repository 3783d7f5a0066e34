//! SIP load over UDP, TCP or TLS through the full call path (SIPp on this machine has no
//! TLS): one endpoint registers N agents and answers every call offered to them; another,
//! the trunk, dials 120 at a fixed rate and hangs up each answered call after a hold time.
//! Prints completed and failed calls, the rate achieved and, with `--engine-pid`, the
//! engine's CPU seconds per 1,000 calls between the first INVITE and the last BYE (so
//! connection set-up and registration are not counted). `sipp-scenarios/load-tls.sh` runs
//! it against fresh engines for each transport.
//!
//! `--text N`: text instead of calls. The trunk is an SMS gateway writing, from N senders
//! in turn, `--rate` MESSAGEs a second to 120; the agents' endpoint takes what the engine
//! gives them. Prints messages sent, acknowledged (202) and delivered to an agent, lost,
//! and the delivery time from the gateway's send to the agent's receipt (p50, p99, max:
//! the engine's time plus two loopback hops and this tool's own scheduling).
//! `sipp-scenarios/load-text.sh` runs it.
//!
//! TLS: the engine's certificate is accepted whatever it is (this is a load tool for one's
//! own engine on loopback; it does not authenticate the server).

use bytes::Bytes;
use dasan::sip::framing::{Frame, StreamFramer};
use dasan::sip::Message;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

#[derive(clap::Parser)]
struct Args {
    /// udp, tcp or tls.
    #[arg(long, default_value = "udp")]
    transport: String,
    /// The engine's SIP address for this transport (the TLS port for tls).
    #[arg(long)]
    engine: SocketAddr,
    #[arg(long, default_value_t = 200)]
    agents: u32,
    #[arg(long, default_value_t = 10000)]
    first_agent: u32,
    #[arg(long, default_value = "load-pw")]
    password: String,
    /// Calls per second.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// How long each answered call is held before the trunk hangs up.
    #[arg(long, default_value_t = 0)]
    hold_ms: u64,
    /// The engine's pid, to report its CPU per call.
    #[arg(long)]
    engine_pid: Option<u32>,
    /// Text load from this many senders (conversations) instead of calls.
    #[arg(long)]
    text: Option<u32>,
}

/// A message's number and when an agent got it.
type Delivered = mpsc::UnboundedSender<(u64, Instant)>;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Udp,
    Tcp,
    Tls,
}

impl Kind {
    fn via(self) -> &'static str {
        match self {
            Kind::Udp => "UDP",
            Kind::Tcp => "TCP",
            Kind::Tls => "TLS",
        }
    }

    fn uri_param(self) -> &'static str {
        match self {
            Kind::Udp => "",
            Kind::Tcp => ";transport=tcp",
            Kind::Tls => ";transport=tls",
        }
    }
}

/// One endpoint's connection to the engine: send bytes, receive parsed messages.
struct Link {
    kind: Kind,
    local: SocketAddr,
    out: mpsc::UnboundedSender<Bytes>,
    inbox: mpsc::UnboundedReceiver<Message>,
}

/// Accepts any server certificate (see the module comment) but checks the handshake
/// signatures, so the TLS work is the real one.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn connect(kind: Kind, engine: SocketAddr) -> std::io::Result<Link> {
    let (out, mut out_rx) = mpsc::unbounded_channel::<Bytes>();
    let (in_tx, inbox) = mpsc::unbounded_channel::<Message>();
    let local = match kind {
        Kind::Udp => {
            // A big receive buffer: replies held for durable records leave the engine in
            // bursts, which the default buffer would drop (and count as lost).
            let raw = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::DGRAM,
                Some(socket2::Protocol::UDP),
            )?;
            let _ = raw.set_recv_buffer_size(16 << 20);
            raw.set_nonblocking(true)?;
            raw.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
            let sock = Arc::new(UdpSocket::from_std(raw.into())?);
            let local = sock.local_addr()?;
            let s2 = sock.clone();
            tokio::spawn(async move {
                while let Some(b) = out_rx.recv().await {
                    let _ = s2.send_to(&b, engine).await;
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, _)) = sock.recv_from(&mut buf).await {
                    if let Ok(m) = Message::parse(&buf[..n]) {
                        if in_tx.send(m).is_err() {
                            break;
                        }
                    }
                }
            });
            local
        }
        Kind::Tcp | Kind::Tls => {
            let tcp = TcpStream::connect(engine).await?;
            tcp.set_nodelay(true)?;
            let local = tcp.local_addr()?;
            if kind == Kind::Tcp {
                let (r, w) = tcp.into_split();
                spawn_stream(r, w, out_rx, in_tx);
            } else {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .map_err(std::io::Error::other)?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
                    .with_no_client_auth();
                let name = rustls::pki_types::ServerName::IpAddress(engine.ip().into());
                let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                    .connect(name, tcp)
                    .await?;
                let (r, w) = tokio::io::split(tls);
                spawn_stream(r, w, out_rx, in_tx);
            }
            local
        }
    };
    Ok(Link {
        kind,
        local,
        out,
        inbox,
    })
}

fn spawn_stream<R, W>(
    mut r: R,
    mut w: W,
    mut out_rx: mpsc::UnboundedReceiver<Bytes>,
    in_tx: mpsc::UnboundedSender<Message>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            if w.write_all(&b).await.is_err() {
                break;
            }
            if out_rx.is_empty() && w.flush().await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut framer = StreamFramer::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let n = match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            framer.push(&buf[..n]);
            while let Ok(Some(f)) = framer.next_frame() {
                if let Frame::Message(m) = f {
                    if let Ok(m) = Message::parse(&m) {
                        if in_tx.send(m).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn token() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

impl Link {
    fn send(&self, m: &Message) {
        let _ = self.out.send(m.to_bytes());
    }

    fn send_raw(&self, s: String) {
        let _ = self.out.send(Bytes::from(s));
    }

    fn via(&self) -> String {
        format!(
            "SIP/2.0/{} {};branch=z9hG4bK{};rport",
            self.kind.via(),
            self.local,
            token()
        )
    }
}

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
}

fn answer(req: &Message, code: u16, tag: Option<&str>, body: Option<(&str, String)>) -> Message {
    let mut r = dasan::sip::build::response(req, code, None, tag);
    if let Some((contact, sdp)) = body {
        r.set_header("Contact", contact.to_string());
        r.set_header("Content-Type", "application/sdp");
        r.body = Bytes::from(sdp);
        r.set_header("Content-Length", r.body.len().to_string());
    }
    r
}

/// Registers every agent and then answers what the engine offers them, forever.
async fn agents(
    mut link: Link,
    args: Arc<Args>,
    registered: mpsc::Sender<()>,
    delivered: Option<Delivered>,
) {
    let engine = args.engine;
    let register = |link: &Link, id: u32, cseq: u32, auth: Option<String>| {
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        link.send_raw(format!(
            "REGISTER sip:{engine}{p} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
             From: <sip:{id}@{engine}>;tag=r{id}\r\nTo: <sip:{id}@{engine}>\r\nCall-ID: reg-{id}-{pid}\r\n\
             CSeq: {cseq} REGISTER\r\nContact: <sip:{id}@{local}{p}>\r\nExpires: 3600\r\n{auth}Content-Length: 0\r\n\r\n",
            p = link.kind.uri_param(),
            via = link.via(),
            local = link.local,
            pid = std::process::id(),
        ))
    };
    for i in 0..args.agents {
        register(&link, args.first_agent + i, 1, None);
        if i % 100 == 99 {
            tokio::task::yield_now().await;
        }
    }
    // Over UDP a REGISTER can be lost (the engine may still be starting): every second,
    // send again for the agents not yet registered.
    let mut pending: std::collections::BTreeSet<u32> =
        (0..args.agents).map(|i| args.first_agent + i).collect();
    let mut resend = tokio::time::interval(Duration::from_secs(1));
    resend.tick().await;
    let contact = format!("<sip:agent@{}{}>", link.local, link.kind.uri_param());
    loop {
        let m = tokio::select! {
            m = link.inbox.recv() => m,
            _ = resend.tick() => {
                for &id in &pending {
                    register(&link, id, 1, None);
                }
                continue;
            }
        };
        let Some(m) = m else { break };
        if let Some(code) = m.status() {
            let Some((cseq, _)) = m.cseq() else { continue };
            let id: u32 = m
                .call_id()
                .strip_prefix("reg-")
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if code == 401 && cseq == 1 {
                let ch = m.header("WWW-Authenticate").unwrap_or("");
                let uri = format!("sip:{engine}{}", link.kind.uri_param());
                let auth = dasan::registrar::digest::authorization(
                    ch,
                    &id.to_string(),
                    &args.password,
                    "REGISTER",
                    &uri,
                    &token(),
                );
                register(&link, id, 2, auth);
            } else if code == 200 && cseq == 2 {
                if pending.remove(&id) && pending.is_empty() {
                    let _ = registered.send(()).await;
                }
            } else if code >= 300 {
                eprintln!("agent {id}: REGISTER got {code}");
            }
            continue;
        }
        let method = m
            .method()
            .map(|x| x.as_str().to_string())
            .unwrap_or_default();
        match method.as_str() {
            "INVITE" => {
                let tag = token();
                link.send(&answer(&m, 200, Some(&tag), Some((&contact, sdp(40002)))));
            }
            "ACK" => {}
            "MESSAGE" => {
                link.send(&answer(&m, 200, None, None));
                let seq = std::str::from_utf8(&m.body)
                    .ok()
                    .and_then(|b| b.strip_prefix("load "))
                    .and_then(|n| n.parse().ok());
                if let (Some(tx), Some(seq)) = (&delivered, seq) {
                    let _ = tx.send((seq, Instant::now()));
                }
            }
            _ => link.send(&answer(&m, 200, None, None)),
        }
    }
}

#[derive(Default, Debug)]
struct TextTally {
    sent: u64,
    acked: u64,
    refused: u64,
    delivered: u64,
    /// Delivery times, microseconds.
    delays: Vec<u64>,
}

/// The SMS gateway: `rate` messages a second for `seconds`, from `senders` numbers in
/// turn; then waits (at most 5 s) for the last deliveries.
async fn gateway(
    mut link: Link,
    args: Arc<Args>,
    senders: u32,
    mut delivered: mpsc::UnboundedReceiver<(u64, Instant)>,
) -> (TextTally, Instant) {
    let total = u64::from(args.rate) * u64::from(args.seconds);
    let gap = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let start = Instant::now();
    let mut sent_at: Vec<Instant> = Vec::with_capacity(total as usize);
    let mut got = vec![false; total as usize];
    let mut t = TextTally::default();
    let engine = args.engine;
    let p = link.kind.uri_param();
    let mut last_delivery = start;
    let mut drain_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        while t.sent < total && start + gap.mul_f64(t.sent as f64) <= now {
            let seq = t.sent;
            let from = 1_090_000_000u64 + seq % u64::from(senders.max(1));
            let body = format!("load {seq}");
            link.send_raw(format!(
                "MESSAGE sip:120@{engine}{p} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\n\
                 From: <sip:0{from}@{}>;tag={}\r\nTo: <sip:120@{engine}>\r\nCall-ID: sms-{}\r\n\
                 CSeq: 1 MESSAGE\r\nContent-Type: text/plain;charset=UTF-8\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                link.via(),
                link.local,
                token(),
                token(),
                body.len()
            ));
            sent_at.push(Instant::now());
            t.sent += 1;
        }
        if t.sent >= total && drain_until.is_none() {
            drain_until = Some(now + Duration::from_secs(5));
        }
        if t.delivered >= total && t.acked + t.refused >= total {
            break;
        }
        if drain_until.is_some_and(|d| now > d) {
            break;
        }
        let next = (t.sent < total).then(|| start + gap.mul_f64(t.sent as f64));
        let wake = next.unwrap_or(now + Duration::from_millis(50));
        tokio::select! {
            m = link.inbox.recv() => {
                let Some(m) = m else { break };
                match m.status() {
                    Some(202) | Some(200) => t.acked += 1,
                    Some(c) if c >= 300 => {
                        t.refused += 1;
                        if t.refused <= 5 {
                            eprintln!("sipload: a message got {c}");
                        }
                    }
                    Some(_) => {}
                    // A notice from the engine (the conversation waits): taken.
                    None => link.send(&answer(&m, 200, None, None)),
                }
            }
            d = delivered.recv() => {
                let Some((seq, at)) = d else { break };
                let i = seq as usize;
                if i < got.len() && !got[i] {
                    got[i] = true;
                    t.delivered += 1;
                    t.delays.push(at.duration_since(sent_at[i]).as_micros() as u64);
                    last_delivery = at;
                }
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
        }
    }
    (t, last_delivery)
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Call {
    invite: Message,
    to: Option<String>,
    answered_at: Option<Instant>,
}

#[derive(Default, Debug)]
struct Tally {
    sent: u64,
    ok: u64,
    failed: u64,
}

/// Dials at the rate for the duration, hangs up answered calls after the hold time, and
/// returns when every call has ended (or a grace period is over).
async fn trunk(mut link: Link, args: Arc<Args>) -> (Tally, Instant) {
    let total = u64::from(args.rate) * u64::from(args.seconds);
    let gap = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let hold = Duration::from_millis(args.hold_ms);
    let start = Instant::now();
    let mut calls: HashMap<String, Call> = HashMap::new();
    let mut byes: VecDeque<(Instant, String)> = VecDeque::new();
    let mut t = Tally::default();
    let mut last_end = start;
    let deadline = start + Duration::from_secs(u64::from(args.seconds) + 32);
    let engine = args.engine;
    let p = link.kind.uri_param();
    loop {
        let now = Instant::now();
        // Calls due by now.
        while t.sent < total && start + gap.mul_f64(t.sent as f64) <= now {
            let id = format!("load-{}", token());
            let body = sdp(40000);
            let raw = format!(
                "INVITE sip:120@{engine}{p} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\n\
                 From: <sip:0212345678@{}>;tag={}\r\nTo: <sip:120@{engine}>\r\nCall-ID: {id}\r\n\
                 CSeq: 1 INVITE\r\nContact: <sip:0212345678@{}{p}>\r\nContent-Type: application/sdp\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                link.via(),
                link.local,
                token(),
                link.local,
                body.len()
            );
            if let Ok(invite) = Message::parse(raw.as_bytes()) {
                link.send(&invite);
                calls.insert(
                    id,
                    Call {
                        invite,
                        to: None,
                        answered_at: None,
                    },
                );
            }
            t.sent += 1;
        }
        while byes.front().is_some_and(|(due, _)| *due <= now) {
            let Some((_, id)) = byes.pop_front() else {
                break;
            };
            if let Some(c) = calls.get(&id) {
                let bye = format!(
                    "BYE sip:agent@{engine}{p} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\n\
                     Call-ID: {id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
                    link.via(),
                    c.invite.header("From").unwrap_or(""),
                    c.to.as_deref().unwrap_or(""),
                );
                link.send_raw(bye);
            }
        }
        if (t.sent >= total && calls.is_empty()) || now > deadline {
            break;
        }
        let next_call = (t.sent < total).then(|| start + gap.mul_f64(t.sent as f64));
        let next_bye = byes.front().map(|(d, _)| *d);
        let wake = [next_call, next_bye, Some(now + Duration::from_millis(100))]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now);
        let m = tokio::select! {
            m = link.inbox.recv() => m,
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => continue,
        };
        let Some(m) = m else { break };
        let Some(code) = m.status() else {
            // A request from the engine (a BYE of its own): accept it.
            if m.method().is_some_and(|x| x.as_str() != "ACK") {
                link.send(&answer(&m, 200, None, None));
                if calls.remove(m.call_id()).is_some() {
                    t.failed += 1;
                }
            }
            continue;
        };
        let id = m.call_id().to_string();
        let Some((_, method)) = m.cseq() else {
            continue;
        };
        match (method.as_str(), code) {
            ("INVITE", 100..=199) => {}
            ("INVITE", 200..=299) => {
                let Some(c) = calls.get_mut(&id) else {
                    continue;
                };
                let to = m.header("To").unwrap_or("").to_string();
                let target = m
                    .header("Contact")
                    .map(|v| dasan::sip::message::NameAddr::parse(v).uri.to_string())
                    .unwrap_or_else(|| format!("sip:120@{engine}{p}"));
                let ack = format!(
                    "ACK {target} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {to}\r\n\
                     Call-ID: {id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                    link.via(),
                    c.invite.header("From").unwrap_or(""),
                );
                link.send_raw(ack);
                if c.answered_at.is_none() {
                    c.answered_at = Some(Instant::now());
                    c.to = Some(to);
                    byes.push_back((Instant::now() + hold, id));
                }
            }
            ("INVITE", _) => {
                if let Some(c) = calls.remove(&id) {
                    link.send(&dasan::sip::build::ack_for_non2xx(&c.invite, &m));
                    t.failed += 1;
                    last_end = Instant::now();
                }
            }
            ("BYE", _) if calls.remove(&id).is_some() => {
                if (200..300).contains(&code) {
                    t.ok += 1;
                } else {
                    t.failed += 1;
                }
                last_end = Instant::now();
            }
            _ => {}
        }
    }
    t.failed += calls.len() as u64;
    (t, last_end)
}

/// utime + stime of a process, seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz.max(1.0))
}

fn main() -> std::process::ExitCode {
    use clap::Parser;
    let args = Arc::new(Args::parse());
    let kind = match args.transport.as_str() {
        "udp" => Kind::Udp,
        "tcp" => Kind::Tcp,
        "tls" => Kind::Tls,
        other => {
            eprintln!("sipload: --transport must be udp, tcp or tls, not {other}");
            return std::process::ExitCode::from(2);
        }
    };
    if args.seconds == 0 || args.seconds > 600 || args.rate == 0 || args.rate > 20_000 {
        eprintln!("sipload: --seconds must be 1..600 and --rate 1..20000");
        return std::process::ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sipload: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let (agent_link, trunk_link) = match (
            connect(kind, args.engine).await,
            connect(kind, args.engine).await,
        ) {
            (Ok(a), Ok(t)) => (a, t),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!(
                    "sipload: cannot reach {} over {}: {e}",
                    args.engine,
                    kind.via()
                );
                return std::process::ExitCode::FAILURE;
            }
        };
        let (reg_tx, mut reg_rx) = mpsc::channel(1);
        let (del_tx, del_rx) = mpsc::unbounded_channel();
        let delivered = args.text.map(|_| del_tx);
        tokio::spawn(agents(agent_link, args.clone(), reg_tx, delivered));
        let t0 = Instant::now();
        if tokio::time::timeout(Duration::from_secs(60), reg_rx.recv())
            .await
            .is_err()
        {
            eprintln!("sipload: the agents did not all register within 60 s");
            return std::process::ExitCode::FAILURE;
        }
        eprintln!(
            "sipload: {} agents registered over {} in {} ms",
            args.agents,
            kind.via(),
            t0.elapsed().as_millis()
        );
        let cpu0 = args.engine_pid.and_then(cpu_seconds);
        let start = Instant::now();
        if let Some(senders) = args.text {
            let (mut t, end) = gateway(trunk_link, args.clone(), senders, del_rx).await;
            let cpu1 = args.engine_pid.and_then(cpu_seconds);
            let secs = end.duration_since(start).as_secs_f64().max(0.001);
            t.delays.sort_unstable();
            let ms = |us: u64| us as f64 / 1000.0;
            let mut line = format!(
                "text senders={senders} sent={} acked={} refused={} delivered={} lost={} seconds={secs:.1} msg_per_s={:.0} delivery_ms_p50={:.2} p99={:.2} max={:.2}",
                t.sent,
                t.acked,
                t.refused,
                t.delivered,
                t.sent - t.delivered,
                t.delivered as f64 / secs,
                ms(percentile(&t.delays, 0.5)),
                ms(percentile(&t.delays, 0.99)),
                ms(t.delays.last().copied().unwrap_or(0)),
            );
            if let (Some(a), Some(b)) = (cpu0, cpu1) {
                line.push_str(&format!(
                    " engine_cpu_s={:.2} cpu_s_per_1000_msgs={:.3}",
                    b - a,
                    (b - a) / (t.delivered.max(1) as f64) * 1000.0
                ));
            }
            println!("{line}");
            return if t.delivered == t.sent && t.acked == t.sent {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            };
        }
        let (tally, end) = trunk(trunk_link, args.clone()).await;
        let cpu1 = args.engine_pid.and_then(cpu_seconds);
        let secs = end.duration_since(start).as_secs_f64().max(0.001);
        let mut line = format!(
            "transport={} sent={} ok={} failed={} seconds={secs:.1} cps={:.0}",
            kind.via(),
            tally.sent,
            tally.ok,
            tally.failed,
            tally.ok as f64 / secs
        );
        if let (Some(a), Some(b)) = (cpu0, cpu1) {
            let per = if tally.ok > 0 {
                (b - a) / tally.ok as f64 * 1000.0
            } else {
                0.0
            };
            line.push_str(&format!(
                " engine_cpu_s={:.2} cpu_s_per_1000_calls={per:.3}",
                b - a
            ));
        }
        println!("{line}");
        if tally.failed * 100 > tally.sent.max(1) {
            std::process::ExitCode::FAILURE
        } else {
            std::process::ExitCode::SUCCESS
        }
    })
}
