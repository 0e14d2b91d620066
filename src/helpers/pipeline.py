"""Run the notebooks in order with papermill: the engine behind ``make reproduce``.

Usage::

    python -m helpers.pipeline                         # default run (params/default.yaml)
    python -m helpers.pipeline --params my.yaml        # override some parameters from a file
    python -m helpers.pipeline --set seed=1 --set criterion=sd
    python -m helpers.pipeline --only 02 03            # re-run some notebooks
    python -m helpers.pipeline --refresh-notebooks     # also copy executed notebooks to notebooks/

How a run stays safe:

* Every notebook writes its outputs through :mod:`helpers.paths`. The runner points
  ``REPLICATION_OUTPUT_ROOT`` at a fresh *staging* folder (seeded with a copy of the current
  outputs, so a partial run sees its inputs) and executes the notebooks there. Only when every
  notebook has succeeded are the staged folders exchanged for ``data/processed/``, ``results/``
  and ``figures/``, as one step that a crash cannot leave half-done (:mod:`helpers.publish`).
  A failure stops the run at once, names the notebook and the failing cell, exits non-zero and
  leaves the previous good results intact; the staging folder is kept for inspection and its
  path printed.
* One run per output root at a time (a lock; ``--wait`` waits for the other run). Ctrl-C and
  SIGTERM stop every kernel, remove the staging folder and leave the published outputs as they
  were (exit 130 / 143); what a killed run left is cleaned up by the next one
  (:mod:`helpers.publish`).
* Notebooks run in order; one that reads nothing the others write (:data:`INDEPENDENT`: the
  simulation study, 05) runs beside them on a second core (:func:`parallel_lanes`). A
  failure stops new notebooks from starting; one already running finishes first.
* Each notebook receives only the parameters that its ``parameters`` cell declares.
* The kernel is the active environment's own (``JUPYTER_PATH`` is pointed at this
  interpreter's prefix), so nothing has to be registered globally.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import logging
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from helpers import kernels, manifest, notebook, paths, publish, report, runspec
from helpers.table_io import atomic_write_text

#: Output folders (relative to the output root) that a run stages and publishes.
OUTPUT_DIRS = paths.OUTPUT_DIRS

#: Kernel name written in every committed notebook.
KERNEL_NAME = "python3"


class PipelineError(RuntimeError):
    """A notebook failed; the message names the notebook and the failing cell."""


# ----------------------------------------------------------------------------- parameters
#: Reading parameters lives with the run specification; kept here as the runner's public API.
load_params = runspec.load_params


# ----------------------------------------------------------------------------- notebooks
def list_notebooks(folder=None, only=None) -> list[Path]:
    """The ordered notebooks ``NN_name.ipynb`` in ``folder``; ``only`` keeps those whose
    name starts with one of the given prefixes (e.g. ``["02", "03"]``)."""
    folder = Path(folder or paths.NOTEBOOKS)
    found = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if any(p.name.startswith(str(o)) for o in only)]
    if not found:
        raise FileNotFoundError(f"no notebooks to run in {folder} (only={only})")
    return found


def declared_parameters(notebook) -> set[str]:
    """Names assigned in the notebook's cell tagged ``parameters``.

    Read with :mod:`ast` rather than ``papermill.inspect_notebook``, which cannot infer a
    type for ``x = None`` and then leaves such a parameter out.
    """
    import nbformat  # ~1-2 s to import (jsonschema): --help and the checks answer without it

    names = set()
    for cell in nbformat.read(str(notebook), as_version=4).cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            for node in ast.parse(cell.source).body:
                targets = node.targets if isinstance(node, ast.Assign) else (
                    [node.target] if isinstance(node, ast.AnnAssign) else [])
                names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


# ----------------------------------------------------------------------------- running
def run(params=None, *, notebooks=None, only=None, output_root=None,
        refresh_notebooks=False, progress=True, wait=False) -> list[Path]:
    """Execute the notebooks in order and publish their outputs.

    Parameters
    ----------
    params : dict, optional
        Full parameter set (see :func:`load_params`); defaults when None.
    notebooks : path-like, optional
        Folder of notebooks (default ``notebooks/``).
    only : list of str, optional
        Run only notebooks whose names start with these prefixes.
    output_root : path-like, optional
        Where outputs are published (default: the default run's output root -- the repository,
        or ``REPLICATION_OUTPUT_ROOT`` -- for the default run, ``runs/<name>/`` for any other).
    refresh_notebooks : bool
        Also copy the executed notebooks over the committed ones in the notebooks folder.
    progress : bool
        Show a progress bar (notebook and cell).
    wait : bool
        When another run is writing ``output_root``, wait for it instead of refusing.

    Returns
    -------
    list of Path
        The executed notebooks, in ``results/notebooks/``.

    Raises
    ------
    PipelineError
        A notebook failed; nothing was published.
    helpers.publish.RunBusy
        Another run is writing ``output_root`` (and ``wait`` is False).
    helpers.publish.OutputError
        The outputs cannot be written there (the message names the path and the error).
    helpers.publish.Interrupted
        Ctrl-C or SIGTERM: every kernel stopped, the staging folder removed.
    """
    params = load_params() if params is None else params
    books = list_notebooks(notebooks, only)
    skipped = []
    if not only and params.get("data_source", "simulate") != "simulate":
        skipped = [b for b in books if b.name.startswith(SIMULATION_ONLY)]
        books = [b for b in books if b not in skipped]
    # the one resolution of this run: parameters, data, instruments, criterion (the command
    # line and the Python API check exactly the same things, before any notebook); the
    # simulation study alone needs no trial
    needs_data = not all(b.name.startswith(SIMULATION_ONLY) for b in books)
    spec, trial = runspec.resolve(params, root=output_root, load=needs_data)
    for b in skipped:  # said once the run is known to go ahead: a refusal is the first line
        print(f"{b.stem} skipped: the simulation study does not use the data (run it with --only "
              f"{b.name[:2]})", file=sys.stderr)
    for message in (spec.dataset or {}).get("warnings", []):
        print(f"warning: {message}", file=sys.stderr)
    output_root = spec.root
    committed = Path(notebooks or paths.NOTEBOOKS).resolve() == paths.NOTEBOOKS.resolve()
    if refresh_notebooks and committed and not spec.default_run:
        raise PipelineError("--refresh-notebooks copies a run's outputs into the committed notebooks/: only the "
                            "default run may do that (this run's parameters differ from params/default.yaml)")
    # the lock, the leftovers of killed runs, signals; the staging folder is removed whatever ends the run
    with publish.Run(output_root, wait=wait) as guard:
        staging = guard.make_staging(OUTPUT_DIRS)
        executed_dir = staging / "results" / "notebooks"
        executed_dir.mkdir(parents=True, exist_ok=True)
        runspec.write(dataclasses.replace(spec, root=staging), trial)

        env_before = {k: os.environ.get(k) for k in ("REPLICATION_OUTPUT_ROOT", runspec.ENV_SPEC, "JUPYTER_PATH",
                                                      "PYDEVD_DISABLE_FILE_VALIDATION")}
        _prepare_kernel_env(staging)
        # Parameters are matched by declared_parameters(); papermill's own type-inference notices
        # about them ("Passed unknown parameter" for `x = None`) are noise here.
        logging.getLogger("papermill").setLevel(logging.ERROR)
        try:
            executed = _execute_all(books, executed_dir, runspec.portable_params(spec.params), progress=progress)
        except PipelineError as exc:
            raise PipelineError(f"{exc}\n{guard.keep_failed(exc)}") from exc.__cause__
        finally:
            for k, v in env_before.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

        published_spec = runspec.spec_path(output_root)
        if not needs_data and published_spec.exists():
            # the simulation study alone: the published run.json describes the trial of 01-04's
            # outputs, which this run leaves as they are; its own trial-less spec is not published
            shutil.copy2(published_spec, runspec.spec_path(staging))
        kept = _finish_outputs(staging, executed, runspec.portable_params(spec.params), output_root,
                               title=f"Replication of McLaughlin et al. (2014): {spec.name}")
        if kept:
            print(f"kept {len(kept)} published file(s) that this run reproduced within tolerance "
                  "(numbers differ only in their last digits, e.g. another BLAS kernel):", file=sys.stderr)
            for line in kept:
                print(f"  ~ {line}", file=sys.stderr)
        guard.publish(OUTPUT_DIRS, is_scratch=_is_scratch)
        if output_root.resolve() == paths.ROOT.resolve() and spec.default_run:
            _update_readme(output_root)
        published = [output_root / "results" / "notebooks" / p.name for p in executed]
        if refresh_notebooks:
            # only the notebooks this run executed: an older executed copy must never overwrite
            # a notebook the user has edited since
            target = Path(notebooks or paths.NOTEBOOKS)
            for nb in published:
                _write_editable(nb, target / nb.name)
    return published


#: Notebooks that do not use the trial's data (skipped on own-data runs unless asked for).
SIMULATION_ONLY = ("05_",)
#: Notebook prefix -> prefixes of earlier notebooks it neither reads nor is read by, so they
#: may run at the same time (on a second core). Every other earlier notebook must have finished
#: before a notebook starts. 05, the simulation study, reads no trial data and nothing that
#: 01-04 write, and they never read what it writes (tests/test_pipeline.py runs 05 alone in an
#: empty folder, and 01-04 without it).
INDEPENDENT = {"05_": ("01_", "02_", "03_", "04_")}


def _needs(nb: Path, earlier: list[Path]) -> list[Path]:
    """The earlier notebooks that must have finished before ``nb`` starts."""
    free = next((v for k, v in INDEPENDENT.items() if nb.name.startswith(k)), ())
    return [e for e in earlier if not e.name.startswith(free)]


def parallel_lanes() -> int:
    """Notebooks run at once: 2 where there are 2 cores or more (each kernel is one process)."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def _execute_all(books: list[Path], executed_dir: Path, params: dict, *, progress: bool) -> list[Path]:
    """Execute ``books`` (in order, each as soon as the notebooks it needs have finished; at
    most :func:`parallel_lanes` at once) and return the executed copies in notebook order.

    The next notebook's kernel is started while the current ones run (:mod:`helpers.kernels`).
    A failure stops new notebooks from starting; the ones already running finish, and the
    first failure in notebook order is raised (:class:`PipelineError`). Ctrl-C or SIGTERM
    (a ``KeyboardInterrupt``, anywhere in the loop, even while a kernel starts) kills every
    kernel at once and is raised once the running notebooks have ended.
    """
    lanes = parallel_lanes()
    outs = {nb: executed_dir / nb.name for nb in books}
    labels = {nb: f"[{i}/{len(books)}] {nb.stem}" for i, nb in enumerate(books, 1)}
    needs = {nb: _needs(nb, books[:i]) for i, nb in enumerate(books)}
    done, errors, running = set(), {}, {}  # running: future -> (notebook, lane)
    waiting = list(books)
    warm, used = {}, {}  # notebook -> kernel manager: started ahead / running a notebook
    # A kernel takes a moment to stop politely: stopped in the background, never in the way
    # of the next notebook (all are stopped before this function returns).
    stopper, stopping = ThreadPoolExecutor(max_workers=1), []
    try:
        with ThreadPoolExecutor(max_workers=lanes) as pool:
            try:
                while waiting or running:
                    if not errors:
                        free = sorted(set(range(lanes)) - {lane for _, lane in running.values()})
                        for nb, lane in zip([nb for nb in waiting if all(d in done for d in needs[nb])], free):
                            waiting.remove(nb)
                            used[nb] = warm.pop(nb, None) or _start_kernel(nb)
                            running[pool.submit(_execute, nb, outs[nb], params, label=labels[nb],
                                                progress=progress, lane=lane, km=used[nb])] = (nb, lane)
                        if waiting and not warm:
                            warm[waiting[0]] = _start_kernel(waiting[0])
                    if not running:
                        break
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        nb, _ = running.pop(fut)
                        try:
                            fut.result()
                            done.add(nb)
                        except PipelineError as exc:
                            errors[nb] = exc
                        stopping.append(stopper.submit(_stop_kernel, used.pop(nb)))
            except KeyboardInterrupt:
                # Ctrl-C or SIGTERM: kill the kernels now (the running notebooks then end at once, and
                # the pool's exit waits only for that), a kernel that was starting included
                from helpers import kernels

                # nbclient's "Kernel died" notices are the kill, not news
                logging.getLogger("papermill").setLevel(logging.CRITICAL)
                kernels.kill_all()
                raise
    finally:
        from helpers import kernels

        stopping += [stopper.submit(_stop_kernel, km) for km in [*used.values(), *warm.values()]]
        stopper.shutdown(wait=True)
        # a kernel started but not yet recorded here when Ctrl-C came
        stopping += [_stopped(_stop_kernel, km) for km in kernels.live()]
        for fut in stopping:  # a kernel that would not stop is worth knowing, not worth failing for
            if fut.exception() is not None:
                print(f"warning: a notebook kernel did not shut down cleanly: {fut.exception()!r}", file=sys.stderr)
    if errors:
        raise errors[min(errors, key=books.index)]
    return [outs[nb] for nb in books]


def _stopped(stop, km):
    """``stop(km)`` run now, as a finished future (so its failure is reported like the others)."""
    from concurrent.futures import Future

    fut = Future()
    try:
        stop(km)
        fut.set_result(None)
    except Exception as exc:  # noqa: BLE001 -- reported by the caller as a warning
        fut.set_exception(exc)
    return fut


def _start_kernel(nb: Path):
    """The kernel of notebook ``nb``, started in the notebook's folder (as Jupyter does)."""
    try:
        return kernels.start(KERNEL_NAME, nb.parent.resolve())
    except Exception as exc:  # no such kernel spec, ...: name the notebook that needed it
        raise PipelineError(f"notebook {nb.name} could not be run: its kernel {KERNEL_NAME!r} did not start: "
                            f"{type(exc).__name__}: {exc}") from exc


def _stop_kernel(km) -> None:
    kernels.shutdown(km)




def _write_editable(executed: Path, target: Path) -> None:
    """An executed notebook as the committed, editable copy: without papermill's
    injected-parameters cell, which would override an edit of the ``parameters`` cell in
    JupyterLab (the executed copy in results/notebooks/ keeps it, as a record of the run), and
    with the kernel's Python version in its language_info, which JupyterLab writes into a
    notebook as soon as its kernel starts: without it, every notebook would open marked modified
    (with another Python patch version it still does; nbval and the outputs' comparison ignore
    metadata)."""
    import nbformat  # see declared_parameters

    nb = nbformat.read(str(executed), as_version=4)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    nb.metadata.setdefault("language_info", {})["version"] = platform.python_version()
    atomic_write_text(target, nbformat.writes(nb) + "\n")


REPORT_NOTEBOOK = "04_replication_report.ipynb"


def _finish_outputs(staging: Path, executed: list[Path], params: dict, output_root: Path, *,
                    title: str = "Replication report") -> list[str]:
    """Steps after the notebooks: this run's executed copies normalised (no run timestamps,
    streams merged), the static HTML report (when the report notebook ran), the published
    files that show the same thing kept (:func:`helpers.manifest.reconcile`), and the manifest
    of every generated file. Returns the lines naming the files kept."""
    import nbformat  # see declared_parameters


    for path in executed:
        nb = notebook.normalise_executed(nbformat.read(str(path), as_version=4))
        atomic_write_text(path, nbformat.writes(nb) + "\n")
    executed_report = staging / "results" / "notebooks" / REPORT_NOTEBOOK
    if executed_report in executed:
        notebook.export_html(executed_report, staging / "results" / "report.html", title=title)
    kept = manifest.reconcile(staging, output_root)
    manifest.write_manifest(staging, params, published_root=output_root)
    return kept


def _update_readme(output_root: Path) -> None:
    """Splice the default run's results fragment into the README (between its markers)."""
    fragment = output_root / "results" / "readme_results.md"
    if fragment.is_file() and report.update_readme(fragment.read_text(encoding="utf-8")):
        print("README.md results section updated from this default run", file=sys.stderr)


def verify(manifest_path=None, *, progress=True) -> list[tuple]:
    """Re-run the default pipeline in a temporary folder and compare every generated file with
    the committed one by its kind (``make verify``; :func:`helpers.manifest.verify_outputs`).

    Returns ``(path, kind, Comparison)`` per file.
    """
    with tempfile.TemporaryDirectory(prefix="replication-verify-") as tmp:
        run(load_params(), output_root=tmp, progress=progress)
        # a run publishing into the repository meanwhile is waited for: never a half-published set
        with publish.reading(paths.ROOT):
            return manifest.verify_outputs(tmp, paths.ROOT, manifest_path)


def _prepare_kernel_env(staging: Path) -> None:
    # the notebooks open this run's specification (helpers.runspec.open_run)
    os.environ[runspec.ENV_SPEC] = str(runspec.spec_path(staging))
    os.environ["REPLICATION_OUTPUT_ROOT"] = str(staging)
    # The active environment's kernel spec first: no global kernel registration needed.
    prefix_share = str(Path(sys.prefix) / "share" / "jupyter")
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = prefix_share + (os.pathsep + old if old else "")
    # Silences debugpy's frozen-modules warning printed at every kernel start.
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"


def _execute(nb: Path, out: Path, params: dict, *, label: str, progress: bool, lane: int, km) -> None:
    """Run one notebook with papermill in the kernel ``km`` (started by :mod:`helpers.kernels`
    in the notebook's folder, with its options; the caller shuts it down)."""
    import papermill as pm  # ~2 s to import: only when a notebook runs
    from papermill.exceptions import PapermillExecutionError

    wanted = declared_parameters(nb)
    # in name order: the injected cell is the same whichever notebooks this run executes
    passed = {k: params[k] for k in sorted(params) if k in wanted}
    t0 = time.perf_counter()
    try:
        # No cwd=: the kernel already runs in the notebook's folder, and papermill's cwd= would
        # chdir the whole process per call, which races between lanes.
        # The executed notebook is written once at the end (with the error marked, on failure),
        # not twice per cell: papermill's per-cell saves (for watching a long notebook, which the
        # progress bar does) re-validated and re-wrote the whole notebook ~40 times.
        pm.execute_notebook(
            str(nb), str(out), parameters=passed, kernel_name=KERNEL_NAME,
            progress_bar={"desc": label, "leave": True, "position": lane} if progress else False,
            log_output=False, request_save_on_cell_execute=False, km=km,
        )
    except PapermillExecutionError as exc:
        raise PipelineError(
            f"notebook {nb.name} failed in cell {_original_cell_number(out, exc.cell_index)}, "
            f"{_failing_statement(exc)}: {exc.ename}: {exc.evalue}"
        ) from exc
    except Exception as exc:  # kernel died, bad notebook JSON, ...: still name the notebook
        raise PipelineError(f"notebook {nb.name} could not be run: {type(exc).__name__}: {exc}") from exc
    if progress:
        print(f"{label}: done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)


def _failing_statement(exc) -> str:
    """``line K: <statement>`` of the cell line that raised (the innermost frame in the cell,
    from IPython's traceback), not the cell's first line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(exc.traceback or []))
    hits = re.findall(r"Cell In\[\d+\], line (\d+)", text)
    lines = (exc.source or "").splitlines()
    if hits and 0 < int(hits[0]) <= len(lines):  # the first frame is the failing cell's own
        k = int(hits[0])
        return f"line {k}: {lines[k - 1].strip()!r}"
    first = next((ln.strip() for ln in lines if ln.strip()), "empty cell")
    return f"starting {first!r}"


def _original_cell_number(executed, cell_index) -> int:
    """1-based number of the failing cell in the *committed* notebook: papermill's index
    counts the injected-parameters cell, which the reader's copy does not have."""
    import nbformat  # see declared_parameters

    cells = nbformat.read(str(executed), as_version=4).cells
    injected = sum("injected-parameters" in c.metadata.get("tags", []) for c in cells[:cell_index])
    return cell_index - injected + 1


def _is_scratch(path: Path) -> bool:
    """Files the runner never publishes nor deletes: dot-files (.gitkeep, temporaries); a
    published one that the staged folders lack is carried over when publishing."""
    return path.name.startswith(".")


# ----------------------------------------------------------------------------- CLI
def parameter_help(defaults=None) -> str:
    """Every parameter with its default and meaning, read from ``params/default.yaml`` (its
    comments are the documentation), for ``--help``."""
    lines = []
    for line in Path(defaults or paths.DEFAULT_PARAMS).read_text(encoding="utf-8").splitlines():
        if line.startswith("# ---"):
            lines.append("\n" + line.strip("# -").strip() + ":")
        m = re.match(r"^(\w+):\s*(.*?)\s*(?:#\s*(.*))?$", line)
        if m:
            lines.append(f"  {m.group(1)} (default {m.group(2)}): {m.group(3) or ''}".rstrip(": "))
    return "\n".join(lines)


EXAMPLES = """examples:
  python -m helpers.pipeline                                            # the default run (simulated data)
  python -m helpers.pipeline --set data_source=data/raw/example_other_trial   # a trial's own data (dataset.yaml)
  python -m helpers.pipeline --set criterion=sd --set k=1               # another rupture criterion -> runs/<name>/
"""


def main(argv=None) -> int:
    """The command line; returns the exit code. Every expected failure is one message, not a
    traceback: 1 for a failed or refused run, 130 / 143 for Ctrl-C / SIGTERM."""
    with publish.interruptible():  # SIGTERM too ends as "interrupted", with the cleanup of Ctrl-C
        try:
            return _main(argv)
        except KeyboardInterrupt as exc:
            print(publish.interrupted_message(exc), file=sys.stderr)
            return publish.exit_code(exc)


def _failure(exc: BaseException) -> str:
    """The one line a failed run prints."""
    if isinstance(exc, publish.RunBusy):
        return f"pipeline not started: {exc}"
    if isinstance(exc, KeyError) and exc.args:
        return f"pipeline failed: {exc.args[0]}"  # KeyError's str() quotes its message
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and exc.filename:
        return f"pipeline failed: {exc.filename}: {exc.strerror or exc}"
    return f"pipeline failed: {exc}"


#: Failures that are the user's to fix (a parameter, the data, the output folder, another run):
#: one line each; anything else is a bug and keeps its traceback.
EXPECTED = (PipelineError, KeyError, ValueError, OSError, publish.RunBusy, publish.OutputError)


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.pipeline", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="parameters (--set KEY=VALUE; defaults from params/default.yaml):" + parameter_help()
               + "\n\nThe default run publishes into the repository (data/processed, results, figures); any other "
                 "run into runs/<name>/ (git-ignored).\n\n" + EXAMPLES)
    parser.add_argument("--params", help="YAML file overriding params/default.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one parameter (repeatable); value parsed as YAML")
    parser.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (name prefixes)")
    parser.add_argument("--notebooks", help="folder of notebooks (default notebooks/)")
    parser.add_argument("--output-root", help="publish outputs here (default: the repository for the default run, "
                                              "runs/<name>/ for any other)")
    parser.add_argument("--refresh-notebooks", action="store_true",
                        help="copy the executed notebooks over the committed ones (default run only)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--wait", action="store_true",
                        help="when another run is writing the same outputs, wait for it to finish (default: refuse)")
    parser.add_argument("--verify", action="store_true",
                        help="re-run the default pipeline in a temporary folder and compare every "
                             "generated file with the committed one (make verify)")
    args = parser.parse_args(argv)
    if args.verify:
        try:
            rows = verify(progress=not args.no_progress)
        except EXPECTED as exc:
            print(_failure(exc).replace("pipeline failed", "verify failed"), file=sys.stderr)
            return 1
        text, ok = manifest.format_verify(rows)
        print(text, file=sys.stderr)
        return 0 if ok else 1
    try:
        params = load_params(args.params, args.set)
        executed = run(params, notebooks=args.notebooks, only=args.only, output_root=args.output_root,
                       refresh_notebooks=args.refresh_notebooks, progress=not args.no_progress, wait=args.wait)
    except EXPECTED as exc:
        print(_failure(exc), file=sys.stderr)
        return 1
    root = executed[0].parents[2] if executed else paths.ROOT
    where = "" if root.resolve() == paths.ROOT.resolve() else f" under {root}"
    print(f"ran {len(executed)} notebook(s); outputs{where} in data/processed, results, figures", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
