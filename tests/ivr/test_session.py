"""IVR sessions on virtual time: options, sub-menus, retries, barge-in, multi-digit entries,
business hours, races and misuse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from acd.errors import ConfigError
from acd.ivr import Abandoned, Closed, Hangup, InvalidInput, IvrSession, PlayPrompts, \
    RouteExternal, RouteToEcho, RouteToQueue, StopPrompt
from acd.ivr.session import SESSION_TABLE
from tests.ivr.helpers import CLOSED_EPOCH, EXAMPLE, OPEN_EPOCH, Driver, load

MAIN = ("ivr/welcome", "ivr/main-menu")
SALES = ("ivr/sales",)


@pytest.fixture
def d() -> Driver:
    drv = Driver(load())
    assert drv.start() == [PlayPrompts(MAIN, True, 1)]
    return drv


def test_option_routes_to_queue_with_priority_skills_and_path(d: Driver) -> None:
    assert d.done() == []
    assert d.session.state == "waiting" and d.session.get_timer() == d.now + 5
    assert d.press("1") == [RouteToQueue("support", 5, ("billing",), ivr_path=("main:1",))]
    assert d.session.ended and d.session.get_timer() is None
    assert d.session.outcome == d.log[-1]


@pytest.mark.parametrize(("key", "outcome"), [
    ("0", RouteToQueue("operator", None, (), ivr_path=("main:0",))),
    ("4", RouteToEcho(ivr_path=("main:4",))),
    ("9", RouteExternal("+33123456789", "carrier", ivr_path=("main:9",))),
    ("#", Hangup("goodbye", "option", ivr_path=("main:#",))),
])
def test_terminal_options(d: Driver, key: str, outcome: object) -> None:
    d.done()
    assert d.press(key) == [outcome]


def test_sub_menu_and_back(d: Driver) -> None:
    d.done()
    assert d.press("2") == [PlayPrompts(SALES, False, 2)]
    d.done()
    assert d.press("*") == [PlayPrompts(MAIN, True, 3)]  # back to main
    d.done()
    assert d.press("*") == [PlayPrompts(MAIN, True, 4)]  # repeat
    d.done()
    assert d.press("2") == [PlayPrompts(SALES, False, 5)]
    d.done()
    assert d.press("2") == [RouteToQueue("sales", -1, (), ivr_path=(
        "main:2", "sales-menu:*", "main:*", "main:2", "sales-menu:2"))]


def test_announce_then_repeat_and_then_back(d: Driver) -> None:
    d.done()
    assert d.press("3") == [PlayPrompts(("ivr/address",), False, 2)]
    assert d.session.state == "announcing"
    assert d.press("1") == []  # announcements are not interruptible; the digit is dropped
    assert d.done() == [PlayPrompts(MAIN, True, 3)]
    d.done()
    d.press("2")
    d.done()
    assert d.press("3") == [PlayPrompts(("ivr/offers", "ivr/more"), False, 5)]
    assert d.done() == [PlayPrompts(MAIN, True, 6)]  # then = "back"
    assert d.session.ivr_path == ("main:3", "main:2", "sales-menu:3")


def test_no_input_replays_then_on_failure(d: Driver) -> None:
    noinput = ("ivr/noinput", *MAIN)
    for play in (2, 3, 4):
        d.done()
        assert d.wait() == [PlayPrompts(noinput, True, play)]
    d.done()
    assert d.wait() == [RouteToQueue("support", None, (), ivr_path=("main:failure",))]
    assert d.session.stats["noinput"] == 4


def test_invalid_digit_and_mixed_failures_share_the_counter(d: Driver) -> None:
    d.done()
    assert d.press("7") == [PlayPrompts(("ivr/invalid", *MAIN), True, 2)]
    d.done()
    assert d.wait() == [PlayPrompts(("ivr/noinput", *MAIN), True, 3)]
    # barge-in into the replay with another invalid key
    assert d.press("5") == [StopPrompt(3), PlayPrompts(("ivr/invalid", *MAIN), True, 4)]
    d.done()
    assert d.press("8") == [RouteToQueue("support", None, (), ivr_path=("main:failure",))]


def test_a_valid_choice_after_failures_still_works(d: Driver) -> None:
    d.done()
    d.press("7")
    d.done()
    d.wait()
    d.done()
    assert d.press("1")[0].ivr_path == ("main:1",)  # type: ignore[attr-defined]


def test_barge_in_stops_the_prompt(d: Driver) -> None:
    assert d.press("1") == [StopPrompt(1), RouteToQueue("support", 5, ("billing",),
                                                        ivr_path=("main:1",))]
    d.session.prompt_done(d.now, play_id=1)  # a late report of the stopped prompt
    assert d.drain() == []


def test_barge_in_to_a_sub_menu(d: Driver) -> None:
    assert d.press("2") == [StopPrompt(1), PlayPrompts(SALES, False, 2)]
    assert d.session.prompt_done(d.now) is None  # the sub-menu's prompt ended at once
    assert d.session.state == "waiting"


def test_without_barge_in_digits_wait_for_the_prompt_end(d: Driver) -> None:
    d.done()
    d.press("2")
    assert d.press("11") == []  # sales-menu has no barge-in: kept
    assert d.session.state == "playing"
    assert d.done() == [RouteToQueue("sales-de", None, (), ivr_path=("main:2", "sales-menu:11"))]


def test_buffered_digits_after_a_decision_are_dropped(d: Driver) -> None:
    d.done()
    d.press("2")
    d.press("51")
    assert d.done() == [PlayPrompts(("queue/invalid-option", *SALES), False, 3)]
    assert d.session.stats["buffered_dropped"] == 1
    assert d.session.state == "playing"


def test_buffered_ambiguous_prefix_waits_for_more(d: Driver) -> None:
    d.done()
    d.press("2")
    d.press("1")
    d.done()
    assert d.session.state == "collecting" and d.session.get_timer() == d.now + 3
    assert d.press("0") == [RouteToQueue("sales-fr", None, (),
                                         ivr_path=("main:2", "sales-menu:10"))]


@pytest.mark.parametrize(("keys", "queue", "path"), [
    ("10", "sales-fr", "sales-menu:10"),
    ("11", "sales-de", "sales-menu:11"),
    ("1#", "sales", "sales-menu:1"),  # '#' ends the entry
])
def test_multi_digit_entries(d: Driver, keys: str, queue: str, path: str) -> None:
    d.done()
    d.press("2")
    d.done()
    got = d.press(keys)
    assert got == [RouteToQueue(queue, None, (), ivr_path=("main:2", path))]


def test_ambiguous_entry_resolves_at_the_inter_digit_timeout(d: Driver) -> None:
    d.done()
    d.press("2")
    d.done()
    assert d.press("1") == []
    assert d.session.state == "collecting"
    deadline = d.session.get_timer()
    d.session.handle_timer(deadline - 0.01)  # early: nothing
    assert d.drain() == [] and d.session.get_timer() == deadline
    assert d.wait() == [RouteToQueue("sales", None, (), ivr_path=("main:2", "sales-menu:1"))]


def test_unknown_continuation_is_invalid(d: Driver) -> None:
    d.done()
    d.press("2")
    d.done()
    assert d.press("15") == [PlayPrompts(("queue/invalid-option", *SALES), False, 3)]


def test_incomplete_entry_at_the_timeout_is_invalid() -> None:
    cfg = load('[ivr.m]\nprompt = "p"\n[ivr.m.options]\n"12" = {action = "echo"}\n')
    d = Driver(cfg, "m")
    d.start()
    d.done()
    d.press("1")
    assert d.wait() == [PlayPrompts(("queue/invalid-option", "p"), True, 2)]


def test_sub_menu_failure_goes_back_to_main(d: Driver) -> None:
    d.done()
    d.press("2")
    d.done()
    assert d.wait() == [PlayPrompts(("queue/no-input", *SALES), False, 3)]
    d.done()
    assert d.wait() == [PlayPrompts(MAIN, True, 4)]
    assert d.session.ivr_path == ("main:2", "sales-menu:failure")
    d.done()
    assert d.wait() == [PlayPrompts(("ivr/noinput", *MAIN), True, 5)]  # a fresh counter


def test_max_retries_zero() -> None:
    cfg = load('[ivr.m]\nprompt = "p"\nmax_retries = 0\n[ivr.m.options]\n'
               '"1" = {action = "echo"}\n')
    d = Driver(cfg, "m")
    d.start()
    d.done()
    assert d.press("2") == [Hangup("queue/goodbye", "failure", ivr_path=("m:failure",))]


# --------------------------------------------------------------------------- hours


def test_closed_hours_run_the_closed_action() -> None:
    d = Driver(load(), epoch0=CLOSED_EPOCH)  # Sunday 10:00 in Paris
    reopens = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)  # Monday 08:00 CET
    got = d.start()
    assert got == [
        Closed("main", "office", reopens.astimezone(ZoneInfo("Europe/Paris"))),
        PlayPrompts(("ivr/hours/closed", "ivr/hours/we-open", "ivr/hours/tomorrow",
                     "ivr/hours/at", "digits/8", "ivr/hours/a-m"), False, 1),
    ]
    assert got[0].reopens_at.utcoffset() == timedelta(hours=1)  # type: ignore[union-attr]
    assert d.press("1") == []
    assert d.done() == [Hangup(None, "closed", ivr_path=("main:closed",))]


def test_default_closed_action_and_closing_during_the_call() -> None:
    text = EXAMPLE.replace('closed = {action = "announce", prompt = "ivr/hours/closed", '
                           'then = "hangup", announce_opening = true}\n', "")
    text = text.replace("[ivr.sales-menu]\n", '[ivr.sales-menu]\nhours = "office"\n')
    cfg = load(text)
    # Monday 12:29:50 in Paris: open; lunch starts at 12:30
    d = Driver(cfg, epoch0=datetime(2026, 3, 2, 11, 29, 50, tzinfo=UTC).timestamp())
    assert d.start() == [PlayPrompts(MAIN, True, 1)]
    d.done(advance=8)
    got = d.press("2", gap=5)  # 12:30:03: sales-menu is closed now
    assert isinstance(got[0], Closed) and got[0].menu == "sales-menu"
    assert got[1:] == [Hangup("queue/closed", "closed", ivr_path=("main:2", "sales-menu:closed"))]


def test_closed_can_route_to_another_menu() -> None:
    text = EXAMPLE.replace('closed = {action = "announce", prompt = "ivr/hours/closed", '
                           'then = "hangup", announce_opening = true}',
                           'closed = {action = "announce", prompt = "ivr/hours/closed", '
                           'then = "sales-menu"}')
    with pytest.raises(ConfigError, match="can loop without caller input"):
        load(text)  # closed main -> sales-menu -> (on_failure) main -> closed ...
    text = text.replace('on_failure = {action = "menu", target = "main"}',
                        'on_failure = {action = "hangup"}')
    d = Driver(load(text), epoch0=CLOSED_EPOCH)
    got = d.start()
    assert isinstance(got[0], Closed)
    assert got[1] == PlayPrompts(("ivr/hours/closed",), False, 1)
    assert d.done() == [PlayPrompts(SALES, False, 2)]
    d.done()
    assert d.press("2") == [RouteToQueue("sales", -1, (), ivr_path=("main:closed",
                                                                     "sales-menu:2"))]


def test_a_menu_without_hours_is_always_open() -> None:
    d = Driver(load(), "sales-menu", epoch0=CLOSED_EPOCH)
    assert d.start() == [PlayPrompts(SALES, False, 1)]


# --------------------------------------------------------------------------- races, misuse


def test_caller_hangup_is_terminal_and_later_inputs_are_ignored(d: Driver) -> None:
    d.done()
    d.press("2")
    d.session.hangup(d.now)
    assert d.drain() == [Abandoned("sales-menu", ivr_path=("main:2",))]
    d.session.digit("1", d.now)
    d.session.prompt_done(d.now)
    d.session.hangup(d.now)
    d.session.handle_timer(d.now + 100)
    assert d.drain() == []
    assert d.session.stats["ended:digit"] == 1


def test_hangup_before_start() -> None:
    s = IvrSession(load(), "main", 0.0, clock_to_epoch=lambda now: OPEN_EPOCH + now)
    s.hangup(1.0)
    assert s.actions() == [Abandoned("", ivr_path=())]


def test_digit_after_the_timeout_goes_to_the_replay(d: Driver) -> None:
    d.done()
    d.wait()  # the timeout won the race: the no-input replay started
    assert d.press("1") == [StopPrompt(2), RouteToQueue("support", 5, ("billing",),
                                                        ivr_path=("main:1",))]


def test_stale_prompt_done_is_ignored(d: Driver) -> None:
    d.session.prompt_done(d.now, play_id=7)
    assert d.session.state == "playing"
    assert d.session.stats["stale_prompt_done"] == 1
    d.session.prompt_done(d.now, play_id=1)
    assert d.session.state == "waiting"
    d.session.prompt_done(d.now)  # again: ignored in "waiting"
    assert d.session.state == "waiting"


def test_misuse_raises() -> None:
    s = IvrSession(load(), "main", 0.0, clock_to_epoch=lambda now: OPEN_EPOCH + now)
    with pytest.raises(InvalidInput, match="'digit' while idle"):
        s.digit("1", 0.0)
    with pytest.raises(InvalidInput):
        s.prompt_done(0.0)
    s.start(0.0)
    with pytest.raises(InvalidInput, match="'start' while playing"):
        s.start(0.0)
    with pytest.raises(InvalidInput, match="not a DTMF key"):
        s.digit("x", 0.0)
    with pytest.raises(InvalidInput):
        s.digit("12", 0.0)


def test_lower_case_dtmf_letters_are_accepted() -> None:
    cfg = load('[ivr.m]\nprompt = "p"\n[ivr.m.options]\n"A" = {action = "echo"}\n')
    d = Driver(cfg, "m")
    d.start()
    assert d.press("a")[-1] == RouteToEcho(ivr_path=("m:A",))


def test_the_table_lists_every_state_and_input() -> None:
    states = {s for s, _ in SESSION_TABLE}
    assert states == {"idle", "playing", "waiting", "collecting", "announcing", "ended"}
    for state in states - {"idle"}:
        assert (state, "hangup") in SESSION_TABLE
        assert (state, "digit") in SESSION_TABLE
        assert (state, "prompt_done") in SESSION_TABLE
