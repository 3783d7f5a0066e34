//! SIP over TCP (and, through [`super::tls`], TLS): one reader and one writer task per
//! connection; complete messages are cut by the stream framer and handed to the engine
//! task.

use super::CoreEvent;
use crate::metrics::Metrics;
use crate::sip::framing::{Frame, StreamFramer};
use crate::sip::{Flow, Transport};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Bounds on stream connections, which any peer can open before it has authenticated.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// A connection that has a partial message buffered, or has sent no complete message
    /// since it opened, for this long is closed (slowloris, idle scanners). Keep-alive
    /// pings (RFC 5626 CRLF) and complete messages keep a connection up.
    pub idle: Duration,
    pub max_connections: usize,
    pub max_per_source: usize,
}

/// Connections open, in total and per source address, over TCP and TLS together.
#[derive(Default)]
pub(super) struct Counts {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// One open connection's place in [`Counts`], given back when the connection ends.
pub(super) struct Slot {
    counts: Arc<Mutex<Counts>>,
    source: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                c.per_source.remove(&self.source);
            }
        }
    }
}

pub(super) fn take_slot(
    counts: &Arc<Mutex<Counts>>,
    source: IpAddr,
    limits: &TcpLimits,
) -> Option<Slot> {
    let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
    let mine = c.per_source.get(&source).copied().unwrap_or(0);
    if c.total >= limits.max_connections || mine >= limits.max_per_source {
        return None;
    }
    c.total += 1;
    *c.per_source.entry(source).or_insert(0) += 1;
    Some(Slot {
        counts: counts.clone(),
        source,
    })
}

pub(super) fn next_conn() -> u64 {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    events: mpsc::Sender<CoreEvent>,
    metrics: Arc<Metrics>,
    limits: TcpLimits,
    counts: Arc<Mutex<Counts>>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(slot) = take_slot(&counts, peer.ip(), &limits) else {
                    // Closed at once: the kernel's backlog, not our memory, absorbs a flood.
                    metrics
                        .security
                        .with_label_values(&["tcp_connection_refused"])
                        .inc();
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let flow = Flow {
                    transport: Transport::Tcp,
                    remote: peer,
                    conn: next_conn(),
                };
                let (rd, wr) = stream.into_split();
                tokio::spawn(connection(
                    (rd, wr),
                    flow,
                    None,
                    events.clone(),
                    metrics.clone(),
                    limits.idle,
                    slot,
                ));
            }
            Err(e) => {
                tracing::warn!("TCP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads and frames one connection's messages until it closes, breaks framing or idles;
/// a writer task sends what the engine queues for it.
pub(super) async fn connection<R, W>(
    (mut rd, mut wr): (R, W),
    flow: Flow,
    identity: Option<crate::runtime::tls::PeerIdentity>,
    events: mpsc::Sender<CoreEvent>,
    metrics: Arc<Metrics>,
    idle: Duration,
    slot: Slot,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Bytes>(1024);
    if events
        .send(CoreEvent::Opened(flow.conn, tx.clone(), identity))
        .await
        .is_err()
    {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
            // TLS buffers records until flushed (a no-op on TCP): flush when nothing else
            // is queued, so a burst goes out in as few records as it can.
            if rx.is_empty() && wr.flush().await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    // Until the first complete message, or while a message is incomplete, the peer has
    // `idle` to finish: after that the connection is closed.
    let mut deadline = Some(Instant::now() + idle);
    'read: loop {
        let read = match deadline {
            Some(d) => match tokio::time::timeout_at(d, rd.read(&mut buf)).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::debug!(peer = %flow.remote, transport = flow.transport.via_name(), "closing connection: no complete message in time");
                    metrics
                        .security
                        .with_label_values(&["tcp_idle_closed"])
                        .inc();
                    break;
                }
            },
            None => rd.read(&mut buf).await,
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let was_waiting = framer.pending() > 0 || deadline.is_some();
        framer.push(&buf[..n]);
        let mut progressed = false;
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(m))) => {
                    progressed = true;
                    if events.send(CoreEvent::Message(flow, m)).await.is_err() {
                        break 'read;
                    }
                }
                Ok(Some(Frame::Ping)) => {
                    progressed = true;
                    // RFC 5626 4.4.1 pong.
                    let _ = tx.try_send(Bytes::from_static(b"\r\n"));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(peer = %flow.remote, transport = flow.transport.via_name(), "closing connection: {e}");
                    metrics.sip_garbage.inc();
                    break 'read;
                }
            }
        }
        deadline = match (framer.pending() > 0, progressed, was_waiting) {
            // Nothing left over: no deadline until the next partial message.
            (false, true, _) => None,
            // A new partial message starts its clock; one still growing keeps the old one.
            (true, true, _) | (true, false, false) => Some(Instant::now() + idle),
            (_, false, _) => deadline,
        };
    }
    let _ = events.send(CoreEvent::Closed(flow.conn)).await;
    drop(tx);
    let _ = writer.await;
    drop(slot);
}
