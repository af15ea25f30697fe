"""Layering, checked on the source: wire types -> core -> net -> cli, and a core without I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "p2pnode"
CORE_FILES = sorted((PACKAGE / "core").rglob("*.py"))
WIRE_FILES = sorted((PACKAGE / "wire").rglob("*.py"))

# I/O, clocks, logging and encoding belong to the driver; ``random`` is allowed because the core only
# uses an injected ``random.Random`` instance (checked below).
CORE_FORBIDDEN = {"trio", "socket", "time", "structlog", "msgpack", "asyncio", "sqlite3", "prometheus_client"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    return imports_in(path.read_text(), module_name(path), is_package=path.name == "__init__.py")


def imports_in(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module ``source`` imports, anywhere in it (functions included), relative imports resolved."""
    tree = ast.parse(source)
    package = module.split(".")
    if not is_package:
        package.pop()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            # ``from p2pnode import net`` imports the submodule p2pnode.net.
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def under(name: str, packages: set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_the_packages_are_found() -> None:
    assert {p.name for p in CORE_FILES} >= {"ledger.py", "validator.py", "gossip.py", "committee.py"}
    assert {p.name for p in WIRE_FILES} >= {"codec.py", "messages.py"}


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_does_no_io(path: Path) -> None:
    bad = {m for m in imported_modules(path) if under(m, CORE_FORBIDDEN)}
    assert not bad, f"{path.name} imports {sorted(bad)}"
    # ``importlib`` / ``__import__`` would get around the check above.
    assert not {m for m in imported_modules(path) if under(m, {"importlib"})}
    assert "__import__" not in path.read_text()


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_uses_only_an_injected_rng(path: Path) -> None:
    """``random.Random`` (a type, for an injected instance) is fine; module-level ``random.x()`` is not."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "random":
            assert [a.name for a in node.names] == ["Random"], f"{path.name}: from random import ..."
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "random":
            assert node.attr == "Random", f"{path.name}:{node.lineno} uses random.{node.attr}"


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_imports_no_outer_layer(path: Path) -> None:
    bad = {m for m in imported_modules(path) if under(m, {"p2pnode.net", "p2pnode.cli", "p2pnode.store"})}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", WIRE_FILES, ids=lambda p: p.name)
def test_wire_imports_nothing_above_it(path: Path) -> None:
    bad = {m for m in imported_modules(path) if under(m, {"p2pnode.core", "p2pnode.net", "p2pnode.cli"})}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_import_scanner_sees_what_it_must() -> None:
    """The checks above are only as good as ``imported_modules``; pin it on the tricky forms."""
    source = (
        "import time\n"
        "from . import effects\n"
        "from ..net import node\n"
        "from p2pnode import cli\n"
        "def f():\n"
        "    import trio.lowlevel\n"
    )
    names = imports_in(source, "p2pnode.core.probe")
    assert {"time", "p2pnode.core.effects", "p2pnode.net", "p2pnode.cli", "trio.lowlevel"} <= names
    assert under("trio.lowlevel", CORE_FORBIDDEN)
