#!/usr/bin/env bash
# Regenerate the Groth16 test vectors under tests/zk/ from the circuits in p2pnode/zk/circuits/.
#
# NOT FOR PRODUCTION. The "ceremony" here is a local development setup: one machine, fixed entropy
# strings, every secret written to build/zk/. Anyone holding those files can forge proofs. The vectors
# exist only to test the verifier (p2pnode/crypto/groth16.py) against proofs made by snarkjs itself.
#
# Needs Node.js and `npm ci` (pinned snarkjs, circom2, circomlib in package.json). The powers of tau and
# each circuit's key are cached in build/zk/ (gitignored): a second run only makes new proofs. Delete
# build/zk/ to start the ceremony over; the committed verifying keys then change.
#
# Usage: scripts/make_zk_vectors.sh [PROOFS_PER_CIRCUIT]   (default 3)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD="$ROOT/build/zk"
OUT="$ROOT/tests/zk"
BIN="$ROOT/node_modules/.bin"
N_PROOFS=${1:-3}
PTAU_POWER=10   # 2^10 constraints covers every circuit here

if [[ ! -x "$BIN/snarkjs" || ! -x "$BIN/circom2" ]]; then
    echo "make_zk_vectors: run 'npm ci' first (snarkjs and circom2 not found in node_modules)" >&2
    exit 2
fi
mkdir -p "$BUILD" "$OUT"
snarkjs() { "$BIN/snarkjs" "$@" >/dev/null; }

# Phase 1: local powers of tau (NOT FOR PRODUCTION), cached.
PTAU="$BUILD/pot${PTAU_POWER}_final.ptau"
if [[ ! -f "$PTAU" ]]; then
    echo "make_zk_vectors: powers of tau 2^$PTAU_POWER (development ceremony, not for production)"
    snarkjs powersoftau new bn128 "$PTAU_POWER" "$BUILD/pot_0000.ptau"
    snarkjs powersoftau contribute "$BUILD/pot_0000.ptau" "$BUILD/pot_0001.ptau" \
        --name="p2pnode development contribution (NOT FOR PRODUCTION)" -e="p2pnode-dev-ptau-not-for-production"
    snarkjs powersoftau prepare phase2 "$BUILD/pot_0001.ptau" "$PTAU"
fi

# Inputs for each proof, as JSON; $1 is the proof index (varies the witness).
inputs_multiplier() { echo "{\"a\": \"$((3 + $1))\", \"b\": \"$((11 + 2 * $1))\"}"; }
inputs_preimage64() {
    echo "{\"value\": \"$((1000 + 37 * $1))\", \"blinding\": \"$((987654321 + $1))\"," \
         " \"nonce\": \"$((42 + $1))\", \"binding\": \"$((123456789 * ($1 + 1)))\"}"
}

for circuit in multiplier preimage64; do
    dir="$BUILD/$circuit"
    mkdir -p "$dir" "$OUT/$circuit"
    # Compile (wasm witness generator + r1cs) and phase 2, cached per circuit.
    if [[ ! -f "$dir/$circuit.zkey" || "$ROOT/p2pnode/zk/circuits/$circuit.circom" -nt "$dir/$circuit.zkey" ]]; then
        echo "make_zk_vectors: compiling $circuit and running its development key setup"
        "$BIN/circom2" "p2pnode/zk/circuits/$circuit.circom" --r1cs --wasm -l node_modules -o "$dir" >/dev/null
        snarkjs groth16 setup "$dir/$circuit.r1cs" "$PTAU" "$dir/${circuit}_0000.zkey"
        snarkjs zkey contribute "$dir/${circuit}_0000.zkey" "$dir/$circuit.zkey" \
            --name="p2pnode development key (NOT FOR PRODUCTION)" -e="p2pnode-dev-$circuit-not-for-production"
        snarkjs zkey export verificationkey "$dir/$circuit.zkey" "$OUT/$circuit/verification_key.json"
    fi
    for ((i = 0; i < N_PROOFS; i++)); do
        "inputs_$circuit" "$i" > "$dir/input_$i.json"
        snarkjs wtns calculate "$dir/${circuit}_js/$circuit.wasm" "$dir/input_$i.json" "$dir/witness_$i.wtns"
        snarkjs groth16 prove "$dir/$circuit.zkey" "$dir/witness_$i.wtns" \
            "$OUT/$circuit/proof_$i.json" "$OUT/$circuit/public_$i.json"
        # snarkjs must accept what it made; the Python tests then check our verifier agrees.
        snarkjs groth16 verify "$OUT/$circuit/verification_key.json" \
            "$OUT/$circuit/public_$i.json" "$OUT/$circuit/proof_$i.json"
    done
    echo "make_zk_vectors: $circuit: verifying key and $N_PROOFS proofs in tests/zk/$circuit/"
done
