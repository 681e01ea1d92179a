"""interpkit.agreement against brute force: scipy's Spearman, loops over pairs of sets, hand sums."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from interpkit import agreement as ag


def _scores(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        {"image": i, "layer": layer, "channel": c, "a": rng.normal(), "b": rng.integers(0, 4)}
        for i in range(4)
        for layer in ("l1", "l2")
        for c in range(7)
    ]
    df = pd.DataFrame(rows)
    df.loc[3, "a"] = np.nan  # a missing score is left out of its ranking
    return df


def test_rank_agreement_is_the_mean_spearman_per_layer():
    df = _scores()
    got = ag.rank_agreement(df, "a", "b")
    for layer in ("l1", "l2"):
        rhos = []
        for i in range(4):
            d = df[(df["image"] == i) & (df["layer"] == layer)].dropna()
            rhos.append(spearmanr(d["a"], d["b"]).statistic)  # ties: mean ranks, as here
        assert got[layer] == pytest.approx(np.mean(rhos), abs=1e-12)


def test_rank_agreement_names_missing_columns():
    with pytest.raises(KeyError, match="lacks the columns"):
        ag.rank_agreement(_scores(), "a", "nope")


def test_versus_random_pairs_images_and_averages_random_draws():
    rows = []
    for scope, base in (("l1", 0.1), ("all", 0.5)):
        for image in range(3):
            rows.append(
                {"scope": scope, "method": "correlation", "image": image, "drop": base + image}
            )
            for noise in (0.0, 0.2):  # random: two draws per image
                rows.append(
                    {
                        "scope": scope,
                        "method": "random",
                        "image": image,
                        "drop": base + noise * image,
                    }
                )
    out = ag.versus_random(pd.DataFrame(rows), order=["l1", "missing", "all"])
    assert list(out.index) == ["l1", "all"]
    diffs = np.array([i - 0.1 * i for i in range(3)])  # correlation minus the mean random drop
    assert out.loc["l1", "mean_difference"] == pytest.approx(diffs.mean())
    assert out.loc["l1", "ci95"] == pytest.approx(1.96 * diffs.std(ddof=1) / np.sqrt(3))
    assert out.loc["l1", "share_of_images_better"] == pytest.approx(2 / 3)  # image 0 ties
    with pytest.raises(ValueError, match="no rows for method 'precision'"):
        ag.versus_random(pd.DataFrame(rows), "precision")


def test_pairwise_dice_against_a_loop_over_pairs():
    sets = {
        ("l1", 0): {1, 2, 3},
        ("l1", 1): {2, 3},
        ("l1", 2): {7},
        ("l2", 0): {0},
        ("l2", 1): {0, 1},
    }
    rows = [{"layer": g, "image": i, "channel": c} for (g, i), s in sets.items() for c in s]
    num = {"l1": 10, "l2": 4}
    got = ag.pairwise_dice(pd.DataFrame(rows), num)
    per_layer = {}
    for g in num:
        vals = []
        own = [s for (gg, _), s in sets.items() if gg == g]
        for a, b in itertools.combinations(own, 2):
            vals.append(
                (
                    2 * len(a & b) / (len(a) + len(b)),
                    2 * len(a) * len(b) / num[g] / (len(a) + len(b)),
                )
            )
        per_layer[g] = np.mean(vals, axis=0)
    expect = np.mean(list(per_layer.values()), axis=0)
    assert got["dice"] == pytest.approx(expect[0]) and got["chance"] == pytest.approx(expect[1])
    with pytest.raises(ValueError, match="no pair"):
        ag.pairwise_dice(pd.DataFrame(rows[:1]), num)


def test_share_negative_counts_selected_rows_only():
    scores = pd.DataFrame(
        {
            "image": 0,
            "layer": ["a", "a", "a", "b"],
            "channel": [0, 1, 2, 0],
            "s": [-1.0, 2.0, -3.0, 1.0],
        }
    )
    sel = scores.iloc[[0, 1, 3]][["image", "layer", "channel"]]
    got = ag.share_negative(sel, scores, "s")
    assert got.to_dict() == {"a": 0.5, "b": 0.0}
