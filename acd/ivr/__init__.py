"""The IVR: menus built from configuration, business hours and holiday calendars.

:mod:`acd.ivr.config` reads and validates ``[ivr.NAME]`` and ``[hours.NAME]`` (the TOML
schema is in its docstring), :mod:`acd.ivr.hours` evaluates schedules, and
:mod:`acd.ivr.session` is the sans-IO state table that walks one caller through the menus
and ends with one :class:`acd.ivr.actions.Terminal` action.
"""

from __future__ import annotations

from acd.ivr.actions import Abandoned, Closed, Hangup, IvrAction, PlayPrompts, \
    RouteExternal, RouteToEcho, RouteToQueue, StopPrompt, Terminal
from acd.ivr.config import IvrConfig, Menu, MenuAction, hours_from_toml, ivr_config_from_toml
from acd.ivr.errors import InvalidInput, IvrError, ScheduleError
from acd.ivr.hours import Schedule, TimeRange, build_schedule, say_opening
from acd.ivr.session import IvrSession

__all__ = [
    "Abandoned",
    "Closed",
    "Hangup",
    "InvalidInput",
    "IvrAction",
    "IvrConfig",
    "IvrError",
    "IvrSession",
    "Menu",
    "MenuAction",
    "PlayPrompts",
    "RouteExternal",
    "RouteToEcho",
    "RouteToQueue",
    "Schedule",
    "ScheduleError",
    "StopPrompt",
    "Terminal",
    "TimeRange",
    "build_schedule",
    "hours_from_toml",
    "ivr_config_from_toml",
    "say_opening",
]
