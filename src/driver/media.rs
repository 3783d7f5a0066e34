//! The media plane's tokio side: one task per anchored call owns the call's two RTP
//! sockets (caller leg, agent leg) and feeds the sans-IO [`Bridge`]. Digits and the end of
//! the media (timeout, stop) go back to whoever started it.

pub use crate::media::bridge::MediaEvent;
use crate::media::bridge::{Bridge, BridgeEvent, LegId};
use std::net::SocketAddr;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

/// Starts a call's bridge from the engine's command: binds its two RTP sockets and spawns
/// the relay task. Returns the handle that stops it.
pub fn start(
    cmd: crate::b2bua::MediaCommand,
    events: mpsc::Sender<MediaEvent>,
    relayed: prometheus::IntCounter,
) -> Result<watch::Sender<bool>, String> {
    let crate::b2bua::MediaCommand::Start {
        call,
        ip,
        caller_port,
        agent_port,
        caller,
        agent,
        timeout,
    } = cmd
    else {
        return Err("not a start command".into());
    };
    let bind = |port: u16| -> Result<UdpSocket, String> {
        let s = std::net::UdpSocket::bind(SocketAddr::new(ip, port))
            .map_err(|e| format!("RTP port {port}: {e}"))?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        UdpSocket::from_std(s).map_err(|e| e.to_string())
    };
    let (cs, as_) = (bind(caller_port)?, bind(agent_port)?);
    let now = Instant::now();
    let bridge = Bridge::new(
        crate::media::bridge::Leg::new(now, &caller, rand::random(), timeout),
        crate::media::bridge::Leg::new(now, &agent, rand::random(), timeout),
    )
    .map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(run_bridge(call, bridge, cs, as_, events, stop_rx, relayed));
    Ok(stop_tx)
}

/// Binds an RTP socket on `ip:port` (port 0 picks one).
pub async fn bind_rtp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(addr).await
}

/// Runs the bridge until `stop` turns true, the media times out, or the bridge fails.
pub async fn run_bridge(
    call: u64,
    mut bridge: Bridge,
    caller_sock: UdpSocket,
    agent_sock: UdpSocket,
    events: mpsc::Sender<MediaEvent>,
    mut stop: watch::Receiver<bool>,
    relayed: prometheus::IntCounter,
) {
    let mut buf_c = vec![0u8; 2048];
    let mut buf_a = vec![0u8; 2048];
    let mut out = Vec::with_capacity(8);
    loop {
        let deadline = tokio::time::Instant::from_std(bridge.poll_timeout());
        let (leg, n, src) = tokio::select! {
            _ = stop.changed() => {
                if *stop.borrow() { return; }
                continue;
            }
            r = caller_sock.recv_from(&mut buf_c) => match r {
                Ok((n, src)) => (LegId::Caller, n, src),
                Err(_) => continue, // ICMP port unreachable and the like
            },
            r = agent_sock.recv_from(&mut buf_a) => match r {
                Ok((n, src)) => (LegId::Agent, n, src),
                Err(_) => continue,
            },
            _ = tokio::time::sleep_until(deadline) => {
                if Instant::now() >= bridge.poll_timeout() {
                    let _ = events.send(MediaEvent::Timeout { call }).await;
                    return;
                }
                continue;
            }
        };
        let data = match leg {
            LegId::Caller => buf_c[..n].to_vec(),
            LegId::Agent => buf_a[..n].to_vec(),
        };
        out.clear();
        if let Err(e) = bridge.on_packet(Instant::now(), leg, src, data, &mut out) {
            let _ = events
                .send(MediaEvent::Failed {
                    call,
                    reason: e.to_string(),
                })
                .await;
            return;
        }
        for ev in out.drain(..) {
            match ev {
                BridgeEvent::Send { leg, to, packet } => {
                    let sock = match leg {
                        LegId::Caller => &caller_sock,
                        LegId::Agent => &agent_sock,
                    };
                    if sock.try_send_to(&packet, to).is_ok() {
                        relayed.inc();
                    }
                }
                BridgeEvent::Digit { leg, digit } => {
                    let _ = events.try_send(MediaEvent::Digit { call, leg, digit });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::bridge::Leg;
    use crate::media::rtp::{build_rtp, parse_rtp};
    use crate::media::sdp::{Codec, Direction, Negotiated};
    use std::time::Duration;

    fn neg(codec: Codec, pt: u8, remote: SocketAddr) -> Negotiated {
        Negotiated {
            codec,
            pt,
            dtmf: Some((101, 8000)),
            direction: Direction::SendRecv,
            remote: (remote.ip(), remote.port()),
        }
    }

    #[tokio::test]
    async fn relays_both_ways_over_real_sockets_and_reports_digits_and_timeout() {
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let caller_phone = UdpSocket::bind(lo).await.unwrap();
        let agent_phone = UdpSocket::bind(lo).await.unwrap();
        let caller_side = bind_rtp(lo).await.unwrap();
        let agent_side = bind_rtp(lo).await.unwrap();
        let (caller_port, agent_port) = (
            caller_side.local_addr().unwrap(),
            agent_side.local_addr().unwrap(),
        );
        let now = Instant::now();
        let timeout = Duration::from_millis(600);
        let bridge = Bridge::new(
            Leg::new(
                now,
                &neg(Codec::Pcmu, 0, caller_phone.local_addr().unwrap()),
                11,
                timeout,
            ),
            Leg::new(
                now,
                &neg(Codec::Pcma, 8, agent_phone.local_addr().unwrap()),
                22,
                timeout,
            ),
        )
        .unwrap();
        let (ev_tx, mut ev_rx) = mpsc::channel(16);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let relayed = prometheus::IntCounter::new("t", "t").unwrap();
        let task = tokio::spawn(run_bridge(
            7,
            bridge,
            caller_side,
            agent_side,
            ev_tx,
            stop_rx,
            relayed.clone(),
        ));

        let mut buf = [0u8; 2048];
        for i in 0..20u16 {
            caller_phone
                .send_to(
                    &build_rtp(0, i == 0, i, i as u32 * 160, 0xC0, &[0xFF; 160]),
                    caller_port,
                )
                .await
                .unwrap();
            let (n, _) =
                tokio::time::timeout(Duration::from_secs(2), agent_phone.recv_from(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
            let h = parse_rtp(&buf[..n]).unwrap();
            assert_eq!(
                (h.payload_type, h.ssrc),
                (8, 22),
                "PCMU transcoded to the agent's PCMA"
            );
            assert!(buf[12..n].iter().all(|&b| b == 0xD5));
            agent_phone
                .send_to(
                    &build_rtp(8, false, 100 + i, i as u32 * 160, 0xA0, &[0xD5; 160]),
                    agent_port,
                )
                .await
                .unwrap();
            let (n, from) =
                tokio::time::timeout(Duration::from_secs(2), caller_phone.recv_from(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
            assert_eq!(
                from, caller_port,
                "symmetric RTP: answered from the port the caller sends to"
            );
            assert_eq!(parse_rtp(&buf[..n]).unwrap().ssrc, 11);
        }
        for (i, (_, ev)) in crate::media::dtmf::events_for_digit('9', 60, 8000)
            .unwrap()
            .into_iter()
            .enumerate()
        {
            caller_phone
                .send_to(
                    &build_rtp(101, i == 0, 50 + i as u16, 9000, 0xC0, &ev),
                    caller_port,
                )
                .await
                .unwrap();
        }
        let ev = tokio::time::timeout(Duration::from_secs(2), ev_rx.recv())
            .await
            .unwrap();
        assert_eq!(
            ev,
            Some(MediaEvent::Digit {
                call: 7,
                leg: LegId::Caller,
                digit: '9'
            })
        );
        // Both phones go silent: the media timeout ends the bridge.
        let ev = tokio::time::timeout(Duration::from_secs(3), ev_rx.recv())
            .await
            .unwrap();
        assert_eq!(ev, Some(MediaEvent::Timeout { call: 7 }));
        task.await.unwrap();
        assert!(relayed.get() >= 40, "relayed {}", relayed.get());
    }
}
