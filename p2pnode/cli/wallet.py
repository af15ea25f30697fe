"""Wallet side: account files and the submit → wait-settled flow, shared by ``pay``, the demo and bench.

An account file is JSON ``{"address": hex, "spending_key": hex, "public": hex}`` (written by
``p2pnode testnet`` with mode 0600).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from p2pnode.config import parse_hostport
from p2pnode.core.payments import make_order, transfer_digest
from p2pnode.crypto import SpendingKey, address_of
from p2pnode.errors import LocalError, RemoteError
from p2pnode.net.client import Client
from p2pnode.wire.messages import (
    AccountReply,
    GetAccount,
    Message,
    SettledReply,
    StatusReply,
    StatusRequest,
    SubmitOrder,
    SubmitReply,
    WaitSettled,
)
from p2pnode.wire.types import Address, Digest


def load_account(path: Path) -> SpendingKey:
    try:
        doc = json.loads(Path(path).read_text())
        key = SpendingKey.from_bytes(bytes.fromhex(doc["spending_key"]))
    except FileNotFoundError:
        raise LocalError(f"{path}: no such account file") from None
    except (ValueError, KeyError, TypeError):
        raise LocalError(f"{path}: not an account file (expected JSON with a hex spending_key)") from None
    return key


def hex_or_account(text: str, length: int, derive: Callable[[SpendingKey], bytes], what: str) -> bytes:
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
    raise LocalError(f"--to: {text!r} is neither a {what} nor an account file")


def parse_recipient(text: str) -> bytes:
    """A 40-hex-char address, or an account file whose address is used."""
    return hex_or_account(text, 20, lambda key: address_of(key.public), "20-byte hex address")


class PaymentRefused(RemoteError):
    """The node refused the order; the message is the node's one-line reason."""


@dataclass(frozen=True, slots=True)
class PayResult:
    digest: bytes
    seconds: float
    balance: int
    seq: int
    root: bytes


async def pay(
    client: Client, key: SpendingKey, chain_id: bytes, to: bytes, amount: int, timeout: float
) -> PayResult:
    """Build and prove the next transfer of ``key``'s account, submit it, and wait until it settles
    at this node. Raises PaymentRefused with the node's reason, or trio.TooSlowError."""
    sender = Address(address_of(key.public))
    acct = await client.call(GetAccount(address=sender))
    assert isinstance(acct, AccountReply)
    order = make_order(key, chain_id, to, amount, acct.next_seq)
    digest = transfer_digest(order.transfer)
    seconds = await submit_and_wait(client, SubmitOrder(order=order), digest, timeout)
    settled = await client.call(WaitSettled(digest=digest, wait_ms=0))
    assert isinstance(settled, SettledReply)
    after = await client.call(GetAccount(address=sender))
    assert isinstance(after, AccountReply)
    return PayResult(digest, seconds, after.balance, order.transfer.seq, settled.root)


async def submit_and_wait(client: Client, request: Message, digest: bytes, timeout: float) -> float:
    """Submit (SubmitOrder or SubmitShielded), then wait until the node has applied the payment.
    Returns the seconds it took. Raises PaymentRefused with the node's reason, or trio.TooSlowError."""
    start = time.perf_counter()
    with trio.fail_after(timeout):
        reply = await client.call(request)
        assert isinstance(reply, SubmitReply)
        if not reply.accepted:
            raise PaymentRefused(reply.error)
        while True:
            settled = await client.call(WaitSettled(digest=Digest(digest), wait_ms=1000))
            assert isinstance(settled, SettledReply)
            if settled.settled:
                return time.perf_counter() - start


async def chain_id_of_node(client: Client) -> bytes:
    status = await client.call(StatusRequest())
    assert isinstance(status, StatusReply)
    return bytes.fromhex(status.info["chain_id"])


async def connect(node: str) -> Client:
    host, port = parse_hostport(node, key="--node")
    return await Client.connect(host, port)
