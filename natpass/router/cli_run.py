"""``natpass run --config FILE``: the live router in the foreground (systemd runs it the same way)."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from natpass.router.daemon import ServiceFactory


def register(sub: Any, services: Sequence[ServiceFactory] = ()) -> None:
    """``natpass run``; ``services`` start beside the router (the CLI passes the web admin)."""
    run = sub.add_parser(
        "run", help="run the router on the LAN and WAN interfaces of this network namespace",
        description="Move real IPv4 packets between the LAN and WAN interfaces named in the config "
        "through the NAT engine (packet sockets; the kernel neither forwards nor NATs). Runs in the "
        "foreground: SIGHUP reloads the config (an invalid file is refused and the running one "
        "kept), SIGTERM/SIGINT stop and remove everything set up. See docs/DATAPATH.md.")
    run.add_argument("--config", "-c", required=True, metavar="FILE", help="natpass.toml")
    run.add_argument("--foreground", action="store_true",
                     help="accepted for clarity: natpass run always stays in the foreground")
    run.add_argument("--datapath", choices=("packet", "hybrid"), default=None,
                     help="overrides [router] datapath: packet (every packet through natpass) or hybrid "
                     "(the kernel forwards ordinary traffic, natpass the VPN protocols)")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=None,
                     help="overrides [router] log_level")
    run.set_defaults(func=functools.partial(_run, services=tuple(services)))


def _run(args: argparse.Namespace, services: Sequence[ServiceFactory] = ()) -> int:
    from natpass.router.config import ConfigError, load_config

    try:
        level = args.log_level or load_config(args.config).log_level
    except ConfigError as exc:
        print(f"natpass: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_daemon(args.config, services, datapath=args.datapath)


def run_daemon(config_path: str, services: Sequence[ServiceFactory] = (), datapath: str | None = None) -> int:
    """Start, loop until SIGTERM/SIGINT, clean up. Returns the exit status."""
    from natpass.datapath.live_setup import SetupError
    from natpass.router.config import ConfigError
    from natpass.router.daemon import RouterDaemon

    log = logging.getLogger("natpass.router")
    try:
        daemon = RouterDaemon(config_path, services=services, datapath=datapath)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    daemon.install_signals()
    try:
        daemon.start()
    except (ConfigError, SetupError, OSError) as exc:
        log.error("cannot start: %s", exc)
        daemon.close()
        return 1
    try:
        daemon.run()
    finally:
        daemon.close()
        log.info("natpass stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m natpass.router.cli_run --config FILE``: ``natpass run`` without the other
    subcommands, so that only the router's modules are imported (bench/live.py measures it)."""
    parser = argparse.ArgumentParser(prog="natpass")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["run", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
