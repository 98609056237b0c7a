"""Random sequences of every engine input (hypothesis RuleBasedStateMachine).

Every step is followed by ``check_invariants()`` (inside ``Sim``). The inputs are those a
server may legitimately send, racing included: late and duplicate answers, rejects after
timeouts, hangups for calls already gone, connection losses, lost confirmations. At the
end every call is hung up and every timer drained: all agents must be available, on break
or logged out, and every call must have exactly one CallRecord.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from acd.engine.actions import ExitQueue, HangupCall, JoinRejected
from acd.engine.events import (
    AgentBreak,
    AgentConnectionLost,
    AgentConnectionRestored,
    AgentHangup,
    AgentLogin,
    AgentLogout,
    AgentReady,
    CallbackFailed,
    CallbackRequest,
    CallEnters,
    CallerDigit,
    CallerHangup,
    CallsAlive,
    ConsultCall,
    ConsultCancel,
    ConsultComplete,
    Event,
    FlagDifficult,
    OfferAnswered,
    OfferRejected,
    TransferCall,
    WrapUpDone,
)
from acd.engine.core import EngineError
from acd.engine.records import CallRecord

from tests.engine.helpers import Sim, config

QUEUES = {
    "sales": {"strategy": "longest-idle", "wrapup_s": 5, "ring_timeout_s": 8, "min_level": 3,
              "skill_widening": [{"after_s": 10, "min_level": 2}, {"after_s": 25, "min_level": 1}],
              "announce_position_every_s": 15, "announce_holdtime": True, "max_wait_s": 50,
              "overflow": {"action": "hangup", "prompt": "bye"}, "leave_when_empty": "yes"},
    "support": {"strategy": "ring-all", "wrapup_s": 3, "ring_timeout_s": 6, "max_wait_s": 40,
                "overflow": {"action": "queue", "target": "backup"}, "exit_key": "0",
                "periodic_announce_every_s": 12, "periodic_prompt": "p", "weight": 2},
    "backup": {"strategy": "rrmemory", "wrapup_s": 0, "max_wait_s": 60, "max_len": 6,
               "overflow": {"action": "callback"}, "leave_when_empty": "strict",
               "callback": {"offer_after_s": 20, "key": "1", "expire_s": 300, "attempts": 2,
                            "retry_after_s": 30}},
    "vip": {"strategy": "fewest-calls", "join_empty": "no", "max_wait_s": 30, "priority": 3,
            "overflow": {"action": "voicemail", "target": "box"}, "prefer_higher_level": False},
}
AGENTS = {
    "a1": {"queues": {"sales": 3, "support": 1}, "skills": {"french": 2}},
    "a2": {"queues": {"sales": 2, "support": 2, "backup": 1}},
    "a3": {"queues": {"sales": 1, "backup": 2, "vip": 1}, "skills": {"french": 1, "billing": 3}},
    "a4": {"queues": {"support": 1, "vip": 2}, "wrapup_override_s": 9, "skills": {"billing": 1}},
    "a5": {"queues": {"backup": 1, "sales": 1}, "test": True},
}
ACD = {"no_answer_limit": 2, "reject_delay_s": 4, "reconcile_after_s": 30,
       "connection_grace_s": 15, "breaks": {"lunch": {}, "short": {"auto_ready_s": 20}}}
AGENT_IDS = sorted(AGENTS)
DELAYS = [0.0, 0.5, 1.0, 3.0, 6.0, 8.0, 10.0, 15.0, 31.0, 70.0]


class EngineMachine(RuleBasedStateMachine):
    @initialize(disconnect=st.sampled_from(["logged-out", "break"]))
    def setup(self, disconnect: str) -> None:
        self.sim = Sim(config(QUEUES, AGENTS, {**ACD, "disconnect_to": disconnect}))
        self.n = 0
        self.calls: list[str] = []
        self.entries: Counter[str] = Counter()  # CallEnters sent per call id
        self.last: Event | None = None
        self.lost: set[str] = set()  # calls the server stopped confirming (lost BYE)

    def send(self, event: Event) -> None:
        self.sim.send(event)
        self.last = event

    def live(self) -> list[str]:
        return [c for c in self.calls if c in self.sim.engine.calls]

    # -- agents ------------------------------------------------------------------------

    @rule(agent=st.sampled_from(AGENT_IDS), subset=st.booleans())
    def login(self, agent: str, subset: bool) -> None:
        queues = tuple(sorted(AGENTS[agent]["queues"]))[:1] if subset else None
        self.send(AgentLogin(agent, queues))

    @rule(agent=st.sampled_from(AGENT_IDS))
    def logout(self, agent: str) -> None:
        self.send(AgentLogout(agent))

    @rule(agent=st.sampled_from(AGENT_IDS), reason=st.sampled_from(["lunch", "short"]))
    def go_break(self, agent: str, reason: str) -> None:
        if self.sim.state(agent) != "logged-out":
            self.send(AgentBreak(agent, reason))

    @rule(agent=st.sampled_from(AGENT_IDS))
    def ready(self, agent: str) -> None:
        if self.sim.state(agent) != "logged-out":
            self.send(AgentReady(agent))

    @rule(agent=st.sampled_from(AGENT_IDS))
    def wrapup_done(self, agent: str) -> None:
        self.send(WrapUpDone(agent))

    @rule(agent=st.sampled_from(AGENT_IDS))
    def difficult(self, agent: str) -> None:
        self.send(FlagDifficult(agent))

    @rule(agent=st.sampled_from(AGENT_IDS), up=st.booleans())
    def connection(self, agent: str, up: bool) -> None:
        self.send(AgentConnectionRestored(agent) if up else AgentConnectionLost(agent))

    # -- calls -------------------------------------------------------------------------

    @rule(queue=st.sampled_from(sorted(QUEUES)), prio=st.sampled_from([None, 0, 5]),
          skills=st.sampled_from([(), (), ("french",), ("billing",), ("billing", "french")]))
    def enter(self, queue: str, prio: int | None, skills: tuple[str, ...] = ()) -> None:
        self.n += 1
        call = f"c{self.n}"
        self.calls.append(call)
        self.entries[call] += 1
        self.send(CallEnters(call, queue, caller=f"555{self.n}", priority=prio, test=self.n % 7 == 0,
                             skills=skills, ivr_path=("main:1",) if skills else ()))

    @rule(data=st.data(), queue=st.sampled_from(sorted(QUEUES)))
    def reenter(self, data: st.DataObject, queue: str) -> None:
        """An ended call id enters again (the dial plan sends the caller back to a queue)."""
        ended = [c for c in self.calls if c not in self.sim.engine.calls]
        if ended:
            call = data.draw(st.sampled_from(ended))
            self.entries[call] += 1
            self.lost.discard(call)
            self.send(CallEnters(call, queue))

    @precondition(lambda self: self.calls)
    @rule(data=st.data())
    def caller_hangup(self, data: st.DataObject) -> None:
        self.send(CallerHangup(data.draw(st.sampled_from(self.calls))))

    @precondition(lambda self: self.calls)
    @rule(data=st.data(), agent=st.sampled_from(AGENT_IDS))
    def agent_hangup(self, data: st.DataObject, agent: str) -> None:
        eng = self.sim.engine
        on = eng.agents[agent].call
        call = on.id if on is not None and data.draw(st.booleans()) else \
            data.draw(st.sampled_from(self.calls))
        self.send(AgentHangup(agent, call))

    def offers(self) -> list[tuple[str, str]]:
        return sorted((a.id, a.offer.call.id) for a in self.sim.engine.agents.values()
                      if a.offer is not None)

    @precondition(lambda self: self.offers())
    @rule(data=st.data())
    def answer_offer(self, data: st.DataObject) -> None:
        agent, call = data.draw(st.sampled_from(self.offers()))
        self.send(OfferAnswered(agent, call, leg=f"leg-{agent}-{call}"))

    @precondition(lambda self: self.offers())
    @rule(data=st.data())
    def reject_offer(self, data: st.DataObject) -> None:
        agent, call = data.draw(st.sampled_from(self.offers()))
        self.send(OfferRejected(agent, call))

    @precondition(lambda self: self.calls)
    @rule(data=st.data(), agent=st.sampled_from(AGENT_IDS), answer=st.booleans())
    def stray_answer_or_reject(self, data: st.DataObject, agent: str, answer: bool) -> None:
        call = data.draw(st.sampled_from(self.calls + ["never-existed"]))
        self.send(OfferAnswered(agent, call) if answer else OfferRejected(agent, call))

    @precondition(lambda self: self.calls)
    @rule(data=st.data(), digit=st.sampled_from(["0", "1", "5"]))
    def digit(self, data: st.DataObject, digit: str) -> None:
        self.send(CallerDigit(data.draw(st.sampled_from(self.calls)), digit))

    @precondition(lambda self: self.calls)
    @rule(data=st.data())
    def callback_request(self, data: st.DataObject) -> None:
        self.send(CallbackRequest(data.draw(st.sampled_from(self.calls)), "0600"))

    @rule(data=st.data())
    def callback_failed(self, data: st.DataObject) -> None:
        eng = self.sim.engine
        ok = [c for c in self.calls if c in eng.ended
              or (c in eng.calls and eng.calls[c].callback
                  and eng.calls[c].state in ("connected", "callback-pending", "callback-retry"))]
        if ok:
            self.send(CallbackFailed(data.draw(st.sampled_from(ok))))

    @precondition(lambda self: self.live())
    @rule(data=st.data(), reached=st.booleans())
    def callback_attempt(self, data: st.DataObject, reached: bool) -> None:
        """A caller asks for a callback; an agent takes it; the customer is (not) reached."""
        call = data.draw(st.sampled_from(self.live()))
        if self.sim.call_state(call) == "queued":
            self.send(CallbackRequest(call))
        for agent in AGENT_IDS:
            if self.sim.state(agent) in ("logged-out", "break"):
                self.send(AgentLogin(agent) if self.sim.state(agent) == "logged-out" else AgentReady(agent))
        for agent, offered in self.offers():
            self.send(OfferAnswered(agent, offered))
        c = self.sim.engine.calls.get(call)
        if c is not None and c.state == "connected" and c.callback:
            self.send(CallerHangup(call) if reached else CallbackFailed(call))

    @precondition(lambda self: self.live())
    @rule(data=st.data(), where=st.sampled_from(["queue", "agent", "number"]))
    def transfer(self, data: st.DataObject, where: str) -> None:
        """The connected agent transfers blind (an unavailable target agent is refused)."""
        eng = self.sim.engine
        on = [c for c in self.live() if eng.calls[c].state == "connected"]
        if not on:
            return
        call = eng.calls[data.draw(st.sampled_from(on))]
        target = {"queue": {"queue": data.draw(st.sampled_from(sorted(QUEUES)))},
                  "agent": {"to_agent": data.draw(st.sampled_from(AGENT_IDS))},
                  "number": {"number": "+3312345"}}[where]
        try:
            self.send(TransferCall(call.agent.id, call.id, **target))
        except EngineError as exc:
            assert where == "agent" and "not available" in str(exc), exc

    @precondition(lambda self: self.live())
    @rule(data=st.data(), step=st.sampled_from(["agent", "queue", "complete", "cancel"]))
    def consult(self, data: st.DataObject, step: str) -> None:
        """Attended transfer steps on a connected customer call; refusals change nothing."""
        eng = self.sim.engine
        on = [c for c in self.live() if eng.calls[c].state == "connected"]
        if not on:
            return
        call = eng.calls[data.draw(st.sampled_from(on))]
        agent = call.agent.id
        event = {"agent": lambda: ConsultCall(agent, call.id, to_agent=data.draw(st.sampled_from(AGENT_IDS))),
                 "queue": lambda: ConsultCall(agent, call.id, queue=data.draw(st.sampled_from(sorted(QUEUES)))),
                 "complete": lambda: ConsultComplete(agent, call.id),
                 "cancel": lambda: ConsultCancel(agent, call.id)}[step]()
        try:
            self.send(event)
        except EngineError as exc:
            assert any(m in str(exc) for m in ("not available", "already running", "has not answered",
                                               "no consultation")), exc

    @precondition(lambda self: self.live())
    @rule(data=st.data())
    def lose_confirmation(self, data: st.DataObject) -> None:
        self.lost.add(data.draw(st.sampled_from(self.live())))

    @rule()
    def alive(self) -> None:
        self.send(CallsAlive(frozenset(c for c in self.live() if c not in self.lost)))

    @precondition(lambda self: self.last is not None)
    @rule()
    def duplicate(self) -> None:
        assert self.last is not None
        if isinstance(self.last, (AgentBreak, AgentReady)) and \
                self.sim.state(self.last.agent) == "logged-out":
            return
        if isinstance(self.last, CallEnters):
            return  # a live duplicate id is a server bug (DuplicateCall)
        if isinstance(self.last, (CallbackFailed, TransferCall, ConsultCall, ConsultComplete, ConsultCancel)):
            return  # a second transfer of a call that moved on is refused (tested elsewhere)
        self.send(self.last)

    @rule(dt=st.sampled_from(DELAYS), confirm=st.booleans())
    def advance(self, dt: float, confirm: bool) -> None:
        if confirm:  # the server's periodic report, minus the calls whose BYE was lost
            self.alive()
        self.sim.advance(self.sim.now + dt)

    @rule(queue=st.sampled_from(sorted(QUEUES)), n=st.integers(1, 4))
    def busy_moment(self, queue: str, n: int) -> None:
        """Several agents log in, callers arrive, every offer is answered."""
        for agent in AGENT_IDS[:3]:
            if self.sim.state(agent) == "logged-out":
                self.send(AgentLogin(agent))
        for _ in range(n):
            self.enter(queue, None)
        for agent, call in self.offers():
            self.send(OfferAnswered(agent, call))

    @invariant()
    def consistent(self) -> None:
        if hasattr(self, "sim"):
            self.sim.engine.check_invariants()

    # -- the end -----------------------------------------------------------------------

    def teardown(self) -> None:
        if not hasattr(self, "sim"):
            return
        s = self.sim
        for _ in range(200):
            live = self.live()
            if not live:
                break
            for c in live:
                call = s.engine.calls.get(c)
                if call is not None and call.state not in ("callback-pending", "callback-retry"):
                    s.send(CallerHangup(c))
            s.advance(s.now + 400)
        assert not s.engine.calls, {c: v.state for c, v in s.engine.calls.items()}
        s.run_out()
        assert s.engine.get_timer() is None or all(
            a.state in ("available", "break", "logged-out") for a in s.engine.agents.values())
        for a in s.engine.agents.values():
            assert a.state in ("available", "break", "logged-out"), (a.id, a.state)
        records = Counter(r.call_id for r in s.of(CallRecord))
        assert records == self.entries  # exactly one CallRecord per call
        # the engine ends a call by itself only with an explicit action saying why
        by_engine = Counter()
        for r in s.of(CallRecord):
            if r.outcome in ("timeout", "overflow", "leave-empty", "exit-key"):
                by_engine[("exit", r.call_id)] += 1
            elif r.outcome in ("reconciled", "callback-expired"):
                by_engine[("hangup", r.call_id)] += 1
            elif r.outcome == "rejected":
                by_engine[("rejected", r.call_id)] += 1
        customer = set(self.entries)  # consultations between agents have no CallRecord
        actions = Counter([("exit", a.call) for a in s.of(ExitQueue) if a.call in customer]
                          + [("hangup", a.call) for a in s.of(HangupCall) if a.call in customer]
                          + [("rejected", a.call) for a in s.of(JoinRejected) if a.call in customer])
        assert by_engine == actions


EngineMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestEngineMachine = EngineMachine.TestCase
