import math

import pytest
import torch
from torch import nn

import interpkit as ik
from interpkit import cladec

pytestmark = pytest.mark.usefixtures("one_thread")  # many tiny tensor ops: see conftest


@pytest.fixture(autouse=True)
def _private_cache(tmp_cache):
    """Every test trains into its own empty cache, never into the user's."""
    return tmp_cache


@pytest.fixture(scope="module")
def data16():
    """64 grey 16x16 images, two classes (a bright square or not): small enough for fast tests."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 16, 16, generator=g) * 0.2
    y = torch.arange(64) % 2
    x[y == 1, :, 4:12, 4:12] += 0.7
    return ik.data.ImageSet(x.clamp(0, 1), y, ["dark", "square"], "tiny16")


@pytest.fixture(scope="module")
def frozen():
    """A frozen, randomly initialised VGG8 for 16x16 inputs (ClaDec needs no trained weights to run)."""
    torch.manual_seed(0)
    return ik.models.freeze(ik.models.vgg8(2, 1, width=0.125, image_size=16))


FAST = dict(epochs=2, batch_size=16, width=0.125, progress=False, device="cpu")


# -- decoder -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "act_shape, n_up",
    [
        ((16, 8, 8), 2),
        ((32, 4, 4), 3),
        ((64, 1, 1), 5),
        ((10,), 5),
        ((8, 32, 32), 0),
        ((8, 16, 16), 1),
    ],
)
def test_decoder_maps_any_decodable_shape_to_the_image(act_shape, n_up):
    dec = cladec.build_decoder(act_shape, (3, 32, 32), width=0.25)
    out = dec(torch.rand(2, *act_shape))
    assert (
        out.shape == (2, 3, 32, 32)
        and float(out.detach().min()) >= 0
        and float(out.detach().max()) <= 1
    )
    ups = [m for m in dec.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(ups) == n_up
    assert all(m.kernel_size == (4, 4) and m.stride == (2, 2) and m.padding == (1, 1) for m in ups)
    # DCGAN layout: channels halve towards the image, the last hidden layer has 64 * width channels
    hidden = [m.out_channels for m in ups[:-1]]
    if hidden:
        assert hidden[-1] == 16 and all(a == 2 * b for a, b in zip(hidden, hidden[1:]))
    assert isinstance(dec.stem[1], nn.Linear) == (len(act_shape) == 1 or act_shape[1:] == (1, 1))


def test_decoder_non_square_and_mean_init():
    dec = cladec.build_decoder((4, 2, 3), (1, 8, 12), mean_pixel=0.1)
    assert dec(torch.rand(3, 4, 2, 3)).shape == (3, 1, 8, 12)
    assert math.isclose(float(dec.output_layer.bias.detach()), math.log(0.1 / 0.9), rel_tol=1e-5)
    dec3 = cladec.build_decoder((4, 2, 2), (3, 8, 8), mean_pixel=[0.2, 0.5, 0.8])
    torch.testing.assert_close(torch.sigmoid(dec3.output_layer.bias), torch.tensor([0.2, 0.5, 0.8]))
    with pytest.raises(ValueError, match="one per image channel"):
        cladec.build_decoder((4, 2, 2), (3, 8, 8), mean_pixel=[0.2, 0.5])


@pytest.mark.parametrize(
    "act_shape, image_shape",
    [
        ((16, 3, 3), (1, 32, 32)),
        ((16, 64, 64), (1, 32, 32)),
        ((16, 4, 8), (1, 32, 32)),
        ((10,), (1, 28, 28)),
        ((4, 5), (1, 32, 32)),
    ],
)
def test_undecodable_shapes_are_named_in_the_error(act_shape, image_shape):
    with pytest.raises(ValueError, match="cannot decode") as err:
        cladec.build_decoder(act_shape, image_shape)
    assert str(act_shape) in str(err.value)


def test_decoder_rejects_wrong_input_shape():
    dec = cladec.build_decoder((8, 4, 4), (1, 16, 16))
    with pytest.raises(ValueError, match=r"\(N, 8, 4, 4\)"):
        dec(torch.rand(2, 8, 2, 2))


def test_undecodable_layer_of_a_classifier(tmp_cache):
    """A 28x28 input makes 7x7 maps in block 1 of a VGG built for 28x28: 28 / 7 = 4 works, 4x4 -> 28 not."""
    torch.manual_seed(0)
    m = ik.models.freeze(ik.models.vgg8(2, 1, width=0.125, image_size=28))
    data = ik.data.ImageSet(torch.rand(8, 1, 28, 28), torch.arange(8) % 2)
    with pytest.raises(ValueError, match=r"cannot decode activations of shape \(16, 4, 4\)"):
        cladec.train_cladec(m, "features.3", data, **FAST)


# -- loss and bad input --------------------------------------------------------------------------
def test_loss_is_the_alpha_weighted_sum():
    x_hat, x = torch.full((2, 1, 2, 2), 0.5), torch.zeros(2, 1, 2, 2)
    logits, y = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0])
    ce = nn.functional.cross_entropy(logits, y)
    loss, mse, c = cladec.cladec_loss(x_hat, x, logits, y, 0.25)
    assert math.isclose(float(mse), 0.25) and math.isclose(float(c), float(ce), rel_tol=1e-6)
    assert math.isclose(float(loss), 0.75 * 0.25 + 0.25 * float(ce), rel_tol=1e-6)
    loss0, _, c0 = cladec.cladec_loss(x_hat, x, None, None, 0.0)
    assert float(loss0) == 0.25 and float(c0) == 0.0


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), float("inf")])
def test_alpha_outside_unit_interval(frozen, data16, alpha):
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        cladec.train_cladec(frozen, "features.3", data16, alpha=alpha, **FAST)
    with pytest.raises(ValueError, match="alpha"):
        cladec.cladec_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), None, None, alpha)
    with pytest.raises(TypeError, match="alpha"):
        cladec.train_cladec(frozen, "features.3", data16, alpha="0.1", **FAST)


def test_classifier_must_be_frozen(data16, tmp_cache):
    m = ik.models.vgg8(2, 1, width=0.125, image_size=16)
    with pytest.raises(ValueError, match="evaluation mode"):
        cladec.train_cladec(m, "features.3", data16, **FAST)
    m.eval()
    with pytest.raises(ValueError, match="freeze"):
        cladec.train_cladec(m, "features.3", data16, **FAST)


def test_channel_mismatch_and_unknown_layer(frozen, data16):
    rgb = data16.to_rgb()
    with pytest.raises(ValueError, match="takes 1 channels but training images have 3"):
        cladec.train_cladec(frozen, "features.3", rgb, **FAST)
    with pytest.raises(ValueError, match="channels"):
        cladec.train_refae(frozen, "features.3", rgb, **FAST)
    with pytest.raises(KeyError, match="features.3"):
        cladec.train_cladec(frozen, "feature.3", data16, **FAST)
    with pytest.raises(TypeError, match="ImageSet"):
        cladec.train_cladec(frozen, "features.3", data16.images, **FAST)
    with pytest.raises(ValueError, match="epochs"):
        cladec.train_cladec(frozen, "features.3", data16, **{**FAST, "epochs": 0})
    with pytest.raises(ValueError, match="init"):
        cladec.train_cladec(frozen, "features.3", data16, init="xavier", **FAST)


# -- training ----------------------------------------------------------------------------------
def test_cladec_learns_and_leaves_the_classifier_untouched(frozen, data16):
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    cd = cladec.train_cladec(
        frozen, "features.1", data16, alpha=0.1, lr=1e-2, **{**FAST, "epochs": 30}
    )
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    for k, v in frozen.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert "classifier" not in dict(cd.named_modules()) and all(
        k.startswith("decoder.") for k in cd.state_dict()
    )
    rec = cladec.reconstruct(cd, data16.images)
    assert rec.shape == data16.images.shape
    base = cladec.mean_image_mse(data16, data16)
    assert float(((rec - data16.images) ** 2).mean()) < 0.7 * base
    h = cd.history
    assert (
        len(h) == 30
        and h[-1]["mse"] < h[0]["mse"]
        and h[-1]["ce"] > 0
        and h[-1]["output_spread"] > 0.02
    )


def test_cache_hit_is_identical_and_corrupt_file_retrains(frozen, data16, tmp_cache):
    a = cladec.train_cladec(frozen, "features.3", data16, **FAST)
    files = list((tmp_cache / "cladec").glob("ClaDec-*.pt"))
    assert len(files) == 1 and a.cache_path == files[0]
    b = cladec.train_cladec(frozen, "features.3", data16, **FAST)
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v)
    assert b.history == a.history
    c = cladec.train_cladec(frozen, "features.3", data16, alpha=0.5, **FAST)
    assert c.cache_path != a.cache_path
    files[0].write_bytes(b"not a checkpoint")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        d = cladec.train_cladec(frozen, "features.3", data16, **FAST)
    for k, v in a.state_dict().items():
        torch.testing.assert_close(d.state_dict()[k], v)


def test_refae_trains_a_fresh_encoder_only_up_to_the_layer(frozen, data16):
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    ae = cladec.train_refae(frozen, "features.1", data16, lr=3e-3, **{**FAST, "epochs": 12})
    for k, v in frozen.state_dict().items():
        torch.testing.assert_close(v, before[k])
    enc = ae.encoder
    assert not torch.equal(enc.features[0][0].weight, frozen.features[0][0].weight)
    init = cladec.fresh_copy(frozen, seed=0)
    # blocks 0-1 trained, block 2 onwards and the linear head never received a gradient
    assert not torch.equal(enc.features[1][0].weight, init.features[1][0].weight)
    torch.testing.assert_close(enc.features[2][0].weight, init.features[2][0].weight)
    torch.testing.assert_close(enc.classifier[2].weight, init.classifier[2].weight)
    rec = cladec.reconstruct(ae, data16.images)
    assert float(((rec - data16.images) ** 2).mean()) < 0.7 * cladec.mean_image_mse(data16, data16)


def test_refae_batchnorm_statistics_match_the_final_encoder(frozen, data16):
    """After training, the RefAE encoder's batch-norm running statistics are the averages over the
    training images under the final weights (not a running average over earlier weights), and the
    layers after the decoded one keep their initial statistics."""
    ae = cladec.train_refae(frozen, "features.1", data16, lr=3e-3, **{**FAST, "epochs": 3})
    enc = ae.encoder.eval()
    conv, bn = enc.features[0][0], enc.features[0][1]
    with torch.no_grad():
        z = conv(data16.images)  # what the first batch norm sees, on all training images
    torch.testing.assert_close(bn.running_mean, z.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert int(bn.num_batches_tracked) == len(data16) // FAST["batch_size"]
    later = enc.features[3][1]  # a block after the decoded layer: never run, untouched
    torch.testing.assert_close(later.running_mean, torch.zeros_like(later.running_mean))
    assert later.momentum == 0.1 and bn.momentum == 0.1


def test_fresh_copy_needs_reset_parameters():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.s = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return x * self.s

    with pytest.raises(TypeError, match="reset_parameters"):
        cladec.fresh_copy(nn.Sequential(nn.Conv2d(1, 2, 3), Scale()))


def test_any_classifier_and_layer(tmp_cache):
    """Not only the VGG: a CIFAR ResNet's stage output, 3-channel images."""
    torch.manual_seed(0)
    net = ik.models.freeze(ik.models.resnet18_cifar(3, width=0.125))
    data = ik.data.ImageSet(torch.rand(12, 3, 16, 16), torch.arange(12) % 3)
    cd = cladec.train_cladec(net, "layer3", data, alpha=0.5, **{**FAST, "epochs": 1})
    assert cd.decoder.in_shape == (32, 4, 4) and cladec.reconstruct(cd, data.images[:3]).shape == (
        3,
        3,
        16,
        16,
    )
    ae = cladec.train_refae(net, "layer3", data, **{**FAST, "epochs": 1})
    assert ae.decoder.in_shape == (32, 4, 4)


def test_evaluate_explainers_table(frozen, data16):
    ex = cladec.train_explainers(frozen, data16, ["features.1"], alphas=(0.0, 0.5), **FAST)
    ex.update(cladec.train_explainers(frozen, data16, ["features.3"], refae=False, **FAST))
    assert set(ex) == {
        ("features.1", "ClaDec", 0.0),
        ("features.1", "ClaDec", 0.5),
        ("features.1", "RefAE", 0.0),
        ("features.3", "ClaDec", 0.0),
    }
    df = cladec.evaluate_explainers(
        frozen, ex, data16, data16, fresh_epochs=1, fresh_batch_size=32, device="cpu"
    )
    assert len(df) == 5 and df.iloc[0]["method"] == "original" and df.iloc[0]["mse"] == 0
    assert {
        "layer",
        "depth",
        "method",
        "alpha",
        "mse",
        "mean_image_mse",
        "relative_mse",
        "classifier_accuracy",
        "classifier_loss",
        "classifier_loss_train",
        "fresh_accuracy",
    } <= set(df.columns)
    assert df["fresh_accuracy"].between(0, 1).all() and (df["mse"] >= 0).all()
    d1 = df.loc[df.layer == "features.1", "depth"].iloc[0]
    assert d1 < df.loc[df.layer == "features.3", "depth"].iloc[0]
    with pytest.raises(TypeError, match="ClaDec or RefAE"):
        cladec.evaluate_explainers(frozen, {"x": nn.Linear(1, 1)}, data16, data16, fresh=False)
    with pytest.raises(TypeError, match="ClaDec or RefAE"):
        cladec.reconstruct(frozen, data16.images)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_with_mixed_precision(frozen, data16, tmp_cache):
    cd = cladec.train_cladec(
        frozen,
        "features.3",
        data16,
        alpha=0.1,
        device="cuda",
        amp=True,
        epochs=1,
        batch_size=16,
        width=0.125,
        progress=False,
    )
    assert next(cd.decoder.parameters()).device.type == "cuda"
    assert cladec.reconstruct(cd, data16.images).device.type == "cpu"


# -- edge cases (audit) ------------------------------------------------------------------------
@pytest.mark.parametrize("wd", [float("inf"), float("nan"), -1e-5])
def test_weight_decay_must_be_finite(frozen, data16, tmp_cache, wd):
    """Defect: weight_decay=inf passed the ``>= 0`` check, trained an all-NaN decoder and cached it."""
    for fn in (cladec.train_cladec, cladec.train_refae):
        with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0"):
            fn(frozen, "features.3", data16, weight_decay=wd, **FAST)
    assert not list(tmp_cache.glob("cladec/*.pt"))


@pytest.mark.parametrize("bad", ["0-255", "nan", "normalised"])
def test_training_images_must_be_finite_and_in_unit_interval(frozen, data16, tmp_cache, bad):
    """Defect: the decoder ends in a sigmoid, so targets outside [0, 1] (0-255 or standardised images)
    trained a meaningless constant decoder, and a NaN pixel an all-NaN one; both were cached silently."""
    x = data16.images.clone()
    x = {
        "0-255": x * 255,
        "nan": x.index_put_((torch.tensor([0]),), torch.tensor(float("nan"))),
        "normalised": (x - 0.5) / 0.25,
    }[bad]
    with pytest.raises(
        ValueError, match=r"images must be finite and lie in \[0, 1\]"
    ):  # refused when made
        ik.data.ImageSet(x, data16.labels, list(data16.classes), f"bad-{bad}")
    data = ik.data.ImageSet(
        data16.images.clone(), data16.labels, list(data16.classes), f"bad-{bad}"
    )
    data.images = x  # and when changed afterwards
    for fn in (cladec.train_cladec, cladec.train_refae):
        with pytest.raises(ValueError, match=r"training images must be finite and lie in \[0, 1\]"):
            fn(frozen, "features.3", data, **FAST)
    assert not list(tmp_cache.glob("cladec/*.pt"))


def test_relative_mse_is_nan_for_constant_data(frozen):
    """Defect: constant images make the mean-image MSE 0, and evaluate_explainers died with a bare
    ZeroDivisionError; the ratio is undefined there, so it is NaN (mse itself is still reported)."""
    const = ik.data.ImageSet(
        torch.full((16, 1, 16, 16), 0.3), torch.arange(16) % 2, ["a", "b"], "const"
    )
    cd = cladec.train_cladec(frozen, "features.3", const, **{**FAST, "epochs": 1})
    df = cladec.evaluate_explainers(frozen, {"c": cd}, const, const, fresh=False, device="cpu")
    assert df.iloc[0]["relative_mse"] == 0.0 and df.iloc[1]["mean_image_mse"] == 0.0
    assert math.isnan(df.iloc[1]["relative_mse"]) and df.iloc[1]["mse"] >= 0


@pytest.mark.parametrize("bs", [0, -1, 2.5])
def test_reconstruct_batch_size_must_be_positive(frozen, data16, bs):
    """Defect: batch_size=0 raised Python's 'range() arg 3 must not be zero', -1 torch.cat's
    'expected a non-empty list of Tensors'."""
    cd = cladec.train_cladec(frozen, "features.3", data16, **{**FAST, "epochs": 1})
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        cladec.reconstruct(cd, data16.images, batch_size=bs)


def test_loss_rejects_mismatched_shapes():
    """Defect: F.mse_loss broadcast (2, 1, 4, 4) against (1, 1, 4, 4) with only a warning."""
    with pytest.raises(
        ValueError, match=r"reconstructions have shape \(2, 1, 4, 4\) but the images \(1, 1, 4, 4\)"
    ):
        cladec.cladec_loss(torch.zeros(2, 1, 4, 4), torch.zeros(1, 1, 4, 4), None, None, 0.0)


def test_reconstruct_names_what_is_wrong_with_the_images(frozen, data16):
    """Defect: a NumPy array failed with "'numpy.ndarray' object has no attribute 'to'"."""
    cd = cladec.train_cladec(frozen, "features.3", data16, **{**FAST, "epochs": 1})
    with pytest.raises(
        TypeError, match="must be a torch.Tensor, got ndarray; convert with torch.as_tensor"
    ):
        cladec.reconstruct(cd, data16.images.numpy())
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        cladec.reconstruct(cd, data16.images[0])
    assert torch.equal(
        cladec.reconstruct(cd, data16.images[:2]), cladec.reconstruct(cd, data16.images)[:2]
    )


def test_train_explainers_takes_one_alpha(frozen, data16):
    """Defect: alphas=0.5 failed with "'float' object is not iterable"."""
    ex = cladec.train_explainers(
        frozen, data16, "features.3", alphas=0.5, refae=False, **{**FAST, "epochs": 1}
    )
    assert set(ex) == {("features.3", "ClaDec", 0.5)}
