"""``acd loopback`` against the running server: pjsua2 workers call the echo test and a queue
answered by a robot agent, with and without packet loss, one call and twenty."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import sys
from pathlib import Path

import pytest

from acd.loopback import measure as m
from acd.store.passwords import hash_password
from tests.harness import ROOT, RunningServer

pytestmark = pytest.mark.interop

ROBOT_ACD = """
[queues.support]

[agents.robot]
queues = {support = 1}
test = true
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("loopback-cache")
    m.reference_speech(path)
    return path


def loopback(uri: str, cache: Path, *args: str, timeout: float = 55.0) -> tuple[int, dict, str]:
    out = subprocess.run([sys.executable, "-m", "acd.cli", "loopback", uri, "--json", "--cache-dir", str(cache),
                          *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.stdout.strip(), out.stderr[-3000:]
    return out.returncode, json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def test_echo_scores_at_the_g711_ceiling_with_a_short_round_trip(server: RunningServer, cache: Path,
                                                                 tmp_path: Path) -> None:
    """Within 0.15 of the G.711 ceiling with a round trip of at most 60 ms on loopback. The round
    trip is acoustic: what the tester hears back through pjsua's own buffers, which count in
    steps of its 20 ms bridge tick. The echo returns the audio 14-17 ms after it arrived (it
    ticks on the caller's phase, docs/architecture.md), just inside pjsua's next tick: 45 ms;
    one tick more (65 ms) would mean the echo held the audio longer than that."""
    rc, res, err = loopback(server.uri("echo"), cache, "--codec", "pcmu", "--wire", "--report",
                            str(tmp_path / "r.html"))
    call, s = res["calls"][0], res["summary"]
    print(f"PESQ {call['pesq']} vs ceiling {call['pesq_ceiling']}, round trip on the wire {call['rtt_wire_ms']} ms, "
          f"acoustic {call['rtt_ms']}..{call['rtt_max_ms']} ms, setup {call['setup_ms']} ms")
    assert rc == 0 and res["verdict"]["ok"], (res["verdict"], call.get("error"))
    assert call["codec"] == "PCMU/8000" and call["status_code"] == 200
    assert call["pesq"] >= call["pesq_ceiling"] - 0.15
    assert 0 < call["rtt_wire_ms"] <= 20
    assert call["rtt_wire_ms"] < call["rtt_ms"] <= 60 and call["rtt_max_ms"] <= 65
    assert 0 < call["setup_ms"] < 500 and call["pdd_ms"] <= call["setup_ms"]
    assert call["impaired_pct"] < 2
    assert s["pesq_median"] == call["pesq"] and s["failed"] == 0 and s["pesq_ceiling"] == call["pesq_ceiling"]
    assert s["rtt_ms_median"] == call["rtt_ms"] and s["setup_ms_median"] == call["setup_ms"]
    assert "loopback: 1/1 calls done" in err  # progress on stderr
    page = (tmp_path / "r.html").read_text()
    assert page.count("<svg") == 3 and "PASS" in page


def test_quality_falls_with_loss_but_stays_above_silent_gaps(server: RunningServer, cache: Path,
                                                             tmp_path: Path) -> None:
    """A sweep over 0, 5 and 10 % of our RTP dropped by the relay (the three steps at once, one
    call each): without loss the echo scores at the ceiling; with it the server's jitter buffer
    conceals the gaps (G.711 Appendix I style): the score falls as the loss rises, but stays
    clearly above the same loss with the gaps left silent, computed offline on the same speech
    through the same codec."""
    rc, res, err = loopback(server.uri("echo"), cache, "--sweep-loss", "0,5,10", "--seed", "11",
                            "--sweep-parallel", "3", "--report", str(tmp_path / "sweep.html"), timeout=90)
    rows = res["sweep"]
    for r in rows:
        print(f"loss {r['loss_pct']:g} % ({r['loss_measured_pct']} % measured): PESQ {r['pesq_median']} (ceiling "
              f"{r['pesq_ceiling']}), gaps silent {r['pesq_silent_gaps']}, concealed offline "
              f"{r['pesq_concealed_offline']}, round trip {r['rtt_ms_median']}..{r['rtt_max_ms_median']} ms, "
              f"impaired {r['impaired_pct_median']} %")
    assert [(r["loss_pct"], r["jitter_ms"]) for r in rows] == [(0, 0), (5, 0), (10, 0)]
    assert all(r["calls"] == 1 and r["failed"] == 0 and r["pesq_median"] is not None for r in rows), rows
    assert [(c["step"], c["loss_pct"]) for c in res["calls"]] == [(1, 0), (2, 5), (3, 10)]
    clean, five, ten = rows
    assert clean["pesq_median"] >= clean["pesq_ceiling"] - 0.15 and clean["pesq_silent_gaps"] is None
    assert five["pesq_median"] < clean["pesq_median"] and ten["pesq_median"] <= five["pesq_median"] + 0.1
    for r in (five, ten):  # concealment keeps it clearly above silent gaps
        assert r["pesq_median"] > r["pesq_silent_gaps"] + 0.25, r
    # the relay dropped what was asked, only what we send; gaps silent is scored with what it dropped
    calls = res["calls"]
    for c, (lo, hi) in zip(calls[1:], ((0.03, 0.08), (0.07, 0.14))):
        up, down = c["relay"]["up"], c["relay"]["down"]
        assert lo <= up["dropped"] / up["packets"] <= hi and down["dropped"] == 0
    assert calls[2]["relay"]["up"]["dropped"] > calls[1]["relay"]["up"]["dropped"]
    lost = calls[1]["relay"]["up"]["dropped"] / calls[1]["relay"]["up"]["packets"]
    ref = m.load_reference(m.reference_speech(cache), 8000)[:calls[1]["compared_samples"]]
    assert five["pesq_silent_gaps"] == pytest.approx(m.gap_score(ref, m.codec_spec("pcmu"), lost, conceal=False),
                                                     abs=0.01)
    assert 0.5 * 100 * lost <= calls[1]["impaired_pct"] <= 2.5 * 100 * lost
    # the verdict is that of the clean step; 5 % is more than 0.3 below the ceiling, and the report says so
    assert rc == 0 and res["verdict"]["ok"] and res["verdict"]["step"] == 1, res["verdict"]
    assert five["pesq_median"] < five["pesq_ceiling"] - 0.3
    assert "loopback: step 2/3, loss 5 %" in err
    # the server's own end-of-call lines report each call's loss over the whole call
    losses = sorted(float(x) for x in re.findall(r"quality: MOS [\d.]+, loss ([\d.]+) %", server.log_text()))
    assert len(losses) == 3 and losses[0] == 0.0, losses
    assert 2.5 <= losses[1] <= 8.5 and 6.5 <= losses[2] <= 14.5, losses
    page = (tmp_path / "sweep.html").read_text()
    limit = clean["pesq_ceiling"] - 0.3
    assert "Quality vs impairment" in page and "<title>PESQ vs packet loss</title>" in page
    assert page.count("<svg") == 4 and page.count('<polyline class="sw sw-gap"') == 1
    assert f"PESQ falls below {limit:.2f} (the codec&#x27;s ceiling − 0.3) from 5 % loss." in page


def test_loss_on_both_legs_is_concealed_on_both(server: RunningServer, cache: Path) -> None:
    """5 % loss, half of it each way: the server conceals what it did not receive and echoes it;
    the tester (pjsua, its buffer a frame deeper so that a gap is seen before it is due) conceals
    what the echo lost. Together clearly above the same loss left silent."""
    rc, res, _ = loopback(server.uri("echo"), cache, "--loss", "2.5", "--impair", "both", "--seed", "3",
                          "--min-pesq-margin", "1.5")
    call, s = res["calls"][0], res["summary"]
    print(f"loss 2.5 % each way ({s['loss_measured_pct']} % in all): PESQ {call['pesq']} (ceiling "
          f"{call['pesq_ceiling']}), gaps silent {s['pesq_silent_gaps']}, concealed offline "
          f"{s['pesq_concealed_offline']}, round trip {call['rtt_ms']}..{call['rtt_max_ms']} ms")
    assert rc == 0, (res["verdict"], [c.get("error") for c in res["calls"]])
    for leg in ("up", "down"):
        counts = call["relay"][leg]
        assert 0.01 <= counts["dropped"] / counts["packets"] <= 0.045, (leg, counts)
    assert 3.5 <= s["loss_measured_pct"] <= 7
    assert call["pesq"] > s["pesq_silent_gaps"] + 0.25, (call["pesq"], s["pesq_silent_gaps"])


def test_jitter_is_absorbed_by_the_server_jitter_buffer(server: RunningServer, cache: Path) -> None:
    """Our RTP held 0 to 40 ms at random (reordered at times): the server's adaptive jitter
    buffer waits longer, so the speech comes back nearly whole (its adaptation may cost a
    frame or two: within the verdict's 0.3), later."""
    rc, res, _ = loopback(server.uri("echo"), cache, "--jitter", "20", "--seed", "4", "--max-rtt-ms", "200")
    call = res["calls"][0]
    print(f"jitter 20 ms: PESQ {call['pesq']} (ceiling {call['pesq_ceiling']}), round trip {call['rtt_ms']}.."
          f"{call['rtt_max_ms']} ms (wire {call['rtt_wire_ms']} ms), impaired {call['impaired_pct']} %")
    assert rc == 0, (res["verdict"], [c.get("error") for c in res["calls"]])
    assert call["relay"]["up"]["dropped"] == 0 and call["relay"]["up"]["packets"] > 400
    assert call["pesq"] >= call["pesq_ceiling"] - 0.3 and call["impaired_pct"] < 2
    assert call["rtt_ms"] >= 65  # 45 ms without jitter: the server's buffer grew to absorb it


def test_twenty_calls_eight_at_a_time_are_all_measured(server: RunningServer, cache: Path) -> None:
    rc, res, err = loopback(server.uri("echo"), cache, "--calls", "20", "--concurrency", "8", "--rate", "4",
                            "--duration", "8", "--min-pesq-margin", "0.3", "--max-rtt-ms", "150")
    calls, s = res["calls"], res["summary"]
    print(f"20 calls: PESQ median {s['pesq_median']} min {s['pesq_min']} (ceiling {s['pesq_ceiling']}), "
          f"round trip median {s['rtt_ms_median']} p95 {s['rtt_ms_p95']} max {s['rtt_max_ms']} ms, "
          f"setup median {s['setup_ms_median']} p95 {s['setup_ms_p95']} ms, {s['elapsed_s']} s")
    assert [c["id"] for c in calls] == list(range(20))
    assert all(c["answered"] and c["pesq"] is not None and c["rtt_ms"] is not None for c in calls), \
        [c.get("error") for c in calls]
    assert {c["worker"] for c in calls} == {0, 1}  # two pjsua2 processes, four calls each at most
    assert s["failed"] == 0 and s["measured"] == 20 and rc == 0, res["verdict"]
    assert all(c["pesq"] >= c["pesq_ceiling"] - 0.3 for c in calls)
    assert err.count("calls done") >= 20


def test_queue_answered_by_a_robot_agent(server_factory, cache: Path) -> None:
    srv = server_factory(acd=ROBOT_ACD)
    rc, res, _ = loopback(srv.uri("support"), cache, "--lead-in", "1.0", "--wire")
    call = res["calls"][0]
    print(f"queue: PESQ {call['pesq']} vs {call['pesq_ceiling']}, round trip {call['rtt_ms']} ms "
          f"(wire {call['rtt_wire_ms']} ms), setup {call['setup_ms']} ms")
    assert rc == 0, (res["verdict"], [c.get("error") for c in res["calls"]])
    assert call["pesq"] >= call["pesq_ceiling"] - 0.15
    assert call["rtt_wire_ms"] <= 60 and call["rtt_ms"] <= 100  # see the echo test about the acoustic one
    srv.wait_log(r"call \S+ connected to agent robot")


def test_queue_answered_by_a_headless_softphone_echoing(server_factory, cache: Path, tmp_path: Path) -> None:
    """The other kind of test agent: ``softphone --headless --auto-answer --echo`` logged into the
    queue, so the loop runs through the whole agent path (the ACD, WebRTC to the agent and back).
    Its round trip carries Opus both ways, the softphone's playout cushion and its echo, so the
    verdict's limits are wider; what is proven is that the speech comes back whole through the
    agent's softphone."""
    srv = server_factory(acd=f"""
[queues.support]
wrapup_s = 0

[agents.alice]
queues = {{support = 5}}
password_hash = "{hash_password('alice-pw')}"
""")
    pw = tmp_path / "pw"
    pw.write_text("alice-pw\n")
    pw.chmod(0o600)
    err = tmp_path / "softphone.err"
    phone = subprocess.Popen(
        [sys.executable, "-m", "softphone.cli", "--headless", "--server", srv.web_url, "--user", "alice",
         "--password-file", str(pw), "--auto-answer", "--echo", "--calls", "1", "--json",
         "--ca-file", str(srv.data_dir / "tls" / "selfsigned.crt")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=err.open("w"), text=True,
        env=dict(os.environ, XDG_STATE_HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path)))
    try:
        deadline = time.monotonic() + 30
        while "available for calls" not in err.read_text():
            assert phone.poll() is None and time.monotonic() < deadline, err.read_text()[-2000:]
            time.sleep(0.1)
        rc, res, _ = loopback(srv.uri("support"), cache, "--lead-in", "1.5", "--min-pesq-margin", "0.8",
                              "--max-rtt-ms", "300")
        out, _ = phone.communicate(timeout=30)
    finally:
        if phone.poll() is None:
            phone.kill()
    call = res["calls"][0]
    print(f"softphone echo: PESQ {call['pesq']} vs {call['pesq_ceiling']}, round trip {call['rtt_ms']}.."
          f"{call['rtt_max_ms']} ms, impaired {call['impaired_pct']} %")
    assert rc == 0, (res["verdict"], call.get("error"))
    assert call["pesq"] >= call["pesq_ceiling"] - 0.8 and 60 < call["rtt_ms"] <= 300
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["calls_answered"] == 1 and summary["calls"][0]["quality"]["mos"] > 3.5, summary
    srv.wait_log(r"call \S+ connected to agent alice")
