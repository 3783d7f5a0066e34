//! SIP over TCP: one reader and one writer task per connection; complete messages are cut
//! by the stream framer and handed to the engine task.

use super::CoreEvent;
use crate::metrics::Metrics;
use crate::sip::framing::{Frame, StreamFramer};
use crate::sip::{Flow, Transport};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

pub(super) async fn accept_loop(
    listener: TcpListener,
    events: mpsc::Sender<CoreEvent>,
    metrics: Arc<Metrics>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let id = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
                let flow = Flow {
                    transport: Transport::Tcp,
                    remote: peer,
                    conn: id,
                };
                tokio::spawn(connection(stream, flow, events.clone(), metrics.clone()));
            }
            Err(e) => {
                tracing::warn!("TCP accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    flow: Flow,
    events: mpsc::Sender<CoreEvent>,
    metrics: Arc<Metrics>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(1024);
    if events
        .send(CoreEvent::Opened(flow.conn, tx.clone()))
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
        }
    });
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    'read: loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(m))) => {
                    if events.send(CoreEvent::Message(flow, m)).await.is_err() {
                        break 'read;
                    }
                }
                Ok(Some(Frame::Ping)) => {
                    // RFC 5626 4.4.1 pong.
                    let _ = tx.try_send(Bytes::from_static(b"\r\n"));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(peer = %flow.remote, "closing TCP connection: {e}");
                    metrics.sip_garbage.inc();
                    break 'read;
                }
            }
        }
    }
    let _ = events.send(CoreEvent::Closed(flow.conn)).await;
    drop(tx);
    let _ = writer.await;
}
