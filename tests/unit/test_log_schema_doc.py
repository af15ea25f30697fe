"""docs/logs.md documents every log event and field the tools rely on, and the ``latency --json`` keys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from p2pnode.tools import latency

DOC = Path(__file__).resolve().parents[2] / "docs" / "logs.md"

COMMON = ("ts_ns", "level", "event", "node", "node_id")
# event -> fields (besides the common ones). This is the schema the node driver writes.
PAYMENT = {
    "order_submitted": ("tx", "sender", "seq", "amount"),
    "order_received": ("tx", "hops", "peer"),
    "proof_verified": ("tx", "ok", "duration_us", "batch"),
    "vote_sent": ("tx", "seq", "sender"),
    "vote_received": ("tx", "validator", "hops"),
    "certificate_formed": ("tx", "votes"),
    "certificate_received": ("tx", "hops", "peer"),
    "certificate_applied": ("tx", "sender", "seq", "amount", "root", "applied"),
    "message_rejected": ("reason", "kind", "peer", "tx"),
}
OTHER = {
    "node_started": ("chain_id", "listen", "role"),
    "node_ready": (),
    "peer_connected": ("peer", "addr", "direction"),
    "peer_disconnected": ("peer", "reason"),
    "handshake_refused": ("addr", "reason"),
    "node_stopping": ("reason",),
    "store_failed": ("cause", "error", "writes"),
    "slot_blocked": ("sender", "seq", "quorum", "orders", "voters", "reason"),
}


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def section(doc: str, event: str) -> str:
    m = re.search(rf"^### `{event}`\n(.*?)(?=^#)", doc, re.S | re.M)
    assert m, f"no section for {event}"
    return m.group(1)


def test_the_tools_read_only_documented_payment_events() -> None:
    assert latency.PAYMENT_EVENTS <= set(PAYMENT)


@pytest.mark.parametrize("event", sorted(PAYMENT))
def test_payment_event_fields_are_documented(doc: str, event: str) -> None:
    text = section(doc, event)
    for name in PAYMENT[event]:
        assert re.search(rf"^\| `{name}` \|", text, re.M), f"{event}.{name} is not documented"


@pytest.mark.parametrize("event", sorted(OTHER))
def test_other_events_are_documented(doc: str, event: str) -> None:
    row = re.search(rf"^\| `{event}` \|(.*)$", doc, re.M)
    assert row, f"{event} is not documented"
    for name in OTHER[event]:
        assert f"`{name}`" in row.group(1)


def test_common_fields_are_documented(doc: str) -> None:
    for name in COMMON:
        assert f"| `{name}` |" in doc


def test_latency_json_keys_are_documented(doc: str) -> None:
    report = latency.analyze({"/l/node-0.log": []})
    shape = doc[doc.index("### The `--json` document") :]
    for key in report.to_json():
        assert f'"{key}"' in shape, f"latency --json key {key} is not documented"
    for stage in latency.STAGES:
        assert f'"{stage}"' in shape and f"`{stage}`" in doc
