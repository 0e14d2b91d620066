"""A simulated prolonged-exposure (PE) trial with known truth.

The trial's raw data are not public, so the default run uses data drawn from a generative model
built to agree with what McLaughlin et al. (2014) report (116 clients, 10 sessions, the sample's
demographics, about 82 classifiable clients, 54 / 28 / 18 % no / repaired / unrepaired rupture,
a standardised beta of about .45): agreement shows that the pipeline and this model agree with
the paper, not that the finding is true. Every probability and effect is a field of
:class:`Knobs`, which :func:`simulate_trial` takes as keyword arguments. The model, step by step,
and its calibration are in ``docs/simulation.md`` and ``docs/calibration.md``.

Examples
--------
>>> from helpers.simulate import simulate_trial
>>> trial = simulate_trial(seed=1)
>>> trial.sessions.shape, trial.participants.shape, trial.truth.shape
((1160, 4), (116, 12), (116, 7))
>>> simulate_trial(seed=1, p_second_rupture=0.2).meta["knobs"]["p_second_rupture"]
0.2
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import special

from helpers.contract import (
    PARTICIPANT_COLUMNS,
    PATTERN_LABELS,
    SCORE_RANGES,
    SESSION_COLUMNS,
    TRUTH_COLUMNS,
    Trial,
)

__all__ = ["Knobs", "default_knobs", "simulate_trial"]


@dataclass(frozen=True)
class Knobs:
    """Every probability and effect of the generative model (see the module docstring).

    Values marked "paper" come from McLaughlin et al. (2014) or its parent trial; "assumption"
    marks a plausible value chosen here; "calibrated" marks a value set by simulation so that
    a reported figure is matched on average.
    """

    # --- 1. demographics ---------------------------------------------------------------
    p_female: float = 0.761  # P(female); paper: 76.1 % female
    p_caucasian: float = 0.66  # P(Caucasian); paper: 66 % Caucasian
    age_mean: float = 36.7  # mean age after truncation; paper: M = 36.7
    age_sd: float = 11.3  # SD of age after truncation; paper: SD = 11.3
    age_min: float = 18.0  # lowest age; parent trial inclusion 18-65
    age_max: float = 65.0  # highest age; parent trial inclusion 18-65
    p_mdd: float = 0.5  # P(current MDD diagnosis); assumption (paper gives no rate)
    p_child_abuse: float = 0.45  # P(childhood abuse history); assumption (no rate given)

    # --- 2. true alliance pattern and rupture episodes ---------------------------------
    p_repaired: float = 0.38  # P(true repaired pattern); calibrated so DETECTED repaired ~ 28 % (helpers.calibration)
    p_unrepaired: float = 0.135  # P(true unrepaired pattern); calibrated so DETECTED unrepaired ~ 18 %
    p_imaginal_start_3: float = 0.5  # P(imaginal exposure starts at session 3, else 2); study: "session 2-3"
    rupture_weight_imaginal: float = 2.0  # relative odds of a rupture at a session from imaginal start on; assumption
    rupture_drop_mean: float = 1.5  # mean alliance drop at a rupture (CALPAS points); assumption, raised from 1.3 in calibration
    rupture_drop_sd: float = 0.3  # SD of the drop; assumption
    rupture_drop_min: float = 0.3  # smallest drop (floor of the normal draw); assumption
    repair_sessions_max: int = 3  # a repaired rupture is back within 1..this many sessions; assumption
    repair_overshoot: float = 0.2  # latent alliance above the pre-rupture level after repair; assumption (V-shape rebound)
    unrepaired_max_recovery: float = 0.5  # largest fraction of the drop an unrepaired rupture regains; assumption
    p_second_rupture: float = 0.0  # P(a ruptured person has a second episode); assumption (off by default)
    p_gradual_drop: float = 0.0  # P(an episode's drop is spread over two sessions, half each); harder setting (off by default)

    # --- 3. CALPAS alliance ------------------------------------------------------------
    alliance_mean: float = 5.5  # mean person level at session 1 (1-7 scale); assumption (CALPAS means ~5-6)
    alliance_sd: float = 0.7  # between-person SD of the level; assumption
    alliance_slope_mean: float = 0.04  # mean change per session; assumption (alliance grows slowly)
    alliance_slope_sd: float = 0.04  # between-person SD of the slope; assumption
    alliance_noise_sd: float = 0.25  # session-to-session noise SD; assumption
    alliance_noise_df: float = 0.0  # 0 = normal noise; > 2 = Student t with this df, same SD; harder setting (off by default)
    alliance_noise_ar: float = 0.0  # AR(1) coefficient of the noise (same marginal SD); harder setting (off by default)
    alliance_drift_sd: float = 0.0  # SD of a random-walk step of the true alliance per session; harder setting (off by default)

    # --- 4. symptoms ---------------------------------------------------------------------
    pss_pre_mean: float = 30.0  # mean true pre-treatment PTSD severity (PSS 0-51); assumption (brief: ~30)
    pss_pre_sd: float = 8.0  # SD of true severity (observed SD ~9 with error); assumption
    pss_sr_error_sd: float = 4.0  # PSS-SR measurement error SD; assumption (PSS-SR/PSS-I r ~ .8)
    pss_i_error_sd: float = 4.0  # PSS-I measurement error SD; assumption
    improvement_rate: float = 0.09  # mean log-improvement per attended session; assumption (PE roughly halves PSS)
    improvement_rate_sigma: float = 0.5  # SD of the log rate between persons; assumption
    unrepaired_dose_factor: float = -1.45  # dose per session after an unrepaired rupture (1 = no effect); calibrated: DETECTED beta ~ .45
    bdi_pre_mean: float = 24.0  # mean pre BDI; assumption (moderate depression, typical of PTSD samples)
    bdi_pre_sd: float = 9.0  # SD of pre BDI within MDD group; assumption
    bdi_ptsd_corr: float = 0.5  # correlation of latent BDI with PTSD severity; assumption
    bdi_mdd_shift: float = 8.0  # BDI points higher with MDD than without; assumption
    bdi_rate_ratio: float = 0.8  # BDI improves at this fraction of the PTSD rate; assumption
    bdi_error_sd: float = 3.0  # BDI measurement error SD; assumption

    # --- 5. missing data -----------------------------------------------------------------
    dropout_hazard: float = 0.06  # P(leave after a session | still in treatment); calibrated to ~82 of 116 classifiable
    dropout_rupture_hr: float = 1.0  # hazard ratio of leaving after a session inside a rupture (1 = alliance-independent); harder setting
    p_missed_session: float = 0.10  # P(a session 2..last is missed); assumption
    p_post_missing_completer: float = 0.05  # P(no post assessment | completed); assumption
    p_post_missing_dropout: float = 0.5  # P(no post assessment | dropped out); assumption


_PROBABILITY_KNOBS = (
    "p_female",
    "p_caucasian",
    "p_mdd",
    "p_child_abuse",
    "p_repaired",
    "p_unrepaired",
    "p_imaginal_start_3",
    "p_second_rupture",
    "p_gradual_drop",
    "dropout_hazard",
    "p_missed_session",
    "p_post_missing_completer",
    "p_post_missing_dropout",
    "unrepaired_max_recovery",
)
_NONNEGATIVE_KNOBS = (
    "rupture_weight_imaginal",
    "rupture_drop_sd",
    "rupture_drop_min",
    "repair_overshoot",
    "alliance_sd",
    "alliance_slope_sd",
    "alliance_noise_sd",
    "alliance_drift_sd",
    "dropout_rupture_hr",
    "pss_pre_sd",
    "pss_sr_error_sd",
    "pss_i_error_sd",
    "improvement_rate_sigma",
    "bdi_pre_sd",
    "bdi_error_sd",
    "bdi_rate_ratio",
)


def default_knobs() -> Knobs:
    """The default knobs of the generative model (see :class:`Knobs`)."""
    return Knobs()


def _make_knobs(overrides: dict) -> Knobs:
    """Default knobs with ``overrides`` applied; reject unknown names and impossible values."""
    names = {f.name for f in dataclasses.fields(Knobs)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(
            f"simulate_trial() got unknown knob(s) {', '.join(map(repr, unknown))}; "
            f"known knobs: {', '.join(sorted(names))}"
        )
    knobs = dataclasses.replace(Knobs(), **overrides)
    for name in _PROBABILITY_KNOBS:
        value = getattr(knobs, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"knob {name!r} must be a probability in [0, 1], got {value!r}")
    for name in _NONNEGATIVE_KNOBS:
        value = getattr(knobs, name)
        if not value >= 0.0:
            raise ValueError(f"knob {name!r} must be >= 0, got {value!r}")
    if knobs.p_repaired + knobs.p_unrepaired > 1.0:
        raise ValueError("knobs 'p_repaired' + 'p_unrepaired' must not exceed 1")
    if int(knobs.repair_sessions_max) != knobs.repair_sessions_max or knobs.repair_sessions_max < 1:
        raise ValueError("knob 'repair_sessions_max' must be a positive integer")
    if not knobs.age_min < knobs.age_mean < knobs.age_max or knobs.age_sd <= 0:
        raise ValueError("knobs 'age_*' need age_min < age_mean < age_max and age_sd > 0")
    if not (knobs.alliance_noise_df == 0 or knobs.alliance_noise_df > 2):
        raise ValueError("knob 'alliance_noise_df' must be 0 (normal noise) or > 2 (a t with a finite SD)")
    if not -1.0 < knobs.alliance_noise_ar < 1.0:
        raise ValueError("knob 'alliance_noise_ar' must lie in (-1, 1) (a stationary AR(1))")
    if not -1.0 <= knobs.bdi_ptsd_corr <= 1.0:
        raise ValueError("knob 'bdi_ptsd_corr' must lie in [-1, 1]")
    return knobs


# --- 1. demographics --------------------------------------------------------------------


def _truncated_moments(mu, sigma, lo, hi):
    """Mean and SD of the normal (``mu``, ``sigma``) truncated to [lo, hi] (Johnson, Kotz &
    Balakrishnan, 1994, sec. 10.1): with a, b the standardised bounds and Z = Phi(b) - Phi(a),
    mean = mu + sigma (phi(a) - phi(b)) / Z and
    var = sigma^2 (1 + (a phi(a) - b phi(b)) / Z - ((phi(a) - phi(b)) / Z)^2)
    (what ``scipy.stats.truncnorm.stats`` gives; tests/test_simulate.py compares them)."""
    a, b = (lo - mu) / sigma, (hi - mu) / sigma
    z = special.ndtr(b) - special.ndtr(a)
    pa, pb = np.exp(-a * a / 2) / np.sqrt(2 * np.pi), np.exp(-b * b / 2) / np.sqrt(2 * np.pi)
    shift = (pa - pb) / z
    var = sigma**2 * (1 + (a * pa - b * pb) / z - shift**2)
    return mu + sigma * shift, np.sqrt(var)


@lru_cache(maxsize=32)
def _untruncated_normal(mean: float, sd: float, lo: float, hi: float) -> tuple[float, float]:
    """Mean and SD of the normal whose truncation to [lo, hi] has the given mean and SD.

    Newton's method on (mu, log sigma) from (mean, log sd), with a central-difference
    Jacobian (a 2 x 2 system; scipy.optimize and scipy.stats would cost 0.5 s to import in every
    notebook that simulates).
    """
    x = np.array([mean, np.log(sd)])

    def gap(x):
        with np.errstate(all="ignore"):  # the search may look into a tail (no root: raised below)
            m, s = _truncated_moments(x[0], np.exp(x[1]), lo, hi)
        return np.array([m - mean, s - sd])

    for _ in range(100):
        g = gap(x)
        if np.all(np.isfinite(g)) and np.max(np.abs(g)) < 1e-12 * max(1.0, abs(mean), sd):
            break
        h = 1e-6 * np.maximum(1.0, np.abs(x))
        jac = np.column_stack([(gap(x + e) - gap(x - e)) / (2 * e[i]) for i, e in enumerate(np.diag(h))])
        try:
            step = np.linalg.solve(jac, g)
        except np.linalg.LinAlgError:
            break
        # halve the step until the gap shrinks (or stays finite): no overshoot into a tail
        for _ in range(30):
            trial = x - step
            gt = gap(trial)
            if np.all(np.isfinite(gt)) and np.max(np.abs(gt)) < np.max(np.abs(g)):
                break
            step = step / 2
        x = trial
    g = gap(x)
    if not (np.all(np.isfinite(g)) and np.max(np.abs(g)) <= 1e-8):
        raise ValueError(f"no normal truncated to [{lo}, {hi}] has mean {mean} and SD {sd}")
    return float(x[0]), float(np.exp(x[1]))


def _truncated_normal(u, mean, sd, lo, hi):
    """Inverse-CDF draw from the truncated normal with truncated moments ``mean``/``sd``."""
    mu, sigma = _untruncated_normal(float(mean), float(sd), float(lo), float(hi))
    p_lo, p_hi = special.ndtr((lo - mu) / sigma), special.ndtr((hi - mu) / sigma)
    return np.clip(mu + sigma * special.ndtri(p_lo + u * (p_hi - p_lo)), lo, hi)


def _demographics(rng, n, kn):
    u = rng.random((n, 5))
    age = np.round(_truncated_normal(u[:, 2], kn.age_mean, kn.age_sd, kn.age_min, kn.age_max))
    return {
        "female": u[:, 0] < kn.p_female,
        "caucasian": u[:, 1] < kn.p_caucasian,
        "age": age,
        "mdd": u[:, 3] < kn.p_mdd,
        "child_abuse": u[:, 4] < kn.p_child_abuse,
    }


# --- 2. patterns and episodes -------------------------------------------------------------


def _draw_sessions(u, lo, hi, imaginal_start, weight_imaginal, n_sessions):
    """One session per row from ``lo..hi`` (inclusive), weighted up from imaginal start on.

    Rows whose range is empty get 0.
    """
    s = np.arange(1, n_sessions + 1)
    allowed = (s >= lo[:, None]) & (s <= hi[:, None])
    w = allowed * np.where(s >= imaginal_start[:, None], weight_imaginal, 1.0)
    cum = np.cumsum(w, axis=1)
    total = cum[:, -1]
    # first session whose cumulative weight exceeds u * total (skips zero-weight sessions)
    idx = np.minimum((cum <= (u * total)[:, None]).sum(axis=1), n_sessions - 1)
    return np.where(total > 0, idx + 1, 0)


def _episodes(rng, n, S, kn):
    """True pattern, imaginal start and up to two episodes per participant.

    Returns a dict of arrays; an episode slot is unused where its session is 0.
    Slot "a" is the first episode of a two-episode person (always repaired); slot "b" is the
    episode carrying the person's pattern (the only one for a one-episode person).
    """
    u = rng.random((n, 12))
    pattern = np.where(
        u[:, 0] < kn.p_repaired,
        1,
        np.where(u[:, 0] < kn.p_repaired + kn.p_unrepaired, 2, 0),
    )
    imaginal = np.where(u[:, 1] < kn.p_imaginal_start_3, 3, 2)
    ruptured = pattern > 0
    k_max = int(min(kn.repair_sessions_max, S - 2))
    k_a = 1 + np.floor(u[:, 2] * k_max).astype(int)
    k_b = 1 + np.floor(u[:, 3] * k_max).astype(int)
    repaired_b = pattern == 1
    # last session the final episode may start at: a repaired one needs room for its repair
    hi_b = np.where(repaired_b, S - k_b, S)

    # a first (repaired) episode, where wanted and where it fits before the final one
    two = ruptured & (u[:, 4] < kn.p_second_rupture)
    hi_a = np.where(two, hi_b - k_a - 1, 0)
    r_a = _draw_sessions(u[:, 5], np.full(n, 2), hi_a, imaginal, kn.rupture_weight_imaginal, S)
    lo_b = np.where(r_a > 0, r_a + k_a + 1, 2)
    r_b = _draw_sessions(u[:, 6], lo_b, hi_b, imaginal, kn.rupture_weight_imaginal, S)
    r_b = np.where(ruptured, r_b, 0)

    z = special.ndtri(u[:, 7:9].clip(1e-12, 1 - 1e-12))
    drops = np.maximum(kn.rupture_drop_mean + kn.rupture_drop_sd * z, kn.rupture_drop_min)
    return {
        "pattern": pattern,
        "imaginal_start": imaginal,
        "r_a": r_a,
        "k_a": k_a,
        "d_a": drops[:, 0],
        "r_b": r_b,
        "k_b": k_b,
        "d_b": drops[:, 1],
        "repaired_b": repaired_b,
        "q_b": u[:, 9] * kn.unrepaired_max_recovery,
    }


# --- harder settings: extra draws and episode shapes (every one off by default) ------------


def _extra_draws(rng, n, S, kn):
    """Random numbers of the harder settings, drawn after every default draw and only for
    the knobs that are on: with all of them off nothing is drawn, so the default trial is
    bit for bit what it was before these knobs existed (tests/test_simulate.py)."""
    extra = {}
    if kn.alliance_drift_sd > 0:
        extra["drift"] = rng.standard_normal((n, S - 1))
    if kn.alliance_noise_df > 0:
        extra["chi2"] = rng.chisquare(kn.alliance_noise_df, (n, S))
    if kn.p_gradual_drop > 0:
        extra["gradual"] = rng.random((n, 2))
    return extra


def _gradual_flags(ep, extra, kn, S):
    """Which episodes (slots a, b) drop over two sessions (0/1 ints; all 0 when off).

    A gradual episode ends one session later, so it is gradual only where the sessions leave
    room: a repaired one must still be back by session S, and the first of two episodes back
    before the second begins.
    """
    n = ep["pattern"].size
    if "gradual" not in extra:
        return np.zeros(n, np.int64), np.zeros(n, np.int64)
    want = extra["gradual"] < kn.p_gradual_drop
    g_a = want[:, 0] & (ep["r_a"] > 0) & (ep["r_a"] + ep["k_a"] + 1 < ep["r_b"])
    end_b = np.where(ep["repaired_b"], ep["r_b"] + ep["k_b"] + 1, ep["r_b"] + 1)
    g_b = want[:, 1] & (ep["r_b"] > 0) & (end_b <= S)
    return g_a.astype(np.int64), g_b.astype(np.int64)


def _in_rupture(ep, S):
    """(n, S) bool: the latent alliance is inside an episode at session s (from the rupture
    session up to the session before the repair; to the end for an unrepaired one)."""
    s = np.arange(1, S + 1)[None, :]
    inside = np.zeros((ep["pattern"].size, S), bool)
    for slot, repaired in (("a", np.ones(ep["pattern"].size, bool)), ("b", ep["repaired_b"])):
        r = ep[f"r_{slot}"][:, None]
        end = np.where(repaired, ep[f"r_{slot}"] + ep[f"k_{slot}"] + ep[f"g_{slot}"], S + 1)[:, None]
        inside |= (r > 0) & (s >= r) & (s < end)
    return inside


def _alliance_noise(noise, kn, extra):
    """Standardised noise of the observed alliance: the normal draws as they are by default;
    scaled into a Student t (same SD) and/or filtered into a stationary AR(1) when asked."""
    e = noise
    if "chi2" in extra:  # z * sqrt(df / chi2_df) is t_df; * sqrt((df - 2) / df) gives SD 1
        e = e * np.sqrt((kn.alliance_noise_df - 2) / extra["chi2"])
    rho = kn.alliance_noise_ar
    if rho != 0:  # e_s = rho e_{s-1} + sqrt(1 - rho^2) z_s keeps the marginal SD at 1
        out = e.copy()
        for j in range(1, e.shape[1]):
            out[:, j] = rho * out[:, j - 1] + np.sqrt(1 - rho * rho) * e[:, j]
        e = out
    return e


# --- 3. alliance --------------------------------------------------------------------------


def _apply_episode(latent, r, k, drop, repaired, q, overshoot, gradual=None):
    """Latent alliance with one episode per row applied (rows with ``r == 0`` unchanged).

    A ``gradual`` episode (0/1 per row, ``None`` = none) is half down at its rupture session
    and follows the abrupt course one session late from there on.
    """
    n, S = latent.shape
    has = r > 0
    rows = np.arange(n)
    pre = latent[rows, np.clip(r - 2, 0, S - 1)][:, None]  # level at session r - 1
    rel = np.arange(1, S + 1)[None, :] - r[:, None]  # sessions since the rupture
    if gradual is not None:
        g = (has & (gradual > 0))[:, None]
        rel_abrupt, rel = rel, rel - g
    k, drop, q = k[:, None], drop[:, None], q[:, None]
    rep = (has & repaired)[:, None]
    unrep = (has & ~repaired)[:, None]
    climbing = pre - drop * (1 - rel / k)
    back = np.maximum(latent, pre) + overshoot
    flat = pre - drop * (1 - q * np.minimum(1.0, rel / k))
    out = np.where(rep & (rel >= 0) & (rel < k), climbing, latent)
    out = np.where(rep & (rel >= k), back, out)
    out = np.where(unrep & (rel >= 0), flat, out)
    if gradual is not None:
        out = np.where(g & (rel_abrupt == 0), pre - drop / 2, out)
    return out


def _latent_alliance(z, S, kn, ep, extra):
    level = kn.alliance_mean + kn.alliance_sd * z[:, 0]
    slope = kn.alliance_slope_mean + kn.alliance_slope_sd * z[:, 1]
    latent = level[:, None] + slope[:, None] * np.arange(S)[None, :]
    if "drift" in extra:  # a random walk from session 1 (0) on; episodes ride on top of it
        steps = kn.alliance_drift_sd * extra["drift"]
        latent = latent + np.hstack([np.zeros((z.shape[0], 1)), np.cumsum(steps, axis=1)])
    gradual = "gradual" in extra
    n = z.shape[0]
    latent = _apply_episode(
        latent, ep["r_a"], ep["k_a"], ep["d_a"], np.ones(n, bool), np.zeros(n),
        kn.repair_overshoot, ep["g_a"] if gradual else None,
    )
    return _apply_episode(
        latent, ep["r_b"], ep["k_b"], ep["d_b"], ep["repaired_b"], ep["q_b"],
        kn.repair_overshoot, ep["g_b"] if gradual else None,
    )


# --- 5. attendance (needed before symptoms: dose comes from attended sessions) -------------


def _attendance(u, S, kn, ep):
    if kn.dropout_rupture_hr == 1.0:
        hazard = kn.dropout_hazard
    else:  # leaving after a session inside a rupture is dropout_rupture_hr times as likely
        inside = _in_rupture(ep, S)[:, : S - 1]
        hazard = np.minimum(1.0, kn.dropout_hazard * np.where(inside, kn.dropout_rupture_hr, 1.0))
    leaves = u[:, : S - 1] < hazard  # leave after session s = 1..S-1
    last_in = np.where(leaves.any(axis=1), leaves.argmax(axis=1) + 1, S)
    s = np.arange(1, S + 1)
    missed = u[:, S : 2 * S] < kn.p_missed_session
    missed[:, 0] = False  # session 1 starts treatment
    attended = (s[None, :] <= last_in[:, None]) & ~missed
    dropout_after = S - np.argmax(attended[:, ::-1], axis=1)
    completer = last_in == S
    p_post_missing = np.where(completer, kn.p_post_missing_completer, kn.p_post_missing_dropout)
    post_missing = u[:, 2 * S] < p_post_missing
    return attended, dropout_after, post_missing


# --- 4. symptoms ----------------------------------------------------------------------------


def _symptoms(z, e, S, kn, ep, attended, mdd):
    n = z.shape[0]
    severity = kn.pss_pre_mean + kn.pss_pre_sd * z[:, 0]
    sig = kn.improvement_rate_sigma
    rate = kn.improvement_rate * np.exp(sig * z[:, 1] - sig**2 / 2)

    s = np.arange(1, S + 1)
    r_unrep = np.where((ep["pattern"] == 2) & (ep["r_b"] > 0), ep["r_b"], S + 1)
    per_session = np.where(s[None, :] >= r_unrep[:, None], kn.unrepaired_dose_factor, 1.0)
    dose = np.cumsum(attended * per_session, axis=1)
    dose_before = np.hstack([np.zeros((n, 1)), dose[:, :-1]])
    dose_total = dose[:, -1]

    pss_session = severity[:, None] * np.exp(-rate[:, None] * dose_before)
    pss_post = severity * np.exp(-rate * dose_total)
    bdi_pre = (
        kn.bdi_pre_mean
        + kn.bdi_mdd_shift * (mdd - kn.p_mdd)
        + kn.bdi_pre_sd * (kn.bdi_ptsd_corr * z[:, 0] + np.sqrt(1 - kn.bdi_ptsd_corr**2) * z[:, 2])
    )
    bdi_post = bdi_pre * np.exp(-kn.bdi_rate_ratio * rate * dose_total)

    def score(latent, noise, sd, column):
        lo, hi = SCORE_RANGES[column]
        return np.clip(np.round(latent + sd * noise), lo, hi)

    return {
        "pss_sr": score(pss_session, e[:, :S], kn.pss_sr_error_sd, "pss_sr"),
        "pss_sr_pre": score(severity, e[:, S], kn.pss_sr_error_sd, "pss_sr_pre"),
        "pss_sr_post": score(pss_post, e[:, S + 1], kn.pss_sr_error_sd, "pss_sr_post"),
        "pss_i_pre": score(severity, e[:, S + 2], kn.pss_i_error_sd, "pss_i_pre"),
        "pss_i_post": score(pss_post, e[:, S + 3], kn.pss_i_error_sd, "pss_i_post"),
        "bdi_pre": score(bdi_pre, e[:, S + 4], kn.bdi_error_sd, "bdi_pre"),
        "bdi_post": score(bdi_post, e[:, S + 5], kn.bdi_error_sd, "bdi_post"),
    }


# --- tables ---------------------------------------------------------------------------------


def _join_sessions(first, second):
    """';'-joined session numbers of up to two slots (0 = unused) as strings, '' if none."""
    a = np.where(first > 0, first.astype(str), "")
    b = np.where(second > 0, second.astype(str), "")
    sep = np.where((first > 0) & (second > 0), ";", "")
    return np.char.add(np.char.add(a, sep), b).tolist()


def _simulate_arrays(n, S, rng, kn):
    """Every generated array, latent ones included (used by the tables and by tests).

    All random numbers are drawn first, in a fixed order and with fixed shapes (the harder
    settings' last, only when on), then turned into the trial.
    """
    demo = _demographics(rng, n, kn)
    ep = _episodes(rng, n, S, kn)
    z_trend = rng.standard_normal((n, 2))
    noise = rng.standard_normal((n, S))
    u_attend = rng.random((n, 2 * S + 1))
    z_symptoms = rng.standard_normal((n, 3))
    e_symptoms = rng.standard_normal((n, S + 7))
    extra = _extra_draws(rng, n, S, kn)
    ep["g_a"], ep["g_b"] = _gradual_flags(ep, extra, kn, S)
    latent = _latent_alliance(z_trend, S, kn, ep, extra)
    attended, dropout_after, post_missing = _attendance(u_attend, S, kn, ep)
    sym = _symptoms(z_symptoms, e_symptoms, S, kn, ep, attended, demo["mdd"])
    noise = _alliance_noise(noise, kn, extra)
    lo, hi = SCORE_RANGES["alliance"]
    alliance = np.round(np.clip(latent + kn.alliance_noise_sd * noise, lo, hi), 2)
    alliance = np.where(attended, alliance, np.nan)
    sym["pss_sr"] = np.where(attended, sym["pss_sr"], np.nan)
    for col in ("pss_sr_post", "pss_i_post", "bdi_post"):
        sym[col] = np.where(post_missing, np.nan, sym[col])
    return {
        **demo,
        **ep,
        **sym,
        "latent_alliance": latent,
        "alliance": alliance,
        "attended": attended,
        "dropout_after": dropout_after,
        "post_missing": post_missing,
    }


def _tables(arr, n, S):
    width = max(3, len(str(n)))
    ids = np.array([f"P{i:0{width}d}" for i in range(1, n + 1)], dtype=object)
    sessions = pd.DataFrame(
        {
            "participant_id": np.repeat(ids, S),
            "session": np.tile(np.arange(1, S + 1, dtype=np.int64), n),
            "alliance": arr["alliance"].ravel().astype(float),
            "pss_sr": arr["pss_sr"].ravel().astype(float),
        },
        columns=SESSION_COLUMNS,
    )
    participants = pd.DataFrame({"participant_id": ids})
    for col in PARTICIPANT_COLUMNS[1:]:
        values = arr[col]
        # Nullable "boolean", the type the loader gives real data (which can have missing flags).
        participants[col] = pd.array(values, dtype="boolean") if values.dtype == bool else values.astype(float)
    participants = participants[PARTICIPANT_COLUMNS]

    two = arr["r_a"] > 0
    repair_b = np.where(arr["repaired_b"] & (arr["r_b"] > 0), arr["r_b"] + arr["k_b"] + arr["g_b"], 0)
    truth = pd.DataFrame(
        {
            "participant_id": ids,
            "true_pattern": np.array(PATTERN_LABELS, dtype=object)[arr["pattern"]],
            "n_true_ruptures": (two.astype(np.int64) + (arr["r_b"] > 0)).astype(np.int64),
            "rupture_sessions": _join_sessions(arr["r_a"], arr["r_b"]),
            "repair_sessions": _join_sessions(np.where(two, arr["r_a"] + arr["k_a"] + arr["g_a"], 0), repair_b),
            "imaginal_start": arr["imaginal_start"].astype(np.int64),
            "dropout_after": arr["dropout_after"].astype(np.int64),
        },
        columns=TRUTH_COLUMNS,
    )
    return sessions, participants, truth


def _check_size(n_participants, n_sessions) -> tuple[int, int]:
    n, S = int(n_participants), int(n_sessions)
    if n != n_participants or n < 1:
        raise ValueError(f"n_participants must be a positive integer, got {n_participants!r}")
    if S != n_sessions or S < 3:
        raise ValueError(f"n_sessions must be an integer >= 3, got {n_sessions!r}")
    return n, S


def simulate_arrays(n_participants=116, n_sessions=10, seed=None, **knobs) -> dict:
    """The arrays behind :func:`simulate_trial` (same seed, same numbers), without the tables.

    For the power study, which simulates thousands of trials and needs only the matrices: the
    wide alliance and PSS-SR scores (``n_participants x n_sessions``, NaN where missed), the
    pre/post scores, the true pattern code (index into :data:`PATTERN_LABELS`) and the
    latent quantities. Row ``i`` is participant ``P{i+1}`` of :func:`simulate_trial` (ids are
    zero-padded, so rows are also in the tables' sorted id order); column ``j`` is session
    ``j + 1``.

    Examples
    --------
    >>> arr = simulate_arrays(116, 10, seed=1)
    >>> trial = simulate_trial(116, 10, seed=1)
    >>> bool(np.array_equal(arr["alliance"].ravel(), trial.sessions["alliance"].to_numpy(), equal_nan=True))
    True
    """
    n, S = _check_size(n_participants, n_sessions)
    return _simulate_arrays(n, S, np.random.default_rng(seed), _make_knobs(knobs))


def simulate_trial(n_participants=116, n_sessions=10, seed=None, **knobs) -> Trial:
    """Simulate one prolonged-exposure trial with known alliance patterns.

    Parameters
    ----------
    n_participants : int, default 116
        Number of PE clients (116 in the paper).
    n_sessions : int, default 10
        Number of PE sessions (10 in the paper); at least 3.
    seed : int, optional
        Seed of :func:`numpy.random.default_rng`; the same seed gives identical tables.
    **knobs
        Any field of :class:`Knobs` (e.g. ``p_unrepaired=0.2``). An unknown name raises
        ``TypeError``; an impossible value (a probability outside [0, 1]) ``ValueError``.

    Returns
    -------
    Trial
        ``sessions`` (one row for every participant x session 1..n_sessions, NaN where the
        session was missed or came after dropout), ``participants``, ``truth``; ``source`` is
        ``"simulated (seed=...)"`` and ``meta`` holds ``seed``, ``n_sessions``,
        ``n_participants`` and ``knobs`` (a dict of every knob used).

    Notes
    -----
    The generative model is described step by step in the module docstring
    (``help(helpers.simulate)``). ``truth`` describes the latent course: a rupture that falls
    on a missed session or after ``dropout_after`` is listed but cannot be observed.

    Examples
    --------
    >>> trial = simulate_trial(seed=20131106)
    >>> sorted(trial.truth["true_pattern"].unique())
    ['no_rupture', 'repaired', 'unrepaired']
    """
    n, S = _check_size(n_participants, n_sessions)
    kn = _make_knobs(knobs)
    rng = np.random.default_rng(seed)
    arr = _simulate_arrays(n, S, rng, kn)
    sessions, participants, truth = _tables(arr, n, S)
    return Trial(
        sessions=sessions,
        participants=participants,
        truth=truth,
        source=f"simulated (seed={seed})",
        meta={
            "seed": seed,
            "n_sessions": S,
            "n_participants": n,
            "knobs": dataclasses.asdict(kn),
        },
    )


def describe_model(knobs: dict) -> str:
    """The generative model in brief (Markdown), with the knobs' values of a run.

    The full, numbered description is the module docstring and ``docs/simulation.md``.

    >>> describe_model(dataclasses.asdict(default_knobs())).splitlines()[2][:40]
    '3. **Alliance** (CALPAS-P, 1-7): a perso'
    """
    k = knobs
    return "\n".join([
        f"1. **Demographics** drawn to the paper's figures: {100 * k['p_female']:.1f}% female, "
        f"{100 * k['p_caucasian']:.0f}% Caucasian, age {k['age_mean']:g} ± {k['age_sd']:g} within "
        f"{k['age_min']:g}–{k['age_max']:g}; co-occurring MDD and childhood-abuse history independent of the "
        "alliance pattern (the paper found no association).",
        f"2. **True alliance pattern**: repaired with probability {k['p_repaired']:g}, unrepaired "
        f"{k['p_unrepaired']:g}, else no rupture; ruptures {k['rupture_weight_imaginal']:g} times as likely "
        "once imaginal exposure starts (session 2 or 3).",
        f"3. **Alliance** (CALPAS-P, 1-7): a person level ({k['alliance_mean']:g} ± {k['alliance_sd']:g}) and "
        f"slope, session noise (SD {k['alliance_noise_sd']:g}); a rupture is a drop of about "
        f"{k['rupture_drop_mean']:g} points (SD {k['rupture_drop_sd']:g}), repaired (back above the pre-rupture "
        f"level within 1–{k['repair_sessions_max']} sessions) or unrepaired (stays down).",
        "4. **Symptoms** (PSS-SR, PSS-I 0-51; BDI 0-63): pre-treatment severity, improvement with each attended "
        "session; after an unrepaired rupture improvement reverses, sized so that the standardised β of "
        "unrepaired rupture on post-treatment PTSD is about .45 (`docs/calibration.md`).",
        f"5. **Missing data**: dropout after each session with probability {k['dropout_hazard']:g}, missed "
        f"sessions {k['p_missed_session']:g}; about 82 of 116 clients keep ≥ 6 alliance ratings (the paper's "
        "χ² N).",
    ])
