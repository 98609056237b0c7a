"""Password hashes: round trip, wrong password, tampering, foreign formats, rehash policy."""

from __future__ import annotations

import base64
import hashlib
import re
import time

import pytest

from acd.engine.config import engine_config_from_toml
from acd.store import StoreError, hash_password, needs_rehash, verify_password
from acd.store.passwords import argon2_available

PHC = re.compile(r"\$scrypt\$ln=14,r=8,p=1\$([A-Za-z0-9+/]{22})\$([A-Za-z0-9+/]{43})")

# RFC 7914 section 12, third vector: scrypt("password", "NaCl", N=1024, r=8, p=16, 64)
RFC7914 = bytes.fromhex(
    "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
    "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def test_round_trip_and_format() -> None:
    started = time.perf_counter()
    h = hash_password("correct horse battery staple")
    assert time.perf_counter() - started < 2.0
    m = PHC.fullmatch(h)
    assert m, h
    assert len(base64.b64decode(m[1] + "==")) == 16 and len(base64.b64decode(m[2] + "=")) == 32
    assert verify_password("correct horse battery staple", h)
    assert not verify_password("correct horse battery stapl", h)
    assert not verify_password("", h)
    assert hash_password("pw") != hash_password("pw")  # salted
    assert verify_password("pässwörd ✓", hash_password("pässwörd ✓"))


def test_independent_scrypt_vector() -> None:
    """Our reading of the PHC string agrees with RFC 7914's test vector."""
    stored = f"$scrypt$ln=10,r=8,p=16${b64(b'NaCl')}${b64(RFC7914)}"
    assert verify_password("password", stored)
    assert not verify_password("Password", stored)
    assert needs_rehash(stored)  # other parameters than today's


def test_tampered_hashes_fail() -> None:
    h = hash_password("secret")
    head, salt, digest = h.rsplit("$", 2)
    for pos in (0, 20, len(digest) - 2):  # every byte counts, the last ones too
        other = "A" if digest[pos] != "A" else "B"
        tampered = digest[:pos] + other + digest[pos + 1:]
        assert not verify_password("secret", f"{head}${salt}${tampered}"), pos
    salt_other = "A" if salt[0] != "A" else "B"
    assert not verify_password("secret", f"{head}${salt_other}{salt[1:]}${digest}")
    assert not verify_password("secret", h.replace("ln=14", "ln=13"))
    assert not verify_password("secret", h.replace("r=8", "r=9"))
    assert not verify_password("secret", h[:-4])  # a cut hash (a prefix would match)


@pytest.mark.parametrize("stored", [
    "", "secret", "$scrypt$", "$scrypt$ln=14,r=8,p=1$$", "$scrypt$ln=14,r=8,p=1$abc$!!!",
    "$scrypt$ln=40,r=8,p=1$c2FsdHNhbHQ$" + "A" * 43,  # work factor too large: refused fast
    "$scrypt$ln=14,r=999,p=999$c2FsdHNhbHQ$" + "A" * 43,
    "$pbkdf2-sha256$29000$abc$def", "scrypt:1000:8:1$salt$abcd", "scrypt:16384:8:1$salt$abc",
])
def test_malformed_or_unknown_is_false_not_an_error(stored: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    started = time.perf_counter()
    assert verify_password("secret", stored) is False
    assert time.perf_counter() - started < 1.0
    if stored:
        assert "rejected" in caplog.text
    assert needs_rehash(stored)


def test_werkzeug_format() -> None:
    salt = "Zq3Tbh8yMvBXOgfK"
    digest = hashlib.scrypt(b"hunter2", salt=salt.encode(), n=2**15, r=8, p=1,
                            maxmem=132 * 2**15 * 8, dklen=64).hex()
    stored = f"scrypt:32768:8:1${salt}${digest}"
    assert verify_password("hunter2", stored)
    assert not verify_password("hunter3", stored)
    assert needs_rehash(stored)  # moved to the PHC format at the next login


def test_passlib_adapted_base64() -> None:
    """passlib may write '.' for '+'; both spellings verify."""
    for _ in range(20):
        h = hash_password("pw")
        if "+" in h.split("$", 3)[3]:
            break
    else:
        pytest.fail("no '+' in 20 hashes")
    assert verify_password("pw", h.replace("+", "."))


def test_rehash_policy() -> None:
    assert not needs_rehash(hash_password("pw"))
    weak = "$scrypt$ln=10,r=8,p=1$" + b64(b"s" * 16) + "$" + b64(b"h" * 32)
    assert needs_rehash(weak)
    short_salt = "$scrypt$ln=14,r=8,p=1$" + b64(b"s" * 8) + "$" + b64(b"h" * 32)
    assert needs_rehash(short_salt)
    assert not needs_rehash("$scrypt$ln=14,r=8,p=1$" + b64(b"s" * 16) + "$" + b64(b"h" * 64))
    assert needs_rehash("garbage")


def test_argon2_depends_on_the_library(caplog: pytest.LogCaptureFixture) -> None:
    stored = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"
    if argon2_available():
        h = hash_password("pw", scheme="argon2id")
        assert h.startswith("$argon2id$") and verify_password("pw", h)
        assert not verify_password("px", h)
        assert not verify_password("pw", stored)
    else:
        assert verify_password("pw", stored) is False
        assert "argon2-cffi is not installed" in caplog.text
        assert needs_rehash(stored) is False  # kept until the library is installed
        with pytest.raises(StoreError, match="argon2-cffi"):
            hash_password("pw", scheme="argon2id")


def test_bad_inputs_to_hash() -> None:
    with pytest.raises(StoreError, match="empty"):
        hash_password("")
    with pytest.raises(StoreError, match="scheme"):
        hash_password("pw", scheme="md5")
    with pytest.raises(StoreError, match="longer"):
        hash_password("x" * 5000)
    assert not verify_password("x" * 5000, hash_password("pw"))


def test_engine_config_accepts_what_we_write() -> None:
    h = hash_password("agent-pw")
    cfg = engine_config_from_toml({"support": {}},
                                  {"alice": {"password_hash": h, "queues": {"support": 1}}},
                                  file="t.toml")
    assert verify_password("agent-pw", cfg.agents["alice"].password_hash)
