"""Kernels started ahead of the notebooks that will run in them (used by :mod:`helpers.pipeline`).

A Jupyter kernel takes about 0.6 s to boot (a new Python process importing ipykernel). The
runner knows which notebook comes next, so it starts that notebook's kernel while the current
one runs: the boot then overlaps with work instead of adding to it. Starting a kernel returns
as soon as its process is launched; nothing is executed in it before papermill hands it the
notebook, so the notebook runs exactly as in a kernel papermill would have started itself:
the same kernel spec, working folder, environment (captured at start: the runner sets
``REPLICATION_OUTPUT_ROOT`` before), command-line options and in-memory IPython history
(nbclient's default).

A kernel is started and shut down in the runner's thread; papermill (nbclient) runs the
notebook in it from a lane thread, through its own client (``km=`` of
:class:`nbclient.NotebookClient`, which then leaves the kernel's shutdown to its owner).

Nothing is left behind when a run is stopped: every kernel started here is recorded until it
is shut down (:func:`kill_all` stops them at once, on Ctrl-C or SIGTERM); a signal arriving
while a kernel starts is raised only once it has started and been recorded; and the kernels'
connection files (which hold the key to run code in them) are written into the run's staging
folder (``kernels/`` under ``REPLICATION_OUTPUT_ROOT``, :mod:`helpers.publish`), so they go
with it even when the runner is killed, instead of piling up in the temporary folder.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from pathlib import Path

#: Kernels started and not yet shut down (kernel managers).
_LIVE = set()
_LIVE_LOCK = threading.Lock()

#: Kernel options of every notebook run: start-up and shut-down chatter is not for the user
#: (the TCP transport notice; "KeyboardInterrupt caught in kernel" when a busy machine makes
#: a kernel slow to stop). An error in a cell reaches the notebook and fails the run; a kernel
#: that dies fails it too. The history in memory: nbclient's own default.
KERNEL_ARGUMENTS = ("--IPKernelApp.log_level=CRITICAL", "--HistoryManager.hist_file=:memory:")


def start(kernel_name: str, cwd: Path):
    """Launch a kernel and return its (asynchronous) kernel manager, without waiting for it to
    be ready (nbclient waits for that when it connects)."""
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync

    from helpers.publish import KERNELS, deferred_signals

    km = AsyncKernelManager(kernel_name=kernel_name)
    folder = Path(os.environ.get("REPLICATION_OUTPUT_ROOT", "")) / KERNELS
    if os.environ.get("REPLICATION_OUTPUT_ROOT") and folder.is_dir():  # a run's staging folder
        km.connection_file = str(folder / f"kernel-{uuid.uuid4()}.json")
    # nbclient leaves the channels of a kernel it does not own open: remember the clients it
    # makes, so that shutdown() closes them with the kernel (instead of the garbage collector,
    # which then warns that it "could not destroy zmq context")
    km.helpers_clients = []
    make_client = km.client

    def client(**kwargs):
        kc = make_client(**kwargs)
        km.helpers_clients.append(kc)
        return kc

    km.client = client
    # a Ctrl-C half-way through the start would leave a process that nobody knows of
    with deferred_signals():
        try:
            run_sync(km.start_kernel)(extra_arguments=list(KERNEL_ARGUMENTS), cwd=str(cwd))
        finally:
            if km.has_kernel:
                with _LIVE_LOCK:
                    _LIVE.add(km)
    return km


def shutdown(km) -> None:
    """Stop the kernel (politely, then by force) and free its ports and files."""
    from jupyter_core.utils import run_sync

    try:
        if run_sync(km.is_alive)():
            run_sync(km.shutdown_kernel)(now=False)
        elif km.has_kernel:  # killed (kill_all) or died: shutting down only releases what it held
            run_sync(km.shutdown_kernel)(now=True)
    finally:
        try:
            run_sync(km.cleanup_resources)()
            for kc in getattr(km, "helpers_clients", []):
                kc.stop_channels()
                if not kc.context.closed:
                    kc.context.destroy(linger=0)
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(km)


def kill_all() -> int:
    """Kill every kernel started here and not yet shut down, at once (SIGKILL to its process
    group: a kernel's own subprocesses go too), without waiting for it. Safe from any thread;
    :func:`shutdown` then only frees the resources. Returns how many were killed."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    killed = 0
    for km in live:
        provisioner = getattr(km, "provisioner", None)
        process = getattr(provisioner, "process", None)
        if process is None or process.poll() is not None:
            continue
        try:
            pgid = getattr(provisioner, "pgid", None)
            if pgid:
                os.killpg(pgid, signal.SIGKILL)
            else:
                process.kill()
            killed += 1
        except ProcessLookupError:
            pass
    return killed


def live() -> list:
    """The kernels started here and not yet shut down."""
    with _LIVE_LOCK:
        return list(_LIVE)
