//! Which web pages may open the engine's WebSockets, and which `Host` names are the
//! engine's own.
//!
//! A browser sends `Origin` with every WebSocket handshake, and sends the session's
//! credentials whatever page opened it, so a handshake from a page of another site is
//! refused (cross-site WebSocket hijacking). Being same-origin is not enough: a page at
//! `http://evil.example:8080` whose name an attacker re-points at the engine's address
//! (DNS rebinding) is same-origin with itself. So a same-origin page counts as the
//! engine's own only when the engine was reached by an IP address or `localhost`, names
//! no rebinding page can have; a deployment reached by a DNS name lists that origin in
//! `[http] allowed_origins`.

use crate::config::{split_host_port, WebOrigin};
use axum::http::header::{HOST, ORIGIN};
use axum::http::HeaderMap;

/// `[http] allowed_origins` and the rule above.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    allowed: Vec<WebOrigin>,
}

impl OriginPolicy {
    pub fn new(allowed: Vec<WebOrigin>) -> OriginPolicy {
        OriginPolicy { allowed }
    }

    /// Ok when the handshake comes from an allowed page, from the engine's own page, or
    /// from a client that is not a browser (no `Origin`: browsers always send one, and a
    /// client that can leave it out can also forge it); else why not, for the 403.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let Some(origin) = headers.get(ORIGIN) else {
            return Ok(());
        };
        let origin = origin
            .to_str()
            .ok()
            .and_then(WebOrigin::parse)
            .ok_or("this page's origin may not open the engine's WebSockets")?;
        if self.allowed.contains(&origin) {
            return Ok(());
        }
        let (host, port) = host_of(headers).ok_or("no Host header")?;
        if origin.host != host || origin.port_or_default() != port.unwrap_or(default(&origin)) {
            return Err(
                "cross-origin WebSocket refused: list the page's origin in [http] allowed_origins",
            );
        }
        if !is_address_or_localhost(&host) {
            return Err("the engine was reached by a name not in [http] allowed_origins");
        }
        Ok(())
    }
}

fn default(o: &WebOrigin) -> u16 {
    if o.scheme == "https" {
        443
    } else {
        80
    }
}

/// The request's `Host`, parsed; None when it is missing or malformed.
pub fn host_of(headers: &HeaderMap) -> Option<(String, Option<u16>)> {
    split_host_port(headers.get(HOST)?.to_str().ok()?)
}

/// Whether a request's `Host` is one a rebinding page cannot have: none at all (HTTP/1.0
/// tools), an IP address or `localhost`.
pub fn host_is_address_or_localhost(headers: &HeaderMap) -> bool {
    match headers.get(HOST) {
        None => true,
        Some(_) => host_of(headers).is_some_and(|(h, _)| is_address_or_localhost(&h)),
    }
}

fn is_address_or_localhost(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host == "localhost" || bare.parse::<std::net::IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(o) = origin {
            h.insert(ORIGIN, o.parse().unwrap());
        }
        if let Some(v) = host {
            h.insert(HOST, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn same_origin_by_address_and_listed_origins_pass_and_the_rest_is_refused() {
        let p = OriginPolicy::new(vec![WebOrigin::parse("https://desk.example").unwrap()]);
        for (origin, host) in [
            (None, Some("127.0.0.1:8080")),
            (None, None),
            (Some("http://127.0.0.1:8080"), Some("127.0.0.1:8080")),
            (Some("http://LOCALHOST:8080"), Some("localhost:8080")),
            (Some("http://[::1]:8080"), Some("[::1]:8080")),
            (Some("http://10.1.2.3"), Some("10.1.2.3")),
            (Some("https://10.1.2.3"), Some("10.1.2.3:443")),
            (Some("https://desk.example"), Some("127.0.0.1:8080")),
            (Some("https://desk.example"), Some("desk.example")),
        ] {
            assert_eq!(
                p.check(&headers(origin, host)),
                Ok(()),
                "{origin:?} {host:?}"
            );
        }
        for (origin, host) in [
            // Another site.
            (Some("https://evil.example"), Some("127.0.0.1:8080")),
            (Some("http://127.0.0.1:8081"), Some("127.0.0.1:8080")),
            (Some("http://127.0.0.2:8080"), Some("127.0.0.1:8080")),
            (Some("https://desk.example:8443"), Some("127.0.0.1:8080")),
            (Some("http://desk.example"), Some("127.0.0.1:8080")),
            // DNS rebinding: same-origin, but at a name the engine does not know.
            (Some("http://evil.example:8080"), Some("evil.example:8080")),
            // Sandboxed frames and files, garbage, no Host.
            (Some("null"), Some("127.0.0.1:8080")),
            (Some("file://"), Some("127.0.0.1:8080")),
            (Some("http://127.0.0.1:8080"), None),
            (Some("http://127.0.0.1:8080"), Some("127.0.0.1:80:80")),
        ] {
            assert!(
                p.check(&headers(origin, host)).is_err(),
                "{origin:?} {host:?}"
            );
        }
    }

    #[test]
    fn hosts_that_no_rebinding_page_can_have() {
        for host in [
            None,
            Some("127.0.0.1:9"),
            Some("localhost"),
            Some("[::1]:8080"),
        ] {
            assert!(
                host_is_address_or_localhost(&headers(None, host)),
                "{host:?}"
            );
        }
        for host in ["evil.example:8080", "localhost.evil.example", "bad host"] {
            assert!(
                !host_is_address_or_localhost(&headers(None, Some(host))),
                "{host}"
            );
        }
    }
}
