"""An explainer network distilled from a CNN, disentangling its features into object parts.

Reproduces Q. Zhang, Y. Yang, Y. Liu, Y. N. Wu and S.-C. Zhu, "Unsupervised Learning of Neural
Networks to Explain Neural Networks", arXiv:1805.07468 (2018; extended abstract arXiv:1901.07538),
built on the filter loss of Q. Zhang, Y. N. Wu and S.-C. Zhu, "Interpretable Convolutional Neural
Networks", CVPR 2018 (ICNN).

A frozen CNN (the *performer*) is explained by a small network (the *explainer*) that works like an
auto-encoder on the feature maps ``f`` of one middle layer of the performer::

    x_interp = mask(relu(conv(mask(relu(conv(f))))))       interpretable track (ICNN filter loss)
    x_ordin  = relu(conv(f))                               ordinary track
    p        = sigmoid(g(f))                               ratio of interpretable features, per
    image
    x        = p * norm(x_interp) + (1 - p) * norm(x_ordin)
    f_hat    = decoder(x)          reconstructs the performer's features of higher layer(s)

    loss = sum_targets ||f_hat - f_target||^2 / E||f_target||^2          (distillation)
           + filter_weight * mean_filters Loss_f       (ICNN; last or every interp. layer, Z_T over
                                                        the batch or per category: train_explainer)
           + p_weight * mean_images (-log p)

No annotations are used: the performer's own features are the only training signal.

ICNN filter loss of one filter over a batch ``X`` of its n x n post-ReLU maps::

    Loss_f = -MI(X; T),  T in {T_mu : mu = each of the n^2 positions} + {T-}
    T_mu[i, j] = tau * max(1 - beta * (|i - mu_i| + |j - mu_j|) / n, -1),   T-[i, j] = -tau
    tau = 0.5 / n^2, beta = 4, p(T_mu) = alpha / n^2, p(T-) = 1 - alpha, alpha = n^2 / (1 + n^2)
    p(x | T) = exp(tr(x . T)) / Z_T,  Z_T = sum over the batch of exp(tr(x' . T))
    MI = sum_T p(T) sum_x p(x | T) log(p(x | T) / p(x)),   p(x) = sum_T p(T) p(x | T)

computed with log-sum-exp, so any activation scale (and all-zero maps) is finite. The mask layer
keeps the part of each map near its peak: ``relu(x * T_mu_hat / tau)`` with ``mu_hat = argmax x``
(dividing by the positive constant tau only keeps the map at its input scale).

Metrics (tidy results, nothing printed): relative reconstruction error, the performer's accuracy
with
its higher-layer features replaced by the explainer's reconstruction, the ratio ``p``, the location
instability of filters (ICNN, Sec. 4) for the explainer's interpretable filters and the performer's
own filters, and the IoU of each filter's thresholded map with the best-matching ground-truth part.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .capture import capture, resolve_modules
from .checks import check_images, check_number, check_positive_int, require_eval
from .data.base import ImageSet, require_image_set
from .device import model_device, numerics, resolve_device
from .io import atomic_torch_save, load_torch_cache, state_mismatch
from .models.training import cache_dir, ensure_cache_dir, seed_everything, state_fingerprint

CACHE_FORMAT = 1
DEFAULT_BETA = 4.0

__all__ = [
    "icnn_templates",
    "template_log_priors",
    "filter_loss",
    "icnn_mask",
    "FilterMask",
    "Explainer",
    "ExplainerOutput",
    "layer_shapes",
    "check_layer_order",
    "performer_features",
    "train_explainer",
    "replaced_features",
    "reconstruction_error",
    "accuracy_with_reconstruction",
    "interpretable_ratio",
    "explainer_maps",
    "rescale_maps",
    "grouped_filter_loss",
    "training_step",
    "peak_positions",
    "top_activations",
    "location_instability",
    "part_iou",
    "ExplainerReport",
    "evaluate_explainer",
]


# ------------------------------------------------------------------------------------------------
# ICNN templates, filter loss and mask
# ------------------------------------------------------------------------------------------------
def _check_map_size(n: int, what: str = "feature map") -> None:
    if n < 3:
        raise ValueError(
            f"the {what} is {n}x{n}, but the ICNN templates need at least 3x3 (a smaller map "
            "cannot tell a part's position from its neighbours'); explain an earlier, larger "
            "layer of the performer or feed larger images."
        )


def _check_beta(beta: float) -> float:
    return check_number(
        "beta (the templates' fall-off)", beta, hint=f"the paper uses {DEFAULT_BETA}"
    )


def icnn_templates(
    n: int,
    *,
    beta: float = DEFAULT_BETA,
    tau: float | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """The ``n*n`` positive templates (row-major order of ``mu``) and the negative one, ``(n*n + 1,
    n, n)``.

    ``T_mu[i, j] = tau * max(1 - beta * ||(i, j) - mu||_1 / n, -1)``, ``T-[i, j] = -tau``,
    ``tau = 0.5 / n**2`` unless given.
    """
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(
            f"n must be an int (the side of a square feature map), got {type(n).__name__}."
        )
    _check_map_size(n)
    beta = _check_beta(beta)
    tau = (
        0.5 / n**2
        if tau is None
        else check_number("tau", tau, positive=True, hint="leave it None for the paper's 0.5 / n^2")
    )
    ar = torch.arange(n, dtype=torch.float64)
    ii, jj = torch.meshgrid(ar, ar, indexing="ij")
    mu_i, mu_j = ii.reshape(-1, 1, 1), jj.reshape(-1, 1, 1)
    dist = (ii[None] - mu_i).abs() + (jj[None] - mu_j).abs()  # (n*n, n, n)
    pos = tau * torch.clamp(1.0 - beta * dist / n, min=-1.0)
    neg = torch.full((1, n, n), -tau, dtype=torch.float64)
    return torch.cat([pos, neg]).to(dtype=dtype, device=device)


def template_log_priors(n: int, alpha: float | None = None) -> torch.Tensor:
    """``log p(T)`` for the ``n*n`` positive templates and the negative one (float64, ``(n*n +
    1,)``).

    ``p(T_mu) = alpha / n^2`` and ``p(T-) = 1 - alpha``, with ``alpha = n^2 / (1 + n^2)`` by
    default.
    """
    _check_map_size(n)
    alpha = n * n / (1.0 + n * n) if alpha is None else float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}.")
    return torch.cat(
        [
            torch.full((n * n,), math.log(alpha / (n * n)), dtype=torch.float64),
            torch.tensor([math.log(1.0 - alpha)], dtype=torch.float64),
        ]
    )


def _check_maps(x: torch.Tensor, what: str) -> int:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}.")
    if x.ndim != 4:
        raise ValueError(f"{what} must have shape (batch, filters, n, n), got {tuple(x.shape)}.")
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"{what} must be square (n x n) for the ICNN templates, got "
            f"{x.shape[-2]}x{x.shape[-1]}; crop or resize the feature maps to a square."
        )
    if not torch.is_floating_point(x):
        raise TypeError(f"{what} must be floating point, got {x.dtype}.")
    _check_map_size(int(x.shape[-1]))
    return int(x.shape[-1])


def filter_loss(
    x: torch.Tensor,
    *,
    beta: float = DEFAULT_BETA,
    tau: float | None = None,
    alpha: float | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """ICNN filter loss ``-MI(X; T)`` of every filter over a batch of post-ReLU maps ``x`` (B, C,
    n, n).

    ``Z_T`` runs over the B images of the batch, so the loss of a single image is 0. Computed in
    log space (log-sum-exp over images and over templates): finite for any scale, 0 for all-zero
    maps.
    ``reduction``: ``"mean"`` over filters (a scalar), ``"sum"``, or ``"none"`` (one value per
    filter).
    """
    n = _check_maps(x, "filter_loss input")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")
    B, C = x.shape[:2]
    T = icnn_templates(n, beta=beta, tau=tau, dtype=x.dtype, device=x.device)  # (M, n, n)
    M = T.shape[0]
    scores = x.reshape(B, C, n * n) @ T.reshape(M, n * n).t()  # tr(x . T): (B, C, M)
    log_px_t = scores - torch.logsumexp(scores, dim=0, keepdim=True)  # log p(x|T), over images
    log_prior = template_log_priors(n, alpha).to(dtype=x.dtype, device=x.device)
    log_px = torch.logsumexp(log_px_t + log_prior, dim=-1, keepdim=True)  # log p(x): (B, C, 1)
    # MI = sum_T p(T) sum_x p(x|T) (log p(x|T) - log p(x))
    mi = (log_prior.exp() * (log_px_t.exp() * (log_px_t - log_px)).sum(0)).sum(-1)  # (C,)
    loss = -mi
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def grouped_filter_loss(
    x: torch.Tensor, groups: torch.Tensor | None, *, beta: float = DEFAULT_BETA
) -> torch.Tensor:
    """``Loss_f`` (mean over filters) with ``Z_T`` over the images of each group (category) on its
    own.

    ICNN normalises ``p(x | T)`` over the images of one category; in a batch that mixes categories,
    the loss of each category's images is computed separately and the results are averaged,
    weighted by the number of images. Groups with a single image (whose loss is 0) are skipped.
    ``groups=None``: one group, the whole batch (:func:`filter_loss`).
    """
    if groups is None:
        return filter_loss(x, beta=beta)
    if groups.shape != x.shape[:1]:
        raise ValueError(f"groups must be (batch,) = ({x.shape[0]},), got {tuple(groups.shape)}.")
    total, count = x.new_zeros(()), 0
    for g in torch.unique(groups):
        sel = groups == g
        k = int(sel.sum())
        if k >= 2:
            total = total + k * filter_loss(x[sel], beta=beta)
            count += k
    return total / count if count else total


def icnn_mask(x: torch.Tensor, *, beta: float = DEFAULT_BETA) -> torch.Tensor:
    """Keep each map near its peak: ``relu(x * T_mu_hat / tau)``, ``mu_hat = argmax x`` per image
    and filter.

    The mask is a constant (no gradient flows into the peak position), as in ICNN.
    """
    n = _check_maps(x, "icnn_mask input")
    shapes = icnn_templates(n, beta=beta, tau=1.0, dtype=x.dtype, device=x.device)[: n * n]
    peak = x.detach().flatten(2).argmax(-1)  # (B, C)
    return F.relu(x * shapes[peak])


class FilterMask(nn.Module):
    """The ICNN mask layer (see :func:`icnn_mask`)."""

    def __init__(self, beta: float = DEFAULT_BETA) -> None:
        super().__init__()
        self.beta = float(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return icnn_mask(x, beta=self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


# ------------------------------------------------------------------------------------------------
# The explainer network
# ------------------------------------------------------------------------------------------------
class _ScaleNorm(nn.Module):
    """Divide every channel by its root mean square (batch statistics in training, running ones in
    eval). No centring, so non-negative maps stay non-negative; the decoder cannot tell a loud track
    from a quiet one, which keeps ``p`` meaningful."""

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_ms", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            ms = x.pow(2).mean(dim=(0, 2, 3))
            with torch.no_grad():
                self.running_ms.lerp_(ms.detach(), self.momentum)
        else:
            ms = self.running_ms
        return x / torch.sqrt(ms + self.eps)[None, :, None, None]


def _cbr(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    """conv 3x3 + batch norm + ReLU."""
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


def _head(
    c_in: int, c_out: int, n_in: int, n_out: int, hidden: int, relu_out: bool
) -> nn.Sequential:
    """Convolutions from an ``n_in`` to an ``n_out`` grid: stride-2 steps while halving fits, then
    resize."""
    layers: list[nn.Module] = []
    size, c = n_in, c_in
    while size > n_out and (size + 1) // 2 >= n_out:
        layers += _cbr(c, hidden, stride=2)
        size, c = (size + 1) // 2, hidden
    if size != n_out:
        layers.append(
            nn.Upsample(size=(n_out, n_out), mode="bilinear", align_corners=False)
            if n_out > size
            else nn.AdaptiveAvgPool2d(n_out)
        )
    layers += [*_cbr(c, hidden), nn.Conv2d(hidden, c_out, 3, padding=1)]
    if relu_out:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@dataclass
class ExplainerOutput:
    """What one explainer forward pass produces."""

    reconstructions: dict[str, torch.Tensor]  # target layer name -> reconstructed features
    p: torch.Tensor  # (B,) ratio of interpretable features
    interp_maps: tuple[
        torch.Tensor, ...
    ]  # post-ReLU maps of each interpretable layer (filter loss)
    x_interp: torch.Tensor  # masked output of the last interpretable layer (B, K, n, n)
    x_ordinary: torch.Tensor  # ordinary track (B, K, n, n)


class Explainer(nn.Module):
    """Two-track encoder + decoder on a performer's ``input_layer`` features (C, n, n).

    ``targets`` maps each reconstructed layer name to its feature shape (C, H, W). ``n_filters`` is
    the number K of filters per interpretable layer and of the ordinary track (default: the input
    channels); ``hidden`` the width of the decoder. ``relu_out`` (one bool per target or one for
    all) ends a head with a ReLU, right
    for post-ReLU targets.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        targets: Mapping[str, Sequence[int]],
        *,
        n_filters: int | None = None,
        hidden: int | None = None,
        n_interp_layers: int = 2,
        beta: float = DEFAULT_BETA,
        relu_out: bool | Mapping[str, bool] = True,
        input_layer: str | None = None,
    ) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ValueError(f"in_shape must be (channels, n, n), got {tuple(in_shape)}.")
        c_in, n, w = (int(v) for v in in_shape)
        if n != w:
            raise ValueError(
                f"the input feature map must be square for the ICNN templates, got {n}x{w}."
            )
        _check_map_size(n, "input feature map")
        if not targets:
            raise ValueError("targets is empty; name at least one higher layer to reconstruct.")
        n_filters = c_in if n_filters is None else int(n_filters)
        if n_filters < 1 or n_interp_layers < 1:
            raise ValueError(
                f"n_filters and n_interp_layers must be >= 1, got {n_filters} and "
                f"{n_interp_layers}."
            )
        self.in_shape = (c_in, n, n)
        self.target_shapes = {k: tuple(int(v) for v in s) for k, s in targets.items()}
        for name, s in self.target_shapes.items():
            if len(s) != 3:
                raise ValueError(f"target {name!r} needs a shape (channels, H, W), got {s}.")
            if s[1] != s[2]:
                raise ValueError(
                    f"target {name!r} is not square ({s[1]}x{s[2]}); the decoder builds square "
                    f"maps."
                )
        self.input_layer = input_layer
        self.n_filters = int(n_filters)
        self.beta = _check_beta(beta)
        hidden = int(hidden or max(n_filters, max(s[0] for s in self.target_shapes.values())))
        self.config = dict(
            in_shape=list(self.in_shape),
            targets={k: list(v) for k, v in self.target_shapes.items()},
            n_filters=self.n_filters,
            hidden=hidden,
            n_interp_layers=int(n_interp_layers),
            beta=self.beta,
            relu_out=relu_out if isinstance(relu_out, bool) else dict(relu_out),
            input_layer=input_layer,
        )
        K = self.n_filters
        self.interp = nn.ModuleList(
            nn.Conv2d(c_in if i == 0 else K, K, 3, padding=1) for i in range(n_interp_layers)
        )
        self.mask = FilterMask(beta)
        self.ordinary = nn.Sequential(*_cbr(c_in, K))
        self.ratio = nn.Sequential(
            nn.Conv2d(c_in, 16, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 1),
        )
        self.norm_interp, self.norm_ordinary = _ScaleNorm(K), _ScaleNorm(K)
        self.decoder = nn.Sequential(nn.Conv2d(K, hidden, 3, padding=1), nn.ReLU(inplace=True))
        self.heads = nn.ModuleDict()
        for name, (c, h, _) in self.target_shapes.items():
            r = relu_out if isinstance(relu_out, bool) else bool(relu_out.get(name, True))
            self.heads[_key(name)] = _head(hidden, c, n, h, hidden, r)

    @property
    def target_layers(self) -> list[str]:
        return list(self.target_shapes)

    def _check_input(self, f: torch.Tensor) -> None:
        if not isinstance(f, torch.Tensor) or f.ndim != 4 or tuple(f.shape[1:]) != self.in_shape:
            got = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise ValueError(
                "the explainer was built for input features of shape "
                f"(B, {', '.join(map(str, self.in_shape))}) "
                f"(layer {self.input_layer!r}), got {got}; feed the performer's features of that "
                "layer at the image size it was trained on, or build a new explainer."
            )

    def forward(self, f: torch.Tensor) -> ExplainerOutput:
        self._check_input(f)
        maps, h = [], f
        for conv in self.interp:
            h = F.relu(conv(h))
            maps.append(h)
            h = self.mask(h)
        x_interp = h
        x_ordin = self.ordinary(f)
        p = torch.sigmoid(self.ratio(f)).squeeze(1)
        x = p[:, None, None, None] * self.norm_interp(x_interp) + (1 - p)[
            :, None, None, None
        ] * self.norm_ordinary(x_ordin)
        z = self.decoder(x)
        recon = {name: self.heads[_key(name)](z) for name in self.target_shapes}
        return ExplainerOutput(recon, p, tuple(maps), x_interp, x_ordin)

    def reconstruct(self, f: torch.Tensor, layer: str | None = None) -> torch.Tensor:
        """The reconstruction of one target layer (the last one by default)."""
        out = self(f).reconstructions
        layer = layer or self.target_layers[-1]
        if layer not in out:
            raise KeyError(f"this explainer reconstructs {self.target_layers}, not {layer!r}.")
        return out[layer]

    def distillation_loss(
        self,
        out: ExplainerOutput,
        targets: Mapping[str, torch.Tensor],
        scales: Mapping[str, float] | None = None,
    ) -> torch.Tensor:
        """Sum over target layers of ``mean((f_hat - f)^2) / scale`` (scale: the target's mean
        square)."""
        total = 0.0
        for name, pred in out.reconstructions.items():
            if name not in targets:
                raise KeyError(
                    f"no features given for target layer {name!r}; pass {self.target_layers}."
                )
            tgt = targets[name]
            check_same_shape(pred, tgt, name)
            scale = float(scales[name]) if scales is not None else 1.0
            total = total + F.mse_loss(pred, tgt) / scale
        return total


def _key(name: str) -> str:
    return name.replace(".", "__")


def check_same_shape(pred: torch.Tensor, target: torch.Tensor, layer: str) -> None:
    """Raise a clear ``ValueError`` when a reconstruction and the performer's features differ in
    shape."""
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(
            f"the explainer's output for layer {layer!r} has shape {tuple(pred.shape)} but the "
            f"performer's features there have shape {tuple(target.shape)}; the explainer was "
            "built for another layer or image size: build (or train) it for this performer, "
            "these layers and this image size."
        )


# ------------------------------------------------------------------------------------------------
# Performer helpers: layer order, shapes, features
# ------------------------------------------------------------------------------------------------
def _as_list(layers: str | Sequence[str]) -> list[str]:
    if isinstance(layers, str):
        return [layers]
    layers = list(layers)
    if not layers or not all(isinstance(n, str) for n in layers):
        raise TypeError("target_layers must be a layer name or a non-empty list of layer names.")
    return layers


@torch.no_grad()
def _execution(
    performer: nn.Module, layers: list[str], example: torch.Tensor
) -> tuple[list[str], dict[str, tuple]]:
    mods = resolve_modules(performer, layers)
    order: list[str] = []
    shapes: dict[str, tuple] = {}
    handles = []
    for name, m in mods.items():

        def hook(_m, _a, out, name=name):
            if name not in order:
                order.append(name)
            if isinstance(out, torch.Tensor):
                shapes[name] = tuple(out.shape[1:])

        handles.append(m.register_forward_hook(hook))
    try:
        performer(example)
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in layers if n not in order]
    if missing:
        raise ValueError(
            f"layers {missing} did not run in the performer's forward pass; pick layers that do."
        )
    return order, shapes


def check_layer_order(
    performer: nn.Module,
    input_layer: str,
    target_layers: str | Sequence[str],
    example: torch.Tensor,
) -> dict[str, tuple]:
    """Check that every target layer runs after ``input_layer``; returns ``{layer: feature
    shape}``."""
    targets = _as_list(target_layers)
    if input_layer in targets:
        raise ValueError(
            f"the input layer {input_layer!r} is also a target; the explainer reconstructs "
            "*higher* layers from a lower one, so choose targets after it."
        )
    order, shapes = _execution(performer, [input_layer, *targets], example)
    pos = {n: i for i, n in enumerate(order)}
    early = [t for t in targets if pos[t] < pos[input_layer]]
    if early:
        raise ValueError(
            f"target layer(s) {early} run before the input layer {input_layer!r} in the performer "
            f"(execution order {order}); the layer pair is in the wrong order: swap them or pick "
            "targets above the input layer."
        )
    for name, s in shapes.items():
        if len(s) != 3:
            raise ValueError(
                f"layer {name!r} gives features of shape {s}, not a conv feature map (C, H, W)."
            )
    return shapes


def layer_shapes(
    performer: nn.Module, layers: str | Sequence[str], image_shape: Sequence[int]
) -> dict[str, tuple]:
    """Feature shapes ``(C, H, W)`` of ``layers`` for one image of ``image_shape`` (C, H, W)."""
    example = torch.zeros(1, *image_shape, device=model_device(performer))
    return _execution(performer, _as_list(layers), example)[1]


@torch.no_grad()
def performer_features(
    performer: nn.Module,
    images: torch.Tensor,
    layers: str | Sequence[str],
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    out_device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """The performer's features of ``layers`` for every image, ``{layer: (N, C, H, W)}`` on
    ``out_device``."""
    layers = _as_list(layers)
    dev = resolve_device(device)
    performer = performer.to(dev)
    require_eval(performer, "performer_features")
    check_images(images)
    check_images(images[:1].to(dev), performer)
    chunks: dict[str, list[torch.Tensor]] = {n: [] for n in layers}
    for i in range(0, len(images), batch_size):
        with capture(performer, layers, stop=True) as acts:
            performer(images[i : i + batch_size].to(dev))
        for n in layers:
            chunks[n].append(acts[n].to(out_device))
    return {n: torch.cat(v) for n, v in chunks.items()}


# ------------------------------------------------------------------------------------------------
# Distillation training (seeded, disk-cached)
# ------------------------------------------------------------------------------------------------
def train_explainer(
    performer: nn.Module,
    data: ImageSet,
    input_layer: str,
    target_layers: str | Sequence[str],
    *,
    n_filters: int | None = None,
    hidden: int | None = None,
    n_interp_layers: int = 2,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 64,
    filter_weight: float = 0.1,
    p_weight: float = 0.05,
    loss_peak: float | str | None = "auto",
    filter_layers: str = "last",
    z_groups: str = "batch",
    weight_decay: float = 0.0,
    beta: float = DEFAULT_BETA,
    seed: int = 0,
    device: str | torch.device | None = None,
    cache: bool = True,
    progress: bool = True,
) -> Explainer:
    """Distil an :class:`Explainer` from a frozen ``performer`` on ``data`` (labels unused), or load
    the identical run from the cache (``$INTERPKIT_CACHE/explainers``).

    The performer must be in eval mode; it is never changed. Its features of ``input_layer`` and
    ``target_layers`` are computed once, then the explainer is trained with Adam on
    ``distillation + filter_weight * Loss_f + p_weight * (-log p)``. ``loss_peak``: scale at which
    ``Loss_f`` sees the maps (:func:`rescale_maps`; ``"auto"`` = ``2 n^2``, None = raw maps, the
    paper's equations). ``filter_layers``: ``"last"`` puts ``Loss_f`` on the last interpretable
    layer
    only, ``"all"`` on every interpretable layer (the paper). ``z_groups``: ``"batch"`` normalises
    ``Z_T`` over the whole batch, ``"category"`` over the images of each category (``data.labels``)
    in the batch (ICNN; :func:`grouped_filter_loss`). Returns the explainer in eval
    mode on ``device`` with ``train_history`` (per-epoch losses and mean p), ``input_layer``,
    ``target_layers`` and ``cache_path``.
    """
    require_image_set(data, "the data of train_explainer()")
    if not isinstance(input_layer, str):
        raise TypeError(
            f"input_layer must be a layer name (str), got {type(input_layer).__name__}."
        )
    check_positive_int("epochs", epochs)
    if check_positive_int("batch_size", batch_size) < 2:
        raise ValueError(
            f"batch_size must be at least 2 (the filter loss compares images of a batch), "
            f"got {batch_size}."
        )
    check_number("lr", lr, positive=True)
    for name, weight in (("filter_weight", filter_weight), ("p_weight", p_weight)):
        check_number(name, weight, hint="pass 0 to switch that term off")
    _check_beta(beta)
    if filter_layers not in ("last", "all"):
        raise ValueError(f"filter_layers must be 'last' or 'all', got {filter_layers!r}.")
    if z_groups not in ("batch", "category"):
        raise ValueError(f"z_groups must be 'batch' or 'category', got {z_groups!r}.")
    if loss_peak is not None and loss_peak != "auto":
        check_number(
            "loss_peak",
            loss_peak,
            positive=True,
            hint="or 'auto', or None for raw maps; to switch the "
            "filter loss off, pass filter_weight=0",
        )
    targets = _as_list(target_layers)
    dev = resolve_device(device)
    performer = performer.to(dev)
    require_eval(performer, "train_explainer")
    check_images(
        data.images, name="training images"
    )  # finite, in [0, 1]: never cache a NaN explainer
    check_images(data.images[:1].to(dev), performer, name="training images")
    shapes = check_layer_order(performer, input_layer, targets, data.images[:2].to(dev))
    feats = performer_features(
        performer, data.images, [input_layer, *targets], device=dev, out_device=dev
    )
    relu_out = {t: bool(feats[t].min() >= 0) for t in targets}

    seed_everything(seed)
    explainer = Explainer(
        shapes[input_layer],
        {t: shapes[t] for t in targets},
        n_filters=n_filters,
        hidden=hidden,
        n_interp_layers=n_interp_layers,
        beta=beta,
        relu_out=relu_out,
        input_layer=input_layer,
    )
    if loss_peak == "auto":
        loss_peak = float(2 * shapes[input_layer][-1] ** 2)
    hparams = dict(
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        filter_weight=filter_weight,
        p_weight=p_weight,
        loss_peak=loss_peak,
        weight_decay=weight_decay,
        seed=seed,
    )
    if (
        filter_layers != "last" or z_groups != "batch"
    ):  # keys added only off the defaults: old caches stay valid
        hparams.update(filter_layers=filter_layers, z_groups=z_groups)
    performer_print = state_fingerprint(performer.cpu())
    blob_key = json.dumps(
        {
            "format": CACHE_FORMAT,
            "performer": performer_print,
            "data": data.fingerprint(),
            "config": explainer.config,
            "hparams": hparams,
            "init": state_fingerprint(explainer),
            "numerics": numerics(dev),
        },
        sort_keys=True,
    )
    performer.to(dev)
    path = (
        cache_dir()
        / "explainers"
        / f"Explainer-{hashlib.sha256(blob_key.encode()).hexdigest()[:24]}.pt"
    )
    if cache:
        ensure_cache_dir(path.parent)  # an unusable cache fails now, not after training
    blob = (
        load_torch_cache(path, ("state_dict", "history", "scales"), "explainer") if cache else None
    )
    if blob is not None and (why := state_mismatch(explainer, blob["state_dict"])):
        warnings.warn(
            f"explainer cache file {path} holds weights of another architecture ({why}); "
            f"retraining.",
            RuntimeWarning,
            stacklevel=2,
        )
        blob = None
    if blob is None:
        groups = data.labels.to(dev) if z_groups == "category" else None
        blob = _fit(explainer, feats, input_layer, targets, dev, hparams, progress, groups)
        if cache:
            atomic_torch_save(blob, path)
    explainer.load_state_dict(blob["state_dict"])
    explainer.train_history = list(blob["history"])
    explainer.target_scales = dict(blob["scales"])
    explainer.cache_path = path if cache else None
    explainer.performer_fingerprint = performer_print  # the metrics refuse another performer
    return explainer.to(dev).eval()


def rescale_maps(x: torch.Tensor, peak: float) -> torch.Tensor:
    """Rescale every filter's maps so that their mean per-image peak over the batch is ``peak``.

    ``Loss_f`` is not scale-invariant: with ``tau = 0.5 / n^2`` a part-shaped response separates the
    templates only when its peak is of order ``n^2`` (as in the VGG-16 conv5 maps ICNN was made
    for).
    The explainer's decoder sees the interpretable track through a scale normalisation, so its scale
    is arbitrary; evaluating ``Loss_f`` on maps brought to a fixed scale makes the loss judge the
    *shape* and the *selectivity* of a filter (which images fire, where), never its magnitude.
    The division is differentiated through; silent filters stay zero.
    """
    ref = x.flatten(2).amax(-1).mean(0)  # (C,)
    return x * (peak / (ref + 1e-6))[None, :, None, None]


def training_step(
    explainer: Explainer,
    f_in: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    scales: Mapping[str, float],
    filter_weight: float,
    p_weight: float,
    loss_peak: float | None = None,
    filter_layers: str = "last",
    groups: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """One forward pass of the explainer's loss; returns ``(loss, parts)`` (parts: floats for
    logging).

    ``filter_layers="last"``: ``Loss_f`` acts on the filters of the last interpretable layer only
    (earlier interpretable layers are masked only); ``"all"``: on every interpretable layer (the
    paper), averaged over layers. ``loss_peak``: the filter loss sees maps rescaled by
    :func:`rescale_maps` (None: raw maps). ``groups`` (B,): ``Z_T`` per group (category) of the
    batch (:func:`grouped_filter_loss`); None: over the whole batch.
    """
    out = explainer(f_in)
    rec = explainer.distillation_loss(out, targets, scales)
    layers = out.interp_maps if filter_layers == "all" else out.interp_maps[-1:]
    if filter_weight == 0:  # switched off: not computed (logged as 0)
        floss = rec.new_zeros(())
    else:
        floss = sum(
            grouped_filter_loss(
                m if loss_peak is None else rescale_maps(m, loss_peak), groups, beta=explainer.beta
            )
            for m in layers
        ) / len(layers)
    ploss = -torch.log(out.p.clamp_min(1e-6)).mean()
    loss = rec + filter_weight * floss + p_weight * ploss
    return loss, {
        "recon": rec.item(),
        "filter": floss.item(),
        "neg_log_p": ploss.item(),
        "p": out.p.mean().item(),
    }


def _fit(
    explainer: Explainer,
    feats: dict[str, torch.Tensor],
    input_layer: str,
    targets: list[str],
    dev: torch.device,
    hp: dict[str, Any],
    progress: bool,
    groups: torch.Tensor | None = None,
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    seed_everything(hp["seed"])
    explainer.to(dev).train()
    scales = {t: float(feats[t].pow(2).mean().clamp_min(1e-12)) for t in targets}
    opt = torch.optim.Adam(explainer.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    gen = torch.Generator().manual_seed(hp["seed"])
    f_in = feats[input_layer]
    n, bs = len(f_in), hp["batch_size"]
    steps = hp["epochs"] * max(1, n // bs if n >= bs else 1)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=hp["lr"], total_steps=steps, pct_start=0.15
    )
    bar = tqdm(total=steps, desc="distil explainer", disable=not progress, leave=False)
    history = []
    for epoch in range(hp["epochs"]):
        perm = torch.randperm(n, generator=gen).to(dev)
        sums: dict[str, float] = {}
        count = 0
        n_batches = max(1, n // bs if n >= bs else 1)
        for b in range(n_batches):  # full batches only: Z_T of the filter loss runs over the batch
            idx = perm[b * bs : (b + 1) * bs]
            loss, parts = training_step(
                explainer,
                f_in[idx],
                {t: feats[t][idx] for t in targets},
                scales,
                hp["filter_weight"],
                hp["p_weight"],
                hp["loss_peak"],
                hp.get("filter_layers", "last"),
                None if groups is None else groups[idx],
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            parts["loss"] = loss.item()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, recon=f"{parts['recon']:.3f}", p=f"{parts['p']:.2f}")
        history.append({"epoch": epoch + 1, **{k: v / count for k, v in sums.items()}})
    bar.close()
    explainer.eval()
    return {
        "state_dict": {k: v.detach().cpu() for k, v in explainer.state_dict().items()},
        "history": history,
        "scales": scales,
        "format": CACHE_FORMAT,
    }


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------
def _prepare(explainer: Explainer, performer: nn.Module, device) -> torch.device:
    if not isinstance(explainer, Explainer):
        raise TypeError(
            f"expected an interpkit.explainer.Explainer, got {type(explainer).__name__}."
        )
    if explainer.input_layer is None:
        raise ValueError(
            "this explainer does not know its input layer; build it with input_layer=... "
            "(train_explainer does)."
        )
    distilled_from = getattr(explainer, "performer_fingerprint", None)
    if distilled_from is not None and state_fingerprint(performer) != distilled_from:
        raise ValueError(
            "this explainer was distilled from another performer (other architecture or weights); "
            "pass the model given to train_explainer, or train an explainer for this one."
        )
    dev = resolve_device(device)
    performer.to(dev)
    explainer.to(dev)
    require_eval(performer, "the explainer metrics")
    require_eval(explainer, "the explainer metrics (explainer)")
    return dev


@contextmanager
def replaced_features(
    performer: nn.Module, explainer: Explainer, layer: str | None = None
) -> Iterator[dict]:
    """Within the block, the performer's ``layer`` (default: the explainer's last target) outputs
    the
    explainer's reconstruction, computed from the performer's own ``input_layer`` features of the
    same forward pass; the rest of the performer runs on it. Yields a dict that holds the last
    ``p``."""
    layer = layer or explainer.target_layers[-1]
    if layer not in explainer.target_shapes:
        raise KeyError(f"the explainer reconstructs {explainer.target_layers}, not {layer!r}.")
    mods = resolve_modules(performer, [explainer.input_layer, layer])
    state: dict[str, Any] = {}

    def keep(_m, _a, out):
        state["f"] = out.clone()

    def replace(_m, _a, out):
        if "f" not in state:
            raise RuntimeError(
                f"layer {layer!r} ran before the input layer {explainer.input_layer!r}."
            )
        res = explainer(state.pop("f"))
        pred = res.reconstructions[layer]
        check_same_shape(pred, out, layer)
        state["p"] = res.p
        return pred.to(out.dtype)

    h1 = mods[explainer.input_layer].register_forward_hook(keep)
    h2 = mods[layer].register_forward_hook(replace)
    try:
        yield state
    finally:
        h1.remove()
        h2.remove()


@torch.no_grad()
def reconstruction_error(
    explainer: Explainer,
    performer: nn.Module,
    data: ImageSet,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """Relative error ``||f_hat - f|| / ||f||`` (Frobenius, over the whole set) per target layer,
    and the fraction of the target's variance explained (``r2``); NaN where undefined (a target
    that is all zero, or constant, for ``r2``)."""
    require_image_set(data, "the data of reconstruction_error()")
    check_images(data.images)
    dev = _prepare(explainer, performer, device)
    layers = [explainer.input_layer, *explainer.target_layers]
    err = {t: 0.0 for t in explainer.target_layers}
    norm = dict(err)
    s1, cnt = dict(err), dict(err)
    for i in range(0, len(data), batch_size):
        feats = performer_features(
            performer, data.images[i : i + batch_size], layers, device=dev, out_device=dev
        )
        out = explainer(feats[explainer.input_layer]).reconstructions
        for t in explainer.target_layers:
            check_same_shape(out[t], feats[t], t)
            err[t] += float((out[t] - feats[t]).pow(2).sum())
            norm[t] += float(feats[t].pow(2).sum())
            s1[t] += float(feats[t].sum())
            cnt[t] += feats[t].numel()
    rows = []
    for t in explainer.target_layers:
        var = norm[t] - s1[t] ** 2 / cnt[t]
        # undefined (NaN) for an all-zero target, and for one whose variance the float32 sums cannot
        # resolve (below 1e-6 of its mean square: a constant layer), not a huge number
        rows.append(
            {
                "layer": t,
                "relative_error": math.sqrt(err[t] / norm[t]) if norm[t] > 0 else math.nan,
                "r2": 1.0 - err[t] / var if var > 1e-6 * norm[t] else math.nan,
            }
        )
    return pd.DataFrame(rows)


@torch.no_grad()
def accuracy_with_reconstruction(
    explainer: Explainer,
    performer: nn.Module,
    data: ImageSet,
    *,
    layer: str | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """The performer's accuracy on its own features and with ``layer`` replaced by the
    reconstruction."""
    require_image_set(data, "the data of accuracy_with_reconstruction()")
    check_images(data.images)
    dev = _prepare(explainer, performer, device)
    own, rec, agree = 0, 0, 0
    for i in range(0, len(data), batch_size):
        x, y = data.images[i : i + batch_size].to(dev), data.labels[i : i + batch_size].to(dev)
        a = performer(x).argmax(1)
        with replaced_features(performer, explainer, layer):
            b = performer(x).argmax(1)
        own += int((a == y).sum())
        rec += int((b == y).sum())
        agree += int((a == b).sum())
    n = len(data)
    return {
        "performer_accuracy": own / n,
        "reconstructed_accuracy": rec / n,
        "accuracy_drop": (own - rec) / n,
        "prediction_agreement": agree / n,
    }


@torch.no_grad()
def explainer_maps(
    explainer: Explainer,
    performer: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """Per image: the explainer's masked interpretable maps ``x_interp`` (N, K, n, n), the raw
    post-ReLU maps of the last interpretable layer ``interp_raw``, ``p`` (N,) and the performer's
    own
    ``input`` features (N, C, n, n); all on the CPU."""
    check_images(images)
    dev = _prepare(explainer, performer, device)
    out: dict[str, list] = {"x_interp": [], "interp_raw": [], "p": [], "input": []}
    for i in range(0, len(images), batch_size):
        f = performer_features(
            performer, images[i : i + batch_size], explainer.input_layer, device=dev, out_device=dev
        )[explainer.input_layer]
        res = explainer(f)
        out["x_interp"].append(res.x_interp.cpu())
        out["interp_raw"].append(res.interp_maps[-1].cpu())
        out["p"].append(res.p.cpu())
        out["input"].append(f.cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def interpretable_ratio(
    explainer: Explainer,
    performer: nn.Module,
    data: ImageSet,
    *,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """``p`` for every image of ``data`` (CPU tensor (N,))."""
    return explainer_maps(explainer, performer, data.images, device=device)["p"]


def peak_positions(maps: torch.Tensor, image_size: int | Sequence[int]) -> torch.Tensor:
    """Image coordinates (y, x) of each map's peak cell centre, ``(N, K, 2)``.

    A cell (i, j) of an n x m map over an H x W image covers pixels ``[i H/n, (i+1) H/n)``; its
    centre, where the receptive field of a 'same'-padded strided network is centred, is returned in
    the convention of ``WorldSet.landmarks`` (pixel k has its centre at coordinate k):
    ``((i + 0.5) H / n - 0.5, (j + 0.5) W / m - 0.5)``.
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
    coordinates (:func:`peak_positions`); the instability is the mean over landmarks of the standard
    deviation (ddof=1) of ``d_I`` over those images, divided by the image diagonal.

    With ``labels`` (multi-category data, as the authors' multi-class code) this is computed per
    category on its own images and landmarks, and each filter keeps the value of the category whose
    images it fires on most (highest mean peak). A filter that cannot be measured (fewer than two
    active images for a landmark) gets NaN and ``dead=True``. Lower is better: a filter firing on
    one object part keeps a constant distance to every landmark of that object.
    Columns: filter, instability, category (or -1), n_images, mean_peak, dead.
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
    groups = [(-1, np.arange(len(lm)))]
    if labels is not None:
        lab = labels.numpy()
        groups = [(int(c), np.flatnonzero(lab == c)) for c in np.unique(lab)]
        groups = [
            (c, idx) for c, idx in groups if (~np.isnan(lm[idx]).any(-1)).any()
        ]  # categories with parts
        if not groups:  # no image shows a landmark: nothing to measure, as without labels
            groups = [(-1, np.arange(len(lm)))]
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


@dataclass
class ExplainerReport:
    """Metrics of an explainer against its performer (see :func:`evaluate_explainer`)."""

    summary: pd.DataFrame  # metric, explainer, performer, better (lower/higher)
    reconstruction: pd.DataFrame  # per target layer: relative_error, r2
    accuracy: dict[str, float]
    p: torch.Tensor  # (N,) ratio per test image
    instability: pd.DataFrame  # per filter, column `model` in {explainer, performer}
    iou: pd.DataFrame  # per filter, column `model`
    tops: pd.DataFrame  # top images of the explainer's filters
    maps: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)

    def numbers(self) -> dict[str, float]:
        """The summary as a flat ``{metric_model: value}`` dict (for ``ik.nb.save_results``)."""
        out = {}
        for _, r in self.summary.iterrows():
            for col in ("explainer", "performer"):
                if pd.notna(r[col]):
                    out[f"{r['metric']}_{col}"] = float(r[col])
        return out


def evaluate_explainer(
    explainer: Explainer,
    performer: nn.Module,
    data: ImageSet,
    *,
    top: int | float = 100,
    quantile: float = 0.95,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> ExplainerReport:
    """Every metric on ``data`` (a ``WorldSet``: needs ``landmarks``, ``part_mask``, ``part_names``
    for the location instability and part IoU; those rows are NaN otherwise).

    The performer's filters compared with the explainer's interpretable filters are those of the
    explainer's input layer (the performer's conv-layer at the same depth and resolution).
    """
    rec = reconstruction_error(explainer, performer, data, batch_size=batch_size, device=device)
    acc = accuracy_with_reconstruction(
        explainer, performer, data, batch_size=batch_size, device=device
    )
    maps = explainer_maps(explainer, performer, data.images, batch_size=batch_size, device=device)
    H, W = data.image_size
    tops = top_activations(
        maps["x_interp"], (H, W), top=20 if isinstance(top, float) else min(top, 20)
    )
    inst = iou = pd.DataFrame()
    landmarks = getattr(data, "landmarks", None)
    if landmarks is not None:
        inst = pd.concat(
            [
                location_instability(
                    maps[key], landmarks, (H, W), labels=data.labels, top=top
                ).assign(model=model)
                for key, model in (("x_interp", "explainer"), ("input", "performer"))
            ],
            ignore_index=True,
        )
    part_mask, part_names = getattr(data, "part_mask", None), _part_names(data)
    if part_mask is not None and part_names:
        iou = pd.concat(
            [
                part_iou(maps["x_interp"], part_mask, part_names, quantile=quantile).assign(
                    model="explainer"
                ),
                part_iou(maps["input"], part_mask, part_names, quantile=quantile).assign(
                    model="performer"
                ),
            ],
            ignore_index=True,
        )

    def per(df: pd.DataFrame, col: str, model: str) -> float:
        if df.empty:
            return float("nan")
        return float(df.loc[df["model"] == model, col].mean())

    rows = [
        {
            "metric": f"relative_error[{r.layer}]",
            "explainer": r.relative_error,
            "performer": 0.0,
            "better": "lower",
        }
        for r in rec.itertuples()
    ] + [
        {
            "metric": "accuracy",
            "explainer": acc["reconstructed_accuracy"],
            "performer": acc["performer_accuracy"],
            "better": "higher",
        },
        {
            "metric": "ratio_p",
            "explainer": float(maps["p"].mean()),
            "performer": float("nan"),
            "better": "higher",
        },
        {
            "metric": "location_instability",
            "explainer": per(inst, "instability", "explainer"),
            "performer": per(inst, "instability", "performer"),
            "better": "lower",
        },
        {
            "metric": "part_iou",
            "explainer": per(iou, "iou", "explainer"),
            "performer": per(iou, "iou", "performer"),
            "better": "higher",
        },
        {
            "metric": "dead_filters",
            "explainer": float(inst.loc[inst["model"] == "explainer", "dead"].sum())
            if not inst.empty
            else float("nan"),
            "performer": float(inst.loc[inst["model"] == "performer", "dead"].sum())
            if not inst.empty
            else float("nan"),
            "better": "lower",
        },
    ]
    summary = pd.DataFrame(rows, columns=["metric", "explainer", "performer", "better"])
    return ExplainerReport(summary, rec, acc, maps["p"], inst, iou, tops, maps)


def _part_names(data: Any) -> list[str]:
    names = getattr(data, "part_names", None)
    if names is None:
        world = getattr(data, "world", None)
        names = getattr(world, "part_names", None)
    return list(names) if names is not None else []
