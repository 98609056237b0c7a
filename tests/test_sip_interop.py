"""The running server against sipp (Debian sip-tester) and raw sockets: echo test, bad input."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness import RunningServer, free_port

pytestmark = pytest.mark.interop


def run_sipp(sipp: str, server: RunningServer, cwd: Path, *args: str, timeout: float = 60) -> tuple[int, str]:
    port = free_port()
    host = f"[{server.host}]" if ":" in server.host else server.host
    cmd = [sipp, f"{host}:{server.sip_port}", "-i", server.host, "-p", str(port), "-nostdin",
           "-timeout", str(int(timeout - 5)), "-timeout_error", "-trace_stat", "-trace_err", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    return out.returncode, out.stdout + out.stderr


def sipp_counts(cwd: Path) -> dict[str, int]:
    """Final cumulative counters from sipp's -trace_stat CSV."""
    files = sorted(cwd.glob("*_.csv"))
    assert files, "sipp wrote no statistics"
    lines = files[-1].read_text().splitlines()
    header, last = lines[0].split(";"), lines[-1].split(";")
    row = dict(zip(header, last))
    return {k: int(row[k]) for k in ("SuccessfulCall(C)", "FailedCall(C)", "TotalCallCreated")}


def test_sipp_uac_100_calls_at_20_cps_udp(server: RunningServer, sipp: str, tmp_path: Path) -> None:
    rc, out = run_sipp(sipp, server, tmp_path, "-sn", "uac", "-s", "echo", "-m", "100", "-r", "20", "-l", "30")
    counts = sipp_counts(tmp_path)
    assert rc == 0, out[-3000:]
    assert counts["SuccessfulCall(C)"] == 100 and counts["FailedCall(C)"] == 0
    server.wait_log("ended: remote-bye", count=100)
    assert server.status()["calls_active"] == 0


def test_sipp_uac_over_tcp(server: RunningServer, sipp: str, tmp_path: Path) -> None:
    rc, out = run_sipp(sipp, server, tmp_path, "-t", "t1", "-sn", "uac", "-s", "echo", "-m", "20", "-r", "10")
    assert rc == 0, out[-3000:]
    assert sipp_counts(tmp_path)["SuccessfulCall(C)"] == 20


def test_sipp_ipv6(server_factory, sipp: str, tmp_path: Path) -> None:
    srv = server_factory(host="::1", transports=("udp",))
    rc, out = run_sipp(sipp, srv, tmp_path, "-sn", "uac", "-s", "echo", "-m", "5", "-r", "5")
    assert rc == 0, out[-3000:] + srv.log_text()[-3000:]
    assert sipp_counts(tmp_path)["SuccessfulCall(C)"] == 5


def test_dialplan_reject_and_not_yet_available(server: RunningServer, sipp: str, tmp_path: Path) -> None:
    # unknown number → 404 (dial plan '*' rule); the sipp uac scenario counts it as failed
    rc, _ = run_sipp(sipp, server, tmp_path, "-sn", "uac", "-s", "nobody", "-m", "1")
    assert rc != 0
    server.wait_log(r"to nobody .*-> reject")
    server.wait_log(r"ended: rejected \(404\)")


# -- raw datagrams: bad input -----------------------------------------------------------

def udp_exchange(server: RunningServer, data: bytes, wait: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(wait)
        s.sendto(data, (server.host, server.sip_port))
        try:
            return s.recv(65535)
        except socket.timeout:
            return None


def request(method: str = "OPTIONS", uri: str = "sip:echo@127.0.0.1", *, version: str = "SIP/2.0",
            drop: str = "", extra: str = "", cseq_method: str | None = None, mf: str = "70") -> bytes:
    headers = {
        "Via": f"SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bK{time.monotonic_ns()}",
        "From": "<sip:tester@127.0.0.1>;tag=1",
        "To": "<sip:echo@127.0.0.1>",
        "Call-ID": f"bad-{time.monotonic_ns()}@test",
        "CSeq": f"1 {cseq_method or method}",
        "Max-Forwards": mf,
    }
    lines = [f"{method} {uri} {version}"] + [f"{k}: {v}" for k, v in headers.items() if k != drop]
    return ("\r\n".join(lines) + "\r\n" + extra + "Content-Length: 0\r\n\r\n").encode()


def status_line(data: bytes | None) -> str:
    assert data is not None, "no response"
    return data.split(b"\r\n", 1)[0].decode()


@pytest.mark.parametrize("kwargs, expect", [
    ({"drop": "Call-ID"}, r"^SIP/2.0 400 .*Call-ID"),
    ({"drop": "From"}, r"^SIP/2.0 400 .*From"),
    ({"cseq_method": "BYE"}, r"^SIP/2.0 400 .*CSeq"),
    ({"mf": "999"}, r"^SIP/2.0 400 .*Max-Forwards"),
    ({"extra": "Content-Type: application/sdp\r\nContent-Length: 50\r\n"}, r"^SIP/2.0 400 .*Content-Length"),
    ({"version": "SIP/3.0"}, r"^SIP/2.0 505 "),
    ({"uri": "http://example.com/x"}, r"^SIP/2.0 416 "),
    ({"method": "FOO"}, r"^SIP/2.0 501 "),
    ({"method": "SUBSCRIBE"}, r"^SIP/2.0 405 "),
    ({"method": "BYE"}, r"^SIP/2.0 481 "),
    ({}, r"^SIP/2.0 200 "),
])
def test_bad_requests_get_a_clear_answer(server: RunningServer, kwargs: dict, expect: str) -> None:
    answer = udp_exchange(server, request(**kwargs))
    assert re.search(expect, status_line(answer)), status_line(answer)


def test_garbage_is_dropped_and_counted_and_server_survives(server: RunningServer) -> None:
    for junk in (b"\x00\xff" * 50, b"HELLO\r\n\r\n", b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n",
                 b"INVITE sip:x@y SIP/2.0\r\n" + b"X: " + b"a" * 60000, "Ünïcode ✓".encode()):
        assert udp_exchange(server, junk, wait=0.3) is None
    # well-formed responses that match nothing are dropped too: one with our sent-by but an
    # unknown branch (stray), one whose Via is not ours at all (§18.1.2)
    for via in (f"127.0.0.1:{server.sip_port}", "127.0.0.1:9"):
        stray = (f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bKnope\r\nFrom: <sip:a@b>;tag=1\r\n"
                 "To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode()
        assert udp_exchange(server, stray, wait=0.3) is None
    assert status_line(udp_exchange(server, request())).startswith("SIP/2.0 200")
    st = server.status()
    assert st["transport"].get("dropped_malformed", 0) + st["transport"].get("dropped_oversize", 0) >= 4
    assert st["sip"].get("stray_response", 0) == 1 and st["sip"].get("foreign_via_response", 0) == 1
    assert server.proc.poll() is None


def test_unknown_source_rejected_or_dropped(server_factory) -> None:
    trunks = '[trunks.carrier]\nallow = ["192.0.2.0/24"]\n'
    plan = '[[dialplan]]\nmatch = "echo"\naction = "echo"\n'
    srv = server_factory(trunks=trunks, dialplan=plan)
    assert status_line(udp_exchange(srv, request())).startswith("SIP/2.0 403")
    assert srv.status()["admission"]["unknown_source"] == 1
    quiet = server_factory(trunks=trunks, dialplan=plan, unknown_source="drop")
    assert udp_exchange(quiet, request(), wait=0.5) is None
    assert quiet.status()["admission"]["unknown_source"] == 1
