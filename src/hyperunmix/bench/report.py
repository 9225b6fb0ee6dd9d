"""The benchmark report: ``results.md`` (tables, figure links) and ``report.html`` (one
self-contained file: every table, every figure embedded as base64 PNG, no external
resources, so it can be mailed or archived and opens offline in any browser)."""

from __future__ import annotations

import base64
import html
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._atomic import write_text
from .figures import FigureFile, write_figures
from .scenes import SceneSpec
from .tables import STAT_NOTE, Table, all_tables, group

log = logging.getLogger("hyperunmix")

MARKDOWN_FILE = "results.md"
HTML_FILE = "report.html"


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    figures: list[FigureFile]


def write_report(
    out: str | os.PathLike,
    records: list[dict[str, Any]],
    scenes: Sequence[SceneSpec],
    *,
    data_dir: str | os.PathLike | None = None,
    command: str | None = None,
) -> ReportFiles:
    """Write the figures, ``results.md`` and ``report.html`` of ``records`` into ``out``.

    ``scenes`` are the recipes of the benchmarked scenes, rebuilt here for the true maps
    and spectra; ``command`` is the command line shown as the way to reproduce the report.
    """
    out = Path(out)
    groups = group(records)
    built, notes = _build_scenes(scenes, set(groups), data_dir)
    figures = write_figures(out, groups, built)
    tables = all_tables(records)
    header = _header_lines(records, command) + notes + [STAT_NOTE]
    markdown = "# hyperunmix benchmark\n\n" + markdown_report(
        tables, [f.path.relative_to(out) for f in figures], [f.caption for f in figures], header
    )
    return ReportFiles(
        write_text(out / MARKDOWN_FILE, markdown),
        write_text(out / HTML_FILE, html_report(tables, figures, header)),
        figures,
    )


def markdown_report(
    tables: list[Table],
    figure_paths: Sequence[str | os.PathLike],
    captions: Sequence[str],
    header: Sequence[str] = (),
    heading: str = "##",
) -> str:
    """Tables as Markdown, then the figures as image links (paths relative to the file
    that will hold the text); ``heading`` marks the section titles (``"##"``: level 2)."""
    parts = list(header)
    parts += [f"{heading} {table.title}\n\n{table.markdown()}" for table in tables]
    if figure_paths:
        parts.append(f"{heading} Figures")
        parts += [
            f"![{caption}]({Path(path).as_posix()})\n\n*{caption}*"
            for path, caption in zip(figure_paths, captions)
        ]
    return "\n\n".join(parts) + "\n"


def html_report(tables: list[Table], figures: list[FigureFile], header: Sequence[str] = ()) -> str:
    """The self-contained HTML page."""
    nav = "".join(f"<li><a href='#{t.anchor}'>{html.escape(t.title)}</a></li>" for t in tables)
    nav += "".join(f"<li><a href='#{f.anchor}'>{html.escape(f.caption)}</a></li>" for f in figures)
    intro = "".join(f"<p>{html.escape(line)}</p>" for line in header)
    sections = "".join(f"<section>{t.html()}</section>" for t in tables)
    images = "".join(
        f"<figure id='{f.anchor}'><img alt='{html.escape(f.caption)}' "
        f"src='data:image/png;base64,{_base64(f.path)}'>"
        f"<figcaption>{html.escape(f.caption)}</figcaption></figure>"
        for f in figures
    )
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>hyperunmix benchmark</title><style>{_CSS}</style></head><body>"
        f"<h1>hyperunmix benchmark</h1>{intro}<nav><ul>{nav}</ul></nav>"
        f"<h2>Tables</h2>{sections}<h2>Figures</h2>{images}</body></html>\n"
    )


def _header_lines(records: list[dict[str, Any]], command: str | None) -> list[str]:
    n_ok = sum(r.get("status") == "ok" for r in records)
    versions = sorted({str(r.get("version")) for r in records})
    lines = [
        f"{len(records)} runs, {n_ok} successful, {len(records) - n_ok} failed; "
        f"hyperunmix {', '.join(versions)}; finished "
        f"{max((r.get('finished') or '' for r in records), default='')}."
    ]
    if command:
        lines.append(f"Reproduce with: {command}")
    return lines


def _build_scenes(
    specs: Sequence[SceneSpec], wanted: set[str], data_dir: str | os.PathLike | None
) -> tuple[dict, list[str]]:
    """The scenes named in ``wanted``, built for their truth; a scene that cannot be built
    gets no figures and a note saying why."""
    built, notes = {}, []
    for spec in specs:
        if spec.name not in wanted:
            continue
        try:
            built[spec.name] = spec.build(data_dir)
        except Exception as exc:
            log.warning("no figures for %s: %s", spec.name, exc)
            notes.append(f"No figures for {spec.name}: {type(exc).__name__}: {exc}")
    return built, notes


def _base64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;
color:#222}
table.results{border-collapse:collapse;margin:1.5em 0 .3em;font-size:.9em}
table.results caption{font-weight:600;text-align:left;padding:.3em 0}
table.results th,table.results td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
table.results th:first-child,table.results td:first-child{text-align:left}
table.results thead{background:#f0f0f0}
figure{margin:2em 0}
figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.9em;color:#444}
"""
