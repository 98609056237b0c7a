"""The one base error of the ``media`` package."""

from __future__ import annotations

__all__ = ["MediaError", "MalformedPacket"]


class MediaError(Exception):
    """Base of every error the ``media`` package raises on purpose."""


class MalformedPacket(MediaError):
    """Bytes from the network that are not a valid RTP/RTCP packet (dropped and counted)."""
