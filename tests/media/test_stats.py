"""media/stats.py on virtual time: RFC 3550 §A.1 validation, §A.3 loss, §A.8 jitter, LSR/DLSR and
RTT between two simulated endpoints that exchange real RTCP bytes."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.errors import MediaError
from media.rtcp import (
    ReceiverReport,
    ReportBlock,
    SenderReport,
    SourceDescription,
    build_compound,
    ntp_from_seconds,
    ntp_middle32,
    parse_compound,
)
from media.rtp import RtpPacket
from media.stats import ReceiverStats, SenderStats, rtt_from_report

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz
SSRC = 0x5EED0001


def pkt(i: int, *, start_seq: int = 1000, start_ts: int = 0, ssrc: int = SSRC, payload: bytes = b"\xff" * 160
        ) -> RtpPacket:
    """The i-th packet of a stream (20 ms G.711 frames)."""
    return RtpPacket(0, (start_seq + i) & 0xFFFF, (start_ts + i * FRAME) & 0xFFFFFFFF, ssrc, payload)


def feed(rs: ReceiverStats, arrivals: Iterable[tuple[RtpPacket, float]]) -> Counter[str]:
    return Counter(rs.update(p, t) for p, t in arrivals)


def in_order(indices: Iterable[int], delay: float = 0.05, **kw: int) -> list[tuple[RtpPacket, float]]:
    return [(pkt(i, **kw), i * 0.02 + delay) for i in indices]


# -- §A.1 sequence validation ------------------------------------------------------------------------

def test_probation_then_valid() -> None:
    rs = ReceiverStats(RATE)
    assert not rs.valid
    assert rs.update(pkt(0), 0.0) == "probation"
    with pytest.raises(MediaError):
        rs.report_block(0.0)
    assert rs.update(pkt(1), 0.02) == "ok"
    assert rs.valid and rs.base_seq == 1001 and rs.expected == 1 and rs.received == 1


def test_probation_restarts_on_a_gap() -> None:
    rs = ReceiverStats(RATE)
    assert [rs.update(pkt(i), i * 0.02) for i in (0, 5, 6, 7)] == ["probation", "probation", "ok", "ok"]
    assert rs.base_seq == 1006 and rs.expected == 2


def test_min_sequential_one_is_valid_at_once() -> None:
    rs = ReceiverStats(RATE, min_sequential=1)
    assert rs.update(pkt(0), 0.0) == "ok" and rs.valid and rs.received == 1


def test_clean_stream() -> None:
    rs = ReceiverStats(RATE)
    counts = feed(rs, in_order(range(500)))
    assert counts == Counter({"ok": 499, "probation": 1})
    block = rs.report_block(10.0)
    assert block == ReportBlock(SSRC, 0, 0, 1499, 0, 0, 0)
    assert rs.jitter < 1e-9 and rs.octets == 499 * 160


def test_sequence_wrap_at_65535() -> None:
    rs = ReceiverStats(RATE)
    counts = feed(rs, in_order(range(3000), start_seq=65000))
    assert counts["ok"] == 2999
    assert rs.cycles == 65536 and rs.max_seq == (65000 + 2999) & 0xFFFF
    assert rs.report_block(60.0).highest_seq == 65000 + 2999
    assert rs.expected == 2999 and rs.lost == 0


def test_max_dropout_boundary() -> None:
    rs = ReceiverStats(RATE)
    feed(rs, in_order(range(10)))
    assert rs.update(pkt(9 + 2999), 1.0) == "ok"  # udelta 2999 < MAX_DROPOUT: a gap of 2998 lost
    assert rs.lost == 2998
    rs = ReceiverStats(RATE)
    feed(rs, in_order(range(10)))
    assert rs.update(pkt(9 + 3000), 1.0) == "bad-seq"
    assert rs.received == 9


def test_max_misorder_boundary() -> None:
    rs = ReceiverStats(RATE)
    feed(rs, in_order([0, 1] + list(range(3, 200))))
    assert rs.update(pkt(2), 5.0) == "bad-seq"  # 197 behind: far beyond MAX_MISORDER
    rs = ReceiverStats(RATE)
    feed(rs, in_order([0, 1, 2] + list(range(4, 103)) + [104]))  # max is 104
    assert rs.update(pkt(4), 5.0) == "bad-seq"  # exactly 100 behind: a jump (§A.1 "<=")
    assert rs.update(pkt(5), 5.0) == "duplicate"  # 99 behind and already seen
    assert rs.update(pkt(3), 5.0) == "bad-seq"
    assert rs.update(pkt(103), 5.0) == "reordered"


def test_large_jump_resyncs_after_two_sequential_packets() -> None:
    rs = ReceiverStats(RATE)
    feed(rs, in_order([*range(50), 49, 51, 50, *range(52, 100)]))
    assert (rs.duplicates, rs.reordered) == (1, 1)
    assert rs.update(pkt(20_000), 3.0) == "bad-seq"
    assert rs.update(pkt(30_000), 3.02) == "bad-seq"  # not the successor of the first jump
    assert rs.update(pkt(30_001), 3.04) == "ok"  # §A.1: the other side restarted
    assert rs.stats["resync"] == 1
    assert rs.base_seq == (1000 + 30_001) & 0xFFFF and rs.expected == 1 and rs.received == 1
    assert (rs.duplicates, rs.reordered, rs.lost) == (0, 0, 0)
    assert feed(rs, in_order(range(30_002, 30_050)))["ok"] == 48 and rs.expected == 49


def test_ssrc_change_resets_and_is_counted() -> None:
    rs = ReceiverStats(RATE)
    feed(rs, in_order(range(100)))
    rs.on_sender_report(SenderReport(SSRC, ntp_from_seconds(2.0), 0, 100, 16000), 2.0)
    other = dict(start_seq=42, start_ts=987_654_321, ssrc=0xB0B)
    assert rs.update(pkt(0, **other), 2.1) == "ssrc-change"
    assert rs.stats["ssrc-change"] == 1 and rs.ssrc == 0xB0B and not rs.valid
    with pytest.raises(MediaError):
        rs.report_block(2.1)
    counts = feed(rs, [(pkt(i, **other), 2.1 + i * 0.02) for i in range(1, 50)])
    assert counts == Counter({"ok": 49})
    block = rs.report_block(3.5)
    assert block.ssrc == 0xB0B and block.highest_seq == 42 + 49 and block.cumulative_lost == 0
    assert (block.lsr, block.dlsr) == (0, 0)  # the SR was about the old source
    assert rs.jitter < 1e-9  # no transit step across the change


# -- loss (§A.3) -------------------------------------------------------------------------------------

def test_fraction_lost_matches_injected_loss() -> None:
    rng = np.random.default_rng(7)
    rates = [0.0, 0.01, 0.05, 0.2, 0.5]
    n = 1000
    rs = ReceiverStats(RATE)
    prev_max = 0
    total_lost = 0
    for k, rate in enumerate(rates):
        idx = np.arange(k * n, (k + 1) * n)
        keep = rng.random(n) >= rate
        keep[-1] = True  # keep each interval's last packet so that "expected" covers the interval
        if k == 0:
            keep[:2] = True
        feed(rs, in_order(idx[keep].tolist()))
        block = rs.report_block((k + 1) * n * 0.02 + 0.1)
        # the exact §A.3 arithmetic from what was injected
        top = int(idx[-1])
        expected_k = top - prev_max if k else top  # the base is packet 1
        received_k = int(keep.sum()) - (1 if k == 0 else 0)  # packet 0 was the probation packet
        lost_k = expected_k - received_k
        total_lost += lost_k
        assert block.fraction_lost == (lost_k << 8) // expected_k
        assert abs(block.fraction_lost / 256 - rate) <= 4 * math.sqrt(rate * (1 - rate) / n) + 1 / 256
        assert block.cumulative_lost == total_lost
        prev_max = top
    assert rs.lost == total_lost and rs.expected == len(rates) * n - 1
    assert rs.loss_fraction == pytest.approx(total_lost / rs.expected)


def test_fraction_lost_is_per_interval_and_zero_when_nothing_expected() -> None:
    rs = ReceiverStats(RATE)
    feed(rs, in_order([0, 1, 2, 5, 6]))  # 2 of 6 expected since base (1001) lost
    assert rs.report_block(1.0).fraction_lost == (2 << 8) // 6
    assert rs.report_block(2.0).fraction_lost == 0  # nothing new
    feed(rs, in_order([3, 4]))  # late packets fill the hole: more received than expected
    block = rs.report_block(3.0)
    assert block.fraction_lost == 0 and block.cumulative_lost == 0


def test_cumulative_lost_clamped_in_report() -> None:
    rs = ReceiverStats(RATE, max_dropout=32_000)
    feed(rs, in_order([0, 1]))
    i = 1
    for _ in range(280):  # jumps of 31 000 are in order under this MAX_DROPOUT: 30 999 lost each
        i += 31_000
        assert rs.update(pkt(i), 1.0) == "ok"
    assert rs.lost == 280 * 30_999 > 0x7FFFFF
    assert rs.report_block(1.0).cumulative_lost == 0x7FFFFF
    assert rs.report_block(1.0).highest_seq == 1000 + i


# -- reordering and duplicates -----------------------------------------------------------------------

def test_reordered_packets_are_counted_and_not_lost() -> None:
    order = list(range(200))
    for i in range(10, 190, 10):
        order[i], order[i + 1] = order[i + 1], order[i]
    order[100:104] = [103, 100, 101, 102]
    rs = ReceiverStats(RATE)
    counts = feed(rs, [(pkt(i), k * 0.02) for k, i in enumerate(order)])
    assert counts["reordered"] == 17 + 3 and rs.reordered == 20
    assert rs.lost == 0 and rs.report_block(5.0).fraction_lost == 0


def test_duplicates_detected_immediate_and_late() -> None:
    rs = ReceiverStats(RATE)
    arrivals = in_order(range(100))
    arrivals.insert(50, arrivals[49])  # immediate duplicate (same sequence as the highest)
    arrivals.insert(80, arrivals[60])  # late duplicate, 20 packets on
    arrivals.append(arrivals[99])  # late duplicate of a packet 2 back
    counts = feed(rs, arrivals)
    assert counts["duplicate"] == 3 and rs.duplicates == 3
    assert rs.received == 99 + 3 and rs.lost == -3  # §A.3: duplicates make the count negative
    assert rs.loss_fraction == 0.0
    assert rs.report_block(5.0).cumulative_lost == -3


def test_reordering_across_the_wrap() -> None:
    rs = ReceiverStats(RATE)
    order = [0, 1, 2, 3, 5, 4, 7, 6, 8]  # with start 65531: 65535 and 0 swapped, 1 and 2 swapped
    counts = feed(rs, [(pkt(i, start_seq=65531), k * 0.02) for k, i in enumerate(order)])
    assert counts["reordered"] == 2 and rs.lost == 0 and rs.extended_max == 65531 + 8


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 65535), st.lists(st.booleans(), min_size=5, max_size=300),
       st.integers(0, 2**32 - 1), st.data())
def test_loss_invariants_under_reorder_and_duplicates(start: int, keep: list[bool], seed: int,
                                                       data: st.DataObject) -> None:
    """Whatever the local reordering and duplication, at the end the lost count is exactly the
    number of distinct packets that never arrived (within the validated range)."""
    rnd = random.Random(seed)
    keep[0] = keep[1] = keep[-1] = True
    sent = [i for i, k in enumerate(keep) if k]
    body = sent[2:]
    # local reordering: sort by index plus a random displacement of up to 20 places
    body.sort(key=lambda i: i + rnd.uniform(0, 20))
    dups = [rnd.choice(body) for _ in range(data.draw(st.integers(0, 5)))] if body else []
    arrivals = sent[:2] + body
    for d in dups:  # each within 50 arrivals of its original (MAX_MISORDER is 100)
        first = arrivals.index(d)
        arrivals.insert(rnd.randrange(first + 1, min(len(arrivals), first + 50) + 1), d)
    rs = ReceiverStats(RATE)
    counts = feed(rs, [(pkt(i, start_seq=start), k * 0.02) for k, i in enumerate(arrivals)])
    assert counts["bad-seq"] == 0
    assert counts["duplicate"] == len(dups) == rs.duplicates
    assert rs.expected == len(keep) - 1
    assert rs.expected - (rs.received - rs.duplicates) == keep.count(False)
    assert rs.base_seq == (start + 1) & 0xFFFF  # cycles count from the validating packet (§A.1)
    assert rs.extended_max - rs.base_seq == len(keep) - 2


# -- jitter (§A.8) -----------------------------------------------------------------------------------

def test_jitter_exact_on_a_deterministic_pattern() -> None:
    """Arrivals alternate 0 and +2 ms off a constant delay: |D| is 16 ts units every packet after the
    first pair, so J_n = 16 · (1 − (15/16)^n)."""
    rs = ReceiverStats(RATE)
    offsets = [0.002 * (i % 2) for i in range(60)]
    feed(rs, [(pkt(i), i * 0.02 + 0.05 + offsets[i]) for i in range(60)])
    n = 59  # D values: packets 1..59 (the probation packet is the first reference)
    assert rs.jitter == pytest.approx(16 * (1 - (15 / 16) ** n), rel=1e-9)
    assert rs.jitter_ms == pytest.approx(rs.jitter / 8)


@pytest.mark.parametrize("model", ["gauss", "uniform"])
def test_jitter_converges_to_mean_absolute_transit_difference(model: str) -> None:
    """With i.i.d. arrival noise n_i, D = n_i − n_(i−1) and the §A.8 estimate averages E|D|:
    Gaussian σ: E|D| = 2σ/√π;  uniform on [−a, a]: D is triangular on [−2a, 2a], E|D| = 2a/3."""
    rng = np.random.default_rng(11)
    n = 20_000
    if model == "gauss":
        sigma = 0.003
        noise = rng.normal(0.0, sigma, n)
        expected_s = 2 * sigma / math.sqrt(math.pi)
    else:
        a = 0.004
        noise = rng.uniform(-a, a, n)
        expected_s = 2 * a / 3
    send = np.arange(n) * 0.02
    arrival = send + 0.08 + noise
    order = np.argsort(arrival, kind="stable")  # deliver in arrival order
    rs = ReceiverStats(RATE)
    trace = np.empty(n)
    for k, i in enumerate(order):
        rs.update(pkt(int(i)), float(arrival[i]))
        trace[k] = rs.jitter
    mean_j = trace[1000:].mean()
    assert mean_j == pytest.approx(expected_s * RATE, rel=0.03)
    assert trace[1000:].mean() / RATE * 1000 == pytest.approx(expected_s * 1000, rel=0.03)
    assert rs.report_block(n * 0.02).jitter == int(rs.jitter)


def test_jitter_ignores_timestamp_wrap_and_counts_jumps() -> None:
    rs = ReceiverStats(RATE)
    feed(rs, in_order(range(100), start_ts=2**32 - 50 * FRAME))
    assert rs.jitter < 1e-9
    rs.update(RtpPacket(0, (1000 + 100) & 0xFFFF, (2**32 - 50 * FRAME + 100 * FRAME + 80_000) % 2**32, SSRC,
                        b"x"), 100 * 0.02 + 0.05)  # a 10 s timestamp jump without a sequence jump
    assert rs.stats["timestamp-jump"] == 1 and rs.jitter < 1e-9


# -- LSR / DLSR and RTT (§6.4.1) ---------------------------------------------------------------------

def test_lsr_dlsr() -> None:
    rs = ReceiverStats(RATE)
    feed(rs, in_order(range(10)))
    ntp = ntp_from_seconds(1_700_000_000.25)
    rs.on_sender_report(SenderReport(SSRC, ntp, 1234, 10, 1600), 10.0)
    block = rs.report_block(11.5)
    assert block.lsr == ntp_middle32(ntp) and block.dlsr == int(1.5 * 65536)


class Endpoint:
    """One side of a call: its own clock offset, a sender for its stream, a receiver for the other."""

    def __init__(self, ssrc: int, clock_base: float, wallclock: float) -> None:
        self.base = clock_base
        self.tx = SenderStats(ssrc, RATE, wallclock_offset=wallclock)
        self.rx = ReceiverStats(RATE)
        self.rtts: list[float] = []

    def now(self, t: float) -> float:
        return t + self.base

    def send_report(self, t: float) -> bytes:
        blocks = (self.rx.report_block(self.now(t)),) if self.rx.valid else ()
        sr = self.tx.sender_report(self.now(t), blocks)
        return build_compound([sr, SourceDescription.cname(self.tx.ssrc, f"{self.tx.ssrc:x}@sim")])

    def send_rr(self, t: float) -> bytes:
        rr = ReceiverReport(self.tx.ssrc, (self.rx.report_block(self.now(t)),))
        return build_compound([rr, SourceDescription.cname(self.tx.ssrc, "rr@sim")])

    def receive_rtcp(self, data: bytes, t: float) -> None:
        for p in parse_compound(data):
            if isinstance(p, SenderReport):
                self.rx.on_sender_report(p, self.now(t))
            if isinstance(p, SenderReport | ReceiverReport):
                for block in p.reports:
                    rtt = self.tx.on_report_block(block, self.now(t))
                    if rtt is not None:
                        self.rtts.append(rtt)


def test_rtt_between_two_simulated_endpoints() -> None:
    """A and B run on unrelated clocks; A→B takes 30 ms, B→A 50 ms; RTT must be 80 ms ± 1 ms."""
    a = Endpoint(0xA, clock_base=1000.0, wallclock=1_700_000_000.0)
    b = Endpoint(0xB, clock_base=77_777.123, wallclock=1_234_567.0)
    d_ab, d_ba = 0.030, 0.050
    rng = np.random.default_rng(3)
    for i in range(500):  # 10 s of media both ways
        t = i * 0.02
        pa, pb = pkt(i, ssrc=0xA), pkt(i, start_seq=7, ssrc=0xB)
        a.tx.on_sent(pa, a.now(t))
        b.tx.on_sent(pb, b.now(t))
        b.rx.update(pa, b.now(t + d_ab))
        a.rx.update(pb, a.now(t + d_ba))
    t = 10.0
    for _ in range(6):  # SR A → B, then B answers with an SR whose block is about A's stream
        a_sr = a.send_report(t)
        b.receive_rtcp(a_sr, t + d_ab)
        hold = float(rng.uniform(0.1, 4.0))
        b_sr = b.send_report(t + d_ab + hold)
        a.receive_rtcp(b_sr, t + d_ab + hold + d_ba)
        t += 5.0
    assert len(a.rtts) == 6
    assert all(abs(r - (d_ab + d_ba)) < 0.001 for r in a.rtts), a.rtts
    assert a.tx.rtt is not None and abs(a.tx.rtt - 0.080) < 0.001
    # and B learns the same RTT from A's next report
    assert len(b.rtts) == 5 and all(abs(r - 0.080) < 0.001 for r in b.rtts), b.rtts


def test_rtt_with_receiver_report_and_varying_delays() -> None:
    a = Endpoint(0xA, clock_base=5.0, wallclock=0.0)
    b = Endpoint(0xB, clock_base=9_999.0, wallclock=3.0)
    for i in range(50):
        b.rx.update(pkt(i, ssrc=0xA), b.now(i * 0.02))
        a.tx.on_sent(pkt(i, ssrc=0xA), a.now(i * 0.02))
    rnd = random.Random(5)
    t = 2.0
    for _ in range(20):
        d1, d2 = rnd.uniform(0.001, 0.4), rnd.uniform(0.001, 0.4)
        b.receive_rtcp(a.send_report(t), t + d1)
        hold = rnd.uniform(0.0, 6.0)
        a.receive_rtcp(b.send_rr(t + d1 + hold), t + d1 + hold + d2)
        assert abs(a.rtts[-1] - (d1 + d2)) < 0.001
        t += 7.0


def test_rtt_rejections() -> None:
    tx = SenderStats(0xA, RATE)
    assert tx.on_report_block(ReportBlock(0xB, 0, 0, 0, 0, 5, 5), 1.0) is None
    assert tx.stats["foreign-block"] == 1
    assert tx.on_report_block(ReportBlock(0xA, 0, 0, 0, 0, 0, 0), 1.0) is None  # no SR seen by the peer
    assert tx.on_report_block(ReportBlock(0xA, 0, 0, 0, 0, 12345, 0), 1.0) is None
    assert tx.stats["unknown-lsr"] == 1
    sr = tx.sender_report(10.0)
    lsr = ntp_middle32(sr.ntp_timestamp)
    assert tx.on_report_block(ReportBlock(0xA, 0, 0, 0, 0, lsr, 65536), 10.5) is None  # DLSR > elapsed
    assert tx.stats["negative-rtt"] == 1 and tx.rtt is None
    assert rtt_from_report(ReportBlock(0xA, 0, 0, 0, 0, lsr, 0), 10.25) == pytest.approx(0.25, abs=1e-4)
    assert rtt_from_report(ReportBlock(0xA, 0, 0, 0, 0, 0, 0), 10.25) is None


def test_sender_stats_counts_and_sr() -> None:
    tx = SenderStats(0xA, RATE, wallclock_offset=1_700_000_000.0, initial_timestamp=555)
    assert tx.rtp_timestamp_at(3.0) == 555
    for i in range(50):
        tx.on_sent(pkt(i, ssrc=0xA, start_ts=2**32 - 10 * FRAME, payload=b"\x00" * (160 if i % 2 else 80)), i * 0.02)
    sr = tx.sender_report(1.0 + 0.0125)
    assert (sr.packet_count, sr.octet_count) == (50, 25 * 160 + 25 * 80)
    # §6.4.1: the RTP timestamp of the SR is the one for the SR's instant, extrapolated
    last_ts = (2**32 - 10 * FRAME + 49 * FRAME) % 2**32
    assert sr.rtp_timestamp == (last_ts + round((1.0125 - 0.98) * RATE)) % 2**32
    assert sr.ntp_timestamp == ntp_from_seconds(1_700_000_001.0125)
    with pytest.raises(MediaError):
        tx.on_sent(pkt(0, ssrc=0xB), 2.0)
    with pytest.raises(ValueError):
        SenderStats(1, 0)
    with pytest.raises(ValueError):
        ReceiverStats(8000, max_misorder=5000)
