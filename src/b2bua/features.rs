//! Feature codes dialled from an agent's phone (`*21` toggles ready, `*22` logs out):
//! authenticated with the agent's own credentials (407 proxy digest), answered with a final
//! response whose reason phrase names the new state.

use super::{api, response, Engine};
use crate::sip::message::Message;
use std::time::Instant;

impl Engine {
    /// An agent's phone dialled a feature code: authenticate (407 proxy digest) and change
    /// the agent's state; the final response's reason phrase names the result.
    pub(super) fn on_feature_code(
        &mut self,
        now: Instant,
        tx: u64,
        flow: crate::sip::Flow,
        msg: Message,
        code: &str,
    ) {
        let unix = self.unix_now(now);
        let verdict = self.registrar.authenticate(&msg, flow, now, unix);
        self.note_auth_events("sip-feature-code");
        let agent = match verdict {
            Ok(a) => a,
            Err(resp) => {
                // 407 and 403 before authentication: one copy, no transaction kept.
                self.respond_stateless(tx, resp);
                return;
            }
        };
        let id = self.acd.agent_id(agent).to_string();
        let change = if code == self.cfg.features.logout {
            api::StateChange::Logout
        } else if self.acd.agent_state(agent) == &crate::acd::AgentState::Ready {
            api::StateChange::NotReady("feature code".into())
        } else {
            api::StateChange::Ready
        };
        let (status, phrase) = match self.set_agent_state(now, &id, change) {
            Ok(v) => (
                603,
                match v.state {
                    "ready" => "Ready",
                    "not-ready" => "Not Ready",
                    "logged-out" => "Logged Out",
                    other => other,
                }
                .to_string(),
            ),
            Err(api::ApiRefusal::State(crate::acd::StateError::Busy)) => {
                (486, "Busy: Change After The Call".to_string())
            }
            Err(api::ApiRefusal::State(crate::acd::StateError::LoggedOut)) => {
                (603, "Register First".to_string())
            }
            Err(_) => (404, "Not Found".to_string()),
        };
        let resp = response(&msg, status, Some(&phrase), Some(&self.ids.token(10)));
        self.respond(now, tx, resp);
    }
}
