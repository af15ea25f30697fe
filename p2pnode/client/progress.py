"""Which step a client operation is in, so that a caller whose deadline expired can say which.

The library takes no timeout arguments: a caller bounds an operation with ``trio.fail_after`` (the
command line's ``--timeout``). ``TooSlowError`` alone would not say whether the node was silent,
the account's lock was held by another command or an accepted order had not settled yet, so each
waiting step notes itself in a :class:`Progress`; after the deadline, :attr:`Progress.current` is the
step that was cut short.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CONNECT", "LOCK", "PROVE", "REPLY", "SETTLE", "Progress", "Step"]

# Step kinds.
CONNECT = "connect"  # opening the connection; facts: node
REPLY = "reply"  # waiting for the reply to one request; facts: node, request
LOCK = "lock"  # waiting for the account file's lock; facts: account, lock
SETTLE = "settle"  # an accepted order waits for settlement; facts: node, tx
PROVE = "prove"  # building a proof (local work)


@dataclass(frozen=True, slots=True)
class Step:
    """``kind`` one of the constants above; ``what`` a short phrase ("status reply from h:p");
    ``facts`` the values a failure message may name."""

    kind: str
    what: str
    facts: Mapping[str, Any] = field(default_factory=dict)


class Progress:
    """The outermost step an operation is in, and after a failure the step it failed in.

    Steps nest (waiting for settlement makes requests); the outermost one names what the caller
    waits for. A step that ends normally is forgotten; one that ends by an exception (a cancelled
    deadline included) stays :attr:`current` until the next step starts. Shared by the tasks that
    use one :class:`~p2pnode.client.Client`; with concurrent operations it names one of them.
    """

    __slots__ = ("_depth", "current")

    def __init__(self) -> None:
        self.current: Step | None = None
        self._depth = 0

    @contextmanager
    def step(self, kind: str, what: str, **facts: Any) -> Iterator[None]:
        if self._depth == 0:
            self.current = Step(kind, what, facts)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if self._depth == 0:
            self.current = None
