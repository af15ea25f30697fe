"""Byzantine validators for fault scenarios: subclasses of the honest :class:`Validator`.

Each overrides only the place where it differs (see the hooks on ``Validator``):

- ``equivocate``     skips its lock check: votes for conflicting orders of one (sender, seq);
- ``bad_signature``  signs garbage instead of votes;
- ``silent``         never votes;
- ``forget_locks``   neither checks nor keeps locks: votes for every order and remembers nothing
                     across a restart (the behaviour the lock table exists to prevent).
"""

from __future__ import annotations

from p2pnode.core.validator import Validator
from p2pnode.wire.types import Address, Digest


class Equivocator(Validator):
    def _conflicting_lock(self, key: tuple[Address, int], digest: Digest) -> Digest | None:
        return None


class BadSignature(Validator):
    def _sign(self, batch_root: bytes) -> bytes:
        return bytes(64 - len(b"garbage")) + b"garbage"


class Silent(Validator):
    votes_enabled = False


class ForgetfulValidator(Equivocator):
    def restore_lock(self, sender: Address, seq: int, digest: Digest) -> bool:
        return False


VALIDATORS: dict[str, type[Validator]] = {
    "equivocate": Equivocator,
    "bad_signature": BadSignature,
    "silent": Silent,
    "forget_locks": ForgetfulValidator,
}

__all__ = ["Equivocator", "BadSignature", "Silent", "ForgetfulValidator", "VALIDATORS"]
