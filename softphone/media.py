"""The softphone's audio over WebRTC (docs/agent-protocol.md §3.4): one aiortc peer connection
per session, one ``sendrecv`` audio transceiver, no trickle ICE.

The outbound track takes 20 ms frames of 48 kHz mono int16 from an ``AudioPort``
(softphone/audio.py: the sound card; softphone/fileaudio.py: files or an echo) and paces
itself on the event loop's clock, one frame per 20 ms: it waits up to half a period for the
port's next frame and sends silence when none came (counted as ``mic_underruns``). What
arrives is decoded by aiortc, mixed down to mono, resampled to 48 kHz when the codec runs
slower (PCMU), cut into 20 ms frames and handed to ``AudioPort.play``. The remote track is
read all the time (aiortc queues decoded frames without bound otherwise).

Quality (:meth:`SoftphoneMedia.stats`) comes from aiortc's ``getStats``: RTT from the
``remote-inbound-rtp`` report (the server's RTCP receiver reports), jitter from
``inbound-rtp`` — in RTP clock units, divided by the codec's clock rate —, loss from the
inbound packet counters, and a MOS estimate from the G.107 E-model (media/quality.py) with the
same mouth-to-ear delay as the server's readiness check: RTT/2 + jitter + 60 ms. Warnings use
media/quality.py's thresholds: RTT > 400 ms, jitter > 30 ms, loss > 3 %, MOS < 3.5.

When the peer connection fails (its state ``failed`` or ``disconnected`` for more than
``restart_after_s``, or ``closed`` by the far end), a new one is built and offered; the
server replaces its side and the call's audio continues (§3.4). Counters survive the rebuild.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import av
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.quality import (CODEC_IMPAIRMENTS, QualitySnapshot, QualityThresholds, mos_from_r, r_factor,
                           warnings as quality_warnings)
from media.resample import Resampler
from media.rtc_jitter import (GapConcealer, PacketDecoder, PacketEncoder, payload_types,
                              use_low_delay_jitter_buffer)
from softphone.errors import MediaError, SoftphoneError

if TYPE_CHECKING:
    from softphone.audio import AudioPort

__all__ = ["SoftphoneMedia", "MediaStats", "FRAME_RATE", "FRAME_SAMPLES", "ice_servers_from", "mos_estimate",
           "quality_warning_list", "JITTER_BUFFER_MS"]

log = logging.getLogger(__name__)

FRAME_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms
_PERIOD = FRAME_SAMPLES / FRAME_RATE
JITTER_BUFFER_MS = 60.0  # jitter buffer and packetisation in the mouth-to-ear delay (as the server)
_POLL_S = 0.004
_CODEC_NAMES = {"opus": "audio/opus", "pcmu": "audio/PCMU", "pcma": "audio/PCMA", "g722": "audio/G722"}

Negotiate = Callable[[str], Awaitable[str]]


def ice_servers_from(welcome_servers: Sequence[dict[str, Any]] | None) -> list[RTCIceServer]:
    """The welcome's ``ice_servers`` as aiortc objects (an empty list: no STUN at all, never
    aiortc's default Google server)."""
    out = []
    for s in welcome_servers or ():
        urls = s.get("urls")
        if not urls:
            continue
        out.append(RTCIceServer(urls=list(urls) if isinstance(urls, (list, tuple)) else str(urls),
                                username=s.get("username") or None, credential=s.get("credential") or None))
    return out


def mos_estimate(codec: str, rtt_ms: float | None, jitter_ms: float, loss_pct: float) -> tuple[float, float]:
    """(R, MOS) from the E-model, mouth-to-ear delay RTT/2 + jitter + 60 ms."""
    delay = (rtt_ms or 0.0) / 2 + max(0.0, jitter_ms) + JITTER_BUFFER_MS
    r = r_factor(codec if codec.upper() in CODEC_IMPAIRMENTS else "PCMU", delay, min(100.0, max(0.0, loss_pct)))
    return r, mos_from_r(r)


def quality_warning_list(codec: str, rtt_ms: float | None, jitter_ms: float, loss_pct: float, mos: float,
                         r: float, thresholds: QualityThresholds = QualityThresholds()) -> list[dict[str, Any]]:
    snap = QualitySnapshot(codec=codec, packets_expected=0, packets_received=0, packets_lost=0, duplicates=0,
                           reordered=0, late_frames=0, concealed_frames=0, jitter_ms=jitter_ms, loss_pct=loss_pct,
                           total_loss_pct=loss_pct, rtt_ms=rtt_ms, one_way_delay_ms=0.0, r_factor=r, mos=mos)
    return [{"metric": w.metric, "value": round(w.value, 2), "threshold": w.threshold, "message": w.message}
            for w in quality_warnings(snap, thresholds)]


@dataclass
class MediaStats:
    """One look at the session's audio. Counters are cumulative over the session (across peer
    connection rebuilds); ``loss_pct`` is over the interval since the previous :meth:`stats`."""

    codec: str = ""
    state: str = "new"
    rtt_ms: float | None = None
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    total_loss_pct: float = 0.0
    packets_received: int = 0
    packets_lost: int = 0
    packets_sent: int = 0
    r_factor: float = 0.0
    mos: float = 0.0
    frames_in: int = 0
    frames_out: int = 0
    mic_underruns: int = 0
    rebuilds: int = 0
    warnings: list[dict[str, Any]] = field(default_factory=list)
    at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for k in ("rtt_ms", "jitter_ms", "loss_pct", "total_loss_pct", "r_factor", "mos"):
            if out[k] is not None:
                out[k] = round(out[k], 2)
        return out


class _MicTrack(MediaStreamTrack):
    """The agent's voice: the AudioPort's frames, one per 20 ms on the loop's clock, encoded
    here (:class:`PacketEncoder`: aiortc only packs and protects them)."""

    kind = "audio"

    def __init__(self, media: SoftphoneMedia) -> None:
        super().__init__()
        self._media = media
        self._ts = 0  # RTP clock units
        self._next: float | None = None
        self._encoder: PacketEncoder | None = None

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._next is None or now - self._next > 3 * _PERIOD:  # first frame, or the loop stalled
            self._next = now
        else:
            self._next += _PERIOD
            if self._next > now:
                await asyncio.sleep(self._next - now)
        pcm = self._media._capture()
        limit = self._next + _PERIOD / 2
        while pcm is None and loop.time() < limit:
            await asyncio.sleep(_POLL_S)
            pcm = self._media._capture()
        if pcm is None:
            self._media.counters["mic_underruns"] += 1
            pcm = np.zeros(FRAME_SAMPLES, np.int16)
        media = self._media
        media.counters["frames_out"] += 1
        codec = (media.codec or "opus").lower(), media.clock_rate
        if self._encoder is None or (self._encoder.codec, self._encoder.clock_rate) != codec:
            self._encoder = PacketEncoder(*codec)
        packet = self._encoder.packet(pcm, FRAME_RATE, self._ts)
        self._ts += media.clock_rate * FRAME_SAMPLES // FRAME_RATE
        return packet


class SoftphoneMedia:
    """The session's peer connection. ``negotiate(offer_sdp)`` sends ``media-offer`` and returns
    the answer's SDP (the agent session gives ``AgentConnection.request``)."""

    def __init__(self, audio: AudioPort, negotiate: Negotiate, *, ice_servers: Sequence[dict[str, Any]] = (),
                 codecs: Sequence[str] = (), restart_after_s: float = 5.0,
                 on_state: Callable[[str], None] | None = None,
                 thresholds: QualityThresholds = QualityThresholds()) -> None:
        self.audio = audio
        self.negotiate = negotiate
        self.ice_servers = list(ice_servers)
        self.codecs = [c.lower() for c in codecs]
        self.restart_after_s = restart_after_s
        self.on_state = on_state
        self.thresholds = thresholds
        self.pc: RTCPeerConnection | None = None
        self.codec = ""
        self.clock_rate = FRAME_RATE
        self.state = "new"
        self.rebuilds = 0
        self.counters: dict[str, int] = {"frames_in": 0, "frames_out": 0, "mic_underruns": 0}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._restart_timer: asyncio.TimerHandle | None = None
        self._base = {"received": 0, "lost": 0, "sent": 0}  # totals of peer connections closed
        self._last = {"received": 0, "lost": 0, "sent": 0}  # this one's, at the latest stats()
        self._prev_totals = (0, 0)  # (received, lost) at the previous stats()
        self._ready = asyncio.Event()
        self._closed = False
        self._rx_resampler: Resampler | None = None
        self._rx_pending = np.zeros(0, np.int16)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, ice_servers: Sequence[dict[str, Any]] | None = None,
                    codecs: Sequence[str] | None = None) -> None:
        """Build a new peer connection (closing the old one), offer it, apply the answer."""
        if ice_servers is not None:
            self.ice_servers = list(ice_servers)
        if codecs is not None:
            self.codecs = [c.lower() for c in codecs]
        async with self._lock:
            if self._closed:
                raise MediaError("media closed")
            self._ready.clear()
            await self._close_pc()
            pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers_from(self.ice_servers)))
            transceiver = pc.addTransceiver(_MicTrack(self), direction="sendrecv")
            decoder = PacketDecoder({}, rate=FRAME_RATE)
            # each packet decoded as it comes (not aiortc's 80 ms buffer and decoder thread)
            use_low_delay_jitter_buffer(transceiver.receiver,
                                        sink=lambda packet, lost: self._from_packet(pc, decoder, packet, lost))
            self._rx_resampler, self._rx_pending = None, np.zeros(0, np.int16)
            prefs = self._codec_preferences()
            if prefs:
                transceiver.setCodecPreferences(prefs)
            pc.on("track", lambda track: self._spawn(self._listen(track)))
            pc.on("connectionstatechange", lambda: self._state_changed(pc))
            try:
                await pc.setLocalDescription(await pc.createOffer())  # gathers every candidate (no trickle)
                answer = await self.negotiate(pc.localDescription.sdp)
                await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            except SoftphoneError:
                raise
            except Exception as exc:  # noqa: BLE001 - aiortc raises many kinds on a bad SDP
                raise MediaError(f"could not set up audio: {exc}") from exc
            self.codec, self.clock_rate = _negotiated_codec(answer)
            decoder.codecs = payload_types(answer)
            self._last = {"received": 0, "lost": 0, "sent": 0}
            self._ready.set()
            log.info("media negotiated: %s/%d", self.codec, self.clock_rate)

    def _codec_preferences(self) -> list[Any]:
        caps = RTCRtpSender.getCapabilities("audio").codecs
        out = []
        for name in self.codecs:
            mime = _CODEC_NAMES.get(name)
            out += [c for c in caps if mime and c.mimeType.lower() == mime.lower() and c not in out]
        return out

    def _state_changed(self, pc: RTCPeerConnection) -> None:
        if pc is not self.pc:
            return
        state = pc.connectionState
        self.state = state
        log.info("peer connection %s", state)
        if self.on_state is not None:
            self.on_state(state)
        if state in ("failed", "disconnected", "closed") and not self._closed:  # "closed": by the far end
            if self._restart_timer is None:
                loop = asyncio.get_running_loop()
                self._restart_timer = loop.call_later(self.restart_after_s,
                                                      lambda: self._spawn(self._restart(pc)))
        elif self._restart_timer is not None:
            self._restart_timer.cancel()
            self._restart_timer = None

    async def _restart(self, failed: RTCPeerConnection) -> None:
        self._restart_timer = None
        if self._closed or failed is not self.pc or \
                failed.connectionState not in ("failed", "disconnected", "closed"):
            return
        log.warning("peer connection %s for %.0f s: building a new one", failed.connectionState,
                    self.restart_after_s)
        self.rebuilds += 1
        if self.on_state is not None:
            self.on_state("restarting")
        try:
            await self.start()
        except SoftphoneError as exc:  # the signalling is down too: the session re-offers on reconnect
            log.warning("re-offer failed: %s", exc.message)

    async def _close_pc(self) -> None:
        pc, self.pc = self.pc, None
        if self._restart_timer is not None:
            self._restart_timer.cancel()
            self._restart_timer = None
        if pc is None:
            return
        with contextlib.suppress(Exception):
            await self._poll(pc)
        for k in self._base:
            self._base[k] += self._last[k]
        self._last = {"received": 0, "lost": 0, "sent": 0}
        with contextlib.suppress(Exception):
            await pc.close()

    async def close(self) -> None:
        self._closed = True
        async with self._lock:
            await self._close_pc()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- audio -------------------------------------------------------------------------------

    def _capture(self) -> np.ndarray | None:
        try:
            pcm = self.audio.capture()
        except Exception:  # noqa: BLE001 - a broken device must not stop the sender
            log.exception("audio capture failed")
            return None
        if pcm is None:
            return None
        pcm = np.asarray(pcm)
        if pcm.dtype != np.int16 or pcm.shape != (FRAME_SAMPLES,):
            pcm = np.resize(pcm.astype(np.int16).reshape(-1), FRAME_SAMPLES)
        return pcm

    def _from_packet(self, pc: RTCPeerConnection, decoder: PacketDecoder, packet: Any, lost: int) -> None:
        """A packet from the server, on arrival; the ones lost before it concealed by the codec."""
        if pc is not self.pc:
            return
        frames = decoder.decode(packet.payload, packet.payload_type, lost)
        self.counters["frames_concealed"] = decoder.stats["concealed"]
        rate = decoder.pcm_rate(packet.payload_type)
        for pcm in frames:
            self._play(pcm, rate)

    def _play(self, pcm: np.ndarray, rate: int) -> None:
        """Received audio at ``rate`` to the AudioPort, in 20 ms frames at FRAME_RATE."""
        if rate != FRAME_RATE:
            if self._rx_resampler is None or self._rx_resampler.in_rate != rate:
                self._rx_resampler = Resampler(rate, FRAME_RATE, steady=True)
            pcm = self._rx_resampler.process(pcm)
        pending = np.concatenate((self._rx_pending, pcm)) if len(self._rx_pending) else pcm
        while len(pending) >= FRAME_SAMPLES:
            out, pending = pending[:FRAME_SAMPLES], pending[FRAME_SAMPLES:]
            self.counters["frames_in"] += 1
            try:
                self.audio.play(out)
            except Exception:  # noqa: BLE001
                log.exception("audio play failed")
        self._rx_pending = pending

    async def _listen(self, track: MediaStreamTrack) -> None:
        """Frames aiortc decoded: only if our receive buffer could not be swapped in."""
        if track.kind != "audio":
            return
        concealer = GapConcealer()  # the packets the receive buffer gave up, filled in
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            channels = len(frame.layout.channels)
            pcm = frame.to_ndarray().reshape(-1, channels)
            pcm = pcm[:, 0] if channels == 1 else pcm.astype(np.int32).mean(axis=1).astype(np.int16)
            pcm = np.ascontiguousarray(pcm, dtype=np.int16)
            frames = concealer.feed(pcm, frame.pts, frame.time_base, frame.sample_rate)
            self.counters["frames_concealed"] = concealer.stats["concealed"]
            for f in frames:
                self._play(f, frame.sample_rate)

    # -- quality -----------------------------------------------------------------------------

    async def _poll(self, pc: RTCPeerConnection) -> dict[str, Any]:
        """This peer connection's raw figures; updates ``_last``."""
        report = await pc.getStats()
        out: dict[str, Any] = {"jitter_ms": 0.0, "rtt_ms": None}
        received = lost = sent = 0
        for s in report.values():
            if s.type == "inbound-rtp":
                received += s.packetsReceived
                lost += max(0, s.packetsLost)
                out["jitter_ms"] = max(out["jitter_ms"], 1000.0 * s.jitter / (self.clock_rate or FRAME_RATE))
            elif s.type == "remote-inbound-rtp" and s.roundTripTime is not None:
                out["rtt_ms"] = 1000.0 * s.roundTripTime
            elif s.type == "outbound-rtp":
                sent += s.packetsSent
        self._last = {"received": received, "lost": lost, "sent": sent}
        return out

    async def stats(self) -> MediaStats:
        """RTT, jitter, loss, MOS and warnings now (zeros before the first negotiation)."""
        pc = self.pc
        raw: dict[str, Any] = {"jitter_ms": 0.0, "rtt_ms": None}
        if pc is not None:
            with contextlib.suppress(Exception):
                raw = await self._poll(pc)
        received = self._base["received"] + self._last["received"]
        lost = self._base["lost"] + self._last["lost"]
        d_rx, d_lost = received - self._prev_totals[0], lost - self._prev_totals[1]
        self._prev_totals = (received, lost)
        loss = 100.0 * d_lost / (d_rx + d_lost) if d_rx + d_lost > 0 else 0.0
        total = 100.0 * lost / (received + lost) if received + lost > 0 else 0.0
        codec = self.codec or "opus"
        r, mos = mos_estimate(codec, raw["rtt_ms"], raw["jitter_ms"], loss)
        stats = MediaStats(codec=self.codec, state=pc.connectionState if pc is not None else "closed",
                           rtt_ms=raw["rtt_ms"], jitter_ms=raw["jitter_ms"], loss_pct=loss, total_loss_pct=total,
                           packets_received=received, packets_lost=lost,
                           packets_sent=self._base["sent"] + self._last["sent"], r_factor=r, mos=mos,
                           frames_in=self.counters["frames_in"], frames_out=self.counters["frames_out"],
                           mic_underruns=self.counters["mic_underruns"], rebuilds=self.rebuilds, at=time.time())
        stats.warnings = quality_warning_list(codec, stats.rtt_ms, stats.jitter_ms, loss, mos, r, self.thresholds)
        return stats


def _negotiated_codec(sdp: str) -> tuple[str, int]:
    """The codec the answer chose (the first payload type of its audio line) and its RTP clock."""
    first_pt = None
    rtpmap: dict[str, tuple[str, int]] = {}
    for line in sdp.splitlines():
        if line.startswith("m=audio") and first_pt is None:
            parts = line.split()
            first_pt = parts[3] if len(parts) > 3 else None
        elif line.startswith("a=rtpmap:"):
            pt, _, enc = line[9:].partition(" ")
            name, _, rest = enc.partition("/")
            rate = rest.partition("/")[0]
            with contextlib.suppress(ValueError):
                rtpmap.setdefault(pt, (name, int(rate)))
    if first_pt in rtpmap:
        return rtpmap[first_pt]
    return ("PCMU", 8000) if first_pt == "0" else ("", FRAME_RATE)
