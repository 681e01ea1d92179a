"""Source of notebooks/00_concept_world.ipynb (run: python tools/notebook_sources/00_concept_world.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nbbuild import write_notebook  # noqa: E402

cells = [
("md", r"""
# The concept world: synthetic scenes in which every pixel is labelled

Three of the five papers score a network against *annotated concepts*: Network Dissection
{cite}`bau2017dissection` measures how well each unit's activation map matches the segmentation
of objects, parts, scenes, textures and colours in the Broden dataset; the explainer network
{cite}`zhang2018explainer` measures how well filters localise object parts; and activation
clustering {cite}`saini2020analyzing` summarises which concepts neurons group together. Real
annotated data (Broden is about 1 GB) cannot be downloaded here, so `interpkit` generates a
**concept world**: seeded synthetic scenes whose ground truth is known for every pixel, and
reads and writes the Broden format of D. Bau, B. Zhou, A. Khosla, A. Oliva and A. Torralba,
*Network Dissection: Quantifying Interpretability of Deep Visual Representations*, CVPR 2017.

```{admonition} What you will learn
:class: tip
- what the concept world contains: scenes, object classes made of named parts, colours and
  textures, drawn as *independent* factors;
- how to get images with their object, part, colour and texture masks, scene labels and part
  landmarks, either materialised (`world.generate`) or lazily (`world.dataset`);
- how the Broden format (`index.csv`, `label.csv`, label PNGs with `R + 256 G`) stores such
  annotations, and that exporting the world to it and reading it back loses nothing;
- how to ask the same dataset for a fast batch of stacked label layers, as Network Dissection does.
```

**Run time** on a 2-core CPU: 12-17 seconds (the range of two fresh-clone book builds on
2026-11-24); about 11 seconds in smoke mode (`INTERPKIT_SMOKE=1`). GPU: not measured yet (no GPU was available when these were taken).
"""),
("code", r"""
# Book defaults. Papermill can override these; INTERPKIT_SMOKE=1 switches to a quick run.
smoke = None        # None: read INTERPKIT_SMOKE from the environment
device = None       # unused here (the world is generated on the CPU); kept for the book's conventions
seed = 0
size = 64           # image side in pixels (32 .. 224)
n_images = 2000     # images generated for the statistics
n_broden = 200      # images exported to Broden format and read back
""", ["parameters"]),
("code", r"""
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import ListedColormap

import interpkit as ik
from interpkit.data import Broden, ConceptWorld
from interpkit.data.broden import half_resolution

smoke = ik.nb.smoke_mode(smoke)
if smoke:
    n_images, n_broden = 300, 60
print("smoke mode:", smoke)
"""),
("md", r"""
## The factors

A `ConceptWorld` is fully described by its settings: image size, seed and the number of objects
per image. Image `i` is drawn from its own random generator seeded with `(seed, i)` and only
exact arithmetic, so it is the same bytes whether it is generated alone, in a batch, or on
another machine. Each image has

- a **scene** (an image-level label): a colour gradient with a scene-specific noise texture;
- one to three **objects**; each has a class (its shape), a **colour** from a named palette, a
  second colour for its detail parts (door, roof, eyes, wheels, ...), and a surface **texture**;
- four classes are made of named **parts**, each with its own mask and a landmark (its centre).

Class, colours, texture, size and position are drawn independently of each other.
"""),
("code", r"""
world = ConceptWorld(size=size, seed=seed, max_objects=3)
print(world)
factors = world.factor_table()
counts = factors.groupby("factor", sort=False).size().rename("values")
print(counts.to_string())  # NBVAL_CHECK_OUTPUT
"""),
("code", r"""
pd.DataFrame([{"object": c, "parts": ", ".join(p) or "-"} for c, p in world.object_parts.items()])
"""),
("code", r"""
# colour and texture masks use label k + 1 for name k (0 = background); scenes are labelled k
pd.DataFrame({"color": pd.Series(world.color_names), "texture": pd.Series(world.texture_names),
              "scene": pd.Series(world.scene_names)}).rename_axis("k").fillna("")
"""),
("md", r"""
## Generating images with their masks

`world.generate(n)` returns a `WorldSet`, an `ImageSet` (so `split`, `subset` and `resized` work
as for any dataset) with extra per-image tensors: `scene`, `object_mask`, `part_mask`,
`color_mask`, `texture_mask` (label 0 = none, label `k + 1` = the `k`-th name) and `landmarks`
(the `(y, x)` centre of each part, NaN when that part is not in the image). The classification
label is the class of the largest visible object.
"""),
("code", r"""
t0 = time.perf_counter()
ws = world.generate(n_images)
gen_seconds = time.perf_counter() - t0
images_per_s = n_images / gen_seconds
print(ws)
print(f"{n_images} images with masks in {gen_seconds:.2f} s ({images_per_s:.0f} images/s)")
"""),
("code", r"""
def mask_cmap(n: int) -> ListedColormap:
    base = plt.get_cmap("tab20").colors
    return ListedColormap([(0.15, 0.15, 0.15)] + [base[i % 20] for i in range(n)])


color_cmap = ListedColormap([(0.15, 0.15, 0.15)] + [tuple(c) for c in world.color_table[:, 0]])
LAYERS = {  # name -> (mask tensor, colour map, number of labels)
    "object": (ws.object_mask, mask_cmap(len(world.object_names)), len(world.object_names)),
    "part": (ws.part_mask, mask_cmap(len(world.part_names)), len(world.part_names)),
    "color": (ws.color_mask, color_cmap, len(world.color_names)),
    "texture": (ws.texture_mask, mask_cmap(len(world.texture_names)), len(world.texture_names)),
}


def draw_samples(indices, layers=tuple(LAYERS), landmarks=True) -> plt.Figure:
    rows = ["image", *layers]
    fig, axes = plt.subplots(len(rows), len(indices), figsize=(1.7 * len(indices), 1.8 * len(rows)),
                             squeeze=False)
    for c, i in enumerate(indices):
        axes[0, c].imshow(ws.images[i].permute(1, 2, 0).numpy())
        axes[0, c].set_title(f"#{i} {world.object_names[ws.labels[i]]}\n{world.scene_names[ws.scene[i]]}",
                             fontsize=8)
        for r, name in enumerate(layers, start=1):
            mask, cmap, n = LAYERS[name]
            axes[r, c].imshow(mask[i].numpy(), cmap=cmap, vmin=0, vmax=n, interpolation="nearest")
            if name == "part" and landmarks:
                lm = ws.landmarks[i]
                axes[r, c].plot(lm[:, 1], lm[:, 0], "w+", ms=5, mew=1)
    for r, name in enumerate(rows):
        axes[r, 0].set_ylabel(name, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


draw_samples(range(8))
plt.show()
"""),
("md", r"""
Rows: the image, then its object, part, colour and texture masks; white crosses mark part
landmarks. The colour mask is drawn in the palette colours themselves. Every object pixel has
exactly its palette colour or that colour's second shade (where its texture pattern is "on"), so
the masks can be checked against the pixels; the tests do that for every pixel.

### Explore interactively

Running this notebook gives you a widget to page through the images and choose which mask
layers to show (the figure above is its default state, drawn statically for the rendered book).
"""),
("code", r"""
import ipywidgets as widgets


def draw_page(page: int, layers: tuple) -> plt.Figure:
    return draw_samples(range(8 * page, min(8 * page + 8, len(ws))), layers=layers or ("object",))


ik.widgets.interactive_figure(
    draw_page,
    page=widgets.IntSlider(0, 0, (len(ws) - 1) // 8, description="page"),
    layers=widgets.SelectMultiple(options=list(LAYERS), value=tuple(LAYERS), description="masks", rows=4))
"""),
("md", r"""
## The factors are balanced and independent

Because every factor is drawn on its own, an object's class says nothing about its colour or
texture: a network can only classify shapes by their shape. The tables below count object
pixels per class and per colour, and measure the association between class and colour, and
class and texture, with Cramér's V (0 = independent, 1 = one determines the other; bias-corrected so that
small samples of independent factors give values near 0), counting each (class, colour) pair
once per image in which it is visible.
"""),
("code", r"""
def cramers_v(table: np.ndarray) -> float:
    # bias-corrected Cramér's V (Bergsma 2013): near 0 for independent factors even in small samples
    table = table[table.sum(1) > 0][:, table.sum(0) > 0].astype(float)
    n, (r, k) = table.sum(), table.shape
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    phi2 = ((table - expected) ** 2 / expected).sum() / n
    phi2 = max(0.0, phi2 - (k - 1) * (r - 1) / (n - 1))
    r_c, k_c = r - (r - 1) ** 2 / (n - 1), k - (k - 1) ** 2 / (n - 1)
    return float(np.sqrt(phi2 / min(k_c - 1, r_c - 1)))


def co_occurrence(mask_a: torch.Tensor, mask_b: torch.Tensor, na: int, nb: int) -> np.ndarray:
    # one count per image and (a, b) pair that occurs in that image
    pair = (mask_a * (nb + 1) + mask_b).flatten(1)
    table = np.zeros((na + 1, nb + 1), np.int64)
    for row in pair:
        for v in torch.unique(row).tolist():
            table[v // (nb + 1), v % (nb + 1)] += 1
    return table[1:, 1:]


no, nc, nt = len(world.object_names), len(world.color_names), len(world.texture_names)
class_color = co_occurrence(ws.object_mask, ws.color_mask, no, nc)
class_texture = co_occurrence(ws.object_mask, ws.texture_mask, no, nt)
v_color, v_texture = cramers_v(class_color), cramers_v(class_texture)
print(f"Cramér's V  class x colour: {v_color:.3f}   class x texture: {v_texture:.3f}")

fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
ik.plot.bar_chart(dict(zip(world.object_names, np.bincount(ws.labels.numpy(), minlength=no))),
                  title="classification labels", ylabel="images", ax=axes[0], rotate=45)
ik.plot.bar_chart(dict(zip(world.scene_names, np.bincount(ws.scene.numpy(), minlength=len(world.scene_names)))),
                  title="scenes", ylabel="images", ax=axes[1], rotate=45)
im = axes[2].imshow(class_color, cmap="viridis")
axes[2].set_xticks(range(nc), world.color_names, rotation=90, fontsize=7)
axes[2].set_yticks(range(no), world.object_names, fontsize=7)
axes[2].set_title("class x colour (images)", fontsize=9)
fig.colorbar(im, ax=axes[2])
fig.tight_layout()
plt.show()
"""),
("md", r"""
## One world, many resolutions

The layout of image `i` (classes, colours, positions relative to the image) does not depend on
the image size, so the same scene can be rendered at 32 pixels for a quick test or at 224 pixels
for an ImageNet-sized network. Masks are drawn at each resolution directly (a `WorldSet`'s
`resized` would resize the images only).
"""),
("code", r"""
sizes = [32, 64, 128, 224]
same = [ConceptWorld(size=s, seed=seed).render(3) for s in sizes]
fig, axes = plt.subplots(2, len(sizes), figsize=(2.2 * len(sizes), 4.4))
for c, (s, r) in enumerate(zip(sizes, same)):
    axes[0, c].imshow(r["image"].permute(1, 2, 0).numpy())
    axes[0, c].set_title(f"{s} x {s} px", fontsize=9)
    axes[1, c].imshow(r["part_mask"].numpy(), cmap=LAYERS["part"][1], vmin=0, vmax=len(world.part_names),
                      interpolation="nearest")
for ax in axes.flat:
    ax.set_xticks([]), ax.set_yticks([])
axes[1, 0].set_ylabel("part mask")
fig.tight_layout()
plt.show()
assert len({int(s["label"]) for s in same}) == 1
"""),
("md", r"""
## The Broden format, both ways

Network Dissection reads its concept data from a directory in the **Broden** layout:
`index.csv` lists each image with its split, image size (`ih`, `iw`) and segmentation size
(`sh`, `sw`, half the image size), and one column per category whose cells hold `;`-separated
entries: an integer is an image-level label, anything else is a PNG whose pixels encode label
numbers as `R + 256 G`. `label.csv` names every label number and counts in which categories it
occurs; `category.csv` and `c_<category>.csv` describe the categories. A label's *primary
category* is the one in which it covers the most pixels.

`world.to_broden(root, n)` writes the concept world in that layout (objects, parts, colours
and, unlike the real Broden where texture is image-level, per-object textures as pixel
categories; scenes as image-level labels). `ik.data.Broden(root)` reads any such directory,
including the real `broden1_224` and `broden1_227` releases, and `world.as_broden(n)` builds the
same dataset in memory without touching the disk.
"""),
("code", r"""
tmp = tempfile.TemporaryDirectory()
root = world.to_broden(Path(tmp.name) / "concept_world_broden", n_broden)
print(sorted(p.name for p in root.iterdir()))
print((root / "index.csv").read_text().splitlines()[:3])
disk = Broden(root)
print(disk)
disk.labels[["name", "category", "frequency", "coverage"]].iloc[[0, 1, 12, 22, 35, 41]]
"""),
("code", r"""
mem = world.as_broden(n_broden)
sub = world.generate(n_broden)
offset = {cat: disk.label_number(names[0], cat) - 1 for cat, names in world.broden_label_names().items()}
lossless = disk.labels.equals(mem.labels)
for i in range(n_broden):
    a, b = disk[i], mem[i]
    lossless &= torch.equal(a["image"], b["image"])
    for cat, mask in [("object", sub.object_mask), ("part", sub.part_mask), ("color", sub.color_mask),
                      ("texture", sub.texture_mask)]:
        want = half_resolution(mask[i])
        want = torch.where(want > 0, want + offset[cat], 0)
        got = a["masks"][cat]
        lossless &= torch.equal(got, b["masks"][cat]) and (
            torch.equal(got[0], want) if len(got) else not bool(want.any()))
    lossless &= a["scalars"]["scene"].tolist() == [int(sub.scene[i]) + offset["scene"] + 1]
print("world -> Broden files -> reader is lossless:", lossless)
"""),
("md", r"""
For dissection, `segmentation_batch` returns a batch of images together with every pixel
label layer stacked into one tensor (`layer_categories` names the category of each layer) and
the image-level labels; files are decoded once per batch.
"""),
("code", r"""
images, pixel_labels, scalar_labels = disk.segmentation_batch(range(16))
print("images", tuple(images.shape), "| pixel labels", tuple(pixel_labels.shape), disk.layer_categories,
      "| image-level", tuple(scalar_labels.shape), disk.scalar_label_categories)
t0 = time.perf_counter()
for s in range(0, n_broden, 64):
    disk.segmentation_batch(range(s, min(s + 64, n_broden)))
reader_images_per_s = n_broden / (time.perf_counter() - t0)
print(f"reader: {reader_images_per_s:.0f} images/s with all label layers")
"""),
("md", r"""
## Checks and results

The last cells assert what this chapter claims and write the key numbers to
`results/00_concept_world.json`.
"""),
("code", r"""
again = ConceptWorld(size=size, seed=seed).generate(8, start=5)
assert torch.equal(again.images, ws.images[5:13]), "same seed, same images"
assert torch.equal(world.render(7)["part_mask"], ws.part_mask[7]), "image i alone equals image i in a batch"
assert 8 <= len(world.object_names) <= 12 and 4 <= len(world.scene_names) <= 8
assert lossless, "the Broden round trip must give back the same masks and labels"
assert v_color < 0.1 and v_texture < 0.1, "class, colour and texture are independent factors"
lm = ws.landmarks
has = ~torch.isnan(lm[..., 0])
yi, xi = (lm[..., 0] + 0.5).floor().long().clamp(0, size - 1), (lm[..., 1] + 0.5).floor().long().clamp(0, size - 1)
n_idx = torch.arange(len(ws))[:, None].expand_as(yi)
inside = ws.part_mask[n_idx, yi, xi] == torch.arange(1, len(world.part_names) + 1)
assert bool(inside[has].all()), "every landmark lies inside its part"
path = ik.nb.save_results("00_concept_world", {
    "images_per_s": images_per_s, "n_images": n_images, "image_size": size,
    "n_object_classes": len(world.object_names), "n_parts": len(world.part_names),
    "n_colors": len(world.color_names), "n_textures": len(world.texture_names),
    "n_scenes": len(world.scene_names), "cramers_v_class_color": v_color,
    "cramers_v_class_texture": v_texture, "broden_round_trip_lossless": bool(lossless),
    "broden_images": n_broden, "reader_images_per_s": reader_images_per_s}, smoke=smoke)
tmp.cleanup()
print("results written to", path.name)
"""),
]

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[2] / "notebooks" / "00_concept_world.ipynb"
    write_notebook(out, cells)
    print("wrote", out)
