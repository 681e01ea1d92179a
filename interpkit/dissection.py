"""Network Dissection (Bau, Zhou, Khosla, Oliva, Torralba, CVPR 2017): score every unit of a
convolutional layer against a dictionary of labelled visual concepts.

For each unit ``k`` of a layer:

1. ``T_k`` is the top-``quantile`` level (0.005 -> the 0.995 quantile, linear interpolation as
   ``numpy.quantile``) of the unit's activation over every position of every probe image, on the
   raw (not upsampled) maps.
2. Per image the unit's map is upsampled bilinearly (``align_corners=False``) to the
   segmentation resolution and thresholded strictly: ``M_k = up(A_k) > T_k``, counting only
   pixels with a source cell above ``T_k`` (a convex combination of cells <= T cannot exceed T;
   float rounding can, by an ulp).
3. Over the dataset, per unit and label ``c``: ``I = |M_k & L_c|``; ``G(c)`` the label's pixel
   count; ``A_cat(k, p)`` the unit's activated pixels in the images where the activated region
   overlaps at least one pixel of a label of primary category ``p`` (NetDissect-Lite's
   category-restricted count; image-level labels, e.g. scenes, cover the whole image).
   ``IoU = I / (A_cat(k, primary(c)) + G(c) - I)``.
4. A unit is a *detector* of its best label when that IoU >= ``iou_threshold`` (0.04).

Everything is streamed in batches with tensor ops on the chosen device (no Python loop over units
or pixels) and memory does not grow with the number of images, except for the exact threshold
buffers (the top ``quantile`` fraction of the values, see :func:`dissect`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .capture import capture, eval_mode, resolve_modules
from .checks import check_images
from .device import model_device, resolve_device

__all__ = [
    "QUANTILE",
    "IOU_THRESHOLD",
    "DissectionResult",
    "dissect",
    "summarize",
    "quantile_thresholds",
    "TopTailQuantile",
    "HistogramQuantileSketch",
    "upsample_masks",
    "top_images",
    "random_rotation",
    "fractional_rotation",
    "rotate_activations",
    "ChannelRotation",
    "RotatedOutput",
    "with_rotation",
]

QUANTILE = 0.005
IOU_THRESHOLD = 0.04
_DATASET_ATTRS = ("labels", "categories", "seg_shape", "segmentation_batch", "__len__")


# ----------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------
@dataclass
class DissectionResult:
    """Network Dissection of one layer.

    ``iou`` is the full (units x labels) matrix; column ``i`` is dataset label number ``i`` (column
    0,
    *unlabeled*, is always 0). ``labels`` describes the columns (``label``, ``name``, ``category``,
    ``pixels`` = G). ``units`` is the tidy per-unit table (``unit``, ``label`` (name), ``label_id``,
    ``category``, ``iou``, ``detector``). The raw counts are kept: ``intersection`` (units x
    labels),
    ``activation`` (units x categories, A_cat), ``unit_pixels`` (all activated pixels per unit) and
    ``label_pixels`` (G per label).
    """

    layer: str
    thresholds: np.ndarray
    iou: np.ndarray
    labels: pd.DataFrame
    intersection: np.ndarray
    activation: np.ndarray
    unit_pixels: np.ndarray
    label_pixels: np.ndarray
    categories: list[str]
    n_images: int
    quantile: float
    iou_threshold: float = IOU_THRESHOLD
    threshold_method: str = "exact"
    threshold_error: np.ndarray | None = None
    _units: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def num_units(self) -> int:
        return int(self.iou.shape[0])

    @property
    def units(self) -> pd.DataFrame:
        """One row per unit: best label (excluding *unlabeled*), its category and IoU, detector
        flag."""
        if self._units is None:
            best = self.iou[:, 1:].argmax(axis=1) + 1
            score = self.iou[np.arange(self.num_units), best]
            self._units = pd.DataFrame(
                {
                    "unit": np.arange(self.num_units),
                    "label": self.labels["name"].to_numpy()[best],
                    "label_id": best,
                    "category": self.labels["category"].to_numpy()[best],
                    "iou": score,
                    "detector": score >= self.iou_threshold,
                }
            )
        return self._units

    def detectors(self) -> pd.DataFrame:
        """The detector units, best IoU first."""
        u = self.units
        return u[u["detector"]].sort_values("iou", ascending=False).reset_index(drop=True)

    def num_detectors(self) -> int:
        """Units whose best IoU reaches ``iou_threshold``."""
        return int(self.units["detector"].sum())

    def unique_detectors(self) -> int:
        """Distinct labels that are the best label of at least one detector unit (the paper's
        count)."""
        return int(self.detectors()["label_id"].nunique())

    def detectors_per_category(self) -> pd.DataFrame:
        """Per category (of the best label): detector units and unique detected labels."""
        d = self.detectors()
        out = pd.DataFrame({"category": list(self.categories)})
        out["detectors"] = out["category"].map(d.groupby("category").size()).fillna(0).astype(int)
        out["unique"] = (
            out["category"].map(d.groupby("category")["label_id"].nunique()).fillna(0).astype(int)
        )
        return out

    def with_iou_threshold(self, iou_threshold: float) -> DissectionResult:
        """The same counts judged against another IoU threshold."""
        _check_iou_threshold(iou_threshold)
        return DissectionResult(
            **{
                **{k: getattr(self, k) for k in self.__dataclass_fields__ if k != "_units"},
                "iou_threshold": float(iou_threshold),
            }
        )

    def summary(self) -> dict[str, Any]:
        """Key numbers as plain Python values (for JSON)."""
        per = self.detectors_per_category()
        return {
            "layer": self.layer,
            "units": self.num_units,
            "images": self.n_images,
            "detectors": self.num_detectors(),
            "unique_detectors": self.unique_detectors(),
            "detectors_per_category": dict(zip(per["category"], per["detectors"].tolist())),
            "unique_per_category": dict(zip(per["category"], per["unique"].tolist())),
            "iou_threshold": self.iou_threshold,
            "quantile": self.quantile,
            "threshold_method": self.threshold_method,
        }

    def __repr__(self) -> str:
        return (
            f"DissectionResult(layer={self.layer!r}, units={self.num_units}, "
            f"labels={self.iou.shape[1]}, "
            f"images={self.n_images}, detectors={self.num_detectors()}, "
            f"unique={self.unique_detectors()})"
        )


def summarize(results: Mapping[str, DissectionResult] | DissectionResult) -> pd.DataFrame:
    """One row per layer: units, detectors, unique detectors and unique detectors per category."""
    if isinstance(results, DissectionResult):
        results = {results.layer: results}
    rows = []
    for name, r in results.items():
        per = r.detectors_per_category()
        row = {
            "layer": name,
            "units": r.num_units,
            "detectors": r.num_detectors(),
            "unique_detectors": r.unique_detectors(),
        }
        row.update({f"unique_{c}": int(n) for c, n in zip(per["category"], per["unique"])})
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# Thresholds: exact top-tail buffers or a streaming histogram sketch
# ----------------------------------------------------------------------------------------------
def _position(n: int, quantile: float) -> tuple[int, int, float]:
    """Ascending order-statistic indices and weight of the ``1 - quantile`` level (numpy
    'linear')."""
    p = (1.0 - quantile) * (n - 1)
    lo = int(math.floor(p))
    hi = min(lo + 1, n - 1)
    return lo, hi, p - lo


def _lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """numpy's linear interpolation (its two-sided form, exact at both ends)."""
    d = b - a
    return b - d * (1.0 - t) if t >= 0.5 else a + d * t


class TopTailQuantile:
    """Exact per-unit upper quantile from a stream, keeping only the top ``m`` values of each unit.

    ``n_total`` (values per unit over the whole stream) must be known up front; then the level at
    ``1 - quantile`` needs only the ``m = n_total - floor((1 - quantile)(n_total - 1))`` largest
    values.
    Memory: about ``3 * units * max(m, 4096)`` floats; identical to ``numpy.quantile`` up to
    float32.
    """

    def __init__(
        self, units: int, n_total: int, quantile: float, device: torch.device | str = "cpu"
    ) -> None:
        self.units, self.n_total, self.quantile = units, int(n_total), float(quantile)
        self.lo, self.hi, self.t = _position(self.n_total, self.quantile)
        self.m = self.n_total - self.lo
        self.device = torch.device(device)
        self.buf = torch.empty(units, 0, device=self.device)
        self.pending: list[torch.Tensor] = []
        self.pending_cols = 0
        self.seen = 0

    def update(self, values: torch.Tensor) -> None:
        """Add a block of values, shape (units, M)."""
        self.pending.append(values.detach().to(self.device, torch.float32))
        self.pending_cols += values.shape[1]
        self.seen += values.shape[1]
        if self.pending_cols >= max(self.m, 4096):
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        allv = torch.cat([self.buf, *self.pending], dim=1)
        self.pending, self.pending_cols = [], 0
        k = min(self.m, allv.shape[1])
        self.buf = allv.topk(k, dim=1, sorted=False).values if k < allv.shape[1] else allv

    def result(self) -> torch.Tensor:
        """Thresholds (units,) float32."""
        if self.seen != self.n_total:
            raise RuntimeError(f"expected {self.n_total} values per unit, got {self.seen}.")
        self._flush()
        top = self.buf.double().sort(dim=1, descending=True).values  # top[:, d] = ascending n-1-d
        a = top[:, self.n_total - 1 - self.lo]
        b = top[:, self.n_total - 1 - self.hi]
        return _lerp(a, b, self.t).float()


class HistogramQuantileSketch:
    """Streaming per-unit quantile with memory independent of the stream length.

    Each unit keeps ``bins`` counts over a range ``[lo, lo + bins * w)``. When a value falls
    outside,
    the range is shifted down by whole bins and/or the bins are widened by a power of two (merging
    old
    bins), so every value is counted exactly once. The estimate interpolates by rank inside the bins
    holding the two order statistics that define the quantile.

    Error (deterministic): ``|T_sketch - T_exact| <= w`` per unit, with ``w`` the final bin width
    (returned by :meth:`result` as ``error``), and ``w <= 2 * (max - min) / (bins - 1)`` (the range
    of
    the values seen) unless every value of the unit's first block was equal. Memory: ``units *
    bins``
    int64 counts, whatever the stream length.
    """

    def __init__(
        self, units: int, quantile: float, bins: int = 8192, device: torch.device | str = "cpu"
    ) -> None:
        if bins < 16 or bins % 2:
            raise ValueError(f"bins must be an even number >= 16, got {bins}.")
        self.units, self.quantile, self.bins = units, float(quantile), int(bins)
        self.device = torch.device(device)
        self.counts = torch.zeros(units, bins, dtype=torch.long, device=self.device)
        self.lo: torch.Tensor | None = None
        self.width: torch.Tensor | None = None
        self.vmin: torch.Tensor | None = None
        self.vmax: torch.Tensor | None = None
        self.seen = 0
        self._offsets = torch.arange(units, device=self.device)[:, None] * bins

    def update(self, values: torch.Tensor) -> None:
        """Add a block of values, shape (units, M)."""
        x = values.detach().to(self.device, torch.float64)
        vmin, vmax = x.amin(dim=1), x.amax(dim=1)
        if self.lo is None:
            span = vmax - vmin
            self.lo = vmin.clone()
            self.width = torch.where(
                span > 0, span / (self.bins - 1), vmin.abs().clamp_min(1e-3) / self.bins
            )
        self._expand(vmin, vmax)
        idx = (
            torch.floor((x - self.lo[:, None]) / self.width[:, None])
            .clamp_(0, self.bins - 1)
            .long()
        )
        self.counts += torch.bincount(
            (idx + self._offsets).flatten(), minlength=self.units * self.bins
        ).view(self.units, self.bins)
        self.seen += x.shape[1]

    def _expand(self, vmin: torch.Tensor, vmax: torch.Tensor) -> None:
        """Grow each unit's range to cover every value seen: shift ``lo`` down by ``k`` bins and
        widen the
        bins by ``2**d`` (smallest such ``k`` and ``d``); old bin ``j`` merges into new bin ``(j +
        k) >> d``."""
        self.vmin = vmin if self.vmin is None else torch.minimum(self.vmin, vmin)
        self.vmax = vmax if self.vmax is None else torch.maximum(self.vmax, vmax)
        lo, w, nb = self.lo, self.width, self.bins
        need = (self.vmin < lo) | (self.vmax >= lo + nb * w)
        if not bool(need.any()):
            return
        k = torch.where(self.vmin < lo, torch.ceil((lo - self.vmin) / w), torch.zeros_like(lo))
        k = torch.where((self.vmin < lo - k * w) & need, k + 1, k)  # guard against rounding
        new_lo = lo - k * w
        ratio = (self.vmax - new_lo) / (nb * w)
        d = torch.where(
            ratio >= 1, torch.floor(torch.log2(ratio.clamp_min(1))) + 1, torch.zeros_like(ratio)
        )
        while True:  # rounding guard, at most a step or two
            short = need & (self.vmax >= new_lo + nb * w * torch.exp2(d))
            if not bool(short.any()):
                break
            d = d + short.double()
        k, d = torch.where(need, k, 0).long(), torch.where(need, d, 0).long()
        j = torch.arange(nb, device=self.device)[None, :]
        new_idx = ((j + k[:, None]) >> d[:, None]).clamp_(max=nb - 1)
        self.counts = torch.zeros_like(self.counts).scatter_add_(1, new_idx, self.counts)
        self.lo = torch.where(need, new_lo, lo)
        self.width = w * torch.exp2(d.double())

    def _order_stat(self, cum: torch.Tensor, i: int) -> torch.Tensor:
        j = torch.searchsorted(
            cum, torch.full((self.units, 1), i, dtype=cum.dtype, device=cum.device), right=True
        )[:, 0]
        before = torch.where(
            j > 0, cum.gather(1, (j - 1).clamp_min(0)[:, None])[:, 0], torch.zeros_like(j)
        )
        c = self.counts.gather(1, j[:, None])[:, 0]
        frac = (i - before + 0.5).double() / c.double()
        return self.lo + self.width * (j.double() + frac)

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Thresholds (units,) float32 and their error bound ``w`` (units,) float64."""
        if self.seen == 0:
            raise RuntimeError("the sketch saw no values.")
        lo, hi, t = _position(self.seen, self.quantile)
        cum = self.counts.cumsum(dim=1)
        a, b = self._order_stat(cum, lo), self._order_stat(cum, hi)
        return _lerp(a, b, t).float(), self.width.clone()


def quantile_thresholds(
    activations: np.ndarray | torch.Tensor,
    quantile: float = QUANTILE,
    *,
    method: str = "exact",
    bins: int = 8192,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Per-unit ``1 - quantile`` levels of activations (N, units, h, w), streamed in batches.

    ``method="exact"`` (top-tail buffers, equal to ``numpy.quantile`` over axes (0, 2, 3)) or
    ``"sketch"`` (:class:`HistogramQuantileSketch`).
    """
    _check_quantile(quantile)
    _check_acts_array(activations, None, "activations")
    dev = resolve_device(device, needs_float64="quantile_thresholds")
    n, units, h, w = (int(s) for s in activations.shape)
    est = (
        TopTailQuantile(units, n * h * w, quantile, dev)
        if method == "exact"
        else HistogramQuantileSketch(units, quantile, bins, dev)
        if method == "sketch"
        else None
    )
    if est is None:
        raise ValueError(f"method must be 'exact' or 'sketch', got {method!r}.")
    for s in range(0, n, batch_size):
        a = _as_tensor(activations[s : s + batch_size], dev)
        _check_finite(a, "activations", s)
        est.update(_unit_major(a))
    out = est.result()
    return (out[0] if isinstance(out, tuple) else out).cpu().numpy()


def _unit_major(a: torch.Tensor) -> torch.Tensor:
    """(B, U, h, w) -> (U, B*h*w)."""
    return a.transpose(0, 1).reshape(a.shape[1], -1)


# ----------------------------------------------------------------------------------------------
# Masks and galleries
# ----------------------------------------------------------------------------------------------
def upsample_masks(
    maps: torch.Tensor | np.ndarray,
    thresholds: torch.Tensor | np.ndarray | float,
    size: tuple[int, int],
) -> torch.Tensor:
    """Binary unit masks ``up(A) > T``: maps (..., h, w) upsampled bilinearly (align_corners=False)
    to ``size``; ``thresholds`` broadcasts against the leading axes (e.g. (units,) for (N, units,
    h, w)).
    As in :func:`dissect`, a pixel counts only if one of its source cells is above ``T``."""
    m = (
        torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps)
        .detach()
        .float()
    )

    def up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(
            x.reshape(-1, 1, *x.shape[-2:]), size=tuple(size), mode="bilinear", align_corners=False
        ).reshape(*x.shape[:-2], *size)

    t = torch.as_tensor(thresholds, dtype=m.dtype, device=m.device)
    t = t.reshape(*t.shape, 1, 1) if t.ndim else t
    return (up(m) > t) & (up((m > t).float()) > 0)


def top_images(activations: np.ndarray | torch.Tensor, unit: int, k: int = 8) -> np.ndarray:
    """Indices of the ``k`` images where ``unit`` reaches its highest activation (max over the
    map)."""
    a = activations[:, unit]
    peak = np.asarray(
        a.reshape(len(a), -1).max(axis=1)
        if isinstance(a, np.ndarray)
        else a.detach().reshape(len(a), -1).amax(dim=1).cpu().numpy()
    )
    return np.argsort(-peak, kind="stable")[:k]


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------
def _check_quantile(q: float) -> None:
    if not isinstance(q, numbers.Real) or not (0.0 < float(q) < 1.0):
        raise ValueError(
            f"quantile must lie strictly between 0 and 1 (the paper uses 0.005, i.e. the top "
            f"0.5% of activations), got {q!r}."
        )


def _check_iou_threshold(t: float) -> None:
    if not isinstance(t, numbers.Real) or not (0.0 <= float(t) <= 1.0):
        raise ValueError(f"iou_threshold must lie in [0, 1] (the paper uses 0.04), got {t!r}.")


def _check_acts_array(a: Any, n: int | None, what: str) -> None:
    shape = getattr(a, "shape", None)
    if shape is None or len(shape) != 4:
        raise ValueError(
            f"{what} must be 4-D (N images, units, h, w) in dataset order, got shape {shape}; "
            "dissection needs convolutional feature maps (use the output of a conv layer)."
        )
    if n is not None and int(shape[0]) != n:
        raise ValueError(
            f"{what} hold {shape[0]} images but the dataset has {n}; pass one activation map "
            "per dataset image, in dataset order (or dataset.subset / slice the activations)."
        )
    if min(int(s) for s in shape[1:]) < 1:
        raise ValueError(f"{what} have an empty axis: shape {tuple(shape)}.")


def _check_finite(a: torch.Tensor, what: str, start: int) -> None:
    lo, hi = torch.aminmax(a)  # NaN propagates to both; infinities show at either end
    if not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
        bad = (~torch.isfinite(a)).flatten(1).any(1).nonzero()[:, 0]
        kind = "NaN" if bool(torch.isnan(a).any()) else "infinite"
        raise ValueError(
            f"{what} contain {kind} values (first at image {start + int(bad[0])}); "
            "check the model and its inputs (e.g. the normalisation) before dissecting."
        )


def _as_tensor(a: Any, dev: torch.device) -> torch.Tensor:
    t = a.detach() if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
    return t.to(dev, torch.float32)


# ----------------------------------------------------------------------------------------------
# The label space of a dataset
# ----------------------------------------------------------------------------------------------
@dataclass
class _LabelSpace:
    table: pd.DataFrame  # label, name, category (primary)
    categories: list[str]
    primary: np.ndarray  # (L,) category index, -1 for none (label 0)
    lut: torch.Tensor  # (L,) label -> itself, or 0 when its category is not selected
    labelcat: torch.Tensor  # (L, C) float one-hot of the primary category (row 0 zero)
    identity: bool = False  # no category filter: lut maps every label to itself

    @property
    def num_labels(self) -> int:
        return len(self.primary)


def _label_space(dataset: Any, categories: Sequence[str] | None, dev: torch.device) -> _LabelSpace:
    missing = [a for a in _DATASET_ATTRS if not hasattr(dataset, a)]
    if missing:
        raise TypeError(
            f"the dataset lacks {', '.join(missing)}; pass an interpkit.data.Broden or "
            "ConceptWorld.as_broden(...) (or an object with the same interface)."
        )
    cats = list(dataset.categories)
    if categories is not None:
        if isinstance(categories, str):
            categories = [categories]
        unknown = [c for c in categories if c not in cats]
        if unknown:
            raise KeyError(
                f"the label dictionary has no categor{'y' if len(unknown) == 1 else 'ies'} "
                f"{', '.join(map(repr, unknown))}; it has {cats}."
            )
    labels = dataset.labels
    if not isinstance(labels, pd.DataFrame) or not {"name", "category"} <= set(labels.columns):
        raise TypeError(
            "dataset.labels must be a pandas DataFrame with columns 'name' and 'category'."
        )
    L = len(labels)
    if L < 2 or not np.array_equal(np.asarray(labels.index), np.arange(L)):
        raise ValueError(
            "dataset.labels must be indexed by label number 0..L-1 (row 0 = unlabeled) and hold "
            f"at least one label; got index {list(labels.index[:5])}... of length {L}."
        )
    cat_of = labels["category"].to_numpy()
    # a label whose primary category is not in dataset.categories (e.g. a Broden label table
    # listing a
    # category the reader does not load) is treated like a label of an unselected category: its
    # pixels
    # count as unlabeled, its column of the IoU matrix is 0 and its category is reported as ""
    primary = np.array([cats.index(c) if c in cats else -1 for c in cat_of], dtype=np.int64)
    primary[0] = -1
    selected = primary >= 0
    if categories is not None:
        selected &= np.isin(primary, [cats.index(c) for c in categories])
    selected[0] = False
    if not selected.any():
        raise ValueError(
            f"no label to score: none of the labels of dataset.labels has a category in "
            f"{list(categories) if categories is not None else cats}; pass categories=None or some "
            f"of {sorted(set(cat_of[1:]) & set(cats)) or cats}, or check dataset.categories."
        )
    lut = torch.where(torch.as_tensor(selected), torch.arange(L), torch.zeros(L, dtype=torch.long))
    labelcat = torch.zeros(L, len(cats))
    known = torch.as_tensor(np.flatnonzero(primary >= 0))
    labelcat[known, torch.as_tensor(primary[primary >= 0])] = 1.0
    table = pd.DataFrame(
        {
            "label": np.arange(L),
            "name": labels["name"].astype(str).to_numpy(),
            "category": [cats[p] if p >= 0 else "" for p in primary],
        }
    )
    return _LabelSpace(
        table, cats, primary, lut.to(dev), labelcat.to(dev), identity=bool(selected[1:].all())
    )


# ----------------------------------------------------------------------------------------------
# Tally (pass 2)
# ----------------------------------------------------------------------------------------------
class _Axis:
    """One axis of a bilinear resampling ``n_in -> n_out`` (align_corners=False), cut into pieces.

    Output positions sharing the source pair ``(r, min(r + 1, n_in - 1))`` form band ``r``; bands
    are
    cut into *pieces* of at most ``ceil(n_out / n_in)`` positions so that tiles have similar sizes.
    Source indices and weights are computed like PyTorch's kernel (bit-identical weights).
    """

    def __init__(self, n_in: int, n_out: int, dev: torch.device) -> None:
        scale = np.float32(n_in) / np.float32(n_out)
        src = (np.float64(scale) * (np.arange(n_out) + 0.5) - 0.5).astype(np.float32)
        src = np.maximum(src, np.float32(0))
        i0 = np.minimum(src.astype(np.int64), n_in - 1)
        l1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
        l0 = (np.float32(1) - l1).astype(np.float32)
        start = np.searchsorted(i0, np.arange(n_in), side="left")
        length = np.searchsorted(i0, np.arange(n_in), side="right") - start
        size = max(1, -(-n_out // n_in))
        band, pstart, plen = [], [], []
        for r in range(n_in):  # a few dozen bands, built once per layer geometry
            for o in range(0, int(length[r]), size):
                band.append(r)
                pstart.append(int(start[r]) + o)
                plen.append(min(size, int(length[r]) - o))
        band_a, pstart_a, plen_a = np.array(band), np.array(pstart), np.array(plen)
        counts = np.bincount(band_a, minlength=n_in)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        k = np.arange(size)[None]
        idx = np.minimum(pstart_a[:, None] + k, n_out - 1)
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a)).to(dev)  # noqa: E731
        self.n_in, self.n_out, self.size = n_in, n_out, size
        self.npieces, self.first = t(counts), t(first)  # per band
        self.start = t(pstart_a)  # per piece
        valid = k < plen_a[:, None]
        # positions past the end of a short piece get NaN weights: their values compare False
        self.w0 = t(
            np.where(valid, l0[idx], np.nan).astype(np.float32)
        )  # per piece, (pieces, size)
        self.w1 = t(np.where(valid, l1[idx], np.nan).astype(np.float32))
        self.empty_bands = bool((counts == 0).any())
        self.has_band = t(counts > 0)


class _Geometry:
    """Bilinear resampling of (h, w) maps to (sh, sw) as tiles: a tile (row piece x column piece) is
    interpolated from one 2 x 2 block of source cells."""

    def __init__(self, h: int, w: int, sh: int, sw: int, dev: torch.device) -> None:
        self.h, self.w, self.sh, self.sw = h, w, sh, sw
        self.y, self.x = _Axis(h, sh, dev), _Axis(w, sw, dev)
        # |our float32 value - F.interpolate's| <= margin_rel * max |source cell|: the sum of four
        # float32
        # products in another order differs by < 4 ulps (8 ulps allowed), and a device whose weights
        # differ by one ulp of the source coordinate moves each of the two lambdas by that much
        self.margin_rel = 2 * float(np.spacing(np.float32(max(h, w)))) + 1e-6


def _nonzero(mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``mask.nonzero(as_tuple=True)``; on the CPU through NumPy, which is many times faster."""
    if mask.device.type == "cpu":
        return tuple(torch.from_numpy(i) for i in np.nonzero(mask.numpy()))
    return mask.nonzero(as_tuple=True)


def _active_pixels(
    acts: torch.Tensor, thr: torch.Tensor, geom: _Geometry, chunk_pixels: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixels where ``F.interpolate(acts, (sh, sw), bilinear) > thr[u]``, exactly, as ``(b, u,
    y * sw + x)``, unsorted and without duplicates.

    Only tiles whose source cells can exceed the threshold are evaluated (a small fraction, since
    the
    threshold is a top quantile), and in them only the rows whose bound can. Values are computed in
    float32 from the 2 x 2 source cells; pixels within a rounding margin of the threshold are
    settled
    with ``F.interpolate`` on their whole map, so the result equals thresholding the dense maps
    (keeping
    only pixels with a source cell above ``thr``, like :func:`upsample_masks`).
    """
    B, U, h, w = acts.shape
    dev = acts.device
    acts = acts.contiguous()
    flat = acts.view(-1)
    gy, gx = geom.y, geom.x
    # A pixel's value is a convex combination of its tile's 2 x 2 source cells; ours differs from
    # F.interpolate's by at most rel * max |cell of the tile|. A tile can therefore only hold a
    # pixel
    # above ``thr`` if one of its cells x has x + rel * max(|x|, n) > thr, where n bounds the size
    # of
    # the map's negative values (0 after a ReLU).
    rel = geom.margin_rel
    if float(acts.min()) >= 0:  # x * (1 + rel) > thr implies x > thr / (1 + 2 rel)
        cell = acts > (thr / (1 + 2 * rel))[None, :, None, None]
    else:
        neg = (-acts.amin(dim=(2, 3))).clamp_(min=0)  # (B, U)
        cell = (
            acts + rel * torch.maximum(acts.abs(), neg[:, :, None, None]) > thr[None, :, None, None]
        )
    # a cell at (r, c) is a source of the tiles (r - 1 | r, c - 1 | c)
    cand = cell.clone()
    cand[:, :, :-1, :] |= cell[:, :, 1:, :]
    cell = cand.clone()
    cell[:, :, :, :-1] |= cand[:, :, :, 1:]
    if gy.empty_bands or gx.empty_bands:
        cell &= gy.has_band[None, None, :, None] & gx.has_band[None, None, None, :]
    b, u, r, c = _nonzero(cell)
    # expand every band tile into its pieces (most bands have one piece)
    npr, npc = gy.npieces.index_select(0, r), gx.npieces.index_select(0, c)
    count = npr * npc
    if bool((count != 1).any()):
        rep = torch.repeat_interleave(torch.arange(len(r), device=dev), count)
        j = torch.arange(len(rep), device=dev) - torch.repeat_interleave(
            torch.cumsum(count, 0) - count, count
        )
        b, u, r, c, npc = (t.index_select(0, rep) for t in (b, u, r, c, npc))
        pr, pc = gy.first.index_select(0, r) + j // npc, gx.first.index_select(0, c) + j % npc
    else:
        pr, pc = gy.first.index_select(0, r), gx.first.index_select(0, c)
    R, C = gy.size, gx.size
    S = geom.sh * geom.sw
    out: list[tuple[torch.Tensor, ...]] = []
    step = max(1, int(chunk_pixels) // (R * C))
    for s in range(0, len(r), step):
        tb, tu, rr, cc, py, px = (t[s : s + step] for t in (b, u, r, c, pr, pc))
        t0 = ((tb * U + tu) * h + rr) * w + cc
        dr, dc = (rr < h - 1).long() * w, (cc < w - 1).long()
        a00, a01 = flat.index_select(0, t0), flat.index_select(0, t0 + dc)
        a10, a11 = flat.index_select(0, t0 + dr), flat.index_select(0, t0 + dr + dc)
        m = rel * torch.maximum(
            torch.maximum(a00.abs(), a01.abs()), torch.maximum(a10.abs(), a11.abs())
        )
        t = thr.index_select(0, tu)
        wx0, wx1 = gx.w0.index_select(0, px), gx.w1.index_select(0, px)  # (n, C), NaN past the end
        row0 = wx0 * a00[:, None] + wx1 * a01[:, None]  # along x, source row r
        row1 = wx0 * a10[:, None] + wx1 * a11[:, None]  # along x, source row r + 1
        wy0, wy1 = gy.w0.index_select(0, py), gy.w1.index_select(0, py)  # (n, R)
        # output row k of a tile: wy0[k] * row0 + wy1[k] * row1 <= wy0[k] * max(row0) + wy1[k] *
        # max(row1)
        ninf = -math.inf
        bound = wy0 * row0.nan_to_num(nan=ninf).amax(1, keepdim=True) + wy1 * row1.nan_to_num(
            nan=ninf
        ).amax(1, keepdim=True)
        ti, ky = _nonzero(bound > (t - 2 * m)[:, None])
        kr = ti * R + ky
        v = wy0.view(-1).index_select(0, kr)[:, None] * row0.index_select(0, ti) + wy1.view(
            -1
        ).index_select(0, kr)[:, None] * row1.index_select(0, ti)  # (rows, C)
        j, kx = _nonzero(v > (t - m).index_select(0, ti)[:, None])  # maybe above thr
        tj = ti.index_select(0, j)
        sure = v.view(-1).index_select(0, j * C + kx) > (t + m).index_select(
            0, tj
        )  # certainly above
        base = gy.start.index_select(0, py) * geom.sw + gx.start.index_select(0, px)
        pos = base.index_select(0, tj) + ky.index_select(0, j) * geom.sw + kx
        qb, qu = tb.index_select(0, tj), tu.index_select(0, tj)
        if bool(sure.all()):
            out.append((qb, qu, pos))
            continue
        # within rounding distance of thr: settle these pixels with F.interpolate's own values
        (idx,), (amb,) = _nonzero(sure), _nonzero(~sure)
        out.append(tuple(z.index_select(0, idx) for z in (qb, qu, pos)))
        ab, au, ap = (z.index_select(0, amb) for z in (qb, qu, pos))
        maps, inv = torch.unique(ab * U + au, return_inverse=True)
        src = acts.view(B * U, 1, h, w)[maps]
        up, hit = (
            F.interpolate(z, size=(geom.sh, geom.sw), mode="bilinear", align_corners=False).view(-1)
            for z in (src, (src > thr.index_select(0, maps % U)[:, None, None, None]).float())
        )
        sel = inv * S + ap
        (on,) = _nonzero(
            (up.index_select(0, sel) > thr.index_select(0, au)) & (hit.index_select(0, sel) > 0)
        )
        out.append(tuple(z.index_select(0, on) for z in (ab, au, ap)))
    if not out:
        e = torch.zeros(0, dtype=torch.long, device=dev)
        return e, e, e
    return tuple(torch.cat([o[k] for o in out]) for k in range(3))  # type: ignore[return-value]


class _Tally:
    """Intersections, category-restricted activation totals and unit areas of one layer."""

    def __init__(
        self,
        units: int,
        space: _LabelSpace,
        seg_shape: tuple[int, int],
        dev: torch.device,
        chunk_pixels: int,
    ) -> None:
        L, C = space.num_labels, len(space.categories)
        self.units, self.space, self.seg_shape, self.dev = units, space, seg_shape, dev
        self.inter = torch.zeros(units, L, dtype=torch.long, device=dev)
        self.act_cat = torch.zeros(units, C, dtype=torch.long, device=dev)
        self.unit_px = torch.zeros(units, dtype=torch.long, device=dev)
        self.chunk_pixels = chunk_pixels
        self.geom: _Geometry | None = None

    def update(
        self, acts: torch.Tensor, thr: torch.Tensor, packed: torch.Tensor, sc1h: torch.Tensor
    ) -> None:
        """acts (B, U, h, w); thr (U,); packed pixel labels (B, G, sh * sw) (see ``_pack_labels``);
        sc1h (B, L) image-level label counts."""
        L, U = self.space.num_labels, self.units
        if self.geom is None:
            self.geom = _Geometry(acts.shape[2], acts.shape[3], *self.seg_shape, self.dev)
        b, u, pos = _active_pixels(acts, thr, self.geom, self.chunk_pixels)
        if len(b) == 0:
            return
        key = b * U + u
        count = torch.bincount(key, minlength=acts.shape[0] * U)  # (image, unit) pairs that fire
        (pairs,) = _nonzero(count)
        n = len(pairs)
        lut = torch.empty_like(count)
        lut[pairs] = torch.arange(n, device=self.dev)
        pid, area, pb, pu = lut.index_select(0, key), count[pairs], pairs // U, pairs % U
        self.unit_px.index_add_(0, pu, area)
        hist = area[:, None] * sc1h[pb]  # image-level labels cover all
        if packed.shape[1]:
            S = self.seg_shape[0] * self.seg_shape[1]
            G = packed.shape[1]
            base = b * (G * S) + pos  # packed is (B, G, sh * sw)
            codes = packed.view(-1).index_select(
                0, (base[:, None] + torch.arange(G, device=self.dev) * S).view(-1)
            )
            lab = _unpack_labels(codes, L).view(len(key), -1)  # K (or a few more) per pixel
            counts = torch.bincount((pid[:, None] * L + lab).view(-1), minlength=n * L).view(n, L)
            counts[:, 0] = 0  # unlabeled pixels
            hist += counts
        self.inter.index_add_(0, pu, hist)
        present = ((hist > 0).float() @ self.space.labelcat) > 0  # categories touched, (n, C)
        self.act_cat.index_add_(0, pu, area[:, None] * present.long())

    def result(
        self,
        layer: str,
        thresholds: torch.Tensor,
        label_px: torch.Tensor,
        n_images: int,
        quantile: float,
        iou_threshold: float,
        method: str,
        error: np.ndarray | None,
    ) -> DissectionResult:
        inter = self.inter.cpu().numpy()
        act_cat = self.act_cat.cpu().numpy()
        G = label_px.cpu().numpy()
        prim = self.space.primary
        act_lab = np.where(prim[None, :] >= 0, act_cat[:, np.clip(prim, 0, None)], 0)
        denom = (act_lab + G[None, :] - inter).astype(np.float64)
        iou = np.divide(inter, denom, out=np.zeros(denom.shape), where=denom > 0)
        iou[:, 0] = 0.0
        table = self.space.table.copy()
        table["pixels"] = G
        return DissectionResult(
            layer=layer,
            thresholds=thresholds.cpu().numpy().astype(np.float32),
            iou=iou,
            labels=table,
            intersection=inter,
            activation=act_cat,
            unit_pixels=self.unit_px.cpu().numpy(),
            label_pixels=G,
            categories=list(self.space.categories),
            n_images=n_images,
            quantile=quantile,
            iou_threshold=iou_threshold,
            threshold_method=method,
            threshold_error=error,
        )


def _label_bits(L: int) -> int:
    return 16 if L <= 1 << 16 else 32


def _pack_labels(pix: torch.Tensor, L: int) -> torch.Tensor:
    """Pixel label layers (B, K, sh, sw) packed 4 (or 2, for more than 65536 labels) to an int64:
    (B, ceil(K / per), sh * sw). One gather per pixel then fetches all its layers."""
    bits = _label_bits(L)
    per = 64 // bits
    B, K = pix.shape[:2]
    G = -(-K // per)
    flat = pix.reshape(B, K, -1)
    if G * per != K:
        flat = torch.cat([flat, flat.new_zeros(B, G * per - K, flat.shape[2])], dim=1)
    flat = flat.view(B, G, per, -1)
    out = flat[:, :, 0].clone()
    for j in range(1, per):
        out |= flat[:, :, j] << (bits * j)
    return out


def _unpack_labels(codes: torch.Tensor, L: int) -> torch.Tensor:
    """Inverse of :func:`_pack_labels` for gathered codes (M,) -> labels (M, per)."""
    bits = _label_bits(L)
    shifts = torch.arange(0, 64, bits, device=codes.device)
    return (codes[:, None] >> shifts) & ((1 << bits) - 1)


def _label_batch(
    dataset: Any, idx: list[int], space: _LabelSpace, dev: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images or None, packed pixel labels (B, G, sh * sw), image-level label counts (B, L), label
    pixel
    counts G (L,)) for one batch.

    Uses ``dataset.labels_batch(indices) -> (pixel_labels, scalar_labels)`` when the dataset has it
    (no image decoding), else ``segmentation_batch``.
    """
    fast = getattr(dataset, "labels_batch", None)
    if callable(fast):
        images, (pix, sc) = None, fast(idx)
    else:
        images, pix, sc = dataset.segmentation_batch(idx)
    L = space.num_labels
    B = len(idx)
    pix = torch.as_tensor(pix).to(dev, torch.long)
    sc = torch.as_tensor(sc).to(dev, torch.long).reshape(B, -1)
    sh, sw = (int(s) for s in dataset.seg_shape)
    if pix.ndim != 4 or pix.shape[0] != B or tuple(pix.shape[2:]) != (sh, sw):
        raise ValueError(
            f"segmentation_batch returned pixel labels of shape {tuple(pix.shape)}; expected "
            f"({B}, K, {sh}, {sw}) (dataset.seg_shape = {(sh, sw)})."
        )
    for what, t in (("pixel", pix), ("image-level", sc)):
        if t.numel():
            lo, hi = (int(v) for v in torch.aminmax(t))
            if lo < 0 or hi >= L:
                raise ValueError(
                    f"{what} label numbers must lie in 0..{L - 1} (rows of dataset.labels), "
                    f"found {lo}..{hi}."
                )
    if not space.identity:
        pix, sc = space.lut[pix], space.lut[sc]
    sc1h = torch.zeros(B, L, dtype=torch.long, device=dev)
    if sc.shape[1]:
        sc1h.scatter_add_(1, sc, torch.ones_like(sc))
    sc1h[:, 0] = 0
    return images, _pack_labels(pix, L), sc1h, _label_pixels(pix, sc1h, L)


def _label_pixels(pix: torch.Tensor, sc1h: torch.Tensor, L: int) -> torch.Tensor:
    g = (
        torch.bincount(pix.flatten(), minlength=L)
        if pix.numel()
        else torch.zeros(L, dtype=torch.long, device=sc1h.device)
    )
    g = g + sc1h.sum(dim=0) * (pix.shape[2] * pix.shape[3])
    g[0] = 0
    return g


# ----------------------------------------------------------------------------------------------
# Activation sources
# ----------------------------------------------------------------------------------------------
class _Spool:
    """Activations written to a temporary file in pass 1 and read back in order in pass 2 (plain
    reads,
    not a memory map, so the process memory stays flat)."""

    def __init__(self, folder: str, layer: str) -> None:
        fd, self.path = tempfile.mkstemp(prefix="dissect-", suffix=".f32", dir=folder)
        self.f = os.fdopen(fd, "wb")
        self.reader = None

    def write(self, a: torch.Tensor) -> None:
        self.f.write(a.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())

    def read(self, shape: tuple[int, ...]) -> torch.Tensor:
        if self.reader is None:
            self.f.close()
            self.reader = open(self.path, "rb")
        out = np.empty(shape, dtype=np.float32)
        if self.reader.readinto(memoryview(out).cast("B")) != out.nbytes:
            raise RuntimeError(f"activation spool {self.path} is truncated.")
        return torch.from_numpy(out)

    def close(self) -> None:
        for f in (self.f, self.reader):
            if f is not None:
                f.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _images_batch(dataset: Any, idx: list[int]) -> torch.Tensor:
    fast = getattr(dataset, "images_batch", None)
    x = torch.as_tensor(fast(idx) if callable(fast) else dataset.segmentation_batch(idx)[0])
    check_images(
        x, name="dataset images"
    )  # float in [0, 1] before any transform: not 0..255, no NaN
    return x


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------
def dissect(
    source: nn.Module | np.ndarray | torch.Tensor | Mapping[str, Any],
    dataset: Any,
    layers: str | Sequence[str] | None = None,
    *,
    quantile: float = QUANTILE,
    thresholds: Any = None,
    iou_threshold: float = IOU_THRESHOLD,
    categories: Sequence[str] | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    progress: bool = True,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    quantile_method: str = "auto",
    sketch_bins: int = 8192,
    max_exact_bytes: int = 512 << 20,
    spool_dir: str | os.PathLike | None = None,
    chunk_pixels: int = 1 << 23,
) -> DissectionResult | dict[str, DissectionResult]:
    """Network Dissection of one or several layers against a Broden-style ``dataset``.

    ``source``: a model (activations of ``layers`` are recorded with :func:`interpkit.capture` on
    the
    dataset images, passed through ``transform`` first, e.g. a normalisation), or precomputed
    activations (N, units, h, w) in dataset order (NumPy array, memmap or tensor), or a mapping
    ``{layer: activations}``.

    Returns a :class:`DissectionResult` when ``layers`` is a string (or ``source`` a single array),
    and
    a ``dict`` layer -> result when ``layers`` is a list (or ``source`` a mapping).

    ``thresholds`` (per-unit array, or a mapping per layer) skips the quantile pass. Otherwise the
    thresholds are exact (top-tail buffers) when those buffers fit in ``max_exact_bytes`` (or
    ``quantile_method="exact"``), else a :class:`HistogramQuantileSketch` with ``sketch_bins`` bins
    (error bound in ``result.threshold_error``). ``categories`` keeps only labels whose primary
    category is listed (a requested category missing from ``dataset.categories`` raises
    ``KeyError``);
    labels whose primary category is not in ``dataset.categories`` are treated as unselected (their
    pixels count as unlabeled, their IoU column is 0, their category is ""). A model source runs
    one forward pass per image: pass 1 writes the activations
    to a temporary file (``spool_dir``) that pass 2 reads back. ``chunk_pixels`` bounds the
    upsampled maps held at once.
    """
    _check_quantile(quantile)
    _check_iou_threshold(iou_threshold)
    quantile, iou_threshold = float(quantile), float(iou_threshold)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if quantile_method not in ("auto", "exact", "sketch"):
        raise ValueError(
            f"quantile_method must be 'auto', 'exact' or 'sketch', got {quantile_method!r}."
        )
    dev = resolve_device(device, needs_float64="dissect")
    space = _label_space(dataset, categories, dev)
    n = len(dataset)
    if n < 1:
        raise ValueError("the dataset is empty.")
    seg_shape = tuple(int(s) for s in dataset.seg_shape)

    # -- what to read from -------------------------------------------------------------------
    model: nn.Module | None = None
    arrays: dict[str, Any] = {}
    if isinstance(source, nn.Module):
        if layers is None:
            cands = [nm for nm, m in source.named_modules() if isinstance(m, nn.Conv2d)][-5:]
            raise ValueError(
                "dissecting a model needs `layers` (a name or a list of names); conv layers of "
                f"this model include {cands} (see interpkit.models.conv_layer_names)."
            )
        single = isinstance(layers, str)
        names = [layers] if single else list(layers)
        resolve_modules(source, names)
        model = source
    elif isinstance(source, Mapping):
        if not source:
            raise ValueError("the mapping of activations is empty.")
        single, names, arrays = (
            False,
            [str(k) for k in source],
            {str(k): v for k, v in source.items()},
        )
    elif isinstance(source, (np.ndarray, torch.Tensor)) or hasattr(source, "shape"):
        if layers is not None and not isinstance(layers, str):
            raise ValueError(
                "with one array of activations, `layers` is at most one name (used as label)."
            )
        single, names = True, [layers or "activations"]
        arrays = {names[0]: source}
    else:
        raise TypeError(
            f"source must be a torch model, an array of activations (N, units, h, w) or a mapping "
            f"layer -> activations; got {type(source).__name__}."
        )
    for nm, a in arrays.items():
        _check_acts_array(a, n, f"activations of {nm!r}" if len(arrays) > 1 else "activations")

    thr_given: dict[str, torch.Tensor] = {}
    if thresholds is not None:
        tmap = (
            thresholds
            if isinstance(thresholds, Mapping)
            else ({names[0]: thresholds} if len(names) == 1 else None)
        )
        if tmap is None or set(map(str, tmap)) != set(names):
            raise ValueError(
                f"thresholds must be one array (one layer) or a mapping with exactly the layers "
                f"{names}."
            )
        for k, v in tmap.items():
            t = _as_tensor(
                v if isinstance(v, torch.Tensor) else np.asarray(v, dtype=np.float32), dev
            )
            if t.ndim != 1 or not bool(torch.isfinite(t).all()):
                raise ValueError(
                    f"thresholds for {k!r} must be a finite 1-D array (one value per unit)."
                )
            thr_given[str(k)] = t

    # -- batches of activations ----------------------------------------------------------------
    from tqdm.auto import tqdm

    starts = list(range(0, n, batch_size))
    shapes: dict[str, tuple[int, int, int]] = {}
    orig_dev = model_device(model) if model is not None else None
    modes = contextlib.ExitStack()  # the model's train/eval modes, given back at the end

    def forward(idx: list[int], images: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x = (images if images is not None else _images_batch(dataset, idx)).to(dev, torch.float32)
        if transform is not None:
            x = transform(x)
        with torch.inference_mode(), capture(model, names, stop=True) as acts:
            model(x)
        for nm in names:
            if nm not in acts:
                raise ValueError(
                    f"layer {nm!r} did not run in the model's forward pass (e.g. an auxiliary "
                    f"branch "
                    "skipped in eval mode); choose a layer on the path from input to output."
                )
            if not isinstance(acts[nm], torch.Tensor):
                raise ValueError(
                    f"layer {nm!r} outputs a {type(acts[nm]).__name__}, not a tensor; dissection "
                    f"needs "
                    "4-D conv feature maps (N, units, h, w): choose a conv layer inside it."
                )
        return {nm: acts[nm].float() for nm in names}

    def from_arrays(s: int, e: int) -> dict[str, torch.Tensor]:
        return {nm: _as_tensor(arrays[nm][s:e], dev) for nm in names}

    def check(out: dict[str, torch.Tensor], s: int) -> None:
        for nm, a in out.items():
            if a.ndim != 4:
                raise ValueError(
                    f"layer {nm!r} gives outputs of shape {tuple(a.shape)}; dissection needs 4-D "
                    "conv feature maps (N, units, h, w); choose a convolutional layer."
                )
            shp = tuple(int(v) for v in a.shape[1:])
            if shapes.setdefault(nm, shp) != shp:
                raise ValueError(
                    f"layer {nm!r} changed shape from {shapes[nm]} to {shp} at image {s}; "
                    "all dataset images must have one size."
                )
            if nm in thr_given and len(thr_given[nm]) != shp[0]:
                raise ValueError(
                    f"thresholds for {nm!r} have {len(thr_given[nm])} values but the layer has "
                    f"{shp[0]} units."
                )
            _check_finite(a, f"activations of {nm!r}", s)

    spools: dict[str, _Spool] = {}
    tmpdir = None
    try:
        if model is not None:
            modes.enter_context(eval_mode(model.to(dev)))
        # -- pass 1: thresholds ------------------------------------------------------------------
        thr: dict[str, torch.Tensor] = dict(thr_given)
        errors: dict[str, np.ndarray | None] = {nm: None for nm in names}
        methods = {nm: "given" for nm in names}
        need = [nm for nm in names if nm not in thr_given]
        if need:
            if model is not None:
                tmpdir = tempfile.TemporaryDirectory(prefix="interpkit-dissect-", dir=spool_dir)
                spools = {nm: _Spool(tmpdir.name, nm) for nm in names}
            est: dict[str, Any] = {}
            for s in tqdm(starts, desc="dissect: thresholds", disable=not progress, leave=False):
                idx = list(range(s, min(s + batch_size, n)))
                out = forward(idx) if model is not None else from_arrays(s, idx[-1] + 1)
                check(out, s)
                for nm, a in out.items():
                    if nm in spools:
                        spools[nm].write(a)
                    if nm not in need:
                        continue
                    if nm not in est:
                        U, h, w = shapes[nm]
                        n_total = n * h * w
                        m = n_total - _position(n_total, quantile)[0]
                        exact = quantile_method == "exact" or (
                            quantile_method == "auto"
                            and 3 * U * max(m, 4096) * 4 <= max_exact_bytes
                        )
                        est[nm] = (
                            TopTailQuantile(U, n_total, quantile, dev)
                            if exact
                            else HistogramQuantileSketch(U, quantile, sketch_bins, dev)
                        )
                        methods[nm] = "exact" if exact else "sketch"
                    est[nm].update(_unit_major(a))
            for nm in need:
                r = est[nm].result()
                if isinstance(r, tuple):
                    thr[nm], errors[nm] = r[0], r[1].cpu().numpy()
                else:
                    thr[nm] = r
        # -- pass 2: tally -------------------------------------------------------------------------
        tallies: dict[str, _Tally] = {}
        label_px = torch.zeros(space.num_labels, dtype=torch.long, device=dev)
        for s in tqdm(starts, desc="dissect: tally", disable=not progress, leave=False):
            idx = list(range(s, min(s + batch_size, n)))
            images, packed, sc1h, batch_px = _label_batch(dataset, idx, space, dev)
            if spools:
                out = {nm: spools[nm].read((len(idx), *shapes[nm])).to(dev) for nm in names}
            elif model is not None:
                out = forward(idx, None if images is None else torch.as_tensor(images))
                check(out, s)
            else:
                out = from_arrays(s, idx[-1] + 1)
                if not need:
                    check(out, s)
            label_px += batch_px
            for nm, a in out.items():
                if nm not in tallies:
                    tallies[nm] = _Tally(a.shape[1], space, seg_shape, dev, chunk_pixels)
                tallies[nm].update(a, thr[nm].to(dev), packed, sc1h)
    finally:
        for sp in spools.values():
            sp.close()
        if tmpdir is not None:
            tmpdir.cleanup()
        modes.close()
        if model is not None:
            model.to(orig_dev)

    results = {
        nm: tallies[nm].result(
            nm, thr[nm], label_px, n, quantile, iou_threshold, methods[nm], errors[nm]
        )
        for nm in names
    }
    return results[names[0]] if single else results


# ----------------------------------------------------------------------------------------------
# Random rotation of the representation (Sec. 3.2 of the paper)
# ----------------------------------------------------------------------------------------------
def _one_blas_thread():
    """Run small dense linear algebra on one BLAS thread: on a busy 2-core machine OpenBLAS's
    threads wait
    on each other and a 128 x 128 Schur form takes seconds instead of milliseconds."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def random_rotation(n: int, seed: int = 0) -> np.ndarray:
    """A Haar-random rotation in SO(n) (float64): QR of a Gaussian matrix with signs fixed, det
    +1."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}.")
    rng = np.random.default_rng(seed)
    with _one_blas_thread():
        q, r = np.linalg.qr(rng.standard_normal((n, n)))
    q = q * np.sign(np.diag(r))[None, :]
    with _one_blas_thread():
        det = np.linalg.det(q)
    if det < 0:
        q[:, 0] = -q[:, 0]
    return q


def fractional_rotation(Q: np.ndarray, alpha: float) -> np.ndarray:
    """``Q ** alpha`` for a rotation ``Q`` (orthogonal, det +1) and ``alpha`` in [0, 1], real
    orthogonal.

    Real Schur form ``Q = Z T Z^T``: ``T`` is block diagonal with 2x2 plane rotations by ``theta``
    and
    1x1 entries +-1; each plane rotation becomes a rotation by ``alpha * theta`` and pairs of -1 a
    rotation by ``alpha * pi``. ``alpha = 0`` gives the identity, ``alpha = 1`` gives ``Q``.
    """
    import scipy.linalg

    Q = np.asarray(Q, dtype=np.float64)
    if Q.ndim != 2 or Q.shape[0] != Q.shape[1]:
        raise ValueError(f"Q must be a square matrix, got shape {Q.shape}.")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}.")
    with _one_blas_thread():
        if not np.allclose(Q @ Q.T, np.eye(Q.shape[0]), atol=1e-8):
            raise ValueError(
                "Q is not orthogonal (Q @ Q.T != I); build it with random_rotation(n)."
            )
        if np.linalg.det(Q) < 0:
            raise ValueError(
                "Q has determinant -1 (a reflection), which has no real fractional power; "
                "use a rotation (det +1), e.g. random_rotation(n)."
            )
        return _fractional_rotation(Q, float(alpha), scipy.linalg)


def _fractional_rotation(Q: np.ndarray, alpha: float, linalg: Any) -> np.ndarray:
    n = Q.shape[0]
    T, Z = linalg.schur(Q, output="real")
    Ta = np.zeros_like(T)
    neg: list[int] = []
    i = 0
    while i < n:
        if i + 1 < n and abs(T[i + 1, i]) > 1e-12:
            theta = math.atan2((T[i + 1, i] - T[i, i + 1]) / 2, (T[i, i] + T[i + 1, i + 1]) / 2)
            c, s = math.cos(alpha * theta), math.sin(alpha * theta)
            Ta[i : i + 2, i : i + 2] = [[c, -s], [s, c]]
            i += 2
        else:
            if T[i, i] > 0:
                Ta[i, i] = 1.0
            else:
                neg.append(i)
            i += 1
    c, s = math.cos(alpha * math.pi), math.sin(alpha * math.pi)
    for a, b in zip(neg[0::2], neg[1::2]):  # -I on a plane is a rotation by pi there
        Ta[a, a] = Ta[b, b] = c
        Ta[a, b], Ta[b, a] = -s, s
    R = Z @ Ta @ Z.T
    u, _, vt = np.linalg.svd(R)  # remove rounding drift: nearest orthogonal matrix
    return u @ vt


def rotate_activations(
    acts: np.ndarray | torch.Tensor, R: np.ndarray | torch.Tensor, batch_size: int = 256
) -> np.ndarray | torch.Tensor:
    """Rotate the channel vector at every position: ``out[:, i] = sum_j R[i, j] * acts[:, j]``.

    Works on (N, units, h, w) arrays or tensors (returns the same kind, float32), in batches.
    """
    _check_acts_array(acts, None, "acts")
    U = int(acts.shape[1])
    Rt = torch.as_tensor(
        np.asarray(R) if not isinstance(R, torch.Tensor) else R, dtype=torch.float32
    )
    if Rt.shape != (U, U):
        raise ValueError(
            f"R must be {U} x {U} for activations with {U} units, got {tuple(Rt.shape)}."
        )
    if isinstance(acts, torch.Tensor):
        return torch.einsum("ij,njhw->nihw", Rt.to(acts.device), acts.float())
    out = np.empty(acts.shape, dtype=np.float32)
    for s in range(0, len(acts), batch_size):
        out[s : s + batch_size] = torch.einsum(
            "ij,njhw->nihw", Rt, _as_tensor(acts[s : s + batch_size], Rt.device)
        ).numpy()
    return out


class ChannelRotation(nn.Module):
    """A fixed channel rotation ``x -> R x`` at every position of a (N, C, h, w) feature map."""

    def __init__(self, R: np.ndarray | torch.Tensor) -> None:
        super().__init__()
        self.register_buffer(
            "R",
            torch.as_tensor(
                np.asarray(R) if not isinstance(R, torch.Tensor) else R, dtype=torch.float32
            ),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.R.shape[1]:
            r, c = self.R.shape
            raise ValueError(
                f"R is {r} x {c} but the feature map has {x.shape[1] if x.ndim > 1 else '?'} "
                f"channels "
                f"(shape {tuple(x.shape)}); use an R with one column per channel of this 4-D map."
            )
        return torch.einsum("ij,njhw->nihw", self.R.to(x.dtype), x)


class RotatedOutput(nn.Module):
    """``inner`` followed by ``rotate`` (R) and ``unrotate`` (R^T): the network computes the same
    function while ``<layer>.rotate`` exposes the rotated representation for dissection."""

    def __init__(self, inner: nn.Module, R: np.ndarray | torch.Tensor) -> None:
        super().__init__()
        R = torch.as_tensor(
            np.asarray(R) if not isinstance(R, torch.Tensor) else R, dtype=torch.float32
        )
        if R.ndim != 2 or R.shape[0] != R.shape[1]:
            raise ValueError(
                f"R must be a square matrix (channels x channels), got shape {tuple(R.shape)}."
            )
        if not torch.allclose(
            R.double() @ R.double().T, torch.eye(len(R), dtype=torch.float64), atol=1e-4
        ):
            raise ValueError(
                "R is not orthogonal (R @ R.T != I), so R then R^T would change the network's "
                "outputs; build it with random_rotation(n) or fractional_rotation(Q, alpha)."
            )
        self.inner, self.rotate, self.unrotate = (
            inner,
            ChannelRotation(R),
            ChannelRotation(R.T.contiguous()),
        )

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.unrotate(self.rotate(self.inner(*args, **kwargs)))


def with_rotation(model: nn.Module, layer: str, R: np.ndarray | torch.Tensor) -> nn.Module:
    """A copy of ``model`` whose ``layer`` output is rotated by ``R`` then by ``R^T`` (so the
    outputs
    match up to rounding); dissect ``f"{layer}.rotate"`` to score the rotated basis."""
    resolve_modules(model, [layer])
    new = copy.deepcopy(model)
    parent_name, _, child = layer.rpartition(".")
    parent = new.get_submodule(parent_name) if parent_name else new
    inner = getattr(parent, child) if not child.isdigit() else parent[int(child)]
    wrapped = RotatedOutput(inner, R).to(model_device(model))
    if child.isdigit() and isinstance(parent, (nn.Sequential, nn.ModuleList)):
        parent[int(child)] = wrapped
    else:
        setattr(parent, child, wrapped)
    return new
