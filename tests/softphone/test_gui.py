"""The desktop softphone's window (softphone/gui.py) on a virtual X display, against the real
server and a pjsua2 caller.

Each test starts Xvfb (Debian ``xvfb``) with ``-fbdir`` so its framebuffer is a file, and runs
``softphone`` (no mode: the window) as a subprocess with ``--audio file`` (the microphone plays a
tone or a WAV, what is heard is recorded) and the hidden ``--script`` hook: a list of steps done
through the real Tk widgets (``invoke()``, ``event_generate`` for shortcuts), with screenshots
taken from the framebuffer. The window writes a JSON-lines log of its steps and events; the
test follows it (to start the caller when the agent is available) and checks it, the
recordings (by frequency) and the configuration file afterwards. Screenshots stay in the test's
tmp directory (``screens/``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from acd.store.passwords import hash_password
from acd.tlscert import fingerprint
from tests.audio import read_wav, tone_fraction, write_tone_wav
from tests.harness import PEER, ROOT, RunningServer, free_port

pytestmark = pytest.mark.interop

ACD = f"""
[acd]
connection_grace_s = 8

[acd.breaks.lunch]
label = "Lunch"

[queues.support]
ring_timeout_s = 20
wrapup_s = 60

[agents.alice]
queues = {{support = 5}}
password_hash = "{hash_password('alice-pw')}"
"""
CALLER_HZ, AGENT_HZ = 600.0, 1000.0


@pytest.fixture
def xvfb(tmp_path: Path):
    """A private X server; yields (DISPLAY, framebuffer file)."""
    exe = shutil.which("Xvfb")
    assert exe, "Xvfb missing: make test installs Debian xvfb"
    fbdir = tmp_path / "fb"
    fbdir.mkdir()
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([exe, "-displayfd", str(write_fd), "-screen", "0", "1024x768x24", "-fbdir", str(fbdir),
                             "-nolisten", "tcp", "-noreset"], pass_fds=(write_fd,),
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "xvfb.log").open("w"))
    os.close(write_fd)
    number = b""
    deadline = time.monotonic() + 15
    with os.fdopen(read_fd, "rb") as r:
        while not number.endswith(b"\n") and time.monotonic() < deadline:
            chunk = r.read(1)
            if not chunk:
                break
            number += chunk
    assert number.strip(), f"Xvfb did not start: {(tmp_path / 'xvfb.log').read_text()}"
    yield f":{number.decode().strip()}", fbdir / "Xvfb_screen0"
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def cert(srv: RunningServer) -> Path:
    return srv.data_dir / "tls" / "selfsigned.crt"


class Gui:
    """``softphone`` (the window) as a subprocess running a step script."""

    def __init__(self, tmp: Path, display: tuple[str, Path], steps: list[dict], *args: str, name: str = "gui",
                 config: Path | None = None, audio: str = "file") -> None:
        self.log_path = tmp / f"{name}.log.jsonl"
        script = tmp / f"{name}.script.json"
        script.write_text(json.dumps({"log": str(self.log_path), "fb": str(display[1]), "steps": steps}))
        self.err_path = tmp / f"{name}.err"
        self.config = config or tmp / "cfg" / "homeline" / "softphone.toml"
        env = dict(os.environ, DISPLAY=display[0], XDG_CONFIG_HOME=str(tmp / "cfg"),
                   XDG_STATE_HOME=str(tmp / "state"), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "softphone.cli", "--audio", audio, "--config",
                                      str(self.config), "--script", str(script), *args],
                                     cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self.err_path.open("w"))

    def lines(self) -> list[dict]:
        if not self.log_path.exists():
            return []
        return [json.loads(ln) for ln in self.log_path.read_text().splitlines() if ln.strip()]

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")[-4000:]

    def wait_signal(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            if any(ln["kind"] == "signal" and ln["name"] == name for ln in lines):
                return
            failed = [ln for ln in lines if ln["kind"] == "error"]
            assert not failed and self.proc.poll() is None, f"the window failed: {failed}\n{self.stderr()}"
            assert time.monotonic() < deadline, f"no {name!r} from the window:\n{lines[-5:]}\n{self.stderr()}"
            time.sleep(0.05)

    def finish(self, timeout: float) -> list[dict]:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail(f"the window did not finish its script:\n{self.lines()[-5:]}\n{self.stderr()}")
        lines = self.lines()
        errors = [ln for ln in lines if ln["kind"] == "error"]
        assert code == 0 and not errors and lines[-1]["kind"] in ("done", "quit"), \
            f"exit {code}: {errors or lines[-5:]}\n{self.stderr()}"
        assert any(ln["kind"] == "done" and ln["ok"] for ln in lines)
        return lines

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def guis():
    started: list[Gui] = []
    yield started
    for g in started:
        g.kill()


def start_caller(srv: RunningServer, tmp: Path, seconds: float) -> subprocess.Popen:
    tone = tmp / "caller.tone.wav"
    write_tone_wav(str(tone), CALLER_HZ, seconds + 2, rate=8000)
    return subprocess.Popen(
        [sys.executable, str(PEER), "call", "--uri", srv.uri("support"), "--codec", "PCMU", "--clock-rate", "8000",
         "--play", str(tone), "--record", str(tmp / "caller.wav"), "--duration", str(seconds),
         "--local-port", str(free_port()), "--timeout", str(seconds + 25)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def caller_result(proc: subprocess.Popen, timeout: float = 30) -> dict:
    out, _ = proc.communicate(timeout=timeout)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert lines, out
    return json.loads(lines[-1])


def tone_blocks(path: Path, freq: float, block_s: float = 0.5) -> tuple[list[bool], list[float]]:
    """Per block: whether ``freq`` is there, and the block's RMS in dBFS."""
    audio, rate = read_wav(str(path))
    n = int(rate * block_s)
    present, levels = [], []
    for i in range(0, len(audio) - n + 1, n):
        block = audio[i:i + n]
        present.append(tone_fraction(block, rate, freq, block_s=0.25) >= 0.5)
        levels.append(20 * np.log10(float(np.sqrt(np.mean(block.astype(np.float64) ** 2))) + 1e-9))
    return present, levels


def screens(tmp: Path, name: str) -> dict:
    return {"do": "screenshot", "path": str(tmp / "screens" / f"{name}.png")}


def wrapup_history_logout(tmp: Path, shot: str) -> list[dict]:
    """Steps: wrap-up Done, back to available, the History tab (screenshot), log out."""
    return [{"do": "click", "target": "main.wrapup_done"},
            {"do": "wait", "state": "available"},
            {"do": "tab", "index": 1},
            {"do": "wait", "target": "main.history", "text": "support"},
            screens(tmp, shot),
            {"do": "click", "target": "main.logout"},
            {"do": "wait", "view": "login"}]


def test_gui_takes_a_call_end_to_end(server_factory, tmp_path: Path, xvfb, guis) -> None:
    """Log in, go available, the popup shows the caller, answer, audio both ways, mute with F7 (the
    caller hears silence), unmute, DTMF from the keypad, hold and resume, hang up with Esc, wrap-up
    Done, the call in the history, log out."""
    srv = server_factory(acd=ACD)
    config = tmp_path / "cfg" / "homeline" / "softphone.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'server = "{srv.web_url}"\nuser = "alice"\ntrust_fingerprint = ["{fingerprint(cert(srv))}"]\n'
                      'queues = ["support"]\n')
    heard = tmp_path / "heard.wav"
    steps = [
        {"do": "wait", "view": "login"},
        {"do": "wait", "target": "login.server", "text": srv.web_url},  # from the configuration file
        {"do": "wait", "target": "login.user", "text": "alice"},
        {"do": "type", "target": "login.password", "text": "alice-pw"},
        {"do": "click", "target": "login.submit"},
        {"do": "wait", "state": "logged-out"},
        screens(tmp_path, "1-logged-in"),
        {"do": "click", "target": "main.available"},
        {"do": "wait", "state": "available"},
        {"do": "wait", "target": "main.state", "text": "Available"},
        {"do": "signal", "name": "available"},
        {"do": "wait", "target": "popup.caller", "timeout": 30},
        {"do": "wait", "state": "reserved"},
        {"do": "sleep", "seconds": 1},
        screens(tmp_path, "2-incoming"),
        {"do": "click", "target": "popup.answer"},
        {"do": "wait", "state": "on-call"},
        {"do": "wait", "gone": "popup.answer"},
        {"do": "sleep", "seconds": 4},
        {"do": "key", "key": "F7"},  # the mute shortcut
        {"do": "wait", "target": "main.mute", "text": "Unmute"},
        {"do": "signal", "name": "muted"},
        {"do": "sleep", "seconds": 3},
        screens(tmp_path, "3-muted"),
        {"do": "click", "target": "main.mute"},
        {"do": "wait", "target": "main.mute", "text": "Mute (F7)"},
        {"do": "signal", "name": "unmuted"},
        {"do": "wait", "target": "main.quality", "text": "MOS"},
        {"do": "sleep", "seconds": 2},
        {"do": "click", "target": "main.keypad"},
        {"do": "click", "target": "keypad.4"},
        {"do": "click", "target": "keypad.2"},
        {"do": "wait", "target": "keypad.sent", "text": "42"},
        {"do": "wait", "event": "action", "count": 5},  # available, answer, mute twice, the first digit
        {"do": "click", "target": "keypad.close"},
        {"do": "click", "target": "main.hold"},
        {"do": "wait", "target": "main.hold", "text": "Resume"},
        {"do": "wait", "target": "main.call_info", "text": "ON HOLD"},
        {"do": "click", "target": "main.hold"},
        {"do": "wait", "target": "main.hold", "text": "Hold"},
        {"do": "sleep", "seconds": 2.5},
        screens(tmp_path, "4-in-call"),
        {"do": "key", "key": "Escape"},  # the hang-up shortcut
        {"do": "wait", "state": "wrap-up"},
        {"do": "wait", "target": "main.wrapup", "text": "left"},
        screens(tmp_path, "5-wrap-up"),
        *wrapup_history_logout(tmp_path, "6-history"),
    ]
    gui = Gui(tmp_path, xvfb, steps, "--tone", str(AGENT_HZ), "--record", str(heard), config=config)
    guis.append(gui)
    gui.wait_signal("available", 30)
    caller = start_caller(srv, tmp_path, 40)  # the agent hangs up first
    lines = gui.finish(70)
    result = caller_result(caller)
    assert result["answered"] and result["hangup_by"] == "remote", result
    assert "42" in result["dtmf_received"], result  # the keypad

    (popup,) = [ln for ln in lines if ln["kind"] == "popup"]
    assert popup["caller"] and popup["queue"] == "support" and popup["ringing"], popup
    events = [ln for ln in lines if ln["kind"] == "event"]
    assert [e["type"] for e in events].count("call-started") == 1
    assert any(e["type"] == "quality" for e in events)
    shots = [ln for ln in lines if ln["kind"] == "screenshot"]
    assert len(shots) == 6 and all((tmp_path / "screens" / Path(s["path"]).name).stat().st_size > 5000 for s in shots)
    in_call = next(s for s in shots if s["path"].endswith("4-in-call.png"))["texts"]
    assert in_call["main.state"] == "On call" and in_call["main.caller"] == popup["caller"], in_call
    assert re.fullmatch(r"0:1\d", in_call["main.call_timer"]), in_call  # ~12 s into the call
    assert "Queue support" in in_call["main.call_info"]
    assert "RTT" in in_call["main.quality"] and "MOS" in in_call["main.quality"]
    history = next(s for s in shots if s["path"].endswith("6-history.png"))["texts"]["main.history"]
    assert history.count("\n") == 0 and "support" in history, history  # one answered call

    # audio both ways: the window heard the caller's 600 Hz, the caller heard the window's 1000 Hz ...
    heard_tone, _ = tone_blocks(heard, CALLER_HZ)
    assert sum(heard_tone) * 0.5 >= 9, f"the window heard {sum(heard_tone) * 0.5} s of the caller"
    present, levels = tone_blocks(tmp_path / "caller.wav", AGENT_HZ)
    assert sum(present) * 0.5 >= 6, f"the caller heard {sum(present) * 0.5} s of the agent"
    # ... except while muted (3 s): a silent stretch with the tone before and after it
    start = present.index(True)
    end = len(present) - present[::-1].index(True)
    gaps, run = [], []
    for i in range(start, end):
        if present[i]:
            if run:
                gaps.append(run)
            run = []
        else:
            run.append(i)
    assert gaps, f"no silence while muted: {present}"
    gap = max(gaps, key=len)
    assert 2.0 <= len(gap) * 0.5 <= 5.0, (len(gap), present)
    assert max(levels[i] for i in gap[1:-1] or gap) < -40, [round(levels[i]) for i in gap]
    assert sum(present[start:gap[0]]) >= 5 and sum(present[gap[-1]:end]) >= 5  # ~4 s before, ~6 s after

    saved = tomllib.loads(config.read_text())
    assert saved["server"] == srv.web_url and saved["user"] == "alice" and saved["queues"] == ["support"]
    log = srv.wait_log(r"CDR CallRecord\(")
    assert "agent='alice'" in log and "outcome='answered'" in log
    srv.wait_log(r"agent alice logged out")


def test_gui_login_problems_trust_and_checks(server_factory, tmp_path: Path, xvfb, guis) -> None:
    """Unreachable server, an unknown certificate ("Trust this server?", the fingerprint saved),
    a wrong password, then the microphone test, the readiness check and a break; a second start
    remembers the server and the agent."""
    srv = server_factory(acd=ACD)
    speech = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "Hello, this is the microphone test of the softphone. "
                    "One two three four five."], check=True, timeout=30)
    dead = f"https://127.0.0.1:{free_port()}"
    fp = fingerprint(cert(srv))
    steps = [
        {"do": "wait", "view": "login"},
        {"do": "wait", "target": "login.keyring_note", "text": "keyring"},
        {"do": "type", "target": "login.server", "text": dead},
        {"do": "type", "target": "login.user", "text": "alice"},
        {"do": "type", "target": "login.password", "text": "wrong-pw"},
        {"do": "click", "target": "login.submit"},
        {"do": "wait", "target": "login.message", "text": "Cannot reach the server"},
        {"do": "type", "target": "login.server", "text": srv.web_url},
        {"do": "click", "target": "login.submit"},
        {"do": "wait", "target": "trust.fingerprint", "text": fp[:20]},
        screens(tmp_path, "1-trust"),
        {"do": "click", "target": "trust.ok"},
        {"do": "wait", "target": "login.message", "text": "Wrong agent name or password"},
        screens(tmp_path, "2-wrong-password"),
        {"do": "type", "target": "login.password", "text": "alice-pw"},
        {"do": "click", "target": "login.submit"},
        {"do": "wait", "state": "logged-out"},
        {"do": "tab", "index": 2},
        {"do": "click", "target": "main.mic_test"},
        {"do": "wait", "event": "mic-test", "timeout": 15},
        {"do": "click", "target": "main.echo_test"},
        {"do": "wait", "event": "echo-test", "timeout": 20},
        {"do": "wait", "target": "main.echo_result", "text": "Passed"},
        screens(tmp_path, "3-audio-checks"),
        {"do": "choose", "target": "main.break_reason", "value": "Lunch"},
        {"do": "click", "target": "main.break"},
        {"do": "wait", "state": "break"},
        {"do": "wait", "target": "main.state", "text": "Break: Lunch"},
        screens(tmp_path, "4-break"),
        {"do": "click", "target": "main.logout"},
        {"do": "wait", "view": "login"},
    ]
    gui = Gui(tmp_path, xvfb, steps, "--play", str(speech), "--duration", "3")
    guis.append(gui)
    lines = gui.finish(75)
    failures = [(ln["kind"], ln.get("message")) for ln in lines if ln["kind"] in ("login-failed", "dialog")]
    assert [k for k, _ in failures] == ["login-failed", "login-failed", "dialog", "login-failed"], failures
    (mic,) = [ln for ln in lines if ln["kind"] == "mic-test"]
    assert mic["verdict"] == "ok", mic  # the speech WAV played as the microphone
    (echo,) = [ln for ln in lines if ln["kind"] == "echo-test"]
    assert echo["passed"] and echo["result"]["mos"] > 4, echo
    saved = tomllib.loads(gui.config.read_text())
    assert saved["trust_fingerprint"] == [fp] and saved["server"] == srv.web_url and saved["user"] == "alice"
    assert saved["gui"]["remember_password"] is False
    assert gui.config.stat().st_mode & 0o077 == 0
    srv.wait_log(r"agent alice logged out")

    again = Gui(tmp_path, xvfb, [{"do": "wait", "target": "login.server", "text": srv.web_url},
                                 {"do": "wait", "target": "login.user", "text": "alice"},
                                 screens(tmp_path, "5-remembered")], name="again")
    guis.append(again)
    again.finish(20)


def test_gui_audio_devices_by_name(server_factory, tmp_path: Path, xvfb, guis) -> None:
    """Device pickers on (fake) devices: choices by name, remembered in the configuration file and
    opened again by name at the next start; the level meter moves; no devices at all is said."""
    srv = server_factory(acd=ACD)
    config = tmp_path / "cfg" / "homeline" / "softphone.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'server = "{srv.web_url}"\nuser = "alice"\ntrust_fingerprint = ["{fingerprint(cert(srv))}"]\n')
    steps = [
        {"do": "wait", "target": "login.audio", "text": "microphone Laptop Microphone, speaker Laptop Speakers"},
        {"do": "type", "target": "login.password", "text": "alice-pw"},
        {"do": "click", "target": "login.submit"},
        {"do": "wait", "state": "logged-out"},
        {"do": "tab", "index": 2},
        {"do": "wait", "target": "main.device_microphone", "text": "System default"},
        {"do": "choose", "target": "main.device_microphone", "value": "USB Headset"},
        {"do": "choose", "target": "main.device_speaker", "value": "USB Headset"},
        {"do": "choose", "target": "main.device_ringer", "value": "Desk Ringer"},
        {"do": "wait", "target": "main.device_status", "text": "microphone USB Headset, speaker USB Headset"},
        {"do": "wait", "target": "main.mic_level", "text": "-1"},  # the fake headset's tone: about -17 dBFS
        screens(tmp_path, "1-devices"),
        {"do": "click", "target": "main.logout"},
        {"do": "wait", "view": "login"},
    ]
    gui = Gui(tmp_path, xvfb, steps, config=config, audio="fake")
    guis.append(gui)
    lines = gui.finish(40)
    shot = next(ln for ln in lines if ln["kind"] == "screenshot")["texts"]
    assert shot["main.device_ringer"] == "Desk Ringer" and shot["main.device_microphone"] == "USB Headset"
    saved = tomllib.loads(config.read_text())["gui"]
    assert saved["microphone"] == saved["speaker"] == {"name": "USB Headset", "hostapi": "ALSA"}
    assert saved["ringer"] == {"name": "Desk Ringer", "hostapi": "ALSA"}
    restarted = [ln for ln in lines if ln["kind"] == "audio" and ln["detail"].startswith("devices changed")]
    assert any("USB Headset" in ln["detail"] for ln in restarted), restarted

    again = Gui(tmp_path, xvfb, [
        {"do": "wait", "target": "login.audio", "text": "microphone USB Headset, speaker USB Headset"}],
        name="again", config=config, audio="fake")
    guis.append(again)
    again.finish(20)

    none = Gui(tmp_path, xvfb, [{"do": "wait", "target": "login.audio", "text": "connect a headset"},
                                screens(tmp_path, "2-no-devices")], name="none", config=config,
               audio="fake-none")
    guis.append(none)
    none.finish(20)


def test_settings_keyring_and_screenshots_without_a_window(tmp_path: Path, monkeypatch) -> None:
    """The window's helpers: the configuration file keeps what it does not know and stays private;
    the password goes to a keyring only when one works; Xvfb's XWD framebuffer becomes a PNG."""
    import types
    import zlib

    from softphone.gui_core import GuiConfig, Keyring
    from softphone.gui_script import xwd_to_png

    path = tmp_path / "softphone.toml"
    path.write_text('server = "https://a:8443"\npassword_file = "pw"\nqueues = ["support"]\n')
    cfg = GuiConfig(path)
    cfg.update(user='al"ice', secondary=None, gui={"microphone": {"name": "USB Headset", "hostapi": None},
                                                   "remember_password": True})
    cfg.update(gui={"speaker": {"name": "Speakers", "hostapi": "ALSA"}, "microphone": None})
    again = tomllib.loads(path.read_text())
    assert again == {"server": "https://a:8443", "password_file": "pw", "queues": ["support"], "user": 'al"ice',
                     "gui": {"remember_password": True, "speaker": {"name": "Speakers", "hostapi": "ALSA"}}}
    assert path.stat().st_mode & 0o777 == 0o600
    assert GuiConfig(path).device("speaker").name == "Speakers" and GuiConfig(path).device("ringer").name is None
    from softphone.cli import _settings, build_parser  # the headless mode accepts the window's settings
    assert _settings(build_parser().parse_args(["--config", str(path)]))["user"] == 'al"ice'

    monkeypatch.setitem(sys.modules, "keyring", None)  # not installed
    assert not Keyring().available and "not installed" in Keyring().why

    class Store:
        priority = 5

        def __init__(self) -> None:
            self.saved: dict = {}

        def get_password(self, service, account):
            return self.saved.get((service, account))

        def set_password(self, service, account, password):
            self.saved[(service, account)] = password

        def delete_password(self, service, account):
            self.saved.pop((service, account))

    store = Store()
    monkeypatch.setitem(sys.modules, "keyring", types.SimpleNamespace(get_keyring=lambda: store))
    ring = Keyring()
    assert ring.available and ring.set("https://a:8443", "alice", "s3cret") == ""
    assert ring.get("https://a:8443", "alice") == "s3cret" and ring.get("https://b:8443", "alice") is None
    ring.delete("https://a:8443", "alice")
    assert store.saved == {}
    store.priority = 0  # keyring's "fail" backend: nothing stored anywhere
    assert not Keyring().available and "no system keyring" in Keyring().why

    # an XWD as Xvfb writes it: 4x2, 32 bits per pixel, little-endian, red/green/blue masks
    pixels = np.array([[0x00FF0000, 0x0000FF00, 0x000000FF, 0x00FFFFFF],
                       [0, 0x00102030, 0x00FF0000, 0x0000FF00]], "<u4")
    header = [100 + 8, 7, 2, 24, 4, 2, 0, 0, 32, 0, 32, 32, 16, 4, 0xFF0000, 0xFF00, 0xFF, 8, 256, 0, 4, 2, 0, 0, 0]
    import struct
    (tmp_path / "fb").write_bytes(struct.pack(">25I", *header) + b"Xvfb\0\0\0\0" + pixels.tobytes())
    assert xwd_to_png(tmp_path / "fb", tmp_path / "shot.png", (1, 0, 3, 2)) == (2, 2)
    png = (tmp_path / "shot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    idat = png.index(b"IDAT")
    rows = zlib.decompress(png[idat + 4: idat + 4 + struct.unpack(">I", png[idat - 4:idat])[0]])
    assert rows == b"\x00" + bytes([0, 255, 0, 0, 0, 255]) + b"\x00" + bytes([0x10, 0x20, 0x30, 255, 0, 0])


ACD_TWO = ACD.replace("[agents.alice]", f"""[queues.sales]
ring_timeout_s = 20
wrapup_s = 1

[agents.bob]
queues = {{sales = 5}}
password_hash = "{hash_password('bob-pw')}"

[agents.alice]""")
BOB_HZ = 1400.0


def seconds_of(path: Path, freq: float, start_s: float = 0.0, end_s: float | None = None) -> float:
    present, _ = tone_blocks(path, freq)
    return 0.5 * sum(present[int(start_s * 2):None if end_s is None else int(end_s * 2)])


def test_gui_transfers_and_consults_end_to_end(server_factory, tmp_path: Path, xvfb, guis) -> None:
    """The window's transfer dialog: a blind transfer of the first caller to agent bob (a
    headless softphone), then a consultation with bob on the second call (the caller hears music,
    alice and bob hear each other), completed: the caller ends up talking to bob."""
    from tests.softphone.test_headless import Softphone

    srv = server_factory(acd=ACD_TWO)
    config = tmp_path / "cfg" / "homeline" / "softphone.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'server = "{srv.web_url}"\nuser = "alice"\ntrust_fingerprint = ["{fingerprint(cert(srv))}"]\n'
                      'queues = ["support"]\n')
    bob_dir = tmp_path / "bob"
    bob_dir.mkdir()
    bob = Softphone(bob_dir, [srv], "--tone", str(BOB_HZ), "--record", str(bob_dir / "heard.wav"),
                    "--calls", "2", user="bob")
    bob.wait_log(r"available", 30)
    heard = tmp_path / "heard.wav"

    def answer_and_talk(timeout: float) -> list[dict]:
        return [{"do": "wait", "target": "popup.caller", "timeout": timeout},
                {"do": "click", "target": "popup.answer"},
                {"do": "wait", "state": "on-call"},
                {"do": "sleep", "seconds": 3}]

    def to_bob(kind: str) -> list[dict]:
        return [{"do": "click", "target": f"main.{kind}"},
                {"do": "wait", "target": "transfer.kind_agent"},
                {"do": "click", "target": "transfer.kind_agent"},
                {"do": "type", "target": "transfer.target", "text": "bob"},
                {"do": "click", "target": "transfer.ok"}]

    steps = [
        {"do": "wait", "view": "login"},
        {"do": "type", "target": "login.password", "text": "alice-pw"},
        {"do": "click", "target": "login.submit"},
        {"do": "wait", "state": "logged-out"},
        {"do": "click", "target": "main.available"},
        {"do": "wait", "state": "available"},
        {"do": "signal", "name": "available"},
        *answer_and_talk(30),
        *to_bob("transfer"),  # blind
        {"do": "wait", "state": "wrap-up"},
        {"do": "wait", "target": "main.message", "text": "Call transferred"},
        screens(tmp_path, "1-transferred"),
        {"do": "click", "target": "main.wrapup_done"},
        {"do": "wait", "state": "available"},
        {"do": "signal", "name": "free"},
        *answer_and_talk(40),
        *to_bob("consult"),
        {"do": "wait", "target": "main.consult_state", "text": "connected"},
        {"do": "signal", "name": "consulting"},
        {"do": "sleep", "seconds": 4},
        screens(tmp_path, "2-consulting"),
        {"do": "click", "target": "main.consult_complete"},
        {"do": "wait", "state": "wrap-up"},
        {"do": "signal", "name": "completed"},
        *wrapup_history_logout(tmp_path, "3-history"),
    ]
    gui = Gui(tmp_path, xvfb, steps, "--tone", str(AGENT_HZ), "--record", str(heard), config=config)
    guis.append(gui)
    try:
        gui.wait_signal("available", 30)
        first = start_caller(srv, tmp_path, 12)
        gui.wait_signal("free", 40)
        one = caller_result(first, 40)
        bob.wait_log(r"call \S+ done", 15)
        deadline = time.monotonic() + 15  # bob's wrap-up (1 s) over: his latest state is available
        while re.findall(r"state (\S+)", bob.log())[-1] != "available":
            assert time.monotonic() < deadline, bob.log()[-2000:]
            time.sleep(0.1)
        second_dir = tmp_path / "second"
        second_dir.mkdir()
        second = start_caller(srv, second_dir, 22)
        gui.wait_signal("consulting", 60)
        t_consult = time.monotonic()
        gui.wait_signal("completed", 30)
        t_completed = time.monotonic()
        lines = gui.finish(60)
        two = caller_result(second, 40)
        code, summary = bob.summary(40)
    finally:
        bob.kill()
    assert one["answered"] and two["answered"], (one, two)
    # bob answered three: the first caller, alice's consultation, then its caller (--calls 2 waits for it)
    assert code == 0 and summary["calls_answered"] == 3 and summary["stopped_by"] == "3 call(s) answered", summary
    # blind transfer: the first caller heard alice (1000 Hz), then bob (1400 Hz)
    first_wav = tmp_path / "caller.wav"
    assert seconds_of(first_wav, AGENT_HZ) >= 2, "the first caller never heard alice"
    assert seconds_of(first_wav, BOB_HZ) >= 4, "the first caller did not reach bob"
    # consultation: alice heard bob, bob heard alice; the caller heard neither while waiting
    assert seconds_of(heard, BOB_HZ) >= 2.5, "alice did not hear bob during the consultation"
    assert seconds_of(bob_dir / "heard.wav", AGENT_HZ) >= 2.5, "bob did not hear alice during the consultation"
    second_wav = second_dir / "caller.wav"
    consult_s = t_completed - t_consult
    assert consult_s >= 3.5
    # the second caller: alice first, then (after completion) bob for the rest of the call
    assert seconds_of(second_wav, AGENT_HZ) >= 2, "the second caller never heard alice"
    assert seconds_of(second_wav, BOB_HZ) >= 5, "the second caller did not end up with bob"
    present_bob, _ = tone_blocks(second_wav, BOB_HZ)
    present_alice, _ = tone_blocks(second_wav, AGENT_HZ)
    last_alice = len(present_alice) - present_alice[::-1].index(True)
    first_bob = present_bob.index(True)
    assert first_bob - last_alice >= 6, ("the caller heard bob or alice while on hold", present_alice, present_bob)
    events = [ln for ln in lines if ln["kind"] == "event"]
    assert [e["type"] for e in events].count("call-started") == 2
    consults = [e for e in events if e["type"] == "consult"]
    assert any(e.get("state") == "connected" for e in consults), consults
    shot = next(ln for ln in lines if ln["kind"] == "screenshot" and ln["path"].endswith("2-consulting.png"))
    assert "Consulting bob" in shot["texts"]["main.consult_state"], shot["texts"]
    assert not any(ln["kind"] == "notice" and ln.get("error") for ln in lines), lines
    log = srv.wait_log(r"agent alice logged out")
    cdrs = [ln for ln in log.splitlines() if "CDR CallRecord(" in ln]
    assert len(cdrs) == 2 and all("agent='bob'" in c and "outcome='answered'" in c for c in cdrs), cdrs
