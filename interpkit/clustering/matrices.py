"""Probe-set data matrices: pixels per colour channel and activations per layer."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..capture import capture, eval_mode
from ..checks import check_images, check_unit_interval
from ..data.base import ImageSet
from ..device import resolve_device
from ..io import atomic_path

_CHANNEL_NAMES = {1: ["grey"], 3: ["red", "green", "blue"]}


class ActivationMatrices(dict):
    """``{layer: matrix (units x N, float32)}`` with ``shapes[layer] = (C, H, W)`` of one example.

    Unit ``m`` of a layer is channel ``m // (H*W)`` at position ``divmod(m % (H*W), W)``
    (row-major flattening of ``(C, H, W)``); ``top_units`` uses this mapping.
    """

    def __init__(self) -> None:
        super().__init__()
        self.shapes: dict[str, tuple[int, ...]] = {}


def pixel_matrices(images: torch.Tensor | ImageSet) -> dict[str, torch.Tensor]:
    """One (pixels x N) matrix per colour channel from images (N, C, H, W) in [0, 1] (or an
    ImageSet).

    Keys are ``red, green, blue`` for three channels, ``grey`` for one, ``channel<i>`` otherwise.

    Args:
        images: (N, C, H, W) float images in [0, 1], or an ImageSet.

    Returns:
        ``{channel name: (H*W x N) float32 tensor}``.
    """
    x = getattr(images, "images", images)
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(
            f"pixel_matrices needs images of shape (N, C, H, W) or an ImageSet, got "
            f"{type(x).__name__} of shape {getattr(x, 'shape', None)}."
        )
    check_images(x)  # float (not uint8), not empty, finite, in [0, 1]
    x = x.detach().float().cpu()
    check_unit_interval(
        x,
        "pixel values",
        "clean or drop images with NaN, and pass the images before "
        "normalisation, e.g. ImageSet.images, not mean/std-normalised inputs.",
    )
    n, c = x.shape[:2]
    names = _CHANNEL_NAMES.get(c, [f"channel{i}" for i in range(c)])
    return {names[i]: x[:, i].reshape(n, -1).T for i in range(c)}


def _checked(name: str, a: object, relu: bool, start: int) -> torch.Tensor:
    """One batch of layer ``name`` as (B, units) float32, checked finite and non-negative."""
    if not isinstance(a, torch.Tensor):
        raise TypeError(
            f"layer {name!r} returned {type(a).__name__}, not a tensor; "
            "capture a module that outputs a single tensor."
        )
    if relu:
        a = torch.relu(a)
    a = a.reshape(len(a), -1).float()
    if not torch.isfinite(a).all():
        bad = (~torch.isfinite(a)).any(1).nonzero().flatten()[:5] + start
        raise ValueError(
            f"layer {name!r} produced NaN/inf activations (examples {bad.tolist()} "
            "among others); check the images and the model weights, or drop them."
        )
    if (a < 0).any():
        raise ValueError(
            f"layer {name!r} has negative activations (min {float(a.min()):.3g}); "
            "NMF needs non-negative data: capture a post-ReLU layer or pass "
            "relu=True."
        )
    return a


def _allocate(
    name: str,
    shape: tuple[int, int],
    memmap_dir: str | os.PathLike | None,
    pending: contextlib.ExitStack,
    files: dict[str, tuple[Path, tuple[int, int]]],
) -> torch.Tensor | np.ndarray:
    """Storage for one layer: a CPU tensor, or a memmap under a temporary name (renamed into
    place when ``pending`` closes without an error)."""
    if memmap_dir is None:
        return torch.empty(shape, dtype=torch.float32)
    files[name] = (Path(memmap_dir) / f"{name.replace('/', '_')}.f32", shape)
    tmp = pending.enter_context(atomic_path(files[name][0]))
    return np.memmap(tmp, dtype=np.float32, mode="w+", shape=shape)


@torch.no_grad()
def activation_matrices(
    model: nn.Module,
    images: torch.Tensor | ImageSet,
    layers: Sequence[str] | str,
    *,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    relu: bool = False,
    memmap_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> ActivationMatrices:
    """Stream a probe set through ``model`` and collect each layer's activations as (units x N)
    float32.

    Batches go through :func:`interpkit.capture` (the forward pass stops after the last requested
    layer); each batch fills the columns of a matrix allocated once, on the CPU, or, with
    ``memmap_dir``, as ``np.memmap`` files ``<layer>.f32`` there (each written to a temporary file
    and renamed into place once every batch has succeeded, so a failed run leaves no partial
    file). Storage is example-major (the matrices are transposed views); the model runs in eval
    mode on ``device`` (its mode is restored); NaN/inf outputs raise.

    Args:
        model: the network.
        images: (N, C, H, W) float images in [0, 1], or an ImageSet.
        layers: module name(s) to capture.
        batch_size: images per forward pass.
        device: where to run the model (None: the default device).
        relu: apply a ReLU to the outputs (else negative outputs raise ``ValueError``).
        memmap_dir: folder for ``np.memmap`` storage (probe sets that do not fit in memory).
        progress: show a progress bar.

    Returns:
        An :class:`~interpkit.clustering.matrices.ActivationMatrices` ``{layer: (units x N)
        float32}`` with ``shapes``.
    """
    layers = [layers] if isinstance(layers, str) else list(layers)
    x_all = getattr(images, "images", images)
    if not isinstance(x_all, torch.Tensor) or x_all.ndim != 4:
        raise ValueError("activation_matrices needs images of shape (N, C, H, W) or an ImageSet.")
    check_images(x_all)  # float in [0, 1]: uint8 or 0..255 images were run unscaled
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    dev = resolve_device(device)
    n = len(x_all)
    model.to(dev)
    out = ActivationMatrices()
    storage: dict[str, torch.Tensor | np.ndarray] = {}
    files: dict[str, tuple[Path, tuple[int, int]]] = {}  # memmap layers: final file and shape
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="activations", leave=False)
    with contextlib.ExitStack() as pending:
        pending.enter_context(eval_mode(model))  # left last: the model gets its modes back
        try:
            for s in starts:
                xb = x_all[s : s + batch_size].to(dev, torch.float32)
                with capture(model, layers, stop=True, clone=True) as acts:
                    model(xb)
                for name in layers:
                    a = _checked(name, acts[name], relu, s)
                    if name not in storage:
                        out.shapes[name] = tuple(acts[name].shape[1:])
                        storage[name] = _allocate(name, (n, a.shape[1]), memmap_dir, pending, files)
                    dst = storage[name]
                    dst[s : s + len(xb)] = (
                        a.cpu().numpy() if isinstance(dst, np.ndarray) else a.cpu()
                    )
            for name in files:
                storage[name].flush()
        finally:
            for name in files:  # unmapped before a rename or removal (needed on Windows)
                storage.pop(name, None)
    for name in layers:
        if name in files:  # now in place: map the complete file again
            storage[name] = np.memmap(
                files[name][0], dtype=np.float32, mode="r+", shape=files[name][1]
            )
        out[name] = storage[name].T
    return out
