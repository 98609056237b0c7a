"""Queued callback retries in the running server: the customer's phone is busy on the first
dial (a sipp UAS answering 486), the agent is freed, and the callback is dialled again after
``retry_after_s`` from its own place; the second dial is answered (sipp's UAS)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import PEER, ROOT, free_port
from tests.test_acd_server import ACD, agent

pytestmark = pytest.mark.interop
SIPP_DIR = Path(__file__).parent / "sipp"


def test_unreached_customer_is_dialled_again_then_connected(server_factory, sipp: str, tmp_path: Path) -> None:
    customer_port = free_port()
    busy = subprocess.Popen([sipp, "-sf", str(SIPP_DIR / "uas_busy.xml"), "-i", "127.0.0.1", "-p",
                             str(customer_port), "-m", "1", "-nostdin", "-timeout", "60", "-timeout_error"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    answering = None
    try:
        acd = ACD.replace("[queues.support]\n", "[queues.support]\nwrapup_s = 1\ncallback = {offer_after_s = 1, "
                          'key = "1", attempts = 2, retry_after_s = 10}\n')
        trunks = f'[trunks.local]\nallow = ["127.0.0.0/8"]\nproxy = "sip:127.0.0.1:{customer_port}"\n'
        srv = server_factory(acd=acd, trunks=trunks)
        agent(srv, "robot", "logout")
        out = subprocess.run([sys.executable, str(PEER), "call", "--uri", srv.uri("support"), "--codec", "PCMU",
                              "--id", "sip:5551234@127.0.0.1", "--dtmf", "1", "--dtmf-at", "3",
                              "--dtmf-seq", "1@13", "--duration", "25"],
                             cwd=ROOT, capture_output=True, text=True, timeout=40)
        assert out.returncode == 0 or "hangup_by" in out.stdout, out.stdout
        srv.wait_log(r"callback to \S+ scheduled in queue support")
        agent(srv, "alice", "login")
        agent(srv, "alice", "ready")
        srv.wait_log(r"offer call \S+ from queue support to agent alice")
        assert agent(srv, "alice", "answer")["state"] == "on-call"
        srv.wait_log(r"callback \S+: will be dialled again \(callback-retry\)", timeout=15)
        out_b, _ = busy.communicate(timeout=10)
        assert busy.returncode == 0, out_b[-2000:]  # the busy phone saw exactly one INVITE
        answering = subprocess.Popen([sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", str(customer_port), "-m", "1",
                                      "-nostdin", "-timeout", "60", "-timeout_error"], cwd=tmp_path,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        t_failed = time.monotonic()
        srv.wait_log(r"offer call \S+ from queue support to agent alice", timeout=20, count=2)
        assert time.monotonic() - t_failed > 7  # not before retry_after_s (10 s, minus log latency)
        assert agent(srv, "alice", "answer")["state"] == "on-call"
        srv.wait_log(r"callback \S+: customer answered", timeout=10)
        time.sleep(1)
        agent(srv, "alice", "hangup")
        out_a, _ = answering.communicate(timeout=20)
        assert answering.returncode == 0, out_a[-2000:]
        log = srv.wait_log(r"CDR CallRecord\(.*callback=True")
        assert re.search(r"\|support\|alice\|CALLBACKFAILED\|1\|2\|5551234", log)
        assert re.search(r"CDR CallRecord\(.*agent='alice'.*outcome='answered'.*callback_attempts=2", log)
    finally:
        busy.kill()
        if answering is not None:
            answering.kill()
