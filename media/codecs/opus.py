"""Opus (RFC 6716) in RTP (RFC 7587) through libopus, via opuslib's ctypes bindings.

The RTP clock is always 48000 and the rtpmap always says two channels ("opus/48000/2",
RFC 7587 §4.1 and §7), whatever we really send; we encode mono and decode into a mono
decoder, which libopus downmixes a stereo stream into. The PCM side may run at any rate
libopus supports (8, 12, 16, 24 or 48 kHz).

Loss handling is libopus's own: :meth:`OpusCodec.conceal` runs the decoder's PLC (a
decode without data) and :meth:`OpusCodec.decode_fec` decodes the LBRR copy of the lost
frame carried by the next packet (in-band FEC, RFC 6716 §2.1.7 and §4.2.4, RFC 7587 §3.3
``useinbandfec``) when the sender has FEC on, and falls back to PLC when it has not.

opuslib's high-level ``Encoder`` setters for in-band FEC and DTX are broken (they call the
wrong CTL), and its ``encode``/``decode`` copy the PCM through Python lists; so the hot
paths call the ctypes functions opuslib binds, with numpy buffers, and set CTLs directly.
"""

from __future__ import annotations

import ctypes
import logging
from collections import Counter
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import opuslib
import opuslib.api.ctl as _ctl
import opuslib.api.decoder as _dec
import opuslib.api.encoder as _enc

from media.codecs.base import AudioCodec, CodecError, check_frame, check_ptime, register_codec
from media.errors import MediaError

__all__ = ["OpusCodec", "BANDWIDTHS", "PCM_RATES"]

log = logging.getLogger(__name__)

PCM_RATES = (8000, 12000, 16000, 24000, 48000)  # RFC 6716 §2
BANDWIDTHS = {  # RFC 6716 §2, table 1; OPUS_SET_MAX_BANDWIDTH values
    "narrowband": opuslib.BANDWIDTH_NARROWBAND,  # 4 kHz audio bandwidth
    "mediumband": opuslib.BANDWIDTH_MEDIUMBAND,  # 6 kHz
    "wideband": opuslib.BANDWIDTH_WIDEBAND,  # 8 kHz
    "superwideband": opuslib.BANDWIDTH_SUPERWIDEBAND,  # 12 kHz
    "fullband": opuslib.BANDWIDTH_FULLBAND,  # 20 kHz
}
_PTIMES = (10, 20, 40, 60, 80, 100, 120)  # RFC 6716 §2.1.4 frame sizes (and multi-frame packets)
_MAX_PACKET = 4000  # libopus's recommended max_data_bytes (1275 bytes × 3 + headers)
_MAX_DURATION_MS = 120  # RFC 6716 §3.2.5: at most 120 ms per packet


def _opus_call(what: str, func: Callable[..., object], *args: object) -> None:
    try:
        func(*args)
    except opuslib.OpusError as exc:
        raise MediaError(f"libopus rejected {what}: {exc}") from exc


@register_codec
class OpusCodec(AudioCodec):
    """Mono Opus, 20 ms frames at 48 kHz PCM by default, dynamic payload type.

    Options: ``sample_rate`` (PCM rate), ``bitrate`` (bit/s, 6000–510000, None = libopus's
    choice), ``complexity`` (0–10, None = libopus default), ``fec`` (in-band FEC),
    ``packet_loss_perc`` (expected loss, which sizes the FEC; default 10 with FEC, else 0),
    ``dtx`` (discontinuous transmission), ``bandwidth`` (maximum audio bandwidth name, see
    :data:`BANDWIDTHS`), ``application`` ("voip", "audio" or "restricted_lowdelay").
    """

    name: ClassVar[str] = "opus"
    clock_rate: ClassVar[int] = 48000  # RFC 7587 §4.1
    sdp_channels: ClassVar[int] = 2  # RFC 7587 §7: always "opus/48000/2"
    has_fec: ClassVar[bool] = True

    def __init__(
        self,
        *,
        ptime_ms: int = 20,
        sample_rate: int = 48000,
        bitrate: int | None = 32000,
        complexity: int | None = None,
        fec: bool = False,
        packet_loss_perc: int | None = None,
        dtx: bool = False,
        bandwidth: str | None = None,
        application: str = "voip",
    ) -> None:
        if sample_rate not in PCM_RATES:
            raise ValueError(f"Opus PCM rate must be one of {PCM_RATES}, not {sample_rate}")
        self.sample_rate = sample_rate
        self.ptime_ms = check_ptime(ptime_ms, sample_rate, _PTIMES)
        if bitrate is not None and not 6000 <= bitrate <= 510000:
            raise ValueError(f"Opus bitrate {bitrate} outside 6000..510000")
        if complexity is not None and not 0 <= complexity <= 10:
            raise ValueError(f"Opus complexity {complexity} outside 0..10")
        if packet_loss_perc is None:
            packet_loss_perc = 10 if fec else 0
        if not 0 <= packet_loss_perc <= 100:
            raise ValueError(f"packet_loss_perc {packet_loss_perc} outside 0..100")
        if bandwidth is not None and bandwidth not in BANDWIDTHS:
            raise ValueError(f"Opus bandwidth {bandwidth!r} not one of {sorted(BANDWIDTHS)}")
        if application not in opuslib.APPLICATION_TYPES_MAP:
            raise ValueError(f"Opus application {application!r} not one of {sorted(opuslib.APPLICATION_TYPES_MAP)}")
        self.bitrate, self.complexity, self.fec, self.dtx = bitrate, complexity, bool(fec), bool(dtx)
        self.packet_loss_perc, self.bandwidth, self.application = packet_loss_perc, bandwidth, application
        self._frame = self.frame_samples
        self._max_samples = sample_rate * _MAX_DURATION_MS // 1000
        self._pcm = np.empty(self._max_samples, np.int16)  # decode target, reused
        self._pcm_ptr = self._pcm.ctypes.data_as(opuslib.api.c_int16_pointer)
        self._out = ctypes.create_string_buffer(_MAX_PACKET)
        self.stats: Counter[str] = Counter()
        self._open()

    def _open(self) -> None:
        try:
            self._encoder = opuslib.Encoder(self.sample_rate, 1, self.application)
            self._decoder = opuslib.Decoder(self.sample_rate, 1)
        except opuslib.OpusError as exc:
            raise MediaError(f"libopus could not create a codec: {exc}") from exc
        st = self._encoder.encoder_state
        ctl = _enc.encoder_ctl
        if self.bitrate is not None:
            _opus_call("bitrate", ctl, st, _ctl.set_bitrate, self.bitrate)
        if self.complexity is not None:
            _opus_call("complexity", ctl, st, _ctl.set_complexity, self.complexity)
        _opus_call("inband FEC", ctl, st, _ctl.set_inband_fec, int(self.fec))
        _opus_call("packet loss", ctl, st, _ctl.set_packet_loss_perc, self.packet_loss_perc)
        _opus_call("DTX", ctl, st, _ctl.set_dtx, int(self.dtx))
        if self.bandwidth is not None:
            _opus_call("bandwidth", ctl, st, _ctl.set_max_bandwidth, BANDWIDTHS[self.bandwidth])
        self._last_len = self._frame

    @property
    def lookahead(self) -> int:
        """The encoder's algorithmic delay, in PCM samples (OPUS_GET_LOOKAHEAD)."""
        return int(_enc.encoder_ctl(self._encoder.encoder_state, _ctl.get_lookahead))

    @property
    def effective_complexity(self) -> int:
        return int(_enc.encoder_ctl(self._encoder.encoder_state, _ctl.get_complexity))

    @staticmethod
    def is_dtx(payload: bytes) -> bool:
        """True for a DTX packet that need not be sent (libopus: 2 bytes or fewer)."""
        return len(payload) <= 2

    def encode(self, pcm: np.ndarray) -> bytes:
        check_frame(pcm, self._frame)
        pcm = np.ascontiguousarray(pcm)
        n = _enc.libopus_encode(self._encoder.encoder_state, pcm.ctypes.data_as(opuslib.api.c_int16_pointer),
                                self._frame, self._out, _MAX_PACKET)
        if n < 0:
            raise MediaError(f"opus_encode failed ({n})")
        return self._out.raw[:n]

    def _decode(self, payload: bytes | None, samples: int, fec: int) -> np.ndarray:
        n = _dec.libopus_decode(self._decoder.decoder_state, payload, len(payload) if payload else 0,
                                self._pcm_ptr, samples, fec)
        if n < 0:
            self.stats["corrupt"] += 1
            what = "invalid packet" if n == opuslib.INVALID_PACKET else "error"
            raise CodecError(f"opus_decode failed ({n}): {what}")
        return self._pcm[:n].copy()

    def decode(self, payload: bytes) -> np.ndarray:
        if not payload:  # libopus would take an empty payload as "conceal"
            self.stats["corrupt"] += 1
            raise CodecError("empty opus payload")
        pcm = self._decode(payload, self._max_samples, 0)
        self._last_len = pcm.shape[0]
        return pcm

    def _lost_samples(self, samples: int | None) -> int:
        n = samples or self._last_len
        if (n * 400) % self.sample_rate or n > self._max_samples:  # PLC in 2.5 ms steps
            raise ValueError(f"cannot conceal {n} samples at {self.sample_rate} Hz")
        return n

    def conceal(self, samples: int | None = None) -> np.ndarray:
        self.stats["concealed"] += 1
        return self._decode(None, self._lost_samples(samples), 0)

    def decode_fec(self, next_payload: bytes) -> np.ndarray:
        if not next_payload:
            return self.conceal()
        self.stats["fec"] += 1
        return self._decode(next_payload, self._lost_samples(None), 1)

    def reset(self) -> None:
        self._open()
