"""``acd loopback`` without a server: alignment, PESQ and its ceiling, the lost-audio estimate,
the relay's SDP/SIP handling and impairment on real sockets, the verdict and the HTML report."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from acd.loopback import measure as m
from acd.loopback.relay import Impairment, SipMessage, SipRelay, _via_destination, rewrite_sdp
from acd.loopback.report import histogram_svg, render_html, write_report
from acd.loopback.runner import LoopbackOptions, Thresholds, judge
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
