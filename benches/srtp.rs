//! SRTP (RFC 3711) cost per packet for the media plane's encrypted legs (issue 16): protect
//! and unprotect one 20 ms G.711 packet (12-byte header + 160 bytes) with the SDES suites
//! of RFC 4568 that phones offer, AES_CM_128_HMAC_SHA1_80 and _32, through rtc-srtp (the
//! webrtc family's SRTP, on ring).
//!
//! Machine: x86_64, 2 cores, 24 GiB (the project's standard machine), 2026-12-03.
//! Results (`cargo bench --bench srtp`, release profile, 06:39 UTC, machine otherwise idle;
//! each figure includes building the 172-byte packet):
//!   AES_CM_128_HMAC_SHA1_80: protect 369 ns, protect + unprotect 708 ns (unprotect ~339 ns)
//!   AES_CM_128_HMAC_SHA1_32: protect 359 ns, protect + unprotect 683 ns (unprotect ~324 ns)
//! Target ≤ 1 µs per packet each way: met. A relayed call with both legs encrypted costs
//! ~1.4 µs of SRTP per 20 ms each way, ~70 µs per second of call: ~14,000 such calls'
//! SRTP per core, far beyond what the kernel's UDP path carries (issue 20). Not yet wired
//! into the media plane.

use criterion::{criterion_group, criterion_main, Criterion};
use rtc_srtp::context::Context;
use rtc_srtp::crypto::providers::RingCrypto;
use rtc_srtp::protection_profile::ProtectionProfile;
use std::hint::black_box;

fn packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; 172];
    p[0] = 0x80;
    p[1] = 0; // PCMU
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
    p[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    for (i, b) in p[12..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37) ^ 0xff;
    }
    p
}

fn contexts(profile: ProtectionProfile) -> (Context, Context) {
    let key = [7u8; 16];
    let salt = [9u8; 14];
    let mk = || Context::new(&key, &salt, profile, None, None, &RingCrypto).expect("context");
    (mk(), mk())
}

fn bench(c: &mut Criterion) {
    for (name, profile) in [
        (
            "AES_CM_128_HMAC_SHA1_80",
            ProtectionProfile::Aes128CmHmacSha1_80,
        ),
        (
            "AES_CM_128_HMAC_SHA1_32",
            ProtectionProfile::Aes128CmHmacSha1_32,
        ),
    ] {
        let (mut tx, _) = contexts(profile);
        let mut seq = 0u16;
        c.bench_function(&format!("srtp protect, G.711 20 ms, {name}"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                black_box(tx.encrypt_rtp(&packet(seq)).expect("protect"))
            })
        });
        // Replay protection refuses a packet twice, so unprotect is measured on freshly
        // protected packets: this is one packet's round trip (minus protect = unprotect).
        let (mut tx, mut rx) = contexts(profile);
        let mut n = 0u16;
        c.bench_function(
            &format!("srtp protect + unprotect, G.711 20 ms, {name}"),
            |b| {
                b.iter(|| {
                    n = n.wrapping_add(1);
                    let wire = tx.encrypt_rtp(&packet(n)).expect("protect");
                    black_box(rx.decrypt_rtp(&wire).expect("unprotect"))
                })
            },
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
