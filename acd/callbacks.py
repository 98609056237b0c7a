"""Queued callbacks on the server: the caller leaves a number and hangs up keeping their place
(the engine keeps it); when an agent takes the callback the customer is dialled through a
trunk and connected to the agent. A customer not reached is dialled again after the queue's
``retry_after_s`` (the engine holds the callback's place meanwhile), up to ``attempts`` dials;
the CDR has the outcome (answered or callback-failed) and the number of dials."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from acd.engine import actions as A
from acd.errors import AcdError

if TYPE_CHECKING:
    from acd.server import Server
    from acd.sip.call import Call

__all__ = ["CallbackDialler"]

log = logging.getLogger(__name__)


class CallbackDialler:
    def __init__(self, server: Server, ring_timeout: float = 45.0) -> None:
        self.server = server
        self.ring_timeout = ring_timeout
        self.pending: dict[str, dict[str, Any]] = {}  # engine call id → number, trunk

    def scheduled(self, action: A.CallbackScheduled) -> None:
        """Confirm to the caller, then release their leg."""
        srv = self.server
        call = srv.by_id.get(action.call)
        self.pending[action.call] = {"number": action.number, "trunk": call.trunk if call else None}
        if call is None or call.ended:
            return
        call.app["callback"] = True  # its end is not an abandonment
        srv.say_and_hang_up(call, action.prompt or "queue/callback-confirm")

    def dial(self, action: A.ConnectCall) -> None:
        asyncio.get_running_loop().create_task(self._dial(action))

    async def _dial(self, action: A.ConnectCall) -> None:
        srv = self.server
        trunk = srv.config.dial_out_trunk(self.pending.get(action.call, {}).get("trunk"))
        if trunk is None:
            log.warning("callback %s: no trunk with a proxy to dial %s", action.call, action.callback_number)
            self._failed(action.call)
            return
        try:
            leg: Call = await srv.originate(trunk, action.callback_number, ring_timeout=self.ring_timeout)
        except (AcdError, OSError) as exc:
            log.warning("callback %s: cannot dial %s: %s", action.call, action.callback_number, exc)
            self._failed(action.call)
            return
        leg.app.update({"engine_id": action.call, "callback_agent": action.agent})
        srv.by_id[action.call] = leg
        log.info("callback %s: dialling %s through %s for agent %s", action.call, action.callback_number,
                 trunk, action.agent)

    def leg_ended(self, leg: Call) -> None:
        """The customer leg ended: after an answer that is a normal hangup, else a failure."""
        engine_id = leg.app["engine_id"]
        srv = self.server
        srv.by_id.pop(engine_id, None)
        if srv.cc is None or srv.transport is None:
            return
        if leg.answered_at is not None:
            self.pending.pop(engine_id, None)
            srv.cc.caller_gone(engine_id, srv.transport.now)
        else:
            self._failed(engine_id)

    def _failed(self, call_id: str) -> None:
        """The engine frees the agent and dials again later (``attempts``) or ends the callback."""
        srv = self.server
        log.info("callback %s: customer not reached", call_id)
        if srv.cc is not None and srv.transport is not None:
            srv.cc.callback_failed(call_id, srv.transport.now)
            srv.transport.flush()
            view = srv.cc.engine.call_view(call_id)
            if view is not None and view.state != "ended":
                log.info("callback %s: will be dialled again (%s)", call_id, view.state)
                return
        self.pending.pop(call_id, None)
