"""hyperunmix: hyperspectral unmixing, from exact classical baselines to deep methods.

>>> import hyperunmix as hu
>>> scene = hu.synthetic.make_scene(seed=0)          # or hu.open(path), hu.datasets.load(name)
>>> result = hu.make_method("fcls", n_endmembers=scene.truth.n_endmembers).fit_unmix(scene)
>>> hu.evaluate(result, scene.truth)["armse"]         # doctest: +SKIP
"""

from .base import Result, Unmixer
from .errors import (ConvergenceWarning, DataNotFoundError, FileFormatError, HyperunmixError,
                     InputError, NotFittedError, ScalingWarning)
from .metrics import evaluate
from .registry import available_methods, get_method, make_method
from .scene import GeoInfo, Scene, Truth
from .io import open_scene as open  # noqa: A001 - hu.open(path), like xarray.open_dataset
from . import datasets, synthetic

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning", "DataNotFoundError", "FileFormatError", "GeoInfo", "HyperunmixError",
    "InputError", "NotFittedError", "Result", "ScalingWarning", "Scene", "Truth", "Unmixer",
    "available_methods", "datasets", "evaluate", "get_method", "make_method", "open",
    "synthetic", "__version__",
]
