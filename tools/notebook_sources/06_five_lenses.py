"""Source of notebooks/06_five_lenses.ipynb (run: python tools/notebook_sources/06_five_lenses.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nbbuild import write_notebook  # noqa: E402

cells = [
("md", r"""
# Five lenses on one network

The five paper chapters each looked at a network through one method. This closing chapter points
all five at **the same CNN, at the same two layers**, and checks what each finds against the
concept world's ground truth (every pixel of every image is labelled with its object class, part,
colour and texture). Network Dissection {cite}`bau2017dissection` names the units that detect a
colour, a part or an object; the coupled factorisation of Saini and Papalexakis
{cite}`saini2020analyzing` groups images, units and pixels into concepts; input resampling
{cite}`lengerich2017resampling` picks the neurons that matter for one decision; ClaDec
{cite}`schneider2021cladec` decodes what a layer keeps of the image; and the explainer network of
Zhang et al. {cite}`zhang2018explainer`, built on the filter loss of interpretable CNNs
{cite}`zhang2018icnn`, distils the layer into part-like filters. Because the world's factors are
known, we can ask where the methods agree with each other and with the truth, and where they do not.

```{admonition} What you will learn
:class: tip
- how to run all five methods of this book on one model with one probe set, and how their outputs
  (units, concepts, selected neurons, reconstructions, filters) connect;
- which question each method answers, and which it cannot;
- how to test a cross-method claim honestly: only when each method passed its own check in the run,
  against an activation-matched baseline, with every choice fixed before looking, over several seeds;
- which method to reach for when you want to know *what* a unit detects, *which* units a decision
  uses, *what* a layer keeps, or *whether* parts can be disentangled.
```

**Run time** on a 2-core CPU: about a minute from a cold cache (one classifier, two ClaDec
decoders and one explainer are trained, then cached; 60 s measured alone, 37-45 s in two
fresh-clone book builds on 2026-11-24, where the classifier comes from chapter 2), less warm; about
25 seconds in smoke mode (`INTERPKIT_SMOKE=1`). GPU: not measured yet (no GPU was available when these were taken).
"""),
("code", r"""
# Book defaults. Papermill can override these; INTERPKIT_SMOKE=1 switches to a quick run.
smoke = None            # None: read INTERPKIT_SMOKE from the environment
device = None           # None: CUDA if available, else MPS, else CPU
seed = 0
image_size = 64         # concept-world image side (parts need >= 64 px to be more than a few pixels)
object_classes = ["house", "face", "car", "tree"]   # the four classes built from named parts
n_train, n_test = 2000, 500
epochs, lr = 4, 2e-3
width = 0.25            # channel multiplier of the ClaDec authors' VGG (1.0 = 32..512 channels)
layers = ["features.2", "features.4"]   # 16x16x32 and 8x8x64 maps at 64 px (see lens 1 for why)
explainer_target = "features.6"        # the higher layer the explainer reconstructs (4x4x128)
n_fit = 500             # training images for the ClaDec decoders and the explainer (a subset of train)
rank = 8                # NMF concepts
n_iter = 50
n_resample = 40         # test images explained by input resampling
n_copies = 50           # perturbed copies per image (the paper's N)
top_k = 5               # neurons selected per layer and image (resampling) or per concept (NMF)
cladec_epochs = 4
cladec_width = 0.25      # decoder channel multiplier (1.0 = the authors' decoder)
explainer_epochs = 6
explainer_filters = 32
quantile = 0.005        # Network Dissection's top quantile (the paper's, fixed)
n_match = 5             # activation-matched baseline: the n_match channels closest in mean activation
n_seeds = 3             # seeds of the NMF claims in the full run (smoke mode: 1)
cladec_max_relative_mse = 0.8   # ClaDec's own check: its reconstructions beat the mean image by 20%
""", ["parameters"]),
("code", r"""
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import interpkit as ik
from interpkit import cladec, clustering, dissection, explainer, resampling

smoke = ik.nb.smoke_mode(smoke)
if smoke:
    n_train, n_test, epochs, n_fit = 1200, 200, 2, 200
    n_iter, n_resample, n_copies = 20, 24, 30
    cladec_epochs, explainer_epochs, explainer_filters = 1, 2, 16
torch.manual_seed(seed)
timings, t_start = {}, time.perf_counter()
print("device:", ik.resolve_device(device), "| smoke mode:", smoke)
"""),
("md", r"""
## One world, one network

A single large object per image makes the object class a clean classification target, while its
colour, texture and the background scene vary independently. The four classes are the ones built
from named parts (house: wall, roof, door; face: head, eyes, mouth; car: body, window, wheels;
tree: trunk, crown), so the part-level lenses have something to find. The network is the ClaDec
authors' eight-block VGG at a quarter of the width, trained through the shared model cache. The
probe set for every method is the test split: the same images, in the same order, for all five.
"""),
("code", r"""
t0 = time.perf_counter()
world = ik.data.ConceptWorld(size=image_size, seed=seed, single_object=True, object_classes=object_classes)
train, test = world.split(n_train, n_test)
torch.manual_seed(seed)
model = ik.models.vgg8(num_classes=len(world.object_names), in_channels=3, width=width, image_size=image_size)
model = ik.models.train(model, train, epochs=epochs, lr=lr, batch_size=32, seed=seed, device=device)
model = ik.models.freeze(model)          # eval mode, no gradients: every method sees the same network
metrics = ik.models.evaluate(model, test, device=device)
timings["classifier"] = time.perf_counter() - t0
print(f"test accuracy {metrics['accuracy']:.3f} over {len(world.object_names)} classes "
      f"(chance {1 / len(world.object_names):.2f})")
fig = ik.plot.image_grid(test.images[:8], [world.object_names[int(y)] for y in test.labels[:8]], ncols=8,
                         size=1.3)
plt.show()
"""),
("code", r"""
def dominant(mask: torch.Tensor) -> np.ndarray:
    # the most frequent non-zero label per image, minus one (the object's body colour / texture)
    m = mask.flatten(1)
    counts = torch.nn.functional.one_hot(m, int(m.max()) + 1).sum(1)[:, 1:]
    return counts.argmax(1).numpy()

# ground-truth factors of every test image
truth = pd.DataFrame({"object": [world.object_names[int(v)] for v in test.labels],
                      "colour": [world.color_names[v] for v in dominant(test.color_mask)],
                      "texture": [world.texture_names[v] for v in dominant(test.texture_mask)],
                      "scene": [world.scene_names[int(v)] for v in test.scene]})
truth.head()
"""),
("md", r"""
## Lens 1: Network Dissection, what does each unit detect?

Every unit is scored against every labelled concept of the probe set (as a Broden dataset): its
top-0.5% activation region is compared with each concept's pixel mask, and a unit whose best IoU
reaches 0.04 is a *detector* of that concept. This is the only one of the five methods that reads
the annotations, so its labels serve as the reference the other lenses are compared with.

Dissection is cheap, so we run it on all eight blocks first, to see where the detectors are. The
other lenses then look at two mid-level blocks, `features.2` and `features.4` (the `layers`
parameter), whose maps (16x16 and 8x8 at 64 px) are still large enough for the pixel-level
comparisons; the text under the table says what dissection finds there in this run.
"""),
("code", r"""
t0 = time.perf_counter()
broden = world.as_broden(n_test, start=n_train)            # the test split, as a Broden dataset
dis_all = dissection.dissect(model, broden, ik.models.conv_layer_names(model), quantile=quantile, device=device,
                             progress=False)
dis = {l: dis_all[l] for l in layers}
timings["dissection"] = time.perf_counter() - t0
block_summary = dissection.summarize(dis_all)
block_summary
"""),
("code", r"""
from IPython.display import Markdown, display

def detector_words(row):
    # "3 detectors (unique concepts: 1 colour, 2 part)" for one row of the summary
    kinds = [f"{int(row[f'unique_{c}'])} `{c}`" for c in ("color", "object", "part", "texture", "scene")
             if row[f"unique_{c}"] > 0]
    n = int(row["detectors"])
    return f"{n} detector unit{'s' * (n != 1)}" + (f" (unique concepts: {', '.join(kinds)})" if kinds else "")

by_layer = block_summary.set_index("layer")
part_blocks = by_layer.index[by_layer["unique_part"] > 0].tolist()
Markdown(f"In this run the {len(by_layer)} blocks hold "
         + ", ".join(f"{int(n)}" for n in by_layer["detectors"]) + " detector units (blocks 0 to "
         f"{len(by_layer) - 1}). The chapter's layers: " + "; ".join(f"`{l}` {detector_words(by_layer.loc[l])}"
                                                           for l in layers)
         + ". " + (f"The first part detectors appear in `{part_blocks[0]}`." if part_blocks
                   else "No block has a part detector."))
""", ["hide-input"]),
("code", r"""
def label_ids(result: dissection.DissectionResult) -> dict[tuple[str, str], int]:
    # (category, name) -> column of the IoU matrix
    return {(r.category, r.name): int(r.label) for r in result.labels.itertuples()}

ids = label_ids(dis[layers[0]])
units = pd.concat([dis[l].units.assign(layer=l) for l in layers], ignore_index=True)
detector_rate = {l: float(dis[l].units["detector"].mean()) for l in layers}
fig, axes = plt.subplots(1, len(layers), figsize=(5 * len(layers), 2.8), sharey=True)
for ax, l in zip(np.atleast_1d(axes), layers):
    per = dis[l].detectors_per_category().set_index("category")["detectors"]
    ax.bar(per.index, per.values, color="tab:blue")
    ax.set(title=f"{l}: {dis[l].num_detectors()} of {dis[l].num_units} units are detectors", ylabel="detector units")
fig.tight_layout()
plt.show()
units[units["detector"]].sort_values("iou", ascending=False).groupby("layer").head(6).round(3)
"""),
("md", r"""
## Lens 2: the coupled factorisation, which concepts group the images?

The activation matrices of both layers (every channel at every position is a row) and the three
pixel matrices share one example factor $F$ with `rank` (8) concepts. Each concept is judged
against the ground truth by its *purity* for each factor (object class, colour, texture, scene):
the F-weighted share of its most frequent value, next to that value's share among all images
(chance).
"""),
("code", r"""
t0 = time.perf_counter()
probe = test
acts = clustering.activation_matrices(model, probe, layers, batch_size=200, device=device)
pix = clustering.pixel_matrices(probe)
nmf = clustering.coupled_nmf(acts, pix, rank, n_iter=n_iter, seed=seed, device=device)
timings["clustering"] = time.perf_counter() - t0
factors = {"object": probe.labels.numpy(), "colour": dominant(probe.color_mask),
           "texture": dominant(probe.texture_mask), "scene": probe.scene.numpy()}
names = {"object": world.object_names, "colour": world.color_names, "texture": world.texture_names,
         "scene": world.scene_names}
purity = clustering.factor_purity(nmf, factors, names)
obj = purity[purity["factor"] == "object"].set_index("concept")
clustering.purity_summary(nmf, factors).round(3)
"""),
("md", r"""
**Do the concepts' neurons coincide with the dissection detectors?** A concept's weight on a
channel is its loading $O_{\ell}[m, r]$ summed over that channel's positions. Every live concept is
paired with every factor (object, colour, texture, scene), each represented by its most frequent
value among the concept's images; no pair is chosen by how well it turns out. We take the concept's
top `top_k` (5) channels per layer and ask how well they segment that value according to Network
Dissection (their IoU with its masks), and how many of them are dissection *detectors* of that
value. The baseline is matched: a factorisation of activations favours strongly active channels, and
strongly active channels also have larger masks, so each top channel is compared with the `n_match`
(5) other channels of its layer whose mean activation over the probe set is closest to its own.
"""),
("code", r"""
def channel_loadings(result, layer: str) -> np.ndarray:
    # (channels, R): each concept's loading summed over the positions of a channel
    c, h, w = result.shapes[layer]
    return result.O[layer].double().numpy().reshape(c, h * w, -1).sum(1)


def matched(mean_act: np.ndarray, chosen: np.ndarray, k: int = n_match) -> np.ndarray:
    # (len(chosen), k): for each chosen channel, the k other channels closest to it in mean activation
    free = np.setdiff1d(np.arange(len(mean_act)), chosen)
    return np.stack([free[np.argsort(np.abs(mean_act[free] - mean_act[c]), kind="stable")[:k]] for c in chosen])


category_of = {"object": "object", "colour": "color", "texture": "texture", "scene": "scene"}


def nmf_alignment(nmf, purity, acts, dis, ids) -> pd.DataFrame:
    # one row per (layer, live concept, factor): IoU and detector count of the concept's top channels
    # with the factor's top value, next to the same for activation-matched channels
    live = purity[purity["mass"] > 0]
    rows = []
    for layer in layers:
        load, iou, det = channel_loadings(nmf, layer), dis[layer].iou, dis[layer].units
        c, h, w = acts.shapes[layer]
        mean_act = np.asarray(acts[layer], dtype=np.float64).reshape(c, h * w, -1).mean((1, 2))
        for d in live.itertuples():
            top = np.argsort(-load[:, d.concept], kind="stable")[:top_k]
            j = ids[(category_of[d.factor], d.top_value)]
            is_det = (det["detector"] & (det["label_id"] == j)).to_numpy()
            m = matched(mean_act, top)
            rows.append({"layer": layer, "concept": d.concept, "factor": d.factor, "value": d.top_value,
                         "purity": d.purity, "lift": d.lift,
                         "top_iou": float(iou[top, j].mean()), "matched_iou": float(iou[m, j].mean()),
                         "all_iou": float(iou[:, j].mean()),
                         "top_detectors_of_value": int(is_det[top].sum()),
                         # the count expected for top_k channels, each drawn from its matched channels
                         "matched_detectors_of_value": float(is_det[m].mean(1).sum()),
                         "top_channels": top.tolist()})
    return pd.DataFrame(rows)


def nmf_sane(nmf, purity) -> bool:
    # the factorisation's own check: the fit improved on its start and at least two concepts are alive
    h = nmf.history["relative_error"]
    return bool(h.iloc[-1] < h.iloc[0] and h.iloc[-1] < 1 and (purity.groupby("concept")["mass"].max() > 0).sum() >= 2)


align = nmf_alignment(nmf, purity, acts, dis, ids)
nmf_ok = nmf_sane(nmf, purity)
nmf_top_iou, nmf_matched_iou = float(align["top_iou"].mean()), float(align["matched_iou"].mean())
nmf_all_iou = float(align["all_iou"].mean())
nmf_wins = float((align["top_iou"] > align["matched_iou"]).mean())
nmf_hits, nmf_hits_random = int(align["top_detectors_of_value"].sum()), float(align["matched_detectors_of_value"].sum())
print(f"NMF check passed: {nmf_ok}")
print(f"IoU of each concept's top channels with each factor's top value {nmf_top_iou:.4f} vs activation-matched "
      f"channels {nmf_matched_iou:.4f} (all channels {nmf_all_iou:.4f}); top channels ahead for {100 * nmf_wins:.0f}% "
      f"of (concept, factor, layer) triples")
print(f"detectors of the value among the top channels: {nmf_hits} (matched channels: {nmf_hits_random:.2f})")
align.drop(columns="top_channels").round(4)
"""),
("md", r"""
## Lens 3: input resampling, which neurons drive one decision?

For each of the first `n_resample` (40) test images, `n_copies` (50) noisy copies go through the
network; a channel's *correlation* score is how strongly its activation follows the predicted
class's probability over the copies, its *precision* how stable it is. The top
`top_k` (5) channels per layer and image are then looked up in the dissection table: are
they detectors, and in particular detectors of a concept that is actually in this image? The baseline
("chance" columns) is matched: for each selected channel, the same quantity averaged over the
`n_match` channels of the layer whose mean activation on that image is closest to its own.
"""),
("code", r"""
t0 = time.perf_counter()
rs = resampling.analyze(model, test.images[:n_resample], layers, n=n_copies, device=device, keep_maps=False)
timings["resampling"] = time.perf_counter() - t0

def present_concepts(i: int) -> set[tuple[str, str]]:
    # (category, name) of every concept visible in test image i
    m = test.masks(i)
    out = {("scene", world.scene_names[int(test.scene[i])])}
    for cat, key, nm in (("object", "object", world.object_names), ("part", "part", world.part_names),
                         ("color", "color", world.color_names), ("texture", "texture", world.texture_names)):
        out |= {(cat, nm[int(v) - 1]) for v in torch.unique(m[key]) if int(v) > 0}
    return out

present = {i: present_concepts(i) for i in range(n_resample)}
is_det = {l: dis[l].units["detector"].to_numpy() for l in layers}
det_key = {l: list(zip(dis[l].units["category"], dis[l].units["label"])) for l in layers}

# each channel's mean activation on each explained image, for the activation-matched baseline
mact = {(img, l): g.sort_values("channel")["mean_activation"].to_numpy()
        for (img, l), g in rs.scores.groupby(["image", "layer"])}

def detector_rates(sel: pd.DataFrame) -> dict[str, float]:
    # detector flags and IoUs of the selected channels, next to the same averages over the n_match channels
    # whose mean activation on that image is closest to each selected channel's ("chance" columns)
    acc = dict.fromkeys(["detector", "present_detector", "iou", "present_iou"], 0.0)
    base = dict.fromkeys(acc, 0.0)
    for img, layer, ch in sel[["image", "layer", "channel"]].itertuples(index=False):
        d, keys, iou = is_det[layer], det_key[layer], dis[layer].iou
        cols = [ids[k] for k in present[img]]
        stats = {"detector": d.astype(float),
                 "present_detector": np.array([d[c] and keys[c] in present[img] for c in range(len(d))], float),
                 "iou": iou[:, 1:].max(1),                 # best IoU over all concepts
                 "present_iou": iou[:, cols].max(1)}       # best IoU over the concepts in this image
        for k, v in stats.items():
            acc[k] += v[ch]
            base[k] += v[matched(mact[img, layer], np.array([ch]))[0]].mean()
    n = max(len(sel), 1)
    out = {"selected": len(sel)}
    for k in acc:
        out[f"{k}_rate" if "detector" in k else f"mean_{k}"] = acc[k] / n
        out[f"chance_{k}_rate" if "detector" in k else f"chance_{k}"] = base[k] / n
    return out

rs_table = pd.DataFrame({m: detector_rates(rs.top_k(m, top_k)) for m in resampling.METRICS}).T
rs_table.index.name = "selected by"
rs_table.round(3)
"""),
("md", r"""
`mean_activation` and `weight_norm` are baselines that need no resampling: a channel that fires
strongly on this image, or one with large weights. The paper's two statistics should be compared
with them, not only with chance. The two paper statistics also disagree with each other, as the
input-resampling chapter found:
"""),
("code", r"""
rs.overlap(top_k, "correlation", "precision")[["dice", "chance_dice"]].mean().round(3)
"""),
("md", r"""
## Lens 4: ClaDec, what does each layer keep of the image?

A decoder per layer learns to turn the frozen classifier's activations back into the input image.
What the layer discards cannot come back. Besides the reconstruction error (relative to always
predicting the mean training image), the ground truth lets us ask a sharper question: is the
object's **colour** still decodable? We look at the reconstruction inside the true object
mask: each pixel painted in the object's body colour is named by the nearest palette colour
(either shade of a texture), and a majority vote over those pixels names the object's colour.
"""),
("code", r"""
t0 = time.perf_counter()
fit = train.subset(torch.arange(n_fit))
# batch 32 and lr 1e-3 (the authors: 128 and 3e-4) give the small decoders enough steps on few images
decoders = {l: cladec.train_cladec(model, l, fit, epochs=cladec_epochs, lr=1e-3, batch_size=32, width=cladec_width,
                                   seed=seed, device=device, progress=False) for l in layers}
recon = {l: cladec.reconstruct(d, test.images, device=device) for l, d in decoders.items()}
timings["cladec"] = time.perf_counter() - t0

shades = torch.as_tensor(world.color_table).reshape(-1, 3)       # row 2c + s: colour c, shade s
true_colour = torch.as_tensor(dominant(test.color_mask))
body = test.color_mask == (true_colour + 1)[:, None, None]          # pixels painted in the body colour

def colour_accuracy(images: torch.Tensor) -> float:
    # each body pixel is named by its nearest palette shade; the image's colour is the majority vote
    hits = 0
    for img, region, c in zip(images, body, true_colour):
        px = img.permute(1, 2, 0)[region]
        named = torch.cdist(px, shades).argmin(1) // 2
        hits += int(torch.bincount(named, minlength=len(world.color_names)).argmax() == c)
    return hits / len(images)

base_mse = cladec.mean_image_mse(train, test)
cladec_table = pd.DataFrame([{"layer": "(original image)", "relative_mse": 0.0,
                              "colour_accuracy": colour_accuracy(test.images)}] +
                            [{"layer": l, "relative_mse": float(((r - test.images) ** 2).mean()) / base_mse,
                              "colour_accuracy": colour_accuracy(r),
                              "colour_detectors": int(dis[l].detectors_per_category()
                                                      .set_index("category").loc["color", "detectors"])}
                             for l, r in recon.items()])
print(f"chance colour accuracy {1 / len(world.color_names):.3f}")
cladec_table.round(3)
"""),
("code", r"""
show = torch.arange(8)
grid = torch.cat([test.images[show]] + [recon[l][show] for l in layers])
fig = ik.plot.image_grid(grid, ncols=len(show), size=1.2, row_labels=["original"] + [f"ClaDec {l}" for l in layers])
plt.show()
"""),
("md", r"""
## Lens 5: the explainer, can the layer be disentangled into parts?

An explainer network is distilled from the features of the deeper of the two layers: its
interpretable filters are trained with the ICNN filter loss to fire at one place, and together with
an ordinary track it must reconstruct the performer's features of the next stride-1 block
(`explainer_target`). No annotation is used. We compare the
IoU of each filter's thresholded map with its best-matching part mask for the explainer's filters
and for the performer's own channels of the same layer, and then dissect the explainer's filters
like the performer's units.
"""),
("code", r"""
t0 = time.perf_counter()
ex = explainer.train_explainer(model, fit, layers[-1], explainer_target, n_filters=explainer_filters,
                               hidden=64, epochs=explainer_epochs, seed=seed, device=device, progress=False)
report = explainer.evaluate_explainer(ex, model, test, device=device)
ex_maps = explainer.explainer_maps(ex, model, broden.images_batch(range(n_test)), device=device)["x_interp"]
dis_ex = dissection.dissect(ex_maps, broden, "explainer filters", device=device, progress=False)
timings["explainer"] = time.perf_counter() - t0
part_iou = report.iou.groupby("model")["iou"].mean()
part_detectors = {"explainer filters": int((dis_ex.units["detector"] & (dis_ex.units["category"] == "part")).sum()),
                  f"performer {layers[-1]}": int((dis[layers[-1]].units["detector"]
                                                   & (dis[layers[-1]].units["category"] == "part")).sum())}
print("mean part IoU:", part_iou.round(4).to_dict(), "| part detectors:", part_detectors)
report.summary.round(4)
"""),
("md", r"""
## One unit through the lenses

The unit-level lenses can be read together, one unit at a time: what Network Dissection calls it,
how often input resampling picked it (share of the explained images where it was among the top
`top_k` by correlation), and which NMF concept loads most on it, named by that concept's dominant
factor (named by its most frequent object class). The figure shows the unit's six strongest test images with its thresholded activation
region (the region Network Dissection compares with the masks). Below: the unit with the highest
IoU; running the notebook gives a selector for any unit.
"""),
("code", r"""
unit_maps = {l: acts[l].T.reshape(len(test), *acts.shapes[l]) for l in layers}     # (N, C, h, w)
picked = rs.top_k("correlation", top_k)

def unit_table(layer: str) -> pd.DataFrame:
    u = dis[layer].units[["unit", "label", "category", "iou", "detector"]].copy()
    counts = picked.loc[picked["layer"] == layer, "channel"].value_counts()
    u["picked_by_resampling"] = u["unit"].map(counts).fillna(0).to_numpy() / n_resample
    u["nmf_concept"] = channel_loadings(nmf, layer).argmax(1)
    u["concept_is"] = [f"object = {object_of.loc[r, 'top_value']}" if r in object_of.index else "(dead)"
                       for r in u["nmf_concept"]]
    return u.set_index("unit")

object_of = purity[(purity["factor"] == "object") & (purity["mass"] > 0)].set_index("concept")
unit_tables = {l: unit_table(l) for l in layers}

def draw_unit(layer: str, unit: int) -> plt.Figure:
    unit = min(unit, len(unit_tables[layer]) - 1)
    row = unit_tables[layer].loc[unit]
    top = dissection.top_images(unit_maps[layer], unit, k=6)
    masks = dissection.upsample_masks(unit_maps[layer][top, unit], float(dis[layer].thresholds[unit]),
                                      test.image_size)
    fig, axes = plt.subplots(1, len(top), figsize=(1.6 * len(top), 2.3))
    for ax, i, m in zip(axes, top, masks):
        ik.plot.overlay(ax, test.images[i], m, title=f"{truth.loc[i, 'colour']} {truth.loc[i, 'object']}")
    fig.suptitle(f"{layer} unit {unit}: dissection '{row['label']}' ({row['category']}, IoU {row['iou']:.3f}"
                 f"{', detector' if row['detector'] else ''})\npicked by resampling for "
                 f"{100 * row['picked_by_resampling']:.0f}% of images; top NMF concept {row['nmf_concept']} "
                 f"({row['concept_is']})", fontsize=8)
    fig.tight_layout()
    return fig

best_layer, best_unit = units.sort_values("iou", ascending=False)[["layer", "unit"]].iloc[0]
draw_unit(best_layer, int(best_unit))
plt.show()
unit_tables[best_layer].sort_values("iou", ascending=False).head(8).round(3)
"""),
("code", r"""
import ipywidgets as widgets

ik.widgets.interactive_figure(
    draw_unit, layer=widgets.Dropdown(options=layers, value=best_layer, description="layer"),
    unit=widgets.IntSlider(int(best_unit), 0, max(len(t) for t in unit_tables.values()) - 1, description="unit"))
"""),
("md", r"""
## The five lenses side by side

One row per method: the question it answers, how its answer was checked against the world's
ground truth here, the measured value, the matching chance or baseline value, and whether the
method beats that baseline.
"""),
("code", r"""
rs_corr = rs_table.loc["correlation"]
cl0 = cladec_table.set_index("layer")
chance = 1 / len(world.object_names)
ex_acc = report.accuracy
# each method's own check in this run; an agreement is only tested when every method in it passed
gates = {
    "classifier": bool(metrics["accuracy"] > chance + 0.2),
    "Network Dissection": bool(sum(dis[l].num_detectors() for l in layers) > 0),
    "coupled NMF": nmf_ok,
    "input resampling": bool((~rs.images["output_constant"]).mean() >= 0.5),
    "ClaDec": bool(cladec_table["relative_mse"].iloc[1:].max() < cladec_max_relative_mse),
    "explainer": bool(ex_acc["reconstructed_accuracy"] - chance >= 0.5 * (ex_acc["performer_accuracy"] - chance) > 0),
}
gate_rules = {
    "classifier": f"test accuracy {metrics['accuracy']:.3f} > chance + 0.2",
    "Network Dissection": "at least one detector in the chapter's layers",
    "coupled NMF": f"relative error fell ({nmf.history['relative_error'].iloc[0]:.3f} -> "
                   f"{nmf.history['relative_error'].iloc[-1]:.3f}) and >= 2 live concepts",
    "input resampling": "the output varies over the copies for at least half of the images",
    "ClaDec": f"relative MSE {', '.join(f'{v:.2f}' for v in cladec_table['relative_mse'].iloc[1:])} "
              f"< {cladec_max_relative_mse}",
    "explainer": f"performer accuracy with the explainer's reconstruction {ex_acc['reconstructed_accuracy']:.3f} keeps "
                 f"at least half of the performer's margin over chance ({ex_acc['performer_accuracy']:.3f})",
}
display(pd.DataFrame({"rule": gate_rules, "passed": gates}))
colour_det = {l: int(dis[l].detectors_per_category().set_index("category").loc["color", "detectors"]) for l in layers}
more, fewer = sorted(layers, key=lambda l: (-colour_det[l], layers.index(l)))   # more colour detectors first
summary = pd.DataFrame([
    {"method": "Network Dissection", "question": "what concept does each unit detect?",
     "check": "share of units that are detectors (IoU >= 0.04)", "measured": float(units["detector"].mean()),
     "baseline": np.nan, "reference": "annotations are its input", "needs": ["Network Dissection"]},
    {"method": "coupled NMF", "question": "which concepts group images, units and pixels?",
     "check": "object purity of concepts (mean)", "measured": float(obj.loc[obj["mass"] > 0, "purity"].mean()),
     "baseline": float(obj.loc[obj["mass"] > 0, "chance"].mean()), "reference": "object labels", "needs": ["coupled NMF"]},
    {"method": "coupled NMF", "question": "... do its neurons segment the concept?",
     "check": "IoU of top channels with each factor's top value vs activation-matched channels", "measured": nmf_top_iou,
     "baseline": nmf_matched_iou, "reference": "Network Dissection", "needs": ["coupled NMF", "Network Dissection"]},
    {"method": "coupled NMF", "question": "... are its neurons the dissection detectors?",
     "check": "detectors of each factor's top value among top channels vs activation-matched channels", "measured": float(nmf_hits),
     "baseline": nmf_hits_random, "reference": "Network Dissection", "needs": ["coupled NMF", "Network Dissection"]},
    {"method": "input resampling", "question": "which neurons drive this decision?",
     "check": "correlation-selected channels that are detectors vs activation-matched channels", "measured": rs_corr["detector_rate"],
     "baseline": rs_corr["chance_detector_rate"], "reference": "Network Dissection", "needs": ["input resampling", "Network Dissection"]},
    {"method": "input resampling", "question": "... that see what is in this image?",
     "check": "best IoU over the image's concepts, correlation-selected channels",
     "measured": rs_corr["mean_present_iou"], "baseline": rs_corr["chance_present_iou"],
     "reference": "Network Dissection + masks", "needs": ["input resampling", "Network Dissection"]},
    {"method": "ClaDec", "question": "what does the layer keep of the input?",
     "check": f"object colour decodable from {layers[0]} vs chance",
     "measured": float(cl0.loc[layers[0], "colour_accuracy"]),
     "baseline": 1 / len(world.color_names), "reference": "colour labels", "needs": ["ClaDec"]},
    {"method": "ClaDec", "question": "... where dissection finds colour units?",
     "check": f"colour accuracy: {more} ({colour_det[more]} colour detectors) vs {fewer} ({colour_det[fewer]})",
     "measured": float(cl0.loc[more, "colour_accuracy"]), "baseline": float(cl0.loc[fewer, "colour_accuracy"]),
     "reference": "Network Dissection + colour labels", "needs": ["ClaDec", "Network Dissection"]},
    {"method": "explainer", "question": "can the layer be split into part filters?",
     "check": "mean part IoU: explainer filters vs performer channels",
     "measured": float(part_iou.get("explainer", np.nan)), "baseline": float(part_iou.get("performer", np.nan)),
     "reference": "part masks", "needs": ["explainer"]},
])
# an agreement is tested only when every method it involves passed its own check in this run
summary["tested"] = [bool(all(gates[m] for m in need) and gates["classifier"]) for need in summary["needs"]]
summary["agrees"] = [None if (np.isnan(b) or not t) else bool(m > b)
                     for m, b, t in zip(summary["measured"], summary["baseline"], summary["tested"])]
summary = summary.drop(columns="needs")
summary.round(4)
"""),
("md", r"""
## What the methods agree on

Each agreement above was tested only if every method in it passed its own check in this run (the
`gates` table); otherwise its `agrees` entry is empty. The two agreements that tie the unsupervised
factorisation to Network Dissection (two methods that never see each other's output, one built
without labels and one built on them) are measured over `n_seeds` (3) seeds in the full run (one in
smoke mode): each extra seed trains its own classifier on its own world and repeats the dissection
and the factorisation.

1. **NMF concepts segment what they stand for.** The channels a concept loads on most segment its
   factors' values better than activation-matched channels of the same layer do.
2. **NMF concepts load on the detectors.** Among a concept's top channels there are more Network
   Dissection detectors of those values than among activation-matched channels.

The other agreements are reported for this run only, with their gates: input resampling's picks
against the detectors, ClaDec's colour against the colour detectors, and the explainer's part
filters against the performer's channels. The table below gives each claim's values and pass rate.
A claim is asserted only if it held on every seed of the seed sweep (smoke seeds 0-4 at one and two
threads, full seeds 0-2), and none did: in smoke mode the classifier trains for two epochs and, on
some seeds, fails its own check (accuracy above chance by 0.2), which leaves the NMF claims untested
there, and on one seed the top channels held no more detectors than the matched channels. ClaDec and
the explainer fail their own checks in smoke mode (one and two epochs), so their agreements are not
tested there at all. Every claim is therefore reported with its pass rate, not asserted.
"""),
("code", r"""
def nmf_claim_numbers(s):
    # classifier, dissection of the chapter's layers and the factorisation for seed s (the same settings)
    w = ik.data.ConceptWorld(size=image_size, seed=s, single_object=True, object_classes=object_classes)
    tr, te = w.split(n_train, n_test)
    net = ik.models.vgg8(num_classes=len(w.object_names), in_channels=3, width=width, image_size=image_size)
    net = ik.models.freeze(ik.models.train(net, tr, epochs=epochs, lr=lr, batch_size=32, seed=s, device=device,
                                           progress=False))
    d = dissection.dissect(net, w.as_broden(n_test, start=n_train), layers, quantile=quantile, device=device,
                           progress=False)
    a = clustering.activation_matrices(net, te, layers, batch_size=200, device=device)
    f = clustering.coupled_nmf(a, clustering.pixel_matrices(te), rank, n_iter=n_iter, seed=s, device=device)
    fac = {"object": te.labels.numpy(), "colour": dominant(te.color_mask), "texture": dominant(te.texture_mask),
           "scene": te.scene.numpy()}
    pur = clustering.factor_purity(f, fac, {"object": w.object_names, "colour": w.color_names,
                                           "texture": w.texture_names, "scene": w.scene_names})
    al = nmf_alignment(f, pur, a, d, label_ids(d[layers[0]]))
    ok = nmf_sane(f, pur) and sum(d[l].num_detectors() for l in layers) > 0 and \
        ik.models.evaluate(net, te, device=device)["accuracy"] > 1 / len(w.object_names) + 0.2
    return {"iou_gain": float(al["top_iou"].mean() - al["matched_iou"].mean()),
            "detector_gain": float(al["top_detectors_of_value"].sum() - al["matched_detectors_of_value"].sum()),
            "gates": bool(ok)}


t0 = time.perf_counter()
claim_seeds = ik.nb.seeds(seed, smoke, full=n_seeds, quick=1)
per_seed = {seed: {"iou_gain": nmf_top_iou - nmf_matched_iou, "detector_gain": nmf_hits - nmf_hits_random,
                   "gates": bool(nmf_ok and gates["Network Dissection"] and gates["classifier"])}}
for s in claim_seeds[1:]:
    per_seed[s] = nmf_claim_numbers(s)
timings["other seeds"] = time.perf_counter() - t0
P = pd.DataFrame(per_seed).T.rename_axis("seed")
row = summary.set_index("check")["agrees"]

def this_run(check):
    # a one-seed claim from the summary table: holds only when tested and agreeing
    return [row[check] is True]

claim_objects = [
    ik.nb.Claim("nmf_top_channels_segment", "NMF concepts' top channels segment their factors' values better than "
                "activation-matched channels (IoU)", "n/a (this chapter)", P["iou_gain"],
                (P["iou_gain"] > 0) & P["gates"].astype(bool), asserted=False, fmt=".4f",
                note="top minus matched mean IoU; holds only if the classifier, dissection and NMF checks passed"),
    ik.nb.Claim("nmf_top_channels_are_detectors", "NMF concepts' top channels include more detectors of their "
                "factors' values than activation-matched channels", "n/a (this chapter)", P["detector_gain"],
                (P["detector_gain"] > 0) & P["gates"].astype(bool), asserted=False, fmt=".2f",
                note="top minus expected matched count, summed over (layer, concept, factor)"),
    ik.nb.Claim("resampling_picks_detectors", "Correlation-selected channels are detectors more often than "
                "activation-matched channels", "n/a (this chapter)",
                [rs_corr["detector_rate"] - rs_corr["chance_detector_rate"]],
                this_run("correlation-selected channels that are detectors vs activation-matched channels"),
                asserted=False, note="this run only; tested only if resampling and dissection passed their checks"),
    ik.nb.Claim("cladec_colour_follows_detectors", "ClaDec keeps colour better at the layer with more colour "
                "detectors", "n/a (this chapter)",
                [cl0.loc[more, "colour_accuracy"] - cl0.loc[fewer, "colour_accuracy"]],
                [row[summary["check"].iloc[7]] is True], asserted=False,
                note="this run only; tested only if ClaDec passed its check"),
    ik.nb.Claim("explainer_part_filters", "Explainer filters match parts better than the performer's channels "
                "(Zhang et al.)", "higher part IoU",
                [part_iou.get("explainer", np.nan) - part_iou.get("performer", np.nan)],
                this_run("mean part IoU: explainer filters vs performer channels"), asserted=False,
                note="this run only; tested only if the explainer passed its check"),
]
timings["total"] = time.perf_counter() - t_start
ik.nb.claims_table(claim_objects)
"""),
("code", r"""
numbers = {
    "test_accuracy": metrics["accuracy"], "layers": layers,
    "detectors": {l: dis[l].num_detectors() for l in layers},
    "detector_rate": detector_rate,
    "nmf_object_purity": float(obj.loc[obj["mass"] > 0, "purity"].mean()),
    "nmf_top_channel_iou": nmf_top_iou, "nmf_matched_channel_iou": nmf_matched_iou, "nmf_all_channel_iou": nmf_all_iou,
    "nmf_top_ahead": nmf_wins, "gates": gates, "quantile": quantile, "per_seed": {str(k): v for k, v in per_seed.items()},
    "claims": ik.nb.claims_json(claim_objects),
    "nmf_top_detectors_of_value": nmf_hits, "nmf_random_detectors_of_value": nmf_hits_random,
    "resampling": rs_table.to_dict(orient="index"),
    "cladec": cladec_table.set_index("layer")[["relative_mse", "colour_accuracy"]].to_dict(orient="index"),
    "explainer_part_iou": {k: float(v) for k, v in part_iou.items()},
    "part_detectors": part_detectors,
    "agreements": {row.check: (None if row.agrees is None else bool(row.agrees)) for row in summary.itertuples()},
    "seconds": timings,
}
path = ik.nb.save_results("06_five_lenses", numbers)
print("results written to", path.name)
ik.nb.paper_vs_measured([
    {"claim": "units of a CNN detect colours, parts and objects (Bau et al.)", "paper": "many detectors",
     "measured": f"{units['detector'].sum()} of {len(units)} units", "holds": bool(units["detector"].any())},
    {"claim": "NMF concepts are purer than chance (Saini & Papalexakis)", "paper": "pure concepts",
     "measured": f"{numbers['nmf_object_purity']:.2f} vs {obj.loc[obj['mass'] > 0, 'chance'].mean():.2f}",
     "holds": bool(numbers["nmf_object_purity"] > obj.loc[obj["mass"] > 0, "chance"].mean())},
    {"claim": "NMF concept neurons segment the concept better than average (this chapter)", "paper": "n/a",
     "measured": f"IoU {nmf_top_iou:.4f} vs {nmf_matched_iou:.4f} (activation-matched)", "holds": bool(nmf_top_iou > nmf_matched_iou)},
    {"claim": "NMF concept neurons are detectors of the concept (this chapter)", "paper": "n/a",
     "measured": f"{nmf_hits} vs {nmf_hits_random:.2f} for activation-matched channels", "holds": bool(nmf_hits > nmf_hits_random)},
    {"claim": "resampling picks detectors more often than chance (this chapter)", "paper": "n/a",
     "measured": f"{rs_corr['detector_rate']:.2f} vs {rs_corr['chance_detector_rate']:.2f}",
     "holds": bool(rs_corr["detector_rate"] > rs_corr["chance_detector_rate"])},
    {"claim": "deeper layers keep less of the input (Schneider & Vlachos)", "paper": "error grows with depth",
     "measured": " -> ".join(f"{v:.2f}" for v in cladec_table["relative_mse"].iloc[1:]),
     "holds": bool(np.all(np.diff(cladec_table["relative_mse"].iloc[1:].to_numpy()) > 0))},
    {"claim": "ClaDec keeps colour where dissection finds colour units (this chapter)", "paper": "n/a",
     "measured": f"{cl0.loc[more, 'colour_accuracy']:.2f} ({more}) vs "
                 f"{cl0.loc[fewer, 'colour_accuracy']:.2f} ({fewer})",
     "holds": bool(cl0.loc[more, "colour_accuracy"] > cl0.loc[fewer, "colour_accuracy"])},
    {"claim": "explainer filters match parts better than the performer's (Zhang et al.)", "paper": "higher part IoU",
     "measured": f"{numbers['explainer_part_iou'].get('explainer', float('nan')):.3f} vs "
                 f"{numbers['explainer_part_iou'].get('performer', float('nan')):.3f}",
     "holds": bool(part_iou.get("explainer", 0) > part_iou.get("performer", 0))},
])
"""),
("md", r"""
## Which lens for which question

- **"What does this unit detect?"** Network Dissection, if you have (or can make) pixel-labelled
  probe images of the concepts you care about. It names units but says nothing about whether the
  network *uses* them for a decision, and it only finds concepts in its dictionary.
- **"Which units matter for this prediction?"** Input resampling (or, more directly, ablation). It
  needs no labels and is per image; read its picks next to a dissection table to name them, and
  compare them with the cheap baselines (largest activation, largest weights) before trusting them.
- **"Which groups of images does the layer treat alike, and which units and pixels carry them?"**
  The coupled factorisation. It needs no labels either; purity against known factors tells you
  whether its concepts are classes, colours or backgrounds.
- **"What information survives at this depth?"** ClaDec. It shows the information, not the units,
  and its reconstructions are only as good as the decoder; compare with a reference auto-encoder
  (the ClaDec chapter) before concluding that a layer discards something.
- **"Can the layer be re-expressed with part-like filters?"** The explainer network. It changes
  the representation (a new, distilled network), so its filters are an *explanation* of the layer,
  not the layer's own units.
"""),
("md", r"""
## Exercises

1. **Rotate the basis.** Bau et al. argue that a network's own units are more interpretable than
   random directions in the same space. Rotate the `features.2` activations of the probe set
   (`dissection.random_rotation`, `dissection.rotate_activations`) and dissect them. How many
   detectors are left? Which of the other four lenses could even run on the rotated layer (hint:
   what does the factorisation require of its data)?
2. **Another layer pair.** Set `layers = ["features.3", "features.5"]`, the stride-2 blocks.
   Network Dissection finds far fewer detectors there. Which of the agreements below survive, and
   does ClaDec's colour accuracy follow the number of colour detectors?
3. **Is resampling better than the baselines?** Compare the `correlation` row of the resampling
   table with `mean_activation`. Then ablate the selected channels
   (`interpkit.resampling.ablation_study`) and check whether the more "detector-like" selection is
   also the one whose removal hurts the prediction most.
4. **Colour versus object concepts.** Rerun the factorisation with `rank = 11` (the number of
   colours) and compare the colour and object purity of the concepts. What does the network's
   representation at these layers seem to be organised by?
5. **Explainer capacity.** Halve and double `explainer_filters`. How do the part IoU and the number
   of part detectors among the explainer's filters change?
"""),
("code", r"""
# last: fail the run if an asserted claim did not hold on every seed (the tables above are already written)
ik.nb.check_claims(claim_objects, "06_five_lenses")
"""),
]

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[2] / "notebooks" / "06_five_lenses.ipynb"
    write_notebook(out, cells)
    print("wrote", out)
