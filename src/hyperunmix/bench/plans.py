"""How the benchmark runs each method: seeds, budgets and parameters, in one table.

Every method takes ``n_endmembers`` and ``seed`` (the runner supplies both); :data:`PLANS`
holds only what differs from a method's own defaults. A method in the registry without a
row here still joins the benchmark, with :data:`CLASSICAL` or :data:`DEEP` defaults
(deep methods are those under ``hyperunmix.deep``), so adding a method to the benchmark is
its registry line; a row here tunes its budget. :data:`VARIANTS` adds configurations of a
registered method under names of their own, so that they share one table with it.

Budgets are set so that the full run (13 scenes, every variant: 83 minutes measured) stays
under two hours on 2 CPU cores and ``--quick`` (3 small synthetic scenes) under 5 minutes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError


@dataclass(frozen=True)
class MethodPlan:
    """The benchmark settings of one method.

    Attributes
    ----------
    seeds : int
        Repetitions with seeds ``0 .. seeds - 1`` in the full run.
    quick_seeds : int
        Repetitions under ``--quick``.
    params : dict
        Hyper-parameters for the full run (beyond ``n_endmembers`` and ``seed``).
    quick_params : dict
        Overrides of ``params`` under ``--quick`` (smaller epoch budgets).
    scene_params : dict of scene name -> dict
        Overrides for named scenes (e.g. a paper's per-dataset weights).
    timeout_s : float
        Wall-time limit of one run in the full benchmark; a run over it is killed and
        recorded as failed. ``--quick`` divides it by :data:`QUICK_TIMEOUT_DIVISOR`.
    """

    seeds: int
    quick_seeds: int
    params: Mapping[str, Any] = field(default_factory=dict)
    quick_params: Mapping[str, Any] = field(default_factory=dict)
    scene_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    timeout_s: float = 300.0

    def n_seeds(self, quick: bool) -> int:
        return self.quick_seeds if quick else self.seeds

    def parameters(self, quick: bool, scene: str) -> dict[str, Any]:
        """The hyper-parameters for a full or a quick run on the scene named ``scene``."""
        return {
            **self.params,
            **(self.quick_params if quick else {}),
            **self.scene_params.get(scene, {}),
        }

    def timeout(self, quick: bool) -> float:
        return self.timeout_s / QUICK_TIMEOUT_DIVISOR if quick else self.timeout_s


QUICK_TIMEOUT_DIVISOR = 5.0

#: Defaults of a registered method without a row in :data:`PLANS`.
CLASSICAL = MethodPlan(seeds=10, quick_seeds=3, timeout_s=120.0)
DEEP = MethodPlan(seeds=5, quick_seeds=2, timeout_s=900.0)

#: name -> plan, for the methods whose defaults need a benchmark budget. The papers'
#: settings (EGU-Net 200 epochs, DEQ-Unmix 300, ID-Net up to 30) times 40 runs each would
#: not fit in two hours on 2 cores. Mean wall seconds of one run in the committed results,
#: one thread, two runs at a time on 2 cores of an Intel Xeon shared with other jobs
#: (Samson, Jasper Ridge): EGU-Net (ss) 30, 41; its pixel-wise variant 37, 43; DEQ-Unmix
#: 16, 25 and its unrolled twin 26, 35 (one run at a time); ID-Net 34, 57 (an AMD EPYC
#: took two to three times as long). The 100 x 100 spatial scenes cost two to three times
#: Jasper Ridge. They are recorded with every result.
PLANS: dict[str, MethodPlan] = {
    # EGU-Net's default, the spatial-spectral variant, costs about 3x the pixel-wise one per
    # epoch (benchmarks/egunet_beyond_labels.py); both train 150 epochs, the budget the
    # defaults were chosen at, or fewer when the loss levels off.
    "egunet": MethodPlan(
        seeds=5,
        quick_seeds=2,
        params={"epochs": 150},
        quick_params={"epochs": 15},
        timeout_s=1800.0,
    ),
    "egunet_pw": MethodPlan(
        seeds=5, quick_seeds=2, params={"epochs": 150}, quick_params={"epochs": 30}, timeout_s=900.0
    ),
    # DEQ-Unmix's default 40 epochs (one step per 32 x 32 patch, fewer when the loss levels
    # off) everywhere but on the two 100 x 100 scenes (10 patches per epoch): 5 epochs, 50
    # steps (on the tuning scenes of that recipe, seed 0, 10 epochs gave 0.107 / 0.068 at
    # 15 / 20 dB against 0.111 / 0.058 with 5). The three entries took 35 minutes with one
    # job on a busy machine (DEQ-Unmix 16 / 25 s a run on Samson / Jasper Ridge, 20 s on
    # the 100 x 100 scenes, 5 to 11 s on the others).
    "deq": MethodPlan(
        seeds=5,
        quick_seeds=2,
        quick_params={"epochs": 10},
        scene_params={
            "synthetic_spatial_15db": {"epochs": 5},
            "synthetic_spatial_20db": {"epochs": 5},
        },
        timeout_s=900.0,
    ),
    "idnet": MethodPlan(
        seeds=5,
        quick_seeds=2,
        params={"epochs": 8},
        quick_params={"epochs": 2},
        scene_params={"jasper_ridge": {"preset": "jasper_ridge"}},
        timeout_s=900.0,
    ),
}


#: Benchmark entries that run a registered method in another configuration, reported under
#: their own name: EGU-Net's pixel-wise variant, DEQ-Unmix's unrolled twin, ID-Net's
#: posterior output, the ablations (:data:`ABLATIONS`) and the shares-convention
#: baseline on N-FINDR spectra: name -> (registered method, parameters). Without a row in
#: :data:`PLANS` a variant takes its method's plan.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "egunet_pw": ("egunet", {"variant": "pw"}),
    "egunet_labels": ("egunet", {"abundance_output": "labels"}),
    "deq_unrolled": ("deq", {"solver": "unrolled"}),
    "deq_no_correction": ("deq", {"correction": False}),
    "idnet_no_nonlinear": ("idnet", {"nonlinear": False}),
    "idnet_no_variability": ("idnet", {"variability": False}),
    # ID-Net's maps from its posterior, the linear stream plus the nonlinear correction h
    # (the paper's output; the same training, not an ablation: the default leaves h out).
    "idnet_posterior": ("idnet", {"abundance_output": "posterior"}),
    "snnls_nfindr": ("snnls", {"endmembers": "nfindr"}),
}

#: What each learned part adds: deep method -> {ablation entry: the part it removes}. An
#: ablation is the same training with that one part removed, or no training at all: the
#: classical rule on the reference the method re-estimates before it learns (ID-Net's
#: bundles centre on the one EGU-Net labels against, so EGU-Net's label rule is also what
#: ID-Net's networks must beat).
ABLATIONS: dict[str, dict[str, str]] = {
    "deq": {"deq_no_correction": "the learned spectral-spatial correction (D_theta = 0)"},
    "egunet": {"egunet_labels": "the network (its label rule applied to every pixel)"},
    "idnet": {
        "idnet_no_nonlinear": "the nonlinear streams (h and g)",
        "idnet_no_variability": "endmember variability (one M = f(0) for all pixels)",
        "egunet_labels": "all learning (SNNLS on the re-estimated reference its bundles "
        "centre on, EGU-Net's label rule)",
    },
}

#: Parameter of each deep method naming its endmember start (an extractor).
START_PARAMETERS: dict[str, str] = {
    "egunet": "endmembers",
    "deq": "endmembers",
    "idnet": "endmembers",
}
#: ID-Net's start parameter before it was renamed, as records of earlier runs name it.
_FORMER_START_PARAMETER = "reference"
#: The matched baseline of a deep method: the classical solver of the method's own
#: abundance convention (FCLS for absolute fractions, SNNLS for shares) on the method's
#: endmember start, scored like the method in the scene's convention; as a benchmark entry:
#: (convention, start) -> entry name.
MATCHED_BASELINES: dict[tuple[str, str], str] = {
    ("absolute", "nfindr"): "nfindr",  # N-FINDR, then FCLS
    ("absolute", "vca"): "vca",  # VCA, then FCLS
    ("shares", "nfindr"): "snnls_nfindr",
    ("shares", "vca"): "snnls",  # SNNLS extracts with VCA by default
}


def registered_name(name: str) -> str:
    """The registered method a benchmark entry runs (itself, or a variant's method)."""
    return VARIANTS[name][0] if name in VARIANTS else name


def matched_baseline(record: Mapping[str, Any]) -> str | None:
    """The benchmark entry of a run's matched baseline (see :data:`MATCHED_BASELINES`), or
    None for a method without an extractor start (classical ones, or a start given as
    spectra)."""
    parameter = START_PARAMETERS.get(registered_name(record["method"]))
    if parameter is None:
        return None
    parameters = record.get("parameters") or {}
    start = parameters.get(parameter, parameters.get(_FORMER_START_PARAMETER))
    convention = (record.get("metrics") or {}).get("result_convention")
    if not isinstance(convention, str) or not isinstance(start, str):
        return None  # a start given as spectra (a list when short enough for JSON)
    return MATCHED_BASELINES.get((convention, start))


def benchmark_methods(registry: Mapping[str, str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every method the benchmark can run: name -> ("module:Class", parameters), the
    entries of ``registry``, each followed by its :data:`VARIANTS`."""
    methods: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, target in registry.items():
        methods[name] = (target, {})
        methods.update(
            (variant, (target, dict(params)))
            for variant, (method, params) in VARIANTS.items()
            if method == name
        )
    return methods


def plan_for(name: str, registry: Mapping[str, str]) -> MethodPlan:
    """The plan of method ``name``: its row in :data:`PLANS`, else its method's plan for a
    variant, else the default of its kind (deep when its import path ``registry[name]``
    lies under ``hyperunmix.deep``)."""
    if name in PLANS:
        return PLANS[name]
    if name in VARIANTS and VARIANTS[name][0] in registry:
        return plan_for(VARIANTS[name][0], registry)
    if name not in registry:
        raise InputError(f"unknown method {name!r}; available: {', '.join(registry)}")
    return DEEP if registry[name].startswith("hyperunmix.deep.") else CLASSICAL
