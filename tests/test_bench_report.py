"""The benchmark report: Markdown tables equal the statistics of the records, and the
self-contained HTML page shows every table and figure in a real browser (headless
Chromium)."""

import html
import json
import os
import re
import runpy
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hyperunmix.base import Result
from hyperunmix.bench.report import write_report
from hyperunmix.bench.runner import read_results, write_results
from hyperunmix.bench.scenes import SceneSpec
from hyperunmix.bench.store import RunStore
from hyperunmix.bench.tables import all_tables
from hyperunmix.metrics import evaluate

REPO = Path(__file__).resolve().parents[1]
SCENES = [
    SceneSpec(
        "tiny_a",
        "synthetic",
        {"n_rows": 8, "n_cols": 8, "n_endmembers": 3, "abundances": "fields", "seed": 1},
    ),
    SceneSpec("tiny_b", "synthetic", {"n_rows": 6, "n_cols": 9, "n_endmembers": 3, "seed": 2}),
]
NOISE = {"good": 0.02, "poor": 0.2}
SEEDS = 3


def _record(spec, scene, method, seed, store):
    """A run record as the worker writes it, for an estimate = truth (shuffled) + noise."""
    rng = np.random.default_rng([seed, len(method)])
    order = rng.permutation(3)
    noisy = np.clip(
        scene.truth.abundances[..., order]
        + NOISE[method] * rng.standard_normal(scene.truth.abundances.shape),
        0,
        1,
    )
    result = Result(
        abundances=noisy.astype(np.float32),
        endmembers=scene.truth.endmembers[order] * (1 + 0.1 * seed),
        method=method,
        mask=scene.mask,
    )
    record = {
        "key": f"{method}-{spec.name}-s{seed}",
        "method": method,
        "dataset": spec.name,
        "seed": seed,
        "parameters": {"seed": seed},
        "status": "ok",
        "error": None,
        "metrics": evaluate(result, scene.truth, scene),
        "time_s": 0.01 * (seed + 1) * (10 if method == "poor" else 1),
        "peak_memory_mb": 5.0 + seed,
        "version": "test",
        "finished": "2026-01-01",
    }
    store.save(record, {"abundances": result.abundances, "endmembers": result.endmembers})
    return record


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    store = RunStore(out)
    records = []
    for spec in SCENES:
        scene = spec.build()
        records += [
            _record(spec, scene, method, seed, store) for seed in range(SEEDS) for method in NOISE
        ]
    records.append(
        {
            "key": "broken-tiny_a-s0",
            "method": "broken",
            "dataset": "tiny_a",
            "seed": 0,
            "status": "failed",
            "error": "ImportError: no module x",
            "metrics": None,
            "time_s": None,
            "peak_memory_mb": None,
            "version": "test",
            "finished": "2026-01-01",
        }
    )
    write_results(out, records, quick=True, command="hyperunmix bench --quick")
    (out / "figures").mkdir()
    (out / "figures" / "gone_abundances.png").write_bytes(b"from an earlier benchmark")
    files = write_report(out, records, SCENES, command="hyperunmix bench --quick")
    return out, records, files


def test_markdown_cells_are_mean_and_sample_std_of_the_records(report):
    out, records, files = report
    markdown = files.markdown.read_text()
    for dataset in ("tiny_a", "tiny_b"):
        armse = [
            r["metrics"]["armse"]
            for r in records
            if r["dataset"] == dataset and r["method"] == "poor"
        ]
        expected = f"{np.mean(armse):.4f} ± {np.std(armse, ddof=1):.4f}"
        row = _row(markdown, f"{dataset}: all metrics", "poor")
        assert row[2] == expected and row[1] == f"{SEEDS}/{SEEDS}"
        memory = f"{np.mean([5, 6, 7]):.1f} ± {np.std([5, 6, 7], ddof=1):.1f}"
        assert row[-2] == memory and row[-1] == ""  # classical: no matched baseline
    summary = _row(markdown, "aRMSE by method and scene", "good")
    assert summary[1] == _row(markdown, "tiny_a: all metrics", "good")[2]
    assert _row(markdown, "aRMSE by method and scene", "broken")[1:] == ["failed", ""]
    assert _row(markdown, "Failed runs", "broken") == [
        "broken",
        "tiny_a",
        "0",
        "ImportError: no module x",
    ]
    assert "Reproduce with: hyperunmix bench --quick" in markdown
    assert read_results(out)["runs"][-1]["status"] == "failed"


def _run(method, seed, armse, msad=0.1, convention="shares", **parameters):
    """A run record scored in the scene's convention, ``convention`` being the method's."""
    return {
        "method": method,
        "dataset": "scene",
        "seed": seed,
        "status": "ok",
        "parameters": {"seed": seed, **parameters},
        "time_s": 1.0,
        "peak_memory_mb": 1.0,
        "metrics": {
            "armse": armse,
            "msad": msad,
            "convention": "absolute",
            "result_convention": convention,
        },
    }


def test_gains_over_the_matched_baseline_and_the_ablation_table():
    from hyperunmix.bench.tables import gain_table, group

    baseline = [0.10, 0.20, 0.40]  # snnls_nfindr: the shares baseline of N-FINDR
    records = [_run("snnls_nfindr", s, a, endmembers="nfindr") for s, a in enumerate(baseline)]
    records += [_run("nfindr", s, 1.0) for s in range(3)]  # the absolute one
    records += [_run("deq", s, a, endmembers="nfindr") for s, a in enumerate([0.05, 0.10])]
    records += [_run("deq_no_correction", s, 0.09, endmembers="nfindr") for s in range(2)]
    records += [_run("egunet", 0, 0.3, endmembers="vca")]  # its baseline never ran
    gains = [0.5, 0.5]  # (0.10 - 0.05) / 0.10, (0.20 - 0.10) / 0.20; the ablation:
    # (0.10 - 0.09) / 0.10 = 0.1 and (0.20 - 0.09) / 0.20 = 0.55
    table = gain_table(group(records))
    rows = {row[0]: row[1] for row in table.rows}
    assert rows == {
        "deq": f"+{100 * np.mean(gains):.1f} ± 0.0 % vs snnls_nfindr",
        "deq_no_correction": "+32.5 ± 31.8 % vs snnls_nfindr",
        "egunet": "— (no snnls run)",
    }
    ablations = {t.anchor: t for t in all_tables(records)}["ablations"]
    (row,) = ablations.rows
    assert row[:3] == [
        "scene",
        "deq",
        "deq_no_correction: the learned spectral-spatial correction (D_theta = 0)",
    ]
    assert row[3] == "0.0750 ± 0.0354" and row[4] == "0.0900 ± 0.0000"
    assert row[5] == "0.2333 ± 0.1528 (snnls_nfindr)"
    # a method working in absolute fractions is matched with FCLS, whatever the scene's
    absolute = [dict(r, metrics={**r["metrics"], "result_convention": "absolute"}) for r in records]
    assert gain_table(group(absolute)).rows[0][1] == "+92.5 ± 3.5 % vs nfindr"


def _row(markdown, title, first_cell):
    lines = markdown.split(f"## {title}\n\n", 1)[1].splitlines()
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in table {title!r}")


def test_figures_show_each_method_beside_the_truth(report):
    out, _, files = report
    names = sorted(f.path.name for f in files.figures)
    assert names == ["accuracy_vs_time.png"] + [
        f"{d}_{kind}.png" for d in ("tiny_a", "tiny_b") for kind in ("abundances", "endmembers")
    ]
    assert all(f.path.stat().st_size > 5000 for f in files.figures)
    assert sorted(p.name for p in (out / "figures").iterdir()) == names  # stale one gone


def test_html_is_self_contained(report):
    _, records, files = report
    page = files.html.read_text()
    assert not re.search(r"(src|href)=['\"](?!data:|#)", page)  # no external resource
    assert page.count("<table class='results'") == len(all_tables(records))
    assert page.count("src='data:image/png;base64,") == len(files.figures)


_CHECK = """<script>
window.addEventListener("load", () => {
  const seen = {
    images: [...document.images].map(i => [i.closest("figure").id, i.naturalWidth]),
    tables: [...document.querySelectorAll("table.results")].map(t => [t.id, t.rows.length]),
  };
  const out = document.createElement("pre");
  out.id = "browser-check";
  out.textContent = JSON.stringify(seen);
  document.body.appendChild(out);
});
</script></body>"""


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs chromium (Debian package 'chromium') for the report test")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def test_report_renders_every_table_and_figure_in_a_browser(report, tmp_path):
    _, records, files = report
    probe = tmp_path / "report.html"  # the report plus a script that lists what rendered
    probe.write_text(files.html.read_text().replace("</body>", _CHECK))
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        probe.as_uri(),
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', dom, re.S)
    assert found, f"the page did not finish loading; chromium printed {dom[:500]!r}"
    seen = json.loads(html.unescape(found.group(1)))
    expected_tables = all_tables(records)
    assert [t[0] for t in seen["tables"]] == [t.anchor for t in expected_tables]
    assert [rows for _, rows in seen["tables"]] == [len(t.rows) + 1 for t in expected_tables]
    assert [i[0] for i in seen["images"]] == [f.anchor for f in files.figures]
    assert all(width > 100 for _, width in seen["images"])  # every PNG decoded


def test_benchmarks_md_is_assembled_from_results_and_fragments(report, tmp_path):
    out, records, _ = report
    results = tmp_path / "benchmarks" / "results"
    shutil.copytree(out, results / "bench")
    (results / "speed.md").write_text("### FCLS speed\n\n| a |\n|---|\n| 1 |\n")
    (tmp_path / "speed_bench.py").write_text('OUT = "benchmarks/results/speed.json"\n')
    script = runpy.run_path(str(REPO / "benchmarks" / "make_benchmarks_md.py"))
    text = script["build"](results, tmp_path / "BENCHMARKS.md", tmp_path).read_text()
    assert "Reproduce: `hyperunmix bench --quick`" in text
    assert "`python benchmarks/make_benchmarks_md.py`" in text
    assert text.rstrip().endswith(
        "## Focused benchmarks\n\n### FCLS speed\n\n| a |\n|---|\n| 1 |\n\n"
        "Reproduce: `python benchmarks/speed_bench.py` "
        "(then `python benchmarks/make_benchmarks_md.py`)."
    )
    assert all(f"### {table.title}" in text for table in all_tables(records))
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert len(links) == 5 and all((tmp_path / link).is_file() for link in links)
