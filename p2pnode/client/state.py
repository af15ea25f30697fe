"""What a wallet remembers next to its account file, so that it never equivocates by itself.

Two files sit beside an account file ``A``:

- ``A.lock``: every command that signs for the account (``pay``, ``shield``, ``zpay``, ``unshield``)
  holds an exclusive ``flock`` on it from reading the account's seq until its payment settled or the
  command ends. Two commands on one machine are therefore serialized, whichever nodes they talk to.
  The lock dies with its process, so a killed command never leaves it held.
- ``A.state.json`` (mode 0600, replaced atomically): the chain it is about, the next seq the wallet
  was last told, the last payment it saw settle and, written *before* an order is submitted, the
  pending order (its seq, digest and encoded bytes). A later command that finds a pending order the
  node has not applied resubmits exactly those bytes and waits for them before it signs anything new;
  it never signs a different order for a seq that has a pending one.

The file is the wallet's promise to itself; deleting it while an order may still be in flight gives
up that promise (see README, "A blocked account slot").
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import trio

from p2pnode.client.progress import LOCK, Progress
from p2pnode.errors import LocalError

TRANSFER, SHIELDED = "transfer", "shielded"
_POLL_S = 0.02  # how often a waiting command retries the lock


def lock_path(account_file: Path) -> Path:
    return account_file.with_name(account_file.name + ".lock")


def state_path(account_file: Path) -> Path:
    return account_file.with_name(account_file.name + ".state.json")


@dataclass(frozen=True, slots=True, kw_only=True)
class Pending:
    """An order written down before it was submitted: ``kind`` TRANSFER or SHIELDED, ``seq`` the
    account seq it consumes (None for a shielded spend, which consumes notes instead)."""

    kind: str
    seq: int | None
    digest: bytes
    order: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class WalletState:
    chain_id: bytes = b""
    next_seq: int = 0
    pending: Pending | None = None

    def for_chain(self, chain_id: bytes) -> WalletState:
        """This state if it is about ``chain_id``; a fresh one otherwise (orders are chain-bound, so
        what the wallet did on another chain binds nothing here)."""
        return self if self.chain_id == chain_id else WalletState(chain_id=chain_id)

    def settled(self, next_seq: int) -> WalletState:
        """The pending order settled (or there was none); the account's next seq is ``next_seq``."""
        return replace(self, next_seq=max(self.next_seq, next_seq), pending=None)


def load_state(account_file: Path) -> WalletState:
    path = state_path(account_file)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return WalletState()
    except (OSError, ValueError) as exc:
        raise LocalError(
            f"{path}: unreadable wallet state ({exc}); move it away only if no order is in flight"
        ) from None
    try:
        pending = doc.get("pending")
        return WalletState(
            chain_id=bytes.fromhex(doc["chain_id"]),
            next_seq=int(doc["next_seq"]),
            pending=None
            if pending is None
            else Pending(
                kind=str(pending["kind"]),
                seq=None if pending["seq"] is None else int(pending["seq"]),
                digest=bytes.fromhex(pending["digest"]),
                order=bytes.fromhex(pending["order"]),
            ),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise LocalError(
            f"{path}: not a wallet state file; move it away only if no order is in flight"
        ) from None


def save_state(account_file: Path, state: WalletState) -> None:
    """Write ``state`` durably: a temporary file in the same directory (mode 0600), fsync, then
    ``os.replace``, so that a reader sees the old state or the new one, never a torn one."""
    path = state_path(account_file)
    p = state.pending
    doc = {
        "chain_id": state.chain_id.hex(),
        "next_seq": state.next_seq,
        "pending": None
        if p is None
        else {"kind": p.kind, "seq": p.seq, "digest": p.digest.hex(), "order": p.order.hex()},
    }
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp creates the file with mode 0600
            json.dump(doc, f, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.asynccontextmanager
async def account_lock(account_file: Path, progress: Progress | None = None) -> AsyncIterator[None]:
    """Hold the exclusive lock of ``account_file`` for the body, waiting for it as long as it takes.

    The caller bounds the wait (``trio.fail_after``); while waiting, ``progress`` is at a ``lock``
    step naming the account and the lock file. Resource handling: the lock file descriptor is closed
    (the lock released) when the body ends, however it ends; a crashed holder's lock is released by
    the kernel.
    """
    path = lock_path(account_file)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise LocalError(f"{path}: cannot open the wallet lock: {exc.strerror}") from None
    try:
        with (progress or Progress()).step(LOCK, f"lock {path}", account=str(account_file), lock=str(path)):
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await trio.sleep(_POLL_S)
        yield
    finally:
        os.close(fd)
