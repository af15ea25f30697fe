"""Node processes of one cluster directory: :class:`LocalNet`.

State on disk, in the cluster directory:

- ``cluster.json`` (:func:`~p2pnode.localnet.write_cluster`): names, roles, addresses, node ids;
- ``pids.json``: ``{"node-0": {"pid": 123, "created": 1700000000.12, "since_boot": 4711.05}, ...}`` for
  the nodes started and not yet stopped (``created`` is the process's creation time as psutil reports
  it, ``since_boot`` the same less the boot time: the identity check uses the latter, see below);
- ``logs/node-<i>.log`` (the node's JSON log) and ``logs/node-<i>.out`` (its stdout and stderr,
  appended across restarts).

Process safety: a recorded pid is signalled only while it is still the same process, checked with psutil:
same creation time, not a zombie, and a command line naming ``p2pnode`` and that node's config file. A
pid reused by another program is never touched. The creation time compared is counted from boot: psutil
reports it as boot time + time since boot, and on Linux the boot time comes from ``/proc/stat``'s btime,
whole seconds derived from the wall clock, so it moves by a second whenever a clock adjustment carries
it across a boundary. Compared as wall-clock time, a ``net down`` after such a step took its own nodes
for strangers, left them running and forgot their pids. Each node leads its own session
(``start_new_session``); signals go to its process group, and a node counts as stopped only when it and
every process it started are gone. Children started by this object are reaped.

Platforms: Linux and macOS (psutil and POSIX signals). Windows is not supported (no SIGSTOP/SIGKILL or
process groups there).

Process control (start, stop, kill, pause, resume) is synchronous and quick, except that :meth:`stop`
and :meth:`kill` block until the processes are gone (bounded): from async code run them with
``trio.to_thread.run_sync``. The waits (:meth:`wait_ready`, :meth:`wait_converged`) and
:meth:`start_in_waves` are async and take no timeout: bound them with ``trio.fail_after``
(:func:`~p2pnode.localnet.waits.ready_timeout_s` gives a bound that grows with the cluster).

Big clusters: a node process spends about a second of CPU importing before it listens. Started all at
once, 64 of them share two cores for a minute and none answers until nearly all do, while their
bootstrap dials fail and back off. :meth:`start_in_waves` starts a few per core at a time and starts the
next wave once the last one answers, so the first nodes (the validators, whom the full nodes bootstrap
from) are up early and progress can be reported.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from p2pnode.config import NodeConfig, load_config, parse_hostport
from p2pnode.errors import LocalError
from p2pnode.localnet.directory import ClusterDir, read_cluster
from p2pnode.localnet.node_query import Client, open_node_client, query_status
from p2pnode.localnet.resources import NodeMemory, node_memory

__all__ = [
    "PIDS_FILE",
    "STOP_GRACE_S",
    "ClusterError",
    "LocalNet",
    "Progress",
    "Stopped",
    "stop_grace_s",
    "tail",
]

# ``progress(phase, done, total)``: phase "started" (processes started so far), "answering" (nodes that
# answer a status request as themselves) or "ready" (nodes with their peers); called after every step.
Progress = Callable[[str, int, int], None]

PIDS_FILE = "pids.json"
TAIL_LINES = 20
STOP_GRACE_S = 10.0  # SIGTERM to SIGKILL, for a few nodes (stop_grace_s for more)
# A node's orderly shutdown (peers closed, store closed, proof worker and resource tracker gone) takes
# about 0.2 s of CPU and 0.6 s of wall time when the machine is idle. All of a cluster's nodes stop at
# once, so on 2 cores 64 of them need ~7 s of the machine, more when it is busy with something else.
_STOP_CPU_S = 1.0


def stop_grace_s(nodes: int, cpus: int | None = None) -> float:
    """Time from SIGTERM to SIGKILL when ``nodes`` nodes stop together on ``cpus`` cores (default: this
    machine's): ``STOP_GRACE_S`` plus 1 s of one core per node. 4 nodes on 2 cores: 12 s; 64: 42 s."""
    return STOP_GRACE_S + nodes * _STOP_CPU_S / max(1, cpus if cpus is not None else (os.cpu_count() or 1))
_KILL_WAIT_S = 5.0  # after SIGKILL, before giving up


class ClusterError(LocalError):
    """A cluster operation failed. The first line of the message names the node(s) and the cause; the
    following lines are the tails of their logs."""


@dataclass(frozen=True, slots=True)
class Stopped:
    """What :meth:`LocalNet.stop` / :meth:`LocalNet.kill` did to one node."""

    name: str
    pid: int
    outcome: str  # "stopped" (exited after the signal) | "killed" (needed SIGKILL) | "not running"


@dataclass(frozen=True, slots=True)
class _Record:
    pid: int
    created: float | None  # None: recorded by an older version (then only the command line is checked)
    since_boot: float | None = None  # None: recorded by an older version (then ``created`` is compared)


def _since_boot(p: psutil.Process) -> float:
    """``p``'s creation time counted from boot: unlike ``create_time()`` it does not move with the clock."""
    return p.create_time() - psutil.boot_time()


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


class LocalNet:
    """The node processes of one cluster directory.

    Resource handling: every node process this object starts is reaped by :meth:`stop` or :meth:`kill`.
    Nodes started by another process (an earlier ``net up``) are found through ``pids.json``, so a
    second object on the same directory can stop them.

    Error handling: :class:`ClusterError` (a :class:`LocalError`) when a node exits before it is ready or
    cannot be stopped; :class:`LocalError` for an unknown node name, a node already running, or a
    malformed ``pids.json``.
    """

    def __init__(self, cluster: ClusterDir, *, node_command: Sequence[str] = ()) -> None:
        """``node_command`` replaces ``[python, "-m", "p2pnode"]`` in front of ``run --config FILE``
        (e.g. to run nodes under a profiler); it must still contain "p2pnode" for the identity checks."""
        self.cluster = cluster
        self._command = list(node_command) or [sys.executable, "-m", "p2pnode"]
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._configs: dict[str, NodeConfig] = {}

    @classmethod
    def open(cls, directory: Path, *, node_command: Sequence[str] = ()) -> LocalNet:
        """The cluster in ``directory`` (:func:`read_cluster`; :class:`LocalError` if there is none)."""
        return cls(read_cluster(directory), node_command=node_command)

    @property
    def directory(self) -> Path:
        return self.cluster.directory

    @property
    def names(self) -> list[str]:
        return self.cluster.names

    def config(self, name: str) -> NodeConfig:
        """The node's config as the node loads it (read once)."""
        if name not in self._configs:
            self._configs[name] = load_config(self.cluster.node(name).config)
        return self._configs[name]

    def log_tail(self, name: str, lines: int = TAIL_LINES) -> list[str]:
        """The last ``lines`` lines of the node's JSON log ([] if it has none yet)."""
        return tail(self.cluster.node(name).log, lines)

    # -- pids --------------------------------------------------------------------------------------------
    def _records(self) -> dict[str, _Record]:
        path = self.directory / PIDS_FILE
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise LocalError(f"{path}: malformed: {exc}") from None
        if not isinstance(doc, dict):
            raise LocalError(f"{path}: expected a map of node name to pid")
        out: dict[str, _Record] = {}
        for name, value in doc.items():
            if isinstance(value, int):
                out[str(name)] = _Record(value, None)
            elif isinstance(value, dict) and isinstance(value.get("pid"), int):
                created, since_boot = value.get("created"), value.get("since_boot")
                out[str(name)] = _Record(
                    value["pid"],
                    float(created) if created is not None else None,
                    float(since_boot) if since_boot is not None else None,
                )
            else:
                raise LocalError(
                    f"{path}: {name}: expected {{'pid': int, 'created': float, 'since_boot': float}}"
                )
        return out

    def _write_records(self, records: dict[str, _Record]) -> None:
        path = self.directory / PIDS_FILE
        tmp = path.with_suffix(".tmp")
        doc = {
            name: {"pid": r.pid, "created": r.created, "since_boot": r.since_boot}
            for name, r in records.items()
        }
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def pids(self) -> dict[str, int]:
        """``pids.json`` as recorded ({} if absent); entries may be stale, see :meth:`running`."""
        return {name: r.pid for name, r in self._records().items()}

    def running(self) -> dict[str, int]:
        """The recorded nodes whose process is still alive and still the one recorded (psutil)."""
        return {name: r.pid for name, r in self._records().items() if self._process(name, r) is not None}

    def _process(self, name: str, record: _Record) -> psutil.Process | None:
        """The live process of ``record`` if it is still this cluster's node ``name``, else None."""
        proc = self._procs.get(name)
        if proc is not None and proc.pid == record.pid:
            if proc.poll() is not None:
                return None  # our child, exited (and now reaped): the pid may be reused from here on
            # Our child, not reaped: its pid cannot have been reused. Its command line is not checked:
            # just after exec it can still read empty (Popen returns before the kernel has set it up).
            try:
                return psutil.Process(record.pid)
            except psutil.NoSuchProcess:
                return None
        try:
            p = psutil.Process(record.pid)
            if record.since_boot is not None:
                if abs(_since_boot(p) - record.since_boot) > 0.01:
                    return None
            elif record.created is not None and abs(p.create_time() - record.created) > 0.01:
                return None
            if p.status() == psutil.STATUS_ZOMBIE:
                return None
            args = p.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None
        config = str(self.cluster.node(name).config)
        return p if any("p2pnode" in a for a in args) and config in args else None

    def _live(self, names: Iterable[str]) -> dict[str, psutil.Process]:
        records = self._records()
        out: dict[str, psutil.Process] = {}
        for name in names:
            self.cluster.node(name)  # a LocalError for an unknown name
            record = records.get(name)
            proc = self._procs.get(name)
            if record is None and proc is not None and proc.poll() is None:
                record = _Record(proc.pid, None)  # started here, pids.json lost it
            p = self._process(name, record) if record is not None else None
            if p is not None:
                out[name] = p
        return out

    # -- control -----------------------------------------------------------------------------------------
    def start(self, *names: str) -> dict[str, int]:
        """Start ``names`` (default: every node) as detached processes and record their pids; does not
        wait for readiness (:meth:`wait_ready`). Returns {name: pid}.

        Error handling: :class:`LocalError` if one of them is already running, its config does not
        load, or its port is taken by another program (nothing is started then).
        """
        wanted = list(names) or self.names
        self._check_startable(wanted)
        return {name: self._spawn(name) for name in wanted}

    async def start_in_waves(
        self,
        *names: str,
        wave: int | None = None,
        progress: Progress | None = None,
    ) -> dict[str, int]:
        """Start ``names`` (default: every node, in cluster order: validators first) ``wave`` at a time
        (default :func:`~p2pnode.localnet.waits.wave_size`), each wave once every node of the one before
        answers a status request as itself. Returns {name: pid} once the last wave answers; it does not
        wait for peers (:meth:`wait_ready`). No timeout: use ``trio.fail_after``.

        Error handling: as :meth:`start`, checked for every node before the first is started; a
        :class:`ClusterError` with its log tails if a node exits before it answers. Resource handling:
        nodes started stay running on error or cancellation; the caller stops them (:meth:`stop`).
        """
        from p2pnode.localnet.waits import wait_answering, wave_size

        wanted = list(names) or self.names
        self._check_startable(wanted)
        size = max(1, wave if wave is not None else wave_size())
        started: dict[str, int] = {}
        answered = 0
        for first in range(0, len(wanted), size):
            chunk = wanted[first : first + size]
            for name in chunk:
                started[name] = self._spawn(name)
            if progress is not None:
                progress("started", len(started), len(wanted))

            def report(done: int, _total: int, before: int = answered) -> None:
                if progress is not None:
                    progress("answering", before + done, len(wanted))

            await wait_answering(self, chunk, report)
            answered += len(chunk)
        return started

    def _check_startable(self, wanted: list[str]) -> None:
        alive = self._live(wanted)
        if alive:
            name, p = next(iter(alive.items()))
            raise LocalError(f"{name}: already running (pid {p.pid})")
        metrics = {}
        for name in wanted:
            metrics[name] = self.config(name).metrics.listen  # fails here, in this process, if broken
        for name in wanted:
            entry = self.cluster.node(name)
            problem = port_problem(entry.host, entry.port)
            if problem is not None:
                raise LocalError(
                    f"{name}: cannot listen on {entry.address}: {problem} (another program, or a "
                    "cluster in another directory, holds it; choose another base port)"
                )
            if metrics[name]:
                host, port = parse_hostport(metrics[name], key="metrics.listen", any_port=True)
                problem = port_problem(host, port) if port else None
                if problem is not None:
                    raise LocalError(f"{name}: cannot serve metrics on {metrics[name]}: {problem}")

    def _spawn(self, name: str) -> int:
        cfg = self.cluster.node(name).config
        out_path = self.cluster.out_path(name)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with out_path.open("ab") as out:  # the child keeps its copy; ours is closed at once
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
        try:
            child = psutil.Process(proc.pid)
            created: float | None = child.create_time()
            since_boot: float | None = _since_boot(child)
        except psutil.NoSuchProcess:
            created = since_boot = None  # exited at once; wait_ready reports it with its log
        records = self._records()
        records[name] = _Record(proc.pid, created, since_boot)
        self._write_records(records)
        return proc.pid

    def stop(self, *names: str, grace: float | None = None) -> list[Stopped]:
        """Stop ``names`` (default: every node): SIGTERM, and SIGKILL whatever is left after ``grace``
        seconds (default :func:`stop_grace_s` of the number of nodes stopped). Returns what happened to
        each; their entries leave ``pids.json`` (the file is removed when no node is left in it). Never
        signals a pid that is no longer this cluster's node."""
        wanted = list(names) or self.names
        return self._stop(wanted, signal.SIGTERM, grace if grace is not None else stop_grace_s(len(wanted)))

    def kill(self, *names: str) -> list[Stopped]:
        """SIGKILL ``names`` (default: every node) at once, a crash with no shutdown path, and wait until
        they are gone. Every signal is sent before the first wait."""
        return self._stop(list(names) or self.names, signal.SIGKILL, _KILL_WAIT_S)

    def pause(self, name: str) -> None:
        """SIGSTOP ``name``: it stays connected at the TCP level but answers nothing."""
        self._signal(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        """SIGCONT ``name`` after :meth:`pause`."""
        self._signal(name, signal.SIGCONT)

    def _signal(self, name: str, sig: signal.Signals) -> None:
        p = self._live([name]).get(name)
        if p is None:
            raise LocalError(f"{name}: not running")
        _send(p, sig)

    def _stop(self, names: list[str], sig: signal.Signals, grace: float) -> list[Stopped]:
        records = self._records()
        live = self._live(names)
        # Every process of the node (proof workers included), collected before they can be reparented.
        trees: dict[str, list[psutil.Process]] = {}
        for name, p in live.items():
            with contextlib.suppress(psutil.Error):
                trees[name] = [p, *p.children(recursive=True)]
        for p in live.values():
            _send(p, sig)
            if sig not in (signal.SIGKILL, signal.SIGSTOP):
                _send(p, signal.SIGCONT)  # a paused node must run to handle the signal
        outcome = {name: "stopped" for name in live}
        left = self._wait_gone(trees, grace)
        for name, procs in left.items():
            if sig != signal.SIGKILL:
                outcome[name] = "killed"
            for q in procs:
                with contextlib.suppress(psutil.Error):
                    q.kill()
        left = self._wait_gone(left, _KILL_WAIT_S)
        if left:
            raise ClusterError(
                "could not stop " + ", ".join(f"{n} (pid {procs[0].pid})" for n, procs in left.items())
            )
        results = []
        for name in names:
            pid = live[name].pid if name in live else records[name].pid if name in records else 0
            results.append(Stopped(name, pid, outcome.get(name, "not running")))
            records.pop(name, None)
        if records:
            self._write_records(records)
        else:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / PIDS_FILE).unlink()
        for name in names:
            proc = self._procs.get(name)
            if proc is not None and proc.poll() is not None:
                del self._procs[name]
        return results

    def _wait_gone(
        self, trees: dict[str, list[psutil.Process]], timeout: float
    ) -> dict[str, list[psutil.Process]]:
        """Wait until every process of each tree is gone (children of ours are reaped on the way);
        returns the trees with processes still alive."""
        everything = [q for procs in trees.values() for q in procs]
        _gone, alive = psutil.wait_procs(everything, timeout=timeout)
        for name in trees:
            proc = self._procs.get(name)
            if proc is not None:
                proc.poll()
        alive_pids = {q.pid for q in alive if _alive(q)}
        left = {n: [q for q in procs if q.pid in alive_pids] for n, procs in trees.items()}
        return {n: procs for n, procs in left.items() if procs}

    # -- queries and waits (async) -----------------------------------------------------------------------
    async def status(self, name: str) -> dict[str, Any]:
        """One status request to ``name``: its status map (``OSError`` / ``RemoteError``; no timeout)."""
        entry = self.cluster.node(name)
        return await query_status(entry.host, entry.port)

    def client(self, name: str) -> AbstractAsyncContextManager[Client]:
        """``async with net.client("node-0") as client:`` a connection to that node, closed on exit."""
        entry = self.cluster.node(name)
        return open_node_client(entry.host, entry.port)

    async def wait_ready(
        self, names: Iterable[str] | None = None, *, progress: Progress | None = None
    ) -> None:
        """Wait until every node in ``names`` (default: all) is ready: the node at the expected address
        answers with the expected chain id and node id, is not ``ready = false``, and has
        ``peer_count >= min(peers.target, running nodes - 1)``. No timeout: use ``trio.fail_after``.
        ``progress("ready", done, total)`` is called after every round of status requests.

        Error handling: :class:`ClusterError` with the node's log tails, at once, if its process is gone
        or another node answers on its address.
        """
        from p2pnode.localnet.waits import wait_ready

        def report(done: int, total: int) -> None:
            if progress is not None:
                progress("ready", done, total)

        await wait_ready(self, list(self.names if names is None else names), report)

    def memory(self, *names: str) -> list[NodeMemory]:
        """Resident memory of ``names`` (default: every node) that are running as this cluster's nodes,
        in cluster order (:mod:`p2pnode.localnet.resources`); nodes not running are left out."""
        wanted = list(names) or self.names
        live = self._live(wanted)
        out = []
        for name in wanted:
            p = live.get(name)
            if p is not None:
                m = node_memory(name, self.cluster.node(name).role, p)
                if m is not None:
                    out.append(m)
        return out

    async def wait_converged(self, names: Iterable[str] | None = None) -> bytes:
        """Wait until every node in ``names`` (default: all) reports the same state root; returns it.
        No timeout: use ``trio.fail_after``. :class:`ClusterError` at once if one of them exited."""
        from p2pnode.localnet.waits import wait_converged

        return await wait_converged(self, list(self.names if names is None else names))

    def exit_code(self, name: str) -> int | None:
        """The exit code of ``name`` if it was started by this object and has exited, else None."""
        proc = self._procs.get(name)
        return proc.poll() if proc is not None else None

    def failure(self, names: Sequence[str], summary: str) -> ClusterError:
        """A :class:`ClusterError` with ``summary`` and the log tails of (up to three of) ``names``."""
        lines = [summary.replace("\n", " ")]
        for name in names[:3]:
            for path in (self.cluster.node(name).log, self.cluster.out_path(name)):
                shown = path.relative_to(self.directory) if path.is_relative_to(self.directory) else path
                lines.append(f"--- {shown} (last {TAIL_LINES} lines) ---")
                lines += tail(path) or ["(empty)"]
        return ClusterError("\n".join(lines))


def port_problem(host: str, port: int) -> str | None:
    """Why a node could not listen on ``host:port`` now (None: it can). Bound as the node binds, with
    SO_REUSEADDR, so that a port in TIME_WAIT after a restart counts as free."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except socket.gaierror:
        return None  # not an IPv4 address: the node reports it with its own words
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _send(p: psutil.Process, sig: signal.Signals) -> None:
    """Signal the node's process group (it leads its own), else the process alone; gone is fine."""
    try:
        if os.getpgid(p.pid) == p.pid:
            os.killpg(p.pid, sig)
        else:
            p.send_signal(sig)
    except (ProcessLookupError, psutil.NoSuchProcess):
        pass
