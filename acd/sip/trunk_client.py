"""Client side of a SIP trunk: REGISTER bindings (RFC 3261 §10.2) and OPTIONS keep-alives.

Sans-IO like the rest of ``acd.sip``: every method takes ``now`` (seconds, any monotonic
clock); requests go out through :meth:`UserAgent.request`, whose client transactions report
back to us. Each object exposes ``get_timer()`` (its next deadline, or None) and
``handle_timer(now)``; the adapter folds those into the one timer it re-arms.

Both classes are table-driven: ``TABLE[(state, input)]`` names the handler, and an input a
state does not list raises :class:`RemoteProtocolError` (peer input: a response, a timeout)
or :class:`LocalProtocolError` (our own call). Peer input is caught at the handler boundary
(``_on_result``), counted in ``stats`` and logged.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from acd.sip.auth import Credentials, DigestClient, choose_challenge
from acd.sip.dialog import new_call_id, new_tag
from acd.sip.errors import LocalProtocolError, RemoteProtocolError
from acd.sip.events import Event, Peer, ResponseReceived, TransactionTimeout, TransportFailed
from acd.sip.message import Request, Response
from acd.sip.uri import format_host, parse_name_addr, parse_uri

if TYPE_CHECKING:
    from acd.sip.ua import UserAgent

__all__ = ["Registration", "Keepalive", "OnChange"]

log = logging.getLogger(__name__)

OnChange = Callable[[str, str], None]  # (new state, human-readable detail)

# Inputs that come from the network (responses, transaction outcomes): an unexpected one is
# the peer's fault and is dropped; any other unexpected input is a bug on our side.
REMOTE_INPUTS = frozenset({"1xx", "2xx", "challenge", "423", "failure", "timeout"})
MAX_AUTH_ROUNDS = 3  # answers to 401/407 within one REGISTER cycle (loop guard)
MAX_423_ROUNDS = 3  # §10.2.8 retries with a larger Expires within one cycle
_LEADING_INT = re.compile(r"\s*(\d{1,10})")


def _leading_int(value: str | None) -> int | None:
    """``"120 (maint);duration=60"`` → 120 (Retry-After §20.33, Expires §20.19)."""
    if value is None:
        return None
    m = _LEADING_INT.match(value)
    return int(m.group(1)) if m else None


def _same_uri(a: str, b: str) -> bool:
    """Loose §19.1.4 comparison for matching our Contact in a REGISTER 2xx: scheme, user,
    host and port (defaults filled in) and transport; other URI parameters are ignored
    because registrars add their own."""
    try:
        ua, ub = parse_uri(a), parse_uri(b)
    except RemoteProtocolError:
        return a.strip().lower() == b.strip().lower()
    return (ua.scheme, ua.user, ua.host, ua.effective_port, ua.transport) == (
        ub.scheme, ub.user, ub.host, ub.effective_port, ub.transport)


def _classify(ev: Event) -> tuple[str, Response | None]:
    """A transaction result as a table input."""
    if isinstance(ev, ResponseReceived):
        status = ev.response.status
        if status < 200:
            return "1xx", ev.response
        if status < 300:
            return "2xx", ev.response
        if status in (401, 407):
            return "challenge", ev.response
        if status == 423:
            return "423", ev.response
        return "failure", ev.response
    if isinstance(ev, (TransactionTimeout, TransportFailed)):
        return "timeout", None
    raise LocalProtocolError(f"unexpected transaction event {ev!r}")


class _Machine:
    """State-table dispatch shared by both classes."""

    TABLE: ClassVar[dict[tuple[str, str], str]] = {}
    KIND: ClassVar[str] = ""

    state: str
    name: str
    stats: Counter[str]
    on_change: OnChange | None

    def _input(self, name: str, now: float, arg: object = None) -> None:
        handler = self.TABLE.get((self.state, name))
        if handler is None:
            text = f"{self.KIND} {self.name}: {name} not allowed in state {self.state}"
            if name in REMOTE_INPUTS:
                raise RemoteProtocolError(text)
            raise LocalProtocolError(text)
        getattr(self, handler)(now, arg)

    def _guarded(self, name: str, now: float, arg: object = None) -> None:
        """The boundary for peer input: a bad one is counted and dropped."""
        try:
            self._input(name, now, arg)
        except RemoteProtocolError as exc:
            self.stats["rejected_input"] += 1
            log.debug("%s %s: dropped %s: %s", self.KIND, self.name, name, exc.reason)

    def _move(self, state: str, detail: str) -> None:
        old, self.state = self.state, state
        if old == state:
            return
        log.debug("%s %s: %s -> %s (%s)", self.KIND, self.name, old, state, detail)
        if self.on_change is not None:
            self.on_change(state, detail)


class Registration(_Machine):
    """Keeps one binding of ``contact`` to ``aor`` at a registrar (RFC 3261 §10.2).

    States: ``idle`` → ``registering`` → ``registered`` ⇄ ``refreshing``; a failure moves to
    ``failed`` and retries later; ``unregister`` goes through ``unregistering`` to
    ``unregistered``. ``start`` is allowed again from ``failed`` (retry now) and from
    ``unregistered``.

    Refresh policy: the binding is refreshed at ``sent + max(granted / 2, granted - margin)``
    where ``sent`` is when the accepted REGISTER went out (the registrar's clock starts
    later, so this errs early) and ``margin`` is ``refresh_margin`` (30 s): a 3600 s binding
    is refreshed after 3570 s, a 120 s one after 90 s, a 40 s one after 20 s.

    Retry policy: after the n-th failure in a row the next attempt is at
    ``min(retry_min * 2**(n-1), retry_max)``; a ``Retry-After`` (§20.33, e.g. on 503) is
    used instead when present.
    """

    KIND = "registration"
    TABLE: ClassVar[dict[tuple[str, str], str]] = {
        ("idle", "start"): "_send_register",
        ("unregistered", "start"): "_send_register",
        ("failed", "start"): "_send_register",
        ("failed", "retry_timer"): "_send_register",
        ("registered", "start"): "_send_refresh",
        ("registered", "refresh_timer"): "_send_refresh",
        ("registering", "1xx"): "_ignore",
        ("refreshing", "1xx"): "_ignore",
        ("unregistering", "1xx"): "_ignore",
        ("registering", "2xx"): "_on_ok",
        ("refreshing", "2xx"): "_on_ok",
        ("registering", "challenge"): "_on_challenge",
        ("refreshing", "challenge"): "_on_challenge",
        ("unregistering", "challenge"): "_on_challenge",
        ("registering", "423"): "_on_too_brief",
        ("refreshing", "423"): "_on_too_brief",
        ("registering", "failure"): "_on_failure",
        ("refreshing", "failure"): "_on_failure",
        ("registering", "timeout"): "_on_failure",
        ("refreshing", "timeout"): "_on_failure",
        ("unregistering", "2xx"): "_on_unregistered",
        ("unregistering", "423"): "_on_unregistered",
        ("unregistering", "failure"): "_on_unregistered",
        ("unregistering", "timeout"): "_on_unregistered",
        # §10.2: no new REGISTER before the previous one is answered or timed out
        ("registering", "stop"): "_defer_stop",
        ("refreshing", "stop"): "_defer_stop",
        ("registered", "stop"): "_send_unregister",
        ("failed", "stop"): "_stop_failed",
        ("idle", "stop"): "_stop_idle",
        ("unregistering", "stop"): "_ignore",
        ("unregistered", "stop"): "_ignore",
    }

    def __init__(
        self,
        ua: UserAgent,
        registrar: Peer,
        aor: str,
        contact: str,
        *,
        registrar_uri: str | None = None,
        username: str | None = None,
        password: str | None = None,
        expires: int = 3600,
        refresh_margin: float = 30.0,
        retry_min: float = 20.0,
        retry_max: float = 600.0,
        on_change: OnChange | None = None,
        name: str = "",
    ) -> None:
        if expires <= 0:
            raise LocalProtocolError(f"expires must be positive, not {expires}")
        if not 0 < retry_min <= retry_max:
            raise LocalProtocolError(f"bad retry interval {retry_min}..{retry_max}")
        self.aor = parse_name_addr(aor).uri
        aor_uri = parse_uri(self.aor)
        self.ua = ua
        self.registrar = registrar
        # §10.2: the Request-URI names the domain of the location service, no user part
        port = f":{aor_uri.port}" if aor_uri.port else ""
        self.registrar_uri = registrar_uri or f"{aor_uri.scheme}:{format_host(aor_uri.host)}{port}"
        contact_addr = parse_name_addr(contact)
        self.contact = str(contact_addr)  # header params (+sip.instance, reg-id) kept
        self._contact_uri = contact_addr.uri
        self.digest = DigestClient(username, password or "") if username is not None else None
        self.expires = expires  # what we ask for (raised by 423 Min-Expires)
        self.refresh_margin = refresh_margin
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.on_change = on_change
        self.name = name or self.aor
        self.stats: Counter[str] = Counter()

        self.state = "idle"
        self.expires_at: float | None = None  # when the current binding lapses
        self.granted: int | None = None  # seconds the registrar granted last
        self.last_status: int | None = None
        self.last_error: str | None = None
        self.failures = 0  # in a row; drives the backoff

        # §10.2.4: one Call-ID for every REGISTER of this binding, CSeq rising
        self.call_id = new_call_id(ua.layer.sent_by(registrar.transport)[0])
        self.from_tag = new_tag()
        self.cseq = 0
        self._timer: float | None = None
        self._timer_input = ""
        self._gen = 0  # bumped per request: results of an abandoned one are dropped
        self._sent_at = 0.0
        self._sending_expires = 0
        self._stop_pending = False
        self._auth_rounds = 0
        self._brief_rounds = 0
        self._answered: set[str] = set()  # nonces we sent credentials for in this cycle
        self._auth_header: dict[str, str] = {}  # realm → Authorization | Proxy-Authorization

    # -- owner interface ---------------------------------------------------------------

    def start(self, now: float) -> None:
        """Register (or re-register now, from ``failed``/``registered``/``unregistered``)."""
        self._input("start", now)

    def unregister(self, now: float) -> None:
        """Remove our binding: REGISTER with Expires: 0 (§10.2.2)."""
        self._input("stop", now)

    @property
    def registered(self) -> bool:
        """Whether a binding is believed to be in place."""
        return self.state in ("registered", "refreshing")

    def get_timer(self) -> float | None:
        return self._timer

    def handle_timer(self, now: float) -> None:
        if self._timer is not None and now >= self._timer:
            name, self._timer = self._timer_input, None
            self._input(name, now)

    # -- sending -----------------------------------------------------------------------

    def _build(self, expires: int) -> Request:
        self.cseq += 1
        req = Request(method="REGISTER", uri=self.registrar_uri)
        h = req.headers
        h.add("Max-Forwards", "70")
        h.add("From", f"<{self.aor}>;tag={self.from_tag}")
        h.add("To", f"<{self.aor}>")
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{self.cseq} REGISTER")
        h.add("Contact", self.contact)
        h.add("Expires", str(expires))
        if self.digest is not None:
            # answer the remembered challenge again with nc+1 (RFC 7616 §3.4)
            for value in self.digest.authorizations("REGISTER", self.registrar_uri):
                creds = Credentials.parse(value)
                self._answered.add(creds.nonce)
                h.add(self._auth_header.get(creds.realm, "Authorization"), value)
        return req

    def _send(self, expires: int, now: float) -> None:
        req = self._build(expires)
        self._gen += 1
        gen = self._gen
        self._sent_at = now
        self._sending_expires = expires
        self._timer = None
        self.ua.request(req, self.registrar, now, lambda ev, t: self._on_result(gen, ev, t))

    def _new_cycle(self) -> None:
        self._auth_rounds = 0
        self._brief_rounds = 0
        self._answered = set()

    def _send_register(self, now: float, _: object = None) -> None:
        self._new_cycle()
        self._move("registering", f"registering {self.aor} at {self.registrar}")
        self._send(self.expires, now)

    def _send_refresh(self, now: float, _: object = None) -> None:
        self._new_cycle()
        self._move("refreshing", f"refreshing {self.aor}")
        self._send(self.expires, now)

    def _send_unregister(self, now: float, _: object = None) -> None:
        self._new_cycle()
        self._stop_pending = False
        self._move("unregistering", f"unregistering {self.aor}")
        self._send(0, now)

    # -- results -----------------------------------------------------------------------

    def _on_result(self, gen: int, ev: Event, now: float) -> None:
        if gen != self._gen:
            self.stats["stale_result"] += 1
            return
        try:
            name, resp = _classify(ev)
        except LocalProtocolError:
            log.warning("registration %s: unexpected event %r", self.name, ev)
            return
        if resp is not None and name != "1xx":
            self.last_status = resp.status
        self._guarded(name, now, resp if resp is not None else ev)

    def _ignore(self, now: float, _: object = None) -> None:
        pass

    def _on_ok(self, now: float, resp: Response) -> None:
        granted = self._granted(resp)
        if granted <= 0:
            self._fail(now, f"{resp.status} {resp.reason} without an expiry for our Contact")
            return
        self.granted = granted
        self.expires_at = self._sent_at + granted
        self.failures = 0
        self.last_error = None
        self._set_timer(self._sent_at + max(granted / 2, granted - self.refresh_margin), "refresh_timer")
        self._move("registered", f"registered (expires {granted} s)")
        if self._stop_pending:
            self._send_unregister(now)

    def _granted(self, resp: Response) -> int:
        """§10.2.4: the ``expires`` param of our Contact, else the Expires header, else what
        we asked for."""
        try:
            contacts = resp.contacts
        except RemoteProtocolError:
            self.stats["bad_contact"] += 1
            contacts = []
        for c in contacts:
            if _same_uri(c.uri, self._contact_uri):
                value = _leading_int(c.params.get("expires"))
                if value is not None:
                    return value
        header = _leading_int(resp.headers.get("Expires"))
        return header if header is not None else self._sending_expires

    def _on_challenge(self, now: float, resp: Response) -> None:
        """§22.2: resend with credentials; a second challenge for a nonce we already
        answered, without stale=true, means the credentials are wrong."""
        header = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        values = resp.headers.get_all(header)
        if self.digest is None:
            self._after_failure(now, f"{resp.status} {resp.reason} (no credentials configured)", resp)
            return
        try:
            chosen = choose_challenge(values)
        except RemoteProtocolError as exc:
            self._after_failure(now, f"{resp.status} {resp.reason}: {exc.reason}", resp)
            return
        if (chosen.nonce in self._answered and not chosen.stale) or self._auth_rounds >= MAX_AUTH_ROUNDS:
            self._after_failure(now, f"{resp.status} {resp.reason}: wrong credentials", resp)
            return
        self._auth_rounds += 1
        self.digest.forget()  # a fresh nonce is answered once even without stale=true
        try:
            self.digest.handle_challenge(values)
        except RemoteProtocolError as exc:
            self._after_failure(now, f"{resp.status} {resp.reason}: {exc.reason}", resp)
            return
        auth = "Authorization" if resp.status == 401 else "Proxy-Authorization"
        for value in values:
            try:
                self._auth_header[choose_challenge([value]).realm] = auth
            except RemoteProtocolError:
                continue
        self._send(self._sending_expires, now)

    def _on_too_brief(self, now: float, resp: Response) -> None:
        """§10.2.8: 423 carries Min-Expires; retry at once with it."""
        minimum = _leading_int(resp.headers.get("Min-Expires"))
        if minimum is None or minimum <= self._sending_expires or self._brief_rounds >= MAX_423_ROUNDS:
            self._fail(now, f"{resp.status} {resp.reason} (Min-Expires {resp.headers.get('Min-Expires')})", resp)
            return
        self._brief_rounds += 1
        log.debug("registration %s: registrar wants at least %d s", self.name, minimum)
        self.expires = minimum
        self._send(minimum, now)

    def _on_failure(self, now: float, arg: Response | Event) -> None:
        if isinstance(arg, Response):
            self._fail(now, f"{arg.status} {arg.reason}", arg)
        elif isinstance(arg, TransportFailed):
            self._fail(now, "transport error")
        else:
            self._fail(now, "timeout")

    def _after_failure(self, now: float, error: str, resp: Response) -> None:
        """A failure that may come while unregistering (a challenge we cannot answer)."""
        if self.state == "unregistering":
            self._on_unregistered(now, resp, error)
        else:
            self._fail(now, error, resp)

    def _fail(self, now: float, error: str, resp: Response | None = None) -> None:
        self.failures += 1
        self.last_error = error
        self.expires_at = None
        if self.digest is not None:
            self.digest.forget()  # start the next attempt without stale credentials
        delay = min(self.retry_min * 2 ** (self.failures - 1), self.retry_max)
        retry_after = _leading_int(resp.headers.get("Retry-After")) if resp is not None else None
        if retry_after is not None:
            delay = float(retry_after)
        if self._stop_pending:
            self._stop_pending = False
            self._timer = None
            self._move("unregistered", f"registration failed: {error}; not retrying (unregistered)")
            return
        self._set_timer(now + delay, "retry_timer")
        log.debug("registration %s failed: %s, retry in %g s", self.name, error, delay)
        self._move("failed", f"registration failed: {error}, retry in {delay:g} s")

    def _on_unregistered(self, now: float, arg: Response | Event, error: str | None = None) -> None:
        self._timer = None
        self.expires_at = None
        self.granted = None
        if error is None and isinstance(arg, Response) and arg.status < 300:
            self.last_error = None
            self._move("unregistered", "unregistered")
            return
        if error is None:
            error = f"{arg.status} {arg.reason}" if isinstance(arg, Response) else "timeout"
        self.last_error = error
        self._move("unregistered", f"unregistered (registrar did not confirm: {error})")

    # -- stopping ----------------------------------------------------------------------

    def _defer_stop(self, now: float, _: object = None) -> None:
        self._stop_pending = True

    def _stop_failed(self, now: float, _: object = None) -> None:
        self._timer = None
        self._move("unregistered", "unregistered (was failed)")

    def _stop_idle(self, now: float, _: object = None) -> None:
        self._move("unregistered", "unregistered (never registered)")

    # -- helpers -----------------------------------------------------------------------

    def _set_timer(self, deadline: float, name: str) -> None:
        self._timer = deadline
        self._timer_input = name



class Keepalive(_Machine):
    """OPTIONS pings to a trunk's proxy every ``interval`` seconds.

    States: ``stopped`` → ``unknown`` (started, no verdict yet) → ``up`` / ``down``. Any
    final response, whatever its status (404, 405, 503 …), proves the peer alive → ``up``;
    ``failures`` timeouts or transport errors in a row → ``down``. One ping is in flight at
    a time: the next goes ``interval`` after the previous one was sent, or as soon as it
    ends if that is later (Timer F, 64·T1, may exceed the interval). Provisional responses
    are ignored.
    """

    KIND = "keepalive"
    TABLE: ClassVar[dict[tuple[str, str], str]] = {
        ("stopped", "start"): "_start",
        ("stopped", "stop"): "_ignore",
        **{(s, "ping_timer"): "_ping" for s in ("unknown", "up", "down")},
        **{(s, "1xx"): "_ignore" for s in ("unknown", "up", "down")},
        **{(s, r): "_on_response" for s in ("unknown", "up", "down")
           for r in ("2xx", "challenge", "423", "failure")},
        **{(s, "timeout"): "_on_timeout" for s in ("unknown", "up", "down")},
        **{(s, "stop"): "_stop" for s in ("unknown", "up", "down")},
    }

    def __init__(
        self,
        ua: UserAgent,
        dest: Peer,
        *,
        uri: str | None = None,
        from_uri: str | None = None,
        interval: float = 30.0,
        failures: int = 1,
        on_change: OnChange | None = None,
        name: str = "",
    ) -> None:
        if interval <= 0 or failures < 1:
            raise LocalProtocolError(f"bad keepalive settings interval={interval} failures={failures}")
        self.ua = ua
        self.dest = dest
        self.uri = uri or f"sip:{format_host(dest.host)}:{dest.port}"
        host = ua.layer.sent_by(dest.transport)[0]
        self.from_uri = from_uri or f"sip:homeline@{format_host(host)}"
        self.interval = interval
        self.threshold = failures
        self.on_change = on_change
        self.name = name or str(dest)
        self.stats: Counter[str] = Counter()

        self.state = "stopped"
        self.since: float | None = None
        self.last_rtt_ms: float | None = None
        self.last_status: int | None = None
        self.failures = 0  # in a row
        self.call_id = new_call_id(host)
        self.from_tag = new_tag()
        self.cseq = 0
        self._gen = 0
        self._sent_at: float | None = None  # of the ping in flight
        self._last_sent = 0.0
        self._timer: float | None = None

    # -- owner interface ---------------------------------------------------------------

    def start(self, now: float) -> None:
        self._input("start", now)

    def stop(self, now: float) -> None:
        self._input("stop", now)

    def status(self) -> dict[str, object]:
        return {"state": self.state, "last_rtt_ms": self.last_rtt_ms, "since": self.since,
                "failures": self.failures, "last_status": self.last_status}

    def get_timer(self) -> float | None:
        return self._timer

    def handle_timer(self, now: float) -> None:
        if self._timer is not None and now >= self._timer:
            self._timer = None
            self._input("ping_timer", now)

    # -- handlers ----------------------------------------------------------------------

    def _start(self, now: float, _: object = None) -> None:
        self.failures = 0
        self._enter("unknown", now, f"probing {self.dest}")
        self._ping(now)

    def _stop(self, now: float, _: object = None) -> None:
        self._gen += 1  # drop the result of a ping in flight
        self._timer = None
        self._sent_at = None
        self._enter("stopped", now, "stopped")

    def _ignore(self, now: float, _: object = None) -> None:
        pass

    def _ping(self, now: float, _: object = None) -> None:
        if self._sent_at is not None:  # the previous ping is still out: wait for it
            self.stats["ping_deferred"] += 1
            return
        self.cseq += 1
        req = Request(method="OPTIONS", uri=self.uri)
        h = req.headers
        h.add("Max-Forwards", "70")
        h.add("From", f"<{self.from_uri}>;tag={self.from_tag}")
        h.add("To", f"<{self.uri}>")
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{self.cseq} OPTIONS")
        h.add("Accept", "application/sdp")
        self._gen += 1
        gen = self._gen
        self._sent_at = self._last_sent = now
        self.stats["pings"] += 1
        self.ua.request(req, self.dest, now, lambda ev, t: self._on_result(gen, ev, t))

    def _on_result(self, gen: int, ev: Event, now: float) -> None:
        if gen != self._gen:
            self.stats["stale_result"] += 1
            return
        try:
            name, resp = _classify(ev)
        except LocalProtocolError:
            log.warning("keepalive %s: unexpected event %r", self.name, ev)
            return
        self._guarded(name, now, resp)

    def _on_response(self, now: float, resp: Response) -> None:
        assert self._sent_at is not None
        self.last_rtt_ms = (now - self._sent_at) * 1000.0
        self.last_status = resp.status
        self.failures = 0
        self._done(now)
        if self.state != "up":
            self._enter("up", now, f"up ({resp.status} {resp.reason}, rtt {self.last_rtt_ms:.0f} ms)")

    def _on_timeout(self, now: float, _: object = None) -> None:
        self.failures += 1
        self.stats["failures"] += 1
        self._done(now)
        if self.failures >= self.threshold and self.state != "down":
            self._enter("down", now, f"down (no answer to {self.failures} OPTIONS)")

    def _done(self, now: float) -> None:
        self._sent_at = None
        self._timer = max(self._last_sent + self.interval, now)

    def _enter(self, state: str, now: float, detail: str) -> None:
        self.since = now
        if state in ("up", "down"):
            log.debug("keepalive %s: %s", self.name, detail)
        self._move(state, detail)
