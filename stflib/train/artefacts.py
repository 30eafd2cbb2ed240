"""What a run leaves in ``output_dir``: ``per_gene.csv``, ``history.csv``, ``predictions.h5ad`` and,
last, ``metrics.json`` (its presence marks a complete run; every file is written atomically)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from stflib.io import atomic_write, write_json

if TYPE_CHECKING:
    from stflib.train.run import Run


def write_artefacts(result: "Run", out_dir: str | Path) -> None:
    """metrics.json, per_gene.csv, history.csv, predictions.h5ad (all genes or the 50 HVGs, as the
    run's ``prediction_genes`` says)."""
    import pandas as pd

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result.per_gene.to_csv(out_dir / "per_gene.csv", index=False, float_format="%.5f")
    pd.DataFrame(result.history).to_csv(out_dir / "history.csv", index=False, float_format="%.6g")
    a = result.adata if result.config.prediction_genes == "all" else result.adata[:, result.fold.hvg].copy()  # no second pass over the thumbnails
    atomic_write(out_dir / "predictions.h5ad", lambda tmp: a.write_h5ad(tmp, compression="gzip"))
    if getattr(result.fold, "feature_mean", None) is not None:
        # the training fold's feature z-scoring, so `python -m stflib predict` can prepare new sections
        # exactly as the run prepared its own without reading the training slides again
        import numpy as np

        def save(tmp):
            with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a bare path
                np.savez(f, feature_mean=result.fold.feature_mean, feature_sd=result.fold.feature_sd)

        atomic_write(out_dir / "standardization.npz", save)
    write_json(result.metrics, out_dir / "metrics.json")  # last: its presence marks a complete run
