"""Every test-only fault of a node, in one place, injected at construction.

The one list of Byzantine behaviours is here (``VALIDATOR_ROLES``, ``PEER_ROLES``, ``BEHAVIOURS``).
:func:`node_faults` turns a node's ``[testing]`` section into the hooks the driver accepts
(:class:`~p2pnode.net.node.NodeHooks`): the validator class of a Byzantine validator
(:mod:`.validators`), the service of a Byzantine peer (:mod:`.peers`; the attackers that dial the
honest nodes with fresh keys, :mod:`.attackers`), the link-fault transport
wrapper (:mod:`.links`) and the ``FaultControl`` request handler (:mod:`.control`). A node given no
hooks has none of them, whatever its config says; the production entry point builds them only for
``[testing] enabled = true``.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pnode.config import NodeConfig
from p2pnode.errors import ConfigError
from p2pnode.net.links import FaultyTransport
from p2pnode.net.node import NodeHooks, Service
from p2pnode.testing.faults.attackers import ATTACKER_ROLES, attacker_service
from p2pnode.testing.faults.control import FaultControl, LinkControl
from p2pnode.testing.faults.peers import peer_service
from p2pnode.testing.faults.validators import VALIDATORS

VALIDATOR_ROLES = ("equivocate", "bad_signature", "silent", "forget_locks")  # need a committee key
# Any node. The first four use the node's own peer connections (.peers); the others dial the honest
# nodes with fresh keys (.attackers).
PEER_ROLES = ("relay_invalid", "replay", "flood", "malformed_frames", *ATTACKER_ROLES)
BEHAVIOURS = VALIDATOR_ROLES + PEER_ROLES
# Roles that sign payments with the cluster's last account (a scenario keeps it out of its load).
ACCOUNT_ROLES = frozenset({"future_seqs"})

assert set(VALIDATORS) == set(VALIDATOR_ROLES)


@dataclass(frozen=True, kw_only=True)
class NodeFaults(NodeHooks):
    """The hooks of one node, plus what a test may want to reach directly."""

    role: str = ""
    links: LinkControl | None = None  # set when the node accepts FaultControl


def faults_for(
    role: str = "", *, fault_control: bool = False, links: LinkControl | None = None
) -> NodeFaults:
    """The faults of a node playing ``role`` ("" honest); ConfigError for an unknown role.

    ``links``: the node's link control, given by a harness that wraps every node's transport (the
    in-memory cluster: its partitions and link model); it answers ``FaultControl`` only with
    ``fault_control``."""
    if role and role not in BEHAVIOURS:
        raise ConfigError(f"testing.byzantine: {role!r} is not one of {', '.join(BEHAVIOURS)}")
    if links is None and fault_control:
        links = LinkControl()
    validator = VALIDATORS.get(role)
    return NodeFaults(
        role=role,
        links=links,
        validator_factory=validator if validator is not None else NodeHooks().validator_factory,
        services=(_peer_service(role),) if role in PEER_ROLES else (),
        request_handlers={FaultControl: links.handle} if links is not None and fault_control else {},
        wrap_transport=links.wrap if links is not None else None,
    )


def _peer_service(role: str) -> Service:
    return attacker_service(role) if role in ATTACKER_ROLES else peer_service(role)


def node_faults(cfg: NodeConfig) -> NodeFaults:
    """The faults ``cfg``'s ``[testing]`` section asks for; none unless ``enabled = true``."""
    t = cfg.testing
    if not t.enabled:
        return NodeFaults()
    return faults_for(t.byzantine, fault_control=t.fault_control)


__all__ = [
    "ACCOUNT_ROLES",
    "BEHAVIOURS",
    "PEER_ROLES",
    "VALIDATOR_ROLES",
    "FaultControl",
    "FaultyTransport",
    "LinkControl",
    "NodeFaults",
    "faults_for",
    "node_faults",
]
