"""A run's code version covers the shared core and the registry entries it names, nothing else
(stflib.grid.version), measured on copies of the library with one edit each."""
import shutil
from pathlib import Path

import pytest

import stflib
from stflib.grid.version import CodeIndex

PARAMETERS = ("model", "loss", "backbone", "world", "preset")
RUN = {"model": "interaction", "loss": "mse", "backbone": "resnet50", "world": "default", "preset": "default"}
QUANTILE = '''

def quantile_loss(pred, target, valid=None, q=0.9):
    """A loss added after the grid ran (the pinball loss of the q-th quantile)."""
    d = target - pred
    return torch.maximum(q * d, (q - 1) * d).mean()


def _quantile_term(x: LossInputs) -> Tensor:
    return quantile_loss(x.genes, x.targets, x.valid)


LOSSES.register("quantile", GeneLoss((("quantile", _quantile_term, 1.0),), quantile_loss, "Pinball (q = 0.9)", "an upper quantile", "targets"))
'''


@pytest.fixture()
def library(tmp_path):
    """A copy of the library's source (no caches) to edit."""
    copy = tmp_path / "stflib"
    shutil.copytree(Path(stflib.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _versions(package) -> dict[str, str]:
    index = CodeIndex(package, notebook=None, parameters=PARAMETERS, version="test")
    runs = {"mse": RUN, "pcc": {**RUN, "loss": "pcc"}, "zinb": {**RUN, "loss": "zinb"},
            "ridge": {**RUN, "model": "ridge_probe"}, "gigapath": {**RUN, "backbone": "gigapath"},
            "no-context": {**RUN, "world": "no-context"}, "quantile": {**RUN, "loss": "quantile"}}
    return {name: index.run_version(params) for name, params in runs.items()} | {"core": index.core_version}


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: expected one {old!r}"
    path.write_text(text.replace(old, new))


def test_every_run_parameter_registry_entry_is_versioned():
    index = CodeIndex(notebook=None, parameters=PARAMETERS, version="test")
    from stflib.backbones import BACKBONES
    from stflib.losses import LOSSES
    from stflib.sim.worlds import PRESETS, WORLDS

    for kind, registry in (("loss", LOSSES), ("backbone", BACKBONES), ("world", WORLDS), ("preset", PRESETS)):
        assert {name for k, name in index.entries if k == kind} == set(registry), kind


def test_adding_a_loss_changes_no_other_run(library):
    before = _versions(library)
    (library / "losses.py").write_text((library / "losses.py").read_text() + QUANTILE)
    after = _versions(library)
    assert after["quantile"] != before["quantile"]  # the new loss's runs see their entry
    assert {k: v for k, v in after.items() if k != "quantile"} == {k: v for k, v in before.items() if k != "quantile"}


def test_editing_a_loss_term_changes_only_the_runs_that_use_it(library):
    before = _versions(library)
    _edit(library / "losses.py", "raise RuntimeError(\"loss 'zinb' needs", "raise ValueError(\"loss 'zinb' needs")
    after = _versions(library)
    assert after["zinb"] != before["zinb"]
    assert {k: v for k, v in after.items() if k != "zinb"} == {k: v for k, v in before.items() if k != "zinb"}


def test_editing_shared_core_changes_every_run(library):
    before = _versions(library)
    # a helper of the losses that the auxiliary pathway loss (every run) also uses
    _edit(library / "losses.py", "def _valid(pred: Tensor, valid: Tensor | None) -> Tensor:\n",
          "def _valid(pred: Tensor, valid: Tensor | None) -> Tensor:\n    assert pred.dim() == 3\n")
    after = _versions(library)
    assert all(after[k] != before[k] for k in before), "a shared helper's edit must stale every run"
    # and a module without registry entries (the training loop)
    loop = library / "train" / "loop.py"
    loop.write_text(loop.read_text() + "\n\ndef _unused_helper():\n    return 1\n")
    again = _versions(library)
    assert all(again[k] != after[k] for k in after)


def test_comments_and_the_module_docstring_do_not_change_a_version(library):
    before = _versions(library)
    path = library / "losses.py"
    text = path.read_text()
    path.write_text('"""Rewritten module docstring."""\n' + text.split('"""', 2)[2] + "\n# a trailing comment\n")
    assert _versions(library) == before


def test_a_world_or_backbone_entry_belongs_to_its_runs(library):
    before = _versions(library)
    _edit(library / "sim" / "worlds.py", "context_scale=0.0, anchor=", "context_scale=0.0, noise_slide=0.3, anchor=")
    _edit(library / "backbones" / "specs.py", "stand_in=StandIn(2.20, 0.5, 0.20)", "stand_in=StandIn(2.21, 0.5, 0.20)")
    after = _versions(library)
    changed = {k for k in before if after[k] != before[k]}
    assert changed == {"no-context", "gigapath"}


def test_the_index_is_parsed_once_until_a_file_changes(tmp_path):
    import json
    import os

    from stflib.grid.version import code_index
    from stflib.paths import default_notebook

    notebook = tmp_path / "ablation.ipynb"
    shutil.copy(default_notebook(), notebook)
    first = code_index(notebook)
    assert code_index(notebook) is first  # same files: not parsed again
    nb = json.loads(notebook.read_text())
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["source"] = "".join(code["source"]) + "\nx_added_by_the_test = 1\n"
    notebook.write_text(json.dumps(nb))
    stamp = notebook.stat().st_mtime_ns + 10**9
    os.utime(notebook, ns=(stamp, stamp))
    edited = code_index(notebook)
    assert edited is not first and edited.core_version != first.core_version
    assert edited.core_version == CodeIndex(notebook=notebook).core_version
