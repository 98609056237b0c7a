"""SIP Digest authentication (RFC 7616, RFC 3261 §22, RFC 8760), sans-IO.

Everything here works on header *values*. The server side (:class:`DigestServer`)
produces WWW-Authenticate / Proxy-Authenticate values and checks Authorization /
Proxy-Authorization values; the client side (:func:`build_authorization`,
:class:`DigestClient`) answers a 401/407. No sockets, no clock: every
time-dependent call takes ``now`` in seconds. Use wall-clock time (``time.time()``)
so that nonces stay verifiable across a restart with the same secret.

Password storage: ``lookup(username, realm)`` returns

* ``None`` for an unknown user,
* a ``str``: the plaintext password, or
* a ``Mapping[str, str]``: HA1 = H(username ":" realm ":" password) in hex, keyed
  by hash name (``"MD5"``, ``"SHA-256"``), as made by :func:`compute_ha1`. Storing
  HA1 per hash rather than the password is what RFC 7616 §5.2 recommends.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import os
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from acd.sip.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "AuthResult", "AuthStatus", "Challenge", "Credentials", "DigestClient", "DigestServer",
    "build_authorization", "choose_challenge", "compute_ha1", "compute_response",
]

log = logging.getLogger(__name__)

Secret = str | Mapping[str, str]
Lookup = Callable[[str, str], "Secret | None"]

# RFC 7616 §3.3 / RFC 8760 §2.1: algorithm token -> (hash name, is a -sess variant)
_ALGORITHMS: dict[str, tuple[str, bool]] = {
    "MD5": ("MD5", False),
    "MD5-sess": ("MD5", True),
    "SHA-256": ("SHA-256", False),
    "SHA-256-sess": ("SHA-256", True),
}
_CANONICAL = {name.upper(): name for name in _ALGORITHMS}
# Local policy (RFC 7616 §3.7, RFC 8760 §2.4): prefer SHA-256 whatever the order.
_STRENGTH = {"SHA-256": 0, "MD5": 1}

# RFC 7230 §3.2.6 token / quoted-string; RFC 7235 §2.1 token68
_TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_TOKEN_RE = re.compile(rf"{_TCHAR}+")
_PARAM_RE = re.compile(rf'({_TCHAR}+)[ \t]*=[ \t]*(?:({_TCHAR}+)|"((?:[^"\\]|\\.)*)")', re.S)
_TOKEN68_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(?:,|$))")
_OWS_RE = re.compile(r"[ \t]*")
_OWS_COMMA_RE = re.compile(r"[ \t,]*")
_FOLD_RE = re.compile(r"\r?\n(?=[ \t])")
_BAD_CHAR_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.S)
_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_NC_RE = re.compile(r"[0-9a-fA-F]{8}")

# Server nonce: base64url(issue time in ms || 8 random bytes || HMAC-SHA-256[:16])
_NONCE_HEAD = struct.Struct(">Q8s")
_NONCE_MAC_LEN = 16
_NONCE_CHARS = 43  # 32 bytes, unpadded base64url


def _skip(regex: re.Pattern[str], value: str, pos: int) -> int:
    """End of ``regex`` (which may match empty) at ``pos``."""
    match = regex.match(value, pos)
    return match.end() if match is not None else pos


def _syntax_error(value: str, pos: int) -> RemoteProtocolError:
    return RemoteProtocolError(f"bad auth header syntax at offset {pos}: {value[pos:pos + 20]!r}")


def _parse_auth_list(value: str) -> list[tuple[str, str | None, dict[str, str]]]:
    """Split a header value into (scheme, token68, params) items (RFC 7235 §2.1, §4.1)."""
    value = _FOLD_RE.sub("", value)  # tolerate an unfolded obs-fold (RFC 3261 §7.3.1)
    bad = _BAD_CHAR_RE.search(value)
    if bad is not None:
        raise RemoteProtocolError(f"control character {bad.group()!r} in auth header")
    items: list[tuple[str, str | None, dict[str, str]]] = []
    end = len(value)
    pos = _skip(_OWS_COMMA_RE, value, 0)
    while pos < end:
        scheme = _TOKEN_RE.match(value, pos)
        if scheme is None:
            raise _syntax_error(value, pos)
        params: dict[str, str] = {}
        after = _skip(_OWS_RE, value, scheme.end())
        if after == end or value[after] == ",":  # a bare scheme
            items.append((scheme.group(), None, params))
            pos = _skip(_OWS_COMMA_RE, value, after)
            continue
        if after == scheme.end():  # RFC 7235 §2.1: 1*SP after the scheme
            raise _syntax_error(value, after)
        pos = after
        if _PARAM_RE.match(value, pos) is None:
            t68 = _TOKEN68_RE.match(value, pos)
            if t68 is None:
                raise _syntax_error(value, pos)
            items.append((scheme.group(), t68.group(), params))
            pos = _skip(_OWS_COMMA_RE, value, t68.end())
            continue
        items.append((scheme.group(), None, params))
        while (param := _PARAM_RE.match(value, pos)) is not None:
            name = param.group(1).lower()
            if name in params:  # RFC 7235 §2.1: each name at most once
                raise RemoteProtocolError(f"duplicate auth-param {name!r}")
            raw = param.group(2)
            params[name] = raw if raw is not None else _QUOTED_PAIR_RE.sub(
                lambda m: m.group(1), param.group(3))
            pos = _skip(_OWS_RE, value, param.end())
            if pos == end:
                break
            if value[pos] != ",":
                raise _syntax_error(value, pos)
            pos = _skip(_OWS_COMMA_RE, value, pos)
        # no auth-param here: the next challenge's scheme (or the end) follows
    return items


def _quote(text: str) -> str:
    """Quoted-string (RFC 7230 §3.2.6, RFC 3261 §25.1) with '"' and '\\' escaped."""
    if _BAD_CHAR_RE.search(text):
        raise LocalProtocolError(f"control character in auth-param value {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _token(text: str) -> str:
    if not _TOKEN_RE.fullmatch(text):
        raise LocalProtocolError(f"{text!r} is not a token")
    return text


def _required(params: Mapping[str, str], *names: str) -> list[str]:
    missing = [n for n in names if n not in params]
    if missing:
        raise RemoteProtocolError(f"Digest header lacks {', '.join(missing)}")
    return [params[n] for n in names]


def _canonical_algorithm(name: str | None) -> str:
    """RFC 7616 §3.3: absent means MD5; unknown names are kept for the caller to skip."""
    if name is None:
        return "MD5"
    return _CANONICAL.get(name.upper(), name)


@dataclass(frozen=True, slots=True)
class Challenge:
    """One Digest challenge (RFC 7616 §3.3): a WWW-/Proxy-Authenticate value."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None
    userhash: bool = False

    @classmethod
    def parse(cls, value: str) -> Challenge:
        """Exactly one Digest challenge; other schemes in the value are skipped."""
        found = _parse_challenges(value)
        if len(found) != 1:
            raise RemoteProtocolError(f"expected one Digest challenge, found {len(found)}")
        return found[0]

    def to_header(self) -> str:
        parts = [f"realm={_quote(self.realm)}"]
        if self.domain is not None:
            parts.append(f"domain={_quote(self.domain)}")
        parts.append(f"nonce={_quote(self.nonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.stale:
            parts.append("stale=true")
        parts.append(f"algorithm={_token(self.algorithm)}")
        if self.qop:
            parts.append(f"qop={_quote(','.join(_token(q) for q in self.qop))}")
        if self.userhash:
            parts.append("userhash=true")
        return "Digest " + ", ".join(parts)


def _parse_challenges(value: str) -> list[Challenge]:
    out: list[Challenge] = []
    for scheme, token68, params in _parse_auth_list(value):
        if scheme.lower() != "digest":
            continue
        if token68 is not None:
            raise RemoteProtocolError("Digest challenge with a token68 instead of auth-params")
        realm, nonce = _required(params, "realm", "nonce")
        # RFC 7616 §3.3: qop is a quoted list of tokens; unknown params are ignored
        qop = tuple(q for q in (s.strip().lower() for s in params.get("qop", "").split(",")) if q)
        out.append(Challenge(
            realm=realm,
            nonce=nonce,
            algorithm=_canonical_algorithm(params.get("algorithm")),
            qop=qop,
            opaque=params.get("opaque"),
            stale=params.get("stale", "").lower() == "true",
            domain=params.get("domain"),
            userhash=params.get("userhash", "").lower() == "true",
        ))
    return out


@dataclass(frozen=True, slots=True)
class Credentials:
    """Digest credentials (RFC 7616 §3.4): an Authorization/Proxy-Authorization value."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None  # as sent (8 hex digits): the digest covers the text
    cnonce: str | None = None
    opaque: str | None = None
    userhash: bool = False

    @classmethod
    def parse(cls, value: str) -> Credentials:
        items = _parse_auth_list(value)
        if len(items) != 1:
            raise RemoteProtocolError(f"expected one set of credentials, found {len(items)}")
        scheme, token68, params = items[0]
        if scheme.lower() != "digest":  # RFC 3261 §22.1: no Basic in SIP
            raise RemoteProtocolError(f"unsupported auth scheme {scheme!r}")
        if token68 is not None:
            raise RemoteProtocolError("Digest credentials with a token68 instead of auth-params")
        username, realm, nonce, uri, response = _required(
            params, "username", "realm", "nonce", "uri", "response")
        if not _HEX_RE.fullmatch(response):
            raise RemoteProtocolError("Digest response is not hex")
        qop = params.get("qop")
        nc, cnonce = params.get("nc"), params.get("cnonce")
        if qop is not None:
            qop = qop.lower()
            # RFC 7616 §3.4: with qop, cnonce and nc (8LHEX) are mandatory
            if nc is None or cnonce is None:
                raise RemoteProtocolError("Digest qop without nc and cnonce")
            if not _NC_RE.fullmatch(nc) or int(nc, 16) == 0:
                raise RemoteProtocolError(f"bad nonce-count {nc!r}")
        return cls(
            username=username, realm=realm, nonce=nonce, uri=uri, response=response,
            algorithm=_canonical_algorithm(params.get("algorithm")), qop=qop,
            nc=nc if qop is not None else None, cnonce=cnonce, opaque=params.get("opaque"),
            userhash=params.get("userhash", "").lower() == "true",
        )

    def to_header(self) -> str:
        parts = [f"username={_quote(self.username)}", f"realm={_quote(self.realm)}",
                 f"nonce={_quote(self.nonce)}", f"uri={_quote(self.uri)}",
                 f"response={_quote(self.response)}", f"algorithm={_token(self.algorithm)}"]
        if self.cnonce is not None:
            parts.append(f"cnonce={_quote(self.cnonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.qop is not None:
            parts.append(f"qop={_token(self.qop)}")
        if self.nc is not None:
            parts.append(f"nc={_token(self.nc)}")
        if self.userhash:
            parts.append("userhash=true")
        return "Digest " + ", ".join(parts)


def _hash(hash_name: str, data: str) -> str:
    raw = data.encode("utf-8")
    if hash_name == "MD5":
        return hashlib.md5(raw, usedforsecurity=False).hexdigest()
    return hashlib.sha256(raw).hexdigest()


def _algorithm(name: str) -> tuple[str, str, bool]:
    canonical = _canonical_algorithm(name)
    if canonical not in _ALGORITHMS:
        raise LocalProtocolError(f"unsupported Digest algorithm {name!r}")
    return (canonical, *_ALGORITHMS[canonical])


def compute_ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """H(username ":" realm ":" password), the storable HA1 (RFC 7616 §3.4.2).

    A ``-sess`` algorithm yields the HA1 of its base hash: the session part is
    applied per nonce by :func:`compute_response`.
    """
    _, hash_name, _ = _algorithm(algorithm)
    return _hash(hash_name, f"{username}:{realm}:{password}")


def compute_response(
    *, algorithm: str, ha1: str, nonce: str, method: str, uri: str,
    qop: str | None = None, nc: str | None = None, cnonce: str | None = None,
) -> str:
    """The request-digest (RFC 7616 §3.4.1); ``qop=None`` is the RFC 2069 form."""
    name, hash_name, sess = _algorithm(algorithm)
    ha1 = ha1.lower()
    if sess:  # RFC 7616 §3.4.2
        if cnonce is None:
            raise LocalProtocolError(f"{name} needs a cnonce")
        ha1 = _hash(hash_name, f"{ha1}:{nonce}:{cnonce}")
    ha2 = _hash(hash_name, f"{method}:{uri}")  # RFC 7616 §3.4.3, qop=auth
    if qop is None:  # RFC 2617 §3.2.2.1 compatibility with RFC 2069
        return _hash(hash_name, f"{ha1}:{nonce}:{ha2}")
    if qop != "auth":
        raise LocalProtocolError(f"unsupported qop {qop!r}")
    if nc is None or cnonce is None:
        raise LocalProtocolError("qop=auth needs nc and cnonce")
    return _hash(hash_name, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


class AuthStatus(Enum):
    OK = "ok"
    STALE = "stale"  # re-challenge with stale=true (RFC 7616 §3.3)
    BAD_CREDENTIALS = "bad-credentials"
    UNKNOWN_USER = "unknown-user"  # answer as for BAD_CREDENTIALS: do not leak users
    WRONG_REALM = "wrong-realm"
    UNSUPPORTED = "unsupported"  # well-formed, but uses something we did not offer
    MALFORMED = "malformed"  # answer 400 (RFC 3261 §21.4.1)


@dataclass(frozen=True, slots=True)
class AuthResult:
    status: AuthStatus
    reason: str = ""
    username: str | None = None
    algorithm: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is AuthStatus.OK

    @property
    def stale(self) -> bool:
        return self.status is AuthStatus.STALE

    @property
    def rechallenge(self) -> bool:
        """Whether to answer 401/407 with :meth:`DigestServer.challenge`."""
        return self.status not in (AuthStatus.OK, AuthStatus.MALFORMED)


class DigestServer:
    """Challenges peers and checks their credentials for one realm.

    Nonces are stateless: base64url(issue time || salt || HMAC(secret)), so any
    process holding ``secret`` can check them. Only the last nonce-count of each
    nonce in use is kept, in an LRU bounded by ``max_tracked_nonces``; a nonce
    pushed out of it is answered ``STALE`` so that replays stay impossible.
    Without qop (``allow_rfc2069``) there is no nonce-count, only the lifetime.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        *,
        nonce_lifetime: float = 300.0,
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
        qop: str = "auth",
        opaque: str | None = None,
        allow_rfc2069: bool = False,
        max_tracked_nonces: int = 4096,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(secret) < 16:
            raise LocalProtocolError("the nonce secret must be at least 16 bytes")
        if qop != "auth":
            raise LocalProtocolError(f"only qop=auth is supported, not {qop!r}")
        algs = tuple(_algorithm(a)[0] for a in algorithms)
        if not algs or len(set(algs)) != len(algs):
            raise LocalProtocolError(f"bad algorithm list {list(algorithms)!r}")
        if not nonce_lifetime > 0 or max_tracked_nonces < 1:
            raise LocalProtocolError("nonce_lifetime and max_tracked_nonces must be positive")
        _quote(realm)
        self.realm = realm
        self.algorithms = algs
        self.nonce_lifetime = float(nonce_lifetime)
        self.opaque = opaque
        self.allow_rfc2069 = allow_rfc2069
        self._secret = bytes(secret)
        self._realm_bytes = b"homeline digest nonce\0" + realm.encode("utf-8")
        self._rng = rng
        self._max_tracked = max_tracked_nonces
        self._nc: OrderedDict[str, tuple[int, float]] = OrderedDict()  # nonce -> (nc, issued)
        self._forgotten_before = -math.inf  # untracked nonces issued up to here are stale

    # RFC 7616 §3.3 nonce: time-stamp plus a keyed hash of it
    def _mac(self, head: bytes) -> bytes:
        return hmac.new(self._secret, head + self._realm_bytes, hashlib.sha256).digest()[
            :_NONCE_MAC_LEN]

    def _new_nonce(self, now: float) -> str:
        if not math.isfinite(now):
            raise LocalProtocolError(f"bad time {now!r}")
        ms = min(max(int(now * 1000), 0), 2**64 - 1)
        head = _NONCE_HEAD.pack(ms, self._rng(8))
        return base64.urlsafe_b64encode(head + self._mac(head)).rstrip(b"=").decode("ascii")

    def _nonce_issued(self, nonce: str) -> float | None:
        """When we issued ``nonce``, or None if we did not."""
        if len(nonce) != _NONCE_CHARS:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=")
        except (binascii.Error, ValueError):
            return None
        if base64.urlsafe_b64encode(raw).rstrip(b"=") != nonce.encode("ascii"):
            return None  # not the canonical spelling
        head, mac = raw[:_NONCE_HEAD.size], raw[_NONCE_HEAD.size:]
        if not hmac.compare_digest(mac, self._mac(head)):
            return None
        return _NONCE_HEAD.unpack(head)[0] / 1000.0

    def challenge(self, now: float, stale: bool = False) -> list[str]:
        """WWW-/Proxy-Authenticate values, one per algorithm, preferred first
        (RFC 7616 §3.7, RFC 8760 §2.3); they share one fresh nonce."""
        nonce = self._new_nonce(now)
        return [
            Challenge(self.realm, nonce, alg, ("auth",), self.opaque, stale).to_header()
            for alg in self.algorithms
        ]

    def verify(
        self,
        method: str,
        authorization: str | Sequence[str],
        now: float,
        lookup: Lookup,
        *,
        request_uri: str | None = None,
    ) -> AuthResult:
        """Check Authorization/Proxy-Authorization value(s); never raises on bad input.

        Several values (RFC 3261 §22.3, one per realm) are allowed: the one for our
        realm is used. With ``request_uri``, the digest uri must equal it exactly
        (RFC 7616 §3.4.6); leave it None to skip the check.
        """
        values = [authorization] if isinstance(authorization, str) else list(authorization)
        try:
            all_creds = [Credentials.parse(v) for v in values]
        except RemoteProtocolError as exc:
            return self._result(AuthStatus.MALFORMED, exc.reason)
        mine = [c for c in all_creds if c.realm == self.realm]
        if not mine:
            return self._result(AuthStatus.WRONG_REALM, f"no credentials for realm {self.realm!r}")
        if len(mine) > 1:
            return self._result(AuthStatus.MALFORMED, "several credentials for one realm")
        return self._check(method, mine[0], now, lookup, request_uri)

    def _result(
        self, status: AuthStatus, reason: str = "", creds: Credentials | None = None
    ) -> AuthResult:
        user = creds.username if creds is not None else None
        if status is not AuthStatus.OK:
            log.debug("digest auth %s (user %r, realm %r): %s",
                      status.value, user, self.realm, reason)
        return AuthResult(status, reason, user, creds.algorithm if creds is not None else None)

    def _check(
        self, method: str, creds: Credentials, now: float, lookup: Lookup, request_uri: str | None
    ) -> AuthResult:
        unsupported = AuthStatus.UNSUPPORTED
        if creds.userhash:  # RFC 7616 §3.4.4: never offered
            return self._result(unsupported, "userhash is not supported", creds)
        if creds.algorithm not in self.algorithms:
            return self._result(unsupported, f"algorithm {creds.algorithm!r} not offered", creds)
        sess = _ALGORITHMS[creds.algorithm][1]
        if creds.qop is None:
            if not self.allow_rfc2069:
                return self._result(unsupported, "RFC 2069 digest without qop not allowed", creds)
            if sess:
                return self._result(AuthStatus.MALFORMED, "-sess needs qop and cnonce", creds)
        elif creds.qop != "auth":
            return self._result(unsupported, f"qop {creds.qop!r} not offered", creds)
        if request_uri is not None and creds.uri != request_uri:
            return self._result(AuthStatus.MALFORMED, "digest uri differs from Request-URI", creds)
        if self.opaque is not None and creds.opaque != self.opaque:
            return self._result(AuthStatus.BAD_CREDENTIALS, "opaque not echoed", creds)
        issued = self._nonce_issued(creds.nonce)
        if issued is None:
            return self._result(AuthStatus.BAD_CREDENTIALS, "nonce not issued by us", creds)
        secret = lookup(creds.username, creds.realm)
        if secret is None:
            return self._result(AuthStatus.UNKNOWN_USER, "unknown user", creds)
        hash_name = _ALGORITHMS[creds.algorithm][0]
        if isinstance(secret, str):
            ha1: str | None = compute_ha1(creds.username, creds.realm, secret, hash_name)
        else:
            ha1 = secret.get(hash_name)
            if ha1 is None:
                log.warning("no %s HA1 stored for %r in realm %r", hash_name, creds.username,
                            self.realm)
                return self._result(AuthStatus.BAD_CREDENTIALS, f"no {hash_name} HA1", creds)
        expected = compute_response(
            algorithm=creds.algorithm, ha1=ha1, nonce=creds.nonce, method=method, uri=creds.uri,
            qop=creds.qop, nc=creds.nc, cnonce=creds.cnonce)
        received = creds.response.lower().encode("ascii")  # hex, checked by parse
        if not hmac.compare_digest(expected.encode("ascii"), received):
            return self._result(AuthStatus.BAD_CREDENTIALS, "wrong response", creds)
        # The digest is right from here on: failures are "stale" (RFC 7616 §3.3).
        if now - issued > self.nonce_lifetime:
            return self._result(AuthStatus.STALE, "nonce expired", creds)
        if creds.nc is not None:
            stale = self._check_nc(creds.nonce, int(creds.nc, 16), issued, now)
            if stale:
                return self._result(AuthStatus.STALE, stale, creds)
        return self._result(AuthStatus.OK, "", creds)

    def _check_nc(self, nonce: str, nc: int, issued: float, now: float) -> str:
        """Record ``nc`` for ``nonce``; a non-empty reason if it is a replay (RFC 7616 §5.5)."""
        seen = self._nc.get(nonce)
        if seen is None:
            if issued <= self._forgotten_before:
                return "nonce no longer tracked"
        elif nc <= seen[0]:
            return f"nonce-count replay (nc {nc} after {seen[0]})"
        self._nc[nonce] = (nc, issued)
        self._nc.move_to_end(nonce)
        while self._nc:  # drop expired nonces from the cold end (they are stale anyway)
            oldest_issued = next(iter(self._nc.values()))[1]
            if now - oldest_issued <= self.nonce_lifetime:
                break
            self._nc.popitem(last=False)
        while len(self._nc) > self._max_tracked:
            _, (_, evicted_issued) = self._nc.popitem(last=False)
            self._forgotten_before = max(self._forgotten_before, evicted_issued)
        return ""


def _usable(challenge: Challenge) -> bool:
    if challenge.algorithm not in _ALGORITHMS:
        return False  # RFC 8760 §2.4: ignore challenges we do not understand
    if challenge.qop:
        return "auth" in challenge.qop
    return not _ALGORITHMS[challenge.algorithm][1]  # -sess needs a cnonce, hence qop


def _usable_challenges(values: Iterable[str]) -> list[Challenge]:
    if isinstance(values, str):
        values = [values]
    found: list[Challenge] = []
    error: RemoteProtocolError | None = None
    for value in values:
        try:
            found.extend(_parse_challenges(value))
        except RemoteProtocolError as exc:
            log.debug("skipping malformed challenge %r: %s", value, exc.reason)
            error = error or exc
    usable = [c for c in found if _usable(c)]
    if not usable:
        detail = f" ({error.reason})" if error is not None else ""
        raise RemoteProtocolError(f"no usable Digest challenge{detail}")
    return usable


def _strongest(challenges: Sequence[Challenge]) -> Challenge:
    """SHA-256 over MD5; otherwise the topmost (RFC 8760 §2.4)."""
    ranked = sorted(enumerate(challenges),
                    key=lambda ic: (_STRENGTH[_ALGORITHMS[ic[1].algorithm][0]], ic[0]))
    return ranked[0][1]


def choose_challenge(values: Iterable[str], *, realm: str | None = None) -> Challenge:
    """The challenge to answer among WWW-/Proxy-Authenticate values.

    Malformed values and unknown algorithms are skipped; RemoteProtocolError if
    nothing usable is left (for ``realm``, when given).
    """
    usable = _usable_challenges(values)
    if realm is not None:
        usable = [c for c in usable if c.realm == realm]
        if not usable:
            raise RemoteProtocolError(f"no usable Digest challenge for realm {realm!r}")
    return _strongest(usable)


def build_authorization(
    challenge: str | Challenge, *, method: str, uri: str, username: str, password: str,
    cnonce: str | None = None, nc: int = 1, body: bytes = b"",
) -> str:
    """An Authorization/Proxy-Authorization value answering ``challenge``.

    ``challenge`` is a header value (the strongest usable challenge in it is used)
    or a parsed :class:`Challenge`. ``uri`` is the Request-URI (RFC 3261 §22.4).
    ``body`` is unused: only qop=auth is implemented, not auth-int.
    """
    del body
    ch = challenge if isinstance(challenge, Challenge) else choose_challenge([challenge])
    if not _usable(ch):
        raise RemoteProtocolError(
            f"cannot answer algorithm={ch.algorithm!r} qop={','.join(ch.qop)!r}")
    qop = "auth" if ch.qop else None  # no qop: the RFC 2617 compatible form
    nc_text: str | None = None
    if qop is not None:
        if not 0 < nc <= 0xFFFFFFFF:
            raise LocalProtocolError(f"nonce-count {nc} out of range")
        nc_text = f"{nc:08x}"  # RFC 7616 §3.4: 8LHEX
        cnonce = cnonce if cnonce is not None else secrets.token_hex(16)
    else:
        cnonce = None
    ha1 = compute_ha1(username, ch.realm, password, ch.algorithm)
    response = compute_response(algorithm=ch.algorithm, ha1=ha1, nonce=ch.nonce, method=method,
                                uri=uri, qop=qop, nc=nc_text, cnonce=cnonce)
    return Credentials(
        username=username, realm=ch.realm, nonce=ch.nonce, uri=uri, response=response,
        algorithm=ch.algorithm, qop=qop, nc=nc_text, cnonce=cnonce, opaque=ch.opaque,
    ).to_header()


@dataclass(slots=True)
class _Answered:
    challenge: Challenge
    cnonce: str
    nc: int = 0


class DigestClient:
    """Remembers the last challenge per realm and answers it again with nc + 1,
    e.g. for REGISTER refreshes (RFC 7616 §3.4, RFC 3261 §22.2)."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self._password = password
        self._realms: dict[str, _Answered] = {}

    def handle_challenge(self, values: Iterable[str]) -> bool:
        """Take the challenges of a 401/407 (per realm, strongest first).

        Returns False if credentials we already sent for a realm were refused
        without stale=true (the password is wrong: do not retry), else True.
        Raises RemoteProtocolError if no challenge is usable.
        """
        usable = _usable_challenges(values)
        retry = True
        for realm in dict.fromkeys(c.realm for c in usable):
            chosen = _strongest([c for c in usable if c.realm == realm])
            previous = self._realms.get(realm)
            if previous is not None and previous.nc > 0 and not chosen.stale:
                log.info("digest credentials of %r refused in realm %r", self.username, realm)
                retry = False
            self._realms[realm] = _Answered(chosen, secrets.token_hex(16))
        return retry

    def authorizations(self, method: str, uri: str) -> list[str]:
        """One Authorization value per remembered realm (empty before any challenge)."""
        out = []
        for answered in self._realms.values():
            answered.nc += 1
            out.append(build_authorization(
                answered.challenge, method=method, uri=uri, username=self.username,
                password=self._password, cnonce=answered.cnonce, nc=answered.nc))
        return out

    def forget(self, realm: str | None = None) -> None:
        """Drop the remembered challenge of ``realm`` (all realms if None)."""
        if realm is None:
            self._realms.clear()
        else:
            self._realms.pop(realm, None)
