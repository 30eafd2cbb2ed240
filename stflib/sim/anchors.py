"""The real figures the simulator's worlds are calibrated and accepted against (``stflib.sim.truth``):
HEST-Bench's published bowel range per encoder, STFlow's context gain, the depth and study confounds
measured on HEST-1k bowel slides, and each world's acceptance figures (``ACCEPTANCE``).
"""
from __future__ import annotations

# HEST-Bench ridge leaderboard (mahmoodlab/HEST README, "HEST-Benchmark results (08.30.24)": PCA-256 ridge,
# mean PCC over 50 HVGs): (READ, COAD) per encoder. Hibou has no published HEST-Bench figure: its stand-ins
# take the range of the published encoder of the same size and training kind (marked as a proxy).
HEST_BENCH_BOWEL: dict[str, tuple[float, float, str]] = {
    "resnet50": (0.0812, 0.2528, "HEST-Bench ridge 08.30.24: ResNet50 READ 0.081, COAD 0.253"),
    "ctranspath": (0.1100, 0.2285, "HEST-Bench ridge 08.30.24: CTransPath READ 0.110, COAD 0.229"),
    "phikon": (0.1517, 0.2585, "HEST-Bench ridge 08.30.24: Phikon READ 0.152, COAD 0.259"),
    "hibou-b": (0.1517, 0.2585, "no published figure; proxy: Phikon (ViT-B, self-supervised on pathology)"),
    "hibou-l": (0.1860, 0.3010, "no published figure; proxy: GigaPath (ViT-L class, self-supervised on pathology)"),
    "gigapath": (0.1860, 0.3010, "HEST-Bench ridge 08.30.24: GigaPath READ 0.186, COAD 0.301"),
    "h-optimus-0": (0.2292, 0.2991, "HEST-Bench ridge 08.30.24: H-Optimus-0 READ 0.229, COAD 0.299"),
    "h-optimus-1": (0.2420, 0.3200, "Bioptimus H-optimus-1 release, HEST benchmark: READ 0.242, COAD 0.320 "
                    "(vendor figures, not on HEST-Bench's 08.30.24 leaderboard)"),
    "uni": (0.1762, 0.2630, "HEST-Bench ridge 08.30.24: UNI READ 0.176, COAD 0.263"),
    "uni2-h": (0.2240, 0.2925, "no published figure; proxy: UNIv1.5 on HEST-Bench ridge 08.30.24 (READ 0.224, "
               "COAD 0.293), MahmoodLab's pre-release of the UNI2 line"),
    "plip": (0.0812, 0.2528, "no ridge figure; proxy: ResNet50's (HEST-Bench ridge 08.30.24), the encoder PLIP is "
             "closest to on HEST-Bench's random-forest bowel figures (06.24.24: PLIP READ 0.063, COAD 0.112; "
             "ResNet50 0.051, 0.107)"),
}
BOWEL_TOLERANCE = 0.03  # "between its READ and its COAD figure, give or take 0.03"
CONTEXT_GAIN_RANGE = (0.10, 0.20)  # STFlow (Huang et al., ICML 2025): about +18 % relative over spot probes
CONTEXT_GAIN_SOURCE = "STFlow (Huang et al., ICML 2025): spatial context about +18 % relative over spot-only probes"
FOUNDATION_MODELS = ("ctranspath", "phikon", "hibou-b", "hibou-l", "gigapath")

# Real-data confounds (upstream SpatialTranscriptFormer, 73 HEST-1k bowel Visium slides).
DEPTH_ANCHORS = {"depth_pc1_abs_r": (0.93, "median |r(PC1 of Hallmark scores, log total counts)| over slides"),
                 "depth_morans_i": (0.76, "median Moran's I of sequencing depth over slides")}
STUDY_ANCHORS = {"study_accuracy": (0.985, "study predicted from CTransPath features"),
                 "cross_study_ratio": (0.19 / 0.28, "H-Optimus-0 ridge: 0.19 across studies / 0.28 within")}

NEIGHBOURHOODS = (6, 18, 60)

# The figures each world exists for: (figure, ">=" or "<=", threshold, why).
ACCEPTANCE: dict[str, list[tuple[str, str, float, str]]] = {
    "long-range-context": [
        ("share_context", ">=", 0.10, "context terms carry >= 10 % of the evaluated genes' variance"),
        ("linear_sufficiency_gap", ">=", 0.03, "a linear read-out of local means misses >= 0.03 PCC"),
    ],
    "pathway-visible": [
        ("observable_share", ">=", 0.60, "observable share of pathway activity >= 60 %"),
        ("patient_share", "<=", 0.20, "patient offsets <= 20 % of pathway activity"),
        ("share_pathway", ">=", 0.20, "pathway programmes >= 20 % of the evaluated genes' variance"),
    ],
    "no-context": [
        ("share_context", "<=", 0.005, "no context biology: context terms carry no variance"),
        ("linear_sufficiency_gap", "<=", 0.01, "nothing beyond the local latent to find"),
    ],
    "depth-confounded": [
        ("depth_pc1_abs_r", ">=", 0.80, "depth drives the shared Hallmark component (anchor 0.93)"),
        ("depth_morans_i", ">=", 0.60, "depth is spatially autocorrelated (anchor 0.76)"),
    ],
    "study-shift": [
        ("study_accuracy", ">=", 0.90, "the study is predictable from the features (anchor 98.5 %)"),
        ("cross_study_ratio", "<=", 0.85, "a probe from other studies loses PCC (anchor 0.68)"),
    ],
}
