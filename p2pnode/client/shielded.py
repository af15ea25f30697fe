"""The shielded pool from a wallet's side: shield, zpay, unshield, and finding the wallet's notes.

A wallet's shielded keys are derived from its spending key (:mod:`p2pnode.zk.notes`); proofs come
from one long-lived Node.js helper (:class:`p2pnode.zk.prover.Prover`, see :func:`open_prover`). Which
notes a wallet owns is found by scanning every shielded output the node has applied and opening the
memos addressed to it. Every spend holds the account file's lock (as a transparent payment does), so
that two spends from one wallet never pick the same notes, and records its order as pending first.

No function takes a timeout (callers use ``trio.fail_after``); a proof runs in a worker thread, which
a deadline cannot interrupt: it is noticed when the proof is done.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from p2pnode.client.client import Client
from p2pnode.client.errors import InsufficientNotes
from p2pnode.client.progress import PROVE
from p2pnode.client.state import SHIELDED, Pending, WalletState
from p2pnode.client.status import Receipt
from p2pnode.client.wallet import (
    Notify,
    Wallet,
    complete_pending,
    hex_or_account,
    open_account,
    submit_recorded,
)
from p2pnode.core.shielded import shielded_digest
from p2pnode.crypto import SpendingKey
from p2pnode.wire.messages import ShieldedOrder
from p2pnode.zk.notes import Note, ShieldedKeys, build_shield, build_transfer, build_unshield, scan
from p2pnode.zk.paths import ZkPaths
from p2pnode.zk.prover import Prover
from p2pnode.zk.setup import ensure_circuit_keys

__all__ = [
    "choose",
    "my_notes",
    "notes",
    "open_prover",
    "shield",
    "shielded_address",
    "shielded_keys",
    "unshield",
    "zpay",
]


def open_prover(zk: ZkPaths | None = None) -> Prover:
    """A prover with the circuit keys and toolchain of ``zk`` (default: found as the module
    :mod:`p2pnode.zk.paths` describes). Resource handling: use as a context manager."""
    return Prover.from_dir(ensure_circuit_keys(zk), zk)


def shielded_keys(key: SpendingKey, prover: Prover) -> ShieldedKeys:
    return ShieldedKeys.from_spending_key(key.to_bytes(), prover)


def shielded_address(text: str, prover: Prover, option: str = "--to") -> bytes:
    """A 128-hex-digit shielded address, or an account file (its derived address)."""
    return hex_or_account(
        text, 64, lambda key: shielded_keys(key, prover).address, "128-hex-digit shielded address", option
    )


async def my_notes(client: Client, prover: Prover, keys: ShieldedKeys) -> list[tuple[Note, bool]]:
    """The notes ``keys`` can open among the node's applied outputs, each with its spent flag."""
    outputs = await client.outputs()
    spent = {c: s for c, _, s in outputs}
    found = await trio.to_thread.run_sync(scan, prover, keys, [(c, m) for c, m, _ in outputs])
    return [(n, spent.get(n.commitment_bytes, False)) for n in found]


async def notes(client: Client, wallet: Wallet, prover: Prover) -> list[tuple[Note, bool]]:
    """The wallet's notes at the node behind ``client``, each with its spent flag."""
    return await my_notes(client, prover, shielded_keys(wallet.key, prover))


def choose(notes: list[tuple[Note, bool]], amount: int) -> list[Note]:
    """At most two unspent notes covering ``amount`` (largest first), or InsufficientNotes saying
    what there is."""
    unspent = sorted((n for n, s in notes if not s), key=lambda n: n.value, reverse=True)
    if not unspent:
        raise InsufficientNotes("insufficient notes: no unspent notes for this key (shield funds first)")
    picked = unspent[:2]
    if sum(n.value for n in picked) < amount:
        raise InsufficientNotes(
            f"insufficient notes: the two largest unspent notes hold {sum(n.value for n in picked)}, "
            f"amount {amount}"
        )
    if picked[0].value >= amount:
        return picked[:1]
    return picked


async def _prove(client: Client, build: Callable[[], ShieldedOrder]) -> tuple[ShieldedOrder, float]:
    with client.progress.step(PROVE, "proof"):
        t0 = trio.current_time()
        order = await trio.to_thread.run_sync(build)
        elapsed = trio.current_time() - t0
        await trio.lowlevel.checkpoint()  # a deadline that passed while proving names this step
        return order, elapsed


async def _submit(
    client: Client, wallet: Wallet, state: WalletState, order: ShieldedOrder, seq: int | None
) -> tuple[bytes, float, bytes]:
    digest = shielded_digest(order.tx)
    pending = Pending(kind=SHIELDED, seq=seq, digest=digest, order=order.encode())
    _, seconds, settlement = await submit_recorded(client, wallet, state, pending)
    return digest, seconds, settlement.root


async def shield(
    client: Client,
    wallet: Wallet,
    prover: Prover,
    amount: int,
    to: bytes | None = None,
    *,
    notify: Notify | None = None,
) -> Receipt:
    """Move ``amount`` from the wallet's transparent account into a note for ``to`` (a shielded
    address; default the wallet's own). The receipt's balance is the account's after it."""
    chain_id = await client.chain_id()
    keys = shielded_keys(wallet.key, prover)
    owner = to if to is not None else keys.address
    async with wallet.locked(client):
        state = wallet.load_state(chain_id)
        acct = await open_account(client, wallet.address)
        state, completed = await complete_pending(client, wallet, state, acct.next_seq, notify)
        if completed is not None:
            acct = await open_account(client, wallet.address)
        seq = max(acct.next_seq, state.next_seq)
        order, prove_s = await _prove(
            client, lambda: build_shield(prover, keys, wallet.key, chain_id, seq, amount, owner)
        )
        digest, seconds, root = await _submit(client, wallet, state, order, seq)
        after = await client.account(wallet.address)
    return Receipt(digest, seq, True, client.name, seconds, after.balance, root, completed, prove_s)


async def _spend(
    client: Client,
    wallet: Wallet,
    prover: Prover,
    amount: int,
    build: Callable[[ShieldedKeys, bytes, list[Note]], ShieldedOrder],
    balance_of: bytes,
    notify: Notify | None,
) -> Receipt:
    """Pick notes covering ``amount``, prove ``build(keys, chain_id, inputs)``, submit and wait; all
    under the account's lock."""
    chain_id = await client.chain_id()
    keys = shielded_keys(wallet.key, prover)
    async with wallet.locked(client):
        state = wallet.load_state(chain_id)
        acct = await client.account(wallet.address)
        state, completed = await complete_pending(client, wallet, state, acct.next_seq, notify)
        inputs = choose(await my_notes(client, prover, keys), amount)
        order, prove_s = await _prove(client, lambda: build(keys, chain_id, inputs))
        digest, seconds, root = await _submit(client, wallet, state, order, None)
        after = await client.account(balance_of)
    return Receipt(digest, -1, True, client.name, seconds, after.balance, root, completed, prove_s)


async def zpay(
    client: Client,
    wallet: Wallet,
    prover: Prover,
    to_zaddr: bytes,
    amount: int,
    *,
    notify: Notify | None = None,
) -> Receipt:
    """Pay ``amount`` from the wallet's notes to the shielded address ``to_zaddr``. The receipt's
    balance is the wallet's own transparent balance."""
    return await _spend(
        client,
        wallet,
        prover,
        amount,
        lambda keys, chain_id, inputs: build_transfer(prover, keys, chain_id, inputs, [(to_zaddr, amount)]),
        wallet.address,
        notify,
    )


async def unshield(
    client: Client,
    wallet: Wallet,
    prover: Prover,
    to_address: bytes,
    amount: int,
    *,
    notify: Notify | None = None,
) -> Receipt:
    """Pay ``amount`` from the wallet's notes to the transparent account ``to_address``. The
    receipt's balance is the recipient's after it."""
    return await _spend(
        client,
        wallet,
        prover,
        amount,
        lambda keys, chain_id, inputs: build_unshield(prover, keys, chain_id, inputs, to_address, amount),
        to_address,
        notify,
    )
