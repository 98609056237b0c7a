"""RTP receiver and sender statistics (RFC 3550 §6.4, Appendix A.1, A.3, A.8), on virtual time.

:class:`ReceiverStats` follows one remote source: sequence validation with probation, wrap and
re-sync (§A.1), loss and fraction lost (§A.3), interarrival jitter (§A.8), duplicates and
reordering, and the report block for our next SR/RR, with LSR/DLSR from the last SR we received.
:class:`SenderStats` counts what we send and turns report blocks about our stream into a
round-trip time (§6.4.1). ``now`` is float seconds from the adapter's clock; nothing here reads a
clock of its own.
"""

from __future__ import annotations

import collections
import logging
import math
from dataclasses import dataclass

from media.errors import MediaError
from media.rtcp import ReportBlock, SenderReport, ntp_from_seconds, ntp_middle32
from media.rtp import RtpPacket, ts_diff

__all__ = ["ReceiverStats", "SenderStats", "SenderReportInfo", "rtt_from_report",
           "MIN_SEQUENTIAL", "MAX_DROPOUT", "MAX_MISORDER"]

log = logging.getLogger(__name__)

RTP_SEQ_MOD = 1 << 16
MIN_SEQUENTIAL = 2  # §A.1
MAX_DROPOUT = 3000
MAX_MISORDER = 100
# A transit-time step larger than this (seconds) is a timestamp discontinuity, not jitter.
MAX_TRANSIT_STEP = 3.0

OK, DUPLICATE, REORDERED, PROBATION, BAD_SEQ, SSRC_CHANGE = (
    "ok", "duplicate", "reordered", "probation", "bad-seq", "ssrc-change")


@dataclass(frozen=True, slots=True)
class SenderReportInfo:
    """The last SR received from a source and when it arrived (for LSR/DLSR, §6.4.1)."""

    ssrc: int
    lsr: int  # middle 32 bits of its NTP timestamp
    arrival: float  # our ``now`` when it arrived
    packet_count: int
    octet_count: int


class ReceiverStats:
    """Statistics for the one remote source of an RTP session (RFC 3550 §A.1, §A.3, §A.8).

    ``update(packet, now)`` classifies each packet: "ok", "duplicate", "reordered", "probation",
    "bad-seq" or "ssrc-change"; the counts are in ``stats``. A packet with a new SSRC resets the
    statistics and starts a new probation. As §A.3 says, ``received`` counts duplicates and late
    packets too, so ``lost`` may go negative; :attr:`loss_fraction` discounts duplicates.
    """

    def __init__(self, clock_rate: int, *, min_sequential: int = MIN_SEQUENTIAL,
                 max_dropout: int = MAX_DROPOUT, max_misorder: int = MAX_MISORDER) -> None:
        if clock_rate <= 0 or min_sequential < 1 or not 0 < max_misorder < max_dropout < RTP_SEQ_MOD // 2:
            raise ValueError("bad clock rate or sequence validation limits")
        self.clock_rate = clock_rate
        self.min_sequential = min_sequential
        self.max_dropout = max_dropout
        self.max_misorder = max_misorder
        self.stats: collections.Counter[str] = collections.Counter()
        self.ssrc: int | None = None
        self.last_sr: SenderReportInfo | None = None
        self._window_mask = (1 << (max_misorder + 1)) - 1
        self.restarts = 0  # bumped whenever the counters start again (new source, re-sync)
        self._reset()

    def _reset(self) -> None:
        self.probation = self.min_sequential
        self.max_seq = 0
        self.base_seq = 0
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.duplicates = 0
        self.reordered = 0
        self.octets = 0  # payload octets from this source
        self.jitter = 0.0  # §A.8, timestamp units
        self._expected_prior = 0
        self._received_prior = 0
        self._seen = 0  # bit i set: extended sequence (max - i) was received
        self._transit_ref: tuple[float, int] | None = None  # (arrival, RTP timestamp) of the previous packet

    # -- §A.1 -----------------------------------------------------------------------------------

    def _init_seq(self, seq: int) -> None:
        self.restarts += 1
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0  # these three count from the base sequence number on
        self.duplicates = 0
        self.reordered = 0
        self._received_prior = 0
        self._expected_prior = 0
        self._seen = 1
        self._transit_ref = None

    def update(self, packet: RtpPacket, now: float) -> str:
        """Account for one received RTP packet that arrived at ``now`` and classify it."""
        kind, counted = self._update_seq(packet, now)
        self.stats[kind] += 1
        if kind == DUPLICATE:
            self.received += 1  # §A.3: duplicates count as received
            self.duplicates += 1
        elif counted:
            self.received += 1
            self.octets += len(packet.payload)
            self._update_jitter(packet.timestamp, now)
        return kind

    def _update_seq(self, packet: RtpPacket, now: float) -> tuple[str, bool]:
        """§A.1 update_seq(): the classification, and whether the packet counts as received."""
        seq = packet.sequence & 0xFFFF
        if packet.ssrc != self.ssrc:
            changed = self.ssrc is not None
            if changed:
                log.info("RTP source changed from %08x to %08x", self.ssrc, packet.ssrc)
            self.ssrc = packet.ssrc
            self._reset()
            self._init_seq(seq)
            self.max_seq = (seq - 1) & 0xFFFF
            kind, counted = self._probation_step(seq, packet.timestamp, now)
            return (SSRC_CHANGE if changed else kind), counted
        if self.probation:
            return self._probation_step(seq, packet.timestamp, now)
        udelta = (seq - self.max_seq) & 0xFFFF
        if udelta == 0:
            return DUPLICATE, True
        if udelta < self.max_dropout:  # in order, with a permissible gap
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD
            self.max_seq = seq
            self._seen = ((self._seen << udelta) | 1) & self._window_mask
            return OK, True
        if udelta <= RTP_SEQ_MOD - self.max_misorder:  # a very large jump
            if seq == self.bad_seq:
                # two sequential packets: the other side restarted without telling us (§A.1)
                log.info("RTP source %08x re-synchronised at sequence %d", self.ssrc, seq)
                self.stats["resync"] += 1
                self._init_seq(seq)
                return OK, True
            self.bad_seq = (seq + 1) & 0xFFFF
            return BAD_SEQ, False
        bit = 1 << (RTP_SEQ_MOD - udelta)  # late: duplicate or reordered
        if self._seen & bit:
            return DUPLICATE, True
        self._seen |= bit
        self.reordered += 1
        return REORDERED, True

    def _probation_step(self, seq: int, timestamp: int, now: float) -> tuple[str, bool]:
        ref = self._transit_ref
        self._transit_ref = (now, timestamp)
        if seq == (self.max_seq + 1) & 0xFFFF:
            self.probation -= 1
            self.max_seq = seq
            if self.probation == 0:
                self._init_seq(seq)
                self._transit_ref = ref  # so that this packet gives the first D(i-1, i)
                return OK, True
        else:
            self.probation = self.min_sequential - 1
            self.max_seq = seq
        return PROBATION, False

    # -- §A.8 -----------------------------------------------------------------------------------

    def _update_jitter(self, timestamp: int, now: float) -> None:
        ref = self._transit_ref
        self._transit_ref = (now, timestamp)
        if ref is None:
            return
        # D(i-1, i) = (Rj - Ri) - (Sj - Si), in timestamp units, wrap-aware
        d = abs((now - ref[0]) * self.clock_rate - ts_diff(timestamp, ref[1]))
        if d > MAX_TRANSIT_STEP * self.clock_rate:
            self.stats["timestamp-jump"] += 1
            return
        self.jitter += (d - self.jitter) / 16.0

    # -- §A.3 -----------------------------------------------------------------------------------

    @property
    def valid(self) -> bool:
        """True once the source has passed probation (§A.1)."""
        return self.ssrc is not None and self.probation == 0

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max - self.base_seq + 1 if self.valid else 0

    @property
    def lost(self) -> int:
        """Cumulative number of packets lost (§A.3); negative when duplicates outnumber losses."""
        return self.expected - self.received

    @property
    def loss_fraction(self) -> float:
        """Fraction of expected packets that never arrived, duplicates not counted as arrivals."""
        expected = self.expected
        if expected <= 0:
            return 0.0
        return max(0, expected - (self.received - self.duplicates)) / expected

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000.0 / self.clock_rate

    def on_sender_report(self, sr: SenderReport, now: float) -> None:
        """Remember an SR from the remote source for the LSR/DLSR of our next report (§6.4.1)."""
        self.last_sr = SenderReportInfo(sr.ssrc, ntp_middle32(sr.ntp_timestamp), now, sr.packet_count,
                                        sr.octet_count)

    def report_block(self, now: float) -> ReportBlock:
        """The reception report about this source for our next SR/RR; starts a new interval (§A.3)."""
        if not self.valid or self.ssrc is None:
            raise MediaError("no validated RTP source to report on")
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0 if expected_interval == 0 or lost_interval <= 0 else (lost_interval << 8) // expected_interval
        lsr = dlsr = 0
        sr = self.last_sr
        if sr is not None and sr.ssrc == self.ssrc:
            lsr = sr.lsr
            dlsr = max(0, int((now - sr.arrival) * 65536.0)) & 0xFFFFFFFF
        lost = max(-0x800000, min(0x7FFFFF, self.lost))  # §A.3: clamp to 24 signed bits
        return ReportBlock(self.ssrc, min(fraction, 255), lost, self.extended_max & 0xFFFFFFFF,
                           int(self.jitter), lsr, dlsr)


def rtt_from_report(block: ReportBlock, now: float, *, wallclock_offset: float = 0.0) -> float | None:
    """Round-trip time in seconds from a report block about our stream (RFC 3550 §6.4.1, Fig. 2):
    A − LSR − DLSR in NTP middle-32 units, A being our arrival time on the clock that stamped the SR.
    None when the peer has not received an SR (LSR = 0) or the result is clearly negative."""
    if block.lsr == 0:
        return None
    arrival = ntp_middle32(ntp_from_seconds(now + wallclock_offset))
    units = ((arrival - block.lsr - block.dlsr + 0x80000000) & 0xFFFFFFFF) - 0x80000000
    if units < -4:  # a few 1/65536 s of truncation are rounding; more is a broken peer
        return None
    return max(units, 0) / 65536.0


class SenderStats:
    """What we send on one SSRC: counts for our SR (§6.4.1) and the RTT the peer's reports give."""

    def __init__(self, ssrc: int, clock_rate: int, *, wallclock_offset: float = 0.0,
                 initial_timestamp: int = 0) -> None:
        if clock_rate <= 0:
            raise ValueError("clock rate must be positive")
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.wallclock_offset = wallclock_offset  # added to ``now`` for NTP timestamps
        self.packets = 0
        self.octets = 0  # payload octets only (§6.4.1)
        self.rtt: float | None = None  # seconds, from the latest usable report block
        self.remote: ReportBlock | None = None  # the peer's latest report about our stream
        self.stats: collections.Counter[str] = collections.Counter()
        self._last: tuple[int, float] = (initial_timestamp & 0xFFFFFFFF, math.nan)
        self._sent_lsr: collections.deque[int] = collections.deque(maxlen=16)

    def on_sent(self, packet: RtpPacket, now: float) -> None:
        if packet.ssrc != self.ssrc:
            raise MediaError(f"packet SSRC {packet.ssrc:08x} is not this sender's {self.ssrc:08x}")
        self.packets += 1
        self.octets += len(packet.payload)
        self._last = (packet.timestamp, now)

    def rtp_timestamp_at(self, now: float) -> int:
        """The RTP timestamp that corresponds to ``now`` (§6.4.1: same instant as the NTP one)."""
        ts, at = self._last
        if math.isnan(at):
            return ts
        return (ts + round((now - at) * self.clock_rate)) & 0xFFFFFFFF

    def sender_report(self, now: float, reports: tuple[ReportBlock, ...] = ()) -> SenderReport:
        ntp = ntp_from_seconds(now + self.wallclock_offset)
        self._sent_lsr.append(ntp_middle32(ntp))
        return SenderReport(self.ssrc, ntp, self.rtp_timestamp_at(now), self.packets & 0xFFFFFFFF,
                            self.octets & 0xFFFFFFFF, reports)

    def on_report_block(self, block: ReportBlock, now: float) -> float | None:
        """Take the peer's report about our stream; returns (and keeps) the RTT in seconds."""
        if block.ssrc != self.ssrc:
            self.stats["foreign-block"] += 1
            return None
        self.remote = block
        if block.lsr == 0:
            return None
        if block.lsr not in self._sent_lsr:
            self.stats["unknown-lsr"] += 1  # not an SR of ours: a peer echoing the wrong clock
            return None
        rtt = rtt_from_report(block, now, wallclock_offset=self.wallclock_offset)
        if rtt is None:
            self.stats["negative-rtt"] += 1
            return None
        self.rtt = rtt
        return rtt
