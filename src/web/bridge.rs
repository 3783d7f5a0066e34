//! The tokio side of a browser agent's media: one task per logged-in session owns the ICE
//! socket, the engine-side RTP address and the sans-IO [`BrowserPeer`], kept up for the whole
//! session. The engine's media plane transcodes the call to the trunk's G.711 with the media
//! layer's transcoder (one transcoder in the process); RTP between it and this task goes
//! through the in-process switch ([`LocalRtp`]), not the kernel.
//!
//! Why webrtc-rs's sans-IO core (`rtc`, on which the `webrtc` crate's async API is built)
//! driven here, and not the `webrtc` crate's own driver: a browser call is a steady 50
//! packets a second each way for hours, and that driver's generic machinery (a task per
//! track, async locks and queues between them) cost more per packet than the transcoding.
//! With one task, a packet from the browser is one socket read, SRTP, and the call's agent
//! leg run in place through its sink (Opus decoded, G.711 encoded, sent to the trunk). A
//! packet to the browser is likewise handled in the media plane's task, in place (SRTP and a
//! non-blocking send, under the session's lock). So each packet wakes one task, the one
//! whose socket it arrived on.
//!
//! Why one connection per session and not per call: ICE and the DTLS handshake take a few
//! hundred milliseconds; done at login, the time from the agent's answer click to audio is
//! only SIP on loopback and the engine attaching the leg.
//!
//! Video, when the browser offered it, has a socket of its own: the engine's video relay
//! (`driver::video`) sends and receives by UDP, RTP and RTCP alike, so this task reads that
//! socket and writes the browser's camera and keyframe requests from it.

use super::peer::BrowserPeer;
pub use super::peer::{PeerEvent, VideoTarget};
use crate::media::sdp::VideoCodec;
use crate::runtime::{lock, LocalRtp, Registration};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

enum Ctl {
    Target(Option<(SocketAddr, u8)>),
    Video(Option<VideoTarget>),
    Hold(bool),
}

pub struct Bridge {
    ctl: mpsc::UnboundedSender<Ctl>,
    local_rtp: SocketAddr,
    /// The session's video codec and our video address, when the browser has video.
    video: Option<(VideoCodec, SocketAddr)>,
    /// Packets relayed browser → engine and engine → browser (for the tests and stats).
    pub to_engine: Arc<AtomicU64>,
    pub to_browser: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// Why a browser's audio connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("{what} socket: no free port in {lo}-{hi} ([media] webrtc_port_min/max)")]
    NoPort {
        what: &'static str,
        lo: u16,
        hi: u16,
    },
    #[error("{what} socket: {source}")]
    Socket {
        what: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Peer(#[from] super::peer::PeerError),
}

impl Bridge {
    /// Answers the browser's offer. `ip` is the address ICE and the engine-side RTP address
    /// bind (the engine's media address), on ports from `ports` (`[media]
    /// webrtc_port_min/max`); `local` is the engine's in-process RTP switch. Returns the
    /// bridge, the SDP answer and the peer's state changes.
    pub async fn answer(
        ip: IpAddr,
        advertise: Option<IpAddr>,
        ports: (u16, u16),
        offer_sdp: String,
        local: &LocalRtp,
    ) -> Result<(Bridge, String, mpsc::Receiver<PeerEvent>), BridgeError> {
        let ice = bind_in(ip, ports, "ICE")?;
        // The engine-side RTP address: bound so that it is ours, and read in case a packet
        // comes by UDP rather than through the in-process switch.
        let rtp = bind_in(ip, ports, "RTP")?;
        let socket = |what| move |source| BridgeError::Socket { what, source };
        let ice_addr = ice.local_addr().map_err(socket("ICE"))?;
        let local_rtp = rtp.local_addr().map_err(socket("RTP"))?;
        let video = match super::peer::offered_video_codec(&offer_sdp) {
            Some(_) => Some(Arc::new(bind_in(ip, ports, "video")?)),
            None => None,
        };
        let local_video = match &video {
            Some(v) => Some(v.local_addr().map_err(socket("video"))?),
            None => None,
        };
        let (peer, sdp) = BrowserPeer::answer_advertised(
            Instant::now(),
            offer_sdp,
            ice_addr,
            local_rtp,
            local_video,
            advertise,
        )?;
        let video_info = peer.video();
        // The answer may have refused the video after all: then the socket goes.
        let video = video.filter(|_| video_info.is_some());
        let (events_tx, events) = mpsc::channel(8);
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let to_engine = Arc::new(AtomicU64::new(0));
        let to_browser = Arc::new(AtomicU64::new(0));
        let (ice, rtp) = (Arc::new(ice), Arc::new(rtp));
        let core = Arc::new(Mutex::new(Core {
            peer,
            ice: ice.clone(),
            rtp: rtp.clone(),
            video: video.clone(),
            events: events_tx,
            to_engine: to_engine.clone(),
            to_browser: to_browser.clone(),
            armed: Instant::now(),
            first_write: true,
            outbox: Vec::new(),
        }));
        // Full means a re-arm is already pending: one is enough.
        let (rearm, rearm_rx) = mpsc::channel(1);
        let registration = local.register_sink(local_rtp, sink(core.clone(), rearm));
        let driver = Driver {
            core,
            ice,
            rtp,
            video,
            local: local.clone(),
            to_engine: to_engine.clone(),
            rearm: rearm_rx,
        };
        let task = tokio::spawn(driver.run(ctl_rx, registration));
        Ok((
            Bridge {
                ctl,
                local_rtp,
                video: video_info,
                to_engine,
                to_browser,
                task,
            },
            sdp,
            events,
        ))
    }

    /// Our RTP address towards the engine (the SDP of the agent leg's answer).
    pub fn local_rtp(&self) -> Option<SocketAddr> {
        Some(self.local_rtp)
    }

    /// A call is connected: relay to the engine's `addr` with its Opus `pt`; None stops.
    /// Either way the call is no longer on hold.
    pub fn set_target(&self, target: Option<(SocketAddr, u8)>) {
        let _ = self.ctl.send(Ctl::Target(target));
    }

    /// The session's video codec and our video address (the agent leg's m=video), if the
    /// browser has video.
    pub fn video(&self) -> Option<(VideoCodec, SocketAddr)> {
        self.video
    }

    /// A video call is connected (relay to `target`), or None: the video idles.
    pub fn set_video_target(&self, target: Option<VideoTarget>) {
        let _ = self.ctl.send(Ctl::Video(target));
    }

    pub fn set_hold(&self, on: bool) {
        let _ = self.ctl.send(Ctl::Hold(on));
    }

    /// Closes the connection (the browser is told by DTLS close_notify) and ends the task.
    pub async fn close(self) {
        drop(self.ctl);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// A UDP socket on a free port of `lo..=hi`, tried from a random point on (a port some
/// other program holds is skipped).
fn bind_in(ip: IpAddr, (lo, hi): (u16, u16), what: &'static str) -> Result<UdpSocket, BridgeError> {
    let n = u32::from(hi.saturating_sub(lo)) + 1;
    let start = rand::random::<u32>() % n;
    let socket = |source| BridgeError::Socket { what, source };
    for i in 0..n {
        let port = lo + ((start + i) % n) as u16;
        if let Ok(s) = std::net::UdpSocket::bind(SocketAddr::new(ip, port)) {
            s.set_nonblocking(true).map_err(socket)?;
            return UdpSocket::from_std(s).map_err(socket);
        }
    }
    Err(BridgeError::NoPort { what, lo, hi })
}

/// The session's connection and what it sends with, shared by its task and the media
/// plane's task (which hands packets for the browser in through [`sink`]).
struct Core {
    peer: BrowserPeer,
    ice: Arc<UdpSocket>,
    rtp: Arc<UdpSocket>,
    video: Option<Arc<UdpSocket>>,
    events: mpsc::Sender<PeerEvent>,
    to_engine: Arc<AtomicU64>,
    to_browser: Arc<AtomicU64>,
    /// Where the task's timer is set: a packet handled elsewhere that brings the
    /// connection's next deadline before it wakes the task to re-arm.
    armed: Instant,
    /// Whether the sink's next packet may move the deadline: the first write of a call
    /// starts its RTP stream and that stream's report timer; later writes move no timer
    /// (ICE and DTLS keep theirs), so the sink skips the walk through every handler's
    /// deadline on the other 49 packets a second.
    first_write: bool,
    /// The browser's packets for the media plane, handed over once the lock is released:
    /// the call's agent leg is a sink too, and a sink never runs under another's lock.
    outbox: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
}

/// The media plane's packets for this browser, handled in the sender's task.
fn sink(core: Arc<Mutex<Core>>, rearm: mpsc::Sender<()>) -> crate::runtime::Sink {
    Arc::new(move |from, data| {
        let mut guard = lock(&core);
        let c = &mut *guard;
        c.peer.handle_engine_packet(Instant::now(), from, &data);
        c.transmit();
        // Writing reads nothing from the browser, so this is empty but for a packet the task
        // has not handed over yet: by UDP, as a sink never runs another sink.
        for (_, to, data) in c.outbox.drain(..) {
            hand_over(Err(data), to, &c.rtp, &c.to_engine);
        }
        if std::mem::take(&mut c.first_write) && c.peer.poll_timeout().is_some_and(|t| t < c.armed)
        {
            let _ = rearm.try_send(());
        }
        true
    })
}

/// Counts a packet for the media plane that the switch delivered (`Ok`), or sends it by UDP.
fn hand_over(local: Result<bool, Vec<u8>>, to: SocketAddr, rtp: &UdpSocket, count: &AtomicU64) {
    let sent = match local {
        Ok(delivered) => delivered,
        Err(data) => rtp.try_send_to(&data, to).is_ok(),
    };
    if sent {
        count.fetch_add(1, Ordering::Relaxed);
    }
}

struct Driver {
    core: Arc<Mutex<Core>>,
    ice: Arc<UdpSocket>,
    rtp: Arc<UdpSocket>,
    video: Option<Arc<UdpSocket>>,
    local: LocalRtp,
    to_engine: Arc<AtomicU64>,
    rearm: mpsc::Receiver<()>,
}

enum Wake {
    Ctl(Option<Ctl>),
    Ice(std::io::Result<(usize, SocketAddr)>),
    Rtp(std::io::Result<(usize, SocketAddr)>),
    Video(std::io::Result<(usize, SocketAddr)>),
    Rearm,
    Timer,
}

impl Driver {
    async fn run(mut self, mut ctl: mpsc::UnboundedReceiver<Ctl>, registration: Registration) {
        let mut buf = vec![0u8; 2048];
        let mut rtp_buf = vec![0u8; 2048];
        let mut video_buf = vec![0u8; 2048];
        // One timer for the task's life, moved only when the connection's deadline moves
        // (a new timer per packet was a measurable part of the relay's cost).
        let far = || Instant::now() + Duration::from_secs(3600);
        let mut deadline = far();
        let sleep = tokio::time::sleep_until(deadline.into());
        tokio::pin!(sleep);
        let mut turn = 0;
        let mut outbox = Vec::new();
        loop {
            let wake = {
                let mut c = lock(&self.core);
                c.transmit();
                std::mem::swap(&mut c.outbox, &mut outbox);
                c.armed = c.peer.poll_timeout().unwrap_or_else(far);
                c.armed
            };
            // The browser's audio into the call's sink, which decodes, encodes and sends it
            // to the trunk in this task.
            for (from, to, data) in outbox.drain(..) {
                let local = self.local.deliver(from, to, data);
                hand_over(local, to, &self.rtp, &self.to_engine);
            }
            if wake != deadline {
                deadline = wake;
                sleep.as_mut().reset(wake.into());
            }
            // One hand-written poll, not `select!` (see `runtime::first_ready`).
            let wake = crate::runtime::first_ready(&mut turn, 6, |source, cx| {
                use std::future::Future;
                use std::task::Poll;
                match source {
                    0 => ctl.poll_recv(cx).map(Wake::Ctl),
                    1 => {
                        let mut rb = tokio::io::ReadBuf::new(&mut buf);
                        self.ice
                            .poll_recv_from(cx, &mut rb)
                            .map(|r| Wake::Ice(r.map(|from| (rb.filled().len(), from))))
                    }
                    2 => {
                        let mut rb = tokio::io::ReadBuf::new(&mut rtp_buf);
                        self.rtp
                            .poll_recv_from(cx, &mut rb)
                            .map(|r| Wake::Rtp(r.map(|from| (rb.filled().len(), from))))
                    }
                    // The sender lives in the sink for as long as we are registered.
                    3 => match self.rearm.poll_recv(cx) {
                        Poll::Ready(Some(())) => Poll::Ready(Wake::Rearm),
                        _ => Poll::Pending,
                    },
                    4 => match &self.video {
                        Some(v) => {
                            let mut rb = tokio::io::ReadBuf::new(&mut video_buf);
                            v.poll_recv_from(cx, &mut rb)
                                .map(|r| Wake::Video(r.map(|from| (rb.filled().len(), from))))
                        }
                        None => Poll::Pending,
                    },
                    _ => sleep.as_mut().poll(cx).map(|()| Wake::Timer),
                }
            })
            .await;
            match wake {
                Wake::Ctl(Some(Ctl::Target(t))) => {
                    let mut c = lock(&self.core);
                    c.peer.set_target(t);
                    c.first_write = true;
                }
                Wake::Ctl(Some(Ctl::Video(t))) => lock(&self.core).peer.set_video_target(t),
                Wake::Ctl(Some(Ctl::Hold(on))) => lock(&self.core).peer.set_hold(on),
                Wake::Ctl(None) => break,
                Wake::Ice(Ok((n, from))) => {
                    lock(&self.core)
                        .peer
                        .handle_datagram(Instant::now(), from, &buf[..n]);
                }
                // Packets that came by UDP rather than through the in-process switch.
                Wake::Rtp(Ok((n, from))) => {
                    lock(&self.core)
                        .peer
                        .handle_engine_packet(Instant::now(), from, &rtp_buf[..n]);
                }
                Wake::Video(Ok((n, from))) => {
                    lock(&self.core).peer.handle_engine_video(
                        Instant::now(),
                        from,
                        &video_buf[..n],
                    );
                }
                Wake::Ice(Err(_)) | Wake::Rtp(Err(_)) | Wake::Video(Err(_)) | Wake::Rearm => {}
                Wake::Timer => {
                    lock(&self.core).peer.handle_timeout(Instant::now());
                    // Until the connection names its next deadline.
                    deadline = far();
                    sleep.as_mut().reset(deadline.into());
                }
            }
        }
        // No more packets from the media plane once the sink is gone.
        drop(registration);
        let mut c = lock(&self.core);
        c.peer.close();
        c.transmit();
    }
}

impl Core {
    /// Everything the leg has for the browser, the engine and the session. A full socket
    /// buffer drops a datagram, as any UDP sender would.
    fn transmit(&mut self) {
        while let Some((to, data)) = self.peer.poll_transmit() {
            let _ = self.ice.try_send_to(&data, to);
        }
        while let Some(p) = self.peer.poll_to_engine() {
            self.outbox.push(p);
        }
        // Video goes by UDP straight from here: the engine's video relay has no sink.
        while let Some((to, data)) = self.peer.poll_video_to_engine() {
            if let Some(v) = &self.video {
                let _ = v.try_send_to(&data, to);
            }
        }
        while let Some(ev) = self.peer.poll_event() {
            let _ = self.events.try_send(ev);
        }
        self.to_browser
            .store(self.peer.to_browser, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sockets_bind_in_the_configured_range_skipping_taken_ports() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        // A free pair of neighbouring ports to work in.
        let (held, lo) = loop {
            let s = std::net::UdpSocket::bind((ip, 0)).unwrap();
            let p = s.local_addr().unwrap().port();
            if p < u16::MAX && std::net::UdpSocket::bind((ip, p + 1)).is_ok() {
                break (s, p);
            }
        };
        // `lo` is held by "another program": the one free port is found from any start.
        for _ in 0..8 {
            let s = bind_in(ip, (lo, lo + 1), "RTP").unwrap();
            assert_eq!(s.local_addr().unwrap().port(), lo + 1);
        }
        let _second = bind_in(ip, (lo, lo + 1), "RTP").unwrap();
        let err = bind_in(ip, (lo, lo + 1), "RTP").err().unwrap().to_string();
        assert!(
            err.contains(&format!("no free port in {lo}-{}", lo + 1)),
            "{err}"
        );
        drop(held);
    }
}
