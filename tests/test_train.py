"""Training loop, prediction and the run (stflib.train) on tiny synthetic slides."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from stflib import config as C
from stflib import train as T
from stflib.data import collate_slides
from stflib.io import write_json
from stflib.models import MeanExpression

D, G, P = 8, 12, 3


class TinyModel(nn.Module):
    """Stand-in with the SpatialTranscriptFormer forward signature."""

    def __init__(self, zinb=False, global_out=False, fail_after=None):
        super().__init__()
        self.enc = nn.Linear(D, P)
        self.rec = nn.Linear(P, G)
        self.zinb, self.global_out, self.fail_after, self.calls = zinb, global_out, fail_after, 0
        self.log_theta = nn.Parameter(torch.zeros(G))

    def forward(self, features, coords, pad_mask, return_attention=False, library_size=None):
        self.calls += 1
        if self.fail_after is not None and self.training and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        scores = self.enc(features)
        genes = self.rec(scores)
        if self.global_out:
            keep = (~pad_mask).float().unsqueeze(-1)
            genes = (genes * keep).sum(1, keepdim=True) / keep.sum(1, keepdim=True)
        out = {"genes": genes, "pathway_scores": scores, "pi": None, "theta": None, "attention": None}
        if self.zinb:
            rate = torch.softmax(genes, -1)
            out["genes"] = rate * library_size.unsqueeze(-1)
            out["theta"] = self.log_theta.exp().expand_as(genes)
            out["pi"] = torch.full_like(genes, 0.01)
        if return_attention:
            s = features.shape[1]
            out["attention"] = [torch.full((features.shape[0], 1, s, s), 1.0 / s)]
        return out


def make_items(n_slides=6, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(D, G))
    items = []
    for i in range(n_slides):
        s = 20 + 3 * i
        f = rng.normal(size=(s, D)).astype(np.float32)
        lib = rng.uniform(2000, 4000, size=s).astype(np.float32)
        rate = np.exp(0.5 * f @ w)
        cp = rate / rate.sum(1, keepdims=True) * 1e4
        counts = rng.poisson(cp * lib[:, None] / 1e4).astype(np.float32)
        valid = np.ones(s, bool)
        valid[0] = False
        items.append({
            "sample_id": f"S{i}", "features": torch.tensor(f),
            "coords": torch.tensor(np.stack(np.meshgrid(np.arange(s), [0])[::-1], -1).reshape(s, 2) * 100.0, dtype=torch.float32),
            "targets": torch.tensor(np.log1p(counts / counts.sum(1, keepdims=True).clip(1) * 1e4), dtype=torch.float32),
            "counts": torch.tensor(counts), "library_size": torch.tensor(counts.sum(1)),
            "valid": torch.tensor(valid), "pathway_targets": torch.tensor(rng.normal(size=(s, P)), dtype=torch.float32),
            "true_pathways": None,
        })
    return items


def cfg(**kw):
    # the tests' TinyModel sees whole slides (n_neighbors 0; the reference's 18 would cut it into windows)
    base = dict(max_steps=12, eval_every=2, patience=0, batch_size=2, lr=0.05, warmup_steps=2, log_transform=True,
                progress=False, n_neighbors=0)
    base.update(kw)
    return C.RunConfig(**base)


def test_lr_schedule_warms_up_then_decays():
    lrs = [T.lr_lambda(s, 4, 20) for s in range(20)]
    assert lrs[0] == pytest.approx(0.25) and lrs[3] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:])) and lrs[-1] < 0.1


def test_window_index_self_first():
    xy = np.array([[0, 0], [1, 0], [5, 0], [6, 0.0]])
    idx = T.window_index(xy, 1)
    assert idx.tolist() == [[0, 1], [1, 0], [2, 3], [3, 2]]
    assert T.window_index(xy[:1], 2).tolist() == [[0, 0, 0]]  # one spot: itself, then padding
    assert T.window_index(xy[:2], 3).tolist() == [[0, 1, 1, 1], [1, 0, 0, 0]]


def test_fit_learns_and_is_deterministic():
    items = make_items()
    c = cfg()
    torch.manual_seed(0)
    m = TinyModel()
    before, _ = T.validation_score(m, items[4:], c, "cpu")
    res = T.fit(m, items[:4], items[4:], c)
    assert len(res.history) == 6 and res.best_epoch >= 0
    assert res.best_score > before and res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    torch.manual_seed(0)
    res2 = T.fit(TinyModel(), items[:4], items[4:], c)
    assert [h["train_loss"] for h in res.history] == [h["train_loss"] for h in res2.history]
    preds = T.predict(m, items[4:], c, return_attention=True)
    assert preds[0]["pred"].shape == (items[4]["features"].shape[0], G)
    assert preds[0]["pathway_scores"].shape[1] == P and preds[0]["attention"][0].ndim == 4


@pytest.mark.parametrize("kw", [dict(loss="pcc"), dict(loss="mse_pcc", log_transform=False),
                                dict(pathway_loss_weight=0.5), dict(n_neighbors=3)])
def test_fit_modes_run(kw):
    items = make_items(4)
    res = T.fit(TinyModel(), items[:3], items[3:], cfg(max_steps=4, **kw))
    assert all(math.isfinite(h["train_loss"]) for h in res.history)
    preds = T.predict(TinyModel(), items[3:], cfg(**kw))
    assert preds[0]["pred"].shape == (items[3]["features"].shape[0], G)


def test_global_and_zinb_outputs():
    items = make_items(4)
    res = T.fit(TinyModel(global_out=True), items[:3], items[3:], cfg(max_steps=4, loss="pcc", output_mode="global"))
    assert len(res.history) == 2
    p = T.predict(TinyModel(global_out=True), items[3:], cfg(output_mode="global"))[0]
    assert np.allclose(p["pred"], p["pred"][0])  # one profile broadcast over the slide
    c = cfg(max_steps=4, loss="zinb", log_transform=False)
    res = T.fit(TinyModel(zinb=True), items[:3], items[3:], c)
    assert all(math.isfinite(h["train_loss"]) for h in res.history)
    p = T.predict(TinyModel(zinb=True), items[3:], c)[0]
    assert np.isfinite(p["pred"]).all() and p["pred"].min() >= 0  # mu -> log1p CP10k


def test_early_stopping_keeps_the_best():
    items = make_items(4)
    res = T.fit(TinyModel(), items[:3], items[3:], cfg(max_steps=40, patience=2, lr=1e-9, warmup_steps=0))
    assert res.stopped_early and len(res.history) == res.best_epoch + 3
    assert res.history[-1]["step"] < 40


def test_resume_after_interruption(tmp_path):
    items = make_items(4)
    c = cfg(max_steps=10)
    torch.manual_seed(0)
    full = T.fit(TinyModel(), items[:3], items[3:], c)
    torch.manual_seed(0)
    # one training forward per step plus one validation forward per evaluation (every 2 steps):
    # 5 steps + 2 evaluations, then the 6th step's forward dies, after the checkpoint of step 4
    with pytest.raises(KeyboardInterrupt):
        T.fit(TinyModel(fail_after=5 + 2), items[:3], items[3:], c, checkpoint_dir=tmp_path)
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "best.pt").is_file()
    torch.manual_seed(1)  # a different init: the checkpoint must win
    res = T.fit(TinyModel(), items[:3], items[3:], c, checkpoint_dir=tmp_path)
    assert res.resumed_from == 1 and len(res.history) == 5
    assert [round(h["train_loss"], 5) for h in res.history] == [round(h["train_loss"], 5) for h in full.history]


def test_mean_expression_and_json(tmp_path):
    items = make_items(3)
    c = cfg(model="mean")
    m = T.fit_numpy(items[:2], c)
    assert isinstance(m, MeanExpression)
    expected = torch.cat([it["targets"][it["valid"]] for it in items[:2]]).double().mean(0).float().numpy()
    p = T.predict_numpy(m, items[2:], c)[0]
    assert np.allclose(p["pred"], expected) and p["pred"].shape == (items[2]["features"].shape[0], G)
    write_json({"a": float("nan"), "b": np.float32(1.5), "c": [np.int64(2)]}, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": None, "b": 1.5, "c": [2]}


# ------------------------------------------------------------------ end to end on the simulator's tiny cohort
DESIGN_KEYS = {"pcc_hvg50", "pcc_all", "mse", "pathway_pcc_truth", "train_pcc_hvg50", "train_mse_ratio", "pathway_ceiling",
               "n_params", "train_seconds", "config", "stflib_version"}


@pytest.fixture(scope="module")
def tiny_cohort():
    from stflib.simulate import default_cohort

    return default_cohort("tiny")


@pytest.mark.slow
@pytest.mark.parametrize("over", [dict(model="interaction", return_attention=True, interactions="bottleneck"),
                                  dict(model="ridge_probe"), dict(model="mean"), dict(model="he2rna"),
                                  dict(model="interaction", loss="zinb", log_transform=False, n_neighbors=4)])
def test_run_end_to_end_on_tiny_cohort(tiny_cohort, tmp_path, over):
    import anndata as ad
    import pandas as pd

    m = T.run(preset="tiny", max_steps=4, eval_every=2, progress=False, output_dir=str(tmp_path), log=None, **over).metrics
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert DESIGN_KEYS <= set(saved) and saved["config"]["model"] == over["model"]
    assert math.isfinite(m["pcc_hvg50"]) and -1 <= m["pcc_hvg50"] <= 1 and m["mse"] > 0
    assert 0 < m["noise_ceiling_hvg50"] <= 1  # the simulator's truth is there
    assert len(saved["hvg50"]) == 50 and not set(saved["test_ids"]) & set(saved["train_ids"] + saved["val_ids"])
    a = ad.read_h5ad(tmp_path / "predictions.h5ad")
    assert a.obsm["spatial"].shape == (a.n_obs, 2) and a.n_vars == 1000 and "truth" in a.layers
    assert len(pd.read_csv(tmp_path / "per_gene.csv")) == 1000
    if over["model"] == "interaction":
        assert "pathway_scores" in a.obsm and math.isfinite(m["pathway_pcc_truth"])
        assert len(pd.read_csv(tmp_path / "history.csv")) == 2 and (tmp_path / "best.pt").is_file()
    assert -1 <= m["pathway_ceiling"] <= 1 and m["train_mse_ratio"] > 0
    if over["model"] == "mean":
        assert m["pcc_hvg50"] == 0.0 and m["train_mse_ratio"] == pytest.approx(1.0)


def test_run_settings_are_parameters(tiny_cohort, tmp_path):
    import anndata as ad

    before = torch.get_num_threads()
    try:
        result = T.run(preset="tiny", model="mean", torch_threads=1, prediction_genes="hvg50", progress=False,
                       output_dir=str(tmp_path), log=None)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert isinstance(result.config, C.RunConfig) and result.config.prediction_genes == "hvg50"
    assert list(ad.read_h5ad(tmp_path / "predictions.h5ad").var_names) == result.fold.hvg


@pytest.mark.parametrize("model", ["ridge_probe", "mlp"])
def test_context_matched_baselines_see_own_and_neighbour_mean_features(tiny_cohort, tmp_path, model):
    from stflib.backbones import BACKBONES

    common = dict(preset="tiny", model=model, epochs=2, progress=False, output_dir=str(tmp_path))
    plain = T.run(None, log=None, write=False, **common)
    matched = T.run(None, log=None, write=False, n_neighbors=6, **common)
    width = BACKBONES[matched.config.backbone].feature_dim
    assert plain.fold.feature_dim == width and matched.fold.feature_dim == 2 * width
    item = next(iter(matched.fold.items.values()))
    assert item["features"].shape[1] == 2 * width
    assert matched.metrics["pcc_hvg50"] != plain.metrics["pcc_hvg50"]
    if model == "mlp":  # per-spot on [own, kNN mean]: one prediction per spot, no spot windows
        assert matched.metrics["n_params"] > plain.metrics["n_params"]


# ------------------------------------------------------------------ the recipe: scale, crops, selection
def test_standardized_output_starts_at_the_mean_and_loss_is_per_gene_standardised():
    items = make_items(4)
    mean, sd = T.target_statistics(items)
    assert mean.shape == sd.shape == (G,) and (sd > 0).all()
    t = torch.cat([it["targets"][it["valid"]] for it in items]).double()
    np.testing.assert_allclose(sd, t.std(0, unbiased=False).numpy(), rtol=1e-4)

    class Zero(nn.Module):
        def forward(self, features, coords, pad_mask, **kw):
            return {"genes": torch.zeros(*features.shape[:2], G), "pathway_scores": None, "pi": None, "theta": None}

    model = T.StandardizedOutput(Zero(), mean, sd)
    batch = collate_slides(items[:2])
    step = T.forward(model, batch)
    torch.testing.assert_close(step.genes[0, 3], torch.tensor(mean))
    loss, parts = T.compute_loss(step, cfg(loss="mse"), model.gene_sd)
    z = (batch["targets"] - torch.tensor(mean)) / torch.tensor(sd)
    expected = (z[batch["valid"]] ** 2).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-4)
    raw, _ = T.compute_loss(step, cfg(loss="mse"))  # without gene_sd: the unscaled MSE
    assert float(raw) != pytest.approx(float(loss), rel=1e-2)


def test_crop_item_subsamples_valid_spots_consistently():
    item = make_items(1)[0]
    g = torch.Generator().manual_seed(0)
    c = T.crop_item(item, 8, g)
    assert c["features"].shape[0] == 8 and c["valid"].all()
    rows = [int(torch.nonzero((item["features"] == r).all(1))[0]) for r in c["features"]]
    assert rows == sorted(rows) and 0 not in rows  # ordered, never the invalid spot 0
    torch.testing.assert_close(c["targets"], item["targets"][rows])
    torch.testing.assert_close(c["coords"], item["coords"][rows])
    assert T.crop_item(item, 0, g) is item and T.crop_item(item, 10_000, g) is item


def test_median_smoothing_ignores_one_noisy_evaluation():
    assert T.median_smoothed([0.10, 0.12, 0.50]) == pytest.approx(0.12)
    assert T.median_smoothed([0.10, 0.50, 0.12]) == pytest.approx(0.12)
    assert T.median_smoothed([0.3]) == pytest.approx(0.3) and math.isnan(T.median_smoothed([float("nan")]))


def test_schedule_counts_steps_and_epochs_cap_it():
    items = make_items(4)
    res = T.fit(TinyModel(), items[:3], items[3:], cfg(max_steps=9, eval_every=4))
    assert [h["step"] for h in res.history] == [4, 8, 9]  # every eval_every steps and at the end
    res = T.fit(TinyModel(), items[:3], items[3:], cfg(max_steps=100, eval_every=1, epochs=2, batch_size=1))
    assert res.history[-1]["step"] == 6 and res.history[-1]["passes"] == pytest.approx(2.0)


def test_ridge_probe_penalty_is_chosen_on_validation_slides():
    items = make_items(6)
    probe = T.fit_numpy(items[:4], cfg(model="ridge_probe"), val_items=items[4:], score_columns=np.arange(5))
    assert len(probe.selection_) >= 5 and probe.alpha_ in probe.selection_
    assert probe.selection_[probe.alpha_] == max(probe.selection_.values())


def test_zinb_prediction_is_the_expectation():
    items = make_items(4)
    c = cfg(loss="zinb", log_transform=False)
    torch.manual_seed(0)
    model = TinyModel(zinb=True)
    p = T.predict(model, items[3:], c)[0]
    out = model(items[3]["features"][None], items[3]["coords"][None], torch.zeros(1, len(items[3]["valid"]), dtype=torch.bool),
                library_size=items[3]["library_size"][None])
    expect = (0.99 * out["genes"][0]).detach().numpy()
    lib = items[3]["library_size"].numpy()[:, None]
    np.testing.assert_allclose(p["pred"], np.log1p(expect / lib * 1e4), rtol=1e-4, atol=1e-5)


def _ceiling_fold(seed: int = 0):
    """The parts of a FoldData that pathway_ceiling reads: six slides whose true activities are a
    linear function of their features plus a little noise."""
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((5, 3))
    items = {}
    for i in range(6):
        f = rng.standard_normal((40, 5))
        items[f"s{i}"] = {"features": torch.tensor(f, dtype=torch.float32),
                          "coords": torch.tensor(rng.uniform(0, 100, (40, 2)), dtype=torch.float32),
                          "valid": torch.ones(40, dtype=torch.bool),
                          "true_pathways": torch.tensor(f @ mixing + 0.1 * rng.standard_normal((40, 3)),
                                                        dtype=torch.float32)}
    return SimpleNamespace(items=items, truth_pathway_names=["A", "B", "C"], train_ids=["s0", "s1", "s2"],
                           val_ids=["s3"], test_ids=["s4", "s5"])


def test_pathway_ceiling_is_cached_by_what_it_reads(tmp_path, monkeypatch):
    from stflib.train import evaluate as E

    monkeypatch.setenv("STFLIB_CACHE", str(tmp_path))
    fold, cfg = _ceiling_fold(), C.RunConfig.from_params({"n_neighbors": 3})
    fresh = E.pathway_ceiling(fold, cfg, cache=False)
    assert 0.5 < fresh <= 1 and not list(tmp_path.rglob("*.json"))  # cache=False writes nothing
    assert E.pathway_ceiling(fold, cfg) == fresh and len(list((tmp_path / "pathway_ceiling").glob("*.json"))) == 1

    def computed_again(*args, **kwargs):
        raise AssertionError("computed again")

    real_ridge = E.ridge_path
    monkeypatch.setattr(E, "ridge_path", computed_again)
    assert E.pathway_ceiling(fold, cfg) == fresh  # read back bit for bit
    # neither the model's loss nor the seed is an input of the ceiling: another arm reads the same entry
    assert E.pathway_ceiling(fold, C.RunConfig.from_params({"n_neighbors": 3, "seed": 5, "loss": "mse_pcc"})) == fresh
    # what it reads is in the key: the neighbourhood, a feature value, which slides are validation
    edited = _ceiling_fold()
    edited.items["s4"]["features"][0, 0] += 1
    swapped = _ceiling_fold()
    swapped.val_ids, swapped.test_ids = ["s4"], ["s3", "s5"]
    for other_fold, other_cfg in ((fold, C.RunConfig.from_params({"n_neighbors": 0})), (edited, cfg), (swapped, cfg)):
        with pytest.raises(AssertionError, match="computed again"):
            E.pathway_ceiling(other_fold, other_cfg)
    # an unreadable entry is computed again and overwritten
    monkeypatch.setattr(E, "ridge_path", real_ridge)
    entry = next((tmp_path / "pathway_ceiling").glob("*.json"))
    entry.write_text("{not json")
    assert E.pathway_ceiling(fold, cfg) == fresh and json.loads(entry.read_text())["pathway_ceiling"] == fresh
    # no simulator truth: NaN, and nothing cached
    fold.truth_pathway_names = []
    assert math.isnan(E.pathway_ceiling(fold, cfg)) and len(list((tmp_path / "pathway_ceiling").glob("*.json"))) == 1
