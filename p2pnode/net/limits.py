"""Open-file limits and the connection gate: how many connections the node accepts, and why.

Every accepted connection costs a file descriptor. The node's own work (its store, its outbound dials,
its verifier processes, its log) needs descriptors too, and failing those with ``EMFILE`` because
strangers hold every descriptor would take the node down for everyone. So:

- at start the soft ``RLIMIT_NOFILE`` is raised to the hard limit where the OS allows it
  (:func:`raise_nofile_limit`);
- connections are accepted only while open connections < soft limit - ``limits.fd_reserve``;
- ``peers.max_connections + limits.max_clients`` is lowered, in proportion, to fit that budget
  (:func:`connection_caps`), and the node logs that it did so (event ``limits``).

:class:`ConnectionGate` counts connections (accepted, not yet classified, peers and clients alike) and
clients; it is plain bookkeeping, safe to share by every task of one node because Trio runs one task at
a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pnode.errors import LocalError

try:
    import resource
except ImportError:  # pragma: no cover - not a POSIX system: no limit to raise or read
    resource = None  # type: ignore[assignment]

UNLIMITED_TARGET = 1 << 16  # the soft limit asked for when the hard limit is "unlimited"
NO_RLIMIT = 1 << 20  # what the budget assumes where the OS has no RLIMIT_NOFILE


@dataclass(frozen=True, slots=True, kw_only=True)
class FdLimit:
    """The soft open-file limit before and after :func:`raise_nofile_limit`, and the hard limit
    (``-1`` = unlimited)."""

    before: int
    soft: int
    hard: int


def _finite(value: int) -> int:
    return -1 if resource is not None and value == resource.RLIM_INFINITY else value


def raise_nofile_limit() -> FdLimit:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit (or to ``UNLIMITED_TARGET`` when
    the hard limit is infinite), where the OS allows it; return the limits read back afterwards.

    Error handling: a refusal by the OS keeps the old soft limit (read back, so the answer is true);
    never raises. Idempotent: the limit is process-wide, and raising it twice changes nothing.
    """
    if resource is None:  # pragma: no cover - non-POSIX
        return FdLimit(before=NO_RLIMIT, soft=NO_RLIMIT, hard=-1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, UNLIMITED_TARGET)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass  # e.g. a hard limit above the kernel's nr_open: the old soft limit stays, read back below
    now, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return FdLimit(before=_finite(soft), soft=_finite(now), hard=_finite(hard))


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionCaps:
    """What the node accepts: ``max_open`` connections in all (any kind, including those still in
    their handshake), of which at most ``max_peers`` peers and ``max_clients`` clients. ``lowered``
    says the configured caps did not fit the open-file limit."""

    max_open: int
    max_peers: int
    max_clients: int
    lowered: bool


def connection_caps(*, soft_limit: int, fd_reserve: int, max_peers: int, max_clients: int) -> ConnectionCaps:
    """The caps for an open-file soft limit (``-1`` = unlimited).

    ``max_open = soft_limit - fd_reserve``. When ``max_peers + max_clients`` exceeds it, both are
    scaled down in proportion (each at least 1), so that neither peers nor clients can be starved by
    the other's configured share.

    Error handling: :class:`LocalError` when the limit leaves fewer than 2 descriptors for connections
    (raise the open-file limit or lower ``limits.fd_reserve``).
    """
    soft = NO_RLIMIT if soft_limit < 0 else soft_limit
    max_open = soft - fd_reserve
    if max_open < 2:
        raise LocalError(
            f"open-file limit {soft} leaves {max_open} descriptors for connections after "
            f"limits.fd_reserve = {fd_reserve}: raise the limit (ulimit -n) or lower limits.fd_reserve"
        )
    want = max_peers + max_clients
    if want <= max_open:
        return ConnectionCaps(max_open=max_open, max_peers=max_peers, max_clients=max_clients, lowered=False)
    peers = max(1, min(max_open - 1, max_open * max_peers // want))
    return ConnectionCaps(max_open=max_open, max_peers=peers, max_clients=max_open - peers, lowered=True)


class ConnectionGate:
    """Counts open connections and client connections against :class:`ConnectionCaps`.

    Every ``try_open`` that returned True is matched by one ``close``; every ``try_client`` that
    returned True by one ``client_done`` (callers use ``try``/``finally``).
    """

    def __init__(self, caps: ConnectionCaps) -> None:
        self.caps = caps
        self.open = 0
        self.clients = 0

    def try_open(self) -> bool:
        if self.open >= self.caps.max_open:
            return False
        self.open += 1
        return True

    def close(self) -> None:
        self.open -= 1

    def try_client(self) -> bool:
        if self.clients >= self.caps.max_clients:
            return False
        self.clients += 1
        return True

    def client_done(self) -> None:
        self.clients -= 1


__all__ = ["ConnectionCaps", "ConnectionGate", "FdLimit", "connection_caps", "raise_nofile_limit"]
