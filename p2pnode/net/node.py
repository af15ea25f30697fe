"""The Trio node driver: wires the sans-I/O core to the transport, the store and the verifier.

The parts, each its own module against a narrow interface:

- :mod:`p2pnode.net.interpreter` performs the core's effects: the group-commit store writer (with
  its durability rules: durable before visible), the proof verifier loop and the heartbeat ticker;
- :mod:`p2pnode.net.peers` the peer connections: registry, reader/writer/keepalive, bans, address book;
- :mod:`p2pnode.net.dialer` the dialer with backoff, and peer exchange;
- :mod:`p2pnode.net.clients` the client-request server.

Structure: one nursery per node. Services: the listener, the ticker, the dialer, peer exchange, the
writer and the verifier, plus whatever ``NodeHooks.services`` adds; one task per peer connection
(with its own reader, writer and keepalive) and one per client connection.

Extension points (``NodeHooks``, given at construction; a production node has none): the validator
class, extra services started with the node, extra client request handlers, and a wrapper around the
transport. The driver knows nothing of what they do. A ``[network]`` profile in the config wraps the
transport in :class:`p2pnode.net.links.FaultyTransport` before the hook sees it.

Resource handling: cancelling ``run`` closes every connection and stops the worker processes; the
store is closed by whoever opened it. Error handling: a peer's bad input closes or penalizes that peer
and never the node; ``LocalError`` (our configuration) stops the node with its message.
"""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from p2pnode import logs
from p2pnode.config import NodeConfig, parse_hostport
from p2pnode.core.effects import Effect
from p2pnode.core.gossip import GossipParams
from p2pnode.core.node import CoreParams, NodeCore
from p2pnode.core.validator import Validator, ValidatorFactory
from p2pnode.crypto import NodeKey
from p2pnode.genesis import Genesis
from p2pnode.net.clients import ClientService, RequestHandler
from p2pnode.net.dialer import Dialer
from p2pnode.net.interpreter import Interpreter, verify_item
from p2pnode.net.limits import ConnectionGate, connection_caps, raise_nofile_limit
from p2pnode.net.links import FaultyTransport, link_model
from p2pnode.net.metrics import MetricsServer, NodeMetrics, ObservedLog
from p2pnode.net.peers import AddressBook, PeerSet, addresses, refuse_quietly, short
from p2pnode.net.transport import TcpTransport, Transport
from p2pnode.net.verifier import ProofVerifier
from p2pnode.store import Store
from p2pnode.wire.messages import Message
from p2pnode.wire.types import NodeId

Service = Callable[["Node"], Awaitable[None]]
NodeRequestHandler = Callable[["Node", Message], Awaitable[Message]]


def core_params(cfg: NodeConfig) -> CoreParams:
    """The core's parameters from a node config (one place, for the driver and the simulator)."""
    g = cfg.gossip
    return CoreParams(
        gossip=GossipParams(
            eager_fanout=g.eager_fanout,
            origin_fanout=g.origin_fanout,
            lazy_fanout=g.lazy_fanout,
            lazy_unproven=g.lazy_unproven,
            seen_cache_size=g.seen_cache_size,
            seen_ttl=float(g.seen_ttl_s),
            iwant_timeout=g.iwant_timeout_ms / 1000,
            iwant_followup=g.iwant_followup_ms / 1000,
            max_ihave=g.max_ihave,
        ),
        pending_orders=cfg.limits.pending_orders,
        held_certificates=cfg.limits.held_certificates,
        sync_interval=cfg.sync.interval_ms / 1000,
        sync_batch=cfg.sync.batch,
        sync_reply_factor=cfg.sync.reply_factor,
        sync_credit_max=cfg.sync.credit_max_bytes,
        certificate_proofs=cfg.verify.certificate_proofs,
        future_seqs=cfg.limits.future_seqs,
        held_order_s=cfg.limits.held_order_s,
        verify_rate=cfg.verify.per_source_rate,
        verify_burst=float(cfg.verify.per_source_burst),
        useless_rate=cfg.peers.useless_rate,
        useless_burst=float(cfg.peers.useless_burst),
    )


@dataclass(frozen=True, kw_only=True)
class NodeHooks:
    """What a node may be given besides its config: the default is a production node."""

    validator_factory: ValidatorFactory = Validator
    services: tuple[Service, ...] = ()  # each runs in the node's nursery until the node stops
    request_handlers: Mapping[type[Message], NodeRequestHandler] = field(default_factory=dict)
    wrap_transport: Callable[[Transport], Transport] | None = None


class Node:
    """One p2pnode node. ``run`` is a Trio service: ``await nursery.start(node.run)`` returns the port."""

    def __init__(
        self,
        cfg: NodeConfig,
        key: NodeKey,
        genesis: Genesis,
        *,
        store: Store,
        transport: Transport | None = None,
        name: str = "",
        rng: random.Random | None = None,
        hooks: NodeHooks | None = None,
        store_thread: bool | None = None,
        log: Any = None,
    ) -> None:
        self.cfg = cfg
        self.hooks = hooks or NodeHooks()
        self.key = key
        self.node_id = NodeId(key.public)
        self.genesis = genesis
        self.name = name or cfg.node.name or short(key.public)
        self.store = store
        inner: Transport = transport or TcpTransport()
        model = link_model(cfg)  # [network]: a profile on every link this node dials (net/links.py)
        if model is not None:
            inner = FaultyTransport(inner, model=model)
        wrap = self.hooks.wrap_transport
        self.transport: Transport = wrap(inner) if wrap is not None else inner
        self.host, self.port = parse_hostport(cfg.node.listen, key="node.listen")
        self.rng = rng or random.Random()
        params = core_params(cfg)
        self.core = NodeCore(
            key=key,
            chain_id=genesis.chain_id,
            validators=[v.node_id for v in genesis.validators],
            balances=dict(genesis.balances),
            params=params,
            rng=self.rng,
            validator_factory=self.hooks.validator_factory,
            shielded=genesis.shielded_vk is not None,
        )
        self.role = "validator" if self.core.validator is not None else "full"
        # A harness may hand in its own bound logger (e.g. one file per node in one process).
        self.log: Any = log or logs.get_logger(node=self.name, node_id=short(self.node_id))
        # [metrics]: every event logged through the node's logger is also observed (docs/metrics.md).
        self.metrics: NodeMetrics | None = None
        self.metrics_server: MetricsServer | None = None
        if cfg.metrics.listen:
            self.metrics = NodeMetrics(tracked_payments=cfg.metrics.tracked_payments, gauges=self._gauges)
            self.metrics_server = MetricsServer(
                self.metrics, *parse_hostport(cfg.metrics.listen, key="metrics.listen", any_port=True)
            )
            self.log = ObservedLog(self.log, self.metrics)
        self.counters = {
            "frames_rejected": 0,
            "handshakes_refused": 0,
            "send_dropped": 0,
            "clients": 0,
            "connections_refused": 0,
            "peers_slow": 0,
            "peers_evicted": 0,
            "clients_evicted": 0,
            "requests_capped": 0,
            "rx_throttled": 0,
            "rx_frames": 0,  # peer frames received after the handshake (a Bundle is one)
            "rx_bundles": 0,
            "rx_messages": 0,  # peer messages received (each of a Bundle counted)
            "rx_bytes": 0,  # their bytes on the wire, length prefixes included
        }
        self.verifier = ProofVerifier(
            cfg.verify.workers, genesis.shielded_vk, inline_ms_per_s=cfg.verify.inline_ms_per_s
        )
        handlers: dict[type[Message], RequestHandler] = {
            t: _bind(h, self) for t, h in self.hooks.request_handlers.items()
        }
        self.clients = ClientService(self, handlers)
        self.book = AddressBook(cfg, self.node_id, self.core)
        self.peers = PeerSet(
            cfg=cfg,
            key=key,
            chain_id=genesis.chain_id,
            role=self.role,
            core=self.core,
            book=self.book,
            log=self.log,
            counters=self.counters,
            perform=self.perform,
            serve_client=self.clients.serve,
        )
        self.dialer = Dialer(
            cfg=cfg,
            transport=self.transport,
            peers=self.peers,
            book=self.book,
            rng=self.rng,
            log=self.log,
            counters=self.counters,
        )
        self.peers.listen_port = self.port
        self.peers.metrics = self.metrics
        self.dialer.own_addr = f"{self.host}:{self.port}"
        self.interpreter = Interpreter(
            cfg=cfg,
            core=self.core,
            store=store,
            verifier=self.verifier,
            outbox=self.peers,
            waiters=self.clients,
            log=self.log,
            store_thread=cfg.verify.workers > 0 if store_thread is None else store_thread,
        )
        self.interpreter.metrics = self.metrics
        self.ready = trio.Event()
        self.stopped = trio.Event()  # set when ``run`` has returned (or failed)
        self.started_at = 0.0
        self._nursery: trio.Nursery | None = None

    # == service ====================================================================================
    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        snap = (
            await trio.to_thread.run_sync(self.store.load) if self.cfg.verify.workers else self.store.load()
        )
        self.core.restore(snap.accounts, snap.certs, snap.locks, snap.notes)
        self._apply_fd_limits()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.port = await nursery.start(
                    self.transport.serve, self.host, self.port, self.peers.on_incoming
                )
                self.peers.listen_port = self.port
                self.dialer.own_addr = f"{self.host}:{self.port}"
                self.started_at = trio.current_time()
                metrics = ""
                if self.metrics_server is not None:
                    port = await nursery.start(self.metrics_server.run)
                    metrics = f"{self.metrics_server.host}:{port}"
                self.log.info(
                    "node_started",
                    chain_id=self.genesis.chain_id.hex(),
                    listen=f"{self.host}:{self.port}",
                    role=self.role,
                    applied=self.core.ledger.applied_count(),
                    root=self.core.ledger.root().hex(),
                    **({"metrics": metrics} if metrics else {}),
                )
                await self.verifier.warm_up()
                nursery.start_soon(self.interpreter.writer)
                nursery.start_soon(self.interpreter.verify)
                nursery.start_soon(self.interpreter.tick)
                nursery.start_soon(self.dialer.run)
                nursery.start_soon(self.dialer.exchange)
                nursery.start_soon(self.peers.tally_loop)
                for service in self.hooks.services:
                    nursery.start_soon(service, self)
                self.ready.set()
                self.log.info("node_ready")
                task_status.started(self.port)
        finally:
            self.verifier.close()
            self.stopped.set()

    def _apply_fd_limits(self) -> None:
        """Raise the open-file soft limit, fit the connection caps to it and log both (``limits``).

        Error handling: :class:`LocalError` if the limit cannot hold ``limits.fd_reserve`` plus two
        connections."""
        fd = raise_nofile_limit()
        lim = self.cfg.limits
        caps = connection_caps(
            soft_limit=fd.soft,
            fd_reserve=lim.fd_reserve,
            max_peers=self.cfg.peers.max_connections,
            max_clients=lim.max_clients,
        )
        self.peers.gate = ConnectionGate(caps)
        log = self.log.warning if caps.lowered else self.log.info
        log(
            "limits",
            fd_soft_before=fd.before,
            fd_soft=fd.soft,
            fd_hard=fd.hard,
            fd_reserve=lim.fd_reserve,
            max_open=caps.max_open,
            max_connections=caps.max_peers,
            max_inbound=self.peers.inbound_cap(),
            max_outbound=self.cfg.peers.max_outbound,
            max_clients=caps.max_clients,
            lowered=caps.lowered,
        )

    def _gauges(self) -> dict[str, float]:
        """The metrics' gauges, read at scrape time."""
        core = self.core
        return {
            "peers": len(self.peers),
            "verifying": len(core.verifying),
            "held_orders": len(core.held_orders),
            "held_certificates": len(core.held_certs),
        }

    def stop(self) -> None:
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def perform(self, effects: list[Effect]) -> None:
        """Perform the core's effects in order (see :class:`p2pnode.net.interpreter.Interpreter`)."""
        await self.interpreter.perform(effects)

    @property
    def known(self) -> dict[str, NodeId | None]:
        """Dialable addresses this node knows (``"host:port" -> node id`` once known)."""
        return self.book.known

    def addresses_of(self, nids: set[bytes]) -> set[str]:
        """Every dialable address this node knows for these node ids."""
        return addresses(self.peers, self.book, nids)

    def status(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "node": self.name,
            "node_id": self.node_id.hex(),
            "chain_id": self.genesis.chain_id.hex(),
            "role": self.role,
            "listen": f"{self.host}:{self.port}",
            "ready": self.ready.is_set(),
            "peer_count": len(self.peers),
            "peers": self.peers.status(),
            "pid": os.getpid(),
            "uptime_s": round(trio.current_time() - self.started_at, 3),
        }
        info.update(self.core.status())
        info["counters"] = dict(self.counters)
        # Verifications done since start: proofs handed to the verifier, vote signatures checked.
        info["verified"] = {
            "proofs": self.verifier.proofs,
            "proof_batches": self.verifier.batches,
            "signatures": self.core.votes.checks,
        }
        if self.metrics_server is not None:
            info["metrics"] = f"{self.metrics_server.host}:{self.metrics_server.port}"
        return info


def _bind(handler: NodeRequestHandler, node: Node) -> RequestHandler:
    async def bound(msg: Message) -> Message:
        return await handler(node, msg)

    return bound


__all__ = [
    "Node",
    "NodeHooks",
    "Service",
    "core_params",
    "NodeRequestHandler",
    "refuse_quietly",
    "verify_item",
]
