"""All cryptography of p2pnode, behind one facade.

This package is the only place that imports ``py_ecc`` or ``cryptography``; everything outside it deals
in raw bytes. Verification functions never raise on malformed input; constructors raise ``ValueError``.

* :mod:`.hashing`: domain-separated SHA-256 (``hash256``).
* :mod:`.ed25519`: node keys and validator vote signatures.
* :mod:`.bn254`: fast G1 arithmetic on BN254 (alt_bn128) and the 64-byte point encoding.
* :mod:`.schnorr`: spending keys, addresses and Schnorr proofs for transparent transfers.
* :mod:`.bn254_fields`: the BN254 extension-field tower (Fp2, Fp6, Fp12) and its Frobenius maps.
* :mod:`.pairing`: the BN254 optimal ate pairing and G2 (fast path; py_ecc is the test oracle).
* :mod:`.groth16`: snarkjs Groth16 verifying keys, proofs and (batch) verification.
* :mod:`.memo`: encrypted memos for shielded notes (X25519 + ChaCha20-Poly1305).
"""

from p2pnode.crypto.bn254 import CURVE_ORDER, FIELD_MODULUS, g1_decode, g1_encode
from p2pnode.crypto.ed25519 import NodeKey, ed25519_verify
from p2pnode.crypto.hashing import hash256
from p2pnode.crypto.memo import memo_public_key
from p2pnode.crypto.memo import open_ as memo_open
from p2pnode.crypto.memo import seal as memo_seal
from p2pnode.crypto.schnorr import SpendingKey, address_of, schnorr_batch_verify, schnorr_verify

__all__ = [
    "CURVE_ORDER",
    "FIELD_MODULUS",
    "NodeKey",
    "SpendingKey",
    "address_of",
    "ed25519_verify",
    "g1_decode",
    "g1_encode",
    "hash256",
    "memo_open",
    "memo_public_key",
    "memo_seal",
    "schnorr_batch_verify",
    "schnorr_verify",
]
