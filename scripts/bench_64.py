"""Bring a 64-node cluster up, load it, measure it, take it down: one bounded benchmark run.

Steps, each with its own time bound, the cluster taken down also on failure or Ctrl-C:

1. ``p2pnode net up --config configs/local-64.toml --dir DIR`` (creating the cluster if DIR has none),
   timed from the command's start: keys and genesis, 64 processes started in waves, every node ready;
2. CPU of the idle cluster over ``--idle`` seconds and the memory of every node
   (:func:`p2pnode.localnet.cluster_status`);
3. ``p2pnode bench --dir DIR --rate R --count C --json``: payments at R per second, each settled at the
   node it was submitted to, then the state roots of all nodes compared; frames, messages and bytes
   received per payment per role (``roles``) from its JSON;
4. the status of every node again (applied count, root, memory after the load);
5. ``p2pnode net down --dir DIR``, then a check that none of the cluster's processes is left.

    python scripts/bench_64.py --dir /tmp/c64 [--base-port 7800] [--rate 5] [--count 300] [--json]

Memory is ``VmRSS`` of ``/proc/<pid>/status`` of each node process the cluster started, and of the node
with the processes it started (its proof worker and multiprocessing's resource tracker). Exit status 0
when every payment settled and every node reports the same root, 1 otherwise, 2 if the cluster could
not be brought up or taken down.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import trio

from p2pnode.localnet import (
    CLUSTER_FILE,
    ClusterSpec,
    ClusterStatus,
    LocalNet,
    cluster_status,
    read_cluster,
    ready_timeout_s,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO / "configs" / "local-64.toml"


def p2pnode(*args: str) -> list[str]:
    return [sys.executable, "-m", "p2pnode", *args]


def mib(n: float) -> float:
    return round(n / 2**20, 1)


def tree_cpu_s(pids: dict[str, int]) -> float:
    """CPU seconds (user + system) used so far by the node processes and their children."""
    total = 0.0
    for pid in pids.values():
        try:
            p = psutil.Process(pid)
            for q in [p, *p.children(recursive=True)]:
                t = q.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            continue
    return total


def memory_doc(status: ClusterStatus) -> dict[str, Any]:
    m = status.memory
    return {
        "nodes": m.nodes,
        "rss_median_mib": mib(m.median_rss),
        "rss_max_mib": mib(m.max_rss),
        "rss_total_mib": mib(m.total_rss),
        "tree_rss_median_mib": mib(m.median_tree_rss),
        "tree_rss_max_mib": mib(m.max_tree_rss),
        "tree_rss_total_mib": mib(m.total_tree_rss),
        "processes": sum(n.processes or 0 for n in status.nodes),
    }


def run_bounded(args: list[str], timeout: float) -> subprocess.CompletedProcess[str] | None:
    """Run ``args`` (output captured); None if it did not finish within ``timeout`` (it is killed)."""
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def status_of(directory: Path) -> ClusterStatus:
    net = LocalNet.open(directory)
    return trio.run(lambda: cluster_status(net, probe_s=5.0))


def leftovers(directory: Path) -> list[int]:
    """Pids of processes still running one of this cluster's node configs."""
    configs = {str(n.config) for n in read_cluster(directory).nodes}
    left = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        args = p.info.get("cmdline") or []
        if any(a in configs for a in args):
            left.append(int(p.info["pid"]))
    return left


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True, help="cluster directory (created if it holds none)")
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="cluster definition (local-64)")
    ap.add_argument("--base-port", type=int, help="override the definition's base port")
    ap.add_argument("--rate", type=float, default=5.0, help="payments per second (default 5)")
    ap.add_argument("--count", type=int, default=300, help="payments (default 300)")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured (default 10)")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()

    overrides = {"base_port": args.base_port}
    spec = ClusterSpec.from_file(args.config, **overrides)
    up_timeout = ready_timeout_s(spec.nodes)
    doc: dict[str, Any] = {"nodes": spec.nodes, "validators": spec.validators, "ready_timeout_s": up_timeout}
    code = 0
    try:
        # -- 1. up ---------------------------------------------------------------------------------------
        cmd = ["net", "up", "--dir", str(args.dir)]
        if not (args.dir / CLUSTER_FILE).is_file():
            cmd += ["--config", str(args.config)]
            if args.base_port is not None:
                cmd += ["--base-port", str(args.base_port)]
        t0 = time.monotonic()
        # stderr passes through: net up's progress lines appear while it runs.
        up = subprocess.run(p2pnode(*cmd), stdout=subprocess.PIPE, text=True, timeout=up_timeout + 60)
        doc["bring_up_s"] = round(time.monotonic() - t0, 1)
        ready_line = (up.stdout.strip().splitlines() or [""])[-1]
        doc["net_up"] = ready_line
        if up.returncode != 0:
            print(up.stdout[-4000:], file=sys.stderr)
            doc["error"] = f"net up exited {up.returncode}"
            return 2
        print(f"bring-up: {doc['bring_up_s']} s in all ({ready_line})", file=sys.stderr)

        # -- 2. idle -------------------------------------------------------------------------------------
        net = LocalNet.open(args.dir)
        pids = net.running()
        c0, w0 = tree_cpu_s(pids), time.monotonic()
        time.sleep(args.idle)
        c1, w1 = tree_cpu_s(pids), time.monotonic()
        doc["idle_cpu_cores"] = round((c1 - c0) / (w1 - w0), 3)
        before = status_of(args.dir)
        doc["memory_idle"] = memory_doc(before)
        doc["peers"] = {
            "median": statistics.median_low([n.peer_count or 0 for n in before.nodes]),
            "min": min(n.peer_count or 0 for n in before.nodes),
            "max": max(n.peer_count or 0 for n in before.nodes),
        }
        print(f"idle: {doc['idle_cpu_cores']} cores; memory {doc['memory_idle']}", file=sys.stderr)

        # -- 3. load -------------------------------------------------------------------------------------
        bench_timeout = args.count / args.rate + 150  # schedule, slow payments, convergence
        c0, w0 = tree_cpu_s(pids), time.monotonic()
        bench = run_bounded(
            p2pnode(
                "bench",
                "--dir",
                str(args.dir),
                "--rate",
                f"{args.rate:g}",
                "--count",
                str(args.count),
                "--json",
            ),
            bench_timeout,
        )
        c1, w1 = tree_cpu_s(pids), time.monotonic()
        doc["load_cpu_cores"] = round((c1 - c0) / (w1 - w0), 3)
        if bench is None:
            # The nodes are still read below: how far the payments got, and whether the roots agree.
            doc["error"] = f"bench did not finish within {bench_timeout:g} s"
            code = 1
        elif not bench.stdout.strip():
            doc["error"] = f"bench exited {bench.returncode}: {bench.stderr.strip()[-2000:]}"
            return 2
        result = json.loads(bench.stdout) if bench is not None else None
        lat = result["client_latency"] if result is not None else {}
        doc["bench"] = (
            None
            if result is None
            else {
                "planned": result["count"],
                "settled": result["settled"],
                "failures": result["failures"][:5],
                "duration_s": result["duration_s"],
                "schedule_lag_ms": result["schedule_lag_ms"],
                "latency_ms": {k: lat.get(k) for k in ("p50", "p90", "p99", "max")},
                "roots_agree": result["roots_agree"],
                # per node of each role and per settled payment: frames, messages and bytes received
                "roles": result["roles"],
            }
        )
        if result is not None and (result["settled"] != result["count"] or not result["roots_agree"]):
            code = 1

        # -- 4. after ------------------------------------------------------------------------------------
        after = status_of(args.dir)
        doc["memory_after"] = memory_doc(after)
        doc["roots_agree_after"] = after.roots_agree
        doc["roots"] = after.roots
        doc["applied"] = sorted({n.applied for n in after.nodes if n.applied is not None})
        doc["per_node"] = [
            {
                "node": n.name,
                "role": n.role,
                "pid": n.pid,
                "rss_mib": mib(n.rss or 0),
                "tree_rss_mib": mib(n.tree_rss or 0),
                "peers": n.peer_count,
                "applied": n.applied,
            }
            for n in after.nodes
        ]
        if not after.roots_agree:
            code = 1
    except subprocess.TimeoutExpired as exc:
        doc["error"] = f"timed out: {' '.join(str(a) for a in exc.cmd[3:5])} after {exc.timeout:g} s"
        code = 2
    finally:
        # -- 5. down -------------------------------------------------------------------------------------
        if (args.dir / CLUSTER_FILE).is_file():
            t0 = time.monotonic()
            down = subprocess.run(
                p2pnode("net", "down", "--dir", str(args.dir)), capture_output=True, text=True, timeout=120
            )
            doc["down_s"] = round(time.monotonic() - t0, 1)
            outcomes = [ln.split()[0] for ln in down.stdout.splitlines() if ln.strip()]
            doc["down"] = {o: outcomes.count(o) for o in sorted(set(outcomes))}
            left = leftovers(args.dir)
            doc["left_running"] = left
            if down.returncode != 0 or left:
                code = 2
        if args.json:
            print(json.dumps(doc, indent=2))
        else:
            for key, value in doc.items():
                if key != "per_node":
                    print(f"{key}: {value}")
    return code


if __name__ == "__main__":
    sys.exit(main())
