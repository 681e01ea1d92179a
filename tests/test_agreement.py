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


def _fake_probe(n_match: int = 2):
    """A two-image probe set with known masks and a dissection of one 4-channel layer."""
    from types import SimpleNamespace

    import torch

    world = SimpleNamespace(
        object_names=["house", "car"],
        color_names=["red", "blue"],
        texture_names=["plain", "dots"],
        scene_names=["sky", "grass"],
        part_names=["roof"],
        color_table=np.array(
            [[[1, 0, 0], [0.8, 0, 0]], [[0, 0, 1], [0, 0, 0.8]]], dtype=np.float32
        ),
    )
    color = torch.tensor([[[1, 1], [2, 0]], [[2, 2], [2, 1]]])  # image 0: red, image 1: blue
    texture = torch.tensor([[[2, 2], [0, 0]], [[1, 0], [0, 0]]])
    images = SimpleNamespace(
        labels=torch.tensor([0, 1]),
        color_mask=color,
        texture_mask=texture,
        scene=torch.tensor([1, 0]),
        masks=lambda i: {
            "object": (color[i] > 0).long() * (i + 1),
            "part": torch.zeros(2, 2, dtype=torch.long),
            "color": color[i],
            "texture": texture[i],
        },
    )
    concepts = [("color", "red"), ("color", "blue"), ("scene", "sky"), ("scene", "grass")]
    concepts += [("texture", "plain"), ("texture", "dots"), ("object", "house"), ("object", "car")]
    labels = pd.DataFrame(
        [{"category": c, "name": n, "label": i + 1} for i, (c, n) in enumerate(concepts)]
    )
    units = pd.DataFrame(
        {
            "detector": [True, False, True, False],
            "label_id": [1, 2, 3, 1],
            "category": ["color", "color", "scene", "color"],
            "label": ["red", "blue", "sky", "red"],
        }
    )
    iou = np.zeros((4, 9))
    iou[0, 1], iou[0, 3], iou[1, 2], iou[2, 3], iou[3, 2] = 0.5, 0.1, 0.2, 0.6, 0.1
    dis = SimpleNamespace(labels=labels, units=units, iou=iou)
    return ag.Probe(world, images, {"l": dis}, n_match=n_match), world, images


def test_probe_factors_are_the_dominant_labels():
    probe, _, _ = _fake_probe()
    assert probe.factors["colour"].tolist() == [0, 1]  # labels 1 (red) and 2 (blue), minus one
    assert probe.factors["texture"].tolist() == [1, 0]
    assert probe.factors["object"].tolist() == [0, 1] and probe.factors["scene"].tolist() == [1, 0]
    assert probe.label_ids[("color", "blue")] == 2 and probe.label_ids[("object", "car")] == 8
    assert probe.present(1) == {
        ("scene", "sky"),
        ("object", "car"),
        ("color", "red"),
        ("color", "blue"),
        ("texture", "plain"),
    }


def test_probe_matched_channels_are_the_nearest_in_mean_activation():
    probe, _, _ = _fake_probe(n_match=2)
    mean_act = np.array([0.0, 1.0, 1.1, 5.0, 0.9])
    got = probe.matched(mean_act, np.array([1, 3]))
    # brute force: sort the other channels by distance, ties by index
    for row, c in zip(got, (1, 3)):
        others = sorted((abs(mean_act[j] - mean_act[c]), j) for j in range(5) if j not in (1, 3))
        assert row.tolist() == [j for _, j in others[:2]]


def test_probe_colour_accuracy_reads_the_body_colour():
    import torch

    probe, world, images = _fake_probe()
    palette = torch.as_tensor(world.color_table[:, 0], dtype=torch.float32)  # plain shades
    true = torch.as_tensor(probe.factors["colour"])
    good = palette[true][:, :, None, None].expand(2, 3, 2, 2).clone()
    assert probe.colour_accuracy(good) == 1.0
    assert probe.colour_accuracy(good.flip(0)) == 0.0  # the colours swapped


def test_probe_selection_rates_against_matched_channels():
    probe, _, _ = _fake_probe(n_match=1)
    sel = pd.DataFrame({"image": [0], "layer": ["l"], "channel": [0]})
    mean_act = {(0, "l"): np.array([1.0, 3.0, 1.2, 0.0])}  # channel 2 is channel 0's match
    out = probe.selection_rates(sel, mean_act)
    assert out["selected"] == 1
    assert out["detector_rate"] == 1.0 and out["chance_detector_rate"] == 1.0
    # image 0 shows red and grass: channel 0 detects red (present), channel 2 sky (absent)
    assert out["present_detector_rate"] == 1.0 and out["chance_present_detector_rate"] == 0.0
    assert out["mean_iou"] == 0.5 and out["chance_iou"] == 0.6
    assert out["mean_present_iou"] == 0.5 and out["chance_present_iou"] == 0.0


def test_probe_concept_alignment_against_hand_counts():
    from types import SimpleNamespace

    import torch

    probe, _, _ = _fake_probe(n_match=1)
    # one layer of 4 channels at 1 x 1 position; concept 0 loads on channels 0 and 3
    O = torch.tensor([[0.9, 0.0], [0.1, 0.5], [0.0, 0.7], [0.8, 0.1]])
    nmf = SimpleNamespace(O={"l": O}, shapes={"l": (4, 1, 1)})

    class Acts(dict):
        shapes = {"l": (4, 1, 1)}

    acts = Acts(l=np.array([[1.0, 1.0], [3.0, 3.0], [1.2, 1.2], [0.0, 0.0]]))  # rows: channels
    purity = pd.DataFrame(
        [
            {
                "concept": 0,
                "factor": "colour",
                "top_value": "red",
                "purity": 0.9,
                "lift": 2.0,
                "mass": 1.0,
            }
        ]
    )
    out = probe.concept_alignment(nmf, purity, acts, top_k=2).iloc[0]
    assert out["top_channels"] == [0, 3]
    # red is label 1: IoU 0.5 (ch 0), 0 (ch 3); both are matched with ch 2 (channels 1 and 2 are
    # free; mean activation 1.2 is nearest to 1.0 and to 0.0), whose IoU with red is 0
    assert out["top_iou"] == 0.25 and out["matched_iou"] == 0.0
    assert out["all_iou"] == 0.5 / 4
    # detectors of red: channel 0 (channel 3 has label red but is not a detector; ch 2 detects sky)
    assert out["top_detectors_of_value"] == 1 and out["matched_detectors_of_value"] == 0.0


def test_probe_association_counts_pairs_per_image_and_cramers_v():
    import torch

    rng = np.random.default_rng(0)
    a = torch.as_tensor(rng.integers(0, 4, size=(60, 3, 3)))  # labels 1..3, 0 = background
    b = torch.as_tensor(rng.integers(0, 3, size=(60, 3, 3)))
    table, v = ag.Probe.association(a, b, 3, 2)
    brute = np.zeros((3, 2), int)
    for i in range(60):
        pairs = {
            (int(x), int(y)) for x, y in zip(a[i].flatten(), b[i].flatten()) if x > 0 and y > 0
        }
        for x, y in pairs:
            brute[x - 1, y - 1] += 1
    assert (table == brute).all()
    # Bergsma's correction by hand
    n, (r, k) = brute.sum(), brute.shape
    e = brute.sum(1, keepdims=True) * brute.sum(0, keepdims=True) / n
    phi2 = max(0.0, ((brute - e) ** 2 / e).sum() / n - (k - 1) * (r - 1) / (n - 1))
    want = np.sqrt(phi2 / min(k - (k - 1) ** 2 / (n - 1) - 1, r - (r - 1) ** 2 / (n - 1) - 1))
    assert v == pytest.approx(want)
    # a factor determined by the other: V = 1
    same, v_same = ag.Probe.association(a.clamp(min=1), a.clamp(min=1), 3, 3)
    assert v_same == pytest.approx(1.0) and (same == np.diag(np.diag(same))).all()
