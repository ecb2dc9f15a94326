"""The ``natpass`` command: one entry point, each subsystem registers its own subcommands.

Each module in ``SUBCOMMANDS`` has ``register(subparsers)`` that adds its parsers and sets
``func`` (called with the parsed args, returning the exit status). Modules import their heavy
dependencies inside ``func`` so that ``natpass --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

SUBCOMMANDS = (
    "natpass.router.cli",  # config check|example
    "natpass.router.cli_run",  # run
    "natpass.router.cli_admin",  # status, reload, switch
    "natpass.router.cli_web",  # passwd, token
    "natpass.datapath.cli",  # replay
    "natpass.lab.cli",  # lab up|down|exec|status|demo
    "natpass.diagnose.cli",  # diagnose, advise, audit
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="natpass",
        description=(
            "A NAT router for VPN passthrough (PPTP, IPsec, L2TP/IPsec) with per-protocol switches, "
            "an offline what-if replay of captures, a namespace lab with real VPN peers, and a "
            "diagnosis of why a VPN will not connect."
        ),
        epilog="Run 'natpass COMMAND --help' for the options of one command.",
    )
    from natpass import __version__

    parser.add_argument("--version", action="version", version=f"natpass {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # subsystem not built yet
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("natpass: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
