"""A rehearsal of the real-data path: ``python -m stflib rehearse --out DIR`` writes a folder in HEST-1k's
layout at the real bowel cohort's scale (the simulator's ``full`` preset: 55 human slides, ~170k spots)
with the quirks of HEST's real metadata and files, so ``ablate --dry-run``, a short grid and ``collect``
can be tried on it before any real download or GPU hour.

The slides are simulated (``stflib.sim.simulate_slide``, stand-in features of one backbone instead of
extracted ones) and then written as real HEST samples are: no simulator truth in the h5ad (the folder
reads as real data), patch files with the spots' barcodes and coordinates but blank images (the grid
reads the feature cache, never the pixels; rendering 170k patches would take hours), and these quirks,
each listed by sample in ``DIR/rehearsal.json``:

- ``unlabelled``: slides without a ``patient`` value whose ``subseries`` names the block, shaped like
  COLON MAP's ``<specimen>_<initials>_<section>`` (two sections of one block: one group);
- ``labelled``: "Patient k" labels in two studies, so the same label names two patients (HEST's labels
  are unique only within a ``dataset_title``);
- ``duplicated_section``: one section sequenced twice under two dataset titles and no patient label
  (as TENX28/TENX29), the second a targeted panel (a gene subset, counts thinned): the same image
  size and spot count, so ``patient_groups`` merges them and they share a fold;
- ``ensembl``: slides whose ``var_names`` are Ensembl-shaped ids with symbols in ``var['gene_symbols']``,
  two ids of them naming one symbol (their counts split; the reader sums them back);
- ``mouse``: mouse sections (``Mus musculus``, mouse-cased symbols, no oncotree code, as HEST's bowel
  mouse rows) listed in ``metadata.csv`` with their files: the cohort filter must leave them out;
- ``missing_patches`` / ``missing_features``: barcodes of some slides absent from the patch file (HEST
  drops off-slide or tissue-poor patches; their features are absent too) or from the feature cache
  only; the patch file's rows are shuffled (HEST promises no order), so every join must go by barcode.

The Ensembl-shaped ids are synthetic (``ENSG`` + the gene's catalogue position), not real Ensembl ids.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SLIDE_KINDS = ("unlabelled", "labelled", "duplicated_section", "study_c", "demo")  # how a human slide is labelled
PANEL_FRACTION = 0.25  # the targeted panel keeps the marker genes and this share of the others
DROPPED_PATCH_SHARE = 0.03  # share of a slide's barcodes without a patch (every MISSING_EVERY-th slide)
DROPPED_FEATURE_SHARE = 0.01  # share of a slide's barcodes without a feature row (a partial extraction)
MISSING_EVERY = 5
N_MOUSE = 2
ID_PREFIX = {"unlabelled": "RHA", "labelled": "RHZ", "duplicated_section": "RHD", "study_c": "RHC", "demo": "RHX",
             "mouse": "RHM"}


def slide_roles(plan: list[dict]) -> dict[int, str]:
    """Patient index -> kind (``SLIDE_KINDS``). Patients with two or more slides: the last one is the
    duplicated section, the first half of the others unlabelled blocks, the rest labelled; single-slide
    patients: the first half study C (labels that collide with the labelled study's), the rest demos."""
    slides: dict[int, int] = {}
    for row in plan:
        slides[row["patient"]] = slides.get(row["patient"], 0) + 1
    multi = [p for p, n in sorted(slides.items()) if n >= 2]
    single = [p for p, n in sorted(slides.items()) if n == 1]
    if len(multi) < 3 or len(single) < 2:
        raise ValueError(f"a rehearsal needs >= 3 patients with 2+ slides and >= 2 with one slide; the preset gives "
                         f"{len(multi)} and {len(single)}")
    roles = {multi[-1]: "duplicated_section"}
    others = multi[:-1]
    half = (len(others) + 1) // 2
    roles.update({p: "unlabelled" for p in others[:half]})
    roles.update({p: "labelled" for p in others[half:]})
    half = (len(single) + 1) // 2
    roles.update({p: "study_c" for p in single[:half]})
    roles.update({p: "demo" for p in single[half:]})
    return roles


def _real_metadata(sim: dict, kind: str, rank: int, replicate: int, sample_id: str, k: int) -> dict:
    """The simulator's metadata row relabelled as the kind's study would have it in HEST."""
    meta = dict(sim["meta"], id=sample_id, license="simulated rehearsal data", disease_comment="rehearsal",
                hest_version_added="stflib-rehearsal")
    # real images differ in size; unique sizes keep the duplicate-section rule (same size and spot count) exact
    meta["fullres_px_width"] = int(meta["fullres_px_width"]) + 7 * k
    meta["fullres_px_height"] = int(meta["fullres_px_height"]) + 5 * k
    if kind == "unlabelled":
        meta.update(dataset_title="Rehearsal atlas (COLON MAP-like)", patient=None,
                    subseries=f"{7001 + 37 * rank}_RH_{replicate + 1}")
    elif kind == "labelled":
        meta.update(dataset_title="Rehearsal study Z (labelled patients)", patient=f"Patient {rank + 1}",
                    subseries=f"A{100000 + 7919 * rank}_Rep{replicate + 1}")
    elif kind == "study_c":
        meta.update(dataset_title="Rehearsal study C (Ensembl ids)", patient=f"Patient {rank + 1}", subseries=None)
    elif kind == "demo":
        meta.update(dataset_title=f"Rehearsal demo section {rank + 1}", patient=None, subseries=None)
    else:  # duplicated_section: set by the caller per copy
        meta.update(patient=None, subseries=None)
    return meta


def _anndata(counts, barcodes, genes, sim: dict, symbols=None):
    """A real-looking st AnnData: raw counts, Visium obs columns, ``obsm['spatial']``, no simulator truth."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    obs_cols = ["in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]
    obs = sim["adata"].obs[obs_cols].copy()
    obs.index = pd.Index(barcodes)
    var = pd.DataFrame(index=pd.Index(genes))
    if symbols is not None:
        var["gene_symbols"] = symbols
    adata = ad.AnnData(X=sp.csr_matrix(counts, dtype=np.float32), obs=obs, var=var)
    adata.obsm["spatial"] = np.asarray(sim["adata"].obsm["spatial"], np.float64)
    return adata


def _ensembl(adata, rng: np.random.Generator):
    """Ensembl-shaped var_names with ``var['gene_symbols']``; one gene's counts split over two ids."""
    import scipy.sparse as sp

    symbols = np.asarray(adata.var_names, dtype=str)
    ids = np.array([f"ENSG{100000 + 7 * i:011d}" for i in range(len(symbols))])
    counts = sp.csr_matrix(adata.X)
    n = counts.shape[0]
    split = int(np.argmax(np.asarray(counts.sum(0)).ravel()))  # the most expressed gene: the split is visible
    column = counts[:, split].toarray().ravel().astype(np.int64)
    part = rng.binomial(column, 0.5).astype(np.float32)
    moved = sp.csr_matrix((part, (np.arange(n), np.full(n, split))), shape=counts.shape)
    counts = counts - moved
    counts.eliminate_zeros()
    counts = sp.hstack([counts, sp.csr_matrix(part[:, None])]).tocsr()
    extra_id = f"ENSG{100000 + 7 * len(symbols):011d}"
    return (counts, np.append(ids, extra_id), np.append(symbols, symbols[split])), str(symbols[split])


def _mouse_symbol(symbol: str) -> str:
    return "mt-" + symbol[3:].capitalize() if symbol.upper().startswith("MT-") else symbol.capitalize()


def _write_sample(out: Path, adata, meta: dict, sim: dict, backbone: str, rng: np.random.Generator,
                  drop_patches: float, drop_features: float) -> dict:
    """st, patches (blank images), features and metadata json of one sample; returns the barcodes dropped."""
    import h5py

    from stflib.sim.patches import PATCH_PX

    sid = meta["id"]
    for sub in ("st", "patches", "metadata", f"features/{backbone}"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(out / "st" / f"{sid}.h5ad", compression="gzip", compression_opts=1)
    barcodes = np.asarray(adata.obs_names, dtype=str)
    n = len(barcodes)
    no_patch, no_feature = np.zeros(n, bool), np.zeros(n, bool)
    no_patch[rng.choice(n, int(np.ceil(drop_patches * n)), replace=False)] = True  # >= 1 barcode when asked
    no_feature[rng.choice(np.flatnonzero(~no_patch), int(np.ceil(drop_features * n)), replace=False)] = True
    no_feature |= no_patch  # features are extracted from the patches
    patch_rows = rng.permutation(np.flatnonzero(~no_patch))  # HEST promises no order
    centres = np.asarray(adata.obsm["spatial"], np.float64)
    with h5py.File(out / "patches" / f"{sid}.h5", "w") as f:
        # blank images: declared, never written (h5py stores no chunk and reads zeros)
        f.create_dataset("img", shape=(len(patch_rows), PATCH_PX, PATCH_PX, 3), dtype=np.uint8,
                         chunks=(1, PATCH_PX, PATCH_PX, 3), compression="gzip")
        f.create_dataset("coords", data=np.round(centres[patch_rows] - PATCH_PX / 2).astype(np.int64))
        f.create_dataset("barcode", data=np.array([b.encode() for b in barcodes[patch_rows]], dtype="S").reshape(-1, 1))
        f.attrs["rehearsal_blank_images"] = True
    feats = sim["features"][backbone]
    keep = np.flatnonzero(~no_feature)
    with h5py.File(out / "features" / backbone / f"{sid}.h5", "w") as f:
        f.create_dataset("features", data=feats[keep], compression="gzip", compression_opts=1,
                         chunks=(min(256, max(1, len(keep))), feats.shape[1]))
        f.create_dataset("barcodes", data=np.array([b.encode() for b in barcodes[keep]], dtype="S"))
        f.create_dataset("coords", data=centres[keep])
        f.attrs["backbone"] = backbone
        f.attrs["feature_dim"] = int(feats.shape[1])
        f.attrs["simulated"] = True
    (out / "metadata" / f"{sid}.json").write_text(json.dumps(meta, indent=1, default=float))
    return {"no_patch": barcodes[no_patch].tolist(), "no_feature_only": barcodes[no_feature & ~no_patch].tolist()}


def rehearse_cohort(out: str | Path, preset="full", seed: int = 0, backbone: str = "h-optimus-0",
                    world: str = "default", verbose: bool = False) -> Path:
    """Write the rehearsal folder (module docstring) into ``out``; returns ``out``. ``preset``: a name of
    ``stflib.sim.PRESETS`` or a ``Preset`` (tests use a small one). Deterministic by ``seed``."""
    import pandas as pd

    from stflib.sim import BACKBONES, HEST_COLUMNS, PRESETS, WORLDS, Preset, simulate_slide, visium_array
    from stflib.sim.cohort import _cohort_plan  # the simulator's own patient and slide plan

    spec = preset if isinstance(preset, Preset) else PRESETS[preset]
    preset_name = preset if isinstance(preset, str) else "custom"
    BACKBONES[backbone], WORLDS[world]  # unknown names raise here, naming the registered ones
    out = Path(out)
    if (out / "metadata.csv").exists():
        raise FileExistsError(f"{out} already holds a cohort (metadata.csv); choose an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    plan = _cohort_plan(spec, seed)
    roles = slide_roles(plan)
    rank_of: dict[int, int] = {}
    for p in sorted(roles):
        rank_of[p] = sum(1 for q in rank_of if roles[q] == roles[p])
    grid = visium_array()
    rng = np.random.default_rng([seed, 35])
    rows, quirks = [], {"preset": preset_name, "seed": seed, "backbone": backbone, "world": world,
                        "groups": {}, "ensembl": {}, "mouse": [], "missing_patches": {}, "missing_features": {},
                        "duplicated_section": [], "targeted_panel_genes": 0}
    t0 = time.time()
    first_copy: dict = {}
    for k, slide in enumerate(plan):
        kind = roles[slide["patient"]]
        sid = f"{ID_PREFIX[kind]}{k:03d}"
        if kind == "duplicated_section" and slide["replicate"] >= 1:
            sim, meta = first_copy["sim"], dict(first_copy["meta"], id=sid)
            meta["dataset_title"] = "Rehearsal colorectal section: targeted gene panel"
            counts, genes = _targeted_panel(sim, rng)
            meta["nb_genes"] = len(genes)
            quirks["targeted_panel_genes"] = len(genes)
            adata = _anndata(counts, sim["barcodes"], genes, sim)
        else:
            sim = simulate_slide(slide, seed, preset_name, grid=grid,
                                 with_patches=False, backbones=[backbone], world=world)
            meta = _real_metadata(sim, kind, rank_of[slide["patient"]], slide["replicate"], sid, k)
            adata = _anndata(sim["adata"].X, sim["barcodes"], np.asarray(sim["adata"].var_names, str), sim)
            if kind == "duplicated_section":
                meta["dataset_title"] = "Rehearsal colorectal section: whole transcriptome"
                first_copy = {"sim": sim, "meta": meta}
            if kind == "study_c":
                (counts, ids, symbols), split_symbol = _ensembl(adata, rng)
                adata = _anndata(counts, sim["barcodes"], ids, sim, symbols=symbols)
                quirks["ensembl"][sid] = split_symbol
        if kind == "duplicated_section":
            quirks["duplicated_section"].append(sid)
        drop_p = DROPPED_PATCH_SHARE if k % MISSING_EVERY == 1 else 0.0
        drop_f = DROPPED_FEATURE_SHARE if k % MISSING_EVERY == 3 else 0.0
        dropped = _write_sample(out, adata, meta, sim, backbone, rng, drop_p, drop_f)
        if dropped["no_patch"]:
            quirks["missing_patches"][sid] = dropped["no_patch"]
        if dropped["no_feature_only"]:
            quirks["missing_features"][sid] = dropped["no_feature_only"]
        quirks["groups"][sid] = f"{kind} {rank_of[slide['patient']]}"
        rows.append(meta)
        if verbose:
            print(f"  {sid} ({kind}): {meta['spots_under_tissue']} spots ({time.time() - t0:.0f} s)", flush=True)
    for j in range(N_MOUSE):
        rows.append(_write_mouse(out, spec, seed, j, len(plan) + j, grid, backbone, world, rng))
        quirks["mouse"].append(rows[-1]["id"])
    pd.DataFrame(rows, columns=HEST_COLUMNS).to_csv(out / "metadata.csv", index=False)
    (out / "rehearsal.json").write_text(json.dumps(quirks, indent=1))
    return out


def _targeted_panel(sim: dict, rng: np.random.Generator):
    """The section sequenced again with a targeted panel: marker genes plus ``PANEL_FRACTION`` of the
    others (every k-th), counts thinned (a second library of the same spots)."""
    import scipy.sparse as sp

    genes = np.asarray(sim["adata"].var_names, dtype=str)
    gene_class = np.asarray(sim["adata"].var["gene_class"], dtype=str)
    step = int(round(1 / PANEL_FRACTION))
    keep = (gene_class == "marker") | (np.arange(len(genes)) % step == 0)
    counts = sp.csr_matrix(sim["adata"].X)[:, np.flatnonzero(keep)].tocsr()
    counts.data = rng.binomial(counts.data.astype(np.int64), 0.8).astype(np.float32)
    counts.eliminate_zeros()
    return counts, genes[keep]


def _write_mouse(out: Path, spec, seed: int, j: int, k: int, grid, backbone: str, world: str,
                 rng: np.random.Generator) -> dict:
    """A small mouse section (mouse-cased symbols, species Mus musculus, no oncotree code)."""
    from stflib.sim import simulate_slide

    slide = dict(id=f"SIM{900 + j:03d}", patient=spec.n_patients + j, replicate=0, oncotree="COAD",
                 n_spots=int(spec.spots[0]), lib_median=6000.0, study=0)
    sim = simulate_slide(slide, seed, "tiny", grid=grid, with_patches=False, backbones=[backbone], world=world)
    sid = f"{ID_PREFIX['mouse']}{k:03d}"
    meta = dict(sim["meta"], id=sid, species="Mus musculus", oncotree_code=None, disease_state="Healthy",
                dataset_title="Rehearsal mouse colon (DSS recovery)", patient=None, subseries=f"Colon DSS day{7 * j}",
                tissue="Colon", license="simulated rehearsal data", hest_version_added="stflib-rehearsal")
    meta["fullres_px_width"] = int(meta["fullres_px_width"]) + 7 * k
    genes = np.array([_mouse_symbol(g) for g in np.asarray(sim["adata"].var_names, str)])
    adata = _anndata(sim["adata"].X, sim["barcodes"], genes, sim)
    _write_sample(out, adata, meta, sim, backbone, rng, 0.0, 0.0)
    return meta


# --------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    from stflib.sim import PRESETS

    parser.add_argument("--out", required=True, help="output folder (HEST-1k layout; must not hold a cohort yet)")
    parser.add_argument("--preset", default="full",
                        help=f"cohort size: {', '.join(f'{k} ({v.n_slides} slides)' for k, v in PRESETS.items())}")
    parser.add_argument("--seed", type=int, default=0, help="cohort seed (deterministic)")
    parser.add_argument("--backbone", default="h-optimus-0", help="the stand-in features written (params/hest's backbone)")
    parser.add_argument("--world", default="default", help="simulator world of the slides")


def run(args: argparse.Namespace) -> int:
    t0 = time.time()
    try:
        out = rehearse_cohort(args.out, preset=args.preset, seed=args.seed, backbone=args.backbone, world=args.world,
                              verbose=True)
    except (ValueError, FileExistsError) as err:
        print(f"error: {err}")
        return 2
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"done in {time.time() - t0:.0f} s; {size / 1e6:.0f} MB in {out}; quirks by sample in {out / 'rehearsal.json'}")
    print(f"try: python -m stflib ablate params/hest/log_transform --folds 3 --results <dir> "
          f"--set data_dir={out} --set device=cpu --dry-run")
    return 0
