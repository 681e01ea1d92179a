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

import numpy as np
import pandas as pd

__all__ = ["rank_agreement", "versus_random", "pairwise_dice", "share_negative"]


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
