"""Where the shielded pool's files are: the package's own data, the Node.js toolchain, the key cache.

Shipped with the package (found with :mod:`importlib.resources`, never relative to a checkout):
``p2pnode/zk/circuits/*.circom`` and the prover helper ``p2pnode/zk/prover.js``.

Not shipped, found by :func:`find_zk_paths` in this order (the first that gives an answer wins):

* the Node.js toolchain (a ``node_modules`` holding ``circom2``, ``snarkjs`` and ``circomlib``):
  ``--zk-toolchain DIR``; ``$P2PNODE_NODE_MODULES``; the source checkout's ``node_modules``; else
  ``<user cache>/p2pnode/toolchain/node_modules``, where nobody put anything unless told to by the error.
  ``DIR`` may be the ``node_modules`` directory itself or the directory holding it.
* the circuit-key cache: ``--zk-cache DIR``; ``$P2PNODE_ZK_CACHE``; the checkout's ``build/zk``; else
  ``<user cache>/p2pnode/zk``. The user cache is ``$XDG_CACHE_HOME`` or ``~/.cache``.

A source checkout is the nearest directory, walking up from this package and then from the current
directory, whose ``package.json`` names ``circom2`` or ``snarkjs`` and that holds a ``p2pnode`` package
directory. An installed wheel has none (unless run from inside a checkout), so it uses the user cache.
Environment variables are read by :func:`p2pnode.config.zk_environment`, not here.

Error handling: :meth:`ZkPaths.toolchain` raises :class:`~p2pnode.errors.LocalError` with one line
naming what is missing, the command that installs it, the flag and the variable. Nothing here starts a
process or writes a file.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from p2pnode.config import ENV_NODE_MODULES, ENV_ZK_CACHE, ZkEnvironment, zk_environment
from p2pnode.errors import LocalError

__all__ = [
    "PINNED_TOOLS",
    "Toolchain",
    "ZkPaths",
    "add_zk_path_args",
    "find_checkout",
    "find_zk_paths",
    "package_file",
    "zk_paths_from_args",
]

# The npm packages and versions the circuit keys are made with; the repository's package.json pins the
# same (a unit test checks that they agree).
PINNED_TOOLS: dict[str, str] = {"circom2": "0.2.23", "circomlib": "2.0.5", "snarkjs": "0.7.6"}
TOOLCHAIN_FLAG = "--zk-toolchain"
CACHE_FLAG = "--zk-cache"
_NPM_INSTALL = "npm install " + " ".join(f"{name}@{v}" for name, v in PINNED_TOOLS.items())


def package_file(*parts: str) -> Path:
    """A file shipped in ``p2pnode.zk`` (e.g. ``package_file("circuits", "shielded.circom")``).

    The Node.js tools need real files, so a package imported from a zip archive raises ``LocalError``.
    """
    res = resources.files("p2pnode.zk").joinpath(*parts)
    if not isinstance(res, Path):
        where = "/".join(parts)
        raise LocalError(f"p2pnode.zk/{where}: the package must be installed unpacked, not as a zip")
    if not res.exists():
        raise LocalError(f"{res}: missing from the installed package (reinstall p2pnode)")
    return res


def _names_zk_tools(package_json: Path) -> bool:
    try:
        doc = json.loads(package_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(doc, dict):
        return False
    names: set[str] = set()
    for key in ("dependencies", "devDependencies"):
        deps = doc.get(key)
        if isinstance(deps, dict):
            names.update(deps)
    return bool(names & {"circom2", "snarkjs"})


def find_checkout(*starts: Path) -> Path | None:
    """The nearest source checkout at or above any of ``starts`` (tried in order), or ``None``."""
    for start in starts:
        start = start.resolve()
        for d in (start, *start.parents):
            if (d / "p2pnode").is_dir() and _names_zk_tools(d / "package.json"):
                return d
    return None


def _as_node_modules(d: Path) -> Path:
    """``d`` if it is a ``node_modules`` directory, else ``d/node_modules``."""
    if d.name == "node_modules" or ((d / ".bin").is_dir() and not (d / "node_modules").exists()):
        return d
    return d / "node_modules"


@dataclass(frozen=True, slots=True, kw_only=True)
class Toolchain:
    """A usable toolchain: ``node`` on PATH and the npm packages in ``node_modules``."""

    node: Path
    node_modules: Path
    circom: Path
    snarkjs: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class ZkPaths:
    """Where the toolchain is expected and where circuit keys are cached (see the module docstring).

    ``node_modules`` need not exist: :meth:`toolchain` checks it. ``install_dir`` is where the error
    message tells the user to install the npm packages; ``checkout`` is the source checkout the
    defaults came from, if any.
    """

    node_modules: Path
    cache: Path
    install_dir: Path
    checkout: Path | None = None

    def tool_versions(self) -> dict[str, str]:
        """The installed versions of :data:`PINNED_TOOLS` (the pinned ones where not installed): part of
        the key cache's directory name, so that other tools never reuse keys made by these."""
        versions = dict(PINNED_TOOLS)
        for name in versions:
            try:
                doc = json.loads((self.node_modules / name / "package.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and isinstance(doc.get("version"), str):
                versions[name] = doc["version"]
        return versions

    def toolchain(self) -> Toolchain:
        """The toolchain, checked; ``LocalError`` (one line, naming the fix) if anything is missing."""
        node = shutil.which("node")
        if node is None:
            raise LocalError(
                "shielded pool needs the Node.js toolchain: node (Node.js >= 18) not found on PATH; "
                "install it (or use --no-shielded, which needs none)"
            )
        circom = self.node_modules / ".bin" / "circom2"
        snarkjs = self.node_modules / ".bin" / "snarkjs"
        missing = [
            name
            for name, present in (
                ("circom2", circom.exists()),
                ("snarkjs", snarkjs.exists()),
                ("circomlib", (self.node_modules / "circomlib" / "circuits").is_dir()),
            )
            if not present
        ]
        if missing:
            how = "npm ci" if self.install_dir == self.checkout else _NPM_INSTALL
            raise LocalError(
                f"shielded pool needs the Node.js toolchain ({', '.join(missing)} not in "
                f"{self.node_modules}): "
                f"run `{how}` in {self.install_dir} or pass {TOOLCHAIN_FLAG} DIR "
                f"(or set {ENV_NODE_MODULES}); --no-shielded needs none"
            )
        return Toolchain(node=Path(node), node_modules=self.node_modules, circom=circom, snarkjs=snarkjs)


def find_zk_paths(
    *,
    toolchain: Path | None = None,
    cache: Path | None = None,
    env: ZkEnvironment | None = None,
    search: Sequence[Path] | None = None,
) -> ZkPaths:
    """Resolve the toolchain and cache locations: arguments (the command-line flags), then ``env``
    (default: :func:`p2pnode.config.zk_environment`), then a source checkout at or above one of
    ``search`` (default: this package's directory, then the current directory), then the user cache.

    ``LocalError`` only when nothing gives a cache directory (no checkout, no home directory).
    """
    env = zk_environment() if env is None else env
    checkout = find_checkout(*(search if search is not None else (Path(__file__).parent, Path.cwd())))
    user = env.user_cache / "p2pnode" if env.user_cache is not None else None

    tool_dir = toolchain or env.node_modules
    if tool_dir is not None:
        node_modules = _as_node_modules(Path(tool_dir).expanduser().absolute())
        install_dir = node_modules.parent
    elif checkout is not None:
        node_modules, install_dir = checkout / "node_modules", checkout
    elif user is not None:
        install_dir = user / "toolchain"
        node_modules = install_dir / "node_modules"
    else:
        install_dir = Path.cwd()
        node_modules = install_dir / "node_modules"

    cache_dir = cache or env.cache
    if cache_dir is not None:
        cache_dir = Path(cache_dir).expanduser().absolute()
    elif checkout is not None:
        cache_dir = checkout / "build" / "zk"
    elif user is not None:
        cache_dir = user / "zk"
    else:
        raise LocalError(
            f"no directory for the circuit-key cache (no home directory): pass {CACHE_FLAG} DIR "
            f"or set {ENV_ZK_CACHE}"
        )
    return ZkPaths(node_modules=node_modules, cache=cache_dir, install_dir=install_dir, checkout=checkout)


def add_zk_path_args(parser: argparse.ArgumentParser) -> None:
    """``--zk-toolchain`` and ``--zk-cache``, for the commands that make keys or proofs."""
    parser.add_argument(
        TOOLCHAIN_FLAG,
        type=Path,
        metavar="DIR",
        help=f"node_modules with circom2, snarkjs, circomlib, or the directory holding it "
        f"(default ${ENV_NODE_MODULES}, else the source checkout's)",
    )
    parser.add_argument(
        CACHE_FLAG,
        type=Path,
        metavar="DIR",
        help=f"circuit-key cache (default ${ENV_ZK_CACHE}, else the checkout's build/zk, "
        "else ~/.cache/p2pnode/zk)",
    )


def zk_paths_from_args(args: argparse.Namespace) -> ZkPaths:
    """:func:`find_zk_paths` with the flags of :func:`add_zk_path_args` (absent flags count as unset)."""
    return find_zk_paths(toolchain=getattr(args, "zk_toolchain", None), cache=getattr(args, "zk_cache", None))
