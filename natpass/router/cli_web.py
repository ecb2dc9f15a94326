"""``natpass passwd`` and ``natpass token``: the admin web page's password and API tokens.

Both write files in the router's state dir (mode 0600); a running router reads them at each
login or request, so no restart is needed.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from typing import Any

DEFAULT_STATE_DIR = "/var/lib/natpass"


def _add_target(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", "-c", metavar="FILE", help="take the state dir from FILE")
    where.add_argument("--state-dir", metavar="DIR", help=f"the router's state dir (default {DEFAULT_STATE_DIR})")


def register(sub: Any) -> None:
    pw = sub.add_parser("passwd", help="set the admin web page's password",
                        description="Set the password of the admin web page ([router] admin_http). Only an "
                        "argon2id hash is kept, in <state_dir>/admin.passwd (mode 0600).")
    _add_target(pw)
    pw.add_argument("--stdin", action="store_true", help="read the password from the first line of stdin")
    pw.set_defaults(func=_passwd)

    tok = sub.add_parser("token", help="create, list or revoke API tokens for scripts",
                         description="API tokens let scripts use the admin API with 'Authorization: Bearer "
                         "TOKEN'. Only a hash is kept; the token is printed once when created.")
    tsub = tok.add_subparsers(dest="token_command", metavar="ACTION")
    add = tsub.add_parser("add", help="create a token named NAME and print it")
    add.add_argument("name", metavar="NAME")
    _add_target(add)
    add.set_defaults(func=_token_add)
    ls = tsub.add_parser("list", help="list the tokens (names and dates)")
    _add_target(ls)
    ls.set_defaults(func=_token_list)
    rm = tsub.add_parser("revoke", help="revoke the token named NAME")
    rm.add_argument("name", metavar="NAME")
    _add_target(rm)
    rm.set_defaults(func=_token_revoke)
    tok.set_defaults(func=lambda args: (tok.print_help(), 2)[1])


def _state_dir(args: argparse.Namespace) -> str | None:
    from natpass.router.config import ConfigError, load_config

    if args.config:
        try:
            return load_config(args.config).state_dir
        except ConfigError as exc:
            print(f"natpass: {exc}", file=sys.stderr)
            return None
    return str(args.state_dir or DEFAULT_STATE_DIR)


def _passwd(args: argparse.Namespace) -> int:
    from natpass.router.auth import AuthError, PasswordFile

    state_dir = _state_dir(args)
    if state_dir is None:
        return 2
    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("New admin password: ")
        if getpass.getpass("Again: ") != password:
            print("natpass: the two passwords differ; nothing changed", file=sys.stderr)
            return 1
    try:
        PasswordFile(state_dir).set(password)
    except (AuthError, OSError) as exc:
        print(f"natpass: {exc}; nothing changed", file=sys.stderr)
        return 1
    print(f"admin password set ({state_dir}/admin.passwd); a running router ends every web session "
          "logged in with the old one at its next request (API tokens stay valid)")
    return 0


def _token_add(args: argparse.Namespace) -> int:
    from natpass.router.auth import AuthError, TokenFile

    state_dir = _state_dir(args)
    if state_dir is None:
        return 2
    try:
        secret = TokenFile(state_dir).create(args.name)
    except (AuthError, OSError) as exc:
        print(f"natpass: {exc}", file=sys.stderr)
        return 1
    print(secret)
    print(f"(token {args.name!r}: shown only now; use it as 'Authorization: Bearer TOKEN')", file=sys.stderr)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    from natpass.router.auth import AuthError, TokenFile

    state_dir = _state_dir(args)
    if state_dir is None:
        return 2
    try:
        tokens = TokenFile(state_dir).list()
    except AuthError as exc:
        print(f"natpass: {exc}", file=sys.stderr)
        return 1

    def day(ts: float | None) -> str:
        return "never" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))

    for t in tokens:
        print(f"{t.name}\tcreated {day(t.created)}\tlast used {day(t.last_used)}")
    if not tokens:
        print("no API tokens", file=sys.stderr)
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from natpass.router.auth import AuthError, TokenFile

    state_dir = _state_dir(args)
    if state_dir is None:
        return 2
    try:
        found = TokenFile(state_dir).revoke(args.name)
    except (AuthError, OSError) as exc:
        print(f"natpass: {exc}", file=sys.stderr)
        return 1
    if not found:
        print(f"natpass: no API token named {args.name!r}", file=sys.stderr)
        return 1
    print(f"token {args.name!r} revoked")
    return 0
