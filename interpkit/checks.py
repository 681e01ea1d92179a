"""Input checks shared by the methods: each failure says what was wrong and what to do."""
from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import nn

from .device import check_same_device


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    """The first ``nn.Conv2d`` of a model in registration order (``None`` if it has none)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m
    return None


def check_images(x: torch.Tensor, model: nn.Module | None = None, *, name: str = "images") -> None:
    """Check that ``x`` is a float batch (N, C, H, W) that ``model`` can take (channels, device)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}; convert with torch.as_tensor.")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(x.shape)}; "
                         "add a batch axis with x[None] or a channel axis with x[:, None].")
    if len(x) == 0:
        raise ValueError(f"{name} is empty (N = 0); pass at least one image.")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be floating point in [0, 1], got {x.dtype}; use x.float() / 255.")
    if model is not None:
        conv = first_conv(model)
        if conv is not None and conv.in_channels != x.shape[1]:
            raise ValueError(f"the model's first convolution takes {conv.in_channels} channels but {name} "
                             f"have {x.shape[1]}; convert the data (e.g. ImageSet.to_rgb()) or build the "
                             f"model with in_channels={x.shape[1]}.")
        check_same_device(model, x)


def require_eval(model: nn.Module, what: str = "this method") -> None:
    """Raise if ``model`` (or any submodule) is in training mode: dropout and batch-norm statistics
    would otherwise change the network while it is being explained."""
    if any(m.training for m in model.modules()):
        raise ValueError(f"{what} needs the model in evaluation mode (dropout off, batch-norm statistics "
                         "frozen); call model.eval() first.")


def require_frozen(model: nn.Module, what: str = "this method") -> None:
    """Raise if ``model`` is in training mode or has parameters that still require gradients."""
    require_eval(model, what)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if trainable:
        raise ValueError(f"{what} needs a frozen model, but {len(trainable)} parameters require gradients "
                         f"(e.g. {trainable[0]!r}); call interpkit.models.freeze(model) first.")


def check_number(name: str, value: Any, *, positive: bool = False, hint: str = "") -> float:
    """``value`` as a float; a ``ValueError`` unless it is a finite real number >= 0 (> 0 with
    ``positive``). NaN passes a plain ``value < 0`` test, which is why this one exists."""
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
          and (value > 0 if positive else value >= 0))
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>' if positive else '>='} 0, got {value!r}"
                         f"{'; ' + hint if hint else ''}.")
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
        raise ValueError(f"{name} must be finite and lie in [0, 1], got {bad} non-finite values and range "
                         f"[{lo:g}, {hi:g}]; {hint}")


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
