"""The concept world's factors: palette, textures, scenes, object shapes and their parts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

MIN_SIZE = 32
MAX_SIZE = 224
MAX_OBJECTS = 4
_MIN_OBJECT_PX = 10.0  # smallest object scale in pixels: every part stays >= 1 pixel

# ---------------------------------------------------------------------------------------------
# Factors
# ---------------------------------------------------------------------------------------------
# name -> RGB. The second shade (used by textures) is darker for light colours, lighter for dark.
_PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.10, 0.10),
    "orange": (0.95, 0.55, 0.05),
    "yellow": (0.95, 0.90, 0.15),
    "green": (0.15, 0.65, 0.20),
    "cyan": (0.10, 0.80, 0.85),
    "blue": (0.15, 0.25, 0.85),
    "purple": (0.55, 0.20, 0.75),
    "pink": (0.95, 0.55, 0.75),
    "brown": (0.50, 0.30, 0.12),
    "white": (0.97, 0.97, 0.97),
    "black": (0.08, 0.08, 0.08),
}

_TEXTURES = ["solid", "striped", "dotted", "checkered", "grid", "zigzag"]

# name, top colour, bottom colour, gradient kind, noise kind
_SCENES: list[tuple[str, tuple[float, ...], tuple[float, ...], str, str]] = [
    ("sky", (0.45, 0.70, 0.95), (0.85, 0.92, 1.00), "vertical", "clouds"),
    ("meadow", (0.45, 0.75, 0.35), (0.20, 0.45, 0.15), "vertical", "grass"),
    ("desert", (0.93, 0.80, 0.55), (0.80, 0.60, 0.35), "diagonal", "dunes"),
    ("night", (0.02, 0.03, 0.15), (0.10, 0.10, 0.30), "vertical", "stars"),
    ("ocean", (0.10, 0.45, 0.60), (0.02, 0.15, 0.35), "vertical", "ripples"),
    ("room", (0.75, 0.68, 0.58), (0.50, 0.46, 0.42), "radial", "tiles"),
]

Mask = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class _Layer:
    part: str | None  # part name, None for objects without parts
    mask: Mask  # (u, v) -> bool, object coordinates in [-0.5, 0.5]
    detail: bool  # painted in the object's detail colour
    centre: tuple[float, float] = (0.0, 0.0)  # (u, v) of the part's landmark (inside the part)


def _disc(cu: float, cv: float, r: float) -> Mask:
    return lambda u, v: (u - cu) * (u - cu) + (v - cv) * (v - cv) <= r * r


def _rect(u0: float, u1: float, v0: float, v1: float) -> Mask:
    return lambda u, v: (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)


# Object classes: layers in drawing order (later layers cover earlier ones). Shapes fit in the
# unit box [-0.5, 0.5]^2 scaled by the object size; every part is >= 0.09 units thick so that it
# covers at least one pixel at the minimum object size of 10 pixels.
_OBJECTS: dict[str, list[_Layer]] = {
    "ball": [_Layer(None, _disc(0, 0, 0.5), False)],
    "box": [_Layer(None, _rect(-0.42, 0.42, -0.42, 0.42), False)],
    "pyramid": [
        _Layer(
            None,
            lambda u, v: (v >= -0.46) & (v <= 0.42) & (np.abs(u) * 0.88 <= 0.5 * (v + 0.46)),
            False,
        )
    ],
    "cross": [
        _Layer(
            None,
            lambda u, v: (
                ((np.abs(u) <= 0.15) & (np.abs(v) <= 0.48))
                | ((np.abs(v) <= 0.15) & (np.abs(u) <= 0.48))
            ),
            False,
        )
    ],
    "ring": [
        _Layer(
            None,
            lambda u, v: ((u * u + v * v) <= 0.48 * 0.48) & ((u * u + v * v) >= 0.26 * 0.26),
            False,
        )
    ],
    "diamond": [_Layer(None, lambda u, v: np.abs(u) + np.abs(v) <= 0.5, False)],
    "house": [
        _Layer("wall", _rect(-0.38, 0.38, -0.05, 0.48), False, (0.0, 0.215)),
        _Layer(
            "roof",
            lambda u, v: (v >= -0.48) & (v < -0.05) & (np.abs(u) * 0.43 <= 0.48 * (v + 0.48)),
            True,
            (0.0, -0.19),
        ),
        _Layer("door", _rect(0.08, 0.28, 0.20, 0.48), True, (0.18, 0.34)),
    ],
    "face": [
        _Layer("head", _disc(0, 0, 0.48), False, (0.0, 0.0)),
        _Layer("left eye", _disc(-0.18, -0.10, 0.09), True, (-0.18, -0.10)),
        _Layer("right eye", _disc(0.18, -0.10, 0.09), True, (0.18, -0.10)),
        _Layer("mouth", _rect(-0.20, 0.20, 0.16, 0.28), True, (0.0, 0.22)),
    ],
    "car": [
        _Layer(
            "car body",
            lambda u, v: (
                ((np.abs(u) <= 0.48) & (v >= -0.02) & (v <= 0.30))
                | ((u >= -0.28) & (u <= 0.22) & (v >= -0.36) & (v < -0.02))
            ),
            False,
            (0.0, 0.12),
        ),
        _Layer("window", _rect(-0.20, 0.14, -0.29, -0.08), True, (-0.03, -0.185)),
        _Layer("front wheel", _disc(0.28, 0.30, 0.15), True, (0.28, 0.30)),
        _Layer("rear wheel", _disc(-0.28, 0.30, 0.15), True, (-0.28, 0.30)),
    ],
    "tree": [
        _Layer("trunk", _rect(-0.09, 0.09, 0.10, 0.48), True, (0.0, 0.36)),
        _Layer("crown", _disc(0, -0.12, 0.36), False, (0.0, -0.12)),
    ],
}
_FLIPPABLE = {"house", "car"}  # asymmetric classes drawn mirrored half of the time


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _texture(kind: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Binary texture pattern (True = second shade) from texture coordinates in periods."""
    if kind == "solid":
        return np.zeros(np.broadcast_shapes(a.shape, b.shape), dtype=bool)
    if kind == "striped":
        return _frac(a + b) < 0.5
    if kind == "dotted":
        fa, fb = _frac(a) - 0.5, _frac(b) - 0.5
        return fa * fa + fb * fb < 0.09
    if kind == "checkered":
        return (np.floor(a) + np.floor(b)) % 2 == 1
    if kind == "grid":
        return (_frac(a) < 0.3) | (_frac(b) < 0.3)
    if kind == "zigzag":
        return _frac(b + np.abs(_frac(a) - 0.5)) < 0.5
    raise ValueError(f"unknown texture {kind!r}")


def _shade(rgb: Sequence[float]) -> tuple[float, float, float]:
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    if lum > 0.45:
        return tuple(0.55 * c for c in rgb)  # type: ignore[return-value]
    return tuple(c + 0.5 * (1.0 - c) for c in rgb)  # type: ignore[return-value]


def _empty() -> torch.Tensor:
    return torch.empty(0)
