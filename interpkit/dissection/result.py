"""The result of a dissection: counts, IoU matrix and the per-unit table (see
``interpkit.dissection``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..checks import check_fraction

QUANTILE = 0.005
IOU_THRESHOLD = 0.04


@dataclass
class DissectionResult:
    """Network Dissection of one layer.

    ``iou`` is the full (units x labels) matrix; column ``i`` is dataset label number ``i`` (column
    0,
    *unlabeled*, is always 0). ``labels`` describes the columns (``label``, ``name``, ``category``,
    ``pixels`` = G). ``units`` is the tidy per-unit table (``unit``, ``label`` (name), ``label_id``,
    ``category``, ``iou``, ``detector``). The raw counts are kept: ``intersection`` (units x
    labels),
    ``activation`` (units x categories, A_cat), ``unit_pixels`` (all activated pixels per unit) and
    ``label_pixels`` (G per label).
    """

    layer: str
    thresholds: np.ndarray
    iou: np.ndarray
    labels: pd.DataFrame
    intersection: np.ndarray
    activation: np.ndarray
    unit_pixels: np.ndarray
    label_pixels: np.ndarray
    categories: list[str]
    n_images: int
    quantile: float
    iou_threshold: float = IOU_THRESHOLD
    threshold_method: str = "exact"
    threshold_error: np.ndarray | None = None
    _units: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def num_units(self) -> int:
        return int(self.iou.shape[0])

    @property
    def units(self) -> pd.DataFrame:
        """One row per unit: best label (excluding *unlabeled*), its category and IoU, detector
        flag."""
        if self._units is None:
            best = self.iou[:, 1:].argmax(axis=1) + 1
            score = self.iou[np.arange(self.num_units), best]
            self._units = pd.DataFrame(
                {
                    "unit": np.arange(self.num_units),
                    "label": self.labels["name"].to_numpy()[best],
                    "label_id": best,
                    "category": self.labels["category"].to_numpy()[best],
                    "iou": score,
                    "detector": score >= self.iou_threshold,
                }
            )
        return self._units

    def detectors(self) -> pd.DataFrame:
        """The detector units, best IoU first.

        Returns:
            The rows of ``units`` whose ``detector`` flag is set, sorted by IoU (descending).
        """
        u = self.units
        return u[u["detector"]].sort_values("iou", ascending=False).reset_index(drop=True)

    def num_detectors(self) -> int:
        """Units whose best IoU reaches ``iou_threshold``.

        Returns:
            The number of detector units.
        """
        return int(self.units["detector"].sum())

    def unique_detectors(self) -> int:
        """Distinct labels that are the best label of at least one detector unit (the paper's
        count).

        Returns:
            The number of unique detectors.
        """
        return int(self.detectors()["label_id"].nunique())

    def detectors_per_category(self) -> pd.DataFrame:
        """Per category (of the best label): detector units and unique detected labels.

        Returns:
            A DataFrame with columns category, detectors, unique (one row per category).
        """
        d = self.detectors()
        out = pd.DataFrame({"category": list(self.categories)})
        out["detectors"] = out["category"].map(d.groupby("category").size()).fillna(0).astype(int)
        out["unique"] = (
            out["category"].map(d.groupby("category")["label_id"].nunique()).fillna(0).astype(int)
        )
        return out

    def with_iou_threshold(self, iou_threshold: float) -> DissectionResult:
        """The same counts judged against another IoU threshold.

        Args:
            iou_threshold: the new detector threshold, in [0, 1].

        Returns:
            A new result sharing this one's counts.
        """
        _check_iou_threshold(iou_threshold)
        return DissectionResult(
            **{
                **{k: getattr(self, k) for k in self.__dataclass_fields__ if k != "_units"},
                "iou_threshold": float(iou_threshold),
            }
        )

    def summary(self) -> dict[str, Any]:
        """Key numbers as plain Python values (for JSON).

        Returns:
            A dict: layer, units, images, detectors, unique_detectors, detectors_per_category,
            unique_per_category, iou_threshold, quantile, threshold_method.
        """
        per = self.detectors_per_category()
        return {
            "layer": self.layer,
            "units": self.num_units,
            "images": self.n_images,
            "detectors": self.num_detectors(),
            "unique_detectors": self.unique_detectors(),
            "detectors_per_category": dict(zip(per["category"], per["detectors"].tolist())),
            "unique_per_category": dict(zip(per["category"], per["unique"].tolist())),
            "iou_threshold": self.iou_threshold,
            "quantile": self.quantile,
            "threshold_method": self.threshold_method,
        }

    def __repr__(self) -> str:
        return (
            f"DissectionResult(layer={self.layer!r}, units={self.num_units}, "
            f"labels={self.iou.shape[1]}, "
            f"images={self.n_images}, detectors={self.num_detectors()}, "
            f"unique={self.unique_detectors()})"
        )


def summarize(results: Mapping[str, DissectionResult] | DissectionResult) -> pd.DataFrame:
    """One row per layer: units, detectors, unique detectors and unique detectors per category.

    Args:
        results: one result, or a mapping layer name -> result (as :func:`dissect` returns).

    Returns:
        A DataFrame with columns layer, units, detectors, unique_detectors, unique_<category>.
    """
    if isinstance(results, DissectionResult):
        results = {results.layer: results}
    rows = []
    for name, r in results.items():
        per = r.detectors_per_category()
        row = {
            "layer": name,
            "units": r.num_units,
            "detectors": r.num_detectors(),
            "unique_detectors": r.unique_detectors(),
        }
        row.update({f"unique_{c}": int(n) for c, n in zip(per["category"], per["unique"])})
        rows.append(row)
    return pd.DataFrame(rows)


def _check_iou_threshold(t: float) -> float:
    return check_fraction("iou_threshold", t, hint="the paper uses 0.04")
