"""A seeded, spatially stratified sample of a large cube, held in memory, to fit models on.

Endmember extraction and deep-network training need the pixels in memory; a scene too large
for that is represented by a sample. The sample is stratified: every chunk of the cube gets
a share proportional to its area, drawn one per cell of a grid over the chunk, so that a
material confined to one corner is represented in proportion to its area (a uniform draw
guarantees that only on average). Each chunk is read once, by one task that keeps only its
draws, so memory holds the sample and the chunks in flight, never the scene.

Pixel-wise methods get single pixels. Spatial methods get square patches (each inside one
chunk), so that their neighbourhoods are real ones; either way the sample is laid out as a
mosaic image (pixels or patches side by side, NaN padding at the end) and returned as a
:class:`~hyperunmix.scene.Scene`.
"""

from __future__ import annotations

import math
from typing import Any

import dask
import numpy as np
import xarray as xr
from numpy.typing import ArrayLike

from ..base import Unmixer
from ..errors import InputError
from ..scene import Scene
from .grid import Chunk, chunk_grid
from .lazy import cube_chunks, cube_wavelengths

#: Default sample size (pixels): enough for VCA / N-FINDR and for an epoch of a deep model.
DEFAULT_SAMPLE = 200_000
#: Smallest patch side drawn for spatial methods.
SPATIAL_PATCH_MIN = 32


def stratified_positions(
    height: int, width: int, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` positions in a ``height`` x ``width`` grid, one in each of ``count`` cells.

    The grid of cells has about ``count`` near-equal cells, shaped like the area; when it
    has more, ``count`` of them are chosen at random. Each position is uniform within its
    cell. Returns (rows, cols), (count,) int arrays in row-major order of the cells.
    """
    grid_rows = int(np.clip(round(math.sqrt(count * height / width)), 1, height))
    grid_cols = int(np.clip(math.ceil(count / grid_rows), 1, width))
    n_cells = grid_rows * grid_cols
    cells = np.sort(rng.choice(n_cells, size=min(count, n_cells), replace=False))
    cell_row, cell_col = np.divmod(cells, grid_cols)
    positions = []
    for index, size, cells_along in ((cell_row, height, grid_rows), (cell_col, width, grid_cols)):
        edges = np.linspace(0, size, cells_along + 1).astype(np.int64)  # cells >= 1 px wide
        low, extent = edges[index], edges[index + 1] - edges[index]
        positions.append(low + (rng.random(len(cells)) * extent).astype(np.int64))
    return positions[0], positions[1]


def shares(total: int, weights: ArrayLike) -> np.ndarray:
    """``total`` split into integers proportional to ``weights`` (largest remainders)."""
    exact = total * np.asarray(weights, dtype=np.float64) / np.sum(weights)
    counts = np.floor(exact).astype(np.int64)
    leftover = total - int(counts.sum())
    counts[np.argsort(counts - exact, kind="stable")[:leftover]] += 1
    return counts


def sample_scene(
    cube: xr.DataArray,
    n: int = DEFAULT_SAMPLE,
    *,
    patch: int = 1,
    seed: int = 0,
    scheduler: Any = None,
) -> Scene:
    """A Scene made of about ``n`` pixels of ``cube``, drawn stratified in space.

    Parameters
    ----------
    cube : xarray.DataArray
        A lazy (y, x, band) cube from :func:`~hyperunmix.scale.open_cube` / ``as_cube``.
    n : int
        Pixels wanted. At least the whole image: the whole cube is loaded as it is.
    patch : int
        Side of the square patches drawn (1: single pixels); ``ceil(n / patch**2)`` patches,
        each within one chunk (chunks smaller than a patch get none).
    seed : int
        The same seed (and chunking) draws the same pixels.
    scheduler : optional
        Dask scheduler (or distributed Client) reading the chunks; dask's default if None.

    Returns
    -------
    Scene
        Pixels or patches laid out as a mosaic; invalid pixels masked. Wavelengths, FWHM
        and bad bands are the cube's; the sample has no georeferencing.
    """
    height, width, _ = cube.shape
    if int(n) < 1 or int(patch) < 1:
        raise InputError(f"the sample size and the patch side must be >= 1, got {n}, {patch}")
    if n >= height * width:
        image = cube.data.compute(scheduler=scheduler)
        layout = {"pixels": height * width, "patch": None}
    else:
        row_chunks, col_chunks = cube_chunks(cube)[:2]
        chunks = [
            chunk for chunk in chunk_grid(row_chunks, col_chunks) if min(chunk.shape) >= patch
        ]
        if not chunks:
            raise InputError(
                f"patches of {patch} px do not fit in chunks of "
                f"{row_chunks[0]} x {col_chunks[0]} px"
            )
        counts = shares(math.ceil(n / patch**2), [math.prod(c.shape) for c in chunks])
        rng = np.random.default_rng(seed)
        tasks = [
            _draws(cube, chunk, int(count), patch, rng)
            for chunk, count in zip(chunks, counts)
            if count
        ]
        image = _mosaic(dask.compute(*tasks, scheduler=scheduler))
        layout = {"pixels": int(counts.sum()) * patch**2, "patch": patch}
    if not np.isfinite(image).all(axis=-1).any():
        raise InputError(
            f"the sample of {layout['pixels']} pixels of {cube.attrs.get('name')} "
            "holds no valid pixel (all NaN or no-data)"
        )
    return Scene(
        image,
        cube_wavelengths(cube),
        fwhm=cube["fwhm"].values if "fwhm" in cube.coords else None,
        bad_bands=cube.attrs.get("bad_bands"),
        name=f"{cube.attrs.get('name', 'cube')} (sample)",
        metadata={"sample": {**layout, "seed": seed}},
    )


def _draws(cube: xr.DataArray, chunk: Chunk, count: int, patch: int, rng: np.random.Generator):
    """A task returning ``count`` stratified patches (count, p, p, L) of one chunk."""
    rows, cols = stratified_positions(
        chunk.shape[0] - patch + 1, chunk.shape[1] - patch + 1, count, rng
    )
    return dask.delayed(_patches)(cube.data.blocks[chunk.index], rows, cols, patch)


def _patches(block: np.ndarray, rows: np.ndarray, cols: np.ndarray, patch: int) -> np.ndarray:
    offsets = np.arange(patch)
    return block[
        rows[:, None, None] + offsets[None, :, None], cols[:, None, None] + offsets[None, None, :]
    ]


def _mosaic(groups: tuple[np.ndarray, ...]) -> np.ndarray:
    """Groups of (k, p, p, L) patches side by side in a near-square (R p, C p, L) image,
    row-major, padded with NaN."""
    m = sum(len(group) for group in groups)
    _, p, _, n_bands = groups[0].shape
    grid_cols = math.ceil(math.sqrt(m))
    grid_rows = math.ceil(m / grid_cols)
    grid = np.full((grid_rows * grid_cols, p, p, n_bands), np.nan, dtype=np.float32)
    np.concatenate(groups, out=grid[:m])
    grid = grid.reshape(grid_rows, grid_cols, p, p, n_bands).transpose(0, 2, 1, 3, 4)
    return grid.reshape(grid_rows * p, grid_cols * p, n_bands)


def default_patch(unmixer: Unmixer, largest: int | None = None) -> int:
    """1 for pixel-wise methods; for spatial ones, four times their spatial context (at
    least 32 px), so that most of a patch sees a real neighbourhood; rounded up to a
    multiple of the unmixer's ``fit_block`` (EGU-Net's 5 x 5 pseudo-pure blocks), so that
    the mosaic's blocks each lie inside one patch, and to at most ``largest`` (the chunk
    side), rounded down to such a multiple when it allows one."""
    context = int(unmixer.spatial_context)
    block = int(unmixer.fit_block)
    side = 1 if context == 0 else max(SPATIAL_PATCH_MIN, 4 * context)
    side = -(-side // block) * block
    if largest is not None and side > largest:
        side = largest - largest % block if largest >= block else largest
    return side


def fit_on_sample(
    unmixer: Unmixer,
    cube: xr.DataArray,
    n: int = DEFAULT_SAMPLE,
    *,
    patch: int | None = None,
    seed: int = 0,
    scheduler: Any = None,
) -> Unmixer:
    """Fit ``unmixer`` on a stratified sample of ``cube`` (see :func:`sample_scene`).

    ``patch`` defaults to :func:`default_patch`, at most the chunk side. Returns the
    fitted unmixer.
    """
    if not isinstance(unmixer, Unmixer):
        raise InputError(f"fit_on_sample needs an Unmixer, got {type(unmixer).__name__}")
    if patch is None:
        row_chunks, col_chunks = cube_chunks(cube)[:2]
        patch = default_patch(unmixer, min(row_chunks[0], col_chunks[0]))
    return unmixer.fit(sample_scene(cube, n, patch=patch, seed=seed, scheduler=scheduler))
