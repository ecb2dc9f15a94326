"""``diagnose(path)``: read a capture once (with ``natpass.datapath.pcap``) and return the Diagnosis."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from natpass.datapath.pcap import CaptureError, iter_capture
from natpass.diagnose.analyzer import Analyzer
from natpass.diagnose.model import Diagnosis
from natpass.diagnose.network import Vantage
from natpass.diagnose.rules import Rules

PROGRESS_EVERY = 16384  # frames between progress callbacks

__all__ = ["CaptureError", "diagnose", "diagnose_packets"]


def diagnose(path: str | Path, progress: Callable[[int], None] | None = None,
             vantage: Vantage | None = None) -> Diagnosis:
    """Diagnose the pcap/pcapng at ``path`` (raises CaptureError when it is not one).

    A file cut or damaged part-way is still diagnosed up to the damage, and the problem is listed
    in ``capture.problems``. ``vantage`` states where it was taken (else it is inferred). Frame numbers are 1-based like Wireshark's, so that evidence can be
    looked up with ``tshark -Y frame.number==N``.
    """
    an = Analyzer(str(path))
    feed = an.feed
    count = 0
    problems: list[str] = []
    try:
        for cp in iter_capture(path):
            ip = cp.ip
            if ip is not None:
                feed(cp.index, cp.ts, ip)
            elif cp.ip6 is not None:
                an.feed6(cp.index, cp.ts, cp.ip6)
            else:
                an.skip()
            count += 1
            if progress is not None and not count % PROGRESS_EVERY:
                progress(count)
    except CaptureError as exc:
        if not count:
            raise
        problems.append(str(exc))
    obs = an.finish()
    obs.info.problems.extend(problems)
    return Rules(obs, vantage).run()


def diagnose_packets(packets: Iterable[tuple[float, bytes]], name: str = "<packets>",
                     vantage: Vantage | None = None) -> Diagnosis:
    """Diagnose IP packets (IPv4 or IPv6) given as (time, bytes), numbered from 1; for tests and
    the lab."""
    an = Analyzer(name)
    for i, (ts, ip) in enumerate(packets, 1):
        if ip and ip[0] >> 4 == 6:
            an.feed6(i, ts, bytes(ip))
        else:
            an.feed(i, ts, bytes(ip))
    return Rules(an.finish(), vantage).run()
