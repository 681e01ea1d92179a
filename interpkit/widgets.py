"""ipywidgets builders. Each returns a widget whose output area redraws a figure from ``plot``.

In the rendered book a widget has no kernel behind it, so chapters draw the default state as a
static figure first and then display the widget for readers who run the notebook.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import torch
from torch import nn

from . import plot
from .capture import activations
from .checks import check_images, check_positive_int
from .device import model_device

if TYPE_CHECKING:  # imported where a widget is built
    import ipywidgets

__all__ = [
    "interactive_figure",
    "feature_map_explorer",
]


def interactive_figure(draw: Callable[..., plt.Figure], **controls) -> ipywidgets.Widget:
    """A box with ``controls`` (name -> ipywidgets control) above an output area showing
    ``draw(**values)``.

    The figure is written into the output area's ``outputs`` directly rather than displayed inside
    ``with out:``. That capture protocol makes a headless executor (nbclient, behind papermill,
    nbval and jupyter-book) send widget messages on the channel it is waiting on for the cell's
    reply, which now and then loses the reply and hangs the run (jupyter/nbclient#312). An error in
    ``draw`` (also a result that is not a figure, or a figure that fails to render) is raised when
    the widget is built, and shown in the output area on later redraws. Figures ``draw`` opened are
    closed either way.

    Args:
        draw: ``draw(**values) -> Figure``, called with the controls' values.
        **controls: ipywidgets controls by the name of ``draw``'s argument.

    Returns:
        A widget with the controls above the figure.
    """
    import ipywidgets as w

    out = w.Output()

    def redraw(*_, initial: bool = False) -> None:
        before = set(plt.get_fignums())
        fig = None
        try:
            fig = draw(**{k: c.value for k, c in controls.items()})
            if not isinstance(fig, plt.Figure):
                raise TypeError(
                    f"draw must return a matplotlib Figure, got {type(fig).__name__}; "
                    "end it with `return fig`."
                )
            output = _display_output(fig)
        except Exception:
            if initial:
                raise
            output = {"output_type": "stream", "name": "stderr", "text": traceback.format_exc()}
        finally:
            # a failed draw would leave its figure open, to be shown under the next cell that runs
            for num in set(plt.get_fignums()) - before:
                plt.close(num)
            if isinstance(fig, plt.Figure):
                plt.close(fig)
        out.outputs = (output,)

    redraw(
        initial=True
    )  # before observing: a failed first draw leaves no callbacks on the controls
    for c in controls.values():
        c.observe(redraw, names="value")
    return w.VBox([w.HBox(list(controls.values())), out])


def _display_output(obj: object) -> dict:
    """``obj`` as one ``display_data`` output, formatted as ``display(obj)`` would format it.

    IPython's formatters print an error (a bad mathtext title, say) and leave the format out; a
    format missing here is rendered again so that its error is raised.
    """
    from IPython.core.interactiveshell import InteractiveShell

    formatter = InteractiveShell.instance().display_formatter
    data, metadata = formatter.format(obj)
    for mime, f in formatter.formatters.items():
        if mime not in data and f.enabled:
            try:
                printer = f.lookup(obj)
            except KeyError:
                continue
            printer(
                obj
            )  # raises the error the formatter swallowed (None: a figure with nothing drawn)
    return {"output_type": "display_data", "data": data, "metadata": metadata}


def feature_map_explorer(
    model: nn.Module, images: torch.Tensor, layers: Sequence[str], n_channels: int = 16
) -> ipywidgets.Widget:
    """Choose a layer, an image and a first channel; shows the image and 16 of that layer's maps.

    Args:
        model: the network (run in evaluation mode on its own device; its modes are kept).
        images: float images (N, C, H, W) in [0, 1].
        layers: convolutional layer names to choose from.
        n_channels: maps shown at once.

    Returns:
        An ipywidgets widget (controls above the figure).
    """
    import ipywidgets as w

    n_channels = check_positive_int("n_channels", n_channels)
    layers = [layers] if isinstance(layers, str) else list(layers)  # one name, not its letters
    dev = model_device(model)
    check_images(images.to(dev) if isinstance(images, torch.Tensor) else images, model)
    # maps as the trained network computes them (batch-norm running statistics); the caller's
    # model keeps its modes and device
    acts = activations(model, images, layers, batch_size=len(images), device=dev)
    flat = [k for k in layers if acts[k].ndim != 4]  # acts[k] says so if a layer never ran
    if flat:
        raise ValueError(
            f"layer {flat[0]!r} gives outputs of shape {tuple(acts[flat[0]].shape)}, not maps "
            "(N, C, H, W); choose convolutional layers (e.g. 'features.0')."
        )

    def draw(layer: str, image: int, first: int) -> plt.Figure:
        maps = acts[layer][image]
        first = min(first, max(0, len(maps) - n_channels))
        chans = list(range(first, min(first + n_channels, len(maps))))
        fig = plot.image_grid(
            [images[image]] + [maps[c] for c in chans],
            ["input"] + [f"ch {c}" for c in chans],
            ncols=9,
            size=1.1,
            suptitle=f"{layer}: {tuple(acts[layer].shape[1:])} (channels, h, w)",
        )
        return fig

    max_c = max(a.shape[1] for a in acts.values())
    return interactive_figure(
        draw,
        layer=w.Dropdown(options=list(layers), value=layers[0], description="layer"),
        image=w.IntSlider(0, 0, len(images) - 1, description="image"),
        first=w.IntSlider(0, 0, max(0, max_c - 1), step=n_channels, description="channel"),
    )
