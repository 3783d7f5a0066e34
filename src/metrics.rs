//! Prometheus metrics on an owned registry (no globals), plus a fine-grained latency
//! histogram for post-dial delay quantiles that Prometheus buckets are too coarse for.

use prometheus::{
    Counter, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Metrics {
    pub registry: Registry,
    pub sip_requests: IntCounterVec,
    pub sip_responses_sent: IntCounterVec,
    pub sip_parse_errors: IntCounter,
    pub sip_garbage: IntCounter,
    /// What the hostile-network defences refused, by event.
    pub security: IntCounterVec,
    pub sip_retransmissions: IntCounter,
    pub sip_transactions: IntGauge,
    pub calls: IntCounterVec,
    pub calls_active: IntGauge,
    pub queue_waiting: IntGaugeVec,
    pub post_dial_delay: Histogram,
    pub rtp_relayed: IntCounter,
    pub records_written: IntCounter,
    pub record_backlog: IntGauge,
    pub record_overflow: IntCounter,
    pub record_commit: Histogram,
    pub call_wait: HistogramVec,
    pub call_talk: HistogramVec,
    pub agents: IntGaugeVec,
    pub queue_service_level: GaugeVec,
    pub queue_asa: GaugeVec,
    pub queue_abandon: GaugeVec,
    pub queue_wrap_up: GaugeVec,
    pub rtp_bytes: IntCounter,
    /// Of `rtp_relayed`, the packets forwarded in the kernel (`[media] kernel_forward`).
    pub rtp_kernel: IntCounter,
    pub rtp_lost: IntCounter,
    /// Contacts waiting for an agent, by queue and channel (voice, text).
    pub waiting: IntGaugeVec,
    pub oldest_wait: GaugeVec,
    /// Voice: arrival to answer; text: the conversation's first message to the agent's
    /// first reply.
    pub first_response: HistogramVec,
    /// Voice: talk; text: given to an agent until closed.
    pub handle: HistogramVec,
    pub agent_chats: IntGaugeVec,
    /// Video relayed, keyframe requests and video dropped, by the leg it came from.
    pub video_packets: IntCounterVec,
    pub video_keyframe_requests: IntCounterVec,
    pub video_dropped: IntCounterVec,
    pub video_bytes: IntCounterVec,
    pub video_frames: IntCounterVec,
    pub video_lost: IntCounterVec,
    pub text_messages: IntCounterVec,
    process: Process,
    pub pdd_us: LatencyHist,
    /// A sender's text in → its agent's MESSAGE out, microseconds.
    pub text_delivery_us: LatencyHist,
}

/// Process metrics from /proc/self, refreshed at each scrape (Linux).
struct Process {
    cpu: Counter,
    rss: Gauge,
    vsize: Gauge,
    fds: Gauge,
    start: Gauge,
}

impl Process {
    fn refresh(&self) {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return;
        };
        // Fields after the parenthesised command name (which may hold spaces).
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            return;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let tck = 100.0; // USER_HZ on Linux
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15 (1-based) of the full line: 11, 12 here.
        let cpu = (num(11) + num(12)) / tck;
        let delta = cpu - self.cpu.get();
        if delta > 0.0 {
            self.cpu.inc_by(delta);
        }
        self.vsize.set(num(20));
        let page = 4096.0;
        self.rss.set(num(21) * page);
        if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
            self.fds.set(d.count() as f64);
        }
        if self.start.get() == 0.0 {
            let boot = std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("btime ").map(|v| v.trim().parse::<f64>()))
                })
                .and_then(Result::ok)
                .unwrap_or(0.0);
            self.start.set(boot + num(19) / tck);
        }
    }
}

/// Makes metrics and registers each on the owned registry as it is made, so that no metric
/// can be made and forgotten.
struct Reg(Registry);

type R<T> = Result<T, prometheus::Error>;

impl Reg {
    fn add<C: prometheus::core::Collector + Clone + 'static>(&self, c: R<C>) -> R<C> {
        let c = c?;
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn counter(&self, name: &str, help: &str) -> R<IntCounter> {
        self.add(IntCounter::new(name, help))
    }

    fn counters(&self, name: &str, help: &str, labels: &[&str]) -> R<IntCounterVec> {
        self.add(IntCounterVec::new(Opts::new(name, help), labels))
    }

    fn gauge(&self, name: &str, help: &str) -> R<IntGauge> {
        self.add(IntGauge::new(name, help))
    }

    fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> R<IntGaugeVec> {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels))
    }

    fn ratios(&self, name: &str, help: &str) -> R<GaugeVec> {
        self.add(GaugeVec::new(Opts::new(name, help), &["queue"]))
    }

    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> R<Histogram> {
        self.add(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        ))
    }

    fn histograms(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
        labels: &[&str],
    ) -> R<HistogramVec> {
        self.add(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        ))
    }
}

impl Process {
    fn new(r: &Reg) -> R<Process> {
        Ok(Process {
            cpu: r.add(Counter::new(
                "process_cpu_seconds_total",
                "User and system CPU time",
            ))?,
            rss: r.add(Gauge::new(
                "process_resident_memory_bytes",
                "Resident memory",
            ))?,
            vsize: r.add(Gauge::new("process_virtual_memory_bytes", "Virtual memory"))?,
            fds: r.add(Gauge::new("process_open_fds", "Open file descriptors"))?,
            start: r.add(Gauge::new(
                "process_start_time_seconds",
                "Start time since the Unix epoch",
            ))?,
        })
    }
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let r = Reg(Registry::new());
        Ok(Metrics {
            sip_requests: r.counters(
                "dasan_sip_requests_received_total",
                "SIP requests received, by method",
                &["method"],
            )?,
            sip_responses_sent: r.counters(
                "dasan_sip_responses_sent_total",
                "SIP responses sent, by request method and status code",
                &["method", "code"],
            )?,
            sip_parse_errors: r.counter(
                "dasan_sip_parse_errors_total",
                "Malformed SIP requests answered with 400",
            )?,
            sip_garbage: r.counter(
                "dasan_sip_garbage_dropped_total",
                "Datagrams or stream data dropped as not SIP",
            )?,
            security: r.counters(
                "dasan_security_events_total",
                "Requests, packets and connections refused by a defence, by event",
                &["event"],
            )?,
            sip_retransmissions: r.counter(
                "dasan_sip_retransmissions_total",
                "SIP messages retransmitted by timers",
            )?,
            sip_transactions: r.gauge("dasan_sip_transactions", "SIP transactions alive")?,
            calls: r.counters(
                "dasan_calls_total",
                "Calls ended, by queue and outcome",
                &["queue", "outcome"],
            )?,
            calls_active: r.gauge("dasan_calls_active", "Calls in progress")?,
            queue_waiting: r.gauges(
                "dasan_queue_calls",
                "Calls in a queue (waiting or ringing an agent)",
                &["queue"],
            )?,
            post_dial_delay: r.histogram(
                "dasan_post_dial_delay_seconds",
                "Trunk INVITE received to agent INVITE sent",
                &[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
                    30.0,
                ],
            )?,
            rtp_relayed: r.counter(
                "dasan_rtp_packets_relayed_total",
                "RTP packets the engine sent on anchored calls",
            )?,
            records_written: r.counter(
                "dasan_record_events_written_total",
                "Consultation record state changes committed to the store",
            )?,
            record_backlog: r.gauge(
                "dasan_record_backlog",
                "Record state changes waiting for the writer (queue plus overflow)",
            )?,
            record_overflow: r.counter(
                "dasan_record_queue_full_total",
                "Record state changes that found the writer's queue full and waited in memory",
            )?,
            record_commit: r.histogram(
                "dasan_record_commit_seconds",
                "Time to commit one batch of record changes (fsync included)",
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                ],
            )?,
            call_wait: r.histograms(
                "dasan_call_wait_seconds",
                "Caller wait from arrival to answer or hang-up, by queue and outcome",
                &[1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0],
                &["queue", "outcome"],
            )?,
            call_talk: r.histograms(
                "dasan_call_talk_seconds",
                "Talk time of answered calls, by queue",
                &[10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 1200.0, 3600.0],
                &["queue"],
            )?,
            agents: r.gauges(
                "dasan_agents",
                "Agents by queue (agents with the queue's skill) and state",
                &["queue", "state"],
            )?,
            queue_service_level: r.ratios(
                "dasan_queue_service_level_ratio",
                "Answered within the queue's service-level threshold / answered, rolling window",
            )?,
            queue_asa: r.ratios(
                "dasan_queue_answer_speed_seconds",
                "Average speed of answer (mean wait of answered calls), rolling window",
            )?,
            queue_abandon: r.ratios(
                "dasan_queue_abandon_ratio",
                "Calls abandoned / calls that ended waiting or answered, rolling window",
            )?,
            queue_wrap_up: r.ratios(
                "dasan_queue_wrap_up_seconds",
                "Average measured wrap-up (call end until the agent left wrap-up), rolling window",
            )?,
            rtp_bytes: r.counter(
                "dasan_rtp_bytes_relayed_total",
                "RTP bytes the engine sent on anchored calls",
            )?,
            rtp_kernel: r.counter(
                "dasan_rtp_packets_kernel_forwarded_total",
                "Of the RTP packets relayed, those forwarded in the kernel ([media] kernel_forward)",
            )?,
            rtp_lost: r.counter(
                "dasan_rtp_packets_lost_total",
                "RTP packets lost on the way to the engine (sequence gaps), counted at call end",
            )?,
            waiting: r.gauges(
                "dasan_queue_waiting",
                "Contacts waiting for an agent (not yet offered), by queue and channel",
                &["queue", "channel"],
            )?,
            oldest_wait: r.add(GaugeVec::new(
                Opts::new(
                    "dasan_queue_oldest_wait_seconds",
                    "Age of the longest-waiting contact, by queue and channel",
                ),
                &["queue", "channel"],
            ))?,
            first_response: r.histograms(
                "dasan_first_response_seconds",
                "Voice: arrival to answer; text: first message to the agent's first reply",
                &[
                    1.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
                ],
                &["queue", "channel"],
            )?,
            handle: r.histograms(
                "dasan_handle_seconds",
                "Voice: talk time; text: given to an agent until closed",
                &[
                    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
                ],
                &["queue", "channel"],
            )?,
            video_packets: r.counters(
                "dasan_video_packets_relayed_total",
                "Video RTP packets relayed, by the leg they came from",
                &["from"],
            )?,
            video_keyframe_requests: r.counters(
                "dasan_video_keyframe_requests_total",
                "PLI and FIR received, by the leg they came from (each sent on as a PLI)",
                &["from"],
            )?,
            video_dropped: r.counters(
                "dasan_video_packets_dropped_total",
                "Video packets dropped (a stranger's, not RTP, a payload type not negotiated)",
                &["from"],
            )?,
            video_bytes: r.counters(
                "dasan_video_bytes_relayed_total",
                "Video RTP payload bytes relayed, by the leg they came from (rate: bitrate)",
                &["from"],
            )?,
            video_frames: r.counters(
                "dasan_video_frames_relayed_total",
                "Video frames relayed (RTP marker bits), by the leg they came from (rate: fps)",
                &["from"],
            )?,
            video_lost: r.counters(
                "dasan_video_packets_lost_total",
                "Video RTP packets lost before the engine (sequence gaps), counted at call end",
                &["from"],
            )?,
            agent_chats: r.gauges(
                "dasan_agent_open_chats",
                "Text conversations an agent has open",
                &["agent"],
            )?,
            text_messages: r.counters(
                "dasan_text_messages_total",
                "Text messages recorded, by queue and direction (in: from senders)",
                &["queue", "direction"],
            )?,
            process: Process::new(&r)?,
            pdd_us: LatencyHist::new(),
            text_delivery_us: LatencyHist::new(),
            registry: r.0,
        })
    }

    pub fn render(&self) -> String {
        use prometheus::Encoder;
        self.process.refresh();
        let mut buf = Vec::new();
        let enc = prometheus::TextEncoder::new();
        if enc.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Microsecond latency histogram: 1 µs buckets below 1 ms, 10 µs below 100 ms, then 1 ms
/// up to 10 s. Lock-free to record; quantiles are exact to the bucket width.
pub struct LatencyHist {
    buckets: Vec<AtomicU64>,
}

const FINE: u64 = 1_000;
const MID: u64 = 100_000;
const MAX_US: u64 = 10_000_000;
const N_BUCKETS: usize = (FINE + (MID - FINE) / 10 + (MAX_US - MID) / 1_000 + 1) as usize;

impl Default for LatencyHist {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHist {
    pub fn new() -> Self {
        LatencyHist {
            buckets: (0..N_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn index(us: u64) -> usize {
        (if us < FINE {
            us
        } else if us < MID {
            FINE + (us - FINE) / 10
        } else if us < MAX_US {
            FINE + (MID - FINE) / 10 + (us - MID) / 1_000
        } else {
            N_BUCKETS as u64 - 1
        }) as usize
    }

    fn upper(i: usize) -> u64 {
        let i = i as u64;
        if i < FINE {
            i + 1
        } else if i < FINE + (MID - FINE) / 10 {
            FINE + (i - FINE + 1) * 10
        } else {
            MID + (i - FINE - (MID - FINE) / 10 + 1) * 1_000
        }
    }

    pub fn record(&self, us: u64) {
        self.buckets[Self::index(us)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The q-quantile (0..=1) as an upper bucket bound in microseconds.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut acc = 0;
        for (i, c) in counts.iter().enumerate() {
            acc += c;
            if acc >= rank {
                return Some(Self::upper(i));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let h = LatencyHist::new();
        for us in 1..=100 {
            h.record(us * 10);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile(0.5), Some(501));
        assert_eq!(h.quantile(0.99), Some(991));
        h.record(5_000_000);
        assert_eq!(h.quantile(1.0), Some(5_001_000));
        assert_eq!(LatencyHist::new().quantile(0.5), None);
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new().unwrap();
        m.sip_requests.with_label_values(&["INVITE"]).inc();
        assert!(m
            .render()
            .contains("dasan_sip_requests_received_total{method=\"INVITE\"} 1"));
    }
}
