"""Typed reading of raw TOML tables for the engine configuration.

A :class:`Table` wraps one TOML table (a ``dict`` from :mod:`tomllib`, or the read-only
``MappingProxyType`` that :mod:`acd.config` keeps for ``[queues]`` and ``[agents]``) with its
dotted key path. Every getter checks the type and range and raises
:class:`acd.errors.ConfigError` naming the file, the full dotted key and the reason; unknown
keys are rejected with the closest known key as a suggestion (difflib).
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time
from typing import Any, NoReturn

from acd.errors import ConfigError

__all__ = ["Table", "join_key", "suggest", "describe"]

log = logging.getLogger(__name__)

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def join_key(path: str, name: str | int) -> str:
    """``path`` + ``name`` as a dotted TOML key (array items as ``[i]``, odd names quoted)."""
    if isinstance(name, int):
        return f"{path}[{name}]"
    part = name if _BARE_KEY.fullmatch(name) else json.dumps(name)
    return f"{path}.{part}" if path else part


def suggest(word: str, options: Iterable[str]) -> str | None:
    """The closest of ``options`` to ``word`` (case-insensitive), if any is close enough."""
    by_lower = {o.lower(): o for o in options}
    hits = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[hits[0]] if hits else None


def not_one_of(value: str, options: Sequence[str]) -> str:
    hint = suggest(value, options)
    reason = f"{value!r} is not one of: {', '.join(options)}"
    return f"{reason}; did you mean {hint!r}?" if hint else reason


def describe(value: Any) -> str:
    """A short description of a TOML value for error messages."""
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, (datetime, date, time)):
        return f"date/time {value.isoformat()}"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


class Table:
    """One TOML table being read; ``known=None`` accepts any key (a table of names)."""

    def __init__(self, file: str, data: Mapping[str, Any], path: str,
                 known: Iterable[str] | None) -> None:
        self.file = file
        self.data = data
        self.path = path
        if known is not None:
            known = tuple(known)
            for name in data:
                if name not in known:
                    hint = suggest(name, known)
                    reason = (f"unknown key; did you mean {hint!r}?" if hint
                              else f"unknown key; expected one of: {', '.join(known)}")
                    self.fail(name, reason)

    def key(self, name: str | int) -> str:
        return join_key(self.path, name)

    def fail(self, name: str | int, reason: str) -> NoReturn:
        raise ConfigError(self.file, self.key(name), reason)

    def fail_here(self, reason: str) -> NoReturn:
        raise ConfigError(self.file, self.path, reason)

    def has(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str, default: Any, kind: type | tuple[type, ...], what: str) -> Any:
        if name not in self.data:
            return default
        value = self.data[name]
        bad_bool = isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))
        if not isinstance(value, kind) or bad_bool:
            self.fail(name, f"expected {what}, got {describe(value)}")
        return value

    def string(self, name: str, default: str = "", *, required: bool = False,
               pattern: re.Pattern[str] | None = None, rule: str = "") -> str:
        if required and name not in self.data:
            self.fail(name, "required key is missing")
        value: str = self.get(name, default, str, "a string")
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            self.fail(name, "must not contain control characters (newline, tab, ...)")
        if pattern is not None and value and not pattern.fullmatch(value):
            self.fail(name, f"must match {rule or pattern.pattern}, got {value!r}")
        return value

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        value: int = self.get(name, default, int, "an integer")
        if not lo <= value <= hi:
            self.fail(name, f"must be between {lo} and {hi}, got {value}")
        return value

    def seconds(self, name: str, default: float, lo: float = 0.0, hi: float = 86400.0) -> float:
        """A duration in seconds: integer or float, finite, within [lo, hi]."""
        value = self.get(name, default, (int, float), "a number of seconds")
        value = float(value)
        if not math.isfinite(value) or not lo <= value <= hi:
            self.fail(name, f"must be between {lo:g} and {hi:g} seconds, got {value:g}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value: bool = self.get(name, default, bool, "a boolean (true or false)")
        return value

    def choice(self, name: str, default: str, options: Sequence[str]) -> str:
        value = self.string(name, default)
        if value not in options:
            self.fail(name, not_one_of(value, options))
        return value

    def strings(self, name: str, pattern: re.Pattern[str] | None = None,
                rule: str = "") -> tuple[str, ...]:
        value = self.get(name, (), (list, tuple), "an array of strings")
        out: list[str] = []
        for i, item in enumerate(value):
            key = join_key(self.key(name), i)
            if not isinstance(item, str):
                raise ConfigError(self.file, key, f"expected a string, got {describe(item)}")
            if pattern is not None and not pattern.fullmatch(item):
                raise ConfigError(self.file, key, f"must match {rule or pattern.pattern}, got {item!r}")
            if item in out:
                raise ConfigError(self.file, key, f"{item!r} is listed twice")
            out.append(item)
        return tuple(out)

    def table(self, name: str, known: Iterable[str] | None, *, required: bool = False) -> Table:
        """Sub-table ``name`` (empty if absent)."""
        if required and name not in self.data:
            self.fail(name, "required table is missing")
        value = self.get(name, {}, Mapping, "a table")
        return Table(self.file, value, self.key(name), known)

    def tables(self, name: str, known: Iterable[str]) -> list[Table]:
        """An array of inline tables, e.g. ``skill_widening = [{after_s = 30, min_level = 2}]``."""
        value = self.get(name, (), (list, tuple), "an array of tables")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise ConfigError(self.file, join_key(self.key(name), i),
                                  f"expected a table, got {describe(item)}")
            out.append(Table(self.file, item, join_key(self.key(name), i), known))
        return out

    def names(self, pattern: re.Pattern[str], rule: str) -> list[tuple[str, Any]]:
        """The (name, value) pairs of a table of named entries, names checked."""
        for name in self.data:
            if not pattern.fullmatch(name):
                self.fail(name, f"names must match {rule}")
        return list(self.data.items())
