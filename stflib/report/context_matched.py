"""The context page's context-matched comparisons (``stflib.report.context`` re-exports them): per
neighbourhood (nothing, or the k nearest spots), STF's context arm against the ridge probe and MLP arms
that read the same neighbourhood, their per-fold differences and intervals, and the oracle ceiling.

The unit is the held-out patient fold, as everywhere in the book (:mod:`stflib.report.stats`): two
arms' runs are paired by (fold, seed), and the differences of a fold's seeds are averaged into one
difference per fold (``stats.unit_differences``); intervals, p-values, wins and the Holm correction
are over the folds. An arm's own interval (:func:`arm_intervals`) is likewise over its fold means.
"""
from __future__ import annotations

import pandas as pd

from stflib.grid.axes import ARMS, CONTEXT_KS
from stflib.report import stats
from stflib.report.results import DEFAULT_WORLD, metric_info, pair_index, with_design_columns

NEIGHBOURHOODS = (0, *CONTEXT_KS)  # 0: no neighbour (STF: the whole slide)
SIMPLE = {"ridge_probe": "ridge probe", "mlp": "MLP"}  # the per-spot models compared with STF, and their names


def neighbourhood_label(k: int) -> str:
    """A neighbourhood's name in tables and figures."""
    return "none (STF: whole slide)" if k == 0 else f"{k} nearest spots"


def matched_arms() -> pd.DataFrame:
    """One row per neighbourhood (index: :func:`neighbourhood_label`): ``n_neighbors``, STF's context
    arm that reads it (``stf``) and the simple models that read it (one column per :data:`SIMPLE`
    model), each as ``axis/arm``. Read from the grid's table of arms, so a renamed arm fails here."""
    context, baselines = ARMS["context"].arms, ARMS["baselines"].arms
    rows = {}
    for k in NEIGHBOURHOODS:
        stf = [arm for arm, params in context.items() if params == {"n_neighbors": k}]
        if len(stf) != 1:
            raise ValueError(f"context axis: expected one arm with only n_neighbors={k}, found {stf}; "
                             f"arms: {', '.join(context)}")
        row = {"n_neighbors": k, "stf": f"context/{stf[0]}"}
        for model in SIMPLE:
            arm = model if k == 0 else f"{model}_k{k}"
            if arm not in baselines:
                raise ValueError(f"baselines axis has no arm {arm!r} for the {k}-neighbour row; arms: {', '.join(baselines)}")
            row[model] = f"baselines/{arm}"
        rows[neighbourhood_label(k)] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("neighbourhood")


def _world_runs(summary: pd.DataFrame, world: str) -> pd.DataFrame:
    summary = with_design_columns(summary)
    summary = summary[summary["world"] == world]
    return summary.assign(key=summary["axis"].astype(str) + "/" + summary["arm"].astype(str))


def _per_pair(runs: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    """One row per pair (fold, seed[, shared code version]: :func:`~stflib.report.results.pair_index`),
    one column per ``axis/arm`` key (NaN where a run is absent; an arm with no runs is an all-NaN column)."""
    rows = runs[runs["key"].isin(keys)]
    if rows.empty:
        return pd.DataFrame(columns=keys, dtype=float)
    return rows.pivot_table(index=pair_index(rows), columns="key", values=metric).reindex(columns=keys)


def context_matched_table(summary: pd.DataFrame, metric: str = "pcc_hvg50", world: str = DEFAULT_WORLD) -> pd.DataFrame:
    """STF against the ridge probe and the MLP that read the same neighbourhood, one row per neighbourhood.

    Columns: ``n_neighbors``; per model (``stf``, ``ridge_probe``, ``mlp``) its arm and mean ``metric``
    over its runs; per simple model X, the paired difference ``stf_minus_X`` (STF minus X, whichever way
    the metric points; runs paired by (fold, seed), then one difference per held-out patient fold, the
    mean over its seeds) with its 95 % t interval over the folds (``_ci_low``, ``_ci_high``), ``_folds``
    (the folds compared), ``_wins`` (folds STF is better in) and ``_p_holm`` (paired t-test over the
    folds, Holm-adjusted across every comparison of the table); ``missing``: the arms of the row with no
    completed run (their cells are empty, the row stays).
    """
    info = metric_info(metric)
    runs = _world_runs(summary, world)
    arms = matched_arms()
    roles = ["stf", *SIMPLE]
    rows = {}
    for label, row in arms.iterrows():
        wide = _per_pair(runs, [row[r] for r in roles], metric)  # (pairs, 3)
        out = {"n_neighbors": row["n_neighbors"]}
        for role in roles:
            out[f"{role}_arm"] = row[role]
            out[role] = wide[row[role]].mean()
        for model in SIMPLE:
            diff = stats.unit_differences(wide[row["stf"]] - wide[row[model]], "fold")  # one per fold
            est = stats.paired_interval(diff)
            name = f"stf_minus_{model}"
            out.update({name: est["mean_delta"], f"{name}_ci_low": est["ci_low"], f"{name}_ci_high": est["ci_high"],
                        f"{name}_folds": est["pairs"],
                        f"{name}_wins": int((diff > 0).sum() if info.higher_is_better else (diff < 0).sum()),
                        f"{name}_p_value": est["p_value"]})
        out["missing"] = ", ".join(row[r] for r in roles if wide[row[r]].isna().all())
        rows[label] = out
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("neighbourhood")
    # one Holm family: every STF-vs-simple-model comparison the table makes (rows x models)
    p = table[[f"stf_minus_{m}_p_value" for m in SIMPLE]].to_numpy(float)  # (rows, models)
    adjusted = stats.holm(p.ravel()).reshape(p.shape)
    for j, model in enumerate(SIMPLE):
        table[f"stf_minus_{model}_p_holm"] = adjusted[:, j]
    table = table.drop(columns=[f"stf_minus_{m}_p_value" for m in SIMPLE])
    order = ["n_neighbors", *[c for r in roles for c in (f"{r}_arm", r)]]
    for model in SIMPLE:
        order += [f"stf_minus_{model}{s}" for s in ("", "_ci_low", "_ci_high", "_folds", "_wins", "_p_holm")]
    return table[order + ["missing"]]


def _stf_label(params: dict) -> str:
    """STF's name in the figure: 'STF', plus what the arm sets besides its neighbourhood ('STF, loss pcc')."""
    extra = [f"{k} {v}" for k, v in params.items() if k != "n_neighbors"]
    return "STF" + (", " + ", ".join(extra) if extra else "")


def arm_intervals(summary: pd.DataFrame, metric: str = "pcc_hvg50", world: str = DEFAULT_WORLD) -> pd.DataFrame:
    """Every context arm and every context-matched simple model: mean ``metric`` with the 95 % t interval
    over its held-out patient folds (each fold the mean of its seeds' runs;
    :func:`stflib.report.stats.mean_interval`). Columns ``neighbourhood``, ``n_neighbors``, ``model``
    (the legend's name), ``arm`` (``axis/arm``), ``runs``, ``folds``, ``mean``, ``ci_low``, ``ci_high``;
    an arm with no runs has ``runs`` and ``folds`` 0 and NaN values."""
    runs = _world_runs(summary, world)
    entries = [(params["n_neighbors"], _stf_label(params), f"context/{arm}")
               for arm, params in ARMS["context"].arms.items()]
    for k, row in matched_arms().set_index("n_neighbors").iterrows():
        entries += [(k, name, row[model]) for model, name in SIMPLE.items()]
    rows = []
    for k, model, key in entries:
        arm_runs = runs[(runs["key"] == key) & runs[metric].notna()]
        per_fold = arm_runs.groupby("fold")[metric].mean()  # the unit: a fold, its seeds averaged
        interval = stats.mean_interval(per_fold)
        rows.append({"neighbourhood": neighbourhood_label(k), "n_neighbors": k, "model": model, "arm": key,
                     "runs": len(arm_runs), "folds": interval["runs"],
                     **{c: interval[c] for c in ("mean", "ci_low", "ci_high")}})
    out = pd.DataFrame(rows)
    out[["runs", "folds"]] = out[["runs", "folds"]].astype(int)
    return out.sort_values("n_neighbors", kind="stable").reset_index(drop=True)


def oracle_ceiling(summary: pd.DataFrame, world: str = DEFAULT_WORLD) -> float:
    """Mean of the runs' oracle ceiling (``noise_ceiling_hvg50``) over the runs of :func:`arm_intervals`'
    arms; NaN when none records it (real data, or no run yet)."""
    runs = _world_runs(summary, world)
    if "noise_ceiling_hvg50" not in runs:
        return float("nan")
    keys = set(arm_intervals(summary, world=world)["arm"])
    return float(runs.loc[runs["key"].isin(keys), "noise_ceiling_hvg50"].mean())
