"""``softphone`` command line. The agent client itself arrives with its own issue; today this
lists audio devices, which is what an agent's first support call usually needs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from acd import __version__

__all__ = ["main"]


def list_devices() -> int:
    try:
        import sounddevice as sd
    except OSError as exc:  # PortAudio missing
        sys.stderr.write(f"audio unavailable: {exc} (install libportaudio2)\n")
        return 1
    devices = sd.query_devices()
    apis = sd.query_hostapis()
    if not len(devices):
        sys.stdout.write("no audio devices found\n")
        return 1
    for index, dev in enumerate(devices):
        api = apis[dev["hostapi"]]["name"]
        sys.stdout.write(f"{index:3d}  {dev['name']} [{api}] in={dev['max_input_channels']} "
                         f"out={dev['max_output_channels']} rate={dev['default_samplerate']:.0f}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="softphone", description="Homeline agent softphone")
    p.add_argument("--version", action="version", version=f"softphone (Homeline) {__version__}")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    args = p.parse_args(argv)
    if args.list_devices:
        return list_devices()
    p.print_usage(sys.stderr)
    sys.stderr.write("softphone: the agent client is not available in this version; see README\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
