"""The Jupyter kernel manager every notebook run uses (``python -m stflib run`` and the grid's runner).

``quiet_kernel_manager_class`` talks to the kernel over local IPC sockets (no TCP ports, so no
"running over TCP without encryption" warning) and shuts it down without the SIGINT that
jupyter_client sends first (which makes ipykernel log "KeyboardInterrupt caught in kernel" after the
run has finished); a kernel that does not exit on the shutdown request is still killed after
``shutdown_wait_time``.
"""
from __future__ import annotations

from pathlib import Path


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
