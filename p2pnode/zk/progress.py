"""Progress of long steps (key setup, proof generation, bench's proof pre-computation) on stderr.

On a terminal, one status line is rewritten in place about twice a second with the phase, its elapsed
time and, for counted work, ``done/total`` and a rate; a finished phase leaves one line with its time.
Elsewhere (a pipe, a CI log, pytest's capture) nothing is rewritten: one line per finished phase with
its time, and for counted work at most one line per :data:`COUNT_LINE_S` seconds (and the last). The standard
library suffices (a thread ticks the terminal line while a blocking subprocess runs); nothing here
depends on a third-party progress library.

Resource handling: a :class:`Progress` phase started with ``with progress.phase(...)`` stops its ticker
thread on exit, also when the body raises.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["COUNT_LINE_S", "Progress"]

COUNT_LINE_S = 10.0  # without a terminal: at most one count line per this many seconds (and the last)
_TICK_S = 0.5


class Progress:
    """Phases of one long step named ``title`` (e.g. ``zk setup``), reported on ``stream``.

    ``line`` receives the lines that stay (default: printed to ``stream``); ``tty`` overrides the
    terminal detection (``stream.isatty()``); ``clock`` is the time source (monotonic seconds) and
    ``tick_s`` how often a terminal status line is redrawn.
    """

    def __init__(
        self,
        title: str,
        *,
        stream: TextIO | None = None,
        line: Callable[[str], None] | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        tick_s: float = _TICK_S,
    ) -> None:
        self.title = title
        self.stream = stream if stream is not None else sys.stderr
        self._line = line
        self.tty = self._isatty() if tty is None else tty
        self.clock = clock
        self.tick_s = tick_s
        self._lock = threading.Lock()
        self._status = ""
        self._started = clock()
        self._phase_start = self._started
        self._last_count_line = -1e18

    def _isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    # -- output -----------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        """One line that stays (clears the terminal status line first)."""
        with self._lock:
            if self.tty and self._status:
                self.stream.write("\r\x1b[K")
            if self._line is not None:
                self._line(f"{self.title}: {text}")
            else:
                self.stream.write(f"{self.title}: {text}\n")
            if self.tty and self._status:
                self.stream.write(self._status)
            self.stream.flush()

    def _show(self, status: str) -> None:
        with self._lock:
            self._status = f"{self.title}: {status}"
            self.stream.write("\r\x1b[K" + self._status)
            self.stream.flush()

    def _clear(self) -> None:
        with self._lock:
            if self._status:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
            self._status = ""

    def elapsed(self) -> float:
        """Seconds since this Progress was made."""
        return self.clock() - self._started

    # -- phases -----------------------------------------------------------------------------------------
    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Report ``name`` while the body runs; on exit one line ``name: done in X s`` (or ``failed``)."""
        self._phase_start = start = self.clock()
        stop = threading.Event()
        ticker: threading.Thread | None = None
        if self.tty:

            def tick() -> None:
                while not stop.wait(self.tick_s):
                    self._show(f"{name} ... {self.clock() - start:.0f} s")

            self._show(f"{name} ...")
            ticker = threading.Thread(target=tick, name="progress", daemon=True)
            ticker.start()
        ok = False
        try:
            yield
            ok = True
        finally:
            stop.set()
            if ticker is not None:
                ticker.join()
                self._clear()
            took = self.clock() - start
            self.say(f"{name}: {'done' if ok else 'failed'} in {took:.1f} s")

    def count(self, what: str, done: int, total: int) -> None:
        """Counted work (``done`` of ``total`` ``what``): the terminal line shows it at once with a rate
        and an estimate; without a terminal, a line at most every :data:`COUNT_LINE_S` and at the end."""
        now = self.clock()
        took = now - self._phase_start
        rate = done / took if took > 0 else 0.0
        left = (total - done) / rate if rate > 0 else 0.0
        text = f"{what} {done}/{total}"
        if rate > 0:
            text += f", {rate:.1f}/s" + (f", about {left:.0f} s left" if done < total else "")
        if self.tty:
            if done >= total:
                self._clear()
                self.say(f"{what} {done}/{total} in {took:.1f} s")
            else:
                self._show(text)
        elif done >= total or now - self._last_count_line >= COUNT_LINE_S:
            self._last_count_line = now
            self.say(text if done < total else f"{what} {done}/{total} in {took:.1f} s")

    def start_counting(self) -> None:
        """Restart the clock that :meth:`count` measures its rate from."""
        self._phase_start = self.clock()
