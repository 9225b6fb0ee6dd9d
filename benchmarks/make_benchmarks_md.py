"""Assemble BENCHMARKS.md (repository root) from the committed benchmark results.

    python benchmarks/make_benchmarks_md.py

Sources, all under ``benchmarks/results/``:

- ``bench/results.json.gz`` and ``bench/figures/``: the method comparison, written by the
  command recorded in that file (``hyperunmix bench ... --out benchmarks/results/bench``).
  Its tables are regenerated here from the records, so they always match the data.
- ``*.md``: fragments written by the other benchmark scripts (each beside its own JSON,
  each naming the command that reproduces it), included verbatim in file-name order.

Nothing is run: regenerating the file takes a second and never changes a number.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from hyperunmix._atomic import write_text
from hyperunmix.bench.figures import caption
from hyperunmix.bench.report import markdown_report
from hyperunmix.bench.runner import RESULTS_FILE, read_results
from hyperunmix.bench.tables import STAT_NOTE, all_tables

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
THIS_COMMAND = "python benchmarks/make_benchmarks_md.py"
#: Methods whose code changed after the comparison was measured, said where the rows are
#: shown until the comparison is run again.
STALE_ROWS: list[str] = [
    "The per-scene map figures are from the full run before EGU-Net's blend noise and "
    "early stopping changed (3eb1e11, 0398157): egunet and egunet_pw were re-run after them "
    "(their table rows and the accuracy-versus-time figure are current), but their maps "
    "in those figures are the earlier run's."
]


def comparison_section(bench_dir: Path, relative_to: Path) -> str:
    """The methods x scenes comparison from ``bench_dir/results.json.gz``, with figure links
    relative to ``relative_to`` (the directory of the Markdown file)."""
    results = read_results(bench_dir)
    records = results["runs"]
    environment = results.get("environment") or {}
    workers = results.get("workers") or {}
    lines = [
        "## Methods compared on every scene",
        f"Reproduce: `{results.get('command') or 'hyperunmix bench'}` "
        f"(then `{THIS_COMMAND}`). Resumable: rerunning continues an interrupted run.",
        f"Measured {results.get('created', '?')} with hyperunmix "
        f"{results.get('hyperunmix_version', '?')}, Python {environment.get('python', '?')}, "
        f"NumPy {environment.get('numpy', '?')}, PyTorch {environment.get('torch', '?')}, on "
        f"{environment.get('cpu', '?')} ({environment.get('cpu_count', '?')} cores); "
        f"{workers.get('processes', '?')} runs at a time, "
        f"{workers.get('threads_each', '?')} thread(s) each.",
        "Protocol: every method gets the true number of endmembers and seeds 0, 1, ...; "
        "estimates are matched to the truth by the Hungarian algorithm on abundance-map "
        "RMSE; aRMSE over all pixels and materials, mSAD in radians, SRE in dB, "
        "reconstruction RMSE of each method's own mixing model; wall time of fit + unmix; "
        "peak memory is the rise of the run process's resident memory (PyTorch included). "
        + STAT_NOTE,
        "Where the defaults come from: the deep methods' endmember starts and internal "
        "abundance conventions were chosen on tuning scenes that are not reported here "
        '("Defaults chosen on tuning scenes" below). Their other hyper-parameters '
        "(epochs, loss weights, DEQ-Unmix's volume weight, ID-Net's presets) are the papers' "
        "or were set in earlier versions partly on Samson and Jasper Ridge, so the deep "
        "methods' scores on those two scenes are not entirely out of sample; the synthetic "
        "scenes are.",
    ]
    if results.get("quick"):
        lines.append("**These are `--quick` results (small scenes, small budgets).**")
    lines += STALE_ROWS
    figures = sorted((bench_dir / "figures").glob("*.png"))
    captions = [caption(path.stem) for path in figures]
    links = [Path(os.path.relpath(path, relative_to)) for path in figures]
    return markdown_report(all_tables(records), links, captions, lines, heading="###")


def fragments(results_dir: Path, scripts_dir: Path) -> list[str]:
    """The Markdown fragments of the other benchmark scripts, in file-name order, each
    followed by the command that reproduces it (the script in ``scripts_dir`` that names
    the fragment's results file)."""
    parts = []
    for path in sorted(results_dir.glob("*.md")):
        text = path.read_text().strip()
        script = _producer(path.stem, scripts_dir)
        if script is not None and "Reproduce" not in text:
            text += f"\n\nReproduce: `python benchmarks/{script}` (then `{THIS_COMMAND}`)."
        parts.append(text)
    return parts


def _producer(stem: str, scripts_dir: Path) -> str | None:
    """The script of ``scripts_dir`` whose text names ``results/<stem>.``, if any."""
    pattern = re.compile(rf"results/{re.escape(stem)}\.")
    for script in sorted(scripts_dir.glob("*.py")):
        if script.name != Path(__file__).name and pattern.search(script.read_text()):
            return script.name
    return None


def build(
    results_dir: Path = RESULTS,
    out: Path = REPO / "BENCHMARKS.md",
    scripts_dir: Path = REPO / "benchmarks",
) -> Path:
    """Write ``out`` from ``results_dir`` (fragments made by the scripts of
    ``scripts_dir``); return its path."""
    parts = [
        "# Benchmarks",
        f"Generated by `{THIS_COMMAND}` from the results committed in "
        f"`{Path(os.path.relpath(results_dir, out.parent)).as_posix()}/`; "
        "do not edit by hand. Timings depend on the machine (given with each table).",
    ]
    bench_dir = results_dir / "bench"
    if (bench_dir / RESULTS_FILE).is_file():
        parts.append(comparison_section(bench_dir, out.parent))
    others = fragments(results_dir, scripts_dir)
    if others:
        parts += ["## Focused benchmarks"] + others
    return write_text(out, "\n\n".join(parts) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="directory of the committed results (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "BENCHMARKS.md",
        help="Markdown file to write (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    print(build(args.results, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
