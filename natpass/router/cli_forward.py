"""``natpass forward list|add|remove``: port forwards of the running router, over its admin socket.

A change applies at once and is written into the config file (comments kept, the previous version in
the config history) unless ``--runtime-only``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import urlencode

from natpass.router.cli_admin import RouterUnavailable, _client, _err, add_target, api_error, report_saved


def register(sub: Any) -> None:
    fwd = sub.add_parser("forward", help="list, add or remove port forwards of the running router",
                         description="Port forwards (DNAT) of the running router: a change applies at once "
                         "and is saved in the config file as a [[forward]] table, comments kept.")
    fsub = fwd.add_subparsers(dest="forward_command", metavar="ACTION")
    ls = fsub.add_parser("list", help="the port forwards running now")
    ls.add_argument("--json", action="store_true", help="print them as JSON")
    add_target(ls)
    ls.set_defaults(func=_list)
    add = fsub.add_parser("add", help="forward a WAN port to a LAN host",
                          description="Refused with the reason (nothing changed) when the LAN host is "
                          "outside the LAN or the WAN port is another forward's, a passthrough helper's "
                          "or held by a connection now.")
    add.add_argument("proto", choices=("tcp", "udp"))
    add.add_argument("port", type=int, help="the WAN port")
    add.add_argument("to", metavar="ADDRESS[:PORT]", help="the LAN host (and its port; default: the WAN port)")
    add.add_argument("--comment", help="a note kept with the forward")
    _common(add)
    add.set_defaults(func=_add)
    rm = fsub.add_parser("remove", help="remove a port forward (connections already forwarded run on)")
    rm.add_argument("proto", choices=("tcp", "udp"))
    rm.add_argument("port", type=int, help="the WAN port")
    _common(rm)
    rm.set_defaults(func=_remove)
    fwd.set_defaults(func=lambda args: (fwd.print_help(), 2)[1])


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wan-address", metavar="A", help="only on this WAN address (default: every one)")
    parser.add_argument("--runtime-only", action="store_true",
                        help="do not write the config file: a reload or restart applies the file's forwards")
    add_target(parser)


def _ask(args: argparse.Namespace, method: str, path: str, body: Any = None) -> tuple[int, Any] | int:
    got = _client(args)
    if isinstance(got, int):
        return got
    try:
        return got[0].request(method, path, body)
    except RouterUnavailable as exc:
        _err(str(exc))
        return 1


def _show(f: dict[str, Any]) -> str:
    wan = f.get("wan_address") or "*"
    note = f"   # {f['comment']}" if f.get("comment") else ""
    return f"{f['proto']:3} {wan}:{f['port']} -> {f['to']}{note}"


def _list(args: argparse.Namespace) -> int:
    got = _ask(args, "GET", "/api/forwards")
    if isinstance(got, int):
        return got
    code, answer = got
    if code != 200 or not isinstance(answer, dict):
        _err(f"forward list failed: {api_error(answer, code)}")
        return 1
    forwards = answer.get("forwards") or []
    if args.json:
        print(json.dumps(forwards, indent=2))
    elif not forwards:
        print("no port forwards")
    for f in forwards if not args.json else []:
        print(_show(f))
    return 0


def _done(args: argparse.Namespace, got: tuple[int, Any] | int, ok: int) -> int:
    if isinstance(got, int):
        return got
    code, answer = got
    if code != ok or not isinstance(answer, dict):
        _err(f"forward {args.forward_command} refused: {api_error(answer, code)}")
        return 2 if code in (404, 409, 422) else 1
    print(f"natpass: port forward {answer['action']}: {_show(answer['forward'])}")
    return report_saved(answer, args.runtime_only, "forwards")


def _add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"proto": args.proto, "port": args.port, "to": args.to, "runtime_only": args.runtime_only}
    if args.wan_address:
        body["wan_address"] = args.wan_address
    if args.comment:
        body["comment"] = args.comment
    return _done(args, _ask(args, "POST", "/api/forwards", body), 201)


def _remove(args: argparse.Namespace) -> int:
    query = {k: v for k, v in (("wan_address", args.wan_address), ("runtime_only", "1" if args.runtime_only else ""))
             if v}
    path = f"/api/forwards/{args.proto}/{args.port}" + (f"?{urlencode(query)}" if query else "")
    return _done(args, _ask(args, "DELETE", path), 200)
