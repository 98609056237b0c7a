"""The low-delay jitter buffer swapped into aiortc's audio receivers (media/rtc_jitter.py),
packet by packet, beside aiortc's own buffer fed the same packets."""

from __future__ import annotations

from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from media.rtc_jitter import LowDelayJitterBuffer, use_low_delay_jitter_buffer


def packets(n: int, lost: set[int] = frozenset(), order: list[int] | None = None) -> list[RtpPacket]:
    out = []
    for k in order if order is not None else range(n):
        if k not in lost:
            p = RtpPacket(payload_type=111, sequence_number=(65530 + k) & 0xFFFF, timestamp=k * 960,
                          payload=k.to_bytes(2, "big"))
            p._data = p.payload  # what aiortc's receiver sets: the depacketized payload
            out.append(p)
    return out


def feed(buffer: JitterBuffer, pkts: list[RtpPacket]) -> list[tuple[int, int]]:
    """(arrival index, frame number) of each frame handed to the decoder."""
    out = []
    for i, p in enumerate(pkts):
        _, frame = buffer.add(p)
        if frame is not None:
            out.append((i, int.from_bytes(frame.data, "big")))
    return out


def test_each_frame_goes_as_it_arrives_not_four_later() -> None:
    ours, theirs = feed(LowDelayJitterBuffer(), packets(50)), feed(JitterBuffer(16, prefetch=4), packets(50))
    assert ours == [(k, k) for k in range(50)]  # at once, across the sequence number's wrap
    assert theirs[0] == (4, 0) and all(i - k == 4 for i, k in theirs)  # aiortc: four frames later (80 ms)


def test_a_lost_packet_is_given_up_not_waited_for() -> None:
    buffer = LowDelayJitterBuffer()
    ours = feed(buffer, packets(60, lost={20}))
    theirs = feed(JitterBuffer(16, prefetch=4), packets(60, lost={20}))
    assert [k for _, k in ours] == [k for k in range(60) if k != 20] and buffer.stats["skipped"] == 1
    assert all(i == k - (k > 20) for i, k in ours)  # every frame at its own arrival
    # aiortc's own: nothing for 16 packets behind the hole, then the rest in a burst
    stalled = [i for i, k in theirs if k > 20]
    assert stalled[0] - 19 >= 14


def test_late_duplicate_and_restarted_packets() -> None:
    order = list(range(30))
    order[10], order[11] = 11, 10  # 10 arrives after 11: late, dropped (concealed behind)
    buffer = LowDelayJitterBuffer()
    pkts = packets(30, order=order)
    pkts.insert(20, pkts[19])  # a duplicate
    out = feed(buffer, pkts)
    assert [k for _, k in out] == [k for k in range(30) if k != 10]
    assert buffer.stats["skipped"] == 1 and buffer.stats["late"] == 2
    # a jump far ahead (a new stream) is taken as a restart, not as thousands lost
    far = packets(1)[0]
    far.sequence_number = (far.sequence_number + 20000) & 0xFFFF
    assert buffer.add(far)[1] is not None and buffer.stats["skipped"] == 1


def test_the_swap_into_a_real_receiver() -> None:
    async def main() -> None:
        pc = RTCPeerConnection()
        transceiver = pc.addTransceiver("audio")
        installed = use_low_delay_jitter_buffer(transceiver.receiver)
        assert isinstance(installed, LowDelayJitterBuffer)
        assert transceiver.receiver._RTCRtpReceiver__jitter_buffer is installed
        assert use_low_delay_jitter_buffer(object()) is None  # no such attribute: aiortc's stays
        await pc.close()

    import asyncio
    asyncio.run(main())


def test_frames_the_buffer_gave_up_are_concealed_behind_the_decoder() -> None:
    """A 400 Hz tone in 20 ms frames at 48 kHz with frame 10 missing (its pts skipped): the
    concealer returns a continuation of the tone for it, then frame 11 blended in; a jump
    backwards (a new stream) makes nothing up."""
    import numpy as np
    from fractions import Fraction

    from media.rtc_jitter import GapConcealer
    from tests.audio import dominant_frequency

    rate, n = 48000, 960
    t = np.arange(30 * n) / rate
    tone = np.round(12000 * np.sin(2 * np.pi * 400 * t)).astype(np.int16)
    c, out = GapConcealer(), []
    for k in range(30):
        if k == 10:
            continue
        got = c.feed(tone[k * n:(k + 1) * n], 100_000 + k * n, Fraction(1, rate), rate)
        assert len(got) == (2 if k == 11 else 1)
        out.extend(got)
    assert c.stats["concealed"] == 1
    audio = np.concatenate(out)
    assert len(audio) == len(tone)  # the timeline kept: the lost frame's 20 ms are there
    filled = audio[10 * n:11 * n].astype(float)
    assert np.sqrt(np.mean(filled ** 2)) > 0.5 * 12000 / np.sqrt(2)  # not silence
    assert abs(dominant_frequency(filled, rate, skip_s=0) - 400) < 20
    assert np.abs(audio[:10 * n].astype(int) - tone[:10 * n]).max() == 0  # good frames untouched
    assert c.feed(tone[:n], 0, Fraction(1, rate), rate)[0].shape == (n,)  # backwards: a new stream
    assert c.stats["concealed"] == 1
