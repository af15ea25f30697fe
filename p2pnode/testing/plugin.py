"""The pytest plugin (registered through the ``pytest11`` entry point): cluster fixtures for users' tests.

Fixtures (async; they need pytest-trio, as every Trio test does):

- ``p2pnode_memory_cluster``: a :class:`~p2pnode.testing.memory.MemoryCluster` (use it together with
  pytest-trio's ``autojump_clock`` fixture for virtual time).
- ``p2pnode_local_cluster``: a :class:`~p2pnode.testing.local.LocalCluster` of real node processes.

Both take their arguments from the marker ``@pytest.mark.p2pnode_cluster(validators=4, accounts=3, …)``
(the keyword arguments of :func:`~p2pnode.testing.open_memory_cluster` /
:func:`~p2pnode.testing.open_local_cluster`), or from indirect parametrization
(``@pytest.mark.parametrize("p2pnode_local_cluster", [{"validators": 7}], indirect=True)``).

``--p2pnode-keep`` keeps every local cluster's directory (a failed test's directory is always kept and
named). When a test fails, its report gets one section per node with the tail of the node's log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from p2pnode.testing.cluster import Cluster

MARKER = "p2pnode_cluster"
_CLUSTERS = pytest.StashKey[list[Cluster]]()
LOG_TAIL_LINES = 20


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("p2pnode")
    group.addoption(
        "--p2pnode-keep",
        action="store_true",
        default=False,
        help="keep the directories of p2pnode local clusters (logs, databases) after the tests",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**kwargs): arguments of the p2pnode cluster fixtures (validators, accounts, …)",
    )


def _arguments(request: pytest.FixtureRequest) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keyword arguments only")
        kwargs.update(marker.kwargs)
    param = getattr(request, "param", None)
    if param is not None:
        if not isinstance(param, dict):
            raise pytest.UsageError(
                "indirect parameters of a p2pnode cluster fixture must be dicts of arguments"
            )
        kwargs.update(param)
    return kwargs


def _track(request: pytest.FixtureRequest, cluster: Cluster) -> None:
    request.node.stash.setdefault(_CLUSTERS, []).append(cluster)


@pytest.fixture
async def p2pnode_memory_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    from p2pnode.testing.memory import open_memory_cluster

    kwargs = _arguments(request)
    kwargs.setdefault("log_dir", tmp_path / "p2pnode-logs")  # for the failure report's log tails
    async with open_memory_cluster(**kwargs) as cluster:
        _track(request, cluster)
        yield cluster


@pytest.fixture
async def p2pnode_local_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    from p2pnode.testing.local import open_local_cluster

    kwargs = _arguments(request)
    kwargs.setdefault("directory", tmp_path / "p2pnode-cluster")
    kwargs.setdefault("keep", bool(request.config.getoption("--p2pnode-keep")))
    async with open_local_cluster(**kwargs) as cluster:
        _track(request, cluster)
        yield cluster


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.failed:
        return
    for cluster in item.stash.get(_CLUSTERS, []):
        where = getattr(cluster, "directory", None)
        if where is not None:
            report.sections.append(("p2pnode cluster directory", f"kept: {where}"))
        for name, lines in cluster.log_tails(LOG_TAIL_LINES).items():
            report.sections.append((f"p2pnode {name} log (last {LOG_TAIL_LINES} lines)", "\n".join(lines)))
