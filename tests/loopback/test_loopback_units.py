"""``acd loopback`` without a server: alignment, PESQ and its ceiling, the lost-audio estimate,
the relay's SDP/SIP handling and impairment on real sockets, the verdict and the HTML report,
and the sweep (steps, per-step rows, its plot) on fake per-step results."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from acd.loopback import measure as m
from acd.loopback.relay import Impairment, SipMessage, SipRelay, _via_destination, rewrite_sdp
from acd.loopback.cli import parse_steps
from acd.loopback.report import histogram_svg, render_html, sweep_svg, write_report
from acd.loopback.runner import (LoopbackOptions, Thresholds, combine_sweep, describe_step, judge, run_sweep,
                                 summarise, sweep_steps)
from media.prompt_build import write_wav
from tests.harness import ROOT

PCMU, G722 = m.codec_spec("pcmu"), m.codec_spec("g722")


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return m.reference_speech(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def ref8(speech: Path) -> np.ndarray:
    return m.load_reference(speech, 8000)


def test_reference_is_made_once_and_is_8_to_10_s_of_speech(speech: Path, tmp_path: Path) -> None:
    x, rate = m.load_reference(speech, 16000), 16000
    assert 8.0 <= len(x) / rate <= 10.0
    assert m.reference_speech(speech.parent) == speech  # cached: same file, not rebuilt
    assert speech.stat().st_mtime == m.reference_speech(speech.parent).stat().st_mtime


def test_ceiling_is_the_codec_s_own_score_and_below_the_identical_file(ref8: np.ndarray, speech: Path) -> None:
    identical = m.pesq_score(ref8, ref8, 8000, "nb")
    ceiling = m.ceiling_score(ref8, PCMU)
    assert identical is not None and ceiling is not None
    assert identical > 4.5  # field notes: the identical file scores 4.55
    assert 4.0 < ceiling < identical  # G.711 of espeak speech: 3.9..4.3 in the field notes
    assert abs(m.ceiling_score(ref8, m.codec_spec("pcma")) - ceiling) < 0.1  # A-law ~ µ-law
    wb = m.ceiling_score(m.load_reference(speech, 16000), G722)
    assert wb is not None and 3.0 < wb < 4.6


def test_align_finds_the_delay_and_never_a_negative_one(ref8: np.ndarray) -> None:
    back = m.codec_roundtrip(ref8, PCMU)
    rec = np.concatenate((np.zeros(1234, np.int16), back))
    lag, peak = m.align(ref8, rec, 8000)
    assert lag == 1234 and peak > 0.99
    early = back[400:]  # "recorded" ahead of what was played: no negative lag is reported
    lag, _ = m.align(ref8, early, 8000)
    assert lag >= 0


def _recording(tmp: Path, ref: np.ndarray, lead: int, delay: int, body: np.ndarray) -> Path:
    return write_wav(tmp / "rec.wav", np.concatenate((np.zeros(lead + delay, np.int16), body)), 8000)


def test_analyse_cuts_the_echo_delay_before_pesq(ref8: np.ndarray, tmp_path: Path) -> None:
    path = _recording(tmp_path, ref8, 4000, 360, m.codec_roundtrip(ref8, PCMU))
    res = m.analyse_recording(path, ref8, 4000, PCMU)
    assert res["error"] is None
    assert res["rtt_ms"] == res["rtt_max_ms"] == 45.0
    assert res["pesq"] == m.ceiling_score(ref8, PCMU)  # the codec alone: exactly its ceiling
    assert res["impaired_pct"] == 0.0


def test_a_jitter_buffer_step_shows_as_rtt_max(ref8: np.ndarray, tmp_path: Path) -> None:
    back = m.codec_roundtrip(ref8, PCMU)
    cut = 4 * 8000  # 20 ms more delay from 4 s on, as when a jitter buffer grows
    body = np.concatenate((back[:cut], np.zeros(160, np.int16), back[cut:]))
    res = m.analyse_recording(_recording(tmp_path, ref8, 4000, 360, body), ref8, 4000, PCMU)
    assert res["rtt_ms"] == 45.0 and res["rtt_max_ms"] == 65.0
    assert res["impaired_pct"] < 3  # one frame of silence, not everything after it


def test_lost_frames_are_estimated_and_concealment_beats_silence(ref8: np.ndarray, tmp_path: Path) -> None:
    n = -(-len(ref8) // 160)
    lost = np.zeros(n, bool)
    lost[np.random.default_rng(7).choice(n, n // 20, replace=False)] = True  # 5 %
    concealed = m.codec_roundtrip(ref8, PCMU, lost, conceal=True)
    res = m.analyse_recording(_recording(tmp_path, ref8, 4000, 200, concealed), ref8, 4000, PCMU)
    assert 2.0 <= res["impaired_pct"] <= 7.0  # about the 5 % (lost silence is not counted)
    silent = m.gap_score(ref8, PCMU, 0.05, conceal=False)
    plc = m.gap_score(ref8, PCMU, 0.05, conceal=True)
    ceiling = m.ceiling_score(ref8, PCMU)
    assert silent < plc < ceiling
    assert 2.4 < silent < 3.1  # field notes: 5 % of 20 ms frames zero-filled scored 2.72


def test_no_echo_is_an_error_not_a_score(ref8: np.ndarray, tmp_path: Path) -> None:
    noise = (np.random.default_rng(1).normal(0, 3000, len(ref8) + 8000)).astype(np.int16)
    res = m.analyse_recording(write_wav(tmp_path / "n.wav", noise, 8000), ref8, 4000, PCMU)
    assert res["pesq"] is None and "did not come back" in res["error"]
    assert "no recording" in m.analyse_recording(tmp_path / "missing.wav", ref8, 4000, PCMU)["error"]


def test_wire_round_trip_from_captured_rtp(ref8: np.ndarray) -> None:
    """Ours leave every 20 ms; the echo comes back in packets with other timestamps, its
    audio 320 samples (2 packets) later in their stream, each arriving 13 ms after a tick:
    the first sample of our packet i is in their packet i + 2, back 53 ms after it left."""
    from media.codecs import make_codec

    enc = make_codec("PCMU")
    frames = [ref8[i:i + 160] for i in range(0, len(ref8) - 160, 160)]
    up = [(0.02 * i, 1000 + 160 * i, 0, enc.encode(f)) for i, f in enumerate(frames)]
    echo = [np.zeros(160, np.int16)] * 2 + frames
    down = [(0.02 * j + 0.013, (7_000_000 + 160 * j) & 0xFFFFFFFF, 0, enc.encode(f)) for j, f in enumerate(echo)]
    down.insert(5, (0.1, 0, 101, b"\x01\x0a\x00\xa0"))  # telephone-event: ignored
    assert m.wire_round_trip({"up": up, "down": down}, PCMU) == 53.0
    assert m.wire_round_trip({"up": up, "down": []}, PCMU) is None
    noise = [(t, ts, pt, bytes(np.random.default_rng(ts).integers(0, 255, 160, dtype=np.uint8)))
             for t, ts, pt, _ in down]
    assert m.wire_round_trip({"up": up, "down": noise}, PCMU) is None  # not an echo of ours


# ------------------------------------------------------------------------------ relay

OFFER = ("v=0\r\no=- 1 2 IN IP4 10.0.0.5\r\ns=pjmedia\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n"
         "m=audio 4000 RTP/AVP 0 101\r\na=rtcp:4001 IN IP4 10.0.0.5\r\na=rtpmap:0 PCMU/8000\r\n"
         "m=video 0 RTP/AVP 96\r\n")


def test_rewrite_sdp_points_audio_at_the_relay() -> None:
    body, remote, rtcp = rewrite_sdp(OFFER, "127.0.0.1", 30000)
    assert remote == ("10.0.0.5", 4000) and rtcp == 4001
    assert "m=audio 30000 RTP/AVP 0 101" in body and "a=rtcp:30001 IN IP4 127.0.0.1" in body
    assert "10.0.0.5" not in body and "m=video 0 " in body  # only the first audio stream moves
    _, remote, rtcp = rewrite_sdp(OFFER.replace("a=rtcp:4001 IN IP4 10.0.0.5\r\n", ""), "127.0.0.1", 30000)
    assert rtcp == 4001  # RTP port + 1 by default


def test_sip_message_round_trip_and_via_routing() -> None:
    raw = ("SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-lb1;rport, "
           "SIP/2.0/UDP 127.0.0.1:5070;rport=5071;received=127.0.0.2;branch=z9hG4bK2\r\n"
           "Call-ID: abc\r\nContent-Length: 0\r\n\r\n").encode()
    msg = SipMessage.parse(raw)
    assert not msg.is_request and msg.first("call-id") == "abc"
    assert msg.pop_first("via").startswith("SIP/2.0/UDP 127.0.0.1:5999")
    assert _via_destination(msg.first("via")) == ("127.0.0.2", 5071)
    assert _via_destination("SIP/2.0/UDP 10.1.1.1;branch=x") == ("10.1.1.1", 5060)
    msg.body = b"v=0\r\n"
    assert b"Content-Length: 5\r\n" in msg.encode() or b"content-length: 5" in msg.encode().lower()


def test_impairment_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Impairment(loss_pct=120)
    with pytest.raises(ValueError):
        Impairment(direction="sideways")
    assert Impairment(jitter_ms=10).active and not Impairment().active
    assert Impairment(direction="send").applies(True) and not Impairment(direction="send").applies(False)


def test_relay_drops_and_delays_rtp_as_asked() -> None:
    """Real sockets: a 'worker' sends 1000 RTP-sized packets (one a millisecond) through a
    call's media pair to a 'target'; 10 % are dropped, the rest arrive 0 to 40 ms late, and
    the way back is clean."""

    async def scenario() -> tuple[dict, list[float], int]:
        relay = SipRelay("127.0.0.1", Impairment(loss_pct=10, jitter_ms=20, direction="send", seed=5))
        relay.start()
        worker, target = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
        for s in (worker, target):
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
        relay.add_worker(("127.0.0.1", 5999))
        invite = ("INVITE sip:echo@127.0.0.1:5998 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKa\r\n"
                  "Call-ID: c1\r\nContent-Type: application/sdp\r\n\r\n"
                  + OFFER.replace("10.0.0.5", "127.0.0.1").replace("4000", str(worker.getsockname()[1]))).encode()
        relay._rewrite_body(msg := SipMessage.parse(invite), True)
        answer = OFFER.replace("10.0.0.5", "127.0.0.1").replace("4000", str(target.getsockname()[1]))
        relay._rewrite_body(SipMessage.parse(f"SIP/2.0 200 OK\r\nCall-ID: c1\r\nContent-Type: application/sdp"
                                             f"\r\n\r\n{answer}".encode()), False)
        side_b = int(re.search(rb"m=audio (\d+)", msg.body).group(1))
        side_a = relay.pairs["c1"].port("a")
        assert side_a != side_b
        loop = asyncio.get_running_loop()
        sent_at: dict[int, float] = {}
        delays: list[float] = []
        def receive() -> None:
            while True:
                try:
                    data = target.recv(2048)
                except BlockingIOError:
                    return
                delays.append(loop.time() - sent_at[int.from_bytes(data[:4], "big")])

        loop.add_reader(target.fileno(), receive)
        for i in range(1000):
            sent_at[i] = loop.time()
            worker.sendto(i.to_bytes(4, "big") + bytes(168), ("127.0.0.1", side_a))
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.2)
        loop.remove_reader(target.fileno())
        target.sendto(bytes(172), ("127.0.0.1", side_b))  # the way back is not impaired
        await asyncio.sleep(0.05)
        back = len(worker.recv(2048))
        counts = relay.counts("c1")
        relay.close()
        worker.close()
        target.close()
        return counts, delays, back

    counts, delays, back = asyncio.run(scenario())
    assert counts["up"]["packets"] == 1000 and counts["down"]["packets"] == 1 and back == 172
    assert 60 <= counts["up"]["dropped"] <= 140  # 10 % of 1000, give or take
    assert len(delays) == 1000 - counts["up"]["dropped"]
    assert 0.012 < float(np.mean(delays)) < 0.030 and max(delays) < 0.060  # uniform 0..40 ms, mean 20


# ------------------------------------------------------------------------------ verdict and report


def _result(ok_pesq: float = 4.2) -> dict:
    calls = [{"id": i, "status_code": 200, "answered": True, "setup_ms": 3.0 + i, "pdd_ms": 3.0 + i,
              "rtt_ms": 45.0 + 5 * (i % 3), "rtt_max_ms": 65.0, "pesq": ok_pesq - 0.01 * i,
              "pesq_ceiling": 4.27, "pesq_diff": round(ok_pesq - 0.01 * i - 4.27, 3), "impaired_pct": 0.5,
              "relay": None, "error": None} for i in range(6)]
    calls.append({"id": 6, "status_code": 486, "answered": False, "pesq": None, "error": "486 <Busy>"})
    summary = {"target": "sip:echo@127.0.0.1:5060", "codec": "PCMU", "pesq_mode": "P.862 narrowband",
               "calls": 7, "measured": 6, "failed": 1, "pesq_median": ok_pesq - 0.025, "pesq_ceiling": 4.27,
               "pesq_diff_median": round(ok_pesq - 0.025 - 4.27, 3), "rtt_ms_median": 50.0, "rtt_ms_p95": 55.0,
               "setup_ms_median": 5.5, "setup_ms_p95": 8.0, "pdd_ms_median": 5.5, "impaired_pct_median": 0.5,
               "rtt_max_ms": 65.0, "loss_pct": 0.0, "jitter_ms": 0.0, "impair_direction": None}
    return {"calls": calls, "summary": summary}


def test_verdict_against_thresholds() -> None:
    r = _result()
    assert not judge(r["summary"], Thresholds())["ok"]  # one call failed, max_failed 0
    v = judge(r["summary"], Thresholds(max_failed=1))
    assert v["ok"] and v["text"].startswith("PASS") and "ceiling 4.27" in v["text"]
    v = judge(r["summary"], Thresholds(min_pesq_margin=0.05, max_rtt_ms=40, max_failed=1))
    assert not v["ok"] and v["text"].startswith("FAIL") and len(v["reasons"]) == 2
    assert "round trip 50 ms > 40 ms" in v["text"]


def test_report_is_self_contained_with_plots_and_verdict(tmp_path: Path) -> None:
    r = _result()
    r["verdict"] = judge(r["summary"], Thresholds(max_rtt_ms=40))
    page = render_html(r)
    assert page.count("<svg") == 3  # latency histogram, PESQ per call, setup times
    assert "Round-trip latency" in page and "PESQ per call vs the codec&#x27;s ceiling" in page
    assert "Setup time (INVITE → 200)" in page
    assert 'class="verdict fail"' in page and "round trip 50 ms &gt; 40 ms" in page
    assert page.count('class="ceil"') == 6 and page.count('class="pt"') == 6  # a dot and a ceiling per scored call
    assert "486 &lt;Busy&gt;" in page  # escaped
    assert not re.search(r"<script|src=\"http|href=\"http", page)  # nothing to fetch
    path = write_report(r, tmp_path / "r.html")
    assert path.read_text(encoding="utf-8") == page
    assert "no data" in histogram_svg([], "x", "y")


def test_options_are_checked() -> None:
    with pytest.raises(ValueError):
        LoopbackOptions("echo@host").check()
    with pytest.raises(ValueError):
        LoopbackOptions("sip:echo@h;transport=tcp", impairment=Impairment(loss_pct=1)).check()
    with pytest.raises(ValueError):
        LoopbackOptions("sip:echo@h", codec="opus").check()


def test_acd_loopback_is_registered() -> None:
    out = subprocess.run([sys.executable, "-m", "acd.cli", "loopback", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "TARGET_URI" in out.stdout and "--min-pesq-margin" in out.stdout


# ------------------------------------------------------------------------------ sweep


def test_sweep_lists_are_parsed_and_checked() -> None:
    assert parse_steps("0, 2,5,2,0") == [0.0, 2.0, 5.0]  # duplicates dropped, order kept
    assert parse_steps("80,0.5,20") == [80.0, 0.5, 20.0]
    for bad, why in (("", "numbers separated by commas"), ("0,,2", "numbers separated by commas"),
                     ("0,2,", "numbers separated by commas"), ("0,abc", "'abc' is not a number"),
                     ("-1", "'-1' is not a number >= 0"), ("nan", "not a number >= 0"),
                     ("inf", "not a number >= 0")):
        with pytest.raises(ValueError, match=why):
            parse_steps(bad)
    with pytest.raises(ValueError, match="100 % is out of range: it must be below 100 %"):
        parse_steps("5,100", 100.0, " %")
    assert parse_steps("99.5", 100.0, " %") == [99.5]
    for args, what in ((["--sweep-loss", "0,x"], "argument --sweep-loss: 'x' is not a number"),
                       (["--sweep-loss", "0,120"], "argument --sweep-loss: 120 % is out of range"),
                       (["--sweep-jitter", "20,-5"], "argument --sweep-jitter: '-5' is not a number >= 0"),
                       (["--sweep-loss", "0,5", "--sweep-parallel", "0"], "argument --sweep-parallel")):
        out = subprocess.run([sys.executable, "-m", "acd.cli", "loopback", "sip:echo@127.0.0.1", *args], cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 2 and what in out.stderr, (args, out.stderr)


def test_sweep_steps_are_loss_then_jitter_not_a_cross_product() -> None:
    base = Impairment(loss_pct=0, jitter_ms=20, direction="both", seed=3)
    steps = sweep_steps(base, [0, 5, 0], [20, 40, 0])
    assert [(s.loss_pct, s.jitter_ms) for s in steps] == [(0, 20), (5, 20), (0, 40), (0, 0)]  # (0, 20) once
    assert all(s.direction == "both" and s.seed == 3 for s in steps)
    assert [(s.loss_pct, s.jitter_ms) for s in sweep_steps(Impairment(loss_pct=2), jitter=[10, 30])] == \
        [(2, 10), (2, 30)]
    with pytest.raises(ValueError, match="at least one"):
        sweep_steps(base)
    with pytest.raises(ValueError, match="loss must be"):
        sweep_steps(base, [120])
    assert describe_step(Impairment()) == "loss 0 %" and describe_step(Impairment(jitter_ms=40)) == "jitter 40 ms"
    assert describe_step(Impairment(loss_pct=2.5, jitter_ms=20)) == "loss 2.5 %, jitter 20 ms"


def _step(opts: LoopbackOptions, imp: Impairment, pesq: list[float | None], rtt_max: float,
          silent: float | None = None, relay: bool = True) -> dict:
    """A fake ``run_loopback`` result of one step: the calls, and their real summary."""
    calls = []
    for i, p in enumerate(pesq):
        sent = 500
        dropped = round(sent * imp.loss_pct / 100)
        c = {"id": i, "answered": p is not None, "status_code": 200 if p is not None else 503,
             "pesq": p, "pesq_ceiling": 4.27 if p is not None else None, "pesq_ceiling_tandem": 4.27 if p else None,
             "pesq_diff": None if p is None else round(p - 4.27, 3), "rtt_ms": 65.0 if p else None,
             "rtt_max_ms": rtt_max + 20 * i if p else None, "setup_ms": 4.0 + i, "pdd_ms": 4.0,
             "impaired_pct": imp.loss_pct if p else None, "error": None if p else "503 <Unavailable>",
             "relay": {"up": {"packets": sent, "dropped": dropped}, "down": {"packets": sent, "dropped": 0}}
             if relay else None}
        calls.append(c)
    summary = summarise(calls, PCMU, replace(opts, impairment=imp))
    if silent is not None:
        summary.update(pesq_silent_gaps=silent, pesq_concealed_offline=silent + 0.3,
                       loss_measured_pct=imp.loss_pct)
    summary.update(duration_s=10.4, reference="speech.wav", reference_s=9.2)
    return {"calls": calls, "summary": summary, "verdict": judge(summary, opts.thresholds), "workdir": None}


def _sweep(target: str = "sip:echo@127.0.0.1:5060") -> dict:
    """Loss 2, 0, 5, 10 % (jitter 0), then jitter 40, 80 ms; at 10 % every call failed."""
    opts = LoopbackOptions(target, calls=2)
    def imp(loss: float, jitter: float) -> Impairment:
        return Impairment(loss, jitter)
    steps = [(imp(2, 0), _step(opts, imp(2, 0), [4.05, 4.01], 65.0, silent=3.4)),
             (imp(0, 0), _step(opts, imp(0, 0), [4.27, 4.25], 65.0, relay=False)),
             (imp(5, 0), _step(opts, imp(5, 0), [3.31, 3.25], 85.0, silent=2.8)),
             (imp(10, 0), _step(opts, imp(10, 0), [None, None], 0.0)),
             (imp(0, 40), _step(opts, imp(0, 40), [4.26, 4.2], 145.0)),
             (imp(0, 80), _step(opts, imp(0, 80), [3.1, 2.9], 225.0))]
    return combine_sweep(steps, opts)


def test_sweep_result_is_every_call_tagged_with_a_row_per_step() -> None:
    res = _sweep()
    calls, s, rows = res["calls"], res["summary"], res["sweep"]
    assert [c["id"] for c in calls] == list(range(12)) and [c["step_call"] for c in calls[:4]] == [0, 1, 0, 1]
    assert [(c["step"], c["loss_pct"], c["jitter_ms"]) for c in calls[4:8]] == [(3, 5, 0), (3, 5, 0), (4, 10, 0),
                                                                                   (4, 10, 0)]
    # the normal summary, over all calls
    assert s["calls"] == 12 and s["failed"] == 2 and s["measured"] == 10 and s["pesq_ceiling"] == 4.27
    assert s["pesq_median"] == pytest.approx(statistics.median(c["pesq"] for c in calls if c["pesq"]))
    assert s["rtt_ms_median"] == 65.0 and s["setup_ms_median"] == 4.5 and s["sweep"] == rows
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [(r["loss_pct"], r["jitter_ms"]) for r in rows] == [(2, 0), (0, 0), (5, 0), (10, 0), (0, 40), (0, 80)]
    assert [r["pesq_median"] for r in rows] == [4.03, 4.26, 3.28, None, 4.23, 3.0]
    assert [r["pesq_silent_gaps"] for r in rows] == [3.4, None, 2.8, None, None, None]  # None at 0 % loss
    assert [r["rtt_max_ms_median"] for r in rows] == [75.0, 75.0, 95.0, None, 155.0, 235.0]
    assert [r["failed"] for r in rows] == [0, 0, 0, 2, 0, 0] and rows[3]["calls"] == 2
    assert rows[3]["pesq_ceiling"] is None and rows[3]["rtt_ms_median"] is None  # failed: no scores, no error
    # measured loss: from the summary, from the relay's counts (jitter only: 0), unknown without a relay
    assert [r["loss_measured_pct"] for r in rows] == [2, None, 5, 10.0, 0.0, 0.0]
    # the verdict is that of the least impaired step (the second), not of all calls
    assert res["verdict"]["step"] == 2 and res["verdict"]["ok"]
    assert res["verdict"]["text"].startswith("PASS: 2/2 calls measured, PESQ 4.26")
    assert "least impaired: loss 0 %" in res["verdict"]["text"]
    assert json.loads(json.dumps(res))["sweep"] == rows


def test_run_sweep_places_each_step_and_survives_one_that_cannot_run(speech: Path, monkeypatch) -> None:
    """No pjsua2: the calls of each step are faked; the step at 5 % cannot start its workers."""
    from acd.loopback import runner

    placed: list[tuple[float, float, Path]] = []

    async def place(opts: LoopbackOptions, play: Path, duration: float, workdir: Path, progress) -> tuple:
        placed.append((opts.impairment.loss_pct, opts.impairment.jitter_ms, workdir))
        assert play.exists() and duration > 8
        if opts.impairment.loss_pct == 5:
            raise RuntimeError("pjsua2 worker 0 did not start")
        return [{"id": i, "answered": True, "error": "no echo <x>"} for i in range(opts.calls)], {}

    monkeypatch.setattr(runner, "_place_calls", place)
    lines: list[str] = []
    opts = LoopbackOptions("sip:echo@127.0.0.1", calls=2, cache_dir=str(speech.parent))
    res = run_sweep(opts, sweep_steps(opts.impairment, [0, 5], [40]), lines.append, parallel=2)
    assert [(lo, j) for lo, j, _ in placed] == [(0, 0), (5, 0), (0, 40)]
    assert len({w for _, _, w in placed}) == 3 and not any(w.exists() for _, _, w in placed)  # temporary: removed
    assert [ln for ln in lines if "step" in ln and "calls done" not in ln] == [
        "loopback: step 1/3, loss 0 %\n", "loopback: step 2/3, loss 5 %\n", "loopback: step 3/3, jitter 40 ms\n"]
    assert [r["failed"] for r in res["sweep"]] == [2, 2, 2] and len(res["calls"]) == 6
    assert "did not start" in res["sweep"][1]["error"] and res["sweep"][0]["error"] is None
    assert res["calls"][2]["error"] == "step not run: pjsua2 worker 0 did not start"
    assert not res["verdict"]["ok"] and res["verdict"]["step"] == 1
    with pytest.raises(RuntimeError, match="did not start"):  # no step could run: the error itself
        run_sweep(opts, [Impairment(loss_pct=5)], None)


def test_human_output_has_a_line_per_step_after_the_calls() -> None:
    from acd.loopback.cli import _human

    lines = _human(_sweep()).splitlines()
    first = next(i for i, ln in enumerate(lines) if ln.startswith("step 1/6"))
    assert first == 2 + 12  # target line, table head, 12 calls
    assert lines[first + 2].startswith("step 3/6: loss 5 % (5.0 % measured), jitter 0 ms: PESQ 3.28 (ceiling 4.27, "
                                       "gaps left silent 2.80), round trip 65 ms (max 95)")
    assert lines[first + 3].startswith("step 4/6: loss 10 % (10.0 % measured), jitter 0 ms: PESQ - ")
    assert lines[first + 3].endswith("2/2 failed") and lines[first + 5].startswith("step 6/6: loss 0 %")
    assert lines[-1].startswith("PASS") and any(ln.startswith("all steps: PESQ median") for ln in lines)


def _svgs(page: str) -> list[ET.Element]:
    return [ET.fromstring(m.group(0)) for m in re.finditer(r"<svg.*?</svg>", page, re.S)]


def test_report_plots_quality_vs_impairment() -> None:
    res = _sweep(target="sip:echo@h;x=<b>")
    page = render_html(res)
    svgs = _svgs(page)  # every plot is well-formed XML
    assert len(svgs) == 5 and 'id="sweep">Quality vs impairment</h2>' in page
    titles = [svg.findtext("{*}title") or svg.findtext("title") for svg in svgs]
    assert "PESQ vs packet loss" in titles and "PESQ vs jitter" in titles
    loss_svg, jitter_svg = (svgs[titles.index(t)] for t in ("PESQ vs packet loss", "PESQ vs jitter"))

    def lines_of(svg: ET.Element) -> dict[str, list[tuple[float, float]]]:
        out = {}
        for pl in svg.iter("polyline"):
            cls = pl.get("class").split()[1]
            out[cls] = [tuple(map(float, p.split(","))) for p in pl.get("points").split()]
        return out

    loss_lines, jitter_lines = lines_of(loss_svg), lines_of(jitter_svg)
    assert set(loss_lines) == {"sw-pesq", "sw-ceil", "sw-gap"} and set(jitter_lines) == {"sw-pesq", "sw-ceil"}
    # loss 0, 2, 5 scored (10 % failed: a cross, no point), in order of loss; gaps silent at 2 and 5 only
    assert len(loss_lines["sw-pesq"]) == 3 and len(loss_lines["sw-gap"]) == 2
    xs = [x for x, _ in loss_lines["sw-pesq"]]
    assert xs == sorted(xs)
    ys = [y for _, y in loss_lines["sw-pesq"]]  # SVG y grows downwards: 4.26, 4.03, 3.28
    assert ys[0] < ys[1] < ys[2]
    assert all(yg > yp for (_, yg), (_, yp) in zip(loss_lines["sw-gap"], loss_lines["sw-pesq"][1:]))
    assert len(jitter_lines["sw-pesq"]) == 3  # 0 (the loss-0 step), 40, 80 ms
    texts = " ".join("".join(t.itertext()) for svg in (loss_svg, jitter_svg) for t in svg.iter("text"))
    assert "packet loss (%)" in texts and "jitter (ms" in texts and "same loss, gaps left silent" in texts
    assert "10 % loss: no call scored" in ET.tostring(loss_svg, encoding="unicode")
    # the verdict's limit: ceiling 4.27 of the least impaired step − margin 0.3
    assert "PESQ falls below 3.97 (the codec&#x27;s ceiling − 0.3) from 5 % loss." in page
    assert "PESQ falls below 3.97 (the codec&#x27;s ceiling − 0.3) from 80 ms jitter." in page
    assert "below 3.97 from 5 % loss" in texts
    table = page[page.index('id="sweep"'):]
    table = table[table.index("<table>"):table.index("</table>")]
    assert table.count("<tr>") == 7 and table.count('class="low"') == 2  # 5 % and 80 ms
    assert "sip:echo@h;x=&lt;b&gt;" in page and "<b>" not in page  # escaped
    assert "503 &lt;Unavailable&gt;" in page and "sweep of 6 steps: loss 2, 0, 5, 10 % / jitter 0, 40, 80 ms" in page
    assert not re.search(r"<script|src=\"http|href=\"http", page)


def test_report_says_when_quality_holds_and_skips_a_one_step_sweep() -> None:
    opts = LoopbackOptions("sip:echo@127.0.0.1", calls=1)
    steps = [(Impairment(0, j), _step(opts, Impairment(0, j), [4.2 - j / 1000], 65.0 + j)) for j in (0, 20, 40)]
    res = combine_sweep(steps, opts)
    page = render_html(res)
    assert "PESQ stays at or above 3.97 (the codec&#x27;s ceiling − 0.3) up to 40 ms jitter." in page
    assert "PESQ vs jitter" in page and "PESQ vs packet loss" not in page and len(_svgs(page)) == 4
    one = combine_sweep(steps[:1], opts)
    page = render_html(one)
    assert "Quality vs impairment" not in page and len(_svgs(page)) == 3
    assert "no data" not in sweep_svg(one["sweep"], "jitter") and "one step only" in sweep_svg(one["sweep"], "jitter")


def test_the_tester_s_own_jitter_buffer_is_deeper_when_what_it_receives_is_impaired() -> None:
    from acd.loopback.runner import tester_jitter_buffer_ms

    assert tester_jitter_buffer_ms(Impairment(5, 20, "send")) == 30  # only the target's buffer is tested
    assert tester_jitter_buffer_ms(Impairment(0, 0, "both")) == 30
    assert tester_jitter_buffer_ms(Impairment(5, 0, "recv")) == 50  # a frame: the gap is seen before it is due
    assert tester_jitter_buffer_ms(Impairment(0, 20, "both")) == 70  # the relay holds up to 2 × 20 ms
    assert tester_jitter_buffer_ms(Impairment(2.5, 10, "both")) == 70
