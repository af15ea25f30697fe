"""Development key setup for the shielded circuit: compile, local powers of tau, Groth16 keys.

DEVELOPMENT CEREMONY, NOT FOR PRODUCTION. One machine plays every participant of the trusted setup;
whoever controlled it during the run could forge proofs. It exists so that a testnet can be created
quickly. The contributions use fresh entropy from :mod:`secrets` that is never written anywhere, but
nothing here is audited or multi-party.

Layout under ``cache_dir`` (default ``build/zk`` in the repository)::

    pot<N>_final.ptau                 shared phase-1 file, 2^N >= constraints + public inputs + 1
    shielded-<hash>/                  one per circuit source; <hash> covers the .circom text and the
        shielded.wasm                 pinned tool versions
        shielded.zkey
        verification_key.json
        README.txt                    states that this is a development ceremony

A directory is built under a temporary name and renamed into place when complete, so a half-finished
run never looks cached and two concurrent runs do not corrupt each other (the loser's work is dropped).
The tools are the npm packages pinned in ``package.json``: ``node_modules/.bin/circom2`` and
``node_modules/.bin/snarkjs``.

Error handling: a missing Node.js or ``node_modules`` raises :class:`~p2pnode.errors.LocalError` naming
the command to run; a failing tool raises ``LocalError`` with the tail of its output.
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

__all__ = [
    "CIRCUIT_NAME",
    "DEV_CEREMONY_NOTICE",
    "REPO_ROOT",
    "circuit_dir",
    "ensure_circuit_keys",
    "require_toolchain",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
CIRCUIT_NAME = "shielded"
CIRCUIT_SOURCE = REPO_ROOT / "circuits" / f"{CIRCUIT_NAME}.circom"
DEFAULT_CACHE = REPO_ROOT / "build" / "zk"
DEV_CEREMONY_NOTICE = "DEVELOPMENT CEREMONY, NOT FOR PRODUCTION"
INSTALL_HINT = "make node_modules/.installed   (runs npm ci in the repository root)"
_MIN_PTAU_POWER = 10
_MAX_PTAU_POWER = 16
_OUTPUTS = (f"{CIRCUIT_NAME}.wasm", f"{CIRCUIT_NAME}.zkey", "verification_key.json", "README.txt")

_README = f"""{DEV_CEREMONY_NOTICE}

These Groth16 keys for circuits/{CIRCUIT_NAME}.circom come from a local, single-machine setup
(p2pnode/zk/setup.py): a powers-of-tau run and one circuit-specific contribution, with entropy
from the operating system that was not stored. Whoever controlled the machine during the run
could have kept the toxic waste and could forge proofs. Use them for development and testnets
only. Delete this directory to make new keys (every genesis then needs the new
verification_key.json).
"""


def require_toolchain() -> tuple[Path, Path]:
    """Return the paths of ``circom2`` and ``snarkjs``; raise ``LocalError`` if Node.js or the npm
    packages are missing."""
    if shutil.which("node") is None:
        raise LocalError(f"Node.js (node) not found on PATH; install Node.js >= 18, then: {INSTALL_HINT}")
    circom = REPO_ROOT / "node_modules" / ".bin" / "circom2"
    snarkjs = REPO_ROOT / "node_modules" / ".bin" / "snarkjs"
    if not (circom.exists() and snarkjs.exists()):
        where = REPO_ROOT / "node_modules"
        raise LocalError(f"circom2/snarkjs not installed in {where}; run: {INSTALL_HINT}")
    return circom, snarkjs


def _tool_versions() -> bytes:
    try:
        deps = json.loads((REPO_ROOT / "package.json").read_text())["dependencies"]
    except (OSError, ValueError, KeyError):
        return b""
    return json.dumps(deps, sort_keys=True).encode()


def circuit_dir(cache_dir: Path | None = None) -> Path:
    """The cache directory for the current circuit source (whether or not it exists yet)."""
    h = hashlib.sha256()
    h.update(CIRCUIT_SOURCE.read_bytes())
    h.update(b"\0")
    h.update(_tool_versions())
    return (cache_dir or DEFAULT_CACHE) / f"{CIRCUIT_NAME}-{h.hexdigest()[:16]}"


def _run(cmd: list[str], what: str) -> str:
    # circom2 is a WASI build that can only see files below its working directory, so every tool runs
    # from the repository root with paths relative to it where possible.
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    out = proc.stdout + proc.stderr
    # snarkjs reports some failures on stdout with exit status 0 ("[ERROR] ...").
    if proc.returncode != 0 or "[ERROR]" in out:
        tail = "\n".join(out.strip().splitlines()[-10:])
        raise LocalError(f"{what} failed ({' '.join(cmd[:3])} ...):\n{tail}")
    return out


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path.resolve())


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


def _ptau(cache_dir: Path, power: int, snarkjs: Path, log: Callable[[str], None]) -> Path:
    final = cache_dir / f"pot{power}_final.ptau"
    if final.exists():
        return final
    log(f"zk setup: powers of tau 2^{power} ({DEV_CEREMONY_NOTICE})")
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".ptau-") as tmp:
        t = Path(tmp)
        _run([str(snarkjs), "powersoftau", "new", "bn128", str(power), str(t / "0.ptau")], "powersoftau new")
        _run(
            [
                str(snarkjs), "powersoftau", "contribute", str(t / "0.ptau"), str(t / "1.ptau"),
                f"--name=p2pnode {DEV_CEREMONY_NOTICE}", f"-e={secrets.token_hex(32)}",
            ],
            "powersoftau contribute",
        )
        _run(
            [str(snarkjs), "powersoftau", "prepare", "phase2", str(t / "1.ptau"), str(t / "f.ptau")],
            "prepare phase2",
        )
        os.replace(t / "f.ptau", final)
    return final


def ensure_circuit_keys(cache_dir: Path | None = None, *, log: Callable[[str], None] | None = None) -> Path:
    """Return the directory holding ``shielded.wasm``, ``shielded.zkey`` and ``verification_key.json``
    for the current ``circuits/shielded.circom``, making them first if they are not cached.

    Cached: a few file checks. From nothing: compile (~2 s), powers of tau and key setup (about half a
    minute to a minute on a 2-core machine). ``log`` receives progress lines (default: none), the first
    of which carries :data:`DEV_CEREMONY_NOTICE`.
    """
    say = log or (lambda _line: None)
    out = circuit_dir(cache_dir)
    if all((out / name).exists() for name in _OUTPUTS):
        return out
    circom, snarkjs = require_toolchain()
    out.parent.mkdir(parents=True, exist_ok=True)
    say(f"zk setup: making keys for circuits/{CIRCUIT_NAME}.circom in {out} ({DEV_CEREMONY_NOTICE})")
    # The work directory must sit under the repository for circom2 (see _run), wherever the cache is.
    work_root = REPO_ROOT / "build"
    work_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_root, prefix=f".{out.name}-") as tmp:
        t = Path(tmp)
        _run(
            [
                str(circom), _rel(CIRCUIT_SOURCE), "--O2", "--r1cs", "--wasm",
                "-l", "node_modules", "-o", _rel(t),
            ],
            "circom2 compile",
        )
        r1cs = t / f"{CIRCUIT_NAME}.r1cs"
        need = _r1cs_size(r1cs)
        power = max(_MIN_PTAU_POWER, (need - 1).bit_length())
        if power > _MAX_PTAU_POWER:
            raise LocalError(f"circuit needs 2^{power} powers of tau; too large for a development setup")
        ptau = _ptau(out.parent, power, snarkjs, say)
        say(f"zk setup: groth16 key ({need} constraints and public inputs, 2^{power})")
        _run([str(snarkjs), "groth16", "setup", str(r1cs), str(ptau), str(t / "0.zkey")], "groth16 setup")
        _run(
            [
                str(snarkjs), "zkey", "contribute", str(t / "0.zkey"), str(t / f"{CIRCUIT_NAME}.zkey"),
                f"--name=p2pnode {DEV_CEREMONY_NOTICE}", f"-e={secrets.token_hex(32)}",
            ],
            "zkey contribute",
        )
        _run(
            [str(snarkjs), "zkey", "export", "verificationkey", str(t / f"{CIRCUIT_NAME}.zkey"),
             str(t / "verification_key.json")],
            "export verificationkey",
        )
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
    say(f"zk setup: done: {out}")
    return out
