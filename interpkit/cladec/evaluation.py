"""ClaDec and RefAE evaluation: reconstructions and the paper's comparisons."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..capture import activations
from ..checks import (
    check_images,
    check_positive_int,
    require_frozen,
)
from ..data.base import ImageSet
from ..device import model_device, resolve_device
from ..models.training import (
    evaluate,
)
from ..models.training import train as train_classifier
from .model import ClaDec, RefAE, _check_data, fresh_copy


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
    """Reconstructions of ``images`` (N, C, H, W) by a ``ClaDec`` or ``RefAE``, on the
    CPU.

    Args:
        explainer: a ``ClaDec`` or ``RefAE``.
        images: float images (N, C, H, W) in [0, 1].
        batch_size: images per pass.
        device: where to run (``None``: the decoder's device).

    Returns:
        The reconstructions (N, C, H, W), float, on the CPU.
    """
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
    """Test MSE of the trivial decoder that always outputs the mean training image.

    Args:
        train: the images whose mean is the prediction.
        test: the images it is scored on.

    Returns:
        The mean squared error over the test pixels.
    """
    mean = train.images.mean(0, keepdim=True)
    return float(((test.images - mean) ** 2).mean())


def _layer_depth(model: nn.Module, layer: str) -> int:
    names = [n for n, _ in model.named_modules()]
    return names.index(layer) if layer in names else -1


@dataclass(frozen=True)
class EvaluationOptions:
    """Settings of :func:`~interpkit.cladec.evaluate_explainers`.

    Args:
        fresh: train a fresh classifier on the reconstructions (``fresh_accuracy``).
        fresh_epochs: its epochs.
        fresh_lr: its learning rate.
        fresh_batch_size: its batch size.
        include_original: add a first row for the unchanged images.
        seed: seeds the fresh classifiers.
        device: where to run (``None``: CUDA, else MPS, else CPU).
        progress: show progress bars.
    """

    fresh: bool = True
    fresh_epochs: int = 6
    fresh_lr: float = 1e-3
    fresh_batch_size: int = 64
    include_original: bool = True
    seed: int = 0
    device: str | torch.device | None = None
    progress: bool = False


def evaluate_explainers(
    classifier: nn.Module,
    explainers: Mapping[Any, nn.Module],
    train: ImageSet,
    test: ImageSet,
    *,
    options: EvaluationOptions | None = None,
    **overrides: Any,
) -> pd.DataFrame:
    """One row per explainer: reconstruction error and what classifiers make of the reconstructions.

    Columns: ``layer``, ``depth`` (position in ``named_modules``), ``act_shape``, ``method``,
    ``alpha``, ``mse`` (test reconstruction MSE), ``mean_image_mse`` (predicting the mean training
    image), ``relative_mse`` (their ratio; NaN if the mean image MSE is 0), ``classifier_accuracy``
    / ``classifier_loss`` (the original classifier on the reconstructed test images),
    ``classifier_loss_train`` (the same loss on the reconstructed training images, which the
    trade-off loss optimises), ``fresh_accuracy`` (a freshly initialised classifier of the same
    architecture trained on the reconstructed training images with
    :func:`interpkit.models.train`, cached, and tested on the reconstructed test images; NaN if
    ``fresh`` is False). With ``include_original`` a first row ``method="original"`` gives the
    same numbers for the unchanged images.

    Args:
        classifier: the frozen classifier the explainers decode.
        explainers: ``{key: ClaDec or RefAE}`` (e.g. from :func:`train_explainers`).
        train: the decoders' training images.
        test: the test images.
        options: an ``EvaluationOptions``.
        overrides: its fields as keywords (``fresh=False``).

    Returns:
        A DataFrame with one row per explainer (and the original images first).
    """
    known = {f.name for f in fields(EvaluationOptions)}
    if set(overrides) - known:
        raise TypeError(
            f"evaluate_explainers() got unknown option(s) {sorted(set(overrides) - known)}; "
            f"choose from {sorted(known)}."
        )
    o = replace(options or EvaluationOptions(), **overrides)
    if not explainers:
        raise ValueError("no explainers to evaluate; train some with train_explainers().")
    require_frozen(classifier, "evaluate_explainers")
    dev = resolve_device(o.device)
    classifier.to(dev)
    _check_data(train, classifier, "training")
    _check_data(test, classifier, "test")
    base = mean_image_mse(train, test)
    rows = []
    if o.include_original:
        rows.append(
            {
                "layer": "(input)",
                "depth": 0,
                "act_shape": tuple(test.images.shape[1:]),
                "method": "original",
                "alpha": float("nan"),
                **_scores(classifier, train, test, train.images, test.images, base, o, dev),
            }
        )
        rows[-1]["relative_mse"] = 0.0
    for ex in explainers.values():
        if not isinstance(ex, (ClaDec, RefAE)):
            raise TypeError(
                f"explainers must map to ClaDec or RefAE objects, got {type(ex).__name__}."
            )
        rec_te = reconstruct(ex, test.images, device=dev)
        rec_tr = reconstruct(ex, train.images, device=dev)
        name = f"{ex.method}-{ex.layer}-{ex.alpha:g}"
        rows.append(
            {
                "layer": ex.layer,
                "depth": _layer_depth(classifier, ex.layer),
                "act_shape": tuple(ex.decoder.in_shape),
                "method": ex.method,
                "alpha": ex.alpha,
                **_scores(classifier, train, test, rec_tr, rec_te, base, o, dev, name),
            }
        )
    return pd.DataFrame(rows)


def _scores(
    classifier: nn.Module,
    train: ImageSet,
    test: ImageSet,
    rec_tr: torch.Tensor,
    rec_te: torch.Tensor,
    base: float,
    o: EvaluationOptions,
    dev: torch.device,
    name: str = "original",
) -> dict[str, float]:
    """The numeric columns of one row of :func:`~interpkit.cladec.evaluate_explainers` for
    reconstructed images."""
    mse = float(((rec_te - test.images) ** 2).mean())
    ev = evaluate(classifier, ImageSet(rec_te, test.labels, list(test.classes)), device=dev)
    ev_tr = evaluate(classifier, ImageSet(rec_tr, train.labels, list(train.classes)), device=dev)
    fresh = float("nan")
    if o.fresh:
        tr = ImageSet(rec_tr, train.labels, list(train.classes), f"{name}-train")
        te = ImageSet(rec_te, test.labels, list(test.classes), f"{name}-test")
        model = train_classifier(
            fresh_copy(classifier, o.seed),
            tr,
            epochs=o.fresh_epochs,
            lr=o.fresh_lr,
            batch_size=o.fresh_batch_size,
            seed=o.seed,
            device=dev,
            progress=o.progress,
        )
        fresh = evaluate(model, te, device=dev)["accuracy"]
    return {
        "mse": mse,
        "mean_image_mse": base,
        "relative_mse": mse / base if base > 0 else float("nan"),
        "classifier_accuracy": ev["accuracy"],
        "classifier_loss": ev["loss"],
        "classifier_loss_train": ev_tr["loss"],
        "fresh_accuracy": fresh,
    }
