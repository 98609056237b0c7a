"""The callback-number dialogue on virtual time: confirm the caller ID, enter another number,
timeouts, retries, barge-in, cancellation, misuse, a property over random inputs; then the
dialogue inside the contact center (real engine, fake caller feed)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.callback_entry import ENTRY_TABLE, CallbackEntry, Cancelled, Confirmed, InvalidInput, \
    PlayPrompts, StopPrompt
from acd.contact_center import ContactCenter
from acd.engine import actions as A
from acd.engine import events as E
from acd.engine.config import engine_config_from_toml
from acd.engine.records import QueueLogEntry

AT, ENTER, INVALID = "queue/callback-at", "queue/callback-enter-number", "queue/callback-invalid"
CHANGE, REENTER = "queue/callback-confirm-or-change", "queue/callback-confirm-or-reenter"


def say(number: str) -> tuple[str, ...]:
    return tuple(f"digits/{d}" for d in number)


class Driver:
    """A dialogue plus a virtual clock; every call returns the actions it produced."""

    def __init__(self, caller_id: str = "5551234", **kw: object) -> None:
        self.now = 100.0
        self.entry = CallbackEntry(caller_id, self.now, **kw)  # type: ignore[arg-type]
        self.log: list[object] = []

    def _out(self) -> list[object]:
        out = self.entry.actions()
        self.log += out
        return out

    @property
    def play_id(self) -> int:
        return max(a.play_id for a in self.log if isinstance(a, PlayPrompts))

    def start(self) -> list[object]:
        self.entry.start(self.now)
        return self._out()

    def done(self, after: float = 0.0) -> list[object]:
        """The current prompt ends ``after`` seconds from now."""
        self.now += after
        self.entry.prompt_done(self.now, self.play_id)
        return self._out()

    def press(self, keys: str, gap: float = 0.3) -> list[object]:
        out: list[object] = []
        for k in keys:
            self.now += gap
            self.entry.digit(k, self.now)
            out += self._out()
        return out

    def wait(self, seconds: float) -> list[object]:
        """Let ``seconds`` pass, firing the deadline whenever it is due."""
        end = self.now + seconds
        out: list[object] = []
        while (t := self.entry.get_timer()) is not None and t <= end:
            self.now = t
            self.entry.handle_timer(self.now)
            out += self._out()
        self.now = end
        return out


def confirm_prompt(number: str, last: str, play_id: int) -> PlayPrompts:
    return PlayPrompts((AT, *say(number), last), play_id)


def test_confirm_the_default_number() -> None:
    d = Driver("5551234")
    assert d.start() == [confirm_prompt("5551234", CHANGE, 1)]
    assert d.done(6.0) == [] and d.entry.get_timer() == d.now + 8
    assert d.press("1") == [Confirmed("5551234")]
    assert d.entry.ended and d.entry.get_timer() is None and d.entry.outcome == Confirmed("5551234")
    assert d.press("1") == [] and d.done() == []  # late inputs are harmless


def test_plus_is_kept_for_dialling_but_not_read() -> None:
    d = Driver(" +33123456789 ")
    assert d.start() == [confirm_prompt("33123456789", CHANGE, 1)]
    d.done(5)
    assert d.press("1") == [Confirmed("+33123456789")]


def test_change_the_number() -> None:
    d = Driver()
    d.start()
    d.done(6)
    assert d.press("2") == [PlayPrompts((ENTER,), 2)]
    d.done(3.5)
    assert d.press("5550199") == [] and d.entry.state == "collecting"
    assert d.entry.get_timer() == pytest.approx(d.now + 5)
    assert d.press("#") == [confirm_prompt("5550199", REENTER, 3)]
    d.done(7)
    assert d.press("1") == [Confirmed("5550199")]


def test_reenter_after_reading_back() -> None:
    d = Driver()
    d.start(), d.done(6), d.press("2"), d.done(3), d.press("123#"), d.done(4)
    assert d.press("2") == [PlayPrompts((ENTER,), 4)]
    d.press("0612345678#")
    d.done(8)
    assert d.press("1") == [Confirmed("0612345678")]
    assert d.entry.failures == 0  # a change of mind is not a failure


def test_inter_digit_timeout_ends_the_entry() -> None:
    d = Driver()
    d.start(), d.done(6), d.press("2"), d.done(3)
    d.press("5550")
    assert d.wait(4.9) == []
    assert d.wait(0.2) == [confirm_prompt("5550", REENTER, 3)]


def test_too_short_is_invalid_then_entered_again() -> None:
    d = Driver()
    d.start(), d.done(6), d.press("2"), d.done(3)
    assert d.press("12#") == [PlayPrompts((INVALID, ENTER), 3)]
    assert d.entry.failures == 1 and d.entry.state == "entry-playing"
    d.done(5)
    assert d.press("123#") == [confirm_prompt("123", REENTER, 4)]


def test_too_short_by_timeout_and_empty_hash() -> None:
    d = Driver(min_digits=4)
    d.start(), d.done(6), d.press("2"), d.done(3)
    d.press("123")
    assert d.wait(5) == [PlayPrompts((INVALID, ENTER), 3)]
    d.done(5)
    assert d.press("#") == [PlayPrompts((INVALID, ENTER), 4)]
    assert d.entry.failures == 2


def test_fifteen_digits_end_the_entry() -> None:
    d = Driver()
    d.start(), d.done(6), d.press("2"), d.done(3)
    assert d.press("12345678901234") == []
    assert d.press("5") == [confirm_prompt("123456789012345", REENTER, 3)]
    d.press("6")  # a 16th key barges into the read-back: not a valid choice
    assert d.log[-2:] == [StopPrompt(3), PlayPrompts(("queue/invalid-option", AT, *say("123456789012345"),
                                                      REENTER), 4)]


def test_digits_barge_in_on_prompts() -> None:
    d = Driver()
    d.start()
    assert d.press("2") == [StopPrompt(1), PlayPrompts((ENTER,), 2)]
    assert d.press("4") == [StopPrompt(2)] and d.entry.state == "collecting"
    assert d.press("44#") == [confirm_prompt("444", REENTER, 3)]
    assert d.press("1") == [StopPrompt(3), Confirmed("444")]
    assert d.done() == []  # no report is due for a stopped prompt, and a late one is ignored


def test_stale_prompt_done_is_ignored() -> None:
    d = Driver()
    d.start(), d.press("2")
    d.entry.prompt_done(d.now, 1)  # the read-back that was stopped
    assert d.entry.actions() == [] and d.entry.state == "entry-playing"
    assert d.entry.stats["stale_prompt_done"] == 1


def test_no_answer_repeats_the_prompt_then_three_failures_cancel() -> None:
    d = Driver()
    d.start()
    d.done(10)
    assert d.wait(8) == [confirm_prompt("5551234", CHANGE, 2)]
    d.done(10)
    assert d.press("9") == [PlayPrompts(("queue/invalid-option", AT, *say("5551234"), CHANGE), 3)]
    d.done(12)
    assert d.wait(7.9) == []
    assert d.wait(0.1) == [Cancelled("failures")]
    assert d.entry.failures == 3 and d.entry.get_timer() is None


def test_failures_count_across_entry_and_confirm() -> None:
    d = Driver()
    d.start(), d.done(6), d.press("2"), d.done(3)
    assert d.wait(8) == [PlayPrompts((ENTER,), 3)]  # no input: the entry prompt again
    d.done(3)
    d.press("1#")
    d.done(5)
    d.press("555#")
    d.done(8)
    assert d.wait(8) == [Cancelled("failures")]


@pytest.mark.parametrize("when", ["playing", "confirm", "entry-playing", "collecting"])
def test_star_cancels_at_any_time(when: str) -> None:
    d = Driver()
    d.start()
    if when != "playing":
        d.done(6)
    if when in ("entry-playing", "collecting"):
        d.press("2")
    if when == "collecting":
        d.done(3), d.press("55")
    out = d.press("*")
    assert out[-1] == Cancelled("caller") and d.entry.ended
    assert (StopPrompt(d.play_id) in out) == (when in ("playing", "entry-playing"))


@pytest.mark.parametrize("caller", ["", "anonymous", "peer", "555-1234", "+", "12", "1234567890123456"])
def test_no_default_goes_straight_to_entry(caller: str) -> None:
    d = Driver(caller)
    assert d.entry.default == ""
    assert d.start() == [PlayPrompts((ENTER,), 1)]
    d.done(3)
    d.press("5550199#")
    d.done(7)
    assert d.press("1") == [Confirmed("5550199")]


def test_letters_are_ignored_while_entering() -> None:
    d = Driver("")
    d.start()
    assert d.press("A") == [StopPrompt(1)] and d.entry.get_timer() == pytest.approx(d.now + 8)
    d.press("12B3#")
    assert d.entry.number == "123" and d.entry.stats["letter-ignored"] == 2


def test_unlisted_inputs_raise() -> None:
    d = Driver()
    with pytest.raises(InvalidInput, match="'digit' while idle"):
        d.entry.digit("1", d.now)
    with pytest.raises(InvalidInput, match="not a DTMF key"):
        d.entry.digit("x", d.now)
    with pytest.raises(InvalidInput, match="not a DTMF key"):
        d.entry.digit("12", d.now)
    d.start()
    with pytest.raises(InvalidInput, match="'start' while confirm-playing"):
        d.start()
    d.press("1")
    with pytest.raises(InvalidInput, match="'start' while ended"):
        d.start()
    assert ("idle", "digit") not in ENTRY_TABLE
    with pytest.raises(ValueError):
        CallbackEntry("", 0.0, min_digits=0)


def test_early_timer_does_nothing() -> None:
    d = Driver()
    d.start(), d.done(6)
    d.entry.handle_timer(d.now + 7.9)
    assert d.entry.actions() == [] and d.entry.state == "confirm-waiting"


# -- property: random keys, prompt ends and timers --------------------------------------------

ops = st.lists(st.one_of(
    st.tuples(st.just("digit"), st.sampled_from("0123456789*#ABCD"), st.floats(0, 3)),
    st.tuples(st.just("done"), st.just(""), st.floats(0, 6)),
    st.tuples(st.just("stale_done"), st.just(""), st.floats(0, 1)),
    st.tuples(st.just("timer"), st.just(""), st.floats(0, 10)),
), max_size=50)


@settings(max_examples=400, deadline=None)
@given(caller=st.sampled_from(["5551234", "+4930123", "", "anonymous", "12"]), steps=ops)
def test_random_inputs_end_in_exactly_one_terminal(caller: str, steps: list[tuple[str, str, float]]) -> None:
    entry = CallbackEntry(caller, 0.0)
    now = 0.0
    entry.start(now)
    log = entry.actions()
    playing: int | None = log[-1].play_id  # type: ignore[union-attr]

    def step(kind: str, key: str, dt: float) -> None:
        nonlocal now, playing
        now += dt
        if kind == "digit":
            entry.digit(key, now)
        elif kind == "done" and playing is not None:
            entry.prompt_done(now, playing)
            playing = None
        elif kind == "stale_done":
            entry.prompt_done(now, -1)
        elif kind == "timer" and (t := entry.get_timer()) is not None:
            now = max(now, t)
            entry.handle_timer(now)
        for a in entry.actions():
            log.append(a)
            if isinstance(a, PlayPrompts):
                playing = a.play_id
            elif isinstance(a, StopPrompt):
                assert a.play_id == playing
                playing = None

    for kind, key, dt in steps:
        step(kind, key, dt)
    for _ in range(20):  # the caller stops acting: prompts end, timers fire
        if entry.ended:
            break
        step("done" if playing is not None else "timer", "", 0.5)
    assert entry.ended and entry.get_timer() is None
    terminals = [a for a in log if isinstance(a, (Confirmed, Cancelled))]
    assert len(terminals) == 1 and log[-1] is terminals[0]
    if isinstance(terminals[0], Confirmed):
        number = terminals[0].number.lstrip("+")
        assert number.isdigit() and 3 <= len(number) <= 15
    assert entry.failures <= 3


# -- in the contact center: a fake caller feed, the real engine, virtual time -----------------


class FakeFeed:
    """What the caller hears, as a list of announcements; ``end(now)`` ends the current one."""

    def __init__(self) -> None:
        self.played: list[tuple[str, ...]] = []
        self.on_done = None
        self.stopped = 0
        self.base = "silence"

    def announce(self, names: list[str], on_done=None) -> bool:  # noqa: ANN001
        self.played.append(tuple(names))
        self.on_done = on_done
        return True

    def stop_prompt(self) -> None:
        self.stopped += 1
        self.on_done = None

    def end(self, now: float) -> None:
        done, self.on_done = self.on_done, None
        if done is not None:
            done(now)

    def music(self) -> None:
        self.base = "music"

    def ringback(self) -> None:
        self.base = "ringback"

    def connect_agent(self, robot: bool) -> None:
        self.base = "connected"


class Center:
    def __init__(self, caller: str = "5551234") -> None:
        cfg = engine_config_from_toml({"support": {"callback": {"offer_after_s": 1, "key": "1"},
                                                   "periodic_announce_every_s": 3,
                                                   "periodic_prompt": "queue/please-hold"}},
                                      {"alice": {"queues": {"support": 1}}}, None, file="t.toml")
        self.feed = FakeFeed()
        self.records: list[object] = []
        self.scheduled: list[A.CallbackScheduled] = []
        self.cc = ContactCenter(cfg, epoch=0.0, hangup=lambda c, r: None,
                                feed_for=lambda c: self.feed if c == "c1" else None,
                                on_record=self.records.append)
        self.cc.callbacks = type("Dialler", (), {"scheduled": lambda _, a: self.scheduled.append(a)})()
        self.now = 0.0
        self.cc.start(self.now)
        self.cc.enter("c1", "support", caller, self.now)
        self.run(1.5)  # the callback offer is made at 1 s
        assert self.feed.played[-1] == ("queue/callback-offer",)

    def run(self, seconds: float) -> None:
        """Let time pass, firing the contact center's one timer whenever it is due."""
        end = self.now + seconds
        while (t := self.cc.get_timer()) is not None and t <= end:
            self.now = max(self.now, t)
            self.cc.handle_timer(self.now)
        self.now = end

    def press(self, keys: str) -> None:
        for k in keys:
            self.run(0.2)
            self.cc.digit("c1", k, self.now)


def test_center_runs_the_dialogue_and_requests_the_callback() -> None:
    c = Center()
    c.press("1")
    assert c.cc.dialogues["c1"].state == "confirm-playing"
    assert c.feed.played[-1] == (AT, *say("5551234"), CHANGE)
    rearmed: list[float] = []
    c.cc.changed = lambda: rearmed.append(c.now)  # the server re-arms its one timer
    c.run(4)
    assert c.feed.played[-1] == (AT, *say("5551234"), CHANGE)  # no periodic announcement over it
    c.feed.end(c.now)
    assert rearmed == [c.now] and c.cc.get_timer() <= c.now + 8  # the prompt's end re-arms the timer
    c.run(8.1)  # no answer: read back again
    assert c.feed.played[-1] == (AT, *say("5551234"), CHANGE) and len(c.feed.played) >= 3
    c.press("2")
    assert c.feed.stopped == 1 and c.feed.played[-1] == (ENTER,)
    c.press("5550199#")
    assert c.feed.played[-1] == (AT, *say("5550199"), REENTER)
    assert not c.scheduled
    c.press("1")
    assert [a.number for a in c.scheduled] == ["5550199"] and not c.cc.dialogues
    assert ("queue/please-hold",) not in c.feed.played
    logged = [r for r in c.records if isinstance(r, QueueLogEntry) and r.event == "CALLBACK"]
    assert len(logged) == 1 and logged[0].data[-1] == "5550199"


def test_center_passes_other_keys_to_the_engine() -> None:
    c = Center()
    c.press("5")
    assert not c.cc.dialogues and c.cc.engine.stats["call:queued:digit-ignored"] == 1
    c.cc.callback_offers.clear()  # an offer the center did not see: the engine's own callback
    c.press("1")
    assert not c.cc.dialogues and [a.number for a in c.scheduled] == ["5551234"]


def test_center_drops_the_dialogue_when_an_agent_is_offered() -> None:
    c = Center()
    c.press("1")
    c.cc.agent_command("alice", "login", c.now)
    c.cc.agent_command("alice", "ready", c.now)
    assert not c.cc.dialogues and c.feed.stopped == 1  # the ringing agent wins
    assert [o.call for o in c.cc.offers["alice"]] == ["c1"]
    assert c.cc._dialogue_timer() is None  # no polling left
    c.feed.end(c.now)  # a late report of the stopped prompt is harmless
    assert not c.scheduled


def test_center_cancel_keeps_the_caller_waiting_and_hangup_drops() -> None:
    c = Center()
    c.press("1*")
    assert not c.cc.dialogues and not c.scheduled and c.cc.engine.call_view("c1").state == "queued"
    c.run(3)
    assert c.feed.played[-1] == ("queue/please-hold",)  # announcements are back
    c.press("1")  # the offer still stands
    assert "c1" in c.cc.dialogues
    c.cc.caller_gone("c1", c.now)
    assert not c.cc.dialogues and "c1" not in c.cc.callback_offers
    c.cc.engine.handle(E.CallsAlive(frozenset()), c.now)  # nothing left that refers to c1
