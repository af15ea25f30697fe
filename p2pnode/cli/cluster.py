"""Local clusters: one detached ``p2pnode run`` process per node, driven from Python or ``p2pnode net``.

:class:`Cluster` is the API that system tests and scripts use; ``net up`` / ``net down`` are thin
commands over it. State on disk, in the cluster directory:

- ``cluster.json`` (from ``p2pnode testnet``): names, roles, addresses;
- ``pids.json``: ``{"node-0": pid, ...}`` for the nodes started and not yet stopped;
- ``logs/node-<i>.log`` (the node's JSON log) and ``logs/node-<i>.out`` (its stdout and stderr,
  appended across restarts).

Process safety: a pid from ``pids.json`` is signalled only while ``/proc/<pid>/cmdline`` still
names ``p2pnode`` and that node's config file, so a pid reused by another program is never touched.
Each node leads its own session (``start_new_session``); signals go to its process group, and a node
counts as stopped only when no process of its session is left. Children started by this object are
reaped. Linux only (``/proc``).

All methods are synchronous and poll with deadlines. Status requests run under ``trio.run``; when
called from inside a Trio run (an async test) that run happens on a helper thread, which blocks the
caller's loop for the duration: prefer ``await trio.to_thread.run_sync(cluster.up)`` there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import trio

from p2pnode.cli.status import query_status
from p2pnode.cli.testnet import (
    CLUSTER_FILE,
    Testnet,
    add_spec_args,
    describe_nodes,
    read_testnet,
    resolve_spec,
    spec_overrides,
    write_testnet,
)
from p2pnode.config import NodeConfig, load_config
from p2pnode.errors import LocalError, P2PNodeError

PIDS_FILE = "pids.json"
TAIL_LINES = 20
_POLL_S = 0.05
_PROBE_TIMEOUT_S = 2.0
_T = TypeVar("_T")


class ClusterError(LocalError):
    """A cluster operation failed. The first line of the message names the node(s) and the cause; the
    following lines are the tails of their logs."""


@dataclass(frozen=True, slots=True)
class Stopped:
    """What :meth:`Cluster.down` / :meth:`Cluster.stop_node` did to one node."""

    name: str
    pid: int
    outcome: str  # "stopped" (exited after the signal) | "killed" (needed SIGKILL) | "not running"


# -- /proc helpers -------------------------------------------------------------------------------------
def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, session) of ``pid``, or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name sits in parentheses and may contain spaces or ')': split after the last one.
    rest = raw[raw.rfind(b")") + 2 :].split()
    if len(rest) < 4:
        return None
    return rest[0].decode(), int(rest[2]), int(rest[3])


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [a.decode("utf-8", "surrogateescape") for a in raw.split(b"\0") if a]


def _is_node_process(pid: int, config: Path) -> bool:
    """True if ``pid`` is a live (non-zombie) p2pnode process started with ``config``."""
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    args = _cmdline(pid)
    return any("p2pnode" in a for a in args) and str(config) in args


def _sessions() -> dict[int, list[int]]:
    """Live (non-zombie) pids grouped by session id."""
    out: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[0] not in ("Z", "X"):
                out.setdefault(stat[2], []).append(int(entry.name))
    return out


def tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of ``path`` (reads at most the last 64 KiB); [] if it does not exist."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 65536))
            data = fh.read()
    except FileNotFoundError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-lines:]


def _run_trio(fn: Callable[..., Awaitable[_T]], *args: Any) -> _T:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return trio.run(fn, *args)
    # Already inside a Trio run on this thread: runs cannot nest, so use a short-lived thread.
    result: list[_T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(trio.run(fn, *args))
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)

    thread = threading.Thread(target=target, name="p2pnode-cluster-trio")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


class Cluster:
    """A local cluster in one directory.

    Resource handling: every node process this object starts is reaped by :meth:`down`,
    :meth:`stop_node` or :meth:`kill_node`; use the object as a context manager to call :meth:`down` on
    exit. Nodes started by another process (an earlier ``net up``) are found through ``pids.json``.

    Error handling: :class:`ClusterError` (a :class:`LocalError`) when a node does not become ready or
    exits; :class:`LocalError` / :class:`ConfigError` for a missing or inconsistent directory.
    """

    def __init__(self, directory: Path | str, *, node_command: Sequence[str] = ()) -> None:
        """``node_command`` replaces ``[python, "-m", "p2pnode"]`` in front of ``run --config FILE``
        (e.g. to run nodes under a profiler); it must still contain "p2pnode" for the pid checks."""
        self.directory = Path(directory).resolve()
        self._command = list(node_command) or [sys.executable, "-m", "p2pnode"]
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._testnet: Testnet | None = None
        self._configs: dict[str, NodeConfig] = {}

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()

    # -- description -----------------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        return (self.directory / CLUSTER_FILE).is_file()

    @property
    def testnet(self) -> Testnet:
        """The contents of ``cluster.json`` (read once)."""
        if self._testnet is None:
            self._testnet = read_testnet(self.directory)
        return self._testnet

    @property
    def names(self) -> list[str]:
        return self.testnet.names

    def addresses(self) -> dict[str, tuple[str, int]]:
        return {n.name: (n.host, n.port) for n in self.testnet.nodes}

    def accounts(self) -> list[Path]:
        """Paths of the funded account files (``{"address", "spending_key", "public"}``)."""
        return self.testnet.account_paths()

    def config_path(self, name: str) -> Path:
        return self.directory / self.testnet.node(name).config

    def config(self, name: str) -> NodeConfig:
        if name not in self._configs:
            self._configs[name] = load_config(self.config_path(name))
        return self._configs[name]

    def log_path(self, name: str) -> Path:
        return self.config(name).log.file or self.directory / "logs" / f"{name}.log"

    def out_path(self, name: str) -> Path:
        return self.directory / "logs" / f"{name}.out"

    def pids(self) -> dict[str, int]:
        """``pids.json`` as recorded ({} if absent); entries may be stale, see :meth:`running`."""
        try:
            doc = json.loads((self.directory / PIDS_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise LocalError(f"{self.directory / PIDS_FILE}: malformed: {exc}") from None
        if not isinstance(doc, dict) or not all(isinstance(v, int) for v in doc.values()):
            raise LocalError(f"{self.directory / PIDS_FILE}: expected a map of node name to pid")
        return {str(k): v for k, v in doc.items()}

    def running(self) -> dict[str, int]:
        """The recorded nodes whose process is still alive (and still ours)."""
        return {name: pid for name, pid in self.pids().items() if self._owned(name, pid)}

    def status(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        """One status request to ``name``; raises OSError / RemoteError / LocalError (timeout)."""
        host, port = self.addresses()[name]

        async def run() -> dict[str, Any]:
            with trio.fail_after(timeout):
                return await query_status(host, port)

        try:
            return _run_trio(run)
        except trio.TooSlowError:
            raise LocalError(f"{name}: no status reply within {timeout:g}s") from None

    # -- whole cluster ---------------------------------------------------------------------------
    def up(
        self,
        validators: int | None = None,
        full_nodes: int | None = None,
        accounts: int | None = None,
        config: Path | None = None,
        timeout: float = 60.0,
        *,
        base_port: int | None = None,
        balance: int | None = None,
    ) -> Testnet:
        """Create the cluster if the directory has none, start every node, wait until all are ready.

        An existing ``cluster.json`` is reused as it is; ``validators`` / ``full_nodes`` that contradict
        it raise :class:`LocalError`. Ready means: the node answers a status request and reports
        ``peer_count >= min(peers.target, nodes - 1)`` (and not ``ready = false``). On failure,
        timeout or interruption every process started here is stopped before the error propagates.
        """
        if not self.exists:
            spec, defaults = resolve_spec(
                config,
                validators=validators,
                full_nodes=full_nodes,
                accounts=accounts,
                base_port=base_port,
                balance=balance,
            )
            self._testnet = write_testnet(self.directory, spec, defaults)
        else:
            have_v = sum(1 for n in self.testnet.nodes if n.role == "validator")
            have_f = len(self.testnet.nodes) - have_v
            if (validators is not None and validators != have_v) or (
                full_nodes is not None and full_nodes != have_f
            ):
                raise LocalError(
                    f"{self.directory}: already holds a cluster of {have_v} validators and {have_f} full "
                    "nodes; remove the directory or choose another"
                )
        alive = self.running()
        if alive:
            name, pid = next(iter(alive.items()))
            raise LocalError(f"{self.directory}: cluster already running ({name} pid {pid}); run `net down`")
        self._write_pids({})
        try:
            for name in self.names:
                self.start_node(name)
            self.wait_ready(self.names, timeout)
        except BaseException:
            self.down(timeout=5.0)
            raise
        return self.testnet

    def down(self, timeout: float = 10.0) -> list[Stopped]:
        """Stop every recorded node: SIGTERM, wait up to ``timeout`` seconds, then SIGKILL.

        Removes ``pids.json``; returns what happened to each recorded node. Never signals a pid that
        is no longer this cluster's node process.
        """
        recorded = self.pids()
        # Children started here but missing from pids.json (a failed write) are still ours to stop.
        for name, proc in self._procs.items():
            if proc.poll() is None:
                recorded.setdefault(name, proc.pid)
        results = self._stop(recorded, signal.SIGTERM, timeout)
        with contextlib.suppress(FileNotFoundError):
            (self.directory / PIDS_FILE).unlink()
        self._reap()
        return results

    # -- single nodes ----------------------------------------------------------------------------
    def start_node(self, name: str) -> int:
        """Start ``name`` as a detached process and record its pid; does not wait for readiness."""
        cfg = self.config_path(name)
        self.config(name)  # fail here, in this process, on a broken config
        pids = self.pids()
        if name in pids and self._owned(name, pids[name]):
            raise LocalError(f"{name}: already running (pid {pids[name]})")
        out_path = self.out_path(name)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with out_path.open("ab") as out:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            out.write(f"=== {stamp} p2pnode run --config {cfg}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                [*self._command, "run", "--config", str(cfg)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._procs[name] = proc
        pids[name] = proc.pid
        self._write_pids(pids)
        return proc.pid

    def stop_node(self, name: str, sig: signal.Signals = signal.SIGTERM, timeout: float = 10.0) -> Stopped:
        """Send ``sig`` to ``name``, wait up to ``timeout`` seconds for it to exit, then SIGKILL."""
        pids = self.pids()
        recorded = {name: pids[name]} if name in pids else {}
        proc = self._procs.get(name)
        if not recorded and proc is not None and proc.poll() is None:
            recorded = {name: proc.pid}
        if not recorded:
            self.testnet.node(name)  # a LocalError for an unknown name
            return Stopped(name, 0, "not running")
        (result,) = self._stop(recorded, sig, timeout)
        pids.pop(name, None)
        self._write_pids(pids)
        self._reap()
        return result

    def kill_node(self, name: str, timeout: float = 10.0) -> Stopped:
        """SIGKILL ``name`` (a crash: no shutdown path runs) and wait until it is gone."""
        return self.stop_node(name, signal.SIGKILL, timeout)

    def kill_nodes(self, names: Iterable[str], timeout: float = 10.0) -> list[Stopped]:
        """SIGKILL every node in ``names`` at once (a power cut): every signal is sent before the first
        wait, so no node sees another one's death first. Waits until all are gone."""
        wanted = list(names)
        pids = self.pids()
        recorded: dict[str, int] = {}
        for name in wanted:
            self.testnet.node(name)  # a LocalError for an unknown name
            proc = self._procs.get(name)
            if name in pids:
                recorded[name] = pids[name]
            elif proc is not None and proc.poll() is None:
                recorded[name] = proc.pid
        results = self._stop(recorded, signal.SIGKILL, timeout)
        for name in wanted:
            pids.pop(name, None)
        self._write_pids(pids)
        self._reap()
        done = {s.name for s in results}
        return results + [Stopped(n, 0, "not running") for n in wanted if n not in done]

    def restart_node(self, name: str, timeout: float = 60.0) -> int:
        """Stop ``name`` (SIGTERM), start it again and wait until it is ready; returns the new pid."""
        self.stop_node(name)
        pid = self.start_node(name)
        self.wait_ready([name], timeout)
        return pid

    def pause_node(self, name: str) -> None:
        """SIGSTOP ``name``: it stays connected at the TCP level but answers nothing."""
        self._signal_node(name, signal.SIGSTOP)

    def resume_node(self, name: str) -> None:
        """SIGCONT ``name`` after :meth:`pause_node`."""
        self._signal_node(name, signal.SIGCONT)

    def wait_ready(self, names: Iterable[str] | None = None, timeout: float = 60.0) -> float:
        """Block until every node in ``names`` (default: all) is ready; returns the seconds waited.

        Error handling: :class:`ClusterError` naming the node, with its log tails, if a node's process
        is gone or ``timeout`` passes first. Nothing is stopped here (:meth:`up` does that).
        """
        wanted = list(self.names if names is None else names)
        for name in wanted:
            self.testnet.node(name)
        start = time.monotonic()
        _run_trio(self._wait_ready, wanted, start + timeout, timeout)
        return time.monotonic() - start

    # -- internals -------------------------------------------------------------------------------
    def _min_peers(self, name: str) -> int:
        return min(self.config(name).peers.target, len(self.testnet.nodes) - 1)

    async def _wait_ready(self, names: Sequence[str], deadline: float, timeout: float) -> None:
        pending = list(names)
        why: dict[str, str] = dict.fromkeys(pending, "no status reply yet")
        while True:
            pids = self.pids()
            for name in pending:
                if name not in pids or not self._owned(name, pids[name]):
                    proc = self._procs.get(name)
                    code = proc.poll() if proc is not None else None
                    how = f"exited with code {code}" if code is not None else "is not running"
                    raise self._failure([name], f"{name} {how} before it was ready")
            ready: set[str] = set()

            async def probe(name: str, ready: set[str] = ready) -> None:
                host, port = self.addresses()[name]
                try:
                    with trio.fail_after(_PROBE_TIMEOUT_S):
                        info = await query_status(host, port)
                except (OSError, P2PNodeError, trio.TooSlowError) as exc:
                    why[name] = f"status request failed: {str(exc) or type(exc).__name__}"
                    return
                peers = info.get("peer_count")
                need = self._min_peers(name)
                if not (isinstance(peers, int) and peers >= need):
                    why[name] = f"peer_count {peers} < {need}"
                elif info.get("ready") is False:  # the node's own verdict, where it gives one
                    why[name] = "node reports ready = false"
                else:
                    ready.add(name)

            async with trio.open_nursery() as nursery:
                for name in pending:
                    nursery.start_soon(probe, name)
            pending = [n for n in pending if n not in ready]
            if not pending:
                return
            if time.monotonic() >= deadline:
                reasons = "; ".join(f"{n}: {why[n]}" for n in pending)
                raise self._failure(pending, f"not ready within {timeout:g}s: {reasons}")
            await trio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def _failure(self, names: Sequence[str], summary: str) -> ClusterError:
        lines = [summary.replace("\n", " ")]
        for name in names[:3]:
            for path in (self.log_path(name), self.out_path(name)):
                shown = path.relative_to(self.directory) if path.is_relative_to(self.directory) else path
                lines.append(f"--- {shown} (last {TAIL_LINES} lines) ---")
                lines += tail(path) or ["(empty)"]
        return ClusterError("\n".join(lines))

    def _owned(self, name: str, pid: int) -> bool:
        """Is ``pid`` still this cluster's process for ``name``?"""
        proc = self._procs.get(name)
        if proc is not None and proc.pid == pid:
            # An unreaped child of ours: its pid cannot have been reused.
            return proc.poll() is None
        return _is_node_process(pid, self.config_path(name))

    def _signal_node(self, name: str, sig: signal.Signals) -> bool:
        pid = self.pids().get(name)
        if pid is None:
            proc = self._procs.get(name)
            pid = proc.pid if proc is not None else None
        if pid is None or not self._owned(name, pid):
            raise LocalError(f"{name}: not running")
        return self._send(pid, sig)

    @staticmethod
    def _send(pid: int, sig: signal.Signals) -> bool:
        """Signal the node's process group (it leads its own); False if it is already gone."""
        stat = _proc_stat(pid)
        try:
            if stat is not None and stat[1] == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            return False
        return True

    def _stop(self, recorded: dict[str, int], sig: signal.Signals, timeout: float) -> list[Stopped]:
        outcome: dict[str, str] = {}
        targets: dict[str, int] = {}
        for name, pid in recorded.items():
            if self._owned(name, pid):
                targets[name] = pid
                self._send(pid, sig)
                if sig not in (signal.SIGKILL, signal.SIGSTOP):
                    self._send(pid, signal.SIGCONT)  # a paused node must run to handle the signal
            else:
                outcome[name] = "not running"
        remaining = self._wait_gone(targets, time.monotonic() + timeout)
        for name in targets:
            outcome.setdefault(name, "stopped")
        if remaining:
            sessions = _sessions()
            for name, pid in remaining.items():
                outcome[name] = "killed"
                for member in sessions.get(pid, []):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(member, signal.SIGKILL)
            left = self._wait_gone(remaining, time.monotonic() + 5.0)
            if left:
                raise LocalError(f"could not stop {', '.join(f'{n} (pid {p})' for n, p in left.items())}")
        return [Stopped(name, recorded[name], outcome[name]) for name in recorded]

    def _wait_gone(self, targets: dict[str, int], deadline: float) -> dict[str, int]:
        """Wait until no process of each target's session is alive; returns those still alive."""
        remaining = dict(targets)
        while remaining:
            for name, proc in self._procs.items():
                if name in remaining:
                    proc.poll()  # reap, so that the exited leader does not linger as a zombie
            sessions = _sessions()
            remaining = {n: p for n, p in remaining.items() if p in sessions}
            if not remaining or time.monotonic() >= deadline:
                break
            time.sleep(_POLL_S)
        return remaining

    def _reap(self) -> None:
        for name, proc in list(self._procs.items()):
            if proc.poll() is not None:
                del self._procs[name]

    def _write_pids(self, pids: dict[str, int]) -> None:
        path = self.directory / PIDS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(pids, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)


# -- commands --------------------------------------------------------------------------------------------
def add_up_args(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--validators", type=int, metavar="N", help="number of validators")
    which.add_argument(
        "--config", type=Path, metavar="FILE", help="cluster definition (configs/local-*.toml)"
    )
    add_spec_args(parser, validators=False)
    parser.add_argument("--dir", type=Path, required=True, metavar="DIR", help="cluster directory")
    parser.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="seconds to wait for readiness (default 60)"
    )


def add_down_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, required=True, metavar="DIR", help="cluster directory")
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds before SIGKILL (default 10)"
    )


def cmd_up(args: argparse.Namespace) -> int:
    cluster = Cluster(args.dir)
    overrides = spec_overrides(args)
    if not cluster.exists:
        # Validate and create here so that a bad flag fails before anything starts.
        from p2pnode.zk.paths import zk_paths_from_args

        spec, defaults = resolve_spec(args.config, **overrides)
        zk = zk_paths_from_args(args) if spec.shielded else None
        write_testnet(cluster.directory, spec, defaults, zk=zk)
    start = time.monotonic()
    testnet = cluster.up(validators=args.validators, full_nodes=args.full_nodes, timeout=args.timeout)
    elapsed = time.monotonic() - start
    for line in describe_nodes(testnet, cluster.pids()):
        print(line)
    print(f"cluster ready in {elapsed:.1f}s")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    cluster = Cluster(args.dir)
    if not (cluster.directory / PIDS_FILE).exists():
        print(f"no running cluster in {args.dir}")
        return 0
    for stopped in cluster.down(timeout=args.timeout):
        if stopped.outcome == "not running":
            print(f"{stopped.name} (pid {stopped.pid}) was not running")
        else:
            print(f"{stopped.outcome} {stopped.name} (pid {stopped.pid})")
    return 0
