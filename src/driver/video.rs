//! A video call's relay task: the four video sockets (each leg's RTP and RTCP) and the
//! sans-IO [`VideoRelay`]. It lives until the call's media stops (the engine's `Stop`, which
//! drops the control channel), then hands the call's video statistics to the engine for
//! the record. Video adds no buffering: each packet is rewritten and sent on as it is read.

use super::media::Sockets;
use crate::media::bridge::{LegId, MediaEvent};
use crate::media::sdp::VideoNeg;
use crate::media::video::{VideoOut, VideoRelay, VideoStats};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

pub(crate) enum VideoCtl {
    Attach {
        agent: VideoNeg,
        offered_pt: u8,
        signalling: IpAddr,
    },
    /// The agent leg left (a transfer): the waiting picture until the next.
    Detach,
    /// A leg asked for a keyframe by SIP INFO (RFC 5168).
    KeyframeRequest(LegId),
}

/// What a relay task reports to, and for which call.
pub(crate) struct VideoTask {
    pub call: u64,
    pub record: String,
    pub events: mpsc::Sender<MediaEvent>,
    pub counters: Option<VideoCounters>,
    pub timeout: Duration,
}

/// The Prometheus counters, by the leg a packet came from.
#[derive(Clone)]
pub(crate) struct VideoCounters {
    packets: [prometheus::IntCounter; 2],
    bytes: [prometheus::IntCounter; 2],
    frames: [prometheus::IntCounter; 2],
    keyframes: [prometheus::IntCounter; 2],
    dropped: [prometheus::IntCounter; 2],
    lost: [prometheus::IntCounter; 2],
}

impl VideoCounters {
    pub(crate) fn new(m: &crate::metrics::Metrics) -> VideoCounters {
        let by = |v: &prometheus::IntCounterVec| {
            [
                v.with_label_values(&["caller"]),
                v.with_label_values(&["agent"]),
            ]
        };
        VideoCounters {
            packets: by(&m.video_packets),
            bytes: by(&m.video_bytes),
            frames: by(&m.video_frames),
            keyframes: by(&m.video_keyframe_requests),
            dropped: by(&m.video_dropped),
            lost: by(&m.video_lost),
        }
    }

    fn add(&self, before: &VideoStats, now: &VideoStats) {
        for i in 0..2 {
            self.packets[i].inc_by(now.packets_in[i] - before.packets_in[i]);
            self.bytes[i].inc_by(now.bytes_in[i] - before.bytes_in[i]);
            self.frames[i].inc_by(now.frames_in[i] - before.frames_in[i]);
            self.keyframes[i].inc_by(now.keyframe_requests_in[i] - before.keyframe_requests_in[i]);
            self.dropped[i].inc_by(now.dropped[i] - before.dropped[i]);
        }
    }
}

/// The wall clock as an NTP timestamp (seconds since 1900, fraction), for sender reports.
fn ntp_now() -> (u32, u32) {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = (d.as_secs() + 2_208_988_800) as u32;
    let frac = ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000) as u32;
    (secs, frac)
}

pub(crate) async fn run_video(
    task: VideoTask,
    socks: Sockets,
    mut relay: VideoRelay,
    mut ctl: mpsc::UnboundedReceiver<VideoCtl>,
) {
    let VideoTask {
        call,
        record,
        events,
        counters,
        timeout,
    } = task;
    let [c_rtp, c_rtcp, a_rtp, a_rtcp] = &socks.0;
    let mut bufs = [[0u8; 2048], [0u8; 2048], [0u8; 2048], [0u8; 2048]];
    let mut seen = relay.stats.clone();
    loop {
        let wake = tokio::time::Instant::from_std(relay.poll_timeout());
        let [b0, b1, b2, b3] = &mut bufs;
        let outs: Vec<VideoOut> = tokio::select! {
            c = ctl.recv() => match c {
                None => break,
                Some(VideoCtl::Attach { agent, offered_pt, signalling }) => relay
                    .attach(Instant::now(), &agent, offered_pt, signalling, rand::random(), timeout)
                    .into_iter()
                    .collect(),
                Some(VideoCtl::Detach) => {
                    relay.detach(Instant::now());
                    Vec::new()
                }
                Some(VideoCtl::KeyframeRequest(leg)) =>
                    relay.on_keyframe_request(Instant::now(), leg),
            },
            () = tokio::time::sleep_until(wake) => relay.handle_timeout(Instant::now(), ntp_now()),
            Ok((n, src)) = c_rtp.recv_from(b0) =>
                relay.on_rtp(Instant::now(), LegId::Caller, src, &b0[..n]),
            Ok((n, src)) = c_rtcp.recv_from(b1) =>
                relay.on_rtcp(Instant::now(), LegId::Caller, src, &b1[..n]),
            Ok((n, src)) = a_rtp.recv_from(b2) =>
                relay.on_rtp(Instant::now(), LegId::Agent, src, &b2[..n]),
            Ok((n, src)) = a_rtcp.recv_from(b3) =>
                relay.on_rtcp(Instant::now(), LegId::Agent, src, &b3[..n]),
        };
        for o in outs {
            let sock = match (o.leg, o.rtcp) {
                (LegId::Caller, false) => c_rtp,
                (LegId::Caller, true) => c_rtcp,
                (LegId::Agent, false) => a_rtp,
                (LegId::Agent, true) => a_rtcp,
            };
            if let Err(e) = sock.try_send_to(&o.data, o.to) {
                tracing::trace!(call, "video send: {e}");
            }
        }
        while let Some(leg) = relay.poll_info() {
            // Best effort: a full engine queue loses one keyframe request, not the relay.
            let _ = events.try_send(MediaEvent::PictureFastUpdate { call, leg });
        }
        if let Some(c) = &counters {
            c.add(&seen, &relay.stats);
            seen = relay.stats.clone();
        }
    }
    let summary = relay.summary();
    tracing::debug!(call, ?summary, "video relay ended");
    if let Some(c) = &counters {
        c.lost[0].inc_by(summary.from_caller.lost);
        c.lost[1].inc_by(summary.from_agent.lost);
    }
    // The engine may be shutting down; the statistics are then lost with the process.
    let _ = events
        .send(MediaEvent::Video {
            call,
            record,
            summary,
        })
        .await;
}
