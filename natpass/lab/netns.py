"""Network namespaces, veth links and processes for the lab, all findable by a name prefix.

Every object the lab makes carries a prefix so that ``down`` and crash cleanup can find it:

* namespaces are named ``<prefix>-<node>`` (the dash keeps prefix ``np`` from matching ``npdp-*``);
* processes started with :meth:`Netns.spawn` are recorded in ``/run/natpass-lab/<prefix>/pids/``
  (PID, start time, namespace, argv) so they can be stopped by PID even after a crash;
* generated files (configs, logs) live under ``/run/natpass-lab/<prefix>/``.

Network safety (CONTRIBUTING.md): nothing is ever created in the root namespace. veth pairs are created
directly inside their namespaces (``ip -n A link add ... peer ... netns B``), and every address and
route passes :func:`check_lab_address`, which accepts documentation ranges only.

Usage::

    lab = Netns("npdp")
    lab.cleanup()                       # remove leftovers of a crashed run
    lab.add("cli"); lab.add("srv")
    lab.veth("cli", "eth0", "srv", "eth0")
    lab.addr("cli", "eth0", "192.0.2.1/24"); lab.addr("srv", "eth0", "192.0.2.2/24")
    lab.run("cli", ["ping", "-c1", "192.0.2.2"])
    pid = lab.spawn("srv", ["socat", ...], label="socat")
    lab.kill(pid)
    lab.cleanup()
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STATE_ROOT = Path(os.environ.get("NATPASS_LAB_STATE", "/run/natpass-lab"))
# The folder that holds this natpass package: lab processes run the natpass the lab belongs to.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
"""Where each prefix keeps its recorded PIDs, generated configs and logs."""

PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
NODE_RE = re.compile(r"^[a-z0-9][a-z0-9_.]{0,30}$")
IFNAME_MAX = 15  # IFNAMSIZ - 1 in the kernel

# CONTRIBUTING.md, network safety: the only addresses the lab may configure.
LAB_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "192.0.2.0/24",  # RFC 5737 TEST-NET-1
        "198.51.100.0/24",  # RFC 5737 TEST-NET-2
        "203.0.113.0/24",  # RFC 5737 TEST-NET-3
        "100.64.0.0/10",  # RFC 6598 shared address space (carrier NAT)
        "192.168.0.0/16",  # LANs (192.168.x.0/24), also the addresses inside lab VPN tunnels
        "127.0.0.0/8",
    )
)


class LabError(RuntimeError):
    """A lab operation failed (the message says which command and why)."""


def check_lab_address(text: str) -> None:
    """Refuse any address or prefix outside the documentation ranges the lab may use."""
    if text == "default":
        return
    net = ipaddress.ip_network(text, strict=False)
    if net.version != 4 or not any(net.subnet_of(allowed) for allowed in LAB_NETWORKS):  # type: ignore[arg-type]
        raise LabError(f"{text} is outside the lab's documentation address ranges")


def _proc_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: tells a recorded process from a later one reusing its PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int, start: str | None = None) -> bool:
    """True while ``pid`` runs (and is the same process when ``start`` is given); zombies count as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return start is None or fields[19] == start


@dataclass
class Recorded:
    """A process the lab started, as written to the state dir."""

    pid: int
    start: str | None
    ns: str
    label: str
    argv: list[str]
    log: str | None



def python_argv(code: str, *args: str) -> list[str]:
    """``python -c CODE ARGS`` importing this natpass package whatever the current folder holds:
    ``-P`` keeps the current folder (which may contain a folder named natpass) off ``sys.path``,
    and the package's own folder goes first, ahead of any installed copy."""
    boot = f"import sys; sys.path.insert(0, {str(PACKAGE_ROOT)!r})\n"
    return [sys.executable, "-P", "-c", boot + code, *args]


def module_argv(module: str, *args: str) -> list[str]:
    """``python -m MODULE ARGS`` the same way as :func:`python_argv`."""
    return python_argv(f"import runpy; runpy.run_module({module!r}, run_name='__main__', alter_sys=True)",
                       *args)

class Netns:
    """The namespaces, links and processes of one lab prefix."""

    def __init__(self, prefix: str, state_root: Path | None = None) -> None:
        if not PREFIX_RE.match(prefix):
            raise LabError(f"bad lab prefix {prefix!r}: 1-8 lowercase letters/digits, starting with a letter")
        self.prefix = prefix
        self.state_dir = (state_root or STATE_ROOT) / prefix
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # ----- names and files -------------------------------------------------------------------
    def ns(self, node: str) -> str:
        """The namespace name of ``node`` (``<prefix>-<node>``); a full name is returned as is."""
        if node.startswith(self.prefix + "-"):
            return node
        if not NODE_RE.match(node):
            raise LabError(f"bad node name {node!r}")
        return f"{self.prefix}-{node}"

    def node(self, ns: str) -> str:
        return ns[len(self.prefix) + 1 :] if ns.startswith(self.prefix + "-") else ns

    def path(self, *parts: str) -> Path:
        """A file under this prefix's state dir (parent directories created)."""
        p = self.state_dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write(self, name: str, text: str, mode: int = 0o600) -> Path:
        """Write a generated file (config, key, script) under the state dir and return its path."""
        p = self.path(name)
        p.write_text(text)
        p.chmod(mode)
        return p

    # ----- namespaces --------------------------------------------------------------------------
    def namespaces(self) -> list[str]:
        """Every existing namespace carrying this prefix (also those of a crashed run)."""
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
        names = [line.split()[0] for line in out.splitlines() if line.strip()]
        return sorted(n for n in names if n.startswith(self.prefix + "-"))

    def exists(self, node: str) -> bool:
        return Path("/run/netns", self.ns(node)).exists()

    def add(self, node: str) -> str:
        """Create the namespace of ``node`` with loopback up; returns its name."""
        name = self.ns(node)
        if self.exists(node):
            raise LabError(f"namespace {name} already exists (run cleanup/`natpass lab down` first)")
        _check(["ip", "netns", "add", name])
        _check(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def delete(self, node: str) -> None:
        """Stop every process inside the namespace, then delete it."""
        name = self.ns(node)
        self._kill_ns_pids(name)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)

    # ----- links, addresses, routes, sysctls ---------------------------------------------------
    def veth(self, a: str, a_if: str, b: str, b_if: str, mtu: int | None = None, up: bool = True) -> None:
        """A veth pair ``a:a_if <-> b:b_if`` created directly inside the two namespaces."""
        for ifname in (a_if, b_if):
            if len(ifname) > IFNAME_MAX:
                raise LabError(f"interface name {ifname!r} longer than {IFNAME_MAX}")
        argv = ["ip", "-n", self.ns(a), "link", "add", a_if]
        if mtu:
            argv += ["mtu", str(mtu)]
        argv += ["type", "veth", "peer", "name", b_if, "netns", self.ns(b)]
        if mtu:
            argv += ["mtu", str(mtu)]
        _check(argv)
        if up:
            self.ip(a, "link", "set", a_if, "up")
            self.ip(b, "link", "set", b_if, "up")

    def offloads_off(self, node: str, ifname: str, features: Sequence[str] = ("tso", "gso")) -> None:
        """Make a host's veth end behave like a NIC on a wire: segments no larger than the MTU.

        veth hands TSO/GSO super-packets (up to 64 KiB) to its peer unsegmented; a router reading
        frames with packet sockets (natpass) would get them whole, which no real wire carries."""
        self.set_offloads(node, ifname, features, False)

    def set_offloads(self, node: str, ifname: str, features: Sequence[str], on: bool) -> None:
        """Turn ``features`` of ``ifname`` on or off (one it lacks is reported on stderr)."""
        script = (
            "import sys\n"
            "from natpass.datapath.packetsock import set_offload\n"
            f"for f in {tuple(features)!r}:\n"
            "    try:\n"
            f"        set_offload({ifname!r}, f, {on!r})\n"
            "    except OSError as e:\n"
            "        print(f, e, file=sys.stderr)\n"
        )
        self.run(node, python_argv(script))

    def ip(self, node: str, *args: str) -> str:
        """``ip -n NS ARGS``; returns stdout."""
        return _check(["ip", "-n", self.ns(node), *args]).stdout

    def addr(self, node: str, ifname: str, cidr: str) -> None:
        check_lab_address(cidr)
        self.ip(node, "addr", "add", cidr, "dev", ifname)

    def route(self, node: str, dest: str, via: str | None = None, dev: str | None = None) -> None:
        check_lab_address(dest)
        argv = ["route", "replace", dest]
        if via:
            check_lab_address(via)
            argv += ["via", via]
        if dev:
            argv += ["dev", dev]
        self.ip(node, *argv)

    def sysctl(self, node: str, key: str, value: str | int) -> None:
        self.run(node, ["sysctl", "-qw", f"{key}={value}"])

    def nft(self, node: str, ruleset: str) -> None:
        """Load an nftables ruleset inside the namespace."""
        self.run(node, ["nft", "-f", "-"], input=ruleset)

    # ----- commands and processes --------------------------------------------------------------
    def argv(self, node: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(node), *argv]

    def run(
        self,
        node: str,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 30.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` to completion inside the namespace (text output captured)."""
        full = self.argv(node, argv)
        try:
            proc = subprocess.run(
                full,
                capture_output=True,
                text=True,
                timeout=timeout,
                input=input,
                env=_env(env),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"timed out after {timeout}s: {' '.join(full)}") from exc
        if check and proc.returncode != 0:
            raise LabError(
                f"{' '.join(full)} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:500]}"
            )
        return proc

    def spawn(
        self,
        node: str,
        argv: Sequence[str],
        *,
        label: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: int | None = subprocess.DEVNULL,
        private_run: bool = False,
        binds: Sequence[tuple[str, str]] = (),
        dev_log: str | None = None,
    ) -> int:
        """Start ``argv`` in the background inside the namespace, record its PID, return it.

        Output goes to ``logs/<label>.log`` under the state dir. ``private_run`` mounts a fresh tmpfs
        on /run for this process (charon, wireguard-go and friends keep sockets there, and each
        namespace must have its own). ``dev_log`` gives the process a private /dev (a tmpfs with
        the real entries bound back) whose /dev/log is the datagram socket at that path, so a daemon
        that logs only to syslog (pptpd) can be read without a syslog daemon and without touching
        the shared /dev. ``binds`` bind-mounts ``(source, target)`` pairs in the process's
        private mount namespace (e.g. a stand-in over /usr/sbin/pppd), never in the root one.
        Processes must stay in the foreground: the recorded PID is the one that gets stopped.
        """
        label = label or Path(argv[0]).name
        log = self.path("logs", f"{label}.log")
        inner = list(argv)
        if private_run or binds or dev_log:
            # `ip netns exec` already gives the child its own (slave) mount namespace: mounts made
            # here stay inside it. /run/netns stays reachable through the namespace fd we are in.
            steps = []
            if private_run:
                # Keep the state dir (configs, logs) visible under the fresh /run: hold it on a
                # bind mount, cover /run, then move the hold back to the same path.
                state = _q(str(self.state_dir))
                steps.append(
                    "h=$(mktemp -d /tmp/.natpass-lab-XXXXXX)"
                    f" && mount --bind {state} $h && mount -t tmpfs -o mode=755 natpass-lab /run"
                    f" && mkdir -p {state} /run/lock && mount --move $h {state} && rmdir $h"
                )
            if dev_log:
                steps.append(
                    "d=$(mktemp -d /tmp/.natpass-lab-XXXXXX) && mount --rbind /dev $d"
                    " && mount -t tmpfs -o mode=755 natpass-dev /dev"
                    ' && for e in $(ls -A $d); do'
                    # a bound ptmx would look for "pts" beside it in the old /dev: link it instead
                    ' if [ "$e" = ptmx ]; then ln -s pts/ptmx /dev/ptmx;'
                    ' elif [ -L "$d/$e" ]; then cp -P "$d/$e" "/dev/$e";'
                    ' elif [ -d "$d/$e" ]; then mkdir "/dev/$e" && mount --rbind "$d/$e" "/dev/$e";'
                    ' else touch "/dev/$e" && mount --bind "$d/$e" "/dev/$e"; fi; done'
                    f" && touch /dev/log && mount --bind {_q(dev_log)} /dev/log"
                    " && umount -l $d && rmdir $d"
                )
            for src, dst in binds:
                steps.append(f"mount --bind {_q(src)} {_q(dst)}")
            script = " && ".join(steps) + ' && exec "$@"'
            inner = ["sh", "-c", script, "natpass-lab-spawn", *inner]
        full = self.argv(node, inner)
        with open(log, "wb") as out:  # fresh per start: checks read this run's output only
            proc = subprocess.Popen(
                full, stdout=out, stderr=subprocess.STDOUT, stdin=stdin, env=_env(env), start_new_session=True
            )
        # `ip netns exec` and `sh -c ... exec` both exec in place: proc.pid is the program's PID.
        self._children[proc.pid] = proc
        time.sleep(0.01)
        rec = {
            "pid": proc.pid,
            "start": _proc_start_time(proc.pid),
            "ns": self.ns(node),
            "label": label,
            "argv": list(argv),
            "log": str(log),
        }
        self.path("pids", f"{proc.pid}.json").write_text(json.dumps(rec))
        return proc.pid

    def recorded(self) -> list[Recorded]:
        """The processes recorded under this prefix (alive or not)."""
        out = []
        d = self.state_dir / "pids"
        if d.is_dir():
            for f in sorted(d.glob("*.json")):
                try:
                    rec = json.loads(f.read_text())
                    out.append(Recorded(**rec))
                except (OSError, ValueError, TypeError):
                    continue
        return out

    def alive(self, pid: int) -> bool:
        proc = self._children.get(pid)
        if proc is not None:
            return proc.poll() is None
        for rec in self.recorded():
            if rec.pid == pid:
                return pid_alive(pid, rec.start)
        return pid_alive(pid)

    def log(self, label: str) -> str:
        """The output so far of the process started with ``label``."""
        p = self.state_dir / "logs" / f"{label}.log"
        try:
            return p.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self, pid: int, timeout: float = 3.0, sig: int = signal.SIGTERM) -> None:
        """Stop one recorded process by PID: ``sig``, then SIGKILL after ``timeout``."""
        start = None
        for rec in self.recorded():
            if rec.pid == pid:
                start = rec.start
        if pid_alive(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self._still_running(pid, start):
                time.sleep(0.02)
            if self._still_running(pid, start):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline and self._still_running(pid, start):
                    time.sleep(0.02)
        proc = self._children.pop(pid, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "pids" / f"{pid}.json").unlink()

    def _still_running(self, pid: int, start: str | None) -> bool:
        proc = self._children.get(pid)
        if proc is not None:
            return proc.poll() is None
        return pid_alive(pid, start)

    def wait_for(self, predicate: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
        """Poll ``predicate()`` until it is true or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)

    # ----- cleanup ----------------------------------------------------------------------------
    def _kill_ns_pids(self, ns: str) -> None:
        """Stop every process still inside one of our namespaces (by PID, as `ip netns pids` lists)."""
        for _ in range(2):
            out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout
            pids = [int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid()]
            if not pids:
                return
            for pid in pids:
                self.kill(pid, timeout=1.5)

    def cleanup(self) -> list[str]:
        """Remove everything of this prefix: recorded processes, processes inside its namespaces,
        the namespaces, and the state dir. Works with no state (after a crash). Returns what went."""
        removed = []
        for rec in self.recorded():
            if pid_alive(rec.pid, rec.start):
                self.kill(rec.pid, timeout=1.5)
                removed.append(f"pid {rec.pid} ({rec.label})")
        for ns in self.namespaces():
            self._kill_ns_pids(ns)
        for ns in self.namespaces():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
            removed.append(f"netns {ns}")
        self._umount_under(self.state_dir)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self._children.clear()
        return removed

    @staticmethod
    def _umount_under(path: Path) -> None:
        try:
            mounts = Path("/proc/self/mounts").read_text().splitlines()
        except OSError:
            return
        for line in reversed(mounts):
            target = line.split()[1]
            if target.startswith(str(path) + "/"):
                subprocess.run(["umount", "-l", target], capture_output=True, check=False)

    @contextlib.contextmanager
    def session(self) -> Iterator[Netns]:
        """``with Netns(p).session() as lab:`` cleans leftovers first and everything at the end."""
        self.cleanup()
        try:
            yield self
        finally:
            self.cleanup()


def _check(argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[:500]}")
    return proc


def _env(extra: Mapping[str, str] | None) -> dict[str, str] | None:
    if not extra:
        return None
    env = dict(os.environ)
    env.update(extra)
    return env


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def have(program: str) -> bool:
    """Whether ``program`` is on PATH (or an absolute path that exists)."""
    return shutil.which(program) is not None
