"""Tests for acd.sip.auth: SIP Digest authentication (RFC 7616, RFC 3261 §22, RFC 8760)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.sip.auth import (
    AuthStatus,
    Challenge,
    Credentials,
    DigestClient,
    DigestServer,
    build_authorization,
    choose_challenge,
    compute_ha1,
    compute_response,
)
from acd.sip.errors import LocalProtocolError, RemoteProtocolError

SECRET = b"0123456789abcdef-test-secret"
REALM = "pbx.example.org"
URI = "sip:pbx.example.org"
USERS = {"alice": "s3cret!", "trunk-1": 'p"a\\ss'}
T0 = 1_700_000_000.0

# RFC 7616 §3.9.1
RFC_REALM = "http-auth@example.org"
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC_RESPONSES = {
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}


def rfc_challenge(algorithm: str) -> str:
    return (f'Digest realm="{RFC_REALM}", qop="auth, auth-int", algorithm={algorithm}, '
            f'nonce="{RFC_NONCE}", opaque="{RFC_OPAQUE}"')


def lookup(username: str, realm: str) -> str | None:
    return USERS.get(username)


def ha1_lookup(username: str, realm: str) -> dict[str, str] | None:
    if username not in USERS:
        return None
    return {h: compute_ha1(username, realm, USERS[username], h) for h in ("MD5", "SHA-256")}


def counter_rng() -> Callable[[int], bytes]:
    counter = itertools.count()
    return lambda n: next(counter).to_bytes(n, "big")


def make_server(**kw: object) -> DigestServer:
    kw.setdefault("rng", counter_rng())
    return DigestServer(REALM, SECRET, **kw)  # type: ignore[arg-type]


def answer(server: DigestServer, *, user: str = "alice", password: str | None = None,
           now: float = T0, method: str = "REGISTER", **kw: object) -> str:
    challenge = server.challenge(now)[0]
    return build_authorization(challenge, method=method, uri=URI, username=user,
                               password=USERS[user] if password is None else password,
                               **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- RFC vectors


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_example_vectors(algorithm: str) -> None:
    ha1 = compute_ha1("Mufasa", RFC_REALM, "Circle of Life", algorithm)
    response = compute_response(algorithm=algorithm, ha1=ha1, nonce=RFC_NONCE, method="GET",
                                uri="/dir/index.html", qop="auth", nc="00000001",
                                cnonce=RFC_CNONCE)
    assert response == RFC_RESPONSES[algorithm]
    header = build_authorization(rfc_challenge(algorithm), method="GET", uri="/dir/index.html",
                                 username="Mufasa", password="Circle of Life", cnonce=RFC_CNONCE)
    creds = Credentials.parse(header)
    assert creds.response == RFC_RESPONSES[algorithm]
    assert (creds.qop, creds.nc, creds.cnonce, creds.opaque, creds.algorithm) == (
        "auth", "00000001", RFC_CNONCE, RFC_OPAQUE, algorithm)


def test_rfc7616_authorization_header_parses_folded() -> None:
    value = (f'Digest username="Mufasa",\r\n       realm="{RFC_REALM}",\r\n'
             f'       uri="/dir/index.html",\r\n       algorithm=MD5,\r\n'
             f'       nonce="{RFC_NONCE}",\r\n       nc=00000001,\r\n'
             f'       cnonce="{RFC_CNONCE}",\r\n       qop=auth,\r\n'
             f'       response="{RFC_RESPONSES["MD5"]}",\r\n       opaque="{RFC_OPAQUE}"')
    creds = Credentials.parse(value)
    assert creds.username == "Mufasa" and creds.uri == "/dir/index.html"
    ha1 = compute_ha1("Mufasa", RFC_REALM, "Circle of Life")
    assert compute_response(algorithm=creds.algorithm, ha1=ha1, nonce=creds.nonce, method="GET",
                            uri=creds.uri, qop=creds.qop, nc=creds.nc,
                            cnonce=creds.cnonce) == creds.response


@pytest.mark.parametrize("order", [("SHA-256", "MD5"), ("MD5", "SHA-256")])
def test_choose_challenge_prefers_sha256(order: tuple[str, str]) -> None:
    chosen = choose_challenge([rfc_challenge(a) for a in order])
    assert chosen.algorithm == "SHA-256"
    assert chosen.qop == ("auth", "auth-int") and chosen.opaque == RFC_OPAQUE


def test_choose_challenge_skips_unknown_and_unusable() -> None:
    values = [rfc_challenge("SHA-512-256"), "Basic realm=\"x\"", "Digest garbage \x01",
              rfc_challenge("MD5")]
    assert choose_challenge(values).algorithm == "MD5"
    # one header value may carry several challenges (RFC 7235 §4.1)
    assert choose_challenge(rfc_challenge("MD5") + ", " + rfc_challenge("SHA-256")).algorithm \
        == "SHA-256"
    for hopeless in (
        [rfc_challenge("SHA-512-256")],
        ['Digest realm="r", nonce="n", qop="auth-int"'],
        ['Digest realm="r", nonce="n", algorithm=MD5-sess'],  # -sess needs qop
        ["Digest realm=", 'Basic realm="r"'],
        [],
    ):
        with pytest.raises(RemoteProtocolError):
            choose_challenge(hopeless)
    with pytest.raises(RemoteProtocolError):
        choose_challenge([rfc_challenge("MD5")], realm="other")


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("algorithm", ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess"])
@pytest.mark.parametrize("store", [lookup, ha1_lookup])
@pytest.mark.parametrize("user", sorted(USERS))
def test_round_trip(algorithm: str, store: Callable[..., object], user: str) -> None:
    server = make_server(algorithms=[algorithm])
    header = answer(server, user=user, method="INVITE")
    assert f"algorithm={algorithm}" in header
    result = server.verify("INVITE", header, T0 + 1, store,  # type: ignore[arg-type]
                           request_uri=URI)
    assert result.ok and not result.rechallenge
    assert (result.username, result.algorithm) == (user, algorithm)


def test_server_offers_preferred_algorithm_first() -> None:
    server = make_server()
    values = server.challenge(T0)
    parsed = [Challenge.parse(v) for v in values]
    assert [c.algorithm for c in parsed] == ["SHA-256", "MD5"]
    assert {c.nonce for c in parsed} == {parsed[0].nonce}
    assert all(c.qop == ("auth",) and c.realm == REALM and not c.stale for c in parsed)
    header = build_authorization(choose_challenge(values), method="REGISTER", uri=URI,
                                 username="alice", password=USERS["alice"])
    assert server.verify("REGISTER", header, T0, lookup).algorithm == "SHA-256"
    assert server.challenge(T0)[0] != values[0]  # every challenge has a fresh nonce


def test_wrong_method_or_password_is_bad() -> None:
    server = make_server()
    header = answer(server, password="guess")
    assert server.verify("REGISTER", header, T0, lookup).status is AuthStatus.BAD_CREDENTIALS
    header = answer(server)
    result = server.verify("INVITE", header, T0, lookup)
    assert result.status is AuthStatus.BAD_CREDENTIALS and result.rechallenge


def test_stale_nonce_after_expiry() -> None:
    server = make_server(nonce_lifetime=30)
    header = answer(server)
    assert server.verify("REGISTER", header, T0 + 30, lookup).ok
    result = server.verify("REGISTER", answer(server, nc=2), T0 + 31, lookup)
    assert result.status is AuthStatus.STALE and result.stale and result.rechallenge
    # a wrong password with an expired nonce is not "stale" (RFC 7616 §3.3)
    wrong = answer(server, password="guess", nc=3)
    assert server.verify("REGISTER", wrong, T0 + 31, lookup).status is AuthStatus.BAD_CREDENTIALS
    fresh = server.challenge(T0 + 31, stale=True)
    assert all(Challenge.parse(v).stale for v in fresh) and "stale=true" in fresh[0]


def test_tampered_nonce_is_bad() -> None:
    server = make_server()
    challenge = Challenge.parse(server.challenge(T0)[0])
    creds = Credentials.parse(build_authorization(challenge, method="REGISTER", uri=URI,
                                                  username="alice", password=USERS["alice"]))
    flipped = creds.nonce[:5] + ("A" if creds.nonce[5] != "A" else "B") + creds.nonce[6:]
    tampered = creds.to_header().replace(creds.nonce, flipped)
    assert server.verify("REGISTER", tampered, T0, lookup).status is AuthStatus.BAD_CREDENTIALS
    # even with a digest that is right for the forged nonce
    for forged in (flipped, creds.nonce + "A", "AAAA", creds.nonce[:-1] + "!"):
        header = build_authorization(
            Challenge(REALM, forged, "SHA-256", ("auth",)), method="REGISTER", uri=URI,
            username="alice", password=USERS["alice"])
        result = server.verify("REGISTER", header, T0, lookup)
        assert result.status is AuthStatus.BAD_CREDENTIALS and "nonce" in result.reason
    # a nonce minted for another realm or with another secret is foreign too
    other = DigestServer("other.example.org", SECRET, rng=counter_rng())
    for foreign in (other.challenge(T0)[0],
                    DigestServer(REALM, b"another-secret-16b").challenge(T0)[0]):
        header = build_authorization(
            Challenge(REALM, Challenge.parse(foreign).nonce, "SHA-256", ("auth",)),
            method="REGISTER", uri=URI, username="alice", password=USERS["alice"])
        assert server.verify("REGISTER", header, T0, lookup).status is AuthStatus.BAD_CREDENTIALS


def test_nonce_count_replay_is_refused() -> None:
    server = make_server()
    challenge = server.challenge(T0)[0]

    def header(nc: int) -> str:
        return build_authorization(challenge, method="REGISTER", uri=URI, username="alice",
                                   password=USERS["alice"], cnonce="c", nc=nc)

    assert server.verify("REGISTER", header(1), T0, lookup).ok
    replay = server.verify("REGISTER", header(1), T0, lookup)
    assert replay.status is AuthStatus.STALE and "replay" in replay.reason
    assert server.verify("REGISTER", header(3), T0, lookup).ok
    assert server.verify("REGISTER", header(2), T0, lookup).status is AuthStatus.STALE
    assert server.verify("REGISTER", header(4), T0, lookup).ok


def test_bad_attempt_does_not_burn_nonce_count() -> None:
    server = make_server()
    challenge = server.challenge(T0)[0]
    attack = build_authorization(challenge, method="REGISTER", uri=URI, username="alice",
                                 password="guess", nc=0xFFFFFFFF)
    assert server.verify("REGISTER", attack, T0, lookup).status is AuthStatus.BAD_CREDENTIALS
    legit = build_authorization(challenge, method="REGISTER", uri=URI, username="alice",
                                password=USERS["alice"], nc=1)
    assert server.verify("REGISTER", legit, T0, lookup).ok


def test_nonce_tracking_is_bounded() -> None:
    server = make_server(max_tracked_nonces=2)
    challenges = [server.challenge(T0 + i)[0] for i in range(3)]

    def header(i: int, nc: int) -> str:
        return build_authorization(challenges[i], method="REGISTER", uri=URI, username="alice",
                                   password=USERS["alice"], nc=nc)

    for i in range(3):
        assert server.verify("REGISTER", header(i, 1), T0 + 3, lookup).ok
    assert len(server._nc) == 2
    # the evicted nonce cannot be replayed: it is stale now, the others still work
    forgotten = server.verify("REGISTER", header(0, 2), T0 + 3, lookup)
    assert forgotten.status is AuthStatus.STALE and "tracked" in forgotten.reason
    assert server.verify("REGISTER", header(2, 2), T0 + 3, lookup).ok
    # expired entries are dropped as well
    late = server.challenge(T0 + 1000)[0]
    assert server.verify("REGISTER", build_authorization(
        late, method="REGISTER", uri=URI, username="alice", password=USERS["alice"]),
        T0 + 1000, lookup).ok
    assert list(server._nc) == [Challenge.parse(late).nonce]


def test_wrong_realm_and_unknown_user() -> None:
    server = make_server()
    other = DigestServer("elsewhere", SECRET)
    header = build_authorization(other.challenge(T0)[0], method="REGISTER", uri=URI,
                                 username="alice", password=USERS["alice"])
    assert server.verify("REGISTER", header, T0, lookup).status is AuthStatus.WRONG_REALM
    # several credentials (RFC 3261 §22.3): the one for our realm is used
    assert server.verify("REGISTER", [header, answer(server)], T0, lookup).ok
    assert server.verify("REGISTER", [answer(server), answer(server)], T0,
                         lookup).status is AuthStatus.MALFORMED
    assert server.verify("REGISTER", [], T0, lookup).status is AuthStatus.WRONG_REALM
    mallory = build_authorization(server.challenge(T0)[0], method="REGISTER", uri=URI,
                                  username="mallory", password="x")
    for store in (lookup, ha1_lookup):
        result = server.verify("REGISTER", mallory, T0, store)  # type: ignore[arg-type]
        assert result.status is AuthStatus.UNKNOWN_USER and result.username == "mallory"


def test_unoffered_options_are_unsupported() -> None:
    server = make_server(algorithms=["SHA-256"])
    nonce = Challenge.parse(server.challenge(T0)[0]).nonce
    md5 = build_authorization(Challenge(REALM, nonce, "MD5", ("auth",)), method="REGISTER",
                              uri=URI, username="alice", password=USERS["alice"])
    result = server.verify("REGISTER", md5, T0, lookup)
    assert result.status is AuthStatus.UNSUPPORTED and "MD5" in result.reason
    good = answer(server)
    for edited, word in ((good.replace("qop=auth", "qop=auth-int"), "qop"),
                         (good + ", userhash=true", "userhash")):
        result = server.verify("REGISTER", edited, T0, lookup)
        assert result.status is AuthStatus.UNSUPPORTED and word in result.reason
    basic = server.verify("REGISTER", "Basic YWxpY2U6c2VjcmV0", T0, lookup)
    assert basic.status is AuthStatus.MALFORMED and not basic.rechallenge


def test_ha1_store_without_the_algorithm_hash() -> None:
    server = make_server(algorithms=["SHA-256"])
    only_md5 = {"MD5": compute_ha1("alice", REALM, USERS["alice"])}
    result = server.verify("REGISTER", answer(server), T0, lambda u, r: only_md5)
    assert result.status is AuthStatus.BAD_CREDENTIALS


def test_rfc2069_form_only_when_allowed() -> None:
    for allow, expected in ((False, AuthStatus.UNSUPPORTED), (True, AuthStatus.OK)):
        server = make_server(allow_rfc2069=allow)
        nonce = Challenge.parse(server.challenge(T0)[0]).nonce
        header = build_authorization(Challenge(REALM, nonce, "MD5"), method="REGISTER",
                                     uri=URI, username="alice", password=USERS["alice"])
        assert "qop" not in header and "nc=" not in header and "cnonce" not in header
        assert server.verify("REGISTER", header, T0, lookup).status is expected
    sess = Credentials.parse(header.replace("algorithm=MD5", "algorithm=MD5-sess"))
    server = make_server(allow_rfc2069=True, algorithms=["MD5-sess"])
    assert server.verify("REGISTER", sess.to_header(), T0, lookup).status is AuthStatus.MALFORMED


def test_request_uri_and_opaque_checks() -> None:
    server = make_server(opaque="op\"aque")
    header = answer(server)
    assert Credentials.parse(header).opaque == 'op"aque'
    assert server.verify("REGISTER", header, T0, lookup, request_uri=URI).ok
    result = server.verify("REGISTER", answer(server), T0, lookup, request_uri="sip:other")
    assert result.status is AuthStatus.MALFORMED
    stripped = Credentials.parse(answer(server))
    no_opaque = Credentials(**{f: getattr(stripped, f) for f in stripped.__slots__
                               if f != "opaque"})  # type: ignore[arg-type]
    assert server.verify("REGISTER", no_opaque.to_header(), T0,
                         lookup).status is AuthStatus.BAD_CREDENTIALS


def test_server_configuration_errors() -> None:
    for kw in ({"algorithms": ["SHA-512-256"]}, {"algorithms": []},
               {"algorithms": ["MD5", "md5"]}, {"qop": "auth-int"}, {"nonce_lifetime": 0},
               {"max_tracked_nonces": 0}):
        with pytest.raises(LocalProtocolError):
            DigestServer(REALM, SECRET, **kw)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        DigestServer(REALM, b"short")
    with pytest.raises(LocalProtocolError):
        DigestServer("bad\r\nrealm", SECRET)
    with pytest.raises(LocalProtocolError):
        make_server().challenge(float("nan"))
    with pytest.raises(LocalProtocolError):
        build_authorization(rfc_challenge("MD5"), method="GET", uri="/", username="u",
                            password="p", nc=0)


# --------------------------------------------------------------------------- client


def test_digest_client_register_refresh_and_stale() -> None:
    server = make_server(nonce_lifetime=60)
    client = DigestClient("alice", USERS["alice"])
    assert client.authorizations("REGISTER", URI) == []
    assert client.handle_challenge(server.challenge(T0))
    first = client.authorizations("REGISTER", URI)
    assert len(first) == 1 and Credentials.parse(first[0]).algorithm == "SHA-256"
    assert server.verify("REGISTER", first, T0, lookup).ok
    refresh = client.authorizations("REGISTER", URI)  # same nonce, nc=2
    assert Credentials.parse(refresh[0]).nc == "00000002"
    assert server.verify("REGISTER", refresh, T0 + 30, lookup).ok
    late = client.authorizations("REGISTER", URI)
    assert server.verify("REGISTER", late, T0 + 90, lookup).stale
    assert client.handle_challenge(server.challenge(T0 + 90, stale=True))
    assert server.verify("REGISTER", client.authorizations("REGISTER", URI), T0 + 90, lookup).ok


def test_digest_client_gives_up_on_refused_password() -> None:
    server = make_server()
    client = DigestClient("alice", "wrong")
    assert client.handle_challenge(server.challenge(T0))
    result = server.verify("REGISTER", client.authorizations("REGISTER", URI), T0, lookup)
    assert result.status is AuthStatus.BAD_CREDENTIALS
    assert not client.handle_challenge(server.challenge(T0))
    client.forget(REALM)
    assert client.handle_challenge(server.challenge(T0))
    # proxies and the UAS may each challenge: one answer per realm
    other = DigestServer("proxy.example.org", SECRET)
    assert client.handle_challenge(server.challenge(T0) + other.challenge(T0))
    assert {Credentials.parse(v).realm for v in client.authorizations("INVITE", URI)} == {
        REALM, "proxy.example.org"}
    client.forget()
    assert client.authorizations("INVITE", URI) == []


# --------------------------------------------------------------------------- syntax


def test_parser_tolerance() -> None:
    value = ('  dIgEsT   REALM = "a, \\"quoted\\" \\\\ realm" ,, NONCE=abc123 ,'
             '\tAlgorithm="sha-256",qop="auth,auth-int", Stale=TRUE, foo=bar, '
             'domain="sip:a sip:b"  ')
    challenge = Challenge.parse(value)
    assert challenge == Challenge(realm='a, "quoted" \\ realm', nonce="abc123",
                                  algorithm="SHA-256", qop=("auth", "auth-int"), stale=True,
                                  domain="sip:a sip:b")
    assert Challenge.parse(challenge.to_header()) == challenge
    both = Challenge.parse('Basic realm="x", Digest realm="y", nonce="n", Negotiate abc==')
    assert (both.realm, both.algorithm, both.qop) == ("y", "MD5", ())
    creds = Credentials.parse('Digest username="bob", realm="r", nonce="n", uri="sip:x", '
                              'response="ABCDEF01", qop="AUTH", nc=0000000A, cnonce=c')
    assert (creds.qop, creds.nc, creds.cnonce) == ("auth", "0000000A", "c")
    assert Credentials.parse(creds.to_header()) == creds


@pytest.mark.parametrize("value", [
    "",
    "Digest",
    "Digest realm",
    'Digest realm="unterminated, nonce="n"',
    'Digest realm="r" nonce="n"',
    'Digest realm="r", realm="s", nonce="n"',
    'Digest nonce="n"',
    "Digest abc==",
    'Digest realm="r", nonce="n", uri="u", response="xyz", username="u"',
    'Digest realm="r", nonce="n", uri="u", response="ab", username="u", qop=auth',
    'Digest realm="r", nonce="n", uri="u", response="ab", username="u", qop=auth, nc=1, cnonce=c',
    'Digest realm="r", nonce="n", uri="u", response="ab", username="u", qop=auth, '
    'nc=00000000, cnonce=c',
    'Digest realm="r\x00", nonce="n", uri="u", response="ab", username="u"',
    'Digest realm="r", nonce="n", uri="u", response="ab", username="u", Digest realm="s"',
    "Digest\trealm=r,\x7f",
    "=",
    '"Digest"',
    "Digest realm=r,, , ;",
])
def test_malformed_credentials(value: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        Credentials.parse(value)
    assert info.value.status == 400
    result = make_server().verify("REGISTER", value, T0, lookup)
    assert result.status is AuthStatus.MALFORMED and result.reason


_FRAGMENTS = st.sampled_from([
    "Digest", "digest", "Basic", " ", "\t", ",", "=", '"', "\\", "realm", "nonce", "username",
    "uri", "response", "qop", "nc", "cnonce", "algorithm", "auth", "MD5", "SHA-256-sess",
    "00000001", "abc", "==", "\r\n ", "é", "\x00",
])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(_FRAGMENTS, max_size=30).map("".join)))
def test_fuzz_never_raises_other_errors(value: str) -> None:
    for parse in (Challenge.parse, Credentials.parse):
        try:
            parse(value)
        except RemoteProtocolError as exc:
            assert exc.status == 400
    result = make_server().verify("REGISTER", value, T0, lookup)
    assert result.status is not AuthStatus.OK
    try:
        choose_challenge([value])
    except RemoteProtocolError:
        pass


@settings(max_examples=100, deadline=None)
@given(username=st.text(min_size=1, max_size=20).filter(lambda s: s.isprintable()),
       password=st.text(max_size=20),
       algorithm=st.sampled_from(["MD5", "MD5-sess", "SHA-256", "SHA-256-sess"]))
def test_fuzz_round_trip_any_username(username: str, password: str, algorithm: str) -> None:
    server = make_server(algorithms=[algorithm])
    header = build_authorization(server.challenge(T0)[0], method="OPTIONS", uri=URI,
                                 username=username, password=password)
    assert Credentials.parse(header).username == username
    result = server.verify("OPTIONS", header, T0, lambda u, r: password if u == username else None)
    assert result.ok and result.username == username


_SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=50)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_fuzz_well_formed_credentials_never_crash_verify(data: st.DataObject) -> None:
    server = make_server(allow_rfc2069=data.draw(st.booleans()))
    nonce = Challenge.parse(server.challenge(T0)[0]).nonce
    qop = data.draw(st.sampled_from([None, "auth", "auth-int", "x"]))
    creds = Credentials(
        username=data.draw(st.sampled_from(["alice", "nobody"]) | _SAFE_TEXT),
        realm=data.draw(st.sampled_from([REALM]) | _SAFE_TEXT),
        nonce=data.draw(st.sampled_from([nonce, nonce[:-1] + "B"]) | _SAFE_TEXT),
        uri=data.draw(_SAFE_TEXT),
        response=data.draw(st.text("0123456789abcdefABCDEF", min_size=1, max_size=70)),
        algorithm=data.draw(st.sampled_from(["MD5", "md5-SESS", "SHA-256", "SHA-512-256"])),
        qop=qop,
        nc=data.draw(st.text("0123456789abcdef", min_size=8, max_size=8).filter(
            lambda s: int(s, 16) > 0)) if qop else None,
        cnonce=data.draw(_SAFE_TEXT) if qop else data.draw(st.none() | _SAFE_TEXT),
        opaque=data.draw(st.none() | _SAFE_TEXT),
        userhash=data.draw(st.booleans()),
    )
    header = creds.to_header()
    assert Credentials.parse(header).username == creds.username
    for store in (lookup, ha1_lookup):
        result = server.verify("REGISTER", header, T0, store)  # type: ignore[arg-type]
        assert result.status is not AuthStatus.OK
