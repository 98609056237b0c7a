"""End to end with an independent agent client (tests/web/agent_client.py, written from
docs/agent-protocol.md with aiortc) and a pjsua2 caller on the SIP trunk side: answer, audio
both ways by frequency, DTMF decoded by the caller, hold, blind transfer to a second agent,
hang-up, CDR and queue_log; then a dropped connection that resumes within the grace and one
that does not (the caller goes back to the head of the queue)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import ssl
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from acd.store.passwords import hash_password
from tests.audio import dominant_frequency, read_wav, tone_fraction, write_tone_wav
from tests.harness import PEER, ROOT, RunningServer, free_port
from tests.web.agent_client import ProtocolAgent

pytestmark = pytest.mark.interop

ACD = f"""
[acd]
connection_grace_s = 6

[queues.support]
ring_timeout_s = 15
wrapup_s = 2

[agents.alice]
queues = {{support = 5}}
password_hash = "{hash_password('alice-pw')}"

[agents.bob]
queues = {{support = 1}}
password_hash = "{hash_password('bob-pw')}"
"""
CALLER_HZ, ALICE_HZ, BOB_HZ = 600.0, 1000.0, 1400.0


def tls(srv: RunningServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(srv.data_dir / "tls" / "selfsigned.crt"))


async def caller(srv: RunningServer, tmp: Path, seconds: float, name: str = "caller") -> asyncio.subprocess.Process:
    tone = tmp / f"{name}.tone.wav"
    write_tone_wav(str(tone), CALLER_HZ, seconds + 2, rate=8000)
    return await asyncio.create_subprocess_exec(
        sys.executable, str(PEER), "call", "--uri", srv.uri("support"), "--codec", "PCMU", "--clock-rate", "8000",
        "--play", str(tone), "--record", str(tmp / f"{name}.wav"), "--duration", str(seconds),
        "--local-port", str(free_port()), "--timeout", str(seconds + 20), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)


def hz(agent: ProtocolAgent, seconds: float = 1.5) -> float:
    now = time.monotonic()
    return dominant_frequency(agent.heard_between(now - seconds, now), 48000, skip_s=0)


def blocks_with(audio: np.ndarray, rate: int, freq: float) -> list[bool]:
    n = rate // 2
    return [tone_fraction(audio[i:i + n], rate, freq, block_s=0.25) >= 0.5 for i in range(0, len(audio) - n, n)]


@pytest.fixture
def srv(server_factory, tmp_path: Path) -> RunningServer:
    import subprocess

    out = subprocess.run([sys.executable, "-m", "acd.cli", "prompts", "build", "--dir",
                          str(tmp_path / "srv0" / "data" / "prompts")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return server_factory(acd=ACD)


def test_answer_dtmf_hold_transfer_hangup(srv: RunningServer, tmp_path: Path) -> None:
    async def run() -> dict:
        alice = ProtocolAgent(srv.web_url, tls(srv), "alice", "alice-pw", ALICE_HZ)
        bob = ProtocolAgent(srv.web_url, tls(srv), "bob", "bob-pw", BOB_HZ)
        try:
            await alice.go_available()
            proc = await caller(srv, tmp_path, 30)
            offer = await alice.event("offer")
            call = offer["call"]["id"]
            assert offer["call"]["queue"] == "support" and offer["call"]["caller"]
            assert (await alice.request("answer", call=call))["state"]["state"] == "on-call"
            await asyncio.sleep(3)
            assert abs(hz(alice) - CALLER_HZ) < 15  # the caller's tone reaches the agent
            assert (await alice.request("dtmf", call=call, digits="159"))["sent"] == "159"
            await asyncio.sleep(1)
            assert (await alice.request("hold", call=call))["call"]["state"] == "held"
            await asyncio.sleep(3)
            assert (await alice.request("resume", call=call))["call"]["state"] == "connected"
            await asyncio.sleep(2)
            await bob.go_available()
            reply = await alice.request("transfer", call=call, to={"agent": "bob"})
            assert reply["state"]["state"] == "wrap-up", reply
            ended = await alice.event("call-ended")
            assert (ended["by"], ended["reason"]) == ("agent", "transferred")
            await bob.event("offer", call__id=call)
            await bob.request("answer", call=call)
            await asyncio.sleep(3)
            assert abs(hz(bob) - CALLER_HZ) < 15
            assert (await bob.request("hangup", call=call))["state"]["state"] == "wrap-up"
            out, _ = await asyncio.wait_for(proc.communicate(), 20)
            return json.loads(out.decode().strip().splitlines()[-1])
        finally:
            await alice.close()
            await bob.close()

    result = asyncio.run(run())
    assert result["answered"] and result["hangup_by"] == "remote", result
    assert "159" in result["dtmf_received"]  # RFC 4733 from the agent, decoded by pjsua
    audio, rate = read_wav(str(tmp_path / "caller.wav"))
    alice_blocks, bob_blocks = blocks_with(audio, rate, ALICE_HZ), blocks_with(audio, rate, BOB_HZ)
    first = alice_blocks.index(True)
    # hold: the agent's tone stops for 3 s (the digits, sent in its place, may spoil one block
    # before that) ...
    held = next(i for i in range(first, len(alice_blocks)) if not any(alice_blocks[i:i + 5]))
    assert any(alice_blocks[held + 5:])  # ... and comes back on resume
    assert sum(bob_blocks) >= 4 and bob_blocks.index(True) > held  # then the second agent
    log = srv.wait_log(r"CDR CallRecord\(")
    assert re.search(r"\|support\|alice\|TRANSFER\|bob\|agent\|", log)
    assert re.search(r"CDR CallRecord\(.*agent='bob'.*outcome='answered'.*transfers=\('agent:bob',\)", log)


def test_reconnect_resumes_the_call_and_grace_expiry_requeues(srv: RunningServer, tmp_path: Path) -> None:
    async def run() -> None:
        alice = ProtocolAgent(srv.web_url, tls(srv), "alice", "alice-pw", ALICE_HZ)
        try:
            await alice.go_available()
            proc = await caller(srv, tmp_path, 24)
            call = (await alice.event("offer"))["call"]["id"]
            await alice.request("answer", call=call)
            await asyncio.sleep(2)
            await alice.drop_connection()  # the tab crashed
            await asyncio.sleep(2)
            welcome = await alice.connect()  # a reload: same token, the call comes back
            assert welcome["call"]["id"] == call and welcome["state"]["state"] == "on-call"
            await alice.start_media()
            await asyncio.sleep(3)
            assert abs(hz(alice) - CALLER_HZ) < 15  # audio resumed on the new peer connection
            await alice.drop_connection()
            await asyncio.sleep(8)  # past connection_grace_s = 6
            await alice.connect()
            assert alice.welcome["state"]["state"] == "logged-out" and alice.welcome["call"] is None
            await asyncio.wait_for(proc.communicate(), 30)  # the caller hangs up by itself
        finally:
            await alice.close()

    asyncio.run(run())
    log = srv.wait_log(r"\|support\|NONE\|ENTERQUEUE\|", count=2)  # requeued after the grace
    assert re.search(r"agent alice leg of call \S+ dropped: connection-lost", log)
    assert re.search(r"\|support\|NONE\|ENTERQUEUE\|\|peer\|1\n", log)  # at the head
    audio, rate = read_wav(str(tmp_path / "caller.wav"))
    assert any(blocks_with(audio, rate, ALICE_HZ))


def test_two_agents_share_the_calls_fairly(server_factory, tmp_path: Path) -> None:
    """longest-idle with equal levels: four calls in a row alternate between the agents."""
    srv = server_factory(acd=ACD.replace("support = 5", "support = 1"))

    async def run() -> list[str]:
        agents = [ProtocolAgent(srv.web_url, tls(srv), a, f"{a}-pw", hz_) for a, hz_ in
                  (("alice", ALICE_HZ), ("bob", BOB_HZ))]
        taken: list[str] = []
        try:
            for a in agents:
                await a.go_available()
            for n in range(4):
                proc = await caller(srv, tmp_path, 8, name=f"c{n}")
                offer, who = await first_offer(agents)
                taken.append(who.agent)
                await who.request("answer", call=offer["call"]["id"])
                await asyncio.sleep(1)
                await who.request("hangup", call=offer["call"]["id"])
                who.events = [e for e in who.events if e["type"] != "state"]  # up to wrap-up
                await who.event("state", state="available", timeout=10)  # wrap-up (2 s) over
                await asyncio.wait_for(proc.communicate(), 20)
        finally:
            for a in agents:
                await a.close()
        return taken

    taken = asyncio.run(run())
    assert sorted(taken) == ["alice", "alice", "bob", "bob"] and taken[0] != taken[1] and taken[2] != taken[3], taken


async def first_offer(agents: list[ProtocolAgent]) -> tuple[dict, ProtocolAgent]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for a in agents:
            for i, ev in enumerate(a.events):
                if ev["type"] == "offer":
                    return a.events.pop(i), a
        await asyncio.sleep(0.05)
    raise AssertionError("no agent was offered the call")


def test_attended_transfer(srv: RunningServer, tmp_path: Path) -> None:
    """alice consults bob while the caller holds; the two agents hear each other; then the
    caller is handed to bob."""
    async def run() -> dict:
        alice = ProtocolAgent(srv.web_url, tls(srv), "alice", "alice-pw", ALICE_HZ)
        bob = ProtocolAgent(srv.web_url, tls(srv), "bob", "bob-pw", BOB_HZ)
        try:
            for a in (alice, bob):
                await a.connect()
                await a.start_media()
            await alice.request("login")
            proc = await caller(srv, tmp_path, 24)
            call = (await alice.event("offer"))["call"]["id"]
            await alice.request("answer", call=call)
            await bob.request("login")
            await asyncio.sleep(2)
            await alice.request("consult", call=call, to={"agent": "bob"})
            consult = (await bob.event("offer"))["call"]
            assert consult["caller"] == "alice"
            await bob.request("answer", call=consult["id"])
            assert (await alice.event("consult", state="connected"))["target"] == "bob"
            await asyncio.sleep(3)
            assert abs(hz(alice) - BOB_HZ) < 15 and abs(hz(bob) - ALICE_HZ) < 15  # the agents talk
            assert (await alice.request("consult-complete", call=call))["state"]["state"] == "wrap-up"
            assert (await bob.event("call", call__id=call))["call"]["state"] == "connected"
            await asyncio.sleep(3)
            assert abs(hz(bob) - CALLER_HZ) < 15  # bob now has the caller
            await bob.request("hangup", call=call)
            out, _ = await asyncio.wait_for(proc.communicate(), 20)
            return json.loads(out.decode().strip().splitlines()[-1])
        finally:
            await alice.close()
            await bob.close()

    result = asyncio.run(run())
    assert result["answered"] and result["hangup_by"] == "remote", result
    audio, rate = read_wav(str(tmp_path / "caller.wav"))
    alice_blocks, bob_blocks = blocks_with(audio, rate, ALICE_HZ), blocks_with(audio, rate, BOB_HZ)
    last_alice = len(alice_blocks) - 1 - alice_blocks[::-1].index(True)
    assert sum(bob_blocks) >= 4 and bob_blocks.index(True) > last_alice  # alice, hold, then bob
    assert not any(bob_blocks[:last_alice])  # bob never reached the caller during the consultation
    log = srv.wait_log(r"CDR CallRecord\(")
    assert re.search(r"\|support\|alice\|TRANSFER\|bob\|attended\|", log)
    assert re.search(r"CDR CallRecord\(.*agent='bob'.*transfers=\('agent:bob',\)", log)
    assert "/consult" not in "".join(re.findall(r"queue_log [^\n]+", log))  # internal: no queue_log


def test_readiness_check_is_stored_for_supervisors(srv: RunningServer) -> None:
    import subprocess

    roles = subprocess.run([sys.executable, "-m", "acd.cli", "agents", "roles", "bob", "agent,supervisor",
                            "--config", str(srv.config)], cwd=ROOT, capture_output=True, text=True)
    assert roles.returncode == 0, roles.stderr

    async def run() -> tuple[dict, dict, int]:
        alice = ProtocolAgent(srv.web_url, tls(srv), "alice", "alice-pw", ALICE_HZ)
        bob = ProtocolAgent(srv.web_url, tls(srv), "bob", "bob-pw", BOB_HZ)
        try:
            await alice.connect()
            await alice.start_media()
            assert (await alice.request("echo-test", seconds=4))["started"]
            await asyncio.sleep(3)
            assert abs(hz(alice) - ALICE_HZ) < 15  # alice hears her own voice back
            result = await alice.event("echo-test-result", timeout=10)
            await bob.connect()
            headers = {"Authorization": f"Bearer {bob.token}"}
            async with bob.http.get(f"{srv.web_url}/api/v1/readiness", headers=headers) as r:
                stored = await r.json()
            async with alice.http.get(f"{srv.web_url}/api/v1/readiness",
                                      headers={"Authorization": f"Bearer {alice.token}"}) as r:
                refused = r.status
            return result, stored, refused
        finally:
            await alice.close()
            await bob.close()

    result, stored, refused = asyncio.run(run())
    assert result["passed"] and result["reasons"] == [] and result["mos"] > 4, result
    (row,) = stored["results"]
    assert row["agent"] == "alice" and row["passed"] and row["rtt_ms"] is not None
    assert refused == 403  # an agent may not read other agents' results


FAR_HZ = 800.0


def test_consult_an_outside_number_then_hand_the_caller_over(server_factory, tmp_path: Path) -> None:
    """alice consults a number behind the trunk (a pjsua2 peer answering with 800 Hz), talks
    with it while the caller holds, then hands the caller over: caller and far end hear each
    other; alice wraps up."""
    from tests.test_ivr_external import far_end, result_of

    far_tone = tmp_path / "far-tone.wav"
    write_tone_wav(str(far_tone), FAR_HZ, 40, rate=8000)
    far, port = far_end(tmp_path, "--play", str(far_tone), "--record", str(tmp_path / "far.wav"))
    trunks = f'[trunks.local]\nallow = ["127.0.0.0/8"]\nproxy = "sip:127.0.0.1:{port}"\n'
    srv = server_factory(acd=ACD, trunks=trunks)

    async def run() -> dict:
        alice = ProtocolAgent(srv.web_url, tls(srv), "alice", "alice-pw", ALICE_HZ)
        try:
            await alice.go_available()
            proc = await caller(srv, tmp_path, 20)
            call = (await alice.event("offer"))["call"]["id"]
            await alice.request("answer", call=call)
            await asyncio.sleep(2)
            await alice.request("consult", call=call, to={"number": "5550100"})
            assert (await alice.event("consult", state="connected", timeout=15))["target"] == "5550100"
            await asyncio.sleep(3)
            assert abs(hz(alice) - FAR_HZ) < 15  # alice talks with the far end
            assert (await alice.request("consult-complete", call=call))["state"]["state"] == "wrap-up"
            assert (await alice.event("call-ended"))["reason"] == "transferred"
            out, _ = await asyncio.wait_for(proc.communicate(), 30)  # the caller hangs up at 20 s
            return json.loads(out.decode().strip().splitlines()[-1])
        finally:
            await alice.close()

    try:
        result = asyncio.run(run())
        far_result = result_of(far)
    finally:
        far.kill()
    assert result["answered"], result
    (leg,) = far_result["calls"]
    assert leg["answered"] and re.match(r"sips?:5550100@", leg["request_uri"] or ""), leg
    audio, rate = read_wav(str(tmp_path / "caller.wav"))
    far_blocks, alice_blocks = blocks_with(audio, rate, FAR_HZ), blocks_with(audio, rate, ALICE_HZ)
    assert any(alice_blocks) and sum(far_blocks) >= 4  # alice, then (after the hold) the far end
    assert far_blocks.index(True) > len(alice_blocks) - 1 - alice_blocks[::-1].index(True)
    far_audio, far_rate = read_wav(str(tmp_path / "far.wav"))
    assert any(blocks_with(far_audio, far_rate, ALICE_HZ)) and any(blocks_with(far_audio, far_rate, CALLER_HZ))
    log = srv.wait_log(r"CDR CallRecord\(")
    assert re.search(r"CDR CallRecord\(.*outcome='transferred'.*transfers=\('number:5550100',\)", log)


def test_shutdown_closes_the_port_before_it_says_going_away(srv: RunningServer) -> None:
    """A client told 1001 reconnects at once (the softphone does, then fails over). The web port
    must be closed by then: a connection accepted during shutdown is never served, and the
    client hangs until its own timeout (seen: a softphone's failover took 11 s instead of 1)."""
    async def run() -> None:
        alice = ProtocolAgent(srv.web_url, tls(srv), "alice", "alice-pw", ALICE_HZ)
        try:
            await alice.go_available()
            assert alice.pc is not None
            deadline = time.monotonic() + 10
            while alice.pc.connectionState != "connected" and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # with media up, the server has a peer connection to close
            assert alice.pc.connectionState == "connected"
            reader = alice._tasks[0]
            srv.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(reader, 10)  # the server's close frame ended the reader
            assert alice.ws is not None and alice.ws.close_code == 1001
            with pytest.raises(ConnectionRefusedError):  # at once: refused, not accepted and left
                _, writer = await asyncio.open_connection(srv.host, int(srv.web_url.rsplit(":", 1)[1]))
                writer.close()
        finally:
            await alice.close()

    asyncio.run(run())
    assert srv.proc.wait(15) == 0
