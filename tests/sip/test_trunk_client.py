"""Tests for acd.sip.trunk_client: REGISTER bindings (RFC 3261 §10.2) and OPTIONS keep-alives.

The unit tests run on virtual time against a real UserAgent: what it transmits is parsed
from bytes, and scripted responses are fed back. The interop tests (marked ``interop``)
run sipp as the registrar / proxy over real UDP on loopback.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from acd.sip.auth import AuthStatus, Credentials, DigestServer
from acd.sip.errors import LocalProtocolError
from acd.sip.events import Peer, ResponseReceived, TimerConfig
from acd.sip.message import Request, make_response, parse_message
from acd.sip.trunk_client import Keepalive, Registration
from acd.sip.ua import UserAgent

REGISTRAR = Peer("udp", "127.0.0.1", 5060)
AOR = "sip:homeline@example.com"
CONTACT = "<sip:homeline@203.0.113.5:5060>"
USER, PASSWORD = "homeline", "s3cret"
REALM = "example.com"
SECRET = b"trunk-client-test-secret-0123456789"
T0 = 1000.0
SIPP_DIR = Path(__file__).resolve().parent.parent / "sipp"


def counter_rng() -> Callable[[int], bytes]:
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


def lookup(username: str, realm: str) -> str | None:
    return PASSWORD if username == USER else None


class Net:
    """A UserAgent on virtual time with the objects whose timers we drive."""

    def __init__(self, timers: TimerConfig = TimerConfig()) -> None:
        self.ua = UserAgent(timers, sent_by=lambda t: ("127.0.0.1", 5070),
                            contact=lambda t: "sip:homeline@127.0.0.1:5070")
        self.now = T0
        self.clients: list[Registration | Keepalive] = []
        self.changes: list[tuple[float, str, str]] = []
        self.wire: list[tuple[float, Request]] = []  # every request sent, parsed from bytes

    def on_change(self, state: str, detail: str) -> None:
        self.changes.append((self.now, state, detail))

    def registration(self, **kw: object) -> Registration:
        kw.setdefault("username", USER)
        kw.setdefault("password", PASSWORD)
        reg = Registration(self.ua, REGISTRAR, AOR, CONTACT, on_change=self.on_change,
                           **kw)  # type: ignore[arg-type]
        self.clients.append(reg)
        return reg

    def keepalive(self, **kw: object) -> Keepalive:
        ka = Keepalive(self.ua, REGISTRAR, on_change=self.on_change, **kw)  # type: ignore[arg-type]
        self.clients.append(ka)
        return ka

    def drain(self) -> list[Request]:
        """What went out since the last call, as the peer parses it."""
        out = []
        for t in self.ua.transmissions():
            msg = parse_message(t.message.to_bytes())
            assert isinstance(msg, Request) and t.dest == REGISTRAR
            self.wire.append((self.now, msg))
            out.append(msg)
        return out

    def one(self) -> Request:
        sent = self.drain()
        assert len(sent) == 1, sent
        return sent[0]

    def deadline(self) -> float | None:
        times = [t for t in [self.ua.get_timer(), *(c.get_timer() for c in self.clients)]
                 if t is not None]
        return min(times, default=None)

    def advance(self, until: float) -> None:
        """Fire every deadline up to ``until`` in order, then set the clock to it."""
        while (d := self.deadline()) is not None and d <= until:
            self.now = max(self.now, d)
            self.ua.handle_timer(self.now)
            for c in self.clients:
                c.handle_timer(self.now)
            self.drain()
        self.now = until

    def reply(self, req: Request, status: int, headers: Iterable[tuple[str, str]] = (),
              reason: str | None = None) -> None:
        resp = make_response(req, status, reason, to_tag="reg1", headers=headers)
        self.ua.receive(parse_message(resp.to_bytes()), REGISTRAR, self.now)


def states(net: Net) -> list[str]:
    return [s for _, s, _ in net.changes]


def authorization(req: Request) -> Credentials:
    values = req.headers.get_all("Authorization")
    assert len(values) == 1, values
    return Credentials.parse(values[0])


# --------------------------------------------------------------------------- Registration


def test_register_challenge_ok_and_refresh() -> None:
    net = Net()
    server = DigestServer(REALM, SECRET, rng=counter_rng())
    reg = net.registration(expires=3600)
    reg.start(net.now)
    first = net.one()
    assert first.method == "REGISTER" and first.uri == "sip:example.com"  # §10.2 Request-URI
    h = first.headers
    assert first.to.uri == AOR and first.from_.uri == AOR and first.from_.tag
    assert first.to.tag is None
    assert first.cseq == (1, "REGISTER")
    assert h.get("Contact") == CONTACT and h.get("Expires") == "3600"
    assert h.get("Max-Forwards") == "70" and h.get("User-Agent") == "Homeline"
    assert first.top_via.branch and "Authorization" not in h
    assert reg.state == "registering"

    net.reply(first, 401, [("WWW-Authenticate", v) for v in server.challenge(net.now)])
    second = net.one()
    assert second.cseq == (2, "REGISTER") and second.call_id == first.call_id
    assert second.from_.tag == first.from_.tag
    assert second.top_via.branch != first.top_via.branch  # a new transaction
    creds = authorization(second)
    assert creds.algorithm == "SHA-256" and creds.uri == "sip:example.com"
    verdict = server.verify("REGISTER", second.headers.get_all("Authorization"), net.now, lookup,
                            request_uri=second.uri)
    assert verdict.ok, verdict

    net.advance(T0 + 0.2)
    net.reply(second, 200, [
        ("Contact", "<sip:desk@198.51.100.7:5062>;expires=3000"),
        ("Contact", "<sip:homeline@203.0.113.5;transport=udp>;expires=120"),  # ours, rewritten
        ("Expires", "3600"),
    ])
    assert reg.state == "registered" and reg.registered
    assert reg.granted == 120 and reg.expires_at == T0 + 120  # counted from sending
    assert reg.last_status == 200 and reg.last_error is None
    # refresh at max(120/2, 120 - 30) = 90 s after sending
    assert reg.get_timer() == T0 + 90
    assert net.changes[-1][1:] == ("registered", "registered (expires 120 s)")

    net.advance(T0 + 89.9)
    assert net.drain() == [] and [m for _, m in net.wire if m.cseq[0] == 3] == []
    net.advance(T0 + 90)
    refresh = [m for t, m in net.wire if m.cseq[0] == 3]
    assert len(refresh) == 1 and net.wire[-1][0] == T0 + 90
    refresh_req = refresh[0]
    assert refresh_req.call_id == first.call_id and refresh_req.from_.tag == first.from_.tag
    assert refresh_req.cseq == (3, "REGISTER") and reg.state == "refreshing"
    creds = authorization(refresh_req)
    assert creds.nc == "00000002"  # the remembered challenge, answered again (RFC 7616 §3.4)
    assert server.verify("REGISTER", refresh_req.headers.get_all("Authorization"), net.now, lookup,
                         request_uri=refresh_req.uri).ok

    net.reply(refresh_req, 200, [("Contact", f"{CONTACT};expires=120")])
    assert reg.state == "registered" and reg.expires_at == T0 + 90 + 120
    assert reg.get_timer() == T0 + 180
    assert states(net) == ["registering", "registered", "refreshing", "registered"]


def test_refresh_rechallenged_with_new_nonce_is_answered_once() -> None:
    net = Net()
    server = DigestServer(REALM, SECRET, nonce_lifetime=60, rng=counter_rng())
    reg = net.registration(expires=600)
    reg.start(net.now)
    req = net.one()
    net.reply(req, 401, [("WWW-Authenticate", server.challenge(net.now)[0])])
    net.reply(net.one(), 200, [("Expires", "600")])
    assert reg.state == "registered" and reg.get_timer() == T0 + 570
    net.advance(T0 + 570)
    refresh = net.wire[-1][1]
    # the nonce has expired: this server re-challenges without stale=true, a fresh nonce
    assert server.verify("REGISTER", refresh.headers.get_all("Authorization"), net.now,
                         lookup).status is AuthStatus.STALE
    net.reply(refresh, 401, [("WWW-Authenticate", server.challenge(net.now)[0])])
    again = net.one()
    assert again.cseq[0] == refresh.cseq[0] + 1
    assert server.verify("REGISTER", again.headers.get_all("Authorization"), net.now, lookup).ok
    net.reply(again, 200, [("Expires", "600")])
    assert reg.state == "registered"


def test_second_challenge_for_same_nonce_means_wrong_credentials() -> None:
    net = Net()
    reg = net.registration(password="wrong", retry_min=30)
    challenge = f'Digest realm="{REALM}", nonce="abc123", algorithm=MD5, qop="auth"'
    reg.start(net.now)
    net.reply(net.one(), 401, [("WWW-Authenticate", challenge)])
    answered = net.one()
    assert authorization(answered).nonce == "abc123"
    net.reply(answered, 401, [("WWW-Authenticate", challenge)])
    assert net.drain() == []
    assert reg.state == "failed" and reg.last_status == 401
    assert reg.last_error == "401 Unauthorized: wrong credentials"
    assert net.changes[-1][2] == "registration failed: 401 Unauthorized: wrong credentials, retry in 30 s"
    assert reg.get_timer() == net.now + 30
    # the retry starts clean: no credentials for a challenge that was refused
    net.advance(net.now + 30)
    retry = net.wire[-1][1]
    assert "Authorization" not in retry.headers and reg.state == "registering"


def test_stale_challenge_for_same_nonce_is_answered() -> None:
    net = Net()
    reg = net.registration()
    reg.start(net.now)
    net.reply(net.one(), 407, [("Proxy-Authenticate", f'Digest realm="{REALM}", nonce="n1"')])
    answered = net.one()
    assert "Authorization" not in answered.headers
    assert Credentials.parse(answered.headers.get("Proxy-Authorization") or "").nonce == "n1"
    net.reply(answered, 407,
              [("Proxy-Authenticate", f'Digest realm="{REALM}", nonce="n1", stale=true')])
    assert net.one().headers.get("Proxy-Authorization") is not None
    assert reg.state == "registering"


def test_challenge_without_credentials_fails() -> None:
    net = Net()
    reg = net.registration(username=None, password=None)
    reg.start(net.now)
    net.reply(net.one(), 401, [("WWW-Authenticate", f'Digest realm="{REALM}", nonce="n1"')])
    assert reg.state == "failed" and "no credentials" in (reg.last_error or "")


def test_interval_too_brief_retries_with_min_expires() -> None:
    net = Net()
    reg = net.registration(expires=60)
    reg.start(net.now)
    first = net.one()
    assert first.headers.get("Expires") == "60"
    net.reply(first, 423, [("Min-Expires", "1800")])
    second = net.one()  # §10.2.8: at once, with a higher CSeq
    assert second.headers.get("Expires") == "1800" and second.cseq[0] == 2
    assert reg.state == "registering" and reg.expires == 1800
    net.reply(second, 200, [("Expires", "1800")])  # no Contact: the Expires header counts
    assert reg.state == "registered" and reg.granted == 1800
    assert reg.get_timer() == T0 + 1770


def test_interval_too_brief_without_usable_min_expires_fails() -> None:
    net = Net()
    reg = net.registration(expires=60)
    reg.start(net.now)
    net.reply(net.one(), 423)
    assert reg.state == "failed" and reg.last_status == 423


def test_forbidden_backoff_doubles_and_is_capped() -> None:
    net = Net()
    reg = net.registration(retry_min=10, retry_max=40)
    reg.start(net.now)
    delays = []
    for _ in range(4):
        req = net.one()
        net.reply(req, 403)
        assert reg.state == "failed" and reg.last_error == "403 Forbidden"
        assert reg.expires_at is None
        delay = reg.get_timer() - net.now  # type: ignore[operator]
        delays.append(delay)
        net.advance(net.now + delay - 0.001)
        assert reg.state == "failed"
        net.now += 0.001
        reg.handle_timer(net.now)
        assert reg.state == "registering"
    assert delays == [10, 20, 40, 40]
    assert net.changes[1][2] == "registration failed: 403 Forbidden, retry in 10 s"
    net.reply(net.one(), 200, [("Expires", "300")])
    assert reg.state == "registered" and reg.failures == 0
    cseqs = [m.cseq[0] for _, m in net.wire]
    assert cseqs == sorted(set(cseqs))  # rising, one Call-ID throughout
    assert len({m.call_id for _, m in net.wire}) == 1


def test_timeout_fails_after_timer_f() -> None:
    net = Net()
    reg = net.registration(retry_min=20)
    reg.start(net.now)
    net.drain()
    net.advance(T0 + 31.9)
    assert reg.state == "registering"
    assert len(net.wire) > 5  # Timer E retransmissions (§17.1.2.2)
    net.advance(T0 + 32)  # Timer F = 64*T1
    assert reg.state == "failed" and reg.last_error == "timeout" and reg.last_status is None
    assert reg.get_timer() == T0 + 32 + 20
    assert net.changes[-1][2] == "registration failed: timeout, retry in 20 s"


def test_transport_error_fails() -> None:
    net = Net()
    reg = net.registration()
    reg.start(net.now)
    net.drain()
    net.ua.transport_error(REGISTRAR, net.now)
    assert reg.state == "failed" and reg.last_error == "transport error"


def test_service_unavailable_honours_retry_after() -> None:
    net = Net()
    reg = net.registration(retry_min=20)
    reg.start(net.now)
    net.reply(net.one(), 503, [("Retry-After", "120 (maintenance)")])
    assert reg.state == "failed" and reg.get_timer() == T0 + 120
    assert net.changes[-1][2] == "registration failed: 503 Service Unavailable, retry in 120 s"
    net.advance(T0 + 119)
    assert reg.state == "failed"
    net.advance(T0 + 120)
    assert reg.state == "registering"


def test_unregister_sends_expires_zero() -> None:
    net = Net()
    server = DigestServer(REALM, SECRET, rng=counter_rng())
    reg = net.registration()
    reg.start(net.now)
    net.reply(net.one(), 401, [("WWW-Authenticate", server.challenge(net.now)[0])])
    ok = net.one()
    net.reply(ok, 200, [("Contact", f"{CONTACT};expires=3600")])
    net.advance(T0 + 10)
    reg.unregister(net.now)
    bye = net.one()
    assert bye.headers.get("Expires") == "0" and bye.headers.get("Contact") == CONTACT
    assert bye.cseq[0] == ok.cseq[0] + 1 and bye.call_id == ok.call_id
    assert server.verify("REGISTER", bye.headers.get_all("Authorization"), net.now, lookup).ok
    assert reg.state == "unregistering" and reg.get_timer() is None
    net.reply(bye, 200)
    assert reg.state == "unregistered" and reg.expires_at is None and not reg.registered
    assert states(net)[-2:] == ["unregistering", "unregistered"]
    reg.unregister(net.now)  # idempotent
    assert net.drain() == []


def test_unregister_while_registering_waits_for_the_answer() -> None:
    net = Net()
    reg = net.registration()
    reg.start(net.now)
    first = net.one()
    reg.unregister(net.now)
    assert net.drain() == []  # §10.2: not before the previous REGISTER completes
    net.reply(first, 200, [("Expires", "3600")])
    bye = net.one()
    assert bye.headers.get("Expires") == "0" and reg.state == "unregistering"
    net.reply(bye, 200)
    assert reg.state == "unregistered"


def test_unregister_from_failed_or_idle_sends_nothing() -> None:
    net = Net()
    reg = net.registration()
    reg.unregister(net.now)
    assert reg.state == "unregistered" and net.drain() == []
    reg.start(net.now)
    net.reply(net.one(), 404)
    assert reg.state == "failed"
    reg.unregister(net.now)
    assert reg.state == "unregistered" and reg.get_timer() is None and net.drain() == []


def test_unregister_timeout_still_ends_unregistered() -> None:
    net = Net()
    reg = net.registration()
    reg.start(net.now)
    net.reply(net.one(), 200, [("Expires", "3600")])
    reg.unregister(net.now)
    net.drain()
    net.advance(net.now + 40)
    assert reg.state == "unregistered" and reg.last_error == "timeout"


def test_local_misuse_raises_and_bad_peer_input_is_counted() -> None:
    net = Net()
    reg = net.registration()
    reg.start(net.now)
    with pytest.raises(LocalProtocolError):
        reg.start(net.now)  # already registering
    first = net.one()
    net.reply(first, 200, [("Expires", "3600")])
    # a 2xx reaching the table in a state that does not list it: counted, not raised
    resp = make_response(first, 200)
    reg._on_result(reg._gen, ResponseReceived(resp, None), net.now)
    assert reg.stats["rejected_input"] == 1 and reg.state == "registered"
    # a late result of an abandoned request is dropped
    reg._on_result(reg._gen - 1, ResponseReceived(resp, None), net.now)
    assert reg.stats["stale_result"] == 1
    with pytest.raises(LocalProtocolError):
        Registration(net.ua, REGISTRAR, AOR, CONTACT, expires=0)


def test_ok_without_expiry_for_us_uses_requested() -> None:
    net = Net()
    reg = net.registration(expires=300)
    reg.start(net.now)
    net.reply(net.one(), 200, [("Contact", "<sip:someone@192.0.2.1>;expires=50")])
    assert reg.state == "registered" and reg.granted == 300


# --------------------------------------------------------------------------- Keepalive


def test_keepalive_up_down_and_rtt() -> None:
    net = Net()
    ka = net.keepalive(interval=30)
    assert ka.state == "stopped"
    ka.start(net.now)
    ping = net.one()
    assert ping.method == "OPTIONS" and ping.uri == "sip:127.0.0.1:5060"
    assert ping.cseq == (1, "OPTIONS") and ping.from_.tag and ping.to.tag is None
    assert ka.state == "unknown"
    net.advance(T0 + 0.045)
    net.reply(ping, 200)
    assert ka.state == "up" and ka.last_rtt_ms == pytest.approx(45)
    assert ka.status() == {"state": "up", "last_rtt_ms": pytest.approx(45), "since": T0 + 0.045,
                           "failures": 0, "last_status": 200}
    assert ka.get_timer() == T0 + 30

    net.advance(T0 + 30)
    ping2 = net.wire[-1][1]
    assert ping2.cseq == (2, "OPTIONS") and ping2.call_id == ping.call_id
    net.advance(T0 + 30.012)
    net.reply(ping2, 404)  # any answer means alive
    assert ka.state == "up" and ka.last_rtt_ms == pytest.approx(12) and ka.last_status == 404

    net.advance(T0 + 60)  # third ping: never answered
    assert ka.state == "up"
    net.advance(T0 + 60 + 31.9)
    assert ka.state == "up"
    net.advance(T0 + 60 + 32)  # Timer F
    assert ka.state == "down" and ka.status()["since"] == T0 + 92
    sent_at, ping4 = net.wire[-1]  # overdue: the next ping went at once
    assert sent_at == T0 + 92 and ping4.cseq == (4, "OPTIONS")
    net.advance(T0 + 92.5)
    net.reply(ping4, 405)
    assert ka.state == "up" and ka.last_rtt_ms == pytest.approx(500)
    assert states(net) == ["unknown", "up", "down", "up"]
    assert net.changes[-1][2] == "up (405 Method Not Allowed, rtt 500 ms)"


def test_keepalive_failure_threshold_and_transport_error() -> None:
    net = Net()
    ka = net.keepalive(interval=10, failures=2)
    ka.start(net.now)
    net.reply(net.one(), 200)
    assert ka.state == "up"
    net.advance(T0 + 10)
    net.ua.transport_error(REGISTRAR, net.now)
    assert ka.state == "up" and ka.failures == 1  # one failure is below the threshold
    net.advance(T0 + 20)
    net.ua.transport_error(REGISTRAR, net.now)
    assert ka.state == "down" and ka.failures == 2


def test_keepalive_stop_drops_late_answers() -> None:
    net = Net()
    ka = net.keepalive(interval=10)
    ka.start(net.now)
    ping = net.one()
    ka.stop(net.now)
    net.reply(ping, 200)
    assert ka.state == "stopped" and ka.stats["stale_result"] == 1
    assert ka.get_timer() is None


# --------------------------------------------------------------------------- interop (sipp)

SIPP = shutil.which("sipp")
# sipp is required, never skipped: make test installs Debian sip-tester
needs_sipp = pytest.mark.interop


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UdpAdapter(asyncio.DatagramProtocol):
    """The smallest real-socket adapter: bytes in → ua.receive; ua.transmissions → bytes."""

    def __init__(self, ua: UserAgent, clock: Callable[[], float]) -> None:
        self.ua = ua
        self.clock = clock
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.ua.receive(parse_message(data), Peer("udp", addr[0], addr[1]), self.clock())
        self.flush()

    def flush(self) -> None:
        assert self.transport is not None
        for t in self.ua.transmissions():
            self.transport.sendto(t.message.to_bytes(), (t.dest.host, t.dest.port))


async def drive(ua_port: int, timers: TimerConfig, body: Callable[..., object],
                deadline: float) -> None:
    loop = asyncio.get_running_loop()
    clock = loop.time
    ua = UserAgent(timers, sent_by=lambda t: ("127.0.0.1", ua_port),
                   contact=lambda t: f"sip:homeline@127.0.0.1:{ua_port}")
    transport, proto = await loop.create_datagram_endpoint(
        lambda: UdpAdapter(ua, clock), local_addr=("127.0.0.1", ua_port))
    clients: list[Registration | Keepalive] = []

    async def tick(until: Callable[[], bool]) -> None:
        end = clock() + deadline
        while not until():
            assert clock() < end, "timed out"
            now = clock()
            ua.handle_timer(now)
            for c in clients:
                c.handle_timer(now)
            proto.flush()
            await asyncio.sleep(0.01)

    try:
        await body(ua, clock, clients, tick, proto)  # type: ignore[misc]
    finally:
        transport.close()


def run_sipp(scenario: str, port: int) -> subprocess.Popen[bytes]:
    assert SIPP is not None
    return subprocess.Popen(
        [SIPP, "-sf", str(SIPP_DIR / scenario), "-i", "127.0.0.1", "-p", str(port), "-m", "1",
         "-nostdin", "-timeout", "15s", "-timeout_error", "-nd"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_sipp(proc: subprocess.Popen[bytes]) -> int:
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def wait_listening(proc: subprocess.Popen[bytes], port: int) -> None:
    """Until sipp has bound its UDP port (binding it ourselves then fails)."""
    end = time.monotonic() + 5
    while time.monotonic() < end:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise AssertionError(f"sipp exited with {proc.returncode}: {err[-500:]}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.02)
    raise AssertionError(f"sipp did not bind UDP port {port}")


def two_ports() -> tuple[int, int]:
    a = free_udp_port()
    while (b := free_udp_port()) == a:
        pass
    return a, b


@pytest.mark.interop
@needs_sipp
def test_sipp_registrar_digest_register_and_unregister() -> None:
    sipp_port, ua_port = two_ports()
    proc = run_sipp("register_uas.xml", sipp_port)
    changes: list[tuple[str, str]] = []
    try:
        wait_listening(proc, sipp_port)

        async def body(ua, clock, clients, tick, proto) -> None:  # type: ignore[no-untyped-def]
            reg = Registration(ua, Peer("udp", "127.0.0.1", sipp_port), "sip:homeline@homeline.test",
                               f"<sip:homeline@127.0.0.1:{ua_port}>", username="homeline",
                               password="s3cret", expires=600,
                               on_change=lambda s, d: changes.append((s, d)))
            clients.append(reg)
            reg.start(clock())
            proto.flush()
            await tick(lambda: reg.state in ("registered", "failed"))
            assert reg.state == "registered", reg.last_error
            assert reg.granted == 120  # our Contact's expires, not the other binding's
            reg.unregister(clock())
            proto.flush()
            await tick(lambda: reg.state == "unregistered")
            assert reg.last_error is None

        asyncio.run(drive(ua_port, TimerConfig(), body, deadline=8))
    finally:
        rc = wait_sipp(proc)
    assert rc == 0, proc.stderr.read().decode(errors="replace") if proc.stderr else rc
    assert [s for s, _ in changes] == ["registering", "registered", "unregistering", "unregistered"]


@pytest.mark.interop
@needs_sipp
def test_sipp_options_keepalive_up() -> None:
    sipp_port, ua_port = two_ports()
    proc = run_sipp("options_uas.xml", sipp_port)
    try:
        wait_listening(proc, sipp_port)

        async def body(ua, clock, clients, tick, proto) -> None:  # type: ignore[no-untyped-def]
            ka = Keepalive(ua, Peer("udp", "127.0.0.1", sipp_port), interval=0.2)
            clients.append(ka)
            ka.start(clock())
            proto.flush()
            await tick(lambda: ka.cseq >= 2 and ka._sent_at is None)
            assert ka.state == "up" and ka.last_status == 200
            assert ka.last_rtt_ms is not None and 0 <= ka.last_rtt_ms < 1000
            ka.stop(clock())

        asyncio.run(drive(ua_port, TimerConfig(), body, deadline=8))
    finally:
        rc = wait_sipp(proc)
    assert rc == 0, proc.stderr.read().decode(errors="replace") if proc.stderr else rc


@pytest.mark.interop
def test_keepalive_down_when_nothing_listens() -> None:
    dead_port, ua_port = two_ports()

    async def body(ua, clock, clients, tick, proto) -> None:  # type: ignore[no-untyped-def]
        ka = Keepalive(ua, Peer("udp", "127.0.0.1", dead_port), interval=5)
        clients.append(ka)
        ka.start(clock())
        proto.flush()
        await tick(lambda: ka.state != "unknown")
        assert ka.state == "down" and ka.last_rtt_ms is None

    # a short T1 so that Timer F (64*T1) ends within a second or so
    asyncio.run(drive(ua_port, TimerConfig(t1=0.02, t2=0.1, t4=0.1), body, deadline=5))
