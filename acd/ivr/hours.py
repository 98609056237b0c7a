"""Business hours: weekly opening ranges in an IANA time zone, holidays, partial closures
and exceptional openings, evaluated at aware instants (sans-IO: the caller passes the time).

All ranges are **local wall-clock** times of the schedule's zone, ``"HH:MM-HH:MM"``, start
included, end excluded; ``24:00`` (or ``00:00``) as an end means midnight at the end of the
day. On weekdays, an end before the start is an **overnight** range: ``friday =
["22:00-06:00"]`` is open from Friday 22:00 to Saturday 06:00. Dated entries (holidays,
exceptions) must stay within their date: split an overnight closure into two entries.

A moment is open when, in this order of precedence:

1. an ``open_exceptions`` range of its local date contains it (open), else
2. a ``holidays`` entry of its local date contains it (closed; a bare date closes the whole
   calendar day, 00:00-24:00, including the tail of an overnight range that began the
   evening before), else
3. a weekly range contains it (open), else it is closed.

Daylight-saving time is handled through :mod:`zoneinfo`: a range is about wall time, so
``"08:00-12:00"`` lasts three real hours on the morning clocks go forward if it spans the
change; a boundary that falls in the skipped hour takes effect when the clock jumps; in the
repeated hour of autumn, wall times are evaluated each time they occur (``"00:00-01:30"``
on that day is open, closed at the first 01:30, open again when 01:00 comes back, closed at
the second 01:30). :meth:`Schedule.next_change` follows exactly what :meth:`Schedule.is_open`
says; it assumes at most one UTC-offset change per day (true of every real zone).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from acd.engine.toml_reader import suggest
from acd.ivr.errors import IvrError, ScheduleError
from media.prompts import say_number

__all__ = [
    "DAYS",
    "TimeRange",
    "Schedule",
    "parse_range",
    "parse_dated",
    "build_schedule",
    "say_opening",
]

log = logging.getLogger(__name__)

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAY_MIN = 1440
DAY_S = 86400
_UTC = UTC
_ONE_DAY = timedelta(days=1)
_TIME = r"(\d{1,2}):(\d{2})"
_RANGE = re.compile(rf"\s*{_TIME}\s*-\s*{_TIME}\s*")
_DATED = re.compile(r"\s*(\d{4}-\d{2}-\d{2})(?:\s+(.*))?")
_CACHE_DAYS = 512  # per-schedule cache of evaluated days


@dataclass(frozen=True, order=True)
class TimeRange:
    """Minutes after local midnight; ``end`` 1..1440, below ``start`` for an overnight range."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not (0 <= self.start < DAY_MIN and 0 < self.end <= DAY_MIN and self.start != self.end):
            raise ValueError(f"invalid time range {self.start}..{self.end} (minutes)")

    @property
    def overnight(self) -> bool:
        return self.end < self.start

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _minutes(h: str, m: str, text: str, *, end: bool) -> int:
    hour, minute = int(h), int(m)
    if minute > 59 or hour > 24 or (hour == 24 and (minute or not end)):
        what = "an end" if end else "a start"
        raise ValueError(f"{h}:{m} is not a valid time for {what} in {text!r} "
                         f"(00:00-23:59{', or 24:00' if end else ''})")
    return hour * 60 + minute


def parse_range(text: str) -> TimeRange:
    """``"08:00-12:30"`` → :class:`TimeRange`; ``ValueError`` with the reason otherwise."""
    m = _RANGE.fullmatch(text)
    if not m:
        raise ValueError(f"expected a range \"HH:MM-HH:MM\", got {text!r}")
    start = _minutes(m[1], m[2], text, end=False)
    end = _minutes(m[3], m[4], text, end=True) or DAY_MIN  # "18:00-00:00" ends at midnight
    if start == end:
        raise ValueError(f"{text!r} is empty (start equals end); a whole day is 00:00-24:00")
    return TimeRange(start, end)


def parse_dated(entry: str | date) -> tuple[date, TimeRange]:
    """``"2026-12-25"`` (whole day) or ``"2026-12-31 14:00-24:00"``; a TOML date works too."""
    if isinstance(entry, datetime):
        raise ValueError(f"expected a date or \"YYYY-MM-DD HH:MM-HH:MM\", got {entry.isoformat()}")
    if isinstance(entry, date):
        return entry, TimeRange(0, DAY_MIN)
    m = _DATED.fullmatch(entry)
    if not m:
        raise ValueError(f"expected \"YYYY-MM-DD\" or \"YYYY-MM-DD HH:MM-HH:MM\", got {entry!r}")
    try:
        day = date.fromisoformat(m[1])
    except ValueError:
        raise ValueError(f"{m[1]!r} is not a calendar date") from None
    if not m[2]:
        return day, TimeRange(0, DAY_MIN)
    rng = parse_range(m[2])
    if rng.overnight:
        raise ValueError(f"{entry!r}: a dated range cannot cross midnight; "
                         "write one entry per date")
    return day, rng


# --------------------------------------------------------------------------- intervals


Interval = tuple[float, float]  # seconds after local midnight, [start, end)


def _merge(pieces: Iterable[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for s, e in sorted(pieces):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _subtract(pieces: list[Interval], cuts: Iterable[Interval]) -> list[Interval]:
    for cs, ce in cuts:
        kept: list[Interval] = []
        for s, e in pieces:
            if e <= cs or s >= ce:
                kept.append((s, e))
                continue
            if s < cs:
                kept.append((s, cs))
            if e > ce:
                kept.append((ce, e))
        pieces = kept
    return pieces


def _seconds(r: TimeRange) -> Interval:
    return (r.start * 60, (DAY_MIN if r.overnight else r.end) * 60)


# --------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class Schedule:
    """One named schedule. Build it with :func:`build_schedule` (which validates); the
    constructor only checks the zone. ``weekly`` has seven entries, Monday first."""

    name: str
    timezone: str
    weekly: tuple[tuple[TimeRange, ...], ...] = ((),) * 7
    holidays: Mapping[date, tuple[TimeRange, ...]] = field(default_factory=dict, hash=False)
    open_exceptions: Mapping[date, tuple[TimeRange, ...]] = field(default_factory=dict,
                                                                   hash=False)
    _tz: ZoneInfo = field(init=False, repr=False, compare=False, hash=False)
    _days: dict[date, tuple[Interval, ...]] = field(init=False, repr=False, compare=False,
                                                     hash=False)

    def __post_init__(self) -> None:
        if len(self.weekly) != 7:
            raise ScheduleError("weekly", f"needs 7 days, got {len(self.weekly)}")
        object.__setattr__(self, "_tz", load_zone(self.timezone))
        object.__setattr__(self, "_days", {})

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    @property
    def last_special_date(self) -> date | None:
        """The last date with a holiday or an exception (after it the week just repeats)."""
        dates = [*self.holidays, *self.open_exceptions]
        return max(dates) if dates else None

    def open_intervals(self, day: date) -> tuple[Interval, ...]:
        """The open intervals of local ``day`` in seconds after midnight, merged, sorted."""
        hit = self._days.get(day)
        if hit is not None:
            return hit
        wd = day.weekday()
        pieces = [_seconds(r) for r in self.weekly[wd]]
        pieces += [(0.0, r.end * 60) for r in self.weekly[(wd - 1) % 7] if r.overnight]
        pieces = _subtract(_merge(pieces), (_seconds(r) for r in self.holidays.get(day, ())))
        out = tuple(_merge(pieces + [_seconds(r) for r in self.open_exceptions.get(day, ())]))
        if len(self._days) >= _CACHE_DAYS:
            self._days.clear()
        self._days[day] = out
        return out

    def is_open(self, at: datetime) -> bool:
        """Whether the schedule is open at the aware instant ``at``."""
        local = _aware(at).astimezone(self._tz)
        sec = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        return any(s <= sec < e for s, e in self.open_intervals(local.date()))

    def is_open_epoch(self, epoch_seconds: float) -> bool:
        """:meth:`is_open` at a POSIX timestamp."""
        return self.is_open(datetime.fromtimestamp(epoch_seconds, _UTC))

    def next_change(self, at: datetime) -> datetime | None:
        """The first instant after ``at`` at which :meth:`is_open` changes, in the schedule's
        zone; ``None`` if it never changes (always open, or always closed)."""
        t = _aware(at).astimezone(_UTC)
        state = self.is_open(t)
        last = self.last_special_date
        start_day = t.astimezone(self._tz).date()
        horizon = max(start_day, last or start_day) + timedelta(days=8)
        while True:
            off = t.astimezone(self._tz).utcoffset() or timedelta(0)
            end = self._segment_end(t, off)
            # between t and end the offset is constant: wall time = instant + off
            wall_t = (t + off).replace(tzinfo=None)
            wall_end = (end + off).replace(tzinfo=None)
            day = wall_t.date()
            while day <= wall_end.date():
                midnight = datetime.combine(day, time())
                for sec in self._boundaries(day):
                    b = midnight + timedelta(seconds=sec)
                    if wall_t < b < wall_end:
                        inst = (b - off).replace(tzinfo=_UTC)
                        if self.is_open(inst) != state:
                            return inst.astimezone(self._tz)
                day += _ONE_DAY
            if self.is_open(end) != state:
                return end.astimezone(self._tz)
            if wall_end.date() > horizon:
                return None
            t = end

    def next_open(self, at: datetime) -> datetime | None:
        """``at`` itself when open, else when it opens next (``None``: never)."""
        return _aware(at).astimezone(self._tz) if self.is_open(at) else self.next_change(at)

    def _boundaries(self, day: date) -> list[float]:
        points = {0.0}
        for s, e in self.open_intervals(day):
            points.add(s)
            if e < DAY_S:
                points.add(e)
        return sorted(points)

    def _segment_end(self, t: datetime, off: timedelta) -> datetime:
        """``t`` + 1 day, or the first instant after ``t`` with another UTC offset."""
        limit = t + _ONE_DAY
        if limit.astimezone(self._tz).utcoffset() == off:
            return limit
        lo, hi = int(t.timestamp()), int(limit.timestamp()) + 1
        while hi - lo > 1:  # offset(lo) == off != offset(hi)
            mid = (lo + hi) // 2
            if datetime.fromtimestamp(mid, self._tz).utcoffset() == off:
                lo = mid
            else:
                hi = mid
        return datetime.fromtimestamp(hi, _UTC)


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise IvrError(f"business hours need an aware datetime, got naive {at.isoformat()}")
    return at


def load_zone(name: str) -> ZoneInfo:
    """The :class:`ZoneInfo` for an IANA name; :class:`ScheduleError` with a suggestion."""
    try:
        if not name or name != name.strip():
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        hint = suggest(name, available_timezones()) if name else None
        reason = f"unknown time zone {name!r} (an IANA name such as \"Europe/Paris\")"
        raise ScheduleError("timezone", f"{reason}; did you mean {hint!r}?" if hint
                            else reason) from None


# --------------------------------------------------------------------------- building


def _check_overlaps(pieces: list[tuple[Interval, str, str]]) -> None:
    """``pieces``: (interval, key, text); raises for the later-starting one of an overlap."""
    pieces = sorted(pieces, key=lambda p: p[0])
    for (a, akey, atext), (b, bkey, btext) in zip(pieces, pieces[1:]):
        if b[0] < a[1]:
            raise ScheduleError(bkey, f"{btext} overlaps {akey} ({atext})")


def build_schedule(name: str, timezone: str, days: Mapping[str, Sequence[str]] | None = None,
                   holidays: Sequence[str | date] = (),
                   open_exceptions: Sequence[str | date] = ()) -> Schedule:
    """A validated :class:`Schedule`; :class:`ScheduleError` names the faulty entry
    (``"monday[1]"``, ``"holidays[0]"``, ``"timezone"``) and the reason. ``days`` maps
    lower-case weekday names to lists of ranges; a missing day is closed."""
    load_zone(timezone)
    days = days or {}
    weekly: list[tuple[TimeRange, ...]] = []
    for day_name in days:
        if day_name not in DAYS:
            hint = suggest(day_name, DAYS)
            raise ScheduleError(day_name, "not a weekday" + (f"; did you mean {hint!r}?"
                                                            if hint else ""))
    keyed: list[list[tuple[TimeRange, str]]] = []
    for day_name in DAYS:
        listed = days.get(day_name, ())
        if isinstance(listed, str):
            raise ScheduleError(day_name, "expected a list of ranges, e.g. [\"08:00-12:00\"]")
        ranges = []
        for i, text in enumerate(listed):
            key = f"{day_name}[{i}]"
            ranges.append((_parse(text, key), key))
        keyed.append(ranges)
        weekly.append(tuple(r for r, _ in ranges))
    for wd in range(7):
        pieces = [(_seconds(r), key, str(r)) for r, key in keyed[wd]]
        pieces += [((0.0, r.end * 60), key, f"{r} (after midnight)")
                   for r, key in keyed[(wd - 1) % 7] if r.overnight]
        _check_overlaps(pieces)
    return Schedule(name, timezone, tuple(weekly),
                    _dated(holidays, "holidays"), _dated(open_exceptions, "open_exceptions"))


def _parse(value: object, key: str) -> TimeRange:
    if not isinstance(value, str):
        raise ScheduleError(key, f"expected a string \"HH:MM-HH:MM\", got {type(value).__name__}")
    try:
        return parse_range(value)
    except ValueError as exc:
        raise ScheduleError(key, str(exc)) from None


def _dated(entries: Sequence[str | date], what: str) -> dict[date, tuple[TimeRange, ...]]:
    by_day: dict[date, list[tuple[TimeRange, str]]] = {}
    for i, entry in enumerate(entries):
        key = f"{what}[{i}]"
        if not isinstance(entry, (str, date)):
            raise ScheduleError(key, f"expected a string or a date, got {type(entry).__name__}")
        try:
            day, rng = parse_dated(entry)
        except ValueError as exc:
            raise ScheduleError(key, str(exc)) from None
        by_day.setdefault(day, []).append((rng, key))
    for day, ranges in by_day.items():
        _check_overlaps([(_seconds(r), key, f"{day} {r}") for r, key in ranges])
    return {day: tuple(sorted(r for r, _ in ranges)) for day, ranges in sorted(by_day.items())}


# --------------------------------------------------------------------------- speech


def say_opening(when: datetime, at: datetime) -> list[str]:
    """Prompt names for "we open <today|tomorrow|on Monday> at <9 a.m.>", ``when`` read in
    its own zone (pass :meth:`Schedule.next_change`'s result) and ``at`` the current instant.
    Openings more than six days away return ``[]`` (dates are not spoken)."""
    w = _aware(when)
    days = (w.date() - _aware(at).astimezone(w.tzinfo).date()).days
    if days == 0:
        day = ["ivr/hours/today"]
    elif days == 1:
        day = ["ivr/hours/tomorrow"]
    elif 2 <= days <= 6:
        day = [f"ivr/hours/on-{DAYS[w.weekday()]}"]
    else:
        return []
    h, m = w.hour, w.minute
    if (h, m) == (0, 0):
        clock = ["ivr/hours/midnight"]
    elif (h, m) == (12, 0):
        clock = ["digits/12", "ivr/hours/noon"]
    else:
        clock = [f"digits/{h % 12 or 12}"]
        if m:
            clock += ["ivr/hours/oh", f"digits/{m}"] if m < 10 else say_number(m)
        clock.append("ivr/hours/a-m" if h < 12 else "ivr/hours/p-m")
    return ["ivr/hours/we-open", *day, "ivr/hours/at", *clock]
