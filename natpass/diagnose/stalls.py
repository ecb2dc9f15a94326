"""Where each VPN protocol can stop, and what that means from each capture point.

One registry, :data:`STALLS`, keyed by (protocol, the phase that never came). Each entry names the
finding code, the Windows error where Windows has one, what to check, and the likely cause as seen
from each vantage point (client, router LAN side, router WAN side, server). The rules use it so
that every protocol that stops short of a healthy end gets a finding; docs/DIAGNOSE.md carries the
table :func:`phase_table` renders from it (a test compares the two).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Missing = Literal["answer", "request", "data-back", "data-out", "control", "delivery"]

# What a missing step means, per capture point, by what kind of step is missing.
CAUSES: Final[dict[Missing, dict[str, str]]] = {
    "answer": {  # the server's answer to the client's request
        "client": "the request left the client and nothing came back: dropped on the way (router, "
                  "ISP, server firewall) or the server does not answer",
        "router-lan": "the request reached the router's LAN side and no answer came back through "
                      "the router: compare with its WAN side",
        "router-wan": "the request left this router and no answer arrived: dropped beyond this router "
                      "(ISP, server firewall) or the server does not answer",
        "server": "the request arrived and the server did not answer: the server's configuration or "
                  "firewall",
    },
    "request": {  # the client's next request, after the server answered the previous one
        "client": "the client never sent it: its configuration (or it gave up after the answer)",
        "router-lan": "the client never sent it to the router: the client's configuration",
        "router-wan": "it never left this router: the router dropped it (or the client never sent it)",
        "server": "it never arrived: dropped between client and server, or never sent",
    },
    "data-back": {  # tunnel data from the server does not reach the client
        "client": "the client's tunnel packets went out, none came back: the return path drops them "
                  "(a NAT that cannot map them back, a firewall)",
        "router-lan": "the client's tunnel packets reached the router, none came back to the LAN: the "
                      "router did not forward them out or did not map the answers back",
        "router-wan": "the tunnel packets left this router and none came back to it: dropped beyond it",
        "server": "the server's tunnel packets went out and none of the client's arrived",
    },
    "data-out": {  # the client sends no tunnel data although the server does
        "client": "the server's tunnel packets arrived and the client sent none: the client's side "
                  "of the tunnel did not come up",
        "router-lan": "the server's tunnel packets were delivered to the LAN and the client sent none",
        "router-wan": "the server's tunnel packets arrived at this router and nothing of the client "
                      "left it: the router did not deliver them to the client (no mapping, switch off)",
        "server": "the server's tunnel packets went out and nothing of the client came back: lost "
                  "on the way to the client (a NAT without a helper for this protocol)",
    },
    "delivery": {  # the server's answers were seen here, and the client kept repeating its request
        "client": "answers were seen elsewhere but none reached the client: dropped on the way back",
        "router-lan": "the answers were put on the LAN and the client kept repeating: the client "
                      "ignored or never received them (its own firewall)",
        "router-wan": "the server's answers reached this router's WAN side and the client kept repeating "
                      "its request: this router dropped the answers on the way in (an inbound firewall "
                      "rule or a missing mapping)",
        "server": "the server answered and the client kept repeating its request: the answers are lost "
                  "on the way back to the client",
    },
    "control": {  # the control connection itself
        "client": "the client's connection attempts were not answered (or reset)",
        "router-lan": "the connection attempts reached the router and were not answered through it",
        "router-wan": "the connection attempts left this router and were not answered",
        "server": "the connection attempts arrived and the server did not accept them",
    },
}
UNKNOWN_VANTAGE: Final = ("the capture point is unknown (give --vantage): from the client this means "
                          "{client}; from a router's WAN side, {router-wan}")

CHECK_PPTP_CONTROL: Final = ("TCP 1723 to the server (router firewall, ISP); on the router TCP 1723 is "
                             "ordinary NAT and needs no switch")
CHECK_GRE: Final = ("the router's PPTP passthrough (natpass: [passthrough] pptp = true) and GRE (IP "
                    "protocol 47) at the server's firewall")
CHECK_IKE: Final = ("UDP 500 and 4500 both ways (router, ISP, server firewall); natpass passes IKE as "
                    "plain UDP, but strict = true blocks UDP 500 while the ipsec switch is off")
CHECK_NATT: Final = ("UDP 4500 both ways at the router and the server firewall; NAT-T enabled on both "
                     "ends (Windows L2TP/IPsec behind NAT: registry AssumeUDPEncapsulationContextOnSendRule = 2); "
                     "IKE fragmentation (RFC 7383) when the requests are fragmented")
CHECK_IKE_AUTH: Final = ("credentials and certificates (the server rejects silently or with "
                         "AUTHENTICATION_FAILED), and IKE fragmentation when IKE_AUTH is large")
CHECK_ESP: Final = ("the router's IPsec passthrough (natpass: [passthrough] ipsec = true) and IP protocol "
                    "50 at the server; better, NAT-T (ESP in UDP 4500)")
CHECK_AH: Final = "no NAT between the peers (AH cannot cross NAT); use ESP with NAT-T instead"
CHECK_L2TP: Final = ("UDP 1701 to the server; L2TP belongs inside IPsec (check IKE/ESP first); natpass: "
                     "[passthrough] l2tp = true only for L2TP without NAT-T")
CHECK_WG: Final = ("the server's UDP port (port forward, firewall) and the peer's public key and "
                   "endpoint: WireGuard stays silent on a wrong key")
CHECK_OVPN: Final = ("the server address, port and protocol (UDP/TCP) and its firewall; a tls-auth / "
                     "tls-crypt key that does not match is dropped silently")
CHECK_OVPN_TLS: Final = "certificates, CA and cipher settings (the TLS handshake failed)"
CHECK_TLS_VPN: Final = ("TCP 443 (and for AnyConnect/OpenConnect/Fortinet UDP 443 DTLS) to the gateway, "
                        "a TLS-inspecting proxy or firewall, the gateway's certificate")
CHECK_CAPTURE: Final = "capture on the client, or on a mirror port that sees both directions"


@dataclass(frozen=True, slots=True)
class Stall:
    """A step a protocol can stop before, and what to say about it."""

    protocol: str
    phase: str  # the step that never came (a report's ``stopped_at``)
    code: str  # the finding for a failed run (an incomplete one gets ``stalled``)
    windows_error: int | None
    missing: Missing
    check: str
    special: tuple[tuple[str, str], ...] = ()  # (vantage, cause) overriding the generic one

    def cause(self, vantage: str) -> str:
        """The likely cause seen from ``vantage`` (client, router-lan, router-wan, server, unknown)."""
        for v, text in self.special:
            if v == vantage:
                return text
        generic = CAUSES[self.missing]
        if vantage in generic:
            return generic[vantage]
        return UNKNOWN_VANTAGE.format(client=self.cause("client"), **{"router-wan": self.cause("router-wan")})


W_PPTP_CONTROL: Final = 800  # "Unable to establish the VPN connection... the VPN server may be unreachable"
W_GRE: Final = 619  # "A connection to the remote computer could not be established"
W_IKE: Final = 809  # "The network connection between your computer and the VPN server could not be established"
W_IKE_AUTH: Final = 13801  # "IKE authentication credentials are unacceptable"
W_L2TP: Final = 809
W_SSTP: Final = 800

_NATT_NONE_AT_WAN = ("router-wan", "NAT was detected, so the client must move to UDP 4500, and no UDP "
                     "4500 left this router at all: UDP 4500 was blocked at this router (natt-blocked here)")
_NATT_NONE_AT_CLIENT = ("client", "NAT was detected and the client never moved to UDP 4500: the client's "
                        "NAT-T setting (or its 4500 packets were dropped before the capture point)")
_NATT_UNANSWERED_CLIENT = ("client", "the client's UDP 4500 packets went unanswered: UDP 4500 dropped on the "
                           "way (router, ISP, server) or fragmented IKE lost")

STALLS: Final[tuple[Stall, ...]] = (
    Stall("pptp", "tcp-syn", "pptp-stalled", None, "request", CHECK_PPTP_CONTROL),
    Stall("pptp", "tcp-connect", "pptp-control-blocked", W_PPTP_CONTROL, "control", CHECK_PPTP_CONTROL),
    Stall("pptp", "sccrq", "pptp-stalled", W_PPTP_CONTROL, "request", CHECK_PPTP_CONTROL),
    Stall("pptp", "sccrp", "pptp-stalled", W_PPTP_CONTROL, "answer", CHECK_PPTP_CONTROL),
    Stall("pptp", "ocrq", "pptp-stalled", None, "request", "the client's PPTP settings"),
    Stall("pptp", "ocrp", "pptp-call-refused", None, "answer",
          "the account and the server's call limits (the server refused or ignored the call)"),
    Stall("pptp", "gre-out", "gre-blocked", W_GRE, "data-out", CHECK_GRE),
    Stall("pptp", "gre-in", "gre-blocked", W_GRE, "data-back", CHECK_GRE),
    Stall("l2tp", "sccrq", "l2tp-stalled", None, "request", CHECK_L2TP),
    Stall("l2tp", "sccrp", "l2tp-no-response", W_L2TP, "answer", CHECK_L2TP),
    Stall("l2tp", "scccn", "l2tp-stalled", W_L2TP, "request", CHECK_L2TP),
    Stall("l2tp", "icrq", "l2tp-stalled", W_L2TP, "request", CHECK_L2TP),
    Stall("l2tp", "icrp", "l2tp-stalled", W_L2TP, "answer", CHECK_L2TP),
    Stall("l2tp", "iccn", "l2tp-stalled", W_L2TP, "request", CHECK_L2TP),
    Stall("l2tp", "data-out", "l2tp-stalled", W_L2TP, "data-out", CHECK_L2TP),
    Stall("l2tp", "data-in", "l2tp-stalled", W_L2TP, "data-back", CHECK_L2TP),
    Stall("wireguard", "initiation", "wireguard-stalled", None, "request", CHECK_WG),
    Stall("wireguard", "response", "wireguard-no-response", None, "answer", CHECK_WG),
    Stall("wireguard", "data-out", "wireguard-stalled", None, "data-out", CHECK_WG),
    Stall("wireguard", "data-in", "wireguard-stalled", None, "data-back", CHECK_WG),
    Stall("openvpn", "hard-reset-client", "openvpn-stalled", None, "request", CHECK_OVPN),
    Stall("openvpn", "hard-reset-server", "openvpn-no-response", None, "answer", CHECK_OVPN),
    Stall("openvpn", "tls-out", "openvpn-stalled", None, "request", CHECK_OVPN_TLS),
    Stall("openvpn", "tls-in", "openvpn-stalled", None, "answer", CHECK_OVPN_TLS),
    Stall("openvpn", "data-out", "openvpn-stalled", None, "data-out", CHECK_OVPN),
    Stall("openvpn", "data-in", "openvpn-stalled", None, "data-back", CHECK_OVPN),
    Stall("ikev2", "sa_init request", "ike-stalled", W_IKE, "request", CHECK_IKE),
    Stall("ikev2", "sa_init response", "ike-no-response", W_IKE, "answer", CHECK_IKE),
    Stall("ikev2", "nat-t switch", "natt-blocked", W_IKE, "request", CHECK_NATT,
          (_NATT_NONE_AT_WAN, _NATT_NONE_AT_CLIENT)),
    Stall("ikev2", "nat-t response", "natt-blocked", W_IKE, "answer", CHECK_NATT, (_NATT_UNANSWERED_CLIENT,)),
    Stall("ikev2", "answer delivery", "ike-answers-dropped", W_IKE, "delivery", CHECK_IKE),
    Stall("ikev2", "auth request", "ike-stalled", W_IKE, "request", CHECK_IKE_AUTH),
    Stall("ikev2", "auth response", "ike-auth-no-response", W_IKE_AUTH, "answer", CHECK_IKE_AUTH),
    Stall("ikev1", "main mode initiator", "ike-stalled", W_IKE, "request", CHECK_IKE),
    Stall("ikev1", "main mode responder", "ike-no-response", W_IKE, "answer", CHECK_IKE),
    Stall("ikev1", "nat-t switch", "natt-blocked", W_IKE, "request", CHECK_NATT,
          (_NATT_NONE_AT_WAN, _NATT_NONE_AT_CLIENT)),
    Stall("ikev1", "nat-t response", "natt-blocked", W_IKE, "answer", CHECK_NATT, (_NATT_UNANSWERED_CLIENT,)),
    Stall("ikev1", "answer delivery", "ike-answers-dropped", W_IKE, "delivery", CHECK_IKE),
    Stall("ikev1", "quick mode initiator", "ike-stalled", W_IKE, "request", CHECK_IKE_AUTH),
    Stall("ikev1", "quick mode responder", "ike-stalled", W_IKE, "answer", CHECK_IKE_AUTH),
    Stall("esp", "esp-out", "esp-blocked", W_IKE, "data-out", CHECK_ESP),
    Stall("esp", "esp-in", "esp-blocked", W_IKE, "data-back", CHECK_ESP),
    Stall("ah", "ah-out", "ah-through-nat", None, "data-out", CHECK_AH),
    Stall("ah", "ah-in", "ah-through-nat", None, "data-back", CHECK_AH),
    Stall("nat-t", "ike-out", "natt-stalled", W_IKE, "request", CHECK_NATT),
    Stall("nat-t", "ike-in", "natt-blocked", W_IKE, "answer", CHECK_NATT, (_NATT_UNANSWERED_CLIENT,)),
    Stall("nat-t", "esp-in-udp-out", "natt-blocked", W_IKE, "data-out", CHECK_NATT),
    Stall("nat-t", "esp-in-udp-in", "natt-blocked", W_IKE, "data-back", CHECK_NATT),
    Stall("tls-vpn", "client-hello", "tls-vpn-stalled", None, "request", CHECK_TLS_VPN),
    Stall("tls-vpn", "server-hello", "tls-vpn-no-response", W_SSTP, "answer", CHECK_TLS_VPN),
    Stall("tls-vpn", "dtls-out", "tls-vpn-stalled", None, "request", CHECK_TLS_VPN),
    Stall("tls-vpn", "dtls-in", "dtls-blocked", None, "data-back",
          "UDP 443 (DTLS) both ways: the tunnel falls back to TLS only, which works but is slower"),
    Stall("*", "client traffic not captured", "capture-one-sided", None, "request", CHECK_CAPTURE,
          (("router-wan", "the capture holds the server's packets only: tcpdump on a router that sends "
                          "through its own packet socket misses what the router sends"),)),
)
INDEX: Final[dict[tuple[str, str], Stall]] = {(s.protocol, s.phase): s for s in STALLS}
WINDOWS_ERRORS: Final[dict[str, int]] = {s.code: s.windows_error for s in STALLS if s.windows_error}
STALLED: Final = "stalled"  # the finding of a run that stopped without enough evidence to call it failed


def stall_for(protocol: str, phase: str | None) -> Stall | None:
    if phase is None:
        return None
    return INDEX.get((protocol, phase)) or INDEX.get(("*", phase))


def phase_table() -> str:
    """The Markdown table of docs/DIAGNOSE.md: per protocol and phase, the finding and the cause
    seen from each capture point."""
    head = ("| protocol | stopped at | finding | Windows | client | router LAN side | router WAN side "
            "| server | check |")
    rows = [head, "|" + "---|" * 9]
    for s in STALLS:
        cells = [s.protocol, s.phase, f"`{s.code}`", str(s.windows_error or "–"),
                 *(s.cause(v) for v in ("client", "router-lan", "router-wan", "server")), s.check]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"
