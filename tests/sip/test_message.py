"""acd.sip.message: parsing, serialising and stream framing of SIP messages.

1. RFC 4475 torture messages (fixtures in ``torture/``, written by ``torture/generate.py``)
2. Hand-written odd cases (RFC 3261 §7, §18.3, §20, §25)
3. Headers and make_response (RFC 3261 §8.2.6.2)
4. StreamParser (RFC 3261 §18.3, RFC 5626 §4.4.1)
5. Hypothesis properties: round trip of generated messages; nothing but SipParseError escapes

The contract under test: ``parse_message`` returns a Request/Response or raises SipParseError
(``status`` 400, 505, 416 or 513, ``partial`` set when there is a message to answer); anything
that parses re-serialises (``to_bytes``) to an equivalent message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acd.sip.errors import SipParseError
from acd.sip.message import (
    COMPACT,
    Headers,
    Message,
    Request,
    Response,
    StreamParser,
    make_response,
    parse_message,
)
from acd.sip.uri import parse_name_addr, parse_uri, parse_via

TORTURE = Path(__file__).parent / "torture"


# --- helpers ---------------------------------------------------------------------------------


def fixture(kind: str, name: str) -> bytes:
    return (TORTURE / kind / f"{name}.dat").read_bytes()


def fixture_names(kind: str) -> list[str]:
    return sorted(p.stem for p in (TORTURE / kind).glob("*.dat"))


def headers_sans_length(msg: Message) -> list[tuple[str, str]]:
    return [(n, v) for n, v in msg.headers if n != "Content-Length"]


def assert_round_trip(msg: Message) -> Message:
    """to_bytes() parses back to the same start line, header list and body; Content-Length is
    rewritten (one header, last, exact), so it is compared apart; a second trip is a fixed point."""
    wire = msg.to_bytes()
    again = parse_message(wire)
    assert type(again) is type(msg)
    assert again.start_line() == msg.start_line()
    assert headers_sans_length(again) == headers_sans_length(msg)
    assert again.body == msg.body
    assert again.headers.get_all("Content-Length") == [str(len(msg.body))]
    assert again.to_bytes() == wire
    return again


def reject(data: bytes, status: int = 400, match: str | None = None, **kw: bool) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        parse_message(data, **kw)
    exc = info.value
    assert exc.status == status, exc.reason
    if match is not None:
        assert re.search(match, exc.reason), exc.reason
    return exc


def parses_or_rejects(data: bytes, *, stream: bool = False) -> Message | None:
    """The robustness contract: a message or SipParseError, nothing else."""
    try:
        return parse_message(data, stream=stream)
    except SipParseError as exc:
        assert exc.status in (400, 505, 416, 513)
        assert exc.partial is None or isinstance(exc.partial, Message)
        return None


BASE = [
    "Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds",
    "Max-Forwards: 70",
    "To: Bob <sip:bob@example.com>",
    'From: "Alice" <sip:alice@example.com>;tag=1928301774',
    "Call-ID: a84b4c76e66710@pc33.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@pc33.example.com>",
]


def build(
    start: str = "INVITE sip:bob@example.com SIP/2.0",
    headers: list[str] | None = None,
    body: bytes = b"",
    *,
    length: bool = True,
    eol: str = "\r\n",
) -> bytes:
    lines = [start, *(BASE if headers is None else headers)]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return (eol.join(lines) + eol + eol).encode("utf-8") + body


def with_header(name: str, value: str | None, headers: list[str] | None = None) -> list[str]:
    """BASE with the header ``name`` replaced (or dropped when value is None, appended if new)."""
    out: list[str] = []
    found = False
    for line in BASE if headers is None else headers:
        if line.split(":", 1)[0].lower() == name.lower():
            found = True
            if value is not None:
                out.append(f"{name}: {value}")
        else:
            out.append(line)
    if not found and value is not None:
        out.append(f"{name}: {value}")
    return out


RESPONSE = [
    "Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds",
    "To: Bob <sip:bob@example.com>;tag=a6c85cf",
    'From: "Alice" <sip:alice@example.com>;tag=1928301774',
    "Call-ID: a84b4c76e66710@pc33.example.com",
    "CSeq: 314159 INVITE",
]


# =============================================================================================
# 1. RFC 4475 torture messages
# =============================================================================================


@dataclass(frozen=True)
class Valid:
    start: tuple[str, str] | tuple[int, str]  # (method, Request-URI) or (status, reason)
    call_id: str
    cseq: tuple[int, str]
    headers: int  # header entries, list headers counted per element
    vias: int
    contacts: int
    body: int


INTMETH = "!interesting-Method0123456789_*+`.%indeed'~"
INTMETH_URI = (
    "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
    "(doesn't-it)@example.com"
)
UNREASON = "= 2**3 * 5**2 но сто девяносто девять - простое"

# RFC 4475 §3.1.1 plus the §3.2-§3.4 messages that are well-formed for a parser
VALID = {
    "wsinv": Valid(("INVITE", "sip:vivekg@chair-dnrc.example.com;unknownparam"),
                   "wsinv.ndaksdj@192.0.2.1", (9, "INVITE"), 15, 3, 1, 150),
    "intmeth": Valid((INTMETH, INTMETH_URI), "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
                     (139122385, INTMETH.upper()), 8, 1, 0, 0),
    "esc01": Valid(("INVITE", "sip:sips%3Auser%40example.com@example.net"),
                   "esc01.239409asdfakjkn23onasd0-3234", (234234, "INVITE"), 9, 1, 1, 150),
    "escnull": Valid(("REGISTER", "sip:example.com"), "escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd",
                     (14398234, "REGISTER"), 9, 1, 2, 0),
    "esc02": Valid(("RE%47IST%45R", "sip:registrar.example.com"),
                   "esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf", (29344, "RE%47IST%45R"), 10, 1, 2, 0),
    "lwsdisp": Valid(("OPTIONS", "sip:user@example.com"), "lwsdisp.1234abcd@funky.example.com",
                     (60, "OPTIONS"), 7, 1, 0, 0),
    "longreq": Valid(("INVITE", "sip:user@example.com"), "longreq.one" + "really" * 20 + "longcallid",
                     (3882340, "INVITE"), 43, 34, 1, 150),
    "dblreq": Valid(("REGISTER", "sip:example.com"), "dblreq.0ha0isndaksdj99sdfafnl3lk233412",
                    (8, "REGISTER"), 8, 1, 1, 0),
    "semiuri": Valid(("OPTIONS", "sip:user;par=u%40example.net@example.com"), "semiuri.0ha0isndaksdj",
                     (8, "OPTIONS"), 13, 1, 0, 0),
    "transports": Valid(("OPTIONS", "sip:user@example.com"), "transports.kijh4akdnaqjkwendsasfdj",
                        (60, "OPTIONS"), 12, 5, 0, 0),
    "mpart01": Valid(("MESSAGE", "sip:kumiko@example.org"),
                     "3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..", (1, "MESSAGE"), 14, 1, 1, 553),
    "unreason": Valid((200, UNREASON), "unreason.1234ksdfak3j2erwedfsASdf", (35, "INVITE"),
                      8, 1, 1, 154),
    "noreason": Valid((100, ""), "noreason.asndj203insdf99223ndf", (35, "INVITE"), 7, 1, 1, 0),
    # §3.2 and §3.3: the transaction and application layers judge these, the parser accepts them
    "badbranch": Valid(("OPTIONS", "sip:user@example.com"), "badbranch.sadonfo23i420jv0as0derf3j3n",
                       (8, "OPTIONS"), 8, 1, 0, 0),
    "unkscm": Valid(("OPTIONS", "nobodyKnowsThisScheme:totallyopaquecontent"),
                    "unkscm.nasdfasser0q239nwsdfasdkl34", (3923423, "OPTIONS"), 7, 1, 0, 0),
    "novelsc": Valid(("OPTIONS", "soap.beep://192.0.2.103:3002"), "novelsc.asdfasser0q239nwsdfasdkl34",
                     (3923423, "OPTIONS"), 7, 1, 0, 0),
    "unksm2": Valid(("REGISTER", "sip:example.com"), "unksm2.daksdj@hyphenated-host.example.com",
                    (234902, "REGISTER"), 8, 1, 1, 0),
    "bext01": Valid(("OPTIONS", "sip:user@example.com"), "bext01.0ha0isndaksdj", (8, "OPTIONS"),
                    11, 1, 0, 0),
    "invut": Valid(("INVITE", "sip:user@example.com"), "invut.0ha0isndaksdjadsfij34n23d",
                   (235448, "INVITE"), 9, 1, 1, 40),
    "regaut01": Valid(("REGISTER", "sip:example.com"), "regaut01.0ha0isndaksdj", (9338, "REGISTER"),
                      8, 1, 0, 0),
    "bcast": Valid((200, "OK"), "bcast.0384840201234ksdfak3j2erwedfsASdf", (35, "INVITE"), 9, 2, 1, 154),
    "zeromf": Valid(("OPTIONS", "sip:user@example.com"), "zeromf.jfasdlfnm2o2l43r5u0asdfas",
                    (39234321, "OPTIONS"), 7, 1, 0, 0),
    "cparam01": Valid(("REGISTER", "sip:example.com"), "cparam01.70710@saturn.example.com",
                      (2, "REGISTER"), 8, 1, 1, 0),
    "cparam02": Valid(("REGISTER", "sip:example.com"), "cparam02.70710@saturn.example.com",
                      (3, "REGISTER"), 8, 1, 1, 0),
    "regescrt": Valid(("REGISTER", "sip:example.com"), "regescrt.k345asrl3fdbv@192.0.2.1",
                      (14398234, "REGISTER"), 8, 1, 1, 0),
    "sdp01": Valid(("INVITE", "sip:user@example.com"), "sdp01.ndaksdj9342dasdd", (8, "INVITE"),
                   10, 1, 1, 150),
    "inv2543": Valid(("INVITE", "sip:UserB@example.com"), "inv2543.1717@ift.client.example.com",
                     (56, "INVITE"), 7, 1, 0, 105),
}


@dataclass(frozen=True)
class Invalid:
    """What our parser does with an RFC 4475 message the RFC calls invalid (or §3.3 says to
    answer with an error). ``status`` None: accepted; ``why`` gives the RFC's latitude."""

    status: int | None
    match: str = ""
    partial: bool = True  # the error carries the request (so a 400 can be sent)
    why: str = ""


INVALID = {
    # RFC 4475 §3.1.2: must (or "should") be rejected
    "badinv01": Invalid(400, "empty parameter", why="§3.1.2.1: respond 400"),
    "clerr": Invalid(400, "body shorter than Content-Length", why="§3.1.2.2: 400 over UDP"),
    "ncl": Invalid(400, "bad Content-Length", why="§3.1.2.3: respond with an error"),
    "scalar02": Invalid(400, "bad CSeq", why="§3.1.2.4: 400 due to the CSeq"),
    "scalarlg": Invalid(400, "bad CSeq", why="§3.1.2.5: a response, simply discarded"),
    "quotbal": Invalid(400, "unterminated display name",
                       why="§3.1.2.6: should be 400; we do not guess the missing quote"),
    "ltgtruri": Invalid(400, "bad Request-URI", why="§3.1.2.7: reasonable always to reject"),
    "lwsruri": Invalid(400, "bad request line", why="§3.1.2.8: should be 400"),
    "badvers": Invalid(505, "unsupported version", why="§3.1.2.16: 505"),
    "mismatch01": Invalid(400, "CSeq method INVITE does not match OPTIONS", why="§3.1.2.17: 400"),
    "mismatch02": Invalid(400, "CSeq method", why="§3.1.2.18: 501 preferred, 400 acceptable; "
                          "the parser cannot tell an unknown method, so it answers 400"),
    "bigcode": Invalid(400, "bad status line", partial=False, why="§3.1.2.19: drop it"),
    "insuf": Invalid(400, "missing From", why="§3.3.1: 400 (From is the first one missing)"),
    "multi01": Invalid(400, "more than one Call-ID", why="§3.3.8: 400"),
    "mcl01": Invalid(400, "conflicting Content-Length", why="§3.3.9: an error; framing unknown"),
    # RFC 4475 §3.1.2: the RFC lets an element choose; our choices
    "lwsstart": Invalid(400, "bad request line", why="§3.1.2.9: reject (strict start line)"),
    "trws": Invalid(400, "bad request line", why="§3.1.2.10: reject (strict start line)"),
    "escruri": Invalid(400, "headers in Request-URI",
                       why="§3.1.2.11: reject; §19.1.1 allows no headers in a Request-URI"),
    "regbadct": Invalid(400, "enclosed in <>", why="§3.1.2.13: reject; §20.10 says MUST use <>, "
                        "and guessing is impossible in general"),
    "baddate": Invalid(None, why="§3.1.2.12: accept; the parser does not read Date"),
    "badaspec": Invalid(None, why="§3.1.2.14: accept; spaces inside <> are ignored, the header "
                        "value is kept as received"),
    "baddn": Invalid(None, why="§3.1.2.15: accept; unquoted non-token display names are common "
                     "from real trunks and unambiguous before <"),
}


def test_every_fixture_has_an_expectation() -> None:
    assert fixture_names("valid") == sorted(VALID)
    assert fixture_names("invalid") == sorted(INVALID)


@pytest.mark.parametrize("kind", ["valid", "invalid"])
def test_fixture_heads_use_crlf(kind: str) -> None:
    """Guards against an editor rewriting the line endings (regenerate with generate.py)."""
    for name in fixture_names(kind):
        data = fixture(kind, name)
        head = data[: data.index(b"\r\n\r\n")]
        assert re.search(rb"(?<!\r)\n", head) is None, name


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_torture_message(name: str) -> None:
    want = VALID[name]
    msg = parse_message(fixture("valid", name))
    if isinstance(want.start[0], int):
        assert isinstance(msg, Response)
        assert (msg.status, msg.reason) == want.start
    else:
        assert isinstance(msg, Request)
        assert (msg.method, msg.uri) == want.start
    assert msg.call_id == want.call_id
    assert msg.cseq == want.cseq
    assert len(msg.headers) == want.headers
    assert len(msg.vias) == want.vias
    assert len(msg.contacts) == want.contacts
    assert len(msg.body) == want.body
    assert_round_trip(msg)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_torture_message(name: str) -> None:
    want = INVALID[name]
    data = fixture("invalid", name)
    if want.status is None:
        assert_round_trip(parse_message(data))
        return
    exc = reject(data, want.status, re.escape(want.match))
    if not want.partial:
        assert exc.partial is None
        return
    assert isinstance(exc.partial, Message)
    if isinstance(exc.partial, Request):
        # the point of the partial: the server can answer with the fault
        resp = make_response(exc.partial, exc.status, exc.reason[:100])
        assert resp.headers.get_all("Via") == exc.partial.headers.get_all("Via")
        assert resp.headers.get("Call-ID") == exc.partial.headers.get("Call-ID")
        assert resp.to_bytes().startswith(f"SIP/2.0 {exc.status} ".encode())


def test_wsinv_fields() -> None:
    msg = parse_message(fixture("valid", "wsinv"))
    assert msg.headers.get("Max-Forwards") == "0068"
    assert msg.headers.get("Subject") == ""  # "s :" compact, empty
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"  # not split: unknown
    assert msg.from_.display == '"J Rosenberg \\\\\\""'
    assert msg.from_.tag == "98asjd8"
    assert msg.to.tag == "1918181833n"
    assert msg.to.uri == "sip:vivekg@chair-dnrc.example.com"
    assert [(v.transport, v.host, v.branch) for v in msg.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    (contact,) = msg.contacts
    assert contact.display == '"Quoted string \\"\\""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert parse_uri(msg.headers.get("Route")[1:-1]).params["unknown-no-value"] is None


def test_intmeth_fields() -> None:
    msg = parse_message(fixture("valid", "intmeth"))
    uri = parse_uri(msg.uri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert msg.to.display == '"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f"'
    assert msg.from_.display == "token1~` token2'+_ token3*%!.-"
    assert msg.from_.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert msg.from_.tag == "_token~1'+`*%!-."
    assert msg.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_escapes_are_not_decoded() -> None:
    """RFC 4475 §3.1.1.3-§3.1.1.5: % HEX HEX is kept as is, and % is not an escape elsewhere."""
    esc01 = parse_message(fixture("valid", "esc01"))
    assert parse_uri(esc01.uri).user == "sips%3Auser%40example.com"
    assert esc01.contacts[0].sip_uri.params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}
    escnull = parse_message(fixture("valid", "escnull"))
    assert [c.sip_uri.user for c in escnull.contacts] == ["%00", "%00%00"]
    esc02 = parse_message(fixture("valid", "esc02"))
    assert esc02.to.display == '"%Z%45"'
    assert esc02.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"  # not a Contact


def test_long_and_compact_names() -> None:
    msg = parse_message(fixture("valid", "longreq"))
    assert [v.host for v in msg.vias] == [f"sip{n}.example.com" for n in range(33, 0, -1)] + [
        "host.example.com"
    ]
    assert msg.to.sip_uri.port == 6000
    assert len(msg.from_.tag or "") > 100


def test_dblreq_trailing_octets_dropped() -> None:
    """RFC 4475 §3.1.1.8, RFC 3261 §18.3: the INVITE after Content-Length is noise on UDP."""
    msg = parse_message(fixture("valid", "dblreq"))
    assert msg.body == b""
    assert b"INVITE" not in msg.to_bytes()


def test_semiuri_and_transports() -> None:
    semi = parse_message(fixture("valid", "semiuri"))
    assert parse_uri(semi.uri).user == "user;par=u%40example.net"
    assert len(semi.headers.get_all("Accept")) == 6
    transports = parse_message(fixture("valid", "transports"))
    assert [v.transport for v in transports.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_mpart01_binary_body() -> None:
    msg = parse_message(fixture("valid", "mpart01"))
    assert b"\x00" in msg.body
    assert msg.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert msg.top_via.params["rport"] is None


def test_reason_phrases() -> None:
    assert parse_message(fixture("valid", "unreason")).reason == UNREASON
    noreason = parse_message(fixture("valid", "noreason"))
    assert noreason.to_bytes().startswith(b"SIP/2.0 100 \r\n")  # the SP is kept (§7.2)


def test_application_layer_cases_parse() -> None:
    """RFC 4475 §3.3: the parser passes these up; 416 etc. come from the layers above."""
    for name in ("unkscm", "novelsc"):
        uri = parse_message(fixture("valid", name)).uri
        with pytest.raises(SipParseError) as info:
            parse_uri(uri)
        assert info.value.status == 416
    unksm2 = parse_message(fixture("valid", "unksm2"))
    assert (unksm2.to.uri, unksm2.from_.uri, unksm2.contacts[0].uri) == (
        "isbn:2983792873", "http://www.example.com", "name:John_Smith")
    assert parse_message(fixture("valid", "badbranch")).top_via.branch == "z9hG4bK"
    assert parse_message(fixture("valid", "zeromf")).headers.get("Max-Forwards") == "0"
    cparam01 = parse_message(fixture("valid", "cparam01")).contacts[0]
    assert cparam01.params == {"unknownparam": None} and cparam01.sip_uri.params == {}
    cparam02 = parse_message(fixture("valid", "cparam02")).contacts[0]
    assert cparam02.params == {} and cparam02.sip_uri.params == {"unknownparam": None}
    regescrt = parse_message(fixture("valid", "regescrt")).contacts[0]
    assert regescrt.sip_uri.headers == "Route=%3Csip:sip.example.com%3E"
    bcast = parse_message(fixture("valid", "bcast"))
    assert bcast.vias[1].host == "255.255.255.255"


def test_inv2543_without_length_or_branch() -> None:
    """RFC 4475 §3.4.1: no Content-Length on UDP means the body runs to the datagram's end."""
    msg = parse_message(fixture("valid", "inv2543"))
    assert msg.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")
    assert msg.top_via.branch is None
    assert "Max-Forwards" not in msg.headers
    assert msg.from_.tag is None


def test_lenient_choices_keep_values_as_received() -> None:
    badaspec = parse_message(fixture("invalid", "badaspec"))
    assert badaspec.headers.get("To") == '"Watson, Thomas" < sip:t.watson@example.org >'
    assert badaspec.to.uri == "sip:t.watson@example.org"
    baddn = parse_message(fixture("invalid", "baddn"))
    assert baddn.from_.display == "Bell, Alexander"
    assert baddn.from_.tag == "43"


def test_rejected_start_lines_still_give_a_partial() -> None:
    """§3.1.2.8-§3.1.2.10 and 505: the partial carries the headers, so the answer can be sent."""
    lws = reject(fixture("invalid", "lwsruri"))
    assert isinstance(lws.partial, Request)
    assert (lws.partial.method, lws.partial.uri) == ("INVITE", "sip:user@example.com; lr")
    vers = reject(fixture("invalid", "badvers"), 505)
    assert isinstance(vers.partial, Request)
    assert vers.partial.headers.get("Call-ID") == "badvers.31417@c.example.com"
    resp = make_response(vers.partial, 505)
    assert resp.headers.get("Via") == "SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw"


# =============================================================================================
# 2. Hand-written odd cases
# =============================================================================================

COMPACT_VALUES = {
    "Call-ID": "x1@example.com",
    "Contact": "<sip:alice@pc33.example.com>",
    "Content-Encoding": "gzip",
    "Content-Length": "0",
    "Content-Type": "application/sdp",
    "From": "<sip:alice@example.com>;tag=9",
    "Subject": "lunch, maybe",
    "Supported": "100rel",
    "To": "<sip:bob@example.com>",
    "Via": "SIP/2.0/TCP client.example.com:5060;branch=z9hG4bK74b",
    "Event": "presence",
    "Refer-To": "<sip:carol@example.com>",
    "Referred-By": "<sip:alice@example.com>",
    "Allow-Events": "presence",
    "Session-Expires": "1800;refresher=uac",
    "Accept-Contact": "*;audio",
    "Reject-Contact": "*;video",
    "Request-Disposition": "proxy",
    "Identity": '"ZYNBbHC00VMZr2kZt6VmCvPonWJMGvQTBDqghoWeLxJfzB2a1pxAr3VgrB0SsSAa"',
    "Identity-Info": "<https://www.example.com/alice.cer>;alg=rsa-sha1",
}


@pytest.mark.parametrize("letter", sorted(COMPACT))
@pytest.mark.parametrize("upper", [False, True])
def test_compact_forms(letter: str, upper: bool) -> None:
    full = COMPACT[letter]
    value = COMPACT_VALUES[full]
    headers = with_header(full, None) + [f"{letter.upper() if upper else letter}: {value}"]
    msg = parse_message(build(headers=headers, length=full != "Content-Length"))
    assert msg.headers.get(full) == value
    assert msg.headers.get(letter) == value
    assert f"\r\n{full}: ".encode() in msg.to_bytes()  # re-serialised in the long form
    assert_round_trip(msg)


def test_header_names_are_case_insensitive() -> None:
    headers = [
        "vIA: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds",
        "max-FORWARDS: 70",
        "TO: <sip:bob@example.com>",
        "fRoM: <sip:alice@example.com>;tag=1",
        "CALL-id: abc",
        "cSeQ: 1 INVITE",
        "CONTENT-length: 0",
    ]
    msg = parse_message(build(headers=headers, length=False))
    assert [n for n, _ in msg.headers] == [
        "Via", "Max-Forwards", "To", "From", "Call-ID", "CSeq", "Content-Length"]
    assert msg.call_id == "abc" and msg.cseq == (1, "INVITE")
    assert msg.headers.get("call-id") == msg.headers.get("CALL-ID") == "abc"


def test_folding_with_tabs_and_spaces() -> None:
    headers = [*BASE, "Subject: first\r\n\tsecond\r\n \t third",
               "Via\t:\tSIP/2.0/UDP\r\n\tb.example.com"]
    msg = parse_message(build(headers=headers))
    assert msg.headers.get("Subject") == "first second third"
    assert msg.vias[1].host == "b.example.com"
    assert_round_trip(msg)


def test_continuation_line_after_start_line_is_rejected() -> None:
    exc = reject(build(headers=[" folded: onto the start line", *BASE]), match="bad header line")
    assert isinstance(exc.partial, Request) and exc.partial.headers.get("Call-ID")


def test_lws_inside_cseq_and_via() -> None:
    msg = parse_message(build(headers=with_header("CSeq", "314159\t INVITE")))
    assert msg.cseq == (314159, "INVITE")
    msg = parse_message(build(headers=with_header(
        "Via", "SIP / 2.0 / UDP\tpc33.example.com : 5070 ;branch = z9hG4bKx")))
    via = msg.top_via
    assert (via.transport, via.host, via.port) == ("UDP", "pc33.example.com", 5070)
    assert via.branch == "z9hG4bKx"


def test_multi_value_headers_split_outside_quotes_and_brackets() -> None:
    headers = with_header("Contact", '"Smith, John" <sip:john@a.example.com;x="1,2">;q=0.5, '
                                     "<sip:x@b.example.com>")
    headers += ["Contact: <sip:third@c.example.com>",
                "Route: <sip:p1.example.com;lr>,<sip:p2.example.com;lr>",
                'Subject: not, a, list']
    msg = parse_message(build(headers=headers))
    assert [c.uri for c in msg.contacts] == [
        'sip:john@a.example.com;x="1,2"', "sip:x@b.example.com", "sip:third@c.example.com"]
    assert msg.contacts[0].display == '"Smith, John"'
    assert msg.contacts[0].params == {"q": "0.5"}
    assert msg.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert msg.headers.get_all("Subject") == ["not, a, list"]
    assert_round_trip(msg)


def test_quoted_strings_with_escapes() -> None:
    display = r'"Bob \"The Builder\", \\ Jr <x>"'
    headers = with_header("To", f"{display} <sip:bob@example.com>")
    headers = with_header("Contact", r'"a \"b, c\"" <sip:a@example.com>, "d\\" <sip:d@example.com>',
                          headers)
    msg = parse_message(build(headers=headers))
    assert msg.to.display == display
    assert [c.display for c in msg.contacts] == [r'"a \"b, c\""', r'"d\\"']
    assert_round_trip(msg)
    reject(build(headers=with_header("To", r'"unterminated \" <sip:bob@example.com>')),
           match="unterminated")
    reject(build(headers=with_header("Contact", r'"open <sip:a@example.com>, <sip:b@example.com>')),
           match="unterminated")


def test_uri_parameters_and_headers() -> None:
    uri = "sip:bob@example.com:5080;transport=TCP;lr;maddr=192.0.2.9"
    headers = with_header("Contact", "<sip:bob@example.com?Subject=hi%20there&Priority=urgent>")
    msg = parse_message(build(f"INVITE {uri} SIP/2.0", headers))
    parsed = parse_uri(msg.uri)
    assert (parsed.host, parsed.port, parsed.transport) == ("example.com", 5080, "tcp")
    assert parsed.params == {"transport": "TCP", "lr": None, "maddr": "192.0.2.9"}
    assert msg.contacts[0].sip_uri.headers == "Subject=hi%20there&Priority=urgent"
    reject(build("INVITE sip:bob@example.com?Subject=hi SIP/2.0"), match="headers in Request-URI")
    reject(build("INVITE sip:bob@example.com;;lr SIP/2.0"), match="empty parameter")


def test_ipv6_references() -> None:
    headers = with_header("Via", "SIP/2.0/TCP [2001:DB8::9]:5060;branch=z9hG4bK1;received=2001:db8::9")
    headers = with_header("Contact", "<sip:alice@[::1]:5070;transport=tcp>", headers)
    msg = parse_message(build("INVITE sip:bob@[2001:db8::1]:5061;transport=tls SIP/2.0", headers))
    uri = parse_uri(msg.uri)
    assert (uri.host, uri.port) == ("2001:db8::1", 5061)
    assert str(uri) == "sip:bob@[2001:db8::1]:5061;transport=tls"
    assert (msg.top_via.host, msg.top_via.port) == ("2001:db8::9", 5060)
    assert msg.top_via.params["received"] == "2001:db8::9"
    assert msg.contacts[0].sip_uri.host == "::1"
    assert_round_trip(msg)
    reject(build(headers=with_header("Via", "SIP/2.0/UDP [2001:db8::zz];branch=z9hG4bK1")), match="IPv6")
    reject(build(headers=with_header("Via", "SIP/2.0/UDP [2001:db8::1;branch=z9hG4bK1")), match="IPv6")
    reject(build("INVITE sip:bob@2001:db8::1 SIP/2.0"), match="Request-URI")


@pytest.mark.parametrize(("param", "value"), [("rport", None), ("rport=5062", "5062")])
def test_rport(param: str, value: str | None) -> None:
    """RFC 3581: rport without a value in requests, with the source port in responses."""
    headers = with_header("Via", f"SIP/2.0/UDP pc33.example.com;{param};branch=z9hG4bK1")
    msg = parse_message(build(headers=headers))
    assert msg.top_via.params["rport"] == value
    assert f";{param};".encode() in assert_round_trip(msg).to_bytes()


def test_response_reason_phrases() -> None:
    for start, reason in [
        ("SIP/2.0 180 ", ""),  # RFC 4475 §3.1.1.13
        ("SIP/2.0 180", ""),  # no SP: liberal
        ("SIP/2.0 180 Ringing", "Ringing"),
        ("SIP/2.0 180  two  spaces ", " two  spaces "),  # kept as received
        ("sip/2.0 180 Ringing", "Ringing"),  # §7.1: the version is case-insensitive
    ]:
        msg = parse_message(build(start, RESPONSE))
        assert isinstance(msg, Response)
        assert (msg.status, msg.reason) == (180, reason), start
        assert_round_trip(msg)


@pytest.mark.parametrize(
    ("start", "status"),
    [("SIP/2.0 099 Low", 400), ("SIP/2.0 700 High", 400), ("SIP/2.0 20 Short", 400),
     ("SIP/2.0 2000 Long", 400), ("SIP/2.0 ٢٠٠ Arabic digits", 400), ("SIP/3.0 200 OK", 505)],
)
def test_bad_status_lines(start: str, status: int) -> None:
    reject(build(start, RESPONSE), status)


def test_content_length_larger_than_body() -> None:
    exc = reject(build(length=False, headers=[*BASE, "Content-Length: 10"]) + b"short",
                 match="body shorter")
    assert isinstance(exc.partial, Request)


def test_content_length_smaller_than_datagram() -> None:
    """RFC 3261 §18.3: octets past Content-Length in a datagram are discarded."""
    msg = parse_message(build(length=False, headers=[*BASE, "Content-Length: 4"]) + b"bodyEXTRA\r\n")
    assert msg.body == b"body"
    assert_round_trip(msg)


def test_content_length_absent() -> None:
    data = build(length=False) + b"whole datagram"
    assert parse_message(data).body == b"whole datagram"  # §18.3 on UDP
    reject(data, match="Content-Length required", stream=True)


@pytest.mark.parametrize("value", ["-1", "five", "1 2", "0x10", "²", "1" * 5000, "+3"])
def test_bad_content_length(value: str) -> None:
    reject(build(length=False, headers=[*BASE, f"Content-Length: {value}"]), match="Content-Length")


def test_duplicate_content_length() -> None:
    same = parse_message(build(length=False, headers=[*BASE, "Content-Length: 2", "l: 02"]) + b"ok")
    assert same.body == b"ok"
    reject(build(length=False, headers=[*BASE, "Content-Length: 2", "l: 3"]) + b"oki",
           match="conflicting")


@pytest.mark.parametrize("name", ["Via", "From", "To", "Call-ID", "CSeq"])
@pytest.mark.parametrize("kind", ["request", "response"])
def test_missing_mandatory_header(name: str, kind: str) -> None:
    headers = BASE if kind == "request" else RESPONSE
    start = "INVITE sip:bob@example.com SIP/2.0" if kind == "request" else "SIP/2.0 200 OK"
    exc = reject(build(start, with_header(name, None, headers)), match=f"^missing {name}$")
    assert isinstance(exc.partial, Request if kind == "request" else Response)
    assert len(exc.partial.headers) == len(headers)  # the others, and Content-Length


@pytest.mark.parametrize("name", ["Call-ID", "CSeq", "From", "To", "Max-Forwards"])
def test_single_value_header_twice(name: str) -> None:
    line = next(h for h in BASE if h.startswith(name + ":"))
    reject(build(headers=[*BASE, line]), match=f"more than one {name}")


def test_empty_or_malformed_mandatory_values() -> None:
    reject(build(headers=with_header("Call-ID", "")), match="Call-ID")
    reject(build(headers=with_header("Via", "")), match="bad Via")
    reject(build(headers=with_header("Via", "SIP/2.0/UDP")), match="bad Via")
    reject(build(headers=with_header("Via", "SIP/2.0/UDP host;branch=1;")), match="empty parameter")
    reject(build(headers=with_header("Via", "SIP/2.0/UDP ho st")), match="bad host")
    reject(build(headers=with_header("From", "<sip:alice@example.com")), match="unterminated")
    reject(build(headers=with_header("To", "sip:bob@example.com junk")), match="enclosed in <>")
    reject(build(headers=with_header("Contact", "")), match="empty address")


@pytest.mark.parametrize(
    ("cseq", "start", "ok"),
    [
        ("1 INVITE", "OPTIONS sip:bob@example.com SIP/2.0", False),
        ("1 BYE", "ACK sip:bob@example.com SIP/2.0", False),
        ("1 ACK", "ACK sip:bob@example.com SIP/2.0", True),
        ("1 INVITE", "ACK sip:bob@example.com SIP/2.0", True),  # tolerated, see _validate
        ("1 invite", "INVITE sip:bob@example.com SIP/2.0", True),
        ("1 INVITE extra", "INVITE sip:bob@example.com SIP/2.0", False),
        ("INVITE", "INVITE sip:bob@example.com SIP/2.0", False),
        ("1", "INVITE sip:bob@example.com SIP/2.0", False),
        ("² INVITE", "INVITE sip:bob@example.com SIP/2.0", False),
        ("4294967296 INVITE", "INVITE sip:bob@example.com SIP/2.0", False),
        ("00000000000000000001 INVITE", "INVITE sip:bob@example.com SIP/2.0", True),
    ],
)
def test_cseq(cseq: str, start: str, ok: bool) -> None:
    data = build(start, with_header("CSeq", cseq))
    if ok:
        parse_message(data)
    else:
        reject(data, match="CSeq")


@pytest.mark.parametrize(
    ("value", "ok"),
    [("0", True), ("70", True), ("255", True), ("0068", True), ("256", False), ("-1", False),
     ("abc", False), ("7 0", False), ("²", False), ("1" * 5000, False), ("", False)],
)
def test_max_forwards_range(value: str, ok: bool) -> None:
    """§20.22: 0-255. (RFC 4475 §3.1.2.4 lets an element ignore it instead; we answer 400.)"""
    data = build(headers=with_header("Max-Forwards", value))
    if ok:
        assert parse_message(data).headers.get("Max-Forwards") == value
    else:
        reject(data, match="Max-Forwards")


def test_non_utf8_head() -> None:
    data = build(headers=with_header("Subject", "caf\xe9")).replace("café".encode(), b"caf\xe9")
    exc = reject(data, match="not UTF-8")
    assert isinstance(exc.partial, Request)
    assert exc.partial.headers.get("Subject") == "caf\ufffd"
    assert make_response(exc.partial, 400).to_bytes()  # answerable: no undecodable text
    reject(b"\xff\xfe" + data, match="bad request line")


def test_non_utf8_body_is_fine() -> None:
    body = bytes(range(256))
    assert parse_message(build(body=body)).body == body


def test_unicode_digits_never_reach_int() -> None:
    """str.isdigit() is true for "²", which int() rejects: each must be a SipParseError."""
    for headers in (with_header("Via", "SIP/2.0/UDP host:²;branch=z9hG4bK1"),
                    with_header("Max-Forwards", "²"), with_header("CSeq", "² INVITE"),
                    [*BASE, "Content-Length: ²"]):
        reject(build(headers=headers, length=False))
    reject(build("INVITE sip:bob@example.com:² SIP/2.0"))


@pytest.mark.parametrize(
    ("uri", "status"),
    [("tel:+1-201-555-0123", None), ("http://www.example.com/", None), ("urn:service:sos", None),
     ("sips:bob@example.com", None), ("sip:bob@host_with_underscore.local", None),
     ("<sip:bob@example.com>", 400), ("sip:", 400), ("nocolon", 400), ("sip:bob@", 400),
     ("1tel:123", 400), ('sip:"bob"@example.com', 400), ("sip:bob@example.com:99999", 400)],
)
def test_request_uri_schemes(uri: str, status: int | None) -> None:
    """Any absoluteURI is a valid Request-URI (§25.1); a sip/sips one must parse. parse_uri
    answers 416 for the schemes it does not handle (§8.2.2.1), for the layers that need SIP."""
    data = build(f"OPTIONS {uri} SIP/2.0", with_header("CSeq", "1 OPTIONS"))
    if status is not None:
        reject(data, status, "Request-URI")
        return
    msg = parse_message(data)
    assert msg.uri == uri
    if uri.startswith(("tel:", "http:", "urn:")):
        with pytest.raises(SipParseError) as info:
            parse_uri(msg.uri)
        assert info.value.status == 416


def test_request_line_versions() -> None:
    exc = reject(build("INVITE sip:bob@example.com SIP/3.0"), 505)
    assert isinstance(exc.partial, Request) and len(exc.partial.headers) == len(BASE) + 1
    reject(build("INVITE sip:bob@example.com HTTP/1.1"), 400, "bad SIP version")
    lower = parse_message(build("INVITE sip:bob@example.com sip/2.0"))  # §7.1: case-insensitive
    assert lower.start_line() == "INVITE sip:bob@example.com SIP/2.0"


@pytest.mark.parametrize("data", [b"", b"\r\n", b"\r\n\r\n", b"garbage", b"INVITE\r\n\r\n",
                                  b"SIP/2.0\r\n\r\n", b"\x00" * 10])
def test_garbage_without_partial(data: bytes) -> None:
    assert reject(data).partial is None


def test_bad_header_lines_keep_the_rest_for_the_partial() -> None:
    for bad in ("No colon here", "Bad Name: x", ": no name", "Name\x00: x"):
        exc = reject(build(headers=[*BASE[:3], bad, *BASE[3:]]), match="bad header line")
        assert isinstance(exc.partial, Request)
        assert exc.partial.headers.get("CSeq") == "314159 INVITE"


def test_stray_cr_is_rejected_and_kept_out_of_the_partial() -> None:
    """§25.1: CR only comes in CRLF. Echoed back raw, a lone one could split a header."""
    exc = reject(build(headers=with_header("From", "<sip:a@example.com>;tag=1\rVia: x")),
                 match="stray CR")
    assert isinstance(exc.partial, Request)
    assert b"\r" not in make_response(exc.partial, 400).to_bytes().replace(b"\r\n", b"")
    reject(build("SIP/2.0 200 OK\r", RESPONSE), match="stray CR")


def test_leading_crlf_and_bare_lf() -> None:
    """§7.5: CRLFs before the start line are ignored; bare LF is accepted on UDP (liberal)."""
    msg = parse_message(b"\r\n\r\n" + build(body=b"hi"))
    assert msg.body == b"hi"
    lf = parse_message(build(body=b"a\r\n\r\nb", eol="\n"))
    assert lf.body == b"a\r\n\r\nb"
    assert lf.call_id == "a84b4c76e66710@pc33.example.com"


# =============================================================================================
# 3. Headers and make_response (RFC 3261 §8.2.6.2)
# =============================================================================================


def test_headers_multimap() -> None:
    h = Headers([("v", "a"), ("Via", "b"), ("x-foo", "1")])
    assert h.get_all("VIA") == ["a", "b"] and h.get("X-Foo") == "1" and "X-FOO" in h
    h.prepend("Via", "z")
    h.set("X-Foo", "2")
    assert list(h) == [("Via", "z"), ("Via", "a"), ("Via", "b"), ("X-Foo", "2")]
    assert h.copy() == h and len(h) == 4



def test_make_response_copies_the_identity_headers() -> None:
    headers = ["Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1", *BASE,
               "Record-Route: <sip:p1.example.com;lr>", "Record-Route: <sip:p2.example.com;lr>"]
    req = parse_message(build(headers=headers))
    assert isinstance(req, Request)
    resp = make_response(req, 180, to_tag="t0")
    assert (resp.status, resp.reason) == (180, "Ringing")
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    for name in ("From", "Call-ID", "CSeq"):
        assert resp.headers.get(name) == req.headers.get(name)
    assert resp.to.tag == "t0" and resp.to.uri == req.to.uri
    assert resp.headers.get_all("Record-Route") == req.headers.get_all("Record-Route")
    again = assert_round_trip(resp)
    assert isinstance(again, Response) and again.to.tag == "t0"


def test_make_response_tags_and_record_route() -> None:
    req = parse_message(build(headers=[*BASE, "Record-Route: <sip:p1.example.com;lr>"]))
    assert isinstance(req, Request)
    trying = make_response(req, 100, to_tag="t0")
    assert trying.to.tag is None  # §8.2.6.2: no tag needed on 100
    assert "Record-Route" not in trying.headers
    busy = make_response(req, 486, to_tag="t0")
    assert busy.to.tag == "t0" and "Record-Route" not in busy.headers
    tagged = parse_message(build(headers=with_header("To", "<sip:bob@example.com>;tag=old")))
    assert isinstance(tagged, Request)
    assert make_response(tagged, 200, to_tag="new").to.tag == "old"
    odd = make_response(req, 299, "Custom", headers=[("Server", "x")], body=b"b")
    assert (odd.reason, odd.headers.get("Server"), odd.body) == ("Custom", "x", b"b")
    assert make_response(req, 599).reason == "Unknown"


def test_make_response_on_a_partial_omits_missing_headers() -> None:
    exc = reject(build(headers=with_header("From", None)), match="missing From")
    assert isinstance(exc.partial, Request)
    resp = make_response(exc.partial, 400)
    assert "From" not in resp.headers
    assert resp.headers.get("Call-ID") == "a84b4c76e66710@pc33.example.com"


# =============================================================================================
# 4. StreamParser
# =============================================================================================


STREAMABLE = [n for n in sorted(VALID) if n not in ("inv2543", "dblreq")]  # these need UDP


def same(a: Message | SipParseError | bytes, b: Message) -> None:
    assert isinstance(a, Message), a
    assert (a.start_line(), list(a.headers), a.body) == (b.start_line(), list(b.headers), b.body)


@pytest.mark.parametrize("name", STREAMABLE)
def test_stream_matches_datagram_parse(name: str) -> None:
    data = fixture("valid", name)
    parser = StreamParser()
    (item,) = parser.feed(data)
    same(item, parse_message(data))
    assert not parser.broken


@pytest.mark.parametrize("name", ["wsinv", "mpart01", "noreason", "intmeth"])
def test_stream_split_at_every_byte_boundary(name: str) -> None:
    data = fixture("valid", name)
    want = parse_message(data)
    for cut in range(len(data) + 1):
        parser = StreamParser()
        items = parser.feed(data[:cut]) + parser.feed(data[cut:])
        assert len(items) == 1, cut
        same(items[0], want)


@pytest.mark.parametrize("name", STREAMABLE)
def test_stream_byte_by_byte(name: str) -> None:
    data = fixture("valid", name) + b"\r\n\r\n" + fixture("valid", name)
    parser = StreamParser()
    items = [item for i in range(len(data)) for item in parser.feed(data[i : i + 1])]
    want = parse_message(fixture("valid", name))
    assert len(items) == 3 and items[1] == b"pong"
    same(items[0], want)
    same(items[2], want)


def test_stream_several_messages_in_one_chunk() -> None:
    names = ["esc01", "noreason", "mpart01", "transports"]
    data = b"\r\n\r\n".join(fixture("valid", n) for n in names)
    items = StreamParser().feed(data)
    assert [type(i) for i in items] == [Request, bytes, Response, bytes, Request, bytes, Request]
    for item, name in zip(items[::2], names):
        same(item, parse_message(fixture("valid", name)))


def test_stream_dblreq_is_two_messages() -> None:
    """On a stream, RFC 4475 §3.1.1.8's trailing INVITE is the next message, not noise."""
    items = StreamParser().feed(fixture("valid", "dblreq"))
    assert [getattr(i, "method", i) for i in items] == ["REGISTER", "INVITE"]


def test_stream_keepalive() -> None:
    """RFC 5626 §4.4.1: CRLFCRLF is a ping (answered), a lone CRLF a pong (ignored)."""
    parser = StreamParser()
    assert parser.feed(b"\r\n\r\n") == [b"pong"]
    assert parser.feed(b"\r") == [] and parser.feed(b"\n") == [] and parser.feed(b"\r") == []
    assert parser.feed(b"\n") == [b"pong"]
    assert parser.feed(b"\r\n") == []  # maybe the start of a ping: wait
    (item,) = parser.feed(fixture("valid", "noreason"))  # ... it was a pong
    assert isinstance(item, Response)
    assert parser.feed(b"\r\n\r\n\r\n\r\n") == [b"pong", b"pong"]
    assert not parser.broken


def test_stream_missing_content_length_breaks() -> None:
    parser = StreamParser()
    (err,) = parser.feed(build(length=False) + b"junk")
    assert isinstance(err, SipParseError) and err.status == 400
    assert parser.broken
    assert parser.feed(fixture("valid", "noreason")) == []


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (fixture("invalid", "ncl"), 400),  # RFC 4475 §3.1.2.3: not recoverable
        (fixture("invalid", "mcl01"), 400),  # §3.3.9
        (build(length=False, headers=[*BASE, "Content-Length: 5abc"]), 400),
        (build(length=False, headers=[*BASE, "Content-Length: " + "9" * 5000]), 513),
        (build(body=b"x" * 70000), 513),
    ],
)
def test_stream_framing_errors_break(data: bytes, status: int) -> None:
    parser = StreamParser()
    items = parser.feed(data)
    assert len(items) == 1 and isinstance(items[0], SipParseError)
    assert items[0].status == status
    assert parser.broken


def test_stream_oversize_header_breaks() -> None:
    parser = StreamParser(max_header=1024)
    assert parser.feed(b"INVITE sip:bob@example.com SIP/2.0\r\n") == []
    (err,) = parser.feed(b"X-Filler: " + b"a" * 2000)  # no end of head in sight
    assert isinstance(err, SipParseError) and err.status == 513 and parser.broken
    parser = StreamParser(max_header=1024)
    (err,) = parser.feed(build(headers=[*BASE, "X-Filler: " + "a" * 2000]))
    assert isinstance(err, SipParseError) and err.status == 513 and parser.broken


def test_stream_body_cap_applies_before_the_body_arrives() -> None:
    parser = StreamParser(max_body=100)
    head = build(length=False, headers=[*BASE, "Content-Length: 101"])
    (err,) = parser.feed(head)
    assert isinstance(err, SipParseError) and err.status == 513 and parser.broken


def test_stream_bad_but_framed_message_does_not_break() -> None:
    parser = StreamParser()
    bad = build(headers=with_header("CSeq", "1 BYE"))
    items = parser.feed(bad + fixture("valid", "esc01"))
    assert isinstance(items[0], SipParseError) and isinstance(items[0].partial, Request)
    same(items[1], parse_message(fixture("valid", "esc01")))
    assert not parser.broken


def test_stream_waits_for_a_short_body() -> None:
    """RFC 4475 §3.1.2.2 over TCP: nothing to do but wait (the transport times out)."""
    parser = StreamParser()
    assert parser.feed(fixture("invalid", "clerr")) == []
    assert not parser.broken


def test_stream_content_length_forms() -> None:
    for line in ("l: 2", "content-length:2", "Content-Length :\t2 ", "Content-Length:\r\n  2"):
        parser = StreamParser()
        (msg,) = parser.feed(build(length=False, headers=[*BASE, line]) + b"okNEXT")
        assert isinstance(msg, Request) and msg.body == b"ok", line


# =============================================================================================
# 5. Hypothesis properties
# =============================================================================================

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
labels = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
hostnames = st.lists(labels, min_size=1, max_size=4).map(".".join)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(lambda a: f"[{a}]")
hosts = st.one_of(hostnames, ipv4, ipv6)
ports = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
users = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$,;?/%", min_size=1, max_size=12)
params = st.lists(st.tuples(tokens, st.one_of(st.none(), tokens)), max_size=3).map(
    lambda ps: "".join(f";{k}" if v is None else f";{k}={v}" for k, v in ps))


@st.composite
def sip_uris(draw: st.DrawFn, headers: bool = False) -> str:
    scheme = draw(st.sampled_from(["sip", "sips", "SIP"]))
    user = draw(st.one_of(st.just(""), users.map(lambda u: u + "@")))
    tail = draw(st.one_of(st.just(""), st.just("?Subject=hi&Priority=urgent"))) if headers else ""
    return f"{scheme}:{user}{draw(hosts)}{draw(ports)}{draw(params)}{tail}"


display_text = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\r\n"), max_size=16)
displays = st.one_of(
    st.just(""),
    st.lists(tokens, min_size=1, max_size=3).map(lambda ws: " ".join(ws) + " "),
    display_text.map(lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '" '),
)


@st.composite
def name_addrs(draw: st.DrawFn, tag: bool = False) -> str:
    value = f"{draw(displays)}<{draw(sip_uris(headers=True))}>{draw(params)}"
    return value + (f";tag={draw(tokens)}" if tag else "")


@st.composite
def vias(draw: st.DrawFn) -> str:
    transport = draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS", "WSS"]))
    extra = draw(st.sampled_from(["", ";rport", ";rport=5062", ";received=192.0.2.1", ";received=::1"]))
    return f"SIP/2.0/{transport} {draw(hosts)}{draw(ports)};branch=z9hG4bK{draw(tokens)}{extra}"


other_values = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30
).map(lambda s: s.strip(" \t"))


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """A valid request or response, built through the API (one header entry per list element)."""
    msg: Message
    if draw(st.booleans()):
        known = st.sampled_from(["INVITE", "ACK", "BYE", "OPTIONS", "REGISTER"])
        method = draw(st.one_of(known, tokens))
        uri = draw(st.one_of(sip_uris(), st.sampled_from(["tel:+15551234", "urn:service:sos"])))
        msg = Request(method=method, uri=uri)
        cseq_method = method
    else:
        reason = draw(st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=20))
        msg = Response(status=draw(st.integers(100, 699)), reason=reason)
        cseq_method = draw(st.sampled_from(["INVITE", "BYE"]))
    h = msg.headers
    for via in draw(st.lists(vias(), min_size=1, max_size=3)):
        h.add(draw(st.sampled_from(["Via", "v", "VIA"])), via)
    h.add("From", draw(name_addrs(tag=True)))
    h.add(draw(st.sampled_from(["To", "t"])), draw(name_addrs(tag=draw(st.booleans()))))
    h.add("Call-ID", draw(tokens) + draw(st.sampled_from(["", "@host.example.com"])))
    h.add("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {cseq_method}")
    if isinstance(msg, Request) and draw(st.booleans()):
        h.add("Max-Forwards", str(draw(st.integers(0, 255))))
    for contact in draw(st.lists(name_addrs(), max_size=3)):
        h.add(draw(st.sampled_from(["Contact", "m"])), contact)
    for _ in range(draw(st.integers(0, 3))):
        h.add("X-" + draw(tokens), draw(other_values))
    msg.body = draw(st.binary(max_size=200))
    return msg


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_property_generated_messages_round_trip(msg: Message) -> None:
    wire = msg.to_bytes()
    again = parse_message(wire)
    assert again.start_line() == msg.start_line()
    assert list(again.headers) == [*msg.headers, ("Content-Length", str(len(msg.body)))]
    assert again.body == msg.body
    assert_round_trip(again)
    (streamed,) = StreamParser().feed(wire)
    same(streamed, again)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_property_arbitrary_bytes(data: bytes) -> None:
    msg = parses_or_rejects(data)
    if msg is not None:
        assert_round_trip(msg)


SEEDS = [fixture(kind, name) for kind in ("valid", "invalid") for name in fixture_names(kind)]
SPECIAL = [b"\r\n", b"\r", b"\n", b" ", b"\t", b":", b";", b",", b'"', b"\\", b"<", b">", b"@",
           b"[", b"]", b"%", b"=", b"?", b"\x00", b"\xff", "²".encode(), "é".encode(), b"\r\n ",
           b"\r\n\r\n", b"SIP/2.0", b"Content-Length: 9999\r\n", b"l: 0\r\n", b"v: SIP/2.0/UDP h\r\n"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.one_of(st.sampled_from(SEEDS), messages().map(lambda m: m.to_bytes()))))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.one_of(st.sampled_from(SPECIAL), st.binary(min_size=1, max_size=4)))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[at:]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.booleans())
def test_property_mutated_messages(data: bytes, stream: bool) -> None:
    msg = parses_or_rejects(data, stream=stream)
    if msg is not None:
        assert_round_trip(msg)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(mutated(), messages().map(lambda m: m.to_bytes()), st.just(b"\r\n\r\n")),
                min_size=1, max_size=4),
       st.lists(st.integers(1, 400), min_size=1, max_size=20))
def test_property_stream_random_chunking(parts: list[bytes], sizes: list[int]) -> None:
    data = b"".join(parts)
    chunks, i = [], 0
    while i < len(data):
        size = sizes[len(chunks) % len(sizes)]
        chunks.append(data[i : i + size])
        i += size
    parser = StreamParser(max_header=4096, max_body=4096)
    items: list[Message | SipParseError | bytes] = []
    for chunk in chunks:
        items += parser.feed(chunk)
    for item in items:
        assert isinstance(item, (Message, SipParseError)) or item == b"pong"
        if isinstance(item, SipParseError):
            assert item.status in (400, 505, 416, 513)
    # the framing does not depend on the chunking
    whole = StreamParser(max_header=4096, max_body=4096)
    once = whole.feed(data)
    assert [_summary(x) for x in items] == [_summary(x) for x in once]
    assert parser.broken == whole.broken


def _summary(item: Message | SipParseError | bytes) -> object:
    if isinstance(item, SipParseError):
        return ("error", item.status, item.reason)
    if isinstance(item, Message):
        return (item.start_line(), list(item.headers), item.body)
    return item


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_property_uri_and_address_parsers(text: str) -> None:
    """The building blocks used on header values fail only with SipParseError too."""
    for parse in (parse_uri, parse_name_addr, parse_via):
        try:
            parse(text)
        except SipParseError:
            pass
