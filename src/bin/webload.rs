//! Load generator for browser agents (run by `sipp-scenarios/load-web.sh`): N simulated
//! browsers, each doing what the agent desktop does — log in over `/agent/ws`, open a
//! WebRTC connection (the `webrtc` crate as the browser's stack: ICE, DTLS-SRTP, Opus),
//! go ready, answer every offer, send a microphone (an Opus-encoded tone, 20 ms frames) and
//! count what it hears. It prints one JSON line per milestone and, at the end, the
//! answer-to-first-audio times (p50/p95/max) and packets heard per call.
//!
//!   webload HTTP_ADDR FIRST_AGENT COUNT PASSWORD SECONDS

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Ws;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
};

struct Stats {
    heard: AtomicU64,
    quality: Mutex<Quality>,
    /// When the agent last clicked answer, and the first packet heard after it.
    answered_at: Mutex<Option<Instant>>,
    latencies: Mutex<Vec<f64>>,
}

/// What a listener would notice of the engine falling behind: packets missing from the
/// sequence, and gaps between arrivals (the engine sends every 20 ms).
#[derive(Default)]
struct Quality {
    /// Extended sequence numbers of the first and the latest packet.
    first: Option<i64>,
    last: i64,
    received: u64,
    last_arrival: Option<Instant>,
    max_gap_ms: f64,
    gaps_over_60ms: u64,
}

impl Quality {
    fn packet(&mut self, seq: u16, now: Instant) {
        let ext = match self.first {
            None => {
                self.first = Some(i64::from(seq));
                i64::from(seq)
            }
            // The nearest extension of `seq` to the latest one (RFC 3550 A.1's idea).
            Some(_) => self.last + i64::from(seq.wrapping_sub(self.last as u16) as i16),
        };
        self.last = self.last.max(ext);
        self.received += 1;
        if let Some(prev) = self.last_arrival {
            let gap = now.duration_since(prev).as_secs_f64() * 1000.0;
            self.max_gap_ms = self.max_gap_ms.max(gap);
            if gap > 60.0 {
                self.gaps_over_60ms += 1;
            }
        }
        self.last_arrival = Some(now);
    }

    fn expected(&self) -> u64 {
        self.first.map_or(0, |f| (self.last - f + 1) as u64)
    }
}

struct Handler {
    gathered: mpsc::Sender<()>,
    stats: Arc<Stats>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let stats = self.stats.clone();
        tokio::spawn(async move {
            while let Some(ev) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = ev {
                    stats.heard.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut q) = stats.quality.lock() {
                        q.packet(p.header.sequence_number, Instant::now());
                    }
                    let at = stats.answered_at.lock().ok().and_then(|mut a| a.take());
                    if let Some(at) = at {
                        if let Ok(mut l) = stats.latencies.lock() {
                            l.push(at.elapsed().as_secs_f64() * 1000.0);
                        }
                    }
                }
            }
        });
    }
}

fn say(v: Value) {
    println!("{v}");
}

/// Twenty-five 20 ms Opus frames of a 500 Hz tone, sent in a loop: mono narrowband, as a
/// browser honouring the engine's `maxplaybackrate=8000` encodes (RTP clock still 48 kHz).
fn opus_frames() -> Vec<Vec<u8>> {
    use audiopus::coder::Encoder;
    let Ok(enc) = Encoder::new(
        audiopus::SampleRate::Hz8000,
        audiopus::Channels::Mono,
        audiopus::Application::Voip,
    ) else {
        return vec![vec![0xf8, 0xff, 0xfe]];
    };
    let mut out = Vec::new();
    let mut n = 0u64;
    for _ in 0..25 {
        let mut pcm = Vec::with_capacity(160);
        for _ in 0..160 {
            let v =
                (f64::sin(2.0 * std::f64::consts::PI * 500.0 * n as f64 / 8000.0) * 6000.0) as i16;
            pcm.push(v);
            n += 1;
        }
        let mut buf = vec![0u8; 400];
        if let Ok(len) = enc.encode(&pcm, &mut buf) {
            buf.truncate(len);
            out.push(buf);
        }
    }
    out
}

async fn agent(
    http: String,
    id: String,
    password: String,
    seconds: u64,
    frames: Arc<Vec<Vec<u8>>>,
    stats: Arc<Stats>,
) -> Result<u64, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/agent/ws"))
        .await
        .map_err(|e| format!("ws: {e}"))?;
    ws.send(Ws::text(
        json!({"op": "login", "agent": id, "password": password}).to_string(),
    ))
    .await
    .map_err(|e| e.to_string())?;
    let (gtx, mut gathered) = mpsc::channel(1);
    let handler = Arc::new(Handler {
        gathered: gtx,
        stats: stats.clone(),
    });
    let pc = browser_peer(handler, std::net::IpAddr::from([127, 0, 0, 1])).await?;
    let ssrc = rand::random::<u32>();
    let track = Arc::new(TrackLocalStaticRTP::new(dasan::web::peer::opus_track(
        ssrc, "mic",
    )));
    pc.add_track(track.clone() as Arc<dyn TrackLocal>)
        .await
        .map_err(|e| e.to_string())?;
    let offer = pc.create_offer(None).await.map_err(|e| e.to_string())?;
    pc.set_local_description(offer)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tokio::time::timeout(Duration::from_secs(5), gathered.recv()).await;
    let sdp = pc
        .local_description()
        .await
        .map(|d| d.sdp)
        .ok_or("no offer")?;
    ws.send(Ws::text(json!({"op": "sdp", "sdp": sdp}).to_string()))
        .await
        .map_err(|e| e.to_string())?;
    let talking = Arc::new(AtomicBool::new(false));
    {
        // The microphone: 20 ms frames while a call is connected.
        let (talking, track, frames) = (talking.clone(), track.clone(), frames.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let (mut seq, mut ts, mut i) = (rand::random::<u16>(), rand::random::<u32>(), 0usize);
            loop {
                tick.tick().await;
                if !talking.load(Ordering::Relaxed) || frames.is_empty() {
                    continue;
                }
                let mut p = rtc::rtp::Packet::default();
                p.header.version = 2;
                p.header.payload_type = 111;
                p.header.sequence_number = seq;
                p.header.timestamp = ts;
                p.header.ssrc = ssrc;
                p.payload = bytes::Bytes::from(frames[i % frames.len()].clone());
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(960);
                i += 1;
                if track.write_rtp(p).await.is_err() {
                    return;
                }
            }
        });
    }
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut calls = 0u64;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Ok(Some(Ok(msg))) = tokio::time::timeout(left, ws.next()).await else {
            break;
        };
        let Ws::Text(text) = msg else { continue };
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match v["ev"].as_str().unwrap_or("") {
            "sdp" => {
                let answer = rtc::peer_connection::sdp::RTCSessionDescription::answer(
                    v["sdp"].as_str().unwrap_or("").to_string(),
                )
                .map_err(|e| e.to_string())?;
                pc.set_remote_description(answer)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            "media" if v["state"] == "connected" => {
                ws.send(Ws::text(
                    json!({"op": "state", "state": "ready"}).to_string(),
                ))
                .await
                .map_err(|e| e.to_string())?;
            }
            "state" if v["state"] == "ready" && calls == 0 => say(json!({"ready": id})),
            "offer" => {
                if let Ok(mut a) = stats.answered_at.lock() {
                    *a = Some(Instant::now());
                }
                ws.send(Ws::text(json!({"op": "answer"}).to_string()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            "connected" => {
                calls += 1;
                talking.store(true, Ordering::Relaxed);
            }
            "ended" => talking.store(false, Ordering::Relaxed),
            "error" => say(json!({"agent": id, "error": v})),
            _ => {}
        }
    }
    talking.store(false, Ordering::Relaxed);
    // Hang up what is still connected; the engine BYEs the callers.
    let _ = ws.send(Ws::text(json!({"op": "hangup"}).to_string())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = ws.close(None).await;
    let _ = pc.close().await;
    Ok(calls)
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() != 5 {
        eprintln!("usage: webload HTTP_ADDR FIRST_AGENT COUNT PASSWORD SECONDS");
        std::process::exit(2);
    }
    let (http, first, count, password, seconds) = (
        a[0].clone(),
        a[1].parse::<u64>().unwrap_or(1001),
        a[2].parse::<u64>().unwrap_or(1),
        a[3].clone(),
        a[4].parse::<u64>().unwrap_or(30),
    );
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        eprintln!("no runtime");
        std::process::exit(1);
    };
    rt.block_on(async move {
        let frames = Arc::new(opus_frames());
        let mut stats = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..count {
            let s = Arc::new(Stats {
                heard: AtomicU64::new(0),
                quality: Mutex::new(Quality::default()),
                answered_at: Mutex::new(None),
                latencies: Mutex::new(Vec::new()),
            });
            stats.push(s.clone());
            let (http, pw, frames) = (http.clone(), password.clone(), frames.clone());
            tasks.push(tokio::spawn(agent(
                http,
                (first + i).to_string(),
                pw,
                seconds,
                frames,
                s,
            )));
            // Logins spread a little, as a shift starting.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut calls = 0;
        for t in tasks {
            match t.await {
                Ok(Ok(n)) => calls += n,
                Ok(Err(e)) => say(json!({"error": e})),
                Err(e) => say(json!({"error": e.to_string()})),
            }
        }
        let mut lat: Vec<f64> = stats
            .iter()
            .flat_map(|s| s.latencies.lock().map(|l| l.clone()).unwrap_or_default())
            .collect();
        lat.sort_by(f64::total_cmp);
        let q = |p: f64| {
            lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        let heard: Vec<u64> = stats
            .iter()
            .map(|s| s.heard.load(Ordering::Relaxed))
            .collect();
        let (mut expected, mut received, mut gaps, mut max_gap) = (0u64, 0u64, 0u64, 0f64);
        for s in &stats {
            if let Ok(q) = s.quality.lock() {
                expected += q.expected();
                received += q.received;
                gaps += q.gaps_over_60ms;
                max_gap = max_gap.max(q.max_gap_ms);
            }
        }
        say(json!({
            "done": true,
            "lost": expected.saturating_sub(received),
            "expected": expected,
            "gaps_over_60ms": gaps,
            "max_gap_ms": (max_gap * 10.0).round() / 10.0,
            "calls": calls,
            "answer_to_audio_ms": {"n": lat.len(), "p50": q(0.5), "p95": q(0.95), "max": q(1.0)},
            "packets_heard_min": heard.iter().min(),
            "packets_heard_total": heard.iter().sum::<u64>(),
        }));
    });
}

/// The simulated browser's stack: the `webrtc` crate's peer connection (its own driver, the
/// default interceptors, as a full WebRTC endpoint has), speaking only our Opus.
async fn browser_peer(
    handler: Arc<dyn PeerConnectionEventHandler>,
    ip: std::net::IpAddr,
) -> Result<Arc<dyn PeerConnection>, String> {
    let mut media = dasan::web::peer::opus_media_engine().map_err(|e| e.to_string())?;
    let registry = webrtc::peer_connection::register_default_interceptors(
        webrtc::peer_connection::Registry::new(),
        &mut media,
    )
    .map_err(|e| format!("interceptors: {e}"))?;
    let settings = rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .with_handler(handler)
        .with_udp_addrs(vec![std::net::SocketAddr::new(ip, 0)])
        .build()
        .await
        .map_err(|e| format!("peer connection: {e}"))?;
    Ok(Arc::new(pc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_counts_across_sequence_wrap_and_gaps_count_late_packets() {
        let mut q = Quality::default();
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        q.packet(65534, at(0));
        q.packet(65535, at(20));
        // 0 lost; 1 arrives 100 ms late; an old duplicate of 65535 changes nothing expected.
        q.packet(1, at(120));
        q.packet(65535, at(121));
        q.packet(2, at(140));
        assert_eq!((q.expected(), q.received), (5, 5));
        assert_eq!(q.gaps_over_60ms, 1);
        assert!((q.max_gap_ms - 100.0).abs() < 0.5, "{}", q.max_gap_ms);
    }
}
