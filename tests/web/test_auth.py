"""Agent logins: scrypt hashes from the store, lockout, token expiry and roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from acd.store import open_store
from acd.store.passwords import hash_password
from acd.web.auth import Authenticator, token_key
from acd.web.errors import AuthError


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def setup(tmp_path: Path):
    store = open_store(tmp_path)
    store.create_agent("alice", display_name="Alice", password_hash=hash_password("right-pw"))
    store.create_agent("sam", roles=("agent", "supervisor"), password_hash=hash_password("sup-pw"))
    store.create_agent("nopw")
    clock = Clock()
    yield Authenticator(store, ttl_s=3600, lockout_after=3, lockout_s=300, clock=clock), store, clock
    store.close()


def refused(fn, *args) -> AuthError:
    with pytest.raises(AuthError) as info:
        fn(*args)
    return info.value


def test_login_and_token(setup) -> None:
    auth, _, clock = setup
    token, session = auth.login("alice", "right-pw")
    assert len(token) >= 40 and session.name == "Alice" and session.expires_at == clock.t + 3600
    assert auth.check(token).agent == "alice"
    assert session.key == token_key(token) and token not in repr(auth.sessions._by_key)  # only hashes kept


def test_wrong_password_unknown_agent_and_no_password(setup) -> None:
    auth, _, _ = setup
    for agent, pw in (("alice", "wrong"), ("ghost", "x"), ("nopw", ""), ("", "")):
        err = refused(auth.login, agent, pw)
        assert (err.code, err.status) == ("bad-credentials", 401)


def test_lockout_after_failures_and_expiry_of_the_lock(setup) -> None:
    auth, store, clock = setup
    refused(auth.login, "alice", "a")
    refused(auth.login, "alice", "b")
    err = refused(auth.login, "alice", "c")
    assert (err.code, err.status, err.retry_after_s) == ("locked", 423, 300)
    err = refused(auth.login, "alice", "right-pw")  # even the right password while locked
    assert err.code == "locked" and 0 < err.retry_after_s <= 300
    clock.t += 301
    token, _ = auth.login("alice", "right-pw")
    assert store.get_agent("alice").failed_logins == 0
    refused(auth.login, "alice", "a")  # the count restarted after the success
    assert auth.login("alice", "right-pw")


def test_expiry_logout_and_roles(setup) -> None:
    auth, _, clock = setup
    token, _ = auth.login("alice", "right-pw")
    assert refused(auth.check, token, "supervisor").code == "forbidden"
    sup, _ = auth.login("sam", "sup-pw")
    assert auth.check(sup, "supervisor").agent == "sam"
    assert refused(auth.check, sup, "admin").status == 403
    clock.t += 3601
    err = refused(auth.check, token)
    assert (err.code, err.status) == ("token-expired", 401)
    assert refused(auth.check, token).code == "not-authenticated"  # forgotten once expired
    assert refused(auth.check, None).code == "not-authenticated"
    fresh, _ = auth.login("alice", "right-pw")
    auth.logout(fresh)
    assert refused(auth.check, fresh).code == "not-authenticated"
