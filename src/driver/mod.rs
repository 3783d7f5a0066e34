//! The engine's tokio side: SIP sockets, timers, and the loop that feeds the sans-IO
//! [`Engine`]; the media plane ([`media`]), one task per anchored call. One task owns the
//! engine, so the engine needs no locks; everything else reaches it through an
//! [`EngineHandle`].

mod handle;
pub mod kfwd;
pub mod media;
mod relay;
mod tcp;
mod tls;
pub mod udp;
mod video;

pub use handle::{EngineHandle, HandleError, Inbox};

use crate::b2bua::{Engine, Transmit};
use crate::metrics::Metrics;
use crate::sip::{Flow, Transport};
use bytes::Bytes;
use handle::Query;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot bind SIP {transport} on {addr}: {source}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What reaches the engine task besides UDP datagrams and media events.
enum CoreEvent {
    Message(Flow, Bytes),
    /// A connection is up: its writer, and for TLS the SHA-256 of the client's certificate.
    Opened(
        u64,
        mpsc::Sender<Bytes>,
        Option<crate::runtime::tls::PeerIdentity>,
    ),
    Closed(u64),
    Query(Query),
}

/// Datagrams handled per wake-up before timers and output get their turn.
const BATCH: usize = 256;
/// A datagram that waited this long in the socket means we are behind: new calls are
/// refused with 503 until the wait falls under `OVERLOAD_CLEAR`; admitted calls carry on.
/// Far under T1, so peers never retransmit because of us; 100 ms keeps normal bursts on
/// a busy 2-core box (p99 wait ~20 ms at 3,200 cps) from being refused.
const OVERLOAD_AFTER: Duration = Duration::from_millis(100);
const OVERLOAD_CLEAR: Duration = Duration::from_millis(20);
/// An iteration of the loop slower than this is logged: it delays every call.
const SLOW_ITERATION: Duration = Duration::from_millis(50);

fn bind_udp(addr: SocketAddr, buffer: usize) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    let _ = sock.set_recv_buffer_size(buffer);
    let _ = sock.set_send_buffer_size(buffer);
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

/// What the engine's side effects go to, besides SIP sockets.
pub struct Plumbing {
    pub metrics: Arc<Metrics>,
    pub prompts: Arc<media::Prompts>,
    /// Media endpoints inside this process (browser legs) that the media plane hands
    /// packets to without the kernel.
    pub local_rtp: crate::runtime::LocalRtp,
    /// Where call recordings are written.
    pub recordings: std::path::PathBuf,
    /// The consultation record writer (None: records off, e.g. in benchmarks).
    pub records: Option<crate::records::writer::RecordSink>,
    /// In-kernel forwarding of bridged RTP, when `[media] kernel_forward` loaded it.
    pub kfwd: Option<Arc<kfwd::Kfwd>>,
}

/// How the SIP sockets are set up and bounded.
#[derive(Clone)]
pub struct SocketSettings {
    /// Kernel buffer of the UDP socket, bytes.
    pub udp_buffer: usize,
    /// Limits on TCP and TLS connections (counted together).
    pub tcp: tcp::TcpLimits,
    pub tls: Option<SipTls>,
}

/// The SIP over TLS listener: where, with which (reloadable) certificate.
#[derive(Clone)]
pub struct SipTls {
    pub listen: SocketAddr,
    pub identity: Arc<crate::runtime::tls::Reloadable>,
    pub handshake_timeout: Duration,
}

impl SocketSettings {
    /// The UDP and TCP settings; `tls` is set by the caller, which loads the certificate.
    pub fn from_config(sip: &crate::config::SipConfig) -> Self {
        SocketSettings {
            udp_buffer: sip.udp_buffer_bytes,
            tcp: tcp::TcpLimits {
                idle: std::time::Duration::from_secs(sip.tcp_idle_s.max(1).into()),
                max_connections: sip.max_connections,
                max_per_source: sip.max_connections_per_source,
            },
            tls: None,
        }
    }
}

/// What the process is asked to do (pingora-style phased shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Run,
    /// SIGTERM: refuse new calls (503), let calls in progress finish, then stop.
    Drain,
    /// SIGINT or the drain deadline: stop now.
    Stop,
}

/// Binds SIP on UDP and TCP and runs the engine until told to stop, or until a drain has
/// no call left.
pub async fn run(
    engine: Engine,
    listen: SocketAddr,
    sockets: SocketSettings,
    inbox: Inbox,
    plumbing: Plumbing,
    mut shutdown: watch::Receiver<Phase>,
) -> Result<(), DriverError> {
    let Plumbing {
        metrics,
        prompts,
        local_rtp,
        recordings,
        records,
        kfwd,
    } = plumbing;
    let Inbox {
        rx: mut events,
        tx: events_tx,
        sip_ready,
    } = inbox;
    let (udp, tcp) = bind(listen, sockets.udp_buffer).await?;
    let counts = Arc::new(std::sync::Mutex::new(tcp::Counts::default()));
    if let Some(t) = sockets.tls {
        let listener = tokio::net::TcpListener::bind(t.listen)
            .await
            .map_err(|source| DriverError::Bind {
                transport: "TLS",
                addr: t.listen,
                source,
            })?;
        tracing::info!(listen = %t.listen, "SIP listening on TLS");
        tokio::spawn(tls::accept_loop(
            tls::TlsListener {
                listener,
                identity: t.identity,
                handshake_timeout: t.handshake_timeout,
            },
            events_tx.clone(),
            metrics.clone(),
            sockets.tcp,
            counts.clone(),
        ));
    }
    tokio::spawn(tcp::accept_loop(
        tcp,
        events_tx,
        metrics.clone(),
        sockets.tcp,
        counts,
    ));
    sip_ready.store(true, Ordering::SeqCst);
    tracing::info!(%listen, "SIP listening on UDP and TCP");
    let (media_tx, mut media_rx) = mpsc::channel::<media::MediaEvent>(4096);
    let plane = media::MediaPlane::new(prompts, media_tx, metrics.rtp_relayed.clone(), recordings)
        .with_counters(metrics.rtp_bytes.clone(), metrics.rtp_lost.clone())
        .with_kernel_counter(metrics.rtp_kernel.clone())
        .with_video_counters(&metrics)
        .with_foreign_counter(metrics.security.with_label_values(&["rtp_foreign_source"]))
        .with_srtp_counter(metrics.security.with_label_values(&["srtp_refused"]))
        .with_local(local_rtp)
        .with_kernel_forwarding(kfwd);
    let commits = records
        .as_ref()
        .map(|r| r.commits())
        .unwrap_or_else(|| Arc::new(tokio::sync::Notify::new()));
    let mut core = Core {
        engine,
        udp,
        conns: HashMap::new(),
        plane,
        records,
        deferred: Default::default(),
        held_replies: Default::default(),
        overloaded: false,
        buf: vec![0u8; 65_536],
        metrics,
    };
    loop {
        let deadline = core.engine.poll_timeout();
        let sleep = tokio::time::sleep_until(
            deadline
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600)),
        );
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                match *shutdown.borrow() {
                    Phase::Stop => break,
                    Phase::Drain => {
                        tracing::info!(calls = core.engine.active_calls(), "draining: new calls get 503");
                        core.engine.set_draining(true);
                    }
                    Phase::Run => {}
                }
            }
            r = core.udp.readable() => {
                if r.is_ok() {
                    core.on_datagrams();
                }
            }
            Some(ev) = events.recv() => core.on_event(ev),
            Some(ev) = media_rx.recv() => core.on_media(ev),
            _ = commits.notified() => {}
            _ = sleep => {}
        }
        core.after_wake().await;
        let draining = *shutdown.borrow() == Phase::Drain;
        if draining && core.engine.active_calls() == 0 && core.deferred.is_empty() {
            tracing::info!("drained: no call left");
            break;
        }
    }
    tracing::info!("SIP stopped");
    Ok(())
}

async fn bind(
    listen: SocketAddr,
    udp_buffer: usize,
) -> Result<(UdpSocket, tokio::net::TcpListener), DriverError> {
    let udp = bind_udp(listen, udp_buffer).map_err(|source| DriverError::Bind {
        transport: "UDP",
        addr: listen,
        source,
    })?;
    if let Err(e) = udp::enable_timestamps(&udp) {
        tracing::warn!(
            "no kernel receive timestamps ({e}): overload detection sees only our own delay"
        );
    }
    let tcp = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| DriverError::Bind {
            transport: "TCP",
            addr: listen,
            source,
        })?;
    Ok((udp, tcp))
}

/// What the engine task owns besides the engine: its sockets, the media plane, the record
/// sink, and the messages held back until their records are durable.
struct Core {
    engine: Engine,
    udp: UdpSocket,
    conns: HashMap<u64, mpsc::Sender<Bytes>>,
    plane: media::MediaPlane,
    records: Option<crate::records::writer::RecordSink>,
    /// Messages waiting for their call's record to be durable (see Transmit::durable_after).
    deferred: std::collections::VecDeque<Transmit>,
    held_replies: std::collections::VecDeque<HeldReply>,
    overloaded: bool,
    buf: Vec<u8>,
    metrics: Arc<Metrics>,
}

impl Core {
    /// Up to a batch of datagrams; how long each waited in the socket switches overload.
    fn on_datagrams(&mut self) {
        for _ in 0..BATCH {
            match udp::try_recv(&self.udp, &mut self.buf) {
                Ok((n, src, received)) => {
                    let now = Instant::now();
                    let waited = now.saturating_duration_since(received);
                    let limit = if self.overloaded {
                        OVERLOAD_CLEAR
                    } else {
                        OVERLOAD_AFTER
                    };
                    if self.overloaded != (waited > limit) {
                        self.overloaded = !self.overloaded;
                        self.engine.set_overloaded(self.overloaded);
                        tracing::warn!(
                            waited_ms = waited.as_millis() as u64,
                            "overload {}",
                            if self.overloaded {
                                "begins: refusing new calls"
                            } else {
                                "over"
                            }
                        );
                    }
                    let flow = Flow::udp(src);
                    self.engine
                        .handle_datagram(now, received, flow, &self.buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break, // ICMP errors surface here on Linux; ignore
            }
        }
    }

    fn on_event(&mut self, ev: CoreEvent) {
        match ev {
            CoreEvent::Message(flow, data) => {
                self.engine.handle_message(Instant::now(), flow, &data)
            }
            CoreEvent::Opened(id, tx, identity) => {
                self.conns.insert(id, tx);
                if let Some(who) = identity {
                    self.engine
                        .connection_identified(id, who.fingerprint, &who.ca_names);
                }
            }
            CoreEvent::Closed(id) => {
                self.conns.remove(&id);
                self.engine.connection_closed(Instant::now(), id);
            }
            CoreEvent::Query(q) => {
                if let Some(h) = answer(&mut self.engine, q) {
                    self.held_replies.push_back(h);
                }
            }
        }
    }

    fn on_media(&mut self, ev: media::MediaEvent) {
        if let media::MediaEvent::Timeout { call } | media::MediaEvent::Failed { call, .. } = &ev {
            self.plane.forget(*call);
        }
        self.engine.handle_media_event(Instant::now(), ev);
    }

    /// After any wake: due timers, media commands, record changes, then everything to send
    /// (what waited for durable records first).
    async fn after_wake(&mut self) {
        let t_timers = Instant::now();
        let engine = &mut self.engine;
        engine.handle_timeout(t_timers);
        while let Some(cmd) = engine.poll_media() {
            if let Err((call, reason)) = self.plane.execute(cmd) {
                engine
                    .handle_media_event(Instant::now(), media::MediaEvent::Failed { call, reason });
            }
        }
        if let Some(sink) = self.records.as_mut() {
            while let Some(ev) = engine.poll_record() {
                sink.push(ev);
            }
            sink.pump();
        } else {
            while engine.poll_record().is_some() {}
        }
        let t_send = Instant::now();
        let sent = self.send_all().await;
        let t_end = Instant::now();
        if t_end - t_timers > SLOW_ITERATION {
            tracing::warn!(
                timers_ms = (t_send - t_timers).as_millis() as u64,
                send_ms = (t_end - t_send).as_millis() as u64,
                sent,
                "slow iteration"
            );
        }
    }

    /// Sends what may go now; holds what waits for a record to be durable.
    async fn send_all(&mut self) -> usize {
        let mut sent = 0;
        let committed = self.records.as_ref().map_or(u64::MAX, |r| r.committed());
        while self.held_replies.front().is_some_and(|h| h.0 <= committed) {
            if let Some((_, reply)) = self.held_replies.pop_front() {
                reply();
            }
        }
        while self
            .deferred
            .front()
            .is_some_and(|t| t.durable_after.is_none_or(|n| n <= committed))
        {
            if let Some(t) = self.deferred.pop_front() {
                send(&self.udp, &self.conns, &self.metrics, t).await;
                sent += 1;
            }
        }
        while let Some(t) = self.engine.poll_transmit() {
            if t.durable_after.is_some_and(|n| n > committed) {
                self.deferred.push_back(t);
                continue;
            }
            send(&self.udp, &self.conns, &self.metrics, t).await;
            sent += 1;
        }
        sent
    }
}

/// A reply to the API held until the engine's first `.0` record changes are durable.
type HeldReply = (u64, Box<dyn FnOnce() + Send>);

fn answer(engine: &mut Engine, q: Query) -> Option<HeldReply> {
    let now = Instant::now();
    let held = |engine: &Engine, f: Box<dyn FnOnce() + Send>| Some((engine.records_emitted(), f));
    match q {
        Query::WebChatStart {
            service,
            text,
            reply,
        } => {
            let r = engine.web_chat_start(now, &service, &text);
            return held(
                engine,
                Box::new(move || {
                    let _ = reply.send(r);
                }),
            );
        }
        Query::WebChatSend { token, text, reply } => {
            let r = engine.web_chat_send(now, &token, &text);
            return held(
                engine,
                Box::new(move || {
                    let _ = reply.send(r);
                }),
            );
        }
        Query::WebChatPoll {
            token,
            after,
            reply,
        } => {
            let _ = reply.send(engine.web_chat_poll(&token, after));
        }
        Query::WebChatClose { token, reply } => {
            let r = engine.web_chat_close(now, &token);
            return held(
                engine,
                Box::new(move || {
                    let _ = reply.send(r);
                }),
            );
        }
        Query::Agents(reply) => {
            let _ = reply.send(engine.agents_view());
        }
        Query::SetAgentState { id, change, reply } => {
            let _ = reply.send(engine.set_agent_state(now, &id, change));
        }
        Query::Queues(reply) => {
            let _ = reply.send(engine.queues_view(now));
        }
        Query::Calls { numbers, reply } => {
            let _ = reply.send(engine.calls_view(now, numbers));
        }
        Query::HangUp { call_id, reply } => {
            let _ = reply.send(engine.hang_up(now, &call_id));
        }
        Query::Record(ev) => engine.push_record(ev),
        Query::RefreshMetrics(reply) => {
            engine.refresh_metrics(now);
            let _ = reply.send(());
        }
    }
    None
}

async fn send(
    udp: &UdpSocket,
    conns: &HashMap<u64, mpsc::Sender<Bytes>>,
    metrics: &Metrics,
    t: Transmit,
) {
    match t.flow.transport {
        Transport::Udp => match udp.try_send_to(&t.data, t.flow.remote) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let _ = udp.send_to(&t.data, t.flow.remote).await;
            }
            Err(e) => tracing::debug!(to = %t.flow.remote, "UDP send failed: {e}"),
        },
        // The engine never opens a stream connection: it answers and calls back on the
        // one the peer opened (RFC 5923-style reuse), which is also what gets through NAT.
        Transport::Tcp | Transport::Tls => match conns.get(&t.flow.conn) {
            Some(tx) => {
                if tx.try_send(t.data).is_err() {
                    tracing::warn!(to = %t.flow.remote, transport = t.flow.transport.via_name(), "connection backlogged or closed: message dropped");
                }
            }
            None => {
                tracing::debug!(to = %t.flow.remote, transport = t.flow.transport.via_name(), "connection gone: message dropped")
            }
        },
    }
    if let Some(start) = t.text_start {
        metrics
            .text_delivery_us
            .record(start.elapsed().as_micros() as u64);
    }
    if let Some(start) = t.pdd_start {
        let d = start.elapsed();
        metrics.pdd_us.record(d.as_micros() as u64);
        metrics.post_dial_delay.observe(d.as_secs_f64());
    }
}
