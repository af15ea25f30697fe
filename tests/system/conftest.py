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

import trio

from p2pnode.localnet import ClusterSpec, LocalNet, write_cluster

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def running_net(
    directory: Path, spec: ClusterSpec | None = None, *, definition: Path | None = None, timeout: float = 60.0
) -> Iterator[LocalNet]:
    """A cluster written into ``directory`` (from ``spec``, or the definition file), started and ready
    (:meth:`LocalNet.wait_ready`, at most ``timeout`` s); every node is stopped on exit, also when it
    never became ready.

    For tests that need a :class:`LocalNet` itself (its files, pids, raw sockets); a test that only pays
    and checks outcomes uses :func:`p2pnode.testing.open_local_cluster`."""
    if definition is not None:
        spec = ClusterSpec.from_file(definition)
    net = LocalNet(write_cluster(spec or ClusterSpec(), directory))
    try:
        net.start()

        async def ready() -> None:
            with trio.fail_after(timeout):
                await net.wait_ready()

        trio.run(ready)
        yield net
    finally:
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
