"""Prometheus metrics of one node, and the small Trio HTTP server that exposes them.

Every node that has ``[metrics] listen`` set owns one :class:`NodeMetrics`: its own
``CollectorRegistry`` (never the process-global one, so that several nodes can share a process in
tests), filled by the driver where it already observes the events:

- payment stages and settlement latency from the very log events ``p2pnode latency`` reads
  (docs/logs.md): the node's logger is wrapped (:class:`ObservedLog`), so a metric and its log line
  come from one call and cannot disagree on the stage boundaries;
- refusals from the refusal events (``message_rejected``, ``order_refused``, ...), counted by a small
  fixed set of reason classes (:func:`refusal_class`), never by the free-text reason;
- gossip in and out (peers.py), proof batches (interpreter.py), signature checks (peers.py), store
  commits (interpreter.py) from one-line hooks;
- gauges (peers, pending orders, held certificates) read from the core at scrape time.

Names follow the Prometheus conventions: ``p2pnode_`` prefix, base units (``_seconds``, ``_bytes``),
``_total`` for counters. docs/metrics.md lists every metric; a test pins it to what a node exports.

Buckets (:data:`LATENCY_BUCKETS`): settlement on one host takes a few milliseconds, across a WAN or
under load tens to hundreds, and a stuck stage seconds; so the buckets span 0.5 ms to 10 s. They step
by a factor of about 1.5 (0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, ... ms): ``histogram_quantile``
interpolates inside one bucket, so its error is at most that bucket's width: a third to two thirds of
the value anywhere in the range, with 26 buckets per series. Finer steps would cost series on every
node for precision the tail of a latency distribution rarely needs.

Resource handling: the per-payment table is bounded by ``metrics.tracked_payments`` (oldest first
out); the HTTP server serves at most :data:`MAX_SCRAPES` connections at once, each bounded in bytes
and time, all inside the node's nursery: it stops with the node and leaves no thread behind.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from p2pnode.wire.messages import REGISTRY, Gossip, Message

# Seconds. See the module docstring for the choice.
LATENCY_BUCKETS: tuple[float, ...] = tuple(
    ms / 1000
    for ms in (0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750)
) + (1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
# One proof verification call: a Schnorr proof alone ~0.1-1 ms, a batch or a Groth16 proof up to seconds.
VERIFY_BUCKETS: tuple[float, ...] = (0.0001, 0.00025) + LATENCY_BUCKETS
# One Ed25519 check: tens of microseconds.
SIGNATURE_BUCKETS: tuple[float, ...] = (
    0.00001, 0.000025, 0.00005, 0.000075, 0.0001, 0.00015, 0.00025, 0.0005, 0.001, 0.0025, 0.01,
)
# One SQLite group commit (WAL): ~0.1 ms to a second on a slow disk.
COMMIT_BUCKETS: tuple[float, ...] = (0.0001, 0.00025) + LATENCY_BUCKETS[: LATENCY_BUCKETS.index(1.0) + 1]
SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

# The stages of the payment path as one node sees it, each from the previous boundary it saw.
STAGES: tuple[str, ...] = ("verify", "vote", "certificate", "apply")
REFUSAL_EVENTS: tuple[str, ...] = (
    "message_rejected",
    "order_refused",
    "order_ignored",
    "vote_refused",
    "verify_queue_full",
    "verify_dropped",
    "order_expired",
    "certificate_conflict",
    "handshake_refused",
    "connection_refused",
)
# Reason classes, each with the words (lower case) that put a reason in it; the first match wins.
REASON_CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("malformed", ("malformed", "decode", "msgpack", "frame", "bundle", "unexpected", "not gossiped")),
    ("invalid_proof", ("proof",)),
    ("invalid_signature", ("signature", "signer", "quorum", "committee")),
    ("handshake", ("handshake", "chain", "version", "nonce", "hello")),
    ("insufficient_funds", ("funds", "balance", "insufficient")),
    ("conflict", ("lock", "conflict", "another order", "blocked", "equivoc")),
    ("stale", ("settled", "seq", "window", "stale", "expired", "old")),
    ("overload", ("busy", "budget", "full", "rate", "limit", "slots", "capped", "penalized", "cut", "queue")),
)
REASONS: tuple[str, ...] = tuple(name for name, _ in REASON_CLASSES) + ("other",)
# Message kinds: the payload kinds a Gossip carries, then every other wire message, in snake_case.
KINDS: tuple[str, ...] = tuple(
    re.sub(r"(?<=[a-z])(?=[A-Z])", "_", cls.__name__).lower() for cls in REGISTRY.values()
)
_KIND_BY_TAG: dict[int, str] = dict(zip(REGISTRY, KINDS, strict=True))
# The kinds a peer connection carries after its handshake, exported from the start (at 0); any other
# kind (a client message sent to a peer, say) appears once seen. Bundles are counted by their contents.
PEER_KINDS: tuple[str, ...] = (
    "order", "vote", "certificate", "shielded_order", "shielded_certificate", "ihave", "iwant",
    "sync_summary", "sync_heads", "cert_request", "cert_batch", "shielded_have", "ping", "pong",
    "get_peers", "peers", "refuse", "other",
)
# The classic text format: every name here is a legacy-valid one, so the body is the same whatever
# version prometheus_client calls its latest, and any Prometheus parses it.
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_SCRAPES = 8  # HTTP connections served at once; more wait in the listen backlog
MAX_REQUEST = 8192  # bytes of request head read at most
SCRAPE_TIMEOUT_S = 10.0  # a scrape connection that has not sent its request in this time is closed


def refusal_class(event: str, reason: str) -> str:
    """The class (one of :data:`REASONS`) of a refusal: a bounded label value for a free-text reason."""
    if event == "handshake_refused":
        return "handshake"
    if event in ("verify_queue_full", "connection_refused", "verify_dropped"):
        return "overload"
    if event == "certificate_conflict":
        return "conflict"
    text = reason.lower()
    for name, words in REASON_CLASSES:
        if any(w in text for w in words):
            return name
    return "other"


def message_kind(msg: Message) -> str:
    """The label of a peer message: a Gossip's payload kind (``order``, ``vote``, ...), else its type."""
    if isinstance(msg, Gossip):
        return payload_kind(msg.data)
    return _KIND_BY_TAG.get(msg.TAG, "other")


def payload_kind(data: bytes) -> str:
    """The kind of an encoded message from its first bytes (a msgpack array, then a small-int tag)."""
    if len(data) >= 2 and 0x90 <= data[0] <= 0x9F and data[1] < 0x80:
        return _KIND_BY_TAG.get(data[1], "other")
    return "other"


class _Seen:
    """Stage boundaries this node saw for one payment (its own clock, seconds)."""

    __slots__ = ("first", "last", "stage")

    def __init__(self, now: float) -> None:
        self.first = now  # first seen here: submitted, received, or a certificate for it
        self.last = now  # the latest boundary passed
        self.stage = -1  # index in STAGES of the latest boundary passed; -1 = only seen


class NodeMetrics:
    """The metrics of one node, in a registry of their own.

    ``clock`` times the payment stages: Trio's clock by default (virtual in in-memory test clusters,
    like their logs' ``ts_ns``), so payment events must be observed inside the node's Trio run."""

    def __init__(
        self,
        *,
        tracked_payments: int = 10_000,
        gauges: Callable[[], dict[str, float]] | None = None,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        self._cap = tracked_payments
        self._payments: OrderedDict[str, _Seen] = OrderedDict()
        r = self.registry
        self.stage = Histogram(
            "p2pnode_payment_stage_seconds",
            "Time a payment spent in each stage at this node, from the previous boundary it saw here.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._stage = [self.stage.labels(stage=s) for s in STAGES]
        self.settlement = Histogram(
            "p2pnode_settlement_seconds",
            "Time from this node first seeing a payment to applying it here.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.applied = Counter("p2pnode_certificates_applied", "Payments applied at this node.", registry=r)
        self.untracked = Counter(
            "p2pnode_payments_untracked",
            "Payments forgotten before they were applied here (beyond metrics.tracked_payments).",
            registry=r,
        )
        self.proof_seconds = Histogram(
            "p2pnode_proof_verify_seconds",
            "Wall time of one proof verification call (one batch).",
            buckets=VERIFY_BUCKETS,
            registry=r,
        )
        self.proof_batch = Histogram(
            "p2pnode_proof_verify_batch_size",
            "Proofs verified in one call.",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.proofs = Counter(
            "p2pnode_proofs_verified", "Proofs verified, by result.", ["result"], registry=r
        )
        self._proofs_ok = self.proofs.labels(result="ok")
        self._proofs_bad = self.proofs.labels(result="invalid")
        self.sig_seconds = Histogram(
            "p2pnode_signature_verify_seconds",
            "Time per Ed25519 vote signature check (the handling of the message that needed it, divided "
            "by the checks it made: an upper bound).",
            buckets=SIGNATURE_BUCKETS,
            registry=r,
        )
        self.sig_batch = Histogram(
            "p2pnode_signature_verify_batch_size",
            "Signatures checked while handling one peer message (a vote or a certificate batch).",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.signatures = Counter(
            "p2pnode_signatures_verified", "Ed25519 vote signatures checked.", registry=r
        )
        self.commit_seconds = Histogram(
            "p2pnode_store_commit_seconds",
            "Wall time of one store group commit.",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self.commit_batch = Histogram(
            "p2pnode_store_commit_batch_size",
            "Writes (locks and applied certificates) in one group commit.",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.msgs_in = Counter(
            "p2pnode_gossip_messages_received", "Peer messages received, by kind.", ["kind"], registry=r
        )
        self.bytes_in = Counter(
            "p2pnode_gossip_received_bytes", "Bytes of peer messages received, by kind.", ["kind"], registry=r
        )
        self.dups_in = Counter(
            "p2pnode_gossip_duplicates",
            "Gossip payloads received that this node had already seen, by kind.",
            ["kind"],
            registry=r,
        )
        self.msgs_out = Counter(
            "p2pnode_gossip_messages_sent", "Peer messages queued to send, by kind.", ["kind"], registry=r
        )
        self.bytes_out = Counter(
            "p2pnode_gossip_sent_bytes", "Bytes of peer messages queued to send, by kind.", ["kind"],
            registry=r,
        )
        self.refusals = Counter(
            "p2pnode_refusals",
            "Messages, orders, votes and connections refused or ignored, by event and reason class.",
            ["event", "reason"],
            registry=r,
        )
        self._kinds: dict[str, tuple[Any, Any, Any, Any, Any]] = {}
        for k in PEER_KINDS:
            self._kind(k)
        for ev in REFUSAL_EVENTS:
            for reason in REASONS:
                self.refusals.labels(event=ev, reason=reason)
        if gauges is not None:
            r.register(_GaugeCollector(gauges))
        self._on: dict[str, Callable[[dict[str, Any]], None]] = {
            "order_submitted": self._seen,
            "order_received": self._seen,
            "proof_verified": self._verified,
            "vote_sent": self._voted,
            "certificate_formed": self._certified,
            "certificate_received": self._certified,
            "certificate_applied": self._applied,
        }
        for ev in REFUSAL_EVENTS:
            self._on[ev] = self._make_refusal(ev)

    # == log events ===================================================================================
    def event(self, event: str, fields: dict[str, Any]) -> None:
        """One log event of this node (``docs/logs.md``), at the time it is logged."""
        handler = self._on.get(event)
        if handler is not None:
            handler(fields)

    def _track(self, tx: Any, now: float, stage: int = -1) -> _Seen | None:
        """The payment's record, or None if it is new: then it is added at ``now``, having passed
        ``stage`` (-1: only seen)."""
        if not isinstance(tx, str):
            return None
        seen = self._payments.get(tx)
        if seen is None:
            new = self._payments[tx] = _Seen(now)
            new.stage = stage
            if len(self._payments) > self._cap:
                self._payments.popitem(last=False)
                self.untracked.inc()
        return seen

    def _passed(self, fields: dict[str, Any], stage: int) -> None:
        """The payment reached the end of ``STAGES[stage]`` here (only the first time counts). A boundary
        that is also this node's first sight of the payment (a certificate for an order it never saw)
        gives no stage sample: nothing was waited for here."""
        now = self._clock()
        seen = self._track(fields.get("tx"), now, stage)
        if seen is None or seen.stage >= stage:
            return
        self._stage[stage].observe(now - seen.last)
        seen.last, seen.stage = now, stage

    def _seen(self, fields: dict[str, Any]) -> None:
        self._track(fields.get("tx"), self._clock())

    def _verified(self, fields: dict[str, Any]) -> None:
        if fields.get("ok"):
            self._passed(fields, 0)

    def _voted(self, fields: dict[str, Any]) -> None:
        self._passed(fields, 1)

    def _certified(self, fields: dict[str, Any]) -> None:
        self._passed(fields, 2)

    def _applied(self, fields: dict[str, Any]) -> None:
        self.applied.inc()
        tx = fields.get("tx")
        if not isinstance(tx, str) or tx not in self._payments:
            return  # forgotten (beyond metrics.tracked_payments)
        self._passed(fields, 3)
        seen = self._payments.pop(tx)
        self.settlement.observe(seen.last - seen.first)

    def _make_refusal(self, event: str) -> Callable[[dict[str, Any]], None]:
        children = {reason: self.refusals.labels(event=event, reason=reason) for reason in REASONS}

        def refused(fields: dict[str, Any]) -> None:
            reason = fields.get("reason", "")
            n = 1 + int(fields.get("unlogged", 0) or 0)  # connection_refused is logged once per second
            children[refusal_class(event, reason if isinstance(reason, str) else "")].inc(n)

        return refused

    # == driver hooks =================================================================================
    def _kind(self, kind: str) -> tuple[Any, Any, Any, Any, Any]:
        """The five gossip counters of ``kind`` (one of :data:`KINDS` or ``other``: a bounded set)."""
        c = self._kinds.get(kind)
        if c is None:
            c = self._kinds[kind] = (
                self.msgs_in.labels(kind=kind),
                self.bytes_in.labels(kind=kind),
                self.dups_in.labels(kind=kind),
                self.msgs_out.labels(kind=kind),
                self.bytes_out.labels(kind=kind),
            )
        return c

    def received(self, msg: Message, size: int, duplicate: bool) -> None:
        """A peer message of ``size`` bytes on the wire; ``duplicate``: a gossip payload seen before."""
        c = self._kind(message_kind(msg))
        c[0].inc()
        c[1].inc(size)
        if duplicate:
            c[2].inc()

    def sent(self, msg: Message, size: int) -> None:
        c = self._kind(message_kind(msg))
        c[3].inc()
        c[4].inc(size)

    def proofs_verified(self, seconds: float, results: Iterable[bool]) -> None:
        ok = bad = 0
        for r in results:
            if r:
                ok += 1
            else:
                bad += 1
        self.proof_seconds.observe(seconds)
        self.proof_batch.observe(ok + bad)
        if ok:
            self._proofs_ok.inc(ok)
        if bad:
            self._proofs_bad.inc(bad)

    def signatures_checked(self, seconds: float, count: int) -> None:
        if count <= 0:
            return
        self.sig_seconds.observe(seconds / count)
        self.sig_batch.observe(count)
        self.signatures.inc(count)

    def committed(self, seconds: float, writes: int) -> None:
        self.commit_seconds.observe(seconds)
        self.commit_batch.observe(writes)

    # == exposition ===================================================================================
    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The registry's samples and their content type: OpenMetrics if ``accept`` asks for it."""
        if "application/openmetrics-text" in accept:
            return generate_openmetrics(self.registry), OPENMETRICS_TYPE  # type: ignore[no-untyped-call]
        return generate_latest(self.registry), TEXT_CONTENT_TYPE


class _GaugeCollector:
    """Gauges read at scrape time: no bookkeeping on the hot path."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self._read = read

    def describe(self) -> Iterator[Metric]:
        return iter(())  # read at scrape time only (the core may not be set up when it registers)

    def collect(self) -> Iterator[Metric]:
        values = self._read()
        for name, doc in GAUGES.items():
            if name == "p2pnode_pending_orders":
                g = GaugeMetricFamily(name, doc, labels=["state"])
                g.add_metric(["verifying"], values.get("verifying", 0.0))
                g.add_metric(["held"], values.get("held_orders", 0.0))
                yield g
            else:
                yield GaugeMetricFamily(name, doc, value=values.get(name.removeprefix("p2pnode_"), 0.0))


GAUGES: dict[str, str] = {
    "p2pnode_peers": "Connected peers.",
    "p2pnode_pending_orders": "Orders not yet voted on or applied here: waiting for proof verification "
    "(verifying) or for their predecessor or funds (held).",
    "p2pnode_held_certificates": "Valid certificates waiting for their account's earlier seqs or credits.",
}


class ObservedLog:
    """A node's bound logger that also hands each event to :meth:`NodeMetrics.event`.

    Only ``debug``/``info``/``warning``/``error`` are observed; everything else (``bind`` included,
    whose result is observed too) is the wrapped logger's."""

    def __init__(self, log: Any, metrics: NodeMetrics) -> None:
        self._log = log
        self._metrics = metrics

    def debug(self, event: str, **fields: Any) -> Any:
        self._metrics.event(event, fields)
        return self._log.debug(event, **fields)

    def info(self, event: str, **fields: Any) -> Any:
        self._metrics.event(event, fields)
        return self._log.info(event, **fields)

    def warning(self, event: str, **fields: Any) -> Any:
        self._metrics.event(event, fields)
        return self._log.warning(event, **fields)

    def error(self, event: str, **fields: Any) -> Any:
        self._metrics.event(event, fields)
        return self._log.error(event, **fields)

    def bind(self, **context: Any) -> ObservedLog:
        return ObservedLog(self._log.bind(**context), self._metrics)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


class MetricsServer:
    """``GET /metrics`` over HTTP/1.1 on Trio, one response per connection (``Connection: close``).

    A Trio service: ``port = await nursery.start(server.run)``; cancelling it closes the listener and
    every connection. Error handling: a client that sends garbage, too much or nothing in time is
    answered with an error status or closed; it never affects the node."""

    def __init__(self, metrics: NodeMetrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self.scrapes = 0
        self._slots = trio.Semaphore(MAX_SCRAPES)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            await trio.serve_listeners(self._serve, listeners, handler_nursery=nursery)

    async def _serve(self, stream: trio.SocketStream) -> None:
        async with self._slots, stream:
            try:
                with trio.move_on_after(SCRAPE_TIMEOUT_S):
                    head = await _read_head(stream)
                    if head is None:
                        return
                    await stream.send_all(self._respond(head))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return

    def _respond(self, head: bytes) -> bytes:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _response(400, b"bad request\n", "text/plain")
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return _response(405, b"only GET\n", "text/plain")
        if target not in ("/metrics", "/"):
            return _response(404, b"try /metrics\n", "text/plain")
        accept = ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "accept":
                accept = value.strip()
        body, ctype = self.metrics.exposition(accept)
        self.scrapes += 1
        return _response(200, body, ctype, head_only=method == "HEAD")


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_REQUEST:
            await stream.send_all(_response(431, b"request head too large\n", "text/plain"))
            return None
        data = await stream.receive_some(4096)
        if not data:
            return None
        buf += data
    return bytes(buf[: buf.index(b"\r\n\r\n")])


_STATUS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 431: "Too Large"}


def _response(status: int, body: bytes, ctype: str, *, head_only: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_STATUS[status]}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    return head if head_only else head + body


__all__ = [
    "GAUGES",
    "KINDS",
    "PEER_KINDS",
    "LATENCY_BUCKETS",
    "REASONS",
    "REFUSAL_EVENTS",
    "STAGES",
    "MetricsServer",
    "NodeMetrics",
    "ObservedLog",
    "message_kind",
    "payload_kind",
    "refusal_class",
]
