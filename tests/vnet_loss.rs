//! The fast, deterministic twin of `e2e_sipp::ten_percent_signalling_loss_loses_no_call`:
//! 4 agents, 40 calls at 10 calls/s held 200 ms, 10 % loss on every link both ways, in
//! virtual time. (The SIPp test stays: it checks interoperability with SIPp.)

mod vnet;

use std::time::Duration;
use vnet::agent::AgentScript;
use vnet::caller::CallerScript;
use vnet::net::Impairment;
use vnet::world::World;

#[test]
fn ten_percent_signalling_loss_loses_no_call() {
    let loss = Impairment {
        loss: 0.10,
        duplicate: 0.0,
        delay: Duration::from_millis(1),
        jitter: Duration::ZERO,
    };
    let mut w = World::new(
        10,
        &vnet::config(&vnet::korean_queue("1001-1004", "")),
        loss,
    );
    for i in 0..4 {
        w.add_agent(AgentScript {
            id: format!("100{}", i + 1),
            password: "pw".into(),
            register_at: Duration::from_millis(10 * i),
            // Like agent.xml: 180 and 200 at once, then wait for the caller's BYE.
            offers: Vec::new(),
            ready_again: Duration::from_secs(1),
        });
    }
    let registered = w.run_until("4 agents ready", |w| {
        w.engine.agent_states().iter().all(|(_, s)| *s == "ready")
    });
    assert_eq!(registered, Ok(()));
    let start = w.net.elapsed();
    for i in 0..40u32 {
        w.add_caller(CallerScript {
            at: start + Duration::from_millis(100) * i,
            number: "120".into(),
            hang_up: None,
            talk: Duration::from_millis(200),
            digits: Vec::new(),
            reinvite: None,
        });
    }
    let problems = w.finish();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let answered = w
        .metrics
        .calls
        .with_label_values(&["general", "answered"])
        .get();
    assert_eq!(answered, 40, "every call answered");
    assert!(
        w.metrics.sip_retransmissions.get() > 0,
        "loss must have caused retransmissions"
    );
    assert!(w.net.stats.lost > 0);
    assert_eq!(w.engine.transactions(), 0);
    assert_eq!(w.engine.active_calls(), 0);
}
