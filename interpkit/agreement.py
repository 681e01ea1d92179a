"""Measures of agreement between rankings, selections and their baselines.

The chapters compare what two methods choose: two scores that rank the same channels (Spearman's
rank correlation), the channels one rule picks against random picks (a paired difference over
images), the sets chosen for different images (pairwise Dice against the Dice of random sets of
the same sizes), and the sign of a score over the selected channels.

For sets :math:`A, B` drawn from :math:`c` items, Dice is :math:`2|A \\cap B| / (|A| + |B|)` and
two random sets of the same sizes share :math:`|A||B|/c` items on average, so their expected Dice
is :math:`2|A||B| / (c(|A| + |B|))`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = ["rank_agreement", "versus_random", "pairwise_dice", "share_negative", "Probe"]


def rank_agreement(
    scores: pd.DataFrame, a: str, b: str, *, groups: Sequence[str] = ("image", "layer")
) -> pd.Series:
    """Spearman's rank correlation of two score columns within each group, averaged per the last
    group key (e.g. per layer over images).

    Spearman is Pearson's correlation of the ranks (ties get their mean rank); rows where either
    score is missing are left out.

    Args:
        scores: one row per ranked item, with the columns ``groups``, ``a`` and ``b``.
        a: the first score column.
        b: the second score column.
        groups: the columns that define one ranking (default: one per image and layer); the
            result is averaged over all but the last.
    Returns:
        The mean correlation, indexed by the last group column.
    """
    missing = [c for c in (*groups, a, b) if c not in scores.columns]
    if missing:
        raise KeyError(f"scores lacks the columns {missing}; it has {list(scores.columns)}.")
    d = scores.dropna(subset=[a, b])
    keys = [d[g] for g in groups]
    r = d[[a, b]].groupby(keys).rank()
    r = r - r.groupby(keys).transform("mean")
    sums = pd.DataFrame({"ab": r[a] * r[b], "aa": r[a] ** 2, "bb": r[b] ** 2}).groupby(keys).sum()
    rho = sums["ab"] / np.sqrt(sums["aa"] * sums["bb"])
    return rho.groupby(level=len(groups) - 1).mean()


def versus_random(
    ablation: pd.DataFrame,
    method: str = "correlation",
    *,
    baseline: str = "random",
    order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per scope, the paired difference of an effect between a selection rule and a baseline.

    Each image's effect (``drop``) is first averaged over repeated draws (the random baseline has
    several), then differenced image by image.

    Args:
        ablation: one row per (scope, method, image[, draw]) with a ``drop`` column.
        method: the selection rule to compare.
        baseline: the rule it is compared with.
        order: the scopes to keep, in this order (those absent are skipped); None keeps all.
    Returns:
        A frame indexed by scope with ``mean_difference``, ``ci95`` (1.96 standard errors over
        images) and ``share_of_images_better`` (share of images where the method's drop is larger).
    """
    for name in (method, baseline):
        if name not in set(ablation["method"]):
            raise ValueError(
                f"no rows for method {name!r}; the table has {sorted(set(ablation['method']))}."
            )
    per = ablation.groupby(["scope", "method", "image"])["drop"].mean().unstack("method")
    diff = (per[method] - per[baseline]).groupby("scope")
    out = pd.DataFrame(
        {
            "mean_difference": diff.mean(),
            "ci95": 1.96 * diff.sem(),
            "share_of_images_better": (per[method] > per[baseline]).groupby("scope").mean(),
        }
    )
    return out if order is None else out.loc[[s for s in order if s in out.index]]


def pairwise_dice(
    selection: pd.DataFrame,
    num_items: Mapping[str, int],
    *,
    item: str = "channel",
    unit: str = "image",
    group: str = "layer",
) -> pd.Series:
    """How much the sets selected for different units (images) agree: the Dice of every pair of
    units' sets and the Dice expected of random sets of the same sizes, averaged over the pairs of
    each group, then over groups.

    Args:
        selection: one row per selected item, with the columns ``item``, ``unit`` and ``group``
            (e.g. a top-k table: channel, image, layer).
        num_items: per group, how many items the sets are drawn from (e.g. channels per layer).
        item: the column naming the selected item.
        unit: the column whose values each have one set.
        group: the column within which sets are compared.
    Returns:
        A Series with ``dice`` and ``chance``. Pairs of two empty sets are skipped.
    """
    rows = []
    for g, d in selection.groupby(group):
        sets = [set(s[item]) for _, s in d.groupby(unit)]
        c = num_items[g]
        for i in range(len(sets)):
            for j in range(i + 1, len(sets)):
                a, b = sets[i], sets[j]
                if a or b:
                    rows.append(
                        {
                            group: g,
                            "dice": 2 * len(a & b) / (len(a) + len(b)),
                            "chance": 2 * len(a) * len(b) / c / (len(a) + len(b)),
                        }
                    )
    if not rows:
        raise ValueError("no pair of units with a non-empty set: nothing to compare.")
    return pd.DataFrame(rows).groupby(group).mean().mean()


def share_negative(
    selection: pd.DataFrame,
    scores: pd.DataFrame,
    column: str,
    *,
    on: Sequence[str] = ("image", "layer", "channel"),
    by: str = "layer",
) -> pd.Series:
    """The share of selected items whose score ``column`` is negative, per ``by``.

    Args:
        selection: the selected items (rows with the columns ``on``).
        scores: the scores of all items (the columns ``on`` and ``column``).
        column: the signed score to look at (e.g. the signed correlation with the output).
        on: the columns that identify an item in both frames.
        by: the column to report the share per.
    Returns:
        The share (0..1) per value of ``by``.
    """
    sel = selection.merge(scores, on=list(on))
    return sel.groupby(by)[column].apply(lambda v: float((v < 0).mean()))


class Probe:
    """The ground truth of a concept-world probe set, against which the methods' choices are scored.

    It holds each image's known factors (object, body colour and texture, scene) and, given a
    Network Dissection of some layers, compares channels chosen by another method (an NMF
    concept's top channels, input resampling's selections) with the dissection's detectors and
    IoUs, next to an *activation-matched* baseline: for each chosen channel, the ``n_match`` other
    channels whose mean activation is closest to its own (so that a method that merely picks
    strongly active channels gains nothing).

    Args:
        world: the :class:`~interpkit.data.ConceptWorld` the images come from (None: the images'
            class is their only known factor).
        images: its probe images (an ImageSet with ``color_mask``, ``texture_mask``, ``scene``).
        dissections: ``{layer: DissectionResult}`` of the probe set (None: factors only).
        n_match: how many activation-matched channels stand in for each chosen one.
    """

    def __init__(
        self,
        world: Any,
        images: Any,
        dissections: Mapping[str, Any] | None = None,
        n_match: int = 5,
    ) -> None:
        self.world, self.images, self.n_match = world, images, int(n_match)
        self.dissections = dict(dissections or {})
        if world is None:  # a labelled image set without known factors (e.g. CIFAR-100)
            self.factors: dict[str, np.ndarray] = {"object": images.labels.numpy()}
            self.names: dict[str, list[str]] = {"object": images.classes}
        else:
            self.factors = {
                "object": images.labels.numpy(),
                "colour": _dominant(images.color_mask),
                "texture": _dominant(images.texture_mask),
                "scene": images.scene.numpy(),
            }
            self.names = {
                "object": world.object_names,
                "colour": world.color_names,
                "texture": world.texture_names,
                "scene": world.scene_names,
            }
        first = next(iter(self.dissections.values()), None)
        self.label_ids: dict[tuple[str, str], int] = (
            {}
            if first is None
            else {(r.category, r.name): int(r.label) for r in first.labels.itertuples()}
        )

    def present(self, i: int) -> set[tuple[str, str]]:
        """The (category, name) of every concept visible in probe image ``i``.

        Args:
            i: the image's index.
        Returns:
            The set of (category, concept name), e.g. ``("color", "red")``.
        """
        m = self.images.masks(i)
        w = self.world
        out = {("scene", w.scene_names[int(self.images.scene[i])])}
        for cat, names in (
            ("object", w.object_names),
            ("part", w.part_names),
            ("color", w.color_names),
            ("texture", w.texture_names),
        ):
            out |= {(cat, names[int(v) - 1]) for v in torch.unique(m[cat]) if int(v) > 0}
        return out

    def colour_accuracy(self, images: torch.Tensor) -> float:
        """How often the object's colour can be read from (reconstructed) images: each body pixel
        is named by its nearest palette shade and the image's colour is the majority vote.

        Args:
            images: (N, 3, H, W) images of the probe set, in its order (e.g. ClaDec's output).
        Returns:
            The share of images whose voted colour is the true body colour.
        """
        shades = torch.as_tensor(self.world.color_table).reshape(-1, 3)  # row 2c + s
        true = torch.as_tensor(self.factors["colour"])
        body = self.images.color_mask == (true + 1)[:, None, None]
        hits = 0
        for img, region, c in zip(images, body, true):
            named = torch.cdist(img.permute(1, 2, 0)[region], shades).argmin(1) // 2
            hits += int(torch.bincount(named, minlength=len(self.world.color_names)).argmax() == c)
        return hits / len(images)

    def mask_lift(self, nmf: Any, k: int = 8) -> float | None:
        """How much each concept's pixel mask points at the object: the object's share of the
        pixels the mask keeps (kept in most colour channels) in the concept's top ``k`` images,
        over the object's share of those images; averaged over concepts weighted by their mass.

        Args:
            nmf: a coupled-NMF result fitted on these images (with pixel factors).
            k: how many top images per concept.
        Returns:
            The lift (1 = no better than the object's area), or None when the images have no
            object masks.
        """
        from . import clustering

        if not hasattr(self.images, "object_mask"):
            return None
        tab = clustering.concept_table(nmf, self.images.labels.numpy(), self.images.classes, k=k)
        tops = clustering.top_examples(nmf, k)
        lifts = []
        for r in tab.index:
            keep = clustering.concept_pixel_mask(nmf, r, self.images.image_size).mean(0) > 0.5
            obj = (self.images.object_mask[tops[r]] > 0).numpy()
            lifts.append(obj[:, keep].mean() / max(obj.mean(), 1e-9))
        return float(np.average(lifts, weights=tab["mass"].fillna(0)))

    @staticmethod
    def association(
        mask_a: torch.Tensor, mask_b: torch.Tensor, n_a: int, n_b: int
    ) -> tuple[np.ndarray, float]:
        """How strongly two labelled factors go together in a set of images: their co-occurrence
        table (one count per image and pair of labels that occur together in it) and its
        bias-corrected Cramér's V (Bergsma 2013; near 0 for independent factors even in small
        samples).

        Args:
            mask_a: (N, H, W) labels 1..n_a of the first factor (0: background).
            mask_b: (N, H, W) labels 1..n_b of the second factor, on the same pixels.
            n_a: the number of labels of the first factor.
            n_b: the number of labels of the second.
        Returns:
            The (n_a, n_b) co-occurrence counts and Cramér's V (0 = independent, 1 = determined).
        """
        pair = (mask_a * (n_b + 1) + mask_b).flatten(1)
        table = np.zeros((n_a + 1, n_b + 1), np.int64)
        for row in pair:
            for v in torch.unique(row).tolist():
                table[v // (n_b + 1), v % (n_b + 1)] += 1
        table = table[1:, 1:]
        t = table[table.sum(1) > 0][:, table.sum(0) > 0].astype(float)
        n, (r, k) = t.sum(), t.shape
        expected = t.sum(1, keepdims=True) * t.sum(0, keepdims=True) / n
        phi2 = ((t - expected) ** 2 / expected).sum() / n
        phi2 = max(0.0, phi2 - (k - 1) * (r - 1) / (n - 1))
        r_c, k_c = r - (r - 1) ** 2 / (n - 1), k - (k - 1) ** 2 / (n - 1)
        return table, float(np.sqrt(phi2 / min(k_c - 1, r_c - 1)))

    def matched(self, mean_act: np.ndarray, chosen: np.ndarray) -> np.ndarray:
        """For each chosen channel, the ``n_match`` other channels closest to it in mean activation.

        Args:
            mean_act: (C,) mean activation of every channel.
            chosen: the chosen channels' indices.
        Returns:
            (len(chosen), n_match) channel indices (ties: lower index first).
        """
        free = np.setdiff1d(np.arange(len(mean_act)), chosen)
        return np.stack(
            [
                free[
                    np.argsort(np.abs(mean_act[free] - mean_act[c]), kind="stable")[: self.n_match]
                ]
                for c in chosen
            ]
        )

    def concept_alignment(
        self, nmf: Any, purity: pd.DataFrame, acts: Any, top_k: int
    ) -> pd.DataFrame:
        """How well each live NMF concept's top channels segment the factor value it is purest
        for, against activation-matched channels.

        Args:
            nmf: a coupled-NMF result (``O[layer]`` loadings, ``shapes[layer]``).
            purity: its :func:`~interpkit.clustering.factor_purity` table (factor names as in
                :attr:`factors`).
            acts: the activation matrices it was fitted on (``acts[layer]``, ``acts.shapes``).
            top_k: how many channels per concept.
        Returns:
            One row per (layer, live concept, factor): ``top_iou``, ``matched_iou``, ``all_iou``
            (mean IoU with the factor's top value), ``top_detectors_of_value`` and
            ``matched_detectors_of_value`` (the count expected of matched channels), and the
            concept's ``top_channels``.
        """
        category = {"object": "object", "colour": "color", "texture": "texture", "scene": "scene"}
        live, rows = purity[purity["mass"] > 0], []
        for layer, dis in self.dissections.items():
            c, h, w = nmf.shapes[layer]
            load = nmf.O[layer].double().numpy().reshape(c, h * w, -1).sum(1)
            c, h, w = acts.shapes[layer]
            mean_act = np.asarray(acts[layer], dtype=np.float64).reshape(c, h * w, -1).mean((1, 2))
            for d in live.itertuples():
                top = np.argsort(-load[:, d.concept], kind="stable")[:top_k]
                j = self.label_ids[(category[d.factor], d.top_value)]
                is_det = (dis.units["detector"] & (dis.units["label_id"] == j)).to_numpy()
                m = self.matched(mean_act, top)
                rows.append(
                    {
                        "layer": layer,
                        "concept": d.concept,
                        "factor": d.factor,
                        "value": d.top_value,
                        "purity": d.purity,
                        "lift": d.lift,
                        "top_iou": float(dis.iou[top, j].mean()),
                        "matched_iou": float(dis.iou[m, j].mean()),
                        "all_iou": float(dis.iou[:, j].mean()),
                        "top_detectors_of_value": int(is_det[top].sum()),
                        "matched_detectors_of_value": float(is_det[m].mean(1).sum()),
                        "top_channels": top.tolist(),
                    }
                )
        return pd.DataFrame(rows)

    def selection_rates(
        self, selection: pd.DataFrame, mean_act: Mapping[tuple[int, str], np.ndarray]
    ) -> dict[str, float]:
        """How often channels selected per image are detectors (of any concept, or of one visible
        in that image) and their best IoUs, next to activation-matched channels ("chance").

        Args:
            selection: rows with ``image``, ``layer`` and ``channel`` (e.g. a top-k table).
            mean_act: ``{(image, layer): (C,) mean activation of each channel on that image}``.
        Returns:
            ``selected`` (the row count), ``detector_rate``, ``present_detector_rate``,
            ``mean_iou``, ``mean_present_iou`` and each with a ``chance_`` prefix.
        """
        acc = dict.fromkeys(["detector", "present_detector", "iou", "present_iou"], 0.0)
        base = dict.fromkeys(acc, 0.0)
        present: dict[int, set[tuple[str, str]]] = {}
        for img, layer, ch in selection[["image", "layer", "channel"]].itertuples(index=False):
            dis = self.dissections[layer]
            d, iou = dis.units["detector"].to_numpy(), dis.iou
            keys = list(zip(dis.units["category"], dis.units["label"]))
            seen = present.setdefault(img, self.present(img))
            stats = {
                "detector": d.astype(float),
                "present_detector": np.array(
                    [d[c] and keys[c] in seen for c in range(len(d))], float
                ),
                "iou": iou[:, 1:].max(1),  # best IoU over all concepts
                "present_iou": iou[:, [self.label_ids[k] for k in seen]].max(1),
            }
            m = self.matched(mean_act[img, layer], np.array([ch]))[0]
            for k, v in stats.items():
                acc[k] += v[ch]
                base[k] += v[m].mean()
        n = max(len(selection), 1)
        out: dict[str, float] = {"selected": len(selection)}
        for k in acc:
            out[f"{k}_rate" if "detector" in k else f"mean_{k}"] = acc[k] / n
            out[f"chance_{k}_rate" if "detector" in k else f"chance_{k}"] = base[k] / n
        return out


def _dominant(mask: torch.Tensor) -> np.ndarray:
    """The most frequent non-zero label of each image's mask, minus one (0 is background)."""
    m = mask.flatten(1)
    counts = torch.nn.functional.one_hot(m, int(m.max()) + 1).sum(1)[:, 1:]
    return counts.argmax(1).numpy()
