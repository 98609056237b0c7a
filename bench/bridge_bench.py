#!/usr/bin/env python3
"""Trunk <-> WebRTC bridge benchmark: how many bridged calls one server core carries, and the
latency the bridge adds, for G.711 end to end and for Opus <-> G.711 (prints figures).

Method. A real ``acd serve`` runs pinned to CPU 0 (``taskset -c 0``: its aiortc threads too)
with a generated config: queue ``support`` (ring_timeout_s 30, wrapup_s 0, no announcements)
served by web agents b001..bNNN, queue ``robots`` served by robot agents (``test = true``:
answer at once, echo), ``[acd] reconcile_after_s = 0``, a 2000-port RTP range, log level
warning, and ``[web] agent_codec`` = pcmu or opus (one server per codec). Everything else
runs on CPU 1: this script (SIP callers and RTP, asyncio) and bench/bridge_agents.py (the N
aiortc agents in one process). For each step N of a ramp:

1. the agents' process brings agents b001..bNNN up (login, hello, media-offer, available);
   exactly N are connected, because an idle session costs the server as much as a call
   (its track sends silence to the agent and decodes the agent's microphone);
2. N SIP calls (UDP, PCMU, ptime 20) dial ``support``; each agent answers its offer at once;
3. when the control socket's status shows N agents on-call, 2 s to settle, then a window of
   ``--seconds``: the server's status (the JSON of ``acd status``) and the CPU time of the
   server and of the client processes (/proc/PID/stat) are read at both ends;
4. the callers hang up; the agents report what they heard.

Audio: both sides send a continuous quiet tone with a 30 ms chirp at the start of every
second (the caller an up-sweep, the agent a down-sweep; bench/bridge_agents.py). Both run on
this host, so CLOCK_MONOTONIC is one clock for all processes, and each direction is timed
alone, without a loopback to subtract:

* caller -> agent: the caller's RTP send time of the chirp's packet, to the arrival of the
  SRTP packet that brought it to the agent (found by cross-correlation of the agent's decoded
  audio, dated through the RTP timestamp). This is the server's share: its trunk jitter
  buffer and media-clock tick, 8 -> 48 kHz resampling for Opus, the to-agent FIFO, encoding.
* agent -> caller: the agent hands the chirp's frame to aiortc's sender, to the arrival of
  the RTP packet that brings it to the caller: the server's receive jitter buffer (20 ms, media/rtc_jitter.py),
  decoding, 48 -> 8 kHz, the to-caller FIFO and tick phase, encoding; plus the agent's own
  encode (well under a millisecond).

Samples are dated as their packet's (or frame's) time plus their offset in it. The clients'
own jitter buffers are not in these numbers (a browser has its own); ``c2a_dec_ms`` in --json
also counts aiortc's client jitter buffer. ``lat`` is the mean of the two medians; medians
and p95 are over every chirp of every call of the step.

Pass/fail: the media clock's late ticks (a tick run more than a period late) < 0.5 % of its
ticks, every call bridged, and drops < 0.5 % of the frames expected in the window: frames the
clients never got or got as silence (the tone never is silent; the AgentMedia FIFOs' drops and
underruns are not in ``acd status``, they show up there), both directions, plus the trunk
jitter buffers' concealed, catch-up, overflow and flushed frames from ``acd status``. The
ramp stops at a failing step, or when the server used >= 95 % of its core. A failure while
other processes used >= 10 % of either CPU is run once more (``retried``); if it fails again
the ramp goes on (on a shared host, noise should not hide the curve): read ``others``.

Baseline, in the same run: the same N calls into ``robots`` (the server's own echo of the
SIP leg, no WebRTC), in the last server after its agents left; its latency is the echo's
round trip. Server CPU is fitted as fixed + per_call * N for both; the summary gives the
bridge's per-call cost, its excess over the echo, and the N at 95 % of the core by CPU alone
(steps where CPU 0 was full are left out of the fits).

Caveats: the agents (aiortc; here about three quarters of the server's CPU per call) share
CPU 1 with the callers; when CPU 1 is >= 90 % busy (``cli cpu`` plus
others) the step is marked ``cpu1-full``: the clients' send timing and their timestamps
(taken in Python, after SRTP, on that core) degrade, and the limit may be theirs. The
``others`` column is the CPU other processes took on each core during the window: on a shared
host they delay the server's ticks and the clients' packets, and a step can fail for that
(``--nice -10`` as root shields a little). Dating packets at the agent wraps two private
aiortc members; if they change, ``c->a`` shows ``-``. Status comes over the control socket
(the same JSON as ``acd status``). The whole run keeps to 6 minutes (``--quick``: ~1 minute).

    .venv/bin/python bench/bridge_bench.py [--quick] [--ramp 2,4,8,...] [--seconds 10] [--nice -10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from acd.control import control  # noqa: E402
from acd.store.passwords import hash_password  # noqa: E402
from bridge_agents import CALLER_TONE_HZ, FRAME_S, PERIOD_FRAMES, delays, detect, pattern, pct, silent  # noqa: E402
from media.codecs.g711 import ulaw_decode, ulaw_encode  # noqa: E402
from tests.harness import RunningServer, write_config  # noqa: E402

PY = sys.executable
CLK = os.sysconf("SC_CLK_TCK")
PASSWORD = "bench-pw"
RATE, SAMPLES = 8000, 160
SERVER_CPU, CLIENT_CPU = 0, 1
LIMIT_PCT = 0.5
NOISY_PCT = 10.0  # other processes' share of CPU 0 above which a step is marked noisy
BUDGET_S, QUICK_BUDGET_S = 345.0, 70.0


# -- the server ------------------------------------------------------------------------------

def acd_config(agents: int, robots: int, password_hash: str) -> str:
    """Queues ``support`` (web agents b001..) and ``robots`` (robot agents r001..), no prompts."""
    queue = ["ring_timeout_s = 30", "wrapup_s = 0", "announce_position_every_s = 0",
             "periodic_announce_every_s = 0", ""]
    lines = ["[acd]", "reconcile_after_s = 0", "connection_grace_s = 1", "",
             "[queues.support]", *queue, "[queues.robots]", *queue]
    for i in range(1, agents + 1):
        lines += [f"[agents.b{i:03d}]", "queues = {support = 1}", f'password_hash = "{password_hash}"', ""]
    for i in range(1, robots + 1):
        lines += [f"[agents.r{i:03d}]", "queues = {robots = 1}", "test = true", ""]
    return "\n".join(lines)


DIALPLAN = "".join(f'[[dialplan]]\nmatch = "{q}"\naction = "queue"\ntarget = "{q}"\n\n'
                   for q in ("support", "robots")) + '[[dialplan]]\nmatch = "*"\naction = "reject"\nstatus = 404\n'


def start_server(tmp: Path, agents: int, codec: str, password_hash: str, nice: int = 0) -> RunningServer:
    """``acd serve`` on CPU 0, as tests.harness.start_server does it otherwise."""
    config, sip_port, tls_port = write_config(
        tmp, transports=("udp",), log_level="warning", rtp_ports=2000, dialplan=DIALPLAN,
        acd=acd_config(agents, agents, password_hash), web_extra=f'agent_codec = "{codec}"')
    log = tmp / "server.log"
    prefix = ["nice", "-n", str(nice)] if nice else []
    proc = subprocess.Popen([*prefix, "taskset", "-c", str(SERVER_CPU), PY, "-m", "acd.cli", "serve", str(config)],
                            cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    server = RunningServer(proc, config, tmp / "data", log, sip_port, tls_port)
    web = tomllib.loads(config.read_text())["web"]
    server.web_url = f"https://127.0.0.1:{web['port']}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}:\n{server.log_text()}")
        if (tmp / "data" / "acd.sock").exists() and (tmp / "data" / "tls" / "selfsigned.crt").exists():
            return server
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server did not start:\n{server.log_text()}")


def cpus_busy() -> tuple[float, float]:
    """Seconds the server's and the clients' CPUs were busy (every process), from /proc/stat."""
    busy = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name in (f"cpu{SERVER_CPU}", f"cpu{CLIENT_CPU}"):
            v = [int(x) for x in values]
            busy[name] = (sum(v[:8]) - v[3] - v[4]) / CLK  # all but idle and iowait (guest is in user)
    return busy.get(f"cpu{SERVER_CPU}", 0.0), busy.get(f"cpu{CLIENT_CPU}", 0.0)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime, every thread


async def status(server: RunningServer) -> dict[str, Any]:
    return await control(server.data_dir, {"cmd": "status"})


async def on_call(server: RunningServer, prefix: str) -> int:
    agents = (await status(server)).get("acd", {}).get("agents", {})
    return sum(1 for name, a in agents.items() if name.startswith(prefix) and a["state"] == "on-call")


# -- the callers: a minimal SIP UAC over UDP and one RTP stream per call ---------------------

@dataclass(eq=False)
class Call:
    name: str
    call_id: str
    tag: str
    phase: int
    rtp: asyncio.DatagramTransport | None = None
    rtp_port: int = 0
    remote: tuple[str, int] | None = None
    to_tag: str = ""
    contact: str = ""
    failed: str = ""
    established: asyncio.Event = field(default_factory=asyncio.Event)
    bye_done: asyncio.Event = field(default_factory=asyncio.Event)
    seq: int = 0
    ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    sent_chirps: list[float] = field(default_factory=list)
    received: list[tuple[float, bytes]] = field(default_factory=list)


class _Rtp(asyncio.DatagramProtocol):
    def __init__(self, call: Call) -> None:
        self.call = call

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) == 12 + SAMPLES and data[1] & 0x7F == 0:
            self.call.received.append((time.monotonic(), data[12:]))


def _headers(text: str) -> tuple[str, dict[str, str], str]:
    head, _, body = text.partition("\r\n\r\n")
    first, *lines = head.split("\r\n")
    compact = {"i": "call-id", "t": "to", "f": "from", "v": "via", "m": "contact", "l": "content-length"}
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        name = compact.get(name.strip().lower(), name.strip().lower())
        headers.setdefault(name, value.strip())
    return first, headers, body


class Callers(asyncio.DatagramProtocol):
    """N calls into ``target``: INVITE (PCMU), ACK, RTP with the caller's probe, BYE."""

    def __init__(self, sip: tuple[str, int], target: str, n: int) -> None:
        self.sip, self.target = sip, target
        self.pattern = ulaw_encode(pattern(RATE, up=True, tone_hz=CALLER_TONE_HZ))
        run = random.getrandbits(24)
        self.calls = {c.call_id: c for c in (Call(f"c{run:06x}{i:03d}", f"bb{run:06x}-{i}@127.0.0.1", f"t{run:x}{i}",
                                                     phase=(i * 7) % PERIOD_FRAMES) for i in range(n))}
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self._sender: asyncio.Task[None] | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self.port = self.transport.get_extra_info("sockname")[1]
        for call in self.calls.values():
            call.rtp, _ = await loop.create_datagram_endpoint(lambda c=call: _Rtp(c), local_addr=("127.0.0.1", 0))
            call.rtp_port = call.rtp.get_extra_info("sockname")[1]
        self._sender = asyncio.create_task(self._send_rtp())

    def _send(self, text: str) -> None:
        assert self.transport is not None
        self.transport.sendto(text.encode(), self.sip)

    def _request(self, call: Call, method: str, cseq: int, body: str = "") -> str:
        to = f"sip:{self.target}@{self.sip[0]}:{self.sip[1]}"
        lines = [f"{method} {call.contact or to} SIP/2.0",
                 f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{random.getrandbits(48):x};rport",
                 "Max-Forwards: 70", f"From: <sip:{call.name}@127.0.0.1>;tag={call.tag}",
                 f"To: <{to}>" + (f";tag={call.to_tag}" if call.to_tag else ""),
                 f"Call-ID: {call.call_id}", f"CSeq: {cseq} {method}",
                 f"Contact: <sip:{call.name}@127.0.0.1:{self.port}>"]
        if body:
            lines.append("Content-Type: application/sdp")
        lines += [f"Content-Length: {len(body)}", "", body]
        return "\r\n".join(lines)

    def invite(self, call: Call) -> None:
        sdp = (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=bench\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               f"m=audio {call.rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n")
        self._send(self._request(call, "INVITE", 1, sdp))

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        first, headers, body = _headers(data.decode(errors="replace"))
        call = self.calls.get(headers.get("call-id", ""))
        if call is None:
            return
        if not first.startswith("SIP/2.0"):  # a request from the server: BYE, OPTIONS...
            reply = ["SIP/2.0 200 OK"] + [f"{h.title()}: {headers[h]}" for h in ("via", "from", "to", "call-id", "cseq")
                                          if h in headers] + ["Content-Length: 0", "", ""]
            self._send("\r\n".join(reply))
            if first.startswith("BYE"):
                call.failed = call.failed or "server hung up"
                call.bye_done.set()
            return
        code, method = int(first.split()[1]), headers.get("cseq", "").split()[-1]
        if method == "INVITE" and code >= 200:
            to = headers.get("to", "")
            call.to_tag = to.split("tag=")[1].split(";")[0] if "tag=" in to else call.to_tag
            if code < 300:
                contact = headers.get("contact", "")
                call.contact = contact[contact.find("<") + 1:contact.find(">")] if "<" in contact else contact
                self._send(self._request(call, "ACK", 1))
                if call.remote is None:
                    host = next(ln[9:].strip() for ln in body.splitlines() if ln.startswith("c=IN IP4"))
                    port = int(next(ln.split()[1] for ln in body.splitlines() if ln.startswith("m=audio")))
                    call.remote = (host, port)
            else:
                self._send(self._request(call, "ACK", 1))
                call.failed = first
            call.established.set()
        elif method == "BYE" and code >= 200:
            call.bye_done.set()

    async def _send_rtp(self) -> None:
        """Every call's next packet each 20 ms, on an absolute schedule from CPU 1."""
        nxt = time.monotonic()
        while True:
            now = time.monotonic()
            for call in self.calls.values():
                if call.remote is None or call.rtp is None or call.bye_done.is_set():
                    continue
                k = (call.seq + call.phase) % PERIOD_FRAMES
                header = bytes((0x80, 0)) + (call.seq & 0xFFFF).to_bytes(2, "big") + \
                    ((call.seq * SAMPLES) & 0xFFFFFFFF).to_bytes(4, "big") + call.ssrc.to_bytes(4, "big")
                call.rtp.sendto(header + self.pattern[k * SAMPLES:(k + 1) * SAMPLES], call.remote)
                if k == 0:
                    call.sent_chirps.append(now)
                call.seq += 1
            nxt += FRAME_S
            if time.monotonic() - nxt > 0.2:  # this core stalled: do not burst
                nxt = time.monotonic()
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    async def dial(self, spread_s: float = 0.05, timeout: float = 30.0) -> list[str]:
        for call in self.calls.values():
            self.invite(call)
            await asyncio.sleep(spread_s)
        try:
            await asyncio.wait_for(asyncio.gather(*(c.established.wait() for c in self.calls.values())), timeout)
        except asyncio.TimeoutError:
            pass
        return [f"{c.name}: {c.failed or 'no answer'}" for c in self.calls.values()
                if c.failed or not c.established.is_set()]

    async def hangup(self) -> None:
        for call in self.calls.values():
            if call.contact and not call.bye_done.is_set():
                self._send(self._request(call, "BYE", 2))
        try:
            await asyncio.wait_for(asyncio.gather(*(c.bye_done.wait() for c in self.calls.values()
                                                    if c.contact)), 10)
        except asyncio.TimeoutError:
            pass

    def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
        for call in self.calls.values():
            if call.rtp is not None:
                call.rtp.close()
        if self.transport is not None:
            self.transport.close()

    def report(self, call: Call, t0: float, t1: float, up: bool) -> dict[str, Any]:
        """What this caller heard in [t0, t1): frames, silent frames, chirps found (dated)."""
        inside = [(t, p) for t, p in call.received if t0 <= t < t1]
        out: dict[str, Any] = {"frames": len(inside), "silent": sum(silent(ulaw_decode(p)) for _, p in inside),
                               "sent_chirps": [t for t in call.sent_chirps if t0 <= t < t1], "chirps": []}
        if call.received:
            x = ulaw_decode(b"".join(p for _, p in call.received))
            for i in detect(x, RATE, up=up):
                t = call.received[i // SAMPLES][0] + (i % SAMPLES) / RATE
                if t0 <= t < t1:
                    out["chirps"].append(t)
        return out


# -- one step -------------------------------------------------------------------------------

class AgentsProcess:
    """bench/bridge_agents.py on CPU 1, driven over its stdin/stdout."""

    def __init__(self, server: RunningServer, codec: str) -> None:
        self.server, self.codec = server, codec
        self.proc: asyncio.subprocess.Process | None = None

    async def command(self, **cmd: Any) -> dict[str, Any]:
        if self.proc is None:
            self.proc = await asyncio.create_subprocess_exec(
                "taskset", "-c", str(CLIENT_CPU), PY, str(ROOT / "bench" / "bridge_agents.py"),
                "--url", self.server.web_url, "--password", PASSWORD, "--codec", self.codec,
                "--cafile", str(self.server.data_dir / "tls" / "selfsigned.crt"),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 26)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 120)
        if not line:
            raise RuntimeError(f"the agents' process exited ({self.proc.returncode})")
        return json.loads(line)

    async def quit(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b'{"cmd": "quit"}\n')
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.proc = None


JB_DROPS = ("jitter_concealed", "jitter_dropped_catchup", "jitter_overflow", "jitter_flushed")


async def run_step(server: RunningServer, agents: AgentsProcess | None, n: int, seconds: float,
                   settle: float = 2.0) -> dict[str, Any]:
    mode = "robots" if agents is None else agents.codec
    result: dict[str, Any] = {"mode": mode, "n": n, "errors": []}
    if agents is not None:
        grown = await agents.command(cmd="grow", n=n)
        result["errors"] += grown["failed"]
    callers = Callers((server.host, server.sip_port), "robots" if agents is None else "support", n)
    await callers.open()
    prefix = "r" if agents is None else "b"
    try:
        result["errors"] += await callers.dial()
        deadline = time.monotonic() + 30
        while (bridged := await on_call(server, prefix)) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        result["bridged"] = bridged
        await asyncio.sleep(settle)
        pids = [os.getpid()] + ([agents.proc.pid] if agents is not None and agents.proc is not None else [])
        s0, w0 = await status(server), time.monotonic()
        c0, k0, (b0, d0) = cpu_seconds(server.proc.pid), sum(cpu_seconds(p) for p in pids), cpus_busy()
        await asyncio.sleep(seconds)
        c1, k1, (b1, d1) = cpu_seconds(server.proc.pid), sum(cpu_seconds(p) for p in pids), cpus_busy()
        w1 = time.monotonic()
        s1 = await status(server)
        await callers.hangup()
        deadline = time.monotonic() + 10
        while await on_call(server, prefix) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.3)  # the agents' call-ended events
        heard = await agents.command(cmd="report", t0=w0, t1=w1) if agents is not None else {"calls": [], "errors": []}
    finally:
        callers.close()
    result["errors"] += heard["errors"][:5]
    wall = w1 - w0
    m0, m1 = s0["media"], s1["media"]
    delta = {k: v - m0.get(k, 0) for k, v in m1.items() if isinstance(v, int) and v != m0.get(k, 0)}
    ticks, late = delta.get("ticks", 0), delta.get("late_ticks", 0)
    result.update(wall_s=wall, server_cpu_pct=100 * (c1 - c0) / wall, client_cpu_pct=100 * (k1 - k0) / wall,
                  cpu0_other_pct=max(0.0, 100 * ((b1 - b0) - (c1 - c0)) / wall),
                  cpu1_other_pct=max(0.0, 100 * ((d1 - d0) - (k1 - k0)) / wall),
                  ticks=ticks, late_ticks=late, resync=delta.get("resync", 0),
                  late_pct=100 * late / ticks if ticks else 100.0, media_delta=delta,
                  jb_drops=sum(delta.get(k, 0) for k in JB_DROPS),
                  web={k: v for k, v in s1.get("acd", {}).get("web", {}).items()
                       if k not in ("url", "agents_connected")})
    analyse(result, callers, heard["calls"], w0, w1, up=agents is None)
    return result


def analyse(result: dict[str, Any], callers: Callers, agent_calls: list[dict[str, Any]], t0: float, t1: float,
            up: bool) -> None:
    """Latencies per direction, gaps and drops, from both ends' reports and the server's counters."""
    expected = int(round((t1 - t0) / FRAME_S))
    by_caller = {c["caller"]: c for c in agent_calls}
    to_caller_gaps = to_agent_gaps = 0
    c2a: list[float] = []
    c2a_dec: list[float] = []
    a2c: list[float] = []
    for call in callers.calls.values():
        mine = callers.report(call, t0, t1, up)
        to_caller_gaps += max(0, expected - mine["frames"]) + mine["silent"]
        if up:  # the robot's echo: a round trip
            a2c += delays(mine["sent_chirps"], mine["chirps"])
            continue
        agent = by_caller.get(call.name)
        if agent is None:
            to_agent_gaps += expected
            continue
        to_agent_gaps += max(0, expected - agent["frames"]) + agent["silent"]
        c2a += delays(mine["sent_chirps"], [c["t_pkt"] for c in agent["chirps"] if c["t_pkt"] is not None])
        c2a_dec += delays(mine["sent_chirps"], [c["t_dec"] for c in agent["chirps"]])
        a2c += delays(agent["sent_chirps"], mine["chirps"])
    n = len(callers.calls)
    frames = expected * n * (1 if up else 2)  # the robot's echo is one stream each way through one leg
    drops = to_caller_gaps + to_agent_gaps + result["jb_drops"]
    result.update(
        expected_frames=frames, gaps_to_caller=to_caller_gaps, gaps_to_agent=to_agent_gaps,
        drops_pct=100 * drops / max(1, frames), chirps=len(a2c) + len(c2a),
        c2a_ms=(pct(c2a, 0.5), pct(c2a, 0.95)), c2a_dec_ms=(pct(c2a_dec, 0.5), pct(c2a_dec, 0.95)),
        a2c_ms=(pct(a2c, 0.5), pct(a2c, 0.95)))
    med = [v for v in (result["c2a_ms"][0], result["a2c_ms"][0]) if v is not None]
    result["oneway_ms"] = (sum(med) / len(med) if med and not up else None)
    result["cpu1_full"] = result["client_cpu_pct"] + result["cpu1_other_pct"] >= 90.0  # the clients starved
    result["noisy"] = result["cpu0_other_pct"] >= NOISY_PCT
    result["passed"] = (result["late_pct"] < LIMIT_PCT and result["drops_pct"] < LIMIT_PCT
                        and result.get("bridged", 0) == n and not result["errors"] and len(a2c) > 0)


# -- the run --------------------------------------------------------------------------------

def fmt(v: float | None, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


HEADER = (f"{'mode':<6} {'N':>3} {'srv cpu':>7} {'per call':>8} {'cli cpu':>7} {'others':>7} {'late %':>6} "
          f"{'drops %':>7} {'c->a p50/95':>11} {'a->c p50/95':>11} {'lat':>4}  verdict")


def row(r: dict[str, Any]) -> str:
    verdict = "pass" if r["passed"] else "FAIL"
    verdict += " cpu1-full" if r["cpu1_full"] else ""
    verdict += " noisy" if r["noisy"] else ""
    verdict += " retried" if r.get("retried") else ""
    if r["errors"]:
        verdict += f" ({r['errors'][0]})"[:60]
    c2a = f"{fmt(r['c2a_ms'][0])}/{fmt(r['c2a_ms'][1])}"
    a2c = f"{fmt(r['a2c_ms'][0])}/{fmt(r['a2c_ms'][1])}"
    others = f"{r['cpu0_other_pct']:.0f}/{r['cpu1_other_pct']:.0f}"
    return (f"{r['mode']:<6} {r['n']:>3} {r['server_cpu_pct']:>6.1f}% {r['server_cpu_pct'] / r['n']:>7.2f}% "
            f"{r['client_cpu_pct']:>6.0f}% {others:>7} {r['late_pct']:>6.2f} {r['drops_pct']:>7.2f} "
            f"{c2a:>11} {a2c:>11} {fmt(r['oneway_ms']):>4}  {verdict}")


def step_cost_s(n: int, seconds: float) -> float:
    """A step's expected wall time (bringing agents up, dialling, settling, hanging up, analysis)."""
    return seconds + 5.0 + 0.25 * n


def disturbed(r: dict[str, Any]) -> bool:
    """Other processes took a share of either CPU during the step's window."""
    return r["noisy"] or r["cpu1_other_pct"] >= NOISY_PCT


async def ramp(server: RunningServer, agents: AgentsProcess | None, sizes: list[int], seconds: float,
               deadline: float, quiet: bool) -> list[dict[str, Any]]:
    """Steps in order. A failure while other processes used either CPU is run once more; a bridge
    ramp stops at a failure in an undisturbed step or at a saturated server core (the last
    result says why, in ``stop``), else at the end of the sizes or of its time."""
    results: list[dict[str, Any]] = []
    for n in sizes:
        if time.monotonic() + step_cost_s(n, seconds) > deadline:
            if not quiet:
                print(f"{'':<6} {n:>3}  skipped: the run's time budget is spent", flush=True)
            break
        r = await run_step(server, agents, n, seconds)
        if not r["passed"] and disturbed(r) and time.monotonic() + step_cost_s(n, seconds) <= deadline:
            if not quiet:
                print(row(r), flush=True)
            r["superseded"] = True
            results.append(r)
            r = await run_step(server, agents, n, seconds)
            r["retried"] = True
        results.append(r)
        if not quiet:
            print(row(r), flush=True)
        if agents is None:
            continue
        if r["server_cpu_pct"] >= 95.0:
            r["stop"] = "server core saturated"
        elif not r["passed"] and not disturbed(r):
            r["stop"] = "a failing step"
        if "stop" in r:
            break
    return results


def baseline_sizes(ramps: dict[str, list[dict[str, Any]]], fallback: list[int], most: int = 4) -> list[int]:
    """The robots' steps: the N the bridge ramps measured (at most ``most``, the largest kept)."""
    measured = sorted({r["n"] for rs in ramps.values() for r in rs}) or fallback[:2]
    if len(measured) <= most:
        return measured
    keep = {measured[-1], measured[-2]}
    step = (len(measured) - 2) / (most - 2)
    keep |= {measured[int(i * step)] for i in range(most - 2)}
    return sorted(keep)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    os.sched_setaffinity(0, {CLIENT_CPU})
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # inherited by the agents' process
    start = time.monotonic()
    budget = QUICK_BUDGET_S if args.quick else BUDGET_S
    deadline = start + budget
    sizes = [int(x) for x in args.ramp.split(",")]
    quiet = args.json
    password_hash = hash_password(PASSWORD)  # slow on purpose: once for every agent
    out: dict[str, Any] = {"cpus": os.cpu_count(), "seconds": args.seconds, "nice": args.nice,
                           "ramps": {}, "baseline": []}
    if not quiet:
        print(f"bridge benchmark: acd serve on CPU {SERVER_CPU}; callers and aiortc agents on CPU {CLIENT_CPU}; "
              f"{args.seconds:g} s windows; pass: late ticks < {LIMIT_PCT} %, drops < {LIMIT_PCT} %")
        print("srv cpu: the server, % of its core; cli cpu: agents + callers, % of theirs; others: other processes' "
              "% of CPU 0/CPU 1;\nc->a, a->c: one-way latency in ms (p50/p95), packet to packet; lat: mean of the "
              "two p50; noisy: others >= 10 % of CPU 0\n")
        print(HEADER, flush=True)
    codecs = args.codecs.split(",")
    for index, codec in enumerate(codecs):
        last = index == len(codecs) - 1
        reserve = 0.2 * budget  # the robots' baseline, in the last server
        ramp_deadline = time.monotonic() + (deadline - reserve - time.monotonic()) / (len(codecs) - index)
        with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp:
            server = start_server(Path(tmp), max(sizes), codec, password_hash, args.nice)
            agents = AgentsProcess(server, codec)
            try:
                out["ramps"][codec] = await ramp(server, agents, sizes, args.seconds, ramp_deadline, quiet)
                await agents.quit()
                if last:
                    await asyncio.sleep(2.5)  # connection_grace_s: the sessions close, idle media ends
                    out["baseline"] = await ramp(server, None, baseline_sizes(out["ramps"], sizes), args.seconds,
                                                 deadline, quiet)
            finally:
                await agents.quit()
                server.stop(signal.SIGTERM)
    out["elapsed_s"] = time.monotonic() - start
    summarize(out, quiet)
    return out


def fit(results: list[dict[str, Any]]) -> tuple[float, float] | None:
    """Server CPU % = fixed + per_call * N, least squares over the steps whose CPU 0 had room
    (when it is full the server gets less than it asks for); None below 2 sizes."""
    results = [r for r in results if r["server_cpu_pct"] + r["cpu0_other_pct"] < 95.0]
    if len({r["n"] for r in results}) < 2:
        return None
    per_call, fixed = np.polyfit([r["n"] for r in results], [r["server_cpu_pct"] for r in results], 1)
    return float(fixed), float(per_call)


def summarize(out: dict[str, Any], quiet: bool) -> None:
    base = {r["n"]: r for r in out["baseline"] if not r.get("superseded")}
    base_fit = fit(list(base.values()))
    out["summary"] = {}
    if base:
        out["summary"]["robots"] = {
            "fixed_pct": base_fit[0] if base_fit else None, "per_call_pct": base_fit[1] if base_fit else None,
            "rtt_ms_median": statistics.median([r["a2c_ms"][0] for r in base.values() if r["a2c_ms"][0] is not None]
                                               or [0.0]),
            "max_n_passing": max((r["n"] for r in base.values() if r["passed"]), default=0)}
    for codec, every in out["ramps"].items():
        results = [r for r in every if not r.get("superseded")]
        passing = [r for r in results if r["passed"]]
        best = max(passing, key=lambda r: r["n"]) if passing else None
        line = fit(results)
        lat = [r["oneway_ms"] for r in passing if r["oneway_ms"] is not None]
        last = results[-1] if results else None
        out["summary"][codec] = {
            "max_n": best["n"] if best else 0, "at_max_cpu_pct": best["server_cpu_pct"] if best else None,
            "cpu1_full": any(r["cpu1_full"] for r in results), "noisy": any(r["noisy"] for r in results),
            "stopped_by": "no step" if last is None else last.get("stop", "end of ramp or time budget"),
            "failed_n": [r["n"] for r in results if not r["passed"]],
            "fixed_pct": line[0] if line else None, "per_call_pct": line[1] if line else None,
            "over_echo_per_call_pct": line[1] - base_fit[1] if line and base_fit else None,
            "cpu_bound_n": int((95 - line[0]) / line[1]) if line and line[1] > 0 else None,
            "oneway_ms_median": statistics.median(lat) if lat else None}
    if quiet:
        return
    print()
    if "robots" in out["summary"]:
        b = out["summary"]["robots"]
        print(f"baseline, robot echo (SIP leg, jitter buffer, G.711; no WebRTC): {fmt(b['per_call_pct'], '.2f')} % of "
              f"a core per call (+{fmt(b['fixed_pct'], '.1f')} % fixed), echo round trip {b['rtt_ms_median']:.0f} ms, "
              f"passing up to N={b['max_n_passing']}")
    for codec, s in out["summary"].items():
        if codec == "robots":
            continue
        flags = ("; CPU 1 full in some steps (clients starved)" if s["cpu1_full"] else "") + \
            ("; other processes used CPU 0 (noisy)" if s["noisy"] else "")
        failed = f"; failed at N={','.join(map(str, s['failed_n']))}" if s["failed_n"] else ""
        print(f"{codec:<5} max N passing: {s['max_n']} (server at {fmt(s['at_max_cpu_pct'])} % of its core){failed}; "
              f"stopped by: {s['stopped_by']}{flags}")
        print(f"      CPU fit: {fmt(s['per_call_pct'], '.2f')} % of a core per bridged call "
              f"(+{fmt(s['fixed_pct'], '.1f')} % fixed; {fmt(s['over_echo_per_call_pct'], '.2f')} % more than the "
              f"robot echo), 95 % of the core at N~{fmt(s['cpu_bound_n'])}; "
              f"one-way latency {fmt(s['oneway_ms_median'])} ms (median of passing steps)")
    print(f"elapsed {out['elapsed_s']:.0f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a ~1 minute smoke run (ramp 2,6; 4 s windows)")
    ap.add_argument("--ramp", default="2,6,12,16,20,24,28,32")
    ap.add_argument("--seconds", type=float, default=10.0, help="measurement window per step")
    ap.add_argument("--codecs", default="pcmu,opus")
    ap.add_argument("--nice", type=int, default=0,
                    help="run the server and the clients at this nice level (negative needs root): "
                         "shields the measurement from other processes on a shared machine")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args()
    if args.quick:
        args.ramp, args.seconds = "2,6", 4.0
    if (os.cpu_count() or 1) < 2:
        print("needs 2 CPUs (server on one, load on the other)", file=sys.stderr)
        return 1
    out = asyncio.run(run(args))
    if args.json:
        sys.stdout.write(json.dumps(out, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
