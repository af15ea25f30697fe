"""Typed views of what a node reports: its status, one account, one settlement, one payment's receipt.

The node's status map (``StatusReply.info``) is whatever the node chooses to report; the map's keys are
documented in DESIGN.md and ``p2pnode status``. :meth:`NodeStatus.from_info` reads the known keys with
a default for each one that is missing or of the wrong type (an older or newer node), never raising;
the full map stays in :attr:`NodeStatus.info` for printing keys this version does not know.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AccountState",
    "BlockedSlotInfo",
    "NodeStatus",
    "PeerInfo",
    "Receipt",
    "Settlement",
    "describe_blocked",
    "jsonable",
]


def _str(info: Mapping[str, Any], key: str, default: str = "") -> str:
    value = info.get(key)
    if isinstance(value, bytes):
        return value.hex()
    return value if isinstance(value, str) else default


def _int(info: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = info.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _float(info: Mapping[str, Any], key: str) -> float:
    value = info.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 0.0


def _counts(value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """One connected peer: its node id (hex), address, ``direction`` (in/out) and role."""

    node_id: str
    addr: str
    direction: str
    role: str


def _voters(votes: Any) -> tuple[str, ...]:
    """Voter id prefixes: a list of hex prefixes, a comma-separated string of them, or a bare vote
    count (that many unnamed voters, shown as ``?``)."""
    if isinstance(votes, list | tuple):
        return tuple(str(v) for v in votes)
    if isinstance(votes, str):
        return tuple(v.strip() for v in votes.split(",") if v.strip())
    if isinstance(votes, int) and not isinstance(votes, bool) and 0 <= votes <= 1024:
        return ("?",) * votes
    return ()


@dataclass(frozen=True, slots=True)
class BlockedSlotInfo:
    """A slot (``sender`` hex, ``seq``) that can never settle: conflicting ``orders`` (digest hex ->
    vote count) each hold some votes and none can reach ``quorum``; ``voters`` names them (digest hex
    -> voter id prefixes)."""

    sender: str
    seq: int
    quorum: int
    orders: Mapping[str, int]
    voters: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_dict(cls, slot: Mapping[str, Any]) -> BlockedSlotInfo:
        raw_orders = slot.get("orders")
        raw_voters = slot.get("voters")
        orders_map = raw_orders if isinstance(raw_orders, Mapping) else {}
        voters_map = raw_voters if isinstance(raw_voters, Mapping) else {}
        voters = {str(d): _voters(voters_map.get(d, v)) for d, v in orders_map.items()}
        orders = {
            d: (v if isinstance(v, int) and not isinstance(v, bool) else len(voters[d]))
            for d, v in ((str(d), v) for d, v in orders_map.items())
        }
        return cls(
            sender=_str(slot, "sender").lower(),
            seq=_int(slot, "seq", -1),
            quorum=_int(slot, "quorum"),
            orders=orders,
            voters=voters,
        )

    def describe(self, reason: str = "") -> str:
        """One line: the account, the seq, the conflicting orders with their vote counts, the reason."""
        try:
            sender = bytes.fromhex(self.sender)
        except ValueError:
            sender = b""
        return describe_blocked(sender, self.seq, reason, {d: list(v) for d, v in self.voters.items()})


def describe_blocked(sender: bytes, seq: int, reason: str, orders: Mapping[str, list[str]]) -> str:
    """One line: the account, the seq, the conflicting orders (digest hex -> voter id prefixes) with
    their vote counts, and the node's reason."""
    text = f"account {sender.hex()} seq {seq} is blocked"
    if orders:
        listed = ", ".join(
            f"{d[:16]} ({len(v)} vote{'s' if len(v) != 1 else ''})"
            for d, v in sorted(orders.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        )
        text += f": conflicting orders {listed}"
    reason = reason.removeprefix("blocked:").strip()
    return f"{text}; {reason}" if reason else text


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One node's status as it reported it.

    ``name`` the node's name; ``node_id``, ``chain_id`` and ``root`` hex; ``role`` validator or full;
    ``listen`` its "host:port"; ``ready`` it has its peers and serves; ``applied`` certificates
    applied (durable); ``accounts`` in its ledger; ``held_orders`` / ``held_certificates`` waiting for
    a predecessor; ``notes`` shielded outputs; ``shielded_applied`` shielded certificates applied;
    ``verifying`` proofs in flight; ``blocked`` the slots that can never settle; ``gossip`` and
    ``counters`` its named counters; ``info`` the whole map as received.
    """

    name: str = ""
    node_id: str = ""
    chain_id: str = ""
    role: str = ""
    listen: str = ""
    ready: bool = False
    pid: int = 0
    uptime_s: float = 0.0
    peer_count: int = 0
    peers: tuple[PeerInfo, ...] = ()
    applied: int = 0
    root: str = ""
    accounts: int = 0
    held_orders: int = 0
    held_certificates: int = 0
    notes: int = 0
    shielded_applied: int = 0
    verifying: int = 0
    blocked: tuple[BlockedSlotInfo, ...] = ()
    gossip: Mapping[str, int] = field(default_factory=dict)
    counters: Mapping[str, int] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> NodeStatus:
        """Read a status map; a missing or mistyped key takes its default (never KeyError)."""
        raw_peers = info.get("peers")
        peers = tuple(
            PeerInfo(
                node_id=_str(p, "node_id"),
                addr=_str(p, "addr"),
                direction=_str(p, "direction"),
                role=_str(p, "role"),
            )
            for p in (raw_peers if isinstance(raw_peers, list | tuple) else ())
            if isinstance(p, Mapping)
        )
        raw_slots = info.get("blocked_slots")
        slots = tuple(
            BlockedSlotInfo.from_dict(s)
            for s in (raw_slots if isinstance(raw_slots, list | tuple) else ())
            if isinstance(s, Mapping)
        )
        ready = info.get("ready")
        return cls(
            name=_str(info, "node") or _str(info, "name"),
            node_id=_str(info, "node_id"),
            chain_id=_str(info, "chain_id"),
            role=_str(info, "role"),
            listen=_str(info, "listen"),
            ready=ready if isinstance(ready, bool) else False,
            pid=_int(info, "pid"),
            uptime_s=_float(info, "uptime_s"),
            peer_count=_int(info, "peer_count", len(peers)),
            peers=peers,
            applied=_int(info, "applied"),
            root=_str(info, "root"),
            accounts=_int(info, "accounts"),
            held_orders=_int(info, "held_orders"),
            held_certificates=_int(info, "held_certificates"),
            notes=_int(info, "notes"),
            shielded_applied=_int(info, "shielded_applied"),
            verifying=_int(info, "verifying"),
            blocked=slots,
            gossip=_counts(info.get("gossip")),
            counters=_counts(info.get("counters")),
            info=dict(info),
        )

    def blocked_slot(self, sender: bytes, seq: int) -> BlockedSlotInfo | None:
        """The blocked slot (sender, seq), if this node reports it."""
        for slot in self.blocked:
            if slot.sender == sender.hex() and slot.seq == seq:
                return slot
        return None

    def blocked_with(self, digest: bytes) -> BlockedSlotInfo | None:
        """The blocked slot whose conflicting orders include ``digest``, if this node reports it."""
        for slot in self.blocked:
            if digest.hex() in slot.orders:
                return slot
        return None


@dataclass(frozen=True, slots=True)
class AccountState:
    """One account at one node (durable state): ``blocked`` is empty, or the node's reason why the
    account's ``next_seq`` can never settle."""

    address: bytes
    balance: int
    next_seq: int
    blocked: str = ""


@dataclass(frozen=True, slots=True)
class Settlement:
    """A payment ``digest`` applied at a node whose durable state then had ``root`` and ``applied``."""

    digest: bytes
    root: bytes
    applied: int


@dataclass(frozen=True, slots=True)
class Receipt:
    """A settled payment: ``tx`` its digest, ``seq`` the account seq it used (-1 for a shielded spend,
    which consumes notes), ``where`` the node it settled at (the client's name), ``seconds`` from
    submitting to settled, ``balance`` the transparent balance the payment changed (the payer's for
    pay and shield, the recipient's for unshield, the payer's own for zpay), ``root`` the node's
    state root after it. ``completed`` is (seq, digest) of an earlier pending order of the wallet that
    was finished first (seq -1 for a shielded spend), ``prove_seconds`` the time spent proving."""

    tx: bytes
    seq: int
    settled: bool
    where: str
    seconds: float
    balance: int
    root: bytes
    completed: tuple[int, bytes] | None = None
    prove_seconds: float = 0.0


def jsonable(value: Any) -> Any:
    """``value`` with bytes as hex strings and non-finite floats as strings, so that it serializes as
    JSON (a status map, a receipt's fields)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
