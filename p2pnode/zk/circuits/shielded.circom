pragma circom 2.1.0;

include "circomlib/circuits/poseidon.circom";
include "circomlib/circuits/bitify.circom";

// Shielded transfer with up to 2 input notes and up to 2 output notes (DESIGN.md §6).
//
// A note is (value, owner_pub, blinding) with owner_pub = Poseidon(owner_secret), and the ledger stores
// only commitment = Poseidon(value, owner_pub, blinding). The statement proven:
//
//   * for each used input i: the prover knows value, blinding and owner_secret with
//     in_commit[i] == Poseidon(in_value[i], Poseidon(in_owner_secret[i]), in_blinding[i]);
//   * for each used output j: out_commit[j] == Poseidon(out_value[j], out_owner_pub[j], out_blinding[j]);
//   * an unused slot has value 0 and commitment 0;
//   * two used inputs have different commitments (one note cannot be counted twice);
//   * every value, public_in and public_out is below 2^64;
//   * sum(in_value) + public_in == sum(out_value) + public_out;
//   * binding (a digest of the whole transaction) is tied into the constraints.
//
// Commitment 0 as the "unused" marker is sound: a used slot needs a Poseidon preimage of 0, which
// nobody can find (Poseidon output is pseudorandom in a ~2^254 field), so an unused slot can never
// stand in for a real note and a real note can never be declared unused.
//
// The balance equation cannot wrap around the field: at most 3 terms of < 2^64 on each side sum to
// < 2^66, far below r (~2^254).
//
// Public signals, in this order (the order of declaration below; there are no outputs):
//   binding, in_commit[0], in_commit[1], out_commit[0], out_commit[1], public_in, public_out
template Shielded(N_IN, N_OUT) {
    assert(N_IN == 2);  // the distinct-inputs check below is written for two inputs
    // -- public -----------------------------------------------------------------------------------------
    signal input binding;
    signal input in_commit[N_IN];
    signal input out_commit[N_OUT];
    signal input public_in;
    signal input public_out;

    // -- private ----------------------------------------------------------------------------------------
    signal input in_value[N_IN];
    signal input in_blinding[N_IN];
    signal input in_owner_secret[N_IN];
    signal input in_used[N_IN];
    signal input out_value[N_OUT];
    signal input out_owner_pub[N_OUT];
    signal input out_blinding[N_OUT];
    signal input out_used[N_OUT];

    component in_range[N_IN];
    component in_owner[N_IN];
    component in_hash[N_IN];
    var in_sum = 0;
    for (var i = 0; i < N_IN; i++) {
        in_used[i] * (in_used[i] - 1) === 0;
        // Unused: value 0.
        (1 - in_used[i]) * in_value[i] === 0;
        in_range[i] = Num2Bits(64);
        in_range[i].in <== in_value[i];

        in_owner[i] = Poseidon(1);
        in_owner[i].inputs[0] <== in_owner_secret[i];
        in_hash[i] = Poseidon(3);
        in_hash[i].inputs[0] <== in_value[i];
        in_hash[i].inputs[1] <== in_owner[i].out;
        in_hash[i].inputs[2] <== in_blinding[i];
        // Used: the commitment opens; unused: the commitment is 0.
        in_commit[i] === in_used[i] * in_hash[i].out;
        in_sum += in_value[i];
    }

    // Two used inputs must be distinct notes: (c0 - c1) has an inverse whenever both are used.
    signal both_used;
    signal in_diff_inv;
    both_used <== in_used[0] * in_used[1];
    in_diff_inv <-- (both_used != 0 && in_commit[0] != in_commit[1]) ? 1 / (in_commit[0] - in_commit[1]) : 0;
    (in_commit[0] - in_commit[1]) * in_diff_inv === both_used;

    component out_range[N_OUT];
    component out_hash[N_OUT];
    var out_sum = 0;
    for (var j = 0; j < N_OUT; j++) {
        out_used[j] * (out_used[j] - 1) === 0;
        (1 - out_used[j]) * out_value[j] === 0;
        out_range[j] = Num2Bits(64);
        out_range[j].in <== out_value[j];

        out_hash[j] = Poseidon(3);
        out_hash[j].inputs[0] <== out_value[j];
        out_hash[j].inputs[1] <== out_owner_pub[j];
        out_hash[j].inputs[2] <== out_blinding[j];
        out_commit[j] === out_used[j] * out_hash[j].out;
        out_sum += out_value[j];
    }

    component public_in_range = Num2Bits(64);
    public_in_range.in <== public_in;
    component public_out_range = Num2Bits(64);
    public_out_range.in <== public_out;

    in_sum + public_in === out_sum + public_out;

    // Without a constraint on it, binding would not enter the proof and could be swapped.
    signal binding_sq;
    binding_sq <== binding * binding;
}

component main {public [binding, in_commit, out_commit, public_in, public_out]} = Shielded(2, 2);
