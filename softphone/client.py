"""The softphone's connection to a Homeline server: docs/agent-protocol.md §2-3, nothing else.

:class:`AgentConnection` logs in over HTTPS (``POST /api/v1/login``), opens the WebSocket,
says ``hello``, keeps it alive with pings every ``heartbeat_s``, sends requests with ids and
matches their replies, and hands every event to its listeners (callbacks) and iterators
(:meth:`AgentConnection.events`).

When the socket goes away it reconnects by itself, with a jittered exponential backoff
(:class:`Backoff`), and says ``hello`` again with the same token, so a call in progress
resumes within the server's grace period (the welcome carries it); a refused token means a
fresh login. After ``failover_after`` failed attempts on one server it tries the other one
(:class:`Failover`), and stays there until that one fails in turn. Each (re)connection is
announced with a *local* event ``{"type": "connection", "state": "connected", "welcome": {…},
"local": true, …}``, emitted before any later server event, on which the owner renegotiates
media (§3.4). Other local ``connection`` states: ``lost``, ``reconnecting``, ``failed``,
``replaced``, ``closed``.

TLS trust (:class:`Trust`): the system's CAs plus any ``ca_files``, or a certificate pinned by
its SHA-256 fingerprint (``AA:BB:…``, the form the server logs when it makes its self-signed
certificate). An unknown certificate raises :class:`~softphone.errors.UntrustedCertificate`
with the fingerprint, so a GUI can ask "Trust this server?".
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from acd import __version__
from softphone.errors import (AccountLocked, BadCredentials, CertificateMismatch,
                              ConfigError, ConnectionLost, NotAnAgent, ProtocolError, RequestError,
                              ServerUnreachable, SessionReplaced, SoftphoneError)
from softphone.trust import Backoff, Failover, Trust, describe_error, format_fingerprint, normalize_url

__all__ = ["AgentConnection", "PROTOCOL_VERSION"]

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
CLOSE_VERSION, CLOSE_AUTH, CLOSE_REPLACED = 4000, 4001, 4008
_TOKEN_REFUSED = ("not-authenticated", "token-expired")
_END = object()


# -- the connection ----------------------------------------------------------------------------


class _TokenRefused(Exception):
    pass


Listener = Callable[[dict[str, Any]], None]


class AgentConnection:
    """One agent's signalling connection (see the module docstring).

    ``connect()`` logs in and says hello (raising on a wrong password, a locked account, an
    untrusted certificate, an unreachable server); afterwards the connection looks after
    itself until :meth:`close`. ``request(type, **fields)`` returns the reply's fields or
    raises :class:`~softphone.errors.RequestError`; while reconnecting it waits for the
    connection (up to its timeout).
    """

    def __init__(self, server: str, agent: str, password: str, *, secondary: str | None = None,
                 trust: Trust | None = None, failover_after: int = 3, backoff: Backoff | None = None,
                 client_name: str = "homeline-softphone", client_version: str = __version__,
                 request_timeout_s: float = 15.0, connect_timeout_s: float = 10.0) -> None:
        if not agent:
            raise ConfigError("no agent name given")
        self.failover = Failover(normalize_url(server), normalize_url(secondary) if secondary else None,
                                 failover_after)
        self.agent = agent
        self._password = password
        self.trust = trust or Trust()
        self.backoff = backoff or Backoff()
        self.client = {"name": client_name, "version": client_version}
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.server: str | None = None  # the server connected to now (or last)
        self.welcome: dict[str, Any] | None = None
        self.heartbeat_s = 10.0
        self.reconnects = 0
        self.failovers = 0
        self.last_error: SoftphoneError | None = None
        self.stopped: SoftphoneError | None = None  # why the connection gave up, if it did
        self._listeners: list[Listener] = []
        self._queues: list[asyncio.Queue[Any]] = []
        self._http: dict[str, aiohttp.ClientSession] = {}
        self._tokens: dict[str, str] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._up = asyncio.Event()
        self._lost = asyncio.Event()
        self._close_code: int | None = None
        self._closing = False
        self._last_heard = 0.0

    # -- public ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    @property
    def token(self) -> str | None:
        return self._tokens.get(self.server or "")

    def add_listener(self, listener: Listener) -> None:
        """``listener(event)`` for every server event and every local ``connection`` event,
        called in order on the event loop; it must not block."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Every event from now on, until :meth:`close`."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._queues.append(queue)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                yield item
        finally:
            with contextlib.suppress(ValueError):
                self._queues.remove(queue)

    async def connect(self) -> dict[str, Any]:
        """Log in and say hello; returns the welcome. Tries the secondary server at once when
        the primary cannot be reached. Authentication and certificate errors are raised as
        they are: the agent has to act on them."""
        if self._closing:
            raise SoftphoneError("this connection was closed")
        tried: list[ServerUnreachable] = []
        for _ in self.failover.servers:
            url = self.failover.current
            try:
                welcome = await self._open(url)
            except (ServerUnreachable, ConnectionLost) as exc:
                err = exc if isinstance(exc, ServerUnreachable) else ServerUnreachable(url, exc.message)
                tried.append(err)
                self.last_error = err
                self.failover.advance()
                continue
            self.failover.succeeded()
            self._supervisor = asyncio.create_task(self._supervise())
            return welcome
        if len(tried) == 1:
            raise tried[0]
        raise ServerUnreachable(" or ".join(e.url for e in tried), "; ".join(e.detail for e in tried))

    async def request(self, kind: str, *, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """Send ``{"type": kind, "id": …, **fields}`` and return the ``result``'s fields."""
        timeout = self.request_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if not self._up.is_set():
            if self._closing or self.stopped is not None:
                raise ConnectionLost(f"{kind}: not connected")
            try:
                await asyncio.wait_for(self._up.wait(), timeout)
            except asyncio.TimeoutError:
                raise ConnectionLost(f"{kind}: not connected to the server") from None
        ws = self._ws
        if ws is None:  # lost again in the meantime
            raise ConnectionLost(f"{kind}: not connected to the server")
        n = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[n] = fut
        try:
            await ws.send_str(json.dumps({"type": kind, "id": n, **fields}))
            reply = await asyncio.wait_for(fut, max(0.1, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise ConnectionLost(f"{kind}: no reply from the server within {timeout:.0f} s") from None
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            raise ConnectionLost(f"{kind}: connection lost ({describe_error(exc)})") from None
        finally:
            self._pending.pop(n, None)
        if reply.get("type") == "error":
            raise RequestError(kind, str(reply.get("code", "error")), str(reply.get("message", "")), reply)
        return {k: v for k, v in reply.items() if k not in ("type", "re")}

    async def send(self, kind: str, **fields: Any) -> bool:
        """Send a message without waiting for anything; False when not connected."""
        ws = self._ws
        if ws is None or ws.closed:
            return False
        try:
            await ws.send_str(json.dumps({"type": kind, **fields}))
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            return False
        return True

    async def drop(self) -> None:
        """Close the WebSocket as a network failure would (for tests and diagnostics): the
        connection reconnects and resumes like after any loss."""
        ws = self._ws
        if ws is not None:
            await ws.close()

    async def wait_connected(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._up.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def close(self, *, logout: bool = False) -> None:
        """Stop for good; with ``logout`` the session token is revoked (``POST /api/v1/logout``)."""
        if self._closing:
            return
        self._closing = True
        self._lost.set()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
        if logout and self.server and self.token and self.server in self._http:
            with contextlib.suppress(Exception):
                async with self._http[self.server].post(
                        f"{self.server}/api/v1/logout", headers={"Authorization": f"Bearer {self.token}"},
                        timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    await resp.read()
        ws, self._ws = self._ws, None
        self._up.clear()
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._fail_pending("the connection was closed")
        for http in self._http.values():
            await http.close()
        self._http.clear()
        self._emit({"type": "connection", "state": "closed", "local": True, "server": self.server})
        for q in self._queues:
            q.put_nowait(_END)

    # -- opening -----------------------------------------------------------------------------

    async def _http_for(self, url: str) -> aiohttp.ClientSession:
        http = self._http.get(url)
        if http is None:
            ssl_param = await self.trust.ssl_for(url, self.connect_timeout_s)
            http = self._http[url] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_param))
        return http

    async def _drop_http(self, url: str) -> None:
        http = self._http.pop(url, None)
        if http is not None:
            await http.close()

    async def _translate(self, url: str, exc: BaseException) -> SoftphoneError:
        if isinstance(exc, aiohttp.ServerFingerprintMismatch):
            return CertificateMismatch(url, format_fingerprint(exc.got), self.trust.pinned, self_signed=False)
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            cert_err = exc.certificate_error
            detail = getattr(cert_err, "verify_message", "") or str(cert_err)
            return await self.trust.explain(url, detail, self.connect_timeout_s)
        if isinstance(exc, aiohttp.ClientSSLError):
            return ServerUnreachable(url, f"TLS handshake failed ({describe_error(exc)}); is it an https server?")
        if isinstance(exc, aiohttp.WSServerHandshakeError):
            return ProtocolError(f"{url} refused the WebSocket ({exc.status} {exc.message}): not a Homeline server?")
        return ServerUnreachable(url, describe_error(exc))

    async def _open(self, url: str) -> dict[str, Any]:
        """Login (unless a token is kept for ``url``), WebSocket, hello: the connection is up."""
        try:
            http = await self._http_for(url)
            token = self._tokens.get(url) or await self._login(url, http)
            for _ in range(2):
                ws = await http.ws_connect(f"{'wss' if url.startswith('https') else 'ws'}{url[url.index(':'):]}"
                                           "/api/v1/ws", heartbeat=None, autoping=True, max_msg_size=1 << 20,
                                           timeout=aiohttp.ClientWSTimeout(ws_close=2.0))
                try:
                    welcome = await self._hello(ws, token)
                except _TokenRefused:
                    await ws.close()
                    self._tokens.pop(url, None)
                    token = await self._login(url, http)
                    continue
                except BaseException:
                    await ws.close()
                    raise
                break
            else:
                raise ProtocolError(f"{url} refused a fresh token")
        except SoftphoneError:
            await self._drop_http(url)
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            err = await self._translate(url, exc)
            await self._drop_http(url)
            raise err from None
        self._up_on(url, ws, welcome)
        return welcome

    async def _login(self, url: str, http: aiohttp.ClientSession) -> str:
        async with http.post(f"{url}/api/v1/login", json={"agent": self.agent, "password": self._password},
                             timeout=aiohttp.ClientTimeout(total=self.connect_timeout_s + 10)) as resp:
            try:
                body = await resp.json(content_type=None)
            except (ValueError, aiohttp.ContentTypeError):
                body = None
            status = resp.status
        error = body.get("error", {}) if isinstance(body, dict) else {}
        if status == 200 and isinstance(body, dict) and isinstance(body.get("token"), str):
            self._tokens[url] = body["token"]
            log.info("logged in to %s as %s", url, self.agent)
            return body["token"]
        if status == 401:
            raise BadCredentials(self.agent)
        if status == 423:
            retry = error.get("retry_after_s")
            raise AccountLocked(self.agent, float(retry) if isinstance(retry, (int, float)) else None,
                                str(error.get("message", "")))
        if status == 403:
            raise NotAnAgent(self.agent, str(error.get("message", "forbidden")))
        if not isinstance(body, dict):
            raise ProtocolError(f"{url}/api/v1/login answered {status} without JSON: not a Homeline server?")
        raise ProtocolError(f"login at {url} failed: {status} {error.get('code', '')} {error.get('message', '')}")

    async def _hello(self, ws: aiohttp.ClientWebSocketResponse, token: str) -> dict[str, Any]:
        n = next(self._ids)
        await ws.send_str(json.dumps({"type": "hello", "id": n, "version": PROTOCOL_VERSION, "token": token,
                                      "client": self.client}))
        deadline = time.monotonic() + self.connect_timeout_s
        while True:
            msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionLost(f"the server closed the WebSocket during hello ({ws.close_code})")
            try:
                data = json.loads(msg.data)
            except ValueError:
                raise ProtocolError("the server sent something that is not JSON") from None
            if not isinstance(data, dict) or data.get("re") != n:
                continue  # nothing else is expected before the welcome
            if data.get("type") == "result":
                return data
            code = str(data.get("code", ""))
            if code in _TOKEN_REFUSED:
                raise _TokenRefused(code)
            if code == "forbidden":
                raise NotAnAgent(self.agent, str(data.get("message", "")))
            if code == "unsupported-version":
                raise ProtocolError(f"the server speaks protocol versions {data.get('versions')}, "
                                    f"this softphone version {PROTOCOL_VERSION}: update the softphone")
            raise ProtocolError(f"hello refused: {code} {data.get('message', '')}")

    def _up_on(self, url: str, ws: aiohttp.ClientWebSocketResponse, welcome: dict[str, Any]) -> None:
        previous = self.server
        moved = previous is not None and previous != url
        if moved:
            self.failovers += 1
        resumed = previous is not None
        self.server = url
        self.welcome = welcome
        self.heartbeat_s = float(welcome.get("heartbeat_s") or 10.0)
        self._ws = ws
        self._close_code = None
        self._last_heard = time.monotonic()
        self._up.set()
        log.info("connected to %s (session %s, state %s%s)", url, welcome.get("session"),
                 (welcome.get("state") or {}).get("state"),
                 f", call {welcome['call'].get('id')}" if welcome.get("call") else "")
        # before any later frame is read: the owner sees the welcome first
        self._emit({"type": "connection", "state": "connected", "local": True, "server": url,
                    "welcome": welcome, "reconnect": resumed, "failover": moved})
        self._spawn(self._read(ws))
        self._spawn(self._heartbeat(ws, self.heartbeat_s))

    # -- running -----------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _emit(self, event: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - one bad listener must not kill the connection
                log.exception("event listener failed on %s", event.get("type"))
        for q in self._queues:
            q.put_nowait(event)

    def _fail_pending(self, why: str) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(why))
        self._pending.clear()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                self._last_heard = time.monotonic()
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    log.warning("ignoring a frame that is not JSON")
                    continue
                if not isinstance(data, dict):
                    continue
                if "re" in data:
                    fut = self._pending.pop(data["re"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(data)
                    continue
                if data.get("type") == "pong":
                    continue
                if data.get("type") == "error":
                    log.warning("server error: %s %s", data.get("code"), data.get("message"))
                self._emit(data)
        except (aiohttp.ClientError, ConnectionError) as exc:
            log.info("WebSocket read failed: %s", describe_error(exc))
        finally:
            self._socket_gone(ws)

    def _socket_gone(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        if ws is not self._ws:
            return
        self._ws = None
        self._up.clear()
        self._close_code = ws.close_code
        self._fail_pending("the connection to the server was lost")
        if not self._closing:
            log.warning("connection to %s lost (close code %s)", self.server, ws.close_code)
        self._lost.set()

    async def _heartbeat(self, ws: aiohttp.ClientWebSocketResponse, every: float) -> None:
        while not ws.closed:
            await asyncio.sleep(every)
            if ws.closed:
                return
            if time.monotonic() - self._last_heard > 3 * every:
                log.warning("no word from %s for %.0f s: reconnecting", self.server,
                            time.monotonic() - self._last_heard)
                self._spawn(ws.close())
                return
            try:
                await ws.send_str('{"type": "ping"}')
            except (ConnectionError, RuntimeError, aiohttp.ClientError):
                return

    async def _supervise(self) -> None:
        while not self._closing:
            await self._lost.wait()
            self._lost.clear()
            if self._closing:
                return
            code = self._close_code
            if code == CLOSE_REPLACED:
                self.stopped = SessionReplaced(f"another client logged in as {self.agent} and took over")
                self._emit({"type": "connection", "state": "replaced", "local": True, "server": self.server,
                            "message": self.stopped.message})
                return
            if code == CLOSE_VERSION:
                self.stopped = ProtocolError("the server no longer speaks this protocol version")
                self._emit({"type": "connection", "state": "failed", "local": True, "server": self.server,
                            "message": self.stopped.message})
                return
            if code == CLOSE_AUTH and self.server:
                self._tokens.pop(self.server, None)  # logged out or expired: log in again
            self._emit({"type": "connection", "state": "lost", "local": True, "server": self.server,
                        "code": code})
            if not await self._reconnect():
                return

    async def _reconnect(self) -> bool:
        attempt = 0
        while not self._closing:
            url = self.failover.current
            try:
                await self._open(url)
            except (BadCredentials, NotAnAgent) as exc:  # the agent must act: retrying cannot help
                self.stopped = self.last_error = exc
                log.error("giving up: %s", exc.message)
                self._emit({"type": "connection", "state": "failed", "local": True, "server": url,
                            "message": exc.message, "error": exc.as_dict()})
                return False
            except AccountLocked as exc:  # wait it out; it is not the server's fault
                self.last_error = exc
                wait = min(exc.retry_after_s or self.backoff.cap_s, 600.0)
                self._emit({"type": "connection", "state": "reconnecting", "local": True, "server": url,
                            "delay_s": wait, "message": exc.message})
                await self._sleep(wait)
                continue
            except SoftphoneError as exc:  # unreachable, certificate, a proxy's 502, lost during hello
                if self._note_failure(url, exc):
                    attempt = 0
            except Exception as exc:  # noqa: BLE001 - never let the supervisor die
                log.exception("reconnect attempt failed")
                self._note_failure(url, SoftphoneError(str(exc)))
            else:
                self.failover.succeeded()
                self.reconnects += 1
                return True
            delay = self.backoff.delay(attempt)
            attempt += 1
            self._emit({"type": "connection", "state": "reconnecting", "local": True,
                        "server": self.failover.current, "attempt": attempt, "delay_s": round(delay, 3),
                        "message": self.last_error.message if self.last_error else ""})
            await self._sleep(delay)
        return False

    def _note_failure(self, url: str, exc: SoftphoneError) -> bool:
        """Count a failed attempt; True when the next attempt goes to the other server."""
        self.last_error = exc
        log.warning("reconnect to %s failed: %s", url, exc.message)
        return self.failover.failed() != url

    async def _sleep(self, seconds: float) -> None:
        """Sleep, cut short by close()."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._lost.wait(), seconds)
        if not self._closing:
            self._lost.clear()
