"""The entry point :func:`dissect`: one path for every source.

Every source (a model, an array of feature maps, a mapping of arrays) becomes a stream of
per-batch feature maps ``{layer: (B, U, h, w)}`` in dataset order (``_Source``). Pass 1 feeds
the stream to the per-unit quantile estimators of ``interpkit.stats`` (skipped when thresholds
are given); pass 2 feeds it, with the labels of the same images, to ``tally_shard``.

What is read from the dataset is only what the passes need: with precomputed features no image is
decoded (only labels, through ``dataset.labels_batch`` when it has one); with a model each image
is decoded once. A model's feature maps (and, for a dataset without ``labels_batch``, the labels
decoded with its images) are spooled to a temporary file in pass 1 and read back in pass 2.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..capture import iter_activations, resolve_modules
from ..checks import check_images, check_positive_int
from ..device import resolve_device
from ..distributed import Shard, all_gather_objects, all_gather_rows, all_reduce_sum, shard
from ..stats import (
    HistogramQuantileSketch,
    TopTailQuantile,
    _as_tensor,
    _check_acts_array,
    _check_finite,
    _check_quantile,
    _position,
    _unit_major,
)
from .labels import _label_batch, _label_space, _LabelSpace
from .result import IOU_THRESHOLD, QUANTILE, DissectionResult, _check_iou_threshold
from .tally import _Meta, _Tally, tally_shard


@dataclass
class DissectOptions:
    """Memory and precision knobs of :func:`~interpkit.dissection.dissect` (the defaults suit every
    chapter).

    Attributes:
        quantile_method: ``"auto"`` (exact when the top-tail buffers fit ``max_exact_bytes``),
            ``"exact"`` or ``"sketch"`` (``interpkit.stats.HistogramQuantileSketch``).
        sketch_bins: histogram bins of the sketch.
        max_exact_bytes: memory allowed for the exact top-tail buffers of one layer.
        spool_dir: folder of the temporary spool of a model's feature maps (default: the system's).
        chunk_pixels: bound on the upsampled pixels evaluated at once in the tally.
    """

    quantile_method: str = "auto"
    sketch_bins: int = 8192
    max_exact_bytes: int = 512 << 20
    spool_dir: str | os.PathLike | None = None
    chunk_pixels: int = 1 << 23

    def check(self) -> None:
        if self.quantile_method not in ("auto", "exact", "sketch"):
            raise ValueError(
                f"quantile_method must be 'auto', 'exact' or 'sketch', got "
                f"{self.quantile_method!r}."
            )


# ----------------------------------------------------------------------------------------------
# Sources: every source is a stream of per-batch feature maps
# ----------------------------------------------------------------------------------------------
@dataclass
class _Source:
    """Where the feature maps come from: a model run on the dataset images, or arrays."""

    names: list[str]
    single: bool
    model: nn.Module | None = None
    arrays: dict[str, Any] | None = None
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None

    def stream(self, run: _Run, labels: bool) -> Iterator[tuple[list[int], dict, Any]]:
        """Per batch: the rows, ``{layer: feature maps (B, U, h, w)}`` and, if ``labels``, the
        labels of the same rows as the dataset gives them (else ``None``)."""
        if len(run.part) == 0:
            return
        if self.model is None:
            for idx in run.batches("dissect"):
                lab = _read(run.dataset, idx, images=False, labels=True)[1] if labels else None
                s, e = idx[0], idx[-1] + 1
                yield idx, {nm: _as_tensor(self.arrays[nm][s:e], run.dev) for nm in self.names}, lab
            return
        rows_of = _ImageRows(run.dataset, run.batch_size, labels, run.part)
        for rows, acts in iter_activations(
            self.model,
            rows_of,
            self.names,
            batch_size=run.batch_size,
            device=run.dev,
            transform=self.transform,
            progress=run.progress,
        ):
            for nm in self.names:
                _check_layer_output(nm, acts[nm])
            feats = {nm: acts[nm].float() for nm in self.names}
            off = run.part.start
            yield list(range(off + rows.start, off + rows.stop)), feats, rows_of.labels


class _ImageRows:
    """The dataset's images as ``interpkit.capture.iter_activations`` reads them (item by
    item): each batch is decoded once, with its labels when they are asked for (kept in
    ``labels``). Only this process's share ``part`` is seen: item ``i`` is dataset row
    ``part.start + i``."""

    def __init__(self, dataset: Any, batch_size: int, labels: bool, part: Shard) -> None:
        self.dataset, self.batch_size, self.want_labels = dataset, batch_size, labels
        self.part = part
        # not named ``images``: iter_activations would take this for an ImageSet
        self.start, self.batch, self.labels = 0, torch.zeros(0), None

    def __len__(self) -> int:
        return len(self.part)

    def __getitem__(self, i: int) -> torch.Tensor:
        if not self.start <= i < self.start + len(self.batch):
            o = self.part.start
            idx = list(range(o + i, o + min(i + self.batch_size, len(self))))
            self.batch, self.labels = _read(self.dataset, idx, True, self.want_labels)
            self.start = i
        return self.batch[i - self.start]


def _check_layer_output(nm: str, out: Any) -> None:
    if not isinstance(out, torch.Tensor):
        raise ValueError(
            f"layer {nm!r} outputs a {type(out).__name__}, not a tensor; dissection needs "
            "4-D conv feature maps (N, units, h, w): choose a conv layer inside it."
        )


def _as_source(source: Any, layers: Any, n: int) -> _Source:
    """The ``_Source`` of a model, an array or a mapping layer -> array."""
    if isinstance(source, nn.Module):
        if layers is None:
            cands = [nm for nm, m in source.named_modules() if isinstance(m, nn.Conv2d)][-5:]
            raise ValueError(
                "dissecting a model needs `layers` (a name or a list of names); conv layers of "
                f"this model include {cands} (see interpkit.models.conv_layer_names)."
            )
        names = [layers] if isinstance(layers, str) else list(layers)
        resolve_modules(source, names)
        return _Source(names, isinstance(layers, str), model=source)
    if isinstance(source, Mapping):
        if not source:
            raise ValueError("the mapping of activations is empty.")
        arrays = {str(k): v for k, v in source.items()}
    elif isinstance(source, (np.ndarray, torch.Tensor)) or hasattr(source, "shape"):
        if layers is not None and not isinstance(layers, str):
            raise ValueError(
                "with one array of activations, `layers` is at most one name (used as label)."
            )
        arrays = {layers or "activations": source}
    else:
        raise TypeError(
            f"source must be a torch model, an array of activations (N, units, h, w) or a mapping "
            f"layer -> activations; got {type(source).__name__}."
        )
    for nm, a in arrays.items():
        _check_acts_array(a, n, f"activations of {nm!r}" if len(arrays) > 1 else "activations")
    return _Source(list(arrays), not isinstance(source, Mapping), arrays=arrays)


def _given_thresholds(thresholds: Any, names: list[str], dev: torch.device) -> dict:
    """The caller's thresholds per layer (checked), or ``{}``."""
    if thresholds is None:
        return {}
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
    out = {}
    for k, v in tmap.items():
        t = _as_tensor(v if isinstance(v, torch.Tensor) else np.asarray(v, dtype=np.float32), dev)
        if t.ndim != 1 or not bool(torch.isfinite(t).all()):
            raise ValueError(
                f"thresholds for {k!r} must be a finite 1-D array (one value per unit)."
            )
        out[str(k)] = t
    return out


# ----------------------------------------------------------------------------------------------
# Reading the dataset: only what a pass needs
# ----------------------------------------------------------------------------------------------
def _read(dataset: Any, idx: list[int], images: bool, labels: bool) -> tuple[Any, Any]:
    """``(images or None, (pixel labels, image-level labels) or None)`` of rows ``idx``.

    Labels come from ``dataset.labels_batch`` when it has one (no image decode), images from
    ``dataset.images_batch``; ``segmentation_batch`` (one call for both) otherwise.
    """
    x = lab = None
    fast_lab, fast_img = (
        getattr(dataset, "labels_batch", None),
        getattr(dataset, "images_batch", None),
    )
    if labels and callable(fast_lab):
        lab = tuple(fast_lab(idx))
    if images and callable(fast_img) and (lab is not None or not labels):
        x = fast_img(idx)
    if (images and x is None) or (labels and lab is None):
        xi, pix, sc = dataset.segmentation_batch(idx)
        x = xi if images and x is None else x
        lab = (pix, sc) if labels and lab is None else lab
    if x is not None:
        x = torch.as_tensor(x)
        check_images(x, name="dataset images")  # float in [0, 1] before any transform
    return x, lab


class _Spool:
    """Tensors written to a temporary file in pass 1 and read back in the same order in pass 2
    (plain reads, not a memory map, so the process memory stays flat)."""

    def __init__(self, folder: str) -> None:
        fd, self.path = tempfile.mkstemp(prefix="dissect-", suffix=".bin", dir=folder)
        self.f = os.fdopen(fd, "wb")
        self.reader = None
        self.shapes: list[tuple[tuple[int, ...], np.dtype]] = []

    def write(self, t: torch.Tensor) -> None:
        a = t.detach().cpu().contiguous().numpy()
        self.shapes.append((a.shape, a.dtype))
        self.f.write(a.tobytes())

    def read(self) -> torch.Tensor:
        if self.reader is None:
            self.f.close()
            self.reader = open(self.path, "rb")
            self.shapes.reverse()
        shape, dtype = self.shapes.pop()
        out = np.empty(shape, dtype=dtype)
        if self.reader.readinto(memoryview(out).cast("B")) != out.nbytes:
            raise RuntimeError(f"activation spool {self.path} is truncated.")
        return torch.from_numpy(out)

    def close(self) -> None:
        for f in (self.f, self.reader):
            if f is not None:
                f.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


# ----------------------------------------------------------------------------------------------
# The two passes
# ----------------------------------------------------------------------------------------------
@dataclass
class _Run:
    """One dissection: its source, dataset, label space and settings."""

    src: _Source
    dataset: Any
    space: _LabelSpace
    dev: torch.device
    n: int
    batch_size: int
    seg_shape: tuple[int, int]
    given: dict[str, torch.Tensor]
    progress: bool
    part: Shard
    spool: _Spool | None = None
    spool_labels: bool = False
    shapes: dict | None = None

    def batches(self, desc: str) -> Iterator[list[int]]:
        """This process's rows, batch by batch."""
        from tqdm.auto import tqdm

        stop = self.part.stop
        starts = range(self.part.start, stop, self.batch_size)
        for s in tqdm(starts, desc=desc, disable=not self.progress, leave=False):
            yield list(range(s, min(s + self.batch_size, stop)))

    def agree_shapes(self) -> None:
        """Distributed: every rank learns each layer's map shape from the ranks that saw
        images (a rank with an empty share saw none); a disagreement raises on every rank."""
        if not self.part.distributed:
            return
        for other in all_gather_objects(dict(self.shapes), self.part):
            for nm, shp in other.items():
                if self.shapes.setdefault(nm, shp) != shp:
                    raise ValueError(
                        f"layer {nm!r} has maps of shape {self.shapes[nm]} on one process and "
                        f"{shp} on another; all dataset images must have one size."
                    )

    def check(self, out: dict[str, torch.Tensor], s: int) -> None:
        """Feature maps are 4-D, of one shape per layer, finite, one threshold per unit."""
        for nm, a in out.items():
            if a.ndim != 4:
                raise ValueError(
                    f"layer {nm!r} gives outputs of shape {tuple(a.shape)}; dissection needs 4-D "
                    "conv feature maps (N, units, h, w); choose a convolutional layer."
                )
            shp = tuple(int(v) for v in a.shape[1:])
            if self.shapes.setdefault(nm, shp) != shp:
                raise ValueError(
                    f"layer {nm!r} changed shape from {self.shapes[nm]} to {shp} at image {s}; "
                    "all dataset images must have one size."
                )
            if nm in self.given and len(self.given[nm]) != shp[0]:
                raise ValueError(
                    f"thresholds for {nm!r} have {len(self.given[nm])} values but the layer has "
                    f"{shp[0]} units."
                )
            _check_finite(a, f"activations of {nm!r}", s)


def _threshold_pass(run: _Run, opts: DissectOptions, quantile: float) -> tuple[dict, dict, dict]:
    """Pass 1: per layer the unit thresholds, how they were obtained and their error bound.

    A model's feature maps (and the labels read with the images) go to ``run.spool``.
    """
    need = [nm for nm in run.src.names if nm not in run.given]
    thr, methods = dict(run.given), {nm: "given" for nm in run.src.names}
    errors: dict[str, np.ndarray | None] = {}
    if not need:
        return thr, methods, errors
    est: dict[str, Any] = {}
    for idx, out, lab in run.src.stream(run, labels=run.spool_labels):
        run.check(out, idx[0])
        for nm, a in out.items():
            if run.spool is not None:
                run.spool.write(a)
            if nm in need:
                if nm not in est:
                    est[nm], methods[nm] = _estimator(run, opts, quantile, nm)
                est[nm].update(_unit_major(a))
        if lab is not None:
            run.spool.write(torch.as_tensor(lab[0]))
            run.spool.write(torch.as_tensor(lab[1]))
    if run.part.distributed:
        run.agree_shapes()
        for nm in need:  # a rank with an empty share still takes part, with nothing
            if nm not in est:
                est[nm], methods[nm] = _estimator(run, opts, quantile, nm)
            est[nm] = _combine_estimator(est[nm], run.part)
    for nm in need:
        r = est[nm].result()
        if isinstance(r, tuple):
            thr[nm], errors[nm] = r[0], r[1].cpu().numpy()
        else:
            thr[nm] = r
    return thr, methods, errors


def _combine_estimator(est: Any, part: Shard) -> Any:
    """The estimator of all ranks' values, the same on every rank.

    Exact (``TopTailQuantile``): every rank's top-``m`` buffer is gathered (``all_gather_rows``
    on the transposed buffer) and the top ``m`` of the union kept: the same multiset as one
    process, hence the same thresholds. Sketch: every rank's counts and grid are gathered
    (``all_gather_objects``) and merged in rank order into an empty sketch (rank 0's merge is
    exact; another rank's merge is exact when its grid equals the merged one, else the error
    bound grows by its bin width, see ``HistogramQuantileSketch.merge``).
    """
    if isinstance(est, TopTailQuantile):
        est._flush()
        rows = all_gather_rows(est.buf.T.contiguous(), part)  # (sum of ranks' kept, units)
        seen = int(all_reduce_sum(torch.tensor([est.seen], dtype=torch.long), part))
        out = TopTailQuantile(est.units, est.n_total, est.quantile, est.device)
        out.pending, out.pending_cols = [rows.T.to(est.device)], rows.shape[0]
        out._flush()
        out.seen = seen
        return out
    keys = ("counts", "lo", "width", "vmin", "vmax")
    mine = {k: (None if getattr(est, k) is None else getattr(est, k).cpu()) for k in keys}
    mine.update(seen=est.seen, extra=est.extra)
    out = HistogramQuantileSketch(est.units, est.quantile, est.bins, est.device)
    for other in all_gather_objects(mine, part):
        sk = HistogramQuantileSketch(est.units, est.quantile, est.bins, "cpu")
        for k in keys:
            setattr(sk, k, other[k])
        sk.seen, sk.extra = other["seen"], other["extra"]
        out.merge(sk)
    return out


def _estimator(run: _Run, opts: DissectOptions, quantile: float, nm: str) -> tuple[Any, str]:
    """The exact top-tail estimator when its buffers fit, else the histogram sketch."""
    U, h, w = run.shapes[nm]
    n_total = run.n * h * w
    m = n_total - _position(n_total, quantile)[0]
    exact = opts.quantile_method == "exact" or (
        opts.quantile_method == "auto" and 3 * U * max(m, 4096) * 4 <= opts.max_exact_bytes
    )
    if exact:
        return TopTailQuantile(U, n_total, quantile, run.dev), "exact"
    return HistogramQuantileSketch(U, quantile, opts.sketch_bins, run.dev), "sketch"


def _tally_batches(run: _Run, checked: bool) -> Iterator[tuple[dict, Any]]:
    """Pass 2: per batch the feature maps and the labels of the same images (from the spool of
    pass 1 where there is one, else from the source)."""
    if run.spool is None:
        for idx, out, lab in run.src.stream(run, labels=True):
            if not checked:
                run.check(out, idx[0])
            yield out, _label_batch(*lab, len(idx), run.space, run.seg_shape, run.dev)
        return
    for idx in run.batches("dissect: tally"):
        out = {nm: run.spool.read().to(run.dev) for nm in run.src.names}
        if run.spool_labels:
            lab = (run.spool.read(), run.spool.read())
        else:
            lab = _read(run.dataset, idx, images=False, labels=True)[1]
        yield out, _label_batch(*lab, len(idx), run.space, run.seg_shape, run.dev)


@contextlib.contextmanager
def _spooled(run: _Run, spool_dir: Any) -> Iterator[None]:
    """With a model whose thresholds pass 1 computes: the spool that keeps its feature maps (and
    the labels decoded with its images) for pass 2, removed on exit."""
    if run.src.model is None or not set(run.src.names) - set(run.given):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="interpkit-dissect-", dir=spool_dir) as tmp:
        run.spool = _Spool(tmp)
        run.spool_labels = not callable(getattr(run.dataset, "labels_batch", None))
        try:
            yield
        finally:
            run.spool.close()


def _all_reduce_tally(tally: Any, run: _Run, opts: DissectOptions, space: _LabelSpace) -> None:
    """Sum the tallies of every rank in place (a rank with an empty share adds zeros)."""
    run.agree_shapes()
    for nm in run.src.names:
        if nm not in tally.layers:
            units = run.shapes[nm][0]
            tally.layers[nm] = _Tally(units, space, run.seg_shape, run.dev, opts.chunk_pixels)
    for t in tally.tensors():
        t.copy_(all_reduce_sum(t, run.part))
    count = torch.tensor([tally.n_images], dtype=torch.long)
    tally.n_images = int(all_reduce_sum(count, run.part))


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
    options: DissectOptions | None = None,
    process_group: Any = None,
) -> DissectionResult | dict[str, DissectionResult]:
    """Network Dissection of one or several layers against a Broden-style ``dataset``.

    Args:
        source: a model (the outputs of ``layers`` are recorded on the dataset images, passed
            through ``transform`` first), or precomputed activations (N, units, h, w) in dataset
            order (NumPy array, memmap or tensor), or a mapping ``{layer: activations}``.
        dataset: an :class:`interpkit.data.Broden`, ``ConceptWorld.as_broden(...)`` or an object
            with the same interface (``labels``, ``categories``, ``seg_shape``,
            ``segmentation_batch``; ``labels_batch`` and ``images_batch`` are used when present).
        layers: with a model, a layer name or a list of names; with one array, its name.
        quantile: the top fraction of activations above a unit's threshold (paper: 0.005).
        thresholds: per-unit thresholds (an array, or a mapping per layer); skips pass 1.
        iou_threshold: a unit is a detector of its best label at this IoU (paper: 0.04).
        categories: score only labels of these primary categories (a category missing from
            ``dataset.categories`` raises ``KeyError``); labels whose primary category is not in
            ``dataset.categories`` are unselected (pixels count as unlabeled, IoU 0, category "").
        batch_size: images per batch.
        device: where to compute (default: :func:`interpkit.device.resolve_device`).
        progress: show progress bars.
        transform: applied to the images before the model (e.g. a normalisation).
        options: memory and precision knobs (``DissectOptions``).
        process_group: a ``torch.distributed`` group to split the images over; ``None`` uses
            the default group when ``torch.distributed`` is initialised (e.g. under
            ``torchrun``), else runs on this process alone.

    Distributed (more than one process in the group): each process takes the contiguous share
    ``interpkit.distributed.shard(len(dataset))`` of the images; with a model only its images
    are decoded and run, with arrays only its rows are read. Every process must call
    ``dissect`` with the same arguments, and every process returns the same result, equal to
    one process on all images (exact thresholds: the same values; the counts are integer
    sums). Sketch thresholds are merged in rank order: exact where a rank's grid equals the
    merged one, otherwise the reported ``threshold_error`` grows by that rank's bin width, so
    they may differ from one process's sketch but stay within that bound of the exact values.

    Communication, per call (nothing per batch), with ``U`` units and ``L`` labels per layer,
    ``C`` categories, ``P`` processes, ``N`` images and maps of ``h x w``:

    * pass 1, exact: each rank's kept top tail, ``U * m`` float32 with
      ``m = N h w - floor((1 - quantile)(N h w - 1))`` (about ``quantile * N h w``), gathered
      to every rank (padded to the largest share: ``P * U * m * 4`` bytes received per rank);
    * pass 1, sketch: each rank's counts ``U * bins`` int64 plus ``4 U`` float64, gathered to
      every rank (``P * U * (8 bins + 32)`` bytes received per rank);
    * pass 2: one all-reduce of the int64 counts, ``8 * (U * (L + C + 1))`` bytes per layer
      plus ``8 L`` for the label pixels;
    * a few small objects (each layer's map shape) and scalars.

    Returns:
        A :class:`DissectionResult` when ``layers`` is a string (or ``source`` a single array),
        else a ``dict`` layer -> result. Thresholds are exact (top-tail buffers) unless they do
        not fit ``options.max_exact_bytes`` (then a sketch; error in ``result.threshold_error``).
    """
    _check_quantile(quantile)
    _check_iou_threshold(iou_threshold)
    batch_size = check_positive_int("batch_size", batch_size)
    opts = options or DissectOptions()
    opts.check()
    dev = resolve_device(device, needs_float64="dissect")
    space = _label_space(dataset, categories, dev)
    n = len(dataset)
    if n < 1:
        raise ValueError("the dataset is empty.")
    src = _as_source(source, layers, n)
    src.transform = transform
    seg_shape = tuple(int(s) for s in dataset.seg_shape)
    given = _given_thresholds(thresholds, src.names, dev)
    part = shard(n, process_group)
    run = _Run(src, dataset, space, dev, n, batch_size, seg_shape, given, progress, part, shapes={})
    with _spooled(run, opts.spool_dir):
        thr, methods, errors = _threshold_pass(run, opts, float(quantile))
        checked = len(given) < len(src.names)
        tally = tally_shard(_tally_batches(run, checked), thr, space, seg_shape, opts.chunk_pixels)
        if part.distributed:
            _all_reduce_tally(tally, run, opts, space)
    if part.distributed and tally.n_images != n:
        raise RuntimeError(f"the processes tallied {tally.n_images} images, expected {n}.")
    meta = _Meta(thr, methods, errors, n, float(quantile), float(iou_threshold))
    results = tally.results(meta)
    return results[src.names[0]] if src.single else results
