"""Every path the project uses, anchored at the repository root.

Notebooks, the runner and the tests import these instead of writing relative paths, so a
notebook behaves the same whether papermill runs it from ``notebooks/`` or from elsewhere.
The root can be moved (e.g. ``make verify`` runs in a temporary copy) with the environment
variable ``REPLICATION_ROOT``. Generated outputs (``data/processed``, ``figures``, ``results``)
live under ``REPLICATION_OUTPUT_ROOT`` when it is set: the pipeline points it at a staging
folder so that a failed run never touches the published outputs.
"""

from __future__ import annotations

import os
from pathlib import Path


def _find_root() -> Path:
    env = os.environ.get("REPLICATION_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "params").is_dir():
            return parent
    # Installed without the repository (e.g. a wheel): use the working directory.
    return Path.cwd().resolve()


ROOT = _find_root()
#: Inputs: always read from the repository.
PARAMS = ROOT / "params"
DEFAULT_PARAMS = PARAMS / "default.yaml"
NOTEBOOKS = ROOT / "notebooks"
DATA = ROOT / "data"
RAW = DATA / "raw"
EXAMPLE = RAW / "example"

#: Outputs: under the output root (the repository, or the pipeline's staging folder).
OUTPUT_ROOT = Path(os.environ.get("REPLICATION_OUTPUT_ROOT") or ROOT).resolve()
PROCESSED = OUTPUT_ROOT / "data" / "processed"
FIGURES = OUTPUT_ROOT / "figures"
RESULTS = OUTPUT_ROOT / "results"
TABLES = RESULTS / "tables"
EXECUTED = RESULTS / "notebooks"
