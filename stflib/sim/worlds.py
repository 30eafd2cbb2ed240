"""The simulator's named, frozen choices: cohort sizes (``PRESETS``) and worlds (``WORLDS``: the
assumptions that decide what can be found in a cohort), each a :class:`~stflib.registry.Registry`.

The stand-in features of each backbone (width and information level) are part of that backbone's one
spec, ``stflib.backbones.BACKBONES[name].stand_in``; ``BACKBONES`` is re-exported here for the simulator.
"""
from __future__ import annotations

from dataclasses import dataclass

from stflib.backbones.specs import BACKBONES, BackboneSpec, StandIn  # noqa: F401  (the simulator reads the stand-ins)
from stflib.registry import Registry


@dataclass(frozen=True)
class Preset:
    n_patients: int
    n_slides: int
    spots: tuple[int, int]  # range of spots under tissue per slide
    gzip_level: int = 4


PRESETS: Registry[Preset] = Registry("preset")
PRESETS.register("tiny", Preset(n_patients=3, n_slides=4, spots=(100, 150), gzip_level=1))
PRESETS.register("small", Preset(n_patients=6, n_slides=6, spots=(350, 450), gzip_level=1))  # world-property tests
PRESETS.register("default", Preset(n_patients=12, n_slides=16, spots=(500, 700)))
PRESETS.register("full", Preset(n_patients=34, n_slides=55, spots=(2500, 3600)))


# what a world is for when a finding is read through the worlds (``stflib.report.controls``):
# the reference the grid runs in full; a negative control removes (or weakens) one biology, so a finding
# that survives there does not come from it; a positive control makes one biology strong and visible, so
# a finding there says the model can use it when it exists; a confound adds a real-data nuisance a
# finding could ride on; a stress test changes the cohort's difficulty without switching biology on or off
WORLD_ROLES = ("reference", "negative control", "positive control", "confound", "stress test")
# the biologies the controls switch (``World.about``), in words for the generated sentences
CONTROLLED_BIOLOGY = {
    "context": "spatial context biology (the neighbourhood's effect on a spot's pathway activity)",
    "pathways": "Hallmark pathway programmes",
}


@dataclass(frozen=True)
class World:
    """The simulator's named assumptions (frozen): what can be found in a cohort is decided here.

    Feature noise on the standardised latent morphology is ``BACKBONES[name].stand_in.noise`` times the sum of
    three parts with these weights: ``noise_spot`` (i.i.d. per spot and per backbone: neighbour
    averaging removes it), ``noise_smooth`` (a Gaussian random field of correlation length
    ``noise_length_um`` per latent dimension, shared by all backbones: section thickness, fixation and
    staining gradients; neighbour averaging keeps it) and ``noise_slide`` (one offset per slide and
    latent dimension: batch/stain effects that no neighbourhood removes).

    Biology beyond the default (each 0 = off, so the default world draws no extra random numbers):
    ``long_range_scale`` the long-range context programmes (``stflib.sim.biology.LONG_RANGE_RULES``:
    distance to the tumour-stroma boundary saturating at 1.5 mm, tertiary lymphoid structures with an
    IFN-gamma field decaying over 300-800 um, own tumour content x immune density within 0.5 mm, an
    immune hot/cold state per slide); ``pathway_noise_scale`` multiplies the pathway activity that no
    input carries (slide offsets, smooth and spot noise; patient offsets follow ``patient_scale``).
    Real-data confounds: ``depth_field`` / ``depth_length_um`` the smooth log library-size field,
    ``depth_capture`` a gene-wise capture sensitivity to depth (log rate += gamma_g x centred log depth);
    ``n_studies`` studies (patients nested in them) with ``study_feature_shift`` (a per-study shift of
    the image features' input: stain, scanner, protocol), ``study_feature_mixing`` (a per-study linear
    mixing of what the features read from the latent, so the feature geometry differs between studies) and
    ``study_expression_shift`` (a per-study
    perturbation of every cell type's gene profile: chemistry and protocol, so the morphology-to-
    expression map differs between studies).

    ``role`` (one of ``WORLD_ROLES``) and ``about`` (a key of ``CONTROLLED_BIOLOGY``, for a negative or
    positive control: the biology it removes or makes visible) say how a finding reads in this world;
    ``controls`` says the same in words.
    """

    description: str
    noise_spot: float = 0.62
    noise_smooth: float = 0.5
    noise_slide: float = 0.25
    noise_length_um: float = 300.0
    context_scale: float = 1.0  # 0: the context fields (and so their pathway effects) are off
    patient_scale: float = 1.0  # multiplies the patient effects (tumour/immune bias, pathway offsets)
    hallmark_scale: float = 1.0  # multiplies the Hallmark pathway loadings of the genes
    hidden_programmes: int = 0  # programmes on non-Hallmark gene sets (not among the 50 named pathways)
    hidden_scale: float = 0.0  # loading scale of those programmes
    long_range_scale: float = 0.0  # long-range context programmes (0: off)
    pathway_noise_scale: float = 1.0  # multiplies slide offsets, smooth and spot noise of the pathway activities
    depth_field: float = 0.25  # sd of the smooth log library-size field
    depth_length_um: float = 500.0  # its correlation length
    depth_capture: float = 0.0  # sd of the gene-wise capture sensitivity to log depth (0: off)
    n_studies: int = 1  # studies in the cohort (patients are nested in them)
    study_feature_shift: float = 0.0  # sd of a per-study shift of the features' latent input
    study_feature_mixing: float = 0.0  # sd of a per-study linear mixing of the latent (scanner, stain: I + this x N(0, 1/d))
    study_expression_shift: float = 0.0  # sd of a per-study, per gene and cell type log-profile perturbation
    anchor: str = ""  # the real figure this world is calibrated against, with its source
    controls: str = ""  # what the world is a control for, and which findings it can confirm or refute
    role: str = "reference"  # WORLD_ROLES
    about: str = ""  # the biology a control removes or makes visible: a key of CONTROLLED_BIOLOGY

    def __post_init__(self):
        if self.role not in WORLD_ROLES:
            raise ValueError(f"world role {self.role!r}; allowed: {', '.join(WORLD_ROLES)}")
        is_control = self.role in ("negative control", "positive control")
        if is_control != bool(self.about) or (self.about and self.about not in CONTROLLED_BIOLOGY):
            raise ValueError(f"world about {self.about!r} with role {self.role!r}: a negative or positive control "
                             f"names one of {', '.join(CONTROLLED_BIOLOGY)}, any other role none")


WORLDS: Registry[World] = Registry("world")

WORLDS.register("default", World(
    "the calibrated world: structured feature noise so that a ridge probe on [own, mean of 6 nearest "
    "neighbours] gains +10-20 % relative over own features for every stand-in, as STFlow (ICML 2025) "
    "reports for spatial context over spot-only foundation-model probes; each stand-in's own-feature "
    "probe inside HEST-Bench's published bowel range for its encoder (between READ and COAD)",
    anchor="HEST-Bench (Jaume et al. 2024) ridge leaderboard 08.30.24, COAD/READ per encoder; "
           "STFlow (Huang et al., ICML 2025) about +18 % relative",
    controls="reference world; one study, no depth confound beyond composition-driven library size"))

WORLDS.register("pathway-misspecified", World(
    "most expression variance comes from 24 programmes on random non-Hallmark gene sets (composition-linked "
    "and spatially smooth); the Hallmark loadings are scaled by 0.4: a Hallmark prior names the wrong sets",
    hallmark_scale=0.4, hidden_programmes=24, hidden_scale=1.0,
    anchor="stress test without a real anchor: the 50 Hallmarks (4,383 genes) are a prior, not a measured fact",
    controls="negative control for the Hallmark prior (init, auxiliary loss)",
    role="negative control", about="pathways"))

WORLDS.register("no-context", World(
    "the spatial context fields are zero: a spot's expression depends on its own composition, patient, "
    "slide and smooth noise only, so neighbourhood models can only denoise",
    context_scale=0.0, anchor="null world (no designed context biology)",
    controls="negative control for context biology: a context gain that survives here is denoising",
    role="negative control", about="context"))

WORLDS.register("strong-patient", World(
    "patient effects 2.5x the default (tumour and immune bias, pathway offsets): inter-patient variation "
    "dominates, as between real HEST-1k CRC patients",
    patient_scale=2.5, anchor="stress test without a measured anchor: real between-patient spread is not measured here",
    controls="stress test of generalisation to new patients", role="stress test"))

WORLDS.register("long-range-context", World(
    "positive control for spatial interaction: programmes that a local mean cannot form - distance to the "
    "tumour-stroma boundary saturating at 1.5 mm (EMT, TGF-beta, hypoxia), tertiary lymphoid structures "
    "with an IFN-gamma field decaying over 300-800 um, own tumour content x immune density within 0.5 mm "
    "(IFN-gamma response, antigen presentation), an immune hot/cold state per slide seen only as slide-wide "
    "composition; the default's per-spot feature noise is kept, so denoising stays a competing explanation",
    long_range_scale=1.0,
    anchor="motifs: invasive-front EMT/TGF-beta and hypoxic tumour cores (mm scale); TLS-centred IFN-gamma "
           "signalling; immune hot/cold CRC (Galon immunoscore); acceptance on the truth: context >= 10 % of "
           "the evaluated genes' variance, linear-sufficiency gap >= 0.03 PCC",
    controls="positive control for h2h / neighbourhood attention and pathway-mediated communication",
    role="positive control", about="context"))

WORLDS.register("pathway-visible", World(
    "positive control for interpretability: pathway activity mostly observable (composition, context and "
    "visible morphology), patient offsets small, pathway programmes a large share of the evaluated genes",
    patient_scale=0.3, pathway_noise_scale=0.3, hallmark_scale=2.5,
    anchor="acceptance on the truth: observable share of pathway activity >= 60 %, patient offsets <= 20 %, "
           "pathway programmes >= 20 % of the evaluated genes' variance",
    controls="positive control for named pathway tokens (with pathway_sets=permuted as its negative control)",
    role="positive control", about="pathways"))

WORLDS.register("depth-confounded", World(
    "sequencing depth spatially autocorrelated and driving the shared component of Hallmark scores, as on "
    "real HEST-1k bowel Visium slides",
    depth_field=0.6, depth_length_um=700.0, depth_capture=0.35,
    anchor="upstream SpatialTranscriptFormer on 73 HEST-1k bowel Visium slides: median |r(PC1 of Hallmark "
           "scores, log depth)| 0.93; Moran's I of depth 0.76",
    controls="confound: a pathway or context finding that rides on depth", role="confound"))

WORLDS.register("study-shift", World(
    "three studies with batch effects: the study is predictable from the image features and a probe trained "
    "on other studies loses about a third of its within-study PCC",
    n_studies=3, study_feature_shift=1.2, study_feature_mixing=1.0, study_expression_shift=0.5,
    anchor="upstream SpatialTranscriptFormer on HEST-1k bowel: study 98.5 % predictable from CTransPath features; "
           "H-Optimus-0 ridge 0.28 within study, 0.19 across studies",
    controls="confound: between-study shift (leave-one-study-out generalisation)", role="confound"))

