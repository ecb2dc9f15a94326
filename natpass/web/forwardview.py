"""The Port forwarding page: the running forwards, a form to add one, a button to remove each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from natpass.web.frame import e, layout, scroll_table

if TYPE_CHECKING:
    from natpass.web.context import Principal

FIELDS = ("proto", "port", "to", "wan_address", "comment")


def forwards_page(who: Principal, forwards: Sequence[Mapping[str, Any]], flash: str = "", error: str = "",
                  values: Mapping[str, str] | None = None) -> str:
    """``values``: what the add form held when it was refused (shown again to correct)."""
    csrf = who.session.csrf if who.session else ""
    v = {k: (values or {}).get(k, "") for k in FIELDS}
    top = (f'<p class="ok" role="status">{e(flash)}</p>' if flash else "") + (
        f'<div class="error" role="alert"><p><strong>Refused:</strong> {e(error)}</p>'
        "<p>Nothing was changed.</p></div>" if error else "")
    rows = []
    for f in forwards:
        ident = f'{f["proto"]}-{f["port"]}'
        remove = ('<form method="post" action="/forwards" class="inline">'
                  f'<input type="hidden" name="csrf" value="{e(csrf)}">'
                  '<input type="hidden" name="action" value="remove">'
                  f'<input type="hidden" name="proto" value="{e(f["proto"])}">'
                  f'<input type="hidden" name="port" value="{e(f["port"])}">'
                  f'<input type="hidden" name="wan_address" value="{e(f.get("wan_address") or "")}">'
                  f'<button type="submit" class="danger" id="remove-{e(ident)}">Remove</button></form>')
        rows.append([e(str(f["proto"]).upper()), f'<span class="num">{e(f.get("wan_address") or "any")}:'
                     f'{e(f["port"])}</span>', f'<span class="num">{e(f["to"])}</span>', remove])
    proto_opts = "".join(f'<option value="{p}"{" selected" if v["proto"] == p else ""}>{p.upper()}</option>'
                         for p in ("tcp", "udp"))
    form = (
        '<form method="post" action="/forwards" class="upload" id="add-forward">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}"><input type="hidden" name="action" value="add">'
        f'<label for="fw-proto">Protocol</label><select id="fw-proto" name="proto">{proto_opts}</select>'
        '<label for="fw-port">WAN port (on the router\'s internet side)</label>'
        f'<input id="fw-port" name="port" inputmode="numeric" required value="{e(v["port"])}" placeholder="8080">'
        '<label for="fw-to">To LAN host (ADDRESS or ADDRESS:PORT)</label>'
        f'<input id="fw-to" name="to" required value="{e(v["to"])}" placeholder="192.168.1.10:80">'
        '<label for="fw-wan">Only on WAN address (optional)</label>'
        f'<input id="fw-wan" name="wan_address" value="{e(v["wan_address"])}" placeholder="every WAN address">'
        '<label for="fw-comment">Note (optional)</label>'
        f'<input id="fw-comment" name="comment" maxlength="200" value="{e(v["comment"])}" placeholder="web server">'
        '<button type="submit" class="primary" id="add">Add forward</button></form>')
    body = (top + '<p class="note">A port forward lets hosts on the internet reach a server on your LAN: '
            "connections to the router's WAN port go to the LAN host. It applies at once and is saved in "
            "the config file (its comments kept, the old version in the config history).</p>"
            + scroll_table("Port forwards", ["Protocol", "WAN port", "LAN host", ""], rows, "No port forwards.")
            + "<h2>Add a port forward</h2>" + form
            + '<p class="small">Refused: a LAN host outside the LAN, a WAN port another forward or a VPN '
            "passthrough helper uses (TCP 1723, UDP 500, 4500, 1701), or one a connection holds right now.</p>")
    return layout("Port forwarding", body, who, "/forwards")
