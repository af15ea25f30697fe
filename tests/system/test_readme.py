"""The README's two commands are the ones it says, and they work."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.system.conftest import REPO

pytestmark = pytest.mark.slow


def readme_commands() -> list[str]:
    """The commands of the first fenced shell block of README.md, one per non-comment line."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^```(?:sh|bash|console)?\n(.*?)^```", text, re.S | re.M)
    assert match, "README.md has no code block"
    return [ln.strip() for ln in match.group(1).splitlines() if ln.strip() and not ln.startswith("#")]


def test_readme_opens_with_make_demo_and_make_test() -> None:
    assert readme_commands() == ["make demo", "make test"]


def test_make_test_runs_pytest_over_tests() -> None:
    # Running `make test` from inside the suite would recurse; check what it runs instead.
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^test:[^\n]*\n((?:\t[^\n]*\n)+)", makefile, re.M)
    assert match, "Makefile has no test target"
    recipe = match.group(1)
    assert re.search(r"-m pytest\b", recipe), recipe
    assert "-m" not in recipe.split("pytest", 1)[1].replace("-q", ""), f"test target filters tests: {recipe}"
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert config["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests", "examples"]


def test_make_demo(tmp_path: Path) -> None:
    # The demo keeps its cluster directory under the temporary directory: point that at tmp_path.
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        ["make", "--no-print-directory", "demo"],
        cwd=REPO, capture_output=True, text=True, timeout=240, env=env,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"make demo exited {proc.returncode}\n{out[-4000:]}\n{proc.stderr[-4000:]}"
    assert re.search(r"all 4 nodes agree: state root [0-9a-f]{64}", out), out[-4000:]
    assert len(re.findall(r"settled in +[0-9.]+ ms", out)) == 40, out[-4000:]
    assert "refused by node-0: insufficient funds" in out
    assert "latency figure written to" in out
    roots = re.findall(r"root ([0-9a-f]{16})  gossip", out)
    assert len(roots) == 4 and len(set(roots)) == 1, roots
    # The shielded section: every step proved and settled, the recipient found its notes, and the
    # roots above (which cover the notes) were read after it.
    for step in ("shield", "zpay", "unshield"):
        assert re.search(rf"^  {step} .* proof +\d+ ms, settlement +[0-9.]+ ms$", out, re.M), step
    assert re.search(r"^    note [0-9a-f]{16}  value +1200  spent$", out, re.M), out[-4000:]
    assert re.search(r"^    note [0-9a-f]{16}  value +700  unspent$", out, re.M), out[-4000:]
    assert "2 notes, unspent total 700" in out
    assert out.index("unspent total 700") < out.index("all 4 nodes agree")
    assert re.findall(r"applied (\d+) +notes (\d+)  root", out) == [("43", "4")] * 4, out[-4000:]
    (cluster_dir,) = tmp_path.glob("p2pnode-demo-*")
    assert (cluster_dir / "latency.png").stat().st_size > 0
    assert not (cluster_dir / "pids.json").exists()
