"""The seeded generator of annotated concept-world scenes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ...checks import check_positive_int
from .sets import WorldDataset, WorldSet
from .spec import (
    _FLIPPABLE,
    _MIN_OBJECT_PX,
    _OBJECTS,
    _PALETTE,
    _SCENES,
    _TEXTURES,
    MAX_OBJECTS,
    MAX_SIZE,
    MIN_SIZE,
    _frac,
    _shade,
    _texture,
)


class ConceptWorld:
    """Seeded generator of annotated synthetic scenes (see the module docstring).

    Args:
        size: image side in pixels, ``MIN_SIZE`` (32) .. ``MAX_SIZE`` (224).
        seed: non-negative integer; image ``i`` depends only on ``(seed, i)`` and the settings.
        max_objects: each image holds 1 .. ``max_objects`` objects (1 .. 4).
        single_object: exactly one large object per image (clean classification); overrides
            ``max_objects``.
        object_classes: restrict objects to these class names (default: all ten classes).
    """

    def __init__(
        self,
        size: int = 64,
        seed: int = 0,
        max_objects: int = 3,
        single_object: bool = False,
        object_classes: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
            raise ValueError(
                f"size must be an integer in [{MIN_SIZE}, {MAX_SIZE}] (smaller images cannot "
                f"show every part, e.g. the eyes of a face), got {size!r}."
            )
        if not isinstance(max_objects, (int, np.integer)) or not 1 <= max_objects <= MAX_OBJECTS:
            raise ValueError(
                f"max_objects must be an integer in [1, {MAX_OBJECTS}], got {max_objects!r}."
            )
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
        names = list(_OBJECTS) if object_classes is None else list(object_classes)
        unknown = [c for c in names if c not in _OBJECTS]
        if unknown or not names or len(set(names)) != len(names):
            raise ValueError(
                f"object_classes must be distinct names from {list(_OBJECTS)}, got {names!r}."
            )
        self.size, self.seed = int(size), int(seed)
        self.max_objects = 1 if single_object else int(max_objects)
        self.single_object = bool(single_object)
        self.object_names: list[str] = names
        self.part_names: list[str] = [
            l.part for c in names for l in _OBJECTS[c] if l.part is not None
        ]
        self.color_names: list[str] = list(_PALETTE)
        self.texture_names: list[str] = list(_TEXTURES)
        self.scene_names: list[str] = [s[0] for s in _SCENES]
        self.object_parts: dict[str, list[str]] = {
            c: [l.part for l in _OBJECTS[c] if l.part] for c in names
        }
        table = np.zeros((len(_PALETTE), 2, 3), dtype=np.float32)
        for k, rgb in enumerate(_PALETTE.values()):
            table[k, 0], table[k, 1] = rgb, _shade(rgb)
        self.color_table: np.ndarray = table  # (n_colors, 2, 3): plain and texture shade
        # (3, 2 * (n_colors + 1)): column 2 * (c + 1) + shade is the value for colour label c + 1
        self._table_t = np.ascontiguousarray(
            np.concatenate([np.zeros((1, 2, 3), np.float32), table]).reshape(-1, 3).T
        )
        self._part_index = {p: j for j, p in enumerate(self.part_names)}
        self._backgrounds: np.ndarray | None = None
        self._lowfreq_cache: dict[int, tuple[np.ndarray, ...]] = {}

    # -- description ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        return (
            f"ConceptWorld(size={self.size}, seed={self.seed}, max_objects={self.max_objects}, "
            f"single_object={self.single_object}, classes={len(self.object_names)})"
        )

    @property
    def config(self) -> dict[str, Any]:
        """The settings that determine every image (used in cache keys and file names)."""
        return {
            "size": self.size,
            "seed": self.seed,
            "max_objects": self.max_objects,
            "single_object": self.single_object,
            "object_classes": list(self.object_names),
        }

    def factor_table(self) -> pd.DataFrame:
        """One row per factor value: factor, mask label (0 = none), name, and extra detail."""
        rows = []
        for k, c in enumerate(self.object_names):
            rows.append(("object", k + 1, c, ", ".join(self.object_parts[c]) or "(no parts)"))
        for j, p in enumerate(self.part_names):
            owner = next(c for c in self.object_names if p in self.object_parts[c])
            rows.append(("part", j + 1, p, f"part of {owner}"))
        for k, c in enumerate(self.color_names):
            rows.append(("color", k + 1, c, "rgb " + " ".join(f"{v:.2f}" for v in _PALETTE[c])))
        for k, t in enumerate(self.texture_names):
            rows.append(("texture", k + 1, t, ""))
        for k, (s, _, _, grad, noise) in enumerate(_SCENES):
            rows.append(("scene", k, s, f"{grad} gradient, {noise} noise (image-level label)"))
        return pd.DataFrame(rows, columns=["factor", "label", "name", "detail"])

    # -- parameter checks ----------------------------------------------------------------------
    @staticmethod
    def _check_range(n: int, start: int) -> None:
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer (number of images), got {n!r}.")
        if not isinstance(start, (int, np.integer)) or start < 0:
            raise ValueError(
                f"start must be a non-negative integer (first image index), got {start!r}."
            )

    # -- backgrounds ---------------------------------------------------------------------------
    def _scene_bases(self) -> np.ndarray:
        if self._backgrounds is None:
            S = self.size
            t = np.arange(S, dtype=np.float64) / (S - 1)
            ty, tx = t[:, None], t[None, :]
            out = np.empty((len(_SCENES), 3, S, S))
            for k, (_, top, bottom, grad, _) in enumerate(_SCENES):
                if grad == "vertical":
                    w = ty + 0 * tx
                elif grad == "diagonal":
                    w = (ty + tx) * 0.5
                else:  # radial (squared distance, no sqrt needed)
                    w = np.minimum(((ty - 0.5) ** 2 + (tx - 0.5) ** 2) * 2.0, 1.0)
                out[k] = (
                    np.asarray(top)[:, None, None] * (1 - w[None])
                    + np.asarray(bottom)[:, None, None] * w[None]
                )
            self._backgrounds = out
        return self._backgrounds

    def _lowfreq(self, rng: np.random.Generator, g: int) -> np.ndarray:
        """Smooth noise in [0, 1]: a random g x g grid upsampled bilinearly (elementwise ops
        only)."""
        if g not in self._lowfreq_cache:
            pos = np.arange(self.size, dtype=np.float64) * ((g - 1) / (self.size - 1))
            i0 = np.minimum(np.floor(pos).astype(np.int64), g - 2)
            w = pos - i0
            self._lowfreq_cache[g] = (i0, i0 + 1, w)
        i0, i1, w = self._lowfreq_cache[g]
        grid = rng.random((g, g))
        rows = grid[i0] * (1 - w)[:, None] + grid[i1] * w[:, None]  # (S, g)
        return rows[:, i0] * (1 - w)[None, :] + rows[:, i1] * w[None, :]  # (S, S)

    def _background(self, rng: np.random.Generator, scene: int, out: np.ndarray) -> None:
        """Write the background of ``scene`` (gradient + noise) into ``out`` (3, S, S)."""
        S = self.size
        base = self._scene_bases()[scene]
        noise_kind = _SCENES[scene][4]
        yy = np.arange(S, dtype=np.float64)[:, None]
        xx = np.arange(S, dtype=np.float64)[None, :]
        if noise_kind == "clouds":
            n = (self._lowfreq(rng, 5) - 0.5) * 0.25
        elif noise_kind == "grass":
            n = (rng.random((1, S)) - 0.5) * 0.12 + (rng.random((S, S)) - 0.5) * 0.08
        elif noise_kind == "dunes":
            n = (self._lowfreq(rng, 4) - 0.5) * 0.12 + (rng.random((S, 1)) - 0.5) * 0.06
        elif noise_kind == "stars":
            n = (rng.random((S, S)) < 0.015) * 0.8
        elif noise_kind == "ripples":
            period = max(4.0, S / 10.0)
            ph = rng.random(2)
            n = (
                _frac(yy / period + np.abs(_frac(xx / (2 * period) + ph[0]) - 0.5) + ph[1]) < 0.3
            ) * 0.1 - 0.03
        else:  # tiles
            tile = max(6.0, S / 5.0)
            off = rng.random(2) * tile
            n = (
                (_frac((yy + off[0]) / tile) < 0.08) | (_frac((xx + off[1]) / tile) < 0.08)
            ) * -0.12 + (rng.random((S, S)) - 0.5) * 0.05
        np.clip(base + n[None], 0.0, 1.0, out=out, casting="same_kind")

    # -- objects -------------------------------------------------------------------------------
    def _object_params(self, rng: np.random.Generator) -> list[dict[str, Any]]:
        S = self.size
        n_obj = 1 if self.single_object else 1 + int(rng.random() * self.max_objects)
        lo, hi = (0.55, 0.80) if self.single_object else (0.30, 0.48)
        nc, ncol, ntex = len(self.object_names), len(self.color_names), len(self.texture_names)
        objs = []
        for r in rng.random((n_obj, 8)).tolist():  # one batch of draws per image
            cls = int(r[0] * nc)
            color = int(r[1] * ncol)
            detail = int(r[2] * (ncol - 1))
            detail += detail >= color  # a different colour for detail parts
            flip = -1.0 if (self.object_names[cls] in _FLIPPABLE and r[5] < 0.5) else 1.0
            objs.append(
                dict(
                    cls=cls,
                    color=color,
                    detail=detail,
                    tex=int(r[3] * ntex),
                    s=max(_MIN_OBJECT_PX, (lo + (hi - lo) * r[4]) * S),
                    flip=flip,
                    phase=(r[6], r[7]),
                )
            )
        objs.sort(key=lambda o: -o["s"])  # draw large objects first
        tries = rng.random((n_obj, 12, 2)).tolist()
        placed: list[tuple[float, float, float]] = []
        for o, cand in zip(objs, tries):  # spread objects out (a few tries)
            half = o["s"] / 2
            span = max(S - 1 - 2 * half, 0.0)
            best, best_gap = (half, half), -math.inf
            for ry, rx in cand:
                cy, cx = half + span * ry, half + span * rx
                gap = min(
                    (
                        math.sqrt((cy - py) ** 2 + (cx - px) ** 2) - 0.4 * (o["s"] + ps)
                        for py, px, ps in placed
                    ),
                    default=math.inf,
                )
                if gap > best_gap:
                    best, best_gap = (cy, cx), gap
                if gap >= 0:
                    break
            o["cy"], o["cx"] = best
            placed.append((o["cy"], o["cx"], o["s"]))
        return objs

    def render(self, index: int) -> dict[str, torch.Tensor]:
        """Image ``index`` with all annotations as tensors (``image`` (3,H,W), ``label``, ``scene``,
        ``object_mask``, ``part_mask``, ``color_mask``, ``texture_mask`` (H,W), ``landmarks``)."""
        self._check_range(1, index)
        S, P = self.size, len(self.part_names)
        img = np.empty((3, S, S), np.float32)
        masks = np.empty((4, S, S), np.int64)
        lm = np.empty((P, 2), np.float32)
        label, scene = self._render_into(int(index), img, masks, lm)
        return {
            "image": torch.from_numpy(img),
            "label": torch.tensor(label),
            "scene": torch.tensor(scene),
            "object_mask": torch.from_numpy(masks[0]),
            "part_mask": torch.from_numpy(masks[1]),
            "color_mask": torch.from_numpy(masks[2]),
            "texture_mask": torch.from_numpy(masks[3]),
            "landmarks": torch.from_numpy(lm),
            "index": torch.tensor(int(index)),
        }

    def _render_into(
        self, index: int, img_out: np.ndarray, masks_out: np.ndarray, lm_out: np.ndarray
    ) -> tuple[int, int]:
        """Render image ``index`` into preallocated arrays (3,S,S), (4,S,S), (P,2); returns
        (label, scene)."""
        S = self.size
        rng = np.random.default_rng([self.seed, index])
        scene = int(rng.random() * len(_SCENES))
        objs = self._object_params(rng)  # before the noise: same layout at every size
        self._background(rng, scene, img_out)

        lay = np.zeros((S, S), np.uint8)  # layer id per pixel, 0 = background
        pat = np.zeros((S, S), np.uint8)  # texture shade (0/1) per pixel
        lut_obj, lut_part, lut_col, lut_tex, lut_inst = [0], [0], [0], [0], [0]
        centres: list[tuple[int, int, float, float]] = []  # (layer id, part index, y, x)
        for k, o in enumerate(objs):
            cy, cx, s, flip = o["cy"], o["cx"], o["s"], o["flip"]
            r0, r1 = max(int(math.floor(cy - s / 2)) - 1, 0), min(int(math.ceil(cy + s / 2)) + 2, S)
            c0, c1 = max(int(math.floor(cx - s / 2)) - 1, 0), min(int(math.ceil(cx + s / 2)) + 2, S)
            rows = np.arange(r0, r1, dtype=np.float64)[:, None]
            cols = np.arange(c0, c1, dtype=np.float64)[None, :]
            v = (rows - cy) / s
            u = (cols - cx) * flip / s
            lay_c, pat_c = lay[r0:r1, c0:c1], pat[r0:r1, c0:c1]
            union = None
            name = self.object_names[o["cls"]]
            for layer in _OBJECTS[name]:
                m = layer.mask(u, v)
                if m.shape != lay_c.shape:
                    m = np.broadcast_to(m, lay_c.shape)
                lid = len(lut_obj)
                np.putmask(lay_c, m, lid)
                union = m if union is None else (union | m)
                lut_obj.append(o["cls"] + 1)
                lut_col.append((o["detail"] if layer.detail else o["color"]) + 1)
                lut_tex.append(o["tex"] + 1)
                lut_inst.append(k + 1)
                if layer.part is None:
                    lut_part.append(0)
                else:
                    j = self._part_index[layer.part]
                    lut_part.append(j + 1)
                    centres.append(
                        (lid, j, cy + layer.centre[1] * s, cx + layer.centre[0] * flip * s)
                    )
            tex = self.texture_names[o["tex"]]
            if tex == "solid":
                np.putmask(pat_c, union, 0)
            else:
                period = max(3.0, 0.2 * s)
                a = (cols - cx) / period + o["phase"][0]
                b = (rows - cy) / period + o["phase"][1]
                tp = _texture(tex, a, b)
                if tp.shape != lay_c.shape:
                    tp = np.broadcast_to(tp, lay_c.shape)
                np.putmask(pat_c, union, tp)

        luts = np.array([lut_obj, lut_part, lut_col, lut_tex, lut_inst], dtype=np.int64)
        for q in range(4):
            np.take(luts[q], lay, out=masks_out[q])
        area = np.bincount(lay.ravel(), minlength=len(lut_obj))
        area = np.bincount(luts[4], weights=area, minlength=len(objs) + 1)[1:]
        largest = int(np.argmax(area))  # ties: first drawn (= larger)
        label = objs[largest]["cls"]

        # object pixels: the palette value of their colour label, shade chosen by the texture
        fg = np.flatnonzero(lay)
        sel = masks_out[2].reshape(-1)[fg] * 2 + pat.reshape(-1)[fg]
        img_out.reshape(3, -1)[:, fg] = self._table_t[:, sel]

        self._landmarks(centres, area, luts[4], lay, lm_out)
        return label, scene

    def _landmarks(
        self,
        centres: list[tuple[int, int, float, float]],
        area: np.ndarray,
        inst: np.ndarray,
        lay: np.ndarray,
        lm_out: np.ndarray,
    ) -> None:
        """Each part's landmark: its drawn centre on the largest object that shows the part (or
        the nearest visible pixel of that part); NaN where no object shows it."""
        S = self.size
        lm_out.fill(np.nan)
        best_area = np.full(len(self.part_names), -1.0)
        for lid, j, y, x in centres:
            obj_area = area[inst[lid] - 1]
            if obj_area <= best_area[j]:
                continue
            yi, xi = int(math.floor(y + 0.5)), int(math.floor(x + 0.5))
            if 0 <= yi < S and 0 <= xi < S and lay[yi, xi] == lid:
                lm_out[j] = (y, x)
            else:
                ys, xs = np.nonzero(lay == lid)
                if len(ys) == 0:
                    continue  # this part is hidden entirely
                q = int(np.argmin((ys - y) ** 2 + (xs - x) ** 2))
                lm_out[j] = (ys[q], xs[q])
            best_area[j] = obj_area

    # -- public generation ---------------------------------------------------------------------
    def generate(self, n: int, start: int = 0, name: str | None = None) -> WorldSet:
        """Materialise images ``start .. start + n - 1`` with all annotations as a ``WorldSet``.

        Memory: about ``44 * size**2`` bytes per image (float32 RGB plus four int64 masks).
        """
        self._check_range(n, start)
        S, P = self.size, len(self.part_names)
        imgs = np.empty((n, 3, S, S), np.float32)
        masks = np.empty((4, n, S, S), np.int64)
        lms = np.empty((n, P, 2), np.float32)
        labels = np.empty(n, np.int64)
        scenes = np.empty(n, np.int64)
        for i in range(n):
            labels[i], scenes[i] = self._render_into(start + i, imgs[i], masks[:, i], lms[i])
        return WorldSet(
            images=torch.from_numpy(imgs),
            labels=torch.from_numpy(labels),
            classes=list(self.object_names),
            name=name or f"concept-world-{S}px-seed{self.seed}",
            scene=torch.from_numpy(scenes),
            object_mask=torch.from_numpy(masks[0]),
            part_mask=torch.from_numpy(masks[1]),
            color_mask=torch.from_numpy(masks[2]),
            texture_mask=torch.from_numpy(masks[3]),
            landmarks=torch.from_numpy(lms),
            index=torch.arange(start, start + n),
            part_names=list(self.part_names),
            color_names=list(self.color_names),
            texture_names=list(self.texture_names),
            scene_names=list(self.scene_names),
        )

    def split(self, n_train: int, n_test: int) -> tuple[WorldSet, WorldSet]:
        """Disjoint train (indices ``[0, n_train)``) and test (the next ``n_test``) sets."""
        self._check_range(n_train, 0)
        self._check_range(n_test, 0)
        base = f"concept-world-{self.size}px-seed{self.seed}"
        return (
            self.generate(n_train, 0, name=f"{base}-train"),
            self.generate(n_test, n_train, name=f"{base}-test"),
        )

    def dataset(self, n: int, start: int = 0, with_masks: bool = False) -> WorldDataset:
        """A lazy ``torch`` Dataset of images ``start .. start + n - 1`` (rendered on access)."""
        return WorldDataset(self, n, start, with_masks)

    # -- Broden --------------------------------------------------------------------------------
    def broden_label_names(self) -> dict[str, list[str]]:
        """Category -> label names, in the order of the Broden label numbers (1, 2, ...)."""
        return {
            "color": list(self.color_names),
            "object": list(self.object_names),
            "part": list(self.part_names),
            "scene": list(self.scene_names),
            "texture": list(self.texture_names),
        }

    def as_broden(self, n: int, start: int = 0, split: str = "train", chunk: int = 256):
        """Images ``start .. start + n - 1`` as an in-memory ``InMemoryBroden``.

        Same interface and values as ``Broden(world.to_broden(root, n, start))``: images quantised
        to 8 bits, masks at half resolution (pixel ``(2i, 2j)``), label numbers as in the export.
        Pixel categories: color, object, part, texture (textures are per object, hence pixel
        masks); image-level: scene.
        """
        from ..broden import InMemoryBroden, half_resolution

        self._check_range(n, start)
        chunk = check_positive_int("chunk", chunk)
        S = self.size
        sh = sw = S // 2
        names = self.broden_label_names()
        offsets, nxt = {}, 1
        for cat, lst in names.items():
            offsets[cat] = nxt
            nxt += len(lst)
        pixel_cats = ["color", "object", "part", "texture"]
        images = np.empty((n, 3, S, S), np.uint8)
        seg = {c: np.zeros((n, 1, sh, sw), np.int32) for c in pixel_cats}
        scene = np.empty((n, 1), np.int64)
        field_of = {
            "color": "color_mask",
            "object": "object_mask",
            "part": "part_mask",
            "texture": "texture_mask",
        }
        for c0 in range(0, n, chunk):
            ws = self.generate(min(chunk, n - c0), start + c0)
            b = len(ws)
            images[c0 : c0 + b] = np.round(ws.images.numpy() * 255.0).astype(np.uint8)
            for cat in pixel_cats:
                m = half_resolution(getattr(ws, field_of[cat]).numpy(), sh, sw)
                seg[cat][c0 : c0 + b, 0] = np.where(m > 0, m + (offsets[cat] - 1), 0)
            scene[c0 : c0 + b, 0] = ws.scene.numpy() + offsets["scene"]
        label_names = ["-"] + [nm for lst in names.values() for nm in lst]
        label_cats = [""] + [cat for cat, lst in names.items() for _ in lst]
        return InMemoryBroden(
            images=images,
            pixel=seg,
            scalar={"scene": scene},
            label_names=label_names,
            label_categories=label_cats,
            categories=list(names),
            splits=[split] * n,
            image_names=[f"world/{start + i:06d}" for i in range(n)],
        )

    def to_broden(
        self,
        root: str | Path,
        n: int,
        start: int = 0,
        split: str = "train",
        overwrite: bool = False,
    ) -> Path:
        """Export images ``start .. start + n - 1`` as a Broden directory at ``root``; returns it.

        Written into a temporary sibling folder and renamed into place, so ``root`` never holds a
        half-written dataset. Images are PNG (lossless); see ``as_broden`` for the categories.
        """
        from ..broden import write_broden

        return write_broden(root, self.as_broden(n, start, split=split), overwrite=overwrite)
