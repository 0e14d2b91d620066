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


def normalise_executed(nb):
    """An executed notebook in the one form it is stored in (in place; returns ``nb``).

    The same code and data must give the same file on every run and machine, so this removes
    what only says *when* or *where* a notebook ran: papermill's and Jupyter's per-cell timings,
    papermill's input/output paths (the staging folder), the random id papermill gives its
    injected-parameters cell, and the Python patch version. Consecutive stream outputs of one
    cell are merged: the kernel may send one ``print()`` as one message or as two (text, then
    ``"\\n"``), depending on timing. The parameters used are kept.
    """
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell["id"] = "injected-parameters"
        if cell.cell_type == "code":
            cell.outputs = merge_streams(cell.outputs)
    used = nb.metadata.get("papermill", {}).get("parameters", {})
    nb.metadata["papermill"] = {"parameters": used}
    nb.metadata.get("language_info", {}).pop("version", None)
    return nb


def merge_streams(outputs: list) -> list:
    """Consecutive stream outputs of the same stream (stdout, stderr) joined into one.

    >>> import nbformat
    >>> outs = [nbformat.v4.new_output("stream", name="stdout", text="a"),
    ...         nbformat.v4.new_output("stream", name="stdout", text="\\n"),
    ...         nbformat.v4.new_output("stream", name="stderr", text="w\\n")]
    >>> [(o.name, o.text) for o in merge_streams(outs)]
    [('stdout', 'a\\n'), ('stderr', 'w\\n')]
    """
    merged = []
    for out in outputs:
        prev = merged[-1] if merged else None
        if (out.get("output_type") == "stream" and prev is not None
                and prev.get("output_type") == "stream" and prev.get("name") == out.get("name")):
            prev["text"] = prev["text"] + out["text"]
        else:
            merged.append(out)
    return merged
