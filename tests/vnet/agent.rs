//! An agent's phone: registers with digest auth, treats each offer as its script says
//! (answer, busy, let it ring, say nothing), hangs up, transfers, re-INVITEs, and dials the
//! ready toggle (*21, proxy digest) after letting a call ring out.

use super::stack::{reply, request, set_body, Dialog, Event, Stack};
use dasan::registrar::digest::authorization;
use dasan::sip::message::{Message, NameAddr, StartLine};
use dasan::sip::transaction::TimerConfig;
use dasan::sip::Method;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub enum OnOffer {
    /// 180 at once, 200 after `ring`, then `then`.
    Answer { ring: Duration, then: AfterAnswer },
    /// 180 at once, 486 after `after`.
    Busy { after: Duration },
    /// 180, then nothing: rings until cancelled.
    NoAnswer,
    /// No response at all (a phone gone quiet).
    Silent,
}

#[derive(Debug, Clone)]
pub enum AfterAnswer {
    /// Talks until the caller hangs up.
    Wait,
    HangUp(Duration),
    /// Blind transfer (REFER) to this queue.
    Transfer(Duration, String),
    /// A re-INVITE (hold), then talks until the caller hangs up.
    Reinvite(Duration),
}

#[derive(Debug, Clone)]
pub struct AgentScript {
    pub id: String,
    pub password: String,
    pub register_at: Duration,
    /// One per offer, in turn; past the end, answer at once and talk (as SIPp's agent.xml).
    pub offers: Vec<OnOffer>,
    /// After an offer it let ring, it dials the ready toggle this long later.
    pub ready_again: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reg {
    Before,
    Pending,
    Registered,
    Unregistering,
    Gone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    Ringing,
    Talking,
    /// Our BYE is out.
    Leaving,
    Ended,
}

struct Call {
    invite: Message,
    dialog: Dialog,
    tag: String,
    state: CallState,
    offer: OnOffer,
    /// When to send the 200 (or 486).
    respond_at: Option<Instant>,
    /// When to act after answering (BYE, REFER, re-INVITE).
    act_at: Option<Instant>,
}

/// A feature-code call in progress (the ready toggle).
struct Toggle {
    call_id: String,
    tag: String,
    cseq: u32,
}

const EXPIRES_S: u64 = 600;
const CODE: &str = "*21";
/// How long a silent phone stays silent: past any ring timeout we configure and past the
/// engine's Timer B (64*T1).
const SILENCE: Duration = Duration::from_secs(40);

pub struct Agent {
    pub stack: Stack,
    pub script: AgentScript,
    engine: SocketAddr,
    origin: Instant,
    reg: Reg,
    reg_call_id: String,
    reg_tag: String,
    reg_cseq: u32,
    register_at: Option<Instant>,
    calls: Vec<Call>,
    offers: usize,
    toggle: Option<Toggle>,
    toggle_at: Option<Instant>,
    toggles_left: u32,
    /// Things a correct engine never makes a phone see.
    pub problems: Vec<String>,
    pub trace: Vec<String>,
}

fn sdp(ip: std::net::IpAddr, version: u32, extra: &str) -> String {
    format!("v=0\r\no=a 2 {version} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{extra}")
}

impl Agent {
    pub fn new(
        addr: SocketAddr,
        engine: SocketAddr,
        origin: Instant,
        timers: TimerConfig,
        script: AgentScript,
    ) -> Agent {
        let mut stack = Stack::new(addr, timers);
        let reg_call_id = stack.token("reg");
        let reg_tag = stack.token("rt");
        Agent {
            register_at: Some(origin + script.register_at),
            stack,
            script,
            engine,
            origin,
            reg: Reg::Before,
            reg_call_id,
            reg_tag,
            reg_cseq: 0,
            calls: Vec::new(),
            offers: 0,
            toggle: None,
            toggle_at: None,
            toggles_left: 0,
            problems: Vec::new(),
            trace: Vec::new(),
        }
    }

    fn note(&mut self, now: Instant, what: String) {
        self.trace
            .push(format!("{} ms: {what}", (now - self.origin).as_millis()));
    }

    /// Nothing ringing or talking, no request of ours open.
    pub fn idle(&self) -> bool {
        self.calls.iter().all(|c| c.state == CallState::Ended)
            && self.toggle.is_none()
            && self.stack.idle()
    }

    /// Ringing or talking calls, for failure reports.
    pub fn open_calls(&self) -> Vec<String> {
        self.calls
            .iter()
            .filter(|c| c.state != CallState::Ended)
            .map(|c| format!("{} {:?} ({:?})", c.dialog.call_id, c.state, c.offer))
            .collect()
    }

    /// End of shift: the binding is removed (REGISTER with Expires: 0).
    pub fn unregister(&mut self, now: Instant) {
        self.toggle_at = None;
        if matches!(self.reg, Reg::Registered | Reg::Pending) {
            self.reg = Reg::Unregistering;
            self.send_register(now, None);
        } else {
            self.reg = Reg::Gone;
        }
        self.register_at = None;
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self
            .calls
            .iter()
            .flat_map(|c| [c.respond_at, c.act_at])
            .flatten();
        [self.register_at, self.toggle_at]
            .into_iter()
            .flatten()
            .chain(calls)
            .chain(self.stack.poll_timeout())
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for ev in self.stack.handle_timeout(now) {
            self.on_event(now, ev);
        }
        if self.register_at.is_some_and(|t| t <= now) {
            self.register_at = None;
            if matches!(self.reg, Reg::Before | Reg::Registered | Reg::Pending) {
                self.reg = Reg::Pending;
                self.send_register(now, None);
            }
        }
        if self.toggle_at.is_some_and(|t| t <= now) {
            self.toggle_at = None;
            self.dial_toggle(now, None);
        }
        for i in 0..self.calls.len() {
            if self.calls[i].respond_at.is_some_and(|t| t <= now) {
                self.calls[i].respond_at = None;
                self.respond_to_offer(now, i);
            }
            if self.calls[i].act_at.is_some_and(|t| t <= now) {
                self.calls[i].act_at = None;
                self.act(now, i);
            }
        }
    }

    fn registrar_uri(&self) -> String {
        format!("sip:{}", self.engine.ip())
    }

    fn send_register(&mut self, now: Instant, challenge: Option<&str>) {
        self.reg_cseq += 1;
        let id = self.script.id.clone();
        let uri = self.registrar_uri();
        let expires = if self.reg == Reg::Unregistering {
            0
        } else {
            EXPIRES_S
        };
        let mut req = request(
            Method::Register,
            &uri,
            vec![
                ("Via", self.stack.via()),
                ("Max-Forwards", "70".into()),
                ("From", format!("<sip:{id}@dasan>;tag={}", self.reg_tag)),
                ("To", format!("<sip:{id}@dasan>")),
                ("Call-ID", self.reg_call_id.clone()),
                ("CSeq", format!("{} REGISTER", self.reg_cseq)),
                ("Contact", self.stack.contact(&id)),
                ("Expires", expires.to_string()),
            ],
        );
        if let Some(ch) = challenge {
            match authorization(ch, &id, &self.script.password, "REGISTER", &uri, "vnet") {
                Some(a) => req.set_header("Authorization", a),
                None => self.problems.push(format!("unusable challenge {ch}")),
            }
        }
        self.note(now, format!("REGISTER expires {expires}"));
        self.stack.send(now, req);
    }

    /// The ready toggle: an INVITE to *21, answered 407 first (proxy digest).
    fn dial_toggle(&mut self, now: Instant, challenge: Option<&str>) {
        if self.reg != Reg::Registered {
            return;
        }
        let t = match (self.toggle.take(), challenge) {
            (Some(mut t), Some(_)) => {
                t.cseq += 1;
                t
            }
            _ => Toggle {
                call_id: self.stack.token("fc"),
                tag: self.stack.token("ft"),
                cseq: 1,
            },
        };
        let id = self.script.id.clone();
        let uri = format!("sip:{CODE}@dasan");
        let mut req = request(
            Method::Invite,
            &uri,
            vec![
                ("Via", self.stack.via()),
                ("Max-Forwards", "70".into()),
                ("From", format!("<sip:{id}@dasan>;tag={}", t.tag)),
                ("To", format!("<sip:{CODE}@dasan>")),
                ("Call-ID", t.call_id.clone()),
                ("CSeq", format!("{} INVITE", t.cseq)),
                ("Contact", self.stack.contact(&id)),
            ],
        );
        if let Some(ch) = challenge {
            if let Some(a) = authorization(ch, &id, &self.script.password, "INVITE", &uri, "fc") {
                req.set_header("Proxy-Authorization", a);
            }
        }
        self.note(now, format!("dials {CODE}"));
        self.toggle = Some(t);
        self.stack.send(now, req);
    }

    pub fn handle(&mut self, now: Instant, data: &[u8]) {
        if let Some(ev) = self.stack.handle(now, data) {
            self.on_event(now, ev);
        }
    }

    fn call_index(&self, call_id: &str) -> Option<usize> {
        self.calls.iter().position(|c| c.dialog.call_id == call_id)
    }

    fn on_event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::Request(r) => self.on_request(now, r),
            Event::Response(r) => self.on_response(now, r),
            Event::Cancelled(inv) => {
                self.note(now, format!("offer {} cancelled", inv.call_id()));
                if let Some(i) = self.call_index(inv.call_id()) {
                    let c = &mut self.calls[i];
                    c.state = CallState::Ended;
                    c.respond_at = None;
                    // Rung out (RONA) or withdrawn, the phone cannot tell: it asks to be
                    // ready, and toggles back if that made it not ready.
                    self.after_ring_out(now);
                }
            }
            Event::TimedOut(req) => {
                let m = req.method().cloned();
                self.note(now, format!("{m:?} {} timed out", req.call_id()));
                match m {
                    Some(Method::Register) => {
                        self.register_at = Some(now + Duration::from_secs(5));
                        if self.reg == Reg::Unregistering {
                            self.reg = Reg::Registered;
                            self.unregister(now);
                        }
                    }
                    Some(Method::Invite)
                        if self.toggle.as_ref().map(|t| &t.call_id[..]) == Some(req.call_id()) =>
                    {
                        self.toggle = None
                    }
                    Some(Method::Bye) => {
                        if let Some(i) = self.call_index(req.call_id()) {
                            self.calls[i].state = CallState::Ended;
                        }
                    }
                    _ => {}
                }
            }
            Event::NoAck(call_id) => {
                // RFC 3261 13.3.1.4: a 2xx never ACKed ends the dialog with a BYE.
                self.note(now, format!("no ACK for {call_id}"));
                if let Some(i) = self.call_index(&call_id) {
                    if self.calls[i].state == CallState::Talking {
                        self.bye(now, i);
                    }
                }
            }
        }
    }

    /// It let an offer ring out: the engine made it not ready (RONA); it asks to be ready.
    fn after_ring_out(&mut self, now: Instant) {
        self.toggles_left = 6;
        self.toggle_at = Some(now + self.script.ready_again);
    }

    fn on_request(&mut self, now: Instant, r: Message) {
        let Some(method) = r.method().cloned() else {
            return;
        };
        self.note(now, format!("got {method} {}", r.call_id()));
        let known = self.call_index(r.call_id());
        match (method, known) {
            (Method::Invite, None) if r.to_tag().is_none() => self.on_offer(now, r),
            (Method::Ack, _) => {}
            (Method::Bye, Some(i)) => {
                let tag = self.calls[i].tag.clone();
                self.stack.respond(now, &r, reply(&r, 200, &tag));
                let c = &mut self.calls[i];
                c.state = CallState::Ended;
                c.act_at = None;
                c.respond_at = None;
            }
            (Method::Invite, Some(i)) => {
                let tag = self.calls[i].tag.clone();
                let mut ok = reply(&r, 200, &tag);
                ok.set_header("Contact", self.stack.contact(&self.script.id));
                set_body(&mut ok, "application/sdp", sdp(self.stack.addr.ip(), 7, ""));
                self.stack.respond(now, &r, ok);
            }
            (_, Some(i)) => {
                let tag = self.calls[i].tag.clone();
                self.stack.respond(now, &r, reply(&r, 200, &tag));
            }
            (_, None) => {
                self.stack.respond(now, &r, reply(&r, 481, "none"));
            }
        }
    }

    fn on_offer(&mut self, now: Instant, inv: Message) {
        let offer = self
            .script
            .offers
            .get(self.offers)
            .cloned()
            .unwrap_or(OnOffer::Answer {
                ring: Duration::ZERO,
                then: AfterAnswer::Wait,
            });
        self.offers += 1;
        let tag = self.stack.token("at");
        let header = |n: &str| inv.header(n).unwrap_or("").to_string();
        let target = inv
            .header("Contact")
            .map(|c| NameAddr::parse(c).uri.to_string())
            .unwrap_or_default();
        let dialog = Dialog {
            call_id: inv.call_id().to_string(),
            local: format!("{};tag={tag}", header("To")),
            remote: header("From"),
            target,
            cseq: 0,
            user: self.script.id.clone(),
        };
        let respond_at = match &offer {
            OnOffer::Answer { ring, .. } => Some(now + *ring),
            OnOffer::Busy { after } => Some(now + *after),
            OnOffer::NoAnswer => None,
            OnOffer::Silent => {
                self.after_ring_out(now);
                self.toggle_at = Some(now + SILENCE + self.script.ready_again);
                Some(now + SILENCE)
            }
        };
        if !matches!(offer, OnOffer::Silent) {
            let mut ringing = reply(&inv, 180, &tag);
            ringing.set_header("Contact", self.stack.contact(&self.script.id));
            self.stack.respond(now, &inv, ringing);
        }
        self.calls.push(Call {
            invite: inv,
            dialog,
            tag,
            state: CallState::Ringing,
            offer,
            respond_at,
            act_at: None,
        });
    }

    fn respond_to_offer(&mut self, now: Instant, i: usize) {
        let ip = self.stack.addr.ip();
        let contact = self.stack.contact(&self.script.id);
        let c = &mut self.calls[i];
        if c.state != CallState::Ringing || !self.stack.invite_pending(&c.invite) {
            return;
        }
        match c.offer.clone() {
            OnOffer::Answer { then, .. } => {
                let mut ok = reply(&c.invite, 200, &c.tag);
                ok.set_header("Contact", contact);
                set_body(&mut ok, "application/sdp", sdp(ip, 1, ""));
                c.state = CallState::Talking;
                c.act_at = match then {
                    AfterAnswer::Wait => None,
                    AfterAnswer::HangUp(d)
                    | AfterAnswer::Transfer(d, _)
                    | AfterAnswer::Reinvite(d) => Some(now + d),
                };
                let inv = c.invite.clone();
                self.note(now, format!("answers {}", inv.call_id()));
                self.stack.respond(now, &inv, ok);
            }
            OnOffer::Busy { .. } => {
                let r = reply(&c.invite, 486, &c.tag);
                c.state = CallState::Ended;
                let inv = c.invite.clone();
                self.note(now, format!("busy {}", inv.call_id()));
                self.stack.respond(now, &inv, r);
            }
            OnOffer::Silent => {
                // The phone comes back to life having forgotten the offer.
                c.state = CallState::Ended;
                let inv = c.invite.clone();
                self.stack.forget(&inv);
            }
            OnOffer::NoAnswer => {}
        }
    }

    fn act(&mut self, now: Instant, i: usize) {
        if self.calls[i].state != CallState::Talking {
            return;
        }
        let then = match &self.calls[i].offer {
            OnOffer::Answer { then, .. } => then.clone(),
            _ => return,
        };
        match then {
            AfterAnswer::Wait => {}
            AfterAnswer::HangUp(_) => self.bye(now, i),
            AfterAnswer::Transfer(_, to) => {
                let mut refer = self.calls[i].dialog.request(&mut self.stack, Method::Refer);
                refer.set_header("Refer-To", format!("<sip:{to}@dasan>"));
                self.note(now, format!("REFER to {to}"));
                self.stack.send(now, refer);
            }
            AfterAnswer::Reinvite(_) => {
                let mut inv = self.calls[i]
                    .dialog
                    .request(&mut self.stack, Method::Invite);
                set_body(
                    &mut inv,
                    "application/sdp",
                    sdp(self.stack.addr.ip(), 2, "a=sendonly\r\n"),
                );
                self.note(now, "re-INVITE".into());
                self.stack.send(now, inv);
            }
        }
    }

    fn bye(&mut self, now: Instant, i: usize) {
        let bye = self.calls[i].dialog.request(&mut self.stack, Method::Bye);
        self.calls[i].state = CallState::Leaving;
        self.note(now, format!("BYE {}", self.calls[i].dialog.call_id));
        self.stack.send(now, bye);
    }

    fn on_response(&mut self, now: Instant, r: Message) {
        let Some(code) = r.status() else { return };
        let Some((_, method)) = r.cseq() else { return };
        self.note(now, format!("{code} to {method} {}", r.call_id()));
        match method {
            Method::Register => self.on_register_response(now, code, &r),
            Method::Invite if self.toggle.as_ref().map(|t| &t.call_id[..]) == Some(r.call_id()) => {
                self.on_toggle_response(now, code, &r)
            }
            Method::Bye if code >= 200 => {
                if let Some(i) = self.call_index(r.call_id()) {
                    self.calls[i].state = CallState::Ended;
                }
            }
            Method::Refer if code >= 300 => {
                // Refused (call gone, not anchored...): the agent hangs up instead.
                if let Some(i) = self.call_index(r.call_id()) {
                    if self.calls[i].state == CallState::Talking {
                        self.bye(now, i);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_register_response(&mut self, now: Instant, code: u16, r: &Message) {
        match code {
            401 => {
                let ch = r.header("WWW-Authenticate").map(str::to_string);
                self.send_register(now, ch.as_deref());
            }
            200..=299 if self.reg == Reg::Unregistering => self.reg = Reg::Gone,
            200..=299 => {
                self.reg = Reg::Registered;
                self.register_at = Some(now + Duration::from_secs(EXPIRES_S / 2));
            }
            100..=199 => {}
            _ => self
                .problems
                .push(format!("REGISTER of {} got {code}", self.script.id)),
        }
    }

    fn on_toggle_response(&mut self, now: Instant, code: u16, r: &Message) {
        if code < 200 {
            return;
        }
        let reason = match &r.start {
            StartLine::Response { reason, .. } => reason.clone(),
            StartLine::Request { .. } => String::new(),
        };
        match code {
            407 => {
                let ch = r.header("Proxy-Authenticate").map(str::to_string);
                self.dial_toggle(now, ch.as_deref());
                return;
            }
            // Toggled into not-ready (it had become ready by itself): toggle back.
            603 if reason == "Not Ready" => self.retry_toggle(now, Duration::ZERO),
            // Ringing or talking: ready again after the call anyway; ask once more later.
            486 => self.retry_toggle(now, Duration::from_secs(5)),
            603 => {}
            _ => self
                .problems
                .push(format!("{CODE} of {} got {code} {reason}", self.script.id)),
        }
        self.toggle = None;
    }

    fn retry_toggle(&mut self, now: Instant, after: Duration) {
        if self.toggles_left > 0 {
            self.toggles_left -= 1;
            self.toggle_at = Some(now + after);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, bytes::Bytes)> {
        self.stack.poll_transmit().map(|b| (self.engine, b))
    }
}
