"""``acd`` command line: serve, check-config, status, originate, erlang, simulate, prompts,
recordings, agents, cdr."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence

from acd import __version__
from acd.config import load_config
from acd.errors import AcdError, ConfigError

__all__ = ["main"]

log = logging.getLogger("acd")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _run_loop(coro: object) -> object:
    try:
        import uvloop

        return uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]


def cmd_serve(args: argparse.Namespace) -> int:
    config = load_config(args.config_file or args.config)
    setup_logging(args.log_level or config.server.log_level)
    from acd.server import Server

    log.info("Homeline %s starting with %s", __version__, config.file)
    server = Server(config)
    try:
        _run_loop(server.run())
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    sys.stdout.write(f"{config.file}: ok ({len(config.trunks)} trunk(s), "
                     f"{len(config.sip.listen)} SIP listener(s), {len(config.dialplan)} dial-plan rule(s))\n")
    return 0


def _control(config_path: str, request: dict) -> dict:
    config = load_config(config_path)
    from acd.control import control

    return _run_loop(control(config.server.data_dir, request))  # type: ignore[return-value]


def cmd_status(args: argparse.Namespace) -> int:
    status = _control(args.config, {"cmd": "status"})
    sys.stdout.write(json.dumps(status, indent=2, sort_keys=True) + "\n")
    return 0 if "error" not in status else 1


def cmd_originate(args: argparse.Namespace) -> int:
    reply = _control(args.config, {"cmd": "originate", "trunk": args.trunk, "to": args.to,
                                   "duration": args.duration, "ring_timeout": args.ring_timeout,
                                   "tone": args.tone})
    sys.stdout.write(json.dumps(reply) + "\n")
    return 0 if "error" not in reply else 1


def cmd_erlang(args: argparse.Namespace) -> int:
    from acd.erlang import agents_for_service_level, erlang_a, erlang_c

    if args.service_level is not None:
        result = agents_for_service_level(args.calls_per_hour, args.aht, args.service_level / 100
                                          if args.service_level > 1 else args.service_level,
                                          args.target_seconds, args.patience)
    elif args.agents is None:
        raise AcdError("give --agents N, or --service-level X to find the agents needed")
    elif args.patience:
        result = erlang_a(args.calls_per_hour, args.aht, args.agents, args.patience, args.target_seconds)
    else:
        result = erlang_c(args.calls_per_hour, args.aht, args.agents, args.target_seconds)
    if args.json:
        sys.stdout.write(json.dumps(result.as_dict()) + "\n")
        return 0
    model = "Erlang A" if result.model == "erlang-a" else "Erlang C"
    lines = [
        f"{model}: {result.calls_per_hour:g} calls/h, AHT {result.aht_s:g} s, {result.agents} agents "
        f"({result.offered_erlangs:.2f} Erlang offered)",
        f"  P(wait)        {result.p_wait:.4f}",
        f"  ASA            {result.asa_s:.2f} s",
        f"  service level  {100 * result.service_level:.1f} % answered within {result.target_s:g} s",
        f"  occupancy      {100 * result.occupancy:.1f} %",
    ]
    if result.patience_s:
        lines.append(f"  abandonment    {100 * result.abandon_rate:.2f} % (mean patience {result.patience_s:g} s)")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from acd.simulate import SimParams, simulate
    from acd.simulate_stats import format_report

    engine = load_config(args.config).engine if args.config else None
    params = SimParams(args.calls_per_hour, args.aht, args.agents, args.hours, args.seed,
                       args.patience, args.target_seconds, args.wrapup, args.ring_delay,
                       args.warmup_hours, args.config or "")
    result = simulate(params, engine)
    sys.stdout.write((json.dumps(result.as_dict()) if args.json else format_report(result)) + "\n")
    return 0


def cmd_prompts_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from media.errors import MediaError
    from media.prompt_build import build_default_moh, build_prompts

    if args.dir:
        directory = Path(args.dir)
    elif args.config:
        directory = load_config(args.config).server.data_dir / "prompts"
    else:
        directory = Path("data/prompts")
    moh_dir = directory.parent / "moh"  # music on hold sits next to the prompts
    try:
        built = build_prompts(directory, voice=args.voice, rate=args.rate, force=args.force)
        music = build_default_moh(moh_dir, rate=args.rate)
    except MediaError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    sys.stdout.write(f"{directory}: {len(built)} prompt(s) built\n")
    sys.stdout.write(f"{music}: default music on hold written\n" if music
                     else f"{moh_dir}: music on hold present, kept\n")
    return 0


def cmd_recordings_repair(args: argparse.Namespace) -> int:
    from media.errors import MediaError
    from media.recording import repair

    status = 0
    for name in args.files:
        try:
            r = repair(name)
        except MediaError as exc:
            sys.stderr.write(f"{exc}\n")
            status = 1
            continue
        if r.changed:
            cut = f", {r.truncated_bytes} byte(s) of a partial frame cut" if r.truncated_bytes else ""
            sys.stdout.write(f"{name}: repaired: header said {r.header_duration:.3f} s, "
                             f"now {r.duration:.3f} s{cut}\n")
        else:
            sys.stdout.write(f"{name}: ok, {r.duration:.3f} s, nothing to repair\n")
    return status


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="acd", description="Homeline contact-center server")
    p.add_argument("--version", action="version", version=f"acd (Homeline) {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the server")
    s.add_argument("config_file", nargs="?", help="configuration file (TOML)")
    s.add_argument("--config", default="config/demo.toml", help="configuration file (TOML)")
    s.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    s.set_defaults(func=cmd_serve)
    c = sub.add_parser("check-config", help="validate a configuration file")
    c.add_argument("file")
    c.set_defaults(func=cmd_check)
    st = sub.add_parser("status", help="show a running server's status (trunks, calls, counters)")
    st.add_argument("--config", default="config/demo.toml")
    st.set_defaults(func=cmd_status)
    o = sub.add_parser("originate", help="have a running server dial a number through a trunk "
                                         "(the answered call is connected to the echo test)")
    o.add_argument("--config", default="config/demo.toml")
    o.add_argument("--trunk", required=True)
    o.add_argument("--to", required=True, help="number or user to dial at the trunk's proxy")
    o.add_argument("--duration", type=float, help="hang up after this many seconds")
    o.add_argument("--ring-timeout", type=float, default=60.0, help="cancel if not answered in this time")
    o.add_argument("--tone", type=float, metavar="HZ",
                   help="send a test tone instead of echoing, and log the frequency and level heard back")
    o.set_defaults(func=cmd_originate)
    e = sub.add_parser("erlang", help="staffing: Erlang C, or Erlang A with --patience; "
                                      "--service-level finds the agents needed")
    e.add_argument("--calls-per-hour", type=float, required=True)
    e.add_argument("--aht", type=float, required=True, help="average handle time, seconds")
    e.add_argument("--agents", type=int)
    e.add_argument("--target-seconds", type=float, default=20.0, help="service-level target (default 20 s)")
    e.add_argument("--patience", type=float, help="mean caller patience in seconds (Erlang A)")
    e.add_argument("--service-level", type=float, help="find the fewest agents reaching this (0.8 or 80)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_erlang)
    sm = sub.add_parser("simulate", help="simulate calls on the real ACD engine (virtual time) "
                                         "beside the Erlang C (or A) prediction")
    sm.add_argument("--config", help="use this file's queues and agents (arrivals spread evenly "
                                     "over the queues with members; R and AHT are overall)")
    sm.add_argument("--calls-per-hour", type=float, required=True, help="Poisson arrival rate")
    sm.add_argument("--aht", type=float, required=True, help="mean talk time, seconds (exponential)")
    sm.add_argument("--agents", type=int, help="agents in the one simulated queue (not with --config)")
    sm.add_argument("--hours", type=float, required=True, help="simulated hours, warm-up included")
    sm.add_argument("--seed", type=int, required=True)
    sm.add_argument("--patience", type=float, help="mean caller patience, seconds (exponential; Erlang A)")
    sm.add_argument("--target-seconds", type=float, default=20.0, help="service-level target (default 20 s)")
    sm.add_argument("--wrapup", type=float, default=0.0, help="wrap-up seconds after each call (default 0)")
    sm.add_argument("--ring-delay", type=float, default=0.0, help="seconds before agents answer (default 0)")
    sm.add_argument("--warmup-hours", type=float, help="excluded from the figures (default 1 h or 10 %%)")
    sm.add_argument("--json", action="store_true")
    sm.set_defaults(func=cmd_simulate)
    sm.error = lambda msg: sm.exit(1, f"{sm.format_usage()}{sm.prog}: error: {msg}\n")  # type: ignore
    pr = sub.add_parser("prompts", help="voice prompts").add_subparsers(dest="action", required=True)
    pb = pr.add_parser("build", help="speak the missing standard prompts with espeak-ng, and write "
                                     "default hold music (in the sibling moh/) if there is none")
    pb.add_argument("--dir", help="prompts directory (default: DATA_DIR/prompts with --config, "
                                  "else ./data/prompts)")
    pb.add_argument("--config", help="configuration file whose server.data_dir holds the prompts")
    pb.add_argument("--voice", default="en-us+f3", help="espeak-ng voice (default en-us+f3)")
    pb.add_argument("--rate", type=int, default=16000, help="sample rate of the files (default 16000)")
    pb.add_argument("--force", action="store_true", help="rebuild all, replacing recorded prompts too")
    pb.set_defaults(func=cmd_prompts_build)
    rc = sub.add_parser("recordings", help="call recordings").add_subparsers(dest="action", required=True)
    rr = rc.add_parser("repair", help="fix the WAV header of recordings cut short by a crash")
    rr.add_argument("files", nargs="+", metavar="FILE")
    rr.set_defaults(func=cmd_recordings_repair)
    from acd.store.commands import add_commands  # acd agents ..., acd cdr

    add_commands(sub)
    from acd.loopback.cli import add_parser as add_loopback  # acd loopback TARGET_URI ...

    add_loopback(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")  # FILE: KEY: REASON
        return 1
    except (AcdError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
