"""DTMF out of band: RFC 4733 telephone-events over RTP, and SIP INFO relay bodies.

Sans-IO like the rest of ``media``:

- :class:`DtmfSender` takes digits and ``now`` and returns the RTP packets that are due; the
  audio sender shares its sequence numbers and timestamp clock through two callables and
  stops sending audio while :attr:`DtmfSender.audio_paused` is true (RFC 4733 §2.5.1.2).
- :class:`DtmfReceiver` takes parsed RTP packets and ``now`` and returns key-down/key-up
  events, one :class:`DtmfStart` and one :class:`DtmfEnd` per key press, whatever the loss,
  duplication and reordering; ``poll(now)`` ends a press whose packets stopped.
- :func:`parse_dtmf_relay` / :func:`build_dtmf_relay` handle ``application/dtmf-relay`` and
  ``application/dtmf`` INFO bodies.

In-band (audio tone) generation and detection live in :mod:`media.dtmf_inband`.
"""

from __future__ import annotations

import collections
import enum
import logging
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

from media.errors import MalformedPacket, MediaError
from media.rtp import RtpPacket, ts_diff

__all__ = [
    "DtmfEnd", "DtmfEvent", "DtmfParseError", "DtmfReceiver", "DtmfSender", "DtmfStart",
    "TelephoneEvent", "build_dtmf_relay", "digit_to_event", "event_to_digit", "parse_dtmf_relay",
    "parse_telephone_events",
]

log = logging.getLogger(__name__)

# RFC 4733 §3.2, Table 7: DTMF named events 0-15, plus flash (hook flash/register recall) 16.
# "R" for flash follows PJSIP's digit map.
DIGITS = "0123456789*#ABCDR"
FLASH = "R"
_EVENT_OF = {d: i for i, d in enumerate(DIGITS)}
MAX_SEGMENT = 0xFFFF  # the 16-bit duration field (§2.3.6); longer events are segmented (§2.5.1.3)
MIN_HELD_MS = 40  # a held key released before it was sent still lasts this long (Q.24 minimum)
_TS_MASK = 0xFFFFFFFF
_PAYLOAD = struct.Struct("!BBH")


class DtmfParseError(MediaError):
    """A DTMF body or digit that cannot be understood (SIP INFO relay, digit names)."""


def digit_to_event(digit: str) -> int:
    """'0'-'9', '*', '#', 'A'-'D' (any case) and 'R' (flash) → RFC 4733 event code 0-16."""
    code = _EVENT_OF.get(digit.upper()) if isinstance(digit, str) and len(digit) == 1 else None
    if code is None:
        raise DtmfParseError(f"not a DTMF digit: {digit!r}")
    return code


def event_to_digit(event: int) -> str:
    """RFC 4733 event code 0-16 → digit character; other codes raise :class:`DtmfParseError`."""
    if not 0 <= event < len(DIGITS):
        raise DtmfParseError(f"event {event} is not a DTMF event")
    return DIGITS[event]


# --------------------------------------------------------------------------------------------
# The payload (RFC 4733 §2.3)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One telephone-event payload block: event, E bit, volume (-dBm0), duration (ts units)."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 255:
            raise MediaError(f"event code {self.event} out of range 0-255")
        if not 0 <= self.volume <= 63:  # §2.3.5: 6 bits, 0 to -63 dBm0
            raise MediaError(f"volume {self.volume} out of range 0-63")
        if not 0 <= self.duration <= MAX_SEGMENT:  # §2.3.6
            raise MediaError(f"duration {self.duration} out of range 0-65535")

    def to_bytes(self) -> bytes:
        # §2.3: event(8) | E(1) R(1) volume(6) | duration(16); R is sent as zero (§2.3.4)
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)


def parse_telephone_events(payload: bytes) -> tuple[TelephoneEvent, ...]:
    """Parse a telephone-event payload: one 4-byte block, or several packed (§2.5.1.5).

    The R bit is ignored (§2.3.4). Raises :class:`MalformedPacket` on a bad length.
    """
    if not payload or len(payload) % 4:
        raise MalformedPacket(f"telephone-event payload of {len(payload)} bytes")
    out = []
    for offset in range(0, len(payload), 4):
        event, flags, duration = _PAYLOAD.unpack_from(payload, offset)
        out.append(TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration))
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Events reported to the application (shared with media.dtmf_inband)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DtmfStart:
    """Key-down: reported as soon as a press is seen, for low latency.

    ``start_ts`` is the RTP timestamp of the event start (rfc4733) or the sample index of the
    tone's start in the detector's input (inband).
    """

    digit: str
    start_ts: int
    source: str = "rfc4733"


@dataclass(frozen=True, slots=True)
class DtmfEnd:
    """Key-up: the same press ended, with its duration.

    ``end_seen`` is false when the end was inferred (timeout, a newer event, SSRC change)
    because every end packet was lost.
    """

    digit: str
    duration_ms: int
    start_ts: int
    source: str = "rfc4733"
    end_seen: bool = True


DtmfEvent = Union[DtmfStart, DtmfEnd]


# --------------------------------------------------------------------------------------------
# Sender (RFC 4733 §2.5.1)
# --------------------------------------------------------------------------------------------
class _Tx(enum.Enum):
    IDLE = "idle"
    SENDING = "sending"          # start and update packets
    SEGMENT_END = "segment-end"  # repeating the last packet of a long event's segment (§2.5.1.3)
    ENDING = "ending"            # repeating the E packet (§2.5.1.4)
    GAP = "gap"                  # waiting out the inter-digit pause before the next digit


@dataclass(slots=True)
class _Queued:
    code: int
    total: int | None  # timestamp units; None = until stop()
    volume: int
    since: float  # when start() was called


@dataclass(slots=True)
class _TxEvent:
    code: int
    volume: int
    t0: float
    ts0: int
    total: int | None
    claimed: int = 0     # cumulative duration announced so far
    segment: int = 0
    last: TelephoneEvent | None = None
    repeats: int = 0
    sent_first: bool = False


class DtmfSender:
    """Turns digits into RFC 4733 packets sharing the audio stream's SSRC, sequence and clock.

    ``next_seq()`` allocates the next sequence number of the audio stream and
    ``timestamp_at(t)`` gives the RTP timestamp the audio stream would put on media
    captured at time ``t``. While :attr:`audio_paused` is true the audio sender sends nothing:
    the event packets stand in for the audio (§2.5.1.2).

    Each update packet covers the interval it is sent for, like an audio packet: the packet
    due at ``t0 + k*interval`` announces a duration of ``(k+1)*interval`` (capped by the
    digit's length). The end packet (E bit) is sent ``end_repeats`` times, one interval
    apart (§2.5.1.4); all packets of one event carry the event's start timestamp (§2.3.1).
    """

    def __init__(self, payload_type: int, clock_rate: int, ssrc: int,
                 next_seq: Callable[[], int], timestamp_at: Callable[[float], int], *,
                 interval_ms: float = 50.0, gap_ms: float = 50.0, end_repeats: int = 3) -> None:
        if not 0 <= payload_type <= 127:
            raise MediaError(f"payload type {payload_type} out of range")
        if clock_rate <= 0 or interval_ms <= 0 or gap_ms < 0 or end_repeats < 1:
            raise MediaError("clock_rate and interval_ms must be positive, gap_ms >= 0, end_repeats >= 1")
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.ssrc = ssrc
        self._next_seq = next_seq
        self._timestamp_at = timestamp_at
        self.interval = interval_ms / 1000.0
        self._interval_ts = max(1, round(clock_rate * self.interval))
        self.gap = gap_ms / 1000.0
        self.end_repeats = end_repeats
        self.stats: collections.Counter[str] = collections.Counter()
        self._state = _Tx.IDLE
        self._queue: collections.deque[_Queued] = collections.deque()
        self._ev: _TxEvent | None = None
        self._due: float | None = None
        self._earliest = float("-inf")  # earliest start of the next digit (inter-digit gap)
        self._out: list[RtpPacket] = []

    # ---- public API -----------------------------------------------------------------------
    @property
    def audio_paused(self) -> bool:
        """True while an event is on the wire (including its end repeats): send no audio."""
        return self._state in (_Tx.SENDING, _Tx.SEGMENT_END, _Tx.ENDING)

    @property
    def busy(self) -> bool:
        """True while a digit is being sent or waits in the queue."""
        return self._state is not _Tx.IDLE

    @property
    def pending(self) -> int:
        """Digits queued behind the one being sent."""
        return len(self._queue)

    def start(self, digit: str, now: float, duration_ms: float | None = 100.0, volume: int = 10) -> None:
        """Queue ``digit``; ``duration_ms=None`` holds it until :meth:`stop` (a held key)."""
        code = digit_to_event(digit)
        if not 0 <= volume <= 63:
            raise MediaError(f"volume {volume} out of range 0-63")
        total = None
        if duration_ms is not None:
            if duration_ms <= 0:
                raise MediaError(f"duration {duration_ms} ms must be positive")
            total = max(1, round(duration_ms * self.clock_rate / 1000.0))
        self._queue.append(_Queued(code, total, volume, now))
        self._dispatch("start", now)

    def stop(self, now: float) -> None:
        """Release the held key (``start(..., duration_ms=None)``): if it is on the wire it ends
        at ``now`` and its end packets follow at once; if it still waits in the queue it will
        last as long as it was held (at least :data:`MIN_HELD_MS`). No held key: MediaError."""
        self._dispatch("stop", now)

    def poll(self, now: float) -> list[RtpPacket]:
        """Every packet due at or before ``now``, in sending order."""
        guard = 0
        while self._due is not None and self._due <= now + 1e-9:
            self._dispatch("due", self._due)
            guard += 1
            if guard > 100000:  # pragma: no cover - a bug, not an input
                raise MediaError("DTMF sender does not advance")
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`poll` next has something to send (None when idle)."""
        return self._due

    # ---- state table ----------------------------------------------------------------------
    def _dispatch(self, name: str, now: float) -> None:
        handler = self._TABLE.get((self._state, name))
        if handler is None:
            raise MediaError(f"DTMF sender: {name!r} not allowed in state {self._state.value}")
        handler(self, now)

    def _enqueued(self, now: float) -> None:
        pass  # the digit waits in the queue

    def _start_from_idle(self, now: float) -> None:
        t0 = max(now, self._earliest)
        if t0 > now:
            self._state, self._due = _Tx.GAP, t0
        else:
            self._begin(now)

    def _begin(self, t0: float) -> None:
        q = self._queue.popleft()
        self._ev = _TxEvent(q.code, q.volume, t0, self._timestamp_at(t0) & _TS_MASK, q.total)
        self._state, self._due = _Tx.SENDING, t0
        self.stats["events"] += 1
        log.debug("DTMF %s start ts=%d", DIGITS[q.code], self._ev.ts0)

    def _on_gap_due(self, due: float) -> None:
        self._begin(due)

    def _stop(self, now: float) -> None:
        ev = self._ev
        if ev is not None and ev.total is None:
            ev.total = max(ev.claimed, round((now - ev.t0) * self.clock_rate), 1)
            if self._state is _Tx.SENDING:
                self._due = now  # the end goes out on the next poll
            return
        self._stop_queued(now)

    def _stop_queued(self, now: float) -> None:
        held = next((q for q in self._queue if q.total is None), None)
        if held is None:
            raise MediaError("DTMF sender: stop() without a held key")
        held.total = round(max(now - held.since, MIN_HELD_MS / 1000.0) * self.clock_rate)

    def _send_update(self, due: float) -> None:
        ev = self._ev
        assert ev is not None
        claim = max(ev.claimed, round((due - ev.t0) * self.clock_rate) + self._interval_ts)
        if ev.total is not None:
            claim = min(claim, ev.total)
        base = ev.segment * MAX_SEGMENT
        rel = claim - base
        if ev.total is not None and claim == ev.total and rel <= MAX_SEGMENT:
            ev.claimed = claim
            self._emit(TelephoneEvent(ev.code, True, ev.volume, rel), base)
            self._state, ev.repeats = _Tx.ENDING, self.end_repeats - 1
            if ev.repeats == 0:
                self._event_done(due)
                return
        elif rel >= MAX_SEGMENT:
            # §2.5.1.3: the segment ends at 0xFFFF without E; the next starts at ts0 + 0xFFFF
            ev.claimed = base + MAX_SEGMENT
            self._emit(TelephoneEvent(ev.code, False, ev.volume, MAX_SEGMENT), base)
            self._state, ev.repeats = _Tx.SEGMENT_END, self.end_repeats - 1
            self.stats["segments"] += 1
        else:
            ev.claimed = claim
            self._emit(TelephoneEvent(ev.code, False, ev.volume, rel), base)
        self._advance(due)

    def _repeat_segment_end(self, due: float) -> None:
        ev = self._ev
        assert ev is not None and ev.last is not None
        if ev.repeats > 0:
            self._emit(ev.last, ev.segment * MAX_SEGMENT)
            ev.repeats -= 1
            self._advance(due)
        else:
            ev.segment += 1
            self._state = _Tx.SENDING
            self._send_update(due)

    def _repeat_end(self, due: float) -> None:
        ev = self._ev
        assert ev is not None and ev.last is not None
        self._emit(ev.last, ev.segment * MAX_SEGMENT)
        ev.repeats -= 1
        if ev.repeats > 0:
            self._advance(due)
        else:
            self._event_done(due)

    def _event_done(self, due: float) -> None:
        ev = self._ev
        assert ev is not None and ev.total is not None
        self._earliest = ev.t0 + ev.total / self.clock_rate + self.gap
        log.debug("DTMF %s end duration=%d", DIGITS[ev.code], ev.total)
        self._ev = None
        if self._queue:
            self._state, self._due = _Tx.GAP, max(self._earliest, due)
        else:
            self._state, self._due = _Tx.IDLE, None

    def _advance(self, due: float) -> None:
        self._due = due + self.interval

    def _emit(self, te: TelephoneEvent, ts_offset: int) -> None:
        ev = self._ev
        assert ev is not None
        marker = not ev.sent_first  # §2.5.1.2: M bit on the first packet of the event only
        ev.sent_first, ev.last = True, te
        self._out.append(RtpPacket(self.payload_type, self._next_seq() & 0xFFFF,
                                   (ev.ts0 + ts_offset) & _TS_MASK, self.ssrc, te.to_bytes(), marker))
        self.stats["packets"] += 1

    _TABLE: dict[tuple[_Tx, str], Callable[[DtmfSender, float], None]] = {
        (_Tx.IDLE, "start"): _start_from_idle,
        (_Tx.SENDING, "start"): _enqueued,
        (_Tx.SEGMENT_END, "start"): _enqueued,
        (_Tx.ENDING, "start"): _enqueued,
        (_Tx.GAP, "start"): _enqueued,
        (_Tx.SENDING, "stop"): _stop,
        (_Tx.SEGMENT_END, "stop"): _stop,
        (_Tx.ENDING, "stop"): _stop_queued,
        (_Tx.GAP, "stop"): _stop_queued,
        (_Tx.SENDING, "due"): _send_update,
        (_Tx.SEGMENT_END, "due"): _repeat_segment_end,
        (_Tx.ENDING, "due"): _repeat_end,
        (_Tx.GAP, "due"): _on_gap_due,
    }


# --------------------------------------------------------------------------------------------
# Receiver (RFC 4733 §2.5.2)
# --------------------------------------------------------------------------------------------
class _Rx(enum.Enum):
    IDLE = "idle"
    ACTIVE = "active"


@dataclass(slots=True)
class _RxEvent:
    ssrc: int
    code: int
    start_ts: int
    extent: int          # cumulative duration seen so far (all segments), ts units
    last_seen: float


@dataclass(frozen=True, slots=True)
class _Ended:
    ssrc: int
    code: int
    start_ts: int
    extent: int


class DtmfReceiver:
    """Reports each key press once: :class:`DtmfStart` on its first packet, :class:`DtmfEnd` on
    its end (E bit), or inferred when a newer event arrives, the SSRC changes, or no packet
    came for ``timeout_ms`` (checked by :meth:`poll`).

    An event is identified by (SSRC, event code, start timestamp) (§2.3.1, §2.5.2); packets of a
    long event's later segments (timestamp advanced by multiples of 0xFFFF, §2.5.1.3) belong
    to it. Packets of the telephone-event ``payload_type`` only; others are counted and
    ignored, so the whole RTP stream can be fed. Malformed payloads are counted, never raised.
    """

    def __init__(self, payload_type: int = 101, clock_rate: int = 8000, *, timeout_ms: float = 500.0,
                 history: int = 16) -> None:
        if clock_rate <= 0 or timeout_ms <= 0:
            raise MediaError("clock_rate and timeout_ms must be positive")
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.timeout = timeout_ms / 1000.0
        self.stats: collections.Counter[str] = collections.Counter()
        self._state = _Rx.IDLE
        self._cur: _RxEvent | None = None
        self._ended: collections.deque[_Ended] = collections.deque(maxlen=history)

    @property
    def active_digit(self) -> str | None:
        """The digit currently held down, if any."""
        return DIGITS[self._cur.code] if self._cur is not None else None

    def next_deadline(self) -> float | None:
        """When :meth:`poll` should next be called (the timeout of the current press)."""
        return self._cur.last_seen + self.timeout if self._cur is not None else None

    def receive(self, packet: RtpPacket, now: float) -> list[DtmfEvent]:
        """Feed one RTP packet; returns the key-down/key-up events it causes (often none)."""
        if packet.payload_type != self.payload_type:
            self.stats["other_payload_type"] += 1
            return []
        try:
            blocks = parse_telephone_events(packet.payload)
        except MalformedPacket as exc:
            self.stats["malformed"] += 1
            log.debug("dropped telephone-event packet: %s", exc)
            return []
        out: list[DtmfEvent] = []
        ts = packet.timestamp
        for i, te in enumerate(blocks):
            # §2.5.1.5: packed events follow each other; each starts where the previous ended
            self._receive_block(te, packet.ssrc, ts, packet.marker and i == 0, now, out)
            ts = (ts + te.duration) & _TS_MASK
        return out

    def poll(self, now: float) -> list[DtmfEvent]:
        """End a press whose packets stopped arriving ``timeout_ms`` ago (§2.5.2)."""
        out: list[DtmfEvent] = []
        cur = self._cur
        if cur is not None and now - cur.last_seen >= self.timeout - 1e-9:
            self.stats["timeout"] += 1
            self._dispatch("timeout", None, now, out)
        return out

    # ---- classification and state table ---------------------------------------------------
    def _receive_block(self, te: TelephoneEvent, ssrc: int, ts: int, marker: bool, now: float,
                       out: list[DtmfEvent]) -> None:
        if te.event >= len(DIGITS):
            self.stats["unsupported_event"] += 1
            return
        block = (te, ssrc, ts)
        cur = self._cur
        if cur is not None and cur.ssrc == ssrc and cur.code == te.event and self._continues(cur, ts, marker):
            self._dispatch("end" if te.end else "update", block, now, out)
        else:
            self._dispatch(self._classify(ssrc, te.event, ts), block, now, out)

    def _continues(self, cur: _RxEvent, ts: int, marker: bool) -> bool:
        off = ts_diff(ts, cur.start_ts)
        if off == 0:
            return True
        if off < 0 or marker:
            return False
        # a later segment (§2.5.1.3): inside what we know, or exactly the next segment boundary
        return off <= cur.extent or (off % MAX_SEGMENT == 0 and off <= cur.extent + MAX_SEGMENT)

    def _classify(self, ssrc: int, code: int, ts: int) -> str:
        """A packet that does not continue the current press, placed against the presses known
        (ended ones and the current one): "duplicate" of an ended press (a repeated end, a late
        update), "late" when it falls inside another press or before all we remember, "missed"
        for a press we never saw that fits between known ones (its packets were all delayed
        behind a later press), else "new"."""
        known = [e for e in self._ended if e.ssrc == ssrc]
        cur = self._cur
        if cur is not None and cur.ssrc == ssrc:
            known.append(_Ended(ssrc, cur.code, cur.start_ts, cur.extent))
        if not known:
            return "new"
        for e in known:
            off = ts_diff(ts, e.start_ts)
            if e.code == code and 0 <= off <= e.extent:
                return "duplicate"
            if 0 <= off < e.extent:
                return "late"
        base = known[0].start_ts
        starts = [ts_diff(e.start_ts, base) for e in known]
        rel = ts_diff(ts, base)
        if rel < min(starts) and len(self._ended) == self._ended.maxlen:
            return "late"  # older than all we remember: it may be a press we have forgotten
        return "missed" if rel < max(starts) else "new"

    def _dispatch(self, name: str, block: tuple[TelephoneEvent, int, int] | None, now: float,
                  out: list[DtmfEvent]) -> None:
        handler = self._TABLE.get((self._state, name))
        if handler is None:  # peer input a state does not list: counted and dropped
            self.stats["unexpected"] += 1
            log.debug("telephone-event %r unexpected in state %s", name, self._state.value)
            return
        if name in ("duplicate", "late", "missed"):
            self.stats[name] += 1
        handler(self, block, now, out)

    def _on_new(self, block: tuple[TelephoneEvent, int, int] | None, now: float, out: list[DtmfEvent]) -> None:
        assert block is not None
        te, ssrc, ts = block
        if self._cur is not None:
            self.stats["implicit_end"] += 1
            self._finish(False, out)
        self._cur = _RxEvent(ssrc, te.event, ts, te.duration, now)
        self._state = _Rx.ACTIVE
        self.stats["events"] += 1
        out.append(DtmfStart(DIGITS[te.event], ts))
        if te.end:  # the start and updates were lost: only the end arrived
            self._finish(True, out)

    def _on_missed(self, block: tuple[TelephoneEvent, int, int] | None, now: float,
                   out: list[DtmfEvent]) -> None:
        # reported at once, out of order: start_ts tells where it belongs
        assert block is not None
        te, ssrc, ts = block
        self.stats["events"] += 1
        self._ended.append(_Ended(ssrc, te.event, ts, te.duration))
        ms = round(te.duration * 1000 / self.clock_rate)
        out += [DtmfStart(DIGITS[te.event], ts), DtmfEnd(DIGITS[te.event], ms, ts, end_seen=te.end)]

    def _on_ignored(self, block: tuple[TelephoneEvent, int, int] | None, now: float,
                    out: list[DtmfEvent]) -> None:
        pass  # counted by _dispatch

    def _on_update(self, block: tuple[TelephoneEvent, int, int] | None, now: float,
                   out: list[DtmfEvent]) -> None:
        assert block is not None and self._cur is not None
        te, _, ts = block
        cur = self._cur
        extent = ts_diff(ts, cur.start_ts) + te.duration
        if extent <= cur.extent:
            self.stats["duplicate"] += 1  # repeated or reordered update
        cur.extent = max(cur.extent, extent)
        cur.last_seen = max(cur.last_seen, now)

    def _on_end(self, block: tuple[TelephoneEvent, int, int] | None, now: float, out: list[DtmfEvent]) -> None:
        self._on_update(block, now, out)
        self._finish(True, out)

    def _on_timeout(self, block: tuple[TelephoneEvent, int, int] | None, now: float,
                    out: list[DtmfEvent]) -> None:
        self._finish(False, out)

    def _finish(self, end_seen: bool, out: list[DtmfEvent]) -> None:
        cur = self._cur
        assert cur is not None
        self._ended.append(_Ended(cur.ssrc, cur.code, cur.start_ts, cur.extent))
        ms = round(cur.extent * 1000 / self.clock_rate)
        out.append(DtmfEnd(DIGITS[cur.code], ms, cur.start_ts, end_seen=end_seen))
        self._cur, self._state = None, _Rx.IDLE

    _TABLE: dict[tuple[_Rx, str], Callable[..., None]] = {
        (_Rx.IDLE, "new"): _on_new,
        (_Rx.ACTIVE, "new"): _on_new,
        (_Rx.IDLE, "missed"): _on_missed,
        (_Rx.ACTIVE, "missed"): _on_missed,
        (_Rx.IDLE, "duplicate"): _on_ignored,
        (_Rx.ACTIVE, "duplicate"): _on_ignored,
        (_Rx.IDLE, "late"): _on_ignored,
        (_Rx.ACTIVE, "late"): _on_ignored,
        (_Rx.ACTIVE, "update"): _on_update,
        (_Rx.ACTIVE, "end"): _on_end,
        (_Rx.ACTIVE, "timeout"): _on_timeout,
    }


# --------------------------------------------------------------------------------------------
# SIP INFO bodies: application/dtmf-relay (Cisco) and application/dtmf
# --------------------------------------------------------------------------------------------
DEFAULT_INFO_DURATION_MS = 100
_MAX_BODY = 1024
_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z_-]*)\s*[=:]\s*(.*?)\s*$")


def _signal_to_digit(value: str) -> str:
    v = value.strip()
    if v.isdigit() and len(v) <= 2 and int(v) >= 10:
        # Cisco sends Signal=10 / 11 for * and #, 12-15 for A-D, 16 for hook flash
        return event_to_digit(int(v))
    return event_to_digit(digit_to_event(v))


def parse_dtmf_relay(body: bytes | str, content_type: str | None = None) -> tuple[str, int]:
    """``(digit, duration_ms)`` from an INFO body.

    ``application/dtmf-relay``: ``Signal=5\\r\\nDuration=160\\r\\n`` (case, spaces, bare LF,
    unknown keys, a missing Duration — :data:`DEFAULT_INFO_DURATION_MS` — and Cisco's
    Signal=10/11 tolerated). ``application/dtmf``: the digit alone. Without ``content_type``
    the form is recognised from the body. Garbage raises :class:`DtmfParseError`.
    """
    if isinstance(body, bytes):
        if len(body) > _MAX_BODY:
            raise DtmfParseError(f"DTMF INFO body of {len(body)} bytes")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise DtmfParseError("DTMF INFO body is not text") from None
    else:
        text = body
    ctype = (content_type or "").split(";")[0].strip().lower()
    lines = [ln for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n") if ln.strip()]
    if not lines:
        raise DtmfParseError("empty DTMF INFO body")
    if ctype == "application/dtmf" or (not ctype and len(lines) == 1 and "=" not in lines[0]):
        if len(lines) != 1:
            raise DtmfParseError("application/dtmf body has more than one line")
        return _signal_to_digit(lines[0]), DEFAULT_INFO_DURATION_MS
    if ctype and ctype != "application/dtmf-relay":
        raise DtmfParseError(f"not a DTMF content type: {content_type!r}")
    fields: dict[str, str] = {}
    for ln in lines:
        m = _LINE.match(ln)
        if m is None:
            raise DtmfParseError(f"bad dtmf-relay line {ln[:40]!r}")
        fields.setdefault(m.group(1).lower(), m.group(2))
    if "signal" not in fields:
        raise DtmfParseError("dtmf-relay body without Signal")
    digit = _signal_to_digit(fields["signal"])
    duration = DEFAULT_INFO_DURATION_MS
    if "duration" in fields:
        raw = fields["duration"]
        if not raw.isdigit() or int(raw) > 60000:
            raise DtmfParseError(f"bad dtmf-relay Duration {raw[:20]!r}")
        duration = int(raw) or DEFAULT_INFO_DURATION_MS
    return digit, duration


def build_dtmf_relay(digit: str, duration_ms: int = DEFAULT_INFO_DURATION_MS) -> bytes:
    """An ``application/dtmf-relay`` body: ``Signal=5\\r\\nDuration=160\\r\\n``."""
    d = event_to_digit(digit_to_event(digit))
    if not 0 < duration_ms <= 60000:
        raise MediaError(f"duration {duration_ms} ms out of range")
    return f"Signal={d}\r\nDuration={int(duration_ms)}\r\n".encode("ascii")
