"""The server side of IVR menus: one :class:`acd.ivr.session.IvrSession` per caller, its
prompts played through the caller's :class:`CallerFeed`, digits fed in, timers merged into the
transport's single timer, and the final action handed back to the server."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from acd.contact_center import CallerFeed
from acd.ivr import actions as IA
from acd.ivr.config import IvrConfig
from acd.ivr.session import IvrSession

__all__ = ["MenuRunner"]

log = logging.getLogger(__name__)


class MenuRunner:
    """``route(call_id, terminal_action)`` is called once per caller when the menu is done."""

    def __init__(self, config: IvrConfig, *, route: Callable[[str, Any], None],
                 feed_for: Callable[[str], CallerFeed | None], now: Callable[[], float],
                 changed: Callable[[], None] = lambda: None, wall_offset: float | None = None) -> None:
        self.config = config
        self.route = route
        self.feed_for = feed_for
        self.now = now
        self.changed = changed  # timers may have moved: the adapter re-arms its one timer
        offset = wall_offset if wall_offset is not None else time.time() - now()
        self.clock_to_epoch = lambda t: t + offset
        self.sessions: dict[str, IvrSession] = {}

    def start(self, call_id: str, menu: str, now: float) -> None:
        session = IvrSession(self.config, menu, now, clock_to_epoch=self.clock_to_epoch)
        self.sessions[call_id] = session
        session.start(now)
        log.info("call %s enters IVR menu %s", call_id, menu)
        self._process(call_id, now)

    def digit(self, call_id: str, digit: str, now: float) -> bool:
        session = self.sessions.get(call_id)
        if session is None:
            return False
        session.digit(digit, now)
        self._process(call_id, now)
        return True

    def hangup(self, call_id: str, now: float) -> None:
        session = self.sessions.pop(call_id, None)
        if session is not None:
            session.hangup(now)
            session.actions()  # Abandoned: nothing left to do

    def get_timer(self) -> float | None:
        return min((t for s in self.sessions.values() if (t := s.get_timer()) is not None), default=None)

    def handle_timer(self, now: float) -> None:
        for call_id, session in list(self.sessions.items()):
            deadline = session.get_timer()
            if deadline is not None and deadline <= now:
                session.handle_timer(now)
                self._process(call_id, now)

    def _process(self, call_id: str, now: float) -> None:
        session = self.sessions.get(call_id)
        if session is None:
            return
        feed = self.feed_for(call_id)
        for action in session.actions():
            if isinstance(action, IA.PlayPrompts):
                play_id = action.play_id
                done = (lambda t, s=session, c=call_id, p=play_id: self._prompt_done(c, s, p, t))
                if feed is None or not feed.announce(list(action.names), on_done=done):
                    done(now)  # nothing to hear: the menu goes on as if it had been played
            elif isinstance(action, IA.StopPrompt):
                if feed is not None:
                    feed.stop_prompt()
            elif isinstance(action, IA.Closed):
                log.info("call %s: menu %s closed (schedule %s), reopens %s", call_id, action.menu,
                         action.schedule, action.reopens_at)
            elif isinstance(action, IA.Terminal):
                self.sessions.pop(call_id, None)
                log.info("call %s leaves IVR: %s via %s", call_id, type(action).__name__,
                         " > ".join(action.ivr_path) or "-")
                self.route(call_id, action)

    def _prompt_done(self, call_id: str, session: IvrSession, play_id: int, now: float) -> None:
        if self.sessions.get(call_id) is session:
            session.prompt_done(now, play_id)
            self._process(call_id, now)
            self.changed()
