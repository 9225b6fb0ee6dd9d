"""DEQ-Unmix's chunked maps against its in-memory ones on a small crop, at two stops of
the inference iteration (issue 16).

A 64 x 64 crop from the interior of a 124 x 128 synthetic EMIT-layout scene (the recipe of
``scene_scale.py``), DEQ-Unmix trained on it for each ``--epochs`` (seed 0, early stopping
on), then unmixed in memory and in 32-px chunks (``unmix_large``) with the inference stop
(the largest per-pixel change, ``_INFERENCE_TOL``) at 1e-6 (the default) and at 1e-7.
Prints the largest difference of the two maps for each.

Reproduce: ``python benchmarks/deq_chunk_agreement.py --epochs 17 40``
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from scene_scale import write_emit_scene

from hyperunmix.deep import deq
from hyperunmix.registry import make_method
from hyperunmix.scale import drop_bad_bands, open_cube, open_maps, unmix_large
from hyperunmix.scene import Scene

CROP, CHUNKS = 64, 32
STOPS = (1e-6, 1e-7)


def crop_scene(tmp: Path) -> Scene:
    path = tmp / "scene.nc"
    write_emit_scene(path, 124, 128)
    cube = drop_bad_bands(open_cube(path))
    top, left = (cube.sizes["y"] - CROP) // 2, (cube.sizes["x"] - CROP) // 2
    window = cube.isel(y=slice(top, top + CROP), x=slice(left, left + CROP))
    return Scene(np.asarray(window.values), name="crop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[17, 40])
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        scene = crop_scene(tmp)
        for epochs in args.epochs:
            model = make_method("deq", n_endmembers=5, seed=0, epochs=epochs).fit(scene)
            for stop in STOPS:
                deq._INFERENCE_TOL = stop
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    expected = model.unmix(scene).abundances
                    run = unmix_large(scene, model, tmp / f"{epochs}-{stop}.zarr", chunks=CHUNKS)
                actual = open_maps(run.out)["abundances"].values
                print(
                    f"epochs {model.n_epochs_} of {epochs}, stop {stop:g}: largest difference "
                    f"{np.nanmax(np.abs(actual - expected)):.2e}, "
                    f"{len(caught)} convergence warnings"
                )


if __name__ == "__main__":
    main()
