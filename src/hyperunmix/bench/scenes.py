"""The benchmark's scenes: real datasets, package-made synthetic scenes, and user files.

A :class:`SceneSpec` is a recipe (picklable, JSON-describable) rather than the data, so a
worker process builds the scene itself and the recipe enters the identity of each run: a run
on a different scene never passes for a finished one.

Catalogue (``--datasets all``):

- ``samson``, ``jasper_ridge``: the real scenes with their reference abundances
  (:mod:`hyperunmix.datasets`, read from the data directory), shares of unit-peak spectra.
- ``synthetic_{linear,bilinear,variability,illumination}_{20,30}db``: 32 x 32 scenes made by
  :func:`hyperunmix.synthetic.make_scene` from the analytic library (no data files), with
  spatially smooth abundances (Gaussian random fields): the linear mixing model, the
  bilinear Fan model, linear mixing with per-pixel endmember variability (scaling by up to
  +-10 %), and linear mixing under per-pixel illumination (brightness scaled by up to
  +-30 %), with white noise at 20 and 30 dB SNR.
- ``synthetic_spatial_{15,20}db``: the ``spatial2`` abundance maps (100 x 100, 9
  materials, sharp spatial structure) with USGS library spectra at 15 and 20 dB, so that
  spatial context has something to use (15 dB: the noisiest of the DEQ-Unmix paper's
  synthetic experiments).
- ``synthetic_spatial3_variability_30db``: built after the ID-Net paper's synthetic data:
  3 USGS materials on the ``spatial_3em`` maps (50 x 50) of its authors' variability
  repository, endmember variability by scaling (+-15 %) and smooth perturbations, 30 dB.

The synthetic truths are absolute fractions. Each scene is fixed (its own seed,
:data:`SCENE_SEED`); benchmark seeds vary the methods only. :func:`tuning_catalogue` gives
scenes of the same recipes with other seeds, on which defaults are chosen
(``benchmarks/tune_defaults.py``), so that no default is chosen on a scene it is reported on.

Under ``--quick`` the analytic scenes are smaller, and ``all`` means three of them.
A user scene joins by path with a truth file: see :func:`user_scene`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FileFormatError, InputError
from ..scene import Scene, Truth
from ..scene import _check_truth as check_truth

REAL_DATASETS = ("samson", "jasper_ridge")

#: Synthetic families on the analytic library: name -> options of ``make_scene`` beyond
#: size and noise.
SYNTHETIC_FAMILIES: dict[str, dict[str, Any]] = {
    "linear": {"mixing": "linear"},
    "bilinear": {"mixing": "fan"},
    "variability": {"mixing": "linear", "variability": 0.1},
    "illumination": {"mixing": "linear", "illumination": 0.3},
}
SYNTHETIC_SNRS_DB = (20, 30)
#: Size of the analytic scenes in the full and in the quick benchmark.
FULL_SIZE = {"n_rows": 32, "n_cols": 32, "n_endmembers": 4}
QUICK_SIZE = {"n_rows": 24, "n_cols": 24, "n_endmembers": 3}
#: Scenes of library spectra on the file abundance maps (see the module notes): name ->
#: ``make_scene`` options beyond the seed. They need the data directory.
SPATIAL_SCENES: dict[str, dict[str, Any]] = {
    **{
        f"synthetic_spatial_{snr}db": {
            "n_rows": 100,
            "n_cols": 100,
            "n_endmembers": 9,
            "library": "usgs",
            "abundances": "spatial2",
            "snr_db": float(snr),
        }
        for snr in (15, 20)
    },
    "synthetic_spatial3_variability_30db": {
        "n_rows": 50,
        "n_cols": 50,
        "n_endmembers": 3,
        "library": "usgs",
        "abundances": "spatial_3em",
        "variability": 0.15,
        "perturbation": 0.05,
        "snr_db": 30.0,
    },
}
#: Seed of the synthetic scenes themselves (fixed: benchmark seeds vary the methods).
SCENE_SEED = 2024
#: Seeds of the tuning scenes (:func:`tuning_catalogue`), disjoint from SCENE_SEED.
TUNING_SCENE_SEEDS = (7001,)
#: What ``all`` means under ``--quick``.
QUICK_ALL = ("synthetic_linear_30db", "synthetic_bilinear_20db", "synthetic_variability_20db")


@dataclass
class SceneSpec:
    """A recipe for one benchmark scene.

    Attributes
    ----------
    name : str
        The name results are reported under.
    kind : {"dataset", "synthetic", "file"}
    options : dict
        JSON-able description: the dataset name, the ``make_scene`` arguments, or the
        scene and truth paths.
    """

    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """What makes two scenes the same, for deciding whether a run is already done."""
        return {"name": self.name, "kind": self.kind, **self.options}

    def build(self, data_dir: str | os.PathLike | None = None) -> Scene:
        """Load or generate the scene (with its truth)."""
        if self.kind == "dataset":
            from .. import datasets

            scene = datasets.load(self.options["dataset"], data_dir=data_dir)
        elif self.kind == "synthetic":
            from .. import synthetic

            scene = synthetic.make_scene(**self.options, data_dir=data_dir)
        elif self.kind == "file":
            scene = _open_user_scene(Path(self.options["path"]), self.options.get("truth"))
        else:
            raise InputError(f"unknown scene kind {self.kind!r}")
        scene.name = self.name
        if scene.truth is None or scene.truth.n_endmembers is None:
            raise InputError(f"scene {self.name!r} has no ground truth to score against")
        return scene


def catalogue(quick: bool = False) -> dict[str, SceneSpec]:
    """Every named benchmark scene, in report order."""
    specs = {name: SceneSpec(name, "dataset", {"dataset": name}) for name in REAL_DATASETS}
    specs.update(_analytic_scenes(QUICK_SIZE if quick else FULL_SIZE, SCENE_SEED))
    specs.update(
        (name, SceneSpec(name, "synthetic", {**options, "seed": SCENE_SEED}))
        for name, options in SPATIAL_SCENES.items()
    )
    return specs


def tuning_catalogue(seeds: tuple[int, ...] = TUNING_SCENE_SEEDS) -> dict[str, SceneSpec]:
    """Scenes to choose defaults on: the analytic families at each SNR, and library
    (USGS) spectra on random-field maps, each made with the scene ``seeds`` (disjoint from
    the benchmark's). Named ``tune_<family>_<snr>db_s<seed>``."""
    specs: dict[str, SceneSpec] = {}
    for seed in seeds:
        specs.update(_analytic_scenes(FULL_SIZE, seed, prefix="tune", suffix=f"_s{seed}"))
        for snr in SYNTHETIC_SNRS_DB:
            name = f"tune_usgs_{snr}db_s{seed}"
            specs[name] = SceneSpec(
                name,
                "synthetic",
                {
                    **FULL_SIZE,
                    "library": "usgs",
                    "abundances": "fields",
                    "snr_db": float(snr),
                    "seed": seed,
                },
            )
    return specs


def _analytic_scenes(
    size: dict[str, int], seed: int, prefix: str = "synthetic", suffix: str = ""
) -> dict[str, SceneSpec]:
    """The analytic families at every SNR, of ``size`` and made with ``seed``."""
    specs = {}
    for family, mixing in SYNTHETIC_FAMILIES.items():
        for snr in SYNTHETIC_SNRS_DB:
            name = f"{prefix}_{family}_{snr}db{suffix}"
            specs[name] = SceneSpec(
                name,
                "synthetic",
                {
                    **size,
                    "library": "analytic",
                    "abundances": "fields",
                    **mixing,
                    "snr_db": float(snr),
                    "seed": seed,
                },
            )
    return specs


def resolve(names: str | list[str], quick: bool = False) -> list[SceneSpec]:
    """The catalogue scenes named in ``names`` (a list, or a comma-separated string;
    ``"all"`` for the whole catalogue, or the quick set under ``quick``)."""
    known = catalogue(quick)
    wanted = _split(names)
    if wanted == ["all"]:
        wanted = list(QUICK_ALL if quick else known)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise InputError(
            f"unknown benchmark dataset(s) {', '.join(unknown)}; available: "
            f"{', '.join(known)} (user scenes join with --scene PATH=TRUTH)"
        )
    return [known[n] for n in dict.fromkeys(wanted)]


def user_scene(spec: str) -> SceneSpec:
    """A user scene from ``"PATH=TRUTH"`` (or ``"PATH"`` when the file carries its truth).

    ``PATH`` is any image :func:`hyperunmix.io.open_scene` reads. ``TRUTH`` is an ``.npz``
    or ``.mat`` file with ``abundances`` (H, W, P) and/or ``endmembers`` (P, L) (optional
    ``names``, and ``convention``: ``"absolute"`` by default or ``"shares"``, see
    :mod:`hyperunmix.conventions`), or an endmember ``.csv`` as
    :func:`hyperunmix.io.read_endmembers` reads.
    The scene is reported under the image's file stem.
    """
    image, _, truth = spec.partition("=")
    path = Path(image).expanduser()
    if not path.exists():
        raise InputError(f"benchmark scene {path} does not exist")
    options: dict[str, Any] = {"path": str(path.resolve())}
    if truth:
        truth_path = Path(truth).expanduser()
        if not truth_path.is_file():
            raise InputError(f"truth file {truth_path} for scene {path.name} does not exist")
        options["truth"] = str(truth_path.resolve())
    return SceneSpec(path.stem, "file", options)


def _split(names: str | list[str]) -> list[str]:
    if isinstance(names, str):
        names = names.split(",")
    return [n.strip().lower() for n in names if n.strip()]


def _open_user_scene(path: Path, truth_path: str | None) -> Scene:
    from ..io import open_scene

    scene = open_scene(path)
    if truth_path is not None:
        scene.truth = read_truth(Path(truth_path), scene)
    return scene


def read_truth(path: Path, scene: Scene) -> Truth:
    """Ground truth for ``scene`` from ``path`` (``.npz``, ``.mat`` or endmember ``.csv``).

    Abundances may be (H, W, P), or (N, P) with N = H * W in row-major image order.
    """
    suffix = path.suffix.lower()
    if suffix == ".csv":
        from ..io import read_endmembers

        endmembers, _, names = read_endmembers(path)
        return _checked_truth(scene, None, endmembers, names, path)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            fields = {key: data[key] for key in data.files}
    elif suffix == ".mat":
        from scipy.io import loadmat

        fields = {k: v for k, v in loadmat(path).items() if not k.startswith("__")}
    else:
        raise FileFormatError(f"truth file {path}: expected .npz, .mat or .csv, got {suffix!r}")
    if "abundances" not in fields and "endmembers" not in fields:
        raise FileFormatError(
            f"truth file {path} has neither 'abundances' nor 'endmembers' "
            f"(keys: {', '.join(fields) or 'none'})"
        )
    abundances = fields.get("abundances")
    if abundances is not None and abundances.ndim == 2:
        if abundances.shape[0] != scene.n_rows * scene.n_cols:
            raise InputError(
                f"truth abundances {abundances.shape} from {path} do not have "
                f"one row per pixel of the {scene.n_rows}x{scene.n_cols} scene"
            )
        abundances = abundances.reshape(scene.n_rows, scene.n_cols, -1)
    names = fields.get("names")
    names = None if names is None else [str(n).strip() for n in np.ravel(names)]
    convention = fields.get("convention")
    convention = "absolute" if convention is None else str(np.ravel(convention)[0]).strip()
    return _checked_truth(scene, abundances, fields.get("endmembers"), names, path, convention)


def _checked_truth(
    scene: Scene, abundances, endmembers, names, path: Path, convention: str = "absolute"
) -> Truth:
    truth = Truth(abundances=abundances, endmembers=endmembers, names=names, convention=convention)
    try:
        check_truth(truth, scene.n_rows, scene.n_cols, scene.n_bands)
    except InputError as exc:
        raise InputError(f"truth file {path}: {exc}") from exc
    return truth
