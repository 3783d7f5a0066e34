#!/usr/bin/env python3
"""Writes the seed corpus under tests/fuzz/corpus/<target>/ from the project's own test
messages: the SIP literals of the unit tests (b2bua torture cases, parser and framing
tests), the SIPp scenarios' messages with their [fields] filled in, the SDP and digest
samples of the tests, and the dialplans. Run from anywhere; rerun after changing those
sources (files are named by content hash, so a rerun only adds)."""
import hashlib, itertools, os, re, struct

BRANCHES = itertools.count(1)

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(FUZZ))
OUT = os.path.join(FUZZ, "corpus")


def src(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    if not data or len(data) > 8192:
        return
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def rust_strings(text):
    """The contents of the plain and raw string literals in Rust source, unescaped."""
    out = []
    for m in re.finditer(r'r(#+)"(.*?)"\1|"((?:[^"\\]|\\.)*)"', text, re.S):
        if m.group(2) is not None:
            out.append(m.group(2))
            continue
        s = m.group(3)
        s = re.sub(r"\\\n\s*", "", s)
        s = re.sub(r"\\u\{([0-9a-fA-F]+)\}", lambda x: chr(int(x.group(1), 16)), s)
        s = s.replace("\\r", "\r").replace("\\n", "\n").replace("\\t", "\t")
        s = s.replace('\\"', '"').replace("\\'", "'").replace("\\\\", "\\")
        out.append(s)
    return out


SIP_START = re.compile(r"^(SIP/2\.0 |[A-Z]+ \S+ SIP/)")


def fix_length(msg):
    """Content-Length: {} (a format argument in the tests) becomes the body's length."""
    head, sep, body = msg.partition("\r\n\r\n")
    if "{}" in head and sep:
        head = head.replace("{}", str(len(body.encode())))
    return head + sep + body


def test_messages():
    b2 = src("src/b2bua/tests.rs")
    hdrs = re.search(r'let hdrs = "(.*?)";', b2).group(1)
    hdrs = hdrs.replace("\\r", "\r").replace("\\n", "\n")
    offer = [s for s in rust_strings(b2) if s.startswith("v=0\r\no=c")][0]
    msgs = []
    for path in ["src/b2bua/tests.rs", "src/sip/message.rs", "src/sip/framing.rs",
                 "src/web/agent_ws.rs", "src/web/ua.rs", "src/registrar/mod.rs"]:
        for s in rust_strings(src(path)):
            if not SIP_START.match(s):
                continue
            s = s.replace("{hdrs}", hdrs).replace("{sdp}", offer)
            s = re.sub(r"\{(call|id|n|number|auth|tag|branch|[a-z_]+)\}",
                       lambda m: {"call": "c1", "id": "1001", "n": "1", "number": "120",
                                  "auth": ""}.get(m.group(1), "x"), s)
            msgs.append(fix_length(s))
    return msgs, offer


# SIPp fields: the scenario's peer is the engine at 127.0.0.1:5060.
def fill(text, local_ip, local_port, service, n, auth_header, concrete):
    lines = [l.strip() for l in text.strip("\n").split("\n")]
    while lines and lines[0] == "":
        lines.pop(0)
    lines = [l for l in lines if l != "[routes]"]
    if "" in lines:
        i = lines.index("")
        head, body = lines[:i], lines[i + 1:]
    else:
        head, body = lines, []
    body = "".join(l + "\r\n" for l in body if l)
    msg = "\r\n".join(head) + "\r\n\r\n" + body
    f = {
        "[service]": service, "[remote_ip]": "127.0.0.1", "[remote_port]": "5060",
        "[local_ip]": local_ip, "[local_port]": str(local_port), "[transport]": "UDP",
        "[pid]": "42", "[call_number]": "1", "[call_id]": f"{service}-{n}@{local_ip}",
        "[media_ip_type]": "4", "[local_ip_type]": "4", "[media_ip]": local_ip,
        "[media_port]": "4000", "[agent_port]": str(local_port), "[field0]": "1001",
        "[next_url]": "sip:127.0.0.1:5060",
    }
    for k, v in f.items():
        msg = msg.replace(k, v)
    msg = re.sub(r"\[branch\]", lambda _: f"z9hG4bK{service}{n}x{next(BRANCHES)}", msg)
    msg = msg.replace("[field1]", f"{auth_header}: [auth]" if auth_header else "")
    msg = re.sub(r"\[authentication[^\]]*\]", f"{auth_header or 'Authorization'}: [auth]", msg)
    msg = msg.replace("\r\n\r\n\r\n", "\r\n\r\n")
    if concrete:
        b = msg.partition("\r\n\r\n")[2]
        msg = msg.replace("[len]", str(len(b.encode())))
        msg = msg.replace("[peer_tag_param]", ";tag=e1")
        msg = msg.replace("[auth]", 'Digest username="1001", realm="dasan", nonce="6553f100.0123456789abcdef01234567", uri="sip:dasan", response="00112233445566778899aabbccddeeff", algorithm=MD5, qop=auth, nc=00000001, cnonce="fz"')
        for h, v in [("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKeng1"), ("From", "<sip:0212345678@carrier>;tag=e0"),
                     ("To", "<sip:1001@192.0.2.1:5070>"), ("Call-ID", "eng-1"), ("CSeq", "1 INVITE")]:
            msg = msg.replace(f"[last_{h}:]", f"{h}: {v}")
    return msg


def scenario_sends(name):
    text = src(f"sipp-scenarios/{name}")
    return re.findall(r"<send[^>]*>\s*<!\[CDATA\[(.*?)\]\]>", text, re.S)


def main():
    msgs, offer = test_messages()
    scenarios = sorted(f for f in os.listdir(os.path.join(ROOT, "sipp-scenarios")) if f.endswith(".xml"))
    trunk_invite = None
    scripts = []
    for sc in scenarios:
        caller = sc.startswith("caller")
        agentish = sc.startswith("agent")
        phone = not caller  # register, feature codes and agents send from the agent's phone
        ip, port = ("10.1.1.1", 5060) if caller else ("192.0.2.1", 5070)
        service = "1209" if sc == "caller-menu.xml" else "*21" if sc == "feature-code.xml" else "120"
        auth = "Proxy-Authorization" if sc == "feature-code.xml" else "Authorization"
        sends = scenario_sends(sc)
        for i, s in enumerate(sends):
            msgs.append(fill(s, ip, port, service, i, auth, True))
        flow = "t" if caller else "a"
        recs = [f"@@{flow}2\n" + fill(s, ip, port, service, i, auth, False) for i, s in enumerate(sends)]
        if sc == "caller.xml":
            trunk_invite = recs[0]
        scripts.append((sc, recs))
    agent = [f"@@a1\n" + fill(s, "192.0.2.1", 5070, "120", i, None, False)
             for i, s in enumerate(scenario_sends("agent.xml"))]
    for sc, recs in scripts:
        if sc.startswith("caller") and sc != "caller-refused.xml":
            # The caller's INVITE, the agent answering it, then the rest of the caller.
            put("engine", "".join(recs[:1] + agent + recs[1:]))
        elif sc.startswith("agent"):
            put("engine", "".join([trunk_invite] + [r.replace("@@a2", "@@a1") for r in recs]))
        else:
            put("engine", "".join(recs))
    put("engine", trunk_invite + "@@m3\n9\n@@m4\n1\n@@m5\nP\n@@t8\n")
    # Agent 1002 registers over TCP (only 1001 is registered by the harness), takes a call
    # and its connection drops.
    reg_tcp = [fill(s, "192.0.2.2", 5070, "120", i, "Authorization", False)
               .replace("[len]", "0").replace("UDP", "TCP").replace("1001", "1002")
               .replace(":5070>", ":5070;transport=tcp>")
               for i, s in enumerate(scenario_sends("register.xml"))]
    agent_b = [r.replace("@@a1", "@@b1").replace("UDP", "TCP").replace("192.0.2.1", "192.0.2.2") for r in agent]
    put("engine", "@@b0\n" + reg_tcp[0] + "@@b1\n" + reg_tcp[1] + "@@t0\n" + trunk_invite[5:]
        + "@@a1\nSIP/2.0 486 Busy Here\r\n[last_Via:]\r\n[last_From:]\r\n[last_To:];tag=b1\r\n[last_Call-ID:]\r\n[last_CSeq:]\r\nContent-Length: 0\r\n\r\n"
        + "".join(agent_b) + "@@c6\n")
    for m in msgs:
        put("sip_message", m)
        put("engine", m)
        put("sip_framing", b"\x03\x05\x11\x40" + m.encode())
    for i in range(0, len(msgs) - 1, 3):
        put("sip_framing", b"\x00" + "\r\n\r\n".join(msgs[i:i + 3]).encode())

    # SDP: the tests' offers and the scenarios' bodies.
    sdps = [s for p in ["src/b2bua/tests.rs", "src/media/sdp.rs", "src/web/ua.rs", "src/media/session.rs"]
            for s in rust_strings(src(p)) if s.startswith("v=0")]
    sdps += [m.partition("\r\n\r\n")[2] for m in msgs if "\r\n\r\nv=0" in m]
    for s in sdps:
        put("sdp", s)

    # Digest: the tests' credentials and challenges.
    for p in ["src/registrar/digest.rs", "src/registrar/mod.rs", "src/b2bua/tests.rs"]:
        for s in rust_strings(src(p)):
            if s.lstrip().startswith("Digest "):
                put("digest", s)
    put("digest", 'Digest realm="dasan", nonce="6553f100.0123456789abcdef01234567", algorithm=MD5, qop="auth"')
    put("digest", 'Digest realm="dasan", nonce="6553f100.0123456789abcdef01234567", algorithm=SHA-256, qop="auth", stale=true')

    # Registrar scripts: REGISTER (challenged, then answered), refresh, wildcard removal.
    reg = fill(scenario_sends("register.xml")[0], "192.0.2.1", 5070, "120", 0, None, True)
    reg_auth = fill(scenario_sends("register.xml")[1], "192.0.2.1", 5070, "120", 1, "Authorization", False)
    reg_auth = reg_auth.replace("[len]", "0")
    put("register", "@@a0\n" + reg + "@@a1\n" + reg_auth)
    put("register", "@@a0\n" + reg + "@@a1\n" + reg_auth + "@@a5\n" + reg_auth.replace("Expires: 3600", "Expires: 0").replace("CSeq: 2", "CSeq: 3"))
    put("register", "@@b0\n" + reg + "@@b1\n" + reg_auth.replace("[auth]", "[auth]1002").replace("1001", "1002") + "@@c0\n")
    put("register", "@@a0\n" + reg + "@@a1\n" + reg_auth.replace("Contact: <sip:1001@192.0.2.1:5070>", "Contact: *\r\nExpires: 0"))
    fc = fill(scenario_sends("feature-code.xml")[0], "192.0.2.1", 5070, "*21", 0, None, True)
    fc2 = fill(scenario_sends("feature-code.xml")[2], "192.0.2.1", 5070, "*21", 2, "Proxy-Authorization", False).replace("[len]", "0")
    put("register", "@@a0\n" + fc + "@@a1\n" + fc2)

    # The page's JSON and the engine's INVITE to the stand-in user agent.
    inv = ("INVITE sip:1001-web@127.0.0.1:41000;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKw1\r\n"
           "From: <sip:0212345678@carrier>;tag=e1\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: w1\r\nCSeq: 1 INVITE\r\n"
           "Contact: <sip:127.0.0.1:5060;transport=tcp>\r\nX-Dasan-Record: rec1\r\nX-Dasan-Queue: general\r\n"
           "X-Dasan-Language: ko\r\nX-Dasan-Wait-Ms: 1200\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n")
    body = "v=0\r\no=dasan 1 1 IN IP4 127.0.0.1\r\ns=dasan\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 111 101\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/48000\r\na=sendrecv\r\n"
    inv = inv % len(body) + body
    ack = "ACK sip:1001-web@127.0.0.1:41000 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKw2\r\nFrom: <sip:0212345678@carrier>;tag=e1\r\nTo: <sip:1001@127.0.0.1>;tag=x\r\nCall-ID: w1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    ops = ['{"op":"login","agent":"1001","password":"pw"}', '{"op":"state","state":"ready"}',
           '{"op":"answer"}', '{"op":"dtmf","digit":"5"}', '{"op":"transfer","target":"general"}',
           '{"op":"hold","on":true}', '{"op":"state","state":"not-ready","reason":"lunch"}',
           '{"op":"hangup"}', '{"op":"state","state":"logout"}', '{"op":"sdp","sdp":"v=0"}']
    put("agent_ws", "@@s\n" + inv + "@@j\n" + ops[2] + "\n@@s\n" + ack + "".join(f"@@j\n{o}\n" for o in ops[3:]))
    put("agent_ws", "".join(f"@@j\n{o}\n" for o in ops))
    put("agent_ws", "@@s\n" + inv + "@@j\n" + ops[7] + "\n")

    # Configurations: the dialplans, the tests' configurations, the engine target's own.
    for f in sorted(os.listdir(os.path.join(ROOT, "dialplans"))):
        if f.endswith(".toml"):
            put("config", src(f"dialplans/{f}"))
    for p in ["src/config/tests.rs", "src/b2bua/tests.rs", "tests/fuzz/src/script.rs"]:
        for s in rust_strings(src(p)):
            if re.search(r"^\s*\[\[?[a-z]", s, re.M) and "=" in s:
                put("config", s)

    # RTP: a mode byte, then [ctl][len][packet] records: G.711 and Opus audio, RFC 4733
    # events (start, repeats, end), RTCP SR/RR.
    def rtp(pt, seq, ts, ssrc, payload, marker=False):
        return struct.pack(">BBHII", 0x80, pt | (0x80 if marker else 0), seq, ts, ssrc) + payload
    def rec(ctl, p):
        return bytes([ctl, len(p)]) + p
    sr = struct.pack(">BBHI", 0x80, 200, 6, 0x1111) + b"\x00" * 20
    rr = struct.pack(">BBHI", 0x81, 201, 7, 0x1111) + b"\x00" * 24
    for mode in [0x00, 0x01, 0x02, 0x12, 0x36, 0x58, 0x7a]:
        cpt = [0, 8, 111][min(mode & 3, 2)]
        recs = b""
        for i in range(20):
            leg = 1 if (mode & 0x10 and i % 3 == 2) else 0
            recs += rec((2 << 3) | leg, rtp(cpt, 100 + i, 160 * i, 0xabc, bytes([0xff - i]) * 40))
        for i, end in enumerate([0, 0, 0x80, 0x80]):
            recs += rec(2 << 3, rtp(101, 200 + i, 9999, 0xabc, struct.pack(">BBH", 5, end | 10, 160 * (i + 1)), i == 0))
        recs += rec(0, sr) + rec(1 << 1, rr) + rec((31 << 3) | 4, rtp(cpt, 1, 1, 0xdef, b"\x00" * 10))
        put("rtp", bytes([mode]) + recs)


if __name__ == "__main__":
    main()
