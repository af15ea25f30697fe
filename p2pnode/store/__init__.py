"""Durable node state: SQLite (WAL) on disk, and an in-memory twin for tests."""

from p2pnode.store.sqlite import MemoryStore, Snapshot, SqliteStore, Store

__all__ = ["MemoryStore", "Snapshot", "SqliteStore", "Store"]
