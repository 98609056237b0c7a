"""G.722 (ITU-T G.722 SB-ADPCM, 64 kbit/s) through FFmpeg's ``g722`` codec via PyAV.

G.722 samples at 16 kHz but its RTP clock is 8000 Hz (RFC 3551 §4.5.2): a 20 ms frame is
320 samples, 160 bytes, and advances the RTP timestamp by 160. Both sub-band ADPCM coders
are stateful, so the encoder and decoder contexts live as long as the stream (``reset``
opens fresh ones). FFmpeg's encoder has a fixed frame size, which we set to the ptime
(its ``frame_size`` option) so that one ``encode`` is one packet; the QMF analysis and
synthesis filters delay the signal by 22 samples (1.375 ms) end to end.

G.722 has no loss concealment of its own here: lost frames are filled by
:class:`~media.codecs.base.WaveformPlc` on the 16 kHz decoded signal. The ADPCM decoder's
state is not resynchronised after a loss (G.722 Appendix III/IV do that); its backward
adaptation reconverges within a few milliseconds of the next good packet.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import ClassVar

import av
import numpy as np

from media.codecs.base import CodecError, check_frame, check_ptime, register_codec
from media.codecs.base import PlcCodec, WaveformPlc
from media.errors import MediaError

__all__ = ["G722Codec"]

log = logging.getLogger(__name__)

_RATE = 16000


@register_codec
class G722Codec(PlcCodec):
    """G.722 at 64 kbit/s, static payload type 9; 16 kHz PCM on an 8 kHz RTP clock."""

    name: ClassVar[str] = "G722"
    clock_rate: ClassVar[int] = 8000  # RFC 3551 §4.5.2 (an error kept for compatibility)
    static_payload_type: ClassVar[int | None] = 9

    def __init__(self, *, ptime_ms: int = 20) -> None:
        self.sample_rate = _RATE
        self.ptime_ms = check_ptime(ptime_ms, _RATE)
        self._frame = self.frame_samples
        self._plc = WaveformPlc(_RATE)
        self.stats: Counter[str] = Counter()
        self._open()

    def _open(self) -> None:
        enc = av.CodecContext.create("g722", "w")
        enc.sample_rate = _RATE
        enc.layout = "mono"
        enc.format = "s16"
        enc.options = {"frame_size": str(self._frame)}
        enc.open()
        if enc.frame_size != self._frame:
            raise MediaError(f"FFmpeg g722 refused a {self._frame}-sample frame size")
        dec = av.CodecContext.create("g722", "r")
        dec.sample_rate = _RATE
        dec.layout = "mono"
        dec.open()
        self._enc, self._dec = enc, dec
        self._pts = 0
        self._last_len = self._frame

    def encode(self, pcm: np.ndarray) -> bytes:
        check_frame(pcm, self._frame)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = _RATE
        frame.pts = self._pts
        self._pts += self._frame
        packets = self._enc.encode(frame)
        if len(packets) != 1:  # FFmpeg's g722 encoder is one frame in, one packet out
            raise MediaError(f"g722 encoder returned {len(packets)} packets for one frame")
        return bytes(packets[0])

    def decode(self, payload: bytes) -> np.ndarray:
        if not payload:  # an empty AVPacket would also put the decoder into drain mode
            self.stats["corrupt"] += 1
            raise CodecError("empty G722 payload")
        try:
            frames = self._dec.decode(av.Packet(payload))
        except av.FFmpegError as exc:
            self.stats["corrupt"] += 1
            raise CodecError(f"G722 decode failed: {exc}") from exc
        if len(frames) == 1:
            pcm = frames[0].to_ndarray().reshape(-1).copy()
        else:
            pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]) if frames else np.empty(0, np.int16)
        if pcm.dtype != np.int16 or pcm.shape[0] != 2 * len(payload):
            self.stats["corrupt"] += 1
            raise CodecError(f"G722 decoder gave {pcm.shape[0]} {pcm.dtype} samples for {len(payload)} bytes")
        return self._good(pcm)

    def reset(self) -> None:
        self._plc.reset()
        self._open()
