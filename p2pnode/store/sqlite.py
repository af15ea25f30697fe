"""Node storage: certificates, accounts and validator locks.

Durability contract (what the protocol needs, and what kill -9 must not break):

- ``commit`` returns only after the transaction is durable (WAL, ``synchronous=FULL``).
- Durable before visible: nothing a client or peer can observe reflects a write before its commit
  returned. The driver signs a vote only after the lock's commit returned; it reports a payment
  settled, and shows its balances, seqs, notes, root and counts, only after the certificate's commit
  returned (the core's ``DurableView`` advances in ``on_durable``). Commits run in the order the core
  changed its state, so the durable state is always a prefix of the applied sequence, and a crash
  image taken at the instant of any answer holds what that answer showed
  (tests/integration/test_durability.py).
- A lock row carries the order's bytes, so a restarted validator takes the order back and votes for
  it again (the same signature), never for another order of that (sender, seq).
- One ``commit`` is one transaction: an applied certificate, the accounts it changed and the removal
  of its lock land together or not at all.
- A data directory belongs to one chain; opening it with another genesis is refused.

Errors: every SQLite failure at open, load or commit raises :class:`StorageError` with its cause in
plain words (disk full, I/O error, read-only, database error) and SQLite's own message. After a failed
commit the database holds exactly the commits that returned: SQLite rolls the failed transaction back
itself on SQLITE_FULL / SQLITE_IOERR, and we roll back only a transaction that is still open, so a
rollback never replaces the error that caused it.

Blocking: every method blocks on disk I/O. The driver calls them from a worker thread, one at a
time (the connection is not shared between concurrent calls).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from p2pnode.core.effects import PersistApplied, PersistLock
from p2pnode.errors import LocalError, StorageError

Write = PersistLock | PersistApplied

# Primary SQLite result codes (the low byte of an extended code) and how a node's operator reads them.
CAUSES = {
    sqlite3.SQLITE_FULL: "disk full",
    sqlite3.SQLITE_IOERR: "I/O error",
    sqlite3.SQLITE_READONLY: "read-only",
}
OTHER_CAUSE = "database error"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    address BLOB PRIMARY KEY, balance BLOB NOT NULL, next_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS certificates (
    n INTEGER PRIMARY KEY AUTOINCREMENT, sender BLOB NOT NULL, seq INTEGER NOT NULL,
    digest BLOB NOT NULL UNIQUE, cert BLOB NOT NULL, UNIQUE (sender, seq));
CREATE TABLE IF NOT EXISTS notes (commitment BLOB PRIMARY KEY, spent INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS locks (
    sender BLOB NOT NULL, seq INTEGER NOT NULL, digest BLOB NOT NULL, ord BLOB NOT NULL,
    PRIMARY KEY (sender, seq));
"""


@dataclass(slots=True)
class Snapshot:
    accounts: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # address -> (balance, next_seq)
    certs: list[bytes] = field(default_factory=list)  # in the order they were applied
    # (sender, seq, digest, order bytes): a restarted validator votes again for the order it locked
    locks: list[tuple[bytes, int, bytes, bytes]] = field(default_factory=list)
    notes: dict[bytes, bool] = field(default_factory=dict)  # commitment -> spent


class Store(Protocol):
    def load(self) -> Snapshot: ...
    def commit(self, writes: Sequence[Write]) -> None: ...
    def close(self) -> None: ...


class SqliteStore:
    def __init__(self, path: Path, chain_id: bytes) -> None:
        """Open (or create) the database at ``path`` for chain ``chain_id``.

        Error handling: :class:`StorageError` if SQLite cannot open, set up or write it;
        :class:`LocalError` if it belongs to another chain.
        """
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key = 'chain_id'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('chain_id', ?)", (chain_id,))
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            raise storage_error(exc, path, "open") from exc
        self._db = db
        if row is not None and bytes(row[0]) != chain_id:
            db.close()
            raise LocalError(
                f"{path}: data directory belongs to chain {bytes(row[0]).hex()[:16]}, not this genesis"
            )

    def load(self) -> Snapshot:
        """Everything committed so far. Error handling: :class:`StorageError`."""
        try:
            return self._load()
        except sqlite3.Error as exc:
            raise storage_error(exc, self.path, "load") from exc

    def _load(self) -> Snapshot:
        snap = Snapshot()
        for addr, bal, seq in self._db.execute("SELECT address, balance, next_seq FROM accounts"):
            snap.accounts[bytes(addr)] = (int.from_bytes(bal, "big"), seq)
        snap.certs = [bytes(c) for (c,) in self._db.execute("SELECT cert FROM certificates ORDER BY n")]
        snap.locks = [
            (bytes(s), q, bytes(d), bytes(o))
            for s, q, d, o in self._db.execute("SELECT sender, seq, digest, ord FROM locks")
        ]
        snap.notes = {bytes(c): bool(sp) for c, sp in self._db.execute("SELECT commitment, spent FROM notes")}
        return snap

    def commit(self, writes: Sequence[Write]) -> None:
        """One transaction for all of ``writes``, durable when this returns.

        Error handling: :class:`StorageError` for any SQLite failure (nothing of ``writes`` was
        written); other exceptions (a bug in a write) propagate after the rollback.
        """
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            for w in writes:
                if isinstance(w, PersistLock):
                    db.executemany(
                        "INSERT OR REPLACE INTO locks VALUES (?, ?, ?, ?)",
                        [(k, q, w.digest, w.order) for k, q in w.keys],
                    )
                else:
                    db.execute(
                        "INSERT OR IGNORE INTO certificates (sender, seq, digest, cert) VALUES (?, ?, ?, ?)",
                        (w.key[0], w.key[1], w.digest, w.cert_bytes),
                    )
                    db.executemany(
                        "INSERT OR REPLACE INTO accounts VALUES (?, ?, ?)",
                        [(a, b.to_bytes(8, "big"), s) for a, b, s in w.accounts],
                    )
                    db.executemany(
                        "INSERT OR REPLACE INTO notes VALUES (?, ?)", [(c, int(sp)) for c, sp in w.notes]
                    )
                    db.executemany("DELETE FROM locks WHERE sender = ? AND seq = ?", list(w.locks))
            db.execute("COMMIT")
        except BaseException as exc:
            self._rollback(exc)
            if isinstance(exc, sqlite3.Error):
                raise storage_error(exc, self.path, "commit") from exc
            raise

    def _rollback(self, exc: BaseException) -> None:
        """Roll back the transaction ``exc`` interrupted, if SQLite has not already done so.

        On SQLITE_FULL and SQLITE_IOERR SQLite ends the transaction itself, and a ROLLBACK then fails
        with "no transaction is active"; whatever happens here, ``exc`` stays the error reported.
        """
        if not self._db.in_transaction:
            return
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error as failed:
            exc.add_note(f"the rollback failed too: {failed}")

    def close(self) -> None:
        self._db.close()


def storage_error(exc: sqlite3.Error, path: Path, operation: str) -> StorageError:
    """The :class:`StorageError` for SQLite's ``exc``, its cause read from the primary result code."""
    code = getattr(exc, "sqlite_errorcode", None)
    cause = CAUSES.get(code & 0xFF, OTHER_CAUSE) if isinstance(code, int) else OTHER_CAUSE
    name = getattr(exc, "sqlite_errorname", None)
    return StorageError(
        cause, str(exc) or type(exc).__name__, path=path, operation=operation, code=name or ""
    )


class MemoryStore:
    """Same contract, in memory (durable for the life of the object): for in-process tests."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()
        self.commits = 0

    def load(self) -> Snapshot:
        snap = self.snapshot
        return Snapshot(dict(snap.accounts), list(snap.certs), list(snap.locks), dict(snap.notes))

    def commit(self, writes: Sequence[Write]) -> None:
        self.commits += 1
        for w in writes:
            if isinstance(w, PersistLock):
                self.snapshot.locks.extend((k, q, w.digest, w.order) for k, q in w.keys)
            else:
                self.snapshot.certs.append(w.cert_bytes)
                for a, b, s in w.accounts:
                    self.snapshot.accounts[a] = (b, s)
                self.snapshot.notes.update(w.notes)
                released = set(w.locks)
                self.snapshot.locks = [x for x in self.snapshot.locks if (x[0], x[1]) not in released]

    def close(self) -> None:
        pass
