"""The simulator's CPU cost table: what each piece of a node's work costs on a given machine.

Every handler call on a simulated node advances that node's busy time by the cost of its kind, plus the
crypto it did (proof checks, Ed25519 checks and signatures), plus per frame and per message sent, plus per
log line. Costs are seconds of one core. ``p2pnode sim calibrate`` measures them on this machine
(:mod:`p2pnode.sim.calibrate`) and writes a file ``--costs FILE`` reads; without one, :data:`DEFAULT`
holds the figures measured on the project's reference machine (2 cores, shared; see
``docs/simulator.md``).

Kinds of work (``handler`` keys): ``gossip_order``, ``gossip_vote``, ``gossip_cert`` (the first copy of a
payload of that kind, decoded and handled), ``gossip_dup`` (a copy already seen, dropped by id before
decoding), ``ihave``, ``iwant``, ``sync`` (anti-entropy messages), ``submit`` (a client's order),
``client_reply`` (answering a client's wait), ``verified`` (acting on a batch of verified proofs),
``lock_persisted`` (a validator's signing step after its lock commit), ``durable`` (making applied
certificates visible after their commit), ``tick`` (the heartbeat: IHAVE flush, sync, expiry).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from p2pnode.errors import ConfigError

HANDLERS = (
    "gossip_order",
    "gossip_vote",
    "gossip_cert",
    "gossip_dup",
    "ihave",
    "iwant",
    "sync",
    "submit",
    "client_reply",
    "verified",
    "lock_persisted",
    "durable",
    "tick",
)


@dataclass(frozen=True, kw_only=True)
class CostTable:
    """Seconds of one core per unit of work (see the module docstring)."""

    schnorr_verify: float = 1.14e-3  # one proof checked alone
    schnorr_batch: float = 0.80e-3  # per proof, in a batch of several
    ed25519_verify: float = 0.12e-3
    ed25519_sign: float = 0.06e-3
    rx_frame: float = 60e-6  # the driver's per-frame receive work: socket read, framing, scheduling
    rx_message: float = 15e-6  # per message in a frame: decode, dispatch
    tx_frame: float = 45e-6  # per frame sent: the writer task, socket write
    tx_message: float = 10e-6  # per message sent: encode, queue
    log_line: float = 20e-6  # one JSON log line rendered and written
    commit: float = 1.5e-3  # one group commit (SQLite, synchronous=FULL): wall time of the store thread
    commit_write: float = 30e-6  # per write in a commit
    # A commit that starts after the store sat idle for ``store_idle_s`` or longer (0: as ``commit``):
    # the disk's first fsync after a pause is slower than one of a busy stream of commits.
    commit_idle: float = 0.0
    store_idle_s: float = 0.01
    # Waking an idle node: extra CPU of a job that arrives while the node has nothing to do (the
    # event loop's wake-up, cold caches). Fitted to a real cluster's light-load latency
    # (:func:`p2pnode.sim.calibrate.fit_wake`); 0 in an unfitted table.
    wake: float = 0.0
    verify_batch: float = 40e-6  # per verifier call: hand-over to the verifier and back
    # Spread of service times: each job's cost is multiplied by a lognormal factor of mean 1 and this
    # log standard deviation (0: every job costs exactly its table figure).
    service_sigma: float = 0.0
    commit_sigma: float = 0.0  # the same for the store's commits
    handler: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(HANDLERS, 40e-6))
    machine: str = "defaults"  # where the figures were measured

    def of(self, kind: str) -> float:
        return self.handler.get(kind, 0.0)

    def proofs(self, n: int) -> float:
        """CPU of checking ``n`` Schnorr proofs in one verifier call."""
        if n <= 0:
            return 0.0
        return self.verify_batch + (self.schnorr_verify if n == 1 else n * self.schnorr_batch)

    def scaled(self, factor: float, machine: str | None = None) -> CostTable:
        """The table with the driver's and the handlers' costs (everything but crypto and commits)
        times ``factor``: the one parameter :func:`p2pnode.sim.calibrate.fit_overhead` fits."""
        return replace(
            self,
            rx_frame=self.rx_frame * factor,
            rx_message=self.rx_message * factor,
            tx_frame=self.tx_frame * factor,
            tx_message=self.tx_message * factor,
            log_line=self.log_line * factor,
            verify_batch=self.verify_batch * factor,
            handler={k: v * factor for k, v in self.handler.items()},
            machine=machine or self.machine,
        )

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["handler"] = dict(self.handler)
        return {"version": 1, "unit": "seconds", **doc}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8")


def costs_from_json(doc: Mapping[str, Any], where: str = "cost table") -> CostTable:
    """A table from its JSON document; ConfigError naming the key for anything wrong."""
    if doc.get("version") != 1:
        raise ConfigError(f"{where}: version: expected 1, got {doc.get('version')!r}")
    base = CostTable()
    known = {f for f in base.__dataclass_fields__}
    values: dict[str, Any] = {}
    for key, value in doc.items():
        if key in ("version", "unit"):
            continue
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}")
        if key == "machine":
            values[key] = str(value)
        elif key == "handler":
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: handler: expected a table of kind = seconds")
            table = dict(base.handler)
            for kind, v in value.items():
                if kind not in HANDLERS:
                    raise ConfigError(f"{where}: handler.{kind}: not one of {', '.join(HANDLERS)}")
                table[kind] = _seconds(f"{where}: handler.{kind}", v)
            values[key] = table
        else:
            values[key] = _seconds(f"{where}: {key}", value)
    return replace(base, **values)


def _seconds(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 10:
        raise ConfigError(f"{where}: expected seconds in [0, 10), got {value!r}")
    return float(value)


def load_costs(path: Path | str) -> CostTable:
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read cost table: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON: {exc}") from None
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{p}: expected a JSON object")
    return costs_from_json(doc, str(p))


DEFAULT_FILE = Path(__file__).with_name("costs.json")


def default_costs() -> CostTable:
    """The shipped table (``p2pnode/sim/costs.json``, measured by ``p2pnode sim calibrate``)."""
    return load_costs(DEFAULT_FILE) if DEFAULT_FILE.exists() else CostTable()


__all__ = ["CostTable", "DEFAULT_FILE", "HANDLERS", "costs_from_json", "default_costs", "load_costs"]
