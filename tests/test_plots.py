"""Figures of one run (stflib.plots) on synthetic inputs."""
import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest

from stflib import plots


def _bottleneck_attention(n_p=4, n_s=30, heads=2, seed=0):
    """(1, H, T, T) row-normalised weights with h2h blocked apart from the diagonal."""
    rng = np.random.default_rng(seed)
    t = n_p + n_s
    w = rng.random((1, heads, t, t))
    w[..., n_p:, n_p:] *= np.eye(n_s)  # patches read only the pathways and themselves
    return [w / w.sum(-1, keepdims=True)]


def test_attention_maps_label_the_quadrants_and_name_the_pathways():
    n_p, n_s = 4, 30
    attention = _bottleneck_attention(n_p, n_s)
    coords = np.random.default_rng(1).random((n_s, 2)) * 1000
    names = ["HALLMARK_HYPOXIA", "HALLMARK_MYC_TARGETS_V1", "HALLMARK_APOPTOSIS", "HALLMARK_E2F_TARGETS"]
    fig = plots.attention_maps(attention, coords, n_p, names, pathways=["HALLMARK_HYPOXIA", 3])
    texts = [t.get_text() for t in fig.axes[0].texts]
    a = attention[0][0].mean(0)
    h2h_share = np.diag(a[n_p:, n_p:]).mean()
    assert any(t.startswith("h2h: patch → patch") and f"{100 * h2h_share:.0f} %" in t for t in texts)
    assert {t.split(":")[0] for t in texts} == {"p2p", "p2h", "h2p", "h2h"}
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("HYPOXIA:") for t in titles) and any(t.startswith("E2F TARGETS:") for t in titles)
    ticks = [tick.get_text() for tick in fig.axes[0].get_xticklabels()]
    assert ticks == ["pathway tokens\n(4)", "patch tokens\n(30 spots)"]
    assert len(fig.axes) == 1 + 2 + 3  # the matrix, two maps, a colour bar for each


def test_attention_maps_default_picks_three_tokens_and_refuse_a_bad_shape():
    fig = plots.attention_maps(_bottleneck_attention(), np.random.default_rng(2).random((30, 2)), 4)
    assert sum(t.get_title().startswith("token ") for t in fig.axes) == 3
    with pytest.raises(ValueError, match=r"allowed: \(B, H, T, T\) or \(B, T, T\)"):
        plots.attention_maps([np.ones((34, 34))], np.zeros((30, 2)), 4)
    with pytest.raises(ValueError, match="fewer than 4 pathways \\+ 40 spots"):
        plots.attention_maps(_bottleneck_attention(), np.zeros((40, 2)), 4)
    with pytest.raises(ValueError, match="unknown pathways \\['HYPOXIA'\\]; allowed: token 0"):
        plots.attention_maps(_bottleneck_attention(), np.zeros((30, 2)), 4, pathways=["HYPOXIA"])
