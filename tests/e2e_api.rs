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
