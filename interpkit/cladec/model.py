"""ClaDec and RefAE: the decoder, the two explainers and the loss."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..capture import capture, resolve_modules
from ..checks import (
    check_images,
    check_unit_interval,
)
from ..data.base import ImageSet, require_image_set
from ..device import model_device
from ..models.training import (
    reinitialize,
)

CACHE_FORMAT = 2  # 2: RefAE batch-norm statistics recalibrated after training
BASE_CHANNELS = 64  # the authors' ``channel_mult``: channels of the last hidden decoder layer
MAX_CHANNEL_FACTOR = 16  # cap on the doubling towards the input (1024 channels at width 1)
INIT_CHOICES = ("mean", "default")


# ---------------------------------------------------------------------------------------------
# Decoder
# ---------------------------------------------------------------------------------------------
def _scaled(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


def _check_shape(shape: Sequence[int], what: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(
            f"{what} must be a sequence of ints (without the batch axis), got {shape!r}."
        ) from None
    if any(s < 1 for s in shape):
        raise ValueError(f"{what} must have positive sizes, got {shape}.")
    return shape


class Decoder(nn.Module):
    """DCGAN-style decoder from one layer's activations to an image (values in (0, 1)).

    ``stem``: a linear layer + ReLU for vectors (and 1x1 maps), reshaped to ``(C, 1, 1)``; a 3x3
    convolution + ReLU for feature maps. ``up``: ``ConvTranspose2d(k=4, s=2, p=1)`` layers that
    double the side each and halve the channels (ReLU between), the last one producing the image
    channels; a sigmoid follows. ``logits(a)`` is the output before the sigmoid.
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, int, int],
        stem: nn.Module,
        up: nn.Sequential,
        vector: bool,
    ) -> None:
        super().__init__()
        self.in_shape, self.out_shape, self.vector = tuple(in_shape), tuple(out_shape), vector
        self.stem, self.up = stem, up

    @property
    def output_layer(self) -> nn.Module:
        return self.up[-1]

    def logits(self, a: torch.Tensor) -> torch.Tensor:
        if tuple(a.shape[1:]) != self.in_shape:
            raise ValueError(
                f"this decoder takes activations of shape (N, "
                f"{', '.join(map(str, self.in_shape))}), "
                f"got {tuple(a.shape)}; decode the layer it was built for."
            )
        return self.up(self.stem(a))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(a))


def build_decoder(
    act_shape: Sequence[int],
    image_shape: Sequence[int],
    *,
    width: float = 1.0,
    mean_pixel: float | Sequence[float] | torch.Tensor | None = None,
) -> Decoder:
    """A decoder from activations of ``act_shape`` (no batch axis: ``(D,)`` or ``(C, h, w)``) to
    images of ``image_shape`` ``(c, H, W)``.

    The image side must be the activation side times a power of two, ``H / h == W / w == 2**k``
    (vectors count as 1x1); the decoder then has ``k`` transposed convolutions (a 3x3 conv when
    ``k == 0``). Hidden channels are ``64 * width`` before the output layer and double towards the
    input (capped at 16x). ``mean_pixel`` (per image channel, in (0, 1)) sets the output bias to
    its logit, so an untrained decoder already predicts the mean brightness; ``None`` keeps
    PyTorch's default initialisation (the authors' setting).
    """
    act_shape = _check_shape(act_shape, "act_shape")
    image_shape = _check_shape(image_shape, "image_shape")
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (channels, height, width), got {image_shape}.")
    if not (isinstance(width, (int, float)) and math.isfinite(width) and width > 0):
        raise ValueError(f"width must be a positive number, got {width!r}.")
    c_img, H, W = image_shape
    if len(act_shape) == 1 or (len(act_shape) == 3 and act_shape[1:] == (1, 1)):
        vector, (h, w) = True, (1, 1)
    elif len(act_shape) == 3:
        vector, (h, w) = False, act_shape[1:]
    else:
        raise ValueError(
            f"cannot decode activations of shape {act_shape}: expected a vector (D,) or a feature "
            "map (C, h, w). Choose a convolutional or linear layer, or flatten the output."
        )
    ratio_h, ratio_w = H / h, W / w
    k = int(round(math.log2(ratio_h))) if ratio_h >= 1 else -1
    if ratio_h != ratio_w or k < 0 or h * 2**k != H or w * 2**k != W:
        what = "a vector (decoded from 1x1)" if vector else f"{h}x{w} maps"
        raise ValueError(
            f"cannot decode activations of shape {act_shape} ({what}) to images of shape "
            f"{image_shape}: each "
            f"transposed convolution doubles the side, so the image side must be the activation "
            f"side times a "
            f"power of two (here {H}/{h} = {ratio_h:g}, {W}/{w} = {ratio_w:g}). Pick a layer whose "
            f"output side "
            f"divides the image side by 1, 2, 4, ..., or resize the images (ImageSet.resized(32))."
        )
    base = _scaled(BASE_CHANNELS, width)
    if vector:
        d_in = int(np.prod(act_shape))
        c0 = max(d_in, base)
        stem = nn.Sequential(
            nn.Flatten(), nn.Linear(d_in, c0), nn.ReLU(), nn.Unflatten(1, (c0, 1, 1))
        )
    else:
        c0 = act_shape[0]
        stem = nn.Sequential(nn.Conv2d(c0, c0, 3, padding=1), nn.ReLU())
    layers: list[nn.Module] = []
    c = c0
    if k == 0:
        layers.append(nn.Conv2d(c, c_img, 3, padding=1))
    else:
        for i in range(k - 1):
            c_out = base * min(2 ** (k - 2 - i), MAX_CHANNEL_FACTOR)
            layers += [nn.ConvTranspose2d(c, c_out, 4, stride=2, padding=1), nn.ReLU()]
            c = c_out
        layers.append(nn.ConvTranspose2d(c, c_img, 4, stride=2, padding=1))
    dec = Decoder(act_shape, image_shape, stem, nn.Sequential(*layers), vector)
    if mean_pixel is not None:
        p = torch.as_tensor(mean_pixel, dtype=torch.float32).flatten()
        if p.numel() == 1:
            p = p.expand(c_img)
        if p.numel() != c_img:
            raise ValueError(
                f"mean_pixel needs 1 or {c_img} values (one per image channel), got {p.numel()}."
            )
        p = p.clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            dec.output_layer.bias.copy_(torch.log(p / (1 - p)))
    return dec


# ---------------------------------------------------------------------------------------------
# Explainers
# ---------------------------------------------------------------------------------------------
class ClaDec(nn.Module):
    """A frozen classifier's layer + a trained decoder. ``forward(x)`` returns the reconstruction.

    The classifier is kept as a plain attribute (not a registered submodule), so ``state_dict``,
    ``train()`` and ``eval()`` touch only the decoder and the classifier stays frozen.
    """

    method = "ClaDec"

    def __init__(
        self, classifier: nn.Module, layer: str, decoder: Decoder, alpha: float = 0.0
    ) -> None:
        super().__init__()
        self.__dict__["classifier"] = classifier
        self.layer, self.decoder, self.alpha = layer, decoder, float(alpha)
        self.history: list[dict[str, float]] = []
        self.cache_path: Path | None = None

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's activations at ``layer`` (the forward pass stops there)."""
        return _layer_output(self.classifier, self.layer, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x))


class RefAE(nn.Module):
    """Reference auto-encoder: a freshly initialised copy of the classifier, run up to ``layer``,
    and a decoder of the same architecture as ClaDec's, trained end to end on reconstruction."""

    method = "RefAE"
    alpha = 0.0

    def __init__(self, encoder: nn.Module, layer: str, decoder: Decoder) -> None:
        super().__init__()
        self.encoder, self.layer, self.decoder = encoder, layer, decoder
        self.history: list[dict[str, float]] = []
        self.cache_path: Path | None = None

    def encode(self, x: torch.Tensor, *, keep_graph: bool = False) -> torch.Tensor:
        """The encoder's activations at ``layer`` (with the graph if ``keep_graph``)."""
        return _layer_output(self.encoder, self.layer, x, keep_graph=keep_graph)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x, keep_graph=torch.is_grad_enabled()))


def _layer_output(
    model: nn.Module, layer: str, x: torch.Tensor, keep_graph: bool = False
) -> torch.Tensor:
    """Run ``model`` on ``x`` until ``layer`` has produced its output, and return that output.

    ``stop=True`` ends the pass right after the layer, so no later (in-place) operation can touch
    the tensor and it need not be cloned; ``keep_graph`` keeps it differentiable (RefAE training).
    """
    with capture(model, [layer], stop=True, clone=False, detach=not keep_graph) as acts:
        model(x)
    out = acts.get(layer)
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"layer {layer!r} of {type(model).__name__} does not output a single tensor "
            f"(got {type(out).__name__}); choose a layer whose output is a tensor."
        )
    return out


def fresh_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` (on the CPU) with every parameter re-initialised, trainable, in
    training mode: the same architecture, none of the learned weights.

    Every module that owns parameters must have ``reset_parameters()`` (all of torch.nn's layers
    do); batch-norm running statistics are reset too. Raises ``TypeError`` otherwise: then build
    the fresh model yourself and pass it (``train_refae(..., encoder=...)``).
    """
    fresh = copy.deepcopy(model).to("cpu")
    for attr in ("train_history", "epoch_states", "cache_path"):
        fresh.__dict__.pop(attr, None)
    if not reinitialize(fresh, seed):
        raise TypeError(
            f"{type(model).__name__} has a module with parameters but no reset_parameters(), so a "
            "fresh copy cannot be made automatically; build a freshly initialised model of the "
            "same "
            "architecture and pass it as encoder=."
        )
    for p in fresh.parameters():
        p.requires_grad_(True)
    return fresh.train()


# ---------------------------------------------------------------------------------------------
# Loss and checks
# ---------------------------------------------------------------------------------------------
def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)):
        raise TypeError(f"alpha must be a number in [0, 1], got {type(alpha).__name__}.")
    alpha = float(alpha)
    if not (0.0 <= alpha <= 1.0):
        raise ValueError(
            f"alpha must lie in [0, 1] (0: reconstruction only, 1: classification only), got "
            f"{alpha}."
        )
    return alpha


def cladec_loss(
    x_hat: torch.Tensor,
    x: torch.Tensor,
    logits: torch.Tensor | None,
    y: torch.Tensor | None,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(1 - alpha) * MSE(x_hat, x) + alpha * CE(logits, y)``; returns ``(loss, mse, ce)``.

    ``logits`` are the frozen classifier's outputs on ``x_hat`` (may be ``None`` when ``alpha ==
    0``,
    then ``ce`` is 0 and nothing is computed for it).
    """
    alpha = _check_alpha(alpha)
    if x_hat.shape != x.shape:  # F.mse_loss would broadcast the two with only a warning
        raise ValueError(
            f"reconstructions have shape {tuple(x_hat.shape)} but the images {tuple(x.shape)}; "
            "the decoder must output images of the input's size (see build_decoder)."
        )
    mse = F.mse_loss(x_hat.float(), x.float())
    if alpha == 0.0 or logits is None:
        if alpha > 0:
            raise ValueError(
                "alpha > 0 needs the classifier's logits on the reconstructions; pass logits and y."
            )
        ce = torch.zeros((), device=mse.device)
        return mse, mse, ce
    ce = F.cross_entropy(logits.float(), y)
    return (1 - alpha) * mse + alpha * ce, mse, ce


def _check_data(data: Any, model: nn.Module, what: str) -> None:
    require_image_set(data, f"the {what} data")
    check_images(data.images[:1].to(model_device(model)), model, name=f"{what} images")


def _check_targets(data: ImageSet) -> None:
    """The decoder ends in a sigmoid, so the images it reconstructs must be finite and in [0, 1]."""
    check_unit_interval(
        data.images,
        "training images",
        "the decoder ends in a sigmoid: pass unnormalised images scaled to [0, 1] (e.g. "
        "x.float() / 255) and put any normalisation inside the model.",
    )


def _check_layer(model: nn.Module, layer: str) -> str:
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module name (str), got {type(layer).__name__}.")
    resolve_modules(model, layer)  # KeyError with the closest names
    return layer
