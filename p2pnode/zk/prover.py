"""The wallet's Groth16 prover: one long-lived Node.js process running ``prover.js`` (snarkjs).

Starting Node and loading snarkjs costs a few hundred milliseconds, so a wallet keeps one helper and
sends it requests as JSON lines (the protocol is described at the top of ``prover.js``). The helper
also evaluates circomlib's Poseidon, the exact hash the circuit constrains.

Resource handling: :class:`Prover` owns a child process. Use it as a context manager or call
:meth:`Prover.close`; closing ends stdin, which makes the helper exit, and kills it if it does not
within a few seconds. Calls block (a proof takes on the order of a second): async callers run them in
a worker thread (``trio.to_thread.run_sync``). One instance serves one thread at a time.

The helper ships with the package; it loads snarkjs and circomlib from the toolchain's ``node_modules``
(:mod:`p2pnode.zk.paths`), which is passed to it, so it works from an installed wheel.

Error handling: a missing Node.js or ``node_modules`` raises :class:`~p2pnode.errors.LocalError` with
the command to run. A request the circuit cannot satisfy (overspend, a value of 2^64 or more, a
commitment that does not open) raises :class:`ProverError`: snarkjs refuses to compute the witness.
A helper that died or answered out of protocol raises ``LocalError``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from p2pnode.errors import LocalError
from p2pnode.zk.paths import Toolchain, ZkPaths, package_file
from p2pnode.zk.progress import Progress
from p2pnode.zk.setup import CIRCUIT_NAME, require_toolchain

__all__ = ["Prover", "ProverError"]

HELPER = "prover.js"
_CLOSE_TIMEOUT = 5.0


class ProverError(LocalError):
    """The helper refused a request (for a proof: the witness does not satisfy the circuit)."""


class Prover:
    """A Node.js helper process proving with ``wasm`` and ``zkey`` (see :func:`from_dir`), using
    ``toolchain`` (default: :func:`~p2pnode.zk.setup.require_toolchain`)."""

    def __init__(self, wasm: Path, zkey: Path, *, toolchain: Toolchain | None = None) -> None:
        tools = toolchain or require_toolchain()
        helper = package_file(HELPER)
        for f in (wasm, zkey):
            if not f.exists():
                raise LocalError(f"{f} not found (make it with p2pnode.zk.setup.ensure_circuit_keys)")
        self._next_id = 0
        self._lock = threading.Lock()
        # On a terminal each proof shows a status line while it runs and one line with its time after
        # (``zk: Groth16 proof: done in 2.1 s``); callers that count proofs themselves set this False.
        self.show_progress = True
        self._proc = subprocess.Popen(
            [str(tools.node), str(helper), str(wasm), str(zkey), str(tools.node_modules)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        ready = self._read()
        if ready.get("ready") is not True:
            self.close()
            raise LocalError(f"prover helper did not start: {ready!r:.200}")

    @classmethod
    def from_dir(cls, keys_dir: Path, paths: ZkPaths | None = None) -> Prover:
        """A prover for the directory returned by :func:`p2pnode.zk.setup.ensure_circuit_keys`, with the
        toolchain of ``paths`` (default: :func:`~p2pnode.zk.paths.find_zk_paths`)."""
        tools = require_toolchain(paths)
        return cls(keys_dir / f"{CIRCUIT_NAME}.wasm", keys_dir / f"{CIRCUIT_NAME}.zkey", toolchain=tools)

    # -- lifecycle ------------------------------------------------------------------------------------
    def close(self) -> None:
        """End the helper (idempotent)."""
        proc = self._proc
        if proc.poll() is None:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.wait(timeout=_CLOSE_TIMEOUT)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Prover:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- requests -------------------------------------------------------------------------------------
    def poseidon(self, *inputs: int) -> int:
        """circomlib's Poseidon over 1..16 field elements (each in [0, r))."""
        reply = self._request({"op": "poseidon", "inputs": [str(int(x)) for x in inputs]})
        result = reply.get("result")
        if not isinstance(result, str) or not result.isdigit():
            raise LocalError(f"prover helper: bad poseidon reply {reply!r:.200}")
        return int(result)

    def prove(self, inputs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Compute the witness and a Groth16 proof for circuit ``inputs`` (values as ints or decimal
        strings, arrays as lists). Returns snarkjs's ``(proof, publicSignals)``.

        Raises :class:`ProverError` if the inputs do not satisfy the circuit.
        """
        request = {"op": "prove", "input": _stringify(inputs)}
        if self.show_progress and sys.stderr.isatty():
            with Progress("zk").phase("Groth16 proof"):
                reply = self._request(request)
        else:
            reply = self._request(request)
        proof, public = reply.get("proof"), reply.get("public")
        if not isinstance(proof, dict) or not isinstance(public, list):
            raise LocalError(f"prover helper: bad prove reply {reply!r:.200}")
        return proof, [str(s) for s in public]

    def _request(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._next_id += 1
            rid = self._next_id
            stdin = self._stream(self._proc.stdin)
            try:
                stdin.write(json.dumps({"id": rid, **body}) + "\n")
                stdin.flush()
            except (BrokenPipeError, ValueError) as exc:
                raise LocalError(f"prover helper is not running: {self._stderr_tail()}") from exc
            reply = self._read()
        if reply.get("id") != rid:
            raise LocalError(f"prover helper answered out of order: {reply!r:.200}")
        if "error" in reply:
            raise ProverError(f"prover refused {body['op']}: {reply['error']}")
        return reply

    def _read(self) -> dict[str, Any]:
        line = self._stream(self._proc.stdout).readline()
        if not line:
            raise LocalError(f"prover helper exited: {self._stderr_tail()}")
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise LocalError(f"prover helper wrote non-JSON: {line[:200]!r}") from exc
        if not isinstance(obj, dict):
            raise LocalError(f"prover helper wrote {line[:200]!r}")
        return obj

    @staticmethod
    def _stream(stream: IO[str] | None) -> IO[str]:
        if stream is None:  # pragma: no cover - Popen was given PIPE for every stream
            raise LocalError("prover helper has no pipe")
        return stream

    def _stderr_tail(self) -> str:
        proc = self._proc
        if proc.poll() is None or proc.stderr is None:
            return "(still running)"
        try:
            return proc.stderr.read()[-500:].strip() or f"exit status {proc.returncode}"
        except (OSError, ValueError):
            return f"exit status {proc.returncode}"


def _stringify(v: Any) -> Any:
    # snarkjs takes big numbers as decimal strings; Python ints above 2^53 would lose precision in JSON.
    if isinstance(v, dict):
        return {k: _stringify(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_stringify(x) for x in v]
    if isinstance(v, bool):
        raise TypeError("circuit inputs are numbers, not booleans")
    if isinstance(v, int):
        return str(v)
    return v
