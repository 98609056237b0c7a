"""Business hours: open/closed at many instants, holidays, partial closures, exceptions,
overnight ranges, DST days in Europe/Paris and America/New_York, next_change, say_opening."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.ivr import IvrError, Schedule, ScheduleError, build_schedule, say_opening
from acd.ivr.hours import parse_dated, parse_range
from media.prompt_build import load_texts

PARIS = ZoneInfo("Europe/Paris")
NY = ZoneInfo("America/New_York")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")


def office() -> Schedule:
    days: dict[str, list[str]] = {d: ["08:00-12:30", "13:30-18:00"] for d in WEEKDAYS}
    days["saturday"] = ["09:00-12:00"]
    return build_schedule("office", "Europe/Paris", days,
                          holidays=["2026-12-25", "2026-12-31 14:00-24:00", "2027-01-01",
                                    "2026-12-24"],
                          open_exceptions=["2026-12-24 09:00-12:00", "2026-12-27 10:00-12:00"])


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[misc]


@pytest.mark.parametrize(("at", "is_open"), [
    (paris(2026, 3, 2, 7, 59, 59), False),  # Monday before opening
    (paris(2026, 3, 2, 8, 0), True),  # start included
    (paris(2026, 3, 2, 12, 29, 59), True),
    (paris(2026, 3, 2, 12, 30), False),  # end excluded: lunch
    (paris(2026, 3, 2, 13, 30), True),
    (paris(2026, 3, 2, 17, 59), True),
    (paris(2026, 3, 2, 18, 0), False),
    (paris(2026, 3, 7, 9, 0), True),  # Saturday morning
    (paris(2026, 3, 7, 13, 0), False),
    (paris(2026, 3, 8, 10, 0), False),  # Sunday: no ranges
    (paris(2026, 12, 25, 10, 0), False),  # Christmas (a Friday): holiday
    (paris(2026, 12, 31, 10, 0), True),  # New Year's Eve morning: partial closure later
    (paris(2026, 12, 31, 13, 59), True),
    (paris(2026, 12, 31, 14, 0), False),
    (paris(2026, 12, 31, 16, 0), False),
    (paris(2027, 1, 1, 10, 0), False),
    (paris(2026, 12, 24, 10, 0), True),  # holiday, but the exception opens the morning
    (paris(2026, 12, 24, 14, 0), False),
    (paris(2026, 12, 27, 10, 30), True),  # special Sunday opening
    (paris(2026, 12, 27, 12, 0), False),
    (paris(2026, 12, 28, 10, 0), True),  # ordinary Monday again
])
def test_office_hours(at: datetime, is_open: bool) -> None:
    s = office()
    assert s.is_open(at) is is_open
    assert s.is_open(at.astimezone(UTC)) is is_open  # any aware zone
    assert s.is_open_epoch(at.timestamp()) is is_open


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(IvrError, match="aware"):
        office().is_open(datetime(2026, 3, 2, 10, 0))


def test_next_change_through_a_week_and_holidays() -> None:
    s = office()
    t = paris(2026, 12, 23, 19, 0)  # Wednesday evening, closed
    changes = []
    for _ in range(6):
        nxt = s.next_change(t)
        assert nxt is not None and nxt > t
        assert s.is_open(nxt) != s.is_open(nxt - timedelta(microseconds=1))
        changes.append((nxt.replace(tzinfo=None), s.is_open(nxt)))
        t = nxt
    assert changes == [
        (datetime(2026, 12, 24, 9, 0), True),  # exception in the holiday
        (datetime(2026, 12, 24, 12, 0), False),
        (datetime(2026, 12, 26, 9, 0), True),  # Saturday (Christmas Friday skipped)
        (datetime(2026, 12, 26, 12, 0), False),
        (datetime(2026, 12, 27, 10, 0), True),  # special Sunday
        (datetime(2026, 12, 27, 12, 0), False),
    ]
    assert s.next_change(paris(2026, 12, 31, 15, 0)) == paris(2027, 1, 2, 9, 0)
    assert s.next_open(paris(2026, 12, 31, 15, 0)) == paris(2027, 1, 2, 9, 0)
    assert s.next_open(paris(2026, 3, 2, 9, 0)) == paris(2026, 3, 2, 9, 0)


def test_next_change_never() -> None:
    closed = build_schedule("never", "Europe/Paris")
    assert closed.next_change(paris(2026, 3, 29, 0, 0)) is None
    assert closed.next_open(paris(2026, 3, 29, 0, 0)) is None
    always = build_schedule("always", "America/New_York",
                            {d: ["00:00-24:00"] for d in (*WEEKDAYS, "saturday", "sunday")})
    assert always.is_open(paris(2026, 3, 8, 7, 30))
    assert always.next_change(paris(2026, 3, 1, 0, 0)) is None
    # a holiday far ahead is still found
    one_day = build_schedule("x", "UTC", {d: ["00:00-24:00"] for d in
                                          (*WEEKDAYS, "saturday", "sunday")},
                             holidays=["2027-06-01"])
    assert one_day.next_change(datetime(2026, 1, 1, tzinfo=UTC)) == \
        datetime(2027, 6, 1, tzinfo=UTC)


def test_overnight_ranges() -> None:
    s = build_schedule("night", "Europe/Paris", {"friday": ["22:00-06:00"],
                                                 "saturday": ["18:00-00:00"]},
                       holidays=["2026-03-14"])
    assert not s.is_open(paris(2026, 3, 6, 21, 59))  # Friday
    assert s.is_open(paris(2026, 3, 6, 22, 0))
    assert s.is_open(paris(2026, 3, 7, 0, 0))  # Saturday after midnight
    assert s.is_open(paris(2026, 3, 7, 5, 59))
    assert not s.is_open(paris(2026, 3, 7, 6, 0))
    assert s.is_open(paris(2026, 3, 7, 23, 59))  # "18:00-00:00" runs to midnight
    assert not s.is_open(paris(2026, 3, 8, 0, 0))
    # a whole-day holiday closes the tail of the night that started before it
    assert s.is_open(paris(2026, 3, 13, 23, 0))
    assert not s.is_open(paris(2026, 3, 14, 1, 0))
    assert s.next_change(paris(2026, 3, 13, 23, 0)) == paris(2026, 3, 14, 0, 0)
    # Sunday night wraps into Monday
    w = build_schedule("wrap", "UTC", {"sunday": ["23:00-01:00"]})
    assert w.is_open(datetime(2026, 3, 2, 0, 30, tzinfo=UTC))  # Monday 00:30


# --------------------------------------------------------------------------- DST


def test_paris_spring_forward() -> None:
    # 2026-03-29 (Sunday): 02:00 CET -> 03:00 CEST, at 01:00 UTC
    s = build_schedule("s", "Europe/Paris", {"saturday": ["22:00-06:00"],
                                             "sunday": ["08:00-12:00"]})
    sat_night = s.next_change(paris(2026, 3, 28, 12, 0))
    assert sat_night == paris(2026, 3, 28, 22, 0)
    assert sat_night.astimezone(UTC) == datetime(2026, 3, 28, 21, 0, tzinfo=UTC)
    end = s.next_change(sat_night)
    assert end is not None and end.astimezone(UTC) == datetime(2026, 3, 29, 4, 0, tzinfo=UTC)
    # 22:00 -> 06:00 is one hour shorter (subtract in UTC: same-zone datetimes subtract
    # as wall clocks in Python)
    assert end.astimezone(UTC) - sat_night.astimezone(UTC) == timedelta(hours=7)
    opens = s.next_change(end)
    assert opens is not None and opens.astimezone(UTC) == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    closes = s.next_change(opens)
    assert closes is not None and closes - opens == timedelta(hours=4)
    # a boundary in the skipped hour takes effect when the clock jumps
    g = build_schedule("g", "Europe/Paris", {"sunday": ["02:30-04:00"]})
    jump = g.next_change(paris(2026, 3, 29, 0, 0))
    assert jump is not None and jump.astimezone(UTC) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert jump.replace(tzinfo=None) == datetime(2026, 3, 29, 3, 0)
    assert not g.is_open(datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC))
    assert g.is_open(datetime(2026, 3, 29, 1, 0, tzinfo=UTC))


def test_paris_fall_back() -> None:
    # 2026-10-25 (Sunday): 03:00 CEST -> 02:00 CET, at 01:00 UTC; 02:00-03:00 happens twice
    s = build_schedule("s", "Europe/Paris", {"sunday": ["01:00-02:30", "09:00-10:00"]})
    t = paris(2026, 10, 25, 0, 0)
    seen = []
    for _ in range(6):
        t = s.next_change(t)  # type: ignore[assignment]
        seen.append((t.astimezone(UTC).replace(tzinfo=None), s.is_open(t)))
    assert seen == [
        (datetime(2026, 10, 24, 23, 0), True),  # 01:00 CEST
        (datetime(2026, 10, 25, 0, 30), False),  # 02:30 CEST
        (datetime(2026, 10, 25, 1, 0), True),  # clock back to 02:00 CET: open again
        (datetime(2026, 10, 25, 1, 30), False),  # 02:30 CET
        (datetime(2026, 10, 25, 8, 0), True),  # 09:00 CET
        (datetime(2026, 10, 25, 9, 0), False),
    ]
    # the morning range is one hour later in UTC than the day before
    d = build_schedule("d", "Europe/Paris", {"saturday": ["09:00-10:00"],
                                             "sunday": ["09:00-10:00"]})
    sat = d.next_change(paris(2026, 10, 24, 0, 0))
    sun = d.next_change(paris(2026, 10, 25, 0, 0))
    assert sat is not None and sun is not None
    assert sun.astimezone(UTC) - sat.astimezone(UTC) == timedelta(hours=25)


def test_new_york_spring_forward_and_fall_back() -> None:
    # 2026-03-08: 02:00 EST -> 03:00 EDT (07:00 UTC); 2026-11-01: 02:00 EDT -> 01:00 EST (06:00 UTC)
    s = build_schedule("ny", "America/New_York",
                       {"saturday": ["20:00-04:00"], "sunday": ["09:00-17:00"]})
    sat = datetime(2026, 3, 7, 20, 0, tzinfo=NY)
    assert s.is_open(sat)
    assert s.next_change(sat) == datetime(2026, 3, 8, 4, 0, tzinfo=NY)
    assert s.next_change(sat).astimezone(UTC) - sat.astimezone(UTC) == \
        timedelta(hours=7)  # type: ignore[union-attr]
    assert not s.is_open(datetime(2026, 3, 8, 8, 59, tzinfo=NY))
    assert s.is_open(datetime(2026, 3, 8, 9, 0, tzinfo=NY))
    assert datetime(2026, 3, 8, 9, 0, tzinfo=NY).astimezone(UTC).hour == 13
    # autumn: 20:00-04:00 spans the repeated hour
    t = datetime(2026, 10, 31, 21, 0, tzinfo=NY)
    seen = []
    for _ in range(4):
        t = s.next_change(t)  # type: ignore[assignment]
        seen.append((t.astimezone(UTC).replace(tzinfo=None), s.is_open(t)))
    assert seen == [
        (datetime(2026, 11, 1, 9, 0), False),  # 04:00 EST: 20:00-04:00 lasted 9 hours
        (datetime(2026, 11, 1, 14, 0), True),  # 09:00 EST
        (datetime(2026, 11, 1, 22, 0), False),  # 17:00 EST
        (datetime(2026, 11, 8, 1, 0), True),  # next Saturday 20:00 EST
    ]
    only = build_schedule("o", "America/New_York", {"sunday": ["00:00-01:30"]})
    t = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    seen = []
    for _ in range(4):
        t = only.next_change(t)  # type: ignore[assignment]
        seen.append(t.astimezone(UTC).replace(tzinfo=None))
    assert seen == [datetime(2026, 11, 1, 4, 0), datetime(2026, 11, 1, 5, 30),
                    datetime(2026, 11, 1, 6, 0), datetime(2026, 11, 1, 6, 30)]


SCHEDULES = [
    office(),
    build_schedule("night", "America/New_York", {"friday": ["22:00-06:00"],
                                                 "sunday": ["00:00-01:30", "02:30-03:00"]},
                   holidays=["2026-11-01 01:00-02:00"], open_exceptions=["2026-03-08 02:00-02:45"]),
    build_schedule("lh", "Australia/Lord_Howe", {"sunday": ["01:45-02:15"],
                                                 "saturday": ["23:00-01:00"]}),
]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(range(len(SCHEDULES))),
       st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31),
                    timezones=st.just(UTC)))
def test_next_change_agrees_with_is_open(which: int, at: datetime) -> None:
    s = SCHEDULES[which]
    state = s.is_open(at)
    nxt = s.next_change(at)
    assert nxt is not None
    assert nxt > at and s.is_open(nxt) != state
    # constant in between (sampled every 7 minutes, plus the last second)
    t = at
    while t < nxt:
        assert s.is_open(t) == state, t
        t += timedelta(minutes=7)
    assert s.is_open(nxt - timedelta(seconds=1)) == state


# --------------------------------------------------------------------------- parsing


def test_parse_range_and_dated() -> None:
    assert parse_range("8:00 - 12:30").start == 480
    assert parse_range("18:00-00:00").end == 1440
    assert parse_range("22:00-06:00").overnight
    assert str(parse_range("18:00-24:00")) == "18:00-24:00"
    assert parse_dated("2026-12-25")[1] == parse_range("00:00-24:00")
    assert parse_dated(date(2026, 12, 25))[0] == date(2026, 12, 25)
    with pytest.raises(ValueError, match="cross midnight"):
        parse_dated("2026-12-31 22:00-02:00")


def test_build_schedule_errors_name_the_entry() -> None:
    with pytest.raises(ScheduleError) as info:
        build_schedule("x", "Europe/Paris", {"mondey": ["08:00-09:00"]})
    assert info.value.key == "mondey" and "did you mean 'monday'" in info.value.reason
    with pytest.raises(ScheduleError) as info:
        build_schedule("x", "Mars/Olympus")
    assert info.value.key == "timezone"
    with pytest.raises(ScheduleError):
        build_schedule("x", "")


# --------------------------------------------------------------------------- speech


STANDARD = load_texts()


@pytest.mark.parametrize(("when", "words"), [
    (paris(2026, 3, 2, 9, 0), ["ivr/hours/tomorrow", "ivr/hours/at", "digits/9",
                               "ivr/hours/a-m"]),
    (paris(2026, 3, 1, 13, 30), ["ivr/hours/today", "ivr/hours/at", "digits/1",
                                 "digits/30", "ivr/hours/p-m"]),
    (paris(2026, 3, 3, 8, 5), ["ivr/hours/on-tuesday", "ivr/hours/at", "digits/8",
                               "ivr/hours/oh", "digits/5", "ivr/hours/a-m"]),
    (paris(2026, 3, 7, 12, 0), ["ivr/hours/on-saturday", "ivr/hours/at", "digits/12",
                                "ivr/hours/noon"]),
    (paris(2026, 3, 2, 0, 0), ["ivr/hours/tomorrow", "ivr/hours/at", "ivr/hours/midnight"]),
    (paris(2026, 3, 2, 21, 45), ["ivr/hours/tomorrow", "ivr/hours/at", "digits/9",
                                 "digits/40", "digits/5", "ivr/hours/p-m"]),
])
def test_say_opening(when: datetime, words: list[str]) -> None:
    now = paris(2026, 3, 1, 10, 0)  # a Sunday
    got = say_opening(when, now.astimezone(UTC))
    assert got == ["ivr/hours/we-open", *words]
    assert all(p in STANDARD for p in got)


def test_say_opening_far_away_says_nothing() -> None:
    assert say_opening(paris(2026, 3, 8, 9, 0), paris(2026, 3, 1, 10, 0)) == []
