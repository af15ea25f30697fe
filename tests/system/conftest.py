"""System-test fixtures: real node processes on 127.0.0.1, always stopped afterwards.

Every fixture that starts nodes stops them in a ``finally`` (``LocalNet.stop``), so a failing test
leaves no process behind. Helpers here poll conditions with deadlines; none sleeps to let time pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pnode.client import Client
from p2pnode.localnet import ClusterSpec, LocalNet, write_cluster

REPO = Path(__file__).resolve().parents[2]


NetUp = Callable[..., LocalNet]


def start_net(net: LocalNet, timeout: float = 60.0) -> LocalNet:
    """Start every node of ``net`` and wait (at most ``timeout`` s) until all are ready; stops them all
    if that fails."""
    net.start()
    try:

        async def ready() -> None:
            with trio.fail_after(timeout):
                await net.wait_ready()

        trio.run(ready)
    except BaseException:
        net.stop(grace=5.0)
        raise
    return net


@contextmanager
def running_net(
    directory: Path, spec: ClusterSpec | None = None, *, definition: Path | None = None, timeout: float = 60.0
) -> Iterator[LocalNet]:
    """A cluster written into ``directory`` (from ``spec``, or the definition file), started and ready;
    every node is stopped on exit."""
    if definition is not None:
        spec = ClusterSpec.from_file(definition)
    net = LocalNet(write_cluster(spec or ClusterSpec(), directory))
    try:
        yield start_net(net, timeout)
    finally:
        net.stop()


@pytest.fixture
def net_up(tmp_path: Path) -> Iterator[NetUp]:
    """``net_up(spec=None, *, definition=None, timeout=60)``: write a cluster into ``tmp_path/cluster``,
    start it and wait until it is ready. Every node is stopped on exit."""
    nets: list[LocalNet] = []

    def up(
        spec: ClusterSpec | None = None, *, definition: Path | None = None, timeout: float = 60.0
    ) -> LocalNet:
        if definition is not None:
            spec = ClusterSpec.from_file(definition)
        net = LocalNet(write_cluster(spec or ClusterSpec(), tmp_path / "cluster"))
        nets.append(net)
        return start_net(net, timeout)

    try:
        yield up
    finally:
        for net in nets:
            net.stop()


def stop_any(directory: Path) -> None:
    """Stop whatever nodes ``directory`` recorded (nothing if it holds no cluster)."""
    if (directory / "cluster.json").is_file():
        LocalNet.open(directory).stop()


def p2pnode_cmd() -> list[str]:
    """The installed ``p2pnode`` console script next to this interpreter, else ``python -m p2pnode``."""
    script = Path(sys.executable).parent / "p2pnode"
    return [str(script)] if script.exists() else [sys.executable, "-m", "p2pnode"]


def cli(*args: str, timeout: float = 90.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``p2pnode ARGS`` and return the finished process (output as text)."""
    proc = subprocess.run(
        [*p2pnode_cmd(), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"p2pnode {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def cli_json(*args: str, timeout: float = 90.0) -> dict[str, Any]:
    out = cli(*args, timeout=timeout).stdout
    doc = json.loads(out)
    assert isinstance(doc, dict)
    return doc


def wait_until(what: str, condition: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy (returned); AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        time.sleep(interval)


def log_events(path: Path, *events: str) -> list[dict[str, Any]]:
    """The log lines of ``path`` whose event is one of ``events`` (a truncated last line is skipped)."""
    out = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("event") in events:
            out.append(obj)
    return out


async def wait_applied(client: Client, digest: bytes, timeout: float) -> None:
    """Wait until the node behind ``client`` has applied the transfer ``digest``.

    ``wallet.pay`` reads the payer's next seq from the node it is given; a payer that switches nodes
    must first let the new node catch up with its previous payment."""
    with trio.fail_after(timeout):
        await client.wait_settled(digest)
