"""The ACD engine's configuration: frozen dataclasses and their TOML schema.

:func:`engine_config_from_toml` validates the raw ``[queues.NAME]``, ``[agents.NAME]`` and
``[acd]`` tables and raises :class:`acd.errors.ConfigError` with the file, the dotted key
(``queues.support.skill_widening[1].min_level``) and the reason. Unknown keys are errors with
a suggestion. Durations are seconds (integer or float); 0 means "off" where noted.

Skill levels: an agent has a **level 1..10 per queue (higher = better)**. A queue may also
require ``skills``; the agent's *effective* level in the queue is then the minimum of its queue
level and its level in each required skill (an agent lacking one is not a member). A waiting
call accepts agents whose effective level is at least the call's current ``min_level``, which
starts at the queue's ``min_level`` and is lowered by ``skill_widening`` steps on timers.

```toml
[acd]
max_wrapup_s = 600          # cap on every wrap-up (queue value or agent override)
no_answer_limit = 3         # consecutive unanswered offers -> break "no-answer" (0 = never)
reject_delay_s = 10         # a declined/unanswered call is not re-offered to that agent sooner
reconcile_after_s = 60      # a call the server stops confirming is ended "reconciled" (0 = off)
connection_grace_s = 30     # an agent whose connection dropped keeps state this long
disconnect_to = "logged-out"  # after the grace: "logged-out" or "break" (reason "disconnected")
aht_default_s = 180         # handle time the wait estimator assumes before observing calls

[acd.breaks.lunch]          # break reasons; "no-answer", "recovery" (auto_ready_s = 120) and
label = "Lunch"             # "disconnected" always exist and may be redefined here
auto_ready_s = 0            # > 0: the agent becomes available again by itself after this long
selectable = true           # offered to agents in their UI (system reasons are not)

[queues.support]
strategy = "longest-idle"   # longest-idle, rrmemory, fewest-calls, least-talk-time, ring-all,
                            # linear (agents' order in [agents]), random, or any strategy
                            # registered (register_strategy) before the config is read
wrapup_s = 10
ring_timeout_s = 20
max_wait_s = 0              # 0 = wait forever; else the overflow rule applies
max_len = 0                 # 0 = unlimited; callers present (waiting, ringing, awaiting a
                            # callback) beyond it are rejected ("full")
join_empty = "yes"          # "no": reject when no logged-in member could ever serve the call;
                            # "strict": also when none is staffed (all on break)
leave_when_empty = "no"     # same values; waiting callers then get the overflow rule
priority = 0                # default caller priority (-100..100, higher is served first)
weight = 0                  # -100..100: added to callers' priority when compared ACROSS queues
music = "default"           # music-on-hold class
ringback_when_offered = true  # Ringback instead of music while an agent is being offered
announce_position_every_s = 0   # > 0: position announced at entry, then every N s if changed
announce_holdtime = false   # position announcements include the estimated wait
periodic_announce_every_s = 0
periodic_prompt = ""
exit_key = ""               # one DTMF key that leaves the queue (EXITWITHKEY)
exit_target = ""            # where the server sends a caller who pressed it
skills = []                 # extra skills an agent needs ([agents.X.skills])
min_level = 3               # 1..10, level accepted at entry (widening lowers it)
skill_widening = [{after_s = 30, min_level = 2}, {after_s = 60, min_level = 1}]
prefer_higher_level = true  # offer the best-levelled available agents first
overflow = {action = "hangup", target = "", prompt = "", keep_enter_time = true}
                            # at max_wait_s and when leaving an empty queue. action: "queue"
                            # (target queue; keep_enter_time keeps the caller's place),
                            # "voicemail" (target mailbox), "callback" (keeps the position),
                            # "hangup" (prompt, then hang up). No loops between queues.
callback = {offer_after_s = 60, key = "1", expire_s = 14400, attempts = 3, retry_after_s = 300}
                            # also prompt = "" and confirm_prompt = "" (the default prompts)
                            # after offer_after_s the caller hears prompt; pressing key turns
                            # the call into a callback that keeps its place in the queue; an
                            # unreached customer is dialled again after retry_after_s, up to
                            # `attempts` dials in all (the callback keeps its place meanwhile)
hours = ""                  # a [hours.NAME] schedule (see the IVR section); outside it a caller
closed = {action = "hangup", prompt = "queue/closed"}   # gets `closed`: hangup, queue, voicemail

[agents.alice]
name = "Alice Martin"
password_hash = "$scrypt$..."   # or "$argon2id$..."; optional here
queues = {support = {level = 3}, sales = 1}   # table or plain level, 1..10
skills = {french = 2}
wrapup_override_s = 15      # replaces every queue's wrapup_s for this agent
max_wrapup_s = 60           # caps this agent's wrap-up (with [acd] max_wrapup_s)
test = false                # robot agent: its records are flagged and kept out of statistics
```
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from acd.engine.strategies import strategy_names
from acd.engine.toml_reader import Table, suggest
from acd.errors import ConfigError

__all__ = [
    "EngineConfig",
    "QueueConfig",
    "AgentConfig",
    "BreakReason",
    "WideningStep",
    "OverflowConfig",
    "CallbackConfig",
    "engine_config_from_toml",
]

log = logging.getLogger(__name__)

NAME = re.compile(r"[a-z0-9_-]+")
NAME_RULE = "[a-z0-9_-]+"
DTMF = re.compile(r"[0-9*#A-D]")
MAX_LEVEL = 10
JOIN_RULES = ("yes", "no", "strict")
OVERFLOW_ACTIONS = ("hangup", "queue", "voicemail", "callback")
DISCONNECT_TO = ("logged-out", "break")
BUILTIN_BREAKS = ("no-answer", "recovery", "disconnected")

ACD_KEYS = ("max_wrapup_s", "no_answer_limit", "reject_delay_s", "reconcile_after_s",
            "connection_grace_s", "disconnect_to", "aht_default_s", "breaks")
BREAK_KEYS = ("label", "auto_ready_s", "selectable")
QUEUE_KEYS = ("strategy", "wrapup_s", "ring_timeout_s", "max_wait_s", "max_len", "join_empty",
              "leave_when_empty", "priority", "weight", "music", "ringback_when_offered",
              "announce_position_every_s", "announce_holdtime", "periodic_announce_every_s",
              "periodic_prompt", "exit_key", "exit_target", "skills", "min_level",
              "skill_widening", "prefer_higher_level", "overflow", "callback", "hours", "closed")
WIDENING_KEYS = ("after_s", "min_level")
OVERFLOW_KEYS = ("action", "target", "prompt", "keep_enter_time")
CALLBACK_KEYS = ("offer_after_s", "key", "prompt", "confirm_prompt", "expire_s", "attempts",
                 "retry_after_s")
AGENT_KEYS = ("name", "password_hash", "queues", "skills", "wrapup_override_s",
              "max_wrapup_s", "test")
MEMBER_KEYS = ("level",)
HASH_PREFIXES = ("$scrypt$", "$argon2id$", "$argon2i$", "$argon2d$", "scrypt:")


def _frozen(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class WideningStep:
    """After ``after_s`` seconds in the queue, accept agents of ``min_level`` and above."""

    after_s: float
    min_level: int


@dataclass(frozen=True)
class OverflowConfig:
    action: str = "hangup"
    target: str = ""
    prompt: str = ""
    keep_enter_time: bool = True


@dataclass(frozen=True)
class CallbackConfig:
    offer_after_s: float = 0.0  # 0: never offered by key (overflow "callback" still works)
    key: str = ""
    prompt: str = ""
    confirm_prompt: str = ""
    expire_s: float = 14400.0
    attempts: int = 3  # dial attempts before the callback is "callback-failed"
    retry_after_s: float = 300.0  # between attempts; the callback keeps its place meanwhile


@dataclass(frozen=True)
class QueueConfig:
    name: str
    strategy: str = "longest-idle"
    wrapup_s: float = 10.0
    ring_timeout_s: float = 20.0
    max_wait_s: float = 0.0
    max_len: int = 0
    join_empty: str = "yes"
    leave_when_empty: str = "no"
    priority: int = 0
    weight: int = 0
    music: str = "default"
    ringback_when_offered: bool = True
    announce_position_every_s: float = 0.0
    announce_holdtime: bool = False
    periodic_announce_every_s: float = 0.0
    periodic_prompt: str = ""
    exit_key: str = ""
    exit_target: str = ""
    skills: tuple[str, ...] = ()
    min_level: int = 1
    skill_widening: tuple[WideningStep, ...] = ()
    prefer_higher_level: bool = True
    overflow: OverflowConfig = OverflowConfig()
    callback: CallbackConfig | None = None
    hours: str = ""  # a [hours.NAME] schedule; outside it callers get `closed` instead
    closed: OverflowConfig = OverflowConfig()

    @property
    def floor_level(self) -> int:
        """The lowest level this queue ever accepts (after all widening)."""
        return self.skill_widening[-1].min_level if self.skill_widening else self.min_level


@dataclass(frozen=True)
class AgentConfig:
    id: str
    name: str = ""
    password_hash: str = ""
    queues: Mapping[str, int] = field(default_factory=lambda: _frozen({}), hash=False)
    skills: Mapping[str, int] = field(default_factory=lambda: _frozen({}), hash=False)
    wrapup_override_s: float | None = None
    max_wrapup_s: float | None = None
    test: bool = False

    def level_in(self, queue: QueueConfig) -> int:
        """Effective level in ``queue`` (0 = not a member): queue level capped by its skills."""
        level = self.queues.get(queue.name, 0)
        for skill in queue.skills:
            level = min(level, self.skills.get(skill, 0))
        return level


@dataclass(frozen=True)
class BreakReason:
    name: str
    label: str = ""
    auto_ready_s: float = 0.0  # 0: the agent returns by hand
    selectable: bool = True


def _builtin_breaks() -> dict[str, BreakReason]:
    return {
        "no-answer": BreakReason("no-answer", "No answer", 0.0, False),
        "recovery": BreakReason("recovery", "Recovery", 120.0, False),
        "disconnected": BreakReason("disconnected", "Disconnected", 0.0, False),
    }


@dataclass(frozen=True)
class EngineConfig:
    queues: Mapping[str, QueueConfig] = field(hash=False)
    agents: Mapping[str, AgentConfig] = field(hash=False)
    breaks: Mapping[str, BreakReason] = field(hash=False)
    max_wrapup_s: float = 600.0
    no_answer_limit: int = 3
    reject_delay_s: float = 10.0
    reconcile_after_s: float = 60.0
    connection_grace_s: float = 30.0
    disconnect_to: str = "logged-out"
    aht_default_s: float = 180.0

    @classmethod
    def build(cls, queues: Iterable[QueueConfig], agents: Iterable[AgentConfig],
              breaks: Iterable[BreakReason] = (), **options: Any) -> EngineConfig:
        """Assemble a config in code (tests, the simulator); built-in break reasons added."""
        all_breaks = _builtin_breaks()
        all_breaks.update({b.name: b for b in breaks})
        return cls(queues=_frozen({q.name: q for q in queues}),
                   agents=_frozen({a.id: a for a in agents}),
                   breaks=_frozen(all_breaks), **options)


# --------------------------------------------------------------------------- TOML


def engine_config_from_toml(queues: Mapping[str, Any], agents: Mapping[str, Any],
                            acd: Mapping[str, Any] | None = None, *,
                            file: str = "") -> EngineConfig:
    """Validate the raw ``[queues]``, ``[agents]`` and ``[acd]`` tables read from ``file``."""
    top = Table(file, acd or {}, "acd", ACD_KEYS)
    breaks = _breaks(top.table("breaks", known=None))
    qtable = Table(file, queues, "queues", known=None)
    queue_cfgs = {name: _queue(Table(file, _as_table(qtable, name, data), qtable.key(name),
                                     QUEUE_KEYS), name)
                  for name, data in qtable.names(NAME, NAME_RULE)}
    _check_overflow_targets(qtable, queue_cfgs)
    atable = Table(file, agents, "agents", known=None)
    agent_cfgs = {name: _agent(Table(file, _as_table(atable, name, data), atable.key(name),
                                     AGENT_KEYS), name, queue_cfgs)
                  for name, data in atable.names(NAME, NAME_RULE)}
    config = EngineConfig(
        queues=_frozen(queue_cfgs),
        agents=_frozen(agent_cfgs),
        breaks=_frozen(breaks),
        max_wrapup_s=top.seconds("max_wrapup_s", 600.0, 0.0, 86400.0),
        no_answer_limit=top.integer("no_answer_limit", 3, 0, 1000),
        reject_delay_s=top.seconds("reject_delay_s", 10.0, 0.0, 3600.0),
        reconcile_after_s=top.seconds("reconcile_after_s", 60.0, 0.0, 86400.0),
        connection_grace_s=top.seconds("connection_grace_s", 30.0, 0.0, 3600.0),
        disconnect_to=top.choice("disconnect_to", "logged-out", DISCONNECT_TO),
        aht_default_s=top.seconds("aht_default_s", 180.0, 1.0, 86400.0),
    )
    if 0 < config.reconcile_after_s < 5:
        top.fail("reconcile_after_s", "must be 0 (off) or at least 5 seconds")
    log.debug("engine config %s: %d queues, %d agents, %d break reasons",
              file, len(queue_cfgs), len(agent_cfgs), len(breaks))
    return config


def _as_table(parent: Table, name: str, data: Any) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        parent.fail(name, f"expected a table ([{parent.key(name)}])")
    return data


def _breaks(t: Table) -> dict[str, BreakReason]:
    out = _builtin_breaks()
    for name, data in t.names(NAME, NAME_RULE):
        b = Table(t.file, _as_table(t, name, data), t.key(name), BREAK_KEYS)
        base = out.get(name, BreakReason(name))
        out[name] = BreakReason(
            name=name,
            label=b.string("label", base.label or name),
            auto_ready_s=b.seconds("auto_ready_s", base.auto_ready_s, 0.0, 86400.0),
            selectable=b.boolean("selectable", base.selectable),
        )
    return out


def _queue(t: Table, name: str) -> QueueConfig:
    strategies = strategy_names()
    strategy = t.choice("strategy", "longest-idle", strategies)
    min_level = t.integer("min_level", 1, 1, MAX_LEVEL)
    widening = _widening(t, min_level)
    exit_key = t.string("exit_key", "", pattern=DTMF, rule="one DTMF key (0-9, *, #, A-D)")
    callback = _callback(t) if t.has("callback") else None
    if callback and exit_key and callback.key == exit_key:
        t.fail("callback", f"key {exit_key!r} is also the exit_key")
    overflow = _overflow(t, name)
    if t.has("exit_target") and not exit_key:
        t.fail("exit_target", "only with exit_key")
    periodic = t.seconds("periodic_announce_every_s", 0.0, 0.0, 3600.0)
    prompt = t.string("periodic_prompt", "")
    if periodic and not prompt:
        t.fail("periodic_prompt", "required when periodic_announce_every_s > 0")
    return QueueConfig(
        name=name,
        strategy=strategy,
        wrapup_s=t.seconds("wrapup_s", 10.0, 0.0, 86400.0),
        ring_timeout_s=t.seconds("ring_timeout_s", 20.0, 1.0, 600.0),
        max_wait_s=t.seconds("max_wait_s", 0.0, 0.0, 86400.0),
        max_len=t.integer("max_len", 0, 0, 1_000_000),
        join_empty=t.choice("join_empty", "yes", JOIN_RULES),
        leave_when_empty=t.choice("leave_when_empty", "no", JOIN_RULES),
        priority=t.integer("priority", 0, -100, 100),
        weight=t.integer("weight", 0, -100, 100),
        music=t.string("music", "default"),
        ringback_when_offered=t.boolean("ringback_when_offered", True),
        announce_position_every_s=t.seconds("announce_position_every_s", 0.0, 0.0, 3600.0),
        announce_holdtime=t.boolean("announce_holdtime", False),
        periodic_announce_every_s=periodic,
        periodic_prompt=prompt,
        exit_key=exit_key,
        exit_target=t.string("exit_target", ""),
        skills=t.strings("skills", NAME, NAME_RULE),
        min_level=min_level,
        skill_widening=widening,
        prefer_higher_level=t.boolean("prefer_higher_level", True),
        overflow=overflow,
        callback=callback,
        hours=t.string("hours", "", pattern=NAME, rule=NAME_RULE),
        closed=_overflow(t, name, "closed"),
    )


def _widening(t: Table, min_level: int) -> tuple[WideningStep, ...]:
    steps: list[WideningStep] = []
    last_after, last_level = 0.0, min_level
    for i, s in enumerate(t.tables("skill_widening", WIDENING_KEYS)):
        for key in WIDENING_KEYS:
            if not s.has(key):
                s.fail(key, "required key is missing")
        after = s.seconds("after_s", 0.0, 0.001, 86400.0)
        level = s.integer("min_level", 1, 1, MAX_LEVEL)
        if after <= last_after:
            s.fail("after_s", f"must be greater than the previous step's ({last_after:g})")
        if level >= last_level:
            what = "the queue's min_level" if i == 0 else "the previous step's"
            s.fail("min_level", f"must be lower than {what} ({last_level})")
        steps.append(WideningStep(after, level))
        last_after, last_level = after, level
    return tuple(steps)


def _overflow(t: Table, name: str, key: str = "overflow") -> OverflowConfig:
    o = t.table(key, OVERFLOW_KEYS)
    action = o.choice("action", "hangup", OVERFLOW_ACTIONS if key == "overflow" else ("hangup", "queue", "voicemail"))
    target = o.string("target", "")
    if action == "queue":
        if not target:
            o.fail("target", "required for action = 'queue' (the queue to move to)")
        if target == name:
            o.fail("target", "a queue cannot overflow to itself")
    elif action == "voicemail":
        if not target:
            o.fail("target", "required for action = 'voicemail' (the mailbox)")
    elif target:
        o.fail("target", f"not used with action = {action!r}")
    if o.has("keep_enter_time") and action != "queue":
        o.fail("keep_enter_time", "only for action = 'queue'")
    return OverflowConfig(action, target, o.string("prompt", ""),
                          o.boolean("keep_enter_time", True))


def _callback(t: Table) -> CallbackConfig:
    c = t.table("callback", CALLBACK_KEYS)
    offer_after = c.seconds("offer_after_s", 0.0, 0.0, 86400.0)
    key = c.string("key", "", pattern=DTMF, rule="one DTMF key (0-9, *, #, A-D)")
    if offer_after and not key:
        c.fail("key", "required when offer_after_s > 0")
    if key and not offer_after:
        c.fail("offer_after_s", "required (> 0) when a key is set")
    return CallbackConfig(offer_after, key, c.string("prompt", ""),
                          c.string("confirm_prompt", ""),
                          c.seconds("expire_s", 14400.0, 60.0, 7 * 86400.0),
                          c.integer("attempts", 3, 1, 10),
                          c.seconds("retry_after_s", 300.0, 10.0, 86400.0))


def _check_overflow_targets(qtable: Table, queues: Mapping[str, QueueConfig]) -> None:
    for name, q in queues.items():
        if q.overflow.action != "queue":
            continue
        key = f"{qtable.key(name)}.overflow.target"
        if q.overflow.target not in queues:
            hint = suggest(q.overflow.target, queues)
            raise ConfigError(qtable.file, key, f"no such queue {q.overflow.target!r}"
                              + (f"; did you mean {hint!r}?" if hint else ""))
        seen = [name]
        nxt = q.overflow.target
        while nxt and nxt not in seen:
            seen.append(nxt)
            nq = queues[nxt]
            nxt = nq.overflow.target if nq.overflow.action == "queue" else ""
        if nxt:
            raise ConfigError(qtable.file, key, "overflow loop: " + " -> ".join(seen + [nxt]))


def _agent(t: Table, name: str, queues: Mapping[str, QueueConfig]) -> AgentConfig:
    pw = t.string("password_hash", "")
    if pw and (not pw.startswith(HASH_PREFIXES) or any(c.isspace() for c in pw)):
        t.fail("password_hash", "expected an scrypt or argon2 hash string "
               "($scrypt$..., $argon2id$...), never a plain password")
    members: dict[str, int] = {}
    qt = t.table("queues", known=None)
    for qname, value in qt.names(NAME, NAME_RULE):
        if qname not in queues:
            hint = suggest(qname, queues)
            qt.fail(qname, "no such queue" + (f"; did you mean {hint!r}?" if hint else ""))
        if isinstance(value, Mapping):
            members[qname] = Table(t.file, value, qt.key(qname), MEMBER_KEYS).integer(
                "level", 1, 1, MAX_LEVEL)
        else:
            members[qname] = qt.integer(qname, 1, 1, MAX_LEVEL)
    skills: dict[str, int] = {}
    st = t.table("skills", known=None)
    for skill, _ in st.names(NAME, NAME_RULE):
        skills[skill] = st.integer(skill, 1, 1, MAX_LEVEL)
    override = t.seconds("wrapup_override_s", -1.0, 0.0, 86400.0) if t.has("wrapup_override_s") else None
    cap = t.seconds("max_wrapup_s", 0.0, 0.0, 86400.0) if t.has("max_wrapup_s") else None
    cfg = AgentConfig(id=name, name=t.string("name", name), password_hash=pw,
                      queues=_frozen(members), skills=_frozen(skills),
                      wrapup_override_s=override, max_wrapup_s=cap, test=t.boolean("test", False))
    for qname in members:
        if cfg.level_in(queues[qname]) == 0:
            log.warning("%s: agent %s lacks a skill of queue %s (%s) and will get no calls from it",
                        t.file, name, qname, ", ".join(queues[qname].skills))
    return cfg
