"""The saved connection state: ``state_dir/connection-state``, kept across restarts.

Layout: one header line ``natpass-state <version> <body length> <HMAC-SHA256 hex>`` and the body,
zlib-compressed JSON (the engine snapshot of natpass.nat.snapshot, the wall-clock time of the
save, and a summary of the config it was taken under). The HMAC covers the version, the length and
the body, keyed with ``state_dir/state.key`` (32 random bytes made on first use, root-only like
the state file: it names LAN hosts and the servers they use).

Written atomically: a temporary file in the same directory, fsync, rename, fsync of the directory.
A file that is missing, torn (short), corrupt, of another version, signed with another key, or
readable by others is never trusted: :func:`load` returns why, the caller logs it once and starts
with empty tables.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VERSION = 1
MAGIC = b"natpass-state"
STATE_FILE = "connection-state"
KEY_FILE = "state.key"
KEY_BYTES = 32
MAX_BODY = 1 << 30  # a body claiming more is not ours


class StateFileError(Exception):
    """The state file cannot be trusted; the message says why (one log line)."""


@dataclass
class Loaded:
    """A trusted state file's content."""

    saved_wall: float
    engine: dict[str, Any]
    config: dict[str, Any]


def _root_only(st: os.stat_result) -> bool:
    return stat.S_IMODE(st.st_mode) & 0o077 == 0 and st.st_uid == os.geteuid()


def state_key(state_dir: str | Path, create: bool = True) -> bytes:
    """The per-machine HMAC key, made (0600) when missing and ``create``; StateFileError when it
    is unreadable, of the wrong size or readable by others."""
    path = Path(state_dir) / KEY_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        if not create:
            raise StateFileError(f"{path} is missing") from None
        Path(state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        key = secrets.token_bytes(KEY_BYTES)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            return state_key(state_dir, create=False)  # another writer made it first
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        return key
    except OSError as exc:
        raise StateFileError(f"{path}: {exc.strerror}") from None
    try:
        if not _root_only(os.fstat(fd)):
            raise StateFileError(f"{path} is readable or writable by others (must be 0600, owner only)")
        key = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(key) != KEY_BYTES:
        raise StateFileError(f"{path} is not a natpass key ({len(key)} bytes)")
    return key


def _mac(key: bytes, version: int, body: bytes) -> str:
    return hmac.new(key, b"%d %d\n" % (version, len(body)) + body, hashlib.sha256).hexdigest()


def encode(content: dict[str, Any], key: bytes) -> bytes:
    """Header line + compressed body of ``content`` (JSON-able)."""
    body = zlib.compress(json.dumps(content, separators=(",", ":")).encode(), 1)
    return b"%s %d %d %s\n" % (MAGIC, VERSION, len(body), _mac(key, VERSION, body).encode()) + body


def write(state_dir: str | Path, content: dict[str, Any], key: bytes) -> Path:
    """Write the state file atomically (temporary file, fsync, rename, fsync of the folder)."""
    folder = Path(state_dir)
    path = folder / STATE_FILE
    data = encode(content, key)
    tmp = folder / f".{STATE_FILE}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return path


def decode(data: bytes, key: bytes) -> Loaded:
    """Check and decode a state file's bytes; StateFileError says why it is not trusted."""
    nl = data.find(b"\n", 0, 200)
    if nl < 0:
        raise StateFileError("torn or not a natpass state file (no header)")
    parts = data[:nl].split(b" ")
    if len(parts) != 4 or parts[0] != MAGIC:
        raise StateFileError("not a natpass state file (bad header)")
    try:
        version, length = int(parts[1]), int(parts[2])
    except ValueError:
        raise StateFileError("not a natpass state file (bad header)") from None
    if version != VERSION:
        raise StateFileError(f"written by another natpass version (format {version}, "
                             f"this one reads {VERSION})")
    body = data[nl + 1:]
    if not 0 <= length <= MAX_BODY or len(body) != length:
        raise StateFileError(f"torn: {len(body)} bytes of a {length}-byte body")
    if not hmac.compare_digest(parts[3].decode("ascii", "replace"), _mac(key, version, body)):
        raise StateFileError("checksum mismatch: tampered with, corrupt or made with another key")
    try:
        content = json.loads(zlib.decompress(body))
    except (zlib.error, ValueError) as exc:
        raise StateFileError(f"undecodable body ({exc})") from None
    if (not isinstance(content, dict) or not isinstance(content.get("engine"), dict)
            or not isinstance(content.get("saved_wall"), (int, float))):
        raise StateFileError("body lacks the engine state")
    cfg = content.get("config")
    return Loaded(float(content["saved_wall"]), content["engine"], cfg if isinstance(cfg, dict) else {})


def load(state_dir: str | Path) -> Loaded:
    """Read and check ``state_dir/connection-state``; StateFileError (FileNotFoundError when
    there is none) when it must not be used."""
    path = Path(state_dir) / STATE_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StateFileError(f"{path}: {exc.strerror}") from None
    try:
        if not _root_only(os.fstat(fd)):
            raise StateFileError(f"{path} is readable or writable by others (must be 0600)")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(MAX_BODY + 256)
    finally:
        os.close(fd)
    return decode(data, state_key(state_dir, create=False))


def discard(state_dir: str | Path) -> None:
    """Remove the state file (it was used, or it must not be used again)."""
    with contextlib.suppress(FileNotFoundError):
        (Path(state_dir) / STATE_FILE).unlink()
