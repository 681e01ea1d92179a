"""ClaDec: explain a layer by decoding its activations back into an image (Schneider and Vlachos).

J. Schneider, M. Vlachos, "Explaining Neural Networks by Decoding Layer Activations", IDA 2021
(arXiv 2005.13630); journal version "Explaining classifiers by constructing familiar concepts",
Machine Learning 2022 (arXiv 2203.04109).

A trained classifier is frozen. A decoder learns to map one layer's activations back to the input
image; whatever the layer does not keep cannot come back, so the reconstructions show what the
layer "sees". A reference auto-encoder (RefAE) with the same encoder architecture up to that layer,
trained from scratch on reconstruction only, shows what the same architecture *could* keep. The
trade-off extension trains the decoder on ``(1 - alpha) * MSE(x_hat, x) + alpha * CE(f(x_hat), y)``
with the classifier ``f`` frozen, so ``alpha`` trades fidelity to the input for fidelity to the
classifier.

Public API::

    dec = build_decoder(act_shape, image_shape, width=1.0, mean_pixel=None)   # Decoder
    cd = train_cladec(classifier, "features.3", train, alpha=0.0, epochs=12)  # ClaDec (cached)
    ae = train_refae(classifier, "features.3", train, epochs=12)              # RefAE  (cached)
    explainers = train_explainers(classifier, train, layers, alphas=(0.0,), refae=True)
    x_hat = reconstruct(cd, images)                                           # CPU tensor
    table = evaluate_explainers(classifier, explainers, train, test)          # pandas DataFrame
    cladec_loss(x_hat, x, logits, y, alpha) -> (loss, mse, ce)
    mean_image_mse(train, test) -> float

Differences from the authors' code (``github.com/JohnTailor/ClaDec``), all documented in the
chapter: the decoder's output bias starts at the logit of the training images' mean pixel
(``init="mean"``; ``init="default"`` keeps PyTorch's initialisation as the authors do), which
stops the sigmoid from saturating early in training (see :func:`train_cladec`); the RefAE
encoder's batch-norm statistics are recomputed over the training images after training (see
``_recalibrate_batchnorm``); the decoder's channel counts can be scaled with ``width`` for CPU
speed. The frozen classifier stays in evaluation mode while the trade-off loss is computed, as in
the authors' ``master`` branch (an unmerged pull request there would put it in training mode).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .capture import activations, capture, resolve_modules
from .checks import (
    check_images,
    check_number,
    check_positive_int,
    check_unit_interval,
    require_frozen,
)
from .data.base import ImageSet, require_image_set
from .device import model_device, resolve_device
from .io import state_mismatch
from .models.training import (
    Schedule,
    cache_dir,
    cache_key,
    cached_run,
    evaluate,
    fit_loop,
    reinitialize,
    seed_everything,
)
from .models.training import train as train_classifier

__all__ = [
    "Decoder",
    "ClaDec",
    "RefAE",
    "build_decoder",
    "cladec_loss",
    "train_cladec",
    "train_refae",
    "train_explainers",
    "reconstruct",
    "evaluate_explainers",
    "mean_image_mse",
    "fresh_copy",
    "CACHE_FORMAT",
]

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


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
_ACT_MEMORY_LIMIT = 1 << 30  # precompute a layer's activations for the whole set below 1 GiB


def _mean_pixel(data: ImageSet) -> torch.Tensor:
    return data.images.mean(dim=(0, 2, 3))


def _hparams(alpha, epochs, lr, weight_decay, batch_size, width, seed, init, amp) -> dict[str, Any]:
    return dict(
        alpha=alpha,
        epochs=epochs,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        width=width,
        seed=seed,
        init=init,
        amp=amp,
    )


def _validate(alpha, epochs, lr, weight_decay, batch_size, width, init) -> float:
    alpha = _check_alpha(alpha)
    check_positive_int("epochs", epochs)
    if check_positive_int("batch_size", batch_size) < 2:
        raise ValueError(f"batch_size must be an integer >= 2, got {batch_size!r}.")
    check_number("lr", lr, positive=True)
    check_number("width", width, positive=True)
    check_number("weight_decay", weight_decay)
    if init not in INIT_CHOICES:
        raise ValueError(f"init must be one of {INIT_CHOICES}, got {init!r}.")
    return alpha


def train_cladec(
    classifier: nn.Module,
    layer: str,
    train: ImageSet,
    *,
    alpha: float = 0.0,
    epochs: int = 12,
    lr: float = 3e-4,
    weight_decay: float = 1e-5,
    batch_size: int = 128,
    width: float = 1.0,
    init: str = "mean",
    seed: int = 0,
    device: str | torch.device | None = None,
    amp: bool = False,
    cache: bool = True,
    progress: bool = True,
) -> ClaDec:
    """Train a decoder from ``classifier``'s ``layer`` back to the images of ``train`` (or load it).

    ``classifier`` must be frozen (``interpkit.models.freeze``): eval mode, no trainable parameters;
    it stays so. The loss is :func:`cladec_loss` with ``alpha`` (0: plain ClaDec). Optimiser as in
    the authors' code: Adam, ``lr=3e-4``, ``weight_decay=1e-5``, batch 128.

    ``init="mean"`` (default) starts the output bias at the logit of the mean training pixel;
    ``init="default"`` keeps PyTorch's initialisation (output ~0.5 everywhere), as the authors do.
    With the latter, on dark-background data such as MNIST, Adam's first steps push *every* output
    towards black at once; the pre-sigmoid values overshoot far below zero, the sigmoid saturates
    (its gradient ``s (1 - s)`` vanishes) and the decoder can stay at one constant image. Each
    epoch's ``history`` entry records ``logit_mean`` and ``output_spread`` (std of the outputs
    across a probe batch of images; ~0 means a constant output) to show it.

    Cached on disk under ``cache_dir()/cladec`` (key: classifier weights, layer, data and every
    argument that changes the result); a hit loads with ``weights_only=True``. Returns a
    :class:`ClaDec` in eval mode on ``device``, with ``.history`` and ``.cache_path``.
    """
    alpha = _validate(alpha, epochs, lr, weight_decay, batch_size, width, init)
    if not isinstance(classifier, nn.Module):
        raise TypeError(f"classifier must be a torch.nn.Module, got {type(classifier).__name__}.")
    require_frozen(classifier, "ClaDec")
    _check_layer(classifier, layer)
    dev = resolve_device(device)
    classifier.to(dev)
    _check_data(train, classifier, "training")
    _check_targets(train)
    act_shape = tuple(_layer_output(classifier, layer, train.images[:2].to(dev)).shape[1:])
    hp = _hparams(alpha, epochs, lr, weight_decay, batch_size, width, seed, init, amp)
    decoder, blob, path, key = _train_decoder(
        "ClaDec",
        classifier,
        layer,
        act_shape,
        train,
        dev,
        hp,
        cache,
        progress,
        classifier=classifier,
    )
    return _finish(ClaDec(classifier, layer, decoder, alpha), blob, path, key, dev)


def train_refae(
    classifier: nn.Module,
    layer: str,
    train: ImageSet,
    *,
    encoder: nn.Module | None = None,
    epochs: int = 12,
    lr: float = 3e-4,
    weight_decay: float = 1e-5,
    batch_size: int = 128,
    width: float = 1.0,
    init: str = "mean",
    seed: int = 0,
    device: str | torch.device | None = None,
    amp: bool = False,
    cache: bool = True,
    progress: bool = True,
) -> RefAE:
    """Train the reference auto-encoder for ``classifier``'s ``layer`` (or load it from the cache).

    The encoder is ``fresh_copy(classifier, seed)`` (same architecture, re-initialised weights),
    or ``encoder`` if given (a freshly built model of the same architecture, used as is). It runs
    only up to ``layer`` (``interpkit.capture`` with ``stop=True, detach=False``), so the layers
    after it get no gradient and stay untouched. Encoder and decoder (the same as ClaDec's) train
    together on the reconstruction MSE only; everything else as in :func:`train_cladec`.
    The classifier itself is only read (its architecture), never changed.
    """
    _validate(0.0, epochs, lr, weight_decay, batch_size, width, init)
    if not isinstance(classifier, nn.Module):
        raise TypeError(f"classifier must be a torch.nn.Module, got {type(classifier).__name__}.")
    _check_layer(classifier, layer)
    if encoder is None:
        encoder = fresh_copy(classifier, seed)
    else:
        _check_layer(encoder, layer)
        encoder = copy.deepcopy(encoder).to("cpu").train()
        for p in encoder.parameters():
            p.requires_grad_(True)
    dev = resolve_device(device)
    _check_data(train, encoder, "training")
    _check_targets(train)
    with torch.no_grad():
        encoder.eval()
        act_shape = tuple(_layer_output(encoder, layer, train.images[:2]).shape[1:])
        encoder.train()
    hp = _hparams(0.0, epochs, lr, weight_decay, batch_size, width, seed, init, amp)
    decoder, blob, path, key = _train_decoder(
        "RefAE", encoder, layer, act_shape, train, dev, hp, cache, progress, encoder=encoder
    )
    encoder.load_state_dict(blob["encoder"])
    for p in encoder.parameters():
        p.requires_grad_(False)
    return _finish(RefAE(encoder, layer, decoder), blob, path, key, dev)


def _train_decoder(
    kind: str,
    keyed: nn.Module,
    layer: str,
    act_shape: tuple[int, ...],
    train: ImageSet,
    dev: torch.device,
    hp: dict[str, Any],
    cache: bool,
    progress: bool,
    **fit_kw: Any,
) -> tuple[Decoder, dict[str, Any], Path | None, str]:
    """Build the decoder (seeded), then load it from the cache or train it with :func:`_fit`.

    The cache key hashes ``keyed`` (the frozen classifier, or the RefAE's initial encoder), the
    data,
    the layer, the decoder's architecture and ``hp``. Returns the loaded decoder, the blob, the
    cache
    file (None without ``cache``) and the key.
    """
    mean_pixel = _mean_pixel(train) if hp["init"] == "mean" else None
    seed_everything(hp["seed"])
    decoder = build_decoder(
        act_shape, tuple(train.images.shape[1:]), width=hp["width"], mean_pixel=mean_pixel
    )
    key = cache_key(
        keyed,
        train,
        {"kind": kind, "layer": layer, "decoder": repr(decoder), "format": CACHE_FORMAT, **hp},
        dev,
    )
    path = cache_dir() / "cladec" / f"{kind}-{key}.pt"
    required = ("decoder", "history") + (("encoder",) if kind == "RefAE" else ())

    def mismatch(blob: dict[str, Any]) -> str:
        enc = fit_kw["encoder"] if kind == "RefAE" else None
        return state_mismatch(decoder, blob["decoder"]) or (
            state_mismatch(enc, blob["encoder"]) if enc is not None else ""
        )

    blob = cached_run(
        path if cache else None,
        lambda: _fit(decoder, train, dev, hp, progress, layer=layer, **fit_kw),
        required=required,
        what=f"{kind} decoder",
        mismatch=mismatch,
    )
    decoder.load_state_dict(blob["decoder"])
    return decoder, blob, (path if cache else None), key


def _finish(
    out: ClaDec | RefAE, blob: dict[str, Any], path: Path | None, key: str, dev: torch.device
) -> ClaDec | RefAE:
    """Attach the training history and cache location; eval mode on ``dev``."""
    out.history, out.cache_path, out.cache_key = list(blob["history"]), path, key
    return out.to(dev).eval()


def _fit(
    decoder: Decoder,
    data: ImageSet,
    dev: torch.device,
    hp: dict[str, Any],
    progress: bool,
    *,
    layer: str,
    classifier: nn.Module | None = None,
    encoder: nn.Module | None = None,
) -> dict[str, Any]:
    """The step shared by ClaDec (``classifier`` given) and RefAE (``encoder`` given), run by
    :func:`interpkit.models.training.fit_loop`; returns the blob that is cached."""
    alpha, n = hp["alpha"], len(data)
    decoder.to(dev).train()
    params = list(decoder.parameters())
    if encoder is not None:
        encoder.to(dev).train()
        params += list(encoder.parameters())
    images, labels = data.images, data.labels
    acts = None
    if classifier is not None:  # precompute the frozen layer's output once when it fits in memory
        per_image = _layer_output(classifier, layer, images[:1].to(dev)).numel() * 4
        if per_image * n <= _ACT_MEMORY_LIMIT:
            acts = activations(classifier, images, [layer], batch_size=512, device=dev)[layer]
            acts = acts.to(dev)
    probe = images[:256].to(dev)

    def step(idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        x = images[idx].to(dev, non_blocking=True)
        if encoder is not None:
            a = _layer_output(encoder, layer, x, keep_graph=True)
        elif acts is not None:
            a = acts[idx.to(acts.device)]
        else:
            a = _layer_output(classifier, layer, x)
        x_hat = decoder(a)
        logits, y = None, None
        if alpha > 0:
            y = labels[idx].to(dev, non_blocking=True)
            logits = classifier(x_hat)
        loss, mse, ce = cladec_loss(x_hat, x, logits, y, alpha)
        parts = (("loss", loss), ("mse", mse), ("ce", ce))
        return loss, {k: float(v.detach()) * len(idx) for k, v in parts}

    def end_epoch(epoch: int, sums: dict[str, float], seen: int) -> dict[str, Any]:
        return {
            "epoch": epoch + 1,
            **{k: sums.get(k, 0.0) / max(seen, 1) for k in ("loss", "mse", "ce")},
            **_probe_stats(decoder, probe, layer, classifier, encoder),
        }

    schedule = Schedule(
        hp["epochs"], hp["batch_size"], hp["lr"], hp["weight_decay"], hp["seed"], hp["amp"]
    )
    history = fit_loop(
        params,
        n,
        step,
        schedule,
        dev,
        desc=f"{'ClaDec' if classifier is not None else 'RefAE'} {layer}",
        progress=progress,
        end_epoch=end_epoch,
    )
    decoder.eval()
    blob: dict[str, Any] = {
        "decoder": {k: v.detach().cpu() for k, v in decoder.state_dict().items()},
        "history": history,
        "format": CACHE_FORMAT,
    }
    if encoder is not None:
        _recalibrate_batchnorm(encoder, layer, images, dev, hp["batch_size"])
        encoder.eval()
        blob["encoder"] = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    return blob


@torch.no_grad()
def _recalibrate_batchnorm(
    encoder: nn.Module, layer: str, images: torch.Tensor, dev: torch.device, batch_size: int
) -> None:
    """Set the batch-norm running statistics of ``encoder`` (up to ``layer``) to the exact averages
    over ``images`` under the final weights.

    During training they are an exponential average (momentum 0.1) over batches seen under
    *earlier* weights; after a few hundred steps at a high learning rate that lag makes the encoder
    behave differently in evaluation mode than in training (a RefAE from the last block can then
    reconstruct worse than the mean image although its training error is below it). One pass in
    training mode with ``momentum=None`` (cumulative average) and no gradient replaces them.
    """
    bns = [
        m
        for m in encoder.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    was = encoder.training
    encoder.train()
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size]
        if len(x) >= 2:
            _layer_output(encoder, layer, x.to(dev))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    encoder.train(was)


@torch.no_grad()
def _probe_stats(
    decoder: Decoder,
    probe: torch.Tensor,
    layer: str,
    classifier: nn.Module | None,
    encoder: nn.Module | None,
) -> dict[str, float]:
    """Pre-sigmoid mean and output spread across images (std over the batch, averaged over
    pixels)."""
    was = decoder.training
    decoder.eval()
    if encoder is not None:
        enc_was = encoder.training
        encoder.eval()
        a = _layer_output(encoder, layer, probe)
        encoder.train(enc_was)
    else:
        a = _layer_output(classifier, layer, probe)
    z = decoder.logits(a).float()
    decoder.train(was)
    return {"logit_mean": float(z.mean()), "output_spread": float(torch.sigmoid(z).std(0).mean())}


def train_explainers(
    classifier: nn.Module,
    train: ImageSet,
    layers: Sequence[str],
    *,
    alphas: Iterable[float] = (0.0,),
    refae: bool = True,
    **kwargs: Any,
) -> dict[tuple[str, str, float], nn.Module]:
    """ClaDec for every ``(layer, alpha)`` and (if ``refae``) a RefAE per layer (``alphas``: one
    number or several).

    Returns ``{(layer, method, alpha): explainer}`` (RefAE under alpha 0.0); ``kwargs`` go to
    :func:`train_cladec` / :func:`train_refae` (epochs, width, device, ...).
    """
    if isinstance(layers, str):
        layers = [layers]
    alphas = [_check_alpha(a) for a in ([alphas] if isinstance(alphas, numbers.Real) else alphas)]
    out: dict[tuple[str, str, float], nn.Module] = {}
    for layer in layers:
        for a in alphas:
            out[(layer, "ClaDec", a)] = train_cladec(classifier, layer, train, alpha=a, **kwargs)
        if refae:
            out[(layer, "RefAE", 0.0)] = train_refae(classifier, layer, train, **kwargs)
    return out


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def reconstruct(
    explainer: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Reconstructions of ``images`` (N, C, H, W) by a :class:`ClaDec` or :class:`RefAE`, on the
    CPU."""
    if not isinstance(explainer, (ClaDec, RefAE)):
        raise TypeError(
            f"explainer must be a ClaDec or RefAE (from train_cladec / train_refae), got "
            f"{type(explainer).__name__}."
        )
    check_positive_int("batch_size", batch_size)
    check_images(images)  # a clear error for a NumPy array or a single image
    dev = resolve_device(device) if device is not None else model_device(explainer.decoder)
    encoder = explainer.classifier if isinstance(explainer, ClaDec) else explainer.encoder
    check_images(images[:1].to(model_device(encoder)), encoder)  # channels
    out = activations(
        explainer,
        images,
        explainer,
        batch_size=batch_size,
        device=dev,
        reduce=lambda _, r: r.float(),
    )
    return next(iter(out.values()))


def mean_image_mse(train: ImageSet, test: ImageSet) -> float:
    """Test MSE of the trivial decoder that always outputs the mean training image."""
    mean = train.images.mean(0, keepdim=True)
    return float(((test.images - mean) ** 2).mean())


def _layer_depth(model: nn.Module, layer: str) -> int:
    names = [n for n, _ in model.named_modules()]
    return names.index(layer) if layer in names else -1


def evaluate_explainers(
    classifier: nn.Module,
    explainers: Mapping[Any, nn.Module],
    train: ImageSet,
    test: ImageSet,
    *,
    fresh: bool = True,
    fresh_epochs: int = 6,
    fresh_lr: float = 1e-3,
    fresh_batch_size: int = 64,
    include_original: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per explainer: reconstruction error and what classifiers make of the reconstructions.

    Columns: ``layer``, ``depth`` (position in ``named_modules``), ``act_shape``, ``method``,
    ``alpha``, ``mse`` (test reconstruction MSE), ``mean_image_mse`` (predicting the mean training
    image), ``relative_mse`` (their ratio; NaN if the mean image MSE is 0), ``classifier_accuracy``
    /
    ``classifier_loss`` (the original classifier on the reconstructed test images),
    ``classifier_loss_train`` (the same loss on the reconstructed training images, which the
    trade-off
    loss optimises), ``fresh_accuracy`` (a freshly initialised classifier of the same architecture
    trained on the reconstructed training images with :func:`interpkit.models.train`, cached, and
    tested on the reconstructed test images;
    NaN if ``fresh`` is False). With ``include_original`` a first row ``method="original"``
    gives the same numbers for the unchanged images.
    """
    if not explainers:
        raise ValueError("no explainers to evaluate; train some with train_explainers().")
    require_frozen(classifier, "evaluate_explainers")
    dev = resolve_device(device)
    classifier.to(dev)
    _check_data(train, classifier, "training")
    _check_data(test, classifier, "test")
    base = mean_image_mse(train, test)

    def fresh_acc(tr_images: torch.Tensor, te_images: torch.Tensor, name: str) -> float:
        if not fresh:
            return float("nan")
        tr = ImageSet(tr_images, train.labels, list(train.classes), f"{name}-train")
        te = ImageSet(te_images, test.labels, list(test.classes), f"{name}-test")
        model = train_classifier(
            fresh_copy(classifier, seed),
            tr,
            epochs=fresh_epochs,
            lr=fresh_lr,
            batch_size=fresh_batch_size,
            seed=seed,
            device=dev,
            progress=progress,
        )
        return evaluate(model, te, device=dev)["accuracy"]

    rows = []
    if include_original:
        ev = evaluate(classifier, test, device=dev)
        ev_tr = evaluate(classifier, train, device=dev)
        rows.append(
            {
                "layer": "(input)",
                "depth": 0,
                "act_shape": tuple(test.images.shape[1:]),
                "method": "original",
                "alpha": float("nan"),
                "mse": 0.0,
                "mean_image_mse": base,
                "relative_mse": 0.0,
                "classifier_accuracy": ev["accuracy"],
                "classifier_loss": ev["loss"],
                "classifier_loss_train": ev_tr["loss"],
                "fresh_accuracy": fresh_acc(train.images, test.images, "original"),
            }
        )
    for ex in explainers.values():
        if not isinstance(ex, (ClaDec, RefAE)):
            raise TypeError(
                f"explainers must map to ClaDec or RefAE objects, got {type(ex).__name__}."
            )
        rec_te = reconstruct(ex, test.images, device=dev)
        rec_tr = reconstruct(ex, train.images, device=dev)
        mse = float(((rec_te - test.images) ** 2).mean())
        ev = evaluate(classifier, ImageSet(rec_te, test.labels, list(test.classes)), device=dev)
        ev_tr = evaluate(
            classifier, ImageSet(rec_tr, train.labels, list(train.classes)), device=dev
        )
        fa = (
            fresh_acc(rec_tr, rec_te, f"{ex.method}-{ex.layer}-{ex.alpha:g}")
            if fresh
            else float("nan")
        )
        rows.append(
            {
                "layer": ex.layer,
                "depth": _layer_depth(classifier, ex.layer),
                "act_shape": tuple(ex.decoder.in_shape),
                "method": ex.method,
                "alpha": ex.alpha,
                "mse": mse,
                "mean_image_mse": base,
                "relative_mse": mse / base if base > 0 else float("nan"),
                "classifier_accuracy": ev["accuracy"],
                "classifier_loss": ev["loss"],
                "classifier_loss_train": ev_tr["loss"],
                "fresh_accuracy": fa,
            }
        )
    return pd.DataFrame(rows)
