"""The ``FaultControl`` request: partitions and slow links, set at run time on one node.

Test-only. The message type is registered with the wire codec when this module is imported; a
production process never imports it, so there the tag is unknown and the frame is refused like any
other unknown tag. A node answers it only when its config has ``[testing] enabled = true`` and
``fault_control = true`` (the handler is then one of its extra request handlers).

Partition rule: partitions are applied symmetrically, each side of a cut is told to block the
other. So it is enough that a node (1) refuses to dial, and cuts its open streams to, every address
it knows for the blocked node ids (its peer table and its address book), and (2) closes its current
connections to those ids whatever their direction. An inbound connection cannot be told apart by
address before its handshake, so a blocked peer that has not yet been told (the requests go out one
node at a time) may connect in for a moment; its own request then cuts that stream from its side.
A blocked node whose address this node has never learnt is only disconnected, not refused.
Unblocking an address also forgets its dial backoff, so the node reconnects at once after a heal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from p2pnode.net.links import FaultyTransport, LinkModel
from p2pnode.net.node import Node
from p2pnode.net.transport import Transport
from p2pnode.wire.messages import B32, U32, ErrorReply, Message, StatusReply, _list, message
from p2pnode.wire.types import NodeId

FAULT_CONTROL_TAG = 49


@message(FAULT_CONTROL_TAG, _list(B32, 1024), U32)
@dataclass(frozen=True, slots=True, kw_only=True)
class FaultControl(Message):
    """Test-only (``testing.fault_control``): drop all traffic with these peers, delay every send."""

    blocked: tuple[bytes, ...]
    delay_ms: int


class LinkControl:
    """The link faults of one node: makes (or adopts) its ``FaultyTransport`` and answers
    ``FaultControl``. ``model``: the link model a new wrapper applies (the in-memory cluster's)."""

    def __init__(self, model: LinkModel | None = None) -> None:
        self.model = model
        self.transport: FaultyTransport | None = None
        self.blocked: frozenset[bytes] = frozenset()

    def wrap(self, inner: Transport) -> Transport:
        """The ``NodeHooks.wrap_transport`` hook: the node's transport, with faults. A node whose
        ``[network]`` profile already wrapped it keeps that one wrapper (one mechanism for links), so
        a slow delay adds to the profile's."""
        if isinstance(inner, FaultyTransport):
            self.transport = inner
        else:
            self.transport = FaultyTransport(inner, model=self.model)
        return self.transport

    def apply(self, node: Node, blocked: frozenset[bytes], *, addrs: Iterable[str] = ()) -> set[str]:
        """Block ``blocked`` node ids (see the partition rule): refuse and cut every address known for
        them (plus ``addrs``), drop the connections to them, forget the dial backoff of the addresses
        unblocked. Returns the addresses now blocked."""
        links = self.transport
        if links is None:
            raise RuntimeError("LinkControl: the node's transport was not wrapped")
        before = links.blocked
        self.blocked = blocked
        blocked_addrs = node.addresses_of(set(blocked)) | set(addrs)
        links.block(blocked_addrs)
        node.dialer.forget_failures(before - blocked_addrs)
        for nid in self.blocked:
            node.peers.disconnect(NodeId(nid))
        return blocked_addrs

    async def handle(self, node: Node, msg: Message) -> Message:
        if not isinstance(msg, FaultControl):  # pragma: no cover - registered for FaultControl only
            return ErrorReply(reason=f"{type(msg).__name__} is not a fault control request")
        links = self.transport
        if links is None:
            return ErrorReply(reason="fault control: this node's transport has no link faults")
        addrs = self.apply(node, frozenset(msg.blocked))
        links.set_delay(msg.delay_ms / 1000)
        node.log.warning(
            "fault_control", blocked=[b.hex()[:16] for b in sorted(self.blocked)], delay_ms=msg.delay_ms
        )
        info = node.status()
        info["faults"] = {
            "blocked": [b.hex() for b in sorted(self.blocked)],
            "blocked_addrs": sorted(addrs),
            "delay_ms": msg.delay_ms,
        }
        return StatusReply(info=info)


__all__ = ["FaultControl", "FAULT_CONTROL_TAG", "LinkControl"]
