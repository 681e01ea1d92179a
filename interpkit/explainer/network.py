"""The explainer network: a two-track auto-encoder on one layer of the performer's features.

x_interp = mask(relu(conv(mask(relu(conv(f))))))       interpretable track (ICNN filter loss)
x_ordin  = relu(conv(f))                               ordinary track
p        = sigmoid(g(f))                               ratio of interpretable features, per image
x        = p * norm(x_interp) + (1 - p) * norm(x_ordin)
f_hat    = decoder(x)          reconstructs the performer's features of higher layer(s)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_number
from .icnn import _BETA, _BETA_HINT, DEFAULT_BETA, FilterMask, map_side

__all__: list[str] = []


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

    Args:
        in_shape: the input features' shape (C, n, n); square, n >= 3.
        targets: each reconstructed layer's name -> its feature shape (C, H, W), square.
        n_filters: filters K per interpretable layer and of the ordinary track (default: the
            input channels).
        hidden: width of the decoder (default: the largest of K and the targets' channels).
        n_interp_layers: interpretable conv layers, each followed by the ICNN mask.
        beta: fall-off of the ICNN templates.
        relu_out: ends a head with a ReLU (right for post-ReLU targets): one bool for all
            targets or one per target.
        input_layer: the performer layer the input features come from (needed by the metrics).

    Calling it on features (B, C, n, n) returns an ``ExplainerOutput``.
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
        map_side((n, n), "input feature map")
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
        self.beta = check_number(_BETA, beta, hint=_BETA_HINT)
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

    def forward(self, f: torch.Tensor) -> ExplainerOutput:
        if not isinstance(f, torch.Tensor) or f.ndim != 4 or tuple(f.shape[1:]) != self.in_shape:
            got = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise ValueError(
                "the explainer was built for input features of shape "
                f"(B, {', '.join(map(str, self.in_shape))}) "
                f"(layer {self.input_layer!r}), got {got}; feed the performer's features of that "
                "layer at the image size it was trained on, or build a new explainer."
            )
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
