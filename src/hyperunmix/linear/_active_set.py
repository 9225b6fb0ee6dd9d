"""Exact batched active-set solver for the abundance least-squares problems.

Every pixel y (L,) gives the problem

    minimise  ||y - E^T a||^2 / 2    subject to  a >= 0   [and 1^T a = 1 when ``sum_to_one``]

Once, E^T = Q R (thin QR, R (m, P) with m = min(L, P)) and C = Y Q (N, m): then
||y - E^T a|| = ||c - R a|| up to a constant, so nothing depends on L any more. Working
with R rather than the Gram matrix G = E E^T = R^T R keeps the condition number of every
subproblem at that of E, not its square.

The method is the primal active-set method (Nocedal & Wright, Numerical Optimization, 16.5)
run on all pixels at once. Each pixel carries a *free set* F (the variables not pinned at
zero). One iteration solves, for every pixel, the least-squares problem on its free set
(with 1^T z = 1 eliminated by a null-space basis, so the constraint holds to round-off);
pixels sharing the same free set share one factorisation, as in the fast combinatorial NNLS
of Van Benthem & Keenan (2004). Phase 1 finds a start: from every variable free, all the
variables whose face solution is negative are pinned, until the face solution is feasible
(usually the optimal face or next to it). Phase 2 is the method proper, from that point:

- if the face solution z is feasible, it is optimal on the face; the multipliers of the
  pinned variables, nu = grad f(z) + mu 1, decide: all >= -tol means the KKT conditions
  hold and the pixel is done, otherwise the most negative one is freed;
- otherwise the pixel steps from its point towards z until the first free variable reaches
  zero, and that variable is pinned.

The objective decreases along the way and the problem is strictly convex, so the method ends
in finitely many steps with the exact solution (up to round-off), unlike interior-point QPs
(exact to ~1e-7 at best) or the usual weighted sum-to-one row (an approximation of the
constraint). An iteration limit guards against cycling on degenerate pixels (with a
ConvergenceWarning; never seen in the tests and benchmarks).

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
from ._arrays import as_endmembers, pixel_matrix

#: Relative eigenvalue floor of E E^T below which E counts as rank deficient.
RANK_TOL = 1e-10
#: Multipliers above -KKT_TOL * lambda_max(E E^T) count as non-negative.
KKT_TOL = 1e-11
#: Pixels solved together; bounds memory to a few (BLOCK, P) arrays.
BLOCK = 1 << 16
#: Free-set groups with fewer pixels are solved pixel by pixel in one batched product.
_GROUP_MIN = 32
#: Pixels per batched product (bounds its (n, m, P) temporary).
_GATHER = 4096


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
    """The affine maps c -> z solving the problem with the variables outside a free set F
    pinned at zero, computed once per free set and kept in stacks.

    On F, z_F = z0 + Z w with Z an orthonormal basis of {1^T z = 0} and z0 = 1/k
    (sum-to-one), or Z = I and z0 = 0; w is the least-squares solution of
    K w = [c; 0] - [R_F; sqrt(delta) I] z0 with K = [R_F Z; sqrt(delta) Z]. Stored over all
    P variables (zero outside F): z = c @ M[slot] + m0[slot], M (m, P), m0 (P,).
    """

    def __init__(self, factor: Factor, sum_to_one: bool):
        self.factor = factor
        self.sum_to_one = sum_to_one
        m, p = factor.R.shape
        self.M = np.empty((16, m, p))
        self.m0 = np.empty((16, p))
        self._slots: dict = {}

    def slots(self, keys: np.ndarray, free: np.ndarray) -> np.ndarray:
        """Slots of the maps of the free sets ``free`` (n, P) with keys ``keys`` (n,)."""
        keys = keys.tolist()
        missing = [i for i, key in enumerate(keys) if key not in self._slots]
        if missing:
            sizes = free[missing].sum(axis=1)
            for k in np.unique(sizes):
                new = [missing[i] for i in np.flatnonzero(sizes == k)]
                first = self._store(*self._face_maps(free[new]))
                self._slots.update((keys[i], first + j) for j, i in enumerate(new))
        return np.array([self._slots[key] for key in keys], dtype=np.intp)

    def _store(self, M: np.ndarray, m0: np.ndarray) -> int:
        first = len(self._slots)
        if first + len(M) > len(self.M):  # grow the stacks geometrically
            size = max(2 * len(self.M), first + len(M))
            self.M = np.concatenate([self.M, np.empty((size - len(self.M),) + self.M.shape[1:])])
            self.m0 = np.concatenate([self.m0, np.empty((size - len(self.m0), self.m0.shape[1]))])
        self.M[first : first + len(M)] = M
        self.m0[first : first + len(M)] = m0
        return first

    def _face_maps(self, free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Maps (f, m, P) and offsets (f, P) of f free sets (f, P) of the same size k."""
        n_faces, n_vars = free.shape
        cols = np.nonzero(free)[1].reshape(n_faces, -1)
        k = cols.shape[1]
        R_F = np.moveaxis(self.factor.R[:, cols], 1, 0)  # (f, m, k)
        if self.sum_to_one:
            Z = np.linalg.qr(np.ones((k, 1)), mode="complete")[0][:, 1:]
            z0 = np.full(k, 1.0 / k)
        else:
            Z, z0 = np.eye(k), np.zeros(k)
        K, offset = R_F @ Z, R_F @ z0
        if self.factor.delta:
            root = np.sqrt(self.factor.delta)
            K = np.concatenate(
                [K, np.broadcast_to(root * Z, (n_faces, k, k - self.sum_to_one))], axis=1
            )
            offset = np.concatenate([offset, np.broadcast_to(root * z0, (n_faces, k))], axis=1)
        # K has full column rank (R does, or the delta block makes it so): K^+ = R_K^-1 Q_K^T.
        Q_K, R_K = np.linalg.qr(K)
        K_pinv = np.linalg.solve(R_K, np.swapaxes(Q_K, 1, 2))  # (f, k', m [+ k])
        M = np.zeros((n_faces, R_F.shape[1], n_vars))
        m0 = np.zeros((n_faces, n_vars))
        rows = np.arange(n_faces)[:, None]
        M[rows, :, cols] = Z @ K_pinv[:, :, : R_F.shape[1]]
        m0[rows, cols] = z0 - (Z @ (K_pinv @ offset[..., None]))[..., 0]
        return M, m0


def _support_keys(free: np.ndarray) -> np.ndarray:
    """One sortable, hashable key per row of the (n, P) bool matrix ``free``."""
    packed = np.packbits(free, axis=1)
    n, n_bytes = packed.shape
    if n_bytes <= 8:
        padded = np.zeros((n, 8), dtype=np.uint8)
        padded[:, :n_bytes] = packed
        return padded.view(np.uint64).ravel()
    return np.ascontiguousarray(packed).view(f"V{n_bytes}").ravel()


def _face_solutions(
    faces: _FaceMaps, c: np.ndarray, slots: np.ndarray, starts: np.ndarray
) -> np.ndarray:
    """Face solutions z (n, P), exactly 0 on pinned variables, of pixels sorted by free
    set: group g is rows starts[g]:starts[g+1] and has map ``slots[g]``; c (n, m).

    Large groups take one matrix product each; the pixels of small groups (whose Python
    overhead would dominate) are done together by a batched product with their own maps.
    """
    z = np.empty((len(c), faces.M.shape[2]))
    counts = np.diff(starts)
    for g in np.flatnonzero(counts >= _GROUP_MIN):
        rows = slice(starts[g], starts[g + 1])
        z[rows] = c[rows] @ faces.M[slots[g]] + faces.m0[slots[g]]
    small = np.flatnonzero(np.repeat(counts < _GROUP_MIN, counts))
    pixel_slots = np.repeat(slots, counts)[small]
    for first in range(0, len(small), _GATHER):
        part = small[first : first + _GATHER]
        s = pixel_slots[first : first + _GATHER]
        z[part] = (c[part, None, :] @ faces.M[s])[:, 0] + faces.m0[s]
    return z


def solve(
    factor: Factor, C: np.ndarray, *, sum_to_one: bool, max_iter: int | None = None
) -> np.ndarray:
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
        warnings.warn(
            f"the active-set solver hit its iteration limit ({max_iter}) on "
            f"{unconverged} pixel(s); their abundances are feasible but may not "
            "be optimal",
            ConvergenceWarning,
            stacklevel=4,
        )
    return out


def _multipliers(faces: _FaceMaps, z: np.ndarray, c: np.ndarray, free: np.ndarray) -> np.ndarray:
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
    """Solve the rows of C (n, m). Two phases per pixel:

    1. from every variable free, pin *all* the variables whose face solution is negative,
       until a face solution is feasible (a heuristic for the start: usually the optimal
       face or next to it);
    2. from that feasible point, the primal active-set method proper (one variable pinned
       by a ratio test, or freed by its multiplier, per iteration).
    """
    n_vars = faces.factor.R.shape[1]
    tol = KKT_TOL * faces.factor.scale
    every = np.ones((1, n_vars), dtype=bool)
    whole = faces.slots(_support_keys(every), every)[0]
    out = C @ faces.M[whole] + faces.m0[whole]
    # Phase 1 starts with every variable free: rows whose solution is then feasible are
    # optimal (no variable is pinned, no multiplier to check); the others pin their
    # negative variables.
    rows = np.flatnonzero(np.any(out < 0, axis=1))
    c = C[rows]
    free = out[rows] > 0
    a = np.zeros(free.shape)  # phase 2: a feasible point; phase 1: the last face solution
    started = np.zeros(len(rows), dtype=bool)  # in phase 2
    for _ in range(max_iter):
        if rows.size == 0:
            return out, 0
        keys = _support_keys(free)
        order = np.argsort(keys)
        keys = keys[order]
        starts = np.concatenate(([0], np.flatnonzero(keys[1:] != keys[:-1]) + 1, [len(keys)]))
        heads = starts[:-1]
        z = np.empty(free.shape)
        z[order] = _face_solutions(
            faces, c[order], faces.slots(keys[heads], free[order[heads]]), starts
        )

        negative = z < 0  # z is exactly 0 on the pinned variables
        blocked = negative.any(axis=1)
        # Phase 1, infeasible: pin every negative variable (and keep z, to fall back on).
        clipping = blocked & ~started
        free &= ~(negative & clipping[:, None])
        a[clipping] = z[clipping]
        # Phase 2, infeasible: move towards z until the first variable hits zero, pin it.
        stepping = np.flatnonzero(blocked & started)
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
        started[moving] = True
        free[moving, entering[improvable]] = True

        keep = blocked.copy()
        keep[moving] = True
        rows, c, a, free, started = rows[keep], c[keep], a[keep], free[keep], started[keep]
    # Out of iterations: phase 2 pixels have a feasible point; phase 1 ones project theirs.
    out[rows] = a
    unstarted = rows[~started]
    out[unstarted] = (
        project_simplex(a[~started]) if faces.sum_to_one else np.maximum(a[~started], 0.0)
    )
    return out, rows.size


def project_simplex(V: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row of V (n, P) onto the unit simplex (sort-based)."""
    n, p = V.shape
    ordered = -np.sort(-V, axis=1)
    excess = np.cumsum(ordered, axis=1) - 1.0
    positive = ordered - excess / np.arange(1, p + 1) > 0
    last = p - 1 - np.argmax(positive[:, ::-1], axis=1)
    threshold = excess[np.arange(n), last] / (last + 1)
    return np.maximum(V - threshold[:, None], 0.0)


def solve_pixels(Y, E, *, sum_to_one: bool) -> np.ndarray:
    """Abundances (..., P) of the pixels ``Y`` (..., L) on endmembers ``E`` (P, L).

    Rows of Y holding a non-finite value give NaN abundances.
    """
    pixels, lead_shape = pixel_matrix(Y)
    E = as_endmembers(E, pixels.shape[1])
    factor = factorise(E)
    C = pixels @ factor.Q
    # A non-finite value anywhere in a pixel makes its row of C non-finite (NaN * 0 is NaN),
    # and C is L / m times smaller than Y to check.
    valid = np.all(np.isfinite(C), axis=1)
    out = np.full((pixels.shape[0], E.shape[0]), np.nan)
    out[valid] = solve(factor, C if valid.all() else C[valid], sum_to_one=sum_to_one)
    return out.reshape(lead_shape + (E.shape[0],))
