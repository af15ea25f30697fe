"""``p2pnode zk verify``: check any snarkjs Groth16 proof on BN254 against a verifying key.

    p2pnode zk verify --vk verification_key.json --proof proof.json --public public.json

Prints ``valid`` (exit 0) or ``invalid`` (exit 1) on stdout. A proof or public input that is well formed
but not a valid element (coordinate >= p, input >= r, point off its curve or outside the subgroup, wrong
number of inputs) is ``invalid``, with the reason on stderr. A file that cannot be read, is not JSON or
does not have snarkjs's shape, and any problem with the verifying key (the verifier's own input), is one
line ``p2pnode: error: <message>`` on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from p2pnode.crypto.groth16 import (
    InvalidElementError,
    MalformedError,
    Proof,
    VerifyingKey,
    groth16_verify,
    parse_public,
)

PROG = "p2pnode"
# Verifying keys grow with the number of public inputs (about 170 bytes each); proofs are under 1 KiB.
_MAX_FILE_BYTES = 1 << 20


class _InputError(Exception):
    """A file that is unreadable or not in snarkjs's format (exit 2)."""


def add_zk_args(subparsers: Any) -> None:
    """Add ``zk`` and its ``verify`` action to the top-level subparsers of ``p2pnode``."""
    zk = subparsers.add_parser("zk", help="zero-knowledge proof tools (snarkjs Groth16, BN254)")
    zk_sub = zk.add_subparsers(dest="zk_command", metavar="ACTION", required=True)
    p = zk_sub.add_parser("verify", help="verify a snarkjs Groth16 proof; prints valid or invalid, exit 0/1")
    p.add_argument("--vk", type=Path, required=True, metavar="VK.json", help="snarkjs verification_key.json")
    p.add_argument("--proof", type=Path, required=True, metavar="PROOF.json", help="snarkjs proof.json")
    p.add_argument("--public", type=Path, required=True, metavar="PUBLIC.json", help="snarkjs public.json")
    p.set_defaults(handler=cmd_zk_verify)


def _load(path: Path) -> Any:
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _InputError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise _InputError(f"{path}: larger than {_MAX_FILE_BYTES} bytes")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _InputError(f"{path}: not valid JSON ({exc})") from None


def _parse(path: Path, obj: Any, parse: Any) -> Any:
    # Shape errors are the file's fault (exit 2); element errors make the proof invalid (exit 1).
    try:
        return parse(obj)
    except MalformedError as exc:
        raise _InputError(f"{path}: {exc}") from None


def cmd_zk_verify(args: argparse.Namespace) -> int:
    """Verify one proof; see the module docstring for output and exit codes."""
    try:
        vk_json = _load(args.vk)
        proof_json = _load(args.proof)
        public_json = _load(args.public)
        try:
            vk = VerifyingKey.from_json(vk_json)
        except ValueError as exc:
            raise _InputError(f"{args.vk}: {exc}") from None
        proof = _parse(args.proof, proof_json, Proof.from_json)
        public = _parse(args.public, public_json, parse_public)
    except _InputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except InvalidElementError as exc:
        print("invalid")
        print(f"{PROG}: zk verify: {exc}", file=sys.stderr)
        return 1
    if len(public) != vk.n_public:
        print("invalid")
        print(
            f"{PROG}: zk verify: {len(public)} public inputs, the key expects {vk.n_public}", file=sys.stderr
        )
        return 1
    if groth16_verify(vk, proof, public):
        print("valid")
        return 0
    print("invalid")
    return 1
