"""Tests of the explainer (Zhang et al.): ICNN templates and filter loss against a direct transcription,
the mask, input checks, distillation training with its cache, and the metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import interpkit as ik
from interpkit import explainer as E


# ------------------------------------------------------------------------------------------------
# direct (slow) transcriptions of the paper's formulas
# ------------------------------------------------------------------------------------------------
def slow_templates(n, beta=4.0):
    tau = 0.5 / n**2
    out = []
    for mu_i in range(n):
        for mu_j in range(n):
            out.append(
                [
                    [
                        tau * max(1 - beta * (abs(i - mu_i) + abs(j - mu_j)) / n, -1)
                        for j in range(n)
                    ]
                    for i in range(n)
                ]
            )
    out.append([[-tau] * n for _ in range(n)])
    return out


def slow_filter_loss(maps, beta=4.0):
    """-MI(X;T) for one filter: maps is a list of n x n nested lists (one per image)."""
    n = len(maps[0])
    T = slow_templates(n, beta)
    alpha = n * n / (1 + n * n)
    prior = [alpha / n**2] * (n * n) + [1 - alpha]
    tr = [[sum(x[i][j] * t[i][j] for i in range(n) for j in range(n)) for t in T] for x in maps]
    Z = [sum(math.exp(tr[b][k]) for b in range(len(maps))) for k in range(len(T))]
    p_x_t = [[math.exp(tr[b][k]) / Z[k] for k in range(len(T))] for b in range(len(maps))]
    p_x = [sum(prior[k] * p_x_t[b][k] for k in range(len(T))) for b in range(len(maps))]
    mi = sum(
        prior[k] * sum(p_x_t[b][k] * math.log(p_x_t[b][k] / p_x[b]) for b in range(len(maps)))
        for k in range(len(T))
    )
    return -mi


@pytest.mark.parametrize("n", [3, 4, 6])
def test_templates_match_formula(n):
    T = E.icnn_templates(n, dtype=torch.float64)
    assert T.shape == (n * n + 1, n, n)
    torch.testing.assert_close(T, torch.tensor(slow_templates(n), dtype=torch.float64))
    # positive template peaks at mu with tau, negative template is -tau everywhere
    tau = 0.5 / n**2
    assert float(T[n + 1, 1, 1]) == pytest.approx(tau) and float(T[-1].max()) == pytest.approx(-tau)
    lp = E.template_log_priors(n).exp()
    assert float(lp.sum()) == pytest.approx(1.0) and float(lp[-1]) == pytest.approx(1 / (1 + n * n))


@pytest.mark.parametrize("n,scale", [(3, 1.0), (4, 30.0), (5, 200.0)])
def test_filter_loss_matches_direct_transcription(n, scale):
    g = torch.Generator().manual_seed(n)
    x = torch.relu(torch.randn(5, 3, n, n, generator=g, dtype=torch.float64)) * scale
    got = E.filter_loss(x, reduction="none")
    want = [slow_filter_loss(x[:, c].tolist()) for c in range(3)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-12)
    assert float(E.filter_loss(x)) == pytest.approx(float(np.mean(want)))
    assert all(v <= 1e-12 for v in want)  # -MI <= 0


def test_filter_loss_is_stable():
    z = torch.zeros(4, 3, 5, 5, requires_grad=True)
    loss = E.filter_loss(z)
    loss.backward()
    assert torch.isfinite(loss) and abs(loss.item()) < 1e-6
    assert torch.isfinite(z.grad).all()
    big = torch.relu(torch.randn(4, 3, 5, 5)) * 1e6
    big.requires_grad_(True)
    lb = E.filter_loss(big, reduction="sum")
    lb.backward()
    assert torch.isfinite(lb) and torch.isfinite(big.grad).all()
    # MI is bounded by the entropy of T
    assert float(-E.filter_loss(big.detach(), reduction="none").max()) <= math.log(26) + 1e-6


def test_filter_loss_prefers_localised_selective_filters():
    n = 6
    loc = torch.zeros(8, 1, n, n)
    for b in range(4):  # fires at one spot in half of the images, silent in the others
        loc[b, 0, b, b] = 400.0
    diffuse = torch.full((8, 1, n, n), 400.0 / (n * n))
    assert float(E.filter_loss(loc)) < float(E.filter_loss(diffuse)) - 0.5


def test_bad_map_sizes_and_shapes():
    with pytest.raises(ValueError, match="at least 3x3"):
        E.filter_loss(torch.rand(4, 2, 2, 2))
    with pytest.raises(ValueError, match="at least 3x3"):
        E.icnn_templates(2)
    with pytest.raises(ValueError, match="square"):
        E.filter_loss(torch.rand(4, 2, 4, 5))
    with pytest.raises(ValueError, match="batch, filters"):
        E.filter_loss(torch.rand(4, 4, 4))
    with pytest.raises(ValueError, match="at least 3x3"):
        E.Explainer((8, 2, 2), {"t": (8, 2, 2)})


def test_mask_keeps_the_peak_neighbourhood():
    x = torch.ones(1, 1, 8, 8)
    x[0, 0, 2, 5] = 3.0
    m = E.icnn_mask(x)
    assert float(m[0, 0, 2, 5]) == pytest.approx(3.0)  # template value 1 at the peak
    assert float(m[0, 0, 7, 0]) == 0.0  # far away: negative template, ReLU
    assert float(m[0, 0, 2, 6]) == pytest.approx(1 - 4 / 8)  # one step: 1 - beta / n
    assert (m >= 0).all()
    assert E.FilterMask()(x).shape == x.shape


# ------------------------------------------------------------------------------------------------
# explainer on a tiny performer
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(48, 3, 32, 32, generator=g) * 0.3
    y = torch.arange(48) % 2
    x[y == 1, :, 8:20, 8:20] += 0.6
    data = ik.data.ImageSet(x.clamp(0, 1), y, ["plain", "square"], "tiny-rgb")
    torch.manual_seed(0)
    perf = ik.models.vgg8(2, in_channels=3, width=0.125, image_size=32).eval()
    return perf, data


def test_layer_order_and_shapes(tiny):
    perf, data = tiny
    shapes = E.check_layer_order(perf, "features.1", ["features.3"], data.images[:2])
    assert shapes == {"features.1": (8, 8, 8), "features.3": (16, 4, 4)}
    with pytest.raises(ValueError, match="wrong order"):
        E.check_layer_order(perf, "features.3", ["features.1"], data.images[:2])
    with pytest.raises(ValueError, match="also a target"):
        E.check_layer_order(perf, "features.1", "features.1", data.images[:2])
    with pytest.raises(KeyError, match="no layer named"):
        E.check_layer_order(perf, "features.1", "feature.3", data.images[:2])
    with pytest.raises(ValueError, match="wrong order"):
        E.train_explainer(
            perf, data, "features.3", "features.1", epochs=1, cache=False, progress=False
        )


def test_explainer_forward_and_shape_checks():
    ex = E.Explainer((8, 8, 8), {"a": (16, 4, 4), "b": (4, 8, 8)}, n_filters=6, input_layer="in")
    out = ex(torch.rand(5, 8, 8, 8))
    assert out.reconstructions["a"].shape == (5, 16, 4, 4) and out.reconstructions["b"].shape == (
        5,
        4,
        8,
        8,
    )
    assert out.p.shape == (5,) and ((out.p > 0) & (out.p < 1)).all()
    assert out.x_interp.shape == (5, 6, 8, 8) and len(out.interp_maps) == 2
    with pytest.raises(ValueError, match="input features of shape"):
        ex(torch.rand(5, 8, 4, 4))
    with pytest.raises(ValueError, match="has shape"):
        ex.distillation_loss(out, {"a": torch.rand(5, 16, 2, 2), "b": torch.rand(5, 4, 8, 8)})
    with pytest.raises(KeyError, match="no features"):
        ex.distillation_loss(out, {"a": torch.rand(5, 16, 4, 4)})


def test_train_cache_and_metrics(tiny, tmp_cache):
    perf, data = tiny
    kw = dict(n_filters=6, epochs=2, batch_size=16, seed=1, progress=False)
    ex = E.train_explainer(perf, data, "features.1", "features.3", **kw)
    assert ex.cache_path.exists() and len(ex.train_history) == 2
    assert {"recon", "filter", "p", "loss"} <= set(ex.train_history[0])
    assert not ex.training and all(np.isfinite(h["loss"]) for h in ex.train_history)
    ex2 = E.train_explainer(perf, data, "features.1", "features.3", **kw)  # from the cache
    for (k, a), (_, b) in zip(ex.state_dict().items(), ex2.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    assert ex2.train_history == ex.train_history

    rec = E.reconstruction_error(ex, perf, data)
    assert list(rec["layer"]) == ["features.3"] and np.isfinite(rec["relative_error"].iloc[0])
    acc = E.accuracy_with_reconstruction(ex, perf, data)
    assert set(acc) == {
        "performer_accuracy",
        "reconstructed_accuracy",
        "accuracy_drop",
        "prediction_agreement",
    }
    assert acc["performer_accuracy"] == pytest.approx(ik.models.evaluate(perf, data)["accuracy"])
    p = E.interpretable_ratio(ex, perf, data)
    assert p.shape == (len(data),) and ((p > 0) & (p < 1)).all()

    # the hook really runs the rest of the performer on the reconstruction
    x = data.images[:4]
    with torch.no_grad():
        with ik.capture(perf, "features.1") as acts:
            perf(x)
        recon = ex.reconstruct(acts["features.1"])
        want = perf.classifier(perf.features[4:](recon))
        with E.replaced_features(perf, ex) as state:
            got = perf(x)
    torch.testing.assert_close(got, want)
    assert state["p"].shape == (4,)

    # a performer fed another image size gives mismatched features: clear error
    big = ik.models.vgg8(2, in_channels=3, width=0.125, image_size=64).eval()
    big.features.load_state_dict(perf.features.state_dict())
    big_data = ik.data.ImageSet(torch.rand(4, 3, 64, 64), torch.zeros(4))
    with pytest.raises(
        ValueError, match="distilled from another performer"
    ):  # the explainer knows its performer
        E.accuracy_with_reconstruction(ex, big, big_data)
    known, ex.performer_fingerprint = ex.performer_fingerprint, None  # one built by hand does not
    with pytest.raises(ValueError, match="input features of shape"):
        E.accuracy_with_reconstruction(ex, big, big_data)
    ex.performer_fingerprint = known
    with pytest.raises(ValueError, match="evaluation mode"):
        E.reconstruction_error(ex, perf.train(), data)
    perf.eval()


def test_mismatched_reconstruction_shape_in_hook(tiny):
    perf, data = tiny
    ex = E.Explainer(
        (8, 8, 8), {"features.3": (16, 2, 2)}, n_filters=4, input_layer="features.1"
    ).eval()
    with pytest.raises(ValueError, match="has shape"), torch.no_grad():
        with E.replaced_features(perf, ex):
            perf(data.images[:2])


# ------------------------------------------------------------------------------------------------
# location instability and part IoU on synthetic maps
# ------------------------------------------------------------------------------------------------
def _landmark_world(N=40, n=8, H=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    cells = torch.randint(0, n, (N, 2), generator=g)
    s = H / n
    lm = torch.full((N, 2, 2), float("nan"))
    lm[:, 0] = (cells.float() + 0.5) * s - 0.5  # part 0: at the cell centre
    lm[:, 1] = lm[:, 0] + torch.tensor([3.0, -2.0])  # part 1: fixed offset
    lm[N // 2 :, 1] = float("nan")  # part 1 absent in half the images
    return cells, lm


def test_location_instability_follows_the_part():
    N, n, H = 40, 8, 32
    cells, lm = _landmark_world(N, n, H)
    maps = torch.zeros(N, 3, n, n)
    g = torch.Generator().manual_seed(1)
    rnd = torch.randint(0, n, (N, 2), generator=g)
    for i in range(N):
        maps[i, 0, cells[i, 0], cells[i, 1]] = 1.0 + i  # follows the part
        maps[i, 1, rnd[i, 0], rnd[i, 1]] = 1.0 + i  # random position
    df = E.location_instability(maps, lm, H, top=100)
    assert df.loc[0, "instability"] == pytest.approx(0.0, abs=1e-9)
    assert df.loc[1, "instability"] > 0.05
    assert bool(df.loc[2, "dead"]) and np.isnan(df.loc[2, "instability"])
    peaks = E.peak_positions(maps[:, :1], H)
    torch.testing.assert_close(peaks[:, 0].float(), lm[:, 0])
    with pytest.raises(ValueError, match="landmarks"):
        E.location_instability(maps, lm[:5], H)


def test_location_instability_per_category():
    N, n, H = 40, 8, 32
    cells, lm = _landmark_world(N, n, H)
    labels = torch.zeros(N, dtype=torch.long)
    labels[N // 2 :] = 1
    lm[N // 2 :] = float("nan")  # category 1 shows no part: it is not scored
    maps = torch.zeros(N, 1, n, n)
    g = torch.Generator().manual_seed(2)
    rnd = torch.randint(0, n, (N, 2), generator=g)
    for i in range(N):
        if i < N // 2:
            maps[i, 0, cells[i, 0], cells[i, 1]] = 5.0 + i
        else:  # weaker, random firing on the other category
            maps[i, 0, rnd[i, 0], rnd[i, 1]] = 1.0
    df = E.location_instability(maps, lm, H, labels=labels, top=100)
    assert df.loc[0, "category"] == 0 and df.loc[0, "instability"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="labels"):
        E.location_instability(maps, lm, H, labels=labels[:3])


def test_part_iou_finds_the_part():
    N, H, n = 20, 32, 8
    part = torch.zeros(N, H, H, dtype=torch.long)
    part[:, 4:12, 4:12] = 1  # part 0
    part[:, 20:28, 16:30] = 2  # part 1
    maps = torch.zeros(N, 2, n, n)
    maps[:, 0, 1:3, 1:3] = 1.0  # covers part 0
    maps[:, 1] = torch.rand(N, n, n)
    df = E.part_iou(maps, part, ["a", "b"], quantile=0.9)
    assert df.loc[0, "part"] == "a" and df.loc[0, "iou"] > 0.5
    assert df.loc[1, "iou"] < df.loc[0, "iou"]
    assert {"iou_a", "iou_b"} <= set(df.columns)


def test_bad_loss_hyper_parameters_are_rejected_before_training(tiny):
    # Defect: NaN filter_weight / p_weight / loss_peak / beta passed every check and trained an explainer
    # whose weights were all NaN (and cached it); negative weights or loss_peak silently trained a
    # meaningless explainer (maximising -MI or pushing p to 0). Now a clear ValueError before training.
    perf, data = tiny
    kw = dict(n_filters=6, epochs=1, batch_size=16, cache=False, progress=False)
    for bad in (
        dict(filter_weight=float("nan")),
        dict(p_weight=float("inf")),
        dict(filter_weight=-0.1),
        dict(p_weight=-1.0),
    ):
        with pytest.raises(ValueError, match="finite number >= 0"):
            E.train_explainer(perf, data, "features.1", "features.3", **kw, **bad)
    for peak in (float("nan"), 0.0, -5.0):
        with pytest.raises(ValueError, match="loss_peak"):
            E.train_explainer(perf, data, "features.1", "features.3", loss_peak=peak, **kw)
    with pytest.raises(ValueError, match="beta"):
        E.train_explainer(perf, data, "features.1", "features.3", beta=float("nan"), **kw)
    # Defect: lr=NaN passed the `lr <= 0` test and trained an all-NaN explainer; epochs=2.5 was accepted
    for bad, name in (
        (dict(lr=float("nan")), "lr"),
        (dict(lr=0.0), "lr"),
        (dict(epochs=2.5), "epochs"),
        (dict(batch_size=1), "batch_size"),
    ):
        with pytest.raises(ValueError, match=name):
            E.train_explainer(perf, data, "features.1", "features.3", **{**kw, **bad})
    # bare tensors: the error says how to wrap them (it used to name the type only)
    with pytest.raises(TypeError, match=r"wrap tensors with ImageSet\(images, labels\)"):
        E.train_explainer(perf, data.images, "features.1", "features.3", **kw)
    with pytest.raises(ValueError, match="beta"):
        E.Explainer((8, 8, 8), {"t": (8, 4, 4)}, beta=float("nan"))
    with pytest.raises(ValueError, match="beta"):
        E.icnn_mask(torch.rand(2, 3, 5, 5), beta=-1.0)
    with pytest.raises(ValueError, match="tau"):
        E.filter_loss(torch.rand(2, 3, 5, 5), tau=float("nan"))


def test_part_iou_rejects_labels_without_a_name():
    # Defect: part labels above len(part_names) were clamped into the last named part, so passing a
    # subset of the names silently credited unnamed parts to it; no names at all crashed in numpy's
    # argmax. Now a ValueError saying which labels have no name.
    maps = torch.zeros(2, 1, 4, 4)
    maps[:, 0, 3, 3] = 1.0
    pm = torch.zeros(2, 16, 16, dtype=torch.long)
    pm[:, 12:, 12:] = 3  # only part 3 ('c') is under the filter's peak
    assert E.part_iou(maps, pm, ["a", "b", "c"], quantile=0.5)["part"].iloc[0] == "c"
    with pytest.raises(ValueError, match="part_names"):
        E.part_iou(maps, pm, ["a", "b"], quantile=0.5)
    with pytest.raises(ValueError, match="part_names"):
        E.part_iou(maps, pm, [], quantile=0.5)


def test_location_instability_when_no_category_shows_a_landmark():
    # with labels and no visible landmark anywhere it crashed with a raw TypeError; it now gives the
    # same answer as without labels: every filter dead (nothing can be measured)
    N, n, H = 20, 8, 32
    maps = torch.rand(N, 2, n, n, generator=torch.Generator().manual_seed(0))
    lm = torch.full((N, 2, 2), float("nan"))
    labels = torch.arange(N) % 2
    got = E.location_instability(maps, lm, H, labels=labels, top=10)
    want = E.location_instability(maps, lm, H, top=10)
    assert got["dead"].all() and got["instability"].isna().all()
    assert got.drop(columns="mean_peak").equals(want.drop(columns="mean_peak"))


def _untrained_explainer(perf, data):
    feats = E.performer_features(perf, data.images[:2], ["features.1", "features.3"])
    return E.Explainer(
        tuple(feats["features.1"].shape[1:]),
        {"features.3": tuple(feats["features.3"].shape[1:])},
        n_filters=4,
        input_layer="features.1",
    ).eval()


def test_reconstruction_metrics_of_a_constant_target_are_undefined(tiny):
    # an all-zero or constant target layer has no variance: r2 (and, for zeros, the relative
    # error) were huge meaningless numbers from dividing by a 1e-12 floor; they are NaN now
    perf, data = tiny
    ex = _untrained_explainer(perf, data)
    rec = E.reconstruction_error(ex, perf, data)
    assert (
        np.isfinite(rec["relative_error"]).all() and np.isfinite(rec["r2"]).all()
    )  # a normal target
    with torch.no_grad():
        perf.features[3][1].weight.zero_()  # batch-norm scale 0: the target is its bias
        perf.features[3][1].bias.fill_(0.5)  # after ReLU: 0.5 everywhere, a constant layer
    rec = E.reconstruction_error(ex, perf, data)
    assert np.isnan(rec["r2"]).all() and np.isfinite(rec["relative_error"]).all()
    with torch.no_grad():
        perf.features[3][1].bias.fill_(-1.0)  # after ReLU: all zero
    rec = E.reconstruction_error(ex, perf, data)
    assert np.isnan(rec["r2"]).all() and np.isnan(rec["relative_error"]).all()


def test_maps_of_no_images_are_a_clear_error(tiny):
    # an empty batch failed inside torch.cat (an ImageSet cannot be empty: it checks that itself)
    perf, data = tiny
    ex = _untrained_explainer(perf, data)
    with pytest.raises(ValueError, match="pass at least one image"):
        E.explainer_maps(ex, perf, data.images[:0])
    with pytest.raises(ValueError, match="pass at least one image"):
        E.performer_features(perf, data.images[:0], "features.1")
