"""SIP URIs, name-addr values, Via values and header parameters (RFC 3261 §19.1, §20, §25.1)."""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass, field, replace

from acd.sip.errors import SipParseError

__all__ = [
    "SipURI",
    "NameAddr",
    "Via",
    "parse_uri",
    "parse_name_addr",
    "parse_via",
    "parse_params",
    "format_params",
    "split_list",
    "format_host",
]

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")  # RFC 3261 §25.1 token; use fullmatch
# §25.1 hostname, plus "_": not in the grammar but common in real host names and unambiguous
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_\-.]*[A-Za-z0-9_])?\.?")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")  # RFC 3986 §3.1
# userinfo (§19.1.1): anything but "@", LWS and the delimiters of a name-addr
_USERINFO = re.compile(r"[^\s@<>\"]+")
# ASCII digits only: str.isdigit() also accepts "²", which int() then rejects
_DIGITS = re.compile(r"[0-9]{1,5}")
# via-parm = sent-protocol LWS sent-by *( SEMI via-params ); SLASH may carry LWS (§25.1)
_VIA = re.compile(
    r"SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+(.*)", re.I | re.S
)
SCHEMES = ("sip", "sips")
_DEFAULT_PORTS = {"sip": 5060, "sips": 5061}


def split_list(value: str, sep: str = ",") -> list[str]:
    """Split a header value on ``sep`` outside quoted strings and ``<...>`` (RFC 3261 §7.3.1)."""
    return [p for p in _split_raw(value, sep) if p]


def _split_raw(value: str, sep: str) -> list[str]:
    """Like :func:`split_list` but keeps empty elements, so callers can reject them."""
    parts: list[str] = []
    start = 0
    in_quote = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if in_quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == sep and not in_angle:
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    if in_quote:
        raise SipParseError("unterminated quoted string")
    parts.append(value[start:].strip())
    return parts


def parse_params(text: str) -> dict[str, str | None]:
    """``;a=b;c`` → ``{"a": "b", "c": None}``; names lower-cased, quoted values kept quoted.

    A leading ``;`` is optional; an empty parameter (``;;`` or a trailing ``;``) is an error,
    as the grammar has none (RFC 3261 §25.1, RFC 4475 §3.1.2.1)."""
    params: dict[str, str | None] = {}
    text = text.strip(" \t")
    if not text:
        return params
    if text.startswith(";"):
        text = text[1:]
    for part in _split_raw(text, ";"):
        name, eq, value = part.partition("=")
        name = name.strip(" \t").lower()
        if not name:
            raise SipParseError("empty parameter")
        if not _TOKEN.fullmatch(name):
            raise SipParseError(f"bad parameter name {name[:40]!r}")
        params[name] = value.strip(" \t") if eq else None
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _parse_host(text: str) -> str:
    if text.startswith("["):
        if not text.endswith("]"):
            raise SipParseError(f"bad IPv6 reference {text[:80]!r}")
        try:
            ipaddress.IPv6Address(text[1:-1])
        except ValueError as exc:
            raise SipParseError(f"bad IPv6 reference {text[:80]!r}") from exc
        return text[1:-1].lower()
    if not text or not _HOSTNAME.fullmatch(text):
        raise SipParseError(f"bad host {text[:80]!r}")
    return text.lower()


def format_host(host: str) -> str:
    """Brackets an IPv6 address for use in a URI or Via (RFC 3261 §25.1 IPv6reference)."""
    return f"[{host}]" if ":" in host else host


def _split_hostport(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"bad IPv6 reference {text[:80]!r}")
        host, rest = text[: end + 1], text[end + 1 :]
    else:
        host, _, port_text = text.partition(":")
        rest = ":" + port_text if _ else ""
    port: int | None = None
    if rest:
        if not rest.startswith(":") or not _DIGITS.fullmatch(rest[1:]):
            raise SipParseError(f"bad port in {text[:80]!r}")
        port = int(rest[1:])
        if not 0 < port < 65536:
            raise SipParseError(f"port out of range in {text[:80]!r}")
    return _parse_host(host), port


@dataclass(frozen=True)
class SipURI:
    """A ``sip:`` or ``sips:`` URI (RFC 3261 §19.1.1)."""

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict, compare=False)
    headers: str = ""

    @property
    def transport(self) -> str:
        value = self.params.get("transport")
        if value:
            return value.lower()
        return "tls" if self.scheme == "sips" else "udp"

    @property
    def effective_port(self) -> int:
        return self.port or _DEFAULT_PORTS[self.scheme]

    def with_params(self, **params: str | None) -> SipURI:
        merged = dict(self.params)
        merged.update(params)
        return replace(self, params=merged)

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(format_host(self.host))
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(format_params(self.params))
        if self.headers:
            out.append("?" + self.headers)
        return "".join(out)


def parse_uri(text: str) -> SipURI:
    """Parse a SIP/SIPS URI; other schemes raise :class:`SipParseError` with status 416."""
    text = text.strip()
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme):
        raise SipParseError(f"not a URI: {text[:80]!r}")
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise SipParseError(f"unsupported URI scheme {scheme[:20]!r}", status=416)
    user = password = None
    # userinfo ends at the first "@": user and password never hold a bare "@", but the user
    # part may hold ";" and "?" (§19.1.1, RFC 4475 §3.1.1.2 and §3.1.1.9)
    at = rest.find("@")
    if at >= 0 and _USERINFO.fullmatch(rest[:at]):
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, pcolon, pw = userinfo.partition(":")
        password = pw if pcolon else None
        if not user:
            raise SipParseError(f"empty user part in {text[:80]!r}")
    rest, _, headers = rest.partition("?")
    hostport, semi, param_text = rest.partition(";")
    host, port = _split_hostport(hostport)
    params = parse_params(";" + param_text) if semi else {}
    return SipURI(scheme, host, user, password, port, params, headers)


@dataclass(frozen=True)
class NameAddr:
    """``"Display" <uri>;params`` as in From, To, Contact, Route (RFC 3261 §20.10, §25.1)."""

    uri: str
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def sip_uri(self) -> SipURI:
        return parse_uri(self.uri)

    def with_tag(self, tag: str) -> NameAddr:
        return replace(self, params={**self.params, "tag": tag})

    def __str__(self) -> str:
        disp = f"{self.display} " if self.display else ""
        return f"{disp}<{self.uri}>{format_params(self.params)}"


def parse_name_addr(text: str) -> NameAddr:
    text = text.strip()
    if not text:
        raise SipParseError("empty address")
    if text == "*":
        return NameAddr("*")
    display: str | None = None
    if text.startswith('"'):
        i = 1
        while i < len(text):
            if text[i] == "\\":
                i += 2
                continue
            if text[i] == '"':
                break
            i += 1
        else:
            raise SipParseError("unterminated display name")
        display = text[: i + 1]
        text = text[i + 1 :].lstrip()
    lt = text.find("<")
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise SipParseError("unterminated <URI>")
        if display is None and text[:lt].strip():
            display = text[:lt].strip()
        uri = text[lt + 1 : gt].strip()
        rest = text[gt + 1 :].strip()
    elif display is not None:
        raise SipParseError("display name without <URI>")
    else:
        # addr-spec form: parameters after the URI belong to the header (§20.10)
        uri, semi, params_text = text.partition(";")
        uri = uri.strip(" \t")
        rest = ";" + params_text if semi else ""
        if "?" in uri or any(c in uri for c in ' \t"<>'):
            # §20.10: a URI with "?" (or ",", ";") MUST be in <>; RFC 4475 §3.1.2.13
            raise SipParseError(f"URI must be enclosed in <>: {uri[:80]!r}")
    if not uri or ":" not in uri:
        raise SipParseError(f"bad URI in address {text[:80]!r}")
    if rest and not rest.startswith(";"):
        raise SipParseError(f"junk after address: {rest[:80]!r}")
    params = parse_params(rest) if rest else {}
    return NameAddr(uri, display, params)


@dataclass(frozen=True)
class Via:
    """One Via entry (RFC 3261 §20.42) with ``rport`` (RFC 3581)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def with_params(self, **params: str | None) -> Via:
        return replace(self, params={**self.params, **params})

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport.upper()} {format_host(self.host)}{port}{format_params(self.params)}"


def parse_via(text: str) -> Via:
    # sent-protocol may have LWS around its slashes, sent-by around its colon (§25.1 SLASH, COLON)
    m = _VIA.fullmatch(text.strip(" \t"))
    if not m:
        raise SipParseError(f"bad Via {text[:80]!r}")
    hostport, semi, param_text = m.group(2).partition(";")
    hostport = re.sub(r"[ \t]*:[ \t]*", ":", hostport.strip(" \t"))
    host, port = _split_hostport(hostport)
    params = parse_params(";" + param_text) if semi else {}
    return Via(m.group(1).upper(), host, port, params)
