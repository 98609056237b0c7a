"""acd.web.agent_media against a second, real aiortc peer (the test "agent") over the host's
own addresses: tones both ways, codecs, hold/mute, re-offer, pacing, bounded queues, ICE config.

The caller's side is driven like the media clock does it: ``party(received, now)`` every
20 ms on an absolute schedule, with 8 kHz frames of 160 samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
from collections.abc import AsyncIterator, Callable

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from acd.web.agent_media import MAX_QUEUE_FRAMES, AgentMedia, _Fifo
from media.resample import resample_file_rate
from tests.audio import dominant_frequency, rms_dbfs, xcorr_delay

pytestmark = pytest.mark.realtime  # real aiortc timing: see tests/conftest.py

RATE = 8000  # the trunk's rate (PCMU)
FRAME = 160
AGENT_RATE = 48000
CALLER_HZ = 600.0
AGENT_HZ = 1000.0

Signal = Callable[[int, int], np.ndarray]  # (first sample index, count) -> int16


def tone(freq: float, rate: int, keyed: bool = False, seed: int = 1) -> Signal:
    """A sine at -16 dBFS; ``keyed``: switched on and off in random 40-160 ms runs, so that
    cross-correlation finds one delay (a steady tone repeats every period)."""
    keys = np.random.default_rng(seed).integers(0, 2, 400) if keyed else None
    run = int(0.04 * rate)

    def signal(start: int, count: int) -> np.ndarray:
        n = np.arange(start, start + count)
        x = 5000 * np.sin(2 * np.pi * freq * n / rate)
        if keys is not None:
            x = x * keys[(n // run) % len(keys)]
        return x.astype(np.int16)

    return signal


def to_float(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float64) / 32768.0


class MicTrack(MediaStreamTrack):
    """The agent's microphone: 20 ms s16 mono frames at 48 kHz, paced by loop.time()."""

    kind = "audio"

    def __init__(self, signal: Signal) -> None:
        super().__init__()
        self.signal = signal
        self.sent: list[tuple[float, np.ndarray]] = []  # (time handed to the encoder, pcm)
        self._start: float | None = None
        self._n = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        wait = self._start + self._n / AGENT_RATE - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        pcm = self.signal(self._n, AGENT_RATE // 50)
        self.sent.append((loop.time(), pcm))
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = AGENT_RATE, self._n, fractions.Fraction(1, AGENT_RATE)
        self._n += len(pcm)
        return frame


class FakeAgent:
    """A browser stand-in: its own RTCPeerConnection (no STUN), a microphone track, and a
    recorder of what it hears: (arrival time, mono int16, rate) per decoded frame."""

    def __init__(self, signal: Signal, only_codec: str | None = None) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = MicTrack(signal)
        self.heard: list[tuple[float, np.ndarray, int]] = []
        transceiver = self.pc.addTransceiver(self.mic, direction="sendrecv")
        if only_codec is not None:  # a softphone that offers one codec
            transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("audio").codecs
                                             if c.mimeType.lower() == only_codec])
        self.pc.on("track", self._track)
        self._tasks: list[asyncio.Task[None]] = []

    def _track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0].copy()
            self.heard.append((loop.time(), pcm, frame.sample_rate))

    async def connect(self, media: AgentMedia) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await media.accept_offer(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return answer

    def heard_since(self, t: float) -> np.ndarray:
        return np.concatenate([p for when, p, _ in self.heard if when >= t] or [np.zeros(0, np.int16)])

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Caller:
    """Drives ``party`` like the media clock: every 20 ms, absolute schedule."""

    def __init__(self, party: Callable[[np.ndarray, float], np.ndarray], signal: Signal, frame: int = FRAME) -> None:
        self.party = party
        self.signal = signal
        self.frame = frame
        self.sent: list[tuple[float, np.ndarray]] = []
        self.heard: list[tuple[float, np.ndarray]] = []
        self.running = True
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        k = 0
        while True:
            k += 1
            await asyncio.sleep(max(0.0, t0 + k * 0.02 - loop.time()))
            if not self.running:
                continue  # the clock goes on, the party is not called (feed plays music)
            now = loop.time()
            received = self.signal(len(self.sent) * self.frame, self.frame)
            out = self.party(received, now)
            assert out.dtype == np.int16 and len(out) == self.frame
            self.sent.append((now, received))
            self.heard.append((now, out))

    def heard_since(self, t: float) -> np.ndarray:
        return np.concatenate([p for when, p in self.heard if when >= t] or [np.zeros(0, np.int16)])

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            (result,) = await asyncio.gather(self._task, return_exceptions=True)
            if isinstance(result, Exception):  # an assertion inside the clock task
                raise result


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "timed out waiting"
        await asyncio.sleep(0.02)


def run(coro_fn: Callable[[], object], timeout: float = 9.5) -> object:
    async def main() -> object:
        return await asyncio.wait_for(coro_fn(), timeout)  # type: ignore[arg-type]
    return asyncio.run(main())


@contextlib.asynccontextmanager
async def bridged(codec: str) -> AsyncIterator[tuple[AgentMedia, FakeAgent, Caller]]:
    """A connected session with a call attached, once the caller hears the agent's tone."""
    media = AgentMedia(codec=codec, label=codec)
    agent = FakeAgent(tone(AGENT_HZ, AGENT_RATE))
    await agent.connect(media)
    caller = Caller(media.attach(RATE, FRAME), tone(CALLER_HZ, RATE))
    caller.start()
    loop = asyncio.get_running_loop()
    try:
        await until(lambda: media.state == "connected")
        await until(lambda: rms_dbfs(to_float(caller.heard_since(loop.time() - 0.2))) > -30)
        yield media, agent, caller
    finally:
        await caller.stop()
        await agent.close()
        await media.close()


def stream_origin(frames: list[tuple[float, np.ndarray]], rate: int) -> tuple[float, np.ndarray]:
    """A recorded stream as one signal, and the time of its sample 0 if each frame's first
    sample is taken at the frame's timestamp (median over frames, robust to a late one)."""
    starts, n = [], 0
    for when, pcm in frames:
        starts.append(when - n / rate)
        n += len(pcm)
    return float(np.median(starts)), np.concatenate([p for _, p in frames])


def one_way_delay(sent: list[tuple[float, np.ndarray]], sent_rate: int,
                  heard: list[tuple[float, np.ndarray]], heard_rate: int) -> tuple[float, float]:
    """(delay in s, correlation peak) from the recorded send and receive timelines."""
    t_tx, tx = stream_origin(sent, sent_rate)
    t_rx, rx = stream_origin(heard, heard_rate)
    tx = resample_file_rate(tx, sent_rate, RATE) if sent_rate != RATE else tx
    rx = resample_file_rate(rx, heard_rate, RATE) if heard_rate != RATE else rx
    lag, peak = xcorr_delay(to_float(tx), to_float(rx), RATE, max_delay_s=0.6)
    return t_rx - t_tx + lag, peak


# -- audio both ways, per codec ------------------------------------------------------------

@pytest.mark.parametrize("codec, wire_rate", [("opus", 48000), ("pcmu", 8000), ("pcma", 8000)])
def test_tones_both_ways_and_latency(codec: str, wire_rate: int) -> None:
    async def main() -> None:
        media = AgentMedia(codec=codec, label="t")
        states: list[str] = []
        media.on_state = states.append
        agent = FakeAgent(tone(AGENT_HZ, AGENT_RATE, keyed=True, seed=2))
        answer = await agent.connect(media)
        caller = Caller(media.attach(RATE, FRAME), tone(CALLER_HZ, RATE, keyed=True, seed=3))
        caller.start()
        try:
            await until(lambda: media.state == "connected")
            await asyncio.sleep(2.0)
            # the codec: first in the answer's m-line, what we send, what the agent decodes
            m_line = next(line for line in answer.splitlines() if line.startswith("m=audio"))
            first_pt = m_line.split()[3]
            rtpmap = next(line for line in answer.splitlines() if line.startswith(f"a=rtpmap:{first_pt} "))
            assert codec in rtpmap.lower(), rtpmap
            assert media.negotiated_codec == codec
            assert {rate for _, _, rate in agent.heard} == {wire_rate}
            stats = await media.stats()
            assert stats["codec"] == codec and stats["packets_received"] > 50 and stats["packets_sent"] > 50
            assert stats["jitter_ms"] is not None and stats["jitter_ms"] < 50
            assert stats["loss_pct"] == 0.0
            assert stats["caller_dbfs"] > -30 and stats["agent_dbfs"] > -30
        finally:
            await caller.stop()
        to_agent = agent.heard_since(caller.sent[0][0] + 0.5)
        to_caller = caller.heard_since(caller.sent[0][0] + 0.5)
        assert abs(dominant_frequency(to_float(to_agent), wire_rate, skip_s=0) - CALLER_HZ) < 10
        assert abs(dominant_frequency(to_float(to_caller), RATE, skip_s=0) - AGENT_HZ) < 10
        up, up_peak = one_way_delay(caller.sent, RATE, [(t, p) for t, p, _ in agent.heard], wire_rate)
        down, down_peak = one_way_delay(agent.mic.sent, AGENT_RATE, caller.heard, RATE)
        print(f"\n{codec}: caller->agent {up * 1000:.0f} ms (corr {up_peak:.2f}), "
              f"agent->caller {down * 1000:.0f} ms (corr {down_peak:.2f})")
        assert up_peak > 0.5 and down_peak > 0.5
        assert 0.0 < up < 0.3 and 0.0 < down < 0.3
        assert states[:2] == ["connecting", "connected"]
        await agent.close()
        await media.close()
        assert media.state == "closed" and states[-1] == "closed"

    run(main)


@pytest.mark.parametrize("codec", ["opus", "pcmu"])
def test_agent_packets_lost_are_concealed_not_waited_for(codec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One packet in 15 from the agent never reaches our receive buffer: each is given up when the
    next arrives and filled by concealment behind the decoder, so the caller hears the agent's
    tone without a silent 20 ms block (aiortc's own buffer stalled 320 ms on each)."""
    from media.rtc_jitter import LowDelayJitterBuffer

    add = LowDelayJitterBuffer.add
    monkeypatch.setattr(LowDelayJitterBuffer, "add",
                        lambda self, packet: (False, None) if packet.sequence_number % 15 == 7 else add(self, packet))

    async def main() -> None:
        async with bridged(codec) as (media, _, caller):
            start = asyncio.get_running_loop().time()
            await asyncio.sleep(2.0)
            heard = caller.heard_since(start)
        assert media.counters["frames_concealed_from_agent"] >= 5, dict(media.counters)
        blocks = to_float(heard[:len(heard) // FRAME * FRAME]).reshape(-1, FRAME)
        levels = 20 * np.log10(np.sqrt(np.mean(blocks ** 2, axis=1)) + 1e-9)
        assert levels.min() > -30, np.round(levels).tolist()  # no silent 20 ms block
        assert abs(dominant_frequency(to_float(heard), RATE, skip_s=0) - AGENT_HZ) < 10

    run(main)


def test_without_our_receive_buffer_aiortc_decodes_and_audio_still_flows(monkeypatch: pytest.MonkeyPatch) -> None:
    """If an aiortc upgrade moves the receiver's buffer, the swap is refused (and logged): the
    agent's packets then take aiortc's own decoder and remote track, and still reach the caller."""
    import acd.web.agent_media as am

    monkeypatch.setattr(am, "use_low_delay_jitter_buffer", lambda receiver, sink=None: None)

    async def main() -> None:
        async with bridged("opus") as (_, agent, caller):
            t = asyncio.get_running_loop().time()
            await asyncio.sleep(0.8)
            assert abs(dominant_frequency(to_float(caller.heard_since(t)), RATE, skip_s=0) - AGENT_HZ) < 10
            assert abs(dominant_frequency(to_float(agent.heard_since(t)), AGENT_RATE, skip_s=0) - CALLER_HZ) < 10

    run(main)


# -- hold and mute ---------------------------------------------------------------------------

def test_hold_and_mute_silence_the_agent() -> None:
    async def main() -> None:
        media = AgentMedia()
        agent = FakeAgent(tone(AGENT_HZ, AGENT_RATE))
        await agent.connect(media)
        caller = Caller(media.attach(RATE, FRAME), tone(CALLER_HZ, RATE))
        caller.start()
        loop = asyncio.get_running_loop()

        async def window(s: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
            await asyncio.sleep(0.15)  # what was already under way drains
            t = loop.time()
            await asyncio.sleep(s)
            return to_float(caller.heard_since(t)), to_float(agent.heard_since(t))

        try:
            await until(lambda: media.state == "connected")
            await until(lambda: rms_dbfs(to_float(caller.heard_since(loop.time() - 0.2))) > -30)
            heard, _ = await window()
            assert abs(dominant_frequency(heard, RATE, skip_s=0) - AGENT_HZ) < 10

            media.mute(True)
            heard, at_agent = await window()
            assert rms_dbfs(heard) < -70  # the agent's tone still arrives, the caller hears nothing
            assert media.levels()["agent_dbfs"] > -30
            assert abs(dominant_frequency(at_agent, AGENT_RATE, skip_s=0) - CALLER_HZ) < 10

            media.mute(False)
            heard, _ = await window()
            assert abs(dominant_frequency(heard, RATE, skip_s=0) - AGENT_HZ) < 10

            media.hold(True)
            heard, at_agent = await window()
            assert rms_dbfs(heard) < -70 and rms_dbfs(at_agent) < -60

            media.hold(False)
            heard, at_agent = await window()
            assert abs(dominant_frequency(heard, RATE, skip_s=0) - AGENT_HZ) < 10
            assert abs(dominant_frequency(at_agent, AGENT_RATE, skip_s=0) - CALLER_HZ) < 10
            stats = await media.stats()  # RTCP has had time to measure the round trip
            assert stats["rtt_ms"] is not None and 0 < stats["rtt_ms"] < 50
            assert stats["remote_loss_pct"] == 0.0
        finally:
            await caller.stop()
            await agent.close()
            await media.close()

    run(main)


# -- re-offer ----------------------------------------------------------------------------------

def test_reoffer_replaces_the_peer_connection_and_audio_continues() -> None:
    async def main() -> None:
        media = AgentMedia(label="reoffer")
        first = FakeAgent(tone(AGENT_HZ, AGENT_RATE))
        await first.connect(media)
        caller = Caller(media.attach(RATE, FRAME), tone(CALLER_HZ, RATE))
        caller.start()
        loop = asyncio.get_running_loop()
        second = FakeAgent(tone(800.0, AGENT_RATE), only_codec="audio/pcmu")
        try:
            await until(lambda: media.state == "connected")
            await until(lambda: rms_dbfs(to_float(caller.heard_since(loop.time() - 0.2))) > -30)
            old_pc = media._pc
            assert old_pc is not None

            await second.connect(media)  # a new pc (another client, PCMU only), the same call
            assert media._pc is not old_pc and old_pc.connectionState == "closed"
            assert media.negotiated_codec == "pcmu"
            await until(lambda: media.state == "connected")
            await asyncio.sleep(0.3)
            t = loop.time()
            await asyncio.sleep(0.8)
            assert abs(dominant_frequency(to_float(caller.heard_since(t)), RATE, skip_s=0) - 800.0) < 10
            assert abs(dominant_frequency(to_float(second.heard_since(t)), RATE, skip_s=0) - CALLER_HZ) < 10
            assert {rate for when, _, rate in second.heard if when >= t} == {RATE}
            assert len(media._readers) == 1  # the old pc's reader ended with its track
            assert media.state == "connected"
        finally:
            await caller.stop()
            await first.close()
            await second.close()
            await media.close()

    run(main)


def test_opus_is_encoded_at_each_calls_own_rate() -> None:
    """One session, a call at 8 kHz and then one at 16 kHz: we encode Opus from the call's own
    rate, so the second call's 5 kHz tone reaches the agent (an 8 kHz path could not carry it)
    with no resampler in between, and the packets go on without a gap across the change."""
    async def main() -> None:
        media = AgentMedia(codec="opus", label="rates")
        agent = FakeAgent(tone(AGENT_HZ, AGENT_RATE))
        await agent.connect(media)
        loop = asyncio.get_running_loop()
        try:
            await until(lambda: media.state == "connected")
            narrow = Caller(media.attach(8000, 160), tone(CALLER_HZ, 8000))
            narrow.start()
            await until(lambda: rms_dbfs(to_float(agent.heard_since(loop.time() - 0.2))) > -30)
            t = loop.time()
            await asyncio.sleep(0.6)
            assert abs(dominant_frequency(to_float(agent.heard_since(t)), AGENT_RATE, skip_s=0) - CALLER_HZ) < 10
            assert media._track.rate == 8000 and media._call.to_agent is None
            await narrow.stop()
            switch = loop.time()
            wide = Caller(media.attach(16000, 320), tone(5000.0, 16000), frame=320)
            wide.start()
            await asyncio.sleep(0.3)
            t = loop.time()
            await asyncio.sleep(0.6)
            await wide.stop()
            assert media._track.rate == 16000 and media._call.to_agent is None
            assert abs(dominant_frequency(to_float(agent.heard_since(t)), AGENT_RATE, skip_s=0) - 5000.0) < 10
            arrivals = [when for when, _, _ in agent.heard if when >= switch - 0.5]
            assert np.diff(arrivals).max() < 0.1  # no stall where the encoder changed
            media.detach()
            assert media._track.rate == 8000  # silence between calls, at the cheapest rate
        finally:
            await agent.close()
            await media.close()

    run(main)


def test_bad_offers_are_refused_and_keep_the_connection() -> None:
    async def main() -> None:
        media = AgentMedia()
        with pytest.raises(ValueError):
            await media.accept_offer("")
        with pytest.raises(ValueError):
            await media.accept_offer("v=0\r\nm=audio x RTP/AVP 0\r\n")
        video = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        video.addTransceiver("audio")
        video.addTransceiver("video")
        await video.setLocalDescription(await video.createOffer())
        with pytest.raises(ValueError, match="exactly one audio"):
            await media.accept_offer(video.localDescription.sdp)
        await video.close()
        assert media.state == "new" and media._pc is None
        await media.close()
        with pytest.raises(RuntimeError):
            await media.accept_offer("v=0")

    run(main)


# -- pacing with no call, bounded queues ----------------------------------------------------------

def test_no_call_still_sends_paced_silence() -> None:
    async def main() -> None:
        media = AgentMedia()
        agent = FakeAgent(tone(AGENT_HZ, AGENT_RATE))
        await agent.connect(media)
        loop = asyncio.get_running_loop()
        try:
            await until(lambda: len(agent.heard) > 5)
            t, sent0 = loop.time(), media._track.frames
            await asyncio.sleep(1.0)
            heard = [p for when, p, _ in agent.heard if t <= when < t + 1.0]
            assert 45 <= len(heard) <= 55
            assert 45 <= media._track.frames - sent0 <= 55
            assert rms_dbfs(to_float(np.concatenate(heard))) < -80
            gaps = np.diff([when for when, _, _ in agent.heard if when >= t])
            assert gaps.max() < 0.1  # no stall-and-burst from our side
        finally:
            await agent.close()
            await media.close()

    run(main)


def test_queues_stay_bounded_when_a_side_stops_reading() -> None:
    async def main() -> None:
        media = AgentMedia()
        agent = FakeAgent(tone(AGENT_HZ, AGENT_RATE))
        await agent.connect(media)
        party = media.attach(RATE, FRAME)
        try:
            await until(lambda: media.state == "connected")
            await until(lambda: media.counters["frames_from_agent"] > 10)
            # the caller's side stops ticking for a second; the agent keeps talking
            worst = 0.0
            for _ in range(50):
                await asyncio.sleep(0.02)
                worst = max(worst, media.queued_ms()["to_caller"])
            assert 0 < worst <= MAX_QUEUE_FRAMES * 20
            stats = await media.stats()
            assert stats["frames_dropped_to_caller"] >= 40
            # it comes back: the newest audio is there at once, the delay is bounded
            out = party(tone(CALLER_HZ, RATE)(0, FRAME), loop_time())
            assert rms_dbfs(to_float(out)) > -30
            # a burst of ticks towards the agent (a media clock catching up)
            for k in range(20):
                party(tone(CALLER_HZ, RATE)(k * FRAME, FRAME), loop_time())
                assert media.queued_ms()["to_agent"] <= MAX_QUEUE_FRAMES * 20
            assert media.counters["to_agent_dropped"] >= 10
        finally:
            await agent.close()
            await media.close()

    run(main)


def loop_time() -> float:
    return asyncio.get_running_loop().time()


def test_fifo_keeps_one_spare_frame_and_trims_a_second() -> None:
    from collections import Counter
    stats: Counter[str] = Counter()
    fifo = _Fifo("x", stats, spare_frames=1)
    fifo.reset(160)
    fifo.push(np.ones(480, np.int16))  # a burst: three frames at once
    for _ in range(120):  # then one in, one out: the excess would stand for ever
        fifo.push(np.ones(160, np.int16))
        assert fifo.pull(160) is not None
    # the first push overflowed (four frames: the oldest went); after a second the second
    # spare frame was trimmed; the last spare stays
    assert stats["x_dropped"] == 1 and stats["x_trimmed"] == 1 and fifo.queued == 160
    fifo.push(np.ones(800, np.int16))
    assert fifo.queued == 480 and stats["x_dropped"] == 4
    assert fifo.pull(160) is not None and fifo.pull(160) is not None and fifo.pull(160) is not None
    assert fifo.pull(160) is None and stats["x_underruns"] == 1
    # towards the agent no spare is kept: half a frame left over by a resampler's start goes
    locked = _Fifo("y", stats, spare_frames=0)
    locked.reset(160)
    locked.push(np.ones(80, np.int16))
    for _ in range(60):
        locked.push(np.ones(160, np.int16))
        assert locked.pull(160) is not None
    assert stats["y_trimmed"] == 1 and locked.queued == 0


# -- ICE configuration ----------------------------------------------------------------------------

def _stun_of(pc: RTCPeerConnection) -> object:
    gatherer = pc.getTransceivers()[0].receiver.transport.transport.iceGatherer
    return gatherer._connection.stun_server


def test_no_ice_servers_means_no_stun() -> None:
    async def main() -> None:
        media = AgentMedia(ice_servers=[])
        assert media.configuration.iceServers == []
        agent = FakeAgent(tone(AGENT_HZ, AGENT_RATE))
        await agent.connect(media)
        try:
            assert _stun_of(media._pc) is None
            # the contrast: aiortc's default configuration would ask Google's STUN server
            default = RTCPeerConnection()
            default.addTransceiver("audio")
            assert _stun_of(default) == ("stun.l.google.com", 19302)
            await default.close()
            # configured servers are passed as given (empty credentials become None)
            stun = AgentMedia([{"urls": ["stun:127.0.0.1:3478"], "username": "", "credential": ""}])
            assert stun.configuration.iceServers == [RTCIceServer(urls=["stun:127.0.0.1:3478"])]
            probe = RTCPeerConnection(stun.configuration)
            probe.addTransceiver("audio")
            assert _stun_of(probe) == ("127.0.0.1", 3478)
            await probe.close()
        finally:
            await agent.close()
            await media.close()

    run(main)
