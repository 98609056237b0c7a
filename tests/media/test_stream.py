"""media.stream on virtual time: two streams through a simulated network."""

from __future__ import annotations

import random

import numpy as np
import pytest

from media.rtp import parse
from media.stream import AudioStream, StreamParams
from tests.audio import dominant_frequency


def tone(freq: float, rate: int, n: int, start: int) -> np.ndarray:
    t = (np.arange(n) + start) / rate
    return (0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def run_call(codec: str, pt: int, *, seconds: float = 3.0, loss: float = 0.0, delay: float = 0.03,
             seed: int = 1) -> tuple[AudioStream, AudioStream, np.ndarray]:
    rng = random.Random(seed)
    a = AudioStream(StreamParams(pt, codec, telephone_event_pt=101), 0.0, rng=random.Random(2))
    b = AudioStream(StreamParams(pt, codec, telephone_event_pt=101), 0.0, rng=random.Random(3))
    rate = a.codec.sample_rate
    in_flight: list[tuple[float, bytes]] = []
    heard = []
    ticks = int(seconds / 0.02)
    for k in range(ticks):
        now = k * 0.02
        for data in a.send(tone(700, rate, a.frame_samples, k * a.frame_samples), now):
            if rng.random() >= loss:
                in_flight.append((now + delay + rng.uniform(0, 0.004), data))
        arrived = [d for t, d in in_flight if t <= now + 0.02]
        in_flight = [(t, d) for t, d in in_flight if t > now + 0.02]
        for data in arrived:
            b.receive_rtp(parse(data), now + 0.01)
        heard.append(b.playout(now + 0.02))
    return a, b, np.concatenate(heard)


@pytest.mark.parametrize("codec, pt", [("PCMU", 0), ("PCMA", 8), ("G722", 9), ("opus", 111)])
def test_tone_survives_the_network(codec: str, pt: int) -> None:
    _, b, heard = run_call(codec, pt)
    rate = b.codec.sample_rate
    assert abs(dominant_frequency(heard.astype(np.float32) / 32768, rate, skip_s=0.5) - 700) < 10
    assert b.jitter.stats["concealed"] == 0


def test_loss_is_concealed_not_silenced() -> None:
    _, b, heard = run_call("PCMU", 0, loss=0.05, seconds=6.0)
    lost = b.jitter.stats["lost"]
    assert lost > 0 and b.jitter.stats["concealed"] >= lost
    # concealment keeps the waveform going: no 20 ms block after start-up is silent
    frames = heard[8000:].reshape(-1, 160).astype(np.float64)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    assert rms.min() > 0.1 * rms.mean()
    snap = b.snapshot()
    assert snap.concealed_frames >= lost


def test_dtmf_goes_across_and_pauses_audio() -> None:
    a = AudioStream(StreamParams(0, "PCMU", telephone_event_pt=101), 0.0)
    b = AudioStream(StreamParams(0, "PCMU", telephone_event_pt=101), 0.0)
    digits = []
    a.send_dtmf("7", 0.0, duration_ms=120)
    audio_packets = 0
    for k in range(40):
        now = k * 0.02
        for data in a.send(tone(500, 8000, 160, k * 160), now):
            pkt = parse(data)
            audio_packets += pkt.payload_type == 0
            digits += [e for e in b.receive_rtp(pkt, now + 0.001)]
    starts = [e for e in digits if type(e).__name__ == "DtmfStart"]
    ends = [e for e in digits if type(e).__name__ == "DtmfEnd"]
    assert [e.digit for e in starts] == ["7"] and [e.digit for e in ends] == ["7"]
    assert 100 <= ends[0].duration_ms <= 160
    assert audio_packets < 40  # audio paused while the event was on the wire


def test_rtcp_exchange_gives_rtt() -> None:
    a = AudioStream(StreamParams(0, "PCMU"), 0.0)
    b = AudioStream(StreamParams(0, "PCMU"), 0.0)
    one_way = 0.025
    for k in range(800):  # 16 s: several RTCP intervals
        now = k * 0.02
        for data in a.send(tone(440, 8000, 160, k * 160), now):
            b.receive_rtp(parse(data), now + one_way)
        for data in b.send(tone(880, 8000, 160, k * 160), now):
            a.receive_rtp(parse(data), now + one_way)
        a.playout(now)
        b.playout(now)
        for src, dst in ((a, b), (b, a)):
            report = src.rtcp(now)
            if report:
                dst.receive_rtcp(report, now + one_way)
    snap = a.snapshot()
    assert snap.rtt_ms == pytest.approx(2000 * one_way, abs=1.0)
    b.receive_rtcp(b"\x80\xc8\x00", 1.0)  # truncated: dropped and counted, not raised
    assert b.stats["malformed_rtcp"] == 1


def test_a_corrupt_payload_is_concealed_and_counted() -> None:
    from media.rtp import RtpPacket

    b = AudioStream(StreamParams(0, "PCMU"), 0.0)
    for k in range(10):
        payload = b"" if k == 5 else bytes([0x90]) * 160  # an empty PCMU payload cannot decode
        b.receive_rtp(RtpPacket(0, k, 160 * k, 7, payload), k * 0.02)
        b.playout(k * 0.02 + 0.03)
    for k in range(10, 14):
        b.playout(k * 0.02 + 0.03)
    assert b.stats["decode_error"] == 1 and b.quality.concealed_frames >= 1
