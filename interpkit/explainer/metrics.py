"""Metrics of an explainer against its performer: reconstruction error, accuracy with the
reconstructed layer, the ratio ``p``, and (in :func:`~interpkit.explainer.evaluate_explainer`) the
location instability
and part IoU of the interpretable filters next to the performer's own filters."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..checks import check_images, require_eval
from ..data.base import ImageSet, require_image_set
from ..device import resolve_device
from ..models.training import state_fingerprint
from .network import Explainer, check_same_shape
from .parts import location_instability, part_iou, top_activations
from .performer import performer_features, replaced_features

__all__: list[str] = []


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


@torch.no_grad()
def reconstruction_error(
    explainer: Explainer,
    performer: nn.Module,
    data: ImageSet,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """How well the explainer reconstructs the performer's features of each target layer.

    Args:
        explainer: a trained explainer (from ``train_explainer``), in eval mode.
        performer: the model it was distilled from, in eval mode.
        data: the images (an ``ImageSet``).
        batch_size: images per forward pass.
        device: where to run; None picks CUDA, MPS or the CPU.

    Returns:
        One row per target layer: ``layer``, ``relative_error`` ``||f_hat - f|| / ||f||``
        (Frobenius, over the whole set) and ``r2``, the fraction of the target's variance
        explained; NaN where undefined (a target that is all zero, or constant, for ``r2``).
    """
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
    explainer's reconstruction.

    Args:
        explainer: a trained explainer (from ``train_explainer``), in eval mode.
        performer: the model it was distilled from, in eval mode.
        data: labelled images (an ``ImageSet``).
        layer: the replaced layer (default: the explainer's last target layer).
        batch_size: images per forward pass.
        device: where to run; None picks CUDA, MPS or the CPU.

    Returns:
        ``performer_accuracy``, ``reconstructed_accuracy``, ``accuracy_drop`` (their difference)
        and ``prediction_agreement`` (share of images with the same predicted class).
    """
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
    """The explainer's maps and ratio ``p`` for every image, next to the performer's features.

    Args:
        explainer: a trained explainer (from ``train_explainer``), in eval mode.
        performer: the model it was distilled from, in eval mode.
        images: float images (N, C, H, W) in [0, 1].
        batch_size: images per forward pass.
        device: where to run; None picks CUDA, MPS or the CPU.

    Returns:
        CPU tensors: ``x_interp`` the masked interpretable maps (N, K, n, n), ``interp_raw`` the
        post-ReLU maps of the last interpretable layer, ``p`` (N,) and ``input``, the
        performer's own features of the explainer's input layer (N, C, n, n).
    """
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
    """The ratio ``p`` of interpretable features for every image.

    Args:
        explainer: a trained explainer (from ``train_explainer``), in eval mode.
        performer: the model it was distilled from, in eval mode.
        data: the images (an ``ImageSet``).
        device: where to run; None picks CUDA, MPS or the CPU.

    Returns:
        A CPU tensor (N,).
    """
    return explainer_maps(explainer, performer, data.images, device=device)["p"]


@dataclass
class ExplainerReport:
    """Metrics of an explainer against its performer (see
    :func:`~interpkit.explainer.evaluate_explainer`)."""

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
    """Every metric of an explainer on ``data``, next to the performer's own filters.

    The performer's filters compared with the explainer's interpretable filters are those of the
    explainer's input layer (the performer's conv layer at the same depth and resolution).

    Args:
        explainer: a trained explainer (from :func:`train_explainer`), in eval mode.
        performer: the model it was distilled from, in eval mode.
        data: the test images; a ``WorldSet`` (with ``landmarks``, ``part_mask`` and
            ``part_names``) for the location instability and part IoU, whose rows are NaN
            otherwise.
        top: images per filter and landmark for the location instability: a count, or a
            fraction in (0, 1] of the images showing the landmark.
        quantile: the activation quantile that thresholds a filter's maps for the part IoU.
        batch_size: images per forward pass.
        device: where to run; None picks CUDA, MPS or the CPU.

    Returns:
        An :class:`~interpkit.explainer.metrics.ExplainerReport`: ``summary`` (metric, explainer,
        performer, better), the
        per-layer reconstruction, the accuracies, ``p`` per image, per-filter instability and
        IoU (column ``model``), the explainer filters' top images and the maps.
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
    inst, iou = _part_metrics(maps, data, top, quantile)
    summary = _summary(rec, acc, maps, inst, iou)
    return ExplainerReport(summary, rec, acc, maps["p"], inst, iou, tops, maps)


_MODELS = (("x_interp", "explainer"), ("input", "performer"))


def _part_metrics(
    maps: dict[str, torch.Tensor], data: ImageSet, top: int | float, quantile: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Location instability and part IoU of the explainer's and the performer's filters (empty
    frames where ``data`` has no landmarks or parts)."""
    H, W = data.image_size
    inst = iou = pd.DataFrame()
    landmarks = getattr(data, "landmarks", None)
    if landmarks is not None:
        inst = pd.concat(
            [
                location_instability(
                    maps[key], landmarks, (H, W), labels=data.labels, top=top
                ).assign(model=model)
                for key, model in _MODELS
            ],
            ignore_index=True,
        )
    part_mask, part_names = getattr(data, "part_mask", None), _part_names(data)
    if part_mask is not None and part_names:
        iou = pd.concat(
            [
                part_iou(maps[key], part_mask, part_names, quantile=quantile).assign(model=model)
                for key, model in _MODELS
            ],
            ignore_index=True,
        )
    return inst, iou


def _per_model(df: pd.DataFrame, col: str, how: str = "mean") -> dict[str, float]:
    """``{explainer: ..., performer: ...}``: mean (or sum) of ``col`` per model; NaN if empty."""
    if df.empty:
        return {"explainer": float("nan"), "performer": float("nan")}
    return {m: float(getattr(df.loc[df["model"] == m, col], how)()) for _, m in _MODELS}


def _summary(
    rec: pd.DataFrame,
    acc: dict[str, float],
    maps: dict[str, torch.Tensor],
    inst: pd.DataFrame,
    iou: pd.DataFrame,
) -> pd.DataFrame:
    """The report's summary table: one row per metric, explainer next to performer."""
    rows = [
        (f"relative_error[{r.layer}]", r.relative_error, 0.0, "lower") for r in rec.itertuples()
    ]
    rows.append(("accuracy", acc["reconstructed_accuracy"], acc["performer_accuracy"], "higher"))
    rows.append(("ratio_p", float(maps["p"].mean()), float("nan"), "higher"))
    for metric, df, col, how, better in (
        ("location_instability", inst, "instability", "mean", "lower"),
        ("part_iou", iou, "iou", "mean", "higher"),
        ("dead_filters", inst, "dead", "sum", "lower"),
    ):
        v = _per_model(df, col, how)
        rows.append((metric, v["explainer"], v["performer"], better))
    return pd.DataFrame(rows, columns=["metric", "explainer", "performer", "better"])


def _part_names(data: Any) -> list[str]:
    names = getattr(data, "part_names", None)
    if names is None:
        world = getattr(data, "world", None)
        names = getattr(world, "part_names", None)
    return list(names) if names is not None else []
