"""SIP messages: parse and serialize requests and responses (RFC 3261 §7, §18.3, §20, §25)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from acd.sip.errors import SipParseError
from acd.sip.uri import NameAddr, Via, parse_name_addr, parse_uri, parse_via, split_list

__all__ = [
    "Headers",
    "Request",
    "Response",
    "Message",
    "parse_message",
    "StreamParser",
    "make_response",
    "REASONS",
]

log = logging.getLogger(__name__)

MAX_DATAGRAM = 65535
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")  # RFC 3261 §25.1 token; use fullmatch
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() accepts "²", which int() rejects
_CSEQ = re.compile(r"([0-9]+)[ \t]+([A-Za-z0-9\-.!%*_+`'~]+)")  # §20.16, LWS between
_STATUS_LINE = re.compile(r"SIP/([0-9]+\.[0-9]+) ([0-9]{3})(?: (.*))?", re.I | re.S)  # §7.2
_SIP_VERSION = re.compile(r"SIP/[0-9]+\.[0-9]+", re.I)  # §7.1: case-insensitive
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")  # RFC 3986 §3.1
_URI_FORBIDDEN = re.compile(r'[\x00-\x20\x7f<>"]')  # never unescaped in a URI (RFC 3986 §2)
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
# Stream framing (§18.3): the Content-Length header lines, and those with a usable value
_CL_NAME = re.compile(rb"\r\n(?:content-length|l)[ \t]*:", re.I)
_CL_VALUE = re.compile(
    rb"\r\n(?:content-length|l)[ \t]*:[ \t]*(?:\r\n[ \t]+)?([0-9]+)[ \t]*(?=\r\n|\Z)", re.I
)

# RFC 3261 §7.3.3 and later RFCs' compact forms
COMPACT = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To",
    "v": "Via", "o": "Event", "r": "Refer-To", "b": "Referred-By", "u": "Allow-Events",
    "x": "Session-Expires", "a": "Accept-Contact", "j": "Reject-Contact",
    "d": "Request-Disposition", "y": "Identity", "n": "Identity-Info",
}
_CANON = {v.lower(): v for v in COMPACT.values()}
_CANON.update({
    "cseq": "CSeq", "www-authenticate": "WWW-Authenticate", "max-forwards": "Max-Forwards",
    "record-route": "Record-Route", "mime-version": "MIME-Version", "rack": "RAck",
    "rseq": "RSeq", "user-agent": "User-Agent", "min-expires": "Min-Expires",
    "retry-after": "Retry-After", "p-asserted-identity": "P-Asserted-Identity",
    "min-se": "Min-SE",
})
# Headers that carry exactly one value (§20; RFC 4475 §3.3.8); Content-Length is checked apart.
SINGLE_HEADERS = ("Call-ID", "CSeq", "From", "To", "Max-Forwards")
# Headers whose values are comma-separated lists (RFC 3261 §7.3.1); auth headers are not.
LIST_HEADERS = frozenset({
    "via", "route", "record-route", "contact", "allow", "supported", "require",
    "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
    "content-encoding", "allow-events", "in-reply-to", "alert-info", "call-info",
    "error-info", "path", "service-route", "p-asserted-identity",
})

REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 301: "Moved Permanently",
    302: "Moved Temporarily", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 407: "Proxy Authentication Required",
    408: "Request Timeout", 413: "Request Entity Too Large", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 491: "Request Pending",
    500: "Server Internal Error", 501: "Not Implemented", 503: "Service Unavailable",
    504: "Server Time-out", 505: "Version Not Supported", 513: "Message Too Large",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
}


def _number(text: str, max_digits: int = 10) -> int | None:
    """An ASCII decimal of at most ``max_digits`` significant digits (leading zeros are fine,
    RFC 4475 §3.1.1.1), else None. The cap also keeps int() clear of its 4300-digit limit."""
    if not _DIGITS.fullmatch(text) or len(text.lstrip("0")) > max_digits:
        return None
    return int(text)


def canonical_name(name: str) -> str:
    low = name.lower()
    if len(low) == 1 and low in COMPACT:
        return COMPACT[low]
    canon = _CANON.get(low)
    if canon:
        return canon
    return "-".join(p[:1].upper() + p[1:] for p in low.split("-"))


class Headers:
    """Ordered, case-insensitive multi-map; list headers hold one entry per element."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        for name, value in items:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        self.remove(name)
        self.add(name, value)

    def prepend(self, name: str, value: str) -> None:
        self._items.insert(0, (canonical_name(name), value))

    def remove(self, name: str) -> None:
        key = canonical_name(name)
        self._items = [(n, v) for n, v in self._items if n != key]

    def get(self, name: str, default: str | None = None) -> str | None:
        key = canonical_name(name)
        for n, v in self._items:
            if n == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        key = canonical_name(name)
        return [v for n, v in self._items if n == key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def without(self, *names: str) -> Headers:
        skip = {canonical_name(n) for n in names}
        h = Headers()
        h._items = [(n, v) for n, v in self._items if n not in skip]
        return h

    def copy(self) -> Headers:
        h = Headers()
        h._items = list(self._items)
        return h

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(eq=False)
class Message:
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    # Convenience accessors; each raises SipParseError on a malformed value.
    @property
    def call_id(self) -> str:
        value = self.headers.get("Call-ID")
        if not value:
            raise SipParseError("missing Call-ID")
        return value

    @property
    def cseq(self) -> tuple[int, str]:
        value = self.headers.get("CSeq") or ""
        m = _CSEQ.fullmatch(value.strip(" \t"))
        seq = _number(m.group(1)) if m else None
        if m is None or seq is None:
            raise SipParseError(f"bad CSeq {value[:80]!r}")
        if seq >= 2**31:  # RFC 3261 §8.1.1.5
            raise SipParseError(f"CSeq out of range {value[:80]!r}")
        return seq, m.group(2).upper()

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        value = self.headers.get("Via")
        if value is None:
            raise SipParseError("missing Via")
        return parse_via(value)

    @property
    def from_(self) -> NameAddr:
        return parse_name_addr(self._required("From"))

    @property
    def to(self) -> NameAddr:
        return parse_name_addr(self._required("To"))

    @property
    def contacts(self) -> list[NameAddr]:
        return [parse_name_addr(v) for v in self.headers.get_all("Contact")]

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name}")
        return value

    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        lines = [self.start_line()]
        for name, value in self.headers:
            if name == "Content-Length":
                continue
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


@dataclass(eq=False)
class Request(Message):
    method: str = "OPTIONS"
    uri: str = ""
    bad_version: str = ""

    def start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


@dataclass(eq=False)
class Response(Message):
    status: int = 200
    reason: str = "OK"

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def _split_head(data: bytes, stream: bool) -> tuple[bytes, bytes]:
    """Head and body around the first empty line. A datagram may use bare LF (we are liberal,
    and take whichever blank line comes first); a stream was framed on CRLF CRLF (§18.3)."""
    if stream:
        idx = data.find(b"\r\n\r\n")
        return (data[:idx], data[idx + 4 :]) if idx >= 0 else (data, b"")
    m = _BLANK_LINE.search(data)
    if m:
        return data[: m.start()], data[m.end() :]
    return data.rstrip(b"\r\n"), b""


def _unfold(head: str) -> list[str]:
    """Split the head into lines, joining continuation lines (§7.3.1) to the header above;
    the start line takes no continuation."""
    lines: list[str] = []
    for line in re.split(r"\r?\n", head):
        if line[:1] in (" ", "\t") and len(lines) > 1:  # RFC 3261 §7.3.1 folding
            lines[-1] = lines[-1].rstrip(" \t") + " " + line.strip(" \t")
        else:
            lines.append(line)
    return lines


def _check_request_uri(uri: str) -> SipParseError | None:
    """Request-URI = SIP-URI / SIPS-URI / absoluteURI (§25.1). Other schemes pass here: the
    layers above answer 416 (§8.2.2.1), as ``parse_uri`` would."""
    scheme, colon, rest = uri.partition(":")
    if not colon or not rest or not _SCHEME.fullmatch(scheme) or _URI_FORBIDDEN.search(uri):
        return SipParseError(f"bad Request-URI {uri[:80]!r}")  # e.g. <uri>, RFC 4475 §3.1.2.7
    if scheme.lower() in ("sip", "sips"):
        try:
            parsed = parse_uri(uri)
        except SipParseError as exc:
            return SipParseError(f"bad Request-URI {uri[:80]!r}: {exc.reason}")
        if parsed.headers:  # §19.1.1 Table 1; RFC 4475 §3.1.2.11
            return SipParseError(f"headers in Request-URI {uri[:80]!r}")
    return None


def _parse_start(line: str) -> tuple[Message | None, SipParseError | None]:
    """The start line (§7.1, §7.2) and its error, if any. A bad request line still gives a
    Request when method and version can be told apart, so the error can carry a partial."""
    if line[:4].upper() == "SIP/":
        m = _STATUS_LINE.fullmatch(line)
        if not m:
            return None, SipParseError(f"bad status line {line[:80]!r}")
        resp = Response(status=int(m.group(2)), reason=m.group(3) or "")
        if m.group(1) != "2.0":
            return resp, SipParseError(f"unsupported version SIP/{m.group(1)[:20]}", status=505)
        if not 100 <= resp.status <= 699:
            return resp, SipParseError(f"status code out of range {resp.status}")
        return resp, None
    parts = line.split(" ")
    if len(parts) == 3 and _TOKEN.fullmatch(parts[0]):
        method, uri, version = parts
        req = Request(method=method, uri=uri)
        if version.upper() == "SIP/2.0":
            return req, _check_request_uri(uri)
        if _SIP_VERSION.fullmatch(version):
            return req, SipParseError(f"unsupported version {version[:20]!r}", status=505)
        return req, SipParseError(f"bad SIP version {version[:20]!r}")
    # Extra or trailing SP, or LWS inside the URI (RFC 4475 §3.1.2.8-§3.1.2.10): rejected,
    # but with the request as partial so that the 400 can be sent.
    loose = line.split()
    if len(loose) >= 3 and _TOKEN.fullmatch(loose[0]) and loose[-1][:4].upper() == "SIP/":
        partial = Request(method=loose[0], uri=" ".join(loose[1:-1]))
        return partial, SipParseError(f"bad request line {line[:80]!r}")
    return None, SipParseError(f"bad request line {line[:80]!r}")


def _parse_headers(msg: Message, lines: list[str]) -> SipParseError | None:
    """Add every well-formed header line to ``msg``; return the first fault, if any, so that
    the caller can raise it with as complete a partial as possible."""
    fault: SipParseError | None = None
    for line in lines:
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")  # HCOLON = *( SP / HTAB ) ":" SWS
        if not colon or not _TOKEN.fullmatch(name):
            fault = fault or SipParseError(f"bad header line {line[:80]!r}")
            continue
        value = value.strip(" \t")
        if canonical_name(name).lower() in LIST_HEADERS and value:
            try:
                items = split_list(value)
            except SipParseError as exc:
                fault = fault or exc
                items = [value]
            for item in items:
                msg.headers.add(name, item)
        else:
            msg.headers.add(name, value)
    return fault


def _frame_body(msg: Message, body: bytes, stream: bool) -> bytes:
    values = msg.headers.get_all("Content-Length")
    if not values:
        if stream:
            raise SipParseError("Content-Length required on stream transports")  # §18.3
        return body  # §18.3: on UDP the body runs to the end of the datagram
    lengths: set[int] = set()
    for value in values:
        length = _number(value, 18)
        if length is None:  # e.g. "-999", RFC 4475 §3.1.2.3
            raise SipParseError(f"bad Content-Length {value[:20]!r}")
        lengths.add(length)
    if len(lengths) > 1:
        raise SipParseError("conflicting Content-Length values")  # RFC 4475 §3.3.9
    length = lengths.pop()
    if length > len(body):
        raise SipParseError("body shorter than Content-Length")  # RFC 4475 §3.1.2.2
    return body[:length]  # §18.3: octets past Content-Length are dropped


def parse_message(data: bytes, *, stream: bool = False) -> Message:
    """Parse one complete message. Errors carry ``partial`` (the message so far) when there
    is enough to answer; a datagram may carry bytes past Content-Length, which are dropped (§18.3)."""
    head_bytes, body = _split_head(data.lstrip(b"\r\n"), stream)  # §7.5: skip leading CRLFs
    utf8_error: SipParseError | None = None
    try:
        head = head_bytes.decode("utf-8")
    except UnicodeDecodeError:
        # §7.3.1: text is UTF-8. Decode with U+FFFD anyway so the error carries a partial.
        head = head_bytes.decode("utf-8", errors="replace")
        utf8_error = SipParseError("message head is not UTF-8")
    lines = _unfold(head)
    cr_error: SipParseError | None = None
    if any("\r" in line for line in lines):
        # §25.1: CR comes only in CRLF (even quoted-pair excludes it). A stray one could end a
        # line for a peer when echoed back, so reject, and keep it out of the partial.
        cr_error = SipParseError("stray CR in message head")
        lines = [line.replace("\r", " ") for line in lines]
    msg, start_error = _parse_start(lines[0])
    if msg is None:
        raise start_error or SipParseError("bad start line")
    header_error = _parse_headers(msg, lines[1:])
    try:
        for error in (start_error, utf8_error, cr_error, header_error):
            if error is not None:
                raise error
        msg.body = _frame_body(msg, body, stream)
        _validate(msg)
    except SipParseError as exc:
        exc.partial = msg
        raise
    return msg


def _validate(msg: Message) -> None:
    """The mandatory headers of RFC 3261 §8.1.1 and their basic syntax."""
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if msg.headers.get(name) is None:
            raise SipParseError(f"missing {name}")
    for name in SINGLE_HEADERS:
        if len(msg.headers.get_all(name)) > 1:
            raise SipParseError(f"more than one {name}")  # RFC 4475 §3.3.8
    msg.call_id  # noqa: B018 - non-empty
    _, method = msg.cseq
    msg.vias  # noqa: B018 - all of them: a response copies them back (§8.2.6.2)
    msg.from_  # noqa: B018
    msg.to  # noqa: B018
    msg.contacts  # noqa: B018 - the remote target and registrations depend on them
    if isinstance(msg, Request):
        # §8.1.1.5: the CSeq method is the request's; an ACK that quotes INVITE is tolerated
        request_method = msg.method.upper()
        if method != request_method and not (request_method == "ACK" and method == "INVITE"):
            raise SipParseError(f"CSeq method {method[:40]} does not match {msg.method[:40]}")
        mf = msg.headers.get("Max-Forwards")
        if mf is not None:
            hops = _number(mf, 3)
            if hops is None or hops > 255:  # §20.22: 0-255
                raise SipParseError(f"bad Max-Forwards {mf[:20]!r}")


class StreamParser:
    """Frames messages on TCP/TLS by Content-Length (RFC 3261 §18.3) with size caps.

    ``feed`` returns parsed messages, ``SipParseError`` objects for bad ones it could frame,
    and ``b"pong"`` markers for RFC 5626 §4.4.1 CRLF keep-alive pings. A framing error
    (no Content-Length, oversize) sets ``broken``: the connection must be closed."""

    def __init__(self, max_header: int = 16384, max_body: int = 65536) -> None:
        self.max_header = max_header
        self.max_body = max_body
        self._buf = bytearray()
        self.broken = False

    def feed(self, data: bytes) -> list[Message | SipParseError | bytes]:
        if self.broken:
            return []
        self._buf += data
        out: list[Message | SipParseError | bytes] = []
        while self._buf:
            if self._buf.startswith(b"\r\n\r\n"):
                del self._buf[:4]
                out.append(b"pong")
                continue
            if self._buf.startswith(b"\r\n"):
                if len(self._buf) < 4 and b"\r\n\r\n".startswith(bytes(self._buf)):
                    break
                del self._buf[:2]
                continue
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > self.max_header:
                    out.append(self._fail("header too large", 513))
                break
            if end > self.max_header:
                out.append(self._fail("header too large", 513))
                break
            length = self._content_length(bytes(self._buf[:end]))
            if isinstance(length, SipParseError):
                out.append(length)
                break
            total = end + 4 + length
            if len(self._buf) < total:
                break
            raw = bytes(self._buf[:total])
            del self._buf[:total]
            try:
                out.append(parse_message(raw, stream=True))
            except SipParseError as exc:
                out.append(exc)
        return out

    def _content_length(self, head: bytes) -> int | SipParseError:
        """The body length a head announces, or the framing error that breaks the stream."""
        names = len(_CL_NAME.findall(head))
        values = _CL_VALUE.findall(head)
        if not names:
            return self._fail("Content-Length required on stream transports", 400)
        if len(values) != names:  # negative or not a number: RFC 4475 §3.1.2.3
            return self._fail("bad Content-Length", 400)
        lengths = {int(v) if len(v.lstrip(b"0")) <= 12 else self.max_body + 1 for v in values}
        if len(lengths) > 1:
            return self._fail("conflicting Content-Length values", 400)  # RFC 4475 §3.3.9
        length = lengths.pop()
        if length > self.max_body:
            return self._fail("body too large", 513)
        return length

    def _fail(self, reason: str, status: int) -> SipParseError:
        self.broken = True
        self._buf.clear()
        return SipParseError(reason, status=status)


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """Build a response per RFC 3261 §8.2.6.2: Via, From, To, Call-ID and CSeq are copied;
    a To tag is added when given and absent; Record-Route is copied for 18x/2xx (§12.1.1)."""
    resp = Response(status=status, reason=reason or REASONS.get(status, "Unknown"))
    h = resp.headers
    for via in request.headers.get_all("Via"):
        h.add("Via", via)
    # A partial request (answered 400) may lack some: copy those present, never empty ones.
    from_ = request.headers.get("From")
    if from_ is not None:
        h.add("From", from_)
    to = request.headers.get("To")
    if to is not None:
        if to_tag and status > 100:
            try:
                parsed = parse_name_addr(to)
                if parsed.tag is None:
                    to = str(parsed.with_tag(to_tag))
            except SipParseError:
                log.debug("cannot add To tag to %r", to)
        h.add("To", to)
    for name in ("Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is not None:
            h.add(name, value)
    if 100 < status < 300:
        for rr in request.headers.get_all("Record-Route"):
            h.add("Record-Route", rr)
    for name, value in headers:
        h.add(name, value)
    resp.body = body
    return resp
