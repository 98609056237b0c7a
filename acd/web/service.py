"""The agent web service inside the server: login, the agent hub, WebRTC media, HTTPS.

:class:`WebService` is what :class:`acd.server.Server` starts when the ACD runs. It is also
the hub's :class:`~acd.web.hub.HubHost`: it knows the server's clock, callers' feeds and
SIP legs (for DTMF), and re-arms the transport's single timer after agent input.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from dataclasses import asdict

from aiohttp import web

from acd.store.base import ReadinessRecord
from acd.tlscert import ensure_self_signed, server_context
from acd.web.app import SOCKETS, build_app, start_site
from acd.web.auth import Authenticator
from acd.web.hub import AgentHub

if TYPE_CHECKING:
    from acd.server import Server

__all__ = ["WebService"]

log = logging.getLogger(__name__)
CLOSE_HANDSHAKE_S = 2.0  # how long shutdown waits for the agents to answer its close frames


class WebService:
    def __init__(self, server: Server) -> None:
        self.server = server
        cfg = server.config.web
        self.auth = Authenticator(server.store, ttl_s=cfg.session_ttl_s, lockout_after=cfg.lockout_after,
                                  lockout_s=cfg.lockout_s)
        self.hub = AgentHub(server.cc, self.auth, self, heartbeat_s=cfg.heartbeat_s,
                            ice_servers=[s.as_dict() for s in cfg.ice_servers], codec=cfg.agent_codec,
                            media_factory=self._media)
        self.runner: web.AppRunner | None = None
        self.url = ""
        self._tasks: set[asyncio.Task[Any]] = set()

    def _media(self, agent: str) -> Any:
        from acd.web.agent_media import AgentMedia  # aiortc is imported only when agents connect

        return AgentMedia(ice_servers=self.hub.ice_servers, codec=self.hub.codec, label=agent)

    async def start(self) -> None:
        srv, cfg = self.server, self.server.config.web
        assert srv.cc is not None and srv.transport is not None
        srv.cc.listeners.append(self.hub.notify)
        srv.cc.agent_media = self.hub.agent_party
        srv.transport.timer_sources.append(self.hub)
        ssl_ctx = None
        if cfg.tls:  # [web] cert, else a SIP TLS listener's, else the self-signed pair
            sip_tls = [lst for lst in srv.config.sip.listen if lst.transport == "tls" and lst.cert and lst.key]
            if cfg.cert and cfg.key:
                cert, key = cfg.cert, cfg.key
            elif sip_tls:
                cert, key = sip_tls[0].cert, sip_tls[0].key  # type: ignore[assignment]
            else:
                cert, key = ensure_self_signed(srv.data_dir / "tls")
            ssl_ctx = server_context(cert, key)
        app = build_app(self.auth, self.hub, readiness=self.readiness)
        self.runner = await start_site(app, cfg.address, cfg.port, ssl_ctx)
        host = f"[{cfg.address}]" if ":" in cfg.address else cfg.address
        self.url = f"{'https' if ssl_ctx else 'http'}://{host}:{cfg.port}"

    async def close(self) -> None:
        if self.runner is not None:  # first stop listening: a client told 1001 below and
            for site in list(self.runner.sites):  # reconnecting at once is refused, not left
                await site.stop()  # accepted and unserved until shutdown ends
        await self.hub.close()  # 1001 to every agent
        if self.runner is not None:
            sockets = set(self.runner.app[SOCKETS])
            if sockets:  # RFC 6455 §7.1.1: the close handshakes end before the TCP connections
                await asyncio.wait(sockets, timeout=CLOSE_HANDSHAKE_S)
            await self.runner.cleanup()
            self.runner = None

    # -- HubHost -------------------------------------------------------------------------

    def now(self) -> float:
        transport = self.server.transport
        return transport.now if transport is not None else 0.0

    def feed_for(self, call_id: str) -> Any:
        return self.server.feeds.get(call_id)

    def send_dtmf(self, call_id: str, digits: str) -> bool:
        """RFC 4733 digits to the caller's leg (aiortc has no telephone-event)."""
        srv = self.server
        call = srv.by_id.get(call_id)
        media = srv.media.get(call) if call is not None else None
        if media is None:
            return False
        for digit in digits:
            media.send_dtmf(digit, self.now())
        log.info("call %s: agent DTMF %s sent", call_id, digits)
        return True

    def changed(self) -> None:
        if self.server.transport is not None:
            self.server.transport.flush()

    @property
    def clock(self) -> Any:
        return self.server.clock

    def save_readiness(self, record: ReadinessRecord) -> None:
        self.server.store.write_readiness(record)

    def readiness(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.server.store.latest_readiness()]

    def consult_number(self, call_id: str, agent: str, number: str, party_for: Any, on_state: Any) -> bool:
        call = self.server.by_id.get(call_id)
        if call is None or call.ended or self.server.config.dial_out_trunk() is None:
            return False
        self.server.transfers.consult_start(call, agent, number, party_for, on_state)
        return True

    def consult_number_complete(self, call_id: str) -> bool:
        call = self.server.by_id.get(call_id)
        return call is not None and self.server.transfers.consult_complete(call)

    def consult_number_cancel(self, call_id: str) -> None:
        call = self.server.by_id.get(call_id)
        if call is not None:
            self.server.transfers.consult_cancel(call)

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
