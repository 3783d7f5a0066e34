//! The engine task's handle: what the HTTP API, the wallboard and the browser desktops ask
//! of the engine, as typed async calls. The engine itself is owned by one task and needs no
//! lock; each call here is a message to that task and a one-shot reply.

use super::CoreEvent;
use crate::b2bua::api::{AgentView, ApiRefusal, CallView, QueueView, StateChange};
use crate::b2bua::{TextRefusal, WebPoll};
use crate::records::RecordEvent;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Cheap to clone; every clone talks to the same engine task.
#[derive(Clone)]
pub struct EngineHandle {
    events: mpsc::Sender<CoreEvent>,
    sip_ready: Arc<AtomicBool>,
}

/// What the engine task takes in besides sockets: created with the handle, given to
/// [`super::run`].
pub struct Inbox {
    pub(super) rx: mpsc::Receiver<CoreEvent>,
    /// For the TCP connections' readers, which feed the same queue.
    pub(super) tx: mpsc::Sender<CoreEvent>,
    pub(super) sip_ready: Arc<AtomicBool>,
}

/// Why a call on the handle did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The engine task has stopped (or never started).
    #[error("engine not running")]
    NotRunning,
    /// The engine refused (no such agent or call, a state change not allowed now).
    #[error(transparent)]
    Refused(#[from] ApiRefusal),
}

/// Questions for the engine task, answered in [`super::answer`].
pub(super) enum Query {
    Agents(oneshot::Sender<Vec<AgentView>>),
    SetAgentState {
        id: String,
        change: StateChange,
        reply: oneshot::Sender<Result<AgentView, ApiRefusal>>,
    },
    Queues(oneshot::Sender<Vec<QueueView>>),
    Calls {
        numbers: bool,
        reply: oneshot::Sender<Vec<CallView>>,
    },
    HangUp {
        call_id: String,
        reply: oneshot::Sender<Result<(), ApiRefusal>>,
    },
    /// A record change from the API (notes, audit), written in order with the calls'.
    Record(RecordEvent),
    /// Update the scrape-time gauges before /metrics renders.
    RefreshMetrics(oneshot::Sender<()>),
    /// The public web chat (answered once its message is durable).
    WebChatStart {
        service: String,
        text: String,
        reply: oneshot::Sender<Result<(String, WebPoll), TextRefusal>>,
    },
    WebChatSend {
        token: String,
        text: String,
        reply: oneshot::Sender<Result<(), TextRefusal>>,
    },
    WebChatPoll {
        token: String,
        after: u64,
        reply: oneshot::Sender<Option<WebPoll>>,
    },
    WebChatClose {
        token: String,
        reply: oneshot::Sender<Result<(), TextRefusal>>,
    },
}

/// Room for bursts of TCP messages and API calls before senders wait.
const QUEUE: usize = 16_384;

impl EngineHandle {
    /// A handle and the inbox its engine task will read.
    pub fn channel() -> (EngineHandle, Inbox) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let sip_ready = Arc::new(AtomicBool::new(false));
        (
            EngineHandle {
                events: tx.clone(),
                sip_ready: sip_ready.clone(),
            },
            Inbox { rx, tx, sip_ready },
        )
    }

    /// Whether SIP is bound and the engine task is running (for `/healthz`).
    pub fn sip_ready(&self) -> bool {
        self.sip_ready.load(Ordering::SeqCst)
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Query,
    ) -> Result<T, HandleError> {
        let (tx, rx) = oneshot::channel();
        self.events
            .send(CoreEvent::Query(make(tx)))
            .await
            .map_err(|_| HandleError::NotRunning)?;
        rx.await.map_err(|_| HandleError::NotRunning)
    }

    /// Every agent with its state, skills and call.
    pub async fn agents(&self) -> Result<Vec<AgentView>, HandleError> {
        self.ask(Query::Agents).await
    }

    /// Ready, not ready (with a reason) or logged out, as the API and the desktop ask.
    pub async fn set_agent_state(
        &self,
        id: &str,
        change: StateChange,
    ) -> Result<AgentView, HandleError> {
        let id = id.to_string();
        Ok(self
            .ask(|reply| Query::SetAgentState { id, change, reply })
            .await??)
    }

    /// Every queue with its waiting calls and live figures.
    pub async fn queues(&self) -> Result<Vec<QueueView>, HandleError> {
        self.ask(Query::Queues).await
    }

    /// Calls in progress; caller numbers in clear only with `numbers`.
    pub async fn calls(&self, numbers: bool) -> Result<Vec<CallView>, HandleError> {
        self.ask(|reply| Query::Calls { numbers, reply }).await
    }

    /// Ends a call in progress (its record is written as for any hang-up).
    pub async fn hang_up(&self, call_id: &str) -> Result<(), HandleError> {
        let call_id = call_id.to_string();
        Ok(self.ask(|reply| Query::HangUp { call_id, reply }).await??)
    }

    /// A record change from outside the call flow (notes, audit), kept in order with the
    /// calls' own changes.
    pub async fn record(&self, ev: RecordEvent) -> Result<(), HandleError> {
        self.events
            .send(CoreEvent::Query(Query::Record(ev)))
            .await
            .map_err(|_| HandleError::NotRunning)
    }

    /// Starts a public web chat to `service` with its first message: its token and what
    /// is already there for it (the waiting notice), once the message is durable.
    pub async fn web_chat_start(
        &self,
        service: &str,
        text: &str,
    ) -> Result<Result<(String, WebPoll), TextRefusal>, HandleError> {
        let (service, text) = (service.to_string(), text.to_string());
        self.ask(|reply| Query::WebChatStart {
            service,
            text,
            reply,
        })
        .await
    }

    /// A further message of web chat `token`, answered once it is durable.
    pub async fn web_chat_send(
        &self,
        token: &str,
        text: &str,
    ) -> Result<Result<(), TextRefusal>, HandleError> {
        let (token, text) = (token.to_string(), text.to_string());
        self.ask(|reply| Query::WebChatSend { token, text, reply })
            .await
    }

    /// Replies for web chat `token` after line `after`; None: no such chat.
    pub async fn web_chat_poll(
        &self,
        token: &str,
        after: u64,
    ) -> Result<Option<WebPoll>, HandleError> {
        let token = token.to_string();
        self.ask(|reply| Query::WebChatPoll {
            token,
            after,
            reply,
        })
        .await
    }

    /// The sender ends web chat `token`.
    pub async fn web_chat_close(
        &self,
        token: &str,
    ) -> Result<Result<(), TextRefusal>, HandleError> {
        let token = token.to_string();
        self.ask(|reply| Query::WebChatClose { token, reply }).await
    }

    /// Brings the scrape-time gauges up to date.
    pub async fn refresh_metrics(&self) -> Result<(), HandleError> {
        self.ask(Query::RefreshMetrics).await
    }
}
