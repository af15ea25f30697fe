"""structlog, configured once per process.

Every line is one JSON object with ``ts_ns`` (wall clock, nanoseconds since the epoch), ``level``,
``event`` and the bound context (``node``, ``node_id``; ``peer`` and ``tx`` where they apply). The
event names and fields are the interface of ``p2pnode latency``; ``docs/logs.md`` documents them and
a test pins them. On a terminal (``format = "auto"``) a console renderer is used instead.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_sink: TextIO | None = None


def _add_ts_ns(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event_dict["ts_ns"] = time.time_ns()
    return event_dict


def configure(*, file: Path | None, fmt: str = "auto", level: str = "info") -> None:
    """Route structlog to ``file`` (or stderr), JSON lines or console. Context (``node``, ``node_id``)
    is bound on each node's logger, not globally, so that many nodes can share one process in tests.

    Resource handling: the file is opened once, line-buffered, and left open for the process's life.
    """
    global _sink
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        _sink = file.open("a", buffering=1, encoding="utf-8")
        stream: TextIO = _sink
    else:
        stream = sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if use_console
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            _add_ts_ns,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )


def get_logger(**initial: Any) -> Any:
    return structlog.get_logger().bind(**initial)
