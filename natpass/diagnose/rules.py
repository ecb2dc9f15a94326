"""From session records to protocol reports and findings (what failed, why, what to do).

Judgement rules, all meant to avoid false alarms: a direction is called "blocked" only when the
capture holds enough of the other direction to be sure (retransmissions, or several seconds of
waiting); otherwise the finding is ``one-way-inconclusive`` (info). A healthy session gives no error.
"""

from __future__ import annotations

from collections import defaultdict

from natpass.diagnose import detect as d
from natpass.diagnose.model import (
    MAX_EVIDENCE,
    SEVERITY_ORDER,
    CaptureInfo,
    Diagnosis,
    Evidence,
    Finding,
    Phase,
    ProtocolReport,
    VantageReport,
)
from natpass.diagnose.network import VANTAGE_LABEL, Vantage, VantageGuess, infer_vantage, network_facts
from natpass.diagnose.session import Observation, Session
from natpass.diagnose.stalls import STALLED, WINDOWS_ERRORS, stall_for

ONE_WAY_MIN_PACKETS = 3  # retransmissions: a peer that answers at all answers before the third try
ONE_WAY_MIN_SECONDS = 3.0  # PPP LCP and IKE retransmit within ~1-3 s; waiting this long without answer
ERROR_619 = 619  # Windows: "connection to the remote computer could not be established" (PPTP/GRE)
ERROR_809 = 809  # Windows: "network connection ... could not be established" (IKE/L2TP/ESP blocked)

PASSTHROUGH_PROTOCOLS = {"pptp", "esp", "ah", "l2tp"}
INITIAL_TTLS = (32, 64, 128, 255)
# steps that answer something: seeing them without any client packet means a one-sided capture
ANSWERS = ("tcp-connect", "sccrp", "ocrp", "sa_init response", "auth response", "main mode responder",
           "aggressive mode responder", "response", "hard-reset-server")  # what hosts send with; one router hop later it is one less
PLAIN_NAT_PROTOCOLS = {"openvpn", "wireguard", "nat-t"}

PHASE_ORDER = {
    "pptp": ["tcp-syn", "tcp-connect", "sccrq", "sccrp", "ocrq", "ocrp", "gre-out", "gre-in"],
    "l2tp": ["sccrq", "sccrp", "scccn", "icrq", "icrp", "iccn", "data-out", "data-in"],
    "wireguard": ["initiation", "response", "data-out", "data-in"],
    "openvpn": ["hard-reset-client", "hard-reset-server", "tls-out", "tls-in", "data-out", "data-in"],
    "ikev2": ["sa_init request", "sa_init response", "nat-t switch", "auth request", "auth response"],
    "ikev1": ["main mode initiator", "main mode responder", "nat-t switch", "quick mode initiator",
              "quick mode responder"],
    "esp": ["esp-out", "esp-in"],
    "ah": ["ah-out", "ah-in"],
    "nat-t": ["ike-out", "ike-in", "esp-in-udp-out", "esp-in-udp-in"],
    "tls-vpn": ["client-hello", "server-hello", "dtls-out", "dtls-in"],
}

ADVICE_MODERN = ("a VPN that crosses NAT as ordinary UDP/TCP: WireGuard, OpenVPN, or IKEv2 with "
                 "NAT-T (UDP 500/4500)")
ADVICE_CGNAT = ("Passthrough switches on your router cannot fix this: the other NAT is not yours. Use "
                "WireGuard or OpenVPN (a server you reach outbound), IKEv2 with NAT-T, or a relay/mesh "
                "VPN (Tailscale-style); for hosting a server, ask the ISP for a public IPv4 address or "
                "use IPv6.")


def one_way_enough(count: int, first_t: float, end_t: float) -> bool:
    """Enough one-way traffic to say the reverse direction is missing, not just not yet seen."""
    return count >= ONE_WAY_MIN_PACKETS or end_t - first_t >= ONE_WAY_MIN_SECONDS and count >= 1


def _ev(lst: list[tuple[int, float]] | None, what: str) -> list[Evidence]:
    return [Evidence(f, round(t, 6), what) for f, t in (lst or [])[:MAX_EVIDENCE]]


def _step_ev(s: Session, *names: str) -> list[Evidence]:
    out = []
    for n in names:
        if n in s.steps.first:
            f, t, _ = s.steps.first[n]
            out.append(Evidence(f, round(t, 6), n))
    return out


def _first_ev(s: Session) -> list[Evidence]:
    """The session's first and last recorded steps, as evidence."""
    steps = sorted(s.steps.first.items(), key=lambda kv: kv[1][0])
    return [Evidence(f, round(t, 6), n) for n, (f, t, _) in (steps[:1] + steps[-1:] if len(steps) > 1 else steps)]


def _int(s: Session, key: str) -> int:
    v = s.extra.get(key, 0)
    return int(v) if isinstance(v, int) else 0


def _ep(addr: bytes, port: int) -> str:
    return d.endpoint(addr, port)


class Rules:
    def __init__(self, obs: Observation, vantage: Vantage | None = None) -> None:
        self.obs = obs
        self.info: CaptureInfo = obs.info
        self.sessions = obs.sessions
        self.stun = obs.stun
        self.guess: VantageGuess = infer_vantage(obs.hosts, obs.opened, vantage)
        self.vantage: Vantage = self.guess.vantage
        self.end = obs.info.duration
        self.findings: list[Finding] = []
        self.status: dict[int, tuple[str, str | None]] = {}
        self.natt_blocked: dict[tuple[bytes, bytes], list[Session]] = {}
        self.natt_pairs: set[tuple[bytes, bytes]] = set()  # IKE peers that did reach UDP 4500

    def add(self, code: str, severity: str, win: int | None, evidence: list[Evidence],
            explanation: str, advice: str, protocol: str | None = None) -> None:
        """A finding; the Windows error of a stall code comes from the stall registry."""
        win = WINDOWS_ERRORS.get(code, win)
        self.findings.append(Finding(code, severity, win, evidence[:MAX_EVIDENCE],  # type: ignore[arg-type]
                                     explanation, advice, protocol))

    def explain_stalls(self, reports: list[ProtocolReport]) -> None:
        """Every run that stopped short gets a finding naming the likely cause from this vantage."""
        label = VANTAGE_LABEL[self.vantage]
        done: set[tuple[str, str]] = set()
        for s, rep in zip(self.sessions, reports, strict=True):
            if rep.status == "established":
                continue
            stall = stall_for(rep.name, rep.stopped_at)
            if stall is None:
                continue
            cause = stall.cause(self.vantage)
            where = f"Seen from {label}: {cause}."
            if rep.status == "failed":
                same = [f for f in self.findings if f.code == stall.code]
                if same:
                    for f in same:
                        if where not in f.explanation:
                            f.explanation += " " + where
                    continue
                self.add(stall.code, "error", stall.windows_error, _first_ev(s),
                         f"{rep.name} {rep.client} -> {rep.server} stopped before '{stall.phase}'. {where}",
                         f"Check {stall.check}.", rep.name)
                continue
            if (rep.name, stall.phase) in done:
                continue
            done.add((rep.name, stall.phase))
            self.add(STALLED, "info", None, _first_ev(s),
                     f"{rep.name} {rep.client} -> {rep.server} stopped before '{stall.phase}', with too "
                     f"little evidence to call it failed (it would be '{stall.code}'). {where}",
                     f"Check {stall.check}; capture longer (10 s or more) while the VPN retries.", rep.name)

    def set_status(self, s: Session, status: str, stopped: str | None = None) -> None:
        self.status[id(s)] = (status, stopped)

    # -------------------------------------------------------------- per protocol
    def pptp(self, s: Session) -> None:
        st = s.steps
        f = st.first
        who = f"{d.addr_str(s.client)} -> {d.addr_str(s.server)}"
        gre_out, gre_in = s.gre_out, s.gre_in
        syns = st.ev.get("syn", [])
        if "tcp-syn" in f and "tcp-connect" not in f and "sccrq" not in f:
            reset = "tcp-reset" in f
            first_syn_t = f["tcp-syn"][1]
            if reset or len(syns) >= 2 or self.end - first_syn_t >= ONE_WAY_MIN_SECONDS:
                how = "answered with a TCP reset" if reset else f"unanswered ({len(syns)} SYN(s))"
                self.add("pptp-control-blocked", "error", ERROR_619,
                         _ev(syns, "SYN to tcp/1723") + _ev(st.ev.get("rst-in"), "RST from server"),
                         f"PPTP control connection {who}:1723 was {how}: the control channel never "
                         "opened, so no call could be placed.",
                         "Check that the server runs PPTP and that nothing between (router firewall, ISP) "
                         "blocks TCP 1723; on the router, TCP 1723 out is ordinary NAT and needs no "
                         "switch. Better: replace PPTP by " + ADVICE_MODERN + ".", "pptp")
                self.set_status(s, "failed", "tcp-connect")
                return
            self.set_status(s, "incomplete", "tcp-connect")
            return
        if s.extra.get("ocrp_result") not in (None, 1):
            self.add("pptp-call-refused", "error", None, _ev(st.ev.get("ocrp"), "Outgoing-Call-Reply"),
                     f"The PPTP server {d.addr_str(s.server)} refused the call (Outgoing-Call-Reply result "
                     f"{s.extra.get('ocrp_result')}): this is the server's answer, not the network.",
                     "Check the account and the server's call limits; the network path works.", "pptp")
            self.set_status(s, "failed", "ocrp")
            return
        if gre_out and gre_in:
            self.set_status(s, "established")
            return
        reached_call = "ocrp" in f or s.extra.get("control_missing")
        if reached_call and (gre_out or gre_in) and not (gre_out and gre_in):
            outbound = gre_out > 0
            count = gre_out or gre_in
            first_t = f["gre-out" if outbound else "gre-in"][1]
            ev = _step_ev(s, "ocrp") + _ev(st.ev.get("gre-out" if outbound else "gre-in"),
                                           "GRE " + ("out" if outbound else "in"))
            if one_way_enough(count, first_t, self.end):
                missing = "from the server back to the client" if outbound else "from the client"
                self.add("gre-blocked", "error", ERROR_619, ev,
                         f"PPTP control reached Outgoing-Call-Reply but GRE (IP protocol 47) flows only one "
                         f"way: {count} GRE packet(s) {'out' if outbound else 'in'}, none {missing} "
                         "(Windows: 619, 'GRE protocol error'). A NAT without a PPTP helper cannot map "
                         "GRE, which has no ports.",
                         "Enable the PPTP passthrough switch on the router (natpass: [passthrough] "
                         "pptp = true) and check that the server side allows GRE; better, move off PPTP to "
                         + ADVICE_MODERN + ".", "pptp")
                self.set_status(s, "failed", "gre-in" if outbound else "gre-out")
                return
            self.add("one-way-inconclusive", "info", None, ev,
                     f"Only {count} GRE packet(s) {'out' if outbound else 'in'} and {self.end - first_t:.1f} s "
                     "of capture after it: too little to say GRE is blocked (a peer answers PPP within "
                     "about 3 s).",
                     "Capture longer (10 s or more after the call is placed) to tell.", "pptp")
            self.set_status(s, "incomplete", "gre-in" if outbound else "gre-out")
            return
        if reached_call and not gre_out and not gre_in:
            self.add("gre-not-captured", "info", None, _step_ev(s, "ocrp"),
                     "The PPTP call was set up (Outgoing-Call-Reply) but the capture holds no GRE at all, "
                     "not even from the client: it was probably filtered to TCP, so the data channel "
                     "cannot be judged.",
                     "Capture without a port filter (or with 'tcp port 1723 or proto 47').", "pptp")
        order = PHASE_ORDER["pptp"]
        self.set_status(s, "incomplete", next((p for p in order if p not in f), None))

    def ike_groups(self, ike: list[Session]) -> None:
        by_pair: dict[tuple[bytes, bytes], list[Session]] = defaultdict(list)
        for s in ike:
            by_pair[(s.client, s.server)].append(s)
        self.natt_pairs = {(s.client, s.server) for s in ike if s.extra.get("natt")}
        for group in by_pair.values():
            silent = [s for s in group if s.inn == 0]
            answered = [s for s in group if s.inn > 0]
            requests = sum(s.out for s in silent)
            for s in answered:
                self.ike_answered(s)
            if not silent:
                continue
            if requests >= 2 and not answered:
                s0 = silent[0]
                ev: list[Evidence] = []
                for s in silent:
                    ev += _ev(s.steps.ev.get("out"), "IKE request")
                port = "UDP 4500" if s0.extra.get("natt") and not _int(s0, "out_500") else "UDP 500"
                self.add("ike-no-response", "error", ERROR_809, ev,
                         f"{requests} IKE ({s0.name}) request(s) from {d.addr_str(s0.client)} to "
                         f"{d.addr_str(s0.server)} on {port} got no answer at all: the exchange never "
                         "started. Something drops UDP 500/4500 (router, ISP, server firewall) or the "
                         "server does not run IKE.",
                         "Allow UDP 500 and 4500 to the server. On the router, IKE is ordinary UDP; "
                         "the IPsec passthrough switch (natpass: [passthrough] ipsec = true) matters for "
                         "raw ESP and for routers that block 500/4500 when it is off (strict). Test with "
                         "the switch on, then set it back off.", s0.name)
                for s in silent:
                    self.set_status(s, "failed", "sa_init response" if s.name == "ikev2"
                                    else "main mode responder")
            else:
                for s in silent:
                    self.set_status(s, "incomplete", "sa_init response" if s.name == "ikev2"
                                    else "main mode responder")
        for (client, _server), group in self.natt_blocked.items():
            out4500 = sum(_int(s, "out_4500") for s in group)
            frag = sum(_int(s, "fragments") for s in group)
            nev: list[Evidence] = []
            for s in group[:2]:
                nev += _step_ev(s, "sa_init response", "main mode responder")
                nev += _ev(s.steps.ev.get("out-4500"), "IKE on UDP 4500, no answer")[:3]
            fragnote = (f" The requests on 4500 were IP-fragmented ({frag} fragment frames): "
                        "fragments are often dropped on the way." if frag else "")
            tries = f" in {len(group)} attempts" if len(group) > 1 else ""
            self.add("natt-blocked", "error", ERROR_809, nev,
                     f"IKE was answered on UDP 500 but after the NAT-T switch to UDP 4500, {out4500} "
                     f"request(s) from {d.addr_str(client)}{tries} got no answer." + fragnote,
                     "Allow UDP 4500 both ways (router and server firewall); if the requests are "
                     "fragmented, enable IKE fragmentation (RFC 7383) on both ends or lower the MTU.",
                     group[0].name)

    def ike_answered(self, s: Session) -> None:
        f = s.steps.first
        out4500, in4500 = _int(s, "out_4500"), _int(s, "in_4500")
        esp_both = ("esp-in-udp-out" in f and "esp-in-udp-in" in f)
        if _int(s, "in_500") and out4500 and not in4500 and "esp-in-udp-in" not in f:
            first_t = f["nat-t switch"][1]
            if one_way_enough(out4500, first_t, self.end):
                self.natt_blocked.setdefault((s.client, s.server), []).append(s)
                self.set_status(s, "failed", "nat-t response")
                return
        if s.name == "ikev2":
            done = "auth response" in f or esp_both or "create_child_sa response" in f
        else:
            done = "quick mode responder" in f or esp_both
        if done:
            self.set_status(s, "established")
            return
        natd = s.extra.get("natd")
        nat_seen = isinstance(natd, dict) and any(not v[0] for v in natd.values())
        answer = f.get("sa_init response") or f.get("main mode responder")
        nxt = f.get("auth request") or f.get("nat-t switch") or f.get("quick mode initiator")
        repeats = [e for e in s.steps.ev.get("out", []) if answer is not None and e[1] > answer[1]]
        if answer is not None and nxt is None and len(repeats) >= 2:
            # The first request was answered here, and the client went on repeating it without any
            # next step: the answers seen at this point never reached the client (RFC 7296 2.1
            # retransmits only unanswered requests).
            self.add("ike-answers-dropped", "error", None,
                     _step_ev(s, "sa_init response", "main mode responder") + _ev(repeats, "request repeated"),
                     f"IKE from {d.addr_str(s.client)} to {d.addr_str(s.server)} was answered "
                     f"({_ep(s.server, s.sport)} replied) and the client repeated its first request "
                     f"{len(repeats)} more time(s) after that: the answers did not reach it.",
                     "Check what lies between this capture point and the client for inbound UDP 500/4500 "
                     "(the router's firewall; for IPv6, its IPv6 firewall).", s.name)
            self.set_status(s, "failed", "answer delivery")
            return
        if (nat_seen and not s.extra.get("natt") and answer is not None
                and (s.client, s.server) not in self.natt_pairs
                and self.end - answer[1] >= ONE_WAY_MIN_SECONDS):
            # NAT-D showed a NAT, so RFC 7296 2.23 / RFC 3947 moves the exchange to UDP 4500, and
            # for seconds none was seen: 4500 never got past the point before this capture.
            self.set_status(s, "failed", "nat-t switch")
            return
        order = [p for p in PHASE_ORDER[s.name] if p != "nat-t switch" or nat_seen]
        self.set_status(s, "incomplete", next((p for p in order if p not in f), None))

    def raw_ipsec(self, s: Session) -> None:
        name = s.name
        if s.out and s.inn:
            self.set_status(s, "established")
            return
        outbound = s.out > 0
        count = s.out or s.inn
        step = f"{name}-out" if outbound else f"{name}-in"
        first_t = s.steps.first[step][1]
        ev = _ev(s.steps.ev.get(step), f"{name.upper()} {'out' if outbound else 'in'}")
        if name == "esp" and one_way_enough(count, first_t, self.end) and self.end - first_t >= 1.0:
            self.add("esp-blocked", "error", ERROR_809, ev,
                     f"Raw ESP (IP protocol 50) flows one way only: {count} packet(s) "
                     f"{'from ' + d.addr_str(s.client) if outbound else 'to ' + d.addr_str(s.client)}, "
                     "none back. A NAT cannot map ESP (no ports) unless it has an IPsec passthrough "
                     "helper, and one ESP peer behind a NAT needs NAT-T.",
                     "Enable IPsec passthrough on the router (natpass: [passthrough] ipsec = true) and "
                     "allow IP protocol 50 at the server; better, enable NAT-T (UDP 4500 encapsulation, "
                     "on by default in IKEv2 clients) so ESP travels as UDP.", name)
            self.set_status(s, "failed", f"{name}-in" if outbound else f"{name}-out")
            return
        self.add("one-way-inconclusive", "info", None, ev,
                 f"{name.upper()} seen in one direction only ({count} packet(s) over "
                 f"{max(0.0, self.end - first_t):.1f} s): too short a capture to call it blocked.",
                 "Capture for 10 s or more while the tunnel should carry traffic.", name)
        self.set_status(s, "incomplete", f"{name}-in" if outbound else f"{name}-out")

    def natt(self, s: Session, ike_failed_natt: set[tuple[bytes, bytes]]) -> None:
        f = s.steps.first
        if s.out and s.inn:
            self.set_status(s, "established")
        elif (s.client, s.server) in ike_failed_natt:
            self.set_status(s, "failed", "ike-in")
        elif s.out or s.inn:
            has_ike = "ike-out" in f or "ike-in" in f
            if not has_ike:
                outbound = s.out > 0
                step = "esp-in-udp-out" if outbound else "esp-in-udp-in"
                if step in f:
                    first_t = f[step][1]
                    count = s.out or s.inn
                    if one_way_enough(count, first_t, self.end) and self.end - first_t >= 1.0:
                        self.add("natt-blocked", "error", ERROR_809,
                                 _ev(s.steps.ev.get(step), "ESP-in-UDP, no answer"),
                                 f"ESP in UDP 4500 (NAT-T) flows one way only: {count} packet(s), none "
                                 "back.",
                                 "Allow UDP 4500 both ways at the router and the server firewall; check the "
                                 "server's NAT-T settings.", "nat-t")
                        self.set_status(s, "failed", "esp-in-udp-in")
                        return
                    self.add("one-way-inconclusive", "info", None,
                             _ev(s.steps.ev.get(step), "ESP-in-UDP"),
                             f"ESP in UDP 4500 seen one way only ({count} packet(s) over "
                             f"{max(0.0, self.end - first_t):.1f} s): too short to judge.",
                             "Capture for 10 s or more while the tunnel should carry traffic.", "nat-t")
            self.set_status(s, "incomplete", "esp-in-udp-in")
        else:
            self.set_status(s, "incomplete")

    def l2tp(self, s: Session) -> None:
        f = s.steps.first
        sccrq = s.steps.ev.get("sccrq", [])
        if s.inn == 0 and len(sccrq) >= 2:
            self.add("l2tp-no-response", "error", ERROR_809, _ev(sccrq, "SCCRQ"),
                     f"{len(sccrq)} L2TP Start-Control-Connection-Request(s) to {d.addr_str(s.server)} on UDP "
                     "1701 got no answer.",
                     "L2TP is normally carried inside IPsec (L2TP/IPsec): check IKE/ESP first; plain "
                     "UDP 1701 must be allowed to the server.", "l2tp")
            self.set_status(s, "failed", "sccrp")
            return
        if ("data-out" in f and "data-in" in f) or "iccn" in f:
            self.set_status(s, "established")
        else:
            self.set_status(s, "incomplete", next((p for p in PHASE_ORDER["l2tp"] if p not in f), None))

    def wireguard(self, s: Session) -> None:
        f = s.steps.first
        inits = s.steps.ev.get("initiation-out", [])
        if "response" in f or (s.extra.get("handshake_missing") and s.out and s.inn):
            self.set_status(s, "established" if s.inn else "incomplete")
            return
        if s.inn == 0 and inits and one_way_enough(len(inits), inits[0][1], self.end) and len(inits) >= 2:
            self.add("wireguard-no-response", "error", None, _ev(inits, "Handshake Initiation"),
                     f"{len(inits)} WireGuard handshake initiation(s) from {d.addr_str(s.client)} to "
                     f"{_ep(s.server, s.sport)} got no response. WireGuard stays silent both when the "
                     "packets are dropped and when the keys do not match.",
                     "Check the server's UDP port is reachable (port forward on the server's router, "
                     "firewall) and the peer's public key/endpoint. Router passthrough switches play no "
                     "part in WireGuard.", "wireguard")
            self.set_status(s, "failed", "response")
            return
        self.set_status(s, "incomplete", next((p for p in PHASE_ORDER["wireguard"] if p not in f), None))

    def openvpn(self, s: Session) -> None:
        f = s.steps.first
        resets = s.steps.ev.get("reset-out", [])
        if s.extra.get("mode") in ("static-key", "unknown"):
            self.openvpn_by_port(s)
            return
        if ("data-out" in f and "data-in" in f) or ("tls-out" in f and "tls-in" in f):
            self.set_status(s, "established")
            return
        if s.inn == 0 and len(resets) >= 2:
            self.add("openvpn-no-response", "error", None, _ev(resets, "P_CONTROL_HARD_RESET_CLIENT"),
                     f"{len(resets)} OpenVPN hard-reset(s) from {d.addr_str(s.client)} to "
                     f"{_ep(s.server, s.sport)} ({s.transport}) got no answer.",
                     "Check the server address/port and its firewall; with tls-auth/tls-crypt a wrong key "
                     "is also silently dropped. Router passthrough switches play no part in OpenVPN.",
                     "openvpn")
            self.set_status(s, "failed", "hard-reset-server")
            return
        self.set_status(s, "incomplete", next((p for p in PHASE_ORDER["openvpn"] if p not in f), None))

    def openvpn_by_port(self, s: Session) -> None:
        """OpenVPN without opcode structure (static key, or the port alone): data both ways or not."""
        f = s.steps.first
        if "data-out" in f and "data-in" in f:
            self.set_status(s, "established")
            return
        outbound = s.out > 0
        step = "data-out" if outbound else "data-in"
        if step in f and one_way_enough(s.out or s.inn, f[step][1], self.end):
            self.set_status(s, "failed", "data-in" if outbound else "data-out")
        else:
            self.set_status(s, "incomplete", "data-in" if outbound else "data-out")

    def tls_vpn(self, s: Session) -> None:
        """An SSL VPN seen by its TLS handshake (and DTLS beside it)."""
        f = s.steps.first
        if "server-hello" not in f:
            first_t = f["client-hello"][1]
            status = "failed" if self.end - first_t >= ONE_WAY_MIN_SECONDS else "incomplete"
            self.set_status(s, status, "server-hello")
        elif "dtls-out" in f and "dtls-in" not in f:
            # The TLS tunnel works; DTLS (the fast data path) is dropped: AnyConnect/OpenConnect fall
            # back to TLS only, slower but connected.
            self.set_status(s, "failed" if one_way_enough(s.out, f["dtls-out"][1], self.end) else "incomplete",
                            "dtls-in")
        else:
            self.set_status(s, "established")

    def ikev1_purpose(self, ikev1: list[Session]) -> None:
        """IKEv1 followed by ESP or NAT-T with no L2TP visible: L2TP/IPsec or a road warrior."""
        l2tp_pairs = {(s.client, s.server) for s in self.sessions if s.name == "l2tp"}
        for s in ikev1:
            f = s.steps.first
            if (s.client, s.server) in l2tp_pairs or not (
                    "quick mode initiator" in f or "esp-in-udp-out" in f or s.extra.get("natt")):
                continue
            vids = s.extra.get("vids")
            seen = set(vids) if isinstance(vids, list) else set()
            aggressive = "aggressive mode initiator" in f
            hints = []
            if "windows" in seen:
                hints.append("the MS NT5 ISAKMPOAKLEY vendor ID: the Windows built-in client, whose only "
                             "IKEv1 use is L2TP/IPsec")
            if "xauth" in seen or "cisco-unity" in seen:
                hints.append("XAUTH / Cisco Unity vendor IDs: a road-warrior client logging in after phase 1")
            if aggressive:
                hints.append("aggressive mode: typical of PSK road warriors (Cisco-style), not of L2TP/IPsec")
            if "windows" in seen and not ("xauth" in seen or aggressive):
                verdict = "most likely L2TP/IPsec"
            elif "xauth" in seen or "cisco-unity" in seen or aggressive:
                verdict = "most likely an IKEv1 road warrior (XAUTH/mode config)"
            else:
                verdict = "L2TP/IPsec or an IKEv1 road warrior"
                hints.append("no vendor ID decides; L2TP/IPsec shows UDP 1701 only inside ESP, so "
                             "nothing here tells them apart")
            s.hints += hints
            self.add("ikev1-purpose", "info", None, _step_ev(s, "main mode initiator", "aggressive mode initiator"),
                     f"IKEv1 from {d.addr_str(s.client)} to {d.addr_str(s.server)} went on to ESP with no L2TP "
                     f"visible: {verdict}. Hints: " + "; ".join(hints) + ".",
                     "For L2TP/IPsec behind NAT keep NAT-T on (UDP 4500); the router's l2tp switch is not "
                     "needed then. An IKEv1 road warrior needs no switch either with NAT-T.", s.name)

    def ipv6_ipsec(self) -> None:
        """IPsec that fails over IPv6: no NAT there, so a firewall (often the CPE's) drops it."""
        hit = [s for s in self.sessions if len(s.client) == 16
               and s.name in ("ikev1", "ikev2", "esp", "ah", "nat-t")
               and self.status.get(id(s), ("",))[0] == "failed"]
        if hit:
            ev = [e for s in hit for e in _first_ev(s)][:MAX_EVIDENCE]
            who = ", ".join(dict.fromkeys(f"{s.name} {d.addr_str(s.client)}" for s in hit))
            self.add("ipv6-ipsec-filtered", "warning", None, ev,
                     f"IPsec over IPv6 failed ({who}). IPv6 has no NAT, so nothing needs passthrough: a "
                     "firewall dropped it, most often the home router's IPv6 firewall. RFC 6092 section "
                     "3.2.4 says a residential IPv6 gateway should by default let ESP, AH and IKE (UDP 500, "
                     "and UDP 4500) through.",
                     "Allow ESP (IP protocol 50), UDP 500 and UDP 4500 in the router's IPv6 firewall (often "
                     "'IPsec passthrough' or an IPv6 pinhole setting), or connect over IPv4.")

    # -------------------------------------------------------------- NAT, policy
    def nat_layers(self) -> None:
        cg_ev: list[Evidence] = []
        cg_why: list[str] = []
        dbl_ev: list[Evidence] = []
        dbl_why: list[str] = []
        for s in self.sessions:
            for addr in (s.client, s.server):
                if d.address_kind(addr) == "cgnat":
                    if not cg_why or d.addr_str(addr) not in " ".join(cg_why):
                        cg_why.append(f"{s.name} endpoint {d.addr_str(addr)} is in 100.64.0.0/10 "
                                      "(carrier-grade NAT, RFC 6598)")
                    cg_ev += _step_ev(s, *list(s.steps.first)[:1])
            natd = s.extra.get("natd")
            if not isinstance(natd, dict):
                continue
            seen_dst = natd.get("server_as_seen_by_client")
            if seen_dst is not None and not seen_dst[0]:
                continue  # the client's hashes do not even match the server address: unverifiable
            before = natd.get("client_source")
            after = natd.get("client_as_seen_by_server")
            nat_before = before is not None and not before[0]
            nat_after = after is not None and not after[0]
            if nat_before and s.extra.get("client_ttl") in INITIAL_TTLS:
                # Captured on the client itself (its packets have not crossed a router yet), so
                # nothing translated them before this point: the client fakes its source hash
                # to force UDP encapsulation (strongSwan encap=yes, libipsec) - not a NAT.
                nat_before = False
            ck, sk = d.address_kind(s.client), d.address_kind(s.server)
            ev = [Evidence(x[1], round(x[2], 6), "NAT-D") for x in (before, after) if x is not None]
            if nat_before and nat_after:
                dbl_ev += ev
                dbl_why.append(f"IKE NAT-D: the client's own address was rewritten before this capture "
                               f"point and again after it ({d.addr_str(s.client)} is neither the client's "
                               "address nor the one the server sees)")
            elif nat_before and ck == "private" and sk == "public":
                dbl_ev += ev
                dbl_why.append(f"IKE NAT-D: the client is behind a NAT, and the translated address "
                               f"{d.addr_str(s.client)} is itself private: another NAT follows")
            if nat_after and ck in ("public", "cgnat"):
                cg_ev += ev
                cg_why.append(f"IKE NAT-D: the server sees the client at an address other than "
                              f"{d.addr_str(s.client)}, which is already an outside address: a NAT "
                              "beyond the router (carrier-grade NAT)")
        for fact in network_facts(self.obs.hosts, self.obs.opened, self.obs.hops, self.guess):
            ev = [Evidence(fact.frame, round(fact.time, 6), "address" if fact.frame else "flow")]
            if fact.code == "cgnat":
                cg_ev += ev
                cg_why.append(fact.why)
            else:
                dbl_ev += ev
                dbl_why.append(fact.why)
        for frame, t, seen, port, mapped, mport in self.stun:
            if (mapped, mport) != (d.addr_str(seen), port) and d.address_kind(seen) in ("public", "cgnat"):
                cg_ev.append(Evidence(frame, round(t, 6), "STUN mapped address"))
                cg_why.append(f"STUN: the outside address {d.addr_str(seen)}:{port} is mapped to "
                              f"{mapped}:{mport} further on: a NAT beyond it")
        if cg_why:
            self.add("cgnat", "warning", None, cg_ev,
                     "Carrier-grade NAT in the path: " + "; ".join(dict.fromkeys(cg_why)) + ".",
                     ADVICE_CGNAT)
        if dbl_why:
            self.add("double-nat", "warning", None, dbl_ev,
                     "Two NAT layers: " + "; ".join(dict.fromkeys(dbl_why)) + ".",
                     ADVICE_CGNAT + " At home, two routers in a row (ISP box + own router) also make "
                     "double NAT: put the ISP box in bridge mode or use its DMZ/passthrough.")

    def ah_nat(self, ah: list[Session], ike: list[Session]) -> None:
        for s in ah:
            why = []
            ck, sk = d.address_kind(s.client), d.address_kind(s.server)
            if (ck != "public") != (sk != "public"):
                why.append(f"one end is {ck if ck != 'public' else sk} and the other public, so a NAT "
                           "sits between them")
            for i in ike:
                if i.server == s.server or i.client == s.server:
                    natd = i.extra.get("natd")
                    if isinstance(natd, dict) and any(not v[0] for v in natd.values()):
                        why.append("IKE NAT-D hashes show a NAT between the peers")
                    if i.client != s.client and i.server == s.server:
                        why.append(f"the IKE client address {d.addr_str(i.client)} differs from the AH "
                                   f"source {d.addr_str(s.client)}")
            if why:
                self.add("ah-through-nat", "error", None,
                         _ev(s.steps.ev.get("ah-out"), "AH out") + _ev(s.steps.ev.get("ah-in"), "AH in"),
                         "AH (IP protocol 51) authenticates the IP addresses, so any NAT breaks it: "
                         + "; ".join(dict.fromkeys(why)) + ". No passthrough can fix AH across NAT.",
                         "Use ESP (with NAT-T) instead of AH, or run the tunnel between public addresses "
                         "with no NAT between.", "ah")
                self.set_status(s, "failed", "ah-in")

    def policy(self) -> None:
        names = {s.name for s in self.sessions}
        pptp = [s for s in self.sessions if s.name == "pptp"]
        if pptp:
            self.add("pptp-insecure", "warning", None,
                     [e for s in pptp for e in _step_ev(s, "tcp-syn", "sccrq", "gre-out")][:MAX_EVIDENCE],
                     "PPTP is in use. Its authentication (MS-CHAPv2) can be cracked offline from one "
                     "captured handshake and its encryption (MPPE/RC4) is broken; it also needs a GRE "
                     "helper on every NAT.",
                     "Move to " + ADVICE_MODERN + "; keep the router's PPTP switch off once done.", "pptp")
        l2tp = [s for s in self.sessions if s.name == "l2tp"]
        if l2tp:
            self.add("l2tp-unencrypted", "warning", None,
                     [e for s in l2tp for e in _ev(list(s.steps.ev.values())[0], "L2TP in clear")][:MAX_EVIDENCE],
                     "L2TP is visible in clear on UDP 1701: L2TP itself has no encryption, so this tunnel "
                     "is not protected by IPsec (L2TP/IPsec would show only ESP / UDP 4500 here).",
                     "Configure L2TP over IPsec (L2TP/IPsec), or use " + ADVICE_MODERN + ".", "l2tp")
        if names and not names & PASSTHROUGH_PROTOCOLS and names & PLAIN_NAT_PROTOCOLS:
            ike_plain = [s for s in self.sessions if s.name in ("ikev1", "ikev2") and not s.extra.get("natt")]
            if not ike_plain:
                seen = ", ".join(sorted(names))
                self.add("passthrough-not-needed", "info", None,
                         [e for s in self.sessions for e in _step_ev(s, *list(s.steps.first)[:1])][:MAX_EVIDENCE],
                         f"Only protocols that cross NAT as ordinary UDP/TCP were seen ({seen}).",
                         "The router's passthrough switches (pptp, ipsec, l2tp) can all stay off.")
        if not self.sessions:
            other = self.info.other
            extra = f" ({other} frame(s) carried no IP and were not analysed)" if other else ""
            self.add("no-vpn-found", "info", None, [],
                     f"No VPN traffic was recognised in this capture{extra}.",
                     "Capture while the VPN client connects, without a port filter.")

    def one_sided(self) -> set[int]:
        """Sessions where the capture holds answers to requests it never saw: it misses the
        client-to-server direction (e.g. tcpdump on a router that sends through a packet socket),
        so nothing can be concluded about what did not come back."""
        found: list[Session] = []
        for s in self.sessions:
            if s.out == 0 and s.inn > 0 and any(n in s.steps.first for n in ANSWERS):
                found.append(s)
        if found:
            ev = [e for s in found for e in _step_ev(s, *ANSWERS)][:MAX_EVIDENCE]
            who = ", ".join(dict.fromkeys(f"{s.name} {d.addr_str(s.client)}" for s in found))
            self.add("capture-one-sided", "info", None, ev,
                     f"The capture holds server answers but nothing the client sent ({who}): it sees "
                     "one direction only, so missing traffic cannot be judged. A capture on a router "
                     "may miss what the router itself sends.",
                     "Capture on the client, or on a switch mirror port that sees both directions.")
        return {id(s) for s in found}

    # -------------------------------------------------------------- all
    def run(self) -> Diagnosis:
        by: dict[str, list[Session]] = defaultdict(list)
        blind = self.one_sided()
        for s in self.sessions:
            if id(s) in blind:
                self.set_status(s, "incomplete", "client traffic not captured")
                continue
            by[s.name].append(s)
        for s in by["pptp"]:
            self.pptp(s)
        self.ike_groups(by["ikev1"] + by["ikev2"])
        failed_natt = {(s.client, s.server) for s in by["ikev1"] + by["ikev2"]
                       if self.status.get(id(s), ("",))[0] == "failed" and "nat-t switch" in s.steps.first}
        for s in by["nat-t"]:
            self.natt(s, failed_natt)
        for s in by["esp"] + by["ah"]:
            self.raw_ipsec(s)
        for s in by["l2tp"]:
            self.l2tp(s)
        for s in by["wireguard"]:
            self.wireguard(s)
        for s in by["openvpn"]:
            self.openvpn(s)
        for s in by["tls-vpn"]:
            self.tls_vpn(s)
        self.ikev1_purpose(by["ikev1"])
        self.ipv6_ipsec()
        self.ah_nat(by["ah"], by["ikev1"] + by["ikev2"])
        self.nat_layers()
        self.policy()
        reports = [self.report(s) for s in self.sessions]
        self.explain_stalls(reports)
        self.findings.sort(key=lambda f: SEVERITY_ORDER[f.severity])
        g = self.guess
        where = VantageReport(g.vantage, g.source, d.addr_str(g.local) if g.local else None, g.basis)
        return Diagnosis(self.info, reports, self.findings, where)

    def report(self, s: Session) -> ProtocolReport:
        status, stopped = self.status.get(id(s), ("incomplete", None))
        if status != "established" and stopped is None:
            stopped = next((p for p in PHASE_ORDER.get(s.name, ()) if p not in s.steps.first), None)
        phases = sorted((Phase(n, f, round(t, 6), dr) for n, (f, t, dr) in s.steps.first.items()),
                        key=lambda p: (p.frame, p.name))
        notes = []
        if s.extra.get("control_missing"):
            notes.append("PPTP control connection (TCP 1723) not in the capture; GRE only")
        if s.extra.get("handshake_missing"):
            notes.append("handshake happened before the capture started")
        if s.extra.get("natt"):
            notes.append("NAT-T used (UDP 4500)")
        if _int(s, "fragments"):
            notes.append(f"{_int(s, 'fragments')} IP fragment(s)")
        if "redirect" in s.steps.first:
            notes.append("server answered with REDIRECT (RFC 5685)")
        if s.name == "pptp":
            gre = f"GRE out {s.gre_out}, in {s.gre_in}"
            notes.append(gre)
        if isinstance(s.extra.get("mode"), str):
            notes.append(f"mode: {s.extra['mode']}")
        if isinstance(s.extra.get("vendor"), str):
            notes.append(f"looks like: {s.extra['vendor']}")
        return ProtocolReport(s.name, status, _ep(s.client, s.cport), _ep(s.server, s.sport),  # type: ignore[arg-type]
                              s.transport, phases, s.out, s.inn, stopped if status != "established" else None,
                              notes, s.confidence, list(s.hints))
