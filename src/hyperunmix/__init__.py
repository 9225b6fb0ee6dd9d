"""hyperunmix: hyperspectral unmixing, from exact classical baselines to deep methods.

>>> import hyperunmix as hu
>>> scene = hu.synthetic.make_scene(seed=0)          # or hu.open(path), hu.datasets.load(name)
>>> result = hu.make_method("fcls", n_endmembers=scene.truth.n_endmembers).fit_unmix(scene)
>>> hu.evaluate(result, scene.truth)["armse"]         # doctest: +SKIP
"""

from .base import Result, Unmixer
from .errors import (
    ConvergenceWarning,
    DataNotFoundError,
    FileFormatError,
    HyperunmixError,
    InputError,
    NotFittedError,
    ScalingWarning,
)
from .registry import available_methods, get_method, make_method
from .scene import GeoInfo, Scene, Truth

__version__ = "0.1.0"

# Imported on first use: they pull in scipy.optimize / scipy.signal / xarray, and the CLI and
# every benchmark worker should not pay for what they do not touch.
_LAZY = {
    "datasets": ("hyperunmix.datasets", None),
    "synthetic": ("hyperunmix.synthetic", None),
    "metrics": ("hyperunmix.metrics", None),
    "io": ("hyperunmix.io", None),
    "linear": ("hyperunmix.linear", None),
    "scale": ("hyperunmix.scale", None),
    "evaluate": ("hyperunmix.metrics", "evaluate"),
    "open": ("hyperunmix.io", "open_scene"),
    "estimate_n_endmembers": ("hyperunmix.linear", "estimate_n_endmembers"),
    "identify": ("hyperunmix.identification", "identify"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'hyperunmix' has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ConvergenceWarning",
    "DataNotFoundError",
    "FileFormatError",
    "GeoInfo",
    "HyperunmixError",
    "InputError",
    "NotFittedError",
    "Result",
    "ScalingWarning",
    "Scene",
    "Truth",
    "Unmixer",
    "__version__",
    "available_methods",
    "datasets",
    "estimate_n_endmembers",
    "evaluate",
    "get_method",
    "identify",
    "io",
    "linear",
    "make_method",
    "metrics",
    "open",
    "scale",
    "synthetic",
]
