"""Our adapter to aiortc's audio (the agent's WebRTC leg, both ends): a low-delay receive
buffer, and our own codecs both ways, so that aiortc only carries packets.

aiortc's audio receiver (1.x) builds ``JitterBuffer(capacity=16, prefetch=4)``: a frame goes to
the decoder only once four more frames have arrived behind it — 80 ms of delay on every
packet — and a lost packet blocks every frame behind it until 16 are queued, then they all go
at once (320 ms of silence, then a burst; aiortc issue #543). Our media path already has its
own cushion behind the decoder (the server's FIFO to the caller, the softphone's adaptive
playout buffer), and an audio frame is one packet, so the receiver only has to keep order:

* a packet goes to the decoder as it arrives (0 ms instead of 80 ms), if it is the next one or
  later in sequence; one from behind is late and dropped (the cushion behind would have
  dropped it anyway);
* a gap is given up at once: :class:`GapConcealer`, behind the decoder, sees the jump in the
  timestamps and fills it with concealment, so the timeline never moves.

With a ``sink``, packets never reach aiortc's decoder thread: each goes to the sink on the
event loop with the count of packets lost just before it, and :class:`PacketDecoder` decodes
it at the rate the listener needs, concealing losses with the codec itself (no thread
hand-off, no 48 kHz stereo decode, no resampler). :class:`PacketEncoder` is the other way:
the track hands aiortc encoded packets. Both the server and the softphone work this way;
:class:`GapConcealer` is for the fallback where aiortc still decodes.

:func:`use_low_delay_jitter_buffer` swaps it into a transceiver's receiver. aiortc keeps the
buffer in a private attribute; if that ever changes, the receiver keeps aiortc's own buffer and
a warning is logged (the tests assert the swap, so an aiortc upgrade that breaks it fails them).
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

import av
import numpy as np

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.sdp import SessionDescription
from aiortc.utils import uint16_add

from media.codecs.base import AudioCodec, CodecError, WaveformPlc, make_codec
from media.codecs.opus import PCM_RATES as OPUS_PCM_RATES
from media.errors import MediaError
from media.resample import Resampler

__all__ = ["LowDelayJitterBuffer", "use_low_delay_jitter_buffer", "GapConcealer", "PacketDecoder",
           "PacketEncoder", "pcm_rate", "payload_types"]

log = logging.getLogger(__name__)

MAX_DROPOUT = 3000  # RFC 3550 A.1: further ahead is a restart, not a loss
MAX_MISORDER = 100  # further behind is a restart, not a late packet
MAX_GAP_FRAMES = 10  # longer losses are not made up (a restart, or the sender paused)
_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"

Sink = Callable[[Any, int], None]  # (aiortc RtpPacket, packets lost just before it)


class LowDelayJitterBuffer(JitterBuffer):
    """aiortc's ``JitterBuffer`` interface (``add`` → (pli, frame)) for audio, where a packet is
    a frame: each goes to the decoder as it arrives, in sequence order. A gap in the sequence is
    given up at once (``skipped``: the concealment behind the decoder fills it, see
    :class:`GapConcealer`); a packet from behind the last one passed is ``late`` and dropped.
    With a ``sink`` each packet goes there instead of to aiortc's decoder."""

    def __init__(self, capacity: int = 16, sink: Sink | None = None) -> None:
        super().__init__(capacity=capacity, prefetch=0, is_video=False)
        self.stats: Counter[str] = Counter()
        self.sink = sink

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        seq = packet.sequence_number
        lost = 0
        if self._origin is not None:
            ahead = uint16_add(seq, -self._origin)  # 0: the next one expected
            if ahead >= 0x8000 or ahead >= MAX_DROPOUT:  # behind (late, duplicate) or far ahead
                if ahead < 0x8000 or uint16_add(self._origin, -seq) > MAX_MISORDER:
                    self._origin = None  # a restart (RFC 3550 A.1): take it as the new start
                else:
                    self.stats["late"] += 1
                    return False, None
            elif ahead:
                self.stats["skipped"] += ahead
                lost = ahead
        self._origin = uint16_add(seq, 1)
        if self.sink is not None:
            try:
                self.sink(packet, lost)
            except Exception:  # a bug behind us must not stop aiortc's receiver
                self.stats["sink_errors"] += 1
                log.exception("audio packet sink failed")
            return False, None
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)


def use_low_delay_jitter_buffer(receiver: Any, sink: Sink | None = None) -> LowDelayJitterBuffer | None:
    """Give an audio ``RTCRtpReceiver`` the low-delay buffer; None if aiortc's layout changed."""
    current = getattr(receiver, _ATTRIBUTE, None)
    if not isinstance(current, JitterBuffer) or getattr(current, "_is_video", False):
        log.warning("aiortc's receiver has no audio jitter buffer where expected: keeping its own (80 ms)")
        return None
    buffer = LowDelayJitterBuffer(capacity=current.capacity, sink=sink)
    setattr(receiver, _ATTRIBUTE, buffer)
    return buffer


class GapConcealer:
    """Conceals the frames the receive buffer gave up, behind aiortc's decoder (which never
    learns of them: a lost packet would otherwise be 20 ms cut out of the audio).

    Feed every decoded frame with its ``pts`` and ``time_base``; a jump in ``pts`` of whole
    frames is a loss, filled by pitch-repetition concealment (:class:`WaveformPlc`, G.711
    Appendix I; silence after 60 ms) before the frame, which is blended in. A jump backwards or
    beyond :data:`MAX_GAP_FRAMES` is a new stream: nothing is made up.
    """

    def __init__(self) -> None:
        self._plc: WaveformPlc | None = None
        self._rate = 0
        self._next: float | None = None  # when the next frame should start (seconds)
        self.stats: Counter[str] = Counter()

    def feed(self, pcm: np.ndarray, pts: int | None, time_base: Fraction | None, rate: int) -> list[np.ndarray]:
        """The frames to play for this one: concealment for any frames missing before it, then it."""
        if rate != self._rate:
            self._plc = WaveformPlc(rate) if rate % 8000 == 0 else None
            self._rate, self._next = rate, None
        out: list[np.ndarray] = []
        n = len(pcm)
        if pts is not None and time_base is not None and n:
            start = pts * time_base.numerator / time_base.denominator
            if self._next is not None and self._plc is not None:
                missing = (start - self._next) * rate / n
                frames = round(missing)
                if 1 <= frames <= MAX_GAP_FRAMES and abs(missing - frames) < 0.25:
                    self.stats["concealed"] += frames
                    out.extend(self._plc.conceal(n) for _ in range(frames))
            self._next = start + n / rate
        out.append(self._plc.good(pcm.copy()) if self._plc is not None else pcm)
        return out


def _make_codec(name: str, rate: int, **opus_options: Any) -> AudioCodec:
    """``name`` at PCM ``rate`` if it is Opus (which takes 8-48 kHz), else at its own."""
    return make_codec(name, sample_rate=rate, **opus_options) if name == "opus" else make_codec(name)


@functools.lru_cache(maxsize=None)
def _native_rate(name: str) -> int:
    return make_codec(name).sample_rate


def payload_types(sdp: str) -> dict[int, tuple[str, int]]:
    """payload type -> (codec name, RTP clock) of an SDP's audio m-line (aiortc's parser)."""
    media = next(m for m in SessionDescription.parse(sdp).media if m.kind == "audio")
    return {c.payloadType: (c.mimeType.split("/")[-1].lower(), c.clockRate) for c in media.rtp.codecs}


def pcm_rate(codec: str, rate: int) -> int:
    """The PCM rate ``codec`` encodes from and decodes to for audio at ``rate``: Opus takes
    8, 12, 16, 24 or 48 kHz as it is (RFC 6716 §2), the others their native rate."""
    if codec.lower() == "opus":
        return rate if rate in OPUS_PCM_RATES else 48000
    return _native_rate(codec.lower())


class PacketDecoder:
    """Decodes received audio packets where they arrive (the event loop), at the PCM rate the
    listener wants: Opus at any of its rates (RFC 6716 §2: a call at 8 kHz gets 8 kHz, with no
    resampler), the others at their own. ``codecs`` maps payload types to (name, RTP clock).

    :meth:`decode` takes each packet with the count lost just before it (from the sequence
    numbers, so a sender's pause in timestamps is not a loss) and returns the frames to play:
    up to :data:`MAX_GAP_FRAMES` made up by the codec itself (Opus PLC, the last one from the
    packet's in-band FEC when it carries any, RFC 6716 §2.1.7; G.711 Appendix I), then its own.
    A corrupt payload is concealed and counted."""

    def __init__(self, codecs: Mapping[int, tuple[str, int]], rate: int = 8000) -> None:
        self.codecs = dict(codecs)
        self.rate = rate
        self.stats: Counter[str] = Counter()
        self._codec: AudioCodec | None = None
        self._key: tuple[int, int] | None = None

    def pcm_rate(self, pt: int) -> int:
        """The PCM rate packets of ``pt`` decode to (0: not a payload type or codec we know)."""
        entry = self.codecs.get(pt)
        try:
            return pcm_rate(entry[0], self.rate) if entry is not None else 0
        except MediaError:
            return 0

    def decode(self, payload: bytes, pt: int, lost: int = 0) -> list[np.ndarray]:
        entry = self.codecs.get(pt)
        if entry is None:
            self.stats["unknown_pt"] += 1
            return []
        rate = pcm_rate("opus", self.rate) if entry[0] == "opus" else 0
        if self._key != (pt, rate):  # a new codec, or the listener's rate changed: a new stream
            try:
                self._codec, self._key, lost = _make_codec(entry[0], rate), (pt, rate), 0
            except MediaError:  # negotiated by aiortc, but not a codec of ours
                self.stats["unknown_codec"] += 1
                return []
        codec = self._codec
        assert codec is not None
        out: list[np.ndarray] = []
        if 1 <= lost <= MAX_GAP_FRAMES:
            self.stats["concealed"] += lost
            out.extend(codec.conceal() for _ in range(lost - 1))
            try:
                out.append(codec.decode_fec(payload) if codec.has_fec else codec.conceal())
            except CodecError:
                out.append(codec.conceal())
        try:
            out.append(codec.decode(payload))
        except CodecError:
            self.stats["corrupt"] += 1
            out.append(codec.conceal())
        self.stats["decoded"] += 1
        return out


class PacketEncoder:
    """Encodes 20 ms PCM frames into what aiortc's sender takes ready-made (``av.Packet``: it
    only packs and protects it), instead of aiortc's encoder (PyAV, 48 kHz stereo, a worker
    thread per frame, 96 kb/s Opus, and a resampler that holds a frame back).

    :meth:`packet` takes a frame at any rate: Opus encodes 8-48 kHz as it is (RFC 6716 §2; mono,
    ``opus_bitrate``), the others take their native rate (a steady resampler first when the
    frame's differs). ``ts`` is the RTP timestamp, in the codec's clock."""

    def __init__(self, codec: str, clock_rate: int, opus_bitrate: int = 32000) -> None:
        self.codec, self.clock_rate, self.opus_bitrate = codec.lower(), clock_rate, opus_bitrate
        self._encoders: dict[int, AudioCodec] = {}
        self._resampler: Resampler | None = None
        self._time_base = Fraction(1, clock_rate)

    def packet(self, pcm: np.ndarray, rate: int, ts: int) -> av.Packet:
        want = pcm_rate(self.codec, rate)
        if want != rate:
            r = self._resampler
            if r is None or (r.in_rate, r.out_rate) != (rate, want):
                r = self._resampler = Resampler(rate, want, steady=True)
            pcm = r.process(pcm)
        encoder = self._encoders.get(want)
        if encoder is None:
            encoder = self._encoders[want] = _make_codec(self.codec, want, bitrate=self.opus_bitrate)
        packet = av.Packet(encoder.encode(pcm))
        packet.pts = ts
        packet.time_base = self._time_base
        return packet
