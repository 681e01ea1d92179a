"""Record what named modules produce during a forward pass (a context manager over hooks)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from .checks import check_images, check_positive_int, evaluating
from .device import model_device


class StopForward(Exception):
    """Raised inside a hook to end a forward pass early once every requested layer was seen."""


def resolve_modules(
    model: nn.Module, layers: Sequence[str | nn.Module] | str | nn.Module
) -> dict[str, nn.Module]:
    """Map layer names (dotted, as in ``model.named_modules()``) or modules to ``{name: module}``.

    An unknown name raises ``KeyError`` listing the closest valid names. A module registered under
    several names (shared) can be asked for by any of them; passed as a module, it gets its first
    name.
    """
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    if not isinstance(layers, Iterable):
        raise TypeError(
            f"layers must be a layer name, a module or a list of them, got {type(layers).__name__} "
            f"{layers!r}; names are strings, e.g. ['0'] for the first layer of a Sequential."
        )
    named = dict(model.named_modules(remove_duplicate=False))
    by_module: dict[int, str] = {}
    for n, m in named.items():
        by_module.setdefault(id(m), n)
    out: dict[str, nn.Module] = {}
    for layer in layers:
        if isinstance(layer, nn.Module):
            if id(layer) not in by_module:
                raise KeyError(
                    "a module passed in `layers` is not part of this model; pass its name instead."
                )
            out[by_module[id(layer)]] = layer
        elif not isinstance(layer, str):
            raise TypeError(
                f"layers must be names (str) or modules, got {type(layer).__name__} {layer!r}; "
                "e.g. '0', not 0, for the first layer of a Sequential."
            )
        elif layer in named:
            out[layer] = named[layer]
        else:
            close = difflib.get_close_matches(str(layer), [n for n in named if n], n=5, cutoff=0.3)
            hint = f" Closest valid names: {', '.join(close)}." if close else ""
            raise KeyError(
                f"no layer named {layer!r} in {type(model).__name__}.{hint} "
                "List them with [n for n, _ in model.named_modules()]."
            )
    if not out:
        raise ValueError("no layers requested; pass at least one layer name.")
    return out


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in evaluation mode inside the block, on its own device; afterwards every submodule
    has its own mode back, also when the block raises (:func:`interpkit.checks.evaluating` without
    a move).

    Args:
        model: the network.

    Returns:
        A context manager that yields ``model``.
    """
    with evaluating(model, model_device(model)):
        yield model


class Activations(dict):
    """``{layer name: tensor}`` filled by :func:`capture`; ``inputs`` holds module inputs if
    asked."""

    def __init__(self, requested: Sequence[str] = ()) -> None:
        super().__init__()
        self.inputs: dict[str, torch.Tensor] = {}
        self.requested: tuple[str, ...] = tuple(requested)

    def __missing__(self, name: str):
        # a bare KeyError would not say whether the layer was never asked for or never ran
        if name in self.requested:
            raise KeyError(
                f"layer {name!r} did not run in the forward pass inside the capture block (for "
                "example an unused branch, or a pass that stopped early); recorded so far: "
                f"{sorted(self)}. Check that the model's forward uses it for this input."
            )
        raise KeyError(
            f"layer {name!r} was not requested; this capture records {list(self.requested)}. "
            "Add it to the layers passed to capture()."
        )


def _takes_images(model: nn.Module) -> bool:
    """Whether ``model``'s first module with parameters is a floating-point 2-D convolution (then it
    takes float images; a model that starts with, say, an embedding takes integer input)."""
    first = next(
        (m for m in model.modules() if any(True for _ in m.parameters(recurse=False))), None
    )
    return isinstance(first, nn.Conv2d) and first.weight.is_floating_point()


def _check_input(model: nn.Module, args: tuple) -> None:
    x = args[0] if args else None
    if isinstance(x, np.ndarray):
        raise TypeError(
            f"{type(model).__name__} was called with a NumPy array ({x.dtype}, shape {x.shape}) "
            f"inside "
            "capture(); pass a float tensor in [0, 1]: torch.from_numpy(x).float() (and / 255 for "
            "8-bit images)."
        )
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{type(model).__name__} was called with {type(x).__name__} inside capture(); pass a "
            f"float "
            "tensor of images (N, C, H, W)."
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{type(model).__name__} was called with {x.dtype} images inside capture(); pass float "
            "images in [0, 1]: x.float() / 255 for 8-bit images."
        )
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{type(model).__name__} was called with a tensor of shape {tuple(x.shape)} inside "
            "capture(); pass images (N, C, H, W), or x[None] for one image (C, H, W)."
        )
    # values are not range-checked here: a model may take normalised inputs (e.g. dissect's
    # transform);
    # NaN/inf never make sense and would only give NaN activations
    if not x.is_meta and not bool(torch.isfinite(x).all()):
        raise ValueError(
            f"{type(model).__name__} was called with images holding "
            f"{int((~torch.isfinite(x)).sum())} NaN/inf values inside capture(); clean them "
            "(torch.nan_to_num) or drop those images."
        )


@contextmanager
def capture(
    model: nn.Module,
    layers: Sequence[str | nn.Module] | str | nn.Module,
    *,
    inputs: bool = False,
    stop: bool = False,
    clone: bool = True,
    detach: bool = True,
    edit: Mapping[str | nn.Module, Callable[[Any], Any]] | None = None,
) -> Iterator[Activations]:
    """Record the outputs (and optionally inputs) of ``layers`` while the block runs a forward pass.

    ``clone=True`` copies each output at hook time, so a later in-place op (``ReLU(inplace=True)``)
    cannot change it; ``detach=False`` keeps the graph (for losses through activations).
    ``stop=True`` ends the forward pass once every requested layer has run: the call to the model
    then returns ``None`` instead of its output (its output when the model itself is one of the
    layers: its pass has ended by then). Hooks are removed when the block ends, also on error.
    A layer run several times in one pass (a shared module) keeps its last output.

    ``edit``: ``{layer: fn}``; each time ``layer`` runs, ``fn(output)`` replaces its output for the
    rest of the pass (``None`` from ``fn`` keeps the output as it is, e.g. after an in-place
    change). A layer both edited and recorded records the edited output. Edited layers need not be
    in ``layers`` (pass ``layers=()`` to only edit); with ``stop`` the pass also waits for them.

    Args:
        model: the network whose forward pass the block runs.
        layers: names (as in ``model.named_modules()``) or modules to record.
        inputs: also record each layer's input in ``acts.inputs``.
        stop: end the pass once every requested (and edited) layer has run.
        clone: copy each recorded output at hook time.
        detach: record outputs without their autograd graph.
        edit: ``{layer: fn(output) -> new output or None}`` applied during every pass.

    Returns:
        A context manager yielding :class:`Activations` (``{layer name: tensor}``), filled by each
        forward pass run inside the block.

    Example:
        >>> with capture(model, ["features.0"], edit={"features.3": lambda y: y * 0}) as acts:
        ...     logits = model(x)
        >>> acts["features.0"].shape
    """
    edit = dict(edit or {})
    if isinstance(layers, (list, tuple)) and not layers and edit:
        modules: dict[str, nn.Module] = {}
    else:
        modules = resolve_modules(model, layers)
    edits = {
        name: (module, edit[key])
        for key in edit
        for name, module in resolve_modules(model, [key]).items()
    }
    for name, (_, fn) in edits.items():
        if not callable(fn):
            raise TypeError(
                f"edit[{name!r}] must be a function of the layer's output, got "
                f"{type(fn).__name__}; e.g. edit={{{name!r}: lambda y: y * 0}}."
            )
    hooked = {**{n: m for n, (m, _) in edits.items()}, **modules}
    acts = Activations(list(modules))
    seen: set[str] = set()
    handles = []
    passes = [0]  # model calls running now: a stop is raised only where guarded_forward catches it

    def keep(t):
        if not isinstance(t, torch.Tensor):
            return t
        if detach:
            t = t.detach()
        return t.clone() if clone else t

    def make_hook(name: str):
        def hook(_module, args, output):
            if name in edits:
                new = edits[name][1](output)
                output = output if new is None else new
            if name in modules:
                acts[name] = keep(output)
            if inputs and name in modules:
                acts.inputs[name] = (
                    keep(args[0]) if len(args) == 1 else tuple(keep(a) for a in args)
                )
            seen.add(name)
            # the model's own hook runs after its forward returned, where nothing would catch the
            # stop
            # a submodule called directly (not through the model) runs to its end
            if stop and passes[0] and len(seen) == len(hooked) and _module is not model:
                raise StopForward
            return output if name in edits else None

        return hook

    original_forward = model.forward
    own_forward = vars(model).get(
        "forward"
    )  # an instance attribute (e.g. an enclosing capture's) to restore

    def guarded_forward(*args, **kwargs):
        seen.clear()
        passes[0] += 1
        try:
            return original_forward(*args, **kwargs)
        except StopForward:
            return None
        finally:
            passes[0] -= 1

    try:
        if _takes_images(
            model
        ):  # a clear error for uint8 or NumPy images instead of one from inside a conv
            handles.append(model.register_forward_pre_hook(_check_input))
        for name, module in hooked.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        if stop:
            model.forward = guarded_forward  # instance attribute shadows the class method
        yield acts
    finally:
        for h in handles:
            h.remove()
        if stop:
            if own_forward is not None:
                model.forward = own_forward
            else:
                try:
                    del model.forward
                except AttributeError:
                    pass


def _batches_of(data: Any) -> tuple[Callable[[slice], torch.Tensor], int]:
    """``(get rows -> float image batch, number of images)`` for the data kinds of
    :func:`iter_activations`."""
    images = getattr(data, "images", None)  # an ImageSet
    if isinstance(images, torch.Tensor):
        data = images
    if isinstance(data, torch.Tensor):
        check_images(data, name="data", values=False)
        return (lambda rows: data[rows]), len(data)
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise TypeError(
            f"data must be an ImageSet, a float tensor (N, C, H, W) or an indexable dataset of "
            f"images, got {type(data).__name__}."
        )

    def get(rows: slice) -> torch.Tensor:
        items = [data[i] for i in range(rows.start, rows.stop)]
        items = [it[0] if isinstance(it, (tuple, list)) else it for it in items]  # (image, label)
        return torch.stack([torch.as_tensor(it) for it in items])

    return get, len(data)


def iter_activations(
    model: nn.Module,
    data: Any,
    layers: Sequence[str | nn.Module] | str | nn.Module,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: bool = False,
) -> Iterator[tuple[slice, dict[str, torch.Tensor]]]:
    """Run ``model`` over ``data`` in batches and yield each batch's activations of ``layers``:
    the library's one batched loop.

    The model runs in evaluation mode under ``no_grad`` on ``device``
    (:func:`interpkit.checks.evaluating`: mode and device are restored when the loop ends, is
    broken off, or raises); each pass stops after the last requested layer (:func:`capture` with
    ``stop=True``), and the outputs are copies (an in-place op later in the net cannot change them).

    Args:
        model: the network.
        data: an ``ImageSet`` (its ``images``), a float tensor ``(N, C, H, W)``, or any indexable
            dataset with ``len`` whose items are image tensors ``(C, H, W)`` or ``(image, label)``
            pairs; rows are taken in order.
        layers: layer names (or modules) to record.
        batch_size: images per forward pass.
        device: where to run (``None``: CUDA, else MPS, else CPU).
        transform: applied to each batch on the device before the model (e.g. normalisation).
        progress: show a progress bar over batches.

    Returns:
        An iterator of ``(rows, {layer name: tensor on the device})``; ``rows`` is the ``slice`` of
        ``data`` the batch holds. Tensors are only valid until the next batch is requested unless
        kept.

    Example:
        >>> for rows, acts in iter_activations(model, images, ["features.0"], batch_size=128):
        ...     peaks[rows] = acts["features.0"].amax((2, 3)).cpu()
    """
    batch_size = check_positive_int("batch_size", batch_size)
    get, n = _batches_of(data)
    names = list(resolve_modules(model, layers))
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="activations", leave=False)
    # no_grad only around the pass: grad mode is thread-wide and would stay off while suspended
    with evaluating(model, device) as dev, capture(model, names, stop=True) as acts:
        for start in starts:
            rows = slice(start, min(start + batch_size, n))
            x = get(rows).to(dev)
            with torch.no_grad():
                model(x if transform is None else transform(x))
            yield rows, {name: acts[name] for name in names}


def activations(
    model: nn.Module,
    data: Any,
    layers: Sequence[str | nn.Module] | str | nn.Module,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    reduce: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Activations of ``layers`` over all of ``data``, concatenated on the CPU
    (:func:`iter_activations`, same arguments).

    Args:
        model: the network.
        data: an ``ImageSet``, a float tensor ``(N, C, H, W)`` or an indexable dataset of images.
        layers: layer names (or modules) to record.
        batch_size: images per forward pass.
        device: where to run (``None``: CUDA, else MPS, else CPU).
        reduce: ``reduce(layer name, batch tensor) -> tensor`` applied to each batch on the device
            before it is moved to the CPU (e.g. ``lambda _, a: a.amax((2, 3))`` for spatial peaks).
        transform: applied to each batch on the device before the model.
        progress: show a progress bar over batches.

    Returns:
        ``{layer name: CPU tensor with one row per image}``.

    Example:
        >>> peaks = activations(model, test_set, "layer3", reduce=lambda _, a: a.amax((2, 3)))
    """
    parts: dict[str, list[torch.Tensor]] = {}
    for _, acts in iter_activations(
        model,
        data,
        layers,
        batch_size=batch_size,
        device=device,
        transform=transform,
        progress=progress,
    ):
        for name, a in acts.items():
            parts.setdefault(name, []).append((reduce(name, a) if reduce else a).cpu())
    return {name: torch.cat(p) for name, p in parts.items()}
