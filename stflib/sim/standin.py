"""Stand-in features: what each backbone's embedding of a spot's own patch would carry (module
docstring of ``stflib.sim``, step 8). They are NOT embeddings of the rendered patches; their
information level is set per backbone (``BACKBONES[name].stand_in``) and their noise structure per world."""
from __future__ import annotations

import zlib

import numpy as np

from .biology import BIOLOGY_SEED, VISIBLE_WEIGHT, Biology
from .tissue import random_field
from .worlds import BACKBONES, World


def latent_morphology(bio: Biology, tissue: dict) -> np.ndarray:
    """The information a patch carries: standardised composition + visible pathway activities.

    The long-range programmes (``long-range-context``) are transcriptional states without a morphological
    correlate in the spot's own patch: the visible activities exclude them, so only the neighbourhood and
    the slide can reveal them."""
    comp = (tissue["composition"] - 0.1) / 0.2
    activity = tissue["activity"]
    if "activity_parts" in tissue:
        activity = activity - tissue["activity_parts"]["long_range"]
    vis = VISIBLE_WEIGHT * (activity[:, bio.visible] - tissue["activity_ref"][bio.visible]) / 0.6
    return np.concatenate([comp, vis], 1)


def _feature_map(name: str, in_dim: int, hidden: int = 128):
    spec = BACKBONES[name]
    rng = np.random.default_rng([BIOLOGY_SEED, zlib.crc32(name.encode())])
    w1 = rng.normal(0, 1.3 / np.sqrt(in_dim), (in_dim, hidden))
    b1 = rng.normal(0, 0.3, hidden)
    w2 = rng.normal(0, 1.0 / np.sqrt(hidden), (hidden, spec.feature_dim))
    b2 = rng.normal(0, 0.2, spec.feature_dim)
    return w1, b1, w2, b2


def structured_noise(rng: np.random.Generator, xy_um: np.ndarray, dim: int, world: World) -> np.ndarray:
    """The image-level part of the feature noise (N, dim), shared by all backbones of a slide:
    ``noise_smooth`` x unit smooth fields (``noise_length_um``) + ``noise_slide`` x one offset per slide."""
    smooth = np.stack([random_field(rng, world.noise_length_um, xy_um) for _ in range(dim)], 1)
    return world.noise_smooth * smooth + world.noise_slide * rng.normal(0, 1, dim)[None, :]


def stand_in_features(rng: np.random.Generator, name: str, latent: np.ndarray, nuisance: np.ndarray,
                      image_noise: np.ndarray | None = None, noise_spot: float = 1.0) -> np.ndarray:
    """Stand-in embeddings of width ``BACKBONES[name].feature_dim`` (see the module docstring): the latent plus
    ``noise`` x (``noise_spot`` x i.i.d. spot noise + ``image_noise``), with the nuisance dims, through a
    fixed random 2-layer tanh map, plus output noise."""
    spec, stand_in = BACKBONES[name], BACKBONES[name].stand_in
    noise = noise_spot * rng.standard_normal(latent.shape)
    if image_noise is not None:
        noise = noise + image_noise
    u = np.concatenate([latent + stand_in.noise * noise, stand_in.stain_sensitivity * nuisance], 1)
    w1, b1, w2, b2 = _feature_map(name, u.shape[1])
    h = np.tanh(u @ w1 + b1)
    out = h @ w2 + b2 + stand_in.out_noise * rng.standard_normal((len(u), spec.feature_dim))
    if name == "resnet50":  # post-ReLU average pooling: non-negative
        out = np.logaddexp(0.0, 2.0 * out) / 2.0
    return out.astype(np.float32)
