//! In-kernel forwarding of bridged RTP: a small eBPF program on each interface's tc ingress
//! (tcx) rewrites a bridged call's packets and sends them straight back out, so that a
//! relayed packet never reaches user space. On this 2-core VM the kernel's own UDP path
//! (a `recvfrom` and a `sendto`) is about 5 µs per packet, most of a user-space relay's
//! cost; the program runs in the softirq that received the packet and costs a map lookup
//! and a header rewrite.
//!
//! The program forwards only what the session already decided it would forward the same
//! way: a packet to a leg's RTP port, from that leg's learned source, with the stream's
//! SSRC and the leg's negotiated payload type. It rewrites the header as
//! [`RtpSession::rewrite`](crate::media::rtp::RtpSession::rewrite) would (payload type, our
//! SSRC, sequence and timestamp offsets), the addresses and ports to the other leg's peer,
//! and counts. Everything else — RTCP, telephone-events, a new SSRC, a stranger, a
//! fragment, IPv6 — passes to the socket untouched and the relay thread handles it as
//! before (and may change or remove the rule). The relay thread reads the counters back
//! into the session (receive statistics, the media timeout, RTCP reports) whenever it
//! steps the call.
//!
//! The rules live in one hash map keyed by the relay's UDP port; the program is built
//! here, instruction by instruction, so that no compiler or object file is needed. Loading
//! it needs CAP_BPF and CAP_NET_ADMIN (root); without them the engine logs a warning and
//! relays in user space.

use crate::media::session::Rewrite;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

#[derive(Debug, thiserror::Error)]
pub enum KfwdError {
    #[error("bpf {op}: {source}")]
    Bpf { op: &'static str, source: io::Error },
    #[error("the kernel refused the forwarding program: {source}\n{log}")]
    Verifier { source: io::Error, log: String },
    #[error("no interface to attach to")]
    NoInterface,
}

/// How many forwarding rules (one per relayed direction) the map holds.
pub const MAX_RULES: u32 = 65_536;

/// One direction of a bridged call, as the program matches and rewrites it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The relay's RTP port the packets arrive on (the map key).
    pub port: u16,
    /// The learned source: only its packets are forwarded.
    pub from: SocketAddrV4,
    /// The stream matched and what becomes of its header: the other leg's payload type,
    /// our SSRC towards it and the offsets that keep its stream continuous.
    pub rewrite: Rewrite,
    /// The other leg's relay port (the new source port) and its peer (the destination).
    pub out_port: u16,
    pub to: SocketAddrV4,
    /// The address packets leave from; unspecified: the address they came to.
    pub out_ip: Ipv4Addr,
    /// The interface the packets leave by (1 is loopback).
    pub ifindex: u32,
}

/// What the program counted for a rule since it was installed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub packets: u64,
    /// RTP payload octets (without a CSRC list or extension), as RTCP sender reports count.
    pub octets: u64,
    /// CLOCK_MONOTONIC nanoseconds of the last forwarded packet.
    pub last_ns: u64,
    pub last_seq_in: u16,
    pub last_seq_out: u16,
    pub last_ts_out: u32,
}

// The map value's layout, shared by the program and `encode`/`decode`.
const V_SRC_IP: i16 = 0;
const V_SRC_PORT: i16 = 4;
const V_PT_IN: i16 = 6;
const V_PT_OUT: i16 = 7;
const V_SSRC_IN: i16 = 8;
const V_SSRC_OUT: i16 = 12;
const V_OUT_IP: i16 = 16;
const V_TO_IP: i16 = 20;
const V_OUT_PORT: i16 = 24;
const V_TO_PORT: i16 = 26;
const V_SEQ_OFF: i16 = 28;
const V_LAST_SEQ_IN: i16 = 30;
const V_TS_OFF: i16 = 32;
const V_IFINDEX: i16 = 36;
const V_PACKETS: i16 = 40;
const V_OCTETS: i16 = 48;
const V_LAST_NS: i16 = 56;
const V_LAST_SEQ_OUT: i16 = 64;
const V_LAST_TS_OUT: i16 = 68;
const VALUE_SIZE: usize = 72;

fn key(port: u16) -> [u8; 4] {
    let p = port.to_be_bytes();
    [p[0], p[1], 0, 0]
}

fn encode(rule: &Rule) -> [u8; VALUE_SIZE] {
    let (r, w) = (rule, &rule.rewrite);
    let mut v = [0u8; VALUE_SIZE];
    let mut put = |at: i16, b: &[u8]| v[at as usize..at as usize + b.len()].copy_from_slice(b);
    // Addresses, ports and SSRCs as they sit in the packet (network order); offsets and
    // counters in the host's order, as the program computes with them.
    put(V_SRC_IP, &r.from.ip().octets());
    put(V_SRC_PORT, &r.from.port().to_be_bytes());
    put(V_PT_IN, &[w.pt_in & 0x7f]);
    put(V_PT_OUT, &[w.pt_out & 0x7f]);
    put(V_SSRC_IN, &w.ssrc_in.to_be_bytes());
    put(V_SSRC_OUT, &w.ssrc_out.to_be_bytes());
    put(V_OUT_IP, &r.out_ip.octets());
    put(V_TO_IP, &r.to.ip().octets());
    put(V_OUT_PORT, &r.out_port.to_be_bytes());
    put(V_TO_PORT, &r.to.port().to_be_bytes());
    put(V_SEQ_OFF, &w.seq_offset.to_ne_bytes());
    put(V_TS_OFF, &w.ts_offset.to_ne_bytes());
    put(V_IFINDEX, &r.ifindex.to_ne_bytes());
    v
}

fn decode(v: &[u8; VALUE_SIZE]) -> Counts {
    let u64_at = |at: i16| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&v[at as usize..at as usize + 8]);
        u64::from_ne_bytes(b)
    };
    let u16_at = |at: i16| u16::from_ne_bytes([v[at as usize], v[at as usize + 1]]);
    let mut ts = [0u8; 4];
    ts.copy_from_slice(&v[V_LAST_TS_OUT as usize..V_LAST_TS_OUT as usize + 4]);
    Counts {
        packets: u64_at(V_PACKETS),
        octets: u64_at(V_OCTETS),
        last_ns: u64_at(V_LAST_NS),
        last_seq_in: u16_at(V_LAST_SEQ_IN),
        last_seq_out: u16_at(V_LAST_SEQ_OUT),
        last_ts_out: u32::from_ne_bytes(ts),
    }
}

// ---- the bpf(2) system call ----

const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_LOOKUP_ELEM: u32 = 1;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_MAP_DELETE_ELEM: u32 = 3;
const BPF_PROG_LOAD: u32 = 5;
const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;
const BPF_LINK_CREATE: u32 = 28;
const BPF_ENABLE_STATS: u32 = 32;
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;

/// `union bpf_attr`, as wide as any command here needs.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(&mut self, at: usize, v: u32) -> &mut Self {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, at: usize, v: u64) -> &mut Self {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
}

fn bpf(cmd: u32, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: `attr` is a properly sized, aligned bpf_attr for `cmd`; every pointer in
    // it refers to memory that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr.0.as_mut_ptr(),
            attr.0.len() as libc::c_long,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd(r: i64) -> OwnedFd {
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

// ---- the program ----

/// A tiny assembler: eBPF instructions with jumps to named labels.
#[derive(Default)]
struct Asm {
    insns: Vec<[u8; 8]>,
    labels: Vec<(&'static str, usize)>,
    jumps: Vec<(usize, &'static str)>,
}

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const R10: u8 = 10;

// Sizes for loads and stores.
const W: u8 = 0x00;
const H: u8 = 0x08;
const B: u8 = 0x10;
const DW: u8 = 0x18;

impl Asm {
    fn raw(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        let mut i = [0u8; 8];
        i[0] = code;
        i[1] = dst | (src << 4);
        i[2..4].copy_from_slice(&off.to_le_bytes());
        i[4..8].copy_from_slice(&imm.to_le_bytes());
        self.insns.push(i);
    }
    fn label(&mut self, name: &'static str) {
        self.labels.push((name, self.insns.len()));
    }
    fn ldx(&mut self, size: u8, dst: u8, src: u8, off: i16) {
        self.raw(0x61 | size, dst, src, off, 0);
    }
    fn stx(&mut self, size: u8, dst: u8, off: i16, src: u8) {
        self.raw(0x63 | size, dst, src, off, 0);
    }
    fn st(&mut self, size: u8, dst: u8, off: i16, imm: i32) {
        self.raw(0x62 | size, dst, 0, off, imm);
    }
    fn mov(&mut self, dst: u8, src: u8) {
        self.raw(0xbf, dst, src, 0, 0);
    }
    fn movi(&mut self, dst: u8, imm: i32) {
        self.raw(0xb7, dst, 0, 0, imm);
    }
    /// 32-bit move: keeps the low half, zeroes the high one.
    fn mov32(&mut self, dst: u8, src: u8) {
        self.raw(0xbc, dst, src, 0, 0);
    }
    fn addi(&mut self, dst: u8, imm: i32) {
        self.raw(0x07, dst, 0, 0, imm);
    }
    fn add(&mut self, dst: u8, src: u8) {
        self.raw(0x0f, dst, src, 0, 0);
    }
    fn andi(&mut self, dst: u8, imm: i32) {
        self.raw(0x57, dst, 0, 0, imm);
    }
    fn or(&mut self, dst: u8, src: u8) {
        self.raw(0x4f, dst, src, 0, 0);
    }
    fn rshi(&mut self, dst: u8, imm: i32) {
        self.raw(0x77, dst, 0, 0, imm);
    }
    fn xori(&mut self, dst: u8, imm: i32) {
        self.raw(0xa7, dst, 0, 0, imm);
    }
    /// Network order to the host's (and back): a byte swap on little-endian machines.
    fn be(&mut self, dst: u8, bits: i32) {
        self.raw(0xdc, dst, 0, 0, bits);
    }
    fn atomic_add64(&mut self, dst: u8, off: i16, src: u8) {
        self.raw(0xdb, dst, src, off, 0);
    }
    fn jmp(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: &'static str) {
        self.jumps.push((self.insns.len(), to));
        self.raw(code, dst, src, 0, imm);
    }
    fn jnei(&mut self, dst: u8, imm: i32, to: &'static str) {
        self.jmp(0x55, dst, 0, imm, to);
    }
    fn jeqi(&mut self, dst: u8, imm: i32, to: &'static str) {
        self.jmp(0x15, dst, 0, imm, to);
    }
    fn jne(&mut self, dst: u8, src: u8, to: &'static str) {
        self.jmp(0x5d, dst, src, 0, to);
    }
    fn jgt(&mut self, dst: u8, src: u8, to: &'static str) {
        self.jmp(0x2d, dst, src, 0, to);
    }
    fn call(&mut self, helper: i32) {
        self.raw(0x85, 0, 0, 0, helper);
    }
    fn exit(&mut self) {
        self.raw(0x95, 0, 0, 0, 0);
    }
    fn ld_map_fd(&mut self, dst: u8, map: RawFd) {
        self.raw(0x18, dst, 1, 0, map);
        self.raw(0, 0, 0, 0, 0);
    }
    fn finish(mut self) -> Vec<[u8; 8]> {
        for (at, to) in std::mem::take(&mut self.jumps) {
            let target = self
                .labels
                .iter()
                .find(|(n, _)| *n == to)
                .map(|(_, i)| *i)
                .expect("a label the program defines");
            let off = (target as i64 - at as i64 - 1) as i16;
            self.insns[at][2..4].copy_from_slice(&off.to_le_bytes());
        }
        self.insns
    }
}

// Offsets in the packet at tc ingress (Ethernet, IPv4 without options, UDP, RTP).
const ETH_PROTO: i16 = 12;
const IP: i16 = 14;
const IP_FRAG: i16 = 20;
const IP_TTL: i16 = 22;
const IP_PROTO: i16 = 23;
const IP_CSUM: i16 = 24;
const IP_SRC: i16 = 26;
const IP_DST: i16 = 30;
const UDP_SPORT: i16 = 34;
const UDP_DPORT: i16 = 36;
const UDP_CSUM: i16 = 40;
const RTP_B0: i16 = 42;
const RTP_B1: i16 = 43;
const RTP_SEQ: i16 = 44;
const RTP_TS: i16 = 46;
const RTP_SSRC: i16 = 50;
const RTP_PAYLOAD: i32 = 54;

// struct __sk_buff
const SKB_LEN: i16 = 0;
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;

const HELPER_MAP_LOOKUP: i32 = 1;
const HELPER_KTIME_NS: i32 = 5;
const HELPER_REDIRECT: i32 = 23;
const HELPER_REDIRECT_NEIGH: i32 = 152;
/// tcx: let the next program (or the stack) have the packet.
const TCX_NEXT: i32 = -1;

fn program(map: RawFd) -> Vec<[u8; 8]> {
    let mut a = Asm::default();
    let reload = |a: &mut Asm| {
        a.ldx(W, R2, R6, SKB_DATA);
        a.ldx(W, R3, R6, SKB_DATA_END);
        a.mov(R4, R2);
        a.addi(R4, RTP_PAYLOAD);
        a.jgt(R4, R3, "pass");
    };
    a.mov(R6, R1);
    reload(&mut a);
    // IPv4 (0x0800 read as a little-endian u16), no options, not a fragment, UDP.
    a.ldx(H, R5, R2, ETH_PROTO);
    a.jnei(R5, 0x0008, "pass");
    a.ldx(B, R5, R2, IP);
    a.jnei(R5, 0x45, "pass");
    a.ldx(H, R5, R2, IP_FRAG);
    a.andi(R5, 0xff3f);
    a.jnei(R5, 0, "pass");
    a.ldx(B, R5, R2, IP_PROTO);
    a.jnei(R5, 17, "pass");
    // The rule for the destination port.
    a.ldx(H, R5, R2, UDP_DPORT);
    a.stx(W, R10, -4, R5);
    a.ld_map_fd(R1, map);
    a.mov(R2, R10);
    a.addi(R2, -4);
    a.call(HELPER_MAP_LOOKUP);
    a.jeqi(R0, 0, "pass");
    a.mov(R7, R0);
    reload(&mut a);
    // From the learned source only.
    a.ldx(W, R5, R2, IP_SRC);
    a.ldx(W, R8, R7, V_SRC_IP);
    a.jne(R5, R8, "pass");
    a.ldx(H, R5, R2, UDP_SPORT);
    a.ldx(H, R8, R7, V_SRC_PORT);
    a.jne(R5, R8, "pass");
    // RTP version 2, the stream's SSRC, the leg's payload type.
    a.ldx(B, R5, R2, RTP_B0);
    a.andi(R5, 0xc0);
    a.jnei(R5, 0x80, "pass");
    a.ldx(W, R5, R2, RTP_SSRC);
    a.ldx(W, R8, R7, V_SSRC_IN);
    a.jne(R5, R8, "pass");
    a.ldx(B, R5, R2, RTP_B1);
    a.mov(R8, R5);
    a.andi(R8, 0x7f);
    a.ldx(B, R9, R7, V_PT_IN);
    a.jne(R8, R9, "pass");
    // Payload type (the marker kept), SSRC, sequence, timestamp.
    a.andi(R5, 0x80);
    a.ldx(B, R8, R7, V_PT_OUT);
    a.or(R5, R8);
    a.stx(B, R2, RTP_B1, R5);
    a.ldx(W, R5, R7, V_SSRC_OUT);
    a.stx(W, R2, RTP_SSRC, R5);
    a.ldx(H, R5, R2, RTP_SEQ);
    a.be(R5, 16);
    a.stx(H, R7, V_LAST_SEQ_IN, R5);
    a.ldx(H, R8, R7, V_SEQ_OFF);
    a.add(R5, R8);
    a.andi(R5, 0xffff);
    a.stx(H, R7, V_LAST_SEQ_OUT, R5);
    a.be(R5, 16);
    a.stx(H, R2, RTP_SEQ, R5);
    a.ldx(W, R5, R2, RTP_TS);
    a.be(R5, 32);
    a.ldx(W, R8, R7, V_TS_OFF);
    a.add(R5, R8);
    a.mov32(R5, R5);
    a.stx(W, R7, V_LAST_TS_OUT, R5);
    a.be(R5, 32);
    a.stx(W, R2, RTP_TS, R5);
    // Addresses and ports: from the relay's other port to the other leg's peer.
    a.ldx(W, R5, R7, V_OUT_IP);
    a.jnei(R5, 0, "have_src");
    a.ldx(W, R5, R2, IP_DST);
    a.label("have_src");
    a.stx(W, R2, IP_SRC, R5);
    a.ldx(W, R5, R7, V_TO_IP);
    a.stx(W, R2, IP_DST, R5);
    a.ldx(H, R5, R7, V_OUT_PORT);
    a.stx(H, R2, UDP_SPORT, R5);
    a.ldx(H, R5, R7, V_TO_PORT);
    a.stx(H, R2, UDP_DPORT, R5);
    // No UDP checksum (allowed over IPv4), a fresh TTL, the IP header checksum anew: the
    // ones' complement sum does not care in which byte order the words are read.
    a.st(H, R2, UDP_CSUM, 0);
    a.st(B, R2, IP_TTL, 64);
    a.st(H, R2, IP_CSUM, 0);
    a.movi(R5, 0);
    for off in (IP..IP + 20).step_by(2) {
        a.ldx(H, R8, R2, off);
        a.add(R5, R8);
    }
    for _ in 0..2 {
        a.mov(R8, R5);
        a.rshi(R8, 16);
        a.andi(R5, 0xffff);
        a.add(R5, R8);
    }
    a.xori(R5, 0xffff);
    a.stx(H, R2, IP_CSUM, R5);
    // Counters for the relay thread.
    a.movi(R5, 1);
    a.atomic_add64(R7, V_PACKETS, R5);
    a.ldx(W, R5, R6, SKB_LEN);
    a.addi(R5, -RTP_PAYLOAD);
    a.atomic_add64(R7, V_OCTETS, R5);
    a.call(HELPER_KTIME_NS);
    a.stx(DW, R7, V_LAST_NS, R0);
    // Out: loopback turns the packet around itself; elsewhere the neighbour table gives
    // the next hop's MAC.
    a.ldx(W, R1, R7, V_IFINDEX);
    a.jnei(R1, 1, "neigh");
    a.movi(R2, 0);
    a.call(HELPER_REDIRECT);
    a.exit();
    a.label("neigh");
    a.movi(R2, 0);
    a.movi(R3, 0);
    a.movi(R4, 0);
    a.call(HELPER_REDIRECT_NEIGH);
    a.exit();
    a.label("pass");
    a.movi(R0, TCX_NEXT);
    a.exit();
    a.finish()
}

/// The loaded program, its map and its attachments; detached when dropped.
pub struct Kfwd {
    map: OwnedFd,
    prog: OwnedFd,
    _links: Vec<OwnedFd>,
    /// Held while the kernel counts every program's run time (see [`Kfwd::with_stats`]).
    stats: Option<OwnedFd>,
    /// The interfaces attached, by index.
    pub ifaces: Vec<(u32, String)>,
}

impl std::fmt::Debug for Kfwd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kfwd")
            .field("ifaces", &self.ifaces)
            .finish()
    }
}

/// Interfaces the program can serve: loopback and Ethernet-framed ones (the offsets above
/// assume a 14-byte link header), in the network namespace of the calling thread (from
/// the kernel's link list, not `/sys`, which shows the namespace it was mounted in).
pub fn interfaces() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, which is freed below and read only in between.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return out;
    }
    let mut p = list;
    while !p.is_null() {
        // SAFETY: `p` walks the list getifaddrs returned; each node is valid until
        // freeifaddrs.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_addr.is_null()
            // SAFETY: a non-null address has at least its family.
            || unsafe { (*ifa.ifa_addr).sa_family } != libc::AF_PACKET as libc::sa_family_t
        {
            continue;
        }
        // SAFETY: an AF_PACKET entry's address is a sockaddr_ll, and ifa_name the
        // interface's NUL-terminated name.
        let (ll, name) = unsafe {
            (
                &*(ifa.ifa_addr as *const libc::sockaddr_ll),
                std::ffi::CStr::from_ptr(ifa.ifa_name),
            )
        };
        // ARPHRD_ETHER 1, ARPHRD_LOOPBACK 772.
        if matches!(ll.sll_hatype, 1 | 772) && ll.sll_ifindex > 0 {
            out.push((ll.sll_ifindex as u32, name.to_string_lossy().into_owned()));
        }
    }
    // SAFETY: `list` came from getifaddrs and is not used after this.
    unsafe { libc::freeifaddrs(list) };
    out.sort();
    out.dedup();
    out
}

impl Kfwd {
    /// Loads the program and attaches it to `ifaces` (index, name).
    pub fn open(ifaces: Vec<(u32, String)>) -> Result<Kfwd, KfwdError> {
        if ifaces.is_empty() {
            return Err(KfwdError::NoInterface);
        }
        let mut a = Attr::new();
        a.u32(0, BPF_MAP_TYPE_HASH)
            .u32(4, 4)
            .u32(8, VALUE_SIZE as u32)
            .u32(12, MAX_RULES);
        let map = fd(
            bpf(BPF_MAP_CREATE, &mut a).map_err(|source| KfwdError::Bpf {
                op: "map create",
                source,
            })?,
        );
        let insns = program(map.as_raw_fd());
        let license = b"Apache-2.0\0";
        let mut log = vec![0u8; 1 << 16];
        let name = b"dasan_rtp_fwd\0";
        let mut a = Attr::new();
        a.u32(0, BPF_PROG_TYPE_SCHED_CLS)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(24, 1)
            .u32(28, log.len() as u32)
            .u64(32, log.as_mut_ptr() as u64);
        a.0[48..48 + name.len()].copy_from_slice(name);
        let prog = match bpf(BPF_PROG_LOAD, &mut a) {
            Ok(r) => fd(r),
            Err(source) => {
                let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                return Err(KfwdError::Verifier {
                    source,
                    log: String::from_utf8_lossy(&log[..end]).into_owned(),
                });
            }
        };
        let mut links = Vec::new();
        for (index, _) in &ifaces {
            let mut a = Attr::new();
            a.u32(0, prog.as_raw_fd() as u32)
                .u32(4, *index)
                .u32(8, BPF_TCX_INGRESS);
            links.push(fd(bpf(BPF_LINK_CREATE, &mut a).map_err(|source| {
                KfwdError::Bpf {
                    op: "tcx attach",
                    source,
                }
            })?));
        }
        Ok(Kfwd {
            map,
            prog,
            _links: links,
            stats: None,
            ifaces,
        })
    }

    /// Has the kernel count the program's runs and run time (for load tests: it costs
    /// some tens of nanoseconds per run, for every BPF program on the machine).
    pub fn with_stats(mut self) -> Self {
        let mut a = Attr::new();
        a.u32(0, 0); // BPF_STATS_RUN_TIME
        self.stats = bpf(BPF_ENABLE_STATS, &mut a).ok().map(fd);
        self
    }

    /// The program's total run time (ns) and runs, while [`with_stats`](Self::with_stats)
    /// holds.
    pub fn run_stats(&self) -> Option<(u64, u64)> {
        self.stats.as_ref()?;
        let mut info = [0u8; 256];
        let mut a = Attr::new();
        a.u32(0, self.prog.as_raw_fd() as u32)
            .u32(4, info.len() as u32)
            .u64(8, info.as_mut_ptr() as u64);
        bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a).ok()?;
        // struct bpf_prog_info: run_time_ns at 192, run_cnt at 200.
        let at = |i: usize| u64::from_ne_bytes(info[i..i + 8].try_into().unwrap_or([0; 8]));
        Some((at(192), at(200)))
    }

    /// Installs (or replaces) the rule for `rule.port`; its counters start from zero.
    pub fn install(&self, rule: &Rule) -> io::Result<()> {
        let k = key(rule.port);
        let v = encode(rule);
        let mut a = Attr::new();
        a.u32(0, self.map.as_raw_fd() as u32)
            .u64(8, k.as_ptr() as u64)
            .u64(16, v.as_ptr() as u64)
            .u64(24, 0);
        bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(|_| ())
    }

    pub fn remove(&self, port: u16) {
        let k = key(port);
        let mut a = Attr::new();
        a.u32(0, self.map.as_raw_fd() as u32)
            .u64(8, k.as_ptr() as u64);
        let _ = bpf(BPF_MAP_DELETE_ELEM, &mut a);
    }

    /// The counters of the rule on `port`, if there is one.
    pub fn counts(&self, port: u16) -> Option<Counts> {
        let k = key(port);
        let mut v = [0u8; VALUE_SIZE];
        let mut a = Attr::new();
        a.u32(0, self.map.as_raw_fd() as u32)
            .u64(8, k.as_ptr() as u64)
            .u64(16, v.as_mut_ptr() as u64);
        bpf(BPF_MAP_LOOKUP_ELEM, &mut a).ok()?;
        Some(decode(&v))
    }
}

/// The interface the kernel routes `to` through, and the source address it would pick:
/// what a socket connected to `to` is given, matched to an interface's address.
pub fn egress(to: Ipv4Addr) -> Option<(u32, Ipv4Addr)> {
    if to.is_loopback() {
        return Some((1, to));
    }
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect((to, 9)).ok()?;
    let std::net::IpAddr::V4(via) = s.local_addr().ok()?.ip() else {
        return None;
    };
    // A destination on this host is reached through loopback whatever its address.
    if via.is_loopback() || via == to {
        return Some((1, via));
    }
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, which is freed below and read only in between.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut found = None;
    let mut p = list;
    while !p.is_null() {
        // SAFETY: `p` walks the list getifaddrs returned; each node and its address are
        // valid until freeifaddrs.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_addr.is_null()
            || unsafe { (*ifa.ifa_addr).sa_family } != libc::AF_INET as libc::sa_family_t
        {
            continue;
        }
        // SAFETY: an AF_INET address is a sockaddr_in.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        if Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)) == via {
            // SAFETY: ifa_name is the interface's NUL-terminated name.
            let index = unsafe { libc::if_nametoindex(ifa.ifa_name) };
            if index != 0 {
                found = Some((index, via));
            }
            break;
        }
    }
    // SAFETY: `list` came from getifaddrs and is not used after this.
    unsafe { libc::freeifaddrs(list) };
    found
}

/// CLOCK_MONOTONIC now, in the program's unit.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The program on loopback, where the kernel lets us load it (root);
/// `DASAN_REQUIRE_KFWD=1` (set by `scripts/test.sh` when it runs as root) makes its
/// absence a failure rather than a skipped test.
#[cfg(test)]
pub(crate) fn open_lo() -> Option<Kfwd> {
    {
        match Kfwd::open(vec![(1, "lo".into())]) {
            Ok(k) => Some(k),
            Err(e) => {
                assert!(
                    std::env::var_os("DASAN_REQUIRE_KFWD").is_none(),
                    "in-kernel forwarding required: {e}"
                );
                eprintln!("skipped: in-kernel forwarding unavailable here: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::{build_rtp, parse_rtp};
    use std::net::UdpSocket;
    use std::time::Duration;

    fn v4(s: &UdpSocket) -> SocketAddrV4 {
        match s.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            a => panic!("{a}"),
        }
    }

    /// Network namespaces made for a test, deleted with it (their links go with them).
    struct Namespaces(Vec<String>);

    impl Drop for Namespaces {
        fn drop(&mut self) {
            for n in &self.0 {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", n])
                    .status();
            }
        }
    }

    fn ip(args: &[&str]) {
        let ok = std::process::Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip {}", args.join(" "));
    }

    /// Runs `f` on a thread inside network namespace `ns` (setns is per thread).
    fn in_ns<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("the namespace");
            // SAFETY: a valid namespace descriptor; only this thread moves.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}: {}", io::Error::last_os_error());
            f()
        })
    }

    /// Over a real Ethernet link (a veth pair between two namespaces made here, so that
    /// nothing touches the machine's own interfaces): the phones are on one side, the relay
    /// on the other; the rule's packets come back out of the link to the agent's phone,
    /// with the neighbour table giving the MAC (`bpf_redirect_neigh`).
    #[test]
    fn a_rule_forwards_over_an_ethernet_link_to_the_next_hop() {
        if open_lo().is_none() {
            return;
        }
        let id = std::process::id();
        let (relay_ns, phones_ns) = (format!("dkf-r-{id}"), format!("dkf-p-{id}"));
        let _guard = Namespaces(vec![relay_ns.clone(), phones_ns.clone()]);
        let (rl, pl) = (
            format!("kfr{}", id % 100_000),
            format!("kfp{}", id % 100_000),
        );
        ip(&["netns", "add", &relay_ns]);
        ip(&["netns", "add", &phones_ns]);
        ip(&[
            "link", "add", &rl, "netns", &relay_ns, "type", "veth", "peer", "name", &pl, "netns",
            &phones_ns,
        ]);
        ip(&["-n", &relay_ns, "addr", "add", "10.213.0.1/24", "dev", &rl]);
        ip(&["-n", &phones_ns, "addr", "add", "10.213.0.2/24", "dev", &pl]);
        ip(&["-n", &relay_ns, "link", "set", &rl, "up"]);
        ip(&["-n", &phones_ns, "link", "set", &pl, "up"]);
        let (to_relay, relay_rx) = std::sync::mpsc::channel::<(SocketAddrV4, SocketAddrV4)>();
        let (to_phones, phones_rx) =
            std::sync::mpsc::channel::<(SocketAddrV4, SocketAddrV4, u32)>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let relay = in_ns(&relay_ns, move || {
            let k = Kfwd::open(interfaces()).expect("the program in the relay's namespace");
            assert!(k.ifaces.len() >= 2, "lo and the link: {:?}", k.ifaces);
            let relay_in = UdpSocket::bind("10.213.0.1:0").unwrap();
            let relay_out = UdpSocket::bind("10.213.0.1:0").unwrap();
            let (caller, agent) = relay_rx.recv().unwrap();
            let (ifindex, via) = egress(*agent.ip()).expect("a route to the phones");
            assert_ne!(ifindex, 1, "out through the link, not loopback");
            assert_eq!(via, Ipv4Addr::new(10, 213, 0, 1));
            let rule = Rule {
                port: v4(&relay_in).port(),
                from: caller,
                rewrite: Rewrite {
                    pt_in: 0,
                    ssrc_in: 0xCAFE,
                    pt_out: 0,
                    ssrc_out: 0xBEEF,
                    seq_offset: 7,
                    ts_offset: 0,
                },
                out_port: v4(&relay_out).port(),
                to: agent,
                out_ip: via,
                ifindex,
            };
            k.install(&rule).unwrap();
            to_phones
                .send((v4(&relay_in), v4(&relay_out), ifindex))
                .unwrap();
            done_rx.recv().unwrap();
            let c = k.counts(rule.port).unwrap();
            // Nothing reached the relay's socket: all went through the kernel.
            relay_in.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 256];
            (c.packets, relay_in.recv_from(&mut buf).is_err())
        });
        let phones = in_ns(&phones_ns, move || {
            let caller = UdpSocket::bind("10.213.0.2:0").unwrap();
            let agent = UdpSocket::bind("10.213.0.2:0").unwrap();
            agent
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            to_relay.send((v4(&caller), v4(&agent))).unwrap();
            let (relay_in, relay_out, _) = phones_rx.recv().unwrap();
            let mut buf = [0u8; 2048];
            for i in 0..20u16 {
                caller
                    .send_to(
                        &build_rtp(0, false, i, 160 * u32::from(i), 0xCAFE, &[i as u8; 160]),
                        relay_in,
                    )
                    .unwrap();
                let (n, from) = agent
                    .recv_from(&mut buf)
                    .expect("forwarded back over the link");
                assert_eq!(from, std::net::SocketAddr::V4(relay_out));
                let h = parse_rtp(&buf[..n]).unwrap();
                assert_eq!((h.ssrc, h.seq), (0xBEEF, i + 7));
                assert_eq!(buf[n - 1], i as u8);
            }
            done_tx.send(()).unwrap();
        });
        phones.join().expect("the phones' side");
        let (forwarded, socket_empty) = relay.join().expect("the relay's side");
        assert_eq!(forwarded, 20);
        assert!(socket_empty, "a packet reached the relay's socket");
    }

    #[test]
    fn a_rule_forwards_its_stream_rewritten_and_passes_everything_else() {
        let Some(k) = open_lo() else { return };
        let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        let agent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let relay_in = UdpSocket::bind("127.0.0.1:0").unwrap();
        let relay_out = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&agent, &relay_in] {
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
        }
        let rule = Rule {
            port: v4(&relay_in).port(),
            from: v4(&caller),
            rewrite: Rewrite {
                pt_in: 0,
                ssrc_in: 0xCAFE,
                pt_out: 8,
                ssrc_out: 0xBEEF,
                seq_offset: 1000,
                ts_offset: 0xFFFF_FF00,
            },
            out_port: v4(&relay_out).port(),
            to: v4(&agent),
            out_ip: Ipv4Addr::UNSPECIFIED,
            ifindex: 1,
        };
        k.install(&rule).unwrap();
        let to = relay_in.local_addr().unwrap();
        let mut buf = [0u8; 2048];
        for i in 0..50u16 {
            caller
                .send_to(
                    &build_rtp(
                        0,
                        i == 0,
                        65_530u16.wrapping_add(i),
                        160 * u32::from(i),
                        0xCAFE,
                        &[i as u8; 160],
                    ),
                    to,
                )
                .unwrap();
            let (n, from) = agent.recv_from(&mut buf).expect("forwarded to the agent");
            assert_eq!(
                from,
                relay_out.local_addr().unwrap(),
                "from the relay's other port"
            );
            let h = parse_rtp(&buf[..n]).unwrap();
            assert_eq!(h.ssrc, 0xBEEF);
            assert_eq!(h.payload_type, 8);
            assert_eq!(h.marker, i == 0);
            assert_eq!(h.seq, 65_530u16.wrapping_add(i).wrapping_add(1000));
            assert_eq!(h.timestamp, (160 * u32::from(i)).wrapping_add(0xFFFF_FF00));
            assert_eq!(buf[n - 1], i as u8, "payload untouched");
        }
        let c = k.counts(rule.port).unwrap();
        assert_eq!(c.packets, 50);
        assert_eq!(c.octets, 50 * 160, "payload octets");
        assert_eq!(c.last_seq_in, 65_530u16.wrapping_add(49));
        assert_eq!(
            c.last_seq_out,
            65_530u16.wrapping_add(49).wrapping_add(1000)
        );
        assert!(monotonic_ns() >= c.last_ns && monotonic_ns() - c.last_ns < 5_000_000_000);
        // A stranger, another SSRC, another payload type (a telephone-event) and RTCP reach
        // the relay's socket as they were sent.
        let others = [
            (&stranger, build_rtp(0, false, 1, 1, 0xCAFE, &[1; 160])),
            (&caller, build_rtp(0, false, 2, 2, 0xD00D, &[2; 160])),
            (&caller, build_rtp(101, false, 3, 3, 0xCAFE, &[3; 4])),
            (&caller, vec![0x80, 200, 0, 6, 0, 0, 0xCA, 0xFE]),
        ];
        for (from, p) in &others {
            from.send_to(p, to).unwrap();
            let (n, src) = relay_in.recv_from(&mut buf).expect("left to user space");
            assert_eq!(&buf[..n], &p[..]);
            assert_eq!(src, from.local_addr().unwrap());
        }
        assert_eq!(k.counts(rule.port).unwrap().packets, 50);
        // Removed: the stream goes to the socket again.
        k.remove(rule.port);
        assert!(k.counts(rule.port).is_none());
        caller
            .send_to(&build_rtp(0, false, 9, 9, 0xCAFE, &[9; 160]), to)
            .unwrap();
        let (n, _) = relay_in
            .recv_from(&mut buf)
            .expect("to user space once removed");
        assert_eq!(parse_rtp(&buf[..n]).unwrap().ssrc, 0xCAFE);
    }
}
