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
        "kept). SIGTERM/SIGINT stop, saving the connection state and keeping the kernel-side "
        "set-up for the next start (a restart loses no session); with --cleanup they remove "
        "everything set up. See docs/DATAPATH.md and docs/ADMIN.md.")
    run.add_argument("--config", "-c", required=True, metavar="FILE", help="natpass.toml")
    run.add_argument("--foreground", action="store_true",
                     help="accepted for clarity: natpass run always stays in the foreground")
    run.add_argument("--datapath", choices=("packet", "hybrid"), default=None,
                     help="overrides [router] datapath: packet (every packet through natpass) or hybrid "
                     "(the kernel forwards ordinary traffic, natpass the VPN protocols)")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=None,
                     help="overrides [router] log_level")
    run.add_argument("--cleanup", action="store_true",
                     help="on exit remove the kernel-side set-up too (natpass is taken out of service)")
    run.set_defaults(func=functools.partial(_run, services=tuple(services)))
    clean = sub.add_parser(
        "cleanup", help="remove what a stopped router kept for its next start",
        description="Remove the nft table and sysctls that a stopped router keeps for its next "
        "start, put back the values from before natpass, and delete the saved connection state. "
        "Refused while a router runs in this network namespace.")
    clean.add_argument("--config", "-c", required=True, metavar="FILE", help="natpass.toml")
    clean.add_argument("--keep-state", action="store_true", help="keep the saved connection state")
    clean.set_defaults(func=_cleanup)


def _run(args: argparse.Namespace, services: Sequence[ServiceFactory] = ()) -> int:
    from natpass.router.config import ConfigError, load_config

    try:
        level = args.log_level or load_config(args.config).log_level
    except ConfigError as exc:
        print(f"natpass: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_daemon(args.config, services, datapath=args.datapath, cleanup=args.cleanup)


def _cleanup(args: argparse.Namespace) -> int:
    from natpass.datapath.live_setup import SetupError
    from natpass.router.cleanup import cleanup
    from natpass.router.config import ConfigError, load_config

    try:
        done = cleanup(load_config(args.config), keep_state=args.keep_state)
    except ConfigError as exc:
        print(f"natpass: {exc}", file=sys.stderr)
        return 2
    except (SetupError, OSError) as exc:
        print(f"natpass: {exc}", file=sys.stderr)
        return 1
    print("removed: " + (", ".join(done) if done else "nothing (no kept set-up found)"))
    return 0


def run_daemon(config_path: str, services: Sequence[ServiceFactory] = (), datapath: str | None = None,
               cleanup: bool = False) -> int:
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
        if daemon.setup is not None and daemon.setup.kept:
            log.warning("kept the previous run's nft table inet natpass and sysctls for the next start: "
                        "the kernel still does not answer for natpass's addresses, so the sessions it "
                        "held can resume when natpass starts (`natpass cleanup --config %s` removes them)",
                        config_path)
        daemon.close()
        return 1
    try:
        daemon.run()
    finally:
        daemon.close(keep_guard=not cleanup)
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
