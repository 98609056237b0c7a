"""The agent hub on virtual time: protocol requests drive a real engine through the contact
center; engine actions reach the right agent's socket; heartbeats, replacement, reconnect
and error floods. Media is a recording stand-in here (tests/web/test_agent_media.py and the
end-to-end tests use real WebRTC)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from acd.contact_center import CallerFeed, ContactCenter
from acd.store import open_store
from acd.store.passwords import hash_password
from acd.web.auth import Authenticator
from acd.web.hub import ERROR_LIMIT, AgentHub, AgentLink

from tests.engine.helpers import config

QUEUES = {"support": {"wrapup_s": 5, "ring_timeout_s": 10}}
AGENTS = {"alice": {"queues": {"support": 1}}, "bob": {"queues": {"support": 1}}}
ACD = {"reconcile_after_s": 0, "connection_grace_s": 30, "breaks": {"lunch": {"label": "Lunch"}}}


class FakeMedia:
    def __init__(self) -> None:
        self.attached: list[tuple[int, int]] = []
        self.held = self.muted = False
        self.on_state: Any = None
        self.offers = 0

    async def accept_offer(self, sdp: str) -> str:
        self.offers += 1
        return "v=0 answer"

    def attach(self, rate: int, frame_samples: int):
        self.attached.append((rate, frame_samples))
        return lambda received, now: np.full(frame_samples, 7, dtype=np.int16)

    def detach(self) -> None:
        self.attached.append((0, 0))

    def hold(self, on: bool) -> None:
        self.held = on

    def mute(self, on: bool) -> None:
        self.muted = on

    async def close(self) -> None:
        pass


class Host:
    def __init__(self) -> None:
        self.t = 100.0
        self.feeds: dict[str, CallerFeed] = {}
        self.dtmf: list[tuple[str, str]] = []
        self.spawned: list[Any] = []
        self.ticks: list[Any] = []
        self.readiness: list[Any] = []

    def now(self) -> float:
        return self.t

    def feed_for(self, call_id: str) -> CallerFeed | None:
        return self.feeds.get(call_id)

    def send_dtmf(self, call_id: str, digits: str) -> bool:
        self.dtmf.append((call_id, digits))
        return True

    def changed(self) -> None:
        pass

    def spawn(self, coro: Any) -> None:
        self.spawned.append(coro)

    clock = property(lambda self: self)

    def add(self, callback: Any) -> int:  # the media clock
        self.ticks.append(callback)
        return len(self.ticks)

    def remove(self, token: int) -> None:
        self.ticks[token - 1] = None

    def save_readiness(self, record: Any) -> None:
        self.readiness.append(record)

    def consult_number(self, call_id: str, agent: str, number: str, party_for: Any, on_state: Any) -> bool:
        self.consulted = {"call": call_id, "number": number, "party": party_for(8000, 160), "on_state": on_state,
                          "answered": False}
        return True

    def consult_number_complete(self, call_id: str) -> bool:
        return self.consulted["answered"]

    def consult_number_cancel(self, call_id: str) -> None:
        self.consulted["cancelled"] = True


class Client:
    def __init__(self, hub: AgentHub, name: str = "") -> None:
        self.hub = hub
        self.sent: list[dict[str, Any]] = []
        self.closed_with: tuple[int, str] | None = None
        self.link = AgentLink(send=lambda t: self.sent.append(json.loads(t)),
                              close=lambda c, r: setattr(self, "closed_with", (c, r)), peer=name)
        hub.opened(self.link)
        self.n = 0

    def req(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.n += 1
        asyncio.run(self.hub.receive(self.link, json.dumps({"type": kind, "id": self.n, **fields})))
        return next(m for m in reversed(self.sent) if m.get("re") == self.n)

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["type"] == kind]


@pytest.fixture
def world(tmp_path: Path):
    store = open_store(tmp_path)
    for a in ("alice", "bob"):
        store.create_agent(a, password_hash=hash_password(f"{a}-pw"))
    host = Host()
    hung: list[tuple[str, str]] = []
    cc = ContactCenter(config(QUEUES, AGENTS, ACD), epoch=1_700_000_000.0,
                       hangup=lambda c, r: hung.append((c, r)), feed_for=host.feed_for)
    auth = Authenticator(store, clock=lambda: 1_700_000_000.0 + host.t)
    medias: dict[str, FakeMedia] = {}
    hub = AgentHub(cc, auth, host, heartbeat_s=10, media_factory=lambda a: medias.setdefault(a, FakeMedia()))
    cc.listeners.append(hub.notify)
    cc.agent_media = hub.agent_party
    cc.start(host.t)
    yield hub, cc, auth, host, medias, hung
    for coro in host.spawned:
        coro.close()
    store.close()


def connect(hub: AgentHub, auth: Authenticator, agent: str) -> tuple[Client, dict[str, Any]]:
    token, _ = auth.login(agent, f"{agent}-pw")
    c = Client(hub, agent)
    return c, c.req("hello", version=1, token=token, client={"name": "test"})


def caller(cc: ContactCenter, host: Host, call: str, **kw: Any) -> CallerFeed:
    feed = host.feeds[call] = CallerFeed(8000, 20, None, None)
    cc.enter(call, "support", "+33612345678", host.t, **kw)
    return feed


def test_hello_is_required_and_checked(world) -> None:
    hub, cc, auth, host, _, _ = world
    c = Client(hub)
    assert c.req("login")["code"] == "not-authenticated" and c.closed_with[0] == 4001
    c = Client(hub)
    assert c.req("hello", version=1, token="forged")["code"] == "not-authenticated"
    token, _ = auth.login("alice", "alice-pw")
    c = Client(hub)
    reply = c.req("hello", version=2, token=token)
    assert (reply["code"], reply["versions"], c.closed_with[0]) == ("unsupported-version", [1], 4000)


def test_welcome_login_offer_answer_hangup(world) -> None:
    hub, cc, auth, host, medias, hung = world
    c, welcome = connect(hub, auth, "alice")
    assert welcome["agent"]["id"] == "alice" and welcome["state"]["state"] == "logged-out"
    assert welcome["queues"] == ["support"] and welcome["ice_servers"] == [] and welcome["heartbeat_s"] == 10
    assert {"reason": "lunch", "label": "Lunch"} in welcome["breaks"]
    assert c.req("login")["state"]["state"] == "available"
    assert c.events("state")[-1]["state"] == "available"
    feed = caller(cc, host, "call-1", ivr_path=("main:2",), skills=())
    (offer,) = c.events("offer")
    assert offer["call"]["id"] == "call-1" and offer["call"]["caller"] == "+33612345678"
    assert offer["call"]["ivr_path"] == ["main:2"] and offer["ring_timeout_s"] == 10
    assert c.req("answer", call="call-1")["code"] == "media-not-ready"
    assert c.req("media-offer", sdp="v=0 offer")["sdp"] == "v=0 answer"
    assert c.req("answer", call="nope")["code"] == "invalid-state"
    host.t += 3
    assert c.req("answer", call="call-1")["state"]["state"] == "on-call"
    assert c.events("call")[-1]["call"]["state"] == "connected"
    assert medias["alice"].attached == [(8000, 160)]
    assert feed(np.zeros(160, np.int16), host.t)[0] == 7  # the caller hears the agent's media
    assert c.req("dtmf", call="call-1", digits="12#")["sent"] == "12#" and host.dtmf == [("call-1", "12#")]
    assert c.req("hold", call="call-1")["call"]["state"] == "held" and medias["alice"].held
    assert feed.base == "music"
    assert c.req("resume", call="call-1")["call"]["state"] == "connected" and feed.base == "connected"
    assert c.req("hangup", call="other")["code"] == "no-such-call"
    assert c.req("hangup", call="call-1")["state"]["state"] == "wrap-up"
    assert hung == [("call-1", "agent alice hung up")]
    assert c.events("call-ended")[-1] == {"type": "call-ended", "call": "call-1", "by": "agent",
                                          "reason": "agent-hangup"}
    assert c.req("wrapup-done")["state"]["state"] == "available"


def test_caller_hangup_ends_the_agents_call(world) -> None:
    hub, cc, auth, host, _, _ = world
    c, _ = connect(hub, auth, "alice")
    c.req("login")
    c.req("media-offer", sdp="v=0 offer")
    caller(cc, host, "call-2")
    c.req("answer", call="call-2")
    cc.caller_gone("call-2", host.t + 5)
    assert c.events("call-ended")[-1]["by"] == "caller"
    assert c.events("state")[-1]["state"] == "wrap-up"


def test_unanswered_offer_is_cancelled_and_moves_on(world) -> None:
    hub, cc, auth, host, _, _ = world
    a, _ = connect(hub, auth, "alice")
    a.req("login")
    caller(cc, host, "call-3")
    b, _ = connect(hub, auth, "bob")
    b.req("login")
    host.t += 10
    cc.handle_timer(host.t)  # alice's ring timeout
    assert a.events("offer-cancelled")[-1] == {"type": "offer-cancelled", "call": "call-3", "reason": "timeout"}
    assert b.events("offer")[-1]["call"]["id"] == "call-3"
    assert b.req("reject", call="call-3")["state"]["state"] == "available"


def test_newer_session_replaces_the_older(world) -> None:
    hub, cc, auth, host, _, _ = world
    old, _ = connect(hub, auth, "alice")
    old.req("login")
    new, welcome = connect(hub, auth, "alice")
    assert old.events("replaced") and old.closed_with[0] == 4008
    assert welcome["state"]["state"] == "available"  # the state is back in the welcome
    assert hub.links["alice"] is new.link and cc.engine.agent_view("alice").connected


def test_heartbeat_loss_keeps_the_call_then_resumes(world) -> None:
    hub, cc, auth, host, medias, _ = world
    c, _ = connect(hub, auth, "alice")
    c.req("login")
    c.req("media-offer", sdp="v=0 offer")
    feed = caller(cc, host, "call-4")
    c.req("answer", call="call-4")
    assert hub.get_timer() == host.t + 30
    host.t += 31
    hub.handle_timer(host.t)
    assert c.closed_with[0] == 4009 and not cc.engine.agent_view("alice").connected
    assert feed.base == "music"  # the caller hears music while the agent is away
    again, welcome = connect(hub, auth, "alice")
    assert welcome["call"]["id"] == "call-4" and welcome["call"]["state"] == "connected"
    assert cc.engine.agent_view("alice").connected and feed.base == "connected"
    assert len(medias["alice"].attached) == 2  # the same media, plugged in again


def test_grace_expiry_requeues_the_caller_at_the_head(world) -> None:
    hub, cc, auth, host, _, _ = world
    c, _ = connect(hub, auth, "alice")
    c.req("login")
    c.req("media-offer", sdp="v=0 offer")
    caller(cc, host, "call-5")
    c.req("answer", call="call-5")
    hub.closed(c.link)
    host.t += 31
    cc.handle_timer(host.t)  # connection_grace_s
    assert cc.engine.call_view("call-5").state == "queued"
    assert cc.engine.call_view("call-5").position == 1
    assert cc.engine.agent_view("alice").state == "logged-out"


def test_errors_stay_on_one_socket_and_a_flood_closes_it(world) -> None:
    hub, cc, auth, host, _, _ = world
    good, _ = connect(hub, auth, "bob")
    good.req("login")
    bad, _ = connect(hub, auth, "alice")
    for _ in range(ERROR_LIMIT):
        asyncio.run(hub.receive(bad.link, "{nope"))
    assert bad.closed_with[0] == 4002 and all(m["code"] == "bad-json" for m in bad.events("error"))
    assert good.req("ping") == {"type": "result", "re": good.n} and good.events("pong")
    assert "alice" not in hub.links and "bob" in hub.links


def test_blind_transfers(world) -> None:
    hub, cc, auth, host, _, _ = world
    out: list[Any] = []
    cc.transfer_out = out.append
    a, _ = connect(hub, auth, "alice")
    a.req("login")
    a.req("media-offer", sdp="v=0 offer")
    feed = caller(cc, host, "call-6")
    a.req("answer", call="call-6")
    assert a.req("transfer", call="call-6", to={"agent": "bob"})["code"] == "invalid-state"  # bob is away
    assert a.req("transfer", call="call-6", to={"agent": "zed"})["code"] == "no-such-agent"
    assert a.req("transfer", call="call-6", to={"queue": "zed"})["code"] == "no-such-queue"
    b, _ = connect(hub, auth, "bob")
    b.req("login")
    b.req("media-offer", sdp="v=0 offer")
    assert a.req("transfer", call="call-6", to={"agent": "bob"})["state"]["state"] == "wrap-up"
    assert a.events("call-ended")[-1] == {"type": "call-ended", "call": "call-6", "by": "agent",
                                          "reason": "transferred"}
    assert b.events("offer")[-1]["call"]["id"] == "call-6"
    b.req("answer", call="call-6")
    assert feed.base == "connected"
    assert b.req("transfer", call="call-6", to={"number": "+33123456789"})["state"]["state"] == "wrap-up"
    assert [(t.call, t.number, t.agent) for t in out] == [("call-6", "+33123456789", "bob")]
    assert len(a.events("call-ended")) == 1  # the CDR at the end concerns bob's part only


def test_echo_test_runs_off_the_queues_and_reports(world) -> None:
    hub, cc, auth, host, medias, _ = world
    c, _ = connect(hub, auth, "alice")
    assert c.req("echo-test", seconds=5)["code"] == "media-not-ready"
    c.req("media-offer", sdp="v=0 offer")
    assert c.req("echo-test", seconds=5) == {"type": "result", "re": c.n, "started": True, "seconds": 5.0}
    assert c.req("echo-test")["code"] == "invalid-state"  # one at a time
    for _ in range(50):
        host.ticks[0](host.t)
    medias["alice"].stats = lambda: asyncio.sleep(0, {"rtt_ms": 20.0, "jitter_ms": 1.0, "loss_pct": 0.0,
                                                        "codec": "opus", "packets_received": 250})
    coro = host.spawned.pop()
    coro.close()  # instead of sleeping 5 s: finish now
    asyncio.run(hub.echo_tests.pop("alice").finish())
    result = c.events("echo-test-result")[-1]
    assert not result["passed"] and result["mos"] > 4 and host.readiness[0].agent == "alice"
    assert result["reasons"] == ["no sound from the microphone came back"]  # FakeMedia's level 7 is silence
    c.req("login")
    assert c.req("echo-test")["code"] == "invalid-state"  # available: calls may come


def test_expired_token_closes_only_that_socket(world) -> None:
    hub, cc, auth, host, _, _ = world
    old, _ = connect(hub, auth, "alice")
    host.t += 43200 - 60
    fresh, _ = connect(hub, auth, "bob")  # logged in later: still valid
    host.t += 61
    reply = old.req("ping")
    assert (reply["code"], old.closed_with[0]) == ("token-expired", 4001)
    assert fresh.req("ping")["type"] == "result" and fresh.closed_with is None


def test_attended_transfer_between_agents(world) -> None:
    hub, cc, auth, host, medias, _ = world
    a, _ = connect(hub, auth, "alice")
    b, _ = connect(hub, auth, "bob")
    for c in (a, b):
        c.req("media-offer", sdp="v=0 offer")
    a.req("login")
    feed = caller(cc, host, "call-7")
    a.req("answer", call="call-7")
    b.req("login")
    assert a.req("consult", call="call-7", to={"agent": "bob"})["call"]["id"] == "call-7"
    assert a.events("consult")[-1]["state"] == "ringing" and feed.base == "music"  # the caller holds
    offer = b.events("offer")[-1]["call"]
    assert offer["caller"] == "alice" and offer["id"].startswith("call-7/consult")
    assert a.req("consult-complete", call="call-7")["code"] == "invalid-state"  # bob has not answered
    b.req("answer", call=offer["id"])
    assert a.events("consult")[-1] == {"type": "consult", "call": "call-7", "state": "connected", "target": "bob"}
    assert len(host.ticks) == 1  # the two agents' audio runs on the media clock
    assert a.req("hold", call="call-7")["code"] == "invalid-state"  # held for the consultation already
    assert a.req("dtmf", call="call-7", digits="1")["code"] == "invalid-state"
    a, welcome = connect(hub, auth, "alice")  # a reload during the consultation
    assert welcome["consult"] == {"call": "call-7", "state": "connected", "target": "bob"}
    assert welcome["call"]["state"] == "held" and feed.base == "music"  # not plugged back to the caller
    assert a.req("consult-cancel", call="call-7")["state"]["state"] == "on-call"
    assert a.events("consult")[-1]["state"] == "ended" and feed.base == "connected"  # back with the caller
    assert b.events("call-ended")[-1]["reason"] == "cancelled" and host.ticks[0] is None
    b.req("wrapup-done")
    a.req("consult", call="call-7", to={"agent": "bob"})
    offer = b.events("offer")[-1]["call"]
    b.req("answer", call=offer["id"])
    assert a.req("consult-complete", call="call-7")["state"]["state"] == "wrap-up"
    assert a.events("call-ended")[-1]["reason"] == "transferred"
    assert b.events("call")[-1]["call"]["id"] == "call-7" and feed.base == "connected"
    assert medias["bob"].attached[-1] == (8000, 160)  # bob now talks with the caller
    assert cc.engine.call_view("call-7").agent == "bob"


def test_consulting_an_outside_number(world) -> None:
    hub, cc, auth, host, medias, _ = world
    out: list[Any] = []
    cc.transfer_out = out.append
    a, _ = connect(hub, auth, "alice")
    a.req("media-offer", sdp="v=0 offer")
    a.req("login")
    feed = caller(cc, host, "call-8")
    a.req("answer", call="call-8")
    assert a.req("consult", call="call-8", to={"number": "12ab"})["code"] == "bad-request"
    a.req("consult", call="call-8", to={"number": "+33123456789"})
    assert a.events("consult")[-1]["state"] == "ringing" and feed.base == "music"
    assert a.req("consult", call="call-8", to={"number": "+331"})["code"] == "invalid-state"
    assert a.req("consult-complete", call="call-8")["code"] == "invalid-state"  # not answered yet
    host.consulted["on_state"]("connected", "")
    assert a.events("consult")[-1] == {"type": "consult", "call": "call-8", "state": "connected",
                                       "target": "+33123456789", "reason": ""}
    assert a.req("consult-cancel", call="call-8")["state"]["state"] == "on-call"
    assert host.consulted["cancelled"] and feed.base == "connected"  # back with the caller
    a.req("consult", call="call-8", to={"number": "+33123456789"})
    host.consulted["on_state"]("ended", "rejected 486")  # busy: back with the caller
    assert a.events("consult")[-1]["reason"] == "rejected 486" and feed.base == "connected"
    a.req("consult", call="call-8", to={"number": "+33123456789"})
    host.consulted.update(answered=True)
    host.consulted["on_state"]("connected", "")
    assert a.req("consult-complete", call="call-8")["state"]["state"] == "wrap-up"
    assert [(t.call, t.number) for t in out] == [("call-8", "+33123456789")]
    assert a.events("call-ended")[-1]["reason"] == "transferred"


def test_a_server_fault_is_an_internal_error_not_a_crash(world, monkeypatch: pytest.MonkeyPatch) -> None:
    hub, cc, auth, host, _, _ = world
    c, _ = connect(hub, auth, "alice")

    def broken(*args: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(hub, "_echo_test", broken)
    assert c.req("echo-test")["code"] == "internal" and c.closed_with is None
    assert c.req("ping")["type"] == "result"


def test_ice_failure_mid_call_is_a_lost_connection(world) -> None:
    hub, cc, auth, host, medias, _ = world
    c, _ = connect(hub, auth, "alice")
    c.req("media-offer", sdp="v=0 offer")
    c.req("login")
    feed = caller(cc, host, "call-9")
    c.req("answer", call="call-9")
    medias["alice"].on_state("failed")
    assert c.events("media")[-1]["state"] == "failed"
    assert not cc.engine.agent_view("alice").connected and feed.base == "music"  # grace runs
    host.t += 5
    medias["alice"].on_state("connected")  # the client re-offered in time
    assert cc.engine.agent_view("alice").connected and feed.base == "connected"
    medias["alice"].on_state("failed")
    host.t += 31  # past connection_grace_s: the caller goes back to the head of the queue
    cc.handle_timer(host.t)
    assert cc.engine.call_view("call-9").state == "queued" and cc.engine.call_view("call-9").position == 1
