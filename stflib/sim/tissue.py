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

    Uses the real barcode list ``../shared/data/hest/visium-v1_coordinates.txt`` when present
    (``barcode<TAB>array_col<TAB>array_row``), else deterministic synthetic 16-mers. The grid (and so
    the simulation) is the same either way; only the barcode strings differ.
    """
    rows, cols = spatial.hex_lattice(N_ROWS, N_COLS)
    if path is None:  # the shared data folder beside the repository (stflib/sim/tissue.py -> ../shared)
        path = Path(__file__).resolve().parents[3] / "shared" / "data" / "hest" / "visium-v1_coordinates.txt"
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
                    world: World | None = None) -> dict:
    """Compartments, composition, context and pathway activities of one slide's spots."""
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
    world = world or WORLDS["default"]
    ctx = world.context_scale * ctx

    P = len(bio.pathway_names)
    smooth_noise = np.stack([random_field(rng, 300, xy) for _ in range(P)], 1)
    act = (comp @ bio.w_comp + ctx @ bio.w_ctx + patient["pathway_offset"] + rng.normal(0, 0.1, P)
           + 0.3 * smooth_noise + rng.normal(0, 0.08, (n, P)))
    out = dict(compartments=compart, composition=comp, context=ctx, activity=act)
    if world.hidden_programmes:
        out["hidden_activity"] = _hidden_activity(rng, bio, xy, comp, world.hidden_programmes)
    return out


def _hidden_activity(rng: np.random.Generator, bio: Biology, xy: np.ndarray, comp: np.ndarray, n: int) -> np.ndarray:
    """Activities (N, n) of the non-Hallmark programmes: composition-linked plus 300 um smooth fields."""
    w_comp, _ = hidden_programmes(n)
    typical = np.full(len(CELL_TYPES), 1.0 / len(CELL_TYPES))
    smooth = np.stack([random_field(rng, 300, xy) for _ in range(n)], 1)
    return (comp - typical) @ w_comp + 0.5 * smooth


def simulate_counts(rng: np.random.Generator, bio: Biology, xy: np.ndarray, tissue: dict, slide_median: float,
                    world: World | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(counts (N,G) float32, expected counts (N,G) float32, library sizes (N,))."""
    comp = tissue["composition"]
    profiles = np.exp(bio.log_profiles)  # (G, C)
    log_mod = programme_log_modulation(bio, tissue, world or WORLDS["default"])
    rate = (comp @ profiles.T) * np.exp(log_mod["hallmark"] + log_mod["hidden"])
    rate /= rate.sum(1, keepdims=True)
    log_lib = (np.log(slide_median) + comp @ bio.lib_effect + 0.25 * random_field(rng, 500, xy)
               + rng.normal(0, 0.2, len(xy)))
    lib = np.exp(log_lib)
    mu = (rate * lib[:, None]).astype(np.float32)
    theta = bio.theta[None, :]
    lam = rng.gamma(theta, 1.0 / theta, size=mu.shape) * mu
    counts = rng.poisson(lam).astype(np.float32)
    counts *= rng.random(mu.shape, dtype=np.float32) >= bio.dropout[None, :].astype(np.float32)
    return counts, mu, lib


def programme_log_modulation(bio: Biology, tissue: dict, world: World) -> dict[str, np.ndarray]:
    """Log-rate modulation (N, G) of each gene by the Hallmark pathways and by the hidden programmes."""
    act_c = tissue["activity"] - tissue["activity_ref"]  # modulation around a fixed typical activity
    hallmark = world.hallmark_scale * (act_c @ bio.pathway_loadings.T)
    hidden = np.zeros_like(hallmark)
    if world.hidden_programmes:
        _, load = hidden_programmes(world.hidden_programmes)
        hidden = world.hidden_scale * (tissue["hidden_activity"] @ load.T)
    return {"hallmark": hallmark, "hidden": hidden}
