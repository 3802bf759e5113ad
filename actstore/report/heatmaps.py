"""Interpretation heatmaps (paper §4.7): for an image's interpretation maps Z (h, w, d), score each
map by the sum of its elements, keep the k best, take the maximum over them at each position,
resize to the image and superimpose. One grid per model x interpreter: a few validation images per
class (rows), each coreset selector at one ρ next to the full data (columns)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import EvaluationError
from .png import subplots, to_png

__all__ = ["heatmap", "overlay", "heatmap_grid"]


def heatmap(Z: np.ndarray, k: int = 3) -> np.ndarray:
    """H (h, w): the maximum over the ``k`` maps of ``Z`` (h, w, d) with the largest sums."""
    if Z.ndim != 3:
        raise EvaluationError(f"interpretation maps must be (h, w, d), not shape {Z.shape}")
    top = np.argsort(-Z.sum(axis=(0, 1)), kind="stable")[:max(1, k)]
    return Z[..., top].max(axis=-1)


def overlay(image: np.ndarray, H: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB (S, S, 3) in [0, 1]: ``H`` resized (bilinear) to ``image`` (3, S, S, any range), min-max
    scaled, coloured with the jet map and blended over the image (itself min-max scaled for display)."""
    from matplotlib import colormaps

    img = np.asarray(image, np.float32).transpose(1, 2, 0)
    img = (img - img.min()) / max(float(img.max() - img.min()), 1e-12)
    up = torch.nn.functional.interpolate(torch.as_tensor(H, dtype=torch.float32)[None, None], size=img.shape[:2],
                                         mode="bilinear", align_corners=False)[0, 0].numpy()
    span = float(up.max() - up.min())
    up = (up - up.min()) / span if span > 0 else np.zeros_like(up)
    return (1 - alpha) * img + alpha * colormaps["jet"](up)[..., :3]


def heatmap_grid(images: list[np.ndarray], columns: dict[str, list[np.ndarray]], k: int, title: str,
                 row_labels: list[str]) -> bytes:
    """A PNG: one row per image (labelled), one column per labelled list of Z (one Z per image), a colour bar."""
    from matplotlib import cm, colors

    n, m = len(images), len(columns)
    fig, axes = subplots(n, m + 1, figsize=(1.9 * m + 0.9, 1.75 * n + 0.6), squeeze=False,
                         gridspec_kw={"width_ratios": [1] * m + [0.12]})
    for j, (label, zs) in enumerate(columns.items()):
        axes[0][j].set_title(label, fontsize=8)
        for i, (img, Z) in enumerate(zip(images, zs, strict=False)):
            axes[i][j].imshow(overlay(img, heatmap(Z, k)))
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
            if j == 0:
                axes[i][j].set_ylabel(row_labels[i], fontsize=7)
    for i in range(n):
        axes[i][m].set_axis_off()
    bar = fig.colorbar(cm.ScalarMappable(colors.Normalize(0, 1), "jet"), ax=[axes[i][m] for i in range(n)],
                       fraction=1.0, aspect=30)
    bar.set_label(f"max of the top-{k} maps, scaled 0-1 per image", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    return to_png(fig, 100, layout=False)
