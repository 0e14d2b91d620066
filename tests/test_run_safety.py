"""Runs that cannot hurt each other or the user (helpers.publish): one run per output root,
staging folders owned by their run, Ctrl-C / SIGTERM / SIGKILL, publishing that a crash cannot
leave half-done, and file-system errors as messages."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from helpers import pipeline, publish

DIRS = pipeline.OUTPUT_DIRS


def _notebook(path, *cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, path)
    return path


WRITE = """from helpers import paths
import time
out = paths.Outputs(paths.output_root())
out.tables.mkdir(parents=True, exist_ok=True)
out.figures.mkdir(parents=True, exist_ok=True)
(out.tables / "started").write_text("yes")
time.sleep({sleep})
(out.tables / "table.csv").write_text("{text}")
(out.figures / "figure.svg").write_text("{text}")
(out.tables / "started").unlink()
"""


def _books(folder: Path, text="new", sleep=0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for p in folder.glob("*.ipynb"):
        p.unlink()
    _notebook(folder / "01_write.ipynb", WRITE.format(text=text, sleep=sleep))
    return folder


def _cli(books, out, *extra, env=None, **kwargs):
    """The command as a user types it (a process of its own: signals go to it, not to pytest)."""
    cmd = [sys.executable, "-m", "helpers.pipeline", "--notebooks", str(books), "--output-root", str(out),
           "--no-progress", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, **kwargs)


def _tree(root: Path) -> dict:
    """Every published file and its bytes (what a user sees)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for d in DIRS for p in sorted((root / d).rglob("*"))
            if p.is_file()}


def _published(tmp_path, text="old") -> tuple[Path, dict]:
    """An output root holding the outputs of a finished run."""
    out = tmp_path / "out"
    books = _books(tmp_path / f"books-{text}", text=text)
    proc = _cli(books, out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out, _tree(out)


def _kernels_of(root: Path) -> list[int]:
    """Pids of processes (kernels) whose command line names a file under ``root``."""
    needle = str(root).encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (proc / "cmdline").read_bytes() and (proc / "stat").read_text().split()[2] != "Z":
                found.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _wait_for(predicate, timeout=60.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _running(out: Path) -> bool:
    return bool(list(out.glob(".staging-*/results/tables/started")))


# ----------------------------------------------------------------------------- the lock
def test_a_second_run_is_refused_naming_the_first(tmp_path, capsys):
    out = tmp_path / "out"
    books = _books(tmp_path / "books")
    with publish.lock(out):
        rc = pipeline.main(["--notebooks", str(books), "--output-root", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1, err
    assert f"another run (pid {os.getpid()}, started at " in err and f"is writing {out}" in err and "--wait" in err
    assert not (out / "results").exists() and not list(out.glob(".staging-*"))  # it wrote nothing
    assert not (out / publish.OWNER_NAME).exists()  # the holder's record goes with its lock


@pytest.mark.slow
def test_with_wait_the_second_run_starts_when_the_first_has_finished(tmp_path):
    import threading

    out = tmp_path / "out"
    books = _books(tmp_path / "books")
    lines = []
    with publish.lock(out):
        proc = _cli(books, out, "--wait")
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        reader.start()
        _wait_for(lambda: any("waiting for" in ln for ln in lines) or proc.poll() is not None, 60, "the waiting notice")
        assert proc.poll() is None and not (out / "results").exists()
    assert proc.wait(timeout=120) == 0, lines
    reader.join(timeout=10)
    assert any(f"waiting for another run (pid {os.getpid()}" in ln for ln in lines), lines
    assert (out / "results" / "tables" / "table.csv").read_text() == "new"


@pytest.mark.slow
def test_two_runs_started_together_one_refused_one_publishing_a_single_runs_outputs(tmp_path):
    out = tmp_path / "out"
    books = _books(tmp_path / "books", sleep=5)  # the second run meets the first however slow the machine
    alone = _cli(books, tmp_path / "alone")
    assert alone.wait(timeout=120) == 0
    procs = [_cli(books, out), _cli(books, out)]
    results = [p.communicate(timeout=180) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], results
    refused = next(err for p, (_, err) in zip(procs, results) if p.returncode == 1)
    assert refused.startswith("pipeline not started: another run (pid ") and f"is writing {out}" in refused
    assert "Traceback" not in refused and refused.count("\n") == 1
    assert _tree(out) == _tree(tmp_path / "alone")


# ----------------------------------------------------------------------------- leftovers
def _staging_of(root: Path, owner: dict | None) -> Path:
    staging = root / f"{publish.STAGING_PREFIX}left"
    (staging / "results").mkdir(parents=True)
    (staging / "results" / "half.csv").write_text("half")
    if owner is not None:
        (staging / publish.OWNER_FILE).write_text(json.dumps(owner))
    return staging


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_sweep_removes_only_folders_whose_owner_has_gone(tmp_path):
    root = tmp_path / "out"
    record = publish.owner_record()
    dead = _staging_of(root / "a", {**record, "pid": _dead_pid(), "process_start": None})
    reused = _staging_of(root / "b", {**record, "process_start": (record["process_start"] or 0) + 1})  # pid reused
    live = _staging_of(root / "c", record)  # this process: running
    unknown = _staging_of(root / "d", None)
    said = {}
    for sub in "abcd":
        said[sub] = publish.sweep(root / sub)
    assert not dead.exists() and "cleaned up after a run that was stopped" in said["a"][0]
    if record["process_start"] is not None:  # Linux: a reused pid is told apart by its start time
        assert not reused.exists()
    assert live.exists() and said["c"] == []
    assert unknown.exists() and "records no owner" in said["d"][0]


# ----------------------------------------------------------------------------- signals
@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_stop_everything_and_leave_the_outputs(tmp_path, sig, code):
    out, before = _published(tmp_path)
    books = _books(tmp_path / "slow", sleep=600)
    _notebook(books / "02_next.ipynb", "x = 1")  # its kernel is started ahead, while 01 runs
    proc = _cli(books, out)
    _wait_for(lambda: _running(out), 60, "the notebook to run")
    connection_files = list(out.glob(".staging-*/kernels/*.json"))
    assert len(connection_files) == 2
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)  # not the 600 s of the cell
    assert proc.returncode == code, err
    assert err == "interrupted: published outputs unchanged\n", err
    assert not list(out.glob(".staging-*")) and not any(f.exists() for f in connection_files)
    _wait_for(lambda: not _kernels_of(out), 5, "every kernel to be gone")
    assert _tree(out) == before


@pytest.mark.slow
def test_a_second_ctrl_c_does_not_cut_the_cleanup_short(tmp_path):
    out, before = _published(tmp_path)
    proc = _cli(_books(tmp_path / "slow", sleep=600), out)
    _wait_for(lambda: _running(out), 60, "the notebook to run")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "interrupted: published outputs unchanged\n", err
    assert not list(out.glob(".staging-*")) and _tree(out) == before
    _wait_for(lambda: not _kernels_of(out), 5, "every kernel to be gone")


@pytest.mark.slow
def test_after_sigkill_the_next_run_cleans_up_says_so_and_succeeds(tmp_path):
    out, before = _published(tmp_path)
    proc = _cli(_books(tmp_path / "slow", sleep=600), out)
    _wait_for(lambda: _running(out), 60, "the notebook to run")
    proc.kill()
    proc.communicate(timeout=30)
    assert list(out.glob(".staging-*")) and _tree(out) == before  # left behind, published outputs intact
    nxt = _cli(_books(tmp_path / "fast", text="next"), out)
    _, err = nxt.communicate(timeout=120)
    assert nxt.returncode == 0, err
    assert "cleaned up after a run that was stopped" in err
    assert not list(out.glob(".staging-*")) and not _kernels_of(out)
    assert (out / "results" / "tables" / "table.csv").read_text() == "next"


# ----------------------------------------------------------------------------- publishing
def _old_and_new(tmp_path) -> tuple[Path, Path, dict, dict]:
    root, staging = tmp_path / "root", tmp_path / "root" / f"{publish.STAGING_PREFIX}x"
    for base, text in ((root, "old"), (staging, "new")):
        for d in DIRS:
            (base / d).mkdir(parents=True, exist_ok=True)
            (base / d / f"{d.replace('/', '_')}.csv").write_text(text)
        (base / "results" / "tables").mkdir(exist_ok=True)
        (base / "results" / "tables" / f"only-{text}.csv").write_text(text)
    (root / "data" / "processed" / ".gitkeep").write_text("")  # never published nor deleted
    (staging / publish.OWNER_FILE).write_text(json.dumps(publish.owner_record()))
    old = _tree(root)
    new = {k: v for k, v in _tree(staging).items()} | {"data/processed/.gitkeep": b""}
    return root, staging, old, new


def test_publishing_exchanges_the_whole_set(tmp_path):
    root, staging, old, new = _old_and_new(tmp_path)
    publish.publish(staging, root, DIRS)
    assert _tree(root) == new and not staging.exists()


PUBLISH_AND_DIE = """
import json, sys
from pathlib import Path
from helpers import publish
(Path(sys.argv[1]) / publish.OWNER_FILE).write_text(json.dumps(publish.owner_record()))  # this process owns it
publish.publish(sys.argv[1], sys.argv[2], {dirs!r})
"""


@pytest.mark.slow
@pytest.mark.parametrize("step", range(1, 9))
def test_a_kill_at_any_step_of_publishing_leaves_the_old_or_the_new_set(tmp_path, step):
    """The runner is SIGKILLed after the k-th step of publishing (6 renames, the journal's
    mark, the removal of the old set); the next run's cleanup then finds either the whole old
    set or the whole new set -- the new one exactly when the kill came after the mark."""
    root, staging, old, new = _old_and_new(tmp_path)
    code = PUBLISH_AND_DIE.format(dirs=DIRS)
    proc = subprocess.run([sys.executable, "-c", code, str(staging), str(root)], capture_output=True, text=True,
                          env={**os.environ, publish.KILL_HOOK: str(step)}, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    said = publish.sweep(root)
    after = _tree(root)
    assert after == (new if step >= 7 else old), (step, sorted(after))
    assert not list(root.glob(f"{publish.STAGING_PREFIX}*"))
    if step < 8:
        assert said and ("put back" in said[0] if step < 7 else "published its outputs completely" in said[0])


@pytest.mark.slow
def test_a_runner_killed_while_publishing_is_rolled_back_by_the_next_run(tmp_path):
    out, before = _published(tmp_path)
    proc = _cli(_books(tmp_path / "new", text="new"), out, env={publish.KILL_HOOK: "3"})
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert _tree(out) != before  # killed half-way: results is the new one, figures missing
    nxt = _cli(_books(tmp_path / "other", text="other"), out)
    _, err = nxt.communicate(timeout=120)
    assert nxt.returncode == 0, err
    assert "it was stopped while publishing: the previous outputs were put back" in err, err
    assert (out / "figures" / "figure.svg").read_text() == "other" and not list(out.glob(".staging-*"))


# ----------------------------------------------------------------------------- file-system errors
def test_an_output_root_under_a_regular_file_is_one_message(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    root = tmp_path / "file" / "out"
    rc = pipeline.main(["--notebooks", str(_books(tmp_path / "books")), "--output-root", str(root), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert str(tmp_path / "file") in err and "is a file, not a folder" in err


def test_a_read_only_output_root_is_one_message(tmp_path, capsys, monkeypatch):
    """A read-only file system (EROFS), simulated where the runner first writes."""
    root = tmp_path / "ro"
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(root)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    rc = pipeline.main(["--notebooks", str(_books(tmp_path / "books")), "--output-root", str(root), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1, err
    assert f"cannot write the outputs: {root}: Read-only file system [EROFS]" in err


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_an_unwritable_output_root_is_one_message():
    """A real folder without write permission. Root ignores permissions, so as root the run is
    made as the user nobody (who may read the code, not write the folder)."""
    import tempfile

    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    base = Path(tempfile.mkdtemp(prefix="replication-ro-"))
    try:
        os.chmod(base, 0o755)
        books = _books(base / "books")
        for f in books.iterdir():
            os.chmod(f, 0o644)
        locked = base / "locked"
        locked.mkdir()
        os.chmod(locked, 0o555)
        cmd = [*prefix, sys.executable, "-m", "helpers.pipeline", "--notebooks", str(books), "--output-root",
               str(locked / "out"), "--no-progress"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/", env={**os.environ, "HOME": str(base)})
        assert out.returncode == 1, out.stderr
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
        assert f"cannot write the outputs: {locked / 'out'}: Permission denied [EACCES]" in out.stderr
        assert not (locked / "out").exists()
    finally:
        os.chmod(base / "locked", 0o755)
        shutil.rmtree(base)


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "somewhere")


def test_a_full_disk_while_staging_removes_the_partial_copy_and_the_failed_run(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    for d in DIRS:
        (out / d).mkdir(parents=True)
        (out / d / "kept.csv").write_text("published")
    (out / publish.FAILED).mkdir()
    (out / publish.FAILED / "big").write_bytes(b"x" * 1000)
    before = _tree(out)
    real_copytree = shutil.copytree

    def copy_then_fill(src, dst, **kwargs):
        real_copytree(src, dst, **kwargs)  # a partial copy, then the disk is full
        _enospc()

    monkeypatch.setattr(publish.shutil, "copytree", copy_then_fill)
    rc = pipeline.main(["--notebooks", str(_books(tmp_path / "books")), "--output-root", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1, err
    assert "No space left on device [ENOSPC]" in err and "copy of the last failed run were removed" in err
    assert not list(out.glob(".staging-*")) and not (out / publish.FAILED).exists()
    assert _tree(out) == before


@pytest.mark.slow
def test_a_full_disk_in_a_notebook_keeps_no_failed_run(tmp_path, capsys):
    out = tmp_path / "out"
    (out / publish.FAILED).mkdir(parents=True)
    books = tmp_path / "books"
    books.mkdir()
    _notebook(books / "01_full.ipynb", "import errno, os\nraise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))")
    rc = pipeline.main(["--notebooks", str(books), "--output-root", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "01_full.ipynb" in err and "No space left on device" in err
    assert "the disk is full" in err and "copy of the last failed run were removed" in err
    assert not list(out.glob(".staging-*")) and not (out / publish.FAILED).exists()


@pytest.mark.slow
def test_a_full_disk_after_the_notebooks_is_one_message_and_nothing_half_written(tmp_path, capsys, monkeypatch):
    from helpers import manifest

    out, before = tmp_path / "out", {}
    monkeypatch.setattr(manifest, "write_manifest", _enospc)
    rc = pipeline.main(["--notebooks", str(_books(tmp_path / "books")), "--output-root", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1, err
    assert "somewhere: No space left on device [ENOSPC]" in err and "partial outputs" in err
    assert not list(out.glob(".staging-*")) and _tree(out) == before


def test_published_outputs_are_read_after_a_run_that_is_publishing(tmp_path, monkeypatch):
    """make verify compares the committed outputs under their lock: never half-published ones;
    a root that cannot be written (a read-only checkout) is read as it is."""
    import threading

    root, order = tmp_path / "root", []

    def read():
        with publish.reading(root, out=open(os.devnull, "w")):
            order.append("read")

    with publish.lock(root):
        reader = threading.Thread(target=read)
        reader.start()
        time.sleep(0.5)  # the reader waits meanwhile (had it not, "read" would come first)
        order.append("published")
    reader.join(timeout=30)
    assert order == ["published", "read"]

    def read_only(*args, **kwargs):
        raise publish.OutputError("cannot write the outputs: read-only")

    monkeypatch.setattr(publish, "lock", read_only)
    with publish.reading(tmp_path / "elsewhere") as held:
        assert held is None
