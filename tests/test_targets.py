"""Pathway targets as a run's output (stflib.train.targets), the target/subset/depth parameters, the
pathway loss and the concordance metrics (stflib.metrics)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from stflib import config as C
from stflib import metrics as M
from stflib import pathways as P
from stflib.train import targets as T

NEW_PARAMETERS = ("pathway_subset", "target", "depth_correction")


# ------------------------------------------------------------------------------------------ parameters
def test_new_parameters_keep_the_hash_of_existing_runs_at_their_default():
    d = C.defaults()
    payload = C.hash_payload({})
    for name in NEW_PARAMETERS:
        assert name not in payload  # a run written before these parameters existed keeps its hash
        other = next(v for v in C.PARAM_BY_NAME[name].choices() if v != d[name])
        over = {name: other, **({"target": "pathways"} if name != "target" else {})}
        assert C.hash_payload(over)[name] == other and C.config_hash(over) != C.config_hash({})


@pytest.mark.parametrize("over, says", [
    ({"target": "pathways", "model": "mlp"}, "needs a model with pathway scores; allowed: interaction"),
    ({"target": "pathways", "pathway_loss_weight": 0.5}, "pathway_init must be False and pathway_loss_weight 0"),
    ({"target": "pathways", "pathway_init": True}, "pathway_init must be False"),
    ({"target": "pathways", "loss": "zinb", "log_transform": False}, "models counts"),
    ({"target": "pathways", "num_pathways": 20}, "num_pathways must be 50"),
    ({"target": "genome"}, "target: unknown value 'genome'; allowed: genes, pathways"),
    ({"pathway_subset": "crc"}, "allowed: all, colorectal"),
    ({"depth_correction": "yes"}, "allowed: none, regress"),
])
def test_invalid_target_settings_name_the_value_and_the_allowed_ones(over, says):
    with pytest.raises(ValueError, match=says):
        C.validate(over, check_paths=False)


def test_depth_corrections_are_the_reliability_figures_names():
    from stflib.sim.reliability import DEPTH_CORRECTIONS

    assert C.DEPTH_CORRECTIONS == DEPTH_CORRECTIONS


# ------------------------------------------------------------------------------------------- subsets
def test_colorectal_subset_is_14_hallmarks_in_membership_order():
    hallmarks = P.hallmarks()
    assert len(P.COLORECTAL_PATHWAYS) == 14 and set(P.COLORECTAL_PATHWAYS) <= set(hallmarks)
    genes = sorted({g for members in hallmarks.values() for g in members})
    full = P.membership_matrix(hallmarks, genes)
    sub = P.subset_membership(full, "colorectal")
    assert sub.names == [n for n in full.names if n in P.COLORECTAL_PATHWAYS] and len(sub.names) == 14
    rows = [full.names.index(n) for n in sub.names]
    np.testing.assert_array_equal(sub.matrix, full.matrix[rows])
    assert P.subset_membership(full, "all") is full
    permuted = P.pathway_membership(genes, "permuted", fold=1)
    psub = P.subset_membership(permuted, "colorectal")  # the permuted sets under the same names
    np.testing.assert_array_equal(psub.matrix, permuted.matrix[rows])
    assert not np.array_equal(psub.matrix, sub.matrix)
    with pytest.raises(ValueError, match="pathway_subset: unknown value 'crc'; allowed: all, colorectal"):
        P.subset_membership(full, "crc")


# ---------------------------------------------------------------------------------------- depth and scale
def test_depth_regression_removes_log_depth_and_keeps_the_rest():
    rng = np.random.default_rng(0)
    n = 300
    library = rng.lognormal(8, 0.5, n)
    signal = rng.normal(size=(n, 2))
    targets = signal + 0.8 * np.log(library)[:, None] + 3.0
    valid = np.ones(n, bool)
    valid[:10] = False
    out = T.depth_regressed(targets, library, valid)
    assert np.all(out[~valid] == 0)
    assert np.abs(M.pearson_columns(out[valid], np.repeat(np.log(library)[valid, None], 2, 1))).max() < 1e-6
    assert M.pearson_columns(out[valid], signal[valid]).min() > 0.99
    np.testing.assert_allclose(out[valid].mean(0), 0, atol=1e-5)


def _fold(n_slides=3, n_spots=40, seed=0):
    rng = np.random.default_rng(seed)
    genes = sorted({g for members in P.hallmarks().values() for g in members})
    membership = P.membership_matrix(P.hallmarks(), genes)
    items = {}
    for s in range(n_slides):
        valid = torch.ones(n_spots, dtype=torch.bool)
        valid[-3:] = False
        items[f"s{s}"] = {"pathway_targets": torch.as_tensor(rng.normal(size=(n_spots, len(membership.names))) * (s + 1),
                                                             dtype=torch.float32),
                          "library_size": torch.as_tensor(rng.lognormal(8, 0.4, n_spots), dtype=torch.float32),
                          "valid": valid}
    ids = list(items)
    return SimpleNamespace(membership=membership, items=items, train_ids=ids[:2],
                           slides=lambda part: [items[i] for i in (ids[:2] if part == "train" else ids[2:])])


def test_prepare_targets_defaults_leave_the_fold_as_loaded():
    fold = _fold()
    before = {k: it["pathway_targets"] for k, it in fold.items.items()}
    membership = fold.membership
    T.prepare_targets(fold, C.RunConfig())
    assert fold.membership is membership and all(fold.items[k]["pathway_targets"] is v for k, v in before.items())


def test_prepare_targets_subset_depth_and_scale():
    fold = _fold()
    before = {k: it["pathway_targets"].clone() for k, it in fold.items.items()}
    names = list(fold.membership.names)
    T.prepare_targets(fold, C.RunConfig(target="pathways", pathway_subset="colorectal", depth_correction="regress"))
    assert fold.membership.names == [n for n in names if n in P.COLORECTAL_PATHWAYS]
    cols = [names.index(n) for n in fold.membership.names]
    train = torch.cat([it["pathway_targets"][it["valid"]] for it in fold.slides("train")]).double()
    np.testing.assert_allclose(train.std(0, unbiased=False).numpy(), 1.0, rtol=1e-4)  # unit sd on training spots
    for k, it in fold.items.items():
        v = it["valid"].numpy()
        t = it["pathway_targets"].numpy()
        assert t.shape[1] == len(cols) and np.all(t[~v] == 0)
        depth = np.log(it["library_size"].numpy()[v])
        assert np.abs(M.pearson_columns(t[v], np.repeat(depth[:, None], t.shape[1], 1))).max() < 1e-4
        # what is left is the original column, up to depth and scale
        raw = before[k].numpy()[:, cols][v]
        assert M.pearson_columns(t[v], raw).min() > 0.9


# --------------------------------------------------------------------------------------------- the loss
def test_pathway_target_loss_trains_the_scores_not_the_genes():
    from stflib.losses import LOSSES
    from stflib.train.step import Step, compute_loss

    g = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 30, 5, generator=g, requires_grad=True)
    genes = torch.randn(2, 30, 8, generator=g, requires_grad=True)
    ptar = torch.randn(2, 30, 5, generator=g)
    valid = torch.ones(2, 30, dtype=torch.bool)
    valid[1, -4:] = False
    step = Step(genes, scores, None, None, valid, torch.randn(2, 30, 8, generator=g), None, None, ptar)
    cfg = C.RunConfig(target="pathways", loss="mse_pcc", pcc_weight=0.5)
    loss, parts = compute_loss(step, cfg)
    assert set(parts) == {"mse", "pcc"}
    expected = LOSSES["mse"].function(scores, ptar, valid) + 0.5 * LOSSES["pcc"].function(scores, ptar, valid)
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-6)
    loss.backward()
    assert genes.grad is None and scores.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="5 pathway tokens for 4 pathway targets"):
        compute_loss(Step(genes, scores, None, None, valid, ptar, None, None, ptar[..., :4]), cfg)


# -------------------------------------------------------------------------------------------- metrics
def test_ccc_is_pcc_penalised_for_offset_and_scale():
    rng = np.random.default_rng(1)
    t = rng.normal(size=(500, 3))
    np.testing.assert_allclose(M.ccc_columns(t, t), 1.0)
    shifted, scaled = t + 1.0, 2.0 * t
    np.testing.assert_allclose(M.pearson_columns(shifted, t), 1.0)
    c = M.ccc_columns(shifted, t)
    np.testing.assert_allclose(c, 2 * t.var(0) / (2 * t.var(0) + 1.0), rtol=1e-9)  # Lin's formula
    v, m = t.var(0), t.mean(0)
    np.testing.assert_allclose(M.ccc_columns(scaled, t), 2 * 2 * v / (5 * v + m ** 2), rtol=1e-9)
    t[:, 2] = 4.0
    p = rng.normal(size=(500, 3))
    p[:, 1] = np.nan
    out = M.ccc_columns(p, t)
    assert np.isfinite(out[0]) and np.isnan(out[1]) and np.isnan(out[2])  # NaN prediction, constant truth


def test_calibrated_ccc_fits_the_line_on_training_spots_only():
    rng = np.random.default_rng(2)
    truth_train, truth_test = rng.normal(size=(400, 2)), rng.normal(size=(300, 2))
    score = lambda t: 10.0 * t - 3.0  # noqa: E731  scores in their own units
    np.testing.assert_allclose(M.calibrated_ccc(score(truth_train), truth_train, score(truth_test), truth_test), 1.0)
    # a held-out offset the training line cannot know lowers the CCC, not the PCC
    c = M.calibrated_ccc(score(truth_train), truth_train, score(truth_test) + 30.0, truth_test)  # 3 sd
    assert np.all(c < 0.3) and np.allclose(M.pearson_columns(score(truth_test) + 30.0, truth_test), 1.0)


def test_matched_pathway_pcc_on_training_slides_is_not_biased_upward():
    rng = np.random.default_rng(3)
    truth_train, truth_test = rng.normal(size=(60, 5)), rng.normal(size=(60, 5))
    tokens_train, tokens_test = rng.normal(size=(60, 50)), rng.normal(size=(60, 50))  # tokens unrelated to truth
    biased = M.matched_pathway_pcc(tokens_test, truth_test)
    fitted = M.matched_pathway_pcc(tokens_test, truth_test, tokens_train, truth_train)
    assert biased > 0.2 and abs(fitted) < 0.15
    # a token that does carry the pathway is found on the training slides and keeps its PCC
    tokens_train[:, 7], tokens_test[:, 7] = truth_train[:, 0], truth_test[:, 0]
    assert M.pearson_columns(tokens_test[:, [7]], truth_test[:, [0]])[0] == pytest.approx(1.0)
    per = M._correlation_matrix(tokens_train, truth_train).argmax(1)
    assert per[0] == 7


def test_gene_metrics_of_a_run_without_gene_predictions_are_nan():
    rng = np.random.default_rng(4)
    genes = [f"G{i}" for i in range(60)]
    true = rng.normal(size=(80, 60))
    out, _ = M.evaluate(np.full_like(true, np.nan), true, genes, genes[:50], np.repeat(["a", "b"], 40))
    for key in ("pcc_hvg50", "ccc_hvg50", "pcc_all", "mse", "collapse_ratio"):
        assert np.isnan(out[key]), key
    out, _ = M.evaluate(true, true, genes, genes[:50], np.repeat(["a", "b"], 40))
    assert out["ccc_hvg50"] == pytest.approx(1.0) and out["pcc_hvg50"] == pytest.approx(1.0)


def test_new_metrics_are_registered():
    for name in ("ccc_hvg50", "pathway_ccc_truth", "pathway_pcc_target", "pathway_pcc_truth_within"):
        assert M.METRICS[name].higher_is_better


@pytest.mark.slow
def test_a_pathway_target_run_predicts_pathways_and_no_genes(tmp_path):
    from stflib.train.run import run

    r = run(dict(preset="tiny", target="pathways", pathway_subset="colorectal", depth_correction="regress",
                 max_steps=30, eval_every=10, progress=False, output_dir=str(tmp_path)), log=None, write=False)
    m = r.metrics
    assert np.isnan(m["pcc_hvg50"]) and np.isnan(m["ccc_hvg50"]) and np.isnan(m["train_pcc_hvg50"])
    assert r.model.config.pathway_names == tuple(n for n in r.fold.membership.names)
    assert set(r.model.config.pathway_names) <= set(P.COLORECTAL_PATHWAYS)
    for key in ("pathway_pcc_truth", "pathway_ccc_truth", "pathway_pcc_target", "pathway_pcc_truth_matched"):
        assert np.isfinite(m[key]) and -1 <= m[key] <= 1, key
    assert all(np.isnan(p["pred"]).all() for p in r.predictions)
