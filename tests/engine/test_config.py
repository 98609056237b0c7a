"""Engine configuration: the TOML schema, defaults and errors with dotted keys."""

from __future__ import annotations

import tomllib
from types import MappingProxyType
from typing import Any

import pytest

from acd.engine.config import (
    AgentConfig,
    CallbackConfig,
    EngineConfig,
    OverflowConfig,
    QueueConfig,
    WideningStep,
    engine_config_from_toml,
)
from acd.errors import ConfigError

EXAMPLE = """
[acd]
max_wrapup_s = 300
no_answer_limit = 2
reconcile_after_s = 45
disconnect_to = "break"

[acd.breaks.lunch]
label = "Lunch"

[acd.breaks.recovery]
auto_ready_s = 60

[queues.support]
strategy = "rrmemory"
wrapup_s = 15
ring_timeout_s = 25
max_wait_s = 600
max_len = 50
join_empty = "strict"
leave_when_empty = "yes"
priority = 2
weight = 5
announce_position_every_s = 30
announce_holdtime = true
periodic_announce_every_s = 60
periodic_prompt = "all-agents-busy"
exit_key = "0"
exit_target = "operator"
skills = ["english"]
min_level = 3
skill_widening = [{after_s = 30, min_level = 2}, {after_s = 60, min_level = 1}]
overflow = {action = "queue", target = "backup", keep_enter_time = true}
callback = {offer_after_s = 120, key = "1", expire_s = 7200}

[queues.backup]
overflow = {action = "voicemail", target = "support-box", prompt = "leave-a-message"}

[agents.alice]
name = "Alice Martin"
password_hash = "$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaA"
queues = {support = {level = 3}, backup = 1}
skills = {english = 2}
wrapup_override_s = 20
max_wrapup_s = 60
test = true
"""


def load(text: str) -> EngineConfig:
    data = tomllib.loads(text)
    return engine_config_from_toml(data.get("queues", {}), data.get("agents", {}),
                                   data.get("acd"), file="acd.toml")


def err(queues: dict[str, Any], agents: dict[str, Any] | None = None,
        acd: dict[str, Any] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        engine_config_from_toml(queues, agents or {}, acd, file="acd.toml")
    assert exc.value.file == "acd.toml"
    return exc.value


def test_full_example() -> None:
    cfg = load(EXAMPLE)
    assert (cfg.max_wrapup_s, cfg.no_answer_limit, cfg.reconcile_after_s, cfg.disconnect_to) == (
        300.0, 2, 45.0, "break")
    assert set(cfg.breaks) == {"no-answer", "recovery", "disconnected", "lunch"}
    assert cfg.breaks["recovery"].auto_ready_s == 60.0
    assert cfg.breaks["no-answer"].selectable is False
    q = cfg.queues["support"]
    assert q.skill_widening == (WideningStep(30.0, 2), WideningStep(60.0, 1))
    assert q.floor_level == 1
    assert q.overflow == OverflowConfig("queue", "backup", "", True)
    assert q.callback == CallbackConfig(120.0, "1", "", "", 7200.0)
    assert (q.strategy, q.priority, q.weight, q.skills) == ("rrmemory", 2, 5, ("english",))
    a = cfg.agents["alice"]
    assert dict(a.queues) == {"support": 3, "backup": 1}
    assert a.level_in(q) == 2  # capped by the english skill
    assert a.level_in(cfg.queues["backup"]) == 1
    assert (a.wrapup_override_s, a.max_wrapup_s, a.test, a.name) == (20.0, 60.0, True, "Alice Martin")


def test_defaults() -> None:
    cfg = engine_config_from_toml({"q": {}}, {"a": {"queues": {"q": 1}}}, file="f")
    assert cfg.queues["q"] == QueueConfig("q")
    assert cfg.agents["a"].wrapup_override_s is None
    assert cfg.reconcile_after_s == 60.0


def test_accepts_read_only_mappings_from_acd_config() -> None:
    queues = MappingProxyType({"q": MappingProxyType({"skill_widening": (
        MappingProxyType({"after_s": 10, "min_level": 1}),), "min_level": 2})})
    cfg = engine_config_from_toml(queues, MappingProxyType({}), file="f")
    assert cfg.queues["q"].skill_widening == (WideningStep(10.0, 1),)


@pytest.mark.parametrize("queues,agents,acd,key,reason", [
    ({"q": {"stratgy": "linear"}}, {}, None, "queues.q.stratgy", "did you mean 'strategy'"),
    ({"q": {"strategy": "leastrecent"}}, {}, None, "queues.q.strategy", "is not one of"),
    ({"q": {"strategy": "ring_all"}}, {}, None, "queues.q.strategy", "did you mean 'ring-all'"),
    ({"q": {"wrapup_s": -1}}, {}, None, "queues.q.wrapup_s", "between"),
    ({"q": {"wrapup_s": "10"}}, {}, None, "queues.q.wrapup_s", "expected a number"),
    ({"q": {"max_len": True}}, {}, None, "queues.q.max_len", "expected an integer"),
    ({"Q": {}}, {}, None, "queues.Q", "must match"),
    ({"q": {"join_empty": "maybe"}}, {}, None, "queues.q.join_empty", "is not one of"),
    ({"q": {"exit_key": "12"}}, {}, None, "queues.q.exit_key", "one DTMF key"),
    ({"q": {"min_level": 2, "skill_widening": [{"after_s": 30, "min_level": 2}]}}, {}, None,
     "queues.q.skill_widening[0].min_level", "lower than the queue's min_level"),
    ({"q": {"min_level": 3, "skill_widening": [{"after_s": 30, "min_level": 2},
                                               {"after_s": 20, "min_level": 1}]}}, {}, None,
     "queues.q.skill_widening[1].after_s", "greater than the previous"),
    ({"q": {"min_level": 3, "skill_widening": [{"after_s": 30}]}}, {}, None,
     "queues.q.skill_widening[0].min_level", "required"),
    ({"q": {"overflow": {"action": "queue"}}}, {}, None, "queues.q.overflow.target", "required"),
    ({"q": {"overflow": {"action": "queue", "target": "nope"}}}, {}, None,
     "queues.q.overflow.target", "no such queue"),
    ({"q": {"overflow": {"action": "queue", "target": "r"}},
      "r": {"overflow": {"action": "queue", "target": "q"}}}, {}, None,
     "queues.q.overflow.target", "overflow loop: q -> r -> q"),
    ({"q": {"overflow": {"action": "hangup", "target": "x"}}}, {}, None,
     "queues.q.overflow.target", "not used"),
    ({"q": {"periodic_announce_every_s": 30}}, {}, None, "queues.q.periodic_prompt", "required"),
    ({"q": {"callback": {"offer_after_s": 30}}}, {}, None, "queues.q.callback.key", "required"),
    ({"q": {"exit_key": "1", "callback": {"offer_after_s": 30, "key": "1"}}}, {}, None,
     "queues.q.callback", "also the exit_key"),
    ({"q": {}}, {"a": {"queues": {"qq": 1}}}, None, "agents.a.queues.qq", "did you mean 'q'"),
    ({"q": {}}, {"a": {"queues": {"q": {"level": 11}}}}, None, "agents.a.queues.q.level",
     "between 1 and 10"),
    ({"q": {}}, {"a": {"queues": {"q": {"lvl": 1}}}}, None, "agents.a.queues.q.lvl",
     "did you mean 'level'"),
    ({"q": {}}, {"a": {"password_hash": "hunter2"}}, None, "agents.a.password_hash",
     "never a plain password"),
    ({"q": {}}, {"a": {"wrapup": 3}}, None, "agents.a.wrapup", "unknown key"),
    ({}, {}, {"no_answer_limt": 3}, "acd.no_answer_limt", "did you mean 'no_answer_limit'"),
    ({}, {}, {"disconnect_to": "away"}, "acd.disconnect_to", "is not one of"),
    ({}, {}, {"reconcile_after_s": 2}, "acd.reconcile_after_s", "at least 5"),
    ({}, {}, {"breaks": {"lunch": {"auto_ready": 3}}}, "acd.breaks.lunch.auto_ready",
     "did you mean 'auto_ready_s'"),
])
def test_errors(queues: dict[str, Any], agents: dict[str, Any], acd: dict[str, Any] | None,
                key: str, reason: str) -> None:
    e = err(queues, agents, acd)
    assert e.key == key
    assert reason in e.reason


def test_build_in_code() -> None:
    cfg = EngineConfig.build([QueueConfig("q")], [AgentConfig("a", queues=MappingProxyType({"q": 2}))],
                             no_answer_limit=1)
    assert cfg.no_answer_limit == 1 and "recovery" in cfg.breaks
