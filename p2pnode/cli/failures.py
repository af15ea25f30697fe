"""The command line's typed failures and the one time budget of a command.

Exit codes (see :mod:`p2pnode.cli.main`): a :class:`Refused` operation exits 1, whatever refused it
(a node, the ledger, the wallet's own checks); every other :class:`~p2pnode.errors.P2PNodeError`
(bad usage, configuration, an unreachable or silent node, a broken connection) exits 2. Each error
is one line; ``facts`` are added to the JSON object a ``--json`` command prints on failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

import trio

from p2pnode.errors import LocalError, P2PNodeError
from p2pnode.wire.types import U64_MAX


class Refused(P2PNodeError):
    """The operation was carried out and did not succeed: exit 1."""

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, **facts: Any) -> None:
        super().__init__(message)
        self.facts = facts


class PaymentRefused(Refused):
    """The node refused the order; the message is the node's one-line reason."""


class NotSettled(Refused):
    """The order was accepted but did not settle within the command's time budget."""


class SlotBlocked(Refused):
    """The account's next seq can never settle: conflicting orders split the validators' votes."""


class WalletBusy(Refused):
    """Another command holds the account file's lock for longer than the time budget."""


class InsufficientNotes(Refused):
    """The shielded wallet's notes cannot cover the amount."""


class NodeTimeout(P2PNodeError):
    """The node did not answer within the time budget (exit 2: an unresponsive node)."""

    exit_code: ClassVar[int] = 2


class UsageError(LocalError):
    """An argument the parser accepted but the command cannot use (exit 2)."""


def check_amount(value: int, option: str = "--amount") -> int:
    """``value`` if it is a positive u64 (what a transfer can carry), else :class:`UsageError`."""
    if value <= 0:
        raise UsageError(f"{option} must be positive, got {value}")
    if value > U64_MAX:
        raise UsageError(f"{option} {value} does not fit in u64 (at most {U64_MAX})")
    return value


class Waiting:
    """``with budget.waiting(...)``: a cancel scope at the budget's deadline that raises a typed error
    instead of returning quietly when it expires (so a body may ``return`` from inside it)."""

    def __init__(self, deadline: float, error: type[P2PNodeError], text: str, facts: dict[str, Any]) -> None:
        self._scope = trio.move_on_at(deadline)
        self._error, self._text, self._facts = error, text, facts

    def __enter__(self) -> None:
        self._scope.__enter__()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        swallowed = self._scope.__exit__(et, e, tb)
        if swallowed and self._scope.cancelled_caught:
            if issubclass(self._error, Refused):
                raise self._error(self._text, **self._facts)
            raise self._error(self._text)


@dataclass(frozen=True, slots=True)
class Budget:
    """One deadline for a whole command (``--timeout``): connecting, every request, waiting for the
    account lock and for settlement all count against it. Each wait says what it waits for, so that
    running out names it. Create inside ``trio.run`` (the deadline is on Trio's clock)."""

    seconds: float
    deadline: float

    @classmethod
    def start(cls, seconds: float) -> Budget:
        return cls(seconds, trio.current_time() + seconds)

    def waiting(
        self, what: str, error: type[P2PNodeError] = NodeTimeout, message: str = "", **facts: Any
    ) -> Waiting:
        """Bound the body by the deadline; on expiry raise ``error`` with ``message`` (``{seconds}``
        is replaced by the budget), by default "no <what> within Ts"."""
        text = (message or f"no {what} within {{seconds}}s").replace("{seconds}", f"{self.seconds:g}")
        return Waiting(self.deadline, error, text, facts)

    def remaining_ms(self, cap_ms: int) -> int:
        """Milliseconds left before the deadline, at least 1 and at most ``cap_ms``."""
        return max(1, min(cap_ms, int((self.deadline - trio.current_time()) * 1000)))


def as_budget(timeout: float | Budget) -> Budget:
    return timeout if isinstance(timeout, Budget) else Budget.start(timeout)
