//! HTTP digest for SIP (RFC 3261 22.4, RFC 7616 algorithms, RFC 8760 SHA-256 in SIP).
//!
//! Nonces are stateless: `<issued unix secs hex>.<HMAC-ish tag>` keyed by a per-process
//! secret, so a restart invalidates them (clients get `stale=true` and retry).

use md5::Md5;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;

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

    pub fn issue(&self, unix_now: u64) -> String {
        let ts = format!("{unix_now:x}");
        let tag = Algorithm::Sha256.hash(&format!("{ts}:{}", self.secret));
        format!("{ts}.{}", &tag[..24])
    }

    /// `Some(true)` fresh, `Some(false)` genuine but stale, `None` forged.
    pub fn check(&self, nonce: &str, unix_now: u64) -> Option<bool> {
        let (ts, tag) = nonce.split_once('.')?;
        let expect = Algorithm::Sha256.hash(&format!("{ts}:{}", self.secret));
        if expect.get(..24)? != tag {
            return None;
        }
        let issued = u64::from_str_radix(ts, 16).ok()?;
        Some(unix_now.saturating_sub(issued) <= NONCE_LIFETIME_S)
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
    let ch = Credentials::parse(challenge)?;
    let alg = ch.algorithm()?;
    let (realm, nonce) = (ch.get("realm")?, ch.get("nonce")?);
    let ha1 = alg.hash(&format!("{user}:{realm}:{password}"));
    let ha2 = alg.hash(&format!("{method}:{uri}"));
    let response = alg.hash(&format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"));
    Some(format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm={}, qop=auth, nc=00000001, cnonce=\"{cnonce}\"",
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
    fn nonce_fresh_stale_forged() {
        let k = NonceKey::new("s".into());
        let n = k.issue(1000);
        assert_eq!(k.check(&n, 1100), Some(true));
        assert_eq!(k.check(&n, 1000 + NONCE_LIFETIME_S + 1), Some(false));
        assert_eq!(k.check("3e8.000000000000000000000000", 1000), None);
        assert_eq!(k.check("garbage", 1000), None);
    }
}
