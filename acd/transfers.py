"""IVR transfers to an external number: the caller hears "please wait" and ringback while the
number is dialled through a trunk; once it answers the two legs are bridged both ways
(:class:`acd.bridge_legs.LegBridge`). Either side hanging up ends the other; a failure (busy,
no answer within the option's ``ring_timeout_s``, an error, no media) plays
``ivr/transfer-failed`` to the caller before hanging up."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from acd.bridge_legs import LegBridge
from acd.errors import AcdError
from acd.ivr import actions as ivr_actions
from acd.sip import sdp as sdpmod
from acd.sip.call import Call
from acd.sip.ua import CallEnded
from media.dtmf import DtmfEnd
from media.errors import MediaError

if TYPE_CHECKING:
    from acd.server import Server

__all__ = ["ExternalTransfers"]

log = logging.getLogger(__name__)

CONSULT_RING_S = 30.0


class ExternalTransfers:
    def __init__(self, server: Server) -> None:
        self.server = server

    def agent_transfer(self, action: Any) -> None:
        """An agent's blind transfer out (engine ``TransferOut``): through the trunk the call
        came in on when it can dial out, else the first trunk with a proxy."""
        srv = self.server
        call = srv.by_id.get(action.call)
        if call is None or call.ended or call.app.get("transfer", {}).get("bridged_at") is not None:
            return  # gone, or already bridged by a consultation (consult_complete)
        self.start(call, ivr_actions.RouteExternal(action.number, self._trunk_for(call), ivr_path=()))

    def start(self, call: Call, action: ivr_actions.RouteExternal) -> None:
        """The caller hears "please wait" then ringback while ``action.number`` is dialled
        through ``action.trunk``; once it answers the two legs are bridged (acd.bridge_legs)."""
        srv = self.server
        ring_timeout = action.ring_timeout_s
        call.app["transfer"] = {"number": action.number, "trunk": action.trunk, "leg": None, "bridge": None,
                                "ring_timeout": ring_timeout, "bridged_at": None, "ended_by": None}
        srv.counters["transfers"] += 1
        caller = call.invite.from_.sip_uri.user if call.invite is not None else ""
        log.info("call %s: transfer of caller %s to %s through trunk %s (ring timeout %g s)", call.call_id,
                 caller or "-", action.number, action.trunk, ring_timeout)
        feed = srv.feeds.get(call.call_id)
        if feed is not None:
            feed.ringback()
            feed.announce(["ivr/transfer"])  # over the ringback, which resumes after it
        asyncio.get_running_loop().create_task(self._dial(call, action, ring_timeout))

    async def _dial(self, call: Call, action: ivr_actions.RouteExternal, ring_timeout: float) -> None:
        srv = self.server
        transfer = call.app["transfer"]
        try:
            leg = await srv.originate(action.trunk, action.number, ring_timeout=ring_timeout,
                                       app={"transfer_of": call})
        except Exception as exc:  # whatever went wrong, the caller hears why and is let go
            expected = isinstance(exc, (AcdError, OSError, MediaError))
            log.log(logging.INFO if expected else logging.ERROR, "call %s: cannot dial %s through %s: %s",
                    call.call_id, action.number, action.trunk, exc, exc_info=not expected)
            self.failed(call, f"cannot dial ({exc or type(exc).__name__})")
            return
        transfer["leg"] = leg
        if call.ended:  # the caller hung up while the trunk's proxy was being resolved
            log.info("call %s: caller gone before %s rang, cancelling %s", call.call_id, action.number, leg.call_id)
            srv._act(leg, "hangup")

    def bridge_for(self, leg: Call, rate: int) -> LegBridge | None:
        """The bridge between an answered far leg (``rate`` Hz) and its caller, if still there."""
        srv = self.server
        caller: Call = leg.app["transfer_of"]
        feed = srv.feeds.get(caller.call_id)
        media = srv.media.get(caller)
        if caller.ended or feed is None:
            return None
        caller_rate = media.stream.codec.sample_rate if media is not None else feed.rate
        bridge = LegBridge(caller_rate, rate, label=f"{caller.call_id}/{leg.call_id}")
        caller.app["transfer"]["bridge"] = bridge
        return bridge

    async def open_then_bridge(self, leg: Call, stream: sdpmod.NegotiatedStream) -> None:
        """The far leg answered: open its media, then switch the caller from ringback to it."""
        srv = self.server
        caller: Call = leg.app["transfer_of"]
        transfer = caller.app["transfer"]
        try:
            opened = await srv._open_media(leg, stream)
        except Exception:  # never leave the caller on ringback with a dead far leg
            log.exception("call %s: far leg %s media failed", caller.call_id, leg.call_id)
            opened = False
        bridge, feed = transfer["bridge"], srv.feeds.get(caller.call_id)
        if not opened or bridge is None or feed is None or caller.ended or leg.ended:
            if not leg.ended:
                leg.app.setdefault("failure", "no media for the far leg")
                log.warning("call %s: cannot bridge %s (%s), hanging it up", caller.call_id, leg.call_id,
                            "caller gone" if caller.ended else leg.app["failure"])
                srv._act(leg, "hangup")  # its end lets the caller go (after a prompt if still there)
            return
        media = srv.media.get(caller)
        if media is not None:  # keys pressed while bridged are logged, not acted on
            media.on_dtmf = lambda ev: bridge.dtmf("caller", ev.digit) if isinstance(ev, DtmfEnd) else None
        feed.connect(bridge.leg_a)
        assert srv.transport is not None
        transfer["bridged_at"] = srv.transport.now
        srv.counters["transfers_bridged"] += 1
        log.info("call %s: %s answered (%s), bridged: %d Hz <-> %d Hz", caller.call_id, transfer["number"],
                 leg.call_id, bridge.rate_a, bridge.rate_b)

    def failed(self, call: Call, reason: str) -> None:
        """The far leg could not be reached: the caller hears ivr/transfer-failed, then goes."""
        srv = self.server
        transfer = call.app["transfer"]
        if transfer.get("failed"):
            return
        transfer["failed"] = True
        srv.counters["transfers_failed"] += 1
        log.info("call %s: transfer to %s through trunk %s failed: %s", call.call_id, transfer["number"],
                 transfer["trunk"], reason)
        if call.ended:
            return
        feed = srv.feeds.get(call.call_id)
        if feed is not None:
            feed.base = "silence"  # no more ringback under (or after) the prompt
        srv.say_and_hang_up(call, "ivr/transfer-failed")

    def leg_ended(self, call: Call, ev: CallEnded) -> None:
        """One leg of an IVR transfer ended: the other one goes too."""
        srv = self.server
        if "transfer_of" in call.app:  # the far leg
            caller: Call = call.app["transfer_of"]
            transfer = caller.app["transfer"]
            if transfer["bridged_at"] is not None:
                self._over(caller, "far end")
                if not caller.ended:
                    srv._act(caller, "hangup")
            elif not caller.ended:
                status = f" {ev.status}" if ev.status else ""
                self.failed(caller, call.app.get("failure") or f"{ev.cause}{status}")
            else:
                log.info("call %s: far leg %s ended after the caller left (%s)", caller.call_id, call.call_id,
                         ev.cause)
            return
        transfer = call.app["transfer"]
        leg = transfer["leg"]
        if transfer["bridged_at"] is not None:
            self._over(call, "caller")
        elif leg is not None and not leg.ended and not transfer.get("failed"):
            log.info("call %s: caller hung up while %s rang, cancelling %s", call.call_id, transfer["number"],
                     leg.call_id)
        if leg is not None and not leg.ended:
            srv._act(leg, "hangup")  # CANCEL while it rings, BYE once answered

    def _over(self, caller: Call, side: str) -> None:
        """Log a bridged transfer's end once, with who hung up and the bridge's counters."""
        srv = self.server
        transfer = caller.app["transfer"]
        if transfer["ended_by"] is not None:
            return
        transfer["ended_by"] = side
        bridge: LegBridge | None = transfer["bridge"]
        stats = bridge.close() if bridge is not None else Counter()
        srv.media_counters.update({f"bridge_{k}": v for k, v in stats.items()})
        now = srv.transport.now if srv.transport is not None else transfer["bridged_at"]
        log.info("call %s: transfer to %s ended: the %s hung up after %.1f s bridged (%s)", caller.call_id,
                 transfer["number"], side, now - transfer["bridged_at"],
                 ", ".join(f"{k} {v}" for k, v in sorted(stats.items())) or "no audio")

    # -- an agent consulting an outside number (attended transfer) --------------------------

    def _trunk_for(self, call: Call) -> str:
        """The trunk ``call`` came in on when it can dial out, else the first that can."""
        return self.server.config.dial_out_trunk(call.trunk) or ""

    def consult_start(self, call: Call, agent: str, number: str, party_for: Callable[[int, int], Any],
                      on_state: Callable[[str, str], None]) -> None:
        """Dial ``number`` for ``agent``, who consults while ``call``'s caller holds. Once it
        answers, the agent talks with it through ``party_for(rate, frame_samples)``;
        ``on_state(state, reason)`` reports "connected" and "ended" (far end gone, failure)."""
        trunk = self._trunk_for(call)
        call.app["consult_out"] = {"number": number, "trunk": trunk, "leg": None, "agent": agent,
                                   "party_for": party_for, "on_state": on_state, "connected": False}
        log.info("call %s: agent %s consults %s through trunk %s", call.call_id, agent, number, trunk or "-")
        asyncio.get_running_loop().create_task(self._dial_consult(call, number, trunk))

    async def _dial_consult(self, call: Call, number: str, trunk: str) -> None:
        srv = self.server
        consult = call.app.get("consult_out")
        try:
            leg = await srv.originate(trunk, number, ring_timeout=CONSULT_RING_S, app={"consult_for": call})
        except (AcdError, OSError, MediaError) as exc:
            log.info("call %s: cannot dial %s to consult: %s", call.call_id, number, exc)
            if consult is not None and call.app.get("consult_out") is consult:
                del call.app["consult_out"]
                consult["on_state"]("ended", f"cannot dial ({exc})")
            return
        if consult is None or call.app.get("consult_out") is not consult or call.ended:
            srv._act(leg, "hangup")  # cancelled while dialling
            return
        consult["leg"] = leg

    def consult_party(self, leg: Call, rate: int, frame_samples: int) -> Any:
        """The far leg's media source while it talks with the consulting agent."""
        consult = leg.app["consult_for"].app.get("consult_out")
        return None if consult is None else consult["party_for"](rate, frame_samples)

    async def open_consult(self, leg: Call, stream: sdpmod.NegotiatedStream) -> None:
        caller: Call = leg.app["consult_for"]
        consult = caller.app.get("consult_out")
        if consult is None or not await self.server._open_media(leg, stream):
            if not leg.ended:
                self.server._act(leg, "hangup")
            return
        consult["connected"] = True
        log.info("call %s: %s answered the consultation (%s)", caller.call_id, consult["number"], leg.call_id)
        consult["on_state"]("connected", "")

    def consult_leg_ended(self, leg: Call, ev: CallEnded) -> None:
        caller: Call = leg.app["consult_for"]
        consult = caller.app.get("consult_out")
        if consult is None or consult["leg"] is not leg:
            return
        del caller.app["consult_out"]
        reason = "far-end-hangup" if consult["connected"] else (leg.app.get("failure") or f"{ev.cause} {ev.status or ''}".strip())
        consult["on_state"]("ended", reason)

    def consult_cancel(self, call: Call) -> None:
        consult = call.app.pop("consult_out", None)
        if consult is not None and consult["leg"] is not None and not consult["leg"].ended:
            self.server._act(consult["leg"], "hangup")  # CANCEL while it rings, BYE once answered

    def consult_complete(self, call: Call) -> bool:
        """Bridge the caller to the consulted number (as an IVR transfer would have); False
        when it has not answered. The engine then ends the agent's part (TransferOut)."""
        srv = self.server
        consult = call.app.get("consult_out")
        leg = consult["leg"] if consult is not None else None
        media, feed = srv.media.get(leg) if leg is not None else None, srv.feeds.get(call.call_id)
        if consult is None or not consult["connected"] or media is None or feed is None or leg is None:
            return False
        del call.app["consult_out"]
        caller_media = srv.media.get(call)
        caller_rate = caller_media.stream.codec.sample_rate if caller_media is not None else feed.rate
        bridge = LegBridge(caller_rate, media.stream.codec.sample_rate, label=f"{call.call_id}/{leg.call_id}")
        media.source = bridge.leg_b
        feed.connect(bridge.leg_a)
        del leg.app["consult_for"]
        leg.app["transfer_of"] = call
        assert srv.transport is not None
        call.app["transfer"] = {"number": consult["number"], "trunk": consult["trunk"], "leg": leg, "bridge": bridge,
                                "ring_timeout": CONSULT_RING_S, "bridged_at": srv.transport.now, "ended_by": None}
        srv.counters["transfers"] += 1
        srv.counters["transfers_bridged"] += 1
        log.info("call %s: caller bridged to %s after the consultation", call.call_id, consult["number"])
        return True

