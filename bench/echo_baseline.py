#!/usr/bin/env python3
"""The baseline echo for bench/media_bench.py: a plain asyncio UDP reflector on N even ports,
no parsing, no media engine. Prints 'ready' when listening; runs until killed.

    python bench/echo_baseline.py --base 20000 --streams 200 [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import sys


class Reflect(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


async def serve(host: str, base: int, streams: int) -> None:
    loop = asyncio.get_running_loop()
    for i in range(streams):
        await loop.create_datagram_endpoint(Reflect, local_addr=(host, base + 2 * i))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--base", type=int, required=True)
    ap.add_argument("--streams", type=int, required=True)
    ap.add_argument("--uvloop", action="store_true")
    args = ap.parse_args()
    coro = serve(args.host, args.base, args.streams)
    if args.uvloop:
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
