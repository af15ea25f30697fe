"""Identifier and quantity types shared by every layer."""

from __future__ import annotations

from typing import NewType

NodeId = NewType("NodeId", bytes)  # 32-byte Ed25519 public key of a node
Address = NewType("Address", bytes)  # 20-byte account address = hash of the BN254 spending key
Digest = NewType("Digest", bytes)  # 32-byte domain-tagged hash of a statement (a transfer)
MsgId = NewType("MsgId", bytes)  # 32-byte hash of a gossiped message's bytes
ChainId = NewType("ChainId", bytes)  # 32-byte hash of the genesis file
Amount = NewType("Amount", int)  # unsigned 64-bit
Seq = NewType("Seq", int)  # per-account sequence number, unsigned 64-bit

U64_MAX = 2**64 - 1
PROTOCOL_VERSION = 2
