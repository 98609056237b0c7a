"""A call leg's media on the server: an RTP endpoint and an :class:`AudioStream`, ticked by the
process-wide media clock. What the leg sends comes from a *source* (the echo of what it
received, music, a prompt, later the other leg of a bridge); what it receives goes to a sink.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from acd.sip.sdp import NegotiatedStream
from media.dtmf import DtmfEvent
from media.dtmf_inband import GoertzelDetector
from media.quality import QualitySnapshot
from media.stream import AudioStream, StreamParams
from media.transport import MediaClock, RtpEndpoint

__all__ = ["CallMedia", "params_from_sdp"]

log = logging.getLogger(__name__)

Source = Callable[[np.ndarray, float], "np.ndarray | None"]
FOLLOW_EVERY = 25  # ticks between phase checks of a leg that follows its caller (0.5 s)
FOLLOW_GUARD_MS = 1.0  # kept between a packet's due time and the tick that plays it


def params_from_sdp(stream: NegotiatedStream, *, min_delay_ms: int = 20, max_delay_ms: int = 200) -> StreamParams:
    return StreamParams(stream.payload_type, stream.codec, ptime_ms=stream.ptime,
                        telephone_event_pt=stream.telephone_event_pt,
                        min_delay_ms=min_delay_ms, max_delay_ms=max_delay_ms)


def echo_source(received: np.ndarray, now: float) -> np.ndarray:
    """The echo test: send back the frame just played out of the jitter buffer."""
    return received


class CallMedia:
    """One call leg's audio. ``source(received_frame, now)`` gives the frame to send (None: send
    nothing this tick); ``sink`` sees every received frame; ``on_dtmf`` gets RFC 4733 digits."""

    def __init__(self, clock: MediaClock, address: str, port: int, params: StreamParams, now: float, *,
                 nat: bool = False, source: Source = echo_source,
                 sink: Callable[[np.ndarray, float], None] | None = None,
                 on_dtmf: Callable[[DtmfEvent], None] | None = None, label: str = "",
                 follow_phase: bool = False) -> None:
        self.clock = clock
        self.follow_phase = follow_phase
        self._ticks = 0
        self._want = 0  # the last check's wish: -1 earlier, +1 later
        self.label = label
        self.params = params
        self.stream = AudioStream(params, now)
        self.endpoint = RtpEndpoint(address, port, nat=nat, on_rtp=self._on_rtp, on_rtcp=self._on_rtcp)
        self.source = source
        self.sink = sink
        self.on_dtmf = on_dtmf
        self.sending = True  # False while the far end holds us (RFC 3264 §8.4: we are recvonly)
        self._token: int | None = None
        self.inband: GoertzelDetector | None = None
        self._inband_for(params)

    @property
    def port(self) -> int:
        return self.endpoint.port

    async def open(self, remote: tuple[str, int]) -> None:
        await self.endpoint.open()
        self.endpoint.set_remote(*remote)
        self._token = self.clock.add(self._tick)

    def update(self, negotiated: NegotiatedStream, now: float) -> None:
        """A re-INVITE: new remote address, direction, maybe a new codec (a new stream then)."""
        self.endpoint.set_remote(negotiated.remote_address, negotiated.remote_port)
        self.sending = negotiated.direction in ("sendrecv", "sendonly")
        params = replace(params_from_sdp(negotiated), min_delay_ms=self.params.min_delay_ms,
                         max_delay_ms=self.params.max_delay_ms, jitter_options=self.params.jitter_options)
        if (params.codec, params.payload_type, params.ptime_ms) != (
                self.params.codec, self.params.payload_type, self.params.ptime_ms):
            log.info("%s: codec now %s/%d", self.label, params.codec, params.payload_type)
            self.params = params
            self.stream = AudioStream(params, now, ssrc=self.stream.ssrc)
            self._inband_for(params)

    def _inband_for(self, params: StreamParams) -> None:
        """Without telephone-event the far end can only send DTMF as tones in the audio."""
        if params.telephone_event_pt is None:
            self.inband = GoertzelDetector(self.stream.codec.sample_rate)
        else:
            self.inband = None

    def send_dtmf(self, digit: str, now: float, duration_ms: int = 100) -> None:
        self.stream.send_dtmf(digit, now, duration_ms)

    def _on_rtp(self, packet: Any, now: float) -> None:
        for event in self.stream.receive_rtp(packet, now):
            if self.on_dtmf is not None:
                self.on_dtmf(event)
        if self.follow_phase and not self._ticks and self._token is not None and self.stream.jitter.buffered:
            self._ticks = 1
            self._align(now)

    def _on_rtcp(self, data: bytes, now: float) -> None:
        self.stream.receive_rtcp(data, now)

    def _tick(self, now: float) -> None:
        stream = self.stream
        received = stream.playout(now)
        if self.sink is not None:
            self.sink(received, now)
        if self.inband is not None and self.on_dtmf is not None:
            for event in self.inband.feed(received):
                self.on_dtmf(event)
        out = self.source(received, now) if self.sending else None
        for data in stream.send(out, now):
            self.endpoint.send_rtp(data)
        report = stream.rtcp(now)
        if report is not None:
            self.endpoint.send_rtcp(report)
        for event in stream.poll_dtmf(now):
            if self.on_dtmf is not None:
                self.on_dtmf(event)
        if self.follow_phase and self._ticks:
            self._ticks += 1
            if self._ticks % FOLLOW_EVERY == 0:
                self._follow()

    def _align(self, arrival: float) -> None:
        """The first packet: move the leg's ticks to just after it is due, before anything is
        echoed, so the far end sees one steady phase from the start."""
        assert self._token is not None
        cfg = self.stream.jitter.cfg  # the target the buffer will set on its first measure
        target = min(max(cfg.margin_ms, cfg.min_delay_ms), cfg.max_delay_ms)
        due = arrival + (target + FOLLOW_GUARD_MS) / 1000.0 + self.clock.slot_s  # a slot of headroom
        slots = math.ceil((due - self.clock.next_tick(self._token)) / self.clock.slot_s - 1e-9)
        if slots >= self.clock.slots:
            slots -= self.clock.slots
        elif slots <= -self.clock.slots:
            slots += self.clock.slots
        phase = self.clock.shift(self._token, slots)
        log.debug("%s: first packet; phase %+d slots, now %d", self.label, slots, phase)

    def _follow(self) -> None:
        """Keep ticking just after the caller's packets are due as their timing drifts, one slot
        at a time: later at once when the delay is below the jitter buffer's target (before the
        buffer inserts a whole frame: its patience is 1 s); earlier after two checks in a row
        (1 s) above it by more than the alignment's headroom but less than a frame (a frame or
        more is the buffer's to fix: it drops whole frames). A steady far end sees no change."""
        jb = self.stream.jitter
        if jb.state != "playing" or self._token is None:
            return
        slot_ms = self.clock.slot_s * 1000.0
        excess = jb.current_delay_ms - jb.target_delay_ms
        if 3 * slot_ms + FOLLOW_GUARD_MS < excess < self.clock.period * 1000.0:
            want = -1
        elif excess < 0:
            want = 1
        else:
            want = 0
        if want == 0 or (want < 0 and self._want != want):
            self._want = want
            return
        self._want = 0
        phase = self.clock.shift(self._token, want)
        log.debug("%s: delay %.1f ms, target %.1f ms: phase %+d slot, now %d", self.label,
                  jb.current_delay_ms, jb.target_delay_ms, want, phase)

    def snapshot(self) -> QualitySnapshot:
        return self.stream.snapshot()

    def counters(self) -> Counter[str]:
        """Socket, stream and jitter-buffer counters (dropped, malformed, concealed, late…)."""
        out: Counter[str] = Counter(self.endpoint.stats)
        out.update(self.stream.stats)
        out.update({f"jitter_{k}": v for k, v in self.stream.jitter.stats.items()})
        out.update({f"codec_{k}": v for k, v in self.stream.decoder.stats.items()})
        return out

    def close(self, now: float) -> QualitySnapshot:
        """Stop; returns the whole call's quality summary."""
        if self._token is not None:
            self.clock.remove(self._token)
            self._token = None
            report = self.stream.rtcp(now, bye=True)
            if report is not None:
                self.endpoint.send_rtcp(report)
        snap = self.stream.snapshot(whole_call=True)
        self.endpoint.close()
        return snap
