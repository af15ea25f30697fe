"""``p2pnode.localnet`` cluster directories: generated clusters load with the node's own loaders,
secrets are private, and cluster definition files are validated key by key."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest

from p2pnode.config import load_config, parse_hostport
from p2pnode.crypto import NodeKey, SpendingKey, address_of
from p2pnode.errors import ConfigError, LocalError
from p2pnode.genesis import load_genesis
from p2pnode.localnet import ClusterSpec, load_cluster_definition, read_cluster, write_cluster

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_a_loadable_cluster(tmp_path: Path) -> None:
    out = tmp_path / "net"
    spec = ClusterSpec(validators=3, full_nodes=2, accounts=2, balance=500, chain_name="t")
    testnet = write_cluster(spec, out)

    genesis = load_genesis(out / "genesis.toml")
    assert genesis.chain_id == testnet.chain_id
    assert genesis.chain_name == "t"
    assert [n.role for n in testnet.nodes] == ["validator"] * 3 + ["full"] * 2
    committee = {v.node_id.hex() for v in genesis.validators}
    assert committee == {n.node_id for n in testnet.nodes[:3]}

    ports = set()
    for i, node in enumerate(testnet.nodes):
        cfg = load_config(out / f"node-{i}.toml")
        assert cfg.node.name == f"node-{i}"
        assert cfg.node.key_file == out / "keys" / f"node-{i}.key"
        assert cfg.node.genesis == out / "genesis.toml"
        assert cfg.node.data_dir == out / "data" / f"node-{i}"
        assert cfg.log.file == out / "logs" / f"node-{i}.log"
        assert cfg.log.format == "json"
        assert parse_hostport(cfg.node.listen) == (node.host, node.port)
        ports.add(node.port)
        # Bootstrap: node 0 knows node 1, the other validators node 0, full node i validator
        # (i - 3) mod 3, and nothing else.
        expected = testnet.nodes[1 if i == 0 else 0 if i < 3 else (i - 3) % 3].address
        assert cfg.node.bootstrap == (expected,)
        key_text = cfg.node.key_file.read_text()
        assert re.fullmatch(r"[0-9a-f]{64}\n", key_text)
        assert NodeKey.from_seed(bytes.fromhex(key_text)).public.hex() == node.node_id
        assert mode(cfg.node.key_file) == 0o600
        # Node configs use relative paths so the directory can be moved.
        assert str(tmp_path) not in (out / f"node-{i}.toml").read_text()
    assert len(ports) == 5

    assert mode(out / "keys") == 0o700
    balances: dict[bytes, int] = dict(genesis.balances)
    for account in testnet.accounts:
        path = account.path
        assert mode(path) == 0o600
        doc = json.loads(path.read_text())
        assert set(doc) == {"address", "spending_key", "public"}
        sk = SpendingKey.from_bytes(bytes.fromhex(doc["spending_key"]))
        assert sk.public.hex() == doc["public"]
        assert address_of(sk.public).hex() == doc["address"]
        assert balances[bytes.fromhex(doc["address"])] == 500
        assert account.address.hex() == doc["address"]

    assert read_cluster(out) == testnet
    doc = json.loads((out / "cluster.json").read_text())
    assert set(doc) == {"chain_name", "chain_id", "nodes", "accounts"}
    assert set(doc["nodes"][0]) == {"name", "role", "host", "port", "config", "log", "node_id"}
    assert doc["nodes"][0]["config"] == "node-0.toml" and doc["accounts"][0] == "accounts/account-0.json"


def test_single_validator_has_no_bootstrap(tmp_path: Path) -> None:
    testnet = write_cluster(ClusterSpec(validators=1, accounts=0, shielded=False), tmp_path / "one")
    assert load_config(tmp_path / "one" / "node-0.toml").node.bootstrap == ()
    assert testnet.accounts == ()


def test_base_port_gives_consecutive_ports(tmp_path: Path) -> None:
    testnet = write_cluster(
        ClusterSpec(validators=2, full_nodes=1, accounts=0, base_port=17000), tmp_path / "n"
    )
    assert [n.port for n in testnet.nodes] == [17000, 17001, 17002]


def test_refuses_to_overwrite_keys(tmp_path: Path) -> None:
    spec = ClusterSpec(validators=1, accounts=0)
    write_cluster(spec, tmp_path)
    before = (tmp_path / "keys" / "node-0.key").read_text()
    with pytest.raises(LocalError, match="already holds a testnet"):
        write_cluster(spec, tmp_path)
    assert (tmp_path / "keys" / "node-0.key").read_text() == before


def test_defaults_are_merged_into_every_node(tmp_path: Path) -> None:
    definition = tmp_path / "c.toml"
    definition.write_text(
        "[cluster]\nvalidators = 2\naccounts = 1\n"
        '[defaults.peers]\ntarget = 3\n[defaults.log]\nlevel = "debug"\n[defaults.verify]\nworkers = 0\n'
    )
    spec = ClusterSpec.from_file(definition, full_nodes=1)
    testnet = write_cluster(spec, tmp_path / "out")
    assert len(testnet.nodes) == 3
    for node in testnet.nodes:
        cfg = load_config(node.config)
        assert (cfg.peers.target, cfg.log.level, cfg.log.format, cfg.verify.workers) == (
            3,
            "debug",
            "json",
            0,
        )


def test_flags_override_the_definition() -> None:
    spec = ClusterSpec.from_file(CONFIGS / "local-16.toml", full_nodes=2, base_port=0, accounts=None)
    assert (spec.validators, spec.full_nodes, spec.accounts, spec.base_port) == (4, 2, 16, 0)
    assert spec.defaults == {"peers": {"target": 6}, "verify": {"workers": 0}}


@pytest.mark.parametrize(
    ("name", "validators", "full_nodes", "accounts"),
    [("local-4", 4, 0, 16), ("local-7", 7, 2, 16), ("local-16", 4, 12, 16), ("local-64", 4, 60, 16)],
)
def test_shipped_definitions(name: str, validators: int, full_nodes: int, accounts: int) -> None:
    spec = ClusterSpec.from_file(CONFIGS / f"{name}.toml")
    assert (spec.validators, spec.full_nodes, spec.accounts) == (validators, full_nodes, accounts)
    assert spec.chain_name == name
    assert spec.balance == 1_000_000_000


def test_shipped_definition_generates(tmp_path: Path) -> None:
    spec = ClusterSpec.from_file(CONFIGS / "local-16.toml", base_port=0, accounts=1, shielded=False)
    testnet = write_cluster(spec, tmp_path)
    assert len(testnet.nodes) == 16
    assert load_config(tmp_path / "node-15.toml").peers.target == 6


def test_local_64_definition(tmp_path: Path) -> None:
    # The 64-node benchmark cluster: 4 validators and 60 full nodes on ports of their own, a modest
    # number of peers each, and bootstrap spread over the four validators.
    spec = ClusterSpec.from_file(CONFIGS / "local-64.toml")
    assert (spec.nodes, spec.validators, spec.full_nodes) == (64, 4, 60)
    ports = range(spec.base_port or 0, (spec.base_port or 0) + spec.nodes)
    for other in ("local-4", "local-7", "local-16"):
        theirs = ClusterSpec.from_file(CONFIGS / f"{other}.toml")
        assert theirs.base_port is not None
        assert not set(ports) & set(range(theirs.base_port, theirs.base_port + theirs.nodes)), other
    testnet = write_cluster(spec.with_overrides(base_port=0, accounts=1, shielded=False), tmp_path)
    assert len(testnet.nodes) == 64
    assert [n.role for n in testnet.nodes].count("validator") == 4
    validators = {n.address for n in testnet.nodes[:4]}
    seeds: dict[str, int] = {}
    for node in testnet.nodes:
        cfg = load_config(node.config)
        assert 4 <= cfg.peers.target <= cfg.peers.max_outbound
        assert cfg.peers.max_inbound + cfg.peers.max_outbound <= cfg.peers.max_connections <= 32
        (boot,) = cfg.node.bootstrap
        assert boot in validators
        if node.role == "full":
            seeds[boot] = seeds.get(boot, 0) + 1
    # Fifteen full nodes per validator: within one validator's burst of handshakes from new peers and
    # its inbound slots, so that none of them is turned away at start.
    assert sorted(seeds.values()) == [15, 15, 15, 15]
    assert 15 <= cfg.peers.handshake_burst and 15 + 3 <= cfg.peers.max_inbound


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[cluster]\nvalidators = 4\nbogus = 1\n", "cluster.bogus"),
        ("[cluster]\nvalidators = 4\n[extra]\n", "[extra]"),
        ('[cluster]\nvalidators = "4"\n', "cluster.validators"),
        ("[cluster]\nvalidators = true\n", "cluster.validators"),
        ("[cluster]\nvalidators = 4\nhost = 1\n", "cluster.host"),
        ("[cluster]\nvalidators = 4\n[defaults.gossip]\nbogus = 1\n", "gossip.bogus"),
        ("[cluster]\nvalidators = 4\n[defaults.peers]\ntarget = 0\n", "peers.target"),
        ('[cluster]\nvalidators = 4\n[defaults.node]\nlisten = "1.2.3.4:5"\n', "defaults.node"),
        ('[cluster]\nvalidators = 4\n[defaults.log]\nfile = "x.log"\n', "defaults.log.file"),
        ("[cluster]\nvalidators = 4\n[defaults.bogus]\nx = 1\n", "defaults.bogus"),
        ("[cluster]\nvalidators = 4\n[defaults]\nx = 1\n", "defaults.x"),
    ],
)
def test_bad_definition_names_the_key(tmp_path: Path, text: str, names: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_cluster_definition(path)
    assert names in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"validators": 0}, "validators"),
        ({"validators": 1000}, "validators"),
        ({"validators": 4, "full_nodes": -1}, "full_nodes"),
        ({"validators": 4, "accounts": -1}, "accounts"),
        ({"validators": 4, "balance": 2**64}, "balance"),
        ({"validators": 4, "accounts": 3, "balance": 2**63}, "total supply"),
        ({"validators": 4, "base_port": 65534}, "base_port"),
        ({"validators": 4, "host": "a b"}, "host"),
        ({"chain_name": ""}, "chain_name"),
        ({"defaults": {"peers": {"target": 0}}}, "peers.target"),
    ],
)
def test_bad_parameters(overrides: dict[str, object], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        ClusterSpec(**overrides).validate()  # type: ignore[arg-type]


def test_unknown_override() -> None:
    with pytest.raises(TypeError, match="bogus"):
        ClusterSpec().with_overrides(bogus=1)


def test_missing_definition_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        ClusterSpec.from_file(tmp_path / "absent.toml")


def test_malformed_cluster_file(tmp_path: Path) -> None:
    with pytest.raises(LocalError, match="no such file"):
        read_cluster(tmp_path)
    (tmp_path / "cluster.json").write_text('{"nodes": []}')
    with pytest.raises(LocalError, match="malformed cluster file"):
        read_cluster(tmp_path)
