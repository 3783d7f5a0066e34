//! End-to-end with a real softphone: baresip registers as an agent and auto-answers; a SIPp
//! caller (or a second baresip) dials the engine and plays audio; what each side hears is
//! recorded and measured.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn baresip_agent_hears_the_caller() {
    let (e, _) = baresip_call("baresip", false);
    assert_eq!(
        e.metric("dasan_rtp_packets_relayed_total"),
        0.0,
        "media end to end, not anchored"
    );
}

/// Anchored (the default), both legs get the engine's address in SDP, so whatever baresip
/// hears has gone through the engine's relay (SIPp's PCMA to baresip's PCMA).
#[test]
fn anchored_media_flows_through_the_engine() {
    let (e, _) = baresip_call("anchored", true);
    let relayed = e.metric("dasan_rtp_packets_relayed_total");
    assert!(relayed > 200.0, "RTP relayed by the engine: {relayed}");
}

/// One call from SIPp `uac_pcap` to baresip as agent 1001; asserts baresip heard audio.
fn baresip_call(name: &str, anchor: bool) -> (EngineProc, f64) {
    let base = port_block();
    let (sip, http, bs_sip, bs_ctrl, caller_port) = (base, base + 1, base + 2, base + 3, base + 4);
    let dir = workdir(name);
    let mut config = test_config("");
    if !anchor {
        config.push_str("anchor = false\n");
    }
    // SIPp's built-in uac_pcap takes 180 but aborts on a 183: this trunk gets no early media.
    let config = config.replace(
        "sources = [\"127.0.0.0/8\"]",
        "sources = [\"127.0.0.0/8\"]\nearly_media = false",
    );
    let e = EngineProc::start(&dir, &config, sip, http);

    let cfg = dir.join("baresip");
    let rec = dir.join("rec");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::create_dir_all(&rec).unwrap();
    write_tone(&cfg.join("tone.wav"), 60, G711_TONE);
    std::fs::write(
        cfg.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{bs_sip}\nnet_interface 127.0.0.1\nrtp_ports {}-{}\n\
             audio_source aufile,{}\naudio_player aubridge,sink\naudio_alert aubridge,sink\nsnd_path {}\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\nmodule aubridge.so\nmodule sndfile.so\n\
             module_app account.so\nmodule_app menu.so\nmodule_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{bs_ctrl}\n",
            base + 10,
            base + 29,
            cfg.join("tone.wav").display(),
            rec.display()
        ),
    )
    .unwrap();
    std::fs::write(
        cfg.join("accounts"),
        format!("<sip:1001@127.0.0.1:{sip}>;auth_pass=test-pw;answermode=auto;regint=60;audio_codecs=pcmu,pcma\n"),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
    let mut baresip = Command::new("timeout")
        .args(["-k", "2", "90", "baresip", "-f"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("run baresip (install Debian package baresip)");

    let deadline = Instant::now() + Duration::from_secs(15);
    while e.agent_state("1001") != "ready" {
        assert!(
            Instant::now() < deadline,
            "baresip did not register:\n{}",
            std::fs::read_to_string(dir.join("baresip.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // SIPp plays G.711 audio and RFC 2833 digits from sip-tester's pcaps.
    copy_sipp_pcaps(&dir);
    let mut a = base_args(sip, caller_port, base + 30, base + 35);
    a.extend(args(&[
        "-sn", "uac_pcap", "-s", "120", "-m", "1", "-timeout", "60s",
    ]));
    sipp(&dir, "caller", &a).expect_success(Duration::from_secs(90));

    let _ = Command::new("kill").arg(baresip.id().to_string()).status();
    let _ = baresip.wait();
    let dec = std::fs::read_dir(&rec)
        .unwrap()
        .filter_map(|f| f.ok().map(|f| f.path()))
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .expect("baresip recorded what it heard (*-dec.wav)");
    let rms = wav_rms(&dec);
    assert!(rms > 0.01, "baresip's recording is silent (RMS {rms:.4})");
    assert_eq!(
        e.metric("dasan_calls_total{outcome=\"answered\",queue=\"general\"}"),
        1.0
    );
    (e, rms)
}
