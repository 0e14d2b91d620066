"""The replication report: rules and verdicts, README splicing, the static HTML page (parsed,
and opened in a real browser)."""

import shutil
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers import paths, report

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


@pytest.mark.parametrize("rule,args,verdict", [
    ("equal", (116, 116, np.nan, np.nan), "consistent"),
    ("equal", (116, 115, np.nan, np.nan), "not consistent"),
    ("in_ci", (28.0, 25.9, 17.6, 36.4), "consistent"),
    ("in_ci", (28.0, 40.0, 30.0, 50.0), "not consistent"),
    ("beta", (0.45, 0.44, 0.23, 0.64, 0.0001), "consistent"),
    ("beta", (0.45, 0.20, 0.01, 0.39, 0.03), "not consistent"),   # CI misses .45
    ("beta", (0.45, 0.30, -0.05, 0.65, 0.09), "not consistent"),  # not significant
    ("beta", (0.45, -0.50, -0.9, -0.1, 0.01), "not consistent"),  # wrong sign
    ("chi2_ns", (2.69, 0.81, np.nan, np.nan, 0.667), "consistent"),
    ("chi2_ns", (0.57, 6.59, np.nan, np.nan, 0.037), "not consistent"),
])
def test_verdict_rules(rule, args, verdict):
    assert report._verdict(rule, *args) == verdict


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
    for quantity in table["quantity"]:
        assert quantity in page.cells, quantity
    assert "verdict" in page.cells and "consistent" in page.cells
    assert len(page.imgs) == 4  # prevalence, examples, growth, forest plot
    assert all(src.startswith("data:image/png;base64,") for src in page.imgs)


def test_report_is_self_contained_and_hides_code(page):
    assert page.external == []
    html = REPORT.read_text(encoding="utf-8")
    assert "SIMULATED" in html.upper()
    assert "read_table(" not in html  # inputs (code) excluded


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
