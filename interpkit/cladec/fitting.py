"""ClaDec and RefAE training on the shared driver (interpkit.models.training)."""

from __future__ import annotations

import copy
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..capture import activations
from ..checks import (
    check_number,
    check_positive_int,
    require_frozen,
)
from ..data.base import ImageSet
from ..device import resolve_device
from ..io import state_mismatch
from ..models.training import (
    Schedule,
    cache_dir,
    cache_key,
    cached_run,
    fit_loop,
    seed_everything,
)
from .model import (
    CACHE_FORMAT,
    INIT_CHOICES,
    ClaDec,
    Decoder,
    RefAE,
    _check_alpha,
    _check_data,
    _check_layer,
    _check_targets,
    _layer_output,
    build_decoder,
    cladec_loss,
    fresh_copy,
)

# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
_ACT_MEMORY_LIMIT = 1 << 30  # precompute a layer's activations for the whole set below 1 GiB


def _mean_pixel(data: ImageSet) -> torch.Tensor:
    return data.images.mean(dim=(0, 2, 3))


@dataclass(frozen=True)
class DecoderTraining:
    """How a ClaDec or RefAE decoder is trained (defaults as in the authors' code).

    Args:
        epochs: passes over the training images.
        lr: Adam's learning rate.
        weight_decay: Adam's weight decay.
        batch_size: images per step (at least 2).
        width: decoder channel multiplier (1.0: the authors' channels).
        init: ``"mean"`` (output bias at the logit of the mean training pixel) or ``"default"``.
        seed: seeds the decoder's initial weights (and RefAE's encoder) and the batch order.
        device: where to train (``None``: CUDA, else MPS, else CPU).
        amp: mixed precision (CUDA only).
        cache: load from / save to the model cache.
        progress: show a progress bar.
    """

    epochs: int = 12
    lr: float = 3e-4
    weight_decay: float = 1e-5
    batch_size: int = 128
    width: float = 1.0
    init: str = "mean"
    seed: int = 0
    device: str | torch.device | None = None
    amp: bool = False
    cache: bool = True
    progress: bool = True


def _options(options: DecoderTraining | None, overrides: dict[str, Any]) -> DecoderTraining:
    """``options`` (default :class:`DecoderTraining`) with the keyword arguments of a call."""
    known = {f.name for f in fields(DecoderTraining)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(
            f"unknown training option(s) {unknown}; choose from {sorted(known)} "
            "(fields of interpkit.cladec.DecoderTraining)."
        )
    return replace(options or DecoderTraining(), **overrides)


def _hparams(alpha: float, o: DecoderTraining) -> dict[str, Any]:
    """The settings that change the trained weights (part of the cache key; keys unchanged)."""
    return dict(
        alpha=alpha,
        epochs=o.epochs,
        lr=o.lr,
        weight_decay=o.weight_decay,
        batch_size=o.batch_size,
        width=o.width,
        seed=o.seed,
        init=o.init,
        amp=o.amp,
    )


def _validate(alpha: Any, o: DecoderTraining, classifier: Any, layer: str) -> float:
    alpha = _check_alpha(alpha)
    check_positive_int("epochs", o.epochs)
    if check_positive_int("batch_size", o.batch_size) < 2:
        raise ValueError(f"batch_size must be an integer >= 2, got {o.batch_size!r}.")
    check_number("lr", o.lr, positive=True)
    check_number("width", o.width, positive=True)
    check_number("weight_decay", o.weight_decay)
    if o.init not in INIT_CHOICES:
        raise ValueError(f"init must be one of {INIT_CHOICES}, got {o.init!r}.")
    if not isinstance(classifier, nn.Module):
        raise TypeError(f"classifier must be a torch.nn.Module, got {type(classifier).__name__}.")
    _check_layer(classifier, layer)
    return alpha


def train_cladec(
    classifier: nn.Module,
    layer: str,
    train: ImageSet,
    *,
    alpha: float = 0.0,
    options: DecoderTraining | None = None,
    **overrides: Any,
) -> ClaDec:
    """Train a decoder from ``classifier``'s ``layer`` back to the images of ``train`` (or load it).

    ``classifier`` must be frozen (``interpkit.models.freeze``): eval mode, no trainable parameters;
    it stays so. The loss is ``cladec_loss`` with ``alpha`` (0: plain ClaDec). Optimiser as in
    the authors' code: Adam, ``lr=3e-4``, ``weight_decay=1e-5``, batch 128.

    ``init="mean"`` (default) starts the output bias at the logit of the mean training pixel;
    ``init="default"`` keeps PyTorch's initialisation (output ~0.5 everywhere), as the authors do.
    With the latter, on dark-background data such as MNIST, Adam's first steps push *every* output
    towards black at once; the pre-sigmoid values overshoot far below zero, the sigmoid saturates
    (its gradient ``s (1 - s)`` vanishes) and the decoder can stay at one constant image. Each
    epoch's ``history`` entry records ``logit_mean`` and ``output_spread`` (std of the outputs
    across a probe batch of images; ~0 means a constant output) to show it.

    Cached on disk under ``cache_dir()/cladec`` (key: classifier weights, layer, data and every
    argument that changes the result); a hit loads with ``weights_only=True``.

    Args:
        classifier: the frozen classifier to explain.
        layer: the layer whose output is decoded.
        train: the training images (with labels, for ``alpha > 0``).
        alpha: weight of the classification loss (0: reconstruction only).
        options: a ``DecoderTraining`` (epochs, lr, weight_decay, batch_size, width, init, seed,
            device, amp, cache, progress).
        **overrides: any of those fields as keywords, e.g. ``epochs=4, width=0.25``.

    Returns:
        A ``ClaDec`` in eval mode on the device, with ``.history`` and ``.cache_path``.
    """
    o = _options(options, overrides)
    alpha = _validate(alpha, o, classifier, layer)
    require_frozen(classifier, "ClaDec")
    dev = resolve_device(o.device)
    classifier.to(dev)
    _check_data(train, classifier, "training")
    _check_targets(train)
    act_shape = tuple(_layer_output(classifier, layer, train.images[:2].to(dev)).shape[1:])
    decoder, blob, path, key = _train_decoder(
        "ClaDec", classifier, layer, act_shape, train, dev, _hparams(alpha, o), o,
        classifier=classifier,
    )  # fmt: skip
    return _finish(ClaDec(classifier, layer, decoder, alpha), blob, path, key, dev)


def train_refae(
    classifier: nn.Module,
    layer: str,
    train: ImageSet,
    *,
    encoder: nn.Module | None = None,
    options: DecoderTraining | None = None,
    **overrides: Any,
) -> RefAE:
    """Train the reference auto-encoder for ``classifier``'s ``layer`` (or load it from the cache).

    The encoder is ``fresh_copy(classifier, seed)`` (same architecture, re-initialised weights),
    or ``encoder`` if given (a freshly built model of the same architecture, used as is). It runs
    only up to ``layer`` (``interpkit.capture`` with ``stop=True, detach=False``), so the layers
    after it get no gradient and stay untouched. Encoder and decoder (the same as ClaDec's) train
    together on the reconstruction MSE only; everything else as in :func:`train_cladec`.
    The classifier itself is only read (its architecture), never changed.

    Args:
        classifier: the classifier whose architecture the encoder copies.
        layer: the layer where the encoder ends.
        train: the training images.
        encoder: a freshly built encoder to use instead of ``fresh_copy(classifier, seed)``.
        options: a ``DecoderTraining``; **overrides: its fields as keywords.

    Returns:
        A ``RefAE`` in eval mode on the device, with ``.history`` and ``.cache_path``.
    """
    o = _options(options, overrides)
    _validate(0.0, o, classifier, layer)
    if encoder is None:
        encoder = fresh_copy(classifier, o.seed)
    else:
        _check_layer(encoder, layer)
        encoder = copy.deepcopy(encoder).to("cpu").train()
        for p in encoder.parameters():
            p.requires_grad_(True)
    dev = resolve_device(o.device)
    _check_data(train, encoder, "training")
    _check_targets(train)
    with torch.no_grad():
        encoder.eval()
        act_shape = tuple(_layer_output(encoder, layer, train.images[:2]).shape[1:])
        encoder.train()
    decoder, blob, path, key = _train_decoder(
        "RefAE", encoder, layer, act_shape, train, dev, _hparams(0.0, o), o, encoder=encoder
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
    o: DecoderTraining,
    **fit_kw: Any,
) -> tuple[Decoder, dict[str, Any], Path | None, str]:
    """Build the decoder (seeded), then load it from the cache or train it with ``_fit``.

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
        path if o.cache else None,
        lambda: _fit(decoder, train, dev, hp, o.progress, layer=layer, **fit_kw),
        required=required,
        what=f"{kind} decoder",
        mismatch=mismatch,
    )
    decoder.load_state_dict(blob["decoder"])
    return decoder, blob, (path if o.cache else None), key


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
    ``interpkit.models.training.fit_loop``; returns the blob that is cached."""
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
    :func:`train_cladec` / ``train_refae`` (epochs, width, device, ...).

    Args:
        classifier: the frozen classifier.
        train: the training images.
        layers: the layers to decode (one name or several).
        alphas: ClaDec's classification-loss weights.
        refae: also train a RefAE per layer.
        **kwargs: passed to the trainers (``DecoderTraining`` fields).

    Returns:
        ``{(layer, method, alpha): explainer}``.
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
