"""Notebook conventions: :func:`setup` at the top of every notebook (every warning shown as a
sentence, display options), the run's summary as a reader sees it first (:func:`run_summary`),
text from the data made safe to show (:func:`escape_markdown`), and the one stored form of an
executed notebook (:func:`normalise_executed`) and its static HTML page (:func:`export_html`).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pandas as pd

from helpers.markup import escape_markdown
from helpers.table_io import atomic_write_text


def _format(message, category, filename, lineno, line=None) -> str:
    # a sentence, without the kernel's temporary file path (it changes on every run)
    return f"Warning: {message}\n"


def setup(precision: int = 3) -> None:
    """Every warning shown each time it occurs (non-convergence, dropped rows: a reader must
    see them), as ``Warning: message``; pandas shows ``precision`` decimals, long cells in full;
    figures shown in the notebook whatever ``MPLBACKEND`` says (:func:`inline_figures`)."""
    warnings.simplefilter("always")
    warnings.formatwarning = _format
    pd.set_option("display.precision", precision)
    pd.set_option("display.max_colwidth", 120)
    inline_figures()


def inline_figures() -> None:
    """In a Jupyter kernel, draw figures into the notebook (the inline backend). A headless
    server or CI image often sets ``MPLBACKEND=Agg``, which a kernel would otherwise obey: its
    figures would then be saved but never shown, and the executed notebooks and the report would
    lose them. Outside a kernel (a script, the tests) nothing changes."""
    # lazily: the runner imports this module, and needs neither (matplotlib ~0.3 s); a kernel has both
    import matplotlib
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None and "inline" not in matplotlib.get_backend():
        shell.run_line_magic("matplotlib", "inline")


def run_summary(spec) -> str:
    """What a reader must know first about a run (Markdown, for the top of notebook 01 and the
    report): the trial, its size, its instruments (and which are the replication's defaults),
    the rupture criterion and the warnings about the data. ``spec``: a
    :class:`helpers.runspec.RunSpec`."""
    d = spec.dataset
    observed = f" (alliance observed in sessions {d['sessions'][0]}–{d['sessions'][1]})" if d["sessions"] else ""
    parts = [f"**This run:** {escape_markdown(spec.name)} — {d['n_participants']} clients, {d['n_sessions']} "
             f"sessions{observed}.", "**Instruments**\n\n" + spec.instruments_markdown()]
    if spec.defaulted:
        names = ", ".join(f"{spec.instruments[r].name} for {r}" for r in spec.defaulted)
        parts.append(f"> **Default instruments assumed.** The dataset declares no instrument for "
                     f"{', '.join(spec.defaulted)}: the replication's defaults ({names}) are used for their names, "
                     "ranges and reliability. Declare the trial's own under `instruments:` in its dataset.yaml.")
    parts.append(spec.criterion_markdown())
    if d["warnings"]:
        parts.append("**Warnings about the data** (the runner printed them too):\n\n"
                     + "\n".join(f"* {escape_markdown(w)}" for w in d["warnings"]))
    return "\n\n".join(parts)


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


#: Cells tagged so stay in the notebook but not in its HTML page (housekeeping: files written).
REPORT_EXCLUDE = "report-exclude"


def export_html(notebook, out, *, title: str = "Replication report") -> Path:
    """Export an executed notebook to a self-contained static HTML page.

    Code is hidden, figures are embedded as data URIs, cells tagged :data:`REPORT_EXCLUDE` are
    left out, the page has ``title``, and nothing is loaded from the network: the MathJax and
    RequireJS script tags that nbconvert's template points at a CDN are removed (the report has
    no equations or widgets). The run's timing metadata is stripped first, so the page is
    byte-identical across runs of the same results.
    """
    # lazily: nbformat and nbconvert take 1-3 s to import, and only the runner's last step needs them
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    nb = normalise_executed(nbformat.read(str(notebook), as_version=4))
    exporter = HTMLExporter(template_name="lab", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, embed_images=True)
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={REPORT_EXCLUDE}), enabled=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    body = _with_alt_texts(body, nb)
    body = re.sub(r'<script[^>]+src="https?://[^"]*"[^>]*>\s*</script>', "", body)
    body = re.sub(r"<script[^>]*>\s*require\.config\(.*?</script>", "", body, flags=re.S)
    return atomic_write_text(out, body)


def _image_alt_texts(nb) -> list:
    """The alt text of every PNG the page will show, in order: the output's ``image/png``
    metadata ``alt`` (``display(Image(..., metadata={"alt": ...}))``), else the cell's ``alt``."""
    alts = []
    for cell in nb.cells:
        if cell.cell_type != "code" or REPORT_EXCLUDE in cell.metadata.get("tags", []):
            continue
        for out in cell.get("outputs", []):
            if "image/png" in out.get("data", {}):
                alts.append(out.get("metadata", {}).get("image/png", {}).get("alt") or cell.metadata.get("alt"))
    return alts


def _with_alt_texts(body: str, nb) -> str:
    """nbconvert's lab template ignores alt texts (and gives every image the same placeholder):
    set each image's own, escaped."""
    from bs4 import BeautifulSoup  # nbconvert's own dependency; imported with it

    soup = BeautifulSoup(body, features="html.parser")
    for img, alt in zip(soup.select("img"), _image_alt_texts(nb)):
        if alt:
            img["alt"] = alt
    return str(soup)
