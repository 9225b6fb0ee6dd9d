"""Benchmark records -> statistics per (scene, method) -> tables (Markdown and HTML).

The statistics are the mean and the sample standard deviation (``ddof=1``; a single run has
no spread and shows its mean alone) over the successful runs; runs whose value is undefined
(None: e.g. the infinite SRE of an exact estimate, or no abundance truth) are left out of
that metric and the count of runs that entered it is kept.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .plans import ABLATIONS, matched_baseline


@dataclass(frozen=True)
class Column:
    """A per-run quantity: where it is in a record, its label and its format."""

    key: str
    label: str
    fmt: str
    in_metrics: bool = True

    def value(self, record: dict[str, Any]) -> float | None:
        source = (record.get("metrics") or {}) if self.in_metrics else record
        value = source.get(self.key)
        return None if value is None else float(value)


COLUMNS = (
    Column("armse", "aRMSE", ".4f"),
    Column("msad", "mSAD (rad)", ".4f"),
    Column("sre_db", "SRE (dB)", ".2f"),
    Column("reconstruction_rmse", "recon. RMSE", ".4f"),
    Column("time_s", "time (s)", ".3g", in_metrics=False),
    Column("peak_memory_mb", "peak mem. (MB)", ".1f", in_metrics=False),
)
COLUMN = {c.key: c for c in COLUMNS}
#: The summary tables: one per metric, methods x scenes.
SUMMARY_KEYS = ("armse", "msad", "time_s")


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of ``n`` values (std None for n < 2)."""

    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat:
        array = np.array([v for v in values if v is not None], dtype=np.float64)
        if array.size == 0:
            return cls(None, None, 0)
        std = float(np.std(array, ddof=1)) if array.size > 1 else None
        return cls(float(np.mean(array)), std, int(array.size))

    def format(self, fmt: str) -> str:
        if self.mean is None:
            return "—"
        if self.std is None:
            return format(self.mean, fmt)
        return f"{self.mean:{fmt}} ± {self.std:{fmt}}"


@dataclass
class Group:
    """The runs of one method on one scene."""

    dataset: str
    method: str
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") == "ok"]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") != "ok"]

    def stat(self, column: Column) -> Stat:
        return Stat.of(column.value(r) for r in self.ok)

    def per_endmember(self) -> dict[str, Stat]:
        """aRMSE of each material, over the successful runs (material order of the truth)."""
        names: dict[str, list[float]] = {}
        for record in self.ok:
            for name, value in ((record["metrics"] or {}).get("armse_per_endmember") or {}).items():
                names.setdefault(name, []).append(value)
        return {name: Stat.of(values) for name, values in names.items()}


def group(records: list[dict[str, Any]]) -> dict[str, dict[str, Group]]:
    """``{dataset: {method: Group}}``, both in order of first appearance."""
    groups: dict[str, dict[str, Group]] = {}
    for record in records:
        by_method = groups.setdefault(record["dataset"], {})
        by_method.setdefault(record["method"], Group(record["dataset"], record["method"]))
        by_method[record["method"]].records.append(record)
    return groups


@dataclass
class Table:
    """A titled table of strings, rendered to Markdown or HTML."""

    title: str
    header: list[str]
    rows: list[list[str]]
    anchor: str

    def markdown(self) -> str:
        lines = [f"| {' | '.join(self.header)} |", "|" + "|".join("---" for _ in self.header) + "|"]
        lines += [f"| {' | '.join(cell.replace('|', '/') for cell in row)} |" for row in self.rows]
        return "\n".join(lines)

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
            for row in self.rows
        )
        return (
            f"<table class='results' id='{self.anchor}'><caption>{html.escape(self.title)}"
            f"</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )


def baseline_of(found: Group) -> str | None:
    """The benchmark entry of ``found``'s matched baseline (None for classical methods)."""
    return next((matched_baseline(r) for r in found.ok), None)


def gain(found: Group, baseline: Group | None) -> Stat:
    """aRMSE gain of ``found`` over ``baseline``, ``(baseline - method) / baseline``, per
    seed run by both, then mean ± std over those seeds."""
    if baseline is None:
        return Stat(None, None, 0)
    column = COLUMN["armse"]
    reference = {r["seed"]: column.value(r) for r in baseline.ok}
    gains = []
    for record in found.ok:
        value, base = column.value(record), reference.get(record["seed"])
        if value is not None and base:
            gains.append((base - value) / base)
    return Stat.of(gains)


def _gain_cell(found: Group, by_method: dict[str, Group]) -> str:
    name = baseline_of(found)
    if name is None:
        return ""
    stat = gain(found, by_method.get(name))
    if stat.mean is None:
        return f"— (no {name} run)"
    return _percent(stat.mean, stat.std) + f" vs {name}"


def _percent(mean: float, std: float | None) -> str:
    text = f"{100 * mean:+.1f}"
    return (text if std is None else f"{text} ± {100 * std:.1f}") + " %"


def summary_table(groups: dict[str, dict[str, Group]], key: str) -> Table:
    """Methods (rows) x scenes (columns) of one column's mean ± std."""
    column = COLUMN[key]
    datasets = list(groups)
    methods = list(dict.fromkeys(m for by_method in groups.values() for m in by_method))
    rows = []
    for method in methods:
        row = [method]
        for dataset in datasets:
            found = groups[dataset].get(method)
            row.append("" if found is None else _cell(found, column))
        rows.append(row)
    return Table(
        f"{column.label} by method and scene", ["method"] + datasets, rows, anchor=f"summary-{key}"
    )


def gain_table(groups: dict[str, dict[str, Group]]) -> Table | None:
    """Deep methods (rows) x scenes: aRMSE gain over the matched baseline; None without
    deep methods."""
    datasets = list(groups)
    methods = list(
        dict.fromkeys(
            method
            for by_method in groups.values()
            for method, found in by_method.items()
            if baseline_of(found) is not None
        )
    )
    if not methods:
        return None
    rows = []
    for method in methods:
        cells = [
            _gain_cell(groups[d][method], groups[d]) if method in groups[d] else ""
            for d in datasets
        ]
        rows.append([method] + cells)
    return Table(
        "aRMSE gain over the matched baseline (same endmember start, same abundance convention)",
        ["method"] + datasets,
        rows,
        anchor="summary-gain",
    )


def scene_table(dataset: str, by_method: dict[str, Group]) -> Table:
    """One scene: every method's runs and every column, and a deep method's gain over its
    matched baseline."""
    rows = [
        [g.method, f"{len(g.ok)}/{len(g.records)}"]
        + [_cell(g, c) for c in COLUMNS]
        + [_gain_cell(g, by_method)]
        for g in by_method.values()
    ]
    return Table(
        f"{dataset}: all metrics",
        ["method", "runs ok"] + [c.label for c in COLUMNS] + ["aRMSE gain"],
        rows,
        anchor=f"scene-{dataset}",
    )


def ablation_table(groups: dict[str, dict[str, Group]]) -> Table | None:
    """What each learned part adds: per scene, each deep method beside each of its
    ablations (:data:`hyperunmix.bench.plans.ABLATIONS`) and its matched baseline; None
    when no ablation ran."""
    armse, msad = COLUMN["armse"], COLUMN["msad"]
    rows = []
    for dataset, by_method in groups.items():
        for method, ablations in ABLATIONS.items():
            found = by_method.get(method)
            for name, part in ablations.items():
                removed = by_method.get(name)
                if found is None or removed is None:
                    continue
                baseline_name = baseline_of(found)
                baseline = by_method.get(baseline_name) if baseline_name else None
                rows.append(
                    [
                        dataset,
                        method,
                        f"{name}: {part}",
                        _cell(found, armse),
                        _cell(removed, armse),
                        "—" if baseline is None else f"{_cell(baseline, armse)} ({baseline_name})",
                        _cell(found, msad),
                        _cell(removed, msad),
                    ]
                )
    if not rows:
        return None
    return Table(
        "What each learned part adds",
        [
            "scene",
            "method",
            "ablation: part removed",
            "aRMSE",
            "aRMSE without the part",
            "aRMSE of the matched baseline",
            "mSAD (rad)",
            "mSAD without the part",
        ],
        rows,
        anchor="ablations",
    )


def endmember_table(dataset: str, by_method: dict[str, Group]) -> Table | None:
    """One scene: abundance RMSE of each material; None when no run has it."""
    stats = {method: g.per_endmember() for method, g in by_method.items()}
    names = list(dict.fromkeys(n for per in stats.values() for n in per))
    if not names:
        return None
    rows = [
        [method] + [per[n].format(".4f") if n in per else "—" for n in names]
        for method, per in stats.items()
    ]
    return Table(
        f"{dataset}: abundance RMSE per material",
        ["method"] + names,
        rows,
        anchor=f"endmembers-{dataset}",
    )


def failure_table(records: list[dict[str, Any]]) -> Table | None:
    """Failed runs, grouped by method, scene and error; None when every run succeeded."""
    failed: dict[tuple[str, str, str], list[int]] = {}
    for record in records:
        if record.get("status") != "ok":
            key = (record["method"], record["dataset"], record.get("error") or "unknown error")
            failed.setdefault(key, []).append(record["seed"])
    if not failed:
        return None
    rows = [
        [method, dataset, ", ".join(map(str, sorted(seeds))), _first_line(error)]
        for (method, dataset, error), seeds in failed.items()
    ]
    return Table("Failed runs", ["method", "scene", "seeds", "error"], rows, anchor="failures")


def settings_table(records: list[dict[str, Any]]) -> Table:
    """The parameters each method ran with (all but the seed), per distinct setting."""
    settings: dict[tuple[str, str], set[str]] = {}
    for record in records:
        params = {k: v for k, v in (record.get("parameters") or {}).items() if k != "seed"}
        text = ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"
        settings.setdefault((record["method"], text), set()).add(record["dataset"])
    rows = [
        [method, ", ".join(sorted(datasets)), text] for (method, text), datasets in settings.items()
    ]
    return Table(
        "Method settings",
        ["method", "scenes", "parameters (besides the seed)"],
        rows,
        anchor="settings",
    )


def all_tables(records: list[dict[str, Any]]) -> list[Table]:
    """Summary tables (with the gains over the matched baselines and the ablations), then
    per scene the full and the per-material table, then the method settings and the
    failures."""
    groups = group(records)
    tables = [summary_table(groups, key) for key in SUMMARY_KEYS]
    tables += [t for t in (gain_table(groups), ablation_table(groups)) if t is not None]
    for dataset, by_method in groups.items():
        tables.append(scene_table(dataset, by_method))
        per_material = endmember_table(dataset, by_method)
        if per_material is not None:
            tables.append(per_material)
    tables.append(settings_table(records))
    failures = failure_table(records)
    if failures is not None:
        tables.append(failures)
    return tables


#: How to read the cells, said once per report.
STAT_NOTE = (
    "Mean ± sample standard deviation over the successful runs (seeds). '(k/n)': "
    "the value is defined for k of the n successful runs (e.g. an exact estimate has "
    "an infinite SRE); '[f of n runs failed]': see the failed runs. Abundances are "
    "scored in each scene's convention (absolute fractions on the synthetic scenes, "
    "shares of unit-peak spectra on Samson and Jasper Ridge), a result in the other "
    "one converted through its own endmembers. aRMSE gain: (baseline - method) / "
    "baseline over the seeds both ran, the matched baseline being the classical "
    "solver of the method's own convention (FCLS for absolute fractions, SNNLS for "
    "shares) on the method's endmember start (N-FINDR: nfindr / snnls_nfindr), "
    "scored like the method in the scene's convention."
)


def _cell(found: Group, column: Column) -> str:
    stat = found.stat(column)
    n_ok, n_runs = len(found.ok), len(found.records)
    if n_ok == 0:
        return "failed"
    text = stat.format(column.fmt)
    if stat.n not in (0, n_ok):
        text += f" ({stat.n}/{n_ok})"
    if n_ok < n_runs:
        text += f" [{n_runs - n_ok} of {n_runs} runs failed]"
    return text


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= limit else line[: limit - 1] + "…"
