"""The result of a diagnosis as plain data: protocols seen, findings, capture facts; JSON-ready."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]
Status = Literal["established", "failed", "incomplete"]
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
MAX_EVIDENCE = 8  # packets quoted per finding or phase list: enough to look them up, bounded


@dataclass(slots=True)
class Phase:
    """A step of a handshake reached at ``frame`` (1-based) and ``time`` (s from capture start)."""

    name: str
    frame: int
    time: float
    direction: str  # "out" (client -> server), "in" (server -> client)


@dataclass(slots=True)
class ProtocolReport:
    name: str
    status: Status
    client: str
    server: str
    transport: str
    phases: list[Phase] = field(default_factory=list)
    packets_out: int = 0
    packets_in: int = 0
    stopped_at: str | None = None  # the step that never came, for a failed/incomplete run
    notes: list[str] = field(default_factory=list)
    confidence: str = "structure"  # "structure" | "port+pattern" | "port": what the recognition rests on
    hints: list[str] = field(default_factory=list)  # what led to it, when not the structure alone


@dataclass(slots=True)
class Evidence:
    frame: int
    time: float
    what: str


@dataclass(slots=True)
class Finding:
    code: str
    severity: Severity
    windows_error: int | None
    evidence: list[Evidence]
    explanation: str
    advice: str
    protocol: str | None = None


@dataclass(slots=True)
class CaptureInfo:
    file: str
    packets: int = 0
    ipv4: int = 0
    ipv6: int = 0
    other: int = 0
    duplicates: int = 0
    malformed: int = 0
    first_time: float | None = None
    duration: float = 0.0
    flows: int = 0
    problems: list[str] = field(default_factory=list)  # e.g. the file is cut after frame N


@dataclass(slots=True)
class VantageReport:
    """Where the capture was taken: client, router-lan, router-wan, server or unknown."""

    point: str
    source: str  # "stated" by the user or "inferred" from addresses, TTLs and flow directions
    address: str | None  # the capture point's own address, when one stands out
    basis: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Diagnosis:
    capture: CaptureInfo
    protocols: list[ProtocolReport]
    findings: list[Finding]
    vantage: VantageReport = field(default_factory=lambda: VantageReport("unknown", "inferred", None))

    @property
    def packets(self) -> int:
        return self.capture.packets

    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "capture": asdict(self.capture),
            "packets": self.capture.packets,
            "vantage": self.vantage.point,
            "vantage_detail": asdict(self.vantage),
            "protocols": [asdict(p) for p in self.protocols],
            "findings": [asdict(f) for f in self.findings],
        }
