//! The engine, its phones and the wire between them, in virtual time: every step goes to
//! the earliest of the next delivery, the engine's timer, a phone's timer and the end of a
//! prompt, so a run takes as long as its events, not as long as its calls.

use super::agent::{Agent, AgentScript};
use super::caller::{Caller, CallerScript};
use super::net::{Datagram, Impairment, Net};
use dasan::b2bua::{Engine, MediaCommand};
use dasan::config::Config;
use dasan::media::bridge::{LegId, MediaEvent};
use dasan::media::dtmf::DigitSource;
use dasan::metrics::Metrics;
use dasan::records::RecordEvent;
use dasan::sip::build::Ids;
use dasan::sip::transaction::TimerConfig;
use dasan::sip::Flow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const ENGINE: &str = "203.0.113.1:5060";

/// How long a prompt plays (the media plane reports PromptsDone then).
const PROMPT: Duration = Duration::from_millis(1500);

#[derive(Clone, Copy)]
enum Peer {
    Caller(usize),
    Agent(usize),
}

pub struct World {
    pub net: Net,
    pub engine: Engine,
    pub engine_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    timers: TimerConfig,
    pub callers: Vec<Caller>,
    pub agents: Vec<Agent>,
    peers: HashMap<SocketAddr, Peer>,
    /// Per caller: whether any of its datagrams reached the engine.
    pub(super) reached: Vec<bool>,
    /// The engine's call key per caller, learnt from the media plane's Start.
    keys: Vec<Option<u64>>,
    /// Prompts playing, by call key: when they end.
    prompts: HashMap<u64, Instant>,
    pub records: Vec<RecordEvent>,
    /// Invariants broken while running (checked after every step the engine took input).
    pub violations: Vec<String>,
    /// The engine took input since the offers were last checked.
    engine_moved: bool,
    /// A run longer than this (virtual time) is a failure.
    pub limit: Duration,
}

impl World {
    pub fn new(seed: u64, config: &str, impairment: Impairment) -> World {
        let cfg = Config::parse(config, "vnet").unwrap_or_else(|e| panic!("config: {e:?}"));
        let net = Net::new(seed ^ 0x7e57_5eed, impairment);
        let metrics = Arc::new(Metrics::new().expect("metrics registry"));
        let engine = Engine::new(
            &cfg,
            metrics.clone(),
            net.now,
            1_700_000_000,
            Ids::seeded(seed),
        );
        World {
            net,
            engine,
            engine_addr: ENGINE.parse().expect("engine address"),
            metrics,
            timers: TimerConfig {
                t1: Duration::from_millis(cfg.sip.t1_ms),
                t2: Duration::from_millis(cfg.sip.t2_ms),
                t4: Duration::from_millis(cfg.sip.t4_ms),
            },
            callers: Vec::new(),
            agents: Vec::new(),
            peers: HashMap::new(),
            reached: Vec::new(),
            keys: Vec::new(),
            prompts: HashMap::new(),
            records: Vec::new(),
            violations: Vec::new(),
            engine_moved: false,
            limit: Duration::from_secs(30 * 60),
        }
    }

    /// A caller on its own address in the trunk's network (10.0.0.0/8).
    pub fn add_caller(&mut self, script: CallerScript) -> usize {
        let n = self.callers.len();
        let addr: SocketAddr = format!("10.1.{}.{}:5060", n / 200, n % 200 + 1)
            .parse()
            .expect("caller address");
        let c = Caller::new(
            n,
            addr,
            self.engine_addr,
            self.net.origin,
            self.timers,
            script,
        );
        self.peers.insert(addr, Peer::Caller(n));
        self.callers.push(c);
        self.reached.push(false);
        self.keys.push(None);
        n
    }

    /// An agent's phone outside the trunk's network (192.0.2.0/24).
    pub fn add_agent(&mut self, script: AgentScript) -> usize {
        let n = self.agents.len();
        let addr: SocketAddr = format!("192.0.2.{}:5070", n + 1)
            .parse()
            .expect("agent address");
        let a = Agent::new(addr, self.engine_addr, self.net.origin, self.timers, script);
        self.peers.insert(addr, Peer::Agent(n));
        self.agents.push(a);
        n
    }

    pub fn now(&self) -> Instant {
        self.net.now
    }

    pub fn next_event(&self) -> Option<Instant> {
        let callers = self.callers.iter().filter_map(Caller::poll_timeout);
        let agents = self.agents.iter().filter_map(Agent::poll_timeout);
        [
            self.net.next_delivery(),
            self.engine.poll_timeout(),
            self.prompts.values().min().copied(),
        ]
        .into_iter()
        .flatten()
        .chain(callers)
        .chain(agents)
        .min()
    }

    /// Runs until `done` holds. Err when nothing is left to happen first, or when the
    /// virtual time passes `limit`.
    pub fn run_until(&mut self, what: &str, done: impl Fn(&World) -> bool) -> Result<(), String> {
        loop {
            self.flush();
            if done(self) {
                return Ok(());
            }
            let Some(next) = self.next_event() else {
                return Err(format!(
                    "waiting for {what}: nothing left to happen at {} ms",
                    self.net.elapsed().as_millis()
                ));
            };
            if next - self.net.origin > self.limit {
                return Err(format!(
                    "waiting for {what}: still not so after {} s of virtual time",
                    self.limit.as_secs()
                ));
            }
            self.net.now = self.net.now.max(next);
            self.step();
        }
    }

    /// Runs every event in the next `d`, then moves the clock to its end.
    pub fn run_for(&mut self, d: Duration) -> Result<(), String> {
        let end = self.net.now + d;
        self.run_until("the time to pass", |w| {
            w.next_event().is_none_or(|t| t > end)
        })?;
        self.net.now = end;
        Ok(())
    }

    /// Runs until nothing at all is left to happen.
    pub fn run_until_idle(&mut self) -> Result<(), String> {
        self.run_until("everything to go quiet", |w| w.next_event().is_none())
    }

    fn step(&mut self) {
        let now = self.net.now;
        while let Some(d) = self.net.pop_due() {
            self.deliver(d);
            self.flush();
        }
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
            self.after_engine(None);
        }
        for i in 0..self.callers.len() {
            if self.callers[i].poll_timeout().is_some_and(|t| t <= now) {
                self.callers[i].handle_timeout(now);
            }
        }
        for i in 0..self.agents.len() {
            if self.agents[i].poll_timeout().is_some_and(|t| t <= now) {
                self.agents[i].handle_timeout(now);
            }
        }
        let done: Vec<u64> = self
            .prompts
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(k, _)| *k)
            .collect();
        for call in done {
            self.prompts.remove(&call);
            self.engine
                .handle_media_event(now, MediaEvent::PromptsDone { call });
            self.after_engine(None);
        }
        self.flush();
        self.check_offers();
    }

    fn deliver(&mut self, d: Datagram) {
        let now = self.net.now;
        if d.to == self.engine_addr {
            let from = self.peers.get(&d.from).copied();
            if let Some(Peer::Caller(i)) = from {
                self.reached[i] = true;
            }
            self.engine.handle_message(now, Flow::udp(d.from), &d.data);
            self.after_engine(from);
            return;
        }
        match self.peers.get(&d.to).copied() {
            Some(Peer::Caller(i)) => self.callers[i].handle(now, &d.data),
            Some(Peer::Agent(i)) => self.agents[i].handle(now, &d.data),
            None => self.violations.push(format!(
                "the engine sent to {}, where no phone is:\n{}",
                d.to,
                String::from_utf8_lossy(&d.data)
            )),
        }
    }

    /// Takes what the engine produced besides datagrams: media commands (a simulated media
    /// plane plays prompts and learns call keys) and records; then checks the offers.
    fn after_engine(&mut self, from: Option<Peer>) {
        let now = self.net.now;
        while let Some(cmd) = self.engine.poll_media() {
            match cmd {
                MediaCommand::Start { call, .. } => match from {
                    Some(Peer::Caller(i)) => self.keys[i] = Some(call),
                    _ => self.violations.push(format!(
                        "media for call {call} started by no caller's INVITE"
                    )),
                },
                MediaCommand::Play { call, prompts, .. } if prompts.is_empty() => {
                    self.prompts.remove(&call);
                }
                MediaCommand::Play { call, prompts, .. } => {
                    self.prompts
                        .insert(call, now + PROMPT * prompts.len() as u32);
                }
                MediaCommand::Attach { call, .. } | MediaCommand::Stop { call } => {
                    self.prompts.remove(&call);
                }
                MediaCommand::Detach { .. }
                | MediaCommand::Remote { .. }
                | MediaCommand::Rekey { .. }
                | MediaCommand::VideoStart { .. }
                | MediaCommand::VideoKeyframe { .. }
                | MediaCommand::VideoAttach { .. } => {}
            }
        }
        while let Some(r) = self.engine.poll_record() {
            self.records.push(r);
        }
        self.engine_moved = true;
    }

    /// No call rings or talks with two agents at once (no ring-all is configured). Checked
    /// once per step in which the engine took input: it only changes then.
    fn check_offers(&mut self) {
        if !std::mem::take(&mut self.engine_moved) {
            return;
        }
        let mut holder: HashMap<String, String> = HashMap::new();
        for a in self.engine.agents_view() {
            if !matches!(a.state, "offered" | "on-call") {
                continue;
            }
            let Some(call) = a.call else { continue };
            if let Some(other) = holder.insert(call.clone(), a.id.clone()) {
                self.violations.push(format!(
                    "at {} ms call {call} is with agents {other} and {} at once",
                    self.net.elapsed().as_millis(),
                    a.id
                ));
            }
        }
    }

    /// Moves every phone's datagrams onto the wire, and its RFC 4733 digits to the engine.
    fn flush(&mut self) {
        let now = self.net.now;
        let engine = self.engine_addr;
        loop {
            let mut moved = false;
            while let Some(t) = self.engine.poll_transmit() {
                self.net.send(engine, t.flow.remote, t.data);
                moved = true;
            }
            for i in 0..self.callers.len() {
                let from = self.callers[i].stack.addr;
                while let Some((to, b)) = self.callers[i].poll_transmit() {
                    self.net.send(from, to, b);
                    moved = true;
                }
                let digits = std::mem::take(&mut self.callers[i].rtp_digits);
                let Some(call) = self.keys[i] else { continue };
                for digit in digits {
                    let source = DigitSource::Rfc4733;
                    let leg = LegId::Caller;
                    let ev = MediaEvent::Digit {
                        call,
                        leg,
                        digit,
                        source,
                    };
                    self.engine.handle_media_event(now, ev);
                    self.after_engine(None);
                    moved = true;
                }
            }
            for a in self.agents.iter_mut() {
                let from = a.stack.addr;
                while let Some((to, b)) = a.poll_transmit() {
                    self.net.send(from, to, b);
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }
}
