"""Load and validate the server's TOML configuration (docs/configuration.md).

:func:`load_config` reads a file; :func:`validate_config` checks already parsed
TOML.  Both return the immutable :class:`~acd.config_schema.Config` tree or
raise :class:`~acd.errors.ConfigError` naming the file, the dotted key path
(``trunks.carrier.allow[1]``) and the reason.  Unknown keys are errors, with a
suggestion, so a typo never passes silently.  Relative paths are resolved
against the config file's directory.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from acd.config_schema import (
    ACTIONS,
    CODECS,
    DEFAULT_FROM_USER,
    LOG_LEVELS,
    NAME_PATTERN,
    PTIMES,
    TRANSPORTS,
    UNKNOWN_SOURCE_ACTIONS,
    Config,
    DialRule,
    IceServer,
    IPNetwork,
    RtpConfig,
    ServerConfig,
    SipConfig,
    SipListener,
    SipTimers,
    Trunk,
    TrunkRegister,
    WebConfig,
    resolve_against,
)
from acd.engine.config import engine_config_from_toml
from acd.engine.toml_reader import Table
from acd.engine.toml_reader import describe as _describe
from acd.engine.toml_reader import join_key as _join
from acd.engine.toml_reader import not_one_of as _not_one_of
from acd.engine.toml_reader import suggest as _suggest
from acd.ivr.config import ivr_config_from_toml
from acd.errors import ConfigError
from acd.sip.errors import SipParseError
from acd.sip.uri import parse_uri

__all__ = ["Config", "load_config", "validate_config", "FILE_KEY", "SYNTAX_KEY"]

log = logging.getLogger(__name__)

FILE_KEY = "(file)"  # key of errors about the file itself (missing, unreadable)
SYNTAX_KEY = "(syntax)"  # key of TOML syntax errors; the reason starts with "line L, column C: "

SECTIONS = ("server", "sip", "rtp", "web", "trunks", "dialplan", "acd", "queues", "agents", "ivr", "hours")
SERVER_KEYS = ("data_dir", "log_level", "drain_seconds", "user_agent", "demo")
SIP_KEYS = ("external_address", "unknown_source", "max_message_bytes", "auth_failures", "auth_block_seconds",
            "timers", "listen")
TIMER_KEYS = ("t1_ms", "t2_ms", "t4_ms")
LISTEN_KEYS = ("transport", "address", "port", "cert", "key")
RTP_KEYS = ("address", "port_min", "port_max", "codecs", "ptime_ms", "nat", "jitter_min_ms", "jitter_max_ms")
WEB_KEYS = ("address", "port", "tls", "cert", "key", "session_ttl_s", "lockout_after", "lockout_s",
            "heartbeat_s", "ice_servers", "agent_codec")
ICE_KEYS = ("urls", "username", "credential")
ICE_URL = re.compile(r"(stuns?|turns?):[^\s]+")
AGENT_CODECS = ("opus", "pcmu", "pcma")
TRUNK_KEYS = ("allow", "username", "password", "realm", "proxy", "from_user",
              "options_interval", "register")
REGISTER_KEYS = ("registrar", "username", "password", "expires", "retry_min", "retry_max")
DIALPLAN_KEYS = ("match", "trunk", "action", "target", "status", "reason")

_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
_SIP_USER = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+")
_TOML_POS = re.compile(r"^(.*) \(at line (\d+), column (\d+)\)$", re.S)
_NAME_RULE = "[a-z0-9_-]+"


def load_config(path: str | Path) -> Config:
    """Read, parse and validate the TOML file at ``path``."""
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(file, FILE_KEY, "no such file") from None
    except IsADirectoryError:
        raise ConfigError(file, FILE_KEY, "is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(file, FILE_KEY, f"cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(file, SYNTAX_KEY, f"not UTF-8 text (byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, SYNTAX_KEY, _toml_reason(str(exc))) from None
    return validate_config(data, file)


def validate_config(data: Mapping[str, Any], file: str) -> Config:
    """Validate parsed TOML ``data`` read from ``file`` (whose directory relative paths
    are resolved against) and build the immutable :class:`Config`."""
    if not isinstance(data, Mapping):
        raise ConfigError(file, FILE_KEY, f"expected a table, got {_describe(data)}")
    config_file = resolve_against(Path.cwd(), file)
    ctx = _Context(file, config_file.parent)
    top = _Table(ctx, data, "", SECTIONS)
    server = _server(top.table("server", SERVER_KEYS))
    sip = _sip(top.table("sip", SIP_KEYS))
    rtp = _rtp(top.table("rtp", RTP_KEYS), sip)
    web = _web(top.table("web", WEB_KEYS), sip)
    trunks = _trunks(top.table("trunks", known=None))
    dialplan = _dialplan(top, trunks)
    queues = _freeze(top.table("queues", known=None).data)
    agents = _freeze(top.table("agents", known=None).data)
    acd = _freeze(top.table("acd", known=None).data)
    engine = engine_config_from_toml(queues, agents, acd, file=file)
    ivr_raw = _freeze(top.table("ivr", known=None).data)
    hours_raw = _freeze(top.table("hours", known=None).data)
    menus = ivr_config_from_toml(ivr_raw, hours_raw, file=file, known_queues=set(engine.queues),
                                 known_trunks={t.name for t in trunks},
                                 dialable_trunks={t.name for t in trunks if t.proxy})
    for name, queue in engine.queues.items():
        if queue.hours and queue.hours not in menus.schedules:
            hint = _suggest(queue.hours, list(menus.schedules))
            raise ConfigError(file, f"queues.{name}.hours", f"unknown schedule {queue.hours!r}" + (
                f"; did you mean {hint!r}?" if hint else f" (defined: {', '.join(menus.schedules) or 'none'})"))
    _warn_unserved_skills(file, engine, menus)
    for i, rule in enumerate(dialplan):
        known = engine.queues if rule.action == "queue" else menus.menus if rule.action == "ivr" else None
        if known is not None and rule.target not in known:
            hint = _suggest(rule.target, list(known))
            raise ConfigError(file, f"dialplan[{i}].target", f"unknown {rule.action} {rule.target!r}" + (
                f"; did you mean {hint!r}?" if hint else f" (defined: {', '.join(known) or 'none'})"))
    config = Config(
        file=config_file,
        server=server,
        sip=sip,
        rtp=rtp,
        web=web,
        trunks=trunks,
        dialplan=dialplan,
        queues=queues,
        agents=agents,
        acd=acd,
        engine=engine,
        ivr=ivr_raw,
        hours=hours_raw,
        menus=menus,
    )
    log.debug("config %s: %d listeners, %d trunks, %d dial-plan rules",
              file, len(sip.listen), len(trunks), len(dialplan))
    return config


# --------------------------------------------------------------------------- readers


@dataclass(frozen=True)
class _Context:
    file: str
    base: Path


class _Table(Table):
    """The engine's TOML table reader plus what the server's sections need: addresses, ports,
    paths (resolved against the config file's directory) and ``[[array]]`` tables."""

    def __init__(self, ctx: _Context, data: Mapping[str, Any], path: str,
                 known: Iterable[str] | None) -> None:
        self.ctx = ctx
        super().__init__(ctx.file, data, path, known)

    def choice(self, name: str, default: str, options: Sequence[str], *,  # type: ignore[override]
               required: bool = False) -> str:
        value = self.string(name, default, required=required)
        if value not in options:
            self.fail(name, _not_one_of(value, options))
        return value

    def strings(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:  # type: ignore[override]
        """An array of strings (duplicates are the caller's to judge)."""
        value: list[Any] = self.get(name, list(default), list, "an array of strings")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(self.ctx.file, _join(self.key(name), i),
                                  f"expected a string, got {_describe(item)}")
        return tuple(value)

    def address(self, name: str, default: str) -> str:
        value = self.string(name, default)
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            self.fail(name, f"not an IPv4 or IPv6 address: {value!r}")

    def port(self, name: str, default: int, lo: int = 1) -> int:
        return self.integer(name, default, lo, 65535)

    def path_or_none(self, name: str) -> Path | None:
        value = self.string(name)
        return resolve_against(self.ctx.base, value) if value else None

    def table(self, name: str, known: Iterable[str] | None, *, required: bool = False) -> _Table:
        """Sub-table ``name`` (empty if absent); ``known=None`` accepts any key."""
        if required and name not in self.data:
            self.fail(name, "required table is missing")
        value = self.get(name, {}, dict, "a table")
        return _Table(self.ctx, value, self.key(name), known)

    def tables(self, name: str, known: Iterable[str]) -> list[_Table]:  # type: ignore[override]
        """Array of tables ``[[name]]``."""
        value: list[Any] = self.get(name, [], list, f"an array of tables ([[{self.key(name)}]])")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise ConfigError(self.ctx.file, _join(self.key(name), i),
                                  f"expected a table, got {_describe(item)}")
            out.append(_Table(self.ctx, item, _join(self.key(name), i), known))
        return out


def _toml_reason(message: str) -> str:
    """tomllib's "Msg (at line L, column C)" → "line L, column C: msg"."""
    m = _TOML_POS.match(message)
    if m:
        return f"line {m.group(2)}, column {m.group(3)}: {m.group(1)}"
    if message.endswith(" (at end of document)"):
        return f"end of document: {message[: -len(' (at end of document)')]}"
    return message


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


# --------------------------------------------------------------------------- sections


def _server(t: _Table) -> ServerConfig:
    data_dir = t.string("data_dir", "data")
    if not data_dir:
        t.fail("data_dir", "must not be empty")
    user_agent = t.string("user_agent", ServerConfig.user_agent)
    if not user_agent.strip():
        t.fail("user_agent", "must not be empty")
    return ServerConfig(
        data_dir=resolve_against(t.ctx.base, data_dir),
        log_level=t.choice("log_level", ServerConfig.log_level, LOG_LEVELS),
        drain_seconds=t.integer("drain_seconds", ServerConfig.drain_seconds, 0, 3600),
        user_agent=user_agent,
        demo=t.boolean("demo", False),
    )


def _sip(t: _Table) -> SipConfig:
    external = t.string("external_address")
    if external and not _is_host(external):
        t.fail("external_address", f"not an IP address or host name: {external!r}")
    timers_t = t.table("timers", TIMER_KEYS)
    t1 = timers_t.integer("t1_ms", SipTimers.t1_ms, 10, 10000)
    timers = SipTimers(
        t1_ms=t1,
        t2_ms=timers_t.integer("t2_ms", max(SipTimers.t2_ms, t1), t1, 60000),
        t4_ms=timers_t.integer("t4_ms", SipTimers.t4_ms, 0, 60000),
    )
    if t.has("listen"):
        listen_tables = t.tables("listen", LISTEN_KEYS)
        if not listen_tables:
            t.fail("listen", "at least one listener is required")
        listeners = tuple(_listener(lt) for lt in listen_tables)
        _check_listener_ports(t, listeners)
    else:
        listeners = SipConfig.listen
    if not external:
        for i, lis in enumerate(listeners):
            if ipaddress.ip_address(lis.address).is_unspecified:
                log.warning("%s: sip.listen[%d] binds %s and sip.external_address is empty; "
                            "set it to the address peers should send to",
                            t.ctx.file, i, lis.address)
    return SipConfig(
        external_address=external,
        unknown_source=t.choice("unknown_source", SipConfig.unknown_source,
                                UNKNOWN_SOURCE_ACTIONS),
        max_message_bytes=t.integer("max_message_bytes", SipConfig.max_message_bytes,
                                    4096, 1048576),
        auth_failures=t.integer("auth_failures", SipConfig.auth_failures, 0, 1000),
        auth_block_seconds=t.integer("auth_block_seconds", SipConfig.auth_block_seconds, 1, 86400),
        timers=timers,
        listen=listeners,
    )


def _listener(t: _Table) -> SipListener:
    transport = t.choice("transport", "udp", TRANSPORTS)
    tls = transport == "tls"
    cert, key = _cert_pair(t, tls, "only for transport = 'tls'")
    return SipListener(
        transport=transport,
        address=t.address("address", "127.0.0.1"),
        port=t.port("port", 5061 if tls else 5060),
        cert=cert,
        key=key,
    )


def _cert_pair(t: _Table, allowed: bool, not_allowed: str) -> tuple[Path | None, Path | None]:
    cert, key = t.path_or_none("cert"), t.path_or_none("key")
    if not allowed:
        for name, value in (("cert", cert), ("key", key)):
            if value is not None:
                t.fail(name, not_allowed)
        return None, None
    if (cert is None) != (key is None):
        have, missing = ("cert", "key") if key is None else ("key", "cert")
        t.fail(missing, f"{have} is set but {missing} is empty; set both or neither "
                        "(neither: a self-signed pair is generated under data_dir/tls)")
    for name, value in (("cert", cert), ("key", key)):
        if value is not None and not value.is_file():
            t.fail(name, f"no such file: {str(value)!r}")
    return cert, key


def _family(transport: str) -> str:
    """UDP, or the stream family shared by TCP and TLS (and HTTP)."""
    return "udp" if transport == "udp" else "tcp"


def _overlap(a: str, b: str) -> bool:
    """Whether sockets bound to ``a`` and ``b`` (same port) would clash.  ``0.0.0.0``
    covers IPv4 and ``::`` covers IPv6 (listeners on ``::`` are IPv6-only)."""
    ia, ib = ipaddress.ip_address(a), ipaddress.ip_address(b)
    if ia.version != ib.version:
        return False
    return ia == ib or ia.is_unspecified or ib.is_unspecified


def _warn_unserved_skills(file: str, engine: Any, menus: Any) -> None:
    """An IVR option asking for a skill no member of its queue has: its callers wait for the
    overflow (a warning, as for an agent lacking a queue's skill)."""
    for mname, menu in menus.menus.items():
        for key, action in [*(("options." + k, a) for k, a in menu.options.items()),
                            ("closed", menu.closed), ("on_failure", menu.on_failure)]:
            if action.action != "queue" or not action.skills:
                continue
            members = [a for a in engine.agents.values() if action.target in a.queues]
            for skill in action.skills:
                if not any(a.skills.get(skill, 0) for a in members):
                    log.warning("%s: ivr.%s.%s: no agent of queue %s has skill %s; its callers "
                                "will wait until the overflow", file, mname, key, action.target, skill)


def _check_listener_ports(t: _Table, listeners: tuple[SipListener, ...]) -> None:
    for j, lis in enumerate(listeners):
        for i, other in enumerate(listeners[:j]):
            if (lis.port == other.port and _family(lis.transport) == _family(other.transport)
                    and _overlap(lis.address, other.address)):
                raise ConfigError(
                    t.ctx.file, _join(_join(t.key("listen"), j), "port"),
                    f"port {lis.port}/{_family(lis.transport)} on {lis.address} is already "
                    f"used by {_join(t.key('listen'), i)} ({other.transport} on {other.address})")


def _rtp(t: _Table, sip: SipConfig) -> RtpConfig:
    address = t.address("address", RtpConfig.address)
    port_min = t.port("port_min", RtpConfig.port_min, 1024)
    port_max = t.port("port_max", RtpConfig.port_max, 1024)
    if port_min % 2:
        t.fail("port_min", f"must be even (RTP on even ports, RTCP on the next), got {port_min}")
    if port_min >= port_max:
        t.fail("port_max", f"must be greater than port_min ({port_min}), got {port_max}")
    for i, lis in enumerate(sip.listen):
        if (lis.transport == "udp" and port_min <= lis.port <= port_max
                and _overlap(address, lis.address)):
            t.fail("port_min", f"range {port_min}..{port_max} includes UDP port {lis.port} "
                               f"of sip.listen[{i}]")
    codecs = t.strings("codecs", RtpConfig.codecs)
    if not codecs:
        t.fail("codecs", f"at least one codec is required (of {', '.join(CODECS)})")
    for i, codec in enumerate(codecs):
        if codec not in CODECS:
            raise ConfigError(t.ctx.file, _join(t.key("codecs"), i), _not_one_of(codec, CODECS))
        if codec in codecs[:i]:
            raise ConfigError(t.ctx.file, _join(t.key("codecs"), i), f"{codec!r} is listed twice")
    ptime = t.integer("ptime_ms", RtpConfig.ptime_ms, 10, 60)
    if ptime not in PTIMES:
        t.fail("ptime_ms", f"must be one of {', '.join(map(str, PTIMES))}, got {ptime}")
    jitter_min = t.integer("jitter_min_ms", RtpConfig.jitter_min_ms, 0, 500)
    jitter_max = t.integer("jitter_max_ms", RtpConfig.jitter_max_ms, 20, 2000)
    if jitter_max < jitter_min:
        t.fail("jitter_max_ms", f"must be at least jitter_min_ms ({jitter_min}), got {jitter_max}")
    return RtpConfig(address=address, port_min=port_min, port_max=port_max, codecs=codecs,
                     ptime_ms=ptime, nat=t.boolean("nat", RtpConfig.nat),
                     jitter_min_ms=jitter_min, jitter_max_ms=jitter_max)


def _web(t: _Table, sip: SipConfig) -> WebConfig:
    address = t.address("address", WebConfig.address)
    port = t.port("port", WebConfig.port)
    for i, lis in enumerate(sip.listen):
        if lis.port == port and _overlap(address, lis.address):
            t.fail("port", f"port {port} on {address} is already used by sip.listen[{i}] "
                           f"({lis.transport} on {lis.address})")
    tls = t.boolean("tls", WebConfig.tls)
    cert, key = _cert_pair(t, tls, "only used with tls = true")
    if not tls and not ipaddress.ip_address(address).is_loopback:
        log.warning("%s: web.tls is false on %s: agents' passwords and the WebRTC "
                    "signalling travel unencrypted", t.ctx.file, address)
    ice: list[IceServer] = []
    for i, srv in enumerate(t.tables("ice_servers", ICE_KEYS)):
        urls = srv.strings("urls")
        if not urls:
            srv.fail("urls", "at least one stun:, stuns:, turn: or turns: URL is required")
        for url in urls:
            if not ICE_URL.fullmatch(url):
                srv.fail("urls", f"{url!r} is not a stun:/stuns:/turn:/turns: URL")
        username, credential = srv.string("username", ""), srv.string("credential", "")
        if any(u.startswith("turn") for u in urls) and not (username and credential):
            srv.fail("username", "a TURN server needs username and credential")
        ice.append(IceServer(urls, username, credential))
    return WebConfig(address=address, port=port, tls=tls, cert=cert, key=key,
                     session_ttl_s=t.seconds("session_ttl_s", WebConfig.session_ttl_s, 300.0, 7 * 86400.0),
                     lockout_after=t.integer("lockout_after", WebConfig.lockout_after, 1, 100),
                     lockout_s=t.seconds("lockout_s", WebConfig.lockout_s, 1.0, 86400.0),
                     heartbeat_s=t.seconds("heartbeat_s", WebConfig.heartbeat_s, 1.0, 120.0),
                     ice_servers=tuple(ice),
                     agent_codec=t.choice("agent_codec", WebConfig.agent_codec, AGENT_CODECS))


def _trunks(t: _Table) -> tuple[Trunk, ...]:
    trunks: list[Trunk] = []
    for name, data in t.data.items():
        if not NAME_PATTERN.fullmatch(name):
            t.fail(name, f"trunk names must match {_NAME_RULE}")
        if not isinstance(data, dict):
            t.fail(name, f"expected a table ([trunks.{name}]), got {_describe(data)}")
        trunks.append(_trunk(_Table(t.ctx, data, t.key(name), TRUNK_KEYS), name, trunks))
    return tuple(trunks)


def _trunk(t: _Table, name: str, earlier: list[Trunk]) -> Trunk:
    allow: list[IPNetwork] = []
    for i, text in enumerate(t.strings("allow", ("127.0.0.0/8",))):
        try:
            allow.append(ipaddress.ip_network(text.strip(), strict=True))
        except ValueError as exc:
            detail = " (host bits set)" if "host bits" in str(exc) else ""
            raise ConfigError(t.ctx.file, _join(t.key("allow"), i),
                              f"not a valid network: {text!r}{detail}") from None
    username, password = _credentials(t)
    if t.string("realm") and not username:
        t.fail("realm", "only used with username/password")
    proxy = _sip_uri(t, "proxy")
    from_user = t.string("from_user") or username or DEFAULT_FROM_USER
    if not _SIP_USER.fullmatch(from_user):
        t.fail("from_user", f"not a valid SIP user part: {from_user!r}")
    interval = t.integer("options_interval", 0, 0, 86400)
    if interval and not proxy:
        t.fail("options_interval", "requires proxy (the keepalives are sent to it)")
    register = _register(t.table("register", REGISTER_KEYS), proxy) if t.has("register") else None
    if not allow and not username:
        t.fail("allow", "empty and the trunk has no username/password: no request "
                        "could ever match this trunk")
    for other in earlier:
        if username and other.username == username:
            t.fail("username", f"already used by trunk {other.name!r}; digest usernames "
                               "must be unique (they select the trunk)")
        if not username and not other.authenticates:
            for i, net in enumerate(allow):
                if net in other.allow:
                    raise ConfigError(t.ctx.file, _join(t.key("allow"), i),
                                      f"network {net} is also allowed by trunk {other.name!r}; "
                                      "neither authenticates, so the trunk would be ambiguous")
    for net in allow:
        if net.prefixlen == 0 and not username:
            log.warning("%s: trunk %r accepts calls from anywhere (%s) without "
                        "authentication", t.ctx.file, name, net)
    return Trunk(name=name, allow=tuple(allow), username=username, password=password,
                 realm=(t.string("realm") or name) if username else "", proxy=proxy,
                 from_user=from_user, options_interval=interval, register=register)


def _credentials(t: _Table) -> tuple[str, str]:
    username, password = t.string("username"), t.string("password")
    if bool(username) != bool(password):
        have, missing = ("username", "password") if username else ("password", "username")
        t.fail(missing, f"{have} is set but {missing} is empty; set both or neither")
    if username and (any(c.isspace() for c in username) or '"' in username):
        t.fail("username", f"must not contain spaces or quotes: {username!r}")
    return username, password


def _sip_uri(t: _Table, name: str) -> str:
    text = t.string(name).strip()
    if not text:
        return ""
    try:
        uri = parse_uri(text)
    except SipParseError as exc:
        t.fail(name, f"not a valid SIP URI: {text!r} ({exc.reason})")
    transport = uri.params.get("transport")
    if transport is not None and transport.lower() not in TRANSPORTS:
        t.fail(name, f"transport={transport} in {text!r} is not one of: {', '.join(TRANSPORTS)}")
    return text


def _register(t: _Table, proxy: str) -> TrunkRegister:
    registrar = _sip_uri(t, "registrar") or proxy
    if not registrar:
        raise ConfigError(t.ctx.file, t.path, "registration needs a registrar or the "
                                              "trunk's proxy")
    username, password = _credentials(t)
    retry_min = t.integer("retry_min", TrunkRegister.retry_min, 1, 86400)
    return TrunkRegister(
        registrar=registrar, username=username, password=password,
        expires=t.integer("expires", TrunkRegister.expires, 60, 86400),
        retry_min=retry_min,
        retry_max=t.integer("retry_max", max(TrunkRegister.retry_max, retry_min),
                            retry_min, 86400),
    )


def _dialplan(top: _Table, trunks: tuple[Trunk, ...]) -> tuple[DialRule, ...]:
    rules: list[DialRule] = []
    names = [tr.name for tr in trunks]
    catch_all: int | None = None
    for i, t in enumerate(top.tables("dialplan", DIALPLAN_KEYS)):
        rule = _rule(t, names)
        if catch_all is not None:
            log.warning("%s: dialplan[%d] can never match: dialplan[%d] (match = '*') "
                        "takes every call first", t.ctx.file, i, catch_all)
        if rule.match == "*" and not rule.trunk and catch_all is None:
            catch_all = i
        rules.append(rule)
    return tuple(rules)


def _rule(t: _Table, trunk_names: list[str]) -> DialRule:
    match = t.string("match", required=True)
    pattern: re.Pattern[str] | None = None
    if not match or any(c.isspace() for c in match):
        t.fail("match", f"must be a non-empty user part without spaces, 're:<regex>' or '*', "
                        f"got {match!r}")
    if match.startswith("re:"):
        try:
            pattern = re.compile(match[3:])
        except re.error as exc:
            t.fail("match", f"not a valid regular expression: {match!r} ({exc})")
        if not match[3:]:
            t.fail("match", "empty regular expression after 're:'")
    trunk = t.string("trunk")
    if trunk and trunk not in trunk_names:
        hint = _suggest(trunk, trunk_names)
        t.fail("trunk", f"unknown trunk {trunk!r}" + (f"; did you mean {hint!r}?" if hint else
               f" (defined: {', '.join(trunk_names) or 'none'})"))
    action = t.choice("action", "", ACTIONS, required=True)
    target = t.string("target")
    if action in ("queue", "ivr"):
        if not target:
            t.fail("target", f"required for action = {action!r} (the {action} name)")
        if not NAME_PATTERN.fullmatch(target):
            t.fail("target", f"{action} names must match {_NAME_RULE}, got {target!r}")
    elif target:
        t.fail("target", "only for action = 'queue' or 'ivr'")
    if action != "reject":
        if t.has("status"):
            t.fail("status", "only for action = 'reject'")
        if t.string("reason"):
            t.fail("reason", "only for action = 'reject'")
    return DialRule(match=match, action=action, trunk=trunk, target=target,
                    status=t.integer("status", DialRule.status, 400, 699),
                    reason=t.string("reason"), pattern=pattern)


def _is_host(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return bool(_HOSTNAME.fullmatch(text))
    return True
