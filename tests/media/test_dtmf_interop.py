"""DTMF against an independent implementation: pjsua2 (PJSIP) sends, our code decodes.

sipp answers the call (tests/sipp/uas_dtmf.xml) with an SDP whose media port is a UDP socket
of this test, so everything pjsua sends — PCMU audio and RFC 4733 telephone-events — lands
here, on real time, and goes through :class:`DtmfReceiver` / :class:`GoertzelDetector`.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from media.dtmf import DtmfEnd, DtmfReceiver, DtmfStart, parse_telephone_events
from media.dtmf_inband import GoertzelDetector, generate_dtmf
from media.rtp import RtpPacket, parse, seq_diff
from tests.harness import ROOT, free_port, run_peer

pytestmark = pytest.mark.interop

SCENARIO = ROOT / "tests" / "sipp" / "uas_dtmf.xml"
PATTERN = "1234567890*#ABCD"


def ulaw_decode(data: bytes) -> np.ndarray:
    """G.711 µ-law bytes → int16 (inline, so that this test does not depend on our codecs)."""
    b = ~np.frombuffer(data, dtype=np.uint8)
    exp = (b >> 4) & 0x07
    mag = ((((b & 0x0F).astype(np.int32) << 3) + 0x84) << exp) - 0x84
    return np.where(b & 0x80, -mag, mag).astype(np.int16)


def capture_call(sipp: str, cwd: Path, *peer_args: str) -> tuple[int, dict, list[tuple[float, RtpPacket]]]:
    """pjsua calls sipp; returns pjsua's exit code and JSON, and every RTP packet it sent us."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    rtp_port = sock.getsockname()[1]
    sip_port = free_port()
    received: list[tuple[float, RtpPacket]] = []
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set():
            try:
                data = sock.recv(2048)
            except socket.timeout:
                continue
            if len(data) >= 12 and (data[1] & 0x7F) in (0, 101):  # RTP only (no STUN)
                received.append((time.monotonic(), parse(data)))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    uas = subprocess.Popen([sipp, "-sf", str(SCENARIO), "-i", "127.0.0.1", "-p", str(sip_port), "-m", "1",
                            "-set", "rtpport", str(rtp_port), "-mp", str(free_port()), "-nostdin",
                            "-timeout", "40", "-timeout_error"],
                           cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)  # sipp listening
        rc, result = run_peer("call", "--uri", f"sip:capture@127.0.0.1:{sip_port}", "--codec", "PCMU",
                              "--clock-rate", "8000", *peer_args)
        uas_rc = uas.wait(timeout=15)
        assert uas_rc == 0, uas.stderr.read() if uas.stderr else uas_rc
    finally:
        if uas.poll() is None:
            uas.kill()
            uas.wait()
        time.sleep(0.1)
        stop.set()
        thread.join()
        sock.close()
    return rc, result, received


def test_pjsua_rfc4733_digits_are_decoded_once_each(sipp: str, tmp_path: Path) -> None:
    sent = "1234567890*#"
    rc, result, packets = capture_call(sipp, tmp_path, "--dtmf", sent, "--dtmf-at", "0.5", "--duration", "5")
    assert rc == 0, result
    assert result["dtmf_sent"] == sent
    events = [(t, p) for t, p in packets if p.payload_type == 101]
    assert len(events) >= 3 * len(sent), "pjsua sent no telephone-events"
    rx = DtmfReceiver(payload_type=101, clock_rate=8000)
    out: list = []
    for t, p in packets:  # the whole stream, audio included: the receiver skips other PTs
        out += rx.poll(t)
        out += rx.receive(p, t)
    out += rx.poll(packets[-1][0] + 1.0)
    starts = [e for e in out if isinstance(e, DtmfStart)]
    ends = [e for e in out if isinstance(e, DtmfEnd)]
    assert "".join(e.digit for e in starts) == sent
    assert "".join(e.digit for e in ends) == sent
    assert all(e.end_seen for e in ends), ends  # the E packets arrived: nothing was inferred
    assert [e.start_ts for e in starts] == [e.start_ts for e in ends]
    durations = {e.duration_ms for e in ends}  # PJSIP 2.15 sends 200 ms digits (1600 samples)
    assert len(durations) == 1 and 100 <= durations.pop() <= 400, [e.duration_ms for e in ends]
    # what PJSIP puts on the wire, per RFC 4733: marker on each event's first packet, one
    # timestamp per event, the E packet repeated (§2.5.1.4)
    by_ts: dict[int, list[RtpPacket]] = {}
    for _, p in events:
        by_ts.setdefault(p.timestamp, []).append(p)
    assert len(by_ts) == len(sent)
    for pkts in by_ts.values():
        blocks = [parse_telephone_events(p.payload)[0] for p in pkts]
        assert pkts[0].marker and not any(p.marker for p in pkts[1:])
        assert sum(b.end for b in blocks) >= 2
    assert rx.stats["malformed"] == 0 and rx.stats["other_payload_type"] > 0


def test_inband_tones_played_by_pjsua_are_detected(sipp: str, tmp_path: Path) -> None:
    # our generator → WAV → pjsua's player → PCMU over RTP → µ-law decode → our detector
    tones = generate_dtmf(PATTERN, tone_ms=100, gap_ms=100, level_dbm0=-10.0, lead_ms=300)
    tones = np.concatenate([tones, np.zeros(3200, dtype=np.int16)])
    wav = tmp_path / "dtmf.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tones.astype("<i2").tobytes())
    rc, result, packets = capture_call(sipp, tmp_path, "--play", str(wav), "--duration", "5")
    assert rc == 0, result
    audio = [p for _, p in packets if p.payload_type == 0]
    assert len(audio) > 150
    first = audio[0].sequence
    audio.sort(key=lambda p: seq_diff(p.sequence, first))
    assert all(seq_diff(b.sequence, a.sequence) == 1 for a, b in zip(audio, audio[1:])), "loss on loopback"
    pcm = ulaw_decode(b"".join(p.payload for p in audio))
    det = GoertzelDetector(8000)
    out = det.feed(pcm) + det.flush()
    digits = "".join(e.digit for e in out if isinstance(e, DtmfStart))
    assert PATTERN in digits, digits
    assert digits in PATTERN * 4, digits  # the WAV loops; nothing but its digits, each once
    ends = [e for e in out if isinstance(e, DtmfEnd)]
    assert all(abs(e.duration_ms - 100) <= 6 for e in ends), [e.duration_ms for e in ends]
