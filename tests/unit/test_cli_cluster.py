"""The Cluster API with stand-in node processes: a small script that answers status requests like a
node would. It exercises process handling (start, readiness, stop, kill, pause, pid safety) without the
node driver."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p2pnode.cli.cluster import Cluster, ClusterError
from p2pnode.cli.testnet import ClusterSpec, write_testnet
from p2pnode.errors import LocalError

# Its file name contains "p2pnode", as the pid checks require of every node command line.
FAKE_NODE = """
import os, socket, sys, threading, tomllib
from p2pnode.wire import codec
from p2pnode.wire.messages import StatusReply, decode

path = sys.argv[sys.argv.index("--config") + 1]
with open(path, "rb") as fh:
    doc = tomllib.load(fh)
if os.environ.get("FAKE_NODE_EXIT"):
    print("fatal: cannot open the store", file=sys.stderr)
    sys.exit(3)
host, port = doc["node"]["listen"].rsplit(":", 1)
srv = socket.create_server((host, int(port)))
info = {"name": doc["node"]["name"], "peer_count": int(os.environ.get("FAKE_NODE_PEERS", "99"))}

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
def cluster(tmp_path: Path) -> Cluster:
    script = tmp_path / "p2pnode_fake_node.py"
    script.write_text(FAKE_NODE)
    write_testnet(tmp_path / "c", ClusterSpec(validators=2, full_nodes=1, accounts=1))
    return Cluster(tmp_path / "c", node_command=[sys.executable, str(script)])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_up_status_stop_restart_down(cluster: Cluster) -> None:
    with cluster:
        cluster.up(timeout=20)
        pids = cluster.pids()
        assert set(pids) == {"node-0", "node-1", "node-2"}
        assert json.loads((cluster.directory / "pids.json").read_text()) == pids
        assert all(alive(p) for p in pids.values())
        assert cluster.status("node-1")["name"] == "node-1"
        assert set(cluster.addresses()) == set(pids)

        with pytest.raises(LocalError, match="already running"):
            cluster.start_node("node-0")
        with pytest.raises(LocalError, match="already running"):
            cluster.up()

        stopped = cluster.stop_node("node-1")
        assert (stopped.name, stopped.pid, stopped.outcome) == ("node-1", pids["node-1"], "stopped")
        assert not alive(pids["node-1"])
        assert "node-1" not in cluster.pids()
        assert cluster.stop_node("node-1").outcome == "not running"

        new_pid = cluster.restart_node("node-1", timeout=20)
        assert new_pid != pids["node-1"] and alive(new_pid)

        assert cluster.kill_node("node-2").outcome == "stopped"
        assert not alive(pids["node-2"])

        cluster.pause_node("node-0")
        with pytest.raises(LocalError, match="node-0"):
            cluster.status("node-0", timeout=0.3)
        cluster.resume_node("node-0")
        assert cluster.status("node-0")["name"] == "node-0"
        cluster.pause_node("node-0")  # down must still stop a paused node
    # __exit__ ran down()
    assert not (cluster.directory / "pids.json").exists()
    assert not alive(pids["node-0"]) and not alive(new_pid)
    out = (cluster.directory / "logs" / "node-1.out").read_text()
    assert out.count("=== ") == 2  # one header per start, appended


def test_up_fails_on_exit_and_stops_the_rest(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NODE_EXIT", "1")
    with pytest.raises(ClusterError) as info:
        cluster.up(timeout=20)
    message = str(info.value)
    assert message.splitlines()[0].startswith("node-")
    assert "exited with code 3" in message.splitlines()[0]
    assert "fatal: cannot open the store" in message
    assert "logs/node-" in message
    assert not (cluster.directory / "pids.json").exists()


def test_up_times_out_when_peers_are_missing(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NODE_PEERS", "1")  # needs min(8, 3 - 1) = 2
    start = time.monotonic()
    with pytest.raises(ClusterError) as info:
        cluster.up(timeout=1.0)
    assert time.monotonic() - start < 10
    first = str(info.value).splitlines()[0]
    assert "not ready within 1s" in first and "peer_count 1 < 2" in first
    assert not (cluster.directory / "pids.json").exists()
    assert cluster.running() == {}


def test_down_never_signals_a_foreign_pid(cluster: Cluster) -> None:
    # A pid recorded for node-0 that now belongs to another program (pid reuse) is left alone.
    other = subprocess.Popen(["sleep", "30"])
    try:
        (cluster.directory / "pids.json").write_text(json.dumps({"node-0": other.pid}))
        results = Cluster(cluster.directory).down(timeout=1)
        assert [(r.name, r.outcome) for r in results] == [("node-0", "not running")]
        assert other.poll() is None
        assert not (cluster.directory / "pids.json").exists()
    finally:
        other.kill()
        other.wait()


def test_down_from_another_object_stops_detached_nodes(cluster: Cluster) -> None:
    cluster.up(timeout=20)
    pids = cluster.pids()
    # A second Cluster (another `net down` process) has no Popen handles; it relies on /proc checks.
    results = Cluster(cluster.directory).down(timeout=10)
    assert {r.name: r.outcome for r in results} == dict.fromkeys(pids, "stopped")
    cluster.down()  # reaps our children; nothing left to signal
    assert not any(alive(p) for p in pids.values())


def test_existing_cluster_with_other_shape_is_refused(cluster: Cluster) -> None:
    with pytest.raises(LocalError, match="already holds a cluster of 2 validators and 1 full"):
        cluster.up(validators=4)


def test_unknown_node_name(cluster: Cluster) -> None:
    with pytest.raises(LocalError, match="no node named 'node-9'"):
        cluster.stop_node("node-9")


def test_sigterm_ignored_leads_to_kill(tmp_path: Path) -> None:
    script = tmp_path / "p2pnode_stubborn.py"
    marker = tmp_path / "ignoring"
    script.write_text(
        "import pathlib, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(marker)!r}).touch()\n"
        "while True: time.sleep(1)\n"
    )
    write_testnet(tmp_path / "c", ClusterSpec(validators=1, accounts=0))
    cluster = Cluster(tmp_path / "c", node_command=[sys.executable, str(script)])
    pid = cluster.start_node("node-0")
    deadline = time.monotonic() + 10
    while not marker.exists():  # wait for the handler to be in place
        assert time.monotonic() < deadline
        time.sleep(0.01)
    (result,) = cluster.down(timeout=0.5)
    assert (result.outcome, result.pid) == ("killed", pid)
    assert not alive(pid)


async def test_sync_api_works_inside_a_trio_run(cluster: Cluster) -> None:
    # Trio runs cannot nest: the status polling moves to a helper thread when called from async code.
    with cluster:
        cluster.up(timeout=20)
        assert cluster.status("node-0")["name"] == "node-0"
