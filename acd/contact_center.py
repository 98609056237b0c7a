"""The server side of the ACD: drives :class:`acd.engine.Engine` with SIP calls and agents, and
turns its actions into what callers hear (music, ringback, announcements, an agent) and what
agents get (offers). Robot test agents (``test = true``) answer at once and echo the caller.

The engine is the sans-IO model; this adapter only maps ids to calls, plays media, and feeds
timers into the transport's single timer (``get_timer``/``handle_timer``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from acd import callback_entry as CB
from acd.engine import actions as A
from acd.engine import events as E
from acd.engine.config import EngineConfig
from acd.engine.engine import Engine
from acd.engine.core import EngineError
from acd.engine.records import AgentStateRecord, CallRecord, OfferRecord, QueueLogEntry, format_queue_log_line
from media.errors import MediaError
from media.moh import MohPlayer, MusicSource, shared_source
from media.prompts import PromptLibrary, PromptPlayer, say_position, say_wait
from media.recording import CallRecorder
from media.tones import BEEPS, ToneSource, tone

__all__ = ["CallerFeed", "ContactCenter"]

log = logging.getLogger(__name__)



class CallerFeed:
    """What a caller in the ACD hears: a *base* sound (music, ringback, silence, or the agent)
    and announcements played over it, after which the base sound resumes."""

    def __init__(self, rate: int, frame_ms: int, music: MusicSource | None, prompts: PromptLibrary | None,
                 tone_profile: str = "us") -> None:
        self.rate = rate
        self.frame_samples = rate * frame_ms // 1000
        self.music_source = music
        self.prompts = prompts
        self.tone_profile = tone_profile
        self.base = "silence"
        self.tick = 0
        self._moh: MohPlayer | None = None
        self._ring: ToneSource | None = None
        self._prompt: PromptPlayer | None = None
        self._prompt_done: Callable[[float], None] | None = None
        self.recorder: CallRecorder | None = None
        self._record_max = 0.0
        self._record_until: float | None = None
        self._record_done: Callable[[float], None] | None = None
        self.connected: Callable[[np.ndarray, float], np.ndarray | None] | None = None

    def music(self) -> None:
        self.base = "music"
        if self._moh is None and self.music_source is not None:
            self._moh = self.music_source.player(self.tick)

    def ringback(self) -> None:
        self.base = "ringback"
        self._ring = ToneSource(tone(self.tone_profile, "ringback"), self.rate)

    def voicemail(self, prompt: str, recorder: CallRecorder, max_s: float,
                  on_done: Callable[[float], None]) -> None:
        """Prompt, beep, then record what the caller says (left channel) for up to ``max_s``."""
        def start_recording(now: float) -> None:
            self.base = "recording"
            self._ring = ToneSource(BEEPS["recording-beep"], self.rate)
            self.recorder, self._record_max, self._record_until = recorder, max_s, None
            self._record_done = on_done

        if not self.announce([prompt], on_done=start_recording):
            start_recording(0.0)

    def connect_agent(self, robot: bool) -> None:
        """Robots echo the caller; a person's audio arrives with the WebRTC bridge."""
        self.connect((lambda received, t: received) if robot else (lambda received, t: np.zeros_like(received)))

    def connect(self, party: Callable[[np.ndarray, float], np.ndarray | None]) -> None:
        self.base = "connected"
        self.connected = party
        self._prompt = None

    def announce(self, names: list[str], on_done: Callable[[float], None] | None = None) -> bool:
        """Play ``names`` over the base sound; ``on_done(now)`` runs when they have been heard
        (also when they cannot be played, so an IVR never waits forever)."""
        if self.prompts is None or self.base == "connected":
            return False
        self._prompt_done = on_done
        try:
            self._prompt = self.prompts.player(names)
        except MediaError as exc:
            log.warning("announcement %s not played: %s", names, exc)
            self._prompt = None
            return False
        return True

    def stop_prompt(self) -> None:
        self._prompt = None
        self._prompt_done = None

    def __call__(self, received: np.ndarray, now: float) -> np.ndarray | None:
        self.tick += 1
        if self._prompt is not None:
            if not self._prompt.done:
                return self._prompt.next_frame()
            self._prompt = None
            done, self._prompt_done = self._prompt_done, None
            if done is not None:
                done(now)
        if self.base == "music" and self._moh is not None:
            return self._moh.frame(self.tick)
        if self.base == "ringback" and self._ring is not None:
            return self._ring.next_frame()
        if self.base == "connected" and self.connected is not None:
            return self.connected(received, now)
        if self.base == "recording" and self.recorder is not None:
            if self._record_until is None:
                self._record_until = now + self._record_max  # the deadline starts with the beep
            self.recorder.write(received, None)
            if now >= self._record_until:
                self.stop_recording()
                done, self._record_done = self._record_done, None
                if done is not None:
                    done(now)
            if self._ring is not None and not self._ring.done:
                return self._ring.next_frame()  # the beep
        return np.zeros(self.frame_samples, dtype=np.int16)

    def stop_recording(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None


class ContactCenter:
    """Owns the engine for the server. ``hangup(call_id, reason)`` and ``feed_for(call_id)`` are
    the server's hooks; records go to ``on_record`` (the store)."""

    def __init__(self, config: EngineConfig, *, epoch: float, hangup: Callable[[str, str], None],
                 feed_for: Callable[[str], CallerFeed | None], on_record: Callable[[Any], None] | None = None,
                 exit_queue: Callable[[A.ExitQueue], None] | None = None) -> None:
        self.config = config
        self.engine = Engine(config, epoch=epoch)
        self.hangup = hangup
        self.feed_for = feed_for
        self.on_record = on_record
        self.exit_queue = exit_queue  # where a caller who leaves a queue goes (the server decides)
        self.callbacks: Any = None  # the server's callback dialler (scheduled(), dial())
        self.stats: Counter[str] = Counter()
        self.robots = {name for name, agent in config.agents.items() if agent.test}
        self.offers: dict[str, list[A.OfferCall]] = {}  # agent → pending offers (control-API agents)
        self._deferred: list[tuple[float, E.Event]] = []  # robot answers, scheduled
        self._alive_every = max(1.0, config.reconcile_after_s / 3) if config.reconcile_after_s else 0.0
        self._next_alive = 0.0
        self.active: set[str] = set()  # call ids the SIP side still has
        self.listeners: list[Callable[[Any, float], None]] = []  # see every action (the agent hub)
        self.agent_media: Callable[[str, CallerFeed], Any] | None = None  # a WebRTC agent's party
        self.transfer_out: Callable[[A.TransferOut], None] | None = None  # the server bridges it out
        self.callback_offers: dict[str, str] = {}  # call → its callback key, once offered
        self.dialogues: dict[str, CB.CallbackEntry] = {}  # callers leaving a callback number
        # a prompt ends on the media path: the server's one timer is re-armed through this
        self.changed: Callable[[], None] = lambda: None

    # -- prompts and music, shared by all callers ----------------------------------------------

    @staticmethod
    def media_for(data_dir: Path, rate: int) -> tuple[MusicSource, PromptLibrary]:
        return shared_source(data_dir / "moh", rate), PromptLibrary(data_dir / "prompts", rate)

    # -- timer source (the transport's single timer) ------------------------------------------

    def get_timer(self) -> float | None:
        times = [t for t in (self.engine.get_timer(), self._deferred[0][0] if self._deferred else None,
                             self._next_alive if self._alive_every and self.active else None,
                             self._dialogue_timer()) if t is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        while self._deferred and self._deferred[0][0] <= now:
            _, event = self._deferred.pop(0)
            self._handle(event, now)
        if self._alive_every and self.active and now >= self._next_alive:
            self._next_alive = now + self._alive_every
            self._handle(E.CallsAlive(frozenset(self.active)), now)
        self._dialogue_timers(now)
        self.engine.handle_timer(now)
        self._process(now)

    # -- inputs from the server ------------------------------------------------------------------

    def start(self, now: float, restore: Sequence[E.Event] = ()) -> None:
        """Agents restored from the store come back first (as after a lost connection: they
        carry on when they reconnect); robot agents log in and become available at once."""
        self._next_alive = now + self._alive_every
        for event in restore:
            try:
                self._handle(event, now)
            except EngineError as exc:
                log.warning("could not restore %s: %s", event, exc)
        if restore:
            log.info("restored %d agent event(s) from before the restart", len(restore))
        for agent in sorted(self.robots):
            if getattr(self.engine.agent_view(agent), "state", "") not in ("logged-out", ""):
                continue
            self._handle(E.AgentLogin(agent), now)
            self._handle(E.AgentReady(agent), now)
        log.info("ACD ready: %d queue(s), %d agent(s) (%d robot)", len(self.config.queues),
                 len(self.config.agents), len(self.robots))

    def enter(self, call_id: str, queue: str, caller: str, now: float, priority: int | None = None, *,
              skills: tuple[str, ...] = (), ivr_path: tuple[str, ...] = ()) -> None:
        self.active.add(call_id)
        self._handle(E.CallEnters(call_id, queue, caller, priority, skills=skills, ivr_path=ivr_path), now)

    def caller_gone(self, call_id: str, now: float) -> None:
        self._drop_dialogue(call_id, "caller hung up")
        if call_id in self.active:
            self.active.discard(call_id)
            self._handle(E.CallerHangup(call_id), now)

    def digit(self, call_id: str, digit: str, now: float) -> None:
        """A key from a waiting caller: to their callback dialogue if one runs; the offered
        callback key starts one (the engine gets the request once a number is confirmed);
        any other key goes to the engine (exit key)."""
        if call_id not in self.active:
            return
        if call_id in self.dialogues:
            self.dialogues[call_id].digit(digit, now)
            self._run_dialogue(call_id, now)
            return
        call = self.engine.calls.get(call_id)
        if digit == self.callback_offers.get(call_id) and call is not None and call.state == "queued":
            dialogue = self.dialogues[call_id] = CB.CallbackEntry(call.caller, now)
            log.info("call %s: callback number dialogue starts (caller ID %s)", call_id,
                     call.caller or "-")
            dialogue.start(now)
            self._run_dialogue(call_id, now)
            return
        self._handle(E.CallerDigit(call_id, digit), now)

    # -- the callback-number dialogue (acd.callback_entry), one per caller who asked ------------

    def _run_dialogue(self, call_id: str, now: float) -> None:
        dialogue = self.dialogues.get(call_id)
        if dialogue is not None:
            feed = self._feed(call_id)
            for action in dialogue.actions():
                if isinstance(action, CB.PlayPrompts):
                    done = (lambda t, d=dialogue, p=action.play_id: self._dialogue_prompt_done(call_id, d, p, t))
                    if feed is None or not feed.announce(list(action.names), on_done=done):
                        done(now)  # nothing to hear: go on as if it had been played
                elif isinstance(action, CB.StopPrompt):
                    if feed is not None:
                        feed.stop_prompt()  # the music resumes
                elif isinstance(action, CB.Confirmed):
                    self._drop_dialogue(call_id, "")
                    log.info("call %s: callback number confirmed", call_id)
                    self._handle(E.CallbackRequest(call_id, action.number), now)
                elif isinstance(action, CB.Cancelled):
                    self.dialogues.pop(call_id, None)
                    log.info("call %s: callback cancelled (%s), the caller keeps waiting", call_id,
                             action.reason)

    def _dialogue_prompt_done(self, call_id: str, dialogue: CB.CallbackEntry, play_id: int,
                              now: float) -> None:
        if self.dialogues.get(call_id) is dialogue:
            dialogue.prompt_done(now, play_id)
            self._run_dialogue(call_id, now)
            self.changed()  # the dialogue's next deadline

    def _drop_dialogue(self, call_id: str, why: str, *, forget_offer: bool = True) -> None:
        """End a call's dialogue silently (an agent, a hangup, the call left the queue)."""
        if forget_offer:
            self.callback_offers.pop(call_id, None)
        dialogue = self.dialogues.pop(call_id, None)
        if dialogue is None:
            return
        if why:
            log.info("call %s: callback number dialogue dropped: %s", call_id, why)
        feed = self._feed(call_id) if dialogue.playing else None
        if feed is not None:
            feed.stop_prompt()

    def _dialogue_timer(self) -> float | None:
        return min((t for d in self.dialogues.values() if (t := d.get_timer()) is not None), default=None)

    def _dialogue_timers(self, now: float) -> None:
        for call_id, dialogue in list(self.dialogues.items()):
            deadline = dialogue.get_timer()
            if deadline is not None and deadline <= now:
                dialogue.handle_timer(now)
                self._run_dialogue(call_id, now)

    def agent_command(self, agent: str, action: str, now: float, **kw: Any) -> dict[str, Any]:
        """The agent API until agents connect over WebRTC: login, ready, break, logout, answer,
        reject, hangup, wrapup-done, difficult."""
        if agent not in self.config.agents:
            return {"error": f"unknown agent {agent!r}"}
        call = kw.get("call") or next((o.call for o in self.offers.get(agent, [])), "")
        events = {
            "login": lambda: E.AgentLogin(agent), "ready": lambda: E.AgentReady(agent),
            "break": lambda: E.AgentBreak(agent, kw.get("reason") or "lunch"),
            "logout": lambda: E.AgentLogout(agent, "api"), "answer": lambda: E.OfferAnswered(agent, call),
            "reject": lambda: E.OfferRejected(agent, call, "rejected"),
            "hangup": lambda: E.AgentHangup(agent, call or self._connected_call(agent)),
            "wrapup-done": lambda: E.WrapUpDone(agent), "difficult": lambda: E.FlagDifficult(agent),
        }
        if action not in events:
            return {"error": f"unknown agent action {action!r}"}
        event = events[action]()
        try:
            self._handle(event, now)
        except EngineError as exc:  # a wrong move by the agent client: reported, not raised
            return {"error": str(exc)}
        if isinstance(event, E.AgentHangup) and event.call:
            self.hangup(event.call, f"agent {agent} hung up")  # the engine leaves the caller's leg to us
        view = self.engine.agent_view(agent)
        return {"agent": agent, "state": getattr(view, "state", None), "call": getattr(view, "call", None)}

    def agent_event(self, event: E.Event, now: float) -> EngineError | None:
        """An agent client's request as an engine event; the engine's refusal, if any."""
        try:
            self._handle(event, now)
        except EngineError as exc:
            return exc
        return None

    def connect_feed(self, agent: str, feed: CallerFeed) -> None:
        """The caller now talks with ``agent``: a robot's echo, or a WebRTC agent's audio."""
        party = self.agent_media(agent, feed) if self.agent_media is not None and agent not in self.robots else None
        if party is not None:
            feed.connect(party)
        else:
            feed.connect_agent(agent in self.robots)

    def _connected_call(self, agent: str) -> str:
        return getattr(self.engine.agent_view(agent), "call", None) or ""

    # -- engine plumbing ---------------------------------------------------------------------------

    def _handle(self, event: E.Event, now: float) -> None:
        self.engine.handle(event, now)
        self._process(now)

    def _process(self, now: float) -> None:
        for action in self.engine.actions():
            name = type(action).__name__
            self.stats[name] += 1
            handler = getattr(self, f"_on_{name}", None)
            if handler is not None:
                handler(action, now)
            elif isinstance(action, (QueueLogEntry, CallRecord, OfferRecord, AgentStateRecord)):
                self._record(action)
            else:
                log.debug("ACD action %s not handled", action)
            for listener in self.listeners:
                try:
                    listener(action, now)
                except Exception:  # an agent-side fault must not stop the ACD
                    log.exception("ACD action %s: listener failed", name)

    def _record(self, record: Any) -> None:
        if isinstance(record, AgentStateRecord) and record.agent in self.robots and record.to_state == "wrap-up":
            self._deferred.append((0.0, E.WrapUpDone(record.agent)))  # robots need no wrap-up
            self._deferred.sort(key=lambda item: item[0])
        if isinstance(record, QueueLogEntry):
            log.info("queue_log %s", format_queue_log_line(record))
        elif isinstance(record, CallRecord):
            log.info("CDR %s", record)
        if self.on_record is not None:
            self.on_record(record)

    def _feed(self, call_id: str) -> CallerFeed | None:
        return self.feed_for(call_id)

    def _on_StartMusic(self, a: A.StartMusic, now: float) -> None:  # noqa: N802 - named after actions
        feed = self._feed(a.call)
        if feed is not None:
            feed.music()

    def _on_Ringback(self, a: A.Ringback, now: float) -> None:  # noqa: N802
        feed = self._feed(a.call)
        if feed is not None:
            feed.ringback()

    def _on_Announce(self, a: A.Announce, now: float) -> None:  # noqa: N802
        if a.kind == "callback-offer" and a.key:
            self.callback_offers[a.call] = a.key  # the key now starts the callback dialogue
        if a.call in self.dialogues:
            log.info("call %s announce %s skipped: callback dialogue", a.call, a.kind)
            return  # it would cut the dialogue's prompt
        feed = self._feed(a.call)
        names: list[str] = []
        if a.kind == "position" and a.position is not None:
            names = say_position(a.position)
            if a.ewt_s is not None:
                names += say_wait(a.ewt_s)
        elif a.prompt:
            names = [a.prompt]
        elif a.kind == "callback-offer":
            names = ["queue/callback-offer"]
        log.info("call %s announce %s position=%s ewt=%s", a.call, a.kind, a.position,
                 None if a.ewt_s is None else round(a.ewt_s))
        if feed is not None and names:
            feed.announce(names)

    def _on_OfferCall(self, a: A.OfferCall, now: float) -> None:  # noqa: N802
        self._drop_dialogue(a.call, f"offered to {a.agent}", forget_offer=False)
        log.info("offer call %s from queue %s to agent %s (IVR %s; skills %s)", a.call, a.queue, a.agent,
                 " > ".join(a.ivr_path) or "-", ",".join(a.skills) or "-")
        if a.agent in self.robots:
            self._deferred.append((now + 0.2, E.OfferAnswered(a.agent, a.call)))
            self._deferred.sort(key=lambda item: item[0])
        else:
            self.offers.setdefault(a.agent, []).append(a)

    def _on_CancelOffer(self, a: A.CancelOffer, now: float) -> None:  # noqa: N802
        self.offers[a.agent] = [o for o in self.offers.get(a.agent, []) if o.call != a.call]
        log.info("offer of call %s to %s cancelled: %s", a.call, a.agent, a.reason)

    def _on_RejectLateAnswer(self, a: A.RejectLateAnswer, now: float) -> None:  # noqa: N802
        log.info("late answer of call %s by %s rejected: %s", a.call, a.agent, a.reason)

    def _on_ConnectCall(self, a: A.ConnectCall, now: float) -> None:  # noqa: N802
        self._drop_dialogue(a.call, f"connected to {a.agent}")
        self.offers[a.agent] = [o for o in self.offers.get(a.agent, []) if o.call != a.call]
        log.info("call %s connected to agent %s", a.call, a.agent)
        if a.callback_number and self.callbacks is not None:
            self.callbacks.dial(a)  # the customer is dialled now
            return
        feed = self._feed(a.call)
        if feed is not None:
            self.connect_feed(a.agent, feed)

    def _on_DropAgentLeg(self, a: A.DropAgentLeg, now: float) -> None:  # noqa: N802
        log.info("agent %s leg of call %s dropped: %s", a.agent, a.call, a.reason)

    def _on_ConsultStarted(self, a: A.ConsultStarted, now: float) -> None:  # noqa: N802
        log.info("call %s: agent %s consults %s (%s)", a.call, a.agent, a.target or a.queue, a.consult)
        self.active.add(a.consult)  # no SIP leg: alive while the consulting agent is

    def _on_ConsultEnded(self, a: A.ConsultEnded, now: float) -> None:  # noqa: N802
        log.info("call %s: consultation %s ended: %s", a.call, a.consult, a.reason)
        self.active.discard(a.consult)

    def _on_TransferOut(self, a: A.TransferOut, now: float) -> None:  # noqa: N802
        log.info("call %s: agent %s transfers it to %s", a.call, a.agent, a.number)
        self.active.discard(a.call)  # no longer the engine's
        if self.transfer_out is not None:
            self.transfer_out(a)
        else:
            self.hangup(a.call, "transfer out not available")

    def _on_JoinRejected(self, a: A.JoinRejected, now: float) -> None:  # noqa: N802
        self._drop_dialogue(a.call, "rejected")
        self.active.discard(a.call)
        self.hangup(a.call, f"queue {a.queue} rejected the call: {a.reason}")

    def _on_ExitQueue(self, a: A.ExitQueue, now: float) -> None:  # noqa: N802
        self._drop_dialogue(a.call, f"left the queue ({a.reason})")
        self.active.discard(a.call)
        log.info("call %s left queue %s: %s -> %s %s", a.call, a.queue, a.reason, a.action, a.target)
        if self.exit_queue is not None:
            self.exit_queue(a)
        else:
            self.hangup(a.call, f"left queue {a.queue}: {a.reason} ({a.action})")

    def _on_HangupCall(self, a: A.HangupCall, now: float) -> None:  # noqa: N802
        self._drop_dialogue(a.call, "hung up")
        self.active.discard(a.call)
        self.hangup(a.call, a.reason)

    def _on_CallbackScheduled(self, a: A.CallbackScheduled, now: float) -> None:  # noqa: N802
        self._drop_dialogue(a.call, "callback scheduled")
        log.info("call %s: callback to %s scheduled in queue %s", a.call, a.number, a.queue)
        self.active.discard(a.call)  # the caller's leg goes; the callback keeps its place
        if self.callbacks is not None:
            self.callbacks.scheduled(a)

    def callback_failed(self, call_id: str, now: float) -> None:
        self._handle(E.CallbackFailed(call_id), now)

    def callback_reached(self, call_id: str, now: float) -> None:
        self.active.add(call_id)

    def _on_MoveQueue(self, a: A.MoveQueue, now: float) -> None:  # noqa: N802
        self._drop_dialogue(a.call, f"moved to queue {a.to_queue}")  # its callback offer is not ours
        log.info("call %s moved from %s to %s: %s", a.call, a.from_queue, a.to_queue, a.reason)

