"""``diagnose(path)``: read a capture once and return the Diagnosis."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from natpass.diagnose.analyzer import Analyzer
from natpass.diagnose.capture import CaptureError, Frame, read_frames
from natpass.diagnose.model import Diagnosis
from natpass.diagnose.rules import Rules

PROGRESS_EVERY = 16384  # frames between progress callbacks


def analyse_frames(frames: Iterable[Frame], name: str = "",
                   progress: Callable[[int], None] | None = None) -> Diagnosis:
    """Diagnose an iterable of frames (numbered from 1, IPv4 packet or None)."""
    an = Analyzer(name)
    feed = an.feed
    skip = an.skip
    count = 0
    for fr in frames:
        ip = fr[2]
        if ip is None:
            skip(fr[3])
        else:
            feed(fr[0], fr[1], ip)
        count += 1
        if progress is not None and not count % PROGRESS_EVERY:
            progress(count)
    info, sessions, stun = an.finish()
    return Rules(info, sessions, stun).run()


def diagnose(path: str | Path, progress: Callable[[int], None] | None = None) -> Diagnosis:
    """Diagnose the pcap/pcapng at ``path`` (raises CaptureError when it is not one).

    Frames come from the project's reader (``natpass.datapath.pcap``; this package's own reader
    when that is absent). A file cut or damaged part-way is still diagnosed up to the damage, and
    the problem is listed in ``capture.problems``.
    """
    try:
        from natpass.datapath.pcap import CaptureError as ReadError
        from natpass.datapath.pcap import iter_capture
    except ImportError:
        return analyse_frames(read_frames(path), str(path), progress)
    an = Analyzer(str(path))
    feed = an.feed
    skip = an.skip
    count = 0
    problems: list[str] = []
    try:
        for cp in iter_capture(path):
            ip = cp.ip
            if ip is None:
                skip(False)
            else:
                feed(cp.index, cp.ts, ip)
            count += 1
            if progress is not None and not count % PROGRESS_EVERY:
                progress(count)
    except ReadError as exc:
        if not count:
            raise CaptureError(str(exc)) from None
        problems.append(str(exc))
    info, sessions, stun = an.finish()
    info.problems.extend(problems)
    return Rules(info, sessions, stun).run()


def diagnose_packets(packets: Iterable[tuple[float, bytes]], name: str = "<packets>") -> Diagnosis:
    """Diagnose IPv4 packets given as (time, bytes); for tests and the lab."""
    return analyse_frames((Frame(i, ts, bytes(ip), False, len(ip))
                           for i, (ts, ip) in enumerate(packets, 1)), name)
