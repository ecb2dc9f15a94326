"""Who may use the admin web app: the admin password, sessions, login back-off and API tokens.

Pure logic over files in the state dir and an injected clock (no HTTP here):

* :class:`PasswordFile`: one argon2id hash in ``<state_dir>/admin.passwd`` (mode 0600), set by
  ``natpass passwd``; on a first start without one, :meth:`PasswordFile.ensure` makes a random
  password and returns it once so the caller can print it.
* :class:`Sessions`: server-side sessions with random ids, an absolute lifetime and an idle
  timeout; each carries its own CSRF token.
* :class:`LoginLimiter`: per source address, a few free failures, then a doubling wait.
* :class:`TokenFile`: named API tokens for scripts in ``<state_dir>/admin-tokens.json`` (0600),
  kept as SHA-256 of a 256-bit random secret (a slow hash adds nothing for secrets of that size).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

Clock = Callable[[], float]

PASSWORD_FILENAME = "admin.passwd"
TOKENS_FILENAME = "admin-tokens.json"
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024  # argon2 hashes anything, but a megabyte "password" is an attack
SESSION_LIFETIME = 12 * 3600.0
SESSION_IDLE = 30 * 60.0
MAX_SESSIONS = 64  # the oldest is dropped past this: a flood of logins cannot grow memory
FREE_FAILURES = 3  # failed logins per source before the back-off starts
BACKOFF_FIRST = 2.0
BACKOFF_MAX = 300.0
FORGET_AFTER = 3600.0  # a source that has not failed for this long starts clean
MAX_SOURCES = 4096
TOKEN_PREFIX = "np_"
TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
MAX_TOKENS = 100


class AuthError(Exception):
    """A password or token file that cannot be read or written, or an invalid request."""


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600 (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AuthError(f"the password may have at most {MAX_PASSWORD_LENGTH} characters")


class PasswordFile:
    """The admin password's argon2id hash, read from the file at each check (so ``natpass
    passwd`` takes effect on a running router without a restart)."""

    def __init__(self, state_dir: str | os.PathLike[str], hasher: PasswordHasher | None = None) -> None:
        self.path = Path(state_dir) / PASSWORD_FILENAME
        self.hasher = hasher or PasswordHasher()

    def exists(self) -> bool:
        return self.path.is_file()

    def set(self, password: str) -> None:
        check_new_password(password)
        write_private(self.path, self.hasher.hash(password) + "\n")

    def ensure(self) -> str | None:
        """Create a random password when none is set; returns it (to be shown once) or None."""
        if self.exists():
            return None
        password = secrets.token_urlsafe(12)
        self.set(password)
        return password

    def _stored(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None
        except (OSError, UnicodeError) as exc:
            raise AuthError(f"cannot read the admin password file: {exc}") from None

    def verify(self, password: str) -> bool:
        """True when ``password`` matches (a missing or unreadable hash matches nothing)."""
        if not password or len(password) > MAX_PASSWORD_LENGTH:
            return False
        stored = self._stored()
        if stored is None:
            return False
        try:
            self.hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        if self.hasher.check_needs_rehash(stored):
            with contextlib.suppress(OSError, AuthError):
                self.set(password)
        return True


@dataclass(slots=True)
class Session:
    id: str
    csrf: str
    user: str
    source: str
    created: float
    last_seen: float


class Sessions:
    """Server-side sessions; ids are 256-bit random, never derived from anything."""

    def __init__(self, clock: Clock = time.monotonic, lifetime: float = SESSION_LIFETIME,
                 idle: float = SESSION_IDLE, limit: int = MAX_SESSIONS) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.idle = idle
        self.limit = limit
        self._by_id: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, user: str, source: str) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), user, source, now, now)
        with self._lock:
            self._by_id[session.id] = session
            while len(self._by_id) > self.limit:
                self._by_id.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (its idle timer restarted), or None when unknown,
        expired or idle too long (then it is forgotten)."""
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            session = self._by_id.get(session_id)
            if session is None:
                return None
            if now - session.created >= self.lifetime or now - session.last_seen >= self.idle:
                del self._by_id[session_id]
                return None
            session.last_seen = now
            return session

    def drop(self, session_id: str) -> bool:
        with self._lock:
            return self._by_id.pop(session_id, None) is not None

    def drop_all(self) -> int:
        with self._lock:
            n = len(self._by_id)
            self._by_id.clear()
        return n

    def __len__(self) -> int:
        return len(self._by_id)


def csrf_ok(session: Session, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(session.csrf.encode(), (given or "").encode())


@dataclass(slots=True)
class _Source:
    failures: int
    last_failure: float
    blocked_until: float


class LoginLimiter:
    """Failed logins per source address: FREE_FAILURES free, then a wait that doubles with each
    further failure (BACKOFF_FIRST .. BACKOFF_MAX). A success clears the source."""

    def __init__(self, clock: Clock = time.monotonic, free: int = FREE_FAILURES,
                 first: float = BACKOFF_FIRST, cap: float = BACKOFF_MAX, limit: int = MAX_SOURCES) -> None:
        self.clock = clock
        self.free = free
        self.first = first
        self.cap = cap
        self.limit = limit
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, source: str) -> float:
        """Seconds this source must wait before it may try again (0: it may try now)."""
        now = self.clock()
        with self._lock:
            entry = self._sources.get(source)
            if entry is None:
                return 0.0
            if now - entry.last_failure >= FORGET_AFTER:
                del self._sources[source]
                return 0.0
            return max(0.0, entry.blocked_until - now)

    def failure(self, source: str) -> float:
        """Count a failure; returns the wait it imposes (0 while the free tries last)."""
        now = self.clock()
        with self._lock:
            entry = self._sources.pop(source, None)
            if entry is None or now - entry.last_failure >= FORGET_AFTER:
                entry = _Source(0, now, now)
            entry.failures += 1
            entry.last_failure = now
            over = entry.failures - self.free
            delay = 0.0 if over <= 0 else min(self.cap, self.first * 2 ** (over - 1))
            entry.blocked_until = now + delay
            self._sources[source] = entry
            while len(self._sources) > self.limit:
                self._sources.popitem(last=False)
            return delay

    def success(self, source: str) -> None:
        with self._lock:
            self._sources.pop(source, None)

    def failures(self, source: str) -> int:
        entry = self._sources.get(source)
        return 0 if entry is None else entry.failures


@dataclass(frozen=True, slots=True)
class TokenInfo:
    name: str
    created: float
    last_used: float | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenFile:
    """Named API tokens (``np_<name-independent random>``); only their SHA-256 is stored."""

    def __init__(self, state_dir: str | os.PathLike[str], wall: Clock = time.time) -> None:
        self.path = Path(state_dir) / TOKENS_FILENAME
        self.wall = wall
        self._lock = threading.Lock()

    def _load(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise AuthError(f"cannot read the API token file: {exc}") from None
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list):
            raise AuthError("the API token file is not a natpass token list")
        return [t for t in tokens if isinstance(t, dict) and isinstance(t.get("name"), str)
                and isinstance(t.get("sha256"), str)]

    def _save(self, tokens: list[dict[str, Any]]) -> None:
        write_private(self.path, json.dumps({"version": 1, "tokens": tokens}, indent=1) + "\n")

    def create(self, name: str) -> str:
        """A new token named ``name``; returns the secret (shown once, never stored)."""
        if not TOKEN_NAME.match(name):
            raise AuthError("a token name is 1-64 letters, digits, '.', '_' or '-', starting with a "
                            "letter or digit")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            tokens = self._load()
            if any(t["name"] == name for t in tokens):
                raise AuthError(f"a token named {name!r} exists already (revoke it first)")
            if len(tokens) >= MAX_TOKENS:
                raise AuthError(f"at most {MAX_TOKENS} tokens; revoke unused ones first")
            tokens.append({"name": name, "sha256": _digest(secret), "created": self.wall(),
                           "last_used": None})
            self._save(tokens)
        return secret

    def list(self) -> list[TokenInfo]:
        with self._lock:
            tokens = self._load()
        return [TokenInfo(t["name"], float(t.get("created") or 0.0),
                          None if t.get("last_used") is None else float(t["last_used"])) for t in tokens]

    def revoke(self, name: str) -> bool:
        with self._lock:
            tokens = self._load()
            kept = [t for t in tokens if t["name"] != name]
            if len(kept) == len(tokens):
                return False
            self._save(kept)
        return True

    def verify(self, secret: str | None) -> str | None:
        """The name of the token ``secret`` is, or None. Records its last use (at most once a
        minute, so a busy script does not rewrite the file on every request)."""
        if not secret or not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            return None
        digest = _digest(secret)
        with self._lock:
            try:
                tokens = self._load()
            except AuthError:
                return None
            for t in tokens:
                if hmac.compare_digest(t["sha256"], digest):
                    now = self.wall()
                    last = t.get("last_used")
                    if not isinstance(last, int | float) or now - last >= 60:
                        t["last_used"] = now
                        with contextlib.suppress(OSError):
                            self._save(tokens)
                    return str(t["name"])
        return None


class Auth:
    """The admin web app's view of all of the above, for one state dir."""

    def __init__(self, state_dir: str | os.PathLike[str], clock: Clock = time.monotonic,
                 wall: Clock = time.time, hasher: PasswordHasher | None = None) -> None:
        self.password = PasswordFile(state_dir, hasher)
        self.sessions = Sessions(clock)
        self.limiter = LoginLimiter(clock)
        self.tokens = TokenFile(state_dir, wall)
