"""Input resampling, causal check: zero the selected channels and measure the output."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..capture import capture, resolve_modules
from ..checks import check_images, check_positive_int, require_eval
from ..device import resolve_device
from .analysis import _as_batch, analyze
from .core import METHODS
from .result import ResamplingResult


# --------------------------------------------------------------------------------------------
# Causal check: ablation
# --------------------------------------------------------------------------------------------
@contextmanager
def zero_channels(
    model: nn.Module, channels: Mapping[str, Sequence[int] | torch.Tensor]
) -> Iterator[dict]:
    """Zero channels of layer outputs during every forward pass inside the block (forward hooks).

    ``channels``: ``{layer: [channel indices]}`` (the same channels for every image) or
    ``{layer: mask}`` with a boolean ``(B, C)`` tensor, ``True`` = zero, one row per image of the
    batch. The yielded dict can be updated inside the block to change the masks between passes.
    Hooks are removed when the block ends, also on error.
    """
    state = dict(channels)

    def make_edit(name: str):
        def edit(out):
            if not isinstance(out, torch.Tensor) or out.ndim < 2:
                raise ValueError(
                    f"layer {name!r} outputs {type(out).__name__} without a channel axis; "
                    "zero_channels needs conv-like outputs (N, C, ...)."
                )
            sel = state[name]
            c = out.shape[1]
            if isinstance(sel, torch.Tensor) and sel.dtype == torch.bool:
                if sel.shape != (out.shape[0], c):
                    raise ValueError(
                        f"mask for {name!r} has shape {tuple(sel.shape)}, expected "
                        f"{(out.shape[0], c)} (batch, channels)."
                    )
                keep = (~sel).to(device=out.device, dtype=out.dtype)
            else:
                idx = torch.as_tensor(
                    list(sel) if not isinstance(sel, torch.Tensor) else sel, dtype=torch.long
                )
                if idx.numel() and (idx.min() < 0 or idx.max() >= c):
                    raise ValueError(
                        f"channel indices for {name!r} must lie in [0, {c - 1}], got "
                        f"{idx.tolist()}."
                    )
                keep = torch.ones(c, device=out.device, dtype=out.dtype)
                keep[idx.to(out.device)] = 0
                keep = keep.expand(out.shape[0], c)
            return out * keep.reshape(*keep.shape, *([1] * (out.ndim - 2)))

        return edit

    with capture(model, (), edit={name: make_edit(name) for name in state}):
        yield state


def _masks_from_table(
    sel: pd.DataFrame, layers: Sequence[str], b: int, num_channels: Mapping[str, int]
) -> dict:
    masks = {layer: torch.zeros(b, num_channels[layer], dtype=torch.bool) for layer in layers}
    for layer in layers:
        s = sel[sel["layer"] == layer]
        masks[layer][
            torch.tensor(s["image"].to_numpy(), dtype=torch.long),
            torch.tensor(s["channel"].to_numpy(), dtype=torch.long),
        ] = True
    return masks


@torch.no_grad()
def _probabilities(
    model: nn.Module, x: torch.Tensor, batch_size: int, masks: Mapping[str, torch.Tensor] | None
) -> torch.Tensor:
    """Softmax outputs of all images, zeroing ``masks`` (``{layer: (B, C) bool}``) if given; in
    float64 on the CPU (MPS has no float64)."""
    b, out = len(x), []
    if masks is None:
        for i in range(0, b, batch_size):
            out.append(F.softmax(model(x[i : i + batch_size]).to("cpu", torch.float64), -1))
        return torch.cat(out)
    with zero_channels(model, {layer: m[:batch_size] for layer, m in masks.items()}) as live:
        for i in range(0, b, batch_size):
            for layer, m in masks.items():
                live[layer] = m[i : i + batch_size]
            out.append(F.softmax(model(x[i : i + batch_size]).to("cpu", torch.float64), -1))
    return torch.cat(out)


def _random_masks(
    scope: Sequence[str], b: int, num_channels: Mapping[str, int], k: int, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    """``k`` channels per layer of ``scope`` drawn uniformly for each of ``b`` images."""
    masks = {}
    for layer in scope:
        c = num_channels[layer]
        pick = torch.rand((b, c), generator=gen).argsort(1)[:, : min(int(k), c)]
        masks[layer] = torch.zeros(b, c, dtype=torch.bool).scatter_(1, pick, True)
    return masks


@torch.no_grad()
def ablation_study(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int] | None = None,
    *,
    result: ResamplingResult | None = None,
    layers: Sequence[str] | None = None,
    k: int = 5,
    methods: Sequence[str] = METHODS,
    n_random: int = 10,
    all_layers: bool = True,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    **analyze_kwargs: Any,
) -> pd.DataFrame:
    """Zero the top-``k`` channels each method chooses *for each image* and measure what changes.

    For every image, scope (each layer on its own, and with ``all_layers`` every layer at once,
    scope ``"all"``) and method in ``methods`` (``METHODS``; ``"random"`` draws ``k`` channels
    per layer uniformly, ``n_random`` times, seeded), the chosen channels are zeroed with
    :func:`zero_channels` and the image is classified again. ``result`` is a previous
    :func:`~interpkit.resampling.analyze` of these images (else it is computed here with
    ``analyze_kwargs``).
    Returns one row per (image, scope, method, draw): ``n_zeroed`` channels, ``p_clean`` and
    ``p_ablated`` (probability of the class predicted on the clean image), ``drop`` = their
    difference, ``flipped`` (the prediction changed), and with ``labels`` ``correct_clean`` and
    ``correct_ablated``. Summarise with :func:`summarize_ablation`.

    Args:
        model, images, labels: the classifier (eval mode), images and optional labels.
        result, layers, k, methods, n_random, all_layers, seed, batch_size, device: as above.
        **analyze_kwargs: options for :func:`~interpkit.resampling.analyze` when ``result`` is
            not given.

    Returns:
        The table described above.
    """
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}.")
    check_positive_int("n_random", n_random)
    require_eval(model, "ablation_study")
    dev = resolve_device(device)
    model = model.to(dev)
    x = _as_batch(images)
    check_images(x)
    x = x.to(dev)
    check_images(x, model)
    b = len(x)
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if labels.numel() != b:
            raise ValueError(f"{b} images but {labels.numel()} labels; pass one label per image.")
    if result is None:
        result = analyze(model, x, layers, device=dev, keep_maps=False, **analyze_kwargs)
    elif result.n_images != b:
        raise ValueError(
            f"result holds {result.n_images} images but {b} were passed; analyze these images."
        )
    layers = list(result.layers if layers is None else resolve_modules(model, layers))
    missing = [layer for layer in layers if layer not in result.num_channels]
    if missing:
        raise KeyError(f"layers {missing} were not analysed in `result`; analyze them first.")
    target = torch.tensor(result.targets, dtype=torch.long)

    def probs(masks: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        return _probabilities(model, x, batch_size, masks)

    p0 = probs()
    p_clean = p0.gather(1, target.view(-1, 1))[:, 0]
    pred_clean = p0.argmax(1)
    gen = torch.Generator().manual_seed(int(seed))
    scopes = [[layer] for layer in layers] + ([layers] if all_layers and len(layers) > 1 else [])
    tables = {m: result.top_k(m, k) for m in methods if m != "random"}
    rows = []
    for scope in scopes:
        scope_name = scope[0] if len(scope) == 1 else "all"
        for method in methods:
            for draw in range(n_random if method == "random" else 1):
                if method == "random":
                    masks = _random_masks(scope, b, result.num_channels, k, gen)
                else:
                    masks = _masks_from_table(tables[method], scope, b, result.num_channels)
                p = probs(masks)
                pred = p.argmax(1)
                row = {
                    "image": np.arange(b),
                    "scope": scope_name,
                    "method": method,
                    "draw": draw,
                    "n_zeroed": sum(masks[layer].sum(1) for layer in scope).numpy(),
                    "p_clean": p_clean.numpy(),
                    "p_ablated": p.gather(1, target.view(-1, 1))[:, 0].numpy(),
                    "flipped": (pred != pred_clean).numpy(),
                }
                if labels is not None:
                    row["correct_clean"] = (pred_clean == labels).numpy()
                    row["correct_ablated"] = (pred == labels).numpy()
                rows.append(pd.DataFrame(row))
    df = pd.concat(rows, ignore_index=True)
    df["drop"] = df["p_clean"] - df["p_ablated"]
    return df


def summarize_ablation(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (scope, method) of an :func:`ablation_study` table.

    Random draws are first averaged per image, so every method is a mean over the same images.
    Columns: ``mean_drop`` (of the predicted-class probability), ``sem_drop`` (standard error over
    images), ``flip_rate``, ``mean_zeroed``, and with labels ``accuracy_clean``,
    ``accuracy_ablated``, ``accuracy_drop``.

    Args:
        df: a table from :func:`ablation_study`.

    Returns:
        The summary table.
    """
    cols = ["drop", "flipped", "n_zeroed"] + [
        c for c in ("correct_clean", "correct_ablated") if c in df
    ]
    per_image = (
        df.astype({c: float for c in cols if c in ("flipped", "correct_clean", "correct_ablated")})
        .groupby(["scope", "method", "image"], sort=False)[cols]
        .mean()
        .reset_index()
    )
    g = per_image.groupby(["scope", "method"], sort=False)
    out = pd.DataFrame(
        {
            "mean_drop": g["drop"].mean(),
            "sem_drop": g["drop"].sem(),
            "flip_rate": g["flipped"].mean(),
            "mean_zeroed": g["n_zeroed"].mean(),
        }
    )
    if "correct_clean" in per_image:
        out["accuracy_clean"] = g["correct_clean"].mean()
        out["accuracy_ablated"] = g["correct_ablated"].mean()
        out["accuracy_drop"] = out["accuracy_clean"] - out["accuracy_ablated"]
    out["n_images"] = g.size()
    return out.reset_index()


# --------------------------------------------------------------------------------------------
# Across training
# --------------------------------------------------------------------------------------------
def overlap_over_training(
    model: nn.Module,
    states: Sequence[Mapping[str, torch.Tensor]],
    images: torch.Tensor,
    layers: Sequence[str] | None = None,
    *,
    k: int = 5,
    a: str = "correlation",
    b: str = "precision",
    checkpoint_names: Sequence[Any] | None = None,
    device: str | torch.device | None = None,
    **analyze_kwargs: Any,
) -> pd.DataFrame:
    """The overlap of the ``a`` and ``b`` selections for each image under each of ``states``
    (state dicts, e.g. ``model.epoch_states`` from ``interpkit.models.train(...,
    keep_epoch_states=True)``).

    Returns ``ResamplingResult.overlap`` rows with a ``checkpoint`` column (``checkpoint_names``
    or 0, 1, ...). The model's own weights are restored afterwards.

    Args:
        model: the architecture the states load into (restored afterwards).
        states: state dicts, e.g. one per epoch.
        images: the images analysed at each state.
        layers: layers to analyse (default all conv layers).
        k: channels per selection.
        a, b: the two metrics whose top-``k`` sets are compared.
        checkpoint_names: a name per state (default its index).
        device: where to run.
        **analyze_kwargs: options for :func:`~interpkit.resampling.analyze`.

    Returns:
        One row per checkpoint and layer with the overlap of the two selections.
    """
    if checkpoint_names is not None and len(checkpoint_names) != len(states):
        raise ValueError(f"{len(states)} states but {len(checkpoint_names)} checkpoint names.")
    names = list(checkpoint_names) if checkpoint_names is not None else list(range(len(states)))
    original = {key: v.detach().clone() for key, v in model.state_dict().items()}
    frames = []
    try:
        for name, state in zip(names, states):
            model.load_state_dict(state)
            res = analyze(model, images, layers, keep_maps=False, device=device, **analyze_kwargs)
            frames.append(res.overlap(k, a, b).assign(checkpoint=name))
    finally:
        model.load_state_dict(original)
    return pd.concat(frames, ignore_index=True)
