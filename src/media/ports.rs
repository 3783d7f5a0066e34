//! The RTP port range. Each anchored leg takes an even port (RTP) and the odd one above it
//! (RTCP), so a range of N ports carries N/2 legs — N/4 calls, two legs each. When the
//! range is used up, new calls are refused cleanly (503), never queued for ports.

use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("RTP port range {0}-{1} is empty or invalid")]
    BadRange(u16, u16),
    #[error("no free RTP ports")]
    Exhausted,
}

#[derive(Debug, Clone)]
pub struct PortPool {
    free: VecDeque<u16>,
    legs: usize,
    range: std::ops::Range<u32>,
}

impl PortPool {
    pub fn new(low: u16, high: u16) -> Result<PortPool, PortError> {
        // u32 arithmetic: the range may end at 65535.
        let first = low as u32 + (low as u32 % 2);
        if low < 1024 || (high as u32) < first + 1 {
            return Err(PortError::BadRange(low, high));
        }
        let free: VecDeque<u16> = (first..high as u32).step_by(2).map(|p| p as u16).collect();
        Ok(PortPool {
            legs: free.len(),
            free,
            range: first..high as u32,
        })
    }

    /// Calls this range can carry at once (two legs per call).
    pub fn capacity_calls(&self) -> usize {
        self.legs / 2
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// An even RTP port; RTCP is the next one.
    pub fn allocate(&mut self) -> Result<u16, PortError> {
        self.free.pop_front().ok_or(PortError::Exhausted)
    }

    /// Returns a port to the back of the list, so a just-freed port is not reused at once
    /// (late packets of the old call must not reach the new one).
    pub fn release(&mut self, port: u16) {
        // Only ports this pool handed out come back; the O(n) check guards against a double
        // release, which would hand one port to two calls.
        if self.range.contains(&(port as u32))
            && port.is_multiple_of(2)
            && self.free.len() < self.legs
            && !self.free.contains(&port)
        {
            self.free.push_back(port);
        }
    }
}

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`), where sockets
/// bound to port 0 land: outgoing TCP, SIP clients, softphones on the same host.
pub fn ephemeral_ports() -> Option<(u16, u16)> {
    let s = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    parse_range(&s)
}

/// The widest stretch of 10000-65535 outside the ephemeral range, for tools that bind
/// fixed ports beside sockets bound to port 0 (the load generators).
pub fn outside_ephemeral() -> (u16, u16) {
    let (lo, hi) = ephemeral_ports().unwrap_or((32768, 60999));
    let below = (10000u16, lo.saturating_sub(1));
    let above = (hi.saturating_add(1).max(10000), 65535u16);
    let width = |r: (u16, u16)| r.1.saturating_sub(r.0);
    if width(below) >= width(above) {
        below
    } else {
        above
    }
}

fn parse_range(s: &str) -> Option<(u16, u16)> {
    let mut it = s.split_whitespace().map(|v| v.parse::<u16>().ok());
    match (it.next()??, it.next()??) {
        (a, b) if a <= b => Some((a, b)),
        _ => None,
    }
}

/// A warning when `name`'s range `lo`-`hi` overlaps the ephemeral range `eph`: a port the
/// kernel handed to some other socket cannot be bound for a call, and a call's port may
/// be taken at any moment by anything that binds port 0.
pub fn overlap_warning(name: &str, (lo, hi): (u16, u16), eph: (u16, u16)) -> Option<String> {
    (lo <= eph.1 && eph.0 <= hi).then(|| {
        format!(
            "{name} {lo}-{hi} overlaps the kernel's ephemeral port range {}-{} (net.ipv4.ip_local_port_range): calls may fail to bind their ports; move the range or set net.ipv4.ip_local_reserved_ports",
            eph.0, eph.1
        )
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ephemeral_range_parse_and_overlap() {
        assert_eq!(parse_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_range("9 1"), None);
        assert_eq!(parse_range("x"), None);
        let eph = (32768, 60999);
        assert!(overlap_warning("rtp", (20000, 29999), eph).is_none());
        let w = overlap_warning("[media] rtp_port_min/max", (30000, 50000), eph).unwrap();
        assert!(
            w.contains("30000-50000") && w.contains("32768-60999"),
            "{w}"
        );
        assert!(overlap_warning("x", (60999, 61000), eph).is_some());
        assert!(overlap_warning("x", (61000, 65535), eph).is_none());
        if let Some((a, b)) = ephemeral_ports() {
            assert!(a <= b);
        }
    }

    use super::*;

    #[test]
    fn even_ports_exhaustion_and_reuse_order() {
        let mut p = PortPool::new(20000, 20007).unwrap();
        assert_eq!(p.capacity_calls(), 2);
        assert_eq!((p.allocate(), p.allocate()), (Ok(20000), Ok(20002)));
        assert_eq!((p.allocate(), p.allocate()), (Ok(20004), Ok(20006)));
        assert_eq!(p.allocate(), Err(PortError::Exhausted));
        p.release(20002);
        p.release(20002);
        p.release(12344);
        assert_eq!(p.available(), 1, "double and foreign releases are ignored");
        assert_eq!(p.allocate(), Ok(20002));
        assert!(PortPool::new(20000, 20000).is_err());
        assert!(PortPool::new(80, 2000).is_err());
        assert_eq!(PortPool::new(20000, 29999).unwrap().capacity_calls(), 2500);
        assert_eq!(
            PortPool::new(65534, 65535).unwrap().capacity_calls(),
            0,
            "one leg only"
        );
        assert!(
            PortPool::new(65535, 65535).is_err(),
            "no overflow at the top of the range"
        );
    }
}
