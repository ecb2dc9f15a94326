"""The config file as the record of the user's settings: edits, history, backups.

A switch flipped at run time is written back into ``natpass.toml`` with tomlkit, which keeps the
user's comments, order and layout (a regenerated file would lose them). Every version the router
runs is kept in ``<state_dir>/config-history/`` (the newest ``HISTORY_KEEP``), each with when, who
or what made it and a one-line summary of what changed. A backup is the config file itself behind
a few comment lines (format version, origin, SHA-256 of the body), so it stays a valid config that
a person can read and diff, while a torn or edited copy is recognised and refused.

Every file is written atomically (temporary file, fsync, rename, fsync of the folder) and readable
by root only: a config names LAN hosts and port forwards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions

from natpass.nat.config import SWITCHES, NatConfig
from natpass.router.config import ConfigError, RouterConfig, parse_config
from natpass.router.forwards import ForwardError, ForwardSpec

HISTORY_DIR = "config-history"
HISTORY_KEEP = 50
BACKUP_MAGIC = "natpass-backup"
BACKUP_VERSION = 1
# Everything the header may hold; anything else before the body makes the file foreign.
_HEADER_KEYS = ("created", "who", "source", "summary", "sha256")
_HEADER_LINE = re.compile(r"^# ([a-z0-9-]+): ?(.*)$")
_VERSION_NAME = re.compile(r"^(\d{6})\.toml$")


class BackupError(ValueError):
    """A backup or history file is torn, tampered with, foreign or of an unknown version."""

    def __init__(self, path: str, line: int, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


# ----- writing files -------------------------------------------------------------------------
def write_atomic(path: str | Path, text: str, mode: int | None = None) -> None:
    """Replace ``path`` with ``text`` so a crash leaves the old or the new file, never a torn one.

    ``mode`` None keeps the mode of the file replaced (0600 for a new file).
    """
    p = Path(path)
    if mode is None:
        try:
            mode = p.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o600
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(p.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# ----- what a change exposes ------------------------------------------------------------------
# Turning these on (pptp) or off (strict) opens something: the CLI, the API and the page say what
# before (the page asks for a confirmation), as `natpass audit` would report it afterwards.
EXPOSURES: dict[tuple[str, bool], str] = {
    ("pptp", True): "Turning PPTP passthrough on maps GRE (IP protocol 47) from PPTP servers to LAN "
                    "hosts and lets TCP 1723 control connections through its helper. Whatever a PPTP "
                    "VPN carries can be read by anyone who captures one login (MS-CHAPv2 is "
                    "crackable).",
    ("strict", False): "Turning strict off lets LAN hosts open PPTP, IKE and L2TP control connections "
                       "for protocols whose switch is off, as ordinary connections.",
}


def exposure_of(name: str, on: bool) -> str | None:
    """What turning ``name`` to ``on`` exposes (None: the change opens nothing new)."""
    return EXPOSURES.get((name, on))


# ----- editing the config text ---------------------------------------------------------------
def set_switches_text(text: str, changes: Mapping[str, bool], path: str = "<string>") -> str:
    """``text`` with ``[passthrough]`` keys set to ``changes``; comments and layout kept.

    The result is validated whole (raises ``ConfigError`` naming the line, ``text`` untouched).
    """
    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(path, exc.line, f"TOML syntax: {exc}") from None
    table = doc.get("passthrough")
    if table is None:
        table = tomlkit.table()
        doc["passthrough"] = table
    elif not isinstance(table, dict):
        raise ConfigError(path, 0, "passthrough must be a table")
    for name, on in changes.items():
        table[name] = bool(on)
    out = tomlkit.dumps(doc)
    parse_config(out, path)
    return out


# ----- what changed --------------------------------------------------------------------------
def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            if f.name == "raw":
                continue
            _flatten(getattr(value, f.name), f"{prefix}{f.name}.", out)
        return
    out[prefix[:-1]] = _show(value)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, bytes) and len(value) == 4:
        return ".".join(str(b) for b in value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if hasattr(value, "value") and isinstance(value.value, str):  # an Enum member
        return str(value.value)
    return str(value)


def _name(key: str) -> str:
    """``nat.passthrough.pptp`` -> ``pptp``; ``nat.timeouts.udp`` -> ``timeouts.udp``."""
    key = key.removeprefix("nat.")
    return key.rsplit(".", 1)[1] if key.startswith("passthrough.") else key


def config_facts(cfg: RouterConfig | NatConfig) -> dict[str, str]:
    """The settings of ``cfg`` as text by name (``pptp``, ``timeouts.udp``, ``forward tcp/443->
    192.168.1.5:443``): what every change summary compares. JSON-able, so the saved connection
    state keeps the facts of the config it was saved under."""
    flat: dict[str, str] = {}
    _flatten(cfg, "", flat)
    out = {_name(k): v for k, v in flat.items() if _name(k) not in ("path", "seed", "forwards")}
    for fwd in cfg.nat.forwards if isinstance(cfg, RouterConfig) else cfg.forwards:
        out[f"forward {_forward(fwd)}"] = "on"
    return out


def describe_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """One phrase per difference between two :func:`config_facts`."""
    parts = []
    for key, value in new.items():
        was = old.get(key)
        if was == value:
            continue
        if key.startswith("forward "):
            parts.append(f"forward +{key[8:]}")
        elif key in (*SWITCHES, "strict"):
            parts.append(f"{key} {value}")
        else:
            parts.append(f"{key} {'-' if was is None else was} -> {value}")
    for key, was in old.items():
        if key not in new:
            parts.append(f"forward -{key[8:]}" if key.startswith("forward ") else f"{key} {was} -> -")
    return parts


def summarize(old: RouterConfig | None, new: RouterConfig) -> str:
    """One line naming what differs between two configs (``no change`` when nothing does)."""
    if old is None:
        return "first version"
    parts = describe_changes(config_facts(old), config_facts(new))
    return "; ".join(parts) if parts else "no change"


def _forward(f: Any) -> str:
    proto = {6: "tcp", 17: "udp"}.get(f.proto, str(f.proto))
    return f"{proto}/{f.wan_port}->{_show(f.lan_addr)}:{f.lan_port}"


# ----- the header shared by backups and history versions -------------------------------------
def _digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def utc_stamp(when: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if when is None else when))


def with_header(body: str, *, who: str, summary: str, source: str, created: str | None = None) -> str:
    """``body`` behind the comment header that makes it a checked backup."""
    fields = {"created": created or utc_stamp(), "who": who, "source": source, "summary": summary, "sha256": _digest(body)}
    lines = [f"# {BACKUP_MAGIC}: {BACKUP_VERSION}"]
    lines += [f"# {k}: {' '.join(str(fields[k]).split())}" for k in _HEADER_KEYS]
    return "\n".join(lines) + "\n" + body


@dataclass(frozen=True, slots=True)
class Checked:
    """A backup read back and verified: its header fields, its config text and the parsed config."""

    fields: dict[str, str]
    body: str
    text: str  # header + body: what line numbers in errors refer to
    config: RouterConfig


def read_checked(data: bytes, path: str) -> Checked:
    """Verify a backup (or a plain config file) whole; raise ``BackupError`` or ``ConfigError``.

    A file with the backup header must carry a known version and the SHA-256 of its body; a file
    without one is taken as a plain config. Either is then validated as a config, so an error
    names the line in ``path`` itself.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BackupError(path, line, f"not UTF-8 text (byte {exc.start})") from None
    lines = text.split("\n")
    fields: dict[str, str] = {}
    body = text
    if lines and lines[0].startswith(f"# {BACKUP_MAGIC}:"):
        version = lines[0].split(":", 1)[1].strip()
        if version != str(BACKUP_VERSION):
            raise BackupError(path, 1, f"backup format version {version!r} is not one this natpass "
                                       f"reads ({BACKUP_VERSION})")
        n = 1
        while n < len(lines) and len(fields) < len(_HEADER_KEYS):
            m = _HEADER_LINE.match(lines[n])
            if m is None or m.group(1) not in _HEADER_KEYS or m.group(1) in fields:
                break
            fields[m.group(1)] = m.group(2)
            n += 1
        if "sha256" not in fields:
            raise BackupError(path, n + 1, "backup header is incomplete (no sha256 line): torn or edited")
        body = "\n".join(lines[n:])
        if _digest(body) != fields["sha256"]:
            raise BackupError(path, n + 1, "the config does not match the backup's SHA-256: the file "
                                           "was edited or damaged after it was written")
    config = parse_config(text, path)  # comments are ignored, so lines count in the whole file
    return Checked(fields=fields, body=body, text=text, config=config)


@dataclass(frozen=True, slots=True)
class SwitchResult:
    """What flipping a switch did: tunnels torn down, and whether the config file now says so."""

    switch: str
    on: bool
    torn_down: int
    saved: bool
    save_error: str | None
    exposure: str | None  # what turning it on opens, as the audit would say it

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """A reload, restore or rollback that was applied."""

    summary: str
    torn_down: dict[str, int]
    version: int | None  # the history version now running (None: history not writable)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----- history -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Version:
    """One kept config version; ``number`` grows with each change and is never reused."""

    number: int
    created: str
    who: str
    summary: str
    path: Path

    def as_dict(self) -> dict[str, Any]:
        return {"number": self.number, "created": self.created, "who": self.who, "summary": self.summary}


class ConfigHistory:
    """``<state_dir>/config-history/NNNNNN.toml``: the newest ``keep`` versions, each a backup."""

    def __init__(self, state_dir: str | Path, keep: int = HISTORY_KEEP) -> None:
        self.dir = Path(state_dir) / HISTORY_DIR
        self.keep = keep

    def _files(self) -> Iterator[tuple[int, Path]]:
        if not self.dir.is_dir():
            return
        for p in self.dir.iterdir():
            m = _VERSION_NAME.match(p.name)
            if m:
                yield int(m.group(1)), p

    def versions(self) -> list[Version]:
        """Readable versions, newest first; a damaged file is left out (and stays on disk)."""
        out = []
        for number, p in sorted(self._files(), reverse=True):
            try:
                checked = read_checked(p.read_bytes(), str(p))
            except (OSError, BackupError, ConfigError):
                continue
            f = checked.fields
            out.append(Version(number, f.get("created", ""), f.get("who", ""), f.get("summary", ""), p))
        return out

    def get(self, number: int) -> Checked:
        """Version ``number`` verified (raises ``KeyError`` when there is none)."""
        p = self.dir / f"{number:06d}.toml"
        if not p.is_file():
            raise KeyError(number)
        return read_checked(p.read_bytes(), str(p))

    def newest(self) -> tuple[int, Checked] | None:
        """The newest readable version (a damaged newer file is passed over), read once."""
        for number, p in sorted(self._files(), reverse=True):
            try:
                return number, read_checked(p.read_bytes(), str(p))
            except (OSError, BackupError, ConfigError):
                continue
        return None

    def newest_body(self) -> str | None:
        newest = self.newest()
        return None if newest is None else newest[1].body

    def record(self, body: str, *, who: str, summary: str, source: str) -> Version | None:
        """Keep ``body`` as the newest version unless it equals the newest already kept."""
        if self.newest_body() == body:
            return None
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        numbers = [n for n, _ in self._files()]
        number = max(numbers, default=0) + 1
        p = self.dir / f"{number:06d}.toml"
        created = utc_stamp()
        write_atomic(p, with_header(body, who=who, summary=summary, source=source, created=created), 0o600)
        for _number, path in sorted(self._files())[: max(0, len(numbers) + 1 - self.keep)]:
            path.unlink(missing_ok=True)
        return Version(number, created, who, summary, p)


# ----- port forwards -------------------------------------------------------------------------
def _forwards_table(doc: tomlkit.TOMLDocument, path: str) -> Any:
    aot = doc.get("forward")
    if aot is None:
        aot = tomlkit.aot()
        doc["forward"] = aot
    elif not isinstance(aot, list):
        raise ConfigError(path, 0, "forward must be written as [[forward]] tables")
    return aot


def _parse_doc(text: str, path: str) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(path, exc.line, f"TOML syntax: {exc}") from None


def add_forward_text(text: str, spec: ForwardSpec, path: str = "<string>") -> str:
    """``text`` with a ``[[forward]]`` table for ``spec`` appended; comments and layout kept.
    The result is validated whole (raises ``ConfigError``)."""
    doc = _parse_doc(text, path)
    aot = _forwards_table(doc, path)
    item = tomlkit.table()
    if spec.comment:
        item["comment"] = spec.comment
    item["proto"] = spec.proto
    item["port"] = spec.port
    item["to"] = f"{spec.to_addr}:{spec.to_port}"
    if spec.wan_address:
        item["wan_address"] = spec.wan_address
    aot.append(item)
    out = tomlkit.dumps(doc)
    parse_config(out, path)
    return out


def remove_forward_text(text: str, proto: str, port: int, wan_address: str | None,
                        path: str = "<string>") -> str:
    """``text`` without the ``[[forward]]`` of ``proto`` WAN ``port`` (on ``wan_address``, or on
    every WAN address when None); raises ``ForwardError("missing")`` when the file has none."""
    doc = _parse_doc(text, path)
    aot = _forwards_table(doc, path)
    keep = [t for t in aot if not (t.get("proto") == proto and t.get("port") == port
                                   and (t.get("wan_address") or None) == wan_address)]
    if len(keep) == len(aot):
        raise ForwardError("missing", f"the config file has no forward of {proto} port {port}"
                           + (f" on {wan_address}" if wan_address else ""))
    if keep:
        new = tomlkit.aot()
        for t in keep:
            new.append(t)
        doc["forward"] = new
    else:
        del doc["forward"]
    out = tomlkit.dumps(doc)
    parse_config(out, path)
    return out
