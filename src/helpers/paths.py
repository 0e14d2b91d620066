"""Every path the project uses, anchored at the repository root.

Notebooks, the runner and the tests import these instead of writing relative paths, so a
notebook behaves the same whether papermill runs it from ``notebooks/`` or from elsewhere.
The root can be moved (e.g. ``make verify`` runs in a temporary copy) with the environment
variable ``REPLICATION_ROOT``.

Generated outputs live under an *output root* (:class:`Outputs`): the repository for the
default run, ``runs/<name>/`` beside it (:func:`runs_root`) for any other, the runner's staging folder while a run is
executing. A run's output root is part of its run specification (:mod:`helpers.runspec`);
:func:`output_root` gives the default run's, read from ``REPLICATION_OUTPUT_ROOT`` when the
caller asks (the tests point it at a temporary folder), never frozen at import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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

#: Output folders, relative to an output root, that a run writes.
OUTPUT_DIRS = ("data/processed", "results", "figures")


@dataclass(frozen=True)
class Outputs:
    """The generated-output folders under one output root.

    >>> Outputs(Path("/tmp/x")).tables.as_posix()
    '/tmp/x/results/tables'
    """

    root: Path

    @property
    def processed(self) -> Path:
        return self.root / "data" / "processed"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def tables(self) -> Path:
        return self.results / "tables"

    @property
    def executed(self) -> Path:
        return self.results / "notebooks"


def output_root() -> Path:
    """The default run's output root: ``REPLICATION_OUTPUT_ROOT`` if set (read now), else the
    repository."""
    return Path(os.environ.get("REPLICATION_OUTPUT_ROOT") or ROOT).resolve()


def runs_root() -> Path:
    """Where runs other than the default publish, ``runs/<name>/`` (git-ignored), and where
    ``runs/.current`` names the run that notebooks run by hand continue: beside the default
    run's outputs, so that a test session (whose output root is a temporary folder) neither
    reads nor moves a user's current run.

    >>> runs_root() == output_root() / "runs"
    True
    """
    return output_root() / "runs"
