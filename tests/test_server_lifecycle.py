"""Server lifecycle: graceful drain on SIGTERM, status, CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import ROOT, RunningServer, free_port
from tests.test_sip_interop import request, status_line, udp_exchange

pytestmark = pytest.mark.interop


def sipp_call(sipp: str, srv: RunningServer, cwd: Path, hold_ms: int) -> subprocess.Popen:
    return subprocess.Popen([sipp, f"{srv.host}:{srv.sip_port}", "-sn", "uac", "-s", "echo", "-m", "1",
                             "-d", str(hold_ms), "-i", "127.0.0.1", "-p", str(free_port()), "-nostdin",
                             "-timeout", "30", "-timeout_error"],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigterm_drains_calls_and_refuses_new_ones(server: RunningServer, sipp: str, tmp_path: Path) -> None:
    call = sipp_call(sipp, server, tmp_path, 3000)
    server.wait_log(r"call .* connected")
    server.proc.send_signal(signal.SIGTERM)
    server.wait_log(r"draining: 1 call\(s\) in progress")
    invite = request("INVITE", f"sip:echo@127.0.0.1:{server.sip_port}")
    answer = udp_exchange(server, invite)
    while answer is not None and status_line(answer).startswith("SIP/2.0 100"):
        answer = udp_exchange(server, invite)  # 100 Trying first; the final follows
    assert answer is not None
    assert status_line(answer).startswith("SIP/2.0 503")
    assert b"Retry-After:" in answer
    out, _ = call.communicate(timeout=20)
    assert call.returncode == 0, out[-2000:]  # the call in progress ended normally
    assert server.proc.wait(15) == 0
    assert "stopped" in server.log_text()


def test_drain_time_over_hangs_up_remaining_calls(server_factory, sipp: str, tmp_path: Path) -> None:
    srv = server_factory()  # drain_seconds = 10 in the harness; the call would last 60 s
    call = sipp_call(sipp, srv, tmp_path, 60000)
    srv.wait_log(r"call .* connected")
    started = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(30) == 0
    assert 9 < time.monotonic() - started < 20
    assert "drain time over: hanging up 1 call(s)" in srv.log_text()
    assert "ended: local-bye" in srv.log_text()
    call.wait(20)


def test_status_and_cli(server: RunningServer) -> None:
    st = server.status()
    assert st["accepting"] is True and st["calls_active"] == 0
    assert st["trunks"]["local"]["inbound"] == "by source address"
    version = subprocess.run([sys.executable, "-m", "acd.cli", "--version"], capture_output=True, text=True,
                             cwd=ROOT)
    assert version.returncode == 0 and "Homeline" in version.stdout
    ok = subprocess.run([sys.executable, "-m", "acd.cli", "check-config", str(ROOT / "config" / "demo.toml")],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and ": ok" in ok.stdout


def test_check_config_names_file_key_and_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[sip]\nunknown_source = "maybe"\n')
    out = subprocess.run([sys.executable, "-m", "acd.cli", "check-config", str(bad)], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 1
    assert str(bad) in out.stderr and "sip.unknown_source" in out.stderr and "maybe" in out.stderr
    assert "Traceback" not in out.stderr


def test_status_without_server_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[server]\ndata_dir = "{tmp_path}/nodata"\n')
    out = subprocess.run([sys.executable, "-m", "acd.cli", "status", "--config", str(cfg)], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 1 and "server not running" in out.stderr and "Traceback" not in out.stderr


def _tls_peer_fingerprint(port: int) -> str:
    import hashlib
    import socket
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def test_tls_uses_configured_certificate(server_factory, tmp_path: Path) -> None:
    from acd.tlscert import ensure_self_signed, fingerprint

    cert, key = ensure_self_signed(tmp_path / "operator-certs", names=("sip.example.test",))
    srv = server_factory(tls_cert=f'cert = "{cert}"\nkey = "{key}"\n')
    assert _tls_peer_fingerprint(srv.tls_port) == fingerprint(cert)
    assert not (srv.data_dir / "tls" / "selfsigned.crt").exists()


def test_tls_self_signed_generated_once_and_reused(server_factory) -> None:
    srv = server_factory()
    first = _tls_peer_fingerprint(srv.tls_port)
    cert = srv.data_dir / "tls" / "selfsigned.crt"
    assert cert.exists() and first in srv.log_text()  # the fingerprint is logged for pinning
    srv.stop()
    from tests.harness import start_server

    again = start_server(srv.config.parent)  # same directory, same data_dir
    try:
        assert _tls_peer_fingerprint(again.tls_port) == first
    finally:
        again.stop()


def test_demo_config_serves_the_echo_test(sipp: str, tmp_path: Path) -> None:
    """config/demo.toml as shipped (fixed ports 5060/5061): what `make demo` runs."""
    proc = subprocess.Popen([sys.executable, "-m", "acd.cli", "serve", "--config", "config/demo.toml"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        seen = ""
        while "Homeline ready" not in seen and time.monotonic() < deadline and proc.poll() is None:
            seen += proc.stdout.readline()
        assert "Homeline ready" in seen, seen
        out = subprocess.run([sipp, "127.0.0.1:5060", "-sn", "uac", "-s", "echo", "-m", "5", "-r", "5",
                              "-i", "127.0.0.1", "-p", str(free_port()), "-nostdin", "-timeout", "20",
                              "-timeout_error"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout[-2000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
