"""Homeline's audio engine, shared by the server and the softphone: RTP/RTCP, codecs,
jitter buffer, DTMF, prompts, recording, mixing and quality metrics."""

from media.errors import MalformedPacket, MediaError

__all__ = ["MediaError", "MalformedPacket"]
