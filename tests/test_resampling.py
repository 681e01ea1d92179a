"""Tests of interpkit.resampling (Lengerich et al. 2017): perturbations, metrics against a direct
NumPy transcription, selection, overlaps, ablation and bad input. Small random models; fast."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import interpkit as ik
from interpkit import resampling as rs

pytestmark = pytest.mark.usefixtures("one_thread")  # many tiny tensor ops: see conftest


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
class TinyNet(nn.Module):
    """conv-bn-relu x2, then a linear head: small, deterministic, with named conv layers."""

    def __init__(self, c1: int = 6, c2: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.block1 = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(inplace=True)
        )
        self.block2 = nn.Sequential(
            nn.Conv2d(c1, c2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 4 * 4, classes))

    def forward(self, x):
        return self.head(self.block2(self.block1(x)))


def tiny_net(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    net = TinyNet()
    with torch.no_grad():  # non-trivial batch-norm statistics, so folding them matters
        for bn in (net.block1[1], net.block2[1]):
            bn.running_var.uniform_(0.5, 2.0)
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(0.0, 0.3)
    return net.eval()


class ConstantNet(nn.Module):
    """A conv layer whose output never reaches the logits: the output is constant over copies."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bias = nn.Parameter(torch.tensor([1.0, 2.0, 0.5]))

    def forward(self, x):
        self.conv(x)
        return self.bias.expand(len(x), 3)


def images(b: int = 3, size: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 1, size, size, generator=g)
    x[:, :, :2] = 0  # a zero band: multiplicative noise leaves it unchanged
    return x


def numpy_scores(
    a: np.ndarray, y: np.ndarray, min_activation: float = 0.1, with_signed: bool = False
):
    """Direct transcription of the definitions, one position at a time. a: (N, C, H, W); y: (N,)."""
    n, c, h, w = a.shape
    corr, prec, signed = [], [], []
    for ch in range(c):
        rs_ = []
        for i in range(h):
            for j in range(w):
                v = a[:, ch, i, j]
                if np.all(v == v[0]) or np.all(y == y[0]):
                    continue  # zero variance: skipped, not propagated
                rs_.append(np.corrcoef(v, y)[0, 1])
        corr.append(np.mean(np.abs(rs_)) if rs_ else np.nan)
        signed.append(np.mean(rs_) if rs_ else np.nan)
        if a[:, ch].mean() < min_activation:
            prec.append(np.nan)
        else:
            prec.append(1.0 / np.mean(np.var(a[:, ch], axis=0)))
    if with_signed:
        return np.array(corr), np.array(prec), np.array(signed)
    return np.array(corr), np.array(prec)


def random_acts(seed: int = 0, n: int = 12, c: int = 5, h: int = 3, w: int = 4, dtype=np.float64):
    rng = np.random.default_rng(seed)
    a = np.maximum(rng.normal(0.3, 1.0, (n, c, h, w)), 0).astype(dtype)
    a[:, 1, 0, 0] = 0.7  # one constant position
    a[:, 2] = 0.0  # a dead channel: no position varies
    a[:, 3] *= 0.01  # a weak channel: below the precision threshold
    a[:, 4, 1] = a[0, 4, 1]  # a constant row of positions in an active channel
    y = rng.uniform(0, 1, n)
    return a, y


# --------------------------------------------------------------------------------------------
# perturbations
# --------------------------------------------------------------------------------------------
def test_perturb_copy_zero_is_clean_and_noise_grows_with_k():
    x = images(1, 16)[0] * 0.8 + 0.2  # no zero pixel (relative noise below), still in [0, 1]
    p = rs.perturb(x, n=50, sigma=0.1, seed=1)
    assert p.shape == (50, 1, 16, 16)
    torch.testing.assert_close(p[0], x)
    rel = ((p / x) - 1).flatten(1).std(1)  # the multiplicative noise of each copy: 0.1 * k
    np.testing.assert_allclose(rel[1:].numpy(), 0.1 * np.arange(1, 50), rtol=0.25)
    torch.testing.assert_close(p, rs.perturb(x, n=50, sigma=0.1, seed=1))  # seeded
    assert not torch.equal(p, rs.perturb(x, n=50, sigma=0.1, seed=2))


def test_perturb_schemes_and_batches():
    x = images(2, 16)
    add = rs.perturb(x, n=5, sigma=0.1, scheme="additive", ramp=False)
    assert add.shape == (2, 5, 1, 16, 16)
    torch.testing.assert_close(add[:, 0], x)
    np.testing.assert_allclose((add[:, 1:] - x[:, None]).std().item(), 0.1, rtol=0.1)
    occ = rs.perturb(x, n=20, sigma=0.05, scheme="occlusion", patch=4, fill=0.0)
    torch.testing.assert_close(occ[:, 0], x)
    changed = (occ != x[:, None]).flatten(2).float().mean(-1)  # occluded fraction grows with k
    assert changed[:, -1].mean() > changed[:, 1].mean()
    assert (occ[:, -1] == 0).any()
    clipped = rs.perturb(x, n=10, sigma=0.5, clip=True)
    assert clipped.min() >= 0 and clipped.max() <= 1


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_copies_is_a_clear_error(n):
    with pytest.raises(ValueError, match="at least 3"):
        rs.perturb(images(1)[0], n=n)
    with pytest.raises(ValueError, match="at least 3"):
        rs.analyze(tiny_net(), images(1), n=n)


@pytest.mark.parametrize("sigma", [0.0, -0.1, float("nan"), float("inf")])
def test_non_positive_sigma_is_a_clear_error(sigma):
    with pytest.raises(ValueError, match="sigma"):
        rs.perturb(images(1)[0], sigma=sigma)
    with pytest.raises(ValueError, match="sigma"):
        rs.analyze(tiny_net(), images(1), sigma=sigma)


def test_unknown_scheme_and_bad_types():
    with pytest.raises(ValueError, match="scheme"):
        rs.perturb(images(1)[0], scheme="gaussian-blur")
    with pytest.raises(TypeError):
        rs.perturb(images(1)[0], n=5.0)
    with pytest.raises(ValueError, match="shape"):
        rs.perturb(torch.rand(8, 8))


# --------------------------------------------------------------------------------------------
# metrics against NumPy
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_channel_scores_match_numpy_transcription(dtype, tol):
    for seed in range(3):
        a, y = random_acts(seed, dtype=dtype)
        corr, prec, signed = numpy_scores(a.astype(np.float64), y, with_signed=True)
        got = rs.channel_scores(torch.from_numpy(a), torch.from_numpy(y))
        np.testing.assert_allclose(got["correlation"].numpy(), corr, rtol=tol, atol=tol)
        np.testing.assert_allclose(got["signed_correlation"].numpy(), signed, rtol=tol, atol=tol)
        np.testing.assert_allclose(got["precision"].numpy(), prec, rtol=tol, atol=0)
        np.testing.assert_allclose(got["mean_activation"].numpy(), a[0].mean((1, 2)), rtol=1e-5)
        assert torch.isnan(got["correlation"][2]) and torch.isnan(
            got["precision"][2]
        )  # dead channel
        assert torch.isnan(got["precision"][3]) and not torch.isnan(
            got["correlation"][3]
        )  # below threshold
        assert got["valid_positions"][1] == a.shape[2] * a.shape[3] - 1


def test_channel_scores_batched_equals_per_image():
    a, y = zip(*(random_acts(s) for s in range(3)))
    a, y = torch.from_numpy(np.stack(a)), torch.from_numpy(np.stack(y))
    batched = rs.channel_scores(a, y)
    for i in range(3):
        single = rs.channel_scores(a[i], y[i])
        for k in ("correlation", "precision"):
            torch.testing.assert_close(batched[k][i], single[k], equal_nan=True)


def test_precision_is_accurate_for_tiny_variance_on_a_large_mean():
    # the one-pass variance must not cancel: mean 1000, sd 1e-3, float32
    g = torch.Generator().manual_seed(0)
    a = (1000 + 1e-3 * torch.randn(50, 2, 2, 2, generator=g)).float()
    y = torch.linspace(0, 1, 50, dtype=torch.float64)
    got = rs.channel_scores(a, y)["precision"]
    want = 1 / a.double().var(0, unbiased=False).mean((1, 2))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-2)


def test_constant_output_gives_nan_correlation_not_an_error():
    a, _ = random_acts(0)
    got = rs.channel_scores(
        torch.from_numpy(a), torch.full((a.shape[0],), 0.3, dtype=torch.float64)
    )
    assert torch.isnan(got["correlation"]).all()
    assert not torch.isnan(got["precision"][0])  # precision does not need the output


def test_variation_whose_squares_underflow_is_skipped_not_infinite():
    # |d| ~ 1e-23: the activation changes, but d**2 underflows to 0 in float32, so no variance (and
    # no Pearson coefficient) can be measured; the channel must come out undefined, not infinite
    a = torch.zeros(10, 2, 2, 2)
    a[1:, 0, 0, 0] = torch.linspace(1e-23, 2e-23, 9)
    a[:, 1] = torch.rand(10, 2, 2, generator=torch.Generator().manual_seed(0))
    got = rs.channel_scores(a, torch.linspace(0, 1, 10, dtype=torch.float64))
    assert got["valid_positions"].tolist() == [0, 4]
    assert torch.isnan(got["correlation"][0]) and torch.isnan(got["signed_correlation"][0])
    assert torch.isfinite(got["correlation"][1]) and 0 <= got["correlation"][1] <= 1


def test_probabilities_near_one_are_not_flattened_by_float32():
    a, _ = random_acts(1)
    y = 1 - torch.logspace(
        -12, -9, a.shape[0], dtype=torch.float64
    )  # differs only past float32 eps
    got = rs.channel_scores(torch.from_numpy(a.astype(np.float32)), y)
    corr, _ = numpy_scores(a, y.numpy())
    np.testing.assert_allclose(got["correlation"].numpy(), corr, rtol=2e-4, atol=2e-4)


# --------------------------------------------------------------------------------------------
# analyze
# --------------------------------------------------------------------------------------------
def test_analyze_matches_numpy_on_captured_activations():
    net, x = tiny_net(), images(2)
    res = rs.analyze(net, x, ["block1", "block2"], n=10, sigma=0.2, device="cpu")
    assert list(res.scores.columns[:7]) == [
        "image",
        "layer",
        "channel",
        "correlation",
        "precision",
        "mean_activation",
        "weight_norm",
    ]
    assert len(res.scores) == 2 * (6 + 8) and len(res.outputs) == 20 and len(res.images) == 2
    for i in range(2):
        copies = rs.perturb(x[i], 10, 0.2, seed=i)
        with torch.no_grad(), ik.capture(net, ["block1", "block2"]) as acts:
            p = torch.softmax(net(copies).double(), 1)
        t = int(p[0].argmax())
        assert res.images.loc[i, "target"] == t
        np.testing.assert_allclose(res.outputs.query("image == @i")["output"], p[:, t].numpy())
        for layer in ("block1", "block2"):
            corr, prec = numpy_scores(acts[layer].double().numpy(), p[:, t].numpy())
            got = res.scores.query("image == @i and layer == @layer")
            np.testing.assert_allclose(got["correlation"], corr, rtol=2e-4, atol=2e-4)
            np.testing.assert_allclose(got["precision"], prec, rtol=2e-4)
            torch.testing.assert_close(res.maps[layer][i], acts[layer][0])
    # the zero band of the input never changes under multiplicative noise: block1 skips positions
    assert (res.scores.query("layer == 'block1'")["valid_positions"] < 64).all()


def test_analyze_records_outputs_that_the_model_later_changes_in_place():
    # block1.1 is a BatchNorm whose output the in-place ReLU after it overwrites: analyze keeps
    # outputs without copying and must notice that (version counter) and record a copy instead
    net, x = tiny_net(), images(1)
    layers = ["block1.1", "block2.0"]
    res = rs.analyze(net, x, layers, n=10, sigma=0.2, device="cpu")
    copies = rs.perturb(x[0], 10, 0.2, seed=0)
    with torch.no_grad(), ik.capture(net, layers) as acts:  # capture copies every output
        p = torch.softmax(net(copies).double(), 1)
    assert (acts["block1.1"] < 0).any()  # the values before the ReLU
    t = int(p[0].argmax())
    for layer in layers:
        corr, prec = numpy_scores(acts[layer].double().numpy(), p[:, t].numpy())
        got = res.scores.query("layer == @layer")
        np.testing.assert_allclose(got["correlation"], corr, rtol=2e-4, atol=2e-4)
        np.testing.assert_allclose(got["precision"], prec, rtol=2e-4)
        torch.testing.assert_close(res.maps[layer][0], acts[layer][0])
        # each kept map owns just its own memory, not a view into all the copies' activations
        assert res.maps[layer].untyped_storage().nbytes() == res.maps[layer].numel() * 4


def test_analyze_inside_inference_mode_gives_the_same_scores():
    # outputs made in inference mode have no version counter: they are copied at once instead
    net, x = tiny_net(), images(2)
    layers = ["block1.1", "block2"]
    plain = rs.analyze(net, x, layers, n=8, device="cpu")
    with torch.inference_mode():
        inside = rs.analyze(net, x, layers, n=8, device="cpu")
    pd.testing.assert_frame_equal(plain.scores, inside.scores)
    for layer in layers:
        torch.testing.assert_close(plain.maps[layer], inside.maps[layer])


def test_analyze_is_independent_of_chunking():
    net, x = tiny_net(), images(4)
    whole = rs.analyze(net, x, n=8, device="cpu", layers=["block1", "block2"])
    chunked = rs.analyze(net, x, n=8, device="cpu", layers=["block1", "block2"], batch_size=10)
    single = rs.analyze(net, x[2], n=8, device="cpu", layers=["block1", "block2"], seed=2)
    pd.testing.assert_frame_equal(whole.scores, chunked.scores, rtol=1e-5)
    a = whole.scores.query("image == 2").drop(columns="image").reset_index(drop=True)
    b = single.scores.drop(columns="image").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, rtol=1e-5)


def test_analyze_defaults_to_conv_layer_names_for_vgg8():
    net = ik.models.vgg8(10, 1, width=0.125).eval()
    res = rs.analyze(net, torch.rand(1, 32, 32), n=5, device="cpu")
    assert res.layers == ik.models.conv_layer_names(net)
    assert res.num_channels["features.0"] == 4


def test_layer_without_channel_axis_is_a_clear_error():
    net = tiny_net()
    with pytest.raises(ValueError, match="channel axis"):
        rs.analyze(net, images(1), ["head.1"], n=5)  # a Linear layer: (N, classes)
    with pytest.raises(KeyError, match="no layer named"):
        rs.analyze(net, images(1), ["block9"], n=5)


def test_constant_model_output_is_well_defined():
    res = rs.analyze(ConstantNet().eval(), images(2), ["conv"], n=6, device="cpu")
    assert res.images["output_constant"].all()
    assert res.scores["correlation"].isna().all()
    assert res.top_k("correlation", 3).empty
    ov = res.overlap(3)
    assert (ov["intersection"] == 0).all() and (ov["size_a"] == 0).all()
    assert (ov["authors_similarity"] == 0).all()  # precision still selects; nothing in common


def test_training_mode_and_bad_targets_are_rejected():
    net = tiny_net().train()
    with pytest.raises(ValueError, match="evaluation mode"):
        rs.analyze(net, images(1), n=5)
    net.eval()
    with pytest.raises(ValueError, match="target"):
        rs.analyze(net, images(1), n=5, target=7)
    with pytest.raises(ValueError, match="output"):
        rs.analyze(net, images(1), n=5, output="entropy")
    res = rs.analyze(net, images(2), ["block1"], n=5, target=[1, 2], output="logit")
    assert res.images["target"].tolist() == [1, 2]


def test_weight_norms_fold_batchnorm():
    net = tiny_net()
    got = rs.weight_norms(net, "block2")
    conv, bn = net.block2[0], net.block2[1]
    want = (
        conv.weight.flatten(1).norm(dim=1) * bn.weight.abs() / torch.sqrt(bn.running_var + bn.eps)
    )
    np.testing.assert_allclose(got, want.detach().double().numpy(), rtol=1e-6)
    raw = rs.weight_norms(net, "block2.0", fold_batchnorm=False)
    np.testing.assert_allclose(raw, conv.weight.flatten(1).norm(dim=1).detach().numpy(), rtol=1e-6)
    assert np.isnan(rs.weight_norms(net, "block2.1", 8)).all()  # a bare BatchNorm has no filter
    with torch.no_grad():  # the cache notices in-place changes of the weights
        conv.weight.mul_(2)
    np.testing.assert_allclose(rs.weight_norms(net, "block2"), 2 * got, rtol=1e-6)
    with torch.inference_mode():  # a model built in inference mode (no version counters) also works
        inf_net = tiny_net()
        res = rs.analyze(inf_net, images(1), ["block1", "block2"], n=5, device="cpu")
    assert res.scores["weight_norm"].notna().all()


# --------------------------------------------------------------------------------------------
# selection and overlaps
# --------------------------------------------------------------------------------------------
def test_top_k_skips_nan_and_breaks_ties_by_channel():
    scores = pd.DataFrame(
        {"image": 0, "layer": "L", "channel": range(5), "correlation": [0.5, np.nan, 0.9, 0.5, 0.1]}
    )
    t = rs.top_k(scores, "correlation", 3)
    assert t["channel"].tolist() == [2, 0, 3] and t["rank"].tolist() == [0, 1, 2]
    assert rs.top_k(scores, "correlation", 10)["channel"].tolist() == [2, 0, 3, 4]
    with pytest.raises(ValueError, match="metric"):
        rs.top_k(scores, "saliency", 3)
    with pytest.raises(ValueError, match="k must"):
        rs.top_k(scores, "correlation", 0)


def test_set_overlap_measures():
    a = {"l1": [1, 2, 3, 4, 5], "l2": [0, 1, 2, 3, 4]}
    b = {"l1": [1, 2, 3, 9, 8], "l2": [0, 7, 6, 5, 9]}
    o = rs.set_overlap(a, b)
    assert o["intersection"] == 4 and o["size_a"] == o["size_b"] == 10 and o["union"] == 16
    assert o["authors_similarity"] == pytest.approx(4 / 20)
    assert o["dice"] == pytest.approx(8 / 20)
    assert o["jaccard"] == pytest.approx(4 / 16)
    same = rs.set_overlap(a, a)
    assert same["authors_similarity"] == 0.5 and same["dice"] == 1 and same["jaccard"] == 1
    assert math.isnan(rs.set_overlap({"l": []}, {"l": []})["dice"])
    assert rs.set_overlap({1, 2}, {2, 3})["jaccard"] == pytest.approx(1 / 3)
    with pytest.raises(TypeError):
        rs.set_overlap({"l": [1]}, {1})
    ch = rs.chance_overlap({"l": range(5)}, {"l": range(5)}, {"l": 20})
    assert ch["expected_intersection"] == pytest.approx(1.25) and ch[
        "chance_dice"
    ] == pytest.approx(0.25)


def test_result_overlap_tables():
    res = rs.analyze(tiny_net(), images(3), ["block1", "block2"], n=8, device="cpu")
    pooled = res.overlap(3)
    per_layer = res.overlap(3, per_layer=True)
    assert len(pooled) == 3 and len(per_layer) == 6
    assert (pooled["authors_similarity"] <= 0.5).all()
    np.testing.assert_allclose(pooled["dice"], 2 * pooled["authors_similarity"])
    summed = per_layer.groupby("image")["intersection"].sum().to_numpy()
    np.testing.assert_array_equal(summed, pooled["intersection"].to_numpy())
    for i in range(3):  # the vectorised table agrees with set_overlap on the selections
        want = rs.set_overlap(
            res.selected("correlation", 3, image=i), res.selected("precision", 3, image=i)
        )
        got = pooled.loc[pooled["image"] == i].iloc[0]
        for key, v in want.items():
            assert got[key] == pytest.approx(v, nan_ok=True)
    sel = res.selected("mean_activation", 2, image=1)
    assert set(sel) == {"block1", "block2"} and all(len(v) == 2 for v in sel.values())
    with pytest.raises(KeyError):
        res.selected("correlation", 2, image=9)


# --------------------------------------------------------------------------------------------
# ablation
# --------------------------------------------------------------------------------------------
def test_zero_channels_zeroes_and_removes_hooks():
    net, x = tiny_net(), images(2)
    with torch.no_grad():
        ref = net(x)
        with zero_all(net):
            with ik.capture(net, "block1") as acts:
                out = net(x)
        assert (acts["block1"] == 0).all()
        expected = net.head(net.block2(torch.zeros_like(net.block1(x))))
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(net(x), ref)  # hooks gone
        masks = torch.zeros(2, 6, dtype=torch.bool)
        masks[1, [0, 3]] = True
        with rs.zero_channels(net, {"block1": masks}), ik.capture(net, "block1") as acts:
            net(x)
        assert (acts["block1"][1, [0, 3]] == 0).all() and acts["block1"][0].abs().sum() > 0
    with pytest.raises(ValueError, match="must lie in"):
        with torch.no_grad(), rs.zero_channels(net, {"block1": [6]}):
            net(x)


def zero_all(net):
    return rs.zero_channels(net, {"block1": list(range(6))})


def test_ablation_study_table_and_summary():
    net, x = tiny_net(), images(4)
    labels = torch.tensor([0, 1, 2, 0])
    df = rs.ablation_study(
        net, x, labels, layers=["block1", "block2"], k=2, n_random=3, n=6, device="cpu"
    )
    assert set(df["scope"]) == {"block1", "block2", "all"}
    assert set(df["method"]) == set(rs.METHODS)
    assert len(df) == 4 * 3 * (4 + 3)
    assert (df.query("method == 'random' and scope == 'all'")["n_zeroed"] == 4).all()
    np.testing.assert_allclose(df["drop"], df["p_clean"] - df["p_ablated"])
    s = rs.summarize_ablation(df)
    assert len(s) == 3 * 5
    assert {"mean_drop", "sem_drop", "accuracy_clean", "accuracy_ablated", "flip_rate"} <= set(
        s.columns
    )
    assert (s["n_images"] == 4).all()
    # zeroing every channel of a layer is the same for every method
    full = rs.ablation_study(
        net,
        x,
        layers=["block1"],
        k=6,
        n_random=2,
        n=6,
        all_layers=False,
        device="cpu",
        methods=("mean_activation", "random"),
    )
    piv = full.groupby("method")["p_ablated"].apply(np.array)
    np.testing.assert_allclose(piv["random"][:4], piv["mean_activation"])
    with pytest.raises(ValueError, match="labels"):
        rs.ablation_study(net, x, labels[:2], layers=["block1"], n=5)
    with pytest.raises(ValueError, match="method"):
        rs.ablation_study(net, x, methods=("saliency",), n=5)


def test_overlap_over_training_restores_weights():
    net = tiny_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    states = [tiny_net(1).state_dict(), tiny_net(2).state_dict()]
    df = rs.overlap_over_training(
        net,
        states,
        images(2),
        ["block1", "block2"],
        k=3,
        n=6,
        checkpoint_names=["e1", "e2"],
        device="cpu",
    )
    assert df["checkpoint"].tolist() == ["e1", "e1", "e2", "e2"]
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_overlap_never_exceeds_half_dice_bound_with_ties_nan_and_inf():
    # the chapter's "authors' similarity <= 0.5" is a property of the formula; checked here on scores
    # with ties, NaN (ineligible) and inf (constant channels), pooled and per layer
    rng = np.random.default_rng(0)
    layers, chans = ["a", "b", "c"], {"a": 4, "b": 8, "c": 6}
    for _ in range(40):
        scores = pd.DataFrame(
            [
                {"image": i, "layer": l, "channel": c}
                for i in range(3)
                for l in layers
                for c in range(chans[l])
            ]
        )
        for m in rs.METRICS:
            scores[m] = [
                rng.choice([np.nan, np.inf, 1.0, 2.0, rng.random()]) for _ in range(len(scores))
            ]
        scores["layer"] = pd.Categorical(scores["layer"], categories=layers)
        res = rs.ResamplingResult(scores, layers, chans, {}, None, {"target": np.zeros(3, int)})
        for k in (1, 3, 5, 9):
            for per_layer in (False, True):
                ov = res.overlap(k, per_layer=per_layer)
                assert (ov["authors_similarity"].dropna() <= 0.5).all()
                assert (ov["intersection"] <= np.minimum(ov["size_a"], ov["size_b"])).all()
                np.testing.assert_allclose(ov["dice"], 2 * ov["authors_similarity"])
