"""Wallet side: account files and the submit → wait-settled flow, shared by ``pay``, the demo and bench.

An account file is JSON ``{"address": hex, "spending_key": hex, "public": hex}`` (written by
``p2pnode testnet`` with mode 0600). Given the account file, :func:`pay` also keeps the wallet's lock
and state file (:mod:`p2pnode.cli.wallet_state`), so that the wallet never signs two orders for one seq.

Error handling: every wait is bounded by one :class:`~p2pnode.cli.failures.Budget`. A refusal is a
:class:`~p2pnode.cli.failures.Refused` (PaymentRefused, SlotBlocked, NotSettled once an order was
accepted, WalletBusy); a silent node before that is NodeTimeout; a broken connection ConnectionLost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2pnode.cli.failures import (
    Budget,
    NotSettled,
    PaymentRefused,
    Refused,
    SlotBlocked,
    as_budget,
)
from p2pnode.cli.wallet_state import (
    SHIELDED,
    TRANSFER,
    Pending,
    WalletState,
    account_lock,
    load_state,
    save_state,
)
from p2pnode.config import parse_hostport
from p2pnode.core.payments import make_order, transfer_digest
from p2pnode.crypto import SpendingKey, address_of
from p2pnode.errors import DecodeError, LocalError, P2PNodeError
from p2pnode.net.client import Client
from p2pnode.wire.messages import (
    SHIELD,
    AccountReply,
    GetAccount,
    Message,
    Order,
    SettledReply,
    ShieldedOrder,
    StatusReply,
    StatusRequest,
    SubmitOrder,
    SubmitReply,
    SubmitShielded,
    WaitSettled,
    decode,
)
from p2pnode.wire.types import Address, Digest

__all__ = ["PaymentRefused", "PayResult", "chain_id_of_node", "connect", "load_account", "pay"]

Notify = Callable[[str], None]


def load_account(path: Path) -> SpendingKey:
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
    """A 40-hex-char address, or an account file whose address is used."""
    return hex_or_account(text, 20, lambda key: address_of(key.public), "20-byte hex address", option)


@dataclass(frozen=True, slots=True)
class PayResult:
    digest: bytes
    seconds: float
    balance: int
    seq: int
    root: bytes
    completed: tuple[int, bytes] | None = None  # (seq, digest) of an earlier pending payment finished first


# -- blocked slots -------------------------------------------------------------------------------------
def _voters(votes: Any) -> list[str]:
    """Voter id prefixes as a list: the documented list of hex prefixes, a comma-separated string of
    them, or a bare vote count (shown as that many unnamed voters)."""
    if isinstance(votes, list | tuple):
        return [str(v) for v in votes]
    if isinstance(votes, str):
        return [v.strip() for v in votes.split(",") if v.strip()]
    if isinstance(votes, int) and not isinstance(votes, bool) and 0 <= votes <= 1024:
        return ["?"] * votes
    return []


def slot_orders(slot: dict[str, Any]) -> dict[str, list[str]]:
    """A ``blocked_slots`` entry's conflicting orders: digest hex -> voter id prefixes.

    The node reports ``orders`` (digest -> vote count) and ``voters`` (digest -> comma-separated id
    prefixes); see ``BlockedSlot.as_dict``."""
    orders = slot.get("orders") or {}
    voters = slot.get("voters") or {}
    if not isinstance(orders, dict):
        return {}
    if isinstance(voters, dict):
        return {str(d): _voters(voters.get(d, v)) for d, v in orders.items()}
    return {str(d): _voters(v) for d, v in orders.items()}


def blocked_orders(info: dict[str, Any], sender: bytes, seq: int) -> dict[str, list[str]]:
    """The conflicting orders of slot (sender, seq) from a status map: digest hex -> voter id prefixes."""
    for slot in info.get("blocked_slots") or []:
        if isinstance(slot, dict) and str(slot.get("sender", "")).lower() == sender.hex():
            if slot.get("seq") == seq:
                return slot_orders(slot)
    return {}


def describe_blocked(sender: bytes, seq: int, reason: str, orders: dict[str, list[str]]) -> str:
    """One line: the account, the seq, the conflicting orders with their vote counts, the reason."""
    text = f"account {sender.hex()} seq {seq} is blocked"
    if orders:
        listed = ", ".join(
            f"{d[:16]} ({len(v)} vote{'s' if len(v) != 1 else ''})"
            for d, v in sorted(orders.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        )
        text += f": conflicting orders {listed}"
    reason = reason.removeprefix("blocked:").strip()
    return f"{text}; {reason}" if reason else text


async def blocked_error(client: Client, sender: bytes, seq: int, reason: str) -> SlotBlocked:
    """A SlotBlocked naming the conflicting orders the node reports (just ``reason`` if it reports none)."""
    orders: dict[str, list[str]] = {}
    try:
        status = await client.call_expect(StatusRequest(), StatusReply)
        orders = blocked_orders(status.info, sender, seq)
    except P2PNodeError:
        pass  # the account reply's reason alone still says what is wrong
    return SlotBlocked(
        describe_blocked(sender, seq, reason, orders),
        account=sender.hex(),
        seq=seq,
        blocked=reason,
        orders=orders,
    )


# -- requests under a budget ---------------------------------------------------------------------------
async def connect(node: str, budget: Budget | None = None) -> Client:
    host, port = parse_hostport(node, key="--node")
    if budget is None:
        return await Client.connect(host, port)
    with budget.waiting(f"connection to {node}"):
        return await Client.connect(host, port)


async def chain_id_of_node(client: Client, budget: Budget | None = None) -> bytes:
    budget = budget or Budget.start(30.0)
    with budget.waiting(f"status reply from {client.name}"):
        status = await client.call_expect(StatusRequest(), StatusReply)
        try:
            return bytes.fromhex(str(status.info["chain_id"]))
        except (KeyError, ValueError):
            raise P2PNodeError(f"{client.name}: its status names no chain id") from None


async def get_account(client: Client, address: bytes, budget: Budget) -> AccountReply:
    with budget.waiting(f"account reply from {client.name}"):
        return await client.call_expect(GetAccount(address=Address(address)), AccountReply)


async def open_account(client: Client, address: bytes, budget: Budget) -> AccountReply:
    """The account, or SlotBlocked if its next seq can never settle."""
    acct = await get_account(client, address, budget)
    if acct.blocked:
        with budget.waiting(f"status reply from {client.name}"):
            raise await blocked_error(client, address, acct.next_seq, acct.blocked)
    return acct


def _slot_of(request: Message) -> tuple[bytes, int] | None:
    """The (account, seq) an order consumes, if it consumes one."""
    if isinstance(request, SubmitOrder):
        return request.order.transfer.sender, request.order.transfer.seq
    if isinstance(request, SubmitShielded) and request.order.tx.kind == SHIELD:
        return request.order.tx.account, request.order.tx.seq
    return None


async def submit_and_wait(client: Client, request: Message, digest: bytes, timeout: float | Budget) -> float:
    """Submit (SubmitOrder or SubmitShielded), then wait until the node has applied the payment.
    Returns the seconds it took. Raises PaymentRefused with the node's reason, SlotBlocked as soon as
    the node says the payment's slot is blocked, NotSettled when the budget runs out after the node
    accepted the order (NodeTimeout before)."""
    budget = as_budget(timeout)
    slot = _slot_of(request)
    start = time.perf_counter()
    with budget.waiting(f"reply to the order from {client.name}"):
        reply = await client.call_expect(request, SubmitReply)
        if not reply.accepted:
            if reply.error.startswith("blocked") and slot is not None:
                raise await blocked_error(client, slot[0], slot[1], reply.error)
            raise PaymentRefused(reply.error)
    not_settled = (
        f"not settled within {{seconds}}s: tx {digest.hex()} was accepted by {client.name} "
        "and may still settle (the wallet completes it next time)"
    )
    with budget.waiting("settlement", NotSettled, not_settled, tx=digest.hex()):
        while True:
            wait = WaitSettled(digest=Digest(digest), wait_ms=budget.remaining_ms(1000))
            settled = await client.call_expect(wait, SettledReply)
            if settled.blocked:
                if slot is None:
                    raise SlotBlocked(f"tx {digest.hex()} can never settle: {settled.blocked}")
                raise await blocked_error(client, slot[0], slot[1], settled.blocked)
            if settled.settled:
                return time.perf_counter() - start


async def settled_root(client: Client, digest: bytes, budget: Budget) -> bytes:
    with budget.waiting(f"settled reply from {client.name}"):
        return (await client.call_expect(WaitSettled(digest=Digest(digest), wait_ms=0), SettledReply)).root


# -- the wallet's own pending order ----------------------------------------------------------------------
def decode_pending(p: Pending) -> SubmitOrder | SubmitShielded:
    try:
        if p.kind == TRANSFER:
            return SubmitOrder(order=decode(p.order, expect=Order))
        if p.kind == SHIELDED:
            return SubmitShielded(order=decode(p.order, expect=ShieldedOrder))
    except DecodeError as exc:
        raise LocalError(f"the wallet state's pending order does not decode: {exc}") from None
    raise LocalError(f"the wallet state's pending order has an unknown kind {p.kind!r}")


async def complete_pending(
    client: Client,
    account_file: Path,
    state: WalletState,
    node_next_seq: int,
    budget: Budget,
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
    if p.seq is not None and p.seq < node_next_seq:
        done = state.settled(node_next_seq)
        save_state(account_file, done)
        return done, None
    if p.seq is None and await _applied(client, p.digest, budget):
        done = state.settled(node_next_seq)
        save_state(account_file, done)
        return done, None
    label = f"seq {p.seq}" if p.seq is not None else "shielded spend"
    if notify is not None:
        notify(f"completing the earlier payment {label} (tx {p.digest.hex()}) first")
    request = decode_pending(p)
    try:
        await submit_and_wait(client, request, p.digest, budget)
    except PaymentRefused as exc:
        raise PaymentRefused(
            f"the earlier payment {label} (tx {p.digest.hex()[:16]}) is still pending and was refused: {exc}",
            tx=p.digest.hex(),
        ) from None
    done = state.settled(node_next_seq if p.seq is None else max(node_next_seq, p.seq + 1))
    save_state(account_file, done)
    return done, (p.seq if p.seq is not None else -1, p.digest)


async def _applied(client: Client, digest: bytes, budget: Budget) -> bool:
    with budget.waiting(f"settled reply from {client.name}"):
        reply = await client.call_expect(WaitSettled(digest=Digest(digest), wait_ms=0), SettledReply)
        return reply.settled


async def submit_recorded(
    client: Client,
    account_file: Path | None,
    state: WalletState,
    pending: Pending,
    budget: Budget,
) -> tuple[WalletState, float]:
    """Write ``pending`` into the state file, then submit it and wait until it settles.

    An explicit refusal of this first submission clears the pending entry again (a node refuses an
    order before it relays it, so nobody holds a vote for it); anything else (a timeout, a lost
    connection, a crash) leaves it pending for the next command to complete."""
    if account_file is not None:
        save_state(
            account_file, WalletState(chain_id=state.chain_id, next_seq=state.next_seq, pending=pending)
        )
    try:
        seconds = await submit_and_wait(client, decode_pending(pending), pending.digest, budget)
    except Refused as exc:
        if account_file is not None and isinstance(exc, PaymentRefused):
            save_state(account_file, state)
        raise
    after = state.settled(state.next_seq if pending.seq is None else pending.seq + 1)
    if account_file is not None:
        save_state(account_file, after)
    return after, seconds


# -- pay ---------------------------------------------------------------------------------------------
async def pay(
    client: Client,
    key: SpendingKey,
    chain_id: bytes,
    to: bytes,
    amount: int,
    timeout: float | Budget,
    *,
    account_file: Path | None = None,
    notify: Notify | None = None,
) -> PayResult:
    """Build and prove the next transfer of ``key``'s account, submit it, and wait until it settles
    at this node. ``timeout`` (seconds or a Budget) bounds the whole call.

    With ``account_file`` the wallet holds the account's lock for the whole call, uses
    max(node's next seq, the seq it recorded), and first completes an order it left pending (see
    :func:`complete_pending`). Raises PaymentRefused, SlotBlocked, NotSettled, WalletBusy,
    NodeTimeout or ConnectionLost."""
    budget = as_budget(timeout)
    sender = address_of(key.public)
    if account_file is None:
        acct = await open_account(client, sender, budget)
        return await _pay_at(client, key, chain_id, to, amount, acct.next_seq, budget, None, WalletState())
    async with account_lock(account_file, budget):
        state = load_state(account_file).for_chain(chain_id)
        acct = await open_account(client, sender, budget)
        state, completed = await complete_pending(client, account_file, state, acct.next_seq, budget, notify)
        if completed is not None:
            acct = await open_account(client, sender, budget)
        seq = max(acct.next_seq, state.next_seq)
        result = await _pay_at(client, key, chain_id, to, amount, seq, budget, account_file, state)
        return PayResult(result.digest, result.seconds, result.balance, result.seq, result.root, completed)


async def _pay_at(
    client: Client,
    key: SpendingKey,
    chain_id: bytes,
    to: bytes,
    amount: int,
    seq: int,
    budget: Budget,
    account_file: Path | None,
    state: WalletState,
) -> PayResult:
    order = make_order(key, chain_id, to, amount, seq)
    digest = transfer_digest(order.transfer)
    pending = Pending(kind=TRANSFER, seq=seq, digest=digest, order=order.encode())
    _, seconds = await submit_recorded(client, account_file, state, pending, budget)
    root = await settled_root(client, digest, budget)
    after = await get_account(client, address_of(key.public), budget)
    return PayResult(digest, seconds, after.balance, seq, root)
