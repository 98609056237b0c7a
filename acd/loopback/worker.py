"""The pjsua2 worker process of ``acd loopback``: one SIP user agent placing up to four calls
at a time (pjsua2-python is built with PJSUA_MAX_CALLS = 4).

Run by the controller as ``python -m acd.loopback.worker [options]``; it talks JSON lines:

* stdin, one command a line: ``{"op": "call", "id": 7, "uri": "sip:echo@host:5060",
  "play": "/run/play.wav", "record": "/run/call-7.wav", "duration": 10.3}`` or
  ``{"op": "quit"}``: no more calls, exit once those in progress have ended (end of input
  does the same; SIGTERM hangs up at once);
* stdout: ``{"event": "ready", "sip_port": N}`` once, then ``{"event": "started", "id": 7}``
  and ``{"event": "done", "id": 7, ...}`` per call (see :meth:`LoopCall.result`).

pjsua prints its own log lines to fd 1, so fd 1 is pointed at stderr and the JSON goes to a
private copy of the original stdout. The library runs single-threaded (``threadCnt = 0``,
``mainThreadOnly``, ``libHandleEvents`` pumped here), every callback on this thread. Media
is the null sound device: each call's stream is connected to a WAV player (the speech) and
a WAV recorder (what comes back) on the same bridge tick, so the lag between the two files
is the round trip.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import pjsua2 as pj

__all__ = ["MAX_CALLS", "main"]

log = logging.getLogger(__name__)

MAX_CALLS = 4
_ANSWERED = (pj.PJSIP_INV_STATE_CONNECTING, pj.PJSIP_INV_STATE_CONFIRMED)
_TRANSPORTS = (("udp", pj.PJSIP_TRANSPORT_UDP), ("tcp", pj.PJSIP_TRANSPORT_TCP), ("tls", pj.PJSIP_TRANSPORT_TLS))
_JB_DISCARD_NONE = 0  # enum pjmedia_jb_discard_algo
_JB_START_MS = 30
_PJ_ETOOMANY = 70010
_SLOT_WAIT_S = 5.0
_CODECS = {"pcmu": ("PCMU/8000", 8000), "pcma": ("PCMA/8000", 8000), "g722": ("G722/16000", 16000)}


def _ms(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(1000.0 * (b - a), 1)


def _jb_steady(med: pj.MediaConfig, start_ms: int = _JB_START_MS) -> None:
    """Our jitter buffer must not make glitches of its own: one packet of slack, no discard.

    pjsua's default (progressive discard, lowest prefetch) keeps the buffer as short as it
    can; an echo that arrives a millisecond before our 20 ms bridge tick then misses it now
    and then, and the buffer inserts 20 ms, later discards 10, each costing up to 0.5 PESQ.
    Starting with 30 ms and never discarding (PJMEDIA_JB_DISCARD_NONE) keeps the recording
    clean; it grows only if the path really needs it, and never shrinks: with jitter on our
    own receive side (``--impair recv|both``) the acoustic round trip grows with it (pjsua's
    adaptive buffer measured PESQ 2.3 there instead of 4.2: a tester must not score itself).
    ``rtt_wire_ms`` is the target's own round trip either way. SWIG exposes the discard enum only as
    an opaque copy: the value is written into that copy.
    """
    med.jbInit = med.jbMinPre = start_ms
    try:
        algo = med.jbDiscardAlgo
        ctypes.c_int.from_address(int(algo)).value = _JB_DISCARD_NONE
        med.jbDiscardAlgo = algo
    except (TypeError, ValueError, AttributeError) as exc:
        log.warning("cannot turn jitter-buffer discard off (%s): timing may shift mid-call", exc)


class LoopCall(pj.Call):
    """One outgoing call: timestamps, media hook-up, hang-up after its talk time."""

    def __init__(self, worker: Worker, acc: pj.Account, job: dict[str, Any]) -> None:
        super().__init__(acc)
        self.worker = worker
        self.job = job
        self.t_invite: float | None = None
        self.t_18x: float | None = None
        self.t_answer: float | None = None
        self.t_media: float | None = None
        self.t_hangup: float | None = None
        self.state = pj.PJSIP_INV_STATE_NULL
        self.status_code: int | None = None
        self.reason = ""
        self.call_id = ""
        self.codec: str | None = None
        self.first_18x: int | None = None
        self.player: pj.AudioMediaPlayer | None = None
        self.recorder: pj.AudioMediaRecorder | None = None
        self.rtp: dict[str, Any] = {}
        self.errors: list[str] = []

    # ---- pjsua callbacks: never let an exception cross into C++ -------------------------
    def onCallState(self, prm: pj.OnCallStateParam) -> None:  # noqa: N802
        try:
            ci = self.getInfo()
            self.state = ci.state
            self.status_code, self.reason, self.call_id = ci.lastStatusCode, ci.lastReason, ci.callIdString
            if ci.state in _ANSWERED and self.t_answer is None:
                self.t_answer = time.monotonic()
        except pj.Error as exc:
            self.errors.append(f"onCallState: {exc.info()}")

    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:  # noqa: N802
        try:
            ev = prm.e
            if ev.type != pj.PJSIP_EVENT_TSX_STATE or ev.body.tsxState.type != pj.PJSIP_EVENT_RX_MSG:
                return
            tsx = ev.body.tsxState.tsx
            if tsx.method == "INVITE" and tsx.role == pj.PJSIP_ROLE_UAC and 180 <= tsx.statusCode < 190 \
                    and self.t_18x is None:
                self.t_18x, self.first_18x = time.monotonic(), tsx.statusCode
        except pj.Error as exc:
            self.errors.append(f"onCallTsxState: {exc.info()}")

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:  # noqa: N802
        try:
            ci = self.getInfo()  # keep it: iterating a temporary's vector sees nothing
            for mi in ci.media:
                if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE \
                        and mi.audioConfSlot >= 0:
                    si = self.getStreamInfo(mi.index)
                    self.codec = f"{si.codecName}/{si.codecClockRate}"
                    self._connect(self.getAudioMedia(mi.index))
                    break
        except pj.Error as exc:
            self.errors.append(f"media: {exc.info()}")

    def _connect(self, am: pj.AudioMedia) -> None:
        # player and recorder start on the same bridge tick: their lag is the round trip
        if self.player is None:
            self.player = pj.AudioMediaPlayer()
            self.player.createPlayer(self.job["play"], pj.PJMEDIA_FILE_NO_LOOP)
            self.recorder = pj.AudioMediaRecorder()
            self.recorder.createRecorder(self.job["record"])
            self.t_media = time.monotonic()
        self.player.startTransmit(am)
        am.startTransmit(self.recorder)

    # ---- driven from the main loop --------------------------------------------------------
    def start(self, uri: str) -> None:
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        self.t_invite = time.monotonic()
        self.makeCall(uri, prm)

    def has_id(self) -> bool:
        """False once pjsua forgot the call (or makeCall failed): using it then asserts."""
        try:
            return self.getId() >= 0
        except pj.Error:
            return False

    @property
    def ended(self) -> bool:
        if self.state == pj.PJSIP_INV_STATE_DISCONNECTED or not self.has_id():
            return True
        # pjsip cannot CANCEL before a provisional response: don't wait for timer B
        return self.t_hangup is not None and self.state in (pj.PJSIP_INV_STATE_NULL, pj.PJSIP_INV_STATE_CALLING) \
            and time.monotonic() - self.t_hangup > 2.0

    def tick(self, now: float) -> None:
        if self.t_hangup is not None or self.ended:
            return
        if self.t_media is not None and now - self.t_media >= self.job["duration"]:
            self.hang_up("")
        elif self.t_media is None and self.t_invite is not None and now - self.t_invite > self.job["answer_timeout"]:
            self.hang_up(f"no media within {self.job['answer_timeout']:g} s")

    def sample_rtp(self) -> None:
        try:
            st = self.getStreamStat(0)
        except pj.Error:
            return
        rx, tx, jb = st.rtcp.rxStat, st.rtcp.txStat, st.jbuf
        self.rtp = {"rx_packets": rx.pkt, "rx_lost": rx.loss, "rx_jitter_ms": round(rx.jitterUsec.mean / 1000, 2),
                    "tx_packets": tx.pkt, "far_end_lost": tx.loss, "jb_delay_ms": jb.avgDelayMsec,
                    "jb_lost": jb.lost, "jb_discard": jb.discard, "jb_empty": jb.empty}

    def hang_up(self, why: str) -> None:
        if why:
            self.errors.append(why)
        self.t_hangup = time.monotonic()
        if self.t_media is not None:
            self.sample_rtp()
        try:
            self.hangup(pj.CallOpParam(True))
        except pj.Error as exc:
            log.debug("hangup: %s", exc.info())

    def release(self) -> None:
        """Drop the player and recorder (this closes the WAV file)."""
        self.player = None
        self.recorder = None

    def result(self) -> dict[str, Any]:
        answered = self.t_answer is not None
        if not answered and not self.errors:
            self.errors.append(f"{self.status_code} {self.reason}".strip() if self.status_code else "no answer")
        return {
            "event": "done", "id": self.job["id"], "call_id": self.call_id, "answered": answered,
            "status_code": self.status_code, "reason": self.reason, "codec": self.codec,
            "setup_ms": _ms(self.t_invite, self.t_answer),
            "pdd_ms": _ms(self.t_invite, self.t_18x if self.t_18x is not None else self.t_answer),
            "first_18x": self.first_18x, "talk_s": round(self.t_hangup - self.t_media, 2)
            if self.t_hangup is not None and self.t_media is not None else None,
            "record": self.job["record"] if self.t_media is not None else None,
            "rtp": self.rtp or None, "error": "; ".join(self.errors) or None,
        }


class Worker:
    """The pjsua library, one account and the calls in progress."""

    def __init__(self, args: argparse.Namespace, out_fd: int) -> None:
        self.args = args
        self.out_fd = out_fd
        self.ep = pj.Endpoint()
        self.acc: pj.Account | None = None
        self.live: list[LoopCall] = []
        self.waiting: list[dict[str, Any]] = []  # jobs waiting for pjsua to free a call slot
        self._next_retry = 0.0
        self.sip_port = 0
        self.quitting = False  # no new calls; ends when the calls in progress have
        self.aborting = ""  # set by SIGTERM/SIGINT: hang up everything now
        self._buf = b""

    def emit(self, obj: dict[str, Any]) -> None:
        os.write(self.out_fd, (json.dumps(obj) + "\n").encode())

    def start(self) -> None:
        a = self.args
        codec_id, rate = _CODECS[a.codec]
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = MAX_CALLS
        cfg.uaConfig.userAgent = "homeline-loopback"
        cfg.logConfig.level = a.log_level
        cfg.logConfig.consoleLevel = a.log_level
        cfg.medConfig.ecTailLen = 0
        cfg.medConfig.noVad = True
        cfg.medConfig.clockRate = rate
        cfg.medConfig.sndClockRate = rate
        _jb_steady(cfg.medConfig, a.jb_ms)
        self.ep.libInit(cfg)
        for name, kind in _TRANSPORTS:
            tc = pj.TransportConfig()
            tc.boundAddress = tc.publicAddress = a.bind
            if name == "tls":
                tc.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
            try:
                tid = self.ep.transportCreate(kind, tc)
            except pj.Error as exc:
                log.warning("no %s transport: %s", name, exc.info())
                continue
            if name == "udp":
                self.sip_port = int(self.ep.transportGetInfo(tid).localName.rsplit(":", 1)[-1])
        self.ep.libStart()
        self.ep.audDevManager().setNullDev()
        for ci in self.ep.codecEnum2():  # offer the one codec (and telephone-event)
            keep = ci.codecId.upper().startswith(codec_id.upper()) or ci.codecId.startswith("telephone-event")
            self.ep.codecSetPriority(ci.codecId, 255 if keep else 0)
        self.acc = pj.Account()
        self.acc.create(self._account_config(), True)

    def _account_config(self) -> pj.AccountConfig:
        a = self.args
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{a.user or 'loopback'}@{a.bind}:{self.sip_port}"
        acfg.regConfig.registrarUri = ""
        if a.user and a.password is not None:
            acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", a.user, 0, a.password))
        if a.proxy:
            acfg.sipConfig.proxies.append(a.proxy)
        nat = acfg.natConfig
        nat.iceEnabled = False
        nat.sipOutboundUse = nat.contactRewriteUse = nat.viaRewriteUse = nat.sdpNatRewriteUse = 0
        nat.udpKaIntervalSec = 0
        acfg.mediaConfig.transportConfig.boundAddress = a.bind
        acfg.mediaConfig.transportConfig.publicAddress = a.bind
        acfg.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_DISABLED
        return acfg

    def place(self, job: dict[str, Any]) -> None:
        job.setdefault("answer_timeout", self.args.answer_timeout)
        job.setdefault("retry_until", time.monotonic() + _SLOT_WAIT_S)
        if len(self.live) >= MAX_CALLS:
            self.emit({"event": "done", "id": job["id"], "answered": False, "error": "worker busy"})
            return
        call = LoopCall(self, self.acc, job)
        try:
            call.start(job["uri"])
        except pj.Error as exc:
            if exc.status == _PJ_ETOOMANY and time.monotonic() < job["retry_until"]:
                # pjsua frees a call's slot a little after DISCONNECTED: try again shortly
                self.waiting.append(job)
                return
            call.errors.append(f"makeCall: {exc.info()}")
        self.live.append(call)
        self.emit({"event": "started", "id": job["id"]})

    def read_commands(self) -> None:
        while select.select([0], [], [], 0)[0]:
            chunk = os.read(0, 65536)
            if not chunk:
                self.quitting = True
                return
            self._buf += chunk
            *lines, self._buf = self._buf.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                cmd = json.loads(line)
                if cmd.get("op") == "call":
                    self.place(cmd)
                elif cmd.get("op") == "quit":
                    self.quitting = True

    def reap(self) -> None:
        for call in [c for c in self.live if c.ended]:
            self.live.remove(call)
            call.release()
            self.emit(call.result())
        gc.collect()

    def run(self) -> None:
        self.emit({"event": "ready", "sip_port": self.sip_port})
        while True:
            self.ep.libHandleEvents(10)
            now = time.monotonic()
            for call in self.live:
                call.tick(now)
            self.reap()
            if self.waiting and now >= self._next_retry:
                self._next_retry = now + 0.05
                jobs, self.waiting = self.waiting, []
                for job in jobs:
                    self.place(job)
            if self.aborting:
                for call in self.live:
                    if call.t_hangup is None:
                        call.hang_up(f"stopped by {self.aborting}")
                for job in self.waiting:
                    self.emit({"event": "done", "id": job["id"], "answered": False,
                               "error": f"stopped by {self.aborting}"})
                self.waiting.clear()
            if self.quitting or self.aborting:
                if not self.live and not self.waiting:
                    break
            else:
                self.read_commands()

    def shutdown(self) -> None:
        # pjsua asserts if a Call or Account outlives libDestroy()
        self.live.clear()
        gc.collect()
        if self.acc is not None:
            self.acc.shutdown()
            self.acc = None
        gc.collect()
        self.ep.libDestroy(pj.PJSUA_DESTROY_NO_NETWORK)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m acd.loopback.worker", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bind", default="127.0.0.1", help="local IP for SIP and RTP")
    p.add_argument("--codec", choices=sorted(_CODECS), default="pcmu")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--proxy", help="outbound proxy URI (the impairment relay)")
    p.add_argument("--answer-timeout", type=float, default=30.0)
    p.add_argument("--log-level", type=int, default=1, help="pjsua log level (stderr)")
    p.add_argument("--jb-ms", type=int, default=_JB_START_MS,
                   help="our jitter buffer's fixed start (ms): deeper when our receive side is impaired")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out_fd = os.dup(1)
    os.dup2(2, 1)  # pjsua's console log must not mix with the JSON
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="worker %(levelname)s: %(message)s")
    worker = Worker(args, out_fd)

    def on_signal(signum: int, _frame: object) -> None:
        worker.aborting = signal.Signals(signum).name  # only a flag: never raise inside pjsua

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rc = 0
    try:
        worker.start()
        worker.run()
    except (pj.Error, OSError, ValueError) as exc:
        log.error("worker failed: %s", exc.info() if isinstance(exc, pj.Error) else exc)
        rc = 1
    finally:
        worker.shutdown()
    return rc


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # pjsua is destroyed: skip the teardown of SWIG objects
