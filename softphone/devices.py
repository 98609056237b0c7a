"""Audio devices, stream backends and the microphone check for the softphone.

Devices are chosen and remembered by **name and host API**, never by index: PortAudio numbers
its devices at initialisation, and a replugged USB headset comes back under another index (and,
on ALSA, another ``(hw:N,M)`` suffix, which :func:`find_device` ignores).

A backend is what :class:`softphone.audio.DeviceAudio` drives. :class:`SoundDeviceBackend` is
PortAudio through ``sounddevice``; :class:`FakeBackend` is a timer-driven fake with a virtual
clock, for tests and benchmarks: its devices produce and record numpy frames at their own rate
and block size, and can disappear and come back. Stream callbacks get mono int16 views:
``callback(indata | None, outdata | None, flags) -> bool`` (False stops the stream).

:func:`check_mic` records a few seconds from any audio port and says whether speech came through.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from softphone.errors import SoftphoneError

__all__ = [
    "AudioDeviceError", "DeviceInfo", "DeviceChoice", "AudioBackend", "StreamHandle",
    "SoundDeviceBackend", "FakeBackend", "FakeDevice", "find_device", "list_devices",
    "INPUT_OVERFLOW", "OUTPUT_UNDERFLOW", "FRAME_RATE", "FRAME_SAMPLES", "MicCheck", "record", "analyse_mic",
    "check_mic",
]

log = logging.getLogger(__name__)

FRAME_RATE = 48000  # the softphone's frames: 20 ms of 48 kHz mono int16
FRAME_SAMPLES = 960
_FLOOR_DBFS = -120.0
INPUT_OVERFLOW = 1  # callback flag: the device dropped input (PortAudio paInputOverflow)
OUTPUT_UNDERFLOW = 2  # callback flag: the device ran out of output (paOutputUnderflow)

Kind = Literal["input", "output"]
StreamCallback = Callable[[np.ndarray | None, np.ndarray | None, int], bool]
_HW_SUFFIX = re.compile(r"\s*\((?:plug)?hw:\d+(?:,\d+)*\)\s*$")
_PA_LOCK = threading.Lock()  # PortAudio re-initialisation is process-wide


class AudioDeviceError(SoftphoneError):
    """A device is missing or refused to open (PortAudio error, unsupported settings)."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One device as the backend enumerated it; ``index`` is only valid until the next re-init."""

    index: int
    name: str
    hostapi: str
    inputs: int
    outputs: int
    default_rate: float
    default_input: bool = False
    default_output: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "hostapi": self.hostapi, "input_channels": self.inputs,
                "output_channels": self.outputs, "default_rate": self.default_rate,
                "is_default": self.default_input or self.default_output,
                "is_default_input": self.default_input, "is_default_output": self.default_output}


@dataclass(frozen=True, slots=True)
class DeviceChoice:
    """A remembered device: ``name`` (None: the system default) and optionally its host API."""

    name: str | None = None
    hostapi: str | None = None

    @classmethod
    def of(cls, info: DeviceInfo) -> DeviceChoice:
        return cls(info.name, info.hostapi)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceChoice:
        return cls(data.get("name") or None, data.get("hostapi") or None)

    def to_dict(self) -> dict[str, str | None]:
        return {"name": self.name, "hostapi": self.hostapi}

    def __str__(self) -> str:
        return "default" if self.name is None else f"{self.name} [{self.hostapi or 'any'}]"


def _base(name: str) -> str:
    return _HW_SUFFIX.sub("", name).strip().casefold()


def _has(info: DeviceInfo, kind: Kind) -> bool:
    return (info.inputs if kind == "input" else info.outputs) > 0


def find_device(devices: Sequence[DeviceInfo], choice: DeviceChoice, kind: Kind) -> DeviceInfo | None:
    """The device ``choice`` names, able to do ``kind``; None if it is not there.

    Exact name and host API first, then the name without its ALSA ``(hw:N,M)`` suffix on the
    same host API, then that name on any host API. ``choice.name is None`` is the default device.
    """
    usable = [d for d in devices if _has(d, kind)]
    if choice.name is None:
        return next((d for d in usable if (d.default_input if kind == "input" else d.default_output)), None)
    api = choice.hostapi
    base = _base(choice.name)
    tests: list[Callable[[DeviceInfo], bool]] = [
        lambda d: d.name == choice.name and (api is None or d.hostapi == api),
        lambda d: _base(d.name) == base and (api is None or d.hostapi == api),
        lambda d: _base(d.name) == base,
    ]
    for test in tests:
        found = next((d for d in usable if test(d)), None)
        if found is not None:
            return found
    return None


class StreamHandle(Protocol):
    blocksize: int  # samples per callback (the largest, when a device varies it)

    def start(self) -> None: ...
    def close(self) -> None: ...


class AudioBackend(Protocol):
    """What :class:`~softphone.audio.DeviceAudio` needs from an audio system."""

    def now(self) -> float: ...
    def devices(self) -> list[DeviceInfo]: ...
    def reinit(self) -> None: ...  # re-enumerate (closes every stream, like Pa_Terminate)
    def fingerprint(self) -> object | None: ...  # changes when hardware changes; None: unknown
    def supports(self, device: DeviceInfo, rate: int, kind: Kind) -> bool: ...
    def open(self, inp: DeviceInfo | None, out: DeviceInfo | None, rate: int, blocksize: int,
             callback: StreamCallback, finished: Callable[[], None]) -> StreamHandle: ...


# --------------------------------------------------------------------------- PortAudio

class _SdStream:
    def __init__(self, stream: Any, blocksize: int, error: type[Exception]) -> None:
        self._stream, self._error = stream, error
        self.blocksize = blocksize

    def start(self) -> None:
        try:
            self._stream.start()
        except self._error as exc:
            raise AudioDeviceError(f"cannot start stream: {exc}") from exc

    def close(self) -> None:
        self._stream.abort(ignore_errors=True)
        self._stream.close(ignore_errors=True)


class SoundDeviceBackend:
    """PortAudio through ``sounddevice``: callback streams, int16, mono (stereo devices duplicated)."""

    def __init__(self, latency: str | float = "low") -> None:
        try:
            import sounddevice
        except OSError as exc:  # libportaudio2 missing
            raise AudioDeviceError(f"PortAudio unavailable: {exc} (install libportaudio2)") from exc
        self._sd = sounddevice
        self.latency = latency

    def now(self) -> float:
        return time.monotonic()

    def devices(self) -> list[DeviceInfo]:
        sd = self._sd
        try:
            apis = sd.query_hostapis()
            devices = sd.query_devices()
        except sd.PortAudioError as exc:
            raise AudioDeviceError(f"cannot list audio devices: {exc}") from exc
        defaults = {kind: self._default(kind) for kind in ("input", "output")}
        return [DeviceInfo(i, d["name"], apis[d["hostapi"]]["name"], d["max_input_channels"],
                           d["max_output_channels"], float(d["default_samplerate"]),
                           i == defaults["input"], i == defaults["output"])
                for i, d in enumerate(devices)]

    def _default(self, kind: Kind) -> int:
        try:
            return int(self._sd.query_devices(kind=kind)["index"])
        except (self._sd.PortAudioError, ValueError):
            return -1

    def reinit(self) -> None:
        # PortAudio fixes its device list at Pa_Initialize: a hot-plug needs a fresh one
        with _PA_LOCK:
            try:
                self._sd._terminate()
                self._sd._initialize()
            except self._sd.PortAudioError as exc:
                raise AudioDeviceError(f"cannot re-initialise PortAudio: {exc}") from exc
        log.info("PortAudio re-initialised: %d devices", len(self._sd.query_devices()))

    def fingerprint(self) -> object | None:
        """Linux: the sound cards the kernel knows (changes on a USB plug/unplug); else None."""
        if not sys.platform.startswith("linux"):
            return None
        parts: list[str] = []
        try:
            parts.append(Path("/proc/asound/cards").read_text())
        except OSError:
            pass
        try:
            parts.append(" ".join(sorted(p.name for p in Path("/dev/snd").iterdir())))
        except OSError:
            pass
        return tuple(parts) or None

    def _channels(self, dev: DeviceInfo, rate: int, kind: Kind) -> int | None:
        check = self._sd.check_input_settings if kind == "input" else self._sd.check_output_settings
        for ch in (1, 2):
            try:
                check(device=dev.index, channels=ch, dtype="int16", samplerate=rate)
                return ch
            except (self._sd.PortAudioError, ValueError):
                continue
        return None

    def supports(self, device: DeviceInfo, rate: int, kind: Kind) -> bool:
        return self._channels(device, rate, kind) is not None

    def open(self, inp: DeviceInfo | None, out: DeviceInfo | None, rate: int, blocksize: int,
             callback: StreamCallback, finished: Callable[[], None]) -> StreamHandle:
        sd = self._sd
        ich = self._channels(inp, rate, "input") if inp else 0
        och = self._channels(out, rate, "output") if out else 0
        if ich is None or och is None:
            raise AudioDeviceError(f"{inp.name if ich is None else out.name}: {rate} Hz int16 unsupported")
        scratch = np.zeros(blocksize, np.int16)  # mono output mixed here when the device is stereo

        def pa_callback(*args: Any) -> None:
            indata = args[0] if inp else None
            outdata = args[-4] if out else None
            status = args[-1]
            flags = (INPUT_OVERFLOW if status.input_overflow else 0) | (
                OUTPUT_UNDERFLOW if status.output_underflow else 0)
            mono_out = None
            if outdata is not None:
                mono_out = outdata[:, 0] if och == 1 or len(outdata) > len(scratch) else scratch[:len(outdata)]
            if not callback(None if indata is None else indata[:, 0], mono_out, flags):
                raise sd.CallbackAbort
            if outdata is not None and och == 2:
                outdata[:] = mono_out[:, None]

        kwargs = dict(samplerate=rate, blocksize=blocksize, dtype="int16", latency=self.latency,
                      callback=pa_callback, finished_callback=finished)
        try:
            if inp and out:
                stream = sd.Stream(device=(inp.index, out.index), channels=(ich, och), **kwargs)
            elif inp:
                stream = sd.InputStream(device=inp.index, channels=ich, **kwargs)
            else:
                stream = sd.OutputStream(device=out.index, channels=och, **kwargs)
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioDeviceError(f"cannot open {inp.name if inp else ''}/{out.name if out else ''}: {exc}") from exc
        return _SdStream(stream, blocksize, sd.PortAudioError)


def list_devices(backend: AudioBackend | None = None) -> list[dict[str, Any]]:
    """Every device: name, host API, input/output channels, default rate, default flags."""
    return [d.as_dict() for d in (backend or SoundDeviceBackend()).devices()]


# --------------------------------------------------------------------------- fake devices

def _silence(first: int, n: int) -> np.ndarray:
    return np.zeros(n, np.int16)


@dataclass(eq=False)
class FakeDevice:
    """A fake device. ``source(first_sample, n)`` is its microphone; what it plays is recorded.

    ``block`` forces the callback sizes (an int, or sizes used in turn); None: as requested.
    ``rates`` lists the supported rates (None: any from 8 to 192 kHz); ``speed`` skews its clock.
    """

    name: str
    hostapi: str = "ALSA"
    inputs: int = 1
    outputs: int = 2
    rate: int = 48000
    rates: tuple[int, ...] | None = None
    block: int | tuple[int, ...] | None = None
    speed: float = 1.0  # its clock against the virtual one (1.001: 1000 ppm fast)
    source: Callable[[int, int], np.ndarray] = _silence
    played: list[tuple[float, int, np.ndarray]] = field(default_factory=list)  # (callback time, rate, block)

    def output(self, since: float = float("-inf")) -> np.ndarray:
        """What the device played (callbacks at or after ``since``), concatenated."""
        parts = [b for t, _, b in self.played if t >= since]
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)

    def supports(self, rate: int, kind: Kind) -> bool:
        if (self.inputs if kind == "input" else self.outputs) <= 0:
            return False
        return 8000 <= rate <= 192000 if self.rates is None else rate in self.rates


class _FakeStream:
    def __init__(self, backend: FakeBackend, inp: FakeDevice | None, out: FakeDevice | None, rate: int,
                 blocksize: int, callback: StreamCallback, finished: Callable[[], None]) -> None:
        forced = (inp or out).block  # type: ignore[union-attr]
        sizes = (forced,) if isinstance(forced, int) else tuple(forced or (blocksize,))
        self._sizes: Iterator[int] = itertools.cycle(sizes)
        self.blocksize = max(sizes)
        self.backend, self.inp, self.out, self.rate = backend, inp, out, rate
        self.callback, self.finished = callback, finished
        self.state = "open"  # open → running → closed | dead (finished) | stalled
        self.samples = 0
        self.t0 = 0.0
        self.flags = 0
        self._n = next(self._sizes)
        self.due = float("inf")

    def start(self) -> None:
        if self.state != "open":
            raise AudioDeviceError("fake stream cannot start twice")
        self.state, self.t0 = "running", self.backend.now()
        self.speed = (self.inp or self.out).speed  # type: ignore[union-attr]
        self.due = self.t0 + self._n / (self.rate * self.speed)
        self.backend._streams.append(self)

    def close(self) -> None:
        if self.state != "closed":
            self.state = "closed"
            self.finished()  # PortAudio calls finished_callback on stop/abort too

    def fire(self) -> None:
        n = self._n
        indata = None
        if self.inp is not None:
            indata = np.asarray(self.inp.source(self.samples, n), dtype=np.int16)
        outdata = np.zeros(n, np.int16) if self.out is not None else None
        flags, self.flags = self.flags, 0
        ok = self.callback(indata, outdata, flags)
        if self.out is not None:
            self.out.played.append((self.backend.now(), self.rate, outdata))
        self.samples += n
        self._n = next(self._sizes)
        self.due = self.t0 + (self.samples + self._n) / (self.rate * self.speed)
        if not ok:
            self.state = "dead"
            self.finished()


class FakeBackend:
    """Fake devices on a virtual clock: :meth:`advance` runs every due callback in time order.

    Like PortAudio, :meth:`devices` is the list as of the last :meth:`reinit`; :meth:`plug`
    puts a device first (indexes shift); :meth:`unplug` ends its streams ("finish") or silently
    stops calling them ("stall").
    """

    def __init__(self, devices: Sequence[FakeDevice], *, default_input: str | None = None,
                 default_output: str | None = None, start: float = 0.0) -> None:
        self.hardware: list[FakeDevice] = list(devices)
        self.default_input, self.default_output = default_input, default_output
        self.reinits = 0
        self._t = start
        self._hw_generation = 0
        self._streams: list[_FakeStream] = []
        self._snapshot: list[tuple[DeviceInfo, FakeDevice]] = []
        self._enumerate()

    def now(self) -> float:
        return self._t

    def _default(self, kind: Kind) -> FakeDevice | None:
        name = self.default_input if kind == "input" else self.default_output
        usable = [d for d in self.hardware if (d.inputs if kind == "input" else d.outputs) > 0]
        return next((d for d in usable if d.name == name), usable[0] if usable else None)

    def _enumerate(self) -> None:
        din, dout = self._default("input"), self._default("output")
        self._snapshot = [(DeviceInfo(i, d.name, d.hostapi, d.inputs, d.outputs, float(d.rate),
                                      d is din, d is dout), d) for i, d in enumerate(self.hardware)]

    def devices(self) -> list[DeviceInfo]:
        return [info for info, _ in self._snapshot]

    def reinit(self) -> None:
        for s in self._streams:
            s.state = "closed"  # Pa_Terminate closes whatever is still open
        self._streams.clear()
        self.reinits += 1
        self._enumerate()

    def fingerprint(self) -> object | None:
        return self._hw_generation

    def _fake(self, info: DeviceInfo) -> FakeDevice:
        if not 0 <= info.index < len(self._snapshot) or self._snapshot[info.index][0] != info:
            raise AudioDeviceError(f"stale device index {info.index} ({info.name})")
        dev = self._snapshot[info.index][1]
        if dev not in self.hardware:
            raise AudioDeviceError(f"{info.name}: device unavailable")
        return dev

    def supports(self, device: DeviceInfo, rate: int, kind: Kind) -> bool:
        try:
            return self._fake(device).supports(rate, kind)
        except AudioDeviceError:
            return False

    def open(self, inp: DeviceInfo | None, out: DeviceInfo | None, rate: int, blocksize: int,
             callback: StreamCallback, finished: Callable[[], None]) -> StreamHandle:
        fin = self._fake(inp) if inp else None
        fout = self._fake(out) if out else None
        for dev, kind in ((fin, "input"), (fout, "output")):
            if dev is not None and not dev.supports(rate, kind):  # type: ignore[arg-type]
                raise AudioDeviceError(f"{dev.name}: {rate} Hz {kind} unsupported")
        return _FakeStream(self, fin, fout, rate, blocksize, callback, finished)

    def plug(self, device: FakeDevice) -> None:
        self.hardware.insert(0, device)
        self._hw_generation += 1

    def unplug(self, name: str, how: Literal["finish", "stall"] = "finish") -> FakeDevice:
        dev = next(d for d in self.hardware if d.name == name)
        self.hardware.remove(dev)
        self._hw_generation += 1
        for s in list(self._streams):
            if s.state == "running" and dev in (s.inp, s.out):
                s.state = "dead" if how == "finish" else "stalled"
                if how == "finish":
                    s.finished()
        return dev

    def inject(self, name: str, flags: int) -> None:
        """Set status ``flags`` on the next callback of the streams using device ``name``."""
        for s in self._streams:
            if name in (s.inp.name if s.inp else None, s.out.name if s.out else None):
                s.flags |= flags

    def running(self) -> list[_FakeStream]:
        return [s for s in self._streams if s.state == "running"]

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on, firing each stream's callbacks when they are due."""
        end = self._t + seconds
        while True:
            live = self.running()
            nxt = min(live, key=lambda s: s.due, default=None)
            if nxt is None or nxt.due > end + 1e-12:
                break
            self._t = max(self._t, nxt.due)
            nxt.fire()
        self._streams = [s for s in self._streams if s.state in ("running", "stalled")]
        self._t = end


# --------------------------------------------------------------------------- microphone check

@dataclass(frozen=True, slots=True)
class MicCheck:
    """What a few seconds of microphone say: levels, activity, and whether it looks like speech."""

    seconds: float
    rms_dbfs: float
    peak_dbfs: float
    active_fraction: float  # 20 ms frames clearly above the noise floor
    clipped_fraction: float
    speech_like: bool
    verdict: str  # ok, silent, too quiet, clipping, no speech


def record(port: Any, seconds: float, *, wait: Callable[[], None] | None = None) -> np.ndarray:
    """``seconds`` of microphone frames from ``port`` (``wait()`` runs while none is ready)."""
    pause = wait or (lambda: time.sleep(0.005))
    want = max(1, round(seconds * 50))
    frames: list[np.ndarray] = []
    idle = 0
    while len(frames) < want and idle < 400:  # ~2 s of waiting for nothing: a dead microphone
        frame = port.capture()
        if frame is None:
            idle += 1
            pause()
        else:
            frames.append(frame)
            idle = 0
    return np.concatenate(frames) if frames else np.zeros(0, np.int16)


def analyse_mic(samples: np.ndarray, rate: int = FRAME_RATE) -> MicCheck:
    """Level and a speech heuristic: activity with syllable-like level changes, a spread
    (not tonal) spectrum, mostly in the 100–4000 Hz voice band."""
    fl = rate // 50
    nf = len(samples) // fl
    if nf < 5:
        return MicCheck(len(samples) / rate, _FLOOR_DBFS, _FLOOR_DBFS, 0.0, 0.0, False, "silent")
    x = samples[:nf * fl].astype(np.float64) / 32768.0
    frames = x.reshape(nf, fl)
    energy = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-13)
    rms = max(_FLOOR_DBFS, 10 * math.log10(float(np.mean(x ** 2)) + 1e-13))
    peak = max(_FLOOR_DBFS, 20 * math.log10(float(np.max(np.abs(x))) + 1e-13))
    clipped = float(np.mean(np.abs(samples[:nf * fl]) >= 32700))
    active = energy > max(float(np.percentile(energy, 10)) + 10.0, -60.0)
    frac = float(np.mean(active))
    speech = False
    if active.sum() >= 5:
        spec = np.mean(np.abs(np.fft.rfft(frames[active] * np.hanning(fl), axis=1)) ** 2, axis=0)
        freqs = np.fft.rfftfreq(fl, 1 / rate)
        total = float(spec.sum()) or 1.0
        tonal = float(np.sort(spec)[-3:].sum()) / total  # a steady tone lives in ~3 bins
        voice = float(spec[(freqs >= 100) & (freqs <= 4000)].sum()) / total
        swing = float(np.std(energy[active]))
        speech = frac >= 0.2 and swing >= 3.0 and tonal < 0.5 and voice >= 0.5
    if peak < -60:
        verdict = "silent"
    elif clipped > 0.01:
        verdict = "clipping"
    elif float(np.percentile(energy, 90)) < -50:
        verdict = "too quiet"
    else:
        verdict = "ok" if speech else "no speech"
    return MicCheck(nf / 50, rms, peak, frac, clipped, speech, verdict)


def check_mic(port: Any, seconds: float = 3.0, *, wait: Callable[[], None] | None = None) -> MicCheck:
    """Record ``seconds`` from the microphone and say whether speech-like signal came through."""
    return analyse_mic(record(port, seconds, wait=wait))
