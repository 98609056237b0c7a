"""The agent WebSocket protocol, version 1 (docs/agent-protocol.md), sans-IO.

:func:`parse_client` turns one text frame into a validated :class:`ClientMessage` or raises
:class:`ProtocolError` with the error code the client gets. The server's replies and events
are built by :func:`result`, :func:`error` and :func:`event`. Nothing here does I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from acd.web.errors import ProtocolError

__all__ = [
    "VERSION",
    "VERSIONS",
    "MAX_FRAME",
    "ClientMessage",
    "parse_client",
    "result",
    "error",
    "event",
    "MESSAGE_FIELDS",
    "CLOSE",
]

VERSION = 1
VERSIONS = (1,)
MAX_FRAME = 64 * 1024
DTMF_DIGITS = re.compile(r"[0-9*#A-D]{1,32}")
NAME = re.compile(r"[a-z0-9_-]{1,64}")

# close codes (§3.10)
CLOSE = {"unsupported-version": 4000, "not-authenticated": 4001, "too-many-errors": 4002,
         "replaced": 4008, "heartbeat-timeout": 4009}

# type -> {field: (python type(s), required)}; fields not listed are ignored (§1)
_STR, _INT, _BOOL, _LIST, _DICT = (str,), (int,), (bool,), (list,), (dict,)
MESSAGE_FIELDS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "hello": {"version": (_INT, True), "token": (_STR, True), "client": (_DICT, False)},
    "ping": {},
    "media-offer": {"sdp": (_STR, True)},
    "login": {"queues": (_LIST, False), "ready": (_BOOL, False)},
    "ready": {},
    "break": {"reason": (_STR, True)},
    "logout": {},
    "wrapup-done": {},
    "difficult": {},
    "answer": {"call": (_STR, True)},
    "reject": {"call": (_STR, True)},
    "hangup": {"call": (_STR, True)},
    "hold": {"call": (_STR, True)},
    "resume": {"call": (_STR, True)},
    "mute": {"on": (_BOOL, True)},
    "dtmf": {"call": (_STR, True), "digits": (_STR, True)},
    "transfer": {"call": (_STR, True), "to": (_DICT, True)},
    "consult": {"call": (_STR, True), "to": (_DICT, True)},
    "consult-complete": {"call": (_STR, True)},
    "consult-cancel": {"call": (_STR, True)},
    "echo-test": {"seconds": ((int, float), False)},
}
TARGET_KINDS = ("queue", "agent", "number")


@dataclass(frozen=True)
class ClientMessage:
    """One validated client message: its ``type``, optional request ``id`` and fields."""

    type: str
    id: int | None = None
    fields: dict[str, Any] = field(default_factory=dict, hash=False)

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


def parse_client(frame: str | bytes) -> ClientMessage:
    """Validate one frame (§3.1, §3.9). ``ProtocolError.re`` carries the id when known."""
    if len(frame) > MAX_FRAME:
        raise ProtocolError("too-large", f"frame of {len(frame)} bytes exceeds {MAX_FRAME}")
    try:
        data = json.loads(frame)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad-json", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad-json", "a message is a JSON object")
    msg_id = data.get("id")
    if msg_id is not None and (not isinstance(msg_id, int) or isinstance(msg_id, bool)):
        raise ProtocolError("bad-request", "id must be an integer")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad-request", "type is required (a string)", re=msg_id)
    spec = MESSAGE_FIELDS.get(kind)
    if spec is None:
        raise ProtocolError("unknown-type", f"unknown message type {kind[:40]!r}", re=msg_id)
    fields: dict[str, Any] = {}
    for name, (types, required) in spec.items():
        if name not in data:
            if required:
                raise ProtocolError("bad-request", f"{kind}: field {name!r} is required", re=msg_id)
            continue
        value = data[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            want = " or ".join(t.__name__ for t in types)
            raise ProtocolError("bad-request", f"{kind}: {name} must be {want}", re=msg_id)
        fields[name] = value
    _check_values(kind, fields, msg_id)
    return ClientMessage(kind, msg_id, fields)


def _check_values(kind: str, fields: dict[str, Any], msg_id: int | None) -> None:
    def bad(text: str) -> ProtocolError:
        return ProtocolError("bad-request", f"{kind}: {text}", re=msg_id)

    if kind == "dtmf" and not DTMF_DIGITS.fullmatch(fields["digits"]):
        raise bad("digits must be 1..32 of 0-9 * # A-D")
    if kind == "login" and "queues" in fields:
        if not all(isinstance(q, str) and NAME.fullmatch(q) for q in fields["queues"]):
            raise bad("queues must be a list of queue names")
    if kind in ("transfer", "consult"):
        to = fields["to"]
        kinds = [k for k in TARGET_KINDS if k in to]
        if len(kinds) != 1 or not isinstance(to[kinds[0]], str) or not to[kinds[0]]:
            raise bad('to must be one of {"queue": NAME}, {"agent": ID}, {"number": "…"}')
    if kind == "echo-test" and "seconds" in fields and not 2 <= fields["seconds"] <= 60:
        raise bad("seconds must be 2..60")
    if kind == "media-offer" and not fields["sdp"].startswith("v=0"):
        raise bad("sdp must be an SDP offer")
    if kind == "break" and not NAME.fullmatch(fields["reason"]):
        raise bad("reason must be a break reason name")


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def result(re: int | None, **fields: Any) -> str:
    return _dump({"type": "result", "re": re, **fields})


def error(code: str, message: str, re: int | None = None, **extra: Any) -> str:
    out: dict[str, Any] = {"type": "error", "code": code, "message": message, **extra}
    if re is not None:
        out["re"] = re
    return _dump(out)


def event(kind: str, **fields: Any) -> str:
    return _dump({"type": kind, **fields})
