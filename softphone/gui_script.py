"""A test hook for the desktop softphone: ``softphone --script FILE`` (hidden option) runs a
list of UI steps through the real Tk widgets, on the Tk thread, and writes what it did and saw
as JSON lines next to it (``FILE.log.jsonl``, or ``"log"`` in the script).

The script is a JSON object ``{"log": PATH, "fb": XWD_FILE, "steps": [...]}``; ``fb`` is the
framebuffer file of ``Xvfb -fbdir DIR`` (``DIR/Xvfb_screen0``), from which ``screenshot``
steps write PNGs (standard library only: the XWD image is decoded with numpy, the PNG written
with zlib). Steps (``{"do": …}``):

- ``type`` ``target`` ``text``: replace an entry's text;
- ``click`` ``target``: ``invoke()`` a button (failing if it is disabled);
- ``key`` ``key`` (e.g. ``F7``, ``Control-m``), optional ``target``: ``event_generate`` on that
  widget (default: the main window), as the keyboard would;
- ``choose`` ``target`` ``value``: pick a combobox value (``<<ComboboxSelected>>``);
- ``tab`` ``index``: select a tab of the main window's notebook;
- ``wait`` (``timeout``, default 20 s) until one of: ``state`` (the agent's state name),
  ``view`` (login/main), ``target`` + ``text`` (its text contains it), ``gone`` (a widget no
  longer exists), ``event`` (an event the window emitted, ``count`` times);
- ``screenshot`` ``path``; ``sleep`` ``seconds``; ``signal`` ``name`` (a log line for the test);
  ``quit``.

A step that fails (or times out) is logged with ``"error"``, a screenshot ``failed.png`` is
taken beside the log, and the window quits with exit code 1. The last line is
``{"kind": "done", "ok": …}``.
"""

from __future__ import annotations

import json
import struct
import time
import tkinter as tk
import traceback
import zlib
from pathlib import Path
from tkinter import ttk
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from softphone.gui import App

__all__ = ["ScriptRunner", "xwd_to_png", "widget_text"]


def widget_text(w: tk.Misc) -> str:
    """The text a person sees on a label, button or entry."""
    if isinstance(w, (tk.Entry, ttk.Entry)):
        return w.get()
    if hasattr(w, "dbfs"):  # a level meter
        return f"{w.dbfs:.0f} dBFS"
    if isinstance(w, ttk.Treeview):
        return "\n".join(" | ".join(str(v) for v in w.item(i, "values")) for i in w.get_children())
    try:
        var = str(w.cget("textvariable"))
    except tk.TclError:
        var = ""
    if var:
        return str(w.getvar(var))
    try:
        return str(w.cget("text"))
    except tk.TclError:
        return ""


def _png(path: Path, rgb: np.ndarray) -> None:
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def xwd_to_png(src: Path, dst: Path, box: tuple[int, int, int, int] | None = None) -> tuple[int, int]:
    """Xvfb's framebuffer file (XWD, 24/32 bit TrueColor) → PNG, cropped to ``box`` (x0, y0, x1, y1)."""
    data = src.read_bytes()
    fields = struct.unpack(">25I", data[:100])
    header_size, version, fmt, depth, width, height = fields[:6]
    byte_order, bpp, bpl, ncolors = fields[7], fields[11], fields[12], fields[19]
    masks = fields[14:17]
    if version != 7 or fmt != 2 or bpp != 32:
        raise ValueError(f"unsupported XWD image (version {version}, format {fmt}, {bpp} bits per pixel)")
    start = header_size + 12 * ncolors
    pixels = np.frombuffer(data, np.uint8, count=height * bpl, offset=start).reshape(height, bpl)[:, :width * 4]
    words = pixels.copy().view("<u4" if byte_order == 0 else ">u4").reshape(height, width)
    channels = []
    for mask in masks:
        shift = (mask & -mask).bit_length() - 1
        channels.append(((words & mask) >> shift).astype(np.uint8))
    rgb = np.stack(channels, axis=-1)
    if box is not None:
        x0, y0, x1, y1 = box
        rgb = rgb[max(0, y0):min(height, y1), max(0, x0):min(width, x1)]
    _png(dst, np.ascontiguousarray(rgb))
    return rgb.shape[1], rgb.shape[0]


class ScriptRunner:
    def __init__(self, app: App, path: Path) -> None:
        self.app = app
        script = json.loads(path.read_text())
        self.steps: list[dict[str, Any]] = list(script.get("steps") or [])
        self.log_path = Path(script.get("log") or str(path) + ".log.jsonl")
        self.fb = Path(script["fb"]) if script.get("fb") else None
        self.t0 = time.monotonic()
        self.index = 0
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._log = self.log_path.open("w", encoding="utf-8")
        self._deadline = 0.0
        app.hooks.append(self.hook)

    def write(self, what: str, /, **data: Any) -> None:
        line = {"t": round(time.monotonic() - self.t0, 3), "wall": round(time.time(), 3), **data, "kind": what}
        self._log.write(json.dumps(line, default=str) + "\n")
        self._log.flush()

    def hook(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))
        self.write(kind, **data)

    def start(self) -> None:
        self.app.root.after(300, self._next)

    # -- stepping ----------------------------------------------------------------------------

    def _next(self) -> None:
        if self.index >= len(self.steps):
            self.write("done", ok=True)
            self.app.quit(0, force=True)
            return
        step = self.steps[self.index]
        try:
            self._deadline = time.monotonic() + float(step.get("timeout", 20))
            self.write("step", n=self.index, **{k: v for k, v in step.items() if k != "n"})
        except Exception as exc:  # noqa: BLE001
            self._fail(step, f"bad step: {exc}")
            return
        self._run(step)

    def _advance(self, delay_ms: int = 50) -> None:
        self.index += 1
        self.app.root.after(delay_ms, self._next)

    def _fail(self, step: dict[str, Any], message: str) -> None:
        self.write("error", n=self.index, step=step, error=message, texts=self.texts())
        if self.fb is not None:
            try:
                self.screenshot(self.log_path.with_name("failed.png"))
            except Exception as exc:  # noqa: BLE001
                self.write("error", error=f"no failure screenshot: {exc}")
        self.write("done", ok=False, error=message)
        self.app.quit(1, force=True)

    def _run(self, step: dict[str, Any]) -> None:
        try:
            do = step["do"]
            if do == "wait":
                self._wait(step)
                return
            if do == "sleep":
                self.app.root.after(int(float(step["seconds"]) * 1000), self._advance)
                return
            if do == "screenshot":
                self.app.root.update_idletasks()
                self.app.root.after(250, lambda: self._shot(step))
                return
            if do == "quit":
                self.write("done", ok=True)
                self.app.quit(0, force=True)
                return
            getattr(self, f"_do_{do}")(step)
        except Exception as exc:  # noqa: BLE001 - a broken step fails the script, not the window
            self._fail(step, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
            return
        self._advance()

    def widget(self, name: str) -> Any:
        w = self.app.widgets.get(name)
        if w is None or not w.winfo_exists():
            raise LookupError(f"no widget {name!r} on screen")
        return w

    def _do_type(self, step: dict[str, Any]) -> None:
        w = self.widget(step["target"])
        w.delete(0, "end")
        w.insert(0, step["text"])

    def _do_click(self, step: dict[str, Any]) -> None:
        w = self.widget(step["target"])
        disabled = w.instate(["disabled"]) if isinstance(w, ttk.Widget) else str(w.cget("state")) == "disabled"
        if disabled:
            raise RuntimeError(f"{step['target']} is disabled")
        w.invoke()

    def _do_key(self, step: dict[str, Any]) -> None:
        w = self.widget(step["target"]) if step.get("target") else self.app.root
        w.focus_force()
        w.event_generate(f"<{step['key']}>", when="tail")

    def _do_choose(self, step: dict[str, Any]) -> None:
        w = self.widget(step["target"])
        if step["value"] not in list(w.cget("values")):
            raise LookupError(f"{step['target']} has no choice {step['value']!r}: {list(w.cget('values'))}")
        w.set(step["value"])
        w.event_generate("<<ComboboxSelected>>")

    def _do_tab(self, step: dict[str, Any]) -> None:
        self.widget("main.tabs").select(int(step["index"]))

    def _do_signal(self, step: dict[str, Any]) -> None:
        self.write("signal", name=step["name"])

    def _wait(self, step: dict[str, Any]) -> None:
        try:
            ok = self._check(step)
        except Exception as exc:  # noqa: BLE001
            self._fail(step, f"{type(exc).__name__}: {exc}")
            return
        if ok:
            self._advance(0)
        elif time.monotonic() > self._deadline:
            self._fail(step, f"timed out waiting for {step}")
        else:
            self.app.root.after(50, lambda: self._wait(step))

    def _check(self, step: dict[str, Any]) -> bool:
        from softphone.gui import LoginView
        from softphone.gui_main import MainView

        view = self.app.view
        if "state" in step:
            return isinstance(view, MainView) and (view.snap.get("state") or {}).get("state") == step["state"]
        if "view" in step:
            return isinstance(view, {"login": LoginView, "main": MainView}[step["view"]])
        if "gone" in step:
            w = self.app.widgets.get(step["gone"])
            return w is None or not w.winfo_exists()
        if "event" in step:
            return sum(1 for kind, _ in self.events if kind == step["event"]) >= int(step.get("count", 1))
        if "target" in step:
            w = self.app.widgets.get(step["target"])
            return w is not None and w.winfo_exists() and step.get("text", "") in widget_text(w)
        raise ValueError(f"nothing to wait for in {step}")

    # -- looking -----------------------------------------------------------------------------

    def texts(self) -> dict[str, str]:
        out = {}
        for name, w in self.app.widgets.items():
            try:
                if w.winfo_exists():
                    out[name] = widget_text(w)
            except tk.TclError:
                continue
        return out

    def screenshot(self, path: Path) -> tuple[int, int]:
        if self.fb is None:
            raise RuntimeError("no framebuffer file given (script 'fb')")
        root = self.app.root
        tops = [root] + [w for w in root.winfo_children() if isinstance(w, tk.Toplevel) and w.winfo_viewable()]
        x0 = min(t.winfo_rootx() for t in tops)
        y0 = min(t.winfo_rooty() for t in tops)
        x1 = max(t.winfo_rootx() + t.winfo_width() for t in tops)
        y1 = max(t.winfo_rooty() + t.winfo_height() for t in tops)
        path.parent.mkdir(parents=True, exist_ok=True)
        return xwd_to_png(self.fb, path, (x0, y0, x1, y1))

    def _shot(self, step: dict[str, Any]) -> None:
        try:
            size = self.screenshot(Path(step["path"]))
        except Exception as exc:  # noqa: BLE001
            self._fail(step, f"screenshot failed: {exc}")
            return
        self.write("screenshot", path=step["path"], size=size, texts=self.texts())
        self._advance()
