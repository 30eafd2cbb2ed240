"""Backbone weights on disk: where they are looked for, reading, strict checking against the
published layout, versions (file hashes) and the explicit, opt-in download from the Hugging Face hub."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from stflib.backbones.keys import StateDict, expected_published_shapes, is_extra_key
from stflib.backbones.specs import BACKBONES, BackboneSpec, WeightsError

# --------------------------------------------------------------------------------------------
# Reading and strict checking
# --------------------------------------------------------------------------------------------
def weights_root() -> Path:
    """Folder holding ``<name>/`` weight folders: $STFLIB_WEIGHTS_DIR, $STFLIB_CACHE/weights or ~/.cache/stflib/weights."""
    if os.environ.get("STFLIB_WEIGHTS_DIR"):
        return Path(os.environ["STFLIB_WEIGHTS_DIR"]).expanduser()
    if os.environ.get("STFLIB_CACHE"):
        return Path(os.environ["STFLIB_CACHE"]).expanduser() / "weights"
    return Path.home() / ".cache" / "stflib" / "weights"


def weights_dir(name: str) -> Path:
    """Where ``get_backbone(name)`` looks for weights by default (and ``download_weights`` puts them)."""
    BACKBONES[name]  # an unknown name raises, naming the registered backbones
    return weights_root() / name


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")


def find_weights(name: str, weights: str | os.PathLike | None = None) -> Path | None:
    """Resolve the weights file for ``name``: the given file/folder, else the default folder. None if absent."""
    spec = BACKBONES[name]
    if weights is not None:
        p = Path(weights).expanduser()
        if p.is_file():
            return p
        if not p.is_dir():
            raise WeightsError(f"{name}: weights path {p} does not exist")
        folder = p
    else:
        folder = weights_dir(name)
        if not folder.is_dir():
            return None
    for fname in spec.hub_files:  # preferred names, also inside the hub's subfolder layout
        for cand in (folder / fname, *( [folder / spec.hub_subfolder / fname] if spec.hub_subfolder else [])):
            if cand.is_file():
                return cand
    found = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix in _WEIGHT_SUFFIXES)
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise WeightsError(f"{name}: several weight files in {folder} ({', '.join(f.name for f in found)}); "
                           f"pass the file itself")
    if weights is not None:
        raise WeightsError(f"{name}: no weights file ({', '.join(spec.hub_files)}) in {folder}")
    return None


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """Read a checkpoint file (safetensors or torch pickle, weights only) and unwrap common containers."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            sd: Any = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any reader failure with the path
        raise WeightsError(f"cannot read weights file {path}: {exc}") from exc
    return _unwrap(sd, str(path))


def _unwrap(sd: Any, where: str) -> StateDict:
    for key in ("model", "state_dict", "teacher", "module"):
        if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping) \
                and not isinstance(sd.get(key), torch.Tensor):
            sd = sd[key]
            break
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{where}: not a state dict of tensors")
    sd = dict(sd)
    for prefix in ("module.",):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def strip_model_prefix(spec: BackboneSpec, sd: StateDict) -> StateDict:
    """HF checkpoints saved from a task model carry the base-model prefix (``vit.``, ``dinov2.``)."""
    if spec.layout in ("hf_vit", "hf_dinov2_reg"):
        for prefix in ("vit.", "dinov2.", "model."):
            if sd and all(k.startswith(prefix) for k in sd):
                return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def fill_batchnorm_counters(name: str, sd: StateDict) -> StateDict:
    """BatchNorm's ``num_batches_tracked`` counters are absent from checkpoints saved before
    PyTorch 0.4.1 (e.g. torchvision's original ResNet-50 file) and unused in eval mode: add zeros."""
    missing = [k for k, shape in expected_published_shapes(name).items()
               if k.endswith(".num_batches_tracked") and k not in sd]
    if missing and len(missing) < len(sd):
        sd = dict(sd)
        for k in missing:
            sd[k] = torch.zeros((), dtype=torch.long)
    return sd


def format_keys(keys: list[str], limit: int = 20) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_published_state_dict(name: str, sd: Mapping[str, torch.Tensor], where: str = "state dict") -> None:
    """Raise WeightsError unless ``sd`` has exactly the published keys of ``name`` with the right shapes."""
    spec = BACKBONES[name]
    expected = expected_published_shapes(name)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected and not is_extra_key(spec, k)]
    wrong = [f"{k}: got {tuple(sd[k].shape)}, expected {expected[k]}"
             for k in expected if k in sd and tuple(sd[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        lines = [f"{name}: {where} does not match the published {spec.hub_repo} layout (strict loading)"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {format_keys(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {format_keys(unexpected)}")
        if wrong:
            lines.append(f"  wrong shapes ({len(wrong)}): " + "; ".join(sorted(wrong)[:20]))
        raise WeightsError("\n".join(lines))


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """sha256 of a file (memoised per path, size and mtime: weight files are large)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(chunk), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def weights_version(name: str, weights: str | os.PathLike | None = None, pretrained: bool = True) -> str:
    """The ``backbone_version`` that ``get_backbone(name, weights, pretrained)`` will report, without
    building the network: ``sha256:<hex>`` of the weights file, or ``random-init``."""
    if not pretrained:
        return "random-init"
    path = find_weights(name, weights)
    if path is None:
        raise WeightsError(missing_weights_message(BACKBONES[name], weights))
    return f"sha256:{file_sha256(path)}"


def state_dict_digest(sd: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(sd):
        v = sd[k]
        h.update(k.encode())
        if v.device.type != "meta":
            h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                     if v.numel() else b"")
    return h.hexdigest()


# --------------------------------------------------------------------------------------------

def missing_weights_message(spec: BackboneSpec, weights: Any) -> str:
    where = weights_dir(spec.name)
    hub = f"https://huggingface.co/{'datasets/' if spec.hub_repo_type == 'dataset' else ''}{spec.hub_repo}"
    sub = f" (folder {spec.hub_subfolder})" if spec.hub_subfolder else ""
    gate = ("gated: accept the terms on the hub page and set HF_TOKEN" if spec.gated
            else "not gated")
    return (f"{spec.name}: no pretrained weights found (looked in {where}). Put one of "
            f"{', '.join(spec.hub_files)} there, or set STFLIB_WEIGHTS_DIR (folder containing '{spec.name}/'), "
            f"or pass weights=PATH. Get them from {hub}{sub} ({gate}; licence: {spec.licence}), e.g. "
            f"`python -c \"from stflib.backbones import download_weights; download_weights('{spec.name}')\"`. "
            f"Use pretrained=False (--random-init) for random weights.")


def download_weights(name: str, dest: str | os.PathLike | None = None, token: str | None = None) -> Path:
    """Download ``name``'s published checkpoint from the Hugging Face hub into ``dest``.

    ``dest`` defaults to ``weights_dir(name)`` (where ``get_backbone`` looks). ``token`` defaults
    to the ``HF_TOKEN`` environment variable; gated repositories (ctranspath's HEST-bench mirror,
    hibou-l, gigapath) need a token from an account that accepted their terms. Returns the file.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError

    spec = BACKBONES[name]
    dest = Path(dest).expanduser() if dest is not None else weights_dir(name)
    dest.mkdir(parents=True, exist_ok=True)
    token = token if token is not None else os.environ.get("HF_TOKEN")
    errors = []
    for fname in spec.hub_files:
        try:
            got = hf_hub_download(repo_id=spec.hub_repo, filename=fname, subfolder=spec.hub_subfolder,
                                  repo_type=spec.hub_repo_type, token=token, local_dir=str(dest))
        except EntryNotFoundError as exc:
            errors.append(f"{fname}: {exc}")
            continue
        except (GatedRepoError, RepositoryNotFoundError) as exc:
            raise WeightsError(f"{name}: cannot access {spec.hub_repo} ({'gated' if spec.gated else 'not found'}): "
                               f"accept its terms on the hub and set HF_TOKEN (or pass token=). {exc}") from exc
        got = Path(got)
        final = dest / fname
        if got.resolve() != final.resolve():  # local_dir keeps the hub's subfolder: flatten it
            os.replace(got, final)
        return final
    raise WeightsError(f"{name}: none of {', '.join(spec.hub_files)} found in {spec.hub_repo}: {'; '.join(errors)}")
