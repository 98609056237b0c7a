"""The softphone's audio device layer: 20 ms, 48 kHz mono int16 frames in and out of real devices.

:class:`DeviceAudio` runs one duplex callback stream on the microphone and speaker (two streams
when they cannot share one), at the device's own rate, and a second output stream per ringer
device while ringing. Three parties share it:

* the **audio callback** (PortAudio's thread) only copies device blocks: into preallocated
  buffers queued for the app, and out of the playout queue. CPython deques make append/popleft
  atomic, so nothing there locks, resamples or allocates beyond a view;
* the **app** calls :meth:`DeviceAudio.capture` and :meth:`DeviceAudio.play` every 20 ms: they
  resample (soxr, steady engine), re-chunk, bound both directions' delay and meter levels;
* the **supervisor** (a small thread, or whoever calls :meth:`DeviceAudio.service`) opens the
  streams, watches them (errors, unexpected ends, stalled callbacks), re-initialises PortAudio
  and finds the devices again by name after a hot-plug, and opens or closes the ringers.

Playout: when audio starts (or comes back after running dry) the speaker first gets a cushion
of silence, ``playout_prefill_ms`` (at least a device block), against late app ticks; each
underflow adds 5 ms (or a block) to it, up to ``playout_target_ms``, and 10 s without one takes
it back. When more than ``playout_max_ms`` is queued, or a whole frame more than the cushion
stood in the queue for a second, the oldest audio is dropped (``dropped``, ``resyncs``) rather
than letting the delay creep up. Capture bounds its backlog the same way (``capture_dropped``).
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from media.resample import Resampler
from media.tones import ToneSource, tone
from softphone.devices import (FRAME_RATE, FRAME_SAMPLES, INPUT_OVERFLOW, OUTPUT_UNDERFLOW, AudioBackend,
                               AudioDeviceError, DeviceChoice, DeviceInfo, MicCheck, SoundDeviceBackend,
                               StreamHandle, analyse_mic, check_mic, find_device, list_devices, record)

__all__ = ["FRAME_RATE", "FRAME_SAMPLES", "AudioPort", "AudioEvent", "DeviceAudio", "DeviceChoice",
           "list_devices", "MicCheck", "record", "analyse_mic", "check_mic"]

log = logging.getLogger(__name__)

_RATES = (48000, 44100, 32000, 24000, 22050, 16000, 96000, 8000)  # closest to the device's own first
_FLOOR_DBFS = -120.0
_CHECK_S = 0.1  # supervisor tick
_BACKOFF = (0.5, 5.0)  # retry delay while a device is missing: first, cap
_WINDOW = 50  # frames (1 s) over which standing delay is measured
_CALM = 500  # frames (10 s) without underflow before the playout cushion shrinks a block
_RING = replace(tone("us", "ringback"), name="ring", level_dbm0=-10.0)  # 440+480 Hz, 2 s on, 4 s off
_EMPTY = np.zeros(0, np.int16)
_COUNTERS = ("callbacks", "overflows", "underflows", "dropped", "capture_dropped", "resyncs", "restarts",
             "errors", "retries", "fallbacks")


class AudioPort(Protocol):
    def capture(self) -> np.ndarray | None: ...  # next 20 ms mic frame at 48 kHz (None: none ready yet)
    def play(self, frame: np.ndarray) -> None: ...  # a 20 ms frame at 48 kHz to the speaker (or headset)
    def ring(self, on: bool) -> None: ...  # start/stop the ring tone on the ringer device(s)
    def levels(self) -> dict[str, float]: ...  # {"input_dbfs", "output_dbfs"}
    def counters(self) -> dict[str, int]: ...  # overflows, underflows, dropped, resyncs, restarts ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class AudioEvent:
    """Something the agent should know: ``kind`` is opened, restarted, lost, fallback, missing or ringer."""

    kind: str
    detail: str


@functools.lru_cache(maxsize=8)
def _ring_cycle(rate: int) -> np.ndarray:
    n = round(_RING.period * rate)
    cycle = ToneSource(_RING, rate).frames(_RING.period)[:n]
    cycle.flags.writeable = False
    return cycle


class _Ring:
    """A ring tone's position; used by one callback only."""

    def __init__(self, rate: int) -> None:
        self.cycle = _ring_cycle(rate)
        self.pos = 0

    def write(self, out: np.ndarray, scratch: np.ndarray | None = None) -> None:
        """Fill ``out`` with the tone, or mix it in (saturating) when ``scratch`` (int32) is given."""
        done, n = 0, len(out)
        while done < n:
            k = min(n - done, len(self.cycle) - self.pos)
            seg, dst = self.cycle[self.pos:self.pos + k], out[done:done + k]
            if scratch is None:
                dst[:] = seg
            else:
                tmp = scratch[:k] if k <= len(scratch) else np.empty(k, np.int32)
                np.add(dst, seg, out=tmp, dtype=np.int32)
                np.clip(tmp, -32768, 32767, out=tmp)
                dst[:] = tmp
            done += k
            self.pos = (self.pos + k) % len(self.cycle)


class _Meter:
    """Mean-square level with instant attack and a fast release (app thread only)."""

    def __init__(self) -> None:
        self.ms = 0.0

    def add(self, frame: np.ndarray) -> None:
        x = frame.astype(np.float32)
        self.ms = max(float(np.dot(x, x)) / max(1, x.size), self.ms * 0.7)

    def dbfs(self) -> float:
        return max(_FLOOR_DBFS, 10.0 * math.log10(self.ms / 32768.0 ** 2)) if self.ms > 0 else _FLOOR_DBFS


class _Link:
    """One generation of open streams and the queues their callbacks share with the app."""

    def __init__(self, owner: DeviceAudio, in_rate: int | None, out_rate: int | None) -> None:
        self.owner, self.in_rate, self.out_rate = owner, in_rate, out_rate
        self.streams: list[StreamHandle] = []
        self.closing = self.finished = False
        self.error: str | None = None
        self.seen_calls, self.seen_t = 0, owner.backend.now()
        # written by the callbacks only
        self.in_calls = self.out_calls = self.overflows = self.underflows = self.dry = self.cap_lost = 0
        # capture: pool of block buffers → callback → ``full`` → app
        self.free: deque[np.ndarray] = deque()
        self.full: deque[tuple[np.ndarray, int]] = deque()
        self.cap_rs = Resampler(in_rate, FRAME_RATE, steady=True) if in_rate else None
        self.acc = _EMPTY  # 48 kHz samples not yet returned (app thread)
        self.cap_low, self.cap_frames = FRAME_SAMPLES * 100, 0
        # playout: resampled chunks, app → callback; sample counts split by writer
        self.play_rs = Resampler(FRAME_RATE, out_rate, steady=True) if out_rate else None
        self.playq: deque[np.ndarray] = deque()
        self.pushed = self.trimmed = 0  # app
        self.popped = 0  # callback
        self.cur, self.cur_pos = _EMPTY, 0  # callback
        self.starved, self.low, self.low_reset = True, 0, True
        self.pad = self.pad_extra = 0  # silence owed before the queue plays (callback; app sets extra)
        self.in_block, self.out_block, self.step, self.mix = 1, 1, 1, np.zeros(0, np.int32)
        self.prefill = self.base_prefill = self.target = self.max_fill = self.frame_out = 0
        self.plays = self.calm = self.seen_dry = 0
        self.ring = _Ring(out_rate) if out_rate else None
        self.ring_mix = self.ring_on = False

    def prepare(self, blocksize: int, inp: bool, out: bool) -> None:
        """Size the pools once the backend has said what block it will call back with."""
        o = self.owner
        if inp and self.in_rate:
            self.in_block = blocksize
            count = math.ceil(2 * o.capture_max_ms * self.in_rate / 1000 / blocksize) + 4
            self.free.extend(np.zeros(blocksize, np.int16) for _ in range(count))
        if out and self.out_rate:
            ms = self.out_rate / 1000
            self.out_block, self.mix = blocksize, np.zeros(blocksize, np.int32)
            self.step = max(blocksize, round(5 * ms))  # cushion change per underflow / calm spell
            self.base_prefill = self.prefill = max(round(o.prefill_ms * ms), blocksize)
            self.target = max(round(o.target_ms * ms), self.prefill + self.step)
            self.max_fill = max(round(o.max_ms * ms), self.target + blocksize)
            self.frame_out = round(20 * ms)

    def avail(self) -> int:
        return self.pushed - self.trimmed - self.popped + len(self.cur) - self.cur_pos

    # ---- callback side (PortAudio's thread): no locks, no resampling
    def callback(self, indata: np.ndarray | None, outdata: np.ndarray | None, flags: int) -> bool:
        try:
            if indata is not None:
                self._input(indata, flags)
            if outdata is not None:
                self._output(outdata, flags)
            return True
        except Exception as exc:  # never let the audio thread die silently: the supervisor restarts
            self.error = repr(exc)
            self.owner.wake.set()
            return False

    def _input(self, indata: np.ndarray, flags: int) -> None:
        self.in_calls += 1
        if flags & INPUT_OVERFLOW:
            self.overflows += 1
        n = len(indata)
        try:
            buf = self.free.pop()
        except IndexError:
            try:  # the app is not reading: the oldest block goes
                buf, old = self.full.popleft()
                self.cap_lost += old
            except IndexError:
                self.cap_lost += n
                return
        if len(buf) < n:
            buf = np.empty(n, np.int16)
        buf[:n] = indata
        self.full.append((buf, n))
        if self.owner.on_input is not None:
            self.owner.on_input()

    def _output(self, out: np.ndarray, flags: int) -> None:
        self.out_calls += 1
        if flags & OUTPUT_UNDERFLOW:
            self.underflows += 1
        n, pos = len(out), 0
        if self.starved and self.avail() > 0:  # audio again: lead in with the cushion's silence
            self.starved, self.pad, self.pad_extra = False, self.prefill + self.pad_extra, 0
        if not self.starved:
            if self.pad:
                pos = min(n, self.pad)
                out[:pos] = 0
                self.pad -= pos
            cur, cp = self.cur, self.cur_pos
            while pos < n:
                if cp >= len(cur):
                    try:
                        cur = self.playq.popleft()
                    except IndexError:
                        break
                    cp = 0
                    self.popped += len(cur)
                k = min(n - pos, len(cur) - cp)
                out[pos:pos + k] = cur[cp:cp + k]
                pos, cp = pos + k, cp + k
            self.cur, self.cur_pos = cur, cp
            if pos < n:  # ran dry: silence until audio comes back
                self.underflows += 1
                self.dry += 1
                self.starved = True
        if pos < n:
            out[pos:] = 0
        avail = self.avail()
        if self.low_reset or avail < self.low:
            self.low, self.low_reset = avail, False
        if self.ring_on and self.ring is not None:
            self.ring.write(out, self.mix)
        elif self.ring is not None:
            self.ring.pos = 0

    def on_finished(self) -> None:
        if not self.closing:
            self.finished = True
            self.owner.wake.set()

    def close(self) -> None:
        self.closing = True
        for s in self.streams:
            s.close()

    def counts(self) -> dict[str, int]:
        lost = self.cap_lost * 50 // self.in_rate if self.in_rate else 0
        return {"callbacks": self.in_calls + self.out_calls, "overflows": self.overflows,
                "underflows": self.underflows, "capture_dropped": lost}


class _Ringer:
    """A ring-only output stream on a ringer device other than the speaker."""

    def __init__(self, owner: DeviceAudio, device: DeviceInfo, rate: int) -> None:
        self.owner, self.device, self.ring = owner, device, _Ring(rate)
        self.dead = self.closing = False
        self.handle: StreamHandle | None = None

    def callback(self, indata: np.ndarray | None, outdata: np.ndarray | None, flags: int) -> bool:
        if outdata is not None:
            if self.owner.ringing:
                self.ring.write(outdata)
            else:
                outdata[:] = 0
                self.ring.pos = 0
        return True

    def on_finished(self) -> None:
        if not self.closing:
            self.dead = True

    def close(self) -> None:
        self.closing = True
        if self.handle is not None:
            self.handle.close()


class DeviceAudio:
    """:class:`AudioPort` on real devices (or a :class:`~softphone.devices.FakeBackend`).

    ``mic``, ``speaker`` and each of ``ringers`` (default: the speaker) are remembered by name;
    a ringer that resolves to the speaker rings mixed into the call audio. ``rate`` overrides
    the device's default rate (used if supported). ``on_event(AudioEvent)`` and ``on_input()``
    are called from the supervisor and audio threads: marshal with ``loop.call_soon_threadsafe``.
    With ``supervise=False`` no thread is started: call :meth:`service` (virtual-time tests).
    On a fallback device, the chosen one is looked for again when the backend sees the hardware
    change (Linux: the kernel's sound card list) or on :meth:`rescan`.
    """

    def __init__(self, mic: DeviceChoice | None = None, speaker: DeviceChoice | None = None,
                 ringers: Sequence[DeviceChoice] | None = None, *, backend: AudioBackend | None = None,
                 rate: int | None = None, block_ms: float = 10.0, playout_prefill_ms: float = 10.0,
                 playout_target_ms: float = 40.0, playout_max_ms: float = 100.0,
                 capture_max_ms: float = 100.0, stall_s: float = 1.0, supervise: bool = True,
                 on_event: Callable[[AudioEvent], None] | None = None,
                 on_input: Callable[[], None] | None = None) -> None:
        self.mic, self.speaker = mic or DeviceChoice(), speaker or DeviceChoice()
        self.ringers = tuple(ringers) if ringers is not None else (self.speaker,)
        self.backend: AudioBackend = backend if backend is not None else SoundDeviceBackend()
        self.rate, self.block_ms, self.stall_s = rate, block_ms, stall_s
        self.prefill_ms, self.target_ms, self.max_ms = playout_prefill_ms, playout_target_ms, playout_max_ms
        self.capture_max_ms = capture_max_ms
        self.on_event, self.on_input = on_event, on_input
        self.wake = threading.Event()
        self.ringing = False
        self._lock = threading.RLock()
        self._link: _Link | None = None
        self._ringers: dict[str, _Ringer] = {}
        self._ringer_devices: list[DeviceInfo] = []
        self._ringer_retry = 0.0
        self._totals = Counter(dict.fromkeys(_COUNTERS, 0))  # supervisor + retired links (keys fixed)
        self._dropped = self._capture_dropped = self._resyncs = 0  # app thread
        self._in_meter, self._out_meter = _Meter(), _Meter()
        self._pending: str | None = None
        self._degraded = False
        self._retry_at, self._backoff = 0.0, _BACKOFF[0]
        self._fp: object | None = None
        self._active: dict[str, Any] = {}
        self._closed = False
        self._restart("start", self.backend.now())
        self._thread: threading.Thread | None = None
        if supervise:
            self._thread = threading.Thread(target=self._run, name="softphone-audio", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ AudioPort (app thread)
    def capture(self) -> np.ndarray | None:
        link = self._link
        if link is None or link.cap_rs is None:
            return None
        taken: list[tuple[np.ndarray, int]] = []
        while True:
            try:
                taken.append(link.full.popleft())
            except IndexError:
                break
        if taken:
            data = np.concatenate([b[:n] for b, n in taken])
            link.free.extend(b for b, _ in taken)
            rate = link.in_rate or FRAME_RATE
            backlog = len(data) + len(link.acc) * rate // FRAME_RATE
            if backlog > self.capture_max_ms * rate / 1000:  # the app fell behind: keep the newest
                keep = min(len(data), rate // 50 + taken[-1][1])
                self._capture_dropped += (backlog - keep) * 50 // rate
                self._resyncs += 1
                data = data[len(data) - keep:]
                link.acc = _EMPTY
            link.acc = np.concatenate([link.acc, link.cap_rs.process(data)])
        if len(link.acc) < FRAME_SAMPLES:
            return None
        frame, link.acc = link.acc[:FRAME_SAMPLES], link.acc[FRAME_SAMPLES:]
        link.cap_low = min(link.cap_low, len(link.acc))
        link.cap_frames += 1
        if link.cap_frames % _WINDOW == 0:
            if link.cap_low >= FRAME_SAMPLES:  # a whole frame stood queued for a second
                extra = link.cap_low // FRAME_SAMPLES
                link.acc = link.acc[extra * FRAME_SAMPLES:]
                self._capture_dropped += extra
                self._resyncs += 1
            link.cap_low = FRAME_SAMPLES * 100
        self._in_meter.add(frame)
        return frame

    def play(self, frame: np.ndarray) -> None:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.int16 or frame.shape != (FRAME_SAMPLES,):
            raise ValueError(f"play() takes {FRAME_SAMPLES} int16 samples (20 ms at {FRAME_RATE} Hz)")
        self._out_meter.add(frame)
        link = self._link
        if link is None or link.play_rs is None:
            return
        out = link.play_rs.process(frame)
        if not link.pushed:  # the first output is short by the resampler's hold-back: pad it too
            link.pad_extra = round(link.play_rs.latency)
        if out.size:
            link.playq.append(out)
            link.pushed += out.size
        fill = link.avail()
        if fill > link.max_fill:
            self._trim(link, fill - link.target)
        link.plays += 1
        if link.dry != link.seen_dry:  # the queue ran dry: more cushion
            link.seen_dry = link.dry
            link.prefill, link.calm = min(link.prefill + link.step, link.target), 0
        else:
            link.calm += 1
            if link.calm >= _CALM and link.prefill > link.base_prefill:
                link.prefill, link.calm = max(link.base_prefill, link.prefill - link.step), 0
        if link.plays % _WINDOW == 0:
            low, link.low, link.low_reset = link.low, 0, True
            if low - link.prefill >= link.frame_out:  # a frame more than the cushion stood queued
                self._trim(link, low - link.prefill)

    def _trim(self, link: _Link, amount: int) -> None:
        """Drop the oldest queued chunks, at most ``amount`` samples."""
        done = 0
        while link.playq:
            try:
                if done + len(link.playq[0]) > amount:
                    break
                chunk = link.playq.popleft()
            except IndexError:  # the callback took it meanwhile
                break
            done += len(chunk)
            link.trimmed += len(chunk)
            self._dropped += 1
        if done:
            self._resyncs += 1

    def ring(self, on: bool) -> None:
        self.ringing = bool(on)
        link = self._link
        if link is not None:
            link.ring_on = self.ringing and link.ring_mix
        self.wake.set()

    def delays(self) -> dict[str, float]:
        """Delay held now (ms): capture backlog, playout queue (+ silence owed), resampler hold-backs."""
        link = self._link
        out = dict.fromkeys(("capture_ms", "playout_ms", "capture_resampler_ms", "playout_resampler_ms"), 0.0)
        if link is not None and link.in_rate and link.cap_rs is not None:
            out["capture_ms"] = 1000 * (len(link.full) * link.in_block / link.in_rate + len(link.acc) / FRAME_RATE)
            out["capture_resampler_ms"] = 1000 * link.cap_rs.latency / FRAME_RATE
        if link is not None and link.out_rate and link.play_rs is not None:
            out["playout_ms"] = 1000 * (link.avail() + link.pad) / link.out_rate
            out["playout_resampler_ms"] = 1000 * link.play_rs.latency / link.out_rate
        return out

    def levels(self) -> dict[str, float]:
        return {"input_dbfs": self._in_meter.dbfs(), "output_dbfs": self._out_meter.dbfs()}

    def counters(self) -> dict[str, int]:
        c = Counter(self._totals)
        link = self._link
        c.update(link.counts() if link is not None else {})
        c.update({"dropped": self._dropped, "capture_dropped": self._capture_dropped, "resyncs": self._resyncs})
        return {k: int(c[k]) for k in _COUNTERS}

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._lock:
            self._retire()

    # ------------------------------------------------------------------ control
    def status(self) -> dict[str, Any]:
        """The devices in use (by name), their rates, and whether any is a fallback."""
        return dict(self._active)

    def set_devices(self, mic: DeviceChoice | None = None, speaker: DeviceChoice | None = None,
                    ringers: Sequence[DeviceChoice] | None = None) -> None:
        """Switch devices (None keeps one); takes effect at the supervisor's next pass."""
        self.mic, self.speaker = mic or self.mic, speaker or self.speaker
        self.ringers = tuple(ringers) if ringers is not None else self.ringers
        self.rescan("devices changed")

    def rescan(self, reason: str = "rescan") -> None:
        """Re-enumerate devices and restart the streams (e.g. between calls, after a replug)."""
        self._pending = reason
        self.wake.set()

    # ------------------------------------------------------------------ supervisor
    def _run(self) -> None:
        while not self._closed:
            try:
                deadline = self.service()
            except Exception:  # keep supervising whatever a backend throws
                log.exception("audio supervisor pass failed")
                deadline = self.backend.now() + 1.0
            self.wake.wait(min(max(0.0, deadline - self.backend.now()), _CHECK_S))
            self.wake.clear()

    def service(self) -> float:
        """Check the streams, recover what broke, open/close ringers; returns the next check time."""
        with self._lock:
            if self._closed:
                return math.inf
            now = self.backend.now()
            reason, self._pending = self._pending, None
            link = self._link
            if reason is None and link is not None:
                reason = self._health(link, now)
                if reason is not None:
                    self._totals["errors"] += 1
                    self._emit("lost", reason)
            if reason is None and self._degraded:
                fp = self.backend.fingerprint()
                missing = link is None or link.in_rate is None or link.out_rate is None
                if fp is not None and fp != self._fp:
                    reason = "devices changed"
                elif now >= self._retry_at and (link is None or (fp is None and missing)):
                    reason = "retry"
            if reason is not None:
                self._restart(reason, now)
            self._service_ringers(now)
            return min(now + _CHECK_S, self._retry_at if self._degraded else math.inf)

    def _health(self, link: _Link, now: float) -> str | None:
        if link.error is not None:
            return f"stream error: {link.error}"
        if link.finished:
            return "stream stopped"
        calls = link.in_calls + link.out_calls
        if calls != link.seen_calls:
            link.seen_calls, link.seen_t = calls, now
        elif now - link.seen_t > self.stall_s:
            return f"no callbacks for {now - link.seen_t:.1f} s"
        return None

    def _restart(self, reason: str, now: float) -> None:
        initial = reason == "start"
        self._retire()
        try:
            if not initial:  # PortAudio's device list is fixed at init: a replug needs a new one
                self.backend.reinit()
            devices = self.backend.devices()
        except AudioDeviceError as exc:
            return self._failed(now, f"re-initialisation failed: {exc}")
        self._fp = self.backend.fingerprint()
        mic, mic_fb = self._resolve(devices, self.mic, "input")
        spk, spk_fb = self._resolve(devices, self.speaker, "output")
        if mic is None and spk is None:
            return self._failed(now, f"no device for microphone {self.mic} or speaker {self.speaker}")
        try:
            link = self._open(mic, spk)
        except AudioDeviceError as exc:
            return self._failed(now, str(exc))
        self._link = link
        self._active = {"microphone": mic and DeviceChoice.of(mic).to_dict(),
                        "speaker": spk and DeviceChoice.of(spk).to_dict(),
                        "in_rate": link.in_rate, "out_rate": link.out_rate,
                        "fallback": mic_fb or spk_fb, "missing": [k for k, d in (("microphone", mic),
                                                                              ("speaker", spk)) if d is None]}
        if not initial:
            self._totals["restarts"] += 1
        self._emit("opened" if initial else "restarted", f"{reason}: {self._describe(mic, spk)}")
        if mic_fb or spk_fb:
            self._totals["fallbacks"] += 1
            self._emit("fallback", f"chosen device missing, using the default: {self._describe(mic, spk)}")
        self._pick_ringers(devices, spk)
        self._degraded = mic_fb or spk_fb or mic is None or spk is None
        if self._degraded:
            self._schedule(now)
        else:
            self._retry_at, self._backoff = 0.0, _BACKOFF[0]

    def _pick_ringers(self, devices: list[DeviceInfo], spk: DeviceInfo | None) -> None:
        """Ringers on the speaker (or naming the speaker's choice) ring in the call stream."""
        link = self._link
        assert link is not None
        self._ringer_devices = []
        for choice in self.ringers:
            dev = find_device(devices, choice, "output")
            if choice == self.speaker or (dev is not None and spk is not None and dev.index == spk.index):
                link.ring_mix = True
            elif dev is not None:
                self._ringer_devices.append(dev)
        if not link.ring_mix and not self._ringer_devices:
            link.ring_mix = True
            self._emit("ringer", f"no ringer found ({', '.join(map(str, self.ringers))}): ringing on the speaker")
        link.ring_on = self.ringing and link.ring_mix
        self._active["ringers"] = [DeviceChoice.of(d).to_dict() for d in self._ringer_devices]
        self._active["ring_on_speaker"] = link.ring_mix

    def _failed(self, now: float, why: str) -> None:
        self._totals["retries"] += 1
        self._degraded = True
        self._schedule(now)
        self._active = {"microphone": None, "speaker": None, "ringers": [], "fallback": False,
                        "missing": ["microphone", "speaker"]}
        self._emit("missing", f"{why}; retrying in {self._retry_at - now:.1f} s")

    def _schedule(self, now: float) -> None:
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, _BACKOFF[1])

    @staticmethod
    def _resolve(devices: list[DeviceInfo], choice: DeviceChoice, kind: str) -> tuple[DeviceInfo | None, bool]:
        dev = find_device(devices, choice, kind)  # type: ignore[arg-type]
        if dev is None and choice.name is not None:
            dev = find_device(devices, DeviceChoice(), kind)  # type: ignore[arg-type]
            return dev, dev is not None
        return dev, False

    @staticmethod
    def _describe(mic: DeviceInfo | None, spk: DeviceInfo | None) -> str:
        return f"microphone {mic and DeviceChoice.of(mic)}, speaker {spk and DeviceChoice.of(spk)}"

    def _rate_for(self, *pairs: tuple[DeviceInfo, str]) -> int | None:
        native = [int(d.default_rate) for d, _ in pairs]  # then the closest common rate
        tried = ([self.rate] if self.rate else []) + native + sorted(_RATES, key=lambda r: abs(r - native[0]))
        for rate in dict.fromkeys(tried):
            if all(self.backend.supports(d, rate, k) for d, k in pairs):  # type: ignore[arg-type]
                return rate
        return None

    def _block(self, rate: int) -> int:
        return max(1, round(rate * self.block_ms / 1000))

    def _open(self, mic: DeviceInfo | None, spk: DeviceInfo | None) -> _Link:
        if mic is not None and spk is not None:
            rate = self._rate_for((mic, "input"), (spk, "output"))
            if rate is not None:
                try:
                    return self._start(mic, spk, rate, rate, duplex=True)
                except AudioDeviceError as exc:
                    log.info("duplex stream failed (%s); trying separate streams", exc)
        in_rate = self._rate_for((mic, "input")) if mic else None
        out_rate = self._rate_for((spk, "output")) if spk else None
        if (mic and not in_rate) or (spk and not out_rate):
            raise AudioDeviceError(f"no common int16 rate for {self._describe(mic, spk)}")
        return self._start(mic, spk, in_rate, out_rate, duplex=False)

    def _start(self, mic: DeviceInfo | None, spk: DeviceInfo | None, in_rate: int | None,
               out_rate: int | None, *, duplex: bool) -> _Link:
        link = _Link(self, in_rate if mic else None, out_rate if spk else None)
        plan = [(mic, spk, in_rate)] if duplex else [(mic, None, in_rate), (None, spk, out_rate)]
        try:
            for inp, out, rate in plan:
                if inp is None and out is None:
                    continue
                handle = self.backend.open(inp, out, rate, self._block(rate), link.callback, link.on_finished)
                link.streams.append(handle)
                link.prepare(handle.blocksize, inp is not None, out is not None)
            for handle in link.streams:
                handle.start()
        except AudioDeviceError:
            link.close()
            raise
        return link

    def _retire(self) -> None:
        """Close the current streams and the ringers; keep the link's counters."""
        for ringer in self._ringers.values():
            ringer.close()
        self._ringers.clear()
        link, self._link = self._link, None
        if link is not None:
            link.close()
            self._totals.update(link.counts())

    def _service_ringers(self, now: float) -> None:
        if not self.ringing:
            for ringer in self._ringers.values():
                ringer.close()
            self._ringers.clear()
            return
        for dev in self._ringer_devices:
            ringer = self._ringers.get(dev.name)
            if ringer is not None and not ringer.dead:
                continue
            if ringer is not None:
                ringer.close()
                del self._ringers[dev.name]
                self._totals["errors"] += 1
            if now < self._ringer_retry:
                continue
            rate = self._rate_for((dev, "output"))
            ringer = _Ringer(self, dev, rate or 48000)
            try:
                if rate is None:
                    raise AudioDeviceError(f"{dev.name}: no usable rate")
                ringer.handle = self.backend.open(None, dev, rate, self._block(rate), ringer.callback,
                                                  ringer.on_finished)
                ringer.handle.start()
            except AudioDeviceError as exc:
                ringer.close()
                self._ringer_retry = now + _BACKOFF[1]
                link = self._link
                if link is not None and not link.ring_mix:
                    link.ring_mix, link.ring_on = True, self.ringing
                    self._active["ring_on_speaker"] = True
                self._emit("ringer", f"ringer {DeviceChoice.of(dev)} failed ({exc}): ringing on the speaker")
                continue
            self._ringers[dev.name] = ringer

    def _emit(self, kind: str, detail: str) -> None:
        level = logging.INFO if kind in ("opened", "restarted") else logging.WARNING
        log.log(level, "audio %s: %s", kind, detail)
        if self.on_event is not None:
            try:
                self.on_event(AudioEvent(kind, detail))
            except Exception:  # a faulty listener must not stop recovery
                log.exception("audio event listener failed")
