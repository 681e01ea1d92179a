"""Figures shared by the chapters: image grids, feature maps, mask overlays and bar charts.

Each function draws into a new (or given) matplotlib figure and returns it; nothing is shown or
saved here, so notebooks decide how figures are displayed.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def to_display(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """An image (C, H, W) or (H, W) as an array matplotlib can show (H, W) or (H, W, 3)."""
    a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    return np.clip(a, 0, 1) if a.dtype.kind == "f" and a.ndim == 3 else a


def image_grid(images: Sequence | torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 8,
               size: float = 1.4, cmap: str = "gray", row_labels: Sequence[str] | None = None,
               suptitle: str | None = None) -> plt.Figure:
    """A grid of images with optional titles (one per image) and row labels."""
    images = list(images)
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.3 if suptitle else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([]), ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        a = to_display(images[i])
        ax.imshow(a, cmap=cmap if a.ndim == 2 else None, vmin=0 if a.dtype.kind == "f" and a.ndim == 2 and a.min() >= 0 and a.max() <= 1 else None,
                  vmax=1 if a.dtype.kind == "f" and a.ndim == 2 and a.min() >= 0 and a.max() <= 1 else None)
        if titles is not None and i < len(titles):
            ax.set_title(titles[i], fontsize=8)
    if row_labels is not None:
        for r, label in enumerate(row_labels[:nrows]):
            axes[r, 0].set_ylabel(label, fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def feature_maps(maps: torch.Tensor, channels: Sequence[int] | None = None, ncols: int = 8, size: float = 1.2,
                 title: str | None = None, cmap: str = "viridis") -> plt.Figure:
    """Channels of one activation map (C, H, W) side by side, each with its own colour scale."""
    maps = maps.detach().cpu()
    channels = list(range(min(len(maps), 16))) if channels is None else list(channels)
    fig = image_grid([maps[c] for c in channels], [f"ch {c}" for c in channels], ncols=ncols, size=size,
                     cmap=cmap, suptitle=title)
    return fig


def overlay(ax: plt.Axes, image: torch.Tensor, mask: torch.Tensor | np.ndarray, color: str = "red",
            alpha: float = 0.45, title: str | None = None) -> plt.Axes:
    """Draw ``image`` with a boolean ``mask`` tinted on top (mask resized by nearest neighbour)."""
    from matplotlib.colors import to_rgb

    img = to_display(image)
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.shape != img.shape[:2]:
        ys = (np.arange(img.shape[0]) * m.shape[0] // img.shape[0])
        xs = (np.arange(img.shape[1]) * m.shape[1] // img.shape[1])
        m = m[ys][:, xs]
    out = img.astype(float).copy()
    out[m.astype(bool)] = (1 - alpha) * out[m.astype(bool)] + alpha * np.array(to_rgb(color))
    ax.imshow(np.clip(out, 0, 1))
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return ax


def bar_chart(values: dict[str, float] | "pd.Series", title: str = "", ylabel: str = "", ax: plt.Axes | None = None,
              color: str = "C0", rotate: int = 0) -> plt.Figure:
    """A labelled bar chart of ``{name: value}``."""
    names, vals = list(values.keys()), list(values.values())
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(names) + 2), 3))
    else:
        fig = ax.figure
    ax.bar(range(len(vals)), vals, color=color)
    ax.set_xticks(range(len(names)), names, rotation=rotate, ha="right" if rotate else "center")
    ax.set_title(title), ax.set_ylabel(ylabel)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig
