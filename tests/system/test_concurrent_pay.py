"""Two ``p2pnode pay`` from one account file through two different nodes at once never collide:
the wallet's lock and state file give them consecutive seqs (scripts/concurrent_pay.py, 5 rounds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.system.conftest import REPO, stop_any

pytestmark = pytest.mark.slow


def test_two_simultaneous_pays_from_one_account_never_collide(tmp_path: Path) -> None:
    d = tmp_path / "cluster"
    try:
        proc = subprocess.run(
            [
                sys.executable,
                str(REPO / "scripts" / "concurrent_pay.py"),
                "--tries",
                "5",
                "--dir",
                str(d),
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=REPO,
            check=False,
        )
        assert proc.stdout.strip(), f"exit {proc.returncode}\n{proc.stderr[-4000:]}"
        result = json.loads(proc.stdout)
        assert result["collisions"] == 0, result
        assert result["next_seq_per_node"] == [10, 10, 10, 10], result
        assert proc.returncode == 0, proc.stderr[-4000:]
    finally:
        stop_any(d)
