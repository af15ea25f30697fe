"""The waits of :class:`~p2pnode.localnet.LocalNet`: answering and readiness (identity-checked), and
convergence.

All poll the nodes' status and never give up by themselves: the caller bounds them with
``trio.fail_after`` (:func:`ready_timeout_s` is a bound that grows with the cluster). All fail fast, with
the node's log tails, when a node's process is gone. A single status request is bounded by ``PROBE_S``
so that a paused or wedged node cannot hold a round.

Scale: one round asks every node still waited for, on a fresh connection each. The pause between rounds
is ``POLL_S`` for a few nodes and grows with their number up to ``MAX_POLL_S`` (:func:`poll_interval_s`),
so that waiting for 64 nodes costs about 64 status requests per second, not 640: on a small machine the
requests would otherwise compete with the nodes that are starting.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import trio

from p2pnode.errors import P2PNodeError

if TYPE_CHECKING:
    from p2pnode.localnet.processes import LocalNet

__all__ = [
    "MAX_POLL_S",
    "POLL_PER_NODE_S",
    "POLL_S",
    "PROBE_S",
    "poll_interval_s",
    "ready_timeout_s",
    "wait_answering",
    "wait_converged",
    "wait_ready",
    "wave_size",
]

POLL_S = 0.1
MAX_POLL_S = 1.0
POLL_PER_NODE_S = 0.02  # pause per node waited for: ~50 status requests per second, up to MAX_POLL_S
PROBE_S = 2.0

# Bring-up cost on one core, per node: interpreter start and imports of the node (~1.1 s of CPU on a
# 2020s x86 core), its proof worker (~0.6 s), then handshakes and peer exchange. Doubled for a machine
# that is also busy with something else.
_START_CPU_S = 5.0
_READY_BASE_S = 20.0
_READY_MIN_S = 60.0


def _cpus(cpus: int | None) -> int:
    return max(1, cpus if cpus is not None else (os.cpu_count() or 1))


def ready_timeout_s(nodes: int, cpus: int | None = None) -> float:
    """A bound for bringing ``nodes`` nodes up on ``cpus`` cores (default: this machine's): 20 s plus
    5 s of one core per node, at least 60 s. 4 nodes: 60 s; 64 nodes on 2 cores: 180 s."""
    return max(_READY_MIN_S, _READY_BASE_S + nodes * _START_CPU_S / _cpus(cpus))


def wave_size(cpus: int | None = None) -> int:
    """How many node processes to start at once: four per core (at least 8), enough to keep the cores
    busy while a wave's interpreters start, few enough that the first nodes answer early."""
    return max(8, 4 * _cpus(cpus))


def poll_interval_s(waiting: int) -> float:
    """The pause between two rounds of status requests to ``waiting`` nodes."""
    return min(MAX_POLL_S, max(POLL_S, waiting * POLL_PER_NODE_S))


def _check_running(net: LocalNet, names: Sequence[str], what: str) -> int:
    """Raise (with the log tails) if one of ``names`` is not running; else the number of running nodes."""
    running = net.running()
    for name in names:
        if name not in running:
            code = net.exit_code(name)
            how = f"exited with code {code}" if code is not None else "is not running"
            raise net.failure([name], f"{name} {how} {what}")
    return len(running)


async def _probe(net: LocalNet, name: str) -> dict[str, Any] | str:
    """The node's status map, or why there is none (a string)."""
    try:
        with trio.fail_after(PROBE_S):
            return await net.status(name)
    except (OSError, P2PNodeError, trio.TooSlowError, trio.BrokenResourceError) as exc:
        return f"status request failed: {str(exc) or type(exc).__name__}"


def _identity(net: LocalNet, name: str, info: dict[str, Any]) -> str | None:
    """Why the node answering at ``name``'s address is not ``name`` of this cluster (None if it is)."""
    entry = net.cluster.node(name)
    chain = info.get("chain_id")
    node_id = info.get("node_id")
    chain_hex = chain.hex() if isinstance(chain, bytes) else chain
    node_hex = node_id.hex() if isinstance(node_id, bytes) else node_id
    if chain_hex != net.cluster.chain_id.hex() or node_hex != entry.node_id:
        return (
            f"{entry.address} answers as node {str(node_hex)[:16]} of chain {str(chain_hex)[:16]}, "
            f"expected {name} ({entry.node_id[:16]}) of chain {net.cluster.chain_id.hex()[:16]}"
        )
    return None


async def _probe_all(net: LocalNet, names: Sequence[str]) -> dict[str, dict[str, Any] | str]:
    infos: dict[str, dict[str, Any] | str] = {}

    async def probe(name: str) -> None:
        infos[name] = await _probe(net, name)

    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(probe, name)
    return infos


async def _wait_until(
    net: LocalNet,
    names: Sequence[str],
    what: str,
    done: Callable[[str, dict[str, Any], int], bool],
    progress: Callable[[int, int], None] | None,
) -> None:
    """Poll ``names`` until ``done(name, status, running_nodes)`` held once for each of them, reporting
    ``progress(done_count, total)`` after every round."""
    for name in names:
        net.cluster.node(name)  # a LocalError for an unknown name
    pending = list(names)
    while pending:
        running = _check_running(net, pending, what)
        infos = await _probe_all(net, pending)
        finished = set()
        for name in pending:
            info = infos[name]
            if isinstance(info, str):
                continue
            wrong = _identity(net, name, info)
            if wrong is not None:
                raise net.failure([name], f"{name}: {wrong}")
            if done(name, info, running):
                finished.add(name)
        pending = [n for n in pending if n not in finished]
        if progress is not None:
            progress(len(names) - len(pending), len(names))
        if pending:
            await trio.sleep(poll_interval_s(len(pending)))


async def wait_answering(
    net: LocalNet, names: Sequence[str], progress: Callable[[int, int], None] | None = None
) -> None:
    """Wait until each node of ``names`` answers a status request as itself (it has started and
    listens; its peers do not matter here)."""
    await _wait_until(net, names, "before it answered", lambda _n, _i, _r: True, progress)


async def wait_ready(
    net: LocalNet, names: Sequence[str], progress: Callable[[int, int], None] | None = None
) -> None:
    def ready(name: str, info: dict[str, Any], running: int) -> bool:
        peers = info.get("peer_count")
        need = min(net.config(name).peers.target, max(0, running - 1))
        return isinstance(peers, int) and peers >= need and info.get("ready") is not False

    await _wait_until(net, names, "before it was ready", ready, progress)


async def wait_converged(net: LocalNet, names: Sequence[str]) -> bytes:
    for name in names:
        net.cluster.node(name)
    if not names:
        raise ValueError("wait_converged needs at least one node")
    while True:
        _check_running(net, names, "while waiting for convergence")
        roots: dict[str, Any] = {}

        async def probe(name: str, roots: dict[str, Any] = roots) -> None:
            info = await _probe(net, name)
            roots[name] = None if isinstance(info, str) else info.get("root")

        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(probe, name)
        values = {r.hex() if isinstance(r, bytes) else r for r in roots.values()}
        if len(values) == 1 and None not in values:
            (root,) = values
            if isinstance(root, str):
                return bytes.fromhex(root)
        await trio.sleep(poll_interval_s(len(names)))
