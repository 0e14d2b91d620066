"""Registry-sized trials through the own-data route, end to end (a script, not a test).

For each size (default 10,000 and 100,000 clients x 10 sessions) a simulated trial is written
as a researcher would hold it -- long CSV files with their own column names and codes, declared
by a ``dataset.yaml`` -- and the whole own-data run is made on it, as
``python -m helpers.pipeline --set data_source=<folder> --output-root <temporary folder>``
does (in this process, so that the executed notebooks' cell timings can be read before the
runner normalises them away). Printed, and written to ``benchmarks/results_registry.md``:

* the time of the run, of loading the data alone (rows per second), of each notebook and of
  its slowest cells;
* the peak memory over all processes (this one and every kernel it starts: the sum of their
  resident set sizes, sampled every 0.1 s);
* the size of the outputs (data/processed, results, figures) and their largest files.

The issue's budget for 100,000 clients: <= 90 s, <= 2 GB, <= 20 MB of outputs.

Run: ``.venv/bin/python benchmarks/bench_registry.py [--sizes 10000 100000] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

DESCRIPTOR = """name: Registry benchmark {n} clients
description: SIMULATED registry-sized trial (benchmarks/bench_registry.py)
simulated: true
files:
  sessions: sessions.csv
  participants: participants.csv
layout: long
n_sessions: {sessions}
columns:
  participant_id: client
  session: visit
  alliance: calpas
  pss_sr: pss
  pss_sr_pre: pss_pre
  pss_sr_post: pss_post
  pss_i_pre: pssi_pre
  pss_i_post: pssi_post
  bdi_pre: bdi_pre
  bdi_post: bdi_post
  mdd: mdd
  child_abuse: abuse
  female: gender
  caucasian: caucasian
  age: age
codes:
  female: {{1: false, 2: true}}
instruments:
  alliance: {{name: CALPAS-P, range: [1, 7], score: mean item score, reliability: 0.83}}
"""


def write_trial(folder: Path, n: int, sessions: int = 10, seed: int = 20131106) -> Path:
    """A simulated trial of ``n`` clients in the declared format (long CSV, own names, codes)."""
    import numpy as np

    from helpers import simulate
    from helpers.table_io import write_table

    trial = simulate.simulate_trial(n_participants=n, n_sessions=sessions, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    s = trial.sessions.rename(columns={"participant_id": "client", "session": "visit", "alliance": "calpas",
                                       "pss_sr": "pss"})
    p = trial.participants.rename(columns={"participant_id": "client", "pss_sr_pre": "pss_pre",
                                           "pss_sr_post": "pss_post", "pss_i_pre": "pssi_pre",
                                           "pss_i_post": "pssi_post", "child_abuse": "abuse", "female": "gender"})
    p["gender"] = np.where(p["gender"].astype(bool), 2, 1)
    write_table(s, folder / "sessions.csv", sort_by=["client", "visit"])
    write_table(p, folder / "participants.csv", sort_by=["client"])
    (folder / "dataset.yaml").write_text(DESCRIPTOR.format(n=n, sessions=sessions), encoding="utf-8")
    return folder


class PeakMemory:
    """The largest sum of resident set sizes of this process and all its descendants, sampled
    every ``interval`` seconds while the block runs."""

    def __init__(self, interval: float = 0.1):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self.loads = []  # the machine's 1-minute load average meanwhile: other work slows the run

    def _sample(self):
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self.loads.append(os.getloadavg()[0])
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _capture_cell_times(store: dict):
    """Wrap the runner's normalisation of executed notebooks so that each cell's papermill
    duration is recorded first (the normalised notebooks carry no timings)."""
    from helpers import notebook

    real = notebook.normalise_executed

    def recording(nb):
        name = nb.metadata.get("papermill", {}).get("input_path")
        if name is None:  # not an executed notebook of the run (e.g. the report's export)
            return real(nb)
        cells = []
        for i, cell in enumerate(nb.cells, 1):
            duration = cell.metadata.get("papermill", {}).get("duration")
            if cell.cell_type == "code" and duration is not None:
                first = next((ln for ln in cell.source.splitlines() if ln.strip() and not ln.startswith("#")), "")
                cells.append((float(duration), i, first.strip()[:70]))
        store[Path(name).stem] = cells
        return real(nb)

    notebook.normalise_executed = recording
    return lambda: setattr(notebook, "normalise_executed", real)


def output_size(root: Path) -> tuple[int, list]:
    files = [p for d in ("data/processed", "results", "figures") for p in (root / d).rglob("*") if p.is_file()]
    sizes = sorted(((p.stat().st_size, p.relative_to(root).as_posix()) for p in files), reverse=True)
    return sum(s for s, _ in sizes), sizes[:6]


def measure(n: int, work: Path) -> dict:
    """One size: write the trial, load it alone, then run the own-data pipeline."""
    import warnings

    from helpers import descriptor, pipeline

    folder = write_trial(work / f"trial-{n}", n)
    rows = sum(1 for _ in open(folder / "sessions.csv")) + sum(1 for _ in open(folder / "participants.csv")) - 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tic = time.perf_counter()
        descriptor.load(folder, warn=False)
        load = time.perf_counter() - tic
    out = work / f"out-{n}"
    cells: dict = {}
    restore = _capture_cell_times(cells)
    try:
        with PeakMemory() as mem:
            tic = time.perf_counter()
            code = pipeline.main(["--set", f"data_source={folder}", "--output-root", str(out), "--no-progress"])
            seconds = time.perf_counter() - tic
    finally:
        restore()
    total, largest = output_size(out)
    return {"n": n, "rows": rows, "load": load, "code": code, "seconds": seconds, "peak": mem.peak, "bytes": total,
            "largest": largest, "cells": cells, "machine": sum(mem.loads) / max(len(mem.loads), 1)}


def report(results: list) -> str:
    lines = [f"# Registry-sized own trials, end to end ({platform.node()}, {platform.python_version()})", "",
             "`benchmarks/bench_registry.py`: simulated trials of N clients x 10 sessions, declared in a dataset.yaml "
             "(long CSV, own column names, gender coded 1/2), run with `python -m helpers.pipeline --set "
             "data_source=...`. Budget at 100,000 clients: <= 90 s, <= 2 GB, <= 20 MB.", "",
             f"Cores: {os.cpu_count()}; the load average column is the machine's mean 1-minute load during the run "
             "(above the number of cores, other work was slowing this one).", "",
             "| clients | exit | run | loading alone | peak memory (all processes) | outputs | load average |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['n']:,} | {r['code']} | {r['seconds']:.1f} s | {r['load']:.1f} s "
                     f"({r['rows'] / r['load']:,.0f} rows/s) | {r['peak'] / 2**30:.2f} GB | {r['bytes'] / 2**20:.1f} MB "
                     f"| {r['machine']:.1f} |")
    for r in results:
        lines += ["", f"## {r['n']:,} clients", "", "| notebook | cells' time | slowest cells (s, cell, first line) |",
                  "|---|---|---|"]
        for name, cells in r["cells"].items():
            top = "; ".join(f"{d:.1f} s #{i} `{src}`" for d, i, src in sorted(cells, reverse=True)[:4])
            lines.append(f"| {name} | {sum(d for d, _, _ in cells):.1f} s | {top} |")
        lines += ["", "Largest outputs: " + ", ".join(f"`{rel}` {size / 2**20:.1f} MB" for size, rel in r["largest"])]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--keep", help="keep the trials and outputs in this folder")
    parser.add_argument("--no-write", action="store_true", help="do not write benchmarks/results_registry.md")
    args = parser.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-registry-"))
    try:
        results = []
        for n in args.sizes:
            results.append(measure(n, work))
            r = results[-1]
            print(f"{n:,} clients: exit {r['code']}, {r['seconds']:.1f} s, loading {r['load']:.1f} s "
                  f"({r['rows'] / r['load']:,.0f} rows/s), peak {r['peak'] / 2**30:.2f} GB, outputs "
                  f"{r['bytes'] / 2**20:.1f} MB", flush=True)
        text = report(results)
        print(text)
        if not args.no_write:
            (ROOT / "benchmarks" / "results_registry.md").write_text(text, encoding="utf-8")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
