"""One WebRTC peer connection per logged-in agent, and the audio bridge to the caller's SIP leg.

An :class:`AgentMedia` lives as long as the agent's session. It answers the client's SDP
offer, and any re-offer, which replaces the peer connection. Each connected call plugs into
it with :meth:`AgentMedia.attach`, which returns the ``party`` function for the caller's
:class:`~acd.contact_center.CallerFeed`. Everything runs on the event loop, our codecs
included: no aiortc codec thread is fed.

Data path::

    caller ─RTP─▶ CallMedia ─(media clock tick, 20 ms)─▶ CallerFeed ─▶ party(received, now)
      party: (steady resampler only when the codec cannot take the call's rate) ─▶ to-agent
      FIFO (≤ 3 frames), wake
      _AgentTrack.recv() encodes that frame at once (libopus at the call's own rate, or G.711)
      ─▶ av.Packet ─▶ aiortc packs it, SRTP ─▶ agent
    agent ─SRTP─▶ our low-delay receive buffer ─▶ PacketDecoder on arrival, at the call's rate
      (libopus decodes to 8-48 kHz; losses concealed by the codec: Opus PLC/FEC, G.711
      Appendix I) ─▶ to-caller FIFO (≤ 3 frames)
      party returns one frame per tick (silence when none is queued, on hold or muted)

We encode and decode, not aiortc: its encoder resamples every frame to 48 kHz stereo in PyAV
and runs in a worker thread, at 96 kb/s; its decoder is a thread per session that decodes to
48 kHz stereo, behind a queue (and then we resampled to the call's rate). If aiortc's
receiver ever moves its buffer, the swap is refused and aiortc decodes (``_from_agent``).
libopus takes 8, 12, 16, 24 or 48 kHz input (RFC 6716 §2), so a call at 8 or 16 kHz is
encoded as it is (mono, 32 kb/s), without a resampler's delay, and the RTP clock stays 48 kHz.
One session carries calls at different rates: the track's PCM rate follows the attached call
(8 kHz between calls, silence).

Clocks. With no call, the track paces itself on ``loop.time()`` and sends silence. With a call,
it follows the media clock: ``party`` wakes it and the frame leaves at once, never two
within half a period; if no frame comes, silence goes half a period after the slot. Towards
the caller, network arrivals meet the media clock's ticks in a FIFO. Both FIFOs drop the
oldest whole frames beyond 3. Standing excess that went unused for a second is trimmed: to
the agent down to nothing, to the caller down to one spare frame that absorbs the arrivals'
jitter.

Latency, measured over the host's own addresses (tests/web/test_agent_media.py, trunk at
8 kHz, ``party`` to the peer's decoded track and back):

* caller → agent: 81 ms with PCMU, 87 ms with Opus (108 ms when aiortc encoded), to an aiortc
  client with aiortc's own receive jitter buffer (prefetch 4: 80 ms; a browser's NetEq is
  adaptive; our softphone passes each packet on at once, :mod:`media.rtc_jitter`), 6.5 ms
  Opus look-ahead.
* agent → caller: 39 ms with Opus (60 ms when aiortc decoded), 57 ms with G.711 (the test
  agent's aiortc encoder resamples 48 → 8 kHz): our receive buffer decodes each packet as it
  arrives and a lost one is concealed (:mod:`media.rtc_jitter`; aiortc's own buffer held
  80 ms and stalled 320 ms on a loss), the spare frame (20 ms) and the tick phase (0-20 ms).

CPU (bench/agent_leg_cpu.py: 8 sessions, the server on one core of a 2-core host, the peers
on the other), percent of a core per session, idle (silence out, the agent's microphone in)
and during a call: Opus 2.1 and 2.5 %, against 4.5 and 4.8 % with aiortc's codecs in the
same run; PCMU 1.3 and 1.3 %, against 3.0 and 2.7 %.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from aiortc import (RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender,
                    RTCSessionDescription)
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import SessionDescription

from media.resample import Resampler
from media.rtc_jitter import (GapConcealer, PacketDecoder, PacketEncoder, payload_types, pcm_rate,
                              use_low_delay_jitter_buffer)

__all__ = ["AgentMedia", "Party", "MAX_QUEUE_FRAMES", "CODECS"]

log = logging.getLogger(__name__)

Party = Callable[[np.ndarray, float], np.ndarray]

FRAME_MS = 20
MAX_QUEUE_FRAMES = 3  # per direction; beyond this the oldest audio goes
TRIM_AFTER_PULLS = 50  # standing excess unused for this many pulls (1 s) is dropped
OFFER_TIMEOUT_S = 15.0  # setRemoteDescription + ICE gathering (a slow STUN server)
LEVEL_ALPHA = 0.1  # level meters: exponential average over ~200 ms
OPUS_BITRATE = 32000  # mono speech to the agent (aiortc's own encoder: 96 kb/s stereo)
CODECS = {"opus": "audio/opus", "pcmu": "audio/PCMU", "pcma": "audio/PCMA"}
_PERIOD = FRAME_MS / 1000
_AIORTC_ERRORS = (InternalError, InvalidAccessError, InvalidStateError, OperationError)
_SDP_ERRORS = (AssertionError, ValueError, IndexError, KeyError, TypeError)


class _Fifo:
    """Samples between two 20 ms clocks, in frames of ``frame`` samples: bounded to
    :data:`MAX_QUEUE_FRAMES` (the oldest whole frames go); audio beyond ``spare_frames`` that
    stood unused for :data:`TRIM_AFTER_PULLS` pulls is dropped. Towards the caller one spare
    frame is kept (network arrivals jitter around the tick: trimming it would turn the next
    late or lost packet into an audible gap), and built up first: at the start and after
    running dry, pulls wait until a frame and the spare are queued; towards the agent none
    (that side follows our clock).
    ``frame == 0`` means nothing flows (no call, or no codec yet): pushes are ignored."""

    def __init__(self, name: str, stats: Counter[str], spare_frames: int) -> None:
        self.name = name
        self.stats = stats
        self.spare_frames = spare_frames
        self.frame = 0
        self._buf = np.zeros(0, np.int16)
        self._low: int | None = None  # lowest level after a pull in this window
        self._pulls = 0

    def reset(self, frame: int) -> None:
        self.frame = frame
        self.clear()

    def clear(self) -> None:
        self._buf = np.zeros(0, np.int16)
        self._low, self._pulls = None, 0
        self._starved = True  # the first pull waits for a frame plus the spare ones

    @property
    def queued(self) -> int:
        return len(self._buf)

    def push(self, pcm: np.ndarray) -> None:
        if not self.frame or not len(pcm):
            return
        self._buf = np.concatenate((self._buf, pcm)) if len(self._buf) else pcm.copy()
        excess = len(self._buf) - MAX_QUEUE_FRAMES * self.frame
        if excess > 0:  # the reader fell behind: drop the oldest whole frames
            frames = -(-excess // self.frame)
            self._buf = self._buf[frames * self.frame:]
            self.stats[f"{self.name}_dropped"] += frames

    def pull(self, samples: int) -> np.ndarray | None:
        """One frame, or None when not enough audio is queued (counted while flowing)."""
        if not self.frame:
            return None
        need = samples * (1 + self.spare_frames) if self._starved else samples
        if len(self._buf) < need:  # starting, or ran dry: wait for the spare frame(s) too
            if not self._starved:
                self.stats[f"{self.name}_underruns"] += 1
                self._starved = True
            self._low, self._pulls = 0, self._pulls + 1
            return None
        self._starved = False
        out, self._buf = self._buf[:samples], self._buf[samples:]
        left = len(self._buf)
        self._low = left if self._low is None else min(self._low, left)
        self._pulls += 1
        if self._pulls >= TRIM_AFTER_PULLS:
            excess = self._low - self.spare_frames * samples
            if excess >= samples // 4:  # audio that stood unused for a second is only delay
                self._buf = self._buf[excess:]
                self.stats[f"{self.name}_trimmed"] += 1
            self._low, self._pulls = None, 0
        return out


class _AgentTrack(MediaStreamTrack):
    """What we send to the agent: one encoded 20 ms packet per period, never two within half a
    period. We encode (our codecs: libopus, G.711 in numpy) and hand aiortc the packet, which
    it only packs and protects: no PyAV frame, resampler or encoder thread per frame.

    ``rate`` is the PCM rate of the frames taken (for Opus the call's own rate, which libopus
    accepts at 8-48 kHz: no resampling to 48 kHz); the RTP clock stays the codec's. With no
    call the track runs on its own ``loop.time()`` schedule (silence); with a call it follows
    the media clock: each frame goes as soon as ``party`` has queued it (``wake``), or as
    silence half a period after its slot. :meth:`set_codec` comes before aiortc's sender first
    calls :meth:`recv`."""

    kind = "audio"

    def __init__(self, queued: Callable[[_AgentTrack], bool | None],
                 take: Callable[[_AgentTrack], np.ndarray | None], stats: Counter[str]) -> None:
        super().__init__()
        self.codec = "opus"
        self.clock_rate = 48000
        self.rate = 8000
        self.frames = 0
        self._queued = queued  # None: no call (free run); else whether a frame is waiting
        self._take = take  # the next frame, or None
        self._stats = stats
        self._ts = 0  # RTP clock units
        self._next: float | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._encoder = PacketEncoder(self.codec, self.clock_rate, OPUS_BITRATE)

    def set_codec(self, name: str, clock_rate: int, rate: int) -> None:
        self.codec, self.clock_rate, self.rate = name, clock_rate, rate
        self._encoder = PacketEncoder(name, clock_rate, OPUS_BITRATE)

    @property
    def samples(self) -> int:
        return self.rate * FRAME_MS // 1000

    def wake(self) -> None:
        """``party`` queued a frame."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _wait(self, until: float) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_at(until, self.wake)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def recv(self) -> av.Packet | av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        now = loop.time()
        step = self.clock_rate * FRAME_MS // 1000
        if self._next is None:
            self._next = now
        else:
            self._next += _PERIOD
            self._ts += step
            late = now - self._next
            if late > _PERIOD:  # the loop stalled: skip the missed slots, never burst
                missed = int(late // _PERIOD)
                self._next += missed * _PERIOD
                self._ts += missed * step
                self._stats["to_agent_skipped"] += missed
            else:
                if now < self._next - _PERIOD / 2:
                    await asyncio.sleep(self._next - _PERIOD / 2 - now)
                queued = self._queued(self)
                if queued is None and loop.time() < self._next:
                    await asyncio.sleep(self._next - loop.time())
                elif queued is False:
                    await self._wait(self._next + _PERIOD / 2)
        pcm = self._take(self)
        if pcm is None:
            pcm = np.zeros(self.samples, np.int16)
        else:  # locked to the media clock: the next slot is a period after this frame
            self._next = min(max(loop.time(), self._next - _PERIOD / 2), self._next + _PERIOD / 2)
        self.frames += 1
        return self._emit(pcm)

    def _emit(self, pcm: np.ndarray) -> av.Packet | av.AudioFrame:
        """The frame as aiortc's sender takes it: encoded here (bench/agent_leg_cpu.py
        overrides this with a PCM frame for aiortc to encode, its baseline)."""
        return self._encoder.packet(pcm, self.rate, self._ts)


@dataclass(eq=False)
class _Call:
    """The attached call: its rate and frame size, and a resampler each way."""

    rate: int
    frame: int
    to_agent: Resampler | None = None  # call rate → track rate
    to_caller: Resampler | None = None  # agent's decoded rate → call rate
    agent_rate: int = 0


def _ice_server(entry: Mapping[str, Any]) -> RTCIceServer:
    urls = entry.get("urls") or entry.get("url")
    if not urls:
        raise ValueError(f"ICE server without urls: {entry!r}")
    return RTCIceServer(urls=urls, username=entry.get("username") or None,
                        credential=entry.get("credential") or None)


def _check_offer(sdp: Any) -> None:
    """The client's offer: one audio m-line, no video (a data channel is tolerated)."""
    if not isinstance(sdp, str) or not sdp.strip():
        raise ValueError("empty SDP offer")
    try:
        kinds = [m.kind for m in SessionDescription.parse(sdp).media]
    except _SDP_ERRORS as exc:
        raise ValueError(f"unparsable SDP offer ({type(exc).__name__}: {exc})") from exc
    if kinds.count("audio") != 1 or "video" in kinds:
        raise ValueError(f"the offer must have exactly one audio m-line and no video, not {kinds}")


def _mono_int16(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame (s16/flt, packed or planar, any channels) as mono int16."""
    a = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        a = a.reshape(-1, channels).T
    if a.dtype != np.int16:
        a = np.clip(np.rint(a * 32768.0), -32768, 32767)
    if channels == 1:
        return a[0].astype(np.int16, copy=False)
    return (a.astype(np.int32).sum(axis=0) // channels).astype(np.int16)


def _dbfs(mean_square: float) -> float:
    """Level in dBFS (a full-scale sine is -3 dBFS); -inf for silence."""
    return 10 * math.log10(mean_square) if mean_square > 0 else float("-inf")


class AgentMedia:
    """The agent's side of the audio: one aiortc peer connection, re-offers, and the bridge
    to the attached call.

    ``ice_servers`` are ``{"urls": [...], "username": "", "credential": ""}`` dicts; none means
    host candidates only (never aiortc's default Google STUN). ``codec`` ("opus", "pcmu" or
    "pcma") goes first in the answer; the others stay as fall-backs. ``on_state`` is called
    with the new :attr:`state` ("new", "connecting", "connected", "failed", "closed").
    """

    def __init__(self, ice_servers: Sequence[Mapping[str, Any]] = (), codec: str = "opus",
                 label: str = "") -> None:
        codec = codec.lower()
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {sorted(CODECS)}, not {codec!r}")
        self.codec = codec
        self.label = label or f"{id(self):x}"
        self.configuration = RTCConfiguration(iceServers=[_ice_server(s) for s in ice_servers])
        self.on_state: Callable[[str], None] | None = None
        self.state = "new"
        self.negotiated_codec: str | None = None  # what we send with on the current pc
        self.counters: Counter[str] = Counter()
        self._clock_rate = 0  # RTP clock of the negotiated codec (for jitter)
        self._track_rate = 0
        self._pc: RTCPeerConnection | None = None
        self._track: _AgentTrack | None = None
        self._to_agent = _Fifo("to_agent", self.counters, spare_frames=0)
        self._to_caller = _Fifo("to_caller", self.counters, spare_frames=1)
        self._concealer = GapConcealer()  # only if aiortc decodes (the buffer swap failed)
        self._call: _Call | None = None
        self._held = False
        self._muted = False
        self._closed = False
        self._lock = asyncio.Lock()
        self._readers: set[asyncio.Task[None]] = set()
        self._levels = {"from_caller": 0.0, "from_agent": 0.0}  # mean squares, full scale = 1

    # -- signalling ----------------------------------------------------------------------

    async def accept_offer(self, sdp: str) -> str:
        """Answer the client's offer (non-trickle) once ICE gathering is complete. A later
        offer replaces the peer connection; the attached call carries on over the new one.
        A refused offer raises ValueError and leaves the current connection as it was."""
        if self._closed:
            raise RuntimeError(f"agent media {self.label} is closed")
        _check_offer(sdp)
        async with self._lock:
            pc = RTCPeerConnection(self.configuration)
            track = _AgentTrack(self._queued_for_agent, self._next_for_agent, self.counters)
            ok = False
            try:
                answer, codec = await asyncio.wait_for(self._negotiate(pc, track, sdp), OFFER_TIMEOUT_S)
                ok = not self._closed
            except _AIORTC_ERRORS as exc:
                raise ValueError(f"offer refused: {exc}") from exc
            finally:
                if not ok:
                    await pc.close()
            if not ok:
                raise RuntimeError(f"agent media {self.label} closed during the offer")
            old, self._pc, self._track = self._pc, pc, track
            self._use_codec(*codec)
            if old is not None:
                log.info("agent media %s: peer connection replaced by a re-offer", self.label)
                await old.close()
            self._update_state(pc)
            return answer

    async def _negotiate(self, pc: RTCPeerConnection, track: _AgentTrack,
                         sdp: str) -> tuple[str, tuple[str, int]]:
        pc.on("track", lambda remote: self._on_remote_track(pc, remote))
        pc.on("connectionstatechange", lambda: self._update_state(pc))
        pc.on("iceconnectionstatechange", lambda: self._update_state(pc))
        # our transceiver, with its codec order, before the offer: the offer's audio m-line
        # binds to it, and aiortc negotiates codecs in setRemoteDescription
        transceiver = pc.addTransceiver(track, direction="sendrecv")
        transceiver.setCodecPreferences(self._preferences())
        decoder = PacketDecoder({})
        # each packet as it comes (not aiortc's 80 ms), decoded here (not in aiortc's thread)
        use_low_delay_jitter_buffer(transceiver.receiver,
                                    sink=lambda packet, lost: self._from_agent_packet(pc, decoder, packet, lost))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())  # waits for ICE gathering
        answer = pc.localDescription.sdp
        decoder.codecs = payload_types(answer)
        name, clock_rate = codec = next(iter(decoder.codecs.values()))  # we send with the first
        # before the sender's first recv(): DTLS is not up yet
        track.set_codec(name, clock_rate, self._pcm_rate(name))
        return answer, codec

    def _preferences(self) -> list[RTCRtpCodecCapability]:
        codecs = RTCRtpSender.getCapabilities("audio").codecs
        first = [c for c in codecs if c.mimeType.lower() == CODECS[self.codec].lower()]
        return first + [c for c in codecs if c not in first]

    def _use_codec(self, name: str, clock_rate: int) -> None:
        log.info("agent media %s: sending %s (RTP clock %d Hz)", self.label, name, clock_rate)
        self.negotiated_codec, self._clock_rate = name, clock_rate
        rate = self._pcm_rate(name)  # the new track's already
        if self._call is not None and rate != self._track_rate:
            self._setup_to_agent(self._call)
        self._track_rate = rate

    def _follow_call_rate(self) -> int:
        """The track's PCM rate for the attached call (or for none); 0 before a codec."""
        rate = self._pcm_rate(self.negotiated_codec) if self.negotiated_codec else 0
        self._track_rate = rate
        if self._track is not None and rate:
            self._track.rate = rate
        return rate

    def _pcm_rate(self, codec: str) -> int:
        """The rate we encode from: Opus takes the call's own rate (8-48 kHz, RFC 6716 §2),
        8 kHz between calls (silence); the others their native rate."""
        call = self._call
        return pcm_rate(codec, call.rate if call is not None else 8000)

    # -- connection state ----------------------------------------------------------------

    def _update_state(self, pc: RTCPeerConnection) -> None:
        if pc is not self._pc or self._closed:
            return  # a replaced connection's last events
        conn, ice = pc.connectionState, pc.iceConnectionState
        if conn == "failed" or ice == "failed":
            state = "failed"
        elif conn in ("connected", "closed"):
            state = conn
        else:
            state = "connecting"  # an answered offer: ICE/DTLS under way
        self._set_state(state)

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        log.info("agent media %s: %s -> %s", self.label, self.state, state)
        self.state = state
        if self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:  # the callback's bug must not break the media
                log.exception("agent media %s: on_state callback failed", self.label)

    # -- the call ------------------------------------------------------------------------

    def attach(self, rate: int, frame_samples: int) -> Party:
        """Plug a call in: returns the ``party(received, now)`` for ``CallerFeed.connect``.
        Each tick it sends the caller's frame towards the agent and returns the agent's next
        frame (silence while none is queued). A party of an earlier attach returns silence."""
        if rate < 8000 or frame_samples <= 0:
            raise ValueError(f"bad call audio: {rate} Hz, {frame_samples} samples per frame")
        if self._closed:
            log.warning("agent media %s: call attached after close; the caller hears silence", self.label)
            return lambda received, now: np.zeros(len(received), np.int16)
        if self._call is not None:
            self.detach()
        call = self._call = _Call(rate, frame_samples)
        self._setup_to_agent(call)
        self._to_caller.reset(frame_samples)
        log.debug("agent media %s: call attached at %d Hz", self.label, rate)

        def party(received: np.ndarray, now: float) -> np.ndarray:
            if self._call is not call:
                return np.zeros(len(received), np.int16)
            return self._exchange(call, received)

        return party

    def detach(self) -> None:
        """Unplug the call: the agent hears silence; hold ends with the call (mute stays:
        it is the agent's switch)."""
        if self._call is not None:
            log.debug("agent media %s: call detached (%s)", self.label, dict(self.counters))
        self._call = None
        self._held = False
        self._follow_call_rate()  # silence at 8 kHz between calls
        self._to_agent.reset(0)
        self._to_caller.reset(0)

    def hold(self, on: bool) -> None:
        """On hold neither side hears the other (the server plays music to the caller)."""
        self._held = bool(on)
        self._to_agent.clear()
        self._to_caller.clear()
        call = self._call
        if call is not None:
            for resampler in (call.to_agent, call.to_caller):
                if resampler is not None:
                    resampler.reset()

    def mute(self, on: bool) -> None:
        """While muted the caller hears silence instead of the agent."""
        self._muted = bool(on)

    @property
    def held(self) -> bool:
        return self._held

    @property
    def muted(self) -> bool:
        return self._muted

    def _setup_to_agent(self, call: _Call) -> None:
        rate = self._follow_call_rate()
        call.to_agent = Resampler(call.rate, rate, steady=True) if rate and rate != call.rate else None
        self._to_agent.reset(rate * FRAME_MS // 1000)

    def _exchange(self, call: _Call, received: np.ndarray) -> np.ndarray:
        n = len(received)
        self._meter("from_caller", received)
        if self._held:
            return np.zeros(n, np.int16)
        if self._to_agent.frame:
            self._to_agent.push(call.to_agent.process(received) if call.to_agent is not None else received)
            if self._track is not None:
                self._track.wake()
        out = self._to_caller.pull(n)
        if out is None or self._muted:
            return np.zeros(n, np.int16)
        return out

    def _flowing(self, track: _AgentTrack) -> bool:
        return (track is self._track and track.rate == self._track_rate and self._call is not None
                and not self._held and self._to_agent.frame > 0)

    def _queued_for_agent(self, track: _AgentTrack) -> bool | None:
        """None with no call (the track runs on its own); else whether a frame is waiting."""
        return self._to_agent.queued >= track.samples if self._flowing(track) else None

    def _next_for_agent(self, track: _AgentTrack) -> np.ndarray | None:
        """The outbound track's next frame of caller audio, or None (it sends silence)."""
        return self._to_agent.pull(track.samples) if self._flowing(track) else None

    def _on_remote_track(self, pc: RTCPeerConnection, remote: MediaStreamTrack) -> None:
        if remote.kind != "audio":
            return
        task = asyncio.ensure_future(self._read_remote(pc, remote))
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)

    async def _read_remote(self, pc: RTCPeerConnection, remote: MediaStreamTrack) -> None:
        """Read the agent's decoded audio as it comes (aiortc queues it without bound)."""
        while True:
            try:
                frame = await remote.recv()
            except MediaStreamError:
                break
            if pc is self._pc:
                self._from_agent(frame)
        log.debug("agent media %s: remote track ended", self.label)

    def _from_agent_packet(self, pc: RTCPeerConnection, decoder: PacketDecoder, packet: Any, lost: int) -> None:
        """A packet from the agent, on arrival (lost ones before it concealed by the codec)."""
        if pc is not self._pc:
            return
        call = self._call
        decoder.rate = call.rate if call is not None else 8000
        frames = decoder.decode(packet.payload, packet.payload_type, lost)
        self.counters["frames_from_agent"] += 1
        self.counters["frames_concealed_from_agent"] = decoder.stats["concealed"]
        if frames:
            self._meter("from_agent", frames[-1])
        if frames and call is not None and not self._held:
            self._to_caller_frames(call, frames, decoder.pcm_rate(packet.payload_type))

    def _from_agent(self, frame: av.AudioFrame) -> None:
        """A frame aiortc decoded (only when our receive buffer could not be swapped in)."""
        pcm = _mono_int16(frame)
        self.counters["frames_from_agent"] += 1
        self._meter("from_agent", pcm)
        frames = self._concealer.feed(pcm, frame.pts, frame.time_base, frame.sample_rate)  # lost ones first
        self.counters["frames_concealed_from_agent"] = self._concealer.stats["concealed"]
        call = self._call
        if call is not None and not self._held:
            self._to_caller_frames(call, frames, frame.sample_rate)

    def _to_caller_frames(self, call: _Call, frames: list[np.ndarray], rate: int) -> None:
        if rate != call.agent_rate:  # first frame, or a re-offer changed codec
            call.agent_rate = rate
            call.to_caller = Resampler(rate, call.rate, steady=True) if rate != call.rate else None
        for f in frames:
            self._to_caller.push(call.to_caller.process(f) if call.to_caller is not None else f)

    def _meter(self, which: str, pcm: np.ndarray) -> None:
        if len(pcm):
            ms = float(np.mean(np.square(pcm, dtype=np.float64))) / (32768.0 * 32768.0)
            self._levels[which] += LEVEL_ALPHA * (ms - self._levels[which])

    # -- diagnostics -----------------------------------------------------------------------

    def levels(self) -> dict[str, float]:
        """dBFS over the last ~200 ms: what the caller says, what the agent says (before mute)."""
        return {"caller_dbfs": _dbfs(self._levels["from_caller"]),
                "agent_dbfs": _dbfs(self._levels["from_agent"])}

    def queued_ms(self) -> dict[str, float]:
        """Audio waiting in each FIFO, in ms."""
        to_agent = 1000 * self._to_agent.queued / self._track_rate if self._track_rate else 0.0
        to_caller = 1000 * self._to_caller.queued / self._call.rate if self._call else 0.0
        return {"to_agent": to_agent, "to_caller": to_caller}

    async def stats(self) -> dict[str, Any]:
        """Quality of the current connection (aiortc's stats) and our own counters."""
        out: dict[str, Any] = {
            "state": self.state, "codec": self.negotiated_codec, "rtt_ms": None, "jitter_ms": None,
            "packets_received": 0, "packets_lost": 0, "loss_pct": 0.0, "packets_sent": 0,
            "remote_loss_pct": None,
            "frames_dropped_to_agent": self.counters["to_agent_dropped"],
            "frames_dropped_to_caller": self.counters["to_caller_dropped"],
            "frames_sent": self._track.frames if self._track is not None else 0,
            "counters": dict(self.counters), **self.levels(),
            **{f"queued_{k}_ms": v for k, v in self.queued_ms().items()},
        }
        pc = self._pc
        if pc is None:
            return out
        jitter: list[float] = []
        for s in (await pc.getStats()).values():
            if s.type == "inbound-rtp":
                out["packets_received"] += s.packetsReceived
                out["packets_lost"] += max(0, s.packetsLost)
                if self._clock_rate:  # RTP clock units, not seconds
                    jitter.append(1000 * s.jitter / self._clock_rate)
            elif s.type == "outbound-rtp":
                out["packets_sent"] += s.packetsSent
            elif s.type == "remote-inbound-rtp":
                if s.roundTripTime is not None:
                    out["rtt_ms"] = 1000 * s.roundTripTime
                out["remote_loss_pct"] = 100 * s.fractionLost / 256  # RFC 3550 fraction, 8 bits
        if jitter:
            out["jitter_ms"] = max(jitter)
        expected = out["packets_received"] + out["packets_lost"]
        if expected:
            out["loss_pct"] = 100 * out["packets_lost"] / expected
        return out

    async def close(self) -> None:
        """End the session's media: the peer connection goes, party functions send silence."""
        if self._closed:
            return
        self._closed = True
        self.detach()
        pc, self._pc, self._track = self._pc, None, None
        if pc is not None:
            await pc.close()
        for task in list(self._readers):
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        self._set_state("closed")
