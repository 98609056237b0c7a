"""The IVR's errors, under :class:`acd.errors.AcdError`."""

from __future__ import annotations

from acd.errors import AcdError

__all__ = ["IvrError", "ScheduleError", "InvalidInput"]


class IvrError(AcdError):
    """Base of the errors of :mod:`acd.ivr`."""


class ScheduleError(IvrError, ValueError):
    """A business-hours schedule that cannot be built; ``key`` names the faulty entry
    relative to the schedule (``"monday[1]"``, ``"holidays[0]"``, ``"timezone"``)."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


class InvalidInput(IvrError):
    """An input the session's current state does not accept: our misuse (a bug to fix)."""
