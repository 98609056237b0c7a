"""The softphone's media (softphone/media.py) against the server's agent leg in one process,
real aiortc peer connections both ways over the host's own addresses: what the server sends is
decoded by our codecs as it arrives, and the packets lost on the way are concealed by the codec
(Opus PLC/FEC, G.711 Appendix I), never played as silence or waited for."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from acd.web.agent_media import AgentMedia
from media.rtc_jitter import LowDelayJitterBuffer
from softphone.fileaudio import FileAudio
from softphone.media import FRAME_RATE, FRAME_SAMPLES, SoftphoneMedia
from tests.audio import dominant_frequency

pytestmark = pytest.mark.realtime  # real aiortc timing: see tests/conftest.py

CALLER_HZ = 600.0


class Headset(FileAudio):
    """A silent microphone; keeps every frame played."""

    def __init__(self) -> None:
        super().__init__()
        self.heard: list[np.ndarray] = []

    def play(self, frame: np.ndarray) -> None:
        super().play(frame)
        self.heard.append(frame.copy())


@pytest.mark.parametrize("codec", ["opus", "pcmu"])
def test_packets_lost_on_the_way_to_the_softphone_are_concealed_by_the_codec(
        codec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    add = LowDelayJitterBuffer.add  # one packet in 15 never reaches either receive buffer
    monkeypatch.setattr(LowDelayJitterBuffer, "add",
                        lambda self, packet: (False, None) if packet.sequence_number % 15 == 7 else add(self, packet))

    async def main() -> tuple[list[np.ndarray], dict[str, int]]:
        server = AgentMedia(codec=codec, label="server")
        headset = Headset()
        phone = SoftphoneMedia(headset, server.accept_offer, codecs=[codec])
        await phone.start()
        party = server.attach(8000, 160)
        loop = asyncio.get_running_loop()
        t0, k = loop.time(), 0
        try:
            while loop.time() < t0 + 3.0:  # the caller's side, ticked like the media clock
                k += 1
                await asyncio.sleep(max(0.0, t0 + 0.02 * k - loop.time()))
                n = np.arange(160 * k, 160 * (k + 1))
                party((6000 * np.sin(2 * np.pi * CALLER_HZ * n / 8000)).astype(np.int16), loop.time())
                if k == 50:
                    start = len(headset.heard)  # after a second: connected, cushions built
        finally:
            await phone.close()
            await server.close()
        return headset.heard[start:], dict(phone.counters)

    heard, counters = asyncio.run(asyncio.wait_for(main(), 20))
    assert counters["frames_in"] > 100 and counters["frames_concealed"] >= 5, counters
    audio = np.concatenate(heard).astype(np.float64) / 32768
    assert len(audio) >= 1.5 * FRAME_RATE
    levels = 20 * np.log10(np.sqrt(np.mean(audio[:len(audio) // FRAME_SAMPLES * FRAME_SAMPLES]
                                           .reshape(-1, FRAME_SAMPLES) ** 2, axis=1)) + 1e-9)
    assert levels.min() > -35, np.round(levels).tolist()  # no silent 20 ms block
    assert abs(dominant_frequency(audio, FRAME_RATE, skip_s=0) - CALLER_HZ) < 10

