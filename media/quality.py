"""Call quality: one :class:`StreamQuality` per received stream, the ITU-T G.107 E-model, warnings.

The server, the softphone and the call reports all read the same :class:`QualitySnapshot`.

E-model (ITU-T G.107, narrowband; section numbers as in the 03/2005 edition, formulas identical to
later editions at their default mT = 100 ms, sT = 1): R = Ro − Is − Id − Ie,eff + A, computed in
full from the default parameter values (which give R = 93.2), with the mouth-to-ear delay entering
as T = Ta = one-way delay and Tr = 2 × one-way delay (talker echo path over an echo-cancelled VoIP
leg). Codec impairments:

- G.711 (PCMU/PCMA): Ie = 0, Bpl = 25.1 with PLC (G.711 Appendix I), 4.3 without — ITU-T G.113
  Appendix I.
- G.729(A): Ie = 11, Bpl = 19.0 — ITU-T G.113 Appendix I.
- G.722: a narrowband-equivalent mapping, not G.107.1: Ie = 0 (at least as good as G.711 on the
  narrowband scale, so R never exceeds 93.2) and the G.711 Bpl values (25.1 with the G.722
  Appendix III/IV PLC, 4.3 without). This under-rates wideband's benefit by design: the warning
  thresholds are narrowband MOS.
- Opus: ITU-T publishes no Ie/Bpl. Project estimate, not an ITU value: Ie = 0 (narrowband
  equivalent at ≥ 16 kbit/s) and Bpl = 20 (its built-in PLC, 20 ms frames, no in-band FEC),
  a little below G.711's 25.1. Override through :data:`CODEC_IMPAIRMENTS` or pass a
  :class:`CodecImpairment`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from media.rtcp import VoipMetrics

if TYPE_CHECKING:
    from media.stats import ReceiverStats

__all__ = [
    "CodecImpairment", "CODEC_IMPAIRMENTS", "EModelParams", "r_factor", "e_model", "mos_from_r",
    "effective_ie", "burst_ratio", "QualitySnapshot", "QualityThresholds", "QualityWarning",
    "StreamQuality", "warnings", "voip_metrics",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CodecImpairment:
    ie: float  # equipment impairment factor
    bpl: float  # packet-loss robustness with packet-loss concealment
    bpl_no_plc: float  # ... without it
    source: str


_G711 = CodecImpairment(0.0, 25.1, 4.3, "ITU-T G.113 Appendix I")
CODEC_IMPAIRMENTS: dict[str, CodecImpairment] = {
    "PCMU": _G711,
    "PCMA": _G711,
    "G711": _G711,
    "G729": CodecImpairment(11.0, 19.0, 19.0, "ITU-T G.113 Appendix I (G.729A + VAD)"),
    "G722": CodecImpairment(0.0, 25.1, 4.3, "narrowband equivalent of G.711 (project mapping)"),
    "OPUS": CodecImpairment(0.0, 20.0, 20.0, "project estimate; no ITU-T values exist"),
}


@dataclass(frozen=True, slots=True)
class EModelParams:
    """The G.107 default values of the E-model inputs; A = 0 for wired access."""

    slr: float = 8.0
    rlr: float = 2.0
    stmr: float = 15.0
    lstr: float = 18.0
    ds: float = 3.0
    telr: float = 65.0
    wepl: float = 110.0
    qdu: float = 1.0
    nc: float = -70.0
    nfor: float = -64.0
    ps: float = 35.0
    pr: float = 35.0
    a: float = 0.0


def _lg(x: float) -> float:
    return math.log10(x)


def effective_ie(ie: float, bpl: float, ppl: float, burst_r: float = 1.0) -> float:
    """G.107 §3.5 (7-29): Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl/BurstR + Bpl); Ppl in percent."""
    return ie + (95.0 - ie) * ppl / (ppl / burst_r + bpl)


def e_model(p: EModelParams, *, t: float, ta: float, tr: float, ie: float, bpl: float, ppl: float,
            burst_r: float = 1.0) -> float:
    """The full G.107 rating R for delays t, ta, tr in ms and packet loss ppl in percent."""
    # §3.2 basic signal-to-noise ratio Ro
    olr = p.slr + p.rlr
    nfo = p.nfor + p.rlr
    pre = p.pr + 10 * _lg(1 + 10 ** ((10 - p.lstr) / 10))
    nor = p.rlr - 121 + pre + 0.008 * (pre - 35) ** 2
    nos = p.ps - p.slr - p.ds - 100 + 0.004 * (p.ps - olr - p.ds - 14) ** 2
    no = 10 * _lg(10 ** (p.nc / 10) + 10 ** (nos / 10) + 10 ** (nor / 10) + 10 ** (nfo / 10))
    ro = 15 - 1.5 * (p.slr + no)
    # §3.3 simultaneous impairment Is = Iolr + Ist + Iq
    xolr = olr + 0.2 * (64 + no - p.rlr)
    iolr = 20 * ((1 + (xolr / 8) ** 8) ** (1 / 8) - xolr / 8)
    stmro = -10 * _lg(10 ** (-p.stmr / 10) + math.exp(-t / 4) * 10 ** (-p.telr / 10))
    ist = (12 * (1 + ((stmro - 13) / 6) ** 8) ** (1 / 8) - 28 * (1 + ((stmro + 1) / 19.4) ** 35) ** (1 / 35)
           - 13 * (1 + ((stmro - 3) / 33) ** 13) ** (1 / 13) + 29)
    q = 37 - 15 * _lg(p.qdu)
    g = 1.07 + 0.258 * q + 0.0602 * q * q
    iq = 15 * _lg(1 + 10 ** ((ro - 100) / 15 + 46 / 8.4 - g / 9) + 10 ** (46 / 30 - g / 40))
    is_ = iolr + ist + iq
    # §3.4 delay impairment Id = Idte + Idle + Idd
    terv = p.telr - 40 * _lg((1 + t / 10) / (1 + t / 150)) + 6 * math.exp(-0.3 * t * t)
    if p.stmr < 9:
        terv += ist / 2
    roe = -1.5 * (no - p.rlr)
    re = 80 + 2.5 * (terv - 14)
    idte = ((roe - re) / 2 + math.sqrt((roe - re) ** 2 / 4 + 100) - 1) * (1 - math.exp(-t))
    if p.stmr > 20:
        idte = math.sqrt(idte * idte + ist * ist)
    rle = 10.5 * (p.wepl + 7) * (tr + 1) ** -0.25
    idle = (ro - rle) / 2 + math.sqrt((ro - rle) ** 2 / 4 + 169)
    idd = 0.0
    if ta > 100:  # the absolute-delay term, mT = 100 ms, sT = 1
        x = _lg(ta / 100) / _lg(2)
        idd = 25 * ((1 + x ** 6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2)
    # §3.5 equipment impairment with packet loss
    return ro - is_ - (idte + idle + idd) - effective_ie(ie, bpl, ppl, burst_r) + p.a


def _impairment(codec: str | CodecImpairment) -> CodecImpairment:
    if isinstance(codec, CodecImpairment):
        return codec
    try:
        return CODEC_IMPAIRMENTS[codec.upper()]
    except KeyError:
        raise ValueError(f"no E-model impairment values for codec {codec!r}") from None


def r_factor(codec: str | CodecImpairment, one_way_delay_ms: float, packet_loss_pct: float,
             burst_ratio: float = 1.0, *, plc: bool = True, params: EModelParams | None = None) -> float:
    """G.107 transmission rating R (0..100) for a VoIP leg: mouth-to-ear delay in ms, packet loss
    (including late discards) in percent, BurstR 1 for random loss."""
    if not math.isfinite(one_way_delay_ms) or one_way_delay_ms < 0:
        raise ValueError(f"one-way delay must be >= 0 ms, got {one_way_delay_ms}")
    if not 0.0 <= packet_loss_pct <= 100.0:
        raise ValueError(f"packet loss must be within 0..100 %, got {packet_loss_pct}")
    if not burst_ratio > 0:
        raise ValueError(f"burst ratio must be > 0, got {burst_ratio}")
    imp = _impairment(codec)
    r = e_model(params or EModelParams(), t=one_way_delay_ms, ta=one_way_delay_ms, tr=2 * one_way_delay_ms,
                ie=imp.ie, bpl=imp.bpl if plc else imp.bpl_no_plc, ppl=packet_loss_pct, burst_r=burst_ratio)
    return min(100.0, max(0.0, r))


def mos_from_r(r: float) -> float:
    """G.107 Annex B (B-4): MOS_CQE = 1 + 0.035R + R(R − 60)(100 − R)·7·10⁻⁶, within 1..4.5."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return max(1.0, 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6)


def burst_ratio(lost: np.ndarray) -> float:
    """G.107 §3.5 BurstR from a loss pattern (True = lost, in sequence order): the mean observed
    burst length over the mean burst length of random loss at the same rate, 1/(1 − p)."""
    mask = np.asarray(lost, dtype=bool)
    n_lost = int(mask.sum())
    if n_lost == 0 or n_lost == mask.size:
        return 1.0
    starts = int(mask[0]) + int(np.count_nonzero(mask[1:] & ~mask[:-1]))
    return (n_lost / starts) * (1.0 - n_lost / mask.size)


@dataclass(frozen=True, slots=True)
class QualitySnapshot:
    """One stream's quality at a moment; ``loss_pct`` is over the latest observation interval."""

    codec: str
    packets_expected: int
    packets_received: int  # distinct packets
    packets_lost: int
    duplicates: int
    reordered: int
    late_frames: int
    concealed_frames: int
    jitter_ms: float
    loss_pct: float
    total_loss_pct: float
    rtt_ms: float | None
    one_way_delay_ms: float
    r_factor: float
    mos: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class QualityThresholds:
    """What agents are warned about; a warning fires strictly beyond each value."""

    rtt_ms: float = 400.0
    jitter_ms: float = 30.0
    loss_pct: float = 3.0
    mos: float = 3.5


@dataclass(frozen=True, slots=True)
class QualityWarning:
    metric: str  # "rtt", "jitter", "loss" or "mos"
    value: float
    threshold: float
    message: str


def warnings(snapshot: QualitySnapshot, thresholds: QualityThresholds = QualityThresholds()
             ) -> tuple[QualityWarning, ...]:
    """Threshold warnings for a snapshot: RTT, jitter and loss above, MOS below their thresholds."""
    out = []
    if snapshot.rtt_ms is not None and snapshot.rtt_ms > thresholds.rtt_ms:
        out.append(QualityWarning("rtt", snapshot.rtt_ms, thresholds.rtt_ms,
                                  f"round trip {snapshot.rtt_ms:.0f} ms"))
    if snapshot.jitter_ms > thresholds.jitter_ms:
        out.append(QualityWarning("jitter", snapshot.jitter_ms, thresholds.jitter_ms,
                                  f"jitter {snapshot.jitter_ms:.0f} ms"))
    if snapshot.loss_pct > thresholds.loss_pct:
        out.append(QualityWarning("loss", snapshot.loss_pct, thresholds.loss_pct,
                                  f"packet loss {snapshot.loss_pct:.1f} %"))
    if snapshot.mos < thresholds.mos:
        out.append(QualityWarning("mos", snapshot.mos, thresholds.mos, f"estimated MOS {snapshot.mos:.2f}"))
    return tuple(out)


class StreamQuality:
    """Quality of one received stream, fed by the RTP receiver, the jitter buffer and RTCP.

    Call :meth:`observe` on a cadence (each RTCP report, or each UI refresh); ``loss_pct`` is the
    loss over the interval since the previous call, totals are over the whole call (across SSRC
    changes). The mouth-to-ear delay for the E-model is estimated as RTT/2 + playout delay +
    one frame of packetisation; the loss it uses includes frames the jitter buffer dropped late.
    """

    def __init__(self, codec: str, *, plc: bool = True, frame_ms: float = 20.0,
                 playout_delay_ms: float = 0.0, params: EModelParams | None = None) -> None:
        _impairment(codec)
        self.codec = codec
        self.plc = plc
        self.frame_ms = frame_ms
        self.playout_delay_ms = playout_delay_ms
        self.burst_ratio = 1.0
        self.params = params or EModelParams()
        self.rtt_ms: float | None = None
        self.jitter_ms = 0.0
        self.late_frames = 0
        self.concealed_frames = 0
        self.loss_pct = 0.0
        self._effective_loss_pct = 0.0
        # receiver counters (expected, lost, received, duplicates, reordered): totals = base + current
        self._base = (0, 0, 0, 0, 0)
        self._prev = (0, 0, 0, 0, 0)
        self._restarts = -1
        self._late_prev = 0

    @property
    def _totals(self) -> tuple[int, ...]:
        return tuple(a + b for a, b in zip(self._base, self._prev, strict=True))

    def observe(self, receiver: ReceiverStats) -> None:
        """Take the receiver's counters; the interval loss is measured from the previous call."""
        if not receiver.valid:
            return
        dups = receiver.duplicates
        unique = receiver.received - dups
        cur = (receiver.expected, max(0, receiver.expected - unique), unique, dups, receiver.reordered)
        prev = self._prev
        if receiver.restarts != self._restarts:  # new source or re-sync: its counts began again
            self._restarts = receiver.restarts
            self._base = self._totals
            prev = (0, 0, 0, 0, 0)
        self._prev = cur
        d_exp = cur[0] - prev[0]
        d_lost = cur[1] - prev[1]  # may be negative: late packets filled earlier holes
        d_late = self.late_frames - self._late_prev
        self._late_prev = self.late_frames
        self.jitter_ms = receiver.jitter_ms
        self.loss_pct = min(100.0, max(0.0, 100.0 * d_lost / d_exp)) if d_exp else 0.0
        self._effective_loss_pct = min(100.0, max(0.0, 100.0 * (d_lost + d_late) / d_exp)) if d_exp else 0.0

    def on_rtt(self, rtt_s: float | None) -> None:
        if rtt_s is not None:
            self.rtt_ms = rtt_s * 1000.0

    def on_late(self, frames: int = 1) -> None:
        self.late_frames += frames

    def on_concealed(self, frames: int = 1) -> None:
        self.concealed_frames += frames

    @property
    def one_way_delay_ms(self) -> float:
        return (self.rtt_ms or 0.0) / 2 + self.playout_delay_ms + self.frame_ms

    def snapshot(self, *, whole_call: bool = False) -> QualitySnapshot:
        """Now (loss and MOS over the latest interval), or with ``whole_call`` the summary at the
        end of a call: loss and MOS over all of it (an end-of-call line must not report the last
        few quiet seconds as the call's loss)."""
        delay = self.one_way_delay_ms
        expected, lost, received, dups, reordered = self._totals
        total = 100.0 * lost / expected if expected else 0.0
        loss, effective = self.loss_pct, self._effective_loss_pct
        if whole_call:
            loss = total
            effective = min(100.0, 100.0 * (lost + self.late_frames) / expected) if expected else 0.0
        r = r_factor(self.codec, delay, effective, self.burst_ratio, plc=self.plc, params=self.params)
        return QualitySnapshot(self.codec, expected, received, lost, dups, reordered, self.late_frames,
                               self.concealed_frames, self.jitter_ms, loss, total, self.rtt_ms, delay,
                               r, mos_from_r(r))


def voip_metrics(ssrc: int, snapshot: QualitySnapshot, *, plc: bool = True) -> VoipMetrics:
    """An RTCP XR VoIP metrics block (RFC 3611 §4.7) describing ``ssrc`` from a snapshot; burst/gap,
    levels and jitter-buffer fields are left "unavailable"."""
    def rate(part: float) -> int:
        return min(255, round(part * 256))

    expected = max(1, snapshot.packets_expected)
    lq = mos_from_r(r_factor(snapshot.codec, 0.0, min(100.0, snapshot.loss_pct), plc=plc))
    return VoipMetrics(
        ssrc,
        loss_rate=rate(snapshot.loss_pct / 100.0),
        discard_rate=rate(snapshot.late_frames / expected),
        round_trip_delay=min(0xFFFF, round(snapshot.rtt_ms)) if snapshot.rtt_ms is not None else 0,
        r_factor=round(snapshot.r_factor),
        mos_lq=round(lq * 10),
        mos_cq=round(snapshot.mos * 10),
    )
