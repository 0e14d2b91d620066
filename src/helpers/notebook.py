"""Notebook conventions: :func:`setup` at the top of every notebook (every warning shown as a
sentence, display options), :func:`load_processed` for the tables notebook 01 hands on (with
the dataset's name, instruments and the simulated-data flag and caption), and the one stored
form of an executed notebook (:func:`normalise_executed`).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field

import pandas as pd

#: What notebook 01 records about the data for the later notebooks (in data/processed/).
DATASET_INFO = "dataset.json"


def _format(message, category, filename, lineno, line=None) -> str:
    # a sentence, without the kernel's temporary file path (it changes on every run)
    return f"Warning: {message}\n"


def setup(precision: int = 3) -> None:
    """Every warning shown each time it occurs (non-convergence, dropped rows: a reader must
    see them), as ``Warning: message``; pandas shows ``precision`` decimals, long cells in full."""
    warnings.simplefilter("always")
    warnings.formatwarning = _format
    pd.set_option("display.precision", precision)
    pd.set_option("display.max_colwidth", 120)


def dataset_info(trial) -> dict:
    """What the later notebooks need to know about the data: name, simulated or real, the
    instruments by role, the measures present and absent, the number of sessions."""
    from helpers import instruments

    meta = trial.meta
    simulated = bool(trial.simulated or meta.get("simulated", False))
    return {
        "name": meta.get("dataset") or ("simulated trial" if trial.simulated else str(trial.source)),
        "simulated": simulated,
        "has_truth": trial.truth is not None,
        "n_sessions": int(meta.get("n_sessions") or trial.sessions["session"].max()),
        "instruments": meta.get("instruments") or instruments.as_dict(instruments.DEFAULTS),
        "absent": sorted(meta.get("absent", [])),
    }


def write_dataset_info(trial, folder) -> "Path":  # noqa: F821
    from pathlib import Path

    from helpers.tables import atomic_write_text

    info = dataset_info(trial)
    return atomic_write_text(Path(folder) / DATASET_INFO, json.dumps(info, indent=1, sort_keys=True) + "\n")


@dataclass
class Processed:
    """The processed tables and what is known about the data (see :func:`load_processed`)."""

    sessions: pd.DataFrame
    participants: pd.DataFrame
    patterns: pd.DataFrame | None
    episodes: pd.DataFrame | None
    truth: pd.DataFrame | None
    info: dict = field(default_factory=dict)

    @property
    def simulated(self) -> bool:
        return bool(self.info.get("simulated", self.truth is not None))

    @property
    def caption(self) -> str:
        """Appended to every figure title: simulated-data outputs say so."""
        return " · SIMULATED DATA" if self.simulated else ""

    @property
    def name(self) -> str:
        return self.info.get("name", "")

    @property
    def instruments(self) -> dict:
        from helpers import instruments

        return instruments.from_dicts(self.info.get("instruments"))

    def has(self, column: str) -> bool:
        """Whether the data hold ``column`` (declared and not all missing)."""
        from helpers.available import has_column

        table = self.participants if column in self.participants.columns else self.sessions
        return column not in self.info.get("absent", []) and has_column(table, column)

    def banner(self, what: str = "these results") -> None:
        """The simulated-data notice (or the real dataset's name) as a Markdown block."""
        from IPython.display import Markdown, display

        if self.simulated:
            display(Markdown(f"> **Simulated data** ({self.name}; see notebook 01): {what} show what the pipeline "
                             "finds in data drawn from a model built to match the paper; they are not evidence "
                             "about real clients."))
        else:
            display(Markdown(f"> **Data: {self.name}.**"))


def load_processed(folder=None, *, use_instruments: bool = True) -> Processed:
    """The tables notebook 01 (and 02) wrote, with the dataset's description.

    ``patterns`` and ``episodes`` are None before notebook 02 has run; ``truth`` is None for
    real data. With ``use_instruments`` the figures' axis titles follow the data's
    instruments (:func:`helpers.figures.use_instruments`).
    """
    from pathlib import Path

    from helpers import paths
    from helpers.tables import read_table

    folder = Path(folder or paths.PROCESSED)

    def optional(name):
        return read_table(folder / name) if (folder / name).exists() else None

    info_path = folder / DATASET_INFO
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    out = Processed(read_table(folder / "sessions.csv"), read_table(folder / "participants.csv"),
                    optional("patterns.csv"), optional("episodes.csv"), optional("truth.csv"), info)
    if use_instruments:
        from helpers import figures

        figures.use_instruments(out.instruments)
    return out


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
