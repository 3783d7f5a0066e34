//! HTTP digest for SIP (RFC 3261 22.4, RFC 7616 algorithms, RFC 8760 SHA-256 in SIP).
//!
//! Nonces are stateless: `<issued unix secs hex>.<HMAC-ish tag>` keyed by a per-process
//! secret, so a restart invalidates them (clients get `stale=true` and retry).

use md5::Md5;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;

/// Defined with the config, which names the algorithms to challenge with; the hashing is
/// here.
pub use crate::config::DigestAlgorithm as Algorithm;

impl Algorithm {
    pub fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex(&Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex(&Sha256::digest(data.as_bytes())),
        }
    }
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// Parsed `Authorization: Digest ...` parameters.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    pub params: HashMap<String, String>,
}

impl Credentials {
    pub fn parse(header: &str) -> Option<Credentials> {
        let (scheme, rest) = header.trim().split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let mut params = HashMap::new();
        for part in super::super::sip::message::split_list(rest) {
            let (k, v) = part.split_once('=')?;
            params.insert(
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            );
        }
        Some(Credentials { params })
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.params.get(k).map(String::as_str)
    }

    pub fn algorithm(&self) -> Option<Algorithm> {
        match self.get("algorithm") {
            None => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("MD5") => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Some(Algorithm::Sha256),
            _ => None,
        }
    }
}

pub struct NonceKey {
    secret: String,
}

/// Nonces older than this are answered with `stale=true`.
pub const NONCE_LIFETIME_S: u64 = 300;

impl NonceKey {
    pub fn new(secret: String) -> Self {
        NonceKey { secret }
    }

    /// A nonce for a client at `source` in `realm`: `<issued unix secs hex>.<salt>.<tag>`,
    /// where the tag is an HMAC over the time, the salt, the address and the realm, so a
    /// nonce (and a response computed with it) is worthless from any other address. The
    /// salt makes every challenge's nonce its own, so that counting uses per nonce never
    /// mixes two challenges answered in the same second.
    pub fn issue(&self, unix_now: u64, salt: &str, source: IpAddr, realm: &str) -> String {
        let ts = format!("{unix_now:x}");
        format!("{ts}.{salt}.{}", self.tag(&ts, salt, source, realm))
    }

    fn tag(&self, ts: &str, salt: &str, source: IpAddr, realm: &str) -> String {
        use hmac::Mac;
        let mut mac = match hmac::Hmac::<Sha256>::new_from_slice(self.secret.as_bytes()) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes a key of any length"),
        };
        for part in [ts, salt, &source.to_string(), realm] {
            mac.update(part.as_bytes());
            mac.update(b"|");
        }
        let mut out = hex(&mac.finalize().into_bytes());
        out.truncate(32);
        out
    }

    /// `Some(true)` fresh, `Some(false)` genuine but stale, `None` forged or issued to
    /// another address or realm.
    pub fn check(&self, nonce: &str, unix_now: u64, source: IpAddr, realm: &str) -> Option<bool> {
        let mut parts = nonce.split('.');
        let (ts, salt, tag) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || ts.len() > 16 || salt.len() > 32 {
            return None;
        }
        if !ct_eq(&self.tag(ts, salt, source, realm), tag) {
            return None;
        }
        let issued = u64::from_str_radix(ts, 16).ok()?;
        if issued > unix_now.saturating_add(5) {
            return None;
        }
        Some(unix_now.saturating_sub(issued) <= NONCE_LIFETIME_S)
    }

    /// When a nonce issued at the time it names stops being accepted (unix seconds).
    pub fn expiry(nonce: &str) -> Option<u64> {
        let (ts, _) = nonce.split_once('.')?;
        u64::from_str_radix(ts, 16)
            .ok()
            .map(|t| t.saturating_add(NONCE_LIFETIME_S))
    }
}

/// The expected `response` for a request (RFC 7616 3.4.1, qop=auth or none).
pub fn expected_response(
    alg: Algorithm,
    ha1: &str,
    method: &str,
    c: &Credentials,
) -> Option<String> {
    let uri = c.get("uri")?;
    let nonce = c.get("nonce")?;
    let ha2 = alg.hash(&format!("{method}:{uri}"));
    Some(match c.get("qop") {
        Some(q) if q.eq_ignore_ascii_case("auth") => {
            let nc = c.get("nc")?;
            let cnonce = c.get("cnonce")?;
            alg.hash(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
        }
        Some(_) => return None,
        None => alg.hash(&format!("{ha1}:{nonce}:{ha2}")),
    })
}

/// The client side: the `Authorization` value answering a `WWW-Authenticate` challenge
/// (qop=auth, nc=1). Used by tests and benches, and by outbound registration to come.
pub fn authorization(
    challenge: &str,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
) -> Option<String> {
    authorization_nc(challenge, user, password, method, uri, cnonce, 1)
}

/// [`authorization`] for the `nc`-th use of the challenge's nonce (RFC 7616 3.4).
pub fn authorization_nc(
    challenge: &str,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> Option<String> {
    let ch = Credentials::parse(challenge)?;
    let alg = ch.algorithm()?;
    let (realm, nonce) = (ch.get("realm")?, ch.get("nonce")?);
    let ha1 = alg.hash(&format!("{user}:{realm}:{password}"));
    let ha2 = alg.hash(&format!("{method}:{uri}"));
    let response = alg.hash(&format!("{ha1}:{nonce}:{nc:08x}:{cnonce}:auth:{ha2}"));
    Some(format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm={}, qop=auth, nc={nc:08x}, cnonce=\"{cnonce}\"",
        alg.name()
    ))
}

/// Constant-time comparison of two hex strings.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example_vector() {
        // RFC 2617 3.5 (MD5, qop=auth).
        let ha1 = Algorithm::Md5.hash("Mufasa:testrealm@host.com:Circle Of Life");
        let c = Credentials::parse(
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\"",
        )
        .unwrap();
        assert_eq!(
            expected_response(Algorithm::Md5, &ha1, "GET", &c).unwrap(),
            "6629fae49393a05397450978507c4ef1"
        );
    }

    #[test]
    fn rfc7616_sha256_vector() {
        // RFC 7616 3.9.1.
        let ha1 = Algorithm::Sha256.hash("Mufasa:http-auth@example.org:Circle of Life");
        let c = Credentials::parse(
            "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .unwrap();
        assert_eq!(c.algorithm(), Some(Algorithm::Sha256));
        assert_eq!(
            expected_response(Algorithm::Sha256, &ha1, "GET", &c).unwrap(),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn nonce_fresh_stale_forged_and_bound_to_its_address() {
        let k = NonceKey::new("s".into());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let n = k.issue(1000, "salt", ip, "dasan");
        assert_eq!(k.check(&n, 1100, ip, "dasan"), Some(true));
        assert_eq!(
            k.check(&n, 1000 + NONCE_LIFETIME_S + 1, ip, "dasan"),
            Some(false)
        );
        assert_eq!(
            k.check(&n, 1100, "192.0.2.2".parse().unwrap(), "dasan"),
            None
        );
        assert_eq!(k.check(&n, 1100, ip, "other"), None);
        assert_eq!(
            k.check("3e8.salt.000000000000000000000000", 1000, ip, "dasan"),
            None
        );
        assert_ne!(
            n,
            k.issue(1000, "salt2", ip, "dasan"),
            "a nonce per challenge"
        );
        assert_eq!(k.check("garbage", 1000, ip, "dasan"), None);
        let other = NonceKey::new("t".into());
        assert_eq!(other.check(&n, 1100, ip, "dasan"), None, "another key");
    }
}
