#!/usr/bin/env python3
"""Independent SIP test peer built on pjsua2 (PJSIP 2.15).

Run it as a subprocess, one process per peer (pjsua allows one library
instance per process and at most 4 calls):

    python tests/peers/pjsua_peer.py call --uri sip:echo@127.0.0.1:5060 [...]
    python tests/peers/pjsua_peer.py answer --local-port 5070 [...]
    python tests/peers/pjsua_peer.py register --registrar sip:127.0.0.1:5060 --user U --password P

It prints exactly ONE JSON object on stdout when it ends (everything pjsua
writes to the console goes to stderr or to ``--log-file``).  Exit code 0 means
the scenario succeeded (see each mode), 1 otherwise.  A hard ``--timeout``
(default 30 s) always applies; a watchdog thread emits the JSON with
``"error"`` set and exits if shutdown itself hangs.

The pjsua library is used strictly single-threaded: ``threadCnt = 0``,
``mainThreadOnly = True`` and ``libHandleEvents()`` pumped from this thread, so
all callbacks run on the main thread.  The null audio device is used; media
only flows between calls and WAV players/recorders via the conference bridge.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional

# --------------------------------------------------------------------------
# stdout discipline: pjsua writes its early log lines (before our LogConfig is
# applied) straight to fd 1.  Keep a private copy of the real stdout for the
# final JSON and point fd 1 at stderr for everything else.
# --------------------------------------------------------------------------
_JSON_FD = os.dup(1)
os.dup2(2, 1)
_emit_lock = threading.Lock()
_emitted = False


def emit(obj: Dict[str, Any]) -> bool:
    """Write the single JSON result. Returns False if already written."""
    global _emitted
    with _emit_lock:
        if _emitted:
            return False
        _emitted = True
        data = (json.dumps(obj, default=str, sort_keys=False) + "\n").encode()
        try:
            os.write(_JSON_FD, data)
        except OSError:
            pass
        return True


try:
    import pjsua2 as pj
except Exception as _exc:  # pragma: no cover - environment problem
    emit({"error": f"cannot import pjsua2: {_exc!r}"})
    sys.exit(1)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
MEDIA_STATUS = {
    pj.PJSUA_CALL_MEDIA_NONE: "NONE",
    pj.PJSUA_CALL_MEDIA_ACTIVE: "ACTIVE",
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "LOCAL_HOLD",
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "REMOTE_HOLD",
    pj.PJSUA_CALL_MEDIA_ERROR: "ERROR",
}
MEDIA_DIR = {
    pj.PJMEDIA_DIR_NONE: "inactive",
    pj.PJMEDIA_DIR_ENCODING: "sendonly",
    pj.PJMEDIA_DIR_DECODING: "recvonly",
    pj.PJMEDIA_DIR_ENCODING_DECODING: "sendrecv",
}
INV_STATE = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}
TRANSPORTS = {
    "udp": pj.PJSIP_TRANSPORT_UDP,
    "tcp": pj.PJSIP_TRANSPORT_TCP,
    "tls": pj.PJSIP_TRANSPORT_TLS,
}
_DIR_RE = re.compile(r"^a=(sendrecv|sendonly|recvonly|inactive)\s*$", re.M)


def sdp_audio_direction(msg: str) -> Optional[str]:
    """Direction of the first audio m-line of the SDP body in a raw SIP message.

    Media-level attribute wins over session-level; default is sendrecv; a port
    of 0 (rejected stream) is reported as "rejected".  None when no SDP.
    """
    if not msg:
        return None
    parts = re.split(r"\r?\n\r?\n", msg, maxsplit=1)
    body = parts[1] if len(parts) == 2 else ""
    if "v=0" not in body:
        return None
    body = body.replace("\r\n", "\n")
    sections = re.split(r"(?m)^(?=m=)", body)
    session = sections[0]
    audio = next((s for s in sections[1:] if s.startswith("m=audio")), None)
    if audio is None:
        return None
    mline = audio.splitlines()[0].split()
    if len(mline) > 1 and mline[1] == "0":
        return "rejected"
    m = _DIR_RE.search(audio) or _DIR_RE.search(session)
    return m.group(1) if m else "sendrecv"


def parse_headers(msg: str) -> Dict[str, List[str]]:
    """Header name (lower-case, compact forms not expanded) -> list of values."""
    head = re.split(r"\r?\n\r?\n", msg or "", maxsplit=1)[0]
    lines = head.replace("\r\n", "\n").split("\n")[1:]
    out: Dict[str, List[str]] = {}
    cur: Optional[str] = None
    for line in lines:
        if line[:1] in (" ", "\t") and cur is not None:
            out[cur][-1] += " " + line.strip()
            continue
        if ":" not in line:
            continue
        name, _, value = line.partition(":")
        cur = name.strip().lower()
        out.setdefault(cur, []).append(value.strip())
    return out


def first_line(msg: str) -> str:
    return (msg or "").split("\r\n", 1)[0].split("\n", 1)[0]


def describe_exc(exc: BaseException) -> str:
    if isinstance(exc, pj.Error):
        try:
            return f"pjsua2.Error: {exc.title}: {exc.reason} (status {exc.status})"
        except Exception:
            pass
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------
# call object
# --------------------------------------------------------------------------
class PeerCall(pj.Call):
    """A pjsua2 Call that records everything the tests want to know."""

    def __init__(self, peer: "Peer", acc: pj.Account, call_id: int = pj.PJSUA_INVALID_ID,
                 index: int = 0, plan: Optional[Dict[str, Any]] = None):
        super().__init__(acc, call_id)
        self.peer = peer
        self.index = index
        self.plan = plan or {}
        self.t_created = time.monotonic()
        self.t_invite: Optional[float] = None      # INVITE sent / received
        self.t_connected: Optional[float] = None   # 200 OK seen (CONNECTING/CONFIRMED)
        self.t_disconnected: Optional[float] = None
        self.state = "NULL"
        self.state_log: List[Dict[str, Any]] = []
        self.media_state_log: List[Dict[str, Any]] = []
        self.sdp_answers: List[Dict[str, Any]] = []
        self.status_code: Optional[int] = None
        self.reason: Optional[str] = None
        self.disconnect_reason: Optional[str] = None
        self.hangup_by: Optional[str] = None
        self.from_uri: Optional[str] = None
        self.to_uri: Optional[str] = None
        self.request_uri: Optional[str] = None
        self.invite_headers: Dict[str, List[str]] = {}
        self.codec: Optional[str] = None
        self.rtp: Dict[str, Any] = {}
        self.dtmf_received = ""
        self.dtmf_sent: Optional[str] = None
        self.hold: Dict[str, Any] = {}
        self.unhold: Dict[str, Any] = {}
        self.pending_reinvite: Optional[str] = None  # "hold" / "unhold"
        self.answered = False
        self.answer_sent: Optional[int] = None
        self.errors: List[str] = []
        self.player: Optional[pj.AudioMediaPlayer] = None
        self.recorder: Optional[pj.AudioMediaRecorder] = None
        self.record_path: Optional[str] = self.plan.get("record")
        self._last_stat = 0.0
        self._done_actions: set = set()
        self._hangup_sent = False

    # ---- helpers ---------------------------------------------------------
    def rel(self) -> float:
        return round(time.monotonic() - self.peer.t0, 3)

    def _err(self, where: str, exc: BaseException) -> None:
        msg = f"{where}: {exc!r}"
        self.errors.append(msg)
        self.peer.log(msg)

    @property
    def disconnected(self) -> bool:
        return self.state == "DISCONNECTED"

    @property
    def settled(self) -> bool:
        """Disconnected, or hung up while still CALLING with no response at all:
        pjsip cannot CANCEL before a provisional response, so such a call only
        dies at timer B (32 s) -- don't wait for it."""
        return (self.disconnected or not self.has_id()
                or (self._hangup_sent and self.state in ("NULL", "CALLING")))

    @property
    def confirmed(self) -> bool:
        return self.state == "CONFIRMED"

    # ---- callbacks (all on the main thread) ------------------------------
    def onCallState(self, prm):  # noqa: N802 (pjsua2 naming)
        try:
            ci = self.getInfo()
            self.state = INV_STATE.get(ci.state, str(ci.state))
            self.status_code = ci.lastStatusCode
            self.reason = ci.lastReason
            if self.from_uri is None:
                # for outgoing calls localUri is From, for incoming remoteUri is From
                if ci.role == pj.PJSIP_ROLE_UAC:
                    self.from_uri, self.to_uri = ci.localUri, ci.remoteUri
                else:
                    self.from_uri, self.to_uri = ci.remoteUri, ci.localUri
            self.state_log.append({"t": self.rel(), "state": self.state,
                                   "code": ci.lastStatusCode, "reason": ci.lastReason})
            if ci.state in (pj.PJSIP_INV_STATE_CONNECTING, pj.PJSIP_INV_STATE_CONFIRMED):
                if self.t_connected is None:
                    self.t_connected = time.monotonic()
                    self.answered = True
            if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                self.t_disconnected = time.monotonic()
                self.disconnect_reason = ci.lastReason
                if self.hangup_by is None:
                    self.hangup_by = "remote" if self.answered else None
        except Exception as exc:  # never let an exception cross into C++
            self._err("onCallState", exc)

    def onCallMediaState(self, prm):  # noqa: N802
        try:
            ci = self.getInfo()
            for mi in ci.media:
                if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                    continue
                entry = {"t": self.rel(), "index": mi.index,
                         "status": MEDIA_STATUS.get(mi.status, str(mi.status)),
                         "dir": MEDIA_DIR.get(mi.dir, str(mi.dir))}
                try:
                    si = self.getStreamInfo(mi.index)
                    self.codec = f"{si.codecName}/{si.codecClockRate}"
                    entry["codec"] = self.codec
                except Exception:
                    pass
                self.media_state_log.append(entry)
                if mi.status in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_LOCAL_HOLD,
                                 pj.PJSUA_CALL_MEDIA_REMOTE_HOLD) and mi.audioConfSlot >= 0:
                    self._connect_audio(mi.index, mi.audioConfSlot)
        except Exception as exc:
            self._err("onCallMediaState", exc)

    def _connect_audio(self, med_idx: int, slot: int) -> None:
        # pjsua 2.15 destroys and recreates the stream (and its conference
        # slot, which may get a previously used number) on every re-INVITE,
        # so reconnect on every media-state callback; connecting an already
        # connected pair is a no-op in the conference bridge.
        am = self.getAudioMedia(med_idx)
        if self.plan.get("play"):
            if self.player is None:
                self.player = pj.AudioMediaPlayer()
                self.player.createPlayer(self.plan["play"], 0)  # 0 = loop
            self.player.startTransmit(am)
        if self.record_path:
            if self.recorder is None:
                self.recorder = pj.AudioMediaRecorder()
                self.recorder.createRecorder(self.record_path)
            am.startTransmit(self.recorder)

    def onCallTsxState(self, prm):  # noqa: N802
        try:
            ev = prm.e
            if ev.type != pj.PJSIP_EVENT_TSX_STATE:
                return
            ts = ev.body.tsxState
            tsx = ts.tsx
            if tsx.method != "INVITE" or tsx.role != pj.PJSIP_ROLE_UAC:
                return
            if ts.type != pj.PJSIP_EVENT_RX_MSG:
                return
            code = tsx.statusCode
            if code < 200 or code in (401, 407):
                return
            msg = ts.src.rdata.wholeMsg
            entry = {"t": self.rel(), "code": code, "reason": tsx.statusText,
                     "dir": sdp_audio_direction(msg), "for": self.pending_reinvite or "initial"}
            self.sdp_answers.append(entry)
            if self.pending_reinvite == "hold":
                self.hold.update(code=code, answer_dir=entry["dir"])
            elif self.pending_reinvite == "unhold":
                self.unhold.update(code=code, answer_dir=entry["dir"])
            self.pending_reinvite = None
        except Exception as exc:
            self._err("onCallTsxState", exc)

    def onDtmfDigit(self, prm):  # noqa: N802
        try:
            self.dtmf_received += prm.digit
        except Exception as exc:
            self._err("onDtmfDigit", exc)

    # ---- scheduled actions (called from the main loop) -------------------
    def tick(self, now: float) -> None:
        if self.disconnected:
            return
        if self.t_connected is not None and self.confirmed:
            talk = now - self.t_connected
            p = self.plan
            if p.get("hold_at") is not None and "hold" not in self._done_actions and talk >= p["hold_at"]:
                self._try_action("hold", self._do_hold)
            if (p.get("unhold_at") is not None and "unhold" not in self._done_actions
                    and talk >= p["unhold_at"] and "hold" in self._done_actions
                    and self.pending_reinvite is None):
                self._try_action("unhold", self._do_unhold)
            if p.get("dtmf") and "dtmf" not in self._done_actions and talk >= p.get("dtmf_at", 1.0):
                self._try_action("dtmf", self._do_dtmf)
            for i, (digits, at) in enumerate(p.get("dtmf_seq") or ()):
                if f"dtmf{i}" not in self._done_actions and talk >= at:
                    self._try_action(f"dtmf{i}", lambda d=digits: self._do_dtmf(d))
            if now - self._last_stat >= 0.5:
                self.sample_rtp()
            if p.get("duration") is not None and talk >= p["duration"]:
                self.local_hangup()

    def _try_action(self, name: str, fn) -> None:
        # re-INVITEs can fail with "session state" while another transaction is
        # pending: keep retrying until the action succeeds (or the call ends).
        try:
            fn()
            self._done_actions.add(name)
        except pj.Error as exc:
            key = f"_{name}_failures"
            n = getattr(self, key, 0) + 1
            setattr(self, key, n)
            if n in (1, 50):
                self.peer.log(f"{name} attempt failed ({n}): {exc.info() if hasattr(exc, 'info') else exc}")
            if n >= 200:
                self._done_actions.add(name)
                self.errors.append(f"{name} failed: {getattr(exc, 'reason', exc)}")

    def _do_hold(self) -> None:
        self.pending_reinvite = "hold"
        try:
            self.setHold(pj.CallOpParam(True))
        except Exception:
            self.pending_reinvite = None
            raise
        self.hold["t"] = self.rel()

    def _do_unhold(self) -> None:
        prm = pj.CallOpParam(True)
        prm.opt.flag = pj.PJSUA_CALL_UNHOLD
        self.pending_reinvite = "unhold"
        try:
            self.reinvite(prm)
        except Exception:
            self.pending_reinvite = None
            raise
        self.unhold["t"] = self.rel()

    def _do_dtmf(self, digits: Optional[str] = None) -> None:
        digits = digits or self.plan["dtmf"]
        if self.plan.get("dtmf_method", "rfc4733") == "info":
            prm = pj.CallSendDtmfParam()
            prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
            prm.digits = digits
            self.sendDtmf(prm)
        else:
            self.dialDtmf(digits)
        self.dtmf_sent = (self.dtmf_sent or "") + digits

    def sample_rtp(self) -> None:
        self._last_stat = time.monotonic()
        if not self.has_id():
            return
        try:
            ci = self.getInfo()
            for mi in ci.media:
                if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status != pj.PJSUA_CALL_MEDIA_NONE:
                    st = self.getStreamStat(mi.index).rtcp
                    self.rtp = {"rx_pkt": st.rxStat.pkt, "tx_pkt": st.txStat.pkt,
                                "rx_loss": st.rxStat.loss, "rx_jitter_us": st.rxStat.jitterUsec.last}
                    break
        except Exception:
            pass

    def has_id(self) -> bool:
        """False when makeCall() failed: any pjsua call on such a Call asserts (abort)."""
        try:
            return self.getId() >= 0
        except Exception:
            return False

    def local_hangup(self, code: int = 0) -> None:
        if self.disconnected or self._hangup_sent or not self.has_id():
            return
        self._hangup_sent = True
        self.sample_rtp()
        self.hangup_by = "local"
        try:
            prm = pj.CallOpParam(True)
            if code:
                prm.statusCode = code
            self.hangup(prm)
        except pj.Error as exc:
            self.peer.log(f"hangup failed: {exc!r}")

    def release_media(self) -> None:
        """Drop player/recorder (closes the WAV file). Only call once disconnected."""
        self.player = None
        self.recorder = None

    # ---- report ----------------------------------------------------------
    def hold_ok(self) -> Optional[bool]:
        if self.plan.get("hold_at") is None:
            return None
        code = self.hold.get("code")
        return bool(code and 200 <= code < 300 and self.hold.get("answer_dir") in ("recvonly", "inactive"))

    def unhold_ok(self) -> Optional[bool]:
        if self.plan.get("unhold_at") is None:
            return None
        code = self.unhold.get("code")
        if not (code and 200 <= code < 300 and self.unhold.get("answer_dir") == "sendrecv"):
            return False
        # the media status after the unhold answer must be ACTIVE again
        after = [m for m in self.media_state_log if m["t"] >= self.unhold.get("t", 0)]
        return bool(after) and after[-1]["status"] == "ACTIVE"

    def report(self) -> Dict[str, Any]:
        setup_ms = None
        if self.t_connected is not None and self.t_invite is not None:
            setup_ms = round((self.t_connected - self.t_invite) * 1000.0, 1)
        dur = None
        if self.t_connected is not None:
            end = self.t_disconnected or time.monotonic()
            dur = round(end - self.t_connected, 3)
        return {
            "index": self.index,
            "from": self.from_uri,
            "to": self.to_uri,
            "request_uri": self.request_uri,
            "answered": self.answered,
            "status_code": self.status_code,
            "reason": self.reason,
            "setup_ms": setup_ms,
            "call_duration_s": dur,
            "hangup_by": self.hangup_by,
            "disconnect_reason": self.disconnect_reason,
            "codec": self.codec,
            "hold_ok": self.hold_ok(),
            "unhold_ok": self.unhold_ok(),
            "hold": self.hold or None,
            "unhold": self.unhold or None,
            "dtmf_sent": self.dtmf_sent,
            "dtmf_received": self.dtmf_received,
            "media_state_log": self.media_state_log,
            "sdp_answers": self.sdp_answers,
            "state_log": self.state_log,
            "rtp": self.rtp or None,
            "record": self.record_path,
            "invite_headers": self.invite_headers or None,
            "errors": self.errors,
        }


# --------------------------------------------------------------------------
# accounts
# --------------------------------------------------------------------------
class PeerAccount(pj.Account):
    def __init__(self, peer: "Peer"):
        super().__init__()
        self.peer = peer
        self.reg_events: List[Dict[str, Any]] = []

    def onRegState(self, prm):  # noqa: N802
        try:
            self.reg_events.append({"t": round(time.monotonic() - self.peer.t0, 3),
                                    "code": prm.code, "reason": prm.reason,
                                    "expires": prm.expiration})
        except Exception as exc:
            self.peer.log(f"onRegState: {exc!r}")

    def onIncomingCall(self, prm):  # noqa: N802
        try:
            self.peer.on_incoming(self, prm)
        except Exception as exc:
            self.peer.log(f"onIncomingCall: {exc!r}\n{traceback.format_exc()}")


# --------------------------------------------------------------------------
# the peer process
# --------------------------------------------------------------------------
class Peer:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.timeout
        self.ep: Optional[pj.Endpoint] = None
        self.acc: Optional[PeerAccount] = None
        self.calls: List[PeerCall] = []        # every call ever (reports)
        self.live: List[PeerCall] = []         # pjsua objects still referenced
        self.pending_answer: List[Dict[str, Any]] = []
        self.result: Dict[str, Any] = {"mode": args.mode, "error": None}
        if args.mode == "call":
            self.result.update({
                "answered": False, "status_code": None, "reason": None, "setup_ms": None,
                "call_duration_s": None, "hold_ok": None, "unhold_ok": None,
                "media_state_log": [], "disconnect_reason": None,
            })
        self.transport_ids: Dict[str, int] = {}
        self.local_port: Optional[int] = None
        self.stop_reason: Optional[str] = None   # set by SIGTERM/SIGINT handler
        self.closing = False

    # ---- logging ---------------------------------------------------------
    def log(self, msg: str) -> None:
        sys.stderr.write(f"[pjsua_peer {time.monotonic() - self.t0:7.3f}] {msg}\n")
        sys.stderr.flush()

    # ---- lifecycle -------------------------------------------------------
    def start(self) -> None:
        a = self.args
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = 4
        cfg.uaConfig.userAgent = a.user_agent
        cfg.logConfig.level = a.log_level
        cfg.logConfig.msgLogging = 1 if a.log_level >= 4 else 0
        if a.log_file:
            cfg.logConfig.filename = a.log_file
            cfg.logConfig.consoleLevel = 0
        else:
            cfg.logConfig.consoleLevel = min(a.log_level, 1)
        cfg.medConfig.ecTailLen = 0
        cfg.medConfig.noVad = True
        cfg.medConfig.clockRate = a.clock_rate
        cfg.medConfig.sndClockRate = a.clock_rate
        self.ep.libInit(cfg)

        transports = [t.strip().lower() for t in a.transport.split(",") if t.strip()]
        for i, name in enumerate(transports):
            if name not in TRANSPORTS:
                raise ValueError(f"unknown transport {name!r}")
            tc = pj.TransportConfig()
            tc.port = a.local_port or 0
            tc.boundAddress = a.bind
            tc.publicAddress = a.bind
            if name == "tls":
                if a.tls_cert:
                    tc.tlsConfig.certFile = a.tls_cert
                if a.tls_key:
                    tc.tlsConfig.privKeyFile = a.tls_key
                if a.tls_ca:
                    tc.tlsConfig.CaListFile = a.tls_ca
                tc.tlsConfig.verifyServer = bool(a.tls_verify)
                tc.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
            tid = self.ep.transportCreate(TRANSPORTS[name], tc)
            self.transport_ids[name] = tid
            if self.local_port is None:
                self.local_port = self.ep.transportGetInfo(tid).localName.rsplit(":", 1)[-1]
                try:
                    self.local_port = int(self.local_port)
                except ValueError:
                    pass
        self.ep.libStart()
        self.ep.audDevManager().setNullDev()
        if a.codec:
            self.restrict_codecs([c.strip() for c in a.codec.split(",") if c.strip()])
        self.result["local_port"] = self.local_port

    def restrict_codecs(self, wanted: List[str]) -> None:
        """Only the wanted codecs are offered/accepted (telephone-event is always added)."""
        infos = list(self.ep.codecEnum2())
        matched = []
        for ci in infos:
            name = ci.codecId.split("/")[0].upper()
            prio = 0
            for rank, w in enumerate(wanted):
                wu = w.upper()
                if ci.codecId.upper() == wu or ci.codecId.upper().startswith(wu + "/") or name == wu:
                    prio = 255 - rank
                    break
            self.ep.codecSetPriority(ci.codecId, prio)
            if prio:
                matched.append(ci.codecId)
        if not matched:
            raise ValueError(f"codec(s) {wanted} not available; have {[c.codecId for c in infos]}")
        self.result["codecs_enabled"] = matched

    def make_account(self, register: bool = False) -> PeerAccount:
        a = self.args
        acfg = pj.AccountConfig()
        host = a.bind
        user = a.user or ("answer" if a.mode == "answer" else "peer")
        if a.id:
            acfg.idUri = a.id
        elif register and a.registrar:
            reg_host = re.sub(r"^sips?:", "", a.registrar).split(";")[0]
            acfg.idUri = f"sip:{user}@{reg_host}"
        else:
            acfg.idUri = f"sip:{user}@{host}:{self.local_port}"
        if register:
            acfg.regConfig.registrarUri = a.registrar
            acfg.regConfig.timeoutSec = a.expires
            acfg.regConfig.retryIntervalSec = 0
            acfg.regConfig.firstRetryIntervalSec = 0
            acfg.regConfig.unregWaitMsec = 1500
        else:
            acfg.regConfig.registrarUri = ""
        if a.user and a.password is not None:
            acfg.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", a.realm or "*", a.user, 0, a.password))
        if a.proxy:
            acfg.sipConfig.proxies.append(a.proxy)
        nat = acfg.natConfig
        nat.iceEnabled = False
        nat.sipOutboundUse = 0
        nat.contactRewriteUse = 0
        nat.viaRewriteUse = 0
        nat.sdpNatRewriteUse = 0
        nat.udpKaIntervalSec = 0
        acfg.mediaConfig.transportConfig.boundAddress = a.bind
        acfg.mediaConfig.transportConfig.publicAddress = a.bind
        if a.rtp_port:
            acfg.mediaConfig.transportConfig.port = a.rtp_port
            acfg.mediaConfig.transportConfig.portRange = 0
        acfg.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_DISABLED
        acfg.callConfig.timerUse = pj.PJSUA_SIP_TIMER_INACTIVE if a.no_timer else pj.PJSUA_SIP_TIMER_OPTIONAL
        acc = PeerAccount(self)
        acc.create(acfg, True)
        self.acc = acc
        return acc

    def pump(self, ms: int = 10) -> None:
        self.ep.libHandleEvents(ms)

    def pump_until(self, cond, max_s: float) -> bool:
        end = min(time.monotonic() + max_s, self.deadline + 5.0)  # watchdog fires at +8
        while time.monotonic() < end:
            if cond():
                return True
            self.pump(10)
        return cond()

    def time_left(self) -> float:
        if self.stop_reason:
            return 0.0
        return self.deadline - time.monotonic()

    def plan(self, record: Optional[str]) -> Dict[str, Any]:
        a = self.args
        return {
            "play": a.play, "record": record, "duration": a.duration,
            "hold_at": a.hold_at, "unhold_at": a.unhold_at,
            "dtmf": a.dtmf, "dtmf_at": a.dtmf_at, "dtmf_method": a.dtmf_method,
            "dtmf_seq": [(d, float(t)) for d, _, t in (x.rpartition("@") for x in a.dtmf_seq or [])],
        }

    def shutdown(self) -> None:
        """Hang up everything, drop every pjsua object, destroy the library."""
        if self.ep is None:
            return
        self.closing = True  # late INVITEs get 503 and are not kept
        # NB: no `for c in ...` loops here: a leaked loop variable would keep a
        # Call alive past libDestroy() and its destructor asserts in pjsua.
        try:
            [c.local_hangup() for c in self.live if not c.disconnected]
            self.pump_until(lambda: all(c.settled for c in self.live), 3.0)
        except Exception as exc:
            self.log(f"shutdown hangup: {exc!r}")
        [c.release_media() for c in self.live]
        self.live.clear()
        # reports are plain dicts by now; drop the Call objects themselves
        self.calls_reports = [c.report() for c in self.calls]
        self.calls.clear()
        self.pending_answer.clear()
        gc.collect()
        try:
            # let final transactions (BYE/CANCEL responses) complete
            self.pump_until(lambda: False, 0.15)
        except Exception:
            pass
        if self.acc is not None:
            registered = bool(self.acc.reg_events)
            try:
                self.acc.shutdown()  # sends REGISTER Expires: 0 when registered
                if registered:
                    self.pump_until(lambda: False, 0.4)
            except Exception as exc:
                self.log(f"acc.shutdown: {exc!r}")
            self.acc = None
        gc.collect()
        try:
            # NO_NETWORK: skip pjsua's unconditional ~1 s wait for network
            # activity; we already pumped the final transactions above.
            self.ep.libDestroy(pj.PJSUA_DESTROY_NO_NETWORK)
        except Exception as exc:
            self.log(f"libDestroy: {exc!r}")
        self.ep = None

    # ---- incoming calls ----------------------------------------------------
    def on_incoming(self, acc: PeerAccount, prm) -> None:
        a = self.args
        if self.closing or a.mode != "answer":
            # call/register modes reject; and never keep a reference while shutting down: a Call object that
            # outlives libDestroy() asserts in its destructor
            late = pj.Call(acc, prm.callId)
            late.answer(self._op(503 if self.closing else 486))
            del late
            return
        n = len(self.calls)
        record = None
        if a.record:
            record = a.record
            if "{n}" in record:
                record = record.replace("{n}", str(n))
            elif n > 0:
                p = Path(record)
                record = str(p.with_name(f"{p.stem}_{n}{p.suffix}"))
        call = PeerCall(self, acc, prm.callId, index=n, plan=self.plan(record))
        call.t_invite = time.monotonic()
        msg = prm.rdata.wholeMsg
        call.request_uri = first_line(msg).split(" ")[1] if " " in first_line(msg) else None
        call.invite_headers = parse_headers(msg)
        self.calls.append(call)
        self.live.append(call)
        if a.calls and n >= a.calls:
            # beyond the expected count: reject so the test notices
            call.answer_sent = 486
            call.answer(self._op(486))
            return
        if a.ring_ms > 0 or a.answer_code != 200:
            call.answer(self._op(180))
        self.pending_answer.append({"call": call, "at": time.monotonic() + a.ring_ms / 1000.0})

    @staticmethod
    def _op(code: int) -> pj.CallOpParam:
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        return prm

    def _process_pending_answers(self) -> None:
        now = time.monotonic()
        for item in list(self.pending_answer):
            if now < item["at"]:
                continue
            self.pending_answer.remove(item)
            call: PeerCall = item["call"]
            if call.disconnected:
                continue
            code = self.args.answer_code
            call.answer_sent = code
            try:
                call.answer(self._op(code))
            except pj.Error as exc:
                call.errors.append(f"answer({code}) failed: {getattr(exc, 'reason', exc)}")

    # ---- modes -------------------------------------------------------------
    def run_call(self) -> int:
        a = self.args
        acc = self.make_account(register=False)
        uri = a.uri
        tp = a.transport.split(",")[0].strip().lower()
        if tp != "udp" and "transport=" not in uri.lower():
            uri += f";transport={tp}"
        call = PeerCall(self, acc, index=0, plan=self.plan(a.record))
        self.calls.append(call)
        self.live.append(call)
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        for h in a.header or []:
            name, _, value = h.partition(":")
            sh = pj.SipHeader()
            sh.hName = name.strip()
            sh.hValue = value.strip()
            prm.txOption.headers.append(sh)
        call.t_invite = time.monotonic()
        call.makeCall(uri, prm)
        while not call.disconnected:
            if self.time_left() <= 0:
                call.errors.append(f"terminated by {self.stop_reason}" if self.stop_reason
                                   else f"timeout in state {call.state}")
                call.local_hangup()
                break
            self.pump(10)
            call.tick(time.monotonic())
        self.pump_until(lambda: call.settled, 3.0)
        rep = call.report()
        self.result.update({
            "answered": rep["answered"],
            "status_code": rep["status_code"],
            "reason": rep["reason"],
            "setup_ms": rep["setup_ms"],
            "call_duration_s": rep["call_duration_s"],
            "hold_ok": rep["hold_ok"],
            "unhold_ok": rep["unhold_ok"],
            "media_state_log": rep["media_state_log"],
            "disconnect_reason": rep["disconnect_reason"],
            "hangup_by": rep["hangup_by"],
            "codec": rep["codec"],
            "dtmf_sent": rep["dtmf_sent"],
            "dtmf_received": rep["dtmf_received"],
            "hold": rep["hold"],
            "unhold": rep["unhold"],
            "sdp_answers": rep["sdp_answers"],
            "state_log": rep["state_log"],
            "rtp": rep["rtp"],
            "from": rep["from"],
            "to": rep["to"],
            "record": rep["record"],
        })
        errs = list(rep["errors"])
        if errs:
            self.result["error"] = "; ".join(errs)
        ok = rep["answered"] and call.disconnected and not errs
        if a.hold_at is not None and not rep["hold_ok"]:
            ok = False
        if a.unhold_at is not None and not rep["unhold_ok"]:
            ok = False
        return 0 if ok else 1

    def run_answer(self) -> int:
        a = self.args
        register = bool(a.registrar)
        acc = self.make_account(register=register)
        if register:
            ok = self.pump_until(lambda: bool(acc.reg_events), min(10.0, self.time_left()))
            self.result["registration"] = acc.reg_events[-1] if acc.reg_events else None
            if not ok or not (200 <= acc.reg_events[-1]["code"] < 300):
                self.result["error"] = "registration failed"
        self.result["ready_t"] = round(time.monotonic() - self.t0, 3)
        if a.ready_file:
            tmp = Path(a.ready_file + ".tmp")
            tmp.write_text(json.dumps({"local_port": self.local_port}))
            os.replace(tmp, a.ready_file)  # atomic: readers never see a partial file
        while self.time_left() > 0:
            self.pump(10)
            self._process_pending_answers()
            now = time.monotonic()
            for c in list(self.live):
                c.tick(now)
                if c.disconnected:
                    # free the pjsua call slot (max 4 per process)
                    c.release_media()
                    self.live.remove(c)
            done = [c for c in self.calls if c.disconnected]
            if a.calls and len(done) >= a.calls and not self.live:
                break
        else:
            if self.stop_reason:
                self.result["stopped_by"] = self.stop_reason
            else:
                self.result["timed_out"] = True
        return -1  # computed after shutdown, from reports

    def finish_answer(self) -> int:
        a = self.args
        reports = getattr(self, "calls_reports", [])
        self.result["calls"] = reports
        if a.calls and len(reports) < a.calls:
            self.result["error"] = self.result["error"] or f"expected {a.calls} call(s), got {len(reports)}"
        if any(r["errors"] for r in reports) and not self.result["error"]:
            self.result["error"] = "; ".join(e for r in reports for e in r["errors"])
        ok = self.result["error"] is None and bool(reports)
        if a.answer_code == 200:
            ok = ok and all(r["answered"] for r in reports)
        return 0 if ok else 1

    def run_register(self) -> int:
        a = self.args
        if not a.registrar:
            raise ValueError("--registrar is required for register mode")
        acc = self.make_account(register=True)
        self.pump_until(lambda: bool(acc.reg_events), min(15.0, self.time_left()))
        ev = acc.reg_events[-1] if acc.reg_events else None
        registered = bool(ev and 200 <= ev["code"] < 300 and ev["expires"] > 0)
        self.result.update({
            "registered": registered,
            "status_code": ev["code"] if ev else None,
            "reason": ev["reason"] if ev else None,
            "expires": ev["expires"] if ev else None,
        })
        if ev is None:
            self.result["error"] = "no response to REGISTER"
        if registered and a.duration:
            end = time.monotonic() + min(a.duration, max(0.0, self.time_left()))
            while time.monotonic() < end:
                self.pump(10)
        if registered and a.unregister:
            n = len(acc.reg_events)
            acc.setRegistration(False)
            self.pump_until(lambda: len(acc.reg_events) > n, min(5.0, max(0.5, self.time_left())))
            un = acc.reg_events[-1] if len(acc.reg_events) > n else None
            self.result["unregister_status_code"] = un["code"] if un else None
        self.result["reg_events"] = acc.reg_events
        return 0 if registered else 1


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--transport", default="udp",
                        help="udp|tcp|tls (answer mode: comma list, e.g. udp,tcp)")
        sp.add_argument("--bind", default="127.0.0.1", help="local IP for SIP and RTP")
        sp.add_argument("--local-port", type=int, default=0, help="SIP port (0 = any)")
        sp.add_argument("--rtp-port", type=int, default=0, help="first RTP port (0 = any)")
        sp.add_argument("--user", help="digest user name (also the user part of our URI)")
        sp.add_argument("--password")
        sp.add_argument("--realm", help="digest realm (default: any)")
        sp.add_argument("--id", help="our own URI (From / account id)")
        sp.add_argument("--proxy", help="outbound proxy URI")
        sp.add_argument("--codec", help="only offer these codecs, e.g. PCMU or PCMU,PCMA (plus telephone-event)")
        sp.add_argument("--clock-rate", type=int, default=16000, help="conference bridge rate (recordings)")
        sp.add_argument("--play", help="WAV (16-bit PCM) looped into each call")
        sp.add_argument("--record", help="WAV to record what the far end sends")
        sp.add_argument("--duration", type=float, default=None,
                        help="talk time after answer, then BYE (call default 3; answer default: until far end hangs up)")
        sp.add_argument("--hold-at", type=float, help="seconds after answer to put the call on hold")
        sp.add_argument("--unhold-at", type=float, help="seconds after answer to take it off hold")
        sp.add_argument("--dtmf", help="DTMF digits to send")
        sp.add_argument("--dtmf-at", type=float, default=1.0, help="seconds after answer to send DTMF")
        sp.add_argument("--dtmf-method", choices=["rfc4733", "info"], default="rfc4733")
        sp.add_argument("--dtmf-seq", action="append", metavar="DIGITS@SECONDS",
                        help="also send DIGITS this many seconds after answer (repeatable)")
        sp.add_argument("--no-timer", action="store_true", help="disable session timers")
        sp.add_argument("--timeout", type=float, default=30.0, help="hard limit for the whole run")
        sp.add_argument("--log-file", help="pjsua log file (level --log-level)")
        sp.add_argument("--log-level", type=int, default=3, help="pjsua log level; >=4 also logs SIP messages")
        sp.add_argument("--user-agent", default="homeline-pjsua-peer")
        sp.add_argument("--tls-cert")
        sp.add_argument("--tls-key")
        sp.add_argument("--tls-ca")
        sp.add_argument("--tls-verify", action="store_true")

    c = sub.add_parser("call", help="place one call")
    common(c)
    c.add_argument("--uri", required=True, help="target, e.g. sip:echo@127.0.0.1:5060")
    c.add_argument("--header", action="append", help="extra INVITE header 'Name: value' (repeatable)")

    a = sub.add_parser("answer", help="auto-answer incoming calls")
    common(a)
    a.add_argument("--answer-code", type=int, default=200, help="final response (>=300 rejects)")
    a.add_argument("--ring-ms", type=int, default=0, help="send 180 and wait this long before answering")
    a.add_argument("--calls", type=int, default=1, help="exit after this many calls ended (0 = until timeout)")
    a.add_argument("--registrar", help="optionally REGISTER here first")
    a.add_argument("--expires", type=int, default=300)
    a.add_argument("--ready-file", help="write {'local_port': N} here once listening")

    r = sub.add_parser("register", help="REGISTER once and report")
    common(r)
    r.add_argument("--registrar", required=True, help="e.g. sip:127.0.0.1:5060")
    r.add_argument("--expires", type=int, default=300)
    r.add_argument("--unregister", action="store_true", help="send REGISTER Expires: 0 afterwards")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.mode == "call" and args.duration is None:
        args.duration = 3.0

    peer = Peer(args)

    def watchdog() -> None:
        try:
            res = dict(peer.result)
        except Exception:  # concurrently modified; the essentials will do
            res = {"mode": args.mode}
        res["error"] = f"{res.get('error') or ''} hard timeout (watchdog)".strip()
        if emit(res):
            os._exit(1)

    def on_signal(signum, _frame) -> None:
        # Only set a flag: raising here could unwind through a pjsua callback.
        peer.stop_reason = signal.Signals(signum).name
        # the shutdown that follows gets a fresh, short watchdog budget
        t = threading.Timer(10.0, watchdog)
        t.daemon = True
        t.start()
        timers.append(t)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    timers: List[threading.Timer] = []
    wd = threading.Timer(args.timeout + 8.0, watchdog)
    wd.daemon = True
    wd.start()
    timers.append(wd)

    rc = 1
    try:
        if args.play and not Path(args.play).is_file():
            raise FileNotFoundError(f"--play file not found: {args.play}")
        peer.start()
        if args.mode == "call":
            rc = peer.run_call()
        elif args.mode == "answer":
            rc = peer.run_answer()
        else:
            rc = peer.run_register()
    except Exception as exc:
        peer.result["error"] = describe_exc(exc)
        peer.result["traceback"] = traceback.format_exc()
        sys.stderr.write(traceback.format_exc())
        rc = 1
    finally:
        try:
            peer.shutdown()
        except Exception as exc:
            peer.log(f"shutdown error: {exc!r}")
            peer.result.setdefault("shutdown_error", repr(exc))
    if args.mode == "answer":
        rc2 = peer.finish_answer()
        rc = rc2 if rc in (-1, 0) else 1
    peer.result["elapsed_s"] = round(time.monotonic() - peer.t0, 3)
    for t in list(timers):
        t.cancel()
    if not emit(peer.result):  # the watchdog got there first
        rc = 1
    return rc


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # pjsua is already destroyed; skip interpreter teardown of SWIG objects
    os._exit(code)
