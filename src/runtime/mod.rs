//! Small pieces of the tokio runtime side shared by the drivers (`driver`'s media plane,
//! `web`'s browser legs): the in-process RTP switch between them, a rotating poll over
//! several sources, a lock that survives a poisoned mutex, and the listeners' TLS identities. Nothing here knows SIP,
//! calls or the engine; the sans-IO core never imports it.

mod local_rtp;
pub mod tls;

pub use local_rtp::{LocalRtp, Registration, Sink};

/// Waits for the first of `n` sources that `poll(i, cx)` finds ready, starting from the one
/// after last time's start so that a flooded source starves none. The call and browser-leg
/// tasks wake ~100 times a second each: one hand-written poll keeps a single waker slot per
/// socket and channel (`poll_recv_from`, `poll_recv`), where `select!` builds, registers and
/// drops a future per source per wake.
pub async fn first_ready<T>(
    turn: &mut usize,
    n: usize,
    mut poll: impl FnMut(usize, &mut std::task::Context<'_>) -> std::task::Poll<T>,
) -> T {
    *turn = (*turn + 1) % n.max(1);
    let start = *turn;
    std::future::poll_fn(|cx| {
        for k in 0..n {
            if let std::task::Poll::Ready(v) = poll((start + k) % n, cx) {
                return std::task::Poll::Ready(v);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Locks an endpoint's state shared by its task and its sink (see [`LocalRtp`]). A panic
/// elsewhere while holding it leaves state that is still consistent packet by packet: keep
/// relaying rather than take the call down.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::first_ready;
    use std::task::Poll;

    #[tokio::test]
    async fn a_source_always_ready_starves_no_other() {
        let mut turn = 0;
        let mut seen = Vec::new();
        for _ in 0..6 {
            // Sources 0 and 2 are always ready, 1 never.
            let got = first_ready(&mut turn, 3, |i, _| {
                if i == 1 {
                    Poll::Pending
                } else {
                    Poll::Ready(i)
                }
            })
            .await;
            seen.push(got);
        }
        assert!(seen.contains(&0) && seen.contains(&2), "{seen:?}");
    }
}
