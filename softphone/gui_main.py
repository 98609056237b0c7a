"""The softphone's main window (after login): state, call controls, wrap-up, history, audio.

Everything here runs on the Tk thread and draws from *snapshots* of the session (see
softphone/gui_core.py); actions go to the asyncio thread through ``App.bridge``."""

from __future__ import annotations

import time
import tkinter as tk
from tkinter import ttk
from typing import TYPE_CHECKING, Any

from softphone.devices import DeviceChoice
from softphone.errors import ConfigError, SoftphoneError
from softphone.gui_widgets import COLORS, STATE_LABELS, IncomingCall, Keypad, LevelMeter, TransferDialog, fmt_duration

if TYPE_CHECKING:
    from softphone.gui import App

__all__ = ["MainView"]

BG = "#FAFAFA"
MIC_VERDICTS = {
    "ok": ("Microphone OK: speech came through", "#2E7D32"),
    "silent": ("No sound from the microphone: check it is plugged in, chosen below and not muted", "#C62828"),
    "too quiet": ("Very quiet: move the microphone closer or raise its level", "#E65100"),
    "clipping": ("Too loud (clipping): lower the microphone level", "#E65100"),
    "no speech": ("Sound comes through, but it does not sound like speech: say a few words while testing",
                  "#E65100"),
}


def _label(master: tk.Misc, text: str = "", **kw: Any) -> tk.Label:
    kw.setdefault("background", BG)
    kw.setdefault("anchor", "w")
    return tk.Label(master, text=text, **kw)


class MainView(tk.Frame):
    def __init__(self, app: App, settings: dict[str, Any], snap: dict[str, Any]) -> None:
        super().__init__(app.root, background=BG)
        self.app, self.settings, self.snap = app, settings, snap
        self.closing = False
        self.popup: IncomingCall | None = None
        self.state_key: tuple[str, str] | None = None
        self.state_t0 = time.monotonic()
        self.call_id: str | None = None
        self.call_t0 = 0.0
        self.last_call = ""
        self.wrapup_end: float | None = None
        self.running: set[str] = set()
        self.quality: dict[str, Any] | None = None
        self._notice_until = 0.0
        reg = app.register
        self._build_header(reg)
        self._build_status(reg)
        self._build_actions(reg)
        self.book = ttk.Notebook(self)
        self.book.pack(fill="both", expand=True, padx=8, pady=(6, 0))
        reg("main.tabs", self.book)
        self._build_call_tab(reg)
        self._build_history_tab(reg)
        self._build_audio_tab(reg)
        foot = tk.Frame(self, background="#ECEFF1")
        foot.pack(fill="x", side="bottom")
        self.message = _label(foot, "", background="#ECEFF1", wraplength=400, justify="left", padx=8)
        self.message.pack(fill="x")
        reg("main.message", self.message)
        _label(foot, "F5 / Ctrl+Enter answer · F6 / Esc hang up · F7 / Ctrl+M mute", background="#ECEFF1",
               foreground="#546E7A", font=("DejaVu Sans", 9), padx=8, pady=3).pack(fill="x")
        root = app.root
        for seq, fn in (("<F5>", self.key_answer), ("<Control-Return>", self.key_answer),
                        ("<Control-KP_Enter>", self.key_answer), ("<F6>", self.key_hangup),
                        ("<Escape>", self.hangup), ("<F7>", self.key_mute), ("<Control-m>", self.key_mute),
                        ("<Control-M>", self.key_mute)):
            root.bind(seq, lambda e, fn=fn: fn())
        self.bind("<Destroy>", self._unbind, add="+")
        self.render(snap)

    def _unbind(self, event: Any) -> None:
        if event.widget is self:
            for seq in ("<F5>", "<Control-Return>", "<Control-KP_Enter>", "<F6>", "<Escape>", "<F7>",
                        "<Control-m>", "<Control-M>"):
                self.app.root.unbind(seq)
            if self.popup is not None:
                self.popup.destroy()

    # -- layout ------------------------------------------------------------------------------

    def _build_header(self, reg: Any) -> None:
        head = tk.Frame(self, background=BG, padx=10, pady=6)
        head.pack(fill="x")
        agent = self.snap.get("agent") or {}
        name = agent.get("name") or agent.get("id") or self.settings["user"]
        _label(head, name, font=("DejaVu Sans", 12, "bold")).pack(side="left")
        self.conn_label = _label(head, "", font=("DejaVu Sans", 9), foreground="#2E7D32")
        self.conn_label.pack(side="right")
        reg("main.connection", self.conn_label)

    def _build_status(self, reg: Any) -> None:
        self.status = tk.Frame(self, background=COLORS["logged-out"], padx=14, pady=10)
        self.status.pack(fill="x", padx=8)
        self.state_label = tk.Label(self.status, text="", font=("DejaVu Sans", 22, "bold"), foreground="white",
                                    background=COLORS["logged-out"], anchor="w")
        self.state_label.pack(side="left")
        self.state_time = tk.Label(self.status, text="", font=("DejaVu Sans Mono", 18), foreground="white",
                                   background=COLORS["logged-out"])
        self.state_time.pack(side="right")
        self.pending = _label(self, "", foreground="#5D4037", font=("DejaVu Sans", 9), padx=10)
        self.pending.pack(fill="x")
        reg("main.state", self.state_label)
        reg("main.state_time", self.state_time)
        reg("main.pending", self.pending)

    def _build_actions(self, reg: Any) -> None:
        row = tk.Frame(self, background=BG, padx=8)
        row.pack(fill="x", pady=(2, 0))
        self.b_available = ttk.Button(row, text="Available", command=self.go_available)
        self.b_available.pack(side="left")
        labels = [b.get("label") or b.get("reason") for b in self.snap.get("breaks") or []]
        self.break_var = tk.StringVar(value=labels[0] if labels else "")
        self.break_box = ttk.Combobox(row, textvariable=self.break_var, values=labels, width=11, state="readonly")
        self.break_box.pack(side="left", padx=(8, 2))
        self.b_break = ttk.Button(row, text="Break", command=self.go_break, width=6)
        self.b_break.pack(side="left")
        self.b_logout = ttk.Button(row, text="Log out", command=self.sign_out)
        self.b_logout.pack(side="right")
        for name, w in (("available", self.b_available), ("break_reason", self.break_box),
                        ("break", self.b_break), ("logout", self.b_logout)):
            reg(f"main.{name}", w)

    def _build_call_tab(self, reg: Any) -> None:
        tab = tk.Frame(self.book, background=BG, padx=10, pady=8)
        self.book.add(tab, text="Call")
        top = tk.Frame(tab, background=BG)
        top.pack(fill="x")
        self.caller = _label(top, "No call", font=("DejaVu Sans", 16, "bold"))
        self.caller.pack(side="left")
        self.call_timer = _label(top, "", font=("DejaVu Sans Mono", 16))
        self.call_timer.pack(side="right")
        self.call_info = _label(tab, "", foreground="#546E7A")
        self.call_info.pack(fill="x")
        reg("main.caller", self.caller)
        reg("main.call_timer", self.call_timer)
        reg("main.call_info", self.call_info)
        grid = tk.Frame(tab, background=BG)
        grid.pack(fill="x", pady=(8, 4))
        self.call_buttons: dict[str, ttk.Button] = {}
        for i, (name, text, fn) in enumerate((("mute", "Mute (F7)", self.toggle_mute),
                                              ("hold", "Hold", self.toggle_hold),
                                              ("keypad", "Keypad", self.open_keypad),
                                              ("transfer", "Transfer", lambda: self.open_transfer(False)),
                                              ("consult", "Consult", lambda: self.open_transfer(True)),
                                              ("difficult", "Difficult call", self.difficult))):
            b = ttk.Button(grid, text=text, command=fn)
            b.grid(row=i // 3, column=i % 3, sticky="ew", padx=2, pady=2)
            self.call_buttons[name] = b
            reg(f"main.{name}", b)
        for c in range(3):
            grid.columnconfigure(c, weight=1, uniform="calls")
        self.mute_banner = tk.Label(tab, text="MUTED: the caller hears silence. F7 to unmute.", background="#FFEBEE",
                                    foreground="#B71C1C", font=("DejaVu Sans", 10, "bold"), pady=4)
        reg("main.muted", self.mute_banner)
        self.consult_row = tk.Frame(tab, background="#FFF3E0", padx=6, pady=4)
        self.consult_label = _label(self.consult_row, "", background="#FFF3E0")
        self.consult_label.pack(side="top", anchor="w")  # its own line: any name fits beside nothing
        consult_buttons = tk.Frame(self.consult_row, background="#FFF3E0")
        consult_buttons.pack(side="top", fill="x", pady=(4, 0))
        self.b_consult_cancel = ttk.Button(consult_buttons, text="Cancel", command=lambda: self.act("consult_cancel"))
        self.b_consult_complete = ttk.Button(consult_buttons, text="Complete transfer",
                                             command=lambda: self.act("consult_complete"))
        self.b_consult_cancel.pack(side="right")
        self.b_consult_complete.pack(side="right", padx=4)
        reg("main.consult_state", self.consult_label)
        reg("main.consult_complete", self.b_consult_complete)
        reg("main.consult_cancel", self.b_consult_cancel)
        self.b_hangup = tk.Button(tab, text="Hang up  (F6 / Esc)", command=self.hangup, background="#C62828",
                                  foreground="white", activebackground="#8E0000", activeforeground="white",
                                  disabledforeground="#EF9A9A", font=("DejaVu Sans", 12, "bold"), relief="flat",
                                  pady=5)
        self.b_hangup.pack(fill="x", pady=(4, 4))
        reg("main.hangup", self.b_hangup)
        self.wrapup_row = tk.Frame(tab, background="#F3E5F5", padx=6, pady=4)
        self.wrapup_label = _label(self.wrapup_row, "", background="#F3E5F5", font=("DejaVu Sans", 11))
        self.wrapup_label.pack(side="left")
        self.b_wrapup = ttk.Button(self.wrapup_row, text="Done", command=lambda: self.act("wrapup_done"))
        self.b_wrapup.pack(side="right")
        reg("main.wrapup", self.wrapup_label)
        reg("main.wrapup_done", self.b_wrapup)
        self.quality_label = _label(tab, "Quality: -", foreground="#37474F", font=("DejaVu Sans", 9))
        self.quality_label.pack(side="bottom", fill="x")
        self.warn_label = _label(tab, "", foreground="#C62828", font=("DejaVu Sans", 9), wraplength=370,
                                 justify="left")
        self.warn_label.pack(side="bottom", fill="x")
        reg("main.quality", self.quality_label)
        reg("main.quality_warnings", self.warn_label)
        self.meters = self._meters(tab)
        self.meters[0].master.pack(side="bottom", fill="x", pady=(4, 2))

    def _meters(self, master: tk.Misc) -> tuple[LevelMeter, LevelMeter]:
        row = tk.Frame(master, background=BG)
        _label(row, "Mic", font=("DejaVu Sans", 9)).pack(side="left")
        mic = LevelMeter(row, width=130)
        mic.pack(side="left", padx=(4, 12))
        _label(row, "Speaker", font=("DejaVu Sans", 9)).pack(side="left")
        spk = LevelMeter(row, width=130)
        spk.pack(side="left", padx=4)
        return mic, spk

    def _build_history_tab(self, reg: Any) -> None:
        tab = tk.Frame(self.book, background=BG, padx=6, pady=6)
        self.book.add(tab, text="History")
        cols = (("time", "Time", 52), ("caller", "Caller", 110), ("queue", "Queue", 76), ("result", "Result", 70),
                ("mos", "MOS", 52))
        self.history = ttk.Treeview(tab, columns=[c for c, _, _ in cols], show="headings", height=12)
        for c, text, width in cols:
            self.history.heading(c, text=text)
            self.history.column(c, width=width, minwidth=width if c != "caller" else 60, stretch=c == "caller")
        self.history.pack(fill="both", expand=True)
        self.history_note = _label(tab, "Calls of this session, newest first.", foreground="#757575",
                                   font=("DejaVu Sans", 9))
        self.history_note.pack(fill="x")
        reg("main.history", self.history)

    def _build_audio_tab(self, reg: Any) -> None:
        tab = tk.Frame(self.book, background=BG, padx=10, pady=8)
        self.book.add(tab, text="Audio")
        self.devices: dict[str, dict[str, DeviceChoice]] = {}
        self.device_vars: dict[str, tk.StringVar] = {}
        pickable = hasattr(self.app.audio.port, "set_devices")
        for role, label in (("microphone", "Microphone"), ("speaker", "Speaker"), ("ringer", "Ringer")):
            _label(tab, label).pack(fill="x")
            var = self.device_vars[role] = tk.StringVar()
            box = ttk.Combobox(tab, textvariable=var, state="readonly" if pickable else "disabled")
            box.pack(fill="x", pady=(0, 4))
            box.bind("<<ComboboxSelected>>", lambda e, role=role: self.pick_device(role))
            reg(f"main.device_{role}", box)
        self.device_boxes = {r: self.app.widgets[f"main.device_{r}"] for r in self.device_vars}
        row = tk.Frame(tab, background=BG)
        row.pack(fill="x")
        self.device_status = _label(row, "", foreground="#546E7A", font=("DejaVu Sans", 9), wraplength=300,
                                    justify="left")
        self.device_status.pack(side="left", fill="x")
        refresh = ttk.Button(row, text="Refresh", command=self.refresh_devices)
        refresh.pack(side="right")
        if not pickable:
            refresh.state(["disabled"])
        reg("main.device_status", self.device_status)
        self.audio_meters = self._meters(tab)
        self.audio_meters[0].master.pack(fill="x", pady=8)
        reg("main.mic_level", self.audio_meters[0])
        reg("main.speaker_level", self.audio_meters[1])
        ttk.Separator(tab).pack(fill="x", pady=4)
        self.b_mictest = ttk.Button(tab, text="Test microphone (3 s)", command=self.mic_test)
        self.b_mictest.pack(anchor="w")
        self.mic_result = _label(tab, "Speak normally while the test runs.", wraplength=380, justify="left",
                                 foreground="#546E7A")
        self.mic_result.pack(fill="x", pady=(2, 8))
        self.b_echo = ttk.Button(tab, text=f"Readiness check ({self.app.echo_seconds:.0f} s)", command=self.echo_test)
        self.b_echo.pack(anchor="w")
        self.echo_result = _label(tab, "Checks the network and your audio with the server (logged out or on "
                                       "break).", wraplength=380, justify="left", foreground="#546E7A")
        self.echo_result.pack(fill="x", pady=(2, 0))
        reg("main.mic_test", self.b_mictest)
        reg("main.mic_result", self.mic_result)
        reg("main.echo_test", self.b_echo)
        reg("main.echo_result", self.echo_result)
        self.refresh_devices()

    # -- drawing -----------------------------------------------------------------------------

    def on_event(self, ev: dict[str, Any], snap: dict[str, Any]) -> None:
        kind = ev.get("type")
        if kind == "quality":
            self.quality = ev
        elif kind == "connection":
            st = ev.get("state")
            if st in ("lost", "reconnecting"):
                self.notice(f"Connection lost: reconnecting… {ev.get('message') or ''}".strip(), error=True)
            elif st == "connected" and ev.get("reconnect"):
                self.notice(f"Reconnected to {ev.get('server')}" + (" (failover)" if ev.get("failover") else ""))
            elif st in ("failed", "replaced") and not self.closing:
                self.app.sign_out(f"Disconnected: {ev.get('message') or st}", error=True)
                return
        elif kind == "offer-cancelled":
            why = {"timeout": "not answered in time", "caller-gone": "the caller hung up",
                   "answered-elsewhere": "answered elsewhere"}.get(str(ev.get("reason")), str(ev.get("reason")))
            self.notice(f"Missed call ({why})", error=True)
        elif kind == "call-ended":
            by, reason = ev.get("by"), str(ev.get("reason") or "")
            text = {"agent": "You ended the call.", "caller": "The caller hung up."}.get(str(by)) or \
                f"The call was ended ({reason or by})."
            if reason == "transferred":
                text = "Call transferred."
            self.notice(text)
        elif kind == "consult" and ev.get("state") == "ended" and ev.get("reason"):
            self.notice(f"Consultation ended: {ev['reason']}")
        self.render(snap)

    def render(self, snap: dict[str, Any]) -> None:
        if self.closing:
            return
        self.snap = snap
        st = snap.get("state") or {}
        name, reason = str(st.get("state") or "logged-out"), str(st.get("reason") or "")
        if not snap.get("connected"):
            name = "offline" if name == "logged-out" else name
        if (name, reason) != self.state_key:
            self.state_key = (name, reason)
            since = st.get("since")
            ago = time.time() - float(since) if isinstance(since, (int, float)) else -1
            # the server's clock says since when (a call resumed after a reconnect keeps its time);
            # "logged out" counts from this window's login
            self.state_t0 = time.monotonic() - (ago if 0 <= ago < 12 * 3600 and name != "logged-out" else 0)
            if name == "wrap-up" and st.get("wrapup_until") and since:
                self.wrapup_end = self.state_t0 + float(st["wrapup_until"]) - float(since)
            elif name != "wrap-up":
                self.wrapup_end = None
        color = COLORS.get(name, COLORS["logged-out"])
        label = STATE_LABELS.get(name, name)
        if name == "break":
            labels = {b.get("reason"): b.get("label") for b in snap.get("breaks") or []}
            label = f"Break: {labels.get(reason) or reason}" if reason else "Break"
        for w in (self.status, self.state_label, self.state_time):
            w.configure(background=color)
        self.state_label.configure(text=label)
        self.app.root.title(f"{label} · Homeline softphone")
        pending = str(st.get("pending") or "")
        self.pending.configure(text=_pending_text(pending, snap))
        connected = bool(snap.get("connected"))
        self.conn_label.configure(text=f"● {snap.get('server') or ''}" if connected else "● not connected",
                                  foreground="#2E7D32" if connected else "#C62828")
        # state buttons
        on_call = name in ("on-call", "reserved")
        self._enable(self.b_available, connected and (name in ("logged-out", "break") or bool(pending)))
        self._enable(self.b_break, connected and bool(snap.get("breaks")) and name != "reserved")
        self._enable(self.b_logout, not on_call)
        # the popup
        offer = snap.get("offer")
        if offer and (self.popup is None or self.popup.offer.get("id") != offer.get("id")):
            self._close_popup()
            self.popup = IncomingCall(self.app.root, offer, self.app.register, self.answer, self.reject)
            self.app.emit("popup", caller=offer.get("caller"), queue=offer.get("queue"),
                          ivr_path=offer.get("ivr_path"), ringing=self.app.audio.ringing)
        elif not offer and self.popup is not None:
            self._close_popup()
        # the call
        call = snap.get("call")
        if call and call.get("id") != self.call_id:
            self.call_id, self.call_t0 = call.get("id"), time.monotonic()
            self.quality = None
            self.book.select(0)
        elif not call and self.call_id:
            took = fmt_duration(time.monotonic() - self.call_t0)
            self.last_call = f"Call with {self.caller.cget('text')} ended ({took})"
            self.call_id = None
        if call:
            self.caller.configure(text=call.get("caller") or "Unknown caller")
            path = " › ".join(call.get("ivr_path") or [])
            info = f"Queue {call.get('queue') or '-'}" + (f" · IVR {path}" if path else "")
            if call.get("state") == "held":
                info += " · ON HOLD"
            self.call_info.configure(text=info)
        else:
            self.caller.configure(text="No call")
            if name == "wrap-up" and self.last_call:
                self.call_info.configure(text=self.last_call)
            else:
                self.call_info.configure(text="")
            self.call_timer.configure(text="")
        consult = snap.get("consult")
        held = bool(call and call.get("state") == "held")
        self.call_buttons["mute"].configure(text="Unmute (F7)" if snap.get("muted") else "Mute (F7)")
        self.call_buttons["hold"].configure(text="Resume" if held and not consult else "Hold")
        for key, ok in (("mute", bool(call)), ("hold", bool(call) and not consult),
                        ("keypad", bool(call) and not consult), ("transfer", bool(call) and not consult),
                        ("consult", bool(call) and not consult),
                        ("difficult", bool(call) or name == "wrap-up")):
            self._enable(self.call_buttons[key], ok)
        self._enable(self.b_hangup, bool(call))
        if call and snap.get("muted"):
            self.mute_banner.pack(fill="x", pady=2, before=self.b_hangup)
        else:
            self.mute_banner.pack_forget()
        if consult:
            target = consult.get("target") or {}
            who = ", ".join(f"{k} {v}" for k, v in target.items()) if isinstance(target, dict) else str(target)
            self.consult_label.configure(text=f"Consulting {who}: {consult.get('state')}")
            self._enable(self.b_consult_complete, consult.get("state") == "connected")
            self.consult_row.pack(fill="x", pady=2, before=self.b_hangup)
        else:
            self.consult_row.pack_forget()
        if name == "wrap-up":
            self.wrapup_row.pack(fill="x", pady=2, after=self.b_hangup)
        else:
            self.wrapup_row.pack_forget()
        self._render_history(snap.get("history") or [])
        idle = name in ("logged-out", "break") and connected and not call
        self._enable(self.b_echo, idle and "echo" not in self.running)
        self.tick()

    def _render_history(self, history: list[dict[str, Any]]) -> None:
        rows = self.history.get_children()
        if len(rows) == len(history):
            return
        self.history.delete(*rows)
        for rec in reversed(history):
            at = rec.get("answered_at") or rec.get("offered_at") or time.time()
            q = rec.get("quality") or {}
            result = rec.get("outcome") or ""
            if result == "answered" and rec.get("duration_s") is not None:
                result = fmt_duration(float(rec["duration_s"]))
            mos = f"{q['mos']:.1f}" if q.get("mos") is not None else ""
            if q.get("warnings"):
                mos += " ⚠"
            self.history.insert("", "end", values=(time.strftime("%H:%M", time.localtime(at)), rec.get("caller"),
                                                   rec.get("queue"), result, mos))

    def tick(self) -> None:
        """Clocks, countdowns, meters (every 200 ms)."""
        now = time.monotonic()
        self.state_time.configure(text=fmt_duration(now - self.state_t0))
        if self.call_id:
            self.call_timer.configure(text=fmt_duration(now - self.call_t0))
        if self.wrapup_end is not None:
            self.wrapup_label.configure(text=f"Wrap-up: {fmt_duration(self.wrapup_end - now)} left")
        elif self.state_key and self.state_key[0] == "wrap-up":
            self.wrapup_label.configure(text="Wrap-up")
        if self.popup is not None:
            self.popup.tick()
        levels = self.app.audio.fresh_levels()
        for mic, spk in (self.meters, self.audio_meters):
            mic.set(levels.get("input_dbfs", -120.0))
            spk.set(levels.get("output_dbfs", -120.0))
        q = (self.quality or {}).get("stats")
        if q and self.call_id:
            rtt = f"{q['rtt_ms']:.0f} ms" if q.get("rtt_ms") is not None else "-"
            self.quality_label.configure(text=f"Quality: RTT {rtt} · jitter {q['jitter_ms']:.1f} ms · "
                                              f"loss {q['loss_pct']:.1f} % · MOS {q['mos']:.1f}")
            warnings = (self.quality or {}).get("warnings") or []
            self.warn_label.configure(text="\n".join(f"⚠ {w['message']}" for w in warnings))
        elif not self.call_id:
            self.quality_label.configure(text="Quality: shown during a call")
            self.warn_label.configure(text="")
        if self._notice_until and now > self._notice_until:
            self._notice_until = 0.0
            self.message.configure(text="")

    def notice(self, text: str, *, error: bool = False, seconds: float = 12.0) -> None:
        self.message.configure(text=text, foreground="#C62828" if error else "#37474F")
        self._notice_until = time.monotonic() + seconds
        self.app.emit("notice", text=text, error=error)

    @staticmethod
    def _enable(widget: Any, on: bool) -> None:
        if isinstance(widget, ttk.Widget):
            widget.state(["!disabled"] if on else ["disabled"])
        else:
            widget.configure(state="normal" if on else "disabled")

    def _close_popup(self) -> None:
        if self.popup is not None:
            self.popup.destroy()
            self.popup = None

    # -- actions -----------------------------------------------------------------------------

    def act(self, name: str, *args: Any, label: str = "", coro: Any = None, ok_text: str = "",
            **kwargs: Any) -> None:
        """Run a session action on the asyncio thread; draw the snapshot it returns."""
        key = label or name
        if key in self.running:
            return
        self.running.add(key)

        def done(fut: Any) -> None:
            self.running.discard(key)
            exc = fut.exception()
            if exc is not None:
                msg = exc.message if isinstance(exc, SoftphoneError) else repr(exc)
                self.notice(f"{key.replace('_', ' ').capitalize()} failed: {msg}", error=True)
                self.app.emit("action-failed", action=key, message=msg)
                if self.popup is not None:
                    self.popup.busy(False)
                return
            self.app.emit("action", action=key)
            if ok_text:
                self.notice(ok_text)
            self.render(fut.result()[1])

        self.app.bridge.call(coro if coro is not None else self.app.backend.act(name, *args, **kwargs), done)

    def go_available(self) -> None:
        self.act("available", coro=self.app.backend.go_available())

    def go_break(self) -> None:
        label = self.break_var.get()
        reason = next((b["reason"] for b in self.snap.get("breaks") or [] if (b.get("label") or b["reason"]) == label),
                      None)
        if reason:
            self.act("break", coro=self.app.backend.choose_break(reason))

    def sign_out(self) -> None:
        self.app.sign_out()

    def answer(self) -> None:
        if self.snap.get("offer"):
            if self.popup is not None:
                self.popup.busy(True)
            self.act("answer")

    def reject(self) -> None:
        if self.snap.get("offer"):
            if self.popup is not None:
                self.popup.busy(True)
            self.act("reject")

    def hangup(self) -> None:
        if self.snap.get("call"):
            self.act("hangup")

    def toggle_mute(self) -> None:
        if self.snap.get("call"):
            self.act("mute", not self.snap.get("muted"))

    def toggle_hold(self) -> None:
        call = self.snap.get("call")
        if call:
            self.act("resume" if call.get("state") == "held" else "hold")

    def difficult(self) -> None:
        self.act("difficult", ok_text="Marked as a difficult call: a recovery break follows.")

    def open_keypad(self) -> None:
        Keypad(self.app.root, self.app.register, lambda d: self.act("dtmf", d, label=f"dtmf {d}"))

    def open_transfer(self, consult: bool) -> None:
        def go(kind: str, target: str) -> None:
            self.act("consult" if consult else "transfer", **{kind: target})

        TransferDialog(self.app.root, consult, list(self.snap.get("queues") or []), self.app.register, go)

    def key_answer(self) -> None:
        self.answer()

    def key_hangup(self) -> None:
        """F6: hang up, or reject a ringing call (Esc only hangs up: it is too easy to press)."""
        if self.snap.get("call"):
            self.hangup()
        elif self.snap.get("offer"):
            self.reject()

    def key_mute(self) -> None:
        self.toggle_mute()

    # -- audio -------------------------------------------------------------------------------

    def refresh_devices(self) -> None:
        port = self.app.audio.port
        status = self.app.audio.status() if hasattr(port, "status") else {}
        if not hasattr(port, "set_devices"):
            for role, var in self.device_vars.items():
                var.set("Test audio (files)" if self.app.audio_kind == "file" else "No audio system")
            self.device_status.configure(text=self.app.audio_summary())
            return
        try:
            devices = port.backend.devices()
        except SoftphoneError as exc:
            self.device_status.configure(text=f"Cannot list devices: {exc.message}", foreground="#C62828")
            return
        names = [d.name for d in devices]
        for role, var in self.device_vars.items():
            kind = "input" if role == "microphone" else "output"
            usable = [d for d in devices if (d.inputs if kind == "input" else d.outputs) > 0]
            choices = {"System default": DeviceChoice()}
            for d in usable:
                shown = d.name if names.count(d.name) == 1 else f"{d.name} [{d.hostapi}]"
                choices[shown] = DeviceChoice.of(d)
            self.devices[role] = choices
            self.device_boxes[role].configure(values=list(choices))
            chosen = self.app.config.device(role)
            var.set(next((k for k, v in choices.items() if v.name == chosen.name and
                          (chosen.hostapi in (None, v.hostapi))), chosen.name or "System default"))
        if not devices:
            self.device_status.configure(text="No audio devices found: connect a headset, then Refresh.",
                                         foreground="#C62828")
        else:
            fallback = " (chosen device missing: using the default)" if status.get("fallback") else ""
            self.device_status.configure(text=self.app.audio_summary() + fallback, foreground="#546E7A")

    def pick_device(self, role: str) -> None:
        choice = self.devices.get(role, {}).get(self.device_vars[role].get())
        if choice is None:
            return
        try:
            self.app.config.update(gui={role: choice.to_dict() if choice.name else None})
        except ConfigError as exc:
            self.notice(exc.message, error=True)
        port = self.app.audio.port
        if role == "microphone":
            port.set_devices(mic=choice)
        elif role == "speaker":
            port.set_devices(speaker=choice)
        else:
            port.set_devices(ringers=[choice])
        self.notice(f"{role.capitalize()}: {self.device_vars[role].get()}")

    def audio_event(self, event: Any) -> None:
        text = {"missing": "No microphone or speaker found: connect a headset.",
                "lost": f"Audio device lost ({event.detail}): reconnecting…",
                "fallback": "Your chosen audio device is missing: using the default device for now.",
                "ringer": f"Ringer: {event.detail}"}.get(event.kind)
        if text:
            self.notice(text, error=True, seconds=30)
        self.refresh_devices()

    def mic_test(self) -> None:
        if "mic" in self.running:
            return
        self.running.add("mic")
        self._enable(self.b_mictest, False)
        self.mic_result.configure(text="Listening… speak normally for 3 seconds.", foreground="#37474F")

        def done(fut: Any) -> None:
            self.running.discard("mic")
            if self.closing:
                return
            self._enable(self.b_mictest, True)
            exc = fut.exception()
            if exc is not None:
                self.mic_result.configure(text=f"Microphone test failed: {exc}", foreground="#C62828")
                return
            check = fut.result()
            text, color = MIC_VERDICTS.get(check.verdict, (check.verdict, "#37474F"))
            self.mic_result.configure(text=f"{text} (level {check.rms_dbfs:.0f} dBFS, peak {check.peak_dbfs:.0f})",
                                      foreground=color)
            self.app.emit("mic-test", verdict=check.verdict, rms_dbfs=round(check.rms_dbfs, 1))

        self.app.bridge.call(self.app.backend.mic_test(3.0), done)

    def echo_test(self) -> None:
        if "echo" in self.running:
            return
        self.running.add("echo")
        self._enable(self.b_echo, False)
        self.echo_result.configure(text=f"Running for {self.app.echo_seconds:.0f} s: you may hear yourself…",
                                   foreground="#37474F")

        def done(fut: Any) -> None:
            self.running.discard("echo")
            if self.closing:
                return
            self.render(self.snap)
            exc = fut.exception()
            if exc is not None:
                msg = exc.message if isinstance(exc, SoftphoneError) else repr(exc)
                self.echo_result.configure(text=f"Readiness check could not run: {msg}", foreground="#C62828")
                self.app.emit("echo-test", passed=None, error=msg)
                return
            r = fut.result()[0]
            figures = (f"RTT {r.get('rtt_ms')} ms, jitter {r.get('jitter_ms')} ms, loss {r.get('loss_pct')} %, "
                       f"MOS {r.get('mos')}")
            if r.get("passed"):
                self.echo_result.configure(text=f"✔ Passed: {figures}", foreground="#2E7D32")
            else:
                reasons = ", ".join(r.get("reasons") or []) or "see the figures"
                self.echo_result.configure(text=f"✘ Failed: {reasons}\n{figures}", foreground="#C62828")
            self.app.emit("echo-test", passed=bool(r.get("passed")), result=r)

        self.app.bridge.call(self.app.backend.act("echo_test", self.app.echo_seconds), done)


def _pending_text(pending: str, snap: dict[str, Any]) -> str:
    if not pending:
        return ""
    if pending == "logout":
        return "You will be logged out after this call."
    if pending == "recovery":
        return "A recovery break follows this call."
    if pending.startswith("break:"):
        reason = pending[6:]
        labels = {b.get("reason"): b.get("label") for b in snap.get("breaks") or []}
        return f"Break ({labels.get(reason) or reason}) after this call."
    return pending
