//! How a run ends, and what must hold then: no transaction, call or timer left in the
//! engine, one record per call with one outcome, no agent stuck, no phone left hanging.

use super::world::World;
use dasan::records::RecordEvent;
use std::collections::HashMap;
use std::time::Duration;

/// Longer than any wrap-up or busy delay we configure, and than 64*T1.
const SETTLE: Duration = Duration::from_secs(60);

impl World {
    /// Plays every script out, lets the engine drain, checks, then ends the agents' shift
    /// and checks that nothing at all is left. Returns what went wrong.
    pub fn finish(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        type Done = fn(&World) -> bool;
        let steps: [(&str, Done); 2] = [
            ("every caller's call to end", |w| {
                w.callers.iter().all(|c| c.end().is_some())
            }),
            ("the engine and the phones to drain", |w| {
                w.engine.transactions() == 0
                    && w.engine.active_calls() == 0
                    && w.net.is_empty()
                    && w.callers.iter().all(|c| c.stack.idle())
                    && w.agents.iter().all(|a| a.idle())
            }),
        ];
        for (what, done) in steps {
            if let Err(e) = self.run_until(what, done) {
                problems.push(e);
                problems.extend(self.check());
                return problems;
            }
        }
        if let Err(e) = self.run_for(SETTLE) {
            problems.push(e);
        }
        problems.extend(self.check());
        let now = self.now();
        for a in self.agents.iter_mut() {
            a.unregister(now);
        }
        if let Err(e) = self.run_until_idle() {
            problems.push(format!("after the agents unregistered: {e}"));
        }
        if self.engine.transactions() != 0 {
            problems.push(format!(
                "{} transactions left after the shift ended",
                self.engine.transactions()
            ));
        }
        problems
    }

    /// Every invariant, on the current state.
    pub fn check(&self) -> Vec<String> {
        let mut p = self.violations.clone();
        if self.engine.transactions() != 0 {
            p.push(format!("{} transactions left", self.engine.transactions()));
        }
        if self.engine.active_calls() != 0 {
            p.push(format!("{} calls left", self.engine.active_calls()));
        }
        if self.metrics.sip_transactions.get() != 0 {
            p.push(format!(
                "sip_transactions gauge at {}",
                self.metrics.sip_transactions.get()
            ));
        }
        if self.metrics.calls_active.get() != 0 {
            p.push(format!(
                "calls_active gauge at {}",
                self.metrics.calls_active.get()
            ));
        }
        for (id, state) in self.engine.agent_states() {
            if !matches!(state, "ready" | "logged-out" | "not-ready") {
                p.push(format!("agent {id} stuck in {state}"));
            }
        }
        for (i, c) in self.callers.iter().enumerate() {
            if c.end().is_none() || !c.stack.idle() {
                p.push(format!(
                    "caller {i} ({}) not finished: {:?}, {}; trace: {}",
                    c.call_id,
                    c.end(),
                    c.stack.describe(),
                    c.trace.join(", ")
                ));
            }
        }
        for a in &self.agents {
            p.extend(a.problems.iter().cloned());
            let open = a.open_calls();
            if !open.is_empty() || !a.stack.idle() {
                p.push(format!(
                    "agent {} not finished: {open:?}, {}; trace: {}",
                    a.script.id,
                    a.stack.describe(),
                    a.trace.join(", ")
                ));
            }
        }
        p.extend(self.check_records());
        p
    }

    /// One Arrived and one Ended per call that reached the engine, in that order, and the
    /// record answered exactly when the caller was.
    fn check_records(&self) -> Vec<String> {
        let mut p = Vec::new();
        let mut by_id: HashMap<&str, Vec<&RecordEvent>> = HashMap::new();
        let mut by_call_id: HashMap<&str, Vec<&str>> = HashMap::new();
        for r in &self.records {
            // Not a call's: the audit trail and agents' away periods.
            if matches!(
                r,
                RecordEvent::Audit { .. } | RecordEvent::AgentState { .. }
            ) {
                continue;
            }
            by_id.entry(r.id()).or_default().push(r);
            if let RecordEvent::Arrived {
                id, sip_call_id, ..
            } = r
            {
                by_call_id.entry(sip_call_id).or_default().push(id);
            }
        }
        for (id, evs) in &by_id {
            if !matches!(evs.first(), Some(RecordEvent::Arrived { .. })) {
                p.push(format!("record {id} does not start with Arrived: {evs:?}"));
            }
            let ended: Vec<usize> = evs
                .iter()
                .enumerate()
                .filter(|(_, e)| matches!(e, RecordEvent::Ended { .. }))
                .map(|(i, _)| i)
                .collect();
            let after_end = ended.first().map_or(0, |&i| {
                evs[i + 1..]
                    .iter()
                    .filter(|e| {
                        // What follows a call's end: the survey, the agent's notes, and how
                        // long the agent's after-call work took.
                        !matches!(
                            e,
                            RecordEvent::Survey { .. }
                                | RecordEvent::Notes { .. }
                                | RecordEvent::WrapUp { .. }
                        )
                    })
                    .count()
            });
            if ended.len() != 1 || after_end != 0 {
                p.push(format!(
                    "record {id} has {} Ended and {after_end} events after it: {evs:?}",
                    ended.len()
                ));
            }
        }
        for (i, c) in self.callers.iter().enumerate() {
            let ids = by_call_id
                .get(c.call_id.as_str())
                .cloned()
                .unwrap_or_default();
            if !self.reached[i] {
                if !ids.is_empty() {
                    p.push(format!(
                        "caller {i} never reached the engine yet has a record"
                    ));
                }
                continue;
            }
            let [id] = ids[..] else {
                p.push(format!(
                    "caller {i} ({}) has {} records",
                    c.call_id,
                    ids.len()
                ));
                continue;
            };
            let answered = by_id[id]
                .iter()
                .any(|e| matches!(e, RecordEvent::Answered { .. }));
            if answered != c.answered {
                p.push(format!(
                    "caller {i}: answered {} but its record says {answered}: {:?}; trace: {}",
                    c.answered,
                    by_id[id],
                    c.trace.join(", ")
                ));
            }
        }
        let callers: Vec<&str> = self.callers.iter().map(|c| c.call_id.as_str()).collect();
        for call_id in by_call_id.keys() {
            if !callers.contains(call_id) {
                p.push(format!(
                    "a record for Call-ID {call_id}, which no caller used"
                ));
            }
        }
        p
    }
}
