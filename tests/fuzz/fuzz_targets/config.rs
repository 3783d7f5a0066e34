//! The configuration loader (`config::Config::parse`): TOML text, deserialized, validated
//! into the engine's settings. A configuration that loads must build an engine
//! (`Engine::new` "cannot fail") that survives a short call script: a registration, a
//! call to each route, a digit.
#![no_main]

use dasan::config::Config;
use dasan_fuzz::script::Run;
use libfuzzer_sys::fuzz_target;

const SCRIPT: &[u8] = b"INVITE sip:120@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKc1\r\nFrom: <sip:0212345678@carrier>;tag=c1\r\nTo: <sip:120@dasan>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:c@10.1.1.1:5060>\r\nContent-Type: application/sdp\r\nContent-Length: 129\r\n\r\nv=0\r\no=c 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\n@@m3\n9\n@@a1\nREGISTER sip:dasan SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKr1\r\nFrom: <sip:1001@dasan>;tag=r\r\nTo: <sip:1001@dasan>\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\nContact: <sip:1001@192.0.2.1:5070>\r\nContent-Length: 0\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text, "fuzz.toml") else {
        return;
    };
    let _ = (
        config.warnings(),
        config.prompt_names(),
        config.check_runtime(),
    );
    let _ = (
        config.agent_specs(),
        config.advertised_sip(),
        config.uses_demo_credentials(),
    );
    let mut run = Run::new(&config);
    run.script(SCRIPT);
});
