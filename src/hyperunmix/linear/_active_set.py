"""Exact batched active-set solver for the abundance least-squares problems.

Every pixel y (L,) gives the problem

    minimise  ||y - E^T a||^2 / 2    subject to  a >= 0   [and 1^T a = 1 when ``sum_to_one``]

Once, E^T = Q R (thin QR, R (m, P) with m = min(L, P)) and C = Y Q (N, m): then
||y - E^T a|| = ||c - R a|| up to a constant, so nothing depends on L any more. Working
with R rather than the Gram matrix G = E E^T = R^T R keeps the condition number of every
subproblem at that of E, not its square.

The method is the primal active-set method (Nocedal & Wright, Numerical Optimization, 16.5)
run on all pixels at once. Each pixel carries a feasible point and a *free set* F (the
variables not pinned at zero). One iteration solves, for every pixel, the least-squares
problem on its free set (with 1^T z = 1 eliminated by a null-space basis, so the constraint
holds to round-off); pixels sharing the same free set share one factorisation, as in the
fast combinatorial NNLS of Van Benthem & Keenan (2004):

- if that solution z is feasible, it is optimal on the face; the multipliers of the pinned
  variables, nu = G z - b + mu 1, decide: all >= -tol means the KKT conditions hold and the
  pixel is done, otherwise the most negative one is freed;
- otherwise the pixel steps from its point towards z until the first free variable reaches
  zero and that variable is pinned.

The objective strictly decreases along the way, so the method ends in finitely many steps
with an exact solution (up to round-off), unlike interior-point QPs (exact to ~1e-7) or the
usual weighted sum-to-one row (an approximation of the constraint). The start is the
solution with every variable free, clipped: most pixels then need one or two iterations.

Rank-deficient E (duplicated or dependent spectra, or P > L): when sigma_min(R)^2 falls
below ``RANK_TOL`` lambda_max(G), the Tikhonov term delta ||a||^2 / 2 with
delta = RANK_TOL lambda_max(G) is added. The problem is then strictly convex again (finite
termination); among the non-unique optimal abundances it picks the one of least norm, up to
O(delta), and it changes the data fit by at most delta ||a||^2 / 2. Full-rank E, however
ill-conditioned, is solved without it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import ConvergenceWarning, InputError
from ._arrays import as_endmembers, as_pixels

#: Relative eigenvalue floor of E E^T below which E counts as rank deficient.
RANK_TOL = 1e-10
#: Multipliers above -KKT_TOL * lambda_max(E E^T) count as non-negative.
KKT_TOL = 1e-11
#: Pixels solved together; bounds memory to a few (BLOCK, P) arrays and keeps them in cache.
BLOCK = 1 << 15


@dataclass(frozen=True)
class Factor:
    """The square-root form of a problem: E^T = Q R, and the Tikhonov weight."""

    Q: np.ndarray  # (L, m) orthonormal columns
    R: np.ndarray  # (m, P)
    delta: float  # 0 unless E is rank deficient
    scale: float  # lambda_max(E E^T)


def factorise(E: np.ndarray) -> Factor:
    """QR of E^T (P, L) and the regularisation of a rank-deficient E."""
    Q, R = np.linalg.qr(E.T)
    singular_values = np.linalg.svd(R, compute_uv=False)
    scale = float(singular_values[0] ** 2)
    if scale <= 0.0:
        raise InputError("the endmembers are all zero")
    rank_deficient = R.shape[0] < R.shape[1] or singular_values[-1] ** 2 < RANK_TOL * scale
    return Factor(Q, R, RANK_TOL * scale if rank_deficient else 0.0, scale)


class _FaceMaps:
    """Cache of the affine maps c -> z_F solving the problem restricted to a free set F.

    On F, z = z0 + Z w with Z an orthonormal basis of {1^T z = 0} and z0 = 1/k (sum-to-one),
    or Z = I and z0 = 0; w is the least-squares solution of K w = [c; 0] - [R_F; sqrt(delta)
    I] z0 with K = [R_F Z; sqrt(delta) Z]. So z = c M + m0 with M (m, k) and m0 (k,).
    """

    def __init__(self, factor: Factor, sum_to_one: bool):
        self.factor = factor
        self.sum_to_one = sum_to_one
        self._maps: dict = {}

    def get(self, key, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = self._maps.get(key)
        if found is None:
            found = self._maps[key] = self._face_map(cols)
        return found

    def _face_map(self, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = len(cols)
        R_F = self.factor.R[:, cols]
        if self.sum_to_one:
            Z = np.linalg.qr(np.ones((k, 1)), mode="complete")[0][:, 1:]
            z0 = np.full(k, 1.0 / k)
        else:
            Z, z0 = np.eye(k), np.zeros(k)
        K, offset = R_F @ Z, R_F @ z0
        if self.factor.delta:
            root = np.sqrt(self.factor.delta)
            K, offset = np.vstack([K, root * Z]), np.concatenate([offset, root * z0])
        K_pinv = np.linalg.pinv(K)
        return (Z @ K_pinv[:, :R_F.shape[0]]).T, z0 - Z @ (K_pinv @ offset)


def _support_keys(free: np.ndarray) -> np.ndarray:
    """One sortable, hashable key per row of the (n, P) bool matrix ``free``."""
    packed = np.packbits(free, axis=1)
    n, n_bytes = packed.shape
    if n_bytes <= 8:
        padded = np.zeros((n, 8), dtype=np.uint8)
        padded[:, :n_bytes] = packed
        return padded.view(np.uint64).ravel()
    return np.ascontiguousarray(packed).view(f"V{n_bytes}").ravel()


def _solve_on_faces(faces: _FaceMaps, c: np.ndarray, free: np.ndarray,
                    keys: np.ndarray) -> np.ndarray:
    """Face solutions z (n, P) of pixels sorted by free set (``keys`` sorted), c (n, m)."""
    z = np.zeros(free.shape)
    starts = np.concatenate(([0], np.flatnonzero(keys[1:] != keys[:-1]) + 1, [len(keys)]))
    for start, stop in zip(starts[:-1], starts[1:]):
        cols = np.flatnonzero(free[start])
        M, m0 = faces.get(keys[start].item(), cols)
        z[start:stop, cols] = c[start:stop] @ M + m0
    return z


def solve(factor: Factor, C: np.ndarray, *, sum_to_one: bool,
          max_iter: int | None = None) -> np.ndarray:
    """Solve the problem for every row of C = Y Q (N, m); returns the (N, P) solutions."""
    n_vars = factor.R.shape[1]
    faces = _FaceMaps(factor, sum_to_one)
    max_iter = 4 * n_vars + 20 if max_iter is None else max_iter
    out = np.empty((len(C), n_vars))
    unconverged = 0
    for first in range(0, len(C), BLOCK):
        block = slice(first, first + BLOCK)
        out[block], left = _solve_block(faces, C[block], max_iter)
        unconverged += left
    if unconverged:
        warnings.warn(f"the active-set solver hit its iteration limit ({max_iter}) on "
                      f"{unconverged} pixel(s); their abundances are feasible but may not "
                      "be optimal", ConvergenceWarning, stacklevel=3)
    return out


def _multipliers(faces: _FaceMaps, z: np.ndarray, c: np.ndarray,
                 free: np.ndarray) -> np.ndarray:
    """Multipliers (n, P) of the bounds at face solutions z; +inf on the free variables.

    nu = grad f(z) + mu 1, with grad f(z) = R^T (R z - c) + delta z and mu the multiplier
    of the sum-to-one constraint, which makes nu vanish on the free set.
    """
    R = faces.factor.R
    nu = (z @ R.T - c) @ R + faces.factor.delta * z
    if faces.sum_to_one:
        nu -= ((nu * free).sum(axis=1) / free.sum(axis=1))[:, None]
    nu[free] = np.inf
    return nu


def _solve_block(faces: _FaceMaps, C: np.ndarray, max_iter: int) -> tuple[np.ndarray, int]:
    n_vars = faces.factor.R.shape[1]
    tol = KKT_TOL * faces.factor.scale
    every = np.ones((1, n_vars), dtype=bool)
    M, m0 = faces.get(_support_keys(every)[0].item(), np.arange(n_vars))
    z = C @ M + m0
    out = z.copy()
    # Rows whose solution with every variable free is feasible are optimal: no variable is
    # pinned, so there is no multiplier to check.
    rows = np.flatnonzero(np.any(z < 0, axis=1))
    c = C[rows]
    free = z[rows] > 0
    if faces.sum_to_one:  # a feasible start supported on the free set
        a = free / free.sum(axis=1, keepdims=True)
    else:
        a = np.zeros(free.shape)
    for _ in range(max_iter):
        if rows.size == 0:
            return out, 0
        keys = _support_keys(free)
        order = np.argsort(keys)
        rows, c, a, free, keys = rows[order], c[order], a[order], free[order], keys[order]
        z = _solve_on_faces(faces, c, free, keys)

        negative = free & (z < 0)
        blocked = negative.any(axis=1)
        # Infeasible face solution: move towards it until the first variable hits zero.
        stepping = np.flatnonzero(blocked)
        if stepping.size:
            a_s, z_s = a[stepping], z[stepping]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(negative[stepping], a_s / (a_s - z_s), np.inf)
            leaving = ratio.argmin(axis=1)
            step = ratio[np.arange(stepping.size), leaving][:, None]
            a_s = np.maximum(a_s + step * (z_s - a_s), 0.0)
            a_s[np.arange(stepping.size), leaving] = 0.0
            a[stepping] = a_s
            free[stepping, leaving] = False
        # Feasible face solution: optimal on the face; free the most negative multiplier.
        optimal = np.flatnonzero(~blocked)
        nu = _multipliers(faces, z[optimal], c[optimal], free[optimal])
        entering = nu.argmin(axis=1)
        improvable = nu[np.arange(optimal.size), entering] < -tol
        done = optimal[~improvable]
        out[rows[done]] = z[done]
        moving = optimal[improvable]
        a[moving] = z[moving]
        free[moving, entering[improvable]] = True

        keep = blocked.copy()
        keep[moving] = True
        rows, c, a, free = rows[keep], c[keep], a[keep], free[keep]
    out[rows] = a
    return out, rows.size


def solve_pixels(Y, E, *, sum_to_one: bool) -> np.ndarray:
    """Abundances (..., P) of the pixels ``Y`` (..., L) on endmembers ``E`` (P, L).

    Rows of Y holding a non-finite value give NaN abundances.
    """
    pixels, lead_shape, valid = as_pixels(Y)
    E = as_endmembers(E, pixels.shape[1])
    factor = factorise(E)
    out = np.full((pixels.shape[0], E.shape[0]), np.nan)
    out[valid] = solve(factor, pixels[valid] @ factor.Q, sum_to_one=sum_to_one)
    return out.reshape(lead_shape + (E.shape[0],))
