#!/usr/bin/env python3
"""Late packets per direction in a loopback capture of a browser-agent load run.

    rtp-gaps.py CAPTURE.pcapng

Every UDP stream with at least 50 packets is put in one of four directions by its ports
(the engine's RTP ports 20000-29999 face SIPp, its WebRTC ports 10000-13999 face the
simulated browsers, as load-web.sh configures them), and each arrival gap over 60 ms (three
20 ms packets) is counted. A packet the engine relays late shows as a gap on its way out
(engine -> browser, engine -> sipp) with none on its way in (sipp -> engine,
browser -> engine); a gap on the way in is the sender's.
"""
import collections
import struct
import sys


def packets(path):
    """(seconds, source port, destination port) of every IPv4 RTP packet in a pcapng file."""
    data = open(path, "rb").read()
    i, scale, out = 0, 1e-6, []
    while i + 12 <= len(data):
        kind, length = struct.unpack_from("<II", data, i)
        if length < 12:
            break
        if kind == 1:  # interface description: its if_tsresol option, if any
            o = i + 16
            while o + 4 <= i + length - 4:
                code, olen = struct.unpack_from("<HH", data, o)
                if code == 0:
                    break
                if code == 9:
                    r = data[o + 4]
                    scale = 2.0 ** -(r & 0x7F) if r & 0x80 else 10.0 ** -r
                o += 4 + (olen + 3) // 4 * 4
        elif kind == 6:  # enhanced packet
            _, hi, lo, caplen, _ = struct.unpack_from("<IIIII", data, i + 8)
            frame = data[i + 28 : i + 28 + caplen]
            ip = frame[14:]  # loopback frames carry an Ethernet header
            if len(ip) >= 20 and ip[0] >> 4 == 4 and ip[9] == 17:
                ihl = (ip[0] & 15) * 4
                udp = ip[ihl:]
                # RTP (or SRTP: its header is clear) only, not RTCP (RFC 5761 demux) or STUN.
                if len(udp) >= 10 and udp[8] >> 6 == 2 and not 192 <= udp[9] <= 223:
                    sport, dport = struct.unpack_from(">HH", udp)
                    out.append((((hi << 32) | lo) * scale, sport, dport))
        i += length
    return out


def direction(sport, dport):
    if 20000 <= dport <= 29999:
        return "sipp -> engine"
    if 20000 <= sport <= 29999:
        return "engine -> sipp"
    if 10000 <= dport <= 13999:
        return "browser -> engine"
    if 10000 <= sport <= 13999:
        return "engine -> browser"
    return None


def main():
    streams = collections.defaultdict(list)
    for t, sport, dport in packets(sys.argv[1]):
        streams[(sport, dport)].append(t)
    totals = collections.defaultdict(lambda: [0, 0, 0, 0.0])  # streams, packets, gaps, max
    for (sport, dport), times in streams.items():
        d = direction(sport, dport)
        if d is None or len(times) < 50:
            continue
        s = totals[d]
        s[0] += 1
        s[1] += len(times)
        for a, b in zip(times, times[1:]):
            if b - a > 0.060:
                s[2] += 1
            s[3] = max(s[3], b - a)
    for d in ("sipp -> engine", "engine -> browser", "browser -> engine", "engine -> sipp"):
        n, p, g, m = totals[d]
        print(f"{d:18} {n:5} streams {p:8} packets  gaps > 60 ms {g:6}  max gap {m * 1000:6.1f} ms")


main()
