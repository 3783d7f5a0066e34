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

#[cfg(test)]
mod tests {
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
