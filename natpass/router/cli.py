"""Router subcommand ``config check|example|backup|restore|history|rollback`` (``run`` and the
other admin clients have their own modules)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

from natpass.router.cli_admin import AdminClient, RouterUnavailable, add_target, api_error, client_for
from natpass.router.config import RouterConfig


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

    backup = csub.add_parser(
        "backup", help="write the config as one checked, restorable file",
        description="Write the running router's config file as a backup: the file itself behind a "
        "comment header (format version, origin, SHA-256 of the content), so it is still a valid "
        "natpass.toml and a damaged or edited copy is recognised. With no router running, --config "
        "FILE backs up FILE.")
    backup.add_argument("file", nargs="?", metavar="FILE", help="where to write it (default: standard output)")
    add_target(backup)
    backup.set_defaults(func=_backup)
    restore = csub.add_parser(
        "restore", help="validate a backup whole and apply it to the running router",
        description="Check a backup (or a plain natpass.toml) whole: header, SHA-256, every setting. "
        "A refused file changes nothing and the error names its line. Accepted, it replaces the "
        "config file, is applied to the running router at once, and the replaced version stays in "
        "the history. With no router running, --config FILE replaces FILE.")
    restore.add_argument("file", metavar="FILE")
    add_target(restore)
    restore.set_defaults(func=_restore)
    history = csub.add_parser(
        "history", help="list the kept config versions",
        description="Every change to the config (a switch flipped, a reload after a hand edit, a "
        "restore or rollback) keeps the new version in <state_dir>/config-history (the newest 50), "
        "with when, who or what made it and a one-line summary of the difference.")
    history.add_argument("--json", action="store_true", help="print the versions as JSON")
    add_target(history)
    history.set_defaults(func=_history)
    rollback = csub.add_parser(
        "rollback", help="return to an earlier config version",
        description="Make version N of `natpass config history` (default: the one before the newest) "
        "the config file again and apply it, validated whole like a restore.")
    rollback.add_argument("number", nargs="?", type=int, metavar="N")
    add_target(rollback)
    rollback.set_defaults(func=_rollback)
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
    wan_addresses = [str(ipaddress.IPv4Address(a)) for a in cfg.nat.wan_addresses]
    lan_prefixes = [str(n) for n in cfg.nat.lan_prefixes]
    switches = {"pptp": p.pptp, "ipsec": p.ipsec, "l2tp": p.l2tp, "strict": p.strict}
    summary = {
        "valid": True,
        "file": cfg.path,
        "wan_addresses": wan_addresses,
        "lan_prefixes": lan_prefixes,
        "mapping": cfg.nat.mapping,
        "filtering": cfg.nat.filtering,
        "forwards": len(cfg.nat.forwards),
        "passthrough": switches,
    }
    warnings = _datapath_warnings(cfg)
    if args.json:
        print(json.dumps({**summary, "warnings": warnings}))
    else:
        for warning in warnings:
            print(f"natpass: warning: {warning}", file=sys.stderr)
        state = ", ".join(f"{k} {'on' if v else 'off'}" for k, v in switches.items())
        print(f"{cfg.path}: valid — WAN {', '.join(wan_addresses)}, "
              f"LAN {', '.join(lan_prefixes)}, passthrough: {state}")
    return 0


def _datapath_warnings(cfg: RouterConfig) -> list[str]:
    """Settings that, with datapath = "hybrid", bind natpass's flows only (not the kernel's)."""
    if cfg.datapath != "hybrid":
        return []
    from natpass.datapath.hybrid import hybrid_warnings

    return hybrid_warnings(cfg.nat)


def _example(args: argparse.Namespace) -> int:
    from natpass.router.config import EXAMPLE

    sys.stdout.write(EXAMPLE)
    return 0


# ----- backup, restore, history, rollback ------------------------------------------------------------
def _offline(args: argparse.Namespace, why: str) -> tuple[str, str] | None:
    """(config path, state dir) to work on files when no router answers, or None (error said)."""
    from natpass.router.config import ConfigError, load_config

    if not args.config:
        print(f"natpass: {why} (with no router running, name the file: --config FILE)", file=sys.stderr)
        return None
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"natpass: {exc}", file=sys.stderr)
        return None
    return args.config, cfg.state_dir


def _refused(answer: Any, code: int) -> int:
    if code == 422 and isinstance(answer, dict):
        where = answer.get("path") or "config"
        if answer.get("line"):
            where = f"{where}:{answer['line']}"
        print(f"natpass: {where}: {answer.get('message') or answer.get('error')} "
              "(nothing changed: the running config is kept)", file=sys.stderr)
        return 2
    print(f"natpass: {api_error(answer, code)}", file=sys.stderr)
    return 1


def _ask(args: argparse.Namespace, method: str, path: str, body: Any = None) -> tuple[int, Any] | str:
    """The router's answer, or the reason no router answered."""
    got = client_for(args)
    if isinstance(got, str):
        return got
    client: AdminClient = got
    try:
        return client.request(method, path, body)
    except RouterUnavailable as exc:
        return str(exc)


def _backup(args: argparse.Namespace) -> int:
    from natpass.router.settings import with_header

    answer = _ask(args, "GET", "/api/config/backup")
    if isinstance(answer, str):
        files = _offline(args, answer)
        if files is None:
            return 1
        text = with_header(Path(files[0]).read_text(encoding="utf-8"), who="cli", summary="backup",
                           source=files[0])
    else:
        code, text = answer
        if code != 200 or not isinstance(text, str):
            return _refused(text, code)
    if args.file:
        from natpass.router.settings import write_atomic

        write_atomic(args.file, text, 0o600)
        print(f"natpass: backup written to {args.file}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _done(answer: dict[str, Any], what: str) -> int:
    torn = {k: v for k, v in (answer.get("torn_down") or {}).items() if v}
    gone = "; tunnels torn down: " + ", ".join(f"{k} {v}" for k, v in torn.items()) if torn else ""
    print(f"natpass: config {what} and applied: {answer.get('summary')}{gone}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from natpass.router.config import ConfigError
    from natpass.router.settings import BackupError, ConfigHistory, read_checked, summarize, write_atomic

    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"natpass: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        checked = read_checked(data, args.file)  # refused here first: the router is never asked
    except (BackupError, ConfigError) as exc:
        print(f"natpass: {exc} (nothing changed)", file=sys.stderr)
        return 2
    answer = _ask(args, "POST", "/api/config/restore", {"backup": checked.text, "name": args.file})
    if not isinstance(answer, str):
        code, body = answer
        return _done(body, "restored") if code == 200 and isinstance(body, dict) else _refused(body, code)
    files = _offline(args, answer)
    if files is None:
        return 1
    path, state_dir = files
    from natpass.router.config import load_config

    summary = summarize(load_config(path), checked.config)
    write_atomic(path, checked.body)
    ConfigHistory(state_dir).record(checked.body, who="cli restore", summary=summary, source=path)
    print(f"natpass: no router is running: {path} restored ({summary}); it applies at the next start")
    return 0


def _history(args: argparse.Namespace) -> int:
    from natpass.router.settings import ConfigHistory

    answer = _ask(args, "GET", "/api/config/history")
    if isinstance(answer, str):
        files = _offline(args, answer)
        if files is None:
            return 1
        versions = [v.as_dict() for v in ConfigHistory(files[1]).versions()]
    else:
        code, body = answer
        if code != 200 or not isinstance(body, dict):
            return _refused(body, code)
        versions = body["versions"]
    if args.json:
        print(json.dumps({"versions": versions}))
        return 0
    if not versions:
        print("natpass: no config versions kept yet")
    for v in versions:
        print(f"#{v['number']:<4} {v['created']}  {v['who']:<14} {v['summary']}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from natpass.router.settings import ConfigHistory, write_atomic

    answer = _ask(args, "POST", "/api/config/rollback", {} if args.number is None else {"number": args.number})
    if not isinstance(answer, str):
        code, body = answer
        if code == 404:
            print(f"natpass: {api_error(body, code)}", file=sys.stderr)
            return 1
        return _done(body, "rolled back") \
            if code == 200 and isinstance(body, dict) else _refused(body, code)
    files = _offline(args, answer)
    if files is None:
        return 1
    path, state_dir = files
    history = ConfigHistory(state_dir)
    versions = history.versions()
    number = args.number if args.number is not None else (versions[1].number if len(versions) > 1 else None)
    try:
        if number is None:
            raise KeyError("none")
        checked = history.get(number)
    except KeyError:
        print("natpass: no such config version (see natpass config history)", file=sys.stderr)
        return 1
    write_atomic(path, checked.body)
    history.record(checked.body, who=f"cli rollback to #{number}", summary=f"rollback to #{number}", source=path)
    print(f"natpass: no router is running: {path} rolled back to #{number}; it applies at the next start")
    return 0
