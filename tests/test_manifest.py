"""Reproducible on any machine: file kinds, numbers at tolerance, figure data, normalised
notebooks, the manifest, publishing that keeps what a run reproduced, and ``make verify``."""

import itertools
import json
import os
import shutil

import matplotlib
import nbformat
import pytest

from helpers import compare, figures, manifest, paths, pipeline
from helpers.notebook import normalise_executed

matplotlib.use("Agg")


# ----------------------------------------------------------------------------- numbers and text
@pytest.mark.parametrize("a, b, ok", [
    ("-1.367053361727802", "-1.3670533617168383", True),   # the BLAS difference a reviewer saw
    ("0.123457", "0.123456", True),                          # a rounding edge that flipped
    ("1.23457e-05", "1.23456e-05", True),                    # last printed digit, exponent form
    ("1.2e-05", "1.3e-05", False),                           # ... but in a short number a unit is a change
    ("0.45", "0.44", False),                                 # the paper's beta: .45 vs .44
    ("11.475", "11.4761", False),                            # more than one unit of the last digit
    ("0.45", "0.4502", False),
    ("116", "117", False),                                   # counts must be equal
    ("0.000000", "-0.000000", True),
])
def test_numbers_compare_at_the_stated_tolerance(a, b, ok):
    assert compare.compare_numbers(a, b)[0] is ok


def test_noise_passes_and_a_real_change_fails_naming_the_line():
    base = "term,estimate\nIntercept,22.024331\ntime,-1.367053\n"
    noisy = base.replace("22.024331", "22.024332")
    assert compare.compare_text(base, noisy).status == compare.WITHIN
    assert "22.024331 vs 22.024332" in compare.compare_text(base, noisy).detail
    real = base.replace("-1.367053", "-1.367190")  # 1e-4 relative
    result = compare.compare_text(base, real)
    assert result.status == compare.DIFFERENT and "line 3" in result.detail
    assert compare.compare_text(base, base.replace("time", "tme")).status == compare.DIFFERENT


def test_file_kinds_are_declared():
    assert compare.kind_of("results/tables/chi2.csv") == "exact"
    assert compare.kind_of("data/processed/sessions.csv") == "exact"
    assert compare.kind_of("figures/03_growth_by_pattern.data.csv") == "exact"
    for rendered in ("figures/x.png", "figures/x.svg", "results/report.html", "results/notebooks/01_data.ipynb",
                     "results/readme_results.md"):
        assert compare.kind_of(rendered) == "rendered"
    assert compare.figure_data_path("figures/x.svg") == "figures/x.data.csv"


def test_a_compressed_processed_table_is_compared_by_its_numbers():
    import gzip

    base = "participant_id,alliance\nP1,5.123456\n"
    a = gzip.compress(base.encode(), mtime=0)
    assert compare.kind_of("data/processed/sessions.csv.gz") == "exact"
    assert compare.compare_files("data/processed/sessions.csv.gz", a, gzip.compress(base.encode(), mtime=1)).status \
        == compare.WITHIN  # other header bytes, the same table
    changed = gzip.compress(base.replace("5.123456", "5.223456").encode(), mtime=0)
    result = compare.compare_files("data/processed/sessions.csv.gz", a, changed)
    assert result.status == compare.DIFFERENT and "line 2" in result.detail


def _executed(text, *, seconds="1.5", png="AAAA"):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(x)")
    cell.metadata["execution"] = {"iopub.execute_input": seconds}
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text),
                    nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"})]
    nb.cells.append(cell)
    return nbformat.writes(nb).encode()


def test_notebooks_compare_by_what_a_reader_sees():
    a = _executed("beta = 0.452317\n")
    # another machine's pixels and timings: kept by a run (equal within tolerance), never "different"
    assert compare.compare_files("results/notebooks/n.ipynb", a, _executed("beta = 0.452317\n", seconds="9",
                                                                            png="BBBB")).status == compare.WITHIN
    assert compare.compare_files("results/notebooks/n.ipynb", a, _executed("beta = 0.452318\n")).status == \
        compare.WITHIN
    assert not compare.compare_files("results/notebooks/n.ipynb", a, _executed("beta = 0.462317\n")).ok


def test_html_is_compared_without_its_embedded_images():
    a = b'<p>N = 81</p><img src="data:image/png;base64,AAAA=">'
    assert compare.compare_files("results/report.html", a, a.replace(b"AAAA", b"BBBB")).status == compare.WITHIN
    assert not compare.compare_files("results/report.html", a, a.replace(b"81", b"82")).ok


# ----------------------------------------------------------------------------- figures
def _figure(y, color="#0072B2"):
    fig, ax = figures.plt.subplots()
    ax.plot([1, 2, 3], y, color=color, label="mean")
    ax.set_title("N = 3")
    ax.legend()
    return fig


def test_figure_data_holds_points_text_and_style(tmp_path):
    written = figures.save_figure(_figure([1.0, 2.5, 2.0]), "f", folder=tmp_path)
    assert sorted(p.name for p in written) == ["f.data.csv", "f.png", "f.svg"]
    text = (tmp_path / "f.data.csv").read_text()
    assert "2.5" in text and "N = 3" in text and "#0072b2" in text
    same = figures.figure_data(_figure([1.0, 2.5, 2.0])).to_csv(index=False)
    assert figures.figure_data(_figure([1.0, 2.5, 2.0])).to_csv(index=False) == same
    assert figures.figure_data(_figure([1.0, 2.6, 2.0])).to_csv(index=False) != same
    assert figures.figure_data(_figure([1.0, 2.5, 2.0], color="#D55E00")).to_csv(index=False) != same
    figures.plt.close("all")


def test_a_figure_is_compared_through_its_data_table():
    pair = {"figures/f.data.csv": (b"x,y\n1,0.250000001\n", b"x,y\n1,0.250000002\n")}
    result = compare.compare_files("figures/f.png", b"png-a", b"png-b", read_sibling=pair.get)
    assert result.status == compare.WITHIN and "f.data.csv" in result.detail
    pair = {"figures/f.data.csv": (b"x,y\n1,0.25\n", b"x,y\n1,0.35\n")}
    assert not compare.compare_files("figures/f.png", b"png-a", b"png-b", read_sibling=pair.get).ok
    pair = {"figures/f.data.csv": (None, b"x,y\n1,0.35\n")}
    assert not compare.compare_files("figures/f.png", b"png-a", b"png-b", read_sibling=pair.get).ok


# ----------------------------------------------------------------------------- notebooks
def test_executed_notebooks_are_normalised():
    nb = nbformat.v4.new_notebook()
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    nb.metadata["papermill"] = {"parameters": {"seed": 1}, "start_time": "2026", "input_path": "/tmp/x"}
    cell = nbformat.v4.new_code_cell("print('a')")
    cell.metadata["papermill"] = {"duration": 1.2}
    cell.metadata["execution"] = {"iopub.status.busy": "2026"}
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="a"),
                    nbformat.v4.new_output("stream", name="stdout", text="\n")]
    nb.cells.append(cell)
    out = normalise_executed(nb)
    assert [o.text for o in out.cells[0].outputs] == ["a\n"]
    assert out.metadata["papermill"] == {"parameters": {"seed": 1}}
    assert "version" not in out.metadata["language_info"]
    assert "papermill" not in out.cells[0].metadata and "execution" not in out.cells[0].metadata


# ----------------------------------------------------------------------------- manifest and publishing
def _tree(root, table="a,b\n1,0.500000\n", data="x,y\n1,2.000000\n", png=b"png"):
    (root / "results" / "tables").mkdir(parents=True, exist_ok=True)
    (root / "figures").mkdir(parents=True, exist_ok=True)
    (root / "results" / "tables" / "t.csv").write_text(table)
    (root / "figures" / "f.data.csv").write_text(data)
    (root / "figures" / "f.png").write_bytes(png)
    return root


def test_manifest_declares_kind_and_comparison_of_every_file(tmp_path):
    _tree(tmp_path)
    manifest.write_manifest(tmp_path, {"seed": 1})
    files = manifest.read_manifest(tmp_path / manifest.MANIFEST)["files"]
    assert files["results/tables/t.csv"]["kind"] == "exact"
    assert files["figures/f.png"]["kind"] == "rendered"
    assert "figures/f.data.csv" in files["figures/f.png"]["compared_by"]


def test_verify_reports_identical_within_tolerance_and_different_files(tmp_path):
    ref = _tree(tmp_path / "ref")
    manifest.write_manifest(ref, {"seed": 1})
    same = _tree(tmp_path / "same", table="a,b\n1,0.500001\n", png=b"other pixels")
    rows = manifest.verify_outputs(same, ref)
    text, ok = manifest.format_verify(rows)
    assert ok, text
    status = {rel: c.status for rel, _, c in rows}
    assert status == {"figures/f.data.csv": compare.IDENTICAL, "figures/f.png": compare.WITHIN,
                      "results/tables/t.csv": compare.WITHIN}
    changed = _tree(tmp_path / "changed", table="a,b\n1,0.600000\n", data="x,y\n1,2.100000\n", png=b"new")
    (changed / "results" / "tables" / "new.csv").write_text("1\n")
    text, ok = manifest.format_verify(manifest.verify_outputs(changed, ref))
    assert not ok
    for line in ("X results/tables/t.csv", "X figures/f.png", "X figures/f.data.csv",
                 "X results/tables/new.csv [exact]: different (made by the re-run but not in the manifest)"):
        assert line in text, text
    (ref / "results" / "tables" / "t.csv").write_text("a,b\n1,0.9\n")  # edited after the run
    assert "does not match the manifest" in manifest.format_verify(manifest.verify_outputs(same, ref))[0]


def test_reconcile_keeps_published_files_that_show_the_same_thing(tmp_path):
    published = _tree(tmp_path / "published")
    manifest.write_manifest(published, {"seed": 1})
    before = (published / manifest.MANIFEST).read_bytes()
    staging = _tree(tmp_path / "staging", table="a,b\n1,0.500001\n", png=b"other pixels")
    kept = manifest.reconcile(staging, published)
    assert sorted(line.split(":")[0] for line in kept) == ["figures/f.png", "results/tables/t.csv"]
    assert (staging / "figures" / "f.png").read_bytes() == b"png"
    manifest.write_manifest(staging, {"seed": 1}, published_root=published)
    assert (staging / manifest.MANIFEST).read_bytes() == before  # nothing changed: same manifest
    real = _tree(tmp_path / "real", data="x,y\n1,2.5\n", png=b"new pixels")
    assert manifest.reconcile(real, published) == []
    assert (real / "figures" / "f.png").read_bytes() == b"new pixels"
    manifest.write_manifest(real, {"seed": 1}, published_root=published)
    assert (real / manifest.MANIFEST).read_bytes() != before


def test_a_changed_figure_publishes_the_report_that_embeds_it_anew(tmp_path):
    # the report's text is the same, its embedded picture is not: keeping it would keep the old one
    def page(root, picture):
        (root / "results").mkdir(parents=True, exist_ok=True)
        (root / "results" / "report.html").write_text(f'<p>Figure 1</p><img src="data:image/png;base64,{picture}">')
        return root
    published = page(_tree(tmp_path / "published"), "b2xk")
    same = page(_tree(tmp_path / "same", png=b"other pixels"), "bmV3")  # figure data unchanged
    assert "results/report.html" in " ".join(manifest.reconcile(same, published))
    changed = page(_tree(tmp_path / "changed", data="x,y\n1,3.5\n", png=b"new"), "bmV3")
    kept = manifest.reconcile(changed, published)
    assert not any(line.startswith("results/report.html") for line in kept)
    assert "bmV3" in (changed / "results" / "report.html").read_text()


def test_code_digest_follows_code_not_notebook_outputs(tmp_path):
    root = tmp_path
    (root / "src" / "helpers").mkdir(parents=True)
    (root / "notebooks").mkdir()
    (root / "params").mkdir()
    (root / "src" / "helpers" / "m.py").write_text("x = 1\n")
    (root / "params" / "default.yaml").write_text("seed: 1\n")
    (root / "requirements.lock").write_text("numpy==2\n")
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("print(1)"))
    nbformat.write(nb, root / "notebooks" / "01_a.ipynb")
    first = manifest.code_digest(root)
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nbformat.write(nb, root / "notebooks" / "01_a.ipynb")
    assert manifest.code_digest(root) == first
    (root / "src" / "helpers" / "m.py").write_text("x = 2\n")
    assert manifest.code_digest(root) != first


def test_committed_manifest_lists_every_committed_output_and_the_code_that_made_them():
    recorded = manifest.read_manifest()
    assert recorded["seed"] == 20131106 and recorded["parameters"]["criterion"] == "rci"
    assert "pandas" in recorded["packages"] and "python" in recorded["packages"]
    assert set(recorded["files"]) == set(manifest.generated_paths(paths.ROOT))
    for rel, info in recorded["files"].items():
        assert manifest.sha256(paths.ROOT / rel) == info["sha256"], f"{rel} changed since the manifest was written"
    assert recorded["code_sha256"] == manifest.code_digest(), (
        "the committed outputs were made by other code: run `make reproduce` (and `make notebooks`) and commit them")


# ----------------------------------------------------------------------------- whole runs
PERTURB = r'''
import os
eps = float(os.environ["REPLICATION_TEST_PERTURBATION"])
import numpy as np
import numpy.linalg
import scipy.linalg

def _scaled(f):
    def g(*args, **kwargs):
        out = f(*args, **kwargs)
        if isinstance(out, np.ndarray) and out.dtype.kind == "f":
            return out * (1 + eps)
        if isinstance(out, tuple) and out and isinstance(out[0], np.ndarray):
            return (out[0] * (1 + eps),) + tuple(out[1:])
        return out
    return g

for mod in (numpy.linalg, scipy.linalg):
    for name in os.environ["REPLICATION_TEST_PERTURBED"].split(","):
        setattr(mod, name, _scaled(getattr(mod, name)))
with open(os.environ["REPLICATION_TEST_PERTURBATION_LOG"], "a") as log:
    log.write(f"perturbation {eps} active in process {os.getpid()}\n")
'''


def _copy_outputs(dst):
    for rel in ("data/processed", "results", "figures"):
        shutil.copytree(paths.ROOT / rel, dst / rel)
    return dst


@pytest.mark.slow
@pytest.mark.parametrize("eps, functions, passes", [(1e-12, "solve,inv,pinv,lstsq,svd", True),
                                                    (1e-4, "pinv,lstsq,svd", False)])
def test_blas_noise_passes_verify_and_a_real_change_fails_it(tmp_path, monkeypatch, eps, functions, passes):
    # Linear-algebra results in the kernels of notebooks 03 and 04 scaled by (1 + eps): at 1e-12
    # every solve, inverse and least-squares fit (what another BLAS kernel does); at 1e-4 the
    # least-squares fits only, i.e. a real change of every regression estimate (scaling the
    # mixed model's solves by 1e-4 makes its gradient inconsistent and the fit fails instead).
    monkeypatch.setenv("REPLICATION_TEST_PERTURBED", functions)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(PERTURB)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("REPLICATION_TEST_PERTURBATION", repr(eps))
    log = tmp_path / "perturbation.log"
    monkeypatch.setenv("REPLICATION_TEST_PERTURBATION_LOG", str(log))
    out = _copy_outputs(tmp_path / "out")
    pipeline.run(pipeline.load_params(), only=["03", "04"], output_root=out, progress=False)
    assert log.read_text().count("active") >= 2  # both kernels ran perturbed
    text, ok = manifest.format_verify(manifest.verify_outputs(out, paths.ROOT))
    assert ok is passes, text
    if not passes:
        for rel in ("results/tables/outcome_regression.csv", "results/tables/outcome_regression_hc3.csv",
                    "results/tables/replication.csv", "results/notebooks/03_outcome_models.ipynb"):
            assert f"X {rel}" in text, text


@pytest.mark.slow
def test_a_notebook_executed_twice_gives_identical_normalised_output(tmp_path):
    runs = []
    for name in ("a", "b"):
        pipeline.run(pipeline.load_params(), only=["01"], output_root=tmp_path / name, progress=False)
        runs.append((tmp_path / name / "results" / "notebooks" / "01_data.ipynb").read_bytes())
    assert runs[0] == runs[1]
    cells = json.loads(runs[0])["cells"]
    for cell in cells:
        kinds = [(o["output_type"], o.get("name")) for o in cell.get("outputs", [])]
        assert all(a != b or a[0] != "stream" for a, b in itertools.pairwise(kinds)), kinds


@pytest.mark.slow
@pytest.mark.parametrize("backend", [None, "Agg"], ids=["default backend", "MPLBACKEND=Agg"])
def test_a_fresh_default_run_reproduces_the_committed_outputs(tmp_path, monkeypatch, backend):
    # The committed outputs are one default run; this is a second one, compared as `make verify` does.
    # A headless server's MPLBACKEND=Agg (the kernels inherit it) must not cost the notebooks their figures.
    if backend:
        monkeypatch.setenv("MPLBACKEND", backend)
    else:
        monkeypatch.delenv("MPLBACKEND", raising=False)
    pipeline.run(pipeline.load_params(), output_root=tmp_path, progress=False)
    text, ok = manifest.format_verify(manifest.verify_outputs(tmp_path, paths.ROOT))
    assert ok, text
    report = (tmp_path / "results" / "report.html").read_text(encoding="utf-8")
    assert report.count("<img") == 5  # prevalence, examples, growth, forest plot, pattern probabilities
