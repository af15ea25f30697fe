"""Canonical digests and order construction (the wallet side of the payment path).

Everything signed or proven is a domain-tagged hash of canonical message bytes
(:func:`p2pnode.crypto.hash256` with a distinct tag per use), so that a signature or proof made for
one purpose cannot be replayed for another.
"""

from __future__ import annotations

from p2pnode.core.shielded import shielded_digest
from p2pnode.crypto import SpendingKey, address_of, hash256
from p2pnode.wire import codec
from p2pnode.wire.messages import Certificate, Order, ShieldedCertificate, ShieldedOrder, Transfer
from p2pnode.wire.types import Address, Amount, ChainId, Digest, MsgId, Seq

TRANSFER_TAG = b"p2pnode/transfer/v1"
HANDSHAKE_TAG = b"p2pnode/handshake/v1"
MSGID_TAG = b"p2pnode/msgid/v1"
PROOF_KEY_TAG = b"p2pnode/proof-key/v1"
CERT_MSGID_TAG = b"p2pnode/msgid/certificate/v1"
# msgpack fixarray(3), then the tag: a certificate of either kind
_CERT_PREFIXES = (bytes([0x93, Certificate.TAG]), bytes([0x93, ShieldedCertificate.TAG]))


def transfer_digest(transfer: Transfer) -> Digest:
    """The payment's name: hash of the transfer's canonical bytes (the statement, never the proof)."""
    return Digest(hash256(TRANSFER_TAG, transfer.encode()))


def handshake_digest(peer_nonce: bytes, signer: bytes, chain_id: bytes, version: int) -> bytes:
    """What a node signs in the handshake: the other side's fresh nonce, its own id, chain and version."""
    return hash256(HANDSHAKE_TAG, peer_nonce, signer, chain_id, version.to_bytes(4, "big"))


def message_id(data: bytes) -> MsgId:
    """Gossip id of a payload: the hash of its bytes as received, except for certificates.

    A certificate's id hashes its transfer's bytes (the statement), not its signatures: every node
    may assemble its own certificate from a different quorum of votes, and all of them certify the
    same payment, so the first one a node holds makes the others duplicates that are dropped before
    decoding. Because such an id is not bound to the signatures, a node forgets the id of a
    certificate that fails validation (``GossipRouter.forget``), so a forged copy cannot shadow the
    real one.
    """
    if data[:2] in _CERT_PREFIXES:
        statement = codec.nested_slice(data, (1, 1))
        if statement is not None:
            return MsgId(hash256(CERT_MSGID_TAG, statement))
    return MsgId(hash256(MSGID_TAG, data))


AnyOrder = Order | ShieldedOrder
AnyCert = Certificate | ShieldedCertificate


def proof_key(digest: Digest, order: AnyOrder) -> bytes:
    """Names one (statement, proof) pair, for caching verification results."""
    if isinstance(order, Order):
        return hash256(PROOF_KEY_TAG, digest, order.proof)
    return hash256(PROOF_KEY_TAG, digest, order.proof, order.account_proof)


def statement_digest(order: AnyOrder) -> Digest:
    """The name of a payment of either kind: a hash of its statement, never of its proof."""
    return transfer_digest(order.transfer) if isinstance(order, Order) else shielded_digest(order.tx)


def make_order(key: SpendingKey, chain_id: bytes, recipient: bytes, amount: int, seq: int) -> Order:
    """Build and prove a transparent transfer from ``key``'s account."""
    transfer = Transfer(
        chain_id=ChainId(chain_id),
        sender=Address(address_of(key.public)),
        recipient=Address(recipient),
        amount=Amount(amount),
        seq=Seq(seq),
    )
    proof = key.prove(transfer_digest(transfer))
    return Order(transfer=transfer, sender_key=key.public, proof=proof)
