"""The admin login logic: password hash file, sessions, login back-off and API tokens (fake clock)."""

from __future__ import annotations

import json
import stat

import pytest
from argon2 import PasswordHasher

from natpass.router.auth import (
    BACKOFF_MAX,
    FORGET_AFTER,
    AuthError,
    LoginLimiter,
    PasswordFile,
    Sessions,
    TokenFile,
    csrf_ok,
)

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # the real cost is argon2's default


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_password_is_kept_only_as_an_argon2id_hash_readable_by_root_only(tmp_path):
    pw = PasswordFile(tmp_path, FAST)
    pw.set("correct horse battery")
    text = pw.path.read_text()
    assert text.startswith("$argon2id$") and "correct horse" not in text
    assert stat.S_IMODE(pw.path.stat().st_mode) == 0o600
    assert pw.verify("correct horse battery")
    assert not pw.verify("correct horse batterY")
    assert not pw.verify("")


def test_a_short_password_is_refused_and_the_old_one_kept(tmp_path):
    pw = PasswordFile(tmp_path, FAST)
    pw.set("first password")
    with pytest.raises(AuthError, match="at least"):
        pw.set("short")
    assert pw.verify("first password")


def test_first_start_generates_a_password_once(tmp_path):
    pw = PasswordFile(tmp_path, FAST)
    assert not pw.verify("anything at all")  # no password file: nothing matches
    generated = pw.ensure()
    assert generated and len(generated) >= 12 and pw.verify(generated)
    assert pw.ensure() is None  # never shown or replaced again
    assert pw.verify(generated)


def test_a_damaged_hash_file_matches_nothing(tmp_path):
    pw = PasswordFile(tmp_path, FAST)
    pw.path.write_text("not a hash\n")
    assert not pw.verify("not a hash")


def test_sessions_end_after_the_idle_timeout():
    clock = Clock()
    s = Sessions(clock, lifetime=3600, idle=600)
    a = s.create("admin", "192.168.1.10")
    clock.t += 599
    assert s.get(a.id) is a  # use restarts the idle timer
    clock.t += 599
    assert s.get(a.id) is a
    clock.t += 600
    assert s.get(a.id) is None
    assert s.get(a.id) is None and len(s) == 0


def test_sessions_end_after_their_lifetime_even_when_busy():
    clock = Clock()
    s = Sessions(clock, lifetime=1000, idle=600)
    a = s.create("admin", "192.168.1.10")
    for _ in range(3):
        clock.t += 300
        assert s.get(a.id) is a
    clock.t += 100
    assert s.get(a.id) is None


def test_session_ids_and_csrf_tokens_are_random_and_distinct():
    s = Sessions(Clock())
    made = [s.create("admin", "x") for _ in range(50)]
    values = {m.id for m in made} | {m.csrf for m in made}
    assert len(values) == 100 and all(len(v) >= 40 for v in values)
    assert s.get("") is None and s.get(None) is None and s.get("guess") is None


def test_sessions_are_bounded_and_the_oldest_goes_first():
    s = Sessions(Clock(), limit=3)
    made = [s.create("admin", "x") for _ in range(4)]
    assert s.get(made[0].id) is None
    assert all(s.get(m.id) is m for m in made[1:])


def test_logout_drops_the_session():
    s = Sessions(Clock())
    a = s.create("admin", "x")
    assert s.drop(a.id) and not s.drop(a.id)
    assert s.get(a.id) is None


def test_csrf_token_must_match_exactly():
    a = Sessions(Clock()).create("admin", "x")
    assert csrf_ok(a, a.csrf)
    assert not csrf_ok(a, None) and not csrf_ok(a, "") and not csrf_ok(a, a.csrf[:-1])
    assert not csrf_ok(a, a.id)


def test_login_back_off_doubles_after_the_free_tries_and_is_capped():
    clock = Clock()
    lim = LoginLimiter(clock, free=3, first=2.0, cap=60.0)
    src = "192.168.1.66"
    assert [lim.failure(src) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert lim.wait(src) == 0.0
    assert lim.failure(src) == 2.0 and lim.wait(src) == 2.0
    clock.t += 2
    assert lim.wait(src) == 0.0
    waits = [lim.failure(src) for _ in range(8)]
    assert waits[:5] == [4.0, 8.0, 16.0, 32.0, 60.0] and max(waits) == 60.0
    assert lim.wait("192.168.1.67") == 0.0  # per source address


def test_a_success_or_an_hour_without_failures_clears_a_source():
    clock = Clock()
    lim = LoginLimiter(clock, free=0, first=5.0, cap=BACKOFF_MAX)
    lim.failure("a")
    lim.failure("b")
    lim.success("a")
    assert lim.wait("a") == 0.0 and lim.failures("a") == 0
    clock.t += FORGET_AFTER
    assert lim.wait("b") == 0.0
    assert lim.failure("b") == 5.0  # counts from one again


def test_the_limiter_table_is_bounded():
    lim = LoginLimiter(Clock(), free=0, limit=10)
    for i in range(100):
        lim.failure(f"198.51.100.{i}")
    assert lim.failures("198.51.100.0") == 0 and lim.failures("198.51.100.99") == 1


def test_api_tokens_are_named_stored_hashed_listed_and_revocable(tmp_path):
    wall = Clock(1_764_000_000.0)
    tokens = TokenFile(tmp_path, wall)
    secret = tokens.create("grafana")
    other = tokens.create("backup-script")
    assert secret != other and secret.startswith("np_")
    raw = tokens.path.read_text()
    assert secret not in raw and other not in raw
    assert stat.S_IMODE(tokens.path.stat().st_mode) == 0o600
    assert tokens.verify(secret) == "grafana" and tokens.verify(other) == "backup-script"
    assert tokens.verify(secret[:-1]) is None and tokens.verify("") is None and tokens.verify(None) is None
    assert [(t.name, t.last_used) for t in tokens.list()] == [("grafana", wall.t), ("backup-script", wall.t)]
    assert tokens.revoke("grafana") and not tokens.revoke("grafana")
    assert tokens.verify(secret) is None and tokens.verify(other) == "backup-script"
    assert [t.name for t in tokens.list()] == ["backup-script"]


def test_token_names_are_checked_and_unique(tmp_path):
    tokens = TokenFile(tmp_path)
    tokens.create("ok.name-1")
    for bad in ("", "-x", "a b", "x" * 65, "name/slash"):
        with pytest.raises(AuthError):
            tokens.create(bad)
    with pytest.raises(AuthError, match="exists"):
        tokens.create("ok.name-1")
    assert [t.name for t in tokens.list()] == ["ok.name-1"]


def test_a_damaged_token_file_accepts_no_token_and_says_why(tmp_path):
    tokens = TokenFile(tmp_path)
    secret = tokens.create("a")
    tokens.path.write_text(json.dumps(["not", "a", "token", "list"]))
    assert tokens.verify(secret) is None
    with pytest.raises(AuthError, match="not a natpass token list"):
        tokens.list()
