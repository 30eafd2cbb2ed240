"""Which attention flows can reach a prediction, and which interaction subsets are the same model.

SpatialTranscriptFormer predicts every spot from its *patch* token: the encoded patch is scored
against pathway tokens (``CosineScorer``) and the scores go to the gene head. A flow whose effect
never reaches an encoded patch token, nor the pathway tokens the patches are scored against,
changes nothing a run reports: switching it on or off gives the same computation, bit for bit
under the same seed (the parameters are created in the same order, the unreached tokens' outputs
get exactly zero gradient, and the patch rows are computed separately from the pathway rows).

What reaches the prediction, by read-out (``ModelConfig.pathway_readout``):

- ``h2h`` (patches read patches) and ``h2p`` (patches read pathway tokens) update the patch tokens,
  so they always reach it.
- ``p2p`` and ``p2h`` update only the pathway tokens. Under the ``contextual`` read-out the patches
  are scored against the encoder's *output* pathway tokens, so both always reach it. Under the
  ``shared`` read-out the patches are scored against the learnable tokens as they *enter* the
  encoder; the encoded pathway tokens can then reach a patch only through ``h2p`` in a later layer:
  ``p2p`` and ``p2h`` reach the prediction only with ``h2p`` and at least two layers.

So under the shared read-out with two layers, ``p2p``, ``p2h`` and ``p2p-p2h`` are one model (patches
read only themselves) and ``h2h``, ``p2p-h2h``, ``p2h-h2h`` and ``p2p-p2h-h2h`` another: the 15 subsets
are 10 models. Under the contextual read-out all 15 differ. ``tests/test_equivalence.py`` builds
every group this module claims and checks that its members predict bit-identically and that
members of different groups do not, so the rule cannot drift from the model.

Torch-free: the grid (``stflib.grid.axes``) groups its arms with it before anything is run.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stflib.models.config import PATHWAY_READOUTS, QUADRANTS, Interactions, ModelConfig

PATHWAY_SIDE_FLOWS = ("p2p", "p2h")  # flows whose queries are pathway tokens: they update only the pathways
PATCH_SIDE_FLOWS = ("h2p", "h2h")  # flows whose queries are patch tokens: they update the predicted tokens


def reaching_flows(interactions, pathway_readout: str = "shared", n_layers: int = 2) -> tuple[str, ...]:
    """The enabled flows of ``interactions`` that can change a prediction, in ``QUADRANTS`` order
    (possibly none: then every patch reads only itself). See the module docstring for the rule."""
    if pathway_readout not in PATHWAY_READOUTS:
        raise ValueError(f"pathway_readout: unknown {pathway_readout!r}; allowed: {', '.join(PATHWAY_READOUTS)}")
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"n_layers: must be an integer >= 1, got {n_layers!r}")
    flows = Interactions(interactions)
    # the encoded pathway tokens reach a patch either as its scoring directions (contextual read-out) or
    # through h2p in a layer after the one that updated them (shared read-out)
    pathways_reach = pathway_readout == "contextual" or ("h2p" in flows and n_layers >= 2)
    return tuple(q for q in QUADRANTS if q in flows and (q in PATCH_SIDE_FLOWS or pathways_reach))


def _fields(config: ModelConfig | Mapping[str, Any]) -> tuple[Any, str, int]:
    if isinstance(config, ModelConfig):
        return config.interactions, config.pathway_readout, config.n_layers
    if isinstance(config, Mapping):
        defaults = ModelConfig()
        return (config.get("interactions", defaults.interactions), config.get("pathway_readout", defaults.pathway_readout),
                config.get("n_layers", defaults.n_layers))
    raise TypeError(f"effective_interactions: expected a ModelConfig or a mapping of parameters, got "
                    f"{type(config).__name__} {config!r}")


def effective_interactions(config: ModelConfig | Mapping[str, Any]) -> tuple[str, ...]:
    """The flows of a model configuration (a ``ModelConfig``, or run parameters with ``interactions``,
    ``pathway_readout`` and ``n_layers``; absent ones take ``ModelConfig``'s defaults) that can reach a
    prediction: ``reaching_flows``. Two configurations that differ only in flows dropped here compute
    the same thing. An empty tuple: no flow reaches (every patch reads only itself)."""
    return reaching_flows(*_fields(config))


def computation_key(params: Mapping[str, Any]) -> tuple:
    """What a model computes, as a hashable key: the parameters (all of them, resolved: e.g. from
    ``stflib.config.validate``) with ``interactions`` replaced by :func:`effective_interactions`.
    Equal keys: the same computation."""
    effective = effective_interactions(params)
    items = {k: v for k, v in params.items() if k != "interactions"}
    items["effective_interactions"] = effective
    return tuple(sorted((k, _hashable(v)) for k, v in items.items()))


def _hashable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(_hashable(v) for v in value)
    return value


def alias_groups(arms: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Group an axis's arms (arm -> its resolved parameters) by :func:`computation_key`: canonical arm ->
    the other arms that are the same model, for every group of two or more. The canonical arm is the
    one with the fewest enabled flows (the one that says what the model is), ties broken by the order of
    ``arms``; its aliases follow ``arms``' order."""
    groups: dict[tuple, list[str]] = {}
    for arm, params in arms.items():
        groups.setdefault(computation_key(params), []).append(arm)
    order = {arm: i for i, arm in enumerate(arms)}
    out = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        canonical = min(members, key=lambda a: (len(Interactions(arms[a].get("interactions", "all"))), order[a]))
        out[canonical] = tuple(a for a in members if a != canonical)
    return out
