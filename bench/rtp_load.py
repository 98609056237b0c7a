#!/usr/bin/env python3
"""RTP load generator for the media benchmarks: N streams of 20 ms G.711 packets, each to its
own server port, echoes received on the same sockets; reports echo round trip, late and lost.

A frame is *late* when its echo returns more than ``late_ms`` after it was sent (default 100 ms:
an idle plain reflector answers in under 1 ms, the media engine's echo in 30–50 ms because it
plays the frame out of a jitter buffer on a 20 ms clock), *lost* when it never returns. Frames
carry an id in their payload, so echoes that transcode (new SSRC and sequence) still match. Run in its own process (it is the load, not the system under test):

    python bench/rtp_load.py --host 127.0.0.1 --ports 20000-20398 --seconds 10 --json
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import struct
import sys
import time

HEADER = struct.Struct("!BBHII")
FILL = b"\xd5" * 152


def frame_id_payload(stream: int, seq: int) -> bytes:
    """A 160-byte µ-law payload carrying (stream, seq) in its first 8 bytes as codes 0x80+nibble:
    µ-law decode→encode is exact for them, so an echo that transcodes keeps the id."""
    value = (stream << 16) | (seq & 0xFFFF)
    return bytes(0x80 | ((value >> (4 * k)) & 0xF) for k in range(8)) + FILL


def frame_id(payload: bytes) -> tuple[int, int] | None:
    if len(payload) < 8 or any(b & 0xF0 != 0x80 for b in payload[:8]):
        return None  # silence or concealment from the echo, not one of our frames
    value = sum((b & 0xF) << (4 * k) for k, b in enumerate(payload[:8]))
    return value >> 16, value & 0xFFFF


def run(host: str, ports: list[int], seconds: float, late_ms: float = 100.0, ptime: float = 0.02,
        warmup: float = 1.0) -> dict[str, float]:
    sel = selectors.DefaultSelector()
    socks = []
    for i, port in enumerate(ports):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind((host, 0))
        s.connect((host, port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
        socks.append(s)
    sent_at: dict[tuple[int, int], float] = {}
    rtts: list[float] = []
    late = lost_candidates = 0
    seq = 0
    start = time.monotonic()
    next_tick = start
    end = start + warmup + seconds
    measuring_from = start + warmup
    measuring_until = end - 0.2  # later frames' echoes could still be in flight when we stop
    while True:
        now = time.monotonic()
        if now >= next_tick:
            if now >= end:
                break
            measure = measuring_from <= now < measuring_until
            for i, s in enumerate(socks):
                pkt = HEADER.pack(0x80, 0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, 0x10000 + i) + \
                    frame_id_payload(i, seq)
                try:
                    s.send(pkt)
                except OSError:
                    continue
                if measure:
                    sent_at[(i, seq & 0xFFFF)] = now
            seq += 1
            next_tick += ptime
            if now - next_tick > 0.2:  # we fell far behind: the generator is the bottleneck
                next_tick = now
        timeout = max(0.0, next_tick - time.monotonic())
        for key, _ in sel.select(timeout):
            s = key.fileobj
            while True:
                try:
                    data = s.recv(2048)  # type: ignore[union-attr]
                except BlockingIOError:
                    break
                ident = frame_id(data[12:])
                if ident is None or ident[0] != key.data:
                    continue
                t0 = sent_at.pop(ident, None)
                if t0 is not None:
                    rtt = time.monotonic() - t0
                    rtts.append(rtt)
                    if rtt * 1000 > late_ms:
                        late += 1
    # drain stragglers for a moment
    drain_end = time.monotonic() + 0.3
    while time.monotonic() < drain_end:
        for key, _ in sel.select(0.05):
            try:
                data = key.fileobj.recv(2048)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            ident = frame_id(data[12:])
            if ident is not None:
                t0 = sent_at.pop(ident, None)
                if t0 is not None:
                    rtt = time.monotonic() - t0
                    rtts.append(rtt)
                    late += rtt * 1000 > late_ms
    lost_candidates = len(sent_at)
    for s in socks:
        s.close()
    total = len(rtts) + lost_candidates
    rtts.sort()
    pct = (lambda q: 1000 * rtts[min(len(rtts) - 1, int(q * len(rtts)))] if rtts else float("nan"))
    return {
        "streams": len(ports), "frames": total, "lost": lost_candidates, "late": late,
        "late_or_lost_pct": 100.0 * (late + lost_candidates) / total if total else 100.0,
        "rtt_p50_ms": pct(0.5), "rtt_p99_ms": pct(0.99), "rtt_max_ms": 1000 * rtts[-1] if rtts else float("nan"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--ports", required=True, help="first-last (even ports) or a comma list")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--late-ms", type=float, default=100.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if "-" in args.ports:
        lo, hi = (int(x) for x in args.ports.split("-"))
        ports = list(range(lo, hi + 1, 2))
    else:
        ports = [int(x) for x in args.ports.split(",")]
    result = run(args.host, ports, args.seconds, args.late_ms)
    sys.stdout.write((json.dumps(result) if args.json else str(result)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
