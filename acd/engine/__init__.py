"""The ACD engine: a sans-IO model of agents, queues and calls (events in, actions out).

See :mod:`acd.engine.engine` for the driving interface, :mod:`acd.engine.config` for the
TOML schema, :mod:`acd.engine.events`, :mod:`acd.engine.actions` and
:mod:`acd.engine.records` for the vocabulary.
"""

from __future__ import annotations

from acd.engine.config import EngineConfig, engine_config_from_toml
from acd.engine.core import EngineError, InvalidTransition
from acd.engine.engine import Engine
from acd.engine.strategies import Strategy, register_strategy

__all__ = [
    "Engine",
    "EngineConfig",
    "EngineError",
    "InvalidTransition",
    "Strategy",
    "engine_config_from_toml",
    "register_strategy",
]
