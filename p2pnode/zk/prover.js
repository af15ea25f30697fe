// Wallet-side Groth16 prover for the shielded circuit: one long-lived Node process per wallet.
//
// Usage: node p2pnode/zk/prover.js WASM ZKEY [NODE_MODULES]
//
// NODE_MODULES is the directory snarkjs and circomlib are loaded from (the helper ships inside the
// Python package, away from any node_modules); without it they are resolved from this file's location.
//
// Protocol: JSON lines on stdin, one reply line per request on stdout, in request order.
//   {"id": N, "op": "poseidon", "inputs": ["<decimal>", ...]}  -> {"id": N, "result": "<decimal>"}
//   {"id": N, "op": "prove", "input": {<circuit inputs>}}       -> {"id": N, "proof": {...}, "public": [...]}
//   any failure                                                 -> {"id": N, "error": "<message>"}
// The first line written is {"ready": true} once snarkjs and the Poseidon constants are loaded.
//
// Poseidon is circomlib's (the optimised PoseidonEx of circomlib's circuits/poseidon.circom with initial
// state 0), evaluated here with the constants read from circomlib's own poseidon_constants.circom, so it is the
// exact function the circuit constrains. Requests are served one at a time; snarkjs may keep worker
// threads alive, so the process exits explicitly when stdin closes.
"use strict";

const fs = require("fs");
const path = require("path");
const readline = require("readline");
const { createRequire } = require("module");

const R = 21888242871839275222246405745257275088548364400416034343698204186575808495617n;
// Partial rounds for t = 2..17 (circomlib's N_ROUNDS_P); 8 full rounds.
const N_ROUNDS_P = [56, 57, 56, 60, 60, 63, 64, 63, 60, 66, 60, 65, 70, 60, 64, 68];
const N_ROUNDS_F = 8;

let constantsSource = null;
const constantsCache = new Map();

function functionBody(name) {
    const start = constantsSource.indexOf(`function ${name}(t)`);
    if (start < 0) throw new Error(`circomlib: ${name} not found`);
    const next = constantsSource.indexOf("function ", start + 1);
    return constantsSource.slice(start, next < 0 ? undefined : next);
}

function branch(name, t) {
    const body = functionBody(name);
    const m = new RegExp(`t\\s*==\\s*${t}\\s*\\)\\s*\\{\\s*return\\s*(\\[[\\s\\S]*?\\])\\s*;`).exec(body);
    if (!m) throw new Error(`circomlib: ${name}(${t}) not found`);
    return (m[1].match(/0x[0-9a-fA-F]+/g) || []).map((h) => BigInt(h));
}

function matrix(flat, t) {
    if (flat.length !== t * t) throw new Error("circomlib: bad matrix size");
    const rows = [];
    for (let j = 0; j < t; j++) rows.push(flat.slice(j * t, (j + 1) * t));
    return rows;
}

function constants(t) {
    let c = constantsCache.get(t);
    if (!c) {
        c = {
            C: branch("POSEIDON_C", t),
            S: branch("POSEIDON_S", t),
            M: matrix(branch("POSEIDON_M", t), t),
            P: matrix(branch("POSEIDON_P", t), t),
        };
        constantsCache.set(t, c);
    }
    return c;
}

const mod = (x) => ((x % R) + R) % R;
const sigma = (x) => {
    const x2 = (x * x) % R;
    return (((x2 * x2) % R) * x) % R;
};

function mix(state, m) {
    const t = state.length;
    const out = new Array(t);
    for (let i = 0; i < t; i++) {
        let acc = 0n;
        for (let j = 0; j < t; j++) acc += m[j][i] * state[j];
        out[i] = acc % R;
    }
    return out;
}

function ark(state, C, offset) {
    return state.map((x, i) => (x + C[offset + i]) % R);
}

// Mirrors PoseidonEx(nInputs, 1) with initialState = 0, step by step.
function poseidon(inputs) {
    const t = inputs.length + 1;
    if (t < 2 || t > 17) throw new Error("poseidon: 1..16 inputs");
    const { C, S, M, P } = constants(t);
    const nRoundsP = N_ROUNDS_P[t - 2];
    const half = N_ROUNDS_F / 2;
    let state = ark([0n, ...inputs.map(mod)], C, 0);
    for (let r = 0; r < half - 1; r++) {
        state = mix(ark(state.map(sigma), C, (r + 1) * t), M);
    }
    state = mix(ark(state.map(sigma), C, half * t), P);
    for (let r = 0; r < nRoundsP; r++) {
        const s = state.slice();
        s[0] = (sigma(s[0]) + C[(half + 1) * t + r]) % R;
        const base = (t * 2 - 1) * r;
        let acc = 0n;
        for (let i = 0; i < t; i++) acc += S[base + i] * s[i];
        const next = [acc % R];
        for (let i = 1; i < t; i++) next.push((s[i] + s[0] * S[base + t + i - 1]) % R);
        state = next;
    }
    for (let r = 0; r < half - 1; r++) {
        state = mix(ark(state.map(sigma), C, (half + 1) * t + nRoundsP + r * t), M);
    }
    state = state.map(sigma);
    let out = 0n;
    for (let j = 0; j < t; j++) out += M[j][0] * state[j];
    return out % R;
}

function parseField(value) {
    if (typeof value !== "string" || !/^[0-9]{1,80}$/.test(value)) throw new Error("expected a decimal string");
    const v = BigInt(value);
    if (v >= R) throw new Error("field element not below r");
    return v;
}

async function main() {
    const [wasm, zkey, nodeModules] = process.argv.slice(2);
    if (!wasm || !zkey) {
        process.stderr.write("usage: node prover.js WASM ZKEY [NODE_MODULES]\n");
        process.exit(2);
    }
    // A require function that resolves packages inside NODE_MODULES (Node does not append another
    // "node_modules" to a directory already named so, and the file named need not exist).
    const load = nodeModules ? createRequire(path.join(path.resolve(nodeModules), "_prover.js")) : require;
    const snarkjs = load("snarkjs");
    constantsSource = fs.readFileSync(
        path.join(path.dirname(load.resolve("circomlib/package.json")), "circuits", "poseidon_constants.circom"),
        "utf8",
    );
    const wasmData = { type: "mem", data: new Uint8Array(fs.readFileSync(wasm)) };
    const zkeyData = { type: "mem", data: new Uint8Array(fs.readFileSync(zkey)) };

    const write = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

    async function handle(line) {
        let req;
        try {
            req = JSON.parse(line);
        } catch (e) {
            return { id: null, error: "request is not JSON" };
        }
        const id = req.id ?? null;
        try {
            if (req.op === "poseidon") {
                if (!Array.isArray(req.inputs)) throw new Error("poseidon: inputs must be a list");
                return { id, result: poseidon(req.inputs.map(parseField)).toString() };
            }
            if (req.op === "prove") {
                const { proof, publicSignals } = await snarkjs.groth16.fullProve(req.input, wasmData, zkeyData);
                return { id, proof, public: publicSignals };
            }
            throw new Error(`unknown op ${JSON.stringify(req.op)}`);
        } catch (e) {
            return { id, error: String((e && e.message) || e).split("\n")[0] };
        }
    }

    let chain = Promise.resolve();
    const rl = readline.createInterface({ input: process.stdin, terminal: false });
    rl.on("line", (line) => {
        if (!line.trim()) return;
        chain = chain.then(() => handle(line)).then(write);
    });
    rl.on("close", () => {
        chain.then(() => process.exit(0));
    });
    write({ ready: true });
}

main().catch((e) => {
    process.stderr.write(`prover: ${(e && e.stack) || e}\n`);
    process.exit(1);
});
