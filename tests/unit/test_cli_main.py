"""The command line as a user meets it: one-line errors with exit code 2, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from p2pnode.cli import main as cli
from p2pnode.errors import ConfigError


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("p2pnode: error: ")
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_with_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "node-0.toml"
    assert cli.main(["run", "--config", str(missing)]) == 2
    line = one_error_line(capsys)
    assert str(missing) in line and "no such file" in line


def test_run_with_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[node]\nkey_file = "k"\ngenesis = "g"\ndata_dir = "d"\n[peers]\ntargt = 3\n')
    assert cli.main(["run", "--config", str(path)]) == 2
    assert "peers.targt" in one_error_line(capsys)


@pytest.mark.parametrize("node", ["nohost", "127.0.0.1:", "127.0.0.1:70000", ":7000"])
def test_status_with_bad_node(node: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--node", node]) == 2
    assert "--node" in one_error_line(capsys)


def test_status_with_unreachable_node(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--node", f"127.0.0.1:{closed_port()}"]) == 2
    assert "refused" in one_error_line(capsys).lower()


def test_testnet_with_missing_definition(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["testnet", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o")]
    assert cli.main(args) == 2
    assert "no such file" in one_error_line(capsys)


def test_testnet_writes_and_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "net"
    args = ["testnet", "--validators", "2", "--full-nodes", "1", "--accounts", "1", "--out", str(out)]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert "2 validators, 1 full nodes, 1 accounts" in text
    assert "node-2" in text and "full" in text
    assert (out / "node-2.toml").is_file()
    assert cli.main(args) == 2
    assert "already holds a testnet" in one_error_line(capsys)


def test_net_down_without_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["net", "down", "--dir", str(tmp_path)]) == 0
    assert "no running cluster" in capsys.readouterr().out


def test_net_up_validators_and_config_are_exclusive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["net", "up", "--validators", "2", "--config", "x.toml", "--dir", str(tmp_path)]) == 2
    assert "not allowed with" in capsys.readouterr().err


def test_help_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("testnet", "run", "net", "status", "pay", "bench", "latency"):
        assert command in out
    assert cli.main([]) == 2
    assert cli.main(["bogus"]) == 2
    assert cli.main(["net"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_pay_arguments_reach_the_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def fake(args: object) -> int:
        seen["args"] = args
        return 1

    monkeypatch.setattr(cli, "_cmd_pay", fake)
    argv = ["pay", "--node", "h:1", "--from", "a.json", "--to", "ab" * 20, "--amount", "5", "--json"]
    assert cli.main(argv) == 1
    args = seen["args"]
    assert (args.node, args.from_, args.to, args.amount, args.json, args.timeout) == (  # type: ignore[attr-defined]
        "h:1",
        "a.json",
        "ab" * 20,
        5,
        True,
        30.0,
    )


@pytest.mark.parametrize(
    ("exc", "code", "text"),
    [
        (KeyboardInterrupt(), 130, None),
        (ConfigError("x.toml: unknown key a.b"), 2, "p2pnode: error: x.toml: unknown key a.b"),
        (ConnectionRefusedError(111, "Connection refused"), 2, "p2pnode: error: Connection refused"),
        (ExceptionGroup("g", [ConfigError("grouped")]), 2, "p2pnode: error: grouped"),
        (BaseExceptionGroup("g", [KeyboardInterrupt()]), 130, None),
    ],
)
def test_errors_from_any_command(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    exc: BaseException,
    code: int,
    text: str | None,
) -> None:
    def fail(args: object) -> int:
        raise exc

    monkeypatch.setattr(cli, "_cmd_status", fail)
    assert cli.main(["status", "--node", "h:1"]) == code
    err = capsys.readouterr().err
    if text is None:
        assert err == ""
    else:
        assert err == text + "\n"


def test_unexpected_errors_are_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(args: object) -> int:
        raise ValueError("a bug")

    monkeypatch.setattr(cli, "_cmd_status", fail)
    with pytest.raises(ValueError):
        cli.main(["status", "--node", "h:1"])
