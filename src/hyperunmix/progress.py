"""Progress of long commands on stderr: live bars on a terminal, plain lines elsewhere.

Long steps report ``callback(stage, done, total, info)``
(:data:`~hyperunmix.base.ProgressCallback`): the deep methods' ``"epoch"`` (``info``: the
loss and its terms), a chunked run's ``"sample"``, ``"unmix"`` (chunks) and ``"export"``
(:func:`~hyperunmix.scale.unmix_large`), and the bytes of each file a dataset download
fetches. :func:`progress_display` gives the callback that shows them:

* on a terminal, one rich progress bar per stage with its count, the latest ``info``, the
  time elapsed and an estimate of the time left, erased when the command ends; a stage
  that ended before its total (a training stopped early) leaves one line behind;
* elsewhere (a log file, a pipe, a batch job), where a live display can only leave stray
  characters behind, plain lines (:class:`ProgressLog`)::

      epoch 1/200 loss=0.8123
      epoch 38/200 loss=0.2311  elapsed 0:00:05  left 0:00:21
      ...
      epoch 57/200 loss=0.0912 stop=plateau  elapsed 0:00:08  stopped
      fit 1/1 method=egunet  elapsed 0:00:09  done
      unmix 1/1 method=egunet  elapsed 0:00:01  done

A report whose ``info`` has a ``stop`` entry (why) is the last of its stage, which ends
before its total: a training stopped early (``stop=plateau``), whose time left was
therefore an upper bound. Steps without counts of their own (fitting, unmixing) report
themselves as a one-step :func:`stage`.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .base import ProgressCallback

#: Seconds between two lines of the same stage, at least, when progress is logged as lines:
#: enough to follow a run, few enough for a log file.
LOG_INTERVAL_S = 5.0


def _format_duration(seconds: float) -> str:
    """``H:MM:SS``, as rich's time columns show it."""
    return str(datetime.timedelta(seconds=int(seconds)))


@dataclass
class Timer:
    """The time elapsed since ``start`` and an estimate of the time left, at the rate seen
    since then, for work counted in steps of which ``done`` were done at ``start``."""

    start: float
    done: int

    def elapsed(self, now: float) -> str:
        """``elapsed H:MM:SS``."""
        return f"elapsed {_format_duration(now - self.start)}"

    def summary(self, done: int, total: int, now: float) -> str:
        """``elapsed H:MM:SS  left H:MM:SS``; without ``left`` before a step was timed."""
        if done <= self.done:
            return self.elapsed(now)
        left = (now - self.start) / (done - self.done) * (total - done)
        return f"{self.elapsed(now)}  left {_format_duration(left)}"


def _details(info: dict[str, Any]) -> str:
    """A report's ``info`` as ``key=value`` words, floats to 4 significant digits."""
    return " ".join(f"{key}={_short(value)}" for key, value in info.items())


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _line(stage: str, done: int, total: int, info: dict[str, Any]) -> str:
    """A report as one line: ``epoch 38/200 loss=0.2311``."""
    return f"{stage} {done}/{total} {_details(info)}".strip()


# -- on a terminal -------------------------------------------------------------------------
def _bar_columns() -> tuple[ProgressColumn, ...]:
    """A stage's bar: ``epoch loss=0.2311 ━━━━━━━ 38/200 elapsed 0:00:05 left 0:00:21``."""
    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )


class ProgressBars:
    """A progress callback drawing one bar of ``progress`` per stage, its description the
    stage and the latest ``info``. A stage that ends before its total (``stop`` in the
    report's ``info``) leaves a line above the bars, which are erased at the end."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int, info: dict) -> None:
        description = f"{stage} {_details(info)}".strip()
        if stage in self.tasks:
            self.progress.update(
                self.tasks[stage], completed=done, total=total, description=description
            )
        else:
            self.tasks[stage] = self.progress.add_task(description, total=total, completed=done)
        if "stop" in info:
            line = f"{_line(stage, done, total, info)}  stopped"
            self.progress.console.print(line, markup=False, highlight=False)
            self.progress.remove_task(self.tasks.pop(stage))


# -- elsewhere -----------------------------------------------------------------------------
@dataclass
class _Stage:
    """A stage's latest report ``(done, total, info)``, its timer and when it last wrote."""

    report: tuple[int, int, dict]
    timer: Timer
    last_line: float
    wrote: bool = False

    @property
    def end(self) -> str:
        """``"done"`` (complete), ``"stopped"`` (ended before its total: ``stop``) or ``""``."""
        done, total, info = self.report
        return "done" if done >= total else "stopped" if "stop" in info else ""


class ProgressLog:
    """A progress callback writing plain lines to ``file`` (default: stderr at each line):
    a stage's first report, the report that completes it (marked ``done``) or ends it
    early (``stop`` in its ``info``: marked ``stopped``) and, in between, a line every
    ``interval`` seconds at most with the time elapsed since the stage's first report and
    the time left at the rate seen since. A stage of one step (``total`` 1: fitting,
    unmixing, a chunked run's sample and export) writes one line, when it ends.

    :meth:`close` ends the stages left unfinished (a run that failed) that have written a
    line, with their last report, marked ``stopped``; a failure before any line leaves the
    error message alone on stderr. ``clock`` gives the time in seconds.
    """

    def __init__(
        self,
        file: IO[str] | None = None,
        interval: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.file = file
        self.interval = interval
        self.clock = clock
        self.stages: dict[str, _Stage] = {}

    def __call__(self, stage: str, done: int, total: int, info: dict) -> None:
        now = self.clock()
        state = self.stages.get(stage)
        if state is None or done < state.report[0]:  # a new stage, or one starting over
            state = self.stages[stage] = _Stage((done, total, info), Timer(now, done), now)
            if total > 1 or state.end:
                self._write(stage, state, now, state.end)
            return
        if state.end:
            return
        state.report = (done, total, info)
        if state.end:
            self._write(stage, state, now, f"{state.timer.elapsed(now)}  {state.end}")
        elif now - state.last_line >= self.interval:
            self._write(stage, state, now, state.timer.summary(done, total, now))

    def close(self) -> None:
        """End the unfinished stages with a line each."""
        now = self.clock()
        for stage, state in self.stages.items():
            if state.wrote and not state.end:
                self._write(stage, state, now, f"{state.timer.elapsed(now)}  stopped")

    def _write(self, stage: str, state: _Stage, now: float, times: str) -> None:
        """One line: the stage's latest report, then ``times`` (the timing and how it ends)."""
        line = _line(stage, *state.report)
        print(f"{line}  {times}" if times else line, file=self.file or sys.stderr, flush=True)
        state.last_line, state.wrote = now, True


@contextlib.contextmanager
def progress_display(console: Console | None = None) -> Iterator[ProgressCallback]:
    """The progress callback of a long command, for the duration of the ``with`` block:
    :class:`ProgressBars` when ``console`` (default: stderr) is a terminal, else a
    :class:`ProgressLog` to its file, which writes nothing unless reports come."""
    console = console or Console(stderr=True)
    if console.is_terminal:
        # The rate over the whole stage, as in the lines: rich's default, over the last 30 s,
        # gives no time left at all for steps slower than that (epochs on a large scene).
        with Progress(
            *_bar_columns(), console=console, transient=True, speed_estimate_period=math.inf
        ) as progress:
            yield ProgressBars(progress)
    else:
        # Not a rich display: a transient one ends by writing a blank line where it cannot
        # erase itself.
        log = ProgressLog(console.file)
        try:
            yield log
        finally:
            log.close()


@contextlib.contextmanager
def stage(report: ProgressCallback | None, name: str, **info: Any) -> Iterator[None]:
    """Report the ``with`` block as the one-step stage ``name``: ``0/1`` when it starts,
    ``1/1`` when it ends (not when it fails); nothing when ``report`` is None."""
    if report is not None:
        report(name, 0, 1, info)
    yield
    if report is not None:
        report(name, 1, 1, info)


__all__ = [
    "LOG_INTERVAL_S",
    "ProgressBars",
    "ProgressLog",
    "Timer",
    "progress_display",
    "stage",
]
