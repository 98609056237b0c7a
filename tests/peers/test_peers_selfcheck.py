"""Self-check of the test harness (pjsua_peer.py + tests/audio.py).

Runs only against independent peers (sipp, a second pjsua_peer process); our
own server is not involved.  Everything binds to 127.0.0.1 on ports picked at
runtime.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # repo root, no conftest needed
from tests.audio import (  # noqa: E402
    dominant_frequency,
    read_wav,
    rms_dbfs,
    tone_fraction,
    tone_present,
    tone_snr_db,
    write_tone_wav,
    write_wav,
    xcorr_delay,
)

PEER = Path(__file__).resolve().parent / "pjsua_peer.py"
HOST = "127.0.0.1"
SIPP = shutil.which("sipp")

try:  # the peer needs pjsua2 in the interpreter running the tests
    import pjsua2  # noqa: F401

    HAVE_PJSUA2 = True
except Exception:  # pragma: no cover
    HAVE_PJSUA2 = False

# Required, never skipped: make test installs pjsua2-python and Debian sip-tester.
needs_pjsua2 = pytest.mark.interop
needs_sipp = pytest.mark.interop


def test_peers_are_installed() -> None:
    assert HAVE_PJSUA2, "pjsua2 not importable: make test installs pjsua2-python"
    assert SIPP is not None, "sipp missing: make test installs Debian sip-tester"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _port_free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port(step_free: Tuple[int, ...] = (0,)) -> int:
    """A port P (UDP+TCP free on 127.0.0.1) such that P+k is also free for k in step_free."""
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((HOST, 0))
        port = s.getsockname()[1]
        s.close()
        if port + max(step_free) < 65535 and all(_port_free(port + k) for k in step_free):
            return port
    raise RuntimeError("no free port found")


def _udp_port_bound(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((HOST, port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def wait_udp_bound(port: int, proc: subprocess.Popen, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _udp_port_bound(port):
            return
        if proc.poll() is not None:
            raise AssertionError(f"process exited early rc={proc.returncode}: {_drain(proc)}")
        time.sleep(0.05)
    raise AssertionError(f"nothing bound udp/{port} within {timeout}s")


def _drain(proc: subprocess.Popen) -> str:
    try:
        out, err = proc.communicate(timeout=2)
    except Exception:
        return ""
    return f"stdout={out!r} stderr={err!r}"


def kill(proc: Optional[subprocess.Popen]) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=3)


def parse_json(stdout: str) -> Dict[str, Any]:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected exactly one JSON line on stdout, got: {stdout!r}"
    return json.loads(lines[0])


def peer_cmd(*args: str) -> List[str]:
    return [sys.executable, str(PEER), *args]


def run_peer(args: List[str], timeout: float = 30.0, log: Optional[Path] = None) -> Tuple[int, Dict[str, Any], str]:
    extra = ["--log-file", str(log), "--log-level", "4"] if log else []
    cp = subprocess.run(peer_cmd(*args, *extra), capture_output=True, text=True, timeout=timeout)
    try:
        data = parse_json(cp.stdout)
    except Exception as exc:
        raise AssertionError(f"bad peer output ({exc}); rc={cp.returncode}\nstdout={cp.stdout}\n"
                             f"stderr={cp.stderr[-3000:]}\n{_log_tail(log)}")
    return cp.returncode, data, cp.stderr


def _log_tail(log: Optional[Path], n: int = 4000) -> str:
    if log and log.exists():
        return "pjsua log tail:\n" + log.read_text(errors="replace")[-n:]
    return ""


def wait_ready_file(path: Path, proc: subprocess.Popen, timeout: float = 10.0) -> Dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.stat().st_size:
            return json.loads(path.read_text())
        if proc.poll() is not None:
            raise AssertionError(f"answer peer exited early rc={proc.returncode}: {_drain(proc)}")
        time.sleep(0.05)
    raise AssertionError("answer peer did not become ready")


# --------------------------------------------------------------------------
# (c) unit tests of tests/audio.py on synthetic signals
# --------------------------------------------------------------------------
@pytest.mark.parametrize("freq", [300.0, 440.0, 1000.0, 1200.0, 2750.5, 3400.0])
def test_dominant_frequency_accuracy(freq):
    rate = 8000
    t = np.arange(int(1.5 * rate)) / rate
    rng = np.random.default_rng(1)
    x = 0.3 * np.sin(2 * np.pi * freq * t + 0.7) + 0.01 * rng.standard_normal(t.size)
    x[: rate // 4] = 0.0  # leading silence beyond skip_s
    f = dominant_frequency(x.astype(np.float32), rate, skip_s=0.1)
    assert abs(f - freq) < 0.5, f


def test_dominant_frequency_silence_and_short():
    assert dominant_frequency(np.zeros(8000, dtype=np.float32), 8000) == 0.0
    assert dominant_frequency(np.zeros(10, dtype=np.float32), 8000, skip_s=0) == 0.0


def test_tone_present_and_snr():
    rate = 16000
    t = np.arange(rate) / rate
    rng = np.random.default_rng(2)
    tone = 0.3 * np.sin(2 * np.pi * 1000 * t)
    noise = 0.003 * rng.standard_normal(t.size)
    assert tone_present(tone + noise, rate, 1000)
    assert tone_present(tone + noise, rate, 1010, tolerance_hz=15)
    assert not tone_present(tone + noise, rate, 1100, tolerance_hz=15)
    assert not tone_present(noise, rate, 1000)
    assert not tone_present(np.zeros(rate), rate, 1000)
    # two equal tones: neither dominates by 20 dB
    two = tone + 0.3 * np.sin(2 * np.pi * 440 * t)
    assert not tone_present(two, rate, 1000)
    assert abs(tone_snr_db(two, rate, 1000)) < 1.0


def test_tone_fraction():
    rate = 8000
    t = np.arange(2 * rate) / rate
    x = 0.3 * np.sin(2 * np.pi * 600 * t)
    x[rate:] = 0.3 * np.sin(2 * np.pi * 900 * t[rate:])  # 600 Hz then 900 Hz
    assert tone_fraction(x, rate, 600) == pytest.approx(0.5)
    assert tone_fraction(x, rate, 900) == pytest.approx(0.5)
    assert tone_fraction(x, rate, 1500) == 0.0
    assert tone_fraction(np.zeros(rate), rate, 600) == 0.0
    assert tone_fraction(x[:10], rate, 600) == 0.0


def test_rms_dbfs():
    rate = 8000
    t = np.arange(rate) / rate
    assert rms_dbfs(np.sin(2 * np.pi * 100 * t)) == pytest.approx(-3.01, abs=0.02)
    assert rms_dbfs(0.1 * np.ones(100)) == pytest.approx(-20.0, abs=1e-6)
    assert rms_dbfs(np.zeros(100)) == float("-inf")
    assert rms_dbfs(np.zeros(0)) == float("-inf")


@pytest.mark.parametrize("shift_s", [0.0, 0.0371, 0.25, 0.73, -0.12])
def test_xcorr_delay_of_shifted_noise(shift_s):
    rate = 8000
    rng = np.random.default_rng(3)
    ref = rng.standard_normal(2 * rate)
    shift = int(round(shift_s * rate))
    rec = np.roll(ref, shift)
    if shift > 0:
        rec[:shift] = 0.0
    elif shift < 0:
        rec[shift:] = 0.0
    rec = 0.5 * rec + 0.05 * rng.standard_normal(rec.size)
    delay, peak = xcorr_delay(ref, rec, rate, max_delay_s=1.0)
    assert abs(delay - shift / rate) < 0.001, delay
    assert peak > 0.5
    # unrelated signals do not correlate
    _, p2 = xcorr_delay(ref, rng.standard_normal(ref.size), rate)
    assert p2 < 0.2


def test_xcorr_delay_respects_max_delay():
    rate = 8000
    rng = np.random.default_rng(4)
    ref = rng.standard_normal(rate)
    rec = np.concatenate([np.zeros(rate // 2), ref])  # 0.5 s late
    d, _ = xcorr_delay(ref, rec, rate, max_delay_s=1.0)
    assert abs(d - 0.5) < 0.001
    d2, p2 = xcorr_delay(ref, rec, rate, max_delay_s=0.2)
    assert abs(d2) <= 0.2 + 1e-9 and p2 < 0.2


def test_wav_roundtrip(tmp_path):
    p = write_tone_wav(tmp_path / "t.wav", 700, 0.5, rate=8000, amplitude=0.5)
    x, rate = read_wav(p)
    assert rate == 8000 and x.dtype == np.float32 and x.size == 4000
    assert float(np.max(np.abs(x))) == pytest.approx(0.5, abs=1e-3)
    assert dominant_frequency(x, rate, skip_s=0) == pytest.approx(700, abs=0.5)
    y = np.linspace(-1, 1, 101)
    write_wav(tmp_path / "r.wav", y, 16000)
    z, r2 = read_wav(tmp_path / "r.wav")
    assert r2 == 16000 and np.allclose(z, y, atol=1 / 16000)


# --------------------------------------------------------------------------
# (a) pjsua_peer call -> sipp uas with RTP echo
# --------------------------------------------------------------------------
@needs_pjsua2
@needs_sipp
def test_call_to_sipp_rtp_echo(tmp_path):
    tone = write_tone_wav(tmp_path / "tone1000.wav", 1000, 5.0)
    rec = tmp_path / "echoed.wav"
    sip_port = free_port()
    rtp_port = free_port(step_free=(0, 1, 2, 3))  # sipp echoes on -mp and -mp+2
    sipp = None
    try:
        sipp = subprocess.Popen(
            [SIPP, "-sn", "uas", "-i", HOST, "-p", str(sip_port),
             "-mi", HOST, "-mp", str(rtp_port), "-rtp_echo",
             "-m", "1", "-nostdin", "-timeout", "20s", "-trace_err"],
            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        wait_udp_bound(sip_port, sipp)
        log = tmp_path / "call.log"
        rc, res, err = run_peer(
            ["call", "--uri", f"sip:echo@{HOST}:{sip_port}", "--codec", "PCMU",
             "--play", tone, "--record", str(rec), "--duration", "3", "--timeout", "15"],
            timeout=25, log=log)
        ctx = f"{res}\n{err[-2000:]}\n{_log_tail(log)}"
        assert res["error"] is None, ctx
        assert rc == 0, ctx
        assert res["answered"] and res["status_code"] == 200, ctx
        assert res["codec"] == "PCMU/8000", ctx
        assert res["setup_ms"] is not None and res["setup_ms"] < 2000, ctx
        assert 2.5 < res["call_duration_s"] < 5, ctx
        assert res["hangup_by"] == "local", ctx
        assert res["media_state_log"] and res["media_state_log"][0]["status"] == "ACTIVE", ctx
        assert res["rtp"]["rx_pkt"] > 50, ctx
        # sipp's uas keeps the call 4 s in timewait after the BYE: don't wait
        # for it to exit, just make sure it did not die with an error.
        assert sipp.poll() in (None, 0), _drain(sipp)
    finally:
        kill(sipp)
    x, rate = read_wav(rec)
    assert x.size > rate * 2
    assert rms_dbfs(x[rate // 2:]) > -30, "echoed audio is (nearly) silent"
    f = dominant_frequency(x, rate, skip_s=0.5)
    assert abs(f - 1000) <= 15, f
    seg = x[rate // 2:]
    assert tone_fraction(seg, rate, 1000) >= 0.6, tone_snr_db(seg, rate, 1000)
    assert tone_present(seg, rate, 1000, min_snr_db=10), tone_snr_db(seg, rate, 1000)


# --------------------------------------------------------------------------
# (b) pjsua_peer call -> pjsua_peer answer, tones both ways
# --------------------------------------------------------------------------
@needs_pjsua2
def test_two_way_audio_between_two_peers(tmp_path):
    caller_tone = write_tone_wav(tmp_path / "t440.wav", 440, 5.0)
    callee_tone = write_tone_wav(tmp_path / "t1200.wav", 1200, 5.0)
    caller_rec = tmp_path / "caller_rec.wav"
    callee_rec = tmp_path / "callee_rec.wav"
    ready = tmp_path / "ready.json"
    port = free_port()
    ans_log = tmp_path / "answer.log"
    answer = None
    try:
        answer = subprocess.Popen(
            peer_cmd("answer", "--local-port", str(port), "--play", callee_tone,
                     "--record", str(callee_rec), "--calls", "1", "--timeout", "20",
                     "--ready-file", str(ready), "--log-file", str(ans_log), "--log-level", "4"),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        info = wait_ready_file(ready, answer)
        assert info["local_port"] == port
        log = tmp_path / "call.log"
        rc, res, err = run_peer(
            ["call", "--uri", f"sip:agent@{HOST}:{port}", "--codec", "PCMA",
             "--play", caller_tone, "--record", str(caller_rec), "--duration", "3",
             "--dtmf", "12#", "--dtmf-at", "2.2", "--header", "X-Homeline-Test: abc 1",
             "--timeout", "15"],
            timeout=25, log=log)
        ctx = f"{res}\n{err[-2000:]}\n{_log_tail(log)}"
        assert rc == 0 and res["error"] is None, ctx
        assert res["answered"] and res["codec"] == "PCMA/8000", ctx
        out, aerr = answer.communicate(timeout=15)
        ares = parse_json(out)
        actx = f"{ares}\n{aerr[-2000:]}\n{_log_tail(ans_log)}"
        assert answer.returncode == 0 and ares["error"] is None, actx
        assert len(ares["calls"]) == 1, actx
        c = ares["calls"][0]
        assert c["answered"] and c["hangup_by"] == "remote", actx
        assert c["request_uri"] == f"sip:agent@{HOST}:{port}", actx
        assert c["to"].strip("<>") == f"sip:agent@{HOST}", actx
        assert c["dtmf_received"] == "12#", actx
        assert c["invite_headers"]["x-homeline-test"] == ["abc 1"], actx
        assert 2.5 < c["call_duration_s"] < 5, actx
    finally:
        kill(answer)
    # each side hears the *other* side's tone (check before the DTMF at 2.2 s,
    # during which RFC 4733 events replace audio)
    for path, want, other in ((caller_rec, 1200, 440), (callee_rec, 440, 1200)):
        x, rate = read_wav(path)
        seg = x[int(0.5 * rate): int(2.0 * rate)]
        assert rms_dbfs(seg) > -30, f"{path.name} is silent"
        f = dominant_frequency(seg, rate, skip_s=0)
        assert abs(f - want) <= 15, (path.name, f)
        # audio that crossed RTP may carry a glitch or two (PLC under CPU load):
        # require the tone in most 250 ms blocks and >= 10 dB overall
        assert tone_fraction(seg, rate, want) >= 0.6, (path.name, tone_snr_db(seg, rate, want))
        assert tone_present(seg, rate, want, min_snr_db=10), (path.name, tone_snr_db(seg, rate, want))
        assert tone_fraction(seg, rate, other, min_snr_db=0) == 0.0, path.name


# --------------------------------------------------------------------------
# extra robustness checks of the peer itself
# --------------------------------------------------------------------------
@needs_pjsua2
def test_answer_code_reject_and_hold_unhold(tmp_path):
    """answer --answer-code 486 is reported as a failed call; hold/unhold against a pjsua callee."""
    ready = tmp_path / "ready.json"
    port = free_port()
    answer = None
    try:
        answer = subprocess.Popen(
            peer_cmd("answer", "--local-port", str(port), "--answer-code", "486",
                     "--calls", "1", "--timeout", "10", "--ready-file", str(ready)),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_ready_file(ready, answer)
        rc, res, _ = run_peer(["call", "--uri", f"sip:busy@{HOST}:{port}", "--timeout", "8"], timeout=20)
        assert rc == 1 and not res["answered"] and res["status_code"] == 486, res
        out, _ = answer.communicate(timeout=10)
        ares = parse_json(out)
        assert ares["calls"][0]["answered"] is False and ares["calls"][0]["status_code"] == 486, ares
    finally:
        kill(answer)

    ready2 = tmp_path / "ready2.json"
    port2 = free_port()
    try:
        answer = subprocess.Popen(
            peer_cmd("answer", "--local-port", str(port2), "--calls", "1", "--timeout", "15",
                     "--ready-file", str(ready2)),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_ready_file(ready2, answer)
        log = tmp_path / "hold.log"
        rc, res, err = run_peer(
            ["call", "--uri", f"sip:hold@{HOST}:{port2}", "--codec", "G722", "--duration", "2.2",
             "--hold-at", "0.6", "--unhold-at", "1.4", "--timeout", "12"], timeout=20, log=log)
        ctx = f"{res}\n{_log_tail(log)}"
        assert rc == 0 and res["hold_ok"] is True and res["unhold_ok"] is True, ctx
        statuses = [m["status"] for m in res["media_state_log"]]
        assert statuses == ["ACTIVE", "LOCAL_HOLD", "ACTIVE"], ctx
        assert [a["dir"] for a in res["sdp_answers"]] == ["sendrecv", "recvonly", "sendrecv"], ctx
        assert res["codec"] == "G722/16000", ctx
        out, _ = answer.communicate(timeout=10)
        ares = parse_json(out)
        assert [m["status"] for m in ares["calls"][0]["media_state_log"]] == ["ACTIVE", "REMOTE_HOLD", "ACTIVE"]
    finally:
        kill(answer)


REGISTRAR_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="registrar with digest">
  <recv request="REGISTER" />
  <send><![CDATA[
      SIP/2.0 401 Unauthorized
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      WWW-Authenticate: Digest realm="homeline.test", nonce="abc123nonce", algorithm=MD5
      Content-Length: 0
    ]]></send>
  <recv request="REGISTER">
    <action><verifyauth assign_to="authvalid" username="alice" password="secret" /></action>
  </recv>
  <nop next="goodauth" test="authvalid" />
  <send next="end"><![CDATA[
      SIP/2.0 403 Forbidden
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]></send>
  <label id="goodauth" />
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:];expires=120
      Content-Length: 0
    ]]></send>
  <label id="end" />
</scenario>
"""


@needs_pjsua2
@needs_sipp
@pytest.mark.parametrize("password,expect_code", [("secret", 200), ("wrong", 403)])
def test_register_digest_against_sipp(tmp_path, password, expect_code):
    scen = tmp_path / "registrar.xml"
    scen.write_text(REGISTRAR_XML)
    port = free_port()
    sipp = None
    try:
        sipp = subprocess.Popen(
            [SIPP, "-sf", str(scen), "-i", HOST, "-p", str(port), "-m", "1", "-nostdin",
             "-timeout", "10s"],
            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        wait_udp_bound(port, sipp)
        rc, res, err = run_peer(
            ["register", "--registrar", f"sip:{HOST}:{port}", "--user", "alice",
             "--password", password, "--realm", "homeline.test", "--timeout", "8"], timeout=20)
        assert res["status_code"] == expect_code, (res, err[-2000:])
        if expect_code == 200:
            assert rc == 0 and res["registered"] and res["expires"] == 120, res
        else:
            assert rc == 1 and not res["registered"], res
    finally:
        kill(sipp)


@needs_pjsua2
def test_call_to_dead_port_exits_within_timeout(tmp_path):
    port = free_port()  # nothing listens here
    t0 = time.monotonic()
    rc, res, _ = run_peer(["call", "--uri", f"sip:nobody@{HOST}:{port}", "--timeout", "3"], timeout=20)
    elapsed = time.monotonic() - t0
    assert rc == 1 and res["answered"] is False, res
    assert res["error"] or (res["status_code"] or 0) >= 400, res
    assert elapsed < 12, elapsed


UAS_AUTH_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="uas with digest challenge">
  <recv request="INVITE" />
  <send><![CDATA[
      SIP/2.0 401 Unauthorized
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      WWW-Authenticate: Digest realm="homeline.test", nonce="n0nce401", algorithm=MD5
      Content-Length: 0
    ]]></send>
  <recv request="ACK" />
  <recv request="INVITE">
    <action><verifyauth assign_to="authvalid" username="bob" password="pw" /></action>
  </recv>
  <nop next="ok" test="authvalid" />
  <send next="rejected"><![CDATA[
      SIP/2.0 403 Forbidden
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag02[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]></send>
  <label id="ok" />
  <send retrans="500"><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag02[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
    ]]></send>
  <recv request="ACK" />
  <recv request="BYE" />
  <send next="end"><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]></send>
  <label id="rejected" />
  <recv request="ACK" optional="true" timeout="1000" ontimeout="end" />
  <label id="end" />
</scenario>
"""


@needs_pjsua2
@needs_sipp
@pytest.mark.parametrize("password,answered", [("pw", True), ("bad", False)])
def test_call_digest_auth_against_sipp(tmp_path, password, answered):
    """call mode answers a 401 challenge on INVITE with the given credentials."""
    scen = tmp_path / "uas_auth.xml"
    scen.write_text(UAS_AUTH_XML)
    port = free_port()
    rtp_port = free_port(step_free=(0, 1, 2, 3))
    sipp = None
    try:
        sipp = subprocess.Popen(
            [SIPP, "-sf", str(scen), "-i", HOST, "-p", str(port), "-mi", HOST, "-mp", str(rtp_port),
             "-rtp_echo", "-m", "1", "-nostdin", "-timeout", "10s"],
            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        wait_udp_bound(port, sipp)
        rc, res, err = run_peer(
            ["call", "--uri", f"sip:echo@{HOST}:{port}", "--user", "bob", "--password", password,
             "--duration", "0.5", "--timeout", "8"], timeout=20)
        assert res["answered"] is answered, (res, err[-2000:])
        if answered:
            assert rc == 0 and res["status_code"] == 200 and res["error"] is None, res
            sipp.wait(timeout=5)
            assert sipp.returncode == 0, _drain(sipp)
        else:
            assert rc == 1 and res["status_code"] == 403, res
    finally:
        kill(sipp)
