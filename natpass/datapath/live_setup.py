"""What the live router changes in its network namespace, recorded so that it can always be undone.

Set-up (in this order, each step written to the state file before it is made):

1. ``net.ipv4.ip_forward = 0``: the kernel must not forward LAN traffic itself (natpass does).
2. GRO off on the LAN and WAN interfaces: merged super-frames would reach the packet socket larger
   than the MTU.
3. nftables table ``inet natpass`` (prerouting, priority raw, before conntrack): drops every IPv4
   packet arriving on the WAN interface and every one on the LAN interface not addressed to the
   router's LAN address. Packet sockets see frames before netfilter, so natpass still gets them, but
   the kernel never answers for the WAN address (no RST, no port unreachable) and never tracks them.
   ARP is not IPv4 and passes: the kernel answers ARP for the router's own addresses.

In hybrid mode (``share`` given, see :mod:`natpass.datapath.hybrid`) the kernel forwards ordinary
traffic itself: ``ip_forward = 1``, GRO stays as it is, the kernel's conntrack timeouts are set
from natpass's (each old value recorded first) and the table is the hybrid one (its prerouting
chain drops only what natpass owns; forward, input and masquerade chains for the rest).

Teardown removes the table, restores the offloads and the sysctl to their recorded values and
deletes the state and pid files. ``undo(keep_guard=True)`` (a restart-safe stop) leaves the table
and the sysctls in place and keeps the state file, so the kernel never answers for the WAN address
while no natpass runs. A start that finds a state file whose PID is gone (a kept guard, a crash,
SIGKILL) adopts what it records: the table is replaced in one nft transaction (no gap) and the
values from before natpass are kept for the final teardown. ``recover(adopt=False)`` undoes it
instead (``natpass cleanup``). A start that fails after adopting a kept set-up (a restart) keeps
it too, recorded for the next start: removing it would let the kernel reset the sessions natpass
held (and put back ``ip_forward`` from before natpass, forwarding LAN traffic untranslated). A
first start that fails removes what it made.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any, Protocol

from natpass.datapath import packetsock

log = logging.getLogger("natpass.datapath")

NFT_TABLE = "natpass"
STATE_FILE = "live-state.json"
PID_FILE = "natpass.pid"
SYSCTL_FORWARD = "net/ipv4/ip_forward"


class SetupError(RuntimeError):
    """The namespace could not be prepared (message says what and why)."""


def _pid_alive(pid: int) -> bool:
    """True when ``pid`` runs and is a natpass process (a reused PID of another program is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and b"natpass" in cmdline


def _read_sysctl(name: str) -> str:
    return Path("/proc/sys", name).read_text().strip()


def _write_sysctl(name: str, value: str) -> None:
    Path("/proc/sys", name).write_text(value + "\n")


def _nft(script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True,
                          timeout=20, check=False)
    if check and proc.returncode != 0:
        raise SetupError(f"nft failed: {proc.stderr.strip()[:400]}")
    return proc


def nft_table_exists() -> bool:
    proc = subprocess.run(["nft", "list", "table", "inet", NFT_TABLE], capture_output=True,
                          text=True, timeout=20, check=False)
    return proc.returncode == 0


def nft_ruleset(wan_if: str, lan_if: str, lan_address: bytes | None) -> str:
    """The table natpass owns; recreated whole (delete + add in one transaction)."""
    lan_rule = f'iifname "{lan_if}" meta nfproto ipv4 drop'
    if lan_address is not None:
        addr = ipaddress.IPv4Address(lan_address)
        lan_rule = f'iifname "{lan_if}" meta nfproto ipv4 ip daddr != {addr} drop'
    return (
        f"table inet {NFT_TABLE}\n"
        f"delete table inet {NFT_TABLE}\n"
        f"table inet {NFT_TABLE} {{\n"
        "  chain prerouting {\n"
        "    type filter hook prerouting priority raw; policy accept;\n"
        f'    iifname "{wan_if}" meta nfproto ipv4 drop\n'
        f"    {lan_rule}\n"
        "  }\n"
        "}\n"
    )


class KernelShare(Protocol):
    """Hybrid mode's changes for the kernel (natpass.datapath.hybrid.KernelShare)."""

    @property
    def ruleset(self) -> str: ...

    @property
    def sysctls(self) -> dict[str, str]: ...


class HostSetup:
    """Applies and undoes the namespace changes; the state file makes undo possible after a crash."""

    def __init__(self, state_dir: str, wan_if: str, lan_if: str, lan_address: bytes | None,
                 share: KernelShare | None = None) -> None:
        self.share = share
        self.state_dir = Path(state_dir)
        self.wan_if = wan_if
        self.lan_if = lan_if
        self.lan_address = lan_address
        self.state: dict[str, Any] = {}
        self.state_path = self.state_dir / STATE_FILE
        self.pid_path = self.state_dir / PID_FILE
        self.adopted: dict[str, Any] = {}  # what a previous run left for this one to take over
        self.owned = False  # this start took over the state dir (no other natpass runs on it)
        self.kept = False  # the set-up was left for the next start (undo does nothing more)

    # ----- crash recovery ----------------------------------------------------------------------
    def recover(self, adopt: bool = False) -> list[str]:
        """Undo (``adopt``: take over) what a previous run left; refuse when that run is still
        alive. Returns what went (or was adopted)."""
        done: list[str] = []
        pid = None
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pid_path.read_text().split()[0])
        if pid is not None and pid != os.getpid() and _pid_alive(pid):
            raise SetupError(f"natpass is already running here (pid {pid}, {self.pid_path})")
        try:
            old = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and adopt:
            self.adopted = old
            if old.get("nft"):
                done.append(f"adopted nft table inet {NFT_TABLE} (replaced without a gap)")
        elif isinstance(old, dict):
            done += self._undo(old)
        elif adopt:
            pass  # an unrecorded table of ours is replaced whole by apply()
        elif nft_table_exists():
            # No record but our table is there (state dir wiped): remove it anyway.
            _nft(f"delete table inet {NFT_TABLE}\n", check=False)
            done.append(f"nft table inet {NFT_TABLE}")
        if pid is not None:
            done.append(f"stale pid file ({pid})")
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()
        if not adopt:  # adopted, the record stays until apply() rewrites it (a failed start keeps it)
            with contextlib.suppress(FileNotFoundError):
                self.state_path.unlink()
        return done

    # ----- apply / undo --------------------------------------------------------------------------
    def _save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.state_path)

    @property
    def restarting(self) -> bool:
        """A previous run's guard was adopted: a failed start keeps it (see the module doc)."""
        return bool(self.adopted.get("nft"))

    def apply(self) -> None:
        """Make every change, recording each one first (so a crash half-way is still undone)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.recover_done = self.recover(adopt=True)
        self.owned = True
        try:
            self._apply()
        except BaseException:
            self.undo(keep_guard=self.restarting)
            raise

    def _apply(self) -> None:
        for name in (self.wan_if, self.lan_if):
            if not Path("/sys/class/net", name).exists():
                raise SetupError(f"interface {name} does not exist in this network namespace")
        self.pid_path.write_text(f"{os.getpid()}\n")
        share = self.share
        # Adopted: the values from before natpass stay recorded (now they read as natpass set them).
        sysctls = {k: str(v) for k, v in self.adopted.get("sysctls", {}).items()}
        offloads = [o for o in self.adopted.get("offloads", []) if isinstance(o, list) and len(o) == 3]
        self.state = {"pid": os.getpid(), "sysctls": sysctls, "offloads": offloads, "nft": False,
                      "wan_if": self.wan_if, "lan_if": self.lan_if,
                      "datapath": "packet" if share is None else "hybrid"}
        self._save()
        self._set_sysctl(SYSCTL_FORWARD, "0" if share is None else "1")
        if share is not None:
            self._apply_share(share)
            return
        # GRO and LRO merge received segments into super-frames larger than the MTU: the
        # packet socket would get them whole, and they must leave as the segments they were.
        for ifname in (self.wan_if, self.lan_if):
            for feature in ("gro", "lro"):
                try:
                    was = packetsock.get_offload(ifname, feature)
                except OSError:
                    continue
                if was:
                    self.state["offloads"].append([ifname, feature, True])
                    self._save()
                    with contextlib.suppress(OSError):
                        packetsock.set_offload(ifname, feature, False)
        self.state["nft"] = True
        self._save()
        _nft(nft_ruleset(self.wan_if, self.lan_if, self.lan_address))
        log.info("set up: ip_forward=0 (was %s), nft table inet %s on %s/%s",
                 self.state["sysctls"][SYSCTL_FORWARD], NFT_TABLE, self.lan_if, self.wan_if)

    def _set_sysctl(self, name: str, value: str) -> None:
        """Record the old value (unless an adopted record has it already), then write the new one."""
        self.state["sysctls"].setdefault(name, _read_sysctl(name))
        self._save()
        _write_sysctl(name, value)

    def _apply_share(self, share: KernelShare) -> None:
        """Hybrid mode: the kernel forwards (GRO kept on: it doubles the kernel's TCP), with its
        conntrack timeouts from natpass's, and the table that hides natpass's traffic from it."""
        for name, value in share.sysctls.items():
            try:
                self._set_sysctl(name, value)
            except OSError as exc:  # a kernel without that conntrack knob: the rest still works
                log.warning("cannot set %s: %s", name.replace("/", "."), exc)
        self.state["nft"] = True
        self._save()
        _nft(share.ruleset)
        log.info("set up (hybrid): ip_forward=1 (was %s), conntrack timeouts %s, nft table inet %s "
                 "on %s/%s", self.state["sysctls"][SYSCTL_FORWARD],
                 ", ".join(f"{k.rsplit('/', 1)[1].removeprefix('nf_conntrack_')}={v}"
                           for k, v in share.sysctls.items()), NFT_TABLE, self.lan_if, self.wan_if)

    def update_share(self, share: KernelShare) -> None:
        """A reload in hybrid mode: the kernel's table is replaced in one nft transaction (its
        ruleset deletes and re-adds the table, so no packet meets a half-made or missing table),
        then its conntrack timeouts; the values from before natpass stay recorded for the
        teardown. Raises SetupError, with nothing changed, when nft refuses the ruleset."""
        if self.share is None or not self.state.get("nft"):
            raise SetupError("the kernel's share can only be replaced in a running hybrid set-up")
        _nft(share.ruleset)
        for name, value in share.sysctls.items():
            if self.share.sysctls.get(name) == value:
                continue
            try:
                self._set_sysctl(name, value)
            except OSError as exc:
                log.warning("cannot set %s: %s", name.replace("/", "."), exc)
        self.share = share
        log.info("kernel's share replaced (hybrid): conntrack timeouts %s",
                 ", ".join(f"{k.rsplit('/', 1)[1].removeprefix('nf_conntrack_')}={v}"
                           for k, v in share.sysctls.items()))

    def undo(self, keep_guard: bool = False) -> list[str]:
        """Undo the set-up; ``keep_guard`` leaves it all in place for the next start to adopt
        (the kernel keeps dropping what arrives for natpass while none runs). Does nothing once
        the set-up was kept, or when this start never took over the state dir (refused)."""
        if self.kept or not self.owned:
            return []
        if keep_guard and (self.state.get("nft") or self.adopted.get("nft")):
            # a start that failed half-way still holds the adopted table (nft replaces it whole
            # or not at all) and its record of the values from before natpass
            self.state = {**(self.state or self.adopted), "nft": True, "pid": None}
            self._save()
            self.state = {}
            self.kept = True
            with contextlib.suppress(FileNotFoundError):
                self.pid_path.unlink()
            return []
        done = self._undo(self.state) if self.state else []
        self.state = {}
        for path in (self.state_path, self.pid_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return done

    @staticmethod
    def _undo(state: dict[str, Any]) -> list[str]:
        done: list[str] = []
        if state.get("nft"):
            proc = _nft(f"delete table inet {NFT_TABLE}\n", check=False)
            if proc.returncode == 0:
                done.append(f"nft table inet {NFT_TABLE}")
        for ifname, feature, value in state.get("offloads", []):
            with contextlib.suppress(OSError, KeyError):
                packetsock.set_offload(ifname, feature, bool(value))
                done.append(f"{feature} {'on' if value else 'off'} on {ifname}")
        for name, value in state.get("sysctls", {}).items():
            with contextlib.suppress(OSError):
                _write_sysctl(name, str(value))
                done.append(f"{name.replace('/', '.')}={value}")
        return done
