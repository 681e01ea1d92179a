"""Record what named modules produce during a forward pass (a context manager over hooks)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn


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
    """``model`` in evaluation mode inside the block; afterwards every submodule has its own mode
    back, so a model that was partly in training mode (say, frozen batch norm while fine-tuning)
    stays exactly as it was, also when the block raises."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


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
) -> Iterator[Activations]:
    """Record the outputs (and optionally inputs) of ``layers`` while the block runs a forward pass.

    ``clone=True`` copies each output at hook time, so a later in-place op (``ReLU(inplace=True)``)
    cannot change it; ``detach=False`` keeps the graph (for losses through activations).
    ``stop=True`` ends the forward pass once every requested layer has run: the call to the model
    then returns ``None`` instead of its output (its output when the model itself is one of the
    layers: its pass has ended by then). Hooks are removed when the block ends, also on error.
    A layer run several times in one pass (a shared module) keeps its last output.
    """
    modules = resolve_modules(model, layers)
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
            acts[name] = keep(output)
            if inputs:
                acts.inputs[name] = (
                    keep(args[0]) if len(args) == 1 else tuple(keep(a) for a in args)
                )
            seen.add(name)
            # the model's own hook runs after its forward returned, where nothing would catch the
            # stop
            # a submodule called directly (not through the model) runs to its end
            if stop and passes[0] and len(seen) == len(modules) and _module is not model:
                raise StopForward

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
        for name, module in modules.items():
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
