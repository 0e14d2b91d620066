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
    assert len(page.imgs) == 4  # prevalence, examples, growth, forest plot
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
    assert len(alts) == 4 and len(set(alts)) == 4 and not any("No description" in a for a in alts), alts
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
            assert table.locator("tr").count() == 13  # header + 12 targets
            sizes = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.naturalWidth, e.getBoundingClientRect().width, "
                       "e.getBoundingClientRect().height])")
            assert len(sizes) == 4
            assert all(w > 0 and bw > 0 and bh > 0 for w, bw, bh in sizes), sizes
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
