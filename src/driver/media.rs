//! The media plane's tokio side: one task per anchored call owns the call's RTP and RTCP
//! sockets (caller leg, agent leg) and feeds the sans-IO [`MediaSession`]. The engine's
//! [`MediaCommand`]s reach the task over a channel; digits, the end of prompts and the end
//! of the media (timeout, failure) go back to the engine as [`MediaEvent`]s. A browser
//! bridge in this process hands the agent leg its packets through the in-process switch,
//! and they are handled in the bridge's task (the sink, under the session's lock) rather
//! than waking this one.

use super::kfwd::Rule;
use crate::b2bua::{MediaCommand, MusicRef};
use crate::media::bridge::LegId;
pub use crate::media::bridge::MediaEvent;
use crate::media::clip::{Player, WaitingClips};
use crate::media::prompt::Prompt;
use crate::media::record::Recorder;
use crate::media::session::{Command, MediaSession, Music, Offload, Output};
use crate::runtime::{LocalRtp, Sink};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Prompts by name, plus the generated ringback.
pub struct Prompts {
    pub by_name: HashMap<String, Arc<Prompt>>,
    pub ringback: Arc<Prompt>,
    /// What a waiting video caller sees (None: `[video] waiting_picture = false`).
    pub waiting: Option<Arc<WaitingClips>>,
}

/// Why the prompts could not be loaded at start.
#[derive(Debug, thiserror::Error)]
pub enum PromptsError {
    #[error(transparent)]
    Load(#[from] crate::media::prompt::PromptError),
    #[error(
        "{used_by} names prompt '{name}', which is neither built in nor in [media] prompts_dir"
    )]
    Missing { used_by: String, name: String },
    #[error("[video] waiting clip {file}: {reason}")]
    Clip { file: String, reason: String },
}

/// An RTP or RTCP port of a call that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("RTP port {port}: {source}")]
pub struct RtpBindError {
    port: u16,
    source: std::io::Error,
}

impl Prompts {
    /// The built-in prompts, then `[media] prompts_dir` over them; every prompt the
    /// dialplan names must exist.
    pub fn load(cfg: &crate::config::Config) -> Result<Prompts, PromptsError> {
        let mut all = crate::media::prompt::embedded()?;
        if let Some(dir) = &cfg.media.prompts_dir {
            all.extend(crate::media::prompt::load_dir(dir)?);
        }
        for (name, used_by) in cfg.prompt_names() {
            if !all.contains_key(&name) {
                return Err(PromptsError::Missing { used_by, name });
            }
        }
        Ok(Prompts {
            by_name: all.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            ringback: crate::media::prompt::ringback(),
            waiting: Self::waiting_clips(&cfg.video)?,
        })
    }

    /// The video waiting clips: the configured files, else the built-in ones; none when
    /// `[video] waiting_picture = false`.
    fn waiting_clips(
        v: &crate::config::VideoConfig,
    ) -> Result<Option<Arc<WaitingClips>>, PromptsError> {
        use crate::media::clip::{DEFAULT_H264, DEFAULT_VP8};
        if !v.waiting_picture {
            return Ok(None);
        }
        let read = |p: &Option<PathBuf>| -> Result<Option<Vec<u8>>, PromptsError> {
            p.as_ref()
                .map(|p| {
                    std::fs::read(p).map_err(|e| PromptsError::Clip {
                        file: p.display().to_string(),
                        reason: e.to_string(),
                    })
                })
                .transpose()
        };
        let (vp8, h264) = (read(&v.waiting_vp8)?, read(&v.waiting_h264)?);
        let clips = WaitingClips::new(
            Some(vp8.as_deref().unwrap_or(DEFAULT_VP8)),
            Some(h264.as_deref().unwrap_or(DEFAULT_H264)),
            v.waiting_fps,
        )
        .map_err(|(codec, e)| PromptsError::Clip {
            file: match codec {
                "VP8" => v.waiting_vp8.as_ref(),
                _ => v.waiting_h264.as_ref(),
            }
            .map_or_else(
                || format!("(built-in {codec})"),
                |p| p.display().to_string(),
            ),
            reason: e.to_string(),
        })?;
        Ok(Some(Arc::new(clips)))
    }

    fn music(&self, m: &MusicRef) -> Music {
        match m {
            MusicRef::Silence => Music::Silence,
            MusicRef::Ringback => Music::Loop(self.ringback.clone()),
            MusicRef::Prompt(name) => self
                .by_name
                .get(name)
                .map_or(Music::Silence, |p| Music::Loop(p.clone())),
        }
    }
}

pub(super) enum Ctl {
    Cmd(Command),
    Record(PathBuf),
}

/// The driver's handle on every call's media task.
pub struct MediaPlane {
    prompts: Arc<Prompts>,
    events: mpsc::Sender<MediaEvent>,
    counters: Counters,
    recordings: PathBuf,
    /// Each call's relay thread (an index into `workers`).
    calls: HashMap<u64, usize>,
    /// The relay threads, started with the first call.
    workers: Vec<super::relay::Worker>,
    threads: usize,
    local: LocalRtp,
    /// Video calls' relay tasks.
    video: HashMap<u64, mpsc::UnboundedSender<super::video::VideoCtl>>,
    video_counters: Option<super::video::VideoCounters>,
    /// In-kernel forwarding of bridged plain RTP (see [`super::kfwd`]).
    kfwd: Option<Arc<super::kfwd::Kfwd>>,
}

/// RTP counters the relay threads update.
#[derive(Clone)]
pub(super) struct Counters {
    relayed: prometheus::IntCounter,
    bytes: prometheus::IntCounter,
    pub(super) lost: prometheus::IntCounter,
    /// Of `relayed`, what the kernel forwarded.
    kernel: prometheus::IntCounter,
    /// RTP dropped because it came from a source other than the leg's.
    foreign: prometheus::IntCounter,
    /// SRTP that failed authentication (or replayed, or plain RTP on an SRTP leg).
    srtp_refused: prometheus::IntCounter,
}

impl MediaPlane {
    pub fn new(
        prompts: Arc<Prompts>,
        events: mpsc::Sender<MediaEvent>,
        relayed: prometheus::IntCounter,
        recordings: PathBuf,
    ) -> MediaPlane {
        let spare = |n: &str| prometheus::IntCounter::new(n, n).expect("valid counter name");
        MediaPlane {
            prompts,
            events,
            counters: Counters {
                relayed,
                bytes: spare("rtp_bytes"),
                lost: spare("rtp_lost"),
                kernel: spare("rtp_kernel"),
                foreign: spare("rtp_foreign_source"),
                srtp_refused: spare("srtp_refused"),
            },
            recordings,
            calls: HashMap::new(),
            workers: Vec::new(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            local: LocalRtp::default(),
            video: HashMap::new(),
            video_counters: None,
            kfwd: None,
        }
    }

    /// Counts relayed video, keyframe requests and dropped video packets per leg.
    pub fn with_video_counters(mut self, metrics: &crate::metrics::Metrics) -> Self {
        self.video_counters = Some(super::video::VideoCounters::new(metrics));
        self
    }

    /// Delivers RTP to in-process endpoints (browser bridges) through `local`, and takes
    /// theirs for the agent leg.
    pub fn with_local(mut self, local: LocalRtp) -> Self {
        self.local = local;
        self
    }

    /// Counts bytes sent and packets lost (sequence gaps, counted when a call ends) too.
    pub fn with_counters(
        mut self,
        bytes: prometheus::IntCounter,
        lost: prometheus::IntCounter,
    ) -> Self {
        self.counters.bytes = bytes;
        self.counters.lost = lost;
        self
    }

    /// Counts the packets forwarded in the kernel (in production the engine's metric).
    pub fn with_kernel_counter(mut self, kernel: prometheus::IntCounter) -> Self {
        self.counters.kernel = kernel;
        self
    }

    /// Counts RTP dropped for coming from a source other than the leg's (in production
    /// `dasan_security_events_total{event="rtp_foreign_source"}`).
    pub fn with_foreign_counter(mut self, foreign: prometheus::IntCounter) -> Self {
        self.counters.foreign = foreign;
        self
    }

    /// Counts SRTP packets refused (`dasan_security_events_total{event="srtp_refused"}`).
    pub fn with_srtp_counter(mut self, refused: prometheus::IntCounter) -> Self {
        self.counters.srtp_refused = refused;
        self
    }

    /// Relay threads (default: one per core).
    /// Bridged directions that need only a header rewrite are forwarded by `k` in the
    /// kernel (set before the first call).
    pub fn with_kernel_forwarding(mut self, k: Option<Arc<super::kfwd::Kfwd>>) -> Self {
        self.kfwd = k;
        self
    }

    pub fn with_workers(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// The relay thread with the fewest calls, the threads started if they are not yet.
    fn worker(&mut self) -> std::io::Result<usize> {
        while self.workers.len() < self.threads {
            let w = super::relay::Worker::spawn(
                self.workers.len(),
                self.events.clone(),
                self.kfwd.clone(),
            )?;
            self.workers.push(w);
        }
        Ok((0..self.workers.len())
            .min_by_key(|&i| {
                self.workers[i]
                    .load
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .unwrap_or(0))
    }

    /// The task of `call` ended on its own (timeout, failure).
    pub fn forget(&mut self, call: u64) {
        self.calls.remove(&call);
        self.video.remove(&call);
    }

    /// Carries out one engine command. An error means the call's media cannot run: the
    /// engine should end the call.
    pub fn execute(&mut self, cmd: MediaCommand) -> Result<(), (u64, String)> {
        match cmd {
            MediaCommand::Start {
                call,
                ip,
                caller_port,
                agent_port,
                caller,
                signalling,
                timeout,
                music,
            } => {
                let socks =
                    bind_std(ip, caller_port, agent_port).map_err(|e| (call, e.to_string()))?;
                let w = self
                    .worker()
                    .map_err(|e| (call, format!("relay thread: {e}")))?;
                let session = MediaSession::new(
                    Instant::now(),
                    SystemTime::now(),
                    &caller,
                    signalling,
                    rand::random(),
                    timeout,
                    self.prompts.music(&music),
                );
                // The agent leg's address, for a browser bridge in this process to reach:
                // its packets are handled in the bridge's task, through the sink.
                let agent_addr = SocketAddr::new(ip, agent_port);
                let armed = session.poll_timeout();
                let core = Arc::new(Mutex::new(CallCore {
                    session,
                    recorder: None,
                    out: Vec::with_capacity(8),
                    deferred: Vec::new(),
                    failed: None,
                    armed,
                }));
                let io = Arc::new(CallIo {
                    call,
                    socks,
                    switch: self.local.clone(),
                    addrs: [SocketAddr::new(ip, caller_port), agent_addr],
                    events: self.events.clone(),
                    counters: self.counters.clone(),
                });
                let kicker = self.workers[w].kicker(call);
                let registration = self
                    .local
                    .register_sink(agent_addr, agent_sink(core.clone(), io.clone(), kicker));
                let started = super::relay::Started {
                    call,
                    core,
                    io,
                    registration,
                };
                if !self.workers[w].start(started) {
                    return Err((call, "relay thread gone".into()));
                }
                self.calls.insert(call, w);
                Ok(())
            }
            MediaCommand::Play {
                call,
                prompts,
                then,
            } => {
                let prompts = prompts
                    .iter()
                    .filter_map(|p| self.prompts.by_name.get(p).cloned())
                    .collect();
                let then = self.prompts.music(&then);
                self.send(call, Ctl::Cmd(Command::Play { prompts, then }))
            }
            MediaCommand::Attach {
                call,
                agent,
                signalling,
                record,
            } => {
                if let Some(name) = record.as_deref() {
                    let path = self.recordings.join(format!("{name}.wav"));
                    self.send(call, Ctl::Record(path))?;
                }
                self.send(
                    call,
                    Ctl::Cmd(Command::Attach {
                        agent,
                        signalling,
                        ssrc: rand::random(),
                        record: record.is_some(),
                    }),
                )
            }
            MediaCommand::Detach { call } => {
                if let Some(tx) = self.video.get(&call) {
                    let _ = tx.send(super::video::VideoCtl::Detach);
                }
                self.send(call, Ctl::Cmd(Command::Detach))
            }
            MediaCommand::Remote {
                call,
                leg,
                to,
                signalling,
                send,
            } => self.send(
                call,
                Ctl::Cmd(Command::Remote {
                    leg,
                    to,
                    signalling,
                    send,
                }),
            ),
            MediaCommand::Rekey { call, leg, keys } => {
                self.send(call, Ctl::Cmd(Command::Rekey { leg, keys }))
            }
            MediaCommand::Stop { call } => {
                if let Some(w) = self.calls.remove(&call) {
                    self.workers[w].send(super::relay::Msg::Stop(call));
                }
                // Dropping the sender ends the video task.
                self.video.remove(&call);
                Ok(())
            }
            MediaCommand::VideoStart {
                call,
                ip,
                caller_port,
                agent_port,
                caller,
                signalling,
                timeout,
                record,
                waiting,
            } => {
                let socks =
                    bind_all(ip, caller_port, agent_port).map_err(|e| (call, e.to_string()))?;
                let now = Instant::now();
                let mut relay = crate::media::video::VideoRelay::new(
                    now,
                    &caller,
                    signalling,
                    rand::random(),
                    timeout,
                );
                let clip = self
                    .prompts
                    .waiting
                    .as_ref()
                    .filter(|_| waiting)
                    .and_then(|w| {
                        Some((w.for_codec(caller.codec, caller.fmtp.as_deref())?, w.frame))
                    });
                if let Some((clip, frame)) = clip {
                    relay = relay.with_waiting(Player::new(clip, frame, now, rand::random()));
                }
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(super::video::run_video(
                    super::video::VideoTask {
                        call,
                        record,
                        events: self.events.clone(),
                        counters: self.video_counters.clone(),
                        timeout,
                    },
                    socks,
                    relay,
                    rx,
                ));
                self.video.insert(call, tx);
                Ok(())
            }
            MediaCommand::VideoKeyframe { call, from } => {
                if let Some(tx) = self.video.get(&call) {
                    let _ = tx.send(super::video::VideoCtl::KeyframeRequest(from));
                }
                Ok(())
            }
            MediaCommand::VideoAttach {
                call,
                agent,
                offered_pt,
                signalling,
            } => {
                // A lost video task leaves the call as audio: not a reason to end it.
                if let Some(tx) = self.video.get(&call) {
                    let _ = tx.send(super::video::VideoCtl::Attach {
                        agent,
                        offered_pt,
                        signalling,
                    });
                }
                Ok(())
            }
        }
    }

    fn send(&mut self, call: u64, ctl: Ctl) -> Result<(), (u64, String)> {
        match self.calls.get(&call) {
            Some(&w) if self.workers[w].send(super::relay::Msg::Ctl(call, ctl)) => Ok(()),
            _ => {
                self.calls.remove(&call);
                Err((call, "media task gone".into()))
            }
        }
    }
}

/// RTP and RTCP sockets of the two legs: [caller RTP, caller RTCP, agent RTP, agent RTCP].
pub(super) struct Sockets(pub(super) [UdpSocket; 4]);

/// The four sockets, non-blocking, for the relay threads.
pub(super) fn bind_std(
    ip: IpAddr,
    caller_port: u16,
    agent_port: u16,
) -> Result<[std::net::UdpSocket; 4], RtpBindError> {
    let bind = |port: u16| -> Result<std::net::UdpSocket, RtpBindError> {
        let err = |source| RtpBindError { port, source };
        let s = std::net::UdpSocket::bind(SocketAddr::new(ip, port)).map_err(err)?;
        s.set_nonblocking(true).map_err(err)?;
        Ok(s)
    };
    Ok([
        bind(caller_port)?,
        bind(caller_port + 1)?,
        bind(agent_port)?,
        bind(agent_port + 1)?,
    ])
}

/// The four sockets on the tokio reactor, for a video call's task.
pub(super) fn bind_all(
    ip: IpAddr,
    caller_port: u16,
    agent_port: u16,
) -> Result<Sockets, RtpBindError> {
    let [a, b, c, d] = bind_std(ip, caller_port, agent_port)?;
    let port = |s: &std::net::UdpSocket| s.local_addr().map_or(0, |a| a.port());
    let tokio = |s: std::net::UdpSocket| {
        let p = port(&s);
        UdpSocket::from_std(s).map_err(|source| RtpBindError { port: p, source })
    };
    Ok(Sockets([tokio(a)?, tokio(b)?, tokio(c)?, tokio(d)?]))
}

/// Binds an RTP socket on `ip:port` (port 0 picks one).
pub async fn bind_rtp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(addr).await
}

type FileRecorder = Recorder<std::io::BufWriter<std::fs::File>>;

/// What a call's relay thread and its agent leg's sink share.
pub(super) struct CallCore {
    pub(super) session: MediaSession,
    pub(super) recorder: Option<FileRecorder>,
    pub(super) out: Vec<Output>,
    /// What the sink left for the task: events the engine must get (sent with back-pressure)
    /// and a failure of the session.
    pub(super) deferred: Vec<Output>,
    pub(super) failed: Option<String>,
    /// Where the task's timer is set: a packet handled by the sink that brings the session's
    /// next deadline before it wakes the task to re-arm.
    pub(super) armed: Instant,
}

/// A call's sockets and where its packets and events go; shared by its relay thread and
/// its sink.
pub(super) struct CallIo {
    call: u64,
    /// [caller RTP, caller RTCP, agent RTP, agent RTCP].
    pub(super) socks: [std::net::UdpSocket; 4],
    switch: LocalRtp,
    /// The legs' addresses (caller, agent).
    addrs: [SocketAddr; 2],
    events: mpsc::Sender<MediaEvent>,
    pub(super) counters: Counters,
}

impl CallIo {
    /// Sends an RTP packet from `leg`'s port: to an in-process endpoint through the switch
    /// (not from a sink: a sink never runs another), else by UDP. The buffer comes back
    /// when it was not handed on, for reuse.
    pub(super) fn send(
        &self,
        leg: LegId,
        to: SocketAddr,
        packet: Vec<u8>,
        in_sink: bool,
    ) -> Option<Vec<u8>> {
        let (sock, from) = match leg {
            LegId::Caller => (&self.socks[0], self.addrs[0]),
            LegId::Agent => (&self.socks[2], self.addrs[1]),
        };
        let len = packet.len() as u64;
        let local = if in_sink {
            Err(packet)
        } else {
            self.switch.deliver(from, to, packet)
        };
        let (sent, back) = match local {
            Ok(delivered) => (delivered, None),
            Err(packet) => (sock.send_to(&packet, to).is_ok(), Some(packet)),
        };
        if sent {
            self.counters.relayed.inc();
            self.counters.bytes.inc_by(len);
        }
        back
    }

    /// The kernel rule for leg `from`'s direction `o`: IPv4 peers reached by UDP only (a
    /// browser's leg is an in-process endpoint), leaving by the interface the kernel
    /// routes `o.to` through (looked up once per destination: `prev`, the rule in place,
    /// knows it).
    pub(super) fn kernel_rule(
        &self,
        from: LegId,
        o: &Offload,
        prev: Option<&Rule>,
    ) -> Option<Rule> {
        let (SocketAddr::V4(src), SocketAddr::V4(to)) = (o.src, o.to) else {
            return None;
        };
        if self.switch.contains(o.to) {
            return None;
        }
        let (at, out) = match from {
            LegId::Caller => (self.addrs[0], self.addrs[1]),
            LegId::Agent => (self.addrs[1], self.addrs[0]),
        };
        let (ifindex, out_ip) = match prev {
            Some(p) if p.to == to => (p.ifindex, p.out_ip),
            _ => {
                let (ifindex, via) = super::kfwd::egress(*to.ip())?;
                match out.ip() {
                    std::net::IpAddr::V4(ip) if !ip.is_unspecified() => (ifindex, ip),
                    _ => (ifindex, via),
                }
            }
        };
        Some(Rule {
            port: at.port(),
            from: src,
            rewrite: o.rewrite,
            out_port: out.port(),
            to,
            out_ip,
            ifindex,
        })
    }

    /// Packets the kernel forwarded for this call count as relayed.
    pub(super) fn count_forwarded(&self, packets: u64, octets: u64) {
        self.counters.relayed.inc_by(packets);
        self.counters.kernel.inc_by(packets);
        // The RTP header the payload counts leave out.
        self.counters.bytes.inc_by(octets + 12 * packets);
    }

    /// Sends what needs no waiting and gives back the rest: the recorder's audio (the
    /// caller holds the recorder) and the events the engine must not miss. A sink passes
    /// `in_sink`: a packet for another in-process endpoint then goes by UDP, as a sink never
    /// runs another sink.
    pub(super) fn settle(&self, o: Output, in_sink: bool) -> Option<Output> {
        match o {
            Output::Send { leg, to, packet } => {
                self.send(leg, to, packet, in_sink);
            }
            Output::Rtcp { leg, to, packet } => {
                let sock = &self.socks[if leg == LegId::Caller { 1 } else { 3 }];
                let _ = sock.send_to(&packet, to);
            }
            Output::Digit { leg, digit, source } => {
                let _ = self.events.try_send(MediaEvent::Digit {
                    call: self.call,
                    leg,
                    digit,
                    source,
                });
            }
            Output::ForeignSource { leg, src, first } => {
                self.counters.foreign.inc();
                if first {
                    tracing::info!(call = self.call, ?leg, %src, "RTP from a source other than the leg's dropped");
                }
            }
            Output::SrtpRefused { leg, src, first } => {
                self.counters.srtp_refused.inc();
                if first {
                    tracing::info!(call = self.call, ?leg, %src, "SRTP that failed authentication dropped");
                }
            }
            o => return Some(o),
        }
        None
    }
}

pub(super) fn record(call: u64, recorder: &mut Option<FileRecorder>, leg: LegId, pcm: &[i16]) {
    if let Some(r) = recorder.as_mut() {
        if let Err(e) = r.push(leg == LegId::Caller, pcm) {
            tracing::warn!(call, "recording stopped: {e}");
            *recorder = None;
        }
    }
}

/// The agent leg's packets from a browser bridge in this process, handled in the bridge's
/// task (decode, encode, a non-blocking send to the trunk) rather than handed to the call's
/// task over a channel and a wake-up. What must wait is left to the call's task.
fn agent_sink(core: Arc<Mutex<CallCore>>, io: Arc<CallIo>, wake: super::relay::Kicker) -> Sink {
    Arc::new(move |from, data| {
        let mut guard = crate::runtime::lock(&core);
        let c = &mut *guard;
        let now = Instant::now();
        if let Err(e) = c
            .session
            .handle_packet(now, LegId::Agent, from, data, &mut c.out)
        {
            c.failed.get_or_insert_with(|| e.to_string());
        }
        for o in c.out.drain(..) {
            match io.settle(o, true) {
                Some(Output::Audio { leg, pcm }) => record(io.call, &mut c.recorder, leg, &pcm),
                Some(o) => c.deferred.push(o),
                None => {}
            }
        }
        if !c.deferred.is_empty() || c.failed.is_some() || c.session.poll_timeout() < c.armed {
            wake.kick();
        }
        true
    })
}

pub(super) fn open_recording(
    call: u64,
    path: &std::path::Path,
) -> Option<Recorder<std::io::BufWriter<std::fs::File>>> {
    let opened = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|_| std::fs::File::create(path))
        .and_then(|f| Recorder::new(std::io::BufWriter::new(f)));
    match opened {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(call, path = %path.display(), "cannot record: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::{build_rtp, parse_rtp};
    use crate::media::sdp::{Codec, Negotiated};
    use std::time::Duration;

    fn neg(codec: Codec, pt: u8, remote: SocketAddr) -> Negotiated {
        Negotiated::simple(codec, pt, remote)
    }

    fn free_port_pair() -> u16 {
        // An even port whose odd neighbour is free too.
        loop {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let p = s.local_addr().unwrap().port() & !1;
            drop(s);
            if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
                && std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
                && p > 1024
            {
                return p;
            }
        }
    }

    #[test]
    fn every_prompt_the_dialplan_names_must_exist() {
        let cfg = crate::config::Config::parse(
            crate::config::DEFAULT_CONFIG,
            crate::config::DEFAULT_CONFIG_NAME,
        )
        .unwrap();
        let p = Prompts::load(&cfg).unwrap();
        assert!(p.by_name.contains_key("menu-mn") && p.by_name.contains_key("pos-ko-10"));
        let bad = crate::config::Config::parse(
            "[queue.q]\nskill = \"fr\"\nlanguage = \"fr\"\nannounce_position = true\n\n[[agents]]\nids = \"1\"\npassword = \"pw\"\nskills = [\"fr\"]\n",
            "t.toml",
        )
        .unwrap();
        let err = Prompts::load(&bad).err().unwrap().to_string();
        assert!(
            err.contains("queue 'q' announce_position names prompt 'queue-position-fr'"),
            "{err}"
        );
    }

    #[test]
    fn a_broken_waiting_clip_is_an_error_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("dasan-clip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ivf = dir.join("wait.ivf");
        std::fs::write(&ivf, b"not a video").unwrap();
        let toml = |extra: &str| {
            format!("[video]\n{extra}\n[queue.q]\nskill = \"ko\"\n\n[[agents]]\nids = \"1\"\npassword = \"pw\"\nskills = [\"ko\"]\n")
        };
        let cfg = |extra: &str| crate::config::Config::parse(&toml(extra), "t.toml").unwrap();
        let err = Prompts::load(&cfg(&format!(
            "waiting_vp8 = {:?}",
            ivf.display().to_string()
        )))
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("wait.ivf") && err.contains("not an IVF file"),
            "{err}"
        );
        let err = Prompts::load(&cfg("waiting_h264 = \"/nonexistent/w.h264\""))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/w.h264"), "{err}");
        let off = Prompts::load(&cfg("waiting_picture = false")).unwrap();
        assert!(off.waiting.is_none());
        assert!(Prompts::load(&cfg("")).unwrap().waiting.is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_browser_bridges_packet_is_handled_in_the_senders_task() {
        let caller_phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        caller_phone.set_nonblocking(true).unwrap();
        let wait = Some(Duration::from_secs(2));
        let (cp, ap) = (free_port_pair(), free_port_pair());
        let agent_leg = SocketAddr::from(([127, 0, 0, 1], ap));
        // The bridge's own RTP address, as a browser leg in this process would hold it.
        let bridge = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let bridge_addr = bridge.local_addr().unwrap();
        let ring = crate::media::prompt::ringback();
        let prompts = Arc::new(Prompts {
            by_name: HashMap::new(),
            ringback: ring,
            waiting: None,
        });
        let (ev_tx, _ev_rx) = mpsc::channel(16);
        let relayed = prometheus::IntCounter::new("t", "t").unwrap();
        let switch = LocalRtp::default();
        let mut plane = MediaPlane::new(prompts, ev_tx, relayed.clone(), std::env::temp_dir())
            .with_local(switch.clone());
        plane
            .execute(MediaCommand::Start {
                call: 9,
                ip: "127.0.0.1".parse().unwrap(),
                caller_port: cp,
                agent_port: ap,
                caller: neg(Codec::Pcmu, 0, caller_phone.local_addr().unwrap()),
                signalling: "127.0.0.1".parse().unwrap(),
                timeout: Duration::from_secs(5),
                music: MusicRef::Silence,
            })
            .unwrap();
        plane
            .execute(MediaCommand::Attach {
                call: 9,
                agent: neg(Codec::Pcma, 8, bridge_addr),
                signalling: "127.0.0.1".parse().unwrap(),
                record: None,
            })
            .unwrap();
        // Let the call's task take the command.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while caller_phone.recv_from(&mut [0u8; 2048]).is_ok() {}
        caller_phone.set_nonblocking(false).unwrap();
        caller_phone.set_read_timeout(wait).unwrap();
        let before = relayed.get();
        for i in 0..5u16 {
            let rtp = build_rtp(8, i == 0, 300 + i, u32::from(i) * 160, 0xB0, &[0x55; 160]);
            assert_eq!(switch.deliver(bridge_addr, agent_leg, rtp), Ok(true));
            // Sent to the trunk before `deliver` returned: no await in between, so the
            // call's task cannot have run.
            assert_eq!(relayed.get() - before, u64::from(i) + 1);
            let mut buf = [0u8; 2048];
            let (n, from) = caller_phone
                .recv_from(&mut buf)
                .expect("the caller gets it");
            assert_eq!(from.port(), cp);
            let h = parse_rtp(&buf[..n]).unwrap();
            assert_eq!(
                h.payload_type, 0,
                "PCMA from the agent leg → PCMU to the caller"
            );
        }
        // Once the call ends, its address is no longer in the switch.
        plane.execute(MediaCommand::Stop { call: 9 }).unwrap();
        for _ in 0..100 {
            if switch.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(switch.is_empty(), "the sink is unregistered with the call");
    }

    #[tokio::test]
    async fn early_media_then_bridge_over_real_sockets_with_digits_recording_and_timeout() {
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let caller_phone = UdpSocket::bind(lo).await.unwrap();
        let agent_phone = UdpSocket::bind(lo).await.unwrap();
        let (cp, ap) = (free_port_pair(), free_port_pair());
        let caller_port = SocketAddr::from(([127, 0, 0, 1], cp));
        let agent_port = SocketAddr::from(([127, 0, 0, 1], ap));
        let dir = std::env::temp_dir().join(format!("dasan-media-{}", std::process::id()));
        let ring = crate::media::prompt::ringback();
        let prompts = Arc::new(Prompts {
            by_name: HashMap::from([("beep".to_string(), ring.clone())]),
            ringback: ring,
            waiting: None,
        });
        let (ev_tx, mut ev_rx) = mpsc::channel(16);
        let relayed = prometheus::IntCounter::new("t", "t").unwrap();
        let mut plane = MediaPlane::new(prompts, ev_tx, relayed.clone(), dir.clone());
        plane
            .execute(MediaCommand::Start {
                call: 7,
                ip: "127.0.0.1".parse().unwrap(),
                caller_port: cp,
                agent_port: ap,
                caller: neg(Codec::Pcmu, 0, caller_phone.local_addr().unwrap()),
                signalling: "127.0.0.1".parse().unwrap(),
                timeout: Duration::from_millis(600),
                music: MusicRef::Ringback,
            })
            .unwrap();
        let mut buf = [0u8; 2048];
        // Ringback arrives as early media before any agent exists.
        let mut early = Vec::new();
        for _ in 0..5 {
            let (n, from) =
                tokio::time::timeout(Duration::from_secs(2), caller_phone.recv_from(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
            assert_eq!(from, caller_port);
            early.push(parse_rtp(&buf[..n]).unwrap());
        }
        assert!(early.iter().all(|h| h.payload_type == 0));
        // A digit from the caller while waiting.
        for (i, (_, ev)) in crate::media::dtmf::events_for_digit('9', 60, 8000)
            .unwrap()
            .into_iter()
            .enumerate()
        {
            caller_phone
                .send_to(
                    &build_rtp(101, i == 0, i as u16, 9000, 0xC0, &ev),
                    caller_port,
                )
                .await
                .unwrap();
        }
        let ev = tokio::time::timeout(Duration::from_secs(2), ev_rx.recv())
            .await
            .unwrap();
        assert!(matches!(
            ev,
            Some(MediaEvent::Digit {
                call: 7,
                digit: '9',
                ..
            })
        ));
        plane
            .execute(MediaCommand::Attach {
                call: 7,
                agent: neg(Codec::Pcma, 8, agent_phone.local_addr().unwrap()),
                signalling: "127.0.0.1".parse().unwrap(),
                record: Some("rec-7".into()),
            })
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Drain ringback frames that were in flight.
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(30), caller_phone.recv_from(&mut buf)).await
        {
        }
        let mut last_seq = None;
        for i in 0..20u16 {
            caller_phone
                .send_to(
                    &build_rtp(0, i == 0, i, i as u32 * 160, 0xC0, &[0x10; 160]),
                    caller_port,
                )
                .await
                .unwrap();
            // Only what the relay's RTP ports send counts: a report to a neighbouring
            // port, or another test's packet, may land on a phone's socket too.
            let n = loop {
                let (n, from) =
                    tokio::time::timeout(Duration::from_secs(2), agent_phone.recv_from(&mut buf))
                        .await
                        .unwrap()
                        .unwrap();
                // The digit's last event packets may reach the bridge after the answer:
                // forwarded as telephone-events, not voice.
                if from == agent_port && parse_rtp(&buf[..n]).is_some_and(|h| h.payload_type != 101)
                {
                    break n;
                }
            };
            assert_eq!(parse_rtp(&buf[..n]).unwrap().payload_type, 8, "PCMU → PCMA");
            agent_phone
                .send_to(
                    &build_rtp(8, false, 100 + i, i as u32 * 160, 0xA0, &[0x20; 160]),
                    agent_port,
                )
                .await
                .unwrap();
            let n = loop {
                let (n, from) =
                    tokio::time::timeout(Duration::from_secs(2), caller_phone.recv_from(&mut buf))
                        .await
                        .unwrap()
                        .unwrap();
                if from == caller_port {
                    break n;
                }
            };
            let h = parse_rtp(&buf[..n]).unwrap();
            assert_eq!(h.ssrc, early[0].ssrc, "the caller's stream keeps its SSRC");
            if let Some(s) = last_seq {
                assert_eq!(h.seq, u16::wrapping_add(s, 1));
            }
            last_seq = Some(h.seq);
        }
        // Both phones go silent: the media timeout ends the call.
        let ev = tokio::time::timeout(Duration::from_secs(3), ev_rx.recv())
            .await
            .unwrap();
        assert_eq!(ev, Some(MediaEvent::Timeout { call: 7 }));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let wav = std::fs::read(dir.join("rec-7.wav")).unwrap();
        assert_eq!(&wav[22..24], &2u16.to_le_bytes());
        let frames = (wav.len() - 44) / 4;
        assert!(frames >= 20 * 160, "{frames} stereo samples recorded");
        let rms = |ch: usize| {
            let s: f64 = wav[44..]
                .chunks(4)
                .map(|c| i16::from_le_bytes([c[ch * 2], c[ch * 2 + 1]]) as f64)
                .map(|x| x * x)
                .sum();
            (s / frames as f64).sqrt()
        };
        assert!(rms(0) > 100.0 && rms(1) > 100.0, "both sides audible");
        assert!(relayed.get() >= 45, "relayed {}", relayed.get());
        let _ = std::fs::remove_dir_all(dir);
    }

    fn no_prompts() -> Arc<Prompts> {
        Arc::new(Prompts {
            by_name: HashMap::new(),
            ringback: crate::media::prompt::ringback(),
            waiting: None,
        })
    }

    /// A G.711 call on fresh ports, bridged between the two phones: its (caller, agent)
    /// ports.
    fn bridged(
        plane: &mut MediaPlane,
        call: u64,
        caller: SocketAddr,
        agent: SocketAddr,
        timeout: Duration,
    ) -> (u16, u16) {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let (cp, ap) = (free_port_pair(), free_port_pair());
        plane
            .execute(MediaCommand::Start {
                call,
                ip,
                caller_port: cp,
                agent_port: ap,
                caller: neg(Codec::Pcmu, 0, caller),
                signalling: ip,
                timeout,
                music: MusicRef::Silence,
            })
            .unwrap();
        plane
            .execute(MediaCommand::Attach {
                call,
                agent: neg(Codec::Pcmu, 0, agent),
                signalling: ip,
                record: None,
            })
            .unwrap();
        (cp, ap)
    }

    /// With in-kernel forwarding, a bridged call's packets after the first go through the
    /// kernel: the streams stay continuous across the handover, the session keeps up (no
    /// media timeout while only the kernel sees packets, the relayed count includes them),
    /// a digit still reaches the engine, a stranger is not forwarded, and the rules go
    /// when the agent leaves.
    #[tokio::test]
    async fn a_bridged_call_is_forwarded_in_the_kernel_and_the_session_keeps_up() {
        let Some(k) = super::super::kfwd::open_lo() else {
            return;
        };
        let k = Arc::new(k);
        let (ev_tx, mut ev_rx) = mpsc::channel(64);
        let relayed = prometheus::IntCounter::new("t", "t").unwrap();
        let mut plane = MediaPlane::new(no_prompts(), ev_tx, relayed.clone(), std::env::temp_dir())
            .with_workers(1)
            .with_kernel_forwarding(Some(k.clone()));
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&c, &a] {
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
        }
        let (cp, ap) = bridged(
            &mut plane,
            7,
            c.local_addr().unwrap(),
            a.local_addr().unwrap(),
            Duration::from_millis(800),
        );
        let mut buf = [0u8; 2048];
        // The next relayed RTP packet at `sock` from `port` (skipping early silence).
        let next = |sock: &std::net::UdpSocket, port: u16, buf: &mut [u8]| loop {
            let (n, from) = sock.recv_from(buf).expect("relayed");
            if from.port() == port && buf[1] & 0x7f != 13 {
                return parse_rtp(&buf[..n]).map(|h| (h, buf[n - 1])).unwrap();
            }
        };
        let (mut last_a, mut last_c): (Option<u16>, Option<u16>) = (None, None);
        // 1.5 s of audio both ways, past the 0.8 s media timeout.
        for i in 0..75u16 {
            let tag = (i % 200) as u8;
            c.send_to(
                &build_rtp(0, false, 100 + i, 160 * u32::from(i), 0x11, &[tag; 160]),
                ("127.0.0.1", cp),
            )
            .unwrap();
            let (h, t) = next(&a, ap, &mut buf);
            assert_eq!(t, tag, "the agent hears packet {i}");
            if let Some(l) = last_a {
                assert_eq!(
                    h.seq,
                    l.wrapping_add(1),
                    "continuous towards the agent at {i}"
                );
            }
            last_a = Some(h.seq);
            a.send_to(
                &build_rtp(0, false, 900 + i, 160 * u32::from(i), 0x22, &[tag; 160]),
                ("127.0.0.1", ap),
            )
            .unwrap();
            let (h, t) = next(&c, cp, &mut buf);
            assert_eq!(t, tag, "the caller hears packet {i}");
            if let Some(l) = last_c {
                assert_eq!(
                    h.seq,
                    l.wrapping_add(1),
                    "continuous towards the caller at {i}"
                );
            }
            last_c = Some(h.seq);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let kc = k.counts(cp).expect("a rule for the caller's direction");
        let ka = k.counts(ap).expect("a rule for the agent's direction");
        assert!(kc.packets >= 70 && ka.packets >= 70, "{kc:?} {ka:?}");
        // A stranger sending the caller's stream is not forwarded.
        stranger
            .send_to(
                &build_rtp(0, false, 175, 0, 0x11, &[0xEE; 160]),
                ("127.0.0.1", cp),
            )
            .unwrap();
        // A digit: the events go through the relay thread, which reports it.
        for (j, (_, ev)) in crate::media::dtmf::events_for_digit('9', 60, 8000)
            .unwrap()
            .into_iter()
            .enumerate()
        {
            c.send_to(
                &build_rtp(101, j == 0, 175 + j as u16, 160 * 75, 0x11, &ev),
                ("127.0.0.1", cp),
            )
            .unwrap();
            let (h, _) = next(&a, ap, &mut buf);
            assert_eq!(h.payload_type, 101);
            assert_eq!(
                h.seq,
                last_a.unwrap().wrapping_add(1),
                "events continue the stream"
            );
            last_a = Some(h.seq);
        }
        let mut digit = None;
        while let Ok(Some(ev)) =
            tokio::time::timeout(Duration::from_millis(300), ev_rx.recv()).await
        {
            match ev {
                MediaEvent::Digit { digit: d, .. } => digit = Some(d),
                MediaEvent::Timeout { .. } => panic!("a media timeout while the kernel forwarded"),
                _ => {}
            }
        }
        assert_eq!(digit, Some('9'));
        // The relay thread stepped for the digit: what the kernel carried is counted.
        assert!(relayed.get() >= 140, "relayed {}", relayed.get());
        plane.execute(MediaCommand::Detach { call: 7 }).unwrap();
        for _ in 0..50 {
            if k.counts(cp).is_none() && k.counts(ap).is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            k.counts(cp).is_none() && k.counts(ap).is_none(),
            "rules gone after detach"
        );
        plane.execute(MediaCommand::Stop { call: 7 }).unwrap();
    }

    /// Calls spread over two relay threads: every call relays both ways with its own
    /// stream, a stopped call's sockets are closed (its ports bind again) and the threads
    /// end up serving nothing.
    #[tokio::test]
    async fn many_calls_over_two_relay_threads_relay_and_stop_cleanly() {
        let prompts = no_prompts();
        let (ev_tx, _ev_rx) = mpsc::channel(64);
        let relayed = prometheus::IntCounter::new("t", "t").unwrap();
        let mut plane =
            MediaPlane::new(prompts, ev_tx, relayed.clone(), std::env::temp_dir()).with_workers(2);
        let mut calls = Vec::new();
        for call in 0..40u64 {
            let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            for s in [&c, &a] {
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            }
            let (cp, ap) = bridged(
                &mut plane,
                call,
                c.local_addr().unwrap(),
                a.local_addr().unwrap(),
                Duration::from_secs(10),
            );
            calls.push((call, c, cp, a, ap));
        }
        let loads: Vec<usize> = plane
            .workers
            .iter()
            .map(|w| w.load.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let loads_after: Vec<usize> = plane
            .workers
            .iter()
            .map(|w| w.load.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        assert_eq!(plane.workers.len(), 2);
        assert_eq!(
            loads_after.iter().sum::<usize>(),
            40,
            "{loads:?} {loads_after:?}"
        );
        assert!(
            loads_after.iter().all(|l| *l >= 15),
            "spread: {loads_after:?}"
        );
        let mut buf = [0u8; 2048];
        for (call, c, cp, a, ap) in &calls {
            let tag = *call as u8;
            for i in 0..3u16 {
                c.send_to(
                    &build_rtp(0, false, i, u32::from(i) * 160, 0x100, &[tag; 160]),
                    ("127.0.0.1", *cp),
                )
                .unwrap();
                loop {
                    let (n, from) = a.recv_from(&mut buf).expect("the agent hears the caller");
                    if from.port() == *ap {
                        assert_eq!(buf[n - 1], tag, "call {call}'s own stream");
                        break;
                    }
                }
                a.send_to(
                    &build_rtp(0, false, i, u32::from(i) * 160, 0x200, &[tag ^ 0xFF; 160]),
                    ("127.0.0.1", *ap),
                )
                .unwrap();
                // Early silence frames may come first: skip to the relayed one.
                loop {
                    let (n, from) = c.recv_from(&mut buf).expect("the caller hears the agent");
                    if from.port() == *cp && buf[n - 1] == tag ^ 0xFF {
                        break;
                    }
                }
            }
        }
        // The count follows each send: the last ones may still be on their way.
        for _ in 0..100 {
            if relayed.get() >= 240 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(relayed.get() >= 240, "relayed {}", relayed.get());
        for (call, ..) in &calls {
            plane.execute(MediaCommand::Stop { call: *call }).unwrap();
        }
        for _ in 0..100 {
            let busy: usize = plane
                .workers
                .iter()
                .map(|w| w.load.load(std::sync::atomic::Ordering::Relaxed))
                .sum();
            if busy == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for (_, _, cp, _, ap) in &calls {
            for p in [*cp, cp + 1, *ap, ap + 1] {
                assert!(
                    std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok(),
                    "port {p} still held after Stop"
                );
            }
        }
    }

    /// The engine's channel is full when calls time out: no Timeout is lost, each arrives
    /// once there is room.
    #[tokio::test]
    async fn media_events_wait_for_room_in_the_engines_channel() {
        let prompts = no_prompts();
        let (ev_tx, mut ev_rx) = mpsc::channel(1);
        let relayed = prometheus::IntCounter::new("t", "t").unwrap();
        let mut plane =
            MediaPlane::new(prompts, ev_tx, relayed, std::env::temp_dir()).with_workers(1);
        let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for call in 0..5u64 {
            let at = phone.local_addr().unwrap();
            bridged(&mut plane, call, at, at, Duration::from_millis(200));
        }
        // All five time out while nobody reads the channel (room for one).
        tokio::time::sleep(Duration::from_millis(600)).await;
        let mut timed_out = Vec::new();
        while timed_out.len() < 5 {
            match tokio::time::timeout(Duration::from_secs(2), ev_rx.recv()).await {
                Ok(Some(MediaEvent::Timeout { call })) => timed_out.push(call),
                Ok(Some(_)) => {}
                other => panic!("after {timed_out:?}: {other:?}"),
            }
        }
        timed_out.sort_unstable();
        assert_eq!(timed_out, vec![0, 1, 2, 3, 4]);
    }
}
