"""How a run writes its outputs without hurting another run or the published ones.

Used by :func:`helpers.pipeline.run` as one context, :class:`Run`:

One run per output root
    ``<root>/.run.lock`` is held with :mod:`filelock` for the whole run. It is an ``flock``,
    which the operating system releases when the process ends however it ends, so a killed run
    never leaves a lock behind. The holder records its pid and start time beside it
    (``.run.lock.owner``); a second run is refused at once with "another run (pid N, started
    at T) is writing <root>" (:class:`RunBusy`), or waits for it (``wait=True``, ``--wait``).
Staging
    A run works in ``<root>/.staging-XXXX/`` (on the file system of the outputs, so moving a
    folder into place is a rename). It holds ``owner.json`` (pid, process start time, host),
    the kernels' connection files (``kernels/``, :mod:`helpers.kernels`), and the run's
    outputs, seeded with a copy of the published ones so that a partial run (``--only``) finds
    its inputs. The run removes it, whatever ends the run. A folder whose owner is no longer
    running (a run killed with SIGKILL, a power cut) is removed by the next run, which stops
    kernels the dead run left and says what it removed; a folder whose owner still runs is
    never touched.
Publishing
    The output folders (``data/processed``, ``results``, ``figures``) are exchanged as whole
    folders, driven by a journal in the staging folder: ``journal.json`` is written (and
    synced) before anything moves; each published folder is moved aside into the staging folder
    and the staged one moved into its place (renames on one file system); the journal is then
    marked committed. A crash before the mark is rolled back by the next run (the old folders
    return); a crash after it is completed (the old folders are removed). Whatever instant a
    run dies at, the next run starts from the complete old set or the complete new set, never
    a mix. The published folders may be tracked by git (the default run): git compares their
    content, not the folders' identity, and dot-files in them (``.gitkeep``) are carried over.
Interruptions
    Within :func:`interruptible`, SIGINT (Ctrl-C) and SIGTERM raise :class:`Interrupted` (a
    ``KeyboardInterrupt``) once; further signals are ignored while the run cleans up, so a second
    Ctrl-C cannot cut the cleanup short or print a second traceback. Steps that must not be cut
    in half (starting a kernel, publishing) run within :func:`deferred_signals`: a signal that
    arrives meanwhile is raised when the step is complete.
File-system errors
    An output root that cannot be created or written (under a regular file, a read-only file
    system, no permission) or a full disk raise :class:`OutputError`, whose message names the
    path and the error. Nothing half-written is left: the staging folder is removed, and on a
    full disk (ENOSPC) the copy of the last failed run (``.failed-run``) is removed as well,
    to give the space back; the message says so.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

#: The lock file (held with filelock) and its holder's record, in the output root.
LOCK_NAME = ".run.lock"
OWNER_NAME = ".run.lock.owner"
#: Staging folders: ``<root>/.staging-XXXX/``; the last failed run: ``<root>/.failed-run/``.
STAGING_PREFIX = ".staging-"
FAILED = ".failed-run"
#: Inside a staging folder: its owner, the publishing journal, the published folders moved
#: aside while publishing, and the kernels' connection files.
OWNER_FILE = "owner.json"
JOURNAL = "journal.json"
ASIDE = "published-before"
KERNELS = "kernels"
#: Test hook: SIGKILL this process after the k-th step of publishing (a test of atomicity).
KILL_HOOK = "REPLICATION_TEST_KILL_AT_PUBLISH_STEP"

INTERRUPTED = "interrupted: published outputs unchanged"


class RunBusy(RuntimeError):
    """Another run holds the output root's lock."""


class OutputError(RuntimeError):
    """The outputs could not be written; the message names the path and the error."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM during a run.

    Attributes
    ----------
    signum : int
        The signal.
    exit_code : int
        128 + the signal number (130 for SIGINT, 143 for SIGTERM), as a shell reports it.
    published : bool
        True when the signal arrived while the outputs were being published: publishing was
        completed first, so the new outputs are in place.
    """

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum
        self.published = False

    @property
    def message(self) -> str:
        return ("interrupted after publishing: this run's outputs were published in full" if self.published
                else INTERRUPTED)


def exit_code(exc: BaseException) -> int:
    """The process exit code for an interruption (130 for a plain KeyboardInterrupt)."""
    return getattr(exc, "exit_code", 128 + signal.SIGINT)


def interrupted_message(exc: BaseException) -> str:
    return getattr(exc, "message", INTERRUPTED)


# ----------------------------------------------------------------------------- signals
class _Signals:
    """State of the handlers installed by :func:`interruptible` (main thread only)."""

    installed = 0      # nesting depth of interruptible()
    deferring = 0      # nesting depth of deferred_signals()
    pending = None     # a signal that arrived while deferring
    raised = False     # an Interrupted has been raised: ignore further signals
    previous = {}


def _on_signal(signum, frame):
    if _Signals.raised:
        return  # already stopping: a second Ctrl-C must not cut the cleanup short
    if _Signals.deferring:
        _Signals.pending = _Signals.pending or signum
        return
    _Signals.raised = True
    raise Interrupted(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def interruptible():
    """SIGINT and SIGTERM raise :class:`Interrupted` once within this block (see the module
    docstring); the previous handlers are restored after it. Nested use is allowed. Outside the
    main thread (where Python delivers no signal) it does nothing."""
    if not _main_thread():
        yield
        return
    if not _Signals.installed:
        _Signals.previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        _Signals.pending, _Signals.raised = None, False
        for s in _Signals.previous:
            signal.signal(s, _on_signal)
    _Signals.installed += 1
    try:
        yield
    finally:
        _Signals.installed -= 1
        if not _Signals.installed:
            for s, handler in _Signals.previous.items():
                signal.signal(s, handler)
            _Signals.pending, _Signals.raised = None, False


class deferred_signals:
    """A step that must not be cut in half: a signal arriving within it is raised (as
    :class:`Interrupted`) when the step has completed. Does nothing outside the main thread or
    outside :func:`interruptible`."""

    def __enter__(self):
        self._active = _main_thread() and bool(_Signals.installed)
        if self._active:
            _Signals.deferring += 1
        return self

    def __exit__(self, exc_type, exc, tb):
        if not self._active:
            return False
        _Signals.deferring -= 1
        if not _Signals.deferring and _Signals.pending is not None and not _Signals.raised:
            signum, _Signals.pending = _Signals.pending, None
            _Signals.raised = True
            if exc_type is None:
                raise Interrupted(signum)
        return False


# ----------------------------------------------------------------------------- owners
def _proc_stat(pid: int):
    """The fields of ``/proc/<pid>/stat`` after the command name (Linux), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def _process_start(pid: int):
    """The process's start time in clock ticks since boot (Linux), or None: with the pid it
    identifies a process even after the pid has been reused."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None


def owner_record() -> dict:
    """This process, as recorded in a lock owner file and a staging folder's ``owner.json``."""
    now = time.time()
    return {"pid": os.getpid(), "process_start": _process_start(os.getpid()), "host": socket.gethostname(),
            "started": now, "started_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)),
            "command": " ".join(sys.argv)}


def owner_alive(owner: dict) -> bool:
    """Whether the process an owner record names is still running. A record from another host
    counts as running (it cannot be checked from here)."""
    if owner.get("host") != socket.gethostname():
        return True
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    fields = _proc_stat(pid)
    if fields is None:
        return True  # no /proc: the pid exists, that is all that can be known
    if fields[0] in ("Z", "X"):
        return False  # killed, waiting only for its parent to collect its exit status
    start = owner.get("process_start")
    return start is None or int(fields[19]) == start


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _describe(owner) -> str:
    if not owner:
        return "another run"
    return f"another run (pid {owner.get('pid')}, started at {owner.get('started_at')})"


# ----------------------------------------------------------------------------- file-system errors
def _fs_error(exc: OSError, doing: str, *, freed: str = "") -> OutputError:
    """An OutputError naming the path and the error (one line)."""
    path = exc.filename or ""
    what = exc.strerror or str(exc)
    code = errno.errorcode.get(exc.errno, "")
    hint = ""
    if exc.errno == errno.ENOTDIR or isinstance(exc, NotADirectoryError):
        first_file = next((p for p in Path(path).parents if p.is_file()), None) if path else None
        hint = f" ({first_file} is a file, not a folder)" if first_file else ""
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = "; choose another --output-root"
    elif exc.errno == errno.ENOSPC:
        hint = "; free some space and run again"
    where = f" {path}" if path else ""
    return OutputError(f"cannot {doing}:{where}: {what} [{code}]{hint}{freed}")


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    if isinstance(exc, shutil.Error):  # copytree gathers the errors of the files it copied
        return any("[Errno 28]" in str(e) for e in exc.args[0]) if exc.args and isinstance(exc.args[0], list) else False
    text = str(exc)
    return f"[Errno {errno.ENOSPC}]" in text or os.strerror(errno.ENOSPC) in text


def _remove(path: Path) -> None:
    """Remove a file or folder; one that is already gone is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=False, onerror=_ignore_missing)
    else:
        path.unlink(missing_ok=True)


def _ignore_missing(func, path, exc_info):
    if not isinstance(exc_info[1], FileNotFoundError):
        raise exc_info[1]


def _fsync_dir(path: Path) -> None:
    """Make renames inside ``path`` durable (a power cut after the journal's mark must not
    undo them). Not every file system lets a folder be synced: then nothing is lost by not."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json(path: Path, record: dict) -> None:
    """Write ``record`` durably and atomically (temporary file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


# ----------------------------------------------------------------------------- the lock
class _Lock:
    def __init__(self, root: Path, *, wait: bool, out):
        from filelock import FileLock, Timeout

        self.root, self.path, self.owner_path = root, root / LOCK_NAME, root / OWNER_NAME
        self.lock = FileLock(str(self.path), thread_local=False)
        try:
            self.lock.acquire(blocking=False)
        except Timeout:
            holder = self._holder()
            if not wait:
                raise RunBusy(f"{_describe(holder)} is writing {root}; wait for it to finish, or run again with "
                              "--wait to start when it has") from None
            print(f"waiting for {_describe(holder)} to finish writing {root} ...", file=out)
            self.lock.acquire()
        try:
            _write_json(self.owner_path, owner_record())
        except BaseException:
            self.lock.release()
            raise

    def _holder(self):
        # the holder writes its record just after taking the lock: allow it a moment
        for _ in range(20):
            owner = _read_json(self.owner_path)
            if owner and owner_alive(owner):
                return owner
            time.sleep(0.05)
        return None

    def release(self) -> None:
        try:
            self.owner_path.unlink(missing_ok=True)
        finally:
            self.lock.release()


@contextmanager
def lock(root, *, wait: bool = False, out=None):
    """Hold the output root's lock (see the module docstring) for the block; the leftovers of
    dead runs in ``root`` are cleaned up first (:func:`sweep`). Raises :class:`RunBusy` when
    another run holds it and ``wait`` is False, :class:`OutputError` when the root cannot be
    created or written."""
    out = out or sys.stderr
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        held = _Lock(root, wait=wait, out=out)
    except OSError as exc:
        raise _fs_error(exc, "write the outputs") from None
    try:
        for line in sweep(root):
            print(line, file=out)
        yield held
    finally:
        held.release()


@contextmanager
def reading(root, *, out=None):
    """Read the published outputs of ``root`` with no run publishing meanwhile: its lock is
    waited for and held. A root that cannot be written (a read-only checkout) cannot be
    published into either: it is read without the lock."""
    try:
        held = lock(root, wait=True, out=out)
        held.__enter__()
    except OutputError:
        yield None
        return
    try:
        yield held
    finally:
        held.__exit__(None, None, None)


# ----------------------------------------------------------------------------- staging
def make_staging(root: Path, dirs) -> Path:
    """A staging folder in ``root`` owned by this process, with ``dirs`` seeded from the
    published ones (dot-files and temporaries left out of the copy are carried over when
    publishing)."""
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
    try:
        _write_json(staging / OWNER_FILE, owner_record())
        (staging / KERNELS).mkdir()
        for rel in dirs:
            src, dst = root / rel, staging / rel
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".staging-*", ".*.tmp"))
            else:
                dst.mkdir(parents=True, exist_ok=True)
    except BaseException:
        discard(staging)  # never a partial copy (a full disk, Ctrl-C while copying)
        raise
    return staging


def _kernel_processes(folder: Path) -> list[int]:
    """Pids of processes whose command line names a connection file in ``folder`` (the
    kernels a run started there). Linux only: elsewhere an empty list."""
    needle = str(folder).encode()
    pids = []
    for proc in Path("/proc").glob("[0-9]*") if Path("/proc/self").exists() else []:
        try:
            if needle in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return [p for p in pids if p != os.getpid()]


def sweep(root: Path) -> list[str]:
    """Clean up after runs in ``root`` that died (SIGKILL, a power cut): for each staging
    folder whose owner is no longer running, complete or roll back an interrupted publishing
    step (:func:`recover`), stop the kernels it left, remove it. Returns one line per folder,
    saying what was done; folders of a running owner are left alone."""
    lines = []
    for staging in sorted(Path(root).glob(STAGING_PREFIX + "*")):
        if not staging.is_dir():
            continue
        owner = _read_json(staging / OWNER_FILE)
        if owner is None:
            lines.append(f"left {staging} alone: it records no owner (a run of an older version?); remove it by hand "
                         "if no run is writing here")
            continue
        if owner_alive(owner):
            continue
        with deferred_signals():  # recovering is idempotent, but finish it once begun
            done = [recover(staging, root) or ""]
        killed = _kernel_processes(staging / KERNELS)
        for pid in killed:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if killed:
            done.append(f"stopped {len(killed)} notebook kernel(s) it left running")
        _remove(staging)
        said = "; ".join(d for d in done if d)
        lines.append(f"cleaned up after a run that was stopped (pid {owner.get('pid')}, started at "
                     f"{owner.get('started_at')}): removed its staging folder {staging.name}" + (f"; {said}" if said else ""))
    return lines


def discard(staging: Path) -> None:
    """Remove a staging folder (its kernels have stopped)."""
    if staging is not None and staging.exists():
        _remove(staging)


def keep_failed(staging: Path, root: Path, error: BaseException) -> str:
    """After a failed run: keep the staging folder as ``<root>/.failed-run`` (one, replacing the
    previous one) and return the sentence that says where. On a full disk keep nothing --
    remove the staging folder and the previous failed run's copy, and say so."""
    target = root / FAILED
    if _is_disk_full(error):
        discard(staging)
        discard(target)
        return ("the disk is full: this run's partial outputs and the copy of the last failed run were removed "
                "to give the space back (the published outputs are unchanged)")
    discard(target)
    os.replace(staging, target)
    return f"outputs of the failed run kept for inspection in {target} (the published outputs are unchanged)"


# ----------------------------------------------------------------------------- publishing
def _hook_step(step: list) -> None:
    step[0] += 1
    if os.environ.get(KILL_HOOK) == str(step[0]):
        os.kill(os.getpid(), signal.SIGKILL)


def _carry_scratch(staging: Path, root: Path, dirs, is_scratch) -> None:
    """Dot-files in the published folders that the staged ones lack (a ``.gitkeep`` made
    after staging was seeded): the runner never publishes nor deletes them."""
    for rel in dirs:
        published = root / rel
        if not published.is_dir():
            continue
        for p in published.rglob("*"):
            if p.is_file() and is_scratch(p) and not p.name.endswith(".tmp"):
                dst = staging / p.relative_to(root)
                if not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(p, dst)


def publish(staging: Path, root: Path, dirs, *, is_scratch=lambda p: p.name.startswith(".")) -> None:
    """Exchange the published folders ``dirs`` for the staged ones, as one step (see the
    module docstring); the staging folder is removed afterwards. Signals are deferred until
    it is done. Raises :class:`OutputError` (after rolling back) when a rename fails."""
    staging, root = Path(staging), Path(root)
    try:
        _publish(staging, root, dirs, is_scratch)
    except Interrupted as exc:  # a signal deferred until publishing was complete
        exc.published = True
        raise


def _publish(staging: Path, root: Path, dirs, is_scratch) -> None:
    with deferred_signals():
        _carry_scratch(staging, root, dirs, is_scratch)
        plan = [{"dir": rel, "old": (root / rel).is_dir(), "new": (staging / rel).is_dir()} for rel in dirs]
        journal = {"state": "moving", "root": str(root), "dirs": plan}
        step = [0]
        try:
            _write_json(staging / JOURNAL, journal)
            for entry in plan:
                rel = entry["dir"]
                if entry["old"]:
                    aside = staging / ASIDE / rel
                    aside.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(root / rel, aside)
                    _hook_step(step)
                if entry["new"]:
                    (root / rel).parent.mkdir(parents=True, exist_ok=True)
                    os.rename(staging / rel, root / rel)
                    _hook_step(step)
            for parent in {(root / e["dir"]).parent for e in plan}:
                _fsync_dir(parent)
            _write_json(staging / JOURNAL, {**journal, "state": "committed"})
            _hook_step(step)
        except OSError as exc:
            try:
                recover(staging, root)
            finally:
                raise _fs_error(exc, "publish the outputs") from None
        discard(staging)
        _hook_step(step)


def recover(staging: Path, root: Path):
    """Finish what a run killed while publishing left: roll back (the journal is not marked
    committed: the old folders return) or complete (it is: the old folders go). Returns a
    sentence saying which, or None when ``staging`` holds no journal."""
    journal = _read_json(Path(staging) / JOURNAL)
    if journal is None:
        return None
    if journal.get("state") == "committed":
        _remove(Path(staging) / ASIDE)
        (Path(staging) / JOURNAL).unlink()
        return "it had published its outputs completely: finished removing the previous ones"
    for entry in reversed(journal["dirs"]):
        rel = entry["dir"]
        live, aside, staged = root / rel, staging / ASIDE / rel, staging / rel
        if entry["old"] and not aside.exists():
            continue  # this folder was never moved aside: the published one is the old one
        if entry["new"] and live.exists() and not staged.exists():
            os.rename(live, staged)  # the new folder had been moved in: take it out again
        if entry["old"]:
            os.rename(aside, live)
    for parent in {(root / e["dir"]).parent for e in journal["dirs"]}:
        _fsync_dir(parent)
    (Path(staging) / JOURNAL).unlink()
    return "it was stopped while publishing: the previous outputs were put back"


# ----------------------------------------------------------------------------- one run
class Run:
    """Everything around one run's notebooks (see the module docstring)::

        with publish.Run(root, wait=False) as run:
            staging = run.make_staging(dirs)
            ...                               # execute into staging
            run.publish(dirs)

    On entry: signals handled (:func:`interruptible`), the root's lock taken, the leftovers of
    dead runs cleaned up (the kernels' connection files go into the staging folder,
    :mod:`helpers.kernels`). On
    leaving with an error or an interruption: the staging folder removed (unless
    :meth:`keep_failed` kept it), an ``OSError`` turned into :class:`OutputError`.
    """

    def __init__(self, root, *, wait: bool = False, out=None):
        self.root, self.wait, self.out = Path(root), wait, out or sys.stderr
        self.staging = None
        self._stack = None

    def __enter__(self):
        from contextlib import ExitStack

        self._stack = ExitStack()
        try:
            self._stack.enter_context(interruptible())
            self._stack.enter_context(lock(self.root, wait=self.wait, out=self.out))
        except BaseException:
            self._stack.close()
            raise
        return self

    def make_staging(self, dirs) -> Path:
        """The staging folder, seeded with the published ``dirs``."""
        try:
            self.staging = make_staging(self.root, dirs)
        except shutil.Error as exc:  # copytree's collection of per-file errors: report the first
            first = exc.args[0][0] if exc.args and isinstance(exc.args[0], list) and exc.args[0] else None
            err = OSError(errno.ENOSPC if _is_disk_full(exc) else errno.EIO,
                          os.strerror(errno.ENOSPC) if _is_disk_full(exc) else str(exc), first[1] if first else None)
            raise err from None
        return self.staging

    def keep_failed(self, error: BaseException) -> str:
        """Keep the staging folder of a failed run (:func:`keep_failed`); the sentence saying where."""
        staging, self.staging = self.staging, None
        return keep_failed(staging, self.root, error)

    def publish(self, dirs, **kwargs) -> None:
        """Exchange the published ``dirs`` for the staged ones (:func:`publish`)."""
        publish(self.staging, self.root, dirs, **kwargs)
        self.staging = None

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is not None and self.staging is not None:
                try:
                    discard(self.staging)
                except OSError as cleanup:  # said, not raised: the run's own error is the news
                    print(f"warning: could not remove {self.staging} ({cleanup.strerror or cleanup}); the next run "
                          "removes it", file=self.out)
            if exc is not None and isinstance(exc, OSError):
                freed = ""
                if _is_disk_full(exc):
                    discard(self.root / FAILED)
                    freed = ("; this run's partial outputs and the copy of the last failed run were removed "
                             "(the published outputs are unchanged)")
                raise _fs_error(exc, "write the outputs", freed=freed) from None
        finally:
            self._stack.close()
        return False
