//! Config tests: every error names its file and line.

use super::*;

/// An agent for the queues these tests configure: a queue no agent could serve is an
/// error of its own (see `a_queue_no_agent_can_serve_is_refused_with_its_line`).
const STAFF: &str = "\n[[agents]]\nids = \"9001\"\npassword = \"pw\"\nskills = [\"ko\", \"en\"]\n";

#[test]
fn embedded_default_is_valid_and_provisions_demo_agents() {
    let cfg = Config::parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME).unwrap();
    let agents = cfg.agent_specs();
    assert_eq!(agents.len(), 20);
    assert_eq!(agents[0].id, "1001");
    assert_eq!(agents[19].id, "1020");
    assert!(agents
        .iter()
        .all(|a| a.skills.contains(&("ko".to_string(), 5))));
    let langs: Vec<_> = agents[10..]
        .iter()
        .map(|a| a.skills[1].0.as_str())
        .collect();
    assert_eq!(
        langs,
        ["en", "en", "zh", "zh", "ja", "ja", "vi", "vi", "mn", "mn"]
    );
    assert!(cfg.uses_demo_credentials());
    assert_eq!(cfg.routes[0].number.get_ref(), "120");
    assert_eq!(
        cfg.routes[0].queue.as_ref().map(|q| q.get_ref().as_str()),
        Some("general")
    );
}

#[test]
fn unknown_key_names_file_and_line() {
    let src = "[sip]\nlisten = \"127.0.0.1:5060\"\nlistne = 1\n";
    let err = Config::parse(src, "x.toml").unwrap_err().to_string();
    assert!(err.starts_with("x.toml:3: unknown field `listne`"), "{err}");
}

#[test]
fn route_to_unknown_queue_names_line() {
    let src = "[[route]]\nnumber = \"120\"\nqueue = \"nope\"\n";
    let err = Config::parse(src, "y.toml").unwrap_err().to_string();
    assert!(
        err.starts_with("y.toml:3: route '120' names unknown queue 'nope'"),
        "{err}"
    );
}

#[test]
fn bad_range_and_duplicates() {
    assert!(expand_ids("1020-1001").is_err());
    assert!(expand_ids("a-b").is_err());
    assert!(expand_ids("998-1000").is_err(), "mixed widths");
    assert_eq!(
        expand_ids("0998-1000").unwrap(),
        vec!["0998", "0999", "1000"]
    );
    let src = "[[agents]]\nids = \"1-3\"\npassword = \"x\"\nskills = []\n[[agents]]\nids = \"2\"\npassword = \"x\"\nskills = []\n";
    let err = Config::parse(src, "z.toml").unwrap_err().to_string();
    assert!(
        err.starts_with("z.toml:6: agent '2' is defined twice"),
        "{err}"
    );
}

#[test]
fn menus_are_checked() {
    let base = "[queue.general]\nskill = \"ko\"\n[queue.en]\nskill = \"en\"\n";
    let ok = format!("{base}[menu.lang]\n[[menu.lang.option]]\ndigit = \"1\"\nprompt = \"menu-en\"\nqueue = \"en\"\n[[route]]\nnumber = \"1209\"\nmenu = \"lang\"\n{STAFF}");
    assert!(Config::parse(&ok, "m").is_ok());
    let bad_queue = ok.replace("queue = \"en\"", "queue = \"xx\"");
    let err = Config::parse(&bad_queue, "m").unwrap_err().to_string();
    assert!(
        err.starts_with("m:9: menu 'lang': unknown queue 'xx'"),
        "{err}"
    );
    let both = format!("{base}[[route]]\nnumber = \"1\"\n");
    assert!(Config::parse(&both, "m")
        .unwrap_err()
        .to_string()
        .contains("exactly one of queue or menu"));
    let bad_digit = format!("{base}[queue.x]\nskill = \"ko\"\ndigits = {{ \"99\" = \"lang\" }}\n");
    assert!(Config::parse(&bad_digit, "m")
        .unwrap_err()
        .to_string()
        .contains("not a DTMF digit"));
}

#[test]
fn values_without_spans_point_at_their_key() {
    let src = "[sip]\nrealm = \"x\"\nt1_ms = 0\n";
    let err = Config::parse(src, "t.toml").unwrap_err().to_string();
    assert!(err.starts_with("t.toml:3: sip.t1_ms"), "{err}");
    let src = "[http]\n\n[queue.general]\nskill = \"ko\"\nmax_length = 0\n";
    let err = Config::parse(src, "q.toml").unwrap_err().to_string();
    assert!(err.starts_with("q.toml:3: queue 'general'"), "{err}");
    let src = "[sip]\nt1_ms = 18446744073709551615\n";
    assert!(
        Config::parse(src, "o.toml").is_err(),
        "huge timers are refused, not overflowed"
    );
}

#[test]
fn worker_threads_default_to_the_cpus_and_are_checked_with_their_line() {
    let src = &format!("[queue.general]\nskill = \"ko\"\n\n[runtime]\nworker_threads = 0\n{STAFF}");
    let e = Config::parse(src, "r.toml").unwrap_err().to_string();
    assert!(
        e.starts_with("r.toml:5: runtime.worker_threads must be 1..=1024, not 0"),
        "{e}"
    );
    let one = Config::parse(&src.replace("= 0", "= 1"), "r.toml").unwrap();
    assert_eq!(one.runtime.threads(), 1);
    let typo = Config::parse(&src.replace("worker_threads", "workers"), "r.toml")
        .unwrap_err()
        .to_string();
    assert!(typo.starts_with("r.toml:5:"), "{typo}");
    let default = Config::parse("", "d.toml").unwrap();
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(default.runtime.threads(), cpus);
}

#[test]
fn port_ranges_are_checked_with_their_line() {
    let cfg = |media: &str| format!("[queue.general]\nskill = \"ko\"\n\n[media]\n{media}\n{STAFF}");
    let e = Config::parse(
        &cfg("webrtc_port_min = 29000\nwebrtc_port_max = 30999"),
        "p.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("p.toml:4:")
            && e.contains("WebRTC ports 29000-30999 overlap the RTP ports 20000-29999"),
        "{e}"
    );
    let e = Config::parse(&cfg("rtp_port_min = 500\nrtp_port_max = 400"), "p.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rtp_port_min must be 1024..=rtp_port_max"),
        "{e}"
    );
    let e = Config::parse(
        &cfg("webrtc_port_min = 40000\nwebrtc_port_max = 39999"),
        "p.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("webrtc_port_min must be"), "{e}");
    let ok = Config::parse(
        &cfg("webrtc_port_min = 40000\nwebrtc_port_max = 40001"),
        "p.toml",
    )
    .unwrap();
    assert_eq!(
        (ok.media.webrtc_port_min, ok.media.webrtc_port_max),
        (40000, 40001)
    );
    let d = Config::parse(crate::config::DEFAULT_CONFIG, "default.toml").unwrap();
    assert_eq!(
        (d.media.webrtc_port_min, d.media.webrtc_port_max),
        (30000, 31999)
    );
}

#[test]
fn limit_actions_are_checked_with_their_line() {
    let q = |extra: &str| {
        format!("[outbound]\ntrunk = \"127.0.0.1:5090\"\n[queue.general]\nskill = \"ko\"\n{extra}\n[queue.en]\nskill = \"en\"\n{STAFF}")
    };
    let err = |extra: &str| Config::parse(&q(extra), "l.toml").unwrap_err().to_string();
    let e = err("when_max_wait = \"queue:nope\"");
    assert!(
        e.starts_with("l.toml:5:") && e.contains("unknown queue 'nope'"),
        "{e}"
    );
    let e = err("when_full = \"message:closed-en\"");
    assert!(e.contains("\"503\", \"480\", \"queue:NAME\""), "{e}");
    let e = err("when_max_wait = \"503\"");
    assert!(e.contains("when_max_wait '503' is not one of"), "{e}");
    let e = err("when_max_wait = \"callback\"");
    assert!(e.contains("needs callback_digit"), "{e}");
    let e = err("callback_offer_after_s = 30");
    assert!(e.contains("needs callback_digit"), "{e}");
    let ok = q("when_max_wait = \"queue:en\"\nwhen_full = \"queue:en\"");
    assert!(Config::parse(&ok, "l.toml").is_ok());
    let ok = q("when_max_wait = \"message:closed-en\"\nwhen_full = \"480\"");
    assert!(Config::parse(&ok, "l.toml").is_ok());
    let cb = q("callback_digit = \"*\"\ncallback_offer_after_s = 30\nwhen_max_wait = \"callback\"");
    let cfg = Config::parse(&cb, "l.toml").unwrap();
    assert!(cfg
        .prompt_names()
        .iter()
        .any(|(p, _)| p == "callback-offer-ko"));
}

#[test]
fn plain_http_on_a_public_address_is_refused_unless_tls_or_insecure() {
    let cfg = |http: &str| {
        Config::parse(
            &format!("[http]\nlisten = \"192.0.2.1:8443\"\n{http}\n{STAFF}"),
            "h.toml",
        )
        .unwrap()
    };
    let e = cfg("").check_runtime().unwrap_err().to_string();
    assert!(
        e.contains("plain HTTP on 192.0.2.1:8443") && e.contains("insecure"),
        "{e}"
    );
    assert!(cfg("tls = true").check_runtime().is_ok());
    assert!(cfg("insecure = true").check_runtime().is_ok());
    let e = Config::parse("[http]\ntls_cert = \"/c.pem\"\n", "h.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("h.toml:2:") && e.contains("without http.tls_key"),
        "{e}"
    );
}

#[test]
fn hashed_passwords_are_checked_at_load_and_match_the_password() {
    let md5 = ha1(false, "1005", "dasan", "pw5");
    let sha = ha1(true, "1005", "dasan", "pw5");
    let agents = |body: &str| {
        format!("[queue.q]\nskill = \"ko\"\n\n[[agents]]\n{body}\nskills = [\"ko\"]\n")
    };
    let cfg = Config::parse(
        &agents(&format!("ids = \"1005\"\npassword_ha1_md5 = \"{md5}\"")),
        "a.toml",
    )
    .unwrap();
    let c = &cfg.agent_specs()[0].credential;
    assert!(!c.is_plaintext());
    assert!(c.matches("1005", "dasan", "pw5"));
    assert!(!c.matches("1005", "dasan", "pw6"));
    assert!(!c.matches("1005", "other", "pw5"), "bound to the realm");
    assert_eq!(c.ha1(false, "1005", "dasan"), Some(md5.clone()));
    assert_eq!(c.ha1(true, "1005", "dasan"), None);
    assert!(!format!("{c:?}").contains(&md5), "Debug hides the hash");
    for (body, needle) in [
        (
            format!("ids = \"1005-1006\"\npassword_ha1_md5 = \"{md5}\""),
            "for one agent",
        ),
        (
            format!("ids = \"1005\"\npassword = \"x\"\npassword_ha1_md5 = \"{md5}\""),
            "not both",
        ),
        (
            "ids = \"1005\"\npassword_ha1_md5 = \"abc\"".to_string(),
            "32 hex digits",
        ),
        (
            format!("ids = \"1005\"\npassword_ha1_sha256 = \"{sha}\""),
            "no password_ha1_md5",
        ),
        ("ids = \"1005\"".to_string(), "must not be empty"),
    ] {
        let e = Config::parse(&agents(&body), "a.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("a.toml:") && e.contains(needle),
            "{body}: {e}"
        );
    }
    // SHA-256 challenged: the agent needs that hash too.
    let e = Config::parse(
        &format!(
            "[sip]\ndigest_algorithms = [\"MD5\", \"SHA-256\"]\n{}",
            agents(&format!("ids = \"1005\"\npassword_ha1_md5 = \"{md5}\""))
        ),
        "a.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no password_ha1_sha256"), "{e}");
}

#[test]
fn trunks_identified_by_client_certificates_are_checked_at_load() {
    let fp = "AB:".repeat(31) + "AB";
    let cfg = |sip: &str, trunk: &str| {
        Config::parse(
            &format!("{sip}\n[[trunk]]\nname = \"carrier\"\n{trunk}\n{STAFF}"),
            "t.toml",
        )
    };
    let tls = "[sip]\ntls_listen = \"127.0.0.1:5061\"";
    let c = cfg(tls, &format!("tls_client_certs = [\"{fp}\"]")).unwrap();
    assert_eq!(c.tls_client_pins(), vec![[0xAB; 32]]);
    for (sip, trunk, needle) in [
        (
            tls,
            "tls_client_certs = [\"AB:CD\"]".to_string(),
            "not a SHA-256 fingerprint",
        ),
        (
            "",
            format!("tls_client_certs = [\"{fp}\"]"),
            "need sip.tls_listen",
        ),
        (
            tls,
            String::new(),
            "give sources, tls_client_certs, tls_client_subjects or a mix",
        ),
        (
            tls,
            "tls_client_subjects = [\"carrier.example.net\"]".to_string(),
            "need sip.tls_client_ca",
        ),
        (
            "[sip]\ntls_listen = \"127.0.0.1:5061\"\ntls_client_ca = \"/etc/dasan/ca.pem\"",
            "tls_client_subjects = [\"*.example.net\"]".to_string(),
            "no wildcards",
        ),
    ] {
        let e = cfg(sip, &trunk).unwrap_err().to_string();
        assert!(
            e.starts_with("t.toml:") && e.contains(needle),
            "{trunk}: {e}"
        );
    }
}

#[test]
fn demo_credentials_refuse_public_listen() {
    let mut cfg = Config::parse(DEFAULT_CONFIG, "d").unwrap();
    assert!(cfg.check_runtime().is_ok());
    cfg.sip.listen = "192.0.2.1:5060".parse().unwrap();
    assert!(cfg
        .check_runtime()
        .unwrap_err()
        .to_string()
        .contains("demo"));
}

#[test]
fn hours_offsets_and_skills_parse_or_name_the_problem() {
    assert_eq!(parse_hours("09:00-22:00"), Some((540, 1320)));
    assert_eq!(parse_hours("22:00-06:00"), Some((1320, 360)), "overnight");
    // The last one was found by the config fuzzer: an hour this large overflowed u32 in
    // minutes (a panic in debug builds) before being refused.
    for bad in [
        "9-22",
        "09:00-09:00",
        "25:00-01:00",
        "09:60-10:00",
        "",
        "0000000001903340778:00-22:00",
    ] {
        assert_eq!(parse_hours(bad), None, "{bad}");
    }
    let c = |o: &str| {
        ClockConfig {
            utc_offset: o.into(),
        }
        .offset_s()
    };
    assert_eq!(
        (c("+09:00"), c("-03:30"), c("09:00")),
        (Some(32_400), Some(-12_600), None)
    );
    // Found by reading after the fuzzer's hours bug: the same eager multiplication.
    assert_eq!(c("+9999999999999999:00"), None);
    assert_eq!(parse_skill("en:3"), Ok(("en".into(), 3)));
    assert_eq!(parse_skill("ko"), Ok(("ko".into(), 5)));
    assert!(parse_skill("en:9").is_err() && parse_skill(":2").is_err());
    let err = Config::parse("[queue.en]\nskill = \"en\"\nhours = \"9 to 5\"\n", "h.toml")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("h.toml:3: queue 'en': hours"), "{err}");
    let cfg = Config::parse(
        &format!("[queue.q]\nskill = \"ko\"\nstrategy = \"ring-all\"\n{STAFF}"),
        "r.toml",
    )
    .unwrap();
    assert_eq!(cfg.queues["q"].strategy, crate::acd::Strategy::RingAll);
    let err = Config::parse(
        "[queue.q]\nskill = \"ko\"\nstrategy = \"ring-some\"\n",
        "r.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("r.toml:3:"), "{err}");
}

// What the engine used to parse again with silent fallbacks is now typed at load, and
// every such mistake is a load error naming the file and line.

#[test]
fn an_unknown_digest_algorithm_is_refused_with_its_line() {
    let src = format!("[sip]\nrealm = \"x\"\ndigest_algorithms = [\"MD5\",\n  \"SHA-1\"]\n{STAFF}");
    let e = Config::parse(&src, "d.toml").unwrap_err().to_string();
    assert!(e.starts_with("d.toml:4:") && e.contains("SHA-1"), "{e}");
    let e = Config::parse(
        &src.replace(",\n  \"SHA-1\"", "").replace("\"MD5\"", ""),
        "d.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("d.toml:3: sip.digest_algorithms"), "{e}");
    let ok = Config::parse(&src.replace("SHA-1", "SHA-256"), "d.toml").unwrap();
    assert_eq!(
        ok.sip.digest_algorithms,
        [DigestAlgorithm::Md5, DigestAlgorithm::Sha256]
    );
}

#[test]
fn a_bad_skill_is_refused_with_its_own_line() {
    let src = "[queue.general]\nskill = \"ko\"\n[[agents]]\nids = \"1001\"\npassword = \"pw\"\nskills = [\"ko\",\n  \"en:9\"]\n";
    let e = Config::parse(src, "s.toml").unwrap_err().to_string();
    assert!(
        e.starts_with("s.toml:7: skill 'en:9': the proficiency after ':' must be 1 to 5"),
        "{e}"
    );
    let ok = Config::parse(&src.replace("en:9", "en:3"), "s.toml").unwrap();
    assert_eq!(
        ok.agent_specs()[0].skills,
        [("ko".to_string(), 5), ("en".to_string(), 3)]
    );
}

#[test]
fn an_rtp_range_without_a_port_pair_is_refused_while_anchoring() {
    let cfg = |media: &str| format!("[queue.general]\nskill = \"ko\"\n\n[media]\n{media}\n{STAFF}");
    let narrow = "rtp_port_min = 20001\nrtp_port_max = 20002";
    let e = Config::parse(&cfg(narrow), "p.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("p.toml:4: media: RTP port range 20001-20002 is empty or invalid"),
        "{e}"
    );
    let relayed = Config::parse(&cfg(&format!("{narrow}\nanchor = false")), "p.toml").unwrap();
    assert!(
        relayed.engine().anchor.is_none(),
        "no pool needed without anchoring"
    );
    let ok = Config::parse(&cfg("rtp_port_min = 20000\nrtp_port_max = 20003"), "p.toml").unwrap();
    let anchor = ok.engine().anchor.as_ref().unwrap();
    assert_eq!(anchor.pool.capacity_calls(), 1);
    assert_eq!(anchor.timeout, std::time::Duration::from_secs(30));
}

#[test]
fn an_unknown_limit_action_is_refused_and_a_known_one_is_resolved() {
    let q = |extra: &str| {
        format!("[queue.en]\nskill = \"en\"\n[queue.general]\nskill = \"ko\"\n{extra}\n{STAFF}")
    };
    let e = Config::parse(&q("when_max_wait = \"hang-up\""), "l.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("l.toml:5: queue 'general': when_max_wait 'hang-up' is not one of"),
        "{e}"
    );
    let e = Config::parse(&q("when_full = \"queue:\""), "l.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("l.toml:5: queue 'general': when_full 'queue:' is not one of"),
        "{e}"
    );
    let cfg = Config::parse(
        &q("when_max_wait = \"queue:en\"\nwhen_full = \"480\""),
        "l.toml",
    )
    .unwrap();
    let general = &cfg.engine().queues[1];
    assert_eq!(general.acd.name, "general");
    assert_eq!(
        general.timing.when_max_wait,
        Limit::Queue(0),
        "en is queue 0"
    );
    assert_eq!(general.timing.when_full, Limit::Reject(480));
    assert_eq!(cfg.engine().queues[0].timing.when_full, Limit::Reject(503));
}

#[test]
fn a_queue_no_agent_can_serve_is_refused_with_its_line() {
    let src = "[[route]]\nnumber = \"120\"\nqueue = \"general\"\n[queue.general]\nskill = \"ko\"\n[queue.en]\nskill = \"en\"\n[[route]]\nnumber = \"121\"\nqueue = \"en\"\n[[agents]]\nids = \"1001\"\npassword = \"pw\"\nskills = [\"ko\"]\n";
    let e = Config::parse(src, "a.toml").unwrap_err().to_string();
    assert!(
        e.starts_with("a.toml:7: queue 'en': no agent has skill 'en'"),
        "{e}"
    );
    // Named by nothing at all: still no one could ever take its calls (transfers reach
    // queues by name).
    let unrouted = src.replace("[[route]]\nnumber = \"121\"\nqueue = \"en\"\n", "");
    let e = Config::parse(&unrouted, "a.toml").unwrap_err().to_string();
    assert!(e.starts_with("a.toml:7: queue 'en'"), "{e}");
    // Reached by overflow and by a menu: an error as well.
    let both = unrouted.replace(
        "[queue.general]\nskill = \"ko\"\n",
        "[queue.general]\nskill = \"ko\"\nwhen_full = \"queue:en\"\noverflow = { after_s = 60, queue = \"en\" }\n",
    );
    let e = Config::parse(&both, "a.toml").unwrap_err().to_string();
    assert!(
        e.starts_with("a.toml:9: queue 'en': no agent has skill 'en'"),
        "{e}"
    );
    assert!(Config::parse(DEFAULT_CONFIG, "d")
        .unwrap()
        .warnings()
        .is_empty());
}

#[test]
fn a_queue_only_overflow_reaches_without_agents_is_a_warning() {
    let src = "[[route]]\nnumber = \"120\"\nqueue = \"general\"\n[queue.general]\nskill = \"ko\"\noverflow = { after_s = 60, queue = \"night\" }\n[queue.night]\nskill = \"night\"\nwhen_max_wait = \"message:closed-en\"\n[[agents]]\nids = \"1001\"\npassword = \"pw\"\nskills = [\"ko\"]\n";
    let cfg = Config::parse(src, "w.toml").unwrap();
    let w: Vec<String> = cfg.warnings().iter().map(|w| w.to_string()).collect();
    assert_eq!(
        w,
        ["w.toml:8: warning: queue 'night': no agent has skill 'night', so calls that overflow here wait for no one"]
    );
    assert_eq!(
        cfg.engine().queues[0].timing.overflow,
        Some((std::time::Duration::from_secs(60), 1))
    );
}

#[test]
fn the_engine_settings_hold_parsed_values() {
    let cfg = Config::parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME).unwrap();
    let s = cfg.engine();
    let names: Vec<&str> = s.queues.iter().map(|q| q.acd.name.as_str()).collect();
    assert_eq!(names, ["en", "general", "ja", "mn", "sign", "vi", "zh"]);
    assert_eq!(s.video_routes["120"], 4, "video calls to 120 go to sign");
    assert!(s.queues[4].timing.video && !s.queues[1].timing.video);
    assert_eq!(s.routes["1203"], RouteTarget::Queue(4));
    assert_eq!(s.utc_offset_s, 9 * 3600);
    assert_eq!(
        s.trusted[0].0,
        "127.0.0.0/8".parse::<ipnet::IpNet>().unwrap()
    );
    assert_eq!(s.routes["120"], RouteTarget::Queue(1));
    assert_eq!(s.routes["1209"], RouteTarget::Menu("languages".into(), 1));
    let en = &s.queues[0].timing;
    assert_eq!(en.hours, Some((540, 1320)));
    assert_eq!(en.closed_fallback, Some(1));
    assert_eq!(en.closed_prompt.as_deref(), Some("closed-en"));
    let general = &s.queues[1];
    assert_eq!(
        general.digits.get(&'9').map(String::as_str),
        Some("languages")
    );
    assert_eq!(
        general.timing.music,
        crate::media::prompt::MusicRef::Ringback
    );
    let menu = &s.menus["languages"];
    assert_eq!((menu.options[0].digit, menu.options[0].queue), ('1', 0));
    assert_eq!(menu.fallback, 1);
}

#[test]
fn a_callback_needs_at_least_one_attempt() {
    let src = format!("[outbound]\ntrunk = \"127.0.0.1:5090\"\n[queue.general]\nskill = \"ko\"\ncallback_digit = \"*\"\ncallback_attempts = 0\n{STAFF}");
    let e = Config::parse(&src, "c.toml").unwrap_err().to_string();
    assert!(
        e.starts_with("c.toml:3: queue 'general': callback_attempts must be at least 1"),
        "{e}"
    );
    let ok = Config::parse(&src.replace("= 0", "= 2"), "c.toml").unwrap();
    assert_eq!(
        ok.engine().queues[0].timing.callback,
        Some(('*', 2, std::time::Duration::from_secs(60)))
    );
}

#[test]
fn outbound_dial_patterns_are_checked_with_their_line() {
    let src = format!("[outbound]\ntrunk = \"127.0.0.1:5090\"\nallow = [\"0Z.\", \"0A\"]\n[queue.general]\nskill = \"ko\"\n{STAFF}");
    let err = Config::parse(&src, "o.toml").unwrap_err().to_string();
    assert!(err.starts_with("o.toml:3: outbound.allow"), "{err}");
    let cfg = Config::parse(
        &format!("[queue.general]\nskill = \"ko\"\n{STAFF}"),
        "d.toml",
    )
    .unwrap();
    let rules = &cfg.engine().outbound_rules;
    assert!(rules.permits("01012345678") && !rules.permits("0012025550100"));
}

#[test]
fn web_origins_metrics_token_and_login_throttle_are_typed_or_refused_with_their_line() {
    let src = format!(
        "[http]\nallowed_origins = [\"HTTPS://Desk.Example:443\", \"http://[::1]:8080\"]\nmetrics_token = \"{}\"\nlogin_block_s = 30\n[queue.general]\nskill = \"ko\"\n{STAFF}",
        "m".repeat(20)
    );
    let ok = Config::parse(&src, "h.toml").unwrap();
    let o = &ok.http.allowed_origins;
    assert_eq!(o[0].to_string(), "https://desk.example");
    assert_eq!(o[0], WebOrigin::parse("https://desk.example").unwrap());
    assert_eq!((o[1].host.as_str(), o[1].port), ("[::1]", Some(8080)));
    assert_eq!(ok.http.login_block_s, 30);
    assert_eq!(
        (ok.http.login_max_failures, ok.http.login_window_s),
        (10, 60)
    );
    for (bad, line, what) in [
        ("\"https://desk.example/agent\"", 2, "not an origin"),
        ("\"desk.example\"", 2, "not an origin"),
        ("\"ftp://desk.example\"", 2, "not an origin"),
        ("\"https://user@desk.example\"", 2, "not an origin"),
        ("\"null\"", 2, "not an origin"),
    ] {
        let e = Config::parse(&src.replace("\"HTTPS://Desk.Example:443\"", bad), "h.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("h.toml:{line}:")) && e.contains(what),
            "{bad}: {e}"
        );
    }
    let e = Config::parse(&src.replace(&"m".repeat(20), "short"), "h.toml")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("h.toml:3: http.metrics_token"), "{e}");
    let e = Config::parse(
        &src.replace("login_block_s = 30", "login_block_s = 0"),
        "h.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("h.toml:4: http.login_block_s must be 1"),
        "{e}"
    );
    let e = Config::parse(&src.replace("login_block_s", "login_blok_s"), "h.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("h.toml:4:") && e.contains("login_blok_s"),
        "{e}"
    );
}

#[test]
fn srtp_policies_need_tls_and_anchored_media_and_name_the_line() {
    let cfg = |sip: &str, trunk: &str, agents: &str, media: &str| {
        Config::parse(
            &format!(
                "{sip}\n[[trunk]]\nname = \"carrier\"\nsources = [\"10.0.0.0/8\"]\n{trunk}\n[[route]]\nnumber = \"120\"\nqueue = \"general\"\n[queue.general]\nskill = \"ko\"\n[[agents]]\nids = \"1001\"\npassword = \"pw\"\nskills = [\"ko\"]\n{agents}\n{media}"
            ),
            "s.toml",
        )
    };
    let tls = "[sip]\ntls_listen = \"127.0.0.1:5061\"";
    let c = cfg(tls, "srtp = \"mandatory\"", "srtp = \"optional\"", "").unwrap();
    let s = c.engine();
    assert_eq!(
        s.trunk_srtp.get("carrier").copied(),
        Some(crate::config::SrtpPolicy::Mandatory)
    );
    assert_eq!(s.agents[0].srtp, crate::config::SrtpPolicy::Optional);
    let c = cfg("", "srtp = \"off\"", "", "").unwrap();
    assert_eq!(c.engine().agents[0].srtp, crate::config::SrtpPolicy::Off);
    for (sip, trunk, agents, media, line, needle) in [
        (
            "",
            "srtp = \"mandatory\"",
            "",
            "",
            5,
            "srtp needs sip.tls_listen",
        ),
        (
            "",
            "",
            "srtp = \"optional\"",
            "",
            15,
            "srtp needs sip.tls_listen",
        ),
        (
            tls,
            "srtp = \"optional\"",
            "",
            "[media]\nanchor = false",
            6,
            "srtp needs media.anchor",
        ),
        (tls, "srtp = \"yes\"", "", "", 6, "unknown variant"),
    ] {
        let e = cfg(sip, trunk, agents, media).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("s.toml:{line}")) && e.contains(needle),
            "{trunk} {agents}: {e}"
        );
    }
}

#[test]
fn ice_servers_and_the_advertised_media_address_are_checked() {
    let cfg = |extra: &str| Config::parse(&format!("{extra}\n{STAFF}"), "w.toml");
    let c = cfg("[webrtc]\nice_servers = [{ urls = [\"stun:stun.example.org:3478\"] }, { urls = [\"turns:turn.example.org\"], username = \"u\", credential = \"p\" }]\n[media]\nadvertise = \"203.0.113.7\"").unwrap();
    assert_eq!(c.webrtc.ice_servers.len(), 2);
    assert_eq!(c.media.advertise, Some("203.0.113.7".parse().unwrap()));
    let json = serde_json::to_string(&c.webrtc.ice_servers).unwrap();
    assert_eq!(
        json,
        r#"[{"urls":["stun:stun.example.org:3478"]},{"urls":["turns:turn.example.org"],"username":"u","credential":"p"}]"#
    );
    for (extra, needle) in [
        (
            "[webrtc]\nice_servers = [{ urls = [\"http://x\"] }]",
            "not a stun:",
        ),
        (
            "[webrtc]\nice_servers = [{ urls = [\"turn:turn.example.org\"] }]",
            "needs username and credential",
        ),
        ("[webrtc]\nice_servers = [{ urls = [] }]", "needs urls"),
        (
            "[webrtc]\nice_servers = [{ urls = [\"stun:\"] }]",
            "names no server",
        ),
        (
            "[webrtc]\nice_servers = [{ url = \"stun:x\" }]",
            "unknown field",
        ),
        ("[media]\nadvertise = \"0.0.0.0\"", "media.advertise"),
    ] {
        let e = cfg(extra).unwrap_err().to_string();
        assert!(
            e.starts_with("w.toml:") && e.contains(needle),
            "{extra}: {e}"
        );
    }
}

#[test]
fn video_routes_and_channels_are_checked_with_their_line() {
    let base = "[[route]]\nnumber = \"120\"\nqueue = \"general\"\nvideo_queue = \"sign\"\n[queue.general]\nskill = \"ko\"\n";
    let err = Config::parse(base, "v.toml").unwrap_err().to_string();
    assert!(
        err.starts_with("v.toml:4: route '120' names unknown video_queue 'sign'"),
        "{err}"
    );
    let src = format!("{base}[queue.sign]\nskill = \"ksl\"\n");
    let err = Config::parse(&src, "v.toml").unwrap_err().to_string();
    assert!(
        err.starts_with("v.toml:4: route '120': video_queue 'sign' does not take video"),
        "{err}"
    );
    let src = format!("{base}[queue.sign]\nskill = \"ksl\"\nchannels = [\"vidoe\"]\n");
    let err = Config::parse(&src, "v.toml").unwrap_err().to_string();
    assert!(
        err.starts_with("v.toml:9: queue 'sign': channel 'vidoe' is not"),
        "{err}"
    );
    let err = Config::parse("[video]\nmax_kpbs = 1\n", "v.toml")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("v.toml:2"), "{err}");
}
