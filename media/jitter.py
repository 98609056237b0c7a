"""Adaptive jitter buffer driven by the playout clock, with packet-loss-concealment hooks.

Sans-IO: ``put(packet, now)`` on each arrival, ``get(now)`` whenever the media clock needs the
next piece of audio. ``get`` always returns exactly one :class:`PlayoutFrame` and never waits,
stalls or bursts (aiortc's fixed 16-slot buffer stalls on one loss and then bursts, aiortc
issue #543; this design shares nothing with it):

- ``"audio"``: play ``packet`` (the caller decodes the opaque payload);
- ``"conceal"``: nothing to play — run the codec's PLC for ``samples``; reason ``"loss"``: a
  packet is missing, ``"insert"``: a frame added to grow the delay (PLC, or time-stretch);
- ``"silence"``: before the first packet, while prefilling, in DTX/comfort-noise periods and
  after ``conceal_max_ms`` of PLC: play comfort noise or zeros.

**Timeline.** ``playout_ts`` (the unwrapped RTP timestamp to play next) advances by each
frame's span on schedule. A missing packet is concealed exactly once and the timeline moves
on; if the packet turns up afterwards it is *late* and dropped. Only two things move the
playout point against the clock: an inserted frame holds it (delay +1 frame) and a packet
dropped to catch up skips it (delay −1 packet). Both move in whole frames: our clock ticks on
one grid and the packets sit on the far end's, so any finer step would be undone at the next
packet.

**Unit of playout: the packet's timestamp span.** One ``get`` returns one whole packet with
``samples`` = its span: the duration given to ``put`` (the codec knows it: G.711 is one sample
per byte, Opus says it in its TOC), else the timestamp step to the next packet, else the far
end's ptime learned from consecutive packets, else ``remote_ptime_ms`` (SDP ``a=ptime``), else
our ``ptime_ms``. When both ends use the same ptime (the usual 20 ms) that is one ``get`` per
tick. When they differ (a trunk sending 30 or 60 ms, or 10 ms) the caller decodes into a PCM
FIFO and calls ``get`` whenever it holds less than one tick, passing ``pending`` = the samples
handed out and not yet played, which keeps the delay measurement exact (tested at 10/30/60 ms).

**Delay.** Each packet's transit (arrival − timestamp/clock rate, RFC 3550 §6.4.1) feeds a
:class:`~media.jitter_delay.DelayEstimator`: the base (fastest transit of the last 2 s of
talk) and the ``quantile`` of the transits of the last 3 s, as WebRTC NetEq's delay manager does
with its histogram. The target is ``clamp(quantile − base + margin, min_delay, max_delay)``; the
current delay is how far behind the fastest packets the playout point runs,
``now − playout_ts/clock_rate − base``. The buffer keeps it in ``[target, target + one packet]``
(plus ``tolerance_ms``):

- below target, it grows at the natural moments at once — an underflow or a missing packet
  (the conceal holds the timeline instead of moving on, so the packet may still make it), any
  silence frame (DTX, the caller's ``silent`` hint, a comfort-noise packet), a talkspurt that
  starts behind the playout point (its marker bit, RFC 3551 §4.1) — and below ``min_delay_ms``
  at once; otherwise after ``patience_frames`` ticks (``hold_frames`` if a frame or more below)
  with an inserted conceal;
- above the band, it drops a packet at once on a silence hint or comfort noise, skips frames
  of silence in DTX, otherwise after ``patience_frames`` ticks (``hold_frames`` if two frames or
  more above, e.g. after a delay spike), one packet each time.

Clock drift (±0.1 % is 1 ms/s) thus becomes one insert or drop every ~20 s; the delay neither
creeps nor underflows. DTX gaps (the timestamp jumps, the sequence number does not, the next
packet has the marker bit, RFC 3551 §4.1) play silence and are not losses.

**Resync.** A packet from a new SSRC, a sequence jump beyond RFC 3550 §A.1's MAX_DROPOUT or
MAX_MISORDER, or a timestamp far from the playout point is held; if the next packet continues it
(two sequential packets, the §A.1 probation) the stream resets and both are buffered with their
arrival times, otherwise it was a stray and is dropped. Stragglers from the SSRC just replaced
are dropped as stale for ``stale_ms``; later, that SSRC may come back (hold, then resume). The
target carries over a resync. A codec or clock-rate change needs a new buffer.

Odd network input is never raised: it is counted in :attr:`JitterBuffer.stats`. A state-table
miss is our bug and raises :class:`~media.errors.MediaError`.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

from media.errors import MediaError
from media.jitter_delay import DelayController
from media.rtp import RtpPacket, seq_diff, ts_diff

__all__ = ["JitterBuffer", "JitterConfig", "PlayoutFrame"]

log = logging.getLogger(__name__)

FrameKind = Literal["audio", "conceal", "silence"]


@dataclass(frozen=True, slots=True)
class PlayoutFrame:
    """What to play for one ``get``. ``timestamp``/``sequence`` are wire values (32/16 bits)."""

    kind: FrameKind
    timestamp: int  # RTP timestamp of the first sample this frame stands for
    samples: int  # timeline duration, clock_rate units
    sequence: int | None = None  # the packet's, or the missing one's for a "loss" conceal
    packet: RtpPacket | None = None  # for "audio"
    reason: str = ""  # packet, loss, insert, dtx, prefill, idle

    @property
    def payload(self) -> bytes:
        return self.packet.payload if self.packet is not None else b""


@dataclass(frozen=True, slots=True)
class JitterConfig:
    """Tuning of one buffer; the defaults suit 20 ms voice over the public Internet."""

    clock_rate: int = 8000
    ptime_ms: float = 20.0  # our frame period
    remote_ptime_ms: float | None = None  # the far end's a=ptime (RFC 4566): first guess of a span
    min_delay_ms: float = 20.0
    max_delay_ms: float = 200.0
    initial_delay_ms: float | None = None  # target until the estimator warms up; None = min
    quantile: float = 0.97  # fraction of packets that should arrive in time
    margin_ms: float = 10.0
    window_s: float = 3.0  # quantile window
    base_window_s: float = 2.0  # fastest-transit window
    warmup_packets: int = 50
    tolerance_ms: float = 1.0  # slack above the band before dropping
    patience_frames: int = 50  # ticks to wait for a silence point before a speech adjustment
    hold_frames: int = 5  # ticks before a speech adjustment when two or more frames off
    conceal_max_ms: float = 300.0  # continuous PLC before declaring silence
    loss_hold_below_ms: float = 0.0  # below target by more than this at a missing packet: hold the timeline (+1 frame)
    max_span_ms: float = 120.0  # longest packet (Opus: 120 ms)
    future_ms: float = 1000.0  # beyond max_delay ahead of the playout point: out of window
    past_ms: float = 3000.0  # further behind the playout point: out of window
    max_dropout: int = 3000  # RFC 3550 §A.1
    max_misorder: int = 100
    max_packets: int = 512
    stale_ms: float = 1000.0  # packets of a replaced SSRC are stragglers this long
    cn_payload_types: frozenset[int] = field(default_factory=lambda: frozenset({13}))  # RFC 3389

    def __post_init__(self) -> None:
        if self.clock_rate <= 0 or self.ptime_ms <= 0 or self.clock_rate * self.ptime_ms % 1000:
            raise ValueError("clock_rate × ptime_ms must be a whole number of samples")
        if not 0 <= self.min_delay_ms <= self.max_delay_ms:
            raise ValueError("need 0 <= min_delay_ms <= max_delay_ms")
        if not 0 < self.quantile <= 1 or self.window_s <= 0 or self.base_window_s <= 0:
            raise ValueError("quantile must be in (0, 1] and windows positive")
        if min(self.patience_frames, self.hold_frames, self.max_packets) < 1:
            raise ValueError("patience_frames, hold_frames and max_packets must be >= 1")

    @property
    def frame_ts(self) -> int:
        return int(self.clock_rate * self.ptime_ms // 1000)


class _Entry:
    """A buffered packet, with its unwrapped sequence number and timestamp."""

    __slots__ = ("ext_seq", "ext_ts", "packet", "samples")

    def __init__(self, ext_seq: int, ext_ts: int, packet: RtpPacket, samples: int | None) -> None:
        self.ext_seq = ext_seq
        self.ext_ts = ext_ts
        self.packet = packet
        self.samples = samples


class _SeqSet:
    """A set of the most recent ``size`` sequence numbers added."""

    def __init__(self, size: int) -> None:
        self._set: set[int] = set()
        self._order: deque[int] = deque()
        self._size = size

    def add(self, seq: int) -> None:
        if seq in self._set:
            return
        self._set.add(seq)
        self._order.append(seq)
        if len(self._order) > self._size:
            self._set.discard(self._order.popleft())

    def discard(self, seq: int) -> bool:
        if seq in self._set:
            self._set.remove(seq)
            return True
        return False

    def __contains__(self, seq: int) -> bool:
        return seq in self._set


class JitterBuffer:
    """One received stream's adaptive jitter buffer (see the module docstring).

    ``stats`` counts: received, played, concealed (loss PLC frames), inserted, dropped_catchup,
    silence, late, lost (missing at playout and not arrived since), duplicate, reordered,
    resync, jump (packets held for probation: a new SSRC, a jump), stale_ssrc, flushed (buffered
    packets discarded by a resync), overflow (``max_packets`` reached).
    """

    TABLE: ClassVar[dict[tuple[str, str], str]] = {
        ("idle", "packet"): "_first_packet",
        ("prefill", "packet"): "_add_packet",
        ("playing", "packet"): "_add_packet",
        ("silent", "packet"): "_add_packet",
        ("idle", "tick"): "_tick_idle",
        ("prefill", "tick"): "_tick_prefill",
        ("playing", "due"): "_tick_due",
        ("playing", "gap"): "_tick_gap",
        ("playing", "dtx"): "_tick_dtx",
        ("playing", "empty"): "_tick_empty",
        ("silent", "due"): "_tick_due",
        ("silent", "wait"): "_tick_silent",
    }

    def __init__(self, config: JitterConfig | None = None, **overrides: Any) -> None:
        cfg = config or JitterConfig()
        self.cfg = replace(cfg, **overrides) if overrides else cfg
        c = self.cfg
        self.frame_ts = c.frame_ts
        self._f = c.ptime_ms / 1000.0
        self._rate = float(c.clock_rate)
        self._max = c.max_delay_ms / 1000.0
        self._tol = c.tolerance_ms / 1000.0
        self._hold_below = c.loss_hold_below_ms / 1000.0
        self._max_span = int(c.clock_rate * c.max_span_ms / 1000)
        self.stats: Counter[str] = Counter()
        self._ctl = DelayController(
            c.clock_rate, ptime=self._f, min_delay=c.min_delay_ms / 1000.0, max_delay=self._max,
            margin=c.margin_ms / 1000.0, quantile=c.quantile, window=c.window_s, base_window=c.base_window_s,
            warmup=c.warmup_packets, tolerance=self._tol, patience=c.patience_frames, hold=c.hold_frames,
            initial=(c.min_delay_ms if c.initial_delay_ms is None else c.initial_delay_ms) / 1000.0)
        self._retired: dict[int, float] = {}  # replaced SSRC -> when
        self._ssrc: int | None = None
        self._reset_stream()

    def _reset_stream(self) -> None:
        self.state = "idle"
        self._buf: list[_Entry] = []
        self._index: set[int] = set()
        self._history = _SeqSet(1024)  # played, dropped or late: a second copy is a duplicate
        self._lost = _SeqSet(1024)
        self._late_ahead: set[int] = set()  # arrived late, not yet passed by the playout point
        self._max_seq = 0
        self._ref_ts = 0
        self._playout_ts = 0
        self._last_seq: int | None = None
        self._next_seq = 0
        rp = self.cfg.remote_ptime_ms
        self._span = self.frame_ts if not rp else max(1, round(self.cfg.clock_rate * rp / 1000))
        self._span_known = bool(rp)  # from SDP, or seen between consecutive packets
        self._step = 0
        self._probation: tuple[RtpPacket, float, int | None] | None = None
        self._conceal_run = 0
        self._hint = False
        self._last_cn = False
        self._pending = 0

    # -- public API ----------------------------------------------------------------------

    def put(self, packet: RtpPacket, now: float, samples: int | None = None) -> None:
        """A packet arrived at ``now``. ``samples``: its duration if the codec knows it."""
        self.stats["received"] += 1
        samples = samples if samples and samples > 0 else None
        if self._ssrc is not None and packet.ssrc != self._ssrc:
            if now - self._retired.get(packet.ssrc, -math.inf) < self.cfg.stale_ms / 1000.0:
                self.stats["stale_ssrc"] += 1
            else:
                self._out_of_window(now, packet, samples)
            return
        self._dispatch("packet", now, packet, samples)

    def get(self, now: float, *, silent: bool = False, pending: int = 0) -> PlayoutFrame:
        """The next frame to play at ``now``.

        ``silent``: the frame the caller played last was silence or low energy (VAD/energy), a
        good moment to drop or insert. ``pending``: samples handed out by earlier calls and not
        yet played (only when the far end's ptime differs from ours; see the module docstring).
        """
        self._hint = silent or self._last_cn
        self._pending = max(0, pending)
        frame: PlayoutFrame = self._dispatch(self._classify(), now)
        return frame

    def reset(self) -> None:
        """Forget the stream (e.g. on hold); stats are kept."""
        self._resync(count=False)

    @property
    def current_delay_ms(self) -> float:
        """Playout delay behind the fastest packets, measured at the last ``get``."""
        return self._ctl.delay * 1000.0

    @property
    def target_delay_ms(self) -> float:
        return self._ctl.target * 1000.0

    @property
    def jitter_ms(self) -> float:
        """RFC 3550 interarrival jitter estimate."""
        return self._ctl.estimator.jitter * 1000.0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    # -- dispatch ------------------------------------------------------------------------

    def _dispatch(self, event: str, now: float, *args: Any) -> Any:
        handler = self.TABLE.get((self.state, event))
        if handler is None:
            raise MediaError(f"jitter buffer: {event} not allowed in state {self.state}")
        return getattr(self, handler)(now, *args)

    def _classify(self) -> str:
        if self.state in ("idle", "prefill"):
            return "tick"
        while self._buf and self._buf[0].ext_ts < self._playout_ts:  # defensive: cannot play any more
            self._late(self._pop().ext_seq)
        if not self._buf:
            return "empty" if self.state == "playing" else "wait"
        head = self._buf[0]
        if head.ext_ts == self._playout_ts:
            return "due"
        if self.state == "silent":
            return "wait"
        if self._last_seq is None or head.ext_seq != self._last_seq + 1:
            return "gap"
        if head.packet.marker or self._span_known or head.ext_ts - self._playout_ts > self._max_span:
            return "dtx"
        # The far end's ptime is not known yet and the packet before was longer than we guessed.
        self._playout_ts = head.ext_ts
        return "due"

    # -- arrivals ------------------------------------------------------------------------

    def _first_packet(self, now: float, packet: RtpPacket, samples: int | None) -> None:
        self._ssrc = packet.ssrc
        self._max_seq = packet.sequence
        self._ref_ts = packet.timestamp
        self._ctl.observe(now, packet.timestamp)
        self._insert(_Entry(packet.sequence, packet.timestamp, packet, samples))
        self.state = "prefill"

    def _add_packet(self, now: float, packet: RtpPacket, samples: int | None) -> None:
        ext_seq = self._max_seq + seq_diff(packet.sequence, self._max_seq & 0xFFFF)
        ext_ts = self._ref_ts + ts_diff(packet.timestamp, self._ref_ts & 0xFFFFFFFF)
        dseq = ext_seq - self._max_seq
        if not -self.cfg.max_misorder <= dseq <= self.cfg.max_dropout or self._ts_out_of_window(ext_ts):
            self._out_of_window(now, packet, samples)
            return
        if ext_seq in self._index or ext_seq in self._history:
            self.stats["duplicate"] += 1
            return
        if dseq > 0:
            step = ext_ts - self._ref_ts
            if dseq == 1 and not packet.marker and 0 < step <= self._max_span:
                # The far end's ptime: the same step twice in a row (a DTX gap without its marker
                # bit is one odd step); until then, the last step is the best guess.
                if step == self._step or not self._span_known:
                    self._span, self._span_known = step, step == self._step
                self._step = step
            self._max_seq, self._ref_ts = ext_seq, ext_ts
        else:
            self.stats["reordered"] += 1
        self._ctl.observe(now, ext_ts)
        if self.state in ("playing", "silent") and ext_ts < self._playout_ts:
            if not self._rewind(packet, ext_seq, ext_ts):
                self._late(ext_seq)
                return
        if len(self._buf) >= self.cfg.max_packets:  # nobody pulls (or a flood): keep the newest
            self.stats["overflow"] += 1
            self._history.add(self._pop().ext_seq)
        self._insert(_Entry(ext_seq, ext_ts, packet, samples))

    def _rewind(self, packet: RtpPacket, ext_seq: int, ext_ts: int) -> bool:
        """A talkspurt starting behind the playout point during silence (RFC 3551 §4.1): move the
        playout point back to it rather than drop it — silence is free to stretch."""
        if not (self.state == "silent" and packet.marker and not self._buf and self._last_seq is not None
                and ext_seq > self._last_seq and self._playout_ts - ext_ts <= self._max * self._rate):
            return False
        frames = math.ceil((self._playout_ts - ext_ts) / self.frame_ts)
        self.stats["inserted"] += frames
        log.debug("jitter: talkspurt %d arrived %d samples behind, rewinding", ext_seq, self._playout_ts - ext_ts)
        self._playout_ts = ext_ts
        return True

    def _ts_out_of_window(self, ext_ts: int) -> bool:
        ref = self._playout_ts if self.state in ("playing", "silent") else self._ref_ts  # newest, in prefill
        d = (ext_ts - ref) / self._rate
        return d > self._max + self.cfg.future_ms / 1000.0 or d < -self.cfg.past_ms / 1000.0

    def _out_of_window(self, now: float, packet: RtpPacket, samples: int | None) -> None:
        """RFC 3550 §A.1: a jump is believed when the next packet continues it."""
        prev = self._probation
        if (prev is not None and prev[0].ssrc == packet.ssrc
                and packet.sequence == (prev[0].sequence + 1) & 0xFFFF
                and 0 <= ts_diff(packet.timestamp, prev[0].timestamp) <= self._rate):
            if self._ssrc is not None and packet.ssrc != self._ssrc:
                log.info("jitter: SSRC %08x replaces %08x, resync", packet.ssrc, self._ssrc)
                self._retired = {k: v for k, v in self._retired.items() if now - v < 60.0}
                self._retired[self._ssrc] = now
            else:
                log.info("jitter: stream %08x jumped to seq %d ts %d, resync", packet.ssrc, packet.sequence,
                         packet.timestamp)
            self._resync()
            self._dispatch("packet", prev[1], prev[0], prev[2])
            self._dispatch("packet", now, packet, samples)
            return
        self._probation = (packet, now, samples)
        self.stats["jump"] += 1

    def _late(self, ext_seq: int) -> None:
        self.stats["late"] += 1
        self._history.add(ext_seq)
        if self._last_seq is not None and ext_seq > self._last_seq:
            self._late_ahead.add(ext_seq)
        elif self._lost.discard(ext_seq):
            self.stats["lost"] -= 1  # counted lost when passed; it did arrive

    def _resync(self, count: bool = True) -> None:
        if count:
            self.stats["resync"] += 1
        if self._buf:
            self.stats["flushed"] += len(self._buf)
        self._ctl.reset(carry=self.state in ("playing", "silent"))
        self._ssrc = None
        self._reset_stream()

    def _insert(self, entry: _Entry) -> None:
        pos = len(self._buf)  # usually the end: scan back from it
        while pos and self._buf[pos - 1].ext_seq > entry.ext_seq:
            pos -= 1
        self._buf.insert(pos, entry)
        self._index.add(entry.ext_seq)

    def _pop(self) -> _Entry:
        entry = self._buf.pop(0)
        self._index.discard(entry.ext_seq)
        return entry

    # -- the playout clock ---------------------------------------------------------------

    def _update(self, now: float, ts: int) -> float:
        """Refresh target and current delay with the playout point at ``ts``; current − target (s)."""
        return self._ctl.measure(now, (ts - self._pending) / self._rate)

    def _decide(self, err: float, span: int) -> str | None:
        return self._ctl.decide(err, span / self._rate, self._hint)

    def _span_of(self, i: int) -> int:
        e = self._buf[i]
        if e.samples:
            return e.samples
        if i + 1 < len(self._buf):
            nxt = self._buf[i + 1]
            step = nxt.ext_ts - e.ext_ts
            if nxt.ext_seq == e.ext_seq + 1 and not nxt.packet.marker and 0 < step <= self._max_span:
                return step
        return self._span

    def _pass(self, entry: _Entry) -> None:
        """The playout point moves past ``entry`` (played or dropped): count the holes before it."""
        if self._last_seq is not None:
            for seq in range(self._last_seq + 1, entry.ext_seq):
                if seq in self._late_ahead:
                    self._late_ahead.discard(seq)
                else:
                    self.stats["lost"] += 1
                    self._lost.add(seq)
        if self._last_seq is None or entry.ext_seq > self._last_seq:
            self._last_seq = entry.ext_seq
        self._history.add(entry.ext_seq)

    def _frame(self, kind: FrameKind, reason: str, ts: int, samples: int, seq: int | None = None,
               packet: RtpPacket | None = None) -> PlayoutFrame:
        if kind == "audio":
            self.stats["played"] += 1
            self._conceal_run = 0
        elif kind == "conceal":
            self._conceal_run += 1
            self.stats["concealed" if reason == "loss" else "inserted"] += 1
        else:
            self.stats["silence"] += 1
            if reason == "insert":
                self.stats["inserted"] += 1
        if reason == "insert":  # the timeline holds: from now on the delay is one frame longer
            self._ctl.moved(samples / self._rate)
        return PlayoutFrame(kind, ts & 0xFFFFFFFF, samples, None if seq is None else seq & 0xFFFF, packet, reason)

    def _tick_idle(self, now: float) -> PlayoutFrame:
        return self._frame("silence", "idle", 0, self.frame_ts)

    def _tick_prefill(self, now: float) -> PlayoutFrame:
        head = self._buf[0]
        if self._update(now, head.ext_ts) < 0:
            return self._frame("silence", "prefill", head.ext_ts, self.frame_ts)
        # Started late (the caller began pulling long after the first packet): skip the backlog,
        # up to the packet before the newest one that has waited the target delay plus a frame.
        while len(self._buf) > 1 and self._update(now, self._buf[1].ext_ts) >= self._f:
            self._history.add(self._pop().ext_seq)
            self.stats["dropped_catchup"] += 1
        head = self._buf[0]
        self.state = "playing"
        self._playout_ts = head.ext_ts
        self._last_seq = head.ext_seq - 1
        return self._tick_due(now)

    def _tick_due(self, now: float) -> PlayoutFrame:
        self.state = "playing"
        span = self._span_of(0)
        err = self._update(now, self._playout_ts)
        action = self._decide(err, span)
        if action == "drop" and self._droppable(span):
            entry = self._pop()
            self._pass(entry)
            self._playout_ts = entry.ext_ts + span
            self.stats["dropped_catchup"] += 1
            self._ctl.moved(-span / self._rate)
            span = self._span_of(0)
        elif action == "insert":
            return self._frame("silence" if self._hint else "conceal", "insert", self._playout_ts, self.frame_ts)
        entry = self._pop()
        self._pass(entry)
        self._playout_ts = entry.ext_ts + span
        self._next_seq = entry.ext_seq + 1
        self._last_cn = entry.packet.payload_type in self.cfg.cn_payload_types
        return self._frame("audio", "packet", entry.ext_ts, span, entry.ext_seq, entry.packet)

    def _droppable(self, span: int) -> bool:
        """Only drop a packet whose successor is here and follows it without a gap."""
        if len(self._buf) < 2:
            return False
        head, nxt = self._buf[0], self._buf[1]
        return nxt.ext_seq == head.ext_seq + 1 and nxt.ext_ts == head.ext_ts + span

    def _conceal(self, samples: int) -> PlayoutFrame:
        ts = self._playout_ts
        self._playout_ts += samples
        seq = self._next_seq
        self._next_seq += 1
        return self._frame("conceal", "loss", ts, samples, seq)

    def _tick_gap(self, now: float) -> PlayoutFrame:
        """The next packet is missing but a later one is here: a loss (or a late packet)."""
        err = self._update(now, self._playout_ts)
        self._decide(err, self._span)
        if err < -self._hold_below:  # below target anyway: hold the timeline, the packet may still come
            return self._frame("silence" if self._hint else "conceal", "insert", self._playout_ts, self.frame_ts)
        return self._conceal(min(self._span, self._buf[0].ext_ts - self._playout_ts))

    def _tick_empty(self, now: float) -> PlayoutFrame:
        """Nothing buffered: a loss, a late packet or the start of a silence period."""
        err = self._update(now, self._playout_ts)
        self._decide(err, self._span)
        if self._hint or self._conceal_run * self._f >= self.cfg.conceal_max_ms / 1000.0:
            self.state = "silent"
            return self._tick_silent(now, updated=err)
        if err < -self._hold_below:
            return self._frame("conceal", "insert", self._playout_ts, self.frame_ts)
        return self._conceal(self._span)

    def _tick_dtx(self, now: float) -> PlayoutFrame:
        """The next packet follows without a sequence gap but later in time: DTX, not loss."""
        self.state = "silent"
        return self._tick_silent(now)

    def _tick_silent(self, now: float, updated: float | None = None) -> PlayoutFrame:
        """Silence: adjusting the delay is free, so do it at once — hold the playout point (insert)
        or skip whole frames of silence (drop) while one frame of silence plays. Whole frames,
        because the talkspurt's packets sit on the far end's grid and our clock ticks on ours:
        any finer step would be undone at the next packet."""
        err = self._update(now, self._playout_ts) if updated is None else updated
        move = self.frame_ts
        if err < 0:
            move = 0
        elif err >= self._f + self._tol:
            move += int((err - self._tol) // self._f) * self.frame_ts
        if self._buf:
            move = min(move, self._buf[0].ext_ts - self._playout_ts)
        if move < self.frame_ts:
            self.stats["inserted"] += 1
        elif move > self.frame_ts:
            self.stats["dropped_catchup"] += (move - self.frame_ts) // self.frame_ts
        self._ctl.moved((self.frame_ts - move) / self._rate)
        ts = self._playout_ts
        self._playout_ts += move
        return self._frame("silence", "dtx", ts, self.frame_ts)
