"""One RTP audio stream: the receive side (statistics, jitter buffer, DTMF, decode with
concealment) and the send side (encode, packetize, DTMF), with RTCP. Sans-IO.

The owner calls ``receive_rtp``/``receive_rtcp`` as packets arrive, and on each media-clock
tick ``playout(now)`` for the next frame of audio and ``send(pcm, now)`` for the packets to
send; ``rtcp(now)`` returns a compound report when one is due (RFC 3550 §6.3).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from media.codecs import CodecError, make_codec
from media.dtmf import DtmfEvent, DtmfReceiver, DtmfSender
from media.errors import MalformedPacket
from media.jitter import JitterBuffer
from media.quality import QualitySnapshot, StreamQuality
from media.rtcp import (
    Bye,
    ReceiverReport,
    SenderReport,
    SourceDescription,
    build_compound,
    parse_compound,
    rtcp_interval,
)
from media.rtp import RtpPacket
from media.stats import ReceiverStats, SenderStats

__all__ = ["StreamParams", "AudioStream"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamParams:
    """What SDP negotiated for one audio stream (see ``acd.sip.sdp.NegotiatedStream``)."""

    payload_type: int
    codec: str
    ptime_ms: int = 20
    telephone_event_pt: int | None = None
    codec_options: dict[str, Any] = field(default_factory=dict)
    min_delay_ms: int = 20
    max_delay_ms: int = 200
    jitter_options: dict[str, Any] = field(default_factory=dict)  # more JitterConfig fields


class AudioStream:
    def __init__(self, params: StreamParams, now: float, *, ssrc: int | None = None,
                 cname: str = "homeline", rng: random.Random | None = None) -> None:
        self.params = params
        self.rng = rng or random.Random()
        self.codec = make_codec(params.codec, ptime_ms=params.ptime_ms, **params.codec_options)
        self.decoder = make_codec(params.codec, ptime_ms=params.ptime_ms, **params.codec_options)
        self.clock_rate = self.codec.clock_rate
        self.frame_samples = self.codec.frame_samples
        self.ssrc = ssrc if ssrc is not None else self.rng.getrandbits(32)
        self.cname = cname
        self.receiver = ReceiverStats(self.clock_rate)
        self.sender = SenderStats(self.ssrc, self.clock_rate)
        self.jitter = JitterBuffer(clock_rate=self.clock_rate, ptime_ms=params.ptime_ms,
                                   min_delay_ms=params.min_delay_ms, max_delay_ms=params.max_delay_ms,
                                   **params.jitter_options)
        self.quality = StreamQuality(params.codec, frame_ms=params.ptime_ms)
        self.dtmf_in = DtmfReceiver(params.telephone_event_pt or 101, self.clock_rate)
        self._seq = self.rng.getrandbits(16)
        self._ts = self.rng.getrandbits(32)
        self.dtmf_out: DtmfSender | None = None
        if params.telephone_event_pt is not None:
            self.dtmf_out = DtmfSender(params.telephone_event_pt, self.clock_rate, self.ssrc,
                                       self._next_seq, self.sender.rtp_timestamp_at)
        self.stats: Counter[str] = Counter()
        self._pcm = np.zeros(0, dtype=np.int16)  # decoded audio waiting to be played (ptime mismatch)
        self._marker = True  # first packet of a talkspurt (RFC 3551 §4.1)
        self._sent_any = False
        self._next_rtcp = now + rtcp_interval(self.rng.random(), initial=True)
        self._jitter_seen = Counter[str]()

    # -- receive -------------------------------------------------------------------------

    def receive_rtp(self, packet: RtpPacket, now: float) -> list[DtmfEvent]:
        pt = packet.payload_type
        if pt == self.params.telephone_event_pt:
            return self.dtmf_in.receive(packet, now)
        if pt != self.params.payload_type:
            self.stats["unexpected_payload_type"] += 1  # e.g. CN we did not negotiate
            return []
        kind = self.receiver.update(packet, now)
        if kind in ("bad-seq", "probation") and not self.receiver.valid:
            self.stats[f"rx_{kind}"] += 1
        self.jitter.put(packet, now)
        return []

    def receive_rtcp(self, data: bytes, now: float) -> None:
        try:
            packets = parse_compound(data, strict=False)
        except MalformedPacket:
            self.stats["malformed_rtcp"] += 1
            return
        for pkt in packets:
            if isinstance(pkt, SenderReport):
                self.receiver.on_sender_report(pkt, now)
            if isinstance(pkt, (SenderReport, ReceiverReport)):
                for block in pkt.reports:
                    if block.ssrc == self.ssrc:
                        self.quality.on_rtt(self.sender.on_report_block(block, now))

    def poll_dtmf(self, now: float) -> list[DtmfEvent]:
        """Events that end by timeout (a key-up whose end packets were all lost)."""
        return self.dtmf_in.poll(now)

    def playout(self, now: float) -> np.ndarray:
        """One frame of audio (``frame_samples`` at the codec's rate): decoded, concealed or silent."""
        while len(self._pcm) < self.frame_samples:
            pending = len(self._pcm) * self.clock_rate // self.codec.sample_rate
            frame = self.jitter.get(now, pending=pending)
            if frame.kind == "audio":
                try:
                    pcm = self.decoder.decode(frame.payload)
                except CodecError:
                    self.stats["decode_error"] += 1
                    pcm = self.decoder.conceal()
                    self.quality.on_concealed()
            elif frame.kind == "conceal":
                pcm = self.decoder.conceal(frame.samples * self.codec.sample_rate // self.clock_rate)
                self.quality.on_concealed()
            else:
                pcm = np.zeros(frame.samples * self.codec.sample_rate // self.clock_rate or self.frame_samples,
                               dtype=np.int16)
            self._pcm = pcm if not len(self._pcm) else np.concatenate((self._pcm, pcm))
        out, self._pcm = self._pcm[: self.frame_samples], self._pcm[self.frame_samples:]
        late = self.jitter.stats["late"]
        if late != self._jitter_seen["late"]:
            self.quality.on_late(late - self._jitter_seen["late"])
            self._jitter_seen["late"] = late
        return out

    # -- send ----------------------------------------------------------------------------

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFFFF
        return seq

    def send(self, pcm: np.ndarray | None, now: float) -> list[bytes]:
        """Packets for this tick: an encoded frame, or DTMF events while a digit is on."""
        out: list[bytes] = []
        ts = self._ts
        self._ts = (self._ts + self.codec.timestamp_step) & 0xFFFFFFFF
        if self.dtmf_out is not None and (self.dtmf_out.busy or self.dtmf_out.audio_paused):
            for packet in self.dtmf_out.poll(now):
                self.sender.on_sent(packet, now)
                out.append(packet.to_bytes())
            if self.dtmf_out.audio_paused:
                self._marker = True
                return out
        if pcm is None:
            self._marker = True  # silence suppressed: the next packet starts a talkspurt
            return out
        packet = RtpPacket(self.params.payload_type, self._next_seq(), ts, self.ssrc,
                           self.codec.encode(pcm), marker=self._marker)
        self._marker = False
        self.sender.on_sent(packet, now)
        self._sent_any = True
        out.append(packet.to_bytes())
        return out

    def send_dtmf(self, digit: str, now: float, duration_ms: int = 100) -> None:
        if self.dtmf_out is None:
            self.stats["dtmf_not_negotiated"] += 1
            log.info("DTMF %s not sent: telephone-event was not negotiated", digit)
            return
        self.dtmf_out.start(digit, now, duration_ms)

    # -- RTCP ------------------------------------------------------------------------------

    def rtcp(self, now: float, *, bye: bool = False) -> bytes | None:
        """A compound SR/RR + SDES when one is due (RFC 3550 §6.1, §6.3)."""
        if now < self._next_rtcp and not bye:
            return None
        self._next_rtcp = now + rtcp_interval(self.rng.random(), we_sent=self._sent_any)
        blocks = (self.receiver.report_block(now),) if self.receiver.valid else ()
        self.quality.observe(self.receiver)
        head = self.sender.sender_report(now, blocks) if self._sent_any else ReceiverReport(self.ssrc, blocks)
        packets: list[Any] = [head, SourceDescription.cname(self.ssrc, self.cname)]
        if bye:
            packets.append(Bye((self.ssrc,), "call ended"))  # §6.6
        return build_compound(packets)

    def snapshot(self, *, whole_call: bool = False) -> QualitySnapshot:
        self.quality.playout_delay_ms = self.jitter.current_delay_ms
        self.quality.observe(self.receiver)
        return self.quality.snapshot(whole_call=whole_call)
