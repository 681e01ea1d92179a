"""Where the filters fire: peak positions, top images, location instability (ICNN, Sec. 4) and the
IoU of thresholded maps with ground-truth parts. Functions of maps alone (no model)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

__all__: list[str] = []


def peak_positions(maps: torch.Tensor, image_size: int | Sequence[int]) -> torch.Tensor:
    """Image coordinates (y, x) of each map's peak cell centre, ``(N, K, 2)``.

    A cell (i, j) of an n x m map over an H x W image covers pixels ``[i H/n, (i+1) H/n)``; its
    centre, where the receptive field of a 'same'-padded strided network is centred, is returned in
    the convention of ``WorldSet.landmarks`` (pixel k has its centre at coordinate k):
    ``((i + 0.5) H / n - 0.5, (j + 0.5) W / m - 0.5)``.

    Args:
        maps: feature maps (N, K, n, m).
        image_size: the images' size, H (square) or (H, W).

    Returns:
        A float64 tensor (N, K, 2) of (y, x) image coordinates.
    """
    if maps.ndim != 4:
        raise ValueError(f"maps must be (N, K, n, m), got {tuple(maps.shape)}.")
    H, W = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    n, m = maps.shape[-2:]
    flat = maps.flatten(2).argmax(-1)
    i, j = flat // m, flat % m
    return torch.stack([(i.double() + 0.5) * H / n - 0.5, (j.double() + 0.5) * W / m - 0.5], -1)


def top_activations(
    maps: torch.Tensor, image_size: int | Sequence[int], *, top: int = 20
) -> pd.DataFrame:
    """For each filter, its ``top`` images by peak activation (ties by index), skipping images where
    it is silent: columns filter, rank, image, activation, peak_y, peak_x (image coordinates)."""
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}.")
    peaks = peak_positions(maps, image_size)
    act = maps.flatten(2).amax(-1)  # (N, K)
    rows = []
    for k in range(maps.shape[1]):
        a = act[:, k]
        order = torch.argsort(-a, stable=True)[:top]
        for r, idx in enumerate(order.tolist()):
            if float(a[idx]) <= 0:
                break
            rows.append(
                {
                    "filter": k,
                    "rank": r,
                    "image": idx,
                    "activation": float(a[idx]),
                    "peak_y": float(peaks[idx, k, 0]),
                    "peak_x": float(peaks[idx, k, 1]),
                }
            )
    return pd.DataFrame(rows, columns=["filter", "rank", "image", "activation", "peak_y", "peak_x"])


def _top_count(top: int | float, n: int) -> int:
    """``top`` images, or with a float in (0, 1] that fraction of ``n`` (rounded up, at least 2)."""
    if isinstance(top, float):
        return max(2, math.ceil(top * n))
    return int(top)


def _instability_one(
    peaks: np.ndarray, act: np.ndarray, lm: np.ndarray, top: int | float
) -> tuple[float, int]:
    """Mean over landmarks of the std (ddof=1) of peak-landmark distances over a filter's top images
    (images showing the landmark, ranked by peak activation, silent ones skipped; ``top`` a count or
    a fraction of the images showing it). NaN if some shown landmark has fewer than two such images;
    also returns the mean number of images used."""
    present = ~np.isnan(lm).any(-1)  # (n, P)
    stds, used = [], []
    for k in range(lm.shape[1]):
        idx = np.flatnonzero(present[:, k])
        if len(idx) == 0:
            continue
        order = idx[np.argsort(-act[idx], kind="stable")]
        order = order[act[order] > 0][: _top_count(top, len(idx))]
        if len(order) < 2:
            return float("nan"), 0
        d = np.linalg.norm(peaks[order] - lm[order, k], axis=-1)
        stds.append(float(np.std(d, ddof=1)))
        used.append(len(order))
    if not stds:
        return float("nan"), 0
    return float(np.mean(stds)), int(round(np.mean(used)))


def _categories(lm: np.ndarray, labels: torch.Tensor | None) -> list[tuple[int, np.ndarray]]:
    """``(category, image indices)`` of each category with a visible landmark; one group ``-1``
    of all images without labels (or when no image shows a landmark: nothing to measure)."""
    groups = [(-1, np.arange(len(lm)))]
    if labels is not None:
        lab = labels.numpy()
        groups = [(int(c), np.flatnonzero(lab == c)) for c in np.unique(lab)]
        groups = [(c, idx) for c, idx in groups if (~np.isnan(lm[idx]).any(-1)).any()]
        if not groups:
            groups = [(-1, np.arange(len(lm)))]
    return groups


def location_instability(
    maps: torch.Tensor,
    landmarks: torch.Tensor,
    image_size: int | Sequence[int],
    *,
    labels: torch.Tensor | None = None,
    top: int | float = 100,
) -> pd.DataFrame:
    """Zhang et al.'s location instability of every filter, one row per filter.

    As in the ICNN authors' evaluation code: for filter f and landmark k, take the ``top`` images
    (an int; or a float in (0, 1]: that fraction of the images showing the landmark, at least two)
    with the highest peak activation of f among those that show landmark k (silent images, peak
    <= 0, are skipped here); ``d_I = ||peak_f(I) - landmark_k(I)||`` with the peak mapped to image
    coordinates (``peak_positions``); the instability is the mean over landmarks of the standard
    deviation (ddof=1) of ``d_I`` over those images, divided by the image diagonal.

    With ``labels`` (multi-category data, as the authors' multi-class code) this is computed per
    category on its own images and landmarks, and each filter keeps the value of the category whose
    images it fires on most (highest mean peak). A filter that cannot be measured (fewer than two
    active images for a landmark) gets NaN and ``dead=True``. Lower is better: a filter firing on
    one object part keeps a constant distance to every landmark of that object.

    Args:
        maps: feature maps (N, K, n, n) of K filters on N images.
        landmarks: (N, n_parts, 2) image coordinates (y, x) of each part, NaN where not shown.
        image_size: the images' size, H (square) or (H, W).
        labels: (N,) categories, or None for one group.
        top: images per filter and landmark, an int >= 2 or a fraction in (0, 1].

    Returns:
        One row per filter: filter, instability, category (or -1), n_images, mean_peak, dead.
    """
    if maps.ndim != 4:
        raise ValueError(f"maps must be (N, K, n, n), got {tuple(maps.shape)}.")
    if landmarks.ndim != 3 or landmarks.shape[-1] != 2 or landmarks.shape[0] != maps.shape[0]:
        raise ValueError(
            f"landmarks must be (N, n_parts, 2) with N = {maps.shape[0]} images, got "
            f"{tuple(landmarks.shape)}."
        )
    if labels is not None and tuple(labels.shape) != (maps.shape[0],):
        raise ValueError(
            f"labels must be (N,) with N = {maps.shape[0]}, got {tuple(labels.shape)}."
        )
    if isinstance(top, float):
        if not 0.0 < top <= 1.0:
            raise ValueError(f"a fractional top must lie in (0, 1], got {top}.")
    elif isinstance(top, bool) or not isinstance(top, int) or top < 2:
        raise ValueError(
            f"top must be an int >= 2 (a standard deviation needs two images) or a fraction "
            f"in (0, 1], got {top!r}."
        )
    H, W = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    diag = math.hypot(H, W)
    peaks = peak_positions(maps, (H, W)).numpy()  # (N, K, 2)
    act = maps.flatten(2).amax(-1).double().numpy()  # (N, K)
    lm = landmarks.double().numpy()  # (N, P, 2)
    groups = _categories(lm, labels)
    rows = []
    for f in range(maps.shape[1]):
        best = None
        for c, idx in groups:
            score = float(act[idx, f].mean())
            if best is None or score > best[1]:
                best = (c, score, idx)
        c, score, idx = best
        inst, used = _instability_one(peaks[idx, f], act[idx, f], lm[idx], top)
        rows.append(
            {
                "filter": f,
                "instability": inst / diag,
                "category": c,
                "n_images": used,
                "mean_peak": score,
                "dead": bool(np.isnan(inst)),
            }
        )
    return pd.DataFrame(rows)


def part_iou(
    maps: torch.Tensor,
    part_mask: torch.Tensor,
    part_names: Sequence[str],
    *,
    quantile: float = 0.95,
    batch_size: int = 128,
    sample: int = 200_000,
    seed: int = 0,
) -> pd.DataFrame:
    """IoU of each filter's thresholded map with every part's ground-truth mask; one row per filter
    with the best-matching part.

    Maps are upsampled (bilinear) to the image size; a filter's threshold is the ``quantile`` of its
    upsampled activations over the whole set (as in Network Dissection; estimated on ``sample``
    random pixels). IoU is accumulated over the set: ``sum |M_f & P| / sum |M_f | P|``.
    ``part_mask`` (N, H, W) uses the ``WorldSet`` labels: ``j + 1`` where part ``part_names[j]`` is
    visible, 0 elsewhere. Columns: filter, part, iou, and ``iou_<part>`` for every part.
    """
    if maps.ndim != 4:
        raise ValueError(f"maps must be (N, K, n, n), got {tuple(maps.shape)}.")
    if part_mask.ndim != 3 or part_mask.shape[0] != maps.shape[0]:
        raise ValueError(
            f"part_mask must be (N, H, W) with N = {maps.shape[0]}, got {tuple(part_mask.shape)}."
        )
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), got {quantile}.")
    H, W = part_mask.shape[-2:]
    N, K = maps.shape[:2]
    P = len(part_names)
    labels = torch.unique(part_mask)
    unnamed = [int(v) for v in labels if not 0 <= int(v) <= P]
    if P == 0 or unnamed:
        raise ValueError(
            f"part_mask has labels {unnamed or labels.tolist()} but part_names names only {P} "
            f"part(s) "
            "(label j + 1 is part_names[j], 0 no part); pass the full list of part names."
        )

    def up(i: int) -> torch.Tensor:
        return F.interpolate(
            maps[i : i + batch_size].float(), size=(H, W), mode="bilinear", align_corners=False
        )

    g = torch.Generator().manual_seed(seed)
    per_batch = max(1, sample * batch_size // N)
    picks = []
    for i in range(0, N, batch_size):
        u = up(i).permute(1, 0, 2, 3).reshape(K, -1)
        picks.append(u[:, torch.randint(0, u.shape[1], (min(per_batch, u.shape[1]),), generator=g)])
    thr = torch.quantile(torch.cat(picks, 1), quantile, dim=1)  # (K,)
    inter = torch.zeros(K, P, dtype=torch.float64)
    area_m = torch.zeros(K, dtype=torch.float64)
    area_p = torch.zeros(P, dtype=torch.float64)
    for i in range(0, N, batch_size):
        u = up(i)
        m = ((u > thr[None, :, None, None]) & (u > 0)).float().permute(1, 0, 2, 3).reshape(K, -1)
        onehot = F.one_hot(part_mask[i : i + batch_size].long().reshape(-1).clamp(0, P), P + 1)[
            :, 1:
        ].float()
        inter += (m @ onehot).double()
        area_m += m.sum(1).double()
        area_p += onehot.sum(0).double()
    union = area_m[:, None] + area_p[None, :] - inter
    iou = (inter / union.clamp_min(1)).numpy()
    best = iou.argmax(1)
    df = pd.DataFrame(
        {"filter": np.arange(K), "part": [part_names[b] for b in best], "iou": iou.max(1)}
    )
    for p, name in enumerate(part_names):
        df[f"iou_{name}"] = iou[:, p]
    return df
