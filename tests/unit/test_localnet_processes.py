"""LocalNet with stand-in node processes: a small script that answers status requests like a node would
(its name, chain id and node id, read from its config). It exercises process handling (start, readiness,
identity checks, stop, kill, pause, pid safety) without the node driver."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import trio

from p2pnode.errors import LocalError
from p2pnode.localnet import ClusterError, ClusterSpec, LocalNet, cluster_status, write_cluster

# Its file name contains "p2pnode", as the pid checks require of every node command line.
FAKE_NODE = """
import os, pathlib, socket, sys, threading, tomllib
from p2pnode.crypto import NodeKey
from p2pnode.genesis import chain_id_of
from p2pnode.wire import codec
from p2pnode.wire.messages import StatusReply, decode

path = pathlib.Path(sys.argv[sys.argv.index("--config") + 1])
with open(path, "rb") as fh:
    doc = tomllib.load(fh)
if os.environ.get("FAKE_NODE_EXIT"):
    print("fatal: cannot open the store", file=sys.stderr)
    sys.exit(3)
base = path.parent
seed = bytes.fromhex((base / doc["node"]["key_file"]).read_text().strip())
chain_id = chain_id_of((base / doc["node"]["genesis"]).read_bytes())
host, port = doc["node"]["listen"].rsplit(":", 1)
srv = socket.create_server((host, int(port)))
info = {
    "name": doc["node"]["name"],
    "peer_count": int(os.environ.get("FAKE_NODE_PEERS", "99")),
    "node_id": NodeKey.from_seed(seed).public.hex(),
    "chain_id": chain_id.hex(),
    "root": "ab" * 32,
}

def serve(conn):
    decoder = codec.FrameDecoder()
    with conn:
        while data := conn.recv(65536):
            for frame in decoder.feed(data):
                decode(frame)
                conn.sendall(codec.frame(StatusReply(info=info).encode()))

while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LocalNet]:
    script = tmp_path / "p2pnode_fake_node.py"
    script.write_text(FAKE_NODE)
    spec = ClusterSpec(validators=2, full_nodes=1, accounts=1, shielded=False)
    cluster = write_cluster(spec, tmp_path / "c")
    n = LocalNet(cluster, node_command=[sys.executable, str(script)])
    try:
        yield n
    finally:
        n.stop(grace=2.0)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def ready(net: LocalNet, names: list[str] | None = None, seconds: float = 20.0) -> None:
    with trio.fail_after(seconds):
        await net.wait_ready(names)


def test_start_status_stop_restart(net: LocalNet) -> None:
    pids = net.start()
    trio.run(ready, net)
    assert set(pids) == {"node-0", "node-1", "node-2"} and net.pids() == pids == net.running()
    recorded = json.loads((net.directory / "pids.json").read_text())
    assert {n: r["pid"] for n, r in recorded.items()} == pids
    assert all(isinstance(r["created"], float) for r in recorded.values())
    assert all(alive(p) for p in pids.values())
    assert trio.run(net.status, "node-1")["name"] == "node-1"
    assert trio.run(net.wait_converged) == bytes.fromhex("ab" * 32)

    with pytest.raises(LocalError, match="already running"):
        net.start("node-0")

    (stopped,) = net.stop("node-1")
    assert (stopped.name, stopped.pid, stopped.outcome) == ("node-1", pids["node-1"], "stopped")
    assert not alive(pids["node-1"])
    assert "node-1" not in net.pids()
    assert net.stop("node-1")[0].outcome == "not running"

    new_pid = net.start("node-1")["node-1"]
    trio.run(ready, net, ["node-1"])
    assert new_pid != pids["node-1"] and alive(new_pid)

    (killed,) = net.kill("node-2")
    assert killed.outcome == "stopped" and not alive(pids["node-2"])

    async def paused_answers_nothing() -> None:
        with trio.move_on_after(0.3) as scope:
            await net.status("node-0")
        assert scope.cancelled_caught

    net.pause("node-0")
    trio.run(paused_answers_nothing)
    net.resume("node-0")
    assert trio.run(net.status, "node-0")["name"] == "node-0"
    net.pause("node-0")  # stop must still stop a paused node
    results = net.stop()
    outcomes = {r.name: r.outcome for r in results}
    assert outcomes == {"node-0": "stopped", "node-1": "stopped", "node-2": "not running"}
    assert not (net.directory / "pids.json").exists()
    assert not alive(pids["node-0"]) and not alive(new_pid)
    out = (net.directory / "logs" / "node-1.out").read_text()
    assert out.count("=== ") == 2  # one header per start, appended


def test_wait_ready_fails_fast_when_a_node_exits(net: LocalNet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NODE_EXIT", "1")
    net.start()
    with pytest.raises(ClusterError) as info:
        trio.run(ready, net)
    message = str(info.value)
    assert message.splitlines()[0].startswith("node-")
    assert "exited with code 3" in message.splitlines()[0]
    assert "fatal: cannot open the store" in message
    assert "logs/node-" in message


def test_wait_ready_waits_for_peers(net: LocalNet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NODE_PEERS", "1")  # needs min(8, 3 - 1) = 2
    net.start()
    with pytest.raises(trio.TooSlowError):
        trio.run(ready, net, None, 1.0)
    assert set(net.running()) == {"node-0", "node-1", "node-2"}  # waiting stops nothing


def test_wait_ready_refuses_another_node_on_the_expected_port(net: LocalNet) -> None:
    net.start()
    trio.run(ready, net)
    # cluster.json says node-1 listens where node-0 does: node-0 answers there, with node-0's id.
    entries = [
        dataclasses.replace(n, port=net.cluster.node("node-0").port) if n.name == "node-1" else n
        for n in net.cluster.nodes
    ]
    wrong = LocalNet(dataclasses.replace(net.cluster, nodes=tuple(entries)))
    with pytest.raises(ClusterError) as info:
        trio.run(ready, wrong, ["node-1"])
    first = str(info.value).splitlines()[0]
    assert first.startswith("node-1: ") and "answers as node" in first
    assert net.cluster.node("node-0").node_id[:16] in first
    # The same for a cluster.json of another chain.
    other_chain = LocalNet(dataclasses.replace(net.cluster, chain_id=bytes(32)))
    with pytest.raises(ClusterError, match="of chain 0000"):
        trio.run(ready, other_chain, ["node-0"])


def test_stop_never_signals_a_foreign_pid(net: LocalNet) -> None:
    # A pid recorded for node-0 that now belongs to another program (pid reuse) is left alone, both
    # with the creation time recorded and without (an old pids.json).
    other = subprocess.Popen(["sleep", "30"])
    try:
        for record in ({"pid": other.pid, "created": 1.0}, other.pid):
            (net.directory / "pids.json").write_text(json.dumps({"node-0": record}))
            assert LocalNet.open(net.directory).running() == {}
            results = LocalNet.open(net.directory).stop("node-0", grace=1)
            assert [(r.name, r.outcome) for r in results] == [("node-0", "not running")]
            assert other.poll() is None
            assert not (net.directory / "pids.json").exists()
    finally:
        other.kill()
        other.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="psutil's Linux boot time (btime)")
def test_a_clock_step_that_moves_the_boot_time_does_not_orphan_the_nodes(
    net: LocalNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # psutil's create_time() is boot time + time since boot, and the boot time (/proc/stat's btime,
    # whole seconds from the wall clock) moves by a second when a clock adjustment carries it across a
    # boundary: the nodes must still be recognized as this cluster's and stopped.
    pids = net.start()
    trio.run(ready, net)
    recorded = json.loads((net.directory / "pids.json").read_text())["node-0"]["created"]
    import psutil._pslinux as linux  # what psutil.boot_time() and create_time() read on Linux

    real = linux.boot_time
    monkeypatch.setattr(linux, "boot_time", lambda: real() + 1.0)
    assert abs(psutil.Process(pids["node-0"]).create_time() - recorded - 1.0) < 0.01  # the step, seen
    other = LocalNet.open(net.directory)  # another `net down` process: no Popen handles
    assert other.running() == pids
    results = other.stop()
    assert {r.name: r.outcome for r in results} == dict.fromkeys(pids, "stopped")
    net.stop()
    assert not any(alive(p) for p in pids.values())


def test_stop_from_another_object_stops_detached_nodes(net: LocalNet) -> None:
    pids = net.start()
    trio.run(ready, net)
    # A second LocalNet (another `net down` process) has no Popen handles; it relies on psutil checks.
    results = LocalNet.open(net.directory).stop()
    assert {r.name: r.outcome for r in results} == dict.fromkeys(pids, "stopped")
    net.stop()  # reaps our children; nothing left to signal
    assert not any(alive(p) for p in pids.values())


def test_a_child_just_started_counts_as_running_before_its_cmdline_is_readable(
    net: LocalNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Popen returns when exec has closed the child's error pipe, which can be before the kernel has set
    # up its argument area: /proc/<pid>/cmdline then reads empty. A child of this object is still ours.
    pids = net.start("node-0")
    monkeypatch.setattr(psutil.Process, "cmdline", lambda self: [])
    assert net.running() == pids
    assert LocalNet.open(net.directory).running() == {}  # without the Popen handle, the check stands
    monkeypatch.undo()
    assert [r.outcome for r in net.kill("node-0")] == ["stopped"]


def test_unknown_node_name(net: LocalNet) -> None:
    with pytest.raises(LocalError, match="no node named 'node-9'"):
        net.stop("node-9")
    with pytest.raises(LocalError, match="no node named 'node-9'"):
        trio.run(net.wait_ready, ["node-9"])


def test_sigterm_ignored_leads_to_kill(tmp_path: Path) -> None:
    script = tmp_path / "p2pnode_stubborn.py"
    marker = tmp_path / "ignoring"
    script.write_text(
        "import pathlib, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(marker)!r}).touch()\n"
        "while True: time.sleep(1)\n"
    )
    cluster = write_cluster(ClusterSpec(validators=1, accounts=0, shielded=False), tmp_path / "c")
    net = LocalNet(cluster, node_command=[sys.executable, str(script)])
    pid = net.start()["node-0"]
    deadline = time.monotonic() + 10
    while not marker.exists():  # wait for the handler to be in place
        assert time.monotonic() < deadline
        time.sleep(0.01)
    (result,) = net.stop(grace=0.5)
    assert (result.outcome, result.pid) == ("killed", pid)
    assert not alive(pid)


async def test_waits_inside_a_trio_run(net: LocalNet) -> None:
    net.start()
    with trio.fail_after(20):
        await net.wait_ready()
        assert (await net.status("node-0"))["name"] == "node-0"
        async with net.client("node-2") as client:
            assert client is not None
    assert net.log_tail("node-0") == []  # the stand-in writes no JSON log


def test_start_in_waves_reports_progress(net: LocalNet) -> None:
    seen: list[tuple[str, int, int]] = []

    async def up() -> None:
        with trio.fail_after(20):
            await net.start_in_waves(wave=2, progress=lambda *p: seen.append(p))
            # The second wave was started only once the first answered.
            assert seen.index(("answering", 2, 3)) < seen.index(("started", 3, 3))
            await net.wait_ready(progress=lambda *p: seen.append(p))

    trio.run(up)
    assert set(net.running()) == {"node-0", "node-1", "node-2"}
    assert seen[0] == ("started", 2, 3)
    assert ("answering", 3, 3) in seen and seen[-1] == ("ready", 3, 3)


def test_start_refuses_a_port_taken_by_another_program(net: LocalNet) -> None:
    entry = net.cluster.node("node-1")
    with socket.create_server((entry.host, entry.port)):
        with pytest.raises(LocalError, match=rf"node-1: cannot listen on {entry.address}"):
            net.start()
        with pytest.raises(LocalError, match="node-1"):
            trio.run(lambda: net.start_in_waves(wave=1))
    assert net.running() == {}  # nothing was started, not even node-0


def test_memory_and_cluster_status(net: LocalNet) -> None:
    net.start()
    trio.run(ready, net)
    memory = net.memory()
    assert [m.name for m in memory] == ["node-0", "node-1", "node-2"]
    for m in memory:
        assert m.pid == net.running()[m.name]
        assert m.rss > 2**20 and m.tree_rss >= m.rss and m.processes >= 1
        assert m.role == net.cluster.node(m.name).role
    status = trio.run(cluster_status, net)
    assert status.healthy and status.roots == ["ab" * 32] and status.running == 3
    assert status.memory.nodes == 3 and status.memory.max_rss == max(m.rss for m in status.nodes if m.rss)
    assert [n.ready for n in status.nodes] == [True] * 3

    net.stop("node-2")
    assert [m.name for m in net.memory()] == ["node-0", "node-1"]
    status = trio.run(cluster_status, net)
    assert not status.healthy and not status.roots_agree and status.running == 2
    down = status.nodes[2]
    assert (down.pid, down.rss, down.root, down.error) == (None, None, None, "not running")
    doc = json.loads(json.dumps(status.to_json()))
    assert doc["running"] == 2 and doc["memory"]["nodes"] == 2


def test_net_status_command(net: LocalNet, capsys: pytest.CaptureFixture[str]) -> None:
    from p2pnode.cli import main as cli

    net.start()
    trio.run(ready, net)
    assert cli.main(["net", "status", "--dir", str(net.directory)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = ["node", "role", "pid", "rss", "MiB", "tree", "MiB", "peers", "applied", "root"]
    assert lines[0].split() == header
    assert [ln.split()[0] for ln in lines[1:4]] == ["node-0", "node-1", "node-2"]
    assert "3/3 running, 3 answering; rss per node median" in lines[4]
    assert lines[5] == "state roots agree on every node: " + "ab" * 32
    assert cli.main(["net", "status", "--dir", str(net.directory), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["roots_agree"] is True
    net.stop("node-0")
    assert cli.main(["net", "status", "--dir", str(net.directory)]) == 1
    assert "STATE ROOTS DIFFER" in capsys.readouterr().out
