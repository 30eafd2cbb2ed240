"""Backbone registry, published-layout conversion and strict loading (no network, random weights)."""
from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stflib import backbones as B
from stflib.backbones import BACKBONES, WeightsError, get_backbone

torch.set_num_threads(min(2, torch.get_num_threads()))

FORWARD = ["resnet50", "ctranspath", "phikon", "hibou-b", "plip"]  # cheap enough for a real CPU forward
DESIGN_NAMES = ("resnet50", "ctranspath", "phikon", "hibou-b", "hibou-l", "gigapath")  # DESIGN.md's contract


def _output_width(model) -> int:
    """Width of what the timm network returns: its classifier's (a projection head) or its pooled features."""
    return model.num_classes or model.num_features


def _patches(n=2, size=224, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture(autouse=True)
def _isolated_weights(tmp_path, monkeypatch):
    """Never look at a real user cache: default weights root is an empty temp folder."""
    monkeypatch.setenv("STFLIB_WEIGHTS_DIR", str(tmp_path / "weights_root"))
    monkeypatch.delenv("HF_TOKEN", raising=False)


# --------------------------------------------------------------------------------------------
# Registry facts
# --------------------------------------------------------------------------------------------
def test_registry_names_and_widths():
    assert tuple(BACKBONES)[:len(DESIGN_NAMES)] == DESIGN_NAMES  # the names DESIGN.md promises stay, in order
    for name, spec in BACKBONES.items():  # the width is the architecture's, not a second table
        assert _output_width(B.build_timm_model(name, device="meta")) == spec.feature_dim, name
    for spec in BACKBONES.values():
        assert len(spec.mean) == len(spec.std) == 3 and spec.input_size == 224
        assert spec.hub_repo and spec.hub_files and spec.licence


def test_unknown_name_names_exactly_the_registered_backbones():
    with pytest.raises(ValueError) as err:
        get_backbone("uni3", pretrained=False)
    assert str(err.value) == BACKBONES.unknown("uni3") == "backbone: unknown 'uni3'; allowed: " + ", ".join(BACKBONES)


def test_every_backbone_has_a_width_a_stand_in_and_a_params_file():
    """One spec per backbone, read from the registry: its feature width (the real network's and the
    simulator's stand-in's), the stand-in's information level, its weights' source and its params file."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for name, spec in BACKBONES.items():
        assert spec.name == name and spec.feature_dim > 0 and spec.hub_repo and spec.hub_files, name
        assert spec.stand_in.noise > 0 and spec.stand_in.stain_sensitivity > 0 and spec.stand_in.out_noise > 0, name
        assert (root / "params" / "backbones" / f"{name}.yaml").is_file(), f"params/backbones/{name}.yaml"


def test_architecture_facts_on_meta():
    gp = B.build_timm_model("gigapath", device="meta").state_dict()
    assert gp["patch_embed.proj.weight"].shape == (1536, 3, 16, 16)  # patch 16 at 224 px
    assert gp["pos_embed"].shape == (1, 197, 1536)
    assert gp["blocks.39.mlp.fc1.weight"].shape == (8192, 1536)   # packed SwiGLU, 2 x 4096
    assert gp["blocks.0.mlp.fc2.weight"].shape == (1536, 4096)
    assert "blocks.40.norm1.weight" not in gp
    n = sum(v.numel() for v in gp.values())
    assert 1.10e9 < n < 1.16e9  # ViT-g/14 tile encoder, ~1.13B
    hb = B.expected_published_shapes("hibou-b")
    assert hb["embeddings.position_embeddings"] == (1, 257, 768)  # 224 px / 14 -> 16x16 + CLS
    assert hb["embeddings.register_tokens"] == (1, 4, 768)
    assert hb["encoder.layer.11.mlp.weights_in.weight"] == (4096, 768)  # DINOv2 fused SwiGLU
    assert hb["encoder.layer.11.mlp.weights_out.weight"] == (768, 2048)
    hl = B.expected_published_shapes("hibou-l")
    assert hl["encoder.layer.23.mlp.weights_in.weight"] == (5472, 1024)
    assert "encoder.layer.24.norm1.weight" not in hl
    ph = B.expected_published_shapes("phikon")
    assert ph["embeddings.position_embeddings"] == (1, 197, 768)
    assert ph["encoder.layer.0.intermediate.dense.weight"] == (3072, 768)
    ct = B.expected_published_shapes("ctranspath")
    assert ct["patch_embed.proj.0.weight"] == (12, 3, 3, 3)   # ConvStem 3 -> 12 -> 24 -> 96
    assert ct["patch_embed.proj.3.weight"] == (24, 12, 3, 3)
    assert ct["patch_embed.proj.6.weight"] == (96, 24, 1, 1)
    assert ct["layers.0.downsample.reduction.weight"] == (192, 384)  # old timm: merge at end of stage 0
    assert "layers.3.downsample.reduction.weight" not in ct and not any(k.startswith("head") for k in ct)
    assert ct["norm.weight"] == (768,)


def test_new_encoders_architecture_facts_on_meta():
    """H-optimus-0/1 (ViT-g/14, 4 registers), UNI (ViT-L/16), UNI2-h (ViT-H/14, 8 registers, SwiGLU) and PLIP
    (CLIP ViT-B/32 + 512-d projection), from their published configurations."""
    for name in ("h-optimus-0", "h-optimus-1"):
        sd = B.build_timm_model(name, device="meta").state_dict()
        assert sd["patch_embed.proj.weight"].shape == (1536, 3, 14, 14) and sd["reg_token"].shape == (1, 4, 1536)
        assert sd["pos_embed"].shape == (1, 256, 1536)  # 224 / 14 = 16 x 16, no class position (registers' no_embed_class)
        assert sd["blocks.39.mlp.fc1.weight"].shape == (8192, 1536) and "blocks.40.norm1.weight" not in sd
        assert sd["blocks.0.ls1.gamma"].shape == (1536,)  # LayerScale (init_values 1e-5)
        assert 1.13e9 < sum(v.numel() for v in sd.values()) < 1.14e9
        assert BACKBONES[name].mean == (0.707223, 0.578729, 0.703617)
    uni = B.build_timm_model("uni", device="meta").state_dict()
    assert uni["patch_embed.proj.weight"].shape == (1024, 3, 16, 16) and uni["pos_embed"].shape == (1, 197, 1024)
    assert uni["blocks.23.mlp.fc1.weight"].shape == (4096, 1024) and "blocks.24.norm1.weight" not in uni
    assert "blocks.0.ls1.gamma" in uni and 3.03e8 < sum(v.numel() for v in uni.values()) < 3.04e8
    u2 = B.build_timm_model("uni2-h", device="meta")
    sd = u2.state_dict()
    assert sd["reg_token"].shape == (1, 8, 1536) and sd["pos_embed"].shape == (1, 256, 1536)
    assert u2.blocks[0].attn.num_heads == 24 and len(u2.blocks) == 24
    assert sd["blocks.0.mlp.fc1.weight"].shape == (8192, 1536) and sd["blocks.0.mlp.fc2.weight"].shape == (1536, 4096)
    mlp = u2.blocks[0].mlp  # timm's SwiGLUPacked: a GluMlp with SiLU on one half of the packed fc1
    assert type(mlp).__name__ == "GluMlp" and isinstance(mlp.act, torch.nn.SiLU)
    assert 6.8e8 < sum(v.numel() for v in sd.values()) < 6.82e8  # UNI2-h: 681M
    plip = B.expected_published_shapes("plip")
    assert plip["visual_projection.weight"] == (512, 768)
    assert plip["vision_model.embeddings.patch_embedding.weight"] == (768, 3, 32, 32)
    assert plip["vision_model.embeddings.position_embedding.weight"] == (50, 768)
    assert "vision_model.pre_layrnorm.weight" in plip and "vision_model.encoder.layers.11.self_attn.q_proj.bias" in plip
    assert not any(k.startswith("text_model.") for k in plip)  # the text tower is in the file, dropped on load


def test_a_new_backbone_entry_changes_no_other_runs_code_version(tmp_path):
    """Adding an encoder is its registry entry (and, for a new key layout, converters that only it names):
    removing one leaves every other run's code version as it is."""
    import shutil

    import stflib
    from stflib.grid.version import CodeIndex

    library = tmp_path / "stflib"
    shutil.copytree(Path(stflib.__file__).parent, library, ignore=shutil.ignore_patterns("__pycache__"))
    params = ("model", "loss", "backbone", "world", "preset")
    runs = {name: {"model": "interaction", "loss": "mse", "backbone": name, "world": "default", "preset": "default"}
            for name in BACKBONES}

    def versions():
        index = CodeIndex(library, notebook=None, parameters=params, version="test")
        return {name: index.run_version(p) for name, p in runs.items()}

    before = versions()
    specs, keys = library / "backbones" / "specs.py", library / "backbones" / "keys.py"
    text = specs.read_text()
    start = text.index('BACKBONES.register("plip"')
    specs.write_text(text[:start] + text[text.index("))\n", start) + 3:])
    text = keys.read_text()
    keys.write_text(text[:text.index("# ---- Hugging Face CLIPModel (PLIP)")])
    after = versions()
    assert {n for n in before if before[n] != after[n]} == {"plip"}


# --------------------------------------------------------------------------------------------
# Published layout <-> timm
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(BACKBONES))
def test_layout_round_trip_on_meta(name):
    pub = B.make_published_state_dict(name, device="meta")
    B.check_published_state_dict(name, pub)
    timm_sd = B.to_timm(name, pub)
    ref = B.build_timm_model(name, device="meta").state_dict()
    assert set(timm_sd) == set(ref)
    assert all(tuple(timm_sd[k].shape) == tuple(ref[k].shape) for k in ref)
    back = B.to_published(name, timm_sd)
    assert {k: tuple(v.shape) for k, v in back.items()} == B.expected_published_shapes(name)
    # the strict loader accepts it and gives the right width (no memory: meta device)
    bb = get_backbone(name, weights=pub)
    assert bb.feature_dim == BACKBONES[name].feature_dim


@pytest.mark.parametrize("name", list(BACKBONES))
def test_corrupted_state_dicts_name_the_key(name):
    pub = B.make_published_state_dict(name, device="meta")
    keys = sorted(pub)
    needed = B.expected_published_shapes(name)  # not a known-but-unused key (PLIP's text tower)
    victim = next(k for k in keys if k in needed and k.endswith("weight") and pub[k].ndim >= 2 and "norm" not in k)

    missing = dict(pub)
    del missing[victim]
    with pytest.raises(WeightsError, match=r"missing keys \(1\): " + victim.replace(".", r"\.")):
        get_backbone(name, weights=missing)

    wrong = dict(pub)
    shape = list(pub[victim].shape)
    shape[0] += 1
    wrong[victim] = torch.empty(shape, device="meta")
    with pytest.raises(WeightsError, match=r"wrong shapes.*" + victim.replace(".", r"\.")):
        get_backbone(name, weights=wrong)

    extra = dict(pub)
    extra["head.fc.weight"] = torch.empty(10, BACKBONES[name].feature_dim, device="meta")
    with pytest.raises(WeightsError, match=r"unexpected keys \(1\): head\.fc\.weight"):
        get_backbone(name, weights=extra)


@functools.lru_cache(maxsize=None)
def _published(name: str) -> dict:
    """Random state dict in the published layout (built once per backbone for this module)."""
    return B.make_published_state_dict(name, seed=0)


def _save_published(name: str, folder: Path) -> tuple[Path, dict]:
    """Write a random checkpoint in the published file format of ``name``."""
    sd = _published(name)
    folder.mkdir(parents=True, exist_ok=True)
    spec = BACKBONES[name]
    fname = spec.hub_files[0]
    path = folder / fname
    if fname.endswith(".safetensors"):
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    elif name == "ctranspath":
        torch.save({"model": sd}, path)   # TransPath / CHIEF checkpoints wrap the state dict
    else:
        torch.save(sd, path)
    return path, sd


@pytest.mark.parametrize("name", [n if n == "resnet50" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in FORWARD])
def test_published_file_loads_strictly_and_embeds(name, tmp_path):
    path, sd = _save_published(name, tmp_path / name)
    bb = get_backbone(name, weights=path.parent)   # a folder: the hub file name is found in it
    assert bb.version == f"sha256:{B.file_sha256(path)}"
    loaded = bb.model.state_dict()
    expected = B.to_timm(name, sd)
    assert set(loaded) >= set(expected)
    for k, v in expected.items():
        assert torch.equal(loaded[k], v.to(loaded[k].dtype)), k
    assert not bb.training and not any(p.requires_grad for p in bb.parameters())
    bb.train()
    assert not bb.training  # stays frozen
    feats = bb.embed(_patches(1))
    assert feats.shape == (1, BACKBONES[name].feature_dim) and torch.isfinite(feats).all()
    # the same file is found through the default folder ($STFLIB_WEIGHTS_DIR/<name>/)
    default = B.weights_dir(name)
    default.mkdir(parents=True)
    os.link(path, default / path.name)
    assert B.find_weights(name) == default / path.name
    assert B.weights_version(name) == bb.version


def test_old_torchvision_file_without_batchnorm_counters_loads():
    sd = {k: v for k, v in B.make_published_state_dict("resnet50", device="meta").items()
          if not k.endswith("num_batches_tracked")}
    assert get_backbone("resnet50", weights=sd).feature_dim == 2048


def test_missing_weights_error_says_where_and_how(tmp_path):
    with pytest.raises(WeightsError) as err:
        get_backbone("gigapath")
    msg = str(err.value)
    assert str(B.weights_dir("gigapath")) in msg and "pytorch_model.bin" in msg
    assert "huggingface.co/prov-gigapath/prov-gigapath" in msg and "gated" in msg and "HF_TOKEN" in msg
    assert "pretrained=False" in msg
    with pytest.raises(WeightsError, match=r"not gated"):
        get_backbone("hibou-b")
    with pytest.raises(WeightsError, match=r"datasets/MahmoodLab/hest-bench.*fm_v1/ctranspath"):
        get_backbone("ctranspath")
    with pytest.raises(WeightsError, match="does not exist"):
        get_backbone("resnet50", weights=tmp_path / "nope.pth")


def test_folder_with_several_files_is_ambiguous(tmp_path):
    for f in ("a.pth", "b.pth"):
        torch.save({}, tmp_path / f)
    with pytest.raises(WeightsError, match="several weight files"):
        B.find_weights("resnet50", tmp_path)


def test_random_init_is_explicit_and_deterministic():
    a = get_backbone("resnet50", pretrained=False, seed=3)
    b = get_backbone("resnet50", pretrained=False, seed=3)
    assert a.version == "random-init" and a.feature_dim == 2048
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError, match="pretrained=False"):
        get_backbone("resnet50", weights={"x": torch.zeros(1)}, pretrained=False)


def test_read_state_dict_unwraps_containers(tmp_path):
    sd = {"a.weight": torch.ones(2, 2)}
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, tmp_path / "c.pth")
    got = B.read_state_dict(tmp_path / "c.pth")
    assert list(got) == ["a.weight"]
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        B.read_state_dict(tmp_path / "bad.pth")


def test_transform_normalises_and_resizes():
    bb = B.Backbone(BACKBONES["hibou-b"], torch.nn.Identity(), version="stub")  # transform only
    x = np.full((1, 224, 224, 3), 255, dtype=np.uint8)
    y = bb.transform(x)
    assert y.shape == (1, 3, 224, 224)
    expect = (1.0 - torch.tensor(B.HIBOU_MEAN)) / torch.tensor(B.HIBOU_STD)
    assert torch.allclose(y[0, :, 0, 0], expect)
    assert bb.transform(np.zeros((3, 153, 153, 3), np.uint8)).shape == (3, 3, 224, 224)
    with pytest.raises(ValueError, match="RGB"):
        bb.transform(np.zeros((1, 224, 224), np.uint8)[..., None])


# --------------------------------------------------------------------------------------------
# The conversions compute the published networks (independent reference implementations)
# --------------------------------------------------------------------------------------------
def _randomise(sd: dict, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in sd.items():
        if not v.is_floating_point():
            out[k] = v
        elif "norm" in k and k.endswith("weight"):
            out[k] = 1 + 0.1 * torch.randn(v.shape, generator=g)
        elif k.endswith("lambda1"):
            out[k] = 0.5 + 0.5 * torch.rand(v.shape, generator=g)  # layer scale far from its 1e-5 init
        else:
            out[k] = 0.05 * torch.randn(v.shape, generator=g)
    return out


def _hf_attention(x, sd, p, heads):
    b, n, d = x.shape
    q, k, v = (F.linear(x, sd[f"{p}.attention.attention.{t}.weight"], sd[f"{p}.attention.attention.{t}.bias"])
               .view(b, n, heads, d // heads).transpose(1, 2) for t in ("query", "key", "value"))
    att = (q @ k.transpose(-1, -2) / math.sqrt(d // heads)).softmax(-1)
    o = (att @ v).transpose(1, 2).reshape(b, n, d)
    return F.linear(o, sd[f"{p}.attention.output.dense.weight"], sd[f"{p}.attention.output.dense.bias"])


def _ln(x, sd, p, eps=1e-6):
    return F.layer_norm(x, x.shape[-1:], sd[f"{p}.weight"], sd[f"{p}.bias"], eps)


def _hf_vit_reference(sd, x, heads=12, depth=12):
    """HF ViTModel (phikon) forward, CLS of last_hidden_state."""
    e = F.conv2d(x, sd["embeddings.patch_embeddings.projection.weight"],
                 sd["embeddings.patch_embeddings.projection.bias"], stride=16).flatten(2).transpose(1, 2)
    h = torch.cat([sd["embeddings.cls_token"].expand(len(x), -1, -1), e], 1) + sd["embeddings.position_embeddings"]
    for i in range(depth):
        p = f"encoder.layer.{i}"
        h = h + _hf_attention(_ln(h, sd, f"{p}.layernorm_before"), sd, p, heads)
        m = F.gelu(F.linear(_ln(h, sd, f"{p}.layernorm_after"), sd[f"{p}.intermediate.dense.weight"],
                            sd[f"{p}.intermediate.dense.bias"]))
        h = h + F.linear(m, sd[f"{p}.output.dense.weight"], sd[f"{p}.output.dense.bias"])
    return _ln(h, sd, "layernorm")[:, 0]


def _hf_dinov2_reg_reference(sd, x, heads=12, depth=12):
    """HF Dinov2 with registers + fused SwiGLU (hibou): pooler_output = CLS after layernorm."""
    e = F.conv2d(x, sd["embeddings.patch_embeddings.projection.weight"],
                 sd["embeddings.patch_embeddings.projection.bias"], stride=14).flatten(2).transpose(1, 2)
    h = torch.cat([sd["embeddings.cls_token"].expand(len(x), -1, -1), e], 1) + sd["embeddings.position_embeddings"]
    h = torch.cat([h[:, :1], sd["embeddings.register_tokens"].expand(len(x), -1, -1), h[:, 1:]], 1)
    for i in range(depth):
        p = f"encoder.layer.{i}"
        h = h + sd[f"{p}.layer_scale1.lambda1"] * _hf_attention(_ln(h, sd, f"{p}.norm1"), sd, p, heads)
        a, g = F.linear(_ln(h, sd, f"{p}.norm2"), sd[f"{p}.mlp.weights_in.weight"],
                        sd[f"{p}.mlp.weights_in.bias"]).chunk(2, -1)
        m = F.linear(F.silu(a) * g, sd[f"{p}.mlp.weights_out.weight"], sd[f"{p}.mlp.weights_out.bias"])
        h = h + sd[f"{p}.layer_scale2.lambda1"] * m
    return _ln(h, sd, "layernorm")[:, 0]


def _hf_clip_reference(sd, x, heads=12, depth=12):
    """HF CLIPModel.get_image_features (PLIP): pre-LN ViT-B/32 with quick_gelu, CLS after post_layernorm,
    visual_projection without bias."""
    v = lambda k: sd[f"vision_model.{k}"]  # noqa: E731
    e = F.conv2d(x, v("embeddings.patch_embedding.weight"), stride=32).flatten(2).transpose(1, 2)
    h = torch.cat([v("embeddings.class_embedding").expand(len(x), 1, -1), e], 1) + v("embeddings.position_embedding.weight")
    h = F.layer_norm(h, h.shape[-1:], v("pre_layrnorm.weight"), v("pre_layrnorm.bias"), 1e-5)
    for i in range(depth):
        p = f"encoder.layers.{i}"
        y = F.layer_norm(h, h.shape[-1:], v(f"{p}.layer_norm1.weight"), v(f"{p}.layer_norm1.bias"), 1e-5)
        b, n, d = y.shape
        q, k, w = (F.linear(y, v(f"{p}.self_attn.{t}_proj.weight"), v(f"{p}.self_attn.{t}_proj.bias"))
                   .view(b, n, heads, d // heads).transpose(1, 2) for t in "qkv")
        o = ((q @ k.transpose(-1, -2) / math.sqrt(d // heads)).softmax(-1) @ w).transpose(1, 2).reshape(b, n, d)
        h = h + F.linear(o, v(f"{p}.self_attn.out_proj.weight"), v(f"{p}.self_attn.out_proj.bias"))
        y = F.layer_norm(h, h.shape[-1:], v(f"{p}.layer_norm2.weight"), v(f"{p}.layer_norm2.bias"), 1e-5)
        y = F.linear(y, v(f"{p}.mlp.fc1.weight"), v(f"{p}.mlp.fc1.bias"))
        y = y * torch.sigmoid(1.702 * y)  # quick_gelu
        h = h + F.linear(y, v(f"{p}.mlp.fc2.weight"), v(f"{p}.mlp.fc2.bias"))
    cls = F.layer_norm(h[:, 0], h.shape[-1:], v("post_layernorm.weight"), v("post_layernorm.bias"), 1e-5)
    return F.linear(cls, sd["visual_projection.weight"])


@pytest.mark.slow
@pytest.mark.parametrize("name,reference", [("phikon", _hf_vit_reference), ("hibou-b", _hf_dinov2_reg_reference),
                                            ("plip", _hf_clip_reference)])
def test_hf_layout_conversion_matches_reference_forward(name, reference):
    pub = _randomise(_published(name), seed=2)
    if name == "hibou-b":  # non-zero CLS position embedding: checks the fold into timm's cls_token
        assert pub["embeddings.position_embeddings"][:, 0].abs().sum() > 0
    bb = get_backbone(name, weights=pub)
    x = bb.transform(_patches(1, seed=5))
    with torch.inference_mode():
        ours = bb(x)
        ref = reference(pub, x)
    assert torch.allclose(ours, ref, atol=1e-4, rtol=1e-3), (ours - ref).abs().max()


def test_ctranspath_patch_merging_matches_original_channel_order():
    """timm >= 0.9 PatchMerging must concatenate the 2x2 neighbours as TransPath's timm 0.5.4 did."""
    from timm.models.swin_transformer import PatchMerging

    torch.manual_seed(0)
    pm = PatchMerging(dim=8).eval()
    x = torch.randn(2, 6, 6, 8)
    x0, x1, x2, x3 = x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]
    ref = pm.reduction(pm.norm(torch.cat([x0, x1, x2, x3], -1)))
    with torch.no_grad():
        assert torch.allclose(pm(x), ref, atol=1e-6)


def test_ctranspath_stem_and_stage_layout():
    model = B.build_timm_model("ctranspath").eval()
    assert isinstance(model.patch_embed, B.ConvStem)
    with torch.no_grad():
        assert model.patch_embed(torch.zeros(1, 3, 224, 224)).shape == (1, 56, 56, 96)
    assert model.layers[0].downsample.__class__.__name__ == "Identity"  # timm: merge at stage start
    pub = B.make_published_state_dict("ctranspath", device="meta")
    assert sum(k.endswith("attn_mask") for k in pub) == 5  # shifted blocks of stages 0-2
    assert sum(k.endswith("relative_position_index") for k in pub) == 12


# --------------------------------------------------------------------------------------------
# Download (mocked transport)
# --------------------------------------------------------------------------------------------
def _fake_download(present: set[str], calls: list):
    def fake(repo_id, filename, *, subfolder=None, repo_type=None, token=None, local_dir=None, **kw):
        calls.append(dict(repo_id=repo_id, filename=filename, subfolder=subfolder, repo_type=repo_type,
                          token=token))
        if filename not in present:
            from huggingface_hub.errors import EntryNotFoundError
            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        out = Path(local_dir) / (subfolder or "") / filename
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"weights")
        return str(out)
    return fake


def test_download_weights_uses_hub_and_env_token(monkeypatch):
    calls: list = []
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    with mock.patch("huggingface_hub.hf_hub_download", _fake_download({"CHIEF_CTransPath.pth"}, calls)):
        path = B.download_weights("ctranspath")
    assert path == B.weights_dir("ctranspath") / "CHIEF_CTransPath.pth" and path.read_bytes() == b"weights"
    assert calls == [dict(repo_id="MahmoodLab/hest-bench", filename="CHIEF_CTransPath.pth",
                          subfolder="fm_v1/ctranspath", repo_type="dataset", token="hf_secret")]
    assert B.find_weights("ctranspath") == path  # where get_backbone looks


def test_download_weights_falls_back_to_next_file_and_explicit_token(tmp_path):
    calls: list = []
    with mock.patch("huggingface_hub.hf_hub_download", _fake_download({"pytorch_model.bin"}, calls)):
        path = B.download_weights("phikon", dest=tmp_path / "phk", token="tok")
    assert path == tmp_path / "phk" / "pytorch_model.bin"
    assert [c["filename"] for c in calls] == ["model.safetensors", "pytorch_model.bin"]
    assert {c["token"] for c in calls} == {"tok"} and calls[0]["repo_id"] == "owkin/phikon"


def test_download_weights_gated_error_is_clear(tmp_path):
    from huggingface_hub.errors import GatedRepoError

    def gated(*a, **k):  # built without an HTTP response object (its constructor needs one)
        exc = GatedRepoError.__new__(GatedRepoError)
        Exception.__init__(exc, "access to this repo is restricted")
        raise exc

    with mock.patch("huggingface_hub.hf_hub_download", gated):
        with pytest.raises(WeightsError, match=r"prov-gigapath/prov-gigapath \(gated\).*HF_TOKEN"):
            B.download_weights("gigapath", dest=tmp_path)
