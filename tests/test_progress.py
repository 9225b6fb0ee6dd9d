"""Progress display: bars on a terminal, throttled lines elsewhere, the benchmark's lines."""

import io
import re

import pytest
from rich.console import Console
from rich.progress import MofNCompleteColumn, TimeRemainingColumn

from hyperunmix.bench.cli import RunLines
from hyperunmix.progress import ProgressBars, ProgressLog, progress_display, stage


class Clock:
    """A clock the test sets, in seconds."""

    def __init__(self, now=0.0):
        self.now = now

    def __call__(self):
        return self.now


def test_lines_mark_a_stage_start_its_end_and_at_most_one_line_per_interval():
    clock, out = Clock(), io.StringIO()
    log = ProgressLog(out, interval=5.0, clock=clock)
    for epoch in range(1, 11):  # epoch k ends at k seconds
        clock.now = float(epoch)
        log("epoch", epoch, 10, {"loss": 1.0 / epoch})
    log.close()
    assert out.getvalue().splitlines() == [
        "epoch 1/10 loss=1",
        # 5 s after the first line; 5 epochs in 5 s leave 4 epochs, 4 s
        "epoch 6/10 loss=0.1667  elapsed 0:00:05  left 0:00:04",
        "epoch 10/10 loss=0.1  elapsed 0:00:09  done",
    ]


def test_stages_are_throttled_apart_and_unfinished_ones_end_at_close():
    clock, out = Clock(), io.StringIO()
    log = ProgressLog(out, interval=5.0, clock=clock)
    log("sample", 0, 1, {"pixels": 100})  # one step: a line when it ends, if it does
    for chunk in range(7):  # a chunk a second, the sample stage still open
        clock.now = float(chunk)
        log("unmix", chunk, 6, {"failed": 0})
    clock.now = 7.0
    log("unmix", 6, 6, {"failed": 0})  # a report past the stage's end writes nothing
    log("epoch", 3, 100, {"loss": 0.5})  # a run that fails during training
    log("export", 0, 1, {})
    clock.now = 9.0
    log("export", 1, 1, {})
    log("fit", 0, 1, {"method": "vca"})  # a run that fails here: the error says it all
    log.close()
    assert out.getvalue().splitlines() == [
        "unmix 0/6 failed=0",
        "unmix 5/6 failed=0  elapsed 0:00:05  left 0:00:01",
        "unmix 6/6 failed=0  elapsed 0:00:06  done",
        "epoch 3/100 loss=0.5",
        "export 1/1  elapsed 0:00:02  done",
        "epoch 3/100 loss=0.5  elapsed 0:00:02  stopped",
    ]


def test_a_stage_that_starts_over_starts_a_new_timer():
    clock, out = Clock(), io.StringIO()
    log = ProgressLog(out, interval=5.0, clock=clock)
    log("file.mat", 10, 100, {})
    clock.now = 2.0
    log("file.mat", 0, 100, {})  # a download retried from its first byte
    clock.now = 4.0
    log("file.mat", 100, 100, {})
    assert out.getvalue().splitlines() == [
        "file.mat 10/100",
        "file.mat 0/100",
        "file.mat 100/100  elapsed 0:00:02  done",
    ]


def test_off_a_terminal_the_display_writes_lines_and_nothing_else():
    out = io.StringIO()
    with progress_display(Console(file=out)):
        pass
    assert out.getvalue() == ""  # no blank line, as a rich display leaves on a file
    with progress_display(Console(file=out)) as report:
        assert isinstance(report, ProgressLog)
        report("epoch", 1, 2, {"loss": 0.5})
        report("epoch", 2, 2, {"loss": 0.25})
    lines = out.getvalue().splitlines()
    assert lines[0] == "epoch 1/2 loss=0.5" and lines[1].startswith("epoch 2/2 loss=0.25")
    assert lines[1].endswith("done") and len(lines) == 2


def test_on_a_terminal_each_stage_has_a_bar_with_its_count_and_time_left():
    with progress_display(Console(file=io.StringIO(), force_terminal=True)) as report:
        assert isinstance(report, ProgressBars)
        progress = report.progress
        columns = [type(column) for column in progress.columns]
        assert MofNCompleteColumn in columns and TimeRemainingColumn in columns
        report("epoch", 3, 10, {"loss": 0.25})
        screen = Console(file=io.StringIO(), width=100)
        screen.print(progress.make_tasks_table(progress.tasks))
    row = screen.file.getvalue()
    assert "epoch loss=0.25" in row and "3/10" in row
    assert re.search(r"elapsed \d+:\d\d:\d\d left", row)


def test_benchmark_lines_show_the_runs_done_the_time_elapsed_and_left(capsys):
    clock = Clock(100.0)
    lines = RunLines(clock=clock)
    ok = dict(
        status="ok", method="vca", dataset="samson", seed=0, metrics={"armse": 0.1}, time_s=2.0
    )
    failed = dict(
        status="failed", method="deq", dataset="samson", seed=1, error="TimeoutError: over 60 s"
    )
    clock.now = 110.0
    lines(ok, 5, 10)  # 4 runs stored by an earlier command: 1 run in 10 s
    clock.now = 130.0
    lines(failed, 6, 10)  # 2 runs in 30 s
    assert capsys.readouterr().err.splitlines() == [
        "[ 5/10] ok     vca on samson seed 0  aRMSE 0.1000  2 s  elapsed 0:00:10  left 0:00:50",
        "[ 6/10] failed deq on samson seed 1  TimeoutError: over 60 s  elapsed 0:00:30  "
        "left 0:01:00",
    ]


def test_a_stage_that_reports_a_stop_ends_there_with_one_line():
    clock, out = Clock(), io.StringIO()
    log = ProgressLog(out, interval=5.0, clock=clock)
    log("epoch", 1, 200, {"loss": 0.5})
    clock.now = 2.0
    log("epoch", 2, 200, {"loss": 0.25, "stop": "plateau"})  # early stopping
    log("epoch", 3, 200, {"loss": 0.2})  # nothing after the stop
    log("budget", 1, 9, {"stop": "max_seconds"})  # a stop at the first report
    log.close()
    assert out.getvalue().splitlines() == [
        "epoch 1/200 loss=0.5",
        "epoch 2/200 loss=0.25 stop=plateau  elapsed 0:00:02  stopped",
        "budget 1/9 stop=max_seconds  stopped",
    ]


def test_a_bar_stopped_early_leaves_a_line():
    screen = io.StringIO()
    with progress_display(Console(file=screen, force_terminal=True, width=100)) as report:
        report("epoch", 1, 200, {"loss": 0.5})
        report("epoch", 2, 200, {"loss": 0.25, "stop": "plateau"})
        assert [task.description for task in report.progress.tasks] == []
    assert "epoch 2/200 loss=0.25 stop=plateau  stopped" in screen.getvalue()


def test_a_stage_reports_its_start_and_its_end_but_not_a_failure():
    reports = []
    with stage(lambda *report: reports.append(report), "fit", method="vca"):
        assert reports == [("fit", 0, 1, {"method": "vca"})]
    assert reports[-1] == ("fit", 1, 1, {"method": "vca"})
    with pytest.raises(ValueError), stage(lambda *report: reports.append(report), "unmix"):
        raise ValueError
    assert reports[-1] == ("unmix", 0, 1, {})
    with stage(None, "fit"):  # no display: nothing to report to
        pass
