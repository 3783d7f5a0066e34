//! A carrier's caller: one INVITE to the engine, then whatever its script says (digits,
//! a re-INVITE, hanging up at any moment), answering what the engine sends it.

use super::stack::{reply, set_body, Dialog, Event, Stack};
use dasan::sip::build::cancel_for;
use dasan::sip::message::{Message, NameAddr};
use dasan::sip::transaction::TimerConfig;
use dasan::sip::Method;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitVia {
    /// SIP INFO application/dtmf-relay in the dialog (once a provisional gave its tag).
    Info,
    /// An RFC 4733 event the media plane reports to the engine.
    Rtp,
}

#[derive(Debug, Clone)]
pub struct CallerScript {
    /// When the INVITE leaves, from the start of the run.
    pub at: Duration,
    pub number: String,
    /// This long after the INVITE the caller hangs up: CANCEL before an answer, BYE after.
    pub hang_up: Option<Duration>,
    /// Once answered, the caller hangs up after this much talk.
    pub talk: Duration,
    /// Key presses, each this long after the INVITE.
    pub digits: Vec<(Duration, char, DigitVia)>,
    /// Once answered, a re-INVITE putting the call on hold this long later.
    pub reinvite: Option<Duration>,
}

/// How the caller's call ended, as the caller saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// A final non-2xx to the INVITE (487 after our CANCEL, 480 at max wait, ...).
    Refused(u16),
    /// Our BYE was answered with this code.
    HungUp(u16),
    /// The engine sent us a BYE.
    HungUpOn,
    /// Our BYE got no answer at all.
    ByeTimedOut,
    /// Our INVITE got no response at all (Timer B).
    NoResponse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Before,
    Calling,
    Talking,
    /// Our BYE is out.
    Leaving,
    Done(End),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancel {
    No,
    /// Wanted, but RFC 3261 9.1 waits for a provisional first.
    Wanted,
    Sent,
}

pub struct Caller {
    pub stack: Stack,
    pub script: CallerScript,
    pub call_id: String,
    engine: SocketAddr,
    phase: Phase,
    invite: Option<Message>,
    dialog: Dialog,
    /// The engine's tag is known (a provisional or the 2xx carried it).
    early: bool,
    provisional: bool,
    cancel: Cancel,
    pub answered: bool,
    arrive_at: Instant,
    hang_up_at: Option<Instant>,
    next_digit: usize,
    bye_at: Option<Instant>,
    reinvite_at: Option<Instant>,
    reinvite_pending: bool,
    /// RFC 4733 digits pressed, for the media plane to report.
    pub rtp_digits: Vec<char>,
    /// What happened, with times, for failure reports.
    pub trace: Vec<String>,
    origin: Instant,
}

fn ms(origin: Instant, now: Instant) -> u128 {
    (now - origin).as_millis()
}

impl Caller {
    pub fn new(
        n: usize,
        addr: SocketAddr,
        engine: SocketAddr,
        origin: Instant,
        timers: TimerConfig,
        script: CallerScript,
    ) -> Caller {
        let mut stack = Stack::new(addr, timers);
        let call_id = stack.token("call");
        let tag = stack.token("ct");
        let arrive_at = origin + script.at;
        Caller {
            dialog: Dialog {
                call_id: call_id.clone(),
                local: format!("\"Caller {n}\" <sip:0212{n:06}@{}>;tag={tag}", addr.ip()),
                remote: format!("<sip:{}@{engine}>", script.number),
                target: format!("sip:{}@{engine}", script.number),
                cseq: 0,
                user: "caller".into(),
            },
            hang_up_at: script.hang_up.map(|d| arrive_at + d),
            stack,
            script,
            call_id,
            engine,
            phase: Phase::Before,
            invite: None,
            early: false,
            provisional: false,
            cancel: Cancel::No,
            answered: false,
            arrive_at,
            next_digit: 0,
            bye_at: None,
            reinvite_at: None,
            reinvite_pending: false,
            rtp_digits: Vec::new(),
            trace: Vec::new(),
            origin,
        }
    }

    pub fn end(&self) -> Option<End> {
        match self.phase {
            Phase::Done(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the INVITE has left (the engine may have seen the call).
    pub fn started(&self) -> bool {
        self.phase != Phase::Before
    }

    fn note(&mut self, now: Instant, what: String) {
        self.trace
            .push(format!("{} ms: {what}", ms(self.origin, now)));
    }

    fn sdp(&self, version: u32, extra: &str) -> String {
        let ip = self.stack.addr.ip();
        format!("v=0\r\no=c 1 {version} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n{extra}")
    }

    fn script_deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        let before = (self.phase == Phase::Before).then_some(self.arrive_at);
        let digit = self
            .script
            .digits
            .get(self.next_digit)
            .map(|(d, _, _)| self.arrive_at + *d)
            .filter(|_| self.phase != Phase::Before);
        [
            before,
            digit,
            self.hang_up_at.filter(|_| self.phase != Phase::Before),
            self.bye_at,
            self.reinvite_at,
        ]
        .into_iter()
        .flatten()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.script_deadlines()
            .chain(self.stack.poll_timeout())
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for ev in self.stack.handle_timeout(now) {
            self.on_event(now, ev);
        }
        if self.phase == Phase::Before && self.arrive_at <= now {
            self.send_invite(now);
        }
        while let Some(&(d, digit, via)) = self.script.digits.get(self.next_digit) {
            if self.phase == Phase::Before || self.arrive_at + d > now {
                break;
            }
            self.next_digit += 1;
            if matches!(self.phase, Phase::Calling | Phase::Talking) {
                self.press(now, digit, via);
            }
        }
        if self.hang_up_at.is_some_and(|t| t <= now) && self.phase != Phase::Before {
            self.hang_up_at = None;
            self.hang_up(now);
        }
        if self.bye_at.is_some_and(|t| t <= now) {
            self.bye_at = None;
            self.hang_up(now);
        }
        if self.reinvite_at.is_some_and(|t| t <= now) {
            self.reinvite_at = None;
            if self.phase == Phase::Talking && !self.reinvite_pending {
                self.reinvite(now);
            }
        }
    }

    fn send_invite(&mut self, now: Instant) {
        let mut inv = self.dialog.request(&mut self.stack, Method::Invite);
        set_body(&mut inv, "application/sdp", self.sdp(1, ""));
        self.note(now, "INVITE".into());
        self.phase = Phase::Calling;
        self.invite = Some(inv.clone());
        self.stack.send(now, inv);
    }

    fn press(&mut self, now: Instant, digit: char, via: DigitVia) {
        if via == DigitVia::Info && self.early {
            let mut info = self.dialog.request(&mut self.stack, Method::Info);
            set_body(
                &mut info,
                "application/dtmf-relay",
                format!("Signal={digit}\r\nDuration=160\r\n"),
            );
            self.note(now, format!("INFO {digit}"));
            self.stack.send(now, info);
        } else {
            self.note(now, format!("RTP digit {digit}"));
            self.rtp_digits.push(digit);
        }
    }

    fn hang_up(&mut self, now: Instant) {
        match self.phase {
            Phase::Calling if self.cancel == Cancel::No => {
                self.cancel = Cancel::Wanted;
                self.send_cancel_if_allowed(now);
            }
            Phase::Talking => self.send_bye(now),
            _ => {}
        }
    }

    fn send_cancel_if_allowed(&mut self, now: Instant) {
        if self.cancel != Cancel::Wanted || !self.provisional {
            return;
        }
        if let Some(inv) = self.invite.as_ref() {
            let c = cancel_for(inv);
            self.cancel = Cancel::Sent;
            self.note(now, "CANCEL".into());
            self.stack.send(now, c);
        }
    }

    fn send_bye(&mut self, now: Instant) {
        let bye = self.dialog.request(&mut self.stack, Method::Bye);
        self.note(now, "BYE".into());
        self.phase = Phase::Leaving;
        self.bye_at = None;
        self.reinvite_at = None;
        self.stack.send(now, bye);
    }

    fn reinvite(&mut self, now: Instant) {
        let mut inv = self.dialog.request(&mut self.stack, Method::Invite);
        set_body(
            &mut inv,
            "application/sdp",
            self.sdp(self.dialog.cseq + 1, "a=sendonly\r\n"),
        );
        self.reinvite_pending = true;
        self.note(now, "re-INVITE".into());
        self.stack.send(now, inv);
    }

    fn learn(&mut self, resp: &Message) {
        if resp.to_tag().is_some() {
            self.dialog.remote = resp.header("To").unwrap_or("").to_string();
            self.early = true;
        }
        if let Some(c) = resp.header("Contact") {
            self.dialog.target = NameAddr::parse(c).uri.to_string();
        }
    }

    pub fn handle(&mut self, now: Instant, data: &[u8]) {
        if let Some(ev) = self.stack.handle(now, data) {
            self.on_event(now, ev);
        }
    }

    fn on_event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::Response(r) => self.on_response(now, r),
            Event::Request(r) => self.on_request(now, r),
            Event::TimedOut(req) => {
                let m = req.method().cloned();
                self.note(now, format!("{m:?} timed out"));
                match m {
                    Some(Method::Invite) if req.cseq().map(|c| c.0) == Some(1) => {
                        if matches!(self.phase, Phase::Calling) {
                            self.phase = Phase::Done(End::NoResponse);
                        }
                    }
                    Some(Method::Invite) => self.reinvite_pending = false,
                    Some(Method::Bye) if self.phase == Phase::Leaving => {
                        self.phase = Phase::Done(End::ByeTimedOut)
                    }
                    _ => {}
                }
            }
            Event::Cancelled(_) | Event::NoAck(_) => {}
        }
    }

    fn on_response(&mut self, now: Instant, r: Message) {
        let Some(code) = r.status() else { return };
        let Some((cseq, method)) = r.cseq() else {
            return;
        };
        self.note(now, format!("{code} to {method} {cseq}"));
        match method {
            Method::Invite if cseq == 1 => match code {
                100 => self.provisional = true,
                101..=199 => {
                    self.provisional = true;
                    self.learn(&r);
                    self.send_cancel_if_allowed(now);
                }
                200..=299 => {
                    self.learn(&r);
                    self.answered = true;
                    if self.phase != Phase::Calling {
                        return;
                    }
                    self.phase = Phase::Talking;
                    if self.cancel != Cancel::No {
                        // Our CANCEL crossed the answer: ACKed by the stack, now hang up.
                        self.send_bye(now);
                        return;
                    }
                    let mut bye = now + self.script.talk;
                    if let Some(t) = self.hang_up_at.take() {
                        bye = bye.min(t.max(now));
                    }
                    self.bye_at = Some(bye);
                    self.reinvite_at = self.script.reinvite.map(|d| now + d);
                }
                _ => {
                    if matches!(self.phase, Phase::Calling) {
                        self.phase = Phase::Done(End::Refused(code));
                    }
                }
            },
            Method::Invite if code >= 200 => self.reinvite_pending = false,
            Method::Bye if code >= 200 && self.phase == Phase::Leaving => {
                self.phase = Phase::Done(End::HungUp(code));
            }
            _ => {}
        }
    }

    fn on_request(&mut self, now: Instant, r: Message) {
        let Some(method) = r.method().cloned() else {
            return;
        };
        self.note(now, format!("got {method}"));
        let tag = dasan::sip::message::NameAddr::parse(&self.dialog.local)
            .param("tag")
            .unwrap_or("")
            .to_string();
        let ours = r.call_id() == self.call_id;
        match method {
            Method::Ack => {}
            Method::Bye if ours => {
                self.stack.respond(now, &r, reply(&r, 200, &tag));
                if !matches!(self.phase, Phase::Done(_)) {
                    self.phase = Phase::Done(End::HungUpOn);
                }
                self.bye_at = None;
                self.reinvite_at = None;
                self.hang_up_at = None;
            }
            Method::Invite if ours => {
                let mut ok = reply(&r, 200, &tag);
                ok.set_header("Contact", self.stack.contact("caller"));
                set_body(&mut ok, "application/sdp", self.sdp(9, ""));
                self.stack.respond(now, &r, ok);
            }
            _ if ours => {
                self.stack.respond(now, &r, reply(&r, 200, &tag));
            }
            _ => {
                self.stack.respond(now, &r, reply(&r, 481, &tag));
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, bytes::Bytes)> {
        self.stack.poll_transmit().map(|b| (self.engine, b))
    }
}
