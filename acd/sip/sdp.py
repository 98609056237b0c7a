"""SDP session descriptions (RFC 4566) and the offer/answer model (RFC 3264).

Sans-IO: ``parse`` turns bytes into frozen dataclasses, ``SessionDescription.to_bytes``
turns them back, and ``build_offer`` / ``answer_offer`` / ``accept_answer`` negotiate
audio for a plain RTP trunk. Nothing here touches a socket or a clock.

A bad description from a peer raises ``SdpError`` (a ``RemoteProtocolError``, status
400); an offer with nothing we can accept raises ``RemoteProtocolError`` with status 488.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, cast

from acd.sip.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "Attribute", "Codec", "Connection", "Direction", "MediaCapabilities", "MediaDescription",
    "NegotiatedStream", "Origin", "SdpError", "SessionDescription",
    "accept_answer", "answer_offer", "build_offer", "next_version", "parse",
]

log = logging.getLogger(__name__)

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
_DIRECTIONS: tuple[str, ...] = ("sendrecv", "sendonly", "recvonly", "inactive")

# ASCII digits only, bounded: int() alone would take "١٢", "1_0" or 5000 digits.
_NUM = re.compile(r"[0-9]{1,20}\Z")
_RTPMAP = re.compile(r"([0-9]{1,3})\s+([^/\s]+)/([0-9]{1,9})(?:/([0-9]{1,3}))?\Z")
_FMTP = re.compile(r"([0-9]{1,3})(?:\s+(.*))?\Z", re.S)
_PTIME = re.compile(r"([0-9]{1,6})(?:\.[0-9]{1,6})?\Z")
_RTCP = re.compile(r"([0-9]{1,5})(?:\s+\S+\s+\S+\s+(\S+))?\Z")

# RFC 3551 §6, table 4: static audio payload types (G722's RTP clock is 8000, §4.5.2).
_STATIC_PT: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1), 3: ("GSM", 8000, 1), 4: ("G723", 8000, 1), 8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1), 13: ("CN", 8000, 1), 18: ("G729", 8000, 1),
}
_SUPPORTED_PROTOS = frozenset({"RTP/AVP"})  # no SRTP on the trunk side yet
_HOLD_ADDRESSES = frozenset({"0.0.0.0"})  # RFC 3264 §8.4: RFC 2543-style hold
_TELEPHONE_EVENT = "telephone-event"
# RFC 4566 §5: v o s i u e p c b t r z k a m (session), m i c b k a (media).
_SESSION_EXTRA = "iueprzk"
_MEDIA_EXTRA = "ik"


class SdpError(RemoteProtocolError):
    """A session description from a peer that is not well formed (RFC 4566)."""


def _quote(line: str) -> str:
    return repr(line[:80])


def _num(text: str, what: str, line: str, lo: int = 0, hi: int | None = None) -> int:
    if not _NUM.match(text):
        raise SdpError(f"{what} {text[:20]!r} is not a number in {_quote(line)}")
    value = int(text)
    if value < lo or (hi is not None and value > hi):
        raise SdpError(f"{what} {value} out of range in {_quote(line)}")
    return value


def _bits(direction: str) -> tuple[bool, bool]:
    """(send, recv) of a direction attribute (RFC 3264 §5.1)."""
    return direction in ("sendrecv", "sendonly"), direction in ("sendrecv", "recvonly")


def _direction(send: bool, recv: bool) -> Direction:
    if send and recv:
        return "sendrecv"
    if send:
        return "sendonly"
    return "recvonly" if recv else "inactive"


def _first_direction(attributes: Iterable[Attribute]) -> Direction | None:
    for attr in attributes:
        if attr.value is None and attr.name in _DIRECTIONS:
            return cast(Direction, attr.name)
    return None


# --- the description itself -------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """The o= line (RFC 4566 §5.2)."""

    username: str
    sess_id: int
    sess_version: int
    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        fields = (self.username, self.sess_id, self.sess_version, self.nettype, self.addrtype)
        return " ".join(map(str, (*fields, self.address)))


@dataclass(frozen=True)
class Connection:
    """A c= line (RFC 4566 §5.7); ``address`` kept raw (may carry a /ttl)."""

    nettype: str
    addrtype: str
    address: str

    @property
    def is_hold(self) -> bool:
        """True for the old-style hold address ``0.0.0.0`` (RFC 3264 §8.4)."""
        return self.address in _HOLD_ADDRESSES

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True)
class Attribute:
    """An a= line: ``a=name`` (value None) or ``a=name:value`` (RFC 4566 §5.13)."""

    name: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Attribute:
        name, sep, value = text.partition(":")
        return cls(name, value if sep else None)

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True)
class Codec:
    """An RTP payload format: a=rtpmap data plus its a=fmtp parameters (RFC 4566 §6)."""

    payload_type: int
    name: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None

    @property
    def key(self) -> tuple[str, int, int]:
        """Identity for matching; subtype names are case-insensitive (RFC 4855 §3)."""
        return self.name.lower(), self.clock_rate, self.channels

    @property
    def is_telephone_event(self) -> bool:
        return self.name.lower() == _TELEPHONE_EVENT


@dataclass(frozen=True)
class MediaDescription:
    """One m= section (RFC 4566 §5.14) with its c=, b=, a= and other lines."""

    media: str
    port: int
    port_count: int | None
    proto: str
    formats: tuple[str, ...]
    connection: Connection | None = None
    bandwidths: tuple[str, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()

    def values(self, name: str) -> list[str]:
        """Values of every ``a=name:value`` line, in order."""
        return [a.value for a in self.attributes if a.name == name and a.value is not None]

    @property
    def direction(self) -> Direction | None:
        """The media-level direction attribute, if any (RFC 3264 §5.1)."""
        return _first_direction(self.attributes)

    @property
    def codecs(self) -> list[Codec]:
        """Payload formats in m= order; dynamic ones without a=rtpmap are skipped.

        A PT listed twice with two a=rtpmap lines (seen from carriers, e.g.
        ``101 101`` with telephone-event/16000 and /8000) yields both, in order."""
        rtpmap: dict[int, list[tuple[str, int, int]]] = {}
        for value in self.values("rtpmap"):
            match = _RTPMAP.match(value.strip())
            if match is None:
                log.debug("ignoring malformed a=rtpmap:%s", value)
                continue
            pt, name, rate, channels = match.groups()
            entry = (name, int(rate), int(channels) if channels else 1)
            rtpmap.setdefault(int(pt), []).append(entry)
        fmtp: dict[int, str] = {}
        for value in self.values("fmtp"):
            match = _FMTP.match(value.strip())
            if match is not None:
                fmtp.setdefault(int(match.group(1)), (match.group(2) or "").strip())
        codecs: list[Codec] = []
        seen: dict[int, int] = {}
        for fmt in self.formats:
            if not _NUM.match(fmt) or int(fmt) > 127:
                continue
            pt = int(fmt)
            maps = rtpmap.get(pt)
            seen[pt] = seen.get(pt, -1) + 1
            known = maps[min(seen[pt], len(maps) - 1)] if maps else _STATIC_PT.get(pt)
            if known is None:
                log.debug("payload type %d has no a=rtpmap; skipped", pt)
                continue
            codecs.append(Codec(pt, known[0], known[1], known[2], fmtp.get(pt)))
        return codecs

    def _millis(self, name: str) -> int | None:
        for value in self.values(name):
            match = _PTIME.match(value.strip())
            if match is not None and int(match.group(1)) > 0:
                return int(match.group(1))
        return None

    @property
    def ptime(self) -> int | None:
        """a=ptime in milliseconds (RFC 4566 §6), fractions dropped."""
        return self._millis("ptime")

    @property
    def maxptime(self) -> int | None:
        """a=maxptime in milliseconds (RFC 4566 §6)."""
        return self._millis("maxptime")

    @property
    def rtcp(self) -> tuple[int, str | None] | None:
        """(port, address or None) from a=rtcp (RFC 3605 §2.1), if present and valid."""
        for value in self.values("rtcp"):
            match = _RTCP.match(value.strip())
            if match is not None and int(match.group(1)) <= 65535:
                return int(match.group(1)), match.group(2)
        return None

    def lines(self) -> list[str]:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        out = [f"m={' '.join((self.media, port, self.proto, *self.formats))}"]
        out += [f"i={v}" for k, v in self.extra if k == "i"]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [f"b={b}" for b in self.bandwidths]
        out += [f"k={v}" for k, v in self.extra if k == "k"]
        out += [f"a={a}" for a in self.attributes]
        return out


@dataclass(frozen=True)
class SessionDescription:
    """A whole SDP body (RFC 4566 §5). ``times`` holds raw t= values."""

    origin: Origin
    name: str = "-"
    connection: Connection | None = None
    bandwidths: tuple[str, ...] = ()
    times: tuple[str, ...] = ("0 0",)
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def direction(self) -> Direction | None:
        """The session-level direction attribute, if any."""
        return _first_direction(self.attributes)

    def media_direction(self, index: int) -> Direction:
        """Media-level overrides session-level; default sendrecv (RFC 3264 §5.1)."""
        return self.media[index].direction or self.direction or "sendrecv"

    def media_connection(self, index: int) -> Connection | None:
        """Media-level c= else session-level c= (RFC 4566 §5.7)."""
        return self.media[index].connection or self.connection

    def is_held(self, index: int) -> bool:
        """Whether the author of this SDP puts stream ``index`` on hold (RFC 3264 §8.4)."""
        conn = self.media_connection(index)
        return self.media_direction(index) in ("sendonly", "inactive") or (
            conn is not None and conn.is_hold
        )

    def to_text(self) -> str:
        out = ["v=0", f"o={self.origin}", f"s={self.name}"]
        out += [f"{k}={v}" for k, v in self.extra if k in "iuep"]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [f"b={b}" for b in self.bandwidths]
        out += [f"t={t}" for t in self.times]
        out += [f"{k}={v}" for k, v in self.extra if k in "rzk"]
        out += [f"a={a}" for a in self.attributes]
        for media in self.media:
            out += media.lines()
        return "\r\n".join(out) + "\r\n"  # RFC 4566 §5: CRLF on send

    def to_bytes(self) -> bytes:
        return self.to_text().encode("utf-8")


# --- parsing ------------------------------------------------------------------------


def _parse_connection(value: str, line: str) -> Connection:
    fields = value.split()
    if len(fields) != 3:
        raise SdpError(f"malformed c= line {_quote(line)}")
    return Connection(*fields)


def _parse_origin(value: str, line: str) -> Origin:
    fields = value.split()
    if len(fields) != 6:
        raise SdpError(f"malformed o= line {_quote(line)}")
    sess_id = _num(fields[1], "sess-id", line)
    sess_version = _num(fields[2], "sess-version", line)
    return Origin(fields[0], sess_id, sess_version, fields[3], fields[4], fields[5])


_Line = tuple[str, str, str]  # (type letter, value, whole line)


@dataclass
class _Section:
    """The c=, b=, a= and other kept lines of the session or of one m= section."""

    extras: str  # the other type letters kept here, in RFC 4566 §5 order
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)

    def add(self, letter: str, value: str, line: str) -> None:
        if letter == "c":
            conn = _parse_connection(value, line)
            self.connection = self.connection or conn  # several c= are multicast-only
        elif letter == "b":
            self.bandwidths.append(value)
        elif letter == "a":
            self.attributes.append(Attribute.parse(value))
        elif letter in self.extras:
            self.extra.append((letter, value))
        else:  # RFC 4566 §5: unknown or misplaced types; lenient on receive
            log.debug("ignoring SDP line type %s= here", letter)

    def sorted_extra(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.extra, key=lambda item: self.extras.index(item[0])))


def _parse_media(section: list[_Line]) -> MediaDescription:
    _, value, line = section[0]
    fields = value.split()
    if len(fields) < 3:  # RFC 4566 §5.14: m=<media> <port>[/<n>] <proto> <fmt> ...
        raise SdpError(f"malformed m= line {_quote(line)}")
    port_text, slash, count_text = fields[1].partition("/")
    port = _num(port_text, "port", line, 0, 65535)
    count = _num(count_text, "port count", line, 1, 65535) if slash else None
    acc = _Section(_MEDIA_EXTRA)
    for item in section[1:]:
        acc.add(*item)
    return MediaDescription(
        fields[0], port, count, fields[2], tuple(fields[3:]), acc.connection,
        tuple(acc.bandwidths), tuple(acc.attributes), acc.sorted_extra(),
    )


def _decode(data: bytes | str) -> str:
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:  # RFC 4566 §5: UTF-8 by default
            raise SdpError("session description is not valid UTF-8") from exc
    if not isinstance(data, str):
        raise LocalProtocolError(f"parse() takes bytes or str, not {type(data).__name__}")
    try:
        data.encode("utf-8")  # lone surrogates could never be sent back out
    except UnicodeEncodeError as exc:
        raise SdpError("session description is not valid Unicode") from exc
    return data


def parse(data: bytes | str) -> SessionDescription:
    """Parse an SDP body; CRLF or bare LF line endings (RFC 4566 §5)."""
    items: list[_Line] = []
    for raw in _decode(data).split("\n"):
        line = raw.rstrip(" \t\r")
        if not line:
            continue  # lenient: blank lines
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            raise SdpError(f"malformed line {_quote(line)}")
        if "\r" in line or "\x00" in line:  # RFC 4566 §9: text excludes NUL, CR, LF
            raise SdpError(f"control character in line {_quote(line)}")
        items.append((line[0], line[2:], line))
    if not items or items[0][2] != "v=0":  # RFC 4566 §5.1
        first = _quote(items[0][2]) if items else "nothing"
        raise SdpError(f"session description must start with v=0, got {first}")
    sections: list[list[_Line]] = [[]]
    for item in items[1:]:
        if item[0] == "m":
            sections.append([])
        sections[-1].append(item)
    origin: Origin | None = None
    name: str | None = None
    times: list[str] = []
    acc = _Section(_SESSION_EXTRA)
    for letter, value, line in sections[0]:
        if letter == "o":
            if origin is not None:
                raise SdpError(f"second o= line {_quote(line)}")
            origin = _parse_origin(value, line)
        elif letter == "s":
            name = value if name is None else name
        elif letter == "t":
            times.append(value)
        else:
            acc.add(letter, value, line)
    if origin is None:
        raise SdpError("session description has no o= line")
    return SessionDescription(
        origin=origin, name="-" if name is None else name, connection=acc.connection,
        bandwidths=tuple(acc.bandwidths), times=tuple(times) or ("0 0",),
        attributes=tuple(acc.attributes), extra=acc.sorted_extra(),
        media=tuple(_parse_media(section) for section in sections[1:]),
    )


# --- offer / answer -----------------------------------------------------------------

_DEFAULT_CODECS = (Codec(0, "PCMU", 8000), Codec(8, "PCMA", 8000), Codec(9, "G722", 8000))


@dataclass(frozen=True)
class MediaCapabilities:
    """What we can do, codecs in preference order (their PTs are used in our offers)."""

    codecs: tuple[Codec, ...] = _DEFAULT_CODECS
    telephone_event: Codec | None = Codec(101, _TELEPHONE_EVENT, 8000, 1, "0-16")
    ptime: int = 20
    protos: frozenset[str] = frozenset({"RTP/AVP"})

    def __post_init__(self) -> None:
        if not self.codecs or any(c.is_telephone_event for c in self.codecs):
            raise LocalProtocolError("codecs must be non-empty and exclude telephone-event")
        if not self.protos or not self.protos <= _SUPPORTED_PROTOS:
            raise LocalProtocolError(f"protos must be a subset of {sorted(_SUPPORTED_PROTOS)}")
        if not 1 <= self.ptime <= 1000:
            raise LocalProtocolError(f"ptime {self.ptime} out of range")


@dataclass(frozen=True)
class NegotiatedStream:
    """One accepted audio stream. ``payload_type``/``fmtp`` are what the remote
    receives (RFC 3264 §5.1); ``direction`` is ours."""

    index: int
    local_port: int
    remote_address: str
    remote_port: int
    remote_rtcp_address: str
    remote_rtcp_port: int
    payload_type: int
    codec: str
    clock_rate: int
    channels: int
    fmtp: str | None
    telephone_event_pt: int | None
    ptime: int
    direction: Direction
    remote_hold: bool

    @property
    def sample_rate(self) -> int:
        """Audio sample rate; G722 runs at 16 kHz on an 8000 RTP clock (RFC 3551 §4.5.2)."""
        return 16000 if self.codec.upper() == "G722" else self.clock_rate


def _session(
    media: Sequence[MediaDescription], address: str, session_id: int, session_version: int,
    username: str,
) -> SessionDescription:
    for what, token in (("address", address), ("username", username)):
        if not token or any(ch.isspace() for ch in token):
            raise LocalProtocolError(f"bad local {what} {token!r}")
    if min(session_id, session_version) < 0:  # RFC 4566 §5.2: numeric strings
        raise LocalProtocolError("session id and version must not be negative")
    addrtype = "IP6" if ":" in address else "IP4"
    return SessionDescription(
        origin=Origin(username, session_id, session_version, "IN", addrtype, address),
        connection=Connection("IN", addrtype, address),
        media=tuple(media),
    )


def _audio_media(
    port: int, proto: str, codecs: Sequence[Codec], te: Codec | None, ptime: int,
    direction: Direction,
) -> MediaDescription:
    payloads = [*codecs, *([te] if te is not None else [])]
    attrs: list[Attribute] = []
    for codec in payloads:
        suffix = f"/{codec.channels}" if codec.channels != 1 else ""  # RFC 4566 §6 rtpmap
        encoding = f"{codec.name}/{codec.clock_rate}{suffix}"
        attrs.append(Attribute("rtpmap", f"{codec.payload_type} {encoding}"))
        if codec.fmtp:
            attrs.append(Attribute("fmtp", f"{codec.payload_type} {codec.fmtp}"))
    attrs += [Attribute("ptime", str(ptime)), Attribute(direction)]
    formats = tuple(str(c.payload_type) for c in payloads)
    return MediaDescription("audio", port, None, proto, formats, attributes=tuple(attrs))


def _check_local(port: int, direction: str) -> None:
    if not 1 <= port <= 65535:
        raise LocalProtocolError(f"local RTP port {port} out of range")
    if direction not in _DIRECTIONS:
        raise LocalProtocolError(f"unknown direction {direction!r}")


def build_offer(
    local: MediaCapabilities, *, address: str, port: int, session_id: int,
    session_version: int, direction: Direction = "sendrecv", username: str = "-",
) -> SessionDescription:
    """An offer with one audio stream carrying all our codecs (RFC 3264 §5)."""
    _check_local(port, direction)
    media = _audio_media(
        port, "RTP/AVP", local.codecs, local.telephone_event, local.ptime, direction
    )
    return _session([media], address, session_id, session_version, username)


def _connection(sdp: SessionDescription, index: int) -> Connection:
    conn = sdp.media_connection(index)
    if conn is None:  # RFC 4566 §5.7: c= at session level or in every m=
        raise SdpError(f"m= line {index} ({sdp.media[index].media}) has no c= line")
    return conn


def _pick_event(codecs: Iterable[Codec], clock_rate: int) -> Codec | None:
    """Events share the audio's timestamp base, so its clock too (RFC 4733 §2.1)."""
    for codec in codecs:
        if codec.is_telephone_event and codec.clock_rate == clock_rate:
            return codec
    return None


def _stream(
    remote: SessionDescription, index: int, local_port: int, codec: Codec,
    event: Codec | None, ptime: int, direction: Direction,
) -> NegotiatedStream:
    media, conn, rtcp = remote.media[index], _connection(remote, index), remote.media[index].rtcp
    return NegotiatedStream(
        index=index, local_port=local_port, remote_address=conn.address,
        remote_port=media.port, remote_rtcp_address=rtcp[1] if rtcp and rtcp[1] else conn.address,
        remote_rtcp_port=rtcp[0] if rtcp else media.port + 1,  # RFC 3605 §2.1, RFC 3550 §11
        payload_type=codec.payload_type, codec=codec.name, clock_rate=codec.clock_rate,
        channels=codec.channels, fmtp=codec.fmtp, ptime=ptime, direction=direction,
        telephone_event_pt=event.payload_type if event else None,
        remote_hold=remote.is_held(index),
    )


def _reject(media: MediaDescription) -> MediaDescription:
    # RFC 3264 §6: port 0, same media and proto, at least one format.
    return MediaDescription(media.media, 0, None, media.proto, media.formats or ("0",))


def answer_offer(
    offer: SessionDescription, local: MediaCapabilities, *, address: str, port: int,
    session_id: int, session_version: int, direction: Direction = "sendrecv",
    prefer_offerer_order: bool = False, multiple_codecs: bool = False,
    max_audio_streams: int = 1, username: str = "-",
) -> tuple[SessionDescription, list[NegotiatedStream]]:
    """Answer ``offer`` (RFC 3264 §6): same m= lines in the same order, unusable ones
    with port 0. The k-th accepted stream gets local port ``port + 2*k``.

    ``direction`` is what we want (e.g. sendonly to hold); it is intersected with the
    reverse of the offered direction (§6.1). Raises RemoteProtocolError(488) when no
    stream is acceptable.
    """
    _check_local(port, direction)
    want_send, want_recv = _bits(direction)
    local_keys = {c.key: c for c in local.codecs}
    answer_media: list[MediaDescription] = []
    streams: list[NegotiatedStream] = []
    reasons: list[str] = []
    for index, media in enumerate(offer.media):
        reason = ""
        if media.port == 0:
            reason = "disabled in the offer"  # RFC 3264 §6: stays port 0
        elif media.media.lower() != "audio":
            reason = f"media {media.media!r} not supported"
        elif media.proto.upper() not in local.protos:
            reason = f"transport {media.proto!r} not supported"
        elif len(streams) >= max_audio_streams:
            reason = "too many audio streams"
        offered = [c for c in media.codecs if not c.is_telephone_event] if not reason else []
        if prefer_offerer_order:
            firsts = {c.key: c for c in reversed(offered)}
            chosen = [c for c in offered if c.key in local_keys and firsts[c.key] is c]
        else:
            by_key = {c.key: c for c in reversed(offered)}  # first offered PT wins
            chosen = [by_key[c.key] for c in local.codecs if c.key in by_key]
        if not reason and not chosen:
            reason = "no common codec"
        if reason:
            log.debug("rejecting offered m= line %d: %s", index, reason)
            reasons.append(f"m={index} {reason}")
            answer_media.append(_reject(media))
            continue
        if not multiple_codecs:
            chosen = chosen[:1]
        reachable = not _connection(offer, index).is_hold  # RFC 3264 §8.4: 0.0.0.0
        event = _pick_event(media.codecs, chosen[0].clock_rate) if local.telephone_event else None
        offer_send, offer_recv = _bits(offer.media_direction(index))
        # RFC 3264 §6.1: the answer reverses the offer, within what we want.
        ours = _direction(want_send and offer_recv and reachable, want_recv and offer_send)
        ptime = media.ptime or local.ptime
        if media.maxptime is not None:
            ptime = min(ptime, media.maxptime)
        local_port = port + 2 * len(streams)
        # Our fmtp describes what we receive; fall back to echoing the offer's.
        answered = [replace(c, fmtp=local_keys[c.key].fmtp or c.fmtp) for c in chosen]
        te = local.telephone_event
        answered_event = replace(event, fmtp=te.fmtp or event.fmtp) if event and te else None
        answer_media.append(
            _audio_media(local_port, media.proto, answered, answered_event, ptime, ours)
        )
        streams.append(_stream(offer, index, local_port, chosen[0], event, ptime, ours))
    if not streams:
        raise RemoteProtocolError(
            "no acceptable media in offer: " + ("; ".join(reasons) or "no m= lines"), status=488
        )
    answer = _session(answer_media, address, session_id, session_version, username)
    return answer, streams


def accept_answer(
    offer: SessionDescription, answer: SessionDescription
) -> list[NegotiatedStream]:
    """Check the answer to our ``offer`` and return the usable streams (RFC 3264 §5, §6)."""
    if len(answer.media) != len(offer.media):  # RFC 3264 §6
        raise RemoteProtocolError(
            f"answer has {len(answer.media)} m= lines, offer had {len(offer.media)}"
        )
    streams: list[NegotiatedStream] = []
    for index, (ours, theirs) in enumerate(zip(offer.media, answer.media, strict=True)):
        if theirs.media.lower() != ours.media.lower():
            raise RemoteProtocolError(
                f"answer m= line {index} is {theirs.media!r}, offered {ours.media!r}"
            )
        if theirs.port == 0 or ours.port == 0 or ours.media.lower() != "audio":
            continue  # rejected (RFC 3264 §6)
        if theirs.proto.upper() != ours.proto.upper():
            raise RemoteProtocolError(
                f"answer m= line {index} changed transport to {theirs.proto!r}"
            )
        offered = {c.key for c in ours.codecs}
        codec = next(
            (c for c in theirs.codecs if not c.is_telephone_event and c.key in offered), None
        )
        if codec is None:
            log.debug("answer m= line %d has no codec from our offer", index)
            continue
        event = _pick_event(theirs.codecs, codec.clock_rate)
        if event is not None and event.key not in offered:
            event = None
        reachable = not _connection(answer, index).is_hold
        our_send, our_recv = _bits(offer.media_direction(index))
        their_send, their_recv = _bits(answer.media_direction(index))
        send = our_send and their_recv and reachable
        ptime = theirs.ptime or ours.ptime or 20
        if theirs.maxptime is not None:
            ptime = min(ptime, theirs.maxptime)
        direction = _direction(send, our_recv and their_send)
        streams.append(_stream(answer, index, ours.port, codec, event, ptime, direction))
    if not streams:
        raise RemoteProtocolError("answer accepts no usable media stream", status=488)
    return streams


def next_version(previous: SessionDescription, new: SessionDescription) -> SessionDescription:
    """``new`` under ``previous``'s o= line, the version bumped by one only if the
    session changed (RFC 3264 §8); an unchanged session returns ``previous``."""
    if replace(new, origin=previous.origin) == previous:
        return previous
    bumped = replace(previous.origin, sess_version=previous.origin.sess_version + 1)
    return replace(new, origin=bumped)
