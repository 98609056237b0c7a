#!/usr/bin/env python3
"""CPU of the server's agent legs (acd/web/agent_media.py): N WebRTC sessions, idle and during
a call, with our own encoding and decoding against aiortc's codecs (baseline, same run).

Method. This process is the server side, pinned to CPU 0 (``os.sched_setaffinity``; aiortc's
threads inherit it): N :class:`AgentMedia`, each answering the offer of one aiortc peer. The
peers run in a child process pinned to CPU 1: each sends a 1 kHz tone (Opus or PCMU, whatever
was negotiated) and decodes what it gets. For each variant and each phase, the server
process's CPU time (all threads) over a window of ``--seconds`` gives the percentage of one
core per session:

* ``idle``: sessions up, no call: the track sends silence, the agent's microphone comes in;
* ``call``: each session has a call attached at 8 kHz and one task ticks every 20 ms like the
  media clock (a 600 Hz tone to the agent; the agent's audio back).

Variants, both in this run with fresh sessions:

* ``lean``: the track encodes each frame itself (libopus or G.711 in numpy, at the call's own
  rate) and hands aiortc the packet (``av.Packet``); aiortc only packs and protects it. What
  the agent sends is decoded on arrival, on the event loop, at the call's rate
  (``media.rtc_jitter.PacketDecoder``);
* ``aiortc-codecs``: the track hands aiortc 20 ms PCM frames at the codec's native rate
  (48 kHz for Opus: an 8 -> 48 kHz resampler first) and aiortc's own encoder (PyAV, a worker
  thread per frame, stereo 96 kb/s Opus) does the rest; what the agent sends goes through
  aiortc's decoder thread (48 kHz stereo) and remote track, then a 48 -> 8 kHz resampler:
  the server before these changes (with our low-delay receive buffer).

Both ways are checked by signal in the call phase (the dominant frequency of the last second
that each agent heard, and that each caller got back from its ``party``), so a fast but
silent path cannot pass.

Usage: ``bench/agent_leg_cpu.py [--sessions 8] [--seconds 10] [--codec opus|pcmu]``
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack  # noqa: E402

from acd.web import agent_media  # noqa: E402
from acd.web.agent_media import AgentMedia  # noqa: E402
from media.resample import Resampler  # noqa: E402

RATE, FRAME = 8000, 160
CALLER_HZ, AGENT_HZ = 600.0, 1000.0


class FrameTrack(agent_media._AgentTrack):
    """The baseline: PCM frames at the codec's native rate, for aiortc's own encoder."""

    def _emit(self, pcm: np.ndarray) -> av.AudioFrame:
        native = 48000 if self.codec == "opus" else self.rate
        if native != self.rate:
            key = (self.rate, native)
            if getattr(self, "_up_key", None) != key:
                self._up, self._up_key = Resampler(self.rate, native, steady=True), key
            pcm = self._up.process(pcm)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = native
        frame.pts = self._ts * native // self.clock_rate
        frame.time_base = fractions.Fraction(1, native)
        return frame


def _dominant(pcm: np.ndarray, rate: int) -> float:
    x = pcm.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


# -- the peers (child process, CPU 1) ---------------------------------------------------------

class ToneTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.pts = 0
        self.start: float | None = None

    async def recv(self) -> av.AudioFrame:
        loop = asyncio.get_running_loop()
        if self.start is None:
            self.start = loop.time()
        await asyncio.sleep(max(0.0, self.start + self.pts / 48000 - loop.time()))
        t = (self.pts + np.arange(960)) / 48000
        pcm = (8000 * np.sin(2 * np.pi * AGENT_HZ * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, self.pts, fractions.Fraction(1, 48000)
        self.pts += 960
        return frame


async def _peers(conn: mp.connection.Connection, n: int) -> None:
    pcs, heard = [], [[] for _ in range(n)]

    async def listen(i: int, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
            heard[i].append((frame.sample_rate, pcm.copy()))
            del heard[i][:-100]

    for i in range(n):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver(ToneTrack(), direction="sendrecv")
        pc.on("track", lambda track, i=i: asyncio.ensure_future(listen(i, track)))
        await pc.setLocalDescription(await pc.createOffer())
        conn.send(pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=conn.recv(), type="answer"))
        pcs.append(pc)
    loop = asyncio.get_running_loop()
    while True:
        cmd = await loop.run_in_executor(None, conn.recv)
        if cmd == "heard":  # the dominant frequency each peer heard over its last second
            conn.send([_dominant(np.concatenate([p for r, p in frames if r == frames[-1][0]]), frames[-1][0])
                       if frames else 0.0 for frames in heard])
        else:
            break
    for pc in pcs:
        await pc.close()
    conn.send("closed")


def _peer_main(conn: mp.connection.Connection, n: int) -> None:
    os.sched_setaffinity(0, {1})
    asyncio.run(_peers(conn, n))


# -- the server side (this process, CPU 0) ----------------------------------------------------

async def _window(seconds: float) -> float:
    """Percent of one core this process used over ``seconds``."""
    t0, c0 = time.monotonic(), time.process_time()
    await asyncio.sleep(seconds)
    return 100 * (time.process_time() - c0) / (time.monotonic() - t0)


async def run_variant(variant: str, n: int, seconds: float, codec: str) -> dict[str, float]:
    baseline = variant == "aiortc-codecs"
    agent_media._AgentTrack = FrameTrack if baseline else LEAN  # type: ignore[misc]
    agent_media.use_low_delay_jitter_buffer = (  # type: ignore[assignment]
        (lambda receiver, sink=None: SWAP(receiver)) if baseline else SWAP)
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_peer_main, args=(child, n), daemon=True)
    proc.start()
    loop = asyncio.get_running_loop()
    sessions = []
    try:
        for i in range(n):
            media = AgentMedia(codec=codec, label=f"b{i:03d}")
            offer = await loop.run_in_executor(None, parent.recv)
            parent.send(await media.accept_offer(offer))
            sessions.append(media)
        deadline = time.monotonic() + 20
        while any(m.state != "connected" for m in sessions) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        connected = sum(m.state == "connected" for m in sessions)
        await asyncio.sleep(2.0)
        idle = await _window(seconds)
        parties = [m.attach(RATE, FRAME) for m in sessions]
        back: list[list[np.ndarray]] = [[] for _ in sessions]  # what each caller hears

        async def tick() -> None:
            t0, k = loop.time(), 0
            while True:
                k += 1
                await asyncio.sleep(max(0.0, t0 + k * 0.02 - loop.time()))
                t = ((k * FRAME) + np.arange(FRAME)) / RATE
                frame = (8000 * np.sin(2 * np.pi * CALLER_HZ * t)).astype(np.int16)
                for party, heard in zip(parties, back):
                    heard.append(party(frame, loop.time()))
                    del heard[:-50]

        ticker = asyncio.ensure_future(tick())
        await asyncio.sleep(2.0)
        call = await _window(seconds)
        parent.send("heard")
        heard = await loop.run_in_executor(None, parent.recv)
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        callers_ok = sum(abs(_dominant(np.concatenate(h), RATE) - AGENT_HZ) < 15 for h in back)
        return {"connected": connected, "idle": idle / n, "call": call / n,
                "heard_ok": sum(abs(f - CALLER_HZ) < 15 for f in heard), "callers_ok": callers_ok}
    finally:
        for media in sessions:
            await media.close()
        parent.send("stop")
        await loop.run_in_executor(None, parent.recv)
        proc.join(10)


LEAN, SWAP = agent_media._AgentTrack, agent_media.use_low_delay_jitter_buffer
VARIANTS = ("aiortc-codecs", "lean")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--codec", choices=["opus", "pcmu"], default="opus")
    ap.add_argument("--only", choices=VARIANTS, help="run one variant (to profile it)")
    args = ap.parse_args()
    os.sched_setaffinity(0, {0})
    print(f"{args.sessions} agent sessions, {args.codec}, windows of {args.seconds:.0f} s; "
          "percent of one core per session (server process, all its threads)")
    print(f"{'variant':<16} {'connected':>9} {'idle':>7} {'call':>7} {'agents hear caller':>19} "
          f"{'callers hear agent':>19}")
    for variant in [args.only] if args.only else VARIANTS:
        r = await run_variant(variant, args.sessions, args.seconds, args.codec)
        print(f"{variant:<16} {r['connected']:>9} {r['idle']:>6.2f}% {r['call']:>6.2f}% "
              f"{r['heard_ok']:>12}/{args.sessions} {r['callers_ok']:>12}/{args.sessions}")


if __name__ == "__main__":
    asyncio.run(main())
