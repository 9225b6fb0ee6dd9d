"""DEQ-Unmix's training signal: the loss on the image itself against SURE, on tuning scenes.

    python benchmarks/deq_training_signal.py [--seeds 0] [--epochs 40] [--spatial-epochs 5]
        [--variants "fit;fit, no correction"] [--refine-fraction 0.04] [--size 100] [--out PATH]

The question (issue 14): which training signal gives abundances better than the matched
baseline's (N-FINDR + FCLS: same start, same convention), and does the learned correction
add to them? Measured here: the paper's loss on the image itself (``loss="fit"``: mean SAD
+ alpha MSE, the default of :class:`hyperunmix.deep.deq.DEQUnmix`) and Stein's unbiased
risk estimate of the whitened error against the noise-free image (``"sure"``, whose
minimiser over the abundances is no longer the per-pixel fit, so that the correction can
lower it), each with and without the correction (its ablation) and from the averaged start
(``endmember_averaging=0.01``, the former default; "sure, averaged start" is the former
default as a whole). All runs use the exact form of the iteration and 32 x 32 patches.

Scenes: the tuning catalogue (:func:`hyperunmix.bench.scenes.tuning_catalogue`, scene seed
7001, disjoint from the benchmark's) and its linear and USGS recipes at 15 dB, and the
``spatial2`` maps (100 x 100, nine USGS spectra, the recipe of the benchmark's spatial
scenes) made with scene seed 7001 (other spectra and noise than the benchmark's
2024) at 15, 20 and 30 dB, trained ``--spatial-epochs`` epochs (the benchmark's budget
there; the averaged starts are not run there, for time). No real scene. Writes
``benchmarks/results/deq_training_signal.json`` and ``.md`` (``--out``).

"fit, then recorrupted" is the two-phase training: the fit as in "fit", then 30 epochs
that train the correction alone, the endmembers frozen, with the recorrupted loss
(``correction_epochs``), so that the noise-aware loss cannot move the endmembers the wrong
way. Measured with ``--seeds 0,1 --variants "fit;fit, no correction;fit, then recorrupted"
--out benchmarks/results/deq_two_phase``, which writes
``benchmarks/results/deq_two_phase.json`` and ``.md``.

"fit, re-estimated start" starts from N-FINDR's spectra re-estimated as EGU-Net's and ID-Net's
references are (``refine_fraction``, ``--refine-fraction``: for each material, the mean of
that fraction of the pixels with the largest SNNLS share of it on the unit-peak spectra);
"FCLS, re-estimated start" is FCLS on that start, untrained (what all the training must
beat), with the method seed's N-FINDR. Measured with ``--seeds 0,1 --variants "fit;fit, no
correction;fit, re-estimated start;fit, re-estimated start, no correction;FCLS,
re-estimated start" --out benchmarks/results/deq_refined_start``.

"lr_E r" trains the endmembers at ``lr_endmembers=r`` (0.007 in the other variants, the
default before 0.0005) from the re-estimated start ("then recorrupted": and the two-phase
training's 30 epochs of the correction alone); "held" keeps them at the start (a
learning rate of 1e-12) so that only the correction learns, with the recorrupted loss or
SURE; "FCLS, re-estimated start, noise-free image" applies FCLS on the start (estimated from
the noisy image) to the scene without its noise: what a correction that removed all the
noise could reach. Measured with ``--seeds 0,1 --variants "fit, re-estimated start;FCLS,
re-estimated start;FCLS, re-estimated start, noise-free image;fit, re-estimated start, lr_E
0.002;fit, re-estimated start, lr_E 0.002, no correction;fit, re-estimated start, lr_E
0.0005;fit, re-estimated start, lr_E 0.0005, no correction;fit, re-estimated start, lr_E
0.00025;fit, re-estimated start, lr_E 0.0005, then recorrupted;recorrupted, re-estimated
start, held;sure, re-estimated start, held;recorrupted, re-estimated start, lr_E 0.001;scaled,
re-estimated start, lr_E 0.007;scaled, re-estimated start, lr_E 0.0005;scaled, re-estimated
start, lr_E 0.0005, no correction" --out benchmarks/results/deq_endmember_rate``
("scaled": ``data_term="scaled"``, the shares convention, from the same start). The same
learning rates with the 100 x 100 scenes trained 40 epochs: ``--seeds 0,1 --spatial-epochs 40
--variants "fit, re-estimated start;fit, re-estimated start, lr_E 0.002;fit, re-estimated
start, lr_E 0.0005" --out benchmarks/results/deq_rate_long_training``. Every scene 100 x 100
(``--size``: the catalogue's made that size, named ``..._100px``; the spatial ones already
are), so that every run takes about 400 steps as on a real scene: ``--seeds 0,1 --size 100
--spatial-epochs 40 --variants "fit, re-estimated start;fit, re-estimated start, lr_E
0.004;fit, re-estimated start, lr_E 0.002;fit, re-estimated start, lr_E 0.0005" --out
benchmarks/results/deq_rate_realistic_size``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import hyperunmix as hu
from hyperunmix._atomic import write_text
from hyperunmix.bench.scenes import SPATIAL_SCENES, SceneSpec, tuning_catalogue
from hyperunmix.conventions import unit_peak
from hyperunmix.deep.egunet_reference import refined_reference
from hyperunmix.linear.estimators import resolve_endmembers

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "deq_training_signal"
TITLE = "DEQ-Unmix's training signal (tuning scenes)"
TUNING_SEED = 7001
#: Parameters of every variant, which the variants' own override: N-FINDR's spectra as
#: extracted (the default before ``refine_fraction=0.04``) and the endmembers' learning rate
#: before ``lr_endmembers=0.0005``, so that the tables made before them are reproduced.
BASE = {"refine_fraction": None, "lr_endmembers": 0.007}
#: variant -> DEQUnmix parameters (besides n_endmembers, seed, epochs and BASE).
VARIANTS: dict[str, dict] = {
    "fit": {},
    "fit, no correction": {"correction": False},
    "fit, averaged start": {"endmember_averaging": 0.01},
    "sure": {"loss": "sure"},
    "sure, no correction": {"loss": "sure", "correction": False},
    "sure, averaged start": {"loss": "sure", "endmember_averaging": 0.01},
    "fit, then recorrupted": {"correction_epochs": 30, "correction_loss": "recorrupted"},
    # refine_fraction: set by --refine-fraction
    "fit, re-estimated start": {"refine_fraction": None},
    "fit, re-estimated start, no correction": {"refine_fraction": None, "correction": False},
    "FCLS, re-estimated start": {"refine_fraction": None},
    "FCLS, re-estimated start, noise-free image": {"refine_fraction": None},
    **{
        f"fit, re-estimated start, lr_E {rate}{tag}": {
            "refine_fraction": None,
            "lr_endmembers": rate,
            **({"correction": False} if tag else {}),
        }
        for rate in (0.004, 0.002, 0.001, 0.0005, 0.00025)
        for tag in ("", ", no correction")
    },
    # held: a learning rate of 1e-12 moves the endmembers by about 1e-12 per step
    **{
        f"{loss}, re-estimated start, held": {
            "refine_fraction": None,
            "lr_endmembers": 1e-12,
            "loss": loss,
        }
        for loss in ("recorrupted", "sure")
    },
    **{
        f"scaled, re-estimated start, lr_E {rate}{tag}": {
            "refine_fraction": None,
            "data_term": "scaled",
            "lr_endmembers": rate,
            **({"correction": False} if tag else {}),
        }
        for rate in (0.007, 0.0005)
        for tag in ("", ", no correction")
    },
    "fit, re-estimated start, lr_E 0.0005, then recorrupted": {
        "refine_fraction": None,
        "lr_endmembers": 0.0005,
        "correction_epochs": 30,
        "correction_loss": "recorrupted",
    },
    "recorrupted, re-estimated start, lr_E 0.001": {
        "refine_fraction": None,
        "lr_endmembers": 0.001,
        "loss": "recorrupted",
    },
}
#: Variants that are not trained: FCLS on DEQ-Unmix's start, applied to the image or to the
#: scene's noise-free image (what a correction that removed all the noise could reach).
UNTRAINED = ("FCLS, re-estimated start", "FCLS, re-estimated start, noise-free image")
#: Untrained variants applied to the noise-free image.
NOISE_FREE = ("FCLS, re-estimated start, noise-free image",)
#: Variants not run on the spatial scenes (see the module notes).
NOT_ON_SPATIAL = ("fit, averaged start", "sure, averaged start")


def scenes(size: int | None = None) -> dict[str, SceneSpec]:
    """The tuning catalogue, its linear and USGS recipes at 15 dB, and the spatial recipe
    at 15, 20 and 30 dB, all with the tuning scene seed; the catalogue's scenes made ``size``
    x ``size`` pixels (named ``..._<size>px``) when ``size`` is given."""
    catalogue = tuning_catalogue((TUNING_SEED,))
    for family in ("linear", "usgs"):
        base = catalogue[f"tune_{family}_20db_s{TUNING_SEED}"]
        name = f"tune_{family}_15db_s{TUNING_SEED}"
        catalogue[name] = SceneSpec(name, base.kind, {**base.options, "snr_db": 15.0})
    if size is not None:
        catalogue = {
            f"{name}_{size}px": SceneSpec(
                f"{name}_{size}px", spec.kind, {**spec.options, "n_rows": size, "n_cols": size}
            )
            for name, spec in catalogue.items()
        }
    recipe = SPATIAL_SCENES["synthetic_spatial_15db"]
    for snr in (15, 20, 30):
        name = f"tune_spatial_{snr}db_s{TUNING_SEED}"
        options = {**recipe, "snr_db": float(snr), "seed": TUNING_SEED}
        catalogue[name] = SceneSpec(name, "synthetic", options)
    return catalogue


def noise_free(spec: SceneSpec) -> hu.Scene:
    """The scene of ``spec`` without its noise (same abundances and endmembers: the noise is
    drawn last)."""
    return SceneSpec(spec.name, spec.kind, {**spec.options, "snr_db": None}).build()


def score(model: hu.Unmixer, scene: hu.Scene) -> dict[str, float]:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # solver-tolerance warnings of short runs
        result = model.fit_unmix(scene)
    metrics = hu.evaluate(result, scene.truth)
    return {
        "armse": metrics["armse"],
        "msad": metrics["msad"],
        "seconds": time.perf_counter() - start,
    }


def refined_start_fcls(
    scene: hu.Scene, p: int, seed: int, fraction: float, applied_to: hu.Scene | None = None
) -> dict[str, float]:
    """FCLS on the start of ``DEQUnmix(p, seed=seed, refine_fraction=fraction)`` fitted to
    ``scene``, applied to ``applied_to`` (default: ``scene``; its truth scores it)."""
    pixels = scene.pixels(np.float64)
    extracted = resolve_endmembers("nfindr", scene, p, seed)
    start = refined_reference(pixels, unit_peak(extracted), fraction)
    target = scene if applied_to is None else applied_to
    return score(hu.make_method("fcls", n_endmembers=p, endmembers=start), target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0", help="method seeds, comma-separated")
    parser.add_argument("--epochs", type=int, default=40, help="epochs (the default's)")
    parser.add_argument(
        "--spatial-epochs", type=int, default=5, help="epochs on the 100 x 100 scenes"
    )
    parser.add_argument(
        "--variants",
        default=";".join(VARIANTS),
        help="variants to run, separated by ';' (default: all)",
    )
    parser.add_argument(
        "--refine-fraction", type=float, default=0.04, help="of the re-estimated start"
    )
    parser.add_argument(
        "--size", type=int, default=None, help="rows and columns of the catalogue's scenes"
    )
    parser.add_argument("--out", default=str(OUT), help="results path, without suffix")
    parser.add_argument("--title", default=TITLE, help="heading of the Markdown table")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    chosen = {name: {**BASE, **VARIANTS[name]} for name in args.variants.split(";")}
    for name, params in chosen.items():
        if "refine_fraction" in VARIANTS[name]:
            params["refine_fraction"] = args.refine_fraction
    out = Path(args.out)
    torch.set_num_threads(1)
    rows = []
    for name, spec in scenes(args.size).items():
        scene = spec.build()
        assert scene.truth is not None
        p = scene.truth.n_endmembers
        spatial = name.startswith("tune_spatial")
        epochs = args.spatial_epochs if spatial else args.epochs
        runs = {"N-FINDR + FCLS": [score(hu.make_method("nfindr", n_endmembers=p), scene)]}
        for variant, params in chosen.items():
            if spatial and variant in NOT_ON_SPATIAL:
                continue
            if variant in UNTRAINED:
                fraction = params["refine_fraction"]
                clean = noise_free(spec) if variant in NOISE_FREE else None
                runs[variant] = [refined_start_fcls(scene, p, s, fraction, clean) for s in seeds]
                continue
            runs[variant] = [
                score(
                    hu.make_method(
                        "deq", n_endmembers=p, seed=s, epochs=epochs, device="cpu", **params
                    ),
                    scene,
                )
                for s in seeds
            ]
        for variant, results in runs.items():
            armse = [r["armse"] for r in results]
            rows.append(
                {
                    "scene": name,
                    "variant": variant,
                    "epochs": epochs,
                    "armse_mean": float(np.mean(armse)),
                    "armse_std": float(np.std(armse)),
                    "msad_mean": float(np.mean([r["msad"] for r in results])),
                    "seconds": float(np.mean([r["seconds"] for r in results])),
                }
            )
            print(f"{name:28s} {variant:38s} aRMSE {rows[-1]['armse_mean']:.4f}", flush=True)
    command = "python benchmarks/deq_training_signal.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    write_text(
        out.with_name(out.name + ".json"),
        json.dumps({"command": command.strip(), "rows": rows}, indent=2) + "\n",
    )
    table = markdown(rows, command.strip(), seeds, list(chosen), args.title)
    write_text(out.with_name(out.name + ".md"), table)
    return 0


def markdown(
    rows: list[dict], command: str, seeds: list[int], run_variants: list[str], title: str = TITLE
) -> str:
    variants = ["N-FINDR + FCLS", *run_variants]
    by_scene: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_scene.setdefault(row["scene"], {})[row["variant"]] = row
    lines = [
        f"### {title}",
        "",
        f"`{command}`: aRMSE (mSAD in rad) in the scene's convention, method seeds "
        f"{', '.join(map(str, seeds))}; epochs per scene in the last column; - : not run "
        "(see the script).",
        "",
        "| scene | " + " | ".join(variants) + " | epochs |",
        "|---|" + "---|" * (len(variants) + 1),
    ]
    for scene, cells in by_scene.items():
        lines.append(
            f"| {scene} | "
            + " | ".join(
                f"{cells[v]['armse_mean']:.4f} ({cells[v]['msad_mean']:.3f})" if v in cells else "-"
                for v in variants
            )
            + f" | {max(c['epochs'] for c in cells.values())} |"
        )
    for label, names in (
        ("mean, all scenes", [v for v in variants if v not in NOT_ON_SPATIAL]),
        ("mean, without the spatial ones", variants),
    ):
        spatial = label == "mean, all scenes"
        chosen = [c for s, c in by_scene.items() if spatial or not s.startswith("tune_spatial")]
        cells = [
            f"**{np.mean([c[v]['armse_mean'] for c in chosen]):.4f}**" if v in names else "-"
            for v in variants
        ]
        lines.append(f"| **{label}** | " + " | ".join(cells) + " | |")
    baseline = "N-FINDR + FCLS"
    worse = [
        sum(c[v]["armse_mean"] > c[baseline]["armse_mean"] for c in by_scene.values() if v in c)
        for v in variants
    ]
    run = [sum(v in c for c in by_scene.values()) for v in variants]
    lines.append(
        f"| **scenes worse than {baseline}** | "
        + " | ".join(f"{w} of {n}" for w, n in zip(worse, run))
        + " | |"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
