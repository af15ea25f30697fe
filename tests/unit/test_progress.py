"""Progress of long steps: live status on a terminal, one line per phase elsewhere; the key setup's phases."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from p2pnode.tools.bench_load import OrderProgress
from p2pnode.zk import setup
from p2pnode.zk.progress import COUNT_LINE_S, Progress


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class TtyBuffer(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_without_a_terminal_one_line_per_finished_phase() -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress("zk setup", stream=out, clock=clock)
    assert p.tty is False
    with p.phase("[1/2] compile"):
        clock.t += 2.5
    with pytest.raises(RuntimeError), p.phase("[2/2] keys"):
        clock.t += 1.0
        raise RuntimeError("tool failed")
    assert out.getvalue().splitlines() == [
        "zk setup: [1/2] compile: done in 2.5 s",
        "zk setup: [2/2] keys: failed in 1.0 s",
    ]
    assert "\r" not in out.getvalue()
    assert p.elapsed() == pytest.approx(3.5)


def test_lines_go_to_the_callers_log() -> None:
    got: list[str] = []
    p = Progress("zk setup", stream=io.StringIO(), line=got.append, tty=False)
    p.say("making keys")
    with p.phase("compile"):
        pass
    assert got[0] == "zk setup: making keys" and got[1].startswith("zk setup: compile: done in ")


def test_terminal_status_line_is_rewritten_and_cleared() -> None:
    out = TtyBuffer()
    p = Progress("bench", stream=out)
    assert p.tty is True
    p.start_counting()
    p.count("orders built", 1, 3)
    p.count("orders built", 2, 3)
    p.say("a note")  # clears the status line, prints, redraws it
    p.count("orders built", 3, 3)
    text = out.getvalue()
    assert text.count("\r\x1b[K") >= 4
    assert "bench: orders built 2/3" in text
    assert "bench: a note\n" in text
    assert text.split("\r\x1b[K")[-1].startswith("bench: orders built 3/3 in ")
    assert text.endswith("\n")  # the terminal is left on a fresh line


def test_terminal_phase_ticks_while_the_body_blocks() -> None:
    ticked = threading.Event()

    class Watched(TtyBuffer):
        def write(self, text: str) -> int:
            n = super().write(text)
            if self.getvalue().count("prepare ...") >= 2:  # the first draw and one tick
                ticked.set()
            return n

    out = Watched()
    p = Progress("zk setup", stream=out, tick_s=0.001)
    with p.phase("prepare"):
        assert ticked.wait(10), "the ticker thread never redrew the status line"
    lines = out.getvalue().split("\r\x1b[K")
    assert lines[-1].startswith("zk setup: prepare: done in ") and lines[-1].endswith(" s\n")


def test_counts_without_a_terminal_are_rate_limited() -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress("bench", stream=out, clock=clock)
    p.start_counting()
    for i in range(1, 101):
        clock.t += 0.5  # 50 s in all: a line at the first count, then every 10 s, and the last
        p.count("proofs", i, 100)
    lines = out.getvalue().splitlines()
    assert 5 <= len(lines) <= 7, lines
    assert lines[0] == "bench: proofs 1/100, 2.0/s, about 50 s left"
    assert lines[-1] == "bench: proofs 100/100 in 50.0 s"
    assert COUNT_LINE_S == 10.0


def test_order_progress_reports_the_last_count(capsys: pytest.CaptureFixture[str]) -> None:
    op = OrderProgress("shielded orders built (one proof each)")
    for i in range(1, 4):
        op(i, 3)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("bench: shielded orders built (one proof each) 1/3")
    assert err[-1].startswith("bench: shielded orders built (one proof each) 3/3 in ")


def test_key_setup_reports_every_phase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ensure_circuit_keys with the tools replaced by stand-ins that write their outputs."""
    from p2pnode.zk.paths import ZkPaths

    class Tools:
        snarkjs = Path("snarkjs")
        circom = Path("circom2")
        node_modules = tmp_path

    class Paths:
        cache = tmp_path / "cache"

        def toolchain(self) -> Tools:
            return Tools()

        def tool_versions(self) -> dict[str, str]:
            return {"circom2": "test"}

    def fake_compile(tools: Any, work: Path) -> Path:
        (work / "shielded_js").mkdir()
        (work / "shielded_js" / "shielded.wasm").write_bytes(b"\0asm")
        (work / "shielded.r1cs").write_bytes(b"r1cs")
        return work / "shielded.r1cs"

    def fake_run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
        outputs = [c for c in cmd if c.endswith((".ptau", ".zkey", ".json"))]
        Path(outputs[-1]).write_text(json.dumps({"made by": what}))
        return ""

    monkeypatch.setattr(setup, "_compile", fake_compile)
    monkeypatch.setattr(setup, "_r1cs_size", lambda r1cs: 1877)
    monkeypatch.setattr(setup, "_run", fake_run)
    lines: list[str] = []
    paths: ZkPaths = Paths()  # type: ignore[assignment]
    out = setup.ensure_circuit_keys(paths, log=lines.append)
    assert setup.keys_cached(paths) == out
    assert lines[0].startswith("zk setup: making keys for circuits/shielded.circom in ")
    assert "first time only, about 65-80 s on 2 cores" in lines[0]
    phases = [line.split(":")[1].strip().split("]")[0] + "]" for line in lines[1:-1]]
    assert phases == ["[1/6]", "[2/6]", "[3/6]", "[4/6]", "[5/6]", "[6/6]"]
    assert all(" done in " in line for line in lines[1:-1])
    assert lines[-1].startswith("zk setup: keys ready in ") and lines[-1].endswith(str(out))
    # Cached now: nothing is printed.
    lines.clear()
    assert setup.ensure_circuit_keys(paths, log=lines.append) == out and lines == []
    # The default log (a test session sets one) gets the lines when the caller gives none.
    got: list[str] = []
    setup.set_default_log(got.append)
    try:
        for child in out.iterdir():
            child.unlink()
        out.rmdir()
        setup.ensure_circuit_keys(paths)
    finally:
        setup.set_default_log(None)
    assert got[0].startswith("zk setup: making keys") and "powers of tau 2^11: cached" in got[2]
