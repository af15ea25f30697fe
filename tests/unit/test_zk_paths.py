"""Where the shielded pool's files are found: flags, environment, a source checkout, the user cache."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from p2pnode.config import ZkEnvironment, zk_environment
from p2pnode.errors import LocalError
from p2pnode.zk import paths as zk_paths
from p2pnode.zk.paths import (
    PINNED_TOOLS,
    ZkPaths,
    add_zk_path_args,
    find_checkout,
    find_zk_paths,
    package_file,
    zk_paths_from_args,
)
from p2pnode.zk.setup import CIRCUIT_NAME, circuit_dir, ensure_circuit_keys

REPO = Path(__file__).resolve().parents[2]


def make_checkout(root: Path) -> Path:
    (root / "p2pnode").mkdir(parents=True)
    deps = {"circom2": "0.2.23", "snarkjs": "0.7.6"}
    (root / "package.json").write_text(json.dumps({"dependencies": deps}))
    return root


def make_toolchain(node_modules: Path, versions: dict[str, str] | None = None) -> Path:
    (node_modules / ".bin").mkdir(parents=True)
    for tool in ("circom2", "snarkjs"):
        (node_modules / ".bin" / tool).write_text("")
    (node_modules / "circomlib" / "circuits").mkdir(parents=True)
    for name, version in (versions or {}).items():
        (node_modules / name).mkdir(exist_ok=True)
        (node_modules / name / "package.json").write_text(json.dumps({"version": version}))
    return node_modules


# -- shipped files and pins ---------------------------------------------------------------------------------
def test_circuits_and_helper_ship_inside_the_package() -> None:
    circuit = package_file("circuits", f"{CIRCUIT_NAME}.circom")
    assert circuit.is_file() and circuit.is_relative_to(REPO / "p2pnode" / "zk")
    assert package_file("prover.js").is_file()
    with pytest.raises(LocalError, match="missing from the installed package"):
        package_file("circuits", "nonexistent.circom")


def test_pinned_tools_agree_with_package_json() -> None:
    assert json.loads((REPO / "package.json").read_text())["dependencies"] == PINNED_TOOLS


def test_pyproject_ships_the_package_data() -> None:
    text = (REPO / "pyproject.toml").read_text()
    assert '"p2pnode.zk" = ["prover.js", "circuits/*.circom"]' in text


# -- environment (read in p2pnode.config only) -------------------------------------------------------------
def test_environment_variables(tmp_path: Path) -> None:
    env = zk_environment(
        {"P2PNODE_NODE_MODULES": str(tmp_path / "nm"), "P2PNODE_ZK_CACHE": "", "XDG_CACHE_HOME": "/x/cache"}
    )
    assert env == ZkEnvironment(node_modules=tmp_path / "nm", cache=None, user_cache=Path("/x/cache"))
    # A relative XDG_CACHE_HOME is invalid by the XDG rule: ~/.cache is used instead.
    env = zk_environment({"XDG_CACHE_HOME": "rel/cache", "HOME": "/home/u"})
    assert env.user_cache == Path("/home/u/.cache")
    assert zk_environment({"P2PNODE_ZK_CACHE": "rel"}).cache == Path.cwd() / "rel"


def test_no_module_but_config_reads_the_environment() -> None:
    for path in (REPO / "p2pnode").rglob("*.py"):
        if path.name != "config.py":
            text = path.read_text()
            assert "os.environ" not in text and "getenv" not in text, path


# -- resolution order ----------------------------------------------------------------------------------------
def test_source_checkout_defaults(tmp_path: Path) -> None:
    root = make_checkout(tmp_path / "repo")
    (root / "p2pnode" / "zk").mkdir()
    p = find_zk_paths(env=ZkEnvironment(user_cache=tmp_path / "uc"), search=[root / "p2pnode" / "zk"])
    nm, cache = root / "node_modules", root / "build" / "zk"
    assert p == ZkPaths(node_modules=nm, cache=cache, install_dir=root, checkout=root)
    assert find_checkout(REPO / "p2pnode" / "zk") == REPO


def test_outside_a_checkout_the_user_cache(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text(json.dumps({"dependencies": {"snarkjs": "1"}}))  # no p2pnode/
    p = find_zk_paths(env=ZkEnvironment(user_cache=tmp_path / "uc"), search=[tmp_path])
    assert p.checkout is None
    assert p.cache == tmp_path / "uc" / "p2pnode" / "zk"
    assert p.node_modules == tmp_path / "uc" / "p2pnode" / "toolchain" / "node_modules"
    with pytest.raises(LocalError, match="no home directory"):
        find_zk_paths(env=ZkEnvironment(), search=[tmp_path])


def test_flags_win_over_environment_over_checkout(tmp_path: Path) -> None:
    root = make_checkout(tmp_path / "repo")
    env = ZkEnvironment(node_modules=tmp_path / "env-nm", cache=tmp_path / "env-cache", user_cache=tmp_path)
    p = find_zk_paths(env=env, search=[root])
    assert (p.node_modules, p.cache) == (tmp_path / "env-nm" / "node_modules", tmp_path / "env-cache")
    p = find_zk_paths(toolchain=tmp_path / "flag", cache=tmp_path / "flag-cache", env=env, search=[root])
    assert (p.node_modules, p.cache) == (tmp_path / "flag" / "node_modules", tmp_path / "flag-cache")


def test_toolchain_dir_is_node_modules_or_its_parent(tmp_path: Path) -> None:
    nm = make_toolchain(tmp_path / "tools" / "node_modules")
    env = ZkEnvironment(user_cache=tmp_path)
    for given in (tmp_path / "tools", nm):
        assert find_zk_paths(toolchain=given, env=env, search=[]).node_modules == nm
    odd = make_toolchain(tmp_path / "npm-prefix")  # a node_modules under another name
    assert find_zk_paths(toolchain=odd, env=env, search=[]).node_modules == odd


def test_flags_parse_into_paths(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_zk_path_args(parser)
    args = parser.parse_args(["--zk-toolchain", str(tmp_path / "t"), "--zk-cache", str(tmp_path / "c")])
    p = zk_paths_from_args(args)
    assert (p.node_modules, p.cache) == (tmp_path / "t" / "node_modules", tmp_path / "c")


# -- the toolchain check -------------------------------------------------------------------------------------
def test_missing_toolchain_is_one_line_naming_flag_and_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zk_paths.shutil, "which", lambda name: "/usr/bin/node")
    p = find_zk_paths(env=ZkEnvironment(user_cache=tmp_path), search=[])
    with pytest.raises(LocalError) as info:
        p.toolchain()
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("shielded pool needs the Node.js toolchain")
    assert "npm install circom2@0.2.23 circomlib@2.0.5 snarkjs@0.7.6" in msg
    assert str(tmp_path / "p2pnode" / "toolchain") in msg
    assert "--zk-toolchain" in msg and "P2PNODE_NODE_MODULES" in msg and "--no-shielded" in msg
    # In a checkout the fix is npm ci in the checkout.
    root = make_checkout(tmp_path / "repo")
    with pytest.raises(LocalError, match=rf"run `npm ci` in {root} or pass --zk-toolchain"):
        find_zk_paths(env=ZkEnvironment(user_cache=tmp_path), search=[root]).toolchain()


def test_missing_node_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zk_paths.shutil, "which", lambda name: None)
    make_toolchain(tmp_path / "node_modules")
    with pytest.raises(LocalError, match="node .*not found on PATH"):
        find_zk_paths(toolchain=tmp_path, env=ZkEnvironment(user_cache=tmp_path), search=[]).toolchain()


def test_complete_toolchain_and_its_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zk_paths.shutil, "which", lambda name: "/usr/bin/node")
    nm = make_toolchain(tmp_path / "node_modules", {"snarkjs": "0.7.9"})
    p = find_zk_paths(toolchain=tmp_path, env=ZkEnvironment(user_cache=tmp_path), search=[])
    tools = p.toolchain()
    assert tools.node == Path("/usr/bin/node")
    assert (tools.snarkjs, tools.circom) == (nm / ".bin" / "snarkjs", nm / ".bin" / "circom2")
    assert p.tool_versions() == {**PINNED_TOOLS, "snarkjs": "0.7.9"}
    # Other tool versions make other keys: the cache directory differs from the pinned tools' one.
    pinned = find_zk_paths(toolchain=tmp_path / "none", cache=p.cache, env=ZkEnvironment(), search=[])
    assert circuit_dir(p) != circuit_dir(pinned)


def test_cached_keys_need_no_toolchain(tmp_path: Path) -> None:
    p = find_zk_paths(toolchain=tmp_path / "absent", cache=tmp_path / "cache", env=ZkEnvironment(), search=[])
    out = circuit_dir(p)
    out.mkdir(parents=True)
    for name in (f"{CIRCUIT_NAME}.wasm", f"{CIRCUIT_NAME}.zkey", "verification_key.json", "README.txt"):
        (out / name).write_text("x")
    assert ensure_circuit_keys(p) == out
    (out / "README.txt").unlink()
    with pytest.raises(LocalError, match="shielded pool needs the Node.js toolchain"):
        ensure_circuit_keys(p)


def test_checkout_cache_name_is_stable() -> None:
    # The name of the repository's cached keys (build/zk/shielded-<hash>) does not depend on where the
    # toolchain is, only on the circuit source and the tool versions, which are pinned here.
    a = find_zk_paths(toolchain=Path("/nonexistent"), cache=Path("/c"), env=ZkEnvironment(), search=[])
    b = find_zk_paths(cache=Path("/c"), env=ZkEnvironment(), search=[REPO])
    if (b.node_modules / "snarkjs" / "package.json").exists():
        assert b.tool_versions() == PINNED_TOOLS, "installed npm packages differ from package.json: npm ci"
    assert circuit_dir(a) == circuit_dir(b)


def test_circuit_compiles_outside_the_checkout(tmp_path: Path) -> None:
    # circom2 (WASI) sees only what lies below its working directory: a work directory under /tmp and a
    # node_modules elsewhere (here possibly a symbolic link) must still compile. About 2 to 7 s.
    from p2pnode.zk.setup import _compile, _r1cs_size

    try:
        tools = find_zk_paths(search=[REPO]).toolchain()
    except LocalError as exc:
        pytest.skip(str(exc))
    work = tmp_path / "work"
    work.mkdir()
    r1cs = _compile(tools, work)
    assert _r1cs_size(r1cs) > 1000
    assert (work / f"{CIRCUIT_NAME}_js" / f"{CIRCUIT_NAME}.wasm").is_file()
