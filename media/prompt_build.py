"""Build the standard voice prompts with espeak-ng, and the demo's default hold music with sox.

``build_prompts`` speaks every prompt of ``media/prompt_texts.toml`` that is missing from the
prompts directory::

    espeak-ng -v VOICE -s 165 -w tmp.wav "TEXT"

then trims the leading and trailing silence, sets the active speech level to
:data:`TARGET_DBFS` (RMS of the 10 ms blocks within 30 dB of the loudest, a rough ITU-T P.56
active level; 0 dBFS = RMS of a full-scale square wave, 32767) with peaks kept under
:data:`PEAK_DBFS`, resamples to the wanted rate with soxr and writes a 16-bit mono WAV
atomically (temporary file + rename). Existing files — synthetic or recorded by an operator —
are left alone unless ``force``.

``build_default_moh`` writes ``default.wav`` into the music-on-hold folder when it holds no
WAV: a slow I–vi–IV–V progression of strummed ``sox synth pluck`` chords, each ringing on
under the next, 12 s that loop without a seam.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import tempfile
import tomllib
import wave
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from media.errors import MediaError
from media.prompts import read_wav, resample

__all__ = ["TEXTS_FILE", "load_texts", "build_prompts", "build_default_moh", "write_wav",
           "synthesize"]

log = logging.getLogger(__name__)

TEXTS_FILE = Path(__file__).with_name("prompt_texts.toml")
TARGET_DBFS = -20.0  # active speech level of the prompts
PEAK_DBFS = -3.0  # peak ceiling after normalisation
MOH_DBFS = -26.0  # hold music sits below the prompts
TRIM_DB = 40.0  # blocks more than this below the loudest 10 ms block count as silence
_BLOCK_S = 0.010
_MARGIN_S = 0.010
_SPEED_WPM = 165
_TIMEOUT_S = 60.0
# I–vi–IV–V in C, five strings each (sox note names; A4 = 440 Hz).
_CHORDS = (("C3", "G3", "C4", "E4", "G4"), ("A2", "E3", "A3", "C4", "E4"),
           ("F2", "C3", "F3", "A3", "C4"), ("G2", "D3", "G3", "B3", "D4"))
_CHORD_S = 3.0  # one chord every 3 s ...
_RING_S = 3.6  # ... each ringing on under the next; the last one's tail wraps onto the start


def load_texts(path: str | Path | None = None) -> dict[str, str]:
    """Prompt name → text from a TOML file (tables are folders); the standard list by default."""
    p = Path(path) if path is not None else TEXTS_FILE
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MediaError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise MediaError(f"{p}: not valid TOML ({exc})") from exc
    texts: dict[str, str] = {}

    def walk(prefix: str, table: Mapping[str, object]) -> None:
        for key, value in table.items():
            name = f"{prefix}/{key}" if prefix else key
            if isinstance(value, Mapping):
                walk(name, value)
            elif isinstance(value, str) and value.strip() and not value.startswith("-"):
                texts[name] = value.strip()
            else:
                raise MediaError(f"{p}: {name}: must be a non-empty text not starting with '-'")

    walk("", data)
    return texts


def _block_rms(x: np.ndarray, block: int) -> np.ndarray:
    n = x.size // block
    if n == 0:
        return np.sqrt(np.mean(x.astype(np.float64) ** 2, keepdims=True)) if x.size else np.zeros(0)
    b = x[: n * block].astype(np.float64).reshape(n, block)
    return np.sqrt(np.mean(b * b, axis=1))


def _trim_and_normalise(x: np.ndarray, rate: int, target_dbfs: float) -> np.ndarray:
    """Trim silence at both ends, set the active RMS to ``target_dbfs``, cap the peak."""
    block = max(1, int(_BLOCK_S * rate))
    rms = _block_rms(x, block)
    if rms.size == 0 or rms.max() <= 0.0:
        raise MediaError("synthesised audio is silent")
    loud = np.flatnonzero(rms >= rms.max() * 10.0 ** (-TRIM_DB / 20.0))
    margin = int(_MARGIN_S * rate)
    start = max(0, int(loud[0]) * block - margin)
    end = min(x.size, (int(loud[-1]) + 1) * block + margin)
    y = x[start:end].astype(np.float64)
    active = rms[rms >= rms.max() * 10.0 ** (-30.0 / 20.0)]
    level = math.sqrt(float(np.mean(active * active)))
    gain = 32767.0 * 10.0 ** (target_dbfs / 20.0) / level
    peak = float(np.abs(y).max())
    gain = min(gain, 32767.0 * 10.0 ** (PEAK_DBFS / 20.0) / peak)
    return np.clip(np.rint(y * gain), -32768, 32767).astype(np.int16)


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> Path:
    """Write int16 mono ``samples`` as a 16-bit PCM WAV, atomically (temp file + rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f, wave.open(f, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(np.asarray(samples, dtype="<i2").tobytes())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MediaError(f"{name} not found on PATH: install it (Debian: apt-get install {package}) "
                         f"or put recorded WAV files in the prompts directory")
    return path


def synthesize(text: str, *, voice: str = "en-us+f3", rate: int = 16000) -> np.ndarray:
    """``text`` spoken by espeak-ng, trimmed, normalised and resampled to ``rate`` (int16)."""
    espeak = _tool("espeak-ng", "espeak-ng")
    with tempfile.TemporaryDirectory(prefix="homeline-tts-") as tmp:
        out = Path(tmp) / "out.wav"
        try:
            proc = subprocess.run([espeak, "-v", voice, "-s", str(_SPEED_WPM), "-w", str(out), text],
                                  capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise MediaError(f"espeak-ng took more than {_TIMEOUT_S:g} s for {text!r}") from exc
        if proc.returncode != 0 or not out.is_file():
            reason = (proc.stderr or proc.stdout).strip() or f"exit status {proc.returncode}"
            raise MediaError(f"espeak-ng (voice {voice!r}) failed: {reason}")
        x, src_rate = read_wav(out)
    return resample(_trim_and_normalise(x, src_rate, TARGET_DBFS), src_rate, rate)


def build_prompts(directory: str | Path, *, voice: str = "en-us+f3", rate: int = 16000,
                  force: bool = False, names: Iterable[str] | None = None,
                  texts: Mapping[str, str] | None = None, jobs: int | None = None) -> list[Path]:
    """Speak the standard prompts (or ``names`` of them) that ``directory`` lacks.

    Returns the files written, in list order. Existing WAVs are kept unless ``force``.
    Raises :class:`MediaError` when espeak-ng is missing, a voice is unknown or a name is not
    in the list.
    """
    table = dict(texts) if texts is not None else load_texts()
    wanted = list(table) if names is None else list(names)
    unknown = [n for n in wanted if n not in table]
    if unknown:
        raise MediaError(f"no text for prompt(s) {', '.join(unknown)} in the prompt list")
    root = Path(directory)
    todo = [n for n in wanted if force or not (root / f"{n}.wav").exists()]
    if not todo:
        log.info("prompts in %s: all %d present", root, len(wanted))
        return []
    _tool("espeak-ng", "espeak-ng")

    def one(name: str) -> Path:
        return write_wav(root / f"{name}.wav", synthesize(table[name], voice=voice, rate=rate), rate)

    built = [one(todo[0])]  # alone first: a bad voice fails once, not once per prompt
    workers = max(1, jobs or min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        built += pool.map(one, todo[1:])
    log.info("prompts in %s: built %d, kept %d (voice %s, %d Hz)",
             root, len(built), len(wanted) - len(built), voice, rate)
    return built


def _chord(sox: str, notes: tuple[str, ...], rate: int, tmp: Path) -> np.ndarray:
    out = tmp / f"chord-{'-'.join(notes)}.wav"
    delays = [f"{0.045 * i:.3f}" for i in range(len(notes))]  # a slow strum
    cmd = [sox, "-n", "-r", str(rate), "-b", "16", "-c", "1", str(out), "synth", f"{_RING_S:g}",
           *[a for n in notes for a in ("pluck", n)], "delay", *delays, "remix", "-",
           "fade", "0.01", f"{_RING_S:g}", "0.8", "norm", "-6"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MediaError(f"sox took more than {_TIMEOUT_S:g} s for a chord") from exc
    if proc.returncode != 0:
        raise MediaError(f"sox failed: {proc.stderr.strip() or proc.returncode}")
    return read_wav(out)[0]


def build_default_moh(directory: str | Path, *, rate: int = 16000, force: bool = False) -> Path | None:
    """Write ``directory/default.wav`` (about 12 s, loops) unless the folder already has WAVs.

    Returns the file written, or None when there was music already.
    """
    root = Path(directory)
    if not force and root.is_dir() and any(p.suffix.lower() == ".wav" for p in root.iterdir()):
        log.info("music on hold in %s: present, kept", root)
        return None
    sox = _tool("sox", "sox")
    with tempfile.TemporaryDirectory(prefix="homeline-moh-") as tmp:
        parts = [_chord(sox, notes, rate, Path(tmp)) for notes in _CHORDS]
    step = int(_CHORD_S * rate)
    music = np.zeros(step * len(parts))
    for i, part in enumerate(parts):  # circular overlap-add: the file itself loops seamlessly
        np.add.at(music, (i * step + np.arange(part.size)) % music.size, part)
    rms = math.sqrt(float(np.mean(music * music)))
    gain = 32767.0 * 10.0 ** (MOH_DBFS / 20.0) / rms
    gain = min(gain, 32767.0 * 10.0 ** (PEAK_DBFS / 20.0) / float(np.abs(music).max()))
    path = write_wav(root / "default.wav", np.clip(np.rint(music * gain), -32768, 32767), rate)
    log.info("music on hold: wrote %s (%.1f s)", path, music.size / rate)
    return path
