"""A simulated cohort: slides planned per patient, each simulated and written in the HEST-1k layout
(``simulate_cohort``), cached per preset, seed and world (``default_cohort``), and the
``python -m stflib simulate`` command.

Files written (the HEST-1k layout)
---------------------------------
``metadata.csv`` (HEST columns, ids ``SIM000``...), ``metadata/<id>.json``, ``patches/<id>.h5``
(``img`` (N,224,224,3) uint8 gzip, ``coords`` (N,2) top-left corners, ``barcode`` (N,1) bytes),
``features/<backbone>/<id>.h5`` (``features`` (N,D) float32, ``barcodes`` (N,) bytes, ``coords``
(N,2) spot centres; attrs ``backbone``, ``feature_dim``, ``simulated``, ``latent_noise``) and
``st/<id>.h5ad``:

- ``X``: raw UMI counts, CSR float32 (integer valued); ``var_names`` gene symbols,
  ``var['gene_class']`` (hallmark / marker / mito / ribo / background); ``obs_names`` barcodes.
- ``obs``: ``in_tissue``, ``array_row``, ``array_col``, ``pxl_row_in_fullres``,
  ``pxl_col_in_fullres``, ``compartment`` (dominant compartment), ``true_library_size``.
- ``obsm['spatial']`` (N,2) spot centres in full-res pixels (x, y), 0.5 um/px.
- truth: ``obsm['true_pathway_activity']`` (N,50) + ``uns['true_pathway_names']`` (Hallmark
  names); ``layers['expected_counts']`` (N,G) dense float32, the ZINB mean before dropout
  (stored to ~4 significant digits); ``obsm['true_composition']`` (N,10) + ``uns['cell_types']``;
  ``obsm['true_compartments']`` (N,6) + ``uns['compartments']``; ``obsm['true_context']`` (N,5) +
  ``uns['contexts']``; ``obsm['true_latent_morphology']`` (N,18) the noise-free latent the stand-in
  features are made from (what a patch can tell at most); ``obsm['true_hidden_programme_activity']``
  (N,K) the non-Hallmark programmes (only in worlds that have them); ``uns['simulator']`` (version,
  preset, seed, world, patient, parameters);
  ``uns['thumbnail']`` (H,W,3) uint8 low-resolution image of the section,
  ``uns['thumbnail_um_per_px']``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
import uuid
import zlib
from pathlib import Path

import numpy as np

from .biology import BIOLOGY_SEED, CELL_TYPES, COMPARTMENTS, CONTEXTS, LONG_RANGE_CONTEXTS, activity_reference, biology
from .patches import PATCH_PX, render_patches
from .standin import latent_morphology, stand_in_features, structured_noise
from .tissue import (N_COLS, N_ROWS, PIXEL_SIZE_UM, SPOT_DIAMETER_UM, SPOT_PITCH_UM, array_centres_um,
                     random_field, simulate_counts, simulate_tissue, tissue_mask, visium_array)
from .worlds import BACKBONES, PRESETS, WORLDS, Preset
from ..paths import cache_root

SIMULATOR_VERSION = "2"
# modules of stflib.sim that measure a cohort (truth reports, calibration probes, reliability) and never
# write one: editing them neither regenerates cached cohorts nor stales finished runs
MEASUREMENT_MODULES = frozenset({"truth.py", "truth_figures.py", "anchors.py", "calibration.py", "reliability.py"})
MARGIN_PX = 1000
COMPLETE_MARKER = ".complete"


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *keys]))


def _cohort_plan(preset: Preset, seed: int, n_studies: int = 1) -> list[dict]:
    """Slides: id, patient index, replicate index, spot count, oncotree code, library median, study
    (patients are dealt to ``n_studies`` studies in turn, so every study holds whole patients)."""
    rng = _rng(seed, 0)
    n_rep = preset.n_slides - preset.n_patients
    reps = [2 if i < n_rep else 1 for i in range(preset.n_patients)]
    while sum(reps) < preset.n_slides:  # more than 2 slides per patient when needed
        reps[sum(reps) % preset.n_patients] += 1
    plan, k = [], 0
    codes = rng.choice(["COAD", "READ"], size=preset.n_patients, p=[0.7, 0.3])
    for p, r in enumerate(reps):
        for j in range(r):
            plan.append(dict(id=f"SIM{k:03d}", patient=p, replicate=j, oncotree=str(codes[p]),
                             n_spots=int(rng.integers(preset.spots[0], preset.spots[1] + 1)),
                             lib_median=float(np.exp(rng.uniform(np.log(4000), np.log(14000)))),
                             study=p % n_studies))
            k += 1
    return plan


def _patient_effects(seed: int, p: int, n_pathways: int, scale: float = 1.0) -> dict:
    rng = _rng(seed, 1, p)
    effects = dict(tumour_bias=float(rng.normal(0.3, 0.4 * scale)), immune_bias=float(rng.normal(0.0, 0.6 * scale)),
                   pathway_offset=rng.normal(0, 0.3 * scale, n_pathways))
    effects["immune_hot"] = float(rng.random() < 0.5)  # the tumour's immune phenotype (long-range-context world)
    return effects


def study_effects(seed: int, study: int, latent_dim: int, n_nuisance: int, world) -> dict:
    """One study's batch effects (``study-shift``): a shift of the features' nuisance input (stain, scanner)
    and of their latent input, and a perturbation of the log cell-type profiles (G, C)."""
    if world.n_studies <= 1:
        return {"nuisance": np.zeros(n_nuisance), "latent": np.zeros(latent_dim), "mixing": None, "profiles": None}
    rng = _rng(seed, 6, study)
    bio = biology()
    return {"nuisance": world.study_feature_shift * rng.normal(0, 1.5, n_nuisance),
            "latent": world.study_feature_shift * rng.normal(0, 0.5, latent_dim),
            "profiles": world.study_expression_shift * rng.normal(0, 1, bio.log_profiles.shape),
            "mixing": np.eye(latent_dim) + world.study_feature_mixing * rng.normal(0, 1 / np.sqrt(latent_dim),
                                                                                  (latent_dim, latent_dim))}


def _round_mantissa(a: np.ndarray, keep_bits: int) -> np.ndarray:
    """Round float32 values to ``keep_bits`` mantissa bits (so gzip+shuffle compresses them well)."""
    a = np.ascontiguousarray(a, np.float32)
    drop = 23 - keep_bits
    u = a.view(np.uint32).astype(np.uint64)
    u = ((u + (1 << (drop - 1))) >> drop) << drop
    return u.astype(np.uint32).view(np.float32)


def _thumbnail(xy_um: np.ndarray, colours: np.ndarray, um_per_px: float = 25.0) -> np.ndarray:
    h = int(N_ROWS * 86.61 / um_per_px) + 4
    w = int(N_COLS * 50 / um_per_px) + 4
    img = np.full((h, w, 3), 245, np.uint8)
    iy, ix = np.round(xy_um[:, 1] / um_per_px).astype(int) + 1, np.round(xy_um[:, 0] / um_per_px).astype(int) + 1
    for dy in (-2, -1, 0, 1, 2):
        for dx in (-2, -1, 0, 1, 2):
            if dy * dy + dx * dx <= 5:
                img[np.clip(iy + dy, 0, h - 1), np.clip(ix + dx, 0, w - 1)] = colours
    return img


HEST_COLUMNS = ["dataset_title", "id", "image_filename", "organ", "disease_state", "oncotree_code", "species",
                "patient", "st_technology", "data_publication_date", "license", "study_link", "download_page_link1",
                "inter_spot_dist", "spot_diameter", "spots_under_tissue", "preservation_method", "nb_genes",
                "treatment_comment", "pixel_size_um_embedded", "pixel_size_um_estimated", "magnification",
                "fullres_px_width", "fullres_px_height", "tissue", "disease_comment", "subseries",
                "hest_version_added"]


def simulate_slide(plan: dict, seed: int, preset_name: str, grid=None, with_patches: bool = True,
                   backbones: list[str] | None = None, world: str = "default") -> dict:
    """Simulate one slide in memory: AnnData, patches, features (by backbone) and its metadata row."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    spec_world = WORLDS[world]
    bio = biology()
    barcodes_all, rows_all, cols_all = grid if grid is not None else visium_array()
    k = int(plan["id"][3:])
    rng_t, rng_x, rng_p, rng_f = (_rng(seed, 2, k, i) for i in range(4))
    xy_all = array_centres_um(rows_all, cols_all)
    mask = tissue_mask(rng_t, xy_all, plan["n_spots"])
    xy, barcodes, rows, cols = xy_all[mask], barcodes_all[mask], rows_all[mask], cols_all[mask]
    patient = _patient_effects(seed, plan["patient"], len(bio.pathway_names), spec_world.patient_scale)
    tissue = simulate_tissue(rng_t, bio, xy, patient, spec_world, rng_long=_rng(seed, 5, k))
    tissue["activity_ref"] = activity_reference(spec_world.long_range_scale)
    study = study_effects(seed, int(plan.get("study", 0)), len(CELL_TYPES) + len(bio.visible), 5, spec_world)
    counts, mu, lib = simulate_counts(rng_x, bio, xy, tissue, plan["lib_median"], spec_world, study["profiles"])
    n, G = counts.shape

    centres_px = MARGIN_PX + xy / PIXEL_SIZE_UM
    obs = pd.DataFrame({
        "in_tissue": np.ones(n, np.int64), "array_row": rows.astype(np.int64), "array_col": cols.astype(np.int64),
        "pxl_row_in_fullres": centres_px[:, 1], "pxl_col_in_fullres": centres_px[:, 0],
        "compartment": pd.Categorical(np.array(COMPARTMENTS)[tissue["compartments"].argmax(1)],
                                      categories=COMPARTMENTS),
        "true_library_size": lib.astype(np.float32),
    }, index=pd.Index(barcodes, name=None))
    var = pd.DataFrame({"gene_class": pd.Categorical(bio.gene_class)}, index=pd.Index(bio.genes))
    adata = ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=var)
    adata.obsm["spatial"] = centres_px.astype(np.float64)
    adata.obsm["true_pathway_activity"] = tissue["activity"].astype(np.float32)
    adata.obsm["true_composition"] = tissue["composition"].astype(np.float32)
    adata.obsm["true_compartments"] = tissue["compartments"].astype(np.float32)
    adata.obsm["true_context"] = tissue["context"].astype(np.float32)
    if "hidden_activity" in tissue:
        adata.obsm["true_hidden_programme_activity"] = tissue["hidden_activity"].astype(np.float32)
    if "long_range_context" in tissue:
        adata.obsm["true_long_range_context"] = tissue["long_range_context"].astype(np.float32)
        adata.uns["long_range_contexts"] = np.array(LONG_RANGE_CONTEXTS)
    adata.uns["true_pathway_names"] = np.array(bio.pathway_names)
    adata.uns["cell_types"] = np.array(CELL_TYPES)
    adata.uns["compartments"] = np.array(COMPARTMENTS)
    adata.uns["contexts"] = np.array(CONTEXTS)
    adata.uns["simulator"] = {"version": SIMULATOR_VERSION, "preset": preset_name, "seed": int(seed), "world": world,
                              "patient": int(plan["patient"]), "replicate": int(plan["replicate"]),
                              "study": int(plan.get("study", 0)),
                              "library_median": float(plan["lib_median"]),
                              "biology_seed": BIOLOGY_SEED, "pixel_size_um": PIXEL_SIZE_UM}

    # nuisance seen by the feature extractors: slide stain (3) + spot focus/thickness (2)
    stain_latent = rng_f.normal(0, 1, 3)
    nuisance = np.concatenate([np.tile(stain_latent, (n, 1)), rng_f.normal(0, 1, (n, 2))], 1) + study["nuisance"]
    stain = {"vectors": np.clip(1 + 0.08 * np.stack([stain_latent, np.roll(stain_latent, 1)]), 0.7, 1.3),
             "h": float(np.exp(0.15 * stain_latent[0])), "e": float(np.exp(0.15 * stain_latent[1]))}
    latent = latent_morphology(bio, tissue)
    adata.obsm["true_latent_morphology"] = latent.astype(np.float32)
    image_noise = structured_noise(_rng(seed, 4, k), xy, latent.shape[1], spec_world) + study["latent"]
    seen = latent if study["mixing"] is None else latent @ study["mixing"]  # what this study's scanner shows
    features = {name: stand_in_features(_rng(seed, 3, k, zlib.crc32(name.encode())), name, seen, nuisance,
                                        image_noise, spec_world.noise_spot)
                for name in (backbones if backbones is not None else BACKBONES)}

    patches = None
    if with_patches:
        orient = random_field(rng_p, 300, xy) > 0
        patches = render_patches(rng_p, tissue["composition"], stain, orient)
        colours = patches.reshape(n, -1, 3).mean(1).astype(np.uint8)
    else:
        colours = np.full((n, 3), 180, np.uint8)
    adata.uns["thumbnail"] = _thumbnail(xy, colours)
    adata.uns["thumbnail_um_per_px"] = 25.0

    width, height = int(2 * MARGIN_PX + N_COLS * 50 / PIXEL_SIZE_UM), int(2 * MARGIN_PX + N_ROWS * 86.61 / PIXEL_SIZE_UM)
    meta = {
        "dataset_title": "stflib simulated colorectal cancer Visium cohort" + (
            f", study {int(plan['study']) + 1}" if spec_world.n_studies > 1 else ""), "id": plan["id"],
        "image_filename": "", "organ": "Bowel", "disease_state": "Cancer", "oncotree_code": plan["oncotree"],
        "species": "Homo sapiens", "patient": f"SIM Patient {plan['patient'] + 1:02d}", "st_technology": "Visium",
        "data_publication_date": "", "license": "MIT (simulated data)", "study_link": "",
        "download_page_link1": "", "inter_spot_dist": SPOT_PITCH_UM, "spot_diameter": SPOT_DIAMETER_UM,
        "spots_under_tissue": int(n), "preservation_method": "FFPE", "nb_genes": int(G), "treatment_comment": "",
        "pixel_size_um_embedded": PIXEL_SIZE_UM, "pixel_size_um_estimated": PIXEL_SIZE_UM, "magnification": "20x",
        "fullres_px_width": width, "fullres_px_height": height,
        "tissue": "Colon" if plan["oncotree"] == "COAD" else "Rectum", "disease_comment": "simulated",
        "subseries": f"sim-{preset_name}-{world}-seed{seed}-P{plan['patient'] + 1:02d}-S{plan['replicate'] + 1}",
        "hest_version_added": f"stflib-sim-v{SIMULATOR_VERSION}",
    }
    return dict(adata=adata, expected=mu, patches=patches, features=features, meta=meta, barcodes=barcodes,
                centres_px=centres_px, latent=latent, tissue=tissue, study=study)


def write_slide(out: Path, sim: dict, gzip_level: int = 4) -> None:
    """Write one simulated slide into the HEST layout under ``out``."""
    import anndata as ad
    import h5py

    sid = sim["meta"]["id"]
    for sub in ("st", "patches", "metadata"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    st_path = out / "st" / f"{sid}.h5ad"
    sim["adata"].write_h5ad(st_path, compression="gzip", compression_opts=gzip_level)
    expected = _round_mantissa(sim["expected"], 12)
    with h5py.File(st_path, "a") as f:
        ad.io.write_elem(f["layers"], "expected_counts", expected,
                         dataset_kwargs=dict(compression="gzip", compression_opts=gzip_level, shuffle=True,
                                             chunks=(min(256, len(expected)), expected.shape[1])))
    bc_bytes = np.array([b.encode() for b in sim["barcodes"]], dtype="S")
    if sim["patches"] is not None:
        with h5py.File(out / "patches" / f"{sid}.h5", "w") as f:
            f.create_dataset("img", data=sim["patches"], chunks=(1, PATCH_PX, PATCH_PX, 3), compression="gzip",
                             compression_opts=gzip_level)
            f.create_dataset("coords", data=np.round(sim["centres_px"] - PATCH_PX / 2).astype(np.int64))
            f.create_dataset("barcode", data=bc_bytes.reshape(-1, 1))
    for name, feats in sim["features"].items():
        folder = out / "features" / name
        folder.mkdir(parents=True, exist_ok=True)
        with h5py.File(folder / f"{sid}.h5", "w") as f:
            f.create_dataset("features", data=_round_mantissa(feats, 10), compression="gzip",
                             compression_opts=gzip_level, shuffle=True, chunks=(min(256, len(feats)), feats.shape[1]))
            f.create_dataset("barcodes", data=bc_bytes)
            f.create_dataset("coords", data=sim["centres_px"])
            f.attrs["backbone"] = name
            f.attrs["feature_dim"] = int(feats.shape[1])
            f.attrs["simulated"] = True
            f.attrs["latent_noise"] = float(BACKBONES[name].stand_in.noise)
    meta = dict(sim["meta"])
    meta["simulator"] = dict(sim["adata"].uns["simulator"])
    (out / "metadata" / f"{sid}.json").write_text(json.dumps(meta, indent=1, default=float))


def simulate_cohort(out: str | Path, preset: str = "default", seed: int = 0, with_patches: bool = True,
                    backbones: list[str] | None = None, verbose: bool = False, world: str = "default") -> Path:
    """Simulate a whole cohort of ``world`` into ``out`` (HEST layout); returns ``out``. Deterministic by ``seed``."""
    import pandas as pd

    spec = PRESETS[preset]
    WORLDS[world]  # an unknown world raises here, naming the registered ones
    for name in backbones or ():
        BACKBONES[name]  # likewise an unknown backbone
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = visium_array()
    rows = []
    t0 = time.time()
    for plan in _cohort_plan(spec, seed, WORLDS[world].n_studies):
        sim = simulate_slide(plan, seed, preset, grid=grid, with_patches=with_patches, backbones=backbones,
                             world=world)
        write_slide(out, sim, spec.gzip_level)
        rows.append(sim["meta"])
        if verbose:
            print(f"  {plan['id']}: {sim['meta']['spots_under_tissue']} spots, patient {plan['patient'] + 1}, "
                  f"median UMIs {np.median(np.asarray(sim['adata'].X.sum(1)).ravel()):.0f} ({time.time() - t0:.1f}s)", flush=True)
    pd.DataFrame(rows, columns=HEST_COLUMNS).to_csv(out / "metadata.csv", index=False)
    return out


def cache_dir() -> Path:
    """The stflib cache folder (``stflib.paths.cache_root``: ``$STFLIB_CACHE`` or ``~/.cache/stflib``)."""
    return cache_root()


def simulator_fingerprint() -> str:
    """Version plus a hash of the source of every module of ``stflib.sim`` that generates a cohort (names and
    contents; not the ``MEASUREMENT_MODULES``, which only read one) and of every backbone's stand-in (its
    width and ``stand_in``, which live in ``stflib.backbones.specs``): a cached cohort is reused only by the
    code that wrote it."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.glob("*.py")):
        if path.name in MEASUREMENT_MODULES:
            continue
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for name, spec in BACKBONES.items():
        digest.update(repr((name, spec.feature_dim, spec.stand_in)).encode() + b"\0")
    return f"{SIMULATOR_VERSION}-{digest.hexdigest()[:12]}"


def _cached_fingerprint(folder: Path) -> str | None:
    marker = folder / COMPLETE_MARKER
    try:
        return json.loads(marker.read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def cohort_name(preset: str = "default", seed: int = 0, world: str = "default") -> str:
    """Cache folder name of a cohort: ``sim-<preset>-seed<seed>`` for the default world (the name
    other parts of the project already know), ``sim-<preset>-<world>-seed<seed>`` for the others."""
    return f"sim-{preset}-seed{int(seed)}" if world == "default" else f"sim-{preset}-{world}-seed{int(seed)}"


def default_cohort(preset: str = "default", seed: int = 0, world: str = "default") -> Path:
    """The simulated cohort of ``world`` (``cohort_name``) in the cache, generated on first use.

    Generation writes into a temporary sibling folder and renames it into place when complete, so
    an interrupted run never leaves a half-written cohort that looks usable. A cached cohort written
    by a different version of this module (``simulator_fingerprint``) is regenerated, never reused.
    """
    PRESETS[preset], WORLDS[world]  # unknown names raise here, naming the registered ones
    root = cache_dir()
    target = root / cohort_name(preset, seed, world)
    fingerprint = simulator_fingerprint()
    if _cached_fingerprint(target) == fingerprint:
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        print(f"simulating the {preset!r} cohort, world {world!r} (seed {seed}) into {target}: first use only, "
              "cached afterwards", flush=True)
        t0 = time.time()
        if world == "default":  # keeps the call the same for code that replaces simulate_cohort
            simulate_cohort(tmp, preset=preset, seed=seed)
        else:
            simulate_cohort(tmp, preset=preset, seed=seed, world=world)
        print(f"simulated cohort ready in {time.time() - t0:.0f} s", flush=True)
        (tmp / COMPLETE_MARKER).write_text(json.dumps({"preset": preset, "seed": int(seed), "world": world,
                                                       "version": SIMULATOR_VERSION,
                                                       "fingerprint": fingerprint}))
        if target.exists() and _cached_fingerprint(target) != fingerprint:
            # incomplete, or written by another version of the simulator: move it out of the way
            stale = root / f".stale-{target.name}-{uuid.uuid4().hex[:8]}"
            os.rename(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if _cached_fingerprint(target) != fingerprint:  # someone else finished first: use theirs
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (HEST-1k layout)")
    parser.add_argument("--preset", default="default",
                        help=f"cohort size: {', '.join(f'{k} ({v.n_slides} slides)' for k, v in PRESETS.items())}")
    parser.add_argument("--seed", type=int, default=0, help="cohort seed (deterministic)")
    parser.add_argument("--world", default="default",
                        help=f"simulator world (named assumptions, see stflib.simulate.WORLDS): {', '.join(WORLDS)}")
    parser.add_argument("--no-patches", action="store_true", help="skip rendering patches (faster, smaller)")


def run(args: argparse.Namespace) -> int:
    t0 = time.time()
    try:
        PRESETS[args.preset], WORLDS[args.world]
    except ValueError as err:
        print(f"error: {err}")
        return 2
    print(f"simulating preset {args.preset!r}, world {args.world!r}, seed {args.seed} into {args.out}", flush=True)
    out = simulate_cohort(args.out, preset=args.preset, seed=args.seed, with_patches=not args.no_patches,
                          verbose=True, world=args.world)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"done in {time.time() - t0:.1f}s; {size / 1e6:.1f} MB in {out}")
    return 0
