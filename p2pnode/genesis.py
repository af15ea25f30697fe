"""The genesis file: the validator committee and the funded accounts. Its hash is the chain id.

Format (TOML)::

    chain_name = "local-4"
    [[validators]]            # order is irrelevant; the committee is sorted by node id
    name = "node-0"
    node_id = "<64 hex chars: Ed25519 public key>"
    [[accounts]]
    address = "<40 hex chars>"
    balance = 1000000

The chain id is ``hash256(b"p2pnode/genesis/v1", file bytes)``: two nodes agree on the chain only if
they hold byte-identical genesis files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from p2pnode.config import read_toml
from p2pnode.crypto import hash256
from p2pnode.errors import ConfigError
from p2pnode.wire.types import U64_MAX, Address, ChainId, NodeId


@dataclass(frozen=True, slots=True)
class ValidatorEntry:
    name: str
    node_id: NodeId


@dataclass(frozen=True, slots=True)
class Genesis:
    chain_name: str
    chain_id: ChainId
    validators: tuple[ValidatorEntry, ...]
    balances: tuple[tuple[Address, int], ...]
    shielded_vk: str | None = None  # snarkjs verification_key.json text; None: no shielded pool


def chain_id_of(data: bytes) -> ChainId:
    return ChainId(hash256(b"p2pnode/genesis/v1", data))


def _hex(value: object, length: int, key: str) -> bytes:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ConfigError(f"{key}: not hex") from None
    if len(raw) != length:
        raise ConfigError(f"{key}: expected {length} bytes, got {len(raw)}")
    return raw


def load_genesis(path: Path) -> Genesis:
    """Read and validate a genesis file. Raises :class:`ConfigError` naming the key at fault."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such genesis file") from None
    doc = read_toml(path)
    for key in doc:
        if key not in ("chain_name", "validators", "accounts", "shielded_verifying_key"):
            raise ConfigError(f"{path}: unknown key {key}")
    name = doc.get("chain_name", "")
    if not isinstance(name, str):
        raise ConfigError(f"{path}: chain_name: expected a string")
    vals: list[ValidatorEntry] = []
    for i, v in enumerate(doc.get("validators", [])):
        if not isinstance(v, dict) or set(v) - {"name", "node_id"}:
            raise ConfigError(f"{path}: validators[{i}]: expected keys name, node_id")
        node_id = NodeId(_hex(v.get("node_id"), 32, f"{path}: validators[{i}].node_id"))
        vals.append(ValidatorEntry(name=str(v.get("name", "")), node_id=node_id))
    if not vals:
        raise ConfigError(f"{path}: validators: at least one validator is required")
    if len({v.node_id for v in vals}) != len(vals):
        raise ConfigError(f"{path}: validators: duplicate node_id")
    balances: dict[bytes, int] = {}
    for i, a in enumerate(doc.get("accounts", [])):
        if not isinstance(a, dict) or set(a) - {"address", "balance"}:
            raise ConfigError(f"{path}: accounts[{i}]: expected keys address, balance")
        addr = _hex(a.get("address"), 20, f"{path}: accounts[{i}].address")
        bal = a.get("balance")
        if type(bal) is not int or not 0 <= bal <= U64_MAX:
            raise ConfigError(f"{path}: accounts[{i}].balance: expected an unsigned 64-bit integer")
        if addr in balances:
            raise ConfigError(f"{path}: accounts[{i}].address: duplicate account")
        balances[addr] = bal
    if sum(balances.values()) > U64_MAX:
        raise ConfigError(f"{path}: accounts: total supply exceeds 2^64-1")
    vk = doc.get("shielded_verifying_key")
    if vk is not None:
        from p2pnode.crypto.groth16 import InvalidElementError, MalformedError, VerifyingKey

        try:
            VerifyingKey.from_json(json.loads(vk))
        except (TypeError, ValueError, MalformedError, InvalidElementError) as exc:
            raise ConfigError(
                f"{path}: shielded_verifying_key: not a valid Groth16 verifying key: {exc}"
            ) from None
    return Genesis(
        shielded_vk=vk,
        chain_name=name,
        chain_id=chain_id_of(data),
        validators=tuple(sorted(vals, key=lambda v: v.node_id)),
        balances=tuple(sorted((Address(a), b) for a, b in balances.items())),
    )


def render_genesis(
    chain_name: str,
    validators: list[tuple[str, bytes]],
    accounts: list[tuple[bytes, int]],
    shielded_vk: str | None = None,
) -> str:
    """TOML text of a genesis file (the bytes of which define the chain id)."""
    lines = [f'chain_name = "{chain_name}"', ""]
    if shielded_vk is not None:
        compact = json.dumps(json.loads(shielded_vk), separators=(",", ":"), sort_keys=True)
        lines += [f"shielded_verifying_key = {json.dumps(compact)}", ""]
    for name, node_id in validators:
        lines += ["[[validators]]", f'name = "{name}"', f'node_id = "{node_id.hex()}"', ""]
    for address, balance in accounts:
        lines += ["[[accounts]]", f'address = "{address.hex()}"', f"balance = {balance}", ""]
    return "\n".join(lines)
