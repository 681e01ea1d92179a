"""Tests of interpkit.plot: the figures accept the image layouts the chapters use, and bad input is
a clear error rather than a matplotlib one or a silently wrong picture."""

from __future__ import annotations

import matplotlib.pyplot as plt  # the root conftest selects the Agg backend
import numpy as np
import pytest
import torch

import interpkit as ik


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_to_display_layouts():
    x = torch.rand(3, 5, 4) * 2
    assert (
        ik.plot.to_display(x).shape == (5, 4, 3) and ik.plot.to_display(x).max() <= 1
    )  # RGB is clipped
    assert ik.plot.to_display(torch.rand(1, 5, 4)).shape == (5, 4)
    assert ik.plot.to_display(np.zeros((5, 4))).shape == (5, 4)
    assert ik.plot.to_display(np.zeros((5, 4, 3))).shape == (5, 4, 3)


def test_to_display_refuses_layouts_matplotlib_would_misread():
    """Defect: two channels (2, 8, 8), a batch or a row failed in matplotlib (TypeError "Invalid shape ...")."""
    for shape in [(2, 8, 8), (4, 6, 6), (1, 1, 8, 8), (8,)]:
        with pytest.raises(
            ValueError, match=r"an image must have shape \(C, H, W\) with C = 1 or 3, or \(H, W\)"
        ):
            ik.plot.to_display(torch.rand(shape))


def test_to_display_shows_bfloat16():
    """Defect: a bfloat16 tensor (activations under autocast) raised "Got unsupported ScalarType BFloat16"."""
    x = torch.rand(3, 4, 4)
    np.testing.assert_allclose(ik.plot.to_display(x.bfloat16()), ik.plot.to_display(x), atol=1e-2)


def test_image_grid_refuses_empty_input_bad_ncols_and_mismatched_titles():
    """Defect: [] failed in plt.subplots, ncols=0 drew one column, extra titles were dropped, "ab" gave letter titles."""
    images = torch.rand(4, 1, 6, 6)
    fig = ik.plot.image_grid(images, ["a", "b", "c", "d"], ncols=2, row_labels=["r1", "r2"])
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="images is empty"):
        ik.plot.image_grid([])
    with pytest.raises(ValueError, match="ncols must be a positive integer, got 0"):
        ik.plot.image_grid(images, ncols=0)
    with pytest.raises(ValueError, match="size must be a finite number > 0"):
        ik.plot.image_grid(images, size=0)
    with pytest.raises(ValueError, match="got 5 titles for 4 images"):
        ik.plot.image_grid(images, list("abcde"))
    with pytest.raises(ValueError, match="got 3 titles for 4 images"):
        ik.plot.image_grid(images, list("abc"))
    with pytest.raises(TypeError, match="not one string"):
        ik.plot.image_grid(images[:2], "ab")
    with pytest.raises(ValueError, match=r"got 3 row labels for 2 rows \(4 images in 2 columns\)"):
        ik.plot.image_grid(images, ncols=2, row_labels=["r1", "r2", "r3"])
    assert len(plt.get_fignums()) == 1


def test_feature_maps_checks_the_maps_and_the_channels():
    """Defect: a batch failed in matplotlib, channel 20 of 4 gave IndexError, -1 drew "ch -1", NumPy gave AttributeError."""
    maps = torch.rand(4, 6, 6)
    fig = ik.plot.feature_maps(maps.numpy(), channels=[0, np.int64(3)])
    assert [ax.get_title() for ax in fig.axes] == ["ch 0", "ch 3"]
    with pytest.raises(
        ValueError,
        match=r"maps must be one image's activations \(C, H, W\), got shape \(2, 4, 6, 6\)",
    ):
        ik.plot.feature_maps(maps[None].expand(2, -1, -1, -1))
    for bad in (20, -1):
        with pytest.raises(
            ValueError, match=f"channel {bad} does not exist: these maps have 4 channels, 0 to 3"
        ):
            ik.plot.feature_maps(maps, channels=[0, bad])
    with pytest.raises(TypeError, match="channels must be integers, got 1.5"):
        ik.plot.feature_maps(maps, channels=[1.5])


def test_overlay_reads_integer_images_and_checks_mask_and_alpha():
    """Defect: a uint8 image came out white, a (1, H, W) mask gave a bare IndexError, alpha=2 silently over-tinted."""
    fig, ax = plt.subplots()
    grey = torch.full((3, 4, 4), 128, dtype=torch.uint8)
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :2] = True
    ik.plot.overlay(ax, grey, mask, color="red", alpha=0.5)
    shown = ax.images[-1].get_array()
    np.testing.assert_allclose(shown[3, 0], [128 / 255] * 3)  # untinted pixel keeps its grey
    np.testing.assert_allclose(
        shown[0, 0], [0.5 * 128 / 255 + 0.5, 0.5 * 128 / 255, 0.5 * 128 / 255]
    )
    float_img = grey.float() / 255
    ik.plot.overlay(ax, float_img, mask[0], color="red", alpha=0.5)
    np.testing.assert_allclose(ax.images[-1].get_array(), shown)  # same picture as float input
    with pytest.raises(
        ValueError, match=r"mask must be one non-empty \(H, W\) mask, got shape \(2, 4, 4\)"
    ):
        ik.plot.overlay(ax, float_img, torch.zeros(2, 4, 4, dtype=torch.bool))
    for alpha in (2, -0.1, float("nan")):
        with pytest.raises(ValueError, match="alpha must be"):
            ik.plot.overlay(ax, float_img, mask[0], alpha=alpha)


def test_bar_chart_takes_a_pandas_series():
    """Defect: a pandas Series (allowed by the signature) raised "'numpy.ndarray' object is not callable"."""
    import pandas as pd

    fig = ik.plot.bar_chart(pd.Series({"a": 1.0, "b": 3.0}), title="t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert [p.get_height() for p in ax.patches] == [1.0, 3.0]
    with pytest.raises(TypeError, match="values must be a dict or a pandas Series"):
        ik.plot.bar_chart([1, 2])


def test_image_grid_row_labels_stay_beside_their_own_row():
    """Defect: row labels were written along the axis (vertically); one longer than the row is high
    ("ClaDec features.1" beside 1-inch images, the ClaDec chapter's main figure) ran into the rows
    above and below, so nobody could tell which row was which layer."""
    labels = ["original", "RefAE features.1", "ClaDec features.1", "ClaDec features.7"]
    fig = ik.plot.image_grid(torch.rand(4 * 5, 1, 8, 8), ncols=5, size=1.0, row_labels=labels)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    first_column = [ax for ax in fig.axes if ax.get_ylabel()]
    assert [ax.get_ylabel() for ax in first_column] == labels
    for ax in first_column:
        box, row = ax.yaxis.label.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert row.y0 <= box.y0 and box.y1 <= row.y1, f"{ax.get_ylabel()!r} leaves its row"
        assert box.x1 <= row.x0 + 1, f"{ax.get_ylabel()!r} overlaps the images"
        assert box.x0 >= 0, f"{ax.get_ylabel()!r} is cut off at the figure's left edge"
    # the images keep their size: about `size` inches per column, whatever the labels' length
    width = first_column[0].get_window_extent(renderer).width / fig.dpi
    assert 0.75 <= width <= 1.0, width
    plt.close(fig)
