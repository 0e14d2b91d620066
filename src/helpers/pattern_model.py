"""Rupture-repair patterns with probabilities: a model-based detector of alliance ruptures.

The threshold criteria of :mod:`helpers.episodes` give every client one hard pattern. This
module gives each client the posterior probability of each pattern -- no rupture, repaired,
unrepaired -- under an explicit model of the alliance series, and estimates the paper's effect
of an unrepaired rupture with that uncertainty carried into the estimate (multiple imputation).
What the model assumes and what it does not is in ``docs/pattern_model.md``.

Model
-----
Client ``i`` is rated at sessions ``s = 1..S`` (columns of the wide alliance matrix; a missed
session is a missing value). Its alliance is

    y_is = a_i + b_i t_s - sum_e d_e h_e(s) + e_is,   e_is ~ N(0, sigma^2),
    (a_i, b_i) ~ N(mu, Sigma),

with ``t_s`` the session label minus the first label, and at most two episodes ``e`` whose
*shapes* ``h_e`` are fixed by a template and whose *drops* ``d_e`` are at least ``min_drop``:
``d_e ~ N(m, tau^2)`` truncated to ``[min_drop, inf)``, with ``m >= min_drop``. A template is

* ``none``: no episode;
* ``R1``: one repaired episode (rupture session ``r``, back within ``k <= repair_max``
  sessions, a linear climb: ``h(s) = 1 - (s - r) / k`` for ``r <= s < r + k``, else 0);
* ``U1``: one unrepaired episode (a step: ``h(s) = 1`` for ``s >= r``);
* ``RR`` / ``RU``: a repaired episode followed, at least one session after its repair, by a
  repaired / unrepaired one.

The pattern of a template is that of its last episode (``none`` -> no rupture). A rupture
needs a previous session (``r >= 2``) and a repaired episode must be back by session ``S``.
Every template is enumerated (31 one-episode and 160 two-episode templates for 10 sessions and
``repair_max = 3``). Templates are defined on all ``S`` sessions, so a rupture at a missed
session or after dropout is a template like any other: its likelihood is computed over the
observed sessions only (the rows of the missing sessions are dropped), and the data then say
nothing for or against it -- the probability that is left is the prior's.

Prior over templates: ``P(no rupture) = pi_0``, ``P(repaired) = pi_R``, ``P(unrepaired) =
pi_U``; within a ruptured pattern two episodes with probability ``omega``; uniform over the
templates of each kind.

Algorithm
---------
For a template with episode shapes ``H`` (S x E, E <= 2) the series is Gaussian given the
drops, ``y ~ N(Z mu - H d, C)`` with ``C = sigma^2 I + Z Sigma Z'`` over the observed rows:
the trend is integrated out exactly. ``C^-1`` comes from the Woodbury identity with a 2 x 2
inverse per client, so every quadratic form reduces to a few per-client numbers -- ``r' C^-1
r``, ``u = H' C^-1 r`` and ``G = H' C^-1 H`` (``r = y - Z mu``). The log-likelihood is
quadratic in ``d``, so the drops are integrated out exactly too: the Gaussian integral in
closed form times the posterior probability that every drop is at least ``min_drop`` (a
univariate normal tail for one episode, a bivariate normal orthant for two, by Owen's T
function) over the prior's. Summing over templates gives each client's marginal likelihood
and the posterior over templates, hence over patterns (Fearnhead, 2006, computes exact
change-point posteriors the same way, by summing over segmentations with the segment
parameters integrated out; Adams & MacKay, 2007, online).

The hyperparameters -- ``mu``, ``Sigma``, ``sigma``, ``m``, ``tau``, ``pi`` and ``omega`` --
are estimated by empirical Bayes: maximum marginal likelihood (for ``pi``, a posterior mode)
by the EM algorithm over the classifiable clients. The E-step is exact: the posterior of ``(template, d, a, b)`` is a
mixture over templates of truncated-normal drops (moments of the univariate and bivariate
truncated normal in closed form; Rosenbaum, 1961) times a Gaussian trend given the drops. The
M-step is closed form: the linear mixed model's updates of ``mu``, ``Sigma``, ``sigma`` with
the expected episode effect removed; the truncated normal's ``m``, ``tau`` by the EM of
Dempster, Laird & Rubin (1977, sec. 4.1.3) for truncated data, run to convergence;
``omega`` as a posterior mean; ``pi`` as the posterior mode under a Dirichlet(1.5, 1.5, 1.5)
prior -- half a client in each pattern -- so that no pattern's prevalence can reach 0, a state
EM never leaves. SQUAREM (Varadhan & Roland, 2008) extrapolates two EM
steps at a time and keeps the result only where the log-likelihood does not fall, so it never
falls (tested). The two-episode templates cost most of an E-step, so EM first runs without
them (``omega = 0``); the log-likelihood as a function of ``omega`` alone then says whether
they are wanted (:func:`_fit`). Iterations stop when a cycle gains less than ``tol``
(relative). Everything is vectorised over clients, and over trials: :func:`fit_pattern_arrays`
fits many trials stacked, each with its own hyperparameters and stopping point, with the same
numbers as one at a time (tested).

References
----------
Adams, R. P., & MacKay, D. J. C. (2007). Bayesian online changepoint detection.
arXiv:0710.3742.
Dempster, A. P., Laird, N. M., & Rubin, D. B. (1977). Maximum likelihood from incomplete data
via the EM algorithm. Journal of the Royal Statistical Society B, 39(1), 1-38.
Fearnhead, P. (2006). Exact and efficient Bayesian inference for multiple changepoint problems.
Statistics and Computing, 16(2), 203-213.
Owen, D. B. (1956). Tables for computing bivariate normal probabilities. Annals of
Mathematical Statistics, 27(4), 1075-1090.
Rosenbaum, S. (1961). Moments of a truncated bivariate normal distribution. Journal of the
Royal Statistical Society B, 23(2), 405-408.
Varadhan, R., & Roland, C. (2008). Simple and globally convergent methods for accelerating the
convergence of any EM algorithm. Scandinavian Journal of Statistics, 35(2), 335-353.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special

from helpers.contract import INSUFFICIENT, PATTERN_LABELS, DataValidationError
from helpers.ols import ols_batch
from helpers.pooling import rubin_rules

__all__ = [
    "PROBABILITY_COLUMNS",
    "PatternModel",
    "fit_pattern_model",
    "fit_pattern_arrays",
    "template_table",
    "default_min_drop",
    "unrepaired_effect",
    "unrepaired_effect_arrays",
    "min_drop_sensitivity",
    "EFFECT_COLUMNS",
    # building blocks that helpers.pattern_growth shares
    "wide_scores",
    "draw_categorical",
    "impute_patterns",
]

#: Columns of :attr:`PatternModel.probabilities`, in their fixed order.
PROBABILITY_COLUMNS = [
    "participant_id",
    "n_sessions_observed",
    "p_no_rupture",
    "p_repaired",
    "p_unrepaired",
    "pattern",
    "p_pattern",
    "rupture_session_mean",
    "n_observed_after",
]

#: Template kinds: no episode, one repaired, one unrepaired, repaired + repaired, repaired + unrepaired.
KINDS = ("none", "R1", "U1", "RR", "RU")
_KIND_PATTERN = np.array([0, 1, 2, 1, 2])  # index into PATTERN_LABELS
_KIND_EPISODES = np.array([0, 1, 1, 2, 2])
_LOG2PI = float(np.log(2 * np.pi))
#: A two-episode template whose likelihood x prior is certainly below exp(-_PRUNE) times a
#: client's best one-episode template (about 1e-13) is left out of that client's sum.
_PRUNE = 30.0
#: Inner iterations of the drop distribution's M-step (:func:`_drop_update`); it stops earlier
#: once every trial's (m, tau) has settled.
_DROP_ITER = 200
#: Pseudo-clients per pattern of the Dirichlet(1 + this) prior on the prevalences: EM then
#: maximises the posterior of pi (a posterior mode, not the likelihood), and no pattern's
#: prevalence can reach 0 -- a state EM never leaves, into which an extrapolated step could
#: throw it for good.
_PREVALENCE_PSEUDO = 0.5
#: Smallest SD of the drop distribution, as a fraction of min_drop (about 1.96 standard errors
#: of measurement): drops this alike cannot be told from equal ones, and at SD -> 0 EM barely
#: moves the mean (the posterior of every drop is pinned to it).
_MIN_DROP_SD = 0.1


# --------------------------------------------------------------------------------------------
# templates
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Templates:
    """Every change-point template of ``S`` sessions (see the module docstring).

    ``shapes`` (B x S) holds the episode shapes (1 = the whole drop below the trend);
    ``kind``, ``first``, ``second`` (length T) say which shapes each template uses (-1 =
    none); ``pair_first``/``pair_second`` are ``first``/``second`` of the two-episode
    templates alone, which follow the one-episode ones.
    """

    n_sessions: int
    repair_max: int
    shapes: np.ndarray
    shape_session: np.ndarray
    shape_k: np.ndarray
    kind: np.ndarray
    first: np.ndarray
    second: np.ndarray

    @property
    def shapes_t(self) -> np.ndarray:
        """``shapes.T`` in C order (BLAS multiplies by it several times faster than by the
        transposed view)."""
        if "_shapes_t" not in self.__dict__:
            object.__setattr__(self, "_shapes_t", np.ascontiguousarray(self.shapes.T))
        return self.__dict__["_shapes_t"]

    @property
    def n_shapes(self) -> int:
        return self.shapes.shape[0]

    @property
    def n_one(self) -> int:
        """Number of templates with at most one episode (none + one per shape)."""
        return 1 + self.n_shapes

    @property
    def pair_first(self) -> np.ndarray:
        return self.first[self.n_one:]

    @property
    def pair_second(self) -> np.ndarray:
        return self.second[self.n_one:]

    def one_episode(self) -> "_Templates":
        """The templates with at most one episode (the first ``n_one``)."""
        n = self.n_one
        return _Templates(self.n_sessions, self.repair_max, self.shapes, self.shape_session,
                          self.shape_k, self.kind[:n], self.first[:n], self.second[:n])

    @property
    def incidence(self):
        """0/1 matrices (P, B) mapping each two-episode template to its first / second shape
        (a product with them sums per shape, exactly)."""
        eye = np.eye(self.n_shapes)
        return eye[self.pair_first], eye[self.pair_second]

    @property
    def last(self) -> np.ndarray:
        """Shape index of the episode that carries the template's pattern (-1 for none)."""
        return np.where(self.second >= 0, self.second, self.first)


def _make_templates(S: int, repair_max: int, two_episodes: bool) -> _Templates:
    s = np.arange(1, S + 1)
    rows, sess, ks = [], [], []
    for r in range(2, S + 1):  # unrepaired: a step down from r on
        rows.append((s >= r).astype(float))
        sess.append(r)
        ks.append(0)
    for r in range(2, S + 1):  # repaired: down at r, a linear climb back by r + k
        for k in range(1, repair_max + 1):
            if r + k <= S:
                rows.append(np.where((s >= r) & (s < r + k), 1 - (s - r) / k, 0.0))
                sess.append(r)
                ks.append(k)
    shapes = np.array(rows).reshape(-1, S)
    sess, ks = np.array(sess, dtype=np.int64), np.array(ks, dtype=np.int64)
    B = len(rows)
    kind = [0] + [2 if k == 0 else 1 for k in ks]
    first = [-1] + list(range(B))
    second = [-1] * (B + 1)
    if two_episodes:
        repaired = np.flatnonzero(ks > 0)
        for want_kind, repaired_second in ((3, True), (4, False)):
            for a in repaired:
                for b in range(B):
                    if (ks[b] > 0) == repaired_second and sess[b] >= sess[a] + ks[a] + 1:
                        kind.append(want_kind)
                        first.append(a)
                        second.append(b)
    return _Templates(S, repair_max, shapes, sess, ks, np.array(kind), np.array(first),
                      np.array(second))


def template_table(n_sessions: int = 10, repair_max: int = 3, two_episodes: bool = True) -> pd.DataFrame:
    """Every template of the pattern model, one row each.

    Parameters
    ----------
    n_sessions : int
        Sessions in the series.
    repair_max : int
        A repaired episode is back within 1..``repair_max`` sessions.
    two_episodes : bool
        Include the two-episode templates (a repaired episode, then a repaired or an
        unrepaired one).

    Returns
    -------
    DataFrame
        ``kind`` (none, R1, U1, RR, RU), ``pattern``, ``rupture_sessions`` and
        ``repair_sessions`` (';'-joined session numbers, as the simulator's truth table),
        ``n_episodes``.

    Examples
    --------
    >>> t = template_table(10, 3)
    >>> t["kind"].value_counts().reindex(["none", "R1", "U1", "RR", "RU"]).tolist()
    [1, 21, 9, 96, 64]
    """
    tpl = _make_templates(int(n_sessions), int(repair_max), bool(two_episodes))
    out = []
    for kd, a, b in zip(tpl.kind, tpl.first, tpl.second):
        eps = [e for e in (a, b) if e >= 0]
        rup = [int(tpl.shape_session[e]) for e in eps]
        rep = [int(tpl.shape_session[e] + tpl.shape_k[e]) for e in eps if tpl.shape_k[e] > 0]
        out.append({"kind": KINDS[kd], "pattern": PATTERN_LABELS[_KIND_PATTERN[kd]],
                    "rupture_sessions": ";".join(map(str, rup)),
                    "repair_sessions": ";".join(map(str, rep)), "n_episodes": len(eps)})
    return pd.DataFrame(out)


# --------------------------------------------------------------------------------------------
# normal probabilities and truncated moments
# --------------------------------------------------------------------------------------------
def _log_phi(x):
    return -0.5 * (x * x + _LOG2PI)


def _bvn_upper(a1, a2, rho):
    """P(X1 >= a1, X2 >= a2) for a standard bivariate normal with correlation ``rho``.

    Owen's (1956) formula with scipy's Owen's T, for ``h = -a1``, ``k = -a2``:
    ``P(X1 <= h, X2 <= k) = (Phi(h) + Phi(k)) / 2 - T(h, a_h) - T(k, a_k) - beta``, with
    ``a_h = (k - rho h) / (h sqrt(1 - rho^2))``, ``a_k`` likewise and ``beta = 1/2`` when
    ``h k < 0`` (or ``h k = 0`` and ``h + k < 0``), else 0. A zero ``h`` (``k``) is replaced
    by 1e-150, which gives the formula's limit (``T(0+, +-inf) = +-1/4``).
    """
    h, k = -np.asarray(a1, dtype=float), -np.asarray(a2, dtype=float)
    rho = np.clip(rho, -1 + 1e-12, 1 - 1e-12)
    tiny = 1e-150
    h = np.where(h == 0, tiny, h)
    k = np.where(k == 0, tiny, k)
    s = np.sqrt(1 - rho * rho)
    th = special.owens_t(h, (k - rho * h) / (h * s))
    tk = special.owens_t(k, (h - rho * k) / (k * s))
    beta = np.where(h * k < 0, 0.5, 0.0)
    p = 0.5 * (special.ndtr(h) + special.ndtr(k)) - th - tk - beta
    return np.clip(p, 0.0, 1.0)


def _truncated_moments_1d(nu, var, lo):
    """Mean and second moment of N(nu, var) truncated to [lo, inf), and log P(X >= lo)."""
    sd = np.sqrt(var)
    alpha = (lo - nu) / sd
    log_tail = special.log_ndtr(-alpha)
    mills = np.exp(_log_phi(alpha) - log_tail)  # phi(alpha) / (1 - Phi(alpha))
    mean = nu + sd * mills
    v = var * np.maximum(1 + alpha * mills - mills * mills, 0.0)
    return mean, v + mean * mean, log_tail


def _log_orthant_bound(nu1, nu2, v11, v22, v12, lo):
    """An upper bound on log P(d1 >= lo, d2 >= lo), d ~ N(nu, V): the smaller of the two
    marginal tails, of the tail of d1 + d2 >= 2 lo (the event implies it), and -- for a
    negative correlation -- of the product of the tails (Slepian's inequality)."""
    s1, s2 = np.sqrt(v11), np.sqrt(v22)
    t1 = special.log_ndtr((nu1 - lo) / s1)
    t2 = special.log_ndtr((nu2 - lo) / s2)
    t_sum = special.log_ndtr((nu1 + nu2 - 2 * lo) / np.sqrt(v11 + v22 + 2 * v12))
    return np.minimum(np.minimum(t1, t2), np.minimum(t_sum, np.where(v12 <= 0, t1 + t2, np.inf)))


def _truncated_moments_2d(nu1, nu2, v11, v22, v12, lo):
    """Moments of N(nu, V) (2-D) truncated to both coordinates >= lo.

    Returns E d1, E d2, E d1^2, E d2^2, E d1 d2 and log P(d1 >= lo, d2 >= lo). The
    standardised moments come from Stein's identity (Rosenbaum, 1961): with ``a_j`` the
    standardised bounds, ``L`` the orthant probability, ``A = (a2 - rho a1) / s`` and
    ``B = (a1 - rho a2) / s`` (``s = sqrt(1 - rho^2)``),
    ``L E X1 = phi(a1) Q(A) + rho phi(a2) Q(B)``,
    ``L E X1^2 = L + a1 phi(a1) Q(A) + rho^2 a2 phi(a2) Q(B) + rho s phi(a2) phi(B)``,
    ``L E X1 X2 = rho L + rho a1 phi(a1) Q(A) + rho a2 phi(a2) Q(B) + s phi(a1) phi(A)``.
    """
    s1, s2 = np.sqrt(v11), np.sqrt(v22)
    rho = np.clip(v12 / (s1 * s2), -1 + 1e-12, 1 - 1e-12)
    a1, a2 = (lo - nu1) / s1, (lo - nu2) / s2
    L = _bvn_upper(a1, a2, rho)
    s = np.sqrt(1 - rho * rho)
    A, B = (a2 - rho * a1) / s, (a1 - rho * a2) / s
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        phi_a1, phi_a2 = np.exp(_log_phi(a1)), np.exp(_log_phi(a2))
        p1, p2 = phi_a1 * special.ndtr(-A), phi_a2 * special.ndtr(-B)
        joint = phi_a1 * np.exp(_log_phi(A))  # = phi(a2) phi(B) = s * bivariate density
        inv = 1.0 / L
        ex1 = (p1 + rho * p2) * inv
        ex2 = (p2 + rho * p1) * inv
        ex11 = 1 + (a1 * p1 + rho * rho * a2 * p2 + rho * s * joint) * inv
        ex22 = 1 + (a2 * p2 + rho * rho * a1 * p1 + rho * s * joint) * inv
        ex12 = rho + (rho * a1 * p1 + rho * a2 * p2 + s * joint) * inv
        log_l = np.log(L)
        e1, e2 = nu1 + s1 * ex1, nu2 + s2 * ex2
        e11 = nu1 * nu1 + 2 * nu1 * s1 * ex1 + v11 * ex11
        e22 = nu2 * nu2 + 2 * nu2 * s2 * ex2 + v22 * ex22
        e12 = nu1 * nu2 + nu1 * s2 * ex2 + nu2 * s1 * ex1 + s1 * s2 * ex12
    # Far in the tail (L below what Owen's formula resolves) the ratios are not numbers: such a
    # template is negligible, and it is left out rather than allowed to spread NaN.
    bad = ~(np.isfinite(e1) & np.isfinite(e2) & np.isfinite(e11) & np.isfinite(e22) & np.isfinite(e12))
    log_l = np.where(bad, -np.inf, log_l)
    return e1, e2, e11, e22, e12, log_l


# --------------------------------------------------------------------------------------------
# data: the wide matrix and what depends only on which sessions were observed
# --------------------------------------------------------------------------------------------
@dataclass
class _Data:
    """Stacked trials: wide alliance ``y`` (NaN -> 0), ``mask`` (observed), ``group`` (trial
    of each client), the time axis ``Z`` (S x 2) and, per distinct mask, the products of
    the template shapes and the trend design over the observed sessions."""

    y: np.ndarray
    mask: np.ndarray
    group: np.ndarray
    n_obs: np.ndarray
    Z: np.ndarray
    mask_id: np.ndarray
    hmh_d: np.ndarray  # (U, B): h_b' M h_b
    hmh_p: np.ndarray  # (U, P): h_first' M h_second of the two-episode templates
    hmz: np.ndarray  # (U, B, 2): h_b' M Z
    zmz: np.ndarray  # (U, 2, 2): Z' M Z


def _prepare(X, labels, group, tpl: _Templates) -> _Data:
    X = np.asarray(X, dtype=float)
    mask = ~np.isnan(X)
    y = np.where(mask, X, 0.0)
    t = np.asarray(labels, dtype=float) - float(labels[0])
    Z = np.column_stack([np.ones_like(t), t])
    masks, mask_id = np.unique(mask, axis=0, return_inverse=True)
    mf = masks.astype(float)
    H = tpl.shapes
    hmh_d = mf @ (H * H).T
    hmh_p = mf @ (H[tpl.pair_first] * H[tpl.pair_second]).T
    hmz = np.einsum("bs,us,sj->ubj", H, mf, Z)
    zmz = np.einsum("si,us,sj->uij", Z, mf, Z)
    return _Data(y, mask, np.asarray(group, dtype=np.int64), mask.sum(axis=1), Z,
                 mask_id.ravel(), hmh_d, hmh_p, hmz, zmz)


# --------------------------------------------------------------------------------------------
# hyperparameters (one set per trial)
# --------------------------------------------------------------------------------------------
@dataclass
class _Theta:
    """Hyperparameters of G trials (leading axis G)."""

    mu: np.ndarray  # (G, 2) mean level at the first session and slope per session
    cov: np.ndarray  # (G, 2, 2) covariance of level and slope
    sigma2: np.ndarray  # (G,) noise variance
    drop_mean: np.ndarray  # (G,) m: mean of the (untruncated) drop distribution
    drop_sd: np.ndarray  # (G,) tau
    min_drop: np.ndarray  # (G,) the truncation point (fixed)
    prevalence: np.ndarray  # (G, 3) no rupture, repaired, unrepaired
    p_second: np.ndarray  # (G,) omega

    def take(self, g):
        return _Theta(*(getattr(self, f)[g] for f in _THETA_FIELDS))

    def put(self, g, other: "_Theta"):
        for f in _THETA_FIELDS:
            getattr(self, f)[g] = getattr(other, f)

    def copy(self):
        return _Theta(*(getattr(self, f).copy() for f in _THETA_FIELDS))


_THETA_FIELDS = ("mu", "cov", "sigma2", "drop_mean", "drop_sd", "min_drop", "prevalence", "p_second")


def _log_prior(th: _Theta, tpl: _Templates) -> np.ndarray:
    """(G, T) log prior probability of every template."""
    n_kind = np.bincount(tpl.kind, minlength=5).astype(float)
    pi = th.prevalence
    has_two = np.array([n_kind[3] > 0, n_kind[4] > 0])  # repaired, unrepaired
    with np.errstate(divide="ignore"):
        om = th.p_second[:, None] * has_two[None, :]  # (G, 2): P(two | repaired / unrepaired)
        per_kind = np.column_stack([
            np.log(pi[:, 0]),
            np.log(pi[:, 1]) + np.log1p(-om[:, 0]) - np.log(max(n_kind[1], 1)),
            np.log(pi[:, 2]) + np.log1p(-om[:, 1]) - np.log(max(n_kind[2], 1)),
            np.log(pi[:, 1]) + np.log(om[:, 0]) - np.log(max(n_kind[3], 1)),
            np.log(pi[:, 2]) + np.log(om[:, 1]) - np.log(max(n_kind[4], 1)),
        ])
    return per_kind[:, tpl.kind]


# --------------------------------------------------------------------------------------------
# E-step: template likelihoods, posteriors and the moments the M-step needs
# --------------------------------------------------------------------------------------------
def _inv2(A):
    """Inverses and determinants of 2 x 2 matrices (..., 2, 2), in closed form."""
    det = A[..., 0, 0] * A[..., 1, 1] - A[..., 0, 1] * A[..., 1, 0]
    inv = np.empty_like(A)
    inv[..., 0, 0], inv[..., 1, 1] = A[..., 1, 1], A[..., 0, 0]
    inv[..., 0, 1], inv[..., 1, 0] = -A[..., 0, 1], -A[..., 1, 0]
    return inv / det[..., None, None], det


def _dot2(a, b):
    """``(a * b).sum(axis=-1)`` for a last axis of length 2, written out (numpy's reduction
    over a short last axis is several times slower than two products and a sum)."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1]


def _mv(K, x):
    """``K x`` for stacks of 2 x 2 matrices (n, 2, 2) and 2-vectors (n, 2)."""
    return K[:, :, 0] * x[:, :1] + K[:, :, 1] * x[:, 1:]


def _trend_terms(D: _Data, tpl: _Templates, th: _Theta, idx):
    """Per-client quadratic forms of the trend-integrated covariance ``C``.

    With ``K = Sigma (sigma^2 I + Z'MZ Sigma)^-1`` (Woodbury), ``C^-1 = (M - M Z K Z' M) /
    sigma^2`` over the observed sessions, so ``r' C^-1 r``, ``u = H C^-1 r`` and the Gram
    entries ``h_b' C^-1 h_c`` need only the per-mask products of :class:`_Data`.
    """
    g, mid = D.group[idx], D.mask_id[idx]
    s2 = th.sigma2[g]
    zmz, hmz = D.zmz[mid], D.hmz[mid]
    A = s2[:, None, None] * np.eye(2) + zmz @ th.cov[g]
    A_inv, det_a = _inv2(A)
    K = th.cov[g] @ A_inv
    K = 0.5 * (K + np.swapaxes(K, 1, 2))  # symmetric in exact arithmetic
    mu = th.mu[g]
    r = D.mask[idx] * (D.y[idx] - mu[:, :1] - mu[:, 1:] * D.Z[:, 1])
    zr = r @ D.Z
    hr = r @ tpl.shapes_t
    kzr = _mv(K, zr)
    hk = hmz[:, :, :1] * K[:, None, 0, :] + hmz[:, :, 1:] * K[:, None, 1, :]  # (Z'M h_b)' K
    pf, ps = tpl.pair_first, tpl.pair_second
    n_obs = D.n_obs[idx]
    return {
        "g": g, "mid": mid, "s2": s2, "K": K, "r": r, "zr": zr, "hr": hr, "hmz": hmz, "zmz": zmz,
        "hk": hk, "u": (hr - hmz[:, :, 0] * kzr[:, None, 0] - hmz[:, :, 1] * kzr[:, None, 1]) / s2[:, None],
        "q0": ((r * r).sum(axis=1) - (zr * kzr).sum(axis=1)) / s2,
        "logdet": (n_obs - 2) * np.log(s2) + np.log(det_a),
        "gd": (D.hmh_d[mid] - _dot2(hk, hmz)) / s2[:, None],
        "gp": (D.hmh_p[mid] - _dot2(hk[:, pf], hmz[:, ps])) / s2[:, None],
        "hmh_d": D.hmh_d[mid], "hmh_p": D.hmh_p[mid], "n_obs": n_obs,
    }


def _e_step(D: _Data, tpl: _Templates, th: _Theta, idx, log_prior):
    """Log-likelihood of every template, posterior weights and truncated-drop moments.

    Returns a dict with ``loglik`` (n,), ``ll`` and ``w`` (n, T: each template's
    log-likelihood and posterior weight) and the per-client sums the M-step uses (``c1``: sum
    over templates of w E[d_b] per shape b; ``c2d``: of w E[d_b^2]; ``c2p``: w E[d1 d2] of
    each two-episode template; ``n_drops``: expected number of drops), plus the trend terms.
    """
    tt = _trend_terms(D, tpl, th, idx)
    g = tt["g"]
    ll0 = -0.5 * (tt["q0"] + tt["logdet"] + tt["n_obs"] * _LOG2PI)
    drop = (th.drop_mean[g][:, None], th.drop_sd[g][:, None] ** 2, th.min_drop[g][:, None])
    one = _one_episode(tt, ll0, *drop)
    n_one = tpl.n_one
    lp1 = np.concatenate([ll0[:, None], one["ll"]], axis=1) + log_prior[g, :n_one]
    floor = lp1.max(axis=1, keepdims=True) - _PRUNE - log_prior[g, n_one:]
    two = _two_episodes(tt, tpl, one, ll0, *drop, floor)
    ll = np.concatenate([ll0[:, None], one["ll"], two["ll"]], axis=1)
    lp = ll + log_prior[g]
    top = lp.max(axis=1, keepdims=True)
    w = np.exp(lp - top)
    total = w.sum(axis=1, keepdims=True)
    w /= total
    return {**tt, "loglik": top[:, 0] + np.log(total[:, 0]), "ll": ll, "w": w,
            **_weighted_moments(w, tpl, one, two)}


def _one_episode(tt, ll0, m, tau2, lo):
    """One episode of shape b: ``d | y ~ N(nu, 1 / lam)`` truncated to ``[lo, inf)``.

    The log-likelihood is ``ll0 - d u + ... `` quadratic in d; with the prior N(m, tau^2)
    truncated at ``lo`` the integral over d is Gaussian times the posterior's tail
    probability over the prior's.
    """
    prior_tail = special.log_ndtr((m - lo) / np.sqrt(tau2))
    lam = tt["gd"] + 1 / tau2
    eta = m / tau2 - tt["u"]
    nu = eta / lam
    ed, ed2, tail = _truncated_moments_1d(nu, 1 / lam, lo)
    ll = ll0[:, None] + 0.5 * (eta * nu - m * m / tau2) - 0.5 * np.log(tau2 * lam) + tail - prior_tail
    return {"ll": ll, "lam": lam, "eta": eta, "ed": ed, "ed2": ed2, "prior_tail": prior_tail}


def _gaussian_pairs(tt, tpl: _Templates, one, ll0, m, tau2, rows):
    """The two-episode templates of the clients ``rows`` without the truncation: the
    posterior ``(d1, d2) | y ~ N(nu, V)`` and the Gaussian part of the log-likelihood, which is
    an upper bound on the template's log-likelihood (the orthant probability it lacks is <= 1)."""
    pf, ps = tpl.pair_first, tpl.pair_second
    lam, eta = one["lam"][rows], one["eta"][rows]
    l11, l22, l12 = lam[:, pf], lam[:, ps], tt["gp"][rows]
    det = l11 * l22 - l12 * l12
    v11, v22, v12 = l22 / det, l11 / det, -l12 / det
    e1, e2 = eta[:, pf], eta[:, ps]
    nu1, nu2 = v11 * e1 + v12 * e2, v12 * e1 + v22 * e2
    m, tau2 = m[rows], tau2[rows]
    ll = (ll0[rows, None] + 0.5 * (e1 * nu1 + e2 * nu2 - 2 * m * m / tau2)
          - 0.5 * np.log(tau2 * tau2 * det) - 2 * one["prior_tail"][rows])
    return ll, nu1, nu2, v11, v22, v12


def _two_episodes(tt, tpl: _Templates, one, ll0, m, tau2, lo, floor):
    """Two episodes: ``(d1, d2) | y ~ N(nu, V)`` truncated to the orthant ``>= lo``.

    ``floor`` (n, P): a template whose log-likelihood is certainly below it cannot matter and
    is not evaluated (log-likelihood -inf, moments 0). Only the clients with a finite floor
    somewhere are looked at (a trial whose ``omega`` is 0 gives its two-episode templates no
    prior weight: every floor is +inf); of their templates, those whose Gaussian part
    (:func:`_gaussian_pairs`) is below the floor are left out first, then those whose Gaussian
    part plus a cheap upper bound on the orthant probability (:func:`_log_orthant_bound`) is;
    only the rest get Owen's formula. A computed orthant above the bound (Owen's formula loses
    relative precision far in the tail) is capped at it.
    """
    shape = floor.shape
    f = [np.zeros(shape) for _ in range(5)]
    ll = np.full(shape, -np.inf)
    rows = np.flatnonzero((floor < np.inf).any(axis=1))
    if rows.size:
        gll, nu1, nu2, v11, v22, v12 = _gaussian_pairs(tt, tpl, one, ll0, m, tau2, rows)
        fl = floor[rows]
        r_i, t_i = np.nonzero(gll > fl)  # the orthant probability is <= 1
        args = [a[r_i, t_i] for a in (gll, nu1, nu2, v11, v22, v12)]
        lo_k = lo[rows][r_i, 0]
        bound = _log_orthant_bound(*args[1:], lo_k)
        keep = args[0] + bound > fl[r_i, t_i]
        if keep.any():
            out = _truncated_moments_2d(*(a[keep] for a in args[1:]), lo_k[keep])
            rr, tt_ = rows[r_i[keep]], t_i[keep]
            for arr, val in zip(f, out[:5]):
                arr[rr, tt_] = val
            ll[rr, tt_] = args[0][keep] + np.minimum(out[5], bound[keep])
    return {"ll": ll, "f1": f[0], "f2": f[1], "f11": f[2], "f22": f[3], "f12": f[4]}


def _weighted_moments(w, tpl: _Templates, one, two):
    """Posterior-weighted drop moments per shape (a negligible template, w == 0, may have
    NaN moments: they are left out)."""
    B = tpl.n_shapes
    w1, w2 = w[:, 1:1 + B], w[:, 1 + B:]

    def wsum(wt, x):
        return np.multiply(wt, x, out=np.zeros(np.broadcast(wt, x).shape), where=wt > 0)

    inc1, inc2 = tpl.incidence
    return {
        "c1": wsum(w1, one["ed"]) + wsum(w2, two["f1"]) @ inc1 + wsum(w2, two["f2"]) @ inc2,
        "c2d": wsum(w1, one["ed2"]) + wsum(w2, two["f11"]) @ inc1 + wsum(w2, two["f22"]) @ inc2,
        "c2p": wsum(w2, two["f12"]),
        "n_drops": w1.sum(axis=1) + 2 * w2.sum(axis=1),
    }


# --------------------------------------------------------------------------------------------
# M-step
# --------------------------------------------------------------------------------------------
def _group_sum(x, starts):
    """Sums of ``x`` over consecutive blocks of rows beginning at ``starts``."""
    return np.add.reduceat(x, starts, axis=0)


def _m_step(E, tpl: _Templates, th: _Theta, starts) -> _Theta:
    """Closed-form M-step of the groups whose clients E holds (rows grouped by trial)."""
    K, hmz, zmz, s2 = E["K"], E["hmz"], E["zmz"], E["s2"]
    pf, ps = tpl.pair_first, tpl.pair_second
    c1, c2d, c2p = E["c1"], E["c2d"], E["c2p"]
    # Z'M E[delta] and Z'M Cov(delta) M Z, delta = sum_e d_e h_e the episodes' effect
    zd = np.einsum("nb,nbj->nj", c1, hmz)
    cross = np.swapaxes(c2p[:, :, None] * hmz[:, pf], 1, 2) @ hmz[:, ps]
    zdd = np.swapaxes(c2d[:, :, None] * hmz, 1, 2) @ hmz + cross + np.swapaxes(cross, 1, 2)
    cov_zd = zdd - zd[:, :, None] * zd[:, None, :]
    g0 = E["g"][starts]
    eb = th.mu[E["g"]] + _mv(K, E["zr"] + zd)
    cov_b = s2[:, None, None] * K + K @ cov_zd @ K
    # E || P (r + delta) ||^2 with P = M - M Z K Z' M, through the bilinear forms
    # x'P'Py = x'My - 2 (Z'Mx)'K(Z'My) + (Z'Mx)'K Z'MZ K(Z'My); the middle terms are those
    # of the E-step's quadratic forms (s2 q0, s2 u, s2 G), so x'P'Py = 2 s2 (form) - x'My + last.
    hk, zr = E["hk"], E["zr"]
    hkz = hk[:, :, :1] * zmz[:, None, 0, :] + hk[:, :, 1:] * zmz[:, None, 1, :]  # h'MZ K Z'MZ
    kzkzr = _mv(K, _mv(zmz, _mv(K, zr)))
    rr = (E["r"] ** 2).sum(axis=1)
    b_rr = 2 * s2 * E["q0"] - rr + (zr * kzkzr).sum(axis=1)
    b_rh = 2 * s2[:, None] * E["u"] - E["hr"] + hmz[:, :, 0] * kzkzr[:, None, 0] + hmz[:, :, 1] * kzkzr[:, None, 1]
    b_hh = 2 * s2[:, None] * E["gd"] - E["hmh_d"] + _dot2(hkz, hk)
    b_hp = 2 * s2[:, None] * E["gp"] - E["hmh_p"] + _dot2(hkz[:, pf], hk[:, ps])
    trace = (zmz * K).sum(axis=(1, 2))  # tr(Z'MZ K), both symmetric
    ss = (b_rr + 2 * (c1 * b_rh).sum(axis=1) + (c2d * b_hh).sum(axis=1) + 2 * (c2p * b_hp).sum(axis=1)
          + s2 * trace)
    n = _group_sum(np.ones(len(ss)), starts)
    new = th.take(g0)
    new.mu = _group_sum(eb, starts) / n[:, None]
    second = _group_sum(cov_b + eb[:, :, None] * eb[:, None, :], starts) / n[:, None, None]
    new.cov = second - new.mu[:, :, None] * new.mu[:, None, :]
    new.sigma2 = _group_sum(ss, starts) / _group_sum(E["n_obs"].astype(float), starts)
    _drop_update(new, _group_sum(E["n_drops"], starts), _group_sum(c1.sum(axis=1), starts),
                 _group_sum(c2d.sum(axis=1), starts))
    w = E["w"]
    pat = np.column_stack([w[:, tpl.kind == 0].sum(axis=1), w[:, _KIND_PATTERN[tpl.kind] == 1].sum(axis=1),
                           w[:, _KIND_PATTERN[tpl.kind] == 2].sum(axis=1)])
    pat_g = _group_sum(pat, starts)
    # the posterior mode under the Dirichlet prior: _PREVALENCE_PSEUDO clients in each pattern
    new.prevalence = (pat_g + _PREVALENCE_PSEUDO) / (n + 3 * _PREVALENCE_PSEUDO)[:, None]
    two = _group_sum(w[:, tpl.kind >= 3].sum(axis=1), starts)
    ruptured = pat_g[:, 1] + pat_g[:, 2]
    if (tpl.kind >= 3).any():
        new.p_second = np.where(ruptured > 0, two / np.maximum(ruptured, 1e-300), new.p_second)
    return new


def _drop_update(th: _Theta, n_d, s1, s2):
    """M-step of the drop distribution: the truncated normal's (m, tau), with m >= min_drop,
    that maximise the expected log-likelihood of the drops (expected count ``n_d``, sums of
    the drops ``s1`` and of their squares ``s2``).

    Solved by the EM of Dempster, Laird & Rubin (1977, sec. 4.1.3) for truncated data, run to
    convergence: the draws below the truncation point that the truncation hides are counted
    as missing (``n_d (1 - p) / p`` of them, p the probability above the point, with the
    moments of the normal below it), and the complete-data maximum is the normal's, with the
    mean kept at or above the point. With m >= min_drop, p >= 1/2, so it converges fast. The
    bound keeps the family away from its exponential limit (m -> -inf with the shape above
    the point fixed), a ridge along which the likelihood rises for ever when the drops look
    exponential, and EM would crawl.
    """
    lo = th.min_drop
    ok = n_d > 1e-8
    m, tau = th.drop_mean.copy(), th.drop_sd.copy()
    mean_d = s1 / np.where(ok, n_d, 1.0)
    sq_d = s2 / np.where(ok, n_d, 1.0)
    for _ in range(_DROP_ITER):
        beta = (lo - m) / tau
        miss = np.expm1(-special.log_ndtr(-beta))  # (1 - p) / p per observed drop
        mills = np.exp(_log_phi(beta) - special.log_ndtr(beta))  # phi / Phi below the point
        e_b = m - tau * mills
        v_b = tau * tau * np.maximum(1 - beta * mills - mills * mills, 0.0)
        m_new = np.maximum((mean_d + miss * e_b) / (1 + miss), lo)
        var_new = (sq_d + miss * (v_b + e_b * e_b)) / (1 + miss) - 2 * m_new * (mean_d + miss * e_b) / (1 + miss) + m_new**2
        tau_new = np.sqrt(np.maximum(var_new, (_MIN_DROP_SD * lo) ** 2))
        done = np.all((np.abs(m_new - m) < 1e-12 * (1 + np.abs(m))) & (np.abs(tau_new - tau) < 1e-12 * tau))
        m, tau = m_new, tau_new
        if done:
            break
    th.drop_mean = np.where(ok, m, th.drop_mean)
    th.drop_sd = np.where(ok, tau, th.drop_sd)


# --------------------------------------------------------------------------------------------
# EM over stacked trials
# --------------------------------------------------------------------------------------------
def _initial_theta(D: _Data, fit, starts_all, min_drop) -> _Theta:
    """Starting values per trial: level and slope from per-client least squares, the noise
    from the median absolute session-to-session change (robust to the ruptures themselves),
    the drop distribution centred at twice the minimum drop."""
    G = len(starts_all)
    g = D.group
    zmz = D.zmz[D.mask_id]
    zy = D.y @ D.Z
    ok = fit & (D.n_obs >= 3)
    inv, det = _inv2(np.where(ok[:, None, None], zmz, np.eye(2)))
    coef = np.einsum("nij,nj->ni", inv, zy)
    mu = np.zeros((G, 2))
    cov = np.zeros((G, 2, 2))
    sigma2 = np.zeros(G)
    X = np.where(D.mask, D.y, np.nan)
    diffs = np.abs(np.diff(X, axis=1))
    for k in range(G):  # a loop over trials, once (not in the iterations)
        sel = ok & (g == k)
        c = coef[sel]
        mu[k] = c.mean(axis=0)
        cov[k] = np.cov(c.T) + 1e-6 * np.eye(2)
        dk = diffs[g == k]
        sigma2[k] = (np.nanmedian(dk) / (0.6745 * np.sqrt(2))) ** 2
    sigma2 = np.maximum(sigma2, 1e-4)
    lo = np.asarray(min_drop, dtype=float)
    return _Theta(mu=mu, cov=cov, sigma2=sigma2, drop_mean=2 * lo, drop_sd=np.maximum(lo, 1e-2),
                  min_drop=lo.copy(), prevalence=np.tile([0.5, 0.3, 0.2], (G, 1)),
                  p_second=np.zeros(G))


#: Coordinates of _to_vector that may go to a boundary at 0 (the slope's own SD, the drop SD,
#: omega): kept on their own scale, each with its own SQUAREM step (see _to_vector).
_BOUNDARY = (4, 7, 10)
_MAIN = tuple(i for i in range(11) if i not in _BOUNDARY)
#: Smallest Cholesky factor of the slope's variance: a slope SD of 0 is allowed in the
#: limit, not exactly (the Woodbury algebra needs no inverse of Sigma, but EM cannot leave 0).
_MIN_SLOPE_FACTOR = 1e-8
#: Tolerance of the first, one-episode EM stage of :func:`_fit`.
_ROUGH_TOL = 1e-5


def _to_vector(th: _Theta) -> np.ndarray:
    """(G, 11) coordinates of the hyperparameters for the SQUAREM step.

    Unconstrained ones (logs, log-ratios), except three that EM may drive to a boundary at 0:
    the slope's own Cholesky factor (no between-client variance of the slope beyond what the
    level explains), the drop SD and ``omega`` (no second episodes). Near a boundary each
    shrinks geometrically -- a linear trend on a log scale that an extrapolation would
    follow for ever -- so they stay on their own scale and get their own step length.
    """
    c = th.cov
    l00 = np.sqrt(c[:, 0, 0])
    l10 = c[:, 1, 0] / l00
    l11 = np.sqrt(np.maximum(c[:, 1, 1] - l10 * l10, 0.0))
    pi = th.prevalence
    return np.column_stack([
        th.mu, np.log(l00), l10, l11, np.log(th.sigma2), th.drop_mean, th.drop_sd,
        np.log(pi[:, 1] / pi[:, 0]), np.log(pi[:, 2] / pi[:, 0]), th.p_second,
    ])


def _from_vector(v, like: _Theta) -> _Theta:
    l00, l10, l11 = np.exp(v[:, 2]), v[:, 3], np.maximum(v[:, 4], _MIN_SLOPE_FACTOR)
    cov = np.empty((v.shape[0], 2, 2))
    cov[:, 0, 0] = l00 * l00
    cov[:, 0, 1] = cov[:, 1, 0] = l00 * l10
    cov[:, 1, 1] = l10 * l10 + l11 * l11
    logits = np.column_stack([np.zeros(len(v)), v[:, 8], v[:, 9]])
    pi = np.exp(logits - special.logsumexp(logits, axis=1, keepdims=True))
    has_two = like.p_second > 0
    return _Theta(mu=v[:, :2].copy(), cov=cov, sigma2=np.exp(v[:, 5]), drop_mean=np.maximum(v[:, 6], like.min_drop),
                  drop_sd=np.maximum(v[:, 7], _MIN_DROP_SD * like.min_drop), min_drop=like.min_drop.copy(),
                  prevalence=pi, p_second=np.where(has_two, np.clip(v[:, 10], 1e-12, 1 - 1e-12), 0.0))


def _em(D: _Data, tpl: _Templates, fit, th: _Theta, *, tol, max_iter):
    """EM, accelerated by SQUAREM, until every trial's objective gains less than ``tol``
    (relative) over a cycle.

    The objective is the marginal log-likelihood plus the log of the prevalences' Dirichlet
    prior (:data:`_PREVALENCE_PSEUDO`); the returned ``ll`` is that objective.

    One cycle (Varadhan & Roland, 2008): two EM steps from ``theta0`` give ``theta1``,
    ``theta2``; the step is extrapolated to ``theta' = theta0 - 2 a r + a^2 v`` (``r = theta1 -
    theta0``, ``v = theta2 - 2 theta1 + theta0``, ``a = -|r| / |v|``, in unconstrained
    coordinates; the three that may shrink geometrically towards a boundary -- see
    :func:`_to_vector` -- with steps of their own) and one more EM step is taken from there --
    unless the objective at ``theta'`` is below that at ``theta1``; then the cycle ends at
    ``theta2``. So the objective never falls. A trial that has converged is frozen (its hyperparameters are
    those of its last E-step), so a trial stacked with others goes through the same steps as
    alone. ``max_iter`` counts E-steps.
    """
    G = th.mu.shape[0]
    ll_old = np.full(G, -np.inf)
    n_iter = np.zeros(G, dtype=np.int64)
    converged = np.zeros(G, dtype=bool)
    ll_final = np.full(G, np.nan)
    active = np.ones(G, dtype=bool)
    step_max = np.ones((G, 1 + len(_BOUNDARY)))  # SQUAREM's bounds on |a| (main, boundary ones)

    def step(theta, groups):
        """E-step of the fit clients of ``groups`` at ``theta`` (G-indexed), and the objective:
        the log-likelihood plus the log prior of the prevalences."""
        idx = np.flatnonzero(fit & np.isin(D.group, groups))
        gi = D.group[idx]
        starts = np.flatnonzero(np.r_[True, gi[1:] != gi[:-1]])
        E = _e_step(D, tpl, theta, idx, _log_prior(theta, tpl))
        n_iter[groups] += 1
        penalty = _PREVALENCE_PSEUDO * np.log(theta.prevalence[groups]).sum(axis=1)
        return E, _group_sum(E["loglik"], starts) + penalty, starts

    while active.any():
        groups = np.flatnonzero(active)
        E0, ll0, st0 = step(th, groups)
        done = (ll0 - ll_old[groups]) <= tol * np.abs(ll0)
        ll_final[groups] = ll0
        converged[groups[done]] = True
        stop = done | (n_iter[groups] >= np.broadcast_to(max_iter, (G,))[groups])
        active[groups[stop]] = False
        ll_old[groups] = ll0
        if stop.all():
            break
        groups, E0, st0 = _subset(groups, ~stop, E0, st0)
        th0 = th.take(groups)
        th1 = _m_step(E0, tpl, th, st0)
        work = th.copy()
        work.put(groups, th1)
        E1, ll1, st1 = step(work, groups)
        th2 = _m_step(E1, tpl, work, st1)
        v0, v1, v2 = _to_vector(th0), _to_vector(th1), _to_vector(th2)
        r, v = v1 - v0, v2 - 2 * v1 + v0
        bound = step_max[groups]
        steps = np.column_stack([_squarem_alpha(r[:, list(_MAIN)], v[:, list(_MAIN)], bound[:, 0])]
                                + [_squarem_alpha(r[:, [j]], v[:, [j]], bound[:, 1 + k])
                                   for k, j in enumerate(_BOUNDARY)])  # each at its own pace
        alpha = np.empty_like(r)
        alpha[:, list(_MAIN)] = steps[:, :1]
        alpha[:, list(_BOUNDARY)] = steps[:, 1:]
        with np.errstate(over="ignore"):
            ext = _from_vector(v0 - 2 * alpha * r + alpha**2 * v, th0)
        work.put(groups, ext)
        with np.errstate(all="ignore"):  # a wild extrapolation is rejected just below
            E2, ll_ext, st2 = step(work, groups)
        good = np.isfinite(ll_ext) & (ll_ext >= ll1)
        # the bound on the step grows x4 after a step that reached it and worked, and shrinks
        # /4 after a step that failed (a ridge where long steps keep overshooting)
        at_max = good[:, None] & (steps <= -bound)
        step_max[groups] = np.where(at_max, 4 * bound, np.where(good[:, None], bound, np.maximum(bound / 4, 1.0)))
        th3 = _m_step(E2, tpl, work, st2)
        new = th2.copy()
        new.put(np.flatnonzero(good), th3.take(np.flatnonzero(good)))
        th.put(groups, new)
    return th, ll_final, n_iter, converged


def _squarem_alpha(r, v, step_max):
    """SQUAREM's step length ``-|r| / |v|`` (scheme S3), between ``-step_max`` and -1."""
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = -np.sqrt((r * r).sum(axis=1) / (v * v).sum(axis=1))
    return np.clip(np.where(np.isfinite(alpha), alpha, -1.0), -step_max, -1.0)


def _fit(D: _Data, tpl: _Templates, fit, th: _Theta, *, tol, max_iter):
    """EM in stages: the one-episode templates first, then all of them where the data ask
    for a second episode.

    The two-episode templates cost most of an E-step, and in a trial without second episodes
    their prior probability ``omega`` would fall towards 0 only geometrically. So EM first
    runs without them (``omega = 0``) to a loose tolerance (:data:`_ROUGH_TOL`); one E-step
    with every template then gives the log-likelihood as a function of ``omega`` alone
    (:func:`_omega_profile`). Where its maximiser is positive, EM on all templates starts
    there and runs to convergence. Elsewhere EM without them runs to convergence and the
    profile is taken again: a slope at ``omega = 0`` that is not positive means the fit is a
    maximum of the full model too (the Karush-Kuhn-Tucker conditions hold at the boundary);
    otherwise EM on all templates follows.
    """
    if len(tpl.kind) == tpl.n_one:
        return _em(D, tpl, fit, th, tol=tol, max_iter=max_iter)
    G = th.mu.shape[0]
    ll, n_iter, converged = np.full(G, np.nan), np.zeros(G, np.int64), np.zeros(G, bool)
    todo = np.arange(G)
    for stage_tol in (max(tol, _ROUGH_TOL), tol):
        _run(D, tpl.one_episode(), fit, th, todo, stage_tol, max_iter, ll, n_iter, converged)
        omega = _omega_profile(D, tpl, fit, th, todo)
        n_iter[todo] += 1
        two = todo[omega > 0]
        th.p_second[two] = omega[omega > 0]
        _run(D, tpl, fit, th, two, tol, max_iter, ll, n_iter, converged)
        todo = todo[omega == 0]
        if stage_tol == tol or not todo.size:
            break
    return th, ll, n_iter, converged


def _run(D, tpl, fit, th, groups, tol, max_iter, ll, n_iter, converged):
    """:func:`_em` of the trials ``groups`` alone (their rows and hyperparameters), with the
    results written into ``th``, ``ll``, ``n_iter``, ``converged``."""
    if not groups.size:
        return
    rows = np.isin(D.group, groups)
    remap = np.full(th.mu.shape[0], -1)
    remap[groups] = np.arange(groups.size)
    hmh_p = D.hmh_p if len(tpl.kind) > tpl.n_one else D.hmh_p[:, :0]
    sub = _Data(**{**D.__dict__, "y": D.y[rows], "mask": D.mask[rows], "group": remap[D.group[rows]],
                   "n_obs": D.n_obs[rows], "mask_id": D.mask_id[rows], "hmh_p": hmh_p})
    left = np.maximum(max_iter - n_iter[groups], 1)
    th_g, ll_g, it_g, conv_g = _em(sub, tpl, fit[rows], th.take(groups), tol=tol, max_iter=left)
    th.put(groups, th_g)
    ll[groups], n_iter[groups], converged[groups] = ll_g, n_iter[groups] + it_g, conv_g


def _omega_profile(D: _Data, tpl: _Templates, fit, th: _Theta, groups) -> np.ndarray:
    """The maximiser over ``omega`` in [0, 1) of the log-likelihood at the other
    hyperparameters ``th`` (per trial): 0 where the slope at 0 is not positive.

    With ``a_i`` the likelihood without second episodes, ``s_i`` its ruptured part and ``b_i``
    the two-episode part at ``omega = 1``, client i's likelihood is ``a_i (1 + omega c_i)``,
    ``c_i = (b_i - s_i) / a_i``. The slope at 0 is ``sum_i c_i``. It is first bounded from
    above with the Gaussian parts of the two-episode templates in place of their likelihoods
    (each an upper bound, :func:`_gaussian_pairs`): a trial whose bound is not positive has
    ``omega = 0`` -- the same answer the exact slope gives, without a single bivariate normal
    probability; usually every trial without second episodes. The others get the exact
    E-step.
    """
    n_kind = np.bincount(tpl.kind, minlength=5)
    # log prior of each template at omega = 0 for the one-episode ones, at 1 for the others
    pi = np.log(th.prevalence)[:, _KIND_PATTERN[tpl.kind]]
    lp = pi - np.log(np.maximum(n_kind, 1))[tpl.kind]
    one = tpl.kind <= 2
    # omega acts on the patterns that have two-episode templates
    paired = np.isin(_KIND_PATTERN[tpl.kind], _KIND_PATTERN[tpl.kind[~one]]) & (tpl.kind > 0) & one
    G = th.mu.shape[0]
    idx = np.flatnonzero(fit & np.isin(D.group, groups))
    g = D.group[idx]
    tt = _trend_terms(D, tpl, th, idx)
    ll0 = -0.5 * (tt["q0"] + tt["logdet"] + tt["n_obs"] * _LOG2PI)
    m, tau2 = th.drop_mean[g][:, None], th.drop_sd[g][:, None] ** 2
    ep = _one_episode(tt, ll0, m, tau2, th.min_drop[g][:, None])
    ll1 = np.concatenate([ll0[:, None], ep["ll"]], axis=1) + lp[g][:, one]
    a = special.logsumexp(ll1, axis=1)
    s = special.logsumexp(ll1[:, paired[one]], axis=1)
    gll = _gaussian_pairs(tt, tpl, ep, ll0, m, tau2, np.arange(idx.size))[0]
    b_up = special.logsumexp(gll + lp[g][:, ~one], axis=1)
    up = np.bincount(g, weights=np.exp(b_up - a) - np.exp(s - a), minlength=G) > 0
    out = np.zeros(G)
    exact = groups[up[groups]]
    if not exact.size:
        return out[groups]
    idx = np.flatnonzero(fit & np.isin(D.group, exact))
    E = _e_step(D, tpl, th, idx, lp)
    ll = E["ll"] + lp[D.group[idx]]
    a = special.logsumexp(ll[:, one], axis=1)
    s = special.logsumexp(ll[:, paired], axis=1)
    b = special.logsumexp(ll[:, ~one], axis=1)
    c = np.exp(b - a) - np.exp(s - a)
    g = D.group[idx]
    slope0 = np.bincount(g, weights=c, minlength=G)
    lo, hi = np.zeros(G), np.full(G, 1 - 1e-9)
    for _ in range(60):  # bisection on the decreasing slope sum_i c_i / (1 + omega c_i)
        mid = 0.5 * (lo + hi)
        up = np.bincount(g, weights=c / (1 + mid[g] * c), minlength=G) > 0
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    out[exact] = np.where(slope0 > 0, 0.5 * (lo + hi), 0.0)[exact]
    return out[groups]


def _subset(groups, keep, E, starts):
    """The E-step restricted to the trials ``groups[keep]`` (every entry of E is per client)."""
    if keep.all():
        return groups, E, starts
    ends = np.r_[starts[1:], len(E["loglik"])]
    rows = np.concatenate([np.arange(a, b) for a, b, k in zip(starts, ends, keep) if k])
    sizes = (ends - starts)[keep]
    return groups[keep], {k: v[rows] for k, v in E.items()}, np.r_[0, np.cumsum(sizes)[:-1]]


# --------------------------------------------------------------------------------------------
# the fitted model
# --------------------------------------------------------------------------------------------
@dataclass
class PatternModel:
    """A fitted pattern model of one trial (:func:`fit_pattern_model`).

    Attributes
    ----------
    probabilities : DataFrame
        One row per client (:data:`PROBABILITY_COLUMNS`): ``n_sessions_observed``;
        ``p_no_rupture``, ``p_repaired``, ``p_unrepaired`` (posterior probabilities, summing
        to 1); ``pattern`` (the most probable one, or ``insufficient_data`` with fewer than
        ``min_sessions`` ratings, as the threshold criteria do) and ``p_pattern`` (its
        probability; NaN for insufficient data); ``rupture_session_mean`` (posterior mean of
        the session of the rupture that sets the pattern -- the last one -- given a rupture);
        ``n_observed_after`` (observed ratings after the most probable session of that
        rupture: 0 means a repair could not have been seen).
    noise_sd : float
        ``sigma``, the SD of a rating around the client's course.
    trend_mean : ndarray (2,)
        Mean alliance at the first session and mean change per session.
    trend_cov : ndarray (2, 2)
        Between-client covariance of level and slope.
    drop_mean, drop_sd : float
        ``m`` and ``tau`` of the drop distribution, a normal truncated at ``min_drop``.
    min_drop : float
        The smallest drop that counts as a rupture (scale points).
    prevalence : dict
        Fitted prior probability of each pattern (``pi``).
    p_second : float
        Fitted probability that a ruptured client has two episodes (``omega``).
    loglik : float
        Marginal log-likelihood of the fitted clients at the estimate (EM maximised it plus the
        log of the prevalences' weak Dirichlet prior).
    n_iter : int
        E-steps taken.
    converged : bool
        Whether the log-likelihood gain fell below ``tol`` before ``max_iter``.
    n_fitted : int
        Clients whose data entered the estimate (at least ``min_sessions`` ratings).
    settings : dict
        ``reliability``, ``repair_max``, ``min_sessions``, ``two_episodes``, ``tol``,
        ``max_iter`` and the session labels.
    unrepaired_seen : ndarray (n, S + 1)
        Rows as ``probabilities``: P(unrepaired, with j ratings observed from the rupture
        session on), j = 0..S (rows sum to ``p_unrepaired``); the imputation model of
        :func:`unrepaired_effect` uses it.
    unrepaired_at : ndarray (n, S)
        Rows as ``probabilities``: P(unrepaired, with the rupture that sets the pattern at the
        session of column j), j = 0..S-1 (column 0 is 0: a rupture needs a session before it;
        rows sum to ``p_unrepaired``); the imputation model of :func:`unrepaired_slope` places
        the change of the symptom course there.
    """

    probabilities: pd.DataFrame
    noise_sd: float
    trend_mean: np.ndarray
    trend_cov: np.ndarray
    drop_mean: float
    drop_sd: float
    min_drop: float
    prevalence: dict
    p_second: float
    loglik: float
    n_iter: int
    converged: bool
    n_fitted: int
    settings: dict = field(default_factory=dict)
    unrepaired_seen: np.ndarray = field(default=None, repr=False)
    unrepaired_at: np.ndarray = field(default=None, repr=False)

    def expected_prevalence(self, classifiable_only: bool = True) -> pd.Series:
        """Expected share of each pattern: the mean posterior probability over the
        classifiable clients (or over all)."""
        p = self.probabilities
        if classifiable_only:
            p = p[p["pattern"] != INSUFFICIENT]
        return p[["p_no_rupture", "p_repaired", "p_unrepaired"]].mean().set_axis(PATTERN_LABELS)

    def summary(self) -> pd.DataFrame:
        """The hyperparameters as a one-row table."""
        return pd.DataFrame([{
            "noise_sd": self.noise_sd, "level_mean": self.trend_mean[0], "slope_mean": self.trend_mean[1],
            "level_sd": float(np.sqrt(self.trend_cov[0, 0])), "slope_sd": float(np.sqrt(self.trend_cov[1, 1])),
            "level_slope_corr": float(self.trend_cov[0, 1] / np.sqrt(self.trend_cov[0, 0] * self.trend_cov[1, 1])),
            "drop_mean": self.drop_mean, "drop_sd": self.drop_sd, "min_drop": self.min_drop,
            **{f"prior_{k}": v for k, v in self.prevalence.items()}, "p_second": self.p_second,
            "loglik": self.loglik, "n_iter": self.n_iter, "converged": self.converged,
            "n_fitted": self.n_fitted,
        }])


def default_min_drop(X, reliability: float) -> float:
    """``1.96 * SD0 * sqrt(1 - reliability)``: the smallest drop that measurement error alone
    produces in fewer than 5 % of sessions (1.96 standard errors of measurement), SD0 the
    sample SD (ddof 1) of every client's first observed rating -- the SD of the reliable
    change index (:func:`helpers.episodes.detect_episodes`, ``criterion="rci"``).

    First ratings 5, 6, 7 (SD 1): 1.96 * 1 * sqrt(0.17) = 0.8081.

    >>> round(default_min_drop([[5.0, 6.0], [6.0, 5.0], [7.0, None]], 0.83), 4)
    0.8081
    """
    X = np.asarray(X, dtype=float)
    seen = ~np.isnan(X)
    has = seen.any(axis=1)
    first = X[has][np.arange(has.sum()), np.argmax(seen[has], axis=1)]
    if first.size < 2:
        raise ValueError("the default min_drop needs at least two clients with a rating")
    if not 0 < reliability < 1:
        raise ValueError(f"reliability must lie in (0, 1), got {reliability!r}")
    return float(1.96 * np.std(first, ddof=1) * np.sqrt(1 - reliability))


def _posterior_summaries(E, D: _Data, tpl: _Templates, labels, idx):
    """Pattern probabilities, the rupture session's posterior mean and the observed ratings
    after its most probable session, per client of ``idx``."""
    w = E["w"]
    pat = _KIND_PATTERN[tpl.kind]
    probs = np.column_stack([w[:, pat == k].sum(axis=1) for k in range(3)])
    last = tpl.last
    ruptured = last >= 0
    r_last = np.where(ruptured, tpl.shape_session[np.maximum(last, 0)], 0)  # session position 1..S
    S = tpl.n_sessions
    by_session = np.zeros((w.shape[0], S + 1))
    for pos in range(2, S + 1):  # a loop over sessions (10), not clients
        by_session[:, pos] = w[:, ruptured & (r_last == pos)].sum(axis=1)
    p_rup = by_session.sum(axis=1)
    labels = np.asarray(labels, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pos = (by_session[:, 1:] * labels[None, :]).sum(axis=1) / p_rup
    mean_pos = np.where(p_rup > 0, mean_pos, np.nan)
    mode = np.argmax(by_session, axis=1)  # position 1..S of the most probable rupture session
    after = np.cumsum(D.mask[idx][:, ::-1], axis=1)[:, ::-1]  # observed at or after each position
    rows = np.arange(len(mode))
    n_after = np.where(mode < S, after[rows, np.minimum(mode, S - 1)], 0)
    # P(unrepaired, and j ratings observed from the rupture session on), j = 0..S, and
    # P(unrepaired, the rupture at the session of column j), j = 0..S-1
    seen = np.zeros((w.shape[0], S + 1))
    at = np.zeros((w.shape[0], S))
    unrep = ruptured & (pat == 2)
    for pos in range(2, S + 1):
        at[:, pos - 1] = w[:, unrep & (r_last == pos)].sum(axis=1)
        np.add.at(seen, (rows, after[:, pos - 1]), at[:, pos - 1])
    return probs, mean_pos, n_after, seen, at


# --------------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------------
def _check_settings(repair_max, min_sessions, tol, max_iter):
    if isinstance(repair_max, bool) or int(repair_max) != repair_max or repair_max < 1:
        raise ValueError(f"repair_max must be a positive whole number, got {repair_max!r}")
    if isinstance(min_sessions, bool) or int(min_sessions) != min_sessions or min_sessions < 3:
        raise ValueError(f"min_sessions must be a whole number >= 3 (a level and a slope need "
                         f"more than two ratings), got {min_sessions!r}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    if isinstance(max_iter, bool) or int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"max_iter must be a positive whole number, got {max_iter!r}")


def _fit_sample(classifiable, starts, ends, max_fit_clients, seed):
    """The clients whose data estimate the hyperparameters: every classifiable one, or per
    trial a random ``max_fit_clients`` of them (a registry of 100,000 clients: the
    hyperparameters -- a noise SD, a trend covariance, a drop distribution, three
    prevalences -- are as precise from a few thousand, at a fraction of the EM's cost)."""
    fit = classifiable.copy()
    if max_fit_clients is None:
        return fit
    if int(max_fit_clients) < 5:
        raise ValueError(f"max_fit_clients must be at least 5, got {max_fit_clients!r}")
    rng = np.random.default_rng(seed)
    for a, b in zip(starts, ends):
        rows = a + np.flatnonzero(classifiable[a:b])
        if rows.size > max_fit_clients:
            fit[rng.choice(rows, rows.size - int(max_fit_clients), replace=False)] = False
    return fit


#: Clients per block of the E-step that gives every client its probabilities: its memory
#: (about 10 kB per client with the two-episode templates of 10 sessions) stays bounded at any N.
_BLOCK = 10_000


def _posteriors(D: _Data, tpl: _Templates, th: _Theta, labels):
    """Each client's log-likelihood and :func:`_posterior_summaries` at ``th``, in blocks of
    :data:`_BLOCK` clients."""
    n = D.y.shape[0]
    log_prior = _log_prior(th, tpl)
    parts = []
    for a in range(0, n, _BLOCK):
        idx = np.arange(a, min(n, a + _BLOCK))
        E = _e_step(D, tpl, th, idx, log_prior)
        parts.append((E["loglik"], *_posterior_summaries(E, D, tpl, labels, idx)))
    return [np.concatenate(block) for block in zip(*parts)]


def fit_pattern_arrays(X, *, labels=None, starts=None, ids=None, reliability=None, min_drop=None,
                       repair_max=3, min_sessions=6, two_episodes=True, tol=1e-8,
                       max_iter=500, max_fit_clients=None, fit_seed=None) -> list:
    """Fit the pattern model to one or many trials given as a wide matrix (the array route).

    Parameters
    ----------
    X : array (n, S)
        Alliance ratings, one row per client and one column per session (NaN = missing);
        trials stacked by rows.
    labels : array of int (S,), optional
        Session labels of the columns (default 1..S): the trend's time axis and the
        sessions reported.
    starts : array of int, optional
        First row of each trial (default: one trial, ``[0]``), as
        :func:`helpers.episodes.detect_grouped`.
    ids : array (n,), optional
        Participant ids of the rows (default: the row number within its trial).
    reliability : float, optional
        Reliability of the alliance measure, for the default ``min_drop``.
    min_drop : float or array (one per trial), optional
        Smallest drop that counts as a rupture; default :func:`default_min_drop` of each trial.
    repair_max : int, default 3
        A repaired episode is back within this many sessions.
    min_sessions : int, default 6
        Clients with fewer observed ratings do not enter the estimate and are
        ``insufficient_data`` (their probabilities are still given).
    two_episodes : bool, default True
        Include the two-episode templates.
    tol : float, default 1e-8
        Stop when a SQUAREM cycle raises the log-likelihood by less than ``tol`` times its size.
    max_iter : int, default 500
        At most this many E-steps per trial.
    max_fit_clients : int, optional
        Estimate each trial's hyperparameters from at most this many of its clients with
        ``min_sessions`` ratings: a random sample (``fit_seed``) when it has more. Every client
        still gets its probabilities. None (default): all of them.
    fit_seed : int, optional
        Seed of that sample.

    Returns
    -------
    list of PatternModel
        One per trial, in the order of ``starts``. Each trial has its own hyperparameters and
        stopping point: the results equal those of fitting each trial alone (to rounding).

    Notes
    -----
    The route of the power study: trials simulated as arrays
    (:func:`helpers.simulate.simulate_arrays`) are stacked and fitted together, a trial that
    has converged dropping out of the iterations. The model and the algorithm are in the
    module docstring.

    References
    ----------
    Fearnhead, P. (2006). Exact and efficient Bayesian inference for multiple changepoint
    problems. Statistics and Computing, 16, 203-213.

    Examples
    --------
    >>> from helpers.simulate import simulate_arrays
    >>> A = [simulate_arrays(60, 10, seed=s)["alliance"] for s in (1, 2)]
    >>> models = fit_pattern_arrays(np.vstack(A), starts=[0, 60], reliability=0.83)
    >>> [len(m.probabilities) for m in models]
    [60, 60]
    """
    _check_settings(repair_max, min_sessions, tol, max_iter)
    X = np.atleast_2d(np.asarray(X, dtype=float))
    n, S = X.shape
    if S < 3:
        raise ValueError(f"the pattern model needs at least 3 sessions, got {S}")
    labels = np.arange(1, S + 1) if labels is None else np.asarray(labels)
    if labels.shape != (S,) or np.any(np.diff(labels) <= 0):
        raise ValueError("labels must be S increasing session labels, one per column of X")
    starts = np.array([0] if starts is None else starts, dtype=np.int64)
    if starts.size == 0 or starts[0] != 0 or np.any(np.diff(starts) <= 0) or starts[-1] >= n:
        raise ValueError("starts must begin at 0 and increase strictly, each below the number of rows")
    G = starts.size
    group = np.repeat(np.arange(G), np.diff(np.r_[starts, n]))
    ends = np.r_[starts[1:], n]
    if min_drop is None:
        if reliability is None:
            raise ValueError("give reliability (for the default min_drop) or min_drop")
        lo = np.array([default_min_drop(X[a:b], reliability) for a, b in zip(starts, ends)])
    else:
        lo = np.broadcast_to(np.asarray(min_drop, dtype=float), (G,)).copy()
        if not np.all(lo > 0):
            raise ValueError(f"min_drop must be > 0, got {min_drop!r}")
    tpl = _make_templates(S, int(repair_max), bool(two_episodes))
    D = _prepare(X, labels, group, tpl)
    classifiable = D.n_obs >= min_sessions
    n_class = np.bincount(group[classifiable], minlength=G)
    if np.any(n_class < 5):
        bad = int(np.flatnonzero(n_class < 5)[0])
        raise ValueError(f"trial {bad} has {n_class[bad]} clients with at least {min_sessions} "
                         f"ratings; the pattern model needs at least 5")
    fit = _fit_sample(classifiable, starts, ends, max_fit_clients, fit_seed)
    n_fit = np.bincount(group[fit], minlength=G)
    th = _initial_theta(D, fit, starts, lo)
    th, ll, n_iter, converged = _fit(D, tpl, fit, th, tol=tol, max_iter=int(max_iter))
    loglik, probs, r_mean, n_after, seen, at = _posteriors(D, tpl, th, labels)
    ll = np.bincount(group[fit], weights=loglik[fit], minlength=G)  # the likelihood alone
    if ids is None:
        ids = np.concatenate([np.arange(b - a) for a, b in zip(starts, ends)])
    ids = np.asarray(ids, dtype=object)
    settings = {"reliability": reliability, "repair_max": int(repair_max),
                "min_sessions": int(min_sessions), "two_episodes": bool(two_episodes), "tol": tol,
                "max_iter": int(max_iter), "session_labels": labels.tolist(),
                "max_fit_clients": None if max_fit_clients is None else int(max_fit_clients),
                "fit_seed": fit_seed}
    return [_model(th, g, ll[g], n_iter[g], converged[g], int(n_fit[g]), settings,
                   ids[a:b], D.n_obs[a:b], classifiable[a:b], probs[a:b], r_mean[a:b], n_after[a:b], seen[a:b],
                   at[a:b])
            for g, (a, b) in enumerate(zip(starts, ends))]


def _model(th, g, ll, n_iter, converged, n_fit, settings, ids, n_obs, classifiable, probs, r_mean,
           n_after, seen, at) -> PatternModel:
    modal = np.argmax(probs, axis=1)
    pattern = np.where(classifiable, np.asarray(PATTERN_LABELS, dtype=object)[modal], INSUFFICIENT)
    table = pd.DataFrame({
        "participant_id": ids,
        "n_sessions_observed": n_obs.astype(np.int64),
        "p_no_rupture": probs[:, 0], "p_repaired": probs[:, 1], "p_unrepaired": probs[:, 2],
        "pattern": pattern,
        "p_pattern": np.where(classifiable, probs[np.arange(len(modal)), modal], np.nan),
        "rupture_session_mean": r_mean,
        "n_observed_after": n_after.astype(np.int64),
    }, columns=PROBABILITY_COLUMNS)
    return PatternModel(
        probabilities=table, noise_sd=float(np.sqrt(th.sigma2[g])), trend_mean=th.mu[g].copy(),
        trend_cov=th.cov[g].copy(), drop_mean=float(th.drop_mean[g]), drop_sd=float(th.drop_sd[g]),
        min_drop=float(th.min_drop[g]),
        prevalence=dict(zip(PATTERN_LABELS, map(float, th.prevalence[g]))),
        p_second=float(th.p_second[g]), loglik=float(ll), n_iter=int(n_iter),
        converged=bool(converged), n_fitted=n_fit, settings=settings, unrepaired_seen=seen,
        unrepaired_at=at)


def wide_scores(sessions, id_col, session_col, score_col):
    """One client per row, one session per column: the layout every sampler here works on.

    Parameters
    ----------
    sessions : DataFrame
        Long format, one row per participant x session.
    id_col, session_col, score_col : str
        Column names.

    Returns
    -------
    ids : array (n,)
        Participant ids, sorted.
    labels : array (T,)
        Session labels, sorted.
    X : array (n, T) of float
        ``score_col``; NaN where a session was not observed.

    Raises
    ------
    DataValidationError
        A column is missing, the scores are not numeric, or a participant x session appears twice.

    Examples
    --------
    >>> import pandas as pd
    >>> long = pd.DataFrame({"participant_id": ["b", "a", "a"], "session": [1, 2, 1],
    ...                      "alliance": [5.0, 6.5, 6.0]})
    >>> ids, labels, X = wide_scores(long, "participant_id", "session", "alliance")
    >>> ids.tolist(), labels.tolist(), X.tolist()
    (['a', 'b'], [1, 2], [[6.0, 6.5], [5.0, nan]])
    """
    if not isinstance(sessions, pd.DataFrame):
        raise TypeError("sessions must be a DataFrame in the long format of the data contract")
    for col in (id_col, session_col, score_col):
        if col not in sessions.columns:
            raise DataValidationError("sessions", col, "required column is missing")
    if not pd.api.types.is_numeric_dtype(sessions[score_col]):
        raise DataValidationError("sessions", score_col, "scores must be numeric")
    dup = sessions.duplicated([id_col, session_col], keep=False)
    if dup.any():
        raise DataValidationError("sessions", session_col, "each participant x session must appear once",
                                  sessions.loc[dup, [id_col, session_col]].head(), n_bad=int(dup.sum()))
    wide = sessions.pivot(index=id_col, columns=session_col, values=score_col).sort_index()
    wide = wide.reindex(columns=sorted(wide.columns))
    return wide.index.to_numpy(), np.asarray(wide.columns), wide.to_numpy(dtype=float)


def fit_pattern_model(sessions, *, reliability, min_drop=None, repair_max=3, min_sessions=6,
                      two_episodes=True, tol=1e-8, max_iter=500, max_fit_clients=None, fit_seed=None,
                      id_col="participant_id", session_col="session", score_col="alliance") -> PatternModel:
    """Posterior probabilities of no rupture, a repaired and an unrepaired rupture per client.

    Parameters
    ----------
    sessions : DataFrame
        Long format, one row per participant x session (the data contract's ``sessions``);
        missing ratings allowed.
    reliability : float or None
        Reliability of the alliance measure (CALPAS total: .83, Gaston, 1991), for the
        default ``min_drop``; may be None when ``min_drop`` is given.
    min_drop : float, optional
        Smallest drop (scale points) that counts as a rupture. Default
        ``1.96 * SD0 * sqrt(1 - reliability)`` (:func:`default_min_drop`).
    repair_max : int, default 3
        A repaired rupture is back within 1..``repair_max`` sessions.
    min_sessions : int, default 6
        Clients with fewer observed ratings are ``insufficient_data`` and do not enter the
        estimate of the hyperparameters (their probabilities are still given).
    two_episodes : bool, default True
        Include the templates with two episodes (a repaired episode followed by another).
    tol, max_iter
        Convergence: relative log-likelihood gain per SQUAREM cycle; most E-steps.
    max_fit_clients, fit_seed
        Hyperparameters from a random sample of at most this many classifiable clients
        (:func:`fit_pattern_arrays`); every client gets its probabilities.
    id_col, session_col, score_col : str
        Column names.

    Returns
    -------
    PatternModel
        The fitted hyperparameters and ``.probabilities``, one row per participant sorted by
        id (:data:`PROBABILITY_COLUMNS`).

    Notes
    -----
    The model and the algorithm are in the module docstring; what it assumes in
    ``docs/pattern_model.md``. The hyperparameters are estimated from the clients with at
    least ``min_sessions`` ratings and then treated as known.

    References
    ----------
    Fearnhead, P. (2006). Exact and efficient Bayesian inference for multiple changepoint
    problems. Statistics and Computing, 16, 203-213.
    Adams, R. P., & MacKay, D. J. C. (2007). Bayesian online changepoint detection.
    arXiv:0710.3742.

    Examples
    --------
    >>> from helpers.simulate import simulate_trial
    >>> trial = simulate_trial(seed=1)
    >>> model = fit_pattern_model(trial.sessions, reliability=0.83)
    >>> list(model.probabilities.columns[:5])
    ['participant_id', 'n_sessions_observed', 'p_no_rupture', 'p_repaired', 'p_unrepaired']
    >>> bool(np.allclose(model.probabilities[["p_no_rupture", "p_repaired", "p_unrepaired"]].sum(axis=1), 1))
    True
    """
    ids, labels, X = wide_scores(sessions, id_col, session_col, score_col)
    if not np.all(np.mod(labels, 1) == 0):
        raise DataValidationError("sessions", session_col, "session labels must be whole numbers")
    return fit_pattern_arrays(X, labels=labels, ids=ids, reliability=reliability, min_drop=min_drop,
                              repair_max=repair_max, min_sessions=min_sessions,
                              two_episodes=two_episodes, tol=tol, max_iter=max_iter,
                              max_fit_clients=max_fit_clients, fit_seed=fit_seed)[0]


# --------------------------------------------------------------------------------------------
# the effect of an unrepaired rupture, with the pattern uncertainty carried by imputation
# --------------------------------------------------------------------------------------------
#: Columns of :func:`unrepaired_effect`'s one-row result, in their fixed order.
EFFECT_COLUMNS = ["b", "se", "ci_low", "ci_high", "df", "p", "beta", "beta_ci_low", "beta_ci_high",
                  "fmi", "n", "expected_n_unrepaired", "n_imputations", "n_not_estimable"]


def draw_categorical(prob, rng):
    """One category per row of ``prob`` (rows sum to 1) from one uniform each.

    Row i gets the first category whose cumulative probability exceeds its uniform; rounding
    that leaves a row's sum just below 1 can never give a category past the last.

    Parameters
    ----------
    prob : array (n, C)
    rng : numpy.random.Generator
        Draws exactly ``n`` uniforms (the imputation samplers rely on this count).

    Returns
    -------
    array (n,) of int

    Examples
    --------
    >>> draw_categorical(np.array([[1.0, 0.0], [0.0, 1.0]]), np.random.default_rng(0)).tolist()
    [0, 1]
    """
    u = rng.random(prob.shape[0])
    return np.minimum((u[:, None] > np.cumsum(prob, axis=1)).sum(axis=1), prob.shape[1] - 1)


def impute_patterns(prior, seen, y, base, n_imputations, rng, burn_in, thin):
    """Draws of every client's pattern from P(pattern | alliance) x p(outcome | pattern).

    The categories are no rupture, repaired, and unrepaired with ``seen[c]`` ratings observed
    from the rupture on (``prior``: n x C, the pattern model's posterior over them). A
    data-augmentation Gibbs sampler of the imputation model ``y_i = x_i' g + shift_c + e_i``,
    ``e_i ~ N(0, s_k^2)`` for client i in category c of pattern k: ``shift`` is 0 for no
    rupture, ``g_R`` for repaired and ``g_U + g_E * seen`` for unrepaired -- an unrepaired
    rupture can act only over the sessions after it, so its effect may grow with them, and one
    that fell after the client's last rating (``seen`` 0) need not show at all -- and each
    pattern has its own residual variance (the unrepaired clients' outcomes spread more). In
    turn: the coefficients given the categories (flat prior on ``g``, N(0, (10 SD(y))^2) on
    the shifts so that a sweep with an empty pattern stays proper), the variances given the
    rest (scaled inverse chi-square, prior 2 pseudo-clients at the residual variance of ``y``
    on ``x``), and the categories given the rest. After ``burn_in`` sweeps every ``thin``-th
    draw is kept.

    ``seen`` is one value per category (C,) or one per client and category (n, C): the
    covariate of the unrepaired shift may differ between clients (:mod:`helpers.pattern_growth`
    gives each client's own effect of a rupture at each session on its symptom slope).

    Parameters
    ----------
    prior : array (n, C)
        Each client's posterior over the categories (rows sum to 1).
    seen : array (C,) or (n, C)
        Ratings observed from each category's rupture on (0 for no rupture and repaired).
    y : array (n,)
        The outcome the patterns are imputed with.
    base : array (n, q)
        The outcome model's other columns (an intercept and the baseline score).
    n_imputations, burn_in, thin : int
        Draws kept; sweeps discarded first; every ``thin``-th sweep kept.
    rng : numpy.random.Generator

    Returns
    -------
    array (n_imputations, n) of pattern codes (index into PATTERN_LABELS).
    """
    n, q = base.shape
    C = prior.shape[1]
    pattern = np.minimum(np.arange(C), 2)
    # The per-category work is laid out (C, n), one contiguous row per category: a sweep's
    # maximum, running sum and count over the categories are then C row operations, which at
    # registry size (10^5 clients) is 3.6x faster than reductions along short rows; the draws
    # are the same (the running sum adds in the same order).
    log_prior = np.ascontiguousarray(np.log(np.clip(prior, 1e-300, None)).T)
    seen_full = np.broadcast_to(np.asarray(seen, dtype=float), (n, C))
    seen_unrepaired = np.ascontiguousarray(seen_full[:, 2:].T)
    rows = np.arange(n)
    coef0, *_ = np.linalg.lstsq(base, y, rcond=None)
    s0 = float(((y - base @ coef0) ** 2).sum() / max(n - q, 1))
    nu0 = 2.0
    pen = np.zeros(q + 3)
    pen[q:] = 1 / (100 * y.var() + 1e-12)
    c = draw_categorical(prior, rng)
    sig2 = np.full(3, s0)
    out = np.empty((n_imputations, n), dtype=np.int64)
    X = np.empty((n, q + 3))  # columns: base, repaired, unrepaired, unrepaired x seen
    X[:, :q] = base
    logl = np.empty((C, n))
    top = np.empty(n)
    below = np.empty((C, n), dtype=bool)
    for it in range(burn_in + n_imputations * thin):
        z = pattern[c]
        X[:, q] = z == 1
        X[:, q + 1] = z == 2
        X[:, q + 2] = np.where(z == 2, seen_full[rows, c], 0.0)
        w = 1 / sig2[z]
        prec = (X * w[:, None]).T @ X + np.diag(pen)
        chol = np.linalg.cholesky(prec)
        g = np.linalg.solve(prec, X.T @ (w * y)) + np.linalg.solve(chol.T, rng.standard_normal(q + 3))
        resid = y - X @ g
        ssr = np.bincount(z, weights=resid**2, minlength=3)
        sig2 = (nu0 * s0 + ssr) / rng.chisquare(nu0 + np.bincount(z, minlength=3))
        # log P(category) + log N(y | mean of the category, its pattern's variance), in place
        logl[:] = y - base @ g[:q]
        logl[1] -= g[q]
        logl[2:] -= g[q + 1] + g[q + 2] * seen_unrepaired
        s2c = sig2[pattern]
        np.square(logl, out=logl)
        logl *= (-0.5 / s2c)[:, None]
        logl += log_prior
        logl += (-0.5 * np.log(s2c))[:, None]
        np.max(logl, axis=0, out=top)
        logl -= top
        post = np.exp(logl, out=logl)
        for k in range(1, C):  # running sum over the categories (unnormalised)
            np.add(post[k - 1], post[k], out=post[k])
        # the category whose running sum first reaches u x total: the uniform of draw_categorical
        np.less(post, rng.random(n) * post[-1], out=below)
        c = below.view(np.uint8).sum(axis=0, dtype=np.int64)
        k = it - burn_in
        if k >= 0 and (k + 1) % thin == 0:
            out[k // thin] = pattern[c]
    return out


def _completed_fits(y, X, cov_type):
    """The coefficient of the last column of ``X`` (K completed designs) and its variance,
    classical or HC3 (:func:`helpers.ols.ols_batch`); not estimable, with NaN, where the
    design is rank deficient or, for HC3, a row has leverage 1 (the only unrepaired client)."""
    if cov_type not in ("HC3", "nonrobust"):
        raise ValueError(f"cov_type must be 'HC3' or 'nonrobust', got {cov_type!r}")
    fit = ols_batch(y, X)
    se = fit["se_hc3"] if cov_type == "HC3" else fit["se"]
    ok = fit["estimable"] & (fit["hc3_defined"] if cov_type == "HC3" else True)
    return {"b": np.where(ok, fit["coef"][:, -1], np.nan), "var": np.where(ok, se[:, -1] ** 2, np.nan),
            "df": int(fit["df"][0]), "estimable": ok}  # one n for every completed data set


def unrepaired_effect(model: PatternModel, participants, *, outcome="pss_i", covariates=(),
                      n_imputations=20, seed=None, cov_type="HC3", level=0.95, burn_in=200,
                      thin=10) -> pd.DataFrame:
    """Effect of an unrepaired rupture on the outcome, with the patterns' uncertainty carried.

    The paper's regression ``post ~ pre + unrepaired`` (plus ``covariates``), fitted to
    ``n_imputations`` completed data sets in which each classifiable client's pattern is drawn
    from its posterior given its alliance series *and* its outcome, and pooled by Rubin's rules.

    Parameters
    ----------
    model : PatternModel
        From :func:`fit_pattern_model`; its ``probabilities`` give P(pattern | alliance).
    participants : DataFrame
        The data contract's participants table (``participant_id``, ``{outcome}_pre``,
        ``{outcome}_post`` and the covariates).
    outcome : str, default "pss_i"
        Outcome stem: ``pss_i``, ``pss_sr`` or ``bdi``.
    covariates : sequence of str
        Further adjustment columns of ``participants`` (booleans as 0/1); they enter the
        imputation model as well as the analysis model.
    n_imputations : int, default 20
        Completed data sets (m).
    seed : int, optional
        Seed of :func:`numpy.random.default_rng`: the same seed gives the same result.
    cov_type : {"HC3", "nonrobust"}, default "HC3"
        Standard errors of each completed-data fit.
    level : float, default 0.95
        Confidence level.
    burn_in, thin : int
        Gibbs sweeps before the first kept draw, and between kept draws.

    Returns
    -------
    DataFrame
        One row (:data:`EFFECT_COLUMNS`): ``b`` (the coefficient of an unrepaired rupture, in
        outcome points), ``se``, ``ci_low``, ``ci_high``, ``df`` (Barnard-Rubin), ``p``;
        ``beta`` (standardised, ``b * sd(flag) / sd(post)`` per completed data set, pooled
        likewise) with ``beta_ci_low`` and ``beta_ci_high``; ``fmi`` (fraction of missing
        information, 0 when the patterns are certain); ``n`` (classifiable clients with pre,
        post and covariates); ``expected_n_unrepaired`` (mean number of unrepaired clients
        over the completed data sets); ``n_imputations``; ``n_not_estimable``, the completed
        data sets in which the paper's regression cannot be fitted -- no unrepaired client, or
        (HC3) only one, whose leverage is 1. Then the estimates are NaN: leaving those data
        sets out would pool a selection of the imputations. It happens when the data show
        almost no unrepaired rupture (an expected number of 2 or 3).

    Notes
    -----
    Regressing the outcome on the most probable pattern, or on patterns drawn from
    P(pattern | alliance) alone, attenuates the effect towards zero: classification errors
    act like measurement error in the regressor (Bolck, Croon & Hagenaars, 2004; Vermunt,
    2010; Bakk & Kuha, 2018). Drawing the patterns from P(pattern | alliance, outcome) --
    the outcome in the imputation model -- removes that (Bray, Lanza & Tan, 2015). The
    imputation model (:func:`impute_patterns`) lets every pattern shift the outcome's mean
    -- an unrepaired rupture by an amount that may grow with the ratings observed after it --
    and have its own residual variance, so it is at least as rich as the analysis model.
    Each completed data set is fitted by OLS (:func:`helpers.ols.ols_batch`, HC3 by
    default) and the results are pooled by :func:`helpers.pooling.rubin_rules` with the
    Barnard & Rubin (1999) degrees of freedom (Rubin, 1987). The pattern model's
    hyperparameters are treated as known (their uncertainty is not propagated).

    References
    ----------
    Bakk, Z., & Kuha, J. (2018). Two-step estimation of models between latent classes and
    external variables. Psychometrika, 83, 871-892.
    Barnard, J., & Rubin, D. B. (1999). Small-sample degrees of freedom with multiple
    imputation. Biometrika, 86, 948-955.
    Bolck, A., Croon, M., & Hagenaars, J. (2004). Estimating latent structure models with
    categorical variables: One-step versus three-step estimators. Political Analysis, 12, 3-27.
    Bray, B. C., Lanza, S. T., & Tan, X. (2015). Eliminating bias in classify-analyze
    approaches for latent class analysis. Structural Equation Modeling, 22, 1-11.
    Rubin, D. B. (1987). Multiple imputation for nonresponse in surveys. Wiley.
    Vermunt, J. K. (2010). Latent class modeling with covariates: Two improved three-step
    approaches. Political Analysis, 18, 450-469.

    Examples
    --------
    >>> from helpers.simulate import simulate_trial
    >>> trial = simulate_trial(seed=1)
    >>> model = fit_pattern_model(trial.sessions, reliability=0.83)
    >>> res = unrepaired_effect(model, trial.participants, seed=1)
    >>> list(res.columns[:4]), bool(res["ci_low"].iloc[0] < res["b"].iloc[0] < res["ci_high"].iloc[0])
    (['b', 'se', 'ci_low', 'ci_high'], True)
    """
    if isinstance(n_imputations, bool) or int(n_imputations) != n_imputations or n_imputations < 2:
        raise ValueError(f"n_imputations must be a whole number >= 2, got {n_imputations!r}")
    cols = [f"{outcome}_pre", f"{outcome}_post", *covariates]
    missing = [c for c in ["participant_id", *cols] if c not in participants.columns]
    if missing:
        raise DataValidationError("participants", missing[0], "required column is missing")
    probs = model.probabilities
    # a participant missing from the table has no values (NaN), as a left merge would give
    values = (participants.drop_duplicates("participant_id").set_index("participant_id")[cols]
              .reindex(probs["participant_id"]).astype(float).to_numpy())
    y, base, prior, seen = _effect_inputs(probs, model.unrepaired_seen, values)
    rng = np.random.default_rng(seed)
    z = impute_patterns(prior, seen, y, base, int(n_imputations), rng, int(burn_in), int(thin))
    row = _pool_effect(y, base, z, cov_type, level)
    return pd.DataFrame([row], columns=EFFECT_COLUMNS)


# --------------------------------------------------------------------------------------------
# the imputation of many trials at once (the power study's route)
# --------------------------------------------------------------------------------------------
def _impute_patterns_many(priors, seens, ys, bases, n_imputations, seeds, burn_in, thin):
    """:func:`impute_patterns` of many trials at once, each with its own generator.

    Trial ``k`` draws from ``numpy.random.default_rng(seeds[k])`` exactly the numbers
    :func:`impute_patterns` draws from it alone, in the same order (one standard-normal
    vector, three chi-squares and one uniform per client per sweep), so its imputations are
    those of the trial alone (up to the last bits of the batched sums, which move a draw only
    when a uniform falls within rounding of a category's boundary); the arithmetic runs on
    the trials stacked, padded to the largest ``n`` and number of categories.

    Returns
    -------
    list of arrays (n_imputations, n_k) of pattern codes.
    """
    G = len(ys)
    q = bases[0].shape[1]
    n_k = np.array([len(y) for y in ys])
    C_k = np.array([p.shape[1] for p in priors])
    n, C = int(n_k.max()), int(C_k.max())
    valid = np.arange(n)[None, :] < n_k[:, None]
    Y = np.zeros((G, n))
    Bm = np.zeros((G, n, q))
    logp = np.full((G, n, C), -np.inf)
    shift = np.zeros((G, C, 3))  # columns: repaired, unrepaired, unrepaired x seen
    s0 = np.empty(G)
    pen = np.zeros((G, q + 3))
    rngs = [np.random.default_rng(s) for s in seeds]
    c = np.zeros((G, n), dtype=np.int64)
    for k in range(G):  # once per trial, as impute_patterns does before its sweeps
        nk, ck = n_k[k], C_k[k]
        Y[k, :nk], Bm[k, :nk] = ys[k], bases[k]
        logp[k, :nk, :ck] = np.log(np.clip(priors[k], 1e-300, None))
        shift[k, 1, 0] = 1
        shift[k, 2:ck, 1] = 1
        shift[k, 2:ck, 2] = seens[k][2:]
        coef0, *_ = np.linalg.lstsq(bases[k], ys[k], rcond=None)
        s0[k] = float(((ys[k] - bases[k] @ coef0) ** 2).sum() / max(nk - q, 1))
        pen[k, q:] = 1 / (100 * ys[k].var() + 1e-12)
        c[k, :nk] = draw_categorical(priors[k], rngs[k])
    pattern = np.minimum(np.arange(C), 2)
    nu0 = 2.0
    sig2 = np.repeat(s0[:, None], 3, axis=1)
    eye_pen = pen[:, :, None] * np.eye(q + 3)
    out = np.empty((n_imputations, G, n), dtype=np.int64)
    gi = np.arange(G)[:, None]
    for it in range(burn_in + n_imputations * thin):
        z = pattern[c]
        X = np.concatenate([Bm, shift[gi, c]], axis=2)
        w = np.where(valid, 1 / sig2[gi, z], 0.0)
        prec = np.einsum("gni,gn,gnj->gij", X, w, X) + eye_pen
        chol = np.linalg.cholesky(prec)
        noise = np.stack([r.standard_normal(q + 3) for r in rngs])
        g = (np.linalg.solve(prec, np.einsum("gni,gn->gi", X, w * Y)[:, :, None])[:, :, 0]
             + np.linalg.solve(np.swapaxes(chol, 1, 2), noise[:, :, None])[:, :, 0])
        resid = np.where(valid, Y - np.einsum("gni,gi->gn", X, g), 0.0)
        onehot = (z[:, :, None] == np.arange(3)) & valid[:, :, None]
        ssr = np.einsum("gnk,gn->gk", onehot, resid**2)
        counts = onehot.sum(axis=1)
        # three scalar draws, in order: the numbers of chisquare(array), at half its overhead
        chi = np.array([[r.chisquare(df) for df in (nu0 + cnt).tolist()] for r, cnt in zip(rngs, counts)])
        sig2 = (nu0 * s0[:, None] + ssr) / chi
        mu = np.einsum("gni,gi->gn", Bm, g[:, :q])[:, :, None] + np.einsum("gcj,gj->gc", shift, g[:, q:])[:, None, :]
        s2c = sig2[:, pattern]
        logl = logp - 0.5 * np.log(s2c)[:, None, :] - 0.5 * (Y[:, :, None] - mu) ** 2 / s2c[:, None, :]
        with np.errstate(invalid="ignore"):  # padded clients: every category -inf (never used)
            post = np.exp(logl - logl.max(axis=2, keepdims=True))
        cum = np.cumsum(post / post.sum(axis=2, keepdims=True), axis=2)
        u = np.zeros((G, n))
        for k in range(G):
            u[k, :n_k[k]] = rngs[k].random(n_k[k])
        c = np.minimum((u[:, :, None] > cum).sum(axis=2), (C_k - 1)[:, None])
        j = it - burn_in
        if j >= 0 and (j + 1) % thin == 0:
            out[j // thin] = pattern[c]
    return [out[:, k, :n_k[k]] for k in range(G)]


def _effect_inputs(probs, unrepaired_seen, values):
    """The imputation's inputs for the classifiable clients with every value: outcome ``y``,
    the base design ``[1, pre, covariates]``, the prior over the categories (no rupture,
    repaired, unrepaired with j ratings seen from the rupture on, for the j that occur) and
    those j. ``values``: (n, 2 + covariates) pre, post, covariates per row of ``probs``."""
    keep = (probs["pattern"].to_numpy() != INSUFFICIENT) & ~np.isnan(values).any(axis=1)
    rows = np.flatnonzero(keep)
    y = values[rows, 1]
    base = np.column_stack([np.ones(rows.size), values[rows, 0], values[rows, 2:]])
    seen = unrepaired_seen[rows]
    used = np.flatnonzero(seen.any(axis=0))  # numbers of observed ratings that occur
    prior = np.column_stack([probs[["p_no_rupture", "p_repaired"]].to_numpy(dtype=float)[rows], seen[:, used]])
    return y, base, prior, np.r_[0, 0, used]


def _pool_effect(y, base, z, cov_type, level) -> dict:
    """The paper's regression on each completed data set (patterns ``z``, m x n) and the
    pooled row of :data:`EFFECT_COLUMNS` (with ``beta_se`` as well)."""
    n, q = base.shape
    m = z.shape[0]
    flag = (z == 2).astype(float)
    # each distinct completed data set is fitted once (identical ones give identical numbers)
    uniq, which = np.unique(flag, axis=0, return_inverse=True)
    X = np.concatenate([np.broadcast_to(base, (len(uniq), n, q)), uniq[:, :, None]], axis=2)
    fit = _completed_fits(y, X, cov_type)
    which = which.ravel()
    b, var = fit["b"][which], fit["var"][which]
    n_bad = int((~fit["estimable"][which]).sum())  # NaN in b and var: the pooled result is NaN
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = flag.std(axis=1, ddof=1) / y.std(ddof=1)
    pooled = rubin_rules(b, var, df_complete=fit["df"], level=level)
    pooled_beta = rubin_rules(b * scale, var * scale**2, df_complete=fit["df"], level=level)
    return {"b": pooled["estimate"], "se": pooled["se"], "ci_low": pooled["ci_low"],
            "ci_high": pooled["ci_high"], "df": pooled["df"], "p": pooled["p"],
            "beta": pooled_beta["estimate"], "beta_ci_low": pooled_beta["ci_low"],
            "beta_ci_high": pooled_beta["ci_high"], "fmi": pooled["fmi"], "n": n,
            "expected_n_unrepaired": float(flag.sum(axis=1).mean()), "n_imputations": m,
            "n_not_estimable": n_bad, "beta_se": pooled_beta["se"]}


def unrepaired_effect_arrays(models, pre, post, *, seeds, n_imputations=20, cov_type="HC3",
                             level=0.95, burn_in=200, thin=10) -> pd.DataFrame:
    """:func:`unrepaired_effect` of many trials at once (the power study's route).

    Parameters
    ----------
    models : list of PatternModel
        From :func:`fit_pattern_arrays`, one per trial.
    pre, post : list of arrays
        Per trial, the outcome before and after treatment of each row of the model's
        ``probabilities`` (NaN = missing).
    seeds : sequence of int
        Per trial, the seed :func:`unrepaired_effect` would be given: trial ``k`` gets the
        imputations it gets alone with ``seed=seeds[k]``, whatever the other trials.
    n_imputations, cov_type, level, burn_in, thin
        As :func:`unrepaired_effect`.

    Returns
    -------
    DataFrame
        One row per trial: :data:`EFFECT_COLUMNS` and ``beta_se`` (the pooled SE of beta). The
        same numbers as :func:`unrepaired_effect` of each trial with its seed (tested, to
        rounding).

    Examples
    --------
    >>> from helpers.simulate import simulate_arrays
    >>> arr = [simulate_arrays(80, 10, seed=s) for s in (1, 2)]
    >>> models = fit_pattern_arrays(np.vstack([a["alliance"] for a in arr]), starts=[0, 80], reliability=0.83)
    >>> r = unrepaired_effect_arrays(models, [a["pss_i_pre"] for a in arr], [a["pss_i_post"] for a in arr],
    ...                              seeds=[1, 2], n_imputations=3, burn_in=10, thin=2)
    >>> len(r), list(r.columns[:3])
    (2, ['b', 'se', 'ci_low'])
    """
    if isinstance(n_imputations, bool) or int(n_imputations) != n_imputations or n_imputations < 2:
        raise ValueError(f"n_imputations must be a whole number >= 2, got {n_imputations!r}")
    if cov_type not in ("HC3", "nonrobust"):
        raise ValueError(f"cov_type must be 'HC3' or 'nonrobust', got {cov_type!r}")
    if not (len(models) == len(pre) == len(post) == len(seeds)):
        raise ValueError("models, pre, post and seeds must have one entry per trial")
    inputs = [_effect_inputs(mod.probabilities, mod.unrepaired_seen,
                             np.column_stack([np.asarray(a, float), np.asarray(b, float)]))
              for mod, a, b in zip(models, pre, post)]
    m = int(n_imputations)
    z = _impute_patterns_many([i[2] for i in inputs], [i[3] for i in inputs], [i[0] for i in inputs],
                              [i[1] for i in inputs], m, list(seeds), int(burn_in), int(thin))
    rows = [_pool_effect(y, base, zk, cov_type, level) for (y, base, _, _), zk in zip(inputs, z)]
    return pd.DataFrame(rows, columns=[*EFFECT_COLUMNS, "beta_se"])


# --------------------------------------------------------------------------------------------
# sensitivity to the smallest drop that counts as a rupture
# --------------------------------------------------------------------------------------------
def min_drop_sensitivity(sessions, *, reliability, multiples=(0.5, 0.75, 1.0, 1.5, 2.0),
                         participants=None, outcome="pss_i", seed=None, n_imputations=20,
                         model=None, effect=None, **fit_kwargs) -> pd.DataFrame:
    """The pattern model refitted at several values of ``min_drop``: one row each.

    Parameters
    ----------
    sessions : DataFrame
        Long sessions table, as :func:`fit_pattern_model`.
    reliability : float
        Reliability of the alliance measure: the default ``min_drop`` (multiple 1) is
        :func:`default_min_drop`.
    multiples : sequence of float
        ``min_drop`` values as multiples of the default.
    participants : DataFrame, optional
        With it, each row also has the effect of an unrepaired rupture
        (:func:`unrepaired_effect` with ``outcome``, ``seed``, ``n_imputations``).
    model : PatternModel, optional
        The run's fit at the default ``min_drop`` (the same ``fit_kwargs``): the row of
        multiple 1 is taken from it instead of a refit (at 100,000 clients a fit and its
        imputations take about 5 s).
    effect : DataFrame, optional
        ``model``'s :func:`unrepaired_effect` (same ``outcome``, ``seed``, ``n_imputations``),
        likewise reused for that row.
    **fit_kwargs
        Passed to :func:`fit_pattern_model` (``repair_max``, ``min_sessions``, ...).

    Returns
    -------
    DataFrame
        ``multiple``, ``min_drop``, ``n_classifiable``, the expected percentage of each
        pattern among the classifiable clients (``pct_no_rupture``, ``pct_repaired``,
        ``pct_unrepaired``: mean posterior probabilities x 100), the modal counts
        (``n_no_rupture``, ``n_repaired``, ``n_unrepaired``), ``noise_sd``, ``drop_mean``,
        ``p_second``, ``converged``; with ``participants`` also ``b``, ``ci_low``,
        ``ci_high``, ``beta``, ``fmi``.

    Notes
    -----
    ``min_drop`` is the definition of a rupture, and the data cannot choose it: a smaller one
    admits smaller drops as ruptures (and noise as drops), a larger one calls them none. The
    default is anchored in measurement error (:func:`default_min_drop`); this table shows how
    far the patterns and the effect move with it. Each row is a separate fit with its own
    hyperparameters.

    References
    ----------
    Jacobson, N. S., & Truax, P. (1991). Clinical significance: A statistical approach to
    defining meaningful change in psychotherapy research. Journal of Consulting and Clinical
    Psychology, 59, 12-19.

    Examples
    --------
    >>> from helpers.simulate import simulate_trial
    >>> trial = simulate_trial(seed=3)
    >>> t = min_drop_sensitivity(trial.sessions, reliability=0.83, multiples=(1, 2))
    >>> t["multiple"].tolist(), bool(t["pct_unrepaired"].iloc[0] >= t["pct_unrepaired"].iloc[1] - 5)
    ([1.0, 2.0], True)
    """
    ids, labels, X = wide_scores(sessions, fit_kwargs.get("id_col", "participant_id"),
                           fit_kwargs.get("session_col", "session"), fit_kwargs.get("score_col", "alliance"))
    base = default_min_drop(X, reliability)
    if model is not None and not math.isclose(model.min_drop, base, rel_tol=1e-12):
        raise ValueError(f"model was fitted with min_drop {model.min_drop:.6g}, not the default {base:.6g} of "
                         "these sessions and reliability: it cannot stand for multiple 1")
    if effect is not None and model is None:
        raise ValueError("effect is reused only with the model it was estimated from: pass model= as well")
    given = model
    rows = []
    for k in multiples:
        reuse = given is not None and float(k) == 1.0
        model = given if reuse else fit_pattern_model(sessions, reliability=reliability, min_drop=float(k) * base,
                                                      **fit_kwargs)
        p = model.probabilities
        cls = p[p["pattern"] != INSUFFICIENT]
        exp = model.expected_prevalence() * 100
        row = {"multiple": float(k), "min_drop": model.min_drop, "n_classifiable": len(cls),
               **{f"pct_{lab}": float(exp[lab]) for lab in PATTERN_LABELS},
               **{f"n_{lab}": int((cls["pattern"] == lab).sum()) for lab in PATTERN_LABELS},
               "noise_sd": model.noise_sd, "drop_mean": model.drop_mean, "p_second": model.p_second,
               "converged": model.converged}
        if participants is not None:
            eff = (effect if reuse and effect is not None
                   else unrepaired_effect(model, participants, outcome=outcome, seed=seed,
                                          n_imputations=n_imputations)).iloc[0]
            row.update({key: float(eff[key]) for key in ("b", "ci_low", "ci_high", "beta", "fmi")})
        rows.append(row)
    return pd.DataFrame(rows)
