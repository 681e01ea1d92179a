"""Input resampling: :func:`~interpkit.resampling.analyze`, the copies of each image through the
model in batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..capture import capture, resolve_modules
from ..checks import check_images, require_eval
from ..device import model_device, resolve_device
from .core import (
    METRICS,
    OUTPUTS,
    STAT_KEYS,
    _check_n_sigma,
    _finish_stats,
    _perturb,
    _position_sums,
    _unit_outputs,
    _weight_norms_of,
    noise_scales,
)
from .result import ResamplingResult


# --------------------------------------------------------------------------------------------
# The analysis
# --------------------------------------------------------------------------------------------
def _index_columns(names: tuple[str, ...], chans: tuple[int, ...], b: int) -> dict[str, Any]:
    """The ``image``, ``layer`` and ``channel`` columns of a scores table (``pd.DataFrame`` copies
    them, so the cached arrays are never changed)."""
    total = sum(chans)
    return {
        "image": np.repeat(np.arange(b), total),
        "layer": pd.Categorical.from_codes(
            np.tile(np.repeat(np.arange(len(names)), chans), b),
            dtype=pd.CategoricalDtype(list(names)),
        ),
        "channel": np.tile(np.concatenate([np.arange(c) for c in chans]), b),
    }


def _as_batch(images: torch.Tensor) -> torch.Tensor:
    if isinstance(images, torch.Tensor) and images.ndim == 3:
        return images[None]
    return images


def _targets(
    target: int | Sequence[int] | torch.Tensor | None, b: int, classes: int
) -> np.ndarray | None:
    """The explained class of each of ``b`` images as an int64 array (``None``: the predicted
    class)."""
    if target is None:
        return None
    t = torch.as_tensor(target, dtype=torch.long).reshape(-1).cpu().numpy()
    if t.size == 1:
        t = np.repeat(t, b)
    if t.size != b:
        raise ValueError(f"target must be one class or one per image ({b}), got {t.size} values.")
    if (t < 0).any() or (t >= classes).any():
        raise ValueError(f"target classes must lie in [0, {classes - 1}], got {t.tolist()}.")
    return t


@dataclass(frozen=True)
class ResamplingOptions:
    """The settings of :func:`~interpkit.resampling.analyze` (the paper's defaults).

    Args:
        n: copies per image.
        sigma: noise level (``perturb``).
        scheme: ``"multiplicative"``, ``"additive"`` or ``"occlusion"``.
        ramp: noise scales ramp from 0 to ``sigma`` over the copies.
        patch: occlusion patch size.
        clip: clip the copies to [0, 1].
        target: the explained class (one, or one per image); ``None``: the predicted class.
        output: ``"probability"`` (softmax, the paper) or ``"logit"``.
        min_activation: precision is left undefined (NaN) below this mean activation.
        seed: image ``i`` uses noise seed ``seed + i``.
        batch_size: copies per forward pass.
        keep_maps: keep the clean images' activation maps in the result.
    """

    n: int = 50
    sigma: float = 0.1
    scheme: str = "multiplicative"
    ramp: bool = True
    patch: int = 4
    clip: bool = False
    target: int | Sequence[int] | None = None
    output: str = "probability"
    min_activation: float = 0.1
    seed: int = 0
    batch_size: int = 1024
    keep_maps: bool = True


def analyze(
    model: nn.Module,
    images: torch.Tensor,
    layers: Sequence[str] | str | None = None,
    *,
    options: ResamplingOptions | None = None,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> ResamplingResult:
    """Score every channel of ``layers`` for each image by resampling the input (see the module
    doc).

    Each image gets ``n`` copies made by :func:`perturb`; all copies go through the model in as few
    passes as fit in ``batch_size`` copies, recording every layer at once
    (:func:`interpkit.capture`).
    The model must be in evaluation mode; it is moved to ``device``.

    Args:
        model: a classifier in evaluation mode.
        images: one image ``(C, H, W)`` or a batch ``(B, C, H, W)``, float in [0, 1].
        layers: layers to score (default ``interpkit.models.conv_layer_names``); each must output
            a ``(N, C, H, W)`` map.
        options: a ``ResamplingOptions`` (n, sigma, scheme, ramp, patch, clip, target, output,
            min_activation, seed, batch_size, keep_maps).
        device: where to run (``None``: CUDA, else MPS, else CPU).
        **overrides: any of those option fields as keywords, e.g. ``n=50, sigma=0.1``.

    Returns:
        A ``ResamplingResult`` (scores per image, layer and channel).
    """
    from ..models import conv_layer_names

    known = {f.name for f in fields(ResamplingOptions)}
    if set(overrides) - known:
        raise TypeError(
            f"analyze() got unknown option(s) {sorted(set(overrides) - known)}; choose from "
            f"{sorted(known)}."
        )
    o = replace(options or ResamplingOptions(), **overrides)
    _check_n_sigma(o.n, o.sigma)
    if o.output not in OUTPUTS:
        raise ValueError(f"unknown output {o.output!r}; choose one of {', '.join(OUTPUTS)}.")
    if int(o.batch_size) < 1:
        raise ValueError(f"batch_size must be a positive number of copies, got {o.batch_size}.")
    require_eval(model, "analyze")
    dev = resolve_device(device)
    if model_device(model) != dev:
        model = model.to(dev)
    x = _as_batch(images)
    check_images(x)
    x = x.to(dev)
    check_images(x, model)
    modules = resolve_modules(model, conv_layer_names(model) if layers is None else layers)
    return _analyze(model, x, modules, o)


def _record(
    model: nn.Module, modules: Mapping[str, nn.Module], copies: torch.Tensor
) -> tuple[Any, dict[str, Any]]:
    """One forward pass of ``copies`` (under ``no_grad``) keeping a copy of every module's output
    (:func:`interpkit.capture`)."""
    with torch.no_grad(), capture(model, list(modules)) as acts:
        logits = model(copies)
    return logits, acts


def _analyze(
    model: nn.Module,
    x: torch.Tensor,
    modules: dict[str, nn.Module],
    o: ResamplingOptions,
) -> ResamplingResult:
    n, sigma, scheme, ramp, patch, clip = o.n, o.sigma, o.scheme, o.ramp, o.patch, o.clip
    target, output, min_activation, seed = o.target, o.output, o.min_activation, o.seed
    batch_size, keep_maps = o.batch_size, o.keep_maps
    names = list(modules)
    b = len(x)
    per_pass = max(1, int(batch_size) // n)
    stats: list[np.ndarray] = []
    maps: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    logits_all: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    ts: list[np.ndarray] = []
    targets = None
    for start in range(0, b, per_pass):
        xb = x[start : start + per_pass]
        nb = len(xb)
        with torch.no_grad():
            copies = [
                _perturb(xb[i : i + 1], n, sigma, scheme, ramp, patch, 0.0, clip, seed + start + i)[
                    0
                ]
                for i in range(nb)
            ]
        logits, acts = _record(model, modules, copies[0] if nb == 1 else torch.cat(copies))
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise ValueError(
                "the model must return class scores of shape (N, classes); got "
                f"{type(logits).__name__} {tuple(getattr(logits, 'shape', ()))}."
            )
        for name in names:
            a = acts.get(name)
            if not isinstance(a, torch.Tensor) or a.ndim != 4:
                raise ValueError(
                    f"layer {name!r} outputs shape {tuple(getattr(a, 'shape', ()))}, not a conv "
                    f"map "
                    "(N, C, H, W) with a channel axis; choose conv layers, for example "
                    "interpkit.models.conv_layer_names(model)."
                )
            if keep_maps:
                maps[name].append(
                    a.view(nb, n, *a.shape[1:])[:, 0]
                )  # a view; copied once, at the end
        if start == 0:
            targets = _targets(target, b, logits.shape[1])
        # the outputs are a few numbers per copy: worked on in float64 NumPy on the CPU, where small
        # arrays cost microseconds (and float64 keeps probabilities near 1 apart)
        lg = logits.detach().to("cpu", torch.float64).numpy().reshape(nb, n, -1)
        t = lg[:, 0].argmax(1) if targets is None else targets[start : start + nb]
        y = lg if output == "logit" else _softmax(lg)
        y = np.take_along_axis(y, np.broadcast_to(t[:, None, None], (nb, n, 1)), 2)[
            ..., 0
        ]  # (nb, n)
        ones_u, y_varies = _unit_outputs(y)
        with torch.no_grad():
            sums = _position_sums(
                [acts[name].view(nb, n, acts[name].shape[1], -1) for name in names], ones_u
            )
        num_channels = {name: int(acts[name].shape[1]) for name in names}
        positions = tuple(int(acts[name][0, 0].numel()) for name in names)
        stats.append(
            _finish_stats(
                sums, tuple(num_channels.values()), positions, n, y_varies, min_activation
            )
        )
        logits_all.append(lg)
        ys.append(y)
        ts.append(t)
    per_image = (stats, logits_all, ys, ts)
    return _assemble(modules, num_channels, b, per_image, maps, o)


def _assemble(
    modules: dict[str, nn.Module],
    num_channels: dict[str, int],
    b: int,
    per_image: tuple[list[np.ndarray], ...],
    maps: dict[str, list[torch.Tensor]],
    o: ResamplingOptions,
) -> ResamplingResult:
    """The :class:`ResamplingResult` of :func:`~interpkit.resampling.analyze` from the per-pass
    arrays."""
    stats, logits_all, ys, ts = per_image
    names = list(modules)
    n, sigma, ramp, output, keep_maps = o.n, o.sigma, o.ramp, o.output, o.keep_maps
    scheme, patch, clip, min_activation, seed = o.scheme, o.patch, o.clip, o.min_activation, o.seed
    # the tidy table: one row per (image, layer, channel), built from whole arrays in one call
    block = (np.concatenate(stats) if len(stats) > 1 else stats[0]).reshape(-1, len(STAT_KEYS))
    cols: dict[str, Any] = dict(zip(STAT_KEYS, block.T))
    cols["valid_positions"] = cols["valid_positions"].astype(np.int64)
    cols.update(_index_columns(tuple(names), tuple(num_channels[name] for name in names), b))
    cols["weight_norm"] = np.tile(
        np.concatenate([_weight_norms_of(modules[nm], num_channels[nm]) for nm in names]), b
    )
    scores = pd.DataFrame(
        {k: cols[k] for k in ("image", "layer", "channel") + METRICS + STAT_KEYS[3:]}, copy=False
    )
    joined = lambda parts: np.concatenate(parts) if len(parts) > 1 else parts[0]  # noqa: E731
    lg, targets = joined(logits_all), joined(ts)  # (B, n, classes), (B,)
    raw_y = joined(ys)
    raw = {
        "output": raw_y,
        "predicted": lg.argmax(-1),
        "target": targets,
        "probability": (
            raw_y[:, 0] if output == "probability" else _softmax(lg[:, 0])[np.arange(b), targets]
        ),
        "noise_scale": noise_scales(n, float(sigma), ramp).numpy(),
    }
    params = dict(
        n=n,
        sigma=float(sigma),
        scheme=scheme,
        ramp=ramp,
        patch=patch,
        clip=clip,
        output=output,
        min_activation=float(min_activation),
        seed=seed,
    )
    # the clean maps get their own compact memory (a view would hold every copy's activations)
    kept = (
        {
            name: torch.cat(maps[name]).cpu()
            if len(maps[name]) > 1
            else maps[name][0].to("cpu", copy=True)
            for name in names
        }
        if keep_maps
        else None
    )
    return ResamplingResult(scores, names, num_channels, params, kept, raw)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in the dtype of ``logits`` (float64 here)."""
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
