"""Issue 19 (trust): no code runs from a data file, overwrite never deletes what the library did not
write, no training is lost to a late cache error, no silent NaN or wrong-scale results, clear errors.
Each test names the defect it guards against; each failed on the code before the fix."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import interpkit as ik
from interpkit import cladec, clustering, explainer, resampling
from interpkit.data import Broden, InMemoryBroden, write_broden
from interpkit.models import training

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _private_cache(tmp_cache):
    return tmp_cache


def _tiny_mem() -> InMemoryBroden:
    images = np.zeros((3, 3, 8, 8), np.uint8)
    obj = np.zeros((3, 1, 4, 4), np.int64)
    obj[:, 0, :2] = 1
    return InMemoryBroden(
        images,
        {"object": obj},
        {"scene": np.array([[2], [2], [0]])},
        label_names=["-", "a", "s"],
        label_categories=["", "object", "scene"],
    )


@pytest.fixture(scope="module")
def rgb():
    """48 RGB 32x32 images in [0, 1] and an untrained VGG8 for them, in eval mode."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(48, 3, 32, 32, generator=g) * 0.3
    y = torch.arange(48) % 2
    x[y == 1, :, 8:20, 8:20] += 0.6
    torch.manual_seed(0)
    return ik.models.vgg8(2, in_channels=3, width=0.125, image_size=32).eval(), ik.data.ImageSet(
        x.clamp(0, 1), y, ["plain", "square"], "rgb"
    )


def _no_training(monkeypatch):
    """Make every trainer's inner loop fail loudly: a test then proves nothing was trained."""

    def boom(*a, **k):
        raise AssertionError("training ran")

    from interpkit.cladec import fitting as cladec_fitting
    from interpkit.explainer import training as explainer_training

    for mod in (training, cladec_fitting, explainer_training):
        monkeypatch.setattr(mod, "_fit", boom)


# ---------------------------------------------------------------------------------------------
# 1. code execution from a CIFAR file
# ---------------------------------------------------------------------------------------------
class _Payload:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar_batch_cannot_run_code(tmp_path, protocol):
    """Defect: the batches were read with plain pickle.load, so a crafted file in the data folder ran
    any code (here: os.mkdir) when the set was opened."""
    c10 = tmp_path / "cifar-10-batches-py"
    c10.mkdir()
    (c10 / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    hit = tmp_path / "pwned"
    (c10 / "test_batch").write_bytes(
        pickle.dumps({"data": _Payload(str(hit)), "labels": [1, 2]}, protocol=protocol)
    )
    with pytest.raises(
        ValueError, match=r"test_batch is not a plain CIFAR batch.*posix\.mkdir|nt\.mkdir"
    ):
        ik.data.torchvision_set("cifar10", tmp_path, train=False)
    assert not hit.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar_batches_of_every_pickle_protocol_still_load(tmp_path, protocol):
    """The restricted reader admits what real batches hold: NumPy arrays (old and new module names,
    every protocol), lists, dicts, strings, bytes, NumPy scalars."""
    c10 = tmp_path / "cifar-10-batches-py"
    c10.mkdir()
    data = np.arange(2 * 3072).astype(np.uint8).reshape(2, 3072)
    blob = pickle.dumps(
        {
            "data": data,
            "labels": [1, 9],
            "batch_label": b"testing batch 1 of 1",
            "n": np.int64(2),
            "filenames": ["a.png", "b.png"],
        },
        protocol=protocol,
    )
    if protocol == 2:  # what Python 2 and NumPy 1 wrote (the original files)
        blob = blob.replace(b"numpy._core", b"numpy.core")
    (c10 / "test_batch").write_bytes(blob)
    (c10 / "batches.meta").write_bytes(
        pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}, protocol=protocol)
    )
    d = ik.data.torchvision_set("cifar10", tmp_path, train=False)
    assert len(d) == 2 and d.labels.tolist() == [1, 9]
    assert torch.equal(d.images[1].flatten(), torch.from_numpy(data[1]).float() / 255)


# ---------------------------------------------------------------------------------------------
# 2. overwrite=True deletes only what write_broden wrote
# ---------------------------------------------------------------------------------------------
def test_overwrite_refuses_a_folder_that_is_not_a_written_dataset(tmp_path):
    """Defect: overwrite=True moved aside and deleted whatever was at the target: a folder of the
    reader's own files (notes.txt disappeared) or a regular file."""
    notes = tmp_path / "mine"
    notes.mkdir()
    (notes / "notes.txt").write_text("my notes")
    with pytest.raises(
        FileExistsError, match=f"{notes}.*not a Broden folder written by write_broden"
    ):
        write_broden(notes, _tiny_mem(), overwrite=True)
    assert (notes / "notes.txt").read_text() == "my notes" and sorted(os.listdir(notes)) == [
        "notes.txt"
    ]

    a_file = tmp_path / "file.bin"
    a_file.write_bytes(b"data")
    with pytest.raises(FileExistsError, match=f"{a_file}.*file"):
        write_broden(a_file, _tiny_mem(), overwrite=True)
    assert a_file.read_bytes() == b"data"

    world = ik.data.ConceptWorld(size=32, seed=0)
    with pytest.raises(FileExistsError, match="not a Broden folder written by write_broden"):
        world.to_broden(notes, 2, overwrite=True)
    assert (notes / "notes.txt").read_text() == "my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "file.bin",
        "mine",
    ]  # no temporary folders left


def test_overwrite_replaces_its_own_dataset_but_not_files_added_to_it(tmp_path):
    root = write_broden(tmp_path / "out", _tiny_mem())
    assert (root / ".interpkit-broden").is_file()
    write_broden(root, _tiny_mem(), overwrite=True)  # its own: replaced
    assert len(Broden(root)) == 3
    (root / "notes.txt").write_text("added by hand")
    with pytest.raises(
        FileExistsError, match=r"holds files write_broden did not write \(notes.txt\)"
    ):
        write_broden(root, _tiny_mem(), overwrite=True)
    assert (root / "notes.txt").read_text() == "added by hand"


# ---------------------------------------------------------------------------------------------
# 3. an unusable cache folder fails before training, in every cached trainer
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("trainer", ["train", "train_cladec", "train_refae", "train_explainer"])
def test_unusable_cache_fails_before_training(tmp_path, monkeypatch, rgb, trainer):
    """Defect: with INTERPKIT_CACHE pointing at a file, cladec's trainers and train_explainer trained to
    the end and then failed in mkdir, losing the run."""
    perf, data = rgb
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("INTERPKIT_CACHE", str(blocker))
    _no_training(monkeypatch)
    frozen = ik.models.freeze(ik.models.vgg8(2, in_channels=3, width=0.125, image_size=32))
    call = {
        "train": lambda: ik.models.train(
            ik.models.vgg8(2, 3, width=0.125), data, epochs=1, progress=False
        ),
        "train_cladec": lambda: cladec.train_cladec(
            frozen, "features.3", data, epochs=1, width=0.125, progress=False, device="cpu"
        ),
        "train_refae": lambda: cladec.train_refae(
            frozen, "features.3", data, epochs=1, width=0.125, progress=False, device="cpu"
        ),
        "train_explainer": lambda: explainer.train_explainer(
            perf, data, "features.1", "features.3", epochs=1, progress=False, device="cpu"
        ),
    }[trainer]
    with pytest.raises(OSError, match=r"cannot be used.*INTERPKIT_CACHE"):
        call()


# ---------------------------------------------------------------------------------------------
# 4. one image policy: finite, float, in [0, 1]
# ---------------------------------------------------------------------------------------------
def _bad(x: torch.Tensor, kind: str) -> torch.Tensor:
    x = x.clone()
    if kind == "nan":
        x[0, 0, 0, 0] = float("nan")
    elif kind == "inf":
        x[-1, 0, 1, 1] = float("inf")
    elif kind == "0-255":
        x = x * 255
    return x


@pytest.mark.parametrize("kind", ["nan", "inf", "0-255"])
def test_bad_pixel_values_are_refused_not_turned_into_nan(rgb, kind):
    """Defect: NaN/inf images gave all-NaN outputs silently in predict_proba, cladec.reconstruct and
    resampling.analyze; 0..255 floats were accepted everywhere."""
    perf, data = rgb
    x = _bad(data.images[:4], kind)
    cd = cladec.train_cladec(
        ik.models.freeze(copy.deepcopy(perf)),
        "features.3",
        data,
        epochs=1,
        width=0.125,
        progress=False,
        device="cpu",
    )
    msg = r"must be finite and lie in \[0, 1\]"
    for call in (
        lambda: ik.models.predict_proba(perf, x),
        lambda: cladec.reconstruct(cd, x),
        lambda: resampling.analyze(perf, x, ["features.1"], n=4, device="cpu"),
        lambda: clustering.activation_matrices(perf, x, "features.1", device="cpu"),
        lambda: ik.data.ImageSet(x, data.labels[:4]),
    ):
        with pytest.raises(ValueError, match=msg):
            call()


@pytest.mark.parametrize("kind", ["nan", "0-255"])
def test_train_explainer_refuses_bad_images_and_caches_nothing(rgb, tmp_cache, kind):
    """Defect: train_explainer trained on NaN images and cached a NaN explainer (models.train and
    train_cladec refused them); 0..255 images trained a meaningless one."""
    perf, data = rgb
    bad = ik.data.ImageSet(data.images.clone(), data.labels)
    bad.images = _bad(data.images, kind)  # changed after the set was made
    with pytest.raises(ValueError, match=r"training images must be finite and lie in \[0, 1\]"):
        explainer.train_explainer(
            perf, bad, "features.1", "features.3", epochs=1, progress=False, device="cpu"
        )
    with pytest.raises(ValueError, match=r"training images must be finite and lie in \[0, 1\]"):
        ik.models.train(ik.models.vgg8(2, 3, width=0.125), bad, epochs=1, progress=False)
    assert not list(tmp_cache.rglob("*.pt"))


def test_eight_bit_images_are_refused_with_the_fix(rgb):
    """Defect: activation_matrices took uint8 images and ran them unscaled (0..255)."""
    perf, data = rgb
    x8 = (data.images[:4] * 255).to(torch.uint8)
    with pytest.raises(TypeError, match=r"floating point in \[0, 1\].*/ 255"):
        clustering.activation_matrices(perf, x8, "features.1", device="cpu")
    with pytest.raises(ValueError, match="8-bit values.*divide by 255"):
        ik.data.ImageSet(x8.float(), data.labels[:4])


def test_truncated_index_csv_is_refused(tmp_path):
    """Defect: an index.csv cut off in its last row opened, with a half row read as an image with no
    labels."""
    root = write_broden(tmp_path / "b", _tiny_mem())
    text = (root / "index.csv").read_text()
    (root / "index.csv").write_text(text[: text.rindex(",") - 3])  # cut inside the last row
    with pytest.raises(
        ValueError, match=r"index.csv line 4: \d+ cells but the header has 12.*truncated"
    ):
        Broden(root)


def test_reconstruction_error_refuses_another_performer(rgb):
    """Defect: the explainer metrics accepted a performer other than the one the explainer was
    distilled from, and reported numbers for a pairing that means nothing."""
    perf, data = rgb
    ex = explainer.train_explainer(
        perf, data, "features.1", "features.3", epochs=1, progress=False, device="cpu"
    )
    assert len(explainer.reconstruction_error(ex, perf, data)) == 1
    torch.manual_seed(1)
    other = ik.models.vgg8(
        2, in_channels=3, width=0.125, image_size=32
    ).eval()  # same shapes, other weights
    for fn in (explainer.reconstruction_error, explainer.accuracy_with_reconstruction):
        with pytest.raises(ValueError, match="distilled from another performer"):
            fn(ex, other, data)
    with pytest.raises(ValueError, match="distilled from another performer"):
        explainer.explainer_maps(ex, other, data.images[:2])


# ---------------------------------------------------------------------------------------------
# 5. clear errors instead of crashes
# ---------------------------------------------------------------------------------------------
def test_train_on_a_frozen_model_says_so(tiny_images):
    """Defect: a frozen model failed inside autograd ("element 0 of tensors does not require grad")."""
    m = ik.models.freeze(ik.models.vgg8(2, 1, width=0.125))
    with pytest.raises(ValueError, match="frozen.*requires_grad_"):
        ik.models.train(m, tiny_images, epochs=1, progress=False)


def test_cache_file_of_another_architecture_retrains(tiny_images, tmp_cache):
    """Defect: a cache file with the right keys but another architecture's shapes crashed in
    load_state_dict (size mismatch); and the seeded cache key ignored the architecture's width, so
    vgg8 widths 0.125 and 0.25 trained with one seed shared one file."""
    kw = dict(epochs=1, progress=False, batch_size=16)
    a = ik.models.train(ik.models.vgg8(2, 1, width=0.125), tiny_images, **kw)
    b = ik.models.train(ik.models.vgg8(2, 1, width=0.25), tiny_images, **kw)
    assert a.cache_path != b.cache_path  # the width is part of the key
    blob = torch.load(a.cache_path, weights_only=True)
    blob["state_dict"] = torch.load(b.cache_path, weights_only=True)["state_dict"]
    torch.save(blob, a.cache_path)  # right keys, wrong shapes
    with pytest.warns(
        RuntimeWarning, match=f"{a.cache_path.name} holds weights of another architecture"
    ):
        again = ik.models.train(ik.models.vgg8(2, 1, width=0.125), tiny_images, **kw)
    for k, v in a.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])  # retrained to the same model


def test_cladec_cache_file_of_another_architecture_retrains(rgb):
    perf, data = rgb
    frozen = ik.models.freeze(copy.deepcopy(perf))
    kw = dict(epochs=1, progress=False, device="cpu")
    a = cladec.train_cladec(frozen, "features.3", data, width=0.125, **kw)
    b = cladec.train_cladec(frozen, "features.3", data, width=0.25, **kw)
    blob = torch.load(a.cache_path, weights_only=True)
    blob["decoder"] = torch.load(b.cache_path, weights_only=True)["decoder"]
    torch.save(blob, a.cache_path)
    with pytest.warns(RuntimeWarning, match="holds weights of another architecture"):
        cladec.train_cladec(frozen, "features.3", data, width=0.125, **kw)


def test_write_broden_of_a_file_backed_broden(tmp_path):
    """Defect: write_broden(root, Broden(...)) failed with AttributeError: 'Broden' object has no
    attribute 'image_names'."""
    ds = Broden(write_broden(tmp_path / "a", _tiny_mem()))
    with pytest.raises(TypeError, match="InMemoryBroden.*copy its folder"):
        write_broden(tmp_path / "b", ds)
    assert not (tmp_path / "b").exists()


def test_capture_names_uint8_and_numpy_inputs(rgb):
    """Defect: uint8 tensors or NumPy arrays fed to a model inside capture() failed deep inside the
    first convolution with torch's dtype or argument error."""
    perf, data = rgb
    x = data.images[:2]
    with pytest.raises(
        TypeError, match=r"torch.uint8 images inside capture\(\).*x.float\(\) / 255"
    ):
        with ik.capture(perf, "features.1"):
            perf((x * 255).to(torch.uint8))
    with pytest.raises(TypeError, match=r"NumPy array.*torch.from_numpy"):
        with ik.capture(perf, "features.1"):
            perf(x.numpy())
    with ik.capture(perf, "features.1") as acts:  # float images: as before
        perf(x)
    assert acts["features.1"].shape[0] == 2


def test_concept_pixel_image_names_the_right_size():
    """Defect: a wrong image_size failed with a bare reshape error ("cannot reshape array of size 64")."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 1, 8, 8, generator=g)
    res = clustering.coupled_nmf(
        {"a": torch.rand(20, 12, generator=g)},
        rank=2,
        pixels=clustering.pixel_matrices(x),
        n_iter=3,
        device="cpu",
    )
    assert clustering.concept_pixel_image(res, 0, (8, 8)).shape == (1, 8, 8)
    with pytest.raises(ValueError, match=r"64 pixels per channel.*H \* W = 64, e.g. \(8, 8\)"):
        clustering.concept_pixel_image(res, 0, (7, 7))


# ---------------------------------------------------------------------------------------------
# 6. the README's training hits the cache in a second process
# ---------------------------------------------------------------------------------------------
def test_readme_training_hits_the_cache_in_a_second_process(tmp_path):
    """The README example's model training (world, split, vgg8, train), on tiny data, run in two
    fresh processes with one private cache: the second loads the first's model and trains nothing."""
    block = _readme_block()
    lines = block.splitlines()
    upto = next(i for i, l in enumerate(lines) if "ik.models.train(" in l)
    code = "\n".join(lines[: upto + 1]).replace("world.split(600, 100)", "world.split(24, 4)")
    assert "world.split(24, 4)" in code and "ik.models.train(model, train, epochs=1)" in code
    script = (
        textwrap.dedent("""
        import hashlib, sys
        import torch
        torch.set_num_threads(1)
        from interpkit.models import training
        if sys.argv[1] == "second":
            def boom(*a, **k):
                raise SystemExit("trained again: the cache was missed")
            training._fit = boom
    """)
        + code
        + textwrap.dedent("""
        h = hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.state_dict().values())).hexdigest()
        print("RESULT", model.cache_path.name, h)
    """)
    )
    env = {
        **os.environ,
        "INTERPKIT_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
    }
    out = []
    for which in ("first", "second"):
        run = subprocess.run(
            [sys.executable, "-c", script, which],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        out.append(next(l for l in run.stdout.splitlines() if l.startswith("RESULT")))
    assert out[0] == out[1]


def _readme_block() -> str:
    import re

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return next(b for b in blocks if "dissection.dissect" in b)


# ---------------------------------------------------------------------------------------------
# bounded fuzz: every public entry point that takes images, fed bad input of every kind
# ---------------------------------------------------------------------------------------------
def _inputs(x: torch.Tensor) -> dict[str, object]:
    """Bad variants of a valid batch ``x`` (N, C, H, W) in [0, 1]."""
    return {
        "nan": _bad(x, "nan"),
        "inf": _bad(x, "inf"),
        "0-255": _bad(x, "0-255"),
        "uint8": (x * 255).to(torch.uint8),
        "empty": x[:0],
        "2-D": x[0, 0],
        "5-D": x[None],
        "numpy": x.numpy(),
        "list": x.tolist()[:1],
        "string": "image.png",
        "none": None,
    }


def _finite(out: object) -> bool:
    """Whether every float number in ``out`` (tensors, arrays, frames, dicts, results) is finite."""
    import pandas as pd

    if isinstance(out, torch.Tensor):
        return not out.is_floating_point() or bool(torch.isfinite(out).all())
    if isinstance(out, np.ndarray):
        return out.dtype.kind != "f" or bool(np.isfinite(out).all())
    if isinstance(out, pd.DataFrame):
        return _finite(out.select_dtypes("number").to_numpy(dtype=float))
    if isinstance(out, dict):
        return all(_finite(v) for v in out.values())
    if hasattr(out, "scores"):  # a ResamplingResult
        return _finite(out.scores)
    return True


def test_fuzz_every_image_entry_point(rgb, recwarn):
    """Each entry point gives a clear TypeError/ValueError for NaN, inf, 0..255, uint8, empty,
    wrong-shape and wrong-type images, or a correct result (never a NaN output without an error or
    a warning, never a raw error from inside torch)."""
    import warnings

    perf, data = rgb
    frozen = ik.models.freeze(copy.deepcopy(perf))
    cd = cladec.train_cladec(
        frozen, "features.3", data, epochs=1, width=0.125, progress=False, device="cpu"
    )
    ex = explainer.train_explainer(
        perf, data, "features.1", "features.3", epochs=1, progress=False, device="cpu"
    )
    labels4 = data.labels[:4]

    def as_set(x):  # an ImageSet whose images were replaced after it was made (skips its own check)
        s = ik.data.ImageSet(data.images[:4].clone(), labels4)
        s.images = x
        return s

    def in_capture(x):
        with ik.capture(perf, "features.1") as acts:
            perf(x)
        return dict(acts)

    entry = {
        "ImageSet": lambda x: ik.data.ImageSet(x, labels4),
        "models.predict_proba": lambda x: ik.models.predict_proba(perf, x),
        "models.evaluate": lambda x: ik.models.evaluate(perf, as_set(x)),
        "models.train": lambda x: ik.models.train(
            ik.models.vgg8(2, 3, width=0.125), as_set(x), epochs=1, progress=False
        ),
        "capture": in_capture,
        "cladec.reconstruct": lambda x: cladec.reconstruct(cd, x),
        "cladec.train_cladec": lambda x: cladec.train_cladec(
            frozen, "features.3", as_set(x), epochs=1, width=0.125, progress=False, device="cpu"
        ),
        "resampling.perturb": lambda x: resampling.perturb(x, n=3),
        "resampling.analyze": lambda x: resampling.analyze(
            perf, x, ["features.1"], n=3, device="cpu"
        ),
        "resampling.ablation_study": lambda x: resampling.ablation_study(
            perf, x, layers=["features.1"], k=1, n=3, n_random=1, device="cpu"
        ),
        "clustering.pixel_matrices": lambda x: clustering.pixel_matrices(x),
        "clustering.activation_matrices": lambda x: clustering.activation_matrices(
            perf, x, "features.1", device="cpu"
        ),
        "explainer.performer_features": lambda x: explainer.performer_features(
            perf, x, "features.1", device="cpu"
        ),
        "explainer.explainer_maps": lambda x: explainer.explainer_maps(ex, perf, x, device="cpu"),
        "explainer.reconstruction_error": lambda x: explainer.reconstruction_error(
            ex, perf, as_set(x), device="cpu"
        ),
        "explainer.train_explainer": lambda x: explainer.train_explainer(
            perf, as_set(x), "features.1", "features.3", epochs=1, progress=False, device="cpu"
        ),
    }
    takes_set = {
        "models.evaluate",
        "models.train",
        "cladec.train_cladec",
        "explainer.reconstruction_error",
        "explainer.train_explainer",
    }
    bad_calls = []
    for name, fn in entry.items():
        for kind, x in _inputs(data.images[:4]).items():
            if name in takes_set and not isinstance(x, torch.Tensor):
                continue  # an ImageSet holds a tensor: other types are ImageSet's case
            if name == "capture" and kind == "0-255":
                continue  # by design: a model may take normalised inputs (no range check)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    out = fn(x)
                except (TypeError, ValueError, IndexError, KeyError) as exc:
                    if len(str(exc)) < 30:
                        bad_calls.append(f"{name}({kind}): terse {type(exc).__name__}: {exc}")
                    continue
                except Exception as exc:  # a raw error from inside torch or NumPy
                    bad_calls.append(f"{name}({kind}): {type(exc).__name__}: {str(exc)[:120]}")
                    continue
            if kind not in ("empty",) and not caught:
                bad_calls.append(f"{name}({kind}): accepted without an error or a warning")
            elif not _finite(out) and not caught:
                bad_calls.append(f"{name}({kind}): NaN output without an error or a warning")
    assert not bad_calls, "\n".join(bad_calls)
