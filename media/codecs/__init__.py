"""Audio codecs by SDP encoding name: PCMU, PCMA (G.711), G722 and opus.

    codec = make_codec("opus", fec=True)       # or make_codec("PCMU", ptime_ms=30)
    payload = codec.encode(frame)              # one int16 frame -> one RTP payload
    pcm = codec.decode(payload)                # CodecError if corrupt -> codec.conceal()

Importing this package registers every built-in codec in :data:`CODECS`.
"""

from __future__ import annotations

from media.codecs.base import CODECS, AudioCodec, CodecError, make_codec, register_codec
from media.codecs.g711 import PcmaCodec, PcmuCodec
from media.codecs.g722 import G722Codec
from media.codecs.opus import OpusCodec

__all__ = [
    "AudioCodec", "CodecError", "CODECS", "make_codec", "register_codec",
    "PcmuCodec", "PcmaCodec", "G722Codec", "OpusCodec",
]
