"""Audio measurements of ``acd loopback``: the reference speech, alignment, PESQ and its ceiling.

The reference is espeak-ng speech (four Harvard sentences, about 9 s at 16 kHz), made once
into a cache directory. A call plays ``lead`` seconds of silence, then the reference, and
records what comes back; both start on the same tick of pjsua's conference bridge, so

* the round trip is the lag of the FFT cross-correlation between what was played and what
  was recorded (non-negative lags only, whole samples), over the whole call (the lag used
  to cut the recording) and per second of speech: ``rtt_ms`` is the lowest round trip the
  call held (10th percentile of the per-second lags), ``rtt_max_ms`` the highest, so that a
  jitter buffer growing during the call (ours or the target's) shows;
* the returned speech, cut at ``lead + delay``, is scored against the reference by PESQ
  (ITU-T P.862 through the ``pesq`` package: narrowband at 8 kHz for G.711, wideband P.862.2
  at 16 kHz for G.722);
* the *ceiling* is the same reference through the same codec offline (``media.codecs``),
  scored the same way: a call cannot beat it, and ``pesq - ceiling`` is what the path cost;
* lost or concealed audio is estimated per 20 ms frame: a frame of active speech whose
  returned audio correlates below :data:`MATCH_THRESHOLD` with the reference (at the locally
  tracked lag) counts as impaired;
* with the relay in the path, :func:`wire_round_trip` gives the target's own round trip from
  the RTP it saw leave and come back: the acoustic round trip also holds the tester's own
  buffering, which pjsua's 20 ms conference-bridge tick quantises (an echo that misses a tick
  by a millisecond waits 20 ms more), the wire one does not;
* for a loss comparison, :func:`gap_score` scores the reference with a fraction of its 20 ms
  frames lost offline, either left silent (zero-filled) or concealed by the codec's own PLC.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from media.errors import MediaError

__all__ = ["CodecSpec", "codec_spec", "reference_speech", "load_reference", "codec_roundtrip",
           "pesq_score", "ceiling_score", "align", "impaired_frames", "gap_score",
           "wire_round_trip", "analyse_recording"]

log = logging.getLogger(__name__)

SPEECH_TEXT = ("The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
               "It is easy to tell the depth of a well. These days a chicken leg is a rare dish.")
VOICE = "en-us+f3"
REF_RATE = 16000
FRAME_MS = 20
MIN_PEAK = 0.3  # normalised correlation below this: what came back is not our speech
MATCH_THRESHOLD = 0.8  # per-frame correlation below this: the frame was lost or concealed
ACTIVE_DB = 35.0  # frames within this many dB of the loudest count as active speech
MIN_COMPARED_S = 3.0  # PESQ needs a few seconds of speech


@dataclass(frozen=True)
class CodecSpec:
    """A codec as the loopback tester uses it: SDP name, PCM rate, PESQ mode."""

    key: str  # pcmu | pcma | g722
    sdp_name: str
    rate: int
    mode: str  # "nb" (P.862) or "wb" (P.862.2)


_SPECS = {"pcmu": CodecSpec("pcmu", "PCMU", 8000, "nb"), "pcma": CodecSpec("pcma", "PCMA", 8000, "nb"),
          "g722": CodecSpec("g722", "G722", 16000, "wb")}


def codec_spec(name: str) -> CodecSpec:
    """``pcmu``, ``pcma`` or ``g722`` (case-insensitive)."""
    try:
        return _SPECS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown codec {name!r} (pcmu, pcma or g722)") from None


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "homeline" / "loopback"


def reference_speech(cache_dir: str | Path | None = None) -> Path:
    """The reference speech WAV (16 kHz), spoken by espeak-ng on first use into ``cache_dir``."""
    from media.prompt_build import synthesize, write_wav

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    tag = hashlib.sha1(f"{VOICE}|{SPEECH_TEXT}".encode()).hexdigest()[:10]
    path = root / f"reference-{tag}-16k.wav"
    if not path.is_file():
        log.info("speaking the reference speech with espeak-ng into %s", path)
        write_wav(path, synthesize(SPEECH_TEXT, voice=VOICE, rate=REF_RATE), REF_RATE)
    return path


def load_reference(path: str | Path, rate: int) -> np.ndarray:
    """A WAV file as int16 mono at ``rate`` (resampled with soxr when needed)."""
    from media.prompts import read_wav, resample

    x, src = read_wav(path)
    return resample(x, src, rate)


def codec_roundtrip(pcm: np.ndarray, spec: CodecSpec, lost: np.ndarray | None = None,
                    conceal: bool = True) -> np.ndarray:
    """``pcm`` encoded and decoded 20 ms at a time with ``media.codecs``; frames flagged in
    ``lost`` are concealed by the codec's PLC (``conceal``) or left silent."""
    from media.codecs import make_codec

    codec = make_codec(spec.sdp_name)
    n = codec.frame_samples
    x = np.concatenate((np.asarray(pcm, np.int16), np.zeros(-len(pcm) % n, np.int16)))
    out = []
    for i in range(len(x) // n):
        payload = codec.encode(x[i * n:(i + 1) * n])  # the encoder runs on lost frames too
        if lost is not None and i < len(lost) and lost[i]:
            out.append(codec.conceal(n) if conceal else np.zeros(n, np.int16))
        else:
            out.append(codec.decode(payload))
    return np.concatenate(out)[:len(pcm)] if out else np.zeros(0, np.int16)


def pesq_score(ref: np.ndarray, deg: np.ndarray, rate: int, mode: str) -> float | None:
    """PESQ MOS-LQO of ``deg`` against ``ref``; None when PESQ finds no utterance."""
    from pesq import PesqError, pesq

    n = min(len(ref), len(deg))
    try:
        return round(float(pesq(rate, np.asarray(ref[:n], np.float32) / 32768.0,
                                np.asarray(deg[:n], np.float32) / 32768.0, mode)), 3)
    except PesqError as exc:
        log.warning("PESQ failed: %s", exc)
        return None


def ceiling_score(ref: np.ndarray, spec: CodecSpec, passes: int = 1) -> float | None:
    """The codec's own score: ``ref`` through the codec offline, scored like a call.

    ``passes=2`` is the tandem ceiling of a loop whose far end decodes and re-encodes (an
    echo behind a jitter buffer): the same for G.711, lower for G.722's ADPCM.
    """
    deg = ref
    for _ in range(passes):
        deg = codec_roundtrip(deg, spec)
    return pesq_score(ref, deg, spec.rate, spec.mode)


def align(played: np.ndarray, recorded: np.ndarray, rate: int, max_delay_s: float = 1.0
          ) -> tuple[int, float]:
    """(lag in samples, normalised correlation peak) of ``recorded`` behind ``played``."""
    a = np.asarray(played, np.float64)
    b = np.asarray(recorded, np.float64)
    if a.size == 0 or b.size == 0:
        return 0, 0.0
    a, b = a - a.mean(), b - b.mean()
    nfft = 1 << int(np.ceil(np.log2(a.size + b.size)))
    corr = np.fft.irfft(np.fft.rfft(b, nfft) * np.conj(np.fft.rfft(a, nfft)), nfft)
    limit = max(1, min(int(max_delay_s * rate) + 1, b.size))
    lag = int(np.argmax(corr[:limit]))
    # normalise by the energies of the overlapping parts at that lag
    m = min(a.size, b.size - lag)
    norm = float(np.sqrt(np.dot(a[:m], a[:m]) * np.dot(b[lag:lag + m], b[lag:lag + m])))
    return lag, float(corr[lag] / norm) if norm > 0 else 0.0


def segment_lags(played: np.ndarray, recorded: np.ndarray, rate: int, max_delay_s: float = 1.0,
                 window_s: float = 1.0, min_peak: float = 0.7) -> list[int]:
    """The lag of each 1 s window of active ``played`` audio (half-overlapping) that is
    clearly found in ``recorded`` (correlation at least ``min_peak``)."""
    win, hop, extra = int(window_s * rate), int(window_s * rate) // 2, int(max_delay_s * rate)
    loud = float(np.abs(played).max()) if played.size else 0.0
    lags = []
    for start in range(0, max(0, len(played) - win) + 1, hop):
        seg = played[start:start + win]
        if loud == 0 or float(np.abs(seg).max()) < 0.1 * loud:
            continue  # silence: nothing to find
        lag, peak = align(seg, recorded[start:start + win + extra], rate, max_delay_s)
        if peak >= min_peak:
            lags.append(lag)
    return lags


def impaired_frames(ref: np.ndarray, deg: np.ndarray, rate: int, *, search_ms: float = 30.0,
                    smooth: int = 15) -> tuple[float, int]:
    """(percent of active 20 ms frames that do not match the reference, active frames).

    ``deg`` is already aligned; the lag is tracked per frame within ``±search_ms`` (an
    adaptive jitter buffer may shift the timing) and median-smoothed over ``smooth``
    frames, so that a concealed frame (which matches the reference one pitch period
    earlier) is judged at its neighbours' lag, not its own.
    """
    f = rate * FRAME_MS // 1000
    w = int(rate * search_ms / 1000)
    n = min(len(ref), len(deg)) // f
    if n < 3:
        return 0.0, 0
    r = np.concatenate((np.zeros(w), np.asarray(ref, np.float64), np.zeros(w + f)))
    d = np.asarray(deg[:n * f], np.float64).reshape(n, f)
    # windows[i, j] = the reference frame i at lag (j - w)
    starts = np.arange(n) * f
    segs = np.stack([r[s:s + f + 2 * w] for s in starts])
    win = sliding_window_view(segs, f, axis=1)  # (n, 2w+1, f)
    num = np.einsum("ijk,ik->ij", win, d)
    den = np.sqrt(np.einsum("ijk,ijk->ij", win, win) * np.einsum("ik,ik->i", d, d)[:, None])
    rho = np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)
    best = np.argmax(rho, axis=1)
    pad = smooth // 2
    padded = np.concatenate((np.full(pad, best[0]), best, np.full(pad, best[-1])))
    lag = np.median(sliding_window_view(padded, smooth), axis=1).astype(int)
    at_lag = rho[np.arange(n), lag]
    ref_rms = np.sqrt(np.mean(np.asarray(ref[:n * f], np.float64).reshape(n, f) ** 2, axis=1))
    active = ref_rms >= ref_rms.max() * 10.0 ** (-ACTIVE_DB / 20.0) if ref_rms.max() > 0 else ref_rms > 1
    count = int(active.sum())
    if count == 0:
        return 0.0, 0
    return round(100.0 * float(np.sum(active & (at_lag < MATCH_THRESHOLD))) / count, 2), count


def gap_score(ref: np.ndarray, spec: CodecSpec, fraction: float, *, conceal: bool,
              seeds: tuple[int, ...] = (1, 2, 3)) -> float | None:
    """Mean PESQ of ``ref`` through the codec with ``fraction`` of its 20 ms frames lost at
    random (one draw per seed), concealed by the codec's PLC or left silent."""
    f = spec.rate * FRAME_MS // 1000
    nframes = -(-len(ref) // f)
    k = int(round(fraction * nframes))
    scores = []
    for seed in seeds:
        lost = np.zeros(nframes, bool)
        lost[np.random.default_rng(seed).choice(nframes, size=k, replace=False)] = True
        s = pesq_score(ref, codec_roundtrip(ref, spec, lost, conceal), spec.rate, spec.mode)
        if s is not None:
            scores.append(s)
    return round(float(np.mean(scores)), 3) if scores else None


Packet = tuple[float, int, int, bytes]  # (time s, RTP timestamp, payload type, payload)


def _wire_signal(packets: list[Packet], spec: CodecSpec) -> tuple[np.ndarray, list[tuple[int, int, float]]]:
    """The audio of one direction placed by RTP timestamp, and (start sample, samples, time)
    per packet. Packets of other payload types (DTMF, comfort noise) are skipped."""
    from media.codecs import CodecError, make_codec

    codec = make_codec(spec.sdp_name)
    pt = codec.static_payload_type
    audio = sorted((p for p in packets if p[2] == pt), key=lambda p: p[1])
    if not audio:
        return np.zeros(0, np.int16), []
    ratio = codec.sample_rate / codec.clock_rate  # G.722: 16 kHz audio on an 8 kHz clock
    ts0 = audio[0][1]
    placed, spans = [], []
    for t, ts, _pt, payload in audio:
        try:
            pcm = codec.decode(payload)
        except CodecError:
            continue
        start = int(round(((ts - ts0) & 0xFFFFFFFF) * ratio))
        placed.append((start, pcm))
        spans.append((start, len(pcm), t))
    out = np.zeros(max(s + len(x) for s, x in placed), np.int16)
    for start, pcm in placed:
        out[start:start + len(pcm)] = pcm
    return out, sorted(spans)


def wire_round_trip(capture: dict[str, list[Packet]], spec: CodecSpec, max_delay_s: float = 1.0
                    ) -> float | None:
    """The target's round trip in ms at our network edge: from an RTP packet leaving for the
    target to the packet that brings its first sample back (median over the call), found by
    cross-correlating the audio of the two directions. None when the audio did not match."""
    up, up_spans = _wire_signal(capture.get("up") or [], spec)
    down, down_spans = _wire_signal(capture.get("down") or [], spec)
    if len(up_spans) < 10 or len(down_spans) < 10:
        return None
    # the echo may sit earlier in the down stream's timestamps than in ours: search both ways
    lag, peak = align(up, down, spec.rate, max_delay_s)
    lag_back, peak_back = align(down, up, spec.rate, max_delay_s)
    if peak_back > peak:
        lag, peak = -lag_back, peak_back
    if peak < MIN_PEAK:
        return None
    starts = np.array([s for s, _, _ in down_spans])
    loud = 0.01 * float(np.abs(up).max())
    rtts = []
    for start, n, sent in up_spans:
        if float(np.abs(up[start:start + n]).max(initial=0)) <= loud:
            continue  # only packets carrying speech: the echo is known to be there
        j = int(np.searchsorted(starts, start + lag, side="right")) - 1
        if 0 <= j and start + lag < down_spans[j][0] + down_spans[j][1]:
            rtts.append(down_spans[j][2] - sent)
    return round(1000.0 * float(np.median(rtts)), 1) if rtts else None


def _read_recording(path: str | Path, rate: int) -> np.ndarray:
    from media.prompts import read_wav, resample

    x, src = read_wav(path)
    return resample(x, src, rate) if src != rate else x


def analyse_recording(record: str | Path, ref: np.ndarray, lead: int, spec: CodecSpec,
                      max_delay_s: float = 1.0) -> dict[str, object]:
    """Round trip, PESQ and impaired frames of one call's recording.

    The call played ``lead`` samples of silence then ``ref`` (both at ``spec.rate``).
    Returns ``rtt_ms``, ``rtt_max_ms``, ``correlation``, ``pesq``, ``impaired_pct``, ``compared_samples``
    and ``error`` (None, or why the call could not be scored).
    """
    out: dict[str, object] = {"rtt_ms": None, "rtt_max_ms": None, "correlation": None, "pesq": None,
                              "impaired_pct": None, "compared_samples": 0, "error": None}
    try:
        rec = _read_recording(record, spec.rate)
    except MediaError as exc:
        out["error"] = f"no recording: {exc}"
        return out
    played = np.concatenate((np.zeros(lead, np.int16), ref))
    lag, peak = align(played, rec, spec.rate, max_delay_s)
    out["correlation"] = round(peak, 3)
    if peak < MIN_PEAK:
        out["error"] = f"the reference did not come back (correlation {peak:.2f})"
        return out
    lags = segment_lags(played, rec, spec.rate, max_delay_s) or [lag]
    out["rtt_ms"] = round(1000.0 * float(np.percentile(lags, 10, method="lower")) / spec.rate, 1)
    out["rtt_max_ms"] = round(1000.0 * max(lags) / spec.rate, 1)
    start = lead + lag
    n = min(len(ref), len(rec) - start)
    if n < MIN_COMPARED_S * spec.rate:
        out["error"] = f"only {max(n, 0) / spec.rate:.1f} s of speech came back"
        return out
    deg = rec[start:start + n]
    out["compared_samples"] = n
    out["pesq"] = pesq_score(ref[:n], deg, spec.rate, spec.mode)
    out["impaired_pct"], _ = impaired_frames(ref[:n], deg, spec.rate)
    return out
