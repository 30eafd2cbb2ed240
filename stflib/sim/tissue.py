"""One slide's tissue and expression: the Visium v1 array (real barcodes when the shared copy is
present), Gaussian random fields, the lobed tissue outline, compartments -> composition -> context
fields -> pathway activities, and ZINB counts from them (module docstring of ``stflib.sim``, steps 1-6)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import spatial
from ..spatial import gaussian_smoother as _smoother
from .biology import CELL_TYPES, Biology, hidden_programmes
from .worlds import WORLDS, World

PIXEL_SIZE_UM = 0.5
SPOT_PITCH_UM = 100.0
SPOT_DIAMETER_UM = 55.0
N_ROWS, N_COLS = 78, 128  # Visium v1 array: array_row 0..77, array_col 0..127 with (row + col) even


def visium_array(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Visium v1 array: (barcodes (4992,), array_row, array_col), sorted by (row, col).

    Uses the real barcode list ``hest/visium-v1_coordinates.txt`` of the reference data
    (``stflib.paths.data_dir()``: ``$STFLIB_DATA``) when present
    (``barcode<TAB>array_col<TAB>array_row``), else deterministic synthetic 16-mers. The grid (and so
    the simulation) is the same either way; only the barcode strings differ.
    """
    rows, cols = spatial.hex_lattice(N_ROWS, N_COLS)
    if path is None:
        from stflib.paths import data_dir

        path = data_dir() / "hest" / "visium-v1_coordinates.txt"
    path = Path(path)
    barcodes = None
    if path.is_file():
        table = {}
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 3:
                table[(int(parts[2]), int(parts[1]))] = parts[0]
        if len(table) == len(rows) and all((r, c) in table for r, c in zip(rows, cols)):
            barcodes = np.array([table[(r, c)] + "-1" for r, c in zip(rows, cols)])
    if barcodes is None:
        rng = np.random.default_rng(4992)
        letters = np.array(list("ACGT"))
        seqs = set()
        out = []
        while len(out) < len(rows):
            s = "".join(rng.choice(letters, 16))
            if s not in seqs:
                seqs.add(s)
                out.append(s + "-1")
        barcodes = np.array(out)
    return barcodes, rows, cols


def array_centres_um(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Spot centres in um: x = col * 50, y = row * 100 * sqrt(3) / 2."""
    return spatial.lattice_centres(rows, cols, SPOT_PITCH_UM)


_FIELD_RES = 50.0  # um per cell of the random-field grid
_FIELD_SHAPE = (int(N_ROWS * 86.61 / _FIELD_RES) + 4, int(N_COLS * 50 / _FIELD_RES) + 4)


def random_field(rng: np.random.Generator, length_um: float, xy_um: np.ndarray) -> np.ndarray:
    """A unit-variance Gaussian random field with Gaussian correlation length ``length_um`` at ``xy_um``."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal(_FIELD_SHAPE), length_um / _FIELD_RES, mode="wrap")
    field /= field.std() + 1e-12
    iy = np.clip(np.round(xy_um[:, 1] / _FIELD_RES).astype(int), 0, _FIELD_SHAPE[0] - 1)
    ix = np.clip(np.round(xy_um[:, 0] / _FIELD_RES).astype(int), 0, _FIELD_SHAPE[1] - 1)
    return field[iy, ix]


def tissue_mask(rng: np.random.Generator, xy_um: np.ndarray, n_target: int) -> np.ndarray:
    """A lobed tissue outline holding about ``n_target`` spots."""
    centre = np.array([N_COLS * 25.0, N_ROWS * 43.3]) + rng.normal(0, 250, 2)
    rel = xy_um - centre
    r, ang = np.hypot(rel[:, 0], rel[:, 1]), np.arctan2(rel[:, 1], rel[:, 0])
    wobble = np.zeros_like(ang)
    for k in (2, 3, 4, 5):
        wobble += rng.normal(0, 0.12 / k ** 0.5) * np.cos(k * ang + rng.uniform(0, 2 * np.pi))
    wobble += 0.05 * random_field(rng, 400, xy_um)
    radius = r / np.exp(wobble)
    order = np.argsort(radius)
    mask = np.zeros(len(xy_um), bool)
    mask[order[:n_target]] = True
    return mask


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x - x.max(axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis, keepdims=True)


def simulate_tissue(rng: np.random.Generator, bio: Biology, xy: np.ndarray, patient: dict,
                    world: World | None = None, rng_long: np.random.Generator | None = None) -> dict:
    """Compartments, composition, context and pathway activities of one slide's spots.

    ``activity_parts`` splits the activity (N, P) by what drives it, summing to ``activity``:
    ``composition``, ``context`` (the local context fields), ``long_range`` (``LONG_RANGE_CONTEXTS``),
    ``patient`` (offsets no input shows) and ``slide_and_noise`` (slide offset, smooth and spot noise).
    ``rng_long`` draws the long-range structures (used only when ``world.long_range_scale`` > 0)."""
    world = world or WORLDS["default"]
    long_range = world.long_range_scale > 0
    n = len(xy)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    centre = xy.mean(0)
    radius = np.sqrt(len(xy) * 8660.0 / np.pi)  # tissue radius (um)
    seed_pt = centre + rng.normal(0, 0.35 * radius, 2)
    bump = np.exp(-0.5 * np.sum((xy - seed_pt) ** 2, 1) / (0.55 * radius) ** 2)  # the main tumour mass
    tum = 1.2 * random_field(rng, 450, xy) + 3.0 * (bump - 0.45) + patient["tumour_bias"] + rng.normal(0, 0.3)
    phi = rng.uniform(0, 2 * np.pi)
    proj = xy @ np.array([np.cos(phi), np.sin(phi)])
    cut_mus, cut_muc = np.quantile(proj, rng.uniform(0.8, 0.95)), np.quantile(proj, rng.uniform(0.05, 0.3))
    mus = 2.5 * (proj - cut_mus) / 250.0 + 0.6 * random_field(rng, 400, xy)  # muscularis band along one edge
    muc = 2.0 * (cut_muc - proj) / 300.0 + 0.8 * random_field(rng, 400, xy) + 0.3 - 2.5 * sig(1.5 * tum)  # opposite edge
    stro = 0.7 * random_field(rng, 400, xy) + 0.4
    imm = 3.0 * (random_field(rng, 160, xy) - 1.25) + patient["immune_bias"]
    nec = 2.5 * (random_field(rng, 250, xy) - 0.9) + 2.0 * (tum - 1.6)
    if long_range:  # lymphoid structures (visible locally as immune aggregates) and the hot/cold state
        tls = _tertiary_lymphoid_structures(rng_long, xy)
        imm = imm + 4.0 * np.exp(-0.5 * tls["distance"].min(1) ** 2 / 120.0 ** 2) + 0.8 * patient["immune_hot"]
    logits = np.stack([tum, stro, imm, muc, mus, nec], 1)
    compart = _softmax(1.4 * logits)
    comp = compart @ bio.mix
    comp = comp * np.exp(rng.normal(0, 0.35, comp.shape))
    comp /= comp.sum(1, keepdims=True)

    s150, s250, s400 = _smoother(xy, 150), _smoother(xy, 250), _smoother(xy, 400)
    ci = {c: i for i, c in enumerate(CELL_TYPES)}
    tumour_frac = comp[:, ci["tumour_epithelial"]]
    stroma_frac = comp[:, ci["fibroblast"]] + comp[:, ci["endothelial"]]
    immune_frac = comp[:, ci["T_cell"]] + comp[:, ci["B_cell"]]
    necro_frac = comp[:, ci["necrotic_debris"]]
    nt, ns = s150 @ tumour_frac, s150 @ stroma_frac
    ctx = np.stack([
        4.0 * nt * ns,                       # interface: high where tumour and stroma meet
        s400 @ tumour_frac,                  # depth: tumour at large scale
        s250 @ immune_frac,                  # immune proximity
        s250 @ necro_frac,                   # necrosis proximity
        s250 @ stroma_frac,                  # stromal neighbourhood
    ], 1)
    ctx = world.context_scale * ctx

    P = len(bio.pathway_names)
    smooth_noise = np.stack([random_field(rng, 300, xy) for _ in range(P)], 1)
    slide_offset = rng.normal(0, 0.1, P)
    spot_noise = rng.normal(0, 0.08, (n, P))
    parts = {"composition": comp @ bio.w_comp, "context": ctx @ bio.w_ctx,
             "long_range": np.zeros((n, P)), "patient": np.tile(patient["pathway_offset"], (n, 1)),
             "slide_and_noise": world.pathway_noise_scale * (slide_offset + 0.3 * smooth_noise + spot_noise)}
    out = dict(compartments=compart, composition=comp, context=ctx)
    if long_range:
        fields = _long_range_fields(xy, compart, tumour_frac, immune_frac, tls, patient["immune_hot"])
        parts["long_range"] = world.long_range_scale * (fields @ bio.w_long)
        out["long_range_context"] = fields
    out["activity_parts"] = parts
    out["activity"] = sum(parts.values())
    if world.hidden_programmes:
        out["hidden_activity"] = _hidden_activity(rng, bio, xy, comp, world.hidden_programmes)
    return out


BOUNDARY_SATURATION_UM = 1500.0  # the boundary-distance fields saturate here (invasive front, hypoxic core)
LOCAL_IMMUNE_SIGMA_UM = 250.0  # "immune density within about 0.5 mm": a Gaussian of this sd (2 sd = 0.5 mm)


def _tertiary_lymphoid_structures(rng: np.random.Generator, xy: np.ndarray) -> dict:
    """2-4 TLS centres on tissue spots, each with its own IFN-gamma decay length (300-800 um)."""
    k = int(rng.integers(2, 5))
    centres = xy[rng.choice(len(xy), k, replace=False)]
    decay = rng.uniform(300.0, 800.0, k)
    distance = np.sqrt(((xy[:, None, :] - centres[None, :, :]) ** 2).sum(-1))  # (N, k) um
    return {"centres": centres, "decay_um": decay, "distance": distance}


def _long_range_fields(xy: np.ndarray, compart: np.ndarray, tumour_frac: np.ndarray, immune_frac: np.ndarray,
                       tls: dict, immune_hot: float) -> np.ndarray:
    """The ``LONG_RANGE_CONTEXTS`` fields (N, 5), each about in [0, 1] (see their comments in ``biology``)."""
    from scipy.spatial import cKDTree

    n = len(xy)
    tumour = compart.argmax(1) == 0  # the spot's dominant compartment is tumour
    core, reach = np.zeros(n), np.zeros(n)
    if tumour.any() and (~tumour).any():
        d_in = cKDTree(xy[~tumour]).query(xy[tumour])[0]  # tumour spot -> nearest non-tumour spot
        d_out = cKDTree(xy[tumour]).query(xy[~tumour])[0]  # non-tumour spot -> nearest tumour spot
        core[tumour] = 1.0 - np.exp(-3.0 * d_in / BOUNDARY_SATURATION_UM)  # 95 % of its plateau at 1.5 mm
        reach[~tumour] = np.exp(-3.0 * d_out / BOUNDARY_SATURATION_UM)
    ifng = np.minimum(np.exp(-tls["distance"] / tls["decay_um"][None, :]).sum(1), 1.5)
    local_immune = _smoother(xy, LOCAL_IMMUNE_SIGMA_UM) @ immune_frac
    product = tumour_frac * local_immune / 0.05  # typical immune density ~0.1-0.3, tumour content 0-0.7
    hot = np.full(n, float(immune_hot))
    return np.stack([core, reach, ifng, product, hot], 1)


def _hidden_activity(rng: np.random.Generator, bio: Biology, xy: np.ndarray, comp: np.ndarray, n: int) -> np.ndarray:
    """Activities (N, n) of the non-Hallmark programmes: composition-linked plus 300 um smooth fields."""
    w_comp, _ = hidden_programmes(n)
    typical = np.full(len(CELL_TYPES), 1.0 / len(CELL_TYPES))
    smooth = np.stack([random_field(rng, 300, xy) for _ in range(n)], 1)
    return (comp - typical) @ w_comp + 0.5 * smooth


def simulate_counts(rng: np.random.Generator, bio: Biology, xy: np.ndarray, tissue: dict, slide_median: float,
                    world: World | None = None, study_profiles: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(counts (N,G) float32, expected counts (N,G) float32, library sizes (N,)).

    ``study_profiles`` (G, C): the study's perturbation of the log cell-type profiles (``study-shift``)."""
    world = world or WORLDS["default"]
    comp = tissue["composition"]
    log_profiles = bio.log_profiles if study_profiles is None else bio.log_profiles + study_profiles
    profiles = np.exp(log_profiles)  # (G, C)
    log_mod = programme_log_modulation(bio, tissue, world)
    log_lib = (np.log(slide_median) + comp @ bio.lib_effect
               + world.depth_field * random_field(rng, world.depth_length_um, xy) + rng.normal(0, 0.2, len(xy)))
    rate = (comp @ profiles.T) * np.exp(log_mod["hallmark"] + log_mod["hidden"] + depth_capture(bio, log_lib, world))
    rate /= rate.sum(1, keepdims=True)
    lib = np.exp(log_lib)
    mu = (rate * lib[:, None]).astype(np.float32)
    theta = bio.theta[None, :]
    lam = rng.gamma(theta, 1.0 / theta, size=mu.shape) * mu
    counts = rng.poisson(lam).astype(np.float32)
    counts *= rng.random(mu.shape, dtype=np.float32) >= bio.dropout[None, :].astype(np.float32)
    return counts, mu, lib


def depth_capture(bio: Biology, log_lib: np.ndarray, world: World) -> np.ndarray | float:
    """Log-rate term (N, G) of the gene-wise capture efficiency that changes with depth (a technical
    confound, ``world.depth_capture``; 0 where the world has none): sensitivity x the slide-centred log depth."""
    if not world.depth_capture:
        return 0.0
    return np.outer(log_lib - log_lib.mean(), depth_sensitivity(bio, world.depth_capture))


def depth_sensitivity(bio: Biology, scale: float) -> np.ndarray:
    """Gene-wise capture sensitivity to log depth (G,), fixed by the biology seed: deeper spots capture
    more of the lowly expressed genes (most Hallmark members) and relatively less of the mitochondrial
    and ribosomal ones, so every gene-set score shares a depth component, as on real Visium slides."""
    from .biology import BIOLOGY_SEED

    rng = np.random.default_rng([BIOLOGY_SEED, 11])
    gamma = rng.normal(1.0, 0.5, len(bio.genes))
    gamma[np.isin(bio.gene_class, ["mito", "ribo"])] = -1.5
    return scale * gamma


def programme_log_modulation(bio: Biology, tissue: dict, world: World) -> dict[str, np.ndarray]:
    """Log-rate modulation (N, G) of each gene by the Hallmark pathways and by the hidden programmes."""
    act_c = tissue["activity"] - tissue["activity_ref"]  # modulation around a fixed typical activity
    hallmark = world.hallmark_scale * (act_c @ bio.pathway_loadings.T)  # (N, G)
    hidden = np.zeros_like(hallmark)
    if world.hidden_programmes:
        _, load = hidden_programmes(world.hidden_programmes)
        hidden = world.hidden_scale * (tissue["hidden_activity"] @ load.T)
    return {"hallmark": hallmark, "hidden": hidden}
