"""How much of the true pathway activity the named pathway tokens could carry: the pathways page's
bounds, per patient fold, on the inputs of the Hallmark-initialised, auxiliary-loss arm.

A run's ``pathway_ceiling`` is a ridge from the arm's features (and neighbourhood) fit *directly* to
the simulator's true activities. No model sees those: STF's tokens learn their names only from the
auxiliary targets (``stflib.pathways.pathway_targets``: the mean of the member genes' z-scored
log-expression, per slide). Three figures per fold separate what the signal allows from what the
model takes of it, all scored as ``pathway_pcc_truth`` is (per pathway, the PCC over the held-out
patients' valid spots, then the mean over the tokens' named pathways):

- ``ceiling``: the runs' ``pathway_ceiling`` (``stflib.train.evaluate.pathway_ceiling``, the same
  function on the same fold);
- ``aux_readout``: the same ridge, penalty chosen on the validation patients' auxiliary targets, fit
  to the *auxiliary targets* of the training patients: what a linear read-out of the inputs reaches
  when it is supervised as the tokens are;
- ``aux_target``: the held-out patients' auxiliary targets themselves against the true activities:
  how well the supervision measures the truth, spot by spot, from counts.

Each fold reads the cohort once and solves two ridge regressions on up to 4,096 inputs (tens of
seconds), so ``python -m stflib pathway-bounds`` writes ``results/ceilings/pathway_<world>.csv``
(:func:`write_pathway_bounds`) and the book reads it.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from stflib.grid.axes import ARMS
from stflib.report import context
from stflib.report.results import DEFAULT_WORLD, per_arm_means, results_root, run_predictions, write_results_csv

__all__ = ["BOUNDS_ARM", "bounds_path", "pathway_bounds", "write_pathway_bounds", "load_pathway_bounds",
           "bounds_table", "describe_bounds", "run_slide_levels", "write_slide_levels", "slide_levels",
           "slide_levels_path", "SLIDE_LEVEL_COLUMNS"]

BOUNDS_ARM = ("pathways", "init-on_aux-0.5")  # the arm the training-recipe issue measures against its ceiling
BOUND_COLUMNS = ("ceiling", "aux_readout", "aux_target")  # the per-fold figures of the module doc


def bounds_path(world: str = DEFAULT_WORLD, results_dir: str | Path | None = None) -> Path:
    """``results/ceilings/pathway_<world>.csv``."""
    results_dir = results_root(results_dir)
    return results_dir / "ceilings" / f"pathway_{world}.csv"


def _stack(fold, ids, k: int, columns: list[int]):
    """(inputs, auxiliary targets, true activities of ``columns``) over the valid spots of ``ids``."""
    from stflib.spatial import with_neighbour_mean

    X, aux, truth = [], [], []
    for i in ids:
        it = fold.items[i]
        v = it["valid"].numpy().astype(bool)
        x = it["features"].numpy().astype(np.float64)
        if k:
            x = with_neighbour_mean(x, it["coords"].numpy(), k)
        X.append(x[v])
        aux.append(it["pathway_targets"].numpy().astype(np.float64)[v])
        truth.append(it["true_pathways"].numpy().astype(np.float64)[v][:, columns])
    return np.concatenate(X), np.concatenate(aux), np.concatenate(truth)


def pathway_bounds(world: str = DEFAULT_WORLD, n_folds: int = 3, log: Callable[[str], None] | None = None,
                   params: dict | None = None) -> pd.DataFrame:
    """One row per fold: ``ceiling``, ``aux_readout``, ``aux_target`` (module doc), the number of
    named pathways and held-out spots. Each fold is loaded as a run of :data:`BOUNDS_ARM` loads it
    (its parameters, ``world``, ``n_folds`` and any other run ``params``)."""
    from stflib import metrics as M
    from stflib.config import RunConfig
    from stflib.grid.runner import code_version
    from stflib.models.baselines import ridge_path
    from stflib.train.evaluate import CEILING_ALPHAS, pathway_ceiling
    from stflib.train.fold import load_fold, prepare_features, uses_context_features
    from stflib.train.targets import prepare_targets

    axis, arm = BOUNDS_ARM
    version = code_version()
    rows = []
    for fold_index in range(n_folds):
        cfg = RunConfig.from_params({**ARMS[axis].arms[arm], **(params or {}), "world": world, "n_folds": n_folds,
                                     "fold": fold_index})
        fold = load_fold(cfg, log)
        prepare_features(fold, cfg)
        prepare_targets(fold, cfg)  # the arm's pathway subset and depth correction, as its runs train on
        if not fold.truth_pathway_names:
            raise ValueError(f"pathway bounds need the simulator's true activities; {fold.root} has none")
        names = [n for n in fold.membership.names if n in fold.truth_pathway_names]
        columns = [fold.truth_pathway_names.index(n) for n in names]
        k = 0 if uses_context_features(cfg) else cfg.n_neighbors
        (X, A, _), (Xv, Av, _), (Xt, At, Tt) = (_stack(fold, ids, k, columns)
                                                for ids in (fold.train_ids, fold.val_ids, fold.test_ids))
        named = [fold.membership.names.index(n) for n in names]  # auxiliary target columns of the named pathways
        A, Av, At = A[:, named], Av[:, named], At[:, named]
        xm, am, Ws = ridge_path(X, A, CEILING_ALPHAS)
        val = [M.nanmean(M.pearson_columns((Xv - xm) @ W + am, Av)) for W in Ws]
        best = int(np.nanargmax(val))
        readout = (Xt - xm) @ Ws[best] + am
        rows.append({"world": world, "n_folds": n_folds, "fold": fold_index, "n_neighbors": k,
                     "backbone": cfg.backbone, "n_pathways": len(names), "n_test_spots": len(Xt),
                     "ceiling": pathway_ceiling(fold, cfg),
                     "aux_readout": M.nanmean(M.pearson_columns(readout, Tt)),
                     "aux_target": M.nanmean(M.pearson_columns(At, Tt)),
                     "aux_readout_alpha": float(CEILING_ALPHAS[best]),
                     "test_ids": ";".join(map(str, fold.test_ids)), "code_version": version})
        if log:
            r = rows[-1]
            log(f"fold {fold_index}: ceiling {r['ceiling']:.3f}, aux read-out {r['aux_readout']:.3f}, "
                f"aux targets {r['aux_target']:.3f}")
    return pd.DataFrame(rows)


def write_pathway_bounds(world: str = DEFAULT_WORLD, n_folds: int = 3, results_dir: str | Path | None = None,
                         log: Callable[[str], None] | None = print, params: dict | None = None) -> Path:
    """Compute :func:`pathway_bounds` and write it to :func:`bounds_path` (atomically)."""
    return write_results_csv(pathway_bounds(world, n_folds, log=log, params=params), bounds_path(world, results_dir))


def load_pathway_bounds(world: str = DEFAULT_WORLD, results_dir: str | Path | None = None) -> pd.DataFrame | None:
    """The committed bounds of ``world`` (None when ``python -m stflib pathway-bounds`` has not written them)."""
    path = bounds_path(world, results_dir)
    return pd.read_csv(path) if path.is_file() else None


def bounds_table(summary: pd.DataFrame, bounds: pd.DataFrame, world: str = DEFAULT_WORLD) -> pd.DataFrame:
    """Per fold of ``bounds`` (and their mean): :data:`BOUNDS_ARM`'s ``pathway_pcc_truth`` (mean over
    its seeds), each bound, and the arm's share of the ceiling and of the auxiliary read-out (the
    mean row's shares are the mean of the folds' shares).

    Raises when the arm's runs record another ``pathway_ceiling`` than ``bounds`` for a fold: the
    bounds were computed on other patients or inputs than the runs."""
    axis, arm = BOUNDS_ARM
    runs = summary[(summary["axis"] == axis) & (summary["arm"] == arm) & (summary["world"] == world)]
    if runs.empty:
        raise ValueError(f"no runs of {axis}/{arm} in world {world!r} in the summary")
    per_fold = runs.groupby("fold").agg(model=("pathway_pcc_truth", "mean"), seeds=("seed", "nunique"),
                                        run_ceiling=("pathway_ceiling", "mean"))
    table = bounds.set_index("fold")[list(BOUND_COLUMNS)].join(per_fold, how="inner")
    if table.empty:
        raise ValueError(f"the bounds' folds {sorted(bounds['fold'])} and the runs' {sorted(per_fold.index)} do not meet")
    off = table[(table["run_ceiling"] - table["ceiling"]).abs() > 1e-4]
    if not off.empty:
        raise ValueError(f"folds {list(off.index)}: the runs record pathway_ceiling "
                         f"{off['run_ceiling'].round(4).tolist()} but the bounds {off['ceiling'].round(4).tolist()}; "
                         "re-run `python -m stflib pathway-bounds` on the runs' cohort")
    table = table.drop(columns="run_ceiling")
    table["share of ceiling"] = table["model"] / table["ceiling"]
    table["share of aux read-out"] = table["model"] / table["aux_readout"]
    table.loc["mean"] = table.mean()  # the shares: the mean of the folds' shares, as the training-recipe claims take it
    table["seeds"] = table["seeds"].round().astype(int)
    return table[["model", "seeds", *BOUND_COLUMNS, "share of ceiling", "share of aux read-out"]]


def describe_bounds(table: pd.DataFrame) -> str:
    """The bounds table (:func:`bounds_table`) in sentences, every number read from it."""
    folds = table.drop(index="mean")
    m = table.loc["mean"]
    n = len(folds)
    above = int((folds["aux_readout"] >= folds["ceiling"] - 1e-9).sum())
    axis, arm = BOUNDS_ARM
    text = (f"Over {n} folds, the named tokens of `{axis}/{arm}` reach a mean `pathway_pcc_truth` of "
            f"{m['model']:.3f}: {m['share of ceiling']:.0%} of the ridge fit to the true activities "
            f"({m['ceiling']:.3f}, the runs' `pathway_ceiling`) and {m['share of aux read-out']:.0%} of the same "
            f"ridge fit to the auxiliary targets ({m['aux_readout']:.3f}). The auxiliary targets themselves "
            f"correlate {m['aux_target']:.3f} with the true activities on the held-out spots. ")
    if above == n:
        text += ("The ridge supervised as the tokens are reaches at least the ridge fit to the truth in every fold, "
                 "so the truth-fit ridge is not an upper bound on what this supervision allows, and what the tokens "
                 "miss is the model's, not the signal's.")
    elif above:
        text += (f"The ridge supervised as the tokens are reaches at least the ridge fit to the truth in {above} of "
                 f"{n} folds: the truth-fit ridge is not an upper bound on what this supervision allows.")
    else:
        text += "The ridge fit to the truth stays above the one supervised as the tokens are in every fold."
    if m["share of aux read-out"] < 1:
        text += (f" Trained on the same targets from the same inputs, a linear read-out correlates "
                 f"{1 / m['share of aux read-out']:.1f}x as strongly with the truth as the tokens do.")
    return text

# --------------------------------------------------------------------------------------- slide levels
SLIDE_LEVEL_COLUMNS = ("pooled PCC", "within-slide PCC", "scores between slides", "truth between slides")


def _centre_slides(x: np.ndarray, slide: np.ndarray) -> np.ndarray:
    x = x.copy()
    for s in np.unique(slide):
        x[slide == s] -= x[slide == s].mean(0)
    return x


def run_slide_levels(predictions: str | Path) -> dict[str, float]:
    """One run's held-out pathway scores against the true activities (``predictions.h5ad``), the
    scores' columns matched to the truth's by pathway name:

    - ``pooled PCC``: per pathway, the PCC over every held-out spot (``pathway_pcc_truth``);
    - ``within-slide PCC``: the same after subtracting each slide's mean from scores and truth, so
      only the pattern inside each slide counts;
    - ``scores between slides`` / ``truth between slides``: the share of each pathway's variance
      that lies between the slides' means (mean over pathways).
    """
    import anndata as ad

    from stflib.metrics import nanmean, pearson_columns

    a = ad.read_h5ad(predictions)
    valid = np.asarray(a.obs["valid"], bool)
    names, truth_names = list(a.uns["pathway_names"]), list(a.uns["true_pathway_names"])
    scores = np.asarray(a.obsm["pathway_scores"], np.float64)[valid]
    truth = np.asarray(a.obsm["true_pathway_activity"], np.float64)[valid][:, [truth_names.index(n) for n in names]]
    slide = np.asarray(a.obs["sample_id"])[valid]

    def between(x):
        within = _centre_slides(x, slide)
        return float(np.mean(1.0 - within.var(0) / np.maximum(x.var(0), 1e-12)))

    return {"pooled PCC": nanmean(pearson_columns(scores, truth)),
            "within-slide PCC": nanmean(pearson_columns(_centre_slides(scores, slide), _centre_slides(truth, slide))),
            "scores between slides": between(scores), "truth between slides": between(truth)}


def slide_levels_path(axis: str, results_dir: str | Path | None = None) -> Path:
    """``results/ceilings/slide_levels_<axis>.csv``: committed, since the runs' ``predictions.h5ad`` are not."""
    results_dir = results_root(results_dir)
    return results_dir / "ceilings" / f"slide_levels_{axis}.csv"


def write_slide_levels(axis: str, results_dir: str | Path | None = None) -> Path:
    """:func:`run_slide_levels` of every run of ``axis`` that has its ``predictions.h5ad`` here
    (``results/<axis>/<arm>/fold*/``), one row per run, to :func:`slide_levels_path`."""
    rows = [{"arm": arm, "run": run, **run_slide_levels(path)} for arm, run, path in run_predictions(axis, results_dir)]
    return write_results_csv(pd.DataFrame(rows), slide_levels_path(axis, results_dir))


def slide_levels(axis: str, results_dir: str | Path | None = None) -> pd.DataFrame:
    """Per arm of ``axis``: the committed per-run slide levels (:func:`write_slide_levels`) averaged
    over the arm's runs, with their number. A run whose pathway PCC pooled over slides falls below
    its within-slide PCC loses to slide-level offsets of its scores that the truth does not have."""
    return per_arm_means(slide_levels_path(axis, results_dir), SLIDE_LEVEL_COLUMNS,
                         f"python -m stflib pathway-bounds --slide-levels {axis}")


# --------------------------------------------------------------------------------------------- command


def add_arguments(p: argparse.ArgumentParser) -> None:
    context.add_arguments(p)
    p.add_argument("--slide-levels", metavar="AXIS", default=None, choices=list(ARMS),
                   help="instead of the bounds: write results/ceilings/slide_levels_AXIS.csv from the axis' "
                        "predictions.h5ad (where its pathway scores vary: within or between slides)")


def run(args: argparse.Namespace) -> int:
    if args.slide_levels:
        path = write_slide_levels(args.slide_levels, args.results)
        print(slide_levels(args.slide_levels, args.results).round(4).to_string())
        print(f"wrote {path}")
        return 0
    path = write_pathway_bounds(args.world, args.folds, args.results)
    table = pd.read_csv(path)
    print(table[["fold", *BOUND_COLUMNS]].round(4).to_string(index=False))
    print(f"wrote {path}")
    return 0

