"""A cluster with a network profile: nodes placed on its regions, each config's [network] section, the
profile copied into the directory, regions in cluster.json; definition files' [network] table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from p2pnode.config import load_config
from p2pnode.errors import ConfigError
from p2pnode.localnet import ClusterSpec, read_cluster, write_cluster
from p2pnode.net.links import link_model

ROOT = Path(__file__).resolve().parents[2]
AWS5 = ROOT / "configs" / "network" / "aws-5.toml"
REGIONS = ["N_Virginia", "N_California", "Frankfurt", "Singapore", "Tokyo"]


def test_write_cluster_places_nodes_and_writes_each_network_section(tmp_path: Path) -> None:
    spec = ClusterSpec(validators=4, full_nodes=2, accounts=1, shielded=False, network=AWS5)
    cluster = write_cluster(spec, tmp_path / "c")
    assert [n.region for n in cluster.nodes] == [*REGIONS, REGIONS[0]]
    copy = cluster.directory / "network" / "aws-5.toml"
    assert copy.read_bytes() == AWS5.read_bytes()  # self-contained
    doc = json.loads((cluster.directory / "cluster.json").read_text(encoding="utf-8"))
    assert doc["network"]["file"] == "network/aws-5.toml" and doc["network"]["median_rtt_ms"] == 148.0
    assert [n["region"] for n in doc["nodes"]] == [n.region for n in cluster.nodes]
    again = read_cluster(cluster.directory)
    assert again.network == cluster.network and [n.region for n in again.nodes] == [
        n.region for n in cluster.nodes
    ]
    for entry in cluster.nodes:
        cfg = load_config(entry.config)
        assert cfg.network.profile == copy
        model = link_model(cfg)
        assert model is not None and model.region == entry.region
        others = {n.address: n.region for n in cluster.nodes if n.name != entry.name}
        assert model.regions == others


def test_a_cluster_without_a_profile_has_no_network_section(tmp_path: Path) -> None:
    cluster = write_cluster(ClusterSpec(validators=1, accounts=1, shielded=False), tmp_path / "c")
    assert cluster.network is None and cluster.nodes[0].region == ""
    assert load_config(cluster.nodes[0].config).network.profile is None
    assert "network" not in json.loads((cluster.directory / "cluster.json").read_text(encoding="utf-8"))


def test_definition_file_network_table_is_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "network").mkdir()
    shutil.copy(AWS5, tmp_path / "network" / "aws-5.toml")
    definition = tmp_path / "local-4.toml"
    definition.write_text('[cluster]\nvalidators = 4\n\n[network]\nprofile = "network/aws-5.toml"\n')
    spec = ClusterSpec.from_file(definition)
    assert spec.network == tmp_path / "network" / "aws-5.toml"
    # a flag overrides the file
    assert ClusterSpec.from_file(definition, network=AWS5).network == AWS5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[network]\nprofile = "nope.toml"\n', "network.profile: .*nope.toml: cannot read"),
        ("[network]\nprofile = 3\n", "network.profile: expected the path"),
        ('[network]\nprofile = "a.toml"\nregion = "x"\n', "unknown key network.region"),
        ('[defaults.network]\nregion = "x"\n', "defaults.network"),
    ],
)
def test_definition_file_network_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    definition = tmp_path / "local.toml"
    definition.write_text("[cluster]\nvalidators = 4\n\n" + text)
    with pytest.raises(ConfigError, match=message) as info:
        ClusterSpec.from_file(definition)
    assert str(definition) in str(info.value)


def test_shipped_definitions_still_load() -> None:
    for path in sorted((ROOT / "configs").glob("local-*.toml")):
        ClusterSpec.from_file(path).validate()
