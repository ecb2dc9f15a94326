"""Per-protocol passthrough usage record, kept in SQLite so the audit can say "IPsec passthrough
has been on for 30 days and nothing used it".

Writes never happen on the packet path: :class:`UsageRecorder` runs one thread that, every
``interval`` seconds, drains events from a callable (the daemon's ``usage_events``) and writes
them in a single transaction. :class:`UsageDB` is the read API for the audit.

Event format (what the daemon hands over; plain dicts, unknown keys ignored)::

    {"ts": 1764131000.0,          # Unix time (float); missing -> the recorder's clock
     "switch": "pptp",            # "pptp" | "ipsec" | "l2tp"
     "event": "tunnel-up",        # see below
     "count": 12,                 # "packets"/"drop": increase since the previous report (delta)
     "total": 1234,               # alternative to "count": a running total since daemon start;
                                  #   the recorder turns it into a delta (a smaller total = restart)
     "reason": "passthrough-disabled:pptp",   # "drop" only: the engine's drop reason
     "on": True,                  # "switch" only: the switch state now
     "detail": "call-id 0x1234 192.168.1.10 -> 198.51.100.7"}  # free text, kept in ``events``

A helper's ``ctx.log`` event exactly as the engine keeps it (``engine.drain_events()``) is accepted
too: ``{"event": "tunnel-up", "proto": "pptp", "lan": "192.168.1.10", ...}`` -- ``proto`` names
the switch when ``switch`` is not a switch name, and the other fields become ``detail``
(``lan=192.168.1.10 remote=...``). So the daemon may hand them over unchanged.

    event        effect
    tunnel-up    usage.tunnels_up += count (default 1); marks the protocol used; kept in ``events``
    tunnel-down  usage.tunnels_down += count (default 1); kept in ``events``
    packets      usage.packets += count; marks the protocol used when count > 0
    drop         usage.drops += count and drops[reason] += count (a drop is not "use")
    switch       a ``switch_changes`` row when the state differs from the last recorded one
                 (so the daemon should report every switch's state at start and after each change
                 or reload; repeating the same state keeps ``enabled_since`` unchanged)
    (other)      any other helper event name (``"pptp:tunnel-up"`` counts as ``tunnel-up``):
                 kept in ``events`` only

Rows are per switch per UTC day of the event's ``ts``. Malformed events are skipped and counted
(``UsageRecorder.stats()["ignored"]``). A corrupt or locked database never raises into the
daemon: the recorder logs, keeps a bounded backlog in memory and retries at the next interval.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from natpass.nat.config import SWITCHES

log = logging.getLogger("natpass.usage")

DEFAULT_FILENAME = "usage.sqlite3"
SCHEMA_VERSION = 1
EVENT_RETENTION_DAYS = 90
MAX_EVENT_ROWS = 100_000  # hard bound on the events table whatever the retention says
MAX_BACKLOG = 50_000  # events held in memory while the database cannot be written
EVENT_KINDS = ("tunnel-up", "tunnel-down", "packets", "drop", "switch")
_EVENT_KEYS = frozenset({"ts", "switch", "event", "count", "total", "reason", "on", "detail", "proto"})

SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    switch TEXT NOT NULL,
    day TEXT NOT NULL,
    first_seen REAL,
    last_seen REAL,
    packets INTEGER NOT NULL DEFAULT 0,
    tunnels_up INTEGER NOT NULL DEFAULT 0,
    tunnels_down INTEGER NOT NULL DEFAULT 0,
    drops INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (switch, day)
);
CREATE TABLE IF NOT EXISTS drops (
    switch TEXT NOT NULL,
    day TEXT NOT NULL,
    reason TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (switch, day, reason)
);
CREATE TABLE IF NOT EXISTS switch_changes (ts REAL NOT NULL, switch TEXT NOT NULL, "on" INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS switch_changes_by_switch ON switch_changes (switch, ts);
CREATE TABLE IF NOT EXISTS events (ts REAL NOT NULL, switch TEXT NOT NULL, event TEXT NOT NULL, detail TEXT);
CREATE INDEX IF NOT EXISTS events_by_ts ON events (ts);
"""


class UsageDBError(Exception):
    """The usage database is missing, corrupt, locked or not a natpass usage database."""


def utc_day(ts: float) -> str:
    """The UTC calendar day (``YYYY-MM-DD``) a timestamp falls on."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def default_path(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / DEFAULT_FILENAME


def _connect(path: str | os.PathLike[str], timeout: float = 5.0) -> sqlite3.Connection:
    conn = sqlite3.connect(os.fspath(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        # WAL lets `natpass audit` read while the daemon writes.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version > SCHEMA_VERSION:
            raise UsageDBError(f"{path}: usage database schema {version} is newer than this natpass")
    except BaseException:
        conn.close()
        raise
    return conn


@dataclass
class _DayRow:
    first_seen: float | None = None
    last_seen: float | None = None
    packets: int = 0
    tunnels_up: int = 0
    tunnels_down: int = 0
    drops: int = 0

    def used(self, ts: float) -> None:
        self.first_seen = ts if self.first_seen is None else min(self.first_seen, ts)
        self.last_seen = ts if self.last_seen is None else max(self.last_seen, ts)


@dataclass
class _Batch:
    """Events of one interval folded into the rows they change."""

    days: dict[tuple[str, str], _DayRow] = field(default_factory=dict)
    drops: dict[tuple[str, str, str], int] = field(default_factory=dict)
    switches: list[tuple[float, str, bool]] = field(default_factory=list)
    events: list[tuple[float, str, str, str | None]] = field(default_factory=list)
    size: int = 0

    def row(self, switch: str, ts: float) -> _DayRow:
        key = (switch, utc_day(ts))
        row = self.days.get(key)
        if row is None:
            row = self.days[key] = _DayRow()
        return row


def _count(value: Any, default: int) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    n = int(value)
    return n if n >= 0 else None


def _normalise_kind(kind: Any, switch: Any) -> str | None:
    """``"tunnel-up"``, ``"pptp:tunnel-up"`` or ``"tunnel_up"`` -> ``"tunnel-up"``; other helper
    event names are kept as they are (recorded in ``events`` only); non-strings -> None."""
    if not isinstance(kind, str) or not kind or len(kind) > 64:
        return None
    name = kind.strip().lower().replace("_", "-")
    if isinstance(switch, str) and name.startswith(switch + ":"):
        name = name[len(switch) + 1:]
    return name if name else None


class UsageRecorder:
    """Drains usage events every ``interval`` seconds and writes them in one transaction.

    ``source`` is called from the recorder thread only; it must return (and forget) the events
    gathered since the previous call. ``clock`` gives the time for events without ``ts`` and for
    retention, so tests can move days forward.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        source: Callable[[], Iterable[Mapping[str, Any]]],
        interval: float = 5.0,
        clock: Callable[[], float] = time.time,
        retention_days: float = EVENT_RETENTION_DAYS,
    ) -> None:
        self.db_path = Path(db_path)
        self.source = source
        self.interval = interval
        self.clock = clock
        self.retention_days = retention_days
        self.last_error: str | None = None
        self._conn: sqlite3.Connection | None = None
        self._pending = _Batch()
        self._totals: dict[tuple[str, str, str], int] = {}  # running totals -> deltas
        self._last_switch: dict[str, bool] = {}
        self._stats = {"events": 0, "ignored": 0, "lost": 0, "flushes": 0, "errors": 0}
        self._lock = threading.Lock()  # one flush at a time (thread and close())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> UsageRecorder:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="natpass-usage", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread and write everything still pending."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(10.0, self.interval * 2))
            self._thread = None
        self.flush()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    stop = close

    def __enter__(self) -> UsageRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def stats(self) -> dict[str, Any]:
        """Counters for the daemon's status: events recorded, ignored, lost; the last error."""
        return {**self._stats, "backlog": self._pending.size, "last_error": self.last_error,
                "path": str(self.db_path)}

    # work ------------------------------------------------------------------------------------
    def flush(self) -> bool:
        """Drain the source and write; True when everything pending reached the database."""
        with self._lock:
            try:
                events = list(self.source() or ())
            except Exception as exc:  # the daemon's problem, not a reason to stop recording
                log.warning("usage: event source failed: %s", exc)
                events = []
            try:
                # Connect before folding, so switch states recorded by a previous run are known.
                conn: sqlite3.Connection | None = self._connection()
            except (sqlite3.Error, UsageDBError, OSError) as exc:
                conn, error = None, exc
            for event in events:
                self._add(event)
            if self._pending.size == 0:
                return conn is not None
            try:
                if conn is None:
                    raise error
                self._write(conn, self._pending)
            except (sqlite3.Error, UsageDBError, OSError) as exc:
                self._failed(exc)
                return False
            self._pending = _Batch()
            self._stats["flushes"] += 1
            if self.last_error is not None:
                log.info("usage: database %s writable again", self.db_path)
            self.last_error = None
            return True

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = _connect(self.db_path)
            self._load_switch_states(self._conn)
        return self._conn

    def _load_switch_states(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute(
            'SELECT switch, "on" FROM switch_changes s WHERE ts = '
            "(SELECT max(ts) FROM switch_changes t WHERE t.switch = s.switch)"
        ).fetchall()
        recorded = {name: bool(on) for name, on in rows}
        # States seen before the database was readable stay pending in the batch; only fill gaps.
        for name, on in recorded.items():
            self._last_switch.setdefault(name, on)
        self._pending.switches = self._dedupe_switches(self._pending.switches, recorded)

    @staticmethod
    def _dedupe_switches(changes: list[tuple[float, str, bool]],
                         recorded: dict[str, bool]) -> list[tuple[float, str, bool]]:
        state = dict(recorded)
        kept = []
        for ts, name, on in changes:
            if state.get(name) != on:
                kept.append((ts, name, on))
                state[name] = on
        return kept

    def _failed(self, exc: BaseException) -> None:
        message = f"usage database {self.db_path}: {exc}"
        if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
            message += " (corrupt: move it away and the router starts a new one)"
        if message != self.last_error:
            log.error("%s; keeping %d events in memory", message, self._pending.size)
        self.last_error = message
        self._stats["errors"] += 1
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None
        if self._pending.size > MAX_BACKLOG:
            # Keep the folded counters (small), forget the per-event rows that make it grow.
            self._stats["lost"] += len(self._pending.events)
            self._pending.size -= len(self._pending.events)
            self._pending.events = []

    def _add(self, event: Any) -> None:
        if not isinstance(event, Mapping):
            self._stats["ignored"] += 1
            return
        kind = event.get("event")
        switch = event.get("switch")
        if switch not in SWITCHES and event.get("proto") in SWITCHES:
            switch = event["proto"]  # a helper's ctx.log event as the engine keeps it
        ts = event.get("ts")
        if ts is None:
            ts = self.clock()
        kind = _normalise_kind(kind, switch)
        if (not kind or not isinstance(switch, str) or not switch or len(switch) > 64
                or isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts)
                or ts < 0):
            self._stats["ignored"] += 1
            return
        ts = float(ts)
        detail = event.get("detail")
        if detail is None:
            extra = {k: v for k, v in event.items() if k not in _EVENT_KEYS}
            detail = " ".join(f"{k}={v}" for k, v in extra.items()) or None
        detail = None if detail is None else str(detail)[:1000]
        batch = self._pending
        if kind in ("packets", "drop"):
            reason = str(event.get("reason") or "unknown")[:200] if kind == "drop" else ""
            if event.get("count") is None and event.get("total") is not None:
                total = _count(event.get("total"), 0)
                if total is None:
                    self._stats["ignored"] += 1
                    return
                key = (switch, kind, reason)
                previous = self._totals.get(key, 0)
                n = total - previous if total >= previous else total  # smaller: the daemon restarted
                self._totals[key] = total
            else:
                count = _count(event.get("count"), 1)
                if count is None:
                    self._stats["ignored"] += 1
                    return
                n = count
            if n == 0:
                return
            row = batch.row(switch, ts)
            if kind == "packets":
                row.packets += n
                row.used(ts)
            else:
                row.drops += n
                key3 = (switch, utc_day(ts), reason)
                batch.drops[key3] = batch.drops.get(key3, 0) + n
        elif kind in ("tunnel-up", "tunnel-down"):
            tunnels = _count(event.get("count"), 1)
            if tunnels is None:
                self._stats["ignored"] += 1
                return
            n = tunnels
            row = batch.row(switch, ts)
            if kind == "tunnel-up":
                row.tunnels_up += n
            else:
                row.tunnels_down += n
            row.used(ts)
            batch.events.append((ts, switch, kind, detail))
        elif kind != "switch":  # another notable helper event: kept in ``events`` only
            batch.events.append((ts, switch, kind, detail))
        else:
            on = event.get("on")
            if not isinstance(on, bool):
                self._stats["ignored"] += 1
                return
            if self._last_switch.get(switch) == on:
                return
            self._last_switch[switch] = on
            batch.switches.append((ts, switch, on))
            batch.events.append((ts, switch, "switch-on" if on else "switch-off", detail))
        batch.size += 1
        self._stats["events"] += 1

    def _write(self, conn: sqlite3.Connection, batch: _Batch) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO usage (switch, day, first_seen, last_seen, packets, tunnels_up, tunnels_down, drops)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (switch, day) DO UPDATE SET"
                " first_seen = min(coalesce(first_seen, excluded.first_seen),"
                "                  coalesce(excluded.first_seen, first_seen)),"
                " last_seen = max(coalesce(last_seen, excluded.last_seen),"
                "                 coalesce(excluded.last_seen, last_seen)),"
                " packets = packets + excluded.packets,"
                " tunnels_up = tunnels_up + excluded.tunnels_up,"
                " tunnels_down = tunnels_down + excluded.tunnels_down,"
                " drops = drops + excluded.drops",
                [(s, d, r.first_seen, r.last_seen, r.packets, r.tunnels_up, r.tunnels_down, r.drops)
                 for (s, d), r in batch.days.items()],
            )
            conn.executemany(
                "INSERT INTO drops (switch, day, reason, count) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (switch, day, reason) DO UPDATE SET count = count + excluded.count",
                [(s, d, reason, n) for (s, d, reason), n in batch.drops.items()],
            )
            conn.executemany('INSERT INTO switch_changes (ts, switch, "on") VALUES (?, ?, ?)',
                             [(ts, s, int(on)) for ts, s, on in batch.switches])
            conn.executemany("INSERT INTO events (ts, switch, event, detail) VALUES (?, ?, ?, ?)",
                             batch.events)
            self._prune(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _prune(self, conn: sqlite3.Connection) -> None:
        cutoff = self.clock() - self.retention_days * 86400.0
        conn.execute("DELETE FROM events WHERE ts < ?", (cutoff,))
        conn.execute(
            "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events ORDER BY ts DESC"
            " LIMIT -1 OFFSET ?)", (MAX_EVENT_ROWS,))


class UsageDB:
    """Read API over a usage database (for ``natpass audit`` and the status page).

    Raises :class:`UsageDBError` with a clear message when the file is missing, corrupt or locked.
    """

    def __init__(self, path: str | os.PathLike[str], timeout: float = 5.0) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UsageDBError(f"no usage database at {self.path} (has the router run with this state_dir?)")
        try:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as exc:
            raise UsageDBError(f"usage database {self.path} unreadable: {exc}") from exc
        missing = {"usage", "drops", "switch_changes", "events"} - tables
        if missing:
            self._conn.close()
            raise UsageDBError(f"{self.path} is not a natpass usage database (missing {', '.join(sorted(missing))})")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> UsageDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise UsageDBError(f"usage database {self.path}: {exc}") from exc

    def switches(self) -> list[str]:
        """Every switch name with any record."""
        rows = self._query("SELECT switch FROM usage UNION SELECT switch FROM switch_changes ORDER BY 1")
        return [r[0] for r in rows]

    def summary(self, switch: str) -> dict[str, Any]:
        """Totals over every recorded day: first_seen/last_seen (None when never used), packets,
        tunnels_up, tunnels_down, drops and days_recorded."""
        row = self._query(
            "SELECT min(first_seen), max(last_seen), coalesce(sum(packets), 0), coalesce(sum(tunnels_up), 0),"
            " coalesce(sum(tunnels_down), 0), coalesce(sum(drops), 0), count(*) FROM usage WHERE switch = ?",
            (switch,))[0]
        keys = ("first_seen", "last_seen", "packets", "tunnels_up", "tunnels_down", "drops", "days_recorded")
        return dict(zip(keys, row, strict=True))

    def last_used(self, switch: str) -> float | None:
        """When traffic or a tunnel of this protocol was last seen; None when never."""
        row = self._query("SELECT max(last_seen) FROM usage WHERE switch = ?", (switch,))[0]
        return None if row[0] is None else float(row[0])

    def enabled_since(self, switch: str) -> float | None:
        """Since when the switch has been on without interruption; None when it is off (or unknown)."""
        rows = self._query('SELECT ts, "on" FROM switch_changes WHERE switch = ? ORDER BY ts DESC, rowid DESC',
                           (switch,))
        since = None
        for ts, on in rows:
            if not on:
                break
            since = float(ts)
        return since

    def drops_by_reason(self, switch: str, since: float | None = None) -> dict[str, int]:
        """Drops of this protocol by reason (from the UTC day of ``since`` on, or all)."""
        day = utc_day(since) if since is not None else ""
        rows = self._query("SELECT reason, sum(count) FROM drops WHERE switch = ? AND day >= ? GROUP BY reason"
                           " ORDER BY 2 DESC", (switch, day))
        return {reason: int(n) for reason, n in rows}

    def days(self, switch: str) -> list[dict[str, Any]]:
        """One dict per recorded UTC day, oldest first."""
        rows = self._query("SELECT day, first_seen, last_seen, packets, tunnels_up, tunnels_down, drops"
                           " FROM usage WHERE switch = ? ORDER BY day", (switch,))
        keys = ("day", "first_seen", "last_seen", "packets", "tunnels_up", "tunnels_down", "drops")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def events(self, switch: str | None = None, since: float = 0.0, limit: int = 1000) -> list[dict[str, Any]]:
        """Recent events (tunnel up/down, switch on/off), newest first."""
        if switch is None:
            rows = self._query("SELECT ts, switch, event, detail FROM events WHERE ts >= ? ORDER BY ts DESC LIMIT ?",
                               (since, limit))
        else:
            rows = self._query("SELECT ts, switch, event, detail FROM events WHERE switch = ? AND ts >= ?"
                               " ORDER BY ts DESC LIMIT ?", (switch, since, limit))
        return [dict(zip(("ts", "switch", "event", "detail"), r, strict=True)) for r in rows]
