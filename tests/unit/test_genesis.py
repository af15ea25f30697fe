"""Genesis files: the chain id is the hash of the exact bytes; malformed or ambiguous files are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pnode.errors import ConfigError
from p2pnode.genesis import chain_id_of, load_genesis, render_genesis

V1, V2, V3 = bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32
A1, A2 = bytes([0xA1]) * 20, bytes([0xA2]) * 20


def write(tmp_path: Path, text: str, name: str = "genesis.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def sample() -> str:
    return render_genesis("test", [("v3", V3), ("v1", V1), ("v2", V2)], [(A2, 5), (A1, 1000)])


def test_round_trip_sorted_and_hashed(tmp_path: Path) -> None:
    path = write(tmp_path, sample())
    g = load_genesis(path)
    assert g.chain_name == "test"
    assert [v.node_id for v in g.validators] == [V1, V2, V3]  # committee sorted by node id
    assert [v.name for v in g.validators] == ["v1", "v2", "v3"]
    assert g.balances == ((A1, 1000), (A2, 5))
    assert g.chain_id == chain_id_of(path.read_bytes())
    assert len(g.chain_id) == 32


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("balance = 1000", "balance = 1001"),  # one byte of a balance
        ('chain_name = "test"', 'chain_name = "tesu"'),  # one byte of the name
        ("\n\n[[accounts]]", "\n \n[[accounts]]"),  # whitespace: ids hash bytes, not meaning
    ],
)
def test_chain_id_changes_with_one_byte(tmp_path: Path, old: str, new: str) -> None:
    text = sample()
    assert old in text
    a = load_genesis(write(tmp_path, text, "a.toml"))
    b = load_genesis(write(tmp_path, text.replace(old, new, 1), "b.toml"))
    assert a.chain_id != b.chain_id


def test_same_bytes_same_chain_id(tmp_path: Path) -> None:
    text = sample()
    assert (
        load_genesis(write(tmp_path, text, "a.toml")).chain_id
        == load_genesis(write(tmp_path, text, "b.toml")).chain_id
    )


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (render_genesis("x", [("a", V1), ("b", V1)], []), "duplicate node_id"),
        (render_genesis("x", [("a", V1)], [(A1, 1), (A1, 2)]), "duplicate account"),
        (render_genesis("x", [], [(A1, 1)]), "at least one validator"),
        (render_genesis("x", [("a", V1)], [(A1, 2**64)]), "balance"),
        (render_genesis("x", [("a", V1)], [(A1, 2**63), (A2, 2**63)]), "total supply"),
        (render_genesis("x", [("a", V1[:31])], []), "validators[0].node_id"),
        (render_genesis("x", [("a", V1)], [(A1[:19], 1)]), "accounts[0].address"),
        ('chain_name = "x"\nextra = 1\n', "unknown key extra"),
        ('chain_name = "x"\n[[validators]]\nname = "a"\nnode_id = "zz"\n', "not hex"),
        ('chain_name = 5\n[[validators]]\nname = "a"\nnode_id = "' + V1.hex() + '"\n', "chain_name"),
    ],
)
def test_refused(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match.replace("[", r"\[").replace("]", r"\]")):
        load_genesis(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such genesis file"):
        load_genesis(tmp_path / "absent.toml")
