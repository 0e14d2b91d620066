"""The replication report: one row per target of the paper, with its kind and the rule that judges it.

Each row holds the paper's value, this run's estimate with its 95% CI and N, the 95% *prediction
interval* in which a replication of this size would fall if both studies estimated the same
quantity (Patil, Peng & Leek, 2016; :mod:`helpers.consistency`), the row's kind and the verdict.

Kinds (stated before any number is computed):

* **design** -- fixed by the study (N): equal, or "different design" on another trial;
* **calibrated** -- the simulator was tuned to it (the sample's demographics, the pattern
  prevalences and the β; ``helpers.simulate.Knobs``, ``docs/calibration.md``): on the
  replication's own simulated trial its agreement is guaranteed, so it is shown as "reproduced by
  construction" and never counted as consistent;
* **test** -- everything else, and every row on another trial: consistent when this run's
  estimate lies inside the prediction interval;
* **model-based** -- the pattern model's β (:func:`helpers.pattern_model.unrepaired_effect`):
  an estimate of the effect of the *true* pattern, with the classification's uncertainty
  carried by multiple imputation. The paper's β = .44 is an estimate of the effect of the
  *detected* pattern, which misclassification attenuates, so the two are not the same quantity:
  the row is shown, never judged against the paper and never counted in the headline.

The rules by estimate: a percentage, a mean or an SD against the interval from the paper's value
and both Ns; a χ² test by its effect size, Cramér's V, against the interval simulated from the
paper's χ² and N (not by both p values being ≥ .05); the β of an unrepaired rupture with this
run's heteroscedasticity-consistent (HC3) standard error against the interval from the paper's
β = .44 and the SE its p = .001 implies.

Also: the table formatted for a reader (APA numbers, the verdicts highlighted), the README's
results section (written between markers from the last default run, never by hand). The static
HTML page of the executed report notebook is made by :func:`helpers.notebook.export_html`.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special

from helpers import available, describe, models, multiverse, paper, paths
from helpers.contract import INSUFFICIENT
from helpers.markup import escape_markdown
from helpers.table_io import atomic_write_text

#: Columns of the replication table (:func:`replication_table`): one row per target of the paper.
REPORT_COLUMNS = ["quantity", "kind", "paper", "estimate", "ci_low", "ci_high", "n", "p", "statistic",
                  "pi_low", "pi_high", "rule", "verdict"]
README_START = "<!-- results:start (written by the default run: helpers.report; do not edit) -->"
README_END = "<!-- results:end -->"

#: The kinds of target (see the module docstring).
KINDS = ("design", "calibrated", "test", "model-based")
#: The verdict of a model-based row: shown beside the paper, not compared with it.
NOT_COMPARABLE = "not comparable: an estimate of the true-pattern effect"
#: Targets the simulator was tuned to: the knobs of helpers.simulate drawn to the paper's sample,
#: the pattern probabilities and the unrepaired effect calibrated by helpers.calibration.
CALIBRATED = ("female", "caucasian", "age_mean", "age_sd", "any_rupture", "repaired", "unrepaired",
              "no_rupture", "beta")
CONSTRUCTION = "reproduced by construction"

RULES = {
    "equal": "equal (fixed by design)",
    "proportion": "inside the 95% prediction interval from the paper's % and both Ns",
    "mean": "inside the 95% prediction interval from the paper's mean and SD and both Ns",
    "sd": "inside the 95% prediction interval from the paper's SD and both Ns (log scale)",
    "chi2": "Cramér's V inside the 95% prediction interval from the paper's χ² and N",
    "beta": "β (HC3) inside the 95% prediction interval from the paper's β and the SE its p implies",
    "true_pattern": ("not judged: it estimates the effect of the true pattern (the pattern model, multiple "
                     "imputation); the paper's β estimates the effect of the detected pattern"),
}


# ----------------------------------------------------------------------------- the table
def sd_ci(values, level=0.95) -> tuple[float, float, float, int]:
    """SD with its chi-square confidence interval (normal theory)."""
    x = pd.to_numeric(pd.Series(values), errors="coerce").dropna().to_numpy(float)
    n = len(x)
    if n < 2:
        return (np.nan, np.nan, np.nan, n)
    sd = x.std(ddof=1)
    a = (1 - level) / 2
    # stats.chi2.ppf(q, df) is 2 * gammaincinv(df / 2, q), to the bit
    lo = sd * np.sqrt((n - 1) / (2 * special.gammaincinv((n - 1) / 2, 1 - a)))
    hi = sd * np.sqrt((n - 1) / (2 * special.gammaincinv((n - 1) / 2, a)))
    return (float(sd), float(lo), float(hi), n)


def cramers_v_ci(patterns, participants, by, *, n_boot=2000, seed=20131106, level=0.95,
                 exclude=(INSUFFICIENT,)) -> tuple[float, float]:
    """Percentile bootstrap CI of Cramer's V of pattern x ``by`` (resampling clients).

    Resampling n clients with replacement and cross-tabulating them gives a table of cell
    counts that is multinomial(n, observed cell proportions): the bootstrap tables are drawn
    as that directly -- the same bootstrap distribution, in memory and time that grow with
    ``n_boot`` x cells, not with the number of clients (a registry of 100,000 clients costs
    what 81 do). Counts are 64-bit integers: no fixed-width type that a large N can overflow.
    """
    # the same classifiable clients x `by` table that models.pattern_chi2 tests
    d = models.pattern_by(patterns, participants, by, "pattern", exclude).dropna()
    observed = pd.crosstab(d["pattern"], d[by].astype(str)).to_numpy(dtype=np.int64)
    n = int(observed.sum())
    r, c = observed.shape if n else (0, 0)
    if r < 2 or c < 2:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, observed.ravel() / n, size=n_boot).reshape(n_boot, r, c)
    expected = counts.sum(2, keepdims=True) * counts.sum(1, keepdims=True) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = np.nansum(np.where(expected > 0, (counts - expected) ** 2 / expected, 0.0), axis=(1, 2))
    v = np.sqrt(chi2 / (n * (min(r, c) - 1)))
    a = (1 - level) / 2
    return (float(np.quantile(v, a)), float(np.quantile(v, 1 - a)))


def _verdict(kind, inside, same_design, calibrated):
    if kind == "design":
        return ("consistent" if inside else "not consistent") if same_design else "different design"
    if kind == "calibrated" and calibrated:
        return CONSTRUCTION
    return "consistent" if inside else "not consistent"


def replication_table(participants, patterns, chi2, regression_hc3, *, outcome="pss_i", same_design=True,
                      calibrated=None, outcome_name=None, propagated=None) -> pd.DataFrame:
    """One row per target of the paper, with its kind, prediction interval and verdict.

    Parameters
    ----------
    participants : DataFrame
        The contract's participants table.
    patterns : DataFrame
        participant_id, pattern (from notebook 02).
    chi2 : DataFrame
        :func:`helpers.available.chi2_by` rows for ``by`` = mdd and child_abuse.
    regression_hc3 : DataFrame
        :func:`helpers.models.outcome_regression` with ``cov_type="HC3"``: the β is judged with
        heteroscedasticity-consistent SEs (the simulation study of notebook 05 shows the classical
        OLS interval under-covers when the unrepaired clients' outcomes vary more).
    outcome : str
        Which outcome's model-A β is compared with the paper's.
    same_design : bool
        False for another trial: the paper's design facts (N = 116) are then "different design".
    calibrated : bool, optional
        Whether the data are the replication's own simulated trial, whose simulator was tuned to
        the :data:`CALIBRATED` targets (default: ``same_design``).
    outcome_name : str, optional
        The outcome instrument's name in the β row (e.g. "PCL-5"; the run specification's
        ``outcome["name"]``); "PTSD" when the data have no outcome.
    propagated : Series, optional
        The pattern model's β (the ``pattern model`` row of
        :func:`helpers.multiverse.beta_sensitivity`: beta, beta_ci_low, beta_ci_high, b, se,
        df, p, n, fmi, expected_n_unrepaired, se_type): one more row, of kind ``model-based``,
        verdict :data:`NOT_COMPARABLE`, no prediction interval -- never counted.

    Returns
    -------
    DataFrame
        :data:`REPORT_COLUMNS`; ``pi_low``/``pi_high`` the 95% prediction interval of the row's
        estimate (for the χ² rows, of Cramér's V).

    Notes
    -----
    What the data cannot give is said in the verdict: a measure the data lack ("not
    available: no `mdd` column in the data"), a test that cannot run ("not estimable: ...").

    References
    ----------
    Patil, P., Peng, R. D., & Leek, J. T. (2016). Perspectives on Psychological Science, 11(4),
    539-544.
    """
    from helpers import consistency  # scipy.stats (0.5 s): loaded for the replication table only
    calibrated = same_design if calibrated is None else calibrated
    sample = describe.demographics_table(participants).set_index("quantity")
    prev = describe.prevalence_table(patterns).set_index("quantity")
    rows = []

    def add(quantity, key, kind, paper_value, est, lo, hi, n, rule, pi=(np.nan, np.nan), p=np.nan,
            statistic="", verdict=None):
        if kind == "calibrated" and key not in CALIBRATED:
            raise ValueError(f"{key!r} is not a calibrated target")
        inside = bool(pi[0] <= est <= pi[1]) if rule != "equal" else paper_value == est
        rows.append([quantity, kind, paper_value, est, lo, hi, n, p, statistic, pi[0], pi[1], RULES[rule],
                     verdict or ("not estimable" if pd.isna(est) else _verdict(kind, inside, same_design, calibrated))])

    n_all = len(participants)
    add("N (PE clients)", "N", "design", paper.SAMPLE["N"], n_all, np.nan, np.nan, n_all, "equal")
    n_paper = paper.SAMPLE["N"]
    for label, key, row in (("female (%)", "female", "female"), ("Caucasian (%)", "caucasian", "Caucasian")):
        r = sample.loc[row]
        missing = None if available.has_column(participants, key) else available.not_available(key)
        pct = paper.SAMPLE[f"{key}_pct"]
        add(label, key, "calibrated" if calibrated else "test", pct, r["estimate"], r["ci_low"], r["ci_high"],
            r["n"], "proportion", consistency.proportion_pi(pct, n_paper, max(r["n"], 1)), verdict=missing)
    no_age = None if available.has_column(participants, "age") else available.not_available("age")
    r = sample.loc["age, mean"]
    add("age, mean (years)", "age_mean", "calibrated" if calibrated else "test", paper.SAMPLE["age_mean"],
        r["estimate"], r["ci_low"], r["ci_high"], r["n"], "mean",
        consistency.mean_pi(paper.SAMPLE["age_mean"], paper.SAMPLE["age_sd"], n_paper, max(r["n"], 1)),
        verdict=no_age)
    sd, lo, hi, n = sd_ci(participants["age"])
    add("age, SD (years)", "age_sd", "calibrated" if calibrated else "test", paper.SAMPLE["age_sd"], sd, lo, hi, n,
        "sd", consistency.sd_pi(paper.SAMPLE["age_sd"], n_paper, max(n, 2)), verdict=no_age)
    for label, key in (("any rupture (%)", "any_rupture"), ("repaired rupture (%)", "repaired"),
                       ("unrepaired rupture (%)", "unrepaired"), ("no rupture (%)", "no_rupture")):
        r = prev.loc[key]
        pct = paper.PATTERN_PCT[key]
        add(label, key, "calibrated" if calibrated else "test", pct, r["estimate"], r["ci_low"], r["ci_high"],
            r["n"], "proportion", consistency.proportion_pi(pct, paper.PATTERN_N, max(r["n"], 1)))
    for label, by in (("pattern x MDD: chi-square", "mdd"), ("pattern x childhood abuse: chi-square", "child_abuse")):
        r = chi2.set_index("by").loc[by]
        target = paper.CHI2[by]
        if isinstance(r.get("note"), str) and r["note"]:  # helpers.available.chi2_by: the data cannot test it
            add(label, by, "test", target["chi2"], np.nan, np.nan, np.nan, 0, "chi2", verdict=r["note"])
            continue
        v_lo, v_hi = cramers_v_ci(patterns, participants, by)
        pi = consistency.cramers_v_pi(target["chi2"], target["n"], target["dof"], int(r["n"]))
        add(label, by, "test", target["chi2"], r["cramers_v"], v_lo, v_hi, r["n"], "chi2", pi, p=r["p"],
            statistic=f"chi2({int(r['dof'])}) = {r['chi2']:.2f}, p = {r['p']:.3f}; Cramer's V = "
                      f"{r['cramers_v']:.2f} (bootstrap 95% CI {v_lo:.2f} to {v_hi:.2f}); paper's V = "
                      f"{consistency.cramers_v(target['chi2'], target['n']):.2f}")
    label = f"unrepaired rupture -> post {outcome_name or 'PTSD'}: standardised beta"
    kind = "calibrated" if calibrated else "test"
    terms = regression_hc3[(regression_hc3["outcome"] == outcome) & (regression_hc3["model"] == "A")
                           & (regression_hc3["term"] == "unrepaired")] if len(regression_hc3) else regression_hc3
    if regression_hc3.empty:
        add(label, "beta", kind, paper.BETA["beta"], np.nan, np.nan, np.nan, 0, "beta",
            verdict="not available: no outcome with pre- and post-treatment scores in the data")
    elif terms.empty:
        add(label, "beta", kind, paper.BETA["beta"], np.nan, np.nan, np.nan, 0, "beta",
            verdict="not estimable: no classifiable client with an unrepaired rupture and pre/post scores")
    else:
        term = terms.iloc[0]
        se_run = (term["beta_ci_high"] - term["beta_ci_low"]) / (2 * consistency.Z95)
        se_paper = consistency.se_from_p(paper.BETA["beta"], paper.BETA["p"])
        add(label, "beta", kind, paper.BETA["beta"], term["beta"], term["beta_ci_low"], term["beta_ci_high"],
            term["n"], "beta", consistency.estimate_pi(paper.BETA["beta"], se_paper, se_run), p=term["p"],
            statistic=f"b = {term['b']:.2f} (HC3 SE {term['se']:.2f}), t({int(term['df'])}) = {term['t']:.2f}")
    if propagated is not None:
        r = propagated
        label = f"unrepaired rupture -> post {outcome_name or 'PTSD'}: standardised beta of the true pattern (pattern model)"
        estimable = pd.notna(r["beta"])
        rows.append([label, "model-based", np.nan, r["beta"], r["beta_ci_low"], r["beta_ci_high"],
                     int(r["n"]) if pd.notna(r["n"]) else 0, r["p"],
                     (f"b = {r['b']:.2f} (SE {r['se']:.2f}, {r['se_type']}), df = {r['df']:.1f}, fmi = {r['fmi']:.2f}, "
                      f"expected {r['expected_n_unrepaired']:.1f} unrepaired" if estimable else ""),
                     np.nan, np.nan, RULES["true_pattern"],
                     NOT_COMPARABLE if estimable else f"not estimable: {r.get('note') or 'no estimate'}"])
    out = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    out["n"] = out["n"].astype(int)
    return out


def headline(table: pd.DataFrame) -> str:
    """The count a reader sees first: tests only (calibrated and design rows are not evidence).

    >>> t = pd.DataFrame({"kind": ["design", "calibrated", "test", "test"],
    ...                   "verdict": ["consistent", CONSTRUCTION, "consistent", "not consistent"]})
    >>> headline(t)
    '1 of 2 tests consistent with the paper; 1 calibrated target reproduced by construction (not counted); 1 design fact equal'
    """
    tests = table[table["kind"] == "test"]
    judged = tests[tests["verdict"].isin(["consistent", "not consistent"])]
    parts = [f"{int((judged['verdict'] == 'consistent').sum())} of {len(judged)} tests consistent with the paper"]
    if len(judged) < len(tests):
        parts[0] += f" ({len(tests) - len(judged)} not available or not estimable)"
    n_cal = int((table["verdict"] == CONSTRUCTION).sum())
    if n_cal:
        parts.append(f"{n_cal} calibrated target{'s' if n_cal != 1 else ''} reproduced by construction (not counted)")
    n_model = int((table["kind"] == "model-based").sum())
    if n_model:
        parts.append(f"{n_model} model-based estimate{'s' if n_model != 1 else ''} of the true-pattern effect shown, "
                     "not comparable with the paper (not counted)")
    for verdict, says in (("consistent", "equal"), ("not consistent", "not equal"),
                          ("different design", "a different design")):
        n = int(((table["kind"] == "design") & (table["verdict"] == verdict)).sum())
        if n:
            parts.append(f"{n} design fact{'s' if n != 1 else ''} {says}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- formatting
def apa(x, digits: int = 2, *, bounded: bool = False) -> str:
    """A number as APA prints it: ``digits`` decimals, no leading zero for a value that cannot
    exceed 1 (``bounded``: p, r, β, V); empty for NaN.

    >>> apa(0.4357, bounded=True), apa(-0.23, bounded=True), apa(71.56, 1)
    ('.44', '-.23', '71.6')
    """
    if pd.isna(x):
        return ""
    text = f"{x:.{digits}f}"
    return re.sub(r"^(-?)0\.", r"\1.", text) if bounded else text


def apa_p(p) -> str:
    """``p = .037``, ``p < .001``.

    >>> apa_p(0.0371), apa_p(0.00007)
    ('p = .037', 'p < .001')
    """
    if pd.isna(p):
        return ""
    return "p < .001" if p < 0.001 else f"p = {apa(p, 3, bounded=True)}"


#: The shown table's columns, for a reader.
SHOWN_COLUMNS = ["target", "kind", "paper", "this run [95% CI]", "N", "95% prediction interval", "verdict"]


def format_replication_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table as a reader sees it: APA numbers, human labels, the prediction interval."""
    from helpers import consistency  # scipy.stats (0.5 s): loaded for the replication table only
    rows = []
    for _, r in table.iterrows():
        q = r["quantity"]
        is_beta, is_chi2, is_n = "beta" in q, "chi-square" in q, q.startswith("N ")
        digits, bounded = (2, True) if is_beta else (1, False)
        if r["kind"] == "model-based":
            paper_text = f"not comparable (the paper's {apa(paper.BETA['beta'], bounded=True)} is a detected-pattern β)"
            this = "" if pd.isna(r["estimate"]) else (
                f"{apa(r['estimate'], bounded=True)} [{apa(r['ci_low'], bounded=True)}, "
                f"{apa(r['ci_high'], bounded=True)}], {apa_p(r['p'])} (multiple imputation, HC3)")
        elif is_n:
            paper_text, this = str(int(r["paper"])), str(int(r["estimate"]))
        elif is_chi2:
            target = paper.CHI2["mdd" if "MDD" in q else "child_abuse"]
            paper_text = (f"χ²({target['dof']}) = {target['chi2']:.2f}, V = "
                          f"{apa(consistency.cramers_v(target['chi2'], target['n']), bounded=True)}")
            this = "" if pd.isna(r["estimate"]) else (
                f"{r['statistic'].split(',')[0].replace('chi2', 'χ²')}, {apa_p(r['p'])}; V = "
                f"{apa(r['estimate'], bounded=True)} [{apa(r['ci_low'], bounded=True)}, {apa(r['ci_high'], bounded=True)}]")
        else:
            paper_text = apa(r["paper"], digits, bounded=bounded) + (f" ({apa_p(paper.BETA['p'])})" if is_beta else "")
            this = apa(r["estimate"], digits, bounded=bounded)
            if this and pd.notna(r["ci_low"]):
                this += f" [{apa(r['ci_low'], digits, bounded=bounded)}, {apa(r['ci_high'], digits, bounded=bounded)}]"
            if this and is_beta:
                this += f", {apa_p(r['p'])} (HC3)"
        pi = "" if pd.isna(r["pi_low"]) else (
            ("V " if is_chi2 else "") + f"{apa(r['pi_low'], 2 if is_chi2 else digits, bounded=is_chi2 or bounded)} to "
            f"{apa(r['pi_high'], 2 if is_chi2 else digits, bounded=is_chi2 or bounded)}")
        rows.append({"target": q.replace(" x ", " × ").replace(": chi-square", ": χ²").replace(" -> ", " → ")
                     .replace("standardised beta", "standardised β"),
                     "kind": r["kind"], "paper": paper_text, "this run [95% CI]": this, "N": int(r["n"]),
                     "95% prediction interval": pi, "verdict": r["verdict"]})
    return pd.DataFrame(rows, columns=SHOWN_COLUMNS)


#: Background of a verdict cell in the HTML table (Okabe-Ito based, readable in print).
VERDICT_STYLE = {"consistent": "background:#d9f0e6", "not consistent": "background:#fbd9c9;font-weight:bold",
                 CONSTRUCTION: "background:#eeeeee;font-style:italic",
                 NOT_COMPARABLE: "background:#eeeeee;font-style:italic"}


def replication_html(shown: pd.DataFrame) -> str:
    """The formatted table as HTML: every cell escaped (labels may hold a dataset's instrument
    names), the verdict highlighted by its kind."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown.columns)
    body = []
    for _, r in shown.iterrows():
        cells = []
        for c in shown.columns:
            style = VERDICT_STYLE.get(r[c], "background:#fff3c4") if c == "verdict" else ""
            attr = f' style="{style}"' if style else ""
            cells.append(f"<td{attr}>{html.escape(str(r[c]))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="replication"><thead><tr>{head}</tr></thead><tbody>' + "".join(body)
            + "</tbody></table>")


def markdown_table(df: pd.DataFrame, *, text_columns=("target",)) -> str:
    """GitHub markdown of a small text table; ``text_columns`` (labels that may hold a dataset's
    instrument names) shown as text, never as markup."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        cells = [escape_markdown(v) if c in text_columns else str(v) for c, v in zip(cols, row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- README
def readme_fragment(table: pd.DataFrame, *, simulated: bool, source: str, criterion: str) -> str:
    """The README's results section (markdown) from the replication table; ``source`` (the
    dataset's name) is shown as text, never as markup."""
    source = escape_markdown(source)
    kind = ("**simulated data** (the trial's raw data are not public): it shows that the pipeline and the "
            "generative model agree with the paper, not that the finding is true"
            if simulated else f"**real data** ({source})")
    return (
        f"Data: {source}; rupture criterion `{criterion}`. These numbers come from {kind}. "
        f"{headline(table)}, under rules fixed before the numbers (`helpers.report`; a test is consistent "
        "when this run's estimate lies inside the 95% prediction interval a replication of its size would "
        "fall in, Patil, Peng & Leek, 2016).\n\n"
        + markdown_table(format_replication_table(table)) + "\n"
    )


def update_readme(fragment: str, readme=None) -> bool:
    """Replace the text between the README's result markers with ``fragment``.

    Returns True when the README changed. Raises ValueError when the markers are missing,
    rather than appending somewhere unexpected.
    """
    readme = Path(readme or paths.ROOT / "README.md")
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        raise ValueError(f"{readme}: results markers not found ({README_START!r} ... {README_END!r})")
    new = pattern.sub(lambda _: f"{README_START}\n{fragment.rstrip()}\n{README_END}", text)
    if new != text:
        atomic_write_text(readme, new)
    return new != text


# ----------------------------------------------------------------------------- the rest of the report
SENSITIVITY_COLUMNS = ["criterion", "no rupture (%)", "repaired (%)", "unrepaired (%)", "any rupture (%)",
                       "β [95% CI]", "p", "N analysed (unrepaired)"]


def format_sensitivity(prevalence: pd.DataFrame, betas: pd.DataFrame, order, *, default: str) -> pd.DataFrame:
    """The multiverse as a reader sees it: per criterion (in ``order``; the run's own marked),
    the prevalence of each pattern and the paper's β with its CI, p and the analysed N.

    ``prevalence``: ``prevalence_by_criterion.csv``; ``betas``: ``beta_by_criterion.csv``.
    """
    prev = prevalence.pivot(index="preset", columns="quantity", values="estimate")
    b = betas.set_index("preset")
    model = list(b.index[b["estimand"] == multiverse.TRUE]) if "estimand" in b.columns else []
    rows = []
    for name in [*order, *(m for m in model if m not in order)]:
        r = b.loc[name]
        beta = ("" if pd.isna(r["beta"]) else
                f"{apa(r['beta'], bounded=True)} [{apa(r['beta_ci_low'], bounded=True)}, "
                f"{apa(r['beta_ci_high'], bounded=True)}]")
        if name in model:  # a true-pattern estimate: the expected unrepaired count, never a detected one
            n = "" if pd.isna(r["n"]) else f"{int(r['n'])} (expected {r['expected_n_unrepaired']:.1f})"
            name_shown = f"{name} (true-pattern β: multiple imputation, HC3)"
        else:
            n = "" if pd.isna(r["n"]) else f"{int(r['n'])} ({int(r['n_unrepaired_analysed'])})"
            name_shown = name + (" (this run)" if name == default and "this run" not in name else "")
        rows.append([name_shown,
                     *(apa(prev.loc[name, q], 1) for q in ("no_rupture", "repaired", "unrepaired", "any_rupture")),
                     beta or (r["note"] if isinstance(r["note"], str) else ""), apa_p(r["p"]), n])
    return pd.DataFrame(rows, columns=SENSITIVITY_COLUMNS)


def growth_anova_reading(lrt: pd.DataFrame, fixed: pd.DataFrame, anova: pd.DataFrame, *, symptoms: str) -> str:
    """One paragraph that reads the growth model's session × pattern interaction and the pre/post
    mixed ANOVA's pattern × time interaction together (Markdown; numbers from the tables of
    notebook 03). They can disagree, and why matters: the ANOVA compares the two end points of
    the clients with both; the growth model fits one straight line per client through every
    observed session, which averages a course that changes part-way (a rupture that stops or
    reverses improvement) over the whole treatment."""
    name = escape_markdown(symptoms)
    if lrt is None or lrt.empty or anova is None or "Source" not in anova.columns:
        return (f"*The growth model and the mixed ANOVA* need session-by-session and pre/post {name} scores; "
                "one or both are not available on these data (notebook 03 says which).")
    full = lrt[lrt["model"] == "full"].iloc[0]
    inter = anova[anova["Source"] == "Interaction"].iloc[0]
    slope = fixed.set_index("term").loc["time:unrepaired"] if "time:unrepaired" in set(fixed["term"]) else None
    g_sig, a_sig = full["p"] < 0.05, inter["p_unc"] < 0.05
    growth = (f"the growth model of every session's rating {'finds' if g_sig else 'does not find'} different slopes "
              f"by pattern (session × pattern, likelihood ratio χ²({int(full['df'])}) = {full['chi2']:.2f}, "
              f"{apa_p(full['p'])}; N = {int(full['n_groups'])} clients, {int(full['n_obs'])} ratings")
    if slope is not None:
        growth += (f"; unrepaired vs no rupture b = {slope['estimate']:.2f} points per session, 95% CI "
                   f"[{slope['ci_low']:.2f}, {slope['ci_high']:.2f}]")
    growth += ")"
    ancova = (f"the pre/post mixed ANOVA {'finds' if a_sig else 'does not find'} that the change from pre- to "
              f"post-treatment differed by pattern (pattern × time F({int(inter['DF1'])}, {int(inter['DF2'])}) = "
              f"{inter['F']:.2f}, {apa_p(inter['p_unc'])}, partial η² = {apa(inter['np2'], bounded=True)}; N = "
              f"{int(inter['n'])} clients with both scores)")
    if g_sig == a_sig:
        verdict = ("The two agree." if g_sig else
                   "Neither finds a difference in change between the patterns on these data.")
    else:
        verdict = (
            "They answer different questions, so they can disagree without contradiction: the ANOVA compares the "
            "two end points of the clients who have both; the growth model draws one straight line per client "
            "through every observed session (dropouts included). An unrepaired rupture changes the course part-way "
            "— improvement stops or reverses after it — and a single slope averages that over the whole treatment, "
            "so the interaction test has less power for it (notebook 05 gives its power in simulated trials). A "
            "non-significant interaction is therefore not evidence against the end-point difference, nor the "
            "end-point difference evidence of different slopes.")
    return (f"**{name}, read two ways.** In this run {ancova}, while {growth}. {verdict}")


# ----------------------------------------------------------------------------- the pattern model
#: Columns of :func:`format_min_drop`, for a reader.
MIN_DROP_COLUMNS = ["min_drop (× default)", "smallest drop", "expected unrepaired (%)", "most probable: unrepaired",
                    "true-pattern β", "b [95% CI]", "fmi"]


def format_min_drop(table: pd.DataFrame, *, points) -> pd.DataFrame:
    """:func:`helpers.pattern_model.min_drop_sensitivity` as a reader sees it: per multiple of
    the default smallest drop, that drop (``points`` formats it in the alliance instrument's
    points, ``Instrument.points``), the expected and the most probable unrepaired share, and --
    when the table has them -- the true-pattern β with b's 95% CI (outcome points) and fmi."""
    effect = "beta" in table.columns
    rows = []
    for _, r in table.iterrows():
        rows.append([f"{r['multiple']:g}", points(r["min_drop"]), apa(r["pct_unrepaired"], 1),
                     f"{int(r['n_unrepaired'])} of {int(r['n_classifiable'])}",
                     apa(r["beta"], bounded=True) if effect else "",
                     f"{r['b']:.1f} [{r['ci_low']:.1f}, {r['ci_high']:.1f}]" if effect and pd.notna(r["b"]) else "",
                     apa(r["fmi"], bounded=True) if effect else ""])
    return pd.DataFrame(rows, columns=MIN_DROP_COLUMNS)


#: The agreement of a model-based and a threshold definition of the patterns on a real trial
#: (57 clients with generalised anxiety disorder, 15 working-alliance ratings; issue 18).
REAL_TRIAL_KAPPA = 0.23


def pattern_model_reading(agreement: pd.DataFrame, *, criterion: str, alliance: str, simulated: bool,
                          repair_max: int) -> str:
    """What the pattern model assumes, how far it agrees with the threshold criterion in this
    run, and what neither definition has been validated against (Markdown; ``agreement``:
    :func:`helpers.agreement.definitions_agreement`'s table; ``repair_max``: the model's
    slowest repair, in sessions)."""
    rows = agreement.set_index("comparison")
    vs = rows.loc[f"model vs {criterion}"]
    name = escape_markdown(alliance)
    text = [
        f"**What the pattern model assumes.** At most the templates it has: no rupture; one repaired episode "
        f"(a drop that climbs back linearly to the client's line within {repair_max} sessions); one unrepaired "
        f"episode (a step that stays); or a repaired episode followed by a second one. Anything else — a partial "
        f"recovery, a drop spread over sessions, a third episode, a repair slower than {repair_max} sessions — is "
        f"forced into the nearest "
        f"template. A person-level straight line with independent normal noise; **no ceiling model** ({name} ratings "
        f"at the scale's bounds are treated as exact, so a client at the ceiling looks steadier than they are); "
        f"missingness ignorable given the template; and its **hyperparameters treated as known**: estimated once, "
        f"then fixed, in the probabilities and in the imputations of the β, so their uncertainty is not in any "
        f"interval shown.",
        f"**Model and threshold can disagree.** In this run the model's most probable patterns agree with "
        f"`{criterion}`'s at κ = {apa(vs['kappa'], bounded=True)} (95% CI {apa(vs['kappa_ci_low'], bounded=True)} to "
        f"{apa(vs['kappa_ci_high'], bounded=True)}; N = {int(vs['n'])} clients both classify). "
        + ("On simulated data the model agrees with the truth better than the thresholds do — but that is its "
           "home ground: the simulator draws series from nearly the model's own assumptions, so its advantage there "
           "is an upper bound. " if simulated else "")
        + f"On a real trial (57 clients with generalised anxiety disorder, 15 working-alliance ratings) a model-based "
          f"and a threshold definition agreed at κ ≈ {apa(REAL_TRIAL_KAPPA, bounded=True)} only: on real data the two "
          "can disagree widely, and which is closer to what a clinician would call a rupture is unknown.",
        "**Neither is validated.** Neither the model-based nor any threshold definition has been validated against "
        "observer-rated ruptures (e.g. the Rupture Resolution Rating System; Eubanks, Muran & Safran): a rupture "
        "here is a statistical event in client-rated alliance scores, not an observed therapeutic event. Results "
        "should be read under both definitions, with the sensitivity to the smallest drop that counts (below).",
    ]
    return "\n\n".join(text)


def beta_sensitivity_reading(table: pd.DataFrame, *, measure: str, criterion: str, n_censored: int) -> str:
    """Notebook 03's sensitivity rows in words (Markdown; ``table``:
    :func:`helpers.multiverse.beta_sensitivity`, ``n_censored``: the classifiable clients
    unrepaired through censored ruptures only). HC3 intervals throughout (the simulation study's
    recommendation); the model's β is said to estimate another quantity."""
    rows = table.set_index(["analysis", "se_type"])
    name = escape_markdown(measure)

    def beta(r) -> str:
        if pd.isna(r["beta"]):
            return f"not estimable ({r['note']})"
        count = (f"{int(r['n_unrepaired_analysed'])} unrepaired" if pd.notna(r["n_unrepaired_analysed"]) else
                 f"fmi = {apa(r['fmi'], bounded=True)}, {r['expected_n_unrepaired']:.1f} unrepaired expected")
        return (f"β = {apa(r['beta'], bounded=True)} (95% CI {apa(r['beta_ci_low'], bounded=True)} to "
                f"{apa(r['beta_ci_high'], bounded=True)}, {apa_p(r['p'])}; N = {int(r['n'])}, {count})")

    paper_row, excluded = rows.loc[("paper's test", "HC3")], rows.loc[("censored excluded", "HC3")]
    if n_censored == 0:
        text = (f"**Censored repairs.** No classifiable client is unrepaired under `{criterion}` only through a rupture "
                f"with no later rating: the paper's test, {beta(paper_row)} (HC3), needs no second reading.")
    else:
        n_out = int(excluded["n_excluded"])
        text = (f"**Censored repairs.** {n_censored} classifiable client{'s are' if n_censored != 1 else ' is'} "
                f"unrepaired under `{criterion}` only through a rupture with no later rating — a repair could not have "
                f"been seen; {n_out} of them {'has' if n_out == 1 else 'have'} pre and post {name} scores. Classed "
                f"unrepaired, as the paper would: {beta(paper_row)}. Excluded: {beta(excluded)}. (HC3 standard errors; "
                "the OLS rows are in the table.)")
    model = table[table["estimand"] == multiverse.TRUE]
    if len(model):
        text += ("\n\n**The patterns' uncertainty carried.** The pattern model's β, pooled over the imputations of the "
                 f"patterns: {beta(model.iloc[0])}. It estimates the effect of the pattern each client truly has (as "
                 "the model defines it), where a threshold's β estimates the effect of the pattern it detects, which "
                 "misclassification attenuates: it is not comparable with the paper's .44, itself a detected-pattern "
                 "estimate.")
    return text
