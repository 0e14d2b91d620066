"""Notebook conventions, set up in one call at the top of every notebook.

* every warning is shown, each time it occurs (non-convergence, dropped rows: a reader must
  see them), formatted as ``Category: message`` -- without the kernel's temporary file path,
  which changes on every run and would make the committed outputs and the HTML report differ
  between identical runs;
* pandas shows 3 decimals and long cells in full.
"""

from __future__ import annotations

import warnings

import pandas as pd


def _format(message, category, filename, lineno, line=None) -> str:
    return f"{category.__name__}: {message}\n"


def setup(precision: int = 3) -> None:
    warnings.simplefilter("always")
    warnings.formatwarning = _format
    pd.set_option("display.precision", precision)
    pd.set_option("display.max_colwidth", 120)


def strip_run_metadata(nb):
    """Remove what only says *when* a notebook ran (in place; returns ``nb``).

    Papermill's and Jupyter's per-cell timings, papermill's input/output paths (the staging
    folder), and the random id papermill gives its injected-parameters cell on every run.
    The parameters used are kept. Committed notebooks and the HTML report are then
    byte-identical across runs of the same code and data.
    """
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell["id"] = "injected-parameters"
    used = nb.metadata.get("papermill", {}).get("parameters", {})
    nb.metadata["papermill"] = {"parameters": used}
    return nb
