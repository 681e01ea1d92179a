"""Input checks shared by the methods: each failure says what was wrong and what to do."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from .device import check_same_device, model_device, resolve_device

__all__: list[str] = []  # internal: the methods call these; users never need to


@contextmanager
def evaluating(
    model: nn.Module, device: str | torch.device | None = None, *, needs_float64: str = ""
) -> Iterator[torch.device]:
    """The library's one model/device policy: inside the block ``model`` is on ``device`` and in
    evaluation mode; afterwards it is back on its own device and every submodule has its own mode
    back (a model partly in training mode stays exactly as it was), also when the block raises.

    Args:
        model: the network to run.
        device: where to run it; ``None`` picks CUDA, else MPS, else the CPU
            (:func:`interpkit.device.resolve_device`).
        needs_float64: the calling method's name if it keeps float64 tensors on the device
            (then ``None`` skips MPS).

    Returns:
        A context manager that yields the resolved ``torch.device``.

    Example:
        >>> with evaluating(model, "cpu") as dev, torch.no_grad():
        ...     logits = model(x.to(dev))
    """
    dev = resolve_device(device, needs_float64=needs_float64)
    home = model_device(model)
    modes = [(m, m.training) for m in model.modules()]
    moved = home.type != dev.type or (dev.index is not None and home.index != dev.index)
    try:
        if moved:
            model.to(dev)
        model.eval()
        yield dev
    finally:
        for m, training in modes:
            m.training = training
        if moved:
            model.to(home)


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    """The first ``nn.Conv2d`` of a model in registration order (``None`` if it has none)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m
    return None


def check_images(
    x: torch.Tensor, model: nn.Module | None = None, *, name: str = "images", values: bool = True
) -> None:
    """Check that ``x`` is a float batch (N, C, H, W) that ``model`` can take (channels, device)
    and,
    with ``values`` (the default), that every value is finite and in [0, 1]
    (``check_pixel_values``).

    This is the one image policy of the library: every public entry point that takes images calls
    it, so NaN/inf pixels, 8-bit values (0..255, as uint8 or as floats) and normalised inputs are
    refused with the same message instead of giving NaN or meaningless outputs. The value check
    reads the whole tensor once (one ``isfinite`` and one ``aminmax`` pass), which costs far less
    than the forward pass the images are taken for."""
    if isinstance(x, np.ndarray):
        raise TypeError(
            f"{name} must be a torch.Tensor, got ndarray; convert with torch.as_tensor (a NumPy "
            f"array of "
            f"{x.dtype}, shape {x.shape}: torch.from_numpy(x).float(), and / 255 for 8-bit images)."
        )
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor, got {type(x).__name__}; convert with torch.as_tensor."
        )
    if x.ndim != 4:
        raise ValueError(
            f"{name} must have shape (N, C, H, W), got {tuple(x.shape)}; "
            "add a batch axis with x[None] or a channel axis with x[:, None]."
        )
    if len(x) == 0:
        raise ValueError(f"{name} is empty (N = 0); pass at least one image.")
    if not torch.is_floating_point(x):
        raise TypeError(
            f"{name} must be floating point in [0, 1], got {x.dtype}; use x.float() / 255."
        )
    if values:
        check_pixel_values(x, name)
    if model is not None:
        conv = first_conv(model)
        if conv is not None and conv.in_channels != x.shape[1]:
            raise ValueError(
                f"the model's first convolution takes {conv.in_channels} channels but {name} "
                f"have {x.shape[1]}; convert the data (e.g. ImageSet.to_rgb()) or build the "
                f"model with in_channels={x.shape[1]}."
            )
        check_same_device(model, x)


def check_pixel_values(x: torch.Tensor, name: str = "images") -> None:
    """Raise a ``ValueError`` unless every value of the float tensor ``x`` is finite and in [0, 1],
    the library's image contract. The message counts the non-finite values, gives the range, and
    names the likely cause (8-bit values not divided by 255, or mean/std-normalised inputs)."""
    if x.numel() == 0 or x.is_meta:  # a meta tensor has shapes but no values to check
        return
    finite = torch.isfinite(x)
    bad = 0 if bool(finite.all()) else int((~finite).sum())
    if bad:
        if bad == x.numel():
            raise ValueError(
                f"{name} must be finite and lie in [0, 1], but all {bad} values are NaN or "
                f"infinite; "
                "clean the data (e.g. torch.nan_to_num) or drop those images."
            )
        lo, hi = (float(v) for v in torch.aminmax(x[finite]))
        raise ValueError(
            f"{name} must be finite and lie in [0, 1], got {bad} NaN/inf (non-finite) values "
            f"(range of "
            f"the others [{lo:g}, {hi:g}]); clean the data (e.g. torch.nan_to_num) or drop those "
            f"images."
        )
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))
    if lo >= 0 and hi <= 1:
        return
    if lo >= 0 and 2 < hi <= 255:
        hint = "they look like 8-bit values (0..255): divide by 255"
    elif lo < 0:
        hint = (
            "they look normalised (mean/std): pass the images before normalisation and put the "
            "normalisation "
            "inside the model (or a method's transform argument)"
        )
    else:
        hint = "rescale them to [0, 1], or clamp them (x.clamp(0, 1)) after adding noise"
    raise ValueError(
        f"{name} must be finite and lie in [0, 1], got range [{lo:g}, {hi:g}]; {hint}."
    )


def require_eval(model: nn.Module, what: str = "this method") -> None:
    """Raise if ``model`` (or any submodule) is in training mode: dropout and batch-norm statistics
    would otherwise change the network while it is being explained."""
    if any(m.training for m in model.modules()):
        raise ValueError(
            f"{what} needs the model in evaluation mode (dropout off, batch-norm statistics "
            "frozen); call model.eval() first."
        )


def require_frozen(model: nn.Module, what: str = "this method") -> None:
    """Raise if ``model`` is in training mode or has parameters that still require gradients."""
    require_eval(model, what)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if trainable:
        raise ValueError(
            f"{what} needs a frozen model, but {len(trainable)} parameters require gradients "
            f"(e.g. {trainable[0]!r}); call interpkit.models.freeze(model) first."
        )


def check_number(name: str, value: Any, *, positive: bool = False, hint: str = "") -> float:
    """``value`` as a float; a ``ValueError`` unless it is a finite real number >= 0 (> 0 with
    ``positive``). NaN passes a plain ``value < 0`` test, which is why this one exists."""
    ok = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > 0 if positive else value >= 0)
    )
    if not ok:
        raise ValueError(
            f"{name} must be a finite number {'>' if positive else '>='} 0, got {value!r}"
            f"{'; ' + hint if hint else ''}."
        )
    return float(value)


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as an int; a ``ValueError`` unless it is an integer >= 1 (a negative count would
    silently slice from the end, a bool is not a count)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def check_unit_interval(x: torch.Tensor, name: str, hint: str) -> None:
    """Raise unless every value of ``x`` is finite and in [0, 1] (images for a sigmoid decoder or a
    non-negative factorisation); the message counts the non-finite values and gives the range."""
    if x.numel() == 0:  # no values, none out of range (min() of an empty tensor raises)
        return
    bad = int((~torch.isfinite(x)).sum())
    lo, hi = float(x.nan_to_num(0.5).min()), float(x.nan_to_num(0.5).max())
    if bad or lo < 0 or hi > 1:
        raise ValueError(
            f"{name} must be finite and lie in [0, 1], got {bad} non-finite values and range "
            f"[{lo:g}, {hi:g}]; {hint}"
        )


def row_indices(indices: Any, n: int, what: str = "indices") -> torch.Tensor:
    """``indices`` into ``n`` rows as a 1-D int64 tensor with values in ``0 .. n-1``: integers
    (negative ones count from the end), whole floats, or a boolean mask of length ``n``. A mask is
    not read as the indices 0 and 1, fractional values are a ``ValueError`` (a cast would truncate
    them), and an index out of range is an ``IndexError`` that gives the set's size."""
    idx = torch.as_tensor(indices).reshape(-1).cpu()
    if idx.dtype == torch.bool:
        if len(idx) != n:
            raise ValueError(f"a boolean mask needs one entry per image ({n}), got {len(idx)}.")
        return idx.nonzero().flatten()
    if torch.is_floating_point(idx) and not bool((idx == idx.round()).all()):
        raise ValueError(f"{what} must be whole numbers, got {idx[:5].tolist()}; round them first.")
    idx = idx.long()
    bad = idx[(idx < -n) | (idx >= n)]
    if bad.numel():
        raise IndexError(f"index {int(bad[0])} out of range for a set of {n} images.")
    return idx % n


def check_fraction(name: str, value: Any, *, open_interval: bool = False, hint: str = "") -> float:
    """``value`` as a float; a ``ValueError`` unless it is a real number in [0, 1] (in (0, 1)
    with ``open_interval``). NumPy scalars pass; NaN and bools do not.

    Args:
        name: the argument's name, for the message.
        value: the number to check.
        open_interval: exclude 0 and 1 (e.g. a quantile's tail fraction).
        hint: appended to the message (e.g. the paper's value).

    Returns:
        ``float(value)``.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v = float(value) if ok else math.nan
    ok = ok and ((0.0 < v < 1.0) if open_interval else (0.0 <= v <= 1.0))
    if not ok:
        where = "strictly between 0 and 1" if open_interval else "in [0, 1]"
        raise ValueError(
            f"{name} must lie {where}{' (' + hint + ')' if hint else ''}, got {value!r}."
        )
    return v


def check_square_maps(
    x: torch.Tensor | Sequence[int], name: str, *, min_size: int = 1, hint: str = ""
) -> int:
    """The side ``n`` of square feature maps, or a clear error.

    Args:
        x: a floating-point tensor (batch, filters, n, n), or a shape whose last two entries are
            (n, n).
        name: what ``x`` is, for the message.
        min_size: the smallest ``n`` accepted.
        hint: what to do about a map smaller than ``min_size``.

    Returns:
        ``n``.
    """
    if isinstance(x, torch.Tensor):
        if x.ndim != 4:
            raise ValueError(
                f"{name} must have shape (batch, filters, n, n), got {tuple(x.shape)}."
            )
        if not torch.is_floating_point(x):
            raise TypeError(f"{name} must be floating point, got {x.dtype}.")
        shape = tuple(x.shape)
    elif isinstance(x, Sequence) and len(x) >= 2:
        shape = tuple(int(v) for v in x)
    else:
        raise TypeError(f"{name} must be a torch.Tensor or a shape, got {type(x).__name__}.")
    h, w = shape[-2:]
    if h != w:
        raise ValueError(
            f"{name} must be square (n x n), got {h}x{w}; crop or resize the maps to a square."
        )
    if h < min_size:
        raise ValueError(
            f"the {name} is {h}x{h}, but at least {min_size}x{min_size} is needed"
            f"{'; ' + hint if hint else ''}."
        )
    return h
