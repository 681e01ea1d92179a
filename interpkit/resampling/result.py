"""Input resampling: the result object and set comparisons of selected channels."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..checks import check_positive_int
from .core import METRICS


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
@dataclass
class ResamplingResult:
    """What :func:`~interpkit.resampling.analyze` measured.

    ``scores``: one row per (image, layer, channel) with the columns of ``METRICS`` and the
    helper statistics of ``channel_scores``. ``outputs``: one row per (image, copy): the noise
    level, ``output`` (``y_k``) and the class predicted on that copy. ``images``: one row per image:
    ``target`` (the explained class), ``probability`` on the clean image, ``output_constant``
    (``y`` did not change over the copies, so no correlation is defined). ``maps``: the clean-image
    activation maps, ``{layer: (B, C, H, W)}`` on the CPU (when ``keep_maps``). ``outputs`` and
    ``images`` are built from stored arrays when first used.
    """

    scores: pd.DataFrame
    layers: list[str]
    num_channels: dict[str, int]
    params: dict[str, Any]
    maps: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    raw: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _tables: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_images(self) -> int:
        return len(self.raw["target"])

    @property
    def targets(self) -> np.ndarray:
        """The explained class of each image (predicted on the clean image unless given)."""
        return self.raw["target"]

    @property
    def outputs(self) -> pd.DataFrame:
        if "outputs" not in self._tables:
            b, n = self.raw["output"].shape
            self._tables["outputs"] = pd.DataFrame(
                {
                    "image": np.repeat(np.arange(b), n),
                    "copy": np.tile(np.arange(n), b),
                    "noise_scale": np.tile(self.raw["noise_scale"], b),
                    "output": self.raw["output"].reshape(-1),
                    "predicted": self.raw["predicted"].reshape(-1),
                }
            )
        return self._tables["outputs"]

    @property
    def images(self) -> pd.DataFrame:
        if "images" not in self._tables:
            y = self.raw["output"]
            self._tables["images"] = pd.DataFrame(
                {
                    "image": np.arange(len(y)),
                    "target": self.raw["target"],
                    "probability": self.raw["probability"],
                    "output_constant": y.max(1) == y.min(1),
                }
            )
        return self._tables["images"]

    def top_k(self, metric: str = "correlation", k: int = 5) -> pd.DataFrame:
        """The ``k`` highest-scoring channels per (image, layer); see :func:`top_k`."""
        return top_k(self.scores, metric, k)

    def selected(
        self, metric: str = "correlation", k: int = 5, image: int = 0
    ) -> dict[str, list[int]]:
        """``{layer: [channels]}`` chosen by ``metric`` for one image (best first)."""
        if not 0 <= image < self.n_images:
            raise KeyError(f"no image {image}; this result holds images 0 to {self.n_images - 1}.")
        t = self.top_k(metric, k)
        t = t[t["image"] == image]
        return {layer: t.loc[t["layer"] == layer, "channel"].tolist() for layer in self.layers}

    def overlap(
        self, k: int = 5, a: str = "correlation", b: str = "precision", per_layer: bool = False
    ) -> pd.DataFrame:
        """Overlap of the top-``k`` sets chosen by metrics ``a`` and ``b``, one row per image
        (pooled
        over layers as the authors do) or per (image, layer) with ``per_layer=True``.

        Columns: ``intersection``, ``size_a``, ``size_b``, ``union``, ``authors_similarity``
        (``|A & B| / (|A| + |B|)``, half the Dice coefficient, at most 0.5), ``dice``, ``jaccard``,
        and ``chance_dice``: the Dice coefficient expected for random sets of the same sizes.
        """
        ta, tb = self.top_k(a, k), self.top_k(b, k)
        keys = ["image", "layer"]
        idx = pd.MultiIndex.from_product([np.arange(self.n_images), self.layers], names=keys)

        def count(t: pd.DataFrame) -> pd.Series:
            t = t.assign(layer=t["layer"].astype(str))
            return t.groupby(keys).size().reindex(idx, fill_value=0)

        size_a, size_b = count(ta), count(tb)
        inter = count(ta.merge(tb, on=["image", "layer", "channel"]))
        channels = np.array([self.num_channels[layer] for layer in idx.get_level_values("layer")])
        df = pd.DataFrame(
            {
                "intersection": inter,
                "size_a": size_a,
                "size_b": size_b,
                "union": size_a + size_b - inter,
                "expected_intersection": size_a * size_b / channels,
            }
        )
        if not per_layer:
            df = df.groupby(level="image").sum()
        total = (df["size_a"] + df["size_b"]).astype(float).replace(0, np.nan)
        df["authors_similarity"] = df["intersection"] / total
        df["dice"] = 2 * df["authors_similarity"]
        df["jaccard"] = df["intersection"] / df["union"].astype(float).replace(0, np.nan)
        df["chance_dice"] = 2 * df["expected_intersection"] / total
        cols = [
            "intersection",
            "size_a",
            "size_b",
            "union",
            "authors_similarity",
            "dice",
            "jaccard",
            "expected_intersection",
            "chance_dice",
        ]
        return df[cols].reset_index()


def top_k(scores: pd.DataFrame, metric: str = "correlation", k: int = 5) -> pd.DataFrame:
    """The ``k`` highest-scoring channels per (image, layer) of a ``scores`` table.

    Channels whose score is NaN (undefined or not eligible) are never chosen, so fewer than ``k``
    may come back; ties go to the lower channel index. Columns: image, layer, rank (0 = best),
    channel, score.

    Args:
        scores: a ``ResamplingResult.scores`` table.
        metric: the column to rank by (one of ``METRICS``).
        k: channels per (image, layer).

    Returns:
        The table described above.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}.")
    check_positive_int("k", k)
    s = scores.loc[scores[metric].notna(), ["image", "layer", "channel", metric]]
    s = s.sort_values(
        ["image", "layer", metric, "channel"], ascending=[True, True, False, True], kind="stable"
    )
    s = s.groupby(["image", "layer"], sort=False).head(int(k)).copy()
    s["rank"] = s.groupby(["image", "layer"], sort=False).cumcount()
    return s.rename(columns={metric: "score"})[
        ["image", "layer", "rank", "channel", "score"]
    ].reset_index(drop=True)


def _as_layer_sets(sel: Mapping[str, Iterable[int]] | Iterable[Any]) -> dict[Any, set]:
    if isinstance(sel, Mapping):
        return {layer: set(int(c) for c in chans) for layer, chans in sel.items()}
    return {None: set(sel)}


def set_overlap(
    a: Mapping[str, Iterable[int]] | Iterable[Any], b: Mapping[str, Iterable[int]] | Iterable[Any]
) -> dict[str, float]:
    """Overlap of two selections, pooled over layers: ``{layer: channels}`` mappings or plain sets.

    Returns ``intersection`` (``sum_l |A_l & B_l|``), ``size_a``, ``size_b``, ``union``,
    ``authors_similarity`` = intersection / (size_a + size_b) (the authors' ``calc_overlap``, half
    the Dice coefficient), ``dice`` = twice that, and ``jaccard`` = intersection / union. Layers
    present in only one mapping count as empty in the other. Two empty selections give NaN.
    """
    sa, sb = _as_layer_sets(a), _as_layer_sets(b)
    if (None in sa) != (None in sb):
        raise TypeError("pass both selections as {layer: channels} mappings or both as plain sets.")
    inter = size_a = size_b = union = 0
    for layer in set(sa) | set(sb):
        x, y = sa.get(layer, set()), sb.get(layer, set())
        inter += len(x & y)
        size_a += len(x)
        size_b += len(y)
        union += len(x | y)
    total = size_a + size_b
    half = inter / total if total else math.nan
    return {
        "intersection": inter,
        "size_a": size_a,
        "size_b": size_b,
        "union": union,
        "authors_similarity": half,
        "dice": 2 * half,
        "jaccard": inter / union if union else math.nan,
    }


def chance_overlap(
    a: Mapping[str, Iterable[int]], b: Mapping[str, Iterable[int]], num_channels: Mapping[str, int]
) -> dict[str, float]:
    """Expected overlap of two *random* selections with the sizes of ``a`` and ``b`` per layer
    (uniform subsets of the layer's ``num_channels``): ``expected_intersection`` and
    ``chance_dice`` = ``2 E|A & B| / (|A| + |B|)`` (exact, as the sizes are fixed)."""
    sa, sb = _as_layer_sets(a), _as_layer_sets(b)
    e = sum(
        len(sa.get(layer, ())) * len(sb.get(layer, ())) / num_channels[layer]
        for layer in set(sa) | set(sb)
    )
    total = sum(len(v) for v in sa.values()) + sum(len(v) for v in sb.values())
    return {"expected_intersection": e, "chance_dice": 2 * e / total if total else math.nan}
