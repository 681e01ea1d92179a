"""One rule for choosing a device, shared by every public function."""

from __future__ import annotations

import warnings

import torch

DeviceLike = "str | torch.device | None"


def resolve_device(
    device: str | torch.device | None = None, *, needs_float64: str = ""
) -> torch.device:
    """Return ``device`` as a ``torch.device``; ``None`` means CUDA if available, else MPS, else
    CPU.

    Raises ``ValueError`` for a device that this machine does not have, naming the ones it has.
    ``needs_float64``: the name of a method that keeps float64 tensors on its device, which MPS
    cannot hold. For such a method ``None`` skips MPS (CUDA, else the CPU, with a warning when MPS
    was there), and an explicit MPS device raises a ``ValueError`` that says to use the CPU.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:<index>"``, ``"mps"``, a ``torch.device`` or
            ``None`` (auto).
        needs_float64: the calling method's name if it keeps float64 tensors on the device.

    Returns:
        The ``torch.device`` to use.
    """
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            if not needs_float64:
                return torch.device("mps")
            warnings.warn(
                f"{needs_float64} keeps float64 tensors on its device, which MPS does not support; "
                "running it on the CPU (pass device='cpu' to silence this).",
                stacklevel=2,
            )
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (
        RuntimeError
    ):  # torch: "Expected one of cpu, cuda, ipu, xpu, ... device type at start of ..."
        raise ValueError(
            f"device={device!r} is not a device; use 'cpu', 'cuda', 'cuda:<index>', 'mps' "
            "or None (auto)."
        ) from None
    except TypeError:
        raise TypeError(
            f"device must be a string such as 'cpu' or 'cuda', a torch.device or None, "
            f"got {type(device).__name__} {device!r}."
        ) from None
    if dev.type == "mps" and needs_float64:
        raise ValueError(
            f"{needs_float64} keeps float64 tensors on its device, which MPS does not support; "
            "use device='cpu'."
        )
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available here; "
            f"use device=None (auto) or device='cpu'."
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"device={device!r} was requested but this machine has {torch.cuda.device_count()} "
            f"CUDA device(s), numbered from 0; use device='cuda' or a smaller index."
        )
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(
                f"device={device!r} was requested but MPS is not available here; "
                f"use device=None (auto) or device='cpu'."
            )
    return dev


def numerics(device: torch.device) -> dict[str, object]:
    """What decides a training run's exact weights besides its inputs: the device type and, on the
    CPU, torch's thread count (sums split over 1 or 2 threads round differently, so the two train
    slightly different models). Part of every training cache key, so that a cached model is reused
    only where training it again would give the same weights."""
    device = torch.device(device)
    return {
        "device": device.type,
        **({"threads": torch.get_num_threads()} if device.type == "cpu" else {}),
    }


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a model with neither)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def check_same_device(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Raise a clear error when a model and its input live on different devices."""
    md = model_device(model)
    if md.type != x.device.type or (
        md.index is not None and x.device.index is not None and md.index != x.device.index
    ):
        raise ValueError(
            f"the model is on {md} but the input is on {x.device}; move one of them, "
            f"for example x = x.to('{md}')."
        )
