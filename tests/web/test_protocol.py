"""The agent protocol's message validation (docs/agent-protocol.md §3.9)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acd.web import protocol as P
from acd.web.errors import ProtocolError


def code_of(frame: str | bytes) -> tuple[str, int | None]:
    with pytest.raises(ProtocolError) as info:
        P.parse_client(frame)
    return info.value.code, info.value.re


def test_valid_messages_parse() -> None:
    msg = P.parse_client('{"type": "hello", "id": 1, "version": 1, "token": "t", "extra": 5}')
    assert (msg.type, msg.id, msg.fields) == ("hello", 1, {"version": 1, "token": "t"})  # unknown fields ignored
    assert P.parse_client('{"type": "dtmf", "call": "c1", "digits": "12#*AD"}').get("digits") == "12#*AD"
    assert P.parse_client('{"type": "transfer", "call": "c", "to": {"queue": "sales"}}').get("to") == {"queue": "sales"}
    assert P.parse_client('{"type": "ping"}').id is None


@pytest.mark.parametrize("frame, code, re", [
    ("not json", "bad-json", None),
    ("[1, 2]", "bad-json", None),
    (b"\xff\xfe", "bad-json", None),
    ('{"id": 3}', "bad-request", 3),
    ('{"type": "answer", "id": 4}', "bad-request", 4),
    ('{"type": "answer", "id": 5, "call": 7}', "bad-request", 5),
    ('{"type": "mute", "on": 1}', "bad-request", None),
    ('{"type": "hello", "version": true, "token": "x"}', "bad-request", None),
    ('{"type": "dance", "id": 6}', "unknown-type", 6),
    ('{"type": "dtmf", "call": "c", "digits": "12x"}', "bad-request", None),
    ('{"type": "dtmf", "call": "c", "digits": ""}', "bad-request", None),
    ('{"type": "transfer", "call": "c", "to": {"queue": "a", "agent": "b"}}', "bad-request", None),
    ('{"type": "transfer", "call": "c", "to": {}}', "bad-request", None),
    ('{"type": "login", "queues": ["ok", 3]}', "bad-request", None),
    ('{"type": "echo-test", "seconds": 500}', "bad-request", None),
    ('{"type": "media-offer", "sdp": "hello"}', "bad-request", None),
    ('{"type": "break", "reason": "Lunch Time"}', "bad-request", None),
    ('{"type": "ping", "id": "7"}', "bad-request", None),
    ('{"type": "ping", "id": 1.5}', "bad-request", None),
])
def test_invalid_messages_get_their_code(frame: str, code: str, re: int | None) -> None:
    assert code_of(frame) == (code, re)


def test_too_large() -> None:
    big = json.dumps({"type": "media-offer", "sdp": "v=0" + "x" * P.MAX_FRAME})
    assert code_of(big)[0] == "too-large"


def test_every_type_has_a_documented_section() -> None:
    doc = open("docs/agent-protocol.md", encoding="utf-8").read()
    for kind in P.MESSAGE_FIELDS:
        assert f'"type": "{kind}"' in doc, kind


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200),
                 st.dictionaries(st.sampled_from(["type", "id", "call", "to", "digits", "on", "sdp", "version",
                                                  "token", "queues", "reason", "seconds"]),
                                 st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10),
                                           st.lists(st.text(max_size=5), max_size=3),
                                           st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2)),
                                 max_size=6).map(json.dumps)))
def test_any_frame_parses_or_raises_protocol_error(frame: str | bytes) -> None:
    try:
        msg = P.parse_client(frame)
    except ProtocolError as exc:
        assert exc.code in ("bad-json", "bad-request", "unknown-type", "too-large")
    else:
        assert msg.type in P.MESSAGE_FIELDS


def test_server_messages() -> None:
    assert json.loads(P.result(3, state={"state": "available"})) == {"type": "result", "re": 3,
                                                                    "state": {"state": "available"}}
    assert json.loads(P.error("invalid-state", "no", 4)) == {"type": "error", "code": "invalid-state",
                                                            "message": "no", "re": 4}
    assert "re" not in json.loads(P.error("bad-json", "x"))
