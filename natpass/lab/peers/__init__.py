"""Real VPN peers driven inside the lab: each starts a server on ``srv`` and a client on a LAN node."""
