"""A quick subset of the fault scenarios, run through ``p2pnode scenario run`` as a user would.

Real node processes on 127.0.0.1; each run stops its nodes before it returns (the runner's
``finally``), and the test checks that none is left behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from p2pnode.localnet import LocalNet

ROOT = Path(__file__).parents[2]
QUICK = Path(__file__).parent / "scenarios"

pytestmark = pytest.mark.slow


def run(path: Path, directory: Path) -> tuple[int, dict[str, object], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "p2pnode", "scenario", "run", str(path), "--dir", str(directory), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert not LocalNet.open(directory).running(), "the runner left nodes running"
    report = json.loads((directory / "report.json").read_text())
    return proc.returncode, report, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["quick-crash-restart", "quick-partition-heal"])
def test_quick_scenario_passes(name: str, tmp_path: Path) -> None:
    code, report, output = run(QUICK / f"{name}.toml", tmp_path / name)
    assert code == 0, output[-3000:]
    assert report["passed"] is True
    assert report["violations"] == []
    names = {c["name"] for c in report["checks"]}  # type: ignore[union-attr]
    assert {
        "unique_certificates",
        "same_root",
        "acknowledged_applied",
        "supply_conserved",
        "no_crash",
        "memory_bounded",
        "min_settled",
    } <= names


def test_quick_client_attack_is_bounded_and_penalized(tmp_path: Path) -> None:
    """A slowloris attack on one validator's client port: every slow connection is cut, the victim logs
    why, and honest payments stay within 3x of their latency before the attack."""
    code, report, output = run(QUICK / "quick-attack-slowloris.toml", tmp_path / "attack")
    assert code == 0, output[-3000:]
    checks = {c["name"]: c for c in report["checks"]}  # type: ignore[union-attr,index]
    assert checks["latency_under_attack"]["ok"] and checks["attacker_penalized"]["ok"]
    assert checks["memory_bounded"]["ok"]
    attack: Any = report["attack"]
    (rec,) = attack["client_attacks"]
    assert rec["kind"] == "slowloris" and rec["opened"] == 30 and rec["cut"] == 30
    assert attack["latency"]["baseline"]["payments"] >= 20 and attack["latency"]["ratio"] <= 3.0
    victim = attack["penalized"]["node-1"]
    assert victim["refusals"] >= 1 and victim["first_event"] == "client_closed"
    assert "frame not completed" in victim["first_reason"]


@pytest.mark.parametrize("name", ["crash-at-acknowledgement", "restart-validators-mid-quorum"])
def test_crash_scenario_passes(name: str, tmp_path: Path) -> None:
    """Whole-cluster kill -9 at the instant of an acknowledgement, and validators killed while orders
    wait for their last vote: nothing acknowledged is lost, nothing accepted is stranded, no account is
    frozen. Each runs in under 40 s on a 2-core machine."""
    code, doc, output = run(ROOT / "configs" / "scenarios" / f"{name}.toml", tmp_path / name)
    assert code == 0, output[-3000:]
    report: dict[str, Any] = doc
    names = {c["name"] for c in report["checks"]}
    assert {"acknowledged_applied", "accepted_settle", "payers_can_pay", "same_root"} <= names
    kills = [t for t in report["timeline"] if t["action"].startswith("kill")]
    assert len(kills) >= 2
    if name == "crash-at-acknowledgement":
        # Each crash came at an acknowledgement, not at the fallback timeout.
        assert all("acknowledged" in t.get("trigger", "") for t in kills), kills
        assert report["warnings"] == []


def test_forgetting_locks_is_caught(tmp_path: Path) -> None:
    code, report, output = run(ROOT / "configs" / "scenarios" / "violation-forget-locks.toml", tmp_path / "v")
    assert code == 1, output[-3000:]
    assert report["expect_violation"] is True
    # Two certificates for one (sender, seq): caught by the certificate check (and, as a consequence,
    # by the diverging roots).
    assert "unique_certificates" in report["violations"]  # type: ignore[operator]


def test_sigterm_stops_the_runner_and_its_nodes(tmp_path: Path) -> None:
    """A runner stopped with SIGTERM (a CI timeout, a user's kill) cleans up like Ctrl-C: its nodes
    are stopped before it exits 143."""
    directory = tmp_path / "term"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p2pnode",
            "scenario",
            "run",
            str(QUICK / "quick-crash-restart.toml"),
            "--dir",
            str(directory),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # the runner prints its progress; the cluster is up at this line
            seen.append(line)
            if "cluster ready" in line:
                break
        assert any("cluster ready" in s for s in seen), "".join(seen)[-2000:]
        assert LocalNet.open(directory).running()
        proc.terminate()
        assert proc.wait(timeout=60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        net = LocalNet.open(directory)
        left = net.running()
        if left:
            net.kill()
    assert not left, f"nodes left running after SIGTERM: {left}"
