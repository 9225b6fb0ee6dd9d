"""EGU-Net's pseudo-pure set on an EMIT-like sample: the per-block VCA's cost (issue 16).

    python benchmarks/egunet_pure_set_speed.py [--pixels 20000 100000]

A square crop of the synthetic scene of ``benchmarks/scene_scale.py`` (P = 5, 30 dB) on
EMIT's 243 good bands, of about N pixels, the size of a fit sample. Times
:func:`~hyperunmix.deep.pure_pixels.block_endmembers` (one VCA per 5 x 5 block) as it is,
where the 25-pixel blocks' axes come from their thin SVD, and with the L x L
eigendecomposition of the band covariance in its place (axes signed by the same rule),
and checks that both give the same spectra. One thread; prints a line per size.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scene_scale  # noqa: E402

from hyperunmix.deep.pure_pixels import block_endmembers  # noqa: E402
from hyperunmix.linear._arrays import signed_by_largest  # noqa: E402

VCA = importlib.import_module("hyperunmix.linear.vca")  # the module, not the function


def emit_like(n_pixels: int) -> np.ndarray:
    """(s, s, 243) float32 crop of about ``n_pixels`` of the scene-scale scene."""
    side = round(np.sqrt(n_pixels))
    wl = scene_scale.wavelengths()
    good = ~(((wl > 1320) & (wl < 1440)) | ((wl > 1770) & (wl < 1960)))
    rows = np.arange(300, 300 + side)  # below the no-data corner
    return scene_scale.scene_block(rows, side, scene_scale.endmember_spectra())[..., good]


def eigh_axes(X: np.ndarray, k: int) -> np.ndarray:
    """The L x L eigendecomposition the blocks used before, signed by the same rule."""
    _, vectors = np.linalg.eigh(X.T @ X / len(X))
    return signed_by_largest(vectors[:, ::-1][:, :k])


def timed(cube: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    spectra = block_endmembers(cube, mask, scene_scale.N_ENDMEMBERS, 5)
    return spectra, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, nargs="+", default=[20_000, 100_000])
    args = parser.parse_args(argv)
    for n_pixels in args.pixels:
        cube = emit_like(n_pixels)
        mask = np.isfinite(cube).all(axis=-1)
        svd_spectra, svd_s = timed(cube, mask)
        thin_axes = VCA.leading_axes
        VCA.leading_axes = eigh_axes
        try:
            eigh_spectra, eigh_s = timed(cube, mask)
        finally:
            VCA.leading_axes = thin_axes
        print(
            f"{int(mask.sum()):,} px x {cube.shape[-1]} bands, "
            f"{len(svd_spectra) // scene_scale.N_ENDMEMBERS:,} blocks: thin SVD {svd_s:.1f} s, "
            f"L x L eigh {eigh_s:.1f} s ({eigh_s / svd_s:.1f}x); same spectra: "
            f"{np.array_equal(svd_spectra, eigh_spectra)}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
