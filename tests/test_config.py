"""Parameter table and validation (stflib.config)."""
import pytest

from stflib import config, config_text
from stflib.backbones import BACKBONES
from stflib.losses import LOSSES


def test_defaults_keep_the_seed_flags_and_seed_defaults_are_an_arm():
    d = config.defaults()
    seed = dict(model="interaction", backbone="resnet50", token_dim=256, n_heads=4, n_layers=2, num_pathways=50,
                pathway_init=False, loss="mse", pcc_weight=1.0, pathway_loss_weight=0.0, interactions="all",
                log_transform=False, return_attention=False, n_neighbors=0)
    assert config.SEED_FLAG_DEFAULTS == seed
    assert set(seed) <= set(d)  # every seed flag is a parameter
    over = config.seed_flag_overrides()
    assert over == {k: v for k, v in seed.items() if config.validate({k: v})[k] != config.validate({})[k]}
    assert config.validate(over) == config.validate(seed)  # the arm reproduces the seed's flags exactly
    for k in ("data_dir", "epochs", "seed", "fold", "device", "output_dir", "positional_encoding", "n_folds"):
        assert k in d
    assert d["data_dir"] is None and d["device"] == "auto" and d["positional_encoding"] == "sinusoidal"
    assert config.validate(d) == config.validate({})


@pytest.mark.parametrize("value,expected", [
    ("all", ["p2p", "p2h", "h2p", "h2h"]),
    ("full", ["p2p", "p2h", "h2p", "h2h"]),
    ("bottleneck", ["p2p", "p2h", "h2p"]),
    ("p2p,p2h", ["p2p", "p2h"]),
    ("h2h p2p", ["p2p", "h2h"]),
    (["p2h", "p2p"], ["p2p", "p2h"]),
    (["all"], ["p2p", "p2h", "h2p", "h2h"]),
])
def test_interactions_parsing(value, expected):
    assert config.validate(interactions=value)["interactions"] == expected


def test_interaction_subsets_and_names():
    subsets = config.interaction_subsets()
    assert len(subsets) == 15 and len(set(subsets)) == 15
    names = {config.interactions_name(s) for s in subsets}
    assert {"full", "bottleneck", "p2p-p2h"} <= names and len(names) == 15


@pytest.mark.parametrize("params,needle", [
    (dict(interactions="p2x"), "interactions: unknown quadrant 'p2x'; allowed: p2p, p2h, h2p, h2h"),
    (dict(interactions=""), "interactions"),
    (dict(model="transformer"), "model: unknown value 'transformer'; allowed: interaction"),
    (dict(loss="l1"), "allowed: " + ", ".join(LOSSES)),
    (dict(backbone="uni3"), "allowed: " + ", ".join(BACKBONES)),
    (dict(positional_encoding="rope"), "allowed: sinusoidal, learned, none"),
    (dict(n_layers=1, interactions="bottleneck"), "n_layers: interactions p2p,p2h,h2p (no h2h, the pathway bottleneck) need n_layers >= 2"),
    (dict(n_layers=0), "n_layers: must be > 0"),
    (dict(n_neighbors=6, interactions="bottleneck"), "n_neighbors=6 restricts the h2h flow to the k nearest spots"),
    (dict(loss="zinb", log_transform=False, model="mlp"), "needs a model with a ZINB head; allowed: interaction"),
    (dict(prediction_genes="some"), "prediction_genes: unknown value 'some'; allowed: all, hvg50"),
    (dict(torch_threads=-1), "torch_threads: must be >= 0"),
    (dict(token_dim=100, n_heads=3), "divisible"),
    (dict(fold=3), "fold"),
    (dict(device="tpu"), "device"),
    (dict(loss="zinb", log_transform=True), "zinb"),
    (dict(epochs="many"), "epochs"),
    (dict(pathway_init="maybe"), "pathway_init"),
    (dict(data_dir="/nonexistent/folder"), "metadata.csv"),
    (dict(learning_rate=1), "unknown parameter"),
])
def test_validation_errors_name_the_bad_value(params, needle):
    with pytest.raises(ValueError) as err:
        config.validate(params)
    assert needle in str(err.value)


def test_papermill_strings_are_coerced():
    c = config.validate(dict(epochs="5", pathway_init="True", pcc_weight="0.5", data_dir="None", loss="MSE"))
    assert c["epochs"] == 5 and c["pathway_init"] is True and c["pcc_weight"] == 0.5
    assert c["data_dir"] is None and c["loss"] == "mse"


def test_hash_ignores_output_dir_and_tracks_results():
    a = config.config_hash(dict(output_dir="a"))
    assert a == config.config_hash(dict(output_dir="b", interactions="full"))
    assert a != config.config_hash(dict(fold=1))
    assert a != config.config_hash(dict(interactions="bottleneck"))


def test_table_and_cell_cover_every_parameter():
    table = config_text.parameters_table()
    cell = config_text.parameters_cell()
    ns = {}
    exec(cell, ns)
    for p in config.PARAMETERS:
        assert f"`{p.name}`" in table
        assert ns[p.name] == p.default


def test_notebook_parameters_cell_is_generated_from_the_table():
    import json
    from pathlib import Path

    nb_dir = Path(__file__).resolve().parents[1] / "notebooks"
    py = (nb_dir / "ablation.py").read_text()
    assert config_text.parameters_cell() in py, "run config_text.sync_notebook_parameters('notebooks/ablation.py') + jupytext --sync"
    nb = json.loads((nb_dir / "ablation.ipynb").read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1
    ns = {}
    exec("".join(cells[0]["source"]), ns)
    assert {k: ns[k] for k in config.defaults()} == config.defaults()
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), "store the notebook without outputs"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("value", ["p2h,p2p", "P2P p2h", "p2p+p2h", ["p2h", "p2p"], ("p2p", "p2h")])
def test_interactions_is_one_type_parsed_where_it_enters(value):
    """Every spelling (papermill -p string, a YAML list from -f) becomes one Interactions value on the
    run configuration; as plain data (metrics.json, the hash, params files) it is the list of quadrants."""
    import json
    import pickle

    from stflib.models import Interactions

    cfg = config.RunConfig(interactions=value)
    assert type(cfg.interactions) is Interactions and cfg.interactions == ("p2p", "p2h")
    assert cfg.interactions.name == "p2p-p2h" and "p2h" in cfg.interactions and "h2h" not in cfg.interactions
    assert cfg.as_dict()["interactions"] == ["p2p", "p2h"] and config_text.to_yaml_value("interactions", value) == ["p2p", "p2h"]
    assert json.loads(json.dumps(cfg.interactions)) == ["p2p", "p2h"]
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert config.RunConfig(interactions=cfg.interactions) == cfg
    assert Interactions("all").name == "full" and Interactions("bottleneck").name == "bottleneck"
    assert config.PARAM_BY_NAME["interactions"].type is Interactions


def test_committed_runs_keep_their_hash():
    """A finished run is found again by its configuration's hash: every committed metrics.json's
    config hashes to the config_hash it was written with."""
    import json
    from pathlib import Path

    runs = sorted((Path(__file__).resolve().parents[1] / "results").rglob("metrics.json"))
    runs = [r for r in runs if "config_hash" in (m := json.loads(r.read_text())) and "config" in m]
    if not runs:
        pytest.skip("no committed runs under results/")
    for path in runs:
        m = json.loads(path.read_text())
        assert config.config_hash(m["config"]) == m["config_hash"], path


def test_import_needs_no_torch():
    """Checking parameters must be fast: importing the run configuration imports no torch."""
    import subprocess
    import sys

    code = "import sys, stflib.config; print(sorted(m for m in ('torch', 'timm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_boolean_is_not_a_number():
    with pytest.raises(ValueError, match="lr: expected a number, got True"):
        config.validate(lr=True)


def test_cli_stops_on_an_unknown_key_in_a_parameters_file(tmp_path):
    """python -m stflib run -f: an unknown key is one error line naming it and the allowed names."""
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 0.01\n")
    out = subprocess.run([sys.executable, "-m", "stflib", "run", "-f", str(bad), "-p", "output_dir", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 2
    first = out.stderr.splitlines()[0]
    assert first.startswith("error: unknown parameter(s) learning_rate; allowed: model, backbone,"), out.stderr
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize("params,needle", [
    ({"learning_rate": 0.01}, "unknown parameter(s) learning_rate; allowed: model, backbone"),
    ({"interactions": ["p2p", "p2x"]}, "interactions: unknown quadrant 'p2x'; allowed: p2p, p2h, h2p, h2h"),
])
def test_notebook_stops_on_an_unknown_or_bad_parameter(params, needle, tmp_path):
    """papermill -f/-p: an unknown name (which papermill injects without complaint) or a bad value
    stops the notebook at its validation cell, before anything is trained or written."""
    from pathlib import Path

    import papermill as pm

    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "ablation.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"), parameters={**params, "output_dir": str(tmp_path)},
                            progress_bar=False, kernel_name="python3")
    assert needle in str(err.value)
    assert not (tmp_path / "metrics.json").exists()


def test_run_config_is_validated_once_frozen_and_whole():
    import dataclasses

    cfg = config.RunConfig(interactions="p2h p2p", model="MLP", n_layers="3")
    assert cfg.interactions == ("p2p", "p2h") and cfg.model == "mlp" and cfg.n_layers == 3
    assert [f.name for f in dataclasses.fields(cfg)] == [p.name for p in config.PARAMETERS]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model = "interaction"
    with pytest.raises(ValueError, match="loss: unknown value 'l1'"):
        config.RunConfig(loss="l1")
    with pytest.raises(ValueError, match="unknown parameter"):
        config.RunConfig.from_params({"learning_rate": 1})
    assert config.RunConfig.from_params(cfg) is cfg
    assert config.RunConfig.from_params(cfg, fold=1).fold == 1
    assert cfg.as_dict() == config.validate(interactions="p2h p2p", model="MLP", n_layers="3")
    assert config.config_hash(cfg) == config.config_hash(cfg.as_dict())


def test_run_settings_do_not_change_the_hash():
    base = config.config_hash({})
    assert config.config_hash(dict(torch_threads=2, prediction_genes="hvg50", device="cpu")) == base
    assert config.defaults()["torch_threads"] == 0 and config.defaults()["prediction_genes"] == "all"


def test_n_neighbors_none_is_the_reference_neighbourhood_where_there_is_an_h2h_flow():
    RunConfig = config.RunConfig
    assert RunConfig.from_params({}).n_neighbors == config.REFERENCE_NEIGHBOURS == 18
    # the README's command: no h2h flow to restrict, so the reference is whole-slide (no error)
    assert RunConfig.from_params({"interactions": "p2p,p2h"}).n_neighbors == 0
    # the per-spot baselines stay per-spot unless a neighbourhood is asked for
    assert RunConfig.from_params({"model": "mlp"}).n_neighbors == 0
    assert RunConfig.from_params({"model": "ridge_probe", "n_neighbors": 6}).n_neighbors == 6
    assert RunConfig.from_params({"output_mode": "global"}).n_neighbors == 0
    # the default and its explicit value are one run (the grid shares it)
    assert config.config_hash({}) == config.config_hash({"n_neighbors": 18})
    assert config.config_hash({}) != config.config_hash({"n_neighbors": 0})
    with pytest.raises(ValueError, match="interactions p2p,p2h has no h2h; use n_neighbors=0 or add h2h"):
        RunConfig.from_params({"interactions": "p2p,p2h", "n_neighbors": 6})


def test_pathway_sets_are_read_from_their_registry():
    from stflib import pathways

    assert config.PATHWAY_SETS is pathways.PATHWAY_SETS
    p = config.PARAM_BY_NAME["pathway_sets"]
    assert p.allowed == pathways.PATHWAY_SETS and p.default == pathways.PATHWAY_SETS[0]
    for value in pathways.PATHWAY_SETS:
        assert config.RunConfig(pathway_sets=value).pathway_sets == value
        assert config.validate(pathway_sets=value.upper())["pathway_sets"] == value  # papermill spelling
    with pytest.raises(ValueError) as err:
        config.RunConfig(pathway_sets="random")
    assert str(err.value) == f"pathway_sets: unknown value 'random'; allowed: {', '.join(pathways.PATHWAY_SETS)}"


def test_parameters_added_later_keep_finished_runs_hashes_at_their_default():
    import hashlib
    import json

    assert "pathway_sets" in config.HASHED_UNLESS_DEFAULT
    for name in config.HASHED_UNLESS_DEFAULT:
        assert name in config.PARAM_BY_NAME and name not in config.NON_RESULT_PARAMS
    base = config.validate({}, check_paths=False)
    assert "pathway_sets" not in config.hash_payload(base)
    # the hash as it was computed before pathway_sets (and the later parameters) existed
    before = {k: v for k, v in base.items() if k not in config.NON_RESULT_PARAMS and k not in config.HASHED_UNLESS_DEFAULT}
    old_hash = hashlib.sha256(json.dumps(before, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert config.config_hash(base) == config.config_hash({"pathway_sets": "hallmark"}) == old_hash
    assert old_hash == "8cb0f99fc1d5edae"  # results/backbones/resnet50/fold0 (the reference run, fold 0, seed 0)
    permuted = config.hash_payload({"pathway_sets": "permuted"})
    assert permuted["pathway_sets"] == "permuted"
    assert config.config_hash({"pathway_sets": "permuted"}) != old_hash
    assert config.config_hash({"pathway_sets": "permuted"}) != config.config_hash({"pathway_sets": "permuted", "fold": 1})


def test_a_missing_data_folder_is_named_as_missing(tmp_path):
    with pytest.raises(ValueError, match=r"data_dir: '.*nowhere' does not exist or is not a folder"):
        config.check_data_dir(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"has no metadata.csv"):
        config.check_data_dir(str(tmp_path))
