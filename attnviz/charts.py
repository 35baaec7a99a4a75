"""Figures people would rather look at than read: channel weights as bars and heatmaps.

matplotlib with the Agg backend only, so it works headless (CLI, server, tests).
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def channel_weights_figure(
    weights: np.ndarray, *, title: str = "", top_k: int = 8, height: float = 2.4
) -> Figure:
    """Bars of one block's channel weights with the top-k channels highlighted."""
    w = np.nan_to_num(np.asarray(weights, dtype=np.float64).ravel())
    fig, ax = plt.subplots(figsize=(7, height), dpi=100)
    colors = np.full(w.shape, "#9aa5b1", dtype=object)
    if w.size:
        top = np.argsort(w)[::-1][: min(top_k, w.size)]
        colors[top] = "#d1495b"
    ax.bar(np.arange(w.size), w, color=list(colors), width=1.0)
    ax.set_xlim(-0.5, max(w.size, 1) - 0.5)
    ax.set_ylim(0, max(1.0, float(w.max()) if w.size else 1.0))
    ax.set_xlabel("channel")
    ax.set_ylabel("weight")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def blocks_heatmap_figure(rows: list[np.ndarray], labels: list[str], *, cmap: str = "viridis"
                          ) -> Figure:
    """Blocks x channels: each row a block's channel weights (rows padded to the widest)."""
    width = max((r.size for r in rows), default=1)
    grid = np.full((max(len(rows), 1), width), np.nan)
    for i, r in enumerate(rows):
        grid[i, : r.size] = r.ravel()
    fig, ax = plt.subplots(figsize=(8, 0.25 * len(rows) + 1.2), dpi=100)
    im = ax.imshow(grid, aspect="auto", cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("channel")
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    fig.tight_layout()
    return fig


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of a figure; the figure is closed so long sessions do not leak memory."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
