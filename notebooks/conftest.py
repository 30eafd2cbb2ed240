"""nbval (``pytest --nbval-lax notebooks``) runs the notebooks of this folder in a temporary folder.

nbval starts each kernel in its notebook's folder; ``ablation.ipynb`` then writes its artefacts into
``notebooks/out/`` (its default ``output_dir`` is ``out``, relative to the kernel's folder: right for a
user's papermill run, ~27 MB of leftovers in the tree for a test). Kernels that nbval starts here get a
fresh temporary folder instead, removed when the test session ends. The notebooks here need nothing
from their own folder (they import ``stflib`` and read data from its cache or ``data_dir``).
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import nbval.plugin

HERE = Path(__file__).resolve().parent
_RunningKernel = nbval.plugin.RunningKernel


class _KernelInTemporaryFolder(_RunningKernel):
    def __init__(self, kernel_name, cwd=None, **kwargs):
        if cwd is not None and Path(cwd).resolve() == HERE:
            cwd = tempfile.mkdtemp(prefix="stflib-nbval-")
            atexit.register(shutil.rmtree, cwd, ignore_errors=True)
        super().__init__(kernel_name, cwd=cwd, **kwargs)


nbval.plugin.RunningKernel = _KernelInTemporaryFolder
