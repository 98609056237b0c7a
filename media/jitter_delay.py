"""The jitter buffer's playout delay: network statistics, target, and when to move toward it.

:class:`DelayEstimator` turns arrivals into statistics; :class:`DelayController` turns those into
a target delay and tells :class:`media.jitter.JitterBuffer` when to drop or insert a frame.

Every packet gives one *transit* sample, ``arrival - timestamp / clock_rate`` (RFC 3550 §6.4.1,
A.8): a constant unknown offset (the two clocks) plus the one-way network delay. Differences of
transits are what matter:

- the **base** is the smallest transit over the last ``base_window`` seconds — the fastest
  packets, the path's propagation delay. WebRTC NetEq measures its "relative arrival delay"
  against the same kind of reference (the fastest packet of a 2-second history, ``kMaxHistoryMs``
  in ``modules/audio_coding/neteq/delay_manager.cc``). A window rather than an all-time minimum
  keeps up with clock drift (the transit of a slower sender grows ~1 ms per second at 0.1 %)
  and with path changes; the price is a lag of at most ``base_window × drift``.
- the **quantile** of the transits over the last ``window`` seconds is the transit that a
  playout point must exceed for that fraction of packets to arrive in time. Its distance to the
  base is the jitter allowance (NetEq's delay histogram quantile: 0.95 in older releases,
  0.97 — our default — in later ones).
- **jitter** is the RFC 3550 §A.8 interarrival jitter, J += (|D| - J) / 16: a figure
  comparable with what RTCP reports carry, for stats only.

Windows run on *talk time*: the arrival clock, except that a gap between two arrivals counts
for at most ``max_gap`` seconds. A silence period (DTX) or an outage therefore does not age the
history away — after it, the first packets are judged against what the path did before, as
NetEq's packet-counted histogram does. Sans-IO: arrival times come from the caller.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import deque

from media.errors import MediaError

__all__ = ["DelayController", "DelayEstimator"]

log = logging.getLogger(__name__)


class DelayEstimator:
    """Sliding-window transit statistics: :attr:`base`, :meth:`quantile`, :attr:`jitter`.

    All values are in seconds. ``update`` costs O(log n) plus a list insertion over at most the
    packets of one ``window`` (150 at 50 packets/s and 3 s).
    """

    def __init__(self, clock_rate: int, *, window: float = 3.0, base_window: float = 2.0,
                 max_gap: float = 0.25) -> None:
        if clock_rate <= 0 or window <= 0 or base_window <= 0 or max_gap <= 0:
            raise ValueError("clock_rate, windows and max_gap must be positive")
        self.clock_rate = clock_rate
        self.window = window
        self.base_window = base_window
        self.max_gap = max_gap
        self._order: deque[tuple[float, float]] = deque()  # (talk time, transit), arrival order
        self._sorted: list[float] = []  # the same transits, sorted, for the quantile
        self._mins: deque[tuple[float, float]] = deque()  # monotonic: increasing transit
        self._latest: float | None = None  # latest arrival
        self._talk = 0.0  # talk time of the latest arrival
        self._last: tuple[float, int] | None = None  # (arrival, ext_ts) for the §A.8 jitter
        self._jitter_ts = 0.0

    def reset(self) -> None:
        self._order.clear()
        self._sorted.clear()
        self._mins.clear()
        self._latest = None
        self._talk = 0.0
        self._last = None
        self._jitter_ts = 0.0

    @property
    def count(self) -> int:
        """Samples in the quantile window."""
        return len(self._order)

    def update(self, arrival: float, ext_ts: int) -> float:
        """Record one packet (``ext_ts`` is its unwrapped RTP timestamp); return its transit."""
        transit = arrival - ext_ts / self.clock_rate
        if self._last is not None:  # RFC 3550 §A.8, in timestamp units
            d = (arrival - self._last[0]) * self.clock_rate - (ext_ts - self._last[1])
            self._jitter_ts += (abs(d) - self._jitter_ts) / 16.0
        self._last = (arrival, ext_ts)
        if self._latest is not None and arrival > self._latest:
            self._talk += min(arrival - self._latest, self.max_gap)
        if self._latest is None or arrival > self._latest:
            self._latest = arrival
        talk = self._talk

        self._order.append((talk, transit))
        bisect.insort(self._sorted, transit)
        horizon = talk - self.window
        while self._order[0][0] < horizon:
            _, old = self._order.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]

        while self._mins and self._mins[-1][1] >= transit:
            self._mins.pop()
        self._mins.append((talk, transit))
        horizon = talk - self.base_window
        while self._mins[0][0] < horizon:
            self._mins.popleft()
        return transit

    @property
    def base(self) -> float | None:
        """The smallest transit of the last ``base_window`` seconds (None before any packet)."""
        return self._mins[0][1] if self._mins else None

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1, nearest rank) of the transits of the last ``window`` seconds."""
        if not self._sorted:
            return None
        n = len(self._sorted)
        return self._sorted[min(n - 1, max(0, math.ceil(q * n) - 1))]

    @property
    def jitter(self) -> float:
        """RFC 3550 interarrival jitter, seconds."""
        return self._jitter_ts / self.clock_rate


class DelayController:
    """Target and current playout delay, and the decision to move one toward the other.

    Seconds throughout. The current delay is how far behind the fastest packets the playout point
    runs: ``now − media_time − base``, where ``media_time`` is the playout point's timestamp over
    the clock rate. The target is ``clamp(quantile − base + margin, min_delay, max_delay)``; during
    the first ``warmup`` packets of a stream it is at least the carried-over one. The band the
    buffer keeps the delay in is ``[target, target + one packet + tolerance)``.
    """

    def __init__(self, clock_rate: int, *, ptime: float, min_delay: float, max_delay: float, margin: float,
                 quantile: float, window: float, base_window: float, warmup: int, tolerance: float,
                 patience: int, hold: int, initial: float) -> None:
        self.estimator = DelayEstimator(clock_rate, window=window, base_window=base_window)
        self.ptime = ptime
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.margin = margin
        self.quantile = quantile
        self.warmup = warmup
        self.tolerance = tolerance
        self.patience = patience
        self.hold = hold
        self.target = initial
        self.delay = 0.0
        self._carry = initial
        self._above = self._below = 0  # consecutive ticks above the band / below the target

    def reset(self, carry: bool) -> None:
        """A new stream: forget the network; with ``carry``, start from the current target."""
        if carry:
            self._carry = self.target
        self.estimator.reset()
        self._above = self._below = 0

    def observe(self, arrival: float, ext_ts: int) -> None:
        self.estimator.update(arrival, ext_ts)

    def measure(self, now: float, media_time: float) -> float:
        """Refresh target and current delay for the playout point at ``media_time``; return
        current − target."""
        base = self.estimator.base
        if base is None:  # the buffer measures only once a packet is in
            raise MediaError("jitter delay: no packet observed yet")
        quantile = self.estimator.quantile(self.quantile)
        target = quantile - base + self.margin if quantile is not None else 0.0
        if self.estimator.count < self.warmup:
            target = max(target, self._carry)
        self.target = min(max(target, self.min_delay), self.max_delay)
        self.delay = now - media_time - base
        return self.delay - self.target

    def decide(self, err: float, span: float, hint: bool) -> str | None:
        """Move now? ``"drop"`` (a packet of ``span`` seconds), ``"insert"`` (a frame) or None.

        At once on a silence ``hint`` or below ``min_delay``; otherwise after ``patience`` ticks
        off target, or ``hold`` ticks when off by a frame or more (two frames above the target).
        """
        high = err >= span + self.tolerance
        self._above = self._above + 1 if high else 0
        self._below = self._below + 1 if err < 0 else 0
        if high:
            wait = self.hold if err >= span + self.ptime + self.tolerance else self.patience
            return "drop" if hint or self._above >= wait else None
        if err < 0:
            if self.delay < self.min_delay:
                wait = 1
            elif err < -self.ptime:
                wait = self.hold
            else:
                wait = self.patience
            return "insert" if hint or self._below >= wait else None
        return None

    def moved(self, seconds: float) -> None:
        """The playout point moved against the clock: +``seconds`` of delay (insert), − (drop)."""
        self.delay += seconds
        self._above = self._below = 0
