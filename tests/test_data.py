import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

import interpkit as ik
from interpkit.data import ImageSet


def test_mnist5k_is_real_balanced_digits():
    d = ik.data.mnist5k()
    assert d.images.shape == (5000, 1, 28, 28) and d.images.dtype == torch.float32
    assert d.images.min() == 0 and d.images.max() == 1
    assert torch.bincount(d.labels).tolist() == [500] * 10
    assert 0.08 < d.images.mean() < 0.2  # MNIST's ink fraction, not noise


def test_sklearn_digits_and_photographs():
    d = ik.data.sklearn_digits()
    assert d.images.shape == (1797, 1, 8, 8) and d.images.max() <= 1
    photos = ik.data.photographs(("astronaut", "coffee"))
    assert (
        photos["astronaut"].shape == (3, 512, 512)
        and 0 <= photos["coffee"].min() <= photos["coffee"].max() <= 1
    )
    with pytest.raises(KeyError, match="choose from"):
        ik.data.photographs(("no_such_photo",))


def test_split_subset_resize():
    d = ik.data.sklearn_digits()
    tr, te = d.split(1000, 500, seed=3)
    assert len(tr) == 1000 and len(te) == 500
    assert tr.fingerprint() != te.fingerprint()
    both = torch.cat([tr.images, te.images]).flatten(1)
    assert len(torch.unique(both, dim=0)) >= 1490  # disjoint (a few digits are pixel-identical)
    assert tr.split(10, 10, seed=0)[0].fingerprint() == tr.split(10, 10, seed=0)[0].fingerprint()
    r = tr.resized(32)
    assert r.image_size == (32, 32) and torch.equal(r.labels, tr.labels)
    assert tr.to_rgb().num_channels == 3
    with pytest.raises(ValueError, match="cannot split"):
        d.split(1500, 500)


def test_imageset_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ImageSet(torch.rand(10, 28, 28), torch.zeros(10))
    with pytest.raises(ValueError, match="empty"):
        ImageSet(torch.rand(0, 1, 28, 28), torch.zeros(0))
    with pytest.raises(ValueError, match="one integer label per image"):
        ImageSet(torch.rand(4, 1, 8, 8), torch.zeros(3))


def _write_idx(path, array, gz=False):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "i" * array.ndim, *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST"])
def test_torchvision_idx_fixture(tmp_path, name):
    raw = tmp_path / name / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    imgs, labels = rng.integers(0, 256, (7, 28, 28)), rng.integers(0, 10, 7)
    _write_idx(raw / "train-images-idx3-ubyte", imgs)
    _write_idx(raw / "train-labels-idx1-ubyte", labels, gz=True)
    d = ik.data.torchvision_set(name, tmp_path, train=True)
    assert d.images.shape == (7, 1, 28, 28) and d.labels.tolist() == labels.tolist()
    assert torch.allclose(d.images[3, 0], torch.from_numpy(imgs[3] / 255.0).float())
    assert len(ik.data.torchvision_set(name, tmp_path, limit=3)) == 3
    with pytest.raises(FileNotFoundError, match="mnist5k"):
        ik.data.torchvision_set(name, tmp_path, train=False)  # no t10k files written


def test_torchvision_truncated_idx_is_reported(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "train-images-idx3-ubyte", np.zeros((4, 28, 28)))
    (raw / "train-images-idx3-ubyte").write_bytes(
        (raw / "train-images-idx3-ubyte").read_bytes()[:500]
    )
    _write_idx(raw / "train-labels-idx1-ubyte", np.zeros(4))
    with pytest.raises(ValueError, match="truncated"):
        ik.data.torchvision_set("mnist", tmp_path)


def test_torchvision_cifar_fixtures(tmp_path):
    rng = np.random.default_rng(1)
    c10 = tmp_path / "cifar-10-batches-py"
    c10.mkdir()
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(c10 / f, "wb") as fh:
            pickle.dump(
                {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [1, 9]}, fh
            )
    with open(c10 / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    d = ik.data.torchvision_set("CIFAR10", tmp_path, train=True)
    assert (
        d.images.shape == (10, 3, 32, 32)
        and d.classes[9] == "c9"
        and d.labels[:2].tolist() == [1, 9]
    )
    assert len(ik.data.torchvision_set("cifar10", tmp_path, train=False)) == 2
    c100 = tmp_path / "cifar-100-python"
    c100.mkdir()
    with open(c100 / "train", "wb") as fh:
        pickle.dump(
            {"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), "fine_labels": [0, 50, 99]},
            fh,
        )
    with open(c100 / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"f{i}" for i in range(100)]}, fh)
    d = ik.data.torchvision_set("CIFAR100", tmp_path)
    assert d.num_classes == 100 and d.labels.tolist() == [0, 50, 99]
    with pytest.raises(FileNotFoundError, match="ConceptWorld"):
        ik.data.torchvision_set("CIFAR100", tmp_path, train=False)
    with pytest.raises(KeyError, match="choose from"):
        ik.data.torchvision_set("imagenet", tmp_path)


def test_imageset_rejects_integer_images():
    """Defect: uint8 images were cast to float without / 255, giving values up to 255 silently."""
    with pytest.raises(TypeError, match=r"float\(\) / 255"):
        ImageSet(torch.randint(0, 256, (3, 1, 4, 4), dtype=torch.uint8), torch.tensor([0, 1, 1]))
    assert (
        ImageSet(torch.rand(2, 1, 4, 4).double(), [0, 1]).images.dtype == torch.float32
    )  # still fine


def test_imageset_rejects_bad_labels():
    """Defect: fractional labels were truncated (0.5 -> 0), negative labels and labels beyond the named
    classes were accepted and only failed later, deep inside cross-entropy ("Target 5 is out of bounds")."""
    x = torch.rand(3, 1, 4, 4)
    with pytest.raises(ValueError, match="whole numbers"):
        ImageSet(x, torch.tensor([0.5, 1.0, 2.0]))
    with pytest.raises(ValueError, match=">= 0"):
        ImageSet(x, torch.tensor([0, -1, 1]))
    with pytest.raises(ValueError, match="only 2 classes are named"):
        ImageSet(x, torch.tensor([0, 1, 5]), ["a", "b"])
    assert ImageSet(x, torch.tensor([0.0, 1.0, 2.0])).labels.tolist() == [
        0,
        1,
        2,
    ]  # whole floats are fine


def test_subset_boolean_mask_and_fractional_index():
    """Defect: a boolean mask (d.subset(d.labels == 1)) was cast to indices 0/1, and fractional indices
    were truncated, both silently selecting the wrong images."""
    d = ImageSet(torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 0, 1, 0, 1]))
    s = d.subset(d.labels == 1)
    assert len(s) == 3 and s.labels.tolist() == [1, 1, 1] and torch.equal(s.images, d.images[1::2])
    with pytest.raises(ValueError, match="one entry per image"):
        d.subset(torch.tensor([True, False]))
    with pytest.raises(ValueError, match="whole numbers"):
        d.subset(np.linspace(0, 5, 4))
    with pytest.raises(ValueError, match="1-D"):
        d.subset(3)
    assert d.subset(torch.tensor([1.0, 3.0])).labels.tolist() == [1, 1]


def test_split_and_resized_check_sizes():
    """Defect: split(2.0, 2) failed with a raw slicing TypeError, resized(0) with a RuntimeError inside
    F.interpolate, and resized(np.int64(8)) with "'numpy.int64' object is not iterable"."""
    d = ImageSet(torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 0, 1, 0, 1]))
    with pytest.raises(ValueError, match="n_train must be a positive integer"):
        d.split(2.0, 2)
    with pytest.raises(ValueError, match="size must be a positive integer"):
        d.resized(0)
    with pytest.raises(ValueError, match=r"pair \(height, width\)"):
        d.resized(8.0)
    assert d.resized(np.int64(8)).image_size == (8, 8) and d.resized((6, 10)).image_size == (6, 10)


def test_torchvision_limit_must_be_positive(tmp_path):
    """Defect: limit=-1 silently dropped the last image (images[:-1]) instead of being refused."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "train-images-idx3-ubyte", np.zeros((4, 28, 28)))
    _write_idx(raw / "train-labels-idx1-ubyte", np.arange(4))
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        ik.data.torchvision_set("mnist", tmp_path, limit=-1)
    assert len(ik.data.torchvision_set("mnist", tmp_path, limit=2)) == 2


def test_torchvision_damaged_idx_files(tmp_path):
    """Defect: a cut-off .gz download raised a bare EOFError, a cut-off header NumPy's "buffer is smaller
    than requested size", and swapped image/label files a misleading message about channel axes."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "train-images-idx3-ubyte", np.zeros((4, 28, 28)), gz=True)
    _write_idx(raw / "train-labels-idx1-ubyte", np.arange(4))
    gz = raw / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:40])
    with pytest.raises(
        ValueError, match=r"train-images-idx3-ubyte\.gz is truncated or corrupt.*re-download"
    ):
        ik.data.torchvision_set("mnist", tmp_path)
    gz.unlink()
    (raw / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(ValueError, match="header is cut off"):
        ik.data.torchvision_set("mnist", tmp_path)
    _write_idx(raw / "train-images-idx3-ubyte", np.arange(4))
    _write_idx(raw / "train-labels-idx1-ubyte", np.zeros((4, 28, 28)))
    with pytest.raises(ValueError, match="swapped"):
        ik.data.torchvision_set("mnist", tmp_path)


def test_torchvision_damaged_cifar_files(tmp_path):
    """Defect: a truncated CIFAR batch raised a bare UnpicklingError, a batch of another set KeyError('labels'),
    and data of the wrong size "cannot reshape array", none naming the file."""
    c10 = tmp_path / "cifar-10-batches-py"
    c10.mkdir()
    with open(c10 / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    with open(c10 / "test_batch", "wb") as fh:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 2]}, fh)
    assert len(ik.data.torchvision_set("cifar10", tmp_path, train=False)) == 2
    (c10 / "test_batch").write_bytes((c10 / "test_batch").read_bytes()[:100])
    with pytest.raises(ValueError, match=r"test_batch is truncated or corrupt"):
        ik.data.torchvision_set("cifar10", tmp_path, train=False)
    with open(c10 / "test_batch", "wb") as fh:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "fine_labels": [1, 2]}, fh)
    with pytest.raises(ValueError, match=r"test_batch has no \['labels'\]"):
        ik.data.torchvision_set("cifar10", tmp_path, train=False)
    with open(c10 / "test_batch", "wb") as fh:
        pickle.dump({"data": np.zeros((2, 3000), np.uint8), "labels": [1, 2]}, fh)
    with pytest.raises(ValueError, match=r"test_batch: data of shape \(2, 3000\)"):
        ik.data.torchvision_set("cifar10", tmp_path, train=False)


def test_photographs_single_name_and_non_photographs():
    """Defect: photographs("astronaut") iterated the letters (KeyError for 'a'), a boolean image
    (horse) came back silently near-black (True / 255), and a non-image raised a bare IndexError."""
    assert set(ik.data.photographs("astronaut")) == {"astronaut"}
    with pytest.raises(ValueError, match="not an 8-bit photograph"):
        ik.data.photographs(("horse",))
    with pytest.raises(ValueError, match="not an 8-bit photograph"):
        ik.data.photographs(("lbp_frontal_face_cascade_filename",))


def test_photographs_refuses_downloads_and_non_loaders(monkeypatch):
    """Defect: photographs("data_dir") raised "'str' object is not callable", "download_all" would have
    fetched every optional file of scikit-image, and a photograph that must be downloaded (lily)
    failed with scikit-image's advice to install pooch instead of naming the offline ones."""
    import skimage.data

    for name in ("data_dir", "download_all", 3):
        with pytest.raises(KeyError, match="no photograph"):
            ik.data.photographs((name,))

    def needs_download():
        raise ModuleNotFoundError("The requested file ... requires ... pooch.")

    monkeypatch.setattr(skimage.data, "lily", needs_download)
    with pytest.raises(FileNotFoundError, match="does not ship with scikit-image.*astronaut"):
        ik.data.photographs("lily")
