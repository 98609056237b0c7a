"""Trunk clients at run time: outbound REGISTER to providers and OPTIONS keepalives, resolved
once at start, driven by the SIP transport's single timer; their state for ``acd status``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from acd.config_schema import Config
from acd.sip.events import Peer
from acd.sip.transport import SipTransport
from acd.sip.trunk_client import Keepalive, Registration
from acd.sip.ua import UserAgent
from acd.sip.uri import SipURI, format_host, parse_uri

__all__ = ["TrunkClients", "resolve"]

log = logging.getLogger(__name__)


async def resolve(uri: str) -> tuple[Peer, SipURI]:
    """The first address of a SIP URI's host (DNS is the adapter's job, not the core's)."""
    parsed = parse_uri(uri)
    infos = await asyncio.get_running_loop().getaddrinfo(parsed.host, parsed.effective_port)
    return Peer(parsed.transport, infos[0][4][0], parsed.effective_port), parsed


class TrunkClients:
    def __init__(self, config: Config, ua: UserAgent, transport: SipTransport,
                 contact: Callable[[str], str]) -> None:
        self.config = config
        self.ua = ua
        self.transport = transport
        self.contact = contact
        self.registrations: dict[str, Registration] = {}
        self.keepalives: dict[str, Keepalive] = {}
        self.contact_users: set[str] = set()  # Request-URI users that mean "look at To"

    async def start(self) -> None:
        for trunk in self.config.trunks:
            try:
                if trunk.register is not None:
                    await self._register(trunk)
                if trunk.options_interval and trunk.proxy:
                    dest, _ = await resolve(trunk.proxy)
                    ka = Keepalive(self.ua, dest, interval=trunk.options_interval, name=trunk.name,
                                   on_change=lambda state, detail, t=trunk.name: self._changed(t, "keepalive", state, detail))
                    self.keepalives[trunk.name] = ka
                    self.transport.timer_sources.append(ka)
                    ka.start(self.transport.now)
            except OSError as exc:
                log.error("trunk %s: cannot resolve its proxy/registrar: %s", trunk.name, exc)
        self.transport.flush()

    async def _register(self, trunk: Any) -> None:
        reg = trunk.register
        dest, parsed = await resolve(reg.registrar)
        user = reg.username or trunk.from_user
        contact = self.contact(dest.transport).replace("homeline@", f"{user}@", 1)
        self.contact_users.add(user)
        client = Registration(
            self.ua, dest, f"sip:{user}@{format_host(parsed.host)}", contact,
            registrar_uri=reg.registrar, username=reg.username or None, password=reg.password or None,
            expires=reg.expires, retry_min=reg.retry_min, retry_max=reg.retry_max, name=trunk.name,
            on_change=lambda state, detail, t=trunk.name: self._changed(t, "registration", state, detail))
        self.registrations[trunk.name] = client
        self.transport.timer_sources.append(client)
        client.start(self.transport.now)

    def stop(self) -> None:
        """Stop keepalives and un-REGISTER (Expires: 0)."""
        now = self.transport.now
        for ka in self.keepalives.values():
            ka.stop(now)
        for reg in self.registrations.values():
            reg.unregister(now)
        self.transport.flush()

    @staticmethod
    def _changed(trunk: str, what: str, state: str, detail: str) -> None:
        level = logging.WARNING if state in ("failed", "down") else logging.INFO
        log.log(level, "trunk %s %s: %s", trunk, what, detail or state)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for t in self.config.trunks:
            entry: dict[str, Any] = {"inbound": "digest" if t.authenticates else "by source address"}
            reg = self.registrations.get(t.name)
            if reg is not None:
                entry["registration"] = {"state": reg.state, "last_status": reg.last_status,
                                         "last_error": reg.last_error, "expires_at": reg.expires_at}
            ka = self.keepalives.get(t.name)
            if ka is not None:
                entry["keepalive"] = ka.status()
            out[t.name] = entry
        return out
