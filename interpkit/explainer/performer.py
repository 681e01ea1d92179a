"""The performer's side: layer order and shapes, its features, and its forward pass with a layer
replaced by the explainer's reconstruction."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..capture import capture, iter_activations
from ..checks import check_images
from ..device import model_device
from .network import Explainer, check_same_shape

__all__: list[str] = []


def _as_list(layers: str | Sequence[str]) -> list[str]:
    if isinstance(layers, str):
        return [layers]
    layers = list(layers)
    if not layers or not all(isinstance(n, str) for n in layers):
        raise TypeError("target_layers must be a layer name or a non-empty list of layer names.")
    return layers


@torch.no_grad()
def _execution(
    performer: nn.Module, layers: list[str], example: torch.Tensor
) -> tuple[list[str], dict[str, tuple]]:
    """The order in which ``layers`` first run on ``example``, and their output shapes."""
    order: list[str] = []
    shapes: dict[str, tuple] = {}

    def note(name: str):
        def fn(out: Any) -> None:  # watches the output, keeps it unchanged
            if name not in order:
                order.append(name)
            if isinstance(out, torch.Tensor):
                shapes[name] = tuple(out.shape[1:])

        return fn

    with capture(performer, (), edit={name: note(name) for name in layers}):
        performer(example)
    missing = [n for n in layers if n not in order]
    if missing:
        raise ValueError(
            f"layers {missing} did not run in the performer's forward pass; pick layers that do."
        )
    return order, shapes


def check_layer_order(
    performer: nn.Module,
    input_layer: str,
    target_layers: str | Sequence[str],
    example: torch.Tensor,
) -> dict[str, tuple]:
    """Check that every target layer runs after ``input_layer``; returns ``{layer: feature
    shape}``."""
    targets = _as_list(target_layers)
    if input_layer in targets:
        raise ValueError(
            f"the input layer {input_layer!r} is also a target; the explainer reconstructs "
            "*higher* layers from a lower one, so choose targets after it."
        )
    order, shapes = _execution(performer, [input_layer, *targets], example)
    pos = {n: i for i, n in enumerate(order)}
    early = [t for t in targets if pos[t] < pos[input_layer]]
    if early:
        raise ValueError(
            f"target layer(s) {early} run before the input layer {input_layer!r} in the performer "
            f"(execution order {order}); the layer pair is in the wrong order: swap them or pick "
            "targets above the input layer."
        )
    for name, s in shapes.items():
        if len(s) != 3:
            raise ValueError(
                f"layer {name!r} gives features of shape {s}, not a conv feature map (C, H, W)."
            )
    return shapes


def layer_shapes(
    performer: nn.Module, layers: str | Sequence[str], image_shape: Sequence[int]
) -> dict[str, tuple]:
    """Feature shapes of ``layers`` for one image.

    Args:
        performer: the model.
        layers: a layer name or a list of them (names from ``named_modules``).
        image_shape: the shape (C, H, W) of one input image.

    Returns:
        ``{layer: shape}`` (the output shape of each layer without the batch dimension).
    """
    example = torch.zeros(1, *image_shape, device=model_device(performer))
    return _execution(performer, _as_list(layers), example)[1]


@torch.no_grad()
def performer_features(
    performer: nn.Module,
    images: torch.Tensor,
    layers: str | Sequence[str],
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    out_device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """The performer's features of ``layers`` for every image (:func:`iter_activations`).

    Args:
        performer: the model (run in evaluation mode; its mode and device are restored after).
        images: float images (N, C, H, W) in [0, 1].
        layers: a layer name or a list of them.
        batch_size: images per forward pass.
        device: where to run; None picks CUDA, MPS or the CPU.
        out_device: where the features are returned.

    Returns:
        ``{layer: (N, C, H, W)}`` on ``out_device``.
    """
    layers = _as_list(layers)
    check_images(images)
    check_images(images[:1].to(model_device(performer)), performer)
    chunks: dict[str, list[torch.Tensor]] = {n: [] for n in layers}
    for _, acts in iter_activations(
        performer, images, layers, batch_size=batch_size, device=device
    ):
        for n in layers:
            chunks[n].append(acts[n].to(out_device))
    return {n: torch.cat(v) for n, v in chunks.items()}


# ------------------------------------------------------------------------------------------------


@contextmanager
def replaced_features(
    performer: nn.Module, explainer: Explainer, layer: str | None = None
) -> Iterator[dict]:
    """Within the block, the performer's ``layer`` (default: the explainer's last target) outputs
    the
    explainer's reconstruction, computed from the performer's own ``input_layer`` features of the
    same forward pass; the rest of the performer runs on it. Yields a dict that holds the last
    ``p``."""
    layer = layer or explainer.target_layers[-1]
    if layer not in explainer.target_shapes:
        raise KeyError(f"the explainer reconstructs {explainer.target_layers}, not {layer!r}.")
    state: dict[str, Any] = {}

    def keep(out: torch.Tensor) -> None:
        state["f"] = out.clone()

    def replace(out: torch.Tensor) -> torch.Tensor:
        if "f" not in state:
            raise RuntimeError(
                f"layer {layer!r} ran before the input layer {explainer.input_layer!r}."
            )
        res = explainer(state.pop("f"))
        pred = res.reconstructions[layer]
        check_same_shape(pred, out, layer)
        state["p"] = res.p
        return pred.to(out.dtype)

    with capture(performer, (), edit={explainer.input_layer: keep, layer: replace}):
        yield state
