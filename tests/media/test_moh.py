"""media.moh: one decode per file however many callers, one encode per frame per codec, a
seamless loop, radio and from-the-start modes, the built-in fallback and the sox default."""

from __future__ import annotations

import logging
import math
import wave
from pathlib import Path

import numpy as np
import pytest

import media.moh as moh
from media.errors import MediaError
from media.moh import EncodedCache, MohMode, MohPlayer, MusicSource, clear_shared, shared_source
from media.prompt_build import build_default_moh
from tests.audio import peak_hz


def write_tone(path: Path, freq: float, seconds: float, rate: int, channels: int = 1,
               amp: float = 0.3) -> Path:
    x = amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)
    pcm = np.repeat(np.rint(x * 32767).astype("<i2")[:, None], channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path




def stream(src: MusicSource, first: int, count: int) -> np.ndarray:
    return np.concatenate([src.frame_at(i) for i in range(first, first + count)]).astype(np.float64)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "moh"
    write_tone(d / "a.wav", 440.0, 3.013, 16000, channels=2)
    write_tone(d / "b.wav", 660.0, 2.0, 44100)
    return d


def test_files_decoded_once_for_any_number_of_callers(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real = moh.read_wav

    def counting(path: Path) -> tuple[np.ndarray, int]:
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(moh, "read_wav", counting)
    src = MusicSource(folder, 8000)
    players = [src.player(tick, MohMode.RADIO if tick % 2 else MohMode.FROM_START) for tick in range(200)]
    for tick in range(200, 450):
        for p in players:
            p.frame(tick)
    assert sorted(c.name for c in calls) == ["a.wav", "b.wav"]
    assert src.decodes == 2 and src.files == [folder / "a.wav", folder / "b.wav"]
    assert not src.fallback


def test_one_encode_per_frame_for_all_callers_on_a_codec(folder: Path) -> None:
    encoded: list[int] = []

    def encode(pcm: np.ndarray) -> bytes:
        encoded.append(1)
        return pcm.astype("<i2").tobytes()

    src = MusicSource(folder, 8000)
    cache = src.encoded_cache("PCMU", encode)
    assert src.encoded_cache("PCMU", encode) is cache  # one cache per codec
    callers = [MohPlayer(src, start) for start in range(0, 400, 20)]  # 20 radio callers
    for tick in range(1000, 1100):
        payloads = {p.encoded(tick, cache) for p in callers}
        assert len(payloads) == 1  # everyone hears the same frame
        assert payloads.pop() == src.frame_at(tick).astype("<i2").tobytes()
    assert cache.encodes == len(encoded) == 100
    assert cache.hits == 100 * 19
    # A second codec encodes separately, a second time for each frame.
    other = src.encoded_cache("G722", lambda pcm: b"x" + pcm.tobytes())
    callers[0].encoded(1000, other)
    assert other.encodes == 1 and cache.encodes == 100


def test_real_codec_shared_by_fifty_callers(folder: Path) -> None:
    from media.codecs import make_codec

    src = MusicSource(folder, 8000)
    encoder = make_codec("PCMU")
    cache = src.encoded_cache("PCMU", encoder.encode)
    callers = [src.player(start) for start in range(50)]
    payloads = [[p.encoded(tick, cache) for p in callers] for tick in range(60, 110)]
    assert cache.encodes == 50 and cache.hits == 50 * 49
    assert all(len(set(tick)) == 1 and len(tick[0]) == 160 for tick in payloads)
    heard = np.concatenate([make_codec("PCMU").decode(tick[0]) for tick in payloads])
    assert peak_hz(heard, 8000) == pytest.approx(440.0, abs=1.0)  # a.wav, through G.711


def test_encoded_cache_is_bounded() -> None:
    cache = EncodedCache("PCMA", lambda pcm: pcm.tobytes(), capacity=10)
    frame = np.zeros(160, np.int16)
    for i in range(100):
        cache.get(i, frame)
    assert len(cache) == 10 and cache.encodes == 100
    cache.get(99, frame)
    assert cache.hits == 1
    cache.get(0, frame)  # evicted long ago: encoded again
    assert cache.encodes == 101
    with pytest.raises(MediaError):
        EncodedCache("PCMA", lambda pcm: b"", capacity=0)


def test_radio_mode_is_shared_and_from_start_is_per_caller(folder: Path) -> None:
    src = MusicSource(folder, 8000)
    early, late = src.player(10), src.player(5000)
    assert all(np.array_equal(early.frame(t), late.frame(t)) for t in range(6000, 6050))
    a = src.player(100, MohMode.FROM_START)
    b = src.player(173, MohMode.FROM_START)
    assert np.array_equal(a.frame(100), src.frame_at(0))
    assert np.array_equal(b.frame(173), src.frame_at(0))
    assert np.array_equal(a.frame(150), b.frame(223))
    assert not np.array_equal(a.frame(200), b.frame(200))
    # The start is music, not silence; frames cannot be changed by a caller.
    assert np.abs(a.frame(100)).max() > 1000
    with pytest.raises(ValueError):
        a.frame(101)[0] = 1
    with pytest.raises(MediaError, match="unknown mode"):
        MohPlayer(src, 0, "loud")  # type: ignore[arg-type]


def test_loop_and_file_joins_are_seamless(folder: Path) -> None:
    src = MusicSource(folder, 8000)
    n = src.n_frames
    assert src.duration == pytest.approx(3.013 + 2.0 - 2 * moh.CROSSFADE_S, abs=0.03)
    assert n * 160 == round(src.duration * 8000)
    assert np.array_equal(stream(src, 0, 5), stream(src, n, 5))  # the period is n frames
    whole = stream(src, 0, n)
    typical = np.abs(np.diff(whole)).max()  # the steepest slope of the music itself
    # Across the loop point and across the a.wav -> b.wav join: no step beyond the music's own.
    around_loop = stream(src, n - 40, 80)
    assert np.abs(np.diff(around_loop)).max() <= 1.05 * typical
    # The same source without the crossfade would jump at the loop point:
    raw = moh.read_wav(folder / "a.wav")[0].astype(np.float64)
    assert abs(raw[-1] - raw[0]) > 2 * np.abs(np.diff(raw)).max()
    # And each file keeps its pitch.
    first, second = whole[: int(2.0 * 8000)], whole[int(2.8 * 8000): int(4.0 * 8000)]
    assert peak_hz(first, 8000) == pytest.approx(440.0, abs=0.5)
    assert peak_hz(second, 8000) == pytest.approx(660.0, abs=0.5)


def test_fallback_chimes_when_folder_missing_or_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.wav").write_bytes(b"not a wav file")
    for d in ("missing", "empty", "junk"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="media.moh"):
            src = MusicSource(tmp_path / d, 8000)
        assert src.fallback
        assert "built-in chimes" in caplog.text
    src = MusicSource(None, 8000)
    assert src.duration == pytest.approx(3.6)
    x = stream(src, 0, src.n_frames)
    assert 2000 < np.abs(x).max() < 32767 * 0.5  # gentle: audible, far from full scale
    notes = [x[int(i * 0.6 * 8000) + 80: int(i * 0.6 * 8000) + 2400] for i in range(4)]
    assert [round(peak_hz(nt, 8000)) for nt in notes] == [523, 659, 784, 659]
    assert not x[int(2.41 * 8000):].any()  # the rest
    d = np.abs(np.diff(stream(src, src.n_frames - 10, 20)))
    assert d.max() <= np.abs(np.diff(x)).max()  # rest into the first note: a soft attack, no step
    assert d[:1600].max() == 0  # the rest is digital silence up to the loop point


def test_memory_bound_leaves_out_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(3):
        write_tone(tmp_path / f"{i}.wav", 300.0 + 100 * i, 2.0, 8000)
    with caplog.at_level(logging.WARNING, logger="media.moh"):
        src = MusicSource(tmp_path, 8000, max_seconds=5.0)
    assert [p.name for p in src.files] == ["0.wav", "1.wav"]
    assert "2.wav left out" in caplog.text
    assert src.duration < 5.0


def test_shared_source_is_one_per_folder_and_rate(folder: Path) -> None:
    clear_shared()
    a = shared_source(folder, 8000)
    assert shared_source(folder, 8000) is a
    assert shared_source(folder, 16000) is not a
    clear_shared()
    assert shared_source(folder, 8000) is not a


def test_default_music_built_with_sox(tmp_path: Path) -> None:
    d = tmp_path / "moh"
    path = build_default_moh(d, rate=16000)
    assert path == d / "default.wav"
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate()) == (1, 16000)
        assert w.getnframes() / 16000 == pytest.approx(12.0, abs=0.1)
    assert build_default_moh(d) is None  # music present: kept
    src = MusicSource(d, 8000)
    x = stream(src, 0, src.n_frames)
    rms = math.sqrt(float(np.mean(x * x)))
    assert 20 * math.log10(rms / 32767) == pytest.approx(moh_level(), abs=1.5)
    # The first chord is C major: its strongest partials sit on C, E and G.
    chord = x[: 2 * 8000]
    spec = np.abs(np.fft.rfft(chord * np.hanning(chord.size)))
    freqs = np.fft.rfftfreq(chord.size, 1 / 8000)
    top = freqs[np.argsort(spec)[-12:]]
    c_major = np.array([130.81, 164.81, 196.0, 261.63, 329.63, 392.0, 523.25, 659.26, 783.99])
    assert np.mean([np.min(np.abs(c_major - f)) < 3 for f in top]) > 0.7
    d_loop = np.abs(np.diff(stream(src, src.n_frames - 50, 100)))
    assert d_loop.max() <= 1.05 * np.abs(np.diff(x)).max()


def moh_level() -> float:
    from media.prompt_build import MOH_DBFS

    return MOH_DBFS
