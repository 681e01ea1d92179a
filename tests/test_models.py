import pytest
import torch

import interpkit as ik
from interpkit.models import training


def test_vgg8_layout_and_shapes():
    m = ik.models.vgg8(10, in_channels=1, width=0.25)
    assert len(m.features) == 8 and m(torch.rand(2, 1, 32, 32)).shape == (2, 10)
    strides = [blk[0].stride[0] for blk in m.features]
    assert strides == [2, 2, 1, 2, 1, 2, 1, 2]
    assert all(blk[0].bias is None for blk in m.features)
    assert [blk[0].out_channels for blk in ik.models.vgg8(width=1.0).features] == [
        32,
        64,
        128,
        128,
        256,
        256,
        512,
        512,
    ]
    assert ik.models.conv_layer_names(m) == [f"features.{i}" for i in range(8)]
    with pytest.raises(ValueError, match="resize"):
        m(torch.rand(2, 1, 28, 28))


def test_resnet18_cifar_shapes():
    m = ik.models.resnet18_cifar(7, width=0.125)
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 7)
    with ik.capture(m, ["layer1", "layer4"]) as acts:
        m(torch.rand(1, 3, 32, 32))
    assert acts["layer1"].shape[-1] == 32 and acts["layer4"].shape[-1] == 4


def test_torchvision_model_local_weights(tmp_path):
    m = ik.models.torchvision_model("resnet18", num_classes=3)
    path = tmp_path / "w.pth"
    torch.save(m.state_dict(), path)
    m2 = ik.models.torchvision_model("resnet18", weights_path=path, num_classes=3)
    torch.testing.assert_close(m2.fc.weight, m.fc.weight)
    with pytest.raises(FileNotFoundError, match="local path"):
        ik.models.torchvision_model("resnet18", weights_path=tmp_path / "missing.pth")
    with pytest.raises(KeyError, match="resnet18"):
        ik.models.torchvision_model("resnet_18")


def _net():
    torch.manual_seed(0)
    return ik.models.vgg8(2, 1, width=0.125)


def test_train_learns_and_cache_hit_is_identical(tmp_cache, tiny_images, monkeypatch):
    m = ik.models.train(
        _net(), tiny_images, epochs=8, lr=3e-3, batch_size=8, progress=False, device="cpu"
    )
    assert not m.training and len(m.train_history) == 8
    assert ik.models.evaluate(m, tiny_images)["accuracy"] > 0.9
    files = list((tmp_cache / "models").glob("*.pt"))
    assert len(files) == 1
    monkeypatch.setattr(
        training, "_fit", lambda *a, **k: pytest.fail("a cache hit must not retrain")
    )
    m2 = ik.models.train(
        _net(), tiny_images, epochs=8, lr=3e-3, batch_size=8, progress=False, device="cpu"
    )
    for a, b in zip(m.state_dict().values(), m2.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_cache_key_changes_with_data_hparams_and_init(tiny_images):
    k = training.cache_key(_net(), tiny_images, {"epochs": 1})
    assert k != training.cache_key(_net(), tiny_images, {"epochs": 2})
    assert k != training.cache_key(_net(), tiny_images.subset(range(32)), {"epochs": 1})
    torch.manual_seed(1)
    assert k != training.cache_key(ik.models.vgg8(2, 1, width=0.125), tiny_images, {"epochs": 1})


def test_corrupt_cache_file_warns_and_retrains(tmp_cache, tiny_images):
    m = ik.models.train(_net(), tiny_images, epochs=1, batch_size=16, progress=False, device="cpu")
    path = m.cache_path
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])  # truncated file
    with pytest.warns(RuntimeWarning, match="unreadable"):
        m2 = ik.models.train(
            _net(), tiny_images, epochs=1, batch_size=16, progress=False, device="cpu"
        )
    for a, b in zip(m.state_dict().values(), m2.state_dict().values()):
        torch.testing.assert_close(a, b)  # retrained from the same seed: same model
    torch.load(path, weights_only=True)  # and the cache file is whole again


def test_interrupted_training_leaves_no_checkpoint(tmp_cache, tiny_images, monkeypatch):
    real_step = torch.optim.Adam.step
    calls = {"n": 0}

    def flaky_step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", flaky_step)
    with pytest.raises(KeyboardInterrupt):
        ik.models.train(_net(), tiny_images, epochs=2, batch_size=16, progress=False, device="cpu")
    assert not list(tmp_cache.rglob("*.pt")) and not list(tmp_cache.rglob("*.tmp"))
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    m = ik.models.train(_net(), tiny_images, epochs=2, batch_size=16, progress=False, device="cpu")
    assert m.cache_path.is_file()


def test_epoch_states_kept_and_cached(tmp_cache, tiny_images):
    m = ik.models.train(
        _net(), tiny_images, epochs=2, batch_size=16, progress=False, keep_epoch_states=True
    )
    assert len(m.epoch_states) == 2
    torch.testing.assert_close(
        m.epoch_states[-1]["classifier.2.weight"], m.state_dict()["classifier.2.weight"].cpu()
    )
    m2 = ik.models.train(
        _net(), tiny_images, epochs=2, batch_size=16, progress=False, keep_epoch_states=True
    )
    assert len(m2.epoch_states) == 2


def test_bad_training_input(tmp_cache, tiny_images):
    with pytest.raises(ValueError, match="channels"):
        ik.models.train(ik.models.vgg8(2, 3, width=0.125), tiny_images, epochs=1, progress=False)
    with pytest.raises(TypeError, match="ImageSet"):
        ik.models.train(_net(), (tiny_images.images, tiny_images.labels), epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        ik.models.train(_net(), tiny_images, epochs=0)


def test_device_rule_and_mismatch_errors():
    assert ik.resolve_device("cpu").type == "cpu"
    assert ik.resolve_device(None).type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            ik.resolve_device("cuda")
    from interpkit.checks import check_images, require_eval, require_frozen

    m = _net()
    with pytest.raises(ValueError, match="meta"):
        check_images(torch.empty(2, 1, 32, 32, device="meta"), m)
    with pytest.raises(ValueError, match="shape"):
        check_images(torch.rand(1, 32, 32), m)
    with pytest.raises(ValueError, match="channels"):
        check_images(torch.rand(1, 3, 32, 32), m)
    with pytest.raises(ValueError, match="eval"):
        require_eval(m.train())
    with pytest.raises(ValueError, match="freeze"):
        require_frozen(m.eval())
    require_frozen(ik.models.freeze(m))


def test_methods_that_keep_float64_on_the_device_skip_mps(pretend_mac):
    """Defect: on a Mac, device=None chose MPS for coupled NMF and dissection, whose float64
    bookkeeping and quantile sketches MPS cannot hold, so they failed deep inside torch."""
    assert ik.resolve_device(None).type == "mps"  # every other method still uses MPS
    assert ik.resolve_device("mps").type == "mps"
    with pytest.warns(UserWarning, match="dissect keeps float64 tensors.*running it on the CPU"):
        assert ik.resolve_device(None, needs_float64="dissect").type == "cpu"
    with pytest.raises(
        ValueError,
        match="dissect keeps float64 tensors on its device, which MPS does not "
        "support; use device='cpu'",
    ):
        ik.resolve_device("mps", needs_float64="dissect")


def test_coupled_nmf_and_dissection_run_on_the_cpu_on_a_mac(pretend_mac):
    from interpkit import clustering, dissection

    g = torch.Generator().manual_seed(0)
    acts = torch.rand(6, 10, generator=g)
    with pytest.warns(UserWarning, match="coupled NMF keeps float64"):
        res = clustering.coupled_nmf({"layer": acts}, {}, rank=2, n_iter=3, device=None)
    assert res.F.device.type == "cpu"
    with pytest.raises(ValueError, match="use device='cpu'"):
        clustering.coupled_nmf({"layer": acts}, {}, rank=2, n_iter=3, device="mps")
    with pytest.warns(UserWarning, match="quantile_thresholds keeps float64"):
        t = dissection.quantile_thresholds(
            torch.rand(4, 3, 2, 2, generator=g).numpy(), 0.5, device=None
        )
    assert t.shape == (3,)
    # dissect itself: tests/test_dissection.py


def test_architectures_check_their_arguments():
    """Defect: width=nan raised "cannot convert float NaN to integer", width=inf an OverflowError,
    num_classes=10.0 or image_size=32.0 a TypeError inside nn.Linear, in_channels=-1 a RuntimeError
    ("negative dimension"), and image_size=-8 built a model no input fits."""
    for kwargs, what in [
        (dict(width=float("nan")), "width"),
        (dict(width=float("inf")), "width"),
        (dict(num_classes=10.0), "num_classes"),
        (dict(image_size=32.0), "image_size"),
        (dict(image_size=-8), "image_size"),
        (dict(in_channels=0), "in_channels"),
    ]:
        with pytest.raises(ValueError, match=what):
            ik.models.vgg8(**kwargs)
    for kwargs, what in [
        (dict(width=float("nan")), "width"),
        (dict(num_classes=3.0), "num_classes"),
        (dict(in_channels=-1), "in_channels"),
        (dict(num_classes=1), "at least 2"),
    ]:
        with pytest.raises(ValueError, match=what):
            ik.models.resnet18_cifar(**kwargs)


def test_torchvision_model_truncated_weights(tmp_path):
    """Defect: a truncated weights file raised torch's bare "PytorchStreamReader failed reading zip archive"."""
    path = tmp_path / "w.pth"
    torch.save(ik.models.torchvision_model("resnet18", num_classes=3).state_dict(), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(
        ValueError, match=r"w\.pth cannot be read as a state dict with weights_only=True"
    ):
        ik.models.torchvision_model("resnet18", weights_path=path, num_classes=3)


def test_train_history_averages_over_the_images_it_trained_on(tmp_cache, tiny_images):
    """Defect: with a last batch of one image (skipped: batch norm cannot train on it) the epoch's loss
    and accuracy were divided by all images, so the accuracy could never reach 1."""
    data = tiny_images.subset(range(33))  # batches of 16, 16 and 1
    m = ik.models.train(_net(), data, epochs=3, batch_size=16, progress=False, device="cpu")
    assert m.train_history[-1]["train_acc"] > 0
    for h in (
        m.train_history
    ):  # a count out of the 32 images trained on (k / 33 is never k' / 32 for 0 < k <= 32)
        assert h["train_acc"] * 32 == pytest.approx(round(h["train_acc"] * 32), abs=1e-9)


def test_cache_keys_depend_on_the_thread_count(tmp_cache, tiny_images):
    """Defect: a model trained with one torch thread was reused by a run with two, although two
    threads train a slightly different model (sums split over threads round differently), so the
    same notebook gave other numbers on a fresh machine than on one with an older cache."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        k1 = training.cache_key(_net(), tiny_images, {"epochs": 1}, "cpu")
        m1 = ik.models.train(
            _net(), tiny_images, epochs=1, batch_size=16, progress=False, device="cpu"
        )
        torch.set_num_threads(2)
        k2 = training.cache_key(_net(), tiny_images, {"epochs": 1}, "cpu")
        m2 = ik.models.train(
            _net(), tiny_images, epochs=1, batch_size=16, progress=False, device="cpu"
        )
        assert ik.device.numerics(torch.device("cpu")) == {"device": "cpu", "threads": 2}
    finally:
        torch.set_num_threads(threads)
    assert k1 != k2 and m1.cache_path != m2.cache_path
    assert ik.device.numerics(torch.device("cuda")) == {
        "device": "cuda"
    }  # no CUDA needed to name it


def test_train_checks_hyper_parameters(tmp_cache, tiny_images):
    """Defect: lr=inf or weight_decay=inf trained to NaN weights and cached them; batch_size=1 skipped
    every batch and silently returned (and cached) the untrained model; epochs=2.5 failed inside range()."""
    for kwargs, what in [
        (dict(lr=float("inf")), "lr"),
        (dict(lr=float("nan")), "lr"),
        (dict(weight_decay=float("inf")), "weight_decay"),
        (dict(batch_size=1), "at least 2"),
        (dict(epochs=2.5), "epochs"),
        (dict(seed=0.5), "seed"),
    ]:
        with pytest.raises(ValueError, match=what):
            ik.models.train(_net(), tiny_images, progress=False, **{"epochs": 1, **kwargs})
    assert not list(tmp_cache.rglob("*.pt"))


def test_train_takes_numpy_scalars(tmp_cache, tiny_images):
    """Defect: epochs=np.int64(1), seed=np.int64(0) or lr=np.float32(...) failed with "Object of type
    int64 is not JSON serializable" while building the cache key."""
    import numpy as np

    m = ik.models.train(
        _net(),
        tiny_images,
        epochs=np.int64(1),
        lr=np.float32(1e-3),
        seed=np.int64(0),
        batch_size=np.int64(16),
        progress=False,
        device="cpu",
    )
    assert len(m.train_history) == 1 and m.cache_path.is_file()


def test_train_refuses_non_finite_images(tmp_cache, tiny_images):
    """Defect: a NaN pixel trained (and cached) a model with NaN loss instead of being reported."""
    images = tiny_images.images.clone()
    images[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="got 1 NaN/inf"):  # refused when the set is made
        ik.data.ImageSet(images, tiny_images.labels)
    data = ik.data.ImageSet(tiny_images.images.clone(), tiny_images.labels)
    data.images[0, 0, 0, 0] = float("nan")  # and when changed afterwards
    with pytest.raises(ValueError, match="training images must be finite.*got 1 NaN/inf"):
        ik.models.train(_net(), data, epochs=1, progress=False)
    assert not list(tmp_cache.rglob("*.pt"))


def test_labels_beyond_the_model_outputs(tmp_cache, tiny_images):
    """Defect: a 2-class model trained or evaluated on 10-class labels failed inside cross-entropy with
    "IndexError: Target 2 is out of bounds" (on CUDA a device-side assert)."""
    ten = ik.data.ImageSet(tiny_images.images, torch.arange(64) % 10)
    with pytest.raises(ValueError, match="num_classes=10"):
        ik.models.train(_net(), ten, epochs=1, progress=False, cache=False)
    with pytest.raises(ValueError, match="2 outputs but the labels go up to 9"):
        ik.models.evaluate(_net(), ten)
    with pytest.raises(TypeError, match="ImageSet"):
        ik.models.evaluate(_net(), tiny_images.images)


def test_predict_proba_bad_input(tiny_images):
    """Defect: batch_size=0 raised "range() arg 3 must not be zero", batch_size=-1 "torch.cat(): expected a
    non-empty list", and a NumPy array "'numpy.ndarray' object has no attribute 'to'"."""
    m = _net().eval()
    for bs in (0, -1):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            ik.models.predict_proba(m, tiny_images.images, batch_size=bs)
    with pytest.raises(TypeError, match="torch.as_tensor"):
        ik.models.predict_proba(m, tiny_images.images.numpy())


def test_predict_proba_runs_a_training_mode_model_in_eval_mode_and_restores_it(tiny_images):
    """Defect: in training mode predict_proba changed the model's batch-norm running statistics (and
    dropout made its outputs random), silently. Policy (checks.evaluating): evaluation mode inside,
    the caller's mode back afterwards, no state changed."""
    m = ik.models.vgg8(2, 1, width=0.125).train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    p_train = ik.models.predict_proba(m, tiny_images.images[:4], batch_size=3)
    assert m.training and all(x.training for x in m.modules())
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    p = ik.models.predict_proba(m.eval(), tiny_images.images[:4])
    assert p.shape == (4, 2) and torch.allclose(p.sum(1), torch.ones(4))
    torch.testing.assert_close(p_train, p)
    with torch.no_grad():
        torch.testing.assert_close(p, torch.softmax(m(tiny_images.images[:4]), 1))
