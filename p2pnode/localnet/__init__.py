"""Local networks as a library: define a cluster, write and read its directory, run its node processes.

::

    cluster = write_cluster(ClusterSpec(validators=4, shielded=False), Path("clusters/four"))
    net = LocalNet(cluster)
    try:
        with trio.fail_after(ready_timeout_s(len(cluster.nodes))):
            await net.start_in_waves()   # or net.start(): every process at once
            await net.wait_ready()
        ...
    finally:
        net.stop()

``p2pnode testnet``, ``p2pnode net up/down``, ``bench``, ``scenario``, the demo and the system tests all
use this package. Platforms: Linux and macOS (process supervision with psutil); Windows is not supported.
"""

from p2pnode.localnet.directory import (
    CLUSTER_FILE,
    GENESIS_FILE,
    AccountEntry,
    ClusterDir,
    NodeEntry,
    free_ports,
    read_cluster,
    render_node_config,
    write_cluster,
)
from p2pnode.localnet.metrics import PROMETHEUS_FILE, enable_metrics, metrics_targets
from p2pnode.localnet.processes import (
    PIDS_FILE,
    ClusterError,
    LocalNet,
    Progress,
    Stopped,
    stop_grace_s,
    tail,
)
from p2pnode.localnet.resources import MemorySummary, NodeMemory, read_vm_rss, summarize_memory
from p2pnode.localnet.spec import (
    DEFAULT_BALANCE,
    MAX_FULL_NODES,
    MAX_VALIDATORS,
    ClusterSpec,
    check_defaults,
    load_cluster_definition,
)
from p2pnode.localnet.status import ClusterStatus, NodeReport, cluster_status
from p2pnode.localnet.waits import ready_timeout_s, wave_size

__all__ = [
    "CLUSTER_FILE",
    "DEFAULT_BALANCE",
    "GENESIS_FILE",
    "MAX_FULL_NODES",
    "MAX_VALIDATORS",
    "PIDS_FILE",
    "PROMETHEUS_FILE",
    "AccountEntry",
    "ClusterDir",
    "ClusterError",
    "ClusterSpec",
    "ClusterStatus",
    "LocalNet",
    "MemorySummary",
    "NodeEntry",
    "NodeMemory",
    "NodeReport",
    "Progress",
    "Stopped",
    "check_defaults",
    "cluster_status",
    "enable_metrics",
    "free_ports",
    "load_cluster_definition",
    "metrics_targets",
    "read_cluster",
    "read_vm_rss",
    "ready_timeout_s",
    "render_node_config",
    "stop_grace_s",
    "summarize_memory",
    "tail",
    "wave_size",
    "write_cluster",
]
