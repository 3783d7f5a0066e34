//! SRTP (RFC 3711) for an anchored leg, keyed by SDES (RFC 4568): the `a=crypto` attribute
//! and, per leg, a receive context (the peer's key) and a send context (ours). The cipher
//! suites are the webrtc family's (`rtc::srtp` on ring); this module only parses keys and
//! applies them. Sans-IO: keys come from the caller's (seeded) randomness.

use base64::Engine as _;
use rtc::srtp::context::Context;
use rtc::srtp::crypto::providers::RingCrypto;
use rtc::srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc::srtp::protection_profile::ProtectionProfile;

/// Key (16 bytes) and salt (14 bytes) for the AES-128 suites.
pub const KEY_SALT_LEN: usize = 30;

/// The SDES suites phones offer (RFC 4568 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
}

impl Suite {
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    fn parse(s: &str) -> Option<Suite> {
        match s {
            "AES_CM_128_HMAC_SHA1_80" => Some(Suite::AesCm128HmacSha1_80),
            "AES_CM_128_HMAC_SHA1_32" => Some(Suite::AesCm128HmacSha1_32),
            _ => None,
        }
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            Suite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            Suite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        }
    }
}

/// A master key and salt. Never printed: a key in a log is a key given away.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySalt(pub [u8; KEY_SALT_LEN]);

impl std::fmt::Debug for KeySalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeySalt(…)")
    }
}

impl KeySalt {
    fn inline(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

/// One `a=crypto` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    pub tag: u32,
    pub suite: Suite,
    pub key: KeySalt,
}

impl Crypto {
    /// The value of an `a=crypto:` attribute; `None` for what we cannot use: an unknown
    /// suite, several keys, an MKI, a key derivation rate or any session parameter (e.g.
    /// `UNENCRYPTED_SRTP`), which we would otherwise silently ignore.
    pub fn parse(value: &str) -> Option<Crypto> {
        let mut it = value.split_ascii_whitespace();
        let tag: u32 = it.next()?.parse().ok()?;
        if tag > 999_999_999 {
            return None;
        }
        let suite = Suite::parse(it.next()?)?;
        let params = it.next()?;
        if it.next().is_some() || params.contains(';') {
            return None;
        }
        let inline = params.strip_prefix("inline:")?;
        let mut parts = inline.split('|');
        let key = parts.next()?;
        for p in parts {
            // A lifetime is fine (we never send 2^31 packets on a key); an MKI is not.
            if p.contains(':') {
                return None;
            }
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(key))
            .ok()?;
        let key: [u8; KEY_SALT_LEN] = bytes.try_into().ok()?;
        Some(Crypto {
            tag,
            suite,
            key: KeySalt(key),
        })
    }

    /// The attribute line, without `a=` and CRLF.
    pub fn attr(&self) -> String {
        format!(
            "crypto:{} {} inline:{}",
            self.tag,
            self.suite.name(),
            self.key.inline()
        )
    }
}

/// A leg's keys: the suite and tag agreed, the peer's key (what it sends with) and ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    pub suite: Suite,
    pub tag: u32,
    pub remote: KeySalt,
    pub local: KeySalt,
}

#[derive(Debug, thiserror::Error)]
#[error("SRTP context: {0}")]
pub struct SrtpError(String);

/// Packets replayed within this many of the newest are refused (RFC 3711 §3.3.2).
const REPLAY_WINDOW: usize = 128;

/// A leg's contexts: `rx` unprotects what the peer sends, `tx` protects what we send.
pub struct LegSrtp {
    rx: Context,
    tx: Context,
}

impl LegSrtp {
    pub fn new(keys: &SrtpKeys) -> Result<LegSrtp, SrtpError> {
        let ctx = |k: &KeySalt, replay: bool| {
            let (key, salt) = k.0.split_at(16);
            let (srtp, srtcp) = if replay {
                (
                    Some(srtp_replay_protection(REPLAY_WINDOW)),
                    Some(srtcp_replay_protection(REPLAY_WINDOW)),
                )
            } else {
                (None, None)
            };
            Context::new(key, salt, keys.suite.profile(), srtp, srtcp, &RingCrypto)
                .map_err(|e| SrtpError(e.to_string()))
        };
        Ok(LegSrtp {
            rx: ctx(&keys.remote, true)?,
            tx: ctx(&keys.local, false)?,
        })
    }

    /// A new key from the peer (a re-INVITE with another `a=crypto`); ours stays.
    pub fn rekey_remote(&mut self, keys: &SrtpKeys) -> Result<(), SrtpError> {
        let fresh = LegSrtp::new(keys)?;
        self.rx = fresh.rx;
        Ok(())
    }

    /// `None` when the packet fails authentication, is a replay or is not RTP.
    pub fn unprotect_rtp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        self.rx.decrypt_rtp(packet).ok().map(|b| b.to_vec())
    }

    pub fn unprotect_rtcp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        self.rx.decrypt_rtcp(packet).ok().map(|b| b.to_vec())
    }

    pub fn protect_rtp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        self.tx.encrypt_rtp(packet).ok().map(|b| b.to_vec())
    }

    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        self.tx.encrypt_rtcp(packet).ok().map(|b| b.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC4568_EXAMPLE: &str =
        "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32";

    #[test]
    fn crypto_lines_parse_or_are_refused() {
        // RFC 4568's example has an MKI: not for us.
        assert!(Crypto::parse(RFC4568_EXAMPLE).is_none());
        let c = Crypto::parse(
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20",
        )
        .expect("with a lifetime");
        assert_eq!(c.suite, Suite::AesCm128HmacSha1_80);
        assert_eq!(c.tag, 1);
        assert_eq!(&c.key.0[..4], b"=-n@");
        let again = Crypto::parse(c.attr().strip_prefix("crypto:").unwrap()).unwrap();
        assert_eq!(again, c);
        for bad in [
            "",
            "x AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
            "1 F8_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
            "1 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkp",
            "1 AES_CM_128_HMAC_SHA1_32 inline:!!!!",
            "1 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR UNENCRYPTED_SRTP",
            "1 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR;inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
        ] {
            assert!(Crypto::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(format!("{:?}", c.key), "KeySalt(…)");
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend(std::iter::repeat_n(0x55, 160));
        p
    }

    #[test]
    fn both_ends_protect_and_unprotect_and_refuse_tampering_and_replays() {
        for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32] {
            let a = KeySalt([1; 30]);
            let b = KeySalt([2; 30]);
            let mut us = LegSrtp::new(&SrtpKeys {
                suite,
                tag: 1,
                remote: b.clone(),
                local: a.clone(),
            })
            .unwrap();
            let mut peer = LegSrtp::new(&SrtpKeys {
                suite,
                tag: 1,
                remote: a,
                local: b,
            })
            .unwrap();
            let sent = us.protect_rtp(&rtp(7)).unwrap();
            assert_ne!(&sent[12..172], &rtp(7)[12..]);
            assert_eq!(peer.unprotect_rtp(&sent).unwrap(), rtp(7));
            // A replay, a flipped bit, plain RTP: refused.
            assert!(peer.unprotect_rtp(&sent).is_none());
            let mut bad = us.protect_rtp(&rtp(8)).unwrap();
            bad[20] ^= 1;
            assert!(peer.unprotect_rtp(&bad).is_none());
            assert!(peer.unprotect_rtp(&rtp(9)).is_none());
            let from_peer = peer.protect_rtp(&rtp(100)).unwrap();
            assert_eq!(us.unprotect_rtp(&from_peer).unwrap(), rtp(100));
            let rr = [0x80, 201, 0, 1, 0, 0, 0, 9];
            let srtcp = us.protect_rtcp(&rr).unwrap();
            assert_eq!(peer.unprotect_rtcp(&srtcp).unwrap(), rr);
        }
    }
}
