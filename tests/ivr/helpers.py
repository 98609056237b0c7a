"""Shared IVR test material: the example configuration and a virtual-time driver."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from typing import Any

from acd.ivr import IvrAction, IvrConfig, IvrSession, ivr_config_from_toml

EXAMPLE = """
[hours.office]
timezone = "Europe/Paris"
monday = ["08:00-12:30", "13:30-18:00"]
tuesday = ["08:00-12:30", "13:30-18:00"]
wednesday = ["08:00-12:30", "13:30-18:00"]
thursday = ["08:00-12:30", "13:30-18:00"]
friday = ["08:00-12:30", "13:30-18:00"]
saturday = ["09:00-12:00"]
holidays = ["2026-12-25", "2026-12-31 14:00-24:00", "2027-01-01"]
open_exceptions = ["2026-12-27 10:00-12:00"]

[ivr.main]
prompt = ["ivr/welcome", "ivr/main-menu"]
hours = "office"
closed = {action = "announce", prompt = "ivr/hours/closed", then = "hangup", announce_opening = true}
timeout_s = 5
digit_timeout_s = 3
max_retries = 3
invalid_prompt = "ivr/invalid"
noinput_prompt = "ivr/noinput"
on_failure = {action = "queue", target = "support"}
barge_in = true

[ivr.main.options]
"1" = {action = "queue", target = "support", priority = 5, skills = ["billing"]}
"2" = {action = "menu", target = "sales-menu"}
"3" = {action = "announce", prompt = "ivr/address", then = "repeat"}
"4" = {action = "echo"}
"9" = {action = "external", number = "+33123456789", trunk = "carrier"}
"0" = {action = "queue", target = "operator"}
"*" = {action = "repeat"}
"#" = {action = "hangup", prompt = "goodbye"}

[ivr.sales-menu]
prompt = "ivr/sales"
barge_in = false
max_retries = 1
on_failure = {action = "menu", target = "main"}

[ivr.sales-menu.options]
"1" = {action = "queue", target = "sales"}
"10" = {action = "queue", target = "sales-fr"}
"11" = {action = "queue", target = "sales-de"}
"2" = {action = "queue", target = "sales", priority = -1}
"3" = {action = "announce", prompt = ["ivr/offers", "ivr/more"], then = "back"}
"*" = {action = "back"}
"""

# Monday 2026-03-02 10:00 Europe/Paris (UTC+1): the office is open.
OPEN_EPOCH = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()
# Sunday 2026-03-01 10:00 Paris: closed, opens Monday 08:00.
CLOSED_EPOCH = datetime(2026, 3, 1, 9, 0, tzinfo=UTC).timestamp()


def load(text: str = EXAMPLE, **kwargs: Any) -> IvrConfig:
    data = tomllib.loads(text)
    return ivr_config_from_toml(data.get("ivr", {}), data.get("hours"), file="ivr.toml",
                                **kwargs)


class Driver:
    """An :class:`IvrSession` on virtual time: ``now`` starts at 1000 (monotonic-like) and
    wall time is ``epoch0 + (now - 1000)``."""

    def __init__(self, config: IvrConfig, menu: str = "main", *,
                 epoch0: float = OPEN_EPOCH) -> None:
        self.now = 1000.0
        self.epoch0 = epoch0
        self.session = IvrSession(config, menu, self.now, clock_to_epoch=self.to_epoch)
        self.log: list[IvrAction] = []

    def to_epoch(self, now: float) -> float:
        return self.epoch0 + (now - 1000.0)

    def drain(self) -> list[IvrAction]:
        got = self.session.actions()
        self.log.extend(got)
        return got

    def start(self) -> list[IvrAction]:
        self.session.start(self.now)
        return self.drain()

    def done(self, advance: float = 2.0) -> list[IvrAction]:
        """The current prompt finishes ``advance`` seconds from now."""
        self.now += advance
        self.session.prompt_done(self.now)
        return self.drain()

    def press(self, keys: str, gap: float = 0.3) -> list[IvrAction]:
        out: list[IvrAction] = []
        for k in keys:
            self.now += gap
            self.session.digit(k, self.now)
            out += self.drain()
        return out

    def wait(self) -> list[IvrAction]:
        """Advance to the session's deadline (if it is not past) and fire it."""
        deadline = self.session.get_timer()
        assert deadline is not None, "no timer armed"
        self.now = max(self.now, deadline)
        self.session.handle_timer(self.now)
        return self.drain()
