pragma circom 2.1.0;

include "circomlib/circuits/poseidon.circom";
include "circomlib/circuits/bitify.circom";

// A statement with several public inputs, built from circomlib's Poseidon and bit decomposition:
// "I know value and blinding with Poseidon(value, blinding, nonce) == commitment and value < 2^64",
// where commitment, nonce and binding are public. binding is tied into the constraints so that a proof
// cannot be replayed with another binding. Used only for verifier test vectors (tests/zk/preimage64).
template Preimage64() {
    signal input value;
    signal input blinding;
    signal input nonce;
    signal input binding;
    signal output commitment;

    component bits = Num2Bits(64);
    bits.in <== value;

    component h = Poseidon(3);
    h.inputs[0] <== value;
    h.inputs[1] <== blinding;
    h.inputs[2] <== nonce;
    commitment <== h.out;

    signal bindingSquare;
    bindingSquare <== binding * binding;
}

component main {public [nonce, binding]} = Preimage64();
