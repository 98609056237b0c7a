"""IVR option "external": the caller presses 4, the server dials 5550100 through trunk
``carrier`` (a pjsua2 peer in answer mode behind the trunk's proxy address) and bridges the
two legs. Audio is checked by signal: each side hears the other's tone. Hangups cross over,
a caller who gives up while it rings CANCELs the far leg, and a far end that is busy, never
answers or cannot even be resolved leaves the caller with a prompt and a clean hangup."""

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

CALLER_HZ, FAR_HZ = 600.0, 1000.0

ACD = """
[queues.support]

[ivr.main]
prompt = "digits/4"
timeout_s = 6
max_retries = 0

[ivr.main.options]
"4" = {action = "external", number = "5550100", trunk = "carrier", ring_timeout_s = RING}
"""

PLAN = DEFAULT_DIALPLAN.replace('[[dialplan]]\nmatch = "*"',
                                '[[dialplan]]\nmatch = "menu"\naction = "ivr"\ntarget = "main"\n\n'
                                '[[dialplan]]\nmatch = "*"')


def start(server_factory, tmp_path: Path, proxy: str, ring_timeout_s: float = 20) -> RunningServer:
    """A server whose menu sends key 4 to 5550100 through ``[trunks.carrier]`` at ``proxy``."""
    prompts = subprocess.run([sys.executable, "-m", "acd.cli", "prompts", "build", "--dir",
                              str(tmp_path / "srv0" / "data" / "prompts")], cwd=ROOT, capture_output=True, text=True)
    assert prompts.returncode == 0, prompts.stderr
    trunks = ('[trunks.local]\nallow = ["127.0.0.0/8", "::1/128"]\n\n'
              f'[trunks.carrier]\nallow = ["192.0.2.0/24"]\nproxy = "{proxy}"\n')
    return server_factory(acd=ACD.replace("RING", f"{ring_timeout_s:g}"), trunks=trunks, dialplan=PLAN)


def far_end(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, int]:
    """The number behind the trunk: a pjsua2 peer answering one call on its own SIP port."""
    port = free_port()
    ready = tmp_path / "far.ready"
    proc = subprocess.Popen([sys.executable, str(PEER), "answer", "--local-port", str(port), "--calls", "1",
                             "--ready-file", str(ready), "--timeout", "45", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 15
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "far-end peer did not start"
        time.sleep(0.05)
    return proc, port


def call_menu(srv: RunningServer, tmp_path: Path, *args: str, timeout: float = 60) -> dict:
    """Call the menu, press 4 after 1.5 s; returns the caller peer's JSON result."""
    tone = tmp_path / "caller-tone.wav"
    write_tone_wav(str(tone), CALLER_HZ, 30, rate=8000)
    out = subprocess.run([sys.executable, str(PEER), "call", "--uri", srv.uri("menu"), "--codec", "PCMU",
                          "--clock-rate", "8000", "--play", str(tone), "--record", str(tmp_path / "caller.wav"),
                          "--dtmf", "4", "--dtmf-at", "1.5", "--timeout", "45", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["answered"], result
    return result


def result_of(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=60)
    return json.loads(out.strip().splitlines()[-1])


def wait_idle(srv: RunningServer, timeout: float = 10) -> dict:
    """The server's status once both legs are gone: it must stay healthy after every outcome."""
    deadline = time.monotonic() + timeout
    while True:
        status = srv.status()
        if status["calls_active"] == 0 or time.monotonic() > deadline:
            assert status["calls_active"] == 0, status
            assert status["accepting"] and srv.proc.poll() is None
            return status
        time.sleep(0.2)


def test_external_number_is_bridged_both_ways(server_factory, tmp_path: Path) -> None:
    """Caller on PCMU (8 kHz), far end on G.722 (16 kHz): the bridge resamples both ways.
    The caller hangs up; the server then hangs up the far end."""
    far_tone = tmp_path / "far-tone.wav"
    write_tone_wav(str(far_tone), FAR_HZ, 30, rate=16000)
    far, port = far_end(tmp_path, "--codec", "G722", "--clock-rate", "16000", "--ring-ms", "1500",
                        "--play", str(far_tone), "--record", str(tmp_path / "far.wav"))
    srv = start(server_factory, tmp_path, f"sip:127.0.0.1:{port}")
    try:
        caller = call_menu(srv, tmp_path, "--duration", "9")
        far_result = result_of(far)
    finally:
        far.kill()
    assert caller["hangup_by"] == "local", caller
    (leg,) = far_result["calls"]
    assert leg["answered"] and leg["hangup_by"] == "remote", leg  # the server hung up the far end
    assert re.match(r"sips?:5550100@", leg["request_uri"] or ""), leg["request_uri"]
    assert (leg["codec"] or "").upper().startswith("G722"), leg["codec"]

    far_audio, far_rate = read_wav(str(tmp_path / "far.wav"))
    assert len(far_audio) > 3 * far_rate
    assert abs(dominant_frequency(far_audio, far_rate, skip_s=0.5) - CALLER_HZ) < 10  # it hears the caller
    audio, rate = read_wav(str(tmp_path / "caller.wav"))
    assert rms_dbfs(audio[int(1.8 * rate):int(2.8 * rate)]) > -45  # "please wait..." and ringback, not silence
    bridged = audio[int(5.0 * rate):int(8.7 * rate)]  # the far end answered 1.5 s after the key press
    assert abs(dominant_frequency(bridged, rate, skip_s=0) - FAR_HZ) < 10  # the caller hears the far end

    log = srv.wait_log(r"transfer to 5550100 ended: the caller hung up after")
    assert re.search(r"transfer of caller \S+ to 5550100 through trunk carrier", log)
    assert re.search(r"5550100 answered \(\S+\), bridged: 8000 Hz <-> 16000 Hz", log)
    counters = wait_idle(srv)["counters"]
    assert (counters["transfers"], counters["transfers_bridged"]) == (1, 1), counters
    assert "transfers_failed" not in counters


def test_far_end_hangup_ends_the_caller(server_factory, tmp_path: Path) -> None:
    far_tone = tmp_path / "far-tone.wav"
    write_tone_wav(str(far_tone), FAR_HZ, 30, rate=8000)
    far, port = far_end(tmp_path, "--codec", "PCMU", "--clock-rate", "8000", "--duration", "3",
                        "--play", str(far_tone), "--record", str(tmp_path / "far.wav"))
    srv = start(server_factory, tmp_path, f"sip:127.0.0.1:{port}")
    try:
        caller = call_menu(srv, tmp_path, "--duration", "25")
        far_result = result_of(far)
    finally:
        far.kill()
    (leg,) = far_result["calls"]
    assert leg["answered"] and leg["hangup_by"] == "local", leg
    assert caller["hangup_by"] == "remote" and caller["call_duration_s"] < 12, caller  # not left in silence
    audio, rate = read_wav(str(tmp_path / "caller.wav"))
    assert abs(dominant_frequency(audio[int(2.5 * rate):int(4.3 * rate)], rate, skip_s=0) - FAR_HZ) < 10
    far_audio, far_rate = read_wav(str(tmp_path / "far.wav"))
    assert abs(dominant_frequency(far_audio, far_rate, skip_s=0.5) - CALLER_HZ) < 10
    srv.wait_log(r"transfer to 5550100 ended: the far end hung up after [23]\.\d s bridged")
    assert wait_idle(srv)["counters"]["transfers_bridged"] == 1


def test_caller_hangup_while_ringing_cancels_the_far_leg(server_factory, tmp_path: Path) -> None:
    far, port = far_end(tmp_path, "--codec", "PCMU", "--ring-ms", "20000")
    srv = start(server_factory, tmp_path, f"sip:127.0.0.1:{port}")
    try:
        caller = call_menu(srv, tmp_path, "--duration", "4.5")
        far_result = result_of(far)
    finally:
        far.kill()
    assert caller["hangup_by"] == "local", caller
    (leg,) = far_result["calls"]
    assert not leg["answered"], leg
    assert leg["state_log"][-1]["state"] == "DISCONNECTED" and leg["state_log"][-1]["code"] == 487, leg
    log = srv.wait_log(r"caller hung up while 5550100 rang, cancelling")
    assert "bridged" not in log.split("caller hung up while", 1)[1].split("\n", 1)[0]
    counters = wait_idle(srv)["counters"]
    assert counters["transfers"] == 1 and "transfers_bridged" not in counters and "transfers_failed" not in counters


@pytest.mark.parametrize("failure", ["busy", "no-answer", "no-response", "dns"])
def test_failed_transfer_plays_a_prompt_then_hangs_up(server_factory, tmp_path: Path, failure: str) -> None:
    """Busy (486), a far end that rings but is not answered within the ring timeout (2 s), a
    proxy that never responds at all, or a proxy whose name does not resolve: the caller hears
    ivr/transfer-failed, the server hangs up, and stays healthy."""
    far = None
    if failure == "busy":
        far, port = far_end(tmp_path, "--answer-code", "486")
        proxy, reason = f"sip:127.0.0.1:{port}", r"rejected 486"
    elif failure == "no-answer":
        far, port = far_end(tmp_path, "--ring-ms", "20000")
        proxy, reason = f"sip:127.0.0.1:{port}", r"no answer within 2 s"
    elif failure == "no-response":
        proxy, reason = f"sip:127.0.0.1:{free_port()}", r"no answer within 2 s"  # nobody listens there
    else:
        proxy, reason = "sip:homeline-test.invalid", r"cannot dial \("
    srv = start(server_factory, tmp_path, proxy, ring_timeout_s=2)
    try:
        started = time.monotonic()
        caller = call_menu(srv, tmp_path, "--duration", "30")
        elapsed = time.monotonic() - started
        if far is not None:
            (leg,) = result_of(far)["calls"]
            assert not leg["answered"], leg
            if failure == "no-answer":  # CANCELled at the ring timeout
                assert leg["state_log"][-1]["code"] == 487, leg
    finally:
        if far is not None:
            far.kill()
    assert caller["hangup_by"] == "remote", caller  # the server let the caller go ...
    assert caller["call_duration_s"] < 15 and elapsed < 25, (caller, elapsed)  # ... soon
    audio, rate = read_wav(str(tmp_path / "caller.wav"))
    end = int(caller["call_duration_s"] * rate)
    assert rms_dbfs(audio[end - int(1.8 * rate):end - int(0.3 * rate)]) > -40  # a prompt, not silence
    log = srv.wait_log(r"transfer to 5550100 through trunk carrier failed: " + reason)
    assert re.search(r"call \S+ ended: local-bye", log)
    assert "Traceback" not in log
    # without any response the INVITE cannot be CANCELled (RFC 3261 §9.1): the far leg ends at
    # timer B (64·T1 = 32 s after the INVITE), its RTP port is given back then
    counters = wait_idle(srv, timeout=40 if failure == "no-response" else 10)["counters"]
    assert (counters["transfers"], counters["transfers_failed"]) == (1, 1), counters
