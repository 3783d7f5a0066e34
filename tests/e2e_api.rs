//! The HTTP API against the real engine: authentication, the knowledge base, records
//! queries and their bad-input answers.

mod common;
use common::*;

#[test]
fn api_needs_a_token_answers_bad_input_with_4xx_and_searches_the_kb() {
    let base = port_block();
    let dir = workdir("api");
    let e = EngineProc::start(&dir, &test_config(""), base, base + 1);
    let port = e.http_port;
    // Probes stay open; the API does not.
    assert_eq!(http_get_as(port, "/healthz", None).unwrap().0, 200);
    assert_eq!(http_get_as(port, "/metrics", None).unwrap().0, 200);
    for path in [
        "/api/agents",
        "/api/records",
        "/api/kb?q=여권",
        "/api/stats",
    ] {
        let (code, body) = http_get_as(port, path, None).unwrap();
        assert_eq!(code, 401, "{path}: {body}");
        assert!(body.contains("\"error\""), "{path}: {body}");
        let (code, _) = http_get_as(port, path, Some("not-a-token")).unwrap();
        assert_eq!(code, 401, "{path}");
    }
    // Every operation api/openapi.json documents is served, and under /api needs a token,
    // except those it marks public (`security: []`: the citizen's web chat), which answer
    // bad input without asking for one.
    let spec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("api/openapi.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let concrete = path.replace("{id}", "x");
            let (code, body) = http_send(port, &method.to_uppercase(), &concrete, None, "{}");
            if path.starts_with("/api/") && op["security"] == serde_json::json!([]) {
                assert!(
                    (400..500).contains(&code) && code != 401,
                    "{method} {path}: {code} {body}"
                );
                continue;
            }
            let want = if path.starts_with("/api/") { 401 } else { 200 };
            assert_eq!(code, want, "{method} {path}: {body}");
        }
    }
    // The knowledge base: the sample set is loaded at first start; Korean queries work.
    let (code, body) = e
        .http_get("/api/kb?q=%EB%8C%80%ED%98%95%ED%8F%90%EA%B8%B0%EB%AC%BC")
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let first = &v["results"][0];
    assert!(
        first["title"].as_str().unwrap().contains("대형폐기물"),
        "{body}"
    );
    let id = first["id"].as_i64().unwrap();
    let (code, body) = e.http_get(&format!("/api/kb/{id}")).unwrap();
    assert_eq!(code, 200, "{body}");
    for (path, code) in [
        ("/api/kb", 400),
        ("/api/kb?q=", 400),
        ("/api/kb?q=x&limit=0", 400),
        ("/api/kb?q=x&bogus=1", 400),
        ("/api/kb/abc", 400),
        ("/api/kb/999999", 404),
        ("/api/records?from=yesterday", 400),
        ("/api/records?format=xml", 400),
        ("/api/records?limit=5000", 400),
        ("/api/records?cursor=zzz", 400),
        ("/api/records/nope", 404),
        ("/api/nothing-here", 404),
    ] {
        let (got, body) = e.http_get(path).unwrap();
        assert_eq!(got, code, "{path}: {body}");
        assert!(body.contains("\"error\""), "{path}: {body}");
    }
    let (code, body) = e.http_get("/api/records?format=csv").unwrap();
    assert_eq!(code, 200);
    assert!(body.starts_with("call_id,sip_call_id,"), "{body}");
}

const AGENT_TOKEN: &str = "agent-1001-token-abcdef";
const AGENT2_TOKEN: &str = "agent-1002-token-abcdef";
const REPORT_TOKEN: &str = "reporting-token-abcdef12";

/// Agents' states, queues and calls through the API, with roles, bad bodies, a
/// supervisor's hang-up, the agent's notes on the record, and the audit trail.
#[test]
fn agents_queues_calls_and_notes_through_the_api() {
    let base = port_block();
    let dir = workdir("api-ops");
    let mut config = test_config("");
    config = config.replace(
        "[[agents]]",
        &format!(
            "[[http.tokens]]\ntoken = \"{AGENT_TOKEN}\"\nrole = \"agent\"\nagent = \"1001\"\n\n[[http.tokens]]\ntoken = \"{AGENT2_TOKEN}\"\nrole = \"agent\"\nagent = \"1002\"\n\n[[http.tokens]]\ntoken = \"{REPORT_TOKEN}\"\nrole = \"reporting\"\n\n[[agents]]"
        ),
    );
    let e = EngineProc::start(&dir, &config, base, base + 1);
    let port = e.http_port;
    let post =
        |path: &str, token: &str, body: &str| http_send(port, "POST", path, Some(token), body);

    let (code, body) = e.http_get("/api/agents/1001").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"logged-out\"") && body.contains("\"ko\""),
        "{body}"
    );
    assert_eq!(e.http_get("/api/agents/9999").unwrap().0, 404);
    let (code, body) = post("/api/agents/1001/state", API_TOKEN, r#"{"state":"ready"}"#);
    assert_eq!(code, 409, "a logged-out phone must register first: {body}");

    // Agent 1001's phone (SIPp) registers and will answer one call.
    let (phone_port, reg_port) = (base + 2, base + 3);
    let mut a = base_args(e.sip_port, phone_port, base + 10, base + 30);
    a.extend(args(&[
        "-sf",
        &scenarios().join("agent.xml").display().to_string(),
        "-m",
        "1",
        "-timeout",
        "60s",
    ]));
    let phone = sipp(&dir, "phone", &a);
    std::thread::sleep(std::time::Duration::from_millis(200));
    register_agent(
        &dir,
        e.sip_port,
        "1001",
        phone_port,
        (reg_port, base + 14, base + 31),
    );
    assert_eq!(e.agent_state("1001"), "ready");

    // Roles and bad bodies.
    for (path, token, body, code) in [
        (
            "/api/agents/1002/state",
            AGENT_TOKEN,
            r#"{"state":"ready"}"#,
            403,
        ),
        (
            "/api/agents/1001/state",
            REPORT_TOKEN,
            r#"{"state":"ready"}"#,
            403,
        ),
        (
            "/api/agents/1001/state",
            API_TOKEN,
            r#"{"state":"nap"}"#,
            400,
        ),
        (
            "/api/agents/1001/state",
            API_TOKEN,
            r#"{"state":"not-ready"}"#,
            400,
        ),
        (
            "/api/agents/1001/state",
            API_TOKEN,
            r#"{"state":"ready","mood":1}"#,
            400,
        ),
        ("/api/agents/1001/state", API_TOKEN, r#"{"state":"#, 400),
        (
            "/api/agents/9999/state",
            API_TOKEN,
            r#"{"state":"ready"}"#,
            404,
        ),
        ("/api/calls/nope/hangup", API_TOKEN, "", 404),
        ("/api/calls/nope/hangup", AGENT_TOKEN, "", 403),
    ] {
        let (got, resp) = post(path, token, body);
        assert_eq!(got, code, "{path} {body}: {resp}");
        assert!(resp.contains("\"error\""), "{resp}");
    }
    // What an agent token sees (the README's roles): its own agent, not the others,
    // queues, records or statistics; the knowledge base.
    let (code, body) = http_get_as(port, "/api/agents", Some(AGENT_TOKEN)).unwrap();
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(list.as_array().map(|a| a.len()), Some(1), "{body}");
    assert_eq!(list[0]["id"], "1001");
    let (_, all) = http_get_as(port, "/api/agents", Some(REPORT_TOKEN)).unwrap();
    assert!(all.contains("\"1004\""), "{all}");
    for (path, code) in [
        ("/api/agents/1001", 200),
        ("/api/agents/1002", 403),
        ("/api/queues", 403),
        ("/api/stats", 403),
        ("/api/records", 403),
        ("/api/records/x", 403),
        ("/api/kb?q=%EC%97%AC%EA%B6%8C", 200),
    ] {
        let (got, body) = http_get_as(port, path, Some(AGENT_TOKEN)).unwrap();
        assert_eq!(got, code, "agent token, {path}: {body}");
        let (got, body) = http_get_as(port, path, Some(REPORT_TOKEN)).unwrap();
        assert_ne!(got, 403, "reporting token, {path}: {body}");
    }
    // The agent takes a break and comes back.
    let (code, body) = post(
        "/api/agents/1001/state",
        AGENT_TOKEN,
        r#"{"state":"not-ready","reason":"lunch"}"#,
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"not-ready\"") && body.contains("\"lunch\""),
        "{body}"
    );
    let (code, body) = post(
        "/api/agents/1001/state",
        AGENT_TOKEN,
        r#"{"state":"ready"}"#,
    );
    assert_eq!(code, 200, "{body}");

    // A call: seen in /api/calls (numbers by role), then hung up by a supervisor.
    let mut a = base_args(e.sip_port, base + 4, base + 18, base + 32);
    a.extend(args(&[
        "-sf",
        &scenarios().join("caller-hungup.xml").display().to_string(),
        "-s",
        "120",
        "-m",
        "1",
        "-timeout",
        "60s",
    ]));
    let caller = sipp(&dir, "caller", &a);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let call_id = loop {
        let (_, body) = e.http_get("/api/calls").unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(c) = v
            .as_array()
            .and_then(|a| a.iter().find(|c| c["state"] == "talking"))
        {
            assert_eq!(c["caller"], "0212345678");
            assert_eq!(c["agent"], "1001");
            break c["call_id"].as_str().unwrap().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no call in progress: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let (_, masked) = http_get_as(port, "/api/calls", Some(REPORT_TOKEN)).unwrap();
    assert!(
        !masked.contains("0212345678") && masked.contains(&call_id),
        "{masked}"
    );
    // An agent token sees the calls it is on (numbers masked), and no one else's.
    let (code, own) = http_get_as(port, "/api/calls", Some(AGENT_TOKEN)).unwrap();
    assert_eq!(code, 200, "{own}");
    assert!(
        !own.contains("0212345678") && own.contains(&call_id),
        "{own}"
    );
    let (code, other) = http_get_as(port, "/api/calls", Some(AGENT2_TOKEN)).unwrap();
    assert_eq!((code, other.as_str()), (200, "[]"));
    let (code, body) = e.http_get("/api/queues").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("\"general\""), "{body}");
    let (code, body) = post(&format!("/api/calls/{call_id}/hangup"), API_TOKEN, "");
    assert_eq!(code, 200, "{body}");
    caller.expect_success(std::time::Duration::from_secs(30));
    phone.expect_success(std::time::Duration::from_secs(30));

    // The agent writes the consultation form on its call; reporting cannot.
    let notes = r#"{"category":"여권","notes":"발급 기간 안내"}"#;
    let path = format!("/api/records/{call_id}");
    assert_eq!(
        http_send(port, "PATCH", &path, Some(REPORT_TOKEN), notes).0,
        403
    );
    assert_eq!(
        http_send(port, "PATCH", &path, Some(API_TOKEN), "{}").0,
        400
    );
    let (code, body) = http_send(port, "PATCH", &path, Some(AGENT_TOKEN), notes);
    assert_eq!(code, 202, "{body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, body) = e.http_get(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["notes"] == "발급 기간 안내" {
            assert_eq!(v["category"], "여권");
            assert_eq!(v["outcome"], "answered");
            assert_eq!(v["agent"], "1001");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "notes not stored: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Every state change above is in the audit trail.
    let db = rusqlite::Connection::open(dir.join("data/records.db")).unwrap();
    let actions: Vec<(String, String)> = db
        .prepare("SELECT actor, action FROM audit ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expect = [
        ("agent:1001", "agent-state"),
        ("agent:1001", "agent-state"),
        ("supervisor", "hang-up"),
        ("agent:1001", "record-notes"),
    ];
    assert_eq!(
        actions
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect::<Vec<_>>(),
        expect
    );
}
