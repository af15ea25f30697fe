"""The typed async client of a p2pnode node: requests, waiting for settlement, and a wallet.

    async with await open_client("127.0.0.1:7001") as client:
        status = await client.status()                  # NodeStatus
        wallet = Wallet.from_file(Path("account-0.json"))
        with trio.fail_after(30):                       # no timeout arguments: callers bound waits
            receipt = await pay(client, wallet, to, 100)

Layering: imports the wire types, the core's order builders and ``p2pnode.zk`` (for shielded
wallets); ``p2pnode.net`` only for the ``Transport`` type. The command line, the tools, the scenario
runner and the tests all talk to nodes through it; :meth:`Client.wait_settled` is the one loop that
waits for a payment to settle. The shielded operations (``shield``, ``zpay``, ``unshield``,
``notes``, ``open_prover``) import the prover only when used: ``from p2pnode.client import shield``
works, ``import p2pnode.client`` does not load ``p2pnode.zk``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from p2pnode.client.client import (
    Client,
    Requester,
    fetch_status,
    open_client,
    query_status,
    request,
    request_expect,
    slot_blocked,
    status_reply,
    wait_settled,
)
from p2pnode.client.errors import (
    ConnectionLost,
    InsufficientNotes,
    NodeTimeout,
    NotSettled,
    PaymentRefused,
    Refused,
    SlotBlocked,
    UnexpectedReply,
    UsageError,
    WalletBusy,
    check_amount,
)
from p2pnode.client.progress import Progress, Step
from p2pnode.client.status import (
    AccountState,
    BlockedSlotInfo,
    NodeStatus,
    PeerInfo,
    Receipt,
    Settlement,
    describe_blocked,
    jsonable,
)
from p2pnode.client.wallet import Wallet, load_account, parse_recipient, pay

if TYPE_CHECKING:
    from p2pnode.client.shielded import choose, my_notes, notes, open_prover, shield, unshield, zpay

__all__ = [
    "AccountState",
    "BlockedSlotInfo",
    "Client",
    "ConnectionLost",
    "InsufficientNotes",
    "NodeStatus",
    "NodeTimeout",
    "NotSettled",
    "PaymentRefused",
    "PeerInfo",
    "Progress",
    "Receipt",
    "Refused",
    "Requester",
    "Settlement",
    "SlotBlocked",
    "Step",
    "UnexpectedReply",
    "UsageError",
    "Wallet",
    "WalletBusy",
    "check_amount",
    "choose",
    "describe_blocked",
    "fetch_status",
    "jsonable",
    "load_account",
    "my_notes",
    "notes",
    "open_client",
    "open_prover",
    "parse_recipient",
    "pay",
    "query_status",
    "request",
    "request_expect",
    "status_reply",
    "shield",
    "slot_blocked",
    "unshield",
    "wait_settled",
    "zpay",
]

_SHIELDED = {"choose", "my_notes", "notes", "open_prover", "shield", "unshield", "zpay"}


def __getattr__(name: str) -> Any:
    if name in _SHIELDED:
        from p2pnode.client import shielded

        return getattr(shielded, name)
    raise AttributeError(f"module 'p2pnode.client' has no attribute {name!r}")
