"""``p2pnode.testing``: the public API for integration tests against p2pnode clusters (docs/testing.md).

::

    from p2pnode.testing import open_memory_cluster

    async def test_payment(autojump_clock):
        async with open_memory_cluster(validators=4, accounts=2) as cluster:
            assert (await cluster.pay(0, 1, 250)).settled
            await cluster.wait_converged()

- :func:`open_memory_cluster`: every node in this process on the in-memory network, deterministic
  under Trio's virtual clock.
- :func:`open_local_cluster`: the same interface over real ``p2pnode run`` processes on 127.0.0.1.
- the pytest plugin (:mod:`p2pnode.testing.plugin`, registered by the package): fixtures
  ``p2pnode_memory_cluster`` and ``p2pnode_local_cluster``.

Every test-only fault (Byzantine roles, link faults, the fault-control request) lives in
:mod:`p2pnode.testing.faults` and is injected into a node at construction; nothing below this
package branches on it.
"""

from p2pnode.testing.cluster import Cluster, ClusterAccount, ClusterNode
from p2pnode.testing.local import LocalCluster, open_local_cluster
from p2pnode.testing.memory import BALANCE, MemoryCluster, make_genesis, open_memory_cluster, planned

__all__ = [
    "BALANCE",
    "Cluster",
    "ClusterAccount",
    "ClusterNode",
    "LocalCluster",
    "MemoryCluster",
    "make_genesis",
    "open_local_cluster",
    "open_memory_cluster",
    "planned",
]
