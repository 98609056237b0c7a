"""The control socket (``data_dir/acd.sock``, one JSON command per line) and the status it
reports; ``acd status``, ``acd originate`` and the agent API until WebRTC use it."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acd.errors import AcdError

if TYPE_CHECKING:
    from acd.server import Server

__all__ = ["CONTROL_SOCKET", "ControlSocket", "control", "status"]

log = logging.getLogger(__name__)

CONTROL_SOCKET = "acd.sock"


def status(srv: Server) -> dict[str, Any]:
    return {
        "uptime_s": round(time.time() - srv.started, 1),
        "accepting": srv.ua.accepting,
        "calls_active": len(srv.media),
        "counters": dict(srv.counters),
        "sip": dict(srv.ua.stats),
        "transport": dict(srv.transport.stats) if srv.transport else {},
        "admission": dict(srv.admission.stats),
        "media": dict(sum((m.counters() for m in srv.media.values() if m is not None),
                          Counter(srv.media_counters)) + Counter(srv.clock.stats)),
        "trunks": srv.trunk_clients.status() if srv.trunk_clients else {},
        "acd": _acd_status(srv),
    }


def _acd_status(srv: Server) -> dict[str, Any]:
    if srv.cc is None or srv.transport is None:
        return {}
    now = srv.transport.now
    engine = srv.cc.engine
    return {
        "queues": {name: asdict(engine.queue_view(name, now)) for name in srv.cc.config.queues},
        "agents": {name: {"state": view.state, "reason": view.reason, "call": view.call}
                   for name in srv.cc.config.agents for view in (engine.agent_view(name),)},
        "actions": dict(srv.cc.stats),
        "web": {"url": srv.web.url, "agents_connected": sorted(srv.web.hub.links),
                **srv.web.hub.stats,
                "agent_media": dict(sum((Counter(m.counters) for m in srv.web.hub.media.values()), Counter()))}
        if srv.web is not None else {},
    }


class ControlSocket:
    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.path = srv.data_dir / CONTROL_SOCKET
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._on_client, path=str(self.path))

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self.path.unlink(missing_ok=True)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=5)
            reply = await self.handle(json.loads(line or b"{}"))
        except (ValueError, KeyError, asyncio.TimeoutError, AttributeError, AcdError, OSError) as exc:
            reply = {"error": str(exc) or type(exc).__name__}
        writer.write(json.dumps(reply).encode() + b"\n")
        await writer.drain()
        writer.close()

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        srv = self.srv
        cmd = request.get("cmd")
        if cmd == "status":
            return status(srv)
        if cmd == "agent" and srv.cc is not None and srv.transport is not None:
            reply = srv.cc.agent_command(str(request["agent"]), str(request["action"]), srv.transport.now,
                                         call=request.get("call"), reason=request.get("reason"))
            srv.transport.flush()
            return reply
        if cmd == "originate":
            call = await srv.originate(str(request["trunk"]), str(request["to"]), duration=request.get("duration"),
                                       ring_timeout=float(request.get("ring_timeout") or 60),
                                       tone_hz=request.get("tone"))
            return {"call_id": call.call_id}
        return {"error": f"unknown command {cmd!r}"}


async def control(data_dir: Path, request: dict[str, Any]) -> dict[str, Any]:
    """Send one command to a running server over its control socket."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(data_dir / CONTROL_SOCKET))
    except OSError as exc:
        raise AcdError(f"server not running (no control socket in {data_dir}): {exc}") from exc
    writer.write(json.dumps(request).encode() + b"\n")
    await writer.drain()
    data = await reader.readline()
    writer.close()
    return json.loads(data)
