"""media/quality.py: the G.107 E-model against reference points, MOS, warnings at their exact
thresholds, burst ratio, and StreamQuality fed by a simulated stream on virtual time."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.quality import (
    CODEC_IMPAIRMENTS,
    CodecImpairment,
    EModelParams,
    QualitySnapshot,
    QualityThresholds,
    StreamQuality,
    burst_ratio,
    e_model,
    effective_ie,
    mos_from_r,
    r_factor,
    voip_metrics,
    warnings,
)
from media.rtcp import ExtendedReport, parse_compound
from media.rtp import RtpPacket
from media.stats import ReceiverStats

R0 = 93.2


# -- E-model -----------------------------------------------------------------------------------------

def test_default_parameters_give_93_2() -> None:
    r = e_model(EModelParams(), t=0, ta=0, tr=0, ie=0, bpl=1, ppl=0)
    assert r == pytest.approx(93.2062, abs=1e-3)  # G.107 §7: R = 93.2 with all defaults
    assert mos_from_r(93.2) == pytest.approx(4.41, abs=0.005)


def test_g711_clean_low_delay() -> None:
    for codec in ("PCMU", "PCMA", "g711"):
        r = r_factor(codec, 20.0, 0.0)
        assert 92.0 < r < 93.3
        assert mos_from_r(r) == pytest.approx(4.4, abs=0.02)


@pytest.mark.parametrize("loss, plc, bpl", [(5.0, True, 25.1), (5.0, False, 4.3), (1.0, True, 25.1),
                                           (10.0, True, 25.1), (2.0, False, 4.3)])
def test_random_loss_costs_ie_eff(loss: float, plc: bool, bpl: float) -> None:
    ie_eff = 0 + (95 - 0) * loss / (loss / 1.0 + bpl)
    assert effective_ie(0, bpl, loss) == pytest.approx(ie_eff)
    assert r_factor("PCMU", 0.0, loss, plc=plc) == pytest.approx(r_factor("PCMU", 0.0, 0.0) - ie_eff, abs=1e-9)
    assert r_factor("PCMU", 0.0, loss, plc=plc) == pytest.approx(R0 - ie_eff, abs=0.01)


def test_g711_5_percent_with_plc_reference_value() -> None:
    assert effective_ie(0, 25.1, 5.0) == pytest.approx(15.78, abs=0.01)
    assert r_factor("PCMU", 0.0, 5.0) == pytest.approx(77.42, abs=0.02)


def test_burstiness_makes_loss_worse() -> None:
    assert effective_ie(0, 25.1, 5.0, 2.0) == pytest.approx(95 * 5 / (2.5 + 25.1))
    assert r_factor("PCMU", 50, 5.0, burst_ratio=2.0) < r_factor("PCMU", 50, 5.0)


def test_delay_lowers_r_monotonically() -> None:
    assert r_factor("PCMU", 400, 0) < r_factor("PCMU", 200, 0) < r_factor("PCMU", 100, 0)
    delays = np.arange(0, 801, 5)
    rs = np.array([r_factor("PCMU", float(d), 1.0) for d in delays])
    assert np.all(np.diff(rs) <= 1e-9)
    assert rs[0] - rs[-1] > 40  # 800 ms one way is far beyond usable


def test_idd_term_matches_g107() -> None:
    """Only Ta differs: the difference is exactly −Idd, with Idd = 0 up to 100 ms."""
    p = EModelParams()
    base = e_model(p, t=150, ta=0, tr=300, ie=0, bpl=25.1, ppl=0)
    assert e_model(p, t=150, ta=100, tr=300, ie=0, bpl=25.1, ppl=0) == base
    for ta in (150, 200, 400):
        x = math.log10(ta / 100) / math.log10(2)
        idd = 25 * ((1 + x**6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2)
        assert base - e_model(p, t=150, ta=ta, tr=300, ie=0, bpl=25.1, ppl=0) == pytest.approx(idd)
    assert idd == pytest.approx(24.07, abs=0.01)  # Ta = 400 ms


def test_codecs() -> None:
    assert r_factor("G722", 60, 2) == r_factor("PCMU", 60, 2)  # documented narrowband mapping
    assert r_factor("opus", 60, 0) == r_factor("PCMU", 60, 0)
    assert r_factor("OPUS", 60, 3) < r_factor("PCMU", 60, 3)  # estimated Bpl 20 < 25.1
    assert r_factor("G729", 0, 0) == pytest.approx(R0 - 11, abs=0.01)
    custom = CodecImpairment(ie=5, bpl=10, bpl_no_plc=10, source="test")
    assert r_factor(custom, 0, 0) == pytest.approx(R0 - 5, abs=0.01)
    assert all(c.source for c in CODEC_IMPAIRMENTS.values())
    with pytest.raises(ValueError):
        r_factor("speex", 0, 0)


@pytest.mark.parametrize("args", [(-1.0, 0.0), (0.0, -0.1), (0.0, 100.1), (math.nan, 0.0), (math.inf, 0.0)])
def test_r_factor_rejects_bad_arguments(args: tuple[float, float]) -> None:
    with pytest.raises(ValueError):
        r_factor("PCMU", *args)
    with pytest.raises(ValueError):
        r_factor("PCMU", 0, 0, burst_ratio=0)


@given(st.floats(0, 2000), st.floats(0, 100), st.floats(1, 10))
def test_r_is_bounded(delay: float, loss: float, burst: float) -> None:
    r = r_factor("PCMU", delay, loss, burst)
    assert 0.0 <= r <= 100.0
    assert 1.0 <= mos_from_r(r) <= 4.5


def test_mos_reference_points_and_monotonicity() -> None:
    assert mos_from_r(-5) == 1.0 and mos_from_r(0) == 1.0
    assert mos_from_r(100) == 4.5 and mos_from_r(120) == 4.5
    assert mos_from_r(50) == pytest.approx(1 + 0.035 * 50 + 50 * (50 - 60) * 50 * 7e-6)
    assert mos_from_r(70) == pytest.approx(3.60, abs=0.01)
    assert mos_from_r(3.0) == 1.0  # the polynomial dips under 1 below R ≈ 6.5: clamped
    grid = np.linspace(-10, 110, 2401)
    mos = np.array([mos_from_r(float(r)) for r in grid])
    assert np.all(np.diff(mos) >= 0)
    assert np.all((mos >= 1.0) & (mos <= 4.5))


# -- burst ratio -------------------------------------------------------------------------------------

def test_burst_ratio() -> None:
    rng = np.random.default_rng(1)
    assert burst_ratio(np.zeros(100, bool)) == 1.0
    assert burst_ratio(rng.random(200_000) < 0.05) == pytest.approx(1.0, abs=0.03)
    # Gilbert model: p = P(found → lost), q = P(lost → found); BurstR = 1 / (p + q)
    p, q = 0.02, 0.3
    n = 200_000
    u = rng.random(n)
    lost = np.zeros(n, bool)
    state = False
    for i in range(n):  # test-side simulation of the Markov chain
        state = (u[i] < p) if not state else (u[i] >= q)
        lost[i] = state
    assert burst_ratio(lost) == pytest.approx(1 / (p + q), rel=0.05)
    assert burst_ratio(np.array([0, 1, 1, 1, 0, 0, 0, 0], bool)) == pytest.approx(3 * (1 - 3 / 8))


# -- warnings ----------------------------------------------------------------------------------------

def snap(**kw: object) -> QualitySnapshot:
    base = dict(codec="PCMU", packets_expected=1000, packets_received=1000, packets_lost=0, duplicates=0,
                reordered=0, late_frames=0, concealed_frames=0, jitter_ms=5.0, loss_pct=0.0, total_loss_pct=0.0,
                rtt_ms=80.0, one_way_delay_ms=60.0, r_factor=92.0, mos=4.38)
    base.update(kw)
    return QualitySnapshot(**base)  # type: ignore[arg-type]


def test_no_warnings_for_a_good_call() -> None:
    assert warnings(snap()) == ()


@pytest.mark.parametrize("field, at, beyond, metric", [
    ("rtt_ms", 400.0, 400.001, "rtt"),
    ("jitter_ms", 30.0, 30.001, "jitter"),
    ("loss_pct", 3.0, 3.001, "loss"),
    ("mos", 3.5, 3.499, "mos"),
])
def test_warnings_trigger_exactly_beyond_the_threshold(field: str, at: float, beyond: float, metric: str) -> None:
    assert warnings(snap(**{field: at})) == ()
    (w,) = warnings(snap(**{field: beyond}))
    assert (w.metric, w.value, w.threshold) == (metric, beyond, at)
    assert w.message


def test_configurable_thresholds_and_unknown_rtt() -> None:
    strict = QualityThresholds(rtt_ms=150, jitter_ms=10, loss_pct=1, mos=4.0)
    got = warnings(snap(rtt_ms=151.0, jitter_ms=10.5, loss_pct=1.5, mos=3.9), strict)
    assert [w.metric for w in got] == ["rtt", "jitter", "loss", "mos"]
    assert warnings(snap(rtt_ms=None)) == ()


# -- StreamQuality on a simulated stream -------------------------------------------------------------

def run_stream(rs: ReceiverStats, start: int, n: int, loss: float, seed: int,
               ssrc: int = 0x1234) -> None:
    rng = np.random.default_rng(seed)
    keep = rng.random(n) >= loss
    keep[:2] = keep[-1] = True
    for i in np.flatnonzero(keep):
        i = int(i)
        rs.update(RtpPacket(0, (start + i) & 0xFFFF, i * 160, ssrc, b"\xff" * 160), i * 0.02 + 0.04)


def test_stream_quality_good_call() -> None:
    rs, sq = ReceiverStats(8000), StreamQuality("PCMU", playout_delay_ms=40)
    run_stream(rs, 100, 1000, 0.0, 1)
    sq.observe(rs)
    sq.on_rtt(0.06)
    s = sq.snapshot()
    assert (s.packets_expected, s.packets_received, s.packets_lost) == (999, 999, 0)
    assert s.loss_pct == 0.0 and s.rtt_ms == pytest.approx(60.0)
    assert s.one_way_delay_ms == pytest.approx(30 + 40 + 20)
    assert s.r_factor == pytest.approx(r_factor("PCMU", 90, 0))
    assert s.mos > 4.3 and warnings(s) == ()
    assert json.loads(json.dumps(s.as_dict())) == dataclasses.asdict(s)


def test_stream_quality_lossy_interval_warns_and_recovers() -> None:
    rs, sq = ReceiverStats(8000), StreamQuality("PCMU")
    run_stream(rs, 60_000, 3000, 0.0, 2)  # wraps the sequence
    sq.observe(rs)
    assert sq.snapshot().loss_pct == 0.0
    # next interval: 10 % loss
    rng = np.random.default_rng(3)
    lost = 0
    for i in range(3000, 4000):
        if i != 3999 and rng.random() < 0.10:
            lost += 1
            continue
        rs.update(RtpPacket(0, (60_000 + i) & 0xFFFF, i * 160, 0x1234, b"x"), i * 0.02 + 0.04)
    sq.observe(rs)
    s = sq.snapshot()
    assert s.loss_pct == pytest.approx(100 * lost / 1000)
    assert s.packets_lost == lost and s.total_loss_pct == pytest.approx(100 * lost / 3999)
    assert {w.metric for w in warnings(s)} == {"loss", "mos"}
    assert s.r_factor == pytest.approx(r_factor("PCMU", 20, 100 * lost / 1000))
    # a clean interval afterwards clears the live warning, totals remain
    for i in range(4000, 4500):
        rs.update(RtpPacket(0, (60_000 + i) & 0xFFFF, i * 160, 0x1234, b"x"), i * 0.02 + 0.04)
    sq.observe(rs)
    s = sq.snapshot()
    assert s.loss_pct == 0.0 and warnings(s) == () and s.packets_lost == lost
    # ... while the end-of-call summary keeps the whole call's loss, and its MOS counts it
    whole = sq.snapshot(whole_call=True)
    assert whole.loss_pct == whole.total_loss_pct == pytest.approx(100 * lost / 4499)
    assert whole.r_factor == pytest.approx(r_factor("PCMU", 20, 100 * lost / 4499)) and whole.mos < s.mos


def test_late_and_concealed_frames_count_towards_the_e_model() -> None:
    rs, sq = ReceiverStats(8000), StreamQuality("PCMU")
    run_stream(rs, 1, 1001, 0.0, 4)
    sq.on_late(30)
    sq.on_concealed(30)
    sq.on_concealed()
    sq.observe(rs)
    s = sq.snapshot()
    assert (s.late_frames, s.concealed_frames, s.loss_pct) == (30, 31, 0.0)
    assert s.r_factor == pytest.approx(r_factor("PCMU", 20, 3.0))  # 30 late of 1000 expected


def test_ssrc_change_keeps_call_totals() -> None:
    rs, sq = ReceiverStats(8000), StreamQuality("PCMU")
    run_stream(rs, 10, 500, 0.0, 5)
    sq.observe(rs)
    rs.update(RtpPacket(0, 40_000, 0, 0x9999, b"x"), 20.0)  # new source (probation)
    for i in range(1, 300):
        if i % 10 == 5:
            continue
        rs.update(RtpPacket(0, 40_000 + i, i * 160, 0x9999, b"x"), 20.0 + i * 0.02)
    sq.observe(rs)
    s = sq.snapshot()
    assert rs.stats["ssrc-change"] == 1
    assert s.packets_expected == 499 + 299 and s.packets_lost == 30  # i = 5, 15, …, 295 lost
    assert s.loss_pct == pytest.approx(100 * 30 / 299)


def test_ssrc_change_detected_even_when_the_new_source_has_more_packets() -> None:
    rs, sq = ReceiverStats(8000), StreamQuality("PCMU")
    run_stream(rs, 10, 100, 0.0, 6)
    sq.observe(rs)
    run_stream(rs, 30_000, 400, 0.0, 7, ssrc=0x7777)
    sq.observe(rs)
    run_stream(rs, 50_000, 50, 0.0, 8, ssrc=0x8888)  # observed only after a re-sync below
    for seq in (20_000, 20_001, 20_002):
        rs.update(RtpPacket(0, seq, 0, 0x8888, b"x"), 99.0)
    sq.observe(rs)
    assert rs.stats["resync"] == 1
    assert sq.snapshot().packets_expected == 99 + 399 + 2  # the 49 before the re-sync were never observed


def test_duplicates_and_reordering_reported() -> None:
    rs, sq = ReceiverStats(8000), StreamQuality("G722")
    seqs = [0, 1, 2, 4, 3, 5, 5, 6, 7, 9, 8, 9]
    for k, s_ in enumerate(seqs):
        rs.update(RtpPacket(9, s_, s_ * 320, 7, b"x"), k * 0.02)
    sq.observe(rs)
    s = sq.snapshot()
    assert (s.duplicates, s.reordered, s.packets_lost, s.loss_pct) == (2, 2, 0, 0.0)
    assert s.codec == "G722"


def test_stream_quality_ignores_unvalidated_source_and_unknown_codec() -> None:
    rs, sq = ReceiverStats(8000), StreamQuality("PCMA")
    rs.update(RtpPacket(8, 1, 0, 1, b"x"), 0.0)
    sq.observe(rs)
    assert sq.snapshot().packets_expected == 0
    with pytest.raises(ValueError):
        StreamQuality("L16")


def test_voip_metrics_from_snapshot_round_trip() -> None:
    s = snap(loss_pct=5.0, late_frames=20, rtt_ms=180.4, r_factor=75.4, mos=3.81)
    vm = voip_metrics(0xFEED, s)
    assert (vm.ssrc, vm.loss_rate, vm.discard_rate, vm.round_trip_delay) == (0xFEED, 13, 5, 180)
    assert (vm.r_factor, vm.mos_cq) == (75, 38)
    assert vm.mos_lq == round(10 * mos_from_r(r_factor("PCMU", 0, 5.0)))
    xr = ExtendedReport(0xBEEF, (vm,))
    assert parse_compound(xr.to_bytes(), strict=False) == [xr]
