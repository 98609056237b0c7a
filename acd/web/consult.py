"""Two agents talking during an attended transfer: each agent's WebRTC media is plugged into
the other's, one 20 ms frame at a time on the media clock (a frame of buffering each way).

Each :class:`~acd.web.agent_media.AgentMedia` gives a ``party(received, now)`` function for
the audio it should hear and returns what its agent said; the bridge feeds each agent the
other's last frame."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = ["AgentBridge"]

log = logging.getLogger(__name__)

RATE = 16000
FRAME = RATE // 50


class AgentBridge:
    def __init__(self, media_a: Any, media_b: Any, clock: Any, label: str = "") -> None:
        self.clock = clock
        self.label = label
        self.party_a = media_a.attach(RATE, FRAME)
        self.party_b = media_b.attach(RATE, FRAME)
        self.last_a = np.zeros(FRAME, dtype=np.int16)
        self.last_b = np.zeros(FRAME, dtype=np.int16)
        self.ticks = 0
        self._token: int | None = clock.add(self._tick)
        log.info("agents bridged for consultation %s", label)

    def _tick(self, now: float) -> None:
        said_a = self.party_a(self.last_b, now)  # A hears B's last frame and speaks
        said_b = self.party_b(self.last_a, now)
        self.last_a, self.last_b = said_a, said_b
        self.ticks += 1

    def stop(self) -> None:
        """Stop exchanging audio; attachments are left to their owners (a completed transfer
        has already plugged the target agent into the caller)."""
        if self._token is not None:
            self.clock.remove(self._token)
            self._token = None
            log.info("consultation %s: agents unbridged after %.1f s", self.label, self.ticks / 50)
