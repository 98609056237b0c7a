"""The headless softphone (``softphone --headless``) against the real server and a pjsua2 caller:
audio both ways checked by frequency, the JSON summary, echo mode, failover to a second server,
and a call that survives a lost WebSocket (hello on the same token returns the call)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acd.store.passwords import hash_password
from acd.tlscert import fingerprint
from softphone.agent import AgentSession
from softphone.client import AgentConnection
from softphone.trust import Backoff, Trust
from softphone.errors import SoftphoneError
from softphone.fileaudio import FileAudio
from tests.audio import dominant_frequency, read_wav, tone_fraction, write_tone_wav
from tests.harness import PEER, ROOT, RunningServer, free_port

pytestmark = pytest.mark.interop

ACD = f"""
[acd]
connection_grace_s = 8

[queues.support]
ring_timeout_s = 15
wrapup_s = 2

[agents.alice]
queues = {{support = 5}}
password_hash = "{hash_password('alice-pw')}"
"""
CALLER_HZ, AGENT_HZ = 600.0, 1000.0


def cert(srv: RunningServer) -> Path:
    return srv.data_dir / "tls" / "selfsigned.crt"


def seconds_with(path: Path, freq: float) -> float:
    """How many seconds of the recording carry ``freq`` (0.5 s blocks)."""
    audio, rate = read_wav(str(path))
    n = rate // 2
    return 0.5 * sum(tone_fraction(audio[i:i + n], rate, freq, block_s=0.25) >= 0.5
                     for i in range(0, len(audio) - n, n))


def log_time(line: str) -> float:
    """The time stamp of a softphone log line (``2026-11-26 20:11:16,448 INFO …``), in seconds."""
    stamp, ms = line[:19], line[20:23]
    return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(ms) / 1000


def start_caller(srv: RunningServer, tmp: Path, seconds: float, name: str = "caller") -> subprocess.Popen:
    tone = tmp / f"{name}.tone.wav"
    write_tone_wav(str(tone), CALLER_HZ, seconds + 2, rate=8000)
    return subprocess.Popen(
        [sys.executable, str(PEER), "call", "--uri", srv.uri("support"), "--codec", "PCMU", "--clock-rate", "8000",
         "--play", str(tone), "--record", str(tmp / f"{name}.wav"), "--duration", str(seconds),
         "--local-port", str(free_port()), "--timeout", str(seconds + 25)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def caller_result(proc: subprocess.Popen, timeout: float = 40) -> dict:
    out, _ = proc.communicate(timeout=timeout)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert lines, out
    return json.loads(lines[-1])


class Softphone:
    """``softphone --headless`` as a subprocess; its log (stderr) goes to a file to poll."""

    def __init__(self, tmp: Path, servers: list[RunningServer], *args: str, trust: str = "ca",
                 user: str = "alice") -> None:
        pw = tmp / f"{user}.pw"
        pw.write_text(f"{user}-pw\n")
        pw.chmod(0o600)
        self.err_path = tmp / ("softphone.err" if user == "alice" else f"softphone-{user}.err")
        cmd = [sys.executable, "-m", "softphone.cli", "--headless", "--server", servers[0].web_url,
               "--user", user, "--password-file", str(pw), "--auto-answer", "--json", *args]
        if len(servers) > 1:
            cmd += ["--secondary", servers[1].web_url]
        for s in servers:
            cmd += ["--ca-file", str(cert(s))] if trust == "ca" else ["--trust-fingerprint", fingerprint(cert(s))]
        env = dict(os.environ, XDG_STATE_HOME=str(tmp / f"state-{user}"), XDG_CONFIG_HOME=str(tmp / f"cfg-{user}"),
                   PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=self.err_path.open("w"), text=True)

    def log(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 20.0, after: int = 0) -> int:
        """Wait for ``pattern`` in the log after offset ``after``; returns the end of the match."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.log()[after:])
            if m:
                return after + m.end()
            assert self.proc.poll() is None, f"softphone exited {self.proc.returncode}:\n{self.log()[-3000:]}"
            assert time.monotonic() < deadline, f"{pattern!r} not in the softphone log:\n{self.log()[-3000:]}"
            time.sleep(0.05)

    def summary(self, timeout: float = 40.0) -> tuple[int, dict]:
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, json.loads(out.strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def softphones():
    started: list[Softphone] = []
    yield started
    for s in started:
        s.kill()


def test_headless_plays_and_records_and_reports_quality(server_factory, tmp_path: Path, softphones) -> None:
    srv = server_factory(acd=ACD)
    agent_tone = tmp_path / "tone1000.wav"
    write_tone_wav(str(agent_tone), AGENT_HZ, 3, rate=16000)  # resampled to 48 kHz and looped
    heard = tmp_path / "heard.wav"
    phone = Softphone(tmp_path, [srv], "--play", str(agent_tone), "--record", str(heard), "--duration", "6",
                      "--calls", "1")
    softphones.append(phone)
    phone.wait_log(r"available for calls on " + re.escape(srv.web_url))
    caller = start_caller(srv, tmp_path, 15)  # the agent hangs up first, after 6 s
    code, summary = phone.summary()
    result = caller_result(caller)
    assert code == 0, phone.log()[-3000:]
    assert result["answered"] and result["hangup_by"] == "remote", result

    assert summary["ok"] and summary["calls_answered"] == 1 and summary["stopped_by"] == "1 call(s) answered"
    (call,) = summary["calls"]
    assert call["queue"] == "support" and call["caller"] and call["ended_by"] == "agent"
    assert 5.5 <= call["duration_s"] <= 8, call
    q = call["quality"]
    assert q["rtt_ms"] is not None and 0 < q["rtt_ms"] < 100, q  # loopback
    assert 0 <= q["jitter_ms"] < 30 and q["loss_pct"] < 1 and q["mos"] > 4.0, q
    assert 250 <= q["frames_in"] <= 450 and 250 <= q["frames_out"] <= 450, q  # ~6 s of 20 ms frames each way
    assert q["codec"].lower() == "opus" and q["warnings"] == []

    assert seconds_with(heard, CALLER_HZ) >= 4.5  # the agent heard the caller ...
    assert seconds_with(tmp_path / "caller.wav", AGENT_HZ) >= 4.5  # ... and the caller heard the agent's file
    audio, rate = read_wav(str(tmp_path / "caller.wav"))
    assert abs(dominant_frequency(audio, rate) - AGENT_HZ) < 15
    log = srv.wait_log(r"CDR CallRecord\(")
    assert re.search(r"CDR CallRecord\(.*agent='alice'.*outcome='answered'", log)
    assert re.search(r"agent alice logged out", log) or "logged-out" in phone.log()


def test_headless_echo_sends_the_caller_back_to_itself(server_factory, tmp_path: Path, softphones) -> None:
    srv = server_factory(acd=ACD)
    phone = Softphone(tmp_path, [srv], "--echo", "--calls", "1", trust="fingerprint")  # waits for the caller
    softphones.append(phone)
    phone.wait_log(r"available for calls")
    caller = start_caller(srv, tmp_path, 7)
    result = caller_result(caller)
    code, summary = phone.summary()
    assert code == 0 and result["answered"] and result["hangup_by"] == "local", (result, phone.log()[-2000:])
    (call,) = summary["calls"]
    assert call["ended_by"] == "caller" and 5 <= call["duration_s"] <= 9
    assert seconds_with(tmp_path / "caller.wav", CALLER_HZ) >= 4.5  # the caller hears its own tone


def test_failover_to_the_secondary_server(server_factory, tmp_path: Path, softphones) -> None:
    a = server_factory(acd=ACD)
    b = server_factory(acd=ACD)
    agent_tone = tmp_path / "tone1000.wav"
    write_tone_wav(str(agent_tone), AGENT_HZ, 2, rate=48000)
    phone = Softphone(tmp_path, [a, b], "--play", str(agent_tone), "--record", str(tmp_path / "heard.wav"),
                      "--duration", "5", "--calls", "1", "--failover-after", "2", trust="fingerprint")
    softphones.append(phone)
    at = phone.wait_log(r"available for calls on " + re.escape(a.web_url))
    assert a.stop() == 0  # the primary goes away
    at = phone.wait_log(r"connected to " + re.escape(b.web_url), after=at, timeout=20)
    phone.wait_log(r"state available", after=at, timeout=10)
    # from the lost connection to being available on B, by the softphone's own log clock
    log = phone.log()
    lost_at = log_time(re.search(r"^.*connection to \S+ lost.*$", log, re.M).group(0))
    back_at = log_time(re.search(r"^.*state available.*$", log[at:], re.M).group(0))
    took = back_at - lost_at
    assert 0 < took < 6, took  # two quick failed attempts on A (backoff 0.25-0.5, 0.5-1 s), then B
    b.wait_log(r"agent alice logged in")
    caller = start_caller(b, tmp_path, 12)
    code, summary = phone.summary()
    result = caller_result(caller)
    assert code == 0 and result["answered"], (result, phone.log()[-3000:])
    assert summary["server"] == b.web_url and summary["failovers"] == 1 and summary["reconnects"] == 1
    (call,) = summary["calls"]
    assert call["server"] == b.web_url and call["quality"]["mos"] > 4
    assert seconds_with(tmp_path / "caller.wav", AGENT_HZ) >= 3.5
    assert seconds_with(tmp_path / "heard.wav", CALLER_HZ) >= 3.5


async def logged_in_call(session: AgentSession, srv: RunningServer, tmp: Path,
                         seconds: float) -> tuple[subprocess.Popen, str]:
    """Start the session, log in, place a pjsua2 caller; returns it and the call's id once connected."""
    await session.start()
    await session.login()
    caller = await asyncio.to_thread(start_caller, srv, tmp, seconds)
    for _ in range(200):
        if session.call and session.call.get("state") == "connected":
            break
        await asyncio.sleep(0.05)
    return caller, session.call["id"]


def test_a_lost_websocket_resumes_the_call(server_factory, tmp_path: Path) -> None:
    """The socket drops mid-call; the session says hello again with its token within the grace,
    the welcome returns the call, media is renegotiated and the audio continues both ways."""
    srv = server_factory(acd=ACD)
    heard = tmp_path / "heard.wav"

    async def run() -> tuple[AgentSession, int, list[dict], dict]:
        conn = AgentConnection(srv.web_url, "alice", "alice-pw", trust=Trust([fingerprint(cert(srv))]),
                               backoff=Backoff(base_s=0.2, cap_s=1))
        audio = FileAudio(tone_hz=AGENT_HZ, record=heard)
        session = AgentSession(conn, audio, auto_answer=True)
        events: list[dict] = []
        session.add_listener(lambda ev: events.append(ev) if ev["type"] in ("connection", "call-started",
                                                                             "call-summary", "call-ended") else None)
        try:
            caller, call_id = await logged_in_call(session, srv, tmp_path, 16)
            await asyncio.sleep(3)
            await conn.drop()  # the network blinks
            assert await conn.wait_connected(10)
            resumed_at = audio.counters()["played"]
            welcome = conn.welcome
            await asyncio.sleep(4)
            assert session.call and session.call["id"] == call_id and session.state["state"] == "on-call"
            await session.hangup()
            for _ in range(100):
                if session.history:
                    break
                await asyncio.sleep(0.05)
            result = await asyncio.to_thread(caller_result, caller)
            return session, resumed_at, events, {"welcome": welcome, "result": result, "call": call_id}
        finally:
            await session.close()
            audio.close()

    session, resumed_at, events, info = asyncio.run(run())
    welcome = info["welcome"]
    assert welcome["call"]["id"] == info["call"] and welcome["state"]["state"] == "on-call"
    connected = [e for e in events if e["type"] == "connection" and e["state"] == "connected"]
    assert len(connected) == 2 and connected[1]["reconnect"] and not connected[1]["failover"]
    assert [e["type"] for e in events].count("call-started") == 1  # one call, not two
    (record,) = session.history
    assert record["id"] == info["call"] and record["ended_by"] == "agent" and record["duration_s"] > 6
    assert record["quality"]["frames_in"] > 300
    assert info["result"]["answered"] and info["result"]["hangup_by"] == "remote"
    audio, rate = read_wav(str(heard))
    after = audio[resumed_at * 960:]  # what the agent heard once the socket was back
    assert len(after) >= 3 * rate and tone_fraction(after[: 3 * rate], rate, CALLER_HZ) >= 0.6
    assert seconds_with(tmp_path / "caller.wav", AGENT_HZ) >= 6  # the caller heard the agent before and after
    log = srv.wait_log(r"CDR CallRecord\(")
    assert "agent alice: connection restored" in log or "connection restored" in log
    assert len(re.findall(r"\|support\|NONE\|ENTERQUEUE\|", log)) == 1  # never requeued


def test_failed_ice_rebuilds_the_peer_connection_mid_call(server_factory, tmp_path: Path) -> None:
    """The ICE connection dies under a call (as when consent checks fail): after restart_after_s
    the session builds a new peer connection, re-offers it, and the call's audio comes back."""
    srv = server_factory(acd=ACD)
    heard = tmp_path / "heard.wav"

    async def run() -> dict:
        conn = AgentConnection(srv.web_url, "alice", "alice-pw", trust=Trust(ca_files=[cert(srv)]))
        audio = FileAudio(tone_hz=AGENT_HZ, record=heard)
        session = AgentSession(conn, audio, auto_answer=True)
        session.media.restart_after_s = 1.0
        states: list[str] = []
        session.media.on_state = states.append
        try:
            caller, call_id = await logged_in_call(session, srv, tmp_path, 14)
            await asyncio.sleep(2.5)
            old_pc = session.media.pc
            before = (await session.media.stats()).frames_in
            ice = old_pc.getTransceivers()[0].sender.transport.transport
            await ice._connection.close()  # the ICE connection dies; aiortc tears the peer connection down
            for _ in range(100):
                if session.media.pc is not old_pc and session.media.ready:
                    break
                await asyncio.sleep(0.05)
            rebuilt_at = audio.counters()["played"]
            await asyncio.sleep(3.5)
            stats = await session.media.stats()
            assert session.call and session.call["id"] == call_id
            await session.hangup()
            result = await asyncio.to_thread(caller_result, caller)
            return {"old": old_pc, "new": session.media.pc, "before": before, "stats": stats, "states": states,
                    "rebuilt_at": rebuilt_at, "result": result}
        finally:
            await session.close()
            audio.close()

    out = asyncio.run(run())
    assert out["new"] is not out["old"] and out["stats"].rebuilds == 1
    lost = out["states"].index("restarting")
    assert {"failed", "closed"} & set(out["states"][:lost]) and out["states"][-1] == "connected", out["states"]
    assert out["stats"].frames_in > out["before"] + 100  # counters kept across the rebuild
    audio, rate = read_wav(str(heard))
    after = audio[out["rebuilt_at"] * 960:]
    assert len(after) >= 3 * rate and tone_fraction(after[: 3 * rate], rate, CALLER_HZ) >= 0.6
    assert out["result"]["answered"] and out["result"]["hangup_by"] == "remote"
    log = srv.log_text()
    assert len(re.findall(r"\|support\|NONE\|ENTERQUEUE\|", log)) == 1


def test_session_actions_map_to_the_protocol(server_factory, tmp_path: Path) -> None:
    """Reject, answer, DTMF, hold/resume, mute, a break pending during the call, hang-up,
    wrap-up done, ready, logout: each action's request, and the session's view after it."""
    acd = ACD.replace("connection_grace_s = 8", "connection_grace_s = 8\nreject_delay_s = 1") + \
        '\n[acd.breaks.lunch]\nlabel = "Lunch"\n'
    srv = server_factory(acd=acd)

    async def run() -> tuple[AgentSession, list[str], dict, FileAudio]:
        conn = AgentConnection(srv.web_url, "alice", "alice-pw", trust=Trust(ca_files=[cert(srv)]))
        audio = FileAudio(tone_hz=AGENT_HZ)
        session = AgentSession(conn, audio)
        seen: list[str] = []

        async def collect() -> None:
            async for ev in conn.events():
                seen.append(ev["type"])

        collector = asyncio.create_task(collect())

        async def until(cond, what: str, timeout: float = 15) -> None:
            for _ in range(int(timeout / 0.05)):
                if cond():
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"no {what}: state {session.state}, offer {session.offer}")

        try:
            await session.start()
            assert session.breaks == [{"reason": "lunch", "label": "Lunch"}] and session.agent_queues == ["support"]
            assert (await session.login(["support"]))["state"]["state"] == "available"
            caller = await asyncio.to_thread(start_caller, srv, tmp_path, 25)
            await until(lambda: session.offer is not None, "offer")
            assert audio.ringing and session.state["state"] == "reserved"
            first = session.offer["id"]
            await session.reject()
            assert not audio.ringing and session.offer is None and session.history[-1]["outcome"] == "rejected"
            await until(lambda: session.offer is not None, "second offer")  # back at the head of the queue
            assert session.offer["id"] == first
            assert (await session.answer())["state"]["state"] == "on-call" and not audio.ringing
            await until(lambda: session.call is not None, "call")
            assert session.call["id"] == first and session.call["state"] == "connected"
            assert (await session.dtmf("42"))["sent"] == "42"
            await session.hold()
            assert session.call["state"] == "held"
            await session.resume()
            assert session.call["state"] == "connected"
            await session.mute(True)
            assert session.muted
            await session.mute(False)
            assert not session.muted
            await session.take_break("lunch")
            assert session.state["pending"] == "break:lunch" and session.state["state"] == "on-call"
            await asyncio.sleep(1)
            assert (await session.hangup())["state"]["state"] == "wrap-up"
            await until(lambda: session.history and session.history[-1]["outcome"] == "answered", "call summary")
            assert (await session.wrapup_done())["state"]["state"] == "break"
            assert session.state["reason"] == "lunch"
            assert (await session.ready())["state"]["state"] == "available"
            assert (await session.logout())["state"]["state"] == "logged-out"
            with pytest.raises(SoftphoneError, match="no call in progress"):
                await session.hangup()
            result = await asyncio.to_thread(caller_result, caller)
            return session, seen, result, audio
        finally:
            await session.close()
            audio.close()
            await collector

    session, seen, result, audio = asyncio.run(run())
    rejected, answered = session.history
    assert rejected["outcome"] == "rejected" and answered["id"] == rejected["id"] and answered["held"] == 1
    assert answered["ended_by"] == "agent" and answered["quality"]["frames_out"] >= 40  # about a second
    assert result["answered"] and "42" in result["dtmf_received"], result
    for kind in ("offer", "call", "call-ended", "state", "connection"):
        assert kind in seen, seen
    assert seen[0] == "connection" and seen[-1] == "connection"  # connected ... closed
    assert audio.counters()["rings"] == 2


def test_sigterm_logs_out_and_exits_cleanly(server_factory, tmp_path: Path, softphones) -> None:
    import signal

    srv = server_factory(acd=ACD)
    phone = Softphone(tmp_path, [srv], "--echo")
    softphones.append(phone)
    phone.wait_log(r"available for calls")
    phone.proc.send_signal(signal.SIGTERM)
    code, summary = phone.summary(timeout=15)
    assert code == 0 and summary["ok"] and summary["stopped_by"] == "signal SIGTERM", summary
    assert summary["calls_answered"] == 0 and summary["calls"] == []
    srv.wait_log(r"agent alice logged out of session")  # the token was revoked
    log = (tmp_path / "state-alice" / "homeline" / "softphone.log").read_text()
    assert "stopping: signal SIGTERM" in log
