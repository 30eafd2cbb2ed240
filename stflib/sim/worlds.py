"""The simulator's named, frozen choices: cohort sizes (``PRESETS``), stand-in backbones
(``BACKBONES``: width and information level of each foundation model's stand-in features) and worlds
(``WORLDS``: the assumptions that decide what can be found in a cohort)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    n_patients: int
    n_slides: int
    spots: tuple[int, int]  # range of spots under tissue per slide
    gzip_level: int = 4


PRESETS: dict[str, Preset] = {
    "tiny": Preset(n_patients=3, n_slides=4, spots=(100, 150), gzip_level=1),
    "default": Preset(n_patients=12, n_slides=16, spots=(500, 700)),
    "full": Preset(n_patients=34, n_slides=55, spots=(2500, 3600)),
}


@dataclass(frozen=True)
class BackboneSpec:
    dim: int
    noise: float  # std of the Gaussian noise on the standardised latent morphology (information level)
    stain_sensitivity: float  # gain on slide stain / spot nuisance dims
    out_noise: float  # iid noise on the output features


# Information content ordered like HEST-Bench (Jaume et al. 2024): gigapath ~ hibou-l > hibou-b ~
# phikon ~ ctranspath > resnet50 (ImageNet). Calibrated on the default preset, see calibration.py.
BACKBONES: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec(2048, 1.60, 1.2, 0.30),
    "ctranspath": BackboneSpec(768, 1.00, 0.7, 0.20),
    "phikon": BackboneSpec(768, 0.95, 0.6, 0.20),
    "hibou-b": BackboneSpec(768, 0.95, 0.6, 0.20),
    "hibou-l": BackboneSpec(1024, 0.80, 0.5, 0.20),
    "gigapath": BackboneSpec(1536, 0.78, 0.5, 0.20),
}


@dataclass(frozen=True)
class World:
    """The simulator's named assumptions (frozen): what can be found in a cohort is decided here.

    Feature noise on the standardised latent morphology is ``BACKBONES[name].noise`` times the sum of
    three parts with these weights: ``noise_spot`` (i.i.d. per spot and per backbone: neighbour
    averaging removes it), ``noise_smooth`` (a Gaussian random field of correlation length
    ``noise_length_um`` per latent dimension, shared by all backbones: section thickness, fixation and
    staining gradients; neighbour averaging keeps it) and ``noise_slide`` (one offset per slide and
    latent dimension: batch/stain effects that no neighbourhood removes).
    """

    description: str
    noise_spot: float = 0.7
    noise_smooth: float = 0.5
    noise_slide: float = 0.25
    noise_length_um: float = 300.0
    context_scale: float = 1.0  # 0: the context fields (and so their pathway effects) are off
    patient_scale: float = 1.0  # multiplies the patient effects (tumour/immune bias, pathway offsets)
    hallmark_scale: float = 1.0  # multiplies the Hallmark pathway loadings of the genes
    hidden_programmes: int = 0  # programmes on non-Hallmark gene sets (not among the 50 named pathways)
    hidden_scale: float = 0.0  # loading scale of those programmes
    anchor: str = ""  # the real figure this world is calibrated against, with its source


WORLDS: dict[str, World] = {
    "default": World(
        "the calibrated world: structured feature noise so that a ridge probe on [own, mean of 6 nearest "
        "neighbours] gains +10-20 % relative over own features (resnet50 stand-in), as STFlow (ICML 2025) "
        "reports for spatial context over spot-only probes on HEST-Bench; own-feature probes in HEST-Bench's "
        "0.25-0.45 range",
        anchor="HEST-Bench (Jaume et al. 2024) ridge probes 0.25-0.45; STFlow (Huang et al., ICML 2025) about +18 %"),
    "pathway-misspecified": World(
        "most expression variance comes from 24 programmes on random non-Hallmark gene sets (composition-linked "
        "and spatially smooth); the Hallmark loadings are scaled by 0.4: a Hallmark prior names the wrong sets",
        hallmark_scale=0.4, hidden_programmes=24, hidden_scale=1.0,
        anchor="stress test without a real anchor: the 50 Hallmarks (4,383 genes) are a prior, not a measured fact"),
    "no-context": World(
        "the spatial context fields are zero: a spot's expression depends on its own composition, patient, "
        "slide and smooth noise only, so neighbourhood models can only denoise",
        context_scale=0.0, anchor="null world (no designed context biology)"),
    "strong-patient": World(
        "patient effects 2.5x the default (tumour and immune bias, pathway offsets): inter-patient variation "
        "dominates, as between real HEST-1k CRC patients",
        patient_scale=2.5, anchor="stress test without a measured anchor: real between-patient spread is not measured here"),
}


def check_world(world: str) -> World:
    """The ``World`` named ``world``; an error naming the allowed worlds otherwise."""
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}; allowed: {', '.join(WORLDS)}")
    return WORLDS[world]


def check_preset(preset: str) -> Preset:
    """The ``Preset`` named ``preset``; an error naming the allowed presets otherwise."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[preset]
