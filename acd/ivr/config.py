"""IVR menus and business hours: frozen dataclasses and their TOML schema.

:func:`ivr_config_from_toml` validates the raw ``[ivr.NAME]`` and ``[hours.NAME]`` tables
and raises :class:`acd.errors.ConfigError` with the file, the dotted key
(``ivr.main.options.1.target``, ``hours.office.monday[1]``) and the reason. Unknown keys
are errors with a suggestion. Durations are seconds (integer or float).

```toml
[hours.office]                      # a named schedule
timezone = "Europe/Paris"           # IANA zone name (required)
monday = ["08:00-12:30", "13:30-18:00"]   # any weekday: ranges "HH:MM-HH:MM"; missing = closed
saturday = ["09:00-12:00"]          # 24:00 (or 00:00) as an end is midnight; an end before
friday = ["08:00-18:00", "22:00-24:00"]   # the start is overnight ("22:00-06:00" runs into
                                    # the next day). Ranges of a day must not overlap.
holidays = ["2026-12-25", "2026-12-31 14:00-24:00"]   # closed: whole days (also TOML dates)
                                    # or partial closures, within one date each
open_exceptions = ["2026-12-24 09:00-12:00"]   # extra openings; they win over holidays,
                                    # holidays win over the weekly ranges

[ivr.main]                          # a menu; names [a-z0-9_-]+ (not repeat, back, hangup)
prompt = ["ivr/welcome", "ivr/main-menu"]   # required: prompt names (or one name), played in
                                    # order, and again on every retry
hours = "office"                    # optional schedule; when closed, `closed` runs instead
closed = {action = "announce", prompt = "ivr/hours/closed", then = "hangup", announce_opening = true}
                                    # default {action = "hangup", prompt = "queue/closed"};
                                    # any action but back; announce_opening (announce or
                                    # hangup) appends "we open tomorrow at 9 a.m." (openings
                                    # less than 7 days away)
timeout_s = 5                       # after the prompt ends, wait this long for a first digit
digit_timeout_s = 3                 # inter-digit wait while an entry could still grow
max_retries = 3                     # replays after an invalid or missing choice (0..10);
                                    # the next failure runs on_failure
invalid_prompt = "queue/invalid-option"   # played before the menu on a retry ("" = none)
noinput_prompt = "queue/no-input"
on_failure = {action = "queue", target = "support"}   # default: hangup with "queue/goodbye"
barge_in = true                     # a digit stops the prompt; false: digits pressed during
                                    # the prompt are kept and read when it ends

[ivr.main.options]                  # keys: 1 to 8 DTMF keys (0-9 * # A-D); "1" and "10"
                                    # may both exist (digit_timeout_s decides)
"1" = {action = "queue", target = "support", priority = 5, skills = ["billing"]}
                                    # priority: -100..100, default the queue's own; skills:
                                    # extra skills the call needs (RouteToQueue.skills)
"2" = {action = "menu", target = "sales-menu"}
"3" = {action = "announce", prompt = "ivr/address", then = "repeat"}   # then: repeat (the
                                    # default), back, hangup or a menu name
"4" = {action = "echo"}
"9" = {action = "external", number = "+33123456789", trunk = "carrier", ring_timeout_s = 30}
                                    # dialled through the trunk's proxy (required) and
                                    # bridged to the caller; ring_timeout_s: 1..300, default 30
"*" = {action = "repeat"}           # play this menu again
"8" = {action = "back"}             # the menu the caller came from (top menu: repeat)
"#" = {action = "hangup", prompt = "queue/goodbye"}   # prompt optional
```

Checks beyond types: menu, schedule and (when the caller passes the sets) queue, trunk and
prompt names exist, and an external number's trunk has a proxy to dial through; ranges are well formed and do not overlap; the zone exists; and no chain
of ``on_failure`` / ``closed`` actions (which run without the caller pressing anything) leads
back to a menu already in the chain, which would keep a silent caller forever. ``back`` is
not allowed there. Options are caller input, so "announce then main" from ``main`` is fine.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from acd.engine.toml_reader import Table, describe, join_key, suggest
from acd.errors import ConfigError
from acd.ivr.errors import IvrError, ScheduleError
from acd.ivr.hours import DAYS, Schedule, build_schedule

__all__ = [
    "MenuAction",
    "Menu",
    "IvrConfig",
    "ivr_config_from_toml",
    "hours_from_toml",
]

log = logging.getLogger(__name__)

NAME = re.compile(r"[a-z0-9_-]+")
NAME_RULE = "[a-z0-9_-]+"
KEYS = re.compile(r"[0-9*#A-D]{1,8}")
KEYS_RULE = "1 to 8 DTMF keys (0-9, *, #, A-D)"
PROMPT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)*")
PROMPT_RULE = "a prompt name such as \"ivr/welcome\" (no extension)"
NUMBER = re.compile(r"\+?[0-9*#]{1,32}")
RESERVED = ("repeat", "back", "hangup")

HOURS_KEYS = ("timezone", *DAYS, "holidays", "open_exceptions")
MENU_KEYS = ("prompt", "hours", "closed", "timeout_s", "digit_timeout_s", "max_retries",
             "invalid_prompt", "noinput_prompt", "on_failure", "barge_in", "options")
ACTIONS = ("queue", "menu", "announce", "echo", "external", "repeat", "back", "hangup")
ACTION_KEYS: dict[str, tuple[str, ...]] = {
    "queue": ("target", "priority", "skills"),
    "menu": ("target",),
    "announce": ("prompt", "then", "announce_opening"),
    "echo": (),
    "external": ("number", "trunk", "ring_timeout_s"),
    "repeat": (),
    "back": (),
    "hangup": ("prompt", "announce_opening"),
}
ALL_ACTION_KEYS = ("action", "target", "priority", "skills", "prompt", "then", "number",
                   "trunk", "ring_timeout_s", "announce_opening")
NO_INPUT = ("on_failure", "closed")  # contexts that run without the caller pressing a key


@dataclass(frozen=True)
class MenuAction:
    """What an option, ``on_failure`` or ``closed`` does; fields unused by ``action`` stay empty."""

    action: str
    target: str = ""  # queue (queue) or menu (menu)
    priority: int | None = None  # queue: None = the queue's default
    skills: tuple[str, ...] = ()  # queue: skills the call requires
    prompt: tuple[str, ...] = ()  # announce: the prompts; hangup: at most one
    then: str = ""  # announce: "repeat", "back", "hangup" or a menu name
    number: str = ""  # external
    trunk: str = ""  # external
    ring_timeout_s: float = 30.0  # external: CANCEL the far leg when not answered by then
    announce_opening: bool = False  # closed only: append "we open ... at ..."


DEFAULT_CLOSED = MenuAction("hangup", prompt=("queue/closed",))
DEFAULT_FAILURE = MenuAction("hangup", prompt=("queue/goodbye",))


@dataclass(frozen=True)
class Menu:
    name: str
    prompt: tuple[str, ...]
    options: Mapping[str, MenuAction] = field(default_factory=dict, hash=False)
    hours: str = ""
    closed: MenuAction = DEFAULT_CLOSED
    timeout_s: float = 5.0
    digit_timeout_s: float = 3.0
    max_retries: int = 3
    invalid_prompt: str = "queue/invalid-option"
    noinput_prompt: str = "queue/no-input"
    on_failure: MenuAction = DEFAULT_FAILURE
    barge_in: bool = True


@dataclass(frozen=True)
class IvrConfig:
    menus: Mapping[str, Menu] = field(hash=False)
    schedules: Mapping[str, Schedule] = field(default_factory=dict, hash=False)

    def menu(self, name: str) -> Menu:
        try:
            return self.menus[name]
        except KeyError:
            hint = suggest(name, self.menus)
            raise IvrError(f"no IVR menu {name!r}" + (f"; did you mean {hint!r}?" if hint
                                                      else "")) from None

    def schedule_of(self, menu: Menu) -> Schedule | None:
        return self.schedules[menu.hours] if menu.hours else None


# --------------------------------------------------------------------------- TOML


def hours_from_toml(hours: Mapping[str, Any] | None, *, file: str = "") -> dict[str, Schedule]:
    """Validate the raw ``[hours]`` table: schedule name → :class:`Schedule`."""
    top = Table(file, hours or {}, "hours", known=None)
    out: dict[str, Schedule] = {}
    for name, data in top.names(NAME, NAME_RULE):
        t = Table(file, _as_table(top, name, data), top.key(name), HOURS_KEYS)
        zone = t.string("timezone", required=True)
        days = {day: _list(t, day) for day in DAYS if t.has(day)}
        try:
            out[name] = build_schedule(name, zone, days, _list(t, "holidays"),
                                       _list(t, "open_exceptions"))
        except ScheduleError as exc:
            raise ConfigError(file, _sub_key(t.path, exc.key), exc.reason) from None
    return out


def ivr_config_from_toml(ivr: Mapping[str, Any], hours: Mapping[str, Any] | None = None, *,
                         file: str = "", known_queues: Collection[str] | None = None,
                         known_trunks: Collection[str] | None = None,
                         known_prompts: Collection[str] | None = None,
                         dialable_trunks: Collection[str] | None = None) -> IvrConfig:
    """Validate the raw ``[ivr]`` and ``[hours]`` tables read from ``file``. The ``known_*``
    sets, when given, are checked against (prompts: only those written in the file);
    ``dialable_trunks``, when given, are the known trunks with a proxy (external numbers)."""
    schedules = hours_from_toml(hours, file=file)
    top = Table(file, ivr, "ivr", known=None)
    entries = top.names(NAME, NAME_RULE)
    names = [name for name, _ in entries]
    ctx = _Ctx(file, names, schedules, known_queues, known_trunks, known_prompts, dialable_trunks)
    menus: dict[str, Menu] = {}
    for name, data in entries:
        if name in RESERVED:
            top.fail(name, f"{name!r} is reserved (an action name); choose another menu name")
        menus[name] = _menu(Table(file, _as_table(top, name, data), top.key(name), MENU_KEYS),
                            name, ctx)
    _check_loops(top, menus)
    log.debug("ivr config %s: %d menus, %d schedules", file, len(menus), len(schedules))
    return IvrConfig(MappingProxyType(menus), MappingProxyType(dict(schedules)))


@dataclass(frozen=True)
class _Ctx:
    file: str
    menus: list[str]
    schedules: Mapping[str, Schedule]
    queues: Collection[str] | None
    trunks: Collection[str] | None
    prompts: Collection[str] | None
    dialable: Collection[str] | None = None  # trunks with a proxy


def _as_table(parent: Table, name: str, data: Any) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        parent.fail(name, f"expected a table ([{parent.key(name)}]), got {describe(data)}")
    return data


def _list(t: Table, name: str) -> list[Any]:
    value = t.get(name, [], (list, tuple), "an array")
    return list(value)


def _sub_key(path: str, key: str) -> str:
    """``hours.office`` + ``monday[1]`` → ``hours.office.monday[1]``."""
    return f"{path}.{key}"


def _no_such(kind: str, value: str, options: Collection[str]) -> str:
    hint = suggest(value, options)
    return f"no such {kind} {value!r}" + (f"; did you mean {hint!r}?" if hint else "")


def _prompt_name(t: Table, key: str | int, value: Any, ctx: _Ctx) -> str:
    if not isinstance(value, str):
        t.fail(key, f"expected a prompt name, got {describe(value)}")
    if not PROMPT.fullmatch(value) or ".." in value.split("/"):
        t.fail(key, f"must be {PROMPT_RULE}, got {value!r}")
    if ctx.prompts is not None and value not in ctx.prompts:
        t.fail(key, _no_such("prompt", value, ctx.prompts))
    return value


def _prompts(t: Table, name: str, ctx: _Ctx, *, required: bool) -> tuple[str, ...]:
    """A prompt name or a non-empty array of them."""
    if not t.has(name):
        if required:
            t.fail(name, "required key is missing")
        return ()
    value = t.data[name]
    if isinstance(value, str):
        return (_prompt_name(t, name, value, ctx),)
    if not isinstance(value, (list, tuple)) or not value:
        t.fail(name, f"expected a prompt name or a non-empty array of them, got {describe(value)}")
    sub = Table(t.file, {}, t.key(name), known=None)
    return tuple(_prompt_name(sub, i, item, ctx) for i, item in enumerate(value))


def _optional_prompt(t: Table, name: str, default: str, ctx: _Ctx) -> str:
    if not t.has(name):
        return default
    value = t.data[name]
    if value == "":
        return ""
    return _prompt_name(t, name, value, ctx)


def _menu(t: Table, name: str, ctx: _Ctx) -> Menu:
    prompt = _prompts(t, "prompt", ctx, required=True)
    hours = t.string("hours", "")
    if hours and hours not in ctx.schedules:
        t.fail("hours", _no_such("schedule", hours, ctx.schedules)
               + ("" if ctx.schedules else " (no [hours.NAME] table is defined)"))
    if t.has("closed") and not hours:
        t.fail("closed", "only with hours (a menu without a schedule is never closed)")
    closed = _action(t, "closed", ctx, name, DEFAULT_CLOSED)
    on_failure = _action(t, "on_failure", ctx, name, DEFAULT_FAILURE)
    timeout = t.seconds("timeout_s", 5.0, 0.5, 600.0)
    digit_timeout = t.seconds("digit_timeout_s", 3.0, 0.5, 60.0)
    opts = t.table("options", known=None, required=True)
    options: dict[str, MenuAction] = {}
    for key, data in opts.names(KEYS, KEYS_RULE):
        if not isinstance(data, Mapping):
            opts.fail(key, f"expected an inline table such as {{action = \"queue\", "
                           f"target = \"support\"}}, got {describe(data)}")
        options[key] = _action(opts, key, ctx, name, None)
    if not options:
        opts.fail_here("a menu needs at least one option")
    return Menu(
        name=name,
        prompt=prompt,
        options=MappingProxyType(options),
        hours=hours,
        closed=closed,
        timeout_s=timeout,
        digit_timeout_s=digit_timeout,
        max_retries=t.integer("max_retries", 3, 0, 10),
        invalid_prompt=_optional_prompt(t, "invalid_prompt", Menu.invalid_prompt, ctx),
        noinput_prompt=_optional_prompt(t, "noinput_prompt", Menu.noinput_prompt, ctx),
        on_failure=on_failure,
        barge_in=t.boolean("barge_in", True),
    )


def _action(parent: Table, name: str, ctx: _Ctx, menu: str,
            default: MenuAction | None) -> MenuAction:
    """An option (``default`` None) or the ``on_failure`` / ``closed`` table of a menu."""
    if default is not None and not parent.has(name):
        return default
    a = parent.table(name, ALL_ACTION_KEYS)
    if not a.has("action"):
        a.fail("action", "required key is missing")
    kind = a.choice("action", "", ACTIONS)
    for key in a.data:
        if key != "action" and key not in ACTION_KEYS[kind]:
            a.fail(key, f"not used with action = {kind!r}")
    no_input = default is not None
    if no_input and kind == "back":
        a.fail("action", f"'back' is not allowed in {name} (it runs without caller input)")
    if a.has("announce_opening") and name != "closed":
        a.fail("announce_opening", "only in a menu's closed action")
    out = MenuAction(kind, announce_opening=a.boolean("announce_opening", False))
    if kind in ("queue", "menu"):
        target = a.string("target", required=True, pattern=NAME, rule=NAME_RULE)
        if kind == "menu" and target not in ctx.menus:
            a.fail("target", _no_such("menu", target, ctx.menus))
        if kind == "queue" and ctx.queues is not None and target not in ctx.queues:
            a.fail("target", _no_such("queue", target, ctx.queues))
        out = replace(out, target=target)
        if kind == "queue":
            priority = a.integer("priority", 0, -100, 100) if a.has("priority") else None
            out = replace(out, priority=priority, skills=a.strings("skills", NAME, NAME_RULE))
    elif kind == "announce":
        then = a.string("then", "hangup" if no_input else "repeat")
        if then == "back" and no_input:
            a.fail("then", f"'back' is not allowed in {name} (it runs without caller input)")
        if then not in RESERVED and then not in ctx.menus:
            a.fail("then", "expected repeat, back, hangup or a menu name; "
                           + _no_such("menu", then, ctx.menus))
        out = replace(out, prompt=_prompts(a, "prompt", ctx, required=True), then=then)
    elif kind == "hangup":
        prompt = _prompts(a, "prompt", ctx, required=False)
        if len(prompt) > 1:
            a.fail("prompt", "one prompt name (for several, use action = \"announce\" with "
                             "then = \"hangup\")")
        out = replace(out, prompt=prompt)
    elif kind == "external":
        number = a.string("number", required=True, pattern=NUMBER,
                          rule="a phone number (digits, optional leading +)")
        trunk = a.string("trunk", required=True, pattern=NAME, rule=NAME_RULE)
        if ctx.trunks is not None and trunk not in ctx.trunks:
            a.fail("trunk", _no_such("trunk", trunk, ctx.trunks))
        if ctx.dialable is not None and trunk not in ctx.dialable:
            a.fail("trunk", f"trunk {trunk!r} has no proxy: external numbers are dialled through "
                            f"the trunk's proxy (set trunks.{trunk}.proxy)")
        out = replace(out, number=number, trunk=trunk,
                      ring_timeout_s=a.seconds("ring_timeout_s", MenuAction.ring_timeout_s, 1.0, 300.0))
    return out


# --------------------------------------------------------------------------- loops


def no_input_target(menu: Menu, action: MenuAction) -> str | None:
    """The menu ``action`` leads to without caller input (None: it ends the IVR)."""
    if action.action == "menu":
        return action.target
    if action.action == "repeat":
        return menu.name
    if action.action == "announce":
        if action.then == "repeat":
            return menu.name
        return None if action.then == "hangup" else action.then
    return None


def _check_loops(top: Table, menus: Mapping[str, Menu]) -> None:
    edges: dict[str, list[tuple[str, str]]] = {}
    for name, menu in menus.items():
        edges[name] = []
        for ctx in NO_INPUT:
            if ctx == "closed" and not menu.hours:
                continue
            target = no_input_target(menu, getattr(menu, ctx))
            if target is not None:
                edges[name].append((ctx, target))
    done: set[str] = set()
    trail: list[tuple[str, str]] = []
    active: list[str] = []

    def visit(name: str) -> None:
        active.append(name)
        for ctx, nxt in edges[name]:
            trail.append((name, ctx))
            if nxt in active:
                cycle = trail[active.index(nxt):]
                first, first_ctx = cycle[0]
                steps = " -> ".join(f"{m} ({c})" for m, c in cycle)
                raise ConfigError(top.file, join_key(top.key(first), first_ctx),
                                  f"can loop without caller input: {steps} -> {nxt}")
            if nxt not in done:
                visit(nxt)
            trail.pop()
        active.pop()
        done.add(name)

    for name in menus:
        if name not in done:
            visit(name)
