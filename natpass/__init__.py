"""natpass: a NAT router built for VPN passthrough (PPTP, IPsec, L2TP/IPsec)."""

__version__ = "0.1.0"
