"""``natpass diagnose --live``: capture on the router's LAN and WAN interfaces at once, for N
seconds or until Ctrl-C, while the user retries the VPN; then diagnose both sides together with
the router's own drop counters for that window (from its admin socket) as evidence.

tcpdump does the capturing (bounded by time and by a packet count per side); each side is
diagnosed with its capture point stated (router-lan, router-wan), and the two are compared: a VPN
attempt seen on the LAN side that never shows on the WAN side, or whose answers reach the WAN side
and not the LAN side, stopped at this router, and the drop counters that grew say why.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from natpass.diagnose.model import Diagnosis, Evidence, Finding, ProtocolReport
from natpass.diagnose.run import diagnose

MAX_SECONDS = 600  # one live window at most (a bounded capture)
MAX_PACKETS = 200_000  # per interface (tcpdump -c): a bounded file
START_TIMEOUT = 5.0  # for tcpdump to open its socket
# Which drop reasons concern which protocol (natpass.nat.verdict reasons and helper prefixes).
DROP_FAMILIES: dict[str, tuple[str, ...]] = {
    "pptp": ("passthrough-disabled:pptp", "strict-blocked:pptp", "pptp:"),
    "esp": ("passthrough-disabled:ipsec", "ipsec:"),
    "ah": ("passthrough-disabled:ipsec", "ipsec:"),
    "ikev1": ("strict-blocked:ipsec", "ipsec:"),
    "ikev2": ("strict-blocked:ipsec", "ipsec:"),
    "nat-t": ("ipsec:",),
    "l2tp": ("passthrough-disabled:l2tp", "strict-blocked:l2tp", "l2tp:"),
}
ANY_FLOW_DROPS = ("filtered", "no-mapping", "table-full", "host-limit", "ports-exhausted", "malformed")


class LiveError(Exception):
    """The live capture could not run (no tcpdump, an interface missing, no permission)."""


@dataclass(slots=True)
class LiveDiagnosis:
    seconds: float
    lan_interface: str
    wan_interface: str
    lan: Diagnosis
    wan: Diagnosis
    drops: dict[str, int]  # reason -> packets dropped by the router during the window
    drops_known: bool  # False when the router's counters could not be read
    findings: list[Finding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "live": {"seconds": round(self.seconds, 3), "lan_interface": self.lan_interface,
                     "wan_interface": self.wan_interface, "drops": self.drops, "drops_known": self.drops_known},
            "findings": [asdict(f) for f in self.findings],
            "lan": self.lan.to_dict(),
            "wan": self.wan.to_dict(),
        }


class _Tcpdump:
    """One bounded tcpdump writing a pcap; stopped with SIGINT so the file is closed cleanly."""

    def __init__(self, iface: str, path: Path) -> None:
        exe = shutil.which("tcpdump")
        if exe is None:
            raise LiveError("tcpdump is not installed (Debian: apt install tcpdump)")
        self.iface = iface
        self.path = path
        self.err = path.with_suffix(".log")
        with open(self.err, "wb") as err:
            # -Z root: keep writing where root created the file (tcpdump drops to its own user).
            user = ["-Z", "root"] if os.geteuid() == 0 else []
            self.proc = subprocess.Popen(
                [exe, "-i", iface, "-U", "--immediate-mode", "-n", "-s", "0", "-c", str(MAX_PACKETS), *user,
                 "-w", str(path)], stdout=subprocess.DEVNULL, stderr=err)

    def wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = self.err.read_text(errors="replace")
            if "listening on" in text:
                return
            if self.proc.poll() is not None:
                raise LiveError(f"tcpdump on {self.iface} failed: {text.strip() or 'exited'}")
            time.sleep(0.05)
        raise LiveError(f"tcpdump on {self.iface} did not start within {START_TIMEOUT:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def capture_both(lan_if: str, wan_if: str, seconds: float, out_dir: Path,
                 sleep: Callable[[float], None] = time.sleep,
                 ready: Callable[[], None] | None = None) -> tuple[Path, Path, float]:
    """Capture on both interfaces at once for ``seconds`` (Ctrl-C ends the window early);
    ``ready`` is called once both captures are listening."""
    seconds = max(0.5, min(float(seconds), MAX_SECONDS))
    lan = _Tcpdump(lan_if, out_dir / "lan.pcap")
    try:
        wan = _Tcpdump(wan_if, out_dir / "wan.pcap")
    except LiveError:
        lan.stop()
        raise
    try:
        lan.wait_listening()
        wan.wait_listening()
        if ready is not None:
            ready()
        t0 = time.monotonic()
        try:
            sleep(seconds)
        except KeyboardInterrupt:
            pass
        took = time.monotonic() - t0
        time.sleep(0.3)  # the last packets of the window reach the files (-U writes per packet)
    finally:
        lan.stop()
        wan.stop()
    return lan.path, wan.path, took


def drop_delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, int]:
    """Per-reason growth of the router's drop counters between two status answers."""
    def drops(status: dict[str, Any] | None) -> dict[str, int]:
        raw = (status or {}).get("drops")
        return {str(k): int(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    b, a = drops(before), drops(after)
    return {k: v - b.get(k, 0) for k, v in sorted(a.items()) if v - b.get(k, 0) > 0}


def _server(rep: ProtocolReport) -> str:
    host = rep.server.rsplit(":", 1)[0] if rep.server.count(":") == 1 else rep.server
    return host.strip("[]")


def compare(lan: Diagnosis, wan: Diagnosis, drops: dict[str, int], drops_known: bool) -> list[Finding]:
    """Joint findings: where a VPN attempt stopped between the router's two sides, and why."""
    out: list[Finding] = []
    wan_by_server: dict[tuple[str, str], list[ProtocolReport]] = {}
    for rep in wan.protocols:
        wan_by_server.setdefault((rep.name, _server(rep)), []).append(rep)
    for rep in lan.protocols:
        if rep.status == "established":
            continue
        fams = DROP_FAMILIES.get(rep.name, ())
        reasons = {r: n for r, n in drops.items() if r.startswith(fams) or r in ANY_FLOW_DROPS}
        seen_wan = wan_by_server.get((rep.name, _server(rep)), [])
        ev = [Evidence(p.frame, p.time, f"LAN side: {p.name}") for p in rep.phases[:4]]
        out_wan = sum(w.packets_out for w in seen_wan)
        in_wan = sum(w.packets_in for w in seen_wan)
        why = ", ".join(f"{r} ({n})" for r, n in reasons.items())
        who = f"{rep.name} from {rep.client} to {rep.server}"
        if reasons:
            where = ("never left the router's WAN side" if rep.packets_out and not out_wan else
                     "its answers reached the WAN side but not the LAN side" if in_wan and not rep.packets_in
                     else "stopped at the router")
            out.append(Finding(
                "dropped-by-router", "error", None, ev,
                f"The {who} reached the router's LAN side ({rep.packets_out} packet(s) out) and {where}: "
                f"natpass dropped packets of it during the window: {why}.",
                _advice(reasons), rep.name))
        elif rep.packets_out and not out_wan and seen_wan == [] and drops_known:
            out.append(Finding(
                "not-forwarded", "warning", None, ev,
                f"The {who} reached the router's LAN side and nothing of it showed on the WAN side, "
                "with no drop counted by natpass: the router did not send it (routing, or the capture "
                "missed the WAN side).", "Check the router's WAN link and routing; run the capture again.",
                rep.name))
        elif in_wan and not rep.packets_in:
            out.append(Finding(
                "answer-not-delivered", "error", None, ev,
                f"Answers for the {who} reached the router's WAN side ({in_wan} packet(s)) and none "
                "reached the LAN side.", _advice(reasons), rep.name))
        elif rep.packets_out and out_wan and not in_wan:
            out.append(Finding(
                "no-answer-upstream", "warning", None, ev,
                f"The {who} crossed the router (seen leaving its WAN side) and no answer came back to "
                "it: the block is beyond this router (ISP, server firewall) or the server is down.",
                "Check the server and anything between the router and it; the router forwarded it.",
                rep.name))
    if not drops_known:
        out.append(Finding("router-counters-unknown", "info", None, [],
                           "The router's drop counters could not be read (no admin socket answered): "
                           "the comparison of the two sides stands without them.",
                           "Run on the natpass router with --config (or --socket) pointing at it."))
    return out


def _advice(reasons: dict[str, int]) -> str:
    tips = []
    for r in reasons:
        if r.startswith("passthrough-disabled:"):
            sw = r.split(":", 1)[1]
            tips.append(f"turn the {sw} switch on ([passthrough] {sw} = true, or 'natpass switch {sw} on')")
        elif r.startswith("strict-blocked:"):
            tips.append("set strict = false, or turn the protocol's switch on")
        elif r == "filtered":
            tips.append("an inbound packet did not match the filtering behaviour: check [nat] filtering")
    return ("; ".join(dict.fromkeys(tips)) or "See the drop reasons in 'natpass status'") + "."


def diagnose_live(lan_if: str, wan_if: str, seconds: float,
                  status: Callable[[], dict[str, Any] | None], keep: Path | None = None,
                  sleep: Callable[[float], None] = time.sleep,
                  ready: Callable[[], None] | None = None) -> LiveDiagnosis:
    """Capture both sides for ``seconds``, read the drop counters before and after, diagnose."""
    before = status()
    with tempfile.TemporaryDirectory(prefix="natpass-live-") as tmp:
        out_dir = keep if keep is not None else Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        lan_pcap, wan_pcap, took = capture_both(lan_if, wan_if, seconds, out_dir, sleep, ready)
        after = status()
        lan = diagnose(lan_pcap, vantage="router-lan")
        wan = diagnose(wan_pcap, vantage="router-wan")
    known = before is not None and after is not None
    drops = drop_delta(before, after) if known else {}
    live = LiveDiagnosis(took, lan_if, wan_if, lan, wan, drops, known)
    live.findings = compare(lan, wan, drops, known)
    return live
