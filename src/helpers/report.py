"""The replication report: one row per target of the paper, with the rule that judges it.

Each row holds the paper's value, this run's estimate with its 95% CI and N, the rule used
to compare them (fixed before any number is seen) and the verdict. The rules:

* a **count** fixed by design (N) must be equal;
* a **proportion or mean** agrees when the paper's value lies inside this run's 95% CI;
* an **SD** agrees when the paper's SD lies inside the chi-square 95% CI of this run's SD;
* a **chi-square test** agrees when it reaches the paper's conclusion at alpha = .05 (the
  paper found no association: p = .26 and p = .75); its uncertainty is shown as a
  bootstrap 95% CI of Cramer's V;
* the **beta** of an unrepaired rupture agrees when it has the paper's sign, is significant at
  .05, and its 95% CI holds .45.

Also: the README's results section (written between markers from the last default run, never
by hand) and the self-contained HTML export of the report notebook.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import available, describe, models, paper, paths
from helpers.contract import INSUFFICIENT
from helpers.tables import atomic_write_text

#: Columns of the replication table (:func:`replication_table`): one row per target of the paper.
REPORT_COLUMNS = ["quantity", "paper", "estimate", "ci_low", "ci_high", "n", "p", "statistic",
                  "rule", "verdict"]
README_START = "<!-- results:start (written by the default run: helpers.report; do not edit) -->"
README_END = "<!-- results:end -->"

RULES = {
    "equal": "equal (fixed by design)",
    "in_ci": "paper's value inside this run's 95% CI",
    "sd_in_ci": "paper's SD inside this run's 95% CI of the SD (chi-square interval)",
    "chi2_ns": "same conclusion as the paper: no association (p >= .05)",
    "beta": "same sign, p < .05, and the 95% CI holds .45",
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
    from scipy import special  # chi-square quantiles without importing scipy.stats (0.5 s)

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
    d = models._pattern_by(patterns, participants, by, "pattern", exclude).dropna()
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


def _verdict(rule, paper_value, est, lo, hi, p=np.nan) -> str:
    if rule == "equal":
        ok = paper_value == est
    elif rule in ("in_ci", "sd_in_ci"):
        ok = lo <= paper_value <= hi
    elif rule == "chi2_ns":
        ok = p >= 0.05
    elif rule == "beta":
        ok = np.sign(est) == np.sign(paper_value) and p < 0.05 and lo <= paper_value <= hi
    else:
        raise ValueError(f"unknown rule {rule!r}")
    if any(pd.isna(v) for v in (est,)):
        return "not estimable"
    return "consistent" if ok else "not consistent"


def replication_table(participants, patterns, chi2, regression, *, outcome="pss_i",
                      same_design=True, outcome_name=None) -> pd.DataFrame:
    """One row per target of the paper (see the module docstring for the rules).

    Parameters
    ----------
    participants : DataFrame
        The contract's participants table.
    patterns : DataFrame
        participant_id, pattern (from notebook 02).
    chi2 : DataFrame
        :func:`helpers.models.pattern_chi2` rows for ``by`` = mdd and child_abuse.
    regression : DataFrame
        :func:`helpers.models.outcome_regression` output.
    outcome : str
        Which outcome's model-A beta is compared with the paper's.
    same_design : bool
        False for another trial: the paper's design facts (N = 116) are then "different
        design", not "not consistent".
    outcome_name : str, optional
        The outcome instrument's name in the β row (e.g. "PCL-5"); default from ``outcome``.

    Notes
    -----
    What the data cannot give is said in the verdict: a measure the data lack ("not
    available: no `mdd` column in the data"), a test that cannot run ("not estimable: ...").
    """
    sample = describe.sample_table(participants).set_index("quantity")
    prev = describe.prevalence_table(patterns).set_index("quantity")
    rows = []

    def add(quantity, paper_value, est, lo, hi, n, rule, p=np.nan, statistic="", verdict=None):
        rows.append([quantity, paper_value, est, lo, hi, n, p, statistic, RULES[rule],
                     verdict or _verdict(rule, paper_value, est, lo, hi, p)])

    add("N (PE clients)", paper.SAMPLE["N"], len(participants), np.nan, np.nan, len(participants), "equal",
        verdict=None if same_design else "different design")
    for label, key in (("female (%)", "female"), ("Caucasian (%)", "caucasian")):
        r = sample.loc["female" if key == "female" else "Caucasian"]
        add(label, paper.SAMPLE[f"{key}_pct"], r["estimate"], r["ci_low"], r["ci_high"], r["n"], "in_ci",
            verdict=None if available.has_column(participants, key) else available.not_available(key))
    r = sample.loc["age, mean"]
    no_age = None if available.has_column(participants, "age") else available.not_available("age")
    add("age, mean (years)", paper.SAMPLE["age_mean"], r["estimate"], r["ci_low"], r["ci_high"], r["n"], "in_ci",
        verdict=no_age)
    sd, lo, hi, n = sd_ci(participants["age"])
    add("age, SD (years)", paper.SAMPLE["age_sd"], sd, lo, hi, n, "sd_in_ci", verdict=no_age)
    for label, key in (("any rupture (%)", "any_rupture"), ("repaired rupture (%)", "repaired"),
                       ("unrepaired rupture (%)", "unrepaired"), ("no rupture (%)", "no_rupture")):
        r = prev.loc[key]
        add(label, paper.PATTERN_PCT[key], r["estimate"], r["ci_low"], r["ci_high"], r["n"], "in_ci")
    for label, by in (("pattern x MDD: chi-square", "mdd"), ("pattern x childhood abuse: chi-square", "child_abuse")):
        r = chi2.set_index("by").loc[by]
        if isinstance(r.get("note"), str) and r["note"]:  # helpers.available.chi2_by: the data cannot test it
            add(label, paper.CHI2[by]["chi2"], np.nan, np.nan, np.nan, 0, "chi2_ns", verdict=r["note"])
            continue
        v_lo, v_hi = cramers_v_ci(patterns, participants, by)
        add(label, paper.CHI2[by]["chi2"], r["chi2"], np.nan, np.nan, r["n"], "chi2_ns", p=r["p"],
            statistic=f"chi2({int(r['dof'])}) = {r['chi2']:.2f}, p = {r['p']:.3f}; Cramer's V = "
                      f"{r['cramers_v']:.2f} (bootstrap 95% CI {v_lo:.2f} to {v_hi:.2f})")
    terms = regression[(regression["outcome"] == outcome) & (regression["model"] == "A")
                       & (regression["term"] == "unrepaired")]
    label = f"unrepaired rupture -> post {outcome_name or outcome.replace('_', '-').upper()}: standardised beta"
    if regression.empty:
        add(label, paper.BETA["beta"], np.nan, np.nan, np.nan, 0, "beta",
            verdict="not available: no outcome with pre- and post-treatment scores in the data")
    elif terms.empty:
        add(label, paper.BETA["beta"], np.nan, np.nan, np.nan, 0, "beta",
            verdict="not estimable: no classifiable client with an unrepaired rupture and pre/post scores")
    else:
        term = terms.iloc[0]
        add(label, paper.BETA["beta"], term["beta"], term["beta_ci_low"], term["beta_ci_high"], term["n"], "beta",
            p=term["p"], statistic=f"b = {term['b']:.2f} (SE {term['se']:.2f}), t({int(term['df'])}) = {term['t']:.2f}")
    out = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    out["n"] = out["n"].astype(int)
    return out


def _fmt(x, digits=1):
    return "" if pd.isna(x) else f"{x:.{digits}f}"


def format_replication_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table as text, for display and for the README (fixed digits)."""
    rows = []
    for _, r in table.iterrows():
        is_beta = "beta" in r["quantity"]
        is_chi2 = "chi-square" in r["quantity"]
        digits = 2 if is_beta or is_chi2 else 1
        this = _fmt(r["estimate"], digits) if not r["quantity"].startswith("N ") else str(int(r["estimate"]))
        if (is_chi2 or is_beta) and pd.notna(r["p"]):
            this += f" (p = {r['p']:.3f})" if r["p"] >= 0.001 else " (p < .001)"
        ci = f"{_fmt(r['ci_low'], digits)} to {_fmt(r['ci_high'], digits)}" if pd.notna(r["ci_low"]) else ""
        if is_chi2 and r["statistic"]:
            ci = r["statistic"].split("; ")[1].replace("Cramer's V = ", "V = ")
        paper_value = _fmt(r["paper"], 2 if is_beta or is_chi2 else 1) if not r["quantity"].startswith("N ") \
            else str(int(r["paper"]))
        rows.append({"quantity": r["quantity"], "paper": paper_value, "this run": this, "95% CI": ci,
                     "N": int(r["n"]), "rule": r["rule"], "verdict": r["verdict"]})
    return pd.DataFrame(rows)


def markdown_table(df: pd.DataFrame) -> str:
    """GitHub markdown of a small text table (no extra dependency)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- README
def readme_fragment(table: pd.DataFrame, *, simulated: bool, source: str, criterion: str) -> str:
    """The README's results section (markdown) from the replication table."""
    kind = ("**simulated data** (the trial's raw data are not public): it shows that the pipeline and the "
            "generative model agree with the paper, not that the finding is true"
            if simulated else f"**real data** ({source})")
    n_ok = int((table["verdict"] == "consistent").sum())
    return (
        f"Data: {source}; rupture criterion `{criterion}`. These numbers come from {kind}. "
        f"{n_ok} of {len(table)} targets are consistent with the paper under the rules stated in each row "
        "(fixed before the numbers; see `helpers.report`).\n\n"
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


# ----------------------------------------------------------------------------- HTML
def export_html(notebook, out) -> Path:
    """Export an executed notebook to a self-contained static HTML page.

    Code is hidden, figures are embedded as data URIs, and nothing is loaded from the
    network: the MathJax and RequireJS script tags that nbconvert's template points at a CDN
    are removed (the report has no equations or widgets). The run's timing metadata is
    stripped first, so the page is byte-identical across runs of the same results.
    """
    import nbformat
    from nbconvert import HTMLExporter

    from helpers.notebook import normalise_executed

    nb = normalise_executed(nbformat.read(str(notebook), as_version=4))
    exporter = HTMLExporter(template_name="lab", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, embed_images=True)
    body, _ = exporter.from_notebook_node(nb)
    body = re.sub(r'<script[^>]+src="https?://[^"]*"[^>]*>\s*</script>', "", body)
    body = re.sub(r"<script[^>]*>\s*require\.config\(.*?</script>", "", body, flags=re.S)
    return atomic_write_text(out, body)
