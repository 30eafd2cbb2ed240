"""Training loop, prediction and the run (stflib.train) on tiny synthetic slides."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from stflib import config as C
from stflib import train as T

pytest.importorskip("stflib.losses", reason="stflib.losses not written yet")

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
    base = dict(epochs=6, patience=0, batch_size=2, lr=0.05, warmup_epochs=1, log_transform=True, progress=False)
    base.update(kw)
    return C.validate(base)


def test_lr_schedule_warms_up_then_decays():
    lrs = [T.lr_lambda(s, 4, 20) for s in range(20)]
    assert lrs[0] == pytest.approx(0.25) and lrs[3] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:])) and lrs[-1] < 0.1


def test_neighbor_index_self_first():
    xy = np.array([[0, 0], [1, 0], [5, 0], [6, 0.0]])
    idx = T.neighbor_index(xy, 1)
    assert idx.tolist() == [[0, 1], [1, 0], [2, 3], [3, 2]]
    assert T.neighbor_index(xy[:1], 2).shape == (1, 3)


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
    res = T.fit(TinyModel(), items[:3], items[3:], cfg(epochs=2, **kw))
    assert all(math.isfinite(h["train_loss"]) for h in res.history)
    preds = T.predict(TinyModel(), items[3:], cfg(**kw))
    assert preds[0]["pred"].shape == (items[3]["features"].shape[0], G)


def test_global_and_zinb_outputs():
    items = make_items(4)
    res = T.fit(TinyModel(global_out=True), items[:3], items[3:], cfg(epochs=2, loss="pcc"))
    assert len(res.history) == 2
    p = T.predict(TinyModel(global_out=True), items[3:], cfg())[0]
    assert np.allclose(p["pred"], p["pred"][0])  # one profile broadcast over the slide
    c = cfg(epochs=2, loss="zinb", log_transform=False)
    res = T.fit(TinyModel(zinb=True), items[:3], items[3:], c)
    assert all(math.isfinite(h["train_loss"]) for h in res.history)
    p = T.predict(TinyModel(zinb=True), items[3:], c)[0]
    assert np.isfinite(p["pred"]).all() and p["pred"].min() >= 0  # mu -> log1p CP10k


def test_early_stopping_keeps_the_best():
    items = make_items(4)
    res = T.fit(TinyModel(), items[:3], items[3:], cfg(epochs=20, patience=2, lr=1e-9, warmup_epochs=0))
    assert res.stopped_early and len(res.history) == res.best_epoch + 3


def test_resume_after_interruption(tmp_path):
    items = make_items(4)
    c = cfg(epochs=5)
    torch.manual_seed(0)
    full = T.fit(TinyModel(), items[:3], items[3:], c)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        T.fit(TinyModel(fail_after=2 * 3), items[:3], items[3:], c, checkpoint_dir=tmp_path)  # dies in epoch 2
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "best.pt").is_file()
    torch.manual_seed(1)  # a different init: the checkpoint must win
    res = T.fit(TinyModel(), items[:3], items[3:], c, checkpoint_dir=tmp_path)
    assert res.resumed_from == 2 and len(res.history) == 5
    assert [round(h["train_loss"], 5) for h in res.history] == [round(h["train_loss"], 5) for h in full.history]


def test_mean_predictor_and_json(tmp_path):
    items = make_items(3)
    c = cfg()
    m = T.fit_sklearn("mean", items[:2], c)
    p = T.predict_sklearn(m, items[2:], c)[0]
    assert np.allclose(p["pred"], p["pred"][0]) and p["pred"].shape[1] == G
    T.write_json({"a": float("nan"), "b": np.float32(1.5), "c": [np.int64(2)]}, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": None, "b": 1.5, "c": [2]}


# ------------------------------------------------------------------ end to end on the simulator's tiny cohort
DESIGN_KEYS = {"pcc_hvg50", "pcc_all", "mse", "pathway_pcc_truth", "n_params", "train_seconds", "config", "stflib_version"}


@pytest.fixture(scope="module")
def tiny_cohort():
    sim = pytest.importorskip("stflib.simulate", reason="stflib.simulate not written yet")
    return sim.default_cohort("tiny")


@pytest.mark.slow
@pytest.mark.parametrize("over", [dict(model="interaction", return_attention=True, interactions="bottleneck"),
                                  dict(model="ridge_probe"), dict(model="mean"), dict(model="he2rna"),
                                  dict(model="interaction", loss="zinb", n_neighbors=4)])
def test_run_end_to_end_on_tiny_cohort(tiny_cohort, tmp_path, over):
    import anndata as ad
    import pandas as pd

    m = T.train_and_evaluate(preset="tiny", epochs=2, progress=False, output_dir=str(tmp_path), **over)
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
    if over["model"] == "mean":
        assert m["pcc_hvg50"] == 0.0


@pytest.mark.parametrize("model", ["ridge_probe", "mlp"])
def test_context_matched_baselines_see_own_and_neighbour_mean_features(tiny_cohort, tmp_path, model):
    from stflib.config import BACKBONE_DIMS

    common = dict(preset="tiny", model=model, epochs=2, progress=False, output_dir=str(tmp_path))
    plain = T.run(None, log=None, write=False, **common)
    matched = T.run(None, log=None, write=False, n_neighbors=6, **common)
    width = BACKBONE_DIMS[matched.config["backbone"]]
    assert plain.fold.feature_dim == width and matched.fold.feature_dim == 2 * width
    item = next(iter(matched.fold.items.values()))
    assert item["features"].shape[1] == 2 * width
    assert matched.metrics["pcc_hvg50"] != plain.metrics["pcc_hvg50"]
    if model == "mlp":  # per-spot on [own, kNN mean]: one prediction per spot, no spot windows
        assert matched.metrics["n_params"] > plain.metrics["n_params"]
