"""Test-wide settings: structlog lines are built (so schema bugs surface) but not printed."""

from __future__ import annotations

import logging

import structlog

structlog.configure(
    processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
    wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    logger_factory=structlog.ReturnLoggerFactory(),
    cache_logger_on_first_use=False,
)

pytest_plugins = ["pytester"]  # tests/unit/test_testing_plugin.py runs pytest on small test files
