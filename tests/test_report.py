"""The replication report: rules and verdicts, README splicing, the static HTML page (parsed,
and opened in a real browser)."""

import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers import notebook, paths, report

REPORT = paths.ROOT / "results" / "report.html"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# ----------------------------------------------------------------------------- rules
def test_sd_ci_matches_the_chi_square_interval():
    x = np.array([30.0, 41, 25, 38, 52, 33, 47, 29])
    sd, lo, hi, n = report.sd_ci(x)
    s, df = x.std(ddof=1), len(x) - 1
    assert (n, sd) == (8, pytest.approx(s))
    assert lo == pytest.approx(s * np.sqrt(df / stats.chi2.ppf(0.975, df)))
    assert hi == pytest.approx(s * np.sqrt(df / stats.chi2.ppf(0.025, df)))


def _tables(n=90, seed=1, effect=0.0):
    """patterns, participants, chi2 and HC3 regression tables of a small synthetic trial."""
    from helpers import available, models

    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(n)]
    pattern = rng.choice(["no_rupture", "repaired", "unrepaired"], n, p=[0.54, 0.28, 0.18])
    pre = rng.normal(30, 8, n)
    post = 0.6 * pre + effect * (pattern == "unrepaired") + rng.normal(0, 6, n)
    participants = pd.DataFrame({"participant_id": ids, "female": rng.random(n) < 0.76,
                                 "caucasian": rng.random(n) < 0.66, "age": rng.normal(36.7, 11.3, n),
                                 "mdd": rng.random(n) < 0.5, "child_abuse": rng.random(n) < 0.45,
                                 "pss_i_pre": pre, "pss_i_post": post})
    patterns = pd.DataFrame({"participant_id": ids, "pattern": pattern})
    chi2 = available.chi2_by(patterns, participants)
    regression = models.outcome_regression(patterns, participants, outcome="pss_i", cov_type="HC3", warn=False)
    return participants, patterns, chi2, regression


def test_on_the_replications_own_trial_calibrated_targets_are_never_counted():
    table = report.replication_table(*_tables(effect=10.0), same_design=True)
    kinds = table.set_index("quantity")["kind"]
    assert kinds["N (PE clients)"] == "design"
    assert (kinds.filter(like="chi-square") == "test").all()
    assert set(kinds[kinds == "calibrated"].index) >= {"female (%)", "unrepaired rupture (%)",
                                                       "unrepaired rupture -> post PTSD: standardised beta"}
    calibrated = table[table["kind"] == "calibrated"]
    assert (calibrated["verdict"] == report.CONSTRUCTION).all()
    tests = table[table["kind"] == "test"]
    assert report.headline(table).startswith(f"{int((tests['verdict'] == 'consistent').sum())} of 2 tests")
    assert "1 design fact not equal" in report.headline(table)  # 90 clients, not the paper's 116


def test_on_another_trial_every_row_is_a_test_or_a_different_design():
    table = report.replication_table(*_tables(effect=10.0), same_design=False)
    assert set(table["kind"]) == {"design", "test"}
    assert table.loc[table["kind"] == "design", "verdict"].tolist() == ["different design"]
    assert report.CONSTRUCTION not in table["verdict"].tolist()


@pytest.mark.parametrize("row", ["female (%)", "age, mean (years)", "age, SD (years)", "unrepaired rupture (%)",
                                 "pattern x MDD: chi-square", "unrepaired rupture -> post PTSD: standardised beta"])
def test_a_verdict_flips_when_the_estimate_leaves_its_prediction_interval(row):
    table = report.replication_table(*_tables(effect=10.0), same_design=False).set_index("quantity")
    lo, hi = table.loc[row, ["pi_low", "pi_high"]]
    inside = report._verdict("test", lo <= table.loc[row, "estimate"] <= hi, False, False)
    assert table.loc[row, "verdict"] == inside
    assert report._verdict("test", True, False, False) == "consistent"
    assert lo < hi and report._verdict("test", lo <= hi + 1e-6 <= hi, False, False) == "not consistent"


def test_the_beta_is_judged_with_hc3_and_the_papers_published_value():
    participants, patterns, chi2, regression = _tables(effect=10.0)
    row = report.replication_table(participants, patterns, chi2, regression, same_design=False).iloc[-1]
    term = regression[(regression["model"] == "A") & (regression["term"] == "unrepaired")].iloc[0]
    assert row["paper"] == 0.44 and row["estimate"] == term["beta"] and row["p"] == term["p"]
    se_run = (term["beta_ci_high"] - term["beta_ci_low"]) / (2 * 1.959963984540054)
    half = 1.959963984540054 * np.hypot(0.44 / stats.norm.ppf(1 - 0.001 / 2), se_run)
    assert (row["pi_low"], row["pi_high"]) == (pytest.approx(0.44 - half), pytest.approx(0.44 + half))


def _propagated(beta=0.9, low=0.2, high=1.6):
    """A pattern model's β row far from the paper's .44 (notebook 03's sensitivity table's last row)."""
    return pd.Series({"beta": beta, "beta_ci_low": low, "beta_ci_high": high, "b": 20.0, "se": 6.0, "df": 40.2,
                      "p": 0.002, "n": 80, "fmi": 0.31, "expected_n_unrepaired": 11.4,
                      "se_type": "HC3, Rubin's rules (m = 20)", "note": ""})


@pytest.mark.parametrize("same_design", [True, False])
def test_the_true_pattern_beta_is_shown_never_judged_and_never_counted(same_design):
    tables = _tables(effect=10.0)
    without = report.replication_table(*tables, same_design=same_design)
    table = report.replication_table(*tables, same_design=same_design, propagated=_propagated())
    pd.testing.assert_frame_equal(table.iloc[:-1], without)  # every other row as it was
    row = table.iloc[-1]
    assert row["kind"] == "model-based" and row["verdict"] == report.NOT_COMPARABLE
    assert pd.isna(row["paper"]) and pd.isna(row["pi_low"]) and row["rule"] == report.RULES["true_pattern"]
    assert "true pattern" in row["quantity"] and "fmi = 0.31" in row["statistic"]
    # the headline counts the same tests, and says the model-based row is not counted
    head, head_without = report.headline(table), report.headline(without)
    assert head.split(";")[0] == head_without.split(";")[0]
    assert "1 model-based estimate of the true-pattern effect shown, not comparable with the paper (not counted)" in head
    shown = report.format_replication_table(table).iloc[-1]
    assert shown["paper"].startswith("not comparable") and shown["95% prediction interval"] == ""
    assert shown["this run [95% CI]"].startswith(".90 [.20, 1.60]")
    assert report.VERDICT_STYLE[report.NOT_COMPARABLE] in report.replication_html(report.format_replication_table(table))


def test_a_true_pattern_beta_that_could_not_be_estimated_says_so():
    table = report.replication_table(*_tables(effect=10.0), same_design=False,
                                     propagated=pd.concat([_propagated(beta=np.nan).drop("note"),
                                                           pd.Series({"note": "not estimable in 3 of 20"})]))
    assert table.iloc[-1]["verdict"].startswith("not estimable") and table.iloc[-1]["statistic"] == ""


def test_the_pattern_model_reading_says_what_it_assumes_and_that_nothing_is_validated():
    agreement = pd.DataFrame({"comparison": ["model vs rci"], "n": [81], "kappa": [0.8], "kappa_ci_low": [0.68],
                              "kappa_ci_high": [0.91]})
    text = report.pattern_model_reading(agreement, criterion="rci", alliance="WAI-SR", simulated=False, repair_max=4)
    for words in ("no ceiling model", "hyperparameters treated as known", "κ = .80", "N = 81", "κ ≈ .23",
                  "observer-rated ruptures", "within 4 sessions", "WAI-SR"):
        assert words in text, words
    assert "home ground" not in text  # said on simulated data only
    assert "home ground" in report.pattern_model_reading(agreement, criterion="rci", alliance="A", simulated=True,
                                                         repair_max=3)


def test_format_min_drop_with_and_without_the_effect():
    t = pd.DataFrame({"multiple": [0.5, 1.0], "min_drop": [0.26, 0.52], "n_classifiable": [81, 81],
                      "pct_unrepaired": [17.6, 16.6], "n_unrepaired": [14, 13]})
    points = lambda v: f"{v:.2f} X points"  # noqa: E731
    shown = report.format_min_drop(t, points=points)
    assert shown["smallest drop"].tolist() == ["0.26 X points", "0.52 X points"]
    assert shown["most probable: unrepaired"].tolist() == ["14 of 81", "13 of 81"] and (shown["fmi"] == "").all()
    full = report.format_min_drop(t.assign(b=[12.2, 12.1], ci_low=[5.5, 5.1], ci_high=[18.9, 19.1],
                                           beta=[0.51, 0.50], fmi=[0.16, 0.15]), points=points)
    assert full["b [95% CI]"].tolist() == ["12.2 [5.5, 18.9]", "12.1 [5.1, 19.1]"]
    assert full["true-pattern β"].tolist() == [".51", ".50"]


def test_apa_numbers_in_the_shown_table():
    shown = report.format_replication_table(report.replication_table(*_tables(effect=10.0), same_design=False))
    text = " ".join(shown.astype(str).to_numpy().ravel())
    assert "0.000" not in text and "p = 0." not in text
    assert list(shown.columns) == report.SHOWN_COLUMNS


def test_cramers_v_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(1)
    ids = [f"P{i}" for i in range(90)]
    patterns = pd.DataFrame({"participant_id": ids, "pattern": rng.choice(["no_rupture", "repaired", "unrepaired"], 90)})
    parts = pd.DataFrame({"participant_id": ids, "mdd": rng.random(90) < 0.5})
    table = pd.crosstab(patterns["pattern"], parts["mdd"])
    v = np.sqrt(stats.chi2_contingency(table, correction=False)[0] / (90 * 1))
    lo, hi = report.cramers_v_ci(patterns, parts, "mdd", n_boot=500)
    assert lo <= v <= hi
    assert (lo, hi) == report.cramers_v_ci(patterns, parts, "mdd", n_boot=500)  # seeded


# ----------------------------------------------------------------------------- README
def test_update_readme_replaces_only_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.README_START}\nold numbers\n{report.README_END}\noutro\n")
    assert report.update_readme("| new | table |\n", readme)
    text = readme.read_text()
    assert "old numbers" not in text and "| new | table |" in text
    assert text.startswith("intro\n") and text.endswith("outro\n")
    assert not report.update_readme("| new | table |\n", readme)  # unchanged -> no rewrite


def test_update_readme_without_markers_is_an_error(tmp_path):
    (tmp_path / "README.md").write_text("no markers here\n")
    with pytest.raises(ValueError, match="markers"):
        report.update_readme("x", tmp_path / "README.md")


def test_readme_results_section_is_the_committed_default_runs():
    fragment = (paths.ROOT / "results" / "readme_results.md").read_text()
    assert fragment.strip() in (paths.ROOT / "README.md").read_text()


# ----------------------------------------------------------------------------- the HTML page
class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.external, self.tables, self._cell, self.cells = [], [], 0, False, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "table":
            self.tables += 1
        if tag in ("td", "th"):
            self._cell = True
        for key in ("src", "href"):
            if tag in ("script", "link", "img", "iframe") and a.get(key, "").startswith(("http:", "https:", "//")):
                self.external.append(a[key])

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._cell = False

    def handle_data(self, data):
        if self._cell and data.strip():
            self.cells.append(data.strip())


@pytest.fixture(scope="module")
def page():
    parser = _Page()
    parser.feed(REPORT.read_text(encoding="utf-8"))
    return parser


def test_report_holds_the_results_table_and_every_figure(page):
    table = pd.read_csv(paths.ROOT / "results" / "tables" / "replication.csv")
    for target in report.format_replication_table(table)["target"]:
        assert target in page.cells, target
    assert "verdict" in page.cells and "consistent" in page.cells
    assert len(page.imgs) == 5  # prevalence, examples, growth, forest plot, pattern probabilities
    assert all(src.startswith("data:image/png;base64,") for src in page.imgs)


def test_report_is_self_contained_and_hides_code(page):
    assert page.external == []
    html = REPORT.read_text(encoding="utf-8")
    assert "SIMULATED" in html.upper()
    assert "read_table(" not in html  # inputs (code) excluded


def test_report_has_a_title_alt_texts_and_no_housekeeping():
    html = REPORT.read_text(encoding="utf-8")
    assert "<title>Replication of McLaughlin et al. (2014): simulated trial (seed 20131106)</title>" in html
    alts = re.findall(r'<img[^>]*\balt="([^"]*)"', html)
    assert len(alts) == 5 and len(set(alts)) == 5 and not any("No description" in a for a in alts), alts
    assert "readme_results.md" not in html and "Write the report" not in html  # files written: not for a reader


def test_report_export_is_byte_reproducible(tmp_path):
    executed = paths.ROOT / "notebooks" / "04_replication_report.ipynb"
    a = notebook.export_html(executed, tmp_path / "a.html")
    b = notebook.export_html(executed, tmp_path / "b.html")
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.skipif(CHROMIUM is None, reason="no browser installed: `apt-get install chromium` to run the "
                                             "report's real-browser test (.ci/run does)")
def test_report_renders_in_a_real_browser():
    from playwright.sync_api import sync_playwright

    shot = paths.ROOT / "results" / "browser" / "report.png"  # git-ignored test artefact
    shot.parent.mkdir(parents=True, exist_ok=True)
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(REPORT.as_uri())
            table = page.locator("table", has_text="verdict").first
            assert table.is_visible()
            assert table.locator("tr").count() == 14  # header + 12 targets + the model-based row
            sizes = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.naturalWidth, e.getBoundingClientRect().width, "
                       "e.getBoundingClientRect().height])")
            assert len(sizes) == 5
            assert all(w > 0 and bw > 0 and bh > 0 for w, bw, bh in sizes), sizes
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000


def test_the_censoring_reading_by_case():
    base = {"censored": "", "estimand": "detected pattern", "b": 1.0, "se": 1.0, "ci_low": 0.0, "ci_high": 2.0,
            "df": 60.0, "fmi": np.nan, "expected_n_unrepaired": np.nan, "note": ""}
    rows = [{**base, "analysis": a, "se_type": se, "beta": beta, "beta_ci_low": beta - 0.3, "beta_ci_high": beta + 0.3,
             "p": 0.01, "n": n, "n_unrepaired_analysed": u, "n_excluded": x}
            for a, beta, n, u, x in (("paper's test", 0.44, 70, 9, 0), ("censored excluded", 0.40, 67, 6, 3))
            for se in ("nonrobust", "HC3")]
    rows.append({**base, "analysis": "pattern model", "se_type": "HC3, Rubin's rules (m = 20)", "beta": 0.5,
                 "beta_ci_low": 0.2, "beta_ci_high": 0.8, "p": 0.001, "n": 70, "n_unrepaired_analysed": np.nan,
                 "fmi": 0.15, "expected_n_unrepaired": 10.9, "n_excluded": 0, "estimand": "true pattern"})
    table = pd.DataFrame(rows)
    text = report.beta_sensitivity_reading(table, measure="PCL-5", criterion="rci", n_censored=7)
    assert "7 classifiable clients are unrepaired" in text and "3 of them have pre and post PCL-5" in text
    assert "β = .44 (95% CI .14 to .74, p = .010; N = 70, 9 unrepaired)" in text
    assert "β = .40 (95% CI .10 to .70, p = .010; N = 67, 6 unrepaired)" in text
    assert "fmi = .15, 10.9 unrepaired expected" in text and "not comparable" in text
    assert text.count("(") == text.count(")")
    one = report.beta_sensitivity_reading(table.assign(n_excluded=[0, 0, 1, 1, 0]), measure="X", criterion="rci",
                                          n_censored=1)
    assert "1 classifiable client is unrepaired" in one and "1 of them has" in one
    none = report.beta_sensitivity_reading(table.iloc[:4], measure="X", criterion="sudden", n_censored=0)
    assert none.startswith("**Censored repairs.** No classifiable client") and "pattern model" not in none
