"""The simulator: the real ``NodeCore`` of every node, in one process, on a virtual clock.

What is real and what is modelled (``docs/simulator.md`` has the whole argument):

- **Real**: every node's :class:`~p2pnode.core.node.NodeCore` (gossip routing, votes, certificates,
  settlement, anti-entropy, budgets) and the messages it produces, encoded to count their bytes; the
  orders, proofs and signatures (each distinct proof and signature is checked once per process, and its
  result shared by every node that checks it).
- **Modelled**: time. A discrete-event loop (a heap of (time, sequence number, action)) holds the clock.
  Each node is a single server: a FIFO of jobs (a frame that arrived, a client's order, a verifier batch,
  a commit's follow-up, a heartbeat) served one at a time; a job's handler runs when the job starts, and
  its cost (:class:`~p2pnode.sim.costs.CostTable`: the handler's kind, the crypto it did, the frames and
  messages it sent, the log lines it wrote) is how long the node stays busy before the job's effects
  leave. With ``cores`` set, the nodes also share that many cores (a local cluster on one machine):
  a node with work waits for a free core, first come first served. A node's store is a second server
  (the store thread): a group commit of everything queued takes ``commit + n * commit_write``.
- **Links**: :class:`p2pnode.net.linkmodel.LinkState`, the same model real clusters run on Trio's clock,
  one per direction of each connection, with a seeded random stream each.

Not modelled: handshakes and peer exchange (connections exist from time 0; each node is told its
peers' neighbours, as peer exchange would), keepalives, the client's own link (the client sits next to
the node it pays through, as ``p2pnode bench`` does on loopback), shielded payments, crashes.

Determinism: one ``random.Random`` per purpose, all derived from ``seed``; the heap breaks ties by
insertion order; nothing reads the wall clock. The same arguments give byte-identical logs.
"""

from __future__ import annotations

import gc
import heapq
import json
import random
import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from p2pnode.config import NodeConfig, config_from_dict
from p2pnode.core.budget import VerifyQueue
from p2pnode.core.effects import (
    Effect,
    Emit,
    OrderOutcome,
    PersistApplied,
    PersistLock,
    Send,
    Settled,
    VerifyProofs,
)
from p2pnode.core.gossip import ANY, CERT, ORDER, VOTE
from p2pnode.core.node import NodeCore
from p2pnode.core.payments import make_order, statement_digest
from p2pnode.core.settlement import FRAME_HEADER, wire_size
from p2pnode.core.validator import Validator
from p2pnode.crypto import NodeKey, SpendingKey, address_of, ed25519_verify
from p2pnode.genesis import Genesis
from p2pnode.net.interpreter import verify_item
from p2pnode.net.linkmodel import LinkState, NetworkProfile
from p2pnode.net.node import core_params
from p2pnode.net.verifier import verify_batch
from p2pnode.sim.costs import CostTable
from p2pnode.testing.memory import make_genesis
from p2pnode.tools.stats import Stats
from p2pnode.wire.messages import Gossip, IHave, IWant, Message, Order, decode
from p2pnode.wire.types import Digest, NodeId

BUNDLE_OVERHEAD = 8  # bytes a frame of several messages adds (tag, list header), as the peer writer packs
WARMUP_S = 1.0  # virtual seconds between time 0 (connections up) and the first payment
DRAIN_S = 30.0  # after the last payment settles everywhere, stop; or this long after the last send


@dataclass(frozen=True, kw_only=True)
class SimSpec:
    nodes: int = 16
    validators: int = 4
    full_degree: int = 8  # connections each full node dials (validators also form a full mesh)
    payments: int = 200
    rate: float | None = 10.0  # open loop (payments per second); None: closed loop with ``window``
    window: int = 64
    accounts: int = 64
    seed: int = 0
    cores: int | None = None  # None: every node has a core of its own (a real network)
    config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # node config sections
    timeout_s: float = 600.0  # virtual seconds after the last send before giving up


def sim_config(sections: Mapping[str, Mapping[str, Any]]) -> NodeConfig:
    """A node config with the production defaults (``configs/defaults.toml``) and ``sections`` on top;
    the simulator reads the core's parameters, the heartbeat and the verifier's batch sizes from it."""
    data: dict[str, Any] = {"node": {"key_file": "k", "genesis": "g", "data_dir": "d"}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return config_from_dict(data, Path("."))


@dataclass
class _Write:
    write: PersistLock | PersistApplied
    done: bool = False
    then: list[Callable[[], None]] = field(default_factory=list)


class _CountingValidator(Validator):
    """A validator that counts its signatures (charged as ``ed25519_sign`` each)."""

    signatures = 0

    def _sign(self, batch_root: bytes) -> bytes:
        self.signatures += 1
        return super()._sign(batch_root)


class Shared:
    """Crypto results shared by all nodes of the process: each distinct check is computed once."""

    def __init__(self) -> None:
        self.signatures: dict[tuple[bytes, bytes, bytes], bool] = {}
        self.proofs: dict[tuple[Any, ...], bool] = {}
        self.decoded: dict[bytes, Any] = {}
        self.real_s = 0.0  # wall time spent on the real checks (calibration subtracts it)

    def ed25519(self, public: bytes, signature: bytes, message: bytes) -> bool:
        key = (public, signature, message)
        ok = self.signatures.get(key)
        if ok is None:
            t = time.thread_time()
            ok = self.signatures[key] = ed25519_verify(public, signature, message)
            self.real_s += time.thread_time() - t
        return ok

    def decode(self, data: bytes) -> Any:
        """One decoding per distinct payload (messages are frozen values); errors are not kept."""
        msg = self.decoded.get(data)
        if msg is None:
            msg = self.decoded[data] = decode(data)
            if len(self.decoded) > 200_000:
                self.decoded.clear()
        return msg

    def verify(self, items: list[tuple[Any, ...]]) -> list[bool]:
        todo = [it for it in items if it not in self.proofs]
        if todo:
            t = time.thread_time()
            results, _ = verify_batch(todo)
            self.real_s += time.thread_time() - t
            for it, ok in zip(todo, results, strict=True):
                self.proofs[it] = ok
        return [self.proofs[it] for it in items]


class _Continue:
    """A marker effect: perform the rest of an earlier effect list (after a validator's signing step)
    or run ``after`` (the verifier is free again). Never leaves the simulator."""

    def __init__(
        self,
        effects: Sequence[Step],
        start: int,
        tickets: dict[int, _Write],
        after: Callable[[], None] | None = None,
    ) -> None:
        self.effects, self.start, self.tickets, self.after = effects, start, tickets, after

    def node_perform(self, node: SimNode) -> None:
        if self.after is not None:
            self.after()
        elif self.start < len(self.effects):
            node.perform(self.effects, self.start, self.tickets)


Step = Effect | _Continue  # what a simulated job returns: the core's effects and the simulator's markers
Job = Callable[[], Sequence[Step]]


class SimNode:
    def __init__(
        self, sim: Simulation, index: int, name: str, role: str, key: NodeKey, core: NodeCore
    ) -> None:
        self.sim = sim
        self.index = index
        self.name = name
        self.role = role
        self.key = key
        self.core = core
        self.region = ""
        self.peers: dict[NodeId, SimNode] = {}
        self.links: dict[NodeId, LinkState] = {}  # this node -> peer
        self.jobs: deque[tuple[str, Job]] = deque()
        self.busy = False
        self.busy_until = 0.0  # the end of an effect-less job still running (see run_job)
        self.resume_pending = False
        self.waiting_core = False
        self.busy_s = 0.0
        self.verify_q: VerifyQueue[tuple[Digest, Any]] = VerifyQueue(batch_max=64, new_batch=4)
        self.verifying = False
        self.writes: deque[_Write] = deque()
        self.committing = False
        self.store_free_at = -1.0  # when the last commit ended (the store is idle since)
        self.woken = False
        self.wakes = 0  # jobs that arrived while the node was idle
        self.settle_waiters: dict[Digest, list[Callable[[], None]]] = {}
        self.outcome_waiters: dict[Digest, Callable[[OrderOutcome], None]] = {}
        self.log: list[str] = []
        self.log_head = {"node": name, "node_id": key.public.hex()[:16]}
        self.rx_messages = 0
        self.rx_frames = 0
        self.rx_bytes = 0
        self.tx_messages = 0
        self.tx_bytes = 0
        self.duplicates = 0
        self.peak_queue = 0
        self.kinds: dict[str, int] = {}
        self.measured: dict[str, list[float]] = {}
        self.service_rng = random.Random(f"sim-service-{sim.spec.seed}-{index}")
        v = core.validator
        self._signer = v if isinstance(v, _CountingValidator) else None
        self.tick_job: Job = lambda: core.tick(sim.now)
        self.next_tick: Callable[[], None] = lambda: sim._tick(self)

    # == the CPU ====================================================================================
    def add_job(self, kind: str, fn: Job) -> None:
        if not self.jobs and not self.busy and not self.waiting_core and self.sim.now >= self.busy_until:
            self.woken = True  # it arrives at an idle node: the job pays the wake-up (costs.wake)
        self.jobs.append((kind, fn))
        if len(self.jobs) > self.peak_queue:
            self.peak_queue = len(self.jobs)
        self.sim.kick(self)

    def run_job(self) -> float:
        """Run the next job's handler now; returns its cost and schedules its effects at the end."""
        kind, fn = self.jobs.popleft()
        sim = self.sim
        costs = sim.costs
        votes = self.core.votes
        checks = votes.checks
        signer = self._signer
        signs = signer.signatures if signer is not None else 0
        if sim.measure:
            t0 = time.thread_time()
            shared0 = sim.shared.real_s
        self._job_cost = 0.0
        effects = fn()
        cost = self._job_cost + costs.handler.get(kind, 0.0)
        if votes.checks != checks:
            cost += (votes.checks - checks) * costs.ed25519_verify
        if signer is not None and signer.signatures != signs:
            cost += (signer.signatures - signs) * costs.ed25519_sign
        if sim.measure and kind != "frame":  # a frame's messages are timed one by one (receive)
            real = time.thread_time() - t0 - (sim.shared.real_s - shared0)
            self.measured.setdefault(kind, []).append(real)
        if effects:
            cost += self._send_cost(effects)
        if self.woken:
            self.woken = False
            self.wakes += 1
            cost += costs.wake
        sigma = costs.service_sigma
        if sigma:  # service times vary (lognormal, mean 1): cache misses, the allocator, the OS
            cost *= self.service_rng.lognormvariate(-sigma * sigma / 2, sigma)
        self.busy_s += cost
        end = sim.now + cost
        if effects or sim.free_cores is not None:
            sim.at(end, partial(sim.job_done, self, effects))
        else:
            # Nothing leaves when it ends (a duplicate, an IHAVE of known ids, an idle heartbeat): no
            # event for its end; the node is busy until ``end`` and its next job starts then.
            self.busy = False
            self.busy_until = end
            if self.jobs:
                self.resume_at(end)
        return cost

    def resume_at(self, t: float) -> None:
        if not self.resume_pending:
            self.resume_pending = True
            self.sim.at(t, self._resume)

    def _resume(self) -> None:
        self.resume_pending = False
        self.sim.kick(self)

    _job_cost = 0.0

    def _send_cost(self, effects: Sequence[Step]) -> float:
        costs = self.sim.costs
        sends = 0
        frames = set()
        logs = 0
        for e in effects:
            t = type(e)
            if t is Send:
                sends += 1
                frames.add(e.peer)  # type: ignore[union-attr]
            elif t is Emit:
                logs += 1
        return sends * costs.tx_message + len(frames) * costs.tx_frame + logs * costs.log_line

    # == effects ====================================================================================
    def perform(
        self, effects: Sequence[Step], start: int = 0, tickets: dict[int, _Write] | None = None
    ) -> None:
        """Perform ``effects[start:]`` in order; a write holds back what follows it until its commit."""
        if not effects:
            return
        if tickets is None:
            tickets = {}
            for i, e in enumerate(effects):
                if type(e) is PersistLock or type(e) is PersistApplied:
                    w = _Write(e)
                    self.writes.append(w)
                    tickets[i] = w
            if tickets:
                self.sim.kick_store(self)
        out: dict[NodeId, list[Message]] = {}
        peers = self.peers
        for i in range(start, len(effects)):
            e = effects[i]
            t = type(e)
            if t is Send:
                if e.peer in peers:  # type: ignore[union-attr]
                    out.setdefault(e.peer, []).append(e.msg)  # type: ignore[union-attr]
            elif t is Emit:
                self.write_log(e.event, e.fields)  # type: ignore[union-attr]
            elif isinstance(e, VerifyProofs):
                for item in e.orders:
                    self.verify_q.push(self.core.verify_lane(self.sim.now, *item), item)
                self.kick_verifier()
            elif isinstance(e, (PersistLock, PersistApplied)):
                w = tickets[i]
                self._transmit(out)
                out = {}
                step = partial(self._after_write, e, effects, i + 1, tickets)
                if w.done:
                    step()
                else:
                    w.then.append(step)
                return
            elif isinstance(e, _Continue):
                self._transmit(out)
                out = {}
                e.node_perform(self)
            elif isinstance(e, Settled):
                for fn in self.settle_waiters.pop(e.digest, []):
                    fn()
            elif isinstance(e, OrderOutcome):
                waiter = self.outcome_waiters.pop(e.digest, None)
                if waiter is not None:
                    waiter(e)
        self._transmit(out)

    def _after_write(
        self,
        write: PersistLock | PersistApplied,
        effects: Sequence[Step],
        rest: int,
        tickets: dict[int, _Write],
    ) -> None:
        """``write``'s commit returned: a lock is signed for (a job: the signature costs CPU), then the
        effects after it go on; after an applied certificate they go on at once (the commit's own
        follow-up, making it visible, was a job already)."""
        if isinstance(write, PersistLock):
            digest = write.digest

            def signing() -> list[Step]:
                return [*self.core.on_lock_persisted(self.sim.now, digest), _Continue(effects, rest, tickets)]

            self.add_job("lock_persisted", signing)
        else:
            self.perform(effects, rest, tickets)

    def _transmit(self, out: dict[NodeId, list[Message]]) -> None:
        sim = self.sim
        for peer, msgs in out.items():
            size = sum(_size(m) for m in msgs) + (BUNDLE_OVERHEAD if len(msgs) > 1 else 0)
            self.tx_messages += len(msgs)
            self.tx_bytes += size
            due = self.links[peer].due(sim.now, size)
            target = self.peers[peer]
            sim.at(due, partial(target.receive, self.core.node_id, msgs, size))

    def receive(self, peer: NodeId, msgs: list[Message], size: int) -> None:
        self.rx_frames += 1
        self.rx_messages += len(msgs)
        self.rx_bytes += size
        self.add_job("frame", partial(self._handle_frame, peer, msgs))

    def _handle_frame(self, peer: NodeId, msgs: list[Message]) -> list[Step]:
        """A frame's messages, each handled by the core and charged by its kind (the first copy of a
        payload of some kind, a duplicate, an IHAVE, ...)."""
        sim = self.sim
        costs = sim.costs
        table = costs.handler
        now = sim.now
        core = self.core
        received = core.router.kinds_received
        kinds = self.kinds
        measure = sim.measure
        effects: list[Step] = []
        cost = costs.rx_frame + len(msgs) * costs.rx_message
        for m in msgs:
            if measure:
                t0 = time.thread_time()
                shared0 = sim.shared.real_s
            if type(m) is Gossip:
                before = (received[ORDER], received[VOTE], received[CERT], received[ANY])
                effects += core.on_message(now, peer, m)
                if received[CERT] != before[2]:
                    name = "gossip_cert"
                elif received[VOTE] != before[1]:
                    name = "gossip_vote"
                elif received[ORDER] != before[0] or received[ANY] != before[3]:
                    name = "gossip_order"
                else:
                    self.duplicates += 1
                    name = "gossip_dup"
            else:
                effects += core.on_message(now, peer, m)
                name = _kind(m)
            kinds[name] = kinds.get(name, 0) + 1
            cost += table.get(name, 0.0)
            if measure:
                real = time.thread_time() - t0 - (sim.shared.real_s - shared0)
                self.measured.setdefault(name, []).append(real)
        self._job_cost = cost
        return effects

    def write_log(self, event: str, fields: Mapping[str, Any]) -> None:
        sim = self.sim
        if event == "certificate_applied":
            sim.on_applied(self, str(fields.get("tx", "")))
        if sim.log_dir is None:
            return
        line = {**self.log_head, **fields, "event": event, "level": "info", "ts_ns": int(sim.now * 1e9)}
        self.log.append(json.dumps(line, default=str))
        if len(self.log) >= 4096:
            sim.flush_log(self)

    # == the verifier and the store =================================================================
    def kick_verifier(self) -> None:
        if self.verifying or not self.verify_q:
            return
        self.verifying = True
        core = self.core

        def batch() -> list[Step]:
            now = self.sim.now
            _, items, _ = self.verify_q.take(
                lambda lane: core.lane_trust(now, lane),
                lambda i: core.still_wanted(*i),
                lambda i: core.verify_lane(now, *i),
            )
            if not items:
                return [_Continue([], 0, {}, after=self._verifier_idle)]
            work = [verify_item(d, o) for d, o in items]
            results = self.sim.shared.verify(work)
            self._job_cost = self.sim.costs.proofs(len(items))
            per = int(self._job_cost * 1e6) // len(items)
            effects = core.on_proofs_verified(
                now, [(d, o, ok, per, len(items)) for (d, o), ok in zip(items, results, strict=True)]
            )
            return [*effects, _Continue([], 0, {}, after=self._verifier_idle)]

        self.add_job("verified", batch)

    def _verifier_idle(self) -> None:
        self.verifying = False
        self.kick_verifier()


def _kind(m: Message) -> str:
    if isinstance(m, Gossip):
        return "gossip"
    if isinstance(m, IHave):
        return "ihave"
    if isinstance(m, IWant):
        return "iwant"
    return "sync"


def _size(m: Message) -> int:
    """``m``'s bytes on the wire (a gossip payload is not re-encoded to be measured)."""
    if type(m) is Gossip:
        return len(m.data) + 8 + FRAME_HEADER
    return wire_size(m)


@dataclass
class _Payment:
    index: int
    account: int
    node: int
    order: Order
    digest: Digest
    scheduled: float = 0.0
    sent: float = 0.0
    settled: float | None = None  # at the client's node (client view)
    refused: str = ""


class Simulation:
    def __init__(
        self,
        spec: SimSpec,
        profile: NetworkProfile,
        costs: CostTable,
        *,
        measure: bool = False,
        progress: Callable[[str], None] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        if not 1 <= spec.validators <= spec.nodes:
            raise ValueError("validators must be between 1 and the number of nodes")
        self.spec = spec
        self.profile = profile
        self.costs = costs
        self.measure = measure
        self.log_dir = log_dir  # one JSON log per node (docs/logs.md), ts_ns on the virtual clock
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            for i in range(spec.nodes):
                (log_dir / f"node-{i}.log").unlink(missing_ok=True)
        self.progress = progress or (lambda _: None)
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.shared = Shared()
        self.free_cores = spec.cores
        self._ready: deque[SimNode] = deque()
        rng = random.Random(f"sim-keys-{spec.seed}")
        keys = [NodeKey.from_seed(rng.randbytes(32)) for _ in range(spec.nodes)]
        accounts = [
            SpendingKey.from_bytes((rng.getrandbits(200) + 1).to_bytes(32, "big"))
            for _ in range(max(1, spec.accounts))
        ]
        self.genesis: Genesis = make_genesis(keys[: spec.validators], accounts, chain_name="sim")
        self.account_keys = accounts
        cfg = sim_config(spec.config)
        params = core_params(cfg)
        self.heartbeat = cfg.gossip.heartbeat_ms / 1000
        self.max_inbound = cfg.peers.max_inbound
        self.nodes: list[SimNode] = []
        for i, key in enumerate(keys):
            core = NodeCore(
                key=key,
                chain_id=self.genesis.chain_id,
                validators=[v.node_id for v in self.genesis.validators],
                balances=dict(self.genesis.balances),
                params=params,
                rng=random.Random(f"sim-node-{spec.seed}-{i}"),
                validator_factory=_CountingValidator,
                signature_verify=self.shared.ed25519,
                decoder=self.shared.decode,
            )
            role = "validator" if i < spec.validators else "full"
            node = SimNode(self, i, f"node-{i}", role, key, core)
            node.verify_q = VerifyQueue(batch_max=cfg.verify.batch_max, new_batch=cfg.verify.new_source_batch)
            self.nodes.append(node)
        for name, region in profile.place([n.name for n in self.nodes]).items():
            self.nodes[int(name.split("-")[1])].region = region
        self.edges = self._topology(random.Random(f"sim-topology-{spec.seed}"))
        self.applied: dict[str, list[float]] = {}  # tx hex -> times of first apply, per node
        self.payments: list[_Payment] = []
        self._prev: dict[int, _Payment] = {}  # each account's last payment sent
        self.done = 0
        self.everywhere = 0  # payments applied on every node
        self._refusals = 0
        self._dispatched = 0
        self.last_send = 0.0
        self.wall_s = 0.0

    # == the event loop =============================================================================
    def at(self, t: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (t, self._seq, fn))
        self._seq += 1

    def kick(self, node: SimNode) -> None:
        """Start ``node``'s next job if it is idle (and, with shared cores, a core is free and no node
        waits for one longer: first come, first served)."""
        if node.busy or node.waiting_core or not node.jobs:
            return
        if self.now < node.busy_until:
            node.resume_at(node.busy_until)
            return
        if self.free_cores is not None:
            if self.free_cores == 0 or self._ready:
                node.waiting_core = True
                self._ready.append(node)
                self._drain()
                return
            self.free_cores -= 1
        node.busy = True
        node.run_job()

    def _drain(self) -> None:
        while self.free_cores and self._ready:
            node = self._ready.popleft()
            node.waiting_core = False
            if node.busy or not node.jobs:
                continue
            self.free_cores -= 1
            node.busy = True
            node.run_job()

    def job_done(self, node: SimNode, effects: Sequence[Step]) -> None:
        node.busy = False
        if self.free_cores is not None:
            self.free_cores += 1
        node.perform(effects)
        self.kick(node)
        if self.free_cores is not None:
            self._drain()

    def kick_store(self, node: SimNode) -> None:
        if node.committing or not node.writes:
            return
        node.committing = True
        batch = list(node.writes)
        node.writes.clear()
        costs = self.costs
        idle = costs.commit_idle and self.now - node.store_free_at >= costs.store_idle_s
        duration = (costs.commit_idle if idle else costs.commit) + len(batch) * costs.commit_write
        sigma = self.costs.commit_sigma
        if sigma:
            duration *= node.service_rng.lognormvariate(-sigma * sigma / 2, sigma)

        def committed() -> None:
            node.committing = False
            node.store_free_at = self.now
            locks = [w.write.digest for w in batch if isinstance(w.write, PersistLock)]
            if locks:
                node.core.on_locks_committed(locks)
            applied = [w.write for w in batch if isinstance(w.write, PersistApplied)]

            def release() -> None:
                for w in batch:
                    w.done = True
                    for fn in w.then:
                        fn()
                    w.then.clear()

            if applied:
                node.add_job(
                    "durable",
                    lambda: [*node.core.on_durable(self.now, applied), _Continue([], 0, {}, after=release)],
                )
            else:
                release()
            self.kick_store(node)

        self.at(self.now + duration, committed)

    # == topology ===================================================================================
    def _topology(self, rng: random.Random) -> set[tuple[int, int]]:
        """Validators: a full mesh. Each full node dials ``full_degree`` distinct others as a node of
        ``p2pnode net up`` finds them: first the validator it bootstraps from (in turn, as ``p2pnode
        testnet`` assigns them), then the other validators (the first addresses its bootstrap's peer
        exchange tells it), then, at random, nodes that started before it; skipping nodes whose
        inbound slots (``peers.max_inbound``) are full, and taking any node with a free slot if those
        run out. A 16-node ``net up`` cluster forms that way: every full node ends up connected to
        three or four validators."""
        spec = self.spec
        edges: set[tuple[int, int]] = set()
        for a in range(spec.validators):
            for b in range(a + 1, spec.validators):
                edges.add((a, b))
        inbound = [0] * spec.nodes
        for a in range(spec.validators, spec.nodes):
            boot = (a - spec.validators) % spec.validators
            picked: list[int] = []
            for b in [boot, *(v for v in range(spec.validators) if v != boot)]:
                if len(picked) < spec.full_degree and inbound[b] < self.max_inbound:
                    picked.append(b)
            for pool in (range(a), range(spec.nodes)):
                want = spec.full_degree - len(picked)
                if want <= 0:
                    break
                free = [b for b in pool if b != a and b not in picked and inbound[b] < self.max_inbound]
                picked += rng.sample(free, min(want, len(free)))
            for b in picked:
                inbound[b] += 1
                edges.add((min(a, b), max(a, b)))
        link_rng = random.Random(f"sim-links-{spec.seed}")
        for a, b in sorted(edges):
            na, nb = self.nodes[a], self.nodes[b]
            na.peers[nb.core.node_id] = nb
            nb.peers[na.core.node_id] = na
            na.links[nb.core.node_id] = LinkState(
                self.profile.link(na.region, nb.region), random.Random(link_rng.random())
            )
            nb.links[na.core.node_id] = LinkState(
                self.profile.link(nb.region, na.region), random.Random(link_rng.random())
            )
        return edges

    def _connect_all(self) -> None:
        for node in self.nodes:
            for nid in node.peers:
                node.add_job("sync", partial(node.core.on_peer_connected, 0.0, nid))
        for node in self.nodes:
            for nid, peer in node.peers.items():
                node.core.on_peer_neighbors(nid, [p for p in peer.peers])

    def _tick(self, node: SimNode) -> None:
        node.add_job("tick", node.tick_job)
        if not self._finished():
            self.at(self.now + self.heartbeat, node.next_tick)

    # == the workload ===============================================================================
    def _plan(self) -> None:
        spec = self.spec
        chain = self.genesis.chain_id
        accts = self.account_keys
        seqs = [0] * len(accts)
        addresses = [address_of(k.public) for k in accts]
        self.progress(f"building {spec.payments} orders")
        for k in range(spec.payments):
            a = k % len(accts)
            order = make_order(accts[a], chain, addresses[(a + 1) % len(accts)], 1, seqs[a])
            seqs[a] += 1
            self.payments.append(_Payment(k, a, k % spec.nodes, order, statement_digest(order)))

    def _start_load(self) -> None:
        spec = self.spec
        lanes: dict[int, deque[_Payment]] = {}
        for p in self.payments:
            lanes.setdefault(p.account, deque()).append(p)
        self._lanes = lanes
        self._idle_lanes: deque[int] = deque(sorted(lanes))
        self._tokens: deque[float] = deque()
        start = self.now
        if spec.rate is not None:
            for k in range(len(self.payments)):
                self.at(start + k / spec.rate, partial(self._token, start + k / spec.rate))
        else:
            for _ in range(min(spec.window, len(self.payments))):
                self._token(self.now)

    def _token(self, due: float) -> None:
        self._tokens.append(due)
        self._dispatch()

    def _dispatch(self) -> None:
        while self._tokens and self._idle_lanes:
            lane = self._idle_lanes.popleft()
            if not self._lanes[lane]:
                continue
            due = self._tokens.popleft()
            p = self._lanes[lane].popleft()
            self._dispatched += 1
            p.scheduled = due
            self._submit(p)

    def _submit(self, p: _Payment) -> None:
        node = self.nodes[p.node]
        prev = self._prev.get(p.account)

        def send() -> None:
            p.sent = self.now
            self.last_send = self.now
            node.outcome_waiters[p.digest] = lambda e: self._outcome(p, e)
            node.add_job("submit", lambda: node.core.on_submit(self.now, p.order, ("client", p.account)))

        self._prev[p.account] = p
        if prev is not None and prev.node != p.node and prev.digest not in node.core.visible.settled:
            node.settle_waiters.setdefault(prev.digest, []).append(send)  # bench's extra WaitSettled
        else:
            send()

    def _outcome(self, p: _Payment, e: OrderOutcome) -> None:
        node = self.nodes[p.node]
        if not e.accepted:
            p.refused = e.error or "refused"
            self._refusals += 1
            self._finish_payment(p)
            return
        if p.digest in node.core.visible.settled:
            self._client_settled(p)
        else:
            node.settle_waiters.setdefault(p.digest, []).append(lambda: self._client_settled(p))

    def _client_settled(self, p: _Payment) -> None:
        node = self.nodes[p.node]

        def reply() -> list[Step]:
            p.settled = self.now
            return [_Continue([], 0, {}, after=lambda: self._finish_payment(p))]

        node.add_job("client_reply", reply)

    def _finish_payment(self, p: _Payment) -> None:
        self.done += 1
        if p.refused:
            self.done += len(self._lanes[p.account])  # as bench: a refusal stops its account's later ones
            self._lanes[p.account].clear()
        self._idle_lanes.append(p.account)
        if self.spec.rate is None and self._dispatched < len(self.payments):
            self._tokens.append(self.now)
        self._dispatch()

    def on_applied(self, node: SimNode, tx: str) -> None:
        times = self.applied.setdefault(tx, [])
        times.append(self.now)
        if len(times) == len(self.nodes):
            self.everywhere += 1

    def _finished(self) -> bool:
        if self.done < len(self.payments):
            return self.now > self.last_send + self.spec.timeout_s
        accepted = sum(1 for p in self.payments if not p.refused) if self._refusals else len(self.payments)
        return self.everywhere >= accepted or self.now > self.last_send + DRAIN_S

    # == running ====================================================================================
    def run(self) -> SimResult:
        """Run to the end (every payment applied everywhere, or the timeout). The cyclic garbage
        collector is held back meanwhile: a 1,000-node heap holds millions of live objects that a full
        collection would scan again and again (it cost a fifth of the run at 300 nodes), while the run
        makes almost no cyclic garbage (tens of objects per full collection)."""
        threshold = gc.get_threshold()
        gc.collect()
        gc.freeze()
        gc.set_threshold(100_000, 50, 1000)
        try:
            return self._run()
        finally:
            gc.set_threshold(*threshold)
            gc.unfreeze()

    def _run(self) -> SimResult:
        wall = time.perf_counter()
        self._plan()
        self.progress(f"running {len(self.nodes)} nodes, {len(self.edges)} connections")
        self._connect_all()
        phase = random.Random(f"sim-ticks-{self.spec.seed}")
        for node in self.nodes:
            self.at(phase.random() * self.heartbeat, partial(self._tick, node))
        self.at(WARMUP_S, self._start_load)
        next_report = 0
        while self._heap:
            t, _, fn = heapq.heappop(self._heap)
            self.now = t
            fn()
            if self.done >= next_report:
                self.progress(
                    f"t={self.now:7.2f}s virtual: {self.done}/{len(self.payments)} payments settled"
                )
                next_report += max(1, len(self.payments) // 10)
            if self._finished():
                self._settle_stores()
                break
        for node in self.nodes:
            self.flush_log(node)
        self.wall_s = time.perf_counter() - wall
        return SimResult(self)

    def _settle_stores(self) -> None:
        """Run the queued events until no node has a write or a job left (the last applies made
        durable: the roots read in the summary are what clients would see), ticks excluded."""
        limit = self.now + 5.0
        while self._heap and self.now < limit:
            if not any(n.jobs or n.writes or n.committing or n.busy for n in self.nodes):
                return
            t, _, fn = heapq.heappop(self._heap)
            self.now = t
            fn()

    def flush_log(self, node: SimNode) -> None:
        if self.log_dir is not None and node.log:
            with (self.log_dir / f"{node.name}.log").open("a", encoding="utf-8") as f:
                f.write("\n".join(node.log) + "\n")
            node.log.clear()


@dataclass
class SimResult:
    sim: Simulation

    def summary(self) -> dict[str, Any]:
        return summarize(self.sim)


def summarize(sim: Simulation) -> dict[str, Any]:
    n = len(sim.nodes)
    rtt = sim.profile.median_rtt_ms()
    # The time by which 1, ceil(n/2) and n nodes had applied each payment (as ``p2pnode latency``).
    ranks = {"first": 1, "median": (n + 1) // 2, "last": n}
    applied: dict[str, list[float]] = {k: [] for k in ranks}
    for p in sim.payments:
        times = sorted(sim.applied.get(p.digest.hex(), []))
        for key, rank in ranks.items():
            if len(times) >= rank and not p.refused:
                applied[key].append((times[rank - 1] - p.scheduled) * 1e3)
    # Client view as ``p2pnode bench``: open loop from the scheduled send time, closed loop from the send.
    open_loop = sim.spec.rate is not None
    client = [
        (p.settled - (p.scheduled if open_loop else p.sent)) * 1e3
        for p in sim.payments
        if p.settled is not None
    ]

    def stats(values: list[float]) -> dict[str, Any]:
        st = Stats.of(values)
        if st.p50 is None or st.p99 is None:
            return {"n": 0}
        return {
            "n": st.count,
            "p50_ms": st.p50,
            "p99_ms": st.p99,
            "p50_rtt": round(st.p50 / rtt, 3) if rtt else None,
            "p99_rtt": round(st.p99 / rtt, 3) if rtt else None,
        }

    settled = [p for p in sim.payments if p.settled is not None]
    ends = [p.settled for p in settled if p.settled is not None]
    span = (max(ends) - min(p.scheduled for p in settled)) if ends else 0.0
    roles: dict[str, dict[str, Any]] = {}
    count = max(1, len(settled))
    for role in ("validator", "full"):
        group = [x for x in sim.nodes if x.role == role]
        if not group:
            continue
        roles[role] = {
            "nodes": len(group),
            "msgs_in_per_payment": round(statistics.median(x.rx_messages for x in group) / count, 2),
            "frames_in_per_payment": round(statistics.median(x.rx_frames for x in group) / count, 2),
            "kb_in_per_payment": round(statistics.median(x.rx_bytes for x in group) / count / 1024, 3),
            "msgs_out_per_payment": round(statistics.median(x.tx_messages for x in group) / count, 2),
            "kb_out_per_payment": round(statistics.median(x.tx_bytes for x in group) / count / 1024, 3),
            "duplicates_per_payment": round(statistics.median(x.duplicates for x in group) / count, 2),
            "peak_queue_max": max(x.peak_queue for x in group),
            "peak_queue_median": statistics.median(x.peak_queue for x in group),
            "busy_share_median": round(statistics.median(x.busy_s for x in group) / max(sim.now, 1e-9), 3),
        }
    roots = {x.core.visible.root.hex() for x in sim.nodes}
    return {
        "version": 1,
        "nodes": n,
        "validators": sim.spec.validators,
        "full_degree": sim.spec.full_degree,
        "connections": len(sim.edges),
        "seed": sim.spec.seed,
        "cores": sim.spec.cores,
        "network": sim.profile.describe(),
        "payments": len(sim.payments),
        "rate": sim.spec.rate,
        "window": sim.spec.window if sim.spec.rate is None else None,
        "settled": len(settled),
        "refused": sum(1 for p in sim.payments if p.refused),
        "settled_per_s": round(len(settled) / span, 3) if span > 0 else None,
        "applied_everywhere": sum(1 for p in sim.payments if len(sim.applied.get(p.digest.hex(), ())) >= n),
        "roots_equal": len(roots) == 1,
        "latency": {
            "client": stats(client),
            "applied_first": stats(applied["first"]),
            "applied_median": stats(applied["median"]),
            "applied_last": stats(applied["last"]),
        },
        "roles": roles,
        "virtual_s": round(sim.now, 3),
        "wall_s": round(sim.wall_s, 2),
        "distinct_checks": {"proofs": len(sim.shared.proofs), "signatures": len(sim.shared.signatures)},
    }


__all__ = ["Shared", "SimNode", "SimResult", "SimSpec", "Simulation", "summarize"]
