"""hyperunmix: hyperspectral unmixing, from exact classical baselines to deep methods.

>>> import hyperunmix as hu
>>> scene = hu.synthetic.make_scene(seed=0)          # or hu.open(path), hu.datasets.load(name)
>>> result = hu.make_method("fcls", n_endmembers=scene.truth.n_endmembers).fit_unmix(scene)
>>> hu.evaluate(result, scene.truth)["armse"]         # doctest: +SKIP
"""

from .base import Result, Unmixer
from .metrics import evaluate
from .errors import (ConvergenceWarning, DataNotFoundError, FileFormatError, HyperunmixError,
                     InputError, NotFittedError, ScalingWarning)
from .registry import available_methods, get_method, make_method
from .scene import GeoInfo, Scene, Truth

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning", "DataNotFoundError", "FileFormatError", "GeoInfo", "HyperunmixError",
    "InputError", "NotFittedError", "Result", "ScalingWarning", "Scene", "Truth", "Unmixer",
    "available_methods", "get_method", "make_method", "__version__",
]
