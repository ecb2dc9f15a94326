"""Admin API under load: does a client hammering the web API slow the packet path down?

One client -- router -- server topology (prefix ``npdpa``) with ``natpass run`` and
``admin_http`` on the router's LAN address. The small-UDP forwarding rate (bench/live.py's iperf3
measurement, 4 s each) is taken alternately without and with a LAN client that sends API requests
(status, flows, metrics, the passthrough page; an API token, keep-alive, several threads) as fast
as it can for at most 30 s. Prints the medians, their ratio and the requests served per second.
Needs root; about a minute and a half.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import live  # noqa: E402  (bench/live.py: the iperf3 UDP measurement)

from natpass.lab.netns import Netns  # noqa: E402
from natpass.lab.simple import ROUTER_LAN, Topology, config_text, exclusive  # noqa: E402
from natpass.lab.topology import natpass_argv  # noqa: E402
from natpass.router.auth import TokenFile  # noqa: E402

HAMMER_SECONDS = 30  # the hammering client stops by itself after this
ROUNDS = 3
PORT = 8080
def pps(topo: Topology) -> float | None:
    """One 4-s small-UDP measurement; None when iperf3 gave no result (said on stderr)."""
    try:
        res = live.udp_pps(topo)
    except KeyError as exc:
        print(f"iperf3 gave no result ({exc}); round skipped", file=sys.stderr)
        return None
    if res.get("error"):
        print(f"iperf3: {res['error']}; round skipped", file=sys.stderr)
        return None
    return float(res["pps"])


def _add(rounds: list[float], value: float | None) -> None:
    if value is not None:
        rounds.append(value)


HAMMER = r"""
import http.client, json, sys, threading, time
host, port, token, seconds, threads, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
paths = ["/api/status", "/api/flows?limit=50", "/metrics", "/passthrough", "/api/status"]
counts = {"ok": 0, "other": 0, "errors": 0}
lock = threading.Lock()
end = time.monotonic() + seconds
def run():
    conn = http.client.HTTPConnection(host, port, timeout=10)
    i = 0
    while time.monotonic() < end:
        try:
            conn.request("GET", paths[i % len(paths)], headers={"Authorization": "Bearer " + token})
            r = conn.getresponse(); r.read()
            key = "ok" if r.status == 200 else "other"
        except Exception:
            key = "errors"; conn.close(); conn = http.client.HTTPConnection(host, port, timeout=10)
        with lock:
            counts[key] += 1
        i += 1
ts = [threading.Thread(target=run) for _ in range(threads)]
t0 = time.monotonic()
[t.start() for t in ts]; [t.join() for t in ts]
counts["seconds"] = time.monotonic() - t0
open(out, "w").write(json.dumps(counts))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--threads", type=int, default=4, help="hammering client threads (default 4)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/admin_load.py needs root (network namespaces)", file=sys.stderr)
        return 2
    lab = Netns("npdpa")
    with exclusive("npdpa"):
        lab.cleanup()
        try:
            result = _run(lab, max(1, min(args.threads, 16)))
        finally:
            lab.cleanup()
    if args.json:
        print(json.dumps(result))
    else:
        print(f"small UDP through natpass: {result['idle_pps']} pkt/s without API load, "
              f"{result['loaded_pps']} pkt/s while a LAN client hammers the API "
              f"({result['requests_per_s']} requests/s answered, {result['errors']} errors): "
              f"ratio {result['ratio']} (rounds idle {result['idle_rounds']}, loaded {result['loaded_rounds']})")
    return 0


def _run(lab: Netns, threads: int) -> dict[str, object]:
    topo = Topology(lab, "a").build()
    state = lab.path("admin-state", "x").parent
    token = TokenFile(state).create("bench")
    cfg = lab.write("admin-bench.toml", config_text(str(state), str(lab.path("admin.sock")),
                                                    f'admin_http = "{ROUTER_LAN}:{PORT}"\nlog_level = "info"\n'))
    pid = topo.start_natpass(cfg, label="natpass-admin-bench",
                             runner=natpass_argv("run", "--config", str(cfg)))
    idle: list[float] = []
    loaded: list[float] = []
    served: dict[str, float] = {}
    try:
        time.sleep(1.0)
        _add(idle, pps(topo))
        out = lab.path("hammer.json")
        out.unlink(missing_ok=True)
        hammer = lab.spawn(topo.cli, [sys.executable, "-c", HAMMER, ROUTER_LAN, str(PORT), token,
                                      str(HAMMER_SECONDS), str(threads), str(out)], label="api-hammer")
        started = time.monotonic()
        try:
            time.sleep(1.0)
            while len(loaded) < ROUNDS and time.monotonic() - started < HAMMER_SECONDS - live.UDP_SECONDS - 3:
                _add(loaded, pps(topo))
            lab.wait_for(lambda: out.exists(), HAMMER_SECONDS + 15)
        finally:
            lab.kill(hammer)
        served = json.loads(out.read_text()) if out.exists() else {}
        for _ in range(ROUNDS - 1):
            _add(idle, pps(topo))
    finally:
        lab.kill(pid, timeout=5)
    idle_pps = statistics.median(idle) if idle else 0.0
    loaded_pps = statistics.median(loaded) if loaded else 0.0
    seconds = float(served.get("seconds") or HAMMER_SECONDS)
    return {
        "idle_pps": round(idle_pps), "loaded_pps": round(loaded_pps),
        "ratio": round(loaded_pps / idle_pps, 3) if idle_pps else None,
        "idle_rounds": [round(x) for x in idle], "loaded_rounds": [round(x) for x in loaded],
        "requests_per_s": round((served.get("ok", 0) + served.get("other", 0)) / seconds, 1),
        "non_200": int(served.get("other", 0)), "errors": int(served.get("errors", 0)),
    }


if __name__ == "__main__":
    sys.exit(main())
