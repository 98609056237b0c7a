"""The validated configuration: an immutable tree of frozen dataclasses.

:func:`acd.config.load_config` builds it from a TOML file; nothing else should.
Lists are tuples, tables of names are tuples of named records, and the
sections reserved for the ACD engine are read-only mappings, so no part of the
server can change the configuration another part is reading.  The defaults of
the fields are the documented defaults (docs/configuration.md).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = [
    "Config",
    "ServerConfig",
    "SipConfig",
    "SipTimers",
    "SipListener",
    "RtpConfig",
    "WebConfig",
    "Trunk",
    "TrunkRegister",
    "DialRule",
]

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOG_LEVELS = ("debug", "info", "warning", "error")
TRANSPORTS = ("udp", "tcp", "tls")
UNKNOWN_SOURCE_ACTIONS = ("reject", "drop")
CODECS = ("PCMU", "PCMA", "G722", "opus")
PTIMES = (10, 20, 30, 40, 60)
ACTIONS = ("echo", "queue", "ivr", "reject")
NAME_PATTERN = re.compile(r"[a-z0-9_-]+")
DEFAULT_FROM_USER = "homeline"


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


def ip_of(address: str | IPAddress) -> IPAddress:
    """An address as an IP object; IPv4-mapped IPv6 (``::ffff:a.b.c.d``) becomes IPv4."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True)
class ServerConfig:
    """``[server]``."""

    data_dir: Path = Path("data")
    log_level: str = "info"
    drain_seconds: int = 30
    user_agent: str = "Homeline"
    demo: bool = False  # a demo configuration: public passwords (warned about at start)

    @property
    def tls_dir(self) -> Path:
        """Where self-signed certificates are generated (``data_dir/tls``)."""
        return self.data_dir / "tls"


@dataclass(frozen=True)
class SipTimers:
    """``[sip.timers]``: RFC 3261 §17 timers in milliseconds."""

    t1_ms: int = 500
    t2_ms: int = 4000
    t4_ms: int = 5000


@dataclass(frozen=True)
class SipListener:
    """One ``[[sip.listen]]``.  ``cert``/``key`` are None unless configured (TLS only)."""

    transport: str = "udp"
    address: str = "127.0.0.1"
    port: int = 5060
    cert: Path | None = None
    key: Path | None = None

    @property
    def self_signed(self) -> bool:
        """A TLS listener without configured files uses a generated pair."""
        return self.transport == "tls" and self.cert is None


@dataclass(frozen=True)
class SipConfig:
    """``[sip]``."""

    external_address: str = ""
    unknown_source: str = "reject"
    max_message_bytes: int = 65535
    auth_failures: int = 10
    auth_block_seconds: int = 300
    timers: SipTimers = field(default_factory=SipTimers)
    listen: tuple[SipListener, ...] = (SipListener(),)


@dataclass(frozen=True)
class RtpConfig:
    """``[rtp]``."""

    address: str = "127.0.0.1"
    port_min: int = 20000
    port_max: int = 20999
    codecs: tuple[str, ...] = ("PCMU", "PCMA", "G722")
    ptime_ms: int = 20
    nat: bool = False
    jitter_min_ms: int = 20
    jitter_max_ms: int = 200


@dataclass(frozen=True)
class IceServer:
    """``[[web.ice_servers]]``: a STUN or TURN server given to agents' peer connections."""

    urls: tuple[str, ...]
    username: str = ""
    credential: str = field(default="", repr=False)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"urls": list(self.urls)}
        if self.username:
            out.update(username=self.username, credential=self.credential)
        return out


@dataclass(frozen=True)
class WebConfig:
    """``[web]``.  ``cert``/``key`` are None unless configured."""

    address: str = "127.0.0.1"
    port: int = 8443
    tls: bool = True
    cert: Path | None = None
    key: Path | None = None
    session_ttl_s: float = 43200.0
    lockout_after: int = 5
    lockout_s: float = 300.0
    heartbeat_s: float = 10.0
    ice_servers: tuple[IceServer, ...] = ()
    agent_codec: str = "opus"

    @property
    def self_signed(self) -> bool:
        return self.tls and self.cert is None


@dataclass(frozen=True)
class TrunkRegister:
    """``[trunks.NAME.register]``.  ``registrar`` is already defaulted to the trunk's proxy."""

    registrar: str
    username: str = ""
    password: str = field(default="", repr=False)
    expires: int = 3600
    retry_min: int = 5
    retry_max: int = 300


@dataclass(frozen=True)
class Trunk:
    """``[trunks.NAME]``.  ``realm`` and ``from_user`` are already defaulted."""

    name: str
    allow: tuple[IPNetwork, ...] = ()
    username: str = ""
    password: str = field(default="", repr=False)
    realm: str = ""
    proxy: str = ""
    from_user: str = DEFAULT_FROM_USER
    options_interval: int = 0
    register: TrunkRegister | None = None

    @property
    def authenticates(self) -> bool:
        """True if inbound requests must pass digest authentication."""
        return bool(self.username)

    def allows(self, address: str | IPAddress) -> bool:
        """Whether ``address`` is inside ``allow`` (an authenticating trunk with no
        ``allow`` accepts any source)."""
        if self.authenticates and not self.allow:
            return True
        ip = ip_of(address)
        return any(ip in net for net in self.allow)


@dataclass(frozen=True)
class DialRule:
    """One ``[[dialplan]]`` rule.  ``pattern`` is the compiled ``re:`` regex, if any."""

    match: str
    action: str
    trunk: str = ""
    target: str = ""
    status: int = 404
    reason: str = ""
    pattern: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def matches(self, user: str, trunk: str | None = None) -> bool:
        """Whether a call to Request-URI user ``user`` arriving on ``trunk`` matches."""
        if self.trunk and self.trunk != trunk:
            return False
        if self.match == "*":
            return True
        if self.pattern is not None:
            return self.pattern.fullmatch(user) is not None
        return self.match == user


@dataclass(frozen=True)
class Config:
    """The whole configuration.  Paths inside are absolute."""

    file: Path
    server: ServerConfig = field(default_factory=ServerConfig)
    sip: SipConfig = field(default_factory=SipConfig)
    rtp: RtpConfig = field(default_factory=RtpConfig)
    web: WebConfig = field(default_factory=WebConfig)
    trunks: tuple[Trunk, ...] = ()
    dialplan: tuple[DialRule, ...] = ()
    # The ACD: raw read-only TOML tables, and the engine's validated configuration.
    queues: Mapping[str, Any] = field(default_factory=_empty, hash=False)
    agents: Mapping[str, Any] = field(default_factory=_empty, hash=False)
    acd: Mapping[str, Any] = field(default_factory=_empty, hash=False)
    engine: Any = field(default=None, hash=False, compare=False)  # acd.engine.config.EngineConfig
    ivr: Mapping[str, Any] = field(default_factory=_empty, hash=False)
    hours: Mapping[str, Any] = field(default_factory=_empty, hash=False)
    menus: Any = field(default=None, hash=False, compare=False)  # acd.ivr.config.IvrConfig

    @property
    def base_dir(self) -> Path:
        """The config file's directory: relative paths are relative to it."""
        return self.file.parent

    def resolve_path(self, value: str | Path) -> Path:
        """Resolve a path written in the config (e.g. an IVR prompt) against :attr:`base_dir`."""
        return resolve_against(self.base_dir, value)

    def trunk(self, name: str) -> Trunk | None:
        for trunk in self.trunks:
            if trunk.name == name:
                return trunk
        return None

    def dial_out_trunk(self, preferred: str | None = None) -> str | None:
        """The trunk to dial out through: ``preferred`` when it has a proxy, else the first
        trunk that has one (None: no trunk can dial out)."""
        able = [t.name for t in self.trunks if t.proxy]
        return preferred if preferred in able else (able[0] if able else None)

    def open_trunk_for(self, address: str | IPAddress) -> Trunk | None:
        """Step 1 of trunk matching: the trunk *without* credentials whose ``allow``
        network contains the source; the most specific (longest prefix) network wins."""
        ip = ip_of(address)
        best: tuple[int, Trunk] | None = None
        for trunk in self.trunks:
            if trunk.authenticates:
                continue
            for net in trunk.allow:
                if ip in net and (best is None or net.prefixlen > best[0]):
                    best = (net.prefixlen, trunk)
        return best[1] if best else None

    def challenge_trunks_for(self, address: str | IPAddress) -> tuple[Trunk, ...]:
        """Step 2: the trunks with credentials that accept this source; a request from
        it without credentials is challenged (401) with their realms.  Empty (and no
        open trunk) means the source is unknown (``sip.unknown_source``)."""
        ip = ip_of(address)
        return tuple(t for t in self.trunks if t.authenticates and t.allows(ip))

    def trunk_for_username(self, username: str, address: str | IPAddress) -> Trunk | None:
        """Step 3: the trunk whose digest username is ``username``, if it accepts the source."""
        for trunk in self.trunks:
            if trunk.authenticates and trunk.username == username:
                return trunk if trunk.allows(address) else None
        return None

    def route(self, user: str, trunk: str | None = None) -> DialRule | None:
        """The first dial-plan rule matching ``user`` on ``trunk`` (None: answer 404)."""
        for rule in self.dialplan:
            if rule.matches(user, trunk):
                return rule
        return None


def resolve_against(base: Path, value: str | Path) -> Path:
    """``value`` if absolute, else ``base / value``; ``~`` expanded, ``..`` folded lexically."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base / path
    return Path(os.path.normpath(path))
