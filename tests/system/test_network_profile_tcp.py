"""Four validators as real processes on the aws-5 profile (`net up --network`): payments settle, every
root agrees, and each settlement takes at least its quorum's round trips on the profile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from p2pnode.net.linkmodel import load_profile
from tests.integration.test_network_profile import settlement_bound_s
from tests.system.conftest import REPO, cli, cli_json, stop_any, wait_until

pytestmark = pytest.mark.slow

AWS5 = REPO / "configs" / "network" / "aws-5.toml"


def test_net_up_with_aws5_settles_no_faster_than_the_profile_allows(tmp_path: Path) -> None:
    d = tmp_path / "cluster"
    try:
        out = cli(
            "net", "up", "--validators", "4", "--accounts", "4", "--no-shielded",
            "--network", str(AWS5), "--dir", str(d),
        ).stdout  # fmt: skip
        assert "cluster ready" in out and "network aws-5" in out
        doc = json.loads((d / "cluster.json").read_text())
        regions = [n["region"] for n in doc["nodes"]]
        assert regions == ["N_Virginia", "N_California", "Frankfurt", "Singapore"]
        assert (d / "network" / "aws-5.toml").is_file()
        status = json.loads(cli("net", "status", "--dir", str(d), "--json").stdout)
        assert [n["region"] for n in status["nodes"]] == regions
        assert status["network"]["median_rtt_ms"] == 148.0

        profile = load_profile(AWS5)
        addrs = [f"{n['host']}:{n['port']}" for n in doc["nodes"]]
        accounts = [str(d / a) for a in doc["accounts"]]
        latencies_ms = []
        for k in range(8):  # two payments through each node
            i = k % 4
            res = cli_json(
                "pay", "--node", addrs[i], "--from", accounts[i], "--to", accounts[(i + 1) % 4],
                "--amount", "3", "--json",
            )  # fmt: skip
            assert res["settled"] is True, res
            bound_ms = 1000 * settlement_bound_s(profile, regions, i, quorum=3)
            assert res["settlement_ms"] > bound_ms, (i, res["settlement_ms"], bound_ms)
            latencies_ms.append(res["settlement_ms"])

        def converged() -> list[dict[str, Any]] | None:
            infos = [cli_json("status", "--node", a, "--json") for a in addrs]
            return infos if all(s["applied"] == 8 for s in infos) else None

        infos = wait_until("every node applied the 8 payments", converged, timeout=60)
        assert len({s["root"] for s in infos}) == 1
        # Loopback settles in a few ms; across the profile it takes round trips of 60 to 222 ms.
        assert sorted(latencies_ms)[len(latencies_ms) // 2] > 50
    finally:
        stop_any(d)
