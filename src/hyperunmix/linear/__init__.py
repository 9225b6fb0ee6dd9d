"""Classical linear unmixing: counting (HySime), endmember extraction, abundance solvers.

Function forms on plain arrays (Y (..., L) pixels, E (P, L) endmembers); the estimators
for scenes are in :mod:`hyperunmix.linear.estimators`.
"""

from .fcls import fcls, kkt_residual
from .lsq import ls, nnls
from .vca import vca

__all__ = ["fcls", "kkt_residual", "ls", "nnls", "vca"]
