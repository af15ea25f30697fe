"""SqliteStore failures name their real cause, and a failed commit leaves every earlier commit intact.

Disk full is reproduced twice: with SQLite's own page limit (``PRAGMA max_page_count``: the same
SQLITE_FULL path as a full disk, runs everywhere), and on a real 256 KiB tmpfs when running as root.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from p2pnode.core.effects import PersistApplied, PersistLock
from p2pnode.errors import LocalError, StorageError
from p2pnode.store import Snapshot, SqliteStore
from p2pnode.store.sqlite import Write, storage_error
from p2pnode.store.thread import StoreThread
from p2pnode.wire.types import Digest

CHAIN = b"\x01" * 32
CERT_BYTES = 1500  # about a transparent certificate with four votes


def applied(n: int) -> PersistApplied:
    """The n-th applied certificate: distinct keys, an incompressible body, two accounts changed."""
    sender = n.to_bytes(20, "big")
    return PersistApplied(
        key=(sender, 0),
        cert_bytes=os.urandom(CERT_BYTES),
        digest=Digest(n.to_bytes(32, "big")),
        accounts=((sender, 10**9 - n, 1), (b"\xff" * 20, n, 0)),
    )


def fill(store: SqliteStore, start: int, limit: int = 10_000) -> tuple[list[bytes], StorageError]:
    """Commit one certificate at a time until a commit fails; the certs of the commits that returned."""
    done: list[bytes] = []
    for n in range(start, start + limit):
        w = applied(n)
        try:
            store.commit([w])
        except StorageError as exc:
            return done, exc
        done.append(w.cert_bytes)
    raise AssertionError(f"{limit} commits and the store never filled")


def connection(store: SqliteStore) -> sqlite3.Connection:
    """The store's own connection: SQLite's limits are per connection."""
    return store._db


# -- classification ----------------------------------------------------------------------------------
def sqlite_failure(message: str, code: int | None, name: str | None) -> sqlite3.Error:
    """What sqlite3 raises; an error made by the module itself (closed connection) has no code."""
    exc = sqlite3.OperationalError(message)
    if code is not None and name is not None:
        exc.sqlite_errorcode = code
        exc.sqlite_errorname = name
    return exc


@pytest.mark.parametrize(
    ("message", "code", "name", "cause"),
    [
        ("database or disk is full", 13, "SQLITE_FULL", "disk full"),
        ("disk I/O error", 10, "SQLITE_IOERR", "I/O error"),
        ("disk I/O error", 10 | (3 << 8), "SQLITE_IOERR_WRITE", "I/O error"),
        ("disk I/O error", 10 | (19 << 8), "SQLITE_IOERR_SHMSIZE", "I/O error"),
        ("attempt to write a readonly database", 8, "SQLITE_READONLY", "read-only"),
        ("attempt to write a readonly database", 8 | (3 << 8), "SQLITE_READONLY_ROLLBACK", "read-only"),
        ("unable to open database file", 14, "SQLITE_CANTOPEN", "database error"),
        ("database disk image is malformed", 11, "SQLITE_CORRUPT", "database error"),
        ("cannot operate on a closed database", None, None, "database error"),
    ],
)
def test_the_cause_is_read_from_the_primary_result_code(
    message: str, code: int | None, name: str | None, cause: str
) -> None:
    err = storage_error(sqlite_failure(message, code, name), Path("/data/n0/node.sqlite"), "commit")
    assert isinstance(err, LocalError)
    assert (err.cause, err.detail, err.code, err.operation) == (cause, message, name or "", "commit")
    assert str(err) == f"storage failed: {cause}: {message} (data directory /data/n0, at commit)"


# -- disk full, injected (everywhere) --------------------------------------------------------------
def test_disk_full_keeps_its_cause_and_every_returned_commit(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite"
    store = SqliteStore(path, CHAIN)
    store.commit([applied(0)])
    pages = connection(store).execute("PRAGMA page_count").fetchone()[0]
    connection(store).execute(f"PRAGMA max_page_count = {pages + 8}")

    done, exc = fill(store, 1)
    assert done, "the limit left no room for a single commit"
    assert exc.cause == "disk full"
    assert exc.detail == "database or disk is full"
    assert exc.code == "SQLITE_FULL"
    assert isinstance(exc.__cause__, sqlite3.OperationalError)
    assert "rollback" not in str(exc) and not getattr(exc.__cause__, "__notes__", [])
    assert str(exc) == (
        f"storage failed: disk full: database or disk is full (data directory {tmp_path}, at commit)"
    )
    assert not connection(store).in_transaction

    # Nothing of the failed commit, everything of the ones that returned, also for a fresh reader.
    assert store.load().certs[1:] == done
    store.close()
    again = SqliteStore(path, CHAIN)
    assert again.load().certs[1:] == done

    # Room again: commits work and land after the others.
    w = applied(10_000)
    again.commit([w])
    assert again.load().certs[1:] == [*done, w.cert_bytes]
    again.close()


def test_a_failed_lock_commit_writes_none_of_its_keys(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "node.sqlite", CHAIN)
    pages = connection(store).execute("PRAGMA page_count").fetchone()[0]
    connection(store).execute(f"PRAGMA max_page_count = {pages}")
    many = tuple((n.to_bytes(20, "big"), 0) for n in range(2000))
    lock = PersistLock(keys=many, digest=Digest(b"\x07" * 32), order=os.urandom(400))
    with pytest.raises(StorageError) as info:
        store.commit([lock])
    assert info.value.cause == "disk full"
    assert store.load().locks == []
    store.close()


# -- other causes, injected (everywhere) -----------------------------------------------------------
def test_a_read_only_database_says_read_only(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "node.sqlite", CHAIN)
    store.commit([applied(0)])
    connection(store).execute("PRAGMA query_only = 1")  # what a read-only file or mount does to writes
    with pytest.raises(StorageError) as info:
        store.commit([applied(1)])
    assert (info.value.cause, info.value.operation) == ("read-only", "commit")
    assert info.value.detail == "attempt to write a readonly database"
    assert len(store.load().certs) == 1
    store.close()


def test_a_directory_in_place_of_the_database_fails_at_open(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite"
    path.mkdir()
    with pytest.raises(StorageError) as info:
        SqliteStore(path, CHAIN)
    assert (info.value.cause, info.value.operation) == ("database error", "open")
    assert info.value.detail == "unable to open database file"
    assert str(info.value).startswith("storage failed: database error: unable to open database file")


def test_a_damaged_database_fails_at_load(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite"
    store = SqliteStore(path, CHAIN)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("DROP TABLE locks")
    other.close()
    with pytest.raises(StorageError) as info:
        store.load()
    assert (info.value.cause, info.value.operation) == ("database error", "load")
    assert info.value.detail == "no such table: locks"
    store.close()


def test_another_chains_directory_is_still_refused_as_such(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "node.sqlite", CHAIN).close()
    with pytest.raises(LocalError, match="belongs to chain") as info:
        SqliteStore(tmp_path / "node.sqlite", b"\x02" * 32)
    assert not isinstance(info.value, StorageError)


def test_a_bug_in_a_write_rolls_back_and_propagates_as_it_is(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "node.sqlite", CHAIN)
    bad = PersistApplied(
        key=(b"\x01" * 20, 0),
        cert_bytes=b"cert",
        digest=Digest(b"\x01" * 32),
        accounts=((b"\x01" * 20, 2**64, 1),),  # does not fit the 8-byte balance column
    )
    with pytest.raises(OverflowError):
        store.commit([bad])
    assert not connection(store).in_transaction
    assert store.load().certs == []
    store.commit([applied(1)])
    assert len(store.load().certs) == 1
    store.close()


# -- the store thread ------------------------------------------------------------------------------
class FailingStore:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def load(self) -> Snapshot:
        return Snapshot()

    def commit(self, writes: Sequence[Write]) -> None:
        raise self.exc

    def close(self) -> None:
        pass


async def test_the_store_thread_reraises_a_storage_error_unchanged() -> None:
    exc = StorageError("disk full", "database or disk is full", path=Path("/d/n.sqlite"), operation="commit")
    thread = StoreThread(FailingStore(exc))
    try:
        with pytest.raises(StorageError) as info:
            await thread.commit([applied(0)])
    finally:
        thread.stop()
    assert info.value is exc


async def test_the_store_thread_wraps_anything_else() -> None:
    thread = StoreThread(FailingStore(OverflowError("int too big to convert")))
    try:
        with pytest.raises(LocalError, match="store commit failed: int too big to convert") as info:
            await thread.commit([applied(0)])
    finally:
        thread.stop()
    assert isinstance(info.value.__cause__, OverflowError)


# -- disk full, for real (root) --------------------------------------------------------------------
@pytest.fixture
def tiny_fs() -> Iterator[Path]:
    """A 256 KiB tmpfs at a fresh directory; unmounted (lazily if busy) and removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = Path(tempfile.mkdtemp(prefix="p2pnode-tinyfs-"))
    try:
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip() or proc.returncode}")
        try:
            yield mnt
        finally:
            if subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30).returncode != 0:
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)
    finally:
        mnt.rmdir()


def remount(mnt: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True, timeout=30)


def test_a_full_filesystem_stops_commits_with_disk_full_and_loses_nothing(tiny_fs: Path) -> None:
    path = tiny_fs / "data" / "node.sqlite"
    store = SqliteStore(path, CHAIN)
    done, exc = fill(store, 0)
    assert len(done) >= 3, f"only {len(done)} commits fit in 256 KiB"
    assert exc.cause == "disk full", exc
    assert exc.code == "SQLITE_FULL"
    assert str(exc) == (
        f"storage failed: disk full: database or disk is full (data directory {path.parent}, at commit)"
    )
    assert store.load().certs == done
    store.close()
    # A node restarted on the still-full disk reads everything back.
    reader = SqliteStore(path, CHAIN)
    assert reader.load().certs == done

    remount(tiny_fs, "4m")
    extra = [applied(n) for n in range(len(done), len(done) + 40)]
    for w in extra:
        reader.commit([w])
    reader.close()
    final = SqliteStore(path, CHAIN)
    assert final.load().certs == [*done, *(w.cert_bytes for w in extra)]
    final.close()
