"""A validator whose disk fills stops with the real cause, the others keep settling, and once there is room
again it restarts and catches up without losing anything it acknowledged.

One validator's data directory is a tiny tmpfs (needs root to mount; skipped otherwise). Payers load the
cluster until that node's store fills: its JSON log says ``store_failed`` with cause ``disk full``, its
stderr the one-line cause, and it exits with code 2. Payments keep settling on the other three (a quorum
of 4). Then the tmpfs is remounted larger and the node restarted: it starts from its own store, catches up,
and ends on the same root as the others.

The victim is started here (not by :class:`LocalNet`) so that its exit code and stderr are its own.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pnode.client import Client, Wallet, load_account, pay
from p2pnode.crypto import address_of
from p2pnode.errors import P2PNodeError
from p2pnode.localnet import LocalNet
from tests.system.conftest import cli, log_events, p2pnode_cmd, wait_until

pytestmark = pytest.mark.slow

VICTIM = "node-3"
TINY = "512k"  # room for the schema and a few payments' commits (each commit adds ~20 KiB of WAL)
ROOMY = "16m"
ACCOUNTS = 8
VICTIM_PAYERS = (0, 1)  # pay through the victim until it fails
STEADY_PAYERS = (2, 3, 4)  # pay through the other nodes the whole time
AFTER_CRASH = 5  # payments per steady payer once the victim is gone
MAX_PAYMENTS = 60  # per payer: the victim must have filled long before
PAY_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 60.0
CATCH_UP_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Ack:
    payer: int
    digest: bytes
    node: str


def _addr(net: LocalNet, name: str) -> tuple[str, int]:
    entry = net.cluster.node(name)
    return entry.host, entry.port


async def _status_within(net: LocalNet, name: str, seconds: float) -> dict[str, Any]:
    with trio.fail_after(seconds):
        return await net.status(name)


class Victim:
    """The victim's process: started and stopped here, its stdout and stderr in files of their own."""

    def __init__(self, cluster: LocalNet) -> None:
        self.cluster = cluster
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        logs = self.cluster.directory / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [*p2pnode_cmd(), "run", "--config", str(self.cluster.cluster.node(VICTIM).config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    @property
    def stdout_path(self) -> Path:
        return self.cluster.directory / "logs" / f"{VICTIM}-run{self.runs}.out"

    @property
    def stderr_path(self) -> Path:
        return self.cluster.directory / "logs" / f"{VICTIM}-run{self.runs}.err"

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            if self.exited() is not None:
                raise AssertionError(f"{VICTIM} exited with {self.exited()}: {self.stderr_path.read_text()}")
            try:
                info = trio.run(_status_within, self.cluster, VICTIM, 2.0)
            except (OSError, P2PNodeError, trio.TooSlowError):
                return False
            return info.get("peer_count", 0) >= 3 and info.get("ready", True) is not False

        wait_until(f"{VICTIM} ready", ready, timeout)

    def stop(self) -> None:
        """SIGTERM the victim's process group if it still runs, SIGKILL after 10 s; always reaped."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 30.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue


def run_quiet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[LocalNet, Victim, Path]]:
    """A 4-validator cluster directory whose victim's data directory is a tmpfs of size ``TINY``.

    Teardown, also on failure: the victim is stopped, the cluster stopped, the tmpfs unmounted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    directory = tmp_path / "cluster"
    cli("testnet", "--validators", "4", "--accounts", str(ACCOUNTS), "--no-shielded", "--out", str(directory))
    cluster = LocalNet.open(directory)
    data_dir = cluster.config(VICTIM).node.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    # Mount at a fresh directory of our own, then point data_dir at it, so that a path of the cluster is
    # never a mount point that a failed teardown would leave behind inside tmp_path.
    mnt = Path(tempfile.mkdtemp(prefix="p2pnode-diskfull-"))
    mounted = run_quiet("mount", "-t", "tmpfs", "-o", f"size={TINY}", "tmpfs", str(mnt))
    if mounted.returncode != 0:
        mnt.rmdir()
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip() or mounted.returncode}")
    data_dir.rmdir()
    data_dir.symlink_to(mnt)
    victim = Victim(cluster)
    try:
        yield cluster, victim, mnt
    finally:
        try:
            victim.stop()
        finally:
            try:
                cluster.stop()
            finally:
                if run_quiet("umount", str(mnt)).returncode != 0:
                    run_quiet("umount", "-l", str(mnt))
                mnt.rmdir()


async def load_until_the_victim_fails(cluster: LocalNet, victim: Victim) -> tuple[list[Ack], list[str]]:
    """Victim payers pay through the victim until a payment fails; steady payers pay through the others
    until AFTER_CRASH payments each have settled after the victim exited."""
    keys = [load_account(a.path) for a in cluster.cluster.accounts]
    addrs = [address_of(k.public) for k in keys]
    others = [n for n in cluster.names if n != VICTIM]
    acks: list[Ack] = []
    notes: list[str] = []
    gone = trio.Event()

    async def watch() -> None:
        deadline = trio.current_time() + EXIT_TIMEOUT_S
        while victim.exited() is None:
            if trio.current_time() > deadline:
                raise AssertionError(f"{VICTIM} still running after {EXIT_TIMEOUT_S:g}s of load")
            await trio.sleep(0.05)  # polling a process's exit: there is nothing to wait on in Trio
        notes.append(f"{VICTIM} exited with {victim.exited()} after {len(acks)} payments")
        gone.set()

    async def payer(i: int, through_victim: bool) -> None:
        clients: dict[str, Client] = {}
        last: bytes | None = None
        after = 0
        try:
            for k in range(MAX_PAYMENTS):
                node = VICTIM if through_victim else others[(i + k) % len(others)]
                client = clients.get(node)
                if client is None:
                    client = clients[node] = await Client.connect(*_addr(cluster, node))
                if last is not None and not through_victim:  # the next seq, read here, counts the last one
                    with trio.fail_after(PAY_TIMEOUT_S):
                        await client.wait_settled(last)
                payee = (i + 1 + k) % ACCOUNTS
                was_gone = gone.is_set()
                try:
                    with trio.fail_after(PAY_TIMEOUT_S):
                        result = await pay(client, Wallet.from_key(keys[i]), addrs[payee], 1000 + k)
                except (OSError, P2PNodeError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                    if not through_victim:
                        raise
                    # Whether this one settles elsewhere is unknown; the payer stops so that it never
                    # signs a second order for the same seq.
                    notes.append(f"payer {i}: payment {k} through {VICTIM} failed: {exc!r}")
                    return
                last = result.tx
                acks.append(Ack(i, result.tx, node))
                if was_gone:
                    after += 1
                    if after >= AFTER_CRASH:
                        return
            raise AssertionError(f"payer {i}: {MAX_PAYMENTS} payments and {VICTIM} is still running")
        finally:
            for c in clients.values():
                await c.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        for i in VICTIM_PAYERS:
            nursery.start_soon(payer, i, True)
        for i in STEADY_PAYERS:
            nursery.start_soon(payer, i, False)
    return acks, notes


async def _ready(net: LocalNet, names: list[str]) -> None:
    with trio.fail_after(READY_TIMEOUT_S):
        await net.wait_ready(names)


async def settled_at(cluster: LocalNet, name: str, digests: list[bytes]) -> None:
    async with await Client.connect(*_addr(cluster, name)) as client:
        for d in digests:
            with trio.fail_after(PAY_TIMEOUT_S):
                await client.wait_settled(d)


def durable_at(db: Path) -> tuple[set[bytes], set[bytes]]:
    """(certificate digests, lock digests) in a stopped node's database, read without writing."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        certs = {bytes(d) for (d,) in conn.execute("SELECT digest FROM certificates")}
        locks = {bytes(d) for (d,) in conn.execute("SELECT digest FROM locks")}
    finally:
        conn.close()
    return certs, locks


def test_a_validator_with_a_full_disk_stops_with_the_cause_and_recovers(
    setup: tuple[LocalNet, Victim, Path],
) -> None:
    cluster, victim, mnt = setup
    others = [n for n in cluster.names if n != VICTIM]
    data_dir = cluster.config(VICTIM).node.data_dir
    victim.start()
    cluster.start(*others)
    trio.run(_ready, cluster, others)
    victim.wait_ready(READY_TIMEOUT_S)

    acks, notes = trio.run(load_until_the_victim_fails, cluster, victim)

    # The victim stopped, with the cause on stderr (one line) and a non-zero exit code.
    assert victim.exited() == 2, notes
    stderr = victim.stderr_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    expected = (
        f"p2pnode: error: storage failed: disk full: database or disk is full (data directory {data_dir}"
    )
    assert stderr and stderr[-1].startswith(expected), stderr
    assert not any("rollback" in line for line in stderr), stderr
    # The other three kept settling: every steady payer settled AFTER_CRASH payments after the crash.
    steady = [a for a in acks if a.payer in STEADY_PAYERS]
    through_victim = [a for a in acks if a.node == VICTIM]
    assert through_victim, f"no payment settled through {VICTIM} before its disk filled: {notes}"
    assert len(steady) >= len(STEADY_PAYERS) * AFTER_CRASH, notes

    # Everything the victim acknowledged is in its database: certificates it reported settled, and a
    # lock (or the certificate that replaced it) for every vote it signed.
    run = victim.runs
    certs, locks = durable_at(data_dir / "node.sqlite")
    assert {a.digest for a in through_victim} <= certs
    voted = {bytes.fromhex(e["tx"]) for e in log_events(cluster.cluster.node(VICTIM).log, "vote_sent")}
    assert voted <= certs | locks, f"{len(voted - certs - locks)} votes signed without a durable lock"

    # Room again: the victim restarts from its own store, catches up and agrees with the others.
    subprocess.run(["mount", "-o", f"remount,size={ROOMY}", str(mnt)], check=True, timeout=30)
    victim.start()
    victim.wait_ready(READY_TIMEOUT_S)
    assert victim.runs == run + 1
    started = log_events(cluster.cluster.node(VICTIM).log, "node_started")
    assert len(started) == 2 and started[1]["applied"] >= len(certs), started
    trio.run(settled_at, cluster, VICTIM, [a.digest for a in acks])

    def agreed() -> dict[str, dict[str, object]] | None:
        statuses = {n: trio.run(_status_within, cluster, n, 10.0) for n in cluster.names}
        counts = {s["applied"] for s in statuses.values()}
        roots = {s["root"] for s in statuses.values()}
        return statuses if len(counts) == 1 and len(roots) == 1 else None

    statuses = wait_until("equal applied counts and roots on every node", agreed, CATCH_UP_TIMEOUT_S)
    assert statuses[VICTIM]["applied"] >= len(acks)

    # The driver's log line for the failure (written by Node._writer before it re-raises).
    failed = log_events(cluster.cluster.node(VICTIM).log, "store_failed")
    assert len(failed) == 1, f"{VICTIM}'s log has {len(failed)} store_failed lines (Node._writer logs it)"
    assert failed[0]["cause"] == "disk full"
    assert failed[0]["error"] == "database or disk is full"
    assert failed[0]["level"] == "error" and failed[0]["writes"] >= 1
