"""media.prompts and media.prompt_build: WAV loading at any rate/width/channels (frequency and
level measured after resampling), the decode cache, the player, the library, the number and
wait builders, and espeak-ng prompt building into a temporary directory."""

from __future__ import annotations

import math
import os
import re
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from acd.cli import main as acd_main
from media.errors import MediaError
from media.prompt_build import TARGET_DBFS, build_prompts, load_texts
from media.prompts import (
    PHRASE_GAP_S,
    WORD_GAP_S,
    PromptFileError,
    PromptLibrary,
    PromptNotFound,
    PromptPlayer,
    cache_info,
    clear_cache,
    load_wav,
    read_wav,
    say_number,
    say_position,
    say_wait,
)
from tests.audio import peak_hz


def write_pcm(path: Path, channels: list[np.ndarray], rate: int, width: int = 2) -> Path:
    """Write float channels in [-1, 1] as an 8-bit (unsigned) or 16-bit PCM WAV."""
    x = np.stack(channels, axis=1)
    if width == 1:
        raw = np.clip(np.rint(x * 127 + 128), 0, 255).astype(np.uint8).tobytes()
    else:
        raw = np.clip(np.rint(x * 32767), -32768, 32767).astype("<i2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return path


def sine(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)




def band_db(x: np.ndarray, rate: int, lo: float, hi: float) -> float:
    """Power in [lo, hi] Hz relative to the total, in dB."""
    p = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size))) ** 2
    f = np.fft.rfftfreq(x.size, 1 / rate)
    return 10 * math.log10(p[(f >= lo) & (f <= hi)].sum() / p.sum())


def rms(x: np.ndarray) -> float:
    return math.sqrt(float(np.mean(x.astype(np.float64) ** 2)))


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    clear_cache()


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("src_rate", [8000, 16000, 44100, 48000])
@pytest.mark.parametrize("rate", [8000, 16000])
def test_load_resamples_and_keeps_frequency_and_level(tmp_path: Path, src_rate: int, rate: int) -> None:
    f = write_pcm(tmp_path / "t.wav", [sine(1000.0, 1.0, src_rate)], src_rate)
    x = load_wav(f, rate)
    assert x.dtype == np.int16 and x.ndim == 1
    assert x.size == pytest.approx(rate, abs=2)
    mid = x[rate // 10: -rate // 10]
    assert peak_hz(mid, rate) == pytest.approx(1000.0, abs=0.5)
    assert 20 * math.log10(rms(mid) / (0.5 * 32767 / math.sqrt(2))) == pytest.approx(0.0, abs=0.1)


def test_resampling_near_nyquist_and_anti_aliasing(tmp_path: Path) -> None:
    f = write_pcm(tmp_path / "hi.wav", [sine(3500.0, 1.0, 48000) + sine(6000.0, 1.0, 48000)], 48000)
    x = load_wav(f, 8000)[800:-800]
    assert peak_hz(x, 8000) == pytest.approx(3500.0, abs=0.5)
    # 6 kHz does not fit in 8 kHz sampling: it must be filtered out, not folded to 2 kHz.
    assert band_db(x, 8000, 1900, 2100) < -60


def test_stereo_is_averaged_to_mono(tmp_path: Path) -> None:
    left, right = sine(500.0, 1.0, 16000, 0.4), sine(1500.0, 1.0, 16000, 0.4)
    x = load_wav(write_pcm(tmp_path / "st.wav", [left, right], 16000), 16000)
    assert x.size == 16000
    assert band_db(x, 16000, 480, 520) == pytest.approx(-3.0, abs=0.2)  # half the power each
    assert band_db(x, 16000, 1480, 1520) == pytest.approx(-3.0, abs=0.2)
    assert rms(x) == pytest.approx(0.2 * 32767, rel=0.01)  # each side at half amplitude
    same = load_wav(write_pcm(tmp_path / "same.wav", [left, left], 16000), 16000)
    assert np.abs(same.astype(int) - np.rint(left * 32767)).max() <= 1


def test_eight_bit_unsigned(tmp_path: Path) -> None:
    f = write_pcm(tmp_path / "u8.wav", [sine(440.0, 0.5, 11025, 0.8)], 11025, width=1)
    x = load_wav(f, 8000)
    assert abs(float(x.mean())) < 50  # 128 is zero: no DC offset
    assert peak_hz(x[400:-400], 8000) == pytest.approx(440.0, abs=1.0)
    assert rms(x) == pytest.approx(0.8 * 32767 / math.sqrt(2), rel=0.02)


def test_cache_decodes_once_per_path_and_rate(tmp_path: Path) -> None:
    f = write_pcm(tmp_path / "c.wav", [sine(700.0, 0.5, 16000)], 16000)
    a = load_wav(f, 8000)
    b = load_wav(f, 8000)
    assert a is b and cache_info().decodes == 1 and cache_info().hits == 1
    assert not a.flags.writeable
    load_wav(f, 16000)
    assert cache_info().decodes == 2
    write_pcm(f, [sine(900.0, 0.25, 16000)], 16000)  # replaced on disk
    os.utime(f, ns=(1, 1))
    c = load_wav(f, 8000)
    assert cache_info().decodes == 3 and c.size == 2000
    assert peak_hz(c, 8000) == pytest.approx(900.0, abs=1.0)


def test_bad_files_raise_naming_file_and_reason(tmp_path: Path) -> None:
    with pytest.raises(PromptFileError, match=r"nope\.wav: no such file"):
        load_wav(tmp_path / "nope.wav", 8000)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(PromptFileError, match=r"junk\.wav: not a usable WAV file"):
        load_wav(junk, 8000)
    deep = tmp_path / "deep.wav"
    with wave.open(str(deep), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(3)
        w.setframerate(8000)
        w.writeframes(b"\0" * 300)
    with pytest.raises(PromptFileError, match=r"deep\.wav: 24-bit samples"):
        read_wav(deep)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(write_pcm(tmp_path / "ok.wav", [sine(1, 0.1, 8000)], 8000).read_bytes()[:30])
    with pytest.raises(PromptFileError, match=r"cut\.wav"):
        load_wav(cut, 8000)
    assert issubclass(PromptFileError, MediaError)


# --------------------------------------------------------------------------- player, library


def test_player_frames_then_done() -> None:
    x = np.arange(1, 401, dtype=np.int16)  # 2.5 frames at 8 kHz
    p = PromptPlayer(x, 8000)
    frames = [p.next_frame()]
    while not p.done:
        frames.append(p.next_frame())
    assert [f.size for f in frames] == [160, 160, 160]
    y = np.concatenate(frames)
    assert np.array_equal(y[:400], x) and not y[400:].any()
    with pytest.raises(MediaError, match="'frame' while done"):
        p.next_frame()
    q = PromptPlayer(x, 8000)
    q.next_frame()
    q.stop()  # barge-in
    assert q.done
    assert PromptPlayer(np.zeros(0, np.int16), 8000).done


def make_library(root: Path, names: dict[str, float], rate: int = 16000, seconds: float = 0.3) -> PromptLibrary:
    for name, freq in names.items():
        write_pcm(root / f"{name}.wav", [sine(freq, seconds, rate)], rate)
    return PromptLibrary(root, 8000)


def test_library_resolves_names_and_names_the_missing_one(tmp_path: Path) -> None:
    lib = make_library(tmp_path, {"queue/you-are-number": 500.0})
    assert lib.path("queue/you-are-number") == tmp_path / "queue" / "you-are-number.wav"
    assert peak_hz(lib.load("queue/you-are-number")[200:-200], 8000) == pytest.approx(500.0, abs=1)
    assert lib.exists("queue/you-are-number") and not lib.exists("queue/in-line")
    with pytest.raises(PromptNotFound, match=r"prompt 'queue/in-line' not found"):
        lib.load("queue/in-line")
    for bad in ("../secret", "/etc/passwd", "queue/../../x", "", "a//b"):
        with pytest.raises(PromptNotFound, match="invalid prompt name"):
            lib.path(bad)


def test_concatenate_with_natural_gaps(tmp_path: Path) -> None:
    names = {"queue/you-are-number": 400.0, "digits/20": 600.0, "digits/1": 800.0, "queue/in-line": 1000.0}
    lib = make_library(tmp_path, names)
    seq = ["queue/you-are-number", "digits/20", "digits/1", "queue/in-line"]
    y = lib.concatenate(seq)
    piece = 2400  # 0.3 s at 8 kHz
    word, phrase = int(WORD_GAP_S * 8000), int(PHRASE_GAP_S * 8000)
    assert y.size == 4 * piece + 2 * phrase + word
    quiet = np.abs(y) <= 1
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8))) + 1
    bounds = np.concatenate([[0], edges, [y.size]])
    gaps = [int(e - s) for s, e in zip(bounds[:-1], bounds[1:]) if quiet[s] and e - s > 16]
    assert gaps == pytest.approx([phrase, word, phrase], abs=4)  # silent stretches between pieces
    starts = [0, piece + phrase, 2 * piece + phrase + word, 3 * piece + 2 * phrase + word]
    for start, f in zip(starts, names.values()):
        assert peak_hz(y[start + 100: start + piece - 100], 8000) == pytest.approx(f, abs=1.0)
    # Each piece fades in and out: no click at the joins.
    assert abs(int(y[0])) < 200 and abs(int(y[piece - 1])) < 200
    with pytest.raises(PromptNotFound, match="digits/2"):
        lib.concatenate(["digits/20", "digits/2"])
    p = lib.player(seq)
    assert p.duration == pytest.approx(y.size / 8000)


# --------------------------------------------------------------------------- numbers and waits


@pytest.mark.parametrize(("n", "pieces"), [
    (0, ["0"]), (3, ["3"]), (13, ["13"]), (20, ["20"]), (21, ["20", "1"]), (99, ["90", "9"]),
    (100, ["1", "hundred"]), (115, ["1", "hundred", "15"]), (120, ["1", "hundred", "20"]),
    (999, ["9", "hundred", "90", "9"]), (1000, ["1", "thousand"]), (1001, ["1", "thousand", "1"]),
    (2005, ["2", "thousand", "5"]), (12345, ["12", "thousand", "3", "hundred", "40", "5"]),
    (999999, ["9", "hundred", "90", "9", "thousand", "9", "hundred", "90", "9"]),
])
def test_say_number(n: int, pieces: list[str]) -> None:
    assert say_number(n) == [f"digits/{p}" for p in pieces]


def spoken_value(pieces: list[str]) -> int:
    """Read back what say_number says, as a listener would."""
    total, group = 0, 0
    for p in pieces:
        word = p.removeprefix("digits/")
        if word == "hundred":
            group *= 100
        elif word == "thousand":
            total, group = total + group * 1000, 0
        else:
            group += int(word)
    return total + group


STANDARD = load_texts()


@given(st.integers(min_value=0, max_value=999_999))
def test_say_number_reads_back_and_uses_only_standard_prompts(n: int) -> None:
    pieces = say_number(n)
    assert spoken_value(pieces) == n
    assert all(p in STANDARD for p in pieces)


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_say_wait_uses_only_standard_prompts(seconds: float) -> None:
    assert all(p in STANDARD for p in say_wait(seconds))


def test_say_number_rejects_out_of_range() -> None:
    for bad in (-1, 1_000_000):
        with pytest.raises(ValueError, match="outside"):
            say_number(bad)
    with pytest.raises(ValueError):
        say_number(True)
    with pytest.raises(TypeError):
        say_number(2.5)  # type: ignore[arg-type]


def test_say_position() -> None:
    assert say_position(5) == ["queue/you-are-number", "digits/5", "queue/in-line"]
    assert say_position(42) == ["queue/you-are-number", "digits/40", "digits/2", "queue/in-line"]
    with pytest.raises(ValueError):
        say_position(0)


@pytest.mark.parametrize(("seconds", "minutes"), [
    (0, None), (30, None), (59.9, None), (60, 1), (89, 1), (90, 2), (400, 7), (9.4 * 60, 9),
    (12 * 60, 10), (13 * 60, 15), (58 * 60, 60), (125 * 60, 130),
])
def test_say_wait(seconds: float, minutes: int | None) -> None:
    got = say_wait(seconds)
    if minutes is None:
        assert got == ["queue/less-than", "digits/1", "queue/minute"]
    else:
        unit = "queue/minute" if minutes == 1 else "queue/minutes"
        assert got == ["queue/about", *say_number(minutes), unit]


def test_say_wait_rejects_nonsense() -> None:
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            say_wait(bad)


# --------------------------------------------------------------------------- building with espeak-ng


def test_standard_list_has_the_pieces() -> None:
    digits = {f"digits/{n}" for n in [*range(20), *range(20, 100, 10)]} | {"digits/hundred", "digits/thousand"}
    queue = {f"queue/{n}" for n in ("you-are-number", "in-line", "about", "minutes", "minute", "less-than",
                                    "thank-you-for-holding", "all-agents-busy", "callback-offer",
                                    "callback-confirm", "your-call-is-important", "please-hold",
                                    "goodbye", "invalid-option")}
    assert digits | queue | {"echo/intro", "ivr/demo-menu"} <= set(STANDARD)
    assert "keep your place in line" in STANDARD["queue/callback-offer"]


def speech_checks(path: Path) -> None:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
    x, rate = read_wav(path)
    assert 0.25 < x.size / rate < 4.0
    block = rate // 100
    levels = np.sqrt(np.mean(x[: x.size // block * block].astype(float).reshape(-1, block) ** 2, axis=1))
    loud = levels > levels.max() * 0.01
    # Trimmed: sound (within 40 dB of the loudest 10 ms) within 30 ms of both ends.
    assert loud[:3].any() and loud[-3:].any()
    # Active level at the target, peaks under -3 dBFS.
    active = levels[levels >= levels.max() * 10 ** (-30 / 20)]
    assert 20 * math.log10(math.sqrt(np.mean(active ** 2)) / 32767) == pytest.approx(TARGET_DBFS, abs=1.5)
    assert np.abs(x).max() <= 32767 * 10 ** (-3 / 20) + 1
    # Speech-like: syllabic level changes (not a steady tone), energy in the voice band.
    assert levels[loud].std() / levels[loud].mean() > 0.3
    assert band_db(x, rate, 100, 4000) > -3


def test_build_prompts_speaks_missing_ones_and_keeps_recordings(tmp_path: Path) -> None:
    names = ["digits/7", "queue/in-line", "queue/please-hold"]
    operator = write_pcm(tmp_path / "queue" / "please-hold.wav", [sine(300.0, 1.0, 8000)], 8000)
    before = operator.read_bytes()
    built = build_prompts(tmp_path, names=names)
    assert built == [tmp_path / "digits" / "7.wav", tmp_path / "queue" / "in-line.wav"]
    for path in built:
        speech_checks(path)
    assert operator.read_bytes() == before  # the operator's recording is kept
    assert build_prompts(tmp_path, names=names) == []  # nothing missing
    assert build_prompts(tmp_path, names=["queue/please-hold"], force=True) == [operator]
    speech_checks(operator)
    assert not list(tmp_path.rglob("*.tmp"))
    # The built pieces play through the library.
    lib = PromptLibrary(tmp_path, 8000)
    y = lib.concatenate(["queue/please-hold", "digits/7"])
    assert y.size > 0.5 * 8000


def test_build_prompts_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MediaError, match="no text for prompt.*queue/nope"):
        build_prompts(tmp_path, names=["queue/nope"])
    with pytest.raises(MediaError, match="voice 'xx-nosuch'"):
        build_prompts(tmp_path, names=["digits/1"], voice="xx-nosuch")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MediaError, match="espeak-ng not found"):
        build_prompts(tmp_path / "p", names=["digits/1"])
    assert not (tmp_path / "p").exists()


def test_load_texts_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "t.toml"
    bad.write_text('[queue]\nx = 3\n')
    with pytest.raises(MediaError, match=re.escape(f"{bad}: queue/x")):
        load_texts(bad)
    bad.write_text('[queue\n')
    with pytest.raises(MediaError, match="not valid TOML"):
        load_texts(bad)


def test_cli_prompts_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "prompts"
    assert acd_main(["prompts", "build", "--dir", str(target)]) == 0
    out = capsys.readouterr().out
    assert f"{len(STANDARD)} prompt(s) built" in out
    assert len(list(target.rglob("*.wav"))) == len(STANDARD)
    assert (tmp_path / "moh" / "default.wav").is_file()
    assert acd_main(["prompts", "build", "--dir", str(target)]) == 0
    assert "0 prompt(s) built" in capsys.readouterr().out
