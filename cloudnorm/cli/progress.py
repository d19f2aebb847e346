"""What a slow command is doing, on stderr, while it waits.

On a terminal one line is redrawn with a spinner and the seconds spent, and each
finished step stays on screen; otherwise (a pipe, a log file, several clouds at once)
every change is one plain line. A wait is shown once it has lasted ``delay`` seconds,
so quick commands print nothing extra. Colours only on a terminal, and never with
``NO_COLOR`` set.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

_SPINNER = "|/-\\"
_MARKS = {"done": ("ok", "green"), "skipped": ("--", "yellow"), "failed": ("!!", "red")}


def colour_enabled(stream: IO[str]) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR")


class Progress:
    """A progress display; ``step`` is an ``on_step`` callback for create_server.

    ``prefix`` starts every line (the cloud's name when several run at once);
    ``live`` False forces plain lines even on a terminal; a wait is shown once it has
    lasted ``delay`` seconds.
    """

    def __init__(self, prefix: str = "", *, stream: IO[str] | None = None,
                 live: bool | None = None, delay: float = 0.0, total_steps: int = 8) -> None:
        self.stream = stream or sys.stderr
        self.prefix = f"{prefix}: " if prefix else ""
        self.live = self.stream.isatty() if live is None else live
        self.colour = colour_enabled(self.stream)
        self.delay = delay
        self.total = total_steps
        self._lock = threading.Lock()
        self._current = ""
        self._shown = False
        self._since = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._steps: dict[str, int] = {}
        self._last_plain = ("", 0.0)

    # -- create_server's steps ------------------------------------------------------------
    def step(self, event: Any) -> None:
        """Show a :class:`~cloudnorm.provision.StepEvent`."""
        number = self._steps.setdefault(event.step, len(self._steps) + 1)
        label = f"[{number}/{self.total}] {event.step.replace('_', ' ')}"
        if event.status in ("started", "waiting"):
            self.status(f"{label}: {event.detail}", throttle=event.status == "waiting")
        else:
            mark, colour = _MARKS.get(event.status, ("  ", ""))
            self.finish(f"{label}: {event.detail} ({event.elapsed:.1f}s)", mark, colour)

    # -- any wait ---------------------------------------------------------------------------
    def status(self, text: str, *, throttle: bool = False) -> None:
        """What is being waited for now (replaces the previous status)."""
        with self._lock:
            if text == self._current:
                return
            self._current = text
            self._since = time.monotonic()
            self._shown = False
            if self.delay <= 0:
                self._show(throttle)
            if self.live or self.delay > 0:
                self._ensure_thread()

    def finish(self, text: str, mark: str = "ok", colour: str = "green") -> None:
        """A line that stays: something finished."""
        with self._lock:
            self._current = ""
            self._shown = False
            if self.live:
                self._write("\r\033[K")
            self._write(f"{self.prefix}{self._style(mark, colour)} {text}\n")

    @contextmanager
    def waiting(self, text: str, done: str | None = None) -> Iterator[None]:
        """Show ``text`` while the block runs; if it was shown, then ``done`` with the time
        taken."""
        started = time.monotonic()
        self.status(text)
        try:
            yield
        except BaseException:
            self.clear()
            raise
        with self._lock:
            shown = self._shown
        if shown:
            self.finish(f"{done or text} ({time.monotonic() - started:.1f}s)")
        else:
            self.clear()

    def clear(self) -> None:
        with self._lock:
            if self.live and self._shown:
                self._write("\r\033[K")
            self._current = ""
            self._shown = False

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
        self.clear()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- drawing (callers hold the lock) ----------------------------------------------------
    def _show(self, throttle: bool = False) -> None:
        self._shown = True
        if self.live:
            self._draw()
        elif self._plain_due(self._current, throttle):
            self._write(f"{self.prefix}.. {self._current}\n")

    def _plain_due(self, text: str, throttle: bool) -> bool:
        # Repeated "still waiting" updates (one per login attempt) would flood a log:
        # one line per kind of update every 10 seconds is enough.
        kind = text.split(":", 1)[0]
        last_kind, last_time = self._last_plain
        if throttle and kind == last_kind and time.monotonic() - last_time < 10:
            return False
        self._last_plain = (kind, time.monotonic())
        return True

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(0.1):
            with self._lock:
                if not self._current:
                    continue
                if not self._shown:
                    if time.monotonic() - self._since >= self.delay:
                        self._show()
                elif self.live:
                    self._draw()

    def _draw(self) -> None:
        tick = _SPINNER[int(time.monotonic() * 8) % len(_SPINNER)]
        line = f"{self.prefix}{tick} {self._current} ({time.monotonic() - self._since:.0f}s)"
        width = max(20, _columns() - 1)
        self._write("\r\033[K" + line[:width])

    def _style(self, text: str, colour: str) -> str:
        if not self.colour or not colour:
            return text
        import click

        return click.style(text, fg=colour, bold=True)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the reader went away; the work goes on
            pass


def _columns() -> int:
    import shutil

    return shutil.get_terminal_size((100, 24)).columns
