"""Password hashes: scrypt (standard library) by default, argon2 when argon2-cffi is there.

Formats:

- ``$scrypt$ln=14,r=8,p=1$<salt>$<hash>`` — the PHC-style string passlib also writes: ``ln``
  is log2(N), salt and hash are base64 without padding (passlib's ``.`` for ``+`` is
  accepted). This module writes N=2**14, r=8, p=1, a 16-byte salt and a 32-byte hash.
- ``scrypt:N:r:p$<salt>$<hex>`` — Werkzeug's format (the salt is used as text, 64-byte
  hash); verified, and reported by :func:`needs_rehash` so it is replaced at next login.
- ``$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>`` (and ``argon2i``/``argon2d``) — verified
  and written only when ``argon2-cffi`` is importable; otherwise verification fails with a
  log line saying why.

These are the formats the engine config accepts in ``[agents.NAME] password_hash``.
:func:`verify_password` never raises on a bad stored string: it logs and returns False.
Comparisons are constant-time (``hmac.compare_digest``). A scrypt hash must be 32 to 128
bytes long (a cut hash would otherwise verify: scrypt's output is a prefix of its longer
output). Work factors in a stored string are bounded (``MAX_LN``, ``MAX_MEMORY``) so a crafted hash cannot stall the server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass

from acd.store.base import StoreError

__all__ = ["hash_password", "verify_password", "needs_rehash", "argon2_available",
           "SCRYPT_LN", "SCRYPT_R", "SCRYPT_P"]

log = logging.getLogger(__name__)

SCRYPT_LN = 14  # N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MAX_LN = 20  # N = 2**20 with r=8 needs 1 GiB; refuse more
MAX_MEMORY = 1 << 30  # 128 * N * r * p bytes
MAX_PASSWORD_BYTES = 4096

_PHC = re.compile(r"\$scrypt\$ln=(\d{1,2}),r=(\d{1,3}),p=(\d{1,3})\$([A-Za-z0-9+/.]+)"
                  r"\$([A-Za-z0-9+/.]+)")
_WERKZEUG = re.compile(r"scrypt:(\d{1,8}):(\d{1,3}):(\d{1,3})\$([^$]+)\$([0-9a-f]+)")

try:  # optional: argon2-cffi
    import argon2 as _argon2  # type: ignore[import-not-found]
    from argon2 import exceptions as _argon2_exc  # type: ignore[import-not-found]
except ImportError:
    _argon2 = None
    _argon2_exc = None


def argon2_available() -> bool:
    return _argon2 is not None


@dataclass(frozen=True)
class _Scrypt:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes
    legacy: bool  # Werkzeug's format


def _b64decode(text: str) -> bytes:
    text = text.replace(".", "+")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _parse_scrypt(stored: str) -> _Scrypt | None:
    m = _PHC.fullmatch(stored)
    if m:
        ln, r, p = int(m[1]), int(m[2]), int(m[3])
        if not 1 <= ln <= MAX_LN:
            raise ValueError(f"ln={ln} out of range 1..{MAX_LN}")
        try:
            return _Scrypt(1 << ln, r, p, _b64decode(m[4]), _b64decode(m[5]), False)
        except binascii.Error as exc:
            raise ValueError(f"bad base64: {exc}") from None
    m = _WERKZEUG.fullmatch(stored)
    if m:
        n, r, p = int(m[1]), int(m[2]), int(m[3])
        if n < 2 or n & (n - 1) or n > 1 << MAX_LN:
            raise ValueError(f"N={n} is not a power of two up to 2**{MAX_LN}")
        return _Scrypt(n, r, p, m[4].encode("utf-8"), bytes.fromhex(m[5]), True)
    return None


def _scrypt(password: bytes, s: _Scrypt) -> bytes:
    memory = 128 * s.n * s.r * s.p
    if s.r < 1 or s.p < 1 or memory > MAX_MEMORY:
        raise ValueError(f"work factors too large (N={s.n}, r={s.r}, p={s.p})")
    if not HASH_BYTES <= len(s.digest) <= 128 or len(s.salt) < 1:  # a cut hash is refused
        raise ValueError(f"hash of {len(s.digest)} bytes or empty salt")
    return hashlib.scrypt(password, salt=s.salt, n=s.n, r=s.r, p=s.p,
                          maxmem=memory + (1 << 20), dklen=len(s.digest))


def _password_bytes(password: str) -> bytes:
    data = password.encode("utf-8")
    if len(data) > MAX_PASSWORD_BYTES:
        raise StoreError(f"password longer than {MAX_PASSWORD_BYTES} bytes")
    return data


def hash_password(password: str, *, scheme: str = "scrypt") -> str:
    """A new salted hash of ``password``; ``scheme`` is "scrypt" or "argon2id"."""
    if not password:
        raise StoreError("the password must not be empty")
    data = _password_bytes(password)
    if scheme == "argon2id":
        if _argon2 is None:
            raise StoreError("argon2id needs the argon2-cffi package; use scheme 'scrypt'")
        return str(_argon2.PasswordHasher().hash(data))
    if scheme != "scrypt":
        raise StoreError(f"unknown password scheme {scheme!r} (scrypt, argon2id)")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(data, salt=salt, n=1 << SCRYPT_LN, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=128 * (1 << SCRYPT_LN) * SCRYPT_R * SCRYPT_P + (1 << 20),
                            dklen=HASH_BYTES)
    return (f"$scrypt$ln={SCRYPT_LN},r={SCRYPT_R},p={SCRYPT_P}"
            f"${_b64encode(salt)}${_b64encode(digest)}")


def _kind(stored: str) -> str:
    if stored.startswith(("$scrypt$", "scrypt:")):
        return "scrypt"
    if stored.startswith(("$argon2id$", "$argon2i$", "$argon2d$")):
        return "argon2"
    return "unknown"


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches ``stored``; False (with a log line) for a stored string
    that is empty, malformed, of an unknown format or needs a missing library."""
    if not stored:
        return False
    try:
        data = _password_bytes(password)
    except StoreError:
        return False
    kind = _kind(stored)
    if kind == "argon2":
        if _argon2 is None:
            log.warning("argon2 password hash cannot be verified: argon2-cffi is not installed")
            return False
        try:
            return bool(_argon2.PasswordHasher().verify(stored, data))
        except _argon2_exc.VerifyMismatchError:
            return False
        except (_argon2_exc.VerificationError, _argon2_exc.InvalidHashError) as exc:
            log.warning("argon2 password hash rejected: %s", exc)
            return False
    try:
        parsed = _parse_scrypt(stored) if kind == "scrypt" else None
        if parsed is None:
            log.warning("password hash of unknown format (%s...) rejected", stored[:10])
            return False
        computed = _scrypt(data, parsed)
    except (ValueError, MemoryError) as exc:
        log.warning("malformed scrypt password hash rejected: %s", exc)
        return False
    return hmac.compare_digest(computed, parsed.digest)


def needs_rehash(stored: str) -> bool:
    """True if ``stored`` should be replaced by :func:`hash_password` at the next
    successful login: Werkzeug's format, other scrypt parameters than today's, a short
    salt or hash, argon2 parameters below argon2-cffi's defaults, or anything unparseable.
    An argon2 hash is kept as it is (also when argon2-cffi is missing)."""
    kind = _kind(stored)
    if kind == "argon2":
        if _argon2 is None:
            return False
        try:
            return bool(_argon2.PasswordHasher().check_needs_rehash(stored))
        except (_argon2_exc.InvalidHashError, ValueError):
            return True
    try:
        parsed = _parse_scrypt(stored) if kind == "scrypt" else None
    except ValueError:
        return True
    if parsed is None or parsed.legacy:
        return True
    return ((parsed.n, parsed.r, parsed.p) != (1 << SCRYPT_LN, SCRYPT_R, SCRYPT_P)
            or len(parsed.salt) < SALT_BYTES or len(parsed.digest) < HASH_BYTES)
