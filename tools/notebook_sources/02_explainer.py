"""Source of notebooks/02_explainer.ipynb (run: python tools/notebook_sources/02_explainer.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nbbuild import write_notebook  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

cells = [
("md", r"""
# An explainer network that disentangles a CNN's features into object parts

Q. Zhang, Y. Yang, Y. Liu, Y. N. Wu and S.-C. Zhu, "Unsupervised Learning of Neural Networks to
Explain Neural Networks", arXiv:1805.07468, 2018 (extended abstract: arXiv:1901.07538, 2019)
{cite}`zhang2018explainer`, built on the filter loss of Q. Zhang, Y. N. Wu and S.-C. Zhu,
"Interpretable Convolutional Neural Networks", CVPR 2018, pp. 8827-8836 {cite}`zhang2018icnn`.

A trained CNN (the *performer*) is explained by a second, small network (the *explainer*) that
works like an auto-encoder on one middle layer of the performer. Its encoder has two tracks: an
*interpretable* track whose filters are pushed, by the ICNN filter loss and template masks, to
fire on one object part at one position, and an *ordinary* track for whatever the parts cannot
carry. The two are mixed with a per-image weight $p \in [0, 1]$, the "ratio of interpretable
features", and a decoder maps the mix back to the performer's features of a higher layer. No part
annotations are used: the performer's own features are the only training signal. If the
reconstruction is faithful and $p$ is high, the interpretable filters are a readable paraphrase of
what the performer computes.

```{admonition} What you will learn
:class: tip
- how the ICNN filter loss (mutual information between feature maps and part templates) and the
  template mask make a filter fire on one part at one place;
- how to distil a two-track explainer from a frozen CNN, and run the rest of the CNN on the
  explainer's reconstruction to check that no discriminative information was lost;
- how to measure a filter's *location instability* (the paper's measure of part-ness) and check it
  against ground-truth part masks, which the concept world provides and real datasets do not.
```

**Run time** on a 2-core CPU: 121-149 seconds from a cold cache (the range of two fresh-clone
book builds on 2026-11-24; the performer and four explainers are trained, then cached), about 30
seconds warm; about 70 seconds in smoke mode (`INTERPKIT_SMOKE=1`). GPU: not measured yet (no GPU was available when these were taken).
"""),
("code", r"""
# Book defaults. Papermill can override these; INTERPKIT_SMOKE=1 switches to a quick run.
smoke = None        # None: read INTERPKIT_SMOKE from the environment
device = None       # None: CUDA if available, else MPS, else CPU
seed = 0
image_size = 64
n_train, n_test = 2000, 500
width = 0.25                     # channel multiplier of the performer VGG (1.0 = 32..512 channels)
performer_epochs = 4            # performer settings match the five-lenses chapter (one cached model)
input_layer = "features.3"       # the performer layer the explainer disentangles
target_layers = ["features.4"]   # the higher layer(s) it reconstructs
n_filters = None                 # interpretable filters (None: as many as the input layer has channels)
explainer_epochs = 8
explainer_lr = 2e-3
filter_weight = 0.1              # weight of the ICNN filter loss
p_weight = 0.05                  # weight of -log p
top = 100                        # top images per filter and landmark for location instability
remedy_filter_weight = 1.0       # remedy 1: ten times the paper's filter-loss weight (same epochs)
remedy_epochs = 20               # remedy 2: the paper's weight, trained longer
""", ["parameters"]),
("code", r"""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import interpkit as ik
from interpkit import explainer as E

smoke = ik.nb.smoke_mode(smoke)
if smoke:
    n_test, explainer_epochs = 300, 6     # the performer is the full run's (same data, cached)
    remedy_epochs = 1                     # smoke: the remedies only run through (one epoch each), too short to judge
torch.manual_seed(seed)
print("device:", ik.resolve_device(device), "| smoke mode:", smoke)
"""),
("md", r"""
## Data: objects with parts, one per image

The concept world ({doc}`00_concept_world`) draws synthetic scenes with exact annotations. Four of
its object classes are built from named parts (house: wall, roof, door; face: head, eyes, mouth;
car: body, window, wheels; tree: trunk, crown), and every part has a landmark (its centre, NaN
where absent) and a pixel mask. We use those four classes, one large object per image
(`single_object=True`): the performer learns to tell the four objects apart, and parts are at
varying positions and sizes in the image, which is exactly what location instability measures.
"""),
("code", r"""
world = ik.data.ConceptWorld(size=image_size, seed=seed, single_object=True,
                             object_classes=["house", "face", "car", "tree"])
train, test = world.split(n_train, n_test)
print(train, "|", len(world.part_names), "parts:", ", ".join(world.part_names))

idx = [int(i) for c in range(4) for i in torch.nonzero(test.labels == c)[:2, 0]]
fig, axes = plt.subplots(1, len(idx), figsize=(1.6 * len(idx), 1.9))
for ax, i in zip(axes, idx):
    ik.plot.overlay(ax, test.images[i], test.part_mask[i] > 0, color="white", alpha=0.25,
                    title=test.classes[int(test.labels[i])])
    lm = test.landmarks[i]
    ok = ~torch.isnan(lm[:, 0])
    ax.scatter(lm[ok, 1], lm[ok, 0], s=10, c="red", marker="o")
fig.suptitle("test images: parts tinted, landmarks in red", fontsize=10)
fig.tight_layout()
plt.show()
"""),
("md", r"""
## The performer

The performer is the compact VGG of the ClaDec chapter (eight conv + batch-norm + ReLU blocks,
stride 2 in five of them) at a quarter of its width, for 64x64 RGB input, trained through the
model cache.
"""),
("code", r"""
torch.manual_seed(seed)
performer = ik.models.vgg8(num_classes=4, in_channels=3, width=width, image_size=image_size)
performer = ik.models.train(performer, train, epochs=performer_epochs, lr=2e-3, batch_size=32, seed=seed,
                            device=device)
perf_metrics = ik.models.evaluate(performer, test, device=device)
shapes = E.layer_shapes(performer, ik.models.conv_layer_names(performer), (3, image_size, image_size))
print(f"performer test accuracy {perf_metrics['accuracy']:.3f}")
print(pd.DataFrame([{"layer": k, "channels": s[0], "size": f"{s[1]}x{s[2]}"} for k, s in shapes.items()])
      .to_string(index=False))  # NBVAL_CHECK_OUTPUT
"""),
("md", r"""
## The explainer

`E.train_explainer(performer, data, input_layer, target_layers)` builds and distils the explainer
(the performer stays frozen; its labels are not used):

| part | what we built | why |
|---|---|---|
| interpretable track | two 3x3 conv layers, each followed by ReLU and the ICNN mask $\mathrm{relu}(x \circ T_{\hat\mu}/\tau)$; the filter loss on the second | the paper's two interpretable conv-layers; the loss on the layer we read (as ICNN puts it on its top layer), which also halves its cost |
| ordinary track | one conv + BN + ReLU | the paper's single ordinary conv-layer |
| filters | as many as the input layer has channels (here 32) | the paper keeps the input's channel count |
| mixing | $x = p\,\bar x_\text{interp} + (1-p)\,\bar x_\text{ordin}$, $p = \sigma(g(f))$ from a small conv + pooling + linear head; $\bar x$: each track divided by its per-channel RMS | without this normalisation the decoder could undo $p$ by scaling one track up |
| decoder | conv-BN-ReLU, stride-2 steps down to the target size, two more convs, final ReLU | inverts the mix to the (post-ReLU) target features |
| loss | $\frac{\lVert \hat f - f\rVert^2}{E\lVert f\rVert^2} + 0.1\,\mathrm{Loss}_f + 0.05\,(-\log p)$ | scale-free distillation; weights chosen so that neither the filter loss nor $p$ buys interpretability with a large reconstruction error |
| filter loss scale | $\mathrm{Loss}_f$ sees each filter's maps rescaled to a batch-mean peak of $2n^2$ | with $\tau = 0.5/n^2$ the templates only separate images whose peaks are of order $n^2$ (true of VGG-16 conv5 in ICNN, not of our small net); rescaling judges a filter's *shape and selectivity*, not its magnitude, which the normalised mix ignores anyway |
| layers | input `features.3` (32 x 8 x 8), target `features.4` (64 x 8 x 8) | the last layer with a map large enough for part positions (8 px cells); one block up so that the reconstruction, fed through the rest of the performer, keeps its accuracy |

The filter loss is computed exactly ($-\mathrm{MI}(X;T)$ over all $n^2 + 1$ templates and the
images of the batch, in log-space) and tested against a direct transcription of the formula in
`tests/test_explainer.py`.
"""),
("code", r"""
explainer = E.train_explainer(performer, train, input_layer, target_layers, n_filters=n_filters,
                              epochs=explainer_epochs, lr=explainer_lr, filter_weight=filter_weight,
                              p_weight=p_weight, seed=seed, device=device)
history = pd.DataFrame(explainer.train_history)
fig, axes = plt.subplots(1, 3, figsize=(10, 2.6))
for ax, col, title in zip(axes, ["recon", "filter", "p"],
                          ["distillation loss (relative MSE)", "filter loss -MI (mean over filters)", "mean p"]):
    ax.plot(history["epoch"], history[col], marker="o")
    ax.set_title(title, fontsize=9), ax.set_xlabel("epoch")
fig.tight_layout()
plt.show()
history.round(4)
"""),
("md", r"""
## Explainer against performer

`E.evaluate_explainer` measures, on the test images:

- **relative error** $\lVert \hat f - f\rVert / \lVert f\rVert$ of the reconstructed layer;
- **accuracy** of the performer with that layer replaced by the reconstruction (a forward hook
  runs the rest of the performer on it), against its own accuracy;
- **ratio $p$**, averaged over images;
- **location instability** (ICNN, Sec. 4; computed like the authors' code): for each filter and
  each landmark of the object class the filter fires on most, the standard deviation, over the
  filter's 100 strongest images, of the distance between the filter's peak (mapped to the centre of
  its cell in the image) and the landmark, averaged over landmarks, divided by the image diagonal;
  lower = the filter sits on the same part of the object;
- **part IoU**, the check the paper could not make: the IoU of each filter's map, thresholded at
  its top 5% over the test set, with the best-matching ground-truth part mask.

The performer's filters compared are those of the explainer's input layer (the same layer, the
same resolution).
"""),
("code", r"""
report = E.evaluate_explainer(explainer, performer, test, top=top, device=device)
report.summary.round(4)
"""),
("code", r"""
inst = report.instability.dropna(subset=["instability"])
fig, axes = plt.subplots(1, 2, figsize=(9, 2.8))
bins = np.linspace(0, inst["instability"].max() * 1.05, 25)
for model, color in (("performer", "C1"), ("explainer", "C0")):
    axes[0].hist(inst.loc[inst.model == model, "instability"], bins=bins, alpha=0.6, color=color, label=model)
axes[0].set_title("location instability per filter (lower = more part-like)", fontsize=9)
axes[0].legend(fontsize=8)
axes[1].hist(report.p.numpy(), bins=20, color="C2")
axes[1].set_title("ratio p of interpretable features per test image", fontsize=9)
fig.tight_layout()
plt.show()
"""),
("md", r"""
## What each interpretable filter fires on

For the explainer's filters, sorted from the most to the least stable, the six test images on
which the filter fires most strongly; the red cross is the filter's peak (cell centre), the
tinted region the ground-truth part that best matches the filter over the whole test set.
Below, the same for the six most stable of the performer's own filters at that layer.
"""),
("code", r"""
maps = {"explainer": report.maps["x_interp"], "performer": report.maps["input"]}
iou = {m: report.iou[report.iou.model == m].set_index("filter") for m in maps}
stab = {m: report.instability[report.instability.model == m].set_index("filter") for m in maps}


def filter_row(axes, model, f, start=0):
    # top images of filter f (by peak activation), its peak and its best-matching part
    a = maps[model][:, f]
    order = torch.argsort(-a.flatten(1).amax(1), stable=True)[start:start + len(axes)]
    peaks = E.peak_positions(a[order, None], image_size)[:, 0]
    part = iou[model].loc[f, "part"]
    j = world.part_names.index(part)
    for ax, i, (py, px) in zip(axes, order.tolist(), peaks.tolist()):
        ik.plot.overlay(ax, test.images[i], test.part_mask[i] == j + 1, color="yellow", alpha=0.45)
        ax.plot(px, py, "r+", ms=10, mew=2)
    axes[0].set_ylabel(f"{model[:4]} f{f}\n{part} {iou[model].loc[f, 'iou']:.2f}\ninst "
                       f"{stab[model].loc[f, 'instability']:.3f}", fontsize=7)


def gallery(model, filters, n_images=6, start=0):
    fig, axes = plt.subplots(len(filters), n_images, figsize=(1.25 * n_images, 1.3 * len(filters)), squeeze=False)
    for row, f in zip(axes, filters):
        filter_row(row, model, f, start)
    fig.tight_layout()
    return fig


best_ex = stab["explainer"]["instability"].sort_values().index[:8].tolist()
best_perf = stab["performer"]["instability"].sort_values().index[:6].tolist()
fig = gallery("explainer", best_ex)
fig.suptitle("explainer: 8 most stable interpretable filters (part IoU, instability at left)", fontsize=9, y=1.01)
plt.show()
fig = gallery("performer", best_perf)
fig.suptitle(f"performer: 6 most stable filters of {input_layer}", fontsize=9, y=1.01)
plt.show()
"""),
("md", r"""
### Explore interactively

Running this notebook gives you a widget to choose a model and a filter and page through its top
images (the figures above are its default views, drawn statically for the rendered book).
"""),
("code", r"""
import ipywidgets as w


def draw(model, filt, page):
    k = maps[model].shape[1]
    f = min(filt, k - 1)
    fig, axes = plt.subplots(1, 8, figsize=(11, 1.7))
    filter_row(axes, model, f, start=8 * page)
    fig.suptitle(f"{model} filter {f}: top images {8 * page + 1}-{8 * page + 8}", fontsize=9)
    fig.tight_layout()
    return fig


ik.widgets.interactive_figure(
    draw, model=w.Dropdown(options=["explainer", "performer"], value="explainer", description="model"),
    filt=w.IntSlider(value=best_ex[0], min=0, max=maps["explainer"].shape[1] - 1, description="filter"),
    page=w.IntSlider(value=0, min=0, max=9, description="page"))
"""),
("md", r"""
### Ablation: the template mask without the filter loss

The explainer has two ingredients that could make its filters part-like: the ICNN **filter loss**
and the ICNN **template mask** (each map is cut down to a window around its own peak before it
reaches the decoder). To see which one does the work, we distil a second explainer with the same
settings and `filter_weight = 0`: the mask stays, the loss goes.
"""),
("code", r"""
mask_only = E.train_explainer(performer, train, input_layer, target_layers, n_filters=n_filters,
                              epochs=explainer_epochs, lr=explainer_lr, filter_weight=0.0, p_weight=p_weight,
                              seed=seed, device=device)
report_mask = E.evaluate_explainer(mask_only, performer, test, top=top, device=device)
ablation = pd.concat({"explainer (paper's loss)": report.summary.set_index("metric")["explainer"],
                      "explainer (mask only)": report_mask.summary.set_index("metric")["explainer"],
                      "performer": report.summary.set_index("metric")["performer"]}, axis=1)
ablation.round(4)
"""),
("md", r"""
### Two remedies: a stronger filter loss, longer training

If the filter loss is too weak, or the explainer too briefly trained, for the filters to settle on
parts, either should help. We distil two more explainers: one with ten times the paper's
filter-loss weight (`remedy_filter_weight`, same epochs) and one with the paper's weight trained
for `remedy_epochs` epochs.
"""),
("code", r"""
remedy_settings = {f"filter-loss weight {remedy_filter_weight:g}": dict(filter_weight=remedy_filter_weight,
                                                                        epochs=explainer_epochs if not smoke else 1),
                   f"{remedy_epochs} epoch{'s' * (remedy_epochs != 1)}": dict(filter_weight=filter_weight,
                                                                              epochs=remedy_epochs)}
remedy_reports = {}
for name, kw in remedy_settings.items():
    ex = E.train_explainer(performer, train, input_layer, target_layers, n_filters=n_filters, lr=explainer_lr,
                           p_weight=p_weight, seed=seed, device=device, **kw)
    remedy_reports[name] = E.evaluate_explainer(ex, performer, test, top=top, device=device)
remedies = pd.DataFrame({name: {"epochs": kw["epochs"], "filter_weight": kw["filter_weight"],
                                **r.summary.set_index("metric")["explainer"][["location_instability", "part_iou"]],
                                "mean_p": float(r.p.mean())}
                         for (name, kw), r in zip(remedy_settings.items(), remedy_reports.values())}).T
remedy_rows = remedies.copy()                 # the two remedies alone (results, table row)
remedies.loc["performer (for comparison)", ["location_instability", "part_iou"]] = \
    report.summary.set_index("metric")["performer"][["location_instability", "part_iou"]].to_numpy()
inst_perf_ref = remedies.loc["performer (for comparison)", "location_instability"]
remedy_helps = bool((remedy_rows["location_instability"] < inst_perf_ref).any())
remedies.round(4)
"""),
("code", r"""
from IPython.display import Markdown

Markdown(
    "In this run: " + "; ".join(f"{name}: location instability {r.location_instability:.4f}, part IoU {r.part_iou:.3f}"
                                for name, r in remedy_rows.iterrows())
    + f" (the performer: {inst_perf_ref:.4f}, {remedies.loc['performer (for comparison)', 'part_iou']:.3f}). "
    + ("At least one remedy makes the explainer's filters more stable than the performer's."
       if remedy_helps else "Neither remedy makes the explainer's filters more stable than the performer's.")
    + (" (Smoke mode trains the remedies for one epoch only; these numbers say nothing.)" if smoke else ""))
""", ["hide-input"]),
("md", r"""
## Checks and results

The paper's three claims are computed below. The chapter **asserts** the ones that hold in the full
and in the smoke configuration: the performer keeps its accuracy (within 3 points) when the
reconstructed layer replaces its own, and most of the explained features come through the
interpretable track ($p > 0.5$). The central claim, that the explainer's filters are more stable
than the performer's, does **not** hold with the paper's loss here; it is reported, not asserted
(see the analysis below). What does hold, in both configurations, is the ablation's finding: the
template mask alone makes the explainer's filters more stable than the performer's.
"""),
("code", r"""
s = report.summary.set_index("metric")
sm = report_mask.summary.set_index("metric")
inst_ex, inst_perf = s.loc["location_instability", "explainer"], s.loc["location_instability", "performer"]
inst_mask = sm.loc["location_instability", "explainer"]
acc_own, acc_rec = report.accuracy["performer_accuracy"], report.accuracy["reconstructed_accuracy"]
acc_rec_mask = report_mask.accuracy["reconstructed_accuracy"]
p_mean, p_mask = float(report.p.mean()), float(report_mask.p.mean())
rel_err = float(report.reconstruction["relative_error"].iloc[-1])
iou_ex, iou_perf, iou_mask = s.loc["part_iou", "explainer"], s.loc["part_iou", "performer"], sm.loc["part_iou", "explainer"]
checks = {
    "location instability: explainer < performer": bool(inst_ex < inst_perf),
    "accuracy with reconstruction within 3 points": bool(acc_own - acc_rec <= 0.03),
    "mean p > 0.5": bool(p_mean > 0.5),
    "location instability: mask-only explainer < performer": bool(inst_mask < inst_perf),
}
print(pd.Series(checks).to_string())
assert acc_own > 0.85, f"the performer should classify the four objects, got {acc_own:.3f}"
assert acc_own - acc_rec <= 0.03, f"accuracy drops by {acc_own - acc_rec:.3f} with reconstructed features"
assert p_mean > 0.5, f"mean p = {p_mean:.3f}"
assert inst_mask < inst_perf, f"mask-only explainer filters should be more stable: {inst_mask:.4f} vs {inst_perf:.4f}"
numbers = {
    "performer_accuracy": acc_own, "reconstructed_accuracy": acc_rec, "relative_error": rel_err,
    "mean_p": p_mean, "location_instability_explainer": inst_ex, "location_instability_performer": inst_perf,
    "location_instability_mask_only": inst_mask, "reconstructed_accuracy_mask_only": acc_rec_mask,
    "mean_p_mask_only": p_mask, "part_iou_explainer": iou_ex, "part_iou_performer": iou_perf,
    "part_iou_mask_only": iou_mask, "claims": checks, "input_layer": input_layer,
    "target_layers": list(target_layers), "n_train": n_train, "n_test": n_test,
    "explainer_epochs": explainer_epochs, "performer_epochs": performer_epochs, "smoke": smoke,
    "remedies": {name: {k: float(v) for k, v in r.items()} for name, r in remedy_rows.iterrows()},
}
path = ik.nb.save_results("02_explainer", numbers)
print("results written to", path.name)
"""),
("md", r"""
## Paper vs measured

The paper explains VGG, ResNet and AlexNet-style performers trained on CUB-200, Pascal-Part and
ILSVRC animal parts, and reports (i) lower location instability for the explainer's interpretable
filters than for the performer's filters of the same conv-layer, for every performer, (ii) a small
loss of discrimination power when the explainer's reconstruction replaces the performer's
features, and (iii) a ratio $p$ showing that most of the explained features are represented by
object parts. Here the performer is tiny and the images synthetic, so only the *direction* of each
claim is comparable, not its size. The part-IoU and ablation rows are checks the paper did not make.
"""),
("code", r"""
ik.nb.paper_vs_measured([
    {"claim": "interpretable filters are more stable than the performer's (location instability)",
     "paper": "lower for the explainer, every performer",
     "measured": f"{inst_ex:.4f} (explainer) vs {inst_perf:.4f} (performer)", "holds": bool(inst_ex < inst_perf)},
    {"claim": "discrimination power kept: accuracy with reconstructed features",
     "paper": "small decrease", "measured": f"{acc_rec:.3f} vs {acc_own:.3f} (rel. error {rel_err:.3f})",
     "holds": bool(acc_own - acc_rec <= 0.03)},
    {"claim": "most features explained by parts: ratio p",
     "paper": "p high (most of the features)", "measured": f"mean p = {p_mean:.3f}", "holds": bool(p_mean > 0.5)},
    {"claim": "interpretable filters match ground-truth parts (IoU, not in the paper)",
     "paper": "not measured", "measured": f"{iou_ex:.3f} (explainer) vs {iou_perf:.3f} (performer)",
     "holds": bool(iou_ex > iou_perf)},
    {"claim": "remedies: 10x filter-loss weight, or longer training, make the explainer more stable (not in the paper)",
     "paper": "not measured",
     "measured": "; ".join(f"{name}: {r.location_instability:.4f}" for name, r in remedy_rows.iterrows())
                 + f" vs performer {inst_perf:.4f}",
     "holds": remedy_helps},
    {"claim": "ablation: template mask without the filter loss (not in the paper)",
     "paper": "not measured",
     "measured": f"instability {inst_mask:.4f}, part IoU {iou_mask:.3f}, p {p_mask:.3f}, accuracy {acc_rec_mask:.3f}",
     "holds": bool(inst_mask < inst_perf)},
])
"""),
("md", r"""
**Analysis.** Two of the paper's three claims hold: the reconstruction keeps the performer's
accuracy, and more than half of the explained features pass through the interpretable track. The
central one does not: with the paper's filter loss the explainer's filters are *less* stable than
the performer's own, and they overlap the true parts less. The two obvious remedies, a ten times
stronger filter loss and longer training, are measured above: the remedies section and the
table's "remedies" row say whether either makes the explainer's filters more stable than the
performer's in this run (in the book's full run, neither does).

The ablation locates the problem. Without the filter loss the same explainer's filters are clearly
*more* stable than the performer's and match parts better, so the template mask and the
distillation already produce part-like filters; the filter loss, as we apply it, pulls them away.
Our reading, not a proof. $\mathrm{MI}(X;T)$ is largest when every image's map matches one
template and the peaks of a filter are spread over the positions as the prior $p(T_\mu)$ asks, so
the loss rewards *one place per image*, not *the same part in every image*; in ICNN the part comes
from the classification loss acting through filters trained jointly with it, which distillation to
a higher layer does not supply. Moreover, the loss is computed over a batch that mixes four object
classes, and the cheapest way to raise it is to make a filter fire on a subset of the *images*
(the negative template takes the others) rather than at a consistent *place on the object*; ICNN
trains one filter set per category, or for many more epochs on a 512-channel VGG-16 layer, where
that shortcut costs more. The paper also leaves open how the loss is scaled for a network whose
maps are not of order $n^2$ (our `rescale_maps`; see the table of choices above), and a different
choice may change the result. Readers with CUB-200 or Pascal-Part can run the same code on a real
performer through `E.train_explainer`.
"""),
("md", r"""
## Exercises

1. **Which layer?** Re-run with `input_layer = "features.2"` (16x16 maps) and
   `target_layers = ["features.3"]`. Do finer maps give more stable interpretable filters? What
   happens to the accuracy with reconstructed features?
2. **Switch the mask off.** The ablation removed the filter loss. Build an `E.Explainer` whose
   mask is the identity (`explainer.mask = torch.nn.Identity()` before training, via your own
   loop over `E.training_step`). Does the stability come from the mask or from the distillation?
3. **The price of $p$.** Raise `p_weight` to 0.5. The ratio $p$ goes up; does the reconstruction
   (and the performer's accuracy on it) pay for it?
4. **Instability against IoU.** Plot each filter's location instability against its part IoU
   (`report.instability` and `report.iou`). Are the most stable filters the ones that match a part?
   Find a filter that is stable but matches no part, and look at its top images with the widget.
5. **For teachers.** The paper measures part-ness without ground truth. Ask students to argue, from
   the IoU column, whether location instability is a good proxy on this data.
"""),
]

if __name__ == "__main__":
    print(write_notebook(ROOT / "notebooks" / "02_explainer.ipynb", cells))
