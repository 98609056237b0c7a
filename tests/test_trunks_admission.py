"""Trunk admission on injected clocks: source matching, digest challenges, lockout."""

from __future__ import annotations

from acd.config import validate_config
from acd.sip.auth import build_authorization
from acd.sip.events import Peer
from acd.sip.message import Request
from acd.trunks import TrunkAdmission

CONFIG = {
    "sip": {"auth_failures": 3, "auth_block_seconds": 60},
    "trunks": {
        "pbx": {"allow": ["10.1.0.0/16"]},
        "carrier": {"allow": ["192.0.2.0/24"], "username": "car", "password": "s3cret"},
    },
}


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def make(**sip: object) -> tuple[TrunkAdmission, Clock]:
    data = {**CONFIG, "sip": {**CONFIG["sip"], **sip}}
    clock = Clock()
    return TrunkAdmission(validate_config(data, "/tmp/t.toml"), b"k" * 32, wall_clock=clock), clock


def invite(auth: str | None = None) -> Request:
    req = Request(method="INVITE", uri="sip:echo@198.51.100.1")
    if auth:
        req.headers.add("Authorization", auth)
    return req


def answer(challenge_headers: tuple, password: str = "s3cret") -> str:
    value = dict(challenge_headers)["WWW-Authenticate"]  # the first (strongest) challenge
    return build_authorization(value, method="INVITE", uri="sip:echo@198.51.100.1", username="car",
                               password=password)


CARRIER = Peer("udp", "192.0.2.7", 5060)


def test_source_network_picks_the_open_trunk() -> None:
    adm, _ = make()
    assert adm(invite(), Peer("udp", "10.1.2.3", 5060), 0.0) == "pbx"


def test_unknown_source_is_refused_or_dropped() -> None:
    adm, _ = make()
    assert adm(invite(), Peer("udp", "203.0.113.9", 5060), 0.0)[0] == 403
    quiet = TrunkAdmission(validate_config({**CONFIG, "sip": {"unknown_source": "drop"}}, "/t.toml"), b"k" * 32)
    assert quiet(invite(), Peer("udp", "203.0.113.9", 5060), 0.0) == (0, None, ())


def test_challenge_then_credentials_select_the_digest_trunk() -> None:
    adm, _ = make()
    status, _, headers = adm(invite(), CARRIER, 0.0)
    assert status == 401
    algos = [v for n, v in headers if n == "WWW-Authenticate"]
    assert "SHA-256" in algos[0] and "MD5" in algos[1]  # strongest first (RFC 8760 §2.4)
    assert adm(invite(answer(headers)), CARRIER, 0.1) == "carrier"


def test_expired_nonce_is_rechallenged_as_stale() -> None:
    adm, clock = make()
    _, _, headers = adm(invite(), CARRIER, 0.0)
    clock.t += 3600
    status, _, again = adm(invite(answer(headers)), CARRIER, 1.0)
    assert status == 401 and "stale=true" in dict(again)["WWW-Authenticate"].replace(" ", "").lower()
    assert adm.stats["auth_failed"] == 0


def test_repeated_failures_block_the_source_then_expire() -> None:
    adm, _ = make()
    _, _, headers = adm(invite(), CARRIER, 0.0)
    for i in range(3):
        assert adm(invite(answer(headers, "wrong")), CARRIER, float(i))[0] == 401
    # blocked now, even with the right password
    assert adm(invite(answer(headers)), CARRIER, 5.0)[0] == 403
    assert adm.stats["blocked"] == 1
    # another source is not affected
    assert adm(invite(answer(headers)), Peer("udp", "192.0.2.8", 5060), 5.0) == "carrier"
    # after the block time the source may try again
    _, _, fresh = adm(invite(), CARRIER, 70.0)
    assert adm(invite(answer(fresh)), CARRIER, 70.1) == "carrier"


def test_failures_spread_over_more_than_the_window_do_not_block() -> None:
    adm, _ = make()
    _, _, headers = adm(invite(), CARRIER, 0.0)
    for t in (0.0, 40.0, 80.0, 120.0):
        assert adm(invite(answer(headers, "wrong")), CARRIER, t)[0] == 401
    assert adm.stats["blocked"] == 0


def test_lockout_can_be_turned_off() -> None:
    adm, _ = make(auth_failures=0)
    _, _, headers = adm(invite(), CARRIER, 0.0)
    for i in range(20):
        assert adm(invite(answer(headers, "wrong")), CARRIER, float(i))[0] == 401
