"""media.transport on real loopback sockets: latching, source checks, bad packets, media clock."""

from __future__ import annotations

import asyncio
import socket

import pytest

from media.errors import MediaError
from media.rtp import RtpPacket
from media.transport import MediaClock, PortPool, RtpEndpoint


def udp(host: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(1)
    return s


def free_even_port() -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1] & ~1
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                b.bind(("127.0.0.1", port))
                c.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


PKT = RtpPacket(0, 1, 160, 0x1234, b"\xff" * 160).to_bytes()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.005)


def test_port_pool_even_ports_and_exhaustion() -> None:
    pool = PortPool(20001, 20010)
    ports = {pool.take() for _ in range(4)}
    assert all(p % 2 == 0 and 20001 <= p < 20010 for p in ports) and len(ports) == 4
    with pytest.raises(MediaError):
        pool.take()
    pool.give_back(ports.pop())
    assert pool.take() % 2 == 0


def test_strict_latching_follows_the_signalled_ip_and_drops_others() -> None:
    async def run() -> None:
        got: list[RtpPacket] = []
        ep = RtpEndpoint("127.0.0.1", free_even_port(), on_rtp=lambda p, now: got.append(p))
        await ep.open()
        peer = udp()
        stranger = udp("127.0.0.2")
        ep.set_remote("127.0.0.1", 9)  # SDP says port 9; the packets come from another port
        try:
            peer.sendto(PKT, ("127.0.0.1", ep.port))
            stranger.sendto(PKT, ("127.0.0.1", ep.port))
            peer.sendto(b"\x00junk", ("127.0.0.1", ep.port))
            await settle()
            assert len(got) == 1 and ep.stats["wrong_source"] == 1 and ep.stats["malformed_rtp"] == 1
            assert ep.latched == peer.getsockname()  # symmetric RTP: we answer where it came from
            ep.send_rtp(PKT)
            assert peer.recv(2048) == PKT
        finally:
            ep.close()
            peer.close()
            stranger.close()

    asyncio.run(run())


def test_nat_mode_latches_first_source_and_locks() -> None:
    async def run() -> None:
        ep = RtpEndpoint("127.0.0.1", free_even_port(), nat=True)
        await ep.open()
        ep.set_remote("192.0.2.1", 4000)  # a private/unreachable address in SDP
        first, second = udp(), udp("127.0.0.3")
        try:
            first.sendto(PKT, ("127.0.0.1", ep.port))
            await settle()
            second.sendto(PKT, ("127.0.0.1", ep.port))
            await settle()
            assert ep.latched == first.getsockname() and ep.stats["wrong_source"] == 1
            # a re-INVITE with a new address starts latching again
            ep.set_remote("192.0.2.1", 4002)
            assert ep.latched is None
        finally:
            ep.close()
            first.close()
            second.close()

    asyncio.run(run())


def test_rtcp_socket_is_port_plus_one() -> None:
    async def run() -> None:
        seen: list[bytes] = []
        ep = RtpEndpoint("127.0.0.1", free_even_port(), on_rtcp=lambda d, now: seen.append(d))
        await ep.open()
        peer = udp()
        ep.set_remote("127.0.0.1", peer.getsockname()[1] - 1)
        try:
            rr = bytes([0x80, 201, 0, 1]) + b"\x00\x00\x12\x34"
            peer.sendto(rr, ("127.0.0.1", ep.port + 1))
            peer.sendto(b"\x01", ("127.0.0.1", ep.port + 1))
            await settle()
            assert seen == [rr] and ep.stats["malformed_rtcp"] == 1
        finally:
            ep.close()
            peer.close()

    asyncio.run(run())


@pytest.mark.realtime
def test_media_clock_ticks_on_an_absolute_schedule() -> None:
    async def run() -> list[float]:
        clock = MediaClock(0.01)
        ticks: list[float] = []
        token = clock.add(ticks.append)
        await asyncio.sleep(0.25)
        clock.remove(token)
        return ticks

    ticks = asyncio.run(run())
    assert len(ticks) >= 20
    steps = {round(b - a, 6) for a, b in zip(ticks, ticks[1:])}
    assert steps == {0.01}  # scheduled times never drift, however late a tick ran


@pytest.mark.realtime
def test_media_clock_phases_shift_a_callback_by_whole_slots() -> None:
    """Slots of 2.5 ms: a callback shifted 3 slots later ticks 7.5 ms after the phase-0 one, then
    1 slot earlier (5 ms after); every callback keeps one tick per period, none is lost or doubled."""
    async def run() -> tuple[list[float], list[float], MediaClock, int]:
        clock = MediaClock(0.02, slots=8)
        base: list[float] = []
        moved: list[float] = []
        a = clock.add(base.append)
        b = clock.add(moved.append)
        await asyncio.sleep(0.1)
        assert clock.shift(b, 3) == 3
        await asyncio.sleep(0.1)
        assert clock.shift(b, -1) == 2 and clock.phase(a) == 0
        await asyncio.sleep(0.1)
        clock.remove(a)
        clock.remove(b)
        return base, moved, clock, len(base)

    base, moved, clock, n = asyncio.run(run())
    assert abs(len(moved) - n) <= 1
    assert {round(y - x, 6) for x, y in zip(base, base[1:])} == {0.02}
    steps = [round(y - x, 4) for x, y in zip(moved, moved[1:])]
    assert steps.count(0.0275) == 1 and steps.count(0.0175) == 1 and set(steps) == {0.02, 0.0275, 0.0175}, steps
    offsets = {round((t - base[0]) % 0.02, 4) for t in moved[-3:]}
    assert offsets == {0.005}
    assert clock.stats["phase_shifts"] == 2 and clock._handle is None
    with pytest.raises(ValueError):
        MediaClock(0.02, slots=0)
