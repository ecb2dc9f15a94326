"""Router subcommand ``config check|example`` (``run`` and the admin clients have their own modules)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: Any) -> None:
    cfg = sub.add_parser("config", help="check a config file, or print an example one",
                         description="Validate natpass.toml files, or print a commented example.")
    csub = cfg.add_subparsers(dest="config_command", metavar="ACTION")
    check = csub.add_parser("check", help="validate FILE whole; exit 2 naming the line that is wrong",
                            description="Validate a config file whole. Exit 0 when valid, 2 with "
                            "FILE:LINE: message when not (nothing of an invalid file is ever applied).")
    check.add_argument("file", metavar="FILE")
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    check.set_defaults(func=_check)
    example = csub.add_parser("example", help="print a commented example natpass.toml")
    example.set_defaults(func=_example)
    cfg.set_defaults(func=lambda args: (cfg.print_help(), 2)[1])


def _check(args: argparse.Namespace) -> int:
    from natpass.router.config import ConfigError, load_config

    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        if args.json:
            print(json.dumps({"valid": False, "file": exc.path, "line": exc.line, "error": exc.message}))
        else:
            print(f"natpass: {exc}", file=sys.stderr)
        return 2
    p = cfg.nat.passthrough
    summary = {
        "valid": True,
        "file": cfg.path,
        "wan_addresses": [".".join(map(str, a)) for a in cfg.nat.wan_addresses],
        "lan_prefixes": [str(n) for n in cfg.nat.lan_prefixes],
        "mapping": cfg.nat.mapping,
        "filtering": cfg.nat.filtering,
        "forwards": len(cfg.nat.forwards),
        "passthrough": {"pptp": p.pptp, "ipsec": p.ipsec, "l2tp": p.l2tp, "strict": p.strict},
    }
    warnings = _datapath_warnings(cfg)
    if args.json:
        print(json.dumps({**summary, "warnings": warnings}))
    else:
        for warning in warnings:
            print(f"natpass: warning: {warning}", file=sys.stderr)
        switches = ", ".join(f"{k} {'on' if v else 'off'}" for k, v in summary["passthrough"].items())
        print(f"{cfg.path}: valid — WAN {', '.join(summary['wan_addresses'])}, "
              f"LAN {', '.join(summary['lan_prefixes'])}, passthrough: {switches}")
    return 0


def _datapath_warnings(cfg: Any) -> list[str]:
    """Settings that, with datapath = "hybrid", bind natpass's flows only (not the kernel's)."""
    if cfg.datapath != "hybrid":
        return []
    from natpass.datapath.hybrid import hybrid_warnings

    return hybrid_warnings(cfg.nat)


def _example(args: argparse.Namespace) -> int:
    from natpass.router.config import EXAMPLE

    sys.stdout.write(EXAMPLE)
    return 0
