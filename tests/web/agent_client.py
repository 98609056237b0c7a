"""An independent agent client written from docs/agent-protocol.md alone: aiohttp for HTTPS
and the WebSocket, aiortc for audio. It imports nothing from ``acd``: if the server and the
document disagree, the tests using it fail.

The client's microphone is a sine tone; what it hears is kept as 48 kHz mono samples with
their arrival times, so tests can check frequencies by signal.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import ssl
import time
from typing import Any

import av
import numpy as np
import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

__all__ = ["ProtocolAgent"]

RATE = 48000
FRAME = 960


class ToneTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, hz: float) -> None:
        super().__init__()
        self.hz = hz
        self.pts = 0
        self.start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.start is None:
            self.start = time.monotonic()
        due = self.start + self.pts / RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        t = (self.pts + np.arange(FRAME)) / RATE
        pcm = (0.3 * 32767 * np.sin(2 * np.pi * self.hz * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self.pts, fractions.Fraction(1, RATE)
        self.pts += FRAME
        return frame


class ProtocolAgent:
    def __init__(self, base_url: str, ssl_ctx: ssl.SSLContext, agent: str, password: str, tone_hz: float) -> None:
        self.base_url, self.ssl_ctx = base_url, ssl_ctx
        self.agent, self.password, self.tone_hz = agent, password, tone_hz
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.token = ""
        self.welcome: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self._results: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._n = 0
        self._tasks: list[asyncio.Task[Any]] = []
        self._event_added = asyncio.Event()
        self.pc: RTCPeerConnection | None = None
        self.heard: list[tuple[float, np.ndarray]] = []  # (arrival, 48 kHz mono samples)

    # -- signalling -------------------------------------------------------------------------

    async def connect(self) -> dict[str, Any]:
        """§2 login, §3.2 hello; heartbeats every heartbeat_s (§3.3)."""
        if self.http is None:
            self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ssl_ctx))
            async with self.http.post(f"{self.base_url}/api/v1/login",
                                      json={"agent": self.agent, "password": self.password}) as r:
                body = await r.json()
                assert r.status == 200, body
                self.token = body["token"]
        self.ws = await self.http.ws_connect(self.base_url.replace("https://", "wss://") + "/api/v1/ws")
        self._tasks.append(asyncio.create_task(self._reader(self.ws)))
        self.welcome = await self.request("hello", version=1, token=self.token,
                                          client={"name": "test-agent", "version": "1"})
        assert self.welcome["type"] == "result", self.welcome
        self._tasks.append(asyncio.create_task(self._heartbeat(self.ws, self.welcome["heartbeat_s"])))
        return self.welcome

    async def _reader(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            fut = self._results.pop(data.get("re"), None) if "re" in data else None
            if fut is not None and not fut.done():
                fut.set_result(data)
            else:
                self.events.append(data)
                self._event_added.set()

    async def _heartbeat(self, ws: aiohttp.ClientWebSocketResponse, every: float) -> None:
        while not ws.closed:
            await asyncio.sleep(every)
            if not ws.closed:
                await ws.send_str(json.dumps({"type": "ping"}))

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        assert self.ws is not None
        self._n += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._results[self._n] = fut
        await self.ws.send_str(json.dumps({"type": kind, "id": self._n, **fields}))
        return await asyncio.wait_for(fut, 20)

    async def event(self, kind: str, timeout: float = 20.0, **match: Any) -> dict[str, Any]:
        """The first event of ``kind`` (matching ``match``) not consumed yet."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["type"] == kind and all(_get(ev, k) == v for k, v in match.items()):
                    return self.events.pop(i)
            self._event_added.clear()
            left = deadline - time.monotonic()
            assert left > 0, f"no {kind} {match} event; got {[e['type'] for e in self.events]}"
            try:
                await asyncio.wait_for(self._event_added.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def drop_connection(self) -> None:
        """Lose the WebSocket and the peer connection (a crashed tab, a network change)."""
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        if self.ws is not None:
            await self.ws.close()
        if self.pc is not None:
            await self.pc.close()
            self.pc = None

    # -- media (§3.4) ---------------------------------------------------------------------------

    async def start_media(self) -> None:
        pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=self.welcome["ice_servers"]))
        pc.addTransceiver(ToneTrack(self.tone_hz), direction="sendrecv")

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.create_task(self._listen(track)))

        await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers every candidate here
        reply = await self.request("media-offer", sdp=pc.localDescription.sdp)
        assert reply["type"] == "result", reply
        await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))

    async def go_available(self) -> dict[str, Any]:
        """connect, start_media and login: a ready agent; returns the login reply."""
        await self.connect()
        await self.start_media()
        reply = await self.request("login")
        assert reply["type"] == "result" and reply["state"]["state"] == "available", reply
        return reply

    async def _listen(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels)).mean(axis=1)
            if frame.sample_rate != RATE:
                pcm = np.interp(np.arange(0, len(pcm), frame.sample_rate / RATE), np.arange(len(pcm)), pcm)
            self.heard.append((time.monotonic(), pcm.astype(np.float32)))

    def heard_between(self, start: float, end: float) -> np.ndarray:
        parts = [pcm for t, pcm in self.heard if start <= t <= end]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    async def close(self) -> None:
        await self.drop_connection()
        if self.http is not None:
            await self.http.close()


def _get(event: dict[str, Any], dotted: str) -> Any:
    value: Any = event
    for part in dotted.split("__"):
        value = value.get(part) if isinstance(value, dict) else None
    return value
