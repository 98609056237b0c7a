"""Trunks against sipp: outbound calls with proxy authentication, registration to a provider."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT, RunningServer, free_port

pytestmark = pytest.mark.interop
SIPP_DIR = ROOT / "tests" / "sipp"


def sipp_uas(sipp: str, scenario: str, port: int, cwd: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sipp, "-sf", str(SIPP_DIR / scenario), "-i", "127.0.0.1", "-p", str(port),
                             "-m", "1", "-nostdin", "-timeout", "30", "-timeout_error", "-trace_err", *extra],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def control(server: RunningServer, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "acd.cli", *args, "--config", str(server.config)],
                         capture_output=True, text=True, timeout=20, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def carrier_trunk(port: int, extra: str = "") -> str:
    return f"""
[trunks.local]
allow = ["127.0.0.2/32"]

[trunks.carrier]
allow = ["127.0.0.1/32"]
proxy = "sip:127.0.0.1:{port}"
from_user = "homeline"
{extra}
"""


def test_outbound_call_through_trunk_with_digest_auth(server_factory, sipp: str, tmp_path: Path) -> None:
    port = free_port()
    uas = sipp_uas(sipp, "uas_auth.xml", port, tmp_path, "-rtp_echo", "-mi", "127.0.0.1",
                   "-mp", str(free_port()))
    try:
        # outbound calls answer challenges with the trunk's credentials
        srv = server_factory(trunks=carrier_trunk(port, 'username = "homeline"\npassword = "s3cret"\n'))
        reply = control(srv, "originate", "--trunk", "carrier", "--to", "5551234", "--duration", "1")
        assert reply["call_id"]
        out, _ = uas.communicate(timeout=30)
        assert uas.returncode == 0, out[-3000:]
        srv.wait_log(r"call .* connected")
        srv.wait_log(r"ended: local-bye")
    finally:
        uas.kill()


def test_registration_refresh_and_unregister_on_shutdown(server_factory, sipp: str, tmp_path: Path) -> None:
    port = free_port()
    uas = sipp_uas(sipp, "register_uas.xml", port, tmp_path)
    try:
        srv: RunningServer = server_factory(trunks=carrier_trunk(
            port, '[trunks.carrier.register]\nusername = "homeline"\npassword = "s3cret"\nexpires = 300\n'))
        srv.wait_log(r"trunk carrier registration: registered \(expires 120 s\)", timeout=10)
        status = srv.status()["trunks"]["carrier"]["registration"]
        assert status["state"] == "registered" and status["last_status"] == 200
        assert srv.stop(signal.SIGTERM) == 0
        out, _ = uas.communicate(timeout=20)
        assert uas.returncode == 0, out[-3000:]  # the scenario checked the Expires: 0 un-REGISTER
    finally:
        uas.kill()


def test_options_keepalive_reports_down_then_status(server_factory) -> None:
    port = free_port()  # nothing listens there
    srv = server_factory(trunks=carrier_trunk(port, "options_interval = 1\n"),
                         sip_extra="[sip.timers]\nt1_ms = 20\nt2_ms = 200\nt4_ms = 500\n")
    srv.wait_log(r"trunk carrier keepalive: down", timeout=10)
    assert srv.status()["trunks"]["carrier"]["keepalive"]["state"] == "down"
