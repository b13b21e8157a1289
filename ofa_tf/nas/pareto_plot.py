"""The Pareto plot of a search: predicted accuracy against cost, searched subnets highlighted."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ofa_tf.atomic_files import atomic_save
from ofa_tf.nas.evolution import SearchResult


def pareto_front(costs: np.ndarray, accuracies: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both axes (lower cost, higher accuracy),
    sorted by cost."""
    order = np.lexsort((-accuracies, costs))
    front, best = [], -np.inf
    for i in order:
        if accuracies[i] > best:
            front.append(i)
            best = accuracies[i]
    return np.array(front, np.int64)


def save_pareto_plot(path: str, costs: np.ndarray, accuracies: np.ndarray,
                     results: Sequence[SearchResult], xlabel: str, title: str) -> None:
    """Random subnets (grey) and their front, each result as a star at its constraint (dashed).
    Accuracies are fractions; the plot shows percent. Written atomically (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    ax.scatter(costs, 100 * accuracies, s=6, color="0.7", label=f"{len(costs)} random subnets (predicted)")
    front = pareto_front(costs, accuracies)
    ax.plot(costs[front], 100 * accuracies[front], c="0.4", lw=1, label="front of the random subnets")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, result in enumerate(results):
        color = colors[i % len(colors)]
        ax.axvline(result.constraint, c=color, ls="--", lw=0.8)
        ax.scatter([result.efficiency], [100 * result.accuracy], marker="*", s=160, color=color,
                   edgecolors="k", zorder=3,
                   label=f"searched, {result.metric} <= {result.constraint:g}: {100 * result.accuracy:.1f} %")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("predicted top-1 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


def save_figure(fig, path: str) -> None:
    """Lay ``fig`` out, write it atomically as PNG to ``path`` and close it (also on failure)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        atomic_save(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
