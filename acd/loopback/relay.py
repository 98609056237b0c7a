"""Packet loss and jitter for ``acd loopback``: a small SIP + RTP relay between the pjsua2
workers and the target.

pjsua2 cannot be told to send its RTP somewhere else than the target's SDP answer says, and
the target latches onto whatever source it hears first, so rewriting only our own offer is not
enough. The relay therefore sits in the signalling path as well, as a stateless proxy
(RFC 3261 §16.11) that the workers use as their outbound proxy, over UDP:

* requests: our Route entry is removed, a Via is pushed (its branch derived from the incoming
  one, so that CANCEL and non-2xx ACK match their INVITE downstream), a Record-Route is added
  to initial INVITEs so that in-dialog requests of both sides come back through us, and the
  request goes to the next Route or the Request-URI;
* responses: our Via is popped, the response goes to the next Via (``received``/``rport``);
* every SDP body is rewritten: an SDP from a worker announces the relay's target-facing RTP
  port, an SDP from the target the worker-facing one (c=, m=audio, a=rtcp), so each call's
  RTP and RTCP cross a :class:`MediaPair` of four sockets.

Impairment applies to RTP only (RTCP passes untouched), in the chosen direction(s): each
packet is dropped with probability ``loss_pct`` %, and each kept packet is held for a random
time drawn uniformly from 0 to 2 × ``jitter_ms`` (mean ``jitter_ms``; packets may overtake each
other, like netem's ``delay J J``). Counters per call and direction give the real loss.

The relay also keeps each call's RTP as it left for the target and as it came back (time,
timestamp, payload): :func:`acd.loopback.measure.wire_round_trip` finds in it the target's
own round trip, free of the tester's 20 ms bridge tick and jitter buffer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
import socket
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Impairment", "SipRelay", "rewrite_sdp", "parse_rtp"]

log = logging.getLogger(__name__)

_COMPACT = {"v": "via", "l": "content-length", "i": "call-id", "c": "content-type", "m": "contact",
            "f": "from", "t": "to", "k": "supported"}
_MAX_DATAGRAM = 65535


@dataclass
class Impairment:
    """What the relay does to RTP: ``direction`` is send (tester → target), recv or both."""

    loss_pct: float = 0.0
    jitter_ms: float = 0.0
    direction: str = "send"
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss_pct < 100.0:
            raise ValueError(f"loss must be 0 to <100 %, not {self.loss_pct}")
        if self.jitter_ms < 0:
            raise ValueError(f"jitter must be >= 0 ms, not {self.jitter_ms}")
        if self.direction not in ("send", "recv", "both"):
            raise ValueError(f"impairment direction must be send, recv or both, not {self.direction!r}")

    @property
    def active(self) -> bool:
        return self.loss_pct > 0 or self.jitter_ms > 0

    def applies(self, upstream: bool) -> bool:
        return self.direction == "both" or (self.direction == "send") == upstream


# ------------------------------------------------------------------------------ SDP


def rewrite_sdp(body: str, host: str, port: int) -> tuple[str, tuple[str, int] | None, int | None]:
    """``body`` announcing ``host:port`` for its first audio stream (RTCP on port + 1).

    Returns (new body, the (address, RTP port) it announced before, its RTCP port).
    """
    lines = body.replace("\r\n", "\n").rstrip("\n").split("\n")
    session_addr: str | None = None
    media_addr: str | None = None
    old_port: int | None = None
    rtcp: int | None = None
    in_audio = False
    out = []
    for line in lines:
        if line.startswith("m="):
            in_audio = line.startswith("m=audio") and old_port is None
            if in_audio:
                parts = line.split()
                old_port = int(parts[1])
                parts[1] = str(port)
                line = " ".join(parts)
        elif line.startswith("c="):
            parts = line.split()
            if old_port is None:
                session_addr = parts[2] if len(parts) > 2 else None
            elif in_audio:
                media_addr = parts[2] if len(parts) > 2 else None
            line = f"c=IN IP4 {host}"
        elif line.startswith("a=rtcp:") and in_audio:
            rtcp = int(line[7:].split()[0])
            line = f"a=rtcp:{port + 1} IN IP4 {host}"
        elif line.startswith("o="):
            parts = line.split()
            if len(parts) >= 6:
                parts[5] = host
                line = " ".join(parts)
        out.append(line)
    addr = media_addr or session_addr
    remote = (addr, old_port) if addr and old_port else None
    if remote is not None and rtcp is None:
        rtcp = old_port + 1  # type: ignore[operator]
    return "\r\n".join(out) + "\r\n", remote, rtcp


# ------------------------------------------------------------------------------ SIP


def _split_values(value: str) -> list[str]:
    """Comma-separated header values, commas inside <> or quotes kept."""
    out, cur, depth, quote = [], "", 0, False
    for ch in value:
        if ch == '"':
            quote = not quote
        elif not quote and ch == "<":
            depth += 1
        elif not quote and ch == ">":
            depth -= 1
        if ch == "," and depth == 0 and not quote:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _uri_hostport(uri: str) -> tuple[str, int]:
    m = re.search(r"sips?:(?:[^@;>]*@)?(\[[^\]]+\]|[^:;>?]+)(?::(\d+))?", uri)
    if m is None:
        raise ValueError(f"no host in {uri!r}")
    return m.group(1).strip("[]"), int(m.group(2) or 5060)


@dataclass
class SipMessage:
    """Just enough of a SIP message to proxy it: start line, ordered headers, body."""

    start: str
    headers: list[list[str]] = field(default_factory=list)  # [name, value]
    body: bytes = b""

    @classmethod
    def parse(cls, data: bytes) -> SipMessage:
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("no end of headers")
        lines = head.decode("utf-8", "replace").split("\r\n")
        msg = cls(lines[0])
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and msg.headers:
                msg.headers[-1][1] += " " + line.strip()
            elif ":" in line:
                name, _, value = line.partition(":")
                msg.headers.append([name.strip(), value.strip()])
        msg.body = body
        return msg

    @property
    def is_request(self) -> bool:
        return not self.start.startswith("SIP/")

    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0]

    def _is(self, name: str, wanted: str) -> bool:
        n = name.lower()
        return _COMPACT.get(n, n) == wanted

    def get(self, name: str) -> list[str]:
        """Every value of header ``name`` (lower-case long form), in order."""
        return [v for h, value in self.headers if self._is(h, name) for v in _split_values(value)]

    def first(self, name: str) -> str | None:
        values = self.get(name)
        return values[0] if values else None

    def pop_first(self, name: str) -> str | None:
        """Remove and return the first value of ``name`` (a header line may hold several)."""
        for i, (h, value) in enumerate(self.headers):
            if self._is(h, name):
                values = _split_values(value)
                if len(values) > 1:
                    self.headers[i][1] = ", ".join(values[1:])
                else:
                    del self.headers[i]
                return values[0]
        return None

    def set(self, name: str, value: str) -> None:
        for h in self.headers:
            if self._is(h[0], name):
                h[1] = value
                return
        self.headers.append([name, value])

    def encode(self) -> bytes:
        self.set("content-length", str(len(self.body)))
        head = "\r\n".join([self.start] + [f"{h}: {v}" for h, v in self.headers])
        return head.encode() + b"\r\n\r\n" + self.body


def _via_destination(via: str) -> tuple[str, int]:
    """Where a response goes for this Via (RFC 3261 §18.2.2, RFC 3581 rport)."""
    sent_by = via.split(None, 1)[1] if " " in via else via
    hostport, *params = [p.strip() for p in sent_by.split(";")]
    host, _, port = hostport.rpartition(":") if not hostport.endswith("]") else (hostport, "", "")
    if not host:
        host, port = hostport, ""
    opts = dict(p.partition("=")[::2] for p in params)
    return opts.get("received") or host.strip("[]"), int(opts.get("rport") or port or 5060)


# ------------------------------------------------------------------------------ media


class MediaPair:
    """One call's RTP and RTCP relay: side A faces the worker, side B the target."""

    def __init__(self, relay: SipRelay, call_id: str) -> None:
        self.relay = relay
        self.call_id = call_id
        self.socks: dict[str, socket.socket] = {}
        self.worker: tuple[str, int] | None = None  # RTP address from the worker's SDP
        self.target: tuple[str, int] | None = None
        self.worker_rtcp: tuple[str, int] | None = None
        self.target_rtcp: tuple[str, int] | None = None
        self.counts = {"up": {"packets": 0, "dropped": 0}, "down": {"packets": 0, "dropped": 0}}
        # RTP as it left for the target and as it came back: (time, timestamp, pt, payload)
        self.capture: dict[str, list[tuple[float, int, int, bytes]]] = {"up": [], "down": []}
        self.closed = False
        for side in ("a", "b"):
            rtp, rtcp = _bind_pair(relay.host)
            self.socks[f"{side}_rtp"], self.socks[f"{side}_rtcp"] = rtp, rtcp
        loop = relay.loop
        for name, sock in self.socks.items():
            loop.add_reader(sock.fileno(), self._readable, name)

    def port(self, side: str) -> int:
        return int(self.socks[f"{side}_rtp"].getsockname()[1])

    def _readable(self, name: str) -> None:
        sock = self.socks[name]
        try:
            data, _addr = sock.recvfrom(_MAX_DATAGRAM)
        except OSError:
            return
        upstream = name.startswith("a")  # from the worker, to the target
        if name.endswith("rtcp"):
            dest = self.target_rtcp if upstream else self.worker_rtcp
            self._send("b_rtcp" if upstream else "a_rtcp", data, dest)
            return
        dest = self.target if upstream else self.worker
        if not upstream:
            self._capture("down", data)
        imp = self.relay.impairment
        counts = self.counts["up" if upstream else "down"]
        counts["packets"] += 1
        out = "b_rtp" if upstream else "a_rtp"
        if not imp.applies(upstream):
            self._send(out, data, dest)
            return
        rng = self.relay.rng
        if imp.loss_pct and rng.random() * 100.0 < imp.loss_pct:
            counts["dropped"] += 1
            return
        if imp.jitter_ms:
            self.relay.loop.call_later(rng.uniform(0.0, 2.0 * imp.jitter_ms) / 1000.0, self._send, out, data, dest)
        else:
            self._send(out, data, dest)

    def _capture(self, direction: str, data: bytes) -> None:
        parsed = parse_rtp(data)
        if parsed is not None and self.relay.capture:
            self.capture[direction].append((self.relay.loop.time(), *parsed))

    def _send(self, name: str, data: bytes, dest: tuple[str, int] | None) -> None:
        if dest is None or self.closed:
            return
        if name == "b_rtp":
            self._capture("up", data)
        try:
            self.socks[name].sendto(data, dest)
        except OSError as exc:
            log.debug("relay send to %s failed: %s", dest, exc)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in self.socks.values():
            self.relay.loop.remove_reader(sock.fileno())
            sock.close()


def parse_rtp(data: bytes) -> tuple[int, int, bytes] | None:
    """(timestamp, payload type, payload) of an RTP packet (RFC 3550 §5.1), None if not RTP."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    start = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10 and len(data) >= start + 4:  # header extension
        start += 4 + 4 * int.from_bytes(data[start + 2:start + 4], "big")
    end = len(data) - (data[-1] if data[0] & 0x20 else 0)  # padding
    if start > end:
        return None
    return int.from_bytes(data[4:8], "big"), data[1] & 0x7F, data[start:end]


def _bind_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """Two UDP sockets on an even port and the next one (RTP, RTCP)."""
    for _ in range(100):
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.bind((host, 0))
        port = rtp.getsockname()[1]
        if port % 2 == 0 and port < 65535:
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rtcp.bind((host, port + 1))
            except OSError:
                rtcp.close()
            else:
                rtp.setblocking(False)
                rtcp.setblocking(False)
                return rtp, rtcp
        rtp.close()
    raise OSError("no free RTP/RTCP port pair for the relay")


# ------------------------------------------------------------------------------ relay


class SipRelay:
    """The SIP proxy and the media pairs of every call; one per ``acd loopback`` run."""

    def __init__(self, host: str, impairment: Impairment, capture: bool = True) -> None:
        self.host = host
        self.impairment = impairment
        self.capture = capture  # keep each call's RTP for the round trip on the wire
        self.rng = random.Random(impairment.seed)
        self.workers: set[tuple[str, int]] = set()
        self.pairs: dict[str, MediaPair] = {}
        self.port = 0
        self.stats = {"forwarded": 0, "dropped": 0}
        self._sock: socket.socket | None = None
        self.loop = asyncio.get_running_loop()

    def start(self) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.host, 0))
        sock.setblocking(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self.loop.add_reader(sock.fileno(), self._readable)
        log.info("relay on %s:%d (loss %.1f %%, jitter %.0f ms, %s)", self.host, self.port,
                 self.impairment.loss_pct, self.impairment.jitter_ms, self.impairment.direction)
        return self.port

    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{self.port};lr"

    def add_worker(self, addr: tuple[str, int]) -> None:
        self.workers.add(addr)

    def counts(self, call_id: str) -> dict[str, Any] | None:
        pair = self.pairs.get(call_id)
        return None if pair is None else {k: dict(v) for k, v in pair.counts.items()}

    def release(self, call_id: str) -> dict[str, list[tuple[float, int, int, bytes]]] | None:
        """Forget a call (its sockets close a second later); returns its RTP capture."""
        pair = self.pairs.pop(call_id, None)
        if pair is None:
            return None
        self.loop.call_later(1.0, pair.close)  # late RTCP/BYE retransmissions
        capture, pair.capture = pair.capture, {"up": [], "down": []}
        return capture

    def close(self) -> None:
        for pair in self.pairs.values():
            pair.close()
        self.pairs.clear()
        if self._sock is not None:
            self.loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    # ---- SIP ----------------------------------------------------------------------------
    def _readable(self) -> None:
        assert self._sock is not None
        try:
            data, addr = self._sock.recvfrom(_MAX_DATAGRAM)
        except OSError:
            return
        if not data.strip():
            return  # keep-alive
        try:
            self._proxy(SipMessage.parse(data), (addr[0], addr[1]))
        except (ValueError, IndexError) as exc:
            self.stats["dropped"] += 1
            log.warning("relay: unusable SIP message from %s:%d dropped: %s", addr[0], addr[1], exc)

    def _ours(self, uri: str) -> bool:
        try:
            return _uri_hostport(uri) == (self.host, self.port)
        except ValueError:
            return False

    def _proxy(self, msg: SipMessage, source: tuple[str, int]) -> None:
        from_worker = source in self.workers
        if msg.body and "sdp" in (msg.first("content-type") or "").lower():
            self._rewrite_body(msg, from_worker)
        if msg.is_request:
            dest = self._forward_request(msg)
        else:
            ours = msg.pop_first("via")
            if ours is None or f"{self.host}:{self.port}" not in ours:
                raise ValueError("response without our Via on top")
            via = msg.first("via")
            if via is None:
                raise ValueError("response with no Via left")
            dest = _via_destination(via)
        if dest is None:
            return
        assert self._sock is not None
        self._sock.sendto(msg.encode(), dest)
        self.stats["forwarded"] += 1

    def _forward_request(self, msg: SipMessage) -> tuple[str, int] | None:
        route = msg.first("route")
        if route is not None and self._ours(route):
            msg.pop_first("route")
            route = msg.first("route")
        mf = msg.first("max-forwards")
        if mf is not None:
            if int(mf) <= 0:
                log.warning("relay: %s with Max-Forwards 0 dropped", msg.method)
                return None
            msg.set("max-forwards", str(int(mf) - 1))
        top = msg.first("via") or ""
        # same incoming branch (INVITE, its CANCEL, its non-2xx ACK) -> same outgoing branch
        branch = "z9hG4bK-lb" + hashlib.sha1(top.encode()).hexdigest()[:20]
        msg.headers.insert(0, ["Via", f"SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport"])
        if msg.method == "INVITE" and ";tag=" not in (msg.first("to") or ""):
            msg.headers.insert(1, ["Record-Route", f"<sip:{self.host}:{self.port};lr>"])
        target = route or msg.start.split(" ")[1]
        host, port = _uri_hostport(target)
        return socket.gethostbyname(host), port

    def _rewrite_body(self, msg: SipMessage, from_worker: bool) -> None:
        call_id = msg.first("call-id") or ""
        pair = self.pairs.get(call_id)
        if pair is None:
            pair = self.pairs[call_id] = MediaPair(self, call_id)
        # an SDP from the worker points the target at side B, and the other way round
        body, remote, rtcp = rewrite_sdp(msg.body.decode("utf-8", "replace"), self.host,
                                         pair.port("b" if from_worker else "a"))
        if remote is not None:
            rtcp_addr = (remote[0], rtcp or remote[1] + 1)
            if from_worker:
                pair.worker, pair.worker_rtcp = remote, rtcp_addr
            else:
                pair.target, pair.target_rtcp = remote, rtcp_addr
        msg.body = body.encode()
