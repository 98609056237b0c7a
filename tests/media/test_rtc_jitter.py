"""The low-delay jitter buffer swapped into aiortc's audio receivers (media/rtc_jitter.py),
packet by packet, beside aiortc's own buffer fed the same packets."""

from __future__ import annotations

import numpy as np
from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from media.rtc_jitter import LowDelayJitterBuffer, PacketDecoder, use_low_delay_jitter_buffer


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


def test_with_a_sink_packets_skip_aiortcs_decoder_and_carry_their_losses() -> None:
    got: list[tuple[int, int]] = []
    buffer = LowDelayJitterBuffer(sink=lambda p, lost: got.append((int.from_bytes(p.payload, "big"), lost)))
    assert feed(buffer, packets(12, lost={3, 7, 8})) == []  # nothing for aiortc's decoder thread
    assert got == [(0, 0), (1, 0), (2, 0), (4, 1), (5, 0), (6, 0), (9, 2), (10, 0), (11, 0)]


def _opus_packets(rate: int, freq: float, n: int) -> list[bytes]:
    from media.codecs import make_codec

    enc = make_codec("opus", sample_rate=48000)
    t = np.arange(n * 960) / 48000
    pcm = (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return [enc.encode(pcm[i * 960:(i + 1) * 960]) for i in range(n)]


def test_packet_decoder_decodes_opus_at_the_listeners_rate_and_conceals_losses() -> None:
    payloads = _opus_packets(48000, 700.0, 50)
    decoder = PacketDecoder({111: ("opus", 48000), 0: ("pcmu", 8000)}, rate=8000)
    assert decoder.pcm_rate(111) == 8000 and decoder.pcm_rate(0) == 8000 and decoder.pcm_rate(9) == 0
    out: list[np.ndarray] = []
    lost = 0
    for k, payload in enumerate(payloads):
        if k in (20, 30, 31):
            lost += 1
            continue
        frames = decoder.decode(payload, 111, lost)
        assert len(frames) == 1 + lost and all(len(f) == 160 for f in frames)  # 20 ms at 8 kHz
        out.extend(frames)
        lost = 0
    audio = np.concatenate(out).astype(np.float64)
    assert len(audio) == 50 * 160 and decoder.stats["concealed"] == 3  # the timeline never moves
    spectrum = np.abs(np.fft.rfft(audio[1600:] * np.hanning(len(audio) - 1600)))
    assert abs(np.argmax(spectrum) * 8000 / (len(audio) - 1600) - 700.0) < 10
    # concealment, not silence: no 20 ms block falls 20 dB below the tone (libopus's CELT
    # concealment of a pure tone dips to about -11 dB in the frame after a single loss)
    blocks = audio[1600:].reshape(-1, 160)
    rms = np.sqrt(np.mean(blocks ** 2, axis=1))
    assert rms.min() > 0.1 * np.median(rms), np.round(rms).tolist()
    # a wider listener: the same stream now decodes at 16 kHz; a corrupt payload is concealed
    decoder.rate = 16000
    assert [len(f) for f in decoder.decode(payloads[0], 111)] == [320]
    assert [len(f) for f in decoder.decode(b"", 111)] == [320] and decoder.stats["corrupt"] == 1
    assert decoder.decode(b"\x00" * 160, 9) == [] and decoder.stats["unknown_pt"] == 1
    decoder.codecs[101] = ("telephone-event", 8000)  # negotiated, but not a codec of ours
    assert decoder.decode(b"\x00" * 4, 101) == [] and decoder.stats["unknown_codec"] == 1
    assert decoder.pcm_rate(101) == 0


def test_a_failing_sink_is_counted_and_never_reaches_aiortc() -> None:
    def sink(packet: RtpPacket, lost: int) -> None:
        raise RuntimeError("a bug behind the buffer")

    buffer = LowDelayJitterBuffer(sink=sink)
    assert feed(buffer, packets(3)) == [] and buffer.stats["sink_errors"] == 3


def test_packet_decoder_g711_losses_are_concealed_by_pitch_repetition() -> None:
    from media.codecs import make_codec

    enc = make_codec("pcmu")
    t = np.arange(30 * 160) / 8000
    pcm = (8000 * np.sin(2 * np.pi * 500.0 * t)).astype(np.int16)
    decoder = PacketDecoder({0: ("pcmu", 8000)}, rate=48000)  # G.711 stays at 8 kHz
    out = []
    for k in range(30):
        if k != 12:
            out.extend(decoder.decode(enc.encode(pcm[k * 160:(k + 1) * 160]), 0, int(k == 13)))
    audio = np.concatenate(out).astype(np.float64)
    assert len(audio) == 30 * 160 and decoder.stats["concealed"] == 1
    assert np.sqrt(np.mean(audio[12 * 160:13 * 160] ** 2)) > 0.5 * np.sqrt(np.mean(audio ** 2))
