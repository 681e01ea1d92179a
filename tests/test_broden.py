"""Broden format: reader on a hand-written fixture, world round trip, and clear errors."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from interpkit.data import _broden_write as broden_write
from interpkit.data import broden as broden_mod
from interpkit.data.broden import Broden, InMemoryBroden, half_resolution, write_broden
from interpkit.data.world import ConceptWorld

IH, IW, SH, SW = 8, 12, 4, 6  # not square: catches transposed axes


# ---------------------------------------------------------------------------------------------
# A small directory in the real Broden layout
# ---------------------------------------------------------------------------------------------
def _png(path: Path, lab: np.ndarray) -> None:
    rgb = np.zeros(lab.shape + (3,), np.uint8)
    rgb[..., 0], rgb[..., 1] = lab % 256, lab // 256
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


COLOR_A = np.array([[1] * 6, [1] * 6, [2] * 6, [2] * 6])
OBJECT_A = np.array([[5, 5, 5, 7, 7, 7]] * 4)
PART_A1 = np.zeros((SH, SW), int)
PART_A1[1:3, 1:3] = 300  # 300 = 44 + 256 * 1: needs G
PART_A2 = np.zeros((SH, SW), int)
PART_A2[0, 4:] = 301
MATERIAL_A = np.full((SH, SW), 7)
OBJECT_B = np.array([[0, 0, 5, 5, 0, 0]] * 4)


def make_broden(root: Path) -> Path:
    img = root / "images"
    for name in ("a", "b"):
        (img / "ds").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((IH, IW, 3), 100, np.uint8)).save(img / "ds" / f"{name}.jpg")
    _png(img / "ds/a_color.png", COLOR_A)
    _png(img / "ds/a_object.png", OBJECT_A)
    _png(img / "ds/a_part_1.png", PART_A1)
    _png(img / "ds/a_part_2.png", PART_A2)
    _png(img / "ds/a_material.png", MATERIAL_A)
    _png(img / "ds/b_object.png", OBJECT_B)
    header = [
        "image",
        "split",
        "ih",
        "iw",
        "sh",
        "sw",
        "color",
        "object",
        "part",
        "material",
        "scene",
        "texture",
    ]
    _csv(
        root / "index.csv",
        header,
        [
            [
                "ds/a.jpg",
                "train",
                IH,
                IW,
                SH,
                SW,
                "ds/a_color.png",
                "ds/a_object.png",
                "ds/a_part_1.png;ds/a_part_2.png",
                "ds/a_material.png",
                "12",
                "20;21",
            ],
            ["ds/b.jpg", "val", IH, IW, SH, SW, "", "ds/b_object.png", "", "", "12", ""],
        ],
    )
    _csv(
        root / "label.csv",
        ["number", "name", "category", "frequency", "coverage", "syns"],
        [
            [1, "black-c", "color(1)", 1, 0.5, ""],
            [2, "red-c", "color(1)", 1, 0.5, ""],
            [5, "sky", "object(2)", 2, 0.83, "heaven"],
            [7, "wood", "material(1);object(1)", 1, 1.5, "timber;lumber"],
            [12, "street-s", "scene(2)", 2, 2.0, ""],
            [20, "striped", "texture(1)", 1, 1.0, ""],
            [21, "dotted", "texture(1)", 1, 1.0, ""],
            [300, "wheel", "part(1)", 1, 0.17, ""],
            [301, "door", "part(1)", 1, 0.08, ""],
        ],
    )
    _csv(
        root / "category.csv",
        ["name", "first", "last", "count", "frequency"],
        [
            ["color", 1, 2, 2, 1],
            ["object", 5, 7, 2, 2],
            ["part", 300, 301, 2, 1],
            ["material", 7, 7, 1, 1],
            ["scene", 12, 12, 1, 2],
            ["texture", 20, 21, 2, 1],
        ],
    )
    c_head = ["code", "number", "name", "frequency", "coverage"]
    _csv(root / "c_color.csv", c_head, [[1, 1, "black-c", 1, 0.5], [2, 2, "red-c", 1, 0.5]])
    _csv(root / "c_object.csv", c_head, [[1, 5, "sky", 2, 0.83], [2, 7, "wood", 1, 0.5]])
    _csv(root / "c_part.csv", c_head, [[1, 300, "wheel", 1, 0.17], [2, 301, "door", 1, 0.08]])
    _csv(root / "c_material.csv", c_head, [[1, 7, "wood", 1, 1.0]])
    _csv(root / "c_scene.csv", c_head, [[1, 12, "street-s", 2, 2.0]])
    _csv(root / "c_texture.csv", c_head, [[1, 20, "striped", 1, 1.0], [2, 21, "dotted", 1, 1.0]])
    return root


@pytest.fixture()
def fixture_root(tmp_path: Path) -> Path:
    return make_broden(tmp_path / "broden_fixture")


def test_reader_on_fixture(fixture_root: Path) -> None:
    ds = Broden(fixture_root)
    assert len(ds) == 2
    assert ds.categories == ["color", "object", "part", "material", "scene", "texture"]
    assert ds.pixel_categories == ["color", "object", "part", "material"]
    assert ds.scalar_categories == ["scene", "texture"]
    assert ds.seg_shape == (SH, SW) and ds.image_shape == (IH, IW)
    a = ds[0]
    assert a["image"].shape == (3, IH, IW) and a["image"].dtype == torch.float32
    assert 0 <= float(a["image"].min()) and float(a["image"].max()) <= 1
    m = a["masks"]
    assert m["part"].shape == (2, SH, SW) and m["part"].dtype == torch.long
    assert torch.equal(m["part"][0], torch.from_numpy(PART_A1))  # R + 256 * G
    assert torch.equal(m["part"][1], torch.from_numpy(PART_A2))
    assert torch.equal(m["color"][0], torch.from_numpy(COLOR_A))
    assert torch.equal(m["material"][0], torch.from_numpy(MATERIAL_A))
    assert a["scalars"]["scene"].tolist() == [12]
    assert a["scalars"]["texture"].tolist() == [20, 21]  # multi-entry integer cell
    b = ds[1]
    assert b["masks"]["part"].shape == (0, SH, SW) and b["masks"]["color"].shape == (0, SH, SW)
    assert b["scalars"]["texture"].numel() == 0 and b["split"] == "val"

    lab = ds.labels
    assert list(lab.index[:3]) == [0, 1, 2] and len(lab) == 302
    assert lab.at[0, "name"] == "-" and lab.at[300, "name"] == "wheel"
    assert lab.at[7, "category"] == "material"  # coverage 1.0 (material) > 0.5 (object)
    assert lab.at[5, "category"] == "object" and lab.at[12, "category"] == "scene"
    assert lab.at[7, "code_object"] == 2 and lab.at[7, "coverage_material"] == 1.0
    assert lab.at[7, "syns"] == "timber;lumber"
    assert ds.label_number("wheel") == 300 and ds.label_number("wood", "material") == 7


def test_segmentation_batch_pads(fixture_root: Path) -> None:
    ds = Broden(fixture_root)
    assert ds.layer_categories == ["color", "object", "part", "part", "material"]
    assert ds.scalar_label_categories == ["scene", "texture", "texture"]
    imgs, pix, sc = ds.segmentation_batch([0, 1])
    assert imgs.shape == (2, 3, IH, IW) and pix.shape == (2, 5, SH, SW) and sc.shape == (2, 3)
    assert pix.dtype == torch.long and sc.dtype == torch.long
    assert torch.equal(pix[0, 3], torch.from_numpy(PART_A2))
    assert torch.equal(pix[1, 1], torch.from_numpy(OBJECT_B))
    assert not pix[1, [0, 2, 3, 4]].any()  # padding is 0
    assert sc.tolist() == [[12, 20, 21], [12, 0, 0]]


def test_split_and_category_filters(fixture_root: Path) -> None:
    val = Broden(fixture_root, split="val")
    assert len(val) == 1 and torch.equal(val[0]["masks"]["object"][0], torch.from_numpy(OBJECT_B))
    only = Broden(fixture_root, categories=["part", "scene"])
    assert only.categories == ["part", "scene"]
    item = only[0]
    assert set(item["masks"]) == {"part"} and set(item["scalars"]) == {"scene"}
    assert only.layer_categories == ["part", "part"]
    assert "code_color" not in only.labels.columns
    with pytest.raises(ValueError, match="splits present"):
        Broden(fixture_root, split="test")


# ---------------------------------------------------------------------------------------------
# Bad input: each error names the file (and row)
# ---------------------------------------------------------------------------------------------
def _rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("name", ["index.csv", "label.csv", "category.csv", "c_part.csv"])
def test_missing_file(fixture_root: Path, name: str) -> None:
    (fixture_root / name).unlink()
    with pytest.raises(FileNotFoundError, match=name.replace(".", r"\.")):
        Broden(fixture_root)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="index.csv"):
        Broden(tmp_path / "nowhere")


def test_missing_column(fixture_root: Path) -> None:
    _rewrite(fixture_root / "index.csv", "sh,sw", "sh,sx")
    with pytest.raises(ValueError, match=r"index\.csv.*'sw'"):
        Broden(fixture_root)
    make_broden(fixture_root)
    _rewrite(fixture_root / "index.csv", ",texture", ",textures")
    with pytest.raises(ValueError, match=r"category\.csv line 7.*'texture'"):
        Broden(fixture_root)
    make_broden(fixture_root)
    _rewrite(fixture_root / "label.csv", "number,name", "num,name")
    with pytest.raises(ValueError, match=r"label\.csv.*'number'"):
        Broden(fixture_root)


def test_png_size_mismatch(fixture_root: Path) -> None:
    _png(fixture_root / "images/ds/b_object.png", np.zeros((SH + 1, SW), int))
    ds = Broden(fixture_root)  # PNGs are read lazily
    with pytest.raises(ValueError, match=r"b_object\.png is 5x6 .*index\.csv line 3.*sh=4, sw=6"):
        ds[1]
    with pytest.raises(ValueError, match=r"b_object\.png"):
        ds.segmentation_batch([0, 1])


def test_image_size_mismatch(fixture_root: Path) -> None:
    Image.fromarray(np.zeros((IH, IW + 2, 3), np.uint8)).save(fixture_root / "images/ds/a.jpg")
    with pytest.raises(ValueError, match=r"a\.jpg is 8x14 but index\.csv line 2"):
        Broden(fixture_root)[0]


def test_missing_png(fixture_root: Path) -> None:
    (fixture_root / "images/ds/a_part_2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"a_part_2\.png \(index\.csv line 2\)"):
        Broden(fixture_root)[0]


def test_unknown_label_number(fixture_root: Path) -> None:
    _png(fixture_root / "images/ds/b_object.png", np.full((SH, SW), 299))  # 299 is not in label.csv
    with pytest.raises(
        ValueError, match=r"b_object\.png \(index\.csv line 3\).*\[299\].*label\.csv"
    ):
        Broden(fixture_root)[1]
    _rewrite(fixture_root / "index.csv", ",12,\n", ",13,\n")
    with pytest.raises(ValueError, match=r"index\.csv line 3, column 'scene': label number 13"):
        Broden(fixture_root)


def test_unknown_category(fixture_root: Path) -> None:
    with pytest.raises(ValueError, match=r"\['smell'\].*category\.csv.*has \['color'"):
        Broden(fixture_root, categories=["object", "smell"])


def test_bad_label_category_cell(fixture_root: Path) -> None:
    _rewrite(fixture_root / "label.csv", "color(1)", "color[1]")
    with pytest.raises(ValueError, match=r"label\.csv line 2: category cell"):
        Broden(fixture_root)


# ---------------------------------------------------------------------------------------------
# Concept world <-> Broden
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world() -> ConceptWorld:
    return ConceptWorld(size=40, seed=2)


@pytest.fixture(scope="module")
def exported(world: ConceptWorld, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return world.to_broden(tmp_path_factory.mktemp("world") / "broden", n=24, start=5)


def test_round_trip_masks_and_labels(world: ConceptWorld, exported: Path) -> None:
    ws = world.generate(24, start=5)
    ds = Broden(exported)
    assert len(ds) == 24 and ds.seg_shape == (20, 20) and ds.image_shape == (40, 40)
    assert ds.categories == ["color", "object", "part", "scene", "texture"]
    assert ds.scalar_categories == ["scene"]
    offsets = {
        cat: ds.label_number(names[0], cat) - 1 for cat, names in world.broden_label_names().items()
    }
    for i in range(len(ds)):
        item = ds[i]
        assert torch.allclose(item["image"], ws.images[i], atol=0.5 / 255 + 1e-6)
        for cat, mask in (
            ("object", ws.object_mask),
            ("part", ws.part_mask),
            ("color", ws.color_mask),
            ("texture", ws.texture_mask),
        ):
            want = half_resolution(mask[i].numpy())
            want = np.where(want > 0, want + offsets[cat], 0)
            got = item["masks"][cat]
            if not want.any():
                assert got.shape[0] == 0  # empty layers are not written
            else:
                assert torch.equal(got[0], torch.from_numpy(want)), (i, cat)
        assert item["scalars"]["scene"].tolist() == [int(ws.scene[i]) + offsets["scene"] + 1]
    for cat, names in world.broden_label_names().items():
        for k, name in enumerate(names):
            num = offsets[cat] + 1 + k
            assert ds.labels.at[num, "name"] == name and ds.labels.at[num, "category"] == cat


def test_as_broden_equals_export(world: ConceptWorld, exported: Path) -> None:
    mem = world.as_broden(24, start=5, chunk=10)
    ds = Broden(exported)
    pd.testing.assert_frame_equal(ds.labels, mem.labels)
    pd.testing.assert_frame_equal(ds.category_info, mem.category_info)
    assert ds.layer_categories == mem.layer_categories and ds.seg_shape == mem.seg_shape
    for i in range(len(ds)):
        a, b = ds[i], mem[i]
        assert torch.equal(a["image"], b["image"])
        assert a["masks"].keys() == b["masks"].keys() and a["scalars"].keys() == b["scalars"].keys()
        for c in a["masks"]:
            assert torch.equal(a["masks"][c], b["masks"][c]), (i, c)
        for c in a["scalars"]:
            assert torch.equal(a["scalars"][c], b["scalars"][c]), (i, c)
    for x, y in zip(
        ds.segmentation_batch([3, 0, 7]), mem.segmentation_batch(torch.tensor([3, 0, 7]))
    ):
        assert x.dtype == y.dtype and torch.equal(x, y)


def test_writer_is_atomic(
    world: ConceptWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "out"
    world.to_broden(root, n=2)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        world.to_broden(root, n=2)
    calls = {"n": 0}
    real = broden_write._png_labels

    def failing(lab: np.ndarray) -> Image.Image:
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("disk full")
        return real(lab)

    monkeypatch.setattr(broden_write, "_png_labels", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        world.to_broden(root, n=3, start=10, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp folder left
    assert len(Broden(root)) == 2  # old copy untouched
    monkeypatch.setattr(broden_write, "_png_labels", real)
    world.to_broden(root, n=3, start=10, overwrite=True)
    assert len(Broden(root)) == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_in_memory_generic_and_writer(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 3, 8, 8), dtype=np.uint8)
    obj = np.zeros((3, 2, 4, 4), np.int64)
    obj[0, 1] = 2  # empty first layer: moved behind the non-empty one
    obj[1, 0, :2] = 1
    mem = InMemoryBroden(
        images,
        {"object": obj},
        {"scene": np.array([[3], [3], [0]])},
        label_names=["-", "a", "b", "s"],
        label_categories=["", "object", "object", "scene"],
    )
    assert mem.layer_categories == ["object"] and mem.scalar_label_categories == ["scene"]
    assert (
        mem[0]["masks"]["object"].shape == (1, 4, 4) and int(mem[0]["masks"]["object"].max()) == 2
    )
    assert mem[2]["masks"]["object"].shape == (0, 4, 4) and mem[2]["scalars"]["scene"].numel() == 0
    assert mem.labels.at[3, "frequency"] == 2 and mem.labels.at[2, "coverage"] == 1.0
    root = write_broden(tmp_path / "g", mem)
    back = Broden(root)
    pd.testing.assert_frame_equal(back.labels, mem.labels)
    for i in range(3):
        assert torch.equal(back[i]["masks"]["object"], mem[i]["masks"]["object"])
    with pytest.raises(ValueError, match="outside 0..3"):
        InMemoryBroden(
            images, {"object": obj + 5}, {}, ["-", "a", "b", "s"], ["", "object", "object", "scene"]
        )


# ---------------------------------------------------------------------------------------------
# Audit: damaged files and bad arguments
# ---------------------------------------------------------------------------------------------
def _tiny_mem(names: list[str] | None = None) -> InMemoryBroden:
    images = np.zeros((3, 3, 8, 8), np.uint8)
    obj = np.zeros((3, 1, 4, 4), np.int64)
    obj[:, 0, :2] = 1
    return InMemoryBroden(
        images,
        {"object": obj},
        {"scene": np.array([[2], [2], [0]])},
        label_names=["-", "a", "s"],
        label_categories=["", "object", "scene"],
        image_names=names,
    )


def test_batch_indices_are_checked(fixture_root: Path) -> None:
    """Defect: an index past the end raised a bare "list index out of range" (Broden), and a boolean
    mask was read as the indices 0 and 1, silently returning the wrong images."""
    for ds in (Broden(fixture_root), _tiny_mem()):
        n = len(ds)
        with pytest.raises(IndexError, match=f"index {n} out of range for a set of {n} images"):
            ds.segmentation_batch([0, n])
        with pytest.raises(IndexError, match="out of range"):
            ds.images_batch([-n - 1])
        with pytest.raises(ValueError, match="whole numbers"):
            ds.images_batch([0.5])
        mask = torch.zeros(n, dtype=torch.bool)
        mask[-1] = True
        assert torch.equal(ds.images_batch(mask), ds.images_batch([n - 1]))
        for x, y in zip(ds.segmentation_batch(mask), ds.segmentation_batch([-1])):
            assert torch.equal(x, y)
        assert ds.images_batch([]).shape[0] == 0


def test_truncated_image_files(fixture_root: Path) -> None:
    """Defect: a truncated or garbage image raised PIL's bare OSError ("image file is truncated", no path)
    or UnidentifiedImageError, without the index.csv line."""
    ds = Broden(fixture_root)
    png = fixture_root / "images/ds/b_object.png"
    png.write_bytes(png.read_bytes()[:60])
    with pytest.raises(
        ValueError, match=r"b_object\.png \(index\.csv line 3\) cannot be read.*truncated"
    ):
        ds[1]
    (fixture_root / "images/ds/a.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"a\.jpg \(index\.csv line 2\) cannot be read"):
        ds.images_batch([0])


def test_duplicate_category_row(fixture_root: Path) -> None:
    """Defect: a category listed twice in category.csv shifted its cells by a row: image 1 silently got
    image 0's object mask."""
    with open(fixture_root / "category.csv", "a", newline="") as f:
        f.write("object,5,7,2,2\n")
    with pytest.raises(
        ValueError, match=r"category\.csv lists the categories \['object'\] more than once"
    ):
        Broden(fixture_root)


def test_nonpositive_segmentation_size(fixture_root: Path) -> None:
    """Defect: sh = -4 in index.csv was accepted and segmentation_batch failed with NumPy's "negative
    dimensions are not allowed"."""
    _rewrite(fixture_root / "index.csv", ",val,8,12,4,6,", ",val,8,12,-4,6,")
    with pytest.raises(ValueError, match=r"index\.csv line 3: ih, iw, sh, sw must be positive"):
        Broden(fixture_root)


def test_csv_with_byte_order_mark(fixture_root: Path) -> None:
    """Defect: a CSV saved with a UTF-8 byte-order mark (Excel) was refused: "missing column(s) ['image']"."""
    path = fixture_root / "index.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(Broden(fixture_root)) == 2


def test_in_memory_scalar_of_wrong_length() -> None:
    """Defect: image-level labels for 2N images were silently reshaped to (N, 2) instead of refused."""
    with pytest.raises(ValueError, match=r"scalar\['scene'\] must be \(N=3,\)"):
        InMemoryBroden(
            np.zeros((3, 3, 8, 8), np.uint8),
            {},
            {"scene": np.ones(6, np.int64)},
            label_names=["-", "s"],
            label_categories=["", "scene"],
        )


def test_writer_refuses_duplicate_image_names(tmp_path: Path) -> None:
    """Defect: two images with one name were written to the same file, so the export silently held one
    image twice."""
    with pytest.raises(ValueError, match=r"image_names must be unique.*\['x'\]"):
        write_broden(tmp_path / "out", _tiny_mem(["x", "y", "x"]))
    assert not list(tmp_path.iterdir())


def test_writer_restores_old_copy_when_final_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect: when the final rename failed, overwrite=True left no dataset at root (the old copy was
    hidden in a .old folder)."""
    root = write_broden(tmp_path / "out", _tiny_mem())
    real = broden_mod.os.replace

    def flaky(src, dst):
        if str(src).endswith(".tmp"):
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(broden_mod.os, "replace", flaky)
    with pytest.raises(OSError, match="disk full"):
        write_broden(root, _tiny_mem(), overwrite=True)
    monkeypatch.setattr(broden_mod.os, "replace", real)
    assert len(Broden(root)) == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_duplicate_label_number(fixture_root: Path) -> None:
    """Defect: a label number listed twice in label.csv was accepted, the later row silently replacing
    the name of the first."""
    with open(fixture_root / "label.csv", "a", newline="") as f:
        f.write("5,cloud,object(1),1,0.1,\n")
    with pytest.raises(
        ValueError, match=r"label\.csv line 11: label number 5 is already on line 4"
    ):
        Broden(fixture_root)


def test_in_memory_empty_or_list_input() -> None:
    """Defect: zero images failed with NumPy's "cannot reshape array of size 0", and pixel labels given as
    nested lists with "'list' object has no attribute 'shape'"."""
    with pytest.raises(ValueError, match=r"images is empty \(N = 0\)"):
        InMemoryBroden(
            np.zeros((0, 3, 8, 8), np.uint8),
            {"object": np.zeros((0, 1, 4, 4), np.int64)},
            {},
            label_names=["-", "a"],
            label_categories=["", "object"],
        )
    lists = [[[[0, 1], [1, 1]]], [[[0, 0], [0, 1]]]]
    mem = InMemoryBroden(
        np.zeros((2, 3, 4, 4), np.uint8),
        {"object": lists},
        {},
        label_names=["-", "a"],
        label_categories=["", "object"],
    )
    assert mem.seg_shape == (2, 2) and mem[0]["masks"]["object"].tolist() == [[[0, 1], [1, 1]]]


def test_in_memory_category_named_like_an_index_column() -> None:
    """Defect: a category called "split" was accepted; write_broden then wrote an index.csv with two
    "split" columns, and reading it back failed with "images/train ... is missing"."""
    with pytest.raises(
        ValueError, match=r"categories \['split'\] have the names of index.csv's own columns"
    ):
        InMemoryBroden(
            np.zeros((1, 3, 4, 4), np.uint8),
            {"split": np.zeros((1, 1, 2, 2), np.int64)},
            {},
            label_names=["-", "a"],
            label_categories=["", "split"],
        )


# -- labels_batch and the decode-once label cache ----------------------------------------------
def test_labels_batch_equals_segmentation_batch_without_images(
    fixture_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = Broden(fixture_root)
    _, pix, sc = ds.segmentation_batch([1, 0])

    def no_images(*a: object, **k: object) -> None:
        raise AssertionError("labels_batch decoded an image")

    monkeypatch.setattr(ds, "_load_image", no_images)
    pix2, sc2 = ds.labels_batch([1, 0])
    assert torch.equal(pix, pix2) and torch.equal(sc, sc2)
    assert pix2.dtype == sc2.dtype == torch.long


def _cache_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def test_label_cache_matches_decoding_and_is_reused(fixture_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "theirs.npy").write_bytes(b"not ours")  # never touched
    ref_pix, ref_sc = Broden(fixture_root).labels_batch([0, 1])
    ds = Broden(fixture_root, label_cache=folder)
    pix, sc = ds.labels_batch([0, 1])
    assert torch.equal(pix, ref_pix) and torch.equal(sc, ref_sc)
    files = _cache_files(folder)
    assert [p.suffix for p in files] == [".json", ".npy", ".npy"]
    npy = next(p for p in files if p.name.startswith("broden-labels-"))
    mtime = npy.stat().st_mtime_ns
    # a second object (another run, layer or model) reuses the file without decoding a PNG
    ds2 = Broden(fixture_root, label_cache=folder)
    ds2._load_png = None  # type: ignore[assignment]
    pix2, _ = ds2.labels_batch([1])
    assert torch.equal(pix2, ref_pix[1:]) and npy.stat().st_mtime_ns == mtime
    assert (folder / "theirs.npy").read_bytes() == b"not ours"


def test_label_cache_invalidated_when_a_label_file_changes(
    fixture_root: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "cache"
    Broden(fixture_root, label_cache=folder).labels_batch([0, 1])
    changed = OBJECT_B.copy()
    changed[0, 0] = 7
    png = fixture_root / "images/ds/b_object.png"
    st = png.stat()
    _png(png, changed)
    os.utime(png, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    pix, _ = Broden(fixture_root, label_cache=folder).labels_batch([1])
    assert torch.equal(pix, Broden(fixture_root).labels_batch([1])[0])
    assert int(pix[0, 1, 0, 0]) == 7
    assert len(_cache_files(folder)) == 2  # the stale file was replaced, not kept beside


@pytest.mark.parametrize("damage", ["flip", "truncate", "sidecar"])
def test_corrupt_label_cache_is_rebuilt(fixture_root: Path, tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "cache"
    ref, _ = Broden(fixture_root, label_cache=folder).labels_batch([0, 1])
    npy = next(folder.glob("broden-labels-*.npy"))
    data = bytearray(npy.read_bytes())
    if damage == "flip":
        data[-3] ^= 0xFF
        npy.write_bytes(bytes(data))
    elif damage == "truncate":
        npy.write_bytes(bytes(data[: len(data) // 2]))
    else:
        npy.with_suffix(".json").write_text("{not json")
    pix, _ = Broden(fixture_root, label_cache=folder).labels_batch([0, 1])
    assert torch.equal(pix, ref)
    assert np.array_equal(np.load(npy), ref.numpy())
