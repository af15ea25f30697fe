"""A wallet: one account's key and, with an account file, its lock and state file; transparent payments.

An account file is JSON ``{"address": hex, "spending_key": hex, "public": hex}`` (written by
``p2pnode testnet`` with mode 0600). A :class:`Wallet` made from an account file keeps that file's lock
and state file (:mod:`p2pnode.client.state`), so that it never signs two orders for one seq: every
payment holds the lock from reading the account's seq until it settled, first completes an order the
wallet left pending, and uses max(the node's next seq, the seq it recorded). A wallet made from a key
alone keeps nothing between calls (tests, tools that own their accounts).

No function here takes a timeout: the caller bounds the whole operation, lock wait included, with
``trio.fail_after``, and reads ``client.progress`` after a ``TooSlowError`` to say which step it was
cut short in (an order that was accepted stays pending in the state file and is completed next time).

Error handling: :class:`~p2pnode.client.errors.PaymentRefused`, :class:`SlotBlocked` (with the
conflicting orders), :class:`ConnectionLost`, :class:`UnexpectedReply`, ``OSError`` from connecting;
``LocalError`` for an unreadable account or state file.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from p2pnode.client.client import Client, slot_blocked
from p2pnode.client.errors import PaymentRefused, Refused, SlotBlocked
from p2pnode.client.state import (
    SHIELDED,
    TRANSFER,
    Pending,
    WalletState,
    account_lock,
    load_state,
    save_state,
)
from p2pnode.client.status import AccountState, Receipt, Settlement
from p2pnode.core.payments import make_order, transfer_digest
from p2pnode.crypto import SpendingKey, address_of
from p2pnode.errors import DecodeError, LocalError
from p2pnode.wire.messages import Order, ShieldedOrder, decode

__all__ = [
    "Notify",
    "Wallet",
    "complete_pending",
    "hex_or_account",
    "load_account",
    "open_account",
    "parse_recipient",
    "pay",
    "submit_and_wait",
    "submit_recorded",
]

Notify = Callable[[str], None]


def load_account(path: Path) -> SpendingKey:
    """The spending key of an account file (LocalError if it is missing or not an account file)."""
    try:
        doc = json.loads(Path(path).read_text())
        key = SpendingKey.from_bytes(bytes.fromhex(doc["spending_key"]))
    except FileNotFoundError:
        raise LocalError(f"{path}: no such account file") from None
    except (ValueError, KeyError, TypeError):
        raise LocalError(f"{path}: not an account file (expected JSON with a hex spending_key)") from None
    return key


def hex_or_account(
    text: str, length: int, derive: Callable[[SpendingKey], bytes], what: str, option: str = "--to"
) -> bytes:
    """``length`` bytes given as hex, or derived from the account file at ``text``."""
    candidate = text.removeprefix("0x")
    if len(candidate) == 2 * length:
        try:
            return bytes.fromhex(candidate)
        except ValueError:
            pass
    path = Path(text)
    if path.exists():
        return derive(load_account(path))
    raise LocalError(f"{option}: {text!r} is neither a {what} nor an account file")


def parse_recipient(text: str, option: str = "--to") -> bytes:
    """A 40-hex-digit address, or an account file whose address is used."""
    return hex_or_account(text, 20, lambda key: address_of(key.public), "20-byte hex address", option)


class _Memory:
    """What a wallet without an account file remembers, for the life of the object: its state (the
    pending order and next seq) and a lock that serializes its payments within this process."""

    __slots__ = ("lock", "state")

    def __init__(self) -> None:
        self.lock = trio.Lock()
        self.state: WalletState | None = None


@dataclass(frozen=True, slots=True)
class Wallet:
    """One account: its key and, for a wallet made from an account file, that file (``path``).

    A wallet never signs two different orders for one seq: with an account file, the file's lock
    and state file carry that across processes; without one (``from_key``), the wallet object
    itself remembers, so one ``Wallet`` per account must be shared by everything that pays from it
    (``p2pnode.testing`` clusters do)."""

    key: SpendingKey
    address: bytes
    path: Path | None = None
    _memory: _Memory | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_file(cls, path: Path) -> Wallet:
        key = load_account(path)
        return cls(key, address_of(key.public), Path(path))

    @classmethod
    def from_key(cls, key: SpendingKey) -> Wallet:
        """A wallet that keeps its lock and state in memory (no files)."""
        return cls(key, address_of(key.public), None, _Memory())

    @contextlib.asynccontextmanager
    async def locked(self, client: Client) -> AsyncIterator[None]:
        """Hold the account's lock for the body: the account file's, or the in-memory one."""
        if self.path is None:
            if self._memory is None:
                yield
                return
            async with self._memory.lock:
                yield
            return
        async with account_lock(self.path, client.progress):
            yield

    def load_state(self, chain_id: bytes) -> WalletState:
        """What the wallet recorded about ``chain_id`` (a fresh state if nothing)."""
        if self.path is None:
            recorded = self._memory.state if self._memory is not None else None
            return recorded.for_chain(chain_id) if recorded is not None else WalletState(chain_id=chain_id)
        return load_state(self.path).for_chain(chain_id)

    def save_state(self, state: WalletState) -> None:
        if self.path is not None:
            save_state(self.path, state)
        elif self._memory is not None:
            self._memory.state = state


async def open_account(client: Client, address: bytes) -> AccountState:
    """The account, or SlotBlocked (naming the conflicting orders) if its next seq can never settle."""
    acct = await client.account(address)
    if acct.blocked:
        raise await slot_blocked(client, address, acct.next_seq, acct.blocked)
    return acct


def _slot_of(order: Order | ShieldedOrder, seq: int | None) -> tuple[bytes, int] | None:
    if isinstance(order, Order):
        return order.transfer.sender, order.transfer.seq
    return (order.tx.account, seq) if seq is not None else None


async def submit_and_wait(
    client: Client, order: Order | ShieldedOrder, digest: bytes, seq: int | None = None
) -> tuple[float, Settlement]:
    """Submit ``order``, then wait until the node has applied it; returns the seconds it took (on
    Trio's clock) and the settlement. Raises PaymentRefused with the node's reason, or SlotBlocked
    (naming the account and seq when the order consumes one) as soon as the node says so."""
    start = trio.current_time()
    await client.submit(order)
    try:
        settlement = await client.wait_settled(digest)
    except SlotBlocked as exc:
        slot = _slot_of(order, seq)
        if slot is None or "account" in exc.facts:
            raise
        raise await slot_blocked(
            client, slot[0], slot[1], str(exc.facts.get("blocked", exc)), tx=digest
        ) from None
    return trio.current_time() - start, settlement


def decode_pending(p: Pending) -> Order | ShieldedOrder:
    try:
        if p.kind == TRANSFER:
            return decode(p.order, expect=Order)  # type: ignore[no-any-return]
        if p.kind == SHIELDED:
            return decode(p.order, expect=ShieldedOrder)  # type: ignore[no-any-return]
    except DecodeError as exc:
        raise LocalError(f"the wallet state's pending order does not decode: {exc}") from None
    raise LocalError(f"the wallet state's pending order has an unknown kind {p.kind!r}")


async def complete_pending(
    client: Client,
    wallet: Wallet,
    state: WalletState,
    node_next_seq: int,
    notify: Notify | None = None,
) -> tuple[WalletState, tuple[int, bytes] | None]:
    """Finish what the wallet left pending before it signs anything new.

    A pending order the node has applied (its seq is below the node's next seq, or the node says it
    settled) is cleared. Otherwise exactly its recorded bytes are resubmitted and waited for; a refusal
    leaves it pending (another node may still hold a vote for it) and raises PaymentRefused.
    Returns the new state (saved) and the (seq, digest) of the order completed here, if any."""
    p = state.pending
    if p is None:
        return state.settled(node_next_seq), None
    if (p.seq is not None and p.seq < node_next_seq) or (
        p.seq is None and await client.settled(p.digest) is not None
    ):
        done = state.settled(node_next_seq)
        wallet.save_state(done)
        return done, None
    label = f"seq {p.seq}" if p.seq is not None else "shielded spend"
    if notify is not None:
        notify(f"completing the earlier payment {label} (tx {p.digest.hex()}) first")
    try:
        await submit_and_wait(client, decode_pending(p), p.digest, p.seq)
    except PaymentRefused as exc:
        raise PaymentRefused(
            f"the earlier payment {label} (tx {p.digest.hex()[:16]}) is still pending and was refused: {exc}",
            tx=p.digest.hex(),
        ) from None
    done = state.settled(node_next_seq if p.seq is None else max(node_next_seq, p.seq + 1))
    wallet.save_state(done)
    return done, (p.seq if p.seq is not None else -1, p.digest)


async def submit_recorded(
    client: Client, wallet: Wallet, state: WalletState, pending: Pending
) -> tuple[WalletState, float, Settlement]:
    """Write ``pending`` into the state file, then submit it and wait until it settles.

    An explicit refusal of this first submission clears the pending entry again (a node refuses an
    order before it relays it, so nobody holds a vote for it); anything else (a deadline, a lost
    connection, a crash) leaves it pending for the next command to complete."""
    wallet.save_state(WalletState(chain_id=state.chain_id, next_seq=state.next_seq, pending=pending))
    try:
        seconds, settlement = await submit_and_wait(
            client, decode_pending(pending), pending.digest, pending.seq
        )
    except Refused as exc:
        if isinstance(exc, PaymentRefused):
            wallet.save_state(state)
        raise
    after = state.settled(state.next_seq if pending.seq is None else pending.seq + 1)
    wallet.save_state(after)
    return after, seconds, settlement


async def pay(
    client: Client, wallet: Wallet, to: bytes, amount: int, *, notify: Notify | None = None
) -> Receipt:
    """Sign the next transfer of ``wallet``'s account, submit it and return once it settled at the
    node behind ``client``.

    With an account file the wallet holds its lock for the whole call, first completes an order it
    left pending (``notify`` hears about it; see :func:`complete_pending`), and uses max(the node's
    next seq, the seq it recorded). Raises PaymentRefused, SlotBlocked, ConnectionLost; bound it with
    ``trio.fail_after`` (then ``client.progress.current`` names the step that was cut short)."""
    chain_id = await client.chain_id()
    async with wallet.locked(client):
        state = wallet.load_state(chain_id)
        acct = await open_account(client, wallet.address)
        state, completed = await complete_pending(client, wallet, state, acct.next_seq, notify)
        if completed is not None:
            acct = await open_account(client, wallet.address)
        seq = max(acct.next_seq, state.next_seq)
        order = make_order(wallet.key, chain_id, to, amount, seq)
        digest = transfer_digest(order.transfer)
        pending = Pending(kind=TRANSFER, seq=seq, digest=digest, order=order.encode())
        _, seconds, settlement = await submit_recorded(client, wallet, state, pending)
        after = await client.account(wallet.address)
    return Receipt(
        tx=digest,
        seq=seq,
        settled=True,
        where=client.name,
        seconds=seconds,
        balance=after.balance,
        root=settlement.root,
        completed=completed,
    )
