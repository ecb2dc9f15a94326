"""One router per network namespace, whatever its config's ``state_dir`` says.

The lock is an exclusive ``flock`` on ``/run/natpass/netns-<inode>.lock``, where ``<inode>`` is
the inode of ``/proc/self/ns/net``: the name belongs to the namespace itself, so two configs with
different state dirs still meet on it, and the kernel drops the lock when its holder dies (a
crash or SIGKILL never leaves a stale lock). The holder writes its PID into the file so that a
refused start can name it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from natpass.datapath.live_setup import SetupError

LOCK_DIR = "/run/natpass"


class NamespaceBusy(SetupError):
    """Another natpass router holds this namespace (the message names its PID)."""


def namespace_id() -> int:
    """Inode of this process's network namespace."""
    return os.stat("/proc/self/ns/net").st_ino


class NamespaceLock:
    """Held from :meth:`acquire` until :meth:`release` or the process ends."""

    def __init__(self, lock_dir: str = LOCK_DIR) -> None:
        self.path = Path(lock_dir) / f"netns-{namespace_id()}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise NamespaceBusy; touches nothing else."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise NamespaceBusy(
                f"natpass is already running in this network namespace (pid {holder}); stop it "
                f"first (lock {self.path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = None
