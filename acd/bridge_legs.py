"""Two call legs joined back to back: what one leg receives is what the other sends.

A :class:`LegBridge` gives each leg a media *source* (``source(received, now)``, see
:class:`acd.media_session.CallMedia`): :meth:`LegBridge.leg_a` for one leg and
:meth:`LegBridge.leg_b` for the other. Each call takes the frame that leg just played out of
its jitter buffer, passes it on to the other direction and returns what the other leg sent.
Both legs tick on the same media clock, so no thread and no lock is needed.

Each direction is a :class:`_Direction`: an optional steady stream resampler (PCMU at 8 kHz on
one leg, G.722 at 16 kHz on the other) and a small FIFO of samples that re-frames the
resampler's output to the frame size the far leg sends. The FIFO is bounded (a few frames):
the oldest samples are dropped when it is full, so delay never grows; a frame asked for
before enough audio arrived is silence. Both events are counted in :attr:`LegBridge.stats`.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from media.resample import Resampler

__all__ = ["LegBridge", "DEFAULT_MAX_DELAY_MS"]

log = logging.getLogger(__name__)

DEFAULT_MAX_DELAY_MS = 60  # per direction: three 20 ms frames at most, then the oldest go


class _Direction:
    """One way through the bridge: ``push`` the sending leg's frames, ``pull`` the receiving
    leg's frames (at its own rate and frame size)."""

    def __init__(self, name: str, in_rate: int, out_rate: int, max_delay_ms: int, stats: Counter[str]) -> None:
        self.name = name
        self.in_rate, self.out_rate = in_rate, out_rate
        # steady=True: 20 ms in gives 20 ms out; the default engine bursts (no good live)
        self.resampler = Resampler(in_rate, out_rate, steady=True) if in_rate != out_rate else None
        self.max_samples = max(1, out_rate * max_delay_ms // 1000)
        self.stats = stats
        self._buf = np.zeros(0, dtype=np.int16)

    @property
    def buffered(self) -> int:
        """Samples waiting for the receiving leg (at its rate)."""
        return len(self._buf)

    def push(self, frame: np.ndarray) -> None:
        pcm = self.resampler.process(frame) if self.resampler is not None else frame
        if not len(pcm):
            return  # the resampler is still filling its filter
        self._buf = np.concatenate((self._buf, pcm)) if len(self._buf) else pcm.copy()
        excess = len(self._buf) - self.max_samples
        if excess > 0:  # the receiving leg fell behind: drop the oldest, keep the delay bounded
            self._buf = self._buf[excess:]
            self.stats[f"{self.name}_overflows"] += 1
            self.stats[f"{self.name}_dropped_samples"] += excess

    def pull(self, samples: int) -> np.ndarray:
        if len(self._buf) < samples:
            # not a whole frame yet: silence now, and the samples wait for the next tick
            self.stats[f"{self.name}_underruns"] += 1
            return np.zeros(samples, dtype=np.int16)
        out, self._buf = self._buf[:samples], self._buf[samples:]
        self.stats[f"{self.name}_frames"] += 1
        return out


class LegBridge:
    """Bridge leg A (``rate_a`` Hz) and leg B (``rate_b`` Hz) both ways.

    ``leg_a`` is leg A's source: it takes A's received frame (towards B) and returns what B
    sent, resampled to ``rate_a`` and cut to the size of A's frame; ``leg_b`` the same for B.
    After :meth:`close` both sources send silence.
    """

    def __init__(self, rate_a: int, rate_b: int, *, max_delay_ms: int = DEFAULT_MAX_DELAY_MS,
                 label: str = "") -> None:
        if max_delay_ms < 20:
            raise ValueError(f"max_delay_ms must be at least one 20 ms frame, not {max_delay_ms}")
        self.label = label
        self.rate_a, self.rate_b = rate_a, rate_b
        self.stats: Counter[str] = Counter()
        self.a_to_b = _Direction("a_to_b", rate_a, rate_b, max_delay_ms, self.stats)
        self.b_to_a = _Direction("b_to_a", rate_b, rate_a, max_delay_ms, self.stats)
        self.closed = False
        log.debug("bridge %s: %d Hz <-> %d Hz, at most %d ms buffered each way", label, rate_a, rate_b,
                  max_delay_ms)

    def leg_a(self, received: np.ndarray, now: float) -> np.ndarray:
        """Leg A's media source: A's audio goes to B; B's audio comes back."""
        return self._cross(self.a_to_b, self.b_to_a, received)

    def leg_b(self, received: np.ndarray, now: float) -> np.ndarray:
        """Leg B's media source: B's audio goes to A; A's audio comes back."""
        return self._cross(self.b_to_a, self.a_to_b, received)

    def _cross(self, outgoing: _Direction, incoming: _Direction, received: np.ndarray) -> np.ndarray:
        if self.closed:
            return np.zeros(len(received), dtype=np.int16)
        outgoing.push(received)
        # the leg sends a frame of the size it receives (its codec's frame at its rate)
        return incoming.pull(len(received))

    def dtmf(self, leg: str, digit: str) -> None:
        """A key pressed on ``leg`` while bridged: not passed on (in-band tones do cross)."""
        self.stats[f"dtmf_{leg}"] += 1
        log.info("bridge %s: DTMF %s from the %s ignored", self.label, digit, leg)

    def close(self) -> Counter[str]:
        """Stop passing audio; returns the counters (frames, underruns, drops per direction)."""
        if not self.closed:
            self.closed = True
            log.debug("bridge %s closed: %s", self.label, dict(self.stats))
        return self.stats
