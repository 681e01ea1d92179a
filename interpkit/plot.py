"""Figures shared by the chapters: image grids, feature maps, mask overlays and bar charts.

Each function draws into a new (or given) matplotlib figure and returns it; nothing is shown or
saved here, so notebooks decide how figures are displayed.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import torch

from .checks import check_number, check_positive_int

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "to_display",
    "image_grid",
    "feature_maps",
    "overlay",
    "bar_chart",
]


def to_display(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """An image (C, H, W) or (H, W) as an array matplotlib can show (H, W) or (H, W, 3).

    C is 1 or 3; an array already laid out (H, W, 3) or (H, W, 4) is kept. Other shapes (a batch,
    two or four channels first) are a ``ValueError``.

    Args:
        img: one image (C, H, W) or (H, W), tensor or array.

    Returns:
        An array for ``plt.imshow``.
    """
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu()
        a = (img.float() if img.dtype == torch.bfloat16 else img).numpy()  # NumPy has no bfloat16
    else:
        a = np.asarray(img)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    elif not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4))):
        raise ValueError(
            f"an image must have shape (C, H, W) with C = 1 or 3, or (H, W), got {a.shape}; "
            "pass one image of a batch (x[0]), or one channel of a map (maps[c])."
        )
    return np.clip(a, 0, 1) if a.dtype.kind == "f" and a.ndim == 3 else a


def image_grid(
    images: Sequence | torch.Tensor,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    size: float = 1.4,
    cmap: str = "gray",
    row_labels: Sequence[str] | None = None,
    suptitle: str | None = None,
) -> plt.Figure:
    """A grid of images with optional titles (one per image) and row labels (one per row).

    Args:
        images: images (C, H, W) or (H, W), a list or a batch.
        titles: one title per image.
        ncols, size: images per row, inches per image.
        cmap: colour map for one-channel images.
        row_labels: a label at the start of each row.
        suptitle: the figure's title.

    Returns:
        The figure.
    """
    images = list(images)
    n = len(images)
    if n == 0:
        raise ValueError("images is empty; pass at least one image.")
    ncols = min(check_positive_int("ncols", ncols), n)
    size = check_number("size", size, positive=True, hint="it is the side of one image in inches")
    nrows = (n + ncols - 1) // ncols
    if isinstance(titles, str) or isinstance(row_labels, str):
        raise TypeError(
            "titles and row_labels are lists of strings (one per image, one per row), not one "
            "string."
        )
    titles = None if titles is None else list(titles)
    row_labels = None if row_labels is None else list(row_labels)
    if titles is not None and len(titles) != n:
        raise ValueError(
            f"got {len(titles)} titles for {n} images; pass one title per image ('' for none)."
        )
    if row_labels is not None and len(row_labels) != nrows:
        raise ValueError(
            f"got {len(row_labels)} row labels for {nrows} rows ({n} images in {ncols} columns); "
            "pass one label per row ('' for none), or change ncols."
        )
    # Row labels are written across, left of their row: written along the axis (matplotlib's
    # default) a label longer than the row is high runs into the rows above and below. The figure
    # is widened by about the longest label's width, so the images keep their size.
    label_width = 0.075 * max(map(len, row_labels)) + 0.15 if row_labels else 0.0
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(size * ncols + label_width, size * nrows + (0.3 if suptitle else 0)),
        squeeze=False,
    )
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([]), ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        a = to_display(images[i])
        ax.imshow(
            a,
            cmap=cmap if a.ndim == 2 else None,
            vmin=0
            if a.dtype.kind == "f" and a.ndim == 2 and a.min() >= 0 and a.max() <= 1
            else None,
            vmax=1
            if a.dtype.kind == "f" and a.ndim == 2 and a.min() >= 0 and a.max() <= 1
            else None,
        )
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    if row_labels is not None:
        for r, label in enumerate(row_labels):
            axes[r, 0].set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def feature_maps(
    maps: torch.Tensor,
    channels: Sequence[int] | None = None,
    ncols: int = 8,
    size: float = 1.2,
    title: str | None = None,
    cmap: str = "viridis",
) -> plt.Figure:
    """Channels of one activation map (C, H, W) side by side, each with its own colour scale.

    Args:
        maps: the maps of one image (C, H, W).
        channels: which channels (default all).
        ncols: maps per row.
        size: inches per map.
        title: the figure's title.
        cmap: colour map.

    Returns:
        The figure.
    """
    maps = torch.as_tensor(maps).detach().cpu()
    if maps.ndim != 3:
        raise ValueError(
            f"maps must be one image's activations (C, H, W), got shape {tuple(maps.shape)}; "
            "for a batch pass one image, e.g. acts[name][0]."
        )
    channels = list(range(min(len(maps), 16))) if channels is None else list(channels)
    if not channels:
        raise ValueError("no channels to show; pass at least one channel index.")
    for c in channels:
        try:
            i = operator.index(c)
        except TypeError:
            raise TypeError(f"channels must be integers, got {c!r}.") from None
        if not 0 <= i < len(maps):
            raise ValueError(
                f"channel {i} does not exist: these maps have {len(maps)} channels, 0 to "
                f"{len(maps) - 1}."
            )
    fig = image_grid(
        [maps[c] for c in channels],
        [f"ch {c}" for c in channels],
        ncols=ncols,
        size=size,
        cmap=cmap,
        suptitle=title,
    )
    return fig


def overlay(
    ax: plt.Axes,
    image: torch.Tensor,
    mask: torch.Tensor | np.ndarray,
    color: str = "red",
    alpha: float = 0.45,
    title: str | None = None,
) -> plt.Axes:
    """Draw ``image`` with a boolean ``mask`` tinted on top (mask resized by nearest neighbour).

    Args:
        ax: the axes to draw on.
        image: the image (C, H, W) or (H, W).
        mask: a boolean or [0, 1] mask (H, W).
        color: the mask's colour.
        alpha: the mask's opacity.
        title: the axes' title.

    Returns:
        The axes.
    """
    from matplotlib.colors import to_rgb

    alpha = check_number("alpha", alpha, hint="it is the opacity of the tint, in [0, 1]")
    if alpha > 1:
        raise ValueError(f"alpha must be at most 1 (the opacity of the tint), got {alpha!r}.")
    img = to_display(image)
    if img.dtype == np.uint8:
        img = (
            img / 255
        )  # 8-bit images hold 0..255 (as matplotlib reads them); the tint is in [0, 1]
    if img.ndim == 3 and img.shape[2] != 3:
        img = (
            img[..., 0] if img.shape[2] == 1 else img[..., :3]
        )  # (H, W, 1) grey, (H, W, 4) without alpha
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"mask must be one non-empty (H, W) mask, got shape {m.shape}.")
    if m.shape != img.shape[:2]:
        ys = np.arange(img.shape[0]) * m.shape[0] // img.shape[0]
        xs = np.arange(img.shape[1]) * m.shape[1] // img.shape[1]
        m = m[ys][:, xs]
    out = img.astype(float).copy()
    out[m.astype(bool)] = (1 - alpha) * out[m.astype(bool)] + alpha * np.array(to_rgb(color))
    ax.imshow(np.clip(out, 0, 1))
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return ax


def bar_chart(
    values: dict[str, float] | pd.Series,
    title: str = "",
    ylabel: str = "",
    ax: plt.Axes | None = None,
    color: str = "C0",
    rotate: int = 0,
) -> plt.Figure:
    """A labelled bar chart of ``{name: value}`` (a dict, or a pandas Series indexed by name).

    Args:
        values: ``{label: value}`` or a Series.
        title: the title.
        ylabel: the y axis label.
        ax: axes to draw on (default a new figure).
        color: bar colour.
        rotate: label rotation in degrees.

    Returns:
        The figure.
    """
    if not callable(getattr(values, "items", None)):
        raise TypeError(
            f"values must be a dict or a pandas Series of {{name: value}}, got "
            f"{type(values).__name__}; "
            "build one with dict(zip(names, values))."
        )
    pairs = list(values.items())  # a Series' .values is an array, not a method: items() serves both
    names, vals = [k for k, _ in pairs], [v for _, v in pairs]
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
