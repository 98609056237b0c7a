"""Agents connected over the WebSocket protocol (docs/agent-protocol.md), joined to the ACD.

One :class:`AgentLink` per WebSocket (the aiohttp handler is its thin adapter: it passes
frames to :meth:`AgentHub.receive` and sends what the link's ``send`` gets). The hub

- authenticates ``hello`` with the :class:`~acd.web.auth.Authenticator` and keeps one link
  per agent (a newer ``hello`` replaces the older link: close 4008);
- turns requests into engine events through the :class:`~acd.contact_center.ContactCenter`
  and engine actions into protocol events (:meth:`notify` sees every action);
- owns each agent's :class:`~acd.web.agent_media.AgentMedia` (one peer connection per
  session, kept across calls and across a reconnect) and plugs it into the caller's feed
  when a call connects (:meth:`agent_party`);
- watches heartbeats: a link silent for 3 × ``heartbeat_s`` is closed (4009) and the agent's
  connection is lost for the engine (grace period, then requeue at the head).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from acd.engine import actions as A
from acd.engine import events as E
from acd.engine.core import UnknownAgent, UnknownBreakReason, UnknownQueue
from acd.engine.records import AgentStateRecord, CallRecord
from acd.web import protocol as P
from acd.store.base import ReadinessRecord
from acd.web.auth import Authenticator, Session
from acd.web.errors import AuthError, ProtocolError
from acd.web.consult import AgentBridge
from acd.web.readiness import EchoTest

__all__ = ["AgentHub", "AgentLink", "HubHost"]

log = logging.getLogger(__name__)

ERROR_LIMIT = 20  # errors within ERROR_WINDOW_S close the socket (4002)
ERROR_WINDOW_S = 10.0
ENGINE_REQUESTS = {"ready", "break", "logout", "wrapup-done", "difficult", "answer", "reject", "hangup"}


class HubHost(Protocol):
    """What the hub needs from the server."""

    def now(self) -> float: ...

    def feed_for(self, call_id: str) -> Any: ...

    def send_dtmf(self, call_id: str, digits: str) -> bool: ...

    def changed(self) -> None: ...

    def spawn(self, coro: Any) -> None:
        """Run a coroutine in the background (closing a peer connection, an echo test)."""

    @property
    def clock(self) -> Any:
        """The media clock (``add(callback)``/``remove(token)``, 20 ms ticks)."""

    def save_readiness(self, record: ReadinessRecord) -> None: ...

    def consult_number(self, call_id: str, agent: str, number: str, party_for: Callable[[int, int], Any],
                       on_state: Callable[[str, str], None]) -> bool:
        """Dial ``number`` for an agent consulting about ``call_id`` (False: cannot)."""

    def consult_number_complete(self, call_id: str) -> bool:
        """Bridge the caller to the consulted number (False: it has not answered)."""

    def consult_number_cancel(self, call_id: str) -> None: ...


@dataclass(eq=False)
class AgentLink:
    """One WebSocket. ``send(text)`` queues a frame; ``close(code, reason)`` closes it."""

    send: Callable[[str], None]
    close: Callable[[int, str], None]
    peer: str = ""
    session: Session | None = None
    token: str = ""
    last_heard: float = 0.0
    closed: bool = False
    errors: deque[float] = field(default_factory=deque)


class AgentHub:
    def __init__(self, cc: Any, auth: Authenticator, host: HubHost, *, heartbeat_s: float = 10.0,
                 ice_servers: list[dict[str, Any]] | None = None, codec: str = "opus",
                 media_factory: Callable[[str], Any] | None = None) -> None:
        self.cc = cc
        self.auth = auth
        self.host = host
        self.heartbeat_s = heartbeat_s
        self.ice_servers = list(ice_servers or [])
        self.codec = codec
        self.media_factory = media_factory
        self.links: dict[str, AgentLink] = {}  # agent -> its current link
        self.media: dict[str, Any] = {}  # agent -> AgentMedia
        self.offers: dict[str, A.OfferCall] = {}  # agent -> the offer ringing now
        self.held: set[str] = set()  # call ids on hold
        self.talking: dict[str, str] = {}  # agent -> the call connected to it (until it ends for them)
        self.echo_tests: dict[str, EchoTest] = {}
        self.consults: dict[str, tuple[str, str, str]] = {}  # consultation -> (customer call, agent, target)
        self.bridges: dict[str, AgentBridge] = {}  # consultation call -> the two agents' audio
        self.number_consults: dict[str, list[str]] = {}  # customer call -> [agent, number, state]
        self.media_lost: set[str] = set()  # agents whose peer connection failed (ICE)
        self.stats: dict[str, int] = {"frames": 0, "errors": 0, "replaced": 0, "heartbeat_timeouts": 0}

    # -- links ---------------------------------------------------------------------------

    def opened(self, link: AgentLink) -> None:
        link.last_heard = self.host.now()

    async def receive(self, link: AgentLink, frame: str | bytes) -> None:
        """One frame from a link; every failure becomes a protocol error on that link only."""
        if link.closed:
            return
        link.last_heard = self.host.now()
        self.stats["frames"] += 1
        msg: P.ClientMessage | None = None
        try:
            msg = P.parse_client(frame)
            if link.session is None and msg.type != "hello":
                raise ProtocolError("not-authenticated", "send hello first", re=msg.id)
            reply = await self._dispatch(link, msg)
            if reply is not None and msg.id is not None:
                link.send(P.result(msg.id, **reply))
        except ProtocolError as exc:
            self._error(link, exc.code, exc.message, exc.re, **exc.extra)
            if exc.code in ("not-authenticated", "token-expired"):
                self._close(link, P.CLOSE["not-authenticated"], exc.code)
            elif exc.code == "unsupported-version":
                self._close(link, P.CLOSE["unsupported-version"], exc.code)
        except Exception:  # a server fault: the request had no effect; nothing else is disturbed
            log.exception("agent request %s failed", msg.type if msg is not None else "?")
            self._error(link, "internal", "server error; the request had no effect",
                        msg.id if msg is not None else None)
        finally:
            self.host.changed()

    def closed(self, link: AgentLink) -> None:
        """The socket is gone (closed by either side, or its heartbeat timed out)."""
        link.closed = True
        session = link.session
        if session is None or self.links.get(session.agent) is not link:
            return
        del self.links[session.agent]
        agent = session.agent
        self._stop_echo(agent)
        view = self.cc.engine.agent_view(agent)
        log.info("agent %s: connection lost (state %s)", agent, view.state)
        if view.state != "logged-out":
            self.cc.agent_event(E.AgentConnectionLost(agent), self.host.now())
        if view.call:
            self._caller_hears_music(view.call)
        self.host.changed()

    def get_timer(self) -> float | None:
        if not self.links:
            return None
        return min(link.last_heard for link in self.links.values()) + 3 * self.heartbeat_s

    def handle_timer(self, now: float) -> None:
        for link in list(self.links.values()):
            if now >= link.last_heard + 3 * self.heartbeat_s:
                self.stats["heartbeat_timeouts"] += 1
                log.info("agent %s: no heartbeat for %.0f s", link.session.agent if link.session else "?",
                         now - link.last_heard)
                self._close(link, P.CLOSE["heartbeat-timeout"], "heartbeat timeout")
                self.closed(link)

    # -- requests ------------------------------------------------------------------------

    async def _dispatch(self, link: AgentLink, msg: P.ClientMessage) -> dict[str, Any] | None:
        if msg.type == "hello":
            return self._hello(link, msg)
        session = link.session
        assert session is not None
        try:
            self.auth.check(link.token, "agent")
        except AuthError as exc:
            raise ProtocolError(exc.code, exc.message, re=msg.id) from None
        agent = session.agent
        if msg.type == "ping":
            link.send(P.event("pong"))
            return {}
        if msg.type == "media-offer":
            return {"sdp": await self._media_offer(agent, msg)}
        if msg.type == "echo-test":
            return self._echo_test(agent, msg)
        if msg.type in ("login", "ready"):
            self._stop_echo(agent)  # calls may come now: the echo gives way
        if msg.type == "login":
            queues = tuple(msg.get("queues")) if msg.get("queues") else None
            self._engine(agent, E.AgentLogin(agent, queues), msg)
            if msg.get("ready") is False:
                self._engine(agent, E.AgentBreak(agent, self._first_break()), msg)
            return {"state": self._state(agent)}
        if msg.type in ENGINE_REQUESTS:
            self._engine_request(agent, msg)
            return {"state": self._state(agent)}
        if msg.type in ("hold", "resume"):
            return self._hold(agent, msg, msg.type == "hold")
        if msg.type == "mute":
            media = self.media.get(agent)
            if media is not None:
                media.mute(bool(msg.get("on")))
            return {"muted": bool(msg.get("on"))}
        if msg.type == "transfer":
            call, to = self._own_call(agent, msg), msg.get("to")
            self._engine(agent, E.TransferCall(agent, call, queue=to.get("queue", ""), to_agent=to.get("agent", ""),
                                               number=to.get("number", "")), msg)
            return {"state": self._state(agent)}
        if msg.type == "consult":
            call, to = self._own_call(agent, msg), msg.get("to")
            if "number" in to:
                return self._consult_number(agent, call, to["number"], msg)
            if call in self.number_consults or self.cc.engine.call_view(call).consult:
                raise ProtocolError("invalid-state", "a consultation is already running", re=msg.id)
            self._engine(agent, E.ConsultCall(agent, call, queue=to.get("queue", ""), to_agent=to.get("agent", "")),
                         msg)
            return {"call": self._call_object(call)}
        if msg.type in ("consult-complete", "consult-cancel") and self._own_call(agent, msg) in self.number_consults:
            return self._number_consult_step(agent, msg)
        if msg.type in ("consult-complete", "consult-cancel"):
            call = self._own_call(agent, msg)
            event = E.ConsultComplete(agent, call) if msg.type == "consult-complete" else E.ConsultCancel(agent, call)
            self._engine(agent, event, msg)
            return {"state": self._state(agent)}
        if msg.type == "dtmf":
            call = self._own_call(agent, msg)
            if self._consult_object(call) is not None:
                raise ProtocolError("invalid-state", "the caller is held for a consultation", re=msg.id)
            if not self.host.send_dtmf(call, msg.get("digits")):
                raise ProtocolError("invalid-state", "the caller's leg cannot take DTMF now", re=msg.id)
            return {"sent": msg.get("digits")}
        raise ProtocolError("unsupported", f"{msg.type} is not available on this server yet", re=msg.id)

    def _hello(self, link: AgentLink, msg: P.ClientMessage) -> dict[str, Any]:
        if msg.get("version") not in P.VERSIONS:
            raise ProtocolError("unsupported-version", f"protocol version {msg.get('version')} is not spoken",
                                re=msg.id, versions=list(P.VERSIONS))
        if link.session is not None:
            raise ProtocolError("invalid-state", "hello was already sent", re=msg.id)
        try:
            session = self.auth.check(msg.get("token"), "agent")
        except AuthError as exc:
            raise ProtocolError(exc.code, exc.message, re=msg.id) from None
        agent = session.agent
        if agent not in self.cc.config.agents:
            raise ProtocolError("forbidden", f"{agent} is not an ACD agent in this configuration", re=msg.id)
        link.session = session
        link.token = msg.get("token")
        old = self.links.get(agent)
        self.links[agent] = link
        if old is not None and old is not link:
            self.stats["replaced"] += 1
            old.send(P.event("replaced"))
            self._close(old, P.CLOSE["replaced"], "replaced by a newer session")
            log.info("agent %s: session %s replaced by %s", agent, old.session.id if old.session else "?",
                     session.id)
        view = self.cc.engine.agent_view(agent)
        if view.state != "logged-out" and not view.connected and agent not in self.media_lost:
            self.cc.agent_event(E.AgentConnectionRestored(agent), self.host.now())
            log.info("agent %s: connection restored", agent)
        call = self.cc.engine.agent_view(agent).call
        consult = self._consult_object(call) if call else None
        if call and self.cc.engine.call_view(call) and self.cc.engine.call_view(call).state == "connected" \
                and call not in self.held and consult is None:
            self._plug(agent, call)
        offer = self.offers.get(agent)
        cfg = self.cc.config
        return {
            "protocol": P.VERSION, "session": session.id,
            "agent": {"id": agent, "name": session.name, "roles": list(session.roles)},
            "state": self._state(agent), "queues": sorted(cfg.agents[agent].queues),
            "breaks": [{"reason": r, "label": b.label} for r, b in cfg.breaks.items() if b.selectable],
            "call": self._call_object(call) if call else None,
            "offer": self._offer_object(offer) if offer else None, "consult": consult,
            "ice_servers": self.ice_servers, "codecs": [self.codec] + [c for c in ("opus", "pcmu") if c != self.codec],
            "heartbeat_s": self.heartbeat_s, "expires_at": session.expires_at,
        }

    def _first_break(self) -> str:
        breaks = [r for r, b in self.cc.config.breaks.items() if b.selectable]
        return breaks[0] if breaks else "lunch"

    def _engine(self, agent: str, event: E.Event, msg: P.ClientMessage) -> None:
        error = self.cc.agent_event(event, self.host.now())
        if error is not None:
            code = {UnknownBreakReason: "no-such-break", UnknownQueue: "no-such-queue",
                    UnknownAgent: "no-such-agent"}.get(type(error), "invalid-state")
            raise ProtocolError(code, str(error), re=msg.id)

    def _engine_request(self, agent: str, msg: P.ClientMessage) -> None:
        kind = msg.type
        if kind in ("answer", "reject"):
            offer = self.offers.get(agent)
            if offer is None or offer.call != msg.get("call"):
                raise ProtocolError("invalid-state", f"no offer of call {msg.get('call')} is ringing", re=msg.id)
            if kind == "answer" and self.media.get(agent) is None:
                raise ProtocolError("media-not-ready", "send media-offer before answering", re=msg.id)
            event: E.Event = E.OfferAnswered(agent, offer.call, leg=f"webrtc/{agent}") if kind == "answer" \
                else E.OfferRejected(agent, offer.call, "rejected")
        elif kind == "hangup":
            call = self._own_call(agent, msg)
            event = E.AgentHangup(agent, call)
        elif kind == "break":
            event = E.AgentBreak(agent, msg.get("reason"))
        else:
            event = {"ready": E.AgentReady(agent), "logout": E.AgentLogout(agent, "agent"),
                     "wrapup-done": E.WrapUpDone(agent), "difficult": E.FlagDifficult(agent)}[kind]
        self._engine(agent, event, msg)
        if kind == "hangup":
            self.cc.hangup(msg.get("call"), f"agent {agent} hung up")

    def _own_call(self, agent: str, msg: P.ClientMessage) -> str:
        call = self.cc.engine.agent_view(agent).call
        if not call or call != msg.get("call"):
            raise ProtocolError("no-such-call", f"you have no call {msg.get('call')}", re=msg.id)
        return call

    def _hold(self, agent: str, msg: P.ClientMessage, on: bool) -> dict[str, Any]:
        call = self._own_call(agent, msg)
        if self._consult_object(call) is not None:
            raise ProtocolError("invalid-state", "the caller is held for a consultation: complete or cancel it",
                                re=msg.id)
        media = self.media.get(agent)
        if on:
            self.held.add(call)
            if media is not None:
                media.hold(True)
            self._caller_hears_music(call)
        else:
            self.held.discard(call)
            if media is not None:
                media.hold(False)
            self._plug(agent, call)
        obj = self._call_object(call)
        self._send(agent, P.event("call", call=obj))
        return {"call": obj}

    def _echo_test(self, agent: str, msg: P.ClientMessage) -> dict[str, Any]:
        media = self.media.get(agent)
        if media is None:
            raise ProtocolError("media-not-ready", "send media-offer before the echo test", re=msg.id)
        if self.cc.engine.agent_view(agent).state not in ("logged-out", "break") or agent in self.echo_tests:
            raise ProtocolError("invalid-state", "the echo test runs while logged out of the queues or on break, "
                                "one at a time", re=msg.id)
        seconds = float(msg.get("seconds", 10))
        test = self.echo_tests[agent] = EchoTest(agent, media, self.host.clock, seconds,
                                                 lambda record: self._echo_done(agent, record))
        test.start()
        self.host.spawn(self._echo_after(agent, test, seconds))
        return {"started": True, "seconds": seconds}

    async def _echo_after(self, agent: str, test: EchoTest, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self.echo_tests.get(agent) is test:
            del self.echo_tests[agent]
            await test.finish()

    def _echo_done(self, agent: str, record: ReadinessRecord) -> None:
        self.host.save_readiness(record)
        self._send(agent, P.event("echo-test-result", passed=record.passed, rtt_ms=record.rtt_ms,
                                  jitter_ms=record.jitter_ms, loss_pct=record.loss_pct, mos=record.mos,
                                  reasons=list(record.reasons), codec=record.codec))

    def _stop_echo(self, agent: str) -> None:
        test = self.echo_tests.pop(agent, None)
        if test is not None:
            test.stop()
            log.info("agent %s: echo test stopped before its end", agent)

    def _media_state(self, agent: str, state: str) -> None:
        """A failed peer connection is a lost connection for the ACD (§3.3): the caller hears
        music and the grace period runs until media is back (the client re-offers)."""
        self._send(agent, P.event("media", state=state))
        view = self.cc.engine.agent_view(agent)
        if state == "failed" and agent not in self.media_lost:
            self.media_lost.add(agent)
            log.info("agent %s: media failed (state %s)", agent, view.state)
            if view.state != "logged-out" and view.connected:
                self.cc.agent_event(E.AgentConnectionLost(agent), self.host.now())
            if view.call and self._consult_object(view.call) is None:
                self._caller_hears_music(view.call)
        elif state == "connected" and agent in self.media_lost:
            self.media_lost.discard(agent)
            log.info("agent %s: media back", agent)
            if agent in self.links and view.state != "logged-out" and not view.connected:
                self.cc.agent_event(E.AgentConnectionRestored(agent), self.host.now())
            call = self.cc.engine.agent_view(agent).call
            view_call = self.cc.engine.call_view(call) if call else None
            if view_call is not None and view_call.state == "connected" and call not in self.held \
                    and self._consult_object(call) is None:
                self._plug(agent, call)
        self.host.changed()

    async def _media_offer(self, agent: str, msg: P.ClientMessage) -> str:
        media = self.media.get(agent)
        if media is None:
            if self.media_factory is None:
                raise ProtocolError("unsupported", "this server has no WebRTC media", re=msg.id)
            media = self.media[agent] = self.media_factory(agent)
            media.on_state = lambda state, a=agent: self._media_state(a, state)
        try:
            return await media.accept_offer(msg.get("sdp"))
        except (ValueError, RuntimeError, asyncio.TimeoutError) as exc:  # aiortc: a bad offer
            raise ProtocolError("bad-request", f"media-offer: {exc}", re=msg.id) from None

    # -- the ACD's actions ---------------------------------------------------------------

    def notify(self, action: Any, now: float) -> None:
        """Every engine action passes here (after the contact center handled it)."""
        if isinstance(action, A.OfferCall):
            self.offers[action.agent] = action
            self._send(action.agent, P.event("offer", call=self._offer_object(action),
                                             ring_timeout_s=action.ring_timeout_s))
        elif isinstance(action, A.CancelOffer):
            if self.offers.get(action.agent) is not None and self.offers[action.agent].call == action.call:
                del self.offers[action.agent]
            reason = "timeout" if action.reason in ("no-answer", "timeout") else action.reason
            self._send(action.agent, P.event("offer-cancelled", call=action.call, reason=reason))
        elif isinstance(action, A.ConnectCall):
            self.offers.pop(action.agent, None)
            self.talking[action.agent] = action.call
            self._send(action.agent, P.event("call", call=self._call_object(action.call)))
            self._send(action.agent, P.event("state", **self._state(action.agent)))
            if action.call in self.consults:  # the consulted agent answered: the agents talk
                customer, consulting, _ = self.consults[action.call]
                a, b = self.media.get(consulting), self.media.get(action.agent)
                if a is not None and b is not None:
                    self.bridges[action.call] = AgentBridge(a, b, self.host.clock, action.call)
                self._send(consulting, P.event("consult", call=customer, state="connected", target=action.agent))
        elif isinstance(action, A.ConsultStarted):
            self.consults[action.consult] = (action.call, action.agent, action.target or action.queue)
            media = self.media.get(action.agent)
            if media is not None:
                media.detach()
            self._caller_hears_music(action.call)
            self._send(action.agent, P.event("consult", call=action.call, state="ringing",
                                             target=action.target or action.queue))
        elif isinstance(action, A.ConsultEnded):
            self._consult_ended(action)
        elif isinstance(action, A.DropAgentLeg):
            self.talking.pop(action.agent, None)
            media = self.media.get(action.agent)
            if media is not None:
                media.detach()
            by = "agent" if action.reason == "transferred" else "system"
            self._send(action.agent, P.event("call-ended", call=action.call, by=by, reason=action.reason))
        elif isinstance(action, CallRecord) and self.talking.get(action.agent) == action.call_id:
            del self.talking[action.agent]
            self.number_consults.pop(action.call_id, None)
            self.held.discard(action.call_id)
            media = self.media.get(action.agent)
            if media is not None:
                media.detach()
            by = {"caller-hangup": "caller", "agent-hangup": "agent"}.get(action.reason, "system")
            self._send(action.agent, P.event("call-ended", call=action.call_id, by=by, reason=action.reason))
        elif isinstance(action, AgentStateRecord):
            if action.from_state == "reserved" and action.to_state != "on-call":
                self.offers.pop(action.agent, None)  # rejected (the agent knows) or CancelOffer sent
            self._send(action.agent, P.event("state", **self._state(action.agent)))
            if action.to_state == "logged-out" and action.agent not in self.links:
                self._close_media(action.agent)

    def _consult_object(self, call: str) -> dict[str, Any] | None:
        """The consultation running about ``call`` (the welcome's ``consult``), or None."""
        if call in self.number_consults:
            _, number, state = self.number_consults[call]
            return {"call": call, "state": state, "target": number}
        view = self.cc.engine.call_view(call)
        k = self.cc.engine.call_view(view.consult) if view is not None and view.consult else None
        if k is None:
            return None
        target = k.agent if k.state == "connected" else self.consults.get(k.id, ("", "", ""))[2]
        return {"call": call, "state": "connected" if k.state == "connected" else "ringing", "target": target}

    def _consult_number(self, agent: str, call: str, number: str, msg: P.ClientMessage) -> dict[str, Any]:
        media = self.media.get(agent)
        if media is None:
            raise ProtocolError("media-not-ready", "send media-offer first", re=msg.id)
        if call in self.number_consults or self.cc.engine.call_view(call).consult:
            raise ProtocolError("invalid-state", "a consultation is already running", re=msg.id)
        if not number.lstrip("+").replace(" ", "").isdigit():
            raise ProtocolError("bad-request", "consult: number must be digits (an optional leading +)", re=msg.id)
        media.detach()
        self._caller_hears_music(call)
        self.number_consults[call] = [agent, number, "ringing"]
        started = self.host.consult_number(call, agent, number, party_for=media.attach,
                                           on_state=lambda state, reason: self._number_state(call, state, reason))
        if not started:
            self.number_consults.pop(call, None)
            self._plug(agent, call)
            raise ProtocolError("invalid-state", "no trunk can dial out", re=msg.id)
        self._send(agent, P.event("consult", call=call, state="ringing", target=number))
        return {"call": self._call_object(call)}

    def _number_state(self, call: str, state: str, reason: str) -> None:
        """The consulted number answered ("connected") or went ("ended")."""
        entry = self.number_consults.get(call)
        if entry is None:
            return
        agent, number, _ = entry
        entry[2] = state
        if state == "ended":
            del self.number_consults[call]
            view = self.cc.engine.call_view(call)
            if view is not None and view.state == "connected" and call not in self.held:
                self._plug(agent, call)
        self._send(agent, P.event("consult", call=call, state=state, target=number, reason=reason))
        self.host.changed()

    def _number_consult_step(self, agent: str, msg: P.ClientMessage) -> dict[str, Any]:
        call = msg.get("call")
        number = self.number_consults[call][1]
        if msg.type == "consult-cancel":
            del self.number_consults[call]
            self.host.consult_number_cancel(call)
            self._plug(agent, call)
            self._send(agent, P.event("consult", call=call, state="ended", target=number, reason="cancelled"))
            return {"state": self._state(agent)}
        if not self.host.consult_number_complete(call):
            raise ProtocolError("invalid-state", f"{number} has not answered", re=msg.id)
        del self.number_consults[call]
        self._engine(agent, E.TransferCall(agent, call, number=number), msg)
        return {"state": self._state(agent)}

    def _consult_ended(self, action: A.ConsultEnded) -> None:
        _, _, queue = self.consults.pop(action.consult, ("", "", ""))
        bridge = self.bridges.pop(action.consult, None)
        if bridge is not None:
            bridge.stop()
        target = action.target
        if target and self.talking.get(target) == action.consult:  # cancelled or the caller left
            del self.talking[target]
            media = self.media.get(target)
            if media is not None:
                media.detach()
            by = "agent" if action.reason == "agent-hangup" else "caller" if action.reason == "caller-hangup" else "system"
            self._send(target, P.event("call-ended", call=action.consult, by=by, reason=action.reason))
        if action.reason == "completed":
            return  # the caller talks with the target now (ConnectCall); this agent wraps up
        view = self.cc.engine.call_view(action.call)
        if view is not None and view.state == "connected" and action.call not in self.held:
            self._plug(action.agent, action.call)  # back with the caller
        self._send(action.agent, P.event("consult", call=action.call, state="ended", target=target or queue,
                                         reason=action.reason))

    def agent_party(self, agent: str, feed: Any) -> Callable[[Any, float], Any] | None:
        """The caller's party function when ``agent`` has WebRTC media, else None."""
        media = self.media.get(agent)
        if media is None:
            return None
        return media.attach(feed.rate, feed.frame_samples)

    # -- helpers -------------------------------------------------------------------------

    def _plug(self, agent: str, call: str) -> None:
        feed = self.host.feed_for(call)
        party = self.agent_party(agent, feed) if feed is not None else None
        if party is not None:
            feed.connect(party)

    def _caller_hears_music(self, call: str) -> None:
        feed = self.host.feed_for(call)
        if feed is not None:
            feed.music()

    def _state(self, agent: str) -> dict[str, Any]:
        view, epoch = self.cc.engine.agent_view(agent), self.cc.engine.epoch
        out = {"state": view.state, "reason": view.reason, "since": epoch + view.since,
               "pending": view.pending, "call": view.call or None}
        if view.wrapup_until is not None:
            out["wrapup_until"] = epoch + view.wrapup_until
        return out

    def _offer_object(self, offer: A.OfferCall) -> dict[str, Any]:
        obj = self._call_object(offer.call)
        obj.update(state="ringing", caller=offer.caller, queue=offer.queue, ivr_path=list(offer.ivr_path),
                   skills=list(offer.skills), callback_number=offer.callback_number)
        ring_until = self.cc.engine.agent_view(offer.agent).ring_until
        if ring_until is not None:
            obj["ring_until"] = self.cc.engine.epoch + ring_until
        return obj

    def _call_object(self, call_id: str) -> dict[str, Any]:
        view = self.cc.engine.call_view(call_id)
        now = self.host.now()
        if view is None:
            return {"id": call_id, "state": "ended"}
        held = call_id in self.held or call_id in self.number_consults or bool(view.consult)
        state = {"offered": "ringing", "connected": "held" if held else "connected"}.get(view.state, view.state)
        waited_until = view.answered_at if view.answered_at is not None else now
        since = view.connected_at if view.connected_at is not None else view.enter_time
        return {"id": call_id, "caller": view.caller, "queue": view.queue, "ivr_path": list(view.ivr_path),
                "skills": list(view.skills), "waited_s": round(waited_until - view.enter_time, 1),
                "callback_number": view.callback_number, "state": state,
                "since": self.cc.engine.epoch + since}

    def _send(self, agent: str, text: str) -> None:
        link = self.links.get(agent)
        if link is not None and not link.closed:
            link.send(text)

    def _error(self, link: AgentLink, code: str, message: str, re: int | None, **extra: Any) -> None:
        self.stats["errors"] += 1
        now = self.host.now()
        link.errors.append(now)
        while link.errors and link.errors[0] < now - ERROR_WINDOW_S:
            link.errors.popleft()
        who = link.session.agent if link.session else link.peer
        log.info("agent protocol error from %s: %s: %s", who, code, message)
        link.send(P.error(code, message, re, **extra))
        if len(link.errors) >= ERROR_LIMIT:
            self._close(link, P.CLOSE["too-many-errors"], "too many errors")
            self.closed(link)

    def _close(self, link: AgentLink, code: int, reason: str) -> None:
        if not link.closed:
            link.closed = True
            link.close(code, reason)

    def _close_media(self, agent: str) -> None:
        media = self.media.pop(agent, None)
        if media is not None:
            self.host.spawn(media.close())

    async def close(self) -> None:
        for link in list(self.links.values()):
            self._close(link, 1001, "server shutting down")
        for agent in list(self.media):
            media = self.media.pop(agent)
            await media.close()
