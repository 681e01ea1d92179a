"""interpkit: methods for looking inside convolutional networks, with a book that reproduces five
papers."""

from . import (
    checks,
    cladec,
    clustering,
    data,
    dissection,
    explainer,
    io,
    models,
    nb,
    plot,
    resampling,
    widgets,
)
from .capture import Activations, capture, resolve_modules
from .device import resolve_device

__version__ = "0.1.0"
__all__ = [
    "capture",
    "Activations",
    "resolve_modules",
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
    "__version__",
]
