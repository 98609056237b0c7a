"""The one base error of the ``acd`` package and its direct kinds."""

from __future__ import annotations

__all__ = ["AcdError", "ConfigError"]


class AcdError(Exception):
    """Base of every error the ``acd`` package raises on purpose."""


class ConfigError(AcdError):
    """A configuration file is invalid; names the file, the key and the reason."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        self.file = file
        self.key = key
        self.reason = reason
        super().__init__(f"{file}: {key}: {reason}")
