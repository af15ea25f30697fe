"""A four-validator cluster over real TCP, driven through the command line, and hostile bytes on its port."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from p2pnode.client import fetch_status
from p2pnode.localnet import LocalNet
from tests.system.conftest import cli, cli_json, log_events, running_net, stop_any, wait_until

pytestmark = pytest.mark.slow


def _alive(pid: int, config: Path) -> bool:
    """Is ``pid`` a live, non-zombie process whose command line names ``config``?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat[stat.rfind(b")") + 2 :].split()[0]
    return state not in (b"Z", b"X") and str(config).encode() in cmdline


def test_net_up_status_pay_down(tmp_path: Path) -> None:
    d = tmp_path / "cluster"
    try:
        out = cli("net", "up", "--validators", "4", "--accounts", "4", "--dir", str(d)).stdout
        assert "cluster ready" in out
        testnet = json.loads((d / "cluster.json").read_text())
        pids = LocalNet.open(d).pids()
        assert sorted(pids) == [n["name"] for n in testnet["nodes"]]
        addrs = [f"{n['host']}:{n['port']}" for n in testnet["nodes"]]

        statuses = [cli_json("status", "--node", a, "--json") for a in addrs]
        assert [s["peer_count"] for s in statuses] == [3, 3, 3, 3]
        assert {s["chain_id"] for s in statuses} == {testnet["chain_id"]}
        assert [s["pid"] for s in statuses] == [pids[n["name"]] for n in testnet["nodes"]]

        # One payment per payer, each through a different node; every one settles where it was sent.
        accounts = [str(d / a) for a in testnet["accounts"]]
        for i, addr in enumerate(addrs):
            payee = accounts[(i + 1) % len(accounts)]
            res = cli_json(
                "pay", "--node", addr, "--from", accounts[i], "--to", payee, "--amount", "7", "--json"
            )
            assert res["settled"] is True, res
            assert res["seq"] == 0
            assert len(res["tx"]) == 64 and res["settlement_ms"] > 0

        # Four transfers of 7 in a ring: every balance is back where it was, on every node.
        def converged() -> list[dict[str, Any]] | None:
            infos = [cli_json("status", "--node", a, "--json") for a in addrs]
            return infos if all(s["applied"] == 4 for s in infos) else None

        infos = wait_until("every node applied the 4 payments", converged, timeout=30)
        assert len({s["root"] for s in infos}) == 1

        refused = cli("pay", "--node", addrs[0], "--from", accounts[0], "--to", accounts[1],
                      "--amount", str(10**15), "--json", check=False)
        assert refused.returncode == 1
        doc = json.loads(refused.stdout)
        assert doc["settled"] is False and doc["error"].startswith("insufficient funds"), doc

        down = cli("net", "down", "--dir", str(d)).stdout
        assert down.count("stopped node-") == 4, down
        for name, pid in pids.items():
            assert not _alive(pid, d / f"{name}.toml"), f"{name} (pid {pid}) still running after net down"
        assert not (d / "pids.json").exists()
    finally:
        stop_any(d)


# -- hostile input over TCP ----------------------------------------------------------------------------
HANDSHAKE_TIMEOUT_S = 0.5


@pytest.fixture(scope="module")
def small_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    """Four validators whose handshake timeout is short enough to watch it fire."""
    base = tmp_path_factory.mktemp("hostile")
    definition = base / "cluster.toml"
    definition.write_text(
        "[cluster]\n"
        'chain_name = "hostile"\n'
        "validators = 4\n"
        "accounts = 2\n"
        "base_port = 0\n"
        "\n"
        "[defaults.peers]\n"
        f"handshake_timeout_s = {HANDSHAKE_TIMEOUT_S}\n"
    )
    with running_net(base / "cluster", definition=definition) as c:
        yield c


def _frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


HOSTILE: dict[str, bytes] = {
    # A small length prefix followed by bytes that are not msgpack at all (0xc1 is never used).
    "garbage": _frame(b"\xc1" * 16),
    # Two gigabytes announced: must be refused before anything is allocated.
    "huge_length": struct.pack(">I", 2**31) + b"\x00" * 8,
    # Well-formed frame and msgpack, but a map where a message array is expected.
    "wrong_shape": _frame(msgpack.packb({"hello": [1, 2, 3]})),
    # A well-formed array with a tag no message has.
    "unknown_tag": _frame(msgpack.packb([250, b"x", 1])),
    # Connect and never speak.
    "silent": b"",
}
# What the node's log line must name, per case.
EXPECTED_REASON = {
    "garbage": "msgpack",
    "huge_length": "exceeds maximum",
    "wrong_shape": "array",
    "unknown_tag": "tag",
    "silent": "timeout",
}


def _rejections(c: LocalNet, name: str) -> list[dict[str, Any]]:
    return log_events(c.cluster.node(name).log, "message_rejected", "handshake_refused")


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_bytes_do_not_break_the_node(small_cluster: LocalNet, case: str) -> None:
    c = small_cluster
    name = "node-0"
    host, port = c.cluster.node(name).host, c.cluster.node(name).port
    before = len(_rejections(c, name))

    with socket.create_connection((host, port), timeout=10) as sock:
        if HOSTILE[case]:
            sock.sendall(HOSTILE[case])
        # The node closes the connection (after at most an error reply), whatever it was sent.
        sock.settimeout(HANDSHAKE_TIMEOUT_S * 4 + 5)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
            assert len(received) < 65536, "the node keeps talking to a hostile client"

    new = wait_until(
        f"a message_rejected / handshake_refused line for {case}",
        lambda: _rejections(c, name)[before:],
        timeout=10,
    )
    assert all(isinstance(line.get("reason"), str) and line["reason"] for line in new), new
    assert any(EXPECTED_REASON[case] in line["reason"] for line in new), new

    # Still up, still serving clients, still connected to its peers.
    assert fetch_status(host, port).peer_count == 3
    assert c.running().keys() == set(c.names)
