"""The desktop softphone's non-Tk half: the asyncio thread, the agent's session behind the
window, the configuration file and the optional system keyring.

Threads: Tk runs its ``mainloop`` in the main thread; asyncio (the connection, the session, the
WebRTC media and their 20 ms audio pacing) runs its own loop in a second thread. They never
touch each other's objects directly:

- the window starts coroutines with :meth:`Bridge.call` (``asyncio.run_coroutine_threadsafe``);
  the outcome comes back as a call on the Tk thread;
- the asyncio side (and the audio supervisor thread) hands things to the window with
  :meth:`Bridge.post`, a thread-safe queue that the window drains every 20 ms with
  ``root.after`` (:meth:`Bridge.pump`); the session's state travels as a deep-copied
  *snapshot* (:meth:`Backend.snapshot`), never as the live objects.

So neither side can stall the other: a modal dialog, a slow redraw or (on some systems) a
window being dragged blocks Tk's loop, not the audio; and Tk is only ever called from its own
thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import json
import logging
import os
import queue
import threading
import tomllib
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np

from softphone.devices import DeviceChoice, analyse_mic, record
from softphone.errors import ConfigError, SoftphoneError

__all__ = ["Bridge", "Backend", "GuiConfig", "TapPort", "Keyring", "dump_toml", "fake_device_audio"]

log = logging.getLogger(__name__)

KEYRING_SERVICE = "homeline-softphone"


# -- threads -----------------------------------------------------------------------------------


class Bridge:
    """The asyncio loop in its own thread, and the queue back to the Tk thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.inbox: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="softphone-asyncio", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
                for t in pending:
                    t.cancel()
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def call(self, coro: Coroutine[Any, Any, Any],
             done: Callable[[concurrent.futures.Future[Any]], None] | None = None) -> concurrent.futures.Future[Any]:
        """Run ``coro`` on the asyncio loop; ``done(future)`` is then called on the Tk thread."""
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        if done is not None:
            fut.add_done_callback(lambda f: self.inbox.put((done, (f,))))
        return fut

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """From any thread: ``fn(*args)`` runs on the Tk thread at its next :meth:`pump`."""
        self.inbox.put((fn, args))

    def pump(self, limit: int = 200) -> None:
        """Tk thread: run what was posted."""
        for _ in range(limit):
            try:
                fn, args = self.inbox.get_nowait()
            except queue.Empty:
                return
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - one bad update must not stop the window
                log.exception("GUI update failed")

    def stop(self, timeout: float = 5.0) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)


# -- audio tap ---------------------------------------------------------------------------------


class TapPort:
    """An audio port that passes everything through and can keep a copy of the microphone
    frames the media sends (for the microphone test while the peer connection pulls them)."""

    def __init__(self, port: Any) -> None:
        self.port = port
        self._tap: list[np.ndarray] | None = None
        self.captured = self.played = 0  # frames, so the meters can fall when audio stops
        self._seen = (0, 0)

    def capture(self) -> np.ndarray | None:
        frame = self.port.capture()
        if frame is not None:
            self.captured += 1
            tap = self._tap
            if tap is not None:
                tap.append(np.array(frame, np.int16, copy=True))
        return frame

    def play(self, frame: np.ndarray) -> None:
        self.played += 1
        self.port.play(frame)

    def fresh_levels(self) -> dict[str, float]:
        """:meth:`levels`, with -120 dBFS for a direction that moved no frame since the last call
        (the ports keep the level of the last frame)."""
        levels = dict(self.port.levels())
        seen, self._seen = self._seen, (self.captured, self.played)
        if self.captured == seen[0]:
            levels["input_dbfs"] = -120.0
        if self.played == seen[1]:
            levels["output_dbfs"] = -120.0
        return levels

    def ring(self, on: bool) -> None:
        self.port.ring(on)

    def levels(self) -> dict[str, float]:
        return self.port.levels()

    def counters(self) -> dict[str, int]:
        return self.port.counters()

    def close(self) -> None:
        self.port.close()

    @property
    def ringing(self) -> bool:
        return bool(getattr(self.port, "ringing", False))

    def start_tap(self) -> None:
        self._tap = []

    def stop_tap(self) -> np.ndarray:
        frames, self._tap = self._tap or [], None
        return np.concatenate(frames) if frames else np.zeros(0, np.int16)

    def __getattr__(self, name: str) -> Any:  # status(), set_devices(), delays() ...
        return getattr(self.port, name)


def fake_device_audio(devices: bool = True, **kwargs: Any) -> Any:
    """A :class:`~softphone.audio.DeviceAudio` on :class:`~softphone.devices.FakeBackend` devices
    that run on the wall clock (a thread advances the fake clock and services the streams): the
    device pickers, meters and ringer without a sound card (``--audio fake``, for tests and
    demonstrations). ``devices=False``: a computer without any (``--audio fake-none``)."""
    import time

    from softphone.audio import DeviceAudio
    from softphone.devices import FakeBackend, FakeDevice

    def tone(first: int, n: int, rate: int = 48000) -> np.ndarray:
        t = (first + np.arange(n)) / rate
        return (6000 * np.sin(2 * np.pi * 440.0 * t)).astype(np.int16)

    hardware = [FakeDevice("Laptop Microphone", inputs=1, outputs=0, source=tone),
                FakeDevice("Laptop Speakers", inputs=0, outputs=2),
                FakeDevice("USB Headset", inputs=1, outputs=2, source=tone),
                FakeDevice("Desk Ringer", inputs=0, outputs=2)] if devices else []
    backend = FakeBackend(hardware, default_input="Laptop Microphone", default_output="Laptop Speakers")
    port = DeviceAudio(backend=backend, supervise=False, **kwargs)
    for dev in hardware:  # what they played is not kept (a long session would fill the memory)
        dev.played = _Discard()

    def drive() -> None:
        last = time.monotonic()
        while not port._closed:
            time.sleep(0.005)
            now = time.monotonic()
            backend.advance(now - last)
            last = now
            port.service()

    threading.Thread(target=drive, name="softphone-fake-audio", daemon=True).start()
    return port


class _Discard(list):  # type: ignore[type-arg]
    def append(self, item: Any) -> None:
        pass


# -- the session behind the window ---------------------------------------------------------------


class Backend:
    """Lives on the asyncio thread: opens and closes the agent's session and runs its actions.
    ``on_event(event, snapshot)`` is posted to the Tk thread for every session event."""

    def __init__(self, bridge: Bridge, audio: TapPort, on_event: Callable[[dict[str, Any], dict[str, Any]], None]):
        self.bridge = bridge
        self.audio = audio
        self.on_event = on_event
        self.session: Any = None

    def snapshot(self) -> dict[str, Any]:
        s = self.session
        if s is None:
            return {"state": {"state": "logged-out", "reason": "", "pending": ""}, "offer": None, "call": None,
                    "consult": None, "muted": False, "breaks": [], "queues": [], "agent": {}, "history": [],
                    "connected": False, "server": None, "last_echo_test": None}
        return copy.deepcopy({
            "state": s.state, "offer": s.offer, "call": s.call, "consult": s.consulting, "muted": s.muted,
            "breaks": s.breaks, "queues": s.agent_queues, "agent": s.agent, "history": s.history,
            "connected": s.conn.connected, "server": s.conn.server, "last_echo_test": s.last_echo_test,
            "media": s.media.state, "server_media": s.server_media})

    def _listener(self, ev: dict[str, Any]) -> None:
        self.bridge.post(self.on_event, copy.deepcopy(ev), self.snapshot())

    async def open(self, settings: dict[str, Any], password: str) -> dict[str, Any]:
        """Connect, log in, set up media; raises the connection's errors as they are."""
        from softphone.agent import AgentSession
        from softphone.client import AgentConnection
        from softphone.trust import Trust

        await self.close()
        conn = AgentConnection(settings["server"], settings["user"], password, secondary=settings.get("secondary"),
                               trust=Trust(settings.get("trust_fingerprint") or [], settings.get("ca_file") or []),
                               failover_after=settings.get("failover_after") or 3)
        session = AgentSession(conn, self.audio, queues=settings.get("queues"))
        try:
            await session.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await session.close(logout=False)
            raise
        session.add_listener(self._listener)
        self.session = session
        return self.snapshot()

    async def close(self, logout: bool = True) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.remove_listener(self._listener)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.close(logout=logout), 10)

    async def act(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """One :class:`~softphone.agent.AgentSession` action; returns (its reply, a snapshot)."""
        if self.session is None:
            raise SoftphoneError("not connected")
        reply = await getattr(self.session, name)(*args, **kwargs)
        return reply, self.snapshot()

    async def choose_break(self, reason: str) -> tuple[Any, dict[str, Any]]:
        """A break from any state: logged-out agents log in on a break first."""
        if self.session is None:
            raise SoftphoneError("not connected")
        if self.session.state.get("state") == "logged-out":
            await self.session.login(ready=False)
            if self.session.state.get("reason") == reason:
                return {}, self.snapshot()
        return await self.act("take_break", reason)

    async def go_available(self) -> tuple[Any, dict[str, Any]]:
        if self.session is None:
            raise SoftphoneError("not connected")
        if self.session.state.get("state") == "logged-out":
            return await self.act("login")
        return await self.act("ready")

    async def mic_test(self, seconds: float) -> Any:
        """``seconds`` of microphone, analysed (:func:`softphone.devices.analyse_mic`). While the
        media runs it takes a copy of what the media sends; otherwise it reads the port itself."""
        media = getattr(self.session, "media", None)
        if media is not None and media.ready:
            self.audio.start_tap()
            try:
                await asyncio.sleep(seconds)
            finally:
                samples = self.audio.stop_tap()
        else:
            samples = await asyncio.to_thread(record, self.audio, seconds)
        return analyse_mic(samples)


# -- configuration -------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise ConfigError(f"cannot store {value!r} in the configuration file")


def _toml_key(key: str) -> str:
    return key if key and all(c.isalnum() or c in "-_" for c in key) else json.dumps(key)


def dump_toml(data: dict[str, Any]) -> str:
    """Top-level values, then one-level tables (nested dicts become inline tables)."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items()
             if v is not None and not isinstance(v, dict)]
    for name, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{_toml_key(name)}]"]
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


class GuiConfig:
    """The softphone's configuration file (the same file as the headless mode's, see
    softphone/cli.py); the window's own settings live in its ``[gui]`` table. Saving keeps
    every other setting, but not comments."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        self.error = ""
        try:
            if path.exists():
                self.data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            self.error = f"cannot read {path}: {exc}"

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    @property
    def gui(self) -> dict[str, Any]:
        table = self.data.get("gui")
        return table if isinstance(table, dict) else {}

    def device(self, role: str) -> DeviceChoice:
        value = self.gui.get(role)
        return DeviceChoice.from_dict(value) if isinstance(value, dict) else DeviceChoice()

    def fingerprints(self) -> list[str]:
        value = self.data.get("trust_fingerprint") or []
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]

    def update(self, gui: dict[str, Any] | None = None, **values: Any) -> None:
        """Set values (None removes one) and write the file (mode 600, atomically)."""
        for key, value in values.items():
            if value is None or value == "":
                self.data.pop(key, None)
            else:
                self.data[key] = value
        if gui:
            table = dict(self.gui)
            for key, value in gui.items():
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = value
            self.data["gui"] = table
        self.save()

    def save(self) -> None:
        text = dump_toml(self.data)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.path)
        except OSError as exc:
            raise ConfigError(f"cannot save the settings to {self.path}: {exc.strerror or exc}") from None


# -- keyring -------------------------------------------------------------------------------------


class Keyring:
    """The system keyring through the optional ``keyring`` package; ``available`` is False (and
    ``why`` says why) when the package is missing or has no usable backend."""

    def __init__(self) -> None:
        self.backend: Any = None
        self.why = ""
        try:
            import keyring  # noqa: PLC0415
        except Exception:  # noqa: BLE001 - ImportError, or a broken installation
            self.why = "needs the Python package 'keyring' (not installed)"
            return
        try:
            backend = keyring.get_keyring()
            priority = float(getattr(backend, "priority", 1))
        except Exception as exc:  # noqa: BLE001
            self.why = f"no system keyring ({exc})"
            return
        module = type(backend).__module__
        if module.endswith(".fail") or priority <= 0 or (hasattr(backend, "backends") and not backend.backends):
            self.why = "no system keyring is running (e.g. GNOME Keyring, KWallet)"
            return
        self.backend = backend

    @property
    def available(self) -> bool:
        return self.backend is not None

    @staticmethod
    def account(server: str, user: str) -> str:
        return f"{user}@{server}"

    def get(self, server: str, user: str) -> str | None:
        if self.backend is None:
            return None
        try:
            return self.backend.get_password(KEYRING_SERVICE, self.account(server, user))
        except Exception as exc:  # noqa: BLE001 - a locked or broken keyring: just ask
            log.warning("keyring: %s", exc)
            return None

    def set(self, server: str, user: str, password: str) -> str:
        """Store the password; returns an error message, or ''."""
        if self.backend is None:
            return self.why
        try:
            self.backend.set_password(KEYRING_SERVICE, self.account(server, user), password)
        except Exception as exc:  # noqa: BLE001
            return f"the keyring refused the password ({exc})"
        return ""

    def delete(self, server: str, user: str) -> None:
        if self.backend is None:
            return
        with contextlib.suppress(Exception):
            self.backend.delete_password(KEYRING_SERVICE, self.account(server, user))
