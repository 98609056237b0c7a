"""Property: whatever a caller presses, whenever prompts end and timers fire, a session never
raises and ends with exactly one terminal action once the caller stops acting."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from acd.ivr import IvrAction, PlayPrompts, StopPrompt, Terminal
from acd.ivr.session import DTMF_KEYS
from tests.ivr.helpers import CLOSED_EPOCH, EXAMPLE, OPEN_EPOCH, Driver, load

# More menus, chained by sub-menus, announcements, closed actions and failures.
EXTRA = """
[hours.lunch]
timezone = "America/New_York"
monday = ["06:30-06:31", "07:00-23:00"]
sunday = ["00:00-24:00"]

[ivr.deep]
prompt = "d"
hours = "lunch"
closed = {action = "announce", prompt = "c", then = "sales-menu", announce_opening = true}
timeout_s = 1
digit_timeout_s = 0.5
max_retries = 2
on_failure = {action = "announce", prompt = "f", then = "hangup"}

[ivr.deep.options]
"1" = {action = "menu", target = "main"}
"12" = {action = "menu", target = "deep"}
"123" = {action = "announce", prompt = "x", then = "deep"}
"*" = {action = "back"}
"**" = {action = "repeat"}
"#" = {action = "announce", prompt = "y", then = "back"}
"A" = {action = "hangup"}
"5" = {action = "menu", target = "sales-menu"}
"""

CONFIGS = [
    load(),
    load(EXAMPLE.replace('"0" = {action = "queue", target = "operator"}',
                         '"0" = {action = "menu", target = "deep"}') + EXTRA),
]
EPOCHS = [
    OPEN_EPOCH,
    CLOSED_EPOCH,
    datetime(2026, 3, 2, 11, 29, 30, tzinfo=UTC).timestamp(),  # lunch starts soon (Paris)
    datetime(2026, 3, 2, 11, 30, 40, tzinfo=UTC).timestamp(),  # 06:30:40 in New York
]
PATH_ITEM = re.compile(r"[a-z0-9_-]+:([0-9*#A-D]+|failure|closed)")

ops = st.lists(st.one_of(
    st.tuples(st.just("digit"), st.sampled_from(DTMF_KEYS), st.floats(0, 3)),
    st.tuples(st.just("done"), st.just(""), st.floats(0, 6)),
    st.tuples(st.just("stale_done"), st.just(""), st.floats(0, 1)),
    st.tuples(st.just("timer"), st.just(""), st.floats(0, 8)),
), max_size=40)
STARTS = [(0, "main"), (0, "sales-menu"), (1, "main"), (1, "deep")]


def check_log(log: list[IvrAction]) -> None:
    terminals = [a for a in log if isinstance(a, Terminal)]
    assert len(terminals) == 1, log
    assert log[-1] is terminals[0]
    for item in terminals[0].ivr_path:
        assert PATH_ITEM.fullmatch(item), item
    playing = None
    for a in log:
        if isinstance(a, PlayPrompts):
            assert a.names and (playing is None or a.play_id > playing)
            playing = a.play_id
        elif isinstance(a, StopPrompt):
            assert a.play_id == playing


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(STARTS), st.sampled_from(EPOCHS), ops,
       st.one_of(st.none(), st.integers(0, 40)))
def test_random_inputs_end_in_exactly_one_terminal_action(
        start: tuple[int, str], epoch0: float, steps: list[tuple[str, str, float]],
        hangup_at: int | None) -> None:
    if hangup_at is not None:  # the caller hangs up at some point
        steps = [*steps[:hangup_at], ("hangup", "", 0.5), *steps[hangup_at:]]
    d = Driver(CONFIGS[start[0]], start[1], epoch0=epoch0)
    s = d.session
    d.start()
    for op, key, dt in steps:
        d.now += dt
        if op == "digit":
            s.digit(key, d.now)
        elif op == "done":
            s.prompt_done(d.now)
        elif op == "stale_done":
            s.prompt_done(d.now, play_id=0)
        elif op == "timer":
            s.handle_timer(d.now)
        else:
            s.hangup(d.now)
        d.drain()
    # the caller stops acting: prompts end, timers fire, and the session must end
    for _ in range(200):
        if s.ended:
            break
        if s.state in ("playing", "announcing"):
            d.done(1.0)
        else:
            d.wait()
    assert s.ended
    check_log(d.log)
    assert s.outcome is d.log[-1]
    # and nothing more comes out of it
    for k in "1*#":
        s.digit(k, d.now)
    s.prompt_done(d.now)
    s.hangup(d.now)
    s.handle_timer(d.now + 1000)
    assert d.drain() == []
