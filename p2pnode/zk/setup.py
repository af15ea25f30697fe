"""Development key setup for the shielded circuit: compile, local powers of tau, Groth16 keys.

DEVELOPMENT CEREMONY, NOT FOR PRODUCTION. One machine plays every participant of the trusted setup;
whoever controlled it during the run could forge proofs. It exists so that a testnet can be created
quickly. The contributions use fresh entropy from :mod:`secrets` that is never written anywhere, but
nothing here is audited or multi-party.

The circuit source ships with the package (``p2pnode/zk/circuits/shielded.circom``). The tools and the
cache are found by :mod:`p2pnode.zk.paths` (flags ``--zk-toolchain`` / ``--zk-cache``, variables
``P2PNODE_NODE_MODULES`` / ``P2PNODE_ZK_CACHE``, a source checkout's ``node_modules`` and ``build/zk``,
else the user cache). Layout under the cache directory::

    pot<N>_final.ptau                 shared phase-1 file, 2^N >= constraints + public inputs + 1
    shielded-<hash>/                  one per circuit source; <hash> covers the .circom text and the
        shielded.wasm                 tool versions (circom2, circomlib, snarkjs)
        shielded.zkey
        verification_key.json
        README.txt                    states that this is a development ceremony

A directory is built under a temporary name and renamed into place when complete, so a half-finished
run never looks cached and two concurrent runs do not corrupt each other (the loser's work is dropped).
Cached keys are used without the toolchain; making them needs ``node``, ``circom2`` and ``snarkjs``.

Error handling: a missing Node.js or ``node_modules`` raises :class:`~p2pnode.errors.LocalError` naming
the command to run, the flag and the variable; a failing tool raises ``LocalError`` with the tail of
its output.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from p2pnode.errors import LocalError
from p2pnode.zk.paths import Toolchain, ZkPaths, find_zk_paths, package_file
from p2pnode.zk.progress import Progress

__all__ = [
    "CIRCUIT_NAME",
    "DEV_CEREMONY_NOTICE",
    "circuit_dir",
    "circuit_source",
    "ensure_circuit_keys",
    "keys_cached",
    "require_toolchain",
    "set_default_log",
]

CIRCUIT_NAME = "shielded"
DEV_CEREMONY_NOTICE = "DEVELOPMENT CEREMONY, NOT FOR PRODUCTION"
_MIN_PTAU_POWER = 10
_MAX_PTAU_POWER = 16
# What the first key setup takes on the reference 2-core machine (measured; the README states it too).
FIRST_SETUP_S = "65-80"
_OUTPUTS = (f"{CIRCUIT_NAME}.wasm", f"{CIRCUIT_NAME}.zkey", "verification_key.json", "README.txt")

_README = f"""{DEV_CEREMONY_NOTICE}

These Groth16 keys for p2pnode/zk/circuits/{CIRCUIT_NAME}.circom come from a local, single-machine setup
(p2pnode/zk/setup.py): a powers-of-tau run and one circuit-specific contribution, with entropy
from the operating system that was not stored. Whoever controlled the machine during the run
could have kept the toxic waste and could forge proofs. Use them for development and testnets
only. Delete this directory to make new keys (every genesis then needs the new
verification_key.json).
"""


_default_log: Callable[[str], None] | None = None


def set_default_log(line: Callable[[str], None] | None) -> None:
    """Where :func:`ensure_circuit_keys` reports when its caller gives no ``log`` (None: stderr).
    A test session uses it to show the key setup between its dots, past the output capture."""
    global _default_log
    _default_log = line


def keys_cached(paths: ZkPaths | None = None) -> Path | None:
    """The key directory if the keys for the shipped circuit are already made, else None."""
    out = circuit_dir(paths)
    return out if all((out / name).exists() for name in _OUTPUTS) else None


def circuit_source() -> Path:
    """The shipped ``shielded.circom``."""
    return package_file("circuits", f"{CIRCUIT_NAME}.circom")


def require_toolchain(paths: ZkPaths | None = None) -> Toolchain:
    """The checked toolchain (default locations: :func:`~p2pnode.zk.paths.find_zk_paths`); raises
    ``LocalError`` if Node.js or the npm packages are missing."""
    return (paths or find_zk_paths()).toolchain()


def circuit_dir(paths: ZkPaths | None = None) -> Path:
    """The cache directory for the current circuit source (whether or not it exists yet)."""
    paths = paths or find_zk_paths()
    h = hashlib.sha256()
    h.update(circuit_source().read_bytes())
    h.update(b"\0")
    h.update(json.dumps(paths.tool_versions(), sort_keys=True).encode())
    return paths.cache / f"{CIRCUIT_NAME}-{h.hexdigest()[:16]}"


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    out = proc.stdout + proc.stderr
    # snarkjs reports some failures on stdout with exit status 0 ("[ERROR] ...").
    if proc.returncode != 0 or "[ERROR]" in out:
        tail = "\n".join(out.strip().splitlines()[-10:])
        raise LocalError(f"{what} failed ({' '.join(cmd[:3])} ...):\n{tail}")
    return out


def _compile(tools: Toolchain, work: Path) -> Path:
    """Compile the shipped circuits' ``shielded.circom`` into ``work``; returns the ``.r1cs``.

    circom2 is a WASI build that sees only files below its working directory, and follows no symbolic
    link out of it; so it runs from the deepest directory holding both the work directory and the
    (resolved) circomlib, with every path given relative to that directory.
    """
    src = work / "src"
    src.mkdir()
    for circuit in circuit_source().parent.glob("*.circom"):
        shutil.copyfile(circuit, src / circuit.name)
    circomlib = (tools.node_modules / "circomlib").resolve()
    # Sources include "circomlib/circuits/...": the library path is the directory holding "circomlib".
    lib = circomlib.parent if circomlib.name == "circomlib" else tools.node_modules.resolve()
    root = Path(os.path.commonpath([work.resolve(), lib]))

    def rel(p: Path) -> str:
        return str(p.resolve().relative_to(root))  # "." for root itself

    _run(
        [
            str(tools.circom),
            rel(src / f"{CIRCUIT_NAME}.circom"),
            "--O2",
            "--r1cs",
            "--wasm",
            "-l",
            rel(lib),
            "-o",
            rel(work),
        ],
        "circom2 compile",
        cwd=root,
    )
    return work / f"{CIRCUIT_NAME}.r1cs"


def _r1cs_size(r1cs: Path) -> int:
    """Constraints + public inputs + 1 of an .r1cs file (the domain size Groth16 setup needs)."""
    data = r1cs.read_bytes()
    if data[:4] != b"r1cs":
        raise LocalError(f"{r1cs}: not an r1cs file")
    (n_sections,) = struct.unpack_from("<I", data, 8)
    pos = 12
    for _ in range(n_sections):
        kind, size = struct.unpack_from("<IQ", data, pos)
        pos += 12
        if kind == 1:  # header: n8, prime, nWires, nPubOut, nPubIn, nPrvIn, nLabels (u64), nConstraints
            (n8,) = struct.unpack_from("<I", data, pos)
            p = pos + 4 + n8
            _wires, pub_out, pub_in, _prv = struct.unpack_from("<IIII", data, p)
            (n_constraints,) = struct.unpack_from("<I", data, p + 16 + 8)
            return int(n_constraints) + int(pub_out) + int(pub_in) + 1
        pos += size
    raise LocalError(f"{r1cs}: no header section")


def _ptau(cache_dir: Path, power: int, snarkjs: Path, progress: Progress) -> Path:
    final = cache_dir / f"pot{power}_final.ptau"
    if final.exists():
        progress.say(f"powers of tau 2^{power}: cached in {final}")
        return final
    sj = str(snarkjs)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".ptau-") as tmp:
        t = Path(tmp)
        with progress.phase(f"[2/6] powers of tau 2^{power}: new"):
            _run([sj, "powersoftau", "new", "bn128", str(power), str(t / "0.ptau")], "powersoftau new")
        with progress.phase(f"[3/6] powers of tau 2^{power}: contribute ({DEV_CEREMONY_NOTICE})"):
            _run(
                [
                    sj,
                    "powersoftau",
                    "contribute",
                    str(t / "0.ptau"),
                    str(t / "1.ptau"),
                    f"--name=p2pnode {DEV_CEREMONY_NOTICE}",
                    f"-e={secrets.token_hex(32)}",
                ],
                "powersoftau contribute",
            )
        with progress.phase(f"[4/6] powers of tau 2^{power}: prepare phase 2 (the longest phase)"):
            _run(
                [sj, "powersoftau", "prepare", "phase2", str(t / "1.ptau"), str(t / "f.ptau")],
                "prepare phase2",
            )
        os.replace(t / "f.ptau", final)
    return final


def ensure_circuit_keys(paths: ZkPaths | None = None, *, log: Callable[[str], None] | None = None) -> Path:
    """Return the directory holding ``shielded.wasm``, ``shielded.zkey`` and ``verification_key.json``
    for the shipped ``p2pnode/zk/circuits/shielded.circom``, making them first if they are not cached.

    ``paths`` defaults to :func:`~p2pnode.zk.paths.find_zk_paths`. Cached: a few file checks, no
    toolchain needed, nothing printed. From nothing: compile (~3 s), powers of tau and key setup (65-80 s
    in all on a 2-core machine). Progress goes to ``log`` (default: stderr), one line per phase with its
    time, the first of which carries :data:`DEV_CEREMONY_NOTICE`; on a terminal a status line with the
    running phase's elapsed time is rewritten in place (:class:`~p2pnode.zk.progress.Progress`).
    """
    paths = paths or find_zk_paths()
    out = circuit_dir(paths)
    if all((out / name).exists() for name in _OUTPUTS):
        return out
    tools = paths.toolchain()
    out.parent.mkdir(parents=True, exist_ok=True)
    progress = Progress("zk setup", line=log or _default_log)
    progress.say(
        f"making keys for circuits/{CIRCUIT_NAME}.circom in {out} ({DEV_CEREMONY_NOTICE}); "
        f"first time only, about {FIRST_SETUP_S} s on 2 cores"
    )
    snarkjs = tools.snarkjs
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as tmp:
        t = Path(tmp)
        with progress.phase("[1/6] compile the circuit (circom2)"):
            r1cs = _compile(tools, t)
        need = _r1cs_size(r1cs)
        power = max(_MIN_PTAU_POWER, (need - 1).bit_length())
        if power > _MAX_PTAU_POWER:
            raise LocalError(f"circuit needs 2^{power} powers of tau; too large for a development setup")
        ptau = _ptau(out.parent, power, snarkjs, progress)
        with progress.phase(f"[5/6] groth16 key setup ({need} constraints and public inputs, 2^{power})"):
            _run([str(snarkjs), "groth16", "setup", str(r1cs), str(ptau), str(t / "0.zkey")], "groth16 setup")
        with progress.phase(f"[6/6] key contribution and verification key ({DEV_CEREMONY_NOTICE})"):
            _contribute_and_export(snarkjs, t)
        shutil.copyfile(t / f"{CIRCUIT_NAME}_js" / f"{CIRCUIT_NAME}.wasm", t / f"{CIRCUIT_NAME}.wasm")
        (t / "README.txt").write_text(_README)
        final = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-done-"))
        for name in _OUTPUTS:
            shutil.move(t / name, final / name)
    try:
        os.rename(final, out)
    except OSError as exc:
        # Another run finished first (the target exists and is complete): keep theirs.
        shutil.rmtree(final, ignore_errors=True)
        if not all((out / name).exists() for name in _OUTPUTS):
            raise LocalError(f"{out} exists but is incomplete; delete it and run again") from exc
    progress.say(f"keys ready in {progress.elapsed():.1f} s: {out}")
    return out


def _contribute_and_export(snarkjs: Path, t: Path) -> None:
    _run(
        [
            str(snarkjs),
            "zkey",
            "contribute",
            str(t / "0.zkey"),
            str(t / f"{CIRCUIT_NAME}.zkey"),
            f"--name=p2pnode {DEV_CEREMONY_NOTICE}",
            f"-e={secrets.token_hex(32)}",
        ],
        "zkey contribute",
    )
    _run(
        [
            str(snarkjs),
            "zkey",
            "export",
            "verificationkey",
            str(t / f"{CIRCUIT_NAME}.zkey"),
            str(t / "verification_key.json"),
        ],
        "export verificationkey",
    )
