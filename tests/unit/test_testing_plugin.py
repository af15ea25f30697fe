"""The pytest plugin of p2pnode.testing, as a user's test suite sees it (run with pytester)."""

from __future__ import annotations

import pytest

USER_TESTS = '''
import pytest
import trio

@pytest.mark.p2pnode_cluster(validators=4, accounts=2)
async def test_marker_configures_the_cluster(p2pnode_memory_cluster, autojump_clock):
    assert len(p2pnode_memory_cluster.validators) == 4 and len(p2pnode_memory_cluster.accounts) == 2
    assert (await p2pnode_memory_cluster.pay(0, 1, 5)).settled

@pytest.mark.parametrize("p2pnode_memory_cluster", [{"validators": 7, "accounts": 1}], indirect=True)
async def test_indirect_parametrization(p2pnode_memory_cluster, autojump_clock):
    assert len(p2pnode_memory_cluster.nodes) == 7

@pytest.mark.p2pnode_cluster(validators=4, accounts=2)
async def test_that_fails(p2pnode_memory_cluster, autojump_clock):
    await p2pnode_memory_cluster.pay(0, 1, 5)
    assert False, "deliberate"
'''


def test_fixtures_marker_and_log_tails_on_failure(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-q")  # the plugin loads through its entry point
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    # The failed test's report has one section per node with the tail of its JSON log.
    for i in range(4):
        assert f"p2pnode node-{i} log (last 20 lines)" in out
    assert '"event": "certificate_applied"' in out


def test_the_plugin_is_registered_by_the_package() -> None:
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert names.get("p2pnode") == "p2pnode.testing.plugin"
