//! SDP (`media::sdp`): parse an offer, negotiate it against every codec set the engine
//! may support, and check that our answer to it parses and negotiates to the same choice.
#![no_main]

use dasan::media::sdp::{build, negotiate, Codec, Sdp};
use libfuzzer_sys::fuzz_target;

const SETS: &[&[Codec]] = &[
    &[Codec::Pcmu, Codec::Pcma, Codec::Opus],
    &[Codec::Opus],
    &[Codec::Pcma, Codec::Pcmu],
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(offer) = Sdp::parse(text) else {
        return;
    };
    let _ = offer.audio_target();
    if let Some(a) = offer.audio() {
        for &pt in &a.formats {
            let _ = a.encoding(pt);
        }
    }
    for set in SETS {
        let Ok(n) = negotiate(&offer, set) else {
            continue;
        };
        let (ip, port) = n.remote;
        let answer = build(1, 2, ip, port, &[(n.codec, n.pt)], n.dtmf, n.direction);
        let parsed = Sdp::parse(&answer).expect("our own answer parses");
        let again = negotiate(&parsed, set).expect("our own answer negotiates");
        assert_eq!((again.codec, again.pt, again.dtmf), (n.codec, n.pt, n.dtmf));
        assert_eq!(again.remote, n.remote);
    }
});
