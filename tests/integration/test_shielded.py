"""Shielded payments on the in-memory network: real Groth16 proofs from the circuit's prover.

Proofs are made before the virtual-clock run where possible (the prover is a Node.js process; a
blocking call inside the run does not advance virtual time, so timeouts are unaffected either way).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import trio

from p2pnode.core.shielded import shielded_digest
from p2pnode.crypto import address_of
from p2pnode.testing import MemoryCluster, open_memory_cluster, planned
from p2pnode.wire.messages import (
    AccountReply,
    GetAccount,
    ShieldedOrder,
    SubmitReply,
    SubmitShielded,
    WaitSettled,
)
from p2pnode.wire.types import Address
from p2pnode.zk.paths import find_zk_paths

BALANCE = 1_000_000

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (find_zk_paths().node_modules / ".bin" / "snarkjs").exists(),
    reason="needs Node.js and node_modules (make installs them)",
)


@pytest.fixture(scope="module")
def zk() -> Iterator[tuple[object, str]]:
    from p2pnode.zk.prover import Prover
    from p2pnode.zk.setup import ensure_circuit_keys

    keys_dir = ensure_circuit_keys()
    vk = (keys_dir / "verification_key.json").read_text()
    with Prover.from_dir(keys_dir) as prover:
        yield prover, vk


async def submit(c: MemoryCluster, node: int, order: ShieldedOrder) -> SubmitReply:
    reply = await c.call(node, SubmitShielded(order=order))
    assert isinstance(reply, SubmitReply)
    return reply


async def settled_everywhere(c: MemoryCluster, order: ShieldedOrder) -> None:
    digest = shielded_digest(order.tx)
    for node in c.nodes:
        reply = await c.call(node, WaitSettled(digest=digest, wait_ms=60_000))
        assert reply.settled  # type: ignore[attr-defined]


async def test_shield_transfer_unshield_and_double_spend(
    zk: tuple[object, str], autojump_clock: trio.abc.Clock
) -> None:
    from p2pnode.zk.notes import ShieldedKeys, build_shield, build_transfer, build_unshield, scan, tx_outputs

    prover, vk = zk
    chain_id, accounts = planned(
        validators=4, full_nodes=1, accounts=3, seed=1, balance=BALANCE, shielded_vk=vk
    )
    alice = ShieldedKeys.from_spending_key(accounts[0].to_bytes(), prover)  # type: ignore[arg-type]
    bob = ShieldedKeys.from_spending_key(accounts[1].to_bytes(), prover)  # type: ignore[arg-type]
    shields = [build_shield(prover, alice, accounts[0], chain_id, seq, 1000) for seq in (0, 1)]  # type: ignore[arg-type]
    (note_a,) = scan(prover, alice, tx_outputs(shields[0].tx))  # type: ignore[arg-type]
    (note_b,) = scan(prover, alice, tx_outputs(shields[1].tx))  # type: ignore[arg-type]
    pay_bob = build_transfer(prover, alice, chain_id, [note_a], [(bob.address, 300)])  # type: ignore[arg-type]
    spend_1 = build_transfer(prover, alice, chain_id, [note_b], [(bob.address, 10)])  # type: ignore[arg-type]
    spend_2 = build_transfer(prover, alice, chain_id, [note_b], [(bob.address, 20)])  # type: ignore[arg-type]
    (bob_note,) = scan(prover, bob, tx_outputs(pay_bob.tx))  # type: ignore[arg-type]
    assert bob_note.value == 300
    unshield = build_unshield(prover, bob, chain_id, [bob_note], address_of(accounts[2].public), 100)  # type: ignore[arg-type]

    async with open_memory_cluster(
        validators=4, full_nodes=1, accounts=3, seed=1, balance=BALANCE, shielded_vk=vk, bootstrap_all=False
    ) as c:
        assert c.chain_id == chain_id
        await c.wait_ready(peers=3)
        for order in shields:
            assert (await submit(c, 4, order)).accepted
        await settled_everywhere(c, shields[1])
        # Shielded transfer and unshield settle on every node; roots agree.
        assert (await submit(c, 1, pay_bob)).accepted
        await settled_everywhere(c, pay_bob)
        assert (await submit(c, 2, unshield)).accepted
        await settled_everywhere(c, unshield)
        await c.wait_converged()
        reply = await c.call(0, GetAccount(address=Address(address_of(accounts[2].public))))
        assert isinstance(reply, AccountReply) and reply.balance == BALANCE + 100
        alice_acct = await c.call(3, GetAccount(address=Address(address_of(accounts[0].public))))
        assert isinstance(alice_acct, AccountReply) and alice_acct.balance == BALANCE - 2000
        # A spent note is refused at submission, with the reason.
        again = await submit(c, 1, pay_bob)
        assert again.accepted  # the same statement again: already settled, acknowledged as such
        replay = build_transfer(prover, alice, chain_id, [note_a], [(bob.address, 1)])  # type: ignore[arg-type]
        refused = await submit(c, 3, replay)
        assert not refused.accepted and "spent" in refused.error
        # One note spent by two statements at once, through different validators: at most one
        # certificate ever (the note may stay locked with neither: safe, and said plainly).
        async with trio.open_nursery() as n:
            n.start_soon(submit, c, 0, spend_1)
            n.start_soon(submit, c, 3, spend_2)
        await trio.sleep(5)
        both = {shielded_digest(spend_1.tx), shielded_digest(spend_2.tx)}
        cores = [c.driver(n).core for n in c.nodes]
        for core in cores:
            assert len((core.settled | set(core.certified)) & both) <= 1
        await c.wait_converged()
        assert len({len(core.ledger.notes) for core in cores}) == 1


async def test_shielded_orders_mid_quorum_settle_after_every_validator_restarts(
    zk: tuple[object, str], autojump_clock: trio.abc.Clock
) -> None:
    """A shield (locks (account, seq)) and a note transfer (locks its input note) reach only
    validators 0 and 1, which lock and vote; then every validator restarts and the partition heals.
    Both settle everywhere: the restarted validators vote again for the orders they locked."""
    from p2pnode.zk.notes import ShieldedKeys, build_shield, build_transfer, scan, tx_outputs

    prover, vk = zk
    chain_id, accounts = planned(validators=4, accounts=3, seed=1, balance=BALANCE, shielded_vk=vk)
    alice = ShieldedKeys.from_spending_key(accounts[0].to_bytes(), prover)  # type: ignore[arg-type]
    bob = ShieldedKeys.from_spending_key(accounts[1].to_bytes(), prover)  # type: ignore[arg-type]
    first = build_shield(prover, alice, accounts[0], chain_id, 0, 500)  # type: ignore[arg-type]
    second = build_shield(prover, alice, accounts[0], chain_id, 1, 700)  # type: ignore[arg-type]
    (note,) = scan(prover, alice, tx_outputs(first.tx))  # type: ignore[arg-type]
    spend = build_transfer(prover, alice, chain_id, [note], [(bob.address, 200)])  # type: ignore[arg-type]

    async with open_memory_cluster(
        validators=4, accounts=3, seed=1, balance=BALANCE, shielded_vk=vk, bootstrap_all=True
    ) as c:
        assert c.chain_id == chain_id
        await c.wait_ready(peers=3)
        assert (await submit(c, 2, first)).accepted
        await settled_everywhere(c, first)
        await c.partition((0, 1), (2, 3))
        mid = [second, spend]
        for order in mid:
            assert (await submit(c, 0, order)).accepted
        digests = [shielded_digest(o.tx) for o in mid]
        while not all(d in c.driver(i).core.validator.durable for i in (0, 1) for d in digests):  # type: ignore[union-attr]
            await trio.sleep(0.01)
        await trio.sleep(2)
        assert not any(d in c.driver(n).core.settled for n in c.nodes for d in digests)
        for i in (0, 1, 2, 3):
            await c.kill(i)
        await c.heal()
        for i in (0, 1, 2, 3):  # all at once: none waits for peers that are still down
            await c.start(i)
        with trio.fail_after(60):
            for order in mid:
                await settled_everywhere(c, order)
            await c.wait_converged()
        assert all(len(c.driver(n).core.settled) == 3 for n in c.nodes)
