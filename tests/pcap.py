"""Write RTP streams as pcap files (Ethernet/IPv4/UDP) for sipp's play_pcap_audio."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from media.codecs.g711 import ulaw_encode


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def write_rtp_pcap(path: Path, payloads: list[bytes], *, payload_type: int = 0, ptime: float = 0.02,
                   src_port: int = 16000, dst_port: int = 6000, ssrc: int = 0x5EED) -> None:
    """One RTP packet per payload, ``ptime`` apart, 127.0.0.1 → 127.0.0.1 (sipp rewrites addresses)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # DLT_EN10MB
    samples = int(8000 * ptime)
    for i, payload in enumerate(payloads):
        rtp = struct.pack("!BBHII", 0x80, (0x80 if i == 0 else 0) | payload_type, i, i * samples, ssrc) + payload
        udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(rtp), 0) + rtp
        ip_head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                              bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
        ip_head = ip_head[:10] + struct.pack("!H", _checksum(ip_head)) + ip_head[12:]
        frame = b"\0" * 6 + b"\0" * 6 + b"\x08\x00" + ip_head + udp
        t = i * ptime
        out.append(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def pcmu_tone_pcap(path: Path, freq: float, seconds: float, level: float = 0.3) -> None:
    n = int(8000 * seconds) // 160 * 160
    pcm = (level * 32767 * np.sin(2 * np.pi * freq * np.arange(n) / 8000)).astype(np.int16)
    write_rtp_pcap(path, [ulaw_encode(pcm[i:i + 160]) for i in range(0, n, 160)])
