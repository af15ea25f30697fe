pragma circom 2.1.0;

// Smallest useful Groth16 statement: "I know a and b with a * b == c", c public.
// Used only for verifier test vectors (tests/zk/multiplier).
template Multiplier() {
    signal input a;
    signal input b;
    signal output c;

    c <== a * b;
}

component main = Multiplier();
