"""DTMF: RFC 4733 payload, sender and receiver on virtual time, SIP INFO bodies, and the
in-band detector (Q.23/Q.24 acceptance, talk-off against espeak-ng speech and sox music)."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.dtmf import (DtmfEnd, DtmfParseError, DtmfReceiver, DtmfSender, DtmfStart, TelephoneEvent,
                        build_dtmf_relay, digit_to_event, event_to_digit, parse_dtmf_relay,
                        parse_telephone_events)
from media.dtmf_inband import DBM0_RMS, GoertzelDetector, dtmf_tone, generate_dtmf
from media.errors import MalformedPacket, MediaError
from media.rtp import RtpPacket, parse, seq_diff, ts_diff

ALL = "0123456789*#ABCD"
PT = 101


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
class AudioClock:
    """Stands in for the audio sender: shared sequence numbers and RTP clock (both near wrap)."""

    def __init__(self, seq: int = 65530, ts0: int = 0xFFFFFF00, rate: int = 8000) -> None:
        self.seq, self.ts0, self.rate = seq, ts0, rate

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFF
        return self.seq

    def timestamp_at(self, t: float) -> int:
        return (self.ts0 + round(t * self.rate)) & 0xFFFFFFFF


def make_sender(interval_ms: float = 50.0, **kw: object) -> tuple[DtmfSender, AudioClock]:
    clock = AudioClock()
    return DtmfSender(PT, 8000, 0x1234, clock.next_seq, clock.timestamp_at, interval_ms=interval_ms, **kw), clock


def run_sender(sender: DtmfSender, until: float, step: float = 0.01, start: float = 0.0
               ) -> list[tuple[float, RtpPacket]]:
    out, t = [], start
    while t <= until + 1e-9:
        out += [(t, p) for p in sender.poll(t)]
        t += step
    return out


def blocks(packets: list[tuple[float, RtpPacket]]) -> list[TelephoneEvent]:
    return [parse_telephone_events(p.payload)[0] for _, p in packets]


def pkt(ts: int, event: int, duration: int, end: bool = False, marker: bool = False, seq: int = 1,
        ssrc: int = 7, pt: int = PT) -> RtpPacket:
    return RtpPacket(pt, seq, ts, ssrc, TelephoneEvent(event, end, 10, duration).to_bytes(), marker)


def digits_of(events: list) -> tuple[str, str]:
    return ("".join(e.digit for e in events if isinstance(e, DtmfStart)),
            "".join(e.digit for e in events if isinstance(e, DtmfEnd)))


def detect(x: np.ndarray, rate: int = 8000, **kw: object) -> list:
    det = GoertzelDetector(rate, **kw)
    return det.feed(x) + det.flush()


def ulaw_encode(x: np.ndarray) -> np.ndarray:
    """G.711 µ-law, inline (independent of media.codecs)."""
    x = np.asarray(x, dtype=np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), 32635) + 0x84
    exp = np.clip(np.floor(np.log2(mag)).astype(np.int32) - 7, 0, 7)
    mant = (mag >> (exp + 3)) & 0x0F
    return (~(sign | (exp << 4) | mant) & 0xFF).astype(np.uint8)


def ulaw_decode(b: np.ndarray) -> np.ndarray:
    b = ~np.asarray(b, dtype=np.uint8)
    exp = (b >> 4) & 0x07
    mag = ((((b & 0x0F).astype(np.int32) << 3) + 0x84) << exp) - 0x84
    return np.where(b & 0x80, -mag, mag).astype(np.int16)


# ---------------------------------------------------------------------------------------------
# payload format (RFC 4733 §2.3) and digit mapping (§3.2)
# ---------------------------------------------------------------------------------------------
def test_digit_event_mapping() -> None:
    assert [digit_to_event(d) for d in "0123456789*#ABCDR"] == list(range(17))
    assert digit_to_event("b") == 13 and event_to_digit(16) == "R"
    assert "".join(event_to_digit(i) for i in range(16)) == ALL
    for bad in ("E", "", "12", " ", "x"):
        with pytest.raises(DtmfParseError):
            digit_to_event(bad)
    with pytest.raises(DtmfParseError):
        event_to_digit(17)
    assert issubclass(DtmfParseError, MediaError)


def test_payload_bit_layout() -> None:
    # event 5 | E=1 R=0 volume=10 | duration 800 (100 ms at 8 kHz)
    assert TelephoneEvent(5, True, 10, 800).to_bytes() == bytes([0x05, 0x8A, 0x03, 0x20])
    # '#' (11), not ended, volume 0 (loudest), duration 0xFFFF (a full segment)
    assert TelephoneEvent(11, False, 0, 0xFFFF).to_bytes() == bytes([0x0B, 0x00, 0xFF, 0xFF])
    assert parse_telephone_events(bytes([0x10, 0xBF, 0x01, 0x90])) == (TelephoneEvent(16, True, 63, 400),)
    # the R bit is ignored by receivers (§2.3.4)
    assert parse_telephone_events(bytes([0x01, 0x4A, 0x00, 0xA0])) == (TelephoneEvent(1, False, 10, 160),)
    # packed events (§2.5.1.5)
    two = TelephoneEvent(1, True, 10, 800).to_bytes() + TelephoneEvent(2, False, 10, 160).to_bytes()
    assert [e.event for e in parse_telephone_events(two)] == [1, 2]
    for bad in (b"", b"\x01\x0a\x00", b"\x01\x0a\x00\xa0\x02"):
        with pytest.raises(MalformedPacket):
            parse_telephone_events(bad)
    for kwargs in ({"event": 256}, {"event": 1, "volume": 64}, {"event": 1, "duration": 65536}):
        with pytest.raises(MediaError):
            TelephoneEvent(**kwargs)  # type: ignore[arg-type]


@given(st.integers(0, 255), st.booleans(), st.integers(0, 63), st.integers(0, 0xFFFF))
def test_payload_round_trip(event: int, end: bool, volume: int, duration: int) -> None:
    te = TelephoneEvent(event, end, volume, duration)
    assert parse_telephone_events(te.to_bytes()) == (te,)


# ---------------------------------------------------------------------------------------------
# sender (RFC 4733 §2.5.1)
# ---------------------------------------------------------------------------------------------
def test_sender_one_digit_50ms_updates() -> None:
    sender, clock = make_sender(50.0)
    assert not sender.busy and sender.next_deadline() is None
    sender.start("5", 0.0, duration_ms=100)
    assert sender.next_deadline() == 0.0
    first = sender.poll(0.0)
    assert sender.audio_paused  # the audio sender holds its packets from here on
    rest = run_sender(sender, 0.5, start=0.01)
    pkts = [p for p in first] + [p for _, p in rest]
    times = [0.0] + [round(t, 3) for t, _ in rest]
    assert times == [0.0, 0.05, 0.1, 0.15]
    b = [parse_telephone_events(p.payload)[0] for p in pkts]
    assert [(x.event, x.end, x.volume, x.duration) for x in b] == [
        (5, False, 10, 400), (5, True, 10, 800), (5, True, 10, 800), (5, True, 10, 800)]
    assert [p.marker for p in pkts] == [True, False, False, False]  # §2.5.1.2: M on the first only
    assert {p.timestamp for p in pkts} == {clock.timestamp_at(0.0)}  # the event's start (§2.3.1)
    assert [p.sequence for p in pkts] == [65531, 65532, 65533, 65534]  # the audio stream's numbers
    assert {(p.payload_type, p.ssrc) for p in pkts} == {(PT, 0x1234)}
    assert not sender.audio_paused and not sender.busy and sender.next_deadline() is None
    assert sender.stats["packets"] == 4 and sender.stats["events"] == 1
    # the packets survive the wire format
    assert [parse(p.to_bytes()) for p in pkts] == pkts


def test_sender_20ms_updates_and_odd_duration() -> None:
    sender, _ = make_sender(20.0)
    sender.start("#", 0.0, duration_ms=90, volume=7)
    b = blocks(run_sender(sender, 0.5, step=0.005))
    assert [(x.duration, x.end) for x in b] == [(160, False), (320, False), (480, False), (640, False),
                                                (720, True), (720, True), (720, True)]
    assert {x.volume for x in b} == {7} and {x.event for x in b} == {11}


def test_sender_queue_gap_and_wrap() -> None:
    sender, clock = make_sender(50.0, gap_ms=50.0)
    for d in "123":
        sender.start(d, 0.0)
    assert sender.pending == 2
    out = run_sender(sender, 2.0, step=0.01)
    starts = [(t, p) for t, p in out if p.marker]
    assert [parse_telephone_events(p.payload)[0].event for _, p in starts] == [1, 2, 3]
    for (ta, a), (tb, b) in zip(starts, starts[1:]):
        # the next event starts after the previous tone (800) plus the gap (400), past its E repeats
        assert ts_diff(b.timestamp, a.timestamp) >= 800 + 400
        assert tb >= ta + 0.15 - 1e-9
    seqs = [p.sequence for _, p in out]
    assert all(seq_diff(b, a) == 1 for a, b in zip(seqs, seqs[1:]))  # wraps 65535 → 0
    assert any(s < 100 for s in seqs) and any(s > 65000 for s in seqs)
    assert any(p.timestamp < 1000 for _, p in out)  # the RTP timestamp wrapped too


def test_sender_held_key_and_stop() -> None:
    sender, _ = make_sender(50.0)
    sender.start("7", 0.0, duration_ms=None)
    out = run_sender(sender, 0.33, step=0.01)
    assert all(not b.end for b in blocks(out))
    sender.stop(0.335)
    out2 = run_sender(sender, 1.0, step=0.005, start=0.335)
    ends = blocks(out2)
    assert [b.end for b in ends] == [True, True, True]
    assert 0.335 * 8000 <= ends[0].duration <= 0.335 * 8000 + 400
    assert out2[0][0] == pytest.approx(0.335)  # the end goes out at once
    with pytest.raises(MediaError):
        sender.stop(2.0)  # nothing to stop: our misuse


def test_sender_key_released_before_it_went_out() -> None:
    sender, _ = make_sender(50.0)
    sender.start("1", 0.0, duration_ms=100)
    sender.start("2", 0.01, duration_ms=None)  # pressed while "1" is on the wire
    sender.stop(0.03)  # ... and released 20 ms later: it still lasts the minimum 40 ms
    sender.start("3", 0.04, duration_ms=None)
    out = run_sender(sender, 0.5, step=0.01)
    sender.stop(0.6)  # "3" was held until 0.6 s; it went out at 0.3 s
    out += run_sender(sender, 1.5, step=0.01, start=0.6)
    ends = [b for b in blocks(out) if b.end]
    assert [(b.event, b.duration) for b in ends[::3]] == [(1, 800), (2, 320), (3, ends[6].duration)]
    t3 = next(t for t, p in out if p.marker and parse_telephone_events(p.payload)[0].event == 3)
    assert t3 == pytest.approx(0.25)  # after "2" and its end repeats
    assert (0.6 - t3) * 8000 <= ends[6].duration <= (0.6 - t3) * 8000 + 400
    assert not sender.busy


def test_sender_single_end_packet() -> None:
    sender, _ = make_sender(20.0, end_repeats=1)
    sender.start("9", 0.0, duration_ms=60)
    b = blocks(run_sender(sender, 0.5))
    assert [(x.duration, x.end) for x in b] == [(160, False), (320, False), (480, True)]


def test_sender_long_event_segments() -> None:
    # §2.5.1.3: 10 s is 80000 samples > 0xFFFF: a second segment, timestamp advanced by 0xFFFF
    sender, clock = make_sender(50.0)
    sender.start("0", 0.0, duration_ms=10000)
    out = run_sender(sender, 11.0, step=0.05)
    ts0 = clock.timestamp_at(0.0)
    seg1 = [(p, b) for (_, p), b in zip(out, blocks(out)) if p.timestamp == ts0]
    seg2 = [(p, b) for (_, p), b in zip(out, blocks(out)) if p.timestamp == (ts0 + 0xFFFF) & 0xFFFFFFFF]
    assert len(seg1) + len(seg2) == len(out)
    assert [b.duration for _, b in seg1[-3:]] == [0xFFFF] * 3 and not any(b.end for _, b in seg1)
    assert [(b.duration, b.end) for _, b in seg2[-3:]] == [(80000 - 0xFFFF, True)] * 3
    assert [p.marker for p, _ in seg1 + seg2].count(True) == 1 and seg1[0][0].marker
    durations = [b.duration for _, b in seg2]
    assert durations == sorted(durations) and sender.stats["segments"] == 1


def test_sender_rejects_misuse() -> None:
    sender, _ = make_sender()
    for call in (lambda: sender.start("X", 0.0), lambda: sender.start("1", 0.0, volume=64),
                 lambda: sender.start("1", 0.0, duration_ms=0)):
        with pytest.raises(MediaError):
            call()
    with pytest.raises(MediaError):
        DtmfSender(128, 8000, 1, lambda: 0, lambda t: 0)
    with pytest.raises(MediaError):
        DtmfSender(101, 8000, 1, lambda: 0, lambda t: 0, interval_ms=0)


# ---------------------------------------------------------------------------------------------
# receiver (RFC 4733 §2.5.2)
# ---------------------------------------------------------------------------------------------
def test_receiver_basic_press_and_duplicates() -> None:
    rx = DtmfReceiver(PT, 8000)
    assert rx.receive(pkt(1000, 5, 160, marker=True), 0.0) == [DtmfStart("5", 1000)]
    assert rx.active_digit == "5" and rx.next_deadline() == pytest.approx(0.5)
    assert rx.receive(pkt(1000, 5, 320), 0.02) == []
    assert rx.receive(pkt(1000, 5, 320), 0.03) == []  # repeated update
    assert rx.receive(pkt(1000, 5, 800, end=True), 0.06) == [DtmfEnd("5", 100, 1000)]
    assert rx.receive(pkt(1000, 5, 800, end=True), 0.08) == []  # §2.5.1.4 repeats
    assert rx.receive(pkt(1000, 5, 800, end=True), 0.10) == []
    assert rx.receive(pkt(1000, 5, 480), 0.11) == []  # a late update after the end
    assert rx.poll(5.0) == [] and rx.active_digit is None
    assert rx.stats["duplicate"] == 4 and rx.stats["events"] == 1


def test_receiver_lost_start_reorder_and_only_end() -> None:
    rx = DtmfReceiver(PT, 8000)
    # start lost: the first packet seen is an update
    assert rx.receive(pkt(0, 1, 480), 0.0) == [DtmfStart("1", 0)]
    # reordered: an older update arrives after a newer one
    assert rx.receive(pkt(0, 1, 320), 0.01) == []
    assert rx.receive(pkt(0, 1, 640, end=True), 0.02) == [DtmfEnd("1", 80, 0)]
    # only the end packet of the next digit got through
    assert rx.receive(pkt(2000, 2, 800, end=True), 0.3) == [DtmfStart("2", 2000), DtmfEnd("2", 100, 2000)]
    # a very late packet of the first digit is not a new press
    assert rx.receive(pkt(0, 1, 160, marker=True), 0.4) == []
    assert rx.stats["events"] == 2 and rx.stats["duplicate"] == 2
    # a press whose every packet came after the next press began is reported late, at once
    assert rx.receive(pkt(6000, 4, 400, marker=True), 0.8) == [DtmfStart("4", 6000)]
    assert rx.receive(pkt(4000, 3, 800, end=True), 0.81) == [DtmfStart("3", 4000), DtmfEnd("3", 100, 4000)]
    assert rx.receive(pkt(4000, 3, 800, end=True), 0.82) == []
    assert rx.receive(pkt(2200, 9, 400), 0.83) == []  # inside a known press: not a press
    assert rx.active_digit == "4"
    assert (rx.stats["missed"], rx.stats["late"], rx.stats["events"]) == (1, 1, 4)


def test_receiver_timeout_and_implicit_end() -> None:
    rx = DtmfReceiver(PT, 8000, timeout_ms=500)
    rx.receive(pkt(100, 9, 400, marker=True), 0.0)
    rx.receive(pkt(100, 9, 800), 0.05)
    assert rx.poll(0.5) == []
    assert rx.poll(0.55) == [DtmfEnd("9", 100, 100, end_seen=False)]
    assert rx.receive(pkt(100, 9, 1200, end=True), 0.6) == []  # too late: already reported
    # every end packet lost, and the next press arrives before the timeout
    rx.receive(pkt(5000, 3, 400, marker=True), 1.0)
    assert rx.receive(pkt(6200, 4, 400, marker=True), 1.1) == [DtmfEnd("3", 50, 5000, end_seen=False),
                                                                 DtmfStart("4", 6200)]
    assert rx.stats["timeout"] == 1 and rx.stats["implicit_end"] == 1


def test_receiver_same_digit_twice_is_two_presses() -> None:
    rx = DtmfReceiver(PT, 8000)
    out = rx.receive(pkt(0, 5, 400, marker=True), 0.0) + rx.receive(pkt(0, 5, 800, end=True), 0.05)
    # the second press: its start and end packets lost, the update gives it away by its timestamp
    out += rx.receive(pkt(1600, 5, 400), 0.25) + rx.poll(1.0)
    assert digits_of(out) == ("55", "55")
    assert [e.start_ts for e in out if isinstance(e, DtmfStart)] == [0, 1600]


def test_receiver_long_event_segments_even_if_segment_ends_are_lost() -> None:
    sender, clock = make_sender(50.0)
    sender.start("D", 0.0, duration_ms=10000)
    out = run_sender(sender, 11.0, step=0.05)
    for drop_segment_end in (False, True):
        rx = DtmfReceiver(PT, 8000)
        events: list = []
        for t, p in out:
            if drop_segment_end and parse_telephone_events(p.payload)[0].duration == 0xFFFF:
                continue
            events += rx.receive(p, t)
        assert events == [DtmfStart("D", clock.timestamp_at(0.0)), DtmfEnd("D", 10000, clock.timestamp_at(0.0))]


def test_receiver_drops_bad_input_and_counts_it() -> None:
    rx = DtmfReceiver(PT, 8000)
    assert rx.receive(RtpPacket(PT, 1, 0, 7, b"\x01\x02\x03"), 0.0) == []
    assert rx.receive(RtpPacket(0, 2, 0, 7, b"\xff" * 160), 0.0) == []
    assert rx.receive(pkt(0, 36, 400, marker=True), 0.0) == []  # a fax tone event (RFC 4734)
    assert rx.stats["malformed"] == 1 and rx.stats["other_payload_type"] == 1
    assert rx.stats["unsupported_event"] == 1 and rx.stats["events"] == 0
    # SSRC change ends the press of the old source
    rx.receive(pkt(0, 1, 400, marker=True, ssrc=1), 0.0)
    assert rx.receive(pkt(0, 1, 400, marker=True, ssrc=2), 0.01) == [DtmfEnd("1", 50, 0, end_seen=False),
                                                                      DtmfStart("1", 0)]


def test_receiver_packed_events() -> None:
    payload = TelephoneEvent(1, True, 10, 800).to_bytes() + TelephoneEvent(2, False, 10, 400).to_bytes()
    rx = DtmfReceiver(PT, 8000)
    out = rx.receive(RtpPacket(PT, 1, 4000, 7, payload, True), 0.0)
    assert out == [DtmfStart("1", 4000), DtmfEnd("1", 100, 4000), DtmfStart("2", 4800)]


@given(st.binary(max_size=40), st.integers(0, 0xFFFFFFFF), st.booleans())
def test_receiver_never_raises_on_garbage(payload: bytes, ts: int, marker: bool) -> None:
    rx = DtmfReceiver(PT, 8000)
    rx.receive(RtpPacket(PT, 1, ts, 7, payload, marker), 0.0)
    rx.poll(1.0)


@pytest.mark.parametrize("interval_ms", [20.0, 50.0])
def test_round_trip_with_loss_and_reordering(interval_ms: float) -> None:
    """Every digit decoded exactly once, duration within one update interval, whatever is lost:
    up to 2 of the 3 end packets, the start packet, all end packets of some digits (timeout or
    the next digit ends it), and reordering by up to 30 ms of jitter."""
    for seed in range(60):
        rng = random.Random(seed)
        sender, clock = make_sender(interval_ms, gap_ms=50.0)
        durations = {d: rng.choice([40, 60, 100, 130, 250]) for d in ALL}
        for d in ALL:
            sender.start(d, 0.0, duration_ms=durations[d])
        sent = run_sender(sender, 12.0, step=0.02)
        by_event: dict[int, list[int]] = {}
        for i, (_, p) in enumerate(sent):
            by_event.setdefault(p.timestamp, []).append(i)
        drop: set[int] = set()
        for idx in by_event.values():
            ends = [i for i in idx if parse_telephone_events(sent[i][1].payload)[0].end]
            if len(idx) > len(ends) and rng.random() < 0.4:
                drop.add(idx[0])  # the start packet
            if seed % 10 == 9 and rng.random() < 0.3:
                drop.update(ends)  # every end packet
            else:
                drop.update(rng.sample(ends, rng.randint(0, 2)))
            if drop.issuperset(idx):  # a digit with no packet left cannot be decoded at all
                drop.discard(ends[-1])
        jitter = 0.03 if seed % 2 else 0.0
        arrivals = sorted((t + rng.uniform(0, jitter), i) for i, (t, _) in enumerate(sent) if i not in drop)
        rx = DtmfReceiver(PT, 8000, timeout_ms=500)
        events: list = []
        for t, i in arrivals:
            events += rx.poll(t) + rx.receive(sent[i][1], t)
        events += rx.poll(arrivals[-1][0] + 1.0)
        if jitter:  # a press can be overtaken by the next one: once each, in start_ts order
            events.sort(key=lambda e: ts_diff(e.start_ts, clock.ts0))
        assert digits_of(events) == (ALL, ALL), seed
        for e in (e for e in events if isinstance(e, DtmfEnd)):
            assert durations[e.digit] - interval_ms <= e.duration_ms <= durations[e.digit], (seed, e)
            if e.end_seen:
                assert e.duration_ms == durations[e.digit]


# ---------------------------------------------------------------------------------------------
# SIP INFO bodies
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, expected", [
    (b"Signal=5\r\nDuration=160\r\n", ("5", 160)),
    (b"signal= 5\nduration = 250\n", ("5", 250)),
    (b"SIGNAL=a\r\nDURATION=100", ("A", 100)),
    (b"Signal=*\r\n", ("*", 100)),
    (b"Signal= *\r\nDuration= 120\r\n", ("*", 120)),
    (b"Signal=10\r\nDuration=160\r\n", ("*", 160)),
    (b"Signal=11\r\n", ("#", 100)),
    (b"Signal=16\r\nDuration=500\r\n", ("R", 500)),
    (b"Signal: 9\r\nDuration: 80\r\n", ("9", 80)),
    (b"Signal=#\r\nDuration=160\r\nVolume=10\r\n\r\n", ("#", 160)),
    (b"5", ("5", 100)),
    (b"  #\r\n", ("#", 100)),
    ("Signal=0", ("0", 100)),
])
def test_parse_dtmf_relay_variants(body: bytes | str, expected: tuple[str, int]) -> None:
    assert parse_dtmf_relay(body) == expected


def test_parse_dtmf_relay_content_types() -> None:
    assert parse_dtmf_relay(b"5\r\n", "application/dtmf") == ("5", 100)
    assert parse_dtmf_relay(b"Signal=1\r\n", "Application/DTMF-Relay; charset=utf-8") == ("1", 100)
    with pytest.raises(DtmfParseError):
        parse_dtmf_relay(b"Signal=1\r\n", "application/dtmf")
    with pytest.raises(DtmfParseError):
        parse_dtmf_relay(b"Signal=1\r\n", "text/plain")


@pytest.mark.parametrize("body", [
    b"", b"\r\n", b"hello", b"Signal=X", b"Signal=12345", b"Signal=", b"Duration=100",
    b"Signal=5\r\nDuration=abc", b"Signal=5\r\nDuration=-5", b"Signal=5\r\nDuration=99999999",
    b"\xff\xfe\x00", b"Signal=5\r\n" + b"x" * 2000, b"Signal=5\r\n=garbage", b"55", b"1\r\n2\r\n",
])
def test_parse_dtmf_relay_garbage(body: bytes) -> None:
    with pytest.raises(DtmfParseError):
        parse_dtmf_relay(body)


@given(st.binary(max_size=200))
def test_parse_dtmf_relay_raises_only_its_error(body: bytes) -> None:
    try:
        digit, duration = parse_dtmf_relay(body)
    except DtmfParseError:
        return
    assert digit in ALL + "R" and 0 < duration <= 60000


def test_build_dtmf_relay() -> None:
    assert build_dtmf_relay("#", 160) == b"Signal=#\r\nDuration=160\r\n"
    for d in ALL + "R":
        assert parse_dtmf_relay(build_dtmf_relay(d.lower(), 250)) == (d, 250)
    with pytest.raises(MediaError):
        build_dtmf_relay("X", 100)
    with pytest.raises(MediaError):
        build_dtmf_relay("1", 0)


# ---------------------------------------------------------------------------------------------
# in-band: levels, Q.24 acceptance and rejection
# ---------------------------------------------------------------------------------------------
def test_dbm0_reference_is_the_digital_milliwatt() -> None:
    # G.711 Table 5: the µ-law digital milliwatt 1E 0B 0B 1E 9E 8B 8B 9E decodes to 0 dBm0
    dmw = ulaw_decode(np.array([0x1E, 0x0B, 0x0B, 0x1E, 0x9E, 0x8B, 0x8B, 0x9E], dtype=np.uint8))
    assert np.sqrt(np.mean(dmw.astype(float) ** 2)) == pytest.approx(DBM0_RMS, rel=1e-3)
    tone = dtmf_tone("5", 1000, level_dbm0=-10.0).astype(float)
    assert 20 * np.log10(np.sqrt(np.mean(tone ** 2)) / DBM0_RMS) == pytest.approx(-10.0, abs=0.05)
    assert np.abs(dtmf_tone("D", 1000, level_dbm0=0.0)).max() <= 32767  # 0 dBm0 fits in int16


@pytest.mark.parametrize("level", [0.0, -10.0, -20.0, -26.0])
@pytest.mark.parametrize("ulaw", [False, True])
def test_all_digits_detected(level: float, ulaw: bool) -> None:
    x = generate_dtmf(ALL, tone_ms=100, gap_ms=100, level_dbm0=level, lead_ms=50)
    if ulaw:
        x = ulaw_decode(ulaw_encode(x))
    out = detect(x)
    assert digits_of(out) == (ALL, ALL)
    for i, e in enumerate(e for e in out if isinstance(e, DtmfStart)):
        assert e.source == "inband" and abs(e.start_ts - (400 + 1600 * i)) <= 40  # ±5 ms
    assert all(abs(e.duration_ms - 100) <= 5 for e in out if isinstance(e, DtmfEnd))


def test_16khz_input() -> None:
    x = generate_dtmf(ALL, tone_ms=60, gap_ms=60, sample_rate=16000, level_dbm0=-20.0)
    out = detect(x, 16000)
    assert digits_of(out) == (ALL, ALL)
    assert all(abs(e.duration_ms - 60) <= 5 for e in out if isinstance(e, DtmfEnd))


def test_quiet_and_noisy() -> None:
    rng = np.random.default_rng(5)
    quiet = generate_dtmf(ALL, level_dbm0=-45.0)
    assert detect(quiet) == []  # below the per-tone threshold (-36 dBm0)
    x = generate_dtmf(ALL, level_dbm0=-20.0).astype(float)
    noise = rng.normal(0, DBM0_RMS * 10 ** (-40 / 20), x.size)  # white noise at -40 dBm0: 20 dB SNR
    assert digits_of(detect(x + noise)) == (ALL, ALL)


def test_streaming_in_odd_chunks_matches_one_block() -> None:
    x = generate_dtmf("159D#", tone_ms=70, gap_ms=50, level_dbm0=-15.0)
    rng = np.random.default_rng(1)
    det, out, i = GoertzelDetector(), [], 0
    while i < x.size:
        n = int(rng.integers(1, 400))
        out += det.feed(x[i:i + n])
        i += n
    assert out + det.flush() == detect(x)


@pytest.mark.parametrize("offsets", [(0.015, 0.015), (-0.015, -0.015), (0.015, -0.015), (-0.015, 0.015)])
def test_frequency_deviation_accepted(offsets: tuple[float, float]) -> None:
    for d in ALL:
        x = np.concatenate([dtmf_tone(d, 80, level_dbm0=-10.0, freq_offset=offsets), np.zeros(400, np.int16)])
        assert digits_of(detect(x)) == (d, d), (d, offsets)


@pytest.mark.parametrize("offsets", [(0.035, 0.0), (-0.035, 0.0), (0.0, 0.035), (0.0, -0.035)])
def test_frequency_deviation_rejected(offsets: tuple[float, float]) -> None:
    for d in ALL:
        x = np.concatenate([dtmf_tone(d, 200, level_dbm0=-10.0, freq_offset=offsets), np.zeros(400, np.int16)])
        assert detect(x) == [], (d, offsets)


@pytest.mark.parametrize("twist, detected", [
    (-7.5, True), (-9.0, False),  # normal twist: high group weaker, up to 8 dB
    (3.5, True), (5.0, False),    # reverse twist: high group stronger, up to 4 dB
    (0.0, True),
])
def test_twist_limits(twist: float, detected: bool) -> None:
    for d in "1590#D":
        x = np.concatenate([dtmf_tone(d, 100, level_dbm0=-10.0, twist_db=twist), np.zeros(400, np.int16)])
        assert bool(detect(x)) == detected, (d, twist)


def test_minimum_tone_duration() -> None:
    rng = np.random.default_rng(3)
    for trial in range(48):
        d = ALL[trial % 16]
        lead = np.zeros(int(rng.integers(100, 200)), np.int16)
        phase = int(rng.integers(0, 1000))
        for ms, accepted in ((40, True), (30, False), (25, False), (20, False)):
            x = np.concatenate([lead, dtmf_tone(d, ms, level_dbm0=-10.0, start_sample=phase),
                                np.zeros(400, np.int16)])
            assert digits_of(detect(x)) == ((d, d) if accepted else ("", "")), (d, ms)


def test_pauses_separate_digits_and_short_interruptions_do_not() -> None:
    rng = np.random.default_rng(4)
    for digits in ("12345", "5555", "*#*#"):
        x = generate_dtmf(digits, tone_ms=int(rng.integers(40, 60)), gap_ms=40, level_dbm0=-10.0)
        assert digits_of(detect(x)) == (digits, digits)
        assert digits_of(detect(ulaw_decode(ulaw_encode(x)))) == (digits, digits)
    silence = np.zeros(400, np.int16)
    tone = np.concatenate([silence[:200], dtmf_tone("8", 200, level_dbm0=-10.0), silence])
    tone[1000:1080] = 0  # a 10 ms drop-out in the middle
    out = detect(tone)
    assert digits_of(out) == ("8", "8") and abs(out[-1].duration_ms - 200) <= 5


def test_second_harmonics_are_rejected() -> None:
    # the two tones plus their second harmonics at -12 dB: 94 % of the energy is in the pair,
    # so only the harmonic check stops it; at -30 dB it is still a good digit
    for harm_db, accepted in ((-30.0, True), (-12.0, False)):
        for d in "1593":
            tone = dtmf_tone(d, 100, level_dbm0=-10.0).astype(float)
            t = np.arange(tone.size) / 8000
            lo, hi = {"1": (697, 1209), "5": (770, 1336), "9": (852, 1477), "3": (697, 1477)}[d]
            a = np.sqrt(2) * DBM0_RMS * 10 ** (-13 / 20) * 10 ** (harm_db / 20)
            x = tone + a * (np.sin(2 * np.pi * 2 * lo * t) + np.sin(2 * np.pi * 2 * hi * t))
            x = np.concatenate([np.zeros(200), x, np.zeros(400)])
            assert bool(detect(x)) == accepted, (d, harm_db)


def test_detector_rejects_bad_configuration() -> None:
    with pytest.raises(MediaError):
        GoertzelDetector(4000)
    with pytest.raises(MediaError):
        GoertzelDetector(8000, block_ms=15.0)


# ---------------------------------------------------------------------------------------------
# talk-off: speech and music must not produce digits
# ---------------------------------------------------------------------------------------------
SPEECH = ("My account number is 1 2 3 4 5 6 7 8 9 0, star, pound. Please call me back at five five "
          "five, one two three four. Press nine for the operator; the quick brown fox jumps over the "
          "lazy dog, oooh, aaah, eeee.")
VOICES = ("en", "en-us", "en+f3", "en+m3", "en-gb-x-rp", "de", "fr", "es")
MUSIC = (  # sox synth recipes: plucked chords, harmonic-rich waveforms, a sweep, noise
    ["synth", "6", "pluck", "C4", "pluck", "E4", "pluck", "G4"],
    ["synth", "6", "pluck", "A4", "pluck", "C5", "pluck", "E5", "pluck", "A5"],
    ["synth", "6", "square", "440", "square", "660"],
    ["synth", "6", "sawtooth", "220", "sawtooth", "277", "sawtooth", "330"],
    ["synth", "6", "sine", "300-3000"],
    ["synth", "6", "pinknoise"],
    ["synth", "4", "pluck", "G3", "pluck", "B3", "pluck", "D4", "pluck", "G4", "pluck", "B4"],
    ["synth", "4", "trapezium", "523", "sine", "784", "sine", "1046"],
)


def _sox_raw(args: list[str], src: str | None = None) -> np.ndarray:
    cmd = ["sox"] + ([src] if src else ["-n"]) + ["-t", "raw", "-r", "8000", "-e", "signed-integer",
                                                  "-b", "16", "-c", "1", "-"]
    if not src:
        cmd += args
    raw = subprocess.run(cmd, capture_output=True, check=True, timeout=30).stdout
    return np.frombuffer(raw, dtype="<i2").astype(np.float64)


@pytest.fixture(scope="module")
def talk_off_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    assert shutil.which("espeak-ng") and shutil.which("sox"), "make test-deps installs espeak-ng and sox"
    tmp: Path = tmp_path_factory.mktemp("talkoff")
    corpus = {}
    for v in VOICES:
        wav = tmp / f"{v}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), "-v", v, SPEECH], check=True, capture_output=True, timeout=30)
        corpus[f"speech-{v}"] = _sox_raw([], str(wav))
    for i, args in enumerate(MUSIC):
        corpus[f"music-{i}"] = _sox_raw(args)
    return corpus


def test_talk_off_speech_and_music(talk_off_corpus: dict[str, np.ndarray]) -> None:
    total_s, hits = 0.0, {}
    for name, x in talk_off_corpus.items():
        assert x.size > 8000, name
        for level in (-3.0, -15.0, -30.0):  # peak level in dBFS
            y = x / np.abs(x).max() * 32767 * 10 ** (level / 20)
            for variant in (y, ulaw_decode(ulaw_encode(np.round(y)))):
                total_s += variant.size / 8000
                found = detect(variant)
                if found:
                    hits[(name, level)] = digits_of(found)
    assert hits == {}
    assert total_s > 600  # over ten minutes of speech and music, zero digits
