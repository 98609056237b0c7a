"""The agent's session, shared by the desktop GUI and the headless mode: what the agent is
(``state``, ``offer``, ``call``, ``consulting``), what they can do (async methods, one per protocol
request of docs/agent-protocol.md §3.5-3.8), and what happened (``history``: one dict per
offered call, with a quality summary for the calls that were answered).

It owns the :class:`~softphone.media.SoftphoneMedia` and follows the
:class:`~softphone.client.AgentConnection`: after every (re)connection it applies the welcome
(a call in progress comes back), renegotiates media and, with ``restore_state``, puts the
agent back where they wanted to be (a failover lands on a server where the agent is logged
out: it logs in again). Listeners see every server event plus the session's local events
(``"local": true``):

- ``{"type": "call-started", "record": {…}}`` — a call connected to this agent;
- ``{"type": "quality", "call": id, "stats": {…}, "warnings": […]}`` — every
  ``quality_interval_s`` during a call;
- ``{"type": "call-summary", "record": {…}}`` — a call ended; its record (with ``quality``) is
  now in ``history``;
- ``{"type": "connection", …}`` — from the connection (see softphone/client.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from softphone.client import AgentConnection
from softphone.errors import MediaError, SoftphoneError
from softphone.media import MediaStats, SoftphoneMedia, mos_estimate, quality_warning_list

if TYPE_CHECKING:
    from softphone.audio import AudioPort

__all__ = ["AgentSession", "summarize_quality"]

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]


@dataclass
class _CallTrack:
    record: dict[str, Any]
    start: MediaStats | None = None
    samples: list[MediaStats] = field(default_factory=list)
    poller: asyncio.Task[None] | None = None


def summarize_quality(start: MediaStats | None, samples: list[MediaStats], end: MediaStats) -> dict[str, Any]:
    """A call's quality from the session's stats at its start, during it and at its end."""
    rx = end.packets_received - (start.packets_received if start else 0)
    lost = end.packets_lost - (start.packets_lost if start else 0)
    loss = 100.0 * lost / (rx + lost) if rx + lost > 0 else 0.0
    seen = samples + [end]
    rtts = [s.rtt_ms for s in seen if s.rtt_ms is not None]
    rtt = sum(rtts) / len(rtts) if rtts else None
    jitter = sum(s.jitter_ms for s in seen) / len(seen)
    codec = end.codec or "opus"
    r, mos = mos_estimate(codec, rtt, jitter, loss)
    warned = {w["metric"] for s in seen for w in s.warnings}
    summary_warnings = quality_warning_list(codec, rtt, jitter, loss, mos, r)
    return {
        "codec": end.codec,
        "rtt_ms": round(rtt, 1) if rtt is not None else None,
        "jitter_ms": round(jitter, 2),
        "max_jitter_ms": round(max(s.jitter_ms for s in seen), 2),
        "loss_pct": round(loss, 2),
        "packets_received": rx,
        "packets_lost": lost,
        "packets_sent": end.packets_sent - (start.packets_sent if start else 0),
        "r_factor": round(r, 1),
        "mos": round(mos, 2),
        "min_mos": round(min([s.mos for s in samples] + [mos]), 2),
        "frames_in": end.frames_in - (start.frames_in if start else 0),
        "frames_out": end.frames_out - (start.frames_out if start else 0),
        "mic_underruns": end.mic_underruns - (start.mic_underruns if start else 0),
        "warnings": summary_warnings,
        "warned_during_call": sorted(warned),
    }


class AgentSession:
    """See the module docstring. ``start()`` connects (and raises what the connection raises),
    negotiates media and returns the welcome; ``close()`` logs out and stops."""

    def __init__(self, connection: AgentConnection, audio: AudioPort, *, queues: list[str] | None = None,
                 auto_answer: bool = False, auto_answer_delay_s: float = 0.0, restore_state: bool = True,
                 quality_interval_s: float = 2.0, media: SoftphoneMedia | None = None) -> None:
        self.conn = connection
        self.audio = audio
        self.media = media or SoftphoneMedia(audio, self._negotiate)
        self.queues = queues
        self.auto_answer = auto_answer
        self.auto_answer_delay_s = auto_answer_delay_s
        self.restore_state = restore_state
        self.quality_interval_s = quality_interval_s
        self.welcome: dict[str, Any] | None = None
        self.agent: dict[str, Any] = {}
        self.state: dict[str, Any] = {"state": "logged-out", "reason": "", "pending": ""}
        self.offer: dict[str, Any] | None = None
        self._gone_offer: dict[str, Any] | None = None
        self.call: dict[str, Any] | None = None
        self.consulting: dict[str, Any] | None = None
        self.breaks: list[dict[str, Any]] = []
        self.agent_queues: list[str] = []
        self.muted = False
        self.server_media = "new"
        self.history: list[dict[str, Any]] = []
        self.desired: str | None = None  # "available", "break:REASON", "logged-out"; None: no wish yet
        self.last_echo_test: dict[str, Any] | None = None
        self._active: dict[str, _CallTrack] = {}
        self._listeners: list[Listener] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._resume_task: asyncio.Task[None] | None = None
        self._echo: asyncio.Future[dict[str, Any]] | None = None
        self._closed = False
        self.conn.add_listener(self._on_event)

    # -- lifecycle ---------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    async def start(self) -> dict[str, Any]:
        welcome = await self.conn.connect()
        if self._resume_task is not None:
            await self._resume_task  # media negotiated (MediaError if not)
        return welcome

    async def close(self, *, logout: bool = True) -> None:
        """Log out of the queues (when ``logout``), revoke the token, close media."""
        if self._closed:
            return
        self._closed = True
        if logout and self.conn.connected and self.state.get("state") != "logged-out":
            with contextlib.suppress(SoftphoneError):
                await self.conn.request("logout", timeout=5)
        for track in list(self._active.values()):
            if track.poller is not None:
                track.poller.cancel()
        await self.conn.close(logout=logout)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.media.close()
        self.audio.ring(False)

    async def _negotiate(self, offer_sdp: str) -> str:
        reply = await self.conn.request("media-offer", sdp=offer_sdp, timeout=30)
        return str(reply["sdp"])

    # -- actions -----------------------------------------------------------------------------

    async def login(self, queues: list[str] | None = None, *, ready: bool = True) -> dict[str, Any]:
        """Into the ACD: available at once, or on the first break with ``ready=False``."""
        queues = queues if queues is not None else self.queues
        fields: dict[str, Any] = {"queues": queues} if queues else {}
        if not ready:
            fields["ready"] = False
        self.desired = "available" if ready else "break:"
        return self._took(await self.conn.request("login", **fields))

    async def ready(self) -> dict[str, Any]:
        self.desired = "available"
        return self._took(await self.conn.request("ready"))

    async def take_break(self, reason: str) -> dict[str, Any]:
        self.desired = f"break:{reason}"
        return self._took(await self.conn.request("break", reason=reason))

    async def logout(self) -> dict[str, Any]:
        self.desired = "logged-out"
        return self._took(await self.conn.request("logout"))

    async def wrapup_done(self) -> dict[str, Any]:
        return self._took(await self.conn.request("wrapup-done"))

    async def difficult(self) -> dict[str, Any]:
        return self._took(await self.conn.request("difficult"))

    async def answer(self, call_id: str | None = None) -> dict[str, Any]:
        call_id = call_id or (self.offer or {}).get("id")
        if not call_id:
            raise SoftphoneError("no call is ringing")
        if not await self.media.wait_ready(15):
            raise MediaError("audio is not set up yet; cannot answer")
        self.audio.ring(False)
        reply = self._took(await self.conn.request("answer", call=call_id))
        if self.offer and self.offer.get("id") == call_id:
            self.offer = None
        return reply

    async def reject(self, call_id: str | None = None) -> dict[str, Any]:
        call_id = call_id or (self.offer or {}).get("id")
        if not call_id:
            raise SoftphoneError("no call is ringing")
        offer = next((o for o in (self.offer, self._gone_offer) if o and o.get("id") == call_id), None)
        self.audio.ring(False)
        reply = self._took(await self.conn.request("reject", call=call_id))
        if offer is not None:
            self._missed(offer, "rejected")
        if self.offer is offer:
            self.offer = None
        self._gone_offer = None
        return reply

    async def hangup(self, call_id: str | None = None) -> dict[str, Any]:
        return self._took(await self.conn.request("hangup", call=self._call_id(call_id)))

    async def hold(self, call_id: str | None = None) -> dict[str, Any]:
        return self._took(await self.conn.request("hold", call=self._call_id(call_id)))

    async def resume(self, call_id: str | None = None) -> dict[str, Any]:
        return self._took(await self.conn.request("resume", call=self._call_id(call_id)))

    async def mute(self, on: bool = True) -> dict[str, Any]:
        reply = await self.conn.request("mute", on=bool(on))
        self.muted = bool(reply.get("muted", on))
        return reply

    async def dtmf(self, digits: str, call_id: str | None = None) -> dict[str, Any]:
        return await self.conn.request("dtmf", call=self._call_id(call_id), digits=digits)

    async def transfer(self, *, queue: str | None = None, agent: str | None = None, number: str | None = None,
                       call_id: str | None = None) -> dict[str, Any]:
        return self._took(await self.conn.request("transfer", call=self._call_id(call_id),
                                                  to=_target(queue, agent, number)))

    async def consult(self, *, queue: str | None = None, agent: str | None = None, number: str | None = None,
                      call_id: str | None = None) -> dict[str, Any]:
        return self._took(await self.conn.request("consult", call=self._call_id(call_id),
                                                  to=_target(queue, agent, number)))

    async def consult_complete(self, call_id: str | None = None) -> dict[str, Any]:
        return self._took(await self.conn.request("consult-complete", call=self._call_id(call_id)))

    async def consult_cancel(self, call_id: str | None = None) -> dict[str, Any]:
        return self._took(await self.conn.request("consult-cancel", call=self._call_id(call_id)))

    async def echo_test(self, seconds: float = 10.0) -> dict[str, Any]:
        """The readiness check (§3.8): returns the ``echo-test-result`` event's fields."""
        if not await self.media.wait_ready(15):
            raise MediaError("audio is not set up yet; cannot run the echo test")
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._echo = fut
        try:
            await self.conn.request("echo-test", seconds=seconds)
            result = await asyncio.wait_for(fut, seconds + 20)
        except asyncio.TimeoutError:
            raise SoftphoneError("the echo test sent no result") from None
        finally:
            self._echo = None
        self.last_echo_test = result
        return result

    def _call_id(self, call_id: str | None) -> str:
        call_id = call_id or (self.call or {}).get("id")
        if not call_id:
            raise SoftphoneError("no call in progress")
        return call_id

    def _took(self, reply: dict[str, Any]) -> dict[str, Any]:
        """A reply's new ``state``/``call`` objects become ours."""
        if isinstance(reply.get("state"), dict):
            self._set_state(reply["state"])
        if isinstance(reply.get("call"), dict) and self.call and reply["call"].get("id") == self.call.get("id"):
            self.call = reply["call"]
        return reply

    # -- events ------------------------------------------------------------------------------

    def _emit(self, event: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # noqa: BLE001
                log.exception("session listener failed on %s", event.get("type"))

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        if kind == "connection":
            if ev.get("state") == "connected":
                self._on_connected(ev)
        elif kind == "state":
            self._set_state(ev)
        elif kind == "offer":
            self.offer = dict(ev.get("call") or {})
            self.offer["ring_timeout_s"] = ev.get("ring_timeout_s")
            self.offer["offered_at"] = time.time()
            log.info("offer: call %s from %s in %s", self.offer.get("id"), self.offer.get("caller"),
                     self.offer.get("queue"))
            self.audio.ring(True)
            if self.auto_answer:
                self._spawn(self._auto_answer(self.offer["id"]))
        elif kind == "offer-cancelled":
            offer = next((o for o in (self.offer, self._gone_offer) if o and o.get("id") == ev.get("call")), None)
            if offer is not None:
                self._missed(offer, str(ev.get("reason", "")))
                self.offer = self._gone_offer = None
                self.audio.ring(False)
        elif kind == "call":
            self._on_call(ev.get("call") or {})
        elif kind == "call-ended":
            self._finish(str(ev.get("call")), str(ev.get("by", "")), str(ev.get("reason", "")))
        elif kind == "consult":
            self.consulting = None if ev.get("state") == "ended" else \
                {"call": ev.get("call"), "state": ev.get("state"), "target": ev.get("target")}
        elif kind == "echo-test-result":
            result = {k: v for k, v in ev.items() if k != "type"}
            if self._echo is not None and not self._echo.done():
                self._echo.set_result(result)
        elif kind == "media":
            self.server_media = str(ev.get("state"))
        self._emit(ev)

    def _set_state(self, st: dict[str, Any]) -> None:
        self.state = {k: v for k, v in st.items() if k != "type"}
        name = self.state.get("state")
        if name != "reserved" and self.offer is not None:
            # the offer is over; an offer-cancelled event may still come to say why
            self._gone_offer = self.offer if name != "on-call" else None
            self.offer = None
            self.audio.ring(False)
        current = self.state.get("call")
        for call_id in [c for c in self._active if c != current]:
            if name != "on-call" or current:  # a call this agent no longer handles
                self._finish(call_id, "system", "ended")
        if name not in ("on-call",) and self.call is not None and self.call.get("id") != current:
            self.call = None

    def _on_connected(self, ev: dict[str, Any]) -> None:
        welcome = ev["welcome"]
        first = self.welcome is None
        self.welcome = welcome
        self.agent = dict(welcome.get("agent") or {})
        self.breaks = list(welcome.get("breaks") or [])
        self.agent_queues = list(welcome.get("queues") or [])
        self._set_state(welcome.get("state") or {"state": "logged-out"})
        self.consulting = welcome.get("consult")
        offer = welcome.get("offer")
        self.offer = dict(offer) if offer else None
        call = welcome.get("call")
        for call_id in [c for c in self._active if not call or c != call.get("id")]:
            self._finish(call_id, "system", "connection-lost")  # gone while we were away (or another server)
        if call:
            self._on_call(call)
        else:
            self.call = None
        if self.offer:
            self.audio.ring(True)
        self._resume_task = self._spawn(self._resume(first))

    async def _resume(self, first: bool) -> None:
        welcome = self.welcome or {}
        try:
            await self.media.start(welcome.get("ice_servers") or [], welcome.get("codecs") or [])
        except SoftphoneError as exc:
            log.error("media: %s", exc.message)
            if first:
                raise
            return
        if not first and self.restore_state:
            await self._restore()
        if self.offer and self.auto_answer:
            self._spawn(self._auto_answer(self.offer["id"]))

    async def _restore(self) -> None:
        st, reason = self.state.get("state"), self.state.get("reason")
        try:
            if self.desired == "available" and st == "logged-out":
                log.info("back as logged-out: logging in again")
                await self.login()
            elif self.desired == "available" and st == "break" and reason == "disconnected":
                await self.ready()
            elif self.desired and self.desired.startswith("break:") and st == "logged-out":
                await self.login(ready=False)
                if self.desired[6:] and self.state.get("reason") != self.desired[6:]:
                    await self.take_break(self.desired[6:])
        except SoftphoneError as exc:
            log.warning("could not restore the agent's state: %s", exc.message)

    async def _auto_answer(self, call_id: str) -> None:
        if self.auto_answer_delay_s:
            await asyncio.sleep(self.auto_answer_delay_s)
        if not self.offer or self.offer.get("id") != call_id:
            return
        try:
            await self.answer(call_id)
        except SoftphoneError as exc:
            log.warning("auto-answer of %s failed: %s", call_id, exc.message)

    # -- call records ------------------------------------------------------------------------

    def _on_call(self, call: dict[str, Any]) -> None:
        call_id = call.get("id")
        if not call_id:
            return
        if call.get("state") == "ended":
            self._finish(call_id, "system", "ended")
            return
        self.call = call
        track = self._active.get(call_id)
        if track is None and call.get("state") in ("connected", "held"):
            record = {"id": call_id, "caller": call.get("caller", ""), "queue": call.get("queue", ""),
                      "ivr_path": list(call.get("ivr_path") or []), "waited_s": call.get("waited_s"),
                      "outcome": "answered", "answered_at": time.time(), "ended_at": None, "duration_s": None,
                      "ended_by": None, "reason": None, "held": 0, "server": self.conn.server, "quality": None}
            track = self._active[call_id] = _CallTrack(record)
            log.info("call %s connected (%s, %s)", call_id, record["caller"], record["queue"])
            track.poller = self._spawn(self._poll_quality(call_id, track))
            self._emit({"type": "call-started", "local": True, "record": dict(record)})
        elif track is not None and call.get("state") == "held":
            track.record["held"] += 1

    def _missed(self, offer: dict[str, Any], reason: str) -> None:
        self.history.append({"id": offer.get("id"), "caller": offer.get("caller", ""), "queue": offer.get("queue", ""),
                             "outcome": "rejected" if reason == "rejected" else "missed", "reason": reason,
                             "offered_at": offer.get("offered_at"), "server": self.conn.server})

    async def _poll_quality(self, call_id: str, track: _CallTrack) -> None:
        with contextlib.suppress(Exception):
            track.start = await self.media.stats()
        warned: set[str] = set()
        while True:
            await asyncio.sleep(self.quality_interval_s)
            stats = await self.media.stats()
            track.samples.append(stats)
            now = {w["metric"] for w in stats.warnings}
            for w in stats.warnings:
                if w["metric"] not in warned:
                    log.warning("call %s quality: %s", call_id, w["message"])
            warned = now
            self._emit({"type": "quality", "local": True, "call": call_id, "stats": stats.as_dict(),
                        "warnings": stats.warnings})

    def _finish(self, call_id: str, by: str, reason: str) -> None:
        track = self._active.pop(call_id, None)
        if self.call is not None and self.call.get("id") == call_id:
            self.call = None
        if track is None:
            return
        rec = track.record
        rec["ended_at"] = time.time()
        rec["duration_s"] = round(rec["ended_at"] - rec["answered_at"], 2)
        rec["ended_by"], rec["reason"] = by, reason
        if track.poller is not None:
            track.poller.cancel()
        log.info("call %s ended by %s (%s) after %.1f s", call_id, by, reason, rec["duration_s"])
        self._spawn(self._summarize(track))

    async def _summarize(self, track: _CallTrack) -> None:
        try:
            end = await self.media.stats()
            track.record["quality"] = summarize_quality(track.start, track.samples, end)
        except Exception:  # noqa: BLE001 - a record without quality beats no record
            log.exception("call quality summary failed")
        self.history.append(track.record)
        self._emit({"type": "call-summary", "local": True, "record": track.record})


def _target(queue: str | None, agent: str | None, number: str | None) -> dict[str, str]:
    given = {k: v for k, v in (("queue", queue), ("agent", agent), ("number", number)) if v}
    if len(given) != 1:
        raise SoftphoneError("give exactly one transfer target: a queue, an agent or a number")
    return given

