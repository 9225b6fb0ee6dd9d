"""Accuracy of the classical pipeline: endmember extraction + FCLS or SNNLS on real data,
and HySime's estimate of the number of endmembers.

- VCA and N-FINDR (10 seeds) and ATGP (deterministic) on Samson and Jasper Ridge with the
  true P, then FCLS (absolute fractions) or SNNLS (shares of unit-peak spectra): aRMSE and
  mSAD (radians) after Hungarian matching (:func:`hyperunmix.metrics.evaluate`, in the
  scenes' convention, shares: FCLS maps are converted through their endmembers), mean and
  standard deviation over the seeds.
- HySime's estimate of P on both scenes, and on synthetic scenes: USGS spectra at least
  0.15 rad apart, Dirichlet(1) abundances, 40 x 100 = 4000 pixels, 30 dB white noise,
  P in {3, 5, 8}, 10 seeds each (goal: exact for P = 3 and 5 in at least 9 of 10).

Writes ``benchmarks/results/classical_accuracy.json`` and ``.md`` and prints the tables.

    python benchmarks/classical_accuracy.py [--seeds 10] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

import hyperunmix
from hyperunmix import datasets
from hyperunmix._atomic import write_text
from hyperunmix.linear import hysime
from hyperunmix.metrics import evaluate
from hyperunmix.registry import make_method
from hyperunmix.synthetic import make_scene

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DATASETS = ("samson", "jasper_ridge")
#: label -> (abundance solver, endmember extractor)
PIPELINES = {
    f"{extractor_label} + {solver.upper()}": (solver, extractor)
    for extractor, extractor_label in (("vca", "VCA"), ("nfindr", "N-FINDR"), ("atgp", "ATGP"))
    for solver in ("fcls", "snnls")
}
SYNTHETIC_P = (3, 5, 8)
#: HySime should be exact in at least this share of the seeds for these P.
HYSIME_GOAL = {3: 0.9, 5: 0.9}


def extraction_rows(data_dir: Path, seeds: list[int]) -> list[dict]:
    rows = []
    for name in DATASETS:
        scene = datasets.load(name, data_dir)
        p = scene.truth.n_endmembers
        for label, (solver, extractor) in PIPELINES.items():
            # ATGP has no randomness: one run stands for every seed.
            runs = [
                evaluate(
                    make_method(solver, n_endmembers=p, endmembers=extractor, seed=seed).fit_unmix(
                        scene
                    ),
                    scene.truth,
                )
                for seed in (seeds if extractor != "atgp" else seeds[:1])
            ]
            armse = [run["armse"] for run in runs]
            msad = [run["msad"] for run in runs]
            rows.append(
                {
                    "dataset": name,
                    "method": label,
                    "n_endmembers": p,
                    "runs": len(runs),
                    "armse": armse,
                    "msad": msad,
                    "armse_mean": float(np.mean(armse)),
                    "armse_std": float(np.std(armse)),
                    "msad_mean": float(np.mean(msad)),
                    "msad_std": float(np.std(msad)),
                }
            )
            print(f"{name} {label}: done", file=sys.stderr, flush=True)
    return rows


def hysime_rows(data_dir: Path, seeds: list[int]) -> tuple[list[dict], list[dict]]:
    real = []
    for name in DATASETS:
        scene = datasets.load(name, data_dir)
        real.append(
            {
                "dataset": name,
                "true_p": scene.truth.n_endmembers,
                "estimate": hysime(scene.pixels())[0],
            }
        )
    synthetic = []
    for p in SYNTHETIC_P:
        estimates = [
            hysime(
                make_scene(
                    40,
                    100,
                    p,
                    library="usgs",
                    min_angle=0.15,
                    alpha=1.0,
                    snr_db=30.0,
                    seed=seed,
                    data_dir=data_dir,
                ).pixels()
            )[0]
            for seed in seeds
        ]
        synthetic.append(
            {
                "true_p": p,
                "estimates": estimates,
                "exact": int(sum(e == p for e in estimates)),
                "seeds": len(seeds),
            }
        )
    return real, synthetic


def markdown(record: dict) -> str:
    lines = [
        "### Classical unmixing accuracy (extraction + FCLS or SNNLS, HySime)",
        "",
        "Endmembers extracted with the true P, then exact FCLS (absolute fractions) or "
        "SNNLS (shares of unit-peak spectra) abundances; aRMSE and mSAD (radians) after "
        "Hungarian matching, scored in the scenes' convention (shares; FCLS maps converted "
        "through their endmembers), mean ± std over "
        f"{record['seeds']} seeds (ATGP is deterministic: one run).",
        "",
        "| dataset | method | aRMSE | mSAD (rad) |",
        "|---|---|---|---|",
    ]
    for row in record["extraction"]:
        lines.append(
            f"| {row['dataset']} | {row['method']} | {row['armse_mean']:.4f} ± "
            f"{row['armse_std']:.4f} | {row['msad_mean']:.4f} ± {row['msad_std']:.4f} |"
        )
    lines += [
        "",
        "HySime's estimate of the number of endmembers:",
        "",
        "| scene | true P | estimates | exact |",
        "|---|---|---|---|",
    ]
    for row in record["hysime_real"]:
        lines.append(
            f"| {row['dataset']} | {row['true_p']} | {row['estimate']} | "
            f"{'yes' if row['estimate'] == row['true_p'] else 'no'} |"
        )
    for row in record["hysime_synthetic"]:
        counts = {e: row["estimates"].count(e) for e in sorted(set(row["estimates"]))}
        spread = ", ".join(f"{e}: {n}x" for e, n in counts.items())
        share = HYSIME_GOAL.get(row["true_p"])
        goal = None if share is None else math.ceil(share * row["seeds"])
        verdict = (
            ""
            if goal is None
            else (" (goal met)" if row["exact"] >= goal else f" (goal: >= {goal})")
        )
        lines.append(
            f"| synthetic USGS, 4000 px, 30 dB | {row['true_p']} | {spread} | "
            f"{row['exact']}/{row['seeds']}{verdict} |"
        )
    lines += ["", f"Reproduce: `{record['command']}` ({record['seconds']:.0f} s in all).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data directory (default: $HYPERUNMIX_DATA, else the user data directory)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    seeds = list(range(args.seeds))
    extraction = extraction_rows(args.data_dir, seeds)
    hysime_real, hysime_synthetic = hysime_rows(args.data_dir, seeds)
    record = {
        "benchmark": "classical_accuracy",
        "command": (
            "python benchmarks/classical_accuracy.py "
            + " ".join(sys.argv[1:] if argv is None else argv)
        ).strip(),
        "hyperunmix": hyperunmix.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "seeds": args.seeds,
        "extraction": extraction,
        "hysime_real": hysime_real,
        "hysime_synthetic": hysime_synthetic,
        "seconds": time.perf_counter() - start,
    }
    text = markdown(record)
    write_text(args.out / "classical_accuracy.json", json.dumps(record, indent=2) + "\n")
    write_text(args.out / "classical_accuracy.md", text)
    print(text)
    return record


if __name__ == "__main__":
    main()
