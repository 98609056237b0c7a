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


def test_each_frame_goes_when_the_next_arrives_not_four_later() -> None:
    ours, theirs = feed(LowDelayJitterBuffer(), packets(50)), feed(JitterBuffer(16, prefetch=4), packets(50))
    assert ours == [(k + 1, k) for k in range(49)]  # one frame (20 ms) behind, across the seq wrap
    assert theirs[0] == (4, 0) and all(i - k == 4 for i, k in theirs)  # aiortc: four frames (80 ms)


def test_a_lost_packet_is_given_up_not_waited_for() -> None:
    buffer = LowDelayJitterBuffer()
    ours = feed(buffer, packets(60, lost={20}))
    theirs = feed(JitterBuffer(16, prefetch=4), packets(60, lost={20}))
    frames = [k for _, k in ours]
    assert frames == [k for k in range(59) if k != 20] and buffer.stats["skipped"] == 1
    # frame 19 goes when 21 arrives (arrival 20), and the buffer stays one frame deep: no lasting delay
    assert (20, 19) in ours and all(i == k for i, k in ours if k > 20)
    # aiortc's own: nothing for 16 packets behind the hole, then the rest in a burst
    stalled = [i for i, k in theirs if k > 20]
    assert stalled[0] - 19 >= 14


def test_a_packet_overtaken_is_given_up_and_the_delay_stays_one_frame() -> None:
    order = list(range(30))
    order[10], order[11] = 11, 10  # 10 arrives after 11: too late, it is not waited for
    buffer = LowDelayJitterBuffer()
    out = feed(buffer, packets(30, order=order))
    assert [k for _, k in out] == [k for k in range(29) if k != 10] and buffer.stats["skipped"] == 1
    assert all(i == k + 1 for i, k in out if k > 11)


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
