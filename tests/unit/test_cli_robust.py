"""``p2pnode pay``, ``balance`` and ``status`` through ``cli.main`` against a stand-in node on a real
socket: bounded by --timeout, one line on stderr for every failure, exit 1 for refusals, 2 otherwise."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from p2pnode.cli import main as cli
from p2pnode.crypto import SpendingKey, address_of
from p2pnode.wire.messages import GetAccount, StatusRequest, SubmitOrder
from p2pnode.wire.types import Address
from tests.unit.fake_node import FakeNode, threaded_server

KEY = SpendingKey.from_bytes(bytes(31) + b"\x07")
SENDER = Address(address_of(KEY.public))
TO = "22" * 20
SLOT = {"sender": SENDER.hex(), "seq": 0, "orders": {"ab" * 32: "v0,v1", "cd" * 32: "v2,v3"}}


@pytest.fixture
def account(tmp_path: Path) -> str:
    path = tmp_path / "account-0.json"
    path.write_text(json.dumps({"address": SENDER.hex(), "spending_key": KEY.to_bytes().hex()}))
    return str(path)


def error_line(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """(stdout, the one error line on stderr)."""
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("p2pnode: error: "), lines[0]
    return captured.out, lines[0].removeprefix("p2pnode: error: ")


def pay(port: int, account: str, *extra: str) -> int:
    return cli.main(["pay", "--node", f"127.0.0.1:{port}", "--from", account, "--to", TO, *extra])


def test_silent_node_and_timeout(account: str, capsys: pytest.CaptureFixture[str]) -> None:
    with threaded_server(FakeNode(silent=True)) as port:
        start = time.monotonic()
        assert pay(port, account, "--amount", "5", "--timeout", "0.3") == 2
        assert time.monotonic() - start < 3
    out, line = error_line(capsys)
    assert out == "" and line == f"no status reply from 127.0.0.1:{port} within 0.3s"


def test_not_settled_goes_to_stderr_with_json_on_stdout(
    account: str, capsys: pytest.CaptureFixture[str]
) -> None:
    node = FakeNode(accounts={SENDER: [100, 0]}, settle=False)
    with threaded_server(node) as port:
        assert pay(port, account, "--amount", "5", "--timeout", "0.5", "--json") == 1
    out, line = error_line(capsys)
    assert line.startswith("not settled within 0.5s: tx ")
    doc = json.loads(out)
    assert doc["settled"] is False and doc["error"] == line and doc["exit_code"] == 1


@pytest.mark.parametrize("request_type", [StatusRequest, GetAccount])
def test_wrong_reply_type(account: str, capsys: pytest.CaptureFixture[str], request_type: type) -> None:
    with threaded_server(FakeNode(accounts={SENDER: [100, 0]}, wrong=request_type)) as port:
        assert pay(port, account, "--amount", "5") == 2
    _, line = error_line(capsys)
    assert line.startswith(f"127.0.0.1:{port}: node answered ") and line.endswith(
        f" to {request_type.__name__}"
    )


@pytest.mark.parametrize("amount", ["18446744073709551616", "0", "-3"])
def test_amount_must_be_a_positive_u64(account: str, capsys: pytest.CaptureFixture[str], amount: str) -> None:
    assert pay(1, account, "--amount", amount) == 2
    _, line = error_line(capsys)
    assert line.startswith("--amount ")
    if amount.startswith("1844"):
        assert "does not fit in u64" in line


def test_connection_reset(account: str, capsys: pytest.CaptureFixture[str]) -> None:
    with threaded_server(FakeNode(accounts={SENDER: [100, 0]}), reset_on=SubmitOrder) as port:
        assert pay(port, account, "--amount", "5") == 2
    _, line = error_line(capsys)
    assert line.startswith(f"connection to 127.0.0.1:{port} lost: ")


def test_refusal_exits_1_on_stderr(account: str, capsys: pytest.CaptureFixture[str]) -> None:
    node = FakeNode(accounts={SENDER: [1, 0]}, refuse="insufficient funds: balance 1, amount 5")
    with threaded_server(node) as port:
        assert pay(port, account, "--amount", "5") == 1
    out, line = error_line(capsys)
    assert out == "" and line == "insufficient funds: balance 1, amount 5"


def test_pay_settles(account: str, capsys: pytest.CaptureFixture[str]) -> None:
    with threaded_server(FakeNode(accounts={SENDER: [100, 0]})) as port:
        assert pay(port, account, "--amount", "5", "--json") == 0
        assert pay(port, account, "--amount", "5", "--json") == 0
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["settled"], d["seq"], d["balance"]) for d in docs] == [(True, 0, 95), (True, 1, 90)]
    assert json.loads(Path(account + ".state.json").read_text())["next_seq"] == 2


def blocked_node() -> FakeNode:
    return FakeNode(accounts={SENDER: [100, 0]}, blocked="blocked: seq 0 split 2/2", blocked_slots=[SLOT])


def test_pay_reports_a_blocked_slot(account: str, capsys: pytest.CaptureFixture[str]) -> None:
    with threaded_server(blocked_node()) as port:
        assert pay(port, account, "--amount", "5", "--json") == 1
    out, line = error_line(capsys)
    assert line.startswith(f"account {SENDER.hex()} seq 0 is blocked: conflicting orders ")
    assert "(2 votes)" in line and line.endswith("seq 0 split 2/2")
    doc = json.loads(out)
    assert doc["settled"] is False and doc["seq"] == 0 and doc["orders"]["ab" * 32] == ["v0", "v1"]


def test_balance(account: str, capsys: pytest.CaptureFixture[str]) -> None:
    with threaded_server(FakeNode(accounts={SENDER: [100, 3]})) as port:
        assert cli.main(["balance", "--node", f"127.0.0.1:{port}", account]) == 0
        assert capsys.readouterr().out == f"{account}: balance 100, next seq 3\n"
        assert cli.main(["balance", "--node", f"127.0.0.1:{port}", SENDER.hex(), "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc == {"address": SENDER.hex(), "balance": 100, "next_seq": 3, "blocked": ""}


def test_balance_of_a_blocked_account(account: str, capsys: pytest.CaptureFixture[str]) -> None:
    with threaded_server(blocked_node()) as port:
        assert cli.main(["balance", "--node", f"127.0.0.1:{port}", account]) == 1
    out, line = error_line(capsys)
    assert out == f"{account}: balance 100, next seq 0\n"
    assert line.startswith(f"account {SENDER.hex()} seq 0 is blocked: conflicting orders ")


def test_status_with_blocked_slots(capsys: pytest.CaptureFixture[str]) -> None:
    with threaded_server(blocked_node()) as port:
        assert cli.main(["status", "--node", f"127.0.0.1:{port}", "--json"]) == 1
    out, line = error_line(capsys)
    assert json.loads(out)["blocked_slots"] == [SLOT]  # the normal output first
    assert line.startswith(f"account {SENDER.hex()} seq 0 is blocked: conflicting orders ")


def test_status_silent_node_json(capsys: pytest.CaptureFixture[str]) -> None:
    with threaded_server(FakeNode(silent=True)) as port:
        assert cli.main(["status", "--node", f"127.0.0.1:{port}", "--json", "--timeout", "0.2"]) == 2
    out, line = error_line(capsys)
    assert json.loads(out) == {"error": line, "exit_code": 2}


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("p2pnode ")


@pytest.mark.parametrize("command", ["shield", "zpay", "unshield"])
def test_shielded_amounts_must_fit_in_u64(
    account: str, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    argv = [command, "--node", "127.0.0.1:1", "--from", account, "--to", TO, "--amount", str(2**64)]
    assert cli.main(argv) == 2
    _, line = error_line(capsys)
    assert line == f"--amount {2**64} does not fit in u64 (at most {2**64 - 1})"


def test_run_exit_codes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``p2pnode run`` stopped by Ctrl-C exits 130, by SIGTERM 0 (the node itself is not started here)."""
    from p2pnode.net import main as net_main

    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 0)):
        monkeypatch.setattr("p2pnode.net.main.trio.run", lambda *a, s=signum, **k: int(s))
        assert net_main.main_run(tmp_path / "node-0.toml") == code


def test_verifier_workers_ignore_sigint() -> None:
    import inspect

    from p2pnode.net import verifier

    # Every worker process runs _worker_main, which starts with _worker_init.
    assert "_worker_init()" in inspect.getsource(verifier._worker_main)
    before = signal.getsignal(signal.SIGINT)
    try:
        verifier._worker_init()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
