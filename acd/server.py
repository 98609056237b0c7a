"""The server process on one asyncio loop: SIP sockets and trunks, the dial plan, call media
(the echo test, test tones), the ACD (queues, IVR menus, callbacks, voicemail) and the store."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import signal
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from acd.callbacks import CallbackDialler
from acd.config_schema import Config
from acd.contact_center import CallerFeed, ContactCenter
from acd.control import ControlSocket
from acd.errors import AcdError
from acd.ivr import actions as ivr_actions
from acd.media_session import CallMedia, params_from_sdp
from acd.menus import MenuRunner
from acd.sip import sdp as sdpmod
from acd.sip.auth import DigestClient
from acd.sip.call import Call, CallConnected, CallEnded, CallInfo, CallReoffer, IncomingCall
from acd.sip.errors import RemoteProtocolError
from acd.sip.events import Event, TimerConfig
from acd.sip.transport import Listener, SipTransport
from acd.sip.ua import UserAgent
from acd.sip.uri import format_host, parse_uri
from acd.store import open_store, restore_agents, sync_agents_from_config
from acd.tlscert import client_context, ensure_self_signed, server_context
from acd.transfers import ExternalTransfers
from acd.trunk_runtime import TrunkClients, resolve
from acd.trunks import TrunkAdmission, load_secret
from acd.web.service import WebService
from media.codecs import make_codec
from media.dtmf import DtmfEnd, DtmfEvent, DtmfParseError, parse_dtmf_relay
from media.errors import MediaError
from media.measure import AudioTap
from media.recording import CallRecorder
from media.tones import ToneSource, ToneSpec
from media.transport import MediaClock, PortPool

__all__ = ["Server"]

log = logging.getLogger(__name__)

# trunk-side codecs by config name (RFC 3551 static PTs; opus per RFC 7587, dynamic PT)
TRUNK_CODECS = {
    "PCMU": sdpmod.Codec(0, "PCMU", 8000),
    "PCMA": sdpmod.Codec(8, "PCMA", 8000),
    "G722": sdpmod.Codec(9, "G722", 8000),
    "opus": sdpmod.Codec(111, "opus", 48000, 2, "minptime=10;useinbandfec=1"),
}


def _advertised(listen_address: str, external: str) -> str:
    if external:
        return external
    if ipaddress.ip_address(listen_address).is_unspecified:
        return "::1" if ":" in listen_address else "127.0.0.1"
    return listen_address


def _dialled_user(uri: str) -> str:
    """The user part of a sip/sips URI, or the number of a tel URI (RFC 3966)."""
    if uri.lower().startswith("tel:"):
        return uri[4:].split(";", 1)[0]
    return parse_uri(uri).user or ""


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = config.server.data_dir
        self.started = time.time()
        sip = config.sip
        self.listeners = [Listener(lst.transport, lst.address, lst.port) for lst in sip.listen]
        t = sip.timers
        timers = TimerConfig(t.t1_ms / 1000, t.t2_ms / 1000, t.t4_ms / 1000)
        self.admission = TrunkAdmission(config, load_secret(self.data_dir))
        self.ua = UserAgent(timers, self._sent_by, contact=self._contact,
                            user_agent=config.server.user_agent, admission=self.admission,
                            authorize=self._authorize)
        self.caps = sdpmod.MediaCapabilities(
            codecs=tuple(TRUNK_CODECS[c] for c in config.rtp.codecs),
            ptime=config.rtp.ptime_ms)
        self.ports = PortPool(config.rtp.port_min, config.rtp.port_max)
        self.media: dict[Call, CallMedia | None] = {}  # calls holding an RTP port; None until media opens
        self.clock = MediaClock(config.rtp.ptime_ms / 1000)
        self.media_counters: Counter[str] = Counter()  # of ended calls; active ones are added live
        self.cc: ContactCenter | None = None
        self.store: Any = None  # acd.store.Store once the ACD runs
        self._store_sync: asyncio.Task[None] | None = None
        self.menus: MenuRunner | None = None
        self.feeds: dict[str, CallerFeed] = {}  # call id → what the caller hears in the ACD
        self._media_by_rate: dict[int, tuple[Any, Any]] = {}
        self.by_id: dict[str, Call] = {}
        self.trunk_clients: TrunkClients | None = None
        self.control: ControlSocket | None = None
        self.transfers = ExternalTransfers(self)  # IVR "external" destinations
        self.web: WebService | None = None  # agents' HTTPS/WebSocket service (with the ACD)
        self.counters: Counter[str] = Counter()
        self.transport: SipTransport | None = None
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # -- addresses ---------------------------------------------------------------------

    def _listener(self, transport: str) -> Listener:
        for lst in self.listeners:
            if lst.transport == transport:
                return lst
        return self.listeners[0]

    def _sent_by(self, transport: str) -> tuple[str, int]:
        lst = self._listener(transport)
        return _advertised(lst.address, self.config.sip.external_address), lst.port

    @property
    def rtp_host(self) -> str:
        """The address in our SDP c= lines."""
        return _advertised(self.config.rtp.address, self.config.sip.external_address)

    def _contact(self, transport: str) -> str:
        host, port = self._sent_by(transport)
        scheme = "sips" if transport == "tls" else "sip"
        param = "" if transport in ("udp", "tls") else f";transport={transport}"
        return f"{scheme}:homeline@{format_host(host)}:{port}{param}"

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.config.server.demo:
            log.warning("DEMO CONFIGURATION: agents use the public demo password; for the demo only, "
                        "never expose this server")
        ssl_ctx = None
        tls = [lst for lst in self.config.sip.listen if lst.transport == "tls"]
        if tls:
            cert, key = tls[0].cert, tls[0].key
            if cert is None or key is None:
                cert, key = ensure_self_signed(self.data_dir / "tls")
            ssl_ctx = server_context(cert, key)
        self.transport = SipTransport(self.ua, self.listeners, self.on_event, ssl_server=ssl_ctx,
                                      ssl_client=client_context(verify=False),
                                      max_message_bytes=self.config.sip.max_message_bytes)
        await self.transport.start()
        self.trunk_clients = TrunkClients(self.config, self.ua, self.transport, self._contact)
        await self.trunk_clients.start()
        engine_config = self.config.engine
        if engine_config is not None and engine_config.queues:
            self.store = open_store(self.data_dir)
            report = sync_agents_from_config(self.store, engine_config)
            log.info("agent accounts: %s", report)
            restore = restore_agents(self.store, engine_config)
            self.cc = ContactCenter(engine_config, epoch=time.time() - self.transport.now, hangup=self._cc_hangup,
                                    feed_for=self.feeds.get, on_record=self.store.write, exit_queue=self._exit_queue)
            self.transport.timer_sources.append(self.cc)
            self.cc.changed = self.transport.flush
            self.cc.transfer_out = self.transfers.agent_transfer
            self.cc.callbacks = CallbackDialler(self)
            self.cc.start(self.transport.now, restore)
            self.web = WebService(self)
            await self.web.start()
            self.transport.flush()
            self._store_sync = asyncio.get_running_loop().create_task(self._sync_store())
        if self.config.menus is not None and self.config.menus.menus:
            self.menus = MenuRunner(self.config.menus, route=self._ivr_route, feed_for=self.feeds.get,
                                    now=lambda: self.transport.now, changed=self.transport.flush)  # type: ignore[union-attr]
            self.transport.timer_sources.append(self.menus)
        self.control = ControlSocket(self)
        await self.control.start()
        log.info("Homeline ready: %d trunk(s), %d dial-plan rule(s)", len(self.config.trunks),
                 len(self.config.dialplan))

    async def run(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        await self._stopping.wait()
        await self.drain()

    def stop(self) -> None:
        self._stopping.set()

    async def drain(self) -> None:
        """Graceful shutdown: refuse new calls with 503, let calls end, then hang up the rest."""
        self.ua.accepting = False
        wait = self.config.server.drain_seconds
        log.info("draining: %d call(s) in progress, waiting up to %d s", len(self.media), wait)
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=wait)
        except asyncio.TimeoutError:
            log.warning("drain time over: hanging up %d call(s)", len(self.media))
            for call in list(self.media):
                self._act(call, "hangup")
            try:
                await asyncio.wait_for(self._idle.wait(), timeout=5)
            except asyncio.TimeoutError:
                log.warning("%d call(s) did not end cleanly", len(self.media))
        await self.close()

    async def close(self) -> None:
        if self.trunk_clients is not None:
            self.trunk_clients.stop()
            if self.trunk_clients.registrations:
                await asyncio.sleep(0.5)  # let the un-REGISTERs go out (and usually be answered)
        if self.web is not None:
            await self.web.close()
        for call in list(self.media):
            self._release(call)
        if self._store_sync is not None:
            self._store_sync.cancel()
        if self.store is not None:
            self.store.sync()
            self.store.close()
        if self.control is not None:
            self.control.close()
        if self.transport is not None:
            await self.transport.close()
        log.info("stopped")

    # -- SIP events ----------------------------------------------------------------------

    def on_event(self, ev: Event) -> None:
        if isinstance(ev, IncomingCall):
            self._incoming(ev)
        elif isinstance(ev, CallReoffer):
            self._reoffer(ev.call, ev.offer)
        elif isinstance(ev, CallConnected):
            self._connected(ev.call)
        elif isinstance(ev, CallEnded):
            self._ended(ev)
        elif isinstance(ev, CallInfo):
            self._info(ev)

    def _act(self, call: Call, action: str, arg: Any = None) -> None:
        assert self.transport is not None
        self.ua.act(call, action, self.transport.now, arg)
        self.transport.flush()

    def _incoming(self, ev: IncomingCall) -> None:
        call, req = ev.call, ev.request
        try:
            user = _dialled_user(req.uri)
            contact_users = self.trunk_clients.contact_users if self.trunk_clients else set()
            if user in contact_users or user == "homeline" or not user:
                user = _dialled_user(req.to.uri)  # a registered trunk calls our Contact; the DID is in To
        except RemoteProtocolError as exc:
            self.ua.act(call, "reject", self.transport.now, (exc.status, exc.reason[:60], ()))  # type: ignore[union-attr]
            return
        rule = self.config.route(user, call.trunk)
        log.info("call %s from %s to %s on trunk %s -> %s", call.call_id, req.headers.get("From"),
                 user, call.trunk, rule.action if rule else "no route")
        self.counters["calls_in"] += 1
        if rule is None:
            self._act(call, "reject", 404)
        elif rule.action == "reject":
            self._act(call, "reject", (rule.status, rule.reason or None, ()))
        elif rule.action == "echo":
            asyncio.get_running_loop().create_task(self._answer(call))
        elif rule.action == "queue" and self.cc is not None:
            call.app["queue"] = rule.target
            asyncio.get_running_loop().create_task(self._answer(call))
        elif rule.action == "ivr" and self.menus is not None:
            call.app["menu"] = rule.target
            asyncio.get_running_loop().create_task(self._answer(call))
        else:
            self._act(call, "reject", (480, f"{rule.action} {rule.target} not available", ()))

    def _negotiate(self, call: Call, offer: bytes, port: int) -> tuple[bytes, list[sdpmod.NegotiatedStream]]:
        sid = call.app.setdefault("sdp_id", secrets.randbelow(2**31))
        version = call.app.get("sdp_version", -1) + 1
        call.app["sdp_version"] = version
        answer, streams = sdpmod.answer_offer(sdpmod.parse(offer), self.caps, address=self.rtp_host, port=port,
                                              session_id=sid, session_version=version, username="homeline")
        return answer.to_bytes(), streams

    def _offer(self, app: dict[str, Any], port: int) -> bytes:
        """Our offer, for outbound calls and for INVITEs without SDP (RFC 3261 §13.2.1);
        it is remembered in the call's ``app`` dict to check the answer against."""
        offer = sdpmod.build_offer(self.caps, address=self.rtp_host, port=port, session_id=secrets.randbelow(2**31),
                                   session_version=0, username="homeline")
        app["offer"] = offer
        app["sdp_id"], app["sdp_version"] = offer.origin.sess_id, 0
        return offer.to_bytes()

    def _reserve(self, call: Call) -> int:
        port = self.ports.take()
        call.app["rtp_port"] = port
        self.media[call] = None
        self._idle.clear()
        return port

    def _release(self, call: Call) -> None:
        media = self.media.pop(call, None)
        if media is not None:
            snap = media.close(self.transport.now if self.transport else 0.0)
            call.app["quality"] = snap.as_dict()
            self.media_counters.update(media.counters())
            tap = call.app.pop("tap", None)
            if tap is not None:
                heard = tap.summary()
                call.app["heard"] = heard
                log.info("call %s heard %.1f Hz at %.1f dBFS over %.1f s (sent %s Hz)", call.call_id,
                         heard["frequency_hz"], heard["level_dbfs"], heard["seconds"], call.app.get("tone_hz"))
        port = call.app.pop("rtp_port", None)
        if port is not None:
            self.ports.give_back(port)
        if not self.media:
            self._idle.set()

    async def _open_media(self, call: Call, stream: sdpmod.NegotiatedStream) -> bool:
        """Start the call's media on its reserved port: the echo test, an ACD caller's feed
        (queue, IVR menu, a callback's customer leg), or a test tone whose return is measured
        (``acd originate --tone``)."""
        params = params_from_sdp(stream, min_delay_ms=self.config.rtp.jitter_min_ms,
                                 max_delay_ms=self.config.rtp.jitter_max_ms)
        extra: dict[str, Any] = {}
        tone_hz = call.app.get("tone_hz")
        if call.app.get("queue") or call.app.get("menu") or call.app.get("engine_id"):
            rate = make_codec(params.codec).sample_rate
            music, prompts = self._acd_media(rate)
            feed = CallerFeed(rate, params.ptime_ms, music, prompts)
            if call.app.get("engine_id") and self.cc is not None:  # a callback's customer leg, to the agent
                self.cc.connect_feed(call.app.get("callback_agent", ""), feed)
            self.feeds[call.app.get("engine_id") or call.call_id] = feed
            extra = {"source": feed}
        elif call.app.get("consult_for") is not None:  # an agent consulting an outside number
            party = self.transfers.consult_party(call, make_codec(params.codec).sample_rate,
                                                 make_codec(params.codec).sample_rate * params.ptime_ms // 1000)
            if party is None:
                return False
            extra = {"source": party}
        elif call.app.get("transfer_of") is not None:  # an IVR transfer's far leg: bridged to the caller
            bridge = self.transfers.bridge_for(call, make_codec(params.codec).sample_rate)
            if bridge is None:
                return False
            extra = {"source": bridge.leg_b}
        elif tone_hz:
            rate = make_codec(params.codec).sample_rate
            tone = ToneSource(ToneSpec("test", (float(tone_hz),), level_dbm0=-10.0), rate, params.ptime_ms)
            call.app["tap"] = AudioTap(rate, frame_samples=tone.frame_size)
            extra = {"source": lambda received, now: tone.next_frame(), "sink": call.app["tap"]}
        else:  # the echo test: as little delay as the caller's jitter allows, on the caller's phase;
            # a loss less than 5 ms below target is concealed, not held a frame for (architecture.md)
            params = replace(params, min_delay_ms=0, jitter_options={"loss_hold_below_ms": 5.0})
            extra = {"follow_phase": True}
        media = CallMedia(self.clock, self.config.rtp.address, call.app["rtp_port"], params,
                          self.transport.now if self.transport else 0.0, nat=self.config.rtp.nat,
                          on_dtmf=lambda ev: self._dtmf_event(call, ev), label=call.call_id, **extra)
        try:
            await media.open((stream.remote_address, stream.remote_port))
        except OSError as exc:
            log.warning("call %s: cannot open RTP port %d: %s", call.call_id, media.port, exc)
            return False
        if call.ended or call not in self.media:  # hung up while the socket opened
            media.close(0.0)
            return False
        media.update(stream, self.transport.now if self.transport else 0.0)
        self.media[call] = media
        return True

    async def _sync_store(self) -> None:
        """fsync the store once a second: a kill -9 never loses a committed record; this bounds
        what an OS crash could take back."""
        while True:
            await asyncio.sleep(1.0)
            self.store.sync()

    def _acd_media(self, rate: int) -> tuple[Any, Any]:
        """Music and prompts at one sample rate, shared by every caller at that rate."""
        if rate not in self._media_by_rate:
            self._media_by_rate[rate] = ContactCenter.media_for(self.data_dir, rate)
        return self._media_by_rate[rate]

    def _enter_queue(self, call: Call, priority: int | None = None, skills: tuple[str, ...] = ()) -> None:
        """Once the caller's media runs: into the IVR menu or the queue the dial plan named."""
        if call.ended or self.transport is None:
            return
        queue, menu = call.app.get("queue"), call.app.get("menu")
        if menu and self.menus is not None and not queue:
            self.by_id[call.call_id] = call
            self.menus.start(call.call_id, menu, self.transport.now)
        elif queue and self.cc is not None:
            self.by_id[call.call_id] = call
            if self._queue_closed(call, queue):
                return
            caller = call.invite.from_.sip_uri.user if call.invite is not None else ""
            self.cc.enter(call.call_id, queue, caller or "", self.transport.now, priority, skills=skills,
                          ivr_path=tuple(call.app.get("ivr_path", ())))
        self.transport.flush()  # the engine's or menu's new timers: re-arm the one timer

    def _queue_closed(self, call: Call, queue: str) -> bool:
        """Business hours per queue: outside its schedule the caller gets the queue's
        ``closed`` action (hang up after a prompt, another queue, or voicemail)."""
        cfg = self.config.engine.queues[queue]
        if not cfg.hours or self.config.menus.schedules[cfg.hours].is_open_epoch(time.time()):
            return False
        closed = cfg.closed
        log.info("call %s: queue %s is closed (schedule %s): %s %s", call.call_id, queue, cfg.hours,
                 closed.action, closed.target)
        hops = call.app.setdefault("closed_hops", 0)
        if closed.action == "queue" and hops < 5:
            call.app["closed_hops"] = hops + 1
            call.app["queue"] = closed.target
            self._enter_queue(call)
            return True
        if closed.action == "voicemail":
            self.voicemail(call, closed.target, closed.prompt)
            return True
        self.say_and_hang_up(call, closed.prompt or "queue/closed")
        return True

    def say_and_hang_up(self, call: Call, prompt: str | None) -> None:
        """Play ``prompt`` to the caller, then hang up (at once if it cannot be played)."""
        feed = self.feeds.get(call.call_id)
        if not prompt or feed is None or not feed.announce([prompt], on_done=lambda now: self._act(call, "hangup")):
            self._act(call, "hangup")

    def voicemail(self, call: Call, mailbox: str, prompt: str = "") -> None:
        """A message-recording destination: prompt, beep, then the caller's message is written
        to ``data_dir/voicemail/MAILBOX/`` (crash-safe WAV) until they hang up or 2 minutes."""
        feed = self.feeds.get(call.call_id)
        if feed is None:
            self._act(call, "hangup")
            return
        folder = self.data_dir / "voicemail" / mailbox
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{call.call_id.replace('/', '_')[:40]}.wav"
        call.app["voicemail"] = path
        log.info("call %s: voicemail for %s into %s", call.call_id, mailbox, path)
        feed.voicemail(prompt or "queue/leave-message", CallRecorder(path, feed.rate), 120.0,
                       on_done=lambda now: self._act(call, "hangup"))

    def _exit_queue(self, exit: Any) -> None:
        """A caller leaves a queue (max wait, empty queue, exit key): voicemail, a menu or queue
        named by ``exit_target``, or a goodbye prompt and hang up."""
        call = self.by_id.get(exit.call)
        if call is None or call.ended:
            return
        if exit.action == "voicemail":
            self.voicemail(call, exit.target, exit.prompt)
        elif exit.action == "continue" and self.menus is not None and exit.target in self.config.menus.menus:
            self.menus.start(call.call_id, exit.target, self.transport.now)  # type: ignore[union-attr]
        elif exit.action == "continue" and exit.target in self.config.engine.queues:
            call.app["queue"] = exit.target
            self._enter_queue(call)
        else:
            self.say_and_hang_up(call, exit.prompt or "queue/goodbye")

    def _ivr_route(self, call_id: str, action: Any) -> None:
        """Where a caller goes when the menu is done (acd.ivr.actions terminals)."""
        call = self.by_id.get(call_id)
        if call is None or call.ended:
            return
        call.app["ivr_path"] = list(action.ivr_path)
        feed = self.feeds.get(call_id)
        if isinstance(action, ivr_actions.RouteToQueue):
            call.app["queue"] = action.queue
            self._enter_queue(call, action.priority, action.skills)
        elif isinstance(action, ivr_actions.RouteToEcho) and feed is not None:
            feed.connect(lambda received, now: received)
        elif isinstance(action, ivr_actions.Hangup):
            self.say_and_hang_up(call, action.prompt)
        elif isinstance(action, ivr_actions.RouteExternal):
            self.transfers.start(call, action)
        elif not isinstance(action, ivr_actions.Abandoned):
            self._act(call, "hangup")

    def _cc_hangup(self, call_id: str, reason: str) -> None:
        call = self.by_id.get(call_id)
        if call is not None and not call.ended:
            log.info("call %s: the ACD hangs up: %s", call_id, reason)
            self._act(call, "hangup")

    async def _answer(self, call: Call) -> None:
        """Answer with media: the echo test, or a queue (the caller then enters the ACD)."""
        try:
            port = self._reserve(call)
        except MediaError:
            self._act(call, "reject", (503, "No media ports", ()))
            return
        if not call.remote_sdp:
            # delayed offer: we offer in the 200, the answer comes in the ACK (media opens then)
            self._act(call, "answer", self._offer(call.app, port))
            return
        try:
            answer, streams = self._negotiate(call, call.remote_sdp, port)
        except RemoteProtocolError as exc:
            self._release(call)
            self._act(call, "reject", (exc.status, exc.reason[:80], ()))
            return
        if not await self._open_media(call, streams[0]):
            if not call.ended:
                self._release(call)
                self._act(call, "reject", (503, "Media port unavailable", ()))
            return
        self._act(call, "answer", answer)
        self._enter_queue(call)

    # -- outbound calls through a trunk --------------------------------------------------

    async def originate(self, trunk_name: str, number: str, *, duration: float | None = None,
                        ring_timeout: float = 60.0, tone_hz: float | None = None,
                        app: dict[str, Any] | None = None) -> Call:
        """Dial ``number`` through a trunk's proxy (RFC 3261 §8.1); the answered call is
        connected to the echo test — or, with ``tone_hz``, sends a test tone and measures what
        comes back (a far-end echo, a carrier test number) — and is hung up after ``duration``
        seconds if given. A call not answered within ``ring_timeout`` is CANCELled. ``app``
        goes into the new leg's ``call.app`` before the INVITE leaves (its role, e.g.
        ``transfer_of`` for an IVR transfer's far leg)."""
        trunk = self.config.trunk(trunk_name)
        if trunk is None or not trunk.proxy:
            raise AcdError(f"trunk {trunk_name!r} does not exist or has no proxy")
        dest, proxy = await resolve(trunk.proxy)
        host, _ = self._sent_by(dest.transport)
        uri = str(replace(proxy, user=number))
        assert self.transport is not None
        port = self.ports.take()
        app = {"rtp_port": port, "hangup_after": duration, "tone_hz": tone_hz, **(app or {})}
        call = self.ua.invite(uri, dest, self.transport.now, sdp=self._offer(app, port), trunk=trunk.name,
                              from_uri=f"sip:{trunk.from_user}@{format_host(host)}")
        call.app.update(app)
        self.media[call] = None
        self._idle.clear()
        self.counters["calls_out"] += 1
        log.info("call %s: dialling %s through trunk %s", call.call_id, number, trunk.name)
        self.transport.flush()
        asyncio.get_running_loop().call_later(ring_timeout, self._ring_timeout, call)
        return call

    async def _open_then_enter(self, call: Call, stream: sdpmod.NegotiatedStream) -> None:
        if await self._open_media(call, stream):
            engine_id = call.app.get("engine_id")
            if engine_id and self.cc is not None:
                log.info("callback %s: customer answered", engine_id)
                self.cc.callback_reached(engine_id, self.transport.now)  # type: ignore[union-attr]
            self._enter_queue(call)  # delayed offer into a queue: the caller enters once media runs

    def _ring_timeout(self, call: Call) -> None:
        if call.state in ("calling", "early"):
            log.info("call %s: not answered in time, cancelling", call.call_id)
            call.app["failure"] = "no answer in time"
            self._act(call, "hangup")
            caller = call.app.get("transfer_of")
            if caller is not None:  # an IVR transfer: the caller need not wait for the CANCEL's end
                self.transfers.failed(caller, f"no answer within {caller.app['transfer']['ring_timeout']:g} s")

    def _authorize(self, call: Call, resp: Any) -> list[tuple[str, str]] | None:
        """Answer a 401/407 to our INVITE with the trunk's credentials (RFC 3261 §22.2)."""
        trunk = self.config.trunk(call.trunk or "")
        if trunk is None:
            return None
        user, password = trunk.username, trunk.password
        if trunk.register is not None and trunk.register.username:
            user, password = trunk.register.username, trunk.register.password
        if not user:
            return None
        name = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        client = DigestClient(user, password)
        if not client.handle_challenge(resp.headers.get_all(name)):
            return None
        header = "Authorization" if resp.status == 401 else "Proxy-Authorization"
        return [(header, v) for v in client.authorizations("INVITE", call.invite.uri)]  # type: ignore[union-attr]

    def _connected(self, call: Call) -> None:
        log.info("call %s connected", call.call_id)
        if "offer" not in call.app:
            return
        try:
            if not call.remote_sdp:
                raise RemoteProtocolError("no SDP answer")  # §13.2.1: it must come with 2xx/ACK
            streams = sdpmod.accept_answer(call.app["offer"], sdpmod.parse(call.remote_sdp))
        except RemoteProtocolError as exc:
            log.warning("call %s: unusable answer (%s), hanging up", call.call_id, exc.reason)
            call.app["failure"] = f"unusable answer ({exc.reason})"
            self._act(call, "hangup")
            return
        # an IVR transfer's far leg is bridged to its caller; other legs may enter a queue
        opener = self.transfers.open_then_bridge if call.app.get("transfer_of") is not None \
            else self.transfers.open_consult if call.app.get("consult_for") is not None else self._open_then_enter
        asyncio.get_running_loop().create_task(opener(call, streams[0]))
        after = call.app.get("hangup_after")
        if after:
            asyncio.get_running_loop().call_later(after, lambda: None if call.ended else self._act(call, "hangup"))

    def _dtmf_event(self, call: Call, event: DtmfEvent) -> None:
        if isinstance(event, DtmfEnd):
            self._dtmf(call, event.digit, event.duration_ms, event.source)

    def _info(self, ev: CallInfo) -> None:
        kind = ev.content_type.split(";")[0].strip().lower()
        if kind not in ("application/dtmf-relay", "application/dtmf"):
            log.info("call %s INFO %s ignored", ev.call.call_id, kind)
            return
        try:
            digit, duration = parse_dtmf_relay(ev.body, kind)
        except DtmfParseError as exc:
            log.info("call %s: bad DTMF INFO body: %s", ev.call.call_id, exc)
            return
        self._dtmf(ev.call, digit, duration, "sip-info")

    def _dtmf(self, call: Call, digit: str, duration_ms: int, source: str) -> None:
        """One key press, whatever carried it (RFC 4733, SIP INFO; in-band later for IVR)."""
        call.app.setdefault("digits", []).append(digit)
        log.info("call %s DTMF %s (%s, %d ms)", call.call_id, digit, source, duration_ms)
        if call.call_id in self.by_id and self.transport is not None:
            if not (self.menus is not None and self.menus.digit(call.call_id, digit, self.transport.now)) \
                    and self.cc is not None:
                self.cc.digit(call.call_id, digit, self.transport.now)
            self.transport.flush()  # digits come from the media path: re-arm the one timer

    def _reoffer(self, call: Call, offer: bytes) -> None:
        media = self.media.get(call)
        if media is None or not offer:
            self._act(call, "reoffer_reject", 488)
            return
        try:
            answer, streams = self._negotiate(call, offer, media.port)
        except RemoteProtocolError as exc:
            self._act(call, "reoffer_reject", exc.status)
            return
        hold = streams[0].remote_hold
        media.update(streams[0], self.transport.now if self.transport else 0.0)
        log.info("call %s %s", call.call_id, "on hold" if hold else "resumed")
        self._act(call, "reoffer_answer", answer)

    def _ended(self, ev: CallEnded) -> None:
        call = ev.call
        self._release(call)
        if "transfer" in call.app or "transfer_of" in call.app:
            self.transfers.leg_ended(call, ev)
        if "consult_for" in call.app:
            self.transfers.consult_leg_ended(call, ev)
        if "consult_out" in call.app:  # the caller left while their agent consulted a number
            self.transfers.consult_cancel(call)
        if call.app.get("engine_id") and self.cc is not None and self.cc.callbacks is not None:
            self.feeds.pop(call.app["engine_id"], None)
            self.cc.callbacks.leg_ended(call)
        feed = self.feeds.pop(call.call_id, None)
        if feed is not None and feed.recorder is not None:
            feed.stop_recording()
            log.info("call %s: voicemail saved: %s", call.call_id, call.app.get("voicemail"))
        if self.by_id.pop(call.call_id, None) is not None and self.transport is not None:
            if self.menus is not None:
                self.menus.hangup(call.call_id, self.transport.now)
            if self.cc is not None:
                self.cc.caller_gone(call.call_id, self.transport.now)
        duration = (call.ended_at or 0) - (call.answered_at or call.ended_at or 0)
        self.counters["calls_ended"] += 1
        quality = call.app.get("quality")
        log.info("call %s ended: %s%s after %.1f s%s", call.call_id, ev.cause,
                 f" ({ev.status})" if ev.status else "", duration,
                 f"; quality: MOS {quality['mos']:.2f}, loss {quality['loss_pct']:.1f} %, jitter "
                 f"{quality['jitter_ms']:.1f} ms" if quality else "")
