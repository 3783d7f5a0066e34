//! SIP over TLS (RFC 3261 §26.2): a TCP listener whose connections first complete a TLS
//! handshake (bounded in time, counted when it fails) and then run exactly like TCP ones,
//! under the same connection limits.

use super::tcp::{self, Counts, TcpLimits};
use super::CoreEvent;
use crate::metrics::Metrics;
use crate::runtime::tls::Reloadable;
use crate::sip::{Flow, Transport};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub(super) struct TlsListener {
    pub listener: TcpListener,
    pub identity: Arc<Reloadable>,
    pub handshake_timeout: Duration,
}

pub(super) async fn accept_loop(
    l: TlsListener,
    events: mpsc::Sender<CoreEvent>,
    metrics: Arc<Metrics>,
    limits: TcpLimits,
    counts: Arc<Mutex<Counts>>,
) {
    loop {
        let (stream, peer) = match l.listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("TLS accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = tcp::take_slot(&counts, peer.ip(), &limits) else {
            metrics
                .security
                .with_label_values(&["tcp_connection_refused"])
                .inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Each connection takes the identity current when it arrives: a SIGHUP reload
        // changes what new connections see and leaves established ones alone.
        let acceptor = tokio_rustls::TlsAcceptor::from(l.identity.current());
        let who = l.identity.clone();
        let (events, metrics, timeout) = (events.clone(), metrics.clone(), l.handshake_timeout);
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    metrics
                        .security
                        .with_label_values(&["tls_handshake_failed"])
                        .inc();
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake not finished in {timeout:?}");
                    metrics
                        .security
                        .with_label_values(&["tls_handshake_timeout"])
                        .inc();
                    return;
                }
            };
            let flow = Flow {
                transport: Transport::Tls,
                remote: peer,
                conn: tcp::next_conn(),
            };
            let identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| who.identify(c));
            let halves = tokio::io::split(tls);
            tcp::connection(halves, flow, identity, events, metrics, limits.idle, slot).await;
        });
    }
}
