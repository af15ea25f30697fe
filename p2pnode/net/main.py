"""``p2pnode run``: one node process, from its config file until SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import trio

from p2pnode import logs
from p2pnode.config import load_config
from p2pnode.crypto import NodeKey
from p2pnode.errors import LocalError, P2PNodeError
from p2pnode.genesis import load_genesis
from p2pnode.net.links import link_model
from p2pnode.net.node import Node, NodeHooks
from p2pnode.store import SqliteStore


async def run_node(config_path: Path, hooks: NodeHooks | None = None) -> int | None:
    """Run one node from its config until SIGINT/SIGTERM; returns the signal that stopped it.

    ``hooks`` are what the node is given besides its config (test-only faults, built by the caller)."""
    cfg = load_config(config_path)
    link_model(cfg)  # a bad [network] profile or region stops the node before it opens anything
    genesis = load_genesis(cfg.node.genesis)
    key = load_node_key(cfg.node.key_file)
    name = cfg.node.name or config_path.stem
    logs.configure(file=cfg.log.file, fmt=cfg.log.format, level=cfg.log.level)
    store = SqliteStore(cfg.node.data_dir / "node.sqlite", genesis.chain_id)
    # A node process always commits on the store's own thread (an fsync never stalls the loop), whether
    # proofs are checked on worker processes or inline (verify.workers).
    node = Node(cfg, key, genesis, store=store, name=name, hooks=hooks, store_thread=True)
    try:
        async with trio.open_nursery() as nursery:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                await nursery.start(node.run)
                async for signum in signals:
                    node.log.info("node_stopping", reason=signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return int(signum)
    finally:
        store.close()
    return None


def load_node_key(path: Path) -> NodeKey:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise LocalError(f"{path}: node key file not found") from None
    try:
        return NodeKey.from_seed(bytes.fromhex(text))
    except ValueError:
        raise LocalError(f"{path}: not a 32-byte hex Ed25519 seed") from None


def main_run(config_path: Path, hooks: NodeHooks | None = None) -> int:
    """Exit code of ``p2pnode run``: 0 stopped by SIGTERM, 130 by SIGINT (Ctrl-C, as a shell reports
    an interrupted command), 2 a configuration or startup error (one line on stderr)."""
    try:
        stopped_by = trio.run(run_node, Path(config_path), hooks)
    except P2PNodeError as exc:
        print(f"p2pnode: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 130 if stopped_by == signal.SIGINT else 0
