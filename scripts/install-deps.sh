#!/usr/bin/env bash
# Installs what natpass's lab, demo and tests need on a Debian machine (run as root).
# Debian packages that ship services are installed with a policy-rc.d that forbids starting them,
# because natpass starts every daemon itself inside a network namespace.
set -euo pipefail
PKGS=(iproute2 nftables conntrack iptables tshark tcpdump openvpn wireguard-tools wireguard-go
      strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins
      pptpd pptp-linux xl2tpd coturn iperf3 hping3 socat procps iputils-ping traceroute
      chromium chromium-driver fonts-dejavu-core)  # the admin page's browser tests (Selenium)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "natpass: missing Debian packages: ${missing[*]} (run as root to install)" >&2
    exit 1
  fi
  echo "natpass: installing ${missing[*]}" >&2
  policy=/usr/sbin/policy-rc.d
  had_policy=0
  [ -e "$policy" ] && had_policy=1 && cp -p "$policy" "$policy.natpass-save"
  printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"
  trap 'if [ $had_policy = 1 ]; then mv -f "$policy.natpass-save" "$policy"; else rm -f "$policy"; fi' EXIT
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections || true
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
