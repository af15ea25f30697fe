"""Per-peer link request limits (net/peers.py) and sync replies proportional to the request
(core/settlement.py heads_reply, the reply credit in core/node.py). Virtual clock, no sleeps."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import trio
import trio.testing

from p2pnode.config import NodeConfig, NodeSection
from p2pnode.core.budget import Budgets
from p2pnode.core.effects import Send
from p2pnode.core.node import CoreParams, NodeCore
from p2pnode.core.settlement import wire_size
from p2pnode.crypto import NodeKey, SpendingKey, address_of
from p2pnode.net.peers import AddressBook, PeerSet
from p2pnode.wire.messages import CertBatch, GetPeers, Peers, Ping, Pong, SyncHeads, SyncSummary
from p2pnode.wire.types import Address, ChainId, NodeId

CHAIN = ChainId(b"\x09" * 32)
VALIDATORS = [NodeKey.from_seed(bytes([i + 1]) * 32) for i in range(4)]
MEMBER = NodeId(VALIDATORS[1].public)
STRANGER = NodeId(NodeKey.from_seed(b"\x77" * 32).public)
ACCOUNTS = [Address(address_of(SpendingKey.from_bytes((i + 3).to_bytes(32, "big")).public)) for i in range(4)]
CERT = 550  # about a certificate's size


def core(history: int = 100) -> NodeCore:
    c = NodeCore(
        key=VALIDATORS[0],
        chain_id=CHAIN,
        validators=[k.public for k in VALIDATORS],
        balances={a: 10**6 for a in ACCOUNTS},
        params=CoreParams(sync_batch=64, sync_interval=1.0),
    )
    for a in ACCOUNTS:
        c.ledger.accounts[a].next_seq = history
        for s in range(history):
            c.certs[(a, s)] = bytes([s % 256]) * CERT
    return c


def sent(effects: list[Any]) -> list[Any]:
    return [e.msg for e in effects if isinstance(e, Send)]


def bytes_sent(effects: list[Any]) -> int:
    return sum(wire_size(m) for m in sent(effects))


def test_a_credit_bucket_starts_empty_and_is_filled_by_give_only() -> None:
    credit: Budgets[str] = Budgets(rate=0.0, burst=1000.0, empty=True)
    assert credit.available("a", 0.0) == 0
    credit.give("a", 0.0, 300)
    credit.give("a", 5.0, 900)
    assert credit.available("a", 9.0) == 1000  # capped at burst, no refill with time
    assert credit.take("a", 9.0, 400) == 400 and credit.available("a", 9.0) == 600


def test_an_empty_sync_request_buys_nothing() -> None:
    c = core()
    for i in range(50):
        assert sent(c.on_message(i * 0.001, STRANGER, SyncHeads(heads=(), reply=True))) == []


def test_a_strangers_request_buys_at_most_twice_its_bytes_and_the_rest_after_the_next() -> None:
    c = core()
    total_in = total_out = 0
    got: list[bytes] = []
    for i in range(40):
        # The requester names every account, the first at what it has received so far.
        ask = SyncHeads(
            heads=tuple((bytes(a), len(got) if a == ACCOUNTS[0] else 0) for a in ACCOUNTS), reply=False
        )
        total_in += wire_size(ask)
        effects = c.on_message(i * 0.1, STRANGER, ask)
        total_out += bytes_sent(effects)
        for m in sent(effects):
            assert isinstance(m, CertBatch)
            got += m.certs
        assert total_out <= 2 * total_in
    # Every request got what its credit covered, in seq order of the first named account.
    assert len(got) >= 8 and got == [c.certs[(ACCOUNTS[0], s)] for s in range(len(got))]


def test_only_named_accounts_are_answered() -> None:
    c = core(history=3)
    # A committee member is not bounded by bytes: it gets everything of what it names, nothing else.
    effects = c.on_message(0.0, MEMBER, SyncHeads(heads=((bytes(ACCOUNTS[1]), 1),), reply=False))
    (batch,) = sent(effects)
    assert batch.certs == (c.certs[(ACCOUNTS[1], 1)], c.certs[(ACCOUNTS[1], 2)])


def test_a_summary_from_a_stranger_buys_no_heads_until_it_paid_for_them() -> None:
    c = core(history=3)
    summary = SyncSummary(root=b"\x01" * 32, applied=10**6)
    answers = [sent(c.on_message(i * 1.0, STRANGER, summary)) for i in range(10)]
    out = sum(wire_size(m) for a in answers for m in a)
    assert out <= 2 * 10 * wire_size(summary)
    assert not answers[0]  # one summary does not pay for our heads
    # A committee member's summary is answered at once.
    assert sent(c.on_message(0.0, MEMBER, summary))


def test_sync_requests_beyond_the_rate_limit_penalize_the_peer() -> None:
    c = core(history=200)
    ask = SyncHeads(heads=((bytes(ACCOUNTS[0]), 0),), reply=False)
    reasons = []
    for i in range(40):
        reasons += [getattr(e, "reason", "") for e in c.on_message(i * 0.001, MEMBER, ask)]
    assert any(r.startswith("rate limited: SyncHeads") for r in reasons)
    assert c.sync_stats["rate_limited"] > 20


def peer_set(c: NodeCore, log: list[tuple[str, dict[str, Any]]]) -> PeerSet:
    cfg = NodeConfig(node=NodeSection(key_file=Path("k"), genesis=Path("g"), data_dir=Path("d")))

    class Log:
        def __getattr__(self, level: str) -> Any:
            return lambda event, **kw: log.append((event, kw))

    async def perform(effects: list[Any]) -> None:
        return None

    async def serve(conn: Any, first: Any) -> None:
        return None

    counters: dict[str, int] = {"send_dropped": 0}
    book = AddressBook(cfg, NodeId(VALIDATORS[0].public), c)
    return PeerSet(
        cfg=cfg,
        key=VALIDATORS[0],
        chain_id=CHAIN,
        role="validator",
        core=c,
        book=book,
        log=Log(),
        counters=counters,
        perform=perform,
        serve_client=serve,
    )


def test_link_requests_beyond_the_limit_are_not_answered_and_then_penalized() -> None:
    async def main() -> None:
        c = core(history=0)
        log: list[tuple[str, dict[str, Any]]] = []
        ps = peer_set(c, log)
        answered: list[Any] = []
        ps.send = lambda nid, msg: answered.append(msg)  # type: ignore[method-assign]
        penalized: list[str] = []
        ps.penalize = lambda nid, reason: penalized.append(reason)  # type: ignore[method-assign]
        peer: Any = SimpleNamespace(node_id=STRANGER)
        now = trio.current_time()
        results = [ps._link_allowed(peer, Ping(nonce=i), now) for i in range(20)]
        assert results == [True] * 8 + [False] * 12  # ping_burst = 8
        assert ps.counters["link_rate_limited"] == 12 and not penalized
        await trio.sleep(2.0)  # 2 pings regained at ping_rate 1/s; 2 strikes regained too
        assert [ps._link_allowed(peer, Ping(nonce=0), trio.current_time()) for _ in range(3)] == [
            True,
            True,
            False,
        ]
        for _ in range(20):
            ps._link_allowed(peer, GetPeers(), trio.current_time())
        assert penalized and penalized[0].startswith("rate limited: GetPeers beyond 0.5/s")
        # Pong answers are within the reply credit (a Ping pays for its Pong); a Peers list is
        # trimmed to what the stranger paid for.
        c.earn(trio.current_time(), STRANGER, wire_size(Ping(nonce=1)))
        ps._answer(peer, Pong(nonce=1), trio.current_time())
        assert answered == [Pong(nonce=1)]
        reply = ps._peers_reply(peer, trio.current_time())
        assert isinstance(reply, Peers)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
