"""Plain-Python loop references of the rupture detection (one participant, one interval at a
time, as the written rules read): the independent oracle of ``helpers.episodes`` and
``helpers.sudden`` in the property tests, of the power study's reference replication
(:mod:`oracles.power`) and the loop side of ``benchmarks/bench_ruptures.py``.

They share no code with the vectorised modules; the t quantiles come from scipy.stats.
"""

from __future__ import annotations

import itertools
import math

import pandas as pd
from scipy import stats

from helpers.contract import INSUFFICIENT

EPS = 1e-9  # same rounding slack as the documented rule of detect_episodes


# --------------------------------------------------------------------------------------------
# Reference implementations: one participant at a time, plain Python
# --------------------------------------------------------------------------------------------
def _mean(xs):
    return sum(xs) / len(xs)


def _sd(xs):
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _isnan(x):
    return x is None or (isinstance(x, float) and math.isnan(x))


def _series_by_participant(sessions, id_col, session_col, score_col, engine="lists"):
    """{participant: [(session, score or nan), ...] sorted by session}, ids sorted.

    ``engine="groupby"`` is the idiomatic pandas loop (``for pid, g in df.groupby(...)``);
    ``"lists"`` the lean one (sort plain tuples, ``itertools.groupby``).
    """
    if engine == "groupby":
        out = {}
        for pid, g in sessions.groupby(id_col, sort=True):
            g = g.sort_values(session_col)
            out[pid] = [(int(s), float(a)) for s, a in zip(g[session_col], g[score_col])]
        return out
    rows = sorted(
        zip(sessions[id_col].tolist(), sessions[session_col].tolist(),
            sessions[score_col].tolist()),
        key=lambda t: (t[0], t[1]),
    )
    out = {}
    for pid, grp in itertools.groupby(rows, key=lambda t: t[0]):
        out[pid] = [(int(s), float(a)) for _, s, a in grp]
    return out


def _check_interval(pre_vals, post_vals, *, sign, cutoff, pct, crit3, crit3_adjust,
                    crit3_alpha, crit3_critical_value):
    """One interval by suddengains' rules; pre_vals = (n-2, n-1, n), post_vals = (n+1..n+3)."""
    pre, post = pre_vals[-1], post_vals[0]
    if cutoff is not None:
        if _isnan(pre) or _isnan(post) or not sign * (pre - post) >= cutoff:
            return False
    if pct is not None:
        if _isnan(pre) or _isnan(post) or not sign * (pre - post) >= pct * pre:
            return False
    if crit3:
        a = [x for x in pre_vals if not _isnan(x)]
        b = [x for x in post_vals if not _isnan(x)]
        if len(a) < 2 or len(b) < 2:
            return False
        dfree = len(a) + len(b) - 2
        cv = abs(stats.t.ppf(crit3_alpha / 2, dfree)) if crit3_adjust else crit3_critical_value
        sp = math.sqrt(((len(a) - 1) * _sd(a) ** 2 + (len(b) - 1) * _sd(b) ** 2) / dfree)
        if not sign * (_mean(a) - _mean(b)) > cv * sp:
            return False
    return True


def loop_sudden_changes(scores_wide, *, direction="decrease", cutoff, pct=0.25, crit3=True,
                        crit3_adjust=True, crit3_alpha=0.05, crit3_critical_value=2.776,
                        engine="lists"):
    """Per-participant loop version of :func:`helpers.sudden.sudden_changes`.

    ``engine="iterrows"`` walks the rows with ``DataFrame.iterrows`` (the idiomatic pandas
    loop); ``"lists"`` converts the table to plain lists first.
    """
    sign = 1 if direction == "decrease" else -1
    labels = list(scores_wide.columns)
    T = len(labels)
    out = []
    if engine == "iterrows":
        pairs = ((pid, row.astype(float).tolist()) for pid, row in scores_wide.iterrows())
    else:
        pairs = zip(scores_wide.index, scores_wide.to_numpy(dtype=float).tolist())
    for pid, row in pairs:
        for i in range(1, T - 2):  # pre column: 2nd .. (T-2)th, as suddengains
            pre_vals = [row[j] if j >= 0 else math.nan for j in (i - 2, i - 1, i)]
            post_vals = [row[j] if j < T else math.nan for j in (i + 1, i + 2, i + 3)]
            if not _check_interval(pre_vals, post_vals, sign=sign, cutoff=cutoff, pct=pct,
                                   crit3=crit3, crit3_adjust=crit3_adjust,
                                   crit3_alpha=crit3_alpha,
                                   crit3_critical_value=crit3_critical_value):
                continue
            pre, post = row[i], row[i + 1]
            midpoint = post + (pre - post) / 2
            later = [x for x in row[i + 3:] if not _isnan(x)]
            rev = any((x > midpoint) if sign > 0 else (x < midpoint) for x in later)
            out.append({"participant_id": pid, "pre_session": labels[i],
                        "post_session": labels[i + 1], "pre_score": pre, "post_score": post,
                        "magnitude": sign * (pre - post), "reversed": rev})
    return pd.DataFrame(out, columns=["participant_id", "pre_session", "post_session",
                                      "pre_score", "post_score", "magnitude", "reversed"])


def loop_detect_episodes(sessions, *, criterion="rci", cutoff=1.0, k=2.0, scale="stricter",
                         reliability=0.83, sd=None, repair_window=None, tolerance=0.0,
                         id_col="participant_id", session_col="session", score_col="alliance",
                         engine="lists", **sudden_kwargs):
    """Per-participant loop version of :func:`helpers.episodes.detect_episodes`.

    ``engine``: how participants are split, ``"groupby"`` (pandas) or ``"lists"``.
    """
    series = _series_by_participant(sessions, id_col, session_col, score_col, engine)
    observed = {p: [(s, a) for s, a in ser if not math.isnan(a)] for p, ser in series.items()}

    def rci():
        if sd is not None:
            return 1.96 * sd * math.sqrt(2 * (1 - reliability))
        firsts = [obs[0][1] for obs in observed.values() if obs]
        return 1.96 * _sd(firsts) * math.sqrt(2 * (1 - reliability))

    # rupture candidates: list of (pid, pre_session, rupture_session, pre, post, threshold)
    cands = []
    if criterion == "sudden":
        opts = {"pct": 0.25, "crit3": True, "crit3_adjust": True, "crit3_alpha": 0.05,
                "crit3_critical_value": 2.776, **sudden_kwargs}
        labels = sorted({s for ser in series.values() for s, _ in ser})
        wide = pd.DataFrame(
            [[dict(ser).get(s, math.nan) for s in labels] for ser in series.values()],
            index=list(series), columns=labels, dtype=float)
        thr = rci()
        sc = loop_sudden_changes(wide, cutoff=thr, **opts)
        for row in sc.itertuples(index=False):
            cands.append((row.participant_id, row.pre_session, row.post_session, row.pre_score,
                          row.post_score, thr))
    else:
        between = None
        if criterion == "sd":
            changes = [b[1] - a[1] for obs in observed.values() for a, b in zip(obs, obs[1:])]
            between = _sd(changes) if len(changes) >= 2 else math.nan
        global_thr = cutoff if criterion == "absolute" else (rci() if criterion == "rci" else None)
        for pid, obs in observed.items():
            if criterion == "sd":
                within = _sd([a for _, a in obs]) if len(obs) >= 2 else math.nan
                base = {"within": within, "between": between,
                        "stricter": math.nan if math.isnan(within) or math.isnan(between)
                        else max(within, between)}
                thr = k * base[scale]
            else:
                thr = global_thr
            for (s0, a0), (s1, a1) in zip(obs, obs[1:]):
                drop = a0 - a1
                if drop > 0 and drop >= thr - EPS:
                    cands.append((pid, s0, s1, a0, a1, thr))

    rows = []
    for pid, s0, s1, a0, a1, thr in cands:
        repair, seen = None, False
        for s, a in observed[pid]:
            if s <= s1:
                continue
            if repair_window is not None and s - s1 > repair_window:
                break
            seen = True
            if a >= a0 - tolerance - EPS:
                repair = s
                break
        rows.append({"participant_id": pid, "pre_session": s0, "rupture_session": s1,
                     "pre_score": a0, "rupture_score": a1, "drop": a0 - a1, "threshold": thr,
                     "repaired": repair is not None, "repair_session": repair,
                     "censored": repair is None and not seen})
    cols = ["participant_id", "pre_session", "rupture_session", "pre_score", "rupture_score",
            "drop", "threshold", "repaired", "repair_session", "censored"]
    return pd.DataFrame(rows, columns=cols)


def loop_classify(episodes, sessions, *, min_sessions=6, id_col="participant_id", score_col="alliance"):
    """Pattern per participant (sorted ids) from :func:`loop_detect_episodes`' table, by the
    written rule: too few observed scores -> insufficient data; any rupture not repaired ->
    unrepaired; ruptures, all repaired -> repaired; none -> no rupture."""
    repaired = {}
    for pid, rep in zip(episodes["participant_id"].tolist(), episodes["repaired"].tolist()):
        repaired.setdefault(pid, []).append(bool(rep))
    n_observed = sessions.groupby(id_col, sort=True)[score_col].count()
    out = {}
    for pid, n_obs in n_observed.items():
        flags = repaired.get(pid, [])
        if n_obs < min_sessions:
            out[pid] = INSUFFICIENT
        elif not all(flags):
            out[pid] = "unrepaired"
        elif flags:
            out[pid] = "repaired"
        else:
            out[pid] = "no_rupture"
    return pd.Series(out, dtype=object)
