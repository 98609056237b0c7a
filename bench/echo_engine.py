#!/usr/bin/env python3
"""The media engine's echo for bench/media_bench.py: N PCMU call legs (``acd.media_session``:
RTP endpoint, jitter buffer, decode, PLC, encode, RTCP) on one media clock, as the server runs
them. Prints 'ready'; on SIGTERM prints one JSON line of counters and exits.

    python bench/echo_engine.py --base 20000 --streams 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from acd.media_session import CallMedia  # noqa: E402
from media.stream import StreamParams  # noqa: E402
from media.transport import MediaClock  # noqa: E402


async def serve(host: str, base: int, streams: int) -> None:
    loop = asyncio.get_running_loop()
    clock = MediaClock(0.02)
    legs = []
    for i in range(streams):
        leg = CallMedia(clock, host, base + 2 * i, StreamParams(0, "PCMU"), loop.time(), nat=True)
        await leg.open(("127.0.0.1", 9))  # the generator's address is learnt by latching
        legs.append(leg)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await stop.wait()
    totals: Counter[str] = Counter(clock.stats)
    for leg in legs:
        totals.update(leg.counters())
        leg.close(loop.time())
    sys.stdout.write(json.dumps(dict(totals)) + "\n")
    sys.stdout.flush()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--base", type=int, required=True)
    ap.add_argument("--streams", type=int, required=True)
    args = ap.parse_args()
    import uvloop

    uvloop.run(serve(args.host, args.base, args.streams))
    return 0


if __name__ == "__main__":
    sys.exit(main())
