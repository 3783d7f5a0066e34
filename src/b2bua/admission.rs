//! Admission: a trunk INVITE becomes a call (feature codes, trust, route, SDP, limits,
//! opening hours), gets its record and its first provisional, and joins its queue.

use super::leg::{tag_of, Leg};
use super::{Call, Engine, MusicRef, Outcome, RouteTarget, Side, TimerRef};
use crate::acd::{CallKey, QueueIdx};
use crate::records::RecordEvent;
use crate::sip::build::response;
use crate::sip::message::{Header, Message, NameAddr};
use crate::sip::Flow;
use crate::util::mask_number;
use std::time::Instant;

/// What the checks made of a trunk INVITE: where it goes and how the trunk takes audio.
struct Admission {
    /// The trunk takes early media (183 with our SDP) rather than a plain 180.
    early_media: bool,
    trunk: std::sync::Arc<str>,
    number: Option<String>,
    /// The queue the number routes to…
    asked: QueueIdx,
    /// …and the one that takes the call (the closed fallback outside opening hours, the
    /// overflow of a full queue).
    q: QueueIdx,
    /// 120+9: the menu the caller hears first.
    menu: Option<String>,
    closed_prompt: Option<String>,
}

impl Engine {
    pub(super) fn on_new_invite(&mut self, now: Instant, tx: u64, flow: Flow, msg: Message) {
        let dialled = msg.request_uri().and_then(crate::sip::uri::dialled_number);
        if let Some(code) = dialled
            .filter(|n| *n == self.cfg.features.toggle_ready || *n == self.cfg.features.logout)
        {
            self.on_feature_code(now, tx, flow, msg, &code);
            return;
        }
        let Some(mut a) = self.screen(now, tx, flow, &msg) else {
            return;
        };
        let key = tx;
        let policy = self
            .cfg
            .trunk_srtp
            .get(&a.trunk)
            .copied()
            .unwrap_or_default();
        let tls = flow.transport == crate::sip::Transport::Tls;
        let video = self.cfg.queues[a.q].video;
        let mut media = match self.anchor_caller(&msg, policy, tls, video) {
            Ok(m) => m,
            Err(code) => {
                self.refuse(now, tx, &msg, code);
                return;
            }
        };
        // A call for a menu joins a queue only once the caller chose (or gave up); without
        // anchored media (a late-offer INVITE) it cannot hear digits: straight to the queue.
        a.menu = a.menu.filter(|_| media.is_some());
        if let Err(code) = self.admit(now, key, &mut a) {
            self.refuse(now, tx, &msg, code);
            if let Some(m) = media {
                self.anchor_release(key, m);
            }
            self.record_rejected(now, &msg, &a, code);
            return;
        }
        let caller_num = msg
            .header("From")
            .and_then(|f| crate::sip::uri::dialled_number(NameAddr::parse(f).uri))
            .unwrap_or_default();
        tracing::debug!(caller = %mask_number(&caller_num), call = key, "call queued");
        let record = new_record_id(&mut self.ids);
        let channel = if media.as_ref().is_some_and(|m| m.video.is_some()) {
            "video"
        } else {
            "voice"
        };
        self.record_arrival(now, &record, &msg, &a, channel);
        if let Some(t) = self.tx.server_mut(tx) {
            t.tu = Some(key);
        }
        let trying = response(&msg, 100, None, None);
        self.respond(now, tx, trying);
        if let Some(m) = media.as_mut() {
            self.start_early_media(key, m, flow.remote.ip(), &a, &record);
        }
        self.insert_call(now, key, flow, msg, media, record, &a);
        self.start_waiting(now, key, &a);
    }

    /// The checks before a trunk INVITE becomes a call: a trusted source, no option tags
    /// required, a routable number, an open queue, SDP. None when it was refused (the
    /// response is sent).
    fn screen(&mut self, now: Instant, tx: u64, flow: Flow, msg: &Message) -> Option<Admission> {
        let Some((early_media, trunk)) = self.trunk_of(flow) else {
            tracing::debug!(src = %flow.remote, "INVITE from untrusted source refused");
            self.refuse_stateless(tx, msg, 403);
            return None;
        };
        // We implement no option tags: any Require (e.g. 100rel) gets 420 (RFC 3261 8.2.2.3).
        let required: Vec<String> = msg.header_values("Require").map(str::to_string).collect();
        if !required.is_empty() {
            let mut r = response(msg, 420, None, Some(&self.ids.token(10)));
            r.set_header("Unsupported", required.join(", "));
            self.respond(now, tx, r);
            return None;
        }
        let scheme = msg
            .request_uri()
            .and_then(|u| u.split_once(':'))
            .map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("sip" | "sips" | "tel")) {
            self.reply(now, tx, msg, 416, None);
            return None;
        }
        let number = msg.request_uri().and_then(crate::sip::uri::dialled_number);
        let Some(target) = number
            .as_ref()
            .and_then(|n| self.cfg.routes.get(n))
            .cloned()
        else {
            self.reply(now, tx, msg, 404, None);
            return None;
        };
        let (q, menu) = match target {
            RouteTarget::Queue(q) => (q, None),
            RouteTarget::Menu(m, fallback) => (fallback, Some(m)),
        };
        // Sign-language counselling: a call with video goes to the number's video queue.
        let (q, menu) = match number.as_ref().and_then(|n| self.cfg.video_routes.get(n)) {
            Some(&v) if offers_video(msg) => (v, None),
            _ => (q, menu),
        };
        // Outside opening hours: the closed queue's fallback takes the call, after the
        // closed prompt; with no open fallback, 480.
        let (open, closed_prompt) = if menu.is_some() {
            (q, None)
        } else {
            let Some(x) = self.open_queue(q, now) else {
                self.reply(now, tx, msg, 480, None);
                return None;
            };
            x
        };
        if !msg.body.is_empty()
            && !msg
                .content_type()
                .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/sdp"))
        {
            let mut r = response(msg, 415, None, Some(&self.ids.token(10)));
            r.set_header("Accept", "application/sdp");
            self.respond(now, tx, r);
            return None;
        }
        Some(Admission {
            early_media,
            trunk,
            number,
            asked: q,
            q: open,
            menu,
            closed_prompt,
        })
    }

    /// Takes the call into its queue (or a menu), or says which status refuses it:
    /// overload, draining, too many calls, a full queue (with its `when_full`).
    fn admit(&mut self, now: Instant, key: CallKey, a: &mut Admission) -> Result<(), u16> {
        if self.overloaded || self.draining || self.calls.len() >= self.cfg.max_calls {
            return Err(503);
        }
        // A menu caller holds a seat of the queue it falls back to (taken in enter_menu).
        if (a.menu.is_some() && !self.queue_full(a.q)) || self.try_enqueue(a.q, key, now) {
            return Ok(());
        }
        if a.menu.is_some() {
            // A full menu is full for its fallback queue's reasons: its when_full answer,
            // never a queue to wait in (the caller has chosen no language yet).
            return match self.cfg.queues[a.q].when_full {
                crate::config::engine::Limit::Reject(code) => Err(code),
                _ => Err(503),
            };
        }
        a.q = self.when_full(a.q, key, now)?;
        Ok(())
    }

    /// A final refusal of a new call, with Retry-After on 503.
    fn refuse(&mut self, now: Instant, tx: u64, msg: &Message, code: u16) {
        let mut r = response(msg, code, None, Some(&self.ids.token(10)));
        if code == 503 {
            r.set_header("Retry-After", self.cfg.retry_after_s.to_string());
        }
        self.respond(now, tx, r);
    }

    /// A refused call still gets its record (arrived and ended, rejected) and counts.
    fn record_rejected(&mut self, now: Instant, msg: &Message, a: &Admission, code: u16) {
        let id = new_record_id(&mut self.ids);
        self.record_arrival(now, &id, msg, a, "voice");
        self.record(RecordEvent::Ended {
            id,
            outcome: crate::records::Outcome::Rejected,
            side: "engine",
            sip_cause: code,
            at_ms: self.unix_ms(now),
        });
        let qn = self.acd.queue_name(a.q).to_string();
        self.metrics
            .calls
            .with_label_values(&[&qn, Outcome::Rejected.as_str()])
            .inc();
    }

    /// What the caller hears while waiting: the queue's music (silence in a menu, or when
    /// the trunk takes no early media), after the closed prompt if there is one.
    /// `signalling`: where the caller's INVITE came from.
    fn start_early_media(
        &mut self,
        key: CallKey,
        m: &mut super::anchor::CallMedia,
        signalling: std::net::IpAddr,
        a: &Admission,
        record: &str,
    ) {
        // Without early media the caller has no SDP of ours yet: nothing to send.
        let music = match a.menu {
            Some(_) => MusicRef::Silence,
            None if !a.early_media => MusicRef::Silence,
            None => self.cfg.queues[a.q].music.clone(),
        };
        self.anchor_begin(key, m, signalling, music.clone(), record, a.early_media);
        if let Some(p) = a.closed_prompt.clone().filter(|_| a.early_media) {
            self.media_out.push_back(super::MediaCommand::Play {
                call: key,
                prompts: vec![p],
                then: music,
            });
        }
    }

    /// The call's state as it starts waiting, with its caller leg and dialog.
    #[allow(clippy::too_many_arguments)]
    fn insert_call(
        &mut self,
        now: Instant,
        key: CallKey,
        flow: Flow,
        msg: Message,
        media: Option<super::anchor::CallMedia>,
        record: String,
        a: &Admission,
    ) {
        let local_tag = self.ids.token(12);
        let mut caller = Leg {
            flow,
            call_id: msg.call_id().to_string(),
            local: format!("{};tag={local_tag}", msg.header("To").unwrap_or("")),
            remote: msg.header("From").unwrap_or("").to_string(),
            remote_target: msg.request_uri().unwrap_or("").to_string(),
            route_set: Vec::new(),
            local_cseq: 0,
            pending_2xx: None,
            sips: msg.request_uri().is_some_and(super::leg::is_sips),
        };
        caller.learn_target(&msg, false);
        let q = a.q;
        let announce_at = self.cfg.queues[q]
            .announce
            .as_ref()
            .filter(|_| media.is_some() && a.menu.is_none() && a.early_media)
            .map(|an| now + an.every);
        self.dialogs
            .insert(caller.call_id.clone(), (key, Side::Caller));
        let mut call = Call::waiting(q, self.received, caller, key, Some(msg), media, record);
        call.early_media = a.early_media;
        call.max_wait_at = Some(now + self.cfg.queues[q].max_wait);
        call.announce_at = announce_at;
        call.queued_at = now;
        self.calls.insert(key, call);
    }

    /// The new call starts waiting: queue timers, the callback offer, ringing or early
    /// media, and an agent at once if one is free (or the menu, for 120+9).
    fn start_waiting(&mut self, now: Instant, key: CallKey, a: &Admission) {
        let q = a.q;
        if a.menu.is_none() {
            self.set_queue_timers(now, key);
            self.windows[q].offered(now);
            let offer = self.callback_offer_time(key, q, now);
            // The caller heard the closed queue's prompt: its callback digit stays live.
            let closed_prompt_heard = a.closed_prompt.is_some()
                && a.early_media
                && self.calls.get(&key).is_some_and(|c| c.media.is_some());
            if let Some(call) = self.calls.get_mut(&key) {
                call.callback_offer_at = offer.filter(|_| a.early_media);
                call.closed_from = (a.asked != q && closed_prompt_heard).then_some(a.asked);
            }
        }
        self.metrics.calls_active.inc();
        let anchored = self
            .calls
            .get(&key)
            .is_some_and(|c| c.media.is_some() && c.early_media);
        if anchored {
            // Early media at once: the caller hears the queue's audio (ringback by default)
            // from the engine, and can press 9 while waiting.
            self.send_ringing(now, key);
        }
        match &a.menu {
            Some(m) => self.enter_menu(now, key, m, q),
            None => {
                self.queue_gauge(q);
                self.dispatch(now, q);
            }
        }
        if self.calls.get(&key).is_some_and(|c| c.agent.is_none()) {
            // No agent free: the caller waits in the queue, hearing ringing.
            self.send_ringing(now, key);
        }
        self.arm(TimerRef::Call(key));
    }

    fn record_arrival(
        &mut self,
        now: Instant,
        id: &str,
        msg: &Message,
        a: &Admission,
        channel: &'static str,
    ) {
        let caller = msg
            .header("From")
            .and_then(|f| crate::sip::uri::dialled_number(NameAddr::parse(f).uri))
            .unwrap_or_default();
        let ev = RecordEvent::Arrived {
            id: id.to_string(),
            sip_call_id: msg.call_id().to_string(),
            trunk: a.trunk.to_string(),
            caller,
            dialled: a.number.clone().unwrap_or_default(),
            channel,
            queue: self.acd.queue_name(a.q).to_string(),
            language: self.acd.queue_skill(a.q).to_string(),
            at_ms: self.unix_ms(now),
        };
        self.record(ev);
    }

    /// The call's routing-step and overflow times in its current queue.
    pub(super) fn set_queue_timers(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let q = call.queue;
        call.step_at = self.acd.call_wake(q, call.queued_at, now);
        call.overflow_at = self.cfg.queues[q]
            .overflow
            .map(|(after, _)| call.queued_at + after);
    }

    pub(super) fn queue_gauge(&self, q: QueueIdx) {
        self.metrics
            .queue_waiting
            .with_label_values(&[self.acd.queue_name(q)])
            .set(self.acd.members(q) as i64);
    }

    pub(super) fn send_ringing(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.ringing_sent {
            return;
        }
        let Some(inv) = call.caller_invite.as_ref() else {
            return;
        };
        call.ringing_sent = true;
        let tag = tag_of(&call.caller.local);
        // Anchored: 183 with our SDP, the engine plays the ringback itself (RFC 3960).
        let early = call
            .media
            .as_ref()
            .filter(|_| call.early_media)
            .map(|m| m.caller_sdp.clone());
        let code = if early.is_some() { 183 } else { 180 };
        let mut r = response(inv, code, None, Some(&tag));
        r.headers.push(Header {
            name: "Contact".into(),
            value: call.caller.contact(self.cfg.local, "dasan"),
        });
        if let Some(body) = early {
            r.headers.push(Header {
                name: "Content-Type".into(),
                value: "application/sdp".into(),
            });
            r.body = body;
        }
        let tx = call.caller_invite_tx;
        self.respond(now, tx, r);
    }
}

/// A record id that stays unique across restarts: time and randomness, no state.
pub(super) fn new_record_id(ids: &mut crate::sip::build::Ids) -> String {
    format!("{:016x}", ids.u64())
}

/// Whether an INVITE's SDP offers a video stream (port not 0).
fn offers_video(msg: &Message) -> bool {
    std::str::from_utf8(&msg.body)
        .ok()
        .and_then(|t| crate::media::sdp::Sdp::parse(t).ok())
        .is_some_and(|s| s.media.iter().any(|m| m.kind == "video" && m.port != 0))
}
