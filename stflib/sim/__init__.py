"""The simulator: a colorectal-cancer Visium cohort in HEST-1k layout, with known ground truth.

Real HEST-1k cannot be downloaded here, so every notebook's default data is this simulator's output:
``python -m stflib simulate --out DIR [--preset tiny|default|full] [--seed N] [--world NAME]`` or,
from Python, ``default_cohort(preset, seed, world)`` (generated once into ``$STFLIB_CACHE`` or
``~/.cache/stflib``, one folder per world, ``cohort_name``).

Worlds (``WORLDS``): the named, frozen assumptions that decide what can be found. ``default`` is
calibrated against real anchors (each stand-in's ridge probe inside HEST-Bench's published bowel range
for its encoder; STFlow's +10-20 % relative gain of spatial context over spot-only probes);
``pathway-misspecified`` puts most expression variance on non-Hallmark programmes; ``no-context`` turns
the context fields off (the negative control for context biology); ``strong-patient`` makes patient
effects 2.5x larger; ``long-range-context`` (the positive control for spatial interaction) adds
programmes that a local mean cannot form; ``pathway-visible`` (the positive control for named
pathway tokens) makes most pathway activity observable; ``depth-confounded`` and ``study-shift`` carry
the real-data confounds measured on HEST-1k bowel slides. ``stflib.sim.truth`` measures, on each
world's truth and before any model, what it lets a model find (``python -m stflib truth``), and checks
each world's acceptance figures (``truth.ACCEPTANCE``); ``stflib.sim.calibration`` holds the probes.

What is simulated (per slide; all fields live on the real Visium v1 array, 100 um pitch, 55 um spots)
--------------------------------------------------------------------------------------------------
1. **Tissue**: a lobed outline on the 78 x 64 hex grid (the real barcode grid from
   ``hest/visium-v1_coordinates.txt`` under ``$STFLIB_DATA`` (``stflib.paths``) when present, else the same grid with
   deterministic synthetic barcodes; the simulation itself is identical either way).
2. **Compartments** (``COMPARTMENTS``: tumour, stroma, immune aggregate, normal mucosa, muscle,
   necrosis) as a softmax of smooth Gaussian random fields: tumour masses with necrosis in their
   cores, mucosa away from tumour, a muscularis band along one edge, small lymphoid aggregates.
3. **Cell types** (``CELL_TYPES``, 10): each compartment is a mixture of cell types, with per-spot
   multiplicative noise -> per-spot composition (rows sum to 1).
4. **Spatial context** (``CONTEXTS``): Gaussian-smoothed neighbourhood fields - tumour-stroma
   interface, tumour depth, immune and necrosis proximity. They are NOT visible in a spot's own
   patch: only neighbouring spots reveal them.
5. **50 Hallmark pathway activities** = composition loadings + context loadings (EMT/TGF-beta at the
   interface, hypoxia/glycolysis deep in tumour and near necrosis, interferon/inflammatory around
   immune aggregates, E2F/G2M/MYC in tumour, ...) + long-range fields where the world has them
   (``LONG_RANGE_CONTEXTS``) + patient and slide offsets + smooth noise (300 um) + a little spot
   noise; each part is kept (``activity_parts``) so the truth report can split variance by driver.
6. **Expression** for ~5.7k real gene symbols (all Hallmark genes, compartment markers, 13 MT-
   genes, ribosomal RPL/RPS genes, background genes from real symbol families):
   rate[s, g] = sum_c composition[s, c] * exp(baseline[g] + celltype_loading[g, c])
   * exp(sum_p pathway_loading[g, p] * activity[s, p]); expected counts = library size[s] *
   rate / sum_g rate; counts ~ zero-inflated negative binomial (gene-wise theta and dropout).
   Library sizes: slide median 4k-14k UMIs, composition effects (necrosis, muscle low), smooth field.
7. **Patches**: 224 x 224 px at 0.5 um/px (112 um), rendered at 1 um/px and upsampled: nuclei
   splatted by cell type (large pale epithelial, small dark lymphocytes, spindle stromal/muscle,
   karyorrhectic debris), gland lumens, eosin by compartment, Beer-Lambert H&E colour with
   per-slide stain vectors and intensity.
8. **Stand-in features** per backbone name (``BACKBONES[name].stand_in``, part of each backbone's one spec): latent morphology of the spot's OWN
   patch = [composition, 8 morphologically visible pathways (proliferation: E2F and G2M, EMT,
   hypoxia, inflammation, apoptosis, angiogenesis, interferon-gamma)] + noise of scale
   ``BACKBONES[name].stand_in.noise`` (the information level) made of three parts (``World``): i.i.d.
   per-spot noise (neighbour averaging removes it), spatially smooth fields (300 um) and one offset
   per slide (neighbour averaging keeps both; shared by all backbones of a slide, like stain and
   section effects), plus nuisance (slide stain 3 dims, spot
   focus/thickness 2 dims) -> a fixed random 2-layer tanh map -> width D, + output noise.
   Noise levels follow HEST-Bench's encoder ranking: gigapath ~ hibou-l < hibou-b ~ phikon ~
   ctranspath < resnet50. These are NOT real embeddings of the patches: they are stand-ins with a
   controlled information content. Real features come from ``stflib.features`` on the patches.

The "biology" (gene baselines and loadings, pathway rules, feature maps) is fixed
(``BIOLOGY_SEED``); ``seed`` draws the cohort (patients, tissues, noise, counts).

Modules, in the order the data flows
------------------------------------
``worlds`` (``PRESETS``, ``WORLDS``; the stand-ins are read from ``stflib.backbones.BACKBONES``) -> ``genes`` (the gene catalogue) -> ``biology``
(the fixed loadings, ``biology()``) -> ``tissue`` (array, fields, tissue, activities, counts) ->
``standin`` (stand-in features) and ``patches`` (rendered H&E) -> ``cohort`` (one slide assembled
and written, the cohort, its cache, the CLI); ``calibration`` measures a cohort against real anchors;
``truth`` reports each world's truth (variance shares, observability, the linear-sufficiency gap,
confound figures, the stand-ins' calibration).
A cached cohort is keyed by ``simulator_fingerprint()``, a hash of every module of this package and of
every backbone's stand-in.
"""
from .biology import BIOLOGY_SEED, CELL_TYPES, COMPARTMENTS, CONTEXTS, LONG_RANGE_CONTEXTS, Biology, biology
from .cohort import (COMPLETE_MARKER, HEST_COLUMNS, SIMULATOR_VERSION, cache_dir, cohort_name, default_cohort,
                     simulate_cohort, simulate_slide, simulator_fingerprint, write_slide)
from .genes import gene_catalogue
from .patches import render_patches
from .standin import latent_morphology, stand_in_features, structured_noise
from .tissue import programme_log_modulation, visium_array
from .worlds import BACKBONES, PRESETS, WORLDS, BackboneSpec, Preset, StandIn, World

__all__ = ["BACKBONES", "BIOLOGY_SEED", "CELL_TYPES", "COMPARTMENTS", "COMPLETE_MARKER", "CONTEXTS", "HEST_COLUMNS",
           "LONG_RANGE_CONTEXTS",
           "PRESETS", "SIMULATOR_VERSION", "WORLDS", "BackboneSpec", "Biology", "Preset", "StandIn", "World", "biology",
           "cache_dir", "cohort_name", "default_cohort", "gene_catalogue", "latent_morphology",
           "programme_log_modulation", "render_patches", "simulate_cohort", "simulate_slide", "simulator_fingerprint",
           "stand_in_features", "structured_noise", "visium_array", "write_slide"]
