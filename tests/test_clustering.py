"""Tests for interpkit.clustering (coupled NMF of pixels and activations, Saini and Papalexakis)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from clustering_reference import reference_coupled_nmf
from torch import nn

from interpkit import clustering as cl

pytestmark = pytest.mark.usefixtures("one_thread")  # many tiny tensor ops: see conftest


def _data(seed: int = 0, n: int = 48):
    """Small non-negative pixel and activation matrices with a shared low-rank structure."""
    rng = np.random.default_rng(seed)
    h = rng.random((4, n)) ** 2
    pix = {
        c: np.clip(rng.random((36, 4)) @ h / 4 + 0.05 * rng.random((36, n)), 0, 1)
        for c in ("red", "green", "blue")
    }
    acts = {
        "l1": np.maximum(rng.normal(size=(80, 4)) @ h + 0.3 * rng.normal(size=(80, n)), 0),
        "l2": 3 * np.maximum(rng.normal(size=(30, 4)) @ h + 0.3 * rng.normal(size=(30, n)), 0),
    }
    return pix, acts


def _direct_rel_error(res: cl.CoupledNMF, pix, acts) -> float:
    num = den = 0.0
    F = res.F.double().numpy()
    for group, mats in ((res.P, pix), (res.O, acts)):
        for k, x in mats.items():
            num += ((x - group[k].double().numpy() @ F) ** 2).sum()
            den += (x**2).sum()
    return num / den


@pytest.mark.parametrize("mode", ["monotone", "faithful"])
def test_matches_numpy_reference_from_same_factors(mode):
    pix, acts = _data()
    fac = cl.init_factors(acts, pix, 5, dtype=torch.float64)
    fn = fac.numpy()
    F, P, O, hist = reference_coupled_nmf(
        list(pix.values()),
        list(acts.values()),
        fn.F,
        list(fn.P.values()),
        list(fn.O.values()),
        n_iter=30,
        mode=mode,
    )
    ref_obj = np.array([h["objective"] for h in hist])
    ref_rel = np.array([h["relative_error"] for h in hist])
    for dtype, rtol in ((torch.float64, 1e-8), (torch.float32, 1e-4)):
        res = cl.coupled_nmf(acts, pix, 5, init=fac, n_iter=30, mode=mode, dtype=dtype)
        assert len(res.history) == len(hist) == 31
        np.testing.assert_allclose(res.history["objective"], ref_obj, rtol=rtol)
        np.testing.assert_allclose(res.history["relative_error"], ref_rel, rtol=rtol)
        scale = F.max()
        np.testing.assert_allclose(res.F.double().numpy() / scale, F / scale, atol=rtol, rtol=0)
        for k, p in zip(pix, P):
            np.testing.assert_allclose(
                res.P[k].double().numpy(), p, atol=rtol * np.abs(p).max(), rtol=0
            )
        for k, o in zip(acts, O):
            np.testing.assert_allclose(
                res.O[k].double().numpy(), o, atol=rtol * np.abs(o).max(), rtol=0
            )


def test_init_factors_are_not_modified_by_a_run():
    pix, acts = _data()
    fac = cl.init_factors(acts, pix, 4)
    before = fac.F.clone(), {k: v.clone() for k, v in fac.O.items()}
    cl.coupled_nmf(acts, pix, 4, init=fac, n_iter=3)
    assert torch.equal(fac.F, before[0]) and all(torch.equal(fac.O[k], before[1][k]) for k in fac.O)


def test_monotone_never_increases_and_beats_faithful():
    pix, acts = _data(1)
    mono = cl.coupled_nmf(acts, pix, 6, n_iter=60)
    faith = cl.coupled_nmf(acts, pix, 6, n_iter=60, mode="faithful")
    obj = mono.history["objective"].to_numpy()
    assert (np.diff(obj) <= 1e-6 * obj[0]).all()
    assert obj[-1] < obj[0]
    # the authors' normalisation makes the error rise on this data (first step at least)
    fo = faith.history["objective"].to_numpy()
    assert (np.diff(fo) > 1e-6 * fo[0]).any()
    assert mono.objective < faith.objective
    assert mono.relative_error < faith.relative_error


def test_final_normalisation_keeps_products_and_history_matches_direct_error():
    pix, acts = _data(2)
    res = cl.coupled_nmf(acts, pix, 5, n_iter=20)
    stacked = torch.cat([*res.P.values(), *res.O.values()])
    np.testing.assert_allclose(stacked.norm(dim=0).numpy(), 1, rtol=1e-5)
    assert _direct_rel_error(res, pix, acts) == pytest.approx(res.relative_error, rel=1e-4)
    faith = cl.coupled_nmf(acts, pix, 5, n_iter=20, mode="faithful")
    for w in [*faith.P.values(), *faith.O.values()]:
        np.testing.assert_allclose(w.norm(dim=0).numpy(), 1, rtol=1e-5)
    assert _direct_rel_error(faith, pix, acts) == pytest.approx(faith.relative_error, rel=1e-4)


def test_streaming_by_row_chunks_and_memmap_equal_in_memory(tmp_path):
    pix, acts = _data(3)
    mm = np.memmap(tmp_path / "l1.f32", dtype=np.float32, mode="w+", shape=acts["l1"].shape)
    mm[:] = acts["l1"]
    acts32 = {"l1": acts["l1"].astype(np.float32), "l2": acts["l2"]}
    a = cl.coupled_nmf(acts32, pix, 4, n_iter=15, dtype=torch.float64)
    b = cl.coupled_nmf(
        {"l1": mm, "l2": acts["l2"]}, pix, 4, n_iter=15, dtype=torch.float64, chunk_rows=7
    )
    np.testing.assert_allclose(b.history["objective"], a.history["objective"], rtol=1e-10)
    np.testing.assert_allclose(b.F.numpy(), a.F.numpy(), rtol=1e-5, atol=1e-6)


def test_early_stop_and_converged_flag():
    pix, acts = _data()
    res = cl.coupled_nmf(acts, pix, 3, n_iter=200, tol=1e-3)
    assert res.converged and res.n_iter < 200
    assert (
        abs(res.history["relative_error"].iloc[-1] - res.history["relative_error"].iloc[-2]) < 1e-3
    )


def test_single_matrix_lambda0_equals_sklearn_mu():
    sk = pytest.importorskip("sklearn.decomposition")
    rng = np.random.default_rng(0)
    x = rng.random((40, 30)) ** 2
    fac = cl.init_factors({"x": x}, None, 4, dtype=torch.float64)
    res = cl.layer_nmf({"x": x}, 4, init=fac, n_iter=40, lambda_f=0.0, dtype=torch.float64, tol=0)[
        "x"
    ]
    # sklearn factorises samples x features as W H; with X^T, W = F^T and H = O^T (F is updated first)
    m = sk.NMF(4, init="custom", solver="mu", max_iter=40, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # ConvergenceWarning: max_iter reached, which is what we want
        w = m.fit_transform(x.T.copy(), W=fac.F.numpy().T.copy(), H=fac.O["x"].numpy().T.copy())
    ours = res.O["x"].double().numpy() @ res.F.double().numpy()
    np.testing.assert_allclose(ours, (w @ m.components_).T, rtol=1e-5, atol=1e-8)


def test_nndsvd_recovers_rank_one_and_matches_sklearn_product():
    rng = np.random.default_rng(0)
    u, v = rng.random(30), rng.random(20)
    w, h = cl.nndsvd(np.outer(u, v), 1)
    np.testing.assert_allclose((w @ h).numpy(), np.outer(u, v), rtol=1e-4)
    skinit = pytest.importorskip("sklearn.decomposition._nmf")
    x = rng.random((50, 3)) @ np.diag([9.0, 4.0, 2.0]) @ rng.random((3, 40)) + 0.01 * rng.random(
        (50, 40)
    )
    w, h = cl.nndsvd(x, 3)
    ws, hs = skinit._initialize_nmf(x, 3, init="nndsvd", random_state=0)
    assert (w >= 0).all() and (h >= 0).all()
    np.testing.assert_allclose((w @ h).numpy(), ws @ hs, atol=1e-3 * np.abs(ws @ hs).max())


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def test_negative_entries_raise_with_hint():
    pix, acts = _data()
    acts["l1"] = acts["l1"] - 0.5
    with pytest.raises(ValueError, match=r"negative entries.*post-ReLU layer or pass relu=True"):
        cl.coupled_nmf(acts, pix, 3)
    pix["red"] = pix["red"] - 1
    with pytest.raises(ValueError, match="pixel matrix 'red' has negative"):
        cl.coupled_nmf(None, pix, 3)


def test_rank_too_large_raises():
    pix, acts = _data(n=10)
    with pytest.raises(
        ValueError, match=r"rank=11 is larger than min\(rows, examples\) = 10.*use rank <= 10"
    ):
        cl.coupled_nmf(acts, pix, 11)
    with pytest.raises(ValueError, match="positive integer"):
        cl.coupled_nmf(acts, pix, 0)


def test_mismatched_example_counts_raise():
    pix, acts = _data()
    acts["l2"] = acts["l2"][:, :-1]
    with pytest.raises(ValueError, match=r"different numbers of examples.*'l2': 47.*same images"):
        cl.coupled_nmf(acts, pix, 3)


def test_nan_in_activations_raises():
    pix, acts = _data()
    acts["l2"][3, 4] = np.nan
    with pytest.raises(
        ValueError, match=r"activation matrix 'l2' contains 1 NaN/inf.*drop the affected examples"
    ):
        cl.coupled_nmf(acts, pix, 3)


def test_other_bad_arguments():
    pix, acts = _data()
    with pytest.raises(ValueError, match="mode must be"):
        cl.coupled_nmf(acts, pix, 3, mode="fast")
    with pytest.raises(ValueError, match="2-D"):
        cl.coupled_nmf({"x": np.ones((2, 3, 4))}, None, 1)
    with pytest.raises(TypeError, match="dict or list"):
        cl.coupled_nmf(acts["l1"], None, 2)
    fac = cl.init_factors(acts, None, 3)
    with pytest.raises(KeyError, match="init factors are for"):
        cl.coupled_nmf(acts, pix, 3, init=fac)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cl.pixel_matrices(torch.full((2, 3, 4, 4), 2.0))


# ---------------------------------------------------------------------------------------------
# activation matrices
# ---------------------------------------------------------------------------------------------
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


def test_activation_matrices_stream_batches_into_units_by_examples(tmp_path):
    torch.manual_seed(0)
    net, x = _Net(), torch.rand(10, 3, 6, 6)
    mats = cl.activation_matrices(net, x, ["act", "pool"], batch_size=3, device="cpu")
    want = net.act(net.conv(x))
    assert mats.shapes == {"act": (4, 6, 6), "pool": (4, 2, 2)}
    assert mats["act"].shape == (4 * 36, 10)
    torch.testing.assert_close(mats["act"], want.reshape(10, -1).T)
    net.train().conv.eval()  # partly frozen: the mix comes back as it was
    mm = cl.activation_matrices(net, x, "act", batch_size=4, device="cpu", memmap_dir=tmp_path)
    assert net.training and not net.conv.training
    assert isinstance(mm["act"], np.memmap) and (tmp_path / "act.f32").exists()
    np.testing.assert_allclose(
        np.asarray(mm["act"]), want.reshape(10, -1).T.detach().numpy(), rtol=1e-6
    )
    # unit -> (channel, y, x) mapping used by top_units
    res = cl.layer_nmf(mats, 2, n_iter=5)["act"]
    tu = cl.top_units(res, "act", 0, k=5)
    m = tu["unit"].to_numpy()
    assert ((tu["channel"] * 36 + tu["y"] * 6 + tu["x"]).to_numpy() == m).all()


def test_activation_matrices_reject_negative_and_nan_layers():
    net, x = _Net(), torch.rand(4, 3, 6, 6)
    with pytest.raises(ValueError, match="negative activations.*relu=True"):
        cl.activation_matrices(net, x, "conv", device="cpu")
    ok = cl.activation_matrices(net, x, "conv", device="cpu", relu=True)
    assert (ok["conv"] >= 0).all()
    bad = x.clone()
    bad[2, 0, 0, 0] = float("nan")  # NaN images: refused up front by the image check
    with pytest.raises(
        ValueError, match=r"images must be finite and lie in \[0, 1\], got 1 NaN/inf"
    ):
        cl.activation_matrices(net, bad, "act", device="cpu")
    h = net.act.register_forward_hook(
        lambda m, a, out: out.index_fill(0, torch.tensor([2]), float("nan"))
    )
    with pytest.raises(
        ValueError, match=r"NaN/inf activations \(examples \[2\]"
    ):  # NaN from the model
        cl.activation_matrices(net, x, "act", device="cpu")
    h.remove()


def test_pixel_matrices_layout():
    x = torch.rand(5, 3, 4, 4)
    pm = cl.pixel_matrices(x)
    assert list(pm) == ["red", "green", "blue"] and pm["green"].shape == (16, 5)
    torch.testing.assert_close(pm["blue"][:, 2], x[2, 2].flatten())


# ---------------------------------------------------------------------------------------------
# summaries
# ---------------------------------------------------------------------------------------------
def test_class_weights_entropy_and_top_examples():
    labels = np.array([0, 0, 1, 1, 2, 2])
    F = np.array([[5, 4, 0, 0, 0, 0], [0, 0, 1, 1, 1, 1.0]])
    w = cl.class_weights(F, labels, ["a", "b", "c"])
    np.testing.assert_allclose(w.to_numpy(), [[1, 0, 0], [0, 0.5, 0.5]])
    t = cl.concept_table(F, labels, ["a", "b", "c"], k=2)
    assert t["top_class"].tolist() == ["a", "b"]
    np.testing.assert_allclose(t["entropy"], [0, 1])
    assert t["top_examples"][0] == [0, 1] and t["top_example_labels"][0] == ["a", "a"]
    np.testing.assert_allclose(t["mass"].sum(), 1)
    dead = cl.concept_table(np.r_[F, np.zeros((1, 6))], labels)
    assert pd.isna(dead["top_class"].iloc[2]) and np.isnan(dead["entropy"].iloc[2])
    assert np.isnan(cl.class_weights(np.r_[F, np.zeros((1, 6))], labels).iloc[2]).all()


def test_knn_impurity_and_accuracy_curve():
    rng = np.random.default_rng(0)
    # two well separated groups of 10 examples, each dominated by one concept
    F = np.concatenate(
        [np.c_[10 + rng.random(10), rng.random(10)], np.c_[rng.random(10), 10 + rng.random(10)]]
    ).T
    imp = cl.knn_impurity(F, n_classes=2)
    # the paper's k = N / classes + 1 includes the example itself: 10 neighbours, of which one
    # necessarily lies in the other group of 10, so even perfectly separated groups are not 0
    assert imp.k == 11 and imp.tally.sum(1).tolist() == [10] * 20
    np.testing.assert_allclose(imp.impurity, -(0.9 * np.log2(0.9) + 0.1 * np.log2(0.1)))
    np.testing.assert_allclose(cl.knn_impurity(F, k=10).impurity, 0)
    # a mixed point gets positive impurity
    F2 = np.c_[F, [5.2, 5]]
    imp2 = cl.knn_impurity(F2, k=21)
    assert imp2.impurity[-1] > 0.9
    df = cl.accuracy_vs_impurity(np.array([0.5, 0.1, 0.9, 0.0]), [True, True, False, False])
    assert df["example"].tolist() == [3, 1, 0, 2]
    np.testing.assert_allclose(df["cumulative_accuracy"], [0, 0.5, 2 / 3, 0.5])


def test_factor_purity_and_similarity_and_masks():
    labels = np.array([0, 0, 1, 1])
    color = np.array([0, 1, 0, 1])
    F = np.array([[1, 1, 0, 0], [0, 0, 1, 1.0]])
    fp = cl.factor_purity(F, {"class": labels, "color": color}, names={"color": ["red", "blue"]})
    cls = fp[fp["factor"] == "class"]
    np.testing.assert_allclose(cls["purity"], 1)
    np.testing.assert_allclose(cls["lift"], 2)
    col = fp[fp["factor"] == "color"]
    np.testing.assert_allclose(col["purity"], 0.5)
    np.testing.assert_allclose(col["norm_entropy"], 1)
    summ = cl.purity_summary(
        np.r_[F, np.zeros((1, 4))], {"class": labels, "color": color}
    )  # + a dead concept
    assert summ.loc["class", "mean_purity"] == 1 and summ.loc["color", "mean_purity"] == 0.5
    assert summ.loc["class", "concepts"] == 2 and summ.loc["class", "weighted_purity"] == 1
    pix, acts = _data()
    res = cl.coupled_nmf(acts, pix, 3, n_iter=5)
    sim = cl.concept_similarity(res, "l1")
    np.testing.assert_allclose(np.diag(sim), 1, rtol=1e-5)
    mask = cl.concept_pixel_mask(res, 0, (6, 6))
    assert mask.shape == (3, 6, 6) and (mask.reshape(3, -1).sum(1) <= 18).all()
    p_red = res.P["red"][:, 0].numpy().reshape(6, 6)
    assert (mask[0] == (p_red > np.median(p_red))).all()
    mi = cl.masked_images(res, 0)
    assert mi.shape == (3, 6, 6) and (mi[~mask] == 0).all()
    imgs = cl.masked_images(res, 0, torch.ones(2, 3, 6, 6))
    assert imgs.shape == (2, 3, 6, 6) and (imgs[:, mask] == 1).all() and (imgs[:, ~mask] == 0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    pix, acts = _data()
    fac = cl.init_factors(acts, pix, 4, dtype=torch.float64, device="cpu")
    a = cl.coupled_nmf(acts, pix, 4, init=fac, n_iter=20, dtype=torch.float64, device="cpu")
    b = cl.coupled_nmf(acts, pix, 4, init=fac, n_iter=20, dtype=torch.float64, device="cuda")
    np.testing.assert_allclose(b.history["objective"], a.history["objective"], rtol=1e-8)


# --------------------------------------------------------------------------------------------
# edge cases found in review (each test failed before its fix)
# --------------------------------------------------------------------------------------------
def test_memmap_activations_are_written_atomically(tmp_path):
    # a run that fails part-way (NaN in the last batch) used to leave a half-filled act.f32 behind,
    # overwriting the complete file of an earlier run
    torch.manual_seed(0)
    net, x = _Net(), torch.rand(10, 3, 6, 6)
    good = cl.activation_matrices(net, x, "act", batch_size=4, device="cpu", memmap_dir=tmp_path)
    before = np.array(good["act"])
    del good
    calls = [0]

    def nan_in_third_batch(_m, _a, out):  # the third batch fails (NaN activations)
        calls[0] += 1
        return out * float("nan") if calls[0] == 3 else out

    h = net.act.register_forward_hook(nan_in_third_batch)
    with pytest.raises(ValueError, match="NaN/inf"):
        cl.activation_matrices(net, x * 0.5, "act", batch_size=4, device="cpu", memmap_dir=tmp_path)
    h.remove()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "act.f32"
    ]  # no partial or temporary files
    after = np.memmap(tmp_path / "act.f32", dtype=np.float32, mode="r", shape=before.T.shape).T
    np.testing.assert_array_equal(after, before)  # the earlier, complete result is intact
    fresh = cl.activation_matrices(
        net, x * 0.5, "act", batch_size=4, device="cpu", memmap_dir=tmp_path
    )
    assert isinstance(fresh["act"], np.memmap) and str(fresh["act"].filename) == str(
        (tmp_path / "act.f32").resolve()
    )
    np.testing.assert_allclose(
        np.asarray(fresh["act"]),
        net.act(net.conv(x * 0.5)).reshape(10, -1).T.detach().numpy(),
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lambda_f": float("nan")},
        {"eps": float("nan")},
        {"lambda_f": float("inf")},
        {"n_iter": 2.5},
    ],
)
def test_coupled_nmf_rejects_non_finite_or_fractional_settings(kwargs):
    # NaN lambda_f / eps passed the `< 0` checks and gave NaN factors without a word
    pix, acts = _data(n=12)
    with pytest.raises(ValueError, match="|".join(kwargs)):
        cl.coupled_nmf(acts, pix, 3, **{"n_iter": 2, **kwargs})


def test_top_k_helpers_reject_non_positive_k():
    # k = -3 used to return all but the last 3 examples (a Python slice), k = 0 nothing
    pix, acts = _data(n=12)
    res = cl.coupled_nmf(acts, pix, 3, n_iter=2)
    layer = next(iter(res.O))
    for k in (0, -3):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            cl.top_examples(res, k)
        with pytest.raises(ValueError, match="k must be a positive integer"):
            cl.top_units(res, layer, 0, k=k)
    assert cl.top_examples(res, 100).shape == (3, 12)  # more than N: all examples, as before


def test_knn_impurity_rejects_non_positive_n_classes():
    # n_classes = 0 raised a bare ZeroDivisionError
    pix, acts = _data(n=12)
    res = cl.coupled_nmf(acts, pix, 3, n_iter=2)
    with pytest.raises(ValueError, match="n_classes"):
        cl.knn_impurity(res, 0)


# --------------------------------------------------------------------------------------------
# scale: the raw objective depends on the units of each matrix (issue: random-network control,
# small activations losing concepts, float32 overflow)
# --------------------------------------------------------------------------------------------
def _live(res: cl.CoupledNMF) -> int:
    mass = res.F.double().sum(1)
    return int((mass > 1e-6 * mass.sum() / len(mass)).sum())


def test_small_activations_lose_concepts_with_a_warning_raw_and_not_with_rms():
    # before: activations scaled by 1e-4 silently kept 1 of 5 concepts under the default lambda_f
    _, acts = _data(1)
    small = {k: v * 1e-4 for k, v in acts.items()}
    with pytest.warns(
        RuntimeWarning, match=r"concepts ended with almost no weight.*normalize='rms'"
    ):
        raw = cl.coupled_nmf(small, None, 5, n_iter=60)
    assert _live(raw) < 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = cl.coupled_nmf(acts, None, 5, n_iter=60, normalize="rms")
        rms = cl.coupled_nmf(small, None, 5, n_iter=60, normalize="rms")
    assert _live(rms) == 5
    # the normalised run does not depend on the units: same F, factors in the units of the data
    np.testing.assert_allclose(
        rms.F.numpy(), ref.F.numpy(), rtol=1e-3, atol=1e-4 * float(ref.F.max())
    )
    np.testing.assert_allclose(rms.history["objective"], ref.history["objective"], rtol=1e-4)
    for k in acts:
        np.testing.assert_allclose(
            rms.O[k].numpy() * 1e4, ref.O[k].numpy(), rtol=1e-3, atol=1e-4 * float(ref.O[k].max())
        )
    assert _direct_rel_error(rms, {}, small) == pytest.approx(
        _direct_rel_error(ref, {}, acts), rel=1e-3
    )


def test_rms_balances_a_tiny_matrix_against_pixels():
    # the chapter's random-network control: with activations of squared norm ~1e-6 of the pixels',
    # the raw coupled F was the pixels-only F (the activations had no say in it)
    pix, acts = _data(2)
    tiny = {k: v * 1e-3 for k, v in acts.items()}
    rel = lambda a, b: float((a.F - b.F).norm() / b.F.norm())
    kw = dict(n_iter=40, dtype=torch.float64)
    assert rel(cl.coupled_nmf(tiny, pix, 4, **kw), cl.coupled_nmf(None, pix, 4, **kw)) < 1e-3
    res = cl.coupled_nmf(tiny, pix, 4, normalize="rms", **kw)
    assert rel(res, cl.coupled_nmf(None, pix, 4, normalize="rms", **kw)) > 0.1
    assert (
        rel(res, cl.coupled_nmf(acts, pix, 4, normalize="rms", **kw)) < 1e-8
    )  # units do not matter
    assert res.scales["activation:l1"] == pytest.approx(1 / np.sqrt((tiny["l1"] ** 2).mean()))
    stacked = torch.cat(
        [res.P[k] * res.scales[f"pixel:{k}"] for k in pix]
        + [res.O[k] * res.scales[f"activation:{k}"] for k in acts]
    )
    np.testing.assert_allclose(
        stacked.norm(dim=0).numpy(), 1, rtol=1e-6
    )  # unit columns, normalised units


def test_huge_float32_inputs_raise_raw_and_work_with_rms():
    # before: entries around 1e20 in float32 gave NaN factors without a word
    _, acts = _data(3, n=20)
    huge = {k: (v * 1e20).astype(np.float32) for k, v in acts.items()}
    with pytest.raises(ValueError, match=r"too large for float32.*normalize='rms'"):
        cl.coupled_nmf(huge, None, 3, n_iter=10)
    res = cl.coupled_nmf(huge, None, 3, n_iter=10, normalize="rms")
    ref = cl.coupled_nmf(
        {k: v.astype(np.float32) for k, v in acts.items()}, None, 3, n_iter=10, normalize="rms"
    )
    assert torch.isfinite(res.F).all()
    np.testing.assert_allclose(
        res.F.numpy(), ref.F.numpy(), rtol=1e-3, atol=1e-4 * float(ref.F.max())
    )
    assert cl.coupled_nmf(huge, None, 3, n_iter=10, dtype=torch.float64).relative_error < 1


def test_normalize_rejects_unknown_values():
    pix, acts = _data(n=12)
    with pytest.raises(ValueError, match="normalize must be 'rms' or None"):
        cl.coupled_nmf(acts, pix, 3, n_iter=2, normalize="max")


@pytest.mark.parametrize("chunk_rows", [None, 7])
def test_read_only_memmap_input_gives_no_warning(tmp_path, chunk_rows) -> None:
    """np.load(mmap_mode='r') arrays are not writable: torch.from_numpy would warn (issue 23)."""
    path = tmp_path / "acts.npy"
    np.save(path, np.random.default_rng(0).random((20, 12)).astype(np.float32))
    acts = np.load(path, mmap_mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = cl.coupled_nmf({"l": acts}, None, 3, n_iter=3, chunk_rows=chunk_rows, init="random")
    ref = cl.coupled_nmf({"l": np.array(acts)}, None, 3, n_iter=3, init="random")
    assert torch.allclose(res.F, ref.F, rtol=1e-5, atol=1e-7)


def test_options_object_and_keywords_agree() -> None:
    pix, acts = _data()
    a = cl.coupled_nmf(acts, pix, 3, options=cl.NMFOptions(n_iter=5, mode="faithful", seed=2))
    b = cl.coupled_nmf(acts, pix, 3, n_iter=5, mode="faithful", seed=2)
    assert torch.equal(a.F, b.F)
    with pytest.raises(TypeError, match="unknown option"):
        cl.coupled_nmf(acts, pix, 3, n_iters=5)
