"""Classical linear unmixing: counting (HySime), endmember extraction, abundance solvers.

Function forms on plain arrays (Y (..., L) pixels, E (P, L) endmembers); the estimators
for scenes are in :mod:`hyperunmix.linear.estimators`.
"""

from .atgp import atgp
from .fcls import fcls, kkt_residual
from .hysime import estimate_n_endmembers, hysime
from .lsq import ls, nnls, snnls
from .nfindr import nfindr
from .sunsal import sunsal
from .vca import vca

__all__ = [
    "atgp",
    "estimate_n_endmembers",
    "fcls",
    "hysime",
    "kkt_residual",
    "ls",
    "nfindr",
    "nnls",
    "snnls",
    "sunsal",
    "vca",
]
