//! The wire: datagrams in flight ordered by delivery time, each link impaired from a seed.
//! Jitter is drawn per datagram, so two sent in one order may arrive in the other.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// What a link does to each datagram (in one direction).
#[derive(Debug, Clone, Copy, Default)]
pub struct Impairment {
    /// Probability (0..=1) that a datagram is dropped.
    pub loss: f64,
    /// Probability (0..=1) that a datagram is delivered twice (each copy faces loss and
    /// jitter on its own).
    pub duplicate: f64,
    pub delay: Duration,
    /// Up to this much extra delay, uniform.
    pub jitter: Duration,
}

#[derive(Debug, Clone)]
pub struct Datagram {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub data: Bytes,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct NetStats {
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub delivered: u64,
}

struct InFlight {
    at: Instant,
    /// Send order breaks ties, so equal delivery times keep a deterministic order.
    seq: u64,
    d: Datagram,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

type Matcher = Box<dyn Fn(&Datagram) -> bool>;

pub struct Net {
    pub origin: Instant,
    pub now: Instant,
    rng: StdRng,
    seq: u64,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    default: Impairment,
    links: HashMap<(IpAddr, IpAddr), Impairment>,
    /// One-shot drops for targeted tests: the first datagram each matches is lost.
    drops: Vec<Matcher>,
    pub stats: NetStats,
    /// Print every datagram's fate (set VNET_TRACE=1 when replaying a seed).
    pub trace: bool,
}

impl Net {
    pub fn new(seed: u64, default: Impairment) -> Net {
        let origin = Instant::now();
        Net {
            origin,
            now: origin,
            rng: StdRng::seed_from_u64(seed),
            seq: 0,
            in_flight: BinaryHeap::new(),
            default,
            links: HashMap::new(),
            drops: Vec::new(),
            stats: NetStats::default(),
            trace: std::env::var_os("VNET_TRACE").is_some(),
        }
    }

    /// Overrides the impairment from `from` to `to` (one direction).
    pub fn set_link(&mut self, from: IpAddr, to: IpAddr, imp: Impairment) {
        self.links.insert((from, to), imp);
    }

    /// Loses the next datagram for which `matches` holds (once).
    pub fn drop_next(&mut self, matches: impl Fn(&Datagram) -> bool + 'static) {
        self.drops.push(Box::new(matches));
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.origin
    }

    pub fn send(&mut self, from: SocketAddr, to: SocketAddr, data: Bytes) {
        let imp = *self
            .links
            .get(&(from.ip(), to.ip()))
            .unwrap_or(&self.default);
        self.stats.sent += 1;
        let d = Datagram { from, to, data };
        if let Some(i) = self.drops.iter().position(|m| m(&d)) {
            drop(self.drops.remove(i));
            self.stats.lost += 1;
            self.log("dropped", &d);
            return;
        }
        let Datagram { data, .. } = d;
        let copies = if self.rng.gen_bool(imp.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.rng.gen_bool(imp.loss) {
                self.stats.lost += 1;
                self.log(
                    "lost",
                    &Datagram {
                        from,
                        to,
                        data: data.clone(),
                    },
                );
                continue;
            }
            let jitter = imp.jitter.mul_f64(self.rng.gen::<f64>());
            self.seq += 1;
            self.in_flight.push(Reverse(InFlight {
                at: self.now + imp.delay + jitter,
                seq: self.seq,
                d: Datagram {
                    from,
                    to,
                    data: data.clone(),
                },
            }));
        }
    }

    pub fn next_delivery(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse(f)| f.at)
    }

    /// The next datagram due at or before `now`.
    pub fn pop_due(&mut self) -> Option<Datagram> {
        if self.next_delivery()? > self.now {
            return None;
        }
        self.stats.delivered += 1;
        let d = self.in_flight.pop().map(|Reverse(f)| f.d)?;
        self.log("delivered", &d);
        Some(d)
    }

    fn log(&self, what: &str, d: &Datagram) {
        if !self.trace {
            return;
        }
        let text = String::from_utf8_lossy(&d.data);
        let first = text.lines().next().unwrap_or("");
        let call_id = text
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID: "))
            .unwrap_or("");
        let cseq = text
            .lines()
            .find_map(|l| l.strip_prefix("CSeq: "))
            .unwrap_or("");
        eprintln!(
            "{:>9.3} {what:>9} {} -> {}: {first} [{call_id} {cseq}]",
            self.elapsed().as_secs_f64(),
            d.from,
            d.to
        );
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }
}
