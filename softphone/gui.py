"""The desktop softphone window (``softphone`` with no mode): Tk and ttk from the standard library.

A login window (server, optional secondary server, agent, password; "remember password" through
the system keyring when the ``keyring`` package and a keyring are there; a "Trust this server?"
dialog for an unknown certificate), then one compact window: the agent's state in a big
coloured block with the time in it, Available / Break / Log out, the incoming-call popup, the
call's controls, wrap-up, the local call history, audio devices, level meters, live quality, a
microphone test and the readiness check. Shortcuts: F5 or Ctrl+Enter answers, F6 or Esc hangs
up (F6 rejects a ringing call), F7 or Ctrl+M mutes.

Threads: see softphone/gui_core.py (asyncio in its own thread, Tk in the main thread, a queue
between them). The calls' logic is :class:`softphone.agent.AgentSession`, as in the headless mode.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tkinter as tk
from pathlib import Path
from tkinter import ttk
from typing import Any

from softphone.errors import (AccountLocked, BadCredentials, CertificateError, ConfigError, MediaError,
                              ServerUnreachable, SoftphoneError, UntrustedCertificate)
from softphone.gui_core import Backend, Bridge, GuiConfig, Keyring, TapPort
from softphone.gui_main import MainView
from softphone.gui_widgets import TrustDialog

__all__ = ["App", "run_gui", "explain"]

log = logging.getLogger("softphone.gui")

WIDTH, HEIGHT = 420, 640


def explain(exc: BaseException) -> str:
    """What the agent reads for an error."""
    if isinstance(exc, BadCredentials):
        return "Wrong agent name or password. Check both and try again."
    if isinstance(exc, AccountLocked):
        return exc.message[0].upper() + exc.message[1:] + "."
    if isinstance(exc, ServerUnreachable):
        detail = exc.detail
        low = detail.lower()
        if "errno 111" in low or "refused" in low:
            detail = "the connection was refused: is the address and port right, is the server running?"
        elif "timed out" in low or "timeout" in low:
            detail = "no answer (timed out)"
        elif "errno -2" in low or "errno -3" in low or "name or service" in low or "getaddrinfo" in low:
            detail = "unknown host name"
        return f"Cannot reach the server {exc.url}: {detail} Check the address and your internet connection."
    if isinstance(exc, CertificateError):
        return f"Certificate problem: {exc.message}"
    if isinstance(exc, MediaError):
        return f"Connected, but the audio could not be set up: {exc.message}. A firewall may block UDP."
    if isinstance(exc, SoftphoneError):
        return exc.message[0].upper() + exc.message[1:]
    return f"Unexpected error: {exc!r} (see the log file)"


class LoginView(tk.Frame):
    def __init__(self, app: App) -> None:
        super().__init__(app.root, background="#FAFAFA", padx=28, pady=20)
        self.app = app
        reg = app.register
        tk.Label(self, text="Homeline", font=("DejaVu Sans", 22, "bold"), background="#FAFAFA",
                 foreground="#1A237E").pack(anchor="w")
        tk.Label(self, text="Agent softphone", font=("DejaVu Sans", 11), background="#FAFAFA",
                 foreground="#616161").pack(anchor="w", pady=(0, 16))
        cfg, args = app.config, app.args
        self.vars: dict[str, tk.StringVar] = {}
        fields = (("server", "Server", args.server or cfg.get("server") or "https://"),
                  ("secondary", "Secondary server (optional)", args.secondary or cfg.get("secondary") or ""),
                  ("user", "Agent", args.user or cfg.get("user") or ""),
                  ("password", "Password", ""))
        for key, label, value in fields:
            tk.Label(self, text=label, background="#FAFAFA", anchor="w").pack(fill="x", pady=(6, 1))
            var = self.vars[key] = tk.StringVar(value=str(value))
            entry = ttk.Entry(self, textvariable=var, font=("DejaVu Sans", 11),
                              show="•" if key == "password" else "")
            entry.pack(fill="x", ipady=3)
            entry.bind("<Return>", lambda e: self.submit())
            reg(f"login.{key}", entry)
        self.remember = tk.BooleanVar(value=bool(cfg.gui.get("remember_password")) and app.keyring.available)
        check = ttk.Checkbutton(self, text="Remember password", variable=self.remember)
        check.pack(anchor="w", pady=(8, 0))
        reg("login.remember", check)
        if not app.keyring.available:
            check.state(["disabled"])
            note = tk.Label(self, text=f"Remembering the password {app.keyring.why}: it is asked each time.",
                            background="#FAFAFA", foreground="#757575", wraplength=350, justify="left",
                            font=("DejaVu Sans", 9))
            note.pack(anchor="w")
            reg("login.keyring_note", note)
        elif self.vars["server"].get() and self.vars["user"].get():
            saved = app.keyring.get(self.vars["server"].get(), self.vars["user"].get())
            if saved:
                self.vars["password"].set(saved)
        self.button = tk.Button(self, text="Log in", command=self.submit, background="#1A237E", foreground="white",
                                activebackground="#283593", activeforeground="white", relief="flat",
                                font=("DejaVu Sans", 12, "bold"), pady=6)
        self.button.pack(fill="x", pady=(16, 8))
        reg("login.submit", self.button)
        self.message = tk.Label(self, text="", background="#FAFAFA", wraplength=360, justify="left",
                                font=("DejaVu Sans", 10))
        self.message.pack(anchor="w", fill="x")
        reg("login.message", self.message)
        self.audio_note = tk.Label(self, text="", background="#FAFAFA", wraplength=360, justify="left",
                                   foreground="#616161", font=("DejaVu Sans", 9))
        self.audio_note.pack(side="bottom", anchor="w", fill="x")
        reg("login.audio", self.audio_note)
        if cfg.error:
            self.say(cfg.error, error=True)
        first = next((k for k in ("server", "user", "password") if not self.vars[k].get().strip("https:/")), "password")
        app.widgets[f"login.{first}"].focus_set()

    def say(self, text: str, *, error: bool = False) -> None:
        self.message.configure(text=text, foreground="#C62828" if error else "#37474F")

    def busy(self, on: bool) -> None:
        self.button.configure(state="disabled" if on else "normal", text="Connecting…" if on else "Log in")

    def settings(self) -> dict[str, Any]:
        from softphone.trust import normalize_url

        server, secondary = self.vars["server"].get().strip(), self.vars["secondary"].get().strip()
        user = self.vars["user"].get().strip()
        if not server.strip("https:/"):
            raise ConfigError("Enter the server address your administrator gave you (https://HOST:PORT).")
        if not user:
            raise ConfigError("Enter your agent name.")
        if not self.vars["password"].get():
            raise ConfigError("Enter your password.")
        cfg = self.app.config
        return {"server": normalize_url(server), "secondary": normalize_url(secondary) if secondary else None,
                "user": user, "trust_fingerprint": cfg.fingerprints(),
                "ca_file": [str(Path(str(f)).expanduser()) for f in _listed(cfg.get("ca_file"))],
                "queues": _listed(cfg.get("queues")) or None, "failover_after": cfg.get("failover_after") or 3}

    def submit(self) -> None:
        if str(self.button.cget("state")) == "disabled":
            return
        try:
            settings = self.settings()
        except ConfigError as exc:
            self.say(exc.message, error=True)
            return
        self.busy(True)
        self.say(f"Connecting to {settings['server']}…")
        self.app.login(settings, self.vars["password"].get(), self.remember.get())


def _listed(value: Any) -> list[str]:
    if not value:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


class App:
    """The window and everything on its thread. ``make_audio(on_event)`` builds the audio port."""

    def __init__(self, root: tk.Tk, args: argparse.Namespace, config: GuiConfig, port: Any,
                 audio_problem: str = "", audio_kind: str = "device") -> None:
        self.root, self.args, self.config = root, args, config
        self.widgets: dict[str, tk.Misc] = {}
        self.hooks: list[Any] = []  # the test script's logger: hook(kind, data)
        self.keyring = Keyring()
        self.bridge = Bridge()
        self.audio = TapPort(port)
        self.audio_kind = audio_kind
        self.audio_problem = audio_problem
        self.backend = Backend(self.bridge, self.audio, self.on_session_event)
        self.echo_seconds = float(args.duration or 10.0)
        self.view: LoginView | MainView | None = None
        self.exit_code = 0
        self._closing = False
        root.title("Homeline softphone")
        root.geometry(f"{WIDTH}x{HEIGHT}")
        root.minsize(400, 600)
        root.configure(background="#FAFAFA")
        style = ttk.Style(root)
        if "clam" in style.theme_names():
            style.theme_use("clam")
        style.configure("TNotebook.Tab", padding=(12, 4))
        style.configure("TButton", padding=(8, 4))
        root.protocol("WM_DELETE_WINDOW", self.quit)
        self.show_login()
        root.after(20, self._pump)
        root.after(200, self._tick)

    # -- plumbing ----------------------------------------------------------------------------

    def register(self, name: str, widget: tk.Misc) -> None:
        self.widgets[name] = widget

    def emit(self, what: str, /, **data: Any) -> None:
        for hook in list(self.hooks):
            hook(what, data)

    def _pump(self) -> None:
        self.bridge.pump()
        if not self._closing:
            self.root.after(20, self._pump)

    def _tick(self) -> None:
        if isinstance(self.view, MainView):
            self.view.tick()
        elif isinstance(self.view, LoginView):
            problem = bool(self.audio_problem)
            self.view.audio_note.configure(text=self.audio_summary(), foreground="#B71C1C" if problem else "#616161",
                                           background="#FFEBEE" if problem else "#FAFAFA",
                                           font=("DejaVu Sans", 10 if problem else 9, "bold" if problem else "normal"),
                                           padx=6 if problem else 0, pady=4 if problem else 0)
        if not self._closing:
            self.root.after(200, self._tick)

    def audio_summary(self) -> str:
        if self.audio_problem:
            return f"Audio problem: {self.audio_problem}"
        if self.audio_kind == "file":
            return "Test audio: no sound card; the microphone plays a file or tone."
        status = self.audio.status() if hasattr(self.audio.port, "status") else {}
        mic, spk = status.get("microphone"), status.get("speaker")
        if not mic and not spk:
            return "Audio: looking for a microphone and a speaker…"
        return f"Audio: microphone {(mic or {}).get('name') or 'none'}, speaker {(spk or {}).get('name') or 'none'}"

    def on_audio_event(self, event: Any) -> None:
        """Audio supervisor thread → Tk thread (posted)."""
        if event.kind == "missing":
            self.audio_problem = "no microphone or speaker found: connect a headset (the softphone keeps looking)"
        elif event.kind in ("opened", "restarted"):
            self.audio_problem = ""
        if isinstance(self.view, MainView):
            self.view.audio_event(event)
        self.emit("audio", event=event.kind, detail=event.detail)

    def _clear(self) -> None:
        if self.view is not None:
            self.view.destroy()
        self.widgets = {k: w for k, w in self.widgets.items() if not k.startswith(("login.", "main.", "popup."))}

    # -- login -------------------------------------------------------------------------------

    def show_login(self, message: str = "", error: bool = False) -> None:
        self._clear()
        self.view = LoginView(self)
        self.view.pack(fill="both", expand=True)
        if message:
            self.view.say(message, error=error)
        self.emit("view", name="login")

    def login(self, settings: dict[str, Any], password: str, remember: bool) -> None:
        def done(fut: Any) -> None:
            view = self.view
            if not isinstance(view, LoginView):
                return
            exc = fut.exception()
            view.busy(False)
            if exc is None:
                self._logged_in(settings, password, remember, fut.result())
                return
            self.emit("login-failed", kind=type(exc).__name__, message=getattr(exc, "message", str(exc)))
            if isinstance(exc, UntrustedCertificate):
                view.say("The server's certificate is not trusted yet: check its fingerprint.", error=True)
                TrustDialog(self.root, exc, self.register, lambda: self.trust(exc.fingerprint, settings, password,
                                                                               remember))
                self.emit("dialog", name="trust", fingerprint=exc.fingerprint)
                return
            if not isinstance(exc, SoftphoneError):
                log.error("login failed", exc_info=exc)
            view.say(explain(exc), error=True)
            if isinstance(exc, BadCredentials):
                view.vars["password"].set("")
                self.widgets["login.password"].focus_set()

        self.bridge.call(self.backend.open(settings, password), done)

    def trust(self, fingerprint: str, settings: dict[str, Any], password: str, remember: bool) -> None:
        pins = [f for f in self.config.fingerprints() if f != fingerprint] + [fingerprint]
        try:
            self.config.update(trust_fingerprint=pins)
        except ConfigError as exc:
            if isinstance(self.view, LoginView):
                self.view.say(exc.message, error=True)
        settings = dict(settings, trust_fingerprint=pins)
        if isinstance(self.view, LoginView):
            self.view.busy(True)
            self.view.say(f"Connecting to {settings['server']}…")
        self.login(settings, password, remember)

    def _logged_in(self, settings: dict[str, Any], password: str, remember: bool, snap: dict[str, Any]) -> None:
        note = ""
        try:
            self.config.update(server=settings["server"], secondary=settings["secondary"], user=settings["user"],
                               gui={"remember_password": bool(remember and self.keyring.available)})
        except ConfigError as exc:
            note = exc.message
        if self.keyring.available:
            if remember:
                note = self.keyring.set(settings["server"], settings["user"], password) or note
            else:
                self.keyring.delete(settings["server"], settings["user"])
        self._clear()
        self.view = MainView(self, settings, snap)
        self.view.pack(fill="both", expand=True)
        if note:
            self.view.notice(note, error=True)
        self.emit("view", name="main", state=snap["state"].get("state"))

    def sign_out(self, message: str = "", error: bool = False) -> None:
        """Log out of the queues, close the session, back to the login window."""
        def done(fut: Any) -> None:
            self.show_login(message or "Logged out.", error)

        if isinstance(self.view, MainView):
            self.view.closing = True
        self.bridge.call(self.backend.close(logout=True), done)

    # -- events ------------------------------------------------------------------------------

    def on_session_event(self, ev: dict[str, Any], snap: dict[str, Any]) -> None:
        kind = ev.get("type")
        brief = {k: ev.get(k) for k in ("state", "reason", "by", "call", "message") if k in ev}
        if kind == "offer":
            brief["caller"] = (ev.get("call") or {}).get("caller")
        if kind == "quality":
            brief = {"mos": ev["stats"].get("mos"), "warnings": [w["metric"] for w in ev.get("warnings") or []]}
        if kind in ("call", "call-started", "call-summary"):
            brief = {"call": (ev.get("call") or ev.get("record") or {}).get("id"),
                     "state": (ev.get("call") or {}).get("state")}
        self.emit("event", type=kind, **brief)
        if isinstance(self.view, MainView):
            self.view.on_event(ev, snap)

    # -- quitting ----------------------------------------------------------------------------

    def quit(self, code: int | None = None, *, force: bool = False) -> None:
        if code is not None:
            self.exit_code = code
        if self._closing:
            return
        if not force and isinstance(self.view, MainView) and self.view.snap.get("call"):
            from tkinter import messagebox

            if not messagebox.askyesno("Quit", "You are on a call. Hang up and quit?", parent=self.root):
                return
        self._closing = True
        self.emit("quit", code=self.exit_code)
        finished = {"done": False}

        def finish(_: Any = None) -> None:
            if finished["done"]:
                return
            finished["done"] = True
            self.bridge.stop()
            self.audio.close()
            self.root.destroy()

        self.bridge.call(self.backend.close(logout=True), finish)
        self.root.after(8000, finish)  # a hung server must not keep the window open
        self._drain(finish, finished)

    def _drain(self, finish: Any, finished: dict[str, bool]) -> None:
        if not finished["done"]:
            self.bridge.pump()
            self.root.after(20, lambda: self._drain(finish, finished))


# -- starting ---------------------------------------------------------------------------------------


def _make_audio(args: argparse.Namespace, config: GuiConfig, app_box: dict[str, Any]) -> tuple[Any, str, str]:
    """(port, problem, kind): the sound card; for tests files (``--audio file``) or fake devices
    (``--audio fake``, ``fake-none``)."""
    from softphone.fileaudio import FileAudio

    if args.audio == "file":
        return FileAudio(play=args.play, record=args.record, tone_hz=args.tone), "", "file"

    def on_event(event: Any) -> None:
        app = app_box.get("app")
        if app is not None:
            app.bridge.post(app.on_audio_event, event)

    chosen = {"mic": config.device("microphone"), "speaker": config.device("speaker"),
              "ringers": [config.device("ringer")], "on_event": on_event}
    try:
        if args.audio in ("fake", "fake-none"):  # fake devices on the wall clock (tests, demonstrations)
            from softphone.gui_core import fake_device_audio

            port = fake_device_audio(args.audio == "fake", **chosen)
        else:
            from softphone.audio import DeviceAudio

            port = DeviceAudio(**chosen)
    except SoftphoneError as exc:
        return FileAudio(), f"{exc.message}. Calls will be silent.", "none"
    except OSError as exc:  # PortAudio missing
        return FileAudio(), f"no audio system ({exc}; install libportaudio2). Calls will be silent.", "none"
    status = port.status()
    problem = "" if status.get("microphone") or status.get("speaker") else \
        "no microphone or speaker found: connect a headset"
    return port, problem, "device"


def run_gui(args: argparse.Namespace) -> int:
    """The window's main loop; returns the exit code (2: no display or no Tk)."""
    from softphone import cli

    cli._setup_logging(args.quiet)
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        sys.stderr.write("softphone: no display (DISPLAY is not set); use --headless for a window-less agent\n")
        return 2
    try:
        root = tk.Tk(className="homeline-softphone")
    except tk.TclError as exc:
        sys.stderr.write(f"softphone: cannot open a window: {exc}; use --headless for a window-less agent\n")
        return 2
    path = Path(args.config).expanduser() if args.config else cli.config_path()
    config = GuiConfig(path)
    box: dict[str, Any] = {}
    try:
        port, problem, kind = _make_audio(args, config, box)
    except ConfigError as exc:
        root.destroy()
        sys.stderr.write(f"softphone: {exc.message}\n")
        return 2
    app = box["app"] = App(root, args, config, port, problem, kind)
    if args.script:
        from softphone.gui_script import ScriptRunner

        ScriptRunner(app, Path(args.script)).start()
    for sig in (signal.SIGINT, signal.SIGTERM):  # log out and close cleanly, as the window's close button
        signal.signal(sig, lambda signum, frame: root.after_idle(lambda: app.quit(0, force=True)))
    root.mainloop()
    return app.exit_code

