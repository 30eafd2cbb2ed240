"""The Jupyter kernel manager every notebook run uses (``python -m stflib run`` and the grid's runner).

``quiet_kernel_manager_class`` talks to the kernel over local IPC sockets (no TCP ports, so no
"running over TCP without encryption" warning) and shuts it down without the SIGINT that
jupyter_client sends first (which makes ipykernel log "KeyboardInterrupt caught in kernel" after the
run has finished); a kernel that does not exit on the shutdown request is still killed after
``shutdown_wait_time``.

``progress_stream`` is where a training progress bar writes from inside a kernel: the cell's output and,
when nothing else shows the cell's output while it runs (plain ``papermill`` on the command line), also the
terminal the kernel was started from.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

# "0" in the kernel's environment: its parent already streams the kernel's output to the terminal
# (python -m stflib run), so a bar echoed to the terminal as well would show twice
ECHO_ENV = "STFLIB_TERMINAL_ECHO"


def quiet_kernel_manager_class():
    """An ``AsyncKernelManager`` that uses IPC sockets and skips the SIGINT before shutdown (see the module docstring)."""
    import uuid

    from jupyter_client import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir
    from traitlets import default

    class QuietKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "ipc"

        @default("ip")
        def _ip_default(self) -> str:
            runtime = Path(jupyter_runtime_dir())
            runtime.mkdir(parents=True, exist_ok=True)
            return str(runtime / f"stflib-{uuid.uuid4().hex[:12]}-ipc")

        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:  # a shutdown, not a user's interrupt: nothing to interrupt
                return
            await super()._async_interrupt_kernel()

    return QuietKernelManager


class _Tee:
    """A text stream writing to two streams (the cell's stderr and the terminal)."""

    def __init__(self, cell, terminal):
        self.cell, self.terminal = cell, terminal

    def write(self, text: str) -> int:
        self.cell.write(text)
        try:
            self.terminal.write(text)
        except OSError:  # the terminal went away (closed pipe): the cell still has the bar
            pass
        return len(text)

    def flush(self) -> None:
        self.cell.flush()
        try:
            self.terminal.flush()
        except OSError:
            pass

    def isatty(self) -> bool:  # tqdm draws its one-line bar (carriage returns) for a terminal
        return True


_TERMINAL = None


def progress_stream():
    """``sys.stderr``, teed to the terminal when this is a Jupyter kernel started from one.

    ipykernel sends a cell's stderr to the notebook only (it keeps a copy of the original file
    descriptor, the terminal of the process that started the kernel). Plain ``papermill`` writes the
    notebook at the end, so a long training cell would show nothing for minutes; the copy lets the
    progress bar reach the terminal too. Outside a kernel, or with ``$STFLIB_TERMINAL_ECHO=0``, it is
    ``sys.stderr`` itself."""
    global _TERMINAL
    err = sys.stderr
    copy = getattr(err, "_original_stdstream_copy", None)
    if copy is None or os.environ.get(ECHO_ENV, "1") == "0":
        return err
    if _TERMINAL is None:
        _TERMINAL = open(os.dup(copy), "w", buffering=1, encoding="utf-8", errors="replace")
    return _Tee(err, _TERMINAL)
