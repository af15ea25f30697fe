"""Test-wide settings: structlog lines are built (so schema bugs surface) but not printed. The session
header says whether the circuit keys are cached; when a test has to make them (the first run of a fresh
clone, 65-80 s), the key setup's phase lines appear between the dots, past the output capture, and the
summary says how long it took."""

from __future__ import annotations

import logging
import time

import pytest
import structlog

structlog.configure(
    processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
    wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    logger_factory=structlog.ReturnLoggerFactory(),
    cache_logger_on_first_use=False,
)

pytest_plugins = ["pytester"]  # tests/unit/test_testing_plugin.py runs pytest on small test files


_KEY_LINES = pytest.StashKey[list[str]]()


def pytest_report_header(config: pytest.Config) -> str:
    try:
        from p2pnode.zk.setup import FIRST_SETUP_S, circuit_dir, keys_cached

        cached = keys_cached()
        where = circuit_dir()
    except Exception as exc:  # no toolchain, unreadable cache: the shielded tests say why themselves
        return f"p2pnode circuit keys: unknown ({type(exc).__name__}: {exc})"
    if cached is not None:
        return f"p2pnode circuit keys: cached in {cached}"
    return (
        f"p2pnode circuit keys: not made yet; the first test that needs them makes them in {where} "
        f"({FIRST_SETUP_S} s, once; progress lines below)"
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Under ``-q`` (``make test``) the header is not shown: say it anyway when keys are to be made."""
    if session.config.get_verbosity() >= 0 or not session.items:
        return
    header = pytest_report_header(session.config)
    reporter = session.config.pluginmanager.getplugin("terminalreporter")
    if reporter is not None and "not made yet" in header:
        reporter.write_line(header)


def pytest_configure(config: pytest.Config) -> None:
    from p2pnode.zk import setup

    lines: list[str] = []
    config.stash[_KEY_LINES] = lines

    def show(line: str) -> None:
        lines.append(f"{time.strftime('%H:%M:%S')} {line}")
        capture = config.pluginmanager.getplugin("capturemanager")
        reporter = config.pluginmanager.getplugin("terminalreporter")
        if capture is None or reporter is None:
            print(line, flush=True)
            return
        with capture.global_and_fixture_disabled():
            reporter.ensure_newline()  # not glued to the progress dots
            reporter.write_line(line)

    setup.set_default_log(show)


def pytest_unconfigure(config: pytest.Config) -> None:
    from p2pnode.zk import setup

    setup.set_default_log(None)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(_KEY_LINES, [])
    if lines:
        terminalreporter.write_sep("-", "p2pnode circuit keys made in this session")
        for line in lines:
            terminalreporter.write_line(line)
