"""Fuzz natpass outside CI: every packet parser, each passthrough helper and the engine as a whole.

    python bench/fuzz.py --minutes N [--target NAME ...] [--seed S] [--out DIR] [--json]
    python bench/fuzz.py --replay FILE --target NAME      # run one saved input again

Coverage-guided with atheris (libFuzzer) when it is installed (``pip install atheris``), else
random mutation of the seed inputs (said in the output). The budget of ``--minutes`` is shared
evenly by the targets; each runs in its own process (one core). The targets and their invariants
are in ``tests/fuzz/fuzz_targets.py`` (the CI runs a short fixed-seed slice of the same targets).
A failing input does not stop the run: each distinct failure (exception type and where it was
raised) is saved once under ``OUT/failures/TARGET/`` (the input ``*.bin`` and its traceback
``*.txt``); the corpus grows under ``OUT/corpus/TARGET/``. Printed per target: inputs tried,
inputs/s and distinct failures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGETS_DIR = REPO / "tests" / "fuzz"
# Scripts (helpers, engine) of up to ~100 operations; parsers see one packet.
MAX_LEN = {"pptp-helper": 768, "ipsec-helper": 768, "l2tp-helper": 768, "engine": 1024}
DPKT_SAMPLE = 8  # the independent decoder judges every 8th emitted packet (CI: every one)


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def signature(exc: BaseException) -> str:
    """Type and place of a failure: the same bug found twice is saved once."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "natpass" in f.filename or "fuzz_targets" in f.filename]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    text = re.sub(r"\d+", "N", str(exc).splitlines()[0] if str(exc) else "")[:120]
    return f"{type(exc).__name__} at {where}: {text}"


class Recorder:
    """Runs one target on inputs and saves each distinct failure with a reproducer."""

    def __init__(self, name: str, fn: Callable[[bytes], None], out: Path) -> None:
        self.name, self.fn = name, fn
        self.dir = out / "failures" / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.seen = {p.stem for p in self.dir.glob("*.bin")}
        self.tried = 0
        self.failed = 0

    def __call__(self, data: bytes) -> None:
        self.tried += 1
        try:
            self.fn(data)
        except Exception as exc:  # every exception is a finding: save it, keep fuzzing
            self.failed += 1
            sig = signature(exc)
            key = hashlib.sha1(sig.encode()).hexdigest()[:12]
            if key not in self.seen:
                self.seen.add(key)
                (self.dir / f"{key}.bin").write_bytes(data)
                (self.dir / f"{key}.txt").write_text(sig + "\n\n" + "".join(traceback.format_exception(exc)))
                print(f"[{self.name}] new failure {key}: {sig}", file=sys.stderr, flush=True)


def import_targets(instrument: bool) -> object:
    sys.path.insert(0, str(TARGETS_DIR))
    sys.path.insert(0, str(REPO))
    if instrument:
        import atheris

        with atheris.instrument_imports(include=["natpass", "fuzz_targets"]):
            import fuzz_targets
    else:
        import fuzz_targets
    return fuzz_targets


def worker(name: str, seconds: int, seed: int, out: Path, use_atheris: bool) -> None:
    """One target in this process; prints a JSON line with the figures at the end."""
    ft = import_targets(use_atheris)
    ft.DPKT_SAMPLE = DPKT_SAMPLE  # type: ignore[attr-defined]
    fn = ft.TARGETS[name]  # type: ignore[attr-defined]
    rec = Recorder(name, fn, out)
    corpus = out / "corpus" / name
    corpus.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(ft.seeds(name)):  # type: ignore[attr-defined]
        (corpus / f"seed-{i}").write_bytes(s)
    start = time.monotonic()
    if use_atheris:
        import atheris

        def report() -> None:
            print(json.dumps({"target": name, "inputs": rec.tried, "failures": len(rec.seen),
                              "failing_inputs": rec.failed, "seconds": time.monotonic() - start}),
                  flush=True)

        def one(data: bytes) -> None:
            rec(data)
            if time.monotonic() - start >= seconds:
                report()
                os._exit(0)

        atheris.Setup([sys.argv[0], f"-seed={seed}", f"-max_len={MAX_LEN.get(name, 512)}",
                       "-timeout=20", "-rss_limit_mb=3072", "-print_final_stats=0",
                       f"-max_total_time={seconds + 30}", str(corpus)], one)
        atheris.Fuzz()
        report()
        return
    rng = random.Random(seed)
    pool = [p.read_bytes() for p in corpus.iterdir()]
    while time.monotonic() - start < seconds:
        rec(ft.mutate(rng, rng.choice(pool)))
    print(json.dumps({"target": name, "inputs": rec.tried, "failures": len(rec.seen),
                      "failing_inputs": rec.failed, "seconds": time.monotonic() - start}), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=1.0, help="total budget, shared by the targets")
    ap.add_argument("--target", action="append", help="a target name (repeatable); default: all")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("fuzz-out"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-atheris", action="store_true", help="random mutation even if atheris is there")
    ap.add_argument("--replay", type=Path, help="run the target on this saved input and show the result")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    use_atheris = have_atheris() and not args.no_atheris
    if args.worker:
        worker(args.worker, args.seconds, args.seed, args.out, use_atheris)
        return 0
    ft = import_targets(False)
    names = args.target or list(ft.TARGETS)  # type: ignore[attr-defined]
    if args.replay:
        (name,) = names
        try:
            ft.TARGETS[name](args.replay.read_bytes())  # type: ignore[attr-defined]
        except Exception:
            traceback.print_exc()
            return 1
        print("no failure")
        return 0
    per = max(1, int(args.minutes * 60 / len(names)))
    engine = "atheris (coverage-guided libFuzzer)" if use_atheris else "random mutation (atheris not installed)"
    print(f"fuzzing {len(names)} target(s), {per} s each, seed {args.seed}, with {engine}", file=sys.stderr)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    results = []
    for name in names:
        cmd = [sys.executable, __file__, "--worker", name, "--seconds", str(per), "--seed", str(args.seed),
               "--out", str(args.out)] + (["--no-atheris"] if not use_atheris else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=per + 120)
        line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("{")), None)
        if line is None:
            res = {"target": name, "inputs": 0, "failures": 1, "failing_inputs": 0, "seconds": 0.0,
                   "error": (proc.stderr or proc.stdout)[-2000:]}
        else:
            res = json.loads(line)
        res["rate"] = res["inputs"] / res["seconds"] if res["seconds"] else 0.0
        results.append(res)
        if not args.json:
            print(f"{name:14s} {res['inputs']:>11,} inputs {res['rate']:>9,.0f}/s "
                  f"{res['failures']:>3} distinct failure(s)" + (" (worker error)" if "error" in res else ""),
                  flush=True)
    total = sum(r["inputs"] for r in results)
    fails = sum(r["failures"] for r in results)
    if args.json:
        print(json.dumps({"engine": engine, "seed": args.seed, "seconds_per_target": per,
                          "targets": results, "inputs": total, "failures": fails}, indent=1))
    else:
        print(f"{'total':14s} {total:>11,} inputs, {fails} distinct failure(s); reproducers in "
              f"{args.out / 'failures'}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
