"""``p2pnode status`` against a stand-in node that answers one StatusRequest per frame."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from p2pnode.cli import main as cli
from p2pnode.cli.status import format_status
from p2pnode.client import jsonable
from p2pnode.wire import codec
from p2pnode.wire.messages import ErrorReply, Message, StatusReply, StatusRequest, decode

INFO: dict[str, Any] = {
    "name": "node-0",
    "node_id": bytes(range(32)),
    "role": "validator",
    "chain_id": b"\xab" * 32,
    "peer_count": 2,
    "peers": [{"id": "aa" * 4, "addr": "127.0.0.1:7001"}, {"id": "bb" * 4, "addr": "127.0.0.1:7002"}],
    "applied": 17,
    "state_root": b"\x01" * 32,
    "gossip": {"received": 40, "duplicates": 3, "invalid": 0},
    "zz_new_counter": 5,
}


def serve_one(reply: Message) -> Iterator[int]:
    srv = socket.create_server(("127.0.0.1", 0))
    port = int(srv.getsockname()[1])

    def run() -> None:
        conn, _ = srv.accept()
        with conn:
            frames = codec.FrameDecoder().feed(conn.recv(65536))
            assert isinstance(decode(frames[0]), StatusRequest)
            conn.sendall(codec.frame(reply.encode()))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield port
    thread.join(timeout=5)
    srv.close()


@pytest.fixture
def node() -> Iterator[int]:
    yield from serve_one(StatusReply(info=INFO))


@pytest.fixture
def refusing_node() -> Iterator[int]:
    yield from serve_one(ErrorReply(reason="busy"))


def test_readable_block(node: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--node", f"127.0.0.1:{node}"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["name:", "node-0"]
    assert "ab" * 32 in out and bytes(range(32)).hex() in out
    assert any("aaaaaaaa" in line and "127.0.0.1:7001" in line for line in lines)
    assert any(line.split() == ["applied:", "17"] for line in lines)
    assert any(line.split() == ["duplicates:", "3"] for line in lines)
    assert lines[-1].split() == ["zz_new_counter:", "5"]  # unknown keys are shown too, last


def test_json(node: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--node", f"127.0.0.1:{node}", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == jsonable(INFO)
    assert doc["state_root"] == "01" * 32
    assert doc["gossip"]["received"] == 40


def test_error_reply_is_one_line(refusing_node: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--node", f"127.0.0.1:{refusing_node}"]) == 2
    assert capsys.readouterr().err == "p2pnode: error: busy\n"


def test_format_handles_empty_and_odd_values() -> None:
    assert format_status({}) == ""
    text = format_status({"peers": [], "flag": True, "none": None, "x": 1.5, "nested": {}})
    assert "peers:" in text and "(none)" in text and "yes" in text and "1.5" in text
