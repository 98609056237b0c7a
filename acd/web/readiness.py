"""The agent readiness check (docs/agent-protocol.md §3.8): an echo test over the agent's own
session, judged on what the connection measured.

For ``seconds`` the agent's audio is returned to them through their peer connection (one
20 ms frame of buffering on the server), so they hear their own voice the way a caller
would hear them. At the end the connection's RTCP figures (RTT, jitter, loss) and an E-model
MOS (G.107: mouth-to-ear ≈ RTT/2 + a 40 ms jitter buffer + 20 ms packetisation) decide
pass/fail against the thresholds agents are warned about; an echo that carried no voice
(a muted or dead microphone) fails too. The result goes to the agent and to the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from acd.store.base import ReadinessRecord
from media.quality import QualityThresholds, mos_from_r, r_factor

__all__ = ["EchoTest", "judge"]

log = logging.getLogger(__name__)

RATE = 16000  # the echo runs wideband; the agent's codec decides what they hear
FRAME = RATE // 50
VOICE_DBFS = -50.0  # a frame above this carries sound from the microphone
MIN_VOICED_S = 0.5
BUFFER_MS = 40.0 + 20.0  # jitter buffer + packetisation added to half the RTT


def judge(agent: str, stats: dict[str, Any], voiced_s: float, seconds: float,
          thresholds: QualityThresholds = QualityThresholds()) -> ReadinessRecord:
    """Pass/fail from the connection's figures (``AgentMedia.stats()``) and the echo's voice."""
    rtt, jitter, loss = stats.get("rtt_ms"), stats.get("jitter_ms"), float(stats.get("loss_pct") or 0.0)
    codec = str(stats.get("codec") or "opus")
    one_way = (rtt or 0.0) / 2 + BUFFER_MS + (jitter or 0.0)
    mos = round(mos_from_r(r_factor(codec if codec.upper() in ("PCMU", "PCMA", "G722", "OPUS") else "OPUS",
                                    one_way, min(100.0, loss))), 2)
    reasons = []
    if rtt is not None and rtt > thresholds.rtt_ms:
        reasons.append(f"round trip {rtt:.0f} ms > {thresholds.rtt_ms:.0f} ms")
    if jitter is not None and jitter > thresholds.jitter_ms:
        reasons.append(f"jitter {jitter:.0f} ms > {thresholds.jitter_ms:.0f} ms")
    if loss > thresholds.loss_pct:
        reasons.append(f"packet loss {loss:.1f} % > {thresholds.loss_pct:.0f} %")
    if mos < thresholds.mos:
        reasons.append(f"estimated MOS {mos:.2f} < {thresholds.mos:.1f}")
    if voiced_s < MIN_VOICED_S:
        reasons.append("no sound from the microphone came back")
    if not stats.get("packets_received"):
        reasons.append("no audio packets from the agent")
    return ReadinessRecord(agent, time.time(), not reasons, None if rtt is None else round(rtt, 1),
                           None if jitter is None else round(jitter, 1), round(loss, 2), mos, tuple(reasons),
                           codec, seconds)


class EchoTest:
    """One running echo test on a media clock (``clock.add``/``clock.remove``)."""

    def __init__(self, agent: str, media: Any, clock: Any, seconds: float,
                 on_done: Callable[[ReadinessRecord], None]) -> None:
        self.agent = agent
        self.media = media
        self.clock = clock
        self.seconds = seconds
        self.on_done = on_done
        self.voiced_frames = 0
        self.frames = 0
        self._last = np.zeros(FRAME, dtype=np.int16)
        self._party: Callable[[np.ndarray, float], np.ndarray] | None = None
        self._token: int | None = None

    def start(self) -> None:
        self._party = self.media.attach(RATE, FRAME)
        self._token = self.clock.add(self._tick)
        log.info("agent %s: echo test for %.0f s", self.agent, self.seconds)

    def _tick(self, now: float) -> None:
        if self._party is None:
            return
        frame = self._party(self._last, now)  # what the agent said is what they hear next
        self._last = frame
        self.frames += 1
        power = float(np.mean(frame.astype(np.float64) ** 2))
        if power > 0 and 10 * np.log10(power / 32768.0 ** 2) > VOICE_DBFS:
            self.voiced_frames += 1

    def stop(self) -> None:
        if self._token is not None:
            self.clock.remove(self._token)
            self._token = None
        if self._party is not None:
            self._party = None
            self.media.detach()

    async def finish(self) -> ReadinessRecord:
        self.stop()
        record = judge(self.agent, await self.media.stats(), self.voiced_frames / 50.0, self.seconds)
        log.info("agent %s: echo test %s (rtt %s ms, jitter %s ms, loss %.1f %%, MOS %.2f)%s", self.agent,
                 "passed" if record.passed else "FAILED", record.rtt_ms, record.jitter_ms, record.loss_pct,
                 record.mos, f": {'; '.join(record.reasons)}" if record.reasons else "")
        self.on_done(record)
        return record
