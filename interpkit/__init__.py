"""interpkit: methods for looking inside convolutional networks, with a book that reproduces five
papers."""

# ruff: noqa: I001 (public names imported first, the importable rest after)

from . import (
    agreement,
    checks,
    cladec,
    clustering,
    data,
    dissection,
    distributed,
    explainer,
    io,
    models,
    nb,
    plot,
    resampling,
    stats,
    widgets,
)
from .capture import Activations, activations, capture
from .capture import resolve_modules  # noqa: F401 (importable, not in __all__)
from .device import resolve_device

__version__ = "0.1.0"
__all__ = [
    "capture",
    "activations",
    "Activations",
    "resolve_device",
    "data",
    "models",
    "nb",
    "io",
    "plot",
    "widgets",
    "checks",
    "cladec",
    "clustering",
    "dissection",
    "explainer",
    "resampling",
    "agreement",
    "stats",
    "distributed",
    "__version__",
]
