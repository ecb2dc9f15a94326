"""The ``natpass`` command: one entry point, each subsystem registers its own subcommands.

Each module in ``SUBCOMMANDS`` has ``register(subparsers)`` that adds its parsers and sets
``func`` (called with the parsed args, returning the exit status). Modules import their heavy
dependencies inside ``func`` so that ``natpass --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from natpass import __version__
from natpass.diagnose import cli as diagnose_cli
from natpass.lab import cli as lab_cli
from natpass.router import cli as config_cli
from natpass.router import cli_admin, cli_replay, cli_run

SUBCOMMANDS = (
    config_cli,  # config check|example
    cli_run,  # run
    cli_admin,  # status, reload, switch
    cli_replay,  # replay
    lab_cli,  # lab up|down|exec|status|demo
    diagnose_cli,  # diagnose, advise, audit
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
    parser.add_argument("--version", action="version", version=f"natpass {__version__}")
    parser.set_defaults(func=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int | None] | None = args.func
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
