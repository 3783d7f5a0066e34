//! In-dialog relay: ACKs, re-INVITE, UPDATE and INFO between the two legs of an answered
//! call, with each leg's own Call-ID, tags and CSeq.

use super::leg::{copy_body, tag_of, Pending2xx};
use super::{Engine, Owner, Relay, Side, TimerRef};
use crate::acd::CallKey;
use crate::media::bridge::LegId;
use crate::sip::build::response;
use crate::sip::message::{Header, Message, StartLine};
use crate::sip::transaction::ServerKind;
use crate::sip::Method;
use bytes::Bytes;
use std::time::Instant;

impl Engine {
    pub(super) fn on_non_invite_response(&mut self, now: Instant, tx_id: u64, msg: Message) {
        let Some(status) = msg.status() else { return };
        if status < 200 {
            return;
        }
        match self.tx.client(tx_id).map(|t| t.owner) {
            Some(Owner::Relay { call, server_tx }) => {
                self.relay_final(now, call, server_tx, tx_id, msg)
            }
            Some(Owner::Text { conv, to_agent }) => {
                self.text_delivery(now, conv, to_agent, Some(status))
            }
            _ => {}
        }
    }

    /// An ACK: for a non-2xx it belongs to the INVITE server transaction; for a 2xx it
    /// belongs to the dialog (RFC 6026).
    pub(super) fn on_ack(&mut self, now: Instant, msg: Message) {
        if let Some(key) = crate::sip::transaction::server_key(&msg, &Method::Ack) {
            if let Some(id) = self.tx.find_server(&key) {
                if let Some(tx) = self.tx.server_mut(id) {
                    if let ServerKind::Invite(si) = &mut tx.kind {
                        if si.on_ack(now) == crate::sip::transaction::AckAction::Absorb {
                            self.arm(TimerRef::Server(id));
                            return;
                        }
                    }
                }
            }
        }
        let Some((key, side)) = self.matching_dialog(&msg) else {
            return;
        };
        let cseq = msg.cseq().map(|(n, _)| n);
        let local = self.cfg.local;
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let leg = match side {
            Side::Caller => &mut call.caller,
            Side::Agent => match call.agent.as_mut() {
                Some(a) => &mut a.leg,
                None => return,
            },
        };
        if leg.pending_2xx.as_ref().map(|p| p.cseq) == cseq && cseq.is_some() {
            leg.pending_2xx = None;
        }
        // Late offer: the caller's ACK carries the answer the agent is waiting for.
        if side == Side::Caller {
            if let Some(a) = call
                .agent
                .as_mut()
                .filter(|a| a.answered && a.ack_waits_for_caller)
            {
                a.ack_waits_for_caller = false;
                let mut ack = a
                    .leg
                    .request(Method::Ack, local, Some(a.invite_cseq), &mut self.ids);
                copy_body(&msg, &mut ack);
                let (flow, bytes, tx) = (a.leg.flow, ack.to_bytes(), a.invite_tx);
                if let Some(t) = self.tx.client_mut(tx) {
                    t.ack_2xx = Some(bytes.clone());
                }
                self.send(flow, bytes);
            }
        }
    }

    /// The relay wants a keyframe from `leg`, whose SDP declared no RTCP feedback: a SIP
    /// INFO `picture_fast_update` (RFC 5168) in its dialog, once that dialog is confirmed.
    pub(super) fn send_picture_fast_update(&mut self, now: Instant, key: CallKey, leg: LegId) {
        let local = self.cfg.local;
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let target = match leg {
            LegId::Caller if call.answered => &mut call.caller,
            LegId::Agent => match call.agent.as_mut().filter(|a| a.answered) {
                Some(a) => &mut a.leg,
                None => return,
            },
            LegId::Caller => return,
        };
        let mut req = target.request(Method::Info, local, None, &mut self.ids);
        req.set_header("Content-Type", "application/media_control+xml");
        req.body = Bytes::from_static(PICTURE_FAST_UPDATE.as_bytes());
        let flow = target.flow;
        self.start_client(now, flow, req, Owner::Fire, None);
    }

    /// re-INVITE, UPDATE or INFO inside a call: relayed to the other leg.
    pub(super) fn on_relayable(&mut self, now: Instant, tx: u64, msg: Message) {
        let Some((key, side)) = self.dialog_of(now, tx, &msg) else {
            return;
        };
        let local = self.cfg.local;
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let method = msg.method().cloned().unwrap_or(Method::Info);
        // A keyframe request by SIP INFO (RFC 5168) on a video call: the relay asks the
        // other side the way it takes one (or restarts a waiting caller's picture).
        if method == Method::Info
            && call.media.as_ref().is_some_and(|m| m.video.is_some())
            && is_picture_fast_update(&msg)
        {
            self.reply(now, tx, &msg, 200, None);
            let from = match side {
                Side::Caller => LegId::Caller,
                Side::Agent => LegId::Agent,
            };
            self.media_out
                .push_back(super::MediaCommand::VideoKeyframe { call: key, from });
            return;
        }
        if method == Method::Info && side == Side::Caller && !call.answered {
            // SIP INFO DTMF while waiting (application/dtmf-relay or application/dtmf).
            let ct = msg.content_type().unwrap_or("").to_ascii_lowercase();
            let body = std::str::from_utf8(&msg.body).unwrap_or("");
            let digit = if ct.starts_with("application/dtmf-relay") {
                crate::media::dtmf::parse_dtmf_relay(body)
            } else if ct.starts_with("application/dtmf") {
                body.trim().chars().next()
            } else {
                None
            };
            self.reply(now, tx, &msg, 200, None);
            if let Some(d) = digit {
                self.on_digit(now, key, d, crate::media::dtmf::DigitSource::SipInfo);
                self.arm(TimerRef::Call(key));
            }
            return;
        }
        if call
            .media
            .as_ref()
            .is_some_and(|m| m.agent.is_some() || side == Side::Caller)
            && matches!(method, Method::Invite | Method::Update)
            && (call.answered || method == Method::Update)
        {
            self.reanswer(now, tx, key, side, msg);
            return;
        }
        if !call.answered || call.agent.is_none() {
            let r = response(&msg, 500, Some("Call Not Established"), None);
            let mut r = r;
            r.set_header("Retry-After", "1");
            self.respond(now, tx, r);
            return;
        }
        if call.relay.is_some() {
            self.reply(now, tx, &msg, 491, None);
            return;
        }
        let Some(a) = call.agent.as_mut() else { return };
        // Learn a refreshed target from the sender.
        match side {
            Side::Caller => call.caller.learn_target(&msg, false),
            Side::Agent => a.leg.learn_target(&msg, false),
        }
        let other = match side {
            Side::Caller => &mut a.leg,
            Side::Agent => &mut call.caller,
        };
        let mut req = other.request(method.clone(), local, None, &mut self.ids);
        if method == Method::Invite || method == Method::Update {
            req.headers.push(Header {
                name: "Contact".into(),
                value: other.contact(local, "dasan"),
            });
        }
        copy_body(&msg, &mut req);
        let flow = other.flow;
        let client = self.start_client(
            now,
            flow,
            req,
            Owner::Relay {
                call: key,
                server_tx: tx,
            },
            None,
        );
        if let Some(call) = self.calls.get_mut(&key) {
            call.relay = Some(Relay {
                client_tx: client,
                server_tx: tx,
                from: side,
                request: msg,
            });
        }
    }

    pub(super) fn relay_final(
        &mut self,
        now: Instant,
        key: CallKey,
        server_tx: u64,
        client_tx: u64,
        resp: Message,
    ) {
        let local = self.cfg.local;
        let (t1, t2, give_up) = (
            self.cfg.timers.t1,
            self.cfg.timers.t2,
            now + self.cfg.timers.t1x64(),
        );
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(relay) = call.relay.take_if(|r| r.client_tx == client_tx) else {
            return;
        };
        let status = resp.status().unwrap_or(500);
        let reason = match &resp.start {
            StartLine::Response { reason, .. } => reason.clone(),
            _ => String::new(),
        };
        let Some(a) = call.agent.as_mut() else { return };
        let (origin, other) = match relay.from {
            Side::Caller => (&mut call.caller, &mut a.leg),
            Side::Agent => (&mut a.leg, &mut call.caller),
        };
        let is_invite = relay.request.method() == Some(&Method::Invite);
        let mut ack = None;
        if is_invite && (200..300).contains(&status) {
            other.learn_target(&resp, true);
            let cseq = resp.cseq().map(|(n, _)| n).unwrap_or(other.local_cseq);
            let bytes = other
                .request(Method::Ack, local, Some(cseq), &mut self.ids)
                .to_bytes();
            ack = Some((other.flow, bytes));
        }
        let tag = tag_of(&origin.local);
        let mut r = response(&relay.request, status, Some(&reason), Some(&tag));
        if (200..300).contains(&status)
            && (is_invite || relay.request.method() == Some(&Method::Update))
        {
            r.headers.push(Header {
                name: "Contact".into(),
                value: origin.contact(local, "dasan"),
            });
        }
        copy_body(&resp, &mut r);
        if is_invite && (200..300).contains(&status) {
            origin.pending_2xx = Some(Pending2xx {
                bytes: r.to_bytes(),
                cseq: relay.request.cseq().map(|(n, _)| n).unwrap_or(0),
                next: now + t1,
                interval: t1.min(t2),
                give_up,
            });
        }
        if let Some((flow, bytes)) = ack {
            if let Some(t) = self.tx.client_mut(client_tx) {
                t.ack_2xx = Some(bytes.clone());
            }
            self.send(flow, bytes);
        }
        self.respond(now, server_tx, r);
        self.arm(TimerRef::Call(key));
    }
}

/// RFC 5168 2.2: the XML document that asks an encoder for a keyframe.
const PICTURE_FAST_UPDATE: &str = "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n<media_control>\r\n  <vc_primitive>\r\n    <to_encoder>\r\n      <picture_fast_update/>\r\n    </to_encoder>\r\n  </vc_primitive>\r\n</media_control>\r\n";

/// Whether an INFO is an RFC 5168 keyframe request.
fn is_picture_fast_update(msg: &Message) -> bool {
    msg.content_type().is_some_and(|c| {
        c.trim()
            .to_ascii_lowercase()
            .starts_with("application/media_control+xml")
    }) && std::str::from_utf8(&msg.body).is_ok_and(|b| b.contains("picture_fast_update"))
}
