"""``softphone`` command line: the desktop window (the default, softphone/gui.py), the headless
agent (``--headless``), the readiness check (``--echo-test``) and the audio device list
(``--list-devices``).

Settings come from the command line, else from the configuration file
(``$XDG_CONFIG_HOME/homeline/softphone.toml``, or ``--config FILE``)::

    server = "https://acd.example.com:8443"
    secondary = "https://acd2.example.com:8443"
    user = "alice"
    password_file = "~/.config/homeline/password"
    trust_fingerprint = ["AA:BB:…"]      # or ca_file = "/path/ca.pem"
    queues = ["support"]
    failover_after = 3

The log goes to ``$XDG_STATE_HOME/homeline/softphone.log`` (``~/.local/state/…``) and to
stderr. Exit codes: 0 success, 1 failure (e.g. a failed readiness check), 2 bad options or
configuration, 3 login refused, 4 certificate not trusted, 5 server unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from acd import __version__

__all__ = ["main", "build_parser", "config_path", "log_path"]

log = logging.getLogger("softphone")


def list_devices() -> int:
    """Devices by name and host API (how the softphone remembers them; indexes change)."""
    try:
        from softphone.devices import list_devices as devices
        found = devices()
    except OSError as exc:  # PortAudio missing
        sys.stderr.write(f"audio unavailable: {exc} (install libportaudio2)\n")
        return 1
    if not found:
        sys.stdout.write("no audio devices found\n")
        return 1
    for dev in found:
        marks = "".join(m for m, on in ((" (default input)", dev["is_default_input"]),
                                        (" (default output)", dev["is_default_output"])) if on)
        sys.stdout.write(f"{dev['name']} [{dev['hostapi']}] in={dev['input_channels']} out={dev['output_channels']} "
                         f"rate={dev['default_rate']:.0f}{marks}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="softphone", description="Homeline agent softphone: opens the window "
                                "unless a mode (--headless, --echo-test, --list-devices) is given")
    p.add_argument("--version", action="version", version=f"softphone (Homeline) {__version__}")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    mode = p.add_argument_group("headless agent and readiness check")
    mode.add_argument("--headless", action="store_true", help="run without a window: log in, take calls, exit")
    mode.add_argument("--echo-test", action="store_true", help="run the readiness check (echo test) and print it")
    mode.add_argument("--config", metavar="FILE", help="configuration file (default: "
                      "$XDG_CONFIG_HOME/homeline/softphone.toml)")
    mode.add_argument("--server", metavar="URL", help="the Homeline server, https://HOST:PORT")
    mode.add_argument("--secondary", metavar="URL", help="a second server to fail over to")
    mode.add_argument("--failover-after", type=int, metavar="N", help="failed attempts before failing over (3)")
    mode.add_argument("--user", metavar="AGENT", help="agent name")
    mode.add_argument("--password-file", metavar="FILE", help="file whose first line is the password")
    mode.add_argument("--trust-fingerprint", action="append", metavar="AA:BB:…",
                      help="trust the server certificate with this SHA-256 fingerprint (repeatable)")
    mode.add_argument("--ca-file", action="append", metavar="PEM", help="also trust these CA certificates")
    mode.add_argument("--queue", action="append", metavar="NAME", help="log into this queue only (repeatable)")
    mode.add_argument("--auto-answer", action="store_true", help="answer every offered call")
    mode.add_argument("--echo", action="store_true", help="send what is heard back to the caller")
    mode.add_argument("--play", metavar="WAV", help="the microphone plays this file (looped)")
    mode.add_argument("--tone", type=float, metavar="HZ", help="the microphone plays a sine tone")
    mode.add_argument("--record", metavar="WAV", help="record what is heard to this file")
    mode.add_argument("--duration", type=float, metavar="S",
                      help="hang up each call after S seconds (default: wait for the caller); "
                           "with --echo-test its length (default 10)")
    mode.add_argument("--calls", type=int, metavar="N",
                      help="exit after N answered calls (consultations count) once no call is in progress")
    mode.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    mode.add_argument("-q", "--quiet", action="store_true", help="only warnings on stderr")
    # the window's test hooks (softphone/gui_script.py): audio from files, a scripted session
    p.add_argument("--audio", choices=("device", "file", "fake", "fake-none"), default="device", help=argparse.SUPPRESS)
    p.add_argument("--script", metavar="FILE", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.list_devices:
        return list_devices()
    if args.headless or args.echo_test:
        return run_agent(args)
    try:  # no mode: the desktop window
        from softphone.gui import run_gui
    except ImportError as exc:  # a Python built without Tk
        sys.stderr.write(f"softphone: the window needs Tk ({exc}): install python3-tk, or use --headless\n")
        return 2
    return run_gui(args)


# -- headless mode ------------------------------------------------------------------------------


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "homeline" / "softphone.toml"


def log_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "homeline" / "softphone.log"


def _setup_logging(quiet: bool) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING if quiet else logging.INFO)
    err.setFormatter(fmt)
    root.addHandler(err)
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        log.warning("no log file (%s)", exc)
        return
    handler.setFormatter(fmt)
    root.addHandler(handler)
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration file's values, overridden by the command line's."""
    from softphone.errors import ConfigError

    path = Path(args.config).expanduser() if args.config else config_path()
    cfg: dict[str, Any] = {}
    if args.config or path.exists():
        try:
            cfg = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"configuration file {path} does not exist") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
    known = {"server", "secondary", "user", "password_file", "trust_fingerprint", "ca_file", "queues",
             "failover_after", "gui"}  # gui: the window's own settings (devices, remember password)
    unknown = set(cfg) - known
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")

    def listed(value: Any) -> list[str]:
        if value is None:
            return []
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]

    def rel(value: Any) -> str:  # a file named in the configuration file: relative to it
        return str((path.parent / Path(str(value)).expanduser())) if value else ""

    out = {
        "server": args.server or cfg.get("server"),
        "secondary": args.secondary or cfg.get("secondary"),
        "user": args.user or cfg.get("user"),
        "password_file": args.password_file or rel(cfg.get("password_file")),
        "trust_fingerprint": args.trust_fingerprint or listed(cfg.get("trust_fingerprint")),
        "ca_file": args.ca_file or [rel(f) for f in listed(cfg.get("ca_file"))],
        "queues": args.queue or listed(cfg.get("queues")) or None,
        "failover_after": args.failover_after if args.failover_after is not None else cfg.get("failover_after", 3),
    }
    if not isinstance(out["failover_after"], int) or out["failover_after"] < 1:
        raise ConfigError(f"failover_after must be a whole number of at least 1, not {out['failover_after']!r}")
    for key in ("server", "user", "password_file"):
        if not out[key]:
            raise ConfigError(f"no {key.replace('_', '-')}: pass --{key.replace('_', '-')} or set {key} in {path}")
    return out


def _password(path: str) -> str:
    from softphone.errors import ConfigError

    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the password file {file}: {exc.strerror or exc}") from None
    password = text.splitlines()[0] if text else ""
    if not password:
        raise ConfigError(f"the password file {file} is empty")
    if file.stat().st_mode & 0o077:
        log.warning("the password file %s is readable by others (chmod 600 it)", file)
    return password


def _audio(args: argparse.Namespace) -> Any:
    from softphone.errors import ConfigError
    from softphone.fileaudio import EchoAudio, FileAudio

    if args.echo and (args.play or args.tone):
        raise ConfigError("--echo sends back what is heard: it cannot also --play or --tone")
    if args.echo_test and args.echo:
        raise ConfigError("the echo test needs a microphone signal: use --play or --tone, not --echo")
    if args.echo:
        return EchoAudio(record=args.record)
    if args.echo_test and not args.play and args.tone is None:
        return FileAudio(tone_hz=440.0, record=args.record)  # no sound card here: a test tone stands in
    return FileAudio(play=args.play, record=args.record, tone_hz=args.tone)


def run_agent(args: argparse.Namespace) -> int:
    _setup_logging(args.quiet)
    from softphone.errors import ConfigError, SoftphoneError

    try:
        if args.headless and args.echo_test:
            raise ConfigError("--headless and --echo-test are separate modes: pick one")
        if args.headless and not args.auto_answer:
            raise ConfigError("--headless needs --auto-answer (nobody is there to answer calls)")
        if args.calls is not None and args.calls < 1:
            raise ConfigError("--calls must be at least 1")
        if args.duration is not None and args.duration <= 0:
            raise ConfigError("--duration must be positive")
        settings = _settings(args)
        runner = _echo_test if args.echo_test else _headless
        code, summary = asyncio.run(runner(args, settings))
    except SoftphoneError as exc:
        log.error("%s", exc.message)
        code, summary = exc.exit_code, {"ok": False, "error": exc.as_dict()}
    except KeyboardInterrupt:  # the echo test (headless mode handles SIGINT itself)
        code, summary = 130, {"ok": False, "stopped_by": "interrupt"}
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
    return code


def _connection(settings: dict[str, Any]) -> Any:
    from softphone.client import AgentConnection
    from softphone.trust import Trust

    return AgentConnection(settings["server"], settings["user"], _password(settings["password_file"]),
                           secondary=settings["secondary"],
                           trust=Trust(settings["trust_fingerprint"], settings["ca_file"]),
                           failover_after=settings["failover_after"])


class _Headless:
    """Auto-answer loop: hang up after ``duration``, end wrap-up at once, stop after ``calls``
    answered calls (consultations count) once no call is in progress."""

    def __init__(self, session: Any, duration: float | None, calls: int | None) -> None:
        self.session = session
        self.duration = duration
        self.calls = calls
        self.ended = 0
        self.summaries = 0
        self.done = asyncio.Event()
        self.stopped_by = ""
        self.error: dict[str, Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        session.add_listener(self.on_event)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop(self, why: str) -> None:
        if not self.done.is_set():
            log.info("stopping: %s", why)
            self.stopped_by = why
            self.done.set()

    def on_event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        if kind == "call-started" and self.duration:
            self._spawn(self._hangup_later(ev["record"]["id"]))
        elif kind == "call-ended":
            self.ended += 1
        elif kind == "state" and ev.get("state") == "wrap-up" and not self._enough(self.ended):
            self._spawn(self._wrapup_done())
        elif kind == "call-summary":
            if ev["record"].get("outcome") == "answered":
                self.summaries += 1
                q = ev["record"].get("quality") or {}
                log.info("call %s done: %.1f s, rtt %s ms, jitter %s ms, loss %s %%, MOS %s",
                         ev["record"]["id"], ev["record"]["duration_s"] or 0, q.get("rtt_ms"), q.get("jitter_ms"),
                         q.get("loss_pct"), q.get("mos"))
            if self._enough(self.summaries) and not self.session.call:  # a consultation may have become a call
                self.stop(f"{self.summaries} call(s) answered")
        elif kind == "connection" and ev.get("state") in ("failed", "replaced"):
            self.error = ev.get("error") or {"kind": ev.get("state"), "message": ev.get("message", "")}
            self.stop(f"connection {ev.get('state')}: {ev.get('message', '')}")
        elif kind == "connection" and ev.get("state") == "connected":
            log.info("connected to %s as %s (state %s)", ev.get("server"), self.session.conn.agent,
                     (ev["welcome"].get("state") or {}).get("state"))
        elif kind == "state":
            log.info("state %s%s", ev.get("state"), f" ({ev['reason']})" if ev.get("reason") else "")

    def _enough(self, n: int) -> bool:
        return self.calls is not None and n >= self.calls

    async def _hangup_later(self, call_id: str) -> None:
        await asyncio.sleep(self.duration or 0)
        if self.session.call and self.session.call.get("id") == call_id:
            from softphone.errors import SoftphoneError

            try:
                await self.session.hangup(call_id)
            except SoftphoneError as exc:
                log.info("hangup of %s: %s", call_id, exc.message)

    async def _wrapup_done(self) -> None:
        from softphone.errors import SoftphoneError

        try:
            await self.session.wrapup_done()
        except SoftphoneError as exc:
            log.info("wrapup-done: %s", exc.message)


def _on_signals(callback: Any) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, callback, sig.name)


async def _headless(args: argparse.Namespace, settings: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    from softphone.agent import AgentSession

    audio = _audio(args)
    conn = _connection(settings)
    session = AgentSession(conn, audio, queues=settings["queues"], auto_answer=True)
    runner = _Headless(session, args.duration, args.calls)
    _on_signals(lambda name: runner.stop(f"signal {name}"))
    try:
        await session.start()
        await session.login()
        log.info("available for calls on %s", conn.server)
        await runner.done.wait()
    finally:
        await session.close(logout=True)
        audio.close()
    calls = [_call_summary(r) for r in session.history if r.get("outcome") == "answered"]
    summary = {"ok": runner.error is None, "agent": settings["user"], "server": conn.server,
               "calls_answered": len(calls), "calls": calls,
               "missed": sum(1 for r in session.history if r.get("outcome") != "answered"),
               "reconnects": conn.reconnects, "failovers": conn.failovers, "stopped_by": runner.stopped_by,
               "audio": audio.counters()}
    if runner.error is not None:
        summary["error"] = runner.error
    if not args.json:
        for c in calls:
            q = c.get("quality") or {}
            sys.stdout.write(f"{c['id']} {c['caller']} {c['queue']} {c['duration_s']} s: rtt {q.get('rtt_ms')} ms, "
                             f"jitter {q.get('jitter_ms')} ms, loss {q.get('loss_pct')} %, MOS {q.get('mos')}\n")
    return (0 if runner.error is None else 1), summary


def _call_summary(rec: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "caller", "queue", "waited_s", "duration_s", "ended_by", "reason", "held", "server", "quality")
    return {k: rec.get(k) for k in keys}


async def _echo_test(args: argparse.Namespace, settings: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    from softphone.agent import AgentSession
    from softphone.errors import SoftphoneError

    audio = _audio(args)
    conn = _connection(settings)
    session = AgentSession(conn, audio, restore_state=False)
    seconds = args.duration or 10.0
    try:
        await session.start()
        state = session.state.get("state")
        if state not in ("logged-out", "break"):
            raise SoftphoneError(f"the echo test runs while logged out or on break; {settings['user']} is {state}")
        log.info("echo test: %.0f s", seconds)
        result = await session.echo_test(seconds)
    finally:
        await session.close(logout=False)
        audio.close()
    passed = bool(result.get("passed"))
    if not args.json:
        verdict = "passed" if passed else "FAILED: " + ", ".join(result.get("reasons") or [])
        sys.stdout.write(f"readiness check {verdict}: rtt {result.get('rtt_ms')} ms, "
                         f"jitter {result.get('jitter_ms')} ms, loss {result.get('loss_pct')} %, "
                         f"MOS {result.get('mos')}\n")
    return (0 if passed else 1), {"ok": passed, "agent": settings["user"], "server": conn.server,
                                  "echo_test": result}


if __name__ == "__main__":
    sys.exit(main())
