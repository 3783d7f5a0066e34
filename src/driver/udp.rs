//! UDP receive with the kernel's arrival timestamp (SO_TIMESTAMPNS), so the engine can see
//! how long a datagram waited in the socket: that wait is the honest overload signal, and
//! it belongs in post-dial delay.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;

pub fn enable_timestamps(sock: &UdpSocket) -> io::Result<()> {
    set_int_opt(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
}

/// One datagram: length, source, and when the kernel queued it (as an `Instant`).
pub fn try_recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Instant)> {
    sock.try_io(tokio::io::Interest::READABLE, || {
        recv_raw(sock.as_raw_fd(), buf)
    })
}

fn recv_raw(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Instant)> {
    // SAFETY: all structures are zero-initialised plain C data of the sizes passed to
    // recvmsg; the kernel writes at most those sizes, and cmsg parsing follows CMSG_* rules.
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let mut control = [0u64; 16];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = &mut addr as *mut _ as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let now = Instant::now();
        let mut received = now;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec);
                let at = UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
                if let Ok(age) = SystemTime::now().duration_since(at) {
                    received = now.checked_sub(age).unwrap_or(now);
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        let src = sockaddr_to(&addr)?;
        Ok((n as usize, src, received))
    }
}

/// The address the kernel wrote into `addr`.
fn sockaddr_to(addr: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    // SAFETY: the family says which of the layouts the storage holds.
    unsafe {
        match addr.ss_family as libc::c_int {
            libc::AF_INET => {
                let a = &*(addr as *const _ as *const libc::sockaddr_in);
                Ok(SocketAddr::V4(SocketAddrV4::new(
                    u32::from_be(a.sin_addr.s_addr).into(),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                let a = &*(addr as *const _ as *const libc::sockaddr_in6);
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    a.sin6_addr.s6_addr.into(),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unknown address family",
            )),
        }
    }
}

/// Sets an integer socket option.
pub fn set_int_opt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt on a caller's fd with a correctly sized int option.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &v as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One datagram of a [`RecvBatch`].
pub struct Datagram<'a> {
    pub data: &'a [u8],
    pub src: SocketAddr,
    /// When the kernel queued it (`SO_TIMESTAMPNS`, wall clock), where the socket asks.
    pub stamp: Option<Duration>,
    /// The socket's count of datagrams dropped for a full buffer (`SO_RXQ_OVFL`).
    pub dropped: Option<u32>,
}

/// Buffers for `recvmmsg`: up to `n` datagrams from one socket in one system call.
pub struct RecvBatch {
    bufs: Vec<u8>,
    size: usize,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    ctrl: Vec<[u64; 8]>,
    hdrs: Vec<libc::mmsghdr>,
    filled: usize,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` only ever point into this batch's own
// buffers, and are rewritten before each use.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub fn new(n: usize, size: usize) -> RecvBatch {
        RecvBatch {
            bufs: vec![0; n * size],
            size,
            // SAFETY: plain C structures, valid when zeroed.
            addrs: (0..n).map(|_| unsafe { std::mem::zeroed() }).collect(),
            iovs: (0..n)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            ctrl: vec![[0; 8]; n],
            // SAFETY: as above.
            hdrs: (0..n).map(|_| unsafe { std::mem::zeroed() }).collect(),
            filled: 0,
        }
    }

    /// Reads what is queued on `fd` without waiting, up to the batch's size: how many
    /// datagrams (0 when none). Each is at most `size` bytes (longer ones are cut).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.filled = 0;
        let n = self.hdrs.len();
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i * self.size..].as_mut_ptr() as *mut libc::c_void,
                iov_len: self.size,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = &mut self.addrs[i] as *mut _ as *mut libc::c_void;
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.ctrl[i].as_mut_ptr() as *mut libc::c_void;
            h.msg_controllen = std::mem::size_of::<[u64; 8]>() as _;
            h.msg_flags = 0;
        }
        // SAFETY: every header points into buffers owned by self, of the lengths given.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(0),
                _ => Err(e),
            };
        }
        self.filled = got as usize;
        Ok(self.filled)
    }

    /// The `i`th datagram of the last [`recv`](Self::recv); None past the end or for an
    /// address family other than IPv4/IPv6.
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        if i >= self.filled {
            return None;
        }
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(self.size);
        let src = sockaddr_to(&self.addrs[i]).ok()?;
        let (mut stamp, mut dropped) = (None, None);
        // SAFETY: the control buffer was filled by the kernel for this header; CMSG_* walk
        // it within msg_controllen.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&h.msg_hdr);
            while !cmsg.is_null() {
                match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                    (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                        let ts: libc::timespec = std::ptr::read_unaligned(
                            libc::CMSG_DATA(cmsg) as *const libc::timespec
                        );
                        stamp = Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
                    }
                    (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                        dropped =
                            Some(std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const u32));
                    }
                    _ => {}
                }
                cmsg = libc::CMSG_NXTHDR(&h.msg_hdr, cmsg);
            }
        }
        Some(Datagram {
            data: &self.bufs[i * self.size..i * self.size + len],
            src,
            stamp,
            dropped,
        })
    }
}

/// Sends `packets` from `fd` with one `sendmmsg` (several when the kernel takes fewer at
/// once): how many were sent before the socket would block or failed.
pub fn send_batch(fd: RawFd, packets: &[(SocketAddr, &[u8])]) -> usize {
    let addrs: Vec<socket2::SockAddr> = packets.iter().map(|(a, _)| (*a).into()).collect();
    let mut iovs: Vec<libc::iovec> = packets
        .iter()
        .map(|(_, p)| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = (0..packets.len())
        .map(|i| {
            // SAFETY: a zeroed mmsghdr is valid; the pointers set below outlive the call.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = addrs[i].as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = addrs[i].len();
            h.msg_hdr.msg_iov = &mut iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    let mut sent = 0;
    while sent < hdrs.len() {
        // SAFETY: the headers point at addresses and payloads borrowed for this call.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                hdrs[sent..].as_mut_ptr(),
                (hdrs.len() - sent) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 {
            break;
        }
        sent += n as usize;
    }
    sent
}

/// One datagram to `to` without waiting: whether the kernel took it.
pub fn send_to(fd: RawFd, packet: &[u8], to: &socket2::SockAddr) -> bool {
    // SAFETY: the payload and address are valid for the call's duration.
    let n = unsafe {
        libc::sendto(
            fd,
            packet.as_ptr() as *const libc::c_void,
            packet.len(),
            libc::MSG_DONTWAIT,
            to.as_ptr(),
            to.len(),
        )
    };
    n >= 0
}

/// A level-triggered `epoll` set: one wait for every ready socket of many calls.
pub struct Epoll {
    fd: std::os::fd::OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new(max_events: usize) -> io::Result<Epoll> {
        // SAFETY: epoll_create1 returns a new fd we own, or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor owned by nothing else.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(Epoll {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; max_events.max(1)],
        })
    }

    /// Watches `fd` for reading; its events carry `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: valid epoll fd and event structure.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn remove(&self, fd: RawFd) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: valid epoll fd; a descriptor not in the set is an error we ignore.
        unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
    }

    /// Waits up to `timeout_ms` (-1: no limit) and gives the tokens of what is ready.
    pub fn wait(&mut self, timeout_ms: i32) -> impl Iterator<Item = u64> + '_ {
        // SAFETY: the event buffer is ours and its length is passed.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                timeout_ms,
            )
        };
        self.events[..n.max(0) as usize].iter().map(|e| e.u64)
    }
}

/// An `eventfd`: another thread's way to wake an [`Epoll`] loop.
pub struct EventFd(std::os::fd::OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd returns a new fd we own, or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is fresh and owned by nothing else.
        Ok(EventFd(unsafe {
            <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
        }))
    }

    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a u64 to our eventfd.
        unsafe {
            libc::write(
                self.0.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            )
        };
    }

    /// Clears the count (how many notifications since the last clear).
    pub fn clear(&self) -> u64 {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a u64 from our eventfd.
        unsafe {
            libc::read(
                self.0.as_raw_fd(),
                &mut v as *mut u64 as *mut libc::c_void,
                8,
            )
        };
        v
    }
}
