"""FCLS speed: hyperunmix's exact batched FCLS against pysptools' per-pixel cvxopt QP.

Same run, same machine, one core each, float64, L = 200 bands (400-2500 nm), Dirichlet(1)
abundances of P USGS spectra at least 0.15 rad apart (from the data directory:
``--data-dir``, else ``$HYPERUNMIX_DATA``, else the user data directory), white noise at
30 dB. Ours
unmixes 1,000,000 pixels, the peer (``pysptools.abundance_maps.amaps.FCLS``, one cvxopt QP
per pixel) the first 20,000 of them; both are reported in microseconds per pixel (wall
clock), with the ratio and the KKT residuals (:func:`hyperunmix.linear.kkt_residual`, 0 at
the exact solution). The whole run takes about 5 minutes on 2 cores.

Agreement: at its default tolerances the peer stops about 1e-3 (up to ~1e-2 on these
ill-conditioned USGS endmembers) from the optimum, so the goal's check (max |A - A_peer|
<= 5e-3) uses the same QP solved by cvxopt with every tolerance at 1e-12 on the first 2,000
pixels, over the pixels cvxopt reports solved; on the others (status "unknown") our cost is
compared with cvxopt's.

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

# One core each: the peer solves one pixel at a time on one core, so our BLAS gets one thread
# too (export OPENBLAS_NUM_THREADS=2 before the command to let it use two). Set before numpy
# is imported, which reads these once.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402  (after the thread settings)

import hyperunmix  # noqa: E402
from hyperunmix._atomic import write_text  # noqa: E402
from hyperunmix.linear import fcls, kkt_residual  # noqa: E402
from hyperunmix.synthetic import make_scene  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
#: Speed-up the issue asks for, per P.
GOALS = {4: 300.0, 16: 100.0}
#: Largest |A - A_peer| accepted (the peer is an interior-point QP exact to about 1e-3).
MAX_DIFFERENCE = 5e-3
MAX_KKT = 1e-8
#: Our fit may not be worse than the reference's on any pixel beyond this relative amount.
MAX_COST_EXCESS = 1e-9
#: The agreement check: the peer's QP by cvxopt at TIGHT_TOLERANCE on this many pixels.
TIGHT_PIXELS = 2000
TIGHT_TOLERANCE = 1e-12


def endmembers(n_endmembers: int, seed: int, data_dir: Path | None) -> np.ndarray:
    """(P, 200) USGS spectra at least 0.15 rad apart."""
    scene = make_scene(
        4, 4, n_endmembers, library="usgs", snr_db=None, seed=seed, data_dir=data_dir
    )
    return scene.truth.endmembers


def mixed_pixels(E: np.ndarray, n_pixels: int, snr_db: float, seed: int) -> np.ndarray:
    """(n_pixels, L) float64 linear mixtures with Dirichlet(1) abundances and white noise
    with 10 log10(sum signal^2 / sum noise^2) = ``snr_db``."""
    rng = np.random.default_rng(seed)
    Y = rng.dirichlet(np.ones(len(E)), n_pixels) @ E
    sigma = np.sqrt(np.mean(Y**2) / 10 ** (snr_db / 10))
    for first in range(0, n_pixels, 1 << 16):  # in place, by slabs: no second copy of Y
        block = Y[first : first + (1 << 16)]
        block += sigma * rng.standard_normal(block.shape)
    return Y


def timed(function, *args):
    """function(*args), its wall-clock and process CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = function(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def peer_fcls(Y: np.ndarray, E: np.ndarray) -> np.ndarray:
    """pysptools' FCLS, as users run it (cvxopt at its default tolerances)."""
    from pysptools.abundance_maps.amaps import FCLS

    return np.asarray(FCLS(Y, E), dtype=np.float64)


def reference_qp(Y: np.ndarray, E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The peer's QP (min 1/2 a'EE'a - (Ey)'a, a >= 0, sum a = 1, by cvxopt, one pixel at a
    time) with every tolerance at TIGHT_TOLERANCE; and whether cvxopt reported it solved."""
    from cvxopt import matrix, solvers

    n_endmembers = len(E)
    options = {
        "show_progress": False,
        "abstol": TIGHT_TOLERANCE,
        "reltol": TIGHT_TOLERANCE,
        "feastol": TIGHT_TOLERANCE,
    }
    gram = matrix(E @ E.T)
    bounds, zeros = matrix(-np.eye(n_endmembers)), matrix(np.zeros(n_endmembers))
    ones, one = matrix(np.ones((1, n_endmembers))), matrix(np.ones(1))
    out = np.empty((len(Y), n_endmembers))
    solved = np.empty(len(Y), dtype=bool)
    for i, y in enumerate(Y):
        answer = solvers.qp(gram, matrix(-(E @ y)), bounds, zeros, ones, one, options=options)
        out[i] = np.asarray(answer["x"]).ravel()
        solved[i] = answer["status"] == "optimal"
    return out, solved


def run_size(
    n_endmembers: int, n_pixels: int, n_peer: int, snr_db: float, seed: int, data_dir: Path | None
) -> dict:
    E = endmembers(n_endmembers, seed, data_dir)
    Y = mixed_pixels(E, n_pixels, snr_db, seed)
    ours, wall, cpu = timed(fcls, Y, E)
    peer, peer_wall, peer_cpu = timed(peer_fcls, Y[:n_peer], E)
    n_tight = min(TIGHT_PIXELS, n_peer)
    reference, solved = reference_qp(Y[:n_tight], E)
    difference = np.max(np.abs(ours[:n_peer] - peer), axis=1)
    cost = np.sum((Y[:n_tight] - ours[:n_tight] @ E) ** 2, axis=1)
    reference_cost = np.sum((Y[:n_tight] - reference @ E) ** 2, axis=1)
    us_ours, us_peer = 1e6 * wall / n_pixels, 1e6 * peer_wall / n_peer
    return {
        "n_endmembers": n_endmembers,
        "n_bands": E.shape[1],
        "pixels": n_pixels,
        "peer_pixels": n_peer,
        "us_per_pixel": us_ours,
        "cpu_us_per_pixel": 1e6 * cpu / n_pixels,
        "peer_us_per_pixel": us_peer,
        "peer_cpu_us_per_pixel": 1e6 * peer_cpu / n_peer,
        "speedup": us_peer / us_ours,
        "max_abs_difference_peer_default": float(difference.max()),
        "median_abs_difference_peer_default": float(np.median(difference)),
        "tight_peer_pixels": n_tight,
        "tight_peer_unsolved": int(np.sum(~solved)),
        "max_abs_difference": float(np.max(np.abs(ours[:n_tight] - reference)[solved])),
        # > 0 where the reference fits a pixel better than ours (never, beyond round-off)
        "max_relative_cost_excess": float(np.max((cost - reference_cost) / reference_cost)),
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
    if row["max_relative_cost_excess"] > MAX_COST_EXCESS:
        missed.append(f"cost {row['max_relative_cost_excess']:.0e} above cvxopt's")
    if row["kkt_residual"] > MAX_KKT:
        missed.append(f"KKT {row['kkt_residual']:.1e} > {MAX_KKT}")
    return missed


def markdown(record: dict) -> str:
    lines = [
        "### FCLS speed: exact batched FCLS vs per-pixel cvxopt (pysptools)",
        "",
        f"float64, L = {record['rows'][0]['n_bands']}, {record['snr_db']:g} dB, Dirichlet(1) "
        f"abundances of USGS spectra >= 0.15 rad apart; "
        f"ours on {record['rows'][0]['pixels']:,} pixels, the peer "
        f"(`pysptools.abundance_maps.amaps.FCLS`, one cvxopt QP per pixel) on the first "
        f"{record['rows'][0]['peer_pixels']:,}. Wall clock, same run, same machine "
        f"({record['machine']['cpus']} cores, load average {record['machine']['load_before']} "
        "before the run), one BLAS thread "
        f"(OPENBLAS_NUM_THREADS={record['machine']['blas_env'].get('OPENBLAS_NUM_THREADS')}): "
        "one core each.",
        "",
        "| P | ours (µs/px) | peer (µs/px) | speed-up | goal | speed-up in CPU time "
        "| KKT residual (ours) "
        "| KKT residual (peer) | max \\|A - A_peer\\| (median), peer defaults "
        "| max \\|A - A_cvxopt\\|, cvxopt at 1e-12 | cost excess vs cvxopt | zero abundances |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        goal = GOALS.get(row["n_endmembers"])
        lines.append(
            f"| {row['n_endmembers']} | {row['us_per_pixel']:.2f} | "
            f"{row['peer_us_per_pixel']:.0f} | {row['speedup']:.0f}x | "
            f"{'-' if goal is None else f'>= {goal:.0f}x'} | "
            f"{row['peer_cpu_us_per_pixel'] / row['cpu_us_per_pixel']:.0f}x | "
            f"{row['kkt_residual']:.1e} | "
            f"{row['peer_kkt_residual']:.1e} | {row['max_abs_difference_peer_default']:.1e} "
            f"({row['median_abs_difference_peer_default']:.1e}) | "
            f"{row['max_abs_difference']:.1e} ({row['tight_peer_unsolved']} unsolved) | "
            f"{row['max_relative_cost_excess']:.0e} | {row['share_of_zero_abundances']:.1%} |"
        )
    missed = [
        f"P = {row['n_endmembers']}: {', '.join(verdicts(row))}"
        for row in record["rows"]
        if verdicts(row)
    ]
    lines += [
        "",
        "Speed-ups are ratios of wall-clock times; the CPU-time ratio (process "
        "time, less sensitive to other load on the machine) is given beside. "
        "The peer at its default tolerances is timed; it stops short of the optimum "
        "(its KKT residual), hence the differences in that column. The same QP solved by "
        f"cvxopt with every tolerance at {TIGHT_TOLERANCE:g} (first "
        f"{record['rows'][0]['tight_peer_pixels']:,} pixels) agrees with ours to the next "
        "column, over the pixels cvxopt reports solved; the cost excess is the largest "
        "relative amount by which our fit is worse than cvxopt's on any pixel (round-off: "
        "ours is never worse).",
        "",
        "Goals (>= 300x at P = 4, >= 100x at P = 16, max |A - A_peer| <= 5e-3, "
        "KKT <= 1e-8): " + ("all met." if not missed else "missed: " + "; ".join(missed)),
        "",
        f"Reproduce: `{record['command']}` ({record['seconds']:.0f} s in all).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=1_000_000)
    parser.add_argument("--peer-pixels", type=int, default=20_000)
    parser.add_argument("--sizes", default="4,8,16", help="values of P, comma-separated")
    parser.add_argument("--snr-db", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data directory (default: $HYPERUNMIX_DATA, else the user data directory)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    load_before = round(os.getloadavg()[0], 2)
    rows = []
    for p in (int(v) for v in args.sizes.split(",")):
        rows.append(
            run_size(
                p,
                args.pixels,
                min(args.peer_pixels, args.pixels),
                args.snr_db,
                args.seed,
                args.data_dir,
            )
        )
        print(f"P = {p}: done", file=sys.stderr, flush=True)
    record = {
        "benchmark": "fcls_speed",
        "command": "python benchmarks/fcls_speed.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "hyperunmix": hyperunmix.__version__,
        "numpy": np.__version__,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_before": load_before,
            "load_after": round(os.getloadavg()[0], 2),
            "blas_env": {
                k: os.environ[k]
                for k in (
                    "OPENBLAS_NUM_THREADS",
                    "OMP_NUM_THREADS",
                    "MKL_NUM_THREADS",
                    "OPENBLAS_CORETYPE",
                    "OPENBLAS_L2_SIZE",
                )
                if k in os.environ
            },
        },
        "snr_db": args.snr_db,
        "seed": args.seed,
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "rows": rows,
        "seconds": time.perf_counter() - start,
    }
    record["command"] = record["command"].strip()
    text = markdown(record)
    write_text(args.out / "fcls_speed.json", json.dumps(record, indent=2) + "\n")
    write_text(args.out / "fcls_speed.md", text)
    print(text)
    return record


if __name__ == "__main__":
    main()
