"""The ablation grid, from its table to ``results/summary.csv``.

- :mod:`~stflib.grid.axes`: ``ARMS``, every axis with its arms and its reference arm (the one table),
  and ``ROBUSTNESS_ARMS``, the part of it re-run in every other simulator world;
- :mod:`~stflib.grid.params`: the ``params/`` YAML files written from it, and read back;
- :mod:`~stflib.grid.runner`: tasks, run hashing and resume, execution through papermill and Dask;
- :mod:`~stflib.grid.collect`: ``results/summary.csv`` from the run folders;
- :mod:`~stflib.grid.plan`: the dry run (data checks, time estimate);
- :mod:`~stflib.grid.cluster`: the grid on SLURM through dask-jobqueue;
- :mod:`~stflib.grid.commands`: the ``ablate`` and ``collect`` commands.
"""
