"""The package as users install it: a wheel in a fresh virtual environment, run from outside the checkout.

Builds a wheel from a clean copy of the source tree (so that nothing stale under ``build/`` gets in),
installs it with its dependencies into a new venv (no system site-packages) in a temporary directory,
and runs the commands a user would from a temporary working directory, with a private
``$XDG_CACHE_HOME``, ``PYTHONPATH`` removed and no ``P2PNODE_*`` variable: nothing may come from the
checkout. With Node.js and the repository's ``node_modules`` present, it also makes a shielded testnet
with ``--zk-toolchain`` and a key cache copied from ``build/zk`` (so no keys are computed) and shields.

Resource handling: every cluster directory is stopped with :meth:`LocalNet.stop` in a ``finally``, also
when a step fails or a command times out (``net up`` and the scenario runner start detached nodes).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pnode.errors import LocalError
from p2pnode.localnet import LocalNet
from p2pnode.zk.paths import find_zk_paths

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", "build", "dist", "clusters", "*.egg-info", "__pycache__",
    ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis",
)
_SCENARIO = """\
[scenario]
name = "wheel-smoke"
description = "four validators under light load, no faults"

[cluster]
validators = 4
accounts = 4

[load]
rate = 10
duration_s = 4
payers = 2
timeout_s = 8

[expect]
min_settled = 15
"""


class Env:
    """The fresh venv and the environment its commands run in; records how long each step took."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.venv = root / "venv"
        self.python = self.venv / "bin" / "python"
        self.work = root / "work"  # the working directory of every command: outside the checkout
        self.work.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("P2PNODE_")}
        for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
            env.pop(key, None)
        env["XDG_CACHE_HOME"] = str(root / "xdg-cache")
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        self.env = env
        self.timings: dict[str, float] = {}

    def run(
        self, what: str, cmd: list[str], timeout: float, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        start = time.monotonic()
        try:
            proc = subprocess.run(
                cmd, cwd=self.work, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
            )
        finally:
            self.timings[what] = self.timings.get(what, 0.0) + time.monotonic() - start
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{what}: {' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                f"stderr:\n{proc.stderr[-3000:]}"
            )
        return proc

    def p2pnode(
        self, *args: str, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.run(args[0], [str(self.venv / "bin" / "p2pnode"), *args], timeout, check)


@pytest.fixture
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A wheel of this tree installed into a fresh venv; prints the timings at the end."""
    root = tmp_path_factory.mktemp("wheel")
    assert not root.resolve().is_relative_to(REPO), "the test venv must be outside the checkout"
    env = Env(root)
    src = root / "src"
    shutil.copytree(REPO, src, ignore=_IGNORE, symlinks=True)
    dist = root / "dist"
    pip = [sys.executable, "-m", "pip"]
    env.run("build wheel", [*pip, "wheel", "--no-deps", "-q", "-w", str(dist), str(src)], 300)
    (wheel,) = dist.glob("p2pnode-*.whl")
    env.run("create venv", [sys.executable, "-m", "venv", str(env.venv)], 120)
    env.run("install wheel", [str(env.python), "-m", "pip", "install", "-q", str(wheel)], 600)
    try:
        yield env
    finally:
        print("\nwheel test timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in env.timings.items()))


def node_address(cluster_dir: Path, i: int = 0) -> str:
    node = json.loads((cluster_dir / "cluster.json").read_text())["nodes"][i]
    return f"{node['host']}:{node['port']}"


def shielded_toolchain() -> tuple[Path, Path] | None:
    """The repository's node_modules and its cached circuit-key directory, if Node.js is there."""
    paths = find_zk_paths(search=[REPO])
    try:
        paths.toolchain()
    except LocalError:
        return None
    from p2pnode.zk.setup import ensure_circuit_keys

    # Made once per checkout (build/zk, about a minute) if no other test has made them yet.
    return paths.node_modules, ensure_circuit_keys(paths)


def test_wheel_installs_and_runs_outside_the_checkout(installed: Env) -> None:
    env = installed
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert env.p2pnode("--version").stdout.strip() == f"p2pnode {version}"
    # The package imported is the installed one, not the checkout.
    where = env.run("import", [str(env.python), "-c", "import p2pnode; print(p2pnode.__file__)"], 30)
    assert Path(where.stdout.strip()).is_relative_to(env.venv)

    d = env.root / "net"
    s = env.root / "scenario"
    t = env.root / "shielded"
    try:
        # -- transparent cluster: no Node.js needed -------------------------------------------------------
        up = env.p2pnode("net", "up", "--validators", "4", "--no-shielded", "--dir", str(d))
        assert "cluster ready" in up.stdout
        status = json.loads(env.p2pnode("status", "--node", node_address(d), "--json").stdout)
        assert status["peer_count"] >= 3
        pay = env.p2pnode(
            "pay", "--node", node_address(d, 1), "--from", str(d / "accounts" / "account-0.json"),
            "--to", str(d / "accounts" / "account-1.json"), "--amount", "7", "--json",
        )
        assert json.loads(pay.stdout)["settled"] is True
        bench = env.p2pnode("bench", "--dir", str(d), "--count", "20", "--json", timeout=120)
        assert json.loads(bench.stdout)["settled"] == 20
        logs = sorted(str(p) for p in (d / "logs").glob("*.log"))
        assert len(logs) == 4
        latency = json.loads(env.p2pnode("latency", *logs, "--json").stdout)
        assert latency
        down = env.p2pnode("net", "down", "--dir", str(d))
        assert not LocalNet.open(d).running(), down.stdout

        # -- a scenario file of our own -------------------------------------------------------------------
        scenario = env.work / "smoke.toml"
        scenario.write_text(_SCENARIO)
        run = env.p2pnode(
            "scenario", "run", str(scenario), "--no-shielded", "--dir", str(s), "--json", timeout=150
        )
        assert json.loads(run.stdout)["passed"] is True
        assert not LocalNet.open(s).running()

        # -- shielded pool: without a toolchain, one line naming the flag and the variable -----------------
        refused = env.p2pnode("testnet", "--validators", "4", "--out", str(env.root / "no-zk"), check=False)
        assert refused.returncode == 2
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        assert lines[0].startswith("p2pnode: error: shielded pool needs the Node.js toolchain")
        assert "--zk-toolchain" in lines[0] and "P2PNODE_NODE_MODULES" in lines[0]

        found = shielded_toolchain()
        if found is None:
            pytest.skip("shielded steps need Node.js and the repository's node_modules (npm ci)")
        node_modules, keys = found
        cache = env.root / "zk-cache"
        shutil.copytree(keys, cache / keys.name)
        zk = ["--zk-toolchain", str(node_modules), "--zk-cache", str(cache)]
        env.p2pnode("testnet", "--validators", "4", "--out", str(t), *zk)
        assert [p.name for p in cache.iterdir()] == [keys.name], "keys were made again instead of reused"
        env.p2pnode("net", "up", "--dir", str(t))
        account = str(t / "accounts" / "account-0.json")
        shield = env.p2pnode(
            "shield", "--node", node_address(t), "--from", account, "--amount", "250", "--json", *zk
        )
        assert json.loads(shield.stdout)["settled"] is True
        notes = env.p2pnode("notes", "--node", node_address(t), "--key", account, "--json", *zk)
        assert json.loads(notes.stdout)["unspent_total"] == 250
        env.p2pnode("net", "down", "--dir", str(t))
    finally:
        for directory in (d, s, t):
            if (directory / "cluster.json").exists():
                LocalNet.open(directory).stop(grace=5.0)
