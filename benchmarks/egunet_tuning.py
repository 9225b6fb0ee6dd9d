"""Quick EGU-Net experiments: variants and options against VCA + FCLS with the same reference.

Not the committed benchmark (that is ``hyperunmix bench``); a tool to check that a setting
helps on every scene before it becomes a default. One line of JSON per run on stdout.

    python benchmarks/egunet_tuning.py --scenes samson,jasper_ridge,synthetic \
        --variants pw,ss --seeds 0,1,2 [--set epochs=100 --set bn_stats=running]

``--set endmembers=library`` takes the reference endmembers from the dataset's bundle
library (material means).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import hyperunmix as hu
from hyperunmix import datasets, synthetic
from hyperunmix.deep.egunet import EGUNet
from hyperunmix.deep.pure_pixels import resolve_reference
from hyperunmix.linear import fcls


def load_scene(name: str) -> hu.Scene:
    """A real dataset by name, or ``synthetic`` (linear) / ``synthetic_gbm`` (bilinear):
    64 x 64, 4 materials, smooth fields, 30 dB."""
    if name.startswith("synthetic"):
        mixing = "gbm" if name.endswith("gbm") else "linear"
        return synthetic.make_scene(
            64, 64, 4, abundances="fields", mixing=mixing, snr_db=30.0, seed=7
        )
    return datasets.load(name)


def score(
    abundances: np.ndarray, endmembers: np.ndarray | None, scene: hu.Scene, method: str
) -> dict:
    result = hu.Result(
        abundances=abundances.astype(np.float32),
        endmembers=endmembers,
        method=method,
        mask=scene.mask,
    )
    metrics = hu.evaluate(result, scene.truth)
    return {
        "armse": round(metrics["armse"], 4),
        "msad": None if metrics["msad"] is None else round(metrics["msad"], 4),
    }


def parse_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return None if text == "None" else text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", default="samson,jasper_ridge")
    parser.add_argument("--variants", default="pw,ss")
    parser.add_argument("--seeds", default="0")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an EGUNet parameter, repeatable",
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}

    for scene_name in args.scenes.split(","):
        scene = load_scene(scene_name)
        p = scene.truth.n_endmembers
        scene_options = dict(options)
        if options.get("endmembers") == "library":
            scene_options["endmembers"] = datasets.load_library(scene_name)
        for seed in map(int, args.seeds.split(",")):
            reference = resolve_reference(scene_options.get("endmembers"), scene, p, seed=seed)
            baseline = scene.to_image(fcls(scene.pixels(), reference))
            print(
                json.dumps(
                    {
                        "scene": scene_name,
                        "method": "vca+fcls",
                        "seed": seed,
                        **score(baseline, reference, scene, "fcls"),
                    }
                ),
                flush=True,
            )
            for variant in args.variants.split(","):
                model = EGUNet(p, variant=variant, seed=seed, **scene_options)
                start, cpu_start = time.perf_counter(), time.process_time()
                result = model.fit_unmix(scene)
                cpu_seconds = time.process_time() - cpu_start
                print(
                    json.dumps(
                        {
                            "scene": scene_name,
                            "method": f"egunet-{variant}",
                            "seed": seed,
                            **score(result.abundances, result.endmembers, scene, "egunet"),
                            "seconds": round(time.perf_counter() - start, 1),
                            "cpu_seconds": round(cpu_seconds, 1),
                            "final_ce": round(model.history_[-1]["cross_entropy"], 4),
                            "final_rec": round(model.history_[-1]["reconstruction"], 6),
                            "options": options,
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
