"""The ACD in the running server: callers from pjsua2 wait in a queue hearing music and
position announcements, agents are driven through the control API, and a robot test agent
answers and echoes. Audio is checked by signal."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.audio import dominant_frequency, read_wav, rms_dbfs, write_tone_wav
from tests.harness import DEFAULT_DIALPLAN, PEER, ROOT, RunningServer, free_port

pytestmark = pytest.mark.interop

ACD = """
[queues.support]
announce_position_every_s = 4
announce_holdtime = true

[agents.alice]
queues = {support = 5}

[agents.robot]
queues = {support = 1}
test = true
"""


def agent(srv: RunningServer, name: str, action: str) -> dict:
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(srv.data_dir / "acd.sock"))
        s.sendall(json.dumps({"cmd": "agent", "agent": name, "action": action}).encode() + b"\n")
        return json.loads(s.makefile().readline())


def caller(srv: RunningServer, tmp: Path, name: str, seconds: float, freq: float = 600.0) -> subprocess.Popen:
    tone = tmp / f"{name}-tone.wav"
    write_tone_wav(str(tone), freq, seconds + 2, rate=8000)
    return subprocess.Popen([sys.executable, str(PEER), "call", "--uri", srv.uri("support"), "--codec", "PCMU",
                             "--clock-rate", "8000", "--play", str(tone), "--record", str(tmp / f"{name}.wav"),
                             "--duration", str(seconds), "--local-port", str(free_port())],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


@pytest.fixture
def acd_server(server_factory, tmp_path: Path) -> RunningServer:
    prompts = subprocess.run([sys.executable, "-m", "acd.cli", "prompts", "build", "--dir",
                              str(tmp_path / "srv0" / "data" / "prompts")], cwd=ROOT, capture_output=True, text=True)
    assert prompts.returncode == 0, prompts.stderr
    return server_factory(acd=ACD)


def test_waiting_callers_hear_music_and_their_positions(acd_server: RunningServer, tmp_path: Path) -> None:
    agent(acd_server, "robot", "logout")  # nobody available: callers wait
    first = caller(acd_server, tmp_path, "first", 9)
    acd_server.wait_log(r"ENTERQUEUE")
    time.sleep(0.5)
    second = caller(acd_server, tmp_path, "second", 8)
    first.communicate(timeout=30)
    second.communicate(timeout=30)
    log = acd_server.log_text()
    positions = {call: int(pos) for call, pos in re.findall(r"call (\S+) announce position position=(\d+)", log)}
    assert sorted(set(positions.values())) == [1, 2], positions  # each caller heard their own place
    for name in ("first", "second"):
        audio, rate = read_wav(str(tmp_path / f"{name}.wav"))
        blocks = audio[: len(audio) // rate * rate].reshape(-1, rate)
        # music and announcements the whole time: no silent second while waiting
        assert min(rms_dbfs(b) for b in blocks[1:-1]) > -45, [round(rms_dbfs(b)) for b in blocks]
    assert "ABANDON" in acd_server.wait_log(r"ABANDON", count=2)


def test_robot_agent_answers_and_echoes(acd_server: RunningServer, tmp_path: Path) -> None:
    proc = caller(acd_server, tmp_path, "c", 5, freq=740.0)
    proc.communicate(timeout=30)
    log = acd_server.wait_log(r"COMPLETECALLER")
    assert re.search(r"call \S+ connected to agent robot", log)
    assert "CONNECT" in log
    audio, rate = read_wav(str(tmp_path / "c.wav"))
    assert abs(dominant_frequency(audio[int(1.5 * rate):], rate) - 740.0) < 10  # the robot echoed us
    status = acd_server.status()["acd"]
    assert status["agents"]["robot"]["state"] == "available"  # wrap-up done by itself


def test_agent_api_login_answer_hangup_wrapup(acd_server: RunningServer, tmp_path: Path) -> None:
    agent(acd_server, "robot", "logout")
    assert agent(acd_server, "alice", "login")["state"] in ("available", "break", "logged-in", "idle")
    agent(acd_server, "alice", "ready")
    proc = caller(acd_server, tmp_path, "d", 6)
    acd_server.wait_log(r"offer call \S+ from queue support to agent alice")
    reply = agent(acd_server, "alice", "answer")
    assert reply.get("state") == "on-call", reply
    time.sleep(1)
    agent(acd_server, "alice", "hangup")
    assert agent(acd_server, "alice", "wrapup-done")["state"] == "available"
    proc.communicate(timeout=30)
    log = acd_server.wait_log(r"COMPLETEAGENT")
    assert re.search(r"\|support\|alice\|CONNECT\|", log)
    bad = agent(acd_server, "nobody", "login")
    assert "unknown agent" in bad["error"]


MENU = ACD.replace("test = true", "test = true\nskills = {english = 1}") + """
[ivr.main]
prompt = "digits/5"
timeout_s = 2
max_retries = 1
on_failure = {action = "hangup", prompt = "queue/goodbye"}

[ivr.main.options]
"2" = {action = "queue", target = "support", priority = 3, skills = ["english"]}
"3" = {action = "echo"}
"""

MENU_PLAN = DEFAULT_DIALPLAN + '\n[[dialplan]]\nmatch = "menu"\naction = "ivr"\ntarget = "main"\n'


@pytest.fixture
def menu_server(server_factory, tmp_path: Path) -> RunningServer:
    prompts = subprocess.run([sys.executable, "-m", "acd.cli", "prompts", "build", "--dir",
                              str(tmp_path / "srv0" / "data" / "prompts")], cwd=ROOT, capture_output=True, text=True)
    assert prompts.returncode == 0, prompts.stderr
    plan = MENU_PLAN.replace('[[dialplan]]\nmatch = "*"', '[[dialplan]]\nmatch = "zzz-unused"')
    return server_factory(acd=MENU, dialplan=plan)


def test_menu_key_routes_into_the_queue_and_an_agent(menu_server: RunningServer, tmp_path: Path) -> None:
    tone = tmp_path / "tone.wav"
    write_tone_wav(str(tone), 660.0, 10, rate=8000)
    out = subprocess.run([sys.executable, str(PEER), "call", "--uri", menu_server.uri("menu"), "--codec", "PCMU",
                          "--clock-rate", "8000", "--play", str(tone), "--record", str(tmp_path / "m.wav"),
                          "--dtmf", "2", "--dtmf-at", "1.5", "--duration", "6"],
                         cwd=ROOT, capture_output=True, text=True, timeout=40)
    assert json.loads(out.stdout.strip().splitlines()[-1])["answered"], out.stdout
    log = menu_server.wait_log(r"COMPLETECALLER")
    assert re.search(r"enters IVR menu main", log)
    assert re.search(r"leaves IVR: RouteToQueue via main:2", log)
    assert re.search(r"connected to agent robot", log)
    assert re.search(r"to agent robot \(IVR main:2; skills english\)", log)  # the agent sees the path
    assert re.search(r"CDR CallRecord\(.*ivr_path=\('main:2',\), skills=\('english',\)", log)
    audio, rate = read_wav(str(tmp_path / "m.wav"))
    assert rms_dbfs(audio[: rate]) > -40  # the menu prompt was heard first
    assert abs(dominant_frequency(audio[int(3.5 * rate):], rate) - 660.0) < 10  # then the robot's echo


def test_menu_without_input_gives_up_politely(menu_server: RunningServer, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(PEER), "call", "--uri", menu_server.uri("menu"), "--codec", "PCMU",
                          "--duration", "25", "--record", str(tmp_path / "n.wav")],
                         cwd=ROOT, capture_output=True, text=True, timeout=40)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["answered"] and result.get("hangup_by") == "remote", result  # the server hung up
    log = menu_server.wait_log(r"leaves IVR: Hangup")
    assert "main:failure" in log


def test_queue_outside_business_hours_sends_callers_on(server_factory, tmp_path: Path) -> None:
    prompts = subprocess.run([sys.executable, "-m", "acd.cli", "prompts", "build", "--dir",
                              str(tmp_path / "srv0" / "data" / "prompts")], cwd=ROOT, capture_output=True, text=True)
    assert prompts.returncode == 0
    acd = ACD.replace("[queues.support]\n", '[queues.support]\nhours = "never"\n'
                      'closed = {action = "queue", target = "night"}\n') + """
[queues.night]
hours = "never"
closed = {action = "hangup", prompt = "queue/goodbye"}

[hours.never]
timezone = "UTC"
"""
    srv = server_factory(acd=acd)
    out = subprocess.run([sys.executable, str(PEER), "call", "--uri", srv.uri("support"), "--codec", "PCMU",
                          "--duration", "15"], cwd=ROOT, capture_output=True, text=True, timeout=40)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["answered"] and result["hangup_by"] == "remote", result
    log = srv.wait_log(r"queue night is closed")
    assert re.search(r"queue support is closed \(schedule never\): queue night", log)
    assert "ENTERQUEUE" not in log  # nobody waited in a closed queue


def test_max_wait_overflow_to_voicemail_records_the_message(server_factory, tmp_path: Path) -> None:
    prompts = subprocess.run([sys.executable, "-m", "acd.cli", "prompts", "build", "--dir",
                              str(tmp_path / "srv0" / "data" / "prompts")], cwd=ROOT, capture_output=True, text=True)
    assert prompts.returncode == 0
    acd = ACD.replace("[queues.support]\n", '[queues.support]\nmax_wait_s = 2\n'
                      'overflow = {action = "voicemail", target = "sales", prompt = "digits/7"}\n')
    srv = server_factory(acd=acd)
    agent(srv, "robot", "logout")
    tone = tmp_path / "msg.wav"
    write_tone_wav(str(tone), 520.0, 12, rate=8000)
    out = subprocess.run([sys.executable, str(PEER), "call", "--uri", srv.uri("support"), "--codec", "PCMU",
                          "--play", str(tone), "--duration", "7"], cwd=ROOT, capture_output=True, text=True, timeout=40)
    assert json.loads(out.stdout.strip().splitlines()[-1])["answered"]
    log = srv.wait_log(r"voicemail saved")
    assert "EXITWITHTIMEOUT" in log
    (saved,) = list((srv.data_dir / "voicemail" / "sales").glob("*.wav"))
    audio, rate = read_wav(str(saved))
    audio = audio[:, 0] if audio.ndim == 2 else audio
    assert len(audio) > 2 * rate  # the message after the beep, until the caller hung up
    assert abs(dominant_frequency(audio[rate // 2:], rate) - 520.0) < 10  # it is the caller's voice


def test_queued_callback_keeps_the_place_and_dials_the_customer(server_factory, sipp: str, tmp_path: Path) -> None:
    """The caller presses 1 for a callback, confirms their caller ID with 1 when it is read back,
    and is released; when Alice takes it, the server dials the customer (a sipp UAS standing in
    for their phone) through the trunk."""
    prompts = subprocess.run([sys.executable, "-m", "acd.cli", "prompts", "build", "--dir",
                              str(tmp_path / "srv0" / "data" / "prompts")], cwd=ROOT, capture_output=True, text=True)
    assert prompts.returncode == 0
    customer_port = free_port()
    customer = subprocess.Popen([sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", str(customer_port), "-m", "1",
                                 "-nostdin", "-timeout", "60", "-timeout_error"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        acd = ACD.replace("[queues.support]\n", '[queues.support]\ncallback = {offer_after_s = 1, key = "1"}\n')
        trunks = f'[trunks.local]\nallow = ["127.0.0.0/8"]\nproxy = "sip:127.0.0.1:{customer_port}"\n'
        srv = server_factory(acd=acd, trunks=trunks)
        agent(srv, "robot", "logout")
        out = subprocess.run([sys.executable, str(PEER), "call", "--uri", srv.uri("support"), "--codec", "PCMU",
                              "--id", "sip:5551234@127.0.0.1", "--dtmf", "1", "--dtmf-at", "3",
                              "--dtmf-seq", "1@13", "--duration", "25"],
                             cwd=ROOT, capture_output=True, text=True, timeout=40)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["answered"] and result["hangup_by"] == "remote", result  # confirmed, then released
        srv.wait_log(r"callback to \S+ scheduled in queue support")
        agent(srv, "alice", "login")
        agent(srv, "alice", "ready")
        srv.wait_log(r"offer call \S+ from queue support to agent alice")
        assert agent(srv, "alice", "answer")["state"] == "on-call"
        srv.wait_log(r"callback \S+: customer answered", timeout=10)
        time.sleep(1)
        agent(srv, "alice", "hangup")
        out_c, _ = customer.communicate(timeout=20)
        assert customer.returncode == 0, out_c[-2000:]  # the customer's call was answered and ended cleanly
        log = srv.wait_log(r"COMPLETEAGENT")
        assert re.search(r"\|support\|NONE\|CALLBACK\|1\|1\|\d+\|5551234", log)  # position kept: 1 of 1
        assert re.search(r"CDR CallRecord\(.*agent='alice'.*outcome='answered'.*callback=True", log)
    finally:
        customer.kill()


def test_queued_callback_to_another_number_entered_by_the_caller(server_factory, sipp: str, tmp_path: Path) -> None:
    """The caller (caller ID 5551234) presses 1 for a callback, hears their number read back,
    presses 2 for another one, types 5550199#, hears it read back and confirms with 1; when
    Alice takes the callback the server dials 5550199 (a sipp UAS) through the trunk."""
    prompts = subprocess.run([sys.executable, "-m", "acd.cli", "prompts", "build", "--dir",
                              str(tmp_path / "srv0" / "data" / "prompts")], cwd=ROOT, capture_output=True, text=True)
    assert prompts.returncode == 0
    customer_port = free_port()
    customer = subprocess.Popen([sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", str(customer_port), "-m", "1",
                                 "-nostdin", "-timeout", "60", "-timeout_error", "-trace_msg"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        acd = ACD.replace("[queues.support]\n", '[queues.support]\ncallback = {offer_after_s = 1, key = "1"}\n')
        trunks = f'[trunks.local]\nallow = ["127.0.0.0/8"]\nproxy = "sip:127.0.0.1:{customer_port}"\n'
        srv = server_factory(acd=acd, trunks=trunks)
        agent(srv, "robot", "logout")
        # The offer plays from 1 s (3.4 s); 1 barges in; 2 barges into the read-back of 5551234;
        # the number is typed during "please enter the number" (3.6 s); its read-back takes ~8 s.
        out = subprocess.run([sys.executable, str(PEER), "call", "--uri", srv.uri("support"), "--codec", "PCMU",
                              "--id", "sip:5551234@127.0.0.1", "--dtmf-seq", "1@3", "--dtmf-seq", "2@7",
                              "--dtmf-seq", "5550199#@11", "--dtmf-seq", "1@22", "--duration", "35"],
                             cwd=ROOT, capture_output=True, text=True, timeout=50)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["answered"] and result["hangup_by"] == "remote", result  # confirmed, then released
        assert result["dtmf_sent"] == "125550199#1"
        log = srv.wait_log(r"callback to 5550199 scheduled in queue support")
        assert re.search(r"callback number dialogue starts \(caller ID 5551234\)", log)
        assert "queue/callback-at.wav" in log and "queue/callback-confirm-or-reenter.wav" in log  # read back
        assert "callback number dialogue dropped" not in log and "callback cancelled" not in log
        agent(srv, "alice", "login")
        agent(srv, "alice", "ready")
        srv.wait_log(r"offer call \S+ from queue support to agent alice")
        assert agent(srv, "alice", "answer")["state"] == "on-call"
        log = srv.wait_log(r"callback \S+: customer answered", timeout=10)
        assert re.search(r"callback \S+: dialling 5550199 through local for agent alice", log)
        assert re.search(r"\|support\|NONE\|CALLBACK\|1\|1\|\d+\|5550199$", log, re.M)  # place kept
        time.sleep(1)
        agent(srv, "alice", "hangup")
        assert customer.wait(timeout=20) == 0  # the customer's call was answered and ended cleanly
        (trace,) = tmp_path.glob("*_messages.log")
        invites = re.findall(r"^INVITE (sip:\S+) SIP/2\.0", trace.read_text(errors="replace"), re.M)
        assert invites and all(uri.startswith("sip:5550199@") for uri in invites), invites
    finally:
        customer.kill()
        customer.communicate()
