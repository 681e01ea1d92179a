"""Tests of interpkit.widgets: the widgets respond to their controls, and never use the output
capture protocol that makes headless notebook runs hang (jupyter/nbclient#312)."""

from __future__ import annotations

import matplotlib.pyplot as plt  # the root conftest selects the Agg backend
import pytest
import torch

import interpkit as ik

ipywidgets = pytest.importorskip("ipywidgets")


@pytest.fixture(autouse=True)
def png_figures():
    """Format figures as PNG, as the inline backend of a notebook kernel does."""
    from IPython.core.interactiveshell import InteractiveShell
    from matplotlib_inline.backend_inline import select_figure_formats

    shell = InteractiveShell.instance()
    select_figure_formats(shell, {"png"})
    yield
    select_figure_formats(shell, set())


def _output_area(box):
    return box.children[1]


def test_interactive_figure_redraws_when_a_control_changes():
    calls = []

    def draw(n: int, colour: str) -> plt.Figure:
        calls.append((n, colour))
        fig, ax = plt.subplots(figsize=(1, 1))
        ax.plot(range(n), color=colour)
        return fig

    n = ipywidgets.IntSlider(2, 1, 5)
    colour = ipywidgets.Dropdown(options=["red", "blue"], value="red")
    box = ik.widgets.interactive_figure(draw, n=n, colour=colour)
    out = _output_area(box)
    assert calls == [(2, "red")]
    assert [o["output_type"] for o in out.outputs] == ["display_data"]
    first = out.outputs[0]["data"]
    assert first["image/png"]
    n.value = 4
    colour.value = "blue"
    assert calls == [(2, "red"), (4, "red"), (4, "blue")]
    assert len(out.outputs) == 1 and out.outputs[0]["data"] != first  # replaced, not appended
    assert plt.get_fignums() == []  # every figure was closed


def test_interactive_figure_never_captures_output_with_the_context_manager(monkeypatch):
    # `with out:` sets the output area's msg_id, which a headless executor answers by sending widget
    # messages on the shell channel while it waits there for the cell's reply: the source of the
    # intermittent hangs. The figure must go into `outputs` directly.
    entered = []
    monkeypatch.setattr(ipywidgets.Output, "__enter__", lambda self: entered.append(self))

    def draw(k: int) -> plt.Figure:
        return plt.figure(figsize=(1, 1))

    k = ipywidgets.IntSlider(0, 0, 3)
    out = _output_area(ik.widgets.interactive_figure(draw, k=k))
    k.value = 3
    assert entered == [] and out.msg_id == "" and len(out.outputs) == 1


def test_an_error_in_draw_fails_the_cell_first_and_is_shown_later():
    def draw(k: int) -> plt.Figure:
        if k == 2:
            raise ValueError("k = 2 cannot be drawn")
        return plt.figure(figsize=(1, 1))

    with pytest.raises(ValueError, match="cannot be drawn"):
        ik.widgets.interactive_figure(draw, k=ipywidgets.IntSlider(2, 0, 3))
    k = ipywidgets.IntSlider(0, 0, 3)
    out = _output_area(ik.widgets.interactive_figure(draw, k=k))
    k.value = 2  # from a slider: shown, not raised
    assert (
        out.outputs[0]["output_type"] == "stream"
        and "k = 2 cannot be drawn" in out.outputs[0]["text"]
    )
    k.value = 1  # and the next good value draws again
    assert out.outputs[0]["output_type"] == "display_data"


def test_feature_map_explorer_responds_to_layer_and_image():
    torch.manual_seed(0)
    model = ik.models.vgg8(10, 1, width=0.25).eval()
    images = torch.rand(3, 1, 32, 32)
    box = ik.widgets.feature_map_explorer(model, images, ["features.0", "features.2"])
    layer, image, _ = box.children[0].children
    out = _output_area(box)
    before = out.outputs[0]["data"]
    layer.value = "features.2"
    image.value = 2
    assert len(out.outputs) == 1 and out.outputs[0]["data"] != before
    assert plt.get_fignums() == []


def test_feature_map_explorer_keeps_the_models_mode():
    """Defect: the explorer switched the caller's model to evaluation mode for good."""
    torch.manual_seed(0)
    model = ik.models.vgg8(10, 1, width=0.25).train()
    images = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        expected = model.eval().features[0](images)  # evaluation-mode maps (running statistics)
    model.train()
    model.features[3].eval()  # partly frozen: the mix must come back as it was
    modes = [m.training for m in model.modules()]
    ik.widgets.feature_map_explorer(model, images, ["features.0"])
    assert [m.training for m in model.modules()] == modes
    # and its forward pass ran in evaluation mode: the batch-norm running statistics are unchanged
    with ik.capture(model.eval(), ["features.0"]) as acts, torch.no_grad():
        model(images)
    assert torch.allclose(acts["features.0"], expected)
    plt.close("all")


def test_a_draw_that_returns_no_figure_fails_the_first_draw():
    """Defect: a draw without `return fig` built a widget that silently showed the text 'None'."""

    def draw(k: int):
        fig, ax = plt.subplots(figsize=(1, 1))
        return ax if k else None

    with pytest.raises(
        TypeError,
        match="draw must return a matplotlib Figure, got NoneType; end it with `return fig`",
    ):
        ik.widgets.interactive_figure(draw, k=ipywidgets.IntSlider(0, 0, 3))
    with pytest.raises(TypeError, match="got Axes"):
        ik.widgets.interactive_figure(draw, k=ipywidgets.IntSlider(1, 0, 3))
    assert plt.get_fignums() == []


def test_a_figure_that_fails_to_render_fails_the_first_draw():
    """Defect: a figure the PNG formatter could not render (bad mathtext) built a widget showing only '<Figure ...>' text."""

    def draw(k: int) -> plt.Figure:
        fig, ax = plt.subplots(figsize=(1, 1))
        ax.set_title(r"$\notacommand{x}$" if k == 2 else "fine")
        return fig

    with pytest.raises(ValueError, match="notacommand"):
        ik.widgets.interactive_figure(draw, k=ipywidgets.IntSlider(2, 0, 3))
    k = ipywidgets.IntSlider(0, 0, 3)
    out = _output_area(ik.widgets.interactive_figure(draw, k=k))
    assert out.outputs[0]["data"]["image/png"]
    k.value = 2  # from a slider: shown in the output area
    assert out.outputs[0]["output_type"] == "stream" and "notacommand" in out.outputs[0]["text"]
    assert plt.get_fignums() == []


def test_a_failed_draw_closes_its_figure_and_leaves_no_callbacks():
    """Defect: a failed draw left its figure open (shown under the next cell); a failed first draw left callbacks."""
    calls = []

    def draw(k: int) -> plt.Figure:
        calls.append(k)
        fig = plt.figure(figsize=(1, 1))
        if k == 2:
            raise ValueError("k = 2 cannot be drawn")
        return fig

    k = ipywidgets.IntSlider(2, 0, 3)
    with pytest.raises(ValueError, match="cannot be drawn"):
        ik.widgets.interactive_figure(draw, k=k)
    assert plt.get_fignums() == []
    k.value = 1
    assert calls == [2]  # the widget was never built: nothing redraws
    k2 = ipywidgets.IntSlider(0, 0, 3)
    out = _output_area(ik.widgets.interactive_figure(draw, k=k2))
    k2.value = 2
    assert out.outputs[0]["output_type"] == "stream" and plt.get_fignums() == []


def test_feature_map_explorer_takes_one_layer_name_and_refuses_layers_without_maps():
    """Defect: "features.0" was split into letters (KeyError 'f'), a linear layer failed in matplotlib when drawn."""
    torch.manual_seed(0)
    model = ik.models.vgg8(10, 1, width=0.25).eval()
    images = torch.rand(2, 1, 32, 32)
    box = ik.widgets.feature_map_explorer(model, images, "features.0")
    assert box.children[0].children[0].options == ("features.0",)
    with pytest.raises(
        ValueError, match=r"layer 'classifier.2' gives outputs of shape \(2, 10\), not maps"
    ):
        ik.widgets.feature_map_explorer(model, images, ["classifier.2", "features.0"])
    with pytest.raises(ValueError, match="n_channels must be a positive integer"):
        ik.widgets.feature_map_explorer(model, images, ["features.0"], n_channels=0)
    with pytest.raises(
        ValueError, match="the model's first convolution takes 1 channels but images have 3"
    ):
        ik.widgets.feature_map_explorer(model, torch.rand(2, 3, 32, 32), ["features.0"])
    assert plt.get_fignums() == []
