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
"""

from __future__ import annotations

from pathlib import Path

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

    km = AsyncKernelManager(kernel_name=kernel_name)
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
    run_sync(km.start_kernel)(extra_arguments=list(KERNEL_ARGUMENTS), cwd=str(cwd))
    return km


def shutdown(km) -> None:
    """Stop the kernel (politely, then by force) and free its ports and files."""
    from jupyter_core.utils import run_sync

    try:
        if run_sync(km.is_alive)():
            run_sync(km.shutdown_kernel)(now=False)
    finally:
        run_sync(km.cleanup_resources)()
        for kc in getattr(km, "helpers_clients", []):
            kc.stop_channels()
            if not kc.context.closed:
                kc.context.destroy(linger=0)


def interrupt(km) -> None:
    """Interrupt what the kernel is running (as Jupyter's stop button does): the cell raises
    KeyboardInterrupt and papermill reports the notebook as failed."""
    from jupyter_core.utils import run_sync

    if run_sync(km.is_alive)():
        run_sync(km.interrupt_kernel)()
