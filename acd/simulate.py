"""A discrete-event simulation of the contact center on the real ACD engine.

The simulator drives :class:`acd.engine.Engine` exactly as the server does, on a virtual
clock: one heap of future simulated events (arrivals, answers, hang-ups, wrap-ups, callers
giving up) merged with ``engine.get_timer()``; each input goes to ``engine.handle`` or
``engine.handle_timer`` and the simulator reacts to ``engine.actions()``:

- **callers** arrive as a Poisson process of ``calls_per_hour``; with ``patience_s`` each has
  an exponential patience of that mean and hangs up (``CallerHangup``) if not connected by
  then (waiting or ringing);
- **agents** are logged in and available at t = 0; they answer every ``OfferCall`` after
  ``ring_delay_s`` (default 0: at once), talk for an exponential time of mean ``aht_s`` and
  hang up (``AgentHangup``), then send ``WrapUpDone`` after ``wrapup_s`` (default 0, so that
  the handle time is the talk time, as in Erlang C);
- the caller side (music, ringback, announcements) is not simulated; its actions are counted.

Without a configuration the model is one queue ("sim", longest-idle, position and hold-time
announcements every 60 s) served by ``agents`` agents. With one (``engine_config``, e.g. the
``engine`` part of :func:`acd.config.load_config`), its queues and agents are used as they
are: every agent able to serve a queue logs in to all its queues (the others stay logged
out), ``calls_per_hour`` is the **total** rate, spread evenly (Poisson splitting) over the
queues that have at least one member able to serve them, and every call has the same
``aht_s``; the Erlang prediction pools all of it as one queue (an approximation, said so in
the report). Two settings are overridden because no
server takes part: ``reconcile_after_s`` is 0 (nobody confirms calls) and the agents send
``WrapUpDone`` after ``wrapup_s`` (a queue's shorter ``wrapup_s`` timer ends it first).

The run: arrivals from 0 to ``hours``; the statistics cover the calls that **enter** after
the warm-up (default: 1 h, or 10 % of the run if that is shorter) and before ``hours``. The
run goes on (arrivals included, so that the load stays the same) until every such call has
ended, or for at most :data:`DRAIN_LIMIT_S` after ``hours`` (then the calls still waiting
are counted "unfinished": an overloaded system). Agent occupancy is clipped to the window.
Figures and definitions: :mod:`acd.simulate_stats`. A run is deterministic for a seed.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from types import MappingProxyType
from typing import Any

from acd.engine.actions import CancelOffer, ConnectCall, OfferCall
from acd.engine.config import AgentConfig, EngineConfig, QueueConfig
from acd.engine.engine import Engine
from acd.engine.events import AgentHangup, AgentLogin, CallEnters, CallerHangup, \
    OfferAnswered, WrapUpDone
from acd.engine.records import AgentStateRecord, CallRecord
from acd.erlang import ErlangResult, erlang_a, erlang_c
from acd.errors import AcdError
from acd.simulate_stats import RunStats, SimResult

__all__ = ["SimParams", "SimulationError", "simulate", "default_config"]

log = logging.getLogger(__name__)

QUEUE = "sim"
DRAIN_LIMIT_S = 3600.0
MAX_CALLS = 20_000_000  # expected arrivals; beyond, the run would take hours
MAX_AGENTS = 100_000
DEFAULT_WARMUP_H = 1.0
ANNOUNCE_EVERY_S = 60.0

# simulated event kinds (heap entries are (time, seq, kind, a, b))
ARRIVAL, PATIENCE, ANSWER, TALK_END, WRAPUP_END = range(5)


class SimulationError(AcdError):
    """Parameters the simulator cannot run with."""


@dataclass(frozen=True)
class SimParams:
    """A run's parameters; see the module docstring. ``agents`` is None with a config."""

    calls_per_hour: float
    aht_s: float
    agents: int | None = None
    hours: float = 10.0
    seed: int = 1
    patience_s: float | None = None
    target_s: float = 20.0
    wrapup_s: float = 0.0
    ring_delay_s: float = 0.0
    warmup_hours: float | None = None  # None: min(1 h, 10 % of hours)
    config: str = ""  # the configuration file's name (for the report only)

    @property
    def warmup(self) -> float:
        if self.warmup_hours is not None:
            return self.warmup_hours
        return min(DEFAULT_WARMUP_H, 0.1 * self.hours)

    def check(self, with_config: bool) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise SimulationError(what)

        finite = all(math.isfinite(v) for v in (
            self.calls_per_hour, self.aht_s, self.hours, self.target_s, self.wrapup_s,
            self.ring_delay_s, self.patience_s or 0.0, self.warmup))
        need(finite, "parameters must be finite numbers")
        need(self.calls_per_hour > 0, "--calls-per-hour must be positive")
        need(self.aht_s > 0, "--aht must be positive (seconds)")
        if with_config:
            need(self.agents is None, "--agents does not apply with --config (its agents are used)")
        else:
            need(self.agents is not None, "give --agents N (or --config FILE)")
            need(self.agents is not None and self.agents >= 1, "--agents must be at least 1")
            need((self.agents or 0) <= MAX_AGENTS, f"--agents must be at most {MAX_AGENTS:,}")
        need(self.hours > 0, "--hours must be positive")
        need(0 <= self.warmup < self.hours, "--warmup-hours must be at least 0 and less than --hours")
        need(self.patience_s is None or self.patience_s > 0, "--patience must be positive (seconds)")
        need(self.target_s >= 0, "--target-seconds must not be negative")
        need(self.wrapup_s >= 0, "--wrapup must not be negative")
        need(self.ring_delay_s >= 0, "--ring-delay must not be negative")
        need(self.calls_per_hour * self.hours <= MAX_CALLS,
             f"{self.calls_per_hour * self.hours:,.0f} calls is too large a run "
             f"(at most {MAX_CALLS:,}); lower --hours")


def default_config(p: SimParams) -> EngineConfig:
    """One queue served by ``p.agents`` identical agents (level 1)."""
    assert p.agents is not None
    # the wrap-up timer is only a safety net: the simulated agents send WrapUpDone
    wrapup_timer = p.wrapup_s + 60.0 if p.wrapup_s > 0 else 0.0
    queue = QueueConfig(QUEUE, strategy="longest-idle", wrapup_s=wrapup_timer,
                        ring_timeout_s=max(20.0, p.ring_delay_s + 10.0),
                        announce_position_every_s=ANNOUNCE_EVERY_S, announce_holdtime=True)
    members = MappingProxyType({QUEUE: 1})
    agents = [AgentConfig(f"a{i + 1}", queues=members) for i in range(p.agents)]
    return EngineConfig.build([queue], agents, reconcile_after_s=0.0,
                              max_wrapup_s=max(600.0, wrapup_timer),
                              aht_default_s=p.aht_s + p.wrapup_s)


def _served_queues(cfg: EngineConfig) -> tuple[list[str], list[str]]:
    """The queues some agent can serve, and the agents who serve at least one of them (the
    others would sit idle and dilute the occupancy: they are not logged in)."""
    served: set[str] = set()
    staff = []
    for a in cfg.agents.values():
        mine = {q for q in a.queues if q in cfg.queues and a.level_in(cfg.queues[q]) > 0}
        served |= mine
        if mine:
            staff.append(a.id)
    return [q for q in cfg.queues if q in served], staff


def simulate(p: SimParams, engine_config: EngineConfig | None = None, *,
             on_call: Callable[[CallRecord], None] | None = None) -> SimResult:
    """Run the simulation; raises :class:`SimulationError` on bad parameters.

    ``on_call`` receives the ``CallRecord`` of every call of the measured window as it ends
    (to keep the CDRs, or to check them call by call).
    """
    p.check(engine_config is not None)
    if engine_config is None:
        cfg = default_config(p)
        queues, staff = [QUEUE], list(cfg.agents)
        note = ""
    else:
        cfg = replace(engine_config, reconcile_after_s=0.0)
        queues, staff = _served_queues(cfg)
        if not queues:
            raise SimulationError("the configuration has no queue with a member agent")
        too_slow = [q for q in queues if cfg.queues[q].ring_timeout_s <= p.ring_delay_s]
        if too_slow:
            raise SimulationError(f"--ring-delay {p.ring_delay_s:g} s is not shorter than "
                                  f"the ring timeout of queue {too_slow[0]}")
        note = (f"{len(queues)} queue(s), {len(staff)} agent(s): the model pools them "
                "as one queue (an approximation with skills, priorities or shared agents)")
    t0 = time.perf_counter()
    run = _Run(p, cfg, queues, staff, on_call)
    run.run()
    wall = time.perf_counter() - t0
    prediction = _prediction(p, len(staff))
    params = asdict(p)
    params["warmup_hours"] = p.warmup
    params["agents"] = len(staff)
    params["queues"] = queues if len(queues) <= 20 else len(queues)
    result = SimResult(run.stats.finish(), params, prediction, note,
                       dict(sorted((k.__name__, n) for k, n in run.action_counts.items())),
                       dict(sorted(run.engine.stats.items())), run.inputs, run.now,
                       run.arrivals, wall)
    log.info("simulated %d calls (%.1f h) in %.2f s: %.0f calls/s", run.arrivals,
             run.now / 3600, wall, run.arrivals / wall if wall > 0 else 0.0)
    return result


def _prediction(p: SimParams, agents: int) -> ErlangResult | None:
    """Erlang C (or A with patience) for the same load; the handle time is what keeps an
    agent from the next call: ring delay + talk + wrap-up."""
    if agents < 1:
        return None
    handle = p.aht_s + p.wrapup_s + p.ring_delay_s
    if p.patience_s:
        return erlang_a(p.calls_per_hour, handle, agents, p.patience_s, p.target_s)
    return erlang_c(p.calls_per_hour, handle, agents, p.target_s)


class _Run:
    """One run's state: the engine, the simulated event heap and the statistics."""

    def __init__(self, p: SimParams, cfg: EngineConfig, queues: list[str],
                 staff: list[str], on_call: Callable[[CallRecord], None] | None) -> None:
        master = random.Random(p.seed)
        # one stream per kind of randomness: a change in one leaves the others alone
        self.rng_arrival = random.Random(master.getrandbits(64))
        self.rng_talk = random.Random(master.getrandbits(64))
        self.rng_patience = random.Random(master.getrandbits(64))
        self.engine = Engine(cfg, rng=random.Random(master.getrandbits(64)))
        self.p = p
        self.cfg = cfg
        self.queues = queues
        self.staff = staff
        self.on_call = on_call
        self.rate = p.calls_per_hour / 3600.0
        self.start = p.warmup * 3600.0
        self.end = p.hours * 3600.0
        self.stats = RunStats(self.start, self.end, p.target_s, p.ring_delay_s)
        self.heap: list[tuple[float, int, int, str, str]] = []
        self.seq = 0
        self.now = 0.0
        self.inputs = 0
        self.arrivals = 0
        self.action_counts: Counter[type] = Counter()
        self._talk_rate = 1.0 / p.aht_s
        self._handlers: dict[type, Callable[[Any], None]] = {
            AgentStateRecord: self._agent_state, OfferCall: self._offer,
            ConnectCall: self._connect, CancelOffer: self._cancel, CallRecord: self._call_ended}
        self.live: dict[str, bool] = {}  # call -> connected
        self.window: dict[str, float] = {}  # live calls of the window -> entered at
        self.offers: set[tuple[str, str]] = set()  # (agent, call) ringing
        self.answer_now: list[tuple[str, str]] = []  # to answer at once (no ring delay)
        self.wrapups: dict[str, int] = {}  # agent -> wrap-up generation while in wrap-up
        self._wrap_gen = 0

    def _at(self, t: float, kind: int, a: str = "", b: str = "") -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, a, b))

    def run(self) -> None:
        engine = self.engine
        for aid in self.staff:
            self._input(AgentLogin(aid), 0.0)
        self._at(self.rng_arrival.expovariate(self.rate), ARRIVAL)
        heap = self.heap
        limit = self.end + DRAIN_LIMIT_S
        while heap:
            t = heap[0][0]
            deadline = engine.get_timer()
            if deadline is not None and deadline < t:
                self.now = deadline
                self.inputs += 1
                engine.handle_timer(deadline)
                self._react()
                if self.answer_now:
                    self._answer_now()
                continue
            if t >= self.end and not self.window or t > limit:
                break
            _, _, kind, a, b = heapq.heappop(heap)
            self.now = t
            self._event(t, kind, a, b)
        for call_id, entered in self.window.items():
            self.stats.unfinished(entered)
        log.debug("run ended at %.1f s: %d calls of the window unfinished", self.now,
                  len(self.window))

    def _input(self, event: object, now: float) -> None:
        self.now = now
        self.inputs += 1
        self.engine.handle(event, now)  # type: ignore[arg-type]
        self._react()
        if self.answer_now:
            self._answer_now()

    def _answer_now(self) -> None:
        """Offers answered without ring delay, in order, before the clock moves on."""
        pending = self.answer_now
        i = 0
        while i < len(pending):  # answering may produce more offers (appended here)
            agent, call = pending[i]
            i += 1
            if (agent, call) in self.offers:
                self.offers.discard((agent, call))
                self.inputs += 1
                self.engine.handle(OfferAnswered(agent, call, leg="L" + call), self.now)
                self._react()
        pending.clear()

    def _event(self, t: float, kind: int, a: str, b: str) -> None:
        if kind == ARRIVAL:
            self._arrive(t)
        elif kind == ANSWER:
            if (a, b) in self.offers:
                self.offers.discard((a, b))
                self._input(OfferAnswered(a, b, leg="L" + b), t)
        elif kind == TALK_END:
            self._input(AgentHangup(a, b), t)
        elif kind == WRAPUP_END:
            if self.wrapups.get(a) == int(b):
                self._input(WrapUpDone(a), t)
        elif kind == PATIENCE:
            if self.live.get(a) is False:  # still waiting or ringing
                self._input(CallerHangup(a), t)

    def _arrive(self, t: float) -> None:
        self.arrivals += 1
        call_id = f"c{self.arrivals}"
        rng = self.rng_arrival
        queue = self.queues[0] if len(self.queues) == 1 else rng.choice(self.queues)
        self._at(t + rng.expovariate(self.rate), ARRIVAL)
        self.live[call_id] = False
        if self.start <= t < self.end:
            self.window[call_id] = t
        if self.p.patience_s:
            self._at(t + self.rng_patience.expovariate(1.0 / self.p.patience_s), PATIENCE,
                     call_id)
        self._input(CallEnters(call_id, queue, caller=f"+1555{self.arrivals:07d}"), t)

    def _react(self) -> None:
        """Carry out the engine's actions as the simulated people would."""
        counts = self.action_counts
        handlers = self._handlers
        for action in self.engine.actions():
            kind = type(action)
            counts[kind] += 1
            handler = handlers.get(kind)
            if handler is not None:
                handler(action)

    def _offer(self, a: OfferCall) -> None:
        self.offers.add((a.agent, a.call))
        if self.p.ring_delay_s > 0:
            self._at(self.now + self.p.ring_delay_s, ANSWER, a.agent, a.call)
        else:
            self.answer_now.append((a.agent, a.call))

    def _connect(self, a: ConnectCall) -> None:
        self.live[a.call] = True
        self._at(self.now + self.rng_talk.expovariate(self._talk_rate), TALK_END, a.agent, a.call)

    def _cancel(self, a: CancelOffer) -> None:
        self.offers.discard((a.agent, a.call))

    def _agent_state(self, r: AgentStateRecord) -> None:
        self.stats.agent(r)
        if r.to_state == "wrap-up" and r.from_state != "wrap-up":
            self._wrap_gen += 1
            self.wrapups[r.agent] = self._wrap_gen
            self._at(r.time + self.p.wrapup_s, WRAPUP_END, r.agent, str(self._wrap_gen))
        elif r.from_state == "wrap-up" and r.to_state != "wrap-up":
            self.wrapups.pop(r.agent, None)

    def _call_ended(self, r: CallRecord) -> None:
        self.live.pop(r.call_id, None)
        if self.window.pop(r.call_id, None) is not None:
            self.stats.call(r)
            if self.on_call is not None:
                self.on_call(r)

