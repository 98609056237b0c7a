"""Call-progress tones and beeps as sans-IO frame sources.

A :class:`ToneSource` turns a :class:`ToneSpec` (frequencies, cadence, level) into 20 ms int16
frames at any sample rate. It holds no clock: each :meth:`ToneSource.next_frame` call is the
next frame, so a tone is as fast to test as to play. Oscillator phases are carried from frame
to frame (and through the "off" parts of a cadence), so the frames join without clicks; the
gating edges get a short linear ramp (:data:`RAMP_S`).

Levels are in dBm0, tied to int16 samples as G.711 does it: a full-scale digital sine is
+3.14 dBm0 (ITU-T G.711 §A, the A-law figure; µ-law is +3.17), so **0 dBm0 is a sine whose RMS
is 3.14 dB below that of a full-scale int16 sine**: RMS ``32767/√2 · 10^(−3.14/20) ≈ 16 141``,
peak ≈ 22 827. A dual tone "at −13 dBm0" has each component at −13 dBm0 (−10 dBm0 together).

The national table follows ITU-T E.180 (1998) and its Supplement 2 ("Various tones used in
national networks"), with Telcordia GR-506 levels for the United States, BT SIN 350 for the
United Kingdom, 1TR110 for Germany and ETSI TR 101 041 / CEPT T/CS 20-15 for the generic
European profile ``eu``. "400×25" in E.180 is a 400 Hz carrier amplitude-modulated at 25 Hz
(:attr:`ToneSpec.am_hz`); E.180 gives no depth, we use :data:`AM_DEPTH`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from media.errors import MediaError

__all__ = [
    "ToneSpec",
    "ToneSource",
    "PROFILES",
    "BEEPS",
    "tone",
    "dbm0_to_rms",
    "level_dbm0",
    "FULL_SCALE_DBM0",
]

log = logging.getLogger(__name__)

FULL_SCALE_DBM0 = 3.14  # ITU-T G.711: a full-scale sine is +3.14 dBm0 (A-law)
_FULL_SCALE_SINE_RMS = 32767.0 / math.sqrt(2.0)
DBM0_RMS = _FULL_SCALE_SINE_RMS * 10.0 ** (-FULL_SCALE_DBM0 / 20.0)  # RMS of a 0 dBm0 sine ≈ 16141
AM_DEPTH = 0.9  # modulation depth of "f×m" tones (E.180 leaves it to each administration)
RAMP_S = 0.002  # rise/fall of each burst: keeps the cadence click-free, well inside E.180 tolerances


def dbm0_to_rms(level: float) -> float:
    """RMS in int16 units of a sine at ``level`` dBm0."""
    return DBM0_RMS * 10.0 ** (level / 20.0)


def level_dbm0(samples: np.ndarray) -> float:
    """RMS level of ``samples`` (int16 units) in dBm0; ``-inf`` for digital silence."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return float("-inf")
    rms = math.sqrt(float(np.mean(x * x)))
    return 20.0 * math.log10(rms / DBM0_RMS) if rms > 0.0 else float("-inf")


@dataclass(frozen=True, slots=True)
class ToneSpec:
    """One tone: summed sine ``freqs`` gated by ``cadence``.

    ``cadence`` is seconds on, off, on, off, … starting with "on"; empty means continuous.
    ``repeat=False`` plays the cadence once (a beep); the source is then :attr:`done`.
    ``level_dbm0`` is per component. With ``am_hz`` the (single) carrier is amplitude-modulated
    and scaled so that its RMS is still ``level_dbm0``.
    """

    name: str
    freqs: tuple[float, ...]
    cadence: tuple[float, ...] = ()
    level_dbm0: float = -13.0
    am_hz: float = 0.0
    repeat: bool = True

    def __post_init__(self) -> None:
        if not self.freqs or any(f <= 0 for f in self.freqs):
            raise MediaError(f"tone {self.name!r}: frequencies must be positive")
        if any(d <= 0 for d in self.cadence):
            raise MediaError(f"tone {self.name!r}: cadence durations must be positive")
        if self.repeat and len(self.cadence) % 2:
            raise MediaError(f"tone {self.name!r}: a repeating cadence needs on/off pairs")
        if not self.repeat and not self.cadence:
            raise MediaError(f"tone {self.name!r}: a one-shot tone needs a duration")
        if self.am_hz and len(self.freqs) != 1:
            raise MediaError(f"tone {self.name!r}: modulation applies to a single carrier")

    @property
    def period(self) -> float:
        """Length of one cadence cycle in seconds (0 for a continuous tone)."""
        return float(sum(self.cadence))


def _t(name: str, freqs: tuple[float, ...], *cadence: float, level: float = -13.0,
       am: float = 0.0) -> ToneSpec:
    return ToneSpec(name, freqs, tuple(cadence), level, am)


# Country profiles: kind -> ToneSpec. Durations in seconds, levels per component.
_PROFILES: dict[str, dict[str, ToneSpec]] = {
    # Telcordia GR-506 precise tone plan (ANSI T1.401): dial −13, audible ring −19, busy and
    # reorder −24 dBm0 per component.
    "us": {
        "dial": _t("dial", (350.0, 440.0)),
        "ringback": _t("ringback", (440.0, 480.0), 2.0, 4.0, level=-19.0),
        "busy": _t("busy", (480.0, 620.0), 0.5, 0.5, level=-24.0),
        "congestion": _t("congestion", (480.0, 620.0), 0.25, 0.25, level=-24.0),
        "callwaiting": _t("callwaiting", (440.0,), 0.3, 9.7),
    },
    # BT SIN 350.
    "uk": {
        "dial": _t("dial", (350.0, 440.0)),
        "ringback": _t("ringback", (400.0, 450.0), 0.4, 0.2, 0.4, 2.0),
        "busy": _t("busy", (400.0,), 0.375, 0.375),
        "congestion": _t("congestion", (400.0,), 0.4, 0.35, 0.225, 0.525),
        "callwaiting": _t("callwaiting", (400.0,), 0.1, 4.0),
    },
    # ETSI TR 101 041 / CEPT T/CS 20-15 recommended European tones.
    "eu": {
        "dial": _t("dial", (425.0,)),
        "ringback": _t("ringback", (425.0,), 1.0, 4.0),
        "busy": _t("busy", (425.0,), 0.5, 0.5),
        "congestion": _t("congestion", (425.0,), 0.25, 0.25),
        "callwaiting": _t("callwaiting", (425.0,), 0.2, 0.2, 0.2, 4.4),
    },
    # Deutsche Telekom 1TR110.
    "de": {
        "dial": _t("dial", (425.0,)),
        "ringback": _t("ringback", (425.0,), 1.0, 4.0),
        "busy": _t("busy", (425.0,), 0.48, 0.48),
        "congestion": _t("congestion", (425.0,), 0.24, 0.24),
        "callwaiting": _t("callwaiting", (425.0,), 0.2, 0.2, 0.2, 5.0),
    },
    # France is the exception in Western Europe: 440 Hz (E.180 Suppl. 2; Orange STI).
    "fr": {
        "dial": _t("dial", (440.0,)),
        "ringback": _t("ringback", (440.0,), 1.5, 3.5),
        "busy": _t("busy", (440.0,), 0.5, 0.5),
        "congestion": _t("congestion", (440.0,), 0.25, 0.25),
        "callwaiting": _t("callwaiting", (440.0,), 0.3, 9.7),
    },
    "it": {
        "dial": _t("dial", (425.0,), 0.2, 0.2, 0.6, 1.0),
        "ringback": _t("ringback", (425.0,), 1.0, 4.0),
        "busy": _t("busy", (425.0,), 0.5, 0.5),
        "congestion": _t("congestion", (425.0,), 0.2, 0.2),
        "callwaiting": _t("callwaiting", (425.0,), 0.4, 0.1, 0.25, 0.1, 0.15, 14.0),
    },
    "es": {
        "dial": _t("dial", (425.0,)),
        "ringback": _t("ringback", (425.0,), 1.5, 3.0),
        "busy": _t("busy", (425.0,), 0.2, 0.2),
        "congestion": _t("congestion", (425.0,), 0.2, 0.2, 0.2, 0.2, 0.2, 0.6),
        "callwaiting": _t("callwaiting", (425.0,), 0.175, 0.175, 0.175, 3.5),
    },
    "nl": {
        "dial": _t("dial", (425.0,)),
        "ringback": _t("ringback", (425.0,), 1.0, 4.0),
        "busy": _t("busy", (425.0,), 0.5, 0.5),
        "congestion": _t("congestion", (425.0,), 0.25, 0.25),
        "callwaiting": _t("callwaiting", (425.0,), 0.5, 9.5),
    },
    # ACIF S002: ring tone 425 Hz × 25 Hz, generated as 412.5 + 437.5 Hz (the same spectrum).
    "au": {
        "dial": _t("dial", (412.5, 437.5)),
        "ringback": _t("ringback", (412.5, 437.5), 0.4, 0.2, 0.4, 2.0),
        "busy": _t("busy", (425.0,), 0.375, 0.375),
        "congestion": _t("congestion", (425.0,), 0.375, 0.375),
        "callwaiting": _t("callwaiting", (425.0,), 0.2, 0.2, 0.2, 4.4),
    },
    # India (E.180 Suppl. 2): 400 Hz × 25 Hz.
    "in": {
        "dial": _t("dial", (400.0,), am=25.0),
        "ringback": _t("ringback", (400.0,), 0.4, 0.2, 0.4, 2.0, am=25.0),
        "busy": _t("busy", (400.0,), 0.75, 0.75),
        "congestion": _t("congestion", (400.0,), 0.25, 0.25),
        "callwaiting": _t("callwaiting", (400.0,), 0.2, 0.1, 0.2, 7.5),
    },
    # NTT (E.180 Suppl. 2): 400 Hz, ring back 400 Hz × 16 Hz, 1 s on 2 s off.
    "jp": {
        "dial": _t("dial", (400.0,)),
        "ringback": _t("ringback", (400.0,), 1.0, 2.0, am=16.0),
        "busy": _t("busy", (400.0,), 0.5, 0.5),
        "congestion": _t("congestion", (400.0,), 0.5, 0.5),
        "callwaiting": _t("callwaiting", (400.0,), 0.5, 8.0, am=16.0),
    },
}
_ALIASES = {"gb": "uk", "ie": "uk", "at": "de", "ch": "de", "be": "eu", "pt": "eu"}

PROFILES: Mapping[str, Mapping[str, ToneSpec]] = MappingProxyType(
    {k: MappingProxyType(v) for k, v in _PROFILES.items()})

# Country-independent beeps.
BEEPS: Mapping[str, ToneSpec] = MappingProxyType({
    # "This call is being recorded" beep: 1 kHz, 200 ms, once.
    "recording-beep": ToneSpec("recording-beep", (1000.0,), (0.2,), -13.0, repeat=False),
    # Periodic recorder warning tone, 47 CFR §64.501: 1400 Hz, 0.5 s every 15 s.
    "recording-warning": ToneSpec("recording-warning", (1400.0,), (0.5, 14.5), -13.0),
    # Call-waiting beep (ANSI T1.401: 440 Hz, 300 ms), once.
    "callwaiting-beep": ToneSpec("callwaiting-beep", (440.0,), (0.3,), -13.0, repeat=False),
    # Voicemail / leave-a-message beep and the agent's "call coming in" zip tone (440 Hz).
    "beep": ToneSpec("beep", (1000.0,), (0.25,), -13.0, repeat=False),
    "zip": ToneSpec("zip", (440.0,), (0.1, 0.1, 0.1), -13.0, repeat=False),
})


def tone(profile: str, kind: str) -> ToneSpec:
    """The ``kind`` tone (``dial``, ``ringback``, ``busy``, ``congestion``, ``callwaiting``) of
    country ``profile`` (``us``, ``uk``, ``eu``, ``de``, ``fr``, ``it``, ``es``, ``nl``, ``au``,
    ``in``, ``jp``; a few aliases such as ``gb``), or a beep from :data:`BEEPS` with
    ``profile=""``."""
    if not profile:
        if kind in BEEPS:
            return BEEPS[kind]
        raise MediaError(f"unknown beep {kind!r} (known: {', '.join(sorted(BEEPS))})")
    key = _ALIASES.get(profile.lower(), profile.lower())
    table = PROFILES.get(key)
    if table is None:
        raise MediaError(f"unknown tone profile {profile!r} (known: {', '.join(sorted(PROFILES))})")
    spec = table.get(kind)
    if spec is None:
        raise MediaError(f"tone profile {profile!r} has no {kind!r} tone (known: {', '.join(table)})")
    return spec


class ToneSource:
    """Frames of one tone at ``rate``: ``next_frame()`` returns ``frame_ms`` of int16 mono.

    States: playing → done (one-shot tones only). ``next_frame()`` while done raises
    :class:`MediaError`; repeating tones never end.
    """

    def __init__(self, spec: ToneSpec, rate: int = 8000, frame_ms: int = 20) -> None:
        if rate <= 0 or frame_ms <= 0:
            raise MediaError(f"tone {spec.name!r}: bad rate {rate} or frame {frame_ms} ms")
        top = max(spec.freqs) + spec.am_hz
        if top >= rate / 2:
            raise MediaError(f"tone {spec.name!r}: {top:g} Hz does not fit a {rate} Hz sample rate")
        self.spec = spec
        self.rate = rate
        self.frame_size = rate * frame_ms // 1000
        self.position = 0  # samples produced so far
        self._omega = 2.0 * np.pi * np.asarray(spec.freqs, dtype=np.float64) / rate
        self._phase = np.zeros(len(spec.freqs), dtype=np.float64)
        self._am_omega = 2.0 * np.pi * spec.am_hz / rate
        self._am_phase = 0.0
        amp = dbm0_to_rms(spec.level_dbm0) * math.sqrt(2.0)
        if spec.am_hz:
            amp /= math.sqrt(1.0 + AM_DEPTH * AM_DEPTH / 2.0)  # keep the RMS at the stated level
        self._amp = amp
        # Cadence boundaries in samples: segment k spans [bounds[k-1], bounds[k]); even k is "on".
        self._bounds = np.rint(np.cumsum(spec.cadence) * rate).astype(np.int64)
        self._cycle = int(self._bounds[-1]) if spec.cadence else 0
        self._starts = np.concatenate([[0], self._bounds[:-1]]) if spec.cadence else self._bounds
        self._ramp = max(1, int(RAMP_S * rate))
        self._arange = np.arange(self.frame_size, dtype=np.float64)

    @property
    def done(self) -> bool:
        """A one-shot tone that has played all of its cadence."""
        return not self.spec.repeat and self.position >= self._cycle

    def _gain(self, n: int) -> np.ndarray | None:
        """Per-sample gate (0..1) for samples ``position .. position+n``; None = all on."""
        if not self._cycle:
            return None
        pos = self.position + np.arange(n, dtype=np.int64)
        if self.spec.repeat:
            pos %= self._cycle
        seg = np.searchsorted(self._bounds, pos, side="right")
        inside = seg < len(self._bounds)  # one-shot: past the end is silence
        segc = np.minimum(seg, len(self._bounds) - 1)
        on = inside & (segc % 2 == 0)
        edge = np.minimum(pos - self._starts[segc] + 1, self._bounds[segc] - pos)
        return np.where(on, np.clip(edge / self._ramp, 0.0, 1.0), 0.0)

    def next_frame(self) -> np.ndarray:
        """The next frame (int16, ``frame_size`` samples)."""
        if self.done:
            raise MediaError(f"tone {self.spec.name!r} has finished")
        n = self.frame_size
        phases = self._phase[:, None] + self._omega[:, None] * self._arange[None, :]
        x = np.sin(phases).sum(axis=0)
        if self._am_omega:
            x *= 1.0 + AM_DEPTH * np.sin(self._am_phase + self._am_omega * self._arange)
            self._am_phase = (self._am_phase + self._am_omega * n) % (2.0 * np.pi)
        self._phase = (self._phase + self._omega * n) % (2.0 * np.pi)
        gain = self._gain(n)
        x *= self._amp
        if gain is not None:
            x *= gain
        self.position += n
        return np.clip(np.rint(x), -32768, 32767).astype(np.int16)

    def frames(self, seconds: float) -> np.ndarray:
        """Convenience: ``seconds`` worth of whole frames, concatenated (stops early when done)."""
        out = []
        for _ in range(max(0, math.ceil(seconds * self.rate / self.frame_size))):
            if self.done:
                break
            out.append(self.next_frame())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int16)
