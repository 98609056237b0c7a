"""A low-delay audio jitter buffer for aiortc's receivers (the agent's WebRTC leg, both ends).

aiortc's audio receiver (1.x) builds ``JitterBuffer(capacity=16, prefetch=4)``: a frame goes to
the decoder only once four more frames have arrived behind it — 80 ms of delay on every
packet — and a lost packet blocks every frame behind it until 16 are queued, then they all go
at once (320 ms of silence, then a burst; aiortc issue #543). Our media path already has its
own cushion behind the decoder (the server's FIFO to the caller, the softphone's adaptive
playout buffer), so the receiver only has to put packets back in order:

* a frame goes as soon as the next one has begun — aiortc knows an audio frame is whole only
  then — which is 20 ms instead of 80 ms;
* a hole is given up (counted lost) as soon as the packet after it arrives. aiortc hands the
  decoder at most one frame per arriving packet, so any frame held back behind a hole would
  stay queued for good (20 ms more delay for the rest of the call); a packet overtaken by
  the next one is rare on one path, and costs 20 ms of audio, concealed behind.

:func:`use_low_delay_jitter_buffer` swaps it into a transceiver's receiver. aiortc keeps the
buffer in a private attribute; if that ever changes, the receiver keeps aiortc's own buffer and
a warning is logged (the tests assert the swap, so an aiortc upgrade that breaks it fails them).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from aiortc.jitterbuffer import JitterBuffer, JitterFrame

__all__ = ["LowDelayJitterBuffer", "use_low_delay_jitter_buffer", "SKIP_AFTER"]

log = logging.getLogger(__name__)

SKIP_AFTER = 1  # packets behind a hole before it is given up
_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"


class LowDelayJitterBuffer(JitterBuffer):
    """aiortc's ``JitterBuffer`` interface (``add`` → (pli, frame)), for audio: prefetch 1 and
    holes given up once :data:`SKIP_AFTER` packets are behind. ``stats`` counts ``skipped``."""

    def __init__(self, capacity: int = 16, skip_after: int = SKIP_AFTER) -> None:
        super().__init__(capacity=capacity, prefetch=1, is_video=False)
        self.skip_after = skip_after
        self.stats: Counter[str] = Counter()

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        frame = super()._remove_frame(sequence_number)
        if frame is not None or self._origin is None:
            return frame
        slots = [self._packets[(self._origin + i) % self._capacity] for i in range(self._capacity)]
        hole = next((i for i, p in enumerate(slots) if p is None), None)
        if hole is None:
            return None
        behind = [i for i in range(hole + 1, self._capacity) if slots[i] is not None]
        if len(behind) < self.skip_after:
            return None
        # give the hole up: the frame before it is whole (a packet of another frame is here)
        head = [p for p in slots[:hole] if p is not None]
        self.remove(behind[0])
        self.stats["skipped"] += behind[0] - hole
        log.debug("jitter buffer: gave up %d packet(s) before %d", behind[0] - hole, self._origin)
        if not head:
            return super()._remove_frame(sequence_number)
        return JitterFrame(data=b"".join(p._data for p in head), timestamp=head[0].timestamp)  # type: ignore[attr-defined]


def use_low_delay_jitter_buffer(receiver: Any) -> LowDelayJitterBuffer | None:
    """Give an audio ``RTCRtpReceiver`` the low-delay buffer; None if aiortc's layout changed."""
    current = getattr(receiver, _ATTRIBUTE, None)
    if not isinstance(current, JitterBuffer) or getattr(current, "_is_video", False):
        log.warning("aiortc's receiver has no audio jitter buffer where expected: keeping its own (80 ms)")
        return None
    buffer = LowDelayJitterBuffer(capacity=current.capacity)
    setattr(receiver, _ATTRIBUTE, buffer)
    return buffer
