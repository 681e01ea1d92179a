"""ClaDec and RefAE evaluation: reconstructions and the paper's comparisons."""

from __future__ import annotations

from collections.abc import Mapping
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
