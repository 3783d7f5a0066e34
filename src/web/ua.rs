//! The SIP user agent that stands in for one browser agent (sans-IO: messages in, messages
//! out, no sockets, no clock).
//!
//! The browser does not speak SIP; the engine's ACD only knows agents that register. So
//! each logged-in browser agent gets this small UA on a TCP connection to the engine's own
//! SIP listener: it registers with the agent's credentials (digest, as any softphone), is
//! offered calls by INVITE like a desk phone, and answers, hangs up, transfers (REFER) and
//! sends DTMF (INFO) when the agent clicks. To the ACD a browser agent is therefore exactly
//! a SIP agent — same states, skills, RONA, wrap-up and records — with no second code path.
//! TCP because the connection then is the registration: when the browser session ends, the
//! connection closes and the engine logs the agent out at once.

use crate::b2bua::leg::{contact_value, Leg};
use crate::sip::build::response;
use crate::sip::message::{Header, Message, NameAddr, StartLine};
use crate::sip::{Flow, Method};
use crate::util::random_token;
use std::net::SocketAddr;

/// What the engine's INVITE tells the agent's desktop about the call.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OfferInfo {
    /// The consultation record's id (for notes).
    pub record: String,
    /// The caller's number as the engine sent it (the session masks it per role).
    pub caller: String,
    pub queue: String,
    pub language: String,
    pub wait_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UaEvent {
    Registered,
    /// The registrar refused (401 twice: wrong password; 403; …).
    RegisterFailed(u16),
    Unregistered,
    /// An INVITE rings this agent.
    Offer(OfferInfo),
    /// Our 200 was ACKed: media flows to `rtp` (the engine's address for this leg) with `pt`,
    /// and video to `video` (address, payload type) when we answered the call's video.
    Connected {
        rtp: SocketAddr,
        pt: u8,
        video: Option<(SocketAddr, u8)>,
    },
    /// The call is over: `by` is "caller" (CANCEL before the answer, or a BYE) or "agent".
    Ended {
        by: &'static str,
    },
    /// A MESSAGE in one of the agent's text conversations.
    Chat(ChatLine),
    /// The engine took (`code` 2xx) or refused the agent's message `id` in `conv`.
    ChatResult {
        conv: String,
        id: String,
        code: u16,
    },
}

/// A MESSAGE from a conversation address (`sip:chat-<n>@engine`), as the engine labels it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChatLine {
    /// "chat-<n>".
    pub conv: String,
    /// `X-Dasan-Chat`: message, history, notice, closed.
    pub kind: String,
    /// For closed: who closed it (agent, engine, transfer, caller).
    pub by: String,
    pub record: String,
    pub queue: String,
    pub language: String,
    /// The sender as the engine named it (its number, or web-…).
    pub from: String,
    pub text: String,
}

/// The most a browser agent's video may use (b=AS of our answer), whatever the engine
/// offered: about what a browser sends a 640x480 picture with.
const BROWSER_VIDEO_KBPS: u32 = 1000;

/// Messages the agent sent that the engine has not answered yet (bounded: a desktop that
/// floods waits for answers).
const MAX_CHAT_PENDING: usize = 64;

struct ChatPending {
    conv: String,
    id: String,
    text: String,
    challenged: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    Ringing,
    Answered,
    Confirmed,
}

struct UaCall {
    invite: Message,
    tag: String,
    leg: Leg,
    state: CallState,
    /// The engine's RTP address and Opus payload type, from its offer.
    rtp: Option<(SocketAddr, u8)>,
    /// The video stream the engine offered (a video call), and whether we took it.
    video: Option<crate::media::sdp::VideoNeg>,
    video_answered: bool,
    /// Our 200 (re-sent if the engine retransmits its INVITE).
    ok: Option<Message>,
}

pub struct AgentUa {
    agent: String,
    password: String,
    /// Our end of the TCP connection (Via, Contact).
    local: crate::sip::Locals,
    engine: SocketAddr,
    flow: Flow,
    reg_call_id: String,
    reg_cseq: u32,
    auth_tries: u32,
    expires: u32,
    call: Option<UaCall>,
    /// The Opus payload type the engine offered us last (for our answer).
    pub opus_pt: u8,
    ids: crate::sip::build::Ids,
    /// Our MESSAGEs by Call-ID, until the engine answers.
    chat_pending: std::collections::HashMap<String, ChatPending>,
}

impl AgentUa {
    pub fn new(
        agent: &str,
        password: &str,
        local: SocketAddr,
        engine: SocketAddr,
        conn: u64,
    ) -> AgentUa {
        AgentUa {
            agent: agent.to_string(),
            password: password.to_string(),
            local: crate::sip::Locals::plain(local),
            engine,
            flow: Flow {
                transport: crate::sip::Transport::Tcp,
                remote: engine,
                conn,
            },
            reg_call_id: format!("{}@dasan-web", random_token(16)),
            reg_cseq: 0,
            auth_tries: 0,
            expires: 300,
            call: None,
            opus_pt: 111,
            ids: crate::sip::build::Ids::from_seed(crate::util::entropy()),
            chat_pending: std::collections::HashMap::new(),
        }
    }

    fn contact(&self) -> String {
        // A user part of its own, so a desk phone registered as the same agent stays apart.
        contact_value(self.flow, self.local, &format!("{}-web", self.agent))
    }

    /// REGISTER (Expires 0 unregisters), with credentials answering `challenge` if given.
    pub fn register(&mut self, expires: u32, challenge: Option<&str>) -> Message {
        self.expires = expires;
        self.reg_cseq += 1;
        let uri = format!("sip:{}", self.engine);
        let aor = format!("<sip:{}@{}>", self.agent, self.engine);
        let mut m = Message {
            start: StartLine::Request {
                method: Method::Register,
                uri: uri.clone(),
            },
            headers: Vec::new(),
            body: bytes::Bytes::new(),
        };
        m.set_header(
            "Via",
            crate::b2bua::leg::via_value(self.flow, self.local, &mut self.ids),
        );
        m.set_header("Max-Forwards", "70");
        m.set_header("From", format!("{aor};tag={}", random_token(8)));
        m.set_header("To", aor);
        m.set_header("Call-ID", self.reg_call_id.clone());
        m.set_header("CSeq", format!("{} REGISTER", self.reg_cseq));
        m.set_header("Contact", self.contact());
        m.set_header("Expires", expires.to_string());
        if let Some(ch) = challenge {
            if let Some(auth) = crate::registrar::digest::authorization(
                ch,
                &self.agent,
                &self.password,
                "REGISTER",
                &uri,
                &random_token(8),
            ) {
                m.set_header("Authorization", auth);
            }
        }
        m.set_header("Content-Length", "0");
        m
    }

    pub fn in_call(&self) -> bool {
        self.call.is_some()
    }

    /// One message from the engine: the messages to send back and what happened.
    pub fn on_message(&mut self, msg: &Message) -> (Vec<Message>, Vec<UaEvent>) {
        let mut out = Vec::new();
        let mut ev = Vec::new();
        match msg.method().cloned() {
            None => self.on_response(msg, &mut out, &mut ev),
            Some(Method::Invite) => self.on_invite(msg, &mut out, &mut ev),
            Some(Method::Ack) => {
                if let Some(c) = self.call.as_mut() {
                    if c.state == CallState::Answered && msg.call_id() == c.leg.call_id {
                        c.state = CallState::Confirmed;
                        if let Some((rtp, pt)) = c.rtp {
                            let video = c
                                .video
                                .as_ref()
                                .filter(|_| c.video_answered)
                                .map(|v| (SocketAddr::new(v.remote.0, v.remote.1), v.pt));
                            ev.push(UaEvent::Connected { rtp, pt, video });
                        }
                    }
                }
            }
            Some(Method::Cancel) => {
                out.push(response(msg, 200, None, None));
                if let Some(c) = self.call.take_if(|c| {
                    c.state == CallState::Ringing && c.invite.call_id() == msg.call_id()
                }) {
                    out.push(response(&c.invite, 487, None, Some(&c.tag)));
                    ev.push(UaEvent::Ended { by: "caller" });
                }
            }
            Some(Method::Bye) => {
                let ours = self
                    .call
                    .as_ref()
                    .is_some_and(|c| c.leg.call_id == msg.call_id());
                out.push(response(msg, if ours { 200 } else { 481 }, None, None));
                if ours {
                    self.call = None;
                    ev.push(UaEvent::Ended { by: "caller" });
                }
            }
            Some(Method::Message) => {
                out.push(response(msg, 200, None, Some(&random_token(8))));
                ev.extend(chat_line(msg).map(UaEvent::Chat));
            }
            // NOTIFY (a transfer's outcome), OPTIONS, INFO, UPDATE: acknowledged.
            Some(_) => out.push(response(msg, 200, None, None)),
        }
        (out, ev)
    }

    fn on_response(&mut self, msg: &Message, out: &mut Vec<Message>, ev: &mut Vec<UaEvent>) {
        let Some(status) = msg.status() else { return };
        if msg.cseq().is_some_and(|(_, m)| m == Method::Message) {
            self.on_chat_response(msg, status, out, ev);
            return;
        }
        let is_register = msg
            .cseq()
            .is_some_and(|(n, m)| m == Method::Register && n == self.reg_cseq)
            && msg.call_id() == self.reg_call_id;
        if !is_register || status < 200 {
            return; // responses to BYE, REFER, INFO: nothing to do on loopback TCP
        }
        match status {
            200..=299 if self.expires == 0 => ev.push(UaEvent::Unregistered),
            200..=299 => {
                self.auth_tries = 0;
                ev.push(UaEvent::Registered);
            }
            401 if self.auth_tries == 0 => {
                self.auth_tries += 1;
                let ch = msg.header("WWW-Authenticate").unwrap_or("").to_string();
                let expires = self.expires;
                out.push(self.register(expires, Some(&ch)));
            }
            _ => {
                self.auth_tries = 0;
                ev.push(UaEvent::RegisterFailed(status));
            }
        }
    }

    fn on_chat_response(
        &mut self,
        msg: &Message,
        status: u16,
        out: &mut Vec<Message>,
        ev: &mut Vec<UaEvent>,
    ) {
        if status < 200 {
            return;
        }
        let Some(p) = self.chat_pending.remove(msg.call_id()) else {
            return;
        };
        if status == 407 && !p.challenged {
            let ch = msg.header("Proxy-Authenticate").unwrap_or("").to_string();
            let again = self.chat_message(&p.conv, &p.text, Some(&ch));
            self.chat_pending.insert(
                again.call_id().to_string(),
                ChatPending {
                    challenged: true,
                    ..p
                },
            );
            out.push(again);
            return;
        }
        ev.push(UaEvent::ChatResult {
            conv: p.conv,
            id: p.id,
            code: status,
        });
    }

    /// The agent writes `text` in conversation `conv` ("chat-<n>"); `id` comes back in
    /// the [`UaEvent::ChatResult`]. None: `conv` is not a conversation address, or too
    /// many messages wait for an answer.
    pub fn chat_send(&mut self, conv: &str, text: &str, id: &str) -> Option<Message> {
        let n = conv.strip_prefix("chat-")?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.len() > 19 {
            return None;
        }
        if self.chat_pending.len() >= MAX_CHAT_PENDING {
            return None;
        }
        let m = self.chat_message(conv, text, None);
        self.chat_pending.insert(
            m.call_id().to_string(),
            ChatPending {
                conv: conv.to_string(),
                id: id.to_string(),
                text: text.to_string(),
                challenged: false,
            },
        );
        Some(m)
    }

    fn chat_message(&mut self, conv: &str, text: &str, challenge: Option<&str>) -> Message {
        let uri = format!("sip:{conv}@{}", self.engine);
        let mut m = Message {
            start: StartLine::Request {
                method: Method::Message,
                uri: uri.clone(),
            },
            headers: Vec::new(),
            body: bytes::Bytes::from(text.to_string()),
        };
        m.set_header(
            "Via",
            crate::b2bua::leg::via_value(self.flow, self.local, &mut self.ids),
        );
        m.set_header("Max-Forwards", "70");
        m.set_header(
            "From",
            format!(
                "<sip:{}@{}>;tag={}",
                self.agent,
                self.engine,
                random_token(8)
            ),
        );
        m.set_header("To", format!("<{uri}>"));
        m.set_header("Call-ID", format!("{}@dasan-web", random_token(16)));
        m.set_header("CSeq", "1 MESSAGE");
        if let Some(ch) = challenge {
            if let Some(auth) = crate::registrar::digest::authorization(
                ch,
                &self.agent,
                &self.password,
                "MESSAGE",
                &uri,
                &random_token(8),
            ) {
                m.set_header("Proxy-Authorization", auth);
            }
        }
        m.set_header("Content-Type", "text/plain;charset=UTF-8");
        m.set_header("Content-Length", m.body.len().to_string());
        m
    }

    fn on_invite(&mut self, msg: &Message, out: &mut Vec<Message>, ev: &mut Vec<UaEvent>) {
        let contact = self.contact();
        if let Some(c) = self.call.as_mut() {
            if c.invite.call_id() != msg.call_id() {
                out.push(response(msg, 486, None, Some(&random_token(8))));
            } else if msg.to_tag().is_none() {
                // The engine retransmitted its INVITE: our last response again.
                let again =
                    c.ok.clone()
                        .unwrap_or_else(|| response(msg, 180, None, Some(&c.tag)));
                out.push(again);
            } else {
                // A re-INVITE (hold, a refresh): our session unchanged.
                let mut ok = response(msg, 200, None, Some(&c.tag));
                if let Some(prev) = &c.ok {
                    ok.body = prev.body.clone();
                    ok.set_header("Content-Type", "application/sdp");
                }
                ok.set_header("Contact", contact);
                out.push(ok);
            }
            return;
        }
        let offer = std::str::from_utf8(&msg.body)
            .ok()
            .and_then(|t| crate::media::sdp::Sdp::parse(t).ok());
        let rtp = offer.as_ref().and_then(|o| {
            let n = crate::media::sdp::negotiate(o, &[crate::media::sdp::Codec::Opus]).ok()?;
            let (ip, port) = n.remote;
            Some((SocketAddr::new(ip, port), n.pt))
        });
        let Some((_, pt)) = rtp else {
            // The bridge speaks Opus to the engine (which transcodes for G.711 trunks).
            out.push(response(msg, 488, None, Some(&random_token(8))));
            return;
        };
        let video = offer.as_ref().and_then(crate::media::sdp::negotiate_video);
        self.opus_pt = pt;
        let tag = random_token(10);
        let mut leg = Leg {
            flow: self.flow,
            call_id: msg.call_id().to_string(),
            local: format!("{};tag={tag}", msg.header("To").unwrap_or("")),
            remote: msg.header("From").unwrap_or("").to_string(),
            remote_target: msg.request_uri().unwrap_or("").to_string(),
            route_set: Vec::new(),
            local_cseq: 0,
            pending_2xx: None,
            sips: false,
        };
        leg.learn_target(msg, false);
        let from = NameAddr::parse(msg.header("From").unwrap_or(""));
        let info = OfferInfo {
            record: msg.header("X-Dasan-Record").unwrap_or("").to_string(),
            caller: crate::sip::uri::dialled_number(from.uri).unwrap_or_default(),
            queue: msg.header("X-Dasan-Queue").unwrap_or("").to_string(),
            language: msg.header("X-Dasan-Language").unwrap_or("").to_string(),
            wait_ms: msg
                .header("X-Dasan-Wait-Ms")
                .and_then(|w| w.parse().ok())
                .unwrap_or(0),
        };
        let mut ringing = response(msg, 180, None, Some(&tag));
        ringing.set_header("Contact", self.contact());
        out.push(ringing);
        self.call = Some(UaCall {
            invite: msg.clone(),
            tag,
            leg,
            state: CallState::Ringing,
            rtp,
            video,
            video_answered: false,
            ok: None,
        });
        ev.push(UaEvent::Offer(info));
    }

    /// The bit rate the call's video may use from us (our answer's b=AS, in kbps), when we
    /// took the call's video: the browser's camera is held to it.
    pub fn video_kbps(&self) -> Option<u32> {
        let c = self.call.as_ref().filter(|c| c.video_answered)?;
        let v = c.video.as_ref()?;
        Some(v.kbps.unwrap_or(BROWSER_VIDEO_KBPS).min(BROWSER_VIDEO_KBPS))
    }

    /// Whether the ringing call is a video call (the engine offered a video stream).
    pub fn offered_video(&self) -> Option<crate::media::sdp::VideoCodec> {
        self.call.as_ref()?.video.as_ref().map(|v| v.codec)
    }

    /// The agent answers: 200 with our SDP (Opus on `rtp_port` of `rtp_ip`). `video`: the
    /// browser's video codec and our video port; the call's video is taken when the engine
    /// offered that same codec, else refused (port 0) and the call is audio only.
    pub fn answer(
        &mut self,
        rtp_ip: std::net::IpAddr,
        rtp_port: u16,
        video: Option<(crate::media::sdp::VideoCodec, u16)>,
    ) -> Option<Message> {
        let contact = self.contact();
        let c = self
            .call
            .as_mut()
            .filter(|c| c.state == CallState::Ringing)?;
        let (_, pt) = c.rtp?;
        let audio = crate::media::sdp::build(
            rand::random::<u32>() as u64,
            1,
            rtp_ip,
            rtp_port,
            &[(crate::media::sdp::Codec::Opus, pt)],
            None,
            crate::media::sdp::Direction::SendRecv,
        );
        // The engine's offer's codec, payload type and fmtp, as the engine relays them.
        let section = match (&c.video, video) {
            (Some(offered), Some((codec, port))) if offered.codec == codec => {
                Some(crate::media::sdp::video_section(
                    port,
                    offered,
                    BROWSER_VIDEO_KBPS,
                    crate::media::sdp::Direction::SendRecv,
                ))
            }
            _ => None,
        };
        c.video_answered = section.is_some();
        let sdp = match std::str::from_utf8(&c.invite.body)
            .ok()
            .and_then(|t| crate::media::sdp::Sdp::parse(t).ok())
        {
            // One m-line per offered stream, in the offer's order (RFC 3264).
            Some(offer) => crate::media::sdp::answer_streams(&offer, &audio, section.as_deref()),
            None => audio,
        };
        let mut ok = response(&c.invite, 200, None, Some(&c.tag));
        ok.set_header("Contact", contact);
        ok.set_header("Content-Type", "application/sdp");
        ok.body = bytes::Bytes::from(sdp);
        c.state = CallState::Answered;
        c.ok = Some(ok.clone());
        Some(ok)
    }

    /// The agent hangs up (BYE) or declines a ringing call (486: the engine moves on).
    pub fn hang_up(&mut self) -> Option<Message> {
        let c = self.call.take()?;
        Some(match c.state {
            CallState::Ringing => response(&c.invite, 486, None, Some(&c.tag)),
            _ => {
                let mut leg = c.leg;
                leg.request(Method::Bye, self.local, None, &mut self.ids)
            }
        })
    }

    /// A key from the desktop's keypad, to the engine as INFO (application/dtmf-relay).
    pub fn dtmf(&mut self, digit: char) -> Option<Message> {
        let local = self.local;
        let c = self
            .call
            .as_mut()
            .filter(|c| c.state == CallState::Confirmed)?;
        let mut info = c.leg.request(Method::Info, local, None, &mut self.ids);
        info.set_header("Content-Type", "application/dtmf-relay");
        info.body = bytes::Bytes::from(format!("Signal={digit}\r\nDuration=160\r\n"));
        Some(info)
    }

    /// Blind transfer: REFER to a queue name or a number.
    pub fn refer(&mut self, target: &str) -> Option<Message> {
        let (local, engine) = (self.local, self.engine);
        let contact = self.contact();
        let c = self
            .call
            .as_mut()
            .filter(|c| c.state == CallState::Confirmed)?;
        let mut refer = c.leg.request(Method::Refer, local, None, &mut self.ids);
        refer.headers.push(Header {
            name: "Refer-To".into(),
            value: format!("<sip:{target}@{engine}>"),
        });
        refer.set_header("Contact", contact);
        Some(refer)
    }
}

/// What a MESSAGE from the engine says, if it comes from a conversation address.
fn chat_line(msg: &Message) -> Option<ChatLine> {
    let from = NameAddr::parse(msg.header("From")?);
    let conv = crate::sip::uri::parse_sip_uri(from.uri)?.user?;
    if !conv.starts_with("chat-") {
        return None;
    }
    let kind_header = msg.header("X-Dasan-Chat").unwrap_or("message");
    let mut parts = kind_header.split(';').map(str::trim);
    let kind = parts.next().unwrap_or("message").to_string();
    let by = parts
        .find_map(|p| p.strip_prefix("by="))
        .unwrap_or("")
        .to_string();
    let header = |n: &str| msg.header(n).unwrap_or("").to_string();
    Some(ChatLine {
        conv,
        kind,
        by,
        record: header("X-Dasan-Record"),
        queue: header("X-Dasan-Queue"),
        language: header("X-Dasan-Language"),
        from: from
            .display
            .map(|d| d.trim_matches('"').to_string())
            .unwrap_or_default(),
        text: String::from_utf8_lossy(&msg.body).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ua() -> AgentUa {
        AgentUa::new(
            "1001",
            "pw",
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:5060".parse().unwrap(),
            1,
        )
    }

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30002 RTP/AVP 0 8 111 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n";

    fn invite(call_id: &str, sdp: &str) -> Message {
        let raw = format!("INVITE sip:1001-web@127.0.0.1:40000;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK{call_id}\r\nFrom: \"Kim\" <sip:01012345678@127.0.0.1>;tag=e1\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:dasan@127.0.0.1:5060;transport=tcp>\r\nX-Dasan-Record: rec1\r\nX-Dasan-Queue: general\r\nX-Dasan-Language: ko\r\nX-Dasan-Wait-Ms: 1500\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}", sdp.len());
        Message::parse(raw.as_bytes()).unwrap()
    }

    #[test]
    fn registers_with_digest_then_reports_a_wrong_password() {
        let mut ua = ua();
        let reg = ua.register(300, None);
        assert_eq!(reg.header("Expires"), Some("300"));
        assert!(reg
            .header("Contact")
            .unwrap()
            .contains("1001-web@127.0.0.1:40000;transport=tcp"));
        let mut ch = response(&reg, 401, None, Some("x"));
        ch.set_header(
            "WWW-Authenticate",
            "Digest realm=\"dasan\", nonce=\"abc\", qop=\"auth\", algorithm=MD5",
        );
        let (out, ev) = ua.on_message(&ch);
        assert!(ev.is_empty());
        assert!(out[0]
            .header("Authorization")
            .unwrap()
            .starts_with("Digest username=\"1001\""));
        let again = response(&out[0], 401, None, Some("x"));
        let (out, ev) = ua.on_message(&again);
        assert!(out.is_empty(), "no endless retry");
        assert_eq!(ev, vec![UaEvent::RegisterFailed(401)]);
    }

    #[test]
    fn offer_answer_ack_bye_and_a_second_call_is_busy() {
        let mut ua = ua();
        let (out, ev) = ua.on_message(&invite("c1", OFFER));
        assert_eq!(out[0].status(), Some(180));
        assert_eq!(
            ev,
            vec![UaEvent::Offer(OfferInfo {
                record: "rec1".into(),
                caller: "01012345678".into(),
                queue: "general".into(),
                language: "ko".into(),
                wait_ms: 1500
            })]
        );
        let (out, _) = ua.on_message(&invite("c2", OFFER));
        assert_eq!(out[0].status(), Some(486));
        let ok = ua
            .answer("127.0.0.1".parse().unwrap(), 41000, None)
            .unwrap();
        let body = std::str::from_utf8(&ok.body).unwrap();
        assert!(body.contains("m=audio 41000 RTP/AVP 111"), "{body}");
        let ack = Message::parse(b"ACK sip:1001-web@127.0.0.1:40000 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKa\r\nFrom: <sip:01012345678@127.0.0.1>;tag=e1\r\nTo: <sip:1001@127.0.0.1>;tag=x\r\nCall-ID: c1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n").unwrap();
        let (_, ev) = ua.on_message(&ack);
        assert_eq!(
            ev,
            vec![UaEvent::Connected {
                rtp: "127.0.0.1:30002".parse().unwrap(),
                pt: 111,
                video: None
            }]
        );
        let info = ua.dtmf('5').unwrap();
        assert_eq!(&info.body[..], b"Signal=5\r\nDuration=160\r\n");
        let refer = ua.refer("en").unwrap();
        assert_eq!(refer.header("Refer-To"), Some("<sip:en@127.0.0.1:5060>"));
        let bye = ua.hang_up().unwrap();
        assert_eq!(bye.method(), Some(&Method::Bye));
        assert_eq!(
            bye.request_uri(),
            Some("sip:dasan@127.0.0.1:5060;transport=tcp")
        );
        assert!(!ua.in_call());
    }

    #[test]
    fn a_video_call_is_answered_with_video_only_in_the_browsers_codec() {
        use crate::media::sdp::VideoCodec;
        let video = format!(
            "{OFFER}m=video 30004 RTP/AVP 100\r\na=rtpmap:100 VP8/90000\r\na=rtcp-fb:100 nack pli\r\na=sendrecv\r\n"
        );
        let ack = |call: &str| {
            Message::parse(format!("ACK sip:1001-web@127.0.0.1:40000 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKa\r\nFrom: <sip:01012345678@127.0.0.1>;tag=e1\r\nTo: <sip:1001@127.0.0.1>;tag=x\r\nCall-ID: {call}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n").as_bytes()).unwrap()
        };
        let ip = "127.0.0.1".parse().unwrap();
        // The browser sends VP8: the call's video is taken on our video port.
        let mut ua = ua();
        ua.on_message(&invite("v1", &video));
        assert_eq!(ua.offered_video(), Some(VideoCodec::Vp8));
        let ok = ua
            .answer(ip, 41000, Some((VideoCodec::Vp8, 41002)))
            .unwrap();
        let body = std::str::from_utf8(&ok.body).unwrap();
        assert!(body.contains("m=audio 41000 RTP/AVP 111"), "{body}");
        assert!(body.contains("m=video 41002 RTP/AVP 100\r\n"), "{body}");
        assert!(body.contains("a=rtpmap:100 VP8/90000"), "{body}");
        assert_eq!(ua.video_kbps(), Some(BROWSER_VIDEO_KBPS), "no b=AS offered");
        let (_, ev) = ua.on_message(&ack("v1"));
        assert_eq!(
            ev,
            vec![UaEvent::Connected {
                rtp: "127.0.0.1:30002".parse().unwrap(),
                pt: 111,
                video: Some(("127.0.0.1:30004".parse().unwrap(), 100))
            }]
        );
        // A browser on H.264 (or without a camera's codec): the video is refused, the
        // audio answered.
        for theirs in [Some((VideoCodec::H264, 41002)), None] {
            let mut ua = super::tests::ua();
            ua.on_message(&invite("v2", &video));
            let ok = ua.answer(ip, 41000, theirs).unwrap();
            let body = std::str::from_utf8(&ok.body).unwrap();
            assert!(body.contains("m=audio 41000 RTP/AVP 111"), "{body}");
            assert!(body.contains("m=video 0 RTP/AVP 100"), "{body}");
            let (_, ev) = ua.on_message(&ack("v2"));
            assert!(
                matches!(ev[..], [UaEvent::Connected { video: None, .. }]),
                "{ev:?}"
            );
        }
    }

    #[test]
    fn cancel_while_ringing_and_an_offer_without_opus() {
        let mut ua = ua();
        ua.on_message(&invite("c1", OFFER));
        let cancel = crate::sip::build::cancel_for(&invite("c1", OFFER));
        let (out, ev) = ua.on_message(&cancel);
        assert_eq!(
            out.iter().filter_map(|m| m.status()).collect::<Vec<_>>(),
            vec![200, 487]
        );
        assert_eq!(ev, vec![UaEvent::Ended { by: "caller" }]);
        let g711 = OFFER
            .replace(" 111 101", " 101")
            .replace("a=rtpmap:111 opus/48000/2\r\n", "");
        let (out, ev) = ua.on_message(&invite("c3", &g711));
        assert_eq!(out[0].status(), Some(488));
        assert!(ev.is_empty());
    }

    #[test]
    fn chat_lines_come_in_and_replies_go_out_with_digest() {
        let mut ua = ua();
        let raw = "MESSAGE sip:1001-web@127.0.0.1:40000;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKm1\r\nFrom: \"01011112222\" <sip:chat-7@127.0.0.1>;tag=c\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: m1\r\nCSeq: 1 MESSAGE\r\nX-Dasan-Chat: message\r\nX-Dasan-Record: rec7\r\nX-Dasan-Queue: general\r\nX-Dasan-Language: ko\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: 7\r\n\r\n안녕?";
        let (out, ev) = ua.on_message(&Message::parse(raw.as_bytes()).unwrap());
        assert_eq!(out[0].status(), Some(200));
        let UaEvent::Chat(line) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(
            (line.conv.as_str(), line.kind.as_str(), line.from.as_str()),
            ("chat-7", "message", "01011112222")
        );
        assert_eq!(
            (line.record.as_str(), line.text.as_str()),
            ("rec7", "안녕?")
        );
        let closed = raw.replace("X-Dasan-Chat: message", "X-Dasan-Chat: closed;by=engine");
        let (_, ev) = ua.on_message(&Message::parse(closed.as_bytes()).unwrap());
        let UaEvent::Chat(line) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!((line.kind.as_str(), line.by.as_str()), ("closed", "engine"));

        assert!(
            ua.chat_send("chat-x", "hi", "m1").is_none(),
            "not a conversation"
        );
        let m = ua.chat_send("chat-7", "네", "m1").unwrap();
        assert_eq!(m.request_uri(), Some("sip:chat-7@127.0.0.1:5060"));
        let mut ch = response(&m, 407, None, Some("x"));
        ch.set_header(
            "Proxy-Authenticate",
            "Digest realm=\"dasan\", nonce=\"abc\", qop=\"auth\", algorithm=MD5",
        );
        let (out, ev) = ua.on_message(&ch);
        assert!(ev.is_empty());
        assert!(out[0]
            .header("Proxy-Authorization")
            .unwrap()
            .contains("uri=\"sip:chat-7@127.0.0.1:5060\""));
        assert_eq!(&out[0].body[..], "네".as_bytes());
        let (_, ev) = ua.on_message(&response(&out[0], 202, None, Some("y")));
        assert_eq!(
            ev,
            vec![UaEvent::ChatResult {
                conv: "chat-7".into(),
                id: "m1".into(),
                code: 202
            }]
        );
        // A second challenge is a refusal, not a loop.
        let m = ua.chat_send("chat-7", "again", "m2").unwrap();
        let (out, _) = ua.on_message(&ch_for(&m));
        let (out, ev) = ua.on_message(&ch_for(&out[0]));
        assert!(out.is_empty());
        assert_eq!(
            ev,
            vec![UaEvent::ChatResult {
                conv: "chat-7".into(),
                id: "m2".into(),
                code: 407
            }]
        );
    }

    fn ch_for(m: &Message) -> Message {
        let mut ch = response(m, 407, None, Some("x"));
        ch.set_header(
            "Proxy-Authenticate",
            "Digest realm=\"dasan\", nonce=\"abc\", qop=\"auth\", algorithm=MD5",
        );
        ch
    }
}
