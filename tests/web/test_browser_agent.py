"""The browser agent page (/agent) end to end: Debian's headless Chromium driven by Playwright
logs in as an agent, answers a pjsua2 caller and talks to it over WebRTC through the real
server. Audio is checked by signal both ways: Chromium's fake microphone plays a 1000 Hz tone
that the caller must record, the caller plays 600 Hz that the page must receive. For attended
transfers the other agent is the independent protocol client (tests/web/agent_client.py,
aiortc) playing 1400 Hz, run on its own event loop in a thread.

Chromium is /usr/bin/chromium (Debian package ``chromium``, in the Makefile's APT_TEST);
Playwright never downloads a browser here.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from acd.store.passwords import hash_password
from tests.audio import dominant_frequency, read_wav, rms_dbfs, tone_fraction, write_tone_wav
from tests.harness import PEER, ROOT, RunningServer, free_port
from tests.web.agent_client import ProtocolAgent

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

CHROMIUM = "/usr/bin/chromium"
AGENT_HZ = 1000.0  # Chromium's fake microphone
CALLER_HZ = 600.0  # the pjsua2 caller
OTHER_HZ = 1400.0  # the second agent (a ProtocolAgent)
CALLER_ID = "+33612345678"

ACD = f"""
[acd.breaks.lunch]
label = "Lunch"

[queues.support]
ring_timeout_s = 20
wrapup_s = 30

[agents.alice]
name = "Alice Martin"
queues = {{support = 1}}
password_hash = "{hash_password('alice-pw')}"

[agents.bob]
queues = {{support = 1}}
password_hash = "{hash_password('bob-pw')}"
"""

# Records what the agent hears: the page's remote stream through a ScriptProcessor (no module
# file needed, so the page's CSP does not matter); returns 16-bit samples and the rate.
CAPTURE_JS = """
async (seconds) => {
  const stream = window.homeline.remoteStream;
  if (!stream) return {rate: 0, samples: []};
  const ctx = new AudioContext();
  await ctx.resume();
  const src = ctx.createMediaStreamSource(stream);
  const proc = ctx.createScriptProcessor(4096, 1, 1);
  const chunks = [];
  proc.onaudioprocess = (e) => chunks.push(Float32Array.from(e.inputBuffer.getChannelData(0)));
  src.connect(proc);
  proc.connect(ctx.destination);  // the output buffer stays silent
  await new Promise((r) => setTimeout(r, seconds * 1000));
  src.disconnect();
  proc.disconnect();
  const rate = ctx.sampleRate;
  await ctx.close();
  const out = [];
  for (const c of chunks) for (const x of c) out.push(Math.round(Math.max(-1, Math.min(1, x)) * 32767));
  return {rate, samples: out};
}
"""


@pytest.fixture
def agent_server(server_factory, tmp_path: Path) -> RunningServer:
    prompts = subprocess.run([sys.executable, "-m", "acd.cli", "prompts", "build", "--dir",
                              str(tmp_path / "srv0" / "data" / "prompts")], cwd=ROOT, capture_output=True, text=True)
    assert prompts.returncode == 0, prompts.stderr
    return server_factory(acd=ACD, web_extra="heartbeat_s = 2\nlockout_after = 3\nlockout_s = 120")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    tone = tmp_path / "agent-mic.wav"
    write_tone_wav(str(tone), AGENT_HZ, 10, rate=48000, amplitude=0.3)  # Chromium loops it
    args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={tone}", "--ignore-certificate-errors",
            "--autoplay-policy=no-user-gesture-required"]
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=args,
            ignore_https_errors=True, viewport={"width": 1366, "height": 900}, timeout=20000)
        context.set_default_timeout(15000)
        try:
            yield context
        finally:
            context.close()


def page_of(context: BrowserContext) -> Page:
    page = context.pages[0] if context.pages else context.new_page()
    page.on("console", lambda m: print(f"[page {m.type}] {m.text}"))
    page.on("pageerror", lambda e: print(f"[page error] {e}"))
    return page


def sign_in(page: Page, srv: RunningServer, password: str = "alice-pw", agent: str = "alice") -> None:
    page.goto(f"{srv.web_url}/agent")
    page.get_by_test_id("login-agent").fill(agent)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()


def hook(page: Page, name: str) -> Any:
    return page.evaluate(f"window.homeline.{name}")


def wait_hook(page: Page, condition: str, timeout: float = 15000) -> None:
    page.wait_for_function(f"() => {{ const h = window.homeline; return !!h && ({condition}); }}", timeout=timeout)


def start_caller(srv: RunningServer, tmp: Path, seconds: float) -> subprocess.Popen:
    tone = tmp / "caller-tone.wav"
    write_tone_wav(str(tone), CALLER_HZ, seconds + 2, rate=8000)
    return subprocess.Popen([sys.executable, str(PEER), "call", "--uri", srv.uri("support"), "--codec", "PCMU",
                             "--clock-rate", "8000", "--play", str(tone), "--record", str(tmp / "caller.wav"),
                             "--duration", str(seconds), "--timeout", str(seconds + 15),
                             "--id", f"sip:{CALLER_ID}@127.0.0.1", "--local-port", str(free_port())],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def heard_by_agent(page: Page, seconds: float = 1.5) -> float:
    """Dominant frequency of what the page receives, computed here from captured samples."""
    got = page.evaluate(CAPTURE_JS, seconds)
    assert got["rate"] > 0 and len(got["samples"]) > got["rate"] * seconds * 0.5, "no remote audio captured"
    audio = np.asarray(got["samples"], dtype=np.float32) / 32768.0
    assert rms_dbfs(audio) > -40, f"the agent hears silence ({rms_dbfs(audio):.1f} dBFS)"
    return dominant_frequency(audio, got["rate"])


def go_available(page: Page) -> None:
    wait_hook(page, "h.connection === 'online' && h.media === 'connected'")
    page.get_by_test_id("btn-available").click()
    expect(page.get_by_test_id("state-badge")).to_have_attribute("data-state", "available")
    assert hook(page, "state") == "available"


def answer_incoming(page: Page) -> float:
    incoming = page.get_by_test_id("incoming-panel")
    expect(incoming).to_be_visible(timeout=15000)
    expect(page.get_by_test_id("incoming-caller")).to_contain_text(CALLER_ID)
    expect(page.get_by_test_id("incoming-queue")).to_have_text("support")
    assert hook(page, "state") == "reserved"
    page.get_by_test_id("btn-answer").click()
    answered = time.monotonic()
    expect(page.get_by_test_id("call-panel")).to_be_visible()
    expect(page.get_by_test_id("call-caller")).to_contain_text(CALLER_ID)
    wait_hook(page, "h.state === 'on-call' && h.call && h.call.state === 'connected'")
    return answered


def caller_heard(tmp: Path, talk_s: float) -> float:
    """Dominant frequency of the caller's recording over the agent's part of the call (its end)."""
    audio, rate = read_wav(str(tmp / "caller.wav"))
    tail = audio[-int((talk_s - 0.8) * rate):-int(0.3 * rate)]
    assert rms_dbfs(tail) > -40, f"the caller hears silence ({rms_dbfs(tail):.1f} dBFS)"
    return dominant_frequency(tail, rate)


def test_wrong_password_shows_the_error(agent_server: RunningServer, browser: BrowserContext) -> None:
    page = page_of(browser)
    sign_in(page, agent_server, password="not-her-password")
    error = page.get_by_test_id("login-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Wrong agent ID or password")
    expect(page.get_by_test_id("login-view")).to_be_visible()
    expect(page.get_by_test_id("desk-view")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('homeline.session')") is None
    # the right password then works, and a reload signs in again with the stored token
    page.get_by_test_id("login-password").fill("alice-pw")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("desk-view")).to_be_visible()
    expect(page.get_by_test_id("agent-name")).to_have_text("Alice Martin")
    page.reload()
    expect(page.get_by_test_id("desk-view")).to_be_visible()
    wait_hook(page, "h.connection === 'online' && h.state === 'logged-out'")
    assert "agent protocol error" not in agent_server.log_text()

    # a token the server does not know (expired, revoked): back to the form, with a message
    page.evaluate("""() => sessionStorage.setItem('homeline.session',
                       JSON.stringify({token: 'bogus', agent: 'alice', expires_at: Date.now() / 1000 + 3600}))""")
    page.reload()
    expect(page.get_by_test_id("login-view")).to_be_visible()
    expect(page.get_by_test_id("login-error")).to_contain_text("sign in again")

    # three wrong passwords in a row lock bob out (lockout_after = 3): the form says until when
    other = browser.new_page()
    for _ in range(3):
        sign_in(other, agent_server, agent="bob", password="nope")
        expect(other.get_by_test_id("login-error")).to_be_visible()
    expect(other.get_by_test_id("login-error")).to_contain_text("locked")
    expect(other.get_by_test_id("login-error")).to_contain_text(re.compile(r"Try again in [12]:\d\d"))
    expect(other.get_by_test_id("login-submit")).to_be_disabled()


def test_answer_talk_both_ways_and_hang_up(agent_server: RunningServer, browser: BrowserContext,
                                           tmp_path: Path) -> None:
    srv = agent_server
    page = page_of(browser)
    sign_in(page, srv)
    go_available(page)
    caller = start_caller(srv, tmp_path, 14)
    answered = answer_incoming(page)

    time.sleep(1.5)  # the jitter buffers fill
    heard = heard_by_agent(page)
    assert abs(heard - CALLER_HZ) < 15, f"the agent heard {heard:.1f} Hz"
    wait_hook(page, f"Math.abs(h.remote.freq_hz - {CALLER_HZ}) < 15", timeout=5000)  # the page's own analyser
    wait_hook(page, "h.stats && h.stats.packets_received > 50 && h.stats.mos > 3.5", timeout=6000)
    expect(page.get_by_test_id("call-timer")).not_to_have_text("0:00")
    page.get_by_test_id("btn-keypad").click()
    page.get_by_test_id("keypad-5").click()
    expect(page.get_by_test_id("keypad-sent")).to_have_text("5")
    page.get_by_test_id("btn-keypad").click()
    page.screenshot(path=str(tmp_path / "in-call.png"))

    page.get_by_test_id("btn-hangup").click()
    talk = time.monotonic() - answered
    expect(page.get_by_test_id("wrapup-panel")).to_be_visible()
    expect(page.get_by_test_id("state-badge")).to_have_attribute("data-state", "wrap-up")
    caller.communicate(timeout=20)
    assert abs(caller_heard(tmp_path, talk) - AGENT_HZ) < 15

    log = srv.wait_log(r"COMPLETEAGENT")
    cdr = [ln for ln in log.splitlines() if "CDR CallRecord(" in ln]
    assert len(cdr) == 1 and "agent='alice'" in cdr[0] and "outcome='answered'" in cdr[0], cdr
    assert re.search(r"\|support\|alice\|CONNECT\|", log)
    assert re.search(r"\|support\|alice\|COMPLETEAGENT\|", log)
    assert "agent DTMF 5 sent" in log

    page.get_by_test_id("btn-wrapup-done").click()
    expect(page.get_by_test_id("state-badge")).to_have_attribute("data-state", "available")
    assert "no heartbeat" not in srv.log_text()  # pinged every heartbeat_s (2 s) all along


def test_reload_during_a_call_restores_it(agent_server: RunningServer, browser: BrowserContext,
                                          tmp_path: Path) -> None:
    srv = agent_server
    page = page_of(browser)
    sign_in(page, srv)
    go_available(page)
    caller = start_caller(srv, tmp_path, 22)
    answer_incoming(page)
    time.sleep(1.0)
    assert abs(heard_by_agent(page, 1.0) - CALLER_HZ) < 15

    page.reload()  # the token is in sessionStorage: hello again, the welcome carries the call
    expect(page.get_by_test_id("call-panel")).to_be_visible()
    expect(page.get_by_test_id("call-caller")).to_contain_text(CALLER_ID)
    expect(page.get_by_test_id("login-view")).to_be_hidden()
    wait_hook(page, "h.state === 'on-call' && h.media === 'connected'")
    reloaded = time.monotonic()
    time.sleep(1.5)
    heard = heard_by_agent(page)
    assert abs(heard - CALLER_HZ) < 15, f"after the reload the agent heard {heard:.1f} Hz"

    page.get_by_test_id("btn-hangup").click()
    talk = time.monotonic() - reloaded
    expect(page.get_by_test_id("wrapup-panel")).to_be_visible()
    caller.communicate(timeout=20)
    assert abs(caller_heard(tmp_path, talk) - AGENT_HZ) < 15  # the caller hears the agent again
    log = srv.wait_log(r"COMPLETEAGENT")
    assert "agent alice: connection restored" in log or "agent alice: session" in log
    assert "CDR CallRecord(" in log and "outcome='answered'" in log


def test_echo_test_and_a_second_window(agent_server: RunningServer, browser: BrowserContext) -> None:
    srv = agent_server
    page = page_of(browser)
    sign_in(page, srv)
    wait_hook(page, "h.connection === 'online' && h.media === 'connected' && h.state === 'logged-out'")
    page.get_by_test_id("btn-echo-test").click()
    expect(page.get_by_test_id("echo-result")).to_contain_text("Echo test running")
    time.sleep(1.5)
    heard = heard_by_agent(page)
    assert abs(heard - AGENT_HZ) < 15, f"the echo brought back {heard:.1f} Hz"  # our own microphone
    wait_hook(page, "h.echo !== null", timeout=20000)
    echo = hook(page, "echo")
    assert echo["passed"] is True and echo["reasons"] == [], echo
    expect(page.get_by_test_id("echo-result")).to_contain_text("Audio check passed")

    # the same agent in a second tab (its own sessionStorage: signs in) takes over: §3.2
    second = browser.new_page()
    sign_in(second, srv)
    wait_hook(second, "h.connection === 'online' && h.media === 'connected'")
    expect(page.get_by_test_id("banner")).to_contain_text("open in another window")
    assert hook(page, "state") == "replaced" and hook(page, "connection") == "offline"
    page.get_by_test_id("banner-action").click()  # "Use this window": takes it back
    wait_hook(page, "h.connection === 'online' && h.media === 'connected' && h.state === 'logged-out'")
    expect(second.get_by_test_id("banner")).to_contain_text("open in another window")
    log = srv.wait_log(r"agent alice: session \S+ replaced by", count=2)
    assert "agent protocol error" not in log

    page.get_by_test_id("btn-signout").click()  # POST /api/v1/logout: the token stops working
    expect(page.get_by_test_id("login-view")).to_be_visible()
    expect(page.get_by_test_id("login-error")).to_contain_text("signed out")
    assert page.evaluate("() => sessionStorage.getItem('homeline.session')") is None
    srv.wait_log(r"agent alice logged out of session")


# -- attended transfer: the page with a second agent -------------------------------------------

class AgentThread:
    """A ProtocolAgent on its own asyncio loop in a thread (Playwright's sync API keeps the
    main thread); its coroutines are run from the test with :meth:`run`."""

    def __init__(self, srv: RunningServer, agent: str, password: str, tone_hz: float) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"agent-{agent}", daemon=True)
        self.thread.start()
        tls = ssl.create_default_context(cafile=str(srv.data_dir / "tls" / "selfsigned.crt"))
        self.agent = ProtocolAgent(srv.web_url, tls, agent, password, tone_hz)

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 25.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.run(self.agent.connect())
        self.run(self.agent.start_media())

    def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        reply = self.run(self.agent.request(kind, **fields))
        assert reply["type"] == "result", reply
        return reply

    def event(self, kind: str, timeout: float = 20.0, **match: Any) -> dict[str, Any]:
        return self.run(self.agent.event(kind, timeout=timeout, **match), timeout + 5)

    def heard_hz(self, seconds: float = 1.5) -> float:
        now = time.monotonic()
        audio = self.agent.heard_between(now - seconds, now)
        assert len(audio) > 48000 * seconds * 0.5, f"{self.agent.agent} received no audio"
        assert rms_dbfs(audio) > -40, f"{self.agent.agent} hears silence ({rms_dbfs(audio):.1f} dBFS)"
        return dominant_frequency(audio, 48000, skip_s=0)

    def close(self) -> None:
        try:
            self.run(self.agent.close(), 10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


@pytest.fixture
def other_agent(agent_server: RunningServer) -> Iterator[Any]:
    made: list[AgentThread] = []

    def make(agent: str, password: str, tone_hz: float = OTHER_HZ) -> AgentThread:
        made.append(AgentThread(agent_server, agent, password, tone_hz))
        return made[-1]

    yield make
    for a in made:
        a.close()


def blocks_with(audio: np.ndarray, rate: int, freq: float) -> list[bool]:
    """Per half second of ``audio``: does the tone fill it (as in test_protocol_client)?"""
    n = rate // 2
    return [tone_fraction(audio[i:i + n], rate, freq, block_s=0.25) >= 0.5 for i in range(0, len(audio) - n, n)]


def clock_s(text: str) -> int:
    m = re.search(r"(\d+):(\d\d)", text)
    assert m, text
    return int(m[1]) * 60 + int(m[2])


def ring_left_s(page: Page) -> int:
    ring = page.get_by_test_id("ring-left")
    expect(ring).to_have_text(re.compile(r"^\d+ s left$"))
    return int(ring.inner_text().split()[0])


def test_consult_an_agent_then_complete_the_transfer(agent_server: RunningServer, browser: BrowserContext,
                                                     other_agent: Any, tmp_path: Path) -> None:
    """alice (the page) consults bob (a ProtocolAgent) while the caller holds: the two agents hear
    each other, the caller hears neither; "Complete transfer" hands the caller to bob and alice
    wraps up with a countdown."""
    srv = agent_server
    page = page_of(browser)
    sign_in(page, srv)
    bob = other_agent("bob", "bob-pw")
    bob.start()  # not logged into the ACD yet: the call must ring alice
    go_available(page)
    caller = start_caller(srv, tmp_path, 40)
    expect(page.get_by_test_id("incoming-panel")).to_be_visible(timeout=15000)
    expect(page.get_by_test_id("incoming-kind")).to_have_text("Incoming call")
    left = ring_left_s(page)  # the ring countdown (ring_until), ring_timeout_s = 20
    assert 5 <= left <= 20, left
    assert hook(page, "offer")["ring_until"] > time.time() + 3
    answer_incoming(page)
    call = hook(page, "call")["id"]
    time.sleep(2.0)  # the caller hears alice for a while

    # bob is not available yet: the page says so plainly and nothing changes
    page.get_by_test_id("btn-consult").click()
    expect(page.get_by_test_id("transfer-form")).to_be_visible()
    expect(page.get_by_test_id("transfer-title")).to_contain_text("Consult first")
    expect(page.get_by_test_id("btn-consult")).to_have_attribute("aria-expanded", "true")
    page.get_by_test_id("transfer-kind-agent").check()
    page.get_by_test_id("transfer-target").fill("bob")
    page.get_by_test_id("consult-submit").click()
    expect(page.get_by_test_id("transfer-error")).to_contain_text("bob is not available right now")
    expect(page.get_by_test_id("consult-panel")).to_be_hidden()
    expect(page.get_by_test_id("call-status")).to_have_text("Talking")

    assert bob.request("login")["state"]["state"] == "available"
    # a consultation cancelled while it rings: back with the caller
    page.get_by_test_id("consult-submit").click()
    expect(page.get_by_test_id("consult-state")).to_have_text("Ringing…")
    assert bob.event("offer")["call"]["caller"] == "alice"
    page.get_by_test_id("btn-consult-cancel").click()
    expect(page.get_by_test_id("consult-state")).to_have_text("Ended — you cancelled it")
    expect(page.get_by_test_id("consult-note")).to_contain_text("back with the caller")
    expect(page.get_by_test_id("btn-consult-complete")).to_be_hidden()
    expect(page.get_by_test_id("call-status")).to_have_text("Talking")
    expect(page.get_by_test_id("btn-hangup")).to_be_enabled()
    bob.event("offer-cancelled")
    page.screenshot(path=str(tmp_path / "consult-cancelled.png"))
    page.get_by_test_id("btn-consult-cancel").click()  # "Close"
    expect(page.get_by_test_id("consult-panel")).to_be_hidden()
    assert hook(page, "consult") is None

    page.keyboard.press("c")  # the shortcut opens the consult picker again (still "agent", "bob")
    expect(page.get_by_test_id("consult-submit")).to_be_visible()
    expect(page.get_by_test_id("transfer-target")).to_have_value("bob")
    page.get_by_test_id("consult-submit").click()
    consulted = time.monotonic()
    expect(page.get_by_test_id("consult-panel")).to_be_visible()
    expect(page.get_by_test_id("transfer-form")).to_be_hidden()
    expect(page.get_by_test_id("consult-state")).to_have_text("Ringing…")
    expect(page.get_by_test_id("consult-target")).to_have_text("Agent bob")
    expect(page.get_by_test_id("call-status")).to_have_text("On hold — consulting")
    expect(page.get_by_test_id("call-flags")).to_contain_text("on hold")
    expect(page.get_by_test_id("btn-consult-complete")).to_be_disabled()
    expect(page.get_by_test_id("btn-hangup")).to_be_disabled()
    expect(page.get_by_test_id("btn-transfer")).to_be_disabled()
    page.screenshot(path=str(tmp_path / "consult-ringing.png"))

    offer = bob.event("offer")["call"]  # §3.7: an ordinary offer of the consultation
    assert offer["caller"] == "alice" and offer["id"].startswith(f"{call}/consult"), offer
    assert offer["queue"] == "support" and offer["ring_until"] > time.time(), offer
    bob.request("answer", call=offer["id"])
    expect(page.get_by_test_id("consult-state")).to_have_text("Connected")
    expect(page.get_by_test_id("btn-consult-complete")).to_be_enabled()
    time.sleep(1.5)
    heard = heard_by_agent(page)
    assert abs(heard - OTHER_HZ) < 15, f"during the consultation alice heard {heard:.1f} Hz"
    assert abs(bob.heard_hz() - AGENT_HZ) < 15  # and bob hears alice
    page.screenshot(path=str(tmp_path / "consult-connected.png"))

    page.get_by_test_id("btn-consult-complete").click()
    completed = time.monotonic()
    expect(page.get_by_test_id("wrapup-panel")).to_be_visible()
    expect(page.get_by_test_id("state-badge")).to_have_attribute("data-state", "wrap-up")
    expect(page.get_by_test_id("wrapup-info")).to_contain_text("You transferred the call")
    handed = bob.event("call", call__id=call)["call"]
    assert handed["state"] == "connected" and CALLER_ID in handed["caller"], handed

    timer = page.get_by_test_id("wrapup-timer")  # wrapup_s = 30
    expect(timer).to_have_text(re.compile(r"^Wrap-up ends in 0:[0-3]\d$"))
    first = clock_s(timer.inner_text())
    assert 20 <= first <= 30, first
    time.sleep(2.5)
    assert abs(bob.heard_hz() - CALLER_HZ) < 15  # bob has the caller now
    second = clock_s(timer.inner_text())
    assert first - 4 <= second <= first - 1, (first, second)  # it counts down
    expect(page.get_by_test_id("btn-wrapup-done")).to_be_visible()
    page.screenshot(path=str(tmp_path / "consult-wrapup.png"))

    bob.request("hangup", call=call)
    caller.communicate(timeout=20)
    audio, rate = read_wav(str(tmp_path / "caller.wav"))
    alice_blocks, bob_blocks = blocks_with(audio, rate, AGENT_HZ), blocks_with(audio, rate, OTHER_HZ)
    assert sum(alice_blocks) >= 2 and sum(bob_blocks) >= 4, (alice_blocks, bob_blocks)
    last_alice = len(alice_blocks) - 1 - alice_blocks[::-1].index(True)
    first_bob = bob_blocks.index(True)
    # alice, then neither agent for the whole consultation (hold music), then bob
    silent = first_bob - last_alice - 1
    assert silent >= 2 * (completed - consulted) - 3, (silent, completed - consulted, alice_blocks, bob_blocks)
    assert not any(bob_blocks[:last_alice + 1])

    log = srv.wait_log(r"CDR CallRecord\(")
    assert re.search(r"\|support\|alice\|TRANSFER\|bob\|attended\|", log)
    assert re.search(r"CDR CallRecord\(.*agent='bob'.*transfers=\('agent:bob',\)", log)
    assert "agent protocol error from alice: invalid-state" in log  # the refused first try only


def test_consulted_by_another_agent(agent_server: RunningServer, browser: BrowserContext, other_agent: Any,
                                    tmp_path: Path) -> None:
    """The page (bob) is the consulted agent: the offer says it is an internal consultation from
    alice and keeps its countdown across a reload; after alice completes, the panel switches
    to the customer's call and bob talks with the caller."""
    srv = agent_server
    alice = other_agent("alice", "alice-pw")
    alice.start()
    alice.request("login")
    page = page_of(browser)
    sign_in(page, srv, password="bob-pw", agent="bob")
    caller = start_caller(srv, tmp_path, 40)
    call = alice.event("offer")["call"]["id"]
    alice.request("answer", call=call)
    go_available(page)
    time.sleep(1.0)
    alice.request("consult", call=call, to={"agent": "bob"})

    incoming = page.get_by_test_id("incoming-panel")
    expect(incoming).to_be_visible()
    expect(incoming).to_have_attribute("data-kind", "consult")
    expect(page.get_by_test_id("incoming-kind")).to_have_text("Internal consultation")
    expect(page.get_by_test_id("incoming-caller")).to_have_text("From alice")
    expect(page.get_by_test_id("incoming-note")).to_contain_text("alice")
    expect(page.get_by_test_id("incoming-queue")).to_have_text("support")
    before = ring_left_s(page)
    page.screenshot(path=str(tmp_path / "consulted-ringing.png"))
    page.reload()  # the welcome's offer carries ring_until: the countdown goes on
    expect(incoming).to_be_visible()
    expect(page.get_by_test_id("incoming-kind")).to_have_text("Internal consultation")
    after = ring_left_s(page)
    assert 3 <= after <= before, (before, after)
    wait_hook(page, "h.media === 'connected'")
    page.get_by_test_id("btn-answer").click()
    expect(page.get_by_test_id("call-panel")).to_be_visible()
    expect(page.get_by_test_id("call-kind")).to_be_visible()
    expect(page.get_by_test_id("call-caller")).to_have_text("alice")
    expect(page.get_by_test_id("btn-consult")).to_be_disabled()
    alice.event("consult", state="connected")
    time.sleep(1.5)
    heard = heard_by_agent(page)
    assert abs(heard - OTHER_HZ) < 15, f"bob heard {heard:.1f} Hz from alice"
    assert abs(alice.heard_hz() - AGENT_HZ) < 15
    page.screenshot(path=str(tmp_path / "consulted-talking.png"))

    alice.request("consult-complete", call=call)
    expect(page.get_by_test_id("call-caller")).to_contain_text(CALLER_ID)
    expect(page.get_by_test_id("call-kind")).to_be_hidden()
    expect(page.get_by_test_id("call-status")).to_have_text("Talking")
    wait_hook(page, f"h.call && h.call.id === {call!r} && h.state === 'on-call'")
    expect(page.get_by_test_id("call-timer")).to_have_text(re.compile(r"^0:0\d$"))  # since = connected to bob
    handed = time.monotonic()
    time.sleep(1.5)
    heard = heard_by_agent(page)
    assert abs(heard - CALLER_HZ) < 15, f"after the transfer bob heard {heard:.1f} Hz"
    page.screenshot(path=str(tmp_path / "consulted-handed-over.png"))
    page.get_by_test_id("btn-hangup").click()
    talk = time.monotonic() - handed
    expect(page.get_by_test_id("wrapup-panel")).to_be_visible()
    caller.communicate(timeout=20)
    assert abs(caller_heard(tmp_path, talk) - AGENT_HZ) < 15  # the caller hears the page at the end
    log = srv.wait_log(r"CDR CallRecord\(")
    assert re.search(r"\|support\|alice\|TRANSFER\|bob\|attended\|", log)
    assert re.search(r"CDR CallRecord\(.*agent='bob'.*outcome='answered'", log)
