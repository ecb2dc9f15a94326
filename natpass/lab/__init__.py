"""The namespace lab: topologies of LAN clients, NAT routers (natpass or the kernel's) and a server,
with real VPN programs as peers (``natpass lab up|down|exec|status|demo``).

- ``netns``: prefixed namespaces, veth links, processes recorded by PID, crash-proof cleanup;
- ``topology``: basic / double-nat / cgnat, kernel or natpass routers, router config generation;
- ``peers``: OpenVPN, WireGuard, strongSwan/pvpn, PPTP, L2TP, raw ESP, RFC 5780 NAT discovery;
- ``capture``/``record``/``probe``: tcpdump in a namespace, recorded test captures, ICMP error probes;
- ``demo``: every protocol through natpass (switch off/on) and the kernel NAT, one table.
"""
