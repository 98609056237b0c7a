"""Widgets and dialogs of the desktop softphone (Tk thread only): the level meter, the
incoming-call popup, the "Trust this server?" dialog, the keypad and the transfer dialog.

Every widget a person (or the test script, softphone/gui_script.py) acts on is registered by
name with ``register(name, widget)``."""

from __future__ import annotations

import time
import tkinter as tk
from collections.abc import Callable
from tkinter import ttk
from typing import Any

__all__ = ["COLORS", "STATE_LABELS", "LevelMeter", "IncomingCall", "TrustDialog", "Keypad", "TransferDialog",
           "fmt_duration", "Register"]

Register = Callable[[str, tk.Misc], None]

COLORS = {"available": "#2E7D32", "reserved": "#E68A00", "on-call": "#C62828", "wrap-up": "#6A1B9A",
          "break": "#8D5524", "logged-out": "#616161", "offline": "#37474F"}
STATE_LABELS = {"available": "Available", "reserved": "Ringing", "on-call": "On call", "wrap-up": "Wrap-up",
                "break": "Break", "logged-out": "Logged out", "offline": "Not connected"}


def fmt_duration(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class LevelMeter(tk.Canvas):
    """A horizontal bar from -60 to 0 dBFS: green, amber above -12, red above -3."""

    FLOOR = -60.0

    def __init__(self, master: tk.Misc, width: int = 150, height: int = 12, **kw: Any) -> None:
        super().__init__(master, width=width, height=height, highlightthickness=1, highlightbackground="#9E9E9E",
                         background="#ECEFF1", **kw)
        self._width, self._height = width, height
        self._bar = self.create_rectangle(0, 0, 0, height, width=0, fill="#43A047")
        self.dbfs = -120.0

    def set(self, dbfs: float) -> None:
        self.dbfs = dbfs
        frac = min(1.0, max(0.0, (dbfs - self.FLOOR) / -self.FLOOR))
        color = "#E53935" if dbfs > -3 else "#FDD835" if dbfs > -12 else "#43A047"
        self.coords(self._bar, 0, 0, round(frac * self._width), self._height + 1)
        self.itemconfigure(self._bar, fill=color)


class _Dialog(tk.Toplevel):
    def __init__(self, master: tk.Misc, title: str, name: str) -> None:
        super().__init__(master, name=name, borderwidth=1, relief="solid")  # a frame even without decorations
        self.title(title)
        self.transient(master.winfo_toplevel())
        self.resizable(False, False)
        self.configure(background="#FAFAFA")
        self.bind("<Escape>", lambda e: self.destroy())

    def place_over(self, master: tk.Misc, dy: int = 80) -> None:
        top = master.winfo_toplevel()
        self.update_idletasks()
        x = top.winfo_rootx() + max(0, (top.winfo_width() - self.winfo_reqwidth()) // 2)
        self.geometry(f"+{x}+{top.winfo_rooty() + dy}")


class IncomingCall(_Dialog):
    """The ringing call: caller, queue, IVR path, wait, a countdown; Answer and Reject."""

    def __init__(self, master: tk.Misc, offer: dict[str, Any], register: Register,
                 on_answer: Callable[[], None], on_reject: Callable[[], None]) -> None:
        super().__init__(master, "Incoming call", "incoming")
        self.offer = offer
        self.attributes("-topmost", True)
        self.unbind("<Escape>")
        bar = tk.Frame(self, background=COLORS["reserved"])
        bar.pack(fill="x")
        tk.Label(bar, text="Incoming call", font=("DejaVu Sans", 12, "bold"), foreground="white",
                 background=COLORS["reserved"], padx=12, pady=6).pack(side="left")
        self.countdown = tk.Label(bar, text="", font=("DejaVu Sans", 11), foreground="white",
                                  background=COLORS["reserved"], padx=12)
        self.countdown.pack(side="right")
        body = tk.Frame(self, background="#FAFAFA", padx=16, pady=10)
        body.pack(fill="both")
        self.caller = tk.Label(body, text=offer.get("caller") or "Unknown caller", font=("DejaVu Sans", 18, "bold"),
                               background="#FAFAFA", anchor="w")
        self.caller.pack(fill="x")
        register("popup.caller", self.caller)
        details = [("Queue", offer.get("queue") or "-"),
                   ("IVR", " › ".join(offer.get("ivr_path") or []) or "-")]
        if offer.get("waited_s") is not None:
            details.append(("Waited", fmt_duration(float(offer["waited_s"]))))
        for label, value in details:
            row = tk.Frame(body, background="#FAFAFA")
            row.pack(fill="x")
            tk.Label(row, text=f"{label}:", width=7, anchor="w", background="#FAFAFA",
                     foreground="#616161").pack(side="left")
            widget = tk.Label(row, text=value, anchor="w", background="#FAFAFA", font=("DejaVu Sans", 11))
            widget.pack(side="left", fill="x")
            register(f"popup.{label.lower()}", widget)
        buttons = tk.Frame(self, background="#FAFAFA", padx=16, pady=10)
        buttons.pack(fill="x")
        self.answer = tk.Button(buttons, text="Answer  (F5)", command=on_answer, background="#2E7D32",
                                foreground="white", activebackground="#1B5E20", activeforeground="white",
                                font=("DejaVu Sans", 12, "bold"), width=11, relief="flat", pady=6)
        self.answer.pack(side="left")
        self.reject = tk.Button(buttons, text="Reject  (F6)", command=on_reject, background="#C62828",
                                foreground="white", activebackground="#8E0000", activeforeground="white",
                                font=("DejaVu Sans", 12), width=9, relief="flat", pady=6)
        self.reject.pack(side="right")
        register("popup.answer", self.answer)
        register("popup.reject", self.reject)
        register("popup.countdown", self.countdown)
        for seq in ("<F5>", "<Control-Return>", "<Control-KP_Enter>"):
            self.bind(seq, lambda e: on_answer())
        self.bind("<F6>", lambda e: on_reject())
        self.protocol("WM_DELETE_WINDOW", lambda: None)  # answer or reject; closing is not an answer
        self.place_over(master, 110)
        self.tick()

    def tick(self) -> None:
        timeout = self.offer.get("ring_timeout_s")
        if timeout:
            left = float(timeout) - (time.time() - float(self.offer.get("offered_at") or time.time()))
            self.countdown.configure(text=f"rings {max(0, round(left))} s")

    def busy(self, on: bool) -> None:
        for b in (self.answer, self.reject):
            b.configure(state="disabled" if on else "normal")


class TrustDialog(_Dialog):
    """"Trust this server?" for a certificate that is not trusted (or changed)."""

    def __init__(self, master: tk.Misc, error: Any, register: Register, on_trust: Callable[[], None]) -> None:
        super().__init__(master, "Trust this server?", "trust")
        changed = hasattr(error, "pinned")
        frame = tk.Frame(self, background="#FAFAFA", padx=16, pady=12)
        frame.pack(fill="both")
        title = "The server's certificate has CHANGED" if changed else "Trust this server?"
        tk.Label(frame, text=title, font=("DejaVu Sans", 13, "bold"), background="#FAFAFA",
                 foreground="#B71C1C" if changed else "#212121").pack(anchor="w")
        kind = "a self-signed certificate" if getattr(error, "self_signed", False) else "a certificate"
        if changed:
            text = (f"{error.url} now presents a certificate that matches none you trusted before. "
                    "This happens when the administrator replaced it, or when someone is intercepting "
                    "the connection. Only continue if your administrator confirms the new fingerprint:")
        else:
            text = (f"{error.url} presents {kind} that this computer does not know. "
                    "Compare its fingerprint with the one your administrator gave you:")
        tk.Label(frame, text=text, wraplength=330, justify="left", background="#FAFAFA").pack(anchor="w", pady=(6, 6))
        parts = error.fingerprint.split(":")
        shown = "\n".join(":".join(parts[i:i + 8]) for i in range(0, len(parts), 8))  # 8 bytes a line
        fp_label = tk.Label(frame, text=shown, font=("DejaVu Sans Mono", 11, "bold"), background="#ECEFF1",
                            justify="left", padx=8, pady=6)
        fp_label.pack(anchor="w", fill="x")
        register("trust.fingerprint", fp_label)
        tk.Label(frame, text="SHA-256 fingerprint. Trusting it saves it in your settings.", background="#FAFAFA",
                 foreground="#616161", wraplength=330, justify="left").pack(anchor="w", pady=(4, 8))
        row = tk.Frame(frame, background="#FAFAFA")
        row.pack(fill="x")
        ok = ttk.Button(row, text="Trust the new certificate" if changed else "Trust and connect",
                        command=lambda: (self.destroy(), on_trust()))
        cancel = ttk.Button(row, text="Cancel", command=self.destroy)
        cancel.pack(side="right")
        ok.pack(side="right", padx=(0, 8))
        register("trust.ok", ok)
        register("trust.cancel", cancel)
        self.place_over(master, 60)
        cancel.focus_set()


class Keypad(_Dialog):
    """DTMF digits, sent as they are pressed (buttons or the keyboard)."""

    def __init__(self, master: tk.Misc, register: Register, send: Callable[[str], None]) -> None:
        super().__init__(master, "Keypad", "keypad")
        self.sent = tk.StringVar(value="")
        frame = tk.Frame(self, background="#FAFAFA", padx=12, pady=10)
        frame.pack()
        shown = tk.Label(frame, textvariable=self.sent, font=("DejaVu Sans Mono", 14), width=14, anchor="e",
                         background="#ECEFF1", relief="sunken")
        shown.grid(row=0, column=0, columnspan=3, pady=(0, 8), sticky="ew")
        register("keypad.sent", shown)

        def press(d: str) -> None:
            self.sent.set((self.sent.get() + d)[-14:])
            send(d)

        for i, d in enumerate("123456789*0#"):
            b = tk.Button(frame, text=d, width=4, font=("DejaVu Sans", 14), relief="groove",
                          command=lambda d=d: press(d))
            b.grid(row=1 + i // 3, column=i % 3, padx=3, pady=3)
            register(f"keypad.{ {'*': 'star', '#': 'hash'}.get(d, d)}", b)
            keysym = {"*": "asterisk", "#": "numbersign"}.get(d, d)
            self.bind(f"<KeyPress-{keysym}>", lambda e, d=d: press(d))
        close = ttk.Button(frame, text="Close", command=self.destroy)
        close.grid(row=5, column=0, columnspan=3, pady=(8, 0))
        register("keypad.close", close)
        self.place_over(master, 200)
        self.focus_set()


class TransferDialog(_Dialog):
    """Where to: a queue, an agent or a number; ``go(kind, target)`` with kind queue/agent/number."""

    def __init__(self, master: tk.Misc, consult: bool, queues: list[str], register: Register,
                 go: Callable[[str, str], None]) -> None:
        super().__init__(master, "Consult" if consult else "Transfer", "transfer")
        frame = tk.Frame(self, background="#FAFAFA", padx=16, pady=12)
        frame.pack(fill="both")
        what = ("Consult first: the caller hears music while you talk to the target; then complete "
                "or cancel." if consult else "Blind transfer: the caller goes to the target at once and "
                "your part of the call ends.")
        tk.Label(frame, text=what, wraplength=330, justify="left", background="#FAFAFA").pack(anchor="w")
        self.kind = tk.StringVar(value="queue")
        self.target = tk.StringVar(value=queues[0] if queues else "")
        row = tk.Frame(frame, background="#FAFAFA")
        row.pack(fill="x", pady=8)
        for value, label in (("queue", "Queue"), ("agent", "Agent"), ("number", "Number")):
            rb = ttk.Radiobutton(row, text=label, value=value, variable=self.kind)
            rb.pack(side="left", padx=(0, 10))
            register(f"transfer.kind_{value}", rb)
        entry = ttk.Combobox(frame, textvariable=self.target, values=queues, width=30)
        entry.pack(fill="x")

        def kind_changed(*_: Any) -> None:  # queue names are offered for queues only
            is_queue = self.kind.get() == "queue"
            entry.configure(values=queues if is_queue else [])
            if not is_queue and self.target.get() in queues:
                self.target.set("")

        self.kind.trace_add("write", kind_changed)
        register("transfer.target", entry)
        buttons = tk.Frame(frame, background="#FAFAFA")
        buttons.pack(fill="x", pady=(12, 0))

        def submit() -> None:
            target = self.target.get().strip()
            if target:
                self.destroy()
                go(self.kind.get(), target)

        ok = ttk.Button(buttons, text="Call target" if consult else "Transfer now", command=submit)
        cancel = ttk.Button(buttons, text="Cancel", command=self.destroy)
        cancel.pack(side="right")
        ok.pack(side="right", padx=(0, 8))
        register("transfer.ok", ok)
        register("transfer.cancel", cancel)
        self.bind("<Return>", lambda e: submit())
        self.place_over(master, 200)
        entry.focus_set()
