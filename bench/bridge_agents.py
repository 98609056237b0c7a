#!/usr/bin/env python3
"""The agents' process for bench/bridge_bench.py: N aiortc agent clients in one asyncio loop.

Each agent follows docs/agent-protocol.md through the softphone's own signalling client
(``softphone.client.AgentConnection``: HTTPS login, WebSocket ``hello``, heartbeats,
requests), with one peer connection (``media-offer``), ``login`` (available), and it answers
every ``offer`` at once. It does not loop the caller back: its
microphone is its own *probe signal* (see :func:`pattern`), a quiet continuous tone with a
30 ms down-chirp at the start of every second, and it keeps what it hears during a call.
Both ends of the bridge run on this host, so ``time.monotonic()`` (CLOCK_MONOTONIC) is one
clock for the bench, this process and the callers; each direction is timed on its own:

* caller → agent: the caller's up-chirp leaves in an RTP packet at ``T0`` (the caller's
  send time); here it is found by cross-correlation in the decoded audio and dated by the
  arrival of the SRTP packet that carried it (``RTCRtpReceiver._handle_rtp_packet`` and its
  timestamp mapper are wrapped: arrivals are noted by the pts of the frame they decode to).
  ``T_pkt - T0`` is what the server adds; ``T_dec - T0`` also counts this client's own
  aiortc jitter buffer (prefetch 4 = 80 ms) and decoder thread, reported for reference.
* agent → caller: the down-chirp starts a frame; its time is when our track's ``recv()``
  hands that frame to aiortc's sender (encoding in aiortc's executor and sending follow,
  well within a millisecond while CPU 1 has room); the caller dates the RTP packet that
  brings it back.

Why not loop the caller's audio back: the round trip would then include this client's
jitter buffer (80 ms), decoder thread and send pacing, to be estimated and subtracted; with
a probe of its own each direction is timed directly, and the two add up to the round trip.

Commands on stdin, one JSON object a line; one JSON reply a line on stdout:

* ``{"cmd": "grow", "n": 8}``: agents b001..b008 connected and available -> ``{"ready": 8, "failed": []}``
* ``{"cmd": "report", "t0": T, "t1": T}``: per call heard in [t0, t1), its chirps and frame counts there
* ``{"cmd": "quit"}``

    bench/bridge_agents.py --url https://127.0.0.1:PORT --cafile CERT --password PW --codec pcmu
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from softphone.client import AgentConnection
from softphone.errors import SoftphoneError
from softphone.trust import Trust

__all__ = ["FRAME_S", "PERIOD_FRAMES", "AMPLITUDE", "chirp", "pattern", "detect", "delays", "pct", "silent"]

FRAME_S = 0.02
PERIOD_FRAMES = 50  # one chirp a second, at the start of a frame
CHIRP_S = 0.03
AMPLITUDE = 0.5 * 32767  # the chirp; the tone between chirps is 28 dB lower (continuous audio)
TONE_AMPLITUDE = 0.02 * 32767
SILENT_RMS = 100.0  # a frame below this (int16 units) is a gap: the tone never is this quiet
CALLER_TONE_HZ, AGENT_TONE_HZ = 440.0, 660.0


def chirp(rate: int, up: bool) -> np.ndarray:
    """A Hann-windowed linear sweep 300 -> 3300 Hz (``up``) or back, 30 ms, float at AMPLITUDE."""
    t = np.arange(int(CHIRP_S * rate)) / rate
    f0, f1 = (300.0, 3300.0) if up else (3300.0, 300.0)
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * CHIRP_S))
    return AMPLITUDE * np.hanning(len(t)) * np.sin(phase)


def pattern(rate: int, up: bool, tone_hz: float) -> np.ndarray:
    """One period (1 s) of a probe signal, int16: the tone, with the chirp from sample 0."""
    n = int(PERIOD_FRAMES * FRAME_S * rate)
    x = TONE_AMPLITUDE * np.sin(2 * np.pi * tone_hz * np.arange(n) / rate)
    c = chirp(rate, up)
    x[:len(c)] += c
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def detect(pcm: np.ndarray, rate: int, up: bool) -> list[int]:
    """Sample indices where the chirp starts in ``pcm``: the normalised cross-correlation
    (an amplitude estimate) above 40 % of AMPLITUDE, one peak per 0.3 s cluster."""
    h = chirp(rate, up)
    if len(pcm) < len(h):
        return []
    x = pcm.astype(np.float64)
    size = 1 << int(np.ceil(np.log2(len(x) + len(h))))
    corr = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(h, size)), size)[:len(x) - len(h) + 1]
    corr /= float(np.dot(h, h)) / AMPLITUDE
    above = np.flatnonzero(corr > 0.4 * AMPLITUDE)
    if not len(above):
        return []
    peaks = []
    breaks = np.flatnonzero(np.diff(above) > 0.3 * rate)
    for cluster in np.split(above, breaks + 1):
        peaks.append(int(cluster[np.argmax(corr[cluster])]))
    return peaks


def delays(sent: list[float], got: list[float], window: float = 0.9) -> list[float]:
    """For each chirp sent, ms until the first one found after it (within ``window`` s)."""
    got = sorted(got)
    out = []
    for s in sent:
        i = int(np.searchsorted(got, s))
        if i < len(got) and got[i] - s < window:
            out.append(1000 * (got[i] - s))
    return out


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if q != 0.5 else statistics.median(v)


def silent(pcm: np.ndarray) -> bool:
    return float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64)))) < SILENT_RMS if len(pcm) else True


class ProbeTrack(MediaStreamTrack):
    """The agent's microphone: the probe pattern in 20 ms s16 mono frames, paced on an absolute
    monotonic schedule; while ``record`` is set, the time each chirp frame is handed over."""

    kind = "audio"

    def __init__(self, rate: int) -> None:
        super().__init__()
        self.rate = rate
        self.samples = int(rate * FRAME_S)
        self.pattern = pattern(rate, up=False, tone_hz=AGENT_TONE_HZ)
        self.frames = 0
        self.start: float | None = None
        self.record: list[float] | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self.start is None:
            self.start = now
        due = self.start + self.frames * FRAME_S
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > 0.2:  # this process stalled: skip the missed slots, never burst
            self.frames += int((now - due) / FRAME_S)
        k = self.frames % PERIOD_FRAMES
        pcm = self.pattern[k * self.samples:(k + 1) * self.samples]
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = self.rate, self.frames * self.samples
        frame.time_base = fractions.Fraction(1, self.rate)
        if k == 0 and self.record is not None:
            self.record.append(time.monotonic())
        self.frames += 1
        return frame


@dataclass
class CallRecord:
    """What one agent heard and sent during one call."""

    call: str
    caller: str
    heard: list[tuple[float, int, np.ndarray]] = field(default_factory=list)  # (recv() time, pts, mono)
    rate: int = 0
    sent_chirps: list[float] = field(default_factory=list)
    arrivals: dict[int, float] = field(default_factory=dict)  # decoded pts -> its packet's arrival

    def report(self, t0: float, t1: float) -> dict[str, Any]:
        frames = [(t, pts, pcm) for t, pts, pcm in self.heard if t0 <= t < t1]
        out: dict[str, Any] = {
            "call": self.call, "caller": self.caller, "frames": len(frames),
            "silent": sum(silent(pcm) for _, _, pcm in frames),
            "sent_chirps": [t for t in self.sent_chirps if t0 <= t < t1], "chirps": []}
        if not self.heard or not self.rate:
            return out
        starts = np.cumsum([0] + [len(pcm) for _, _, pcm in self.heard])
        x = np.concatenate([pcm for _, _, pcm in self.heard])
        for i in detect(x, self.rate, up=True):
            j = int(np.searchsorted(starts, i, "right")) - 1
            t_dec, pts, _ = self.heard[j]
            offset = (i - starts[j]) / self.rate
            if not t0 <= t_dec < t1:
                continue
            arrival = self.arrivals.get(pts)
            out["chirps"].append({"t_dec": t_dec + offset,
                                  "t_pkt": None if arrival is None else arrival + offset})
        return out


class Agent:
    """One agent client: signalling through the softphone's :class:`AgentConnection` (login,
    hello, heartbeats, requests), the peer connection, auto-answer and what it heard."""

    def __init__(self, url: str, name: str, password: str, rate: int, trust: Trust) -> None:
        self.name = name
        self.conn = AgentConnection(url, name, password, trust=trust, client_name="bridge-bench",
                                    client_version="1", request_timeout_s=20.0)
        self.track = ProbeTrack(rate)
        self.pc: RTCPeerConnection | None = None
        self.current: CallRecord | None = None
        self.finished: list[CallRecord] = []
        self.errors: list[str] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connected = asyncio.Event()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        self.conn.add_listener(self._event)
        welcome = await self.conn.connect()
        await self._media(welcome)
        await asyncio.wait_for(self._connected.wait(), 20)
        reply = await self.request("login")
        if reply.get("state", {}).get("state") != "available":
            raise RuntimeError(f"{self.name}: login gave {reply}")

    async def _media(self, welcome: dict[str, Any]) -> None:
        from aiortc import RTCConfiguration
        pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=welcome["ice_servers"]))
        pc.addTransceiver(self.track, direction="sendrecv")
        pc.on("track", lambda remote: self._spawn(self._listen(remote)))
        await pc.setLocalDescription(await pc.createOffer())
        reply = await self.request("media-offer", sdp=pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        for receiver in pc.getReceivers():
            self._stamp_arrivals(receiver)

    def _stamp_arrivals(self, receiver: Any) -> None:
        """Date each RTP packet's arrival while a call records (private aiortc API: the
        receiver's packet handler and the mapper that turns RTP timestamps into the decoded
        frames' pts, both wrapped)."""
        handle = receiver._handle_rtp_packet
        mapper = getattr(receiver, "_RTCRtpReceiver__timestamp_mapper", None)
        raw: dict[int, float] = {}

        async def stamped(packet: Any, arrival_time_ms: int) -> None:
            if self.current is not None:
                raw[packet.timestamp] = time.monotonic()
            await handle(packet, arrival_time_ms)

        def mapped(timestamp: int, _map: Any = mapper.map if mapper is not None else None) -> int:
            pts = _map(timestamp)
            arrival = raw.pop(timestamp, None)
            if arrival is not None and self.current is not None:
                self.current.arrivals[pts] = arrival
            if len(raw) > 500:  # packets that never made a frame
                raw.clear()
            return pts

        receiver._handle_rtp_packet = stamped
        if mapper is not None:
            mapper.map = mapped

    async def _listen(self, remote: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await remote.recv()
            except MediaStreamError:
                return
            record = self.current
            if record is None:
                continue
            a = frame.to_ndarray()
            if not frame.format.is_planar and len(frame.layout.channels) > 1:
                a = a.reshape(-1, len(frame.layout.channels))[:, 0]  # packed stereo: the left channel
            record.rate = frame.sample_rate
            record.heard.append((time.monotonic(), int(frame.pts or 0), a.reshape(-1).astype(np.int16)))

    def _event(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "media" and data.get("state") == "connected":
            self._connected.set()
        elif kind == "offer":
            self._spawn(self._answer(data["call"]))
        elif kind == "call-ended":
            self._ended(str(data.get("call")))
        elif kind == "error":
            self.errors.append(str(data))

    async def _answer(self, call: dict[str, Any]) -> None:
        record = CallRecord(str(call["id"]), str(call.get("caller") or ""))
        self.current, self.track.record = record, record.sent_chirps
        try:
            await self.request("answer", call=record.call)
        except SoftphoneError as exc:
            self.errors.append(f"answer: {exc.message}")
            self._ended(record.call)

    def _ended(self, call: str) -> None:
        record = self.current
        if record is not None and record.call == call:
            self.current, self.track.record = None, None
            self.finished.append(record)

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        """The reply's fields (a refusal raises :class:`SoftphoneError`)."""
        return await self.conn.request(kind, **fields)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.conn.close()
        if self.pc is not None:
            await self.pc.close()


class Agents:
    """The process's agents and its stdin commands."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rate = 8000 if args.codec in ("pcmu", "pcma") else 48000
        self.agents: list[Agent] = []
        self.trust = Trust(ca_files=[args.cafile] if args.cafile else ())

    async def grow(self, n: int) -> dict[str, Any]:
        new = [Agent(self.args.url, f"b{i + 1:03d}", self.args.password, self.rate, self.trust)
               for i in range(len(self.agents), n)]
        results = await asyncio.gather(*(a.start() for a in new), return_exceptions=True)
        failed = [f"{a.name}: {r}" for a, r in zip(new, results) if isinstance(r, BaseException)]
        self.agents.extend(new)
        return {"ready": len(self.agents) - len(failed), "failed": failed}

    def report(self, t0: float, t1: float) -> dict[str, Any]:
        calls = []
        for agent in self.agents:  # calls whose call-ended is still on its way count too
            for record in agent.finished + ([agent.current] if agent.current is not None else []):
                if any(t0 <= t < t1 for t, _, _ in record.heard):
                    calls.append({"agent": agent.name, **record.report(t0, t1)})
            agent.finished.clear()
        return {"calls": calls, "errors": [e for a in self.agents for e in a.errors]}

    async def close(self) -> None:
        await asyncio.gather(*(a.close() for a in self.agents), return_exceptions=True)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        try:
            while line := await reader.readline():
                cmd = json.loads(line)
                if cmd["cmd"] == "grow":
                    reply = await self.grow(int(cmd["n"]))
                elif cmd["cmd"] == "report":
                    reply = self.report(float(cmd["t0"]), float(cmd["t1"]))
                elif cmd["cmd"] == "quit":
                    break
                else:
                    reply = {"error": f"unknown command {cmd['cmd']!r}"}
                sys.stdout.write(json.dumps(reply) + "\n")
                sys.stdout.flush()
        finally:
            await self.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--cafile", default="")
    ap.add_argument("--password", required=True)
    ap.add_argument("--codec", default="opus", help="the server's [web] agent_codec (sets our send rate)")
    args = ap.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(Agents(args).serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
