"""MSigDB Hallmark gene sets, gene-membership matrices and the seed's auxiliary pathway targets.

The 50 Hallmark sets (MSigDB v7.5.1, CC BY 4.0, Liberzon et al. 2015) ship with the package so
that ``hallmarks()`` works offline; ``read_gmt`` reads any other GMT a user brings.
``permuted_membership`` is their negative control (run parameter ``pathway_sets="permuted"``): the same
names and sizes with random members.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

HALLMARK_GMT = "h.all.v7.5.1.symbols.gmt"
HALLMARK_SHA256 = "de0fdee38af2611a284973f565df1a98bfa2385aecd7ba2ee3fe51208e753b40"
N_HALLMARKS = 50

# The gene-set memberships a run can name its pathway tokens with (the ``pathway_sets`` parameter):
# ``hallmark``, the 50 MSigDB Hallmark sets; ``permuted``, the negative control (``permuted_membership``).
PATHWAY_SETS = ("hallmark", "permuted")
# ``permuted`` draws its sets with the seed PERMUTATION_SEED + fold (``permutation_seed``): fixed per
# fold, independent of the training ``seed``, so both training seeds of a fold see one permutation.
PERMUTATION_SEED = 7919

# The upstream SpatialTranscriptFormer's colorectal preset: the 14 Hallmarks it names its tokens after
# for CRC (WNT, TGF-beta, KRAS, PI3K and the stroma/immune/stress programmes of the tumour microenvironment)
COLORECTAL_PATHWAYS = (
    "HALLMARK_WNT_BETA_CATENIN_SIGNALING", "HALLMARK_TGF_BETA_SIGNALING", "HALLMARK_KRAS_SIGNALING_UP",
    "HALLMARK_KRAS_SIGNALING_DN", "HALLMARK_PI3K_AKT_MTOR_SIGNALING", "HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION",
    "HALLMARK_ANGIOGENESIS", "HALLMARK_APICAL_JUNCTION", "HALLMARK_INFLAMMATORY_RESPONSE",
    "HALLMARK_IL6_JAK_STAT3_SIGNALING", "HALLMARK_APOPTOSIS", "HALLMARK_P53_PATHWAY", "HALLMARK_DNA_REPAIR",
    "HALLMARK_HYPOXIA",
)
# which named pathways a run keeps (the ``pathway_subset`` parameter): every Hallmark the vocabulary covers,
# or the colorectal preset; None = no restriction
PATHWAY_SUBSETS = {"all": None, "colorectal": COLORECTAL_PATHWAYS}


def read_gmt(path: str | Path) -> dict[str, list[str]]:
    """Read a GMT file: one set per line, ``name<TAB>description<TAB>gene<TAB>gene...``.

    Returns ``{set name: [genes]}`` in file order, genes de-duplicated in order of appearance.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GMT file not found: {path}")
    gene_sets: dict[str, list[str]] = {}
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) < 3:
            raise ValueError(
                f"{path}:{line_no}: a GMT line needs name, description and at least one gene "
                f"separated by tabs; got {len(fields)} field(s)"
            )
        name, genes = fields[0].strip(), [g.strip() for g in fields[2:] if g.strip()]
        if name in gene_sets:
            raise ValueError(f"{path}:{line_no}: gene set {name!r} appears twice")
        gene_sets[name] = list(dict.fromkeys(genes))
    if not gene_sets:
        raise ValueError(f"{path}: no gene sets found")
    return gene_sets


def hallmark_path() -> Path:
    """Path of the packaged Hallmark GMT."""
    return Path(str(resources.files("stflib") / "resources" / HALLMARK_GMT))


def hallmarks(verify: bool = True) -> dict[str, list[str]]:
    """The 50 MSigDB Hallmark gene sets (v7.5.1), read from package data with no network access."""
    path = hallmark_path()
    if verify:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != HALLMARK_SHA256:
            raise RuntimeError(
                f"packaged Hallmark GMT {path} has sha256 {digest}, expected {HALLMARK_SHA256}: "
                "the file is corrupted or was replaced; reinstall stflib"
            )
    sets = read_gmt(path)
    if len(sets) != N_HALLMARKS:
        raise RuntimeError(f"expected {N_HALLMARKS} Hallmark sets in {path}, found {len(sets)}")
    return sets


def short_name(set_name: str) -> str:
    """``HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION`` -> ``EPITHELIAL_MESENCHYMAL_TRANSITION``."""
    return set_name.removeprefix("HALLMARK_")


@dataclass
class Membership:
    """Binary pathway x gene membership restricted to a gene vocabulary.

    ``matrix[p, g] = 1`` when gene ``genes[g]`` belongs to pathway ``names[p]``. Pathways with fewer
    than ``min_genes`` genes in the vocabulary are dropped (listed in ``dropped``) because their
    targets would be dominated by one or two genes.
    """

    matrix: np.ndarray  # (P, G) float32, 0/1
    names: list[str]
    genes: list[str]
    coverage: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (present, in set)
    dropped: list[str] = field(default_factory=list)

    def report(self) -> str:
        """One line per pathway: how many of its genes the vocabulary covers."""
        lines = [f"{len(self.names)} pathways kept, {len(self.dropped)} dropped (too few genes)"]
        for name, (present, total) in self.coverage.items():
            flag = "" if name in self.names else "  (dropped)"
            lines.append(f"  {short_name(name):45s} {present:4d}/{total:<4d}{flag}")
        return "\n".join(lines)


def membership_matrix(
    gene_sets: dict[str, list[str]], genes: list[str] | np.ndarray, min_genes: int = 5
) -> Membership:
    """Build the binary membership of ``gene_sets`` over the vocabulary ``genes``."""
    genes = [str(g) for g in genes]
    index = {g: i for i, g in enumerate(genes)}
    if len(index) != len(genes):
        raise ValueError("gene vocabulary has duplicate symbols")
    rows, names, coverage, dropped = [], [], {}, []
    for name, members in gene_sets.items():
        present = [index[g] for g in members if g in index]
        coverage[name] = (len(present), len(members))
        if len(present) < min_genes:
            dropped.append(name)
            continue
        row = np.zeros(len(genes), dtype=np.float32)
        row[present] = 1.0
        rows.append(row)
        names.append(name)
    if not rows:
        raise ValueError(
            f"no gene set has >= {min_genes} genes in the vocabulary of {len(genes)} genes "
            f"(e.g. {genes[:5]}): are the genes HGNC symbols?"
        )
    return Membership(np.stack(rows), names, genes, coverage, dropped)


def permutation_seed(fold: int) -> int:
    """The seed of a run's ``permuted`` membership: ``PERMUTATION_SEED + fold`` (not the training seed)."""
    return PERMUTATION_SEED + int(fold)


def permuted_membership(membership: Membership, seed: int) -> Membership:
    """The negative control of named pathway tokens: every set keeps its name and its size, its
    members are drawn at random.

    Does a token named after a Hallmark recover that Hallmark's activity because of the genes it was
    tied to (``pathway_init``, the auxiliary pathway target), or would any set of that size do? This
    answers it: row ``p`` keeps ``names[p]`` and its number of member genes in the vocabulary (its
    row sum), but its members are redrawn uniformly without replacement over the vocabulary's
    columns, each row independently (sets may overlap, as Hallmarks do). ``coverage`` and
    ``dropped`` are those of ``membership`` (the sizes and the sets dropped are unchanged).
    Deterministic for a given ``seed`` (runs use ``permutation_seed(fold)``).
    """
    matrix = np.asarray(membership.matrix)
    n_genes = matrix.shape[1]
    rng = np.random.default_rng(seed)
    permuted = np.zeros_like(matrix, dtype=np.float32)
    for p, size in enumerate(np.rint(matrix.sum(1)).astype(int)):
        permuted[p, rng.choice(n_genes, size=size, replace=False)] = 1.0
    return Membership(permuted, list(membership.names), list(membership.genes), dict(membership.coverage),
                      list(membership.dropped))


def pathway_membership(genes: list[str] | np.ndarray, pathway_sets: str = "hallmark", fold: int = 0) -> Membership:
    """A run's pathway membership over its gene vocabulary: the Hallmarks (``hallmark``) or their
    permuted negative control (``permuted``, seeded by ``permutation_seed(fold)``)."""
    membership = membership_matrix(hallmarks(), genes)
    if pathway_sets == "hallmark":
        return membership
    if pathway_sets == "permuted":
        return permuted_membership(membership, permutation_seed(fold))
    raise ValueError(f"pathway_sets: unknown value {pathway_sets!r}; allowed: {', '.join(PATHWAY_SETS)}")


def subset_membership(membership: Membership, subset: str = "all") -> Membership:
    """``membership`` restricted to the rows of ``PATHWAY_SUBSETS[subset]`` (in the membership's order);
    the rows of a permuted membership are its permuted sets under the same names. A subset pathway the
    vocabulary dropped (too few genes) is absent, as it would be from ``all``."""
    if subset not in PATHWAY_SUBSETS:
        raise ValueError(f"pathway_subset: unknown value {subset!r}; allowed: {', '.join(PATHWAY_SUBSETS)}")
    names = PATHWAY_SUBSETS[subset]
    if names is None:
        return membership
    unknown = sorted(set(names) - set(hallmarks()))
    if unknown:
        raise ValueError(f"pathway_subset {subset!r}: {unknown} are not Hallmark names")
    rows = [i for i, n in enumerate(membership.names) if n in names]
    if not rows:
        raise ValueError(f"pathway_subset {subset!r}: none of its {len(names)} pathways has enough genes in the "
                         f"vocabulary (kept: {membership.names[:5]}...)")
    return Membership(np.asarray(membership.matrix)[rows], [membership.names[i] for i in rows], list(membership.genes),
                      {n: c for n, c in membership.coverage.items() if n in names},
                      [n for n in membership.dropped if n in names])


def pathway_targets(
    expression: np.ndarray, membership: np.ndarray, valid: np.ndarray | None = None, eps: float = 1e-6
) -> np.ndarray:
    """The seed's auxiliary pathway targets for one slide.

    1. z-score every gene across the slide's valid spots (so housekeeping genes do not dominate);
    2. project on the binary membership; 3. divide by the number of member genes present
    (a mean, not a sum). Genes with zero variance on the slide contribute 0. Invalid spots get 0.

    expression (S, G), membership (P, G), valid (S,) bool -> targets (S, P) float32.
    """
    expression = np.asarray(expression, dtype=np.float64)
    membership = np.asarray(membership, dtype=np.float64)
    if expression.ndim != 2 or membership.ndim != 2 or expression.shape[1] != membership.shape[1]:
        raise ValueError(
            f"expression (S, G) and membership (P, G) must share G; got {expression.shape} and {membership.shape}"
        )
    valid = np.ones(len(expression), bool) if valid is None else np.asarray(valid, bool)
    if not valid.any():
        return np.zeros((len(expression), len(membership)), np.float32)
    x = expression[valid]
    mean, std = x.mean(0), x.std(0)
    z = np.where(std > eps, (expression - mean) / np.maximum(std, eps), 0.0)
    z[~valid] = 0.0
    counts = membership.sum(1)
    return (z @ membership.T / np.maximum(counts, 1.0)).astype(np.float32)
