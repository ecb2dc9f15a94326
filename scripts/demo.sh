#!/usr/bin/env bash
# The README's main-job command: install what the lab needs, install natpass, then run the demo:
# every VPN protocol's real client through natpass (switch off and on) and through the kernel NAT.
# Needs root (network namespaces). Extra arguments go to `natpass lab demo` (e.g. --json).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
python3 -m pip install -q --disable-pip-version-check -e . "scapy>=2.5"  # scapy: the crafted raw ESP peer
exec python3 -m natpass.cli lab demo "$@"
