"""The imputation of the patterns one step at a time: the reference of
``helpers.pattern_model.impute_patterns``, whose sweeps run on a (categories x clients)
layout with in-place arithmetic for registry-sized trials.

This is the sampler as its docstring reads: per client a row of categories, the category
drawn by normalising the posterior and comparing a uniform with its cumulative sums. It draws
the same random numbers in the same order, so the two give the same imputations up to the
last bits of the sums (a draw moves only when a uniform falls within rounding of a boundary).
"""

from __future__ import annotations

import numpy as np


def draw_categorical(prob, rng):
    """One category per row of ``prob`` (rows sum to 1) from one uniform each."""
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

    Returns
    -------
    array (n_imputations, n) of pattern codes (index into PATTERN_LABELS).
    """
    n, q = base.shape
    C = prior.shape[1]
    pattern = np.minimum(np.arange(C), 2)
    log_prior = np.log(np.clip(prior, 1e-300, None))
    shift_design = np.zeros((n, C, 3))  # per client; columns: repaired, unrepaired, unrepaired x seen
    shift_design[:, 1, 0] = 1
    shift_design[:, 2:, 1] = 1
    shift_design[:, 2:, 2] = np.broadcast_to(seen, (n, C))[:, 2:]
    rows = np.arange(n)
    coef0, *_ = np.linalg.lstsq(base, y, rcond=None)
    s0 = float(((y - base @ coef0) ** 2).sum() / max(n - q, 1))
    nu0 = 2.0
    pen = np.zeros(q + 3)
    pen[q:] = 1 / (100 * y.var() + 1e-12)
    c = draw_categorical(prior, rng)
    sig2 = np.full(3, s0)
    out = np.empty((n_imputations, n), dtype=np.int64)
    for it in range(burn_in + n_imputations * thin):
        z = pattern[c]
        X = np.column_stack([base, shift_design[rows, c]])
        w = 1 / sig2[z]
        prec = (X * w[:, None]).T @ X + np.diag(pen)
        chol = np.linalg.cholesky(prec)
        g = np.linalg.solve(prec, X.T @ (w * y)) + np.linalg.solve(chol.T, rng.standard_normal(q + 3))
        resid = y - X @ g
        ssr = np.bincount(z, weights=resid**2, minlength=3)
        sig2 = (nu0 * s0 + ssr) / rng.chisquare(nu0 + np.bincount(z, minlength=3))
        mu = (base @ g[:q])[:, None] + shift_design @ g[q:]
        s2c = sig2[pattern]
        logl = log_prior - 0.5 * np.log(s2c)[None, :] - 0.5 * (y[:, None] - mu) ** 2 / s2c[None, :]
        post = np.exp(logl - logl.max(axis=1, keepdims=True))
        c = draw_categorical(post / post.sum(axis=1, keepdims=True), rng)
        k = it - burn_in
        if k >= 0 and (k + 1) % thin == 0:
            out[k // thin] = pattern[c]
    return out
