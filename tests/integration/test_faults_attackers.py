"""Attacker peer roles (p2pnode/testing/faults/attackers.py) on the in-memory network, virtual clock.

Each role dials the honest nodes with fresh keys: it logs when it starts, one identity per key and its
stats; the roles the victims penalize come back with new keys; every role is bounded in rate.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

import pytest
import structlog
import trio

from p2pnode.errors import ConfigError
from p2pnode.testing import open_memory_cluster
from p2pnode.testing.faults import PEER_ROLES, faults_for
from p2pnode.testing.faults.attackers import ATTACKER_ROLES, START_S, TICK_S

Events = Sequence[MutableMapping[str, Any]]
ATTACKER = 4  # the full node of a 4-validator cluster


def of(logs: Events, event: str, node: str | None = None) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == event and (node is None or e.get("node") == node)]


def test_every_attacker_role_is_a_peer_role_with_one_service() -> None:
    assert set(ATTACKER_ROLES) <= set(PEER_ROLES)
    for role in ATTACKER_ROLES:
        assert len(faults_for(role).services) == 1
    with pytest.raises(ConfigError):
        faults_for("no_such_role")


async def run_role(role: str, *, attack_s: float, pay: bool = True) -> Events:
    """A 4-validator cluster with node-4 playing ``role`` for ``attack_s`` seconds after it starts;
    with ``pay``, a payment before and after the start so that the victims hold something."""
    with structlog.testing.capture_logs() as logs:
        cluster = open_memory_cluster(validators=4, full_nodes=1, accounts=4, byzantine={ATTACKER: role})
        async with cluster as c:
            if pay:
                with trio.fail_after(30):
                    await c.pay(0, 1, 5, via=0)
            await trio.sleep_until(c.driver(ATTACKER).started_at + START_S[role] + 1)
            if pay:
                with trio.fail_after(30):
                    await c.pay(1, 2, 5, via=1)
            await trio.sleep(attack_s)
    return logs


def identities(logs: Events) -> set[str]:
    return {e["node_id"] for e in of(logs, "byzantine_identity", f"node-{ATTACKER}")}


@pytest.mark.parametrize(("role", "attack_s"), [("bad_proofs_fresh_keys", 6), ("ihave_flood", 40)])
async def test_a_penalized_attacker_comes_back_with_a_fresh_key(
    role: str, attack_s: float, autojump_clock: trio.abc.Clock
) -> None:
    # An IHAVE flood is read slowly (a stranger's bytes are rate-limited), and a broken promise is
    # judged only after the follow-up time, with penalty counts decaying: its keys last longer (about
    # 13 virtual seconds each here).
    logs = await run_role(role, attack_s=attack_s)
    me = f"node-{ATTACKER}"
    assert len(of(logs, "byzantine_behaviour_started", me)) == 1
    ids = identities(logs)
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    for victim in range(4):
        penalized = {e["peer"] for e in of(logs, "peer_penalized", f"node-{victim}")}
        assert penalized & ids, f"node-{victim} never penalized an attacker identity"
        # A ban on one key stops nothing: the attacker is back with others.
        assert len(penalized & ids) >= 2
    stats = of(logs, "byzantine_stats", me)
    assert stats and stats[-1]["sent"] > 0 and stats[-1]["bytes_out"] > 0


@pytest.mark.parametrize("role", ["sync_empty", "iwant_repeat", "vote_replay", "never_read"])
async def test_roles_are_bounded_in_rate(role: str, autojump_clock: trio.abc.Clock) -> None:
    logs = await run_role(role, attack_s=6)
    me = f"node-{ATTACKER}"
    assert len(of(logs, "byzantine_behaviour_started", me)) == 1
    assert identities(logs)
    stats = of(logs, "byzantine_stats", me)
    assert stats
    # At most one tick's worth of the fastest rate per tick and connection.
    started = of(logs, "byzantine_behaviour_started", me)[0]
    seconds = 7 + 1
    assert stats[-1]["sent"] <= len(started["victims"]) * 2 * 2000 * seconds * (1 + TICK_S)


async def test_sybil_slots_holds_forty_connections_per_victim(autojump_clock: trio.abc.Clock) -> None:
    logs = await run_role("sybil_slots", attack_s=3, pay=False)
    ids = identities(logs)
    assert len(ids) >= 4 * 24  # every victim's 24 inbound slots were tried
    refusals = of(logs, "connection_refused") + of(logs, "peer_evicted")
    assert refusals, "no victim refused or evicted a Sybil peer"
