"""Concepts from a coupled non-negative factorisation of images, neurons and pixels.

Reproduces U. S. Saini and E. E. Papalexakis, "Analyzing Representations inside Convolutional
Neural Networks", arXiv:2012.12516 (2020).

N probe images are the columns of every data matrix: ``D_i`` (pixels x N) holds colour channel
``i`` in [0, 1], ``A_j`` (units x N) the post-ReLU activations of layer ``j`` (every channel and
position is a unit). One example factor ``F`` (R x N) is shared by all matrices::

    min  1/2 sum_i ||D_i - P_i F||^2 + 1/2 sum_j ||A_j - O_j F||^2 + lambda_F (sum F + 1/2 ||F||^2)

over non-negative ``F``, ``P_i`` (pixels x R) and ``O_j`` (units x R), by multiplicative updates
(F first, then every ``P_i``, then every ``O_j``, each using the new F)::

    F   <- F   * (sum_k W_k^T X_k) / (sum_k W_k^T W_k F + lambda_F (1 + F) + eps)
    W_k <- W_k * (X_k F^T) / (W_k F F^T + eps)

where ``(X_k, W_k)`` runs over all pairs ``(D_i, P_i)`` and ``(A_j, O_j)``. The F rule is the
exact multiplicative update of the 1/2-scaled objective above (the gradient's positive part is
``sum W^T W F + lambda_F (1 + F)``, its negative part ``sum W^T X``); the authors' code writes every
term with a factor 2, which gives the same ratio. With ``eps -> 0`` each update cannot increase
the objective (Lee and Seung's auxiliary function, with ``diag((W^T W F + lambda_F (1 + F)) / F)``
as the majoriser for the F step). Two modes:

``mode="monotone"`` (default)
    the updates above; columns are normalised once, at the end: the stacked factor
    ``[P_1; ...; O_J]`` gets unit-norm columns and the scale moves into F, so every product
    ``W_k F`` (and the reconstruction error) is unchanged. The penalised objective never
    increases (up to floating-point rounding, and terms of order ``eps``).
``mode="faithful"``
    the authors' code: after its update every ``P_i`` and ``O_j`` gets unit-L2-norm columns,
    every iteration, and F is not rescaled. F is shared, so it cannot compensate for every
    matrix at once: the error is not monotone and settles higher.

Initialisation (as the authors): F uniform in [0, 1), each ``P_i``/``O_j`` by NNDSVD of its own
matrix (Boutsidis and Gallopoulos 2008, zeros kept). Pass your own factors via ``init=`` to
compare runs across implementations. Stops early when the relative error
``sum ||X - W F||^2 / sum ||X||^2`` changes by less than ``tol`` between iterations.

Data matrices may be torch tensors, NumPy arrays or ``np.memmap`` s; with ``chunk_rows`` they
stay where they are and are streamed to the device in blocks of rows each iteration, so a probe
set whose activations do not fit in device memory can still be factorised.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from .capture import capture, eval_mode
from .checks import check_images, check_number, check_positive_int, check_unit_interval
from .data.base import ImageSet
from .device import resolve_device
from .io import atomic_path

__all__ = [
    "ActivationMatrices",
    "CoupledNMF",
    "Factors",
    "KNNImpurity",
    "activation_matrices",
    "pixel_matrices",
    "init_factors",
    "nndsvd",
    "coupled_nmf",
    "layer_nmf",
    "class_weights",
    "concept_table",
    "top_examples",
    "concept_pixel_image",
    "concept_pixel_mask",
    "masked_images",
    "concept_similarity",
    "top_units",
    "knn_impurity",
    "accuracy_vs_impurity",
    "factor_purity",
    "purity_summary",
]

Matrix = torch.Tensor | np.ndarray  # a 2-D data matrix (rows x examples); np.memmap works
# a result, or F itself (R x N); Union because CoupledNMF is defined below
FactorsLike = Union["CoupledNMF", torch.Tensor, np.ndarray]  # noqa: UP007
Mode = Literal["monotone", "faithful"]
Labels = torch.Tensor | np.ndarray | Sequence[int]  # one integer label per example
_CHANNEL_NAMES = {1: ["grey"], 3: ["red", "green", "blue"]}


# ================================================================================================
# Data matrices
# ================================================================================================
class ActivationMatrices(dict):
    """``{layer: matrix (units x N, float32)}`` with ``shapes[layer] = (C, H, W)`` of one example.

    Unit ``m`` of a layer is channel ``m // (H*W)`` at position ``divmod(m % (H*W), W)``
    (row-major flattening of ``(C, H, W)``); :func:`top_units` uses this mapping.
    """

    def __init__(self) -> None:
        super().__init__()
        self.shapes: dict[str, tuple[int, ...]] = {}


def pixel_matrices(images: torch.Tensor | ImageSet) -> dict[str, torch.Tensor]:
    """One (pixels x N) matrix per colour channel from images (N, C, H, W) in [0, 1] (or an
    ImageSet).

    Keys are ``red, green, blue`` for three channels, ``grey`` for one, ``channel<i>`` otherwise.
    """
    x = getattr(images, "images", images)
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(
            f"pixel_matrices needs images of shape (N, C, H, W) or an ImageSet, got "
            f"{type(x).__name__} of shape {getattr(x, 'shape', None)}."
        )
    check_images(x)  # float (not uint8), not empty, finite, in [0, 1]
    x = x.detach().float().cpu()
    check_unit_interval(
        x,
        "pixel values",
        "clean or drop images with NaN, and pass the images before "
        "normalisation, e.g. ImageSet.images, not mean/std-normalised inputs.",
    )
    n, c = x.shape[:2]
    names = _CHANNEL_NAMES.get(c, [f"channel{i}" for i in range(c)])
    return {names[i]: x[:, i].reshape(n, -1).T for i in range(c)}


@torch.no_grad()
def activation_matrices(
    model: nn.Module,
    images: torch.Tensor | ImageSet,
    layers: Sequence[str] | str,
    *,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    relu: bool = False,
    memmap_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> ActivationMatrices:
    """Stream a probe set through ``model`` and collect each layer's activations as (units x N)
    float32.

    Batches go through :func:`interpkit.capture` (the forward pass stops after the last requested
    layer); each batch fills the columns of a matrix allocated once, on the CPU, or, with
    ``memmap_dir``, as ``np.memmap`` files ``<layer>.f32`` there (for probe sets that do not fit in
    memory; each is written to a temporary file and renamed into place once every batch has
    succeeded, so a failed run leaves no partial file). Storage is example-major, so the matrices
    are transposed views (column writes are contiguous). The model is moved to ``device`` and run
    in eval mode (its mode is restored). ``relu=True`` applies a ReLU to the captured outputs (for
    pre-activation layers); otherwise a layer with negative outputs raises ``ValueError``. NaN/inf
    outputs always raise.
    """
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    x_all = getattr(images, "images", images)
    if not isinstance(x_all, torch.Tensor) or x_all.ndim != 4:
        raise ValueError("activation_matrices needs images of shape (N, C, H, W) or an ImageSet.")
    check_images(
        x_all
    )  # float in [0, 1]: uint8 or 0..255 images were run unscaled, NaN gave NaN columns
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    dev = resolve_device(device)
    n = len(x_all)
    model.to(dev)
    out = ActivationMatrices()
    storage: dict[str, torch.Tensor | np.ndarray] = {}
    files: dict[str, tuple[Path, tuple[int, int]]] = {}  # memmap layers: final file and shape
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="activations", leave=False)
    # every memmap file is written under a temporary name, renamed into place when the block ends
    # after the last batch, and removed if a batch fails (an earlier complete file is kept)
    with contextlib.ExitStack() as pending:
        pending.enter_context(eval_mode(model))  # left last: the model gets its modes back
        try:
            for s in starts:
                xb = x_all[s : s + batch_size].to(dev, torch.float32)
                with capture(model, layers, stop=True, clone=True) as acts:
                    model(xb)
                for name in layers:
                    a = acts[name]
                    if not isinstance(a, torch.Tensor):
                        raise TypeError(
                            f"layer {name!r} returned {type(a).__name__}, not a tensor; "
                            "capture a module that outputs a single tensor."
                        )
                    if relu:
                        a = torch.relu(a)
                    a = a.reshape(len(xb), -1).float()
                    if not torch.isfinite(a).all():
                        bad = (~torch.isfinite(a)).any(1).nonzero().flatten()[:5] + s
                        raise ValueError(
                            f"layer {name!r} produced NaN/inf activations (examples {bad.tolist()} "
                            "among others); check the images and the model weights, or drop them."
                        )
                    if (a < 0).any():
                        raise ValueError(
                            f"layer {name!r} has negative activations (min {float(a.min()):.3g}); "
                            "NMF needs non-negative data: capture a post-ReLU layer or pass "
                            "relu=True."
                        )
                    if name not in storage:
                        out.shapes[name] = tuple(acts[name].shape[1:])
                        shape = (n, a.shape[1])
                        if memmap_dir is not None:
                            files[name] = (
                                Path(memmap_dir) / f"{name.replace('/', '_')}.f32",
                                shape,
                            )
                            tmp = pending.enter_context(atomic_path(files[name][0]))
                            storage[name] = np.memmap(tmp, dtype=np.float32, mode="w+", shape=shape)
                        else:
                            storage[name] = torch.empty(shape, dtype=torch.float32)
                    if isinstance(storage[name], np.ndarray):
                        storage[name][s : s + len(xb)] = a.cpu().numpy()
                    else:
                        storage[name][s : s + len(xb)] = a.cpu()
            for name in files:
                storage[name].flush()
        finally:
            for name in files:  # unmapped before a rename or removal (needed on Windows)
                storage.pop(name, None)
    for name in layers:
        if name in files:  # now in place: map the complete file again
            storage[name] = np.memmap(
                files[name][0], dtype=np.float32, mode="r+", shape=files[name][1]
            )
        out[name] = storage[name].T
    return out


# ================================================================================================
# Validation and streaming access
# ================================================================================================
def _as_named(
    mats: Mapping[str, Matrix] | Sequence[Matrix] | None, prefix: str
) -> dict[str, Matrix]:
    if mats is None:
        return {}
    if isinstance(mats, Mapping):
        return dict(mats)
    if isinstance(mats, (torch.Tensor, np.ndarray)):
        raise TypeError(
            f"pass the {prefix} matrices as a dict or list of 2-D matrices, not a single "
            f"array; wrap it: [{prefix}_matrix] or {{'name': {prefix}_matrix}}."
        )
    return {f"{prefix}{i}": m for i, m in enumerate(mats)}


class _Data:
    """A data matrix seen as row blocks on the device (the whole matrix when ``chunk_rows`` is
    None)."""

    def __init__(
        self,
        kind: str,
        name: str,
        x,
        device: torch.device,
        dtype: torch.dtype,
        chunk_rows: int | None,
        normalize: str | None = None,
    ) -> None:
        self.kind, self.name, self.key = kind, name, f"{kind}:{name}"
        if not isinstance(x, (torch.Tensor, np.ndarray)):
            raise TypeError(
                f"{kind} matrix {name!r} is a {type(x).__name__}; pass a torch tensor or NumPy "
                f"array."
            )
        if x.ndim != 2:
            raise ValueError(
                f"{kind} matrix {name!r} has shape {tuple(x.shape)}; it must be 2-D "
                "(rows x examples). Flatten activations with activation_matrices()."
            )
        self.rows, self.cols = int(x.shape[0]), int(x.shape[1])
        if self.rows == 0 or self.cols == 0:
            raise ValueError(f"{kind} matrix {name!r} is empty (shape {tuple(x.shape)}).")
        self.device, self.dtype = device, dtype
        self.step = self.rows if chunk_rows is None else max(1, int(chunk_rows))
        self.src = x
        self.scale = 1.0  # every block is multiplied by this when loaded (normalize="rms")
        self.full: torch.Tensor | None = None
        if chunk_rows is None:
            self.full = self._load(0, self.rows)
        self.raw_sq_norm, self.max_abs = self._check()
        self.rms = math.sqrt(self.raw_sq_norm / (self.rows * self.cols))
        if normalize == "rms":  # mean square entry 1: the factorisation no longer depends on units
            self.scale = 1.0 / self.rms
            if self.full is not None:
                self.full = (
                    self.full * self.scale
                )  # a new tensor: the caller's matrix is not changed
        elif normalize is not None:
            raise ValueError(f"normalize must be 'rms' or None, got {normalize!r}.")
        self.sq_norm = self.raw_sq_norm * self.scale**2

    def _load(self, r0: int, r1: int) -> torch.Tensor:
        x = self.src[r0:r1]
        if isinstance(x, np.ndarray):  # a read-only memmap is copied (torch wants writable)
            x = np.ascontiguousarray(x)
            x = torch.from_numpy(x if x.flags.writeable else x.copy())
        x = x.to(self.device, self.dtype)
        return x * self.scale if self.scale != 1.0 else x

    def chunks(self) -> Iterator[tuple[slice, torch.Tensor]]:
        if self.full is not None:
            yield slice(0, self.rows), self.full
            return
        for r0 in range(0, self.rows, self.step):
            r1 = min(self.rows, r0 + self.step)
            yield slice(r0, r1), self._load(r0, r1)

    def _check(self) -> tuple[float, float]:
        """Validate the data; returns its squared Frobenius norm and largest entry."""
        sq, n_bad, lo, hi = 0.0, 0, math.inf, 0.0
        for _, xc in self.chunks():
            cmin, cmax = torch.aminmax(xc)
            if not (
                math.isfinite(float(cmin)) and math.isfinite(float(cmax))
            ):  # NaN or inf somewhere
                finite = torch.isfinite(xc)
                n_bad += int((~finite).sum())
                cmin = torch.where(
                    finite, xc, torch.zeros((), dtype=xc.dtype, device=xc.device)
                ).min()
            lo = min(lo, float(cmin))
            hi = max(hi, float(cmax))
            if n_bad == 0:
                sq += float(torch.linalg.vector_norm(xc, dtype=torch.float64)) ** 2
        if n_bad:
            raise ValueError(
                f"{self.kind} matrix {self.name!r} contains {n_bad} NaN/inf values (in "
                f"{str(self.dtype).replace('torch.', '')}); NMF needs finite data. Check the "
                f"images "
                "and model (activation_matrices reports which examples), or drop the affected "
                "examples from every matrix; values beyond the float32 range need "
                "dtype=torch.float64."
            )
        if lo < 0:
            hint = (
                "capture a post-ReLU layer or pass relu=True to activation_matrices"
                if self.kind == "activation"
                else "use pixel values in [0, 1] (pixel_matrices)"
            )
            raise ValueError(
                f"{self.kind} matrix {self.name!r} has negative entries (min {lo:.3g}); NMF "
                f"needs non-negative data: {hint}."
            )
        if sq == 0:
            raise ValueError(
                f"{self.kind} matrix {self.name!r} is all zeros (e.g. a dead layer); "
                "drop it or choose another layer."
            )
        return sq, hi


def _prepare(
    activations, pixels, rank: int, device, dtype, chunk_rows, normalize: str | None = None
) -> tuple[list[_Data], list[str], list[str]]:
    acts, pix = _as_named(activations, "layer"), _as_named(pixels, "channel")
    if not acts and not pix:
        raise ValueError("no data matrices given; pass at least one activation or pixel matrix.")
    if not isinstance(rank, (int, np.integer)) or isinstance(rank, bool) or rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank!r}.")
    dev = resolve_device(device, needs_float64="coupled NMF")
    data = [_Data("pixel", k, v, dev, dtype, chunk_rows, normalize) for k, v in pix.items()]
    data += [_Data("activation", k, v, dev, dtype, chunk_rows, normalize) for k, v in acts.items()]
    if normalize is None:
        # products of entries (X F^T, W^T W F) must stay far inside the range of the dtype
        limit = math.sqrt(torch.finfo(dtype).max) * 1e-4
        big = [
            f"{d.kind} matrix {d.name!r} (largest entry {d.max_abs:.3g})"
            for d in data
            if d.max_abs > limit
        ]
        if big:
            raise ValueError(
                f"{', '.join(big)} too large for {str(dtype).replace('torch.', '')} arithmetic "
                f"(entries above {limit:.1g} overflow in the updates and give NaN factors); pass "
                "normalize='rms' (each matrix scaled to mean square 1) or dtype=torch.float64."
            )
    counts = {d.name: d.cols for d in data}
    if len(set(counts.values())) > 1:
        raise ValueError(
            f"the matrices have different numbers of examples (columns): {counts}. Every "
            "matrix needs one column per probe image, in the same order; build all of them "
            "from the same images (pixel_matrices / activation_matrices)."
        )
    for d in data:
        if rank > min(d.rows, d.cols):
            raise ValueError(
                f"rank={rank} is larger than min(rows, examples) = {min(d.rows, d.cols)} of "
                f"{d.kind} matrix {d.name!r} ({d.rows} x {d.cols}); use rank <= "
                f"{min(d.rows, d.cols)} or more probe images / a larger layer."
            )
    return data, list(pix), list(acts)


# ================================================================================================
# Initialisation
# ================================================================================================
@dataclass
class Factors:
    """Initial factors: ``F`` (R x N), ``P[name]`` (pixels x R), ``O[name]`` (units x R)."""

    F: torch.Tensor
    P: dict[str, torch.Tensor] = field(default_factory=dict)
    O: dict[str, torch.Tensor] = field(default_factory=dict)

    def numpy(self) -> Factors:
        """The same factors as float64 NumPy arrays (for the reference implementation)."""
        cv = lambda t: np.asarray(
            t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else t, float
        )
        return Factors(
            cv(self.F), {k: cv(v) for k, v in self.P.items()}, {k: cv(v) for k, v in self.O.items()}
        )


def _randomized_svd(
    d: _Data, k: int, gen: torch.Generator, n_oversamples: int = 10, n_iter: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``k`` SVD of a (possibly streamed) matrix, Halko et al. with power iterations
    (as scikit-learn's ``randomized_svd``, which the authors used: 7 iterations for small k, else
    4)."""
    dev, dt = d.device, d.dtype
    if n_iter is None:
        n_iter = 7 if k < 0.1 * min(d.rows, d.cols) else 4
    if d.full is not None and min(d.rows, d.cols) <= k + n_oversamples:
        u, s, vh = torch.linalg.svd(d.full.double(), full_matrices=False)
        return u[:, :k].to(dt), s[:k].to(dt), vh[:k].to(dt)
    ell = min(k + n_oversamples, d.rows, d.cols)
    omega = torch.randn(d.cols, ell, generator=gen, dtype=torch.float64).to(dev, dt)

    def x_times(m: torch.Tensor) -> torch.Tensor:  # X @ m, (rows x ell)
        return torch.cat([xc @ m for _, xc in d.chunks()], 0)

    def xt_times(q: torch.Tensor) -> torch.Tensor:  # X^T @ q, (cols x ell)
        acc = torch.zeros(d.cols, q.shape[1], dtype=dt, device=dev)
        for sl, xc in d.chunks():
            acc += xc.T @ q[sl]
        return acc

    q = torch.linalg.qr(x_times(omega)).Q
    for _ in range(n_iter):
        z = torch.linalg.qr(xt_times(q)).Q
        q = torch.linalg.qr(x_times(z)).Q
    b = xt_times(q).T  # (ell x cols) = Q^T X
    ub, s, vh = torch.linalg.svd(b.double(), full_matrices=False)
    u = q.double() @ ub
    return u[:, :k].to(dt), s[:k].to(dt), vh[:k].to(dt)


def _nndsvd_from_svd(
    u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, rank: int, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.zeros(u.shape[0], rank, dtype=u.dtype, device=u.device)
    h = torch.zeros(rank, vh.shape[1], dtype=u.dtype, device=u.device)
    w[:, 0] = torch.sqrt(s[0]) * u[:, 0].abs()
    h[0] = torch.sqrt(s[0]) * vh[0].abs()
    for j in range(1, rank):
        x, y = u[:, j], vh[j]
        xp, yp, xn, yn = x.clamp(min=0), y.clamp(min=0), (-x).clamp(min=0), (-y).clamp(min=0)
        xpn, ypn, xnn, ynn = xp.norm(), yp.norm(), xn.norm(), yn.norm()
        mp, mn = xpn * ypn, xnn * ynn
        if mp > mn:
            uu, vv, sigma = xp / xpn, yp / ypn, mp
        else:
            uu, vv, sigma = xn / xnn, yn / ynn, mn
        lbd = torch.sqrt(s[j] * sigma)
        w[:, j], h[j] = lbd * uu, lbd * vv
    w[w < eps] = 0
    h[h < eps] = 0
    return w, h


def nndsvd(
    x: Matrix,
    rank: int,
    *,
    seed: int = 0,
    fill: Literal["zeros", "mean"] = "zeros",
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """NNDSVD initialisation ``x ~ W H`` (Boutsidis and Gallopoulos 2008), as in the authors' code.

    ``fill="zeros"`` keeps the zero entries (the authors' variant; multiplicative updates never
    change them), ``"mean"`` replaces them by the mean of ``x`` (scikit-learn's 'nndsvda').
    """
    d = _prepare({"x": x}, None, rank, device, torch.float32, None)[0][0]
    return _nndsvd(d, rank, torch.Generator().manual_seed(seed), fill)


def _nndsvd(
    d: _Data, rank: int, gen: torch.Generator, fill: str
) -> tuple[torch.Tensor, torch.Tensor]:
    u, s, vh = _randomized_svd(d, rank, gen)
    w, h = _nndsvd_from_svd(u, s, vh, rank)
    if fill == "mean":
        avg = sum(float(xc.double().sum()) for _, xc in d.chunks()) / (d.rows * d.cols)
        w[w == 0], h[h == 0] = avg, avg
    elif fill != "zeros":
        raise ValueError(f"fill must be 'zeros' or 'mean', got {fill!r}.")
    return w, h


def _init(
    data: list[_Data], pix_names: list[str], act_names: list[str], rank: int, method: str, seed: int
) -> Factors:
    gen = torch.Generator().manual_seed(seed)
    dev, dt = data[0].device, data[0].dtype
    n = data[0].cols
    f = torch.rand(rank, n, generator=gen, dtype=torch.float64).to(dev, dt)
    ws: dict[str, torch.Tensor] = {}
    for d in data:
        if method == "random":
            ws[d.key] = torch.rand(d.rows, rank, generator=gen, dtype=torch.float64).to(dev, dt)
        elif method in ("nndsvd", "nndsvda"):
            ws[d.key] = _nndsvd(d, rank, gen, "zeros" if method == "nndsvd" else "mean")[0]
        else:
            raise ValueError(
                f"init must be 'nndsvd', 'nndsvda', 'random' or a Factors object, got {method!r}."
            )
    return Factors(
        f, {k: ws[f"pixel:{k}"] for k in pix_names}, {k: ws[f"activation:{k}"] for k in act_names}
    )


def init_factors(
    activations: Mapping[str, Matrix] | Sequence[Matrix] | None,
    pixels: Mapping[str, Matrix] | Sequence[Matrix] | None = None,
    rank: int = 20,
    *,
    method: str = "nndsvd",
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    chunk_rows: int | None = None,
    normalize: str | None = None,
) -> Factors:
    """The initial factors :func:`coupled_nmf` would use (F uniform in [0,1), W by NNDSVD per
    matrix).

    Pass the result back as ``coupled_nmf(..., init=factors)`` (or ``.numpy()`` to the NumPy
    reference) to compare implementations from the same starting point; use the same
    ``normalize`` for both (the NNDSVD factors are those of the normalised matrices).
    """
    data, pn, an = _prepare(activations, pixels, rank, device, dtype, chunk_rows, normalize)
    return _init(data, pn, an, rank, method, seed)


def _check_init(
    init: Factors, data: list[_Data], pn: list[str], an: list[str], rank: int
) -> Factors:
    dev, dt = data[0].device, data[0].dtype

    def cv(t, shape, what):
        t = torch.as_tensor(np.asarray(t) if isinstance(t, np.ndarray) else t).to(dev, dt).clone()
        if tuple(t.shape) != shape:
            raise ValueError(f"initial {what} has shape {tuple(t.shape)}, expected {shape}.")
        if not torch.isfinite(t).all() or (t < 0).any():
            raise ValueError(f"initial {what} must be finite and non-negative.")
        return t

    if set(init.P) != set(pn) or set(init.O) != set(an):
        raise KeyError(
            f"init factors are for pixels {sorted(init.P)} and layers {sorted(init.O)}, but the "
            f"data "
            f"has pixels {pn} and layers {an}; build them with init_factors on the same matrices."
        )
    by = {d.key: d for d in data}
    return Factors(
        cv(init.F, (rank, data[0].cols), "F"),
        {k: cv(init.P[k], (by[f"pixel:{k}"].rows, rank), f"P[{k!r}]") for k in pn},
        {k: cv(init.O[k], (by[f"activation:{k}"].rows, rank), f"O[{k!r}]") for k in an},
    )


# ================================================================================================
# Coupled NMF
# ================================================================================================
@dataclass
class CoupledNMF:
    """Result of :func:`coupled_nmf`: the shared space and the per-iteration record.

    ``F`` (R x N): example ``n`` -> ``F[:, n]``; ``P[channel]`` (pixels x R): pixel ``p`` ->
    ``P[c][p]``; ``O[layer]`` (units x R): unit ``m`` -> ``O[l][m]``. Latent dimension ``r`` is
    concept ``r``. ``history`` has one row per iteration (0 = the initial factors) with the
    penalised ``objective``, ``reconstruction`` (sum of squared errors), ``penalty`` and
    ``relative_error``. All tensors are on the CPU, in the dtype of the run.

    With ``normalize="rms"`` the run factorises ``c_k X_k`` (``scales[k] = c_k``), and the history
    is in those units; ``P`` and ``O`` are returned in the units of the data (divided by ``c_k``),
    so ``W_k F`` approximates ``X_k`` itself in either case.
    """

    F: torch.Tensor
    P: dict[str, torch.Tensor]
    O: dict[str, torch.Tensor]
    history: pd.DataFrame
    mode: str
    rank: int
    lambda_f: float
    converged: bool
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    normalize: str | None = None
    scales: dict[str, float] = field(
        default_factory=dict
    )  # "pixel:<name>" / "activation:<name>" -> c_k

    @property
    def n_iter(self) -> int:
        """Number of iterations run."""
        return int(self.history["iteration"].iloc[-1])

    @property
    def objective(self) -> float:
        """Penalised objective after the last iteration (before the final normalisation)."""
        return float(self.history["objective"].iloc[-1])

    @property
    def relative_error(self) -> float:
        """``sum ||X - W F||^2 / sum ||X||^2`` of the returned factors."""
        return float(self.history["relative_error"].iloc[-1])

    @property
    def factors(self) -> dict[str, torch.Tensor]:
        """``{name: W}`` for every data matrix, pixels first."""
        return {**self.P, **self.O}

    def embedding(self) -> np.ndarray:
        """Examples in the shared space, ``F^T`` as an (N x R) float64 array."""
        return self.F.T.double().numpy()


def coupled_nmf(
    activations: Mapping[str, Matrix] | Sequence[Matrix] | None,
    pixels: Mapping[str, Matrix] | Sequence[Matrix] | None = None,
    rank: int = 20,
    *,
    n_iter: int = 50,
    lambda_f: float = 1.0,
    mode: Mode = "monotone",
    init: str | Factors = "nndsvd",
    tol: float = 1e-8,
    eps: float = 1e-9,
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    chunk_rows: int | None = None,
    normalize: str | None = None,
    progress: bool = False,
) -> CoupledNMF:
    """Coupled NMF of activation matrices ``A_j`` and pixel matrices ``D_i`` with a shared F.

    ``activations``/``pixels``: dicts (or lists) of non-negative (rows x N) matrices with the same
    N; e.g. :func:`activation_matrices` and :func:`pixel_matrices`. ``mode``: ``"monotone"``
    (default, objective never increases) or ``"faithful"`` (the authors' per-iteration column
    normalisation; see the module docstring). ``init``: ``"nndsvd"`` (authors), ``"nndsvda"``,
    ``"random"`` or a :class:`Factors` (e.g. from :func:`init_factors`). ``chunk_rows``: stream the
    matrices to the device in blocks of this many rows (memmaps, large probe sets).

    ``normalize``: ``None`` (the paper) factorises the matrices as given, so each matrix weighs in
    proportion to its squared norm and the penalty's strength depends on the data's units (a
    layer whose activations are 100 times smaller counts 10,000 times less, and small data lose
    concepts to the L1 term: a ``RuntimeWarning`` says so when a concept dies). ``"rms"`` scales
    every matrix to mean square entry 1 first (``c_k = 1 / rms(X_k)``), so every entry of every
    matrix counts alike whatever its units, and the result does not change when a matrix is
    multiplied by a constant.
    """
    if mode not in ("monotone", "faithful"):
        raise ValueError(f"mode must be 'monotone' or 'faithful', got {mode!r}.")
    check_positive_int("n_iter", n_iter)
    check_number("lambda_f", lambda_f, hint="the paper uses 1")
    check_number("eps", eps, positive=True, hint="it only guards divisions by zero")
    data, pn, an = _prepare(activations, pixels, rank, device, dtype, chunk_rows, normalize)
    fac = (
        _init(data, pn, an, rank, init, seed)
        if isinstance(init, str)
        else _check_init(init, data, pn, an, rank)
    )
    F = fac.F
    W = {
        **{f"pixel:{k}": v for k, v in fac.P.items()},
        **{f"activation:{k}": v for k, v in fac.O.items()},
    }
    sq = {d.key: d.sq_norm for d in data}
    total_sq = sum(sq.values())
    rows: list[dict] = []

    def record(it: int, err: dict[str, float]) -> float:
        recon = sum(err.values())
        pen = lambda_f * (float(F.double().sum()) + 0.5 * float((F.double() ** 2).sum()))
        rel = recon / total_sq
        rows.append(
            {
                "iteration": it,
                "objective": 0.5 * recon + pen,
                "reconstruction": recon,
                "penalty": pen,
                "relative_error": rel,
                **{f"error[{k}]": v / sq[k] for k, v in err.items()},
            }
        )
        return rel

    it_range = range(1, n_iter + 1)
    if progress:
        from tqdm.auto import tqdm

        it_range = tqdm(it_range, desc=f"coupled NMF ({mode})", leave=False)
    converged, prev = False, None
    for it in it_range:
        # ---- F update (uses the old W); the same pass gives the error of the previous state ----
        num = torch.zeros_like(F)
        gram = torch.zeros(rank, rank, dtype=F.dtype, device=F.device)
        first = it == 1
        if first:
            fft_old = (F @ F.T).double()
            err0: dict[str, float] = {}
        for d in data:
            w = W[d.key]
            wtx = torch.zeros_like(F)
            for sl, xc in d.chunks():
                wtx += w[sl].T @ xc
            wtw = w.T @ w
            num += wtx
            gram += wtw
            if first:
                err0[d.key] = (
                    sq[d.key]
                    - 2 * float((wtx.double() * F.double()).sum())
                    + float((wtw.double() * fft_old).sum())
                )
        if first:
            record(0, err0)
        F = F * num / (gram @ F + lambda_f * (1 + F) + eps)
        fft = F @ F.T
        fft64 = fft.double()
        # ---- W updates (every P_i, then every O_j), each with the new F ----
        err: dict[str, float] = {}
        for d in data:
            w = W[d.key]
            cross = torch.zeros(rank, dtype=torch.float64, device=F.device)
            for sl, xc in d.chunks():
                xft = torch.mm(F, xc.T).T  # = xc @ F.T; 2-3x faster on CPU BLAS (issue 23)
                wc = w[sl]
                wc = wc * xft / (wc @ fft + eps)
                w[sl] = wc
                cross += (wc * xft).double().sum(0)
            if mode == "faithful":
                norms = w.norm(dim=0)
                scale = torch.where(norms > 0, 1 / norms, torch.ones_like(norms))
                w *= scale
                cross *= scale.double()
            err[d.key] = (
                sq[d.key] - 2 * float(cross.sum()) + float(((w.T @ w).double() * fft64).sum())
            )
        rel = record(it, err)
        if prev is not None and abs(prev - rel) < tol:
            converged = True
            break
        prev = rel
    if mode == "monotone":  # one joint normalisation; the products W_k F are unchanged
        norms = torch.sqrt(sum((w**2).sum(0) for w in W.values()))
        scale = torch.where(norms > 0, norms, torch.ones_like(norms))
        for k in W:
            W[k] = W[k] / scale
        F = F * scale[:, None]
    if not (torch.isfinite(F).all() and all(torch.isfinite(w).all() for w in W.values())):
        raise FloatingPointError(
            f"coupled NMF produced NaN/inf factors in {str(F.dtype).replace('torch.', '')} "
            "(an overflow); pass normalize='rms' or dtype=torch.float64."
        )
    by = {d.key: d for d in data}
    _warn_dead_concepts(F, lambda_f, normalize, data, rows[-1]["relative_error"])
    cpu = lambda t: t.detach().cpu()
    out_w = {
        k: cpu(w / by[k].scale if by[k].scale != 1.0 else w) for k, w in W.items()
    }  # data units
    shapes = dict(getattr(activations, "shapes", {}) or {})
    return CoupledNMF(
        F=cpu(F),
        P={k: out_w[f"pixel:{k}"] for k in pn},
        O={k: out_w[f"activation:{k}"] for k in an},
        history=pd.DataFrame(rows),
        mode=mode,
        rank=int(rank),
        lambda_f=float(lambda_f),
        converged=converged,
        shapes=shapes,
        normalize=normalize,
        scales={d.key: d.scale for d in data},
    )


def _warn_dead_concepts(
    F: torch.Tensor,
    lambda_f: float,
    normalize: str | None,
    data: list[_Data],
    relative_error: float,
) -> None:
    """A RuntimeWarning when concepts ended with (almost) none of F's mass, or nothing is
    reconstructed
    at all (every concept shrunk alike): the L1 penalty won."""
    mass = F.double().sum(1)
    total = float(mass.sum())
    dead = int((mass <= 1e-6 * total / len(mass)).sum()) if total > 0 else len(mass)
    if relative_error > 0.99:  # F shrunk towards 0 as a whole (its shares can still look even)
        dead = len(mass)
    if dead == 0 or lambda_f == 0:
        return
    hint = (
        "pass normalize='rms' (each matrix scaled to mean square 1) or a smaller lambda_f"
        if normalize is None
        else "use a smaller rank or lambda_f"
    )
    warnings.warn(
        f"{dead} of {len(mass)} concepts ended with almost no weight in F: the penalty lambda_f="
        f"{lambda_f:g} * (sum F + ||F||^2 / 2) outweighs what they would reconstruct "
        f"(root-mean-square entry of each matrix{' after scaling' if normalize else ''}: "
        f"{', '.join(f'{d.name} {d.rms * d.scale:.3g}' for d in data)}); {hint}.",
        RuntimeWarning,
        stacklevel=3,
    )


def layer_nmf(
    activations: Mapping[str, Matrix] | Sequence[Matrix], rank: int = 20, **kwargs
) -> dict[str, CoupledNMF]:
    """Per-layer NMF (no pixel matrices): one :func:`coupled_nmf` per activation matrix."""
    acts = _as_named(activations, "layer")
    shapes = getattr(activations, "shapes", {})
    out = {}
    for name, x in acts.items():
        one = ActivationMatrices()
        one[name] = x
        if name in shapes:
            one.shapes[name] = shapes[name]
        out[name] = coupled_nmf(one, None, rank, **kwargs)
    return out


def _reference_coupled_nmf(
    D: Sequence[np.ndarray],
    A: Sequence[np.ndarray],
    F: np.ndarray,
    P: Sequence[np.ndarray],
    O: Sequence[np.ndarray],
    *,
    n_iter: int = 50,
    lambda_f: float = 1.0,
    mode: str = "monotone",
    tol: float = 1e-8,
    eps: float = 1e-9,
    record: bool = True,
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], list[dict]]:
    """Test/benchmark-only: a plain NumPy (float64) transcription of the updates, from given
    factors.

    Returns ``F, P, O, history`` (history rows: iteration, objective, relative_error), with the
    residuals computed directly as ``||X - W F||^2``. ``record=False`` skips the history (and
    with it the early stop), for timing. Not for analysis: no validation, no streaming.
    """
    F = np.array(F, dtype=float)
    P = [np.array(p, dtype=float) for p in P]
    O = [np.array(o, dtype=float) for o in O]
    X = [np.asarray(x, dtype=float) for x in list(D) + list(A)]
    total = sum(float((x**2).sum()) for x in X)

    def state():
        recon = sum(float(((x - w @ F) ** 2).sum()) for x, w in zip(X, P + O))
        obj = 0.5 * recon + lambda_f * (F.sum() + 0.5 * (F**2).sum())
        return {"objective": float(obj), "relative_error": recon / total}

    hist = [{"iteration": 0, **state()}] if record else []
    for it in range(1, n_iter + 1):
        num = sum(w.T @ x for w, x in zip(P + O, X))
        den = sum(w.T @ w @ F for w in P + O) + lambda_f * (1 + F) + eps
        F = F * num / den
        for group, data in ((P, X[: len(P)]), (O, X[len(P) :])):
            for i, x in enumerate(data):
                w = group[i]
                w = w * (x @ F.T) / (w @ (F @ F.T) + eps)
                if mode == "faithful":
                    nrm = np.linalg.norm(w, axis=0)
                    nrm[nrm == 0] = 1
                    w = w / nrm
                group[i] = w
        if not record:
            continue
        hist.append({"iteration": it, **state()})
        if it > 1 and abs(hist[-1]["relative_error"] - hist[-2]["relative_error"]) < tol:
            break
    if mode == "monotone":
        nrm = np.sqrt(sum((w**2).sum(0) for w in P + O))
        nrm[nrm == 0] = 1
        P, O, F = [p / nrm for p in P], [o / nrm for o in O], F * nrm[:, None]
    return F, P, O, hist


# ================================================================================================
# Summaries
# ================================================================================================
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
    """(R x k) indices of the examples with the largest ``F[r, n]`` per concept, largest first."""
    F = _F(result)
    k = min(check_positive_int("k", k), F.shape[1])
    return np.argsort(-F, axis=1, kind="stable")[:, :k]


def concept_table(
    result: FactorsLike, labels: Labels, classes: Sequence[str] | None = None, k: int = 8
) -> pd.DataFrame:
    """One row per concept: ``mass`` (share of the total F), ``top_class``, ``top_weight``,
    ``entropy`` (bits, of the class weights), ``top_examples`` (k indices) and their labels.
    Dead concepts (zero mass) have a missing ``top_class`` and NaN weight and entropy."""
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
    """``P_i[:, r]`` of every channel reshaped to (C, H, W), scaled to max 1 (zeros if none)."""
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
    """(C, H, W) boolean: per channel ``i``, ``P_i[:, r]`` above its median (the authors' mask)."""
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
    None)."""
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
    concept's top value among all examples) and ``mean_norm_entropy``."""
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
