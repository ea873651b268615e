"""`python -m falsify.warm start|stop|status|serve`: the warm interpreter's command line."""

from __future__ import annotations

import argparse
import json
import sys

from falsify.warm import client
from falsify.warm.protocol import DEFAULT_IDLE_S, SERVED_MARKEXPR, START_COMMAND, WarmError, holder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m falsify.warm",
                                     description="A warm interpreter that makes `pytest -m tier1` skip the torch/transformers imports.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start it in the background (replaces a stale one)")
    p_serve = sub.add_parser("serve", help="run it in the foreground")
    for p in (p_start, p_serve):
        p.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_S, metavar="S",
                       help=f"exit after S seconds without a run (default {DEFAULT_IDLE_S})")
    p_status = sub.add_parser("status", help="what is running: pid, runs served, whether this environment may use it")
    p_status.add_argument("--json", action="store_true")
    sub.add_parser("stop", help="stop it")
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            from falsify.warm import server

            return server.serve(args.idle_timeout)
        if args.command == "start":
            status = client.start(args.idle_timeout)
            verb = "already running" if status.get("already_running") else f"started in {status['preload_s']} s"
            print(f"warm interpreter {verb}: pid {status['pid']}, preloaded "
                  + ", ".join(f"{k} {v}".strip() for k, v in status["versions"].items())
                  + f"; serves `pytest -m {SERVED_MARKEXPR}` from {status['prefix']}; exits after "
                  f"{status['idle_timeout_s']:.0f} s idle")
            return 0
        if args.command == "stop":
            pid, exiting = client.stop()
            print(f"stopped warm interpreter pid {pid}" + (" (it is still exiting)" if exiting else ""))
            return 0
        return show_status(args.json)
    except WarmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def show_status(as_json: bool) -> int:
    """What is running; exit 1 when no server answers (one may still be starting)."""
    try:
        status = client.status()
    except WarmError as exc:
        starting = holder()
        if starting is None:
            raise WarmError(f"{exc}; start one with: {START_COMMAND}") from None
        raise WarmError(f"a warm interpreter is starting (pid {starting}, preloading); it does not answer yet") from None
    if as_json:
        print(json.dumps(status, indent=2))
    else:
        why = status["why_not"]
        print(f"warm interpreter pid {status['pid']}, up {status['uptime_s']:.0f} s, {status['runs']} runs, "
              f"preloaded in {status['preload_s']} s; " + ("usable from this environment" if why is None else f"NOT usable: {why}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
