"""Each node's Prometheus metrics: what a running node exports is what docs/metrics.md documents, the
payment histograms count every payment at every node, and the HTTP endpoint lives and dies with its
nursery."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from p2pnode.client import PaymentRefused
from p2pnode.net.metrics import (
    PEER_KINDS,
    REASONS,
    REFUSAL_EVENTS,
    STAGES,
    MetricsServer,
    NodeMetrics,
    ObservedLog,
    payload_kind,
    refusal_class,
)
from p2pnode.testing import open_memory_cluster
from p2pnode.wire.messages import Vote

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
BALANCE = 1_000_000
METRICS_ON = {"metrics": {"listen": "127.0.0.1:0"}}


def families(text: str) -> dict[str, tuple[str, set[str], dict[str, float]]]:
    """Exported name (counters with ``_total``) -> (type, label names, samples by rendered name)."""
    out: dict[str, tuple[str, set[str], dict[str, float]]] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name.endswith("_created") and fam.type == "gauge":
            continue  # prometheus_client's creation times (docs/metrics.md)
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        samples = {}
        labels: set[str] = set()
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            labels |= set(s.labels) - {"le"}
            key = s.name + "".join(f"|{k}={v}" for k, v in sorted(s.labels.items()))
            samples[key] = s.value
        out[name] = (fam.type, labels, samples)
    return out


def documented() -> dict[str, tuple[str, set[str]]]:
    out = {}
    rows = re.findall(r"^\| `(p2pnode_\w+)` \| (\w+) \| ([^|]+) \|", DOC.read_text(), re.M)
    for name, kind, labels in rows:
        out[name] = (kind, set(re.findall(r"`(\w+)`", labels)))
    return out


async def test_a_node_exports_exactly_the_documented_metrics(autojump_clock: trio.abc.Clock) -> None:
    async with open_memory_cluster(validators=4, accounts=4, seed=1, balance=BALANCE, config=METRICS_ON) as c:
        await c.wait_ready(peers=3)
        for k in range(5):
            assert (await c.pay(k % 4, (k + 1) % 4, 10 + k, via=k % 4)).settled
        with pytest.raises(PaymentRefused):
            await c.pay(0, 1, 10 * BALANCE, via=1)
        await c.wait_converged(applied=5)
        exported = []
        for i in range(4):
            node = c.driver(i)
            assert node.metrics is not None and node.metrics_server is not None
            assert node.status()["metrics"] == f"127.0.0.1:{node.metrics_server.port}"
            body, ctype = node.metrics.exposition()
            assert ctype.startswith("text/plain")
            exported.append(families(body.decode()))

    doc = documented()
    for fams in exported:
        assert {n: (t, labels) for n, (t, labels, _) in fams.items()} == doc
    for fams in exported:
        samples = fams["p2pnode_settlement_seconds"][2]
        assert samples["p2pnode_settlement_seconds_count"] == 5
        stages = fams["p2pnode_payment_stage_seconds"][2]
        for stage in STAGES:
            assert stages[f"p2pnode_payment_stage_seconds_count|stage={stage}"] == 5
        assert fams["p2pnode_certificates_applied_total"][2]["p2pnode_certificates_applied_total"] == 5
        assert fams["p2pnode_peers"][2]["p2pnode_peers"] == 3
        received = fams["p2pnode_gossip_messages_received_total"][2]
        assert received["p2pnode_gossip_messages_received_total|kind=vote"] > 0
        rx_bytes = fams["p2pnode_gossip_received_bytes_total"][2]
        assert rx_bytes["p2pnode_gossip_received_bytes_total|kind=vote"] > 0
        sent = fams["p2pnode_gossip_messages_sent_total"][2]
        assert sent["p2pnode_gossip_messages_sent_total|kind=vote"] > 0
        proofs = fams["p2pnode_proofs_verified_total"][2]
        assert proofs["p2pnode_proofs_verified_total|result=ok"] >= 5
        assert fams["p2pnode_store_commit_seconds"][2]["p2pnode_store_commit_seconds_count"] > 0
        assert fams["p2pnode_signatures_verified_total"][2]["p2pnode_signatures_verified_total"] > 0
    # The refused payment was refused by the node it was sent to, as a client order.
    refused = exported[1]["p2pnode_refusals_total"][2]
    assert refused["p2pnode_refusals_total|event=order_refused|reason=insufficient_funds"] == 1
    assert sum(refused.values()) == 1


def test_the_doc_lists_every_label_value() -> None:
    doc = DOC.read_text()
    for value in (*STAGES, *REASONS, *REFUSAL_EVENTS, *PEER_KINDS, "ok", "invalid", "verifying", "held"):
        assert f"`{value}`" in doc, value


@pytest.mark.parametrize(
    ("event", "reason", "cls"),
    [
        ("message_rejected", "malformed msgpack: truncated", "malformed"),
        ("message_rejected", "proof does not verify", "invalid_proof"),
        ("order_refused", "proof does not verify", "invalid_proof"),
        ("message_rejected", "bad signature", "invalid_signature"),
        ("order_refused", "insufficient funds: balance 5, amount 9", "insufficient_funds"),
        ("vote_refused", "(sender, seq) is locked to another order", "conflict"),
        ("order_ignored", "already settled", "stale"),
        ("order_refused", "node busy: verification budget of this connection spent, try again", "overload"),
        ("order_ignored", "verification queue full", "overload"),
        ("handshake_refused", "anything at all", "handshake"),
        ("connection_refused", "open-file budget full", "overload"),
        ("certificate_conflict", "", "conflict"),
        ("message_rejected", "something new", "other"),
    ],
)
def test_refusal_classes(event: str, reason: str, cls: str) -> None:
    assert refusal_class(event, reason) == cls


def test_payload_kind_reads_the_tag_without_decoding() -> None:
    vote = Vote(validator=b"\1" * 32, digests=(b"\2" * 32,), signature=b"\3" * 64)
    assert payload_kind(vote.encode()) == "vote"
    assert payload_kind(b"") == payload_kind(b"\xff\x00") == "other"


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))

    warning = info

    def bind(self, **_: Any) -> _Log:
        return self


def test_tracked_payments_are_bounded_and_the_log_still_gets_every_line() -> None:
    clock = iter(range(100)).__next__
    m = NodeMetrics(tracked_payments=16, clock=lambda: float(clock()))
    inner = _Log()
    log = ObservedLog(inner, m).bind(peer="x")
    for i in range(20):
        log.info("order_received", tx=f"{i:064x}", hops=1, peer="p")
    log.info("certificate_applied", tx=f"{0:064x}")  # forgotten: no sample
    log.info("certificate_received", tx=f"{19:064x}", hops=1, peer="p")
    log.info("certificate_applied", tx=f"{19:064x}")
    log.warning("message_rejected", reason="bad signature", kind="vote", peer="p")
    assert len(inner.lines) == 24
    fams = families(m.exposition()[0].decode())
    assert fams["p2pnode_payments_untracked_total"][2]["p2pnode_payments_untracked_total"] == 4
    assert fams["p2pnode_certificates_applied_total"][2]["p2pnode_certificates_applied_total"] == 2
    settle = fams["p2pnode_settlement_seconds"][2]
    assert settle["p2pnode_settlement_seconds_count"] == 1
    assert settle["p2pnode_settlement_seconds_sum"] == 2.0  # seen at 19, certificate at 20, applied at 21
    stages = fams["p2pnode_payment_stage_seconds"][2]
    assert stages["p2pnode_payment_stage_seconds_sum|stage=certificate"] == 1.0  # from first seen: no verify
    assert stages["p2pnode_payment_stage_seconds_count|stage=verify"] == 0
    refused = fams["p2pnode_refusals_total"][2]
    assert refused["p2pnode_refusals_total|event=message_rejected|reason=invalid_signature"] == 1


async def _http(port: int, request: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        out = b""
        while chunk := await stream.receive_some(65536):
            out += chunk
        return out


async def test_the_endpoint_answers_and_stops_with_its_nursery() -> None:
    m = NodeMetrics()
    server = MetricsServer(m, "127.0.0.1", 0)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.run)
            ok = await _http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert ok.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"Content-Type: text/plain; version=0.0.4" in ok
            assert b"# TYPE p2pnode_settlement_seconds histogram" in ok
            om = await _http(port, b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n")
            assert b"application/openmetrics-text" in om and om.endswith(b"# EOF\n")
            assert (await _http(port, b"GET /other HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
            assert (await _http(port, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
            assert (await _http(port, b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
            assert (await _http(port, b"GET /" + b"x" * 10000)).startswith(b"HTTP/1.1 431")
            assert server.scrapes == 2
            nursery.cancel_scope.cancel()
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)
