"""The running server against pjsua2 (PJSIP), an independent SIP stack: audio is proven by
the frequency of what comes back, not by packet counts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.audio import dominant_frequency, read_wav, rms_dbfs, write_tone_wav
from tests.harness import PEER, ROOT, RunningServer, free_port, run_peer

pytestmark = pytest.mark.interop

DIGEST_TRUNK = '[trunks.carrier]\nallow = []\nusername = "carrier"\npassword = "pw-123"\n'


@pytest.fixture
def digest_server(server_factory) -> RunningServer:
    return server_factory(trunks=DIGEST_TRUNK)


def tone_call(srv: RunningServer, tmp: Path, *, freq: float, transport: str = "udp", codec: str = "PCMU",
              extra: tuple[str, ...] = (), duration: float = 2.0) -> tuple[int, dict, float, float]:
    rate = 16000 if codec == "G722" else 8000
    tone, back = tmp / f"tone{freq:.0f}.wav", tmp / f"back-{transport}-{codec}.wav"
    write_tone_wav(str(tone), freq, duration + 1, rate=rate)
    rc, res = run_peer("call", "--uri", srv.uri("echo", transport), "--transport", transport,
                       "--codec", codec, "--play", str(tone), "--record", str(back),
                       "--duration", str(duration), *extra)
    if rc != 0:
        return rc, res, 0.0, -120.0
    samples, sr = read_wav(str(back))
    return rc, res, dominant_frequency(samples, sr), rms_dbfs(samples[sr // 2:])


@pytest.mark.parametrize("transport, codec, freq", [
    ("udp", "PCMU", 700.0), ("udp", "PCMA", 950.0), ("tcp", "G722", 1100.0), ("tls", "PCMU", 1300.0),
])
def test_digest_caller_hears_its_own_tone(digest_server: RunningServer, tmp_path: Path,
                                          transport: str, codec: str, freq: float) -> None:
    rc, res, heard, level = tone_call(digest_server, tmp_path, freq=freq, transport=transport, codec=codec,
                                      extra=("--user", "carrier", "--password", "pw-123"))
    assert rc == 0, res
    assert res["codec"].startswith(codec)
    assert abs(heard - freq) < 15, heard
    assert level > -30, level  # a real signal, not near-silence
    digest_server.wait_log(r"on trunk carrier -> echo")


def test_wrong_password_is_refused(digest_server: RunningServer) -> None:
    rc, res = run_peer("call", "--uri", digest_server.uri("echo"), "--user", "carrier", "--password", "nope",
                       "--duration", "1")
    assert rc == 1 and res["status_code"] == 401 and not res["answered"]
    assert digest_server.status()["admission"]["auth_failed"] >= 1


def test_hold_and_unhold_by_reinvite(server: RunningServer, tmp_path: Path) -> None:
    rc, res, heard, _ = tone_call(server, tmp_path, freq=800.0, duration=3.0,
                                  extra=("--hold-at", "1", "--unhold-at", "2"))
    assert rc == 0, res
    assert res["hold"]["code"] == 200 and res["hold"]["answer_dir"] == "recvonly"  # RFC 3264 §6.1
    assert res["unhold"]["code"] == 200 and res["unhold"]["answer_dir"] == "sendrecv"
    assert abs(heard - 800.0) < 15
    server.wait_log(r"call .* on hold")
    server.wait_log(r"call .* resumed")


def answer_peer(tmp: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """A pjsua2 UA answering on a free port; returns once it listens."""
    port = free_port()
    ready = tmp / "ready.json"
    peer = subprocess.Popen([sys.executable, str(PEER), "answer", "--local-port", str(port), "--calls", "1",
                             "--ready-file", str(ready), *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for _ in range(100):
        if ready.exists():
            break
        time.sleep(0.1)
    return peer, port


def originate(srv: RunningServer, *args: str) -> None:
    out = subprocess.run([sys.executable, "-m", "acd.cli", "originate", "--config", str(srv.config),
                          "--trunk", "local", "--to", "agent7", *args],
                         capture_output=True, text=True, cwd=ROOT, timeout=20)
    assert out.returncode == 0, out.stderr


def peer_calls(peer: subprocess.Popen, timeout: float) -> list[dict]:
    stdout, _ = peer.communicate(timeout=timeout)
    result = json.loads(stdout.strip().splitlines()[-1])
    return result.get("calls", []) if isinstance(result, dict) else result


def trunk_to(port: int) -> str:
    return f'[trunks.local]\nallow = ["127.0.0.0/8"]\nproxy = "sip:127.0.0.1:{port}"\n'


def test_server_hangs_up_first_via_originate_to_pjsua(server_factory, tmp_path: Path) -> None:
    """Outbound: the server dials a pjsua2 UA through a trunk and hangs up after 1 s."""
    peer, port = answer_peer(tmp_path, "--timeout", "20")
    try:
        srv = server_factory(trunks=trunk_to(port))
        originate(srv, "--duration", "1")
        calls = peer_calls(peer, 20)
        assert calls and calls[0]["answered"], calls
        srv.wait_log(r"ended: local-bye")
    finally:
        peer.kill()


def test_unanswered_outbound_call_is_cancelled_after_ring_timeout(server_factory, tmp_path: Path) -> None:
    peer, port = answer_peer(tmp_path, "--ring-ms", "20000", "--timeout", "25")  # rings for 20 s
    try:
        srv = server_factory(trunks=trunk_to(port))
        originate(srv, "--ring-timeout", "1.5")
        srv.wait_log(r"not answered in time, cancelling")
        srv.wait_log(r"ended: cancelled \(487\)")
        calls = peer_calls(peer, 25)
        assert calls and not calls[0]["answered"], calls
    finally:
        peer.kill()
