"""Node config loading: every failure is a ConfigError that names the key; configs/defaults.toml documents
exactly the keys the loader knows, with their real defaults."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from p2pnode.config import NodeConfig, NodeSection, config_from_dict, load_config, parse_hostport
from p2pnode.errors import ConfigError

DEFAULTS = Path(__file__).resolve().parents[2] / "configs" / "defaults.toml"
NODE = """
[node]
key_file = "keys/node-0.key"
genesis = "genesis.toml"
data_dir = "data/node-0"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_config_loads_with_defaults_and_resolves_paths(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, NODE))
    assert cfg.node.key_file == tmp_path / "keys/node-0.key"
    assert cfg.node.genesis == tmp_path / "genesis.toml"
    assert cfg.node.listen == "127.0.0.1:7000"
    assert cfg.peers.target == 8
    assert cfg.source == tmp_path / "node.toml"


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ("[gossip]\nbogus = 1\n", "gossip.bogus"),
        ("[bogus]\nx = 1\n", "[bogus]"),
        ('[gossip]\neager_fanout = "three"\n', "gossip.eager_fanout"),
        ("[gossip]\neager_fanout = 1.5\n", "gossip.eager_fanout"),
        ("[peers]\ntarget = 0\n", "peers.target"),
        ("[limits]\nmax_frame = 100\n", "limits.max_frame"),
        ("[verify]\ncertificate_proofs = 1\n", "verify.certificate_proofs"),
        ('[log]\nformat = "xml"\n', "log.format"),
        ("[peers]\ndial_backoff_min_ms = 500\ndial_backoff_max_ms = 100\n", "peers.dial_backoff_max_ms"),
        ("[node.extra]\nx = 1\n", "node.extra"),
    ],
)
def test_bad_key_or_value_names_the_key(tmp_path: Path, extra: str, names: str) -> None:
    path = write(tmp_path, NODE + extra)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert names in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("line", "names"),
    [
        ('listen = "localhost"', "node.listen"),
        ('listen = "127.0.0.1:99999"', "node.listen"),
        ('listen = ":7000"', "node.listen"),
        ('bootstrap = ["127.0.0.1:7001", "127.0.0.1:x"]', "node.bootstrap[1]"),
        ('bootstrap = "127.0.0.1:7001"', "node.bootstrap"),
    ],
)
def test_bad_host_port_names_the_key(tmp_path: Path, line: str, names: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(names)):
        load_config(write(tmp_path, NODE + line + "\n"))


def test_section_that_is_not_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("[gossip]")):
        load_config(write(tmp_path, "gossip = 3\n" + NODE))


def test_missing_required_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="node.data_dir"):
        load_config(write(tmp_path, NODE.replace('data_dir = "data/node-0"\n', "")))


def test_missing_node_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("[node]")):
        load_config(write(tmp_path, "[peers]\ntarget = 3\n"))


def test_missing_file_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write(tmp_path, "[node\n"))
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_parse_hostport() -> None:
    assert parse_hostport("127.0.0.1:7000") == ("127.0.0.1", 7000)
    assert parse_hostport("[::1]:7000") == ("[::1]", 7000)
    for bad in ("", "7000", "host:", "host:0", "host:65536", "host:-1"):
        with pytest.raises(ConfigError, match="--node"):
            parse_hostport(bad, key="--node")


# -- configs/defaults.toml ----------------------------------------------------------------------------
def _documented_keys(text: str) -> dict[str, set[str]]:
    """Keys per section, set (``key = v``) or documented as a commented-out line (``# key = v``)."""
    out: dict[str, set[str]] = {}
    section = ""
    for line in text.splitlines():
        if m := re.match(r"^\[(\w+)\]", line):
            section = m.group(1)
            out.setdefault(section, set())
        elif m := re.match(r"^#?\s*(\w+) = ", line):
            out[section].add(m.group(1))
    return out


def test_defaults_toml_documents_exactly_the_config_keys() -> None:
    documented = _documented_keys(DEFAULTS.read_text(encoding="utf-8"))
    sections = {f.name: f.type for f in dataclasses.fields(NodeConfig) if f.name != "source"}
    assert set(documented) == set(sections)
    for name in sections:
        section_cls = type(getattr(NodeConfig(node=_node()), name))
        assert documented[name] == {f.name for f in dataclasses.fields(section_cls)}, name


def test_defaults_toml_values_are_the_defaults() -> None:
    data = tomllib.loads(DEFAULTS.read_text(encoding="utf-8"))
    data["node"].update(key_file="k", genesis="g", data_dir="d")
    cfg = config_from_dict(data, Path("/base"))
    expected = NodeConfig(node=_node())
    for f in dataclasses.fields(NodeConfig):
        if f.name not in ("node", "source"):
            assert getattr(cfg, f.name) == getattr(expected, f.name), f.name
    assert cfg.node == expected.node


def _node() -> NodeSection:
    return NodeSection(key_file=Path("/base/k"), genesis=Path("/base/g"), data_dir=Path("/base/d"))
