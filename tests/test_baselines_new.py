"""The retrieval baseline and the patch transformer (no pathway tokens), and that a registry entry is
owned by itself: removing one (with what only it reaches) changes no other run's code version."""
import ast
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import stflib
from stflib.grid.version import CodeIndex
from stflib.models import MODELS, ModelConfig, SpatialTranscriptFormer, baselines, build_model

F, G = 12, 9
SMALL = ModelConfig(num_pathways=5, token_dim=16, n_heads=2, n_layers=2)


# ---------------------------------------------------------------- k-NN retrieval


def _knn_brute_force(X, Y, Q, k):
    """Cosine similarity of the training-standardised features, full matrix, float64."""
    mean, sd = X.mean(0), X.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    unit = lambda A: (A - mean) / sd / np.linalg.norm((A - mean) / sd, axis=1, keepdims=True)  # noqa: E731
    sim = unit(Q) @ unit(X).T
    order = np.argsort(-sim, axis=1)[:, :k]
    return order, Y[order].mean(1)


@pytest.mark.parametrize("block", [2**24, 50])  # one block, and blocks of a single query row
def test_knn_retrieval_equals_brute_force(block):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, F)) * rng.uniform(0.1, 10, F) + rng.normal(size=F)  # unequal feature scales
    X[:, 3] = 2.0  # a constant feature
    Y, Q = rng.normal(size=(60, G)), rng.normal(size=(11, F)) * X.std(0) + X.mean(0)
    model = baselines.KNNRetrieval(SMALL, block=block).fit(X, Y)
    assert model.k == 16 and model.config == SMALL and model.n_params == X.size + Y.size
    order, expected = _knn_brute_force(X, Y, Q, 16)
    got = model.neighbours(Q)
    assert [set(r) for r in got] == [set(r) for r in order]
    np.testing.assert_allclose(model.predict(Q), expected, rtol=1e-5, atol=1e-6)
    # a training spot retrieves itself; fewer training spots than k: the mean of all of them
    assert all(i in row for i, row in enumerate(model.neighbours(X[:5])))
    small = baselines.KNNRetrieval(k=16).fit(X[:4], Y[:4])
    np.testing.assert_allclose(small.predict(Q), np.broadcast_to(Y[:4].mean(0), (11, G)), rtol=1e-5)


def test_knn_retrieval_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        baselines.KNNRetrieval(k=0)
    with pytest.raises(RuntimeError, match="before fit"):
        baselines.KNNRetrieval().predict(np.zeros((2, F)))
    with pytest.raises(ValueError, match=r"same N >= 1; got \(3, 12\), \(2, 9\)"):
        baselines.KNNRetrieval().fit(np.zeros((3, F)), np.zeros((2, G)))


# ---------------------------------------------------------------- patch transformer


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 9, F, generator=g)
    coords = torch.rand(2, 9, 2, generator=g) * 2000
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[1, 5:] = True
    return features, coords, pad


def _randomised(model):
    """The zero-initialised gene head would hide every dependence: perturb all weights."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize("k", [0, 3])
def test_patch_transformer_shapes_padding_and_attention_impls(k, batch):
    features, coords, pad = batch
    torch.manual_seed(0)
    model = _randomised(build_model("patch_transformer", F, G, SMALL, n_neighbors=k))
    out = model(features, coords, pad, return_attention=True)
    assert out.genes.shape == (2, 9, G) and out.pathway_scores is None
    assert len(out.attention) == SMALL.n_layers and out.attention[0].shape == (2, SMALL.n_heads, 9, 9)
    assert (out.attention[0][1, :, :5, 5:] == 0).all()  # no valid spot reads padding
    # padding, garbage included, changes no valid output: the slide alone gives the same
    garbage = features.clone()
    garbage[pad] = 1e3
    alone = model(features[1:, :5], coords[1:, :5]).genes
    torch.testing.assert_close(model(garbage, coords, pad).genes[1:, :5], alone, rtol=1e-4, atol=1e-4)
    # the three attention implementations give the same result
    for impl in ("reference", "explicit"):
        other = build_model("patch_transformer", F, G, SMALL, n_neighbors=k, attention_impl=impl)
        other.load_state_dict(model.state_dict())
        torch.testing.assert_close(other.eval()(features, coords, pad).genes, out.genes, rtol=1e-4, atol=1e-4)
    out.genes[~pad].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_patch_transformer_reads_only_its_k_nearest_spots(batch):
    """One layer with n_neighbors = k: spot 0 depends on itself and its k nearest spots, nothing else."""
    features, coords, _ = batch
    k = 3
    model = _randomised(build_model("patch_transformer", F, G, SMALL, n_layers=1, n_neighbors=k))
    f, c = features[:1], coords[:1]
    nearest = set(torch.cdist(c[0], c[0])[0].argsort()[: k + 1].tolist())  # itself first
    base = model(f, c).genes[0, 0]
    for j in range(1, 9):
        moved = f.clone()
        moved[0, j] += 3.0
        changed = not torch.allclose(model(moved, c).genes[0, 0], base)
        assert changed == (j in nearest), j


def test_patch_transformer_is_stf_without_pathway_tokens():
    """Same encoder (depth, width, heads) and input layers as STF without the h2p offset; no pathway
    tokens, scorer or reconstructor; a linear gene head that starts at zero."""
    config = ModelConfig(token_dim=32, n_heads=4, n_layers=3, balance_h2p=False)
    plain = build_model("patch_transformer", F, G, config)
    stf = SpatialTranscriptFormer(F, G, config)
    shapes = lambda m, prefix: {k: v.shape for k, v in m.state_dict().items() if k.startswith(prefix)}  # noqa: E731
    for prefix in ("encoder.", "project.", "position."):
        assert shapes(plain, prefix) == shapes(stf, prefix), prefix
    assert not any("pathway" in k or "reconstructor" in k for k in plain.state_dict())
    assert plain.head.weight.shape == (G, 32) and not plain.head.weight.any()
    assert MODELS["patch_transformer"].neighbourhood == MODELS["interaction"].neighbourhood == "attention"


# ---------------------------------------------------------------- code versions


PARAMETERS = ("model", "loss", "backbone", "world", "preset")
RUN = {"model": "interaction", "loss": "mse", "backbone": "resnet50", "world": "default", "preset": "default"}


def _library_without(package: Path, entry: tuple[str, str]) -> None:
    """Edit the library copy ``package`` into the library before ``entry`` was added: delete its register
    statement, then, repeatedly, every statement the entry reached (its classes, helpers, imports) that
    nothing left in its module, no import from another module and no attribute access anywhere still
    names; an import statement loses just the names nobody needs. What remains is what other code needs,
    so a helper the entry added as shared code (core) is gone here, and the versions differ."""
    from stflib.grid import version as V

    sources = {p.relative_to(package).as_posix(): p.read_text() for p in package.rglob("*.py")}
    trees = {path: ast.parse(src) for path, src in sources.items()}
    kinds = V._registry_kinds(trees)
    body = {path: list(tree.body) for path, tree in trees.items()}
    package_of = lambda path: ["stflib", *path.split("/")[:-1]]  # noqa: E731
    where = [(path, s) for path in body for s in body[path] if V._entry(s, kinds) == entry]
    assert len(where) == 1, entry
    reached, todo = set(), list(where)
    while todo:  # what the entry reaches: names in its module, "module:Name" targets, imports
        path, stmt = todo.pop()
        if (path, id(stmt)) in reached:
            continue
        reached.add((path, id(stmt)))
        names = V._identifiers(stmt)
        todo += [(path, s) for s in body[path] if V._defines(s) & names and V._entry(s, kinds) is None]
        for module, name in V._targets(stmt, package_of(path)):
            target = V._module_path(module, body)
            todo += [(target, s) for s in body.get(target, []) if name in V._defines(s)]
    body[where[0][0]].remove(where[0][1])
    attributes = lambda: {n.attr for b in body.values() for s in b for n in ast.walk(s) if isinstance(n, ast.Attribute)}  # noqa: E731
    changed = True
    while changed:
        changed = False
        imported = {(V._module_path(m, body), n) for path, b in body.items() for s in b
                    for m, n in V._targets(s, package_of(path))}
        attrs = attributes()
        for path, b in body.items():
            for stmt in [s for s in b if (path, id(s)) in reached]:
                used = set().union(*(V._identifiers(s) for s in b if s is not stmt and not (
                    isinstance(s, (ast.Import, ast.ImportFrom)))))
                needed = lambda n: n in used or n in attrs or (path, n) in imported  # noqa: E731
                if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    keep = [a for a in stmt.names if needed((a.asname or a.name).split(".")[0])]
                    if len(keep) < len(stmt.names):
                        stmt.names[:] = keep
                        changed = True
                    if not keep:
                        b.remove(stmt)
                elif not any(needed(n) for n in V._defines(stmt)):
                    b.remove(stmt)
                    changed = True
    for path, tree in trees.items():
        if tree.body != body[path]:
            tree.body = body[path]
            (package / path).write_text(ast.unparse(tree) + "\n")


# entries whose addition did change shared code, each with the reason; strict, so a fix shows up
ADDED_WITH_CORE_CODE = {
    ("model", "transmil"): "mil.py's module-level imports (math, numpy) serve only the MIL models and are core",
    ("model", "patch_transformer"): "its imports of AttentionPlan, knn_neighbours and InteractionEncoder name what the "
                                    "reference model's modules also use, so they count as core",
}


def _entries():
    """Every loss and model entry but the reference configuration's own (the shared code exists for
    them: the reference model brings the attention module), known exceptions marked."""
    from stflib import config as C
    from stflib.losses import LOSSES

    defaults = C.defaults()
    entries = [("loss", name) for name in LOSSES] + [("model", name) for name in MODELS]
    return [pytest.param(e, marks=pytest.mark.xfail(reason=ADDED_WITH_CORE_CODE[e], strict=True))
            if e in ADDED_WITH_CORE_CODE else e for e in entries if defaults[e[0]] != e[1]]


@pytest.mark.slow
@pytest.mark.parametrize("entry", _entries(), ids=lambda e: "=".join(e) if isinstance(e, tuple) else None)
def test_adding_an_entry_changed_no_other_run(entry, tmp_path):
    """Every loss and model entry, the library with it and the library before it (``_library_without``):
    the core and every other run of its kind, the reference run included, have the same code version,
    so adding it left every finished run complete (the property ``stflib.grid.version`` promises when an
    entry keeps what it needs inside itself)."""
    copy = tmp_path / "stflib"
    shutil.copytree(Path(stflib.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with_it = CodeIndex(copy, notebook=None, parameters=PARAMETERS, version="test")
    _library_without(copy, entry)
    without = CodeIndex(copy, notebook=None, parameters=PARAMETERS, version="test")
    assert entry in with_it.entries and entry not in without.entries
    assert without.core_version == with_it.core_version, f"adding {entry} changed the shared core"
    kind, name = entry
    others = [{**RUN, kind: other} for k, other in with_it.entries if k == kind and other != name]
    others += [RUN] if RUN[kind] != name else []
    assert others
    for params in others:
        assert without.run_version(params) == with_it.run_version(params), params
