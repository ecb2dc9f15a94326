"""The ``natpass`` command: one entry point, each subsystem registers its own subcommands.

Each entry of ``SUBCOMMANDS`` is a ``register(subparsers)`` that adds its parsers and sets
``func`` (called with the parsed args, returning the exit status). Modules import their heavy
dependencies inside ``func`` so that ``natpass --help`` stays fast.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any

from natpass import __version__
from natpass.diagnose import cli as diagnose_cli
from natpass.lab import cli as lab_cli
from natpass.router import cli as config_cli
from natpass.router import cli_admin, cli_forward, cli_replay, cli_run, cli_web
from natpass.web import start_web

# Each registers its subcommands; `run` gets the web admin here, at the top, because the web
# pages show the audit and the advice of natpass.diagnose, a layer above the router.
SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (
    config_cli.register,  # config check|example|backup|restore|history|rollback
    functools.partial(cli_run.register, services=(start_web,)),  # run
    cli_admin.register,  # status, reload, switch
    cli_forward.register,  # forward list|add|remove
    cli_web.register,  # passwd, token
    cli_replay.register,  # replay
    lab_cli.register,  # lab up|down|exec|status|demo
    diagnose_cli.register,  # diagnose, advise, audit
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
    for register in SUBCOMMANDS:
        register(sub)
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
