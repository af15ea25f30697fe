"""The waits of :class:`~p2pnode.localnet.LocalNet`: readiness (identity-checked) and convergence.

Both poll the nodes' status every ``POLL_S`` seconds and never give up by themselves: the caller bounds
them with ``trio.fail_after``. Both fail fast, with the node's log tails, when a node's process is gone.
A single status request is bounded by ``PROBE_S`` so that a paused or wedged node cannot hold a round.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from p2pnode.errors import P2PNodeError

if TYPE_CHECKING:
    from p2pnode.localnet.processes import LocalNet

__all__ = ["POLL_S", "PROBE_S", "wait_converged", "wait_ready"]

POLL_S = 0.1
PROBE_S = 2.0


def _check_running(net: LocalNet, names: Sequence[str], what: str) -> None:
    running = net.running()
    for name in names:
        if name not in running:
            code = net.exit_code(name)
            how = f"exited with code {code}" if code is not None else "is not running"
            raise net.failure([name], f"{name} {how} {what}")


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


async def wait_ready(net: LocalNet, names: Sequence[str]) -> None:
    for name in names:
        net.cluster.node(name)  # a LocalError for an unknown name
    pending = list(names)
    while pending:
        _check_running(net, pending, "before it was ready")
        need_running = len(net.running()) - 1
        infos: dict[str, dict[str, Any] | str] = {}

        async def probe(name: str, infos: dict[str, dict[str, Any] | str] = infos) -> None:
            infos[name] = await _probe(net, name)

        async with trio.open_nursery() as nursery:
            for name in pending:
                nursery.start_soon(probe, name)
        ready = set()
        for name in pending:
            info = infos[name]
            if isinstance(info, str):
                continue
            wrong = _identity(net, name, info)
            if wrong is not None:
                raise net.failure([name], f"{name}: {wrong}")
            peers = info.get("peer_count")
            need = min(net.config(name).peers.target, max(0, need_running))
            if isinstance(peers, int) and peers >= need and info.get("ready") is not False:
                ready.add(name)
        pending = [n for n in pending if n not in ready]
        if pending:
            await trio.sleep(POLL_S)


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
        await trio.sleep(POLL_S)
