"""The agents' HTTPS service (aiohttp): login API, supervisor API, the agent WebSocket and the
browser agent page (docs/agent-protocol.md §2-3). Thin: authentication is
:class:`~acd.web.auth.Authenticator`, signalling is :class:`~acd.web.hub.AgentHub`."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from acd.web import protocol as P
from acd.web.auth import Authenticator, Session
from acd.web.errors import AuthError
from acd.web.hub import AgentHub, AgentLink

__all__ = ["build_app", "start_site", "STATIC_DIR", "SOCKETS"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY = 16 * 1024
CLOSE_WAIT_S = 5.0  # how long a WebSocket we close waits for the client's close frame
# each agent WebSocket's handler task; it ends once the close handshake is done
SOCKETS = web.AppKey("sockets", set)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; connect-src 'self' wss: ws:; media-src 'self' blob:; "
                               "img-src 'self' data:; style-src 'self'; script-src 'self'",
}


def _json_error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **extra}}, status=status)


@web.middleware
async def _headers(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if request.path.startswith("/api/"):
            response = _json_error(exc.status, "not-found" if exc.status == 404 else "bad-request", exc.reason)
        else:
            raise
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
        if request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
    return response


class _Api:
    def __init__(self, auth: Authenticator, hub: AgentHub, readiness: Callable[[], list[dict[str, Any]]]) -> None:
        self.auth = auth
        self.hub = hub
        self.readiness = readiness
        self.sockets: set[asyncio.Task[Any]] = set()  # the WebSocket handlers running

    def _session(self, request: web.Request, role: str = "agent") -> Session:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        return self.auth.check(token, role)

    async def login(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _json_error(400, "bad-request", "the body must be JSON")
        if not isinstance(body, dict) or not isinstance(body.get("agent"), str) \
                or not isinstance(body.get("password"), str):
            return _json_error(400, "bad-request", 'send {"agent": "...", "password": "..."}')
        try:  # scrypt takes tens of ms: off the event loop
            token, session = await self.auth.login_async(body["agent"][:64], body["password"][:1024])
        except AuthError as exc:
            extra = {"retry_after_s": exc.retry_after_s} if exc.retry_after_s is not None else {}
            return _json_error(exc.status, exc.code, exc.message, **extra)
        return web.json_response({"token": token, "expires_at": session.expires_at, "agent": session.agent,
                                  "name": session.name, "roles": list(session.roles)})

    async def logout(self, request: web.Request) -> web.Response:
        session = self._session(request)
        header = request.headers["Authorization"]
        self.auth.logout(header[7:].strip())
        link = self.hub.links.get(session.agent)
        if link is not None and link.session is not None and link.session.key == session.key:
            self.hub._close(link, P.CLOSE["not-authenticated"], "logged out")
            self.hub.closed(link)
        return web.json_response({"ok": True})

    async def me(self, request: web.Request) -> web.Response:
        s = self._session(request)
        return web.json_response({"agent": s.agent, "name": s.name, "roles": list(s.roles),
                                  "expires_at": s.expires_at})

    async def agents(self, request: web.Request) -> web.Response:
        self._session(request, "supervisor")
        engine = self.hub.cc.engine
        out = []
        for agent in sorted(self.hub.cc.config.agents):
            v = engine.agent_view(agent)
            out.append({"agent": agent, "name": v.name, "state": v.state, "reason": v.reason,
                        "since": engine.epoch + v.since, "call": v.call or None, "connected": agent in self.hub.links})
        return web.json_response({"agents": out})

    async def readiness_results(self, request: web.Request) -> web.Response:
        self._session(request, "supervisor")
        return web.json_response({"results": self.readiness()})

    async def ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=4 * P.MAX_FRAME, heartbeat=None, timeout=CLOSE_WAIT_S)
        await ws.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self.sockets.add(task)
        out: asyncio.Queue[str | None] = asyncio.Queue()
        closing: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

        def close(code: int, reason: str) -> None:
            if not closing.done():
                closing.set_result((code, reason))

        link = AgentLink(send=out.put_nowait, close=close, peer=str(request.remote))
        writer = asyncio.create_task(self._writer(ws, out))
        self.hub.opened(link)
        try:
            while not closing.done():
                receive = asyncio.ensure_future(ws.receive())
                await asyncio.wait((receive, closing), return_when=asyncio.FIRST_COMPLETED)
                if not receive.done():  # we close: stop reading (safe, as a receive timeout is)
                    receive.cancel()
                    await asyncio.gather(receive, return_exceptions=True)
                    break
                msg = receive.result()
                if msg.type == WSMsgType.TEXT:
                    await self.hub.receive(link, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self.hub.receive(link, b"\xff")  # answered as bad-json
                else:
                    break  # the client closed, or the connection failed
        finally:
            self.hub.closed(link)
            out.put_nowait(None)  # what is queued goes out first
            await writer
            code, reason = closing.result() if closing.done() else (1000, "")
            # RFC 6455 §7.1.1-2: our close frame, then the client's, then the TCP close (a
            # close from another task while one reads would drop the connection at once)
            try:
                await ws.close(code=code, message=reason.encode()[:120])
            finally:
                self.sockets.discard(task)
        return ws

    @staticmethod
    async def _writer(ws: web.WebSocketResponse, out: asyncio.Queue[str | None]) -> None:
        while (text := await out.get()) is not None:
            try:
                await ws.send_str(text)
            except (ConnectionError, RuntimeError) as exc:
                log.debug("websocket write failed: %s", exc)
                return


def _auth_errors(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except AuthError as exc:
            return _json_error(exc.status, exc.code, exc.message)
    return wrapped


def build_app(auth: Authenticator, hub: AgentHub, *, readiness: Callable[[], list[dict[str, Any]]] = list,
              static_dir: Path = STATIC_DIR) -> web.Application:
    api = _Api(auth, hub, readiness)
    app = web.Application(middlewares=[_headers], client_max_size=MAX_BODY)
    app[SOCKETS] = api.sockets

    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(static_dir / "agent.html")

    async def root(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/agent")

    app.router.add_get("/", root)
    app.router.add_get("/agent", page)
    if static_dir.is_dir():
        app.router.add_static("/static/", static_dir, show_index=False, follow_symlinks=False)
    app.router.add_post("/api/v1/login", api.login)
    app.router.add_post("/api/v1/logout", _auth_errors(api.logout))
    app.router.add_get("/api/v1/me", _auth_errors(api.me))
    app.router.add_get("/api/v1/agents", _auth_errors(api.agents))
    app.router.add_get("/api/v1/readiness", _auth_errors(api.readiness_results))
    app.router.add_get("/api/v1/ws", api.ws)
    return app


async def start_site(app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None
                     ) -> web.AppRunner:
    # shutdown waits at most 5 s for requests in flight (aiohttp's default: 60 s)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True)
    await site.start()
    log.info("agent web service on %s://%s:%d/agent", "https" if ssl_context else "http",
             f"[{host}]" if ":" in host else host, port)
    return runner
