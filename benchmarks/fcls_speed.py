"""FCLS speed: hyperunmix's exact batched FCLS against pysptools' per-pixel cvxopt QP.

Same run, same machine, float64, L = 200 bands (400-2500 nm), Dirichlet(1) abundances of P
USGS spectra at least 0.15 rad apart (from the data directory: ``--data-dir``,
``$HYPERUNMIX_DATA`` or ``../shared/data``), white noise at 30 dB. Ours unmixes 1,000,000 pixels, the peer
(``pysptools.abundance_maps.amaps.FCLS``, one cvxopt QP per pixel) the first 20,000 of them;
both are reported in microseconds per pixel (wall clock), with the ratio and the KKT
residuals (:func:`hyperunmix.linear.kkt_residual`, 0 at the exact solution).

Agreement: at its default tolerances the peer stops about 1e-3 (up to ~1e-2 on these
ill-conditioned USGS endmembers) from the optimum, so the largest difference is also
measured against the same peer with cvxopt's tolerances tightened to 1e-12 on the first
2,000 pixels: that one is the goal's check (max |A - A_peer| <= 5e-3).

Writes ``benchmarks/results/fcls_speed.json`` and ``fcls_speed.md`` and prints the table.

    python benchmarks/fcls_speed.py                                   # the committed run
    python benchmarks/fcls_speed.py --pixels 100000 --peer-pixels 2000   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import hyperunmix
from hyperunmix._atomic import write_text
from hyperunmix.linear import fcls, kkt_residual
from hyperunmix.synthetic import make_scene

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
#: Speed-up the issue asks for, per P.
GOALS = {4: 300.0, 16: 100.0}
#: Largest |A - A_peer| accepted (the peer is an interior-point QP exact to about 1e-3).
MAX_DIFFERENCE = 5e-3
MAX_KKT = 1e-8
#: The agreement check: the peer with cvxopt's tolerances at TIGHT_TOLERANCE on this many pixels.
TIGHT_PIXELS = 2000
TIGHT_TOLERANCE = 1e-12


def endmembers(n_endmembers: int, seed: int, data_dir: Path) -> np.ndarray:
    """(P, 200) USGS spectra at least 0.15 rad apart."""
    scene = make_scene(4, 4, n_endmembers, library="usgs", snr_db=None, seed=seed,
                       data_dir=data_dir)
    return scene.truth.endmembers


def mixed_pixels(E: np.ndarray, n_pixels: int, snr_db: float, seed: int) -> np.ndarray:
    """(n_pixels, L) float64 linear mixtures with Dirichlet(1) abundances and white noise
    with 10 log10(sum signal^2 / sum noise^2) = ``snr_db``."""
    rng = np.random.default_rng(seed)
    Y = rng.dirichlet(np.ones(len(E)), n_pixels) @ E
    sigma = np.sqrt(np.mean(Y ** 2) / 10 ** (snr_db / 10))
    for first in range(0, n_pixels, 1 << 16):  # in place, by slabs: no second copy of Y
        block = Y[first:first + (1 << 16)]
        block += sigma * rng.standard_normal(block.shape)
    return Y


def timed(function, *args):
    """function(*args), its wall-clock and process CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = function(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def peer_fcls(Y: np.ndarray, E: np.ndarray, tolerance: float | None = None) -> np.ndarray:
    """pysptools' FCLS, at cvxopt's default tolerances or all of them set to ``tolerance``."""
    from cvxopt import solvers
    from pysptools.abundance_maps.amaps import FCLS

    saved = dict(solvers.options)
    if tolerance is not None:
        solvers.options.update(abstol=tolerance, reltol=tolerance, feastol=tolerance)
    try:
        return np.asarray(FCLS(Y, E), dtype=np.float64)
    finally:
        solvers.options.clear()
        solvers.options.update(saved)


def run_size(n_endmembers: int, n_pixels: int, n_peer: int, snr_db: float, seed: int,
             data_dir: Path) -> dict:
    E = endmembers(n_endmembers, seed, data_dir)
    Y = mixed_pixels(E, n_pixels, snr_db, seed)
    ours, wall, cpu = timed(fcls, Y, E)
    peer, peer_wall, peer_cpu = timed(peer_fcls, Y[:n_peer], E)
    n_tight = min(TIGHT_PIXELS, n_peer)
    tight_peer = peer_fcls(Y[:n_tight], E, TIGHT_TOLERANCE)
    difference = np.max(np.abs(ours[:n_peer] - peer), axis=1)
    us_ours, us_peer = 1e6 * wall / n_pixels, 1e6 * peer_wall / n_peer
    return {
        "n_endmembers": n_endmembers, "n_bands": E.shape[1],
        "pixels": n_pixels, "peer_pixels": n_peer,
        "us_per_pixel": us_ours, "cpu_us_per_pixel": 1e6 * cpu / n_pixels,
        "peer_us_per_pixel": us_peer, "peer_cpu_us_per_pixel": 1e6 * peer_cpu / n_peer,
        "speedup": us_peer / us_ours,
        "max_abs_difference_peer_default": float(difference.max()),
        "median_abs_difference_peer_default": float(np.median(difference)),
        "tight_peer_pixels": n_tight,
        "max_abs_difference": float(np.max(np.abs(ours[:n_tight] - tight_peer))),
        "kkt_residual": kkt_residual(Y, E, ours),
        "peer_kkt_residual": kkt_residual(Y[:n_peer], E, peer),
        "share_of_zero_abundances": float(np.mean(ours == 0)),
    }


def verdicts(row: dict) -> list[str]:
    """The goals a row misses (empty when it meets them all)."""
    missed = []
    goal = GOALS.get(row["n_endmembers"])
    if goal is not None and row["speedup"] < goal:
        missed.append(f"speed-up {row['speedup']:.0f}x < {goal:.0f}x")
    if row["max_abs_difference"] > MAX_DIFFERENCE:
        missed.append(f"max |A - A_peer| {row['max_abs_difference']:.1e} > {MAX_DIFFERENCE}")
    if row["kkt_residual"] > MAX_KKT:
        missed.append(f"KKT {row['kkt_residual']:.1e} > {MAX_KKT}")
    return missed


def markdown(record: dict) -> str:
    lines = [
        "## FCLS speed: exact batched FCLS vs per-pixel cvxopt (pysptools)",
        "",
        f"float64, L = {record['rows'][0]['n_bands']}, {record['snr_db']:g} dB, Dirichlet(1) "
        f"abundances of USGS spectra >= 0.15 rad apart; "
        f"ours on {record['rows'][0]['pixels']:,} pixels, the peer "
        f"(`pysptools.abundance_maps.amaps.FCLS`, one cvxopt QP per pixel) on the first "
        f"{record['rows'][0]['peer_pixels']:,}. Wall clock, same run, same machine "
        f"({record['machine']['cpus']} cores, load average {record['machine']['load_before']} "
        "before the run).",
        "",
        "| P | ours (µs/px) | peer (µs/px) | speed-up | goal | KKT residual (ours) "
        "| KKT residual (peer) | max \\|A - A_peer\\| (median), peer defaults "
        "| max \\|A - A_peer\\|, peer at 1e-12 | zero abundances |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        goal = GOALS.get(row["n_endmembers"])
        lines.append(
            f"| {row['n_endmembers']} | {row['us_per_pixel']:.2f} | "
            f"{row['peer_us_per_pixel']:.0f} | {row['speedup']:.0f}x | "
            f"{'-' if goal is None else f'>= {goal:.0f}x'} | {row['kkt_residual']:.1e} | "
            f"{row['peer_kkt_residual']:.1e} | {row['max_abs_difference_peer_default']:.1e} "
            f"({row['median_abs_difference_peer_default']:.1e}) | "
            f"{row['max_abs_difference']:.1e} | {row['share_of_zero_abundances']:.1%} |")
    missed = [f"P = {row['n_endmembers']}: {', '.join(verdicts(row))}"
              for row in record["rows"] if verdicts(row)]
    lines += ["", "The peer at its default tolerances is timed; it stops short of the optimum "
              "(its KKT residual), hence the differences in that column. Against the same peer "
              f"with cvxopt's tolerances at {TIGHT_TOLERANCE:g} (first "
              f"{record['rows'][0]['tight_peer_pixels']:,} pixels) the two agree to the next "
              "column.",
              "", "Goals (>= 300x at P = 4, >= 100x at P = 16, max |A - A_peer| <= 5e-3, "
              "KKT <= 1e-8): " + ("all met." if not missed else "missed: " + "; ".join(missed)),
              "", f"Command: `{record['command']}` ({record['seconds']:.0f} s in all).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=1_000_000)
    parser.add_argument("--peer-pixels", type=int, default=20_000)
    parser.add_argument("--sizes", default="4,8,16", help="values of P, comma-separated")
    parser.add_argument("--snr-db", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get(
        "HYPERUNMIX_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    load_before = round(os.getloadavg()[0], 2)
    rows = []
    for p in (int(v) for v in args.sizes.split(",")):
        rows.append(run_size(p, args.pixels, min(args.peer_pixels, args.pixels), args.snr_db,
                             args.seed, args.data_dir))
        print(f"P = {p}: done", file=sys.stderr, flush=True)
    record = {
        "benchmark": "fcls_speed",
        "command": "python benchmarks/fcls_speed.py " + " ".join(sys.argv[1:] if argv is None
                                                                 else argv),
        "hyperunmix": hyperunmix.__version__, "numpy": np.__version__,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_before": load_before, "load_after": round(os.getloadavg()[0], 2),
                    "blas_threads_env": {k: os.environ[k] for k in
                                         ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                          "OPENBLAS_CORETYPE") if k in os.environ}},
        "snr_db": args.snr_db, "seed": args.seed,
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "rows": rows, "seconds": time.perf_counter() - start,
    }
    record["command"] = record["command"].strip()
    text = markdown(record)
    write_text(args.out / "fcls_speed.json", json.dumps(record, indent=2) + "\n")
    write_text(args.out / "fcls_speed.md", text)
    print(text)
    return record


if __name__ == "__main__":
    main()
