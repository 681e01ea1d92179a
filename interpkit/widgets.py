"""ipywidgets builders. Each returns a widget whose output area redraws a figure from ``plot``.

In the rendered book a widget has no kernel behind it, so chapters draw the default state as a
static figure first and then display the widget for readers who run the notebook.
"""
from __future__ import annotations

import traceback
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import torch
from torch import nn

from . import plot
from .capture import capture


def interactive_figure(draw: Callable[..., plt.Figure], **controls) -> "ipywidgets.Widget":
    """A box with ``controls`` (name -> ipywidgets control) above an output area showing ``draw(**values)``.

    The figure is written into the output area's ``outputs`` directly rather than displayed inside
    ``with out:``. That capture protocol makes a headless executor (nbclient, behind papermill,
    nbval and jupyter-book) send widget messages on the channel it is waiting on for the cell's
    reply, which now and then loses the reply and hangs the run (jupyter/nbclient#312). An error in
    ``draw`` is raised when the widget is built, and shown in the output area on later redraws.
    """
    import ipywidgets as w

    out = w.Output()

    def redraw(*_, initial: bool = False) -> None:
        try:
            fig = draw(**{k: c.value for k, c in controls.items()})
        except Exception:
            if initial:
                raise
            out.outputs = ({"output_type": "stream", "name": "stderr", "text": traceback.format_exc()},)
            return
        try:
            out.outputs = (_display_output(fig),)
        finally:
            plt.close(fig)

    for c in controls.values():
        c.observe(redraw, names="value")
    redraw(initial=True)
    return w.VBox([w.HBox(list(controls.values())), out])


def _display_output(obj: object) -> dict:
    """``obj`` as one ``display_data`` output, formatted as ``display(obj)`` would format it."""
    from IPython.core.interactiveshell import InteractiveShell

    data, metadata = InteractiveShell.instance().display_formatter.format(obj)
    return {"output_type": "display_data", "data": data, "metadata": metadata}


def feature_map_explorer(model: nn.Module, images: torch.Tensor, layers: Sequence[str],
                         n_channels: int = 16) -> "ipywidgets.Widget":
    """Choose a layer, an image and a first channel; shows the image and 16 of that layer's maps."""
    import ipywidgets as w

    model.eval()
    dev = next(model.parameters()).device
    with torch.no_grad(), capture(model, list(layers)) as acts:
        model(images.to(dev))
    acts = {k: v.cpu() for k, v in acts.items()}

    def draw(layer: str, image: int, first: int) -> plt.Figure:
        maps = acts[layer][image]
        first = min(first, max(0, len(maps) - n_channels))
        chans = list(range(first, min(first + n_channels, len(maps))))
        fig = plot.image_grid([images[image]] + [maps[c] for c in chans],
                              ["input"] + [f"ch {c}" for c in chans], ncols=9, size=1.1,
                              suptitle=f"{layer}: {tuple(acts[layer].shape[1:])} (channels, h, w)")
        return fig

    max_c = max(a.shape[1] for a in acts.values())
    return interactive_figure(draw,
                              layer=w.Dropdown(options=list(layers), value=layers[0], description="layer"),
                              image=w.IntSlider(0, 0, len(images) - 1, description="image"),
                              first=w.IntSlider(0, 0, max(0, max_c - 1), step=n_channels, description="channel"))
