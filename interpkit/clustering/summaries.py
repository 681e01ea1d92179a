"""Summaries of a factorisation: class weights, concept tables, pixel images, purity."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np
import pandas as pd
import torch

from ..checks import check_positive_int
from ._data import Labels
from .nmf import CoupledNMF

# a result, or F itself (R x N)
FactorsLike = Union[CoupledNMF, torch.Tensor, np.ndarray]  # noqa: UP007


def _np(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=float)


def _F(result_or_F: FactorsLike) -> np.ndarray:
    return _np(result_or_F.F if isinstance(result_or_F, CoupledNMF) else result_or_F)


def _entropy(p: np.ndarray, axis: int = -1, base: float = 2.0) -> np.ndarray:
    p = np.asarray(p, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p > 0, p * np.log(p), 0.0)
    return -t.sum(axis) / np.log(base)


def _labels(labels: Labels, n: int, what: str = "labels") -> np.ndarray:
    lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if lab.shape != (n,):
        raise ValueError(
            f"{what} has shape {lab.shape}, expected ({n},): one label per example (column of F)."
        )
    return lab


def class_weights(
    result: FactorsLike, labels: Labels, classes: Sequence[str] | None = None
) -> pd.DataFrame:
    """Per concept ``r`` and class ``c``: ``w_c = sum_{n in c} F[r, n] / sum_n F[r, n]`` (rows sum
    to 1).

    Index ``concept``; columns the class names (``classes[label]``) or the label values. A dead
    concept (``F[r] == 0``, possible with the L1 penalty) gets a row of NaN.

    Args:
        result: a :class:`CoupledNMF` or F itself (R x N).
        labels: one integer class per example (column of F).
        classes: class names indexed by label (optional).

    Returns:
        DataFrame (R rows x classes).
    """
    F = _F(result)
    lab = _labels(labels, F.shape[1])
    values = np.unique(lab)
    mass = np.stack([F[:, lab == v].sum(1) for v in values], 1)
    tot = F.sum(1, keepdims=True)
    w = np.divide(mass, tot, out=np.full_like(mass, np.nan), where=tot > 0)
    names = [classes[int(v)] if classes is not None else v for v in values]
    return pd.DataFrame(w, index=pd.RangeIndex(F.shape[0], name="concept"), columns=names)


def top_examples(result: FactorsLike, k: int = 8) -> np.ndarray:
    """(R x k) indices of the examples with the largest ``F[r, n]`` per concept, largest first.

    Args:
        result: a :class:`CoupledNMF` or F (R x N).
        k: examples per concept (at most N).

    Returns:
        (R x k) integer array.
    """
    F = _F(result)
    k = min(check_positive_int("k", k), F.shape[1])
    return np.argsort(-F, axis=1, kind="stable")[:, :k]


def concept_table(
    result: FactorsLike, labels: Labels, classes: Sequence[str] | None = None, k: int = 8
) -> pd.DataFrame:
    """One row per concept: ``mass`` (share of the total F), ``top_class``, ``top_weight``,
    ``entropy`` (bits, of the class weights), ``top_examples`` (k indices) and their labels.
    Dead concepts (zero mass) have a missing ``top_class`` and NaN weight and entropy.

    Args:
        result: a :class:`CoupledNMF` or F (R x N).
        labels: one integer class per example.
        classes: class names indexed by label (optional).
        k: top examples listed per concept.

    Returns:
        DataFrame indexed by ``concept``.
    """
    F = _F(result)
    w = class_weights(F, labels, classes)
    lab = _labels(labels, F.shape[1])
    top = top_examples(F, k)
    alive = F.sum(1) > 0
    wv = np.nan_to_num(w.values)
    cols = list(w.columns)
    return pd.DataFrame(
        {
            "mass": F.sum(1) / max(F.sum(), 1e-300),
            "top_class": [cols[int(np.argmax(row))] if a else None for row, a in zip(wv, alive)],
            "top_weight": np.where(alive, wv.max(1), np.nan),
            "entropy": np.where(alive, _entropy(wv, 1), np.nan),
            "top_examples": [list(map(int, t)) for t in top],
            "top_example_labels": [
                [classes[int(lab[i])] if classes is not None else lab[i].item() for i in t]
                for t in top
            ],
        },
        index=pd.RangeIndex(F.shape[0], name="concept"),
    )


def concept_pixel_image(
    result: CoupledNMF, concept: int, image_size: tuple[int, int]
) -> np.ndarray:
    """``P_i[:, r]`` of every channel reshaped to (C, H, W), scaled to max 1 (zeros if none).

    Args:
        result: a :class:`CoupledNMF` with pixel matrices.
        concept: the concept r.
        image_size: (H, W) with H * W pixels per channel.

    Returns:
        (C, H, W) float array in [0, 1].
    """
    if not result.P:
        raise ValueError(
            "this factorisation has no pixel matrices; run coupled_nmf with "
            "pixels=pixel_matrices(images)."
        )
    size = tuple(image_size) if isinstance(image_size, (tuple, list)) else (image_size, image_size)
    pixels = next(iter(result.P.values())).shape[0]
    if (
        len(size) != 2
        or not all(isinstance(v, (int, np.integer)) for v in size)
        or size[0] * size[1] != pixels
    ):
        raise ValueError(
            f"image_size {image_size!r} does not fit the pixel factors: they hold {pixels} pixels "
            f"per "
            f"channel, so image_size must be (H, W) with H * W = {pixels}"
            + (
                f", e.g. ({math.isqrt(pixels)}, {math.isqrt(pixels)})"
                if math.isqrt(pixels) ** 2 == pixels
                else ""
            )
            + "."
        )
    h, w = size
    img = np.stack([_np(p[:, concept]).reshape(h, w) for p in result.P.values()])
    m = img.max()
    return img / m if m > 0 else img


def concept_pixel_mask(result: CoupledNMF, concept: int, image_size: tuple[int, int]) -> np.ndarray:
    """(C, H, W) boolean: per channel ``i``, ``P_i[:, r]`` above its median (the authors' mask).

    Args:
        result, concept, image_size: as for :func:`concept_pixel_image`.

    Returns:
        (C, H, W) boolean array.
    """
    img = concept_pixel_image(result, concept, image_size)
    return img > np.median(img.reshape(len(img), -1), axis=1)[:, None, None]


def masked_images(
    result: CoupledNMF, concept: int, images: torch.Tensor | np.ndarray | None = None
) -> np.ndarray:
    """The paper's "masked image": per channel, pixels where ``P_i[:, r]`` is at or below its
    median zeroed.

    With ``images`` (n, C, H, W) the mask is applied to those images (as the authors do for a
    concept's top images), returning (n, C, H, W); without, to the concept's own pixel image
    (:func:`concept_pixel_image`), returning (C, H, W).

    Args:
        result: a :class:`CoupledNMF` with pixel matrices.
        concept: the concept r.
        images: (n, C, H, W) images to mask, or None for the concept's own pixel image.

    Returns:
        (n, C, H, W) or (C, H, W) array.
    """
    if images is None:
        first = next(iter(result.P.values())) if result.P else None
        side = int(round(math.sqrt(first.shape[0]))) if first is not None else 0
        if first is None or side * side != first.shape[0]:
            raise ValueError(
                "cannot infer a square image size; pass the images to apply the mask to."
            )
        img = concept_pixel_image(result, concept, (side, side))
        return img * concept_pixel_mask(result, concept, (side, side))
    x = _np(images)
    if x.ndim != 4 or x.shape[1] != len(result.P):
        raise ValueError(
            f"images must be (n, {len(result.P)}, H, W) to match the pixel factors, got {x.shape}."
        )
    return x * concept_pixel_mask(result, concept, tuple(x.shape[-2:]))[None]


def concept_similarity(result: CoupledNMF, layer: str | None = None) -> pd.DataFrame:
    """(R x R) cosine similarity of concepts over the units of ``layer`` (all layers stacked if
    None).

    Args:
        result: a :class:`CoupledNMF`.
        layer: one layer of ``result.O``, or None for all stacked.

    Returns:
        (R x R) DataFrame of cosine similarities.
    """
    if layer is None:
        o = np.concatenate([_np(v) for v in result.O.values()], 0)
    else:
        if layer not in result.O:
            raise KeyError(
                f"no layer {layer!r} in this factorisation; choose from {list(result.O)}."
            )
        o = _np(result.O[layer])
    n = np.linalg.norm(o, axis=0)
    n[n == 0] = 1
    o = o / n
    idx = pd.RangeIndex(o.shape[1], name="concept")
    return pd.DataFrame(o.T @ o, index=idx, columns=idx)


def top_units(
    result: CoupledNMF, layer: str, concept: int, k: int = 10, shape: tuple[int, ...] | None = None
) -> pd.DataFrame:
    """The ``k`` units of ``layer`` with the largest ``O[layer][m, r]``: unit, channel, y, x,
    weight.

    ``shape`` (C, H, W) defaults to the one recorded by :func:`activation_matrices`.

    Args:
        result: a :class:`CoupledNMF`.
        layer: a layer of ``result.O``.
        concept: the concept r.
        k: number of units.
        shape: (C, H, W) of the layer's output, if not recorded.

    Returns:
        DataFrame with columns unit, channel, y, x, weight.
    """
    if layer not in result.O:
        raise KeyError(f"no layer {layer!r} in this factorisation; choose from {list(result.O)}.")
    o = _np(result.O[layer][:, concept])
    shape = shape or result.shapes.get(layer)
    top = np.argsort(-o, kind="stable")[: check_positive_int("k", k)]
    df = pd.DataFrame({"unit": top, "weight": o[top]})
    if shape is not None and len(shape) == 3:
        c, h, w = shape
        df["channel"], rest = top // (h * w), top % (h * w)
        df["y"], df["x"] = rest // w, rest % w
        df = df[["unit", "channel", "y", "x", "weight"]]
    return df


@dataclass
class KNNImpurity:
    """kNN impurity per example: base-2 entropy of the argmax-concept histogram of its
    neighbours."""

    impurity: np.ndarray  # (N,)
    tally: np.ndarray  # (N, R) neighbour counts per concept
    k: int  # neighbours including the example itself (authors' convention)


def knn_impurity(
    result: FactorsLike, n_classes: int | None = None, *, k: int | None = None
) -> KNNImpurity:
    """For every example, the entropy (bits) of the argmax concepts of its nearest neighbours in
    F^T.

    As in the authors' code: ``k = N // n_classes + 1`` neighbours by Euclidean distance in the
    rows of ``F^T``, the example itself included and then dropped (so ``k - 1`` are counted).

    Args:
        result: a :class:`CoupledNMF` or F (R x N).
        n_classes: number of classes (sets ``k`` as the authors do).
        k: number of neighbours, instead of ``n_classes``.

    Returns:
        A :class:`KNNImpurity` (``impurity`` per example, ``tally``, ``k``).
    """
    X = _F(result).T
    n = X.shape[0]
    if k is None:
        if n_classes is None:
            raise ValueError("pass n_classes (k = N // n_classes + 1, as the paper) or k.")
        if int(n_classes) < 1:
            raise ValueError(f"n_classes must be a positive number of classes, got {n_classes!r}.")
        k = n // int(n_classes) + 1
    k = int(min(k, n))
    if k < 2:
        raise ValueError(f"k={k} leaves no neighbours; use k >= 2 or more examples.")
    arg = X.argmax(1)
    xt = torch.from_numpy(X)
    d = torch.cdist(xt, xt)
    d.fill_diagonal_(float("inf"))
    nb = torch.topk(d, k - 1, dim=1, largest=False).indices.numpy()
    tally = np.zeros((n, X.shape[1]))
    np.add.at(tally, (np.repeat(np.arange(n), k - 1), arg[nb].ravel()), 1)
    return KNNImpurity(_entropy(tally / tally.sum(1, keepdims=True), 1), tally, k)


def accuracy_vs_impurity(impurity: np.ndarray, correct: Labels) -> pd.DataFrame:
    """Examples sorted by impurity (purest first) with the network's cumulative accuracy.

    Columns: ``example``, ``impurity``, ``correct``, ``fraction`` (share of examples so far),
    ``cumulative_accuracy`` (accuracy over the examples with impurity at or below this one).

    Args:
        impurity: per-example impurity (e.g. ``knn_impurity(...).entropy``).
        correct: per-example 0/1 (classifier correct).

    Returns:
        DataFrame, one row per example (purest first).
    """
    imp = np.asarray(impurity, float)
    cor = _labels(correct, len(imp), "correct").astype(float)
    order = np.argsort(imp, kind="stable")
    c = cor[order]
    return pd.DataFrame(
        {
            "example": order,
            "impurity": imp[order],
            "correct": c.astype(bool),
            "fraction": np.arange(1, len(c) + 1) / len(c),
            "cumulative_accuracy": np.cumsum(c) / np.arange(1, len(c) + 1),
        }
    )


def factor_purity(
    result: FactorsLike,
    factors: Mapping[str, Labels],
    names: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """How pure each concept is with respect to known per-example factors (ground truth).

    ``factors``: ``{factor name: per-example labels (N,)}``, e.g. object class, colour, scene.
    One row per (concept, factor): ``mass`` (the concept's share of F), ``top_value``, ``purity``
    (its F-weighted share, the ``class_weights`` max), ``chance`` (that value's share among all
    examples), ``lift`` (purity / chance), ``norm_entropy`` (entropy of the weights /
    log2(#values); 0 pure, 1 uniform). Dead concepts (zero mass) get NaN.

    Args:
        result: a :class:`CoupledNMF` or F (R x N).
        factors: ``{factor name: one integer value per example}``.
        names: value names per factor (optional).

    Returns:
        DataFrame, one row per (factor, concept).
    """
    F = _F(result)
    mass = F.sum(1) / max(F.sum(), 1e-300)
    rows = []
    for fname, lab in factors.items():
        lab = _labels(lab, F.shape[1], f"factor {fname!r}")
        w = class_weights(F, lab)
        values = list(w.columns)
        prior = np.array([(lab == v).mean() for v in values])
        nv = max(len(values), 2)
        for r in range(F.shape[0]):
            if not mass[r] > 0:
                rows.append(
                    {
                        "concept": r,
                        "factor": fname,
                        "mass": 0.0,
                        "top_value": None,
                        "purity": np.nan,
                        "chance": np.nan,
                        "lift": np.nan,
                        "norm_entropy": np.nan,
                    }
                )
                continue
            j = int(np.argmax(w.values[r]))
            v = values[j]
            label = names[fname][int(v)] if names is not None and fname in names else v
            rows.append(
                {
                    "concept": r,
                    "factor": fname,
                    "mass": float(mass[r]),
                    "top_value": label,
                    "purity": float(w.values[r, j]),
                    "chance": float(prior[j]),
                    "lift": float(w.values[r, j] / prior[j]),
                    "norm_entropy": float(_entropy(w.values[r]) / np.log2(nv)),
                }
            )
    return pd.DataFrame(rows)


def purity_summary(result: FactorsLike, factors: Mapping[str, Labels]) -> pd.DataFrame:
    """Per factor, over the live concepts: ``concepts`` (how many), ``mean_purity``,
    ``weighted_purity`` (concepts weighted by their share of F), ``mean_chance`` (share of each
    concept's top value among all examples) and ``mean_norm_entropy``.

    Args:
        result: a :class:`CoupledNMF` or F (R x N).
        factors: ``{factor name: one integer value per example}``.

    Returns:
        DataFrame, one row per factor.
    """
    df = factor_purity(result, factors)
    df = df[df["mass"] > 0]
    g = df.groupby("factor", sort=False)
    return pd.DataFrame(
        {
            "concepts": g["concept"].count(),
            "mean_purity": g["purity"].mean(),
            "weighted_purity": g.apply(
                lambda t: float((t["purity"] * t["mass"]).sum() / t["mass"].sum()),
                include_groups=False,
            ),
            "mean_chance": g["chance"].mean(),
            "mean_norm_entropy": g["norm_entropy"].mean(),
        }
    )
