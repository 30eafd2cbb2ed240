"""H&E-like patches rendered from a spot's composition (module docstring of ``stflib.sim``, step 7):
nuclei splatted by cell type, gland lumens, eosin by compartment, Beer-Lambert colour."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .biology import BIOLOGY_SEED, CELL_TYPES

PATCH_PX = 224
RENDER_PX = 112  # patches are rendered at 1 um/px, then upsampled 2x

_HE = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]])  # Ruifrok & Johnston H and E optical densities
# cell type -> (render class, nuclei per patch if pure, haematoxylin intensity, eosin of cytoplasm/matrix)
_CELL_LOOK = {
    "tumour_epithelial": ("large", 150, 0.75, 0.35), "normal_epithelial": ("large", 110, 0.85, 0.30),
    "fibroblast": ("spindle", 45, 0.90, 0.60), "smooth_muscle": ("spindle", 40, 0.70, 0.90),
    "endothelial": ("spindle", 60, 0.90, 0.45), "T_cell": ("small", 280, 1.20, 0.20),
    "B_cell": ("small", 300, 1.20, 0.20), "plasma_cell": ("small", 180, 1.00, 0.45),
    "macrophage": ("large", 80, 0.70, 0.50), "necrotic_debris": ("debris", 220, 1.00, 0.75),
}
_RENDER_CLASSES = {"large": (2.0, 2.0), "small": (1.2, 1.2), "spindle": (0.8, 2.8), "debris": (0.7, 0.7)}


@lru_cache(maxsize=1)
def _texture_bank() -> np.ndarray:
    """Smooth random textures (8, 256, 256) in [0, 1], used for gland lumens and fibre streaks."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(BIOLOGY_SEED + 1)
    bank = np.stack([gaussian_filter(rng.standard_normal((256, 256)), s, mode="wrap") for s in (5, 5, 7, 7, 9, 9,
                                                                                             6, 8)])
    bank = (bank - bank.mean((1, 2), keepdims=True)) / bank.std((1, 2), keepdims=True)
    return bank.astype(np.float32)


def _crops(rng: np.random.Generator, n: int) -> np.ndarray:
    bank = _texture_bank()
    k = rng.integers(0, len(bank), n)
    oy, ox = rng.integers(0, 256 - RENDER_PX, n), rng.integers(0, 256 - RENDER_PX, n)
    ar = np.arange(RENDER_PX)
    return bank[k[:, None, None], oy[:, None, None] + ar[None, :, None], ox[:, None, None] + ar[None, None, :]]


def render_patches(rng: np.random.Generator, comp: np.ndarray, stain: dict, orientation: np.ndarray,
                   batch: int = 256) -> np.ndarray:
    """H&E-like patches (N, 224, 224, 3) uint8 whose morphology follows the composition ``comp``."""
    from scipy.ndimage import gaussian_filter

    n, R = len(comp), RENDER_PX
    out = np.empty((n, PATCH_PX, PATCH_PX, 3), np.uint8)
    looks = [_CELL_LOOK[c] for c in CELL_TYPES]
    eosin_ct = np.array([lk[3] for lk in looks])
    he = _HE * stain["vectors"]
    for start in range(0, n, batch):
        sl = slice(start, min(n, start + batch))
        c = comp[sl]
        b = len(c)
        hmap = np.zeros((b, R, R), np.float32)
        for cls, (sy, sx) in _RENDER_CLASSES.items():
            splat = np.zeros((b, R, R), np.float32)
            for j, lk in enumerate(looks):
                if lk[0] != cls:
                    continue
                counts = rng.poisson(c[:, j] * lk[1])
                idx = np.repeat(np.arange(b), counts)
                if len(idx) == 0:
                    continue
                py, px = rng.integers(0, R, len(idx)), rng.integers(0, R, len(idx))
                np.add.at(splat, (idx, py, px), lk[2] * rng.uniform(0.7, 1.3, len(idx)))
            if cls == "spindle":
                vert = orientation[sl]
                splat[vert] = gaussian_filter(splat[vert], (0, sx, sy)) * (2 * np.pi * sx * sy)
                splat[~vert] = gaussian_filter(splat[~vert], (0, sy, sx)) * (2 * np.pi * sx * sy)
            else:
                splat = gaussian_filter(splat, (0, sy, sx)) * (2 * np.pi * sx * sy)
            hmap += splat
        epi = c[:, 0] + c[:, 1]
        tex = _crops(rng, b)
        lumen = tex > (2.2 - 1.8 * epi)[:, None, None]  # gland lumens where epithelium is abundant
        streak = _crops(rng, b)
        emap = 0.6 * (c @ eosin_ct)[:, None, None] * (0.85 + 0.15 * np.tanh(streak))
        tissue = ~lumen
        hmap = np.minimum(hmap, 1.6) * tissue
        emap = emap * tissue + 0.03
        od = (stain["h"] * hmap[..., None] * he[0] + stain["e"] * emap[..., None] * he[1]) + 0.02
        rgb = np.clip(255.0 * np.power(10.0, -od), 0, 255)
        rgb = (np.round(rgb / 4) * 4).clip(0, 255).astype(np.uint8)  # mild quantisation (compressible)
        out[sl] = rgb.repeat(2, axis=1).repeat(2, axis=2)
    return out
