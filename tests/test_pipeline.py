"""The papermill runner: parameters, ordering, failure handling, safe publishing."""

import json
import os

import nbformat
import pandas as pd
import pytest

from helpers import pipeline, publish, runspec


def _params(**overrides):
    return {**pipeline.load_params(), **overrides}


def _notebook(path, *cells, parameters=None):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells += [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, path)
    return path


WRITE_TABLE = """
from helpers import paths
tables = paths.Outputs(paths.output_root()).tables
tables.mkdir(parents=True, exist_ok=True)
(tables / "{name}").write_text({text})
"""


@pytest.fixture
def books(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "01_first.ipynb", WRITE_TABLE.format(name="first.csv", text="f'seed={seed}'"),
              parameters="seed = 0")
    return d


@pytest.fixture
def published(tmp_path):
    out = tmp_path / "out"
    (out / "results" / "tables").mkdir(parents=True)
    (out / "results" / "tables" / "first.csv").write_text("previous good result")
    return out


def test_load_params_defaults_file_and_overrides(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("n_participants: 50\n")
    p = pipeline.load_params(f, ["seed=7", "repair_window=null", "criterion=sd"])
    assert (p["n_participants"], p["seed"], p["repair_window"], p["criterion"]) == (50, 7, None, "sd")
    assert p["n_sessions"] == 10  # untouched default


@pytest.mark.parametrize("override", [["sede=7"], {"sede": 7}])
def test_unknown_parameter_is_an_error(override):
    with pytest.raises(KeyError, match="sede"):
        pipeline.load_params(None, override)


def test_malformed_set_is_an_error():
    with pytest.raises(ValueError, match="key=value"):
        pipeline.load_params(None, ["seed"])


def test_declared_parameters_include_none_valued_ones(tmp_path):
    nb = _notebook(tmp_path / "01_x.ipynb", "y = 2", parameters="a = None  # comment\nb: int = 3\nc, d = 1, 2")
    assert pipeline.declared_parameters(nb) == {"a", "b"}


@pytest.mark.slow  # starts Jupyter kernels: make test, not make test-fast
def test_each_notebook_gets_only_its_declared_parameters_and_outputs_are_published(books, published):
    _notebook(books / "02_second.ipynb",
              "assert 'seed' not in globals()",
              WRITE_TABLE.format(name="second.csv", text="str(n_sessions)"),
              parameters="n_sessions = 1")
    executed = pipeline.run(_params(seed=42, n_sessions=10, criterion="rci"),
                            notebooks=books, output_root=published, progress=False)
    tables = published / "results" / "tables"
    assert (tables / "first.csv").read_text() == "seed=42"
    assert (tables / "second.csv").read_text() == "10"
    assert [p.name for p in executed] == ["01_first.ipynb", "02_second.ipynb"]
    assert all(p.is_file() for p in executed)
    assert not list(published.glob(".staging-*"))  # staging removed after success


@pytest.mark.slow  # starts Jupyter kernels: make test, not make test-fast
def test_failing_notebook_exits_nonzero_names_the_cell_and_keeps_previous_results(books, published, capsys):
    _notebook(books / "02_broken.ipynb", "x = 1",
              "from pathlib import Path\ndef f():\n    raise RuntimeError('boom in the second cell')\ny = 2\nf()",
              parameters="seed = 0")
    _notebook(books / "03_never.ipynb", WRITE_TABLE.format(name="third.csv", text="'x'"))
    for attempt in range(2):
        rc = pipeline.main(["--notebooks", str(books), "--output-root", str(published), "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 1
        # the notebook, the cell and the statement that raised (not the cell's first line)
        assert "02_broken.ipynb" in err and "cell 3, line 5: 'f()'" in err and "boom in the second cell" in err
        tables = published / "results" / "tables"
        # notebook 01 ran fine, but nothing is published from a failed run
        assert (tables / "first.csv").read_text() == "previous good result"
        assert not (tables / "third.csv").exists()
        # one folder to inspect, however often it fails: never a pile
        assert [p.name for p in published.iterdir() if p.name.startswith(".")
                and p.name != publish.LOCK_NAME] == [".failed-run"]
        assert str(published / ".failed-run") in err


@pytest.mark.slow  # starts Jupyter kernels: make test, not make test-fast
def test_only_runs_selected_notebooks_against_existing_outputs(books, published):
    _notebook(books / "02_reader.ipynb",
              "from helpers import paths\n"
              "tables = paths.Outputs(paths.output_root()).tables\n"
              "prev = (tables / 'first.csv').read_text()\n"
              "(tables / 'copy.csv').write_text(prev)")
    pipeline.run(_params(), notebooks=books, output_root=published, only=["02"], progress=False)
    tables = published / "results" / "tables"
    assert (tables / "copy.csv").read_text() == "previous good result"
    assert (tables / "first.csv").read_text() == "previous good result"


@pytest.mark.slow  # starts Jupyter kernels: make test, not make test-fast
def test_refresh_notebooks_copies_executed_outputs_back(books, published):
    pipeline.run(_params(seed=3), notebooks=books, output_root=published, progress=False,
                 refresh_notebooks=True)
    nb = json.loads((books / "01_first.ipynb").read_text())
    assert any(c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code")


@pytest.mark.slow  # starts Jupyter kernels: make test, not make test-fast
def test_a_file_the_run_removes_is_removed_from_the_published_outputs(books, published):
    (published / "data" / "processed").mkdir(parents=True)
    (published / "data" / "processed" / "truth.csv").write_text("stale truth of a simulated run")
    (published / "data" / "processed" / ".gitkeep").write_text("")
    _notebook(books / "02_real_data.ipynb",
              "from helpers import paths\n(paths.Outputs(paths.output_root()).processed / 'truth.csv').unlink()")
    pipeline.run(_params(), notebooks=books, output_root=published, progress=False)
    assert not (published / "data" / "processed" / "truth.csv").exists()
    assert (published / "data" / "processed" / ".gitkeep").exists()
    assert (published / "results" / "tables" / "first.csv").read_text() == "seed=20131106"


def test_cli_makes_user_data_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = runspec.absolute_data_paths({"data_source": "mytrial", "participants_path": None, "seed": 1})
    assert p["data_source"] == str(tmp_path / "mytrial") and p["participants_path"] is None
    assert runspec.absolute_data_paths({"data_source": "simulate"})["data_source"] == "simulate"


@pytest.mark.slow  # starts Jupyter kernels: make test, not make test-fast
def test_refresh_only_copies_the_notebooks_this_run_executed(books, published):
    pipeline.run(_params(seed=3), notebooks=books, output_root=published, progress=False)  # executed copy of 01
    _notebook(books / "02_second.ipynb", "x = 2")
    edited = "# edited by the user after the last run\n"
    nb = json.loads((books / "01_first.ipynb").read_text())
    nb["cells"].append({"cell_type": "markdown", "id": "edit", "metadata": {}, "source": edited})
    (books / "01_first.ipynb").write_text(json.dumps(nb))
    pipeline.run(_params(), notebooks=books, output_root=published, only=["02"], progress=False,
                 refresh_notebooks=True)
    sources = [c["source"] for c in json.loads((books / "01_first.ipynb").read_text())["cells"]]
    assert edited in sources  # not overwritten by the old executed copy
    assert any(c.get("execution_count") for c in json.loads((books / "02_second.ipynb").read_text())["cells"])


def test_committed_notebooks_hold_the_parameters_cell_only_with_the_default_values():
    # Editing the parameters cell in JupyterLab must take effect (no injected cell overriding it),
    # and re-executing a committed notebook (nbval) must be the default run.
    import ast

    defaults = pipeline.load_params()
    for nb_path in pipeline.list_notebooks():
        nb = nbformat.read(str(nb_path), as_version=4)
        assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells), nb_path.name
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        for node in ast.parse(cell.source).body:
            name = node.targets[0].id
            if name in defaults:
                assert ast.literal_eval(node.value) == defaults[name], (nb_path.name, name)


# ------------------------------------------------------------------- notebooks side by side
STAMP = """
import time
from helpers import paths
TABLES = paths.Outputs(paths.output_root()).tables
TABLES.mkdir(parents=True, exist_ok=True)
(TABLES / "{name}_start").write_text(repr(time.time()))
{body}
(TABLES / "{name}_end").write_text(repr(time.time()))
"""


def _stamps(root, name):
    tables = root / "results" / "tables"
    return float((tables / f"{name}_start").read_text()), float((tables / f"{name}_end").read_text())


@pytest.mark.slow  # starts Jupyter kernels: make test, not make test-fast
def test_an_independent_notebook_runs_beside_the_others_and_the_rest_keep_their_order(
        tmp_path, published, monkeypatch):
    books = tmp_path / "side"
    books.mkdir()
    _notebook(books / "01_slow.ipynb", STAMP.format(name="a", body="time.sleep(3)"))
    _notebook(books / "02_reads_01.ipynb", STAMP.format(name="b", body="assert (TABLES / 'a_end').exists()"))
    _notebook(books / "03_free.ipynb", STAMP.format(name="c", body=""))
    monkeypatch.setattr(pipeline, "INDEPENDENT", {"03_": ("01_", "02_")})
    monkeypatch.setattr(pipeline, "parallel_lanes", lambda: 2)
    cwd = os.getcwd()
    executed = pipeline.run(_params(seed=1), notebooks=books, output_root=published, progress=False)
    assert os.getcwd() == cwd  # the kernels start in the notebooks' folder; the caller's is restored
    assert [p.name for p in executed] == ["01_slow.ipynb", "02_reads_01.ipynb", "03_free.ipynb"]
    a, b, c = (_stamps(published, n) for n in "abc")
    assert c[0] < a[1]   # 03 ran while 01 was still running
    assert b[0] >= a[1]  # 02 waited for 01


@pytest.mark.slow  # starts Jupyter kernels: make test, not make test-fast
def test_a_failure_beside_the_others_is_named_and_nothing_is_published(tmp_path, published, monkeypatch, capsys):
    books = tmp_path / "side"
    books.mkdir()
    _notebook(books / "01_fine.ipynb", STAMP.format(name="a", body="time.sleep(1)"))
    _notebook(books / "02_free_broken.ipynb", "raise ValueError('the free one fails')")
    monkeypatch.setattr(pipeline, "INDEPENDENT", {"02_": ("01_",)})
    monkeypatch.setattr(pipeline, "parallel_lanes", lambda: 2)
    rc = pipeline.main(["--notebooks", str(books), "--output-root", str(published), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "02_free_broken.ipynb" in err and "the free one fails" in err
    assert not (published / "results" / "tables" / "a_start").exists()  # 01's outputs not published either
    assert (published / "results" / "tables" / "first.csv").read_text() == "previous good result"


def test_needs_follow_the_declared_independence():
    names = [pipeline.paths.NOTEBOOKS / n for n in ("01_a.ipynb", "02_b.ipynb", "03_c.ipynb", "05_e.ipynb")]
    assert pipeline._needs(names[3], names[:3]) == []          # the simulation study needs nothing
    assert pipeline._needs(names[2], names[:2]) == names[:2]   # the others wait for every earlier one


#: Notebook 05 at a size that runs every cell in seconds (not the numbers of any table).
SMALL_POWER_STUDY = ["power_replications=4", "power_sample_sizes=[60, 116]", "settings_replications=2",
                     "settings_reference_n=2000"]


@pytest.mark.slow
def test_the_simulation_study_runs_alone_in_an_empty_folder(tmp_path):
    """05 reads nothing that 01-04 write: that is what lets it run beside them."""
    params = pipeline.load_params(overrides=SMALL_POWER_STUDY)
    executed = pipeline.run(params, only=["05"], output_root=tmp_path, progress=False)
    assert [p.name for p in executed] == ["05_robustness_power.ipynb"]
    assert (tmp_path / "results" / "tables" / "power_beta.csv").is_file()
    assert not (tmp_path / "data" / "processed" / "sessions.csv").exists()
    settings = pd.read_csv(tmp_path / "results" / "tables" / "power_settings.csv")
    harder = settings[settings["setting"] != "default"]
    assert len(harder) and set(harder["n_replications"]) == {2}  # settings_replications reached the table


@pytest.mark.slow  # starts Jupyter kernels: make test, not make test-fast
def test_the_simulation_study_alone_keeps_the_published_run_spec(tmp_path):
    """--only 05 (as on a Dask cluster) next to published 01-04 outputs: their run.json, which
    names the trial, criterion and instruments, is not replaced by 05's trial-less one."""
    spec = tmp_path / "data" / "processed" / "run.json"
    spec.parent.mkdir(parents=True)
    spec.write_text('{"criterion": {"name": "rci"}}\n', encoding="utf-8")
    params = pipeline.load_params(overrides=SMALL_POWER_STUDY)
    pipeline.run(params, only=["05"], output_root=tmp_path, progress=False)
    assert spec.read_text(encoding="utf-8") == '{"criterion": {"name": "rci"}}\n'
    assert (tmp_path / "results" / "tables" / "power_beta.csv").is_file()


@pytest.mark.slow  # starts Jupyter kernels: make test, not make test-fast
def test_every_kernel_is_started_ahead_and_stopped(tmp_path, published, monkeypatch):
    from helpers import kernels

    books = tmp_path / "three"
    books.mkdir()
    for i in (1, 2, 3):
        _notebook(books / f"0{i}_n.ipynb", "import os\nprint(os.getcwd())")
    started = []
    real_start = kernels.start
    monkeypatch.setattr(kernels, "start", lambda *a, **k: started.append(real_start(*a, **k)) or started[-1])
    executed = pipeline.run(_params(seed=1), notebooks=books, output_root=published, progress=False)
    assert len(started) == 3  # one kernel per notebook, none left over
    assert not any(km.has_kernel for km in started)  # all stopped
    for nb in executed:  # each ran in the notebooks' folder, as in a kernel papermill starts
        out = nbformat.read(str(nb), as_version=4).cells[0].outputs[0]["text"].strip()
        assert out == str(books.resolve())


@pytest.mark.slow  # starts Jupyter kernels: make test, not make test-fast
def test_a_kernel_that_dies_fails_the_run_naming_the_notebook(tmp_path, published, capsys):
    books = tmp_path / "dies"
    books.mkdir()
    _notebook(books / "01_dies.ipynb", "import os\nos._exit(1)")
    rc = pipeline.main(["--notebooks", str(books), "--output-root", str(published), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "01_dies.ipynb" in err
    assert (published / "results" / "tables" / "first.csv").read_text() == "previous good result"


@pytest.mark.slow  # starts Jupyter kernels: make test, not make test-fast
def test_ctrl_c_kills_the_running_notebooks_instead_of_waiting_for_them(tmp_path, published, monkeypatch):
    import concurrent.futures

    from helpers import kernels

    books = tmp_path / "long"
    books.mkdir()
    _notebook(books / "01_long.ipynb", STAMP.format(name="a", body="time.sleep(600)"))
    _notebook(books / "02_next.ipynb", "x = 1")
    started = []
    real_start = kernels.start
    monkeypatch.setattr(kernels, "start", lambda *a, **k: started.append(real_start(*a, **k)) or started[-1])
    real_wait = concurrent.futures.wait

    def ctrl_c(fs, timeout=None, return_when=None):
        real_wait(fs, timeout=3)  # the notebook is running by then
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "wait", ctrl_c)
    with pytest.raises(KeyboardInterrupt):  # returns long before the 600 s cell would have ended
        pipeline.run(_params(seed=1), notebooks=books, output_root=published, progress=False)
    assert len(started) == 2  # the running notebook's kernel and the next one's, started ahead
    assert not any(km.has_kernel for km in started) and not kernels.live()
    assert not list(published.glob(".staging-*"))  # nothing half-done left
    assert not (published / "results" / "tables" / "a_start").exists()  # nothing published


@pytest.mark.slow  # starts Jupyter kernels: make test, not make test-fast
def test_a_relative_notebooks_folder_is_read_from_where_the_command_runs(tmp_path, published, monkeypatch):
    """`--notebooks notebooks` names a folder relative to the caller, whatever folder the
    kernels run in."""
    books = tmp_path / "rel"
    books.mkdir()
    _notebook(books / "01_where.ipynb", "import os\nprint(os.getcwd())")
    monkeypatch.chdir(tmp_path)
    rc = pipeline.main(["--notebooks", "rel", "--output-root", str(published), "--no-progress"])
    assert rc == 0
    executed = nbformat.read(str(published / "results" / "notebooks" / "01_where.ipynb"), as_version=4)
    assert executed.cells[0].outputs[0]["text"].strip() == str(books.resolve())  # the kernel ran in its folder
