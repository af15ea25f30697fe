"""Layers import one way (DESIGN.md §7): every import of every module, lazy ones included, points down.

    cli  >  sim  >  tools, scenario  >  testing  >  localnet  >  client  >  net  >  store, zk
         >  core, genesis  >  crypto, wire, config, logs  >  errors

A module may import its own package and any package of a lower rank, never one of its own rank or
above. ``p2pnode/__main__.py`` is the one entry point above the CLI. The core's freedom from I/O is
pinned separately (tests/unit/test_core_purity.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "p2pnode"

RANK = {
    "errors": 0,
    "crypto": 1,
    "wire": 1,
    "config": 1,
    "logs": 1,
    "core": 2,
    "genesis": 2,
    "store": 3,
    "zk": 3,
    "net": 4,
    "client": 5,
    "localnet": 6,
    "testing": 7,
    "tools": 8,
    "scenario": 8,
    "sim": 9,
    "cli": 10,
    "__main__": 11,
    "__init__": 0,
}


def _layer(module: str) -> str:
    """``p2pnode.net.node`` -> ``net``; ``p2pnode`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "p2pnode":  # from p2pnode import logs
                out += [(node.lineno, f"p2pnode.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, node.module))
    return [(line, m) for line, m in out if m == "p2pnode" or m.startswith("p2pnode.")]


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "node_modules" not in p.parts)


def _own_layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_every_package_has_a_rank() -> None:
    layers = {_own_layer(p) for p in _modules()}
    assert layers <= set(RANK), f"give these a rank in DESIGN.md's order: {sorted(layers - set(RANK))}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    here = _own_layer(path)
    bad = []
    for line, module in _imports(path):
        there = _layer(module)
        if there == here:
            continue
        if RANK.get(there, 99) >= RANK[here]:
            bad.append(
                f"line {line}: {module} ({there}, rank {RANK.get(there)}) from {here} (rank {RANK[here]})"
            )
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_nothing_outside_the_cli_imports_it() -> None:
    offenders = [
        f"{p.relative_to(PACKAGE)}:{line}"
        for p in _modules()
        if _own_layer(p) not in ("cli", "__main__")
        for line, module in _imports(p)
        if _layer(module) == "cli"
    ]
    assert offenders == []


def test_scripts_wrap_the_library_not_the_cli() -> None:
    scripts = PACKAGE.parent / "scripts"
    offenders = [
        f"{p.name}:{line}"
        for p in sorted(scripts.glob("*.py"))
        for line, m in _imports(p)
        if _layer(m) == "cli"
    ]
    assert offenders == []


def test_tools_have_no_argument_parsing() -> None:
    for p in _modules():
        if _own_layer(p) in ("tools", "scenario"):
            assert "argparse" not in {m for _, m in _imports_any(p)}, (
                f"{p.name} parses arguments: move it to cli/"
            )


def _imports_any(path: Path) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.lineno, node.module))
    return out
