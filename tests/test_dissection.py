"""Tests of interpkit.dissection against a brute-force per-image, per-unit reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from interpkit import dissection as nd
from interpkit import stats
from interpkit.dissection.core import DissectOptions
from interpkit.dissection.sparse import _active_pixels, _Geometry

PIXEL_CATS = ("object", "part", "color")


pytestmark = pytest.mark.usefixtures("one_thread")  # many tiny tensor ops: see conftest

SCALAR_CATS = ("scene", "texture")


class FakeBroden:
    """A tiny in-memory dataset with the Broden interface used by ``dissect``."""

    def __init__(
        self,
        n: int = 12,
        image: int = 16,
        seg: tuple[int, int] = (8, 10),
        seed: int = 0,
        masks: dict | None = None,
        scalars: dict | None = None,
        labels: pd.DataFrame | None = None,
    ):
        g = np.random.default_rng(seed)
        self.categories = list(PIXEL_CATS + SCALAR_CATS)
        if labels is None:
            # label 0 unlabeled; 1-3 object, 4-5 part, 6-7 color, 8-9 scene, 10-11 texture
            labels = pd.DataFrame(
                {
                    "name": [
                        "-",
                        "car",
                        "tree",
                        "sky",
                        "wheel",
                        "leaf",
                        "red",
                        "green",
                        "street",
                        "forest",
                        "dotted",
                        "striped",
                    ],
                    "category": [
                        "",
                        "object",
                        "object",
                        "object",
                        "part",
                        "part",
                        "color",
                        "color",
                        "scene",
                        "scene",
                        "texture",
                        "texture",
                    ],
                }
            )
        self.labels = labels
        self.seg_shape, self.image_shape = seg, (image, image)
        self.images = torch.rand(n, 3, image, image, generator=torch.Generator().manual_seed(seed))
        if masks is None:
            masks = {}
            sh, sw = seg
            # objects: blobs; parts sometimes use an object label (label 1 "car" as a part) to exercise
            # primary-category bookkeeping; colour: two layers
            masks["object"] = [
                torch.as_tensor(g.choice([0, 1, 2, 3], size=(1, sh, sw), p=[0.4, 0.2, 0.2, 0.2]))
                for _ in range(n)
            ]
            masks["part"] = [
                torch.as_tensor(
                    g.choice([0, 4, 5, 1], size=(1 + i % 2, sh, sw), p=[0.6, 0.2, 0.1, 0.1])
                )
                for i in range(n)
            ]
            masks["color"] = [
                torch.as_tensor(g.choice([0, 6, 7], size=(2, sh, sw))) for _ in range(n)
            ]
        if scalars is None:
            scalars = {
                "scene": [torch.tensor([8 + i % 2]) for i in range(n)],
                "texture": [torch.tensor([10, 11][: i % 3]) for i in range(n)],
            }
        self.masks, self.scalars = masks, scalars

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {
            "image": self.images[i],
            "masks": {c: m[i].long() for c, m in self.masks.items()},
            "scalars": {c: s[i].long() for c, s in self.scalars.items()},
        }

    def segmentation_batch(self, indices):
        items = [self[i] for i in indices]
        sh, sw = self.seg_shape
        pix = [
            torch.cat([it["masks"][c] for c in self.masks])
            if self.masks
            else torch.zeros(0, sh, sw, dtype=torch.long)
            for it in items
        ]
        sca = [
            torch.cat([it["scalars"][c] for c in self.scalars])
            if self.scalars
            else torch.zeros(0, dtype=torch.long)
            for it in items
        ]
        K = max(p.shape[0] for p in pix)
        S = max(s.shape[0] for s in sca)
        P = torch.zeros(len(items), K, sh, sw, dtype=torch.long)
        Sc = torch.zeros(len(items), S, dtype=torch.long)
        for j, (p, s) in enumerate(zip(pix, sca)):
            P[j, : p.shape[0]] = p
            Sc[j, : s.shape[0]] = s
        return torch.stack([it["image"] for it in items]), P, Sc


def brute_force(acts: np.ndarray, ds: FakeBroden, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """NetDissect-Lite's tally, image by image and unit by unit, without any shortcut."""
    cats = ds.categories
    L = len(ds.labels)
    primary = np.array([cats.index(c) if c in cats else -1 for c in ds.labels["category"]])
    U = acts.shape[1]
    sh, sw = ds.seg_shape
    inter = np.zeros((U, L), np.int64)
    act_cat = np.zeros((U, len(cats)), np.int64)
    unit_px = np.zeros(U, np.int64)
    G = np.zeros(L, np.int64)
    for i in range(len(ds)):
        item = ds[i]
        pixels = (
            np.concatenate([item["masks"][c].numpy() for c in item["masks"]])
            if item["masks"]
            else np.zeros((0, sh, sw), np.int64)
        )
        scalars = [int(s) for c in item["scalars"] for s in item["scalars"][c] if int(s) > 0]
        for lab in pixels.ravel():
            if lab > 0:
                G[lab] += 1
        for s in scalars:
            G[s] += sh * sw
        for u in range(U):
            m = nd.upsample_masks(
                acts[i, u], thresholds[u], (sh, sw)
            ).numpy()  # up(A) > T, as dissect
            a = int(m.sum())
            unit_px[u] += a
            touched = set()
            for lab in pixels[:, m].ravel():
                if lab > 0:
                    inter[u, lab] += 1
                    touched.add(primary[lab])
            for s in scalars:
                inter[u, s] += a
                touched.add(primary[s])
            if a:
                for c in touched:
                    act_cat[u, c] += a
    denom = act_cat[:, np.clip(primary, 0, None)] + G[None] - inter
    iou = np.where(denom > 0, inter / np.maximum(denom, 1), 0.0)
    iou[:, 0] = 0
    return {"inter": inter, "act_cat": act_cat, "unit_px": unit_px, "G": G, "iou": iou}


def _acts(n=12, units=5, h=3, w=4, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).gamma(1.0, 1.0, size=(n, units, h, w)).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# correctness
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk_pixels", [1 << 23, 200])
def test_counts_equal_brute_force(chunk_pixels):
    ds = FakeBroden()
    acts = _acts()
    # a quantile high enough that many maps cross the threshold, so the counts are not trivial
    r = nd.dissect(
        acts,
        ds,
        quantile=0.2,
        batch_size=5,
        progress=False,
        device="cpu",
        options=DissectOptions(chunk_pixels=chunk_pixels),
    )
    ref = brute_force(acts, ds, r.thresholds)
    assert r.unit_pixels.sum() > 0 and ref["inter"].sum() > 0
    np.testing.assert_array_equal(r.intersection, ref["inter"])
    np.testing.assert_array_equal(r.activation, ref["act_cat"])
    np.testing.assert_array_equal(r.unit_pixels, ref["unit_px"])
    np.testing.assert_array_equal(r.label_pixels, ref["G"])
    np.testing.assert_allclose(r.iou, ref["iou"], rtol=0, atol=1e-12)
    assert r.iou.shape == (5, len(ds.labels)) and (r.iou[:, 0] == 0).all()
    assert list(r.labels["label"]) == list(range(len(ds.labels)))


def test_thresholds_are_exact_quantiles():
    acts = _acts(n=9, units=4, h=5, w=5, seed=3)
    for q in (0.005, 0.05, 0.3):
        expect = np.quantile(acts.astype(np.float64), 1 - q, axis=(0, 2, 3))
        got = stats.quantile_thresholds(acts, q, batch_size=2, device="cpu")
        np.testing.assert_allclose(got, expect, rtol=1e-6)
        r = nd.dissect(
            acts, FakeBroden(n=9), quantile=q, batch_size=4, progress=False, device="cpu"
        )
        np.testing.assert_allclose(r.thresholds, expect, rtol=1e-6)
        assert r.threshold_method == "exact"


def test_top_tail_merges_exactly_across_many_blocks():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 20011, generator=g) ** 3
    est = stats.TopTailQuantile(3, x.shape[1], 0.005)
    for s in range(0, x.shape[1], 997):  # many flushes of the top buffer
        est.update(x[:, s : s + 997])
    np.testing.assert_allclose(
        est.result().numpy(), np.quantile(x.double().numpy(), 0.995, axis=1), rtol=1e-6
    )


def test_strict_threshold_excludes_equal_values():
    # seg shape == map shape: bilinear resampling with align_corners=False is then the identity
    ds = FakeBroden(n=2, seg=(4, 4))
    acts = np.zeros((2, 1, 4, 4), np.float32)
    acts[0, 0, :2, :2] = 1.0  # exactly at the threshold: never active
    acts[1, 0, :1, :3] = 1.5  # above: 3 pixels active
    r = nd.dissect(acts, ds, thresholds=np.array([1.0], np.float32), progress=False, device="cpu")
    assert r.unit_pixels.tolist() == [3]
    ref = brute_force(acts, ds, np.array([1.0], np.float32))
    np.testing.assert_array_equal(r.intersection, ref["inter"])


def test_category_restricted_activation_count():
    """A unit's pixels count toward A_cat(c) only in images where its mask overlaps a label of c."""
    labels = pd.DataFrame(
        {"name": ["-", "car", "wheel", "street"], "category": ["", "object", "part", "scene"]}
    )
    sh = sw = 4
    obj = [torch.zeros(1, sh, sw, dtype=torch.long) for _ in range(3)]
    part = [torch.zeros(1, sh, sw, dtype=torch.long) for _ in range(3)]
    obj[0][0, :2, :2] = 1  # image 0: car top-left (4 px)
    part[1][0, 2:, 2:] = 2  # image 1: wheel bottom-right (4 px), no object at all
    obj[2][0, 3, 3] = 1  # image 2: car 1 px far from where the unit fires
    ds = FakeBroden(
        n=3,
        seg=(sh, sw),
        labels=labels,
        masks={"object": obj, "part": part},
        scalars={"scene": [torch.tensor([3]), torch.tensor([0]), torch.tensor([0])]},
    )
    ds.categories = ["object", "part", "scene"]
    acts = np.zeros((3, 1, sh, sw), np.float32)
    acts[0, 0, :2, :3] = 1  # 6 px, overlaps car (4) and the image-level scene
    acts[1, 0, 2:, 2:] = 1  # 4 px, overlaps the wheel only
    acts[2, 0, 0, 0] = 1  # 1 px, touches nothing
    r = nd.dissect(acts, ds, thresholds=np.array([0.5], np.float32), progress=False, device="cpu")
    assert r.unit_pixels.tolist() == [11]
    # A_cat: object 6 (image 0 only), part 4 (image 1 only), scene 6 (image 0)
    assert r.activation.tolist() == [[6, 4, 6]]
    assert r.intersection[0].tolist() == [0, 4, 4, 6]
    assert r.label_pixels.tolist() == [0, 5, 4, 16]
    np.testing.assert_allclose(r.iou[0], [0, 4 / (6 + 5 - 4), 4 / (4 + 4 - 4), 6 / (6 + 16 - 6)])
    u = r.units.iloc[0]
    assert u["label"] == "wheel" and u["category"] == "part" and u["detector"]
    ref = brute_force(acts, ds, np.array([0.5], np.float32))
    np.testing.assert_array_equal(r.activation, ref["act_cat"])


def test_unit_table_and_summaries():
    ds = FakeBroden()
    r = nd.dissect(_acts(), ds, quantile=0.2, progress=False, device="cpu")
    u = r.units
    assert list(u.columns) == ["unit", "label", "label_id", "category", "iou", "detector"]
    best = r.iou[:, 1:].argmax(1) + 1
    assert (u["label_id"].to_numpy() == best).all()
    assert (u["detector"] == (u["iou"] >= 0.04)).all()
    per = r.detectors_per_category()
    assert per["detectors"].sum() == r.num_detectors()
    assert r.unique_detectors() == u[u["detector"]]["label_id"].nunique()
    strict = r.with_iou_threshold(1.0)
    assert strict.num_detectors() == 0 and strict.intersection is r.intersection
    s = nd.summarize({"a": r, "b": strict})
    assert list(s["detectors"]) == [r.num_detectors(), 0]


def test_category_filter_keeps_selected_labels_unchanged():
    ds = FakeBroden()
    acts = _acts()
    full = nd.dissect(acts, ds, quantile=0.2, progress=False, device="cpu")
    obj = nd.dissect(acts, ds, quantile=0.2, categories=["object"], progress=False, device="cpu")
    is_obj = (ds.labels["category"] == "object").to_numpy()
    np.testing.assert_array_equal(obj.iou[:, is_obj], full.iou[:, is_obj])
    assert (obj.iou[:, ~is_obj] == 0).all()
    assert set(obj.units["category"]) == {"object"}


def test_labels_of_unknown_category_are_unselected():
    """A label whose category is not in dataset.categories counts as unlabeled instead of raising."""
    ds = FakeBroden()
    acts = _acts()
    full = nd.dissect(acts, ds, quantile=0.2, progress=False, device="cpu")
    odd = FakeBroden()
    odd.labels = ds.labels.copy()
    odd.labels.loc[[4, 8], "category"] = ["material", "place"]  # "wheel" (part), "street" (scene)
    r = nd.dissect(acts, odd, quantile=0.2, progress=False, device="cpu")
    # the same as dissecting the original data with those two labels' pixels erased
    erased = FakeBroden()
    erased.masks = {
        c: [torch.where((m == 4) | (m == 8), torch.zeros_like(m), m) for m in ms]
        for c, ms in ds.masks.items()
    }
    erased.scalars = {c: [s[(s != 4) & (s != 8)] for s in ss] for c, ss in ds.scalars.items()}
    ref = nd.dissect(acts, erased, quantile=0.2, progress=False, device="cpu")
    np.testing.assert_array_equal(r.intersection, ref.intersection)
    np.testing.assert_array_equal(r.activation, ref.activation)
    np.testing.assert_allclose(r.iou, ref.iou)
    assert (r.iou[:, [4, 8]] == 0).all() and (r.label_pixels[[4, 8]] == 0).all()
    assert list(r.labels.loc[[4, 8], "category"]) == ["", ""]
    keep = [i for i in range(1, len(ds.labels)) if i not in (4, 8)]
    assert (r.iou[:, keep] > 0).any() and not np.array_equal(r.iou, full.iou)
    # with a category filter as well
    obj = nd.dissect(acts, odd, quantile=0.2, categories=["object"], progress=False, device="cpu")
    assert set(obj.units["category"]) == {"object"}


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(6, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        return self.fc(x.mean((2, 3)))


def test_model_source_matches_precomputed_activations(tmp_path):
    ds = FakeBroden(n=10)
    net = TinyNet().eval()
    tf = lambda x: (x - 0.5) / 0.25  # noqa: E731
    res = nd.dissect(
        net,
        ds,
        ["conv1", "relu"],
        quantile=0.1,
        transform=tf,
        batch_size=3,
        progress=False,
        device="cpu",
        options=DissectOptions(spool_dir=tmp_path),
    )
    assert set(res) == {"conv1", "relu"}
    assert list(tmp_path.iterdir()) == []  # spool removed
    with (
        torch.no_grad()
    ):  # same batches as dissect: conv results depend on the batch size in the last bit
        a1 = torch.cat([net.conv1(tf(ds.images[s : s + 3])) for s in range(0, 10, 3)])
    ref = nd.dissect(a1.numpy(), ds, quantile=0.1, progress=False, device="cpu")
    np.testing.assert_array_equal(res["conv1"].intersection, ref.intersection)
    np.testing.assert_array_equal(res["conv1"].thresholds, ref.thresholds)
    single = nd.dissect(
        net, ds, "conv2", thresholds=np.ones(4, np.float32) * 0.1, progress=False, device="cpu"
    )
    assert isinstance(single, nd.DissectionResult) and single.threshold_method == "given"
    assert net.training is False and next(net.parameters()).device.type == "cpu"
    net.train()
    net.conv2.eval()  # partly frozen: the mix comes back as it was
    nd.dissect(
        net, ds, "conv2", thresholds=np.ones(4, np.float32) * 0.1, progress=False, device="cpu"
    )
    assert net.training and net.conv1.training and not net.conv2.training


def test_mapping_source_and_tensor_source():
    ds = FakeBroden()
    a = _acts()
    res = nd.dissect(
        {"x": a, "y": torch.as_tensor(a[:, :2])}, ds, quantile=0.2, progress=False, device="cpu"
    )
    np.testing.assert_array_equal(res["y"].intersection, res["x"].intersection[:2])


# ----------------------------------------------------------------------------------------------
# quantile sketch
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sketch_error_within_documented_bound(seed):
    g = torch.Generator().manual_seed(seed)
    units, blocks = 6, 40
    # drifting scale and sign per unit force range doubling both upwards and downwards
    scale = torch.linspace(0.1, 50, blocks)
    parts = [
        (torch.randn(units, 500, generator=g) ** 3) * scale[b] - (b % 7) * 3.0
        for b in range(blocks)
    ]
    x = torch.cat(parts, 1)
    for q in (0.005, 0.05):
        sk = stats.HistogramQuantileSketch(units, q, bins=2048)
        for p in parts:
            sk.update(p)
        est, err = sk.result()
        exact = torch.as_tensor(np.quantile(x.double().numpy(), 1 - q, axis=1))
        diff = (est.double() - exact).abs()
        assert (diff <= err + 1e-6 * exact.abs()).all(), (diff, err)
        span = (x.amax(1) - x.amin(1)).double()
        assert (err <= 2 * span / (2048 - 1) + 1e-12).all()
        # and the estimate is useful: well inside one percent of the range
        assert (diff / span < 0.01).all()


def test_dissect_sketch_mode_is_close_to_exact():
    ds = FakeBroden()
    a = _acts(units=4, h=6, w=6)
    ex = nd.dissect(a, ds, quantile=0.05, progress=False, device="cpu")
    sk = nd.dissect(
        a,
        ds,
        quantile=0.05,
        options=DissectOptions(quantile_method="sketch", sketch_bins=4096),
        progress=False,
        device="cpu",
    )
    assert sk.threshold_method == "sketch"
    assert (np.abs(sk.thresholds - ex.thresholds) <= sk.threshold_error + 1e-6).all()
    auto = nd.dissect(
        a,
        ds,
        quantile=0.05,
        options=DissectOptions(max_exact_bytes=1),
        progress=False,
        device="cpu",
    )
    assert auto.threshold_method == "sketch"


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------
def test_count_mismatch():
    with pytest.raises(ValueError, match="12 images but the dataset has 10"):
        nd.dissect(_acts(n=12), FakeBroden(n=10), progress=False, device="cpu")


def test_not_4d():
    with pytest.raises(ValueError, match="4-D"):
        nd.dissect(np.zeros((12, 5, 3), np.float32), FakeBroden(), progress=False, device="cpu")
    net = TinyNet()
    with pytest.raises(ValueError, match="4-D"):
        nd.dissect(net, FakeBroden(n=4), "fc", progress=False, device="cpu")


@pytest.mark.parametrize("q", [0, 1, -0.1, 1.5, float("nan")])
def test_quantile_out_of_range(q):
    with pytest.raises(ValueError, match="quantile must lie strictly between 0 and 1"):
        nd.dissect(_acts(), FakeBroden(), quantile=q, progress=False, device="cpu")


def test_missing_category():
    with pytest.raises(KeyError, match="no category 'material'"):
        nd.dissect(
            _acts(), FakeBroden(), categories=["object", "material"], progress=False, device="cpu"
        )


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_activations(bad):
    a = _acts()
    a[7, 2, 1, 1] = bad
    with pytest.raises(ValueError, match="first at image 7"):
        nd.dissect(a, FakeBroden(), batch_size=4, progress=False, device="cpu")
    with pytest.raises(ValueError, match="NaN|infinite"):
        nd.dissect(a, FakeBroden(), thresholds=np.ones(5), progress=False, device="cpu")


def test_other_bad_arguments():
    ds = FakeBroden()
    with pytest.raises(ValueError, match="needs `layers`"):
        nd.dissect(TinyNet(), ds, progress=False, device="cpu")
    with pytest.raises(KeyError, match="no layer named"):
        nd.dissect(TinyNet(), ds, "conv9", progress=False, device="cpu")
    with pytest.raises(ValueError, match="3 values but the layer has 5 units"):
        nd.dissect(_acts(), ds, thresholds=np.ones(3), progress=False, device="cpu")
    with pytest.raises(ValueError, match="iou_threshold"):
        nd.dissect(_acts(), ds, iou_threshold=2, progress=False, device="cpu")
    with pytest.raises(TypeError, match="lacks"):
        nd.dissect(_acts(), object(), progress=False, device="cpu")
    with pytest.raises(TypeError, match="source must be"):
        nd.dissect("acts", ds, progress=False, device="cpu")
    bad = FakeBroden()
    bad.masks["object"][0][0, 0, 0] = 99
    with pytest.raises(ValueError, match="label numbers must lie in"):
        nd.dissect(_acts(), bad, progress=False, device="cpu")


# ----------------------------------------------------------------------------------------------
# rotation
# ----------------------------------------------------------------------------------------------
def test_fractional_rotation_properties():
    for n in (1, 2, 7, 32):
        Q = nd.random_rotation(n, seed=n)
        assert np.allclose(Q @ Q.T, np.eye(n)) and np.isclose(np.linalg.det(Q), 1)
        np.testing.assert_allclose(nd.fractional_rotation(Q, 0.0), np.eye(n), atol=1e-10)
        np.testing.assert_allclose(nd.fractional_rotation(Q, 1.0), Q, atol=1e-10)
        h = nd.fractional_rotation(Q, 0.5)
        assert np.allclose(h @ h.T, np.eye(n)) and np.isclose(np.linalg.det(h), 1)
        np.testing.assert_allclose(h @ h, Q, atol=1e-9)
        np.testing.assert_allclose(
            nd.fractional_rotation(Q, 0.3) @ nd.fractional_rotation(Q, 0.7), Q, atol=1e-9
        )
    # -I on a plane (pairs of eigenvalue -1) is handled as a rotation by pi
    R = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(
        nd.fractional_rotation(R, 0.5) @ nd.fractional_rotation(R, 0.5), R, atol=1e-12
    )
    with pytest.raises(ValueError, match="determinant -1"):
        nd.fractional_rotation(np.diag([1.0, -1.0]), 0.5)
    with pytest.raises(ValueError, match="alpha"):
        nd.fractional_rotation(np.eye(3), 1.5)


def test_rotation_inside_network_keeps_outputs():
    net = TinyNet().eval()
    x = torch.rand(5, 3, 16, 16)
    R = nd.random_rotation(6, seed=1)
    rot = nd.with_rotation(net, "conv1", R)
    with torch.no_grad():
        assert torch.allclose(rot(x), net(x), rtol=1e-4, atol=1e-5)
        from interpkit import capture

        with capture(rot, ["conv1.rotate"]) as acts:
            rot(x)
        expect = nd.rotate_activations(net.conv1(x), R)
    assert torch.allclose(acts["conv1.rotate"], expect, rtol=1e-5, atol=1e-5)
    a = _acts(n=3, units=6)
    np.testing.assert_allclose(
        nd.rotate_activations(a, R), np.einsum("ij,njhw->nihw", R, a), rtol=1e-4, atol=1e-5
    )


def test_helpers():
    a = _acts()
    top = stats.top_images(a, 2, k=3)
    assert list(top) == list(np.argsort(-a[:, 2].reshape(12, -1).max(1))[:3])
    m = nd.upsample_masks(a[:2], np.array([1.0] * 5, np.float32), (8, 10))
    assert m.shape == (2, 5, 8, 10) and m.dtype == torch.bool


@pytest.mark.parametrize(
    "h,w,sh,sw",
    [
        (14, 14, 112, 112),
        (13, 13, 112, 112),
        (6, 9, 113, 50),
        (3, 4, 8, 10),
        (5, 5, 5, 5),
        (9, 7, 4, 6),
        (1, 1, 7, 3),
    ],
)
def test_sparse_masks_equal_dense_interpolation(h, w, sh, sw):
    """The tile-sparse evaluation returns exactly the pixels of ``F.interpolate(...) > T`` that have a
    source cell above ``T``."""
    g = torch.Generator().manual_seed(h * 100 + sw)
    cases = [
        torch.randn(6, 7, h, w, generator=g) ** 3,  # signed, heavy tails
        torch.relu(torch.randn(6, 7, h, w, generator=g)),  # many exact zeros
        torch.randint(0, 4, (6, 7, h, w), generator=g).float() / 4,
    ]  # exact ties with T
    for a in cases:
        thr = torch.quantile(a.transpose(0, 1).reshape(7, -1), 0.8, dim=1)
        thr[0] = a[:, 0].max()  # threshold at the maximum
        geom = _Geometry(h, w, sh, sw, torch.device("cpu"))
        b, u, pos = _active_pixels(a, thr, geom, chunk_pixels=997 if sh * sw < 1000 else 1 << 16)
        got = torch.zeros(6, 7, sh * sw, dtype=torch.bool)
        got[b, u, pos] = True
        got = got.view(6, 7, sh, sw)
        assert len(b) == int(got.sum())  # no duplicates
        up = lambda x: F.interpolate(
            x.reshape(-1, 1, h, w),
            size=(sh, sw),
            mode="bilinear",  # noqa: E731
            align_corners=False,
        ).reshape(6, 7, sh, sw)
        t = thr[None, :, None, None]
        dense = (up(a) > t) & (
            up((a > t).float()) > 0
        )  # pixels with a source cell above T (rounding)
        assert torch.equal(got, dense)


# ----------------------------------------------------------------------------------------------
# edge cases found in an audit: each test failed on the code before its fix
# ----------------------------------------------------------------------------------------------
def test_constant_unit_never_fires():
    """Defect: a unit constant at c gets T = c, and bilinear upsampling rounds c * (w0 + w1) one ulp above
    c on a scatter of pixels, so ``up(A) > T`` fired there: the constant unit had 72 active pixels and an
    IoU of 0.088 (a detector). No pixel whose source cells are all <= T can be above T."""
    ds = FakeBroden()
    a = _acts()
    a[:, 2] = 3.7
    r = nd.dissect(a, ds, quantile=0.005, progress=False, device="cpu")
    assert r.thresholds[2] == np.float32(3.7)
    assert r.unit_pixels[2] == 0 and (r.iou[2] == 0).all() and not r.units["detector"][2]
    # the other units are untouched
    ref = brute_force(a, ds, r.thresholds)
    keep = [0, 1, 3, 4]
    np.testing.assert_array_equal(r.intersection[keep], ref["inter"][keep])
    # a unit saturated at its maximum (ReLU6-like: the top tail is all ties) neither
    sat = np.minimum(_acts(units=1) * 3, 0.3).astype(np.float32)
    r = nd.dissect(sat, ds, quantile=0.005, progress=False, device="cpu")
    assert r.thresholds[0] == np.float32(0.3) and r.unit_pixels[0] == 0
    assert not nd.upsample_masks(a[:, 2:3], np.float32(3.7), ds.seg_shape).any()
    # the sparse evaluation and upsample_masks apply the same rule on maps saturated at the threshold
    for h, w, sh, sw in [(13, 13, 113, 113), (6, 9, 113, 50)]:
        m = torch.minimum(
            torch.randn(3, 4, h, w, generator=torch.Generator().manual_seed(h)) * 4,
            torch.tensor(3.7),
        )
        thr = torch.full((4,), 3.7)
        b, u, pos = _active_pixels(m, thr, _Geometry(h, w, sh, sw, torch.device("cpu")), 1 << 16)
        assert len(b) == 0 and not nd.upsample_masks(m, thr, (sh, sw)).any()


def test_activations_that_require_grad():
    """Defect: activations computed outside ``torch.no_grad()`` (requires_grad=True) crashed with "Can't call
    numpy() on Tensor that requires grad" only at the very end of dissect, and in quantile_thresholds,
    top_images and for such a thresholds tensor."""
    ds = FakeBroden()
    a = _acts()
    ref = nd.dissect(a, ds, quantile=0.2, progress=False, device="cpu")
    g = torch.tensor(a, requires_grad=True)
    r = nd.dissect(g, ds, quantile=0.2, progress=False, device="cpu")
    np.testing.assert_array_equal(r.iou, ref.iou)
    np.testing.assert_array_equal(stats.quantile_thresholds(g, 0.2, device="cpu"), ref.thresholds)
    assert list(stats.top_images(g, 1, k=3)) == list(stats.top_images(a, 1, k=3))
    t = torch.tensor(ref.thresholds, requires_grad=True)
    np.testing.assert_array_equal(
        nd.dissect(a, ds, thresholds=t, progress=False, device="cpu").iou, ref.iou
    )


def test_layer_that_does_not_give_a_feature_map():
    """Defect: a layer that never runs in eval mode (an auxiliary branch) raised a bare ``KeyError: 'aux'``,
    and a layer returning a tuple ``AttributeError: 'tuple' object has no attribute 'float'``."""

    class Aux(TinyNet):
        def __init__(self):
            super().__init__()
            self.aux = nn.Conv2d(6, 2, 1)

        def forward(self, x):
            x = self.relu(self.conv1(x))
            if self.training:
                self.aux(x)
            return self.fc(self.relu(self.conv2(x)).mean((2, 3)))

    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    class TupleNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.pair = nn.Conv2d(3, 4, 3), Pair()

        def forward(self, x):
            return self.pair(self.conv(x))[0].mean()

    with pytest.raises(KeyError, match="'aux' did not run"):
        nd.dissect(Aux(), FakeBroden(n=4), "aux", progress=False, device="cpu")
    with pytest.raises(ValueError, match="'pair' outputs a tuple"):
        nd.dissect(TupleNet(), FakeBroden(n=4), "pair", progress=False, device="cpu")


def test_no_label_selected():
    """Defect: ``categories=[]`` (e.g. a filtered list that came out empty) silently scored no label at all:
    every IoU 0 and no detector, as if the layer had none."""
    with pytest.raises(ValueError, match="no label to score"):
        nd.dissect(_acts(), FakeBroden(), categories=[], progress=False, device="cpu")
    ds = FakeBroden()
    ds.categories = ["material"]  # no label of dataset.labels has a known category
    with pytest.raises(ValueError, match="no label to score"):
        nd.dissect(_acts(), ds, progress=False, device="cpu")


def test_numpy_scalar_quantile_and_iou_threshold():
    """Defect: ``quantile=np.float32(0.2)`` was rejected with "quantile must lie strictly between 0 and 1 ...
    got 0.2" (only Python int/float passed the type test); the same for iou_threshold."""
    ds = FakeBroden()
    ref = nd.dissect(_acts(), ds, quantile=0.2, progress=False, device="cpu")
    r = nd.dissect(
        _acts(),
        ds,
        quantile=np.float32(0.2),
        iou_threshold=np.float32(0.04),
        progress=False,
        device="cpu",
    )
    np.testing.assert_allclose(
        r.thresholds, stats.quantile_thresholds(_acts(), np.float32(0.2), device="cpu")
    )
    assert type(r.quantile) is float and type(r.iou_threshold) is float
    assert type(ref.with_iou_threshold(np.float32(0.1)).iou_threshold) is float


def test_with_rotation_rejects_a_matrix_that_changes_the_network():
    """Defect: a non-orthogonal R (R^T R != I) silently changed the network's outputs (by 0.03 here) although
    with_rotation promises the same function; an R of the wrong size failed only in the forward pass with
    an einsum error."""
    net = TinyNet().eval()
    with pytest.raises(ValueError, match="not orthogonal"):
        nd.with_rotation(net, "conv1", np.random.default_rng(0).standard_normal((6, 6)))
    rot = nd.with_rotation(net, "conv1", nd.random_rotation(4))
    with pytest.raises(ValueError, match="4 x 4 but the feature map has 6 channels"):
        rot(torch.rand(2, 3, 16, 16))


def test_dissect_runs_on_the_cpu_on_a_mac(pretend_mac):
    """Defect: device=None chose MPS, where the float64 quantile sketches cannot live."""
    acts = _acts(n=9, units=4, h=5, w=5, seed=3)
    with pytest.warns(UserWarning, match="dissect keeps float64 tensors"):
        r = nd.dissect(
            acts, FakeBroden(n=9), quantile=0.05, batch_size=4, progress=False, device=None
        )
    np.testing.assert_allclose(r.thresholds, stats.quantile_thresholds(acts, 0.05, device="cpu"))
    with pytest.raises(ValueError, match="use device='cpu'"):
        nd.dissect(acts, FakeBroden(n=9), quantile=0.05, progress=False, device="mps")


# ----------------------------------------------------------------------------------------------
# shards and what is read from the dataset
# ----------------------------------------------------------------------------------------------
def test_tallies_of_shards_combine_to_the_whole():
    """Tally two halves of the dataset separately, combine: the counts of one tally of all."""
    from interpkit.dissection.core import _label_batch, _label_space
    from interpkit.dissection.tally import combine_tallies, tally_shard

    ds, acts = FakeBroden(), _acts()
    ref = nd.dissect(acts, ds, quantile=0.2, batch_size=5, progress=False, device="cpu")
    dev = torch.device("cpu")
    space = _label_space(ds, None, dev)
    thr = {"activations": torch.as_tensor(ref.thresholds)}

    def batches(rows):
        for s in range(rows.start, rows.stop, 4):
            idx = list(range(s, min(s + 4, rows.stop)))
            _, pix, sc = ds.segmentation_batch(idx)
            lab = _label_batch(pix, sc, len(idx), space, ds.seg_shape, dev)
            yield {"activations": torch.as_tensor(acts[idx])}, lab

    shards = [
        tally_shard(batches(r), thr, space, ds.seg_shape, 1 << 20)
        for r in (range(0, 7), range(7, 12))
    ]
    whole = combine_tallies(shards)
    assert whole.n_images == 12
    np.testing.assert_array_equal(whole.label_pixels.numpy(), ref.label_pixels)
    t = whole.layers["activations"]
    np.testing.assert_array_equal(t.inter.numpy(), ref.intersection)
    np.testing.assert_array_equal(t.act_cat.numpy(), ref.activation)
    np.testing.assert_array_equal(t.unit_px.numpy(), ref.unit_pixels)


def test_quantile_estimators_merge_across_shards():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 9000, generator=g) ** 3
    exact = np.quantile(x.double().numpy(), 0.99, axis=1)
    parts = [x[:, :4000], x[:, 4000:]]
    tops = []
    for p in parts:
        est = stats.TopTailQuantile(3, x.shape[1], 0.01)
        est.update(p)
        tops.append(est)
    np.testing.assert_allclose(tops[0].merge(tops[1]).result().numpy(), exact, rtol=1e-6)
    sks = [stats.HistogramQuantileSketch(3, 0.01, bins=1024) for _ in parts]
    for sk, p in zip(sks, parts):
        sk.update(p)
    assert not torch.equal(sks[0].width, sks[1].width)  # different grids: re-binned merge
    est, err = sks[0].merge(sks[1]).result()
    assert ((est.double() - torch.as_tensor(exact)).abs() <= err + 1e-9).all()
    assert (err < 0.01 * (x.amax(1) - x.amin(1)).double()).all()
    assert sks[0].seen == x.shape[1]


def test_iou_from_counts():
    got = stats.iou(np.array([[2, 0]]), np.array([[4, 0]]), np.array([3, 0]))
    np.testing.assert_array_equal(got, [[2 / 5, 0.0]])


class CountingBroden(FakeBroden):
    """Counts image decodes: ``segmentation_batch`` and ``images_batch`` decode images,
    ``labels_batch`` does not."""

    def __init__(self, *a, fast_labels: bool = False, **k):
        super().__init__(*a, **k)
        self.decoded = np.zeros(len(self), int)
        if fast_labels:
            self.labels_batch = lambda idx: self.segmentation_batch(idx, count=False)[1:]

    def segmentation_batch(self, indices, count=True):
        if count:
            self.decoded[list(indices)] += 1
        return super().segmentation_batch(indices)


@pytest.mark.parametrize("fast_labels", [False, True])
def test_images_decoded_only_when_a_model_needs_them_and_once(fast_labels):
    ds = CountingBroden(n=10, fast_labels=fast_labels)
    ref = nd.dissect(_acts(n=10), FakeBroden(n=10), quantile=0.2, progress=False, device="cpu")
    r = nd.dissect(_acts(n=10), ds, quantile=0.2, progress=False, device="cpu")
    np.testing.assert_array_equal(r.iou, ref.iou)
    assert (ds.decoded == (0 if fast_labels else 1)).all()  # labels_batch: no image decode
    ds.decoded[:] = 0
    net = TinyNet().eval()
    r = nd.dissect(
        net, ds, ["conv1", "conv2"], quantile=0.1, batch_size=3, progress=False, device="cpu"
    )
    assert (ds.decoded == 1).all()  # thresholds and tally: one decode per image
    ds.decoded[:] = 0
    nd.dissect(net, ds, "conv2", thresholds=np.ones(4) * 0.1, progress=False, device="cpu")
    assert (ds.decoded == 1).all()


def test_check_fraction():
    from interpkit.checks import check_fraction

    assert check_fraction("q", np.float32(0.25)) == 0.25 and check_fraction("t", 1) == 1.0
    for bad in (True, float("nan"), -0.1, 1.5, "0.5"):
        with pytest.raises(ValueError, match="q must lie in"):
            check_fraction("q", bad)
    with pytest.raises(ValueError, match=r"strictly between 0 and 1 \(paper\)"):
        check_fraction("q", 0.0, open_interval=True, hint="paper")
