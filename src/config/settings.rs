//! Process settings: the `[sip]`, `[http]`, `[data]`, `[media]`, `[runtime]`, `[clock]` and
//! `[outbound]` tables, read by the drivers as well as the engine. Every one has a default,
//! and CLI overrides (`--sip-listen`, …) apply to these after loading.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use toml::Spanned;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Threads that run SIP, media and the browser legs. Default: one per CPU the engine
    /// may run on (its affinity mask, so `taskset -c 0 dasan run` gets one). 1..=1024.
    pub worker_threads: Option<usize>,
}

impl RuntimeConfig {
    pub fn threads(&self) -> usize {
        self.worker_threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Anchor calls' RTP in the engine (our SDP on both legs, 183 early media, digits,
    /// menus, recording). Default true. With false the engine relays SDP end to end:
    /// signalling only, no menus (routes to a menu are then a config error).
    pub anchor: bool,
    /// RTP port range, inclusive. Each call takes 4 ports (RTP and RTCP per leg), so the
    /// range bounds concurrent anchored calls: 20000-29999 carries 2,500. When it runs
    /// out, new calls get 503. Default 20000-29999.
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    /// UDP ports for browser agents' WebRTC, inclusive: each logged-in browser takes two
    /// (ICE, and the leg's RTP towards the media plane) and a third when its desk offers
    /// video (the leg's video towards the video relay), so 30000-31999 carries 666. A
    /// range of their own, away from the RTP range and the kernel's ephemeral ports, so
    /// the two never take each other's ports and a firewall can open exactly these.
    /// Default 30000-31999.
    pub webrtc_port_min: u16,
    pub webrtc_port_max: u16,
    /// Seconds without RTP from a leg before the call is ended. Default 30.
    pub media_timeout_s: u32,
    /// Address for RTP and in SDP; defaults to the SIP address.
    pub ip: Option<std::net::IpAddr>,
    /// The public address in front of `ip` (1:1 NAT, e.g. a cloud machine's elastic IP):
    /// written into SDP instead of `ip`, and offered to browsers as an ICE candidate beside
    /// the local one. Sockets still bind `ip`.
    pub advertise: Option<std::net::IpAddr>,
    /// A directory of extra prompts (16-bit mono WAV at 8, 16 or 48 kHz), named by file
    /// stem; they add to, and override, the prompts built into the binary.
    pub prompts_dir: Option<PathBuf>,
    /// Forward bridged plain RTP that needs only a header rewrite (same codec, not
    /// recorded, no SRTP) in the kernel: an eBPF program on each interface's tc ingress,
    /// so such packets never wake the relay. Needs root (CAP_BPF and CAP_NET_ADMIN) and a
    /// kernel with tcx (6.6 or later); without them the engine warns and relays in user
    /// space. Default false.
    pub kernel_forward: bool,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            anchor: true,
            rtp_port_min: 20000,
            rtp_port_max: 29999,
            webrtc_port_min: 30000,
            webrtc_port_max: 31999,
            media_timeout_s: 30,
            ip: None,
            advertise: None,
            prompts_dir: None,
            kernel_forward: false,
        }
    }
}

/// `[routing]`: how the router chooses across queues.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Which waiting call an agent who becomes free takes first, among the queues it
    /// serves: "priority" (the queue with the highest `priority`; the default) or
    /// "scarcest-skill" (the queue whose skill the fewest ready agents have).
    pub free_agent_order: crate::acd::FreeAgentOrder,
}

/// `[video]`: sign-language video calls, relayed without transcoding.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoConfig {
    /// The most bandwidth a video stream may ask for (`b=AS`, kbit/s), each way. Default
    /// 1500.
    pub max_kbps: u32,
    /// Show a waiting caller a picture (early media video) until the agent's arrives.
    /// Default true.
    pub waiting_picture: bool,
    /// The waiting clip for VP8 callers (an IVF file starting on a keyframe) and for H.264
    /// callers (Annex B, Constrained Baseline, starting with SPS, PPS and an IDR). Default:
    /// the built-in "please wait" loop (scripts/make-waiting-clip.sh).
    pub waiting_vp8: Option<std::path::PathBuf>,
    pub waiting_h264: Option<std::path::PathBuf>,
    /// The clips' frame rate. Default 10.
    pub waiting_fps: u32,
}

impl Default for VideoConfig {
    fn default() -> Self {
        VideoConfig {
            max_kbps: 1500,
            waiting_picture: true,
            waiting_vp8: None,
            waiting_h264: None,
            waiting_fps: 10,
        }
    }
}

/// The scripts `text.scripts` may name, in the order `b2bua::text::script_of` counts them.
pub const TEXT_SCRIPTS: [&str; 6] = ["hangul", "latin", "vietnamese", "han", "kana", "cyrillic"];

/// `[text]`: conversations by SIP MESSAGE (RFC 3428, page mode) with the queues that
/// take `channels = ["text"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextConfig {
    /// A conversation with no message either way for this long is closed. Default 1800.
    pub idle_close_s: u32,
    /// Sent once to a sender whose conversation waits for a counsellor (zero-ARS: no bot
    /// answers, only this acknowledgement). Empty: nothing is sent.
    pub waiting_message: String,
    /// Sent when a conversation waited `max_wait_s` for a counsellor and is closed.
    pub timeout_message: String,
    /// The same two, by the language (skill) of the conversation's queue: the sender is
    /// answered in the language it wrote in. A language not here gets the two above.
    /// Default: ko, en, zh, ja, vi, mn.
    pub waiting_messages: std::collections::BTreeMap<String, String>,
    pub timeout_messages: std::collections::BTreeMap<String, String>,
    /// What an agent's phone sends to close its conversation. Default "*23".
    pub close_code: String,
    /// A reply over UDP longer than this many bytes is sent as several MESSAGEs, split at
    /// character boundaries. Default 1300.
    pub max_message_bytes: usize,
    /// Messages one sender may send per minute; more get 429 and are not recorded.
    /// Default 30.
    pub max_messages_per_minute: u32,
    /// What an agent's phone sends, followed by a queue's name, to hand its conversation
    /// to that queue with its history ("*24 en"). Default "*24".
    pub transfer_code: String,
    /// Sent to a sender whose message was not text (a picture, a file: refused with 415).
    /// Empty: nothing is sent.
    pub unsupported_message: String,
    /// For a service number whose route is a menu (120 with its 120+9 menu): the script of
    /// a new conversation's first message picks the queue whose skill is the language
    /// mapped here (`hangul`, `latin`, `vietnamese`, `han`, `kana`, `cyrillic`). A hint,
    /// never a block: no such queue taking text, or no letters, and the menu's own queue
    /// takes it. Default hangul→ko, latin→en, vietnamese→vi, han→zh, kana→ja, cyrillic→mn.
    pub scripts: std::collections::BTreeMap<String, String>,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            idle_close_s: 1800,
            waiting_message: "상담사가 곧 답변드리겠습니다. A counsellor will reply shortly.".into(),
            timeout_message:
                "지금은 모든 상담사가 상담 중입니다. 잠시 후 다시 보내 주세요. All counsellors are busy: please write again later."
                    .into(),
            waiting_messages: [
                ("ko", "상담사가 곧 답변드리겠습니다."),
                ("en", "A counsellor will reply shortly."),
                ("zh", "咨询员将很快回复您。"),
                ("ja", "まもなく相談員が返信いたします。"),
                ("vi", "Tư vấn viên sẽ trả lời bạn trong giây lát."),
                ("mn", "Зөвлөх удахгүй хариулна."),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            timeout_messages: [
                ("ko", "지금은 모든 상담사가 상담 중입니다. 잠시 후 다시 보내 주세요."),
                ("en", "All counsellors are busy: please write again later."),
                ("zh", "所有咨询员都在忙，请稍后再发送。"),
                ("ja", "ただいま相談員が全員対応中です。しばらくしてから再度お送りください。"),
                ("vi", "Tất cả tư vấn viên đều đang bận, vui lòng gửi lại sau."),
                ("mn", "Бүх зөвлөх завгүй байна, дараа дахин бичнэ үү."),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            close_code: "*23".into(),
            max_message_bytes: 1300,
            max_messages_per_minute: 30,
            transfer_code: "*24".into(),
            unsupported_message:
                "문자만 받을 수 있습니다. 내용을 글로 보내 주세요. Only text can be read here: please write your question."
                    .into(),
            scripts: [
                ("hangul", "ko"),
                ("latin", "en"),
                ("vietnamese", "vi"),
                ("han", "zh"),
                ("kana", "ja"),
                ("cyrillic", "mn"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        }
    }
}

/// `[webrtc]`: what browsers behind NAT need to reach the engine's media.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebRtcConfig {
    /// STUN and TURN servers handed to each agent's browser at login (its
    /// `RTCPeerConnection`'s `iceServers`). The engine's own side needs none: its address
    /// is known (`media.ip`, and `media.advertise` behind 1:1 NAT).
    pub ice_servers: Vec<IceServerConfig>,
}

/// One `iceServers` entry (W3C WebRTC `RTCIceServer`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IceServerConfig {
    /// `stun:`, `stuns:`, `turn:` or `turns:` URLs (RFC 7064, RFC 7065).
    pub urls: Vec<String>,
    /// For TURN: the long-term credential every logged-in browser receives (use a TURN
    /// account for this purpose only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP and TCP listen address. Default 127.0.0.1:5060.
    pub listen: SocketAddr,
    /// Address written into Via and Contact; defaults to `listen`. Required when `listen`
    /// is a wildcard address.
    pub advertise: Option<SocketAddr>,
    /// Digest realm for agent registration. Default "dasan".
    pub realm: String,
    /// RFC 3261 T1 in milliseconds. Default 500.
    pub t1_ms: u64,
    /// RFC 3261 T2 in milliseconds. Default 4000.
    pub t2_ms: u64,
    /// RFC 3261 T4 in milliseconds. Default 5000.
    pub t4_ms: u64,
    /// Calls held at once before new ones get 503. Default 50000.
    pub max_calls: usize,
    /// Longest registration accepted, seconds. Default 3600.
    pub max_expires_s: u32,
    /// Shortest registration accepted (shorter gets 423), seconds. Default 30.
    pub min_expires_s: u32,
    /// Retry-After seconds sent with 503 when shedding load. Default 5.
    pub retry_after_s: u32,
    /// Kernel socket buffer for the UDP socket, bytes. Default 8 MiB.
    pub udp_buffer_bytes: usize,
    /// Digest algorithms challenged on REGISTER, one WWW-Authenticate each, in this order
    /// (RFC 8760). Default ["MD5"]: baresip 1.0 rejects a whole 401 that lists SHA-256,
    /// and SIPp answers only the first challenge, so add "SHA-256" after "MD5" only when
    /// every phone copes with it.
    pub digest_algorithms: Vec<DigestAlgorithm>,
    /// On SIGTERM, seconds to let calls in progress finish before stopping. Default 30.
    pub drain_timeout_s: u32,
    /// Contacts one agent may have registered at once; a new one replaces the oldest.
    /// Default 5.
    pub max_bindings: usize,
    /// Failed authentications (REGISTER, feature codes) from one source address, or for
    /// one account, within `auth_window_s` that block it for `auth_block_s`: while
    /// blocked, credentials are refused (403) without being checked. Default 10.
    pub auth_max_failures: u32,
    /// Default 60 seconds.
    pub auth_window_s: u32,
    /// Default 300 seconds.
    pub auth_block_s: u32,
    /// A TCP connection that has sent no complete message since it opened, or has had
    /// an incomplete message buffered, for this long is closed. Keep-alive pings keep
    /// registered phones' connections up. Default 32 seconds.
    pub tcp_idle_s: u32,
    /// TCP connections open at once, in total. Default 10000.
    pub max_connections: usize,
    /// TCP connections open at once from one source address (an office NAT counts as
    /// one). Default 500.
    pub max_connections_per_source: usize,
    /// Server transactions alive at once from one source address outside the trunks'
    /// networks (trunks are bounded by `max_calls`); beyond it requests get 503. Only
    /// authenticated and in-dialog requests keep a transaction (refusals, OPTIONS are
    /// answered statelessly), so this bounds an office NAT's phones too: raise it for
    /// more than ~1,000 phones behind one address. Default 1000.
    pub max_transactions_per_source: usize,
    /// SIP over TLS listen address (RFC 3261 §26.2, e.g. "0.0.0.0:5061"); none by
    /// default. Its Via and Contact take `advertise`'s address with this port when the
    /// address is a wildcard.
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain (leaf first) and private key for `tls_listen`. Without
    /// them the engine generates a self-signed pair in `<data.dir>/tls/` at first start
    /// and logs its SHA-256 fingerprint. Relative paths are from the working directory.
    /// SIGHUP rereads both for new connections.
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    /// Seconds a new TLS connection has to finish its handshake. Default 10.
    pub tls_handshake_timeout_s: u32,
    /// PEM bundle of the CAs that issue trunks' client certificates; needed by
    /// `[[trunk]] tls_client_subjects`. Read at start (SIGHUP rereads the listener's own
    /// certificate, not this bundle: restart for a new one).
    pub tls_client_ca: Option<std::path::PathBuf>,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: "127.0.0.1:5060".parse().expect("literal"),
            advertise: None,
            realm: "dasan".into(),
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            max_calls: 50_000,
            max_expires_s: 3600,
            min_expires_s: 30,
            retry_after_s: 5,
            udp_buffer_bytes: 8 << 20,
            digest_algorithms: vec![DigestAlgorithm::Md5],
            drain_timeout_s: 30,
            max_bindings: 5,
            auth_max_failures: 10,
            auth_window_s: 60,
            auth_block_s: 300,
            tcp_idle_s: 32,
            max_connections: 10_000,
            max_connections_per_source: 500,
            max_transactions_per_source: 1000,
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_handshake_timeout_s: 10,
            tls_client_ca: None,
        }
    }
}

/// A digest algorithm, spelled as in the config and in `WWW-Authenticate` (RFC 8760). The
/// registrar implements the hashing; the type lives here so that an unknown name is a
/// load error with its line rather than a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum DigestAlgorithm {
    #[serde(rename = "MD5")]
    Md5,
    #[serde(rename = "SHA-256")]
    Sha256,
}

impl DigestAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Md5 => "MD5",
            DigestAlgorithm::Sha256 => "SHA-256",
        }
    }
}

/// Where the engine places calls of its own (callbacks): a carrier trunk's SIP address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// SIP address of the outbound trunk, e.g. "192.0.2.10:5060". None: no callbacks.
    pub trunk: Option<SocketAddr>,
    /// The number callbacks present. Default "120".
    pub caller_id: Option<String>,
    /// Numbers the engine may dial out to (callbacks, surveys, transfers to outside
    /// numbers), as dial patterns (`X` any digit, `Z` 1-9, `N` 2-9, `[1-5]`, a final `.`
    /// for one or more digits, `!` for zero or more). Default `["0Z."]`: Korean domestic
    /// numbers (02…, 031…, 010…), no international prefix (00…, +).
    pub allow: Vec<String>,
    /// Patterns refused even when `allow` matches. Default `["060!"]` (premium rate).
    pub deny: Vec<String>,
    /// Transfers to outside numbers one agent may ask for per minute. Default 10.
    pub max_transfers_per_minute: u32,
    /// SIP address text replies go to (an SMS gateway of its own). None: each reply goes
    /// back through the trunk its conversation came from.
    pub text_trunk: Option<SocketAddr>,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            trunk: None,
            caller_id: None,
            allow: vec!["0Z.".into()],
            deny: vec!["060!".into()],
            max_transfers_per_minute: 10,
            text_trunk: None,
        }
    }
}

/// The centre's local time, for queue opening hours.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClockConfig {
    /// Offset from UTC, "+09:00" (Seoul, the default; Korea keeps no daylight saving).
    pub utc_offset: String,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            utc_offset: "+09:00".into(),
        }
    }
}

impl ClockConfig {
    /// The offset in seconds, if well formed.
    pub fn offset_s(&self) -> Option<i64> {
        let s = self.utc_offset.trim();
        let (sign, rest) = match s.as_bytes().first()? {
            b'+' => (1, &s[1..]),
            b'-' => (-1, &s[1..]),
            _ => return None,
        };
        let (h, m) = rest.split_once(':')?;
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        ((0..=14).contains(&h) && (0..60).contains(&m)).then(|| sign * (h * 3600 + m * 60))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// HTTP listen address (health, metrics, API). Default 127.0.0.1:8080.
    pub listen: SocketAddr,
    /// API bearer tokens and their roles. With none here and no DASAN_API_TOKEN in the
    /// environment, the engine generates a supervisor token at first start and keeps it in
    /// `<data dir>/api-token` (mode 0600).
    pub tokens: Vec<TokenConfig>,
    /// How long a browser agent's login lasts (the desktop's session token for the API).
    /// Default 43200 (12 hours, a long shift).
    pub session_ttl_s: u32,
    /// Pages served from elsewhere that may open the agent desktop's and the wallboard's
    /// WebSockets, as origins: `["https://desk.example"]` (scheme, host and port; no
    /// path). The engine's own pages may always, when reached by an IP address or
    /// `localhost`; reached by a DNS name, list that name's origin here (a page at a name
    /// the engine does not know may be a DNS-rebinding attack). Other origins get 403.
    /// Clients that send no Origin at all (not browsers) are not refused. Default: none.
    pub allowed_origins: Vec<WebOrigin>,
    /// Bearer token for `/metrics` (`Authorization: Bearer …`, at least 16 characters).
    /// Without one, `/metrics` answers loopback clients only (127.0.0.0/8, ::1) and 403 to
    /// others. Default: none.
    pub metrics_token: Option<Spanned<String>>,
    /// Failed browser logins within `login_window_s`, from one client address or on one
    /// agent id from any addresses, after which that address or agent id is refused
    /// without its password being checked for `login_block_s`. Default 10 failures in 60
    /// s block for 300 s (5 minutes). Each 1..=86400 (failures 1..=1000).
    pub login_max_failures: u32,
    pub login_window_s: u32,
    pub login_block_s: u32,
    /// Serve HTTPS (and `wss:` for the desktop's and wallboard's WebSockets) instead of
    /// plain HTTP. Browsers give a page the microphone only in a secure context, so agents
    /// on other PCs need this. On with `tls_cert`; `tls = true` without a certificate
    /// generates a self-signed one in `<data.dir>/tls/`. Default false.
    pub tls: bool,
    /// PEM certificate chain (leaf first) and private key for HTTPS; SIGHUP rereads them.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (API tokens and agents' passwords then
    /// cross the network in clear, and remote browsers refuse the microphone). Default
    /// false: such a listener is refused at start.
    pub insecure: bool,
}

impl HttpConfig {
    /// Whether HTTPS is on.
    pub fn https(&self) -> bool {
        self.tls || self.tls_cert.is_some()
    }
}

/// A web origin (RFC 6454) as browsers send it in `Origin`: `http` or `https`, a host,
/// and a port unless it is the scheme's default. Parsed at load, lower-cased, with the
/// default port left out, so two spellings of one origin compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct WebOrigin {
    pub scheme: String,
    /// Lower-cased; an IPv6 address keeps its brackets.
    pub host: String,
    /// None for the scheme's default port.
    pub port: Option<u16>,
}

impl WebOrigin {
    /// `scheme://host[:port]`, or None for anything else (a path, user info, `null`).
    pub fn parse(s: &str) -> Option<WebOrigin> {
        let (scheme, rest) = s.trim().split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let (host, port) = split_host_port(rest)?;
        Some(WebOrigin {
            scheme,
            host,
            port: port.filter(|p| *p != default),
        })
    }

    /// The port, the scheme's default if none was written.
    pub fn port_or_default(&self) -> u16 {
        self.port
            .unwrap_or(if self.scheme == "https" { 443 } else { 80 })
    }
}

impl TryFrom<String> for WebOrigin {
    type Error = String;
    fn try_from(s: String) -> Result<WebOrigin, String> {
        WebOrigin::parse(&s).ok_or_else(|| {
            format!("'{s}' is not an origin: write scheme://host[:port], e.g. \"https://desk.example\", with no path")
        })
    }
}

impl std::fmt::Display for WebOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

/// `host[:port]` as in an origin or a `Host` header: the host lower-cased (an IPv6
/// address in brackets), the port if written. None for an empty or malformed one.
pub fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{v6}]"), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if host.is_empty() || !(host.starts_with('[') || host.chars().all(ok)) {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// One API token. Roles: `supervisor` (everything, caller numbers in clear), `reporting`
/// (read-only, caller numbers masked), `agent` (its own agent, the calls it is on and the
/// notes of calls it was offered, the knowledge base; needs `agent`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub token: Spanned<String>,
    pub role: Spanned<String>,
    #[serde(default)]
    pub agent: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".parse().expect("literal"),
            tokens: Vec::new(),
            session_ttl_s: 43_200,
            allowed_origins: Vec::new(),
            metrics_token: None,
            login_max_failures: 10,
            login_window_s: 60,
            login_block_s: 300,
            tls: false,
            tls_cert: None,
            tls_key: None,
            insecure: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Data directory (records.db, recordings/, the generated API token). Default
    /// ./dasan-data.
    pub dir: PathBuf,
    /// A record change is committed (fsync'd) within this many milliseconds while the
    /// writer keeps up; slower commits are logged. Default 100.
    pub flush_interval_ms: u64,
    /// Record changes queued for the writer before further ones wait in memory (counted in
    /// dasan_record_queue_full_total). Default 65536.
    pub record_queue: usize,
    /// Keep records in PostgreSQL instead of SQLite: a `postgresql://user:pass@host/db`
    /// URL. Default: SQLite at `<dir>/records.db`, no server needed.
    pub database: Option<String>,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dir: PathBuf::from("./dasan-data"),
            flush_interval_ms: 100,
            record_queue: 65_536,
            database: None,
        }
    }
}
