"""Tests of the explainer's loss choices ablated in chapter 02 (Z_T per category, the filter loss on
every interpretable layer) and of location instability on a fraction of the top images."""

from __future__ import annotations

import pytest
import torch

import interpkit as ik
from interpkit import explainer as E


def test_grouped_filter_loss_normalises_over_each_group():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(10, 3, 5, 5, generator=g) * 50
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 2])  # group 2 has one image: skipped
    want = (4 * E.filter_loss(x[:4]) + 5 * E.filter_loss(x[4:9])) / 9
    torch.testing.assert_close(E.grouped_filter_loss(x, groups), want)
    torch.testing.assert_close(
        E.grouped_filter_loss(x, torch.zeros(10, dtype=torch.long)), E.filter_loss(x)
    )
    torch.testing.assert_close(E.grouped_filter_loss(x, None), E.filter_loss(x))
    assert float(E.grouped_filter_loss(x, torch.arange(10))) == 0.0  # every group a single image
    with pytest.raises(ValueError, match="groups"):
        E.grouped_filter_loss(x, groups[:3])


def test_filter_loss_choices_change_training_and_are_checked():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 3, 32, 32, generator=g) * 0.3
    y = torch.arange(32) % 2
    x[y == 1, :, 8:20, 8:20] += 0.6
    data = ik.data.ImageSet(x.clamp(0, 1), y, ["plain", "square"], "tiny-rgb")
    torch.manual_seed(0)
    perf = ik.models.vgg8(2, in_channels=3, width=0.125, image_size=32).eval()
    kw = dict(n_filters=4, epochs=1, batch_size=16, cache=False, progress=False, loss_peak=None)
    base = E.train_explainer(perf, data, "features.1", "features.3", **kw)
    for choice in (dict(filter_layers="all"), dict(z_groups="category")):
        other = E.train_explainer(perf, data, "features.1", "features.3", **kw, **choice)
        assert other.train_history[0]["filter"] != pytest.approx(base.train_history[0]["filter"])
    off = E.train_explainer(perf, data, "features.1", "features.3", **{**kw, "filter_weight": 0.0})
    assert off.train_history[0]["filter"] == 0.0  # switched off: not computed
    for bad in (dict(filter_layers="first"), dict(z_groups="image")):
        with pytest.raises(ValueError, match=next(iter(bad))):
            E.train_explainer(perf, data, "features.1", "features.3", **kw, **bad)


def test_location_instability_on_a_fraction_of_the_top_images():
    # filter 0 sits on the part in its 10 strongest images and fires at random, weakly, elsewhere
    N, n, H = 40, 8, 32
    g = torch.Generator().manual_seed(3)
    cells = torch.randint(1, n - 1, (N, 2), generator=g)
    lm = ((cells.float() + 0.5) * (H / n) - 0.5)[:, None, :]
    rnd = torch.randint(0, n, (N, 2), generator=g)
    maps = torch.zeros(N, 1, n, n)
    for i in range(N):
        if i < 10:
            maps[i, 0, cells[i, 0], cells[i, 1]] = 10.0 + i
        else:
            maps[i, 0, rnd[i, 0], rnd[i, 1]] = 1.0
    quarter = E.location_instability(maps, lm, H, top=0.25)
    assert (
        quarter.loc[0, "instability"] == pytest.approx(0.0, abs=1e-9)
        and quarter.loc[0, "n_images"] == 10
    )
    assert E.location_instability(maps, lm, H, top=1.0).equals(
        E.location_instability(maps, lm, H, top=N)
    )
    assert E.location_instability(maps, lm, H, top=1.0).loc[0, "instability"] > 0.05
    for bad in (0.0, 1.5, 1, True):
        with pytest.raises(ValueError, match="top"):
            E.location_instability(maps, lm, H, top=bad)


def test_config_and_keyword_options_are_the_same_run(tmp_cache):
    g = torch.Generator().manual_seed(0)
    data = ik.data.ImageSet(
        torch.rand(16, 3, 32, 32, generator=g), torch.arange(16) % 2, ["a", "b"]
    )
    torch.manual_seed(0)
    perf = ik.models.vgg8(2, in_channels=3, width=0.125, image_size=32).eval()
    cfg = E.ExplainerConfig(n_filters=4, epochs=1, batch_size=8)
    a = E.train_explainer(perf, data, "features.1", "features.3", cfg, progress=False)
    b = E.train_explainer(
        perf, data, "features.1", "features.3", n_filters=4, epochs=1, batch_size=8, progress=False
    )
    assert a.cache_path == b.cache_path  # same settings, same cache key
    c = E.train_explainer(perf, data, "features.1", "features.3", cfg, epochs=2, progress=False)
    assert c.cache_path != a.cache_path and len(c.train_history) == 2  # an option overrides cfg
    with pytest.raises(TypeError, match="unknown option.*'epoch'.*fields of ExplainerConfig"):
        E.train_explainer(perf, data, "features.1", "features.3", epoch=1, progress=False)
    with pytest.raises(TypeError, match="must be an ExplainerConfig"):
        E.train_explainer(perf, data, "features.1", "features.3", {"epochs": 1})


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(batch_size=1), "at least 2"),
        (dict(epochs=0), "epochs"),
        (dict(filter_layers="first"), "'last' or 'all'"),
        (dict(z_groups="image"), "'batch' or 'category'"),
        (dict(loss_peak=-1.0), "loss_peak"),
    ],
)
def test_config_rejects_bad_settings(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        E.ExplainerConfig(**bad)


def test_hparams_keep_the_cache_keys_of_earlier_runs():
    # filter_layers and z_groups enter the key only off their defaults; "auto" resolves to 2 n^2
    hp = E.ExplainerConfig().hparams(8, seed=3)
    assert hp == dict(
        epochs=20,
        lr=1e-3,
        batch_size=64,
        filter_weight=0.1,
        p_weight=0.05,
        loss_peak=128.0,
        weight_decay=0.0,
        seed=3,
    )
    hp = E.ExplainerConfig(loss_peak=None, z_groups="category").hparams(8, seed=0)
    assert hp["loss_peak"] is None and hp["filter_layers"] == "last"
    assert hp["z_groups"] == "category"


def test_check_square_maps():
    from interpkit.checks import check_square_maps

    assert check_square_maps(torch.zeros(2, 3, 5, 5), "maps") == 5
    assert check_square_maps((8, 4, 4), "shape", min_size=3) == 4
    with pytest.raises(ValueError, match="square"):
        check_square_maps((4, 5), "maps")
    with pytest.raises(ValueError, match="at least 3x3 is needed; larger"):
        check_square_maps((2, 2), "maps", min_size=3, hint="larger")
    with pytest.raises(TypeError, match="floating point"):
        check_square_maps(torch.zeros(2, 3, 5, 5, dtype=torch.long), "maps")
    with pytest.raises(TypeError, match="a torch.Tensor or a shape"):
        check_square_maps(5, "maps")
