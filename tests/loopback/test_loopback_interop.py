"""``acd loopback`` against the running server: pjsua2 workers call the echo test and a queue
answered by a robot agent, with and without packet loss, one call and twenty."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from acd.loopback import measure as m
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
    """The echo test's own round trip is measured on the wire, at the tester's edge (21-40 ms here).
    The acoustic round trip (what the tester hears) adds pjsua's own buffering in steps of its
    20 ms bridge tick, with one packet of slack in its jitter buffer: 65 ms, or 85 ms when the
    buffer's start falls one tick later; more would mean the echo itself got slower."""
    rc, res, err = loopback(server.uri("echo"), cache, "--codec", "pcmu", "--wire", "--report",
                            str(tmp_path / "r.html"))
    call, s = res["calls"][0], res["summary"]
    print(f"PESQ {call['pesq']} vs ceiling {call['pesq_ceiling']}, round trip on the wire {call['rtt_wire_ms']} ms, "
          f"acoustic {call['rtt_ms']}..{call['rtt_max_ms']} ms, setup {call['setup_ms']} ms")
    assert rc == 0 and res["verdict"]["ok"], (res["verdict"], call.get("error"))
    assert call["codec"] == "PCMU/8000" and call["status_code"] == 200
    assert call["pesq"] >= call["pesq_ceiling"] - 0.15
    assert 0 < call["rtt_wire_ms"] <= 60
    assert call["rtt_wire_ms"] < call["rtt_ms"] <= call["rtt_max_ms"] <= 85
    assert 0 < call["setup_ms"] < 500 and call["pdd_ms"] <= call["setup_ms"]
    assert call["impaired_pct"] < 2
    assert s["pesq_median"] == call["pesq"] and s["failed"] == 0 and s["pesq_ceiling"] == call["pesq_ceiling"]
    assert s["rtt_ms_median"] == call["rtt_ms"] and s["setup_ms_median"] == call["setup_ms"]
    assert "loopback: 1/1 calls done" in err  # progress on stderr
    page = (tmp_path / "r.html").read_text()
    assert page.count("<svg") == 3 and "PASS" in page


def test_loss_is_concealed_not_left_silent(server: RunningServer, cache: Path) -> None:
    """5 % of our RTP dropped by the relay: the server's jitter buffer conceals the gaps
    (G.711 Appendix I style); the score drops, but stays clearly above the same loss with the
    gaps left silent, computed offline on the same speech through the same codec."""
    rc, res, _ = loopback(server.uri("echo"), cache, "--loss", "5", "--seed", "11")
    call, s = res["calls"][0], res["summary"]
    ref = m.load_reference(m.reference_speech(cache), 8000)[:call["compared_samples"]]
    lost = call["relay"]["up"]["dropped"] / call["relay"]["up"]["packets"]
    silent = m.gap_score(ref, m.codec_spec("pcmu"), lost, conceal=False)
    print(f"loss {100 * lost:.1f} %: PESQ {call['pesq']} (ceiling {call['pesq_ceiling']}), gaps silent {silent}, "
          f"offline concealed {s['pesq_concealed_offline']}, impaired {call['impaired_pct']} %")
    assert 0.03 <= lost <= 0.08 and call["relay"]["down"]["dropped"] == 0  # only what we send
    assert call["pesq"] < call["pesq_ceiling"] - 0.3  # it drops...
    assert call["pesq"] > silent + 0.25  # ...but concealment keeps it clearly above silent gaps
    assert s["pesq_silent_gaps"] == pytest.approx(silent, abs=0.01)
    assert 0.5 * 100 * lost <= call["impaired_pct"] <= 2.5 * 100 * lost
    assert rc == 1 and not res["verdict"]["ok"]  # 0.3 below the ceiling: the verdict says so


def test_jitter_is_absorbed_by_the_server_jitter_buffer(server: RunningServer, cache: Path) -> None:
    """Our RTP held 0 to 40 ms at random (reordered at times): the server's adaptive jitter
    buffer waits longer, so the speech comes back nearly whole (its adaptation may cost a
    frame or two: within the verdict's 0.3), later."""
    rc, res, _ = loopback(server.uri("echo"), cache, "--jitter", "20", "--seed", "4", "--max-rtt-ms", "200")
    call = res["calls"][0]
    print(f"jitter 20 ms: PESQ {call['pesq']} (ceiling {call['pesq_ceiling']}), round trip {call['rtt_ms']}.."
          f"{call['rtt_max_ms']} ms (wire {call['rtt_wire_ms']} ms), impaired {call['impaired_pct']} %")
    assert rc == 0, res["verdict"]
    assert call["relay"]["up"]["dropped"] == 0 and call["relay"]["up"]["packets"] > 400
    assert call["pesq"] >= call["pesq_ceiling"] - 0.3 and call["impaired_pct"] < 2
    assert call["rtt_ms"] >= 85  # 65 ms without jitter: the server's buffer grew to absorb it


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
    assert rc == 0, res["verdict"]
    assert call["pesq"] >= call["pesq_ceiling"] - 0.15
    assert call["rtt_wire_ms"] <= 60 and call["rtt_ms"] <= 100  # see the echo test about the acoustic one
    srv.wait_log(r"call \S+ connected to agent robot")
