"""Blocked slots: a (sender, seq) for which conflicting orders split the votes so that none can win.

A slot is a lock key (:mod:`p2pnode.core.validator`): ``(sender, seq)`` for a transparent order or a
shield, ``(input commitment, -1)`` for a shielded input note. An honest validator votes for at most
one order per slot. So once the committee's votes for a slot are known, an order ``d`` can still
gather at most ``votes(d) + undecided`` votes, where ``undecided`` counts the committee members that
voted for no order of the slot. The slot is **blocked** when that bound is below the quorum for
every order:

    max over d of votes(d)  +  (N - |validators that voted for some order of the slot|)  <  q

The rule assumes the voters keep their locks. A Byzantine validator may vote twice and complete one
order after all; its certificate then applies and the record is dropped (``clear``): the record is
evidence ("these signed votes split the slot"), never a state transition. Nothing here is persisted:
after a restart the validators re-sign their votes, and the evidence is found again.

Bounds: at most ``limit`` slots are watched (oldest dropped) and ``MAX_ORDERS_PER_SLOT`` orders per
slot; blocked records are bounded by the same limit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from p2pnode.core.committee import Committee
from p2pnode.wire.types import Digest

Slot = tuple[bytes, int]
MAX_ORDERS_PER_SLOT = 16


@dataclass(frozen=True, slots=True)
class BlockedSlot:
    """Evidence that no order can reach a quorum for ``slot``: each order with its voters."""

    slot: Slot
    orders: tuple[tuple[Digest, tuple[bytes, ...]], ...]  # (digest, validators that voted for it)
    quorum: int

    def reason(self) -> str:
        """One line for users: which slot, which orders, how the votes split."""
        key, seq = self.slot
        what = f"account {key.hex()} seq {seq}" if seq >= 0 else f"input note {key.hex()[:16]}"
        split = ", ".join(f"{d.hex()[:16]} ({len(v)} votes)" for d, v in self.orders)
        return (
            f"blocked: {what} has conflicting orders {split}; no order can reach the quorum of "
            f"{self.quorum}, so this slot can never settle"
        )

    def as_dict(self) -> dict[str, object]:
        """For status and the ``slot_blocked`` log line: ``orders`` maps each digest to its vote
        count, ``voters`` to the comma-separated id prefixes of its voters."""
        key, seq = self.slot
        return {
            "sender": key.hex(),
            "seq": seq,
            "quorum": self.quorum,
            "orders": {d.hex(): len(voters) for d, voters in self.orders},
            "voters": {d.hex(): ",".join(v.hex()[:16] for v in voters) for d, voters in self.orders},
        }


class SlotWatch:
    """Which orders compete for each slot, and which slots are blocked."""

    def __init__(self, committee: Committee, limit: int) -> None:
        self.committee = committee
        self.limit = limit
        self._orders: OrderedDict[Slot, dict[Digest, None]] = OrderedDict()
        self._slots_of: dict[Digest, tuple[Slot, ...]] = {}
        self.blocked: OrderedDict[Slot, BlockedSlot] = OrderedDict()

    def add_order(self, digest: Digest, slots: Iterable[Slot]) -> None:
        keys = tuple(slots)
        if digest in self._slots_of:
            return
        self._slots_of[digest] = keys
        for slot in keys:
            orders = self._orders.get(slot)
            if orders is None:
                orders = self._orders[slot] = {}
                while len(self._orders) > self.limit:
                    _, dropped = self._orders.popitem(last=False)
                    for d in dropped:
                        self._slots_of.pop(d, None)
            if len(orders) < MAX_ORDERS_PER_SLOT:
                orders[digest] = None

    def orders_for(self, slot: Slot) -> Mapping[Digest, None]:
        """The orders known to compete for ``slot`` (empty if none)."""
        return self._orders.get(slot, {})

    def slots_of(self, digest: Digest) -> tuple[Slot, ...]:
        return self._slots_of.get(digest, ())

    def check(self, digest: Digest, voters: Callable[[Digest], Iterable[bytes]]) -> list[BlockedSlot]:
        """Re-evaluate the slots of ``digest`` after a vote or an order; returns newly blocked ones."""
        found: list[BlockedSlot] = []
        for slot in self._slots_of.get(digest, ()):
            if slot in self.blocked:
                continue
            orders = self._orders.get(slot)
            if orders is None or len(orders) < 2:
                continue
            split = [(d, tuple(sorted(set(voters(d))))) for d in orders]
            decided = set().union(*(set(v) for _, v in split))
            undecided = self.committee.size - len(decided)
            best = max(len(v) for _, v in split)
            if best + undecided < self.committee.quorum:
                record = BlockedSlot(slot, tuple(sorted(split, key=lambda x: x[0])), self.committee.quorum)
                self.blocked[slot] = record
                while len(self.blocked) > self.limit:
                    self.blocked.popitem(last=False)
                found.append(record)
        return found

    def clear(self, slots: Iterable[Slot]) -> None:
        """These slots were settled (a certificate applied): forget them."""
        for slot in slots:
            self.blocked.pop(slot, None)
            for d in self._orders.pop(slot, {}):
                self._slots_of.pop(d, None)

    def reason(self, slot: Slot) -> str:
        record = self.blocked.get(slot)
        return record.reason() if record is not None else ""
