"""PPTP control stream rewriting (RFC 2637 over TCP 1723): byte positions, rewrites across segments.

Per direction a :class:`~natpass.passthrough.pptp_records.StreamDir` keeps the next expected
sequence number, the message being assembled and the Call ID fields still to come in it. Bytes
before the expected sequence number (retransmissions) are not parsed again but get the same
rewrite as the first time; a segment beyond it (a hole) is dropped so that the sender retransmits
in order. Which value a Call ID field gets, and what a whole message means for the calls, is
asked of :class:`ControlRules` (the PPTP helper): this module only knows where the bytes are.
"""

from __future__ import annotations

from typing import Final, Protocol

from natpass.nat.helper import HelperContext
from natpass.packets import pptp as P
from natpass.passthrough._common import HALF_SEQ, SEQ_MASK, u16, u32
from natpass.passthrough.pptp_records import Control, StreamDir

OWN: Final = "own"  # the sender's own Call ID
PEER: Final = "peer"  # the receiver's Call ID (Peer's Call ID)


def _fields_of(ctype: int) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    if ctype in P.CALL_ID_OFFSET:
        out.append((P.CALL_ID_OFFSET[ctype], OWN))
    if ctype in P.PEER_CALL_ID_OFFSET:
        out.append((P.PEER_CALL_ID_OFFSET[ctype], PEER))
    out.sort()
    return out


FIELDS: Final[dict[int, list[tuple[int, str]]]] = {t: _fields_of(t) for t in P.LENGTHS}


class ControlRules(Protocol):
    """What the stream asks of the helper that follows the calls."""

    def translate_call_id(self, ctl: Control, ctype: int, kind: str, value: int, from_lan: bool,
                          far_end: bool, now: float) -> int | None:
        """The new value of one Call ID field (``kind`` OWN or PEER), or None to leave it."""

    def message_done(self, ctl: Control, d: StreamDir, from_lan: bool, now: float) -> None:
        """A whole, well-formed message was seen (its fields are in ``d.values``)."""

    def count(self, name: str) -> None:
        """Count an event of the helper."""

    def context(self) -> HelperContext:
        """The engine services (checksum-fixing rewrite)."""


class ControlStream:
    """Parses and rewrites the payload of control connection segments, one direction at a time."""

    def __init__(self, rules: ControlRules) -> None:
        self._rules = rules

    def segment(self, ctl: Control, d: StreamDir, buf: bytearray, ihl: int, from_lan: bool,
                far_end: bool, now: float) -> str | None:
        """Parse (and rewrite) the payload of one TCP segment; a drop reason or None to pass."""
        total = u16(buf, 2)
        if total > len(buf) or total < ihl + 20:
            return None
        doff = (buf[ihl + 12] >> 4) * 4
        pay = ihl + doff
        if doff < 20 or pay > total:
            return None
        seq = u32(buf, ihl + 4)
        if buf[ihl + 13] & 0x02:  # SYN occupies one sequence number
            seq = (seq + 1) & SEQ_MASK
            if d.next_seq != seq:  # first SYN, or a new connection on the same 4-tuple
                self._restart(d, seq)
        plen = total - pay
        if plen == 0:
            return None  # SYN, ACK, FIN, RST without data always pass: the connection can end
        if d.broken is not None:
            return self.lost(far_end)
        if d.next_seq is None:
            d.next_seq = seq  # picked up mid-stream: assume a message starts here (cookie checks it)
        ahead = (seq - d.next_seq) & SEQ_MASK
        if ahead and ahead < HALF_SEQ:
            if not far_end:
                self._rules.count("pptp:out-of-order")
            return "pptp:out-of-order"
        old = 0 if ahead == 0 else min((d.next_seq - seq) & SEQ_MASK, plen)
        if old:
            self._replay_rewrites(d, buf, pay, seq, old)
        if old == plen:
            return None
        pos = old
        while pos < plen and d.broken is None:
            if not d.partial:
                d.msg_seq = (seq + pos) & SEQ_MASK
            want = (P.HEADER_LEN if d.msg_len == 0 else d.msg_len) - len(d.partial)
            take = min(want, plen - pos)
            d.partial += buf[pay + pos:pay + pos + take]
            pos += take
            if d.msg_len == 0:
                if len(d.partial) < P.HEADER_LEN:
                    break
                self._header(d, far_end)
                if d.broken is not None:
                    return self.lost(far_end)
            for off, kind in list(d.pending):
                if len(d.partial) >= off + 2:
                    d.pending.remove((off, kind))
                    self._field(ctl, d, buf, pay, seq, plen, off, kind, from_lan, far_end, now)
            if d.broken is not None:
                return self.lost(far_end)
            if len(d.partial) == d.msg_len:
                if not d.skip and not far_end:
                    self._rules.message_done(ctl, d, from_lan, now)
                d.partial = bytearray()
                d.msg_len = 0
                d.pending = []
                d.values = {}
                d.skip = False
        d.next_seq = (seq + plen) & SEQ_MASK
        return None

    def lost(self, far_end: bool) -> str:
        """The framing of this direction is lost (bad cookie or length): its data is dropped from
        now on. Passing it untranslated could put a LAN Call ID on the wire that collides with
        another client's WAN id, and GRE would then reach the wrong host; failing closed makes
        the client reconnect on a fresh, followed, connection."""
        if not far_end:
            self._rules.count("pptp:stream-lost-drops")
        return "pptp:stream-lost"

    @staticmethod
    def _restart(d: StreamDir, seq: int) -> None:
        d.next_seq = seq
        d.partial = bytearray()
        d.msg_len = 0
        d.skip = False
        d.pending = []
        d.values = {}
        d.broken = None
        d.rewrites.clear()

    def _header(self, d: StreamDir, far_end: bool) -> None:
        h = d.partial
        length = u16(h, 0)
        mtype = u16(h, 2)
        cookie = u32(h, 4)
        ctype = u16(h, 8)
        count = (lambda name: None) if far_end else self._rules.count
        if length < P.HEADER_LEN or length > P.MAX_MESSAGE_LEN:
            d.broken = f"bad length {length}"
            count("pptp:bad-length")
            count("pptp:stream-lost")
            d.partial = bytearray()
            return
        if cookie != P.MAGIC_COOKIE:
            d.broken = f"bad magic cookie {cookie:#010x}"
            count("pptp:bad-cookie")
            count("pptp:stream-lost")
            d.partial = bytearray()
            return
        d.msg_len = length
        d.ctype = ctype
        d.skip = False
        d.pending = []
        if mtype != P.MESSAGE_TYPE_CONTROL or ctype not in P.LENGTHS:
            count("pptp:unknown-type")
            d.skip = True
        elif length < P.LENGTHS[ctype]:
            count("pptp:truncated")
            d.skip = True
        elif length > P.LENGTHS[ctype]:
            count("pptp:bad-length")
            d.skip = True
        else:
            d.pending = list(FIELDS[ctype])

    def _field(self, ctl: Control, d: StreamDir, buf: bytearray, pay: int, seq: int, plen: int,
               off: int, kind: str, from_lan: bool, far_end: bool, now: float) -> None:
        old = bytes(d.partial[off:off + 2])
        value = (old[0] << 8) | old[1]
        d.values[kind] = value
        new_value = self._rules.translate_call_id(ctl, d.ctype, kind, value, from_lan, far_end, now)
        if new_value is None or new_value == value:
            return
        new = bytes(((new_value >> 8) & 0xFF, new_value & 0xFF))
        start = (d.msg_seq + off) & SEQ_MASK
        if not self._write(buf, pay, seq, plen, start, old, new):
            # Half of the Call ID already went out unchanged: the value on the wire would be
            # nobody's (or somebody else's) id. Fail closed.
            if not far_end:
                self._rules.count("pptp:split-call-id")
            d.broken = "split Call ID"
        d.rewrites.append((start, old, new))

    def _write(self, buf: bytearray, pay: int, seq: int, plen: int, start: int, old: bytes,
               new: bytes) -> bool:
        """Put ``new`` at stream position ``start`` where it falls inside this segment; False when
        a byte that must change already left in an earlier segment."""
        ctx = self._rules.context()
        idx = [(start + j - seq) & SEQ_MASK for j in range(len(new))]
        ok = True
        for j in range(len(new)):
            if idx[j] < plen:
                ctx.rewrite(buf, pay + idx[j], new[j:j + 1])
            elif old[j] != new[j]:
                ok = False
        return ok

    def _replay_rewrites(self, d: StreamDir, buf: bytearray, pay: int, seq: int, n: int) -> None:
        """A retransmission: give the bytes already parsed the same rewrite as the first time."""
        ctx = self._rules.context()
        for start, old, new in d.rewrites:
            for j in range(len(new)):
                i = (start + j - seq) & SEQ_MASK
                if i < n and buf[pay + i] == old[j]:
                    ctx.rewrite(buf, pay + i, new[j:j + 1])
