"""The usage recorder (batched SQLite writes off the packet path) and the audit's read API."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from natpass.router.usage import UsageDB, UsageDBError, UsageRecorder, utc_day

DAY = 86400.0


def ts(text: str) -> float:
    """'2026-03-01 23:59:30' (UTC) -> Unix time."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


class Queue:
    """A stand-in for RouterDaemon.usage_events: push events, the recorder drains them."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.lock = threading.Lock()
        self.drains = 0

    def push(self, *events: Any) -> None:
        with self.lock:
            self.items.extend(events)

    def __call__(self) -> list[Any]:
        with self.lock:
            self.drains += 1
            out, self.items = self.items, []
        return out


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def recorder(path: Path, queue: Queue, clock: Clock | None = None) -> UsageRecorder:
    return UsageRecorder(path, queue, interval=3600, clock=clock or Clock(ts("2026-03-01 12:00:00")))


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def test_n_events_become_one_row_per_switch_per_day(tmp_path: Path) -> None:
    db, q = tmp_path / "usage.sqlite3", Queue()
    rec = recorder(db, q)
    t0 = ts("2026-03-01 10:00:00")
    for i in range(100):
        q.push({"ts": t0 + i, "switch": "pptp", "event": "packets", "count": 3})
    q.push({"ts": t0 + 5, "switch": "pptp", "event": "tunnel-up", "detail": "call 0x1234"},
           {"ts": t0 + 50, "switch": "pptp", "event": "tunnel-down"},
           {"ts": t0 + 7, "switch": "ipsec", "event": "drop", "count": 4, "reason": "passthrough-disabled:ipsec"},
           {"ts": t0 + 8, "switch": "ipsec", "event": "drop", "count": 2, "reason": "passthrough-disabled:ipsec"})
    assert rec.flush()
    rec.close()
    usage = rows(db, "SELECT switch, day, first_seen, last_seen, packets, tunnels_up, tunnels_down, drops"
                     " FROM usage ORDER BY switch")
    assert usage == [
        ("ipsec", "2026-03-01", None, None, 0, 0, 0, 6),
        ("pptp", "2026-03-01", t0, t0 + 99, 300, 1, 1, 0),
    ]
    assert rows(db, "SELECT switch, reason, count FROM drops") == [("ipsec", "passthrough-disabled:ipsec", 6)]
    assert rows(db, "SELECT event, detail FROM events WHERE switch = 'pptp' ORDER BY ts") == [
        ("tunnel-up", "call 0x1234"), ("tunnel-down", None)]


def test_writes_are_batched_one_transaction_per_interval(tmp_path: Path) -> None:
    db, q = tmp_path / "usage.sqlite3", Queue()
    rec = UsageRecorder(db, q, interval=0.05).start()
    try:
        for i in range(500):
            q.push({"ts": time.time(), "switch": "l2tp", "event": "packets", "count": 1})
            if i % 100 == 0:
                time.sleep(0.06)
        deadline = time.time() + 10
        while q.items and time.time() < deadline:
            time.sleep(0.02)
    finally:
        rec.close()
    stats = rec.stats()
    assert stats["events"] == 500
    assert 1 <= stats["flushes"] < 500  # batched, not one write per event
    assert rows(db, "SELECT sum(packets) FROM usage WHERE switch = 'l2tp'") == [(500,)]


def test_close_flushes_what_is_pending(tmp_path: Path) -> None:
    db, q = tmp_path / "usage.sqlite3", Queue()
    rec = recorder(db, q).start()  # interval of an hour: only close() can write these
    q.push({"ts": ts("2026-03-01 09:00:00"), "switch": "pptp", "event": "tunnel-up"})
    rec.close()
    assert rows(db, "SELECT tunnels_up FROM usage") == [(1,)]


def test_restart_keeps_data_and_adds_to_the_same_day(tmp_path: Path) -> None:
    db = tmp_path / "usage.sqlite3"
    t0 = ts("2026-03-01 08:00:00")
    for run in range(2):
        q = Queue()
        rec = recorder(db, q)
        q.push({"ts": t0 + run * 3600, "switch": "ipsec", "event": "tunnel-up"},
               {"ts": t0 + run * 3600, "switch": "ipsec", "event": "packets", "count": 10})
        rec.close()
    with UsageDB(db) as u:
        s = u.summary("ipsec")
    assert (s["packets"], s["tunnels_up"], s["days_recorded"]) == (20, 2, 1)
    assert (s["first_seen"], s["last_seen"]) == (t0, t0 + 3600)


def test_day_rollover_at_utc_midnight(tmp_path: Path) -> None:
    db, q = tmp_path / "usage.sqlite3", Queue()
    clock = Clock(ts("2026-03-01 23:59:58"))
    rec = recorder(db, q, clock)
    q.push({"switch": "pptp", "event": "packets", "count": 5})  # no ts: the recorder's clock
    rec.flush()
    clock.now += 4  # 00:00:02 the next day
    q.push({"switch": "pptp", "event": "packets", "count": 7})
    rec.close()
    assert rows(db, "SELECT day, packets FROM usage ORDER BY day") == [("2026-03-01", 5), ("2026-03-02", 7)]
    with UsageDB(db) as u:
        assert u.summary("pptp")["days_recorded"] == 2
        assert [d["packets"] for d in u.days("pptp")] == [5, 7]


def test_running_totals_become_deltas_and_a_daemon_restart_resets_them(tmp_path: Path) -> None:
    db, q = tmp_path / "usage.sqlite3", Queue()
    rec = recorder(db, q)
    t0 = ts("2026-03-01 10:00:00")
    for i, total in enumerate((10, 25, 25, 40)):
        q.push({"ts": t0 + i, "switch": "pptp", "event": "packets", "total": total})
    q.push({"ts": t0 + 9, "switch": "pptp", "event": "packets", "total": 3})  # counters restarted
    q.push({"ts": t0 + 9, "switch": "pptp", "event": "drop", "reason": "passthrough-disabled:pptp", "total": 4},
           {"ts": t0 + 10, "switch": "pptp", "event": "drop", "reason": "passthrough-disabled:pptp", "total": 9})
    rec.close()
    assert rows(db, "SELECT packets, drops FROM usage") == [(43, 9)]


def test_malformed_events_are_skipped_and_counted(tmp_path: Path) -> None:
    db, q = tmp_path / "usage.sqlite3", Queue()
    rec = recorder(db, q)
    q.push(None, "tunnel-up", 42, {}, {"event": "packets"}, {"switch": "pptp"},
           {"switch": "pptp", "event": "packets", "count": -1},
           {"switch": "pptp", "event": "packets", "count": "7"},
           {"switch": "pptp", "event": "packets", "ts": float("nan")},
           {"switch": "pptp", "event": "switch", "on": "yes"},
           {"switch": 3, "event": "tunnel-up"},
           {"switch": "pptp", "event": "tunnel-up", "ts": ts("2026-03-01 10:00:00")})
    rec.close()
    assert rec.stats()["ignored"] == 11
    assert rows(db, "SELECT tunnels_up FROM usage") == [(1,)]


def test_helper_event_names_are_normalised(tmp_path: Path) -> None:
    db, q = tmp_path / "usage.sqlite3", Queue()
    rec = recorder(db, q)
    t0 = ts("2026-03-01 10:00:00")
    q.push({"ts": t0, "switch": "l2tp", "event": "l2tp:tunnel-up"},
           {"ts": t0, "switch": "l2tp", "event": "tunnel_down"},
           {"ts": t0, "switch": "l2tp", "event": "session-id-collision", "detail": "sid 7"})
    rec.close()
    assert rows(db, "SELECT tunnels_up, tunnels_down FROM usage") == [(1, 1)]
    assert ("session-id-collision", "sid 7") in rows(db, "SELECT event, detail FROM events")


def test_source_failure_does_not_stop_recording(tmp_path: Path) -> None:
    db = tmp_path / "usage.sqlite3"
    calls = {"n": 0}

    def flaky() -> list[dict[str, Any]]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("daemon hiccup")
        return [{"ts": ts("2026-03-01 10:00:00"), "switch": "pptp", "event": "tunnel-up"}]

    rec = UsageRecorder(db, flaky, interval=3600)
    assert rec.flush()
    rec.close()
    assert rows(db, "SELECT tunnels_up FROM usage") == [(1,)]


# --- switch history and the audit read API -----------------------------------------------------

def test_enabled_since_survives_restarts_that_report_the_same_state(tmp_path: Path) -> None:
    db = tmp_path / "usage.sqlite3"
    on_at = ts("2026-01-01 00:00:00")
    for start in (on_at, on_at + 10 * DAY, on_at + 20 * DAY):  # three daemon starts, ipsec on each time
        q = Queue()
        rec = recorder(db, q)
        q.push(*({"ts": start, "switch": s, "event": "switch", "on": s == "ipsec"} for s in ("pptp", "ipsec", "l2tp")))
        rec.close()
    with UsageDB(db) as u:
        assert u.enabled_since("ipsec") == on_at
        assert u.enabled_since("pptp") is None
        assert u.last_used("ipsec") is None  # on for 20 days, never used: what the audit reports
    assert rows(db, "SELECT count(*) FROM switch_changes WHERE switch = 'ipsec'") == [(1,)]


def test_enabled_since_restarts_after_off_then_on(tmp_path: Path) -> None:
    db, q = tmp_path / "usage.sqlite3", Queue()
    rec = recorder(db, q)
    t0 = ts("2026-02-01 00:00:00")
    q.push({"ts": t0, "switch": "pptp", "event": "switch", "on": True},
           {"ts": t0 + DAY, "switch": "pptp", "event": "switch", "on": False},
           {"ts": t0 + 2 * DAY, "switch": "pptp", "event": "switch", "on": True},
           {"ts": t0 + 3 * DAY, "switch": "pptp", "event": "switch", "on": True})
    rec.close()
    with UsageDB(db) as u:
        assert u.enabled_since("pptp") == t0 + 2 * DAY
    assert [e for _, e in rows(db, "SELECT ts, event FROM events ORDER BY ts")] == [
        "switch-on", "switch-off", "switch-on"]


def test_summary_last_used_and_drops_for_the_audit(tmp_path: Path) -> None:
    db, q = tmp_path / "usage.sqlite3", Queue()
    rec = recorder(db, q, Clock(ts("2026-03-20 00:00:00")))
    first, last = ts("2026-03-01 10:00:00"), ts("2026-03-15 18:30:00")
    q.push({"ts": first, "switch": "pptp", "event": "tunnel-up"},
           {"ts": last, "switch": "pptp", "event": "packets", "count": 90},
           {"ts": last + 60, "switch": "pptp", "event": "drop", "count": 2, "reason": "pptp:bad-call-id"},
           {"ts": first, "switch": "l2tp", "event": "drop", "count": 8, "reason": "passthrough-disabled:l2tp"})
    rec.close()
    with UsageDB(db) as u:
        s = u.summary("pptp")
        assert s == {"first_seen": first, "last_seen": last, "packets": 90, "tunnels_up": 1, "tunnels_down": 0,
                     "drops": 2, "days_recorded": 2}
        assert u.last_used("pptp") == last
        assert u.last_used("l2tp") is None  # only drops: attempts, not use
        assert u.drops_by_reason("l2tp") == {"passthrough-disabled:l2tp": 8}
        assert u.drops_by_reason("pptp", since=last + DAY) == {}
        assert u.summary("ipsec") == {"first_seen": None, "last_seen": None, "packets": 0, "tunnels_up": 0,
                                      "tunnels_down": 0, "drops": 0, "days_recorded": 0}
        assert u.switches() == ["l2tp", "pptp"]
        assert [e["event"] for e in u.events("pptp")] == ["tunnel-up"]


def test_events_older_than_retention_are_pruned(tmp_path: Path) -> None:
    db, q = tmp_path / "usage.sqlite3", Queue()
    clock = Clock(ts("2026-06-01 00:00:00"))
    rec = UsageRecorder(db, q, interval=3600, clock=clock, retention_days=90)
    q.push({"ts": clock.now - 100 * DAY, "switch": "pptp", "event": "tunnel-up"},
           {"ts": clock.now - 10 * DAY, "switch": "pptp", "event": "tunnel-up"})
    rec.close()
    assert len(rows(db, "SELECT * FROM events")) == 1
    assert rows(db, "SELECT sum(tunnels_up) FROM usage") == [(2,)]  # the day rows are kept


def test_utc_day_boundaries() -> None:
    assert utc_day(ts("2026-03-01 23:59:59")) == "2026-03-01"
    assert utc_day(ts("2026-03-02 00:00:00")) == "2026-03-02"


# --- broken databases -------------------------------------------------------------------------

def test_corrupt_database_never_raises_and_keeps_events(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db, q = tmp_path / "usage.sqlite3", Queue()
    db.write_bytes(b"this is not sqlite at all" * 100)
    rec = recorder(db, q)
    q.push({"ts": ts("2026-03-01 10:00:00"), "switch": "pptp", "event": "tunnel-up"})
    assert rec.flush() is False
    assert "corrupt" in (rec.last_error or "")
    assert rec.stats()["backlog"] == 1
    db.unlink()  # the operator moves it away: the next interval writes the backlog
    assert rec.flush() is True
    rec.close()
    assert rows(db, "SELECT tunnels_up FROM usage") == [(1,)]


def test_locked_database_is_retried_not_fatal(tmp_path: Path) -> None:
    db, q = tmp_path / "usage.sqlite3", Queue()
    rec = recorder(db, q)
    rec.flush()  # creates the schema
    blocker = sqlite3.connect(db, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        import natpass.router.usage as usage

        rec._conn.execute("PRAGMA busy_timeout = 50")  # keep the test fast
        q.push({"ts": ts("2026-03-01 10:00:00"), "switch": "ipsec", "event": "tunnel-up"})
        assert rec.flush() is False
        assert "locked" in (rec.last_error or "")
        assert usage.MAX_BACKLOG > rec.stats()["backlog"] > 0
    finally:
        blocker.rollback()
        blocker.close()
    assert rec.flush() is True
    rec.close()
    assert rows(db, "SELECT tunnels_up FROM usage") == [(1,)]


def test_reader_gives_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageDBError, match="no usage database"):
        UsageDB(tmp_path / "missing.sqlite3")
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"garbage" * 200)
    with pytest.raises(UsageDBError):
        UsageDB(junk)
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE something (x)")
    with pytest.raises(UsageDBError, match="not a natpass usage database"):
        UsageDB(other)


def test_reader_works_while_the_recorder_writes(tmp_path: Path) -> None:
    db, q = tmp_path / "usage.sqlite3", Queue()
    rec = recorder(db, q)
    q.push({"ts": ts("2026-03-01 10:00:00"), "switch": "pptp", "event": "packets", "count": 1})
    rec.flush()
    with UsageDB(db) as u:
        assert u.summary("pptp")["packets"] == 1
        q.push({"ts": ts("2026-03-01 11:00:00"), "switch": "pptp", "event": "packets", "count": 1})
        rec.flush()
        assert u.summary("pptp")["packets"] == 2
    rec.close()


def test_engine_helper_events_are_accepted_as_the_engine_keeps_them(tmp_path: Path) -> None:
    db, q = tmp_path / "usage.sqlite3", Queue()
    rec = recorder(db, q)
    t0 = ts("2026-03-01 10:00:00")
    # what natpass.passthrough helpers ctx.log, and what RouterDaemon._helper_event makes of it
    q.push({"ts": t0, "event": "tunnel-up", "proto": "pptp", "lan": "192.168.1.10", "remote": "198.51.100.7"},
           {"ts": t0 + 5, "event": "tunnel-down", "switch": "tunnel-down", "proto": "pptp"})
    rec.close()
    assert rows(db, "SELECT switch, tunnels_up, tunnels_down FROM usage") == [("pptp", 1, 1)]
    assert rows(db, "SELECT detail FROM events ORDER BY ts")[0] == ("lan=192.168.1.10 remote=198.51.100.7",)
