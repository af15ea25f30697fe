"""Wallet side of shielded payments (DESIGN.md §6): circuit keys, the Node prover, notes and orders.

* :mod:`.setup`: development key setup for ``p2pnode/zk/circuits/shielded.circom`` (shipped in the
  package; keys cached under ``build/zk`` in a checkout, else the user cache: see :mod:`.paths`).
* :mod:`.paths`: where the Node.js toolchain and the key cache are (flags, environment, defaults).
* :mod:`.prover`: :class:`~p2pnode.zk.prover.Prover`, one long-lived Node.js process running snarkjs.
* :mod:`.notes`: shielded keys and addresses, notes, the binding and statement digests, proof bytes,
  building SHIELD / SHIELDED_TRANSFER / UNSHIELD orders and scanning outputs for our notes.

Verification is not here: nodes verify with :mod:`p2pnode.crypto.groth16` and need neither Node.js nor
any file from this package except the verifying key carried by the genesis.
"""
