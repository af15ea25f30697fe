"""The one place where localnet talks to a node: connecting a client and asking its status."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from p2pnode.client import Client
from p2pnode.client import query_status as _query_status

__all__ = ["Client", "open_node_client", "query_status"]


@asynccontextmanager
async def open_node_client(host: str, port: int) -> AsyncIterator[Client]:
    """A client connection to ``host:port``, closed on exit (``OSError`` if it cannot be reached)."""
    async with await Client.connect(host, port) as client:
        yield client


async def query_status(host: str, port: int) -> dict[str, Any]:
    """One status request on a fresh connection: the node's status map.

    Error handling: ``OSError`` if the node cannot be reached, :class:`~p2pnode.errors.RemoteError` if
    it answers with anything but a ``StatusReply``. The caller bounds the wait (``trio.fail_after``).
    """
    return await _query_status(host, port)
