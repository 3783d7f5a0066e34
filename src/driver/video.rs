//! A video call's relay task: the four video sockets (each leg's RTP and RTCP) and the
//! sans-IO [`VideoRelay`]. It lives until the call's media stops (the engine's `Stop`, which
//! drops the control channel). Video adds no buffering: each packet is rewritten and sent
//! on as it is read.

use super::media::Sockets;
use crate::media::bridge::LegId;
use crate::media::sdp::VideoNeg;
use crate::media::video::{VideoOut, VideoRelay, VideoStats};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub(crate) enum VideoCtl {
    Attach {
        agent: VideoNeg,
        offered_pt: u8,
        signalling: IpAddr,
    },
}

/// The Prometheus counters, by the leg a packet came from.
#[derive(Clone)]
pub(crate) struct VideoCounters {
    packets: [prometheus::IntCounter; 2],
    keyframes: [prometheus::IntCounter; 2],
    dropped: [prometheus::IntCounter; 2],
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
            keyframes: by(&m.video_keyframe_requests),
            dropped: by(&m.video_dropped),
        }
    }

    fn add(&self, before: &VideoStats, now: &VideoStats) {
        for i in 0..2 {
            self.packets[i].inc_by(now.packets_in[i] - before.packets_in[i]);
            self.keyframes[i].inc_by(now.keyframe_requests_in[i] - before.keyframe_requests_in[i]);
            self.dropped[i].inc_by(now.dropped[i] - before.dropped[i]);
        }
    }
}

pub(crate) async fn run_video(
    call: u64,
    socks: Sockets,
    mut relay: VideoRelay,
    mut ctl: mpsc::UnboundedReceiver<VideoCtl>,
    counters: Option<VideoCounters>,
    timeout: Duration,
) {
    let [c_rtp, c_rtcp, a_rtp, a_rtcp] = &socks.0;
    let mut bufs = [[0u8; 2048], [0u8; 2048], [0u8; 2048], [0u8; 2048]];
    let mut seen = relay.stats.clone();
    loop {
        let now = Instant::now();
        let [b0, b1, b2, b3] = &mut bufs;
        let outs: Vec<VideoOut> = tokio::select! {
            c = ctl.recv() => match c {
                None => break,
                Some(VideoCtl::Attach { agent, offered_pt, signalling }) => relay
                    .attach(now, &agent, offered_pt, signalling, rand::random(), timeout)
                    .into_iter()
                    .collect(),
            },
            Ok((n, src)) = c_rtp.recv_from(b0) => relay.on_rtp(now, LegId::Caller, src, &b0[..n]),
            Ok((n, src)) = c_rtcp.recv_from(b1) => relay.on_rtcp(LegId::Caller, src, &b1[..n]),
            Ok((n, src)) = a_rtp.recv_from(b2) => relay.on_rtp(now, LegId::Agent, src, &b2[..n]),
            Ok((n, src)) = a_rtcp.recv_from(b3) => relay.on_rtcp(LegId::Agent, src, &b3[..n]),
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
        if let Some(c) = &counters {
            c.add(&seen, &relay.stats);
            seen = relay.stats.clone();
        }
    }
    tracing::debug!(call, stats = ?relay.stats, "video relay ended");
}
