"""Streamed statistics shared by the methods: per-unit upper quantiles (exact top-tail buffers or
a bounded-memory histogram sketch, both mergeable across shards of a stream), the top images of a
unit by peak activation, and intersection over union from counts.

Every estimator follows one protocol: ``update(values)`` with a block of shape (units, M),
``merge(other)`` with an estimator of another shard of the same stream, ``result()`` at the end.
Merging gives exactly what one estimator would have computed from the concatenated stream (the
sketch: within the sum of both shards' error bounds, see ``HistogramQuantileSketch.merge``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .checks import check_fraction, check_positive_int
from .device import resolve_device

__all__ = ["quantile_thresholds", "top_images", "iou"]


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

    def merge(self, other: TopTailQuantile) -> TopTailQuantile:
        """Add the values another shard of the same stream saw (same units, ``n_total``, quantile).

        Exact: the top ``m`` of the union is the top ``m`` of both shards' top ``m``.
        """
        if (other.units, other.n_total, other.quantile) != (
            self.units,
            self.n_total,
            self.quantile,
        ):
            raise ValueError("can only merge estimators with the same units, n_total and quantile.")
        other._flush()
        self.pending.append(other.buf.to(self.device))
        self.pending_cols += other.buf.shape[1]
        self.seen += other.seen
        self._flush()
        return self

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
    (returned by ``result`` as ``error``), and ``w <= 2 * (max - min) / (bins - 1)`` (the range
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
        self.extra: torch.Tensor | float = 0.0  # error added by merging shards on other grids
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

    def merge(self, other: HistogramQuantileSketch) -> HistogramQuantileSketch:
        """Add the counts of another shard's sketch (same units, quantile and bins).

        This sketch's range first grows to cover the other's values; each of the other's bins is
        then counted at its centre. The error bound grows by the other's bin width (both shards'
        widths are returned by ``result``); shards that saw identical first blocks (or a merge
        into an empty sketch) are combined exactly.
        """
        if (other.units, other.quantile, other.bins) != (self.units, self.quantile, self.bins):
            raise ValueError("can only merge sketches with the same units, quantile and bins.")
        if other.lo is None:
            return self
        if self.lo is None:
            for k in ("counts", "lo", "width", "vmin", "vmax"):
                setattr(self, k, getattr(other, k).clone().to(self.device))
            self.seen, self.extra = other.seen, other.extra
            return self
        self._expand(other.vmin.to(self.device), other.vmax.to(self.device))
        centre = other.lo[:, None] + other.width[:, None] * (
            torch.arange(other.bins, device=other.device, dtype=torch.float64) + 0.5
        )
        c = centre.to(self.device).clamp(other.vmin[:, None], other.vmax[:, None])
        idx = torch.floor((c - self.lo[:, None]) / self.width[:, None]).clamp_(0, self.bins - 1)
        self.counts.scatter_add_(1, idx.long(), other.counts.to(self.device))
        exact = bool(torch.equal(other.lo, self.lo) and torch.equal(other.width, self.width))
        self.extra = self.extra + other.extra + (0.0 if exact else other.width.to(self.device))
        self.seen += other.seen
        return self

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
        return _lerp(a, b, t).float(), self.width + self.extra


def quantile_thresholds(
    activations: np.ndarray | torch.Tensor,
    quantile: float = 0.005,
    *,
    method: str = "exact",
    bins: int = 8192,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Per-unit ``1 - quantile`` levels of activations (N, units, h, w), streamed in batches.

    Args:
        activations: (N, units, h, w) array, memmap or tensor.
        quantile: upper tail fraction, in (0, 1) (0.005: the 0.995 level).
        method: ``"exact"`` (top-tail buffers, equal to ``numpy.quantile`` over axes (0, 2, 3)) or
            ``"sketch"`` (``HistogramQuantileSketch``, memory independent of N).
        bins: histogram bins of the sketch.
        batch_size: images per block.
        device: where to compute (default: :func:`interpkit.device.resolve_device`).

    Returns:
        The thresholds, float32 array of shape (units,).
    """
    _check_quantile(quantile)
    batch_size = check_positive_int("batch_size", batch_size)
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


def top_images(activations: np.ndarray | torch.Tensor, unit: int, k: int = 8) -> np.ndarray:
    """Indices of the ``k`` images where ``unit`` reaches its highest activation (max over the map).

    Args:
        activations: (N, units, h, w) (or (N, units)) array or tensor.
        unit: the unit (channel) index.
        k: how many images.

    Returns:
        Image indices, highest peak first (ties in index order), int array of length ``min(k, N)``.
    """
    a = activations[:, unit]
    peak = np.asarray(
        a.reshape(len(a), -1).max(axis=1)
        if isinstance(a, np.ndarray)
        else a.detach().reshape(len(a), -1).amax(dim=1).cpu().numpy()
    )
    return np.argsort(-peak, kind="stable")[:k]


def _check_quantile(q: float) -> float:
    return check_fraction(
        "quantile",
        q,
        open_interval=True,
        hint="the paper uses 0.005, i.e. the top 0.5% of activations",
    )


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


def iou(intersection: np.ndarray, area_a: np.ndarray, area_b: np.ndarray) -> np.ndarray:
    """Intersection over union from counts: ``I / (A + B - I)``, 0 where the union is empty.

    Args:
        intersection: counts ``|a & b|`` (any shape).
        area_a: counts ``|a|``, broadcast against ``intersection``.
        area_b: counts ``|b|``, broadcast against ``intersection``.

    Returns:
        float64 array of the broadcast shape.
    """
    inter = np.asarray(intersection)
    denom = (np.asarray(area_a) + np.asarray(area_b) - inter).astype(np.float64)
    return np.divide(inter, denom, out=np.zeros(denom.shape), where=denom > 0)
